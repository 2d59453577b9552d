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
