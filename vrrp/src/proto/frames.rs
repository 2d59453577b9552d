//! Gratuitous ARP and unsolicited neighbour advertisement frames: the whole Ethernet frames a new master sends
//! so switches and neighbours move the VIP to its MAC. Byte-compatible with what Keepalived 2.2 sends.
//!
//! ```text
//! Gratuitous ARP (RFC 826 / RFC 5227), Ethernet broadcast, 42 bytes:
//! | dst ff:ff:ff:ff:ff:ff | src MAC | 0x0806 |
//! | htype 1 | ptype 0x0800 | hlen 6 | plen 4 | op 1 (request) |
//! | sender MAC | sender IP = VIP | target MAC ff:ff:ff:ff:ff:ff | target IP = VIP |
//!
//! Unsolicited NA (RFC 4861 4.4 / 7.2.6), 86 bytes:
//! | dst 33:33:00:00:00:01 | src MAC | 0x86dd |
//! | IPv6: payload 32, next header 58, hop limit 255, src = VIP, dst = ff02::1 |
//! | type 136 | code 0 | checksum | R=0 S=0 O=1, reserved |
//! | target address = VIP (16 bytes) |
//! | option 2 (target link-layer address) | length 1 | MAC |
//! ```
use std::net::{Ipv4Addr, Ipv6Addr};

use super::packet::Sum;

const BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1 mapped to Ethernet (RFC 2464 7).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The Ethernet header's EtherTypes vipd builds or reads (`sys::peer_macs` filters on the IP ones).
pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Destination MAC, source MAC, EtherType: what [`ethernet`] writes.
pub(crate) const ETHERNET_HEADER_LEN: usize = 14;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_NA: u8 = 136;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LL: u8 = 2;

fn ethernet(out: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ethertype.to_be_bytes());
}

/// A whole Ethernet frame: gratuitous ARP request for `vip` from `mac` (broadcast).
///
/// A request rather than a reply, with the broadcast target MAC, because that is what Keepalived sends and what
/// every switch and Linux neighbour table updates from.
pub fn gratuitous_arp(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    gratuitous_arp_for(mac, mac, vip)
}

/// A gratuitous ARP sent from `eth_src` that says `vip` is at `mac`: a node that stepped down repairs the
/// neighbour entries its own announcement moved (see `Router::start_repair`). The Ethernet source stays the
/// sender's own, so switches keep `mac` on the port it really is on.
pub fn gratuitous_arp_for(eth_src: [u8; 6], mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(42);
    ethernet(&mut out, BROADCAST, eth_src, ETHERTYPE_ARP);
    out.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    out.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    out.extend_from_slice(&[6, 4]);
    out.extend_from_slice(&1u16.to_be_bytes()); // request
    out.extend_from_slice(&mac);
    out.extend_from_slice(&vip.octets());
    out.extend_from_slice(&BROADCAST);
    out.extend_from_slice(&vip.octets());
    out
}

/// A whole Ethernet frame: unsolicited NA for `vip` to ff02::1 (Override set, Solicited clear, target LL option).
///
/// The IPv6 source is the VIP itself, as Keepalived does: the VIP may be the only global address the node
/// has on that link, and neighbours accept an NA from any source with hop limit 255.
pub fn unsolicited_na(mac: [u8; 6], vip: Ipv6Addr) -> Vec<u8> {
    unsolicited_na_for(mac, mac, vip)
}

/// An unsolicited NA sent from `eth_src` whose target link-layer address is `mac` (see
/// [`gratuitous_arp_for`]).
pub fn unsolicited_na_for(eth_src: [u8; 6], mac: [u8; 6], vip: Ipv6Addr) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[ICMPV6_NA, 0, 0, 0]);
    icmp.extend_from_slice(&[NA_FLAG_OVERRIDE, 0, 0, 0]);
    icmp.extend_from_slice(&vip.octets());
    icmp.extend_from_slice(&[OPT_TARGET_LL, 1]);
    icmp.extend_from_slice(&mac);
    let mut sum = Sum::default();
    sum.add(&vip.octets());
    sum.add(&ALL_NODES.octets());
    sum.add(&(icmp.len() as u32).to_be_bytes());
    sum.add(&[0, 0, 0, IPPROTO_ICMPV6]);
    sum.add(&icmp);
    icmp[2..4].copy_from_slice(&sum.finish().to_be_bytes());

    let mut out = Vec::with_capacity(14 + 40 + icmp.len());
    ethernet(&mut out, ALL_NODES_MAC, eth_src, ETHERTYPE_IPV6);
    out.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class 0, flow label 0
    out.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    out.extend_from_slice(&[IPPROTO_ICMPV6, 255]);
    out.extend_from_slice(&vip.octets());
    out.extend_from_slice(&ALL_NODES.octets());
    out.extend_from_slice(&icmp);
    out
}
