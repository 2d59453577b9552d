//! Runs a schedule against a [`World`] and records the history: faults applied and healed by the main thread,
//! which samples holders and the client's neighbour entry between steps (every ~50 ms), daemon exits, and once
//! a second the daemons' footprint and the evidence in their metrics or logs; a client thread in the client
//! namespace makes HTTPS `GET /version` requests through the VIP continuously (fresh connection each, TLS
//! verified, 1 s timeout) and holds two long-lived `/watch` streams, reopened when they break.
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use nix::sys::signal::Signal;

use super::history::{Event, Recorder};
use super::inject::{self, Drop as NetDrop};
use super::schedule::{Fault, Kind};
use super::world::{Imp, Lb, World, ADVERT_MS, APIS, HEALTH, LBS, PORT, PRIORITIES, VIP};
use crate::apiserver::{self, ClientOpts};
use crate::client::{wait_served, Probe, ProbeSpec, Sample};
use crate::netns::{spawn_in_netns, wait_for};

/// How often holders and the client's entry are sampled (at most; one sample takes a few `ip` calls).
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// How often footprint and metrics are read.
const SLOW_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub imp: Imp,
    pub seed: u64,
    pub faults: Vec<Fault>,
    pub history: PathBuf,
    pub vipd_bin: PathBuf,
    /// Namespace name prefix (unique per concurrent run).
    pub tag: String,
}

type Shared = Arc<Mutex<Recorder>>;

struct Runner {
    w: World,
    rec: Shared,
    t0: Instant,
    /// Nodes whose daemon the run stopped on purpose (an exit there is expected).
    down: [bool; 3],
    last_slow: Instant,
    /// Per node: the last evidence counter seen (metrics sum for vipd, Keepalived state lines for the pair).
    evidence: [u64; 3],
    /// Per node: how many lines of its processes were recorded (see [`Lb::new_log_lines`]).
    log_cursor: [[usize; 2]; 3],
}

/// Run the whole schedule; returns the recorded events (also written, line by line, to `cfg.history`).
pub fn run(cfg: &RunConfig) -> Result<Vec<Event>> {
    let w = World::new(&cfg.tag, cfg.imp, &cfg.vipd_bin)?;
    let rec = Arc::new(Mutex::new(Recorder::create(&cfg.history)?));
    let mut r = Runner {
        w,
        rec,
        t0: Instant::now(),
        down: [false; 3],
        last_slow: Instant::now(),
        evidence: [0; 3],
        log_cursor: [[0; 2]; 3],
    };
    r.wait_initial()?;
    r.t0 = Instant::now();
    r.record(Event::Meta {
        t: 0.0,
        implementation: cfg.imp.label().to_string(),
        seed: cfg.seed,
        nodes: LBS.iter().map(|s| s.to_string()).collect(),
        priorities: PRIORITIES.to_vec(),
        advert_ms: ADVERT_MS,
        health: Some(HEALTH),
        backends: APIS
            .iter()
            .zip(r.w.api_addrs())
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect(),
    });
    for i in 0..3 {
        r.evidence[i] = r.evidence_count(i);
    }
    let client = Client::start(&r.w, r.rec.clone(), r.t0)?;
    r.settle(Duration::from_secs(2));
    for f in &cfg.faults {
        r.fault(f)?;
    }
    drop(client);
    r.tick(true);
    let events = r
        .rec
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .events
        .clone();
    Ok(events)
}

impl Runner {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn record(&self, ev: Event) {
        if let Ok(mut r) = self.rec.lock() {
            let _ = r.record(ev);
        }
    }

    /// lb0 the only holder and the client served, before the clock starts.
    fn wait_initial(&self) -> Result<()> {
        let ok = wait_for(Duration::from_secs(30), || {
            (self.w.holders() == ["lb0"]).then_some(())
        });
        ok.ok_or_else(|| anyhow!("lb0 never became the sole holder: {:?}", self.w.holders()))?;
        let ns = self.w.lab.node("client").ns.name();
        let served = wait_served(
            ns,
            vip_sock(),
            client_opts(&self.w),
            Duration::from_secs(20),
        )?;
        served.ok_or_else(|| anyhow!("the client was never served through the VIP"))?;
        Ok(())
    }

    fn fault_event(&self, f: &Fault, phase: &str) {
        let node = match f.kind {
            Kind::ApiStall | Kind::ApiKill | Kind::ApiNotReady | Kind::Reload => APIS[f.node],
            _ => LBS[f.node],
        };
        self.record(Event::Fault {
            t: self.now(),
            kind: f.kind.as_str().to_string(),
            node: node.to_string(),
            phase: phase.to_string(),
        });
    }

    /// Apply one fault, hold it, heal it, settle.
    fn fault(&mut self, f: &Fault) -> Result<()> {
        let mut f = f.clone();
        if f.kind.hits_master() {
            if let Some(h) = self.w.holders().first() {
                f.node = LBS.iter().position(|n| n == h).unwrap_or(0);
            }
        }
        self.fault_event(&f, "start");
        let hold = Duration::from_secs_f64(f.hold);
        self.apply_and_hold(&f, hold)?;
        self.fault_event(&f, "heal");
        self.settle(Duration::from_secs_f64(f.settle));
        Ok(())
    }

    /// Apply `f`, keep it for `hold` (sampling), and undo it.
    fn apply_and_hold(&mut self, f: &Fault, hold: Duration) -> Result<()> {
        let i = f.node;
        match f.kind {
            Kind::Kill9 | Kind::Sigterm => self.stop_and_restart(i, f.kind == Kind::Kill9, hold)?,
            Kind::StopShort | Kind::StopLong => {
                self.signal(i, Signal::SIGSTOP);
                self.settle(hold);
                self.signal(i, Signal::SIGCONT);
            }
            Kind::LinkCut => {
                self.w.lab.link_down(LBS[i])?;
                self.settle(hold);
                self.w.lab.link_up(LBS[i])?;
            }
            Kind::LinkFlap => self.flap(i, hold)?,
            Kind::Loss => self.net(i, &[NetDrop::Loss(30)], hold)?,
            Kind::VrrpPartition => self.net(i, &[NetDrop::VrrpIn, NetDrop::VrrpOut], hold)?,
            Kind::LossyBackup => self.lossy_backup(i, hold)?,
            Kind::VipRemoved => {
                let _ = self.w.remove_vip(LBS[i]);
            }
            Kind::ApiStall => {
                self.api_signal(i, Signal::SIGUSR2);
                self.settle(hold);
                self.api_signal(i, Signal::SIGUSR2);
            }
            Kind::ApiKill => {
                if let Some(mut p) = self.w.apis[i].take() {
                    p.kill9();
                }
                self.settle(hold);
                self.w.apis[i] = Some(self.w.start_api(i)?);
            }
            Kind::ApiNotReady => {
                self.api_signal(i, Signal::SIGUSR1);
                self.settle(hold);
                self.api_signal(i, Signal::SIGUSR1);
            }
            Kind::Reload => {
                let mut fewer = self.w.api_addrs();
                fewer.remove(i);
                self.reload_all(&fewer)?;
                self.settle(hold);
                self.reload_all(&self.w.api_addrs())?;
            }
        }
        Ok(())
    }

    /// Every running load balancer reloaded with `backends` (a new HAProxy process starts its own log).
    fn reload_all(&mut self, backends: &[std::net::SocketAddr]) -> Result<()> {
        for i in 0..LBS.len() {
            self.read_logs(i);
            self.w.reload(i, backends)?;
            if self.w.imp == Imp::Pair {
                self.log_cursor[i][1] = 0;
            }
        }
        Ok(())
    }

    /// Record the lines node `i`'s processes logged since the last call.
    fn read_logs(&mut self, i: usize) {
        let Some(lb) = &self.w.lbs[i] else { return };
        let lines = lb.new_log_lines(&mut self.log_cursor[i]);
        for line in lines {
            self.record(Event::Log {
                t: self.now(),
                node: LBS[i].to_string(),
                line,
            });
        }
    }

    /// Node `i`'s load balancer (re)started: its lines start over.
    fn started(&mut self, i: usize, lb: Lb) {
        self.w.lbs[i] = Some(lb);
        self.log_cursor[i] = [0; 2];
    }

    /// kill -9 or SIGTERM the node's load balancer; restart it after `hold`.
    fn stop_and_restart(&mut self, i: usize, kill9: bool, hold: Duration) -> Result<()> {
        self.down[i] = true;
        if let Some(lb) = self.w.lbs[i].as_mut() {
            if kill9 {
                lb.kill9();
            } else {
                lb.sigterm();
            }
        }
        self.settle(hold);
        self.read_logs(i);
        self.w.lbs[i] = None;
        let lb = self.w.start_lb(i)?;
        self.started(i, lb);
        self.down[i] = false;
        Ok(())
    }

    /// The node's switch port down and up every 0.4 s for `hold`, then up.
    fn flap(&mut self, i: usize, hold: Duration) -> Result<()> {
        let end = Instant::now() + hold;
        let mut up = true;
        while Instant::now() < end {
            if up {
                self.w.lab.link_down(LBS[i])?;
            } else {
                self.w.lab.link_up(LBS[i])?;
            }
            up = !up;
            self.settle(Duration::from_millis(400));
        }
        self.w.lab.link_up(LBS[i])
    }

    /// The scenario 2: VRRP lost both ways for 0.6 s, then only the node's own for the rest of `hold`.
    fn lossy_backup(&mut self, i: usize, hold: Duration) -> Result<()> {
        let deaf = Duration::from_millis(600);
        inject::set(
            &self.w.lab.node(LBS[i]).ns,
            &[NetDrop::VrrpIn, NetDrop::VrrpOut],
        )?;
        self.settle(deaf);
        inject::set(&self.w.lab.node(LBS[i]).ns, &[NetDrop::VrrpOut])?;
        self.settle(hold.saturating_sub(deaf));
        inject::clear(&self.w.lab.node(LBS[i]).ns)
    }

    fn net(&mut self, i: usize, drops: &[NetDrop], hold: Duration) -> Result<()> {
        inject::set(&self.w.lab.node(LBS[i]).ns, drops)?;
        self.settle(hold);
        inject::clear(&self.w.lab.node(LBS[i]).ns)
    }

    fn signal(&self, i: usize, sig: Signal) {
        if let Some(lb) = &self.w.lbs[i] {
            lb.signal_vrrp(sig);
        }
    }

    fn api_signal(&self, i: usize, sig: Signal) {
        if let Some(p) = &self.w.apis[i] {
            let _ = p.signal(sig);
        }
    }

    /// Sample until `d` has passed.
    fn settle(&mut self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            let next = Instant::now() + SAMPLE_EVERY;
            self.tick(false);
            if Instant::now() >= end {
                break;
            }
            std::thread::sleep(next.min(end).saturating_duration_since(Instant::now()));
        }
    }

    /// One sample: holders and the client's entry; exits; once a second footprint and evidence.
    fn tick(&mut self, force_slow: bool) {
        let t = self.now();
        let holders = self.w.holders();
        let arp = self.w.client_arp();
        let down = (0..3)
            .filter(|&i| self.down[i])
            .map(|i| LBS[i].to_string())
            .collect();
        self.record(Event::Sample {
            t,
            holders,
            arp,
            down,
        });
        for i in 0..LBS.len() {
            self.read_logs(i);
        }
        self.check_exits();
        if force_slow || self.last_slow.elapsed() >= SLOW_EVERY {
            self.last_slow = Instant::now();
            self.slow_samples();
        }
    }

    fn check_exits(&mut self) {
        for (i, name) in LBS.iter().enumerate() {
            if self.down[i] {
                continue;
            }
            let Some(status) = self.w.lbs[i].as_mut().and_then(Lb::exited) else {
                continue;
            };
            self.record(Event::Exit {
                t: self.now(),
                node: name.to_string(),
                expected: false,
                status,
            });
            // Keep the run going: the checker has what it needs.
            self.read_logs(i);
            self.w.lbs[i] = None;
            if let Ok(lb) = self.w.start_lb(i) {
                self.started(i, lb);
            }
        }
    }

    fn slow_samples(&mut self) {
        for (i, name) in LBS.iter().enumerate() {
            if self.down[i] {
                continue;
            }
            let Some(lb) = &self.w.lbs[i] else { continue };
            for pid in lb.pids() {
                if let Some((fds, rss_kb)) = footprint(pid) {
                    self.record(Event::Resources {
                        t: self.now(),
                        node: name.to_string(),
                        pid,
                        fds,
                        rss_kb,
                    });
                }
            }
            let n = self.evidence_count(i);
            if n != self.evidence[i] {
                self.evidence[i] = n;
                self.record(Event::Observed {
                    t: self.now(),
                    node: name.to_string(),
                    what: format!("evidence counter {n}"),
                });
            }
        }
    }

    /// vipd: the sum of the counters a fault moves (transitions, VIP restored, repairs, failed checks,
    /// link/netlink events); Keepalived: its state-change and address log lines. Restarts count as evidence.
    fn evidence_count(&self, i: usize) -> u64 {
        let Some(lb) = &self.w.lbs[i] else { return 0 };
        match lb {
            Lb::Vipd(v) => {
                let Ok((_, body)) = v.admin_get("/metrics") else {
                    return self.evidence[i];
                };
                let names = [
                    "vipd_vrrp_transitions_total",
                    "vipd_vrrp_vip_restored_total",
                    "vipd_vrrp_garp_repair_sent_total",
                    "vipd_backend_check_failures_total",
                    "vipd_vrrp_send_errors_total",
                    "vipd_config_reloads_total",
                    // A stopped node that resumes cleanly moves nothing else.
                    "vipd_vrrp_late_timers_total",
                ];
                let sum: f64 = body
                    .lines()
                    .filter(|l| names.iter().any(|n| l.starts_with(n)))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum();
                sum as u64 + u64::from(v.pid() as u32)
            }
            Lb::Pair { .. } => lb
                .log_lines()
                .iter()
                .filter(|l| l.contains("Entering") || l.contains("removing") || l.contains("VIP"))
                .count() as u64,
        }
    }
}

/// Open descriptors and resident memory of a process, from /proc.
fn footprint(pid: i32) -> Option<(u64, u64)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((fds, rss))
}

fn vip_sock() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VIP), PORT)
}

fn client_opts(w: &World) -> ClientOpts {
    ClientOpts {
        ca: Some(w.pki.ca_cert().to_path_buf()),
        server_name: None,
        client_cert: None,
        timeout: Some(Duration::from_secs(1)),
    }
}

/// The client: a request loop (the lab's [`Probe`], each request recorded as it is taken) and two watch
/// streams, each a thread in the client namespace.
struct Client {
    _requests: Probe,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl Client {
    fn start(w: &World, rec: Shared, t0: Instant) -> Result<Client> {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = w.lab.node("client").ns.name().to_string();
        let opts = client_opts(w);
        let r = rec.clone();
        let spec = ProbeSpec::new(vip_sock(), opts.clone())
            .max_run(CLIENT_HARD_STOP)
            .on_sample(move |s| record_request(&r, t0, s));
        let requests = Probe::start(&ns, spec)?;
        let mut threads = Vec::new();
        for k in 0..2 {
            let (s, r, o) = (stop.clone(), rec.clone(), opts.clone());
            threads.push(spawn_in_netns(
                &ns,
                &format!("chaos-watch{k}"),
                move || {
                    watch(&s, &r, t0, &o, k);
                },
            )?);
        }
        Ok(Client {
            _requests: requests,
            stop,
            threads,
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Bound of any client loop (runs end long before).
const CLIENT_HARD_STOP: Duration = Duration::from_secs(3 * 3600);

/// One request of the client, in the history: its start and end in seconds since `t0`.
fn record_request(rec: &Shared, t0: Instant, s: &Sample) {
    let secs = |at: Instant| at.saturating_duration_since(t0).as_secs_f64();
    if let Ok(mut r) = rec.lock() {
        let _ = r.record(Event::Request {
            t: secs(s.start),
            end: secs(s.end),
            ok: s.ok(),
            err: s.result.clone().err(),
        });
    }
}

/// A `/watch` stream held open; when it breaks, the break is recorded (as a failed request of the stream)
/// and the stream reopened.
fn watch(stop: &AtomicBool, rec: &Shared, t0: Instant, opts: &ClientOpts, k: usize) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let path = "/watch?interval_ms=100";
    while !stop.load(Ordering::SeqCst) && t0.elapsed() < CLIENT_HARD_STOP {
        let opened = t0.elapsed().as_secs_f64();
        let r = rt.block_on(apiserver::follow_lines(vip_sock(), opts, path, |_| {
            !stop.load(Ordering::SeqCst)
        }));
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let t = t0.elapsed().as_secs_f64();
        let err = match r {
            Ok(()) => "stream ended".to_string(),
            Err(e) => e.to_string(),
        };
        if let Ok(mut r) = rec.lock() {
            let _ = r.record(Event::Observed {
                t,
                node: format!("watch{k}"),
                what: format!("watch broke after {:.1}s: {err}", t - opened),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where a run's files go: `<dir>/<implementation>-<seed>.jsonl`.
pub fn history_path(dir: &Path, imp: Imp, seed: u64) -> PathBuf {
    dir.join(format!("{}-{seed}.jsonl", imp.label().replace('+', "-")))
}
