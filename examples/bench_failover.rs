//! Failover and footprint benchmark: vipd against Keepalived 2.2 (VRRP) + HAProxy 2.6 (TCP proxy, health
//! checks) doing the same job in the namespace lab of `vipd-lab`, in the same run. `bench/run.sh` builds and
//! runs it and writes `bench/RESULTS-failover.md`; this program prints (and writes with `--out`) the markdown
//! tables.
//!
//! Lab: `lb0` (priority 150, the master) and `lb1` (priority 100) run the load balancer; `client` measures;
//! `be0..be2` run `fake-apiserver` over TLS on :6443. Outage = from the fault to the completion of the first
//! TCP connect to VIP:443 after which no connect fails (connects are started every 5 ms, each given 200 ms; in
//! the lab a connect either completes in well under a millisecond or its SYN was lost).
//!
//! Every process is a `Proc` guard (killed and reaped by PID on drop); the Keepalived + HAProxy nodes are
//! `vipd_lab::pair`'s, the chaos run's too (Keepalived's VRRP child is killed by the PID from its pid file);
//! namespaces are removed by their guards, and every wait is bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use nix::sys::signal::Signal;
use vipd_lab::apiserver::{fake_apiserver_bin, ServerCertSpec, TestPki};
use vipd_lab::chaos::world::{Imp, Lb};
use vipd_lab::netns::{wait_for, Lab, Proc, TempDir};
use vipd_lab::pair::{PairCheck, PairNode, PairSpec};
use vipd_lab::vipd::{in_netns, HealthSpec, VipdNode, VipdSpec};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const PORT: u16 = 443;
const PRIO_MASTER: u8 = 150;
const PRIO_BACKUP: u8 = 100;
/// Connects are started this often while measuring an outage (the measurement's resolution).
const PROBE_EVERY: Duration = Duration::from_millis(5);
/// A connect not done by then lost its SYN (the lab's round trip is tens of microseconds).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(200);
/// The outage is over once this many connects in a row succeeded.
const STABLE_SUCCESSES: usize = 60;
/// Connection cap of both proxies: two descriptors per connection must fit the file limit (20,000 here).
const MAXCONN: usize = 9800;

#[derive(Debug, Parser)]
#[command(about = "vipd vs Keepalived + HAProxy: failover outage and footprint")]
struct Args {
    /// Trials per row at the 100 ms interval.
    #[arg(long, default_value_t = 20)]
    trials_fast: usize,
    /// Trials per row at the 1 s interval (each takes ~10 s).
    #[arg(long, default_value_t = 5)]
    trials_slow: usize,
    /// Seconds of each idle footprint sample.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Connection counts held through the proxy, ascending.
    #[arg(long, default_value = "1000,5000,9000")]
    conns: String,
    /// Seconds of wrk load through the proxy.
    #[arg(long, default_value_t = 10)]
    load_secs: u64,
    /// failover | footprint | all
    #[arg(long, default_value = "all")]
    only: String,
    /// Also write the markdown here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The vipd binary (default: next to this example's directory, i.e. target/<profile>/vipd).
    #[arg(long)]
    vipd: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Crash,
    LinkCut,
    Graceful,
}

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Fault::Crash => "master crash (kill -9)",
            Fault::LinkCut => "link cut (switch port down)",
            Fault::Graceful => "graceful stop (SIGTERM)",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Health {
    https: bool,
    interval: Duration,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The processes of a node's load balancer, named, whose footprint is measured: vipd, or Keepalived's parent
/// and VRRP child and HAProxy.
fn labelled_pids(lb: &Lb) -> Vec<(&'static str, i32)> {
    match lb {
        Lb::Vipd(v) => vec![("vipd", v.pid())],
        Lb::Pair(p) => vec![
            ("keepalived", p.ka.pid()),
            ("keepalived-vrrp", p.vrrp_pid),
            ("haproxy", p.haproxy.pid()),
        ],
    }
}

/// A graceful stop, not waited for: vipd's SIGTERM, keepalived's SIGTERM (HAProxy stays, as when an operator
/// stops keepalived for maintenance).
fn graceful(lb: &Lb) {
    match lb {
        Lb::Vipd(v) => {
            let _ = v.signal(Signal::SIGTERM);
        }
        Lb::Pair(p) => p.sigterm_keepalived(),
    }
}

struct Bench {
    // Field order: processes before the lab (namespaces) and the PKI files.
    _backends: Vec<Proc>,
    lab: Lab,
    pki: TestPki,
    dir: TempDir,
    vipd_bin: PathBuf,
}

impl Bench {
    fn new(vipd_bin: PathBuf) -> Result<Bench> {
        let mut lab = Lab::new("bfo")?;
        for n in ["lb0", "lb1", "client", "be0", "be1", "be2"] {
            lab.add_node(n)?;
        }
        for n in ["lb0", "lb1", "client"] {
            let ns = &lab.node(n).ns;
            ns.sysctl("net.ipv4.ip_local_port_range", "1024 65000")?;
            // HAProxy binds the VIP before holding it (vipd uses IP_FREEBIND on its socket instead).
            ns.sysctl("net.ipv4.ip_nonlocal_bind", "1")?;
        }
        let pki = TestPki::new("bench-ca")?;
        let fake = fake_apiserver_bin();
        let mut backends = Vec::new();
        for n in ["be0", "be1", "be2"] {
            let node = lab.node(n);
            let cert = pki.server_cert(n, &ServerCertSpec::ips([IpAddr::V4(node.v4)]))?;
            let mut c = node.ns.command(&fake);
            c.arg("--listen")
                .arg(format!("{}:6443", node.v4))
                .arg("--cert")
                .arg(&cert.cert)
                .arg("--key")
                .arg(&cert.key)
                .arg("--name")
                .arg(n);
            let p = node.ns.spawn(c)?;
            p.wait_line(Duration::from_secs(10), |l| l.trim() == "serving")
                .ok_or_else(|| anyhow!("fake-apiserver on {n} did not start"))?;
            backends.push(p);
        }
        Ok(Bench {
            _backends: backends,
            lab,
            pki,
            dir: TempDir::new("bfo-cfg")?,
            vipd_bin,
        })
    }

    fn backend_addrs(&self) -> Vec<SocketAddr> {
        ["be0", "be1", "be2"]
            .iter()
            .map(|n| SocketAddr::new(IpAddr::V4(self.lab.node(n).v4), 6443))
            .collect()
    }

    fn start(&self, imp: Imp, node: &str, prio: u8, adv: Duration, h: Health) -> Result<Lb> {
        let ns = &self.lab.node(node).ns;
        let adv_ms = adv.as_millis() as u64;
        let h_ms = h.interval.as_millis() as u64;
        let timeout_ms = (h_ms / 2).clamp(50, 1000);
        let (rise, fall) = (2, 3);
        match imp {
            Imp::Vipd => {
                let mut spec = VipdSpec::new(IpAddr::V4(VIP), self.backend_addrs(), prio);
                spec.port = PORT;
                spec.advert_interval = leak(format!("{adv_ms}ms"));
                spec.health = if h.https {
                    HealthSpec::Https {
                        ca_file: self.pki.ca_cert().to_path_buf(),
                    }
                } else {
                    HealthSpec::Tcp
                };
                spec.health_interval = leak(format!("{h_ms}ms"));
                spec.health_timeout = leak(format!("{timeout_ms}ms"));
                spec.rise = rise;
                spec.fall = fall;
                let spec = spec
                    .with_extra("proxy", leak(format!("maxConnections: {MAXCONN}")))
                    .with_extra("proxy", "drainTimeout: 2s");
                VipdNode::start(&self.vipd_bin, ns, &spec, self.dir.path()).map(Lb::Vipd)
            }
            Imp::Pair => {
                let spec = PairSpec {
                    node: node.to_string(),
                    vip: VIP,
                    port: PORT,
                    priority: prio,
                    advert_ms: adv_ms,
                    backends: self
                        .backend_addrs()
                        .into_iter()
                        .enumerate()
                        .map(|(i, b)| (format!("be{i}"), b))
                        .collect(),
                    check: if h.https {
                        PairCheck::Https {
                            ca_file: self.pki.ca_cert().to_path_buf(),
                        }
                    } else {
                        PairCheck::Tcp
                    },
                    check_interval_ms: h_ms,
                    check_timeout_ms: timeout_ms,
                    rise,
                    fall,
                    maxconn: MAXCONN,
                };
                PairNode::start(ns, &spec).map(Lb::Pair)
            }
        }
    }

    fn has_vip(&self, node: &str) -> bool {
        self.lab.node(node).ns.has_addr("eth0", IpAddr::V4(VIP))
    }

    /// Starts both nodes and waits until lb0 is the settled master and a client connect through it works.
    fn start_pair_of_nodes(&self, imp: Imp, adv: Duration, h: Health) -> Result<(Lb, Lb)> {
        let n0 = self.start(imp, "lb0", PRIO_MASTER, adv, h)?;
        let n1 = self.start(imp, "lb1", PRIO_BACKUP, adv, h)?;
        let limit = adv * 5 + Duration::from_secs(10);
        wait_for(limit, || {
            (self.has_vip("lb0") && !self.has_vip("lb1")).then_some(())
        })
        .ok_or_else(|| anyhow!("{}: lb0 did not become master", imp.label()))?;
        std::thread::sleep(adv * 3 + Duration::from_millis(300));
        if !self.has_vip("lb0") || self.has_vip("lb1") {
            bail!("{}: mastership not settled on lb0", imp.label());
        }
        let target = SocketAddr::new(IpAddr::V4(VIP), PORT);
        let client = self.lab.node("client").ns.name().to_string();
        let ok = in_netns(&client, move || {
            wait_for(Duration::from_secs(10), || {
                TcpStream::connect_timeout(&target, Duration::from_millis(500))
                    .ok()
                    .map(drop)
            })
        })?;
        if ok.is_none() {
            let logs: Vec<String> = match &n0 {
                Lb::Vipd(v) => v.proc.lines(),
                Lb::Pair(p) => p.haproxy.lines(),
            };
            let tail = logs[logs.len().saturating_sub(5)..].join(" / ");
            bail!("{}: no connect through lb0 ({tail})", imp.label());
        }
        Ok((n0, n1))
    }

    /// Brings the lab back to its initial state after a trial.
    fn reset(&self) {
        let _ = self.lab.link_up("lb0");
        for n in ["lb0", "lb1"] {
            let _ =
                self.lab
                    .node(n)
                    .ns
                    .run(["ip", "addr", "del", &format!("{VIP}/32"), "dev", "eth0"]);
        }
        let _ = self
            .lab
            .node("client")
            .ns
            .run(["ip", "neigh", "flush", "all"]);
    }

    fn trial(&self, imp: Imp, adv: Duration, fault: Fault) -> Result<Option<Duration>> {
        let h = Health {
            https: false,
            interval: Duration::from_secs(1),
        };
        let r = (|| {
            let (mut n0, n1) = self.start_pair_of_nodes(imp, adv, h)?;
            let t0 = match fault {
                Fault::Crash => {
                    let t0 = Instant::now();
                    n0.kill9();
                    t0
                }
                Fault::LinkCut => {
                    self.lab.link_down("lb0")?;
                    Instant::now()
                }
                Fault::Graceful => {
                    let t0 = Instant::now();
                    graceful(&n0);
                    t0
                }
            };
            let out = probe_outage(
                self.lab.node("client").ns.name(),
                SocketAddr::new(IpAddr::V4(VIP), PORT),
                t0,
                adv * 8 + Duration::from_secs(3),
            )?;
            if !self.has_vip("lb1") {
                bail!("{}: lb1 does not hold the VIP after the fault", imp.label());
            }
            drop(n0);
            drop(n1);
            Ok(out)
        })();
        self.reset();
        r
    }
}

/// Starts connects to `target` every [`PROBE_EVERY`] from inside the client namespace; returns when the
/// outage is over (None if it lasted past `max`).
fn probe_outage(
    client_ns: &str,
    target: SocketAddr,
    t0: Instant,
    max: Duration,
) -> Result<Option<Duration>> {
    in_netns(client_ns, move || -> Result<Option<Duration>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, bool, Instant)>();
            let mut results: Vec<Option<(bool, Instant)>> = Vec::new();
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick(), if t0.elapsed() < max => {
                        let i = results.len();
                        results.push(None);
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let r = tokio::time::timeout(ATTEMPT_TIMEOUT, tokio::net::TcpStream::connect(target)).await;
                            let _ = tx.send((i, matches!(r, Ok(Ok(_))), Instant::now()));
                        });
                    }
                    Some((i, ok, at)) = rx.recv() => { results[i] = Some((ok, at)); }
                    _ = tokio::time::sleep(ATTEMPT_TIMEOUT * 2) => {}
                }
                // The resolved prefix, in launch order.
                let done: Vec<(bool, Instant)> = results.iter().map_while(|r| *r).collect();
                let tail_ok = done.len() >= STABLE_SUCCESSES
                    && done[done.len() - STABLE_SUCCESSES..].iter().all(|(ok, _)| *ok);
                let finished = t0.elapsed() >= max && done.len() == results.len();
                if tail_ok || finished {
                    if !tail_ok {
                        return Ok(None);
                    }
                    return Ok(Some(match done.iter().rposition(|(ok, _)| !ok) {
                        None => Duration::ZERO,
                        Some(f) => done[f + 1].1.saturating_duration_since(t0),
                    }));
                }
                if t0.elapsed() > max + Duration::from_secs(5) {
                    bail!("probe did not settle");
                }
            }
        })
    })?
}

// ------------------------------------------------------------------------------------------------------
// Footprint
// ------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    rss_kb: u64,
    hwm_kb: u64,
}

fn mem(pid: i32) -> Mem {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Mem {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
    }
}

/// CPU time of a process: (utime+stime from /proc/PID/stat in seconds, per-thread schedstat in ns by TID).
fn cpu(pid: i32) -> (f64, Vec<(u32, u64)>) {
    let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut threads = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let ns = std::fs::read_to_string(e.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            threads.push((tid, ns));
        }
    }
    threads.sort();
    (ticks as f64 / tck, threads)
}

/// CPU seconds between two samples: nanosecond schedstat when no thread came or went, else the tick count.
fn cpu_delta(a: &(f64, Vec<(u32, u64)>), b: &(f64, Vec<(u32, u64)>)) -> f64 {
    let same = a.1.len() == b.1.len() && a.1.iter().zip(&b.1).all(|(x, y)| x.0 == y.0);
    if same && !a.1.is_empty() {
        a.1.iter()
            .zip(&b.1)
            .map(|(x, y)| y.1.saturating_sub(x.1))
            .sum::<u64>() as f64
            / 1e9
    } else {
        b.0 - a.0
    }
}

#[derive(Debug, Clone, Default)]
struct Sample {
    secs: f64,
    cpu_s: f64,
    mem: Mem,
    /// Per process: (name, cpu s, memory).
    parts: Vec<(&'static str, f64, Mem)>,
}

fn measure(lb: &Lb, secs: f64, during: impl FnOnce()) -> Sample {
    let pids = labelled_pids(lb);
    let a: Vec<_> = pids.iter().map(|(_, p)| cpu(*p)).collect();
    let t = Instant::now();
    during();
    let secs = if secs > 0.0 {
        let left = Duration::from_secs_f64(secs).saturating_sub(t.elapsed());
        std::thread::sleep(left);
        secs
    } else {
        t.elapsed().as_secs_f64()
    };
    let mut s = Sample {
        secs,
        ..Sample::default()
    };
    for ((name, pid), a) in pids.iter().zip(&a) {
        let c = cpu_delta(a, &cpu(*pid));
        let m = mem(*pid);
        s.cpu_s += c;
        s.mem.rss_kb += m.rss_kb;
        s.mem.hwm_kb += m.hwm_kb;
        s.parts.push((name, c, m));
    }
    s
}

fn idle(b: &Bench, imp: Imp, adv: Duration, check: Duration, secs: u64) -> Result<Sample> {
    let h = Health {
        https: true,
        interval: check,
    };
    let (n0, _n1) = b.start_pair_of_nodes(imp, adv, h)?;
    // Health checks rise (2 x interval) and the start-up allocations settle.
    std::thread::sleep(check * 3 + Duration::from_secs(2));
    let s = measure(&n0, secs as f64, || {});
    drop(_n1);
    drop(n0);
    b.reset();
    Ok(s)
}

/// Holds connections opened from the client namespace, on a thread inside it.
struct Holder {
    tx: mpsc::Sender<usize>,
    rx: mpsc::Receiver<Result<usize, String>>,
    th: Option<std::thread::JoinHandle<()>>,
}

impl Holder {
    fn new(ns_name: &str, target: SocketAddr) -> Holder {
        let (tx, crx) = mpsc::channel::<usize>();
        let (ctx, rx) = mpsc::channel();
        let path = format!("/run/netns/{ns_name}");
        let th = std::thread::spawn(move || {
            let entered = std::fs::File::open(&path)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| e.to_string())
                });
            let mut held: Vec<TcpStream> = Vec::new();
            // Each message is a total to reach; a closed channel ends the thread and closes everything.
            while let Ok(want) = crx.recv() {
                if let Err(e) = &entered {
                    let _ = ctx.send(Err(e.clone()));
                    continue;
                }
                let mut err = None;
                while held.len() < want {
                    match TcpStream::connect_timeout(&target, Duration::from_secs(3)) {
                        Ok(s) => held.push(s),
                        Err(e) => {
                            err = Some(format!("after {} connections: {e}", held.len()));
                            break;
                        }
                    }
                }
                let _ = ctx.send(match err {
                    None => Ok(held.len()),
                    Some(e) => Err(e),
                });
            }
        });
        Holder {
            tx,
            rx,
            th: Some(th),
        }
    }

    fn reach(&self, n: usize) -> Result<usize, String> {
        self.tx.send(n).map_err(|e| e.to_string())?;
        self.rx
            .recv_timeout(Duration::from_secs(300))
            .map_err(|e| e.to_string())?
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let (tx, _) = mpsc::channel();
        self.tx = tx;
        if let Some(t) = self.th.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Default)]
struct ConnRun {
    base: Mem,
    /// (connections held, memory after 3 s).
    levels: Vec<(usize, Mem)>,
    /// Idle CPU with the most connections held.
    idle_top: Option<(usize, Sample)>,
    error: Option<String>,
}

fn conns(b: &Bench, imp: Imp, levels: &[usize], secs: u64) -> Result<ConnRun> {
    let h = Health {
        https: true,
        interval: Duration::from_secs(2),
    };
    let (n0, n1) = b.start_pair_of_nodes(imp, Duration::from_secs(1), h)?;
    std::thread::sleep(Duration::from_secs(8));
    let pids = labelled_pids(&n0);
    let sum = || {
        pids.iter().fold(Mem::default(), |acc, (_, p)| {
            let m = mem(*p);
            Mem {
                rss_kb: acc.rss_kb + m.rss_kb,
                hwm_kb: acc.hwm_kb + m.hwm_kb,
            }
        })
    };
    let mut run = ConnRun {
        base: sum(),
        ..ConnRun::default()
    };
    let holder = Holder::new(
        b.lab.node("client").ns.name(),
        SocketAddr::new(IpAddr::V4(VIP), PORT),
    );
    for &n in levels {
        match holder.reach(n) {
            Ok(got) => {
                std::thread::sleep(Duration::from_secs(3));
                run.levels.push((got, sum()));
                if Some(&n) == levels.last() {
                    run.idle_top = Some((got, measure(&n0, secs as f64, || {})));
                }
            }
            Err(e) => {
                run.error = Some(format!("{n} connections: {e}"));
                break;
            }
        }
    }
    drop(holder);
    drop(n1);
    drop(n0);
    b.reset();
    Ok(run)
}

#[derive(Debug, Default)]
struct LoadRun {
    sample: Sample,
    rps: f64,
    wrk: String,
}

fn load(b: &Bench, imp: Imp, secs: u64) -> Result<LoadRun> {
    let h = Health {
        https: true,
        interval: Duration::from_secs(2),
    };
    let (n0, n1) = b.start_pair_of_nodes(imp, Duration::from_secs(1), h)?;
    std::thread::sleep(Duration::from_secs(8));
    let url = format!("https://{VIP}:{PORT}/readyz");
    let mut out = Err(anyhow!("wrk did not run"));
    let sample = measure(&n0, 0.0, || {
        out = b
            .lab
            .node("client")
            .ns
            .run(["wrk", "-t2", "-c50", &format!("-d{secs}s"), &url]);
    });
    drop(n1);
    drop(n0);
    b.reset();
    let wrk = out.context("wrk")?;
    let rps = wrk
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok(LoadRun { sample, rps, wrk })
}

// ------------------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------------------

fn pct(sorted: &[Duration], p: f64) -> Duration {
    // Nearest rank.
    let n = sorted.len();
    let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn sample_row(label: &str, what: &str, s: &Sample) -> String {
    let mut row = format!(
        "| {label} | {what} | {:.3} | {:.2} | {} | {} |",
        s.cpu_s,
        100.0 * s.cpu_s / s.secs.max(1e-9),
        mib(s.mem.rss_kb),
        mib(s.mem.hwm_kb)
    );
    if s.parts.len() > 1 {
        let parts: Vec<String> = s
            .parts
            .iter()
            .map(|(n, c, m)| format!("{n} {c:.3} s / {} MiB", mib(m.rss_kb)))
            .collect();
        row.push_str(&format!(" {} |", parts.join(", ")));
    } else {
        row.push_str(" |");
    }
    row
}

/// The two implementations, in the tables' column order.
const IMPS: [Imp; 2] = [Imp::Vipd, Imp::Pair];

fn main() -> Result<()> {
    let args = Args::parse();
    let vipd_bin = vipd_binary(args.vipd.as_deref())?;
    raise_fd_limit()?;
    let levels = conn_levels(&args.conns)?;
    let mut r = Report::new();
    if args.only == "failover" || args.only == "all" {
        let b = Bench::new(vipd_bin.clone())?;
        failover(&mut r, &b, &args);
        drop(b);
    }
    if args.only == "footprint" || args.only == "all" {
        let b = Bench::new(vipd_bin.clone())?;
        let f = measure_footprint(&r, &b, &args, &levels)?;
        drop(b);
        footprint_table(&mut r, &f, &args, &levels);
        scale_table(&mut r, &f, &args);
        wrk_outputs(&mut r, &f);
    }
    r.emit(format!(
        "Benchmark driver wall time: {:.0} s.",
        r.started.elapsed().as_secs_f64()
    ));
    if let Some(p) = &args.out {
        std::fs::write(p, &r.md).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `--vipd`, or `vipd` in the directory above this example's (target/<profile>/vipd); it must exist.
fn vipd_binary(given: Option<&Path>) -> Result<PathBuf> {
    let vipd_bin = match given {
        Some(p) => p.to_path_buf(),
        None => {
            let exe = std::env::current_exe()?;
            exe.parent()
                .and_then(Path::parent)
                .map(|d| d.join("vipd"))
                .ok_or_else(|| anyhow!("no vipd next to {}", exe.display()))?
        }
    };
    if !vipd_bin.is_file() {
        bail!("{} not found (build it first)", vipd_bin.display());
    }
    Ok(vipd_bin)
}

/// The client holds one socket per connection and each proxy two: soft limit up to the hard one (children
/// inherit it). Raising the hard limit needs CAP_SYS_RESOURCE; tried, not required.
fn raise_fd_limit() -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let want = 1 << 20;
    if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_err() {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raising RLIMIT_NOFILE")?;
        eprintln!("RLIMIT_NOFILE: hard limit {hard} (cannot raise it here)");
    }
    Ok(())
}

/// `--conns`: comma-separated connection counts.
fn conn_levels(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("--conns")
}

/// The markdown being built: each line printed as it is added (a long run shows its tables as they grow),
/// the whole written with `--out` at the end.
struct Report {
    md: String,
    started: Instant,
}

impl Report {
    fn new() -> Report {
        Report {
            md: String::new(),
            started: Instant::now(),
        }
    }

    fn emit(&mut self, line: impl Into<String>) {
        let line = line.into();
        println!("{line}");
        self.md.push_str(&line);
        self.md.push('\n');
    }

    /// A progress line on stderr, stamped with the seconds since the start.
    fn progress(&self, what: std::fmt::Arguments<'_>) {
        eprintln!("[{:>5.0}s] {what}", self.started.elapsed().as_secs_f64());
    }
}

// ------------------------------------------------------------------------------------------------------
// Failover section
// ------------------------------------------------------------------------------------------------------

/// Every (interval, fault, implementation) row of trials, then one verdict per (interval, fault).
fn failover(r: &mut Report, b: &Bench, args: &Args) {
    failover_header(r);
    let mut verdicts = Vec::new();
    for (adv, trials) in [
        (Duration::from_secs(1), args.trials_slow),
        (Duration::from_millis(100), args.trials_fast),
    ] {
        for fault in [Fault::Crash, Fault::LinkCut, Fault::Graceful] {
            let bound = rfc_bound(adv, fault);
            let mut spreads = Vec::new();
            for imp in IMPS {
                let (got, failed) = run_trials(r, b, imp, adv, fault, trials);
                let spread = Spread::of(&got);
                spreads.extend(spread);
                r.emit(outage_row(adv, fault, imp, trials, spread, &failed, bound));
            }
            if let [vipd, pair] = spreads[..] {
                verdicts.push(verdict(adv, fault, vipd, pair));
            }
        }
    }
    r.emit("");
    for v in verdicts {
        r.emit(v);
    }
    r.emit("");
}

fn failover_header(r: &mut Report) {
    r.emit("## Failover: client-visible outage\n");
    r.emit(format!(
        "Outage from the fault to the first TCP connect to VIP:{PORT} after which none fails (connects \
         started every {} ms). Master priority {PRIO_MASTER}, backup {PRIO_BACKUP}, preempt on, multicast. \
         RFC bound: 3 x interval + skew ((256 - {PRIO_BACKUP}) / 256 x interval); graceful: skew.\n",
        PROBE_EVERY.as_millis()
    ));
    r.emit(
        "| interval | fault | implementation | trials | median ms | p95 ms | worst ms | RFC bound ms | failed trials |",
    );
    r.emit("|---|---|---|---|---|---|---|---|---|");
}

/// RFC 9568's longest outage: the backup's Master_Down_Interval (3 x interval + skew), or only the skew when
/// the master says goodbye with priority 0.
fn rfc_bound(adv: Duration, fault: Fault) -> Duration {
    let skew = adv.mul_f64((256 - PRIO_BACKUP as u32) as f64 / 256.0);
    match fault {
        Fault::Graceful => skew,
        _ => adv * 3 + skew,
    }
}

/// `trials` trials of one row: the outages measured (sorted) and a note per failed trial.
fn run_trials(
    r: &Report,
    b: &Bench,
    imp: Imp,
    adv: Duration,
    fault: Fault,
    trials: usize,
) -> (Vec<Duration>, Vec<String>) {
    let mut got = Vec::new();
    let mut failed = Vec::new();
    for i in 0..trials {
        match b.trial(imp, adv, fault) {
            Ok(Some(d)) => got.push(d),
            Ok(None) => failed.push(format!("#{i}: no recovery")),
            Err(e) => failed.push(format!("#{i}: {e:#}")),
        }
        r.progress(format_args!(
            "{} {} {:?} trial {i}: {:?}",
            imp.label(),
            fault.label(),
            adv,
            got.last()
        ));
    }
    got.sort();
    (got, failed)
}

/// How many trials of a row recovered, and the median, p95 and worst of their outages.
#[derive(Debug, Clone, Copy)]
struct Spread {
    recovered: usize,
    median: Duration,
    p95: Duration,
    worst: Duration,
}

impl Spread {
    /// None when no trial recovered. `sorted` ascending.
    fn of(sorted: &[Duration]) -> Option<Spread> {
        let worst = *sorted.last()?;
        Some(Spread {
            recovered: sorted.len(),
            median: pct(sorted, 0.5),
            p95: pct(sorted, 0.95),
            worst,
        })
    }
}

fn outage_row(
    adv: Duration,
    fault: Fault,
    imp: Imp,
    trials: usize,
    spread: Option<Spread>,
    failed: &[String],
    bound: Duration,
) -> String {
    let head = format!("| {} ms | {} | {} |", ms(adv), fault.label(), imp.label());
    match spread {
        None => format!(
            "{head} 0/{trials} | - | - | - | {} | {} |",
            ms(bound),
            failed.join("; ")
        ),
        Some(s) => format!(
            "{head} {}/{trials} | {} | {} | {} | {} | {} |",
            s.recovered,
            ms(s.median),
            ms(s.p95),
            ms(s.worst),
            ms(bound),
            if failed.is_empty() {
                "0".to_string()
            } else {
                failed.join("; ")
            }
        ),
    }
}

/// The goal: vipd's median and p95 no longer than the pair's.
fn verdict(adv: Duration, fault: Fault, v: Spread, k: Spread) -> String {
    format!(
        "- {} ms, {}: vipd median {} vs {} ms, p95 {} vs {} ms, worst {} vs {} ms: {}",
        ms(adv),
        fault.label(),
        ms(v.median),
        ms(k.median),
        ms(v.p95),
        ms(k.p95),
        ms(v.worst),
        ms(k.worst),
        if v.median <= k.median && v.p95 <= k.p95 {
            "goal met (median and p95 no longer)"
        } else if v.median <= k.median + PROBE_EVERY && v.p95 <= k.p95 + PROBE_EVERY {
            "goal not met, but the difference is within the probe's resolution"
        } else {
            "goal NOT met"
        }
    )
}

// ------------------------------------------------------------------------------------------------------
// Footprint and scale sections
// ------------------------------------------------------------------------------------------------------

/// Everything the footprint and scale tables show, per implementation in [`IMPS`] order.
struct Footprint {
    /// Idle: 1 s adverts, checks every 2 s.
    base: Vec<Sample>,
    /// Idle: 100 ms adverts, checks every 2 s.
    fast_adv: Vec<Sample>,
    /// Idle: 1 s adverts, checks every 200 ms.
    fast_chk: Vec<Sample>,
    conns: Vec<ConnRun>,
    load: Vec<LoadRun>,
}

fn measure_footprint(r: &Report, b: &Bench, args: &Args, levels: &[usize]) -> Result<Footprint> {
    let s1 = Duration::from_secs(1);
    let s2 = Duration::from_secs(2);
    let ms100 = Duration::from_millis(100);
    let ms200 = Duration::from_millis(200);
    let mut f = Footprint {
        base: Vec::new(),
        fast_adv: Vec::new(),
        fast_chk: Vec::new(),
        conns: Vec::new(),
        load: Vec::new(),
    };
    for imp in IMPS {
        f.base.push(idle(b, imp, s1, s2, args.idle_secs)?);
        r.progress(format_args!("idle {} done", imp.label()));
        f.fast_adv.push(idle(b, imp, ms100, s2, args.idle_secs)?);
        f.fast_chk.push(idle(b, imp, s1, ms200, args.idle_secs)?);
        r.progress(format_args!("scale idle {} done", imp.label()));
    }
    for imp in IMPS {
        f.conns.push(conns(b, imp, levels, args.idle_secs.min(10))?);
        r.progress(format_args!("conns {} done", imp.label()));
        f.load.push(load(b, imp, args.load_secs)?);
        r.progress(format_args!("load {} done", imp.label()));
    }
    Ok(f)
}

/// One row per implementation for each state: idle, most connections held, under wrk.
fn footprint_table(r: &mut Report, f: &Footprint, args: &Args, levels: &[usize]) {
    r.emit("## Footprint: the master node's load balancer\n");
    r.emit(
        "vipd = one process; the pair = keepalived parent + its VRRP child (`-P`, VRRP only) + haproxy \
         (nbthread 2). Both check 3 backends with HTTPS GET /readyz verified against the cluster CA \
         (rise 2, fall 3). CPU = utime+stime (per-thread schedstat in ns when no thread came or went). \
         Memory = sum of VmRSS / VmHWM of the processes.\n",
    );
    r.emit(
        "| state | implementation | CPU s | CPU % of one core | VmRSS MiB | VmHWM MiB | per process |",
    );
    r.emit("|---|---|---|---|---|---|---|");
    let idle = format!("idle {} s (1 s adverts, 3 backends / 2 s)", args.idle_secs);
    for (i, imp) in IMPS.iter().enumerate() {
        r.emit(sample_row(&idle, imp.label(), &f.base[i]));
    }
    for (i, imp) in IMPS.iter().enumerate() {
        r.emit(match &f.conns[i].idle_top {
            Some((n, s)) => sample_row(
                &format!("{n} idle connections, {:.0} s", s.secs),
                imp.label(),
                s,
            ),
            None => format!(
                "| {} idle connections | {} | - | - | - | - | not reached: {} |",
                levels.last().unwrap_or(&0),
                imp.label(),
                f.conns[i].error.clone().unwrap_or_default()
            ),
        });
    }
    for (i, imp) in IMPS.iter().enumerate() {
        let wrk = format!(
            "wrk -t2 -c50 -d{}s https://VIP/readyz ({:.0} req/s)",
            args.load_secs, f.load[i].rps
        );
        r.emit(sample_row(&wrk, imp.label(), &f.load[i].sample));
    }
    r.emit("");
}

/// The per-unit figures, vipd beside the pair.
fn scale_table(r: &mut Report, f: &Footprint, args: &Args) {
    r.emit("## Scale\n");
    r.emit("| figure | vipd | keepalived+haproxy |");
    r.emit("|---|---|---|");
    scale_cpu_rows(r, f, args.idle_secs as f64);
    scale_memory_rows(r, f);
    r.emit("");
}

fn scale_cpu_rows(r: &mut Report, f: &Footprint, secs: f64) {
    let (base, fast_adv, fast_chk) = (&f.base, &f.fast_adv, &f.fast_chk);
    let per_adv = |i: usize| (fast_adv[i].cpu_s - base[i].cpu_s) / (secs * (10.0 - 1.0)) * 1e6;
    let per_chk = |i: usize| (fast_chk[i].cpu_s - base[i].cpu_s) / (secs * 3.0 * (5.0 - 0.5)) * 1e6;
    r.emit(format!(
        "| CPU per advertisement sent (idle at 100 ms minus idle at 1 s, / extra adverts) | {:.1} µs | {:.1} µs |",
        per_adv(0),
        per_adv(1)
    ));
    r.emit(format!(
        "| CPU per HTTPS health check (3 backends at 200 ms minus at 2 s, / extra checks) | {:.1} µs | {:.1} µs |",
        per_chk(0),
        per_chk(1)
    ));
    for (name, s) in [
        ("idle CPU, 100 ms adverts, checks / 2 s", fast_adv),
        ("idle CPU, 1 s adverts, checks / 200 ms", fast_chk),
    ] {
        let (v, p) = (&s[0], &s[1]);
        r.emit(format!(
            "| {name} | {:.3} s ({:.2} %) | {:.3} s ({:.2} %) |",
            v.cpu_s,
            100.0 * v.cpu_s / v.secs,
            p.cpu_s,
            100.0 * p.cpu_s / p.secs
        ));
    }
    let per_request = |l: &LoadRun| l.sample.cpu_s / (l.rps * l.sample.secs).max(1.0) * 1e6;
    r.emit(format!(
        "| CPU per proxied request under wrk (keep-alive, TLS end to end) | {:.1} µs | {:.1} µs |",
        per_request(&f.load[0]),
        per_request(&f.load[1])
    ));
}

fn scale_memory_rows(r: &mut Report, f: &Footprint) {
    let cruns = &f.conns;
    r.emit(format!(
        "| memory with no connection (VmRSS) | {} MiB | {} MiB |",
        mib(cruns[0].base.rss_kb),
        mib(cruns[1].base.rss_kb)
    ));
    let maxlev = cruns[0].levels.len().max(cruns[1].levels.len());
    for l in 0..maxlev {
        let cell = |c: &ConnRun| match c.levels.get(l) {
            Some((n, m)) => format!(
                "{n} conns: {} MiB RSS, {:.0} B/conn",
                mib(m.rss_kb),
                (m.rss_kb.saturating_sub(c.base.rss_kb) as f64 * 1024.0) / *n as f64
            ),
            None => format!("not reached ({})", c.error.clone().unwrap_or_default()),
        };
        r.emit(format!(
            "| memory with connections held (growth over none / connection) | {} | {} |",
            cell(&cruns[0]),
            cell(&cruns[1])
        ));
    }
}

fn wrk_outputs(r: &mut Report, f: &Footprint) {
    for (i, imp) in IMPS.iter().enumerate() {
        r.emit(format!(
            "<details><summary>wrk output, {}</summary>\n\n```\n{}```\n</details>\n",
            imp.label(),
            f.load[i].wrk
        ));
    }
}
