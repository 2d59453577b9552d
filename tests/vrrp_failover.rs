//! `vipd run` nodes in network namespaces: election, failover on link loss, preemption, graceful
//! leave with priority 0, restart after a crash, IPv6 takeover, backend
//! tracking. 100 ms adverts unless said otherwise.
mod vrrp_common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use nix::sys::signal::Signal;
use vipd_lab::netns::{decode_frame, parse_mac, wait_for, Decoded};
use vrrp_common::*;

const VIP4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
const VIP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
/// Master_Down_Interval at 100 ms is ~0.35 s; everything here allows several times that.
const SLACK: Duration = Duration::from_secs(4);
const START: Duration = Duration::from_secs(8);
const STEADY: Duration = Duration::from_millis(600);

#[test]
fn three_nodes_elect_highest_fail_over_on_link_cut_and_preempt_back() {
    let lab = lab("fo3", 3);
    let (nodes, client) = lab_nodes(&lab);
    let [_, n1, n2] = nodes;
    let [_p0, p1, p2] = start_nodes(&nodes, 51, [100, 150, 200], VIP4);

    assert!(
        wait_state(&p2, "master", START),
        "n2 not master: {:?}",
        p2.lines()
    );
    assert_sole_holder(&nodes, VIP4, "n2", SLACK, STEADY);
    assert_eq!(state(&p1).as_deref(), Some("backup"));
    // Logs are plain text when stderr is not a terminal (journald, log shippers): greppable as written.
    assert!(
        p2.wait_line(SLACK, |l| l
            .contains("VRRP state change vrid=51 from=Backup to=Master reason="))
            .is_some(),
        "no plain state-change log line: {:?}",
        p2.lines()
    );
    assert!(
        p2.lines().iter().all(|l| !l.contains('\x1b')),
        "escape codes in logs: {:?}",
        p2.lines()
    );
    assert!(client.ns.succeeds(["ping", "-c1", "-W2", "192.0.2.100"]));
    assert_eq!(client.ns.neigh_mac(VIP4).as_deref(), Some(n2.mac.as_str()));

    // Cut n2's cable: n1 takes over, announces itself, and the client follows.
    let cap = client.ns.capture("eth0", "arp").unwrap();
    lab.link_down("n2").unwrap();
    assert!(
        wait_state(&p1, "master", SLACK),
        "n1 not master: {:?}",
        p1.lines()
    );
    assert!(
        wait_state(&p2, "fault", SLACK),
        "n2 not in fault: {:?}",
        p2.lines()
    );
    assert_sole_holder(&nodes, VIP4, "n1", SLACK, STEADY);
    let n1_mac = parse_mac(&n1.mac).unwrap();
    let garp = wait_for(SLACK, || {
        cap.frames()
            .ok()?
            .iter()
            .find_map(|f| match decode_frame(&f.data) {
                Decoded::Arp {
                    sender_mac,
                    sender_ip,
                    target_ip,
                    ..
                } if sender_mac == n1_mac
                    && IpAddr::V4(sender_ip) == VIP4
                    && IpAddr::V4(target_ip) == VIP4 =>
                {
                    Some(())
                }
                _ => None,
            })
    });
    assert!(garp.is_some(), "no gratuitous ARP from n1");
    let moved = wait_for(SLACK, || {
        (client.ns.neigh_mac(VIP4).as_deref() == Some(n1.mac.as_str())).then_some(())
    });
    assert!(
        moved.is_some(),
        "client neighbour entry still {:?}",
        client.ns.neigh_mac(VIP4)
    );
    assert!(client.ns.succeeds(["ping", "-c1", "-W2", "192.0.2.100"]));
    cap.stop().unwrap();

    // Cable back: n2 preempts.
    lab.link_up("n2").unwrap();
    assert!(
        wait_state(&p2, "master", SLACK),
        "n2 did not preempt: {:?}",
        p2.lines()
    );
    assert!(wait_state(&p1, "backup", SLACK));
    assert_sole_holder(&nodes, VIP4, "n2", SLACK, STEADY);
    let back = wait_for(SLACK, || {
        (client.ns.neigh_mac(VIP4).as_deref() == Some(n2.mac.as_str())).then_some(())
    });
    assert!(back.is_some());
    assert!(client.ns.succeeds(["ping", "-c1", "-W2", "192.0.2.100"]));
}

/// SIGTERM on the master: priority 0 on the wire, and the backup takes over after Skew_Time, not after
/// Master_Down_Interval. At a 1 s interval the backup (priority 100) has skew 0.61 s and down interval 3.61 s,
/// so a takeover within 2 s of the priority-0 advert proves the fast path.
#[test]
fn sigterm_sends_priority_zero_and_backup_takes_over_after_skew_time() {
    let lab = lab("term", 2);
    let (n0, n1, client) = (lab.node("n0"), lab.node("n1"), lab.node("client"));
    let nodes = [n0, n1];
    let mut s0 = NodeSpec::new(52, 100, VIP4);
    s0.interval_cs = 100;
    let mut s1 = NodeSpec::new(52, 200, VIP4);
    s1.interval_cs = 100;
    let p0 = start_node(n0, &s0);
    let mut p1 = start_node(n1, &s1);
    assert!(
        wait_state(&p1, "master", Duration::from_secs(10)),
        "{:?}",
        p1.lines()
    );
    assert_sole_holder(&nodes, VIP4, "n1", SLACK, STEADY);

    let cap = client.ns.capture("eth0", "ip proto 112").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(p1
        .stop(Signal::SIGTERM, Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    assert!(
        !n1.ns.has_addr(&n1.ifname, VIP4),
        "VIP left on a node that shut down"
    );
    assert!(wait_state(&p0, "master", SLACK), "{:?}", p0.lines());
    std::thread::sleep(Duration::from_millis(300));
    let frames = cap.stop().unwrap();
    let vrrp: Vec<_> = frames
        .iter()
        .filter_map(|f| match decode_frame(&f.data) {
            Decoded::Vrrp {
                src,
                priority,
                ttl,
                tos,
                ..
            } => Some((f.ts, src, priority, ttl, tos)),
            _ => None,
        })
        .collect();
    let zero = vrrp
        .iter()
        .find(|(_, src, prio, _, _)| *src == IpAddr::V4(n1.v4) && *prio == 0)
        .expect("no priority-0 advertisement seen");
    let takeover = vrrp
        .iter()
        .find(|(ts, src, _, _, _)| *ts > zero.0 && *src == IpAddr::V4(n0.v4))
        .expect("no advertisement from the new master");
    let dt = takeover.0 - zero.0;
    eprintln!("takeover {dt:.3}s after the priority-0 advertisement");
    assert!(
        dt < 2.0,
        "takeover took {dt:.3}s after priority 0 (Master_Down_Interval is 3.6 s)"
    );
    assert!(
        vrrp.iter().all(|v| v.3 == 255),
        "every advertisement has TTL 255"
    );
    assert_sole_holder(&nodes, VIP4, "n0", SLACK, STEADY);
}

#[test]
fn kill9_leaves_a_stale_vip_that_the_restarted_node_removes() {
    let lab = lab("k9", 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let nodes = [n0, n1];
    // No preemption, so the restarted node must stay backup and the stale VIP cannot hide behind a takeover.
    let mut s1 = NodeSpec::new(53, 200, VIP4);
    s1.preempt = false;
    // n1 first: without preemption, n1 started second would stay backup whenever n0 had become master before
    // n1 joined (a start more than n0's Master_Down_Interval later, which a loaded machine does).
    let mut p1 = start_node(n1, &s1);
    assert!(wait_state(&p1, "master", START), "{:?}", p1.lines());
    let p0 = start_node(n0, &NodeSpec::new(53, 100, VIP4));
    assert!(wait_state(&p0, "backup", START), "{:?}", p0.lines());
    assert_sole_holder(&nodes, VIP4, "n1", SLACK, STEADY);

    p1.kill9();
    assert!(
        n1.ns.has_addr(&n1.ifname, VIP4),
        "kill -9 should leave the VIP behind"
    );
    assert!(wait_state(&p0, "master", SLACK), "{:?}", p0.lines());

    let p1 = start_node(n1, &s1);
    assert!(
        p1.wait_line(SLACK, |l| l.contains("stale VIP")).is_some(),
        "no stale-VIP removal logged: {:?}",
        p1.lines()
    );
    assert!(wait_state(&p1, "backup", SLACK), "{:?}", p1.lines());
    assert_sole_holder(&nodes, VIP4, "n0", SLACK, STEADY);
    assert_eq!(state(&p0).as_deref(), Some("master"));
}

#[test]
fn vip_removed_by_someone_else_is_restored() {
    let lab = lab("rest", 1);
    let n0 = lab.node("n0");
    let p0 = start_node(n0, &NodeSpec::new(54, 100, VIP4));
    assert!(wait_state(&p0, "master", START), "{:?}", p0.lines());
    assert!(wait_for(SLACK, || n0.ns.has_addr(&n0.ifname, VIP4).then_some(())).is_some());
    n0.ns
        .run(["ip", "addr", "del", "192.0.2.100/32", "dev", &n0.ifname])
        .unwrap();
    assert!(
        wait_for(SLACK, || n0.ns.has_addr(&n0.ifname, VIP4).then_some(())).is_some(),
        "VIP not restored"
    );
    assert!(stats(&p0)["vip_restored"] >= 1);
}

#[test]
fn ipv6_takeover_with_unsolicited_na() {
    let lab = lab("v6", 2);
    let (n0, n1, client) = (lab.node("n0"), lab.node("n1"), lab.node("client"));
    let nodes = [n0, n1];
    let _p0 = start_node(n0, &NodeSpec::new(55, 100, VIP6));
    let p1 = start_node(n1, &NodeSpec::new(55, 200, VIP6));
    assert!(wait_state(&p1, "master", START), "{:?}", p1.lines());
    assert_sole_holder(&nodes, VIP6, "n1", SLACK, STEADY);
    assert!(client
        .ns
        .succeeds(["ping", "-6", "-c1", "-W2", "2001:db8::100"]));
    assert_eq!(client.ns.neigh_mac(VIP6).as_deref(), Some(n1.mac.as_str()));

    let cap = client.ns.capture("eth0", "icmp6 or ip6 proto 112").unwrap();
    lab.link_down("n1").unwrap();
    assert!(wait_state(&_p0, "master", SLACK), "{:?}", _p0.lines());
    assert_sole_holder(&nodes, VIP6, "n0", SLACK, STEADY);
    let n0_mac = parse_mac(&n0.mac).unwrap();
    let na = wait_for(SLACK, || {
        cap.frames()
            .ok()?
            .iter()
            .find_map(|f| match decode_frame(&f.data) {
                Decoded::NeighAdvert {
                    target,
                    dst,
                    solicited,
                    override_flag,
                    eth_src,
                } if IpAddr::V6(target) == VIP6 && eth_src == n0_mac => {
                    Some((dst, solicited, override_flag))
                }
                _ => None,
            })
    })
    .expect("no unsolicited NA from n0");
    assert_eq!(na, ("ff02::1".parse().unwrap(), false, true));
    let frames = cap.stop().unwrap();
    let ll = n0.link_local().unwrap();
    assert!(frames.iter().any(|f| matches!(decode_frame(&f.data),
        Decoded::Vrrp { src, ttl: 255, version: 3, .. } if src == IpAddr::V6(ll))));
    let moved = wait_for(SLACK, || {
        (client.ns.neigh_mac(VIP6).as_deref() == Some(n0.mac.as_str())).then_some(())
    });
    assert!(
        moved.is_some(),
        "client neighbour entry still {:?}",
        client.ns.neigh_mac(VIP6)
    );
    assert!(client
        .ns
        .succeeds(["ping", "-6", "-c1", "-W2", "2001:db8::100"]));
}

/// A node sending the RFC 9568 message-only IPv4 checksum and one sending Keepalived's pseudo-header form
/// accept each other (both forms are accepted on receive), in both roles.
#[test]
fn message_only_and_pseudo_header_checksums_interoperate() {
    let lab = lab("csum", 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let nodes = [n0, n1];
    let p0 = start_node(n0, &NodeSpec::new(56, 100, VIP4));
    let mut s1 = NodeSpec::new(56, 200, VIP4);
    s1.checksum = "message";
    let mut p1 = start_node(n1, &s1);
    assert!(wait_state(&p1, "master", START), "{:?}", p1.lines());
    assert_sole_holder(&nodes, VIP4, "n1", SLACK, STEADY);
    let st = stats(&p0);
    assert!(st["adverts_received"] > 0);
    assert_eq!(st["drop_checksum"], 0);
    p1.stop(Signal::SIGTERM, Duration::from_secs(10));
    assert!(wait_state(&p0, "master", SLACK));
    let mut s1 = s1.clone();
    s1.priority = 50;
    let p1 = start_node(n1, &s1);
    assert!(wait_state(&p1, "backup", SLACK));
    assert_sole_holder(&nodes, VIP4, "n0", SLACK, STEADY);
    let st = stats(&p1);
    assert!(st["adverts_received"] > 0);
    assert_eq!(st["drop_checksum"], 0);
}

/// `trackWeight: fault`: losing the only backend hands the VIP to the backup; its return takes it back.
#[test]
fn track_fault_moves_the_vip_and_recovery_preempts_back() {
    let lab = lab("trk", 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let nodes = [n0, n1];
    let backend_addr: SocketAddr = "127.0.0.1:6443".parse().unwrap();
    let mut backend = TcpBackend::new(n1, backend_addr);
    let p0 = start_node(n0, &NodeSpec::new(57, 100, VIP4));
    let mut s1 = NodeSpec::new(57, 200, VIP4);
    s1.fault_backend = Some(backend_addr);
    let p1 = start_node(n1, &s1);
    assert!(wait_state(&p1, "master", START), "{:?}", p1.lines());
    assert_sole_holder(&nodes, VIP4, "n1", SLACK, STEADY);
    backend.stop();
    assert!(
        wait_state(&p1, "fault", SLACK),
        "no tracking fault: {:?}",
        p1.lines()
    );
    assert!(wait_state(&p0, "master", SLACK), "{:?}", p0.lines());
    assert_sole_holder(&nodes, VIP4, "n0", SLACK, STEADY);
    assert_ne!(state(&p1).as_deref(), Some("master"));
    backend.start();
    assert!(wait_state(&p1, "master", SLACK), "{:?}", p1.lines());
    assert!(wait_state(&p0, "backup", SLACK), "{:?}", p0.lines());
    assert_sole_holder(&nodes, VIP4, "n1", SLACK, STEADY);
}
