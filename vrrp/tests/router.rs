//! Single-router behaviour where the exact list of actions matters: start-up, shutdown, fault, tracking and the
//! gratuitous ARP / NA schedule. Time is a virtual `Instant` the test moves; nothing sleeps.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use vrrp::proto::router::{master_down_interval, skew_time};
use vrrp::proto::{
    Action, Advertisement, Centis, Input, Priority, Router, RouterConfig, State,
    TransitionReason as R, Vrid,
};

fn cfg(prio: u8) -> RouterConfig {
    RouterConfig {
        vrid: Vrid::new(51).unwrap(),
        priority: Priority(prio),
        advert_interval: Centis::new(100).unwrap(),
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: IpAddr::from([192, 0, 2, 1]),
        vips: vec![IpAddr::from([192, 0, 2, 100])],
        garp_repeat: 5,
        garp_delay: Duration::from_secs(5),
        garp_refresh: Duration::ZERO,
        version: vrrp::proto::Version::V3,
    }
}

fn drain(r: &mut Router) -> Vec<Action> {
    std::iter::from_fn(|| r.poll_action()).collect()
}

fn changed(from: State, to: State, reason: R) -> Action {
    Action::StateChanged { from, to, reason }
}

fn advert(prio: u8) -> Input {
    advert_from(prio, 2)
}

/// A VRRPv3 advertisement of VRID 51 for the configured VIP, from 192.0.2.`from`.
fn advert_from(prio: u8, from: u8) -> Input {
    Input::Advert {
        src: IpAddr::from([192, 0, 2, from]),
        advert: Advertisement {
            vrid: Vrid::new(51).unwrap(),
            priority: Priority(prio),
            max_advert_int: Centis::new(100).unwrap(),
            addresses: vec![IpAddr::from([192, 0, 2, 100])],
        },
    }
}

fn sent(prio: u8) -> Action {
    Action::SendAdvert {
        priority: Priority(prio),
    }
}

/// What a master does when it gives up for `reason`: a priority-0 advertisement, the VIPs removed, the change.
fn gives_up(to: State, reason: R) -> Vec<Action> {
    vec![
        sent(0),
        Action::RemoveVips,
        changed(State::Master, to, reason),
    ]
}

/// A router of priority `prio` that has started as backup at `t0`.
fn backup(prio: u8, t0: Instant) -> Router {
    let mut r = Router::new(cfg(prio));
    r.handle(t0, Input::Startup);
    drain(&mut r);
    r
}

/// A router that has become master at `t0` (owner priority skips the wait).
fn master(prio: u8, t0: Instant) -> Router {
    let mut r = Router::new(cfg(prio));
    r.handle(t0, Input::Startup);
    if prio != 255 {
        let at = r.poll_timeout().unwrap();
        r.handle(at, Input::Timeout);
    }
    drain(&mut r);
    assert_eq!(r.state(), State::Master);
    r
}

#[test]
fn timers_are_not_truncated() {
    let i = Centis::new(100).unwrap();
    assert_eq!(skew_time(Priority(100), i), Duration::from_micros(609_375));
    assert_eq!(
        master_down_interval(Priority(200), i),
        Duration::from_micros(3_218_750)
    );
    // 10 ms interval, priority 254: skew 78.125 us, which a seconds- or milliseconds-based timer loses.
    assert_eq!(
        skew_time(Priority(254), Centis::new(1).unwrap()),
        Duration::from_nanos(78_125)
    );
}

#[test]
fn non_owner_starts_as_backup_with_the_down_timer_running() {
    let t0 = Instant::now();
    let mut r = Router::new(cfg(100));
    assert_eq!(r.poll_timeout(), None);
    r.handle(t0, Input::Startup);
    assert_eq!(
        drain(&mut r),
        vec![changed(State::Initialize, State::Backup, R::Startup)]
    );
    assert_eq!(
        r.poll_timeout(),
        Some(t0 + Duration::from_micros(3_609_375))
    );
    assert_eq!(r.master_address(), None);
    // A spurious early wake-up changes nothing.
    r.handle(t0 + Duration::from_secs(1), Input::Timeout);
    assert_eq!(drain(&mut r), vec![]);
}

#[test]
fn owner_start_up_actions() {
    let t0 = Instant::now();
    let mut r = Router::new(cfg(255));
    r.handle(t0, Input::Startup);
    assert_eq!(
        drain(&mut r),
        vec![
            changed(State::Initialize, State::Master, R::Owner),
            Action::AddVips,
            sent(255),
            Action::Announce { count: 5 },
        ]
    );
    assert_eq!(r.master_address(), Some(IpAddr::from([192, 0, 2, 1])));
}

#[test]
fn shutdown_as_master_sends_priority_zero_and_removes_vips() {
    let t0 = Instant::now();
    let mut r = master(100, t0);
    r.handle(t0 + Duration::from_secs(10), Input::Shutdown);
    assert_eq!(drain(&mut r), gives_up(State::Initialize, R::Shutdown));
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn shutdown_as_backup_is_silent() {
    let t0 = Instant::now();
    let mut r = backup(100, t0);
    r.handle(t0, Input::Shutdown);
    assert_eq!(
        drain(&mut r),
        vec![changed(State::Backup, State::Initialize, R::Shutdown)]
    );
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn link_down_as_master_gives_up_with_priority_zero_and_link_up_waits_as_backup() {
    let t0 = Instant::now();
    let mut r = master(100, t0);
    let t1 = t0 + Duration::from_secs(20);
    r.handle(t1, Input::LinkDown);
    assert_eq!(drain(&mut r), gives_up(State::Fault, R::LinkDown));
    assert_eq!(r.poll_timeout(), None);
    // Adverts and timeouts are ignored in Fault.
    r.handle(t1, advert(50));
    r.handle(t1, Input::Timeout);
    assert_eq!(drain(&mut r), vec![]);
    let t2 = t1 + Duration::from_secs(1);
    r.handle(t2, Input::LinkUp);
    assert_eq!(
        drain(&mut r),
        vec![changed(State::Fault, State::Backup, R::LinkUp)]
    );
    assert_eq!(
        r.poll_timeout(),
        Some(t2 + Duration::from_micros(3_609_375))
    );
}

#[test]
fn track_fault_needs_both_conditions_cleared() {
    let t0 = Instant::now();
    let mut r = master(100, t0);
    r.handle(t0, Input::TrackFault(true));
    assert_eq!(drain(&mut r), gives_up(State::Fault, R::TrackFault));
    r.handle(t0, Input::LinkDown);
    r.handle(t0, Input::TrackFault(false));
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.state(), State::Fault);
    r.handle(t0, Input::LinkUp);
    assert_eq!(
        drain(&mut r),
        vec![changed(State::Fault, State::Backup, R::LinkUp)]
    );
}

#[test]
fn start_up_with_a_fault_goes_to_fault() {
    let t0 = Instant::now();
    let mut r = Router::new(cfg(255));
    r.handle(t0, Input::TrackFault(true));
    r.handle(t0, Input::Startup);
    assert_eq!(
        drain(&mut r),
        vec![changed(State::Initialize, State::Fault, R::TrackFault)]
    );
    // The owner recovers straight to master.
    r.handle(t0, Input::TrackFault(false));
    assert_eq!(
        drain(&mut r)[0],
        changed(State::Fault, State::Master, R::TrackRecovered)
    );
}

#[test]
fn backup_in_fault_goes_quietly() {
    let t0 = Instant::now();
    let mut r = backup(100, t0);
    r.handle(t0, Input::LinkDown);
    assert_eq!(
        drain(&mut r),
        vec![changed(State::Backup, State::Fault, R::LinkDown)]
    );
}

#[test]
fn tracking_priority_is_clamped_and_the_owner_is_untouched() {
    let t0 = Instant::now();
    let mut r = Router::new(cfg(100));
    r.handle(t0, Input::PriorityChanged(Priority(0)));
    assert_eq!(r.effective_priority(), Priority(1));
    r.handle(t0, Input::PriorityChanged(Priority(255)));
    assert_eq!(r.effective_priority(), Priority(254));
    r.handle(t0, Input::PriorityChanged(Priority(90)));
    assert_eq!(r.effective_priority(), Priority(90));
    let mut owner = Router::new(cfg(255));
    owner.handle(t0, Input::PriorityChanged(Priority(10)));
    assert_eq!(owner.effective_priority(), Priority(255));
}

#[test]
fn master_answers_priority_zero_and_lower_priority_at_once() {
    let t0 = Instant::now();
    let mut r = master(100, t0);
    let t1 = t0 + Duration::from_millis(4_100);
    r.handle(t1, advert(0));
    assert_eq!(
        drain(&mut r),
        vec![sent(100), Action::Announce { count: 5 },]
    );
    assert_eq!(r.poll_timeout(), Some(t1 + Duration::from_secs(1)));
}

/// Two masters at once: the winner re-asserts the VIP with gratuitous ARPs now and one interval later, so
/// its frames reach the LAN after the loser's; at most one such episode a second.
#[test]
fn master_hearing_lower_priority_re_announces_now_and_one_interval_later() {
    let t0 = Instant::now();
    let mut r = master(100, t0);
    let t1 = t0 + Duration::from_millis(4_100);
    r.handle(t1, advert(99));
    assert_eq!(
        drain(&mut r),
        vec![sent(100), Action::Announce { count: 5 }]
    );
    // Within the rate limit: the advert is answered, no new burst.
    let t2 = t1 + Duration::from_millis(300);
    r.handle(t2, advert(99));
    assert_eq!(drain(&mut r), vec![sent(100)]);
    // The second burst one advertisement interval (1 s here) after the first.
    let t3 = t1 + Duration::from_secs(1);
    assert_eq!(r.poll_timeout(), Some(t2 + Duration::from_millis(700)));
    r.handle(t3, Input::Timeout);
    let actions = drain(&mut r);
    assert!(
        actions.contains(&Action::Announce { count: 5 }),
        "{actions:?}"
    );
    // After the gap, a new episode gets a new burst.
    let t4 = t1 + Duration::from_millis(1_500);
    r.handle(t4, advert(99));
    assert!(drain(&mut r).contains(&Action::Announce { count: 5 }));
}

#[test]
/// Stepping down, a master sends one last advertisement of its own priority, so that a winner which never
/// heard it (its advertisement arrived first) learns there were two masters and re-announces the VIP.
fn master_hearing_higher_priority_steps_down_and_removes_vips() {
    let t0 = Instant::now();
    let mut r = master(100, t0);
    let t1 = t0 + Duration::from_millis(4_100);
    r.handle(t1, advert(101));
    assert_eq!(
        drain(&mut r),
        vec![
            sent(100),
            Action::RemoveVips,
            changed(State::Master, State::Backup, R::HigherPriority),
            // The repair of our own announcements: gratuitous ARP naming the winner (Router::start_repair).
            Action::AnnounceFor {
                master: IpAddr::from([192, 0, 2, 2]),
                count: 5
            },
        ]
    );
    assert_eq!(r.master_address(), Some(IpAddr::from([192, 0, 2, 2])));
    // Repairs may come due first; the takeover is still Master_Down_Interval after the advertisement.
    let t = loop {
        let t = r.poll_timeout().unwrap();
        assert!(t <= t1 + Duration::from_micros(3_609_375), "{t:?}");
        r.handle(t, Input::Timeout);
        if drain(&mut r).contains(&changed(State::Backup, State::Master, R::MasterDown)) {
            break t;
        }
    };
    assert_eq!(t, t1 + Duration::from_micros(3_609_375));
}

#[test]
fn foreign_vrid_and_own_adverts_are_ignored() {
    let t0 = Instant::now();
    let mut r = master(100, t0);
    let Input::Advert { mut advert, .. } = advert(200) else {
        unreachable!()
    };
    advert.vrid = Vrid::new(52).unwrap();
    r.handle(
        t0,
        Input::Advert {
            src: IpAddr::from([192, 0, 2, 2]),
            advert: advert.clone(),
        },
    );
    advert.vrid = Vrid::new(51).unwrap();
    r.handle(
        t0,
        Input::Advert {
            src: IpAddr::from([192, 0, 2, 1]),
            advert,
        },
    );
    assert_eq!(drain(&mut r), vec![]);
    assert_eq!(r.state(), State::Master);
}

#[test]
fn garp_schedule_burst_delay_and_refresh() {
    let t0 = Instant::now();
    let mut c = cfg(255);
    c.garp_refresh = Duration::from_secs(60);
    let mut r = Router::new(c);
    r.handle(t0, Input::Startup);
    let mut announces = vec![];
    let mut now = t0;
    for _ in 0..1000 {
        for a in drain(&mut r) {
            if let Action::Announce { count } = a {
                announces.push(((now - t0).as_secs(), count));
            }
        }
        now = r.poll_timeout().unwrap();
        if now - t0 > Duration::from_secs(130) {
            break;
        }
        r.handle(now, Input::Timeout);
    }
    assert_eq!(announces, vec![(0, 5), (5, 5), (60, 5), (120, 5)]);
    // Leaving master stops the schedule: no announcement of our own any more (a repair naming the new master
    // may follow, see the simulation `a_loser_whose_adverts_are_lost_repairs_the_host_entry_it_moved`), whatever the timers do next.
    // Until the other master goes quiet and this node takes over again (Master_Down_Interval later).
    r.handle(now, advert(255));
    let mut after = drain(&mut r);
    for _ in 0..100 {
        let t = r.poll_timeout().unwrap();
        r.handle(t, Input::Timeout);
        let actions = drain(&mut r);
        let back = actions.contains(&changed(State::Backup, State::Master, R::MasterDown));
        after.extend(actions);
        if back {
            break;
        }
    }
    let back = after
        .iter()
        .position(|a| *a == changed(State::Backup, State::Master, R::MasterDown))
        .expect("master again once the other goes quiet");
    assert!(
        !after[..back]
            .iter()
            .any(|a| matches!(a, Action::Announce { .. })),
        "{after:?}"
    );
}

#[test]
fn backup_priority_zero_sets_down_timer_to_skew_time() {
    let t0 = Instant::now();
    let mut r = Router::new(cfg(100));
    r.handle(t0, Input::Startup);
    r.handle(t0, advert(200));
    drain(&mut r);
    let t1 = t0 + Duration::from_millis(1500);
    r.handle(t1, advert(0));
    assert_eq!(r.poll_timeout(), Some(t1 + Duration::from_micros(609_375)));
    r.handle(r.poll_timeout().unwrap(), Input::Timeout);
    assert_eq!(
        drain(&mut r)[0],
        changed(State::Backup, State::Master, R::PriorityZero)
    );
}

#[test]
fn mismatches_are_reported_not_dropped() {
    let t0 = Instant::now();
    let mut c = cfg(100);
    c.vips.push(IpAddr::from([192, 0, 2, 101]));
    let mut r = Router::new(c);
    let Input::Advert { src, mut advert } = advert(200) else {
        unreachable!()
    };
    assert_eq!(
        r.mismatch(&advert),
        Some(vrrp::proto::router::Mismatch {
            interval: None,
            addresses: true
        })
    );
    advert.addresses = vec![
        IpAddr::from([192, 0, 2, 101]),
        IpAddr::from([192, 0, 2, 100]),
    ];
    assert_eq!(r.mismatch(&advert), None);
    advert.max_advert_int = Centis::new(50).unwrap();
    let m = r.mismatch(&advert).unwrap();
    assert_eq!((m.interval, m.addresses), (Centis::new(50), false));
    // Still accepted: the backup follows the master and learns its interval.
    r.handle(t0, Input::Startup);
    r.handle(t0, Input::Advert { src, advert });
    assert_eq!(r.master_advert_interval(), Centis::new(50).unwrap());
    assert_eq!(r.master_address(), Some(src));
}

fn advert_v2(prio: u8, from: u8) -> Input {
    let Input::Advert { advert, .. } = advert_from(prio, from) else {
        unreachable!()
    };
    Input::AdvertV2 {
        src: IpAddr::from([192, 0, 2, from]),
        advert,
    }
}

fn with_version(prio: u8, version: vrrp::proto::Version) -> Router {
    Router::new(RouterConfig {
        version,
        ..cfg(prio)
    })
}

/// RFC 5798 8.4.2: a mixed backup counts a master's VRRPv2 copy only when it does not hear it in VRRPv3.
#[test]
fn mixed_backup_ignores_the_v2_copy_of_a_v3_master() {
    use vrrp::proto::Version;
    let t0 = Instant::now();
    let mut r = with_version(100, Version::Mixed);
    r.handle(t0, Input::Startup);
    r.handle(t0, advert_from(200, 2));
    let down = r.poll_timeout().unwrap();
    assert_eq!(
        down,
        t0 + master_down_interval(Priority(100), Centis::new(100).unwrap())
    );
    // Half a second later its VRRPv2 copy (late, say): ignored, so the timer is not pushed on.
    r.handle(t0 + Duration::from_millis(500), advert_v2(200, 2));
    assert_eq!(r.poll_timeout(), Some(down));
    // A VRRPv2-only master (no VRRPv3 from it) is heard.
    let mut r = with_version(100, Version::Mixed);
    r.handle(t0, Input::Startup);
    r.handle(t0 + Duration::from_millis(500), advert_v2(200, 3));
    assert_eq!(
        r.poll_timeout(),
        Some(t0 + Duration::from_millis(500) + r.master_down_interval())
    );
    assert_eq!(r.master_address(), Some(IpAddr::from([192, 0, 2, 3])));
    drain(&mut r);
    // A mixed master steps down for a higher VRRPv2-only router too.
    let mut m = master(100, t0);
    m.handle(t0, Input::SetVersion(Version::Mixed));
    m.handle(t0 + Duration::from_secs(1), advert_v2(200, 3));
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn each_version_hears_only_its_own_and_v2_timers_ignore_the_interval() {
    use vrrp::proto::Version;
    let t0 = Instant::now();
    let mut v3 = with_version(100, Version::V3);
    v3.handle(t0, Input::Startup);
    let down = v3.poll_timeout();
    v3.handle(t0 + Duration::from_millis(100), advert_v2(200, 2));
    assert_eq!(v3.poll_timeout(), down, "a v3 router heard VRRPv2");
    assert_eq!(v3.master_address(), None);
    let mut v2 = with_version(100, Version::V2);
    v2.handle(t0, Input::Startup);
    let down = v2.poll_timeout();
    v2.handle(t0 + Duration::from_millis(100), advert_from(200, 2));
    assert_eq!(v2.poll_timeout(), down, "a v2 router heard VRRPv3");
    // RFC 3768: Skew_Time = (256 - 100) / 256 s even with a 3 s interval.
    let v2 = Router::new(RouterConfig {
        version: Version::V2,
        advert_interval: Centis::new(300).unwrap(),
        ..cfg(100)
    });
    assert_eq!(v2.skew_time(), Duration::from_micros(609_375));
    assert_eq!(v2.master_down_interval(), Duration::from_micros(9_609_375));
}

/// A reload that changes only the version keeps the master a master: no state change, no VIP action.
#[test]
fn set_version_changes_nothing_else() {
    use vrrp::proto::Version;
    let t0 = Instant::now();
    let mut m = master(100, t0);
    let next = m.poll_timeout();
    for v in [Version::Mixed, Version::V3, Version::V2] {
        m.handle(t0 + Duration::from_millis(10), Input::SetVersion(v));
        assert_eq!(m.version(), v);
        assert_eq!(drain(&mut m), vec![]);
        assert_eq!(m.state(), State::Master);
        assert_eq!(m.poll_timeout(), next);
    }
}
