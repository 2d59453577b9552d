//! `vipd demo`: the product shown end to end on one machine, inside network namespaces it creates and removes.
//!
//! Owns the demo's flow (lab, election, load spread, kill -9 of the master with the client-visible outage
//! measured, restart with stale-VIP cleanup and preemption, summary), its output, and its teardown, which runs
//! on success, on error and on SIGINT / SIGTERM / SIGHUP alike. The lab itself (namespaces, fake apiservers,
//! vipd processes) is `vipd-lab`'s; the nodes run this very binary as `vipd run`.
//!
//! Signals: SIGINT, SIGTERM and SIGHUP are caught (before any child starts) by one thread, which only raises
//! a flag. Every wait of the demo is a bounded poll that checks the flag, so an
//! interruption unwinds through ordinary returns and every guard's `Drop` runs (no `process::exit` while
//! guards live; release builds abort on panic, so nothing here may panic either).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use vipd_lab::apiserver::{
    ClientOpts, FakeConfig, NsApiserver, ServerCertSpec, ServerTls, TestPki,
};
use vipd_lab::client::{Probe, ProbeSpec, Sample};
use vipd_lab::netns::{Lab, TempDir};
use vipd_lab::vipd::{HealthSpec, VipdNode, VipdSpec};

use crate::admin::{StatusDoc, VrrpState};
use crate::config::{fmt_duration, parse_duration};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// VRRP advertisement interval of the demo's nodes, 10ms to 1s in whole centiseconds; a backup takes
    /// over after about three intervals.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).map_err(|e| format!("{s:?} {e}"))?;
    if d.as_nanos() % 10_000_000 != 0 || d < Duration::from_millis(10) || d > Duration::from_secs(1)
    {
        return Err(format!(
            "{s:?}: the demo's interval is 10ms to 1s in whole centiseconds (10ms steps)"
        ));
    }
    Ok(d)
}

const TAG: &str = "vipd-demo";
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const LB_PORT: u16 = 443;
const APISERVER_PORT: u16 = 6443;
/// The load-balancer nodes and their VRRP priorities: lb1 is the preferred master.
const LBS: [(&str, u8); 3] = [("lb1", 150), ("lb2", 120), ("lb3", 100)];
const APISERVERS: [&str; 3] = ["api1", "api2", "api3"];
const CLIENT: &str = "client";
/// The client's pace: one HTTPS request every PROBE_EVERY, each on a new connection, as kubectl calls do.
const PROBE_EVERY: Duration = Duration::from_millis(20);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const SPREAD_REQUESTS: usize = 30;
/// Consecutive successful requests that count as "recovered".
const STABLE_RUN: usize = 15;
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------------------
// Output and signals
// ---------------------------------------------------------------------------------------------------------

/// Prints lines stamped with the time since the demo started. Write errors (a closed pipe) are ignored:
/// the demo still has to clean up.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn say(&self, msg: impl Display) {
        let t = self.0.elapsed().as_secs_f64();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "[{t:>6.2}s] {msg}");
        let _ = out.flush();
    }

    fn plain(&self, msg: impl Display) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{msg}");
        let _ = out.flush();
    }
}

/// The signal that interrupted the demo (0: none).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

#[derive(Debug)]
struct Interrupted(Signal);

impl Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

fn signalled() -> Option<Signal> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(Signal::try_from(n).unwrap_or(Signal::SIGINT)),
    }
}

fn check_signal() -> Result<()> {
    match signalled() {
        None => Ok(()),
        Some(sig) => Err(Interrupted(sig).into()),
    }
}

/// Takes SIGINT, SIGTERM and SIGHUP on a thread of its own (tokio's handlers, which only wake that thread),
/// and returns once they are caught, so no child is started while a Ctrl-C would still kill the demo outright.
///
/// Handlers rather than a blocked mask with `sigwait`: a mask is inherited through `exec`, and the vipd
/// children must keep getting their signals.
fn install_signal_thread(clock: Clock) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let streams = (|| {
                    Ok((
                        signal(SignalKind::interrupt())?,
                        signal(SignalKind::terminate())?,
                        signal(SignalKind::hangup())?,
                    ))
                })();
                let (mut int, mut term, mut hup) = match streams {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(()));
                loop {
                    let sig = tokio::select! {
                        Some(()) = int.recv() => Signal::SIGINT,
                        Some(()) = term.recv() => Signal::SIGTERM,
                        Some(()) = hup.recv() => Signal::SIGHUP,
                        else => return,
                    };
                    if SIGNALLED.swap(sig as i32, Ordering::SeqCst) == 0 {
                        clock.say(format!("got {sig}: stopping, then cleaning up"));
                    }
                }
            });
        })
        .context("starting the signal thread")?;
    match rx.recv() {
        Ok(r) => r.context("catching SIGINT / SIGTERM / SIGHUP"),
        Err(_) => bail!("the signal thread ended before catching signals"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------------------

/// What the client saw over a stretch of samples.
#[derive(Debug, Default, Clone, PartialEq)]
struct Outage {
    total: usize,
    failed: usize,
    /// First failure's start to the first success's end after it, per run of failures; `None` for a run
    /// that has not ended.
    gaps: Vec<Option<Duration>>,
    /// Failure reasons and how often each was seen.
    reasons: BTreeMap<String, usize>,
    /// When the first failure started.
    first_failure: Option<Instant>,
    /// When the first run of failures ended (the first success after it completed).
    recovered: Option<Instant>,
}

impl Outage {
    fn of(samples: &[Sample]) -> Outage {
        let mut o = Outage {
            total: samples.len(),
            ..Outage::default()
        };
        let mut run_start: Option<Instant> = None;
        for s in samples {
            match &s.result {
                Err(why) => {
                    o.failed += 1;
                    *o.reasons.entry(why.clone()).or_default() += 1;
                    o.first_failure.get_or_insert(s.start);
                    run_start.get_or_insert(s.start);
                }
                Ok(_) => {
                    if let Some(r) = run_start.take() {
                        o.gaps.push(Some(s.end.saturating_duration_since(r)));
                        o.recovered.get_or_insert(s.end);
                    }
                }
            }
        }
        if run_start.is_some() {
            o.gaps.push(None);
        }
        o
    }

    /// The client-visible outage: the first run of failures (zero when nothing failed).
    fn first_gap(&self) -> Option<Duration> {
        self.gaps.first().copied().unwrap_or(Some(Duration::ZERO))
    }

    fn longest_gap(&self) -> Option<Duration> {
        self.gaps
            .iter()
            .try_fold(Duration::ZERO, |m, g| g.map(|g| m.max(g)))
    }

    fn reasons(&self) -> String {
        self.reasons
            .iter()
            .map(|(r, n)| format!("{r} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether the last [`STABLE_RUN`] samples succeeded and all started after `after`.
fn stable_since(samples: &[Sample], after: Instant) -> bool {
    samples.len() >= STABLE_RUN
        && samples[samples.len() - STABLE_RUN..]
            .iter()
            .all(|s| s.result.is_ok() && s.start >= after)
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------------------
// The rig: everything the demo starts, dropped in field order
// ---------------------------------------------------------------------------------------------------------

/// A load-balancer node (its namespace is the lab's node of the same name): its vipd process and config.
#[derive(Debug)]
struct Lb {
    name: &'static str,
    priority: u8,
    config: PathBuf,
    vipd: Option<VipdNode>,
}

impl Lb {
    fn status(&self) -> Option<StatusDoc> {
        let v = self.vipd.as_ref()?.status().ok()?;
        serde_json::from_value(v).ok()
    }
}

/// Field order is teardown order: the client stops first, then the vipd processes (killed and reaped), the
/// apiserver threads, the namespaces, and last the files.
#[derive(Debug, Default)]
struct Rig {
    probe: Option<Probe>,
    lbs: Vec<Lb>,
    apiservers: Vec<NsApiserver>,
    lab: Option<Lab>,
    pki: Option<TestPki>,
    dir: Option<TempDir>,
}

impl Rig {
    /// Fails when a vipd that should run has exited, with its last lines.
    fn check_alive(&mut self) -> Result<()> {
        for lb in &mut self.lbs {
            if let Some(v) = &mut lb.vipd {
                if let Some(st) = v.proc.wait_exit(Duration::ZERO) {
                    bail!(
                        "vipd on {} exited ({st}); its last lines:\n{}",
                        lb.name,
                        tail(v, 10)
                    );
                }
            }
        }
        if let Some(p) = &self.probe {
            if !p.is_running() {
                bail!("the client thread stopped unexpectedly");
            }
        }
        Ok(())
    }

    fn probe(&self) -> Result<&Probe> {
        self.probe.as_ref().ok_or_else(|| anyhow!("no client"))
    }

    fn lab(&self) -> Result<&Lab> {
        self.lab.as_ref().ok_or_else(|| anyhow!("no lab"))
    }

    /// Every node's state (`None` for a node without a running or answering vipd).
    fn states(&self) -> Vec<Option<StatusDoc>> {
        self.lbs.iter().map(Lb::status).collect()
    }

    /// Which nodes have a vipd running (the killed one has none until it is restarted).
    fn running(&self) -> Vec<bool> {
        self.lbs.iter().map(|lb| lb.vipd.is_some()).collect()
    }

    fn vip_holders(&self) -> Result<Vec<&'static str>> {
        let lab = self.lab()?;
        Ok(self
            .lbs
            .iter()
            .filter(|lb| lab.node(lb.name).ns.has_addr("eth0", IpAddr::V4(VIP)))
            .map(|lb| lb.name)
            .collect())
    }

    /// The last lines of every vipd, for an error report.
    fn diagnostics(&self) -> String {
        let mut s = String::new();
        for lb in &self.lbs {
            if let Some(v) = &lb.vipd {
                s.push_str(&format!(
                    "--- vipd on {} (last lines)\n{}\n",
                    lb.name,
                    tail(v, 8)
                ));
            }
        }
        s
    }
}

fn tail(v: &VipdNode, n: usize) -> String {
    let lines = v.proc.lines();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `f` every `every` until it yields, checking for a stop signal and dead processes each time.
fn poll<T>(
    rig: &mut Rig,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut(&mut Rig) -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        check_signal()?;
        rig.check_alive()?;
        if let Some(v) = f(rig)? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("gave up after {} waiting for {what}", secs(timeout));
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------------------
// The flow
// ---------------------------------------------------------------------------------------------------------

/// What the demo measured, for the summary.
#[derive(Debug, Default)]
struct Results {
    election: Option<(&'static str, Duration)>,
    spread: BTreeMap<String, usize>,
    spread_failed: usize,
    killed: Option<&'static str>,
    new_master: Option<(&'static str, Duration)>,
    outage: Outage,
    expected_takeover: Duration,
    stale_vip_cleared: Option<bool>,
    preempted: Option<Duration>,
    handback: Outage,
}

/// Master_Down_Interval (RFC 9568) of a backup with `priority`, as the VRRP library computes it.
fn master_down(interval: Duration, priority: u8) -> Duration {
    match vrrp::proto::Centis::from_duration(interval) {
        Some(c) => vrrp::proto::router::master_down_interval(vrrp::proto::Priority(priority), c),
        None => interval * 4,
    }
}

/// Where VRRP has settled among the nodes whose vipd runs (`states[i]` is `None` for a node without one):
/// every running node answers and sees every apiserver healthy (so effective priorities are the configured
/// ones), exactly one is master and holds the VIP, the others are backups without it, and the master is the
/// (or a) highest-priority running node (with preemption on, VRRP does not rest anywhere else). A snapshot taken
/// earlier could catch a lower-priority node that was master only until a slower-starting higher one preempts.
fn settled(states: &[Option<StatusDoc>], running: &[bool]) -> Option<usize> {
    let mut master: Option<usize> = None;
    let mut best: Option<u8> = None;
    for (i, (st, run)) in states.iter().zip(running).enumerate() {
        if !run {
            continue;
        }
        let st = st.as_ref()?;
        if st.backends.is_empty() || !st.backends.iter().all(|b| b.healthy) {
            return None;
        }
        match st.vrrp.state {
            VrrpState::Master if st.vip.held && master.is_none() => master = Some(i),
            VrrpState::Backup if !st.vip.held => {}
            _ => return None,
        }
        best = best.max(Some(st.vrrp.effective_priority));
    }
    let master = master?;
    // Equal priorities are broken by address, which the wire decides: any of the highest will do.
    let prio = states[master].as_ref()?.vrrp.effective_priority;
    (Some(prio) == best).then_some(master)
}

/// The demo's story, one step each: the lab, the apiservers, vipd on the load balancers, the election, the
/// client's spread, a master killed, and the killed node's return.
fn run(rig: &mut Rig, args: &DemoArgs, clock: Clock, res: &mut Results) -> Result<()> {
    let bin = std::env::current_exe().context("finding the vipd binary")?;
    let interval = args.interval;
    let client_ns = build_lab(rig, clock)?;
    let (backends, ca) = start_apiservers(rig, clock)?;
    // VipdSpec takes a 'static interval; this one small string lives as long as the process anyway.
    let advert: &'static str = Box::leak(fmt_duration(interval).into_boxed_str());
    let started = start_vipds(rig, clock, &bin, &backends, &ca, advert)?;
    let master = await_election(rig, clock, res, started, interval)?;
    start_client(rig, clock, res, &client_ns, ca)?;
    let (killed, nm) = kill_master(rig, clock, res, master, interval, advert)?;
    restart_killed(rig, clock, res, &bin, killed, nm, interval)
}

/// One bridge, the nodes on it; returns the client's namespace.
fn build_lab(rig: &mut Rig, clock: Clock) -> Result<String> {
    // The lab: one bridge, the nodes on it.
    let mut lab = Lab::new(TAG).context("creating the lab's switch namespace")?;
    let names: Vec<&str> = LBS
        .iter()
        .map(|(n, _)| *n)
        .chain(APISERVERS)
        .chain([CLIENT])
        .collect();
    for n in &names {
        lab.add_node(n)
            .with_context(|| format!("adding the {n} namespace to the lab"))?;
    }
    let mut ns_names = vec![lab.switch().name().to_string()];
    ns_names.extend(lab.nodes().iter().map(|n| n.ns.name().to_string()));
    let ip = |lab: &Lab, n: &str| lab.node(n).v4;
    let lbs_text = LBS
        .iter()
        .map(|(n, _)| format!("{n} {}", ip(&lab, n)))
        .collect::<Vec<_>>()
        .join(", ");
    let apis_text = APISERVERS
        .iter()
        .map(|n| format!("{n} {}", ip(&lab, n)))
        .collect::<Vec<_>>()
        .join(", ");
    clock.say(format!(
        "lab up: {} network namespaces on one bridge, 192.0.2.0/24",
        ns_names.len()
    ));
    clock.plain(format!(
        "           load balancers {lbs_text}; apiservers {apis_text}; client {}",
        ip(&lab, CLIENT)
    ));
    clock.plain(format!("           namespaces: {}", ns_names.join(" ")));
    let client_ns = lab.node(CLIENT).ns.name().to_string();
    rig.lab = Some(lab);

    Ok(client_ns)
}

/// HTTPS apiservers with certificates from a throwaway CA, for their own address and the VIP; returns their
/// addresses and the CA file.
fn start_apiservers(rig: &mut Rig, clock: Clock) -> Result<(Vec<SocketAddr>, PathBuf)> {
    let pki = TestPki::new("vipd-demo-ca").context("creating the demo CA")?;
    let mut backends = Vec::new();
    for n in APISERVERS {
        let lab = rig.lab()?;
        let addr = SocketAddr::new(IpAddr::V4(lab.node(n).v4), APISERVER_PORT);
        let cert = pki
            .server_cert(n, &ServerCertSpec::ips([addr.ip(), IpAddr::V4(VIP)]))
            .with_context(|| format!("issuing {n}'s certificate"))?;
        let tls = ServerTls {
            cert: cert.cert,
            key: cert.key,
            client_ca: None,
        };
        let server = NsApiserver::start(lab.node(n).ns.name(), FakeConfig::new(n, addr, Some(tls)))
            .with_context(|| format!("starting the fake apiserver {n}"))?;
        backends.push(server.addr());
        rig.apiservers.push(server);
    }
    clock.say(format!(
        "3 fake kube-apiservers serve HTTPS on :{APISERVER_PORT} (/readyz, /version), certificates from a demo CA \
         naming their own address and the VIP"
    ));
    let ca = pki.ca_cert().to_path_buf();
    rig.pki = Some(pki);

    Ok((backends, ca))
}

/// vipd on the three load balancers; returns when they were started.
fn start_vipds(
    rig: &mut Rig,
    clock: Clock,
    bin: &Path,
    backends: &[SocketAddr],
    ca: &Path,
    advert: &'static str,
) -> Result<Instant> {
    let dir = TempDir::new("vipd-demo").context("creating the config directory")?;
    for (name, priority) in LBS {
        let lab = rig.lab()?;
        let node = lab.node(name);
        let mut spec = VipdSpec::new(IpAddr::V4(VIP), backends.to_vec(), priority);
        spec.port = LB_PORT;
        spec.advert_interval = advert;
        spec.health = HealthSpec::Https {
            ca_file: ca.to_path_buf(),
        };
        spec.health_interval = "250ms";
        spec.health_timeout = "200ms";
        spec.rise = 1;
        spec.fall = 2;
        let vipd = VipdNode::start(bin, &node.ns, &spec, dir.path())
            .with_context(|| format!("starting vipd on {name}"))?;
        rig.lbs.push(Lb {
            name,
            priority,
            config: vipd.config_path.clone(),
            vipd: Some(vipd),
        });
    }
    rig.dir = Some(dir);
    let started = Instant::now();
    clock.say(format!(
        "vipd started on lb1 (priority {}), lb2 ({}), lb3 ({}): VIP {VIP}, proxy on :{LB_PORT}, VRRP advert every \
         {advert}, HTTPS /readyz checks of the apiservers",
        LBS[0].1, LBS[1].1, LBS[2].1
    ));

    Ok(started)
}

/// Waits until VRRP has settled (see `settled`); returns the master's index.
fn await_election(
    rig: &mut Rig,
    clock: Clock,
    res: &mut Results,
    started: Instant,
    interval: Duration,
) -> Result<usize> {
    let master = poll(
        rig,
        "the election to settle with every apiserver healthy",
        Duration::from_secs(20) + 10 * interval,
        |rig| Ok(settled(&rig.states(), &rig.running())),
    )?;
    let elected = started.elapsed();
    let m = &rig.lbs[master];
    res.election = Some((m.name, elected));
    let backups: Vec<String> = rig
        .lbs
        .iter()
        .filter(|lb| lb.name != m.name)
        .map(|lb| format!("{} ({})", lb.name, lb.priority))
        .collect();
    clock.say(format!(
        "election: {} is master (priority {}, holds {VIP}); {} are backups; {} after start",
        m.name,
        m.priority,
        backups.join(" and "),
        secs(elected)
    ));

    Ok(master)
}

/// Starts the client's requests through the VIP and reports how they spread over the apiservers.
fn start_client(
    rig: &mut Rig,
    clock: Clock,
    res: &mut Results,
    client_ns: &str,
    ca: PathBuf,
) -> Result<()> {
    let opts = ClientOpts {
        ca: Some(ca),
        timeout: Some(PROBE_TIMEOUT),
        ..ClientOpts::default()
    };
    let spec = ProbeSpec::new(SocketAddr::new(IpAddr::V4(VIP), LB_PORT), opts).pause(PROBE_EVERY);
    rig.probe = Some(Probe::start(client_ns, spec)?);
    let from = rig.probe()?.len();
    let spread = poll(
        rig,
        "the client's first requests",
        Duration::from_secs(15),
        |rig| {
            let s = rig.probe()?.since(from);
            Ok((s.len() >= SPREAD_REQUESTS).then(|| s[..SPREAD_REQUESTS].to_vec()))
        },
    )?;
    for s in &spread {
        match &s.result {
            Ok(name) => *res.spread.entry(name.clone()).or_default() += 1,
            Err(_) => res.spread_failed += 1,
        }
    }
    clock.say(format!(
        "client: {SPREAD_REQUESTS} HTTPS GET /version via https://{VIP}:{LB_PORT} (TLS verified against the demo CA) \
         answered by {}{}",
        spread_text(&res.spread),
        if res.spread_failed > 0 {
            format!("; {} failed", res.spread_failed)
        } else {
            String::new()
        }
    ));

    Ok(())
}

/// Kills the master without warning, waits for the new master and the client's recovery, reports the outage;
/// returns the killed node's index and the new master's.
fn kill_master(
    rig: &mut Rig,
    clock: Clock,
    res: &mut Results,
    master: usize,
    interval: Duration,
    advert: &str,
) -> Result<(usize, usize)> {
    let killed = master;
    let killed_name = rig.lbs[killed].name;
    let best_backup = rig
        .lbs
        .iter()
        .filter(|lb| lb.name != killed_name)
        .map(|lb| lb.priority)
        .max()
        .unwrap_or(1);
    res.expected_takeover = master_down(interval, best_backup);
    let from = rig.probe()?.len();
    let pid = {
        let v = rig.lbs[killed]
            .vipd
            .as_mut()
            .ok_or_else(|| anyhow!("no vipd on {killed_name}"))?;
        let pid = v.pid();
        v.proc.kill9();
        pid
    };
    let killed_at = Instant::now();
    // The dead process stays in the rig's record until the restart; its guard has reaped it already.
    rig.lbs[killed].vipd = None;
    res.killed = Some(killed_name);
    clock.say(format!(
        "kill -9 vipd on {killed_name} (pid {pid}): no goodbye, the VIP stays on its interface; a backup takes \
         over Master_Down_Interval = 3 x {advert} + skew = {} after the last advertisement it heard",
        ms(res.expected_takeover)
    ));
    // The takeover is when a backup first says it is master; the new master is where VRRP then settles
    // (two backups whose timers end together may both take over for a moment).
    let mut takeover: Option<Duration> = None;
    let (nm, seen) = poll(
        rig,
        "a new master and the client's recovery",
        Duration::from_secs(15) + 10 * interval,
        |rig| {
            let states = rig.states();
            if takeover.is_none()
                && states
                    .iter()
                    .flatten()
                    .any(|s| s.vrrp.state == VrrpState::Master)
            {
                takeover = Some(killed_at.elapsed());
            }
            let (Some(seen), Some(nm)) = (takeover, settled(&states, &rig.running())) else {
                return Ok(None);
            };
            let samples = rig.probe()?.since(from);
            Ok(stable_since(&samples, killed_at + seen).then_some((nm, seen)))
        },
    )?;
    let nm_name = rig.lbs[nm].name;
    res.new_master = Some((nm_name, seen));
    clock.say(format!(
        "{nm_name} is the new master (seen {} after the kill)",
        secs(seen)
    ));
    res.outage = report_outage(clock, &rig.probe()?.since(from), killed_at);

    Ok((killed, nm))
}

/// The client's outage after the kill, as it saw it.
fn report_outage(clock: Clock, samples: &[Sample], killed_at: Instant) -> Outage {
    let outage = Outage::of(samples);
    match (outage.first_failure, outage.recovered, outage.first_gap()) {
        (Some(f), Some(r), Some(gap)) => {
            clock.say(format!(
                "client: first failure {} after the kill, served again {} after the kill",
                secs(f.saturating_duration_since(killed_at)),
                secs(r.saturating_duration_since(killed_at))
            ));
            clock.say(format!(
                "outage: {} as the client saw it (first failed request to the first good one after; {} of {} \
                 requests failed: {})",
                ms(gap),
                outage.failed,
                outage.total,
                outage.reasons()
            ));
        }
        _ => clock.say(format!(
            "outage: 0 ms as the client saw it (none of {} requests failed)",
            outage.total
        )),
    }
    outage
}

/// Restarts the killed node: it clears its stale VIP and takes the VIP back (it has the higher priority); the
/// client's view of that handback.
fn restart_killed(
    rig: &mut Rig,
    clock: Clock,
    res: &mut Results,
    bin: &Path,
    killed: usize,
    nm: usize,
    interval: Duration,
) -> Result<()> {
    let killed_name = rig.lbs[killed].name;
    let nm_name = rig.lbs[nm].name;
    let stale = rig
        .lab()?
        .node(killed_name)
        .ns
        .has_addr("eth0", IpAddr::V4(VIP));
    if stale {
        clock.say(format!(
            "{killed_name} still has {VIP} on eth0: a stale VIP nobody is left to remove"
        ));
    }
    let from = rig.probe()?.len();
    let restarted_at = Instant::now();
    let node = {
        let lb = &rig.lbs[killed];
        let lab = rig.lab()?;
        VipdNode::start_with_config(
            bin,
            &lab.node(killed_name).ns,
            &lb.config,
            "127.0.0.1:9440".parse().context("admin address")?,
        )
        .with_context(|| format!("restarting vipd on {killed_name}"))?
    };
    let pid = node.pid();
    rig.lbs[killed].vipd = Some(node);
    clock.say(format!("vipd restarted on {killed_name} (pid {pid})"));
    if stale {
        let mut cursor = 0;
        poll(
            rig,
            "the stale VIP's removal",
            Duration::from_secs(15),
            |rig| {
                let v = rig.lbs[killed]
                    .vipd
                    .as_ref()
                    .ok_or_else(|| anyhow!("no vipd"))?;
                let found = v.proc.wait_line_from(cursor, Duration::ZERO, |l| {
                    l.contains("removed a stale VIP")
                });
                cursor = v.proc.line_count();
                Ok(found.map(drop))
            },
        )?;
        res.stale_vip_cleared = Some(true);
        clock.say(format!(
            "{killed_name}: vipd removed the stale VIP before joining VRRP (else two nodes would answer for it)"
        ));
    }
    poll(
        rig,
        "the restarted node to take the VIP back",
        Duration::from_secs(15) + 10 * interval,
        |rig| Ok((settled(&rig.states(), &rig.running()) == Some(killed)).then_some(())),
    )?;
    let preempted = restarted_at.elapsed();
    res.preempted = Some(preempted);
    clock.say(format!(
        "preemption: {killed_name} is master again ({} after the restart; priority {} beats {nm_name}'s {}), \
         {nm_name} is backup",
        secs(preempted),
        rig.lbs[killed].priority,
        rig.lbs[nm].priority,
    ));
    res.handback = await_handback(rig, clock, killed_name, from)?;
    Ok(())
}

/// Waits for the client to be served steadily after the handback; checks that only the returned node holds
/// the VIP and reports what the client saw.
fn await_handback(
    rig: &mut Rig,
    clock: Clock,
    killed_name: &'static str,
    from: usize,
) -> Result<Outage> {
    let switched = Instant::now();
    poll(
        rig,
        "the client after the handback",
        Duration::from_secs(10),
        |rig| {
            let s = rig.probe()?.since(from);
            Ok(stable_since(&s, switched).then_some(()))
        },
    )?;
    let holders = rig.vip_holders()?;
    if holders != [killed_name] {
        bail!("after the handback the VIP is on {holders:?}, expected only on {killed_name}");
    }
    let handback = Outage::of(&rig.probe()?.since(from));
    clock.say(format!(
        "client during the handback: {} of {} requests failed{}; only {killed_name} holds {VIP}",
        handback.failed,
        handback.total,
        match handback.longest_gap() {
            Some(g) if handback.failed > 0 => format!(
                " (longest wait for a good answer {}: {})",
                ms(g),
                handback.reasons()
            ),
            _ => String::new(),
        }
    ));
    Ok(handback)
}

fn spread_text(spread: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = APISERVERS
        .iter()
        .map(|n| format!("{n} {}", spread.get(*n).copied().unwrap_or(0)))
        .collect();
    parts.extend(
        spread
            .iter()
            .filter(|(n, _)| !APISERVERS.contains(&n.as_str()))
            .map(|(n, c)| format!("{n} {c}")),
    );
    parts.join(", ")
}

fn summary(clock: Clock, args: &DemoArgs, res: &Results) {
    let row = |k: &str, v: String| clock.plain(format!("  {k:<22} {v}"));
    clock.plain("");
    clock.plain("summary");
    row(
        "nodes",
        format!(
            "lb1 (priority {}), lb2 ({}), lb3 ({}); VIP {VIP}:{LB_PORT}; advert every {}",
            LBS[0].1,
            LBS[1].1,
            LBS[2].1,
            fmt_duration(args.interval)
        ),
    );
    if let Some((m, t)) = res.election {
        row("election", format!("{m} master, {} after start", secs(t)));
    }
    let n: usize = res.spread.values().sum::<usize>() + res.spread_failed;
    row(
        "load spread",
        format!("{n} requests: {}", spread_text(&res.spread)),
    );
    if let (Some(k), Some((nm, seen))) = (res.killed, res.new_master) {
        row(
            "failover",
            format!("{k} killed -9, {nm} master {} later", secs(seen)),
        );
    }
    let gap = res
        .outage
        .first_gap()
        .map(ms)
        .unwrap_or_else(|| "unended".into());
    row(
        "client outage",
        format!(
            "{gap} ({} of {} requests failed; Master_Down_Interval is {})",
            res.outage.failed,
            res.outage.total,
            ms(res.expected_takeover)
        ),
    );
    if let (Some(k), Some(t)) = (res.killed, res.preempted) {
        let stale = match res.stale_vip_cleared {
            Some(true) => "stale VIP removed, ",
            _ => "",
        };
        row(
            "restart",
            format!(
                "{stale}{k} master again {} after restart (preemption)",
                secs(t)
            ),
        );
    }
    row(
        "handback",
        format!(
            "{} of {} requests failed{}",
            res.handback.failed,
            res.handback.total,
            match res.handback.longest_gap() {
                Some(g) if res.handback.failed > 0 => format!(", longest wait {}", ms(g)),
                _ => String::new(),
            }
        ),
    );
    clock.plain("");
}

// ---------------------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------------------

/// What the demo needs that this machine or process lacks, one sentence each.
fn missing_requirements() -> Vec<String> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push(format!(
            "vipd demo needs root (this process runs as uid {}): it creates network namespaces, a bridge and \
             veth pairs, all inside namespaces it removes afterwards. Run it as root, e.g. \
             `sudo {} demo`.",
            nix::unistd::geteuid(),
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "vipd".into())
        ));
    }
    let ip_ok = Command::new("ip")
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ip_ok {
        missing.push(
            "vipd demo needs the `ip` command (iproute2) on PATH, e.g. `apt-get install iproute2`."
                .into(),
        );
    }
    missing
}

/// Namespaces of this process's demo still present (their names carry the tag and this PID).
fn leftover_namespaces() -> Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("ip netns list")?;
    let marker = format!("-{}-", std::process::id());
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(TAG) && n.contains(&marker))
        .map(str::to_string)
        .collect())
}

/// Reaps any zombie child and reports whether a live child remains.
fn children_left() -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::ECHILD) => return false,
            Ok(WaitStatus::StillAlive) => return true,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// `vipd demo`: exit 0 after a full run and a clean teardown; 1 on an error or a dirty teardown; 2 when
/// requirements are missing; 128 + signal when interrupted.
pub fn main(args: &DemoArgs) -> ExitCode {
    let missing = missing_requirements();
    if !missing.is_empty() {
        let mut err = std::io::stderr().lock();
        for m in missing {
            let _ = writeln!(err, "{m}");
        }
        return ExitCode::from(2);
    }
    let clock = Clock(Instant::now());
    if let Err(e) = install_signal_thread(clock) {
        let _ = writeln!(std::io::stderr(), "vipd demo: {e:#}");
        return ExitCode::from(1);
    }
    clock.say(format!(
        "vipd demo: 3 load balancers running vipd, 3 fake kube-apiservers and a client, each in its own network \
         namespace (pid {})",
        std::process::id()
    ));
    let mut rig = Rig::default();
    let mut res = Results::default();
    let result = run(&mut rig, args, clock, &mut res);
    let mut code = match (&result, signalled()) {
        (_, Some(sig)) => {
            clock.say(format!("interrupted by {sig}"));
            ExitCode::from(128 + sig as u8)
        }
        (Ok(()), None) => {
            summary(clock, args, &res);
            ExitCode::SUCCESS
        }
        (Err(e), None) => {
            clock.say(format!("error: {e:#}"));
            let diag = rig.diagnostics();
            if !diag.is_empty() {
                clock.plain(diag.trim_end());
            }
            ExitCode::from(1)
        }
    };

    clock.say("tearing down: client, vipd processes, apiservers, namespaces");
    let t = Instant::now();
    let had_lab = rig.lab.is_some();
    drop(rig);
    let left_ns = leftover_namespaces();
    let left_children = children_left();
    match (&left_ns, left_children) {
        (Ok(ns), false) if ns.is_empty() => clock.say(format!(
            "cleaned up in {}: {}no child process left",
            secs(t.elapsed()),
            if had_lab {
                "every namespace removed, "
            } else {
                ""
            }
        )),
        _ => {
            clock.say(format!(
                "cleanup incomplete: namespaces left {:?}, child processes left: {left_children}",
                left_ns.as_ref().map_err(|e| format!("{e:#}"))
            ));
            code = ExitCode::from(1);
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, len_ms: u64, ok: bool, base: Instant) -> Sample {
        let start = base + Duration::from_millis(at_ms);
        Sample {
            start,
            end: start + Duration::from_millis(len_ms),
            result: if ok {
                Ok("api1".into())
            } else {
                Err("connection refused".into())
            },
            attempts: 1,
        }
    }

    #[test]
    fn outage_runs_from_first_failure_to_first_success_after() {
        let b = Instant::now();
        let s = vec![
            sample(0, 5, true, b),
            sample(20, 1, false, b),
            sample(40, 1, false, b),
            sample(60, 5, true, b),
            sample(80, 1, false, b),
            sample(100, 30, true, b),
        ];
        let o = Outage::of(&s);
        assert_eq!((o.total, o.failed), (6, 3));
        assert_eq!(
            o.gaps,
            vec![
                Some(Duration::from_millis(45)),
                Some(Duration::from_millis(50))
            ]
        );
        assert_eq!(o.first_gap(), Some(Duration::from_millis(45)));
        assert_eq!(o.longest_gap(), Some(Duration::from_millis(50)));
        assert_eq!(o.first_failure, Some(b + Duration::from_millis(20)));
        assert_eq!(o.recovered, Some(b + Duration::from_millis(65)));
        assert_eq!(o.reasons(), "connection refused x3");
    }

    #[test]
    fn outage_without_failures_is_zero_and_an_unended_one_is_none() {
        let b = Instant::now();
        let o = Outage::of(&[sample(0, 1, true, b), sample(20, 1, true, b)]);
        assert_eq!(o.first_gap(), Some(Duration::ZERO));
        assert_eq!(o.longest_gap(), Some(Duration::ZERO));
        let o = Outage::of(&[sample(0, 1, true, b), sample(20, 1, false, b)]);
        assert_eq!(o.first_gap(), None);
        assert_eq!(o.longest_gap(), None);
    }

    #[test]
    fn stable_needs_a_run_of_recent_successes() {
        let b = Instant::now();
        let mut s: Vec<Sample> = (0..STABLE_RUN as u64)
            .map(|i| sample(100 + 20 * i, 1, true, b))
            .collect();
        assert!(stable_since(&s, b));
        assert!(!stable_since(&s, b + Duration::from_millis(150)));
        s.push(sample(1000, 1, false, b));
        assert!(!stable_since(&s, b));
        assert!(!stable_since(&s[..3], b));
    }

    #[test]
    fn master_down_interval_follows_the_rfc() {
        // 3 x 100 ms + (256 - 120) x 100 ms / 256.
        assert_eq!(
            master_down(Duration::from_millis(100), 120),
            Duration::from_micros(353_125)
        );
        assert_eq!(
            master_down(Duration::from_secs(1), 128),
            Duration::from_millis(3500)
        );
    }

    fn node(state: VrrpState, priority: u8, healthy: bool) -> Option<StatusDoc> {
        let mut d = crate::admin::tests::sample_doc();
        d.vrrp.state = state;
        d.vrrp.priority = priority;
        d.vrrp.effective_priority = priority;
        d.vip.held = state == VrrpState::Master;
        for b in &mut d.backends {
            b.healthy = healthy;
        }
        Some(d)
    }

    #[test]
    fn settled_means_one_master_and_it_is_the_highest_running_priority() {
        use VrrpState::{Backup, Initialize, Master};
        let all = [true, true, true];
        let good = [
            node(Master, 150, true),
            node(Backup, 120, true),
            node(Backup, 100, true),
        ];
        assert_eq!(settled(&good, &all), Some(0));
        // A lower node as master while a higher one is still starting, or about to preempt: not settled.
        let early = [
            node(Initialize, 150, true),
            node(Master, 120, true),
            node(Backup, 100, true),
        ];
        assert_eq!(settled(&early, &all), None);
        let preempting = [
            node(Backup, 150, true),
            node(Master, 120, true),
            node(Backup, 100, true),
        ];
        assert_eq!(settled(&preempting, &all), None);
        // Two masters, an unhealthy backend, a silent node: not settled.
        let two = [
            node(Master, 150, true),
            node(Master, 120, true),
            node(Backup, 100, true),
        ];
        assert_eq!(settled(&two, &all), None);
        let sick = [
            node(Master, 150, true),
            node(Backup, 120, false),
            node(Backup, 100, true),
        ];
        assert_eq!(settled(&sick, &all), None);
        assert_eq!(
            settled(&[good[0].clone(), None, good[2].clone()], &all),
            None
        );
        // The killed node does not count: the next priority is where it settles.
        let after_kill = [None, node(Master, 120, true), node(Backup, 100, true)];
        assert_eq!(settled(&after_kill, &[false, true, true]), Some(1));
        let wrong = [None, node(Backup, 120, true), node(Master, 100, true)];
        assert_eq!(settled(&wrong, &[false, true, true]), None);
        let tie = [None, node(Backup, 120, true), node(Master, 120, true)];
        assert_eq!(settled(&tie, &[false, true, true]), Some(2));
    }

    #[test]
    fn interval_option_is_checked() {
        assert_eq!(parse_interval("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        for bad in ["5ms", "105ms", "2s", "fast", ""] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
