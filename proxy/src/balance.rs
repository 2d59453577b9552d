//! Backend choice: leastconn or roundrobin among healthy backends, every backend when none is healthy
//! (panic mode), skipping the ones this client already failed to reach.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::{BackendStats, Backends, Balance, ProxyStats};

/// A backend list as published, with each backend's counters looked up once per list change rather than once
/// per connection (a hash lookup under a lock, several for leastconn), and an address listed twice merged into
/// one entry (it must not get twice the share; healthy if any of its listings is).
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The list this was built from: a new list is a new Arc.
    pub source: Backends,
    entries: Vec<Entry>,
    healthy: usize,
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub addr: SocketAddr,
    healthy: bool,
    pub stats: Arc<BackendStats>,
}

impl Resolved {
    pub(crate) fn new(source: Backends, stats: &ProxyStats) -> Self {
        let mut entries: Vec<Entry> = Vec::with_capacity(source.len());
        for b in source.iter() {
            match entries.iter_mut().find(|e| e.addr == b.addr) {
                Some(e) => e.healthy |= b.healthy,
                None => entries.push(Entry {
                    addr: b.addr,
                    healthy: b.healthy,
                    stats: stats.backend_entry(b.addr),
                }),
            }
        }
        let healthy = entries.iter().filter(|e| e.healthy).count();
        Self {
            source,
            entries,
            healthy,
        }
    }
}

/// A pick and whether it was made in panic mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pick<'a> {
    pub entry: &'a Entry,
    pub panic: bool,
}

/// Picks the next backend, without allocating. `tried` holds backends that already failed for this client;
/// once every candidate has failed they are all eligible again (retries then go round the same set). `seq` is
/// the client's sequence number plus its attempt number.
pub(crate) fn pick<'a>(
    list: &'a Resolved,
    tried: &[SocketAddr],
    balance: Balance,
    seq: usize,
) -> Option<Pick<'a>> {
    let panic = list.healthy == 0;
    let candidate = |e: &&Entry| panic || e.healthy;
    let fresh = |e: &&Entry| candidate(e) && !tried.contains(&e.addr);
    let n_fresh = list.entries.iter().filter(fresh).count();
    let eligible = |e: &&Entry| if n_fresh > 0 { fresh(e) } else { candidate(e) };
    let n = if n_fresh > 0 {
        n_fresh
    } else {
        list.entries.iter().filter(candidate).count()
    };
    if n == 0 {
        return None;
    }
    // `seq` advances once per client (not per retry, or a dead backend would catch every client's first
    // attempt under roundrobin); it also rotates leastconn ties, so equal loads still spread.
    let start = seq % n;
    let order = || {
        let all = || list.entries.iter().filter(eligible);
        all().skip(start).chain(all().take(start))
    };
    let entry = match balance {
        Balance::RoundRobin => order().next(),
        Balance::LeastConn => order().min_by_key(|e| e.stats.active.load(Ordering::Relaxed)),
    }?;
    Some(Pick { entry, panic })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendState;
    use std::sync::atomic::AtomicUsize;

    /// What the tests look at in a pick.
    struct Picked {
        addr: SocketAddr,
        panic: bool,
    }

    fn pick(
        list: &[BackendState],
        tried: &[SocketAddr],
        balance: Balance,
        seq: usize,
        stats: &ProxyStats,
    ) -> Option<Picked> {
        let r = Resolved::new(Arc::new(list.to_vec()), stats);
        super::pick(&r, tried, balance, seq).map(|p| Picked {
            addr: p.entry.addr,
            panic: p.panic,
        })
    }

    /// A proxy's picking state: the client sequence number, advanced once per pick, and the shared stats.
    #[derive(Default)]
    struct Clients {
        rr: AtomicUsize,
        st: ProxyStats,
    }

    impl Clients {
        /// The next client's pick.
        fn pick(
            &self,
            list: &[BackendState],
            tried: &[SocketAddr],
            balance: Balance,
        ) -> Option<Picked> {
            pick(
                list,
                tried,
                balance,
                self.rr.fetch_add(1, Ordering::Relaxed),
                &self.st,
            )
        }

        /// The next client's backend port, when `list` has one to give.
        fn port(&self, list: &[BackendState], balance: Balance) -> u16 {
            self.pick(list, &[], balance).unwrap().addr.port()
        }
    }

    fn b(port: u16, healthy: bool) -> BackendState {
        BackendState {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            healthy,
        }
    }

    #[test]
    fn roundrobin_cycles_over_healthy_only() {
        let list = [b(1, true), b(2, false), b(3, true)];
        let c = Clients::default();
        let picks: Vec<u16> = (0..4).map(|_| c.port(&list, Balance::RoundRobin)).collect();
        assert_eq!(picks, [1, 3, 1, 3]);
    }

    #[test]
    fn leastconn_prefers_lowest_load() {
        let list = [b(1, true), b(2, true), b(3, true)];
        let c = Clients::default();
        for (backend, active) in list.iter().zip([5, 1, 3]) {
            c.st.backend_entry(backend.addr)
                .active
                .store(active, Ordering::Relaxed);
        }
        for _ in 0..5 {
            assert_eq!(c.port(&list, Balance::LeastConn), 2);
        }
    }

    #[test]
    fn leastconn_ties_rotate() {
        let list = [b(1, true), b(2, true)];
        let c = Clients::default();
        assert_ne!(
            c.port(&list, Balance::LeastConn),
            c.port(&list, Balance::LeastConn)
        );
    }

    #[test]
    fn panic_mode_when_none_healthy() {
        let c = Clients::default();
        let none_healthy = [b(1, false), b(2, false)];
        assert!(
            c.pick(&none_healthy, &[], Balance::RoundRobin)
                .unwrap()
                .panic
        );
        let one_healthy = [b(1, true), b(2, false)];
        assert!(
            !c.pick(&one_healthy, &[], Balance::RoundRobin)
                .unwrap()
                .panic
        );
    }

    #[test]
    fn skips_tried_then_wraps() {
        let list = [b(1, true), b(2, true)];
        let c = Clients::default();
        for _ in 0..4 {
            let p = c.pick(&list, &[list[0].addr], Balance::LeastConn).unwrap();
            assert_eq!(p.addr.port(), 2);
        }
        // Every candidate tried: all are eligible again rather than giving up early.
        let all_tried = [list[0].addr, list[1].addr];
        assert!(c.pick(&list, &all_tried, Balance::RoundRobin).is_some());
        assert!(c.pick(&[], &[], Balance::RoundRobin).is_none());
    }

    #[test]
    fn duplicate_address_gets_one_share() {
        // Listed three times (once unhealthy), still one turn in two; and healthy, so no panic mode.
        let list = [b(1, false), b(1, true), b(2, true), b(1, true)];
        let st = ProxyStats::default();
        let picks: Vec<(u16, bool)> = (0..4)
            .map(|seq| {
                let p = pick(&list, &[], Balance::RoundRobin, seq, &st).unwrap();
                (p.addr.port(), p.panic)
            })
            .collect();
        assert_eq!(picks, [(1, false), (2, false), (1, false), (2, false)]);
    }
}
