use super::*;

fn cfg(priority: u8, track: Track) -> Config {
    let mut c = Config::from_yaml(
        "interface: eth0\ncontrolPlaneVIP: 192.0.2.100\nbackends: [192.0.2.20:6443]\nvrrp: {vrid: 51}\n",
    )
    .unwrap();
    c.vrrp.priority = Priority(priority);
    c.vrrp.track = track;
    c
}

fn unhealthy(priority: u8, track: Track) -> TrackDecision {
    track_decision(&cfg(priority, track), false)
}

/// The measurement: 150 and 100 with -50 tie at 100, and a tie keeps the master. The default does not.
#[test]
fn default_tracking_drops_below_any_healthy_priority() {
    let gap = unhealthy(150, Track::Weight(-50)).priority;
    assert_eq!(gap, Priority(100), "the weight the old default had ties");
    for p in [2u8, 100, 150, 200, 254] {
        let d = unhealthy(p, Track::Lowest);
        assert_eq!(
            d,
            TrackDecision {
                priority: Priority(1),
                fault: false
            }
        );
        // Below every priority a healthy node may have with this default (1 is refused by the config).
        assert!(d.priority < Priority(2));
    }
    assert_eq!(
        track_decision(&cfg(150, Track::Lowest), true).priority,
        Priority(150)
    );
}

#[test]
fn the_owner_keeps_255_unless_fault() {
    assert_eq!(unhealthy(255, Track::Lowest).priority, Priority::OWNER);
    assert!(!unhealthy(255, Track::Lowest).fault);
    assert_eq!(unhealthy(255, Track::Weight(0)).priority, Priority::OWNER);
    assert!(unhealthy(255, Track::Fault).fault);
}

#[test]
fn numeric_weights_and_fault_work_as_before() {
    assert_eq!(unhealthy(150, Track::Weight(-60)).priority, Priority(90));
    assert_eq!(unhealthy(30, Track::Weight(-60)).priority, Priority(1));
    assert_eq!(unhealthy(250, Track::Weight(20)).priority, Priority(254));
    let f = unhealthy(150, Track::Fault);
    assert_eq!((f.priority, f.fault), (Priority(150), true));
}

fn status(version: vrrp::proto::Version) -> vrrp::sys::VrrpStatus {
    vrrp::sys::VrrpStatus {
        state: vrrp::proto::State::Master,
        effective_priority: Priority(100),
        master_address: None,
        vip_held: true,
        transitions: 1,
        master_advert_interval: vrrp::proto::Centis::new(100).unwrap(),
        version,
        v2_peer: None,
        v3_peer: None,
        v3_only_master: None,
    }
}

/// Each version-split warning names the sender and the fix, and only while the version it is about runs.
#[test]
fn a_router_of_the_other_version_is_warned_about_while_it_matters() {
    use vrrp::proto::Version;
    let heard = |last: u8, ago: u64| {
        Some(vrrp::sys::PeerHeard {
            src: std::net::IpAddr::from([192, 0, 2, last]),
            priority: Priority(101),
            last_heard: std::time::Instant::now() - Duration::from_secs(ago),
        })
    };
    let mut v = status(Version::V2);
    v.v3_peer = heard(7, 3);
    v.v2_peer = heard(8, 3);
    let w = vrrp_warnings(&v);
    assert_eq!(w.len(), 1, "{w:?}");
    for part in [
        "VRRPv3-only router 192.0.2.7",
        "priority 101",
        "version-2 node",
        "vrrp.version: mixed",
    ] {
        assert!(w[0].contains(part), "{part}: {}", w[0]);
    }
    v.version = Version::V3;
    let w = vrrp_warnings(&v);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("VRRPv2 router 192.0.2.8"), "{}", w[0]);
    assert!(w[0].contains("version-3 node"), "{}", w[0]);
    // Gone once the sender has been silent for longer than the warning lasts.
    v.v2_peer = heard(8, V2_PEER_WARN_FOR.as_secs() + 5);
    assert_eq!(vrrp_warnings(&v), Vec::<String>::new());
    v.version = Version::Mixed;
    v.v3_peer = heard(7, 3);
    assert_eq!(vrrp_warnings(&v), Vec::<String>::new());
}

#[test]
fn proxy_threads_auto_is_one_per_cpu_and_a_number_is_taken_as_it_is() {
    let cpus = std::thread::available_parallelism().unwrap().get().min(64);
    assert_eq!(proxy_threads(None), cpus);
    assert_eq!(proxy_threads(Some(0)), 0);
    assert_eq!(proxy_threads(Some(3)), 3);
}
