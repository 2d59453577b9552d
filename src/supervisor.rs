//! `vipd run`: the one place that wires VRRP, health checks and the proxy together.
//!
//! Health state feeds two consumers: the proxy's backend set, and VRRP tracking (a node whose proxy has no
//! healthy backend lowers its priority or goes to fault, so it never keeps the VIP from a node that can serve).
//! The supervisor owns the signal loop: SIGTERM / SIGINT hand the VIP over (priority 0) and drain the proxy,
//! SIGHUP reloads the config file, applying what can change live and restarting the VRRP instance cleanly when
//! its settings changed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::{self, AdminState, BackendStatus, ProxyStatus, StatusDoc, VipStatus, VrrpState};
use crate::config::fmt_duration;
use crate::config::{Balance, Checksum, Config, HealthKind, Track};
use crate::live::{Live, SharedLive};
use crate::metrics;
use crate::notify::Notifier;
use vrrp::proto::{ChecksumMode, Priority};
use vrrp::sys::{Instance, InstanceConfig};

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

pub fn proxy_config(cfg: &Config) -> proxy::ProxyConfig {
    let mut p = proxy::ProxyConfig::new(cfg.proxy_listen());
    // Listening on the VIP before holding it needs IP_FREEBIND; an explicit bind address may be anything.
    p.freebind = cfg.proxy.bind.is_none() || cfg.proxy.bind == Some(cfg.control_plane_vip);
    p.balance = match cfg.proxy.balance {
        Balance::LeastConn => proxy::Balance::LeastConn,
        Balance::RoundRobin => proxy::Balance::RoundRobin,
    };
    p.connect_timeout = cfg.proxy.connect_timeout;
    p.retries = cfg.proxy.retries;
    p.max_connections = cfg.proxy.max_connections as usize;
    p.idle_timeout = (!cfg.proxy.idle_timeout.is_zero()).then_some(cfg.proxy.idle_timeout);
    p.drain_timeout = cfg.proxy.drain_timeout;
    p.shutdown_sessions_on_backend_down = cfg.proxy.shutdown_sessions_on_backend_down;
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
    }
}

/// The priority this node advertises while it has no healthy backend: configured + weight, kept within
/// 1..=254 (tracking never makes or unmakes an address owner, and never means "leaving").
pub fn tracked_priority(base: Priority, weight: i16) -> Priority {
    if base == Priority::OWNER {
        return base;
    }
    let p = (i32::from(base.get()) + i32::from(weight)).clamp(1, 254);
    Priority(p as u8)
}

/// What tracking asks of VRRP for a given health picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackDecision {
    pub priority: Priority,
    pub fault: bool,
}

pub fn track_decision(cfg: &Config, any_healthy: bool) -> TrackDecision {
    let base = cfg.vrrp.priority;
    match (any_healthy, cfg.vrrp.track) {
        (true, _) => TrackDecision {
            priority: base,
            fault: false,
        },
        (false, Track::Weight(w)) => TrackDecision {
            priority: tracked_priority(base, w),
            fault: false,
        },
        (false, Track::Fault) => TrackDecision {
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
pub async fn run(config_path: PathBuf, cfg: Config) -> anyhow::Result<()> {
    // Handlers first: until they exist, SIGTERM kills the process outright (a VIP may stay behind) and SIGHUP
    // kills it too. A signal received during start-up waits in its stream and is handled by the main loop.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let cfg = Arc::new(cfg);
    info!(
        config = %config_path.display(),
        vip = %cfg.control_plane_vip,
        port = cfg.control_plane_lb_port,
        interface = %cfg.interface,
        vrid = cfg.vrrp.vrid.get(),
        priority = cfg.vrrp.priority.get(),
        backends = cfg.backends.len(),
        "starting vipd {}",
        env!("CARGO_PKG_VERSION")
    );

    // Health first: a bad CA or client certificate refuses the start before anything touches the network.
    let checker = health::HealthChecker::start(health_config(&cfg), cfg.backends.clone())
        .context("health checks")?;
    let mut health_rx = checker.subscribe();

    let (backends_tx, backends_rx) = watch::channel(to_proxy_backends(&health_rx.borrow()));
    let proxy = proxy::Proxy::bind(proxy_config(&cfg), backends_rx)
        .with_context(|| format!("proxy: cannot listen on {}", cfg.proxy_listen()))?;
    let proxy_listen = proxy.local_addr();
    let proxy_handle = proxy.handle();
    let proxy_stats = proxy.stats();

    let admin_listener = admin::bind(cfg.admin.listen)
        .await
        .with_context(|| format!("admin: cannot listen on {}", cfg.admin.listen))?;
    let metrics_listener = bind_metrics(&cfg).await?;

    // Until VRRP joins, the admin endpoint already answers: /healthz 200, /readyz 503 ("initializing") and
    // /status with the VRRP state `initialize`, from a placeholder status the instance's replaces.
    let (placeholder_tx, placeholder_rx) = watch::channel(vrrp::sys::VrrpStatus {
        state: vrrp::proto::State::Initialize,
        effective_priority: cfg.vrrp.priority,
        master_address: None,
        vip_held: false,
        transitions: 0,
        master_advert_interval: cfg.vrrp.advert_interval,
    });
    let live: SharedLive = Arc::new(RwLock::new(Live {
        config: cfg.clone(),
        vrrp_status: placeholder_rx,
        vrrp_stats: Arc::default(),
        health: checker.subscribe(),
        proxy_stats: proxy_stats.clone(),
        proxy_listen,
        started: SystemTime::now(),
        reloads: 0,
        reload_failures: 0,
    }));

    let shutdown = CancellationToken::new();
    let proxy_cancel = CancellationToken::new();
    let tasks = Tasks::default();
    // The proxy serves on every LB node, master or not, from the start.
    let proxy_task = tasks.proxy.spawn(proxy.run(proxy_cancel.clone()));

    // Tracking: health -> proxy backend set and VRRP priority. The instance is replaced on reload, so the task
    // talks to it through a channel of decisions the main loop forwards.
    let (track_tx, mut track_rx) = watch::channel(track_decision(
        &cfg,
        health_rx.borrow().iter().any(|b| b.healthy),
    ));
    let (cfg_tx, cfg_rx) = watch::channel(cfg.clone());
    let tracker = tasks.tracker.spawn(track_health(
        checker.subscribe(),
        cfg_rx,
        backends_tx,
        track_tx,
        shutdown.clone(),
    ));

    let registry = Arc::new(metrics::registry(live.clone()));
    let admin_state = {
        let (l1, l2, l3) = (live.clone(), live.clone(), live.clone());
        let (tasks1, tasks2) = (tasks.clone(), tasks.clone());
        AdminState::new(
            registry.clone(),
            move || status_doc(&l1.read().unwrap_or_else(|e| e.into_inner())),
            move || liveness(&l2.read().unwrap_or_else(|e| e.into_inner()), &tasks1),
            move || readiness(&l3.read().unwrap_or_else(|e| e.into_inner()), &tasks2),
        )
    };
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin_state, shutdown.clone()));
    let metrics_task = metrics_listener.map(|l| {
        let state = AdminState::metrics_only(registry.clone());
        tokio::spawn(admin::serve(l, state, shutdown.clone()))
    });

    // Join VRRP with the priority the backends deserve: wait (briefly) for the first round of checks.
    let first_round = Instant::now() + first_round_budget(&cfg);
    while !health_rx.borrow().iter().all(|b| b.checks > 0) {
        let left = first_round.saturating_duration_since(Instant::now());
        if left.is_zero()
            || tokio::time::timeout(left, health_rx.changed())
                .await
                .is_err()
        {
            break;
        }
    }
    let any_healthy = health_rx.borrow().iter().any(|b| b.healthy);
    let decision = track_decision(&cfg, any_healthy);

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
    {
        let mut l = live.write().unwrap_or_else(|e| e.into_inner());
        l.vrrp_status = instance.status();
        l.vrrp_stats = instance.stats();
    }
    drop(placeholder_tx);

    let notifier = Notifier::from_env();
    let ready_status = |c: &Config| {
        format!(
            "VIP {} on {}, proxy {}",
            c.control_plane_vip, c.interface, proxy_listen
        )
    };
    if let Err(e) = notifier.ready(&ready_status(&cfg)) {
        warn!("sd_notify READY failed: {e}");
    }
    let watchdog = {
        let (l, t) = (live.clone(), tasks.clone());
        notifier.spawn_watchdog(
            move || liveness(&l.read().unwrap_or_else(|e| e.into_inner()), &t).is_ok(),
            shutdown.clone(),
        )
    };
    info!(proxy = %proxy_listen, admin = %cfg.admin.listen, metrics = ?cfg.metrics.listen, "vipd is running");

    let mut current = cfg;
    let mut instance = Some(instance);
    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: handing over the VIP and draining"); break; }
            _ = sigint.recv() => { info!("SIGINT: handing over the VIP and draining"); break; }
            _ = sighup.recv() => {
                let _ = notifier.reloading();
                let result = reload(&config_path, &current, &checker, &proxy_handle, &mut instance).await;
                if let Ok(Some(new)) = &result {
                    current = new.clone();
                    let _ = cfg_tx.send(new.clone());
                }
                publish_reload(&live, &result, instance.as_ref());
                // Whatever the reload did, the instance gets the current tracking decision.
                apply_track(instance.as_ref(), *track_rx.borrow_and_update());
                let _ = notifier.ready(&ready_status(&current));
                // Last: the log line is what an operator (and a test) waits for, so all it announces is
                // already true: counters, /status, tracking, READY.
                announce_reload(&result);
            }
            changed = track_rx.changed() => {
                if changed.is_err() { break; }
                apply_track(instance.as_ref(), *track_rx.borrow_and_update());
            }
        }
    }

    let _ = notifier.stopping();
    // VIP first (priority 0: the backup takes over after its skew time), then the proxy drains what it has.
    if let Some(i) = instance {
        i.shutdown().await;
        info!("VIP handed over");
    }
    proxy_cancel.cancel();
    if let Err(e) = proxy_task.await {
        error!("proxy task failed: {e}");
    }
    shutdown.cancel();
    let _ = tracker.await;
    let _ = admin_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    if let Some(w) = watchdog {
        let _ = w.await;
    }
    checker.shutdown().await;
    info!("stopped");
    Ok(())
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
    }
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
    path: &Path,
    current: &Arc<Config>,
    checker: &health::HealthChecker,
    proxy: &proxy::ProxyHandle,
    instance: &mut Option<Instance>,
) -> anyhow::Result<Option<Arc<Config>>> {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            return Err(InvalidFile {
                path: path.to_path_buf(),
                lines: e.lines(path),
            }
            .into())
        }
    };
    if new == **current {
        return Ok(None);
    }
    if new.proxy_listen() != current.proxy_listen()
        || new.admin.listen != current.admin.listen
        || new.metrics.listen != current.metrics.listen
    {
        anyhow::bail!(
            "controlPlaneLBPort, proxy.bind, admin.listen and metrics.listen cannot change on reload (restart vipd to apply them)"
        );
    }
    // Proxy settings before the backend set: a backend that leaves the list must meet the new
    // shutdownSessionsOnBackendDown, or the proxy sees it go with the old setting and the transition is lost.
    proxy.update(proxy_config(&new).settings());
    // Health may still refuse (unreadable CA file, bad key): then the old proxy settings come back, and
    // nothing else was applied.
    if let Err(e) = checker.reconfigure(health_config(&new), new.backends.clone()) {
        proxy.update(proxy_config(current).settings());
        return Err(anyhow::Error::new(e).context("health checks"));
    }
    if instance_config(&new) != instance_config(current) {
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
                proxy.update(proxy_config(current).settings());
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
    path: PathBuf,
    lines: Vec<String>,
}

impl std::fmt::Display for InvalidFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not valid", self.path.display())
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
