//! Gratuitous ARP and unsolicited neighbour advertisement frames. CONTRACT STUB (issue 3).
use std::net::{Ipv4Addr, Ipv6Addr};

/// A whole Ethernet frame: gratuitous ARP request for `vip` from `mac` (broadcast).
pub fn gratuitous_arp(_mac: [u8; 6], _vip: Ipv4Addr) -> Vec<u8> {
    unimplemented!("issue 3")
}

/// A whole Ethernet frame: unsolicited NA for `vip` to ff02::1 (Override set, Solicited clear, target LL option).
pub fn unsolicited_na(_mac: [u8; 6], _vip: Ipv6Addr) -> Vec<u8> {
    unimplemented!("issue 3")
}
