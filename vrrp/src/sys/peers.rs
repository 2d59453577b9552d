//! Who speaks which VRRP version on the link, for the warnings about a virtual router split by version: a
//! router heard in the version we do not run, VRRPv2 while we run version 3 or VRRPv3 while we run version 2
//! (it cannot hear us), and in mixed mode a master that sends VRRPv3 without VRRPv2 copies (VRRPv2 routers
//! cannot hear it; RFC 5798 8.4.2's optional report).
//!
//! Only masters send, so a handful of senders is all there is to remember; each list is bounded.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{log_due, PeerHeard};
use crate::proto::{Priority, Version, Vrid};

/// At most this many recent senders are remembered per version.
const SENDERS_MAX: usize = 8;

/// The version of an advertisement this router does not run: its sender cannot hear us unless it is a mixed
/// router that also sends our version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Foreign {
    /// Heard while running version 3.
    V2,
    /// Heard while running version 2.
    V3,
}

impl Foreign {
    /// The version number on the wire.
    pub fn number(self) -> u8 {
        match self {
            Foreign::V2 => 2,
            Foreign::V3 => 3,
        }
    }

    /// The version this router runs when it hears `self` as foreign.
    fn ours(self) -> u8 {
        match self {
            Foreign::V2 => 3,
            Foreign::V3 => 2,
        }
    }

    /// What the operator should do, for the log line.
    fn fix(self) -> &'static str {
        match self {
            Foreign::V2 => "set vrrp.version: mixed while VRRPv2 routers remain",
            Foreign::V3 => "set vrrp.version: mixed (or 3 once no VRRPv2 router remains)",
        }
    }
}

/// One sender of one version: when it was first heard (since its last silence longer than a window) and
/// last heard.
#[derive(Debug)]
struct Sender {
    addr: IpAddr,
    first: Instant,
    last: Instant,
}

/// The recent senders of one version, at most [`SENDERS_MAX`].
#[derive(Debug, Default)]
struct Senders(Vec<Sender>);

impl Senders {
    /// `src` heard at `now`. Returns when it was first heard (a sender silent for longer than `window`
    /// starts afresh) and whether it had been heard within `window` before.
    fn note(&mut self, src: IpAddr, window: Duration, now: Instant) -> (Instant, bool) {
        let prev = self
            .0
            .iter()
            .position(|s| s.addr == src)
            .map(|i| self.0.remove(i));
        let recent = prev
            .as_ref()
            .is_some_and(|s| now.duration_since(s.last) < window);
        let first = match prev {
            Some(s) if recent => s.first,
            _ => now,
        };
        if self.0.len() >= SENDERS_MAX {
            self.0.remove(0);
        }
        self.0.push(Sender {
            addr: src,
            first,
            last: now,
        });
        (first, recent)
    }

    /// Whether `src` was heard within `window`.
    fn recent(&self, src: IpAddr, window: Duration) -> bool {
        self.0
            .iter()
            .any(|s| s.addr == src && s.last.elapsed() < window)
    }
}

#[derive(Debug, Default)]
pub(crate) struct VersionPeers {
    v3_senders: Senders,
    v2_senders: Senders,
    /// Version 3: the last VRRPv2-only router heard in our VRID.
    pub v2_peer: Option<PeerHeard>,
    v2_peer_logged: Option<Instant>,
    /// Version 2: the last VRRPv3-only router heard in our VRID.
    pub v3_peer: Option<PeerHeard>,
    v3_peer_logged: Option<Instant>,
    /// Mixed: a master heard in VRRPv3 only.
    pub v3_only_master: Option<PeerHeard>,
    v3_only_logged: Option<Instant>,
}

impl VersionPeers {
    /// A VRRPv3 advertisement from `src` that the router accepts (version 3 or mixed). `window` is how long
    /// a sender counts as heard (a Master_Down_Interval and some slack); with `mixed`, a master heard that
    /// long in VRRPv3 without a VRRPv2 copy is reported.
    pub fn heard_v3(
        &mut self,
        src: IpAddr,
        priority: Priority,
        window: Duration,
        mixed: bool,
        vrid: Vrid,
    ) {
        let now = Instant::now();
        let (first, _) = self.v3_senders.note(src, window, now);
        if mixed && priority != Priority::LEAVING {
            let long_enough = now.duration_since(first) >= window;
            self.check_v3_only(src, priority, window, long_enough, vrid);
        }
    }

    /// A VRRPv2 advertisement from `src` for our VRID, heard while running mixed or version 2 (whether or
    /// not its password and interval then pass: either way the sender speaks VRRPv2).
    pub fn heard_v2(&mut self, src: IpAddr, window: Duration) {
        self.v2_senders.note(src, window, Instant::now());
    }

    /// An advertisement for our VRID in the version we do not run (VRRPv2 while version 3, VRRPv3 while
    /// version 2). From a mixed router, which also sends our version, it is a second copy; otherwise the
    /// sender cannot hear us: remembered and logged. True when it is the latter, to be counted.
    pub fn heard_foreign(
        &mut self,
        foreign: Foreign,
        src: IpAddr,
        priority: Priority,
        window: Duration,
        vrid: Vrid,
        total: impl FnOnce() -> u64,
    ) -> bool {
        let now = Instant::now();
        if self.is_mixed_sender(foreign, src, window, now) {
            return false;
        }
        let total = total();
        let heard = Some(PeerHeard {
            src,
            priority,
            last_heard: now,
        });
        let (slot, logged) = match foreign {
            Foreign::V2 => (&mut self.v2_peer, &mut self.v2_peer_logged),
            Foreign::V3 => (&mut self.v3_peer, &mut self.v3_peer_logged),
        };
        *slot = heard;
        if log_due(logged, now) {
            tracing::warn!(%src, %vrid, %priority, total,
                "VRRPv{} advertisements for our VRID: that router cannot hear this version-{} node, so both are \
                 likely master; {}", foreign.number(), foreign.ours(), foreign.fix());
        }
        true
    }

    /// Whether `src`, heard in the `foreign` version, also sends ours (a mixed router). A mixed router sends
    /// its VRRPv3 copy just before its VRRPv2 one, so running version 2 a VRRPv3 sender counts as mixed until
    /// its second advertisement, by when its first VRRPv2 copy has arrived.
    fn is_mixed_sender(
        &mut self,
        foreign: Foreign,
        src: IpAddr,
        window: Duration,
        now: Instant,
    ) -> bool {
        match foreign {
            Foreign::V2 => self.v3_senders.recent(src, window),
            Foreign::V3 => {
                let (_, heard_before) = self.v3_senders.note(src, window, now);
                !heard_before || self.v2_senders.recent(src, window)
            }
        }
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
        if self.v2_senders.recent(src, window) {
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
        if log_due(&mut self.v3_only_logged, now) {
            tracing::warn!(%src, %vrid, %priority,
                "the master sends VRRPv3 only (no VRRPv2 copies): VRRPv2 routers cannot hear it and may be \
                 master too; keep it on vrrp.version: mixed while any remain");
        }
    }

    /// The version changed in place: warnings that no longer apply go.
    pub fn version_changed(&mut self, version: Version) {
        if version != Version::V3 {
            self.v2_peer = None;
        }
        if version != Version::V2 {
            self.v3_peer = None;
        }
        if version != Version::Mixed {
            self.v3_only_master = None;
        }
    }
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

    fn v2(p: &mut VersionPeers, from: u8, priority: u8, window: Duration) -> bool {
        p.heard_foreign(
            Foreign::V2,
            ip(from),
            Priority(priority),
            window,
            vrid(),
            || 1,
        )
    }

    fn v3(p: &mut VersionPeers, from: u8, priority: u8, window: Duration) -> bool {
        p.heard_foreign(
            Foreign::V3,
            ip(from),
            Priority(priority),
            window,
            vrid(),
            || 1,
        )
    }

    #[test]
    fn a_mixed_routers_v2_copies_are_no_v2_peer() {
        let mut p = VersionPeers::default();
        p.heard_v3(ip(2), Priority(200), HOUR, false, vrid());
        assert!(!v2(&mut p, 2, 200, HOUR));
        assert_eq!(p.v2_peer, None);
        assert!(v2(&mut p, 3, 101, HOUR));
        assert_eq!(
            p.v2_peer.map(|x| (x.src, x.priority)),
            Some((ip(3), Priority(101)))
        );
        p.version_changed(Version::Mixed);
        assert_eq!(p.v2_peer, None);
    }

    /// Running version 2, in the order routers send: a mixed router's VRRPv3 copy comes just before its
    /// VRRPv2 one, a version-3 router's alone.
    #[test]
    fn a_mixed_routers_v3_copies_are_no_v3_peer() {
        let mut p = VersionPeers::default();
        for _ in 0..3 {
            assert!(!v3(&mut p, 2, 200, HOUR));
            p.heard_v2(ip(2), HOUR);
        }
        assert_eq!(p.v3_peer, None);
        // A VRRPv3-only router: its first advertisement might still be a mixed router's, the second is not.
        assert!(!v3(&mut p, 3, 101, HOUR));
        assert_eq!(p.v3_peer, None);
        assert!(v3(&mut p, 3, 101, HOUR));
        assert_eq!(
            p.v3_peer.map(|x| (x.src, x.priority)),
            Some((ip(3), Priority(101)))
        );
        // Nor does a VRRPv2 copy from long ago (outside the window) make a router mixed.
        let window = Duration::from_millis(200);
        p.heard_v2(ip(4), window);
        std::thread::sleep(window + Duration::from_millis(50));
        assert!(!v3(&mut p, 4, 150, window));
        assert!(v3(&mut p, 4, 150, window));
        assert_eq!(p.v3_peer.map(|x| x.src), Some(ip(4)));
        // Each warning goes with its version; the other version's stays.
        p.version_changed(Version::V3);
        assert_eq!(p.v3_peer, None);
        assert!(v2(&mut p, 5, 100, HOUR));
        p.version_changed(Version::V2);
        assert_eq!(p.v2_peer, None);
    }

    #[test]
    fn only_the_foreign_routers_that_cannot_hear_us_are_counted() {
        let mut p = VersionPeers::default();
        let mut counted = 0;
        let mut count = |p: &mut VersionPeers, f: Foreign, from: u8| {
            p.heard_foreign(f, ip(from), Priority(100), HOUR, vrid(), || {
                counted += 1;
                counted
            })
        };
        p.heard_v3(ip(2), Priority(100), HOUR, false, vrid());
        count(&mut p, Foreign::V2, 2);
        count(&mut p, Foreign::V2, 3);
        count(&mut p, Foreign::V3, 4);
        count(&mut p, Foreign::V3, 4);
        assert_eq!(counted, 2);
    }

    #[test]
    fn a_v3_only_master_is_reported_in_mixed_mode_until_it_sends_v2() {
        let mut p = VersionPeers::default();
        // Heard for a whole (here: zero) window without a VRRPv2 copy.
        p.heard_v3(ip(2), Priority(200), Duration::ZERO, true, vrid());
        assert_eq!(p.v3_only_master.map(|x| x.src), Some(ip(2)));
        p.heard_v2(ip(2), HOUR);
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
            p.heard_v2(ip(i), HOUR);
            v3(&mut p, i, 100, HOUR);
        }
        assert_eq!(p.v3_senders.0.len(), SENDERS_MAX);
        assert_eq!(p.v2_senders.0.len(), SENDERS_MAX);
    }
}
