//! `vipd run`: the one place that wires VRRP, health checks and the proxy together.
//!
//! Health state feeds two consumers: the proxy's backend set, and VRRP tracking (a node whose proxy has no
//! healthy backend lowers its priority or goes to fault, so it never keeps the VIP from a node that can serve).
//! The supervisor owns the signal loop: SIGTERM / SIGINT hand the VIP over (priority 0) and drain the proxy,
//! SIGHUP reloads the config file, applying what can change live and restarting the VRRP instance cleanly when
//! its settings changed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::{self, AdminState, BackendStatus, ProxyStatus, StatusDoc, VipStatus, VrrpState};
use crate::cluster::merge::{self, ClusterSources};
use crate::config::fmt_duration;
use crate::config::{Balance, Checksum, Config, HealthKind, Track, UNHEALTHY_PRIORITY};
use crate::live::{Live, SharedLive};
use crate::metrics;
use crate::notify::Notifier;
use vrrp::proto::{ChecksumMode, Priority};
use vrrp::sys::{Instance, InstanceConfig};

/// Where the running config comes from, read at start and again on every SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`: vipd's own schema.
    File(PathBuf),
    /// `--cluster-config FILE [--config FILE] [--node ADDR]`: derived for this node (`cluster::merge`).
    Cluster(ClusterSources),
}

impl ConfigSource {
    /// Reads and checks the file(s) with every rule `validate` applies; the error is the lines it prints.
    /// Warnings (a tracking weight that cannot move the VIP) come with the config.
    pub fn load(&self) -> Result<(Config, Vec<String>), Vec<String>> {
        match self {
            ConfigSource::File(path) => Config::load(path)
                .map(|c| (c, Vec::new()))
                .map_err(|e| e.lines(path)),
            ConfigSource::Cluster(src) => {
                let local = crate::localnet::local_addrs()
                    .map_err(|e| vec![format!("cannot list this machine's addresses: {e}")])?;
                let r = merge::resolve(src, local).map_err(|r| r.0)?;
                Ok((r.config, r.report.warnings))
            }
        }
    }

    /// For the log: the file(s).
    pub fn describe(&self) -> String {
        match self {
            ConfigSource::File(p) => p.display().to_string(),
            ConfigSource::Cluster(src) => match &src.config {
                Some(c) => format!("{} with {}", src.cluster.display(), c.display()),
                None => src.cluster.display().to_string(),
            },
        }
    }
}

/// How long start-up waits for the first round of health checks before VRRP joins, so that the node joins
/// with the priority its backends deserve instead of moving the VIP a second later.
fn first_round_budget(cfg: &Config) -> Duration {
    cfg.health.timeout + Duration::from_millis(500)
}

/// Everything `vipd run` needs to know, translated from the validated config into each library's terms.
pub fn health_config(cfg: &Config) -> health::HealthConfig {
    let check = match cfg.health.kind {
        HealthKind::Tcp => health::Check::Tcp,
        HealthKind::Https => health::Check::Https(health::HttpsCheck {
            path: cfg.health.path.clone(),
            expect_status: cfg.health.expect_status,
            ca_file: (!cfg.health.insecure_skip_verify).then(|| cfg.health.ca_file.clone()),
            server_name: cfg.health.server_name.clone(),
            client_cert: cfg.health.client_auth.as_ref().map(|c| c.cert.clone()),
            client_key: cfg.health.client_auth.as_ref().map(|c| c.key.clone()),
            insecure_skip_verify: cfg.health.insecure_skip_verify,
        }),
    };
    health::HealthConfig {
        check,
        interval: cfg.health.interval,
        timeout: cfg.health.timeout,
        rise: cfg.health.rise,
        fall: cfg.health.fall,
    }
}

/// `proxy.threads` as the proxy takes it: `auto` is one thread per CPU this process may run on (its affinity
/// and cgroup quota, as `std::thread::available_parallelism` reads them), at most 64.
fn proxy_threads(threads: Option<u32>) -> usize {
    threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get().min(64)),
        |n| n as usize,
    )
}

pub fn proxy_config(cfg: &Config) -> proxy::ProxyConfig {
    let mut p = proxy::ProxyConfig::new(cfg.proxy_listen());
    // Listening on the VIP before holding it needs IP_FREEBIND; an explicit bind address may be anything.
    p.freebind = cfg.proxy.bind.is_none() || cfg.proxy.bind == Some(cfg.control_plane_vip);
    p.settings.balance = match cfg.proxy.balance {
        Balance::LeastConn => proxy::Balance::LeastConn,
        Balance::RoundRobin => proxy::Balance::RoundRobin,
    };
    p.settings.connect_timeout = cfg.proxy.connect_timeout;
    p.settings.retries = cfg.proxy.retries;
    p.settings.max_connections = cfg.proxy.max_connections as usize;
    p.settings.idle_timeout = (!cfg.proxy.idle_timeout.is_zero()).then_some(cfg.proxy.idle_timeout);
    p.settings.drain_timeout = cfg.proxy.drain_timeout;
    p.settings.shutdown_sessions_on_backend_down = cfg.proxy.shutdown_sessions_on_backend_down;
    p.threads = proxy_threads(cfg.proxy.threads);
    p
}

pub fn instance_config(cfg: &Config) -> InstanceConfig {
    InstanceConfig {
        interface: cfg.interface.clone(),
        vrid: cfg.vrrp.vrid,
        priority: cfg.vrrp.priority,
        advert_interval: cfg.vrrp.advert_interval,
        preempt: cfg.vrrp.preempt,
        preempt_delay: cfg.vrrp.preempt_delay,
        vip: cfg.control_plane_vip,
        unicast_peers: cfg.vrrp.unicast_peers.clone(),
        unicast_source: cfg.vrrp.unicast_source,
        checksum: match cfg.vrrp.checksum {
            Checksum::PseudoHeader => ChecksumMode::PseudoHeader,
            Checksum::MessageOnly => ChecksumMode::MessageOnly,
        },
        garp_repeat: cfg.vrrp.garp.repeat,
        garp_delay: cfg.vrrp.garp.delay,
        garp_refresh: cfg.vrrp.garp.refresh,
        version: cfg.vrrp.version,
        auth: cfg
            .vrrp
            .auth_pass
            .as_deref()
            .and_then(vrrp::proto::Auth::pass)
            .unwrap_or_default(),
    }
}

/// Whether two instance configs differ in nothing but the protocol version and the VRRPv2 password, which a
/// running instance changes in place (no handover: a cluster moving mixed -> 3 node by node keeps its VIP).
fn only_wire_differs(a: &InstanceConfig, b: &InstanceConfig) -> bool {
    let strip = |c: &InstanceConfig| InstanceConfig {
        version: vrrp::proto::Version::V3,
        auth: vrrp::proto::Auth::None,
        ..c.clone()
    };
    strip(a) == strip(b)
}

/// Keepalived keeps only the first 8 bytes of `auth_pass`, and so does vipd: say so, as Keepalived does.
fn warn_long_auth_pass(cfg: &Config) {
    if cfg.vrrp.auth_pass.as_ref().is_some_and(|p| p.len() > 8) {
        warn!(
            "vrrp.authPass is longer than 8 bytes: only the first 8 are used (as Keepalived does)"
        );
    }
}

/// What tracking asks of VRRP for a given health picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackDecision {
    pub priority: Priority,
    pub fault: bool,
}

pub fn track_decision(cfg: &Config, any_healthy: bool) -> TrackDecision {
    let base = cfg.vrrp.priority;
    if any_healthy {
        return TrackDecision {
            priority: base,
            fault: false,
        };
    }
    match cfg.vrrp.track.unhealthy_priority(base) {
        Some(priority) => TrackDecision {
            priority,
            fault: false,
        },
        None => TrackDecision {
            priority: base,
            fault: true,
        },
    }
}

fn to_proxy_backends(snap: &health::Snapshot) -> proxy::Backends {
    Arc::new(
        snap.iter()
            .map(|b| proxy::BackendState {
                addr: b.addr,
                healthy: b.healthy,
            })
            .collect(),
    )
}

/// Runs the daemon until SIGTERM / SIGINT; returns once the VIP is handed over and the proxy is drained.
///
/// Capabilities are checked and dropped by the caller, before the runtime starts (they are per thread).
pub async fn run(source: ConfigSource, cfg: Config) -> anyhow::Result<()> {
    // Handlers first: until they exist, SIGTERM kills the process outright (a VIP may stay behind) and SIGHUP
    // kills it too. A signal received during start-up waits in its stream and is handled by the main loop.
    let mut signals = Signals::install()?;
    let cfg = Arc::new(cfg);
    log_start(&source, &cfg);
    let mut daemon = Daemon::start(cfg).await?;
    daemon.join_vrrp().await?;
    daemon.announce_ready();
    daemon.serve(&source, &mut signals).await;
    daemon.stop().await;
    Ok(())
}

/// The signals the daemon acts on, installed before anything else starts.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

enum Received {
    Stop(&'static str),
    Reload,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal (cancel-safe: each stream keeps what it received).
    async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.term.recv() => Received::Stop("SIGTERM"),
            _ = self.int.recv() => Received::Stop("SIGINT"),
            _ = self.hup.recv() => Received::Reload,
        }
    }
}

fn log_start(source: &ConfigSource, cfg: &Config) {
    info!(
        config = %source.describe(),
        vip = %cfg.control_plane_vip,
        port = cfg.control_plane_lb_port,
        interface = %cfg.interface,
        vrid = cfg.vrrp.vrid.get(),
        priority = cfg.vrrp.priority.get(),
        backends = cfg.backends.len(),
        "starting vipd {}",
        env!("CARGO_PKG_VERSION")
    );
    if cfg.vrrp.priority == Priority::OWNER && cfg.vrrp.track != Track::Fault {
        info!(
            "priority 255: this node owns the VIP and its priority never changes, so tracking does not move the \
             VIP away from it (trackWeight: fault would)"
        );
    }
}

/// The running daemon: every task and handle `run` starts, and what the signal loop needs to drive them.
struct Daemon {
    current: Arc<Config>,
    checker: health::HealthChecker,
    proxy_handle: proxy::ProxyHandle,
    proxy_listen: SocketAddr,
    live: SharedLive,
    tasks: Tasks,
    /// The admin endpoint's VRRP status until the instance joins (it answers `initialize` meanwhile).
    placeholder: Option<watch::Sender<vrrp::sys::VrrpStatus>>,
    instance: Option<Instance>,
    cfg_tx: watch::Sender<Arc<Config>>,
    track_rx: watch::Receiver<TrackDecision>,
    notifier: Notifier,
    shutdown: CancellationToken,
    proxy_cancel: CancellationToken,
    proxy_task: JoinHandle<()>,
    tracker: JoinHandle<()>,
    admin_task: JoinHandle<()>,
    metrics_task: Option<JoinHandle<()>>,
    watchdog: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Health checks, proxy and admin endpoint, in the order that refuses a bad start before anything touches
    /// the network; VRRP joins later (`join_vrrp`).
    async fn start(cfg: Arc<Config>) -> anyhow::Result<Self> {
        // Health first: a bad CA or client certificate refuses the start before anything touches the network.
        let checker = health::HealthChecker::start(health_config(&cfg), cfg.backends.clone())
            .context("health checks")?;
        let (backends_tx, backends_rx) =
            watch::channel(to_proxy_backends(&checker.subscribe().borrow()));
        let proxy = proxy::Proxy::bind(proxy_config(&cfg), backends_rx)
            .with_context(|| format!("proxy: cannot listen on {}", cfg.proxy_listen()))?;
        let admin_listener = admin::bind(cfg.admin.listen)
            .await
            .with_context(|| format!("admin: cannot listen on {}", cfg.admin.listen))?;
        let metrics_listener = bind_metrics(&cfg).await?;

        let (live, placeholder) = initial_live(&cfg, &checker, &proxy);
        let shutdown = CancellationToken::new();
        let proxy_cancel = CancellationToken::new();
        let tasks = Tasks::default();
        let proxy_listen = proxy.local_addr();
        let proxy_handle = proxy.handle();
        // The proxy serves on every LB node, master or not, from the start.
        let proxy_task = tasks.proxy.spawn(proxy.run(proxy_cancel.clone()));
        let (cfg_tx, track_rx, tracker) =
            spawn_tracking(&cfg, &checker, backends_tx, &tasks, &shutdown);
        let registry = Arc::new(metrics::registry(live.clone()));
        let admin_task = tokio::spawn(admin::serve(
            admin_listener,
            admin_state(&registry, &live, &tasks),
            shutdown.clone(),
        ));
        let metrics_task = metrics_listener.map(|l| {
            let state = AdminState::metrics_only(registry.clone());
            tokio::spawn(admin::serve(l, state, shutdown.clone()))
        });
        Ok(Self {
            current: cfg,
            checker,
            proxy_handle,
            proxy_listen,
            live,
            tasks,
            placeholder: Some(placeholder),
            instance: None,
            cfg_tx,
            track_rx,
            notifier: Notifier::from_env(),
            shutdown,
            proxy_cancel,
            proxy_task,
            tracker,
            admin_task,
            metrics_task,
            watchdog: None,
        })
    }

    /// Joins VRRP with the priority the backends deserve: waits (briefly) for the first round of checks.
    async fn join_vrrp(&mut self) -> anyhow::Result<()> {
        let cfg = self.current.clone();
        let mut health_rx = self.checker.subscribe();
        wait_for_first_round(&mut health_rx, first_round_budget(&cfg)).await;
        let any_healthy = health_rx.borrow().iter().any(|b| b.healthy);
        let decision = track_decision(&cfg, any_healthy);
        warn_long_auth_pass(&cfg);
        let instance = Instance::start(instance_config(&cfg))
            .await
            .context("VRRP")?;
        apply_track(Some(&instance), decision);
        if !any_healthy {
            warn!(
                "no healthy backend yet: joining VRRP with priority {}",
                decision.priority
            );
        }
        self.instance = Some(instance);
        self.publish_instance();
        self.placeholder = None;
        Ok(())
    }

    /// The instance's status and counters become what the admin endpoint and the metrics read.
    fn publish_instance(&self) {
        if let Some(i) = &self.instance {
            let mut l = self.live.write().unwrap_or_else(|e| e.into_inner());
            l.vrrp_status = i.status();
            l.vrrp_stats = i.stats();
        }
    }

    fn ready_status(&self) -> String {
        let c = &self.current;
        format!(
            "VIP {} on {}, proxy {}",
            c.control_plane_vip, c.interface, self.proxy_listen
        )
    }

    /// Tells systemd the daemon is ready and starts its watchdog pings.
    fn announce_ready(&mut self) {
        if let Err(e) = self.notifier.ready(&self.ready_status()) {
            warn!("sd_notify READY failed: {e}");
        }
        let (l, t) = (self.live.clone(), self.tasks.clone());
        self.watchdog = self.notifier.spawn_watchdog(
            move || liveness(&l.read().unwrap_or_else(|e| e.into_inner()), &t).is_ok(),
            self.shutdown.clone(),
        );
        info!(
            proxy = %self.proxy_listen,
            admin = %self.current.admin.listen,
            metrics = %self
                .current
                .metrics
                .listen
                .map_or_else(|| "off".to_string(), |a| a.to_string()),
            "vipd is running"
        );
    }

    /// The signal loop: reloads on SIGHUP, forwards tracking decisions, returns on SIGTERM / SIGINT.
    async fn serve(&mut self, source: &ConfigSource, signals: &mut Signals) {
        loop {
            tokio::select! {
                received = signals.next() => match received {
                    Received::Stop(name) => {
                        info!("{name}: handing over the VIP and draining");
                        return;
                    }
                    Received::Reload => self.on_sighup(source).await,
                },
                changed = self.track_rx.changed() => {
                    if changed.is_err() { return; }
                    apply_track(self.instance.as_ref(), *self.track_rx.borrow_and_update());
                }
            }
        }
    }

    async fn on_sighup(&mut self, source: &ConfigSource) {
        let _ = self.notifier.reloading();
        let result = reload(
            source,
            &self.current,
            &self.checker,
            &self.proxy_handle,
            &mut self.instance,
        )
        .await;
        if let Ok(Some(new)) = &result {
            self.current = new.clone();
            let _ = self.cfg_tx.send(new.clone());
        }
        publish_reload(&self.live, &result, self.instance.as_ref());
        // Whatever the reload did, the instance gets the current tracking decision.
        apply_track(self.instance.as_ref(), *self.track_rx.borrow_and_update());
        let _ = self.notifier.ready(&self.ready_status());
        // Last: the log line is what an operator (and a test) waits for, so all it announces is already
        // true: counters, /status, tracking, READY.
        announce_reload(&result);
    }

    /// VIP first (priority 0: the backup takes over after its skew time), then the proxy drains what it has,
    /// then the remaining tasks stop.
    async fn stop(self) {
        let _ = self.notifier.stopping();
        if let Some(i) = self.instance {
            i.shutdown().await;
            info!("VIP handed over");
        }
        self.proxy_cancel.cancel();
        if let Err(e) = self.proxy_task.await {
            error!("proxy task failed: {e}");
        }
        self.shutdown.cancel();
        let _ = self.tracker.await;
        let _ = self.admin_task.await;
        if let Some(t) = self.metrics_task {
            let _ = t.await;
        }
        if let Some(w) = self.watchdog {
            let _ = w.await;
        }
        self.checker.shutdown().await;
        info!("stopped");
    }
}

/// The live state before VRRP joins: the admin endpoint already answers (/healthz 200, /readyz 503
/// "initializing", /status with the VRRP state `initialize`) from a placeholder status the instance's replaces.
fn initial_live(
    cfg: &Arc<Config>,
    checker: &health::HealthChecker,
    proxy: &proxy::Proxy,
) -> (SharedLive, watch::Sender<vrrp::sys::VrrpStatus>) {
    let (placeholder_tx, placeholder_rx) = watch::channel(vrrp::sys::VrrpStatus {
        state: vrrp::proto::State::Initialize,
        effective_priority: cfg.vrrp.priority,
        master_address: None,
        vip_held: false,
        transitions: 0,
        master_advert_interval: cfg.vrrp.advert_interval,
        version: cfg.vrrp.version,
        v2_peer: None,
        v3_peer: None,
        v3_only_master: None,
    });
    let live = Arc::new(RwLock::new(Live {
        config: cfg.clone(),
        vrrp_status: placeholder_rx,
        vrrp_stats: Arc::default(),
        health: checker.subscribe(),
        proxy_stats: proxy.stats(),
        proxy_listen: proxy.local_addr(),
        started: SystemTime::now(),
        reloads: 0,
        reload_failures: 0,
    }));
    (live, placeholder_tx)
}

/// Tracking: health -> proxy backend set and VRRP priority. The instance is replaced on reload, so the task
/// talks to it through a channel of decisions the signal loop forwards; a new config reaches it on `cfg_tx`.
fn spawn_tracking(
    cfg: &Arc<Config>,
    checker: &health::HealthChecker,
    backends_tx: watch::Sender<proxy::Backends>,
    tasks: &Tasks,
    shutdown: &CancellationToken,
) -> (
    watch::Sender<Arc<Config>>,
    watch::Receiver<TrackDecision>,
    JoinHandle<()>,
) {
    let any_healthy = checker.subscribe().borrow().iter().any(|b| b.healthy);
    let (track_tx, track_rx) = watch::channel(track_decision(cfg, any_healthy));
    let (cfg_tx, cfg_rx) = watch::channel(cfg.clone());
    let tracker = tasks.tracker.spawn(track_health(
        checker.subscribe(),
        cfg_rx,
        backends_tx,
        track_tx,
        shutdown.clone(),
    ));
    (cfg_tx, track_rx, tracker)
}

fn admin_state(
    registry: &Arc<prometheus_client::registry::Registry>,
    live: &SharedLive,
    tasks: &Tasks,
) -> AdminState {
    let (l1, l2, l3) = (live.clone(), live.clone(), live.clone());
    let (tasks1, tasks2) = (tasks.clone(), tasks.clone());
    AdminState::new(
        registry.clone(),
        move || status_doc(&l1.read().unwrap_or_else(|e| e.into_inner())),
        move || liveness(&l2.read().unwrap_or_else(|e| e.into_inner()), &tasks1),
        move || readiness(&l3.read().unwrap_or_else(|e| e.into_inner()), &tasks2),
    )
}

/// Until every backend has been checked once, or the budget is spent.
async fn wait_for_first_round(health_rx: &mut watch::Receiver<health::Snapshot>, budget: Duration) {
    let deadline = Instant::now() + budget;
    while !health_rx.borrow().iter().all(|b| b.checks > 0) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || tokio::time::timeout(left, health_rx.changed())
                .await
                .is_err()
        {
            break;
        }
    }
}

/// The metrics listener, when `metrics.listen` is set; bound at start like the admin endpoint, so a taken
/// port refuses the start.
async fn bind_metrics(cfg: &Config) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = cfg.metrics.listen else {
        return Ok(None);
    };
    let l = admin::bind(addr)
        .await
        .with_context(|| format!("metrics: cannot listen on {addr}"))?;
    Ok(Some(l))
}

/// Whether a long-running task is still running, for `/healthz` and the systemd watchdog.
#[derive(Debug, Clone, Default)]
pub struct TaskFlag(Arc<std::sync::atomic::AtomicBool>);

impl TaskFlag {
    fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        use std::sync::atomic::Ordering;
        self.0.store(true, Ordering::SeqCst);
        let flag = self.0.clone();
        tokio::spawn(async move {
            let out = fut.await;
            flag.store(false, Ordering::SeqCst);
            out
        })
    }

    pub fn running(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tasks {
    pub proxy: TaskFlag,
    pub tracker: TaskFlag,
}

/// `/healthz`: the process and its tasks are alive.
pub fn liveness(live: &Live, tasks: &Tasks) -> admin::Check {
    if live.vrrp_status.has_changed().is_err() {
        return Err("the VRRP driver stopped".into());
    }
    if !tasks.tracker.running() {
        return Err("the health tracking task stopped".into());
    }
    if !tasks.proxy.running() {
        return Err("the proxy stopped".into());
    }
    Ok(())
}

/// `/readyz`: VRRP running (past initialize) and the proxy listening.
pub fn readiness(live: &Live, tasks: &Tasks) -> admin::Check {
    liveness(live, tasks)?;
    let state = live.vrrp_status.borrow().state;
    if state == vrrp::proto::State::Initialize {
        return Err("VRRP is still initializing".into());
    }
    Ok(())
}

/// The `/status` document.
pub fn status_doc(live: &Live) -> StatusDoc {
    let c = &live.config;
    let v = live.vrrp_status.borrow().clone();
    let health = live.health.borrow().clone();
    let ps = &live.proxy_stats;
    use std::sync::atomic::Ordering::Relaxed;
    StatusDoc {
        node: node_name(),
        vrrp: admin::VrrpStatus {
            state: match v.state {
                vrrp::proto::State::Initialize => VrrpState::Initialize,
                vrrp::proto::State::Backup => VrrpState::Backup,
                vrrp::proto::State::Master => VrrpState::Master,
                vrrp::proto::State::Fault => VrrpState::Fault,
            },
            vrid: c.vrrp.vrid.get(),
            priority: c.vrrp.priority.get(),
            effective_priority: v.effective_priority.get(),
            master_address: v.master_address,
            advert_interval: fmt_duration(v.master_advert_interval.as_duration()),
            transitions: v.transitions,
            version: v.version.as_str().to_string(),
        },
        vip: VipStatus {
            address: c.control_plane_vip,
            held: v.vip_held,
        },
        proxy: ProxyStatus {
            listen: live.proxy_listen,
            active_connections: ps.active.load(Relaxed),
            total_connections: ps.accepted.load(Relaxed),
        },
        backends: health
            .iter()
            .map(|h| BackendStatus {
                address: h.addr,
                healthy: h.healthy,
                since: admin::rfc3339(h.since),
                reason: h.reason.clone().unwrap_or_else(|| "ok".into()),
                active_connections: ps
                    .backend(h.addr)
                    .map(|b| b.active.load(Relaxed))
                    .unwrap_or(0),
            })
            .collect(),
        warnings: vrrp_warnings(&v),
    }
}

/// A router heard in the other VRRP version this recently still counts for the `/status` warning.
const V2_PEER_WARN_FOR: Duration = Duration::from_secs(60);

/// The `/status` warnings about VRRP: the virtual router split by version. As version 3, a VRRPv2 router in
/// our VRID, and as version 2, a VRRPv3-only one (either cannot hear us); as mixed, a master that sends
/// VRRPv3 only (VRRPv2 routers cannot hear it).
fn vrrp_warnings(v: &vrrp::sys::VrrpStatus) -> Vec<String> {
    use vrrp::proto::Version;
    let recent = |p: Option<vrrp::sys::PeerHeard>, when: Version| {
        p.filter(|p| v.version == when && p.last_heard.elapsed() <= V2_PEER_WARN_FOR)
    };
    let mut out = Vec::new();
    let foreign = [
        (
            v.v2_peer,
            Version::V3,
            "VRRPv2",
            "set vrrp.version: mixed while it runs",
        ),
        (
            v.v3_peer,
            Version::V2,
            "VRRPv3-only",
            "set vrrp.version: mixed (or 3 once no VRRPv2 router remains)",
        ),
    ];
    for (peer, ours, theirs, fix) in foreign {
        if let Some(p) = recent(peer, ours) {
            out.push(format!(
                "{theirs} router {} (priority {}) advertises our VRID, last {}s ago: it cannot hear this \
                 version-{} node, so both may hold the VIP; {fix}",
                p.src,
                p.priority,
                p.last_heard.elapsed().as_secs(),
                ours.as_str()
            ));
        }
    }
    if let Some(p) = recent(v.v3_only_master, Version::Mixed) {
        out.push(format!(
            "master {} (priority {}) sends VRRPv3 only, last {}s ago: VRRPv2 routers (Keepalived without \
             vrrp_version 3) cannot hear it and may hold the VIP too; keep it on vrrp.version: mixed while any remain",
            p.src,
            p.priority,
            p.last_heard.elapsed().as_secs()
        ));
    }
    out
}

fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn apply_track(instance: Option<&Instance>, d: TrackDecision) {
    if let Some(i) = instance {
        i.set_priority(d.priority);
        i.set_track_fault(d.fault);
    }
}

/// Health -> proxy backends and tracking decisions, until shutdown.
async fn track_health(
    mut health_rx: watch::Receiver<health::Snapshot>,
    mut cfg_rx: watch::Receiver<Arc<Config>>,
    backends_tx: watch::Sender<proxy::Backends>,
    track_tx: watch::Sender<TrackDecision>,
    shutdown: CancellationToken,
) {
    let mut last_any: Option<bool> = None;
    loop {
        let snap = health_rx.borrow_and_update().clone();
        let cfg = cfg_rx.borrow_and_update().clone();
        backends_tx.send_replace(to_proxy_backends(&snap));
        let any = snap.iter().any(|b| b.healthy);
        if last_any != Some(any) {
            if last_any.is_some() {
                if any {
                    info!("a backend is healthy again: VRRP priority back to configured");
                } else {
                    warn!(
                        "no healthy backend: {}",
                        match cfg.vrrp.track {
                            Track::Fault => "VRRP goes to fault".to_string(),
                            Track::Lowest if cfg.vrrp.priority == Priority::OWNER => {
                                "VRRP priority stays 255 (address owner)".to_string()
                            }
                            Track::Lowest => format!(
                                "VRRP priority drops to {UNHEALTHY_PRIORITY} (lowest), below every healthy node"
                            ),
                            Track::Weight(w) => format!("VRRP priority adjusted by {w}"),
                        }
                    );
                }
            }
            last_any = Some(any);
        }
        track_tx.send_if_modified(|d| {
            let new = track_decision(&cfg, any);
            let changed = *d != new;
            *d = new;
            changed
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = health_rx.changed() => if r.is_err() { return },
            r = cfg_rx.changed() => if r.is_err() { return },
        }
    }
}

/// Applies a new config file. `Ok(None)` when nothing changed, `Ok(Some)` with the config now running; an error
/// leaves everything as it was.
async fn reload(
    source: &ConfigSource,
    current: &Arc<Config>,
    checker: &health::HealthChecker,
    proxy: &proxy::ProxyHandle,
    instance: &mut Option<Instance>,
) -> anyhow::Result<Option<Arc<Config>>> {
    let new = match source.load() {
        Ok((c, warnings)) => {
            for w in warnings {
                warn!("reload: {w}");
            }
            c
        }
        Err(lines) => {
            return Err(InvalidFile {
                what: source.describe(),
                lines,
            }
            .into())
        }
    };
    if new == **current {
        return Ok(None);
    }
    if new.proxy_listen() != current.proxy_listen()
        || new.proxy.threads != current.proxy.threads
        || new.admin.listen != current.admin.listen
        || new.metrics.listen != current.metrics.listen
    {
        anyhow::bail!(
            "controlPlaneLBPort, proxy.bind, proxy.threads, admin.listen and metrics.listen cannot change on reload (restart vipd to apply them)"
        );
    }
    // Proxy settings before the backend set: a backend that leaves the list must meet the new
    // shutdownSessionsOnBackendDown, or the proxy sees it go with the old setting and the transition is lost.
    proxy.update(proxy_config(&new).settings);
    // Health may still refuse (unreadable CA file, bad key): then the old proxy settings come back, and
    // nothing else was applied.
    if let Err(e) = checker.reconfigure(health_config(&new), new.backends.clone()) {
        proxy.update(proxy_config(current).settings);
        return Err(anyhow::Error::new(e).context("health checks"));
    }
    let (old_vrrp, new_vrrp) = (instance_config(current), instance_config(&new));
    if new_vrrp != old_vrrp {
        warn_long_auth_pass(&new);
    }
    if new_vrrp != old_vrrp && only_wire_differs(&old_vrrp, &new_vrrp) {
        info!(
            version = new.vrrp.version.as_str(),
            "reload: VRRP version / authentication changed, applied in place"
        );
        if let Some(i) = instance.as_ref() {
            i.set_wire(new_vrrp.version, new_vrrp.auth);
        }
    } else if new_vrrp != old_vrrp {
        // One instance at a time: the new one would otherwise remove the old one's VIP as stale.
        info!("reload: VRRP settings changed, restarting the instance (priority 0 handover if master)");
        if let Some(old) = instance.take() {
            old.shutdown().await;
        }
        match Instance::start(instance_config(&new)).await {
            Ok(i) => *instance = Some(i),
            Err(e) => {
                error!("reload: the new VRRP settings do not start ({e}); restarting with the old ones");
                // Back to the old config everywhere, so a refused reload means the old config runs.
                proxy.update(proxy_config(current).settings);
                if let Err(h) =
                    checker.reconfigure(health_config(current), current.backends.clone())
                {
                    error!("reload: cannot restore the old health settings: {h}");
                }
                *instance = Some(
                    Instance::start(instance_config(current))
                        .await
                        .context("VRRP restart with the old settings")?,
                );
                anyhow::bail!("VRRP: {e}");
            }
        }
    }
    Ok(Some(Arc::new(new)))
}

/// A config file that does not validate, refused on reload; `lines` are those `vipd validate` prints.
#[derive(Debug)]
struct InvalidFile {
    /// The file, or the files with `--cluster-config`.
    what: String,
    lines: Vec<String>,
}

impl std::fmt::Display for InvalidFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not valid", self.what)
    }
}

impl std::error::Error for InvalidFile {}

/// Makes a reload's outcome visible to the admin endpoint and the metrics: the counters, the running config
/// and the (possibly restarted) VRRP instance's status.
fn publish_reload(
    live: &SharedLive,
    result: &anyhow::Result<Option<Arc<Config>>>,
    instance: Option<&Instance>,
) {
    let mut l = live.write().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(Some(new)) => {
            l.config = new.clone();
            l.reloads += 1;
        }
        Ok(None) => l.reloads += 1,
        Err(_) => l.reload_failures += 1,
    }
    if let Some(i) = instance {
        l.vrrp_status = i.status();
        l.vrrp_stats = i.stats();
    }
}

/// Logs a reload's outcome; called once [`publish_reload`] made it visible.
fn announce_reload(result: &anyhow::Result<Option<Arc<Config>>>) {
    match result {
        Ok(Some(new)) => info!(
            backends = new.backends.len(),
            "reload: new configuration applied"
        ),
        Ok(None) => info!("reload: configuration unchanged"),
        Err(e) => {
            if let Some(invalid) = e.downcast_ref::<InvalidFile>() {
                for line in &invalid.lines {
                    error!("reload: {line}");
                }
            }
            error!("reload refused, the running config stays: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests;
