//! Who speaks which VRRP version on the link, for the warnings about a virtual router split by version: a
//! VRRPv2 router heard while we run version 3 (it cannot hear us), and in mixed mode a master that sends
//! VRRPv3 without VRRPv2 copies (VRRPv2 routers cannot hear it; RFC 5798 8.4.2's optional report).
//!
//! Only masters send, so a handful of senders is all there is to remember; each list is bounded.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::PeerHeard;
use crate::proto::{Priority, Vrid};

/// At most this many recent senders are remembered per version.
const SENDERS_MAX: usize = 8;
/// At most one log line per warning per this period.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub(crate) struct VersionPeers {
    /// VRRPv3 senders: (sender, first heard, last heard).
    v3_senders: Vec<(IpAddr, Instant, Instant)>,
    /// VRRPv2 senders: (sender, last heard).
    v2_senders: Vec<(IpAddr, Instant)>,
    /// Version 3: the last VRRPv2-only router heard in our VRID.
    pub v2_peer: Option<PeerHeard>,
    v2_peer_logged: Option<Instant>,
    /// Mixed: a master heard in VRRPv3 only.
    pub v3_only_master: Option<PeerHeard>,
    v3_only_logged: Option<Instant>,
}

impl VersionPeers {
    /// A VRRPv3 advertisement from `src`. `window` is how long a sender counts as heard (a
    /// Master_Down_Interval and some slack); with `mixed`, a master heard that long in VRRPv3 without a
    /// VRRPv2 copy is reported.
    pub fn heard_v3(
        &mut self,
        src: IpAddr,
        priority: Priority,
        window: Duration,
        mixed: bool,
        vrid: Vrid,
    ) {
        let now = Instant::now();
        let first = match self.v3_senders.iter().position(|(a, _, _)| *a == src) {
            Some(i) => {
                let (_, first, last) = self.v3_senders.remove(i);
                // A sender silent for longer than the window starts afresh.
                if now.duration_since(last) < window {
                    first
                } else {
                    now
                }
            }
            None => now,
        };
        if self.v3_senders.len() >= SENDERS_MAX {
            self.v3_senders.remove(0);
        }
        self.v3_senders.push((src, first, now));
        if mixed && priority != Priority::LEAVING {
            let long_enough = now.duration_since(first) >= window;
            self.check_v3_only(src, priority, window, long_enough, vrid);
        }
    }

    /// A VRRPv2 advertisement from `src` that the router accepts (mixed or version 2).
    pub fn heard_v2(&mut self, src: IpAddr) {
        self.v2_senders.retain(|(a, _)| *a != src);
        if self.v2_senders.len() >= SENDERS_MAX {
            self.v2_senders.remove(0);
        }
        self.v2_senders.push((src, Instant::now()));
    }

    /// Version 3: a VRRPv2 advertisement for our VRID. From a router that also sends VRRPv3 (a mixed one)
    /// it is a second copy; otherwise the sender cannot hear us: remembered and logged. True when it is the
    /// latter, to be counted.
    pub fn heard_v2_while_v3(
        &mut self,
        src: IpAddr,
        priority: Priority,
        window: Duration,
        vrid: Vrid,
        total: impl FnOnce() -> u64,
    ) -> bool {
        let mixed_sender = self
            .v3_senders
            .iter()
            .any(|(a, _, t)| *a == src && t.elapsed() < window);
        if mixed_sender {
            return false;
        }
        let now = Instant::now();
        let total = total();
        self.v2_peer = Some(PeerHeard {
            src,
            priority,
            last_heard: now,
        });
        if due(&mut self.v2_peer_logged, now) {
            tracing::warn!(%src, %vrid, %priority, total,
                "VRRPv2 advertisements for our VRID: that router cannot hear this version-3 node, so both are \
                 likely master; set vrrp.version: mixed while VRRPv2 routers remain");
        }
        true
    }

    /// Mixed, RFC 5798 8.4.2: a master heard in VRRPv3 for a whole window without a VRRPv2 copy runs version
    /// 3 only, so VRRPv2 routers (a Keepalived without `vrrp_version 3`) cannot hear it.
    fn check_v3_only(
        &mut self,
        src: IpAddr,
        priority: Priority,
        window: Duration,
        long_enough: bool,
        vrid: Vrid,
    ) {
        let has_v2 = self
            .v2_senders
            .iter()
            .any(|(a, t)| *a == src && t.elapsed() < window);
        if has_v2 {
            if self.v3_only_master.is_some_and(|p| p.src == src) {
                self.v3_only_master = None;
            }
            return;
        }
        if !long_enough {
            return;
        }
        let now = Instant::now();
        self.v3_only_master = Some(PeerHeard {
            src,
            priority,
            last_heard: now,
        });
        if due(&mut self.v3_only_logged, now) {
            tracing::warn!(%src, %vrid, %priority,
                "the master sends VRRPv3 only (no VRRPv2 copies): VRRPv2 routers cannot hear it and may be \
                 master too; keep it on vrrp.version: mixed while any remain");
        }
    }

    /// The version changed in place: warnings that no longer apply go.
    pub fn version_changed(&mut self, v3: bool, mixed: bool) {
        if !v3 {
            self.v2_peer = None;
        }
        if !mixed {
            self.v3_only_master = None;
        }
    }
}

/// Rate limit: true (and `last` set to `now`) when the previous line is at least [`LOG_EVERY`] old.
fn due(last: &mut Option<Instant>, now: Instant) -> bool {
    if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn vrid() -> Vrid {
        Vrid::new(51).unwrap()
    }

    #[test]
    fn a_mixed_routers_v2_copies_are_no_v2_peer() {
        let mut p = VersionPeers::default();
        p.heard_v3(ip(2), Priority(200), HOUR, false, vrid());
        assert!(!p.heard_v2_while_v3(ip(2), Priority(200), HOUR, vrid(), || 1));
        assert_eq!(p.v2_peer, None);
        assert!(p.heard_v2_while_v3(ip(3), Priority(101), HOUR, vrid(), || 1));
        assert_eq!(
            p.v2_peer.map(|x| (x.src, x.priority)),
            Some((ip(3), Priority(101)))
        );
        p.version_changed(false, true);
        assert_eq!(p.v2_peer, None);
    }

    #[test]
    fn a_v3_only_master_is_reported_in_mixed_mode_until_it_sends_v2() {
        let mut p = VersionPeers::default();
        // Heard for a whole (here: zero) window without a VRRPv2 copy.
        p.heard_v3(ip(2), Priority(200), Duration::ZERO, true, vrid());
        assert_eq!(p.v3_only_master.map(|x| x.src), Some(ip(2)));
        p.heard_v2(ip(2));
        p.heard_v3(ip(2), Priority(200), HOUR, true, vrid());
        assert_eq!(p.v3_only_master, None);
        // Not before a whole window has passed, nor outside mixed mode, nor for priority 0.
        let mut p = VersionPeers::default();
        p.heard_v3(ip(4), Priority(200), HOUR, true, vrid());
        p.heard_v3(ip(5), Priority(200), Duration::ZERO, false, vrid());
        p.heard_v3(ip(6), Priority::LEAVING, Duration::ZERO, true, vrid());
        assert_eq!(p.v3_only_master, None);
    }

    #[test]
    fn sender_lists_stay_bounded() {
        let mut p = VersionPeers::default();
        for i in 0..50 {
            p.heard_v3(ip(i), Priority(100), HOUR, false, vrid());
            p.heard_v2(ip(i));
        }
        assert_eq!(p.v3_senders.len(), SENDERS_MAX);
        assert_eq!(p.v2_senders.len(), SENDERS_MAX);
    }
}
