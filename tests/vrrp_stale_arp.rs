//! The stale-ARP blind spot (issue 17, scenario 2), reproduced without chance on three `vipd run` nodes: n1
//! hears no advertisement for 0.6 s, takes the VIP and sends its gratuitous ARP (the client's neighbour entry
//! moves to n1); it then hears n0 again and steps down while its own VRRP packets are still dropped. n0 never
//! hears that there were two masters, so nothing it does can repair the client: n1 must, by announcing the VIP
//! at n0's MAC. Faults are nftables rules in n1's namespace (`vipd_lab::chaos::inject`).
mod vrrp_common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use vipd_lab::chaos::inject::{self, Drop};
use vipd_lab::netns::wait_for;
use vrrp_common::*;

const VIP4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
const SLACK: Duration = Duration::from_secs(4);
const START: Duration = Duration::from_secs(8);

#[test]
fn a_loser_whose_adverts_are_lost_repairs_the_client_neighbour_entry() {
    let lab = lab("sarp", 3);
    let (nodes, client) = lab_nodes(&lab);
    let [n0, n1, _] = nodes;
    let [p0, p1, _p2] = start_nodes(&nodes, 51, [150, 120, 100], VIP4);
    assert!(wait_state(&p0, "master", START), "{:?}", p0.lines());
    assert_sole_holder(&nodes, VIP4, "n0", SLACK, Duration::from_millis(300));
    assert!(client.ns.succeeds(["ping", "-c1", "-W2", "192.0.2.100"]));
    assert_eq!(client.ns.neigh_mac(VIP4).as_deref(), Some(n0.mac.as_str()));
    // Past n0's second gratuitous ARP burst (garp.delay 5 s), so any later one would be a re-announcement.
    let repeat = u64::from(NodeSpec::new(51, 150, VIP4).garp_repeat);
    assert!(
        wait_for(Duration::from_secs(10), || (stats(&p0)["garp_sent"]
            >= 2 * repeat)
            .then_some(()))
        .is_some(),
        "n0 did not send its second burst"
    );
    let n0_garps = stats(&p0)["garp_sent"];

    let fault = Instant::now();
    inject::set(&n1.ns, &[Drop::VrrpIn, Drop::VrrpOut]).unwrap();
    assert!(wait_state(&p1, "master", SLACK), "{:?}", p1.lines());
    let moved = wait_for(SLACK, || {
        (client.ns.neigh_mac(VIP4).as_deref() == Some(n1.mac.as_str())).then_some(())
    });
    assert!(
        moved.is_some(),
        "n1's gratuitous ARP did not reach the client"
    );
    std::thread::sleep(Duration::from_millis(600).saturating_sub(fault.elapsed()));

    // n1 hears n0 again; its own advertisements stay lost.
    inject::set(&n1.ns, &[Drop::VrrpOut]).unwrap();
    assert!(wait_state(&p1, "backup", SLACK), "{:?}", p1.lines());
    let stepped_down = Instant::now();
    let repaired = wait_for(SLACK, || {
        (client.ns.neigh_mac(VIP4).as_deref() == Some(n0.mac.as_str())).then_some(())
    });
    assert!(
        repaired.is_some(),
        "client still on {:?} (n1 {}, n0 {})",
        client.ns.neigh_mac(VIP4),
        n1.mac,
        n0.mac
    );
    let took = stepped_down.elapsed();
    assert!(took < Duration::from_secs(1), "repair took {took:?}");
    assert_eq!(
        stats(&p0)["garp_sent"],
        n0_garps,
        "n0 re-announced: it heard n1, so this run did not reproduce the blind spot"
    );
    assert!(stats(&p1)["garp_repair_sent"] >= repeat);
    assert!(client.ns.succeeds(["ping", "-c1", "-W1", "192.0.2.100"]));
    assert!(p1
        .lines()
        .iter()
        .any(|l| l.contains("announced the VIP at the new master's MAC")));

    inject::clear(&n1.ns).unwrap();
    assert_sole_holder(&nodes, VIP4, "n0", SLACK, Duration::from_millis(500));
    assert_eq!(client.ns.neigh_mac(VIP4).as_deref(), Some(n0.mac.as_str()));
}

/// Found by the chaos run: with 30% loss on the master's link a backup takes over and steps down within
/// milliseconds; its VIP removal then ran into an address dump the kernel interrupted (EBUSY, the list had
/// just changed), failed, and left the VIP on a backup for good: two holders long after the loss healed.
/// Probabilistic (the first trial showed it before the fix); five trials.
#[test]
fn loss_on_the_master_link_leaves_one_holder_after_it_heals() {
    let lab = lab("sloss", 3);
    let (n0, n1, n2) = (lab.node("n0"), lab.node("n1"), lab.node("n2"));
    let nodes = [n0, n1, n2];
    let p0 = start_node(n0, &NodeSpec::new(51, 150, VIP4));
    let p1 = start_node(n1, &NodeSpec::new(51, 120, VIP4));
    let p2 = start_node(n2, &NodeSpec::new(51, 100, VIP4));
    assert!(wait_state(&p0, "master", START), "{:?}", p0.lines());
    assert_sole_holder(&nodes, VIP4, "n0", SLACK, Duration::from_millis(300));
    for trial in 0..5 {
        inject::set(&n0.ns, &[Drop::Loss(30)]).unwrap();
        std::thread::sleep(Duration::from_millis(3500));
        inject::clear(&n0.ns).unwrap();
        let one = wait_for(SLACK, || (holders(&nodes, VIP4) == ["n0"]).then_some(()));
        if one.is_none() {
            for (n, p) in [("n0", &p0), ("n1", &p1), ("n2", &p2)] {
                eprintln!("--- {n} {:?}", state(p));
                for l in p.lines().iter().rev().take(40).rev() {
                    eprintln!("{l}");
                }
            }
        }
        assert!(
            one.is_some(),
            "trial {trial}: holders {:?} after the loss healed",
            holders(&nodes, VIP4)
        );
    }
}
