//! Subnets (`Cidr`) and this machine's interface addresses, which is what the cluster-config checks need to
//! find "this node" and its L2 subnet without being told.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network: address and prefix length. Parsing accepts host bits (`192.0.2.11/24`, the way an interface
/// address is written); `network()` clears them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    fn bits(&self) -> u32 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn mask(&self) -> u128 {
        let host_bits = self.bits() - u32::from(self.prefix);
        let all = if self.bits() == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        if host_bits >= 128 {
            0
        } else {
            all & !((1u128 << host_bits) - 1)
        }
    }

    /// The first address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        from_u128(self.addr, to_u128(self.addr) & self.mask())
    }

    /// The last address (host bits set).
    pub fn last(&self) -> IpAddr {
        let all = if self.bits() == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        from_u128(
            self.addr,
            (to_u128(self.addr) & self.mask()) | (all & !self.mask()),
        )
    }

    pub fn has_host_bits(&self) -> bool {
        self.network() != self.addr
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.addr.is_ipv4()
            && to_u128(a) & self.mask() == to_u128(self.addr) & self.mask()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (address/prefix)"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR: {a:?} is not an IP address"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR: bad prefix length {p:?}"))?;
        Cidr::new(addr, prefix)
            .ok_or_else(|| format!("{s:?} is not a CIDR: prefix length {prefix} is too long"))
    }
}

pub fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Builds an address of the same family as `like` from its integer value.
pub fn from_u128(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// One address configured on a local interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddr {
    pub interface: String,
    /// The address with its prefix length: the interface's on-link subnet.
    pub cidr: Cidr,
}

/// Every IPv4 and IPv6 address on this machine's interfaces (in the current network namespace).
pub fn local_addrs() -> std::io::Result<Vec<LocalAddr>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)? {
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let pair = if let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
            Some((IpAddr::V4(a.ip()), u32::from(m.ip()).count_ones()))
        } else if let (Some(a), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
            Some((IpAddr::V6(a.ip()), u128::from(m.ip()).count_ones()))
        } else {
            None
        };
        if let Some((ip, prefix)) = pair {
            if let Some(cidr) = Cidr::new(ip, prefix as u8) {
                out.push(LocalAddr {
                    interface: ifa.interface_name.clone(),
                    cidr,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_arithmetic() {
        let c: Cidr = "192.0.2.11/24".parse().unwrap();
        assert!(c.has_host_bits());
        assert_eq!(c.network(), ip("192.0.2.0"));
        assert_eq!(c.last(), ip("192.0.2.255"));
        assert!(c.contains(ip("192.0.2.200")));
        assert!(!c.contains(ip("198.51.100.1")));
        assert!(!c.contains(ip("2001:db8::1")));
        let c6: Cidr = "2001:db8::/64".parse().unwrap();
        assert!(!c6.has_host_bits());
        assert!(c6.contains(ip("2001:db8::5")));
        assert!(!c6.contains(ip("2001:db8:0:1::5")));
        assert_eq!(c6.last(), ip("2001:db8::ffff:ffff:ffff:ffff"));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let host: Cidr = "2001:db8::1/128".parse().unwrap();
        assert_eq!(host.last(), ip("2001:db8::1"));
    }

    #[test]
    fn cidr_errors() {
        assert!("192.0.2.0".parse::<Cidr>().is_err());
        assert!("192.0.2.0/33".parse::<Cidr>().is_err());
        assert!("nope/24".parse::<Cidr>().is_err());
        assert!("192.0.2.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn local_addrs_include_loopback() {
        let addrs = local_addrs().unwrap();
        assert!(
            addrs
                .iter()
                .any(|a| a.cidr.addr == ip("127.0.0.1") && a.cidr.prefix == 8),
            "{addrs:?}"
        );
    }
}
