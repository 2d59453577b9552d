//! Crafted packets sent at `vipd run` nodes from another namespace: each would take mastership if accepted
//! (priority 255), so "nothing changed" is a real check; each must be dropped and counted under its own reason
//! in `vipd_vrrp_packets_dropped_total`.
mod vrrp_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use vipd_lab::netns::Node;
use vrrp::proto::{Advertisement, Centis, ChecksumMode, Priority, Vrid};
use vrrp_common::*;

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// How long the counters may take to show the crafted packets (a loaded machine).
const SETTLE: Duration = Duration::from_secs(10);

fn advert(vrid: u8, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    Advertisement {
        vrid: Vrid::new(vrid).unwrap(),
        priority: Priority(255),
        max_advert_int: Centis::new(10).unwrap(),
        addresses: vec![VIP],
    }
    .encode(IpAddr::V4(src), IpAddr::V4(dst), ChecksumMode::PseudoHeader)
}

/// An IPv4 packet (header built here, so TTL and options are ours) carrying `payload` as protocol 112.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0xc0];
    p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, ttl, 112, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

fn inet_checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Send raw IPv4 packets (IP_HDRINCL) from `from`'s namespace.
fn send_raw(from: &Node, packets: Vec<(Ipv4Addr, Vec<u8>)>) {
    let ifname = from.ifname.clone();
    from.ns
        .run_in(move || {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))).unwrap();
            s.bind_device(Some(ifname.as_bytes())).unwrap();
            for _ in 0..3 {
                for (dst, p) in &packets {
                    s.send_to(p, &SockAddr::from(SocketAddrV4::new(*dst, 0)))
                        .unwrap();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .unwrap();
}

#[test]
fn crafted_multicast_packets_change_nothing_and_are_counted() {
    let lab = lab("craft", 2);
    let (n0, n1, evil) = (lab.node("n0"), lab.node("n1"), lab.node("client"));
    let p0 = start_node(n0, &NodeSpec::new(60, 100, VIP));
    let p1 = start_node(n1, &NodeSpec::new(60, 200, VIP));
    assert!(
        wait_state(&p1, "master", Duration::from_secs(8)),
        "{:?}",
        p1.lines()
    );
    assert!(wait_state(&p0, "backup", Duration::from_secs(8)));
    let before0 = stats(&p0);
    let before1 = stats(&p1);

    let src = evil.v4;
    let good = advert(60, src, GROUP);
    let mut bad_sum = good.clone();
    bad_sum[6] ^= 0xff;
    // A well-formed VRRPv2 advertisement (auth type 0, 1 s, its message-only checksum, 8 bytes of auth data):
    // these version-3 nodes reject it for the version, not the checksum, and count the VRRPv2 sender.
    let mut v2 = vec![0x21, 60, 100, 1, 0, 1, 0, 0];
    v2.extend_from_slice(&[192, 0, 2, 100]);
    v2.extend_from_slice(&[0; 8]);
    let sum = inet_checksum(&v2);
    v2[6..8].copy_from_slice(&sum.to_be_bytes());
    let packets = vec![
        (GROUP, ipv4(src, GROUP, 254, &good)),
        (GROUP, ipv4(src, GROUP, 255, &bad_sum)),
        (GROUP, ipv4(src, GROUP, 255, &advert(61, src, GROUP))),
        (GROUP, ipv4(src, GROUP, 255, &v2)),
        (GROUP, ipv4(src, GROUP, 255, &good[..3])),
    ];
    send_raw(evil, packets);

    let reasons = [
        "drop_hop_limit",
        "drop_checksum",
        "drop_unknown_vrid",
        "drop_version",
        "drop_truncated",
    ];
    for (p, before, want) in [(&p0, &before0, "backup"), (&p1, &before1, "master")] {
        // Every crafted packet counted (so all were handled) before the state is judged.
        let after = wait_stats(p, SETTLE, "each drop reason +3", |now| {
            reasons.iter().all(|k| now[*k] >= before[*k] + 3)
                && now["v2_peer_adverts"] >= before["v2_peer_adverts"] + 3
        });
        assert_eq!(after["transitions"], before["transitions"], "state changed");
        assert_eq!(state(p).as_deref(), Some(want));
    }
    assert_eq!(holders(&[n0, n1], VIP), ["n1"]);
}

#[test]
fn unicast_mode_ignores_a_spoofed_peer() {
    let lab = lab("spoof", 2);
    let (n0, n1, evil) = (lab.node("n0"), lab.node("n1"), lab.node("client"));
    let mut s0 = NodeSpec::new(61, 100, VIP);
    s0.peers = vec![IpAddr::V4(n1.v4)];
    let mut s1 = NodeSpec::new(61, 200, VIP);
    s1.peers = vec![IpAddr::V4(n0.v4)];
    let p0 = start_node(n0, &s0);
    let p1 = start_node(n1, &s1);
    assert!(
        wait_state(&p1, "master", Duration::from_secs(8)),
        "{:?}",
        p1.lines()
    );
    assert!(wait_state(&p0, "backup", Duration::from_secs(8)));
    wait_stats(&p0, SETTLE, "unicast adverts received", |s| {
        s["adverts_received"] > 0
    });
    let before0 = stats(&p0);
    let before1 = stats(&p1);

    // A well-formed advertisement, TTL 255, correct checksum, priority 255: only the source is wrong.
    let src = evil.v4;
    let packets = [n0.v4, n1.v4]
        .into_iter()
        .map(|dst| (dst, ipv4(src, dst, 255, &advert(61, src, dst))))
        .collect();
    send_raw(evil, packets);
    for (p, before, want) in [(&p0, &before0, "backup"), (&p1, &before1, "master")] {
        let after = wait_stats(p, SETTLE, "drop_unknown_peer +3", |now| {
            now["drop_unknown_peer"] >= before["drop_unknown_peer"] + 3
        });
        assert_eq!(after["transitions"], before["transitions"]);
        assert_eq!(state(p).as_deref(), Some(want));
    }
    assert_eq!(holders(&[n0, n1], VIP), ["n1"]);
}

/// IPv6: an advertisement with hop limit 254 (otherwise valid, priority 255) is dropped and counted; the
/// hop limit comes from the IPV6_HOPLIMIT control message, since a raw IPv6 socket never sees the header.
#[test]
fn ipv6_hop_limit_254_is_dropped() {
    use std::net::{Ipv6Addr, SocketAddrV6};
    let vip6: IpAddr = "2001:db8::100".parse().unwrap();
    let group: Ipv6Addr = "ff02::12".parse().unwrap();
    let lab = lab("hl6", 2);
    let (n0, n1, evil) = (lab.node("n0"), lab.node("n1"), lab.node("client"));
    let p0 = start_node(n0, &NodeSpec::new(62, 100, vip6));
    let p1 = start_node(n1, &NodeSpec::new(62, 200, vip6));
    assert!(
        wait_state(&p1, "master", Duration::from_secs(8)),
        "{:?}",
        p1.lines()
    );
    assert!(wait_state(&p0, "backup", Duration::from_secs(8)));
    let before = [stats(&p0), stats(&p1)];

    let src = evil.link_local().unwrap();
    let msg = Advertisement {
        vrid: Vrid::new(62).unwrap(),
        priority: Priority(255),
        max_advert_int: Centis::new(10).unwrap(),
        addresses: vec![vip6],
    }
    .encode(
        IpAddr::V6(src),
        IpAddr::V6(group),
        ChecksumMode::PseudoHeader,
    );
    let ifname = evil.ifname.clone();
    evil.ns
        .run_in(move || {
            let idx = nix::net::if_::if_nametoindex(ifname.as_str()).unwrap();
            let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(112))).unwrap();
            s.bind(&SockAddr::from(SocketAddrV6::new(src, 0, 0, idx)))
                .unwrap();
            s.set_multicast_if_v6(idx).unwrap();
            s.set_multicast_hops_v6(254).unwrap();
            for _ in 0..3 {
                s.send_to(&msg, &SockAddr::from(SocketAddrV6::new(group, 0, 0, idx)))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .unwrap();
    for (p, before, want) in [(&p0, &before[0], "backup"), (&p1, &before[1], "master")] {
        let after = wait_stats(p, SETTLE, "drop_hop_limit +3", |now| {
            now["drop_hop_limit"] >= before["drop_hop_limit"] + 3
        });
        assert_eq!(after["transitions"], before["transitions"]);
        assert_eq!(state(p).as_deref(), Some(want));
    }
    assert_eq!(holders(&[n0, n1], vip6), ["n1"]);
}
