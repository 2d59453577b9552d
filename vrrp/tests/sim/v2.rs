//! VRRPv2 (RFC 3768) and mixed mode (RFC 5798 8.4) on the virtual LAN: timers in whole seconds, the skew in
//! 1/256 s independent of the interval, and a migration with a VRRPv2-only peer, mixed routers and a
//! VRRPv3-only one. Timings are asserted to the nanosecond against the formulas.
use std::time::Duration;

use crate::lan::{cfg_v, rfc3768_mdi, rfc3768_skew, rfc_mdi, Lan};
use vrrp::proto::{Input, State, TransitionReason, Version};

const D: Duration = Duration::from_millis(1);

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

#[test]
fn rfc3768_formula_worked_examples() {
    // Priority 100: skew 156/256 s = 0.609375 s; 2 s interval: down interval 6.609375 s (the v3 formula
    // would scale the skew with the interval: 6 s + 1.21875 s).
    assert_eq!(rfc3768_skew(100), Duration::from_micros(609_375));
    assert_eq!(rfc3768_mdi(100, 2), Duration::from_micros(6_609_375));
    assert_eq!(rfc3768_mdi(200, 1), Duration::from_micros(3_218_750));
    assert_ne!(rfc3768_mdi(100, 2), rfc_mdi(100, 200));
}

/// Two VRRPv2 routers, 2 s interval: the higher priority wins after 3 * 2 s + (256 - 200) / 256 s.
#[test]
fn v2_election_uses_whole_seconds_and_an_unscaled_skew() {
    let mut lan = Lan::new(D);
    lan.add("r1", cfg_v(Version::V2, 100, 1, 2));
    lan.add("r2", cfg_v(Version::V2, 200, 2, 2));
    lan.startup_all();
    lan.at(s(30.0));
    assert_eq!(lan.became_master_at(1), Some(rfc3768_mdi(200, 2)));
    assert_eq!(lan.router(0).master_down_interval(), rfc3768_mdi(100, 2));
    assert_eq!(lan.router(0).skew_time(), rfc3768_skew(100));
    assert_eq!(lan.masters(), vec![1]);
    assert!(!lan.ever_master(0));
    lan.check_golden("v2_election");
}

#[test]
fn v2_master_loss_and_priority_zero() {
    let mut lan = Lan::new(D);
    lan.add("r1", cfg_v(Version::V2, 100, 1, 3));
    lan.add("r2", cfg_v(Version::V2, 200, 2, 3));
    lan.add("r3", cfg_v(Version::V2, 150, 3, 3));
    lan.startup_all();
    lan.at(s(20.5));
    assert_eq!(lan.masters(), vec![1]);
    // Planned: priority 0, r3 takes over after its Skew_Time (56/256 s would be r2's; r3's is 106/256).
    lan.input(1, Input::Shutdown);
    let left = lan.elapsed();
    lan.at(s(40.5));
    assert_eq!(lan.became_master_at(2), Some(left + D + rfc3768_skew(150)));
    assert_eq!(
        lan.transitions.last().unwrap().reason,
        TransitionReason::PriorityZero
    );
    // Crash: r1 takes over Master_Down_Interval after r3's last advertisement.
    lan.crash(2);
    lan.at(s(60.0));
    let last = lan.last_advert_before(2, s(40.5));
    assert_eq!(
        lan.became_master_at(0),
        Some(last + D + rfc3768_mdi(100, 3))
    );
    assert_eq!(lan.masters(), vec![0]);
    assert!(lan.multi_master.is_empty());
}

/// A VRRPv2 backup keeps its own interval: it never learns the master's (RFC 3768 has no such rule).
#[test]
fn v2_backup_does_not_learn_the_interval() {
    let mut lan = Lan::new(D);
    lan.add("r1", cfg_v(Version::V2, 100, 1, 1));
    lan.add("r2", cfg_v(Version::V2, 200, 2, 3));
    lan.startup_all();
    lan.at(s(30.0));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.router(0).master_advert_interval().get(), 100);
}

/// Without mixed mode a VRRPv2 router and a VRRPv3 router do not hear each other: two masters for good, the
/// split brain of issue 13.
#[test]
fn v2_and_v3_alone_are_two_masters() {
    let mut lan = Lan::new(D);
    lan.add("keepalived", cfg_v(Version::V2, 101, 1, 1));
    lan.add("vipd", cfg_v(Version::V3, 100, 2, 1));
    lan.startup_all();
    lan.at(s(30.0));
    assert_eq!(lan.masters(), vec![0, 1]);
    assert_eq!(lan.multi_master.len(), 1);
    assert_eq!(lan.multi_master[0].1, None, "never ends");
}

/// RFC 5798 8.4: a mixed router shares the virtual router with a VRRPv2-only router and a VRRPv3-only one.
/// The mixed master is heard by both; when it crashes, the next mixed router takes over, and neither
/// single-version router ever becomes master, so there is never a second master.
#[test]
fn mixed_migration_with_a_v2_and_a_v3_peer() {
    let mut lan = Lan::new(D);
    lan.add("ka", cfg_v(Version::V2, 100, 1, 1));
    lan.add("m1", cfg_v(Version::Mixed, 200, 2, 1));
    lan.add("m2", cfg_v(Version::Mixed, 150, 3, 1));
    lan.add("v3", cfg_v(Version::V3, 120, 4, 1));
    lan.startup_all();
    lan.at(s(10.5));
    assert_eq!(lan.masters(), vec![1]);
    // Mixed and v3 timers: m1 wins after the v3 formula (identical to RFC 3768's at 1 s).
    assert_eq!(lan.became_master_at(1), Some(rfc_mdi(200, 100)));
    for b in [0, 2, 3] {
        assert_eq!(lan.state(b), State::Backup);
        assert_eq!(lan.router(b).master_address(), Some([192, 0, 2, 2].into()));
    }
    lan.crash(1);
    lan.at(s(30.0));
    let last = lan.last_advert_before(1, s(10.5));
    assert_eq!(lan.became_master_at(2), Some(last + D + rfc_mdi(150, 100)));
    assert_eq!(lan.masters(), vec![2]);
    assert!(!lan.ever_master(0) && !lan.ever_master(3));
    assert!(lan.multi_master.is_empty(), "{:?}", lan.multi_master);
    // m2 leaves with priority 0: the v3 router (120) outranks the v2 one (100) and its skew is shorter.
    lan.input(2, Input::Shutdown);
    let left = lan.elapsed();
    lan.at(s(45.0));
    assert_eq!(
        lan.became_master_at(3),
        Some(
            left + D
                + vrrp::proto::router::skew_time(
                    vrrp::proto::Priority(120),
                    vrrp::proto::Centis::new(100).unwrap()
                )
        )
    );
    // ... and now the VRRPv2 router, which cannot hear it, becomes master too: why mixed must stay until the
    // last VRRPv2 router is gone.
    assert!(lan.ever_master(0));
    lan.check_golden("mixed_migration");
}

/// A Keepalived (v2) master above a mixed router: it follows, learning the interval from the v2 seconds
/// (RFC 5798 8.4.2: a backup times out on the master's rate, a VRRPv2 master's seconds read as centiseconds).
/// The mixed router's own 1 s interval makes it master first (its down interval is shorter); Keepalived's
/// preempts it, and the episode ends.
#[test]
fn mixed_router_follows_a_v2_master() {
    let mut lan = Lan::new(D);
    lan.add("ka", cfg_v(Version::V2, 250, 1, 2));
    lan.add("m1", cfg_v(Version::Mixed, 100, 2, 1));
    lan.startup_all();
    lan.at(s(30.0));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(lan.router(1).master_advert_interval().get(), 200);
    assert_eq!(lan.router(1).master_down_interval(), rfc_mdi(100, 200));
    assert!(lan.multi_master.iter().all(|(_, end)| end.is_some()));
    // Keepalived crashes: the mixed router takes over on the learnt 2 s rate.
    lan.crash(0);
    lan.at(s(60.0));
    let last = lan.last_advert_before(0, s(30.0));
    assert_eq!(lan.became_master_at(1), Some(last + D + rfc_mdi(100, 200)));
}
