//! The migration from Keepalived + HAProxy to vipd, node by node, as the README's guide tells an operator to
//! do it, with a client on the VIP the whole time.
//!
//! Three control-plane nodes `cp0..cp2` each run a fake apiserver on `:6443`, Keepalived 2.2 and HAProxy 2.6
//! configured as the kubeadm HA guide shows (VRRPv2 with `auth_type PASS`, a `check_apiserver` track script
//! with weight -2, HAProxy in TCP mode on `*:8443` with one `server` line per apiserver, HTTPS checks with
//! `verify none`); priorities 101 (cp0, `state MASTER`), 100 and 100. A client sends `GET /version` through
//! VIP:8443 (TLS verified against the cluster CA) every 50 ms on a fresh connection.
//!
//! 1. Baseline: one graceful handover of the Keepalived cluster (Keepalived stopped on the master, then
//!    started again: the VIP goes and comes back), to measure what "one graceful handover" costs here.
//! 2. One node at a time, backups first: `vipd import` its two files, stop Keepalived and HAProxy, start
//!    `vipd run` with the imported config (the only edit: `health.caFile`, the lab's CA).
//! 3. One node at a time: `version: 3`, `authPass` removed, SIGHUP.
//!
//! Asserted throughout: never two VIP holders for longer than the instant of a handover; each step's
//! longest client outage at most one graceful handover (the baseline, plus slack for a loaded machine);
//! after each step cp0 holds the VIP alone, and during step 3 it never lets go; at the end requests succeed.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use vipd_lab::apiserver::{ClientOpts, FakeProcess, ServerCertSpec, TestPki};
use vipd_lab::client::{Probe, ProbeSpec};
use vipd_lab::netns::{wait_for, Lab, Node, Proc, TempDir};
use vipd_lab::vipd::{metric_value, VipdNode};

const VIP: &str = "192.0.2.100";
const PORT: u16 = 8443;
const NODES: [&str; 3] = ["cp0", "cp1", "cp2"];
/// The kubeadm guide: 101 on the node that starts as MASTER, 100 on the others.
const PRIORITIES: [u8; 3] = [101, 100, 100];
/// Two holders at once are allowed only as long as a handover takes (the new master adds the VIP a
/// moment before the old one has removed it), sampled every [`HOLDER_SAMPLE`].
const MAX_DUAL: Duration = Duration::from_millis(1000);
const HOLDER_SAMPLE: Duration = Duration::from_millis(50);
/// Added to the measured graceful handover: a loaded 2-core machine, one request in flight at the move
/// running into its 1 s timeout.
const SLACK: Duration = Duration::from_millis(2000);
/// How long the VIP must stay on one node for the cluster to count as settled.
const SETTLED: Duration = Duration::from_secs(3);

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

fn vip_sock() -> SocketAddr {
    SocketAddr::new(vip(), PORT)
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ---------------------------------------------------------------------------------------------------------
// One node's Keepalived + HAProxy, configured as the kubeadm HA guide shows
// ---------------------------------------------------------------------------------------------------------

fn keepalived_conf(i: usize, dir: &Path) -> String {
    let state = if i == 0 { "MASTER" } else { "BACKUP" };
    format!(
        "! /etc/keepalived/keepalived.conf\n\
         ! Configuration File for keepalived\n\
         global_defs {{\n    router_id LVS_DEVEL\n}}\n\
         vrrp_script check_apiserver {{\n  script \"{script}\"\n  interval 1\n  weight -2\n  fall 10\n  rise 2\n}}\n\n\
         vrrp_instance VI_1 {{\n    state {state}\n    interface eth0\n    virtual_router_id 51\n    \
         priority {prio}\n    authentication {{\n        auth_type PASS\n        auth_pass 42\n    }}\n    \
         virtual_ipaddress {{\n        {VIP}\n    }}\n    track_script {{\n        check_apiserver\n    }}\n}}\n",
        script = dir.join("check_apiserver.sh").display(),
        prio = PRIORITIES[i],
    )
}

/// The guide's check script, reduced to its first line: the local apiserver answers.
fn check_script(ip: IpAddr) -> String {
    format!(
        "#!/bin/sh\ncurl --silent --max-time 2 --insecure https://{ip}:6443/healthz -o /dev/null || exit 1\n"
    )
}

fn haproxy_cfg(servers: &[SocketAddr]) -> String {
    let mut s = String::from(
        "# /etc/haproxy/haproxy.cfg\nglobal\n    log stdout format raw local0\n    daemon\n\n\
         defaults\n    mode                    http\n    log                     global\n    \
         option                  httplog\n    option                  dontlognull\n    \
         option http-server-close\n    option forwardfor       except 127.0.0.0/8\n    \
         option                  redispatch\n    retries                 1\n    \
         timeout http-request    10s\n    timeout queue           20s\n    timeout connect         5s\n    \
         timeout client          35s\n    timeout server          35s\n    \
         timeout http-keep-alive 10s\n    timeout check           10s\n\n",
    );
    s.push_str(&format!(
        "frontend apiserver\n    bind *:{PORT}\n    mode tcp\n    option tcplog\n    default_backend apiserverbackend\n\n"
    ));
    s.push_str(
        "backend apiserverbackend\n    option httpchk\n\n    http-check connect ssl\n    \
         http-check send meth GET uri /healthz\n    http-check expect status 200\n\n    mode tcp\n    \
         balance     roundrobin\n\n",
    );
    for (i, a) in servers.iter().enumerate() {
        s.push_str(&format!("    server cp{i} {a} check verify none\n"));
    }
    s
}

/// Keepalived (its parent; the VRRP child's PID from its pid file) and HAProxy on one node.
struct Pair {
    ka: Proc,
    vrrp_pid: i32,
    haproxy: Proc,
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn start_keepalived(node: &Node, dir: &Path) -> (Proc, i32) {
    let pidfile = dir.join("vrrp.pid");
    let _ = std::fs::remove_file(&pidfile);
    let mut k = node.ns.command("keepalived");
    k.args(["-n", "-l", "-D", "-P", "-f"])
        .arg(dir.join("keepalived.conf"))
        .arg("-p")
        .arg(dir.join("ka.pid"))
        .arg("-r")
        .arg(&pidfile)
        .arg("-c")
        .arg(dir.join("checkers.pid"));
    let ka = node.ns.spawn(k).unwrap();
    let vrrp_pid = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
    });
    let Some(vrrp_pid) = vrrp_pid else {
        panic!(
            "keepalived on {} wrote no VRRP pid: {:?}",
            node.name,
            ka.lines()
        );
    };
    (ka, vrrp_pid)
}

impl Pair {
    fn start(node: &Node, dir: &Path) -> Pair {
        let mut h = node.ns.command("haproxy");
        h.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
        let haproxy = node.ns.spawn(h).unwrap();
        let (ka, vrrp_pid) = start_keepalived(node, dir);
        Pair {
            ka,
            vrrp_pid,
            haproxy,
        }
    }

    /// `systemctl stop keepalived`: SIGTERM to the parent, which stops its VRRP child (a master sends
    /// priority 0 and removes the VIP). The child is not ours: killed by PID only if it outlives its parent.
    fn stop_keepalived(&mut self) {
        self.ka.stop(Signal::SIGTERM, Duration::from_secs(10));
        let pid = self.vrrp_pid;
        if wait_for(Duration::from_secs(5), || (!alive(pid)).then_some(())).is_none() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// `systemctl stop keepalived haproxy`, in that order: the VIP leaves before the listener does.
    fn stop(&mut self) {
        self.stop_keepalived();
        self.haproxy.stop(Signal::SIGTERM, Duration::from_secs(10));
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What runs on a node: the old pair or vipd.
enum Lb {
    Pair(Pair),
    Vipd(VipdNode),
    None,
}

// ---------------------------------------------------------------------------------------------------------
// The client and the VIP-holder watch
// ---------------------------------------------------------------------------------------------------------

/// When a sample was taken, and which nodes held the VIP then.
type HolderSample = (Instant, Vec<String>);

/// Samples which nodes hold the VIP, every [`HOLDER_SAMPLE`], on its own thread.
struct HolderWatch {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<HolderSample>>>,
    handle: Option<JoinHandle<()>>,
}

impl HolderWatch {
    fn start(ns_names: Vec<(String, String)>) -> HolderWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop2, samples2) = (stop.clone(), samples.clone());
        let handle = std::thread::spawn(move || {
            let hard_stop = Instant::now() + Duration::from_secs(900);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < hard_stop {
                let at = Instant::now();
                let held: Vec<String> = ns_names
                    .iter()
                    .filter(|(_, ns)| ns_has_vip(ns))
                    .map(|(name, _)| name.clone())
                    .collect();
                samples2.lock().unwrap().push((at, held));
                std::thread::sleep(HOLDER_SAMPLE);
            }
        });
        HolderWatch {
            stop,
            samples,
            handle: Some(handle),
        }
    }

    /// The longest stretch in [from, to] during which two or more nodes held the VIP, and who they were.
    fn longest_dual(&self, from: Instant, to: Instant) -> (Duration, Vec<String>) {
        let samples = self.samples.lock().unwrap().clone();
        let mut worst = (Duration::ZERO, Vec::new());
        let mut since: Option<Instant> = None;
        for (at, held) in samples.iter().filter(|(at, _)| *at >= from && *at <= to) {
            if held.len() >= 2 {
                let start = *since.get_or_insert(*at);
                // The stretch lasts at least until the next sample: count it to this one's end.
                let len = at.saturating_duration_since(start) + HOLDER_SAMPLE;
                if len > worst.0 {
                    worst = (len, held.clone());
                }
            } else {
                since = None;
            }
        }
        worst
    }

    /// Waits (bounded) until `who` alone has held the VIP for [`SETTLED`].
    fn wait_settled_on(&self, who: &str, timeout: Duration) -> bool {
        wait_for(timeout, || {
            let samples = self.samples.lock().unwrap();
            let last = samples.last()?.0;
            let recent: Vec<_> = samples
                .iter()
                .filter(|(at, _)| last.saturating_duration_since(*at) <= SETTLED)
                .collect();
            let spans = recent.first().is_some_and(|(at, _)| {
                last.saturating_duration_since(*at) >= SETTLED - HOLDER_SAMPLE
            });
            (spans && recent.iter().all(|(_, h)| h.len() == 1 && h[0] == who)).then_some(())
        })
        .is_some()
    }

    /// Who else held (or nobody held) the VIP in [from, to], if `who` did not hold it alone throughout.
    fn not_always(&self, who: &str, from: Instant, to: Instant) -> Option<Vec<String>> {
        let samples = self.samples.lock().unwrap();
        samples
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .find(|(_, h)| !(h.len() == 1 && h[0] == who))
            .map(|(_, h)| h.clone())
    }

    fn now_held(&self) -> Vec<String> {
        self.samples
            .lock()
            .unwrap()
            .last()
            .map(|s| s.1.clone())
            .unwrap_or_default()
    }
}

impl Drop for HolderWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn ns_has_vip(ns: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "addr", "show", "dev", "eth0"])
        .output();
    let Ok(out) = out else { return false };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array().into_iter().flatten().any(|link| {
        link["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["local"].as_str() == Some(VIP))
    })
}

// ---------------------------------------------------------------------------------------------------------
// The migration
// ---------------------------------------------------------------------------------------------------------

/// The lab. Field order is drop order: load balancers and apiservers before the namespaces and files.
struct Cluster {
    lbs: Vec<Lb>,
    _apis: Vec<FakeProcess>,
    dirs: Vec<TempDir>,
    pki: TestPki,
    lab: Lab,
}

impl Cluster {
    fn new() -> Cluster {
        let mut lab = Lab::new("mig").unwrap();
        for n in NODES {
            lab.add_node(n).unwrap();
        }
        lab.add_node("client").unwrap();
        let pki = TestPki::new("mig-ca").unwrap();
        let addrs: Vec<SocketAddr> = NODES
            .iter()
            .map(|n| SocketAddr::new(IpAddr::V4(lab.node(n).v4), 6443))
            .collect();
        let mut apis = Vec::new();
        let mut dirs = Vec::new();
        let mut lbs = Vec::new();
        for (i, n) in NODES.iter().enumerate() {
            let node = lab.node(n);
            let cert = pki
                .server_cert(n, &ServerCertSpec::ips([addrs[i].ip(), vip()]))
                .unwrap();
            let api = FakeProcess::spawn_https_in(node.ns.name(), addrs[i], &cert, n, &[]).unwrap();
            apis.push(api);
            let dir = TempDir::new(&format!("mig-{n}")).unwrap();
            let script = dir.join("check_apiserver.sh");
            std::fs::write(&script, check_script(addrs[i].ip())).unwrap();
            std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            std::fs::write(dir.join("keepalived.conf"), keepalived_conf(i, dir.path())).unwrap();
            std::fs::write(dir.join("haproxy.cfg"), haproxy_cfg(&addrs)).unwrap();
            lbs.push(Lb::Pair(Pair::start(node, dir.path())));
            dirs.push(dir);
        }
        Cluster {
            lbs,
            _apis: apis,
            dirs,
            pki,
            lab,
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.lab.node(NODES[i])
    }

    /// `GET /version` through the VIP every 50 ms, a fresh connection each, TLS verified against the CA,
    /// each attempt bounded at 1 s; from a thread in the client namespace until dropped (or fifteen minutes).
    fn client(&self) -> Probe {
        let opts = ClientOpts {
            ca: Some(self.pki.ca_cert().to_path_buf()),
            server_name: None,
            client_cert: None,
            timeout: Some(Duration::from_secs(1)),
        };
        let spec = ProbeSpec::new(vip_sock(), opts)
            .pause(Duration::from_millis(50))
            .max_run(Duration::from_secs(900));
        Probe::start(self.lab.node("client").ns.name(), spec).unwrap()
    }

    fn pair(&mut self, i: usize) -> &mut Pair {
        match &mut self.lbs[i] {
            Lb::Pair(p) => p,
            _ => panic!("{} does not run Keepalived + HAProxy", NODES[i]),
        }
    }

    fn vipd(&self, i: usize) -> &VipdNode {
        match &self.lbs[i] {
            Lb::Vipd(v) => v,
            _ => panic!("{} does not run vipd", NODES[i]),
        }
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.dirs[i].join("vipd.yaml")
    }

    /// `vipd import` on the node's two files, as the operator runs it; the output goes to vipd.yaml with
    /// the one edit the lab needs (its CA instead of /etc/kubernetes/pki/ca.crt). Returns the warnings.
    fn import(&self, i: usize) -> String {
        let dir = self.dirs[i].path();
        let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
            .arg("import")
            .arg("--keepalived")
            .arg(dir.join("keepalived.conf"))
            .arg("--haproxy")
            .arg(dir.join("haproxy.cfg"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "vipd import on {}: {stderr}",
            NODES[i]
        );
        let yaml = String::from_utf8(out.stdout).unwrap();
        for want in [
            "  version: mixed",
            "  authPass: \"42\"",
            "controlPlaneLBPort: 8443",
        ] {
            assert!(
                yaml.contains(want),
                "{want:?} missing from the import:\n{yaml}"
            );
        }
        let ca = format!("health:\n  caFile: \"{}\"\n", self.pki.ca_cert().display());
        let yaml = yaml.replacen("health:\n", &ca, 1);
        std::fs::write(self.config_path(i), &yaml).unwrap();
        let check = Command::new(env!("CARGO_BIN_EXE_vipd"))
            .arg("validate")
            .arg("--config")
            .arg(self.config_path(i))
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "vipd validate refused the import on {}: {}",
            NODES[i],
            String::from_utf8_lossy(&check.stderr)
        );
        stderr
    }

    /// The node's move: import, stop Keepalived and HAProxy, start vipd, wait until it reports a state.
    fn migrate(&mut self, i: usize) {
        let warnings = self.import(i);
        assert!(
            warnings.contains("track_script check_apiserver: replaced by vipd's own health checks"),
            "{warnings}"
        );
        self.pair(i).stop();
        self.lbs[i] = Lb::None;
        let node = self.node(i);
        let v = VipdNode::start_with_config(
            Path::new(env!("CARGO_BIN_EXE_vipd")),
            &node.ns,
            &self.config_path(i),
            "127.0.0.1:9440".parse().unwrap(),
        )
        .unwrap();
        let up = wait_for(Duration::from_secs(20), || {
            v.state().filter(|s| s == "backup" || s == "master")
        });
        assert!(
            up.is_some(),
            "vipd on {} did not start: {:?}",
            NODES[i],
            v.proc.lines()
        );
        self.lbs[i] = Lb::Vipd(v);
    }

    /// The last move: `version: 3`, no authPass, SIGHUP; waits until the reload is counted.
    fn to_v3(&self, i: usize) {
        let path = self.config_path(i);
        let text = std::fs::read_to_string(&path).unwrap();
        let v3: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("authPass:"))
            .map(|l| {
                if l.trim_start().starts_with("version: mixed") {
                    "  version: 3\n".to_string()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert_ne!(text, v3);
        std::fs::write(&path, v3).unwrap();
        let v = self.vipd(i);
        let before = v.metric("vipd_config_reloads_total").unwrap_or(0.0);
        v.signal(Signal::SIGHUP).unwrap();
        let done = wait_for(Duration::from_secs(10), || {
            (v.metric("vipd_config_reloads_total")? > before).then_some(())
        });
        assert!(
            done.is_some(),
            "{} did not reload: {:?}",
            NODES[i],
            v.proc.lines()
        );
    }
}

/// Waits until cp0 alone holds the VIP for [`SETTLED`] and the client has had fresh successes; returns the
/// step's longest outage and longest two-holder stretch.
fn settle(c: &Probe, w: &HolderWatch, step: &str, t0: Instant) -> (Duration, Duration) {
    assert!(
        w.wait_settled_on("cp0", Duration::from_secs(40)),
        "{step}: cp0 does not hold the VIP alone (holders now {:?})",
        w.now_held()
    );
    let t = Instant::now();
    assert!(
        c.wait_successes_after(t, 5, Duration::from_secs(10)),
        "{step}: no requests succeed: {:?}",
        c.last_failures(3)
    );
    let end = Instant::now();
    let outage = c.outage(t0, end);
    let (dual, who) = w.longest_dual(t0, end);
    eprintln!(
        "{step}: longest client outage {} ms, longest two-holder stretch {} ms {who:?}",
        ms(outage),
        ms(dual)
    );
    assert!(
        dual <= MAX_DUAL,
        "{step}: {who:?} held the VIP together for {dual:?}"
    );
    (outage, dual)
}

#[test]

fn keepalived_haproxy_cluster_moves_to_vipd_node_by_node() {
    let mut cl = Cluster::new();
    let names = NODES
        .iter()
        .map(|n| (n.to_string(), cl.lab.node(n).ns.name().to_string()))
        .collect();
    let watch = HolderWatch::start(names);
    assert!(
        watch.wait_settled_on("cp0", Duration::from_secs(40)),
        "the Keepalived cluster did not settle on cp0: holders {:?}",
        watch.now_held()
    );
    let client = cl.client();
    let t = Instant::now();
    assert!(
        client.wait_successes_after(t, 5, Duration::from_secs(20)),
        "no request through HAProxy succeeds: {:?}",
        client.last_failures(3)
    );

    // 1. What one graceful handover costs: Keepalived stopped on the master, and started again.
    let t0 = Instant::now();
    cl.pair(0).stop_keepalived();
    assert!(
        wait_for(Duration::from_secs(15), || {
            let h = watch.now_held();
            (h.len() == 1 && h[0] != "cp0").then_some(())
        })
        .is_some(),
        "no backup took the VIP"
    );
    let t = Instant::now();
    assert!(client.wait_successes_after(t, 5, Duration::from_secs(10)));
    let away = client.outage(t0, Instant::now());
    let t1 = Instant::now();
    let dir = cl.dirs[0].path().to_path_buf();
    let (ka, vrrp_pid) = start_keepalived(cl.node(0), &dir);
    let p = cl.pair(0);
    p.ka = ka;
    p.vrrp_pid = vrrp_pid;
    let (back, _) = settle(&client, &watch, "baseline: Keepalived restarted on cp0", t1);
    let handover = away.max(back);
    let bound = handover + SLACK;
    eprintln!(
        "baseline: graceful handover away {} ms, back {} ms; bound per step {} ms",
        ms(away),
        ms(back),
        ms(bound)
    );

    // 2. Node by node, backups first.
    for i in [2, 1, 0] {
        let t0 = Instant::now();
        cl.migrate(i);
        let step = format!("{} moved to vipd", NODES[i]);
        let (outage, _) = settle(&client, &watch, &step, t0);
        assert!(
            outage <= bound,
            "{step}: client outage {outage:?} > {bound:?}"
        );
    }
    // Every node is vipd now; cp0's vipd speaks both versions.
    let st = cl.vipd(0).status().unwrap();
    assert_eq!(st["vrrp"]["state"], "master", "{st}");

    // 3. version: 3, one reload at a time: applied in place, the VIP stays where it is.
    for i in [2, 1, 0] {
        let t0 = Instant::now();
        cl.to_v3(i);
        let step = format!("{} reloaded with version: 3", NODES[i]);
        let (outage, _) = settle(&client, &watch, &step, t0);
        assert!(
            outage <= bound,
            "{step}: client outage {outage:?} > {bound:?}"
        );
        let moved = watch.not_always("cp0", t0, Instant::now());
        assert!(
            moved.is_none(),
            "{step}: the VIP left cp0 (held by {moved:?})"
        );
    }

    // The end: the highest priority holds the VIP, requests succeed, nobody is in fault.
    for (i, name) in NODES.iter().enumerate() {
        let s = cl.vipd(i).state();
        let want = if i == 0 { "master" } else { "backup" };
        assert_eq!(
            s.as_deref(),
            Some(want),
            "{name}: {:?}",
            cl.vipd(i).proc.lines()
        );
    }
    let t = Instant::now();
    assert!(client.wait_successes_after(t, 10, Duration::from_secs(10)));
    assert_eq!(
        metric_value(
            &cl.vipd(0).admin_get("/metrics").unwrap().1,
            "vipd_config_reload_failures_total"
        ),
        Some(0.0)
    );
}
