//! Counters the proxy keeps for metrics and status: plain atomics, read without locks by the daemon.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Proxy-wide counters. Per-backend counters live in [`BackendStats`].
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections accepted from clients (including those refused for `max_connections`).
    pub accepted: AtomicU64,
    /// Client sessions open now (connecting or forwarding).
    pub active: AtomicU64,
    /// Connections closed at once because `max_connections` was reached.
    pub refused: AtomicU64,
    /// Backend picks made while no backend was healthy (panic mode: all of them are tried).
    pub panic_picks: AtomicU64,
    /// Client connections closed because no backend could be reached (or none is configured).
    pub no_backend: AtomicU64,
    /// accept(2) failures (EMFILE and friends back off; per-connection errors are only counted).
    pub accept_errors: AtomicU64,
    /// Sessions closed by the idle timeout.
    pub idle_timeouts: AtomicU64,
    /// Sessions closed because their backend went down (shutdownSessionsOnBackendDown) or the drain expired.
    pub killed: AtomicU64,
    /// Session directions that carried bulk data and moved from copying to splice.
    pub spliced_directions: AtomicU64,
    /// Session directions that fell back from splice to a buffered copy.
    pub splice_fallbacks: AtomicU64,
    backends: RwLock<HashMap<SocketAddr, Arc<BackendStats>>>,
}

/// Counters of one backend, kept after the backend leaves the list (counters never go backwards).
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Sessions to this backend open now (including connects in progress: leastconn counts them).
    pub active: AtomicU64,
    /// Sessions established to this backend.
    pub total: AtomicU64,
    pub bytes_to_backend: AtomicU64,
    pub bytes_to_client: AtomicU64,
    /// Connects that failed or timed out.
    pub connect_failures: AtomicU64,
    /// Connect attempts to this backend made after another backend failed for the same client.
    pub retries: AtomicU64,
}

impl ProxyStats {
    /// Counters of one backend, if it has ever been picked.
    pub fn backend(&self, addr: SocketAddr) -> Option<Arc<BackendStats>> {
        self.backends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&addr)
            .cloned()
    }

    /// All backends ever picked, sorted by address.
    pub fn backends(&self) -> Vec<(SocketAddr, Arc<BackendStats>)> {
        let map = self.backends.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.iter().map(|(a, s)| (*a, s.clone())).collect();
        v.sort_by_key(|(a, _)| *a);
        v
    }

    pub(crate) fn backend_entry(&self, addr: SocketAddr) -> Arc<BackendStats> {
        if let Some(s) = self.backend(addr) {
            return s;
        }
        let mut map = self.backends.write().unwrap_or_else(|e| e.into_inner());
        map.entry(addr).or_default().clone()
    }
}

/// Decrements an active-session counter when dropped, so every exit path (including panics) keeps it exact.
#[derive(Debug)]
pub(crate) struct ActiveGuard(pub(crate) Arc<ProxyStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Same for a backend's active counter.
#[derive(Debug)]
pub(crate) struct BackendGuard(pub(crate) Arc<BackendStats>);

impl Drop for BackendGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
