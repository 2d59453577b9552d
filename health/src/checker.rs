//! The running checker: one task per backend, the shared table they write, the watch channel it feeds,
//! and reconfiguration that keeps the state of backends that stay.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hysteresis::Hysteresis;
use crate::probe::Probe;
use crate::{HealthConfig, HealthError};

/// What is known about one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    pub addr: SocketAddr,
    pub healthy: bool,
    /// When `healthy` last changed, or when the backend was added.
    pub since: SystemTime,
    /// Why the latest check failed; `None` when it succeeded. Kept while a backend is up but failing
    /// fewer than `fall` times, so flapping shows.
    pub reason: Option<String>,
    /// Checks completed since the backend was added.
    pub checks: u64,
    /// Of those, failed.
    pub failures: u64,
    /// Current run of identical results.
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    /// Duration of the latest check (successful or not).
    pub last_latency: Option<Duration>,
    pub last_check: Option<SystemTime>,
}

impl BackendHealth {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            healthy: false,
            since: SystemTime::now(),
            reason: Some("not checked yet".to_string()),
            checks: 0,
            failures: 0,
            consecutive_successes: 0,
            consecutive_failures: 0,
            last_latency: None,
            last_check: None,
        }
    }
}

/// The state of every backend, in the order they were configured.
pub type Snapshot = Arc<Vec<BackendHealth>>;

/// The settings every task reads before each check; replaced as a whole on reconfigure.
#[derive(Debug)]
struct Settings {
    probe: Probe,
    interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
}

#[derive(Debug)]
struct Entry {
    /// Task identity, so a task cancelled by a reload cannot write over a newer task for the same address.
    id: u64,
    health: BackendHealth,
}

#[derive(Debug)]
struct Shared {
    table: Mutex<Vec<Entry>>,
    tx: watch::Sender<Snapshot>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Vec<Entry>> {
        // A panic while holding the lock leaves a table that is still consistent entry by entry.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the table; receivers are woken only when `notify`.
    fn publish(&self, table: &[Entry], notify: bool) {
        let snapshot: Snapshot = Arc::new(table.iter().map(|e| e.health.clone()).collect());
        self.tx.send_if_modified(|s| {
            *s = snapshot;
            notify
        });
    }

    /// Applies `update` to the entry of task `id`, if it is still configured.
    fn update(&self, id: u64, update: impl FnOnce(&mut BackendHealth) -> bool) {
        let mut table = self.table();
        if let Some(e) = table.iter_mut().find(|e| e.id == id) {
            let notify = update(&mut e.health);
            self.publish(&table, notify);
        }
    }
}

#[derive(Debug)]
struct TaskHandle {
    id: u64,
    cancel: CancellationToken,
}

/// Owns the per-backend check tasks. Dropping it stops them (at their next await point);
/// [`HealthChecker::shutdown`] also waits for them.
#[derive(Debug)]
pub struct HealthChecker {
    shared: Arc<Shared>,
    settings: watch::Sender<Arc<Settings>>,
    tasks: Mutex<HashMap<SocketAddr, TaskHandle>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
    next_id: AtomicU64,
}

impl HealthChecker {
    /// Validates `cfg`, reads its CA and client certificate files, then starts one task per backend.
    /// Any error leaves nothing running. Must be called inside a tokio runtime.
    pub fn start(cfg: HealthConfig, backends: Vec<SocketAddr>) -> Result<Self, HealthError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| HealthError::NoRuntime)?;
        let settings = Arc::new(settings(&cfg)?);
        let checker = Self {
            shared: Arc::new(Shared {
                table: Mutex::new(Vec::new()),
                tx: watch::Sender::new(Arc::new(Vec::new())),
            }),
            settings: watch::Sender::new(settings),
            tasks: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            runtime,
            next_id: AtomicU64::new(0),
        };
        checker.set_backends(backends);
        Ok(checker)
    }

    /// A receiver of the published state; see the crate docs for when it is notified.
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.shared.tx.subscribe()
    }

    /// The current state, counters included.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.tx.borrow().clone()
    }

    /// Applies new settings and a new backend list. Backends present before and after keep their state and
    /// task (the new settings apply from their next check); removed backends' tasks are cancelled, closing any
    /// check in flight; new backends start down. On error nothing changes.
    pub fn reconfigure(
        &self,
        cfg: HealthConfig,
        backends: Vec<SocketAddr>,
    ) -> Result<(), HealthError> {
        let settings = Arc::new(settings(&cfg)?);
        self.settings.send_replace(settings);
        self.set_backends(backends);
        Ok(())
    }

    /// Per-backend tasks still running (removed ones disappear once they have observed their cancellation).
    pub fn task_count(&self) -> usize {
        self.tracker.len()
    }

    /// Stops every task and waits for them to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn set_backends(&self, backends: Vec<SocketAddr>) {
        let mut wanted = Vec::with_capacity(backends.len());
        for b in backends {
            if wanted.contains(&b) {
                tracing::warn!(backend = %b, "backend listed twice; checking it once");
            } else {
                wanted.push(b);
            }
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|addr, t| {
            let keep = wanted.contains(addr);
            if !keep {
                tracing::info!(backend = %addr, "backend removed; its checks stop");
                t.cancel.cancel();
            }
            keep
        });
        let mut table = self.shared.table();
        let mut old: HashMap<u64, BackendHealth> =
            table.drain(..).map(|e| (e.id, e.health)).collect();
        let mut spawned = Vec::new();
        for addr in &wanted {
            let entry = match tasks.get(addr) {
                Some(t) => Entry {
                    id: t.id,
                    health: old
                        .remove(&t.id)
                        .unwrap_or_else(|| BackendHealth::new(*addr)),
                },
                None => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let cancel = self.cancel.child_token();
                    tasks.insert(
                        *addr,
                        TaskHandle {
                            id,
                            cancel: cancel.clone(),
                        },
                    );
                    spawned.push((id, *addr, cancel));
                    Entry {
                        id,
                        health: BackendHealth::new(*addr),
                    }
                }
            };
            table.push(entry);
        }
        self.shared.publish(&table, true);
        drop(table);
        for (id, addr, cancel) in spawned {
            let shared = self.shared.clone();
            let settings = self.settings.subscribe();
            self.tracker.spawn_on(
                run_backend(id, addr, shared, settings, cancel),
                &self.runtime,
            );
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn settings(cfg: &HealthConfig) -> Result<Settings, HealthError> {
    Ok(Settings {
        probe: Probe::new(cfg)?,
        interval: cfg.interval,
        timeout: cfg.timeout,
        rise: cfg.rise,
        fall: cfg.fall,
    })
}

/// `interval` scaled by a uniform factor in [0.9, 1.1]: the mean stays `interval`, and checkers started
/// together on several nodes drift apart instead of hitting an apiserver in lockstep.
pub(crate) fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(0.9..=1.1))
}

async fn run_backend(
    id: u64,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut settings: watch::Receiver<Arc<Settings>>,
    cancel: CancellationToken,
) {
    let mut state = Hysteresis::default();
    let mut last_reason: Option<String> = None;
    // Deadline-based schedule: each wait is counted from the previous scheduled start, so the time taken by
    // checks does not stretch the mean interval.
    let mut scheduled = Instant::now();
    let mut next = scheduled;
    let mut checked = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
                // A new interval applies to the wait in progress (the very first check stays immediate).
                let interval = settings.borrow_and_update().interval;
                if checked {
                    next = (scheduled + jittered(interval)).max(Instant::now());
                }
                continue;
            }
        }
        let s = settings.borrow_and_update().clone();
        scheduled = next;
        let started = Instant::now();
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = s.probe.run(addr, s.timeout) => r,
        };
        let latency = started.elapsed();
        checked = true;
        let change = state.record(result.is_ok(), s.rise, s.fall);
        let reason = result.err();
        log_result(addr, change, &state, &reason, &last_reason, latency);
        let reason_changed = reason != last_reason;
        last_reason = reason.clone();
        shared.update(id, |h| {
            h.checks += 1;
            if reason.is_some() {
                h.failures += 1;
            }
            h.consecutive_successes = state.successes;
            h.consecutive_failures = state.failures;
            h.last_latency = Some(latency);
            h.last_check = Some(SystemTime::now());
            h.reason = reason;
            if change.is_some() {
                h.healthy = state.healthy();
                h.since = SystemTime::now();
            }
            change.is_some() || reason_changed
        });
        next = (scheduled + jittered(s.interval)).max(Instant::now());
    }
}

fn log_result(
    addr: SocketAddr,
    change: Option<bool>,
    state: &Hysteresis,
    reason: &Option<String>,
    last_reason: &Option<String>,
    latency: Duration,
) {
    match (change, reason) {
        (Some(true), _) => tracing::info!(backend = %addr, ?latency, "backend is up"),
        (Some(false), r) => tracing::warn!(
            backend = %addr,
            reason = %r.as_deref().unwrap_or("?"),
            failures = state.failures,
            "backend is down"
        ),
        (None, Some(r)) if reason != last_reason => {
            if state.healthy() {
                tracing::info!(backend = %addr, reason = %r, failures = state.failures, "check failed, backend still up");
            } else {
                tracing::warn!(backend = %addr, reason = %r, "backend is not healthy");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_and_keeps_the_mean() {
        let interval = Duration::from_millis(1000);
        let n = 20_000;
        let mut sum = Duration::ZERO;
        let (mut min, mut max) = (Duration::MAX, Duration::ZERO);
        for _ in 0..n {
            let j = jittered(interval);
            sum += j;
            min = min.min(j);
            max = max.max(j);
        }
        assert!(
            min >= Duration::from_millis(900) && max <= Duration::from_millis(1100),
            "{min:?}..{max:?}"
        );
        assert!(
            max - min > Duration::from_millis(150),
            "jitter should spread: {min:?}..{max:?}"
        );
        let mean = sum / n;
        assert!(
            mean.abs_diff(interval) < Duration::from_millis(5),
            "mean {mean:?}"
        );
    }
}
