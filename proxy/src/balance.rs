//! Backend choice: leastconn or roundrobin among healthy backends, every backend when none is healthy
//! (panic mode), skipping the ones this client already failed to reach.

use crate::{BackendState, Balance, ProxyStats};
use std::net::SocketAddr;

/// A pick and whether it was made in panic mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pick {
    pub addr: SocketAddr,
    pub panic: bool,
}

/// Picks the next backend. `tried` holds backends that already failed for this client; once every candidate
/// has failed they are all eligible again (retries then go round the same set). `seq` is the client's
/// sequence number plus its attempt number.
pub(crate) fn pick(
    list: &[BackendState],
    tried: &[SocketAddr],
    balance: Balance,
    seq: usize,
    stats: &ProxyStats,
) -> Option<Pick> {
    let healthy = list.iter().filter(|b| b.healthy).count();
    let panic = healthy == 0;
    let candidate = |b: &&BackendState| panic || b.healthy;
    let mut fresh: Vec<SocketAddr> = list
        .iter()
        .filter(candidate)
        .map(|b| b.addr)
        .filter(|a| !tried.contains(a))
        .collect();
    if fresh.is_empty() {
        fresh = list.iter().filter(candidate).map(|b| b.addr).collect();
    }
    // The same address listed twice must not get twice the share.
    let mut seen = Vec::with_capacity(fresh.len());
    fresh.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
    if fresh.is_empty() {
        return None;
    }
    // `seq` advances once per client (not per retry, or a dead backend would catch every client's first
    // attempt under roundrobin); it also rotates leastconn ties, so equal loads still spread.
    let start = seq % fresh.len();
    let addr = match balance {
        Balance::RoundRobin => fresh[start],
        Balance::LeastConn => {
            let n = fresh.len();
            (0..n)
                .map(|i| fresh[(start + i) % n])
                .min_by_key(|a| stats.load(*a))
                .expect("non-empty")
        }
    };
    Some(Pick { addr, panic })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn b(port: u16, healthy: bool) -> BackendState {
        BackendState {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            healthy,
        }
    }

    #[test]
    fn roundrobin_cycles_over_healthy_only() {
        let list = [b(1, true), b(2, false), b(3, true)];
        let (rr, st) = (AtomicUsize::new(0), ProxyStats::default());
        let picks: Vec<u16> = (0..4)
            .map(|_| {
                pick(
                    &list,
                    &[],
                    Balance::RoundRobin,
                    rr.fetch_add(1, Ordering::Relaxed),
                    &st,
                )
                .unwrap()
                .addr
                .port()
            })
            .collect();
        assert_eq!(picks, [1, 3, 1, 3]);
    }

    #[test]
    fn leastconn_prefers_lowest_load() {
        let list = [b(1, true), b(2, true), b(3, true)];
        let (rr, st) = (AtomicUsize::new(0), ProxyStats::default());
        st.backend_entry(list[0].addr)
            .active
            .store(5, Ordering::Relaxed);
        st.backend_entry(list[1].addr)
            .active
            .store(1, Ordering::Relaxed);
        st.backend_entry(list[2].addr)
            .active
            .store(3, Ordering::Relaxed);
        for _ in 0..5 {
            assert_eq!(
                pick(
                    &list,
                    &[],
                    Balance::LeastConn,
                    rr.fetch_add(1, Ordering::Relaxed),
                    &st
                )
                .unwrap()
                .addr
                .port(),
                2
            );
        }
    }

    #[test]
    fn leastconn_ties_rotate() {
        let list = [b(1, true), b(2, true)];
        let (rr, st) = (AtomicUsize::new(0), ProxyStats::default());
        let a = pick(
            &list,
            &[],
            Balance::LeastConn,
            rr.fetch_add(1, Ordering::Relaxed),
            &st,
        )
        .unwrap()
        .addr;
        let c = pick(
            &list,
            &[],
            Balance::LeastConn,
            rr.fetch_add(1, Ordering::Relaxed),
            &st,
        )
        .unwrap()
        .addr;
        assert_ne!(a, c);
    }

    #[test]
    fn panic_mode_when_none_healthy() {
        let list = [b(1, false), b(2, false)];
        let (rr, st) = (AtomicUsize::new(0), ProxyStats::default());
        let p = pick(
            &list,
            &[],
            Balance::RoundRobin,
            rr.fetch_add(1, Ordering::Relaxed),
            &st,
        )
        .unwrap();
        assert!(p.panic);
        assert!(
            !pick(
                &[b(1, true), b(2, false)],
                &[],
                Balance::RoundRobin,
                rr.fetch_add(1, Ordering::Relaxed),
                &st
            )
            .unwrap()
            .panic
        );
    }

    #[test]
    fn skips_tried_then_wraps() {
        let list = [b(1, true), b(2, true)];
        let (rr, st) = (AtomicUsize::new(0), ProxyStats::default());
        for _ in 0..4 {
            let p = pick(
                &list,
                &[list[0].addr],
                Balance::LeastConn,
                rr.fetch_add(1, Ordering::Relaxed),
                &st,
            )
            .unwrap();
            assert_eq!(p.addr.port(), 2);
        }
        // Every candidate tried: all are eligible again rather than giving up early.
        assert!(pick(
            &list,
            &[list[0].addr, list[1].addr],
            Balance::RoundRobin,
            rr.fetch_add(1, Ordering::Relaxed),
            &st
        )
        .is_some());
        assert!(pick(
            &[],
            &[],
            Balance::RoundRobin,
            rr.fetch_add(1, Ordering::Relaxed),
            &st
        )
        .is_none());
    }
}
