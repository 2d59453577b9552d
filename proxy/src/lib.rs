//! TCP L4 proxy to the healthy kube-apiservers. This module owns the public API, the listening socket, the
//! accept loop (with back-off on resource exhaustion), connect-with-retries, the per-session life cycle
//! (idle timeout, kill on backend down, forced close after the drain) and graceful shutdown. Backend choice
//! lives in `balance`, byte moving in `forward`, socket options in `sockopt`, counters in `stats`, the proxy's
//! threads (one listener, event loop and set of sessions each) in `shard`.

mod balance;
mod forward;
mod shard;
mod sockopt;
mod stats;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use stats::{BackendStats, ProxyStats};

use stats::{ActiveGuard, BackendGuard};

/// How a backend is chosen among the healthy ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Fewest open sessions (connects in progress count); ties rotate.
    #[default]
    LeastConn,
    RoundRobin,
}

/// How bytes are moved. Splice is the production path (small exchanges are copied, bulk directions spliced);
/// Copy never splices, so tests and benchmarks can exercise the fallback used where splice is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forwarding {
    #[default]
    Splice,
    Copy,
}

/// Full proxy configuration. Everything except `bind`, `freebind` and `threads` can be changed live with
/// [`ProxyHandle::update`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub bind: SocketAddr,
    /// IP_FREEBIND: listen on the VIP even while another node holds it.
    pub freebind: bool,
    /// Threads that accept and serve sessions, each with its own event loop and, when there are several, its
    /// own listening socket (SO_REUSEPORT: the kernel spreads new connections over them), so a session is
    /// accepted, connected and forwarded on one thread with no hand-off, the way HAProxy's threads work.
    /// 0 (this struct's default) serves on the caller's tokio runtime instead, where work stealing evens out a
    /// thread that the OS scheduler holds back. The daemon passes one per CPU (`proxy.threads: auto`): on the
    /// quiet bench machine own threads matched HAProxy's keep-alive rate with a lower p99, where the shared
    /// runtime trailed (bench/RESULTS.md). Fixed at bind time.
    pub threads: usize,
    /// The live-updatable part.
    pub settings: ProxySettings,
}

impl ProxyConfig {
    /// Defaults that match the daemon's (see [`ProxySettings::default`]), on the caller's runtime.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            freebind: false,
            threads: 0,
            settings: ProxySettings::default(),
        }
    }
}

/// Settings applied live by [`ProxyHandle::update`]. New values apply to new sessions (balance, timeouts,
/// retries, forwarding), to the next accept (max_connections), to open sessions (idle_timeout,
/// shutdown_sessions_on_backend_down) and to the next drain (drain_timeout).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProxySettings {
    pub balance: Balance,
    pub connect_timeout: Duration,
    /// Other backends tried after a failed connect, before the client is closed.
    pub retries: u32,
    /// Open sessions beyond which new clients are closed at once (0 = no limit).
    pub max_connections: usize,
    /// Close a session after this long without bytes either way (None = never).
    pub idle_timeout: Option<Duration>,
    /// On shutdown, how long open sessions may finish before they are closed.
    pub drain_timeout: Duration,
    /// Close a backend's sessions when it goes down (or leaves the list); otherwise they drain naturally.
    pub shutdown_sessions_on_backend_down: bool,
    pub forwarding: Forwarding,
}

impl Default for ProxySettings {
    /// The daemon's defaults: leastconn, 2 s connect timeout, 3 retries, splice.
    fn default() -> Self {
        Self {
            balance: Balance::LeastConn,
            connect_timeout: Duration::from_secs(2),
            retries: 3,
            max_connections: 10_000,
            idle_timeout: None,
            drain_timeout: Duration::from_secs(30),
            shutdown_sessions_on_backend_down: false,
            forwarding: Forwarding::Splice,
        }
    }
}

/// One backend as health checking sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendState {
    pub addr: SocketAddr,
    pub healthy: bool,
}

/// The backend list, published on a watch channel by the health checker (and replaced on reload).
pub type Backends = Arc<Vec<BackendState>>;

/// Changes a running proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    tx: Arc<watch::Sender<ProxySettings>>,
}

impl ProxyHandle {
    pub fn update(&self, settings: ProxySettings) {
        self.tx.send_replace(settings);
    }

    pub fn settings(&self) -> ProxySettings {
        *self.tx.borrow()
    }
}

/// A bound, not yet running proxy.
#[derive(Debug)]
pub struct Proxy {
    /// One per proxy thread (one when serving on the caller's runtime).
    listeners: Vec<std::net::TcpListener>,
    threads: usize,
    local_addr: SocketAddr,
    settings_tx: Arc<watch::Sender<ProxySettings>>,
    backends: watch::Receiver<Backends>,
    stats: Arc<ProxyStats>,
}

/// Listen backlog; the kernel caps it at net.core.somaxconn.
const BACKLOG: i32 = 4096;
/// Back-off after accept fails for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per reason per this period.
const LOG_EVERY: Duration = Duration::from_secs(5);

impl Proxy {
    /// Creates the listening sockets (one per proxy thread) now, so the caller can drop privileges before
    /// [`Proxy::run`].
    pub fn bind(cfg: ProxyConfig, backends: watch::Receiver<Backends>) -> io::Result<Self> {
        let n = cfg.threads.max(1);
        let first = sockopt::listener(cfg.bind, cfg.freebind, BACKLOG, n > 1)?;
        // Port 0 was resolved by the first bind; the others join its port.
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..n {
            listeners.push(sockopt::listener(local_addr, cfg.freebind, BACKLOG, true)?);
        }
        let (tx, _) = watch::channel(cfg.settings);
        Ok(Self {
            listeners,
            threads: cfg.threads,
            local_addr,
            settings_tx: Arc::new(tx),
            backends,
            stats: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            tx: self.settings_tx.clone(),
        }
    }

    /// Serves until `shutdown`, then stops accepting (the listening socket is closed, so new clients are
    /// refused), waits up to `drain_timeout` for open sessions and resets the rest. Returns when every
    /// session is gone.
    pub async fn run(self, shutdown: CancellationToken) {
        let stats = self.stats;
        let shared = Arc::new(Shared {
            settings: self.settings_tx.subscribe(),
            rr: AtomicUsize::new(0),
            resolved: RwLock::new(Arc::new(balance::Resolved::new(Arc::default(), &stats))),
            pipes: forward::PipePool::default(),
            sessions: Mutex::default(),
            forcing: AtomicBool::new(false),
            stats,
            panic_log: RateLimit::default(),
            fail_log: RateLimit::default(),
        });
        tracing::info!(addr = %self.local_addr, threads = self.threads, "proxy listening");
        let monitor_stop = CancellationToken::new();
        let monitor = tokio::spawn(monitor(
            shared.clone(),
            self.backends.clone(),
            self.settings_tx.subscribe(),
            monitor_stop.clone(),
        ));
        let own_threads = self.threads > 0;
        let mut shards: Vec<shard::Shard> = self
            .listeners
            .into_iter()
            .map(|l| shard::start(l, own_threads, &shared, &self.backends, &shutdown))
            .collect();
        // Every listening socket is closed once this returns: new clients are refused from here on.
        for s in &mut shards {
            s.stopped().await;
        }
        drain(&shared, &shards).await;
        for s in shards {
            s.finished().await;
        }
        monitor_stop.cancel();
        let _ = monitor.await;
        tracing::info!("proxy stopped");
    }
}

/// Lets open sessions finish for up to `drain_timeout`, then closes the rest; returns once none is left.
async fn drain(shared: &Shared, shards: &[shard::Shard]) {
    for s in shards {
        s.tracker.close();
    }
    let all = || async {
        for s in shards {
            s.tracker.wait().await;
        }
    };
    let drain = shared.settings.borrow().drain_timeout;
    let open = shared.stats.active.load(Ordering::Relaxed);
    if open > 0 {
        tracing::info!(sessions = open, ?drain, "proxy draining");
    }
    if tokio::time::timeout(drain, all()).await.is_err() {
        let left = shared.stats.active.load(Ordering::Relaxed);
        tracing::warn!(
            sessions = left,
            "proxy drain timeout, closing the remaining sessions"
        );
        shared.force_close();
        all().await;
    }
}

/// State shared by the accept loop and every session.
#[derive(Debug)]
struct Shared {
    stats: Arc<ProxyStats>,
    settings: watch::Receiver<ProxySettings>,
    rr: AtomicUsize,
    /// The backend list last seen, with its counters resolved.
    resolved: RwLock<Arc<balance::Resolved>>,
    pipes: forward::PipePool,
    /// Every open session. Each session watches only its own kill switch: one shared by thousands of
    /// sessions would be a lock every one of them takes on every wake-up.
    sessions: Mutex<Registry>,
    /// Set when the drain expired: sessions registering afterwards are closed at once.
    forcing: AtomicBool,
    panic_log: RateLimit,
    fail_log: RateLimit,
}

impl Shared {
    /// The current backend list, resolved again only when a new list was published.
    fn resolved(&self, backends: &watch::Receiver<Backends>) -> Arc<balance::Resolved> {
        let list = backends.borrow().clone();
        {
            let cur = self.resolved.read().unwrap_or_else(|e| e.into_inner());
            if Arc::ptr_eq(&cur.source, &list) {
                return cur.clone();
            }
        }
        let fresh = Arc::new(balance::Resolved::new(list, &self.stats));
        *self.resolved.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        fresh
    }

    fn register(self: &Arc<Self>) -> Registration {
        let token = Arc::new(Kill::default());
        let slot = self.registry().insert(token.clone());
        if self.forcing.load(Ordering::SeqCst) {
            token.kill();
        }
        Registration {
            shared: self.clone(),
            slot,
            token,
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn force_close(&self) {
        self.forcing.store(true, Ordering::SeqCst);
        for s in self.registry().open() {
            s.token.kill();
        }
    }

    /// Closes the sessions of `addr`; returns how many.
    fn kill_backend(&self, addr: SocketAddr) -> usize {
        let reg = self.registry();
        let mut n = 0;
        for s in reg.open().filter(|s| s.backend == Some(addr)) {
            s.token.kill();
            n += 1;
        }
        n
    }
}

/// Every open session: its backend (once connected) and the switch that closes it. A slab: the slot index is
/// the session's id and freed slots are reused, so registering hashes nothing and, once warm, allocates nothing.
#[derive(Debug, Default)]
struct Registry {
    slots: Vec<Option<Session>>,
    free: Vec<usize>,
}

#[derive(Debug)]
struct Session {
    backend: Option<SocketAddr>,
    token: Arc<Kill>,
}

impl Registry {
    fn insert(&mut self, token: Arc<Kill>) -> usize {
        let s = Some(Session {
            backend: None,
            token,
        });
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = s;
                i
            }
            None => {
                self.slots.push(s);
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        if self.slots.get_mut(slot).and_then(Option::take).is_some() {
            self.free.push(slot);
        }
    }

    fn open(&self) -> impl Iterator<Item = &Session> {
        self.slots.iter().flatten()
    }
}

/// What closes one session from outside (backend down, drain over). A flag and the session task's waker: the
/// session polls it on every wake-up, and a CancellationToken's poll takes its Notify's lock each time (it was
/// about 150 instructions per wake-up in callgrind); this one is an atomic load and a waker comparison.
#[derive(Debug, Default)]
struct Kill {
    killed: AtomicBool,
    waker: Mutex<Option<std::task::Waker>>,
}

impl Kill {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let w = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Resolves once [`Kill::kill`] was called.
    async fn killed(&self) {
        let mut seen: Option<std::task::Waker> = None;
        std::future::poll_fn(|cx| {
            if self.killed.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            if !seen.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                seen = Some(cx.waker().clone());
                // A kill between the load above and the store would have found no waker.
                if self.killed.load(Ordering::SeqCst) {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// A session's entry in [`Shared::sessions`], removed on drop.
#[derive(Debug)]
struct Registration {
    shared: Arc<Shared>,
    slot: usize,
    token: Arc<Kill>,
}

impl Registration {
    fn set_backend(&self, addr: SocketAddr) {
        if let Some(Some(s)) = self.shared.registry().slots.get_mut(self.slot) {
            s.backend = Some(addr);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.registry().remove(self.slot);
    }
}

/// Lets one log line through per period, so a flapping backend or a flood cannot fill the journal.
#[derive(Debug, Default)]
struct RateLimit(Mutex<Option<Instant>>);

impl RateLimit {
    fn allow(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < LOG_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// Errors after which accepting again at once would fail again: back off instead of spinning.
fn resource_exhausted(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

/// Accepts on one listening socket until `shutdown`, then closes it.
async fn serve_listener(
    listener: std::net::TcpListener,
    shared: &Arc<Shared>,
    backends: &watch::Receiver<Backends>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    match TcpListener::from_std(listener) {
        Ok(l) => accept_loop(&l, shared, backends, tracker, shutdown).await,
        Err(e) => tracing::error!(error = %e, "proxy: cannot register the listening socket"),
    }
}

async fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    backends: &watch::Receiver<Backends>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let err_log = RateLimit::default();
    loop {
        let r = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (client, peer) = match r {
            Ok(c) => c,
            Err(e) => {
                shared.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if resource_exhausted(&e) {
                    if err_log.allow() {
                        tracing::warn!(error = %e, ?backoff, "proxy accept failed, backing off");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                } else {
                    // Per-connection failures (ECONNABORTED, EPERM from a firewall...): the connection is
                    // consumed, so the next accept is a new one. Yield anyway so an unexpected persistent
                    // error cannot starve the runtime.
                    if err_log.allow() {
                        tracing::debug!(error = %e, "proxy accept failed");
                    }
                    tokio::task::yield_now().await;
                }
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF_MIN;
        let stats = &shared.stats;
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let max = shared.settings.borrow().max_connections;
        if max > 0 && stats.active.load(Ordering::Relaxed) >= max as u64 {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            sockopt::reset_on_close(&client);
            drop(client);
            continue;
        }
        stats.active.fetch_add(1, Ordering::Relaxed);
        let guard = ActiveGuard(stats.clone());
        tracker.spawn(session(
            shared.clone(),
            client,
            peer,
            backends.clone(),
            guard,
        ));
    }
}

/// A backend connection with the guards that keep its counters exact.
struct Connected {
    stream: TcpStream,
    addr: SocketAddr,
    stats: Arc<BackendStats>,
    _guard: BackendGuard,
}

async fn connect_backend(
    shared: &Shared,
    backends: &watch::Receiver<Backends>,
    settings: &ProxySettings,
) -> Option<Connected> {
    let attempts = 1 + settings.retries as usize;
    let mut tried: Vec<SocketAddr> = Vec::new();
    let seq = shared.rr.fetch_add(1, Ordering::Relaxed);
    for attempt in 0..attempts {
        let list = shared.resolved(backends);
        let pick = balance::pick(&list, &tried, settings.balance, seq.wrapping_add(attempt))?;
        let (addr, bstats) = (pick.entry.addr, pick.entry.stats.clone());
        if pick.panic {
            shared.stats.panic_picks.fetch_add(1, Ordering::Relaxed);
            if shared.panic_log.allow() {
                tracing::warn!(backend = %addr, "proxy: no healthy backend, trying all (panic mode)");
            }
        }
        if attempt > 0 {
            bstats.retries.fetch_add(1, Ordering::Relaxed);
        }
        // Counted before the connect completes, so a burst of clients spreads under leastconn.
        bstats.active.fetch_add(1, Ordering::Relaxed);
        let guard = BackendGuard(bstats.clone());
        let res = connect(addr, settings.connect_timeout).await;
        match res {
            Ok(stream) => {
                bstats.total.fetch_add(1, Ordering::Relaxed);
                return Some(Connected {
                    stream,
                    addr,
                    stats: bstats,
                    _guard: guard,
                });
            }
            Err(e) => {
                bstats.connect_failures.fetch_add(1, Ordering::Relaxed);
                if shared.fail_log.allow() {
                    tracing::warn!(backend = %addr, error = %e, attempt, "proxy: backend connect failed");
                }
                tried.push(addr);
            }
        }
    }
    None
}

/// Connects to one backend. Completion is read from the readiness alone: a connect that fails reports an
/// error or a hang-up, so SO_ERROR is fetched only then (tokio's connect fetches it every time).
async fn connect(addr: SocketAddr, within: Duration) -> io::Result<TcpStream> {
    let sock = sockopt::backend_socket(addr)?;
    let done = sockopt::start_connect(&sock, addr)?;
    let stream = TcpStream::from_std(std::net::TcpStream::from(sock))?;
    if done {
        return Ok(stream);
    }
    let ready = match tokio::time::timeout(
        within,
        stream.ready(Interest::WRITABLE | Interest::ERROR),
    )
    .await
    {
        Ok(r) => r?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timeout")),
    };
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream
            .take_error()?
            .unwrap_or_else(|| io::ErrorKind::ConnectionRefused.into()));
    }
    Ok(stream)
}

async fn session(
    shared: Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    backends: watch::Receiver<Backends>,
    _active: ActiveGuard,
) {
    let settings = *shared.settings.borrow();
    let reg = shared.register();
    let conn = tokio::select! {
        c = connect_backend(&shared, &backends, &settings) => c,
        _ = reg.token.killed() => None,
    };
    let Some(backend) = conn else {
        shared.stats.no_backend.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, "proxy: no backend reachable, closing client");
        // A reset, so the client does not read an orderly EOF as an empty answer.
        sockopt::reset_on_close(&client);
        return;
    };
    reg.set_backend(backend.addr);
    let server = &backend.stream;
    let activity = forward::Activity::new();
    let finished = std::sync::atomic::AtomicU8::new(0);
    let to_backend = forward::Dir {
        src: &client,
        dst: server,
        bytes: &backend.stats.bytes_to_backend,
        activity: &activity,
        pipes: &shared.pipes,
        fallbacks: &shared.stats.splice_fallbacks,
        spliced: &shared.stats.spliced_directions,
        finished: &finished,
    };
    let to_client = forward::Dir {
        src: server,
        dst: &client,
        bytes: &backend.stats.bytes_to_client,
        ..to_backend
    };
    let end = tokio::select! {
        biased;
        r = forward::both(to_backend, to_client, settings.forwarding) => match r {
            Ok(()) => End::Done,
            Err(e) => End::Error(e),
        },
        _ = idle(&activity, &shared.settings, server, sockopt::TUNE_AFTER) => End::Idle,
        _ = reg.token.killed() => End::Killed,
    };
    match end {
        End::Done => {}
        End::Error(e) => {
            tracing::debug!(%peer, backend = %backend.addr, error = %e, "proxy: session reset");
            sockopt::reset_on_close(&client);
            sockopt::reset_on_close(server);
        }
        End::Idle => {
            shared.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, backend = %backend.addr, "proxy: idle timeout");
        }
        End::Killed => {
            shared.stats.killed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, backend = %backend.addr, "proxy: session closed (backend down or drain over)");
            sockopt::reset_on_close(&client);
            sockopt::reset_on_close(server);
        }
    }
}

enum End {
    Done,
    Error(io::Error),
    Idle,
    Killed,
}

/// How often a session without idle timeout looks again whether one was set since. Every open session wakes
/// this often, so it is long: at 10 s, 9,000 idle watches cost twice HAProxy's idle CPU (bench/).
const IDLE_RECHECK: Duration = Duration::from_secs(60);

/// The session's one timer. Resolves when the session has moved no byte for `idle_timeout`; on the way it gives
/// the backend socket its dead-peer options once the session is `tune_after` old ([`sockopt::TUNE_AFTER`]). A plain timer, not
/// a watch on the settings: the settings channel is shared by every session, so waiting on it would put a
/// shared lock on every wake-up. A live change of the timeout reaches open sessions within [`IDLE_RECHECK`] (or
/// the old timeout).
async fn idle(
    activity: &forward::Activity,
    settings: &watch::Receiver<ProxySettings>,
    server: &TcpStream,
    tune_after: Duration,
) {
    let tune_at = Instant::now() + tune_after;
    let mut tuned = false;
    loop {
        let now = Instant::now();
        if !tuned && now >= tune_at {
            tuned = true;
            if let Err(e) = sockopt::tune_late(socket2::SockRef::from(server)) {
                tracing::debug!(error = %e, "proxy: cannot set keepalive on the backend socket");
            }
        }
        let timeout = settings.borrow().idle_timeout;
        let mut deadline = match timeout {
            None => now + IDLE_RECHECK,
            Some(t) => {
                let quiet = activity.quiet_for();
                if quiet >= t {
                    return;
                }
                now + (t - quiet).min(IDLE_RECHECK)
            }
        };
        if !tuned {
            deadline = deadline.min(tune_at);
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// Watches backend health and closes the sessions of a backend that goes down (or leaves the list) when
/// shutdown_sessions_on_backend_down is set. Transitions only: a backend already down when the flag is set
/// keeps its (panic-mode) sessions.
async fn monitor(
    shared: Arc<Shared>,
    mut backends: watch::Receiver<Backends>,
    mut settings: watch::Receiver<ProxySettings>,
    stop: CancellationToken,
) {
    let up = |list: &Backends| -> Vec<SocketAddr> {
        list.iter().filter(|b| b.healthy).map(|b| b.addr).collect()
    };
    let mut was_up = up(&backends.borrow_and_update());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = backends.changed() => if r.is_err() { return },
            r = settings.changed() => { if r.is_err() { return } continue }
        }
        let now_up = up(&backends.borrow_and_update());
        let went_down: Vec<SocketAddr> = was_up
            .iter()
            .filter(|a| !now_up.contains(a))
            .copied()
            .collect();
        was_up = now_up;
        if went_down.is_empty() || !settings.borrow().shutdown_sessions_on_backend_down {
            continue;
        }
        for addr in went_down {
            let n = shared.kill_backend(addr);
            if n > 0 {
                tracing::info!(backend = %addr, sessions = n, "proxy: backend down, closing its sessions");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;

    /// The backend leg gets keepalive and TCP_USER_TIMEOUT from the session timer, not at connect time.
    #[tokio::test]
    async fn session_timer_tunes_the_backend_socket_late() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let s = connect(addr, Duration::from_secs(2)).await.unwrap();
        let _peer = l.accept().unwrap();
        let (_tx, rx) = watch::channel(ProxySettings::default());
        let activity = forward::Activity::new();
        let r = SockRef::from(&s);
        assert!(r.tcp_nodelay().unwrap());
        assert!(!r.keepalive().unwrap(), "not set at connect time");
        let timer = idle(&activity, &rx, &s, Duration::from_millis(300));
        tokio::pin!(timer);
        assert!(tokio::time::timeout(Duration::from_millis(100), &mut timer)
            .await
            .is_err());
        assert!(!r.keepalive().unwrap(), "not before tune_after");
        assert!(tokio::time::timeout(Duration::from_millis(700), &mut timer)
            .await
            .is_err());
        assert!(r.keepalive().unwrap());
        assert_eq!(r.tcp_keepalive_time().unwrap(), sockopt::KEEPALIVE_TIME);
        assert_eq!(r.tcp_user_timeout().unwrap(), Some(sockopt::USER_TIMEOUT));
    }

    #[tokio::test]
    async fn kill_wakes_the_waiting_session() {
        let k = Arc::new(Kill::default());
        let waiter = tokio::spawn({
            let k = k.clone();
            async move { k.killed().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        k.kill();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        // Killed before anyone waits: resolves at once.
        let k = Kill::default();
        k.kill();
        tokio::time::timeout(Duration::from_secs(1), k.killed())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn refused_connect_is_an_error() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = connect(addr, Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }
}
