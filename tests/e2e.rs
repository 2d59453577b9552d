//! End-to-end scenarios: the real `vipd` binary on three LB nodes, real `fake-apiserver` processes, the real
//! kernel, network namespaces. Each scenario asserts what a client on the LAN sees through VIP:443 (TLS
//! end-to-end to the apiserver, verified against the test CA, the certificates carrying the VIP as an IP SAN
//! as kube-apiserver certificates do), not only the daemons' internal state.
//!
//! Topology per scenario (its own lab, so scenarios run in parallel): `lb0..lb2` run `vipd run` with priorities
//! 150/120/100, 100 ms adverts, HTTPS `/readyz` checks; `api0..` run `fake-apiserver` on `:6443`, each in its
//! own namespace; `client` runs a [`Probe`] (one request every ~20 ms, each on a fresh connection) and
//! [`Watch`] streams.
//!
//! Outages printed by the scenarios (`cargo test --test e2e -- --nocapture`) are the longest time the client
//! went without a successful request.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use vipd_lab::apiserver::{self, ClientOpts, FakeProcess, ServerCertSpec, TestPki};
use vipd_lab::client::{Probe, ProbeSpec, Retries, Sample};
use vipd_lab::netns::{wait_for, Lab, TempDir};
use vipd_lab::vipd::{HealthSpec, VipdNode, VipdSpec};

const VIP: &str = "192.0.2.100";
const PRIORITIES: [u8; 3] = [150, 120, 100];
/// Master_Down_Interval for 100 ms adverts: 3 * 100 ms + skew (< 100 ms).
const MASTER_DOWN: Duration = Duration::from_millis(400);
/// Slack for a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_secs(3);
/// Bound of the client-visible outage when the VIP moves back by preemption: one advertisement interval plus
/// slack. The slack covers one request caught in flight through the old master, whose connection dies with the
/// move (its TCP peer is gone) and which [`NO_RETRY`] lets run into its 1 s timeout on a loaded machine.
const MOVE_BACK: Duration = Duration::from_millis(100 + 2000);

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

fn vip_sock() -> SocketAddr {
    SocketAddr::new(vip(), 443)
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vipd"))
}

// ---------------------------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------------------------

/// One scenario's world. Field order is drop order: daemons and apiservers go before the namespaces.
struct E2e {
    nodes: Vec<Option<VipdNode>>,
    specs: Vec<VipdSpec>,
    apis: Vec<Option<FakeProcess>>,
    api_addrs: Vec<SocketAddr>,
    pki: TestPki,
    _dir: TempDir,
    lab: Lab,
}

impl E2e {
    /// Three LB nodes, `n_apis` apiservers (the first three are the backends), a client; waits until lb0 is
    /// master with every backend healthy and the others are backups.
    fn new(tag: &str, n_apis: usize, tune: impl Fn(VipdSpec) -> VipdSpec) -> E2e {
        let mut lab = Lab::new(tag).unwrap();
        for i in 0..3 {
            lab.add_node(&format!("lb{i}")).unwrap();
        }
        for i in 0..n_apis {
            lab.add_node(&format!("api{i}")).unwrap();
        }
        lab.add_node("client").unwrap();
        let pki = TestPki::new(&format!("{tag}-ca")).unwrap();
        let dir = TempDir::new(&format!("{tag}-cfg")).unwrap();
        let mut apis = Vec::new();
        let mut api_addrs = Vec::new();
        for i in 0..n_apis {
            let node = lab.node(&format!("api{i}"));
            let ip = IpAddr::V4(node.v4);
            let cert = pki
                .server_cert(&format!("api{i}"), &ServerCertSpec::ips([ip, vip()]))
                .unwrap();
            let addr = SocketAddr::new(ip, 6443);
            let name = format!("api{i}");
            let extra = ["--watch-interval-ms", "50"];
            let p =
                FakeProcess::spawn_https_in(node.ns.name(), addr, &cert, &name, &extra).unwrap();
            apis.push(Some(p));
            api_addrs.push(addr);
        }
        let mut specs = Vec::new();
        let mut nodes = Vec::new();
        for (i, prio) in PRIORITIES.iter().enumerate() {
            let mut spec = VipdSpec::new(vip(), api_addrs[..3].to_vec(), *prio);
            spec.health = HealthSpec::Https {
                ca_file: pki.ca_cert().to_path_buf(),
            };
            spec.health_interval = "300ms";
            spec.health_timeout = "250ms";
            spec.rise = 1;
            spec.fall = 2;
            let spec = tune(spec);
            let ns = &lab.node(&format!("lb{i}")).ns;
            nodes.push(Some(
                VipdNode::start(&bin(), ns, &spec, dir.path()).unwrap(),
            ));
            specs.push(spec);
        }
        let e = E2e {
            nodes,
            specs,
            apis,
            api_addrs,
            pki,
            _dir: dir,
            lab,
        };
        e.wait_master(0, Duration::from_secs(20));
        for i in 1..3 {
            assert!(
                e.node(i)
                    .wait_state("backup", Duration::from_secs(10))
                    .is_some(),
                "lb{i} not backup: {:?}",
                e.node(i).state()
            );
        }
        let healthy = wait_for(Duration::from_secs(10), || {
            let s = e.node(0).status().ok()?;
            let all = s["backends"]
                .as_array()?
                .iter()
                .all(|b| b["healthy"].as_bool() == Some(true));
            all.then_some(())
        });
        assert!(
            healthy.is_some(),
            "backends not healthy on lb0: {:?}",
            e.node(0).status()
        );
        e
    }

    fn node(&self, i: usize) -> &VipdNode {
        self.nodes[i].as_ref().expect("node running")
    }

    fn lb_ns(&self, i: usize) -> &vipd_lab::netns::Netns {
        &self.lab.node(&format!("lb{i}")).ns
    }

    fn client_ns(&self) -> String {
        self.lab.node("client").ns.name().to_string()
    }

    fn holds_vip(&self, i: usize) -> bool {
        self.lb_ns(i).has_addr("eth0", vip())
    }

    /// Waits until lb`i` is master and is the only node holding the VIP; returns how long it took.
    fn wait_master(&self, i: usize, timeout: Duration) -> Duration {
        let start = Instant::now();
        let ok = wait_for(timeout, || {
            let alone = (0..3).all(|j| j == i || !self.holds_vip(j));
            (self.node(i).state().as_deref() == Some("master") && self.holds_vip(i) && alone)
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "lb{i} not sole master after {timeout:?}: states {:?}, VIP held {:?}",
            self.states(),
            (0..3).map(|j| self.holds_vip(j)).collect::<Vec<_>>()
        );
        start.elapsed()
    }

    fn states(&self) -> Vec<Option<String>> {
        self.nodes
            .iter()
            .map(|n| n.as_ref().and_then(|n| n.state()))
            .collect()
    }

    fn transitions(&self, i: usize) -> u64 {
        self.node(i).status().unwrap()["vrrp"]["transitions"]
            .as_u64()
            .unwrap()
    }

    fn total_connections(&self, i: usize) -> u64 {
        self.node(i).status().unwrap()["proxy"]["totalConnections"]
            .as_u64()
            .unwrap()
    }

    fn client_opts(&self, timeout: Duration) -> ClientOpts {
        ClientOpts {
            ca: Some(self.pki.ca_cert().to_path_buf()),
            timeout: Some(timeout),
            ..ClientOpts::default()
        }
    }

    /// Requests every ~20 ms from a thread inside the client namespace, until dropped.
    fn client(&self, policy: Policy) -> Probe {
        let spec = ProbeSpec::new(vip_sock(), self.client_opts(policy.attempt_timeout))
            .retries(policy.retries)
            .max_run(Duration::from_secs(600));
        Probe::start(&self.client_ns(), spec).unwrap()
    }

    fn watch(&self) -> Watch {
        Watch::start(&self.client_ns(), self.client_opts(Duration::from_secs(5)))
    }

    /// The master's log so far, for assertion messages.
    fn log(&self, i: usize) -> String {
        self.node(i).proc.lines().join("\n")
    }
}

// ---------------------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------------------

/// What the client does on failure. Each request is `GET /version` on a fresh TCP + TLS connection.
#[derive(Debug, Clone, Copy)]
struct Policy {
    /// Bound of one attempt, connect included (the kernel's SYN retransmissions happen inside it).
    attempt_timeout: Duration,
    /// Connect retries (refused, unreachable: 50 ms apart, as client-go's dialer retries do) and retries after
    /// any other failure (TLS, reset, timeout: like a client's own request retry).
    retries: Retries,
}

const NO_RETRY: Policy = Policy {
    attempt_timeout: Duration::from_secs(1),
    retries: Retries::NONE,
};

/// A long-lived `/watch?interval_ms=50` stream through the VIP, followed on its own thread in the client
/// namespace; records when each line came and which apiserver sent it, and how the stream ended.
struct Watch {
    stop: Arc<AtomicBool>,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    ended: Arc<Mutex<Option<String>>>,
    handle: Option<JoinHandle<()>>,
}

impl Watch {
    fn start(ns: &str, opts: ClientOpts) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let (stop2, lines2, ended2) = (stop.clone(), lines.clone(), ended.clone());
        let path = format!("/run/netns/{ns}");
        let handle = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let hard_stop = Instant::now() + Duration::from_secs(600);
            let r = rt.block_on(apiserver::follow_lines(
                vip_sock(),
                &opts,
                "/watch?interval_ms=50",
                |line| {
                    let name = serde_json::from_str::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| v["name"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    lines2.lock().unwrap().push((Instant::now(), name));
                    !stop2.load(Ordering::SeqCst) && Instant::now() < hard_stop
                },
            ));
            if !stop2.load(Ordering::SeqCst) {
                *ended2.lock().unwrap() = Some(match r {
                    Ok(()) => "left".into(),
                    Err(e) => e.to_string(),
                });
            }
        });
        Watch {
            stop,
            lines,
            ended,
            handle: Some(handle),
        }
    }

    /// The apiserver behind this stream, once its first line came.
    fn server(&self) -> Option<String> {
        self.lines.lock().unwrap().first().map(|(_, n)| n.clone())
    }

    fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The longest silence between lines in [from, to] (edges included).
    fn longest_silence(&self, from: Instant, to: Instant) -> Duration {
        let mut last = from;
        let mut worst = Duration::ZERO;
        for (t, _) in self.lines.lock().unwrap().iter() {
            if *t >= from && *t <= to {
                worst = worst.max(t.saturating_duration_since(last));
                last = *t;
            }
        }
        worst.max(to.saturating_duration_since(last))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts `n` watches and waits until each has its first line.
fn start_watches(e: &E2e, n: usize) -> Vec<Watch> {
    let watches: Vec<Watch> = (0..n).map(|_| e.watch()).collect();
    let all = wait_for(Duration::from_secs(10), || {
        watches.iter().all(|w| w.server().is_some()).then_some(())
    });
    assert!(
        all.is_some(),
        "watches did not start: {:?}",
        watches.iter().map(|w| w.ended()).collect::<Vec<_>>()
    );
    watches
}

/// lb1 is master and `also` holds, within MASTER_DOWN + SLACK: the time since `since`.
fn lb1_takes_over(e: &E2e, since: Instant, also: impl Fn() -> bool) -> Duration {
    wait_for(MASTER_DOWN + SLACK, || {
        (e.node(1).state().as_deref() == Some("master") && also()).then_some(since.elapsed())
    })
    .unwrap_or_else(|| panic!("lb1 not master: {:?}", e.states()))
}

/// Waits for `n` successes from now, then prints `event` (`took` after it) and returns the client's longest
/// outage since `since`.
fn served_again(client: &Probe, since: Instant, n: usize, event: &str, took: Duration) -> Duration {
    assert!(client.wait_successes_after(Instant::now(), n, Duration::from_secs(10)));
    let outage = client.outage(since, Instant::now());
    println!(
        "{event} after {} ms, client outage {} ms",
        ms(took),
        ms(outage)
    );
    outage
}

/// Settled: the next 10 requests succeed and none fails meanwhile.
fn assert_settled(client: &Probe) {
    let settled = Instant::now();
    assert!(client.wait_successes_after(settled, 10, Duration::from_secs(10)));
    assert!(client.failures(settled, Instant::now()).is_empty());
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------------------

/// Requests through the VIP reach the healthy apiservers, all three under leastconn, in strict turn under
/// roundrobin, only through the master; a not-ready apiserver leaves the rotation without a failed request.
#[test]
fn requests_through_the_vip_spread_over_healthy_apiservers() {
    let e = E2e::new("e2ebal", 3, |s| s);
    let backups_before = [e.total_connections(1), e.total_connections(2)];
    let client = e.client(NO_RETRY);
    let t0 = Instant::now();
    assert!(client.wait_successes_after(t0, 30, Duration::from_secs(20)));
    let t1 = Instant::now();
    let fails = client.failures(t0, t1);
    assert!(fails.is_empty(), "failed requests: {fails:?}");
    assert_eq!(client.names(t0, t1), ["api0", "api1", "api2"]);
    assert!(e.total_connections(0) >= 30);
    assert_eq!(
        [e.total_connections(1), e.total_connections(2)],
        backups_before,
        "a backup proxied client traffic"
    );

    // Roundrobin (reloaded live): sequential clients rotate over the three in turn.
    let mut spec = e.specs[0].clone();
    spec = spec.with_extra("proxy", "balance: roundrobin");
    e.node(0).write_config(&spec).unwrap();
    let cursor = e.node(0).proc.line_count();
    e.node(0).signal(Signal::SIGHUP).unwrap();
    assert!(
        e.node(0)
            .proc
            .wait_line_from(cursor, Duration::from_secs(10), |l| l
                .contains("new configuration applied"))
            .is_some(),
        "reload not applied:\n{}",
        e.log(0)
    );
    let t_rr = Instant::now();
    assert!(client.wait_successes_after(t_rr, 30, Duration::from_secs(20)));
    let rr = client.between(t_rr, Instant::now());
    let count = |n: &str| rr.iter().filter(|s| s.result.as_deref() == Ok(n)).count();
    let counts = [count("api0"), count("api1"), count("api2")];
    println!("roundrobin: {counts:?} over {} requests", rr.len());
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "roundrobin uneven: {counts:?}"
    );

    // A not-ready apiserver leaves the rotation; the others keep serving without a failure.
    e.apis[2].as_ref().unwrap().signal(Signal::SIGUSR1).unwrap();
    let gone = wait_for(Duration::from_secs(10), || {
        let s = e.node(0).status().ok()?;
        (s["backends"][2]["healthy"].as_bool() == Some(false)).then_some(())
    });
    assert!(
        gone.is_some(),
        "api2 still healthy: {:?}",
        e.node(0).status()
    );
    let t2 = Instant::now();
    assert!(client.wait_successes_after(t2, 20, Duration::from_secs(20)));
    let t3 = Instant::now();
    assert!(client.failures(t0, t3).is_empty());
    assert_eq!(client.names(t2, t3), ["api0", "api1"]);
}

/// kill -9 of the master's vipd: the client works again within Master_Down_Interval plus slack; the VIP stays
/// on the dead node's interface until the restarted vipd removes it, rejoins and preempts.
#[test]
fn kill9_master_fails_over_and_restart_clears_stale_vip() {
    let mut e = E2e::new("e2ek9", 3, |s| s);
    let client = e.client(NO_RETRY);
    assert!(client.wait_successes_after(Instant::now(), 10, Duration::from_secs(10)));

    let t_kill = Instant::now();
    e.nodes[0].as_mut().unwrap().proc.kill9();
    let took = lb1_takes_over(&e, t_kill, || e.holds_vip(1) && !e.holds_vip(2));
    let outage = served_again(&client, t_kill, 5, "kill -9: lb1 master", took);
    assert!(outage < MASTER_DOWN + SLACK, "outage {outage:?}");
    // kill -9 leaves the address behind: nothing ran to remove it.
    assert!(e.holds_vip(0), "kill -9 should leave the VIP on lb0");

    // Restart with the same config: the stale VIP goes first, then lb0 preempts as the highest priority.
    let old = e.nodes[0].take().unwrap();
    let cfg = old.config_path.clone();
    drop(old);
    let t_restart = Instant::now();
    let node =
        VipdNode::start_with_config(&bin(), e.lb_ns(0), &cfg, e.specs[0].admin_listen).unwrap();
    assert!(
        node.proc
            .wait_line(Duration::from_secs(10), |l| l
                .contains("removed a stale VIP"))
            .is_some(),
        "no stale-VIP removal logged:\n{}",
        node.proc.lines().join("\n")
    );
    e.nodes[0] = Some(node);
    let took = e.wait_master(0, Duration::from_secs(10));
    assert!(e.node(1).wait_state("backup", SLACK).is_some());
    assert!(!e.holds_vip(1) && !e.holds_vip(2));
    let outage = served_again(&client, t_restart, 25, "restart: lb0 master again", took);
    assert!(outage < MASTER_DOWN + SLACK, "outage {outage:?}");
    // Once settled, every request works, through lb0.
    let conns = e.total_connections(0);
    assert_settled(&client);
    assert!(e.total_connections(0) >= conns + 10);
}

/// The master's cable cut, then restored: failover as for kill -9, then preemption back to lb0 with no second
/// outage longer than one advertisement interval plus slack.
#[test]
fn master_link_cut_and_restored() {
    let e = E2e::new("e2elink", 3, |s| s);
    let client = e.client(NO_RETRY);
    assert!(client.wait_successes_after(Instant::now(), 10, Duration::from_secs(10)));

    let t_cut = Instant::now();
    e.lab.link_down("lb0").unwrap();
    let took = lb1_takes_over(&e, t_cut, || true);
    let outage = served_again(&client, t_cut, 10, "link cut: lb1 master", took);
    assert!(outage < MASTER_DOWN + SLACK, "outage {outage:?}");

    let t_up = Instant::now();
    e.lab.link_up("lb0").unwrap();
    let took = e.wait_master(0, Duration::from_secs(10));
    let outage = served_again(&client, t_up, 25, "link restored: lb0 master", took);
    assert!(
        outage < MOVE_BACK,
        "second outage {outage:?}; lb0 log:\n{}",
        e.log(0)
    );
    assert_settled(&client);
}

/// SIGTERM on the master: priority 0 hands the VIP over, and a client that behaves as client-go does (a failed
/// connect retried, 5 times 50 ms apart, each attempt bounded at 4 s so the kernel's SYN retransmission at 1 s
/// happens inside it; a GET whose connection broke retried once) sees no request fail. The one retry is needed
/// by a request caught in flight through lb0 at the instant the VIP moves: its client packets now reach lb1,
/// which resets it, and no drain on lb0 can help that.
#[test]
fn sigterm_master_no_client_request_fails() {
    let mut e = E2e::new("e2eterm", 3, |s| s.with_extra("proxy", "drainTimeout: 5s"));
    let client = e.client(Policy {
        attempt_timeout: Duration::from_secs(4),
        retries: Retries {
            connect: 5,
            other: 1,
        },
    });
    let t0 = Instant::now();
    assert!(client.wait_successes_after(t0, 10, Duration::from_secs(10)));

    let t_term = Instant::now();
    e.node(0).signal(Signal::SIGTERM).unwrap();
    let took = lb1_takes_over(&e, t_term, || true);
    let status = e.nodes[0]
        .as_mut()
        .unwrap()
        .proc
        .wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "vipd did not exit cleanly: {status:?}"
    );
    assert!(!e.holds_vip(0), "SIGTERM left the VIP on lb0");
    assert!(client.wait_successes_after(Instant::now(), 25, Duration::from_secs(10)));
    let t_end = Instant::now();
    let fails = client.failures(t0, t_end);
    let gap = client.outage(t_term, t_end);
    let retried = client
        .between(t_term, t_end)
        .iter()
        .filter(|s| s.attempts > 1)
        .count();
    println!(
        "SIGTERM: lb1 master after {} ms, longest client gap {} ms, {retried} requests needed a connect retry",
        ms(took),
        ms(gap)
    );
    let describe = |v: &[Sample]| {
        v.iter()
            .map(|s| {
                (
                    s.start.saturating_duration_since(t_term),
                    s.end - s.start,
                    s.result.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    // No request fails for want of a connection: refused or lost connects are retried and reach a master.
    let connect_fails: Vec<Sample> = fails
        .iter()
        .filter(|s| matches!(&s.result, Err(r) if r.starts_with("connect:")))
        .cloned()
        .collect();
    assert!(
        connect_fails.is_empty(),
        "requests that never got a connection (start after SIGTERM, duration): {:?}",
        describe(&connect_fails)
    );
    // A request already connected through lb0 when the VIP moves loses its TCP peer (the client's packets now
    // reach lb1, which has no such connection); its one retry goes to lb1. Nothing else may fail.
    assert!(
        fails.is_empty(),
        "failed requests (start after SIGTERM, duration): {:?}\nlb0 log:\n{}\nlb1 log:\n{}",
        describe(&fails),
        e.nodes[0].as_ref().unwrap().proc.lines().join("\n"),
        e.log(1)
    );
    let broken_in_flight = client
        .between(t_term, t_end)
        .iter()
        .filter(|s| s.attempts > 1 && s.result.is_ok())
        .count();
    println!("SIGTERM: {broken_in_flight} requests succeeded on a retry");
    assert!(gap < MASTER_DOWN + SLACK, "gap {gap:?}");
}

/// One apiserver killed, then another stalled (SIGSTOP): with a 1 s per-attempt timeout and one retry, no client
/// request fails, and watches to the third apiserver keep receiving lines throughout.
#[test]
fn apiserver_killed_then_stalled() {
    let e = E2e::new("e2eapi", 3, |s| s);
    let watches = start_watches(&e, 6);
    let client = e.client(Policy {
        attempt_timeout: Duration::from_secs(1),
        retries: Retries {
            connect: 0,
            other: 1,
        },
    });
    let t0 = Instant::now();
    assert!(client.wait_successes_after(t0, 10, Duration::from_secs(10)));

    e.apis[0].as_ref().unwrap().signal(Signal::SIGKILL).unwrap();
    let down = wait_for(Duration::from_secs(10), || {
        let s = e.node(0).status().ok()?;
        (s["backends"][0]["healthy"].as_bool() == Some(false)).then_some(())
    });
    assert!(down.is_some(), "api0 still healthy");
    std::thread::sleep(Duration::from_secs(1));
    e.apis[1].as_ref().unwrap().signal(Signal::SIGSTOP).unwrap();
    let down = wait_for(Duration::from_secs(10), || {
        let s = e.node(0).status().ok()?;
        (s["backends"][1]["healthy"].as_bool() == Some(false)).then_some(())
    });
    assert!(down.is_some(), "stalled api1 still healthy");
    assert!(client.wait_successes_after(Instant::now(), 25, Duration::from_secs(15)));
    let t_end = Instant::now();

    let fails = client.failures(t0, t_end);
    let retried = client
        .between(t0, t_end)
        .iter()
        .filter(|s| s.attempts > 1)
        .count();
    println!(
        "apiserver kill + stall: {} requests, {retried} needed the retry, longest gap {} ms",
        client.between(t0, t_end).len(),
        ms(client.outage(t0, t_end))
    );
    assert!(fails.is_empty(), "failed requests: {fails:?}");
    assert_eq!(
        client.names(Instant::now() - Duration::from_secs(1), Instant::now()),
        ["api2"]
    );

    let to_api2: Vec<&Watch> = watches
        .iter()
        .filter(|w| w.server().as_deref() == Some("api2"))
        .collect();
    assert!(
        !to_api2.is_empty(),
        "no watch landed on api2: {:?}",
        watches.iter().map(|w| w.server()).collect::<Vec<_>>()
    );
    for w in &to_api2 {
        assert_eq!(w.ended(), None, "a watch to api2 ended");
        let silence = w.longest_silence(t0, t_end);
        assert!(
            silence < Duration::from_millis(1000),
            "a watch to api2 went silent for {silence:?} ({} lines)",
            w.count()
        );
    }
    // The killed apiserver's streams ended (so the check above can fail).
    assert!(watches
        .iter()
        .filter(|w| w.server().as_deref() == Some("api0"))
        .all(|w| w.ended().is_some()));
    let _ = e.apis[1].as_ref().unwrap().signal(Signal::SIGCONT);
}

/// The master loses every apiserver while the backups still reach them: trackWeight lowers it below lb1, the
/// VIP moves, the client works through lb1; when the partition heals, preemption moves it back exactly once.
#[test]
fn master_partitioned_from_apiservers_hands_over_and_back_once() {
    let e = E2e::new("e2epart", 3, |s| s);
    let client = e.client(NO_RETRY);
    assert!(client.wait_successes_after(Instant::now(), 10, Duration::from_secs(10)));
    let before: Vec<u64> = (0..3).map(|i| e.transitions(i)).collect();

    let t_cut = Instant::now();
    for a in &e.api_addrs {
        e.lb_ns(0)
            .run(["ip", "route", "add", "blackhole", &format!("{}/32", a.ip())])
            .unwrap();
    }
    let took = e.wait_master(1, Duration::from_secs(10));
    let outage = served_again(
        &client,
        t_cut,
        10,
        "master partitioned from apiservers: lb1 master",
        took,
    );
    // Health must first notice (fall 2 x 300 ms, 250 ms timeouts), then lb1 preempts.
    assert!(outage < Duration::from_secs(2) + SLACK, "outage {outage:?}");
    assert_eq!(
        e.node(0).status().unwrap()["vrrp"]["effectivePriority"].as_u64(),
        Some(100)
    );

    let t_heal = Instant::now();
    for a in &e.api_addrs {
        e.lb_ns(0)
            .run(["ip", "route", "del", "blackhole", &format!("{}/32", a.ip())])
            .unwrap();
    }
    let took = e.wait_master(0, Duration::from_secs(10));
    // Settle, then count: each node moved exactly as preemption asks and no more.
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<u64> = (0..3).map(|i| e.transitions(i)).collect();
    let outage = client.outage(t_heal, Instant::now());
    println!(
        "partition healed: lb0 master after {} ms, client outage {} ms, transitions {before:?} -> {after:?}",
        ms(took),
        ms(outage)
    );
    assert_eq!(after[0] - before[0], 2, "lb0: master -> backup -> master");
    assert_eq!(after[1] - before[1], 2, "lb1: backup -> master -> backup");
    assert_eq!(after[2], before[2], "lb2 must not move");
    assert!(outage < MOVE_BACK, "outage {outage:?}");
    assert_settled(&client);
}

/// VRRP between lb0 and the others is cut: lb0 and lb1 are both master. Healed: one master within one interval
/// plus slack, and the client ends up working through it.
///
/// The cut: strict reverse-path filtering plus a blackhole route to the peers' addresses, inside the LB
/// namespaces only, so their (multicast) advertisements fail source validation and are dropped on input.
/// Client and apiserver traffic is untouched.
#[test]
fn split_brain_heals_to_one_master_and_the_client_follows() {
    let e = E2e::new("e2esplit", 3, |s| s);
    let client = e.client(NO_RETRY);
    assert!(client.wait_successes_after(Instant::now(), 10, Duration::from_secs(10)));

    let pairs = [(0, 1), (0, 2), (1, 0), (2, 0)];
    let lb_ip = |i: usize| format!("{}/32", e.lab.node(&format!("lb{i}")).v4);
    for i in 0..3 {
        e.lb_ns(i)
            .sysctl("net.ipv4.conf.all.rp_filter", "1")
            .unwrap();
    }
    for (i, peer) in pairs {
        e.lb_ns(i)
            .run(["ip", "route", "add", "blackhole", &lb_ip(peer)])
            .unwrap();
    }
    let both = wait_for(MASTER_DOWN + SLACK, || {
        (e.node(0).state().as_deref() == Some("master")
            && e.node(1).state().as_deref() == Some("master"))
        .then_some(())
    });
    assert!(both.is_some(), "no split brain: {:?}", e.states());
    assert_eq!(e.node(2).state().as_deref(), Some("backup"));
    assert!(client.wait_successes_after(Instant::now(), 10, Duration::from_secs(10)));

    let t_heal = Instant::now();
    for (i, peer) in pairs {
        e.lb_ns(i)
            .run(["ip", "route", "del", "blackhole", &lb_ip(peer)])
            .unwrap();
    }
    let one = wait_for(Duration::from_millis(100) + SLACK, || {
        (e.node(1).state().as_deref() == Some("backup") && !e.holds_vip(1))
            .then_some(t_heal.elapsed())
    });
    let took = one.unwrap_or_else(|| panic!("still two masters: {:?}", e.states()));
    e.wait_master(0, SLACK);
    // The client ends on lb0: its requests succeed and go through lb0's proxy, none through lb1's.
    std::thread::sleep(Duration::from_millis(500));
    let (c0, c1) = (e.total_connections(0), e.total_connections(1));
    let client_ns = &e.lab.node("client").ns;
    let vip_mac = client_ns.neigh_mac(vip());
    let lb_macs: Vec<&str> = (0..3)
        .map(|i| e.lab.node(&format!("lb{i}")).mac.as_str())
        .collect();
    let settled = Instant::now();
    let ok = client.wait_successes_after(settled, 20, Duration::from_secs(10));
    let outage = client.outage(t_heal, Instant::now());
    println!(
        "split brain healed: one master after {} ms, client outage {} ms",
        ms(took),
        ms(outage)
    );
    assert!(
        ok,
        "the client does not work after the heal (outage {outage:?}); last samples {:?}",
        client.samples().iter().rev().take(3).collect::<Vec<_>>()
    );
    let fails = client.failures(settled, Instant::now());
    assert!(
        fails.is_empty(),
        "{} failed requests after the heal, e.g. {:?}; the client's neighbour entry for the VIP: {vip_mac:?}, \
         LB MACs {lb_macs:?}",
        fails.len(),
        fails.first()
    );
    assert!(e.total_connections(0) >= c0 + 20);
    assert_eq!(
        e.total_connections(1),
        c1,
        "client traffic still reaches lb1"
    );
    assert!(
        outage < Duration::from_millis(100) + SLACK,
        "outage {outage:?}"
    );
}

/// SIGHUP with a new backend list while watches stay open and the client keeps asking: no established
/// connection is dropped, no request fails, the new list is in /status and new requests follow it.
#[test]
fn reload_with_new_backends_under_load_drops_nothing() {
    let mut e = E2e::new("e2ereload", 4, |s| s);
    let watches = start_watches(&e, 6);
    let client = e.client(NO_RETRY);
    let t0 = Instant::now();
    assert!(client.wait_successes_after(t0, 10, Duration::from_secs(10)));

    let new_list = e.api_addrs[1..4].to_vec();
    let t_reload = Instant::now();
    for i in 0..3 {
        e.specs[i].backends = new_list.clone();
        e.node(i).write_config(&e.specs[i]).unwrap();
        e.node(i).signal(Signal::SIGHUP).unwrap();
    }
    let want: Vec<String> = new_list.iter().map(|a| a.to_string()).collect();
    for i in 0..3 {
        let applied = wait_for(Duration::from_secs(10), || {
            let s = e.node(i).status().ok()?;
            let b = s["backends"].as_array()?;
            let addrs: Vec<String> = b
                .iter()
                .filter_map(|x| x["address"].as_str().map(str::to_string))
                .collect();
            let healthy = b.iter().all(|x| x["healthy"].as_bool() == Some(true));
            (addrs == want && healthy).then_some(())
        });
        assert!(
            applied.is_some(),
            "lb{i} /status: {:?}\n{}",
            e.node(i).status(),
            e.log(i)
        );
    }
    assert_eq!(e.states()[0].as_deref(), Some("master"));
    let t_applied = Instant::now();
    assert!(client.wait_successes_after(t_applied, 40, Duration::from_secs(15)));
    let t_end = Instant::now();

    let fails = client.failures(t0, t_end);
    assert!(fails.is_empty(), "failed requests: {fails:?}");
    // Leastconn: the watches weigh on api1 and api2, so one-shot requests go to the new api3; never api0.
    let names = client.names(t_applied, t_end);
    assert!(names.contains(&"api3".to_string()), "{names:?}");
    assert!(!names.contains(&"api0".to_string()), "{names:?}");
    for w in &watches {
        assert_eq!(w.ended(), None, "a watch to {:?} broke", w.server());
        let silence = w.longest_silence(t_reload, t_end);
        assert!(
            silence < Duration::from_secs(1),
            "a watch to {:?} went silent for {silence:?}",
            w.server()
        );
    }
    println!(
        "reload: {} watches kept, {} requests without failure",
        watches.len(),
        client.between(t0, t_end).len()
    );
}
