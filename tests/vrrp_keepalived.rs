//! Interoperability with the distribution's Keepalived 2.2 in the same VRID: vipd master / Keepalived backup
//! and the reverse, failover both ways, multicast and unicast, IPv4 and IPv6; never two masters in steady state.
//! Keepalived's default IPv4 checksum includes the pseudo-header, which is also vipd's default.
mod vrrp_common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use nix::sys::signal::Signal;
use vrrp_common::*;

const VIP4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
const VIP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
const SLACK: Duration = Duration::from_secs(6);
const STEADY: Duration = Duration::from_millis(800);

/// One scenario: vipd (n0) and Keepalived (n1) in VRID `vrid`.
/// 1. vipd 200 / Keepalived 100: vipd master, Keepalived holds nothing.
/// 2. vipd leaves (SIGTERM): Keepalived takes over. 3. vipd 200 back: it preempts.
/// 4. vipd restarted at 50: Keepalived master, vipd backup. 5. Keepalived leaves: vipd takes over.
fn interop(tag: &str, vrid: u8, vip: IpAddr, unicast: bool) {
    let lab = lab(tag, 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let nodes = [n0, n1];
    let v6 = vip.is_ipv6();
    // In unicast IPv6 both sides send from and list the global addresses.
    let (vipd_spec, ka_spec) = {
        let mut s = NodeSpec::new(vrid, 200, vip);
        let mut k = KaSpec {
            vrid,
            priority: 100,
            advert_int: "0.1",
            vip,
            peers: vec![],
            source: None,
            vrrp_version: Some(3),
            auth_pass: None,
            master: false,
        };
        if unicast {
            s.peers = vec![n1.ip(v6)];
            s.source = Some(n0.ip(v6));
            k.peers = vec![n0.ip(v6)];
            k.source = Some(n1.ip(v6));
        }
        (s, k)
    };
    let mut ka = keepalived(n1, &ka_spec);
    let mut p = start_node(n0, &vipd_spec);
    assert_reaches(&p, "master", SLACK, "vipd not master");
    assert_sole_holder(&nodes, vip, "n0", SLACK, STEADY);
    assert!(
        stats(&p)["adverts_received"] > 0 || ka.proc.lines().iter().any(|l| l.contains("BACKUP")),
        "no sign of Keepalived: {:?}",
        ka.proc.lines()
    );

    // vipd leaves: priority 0, Keepalived takes over.
    p.stop(Signal::SIGTERM, Duration::from_secs(10));
    assert_sole_holder(&nodes, vip, "n1", SLACK, STEADY);

    // vipd back with the higher priority: preempts Keepalived.
    let mut p = start_node(n0, &vipd_spec);
    assert_reaches(&p, "master", SLACK, "vipd did not preempt");
    assert_sole_holder(&nodes, vip, "n0", SLACK, STEADY);
    let st = stats(&p);
    assert_eq!(st["drop_checksum"], 0, "Keepalived's checksums rejected");
    p.stop(Signal::SIGTERM, Duration::from_secs(10));

    // The reverse: Keepalived master, vipd backup.
    let mut low = vipd_spec.clone();
    low.priority = 50;
    assert_sole_holder(&nodes, vip, "n1", SLACK, STEADY);
    let p = start_node(n0, &low);
    assert_reaches(&p, "backup", SLACK, "vipd not backup");
    assert_sole_holder(&nodes, vip, "n1", SLACK, STEADY);
    wait_stats(&p, SLACK, "a Keepalived advertisement accepted", |s| {
        s["adverts_received"] > 0
    });
    assert_eq!(state(&p).as_deref(), Some("backup"));

    if std::env::var_os("SHOW_KA").is_some() {
        eprintln!("{}", ka.proc.lines().join("\n"));
    }
    let complaints: Vec<String> = ka
        .proc
        .lines()
        .into_iter()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("checksum") || l.contains("invalid") || l.contains("ttl")
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "Keepalived complained: {complaints:?}"
    );
    // Keepalived leaves: vipd takes over.
    ka.stop();
    assert_reaches(&p, "master", SLACK, "vipd did not take over");
    assert_sole_holder(&nodes, vip, "n0", SLACK, STEADY);
    let st = stats(&p);
    assert_eq!(st["drop_checksum"], 0);
    assert_eq!(st["drop_hop_limit"], 0);
}

#[test]
fn keepalived_ipv4_multicast() {
    interop("ka4m", 71, VIP4, false);
}

#[test]
fn keepalived_ipv4_unicast() {
    interop("ka4u", 72, VIP4, true);
}

#[test]
fn keepalived_ipv6_multicast() {
    interop("ka6m", 73, VIP6, false);
}

#[test]
fn keepalived_ipv6_unicast() {
    interop("ka6u", 74, VIP6, true);
}
