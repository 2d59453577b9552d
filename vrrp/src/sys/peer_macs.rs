//! Which MAC address each VRRP peer sends from: a receive-only AF_PACKET socket that sees the Ethernet header of
//! every VRRP packet arriving on the interface (the raw IP socket never shows it).
//!
//! A router that steps down repairs the neighbour entries its own gratuitous ARP moved by announcing the VIP at
//! the winner's MAC (`Action::AnnounceFor`); this is where that MAC comes from. A classic BPF filter keeps
//! every other frame out of the socket, so a busy proxy's traffic costs it nothing, and only the first 64
//! bytes of a VRRP frame are copied (Ethernet header and the IP source address).
use std::collections::HashMap;
use std::io;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::socket::VRRP_PROTO;
use crate::proto::frames::{ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// Bytes of each frame copied to the socket: Ethernet header plus an IPv6 header's source address.
const SNAP: u32 = 64;
/// Peers remembered at most (a VRID has a handful; a LAN full of forged sources must not grow the map).
const MAX_PEERS: usize = 64;

// Classic BPF opcodes (linux/filter.h).
const BPF_LD_B_ABS: u16 = 0x30;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;

#[derive(Debug)]
pub(crate) struct PeerMacs {
    fd: AsyncFd<Socket>,
    v6: bool,
    macs: HashMap<IpAddr, [u8; 6]>,
}

impl PeerMacs {
    pub fn open(ifindex: u32, v6: bool) -> io::Result<Self> {
        let ethertype = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        let proto = Protocol::from(i32::from(ethertype.to_be()));
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(proto))?;
        // Attach the filter before binding to the interface, so no unfiltered frame is ever queued.
        sock.attach_filter(&vrrp_filter(v6))?;
        sock.bind(&link_addr(ifindex, ethertype)?)?;
        sock.set_nonblocking(true)?;
        Ok(PeerMacs {
            fd: super::socket::register(sock)?,
            v6,
            macs: HashMap::new(),
        })
    }

    /// Wait for the next VRRP frame and remember its sender's MAC.
    pub async fn learn(&mut self) -> io::Result<()> {
        let mut buf = [0u8; SNAP as usize];
        let n = loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|s| (&mut s.get_ref()).read(&mut buf)) {
                Ok(r) => break r?,
                Err(_would_block) => continue,
            }
        };
        let frame = &buf[..n];
        if let Some((ip, mac)) = parse(frame, self.v6) {
            if self.macs.len() >= MAX_PEERS && !self.macs.contains_key(&ip) {
                self.macs.clear();
            }
            self.macs.insert(ip, mac);
        }
        Ok(())
    }

    /// The MAC `peer`'s last VRRP packet came from.
    pub fn mac_of(&self, peer: IpAddr) -> Option<[u8; 6]> {
        self.macs.get(&peer).copied()
    }
}

/// Accept (the first [`SNAP`] bytes of) frames whose IP protocol / next header is VRRP, drop the rest.
fn vrrp_filter(v6: bool) -> [SockFilter; 4] {
    let proto_at = if v6 {
        ETHERNET_HEADER_LEN + 6
    } else {
        ETHERNET_HEADER_LEN + 9
    } as u32;
    [
        SockFilter::new(BPF_LD_B_ABS, 0, 0, proto_at),
        SockFilter::new(BPF_JEQ_K, 0, 1, VRRP_PROTO as u32),
        SockFilter::new(BPF_RET_K, 0, 0, SNAP),
        SockFilter::new(BPF_RET_K, 0, 0, 0),
    ]
}

/// The IP source and Ethernet source of a VRRP frame.
fn parse(frame: &[u8], v6: bool) -> Option<(IpAddr, [u8; 6])> {
    let mac: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
    let ip = if v6 {
        let b: [u8; 16] = frame
            .get(ETHERNET_HEADER_LEN + 8..ETHERNET_HEADER_LEN + 24)?
            .try_into()
            .ok()?;
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        let b: [u8; 4] = frame
            .get(ETHERNET_HEADER_LEN + 12..ETHERNET_HEADER_LEN + 16)?
            .try_into()
            .ok()?;
        IpAddr::V4(Ipv4Addr::from(b))
    };
    Some((ip, mac))
}

/// A `sockaddr_ll` for binding to one interface and ethertype.
#[allow(unsafe_code)]
fn link_addr(ifindex: u32, ethertype: u16) -> io::Result<SockAddr> {
    let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::other("ifindex out of range"))?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is a plain C struct smaller than `sockaddr_storage` (view_as asserts the size), and
    // the storage is zero-initialised, a valid value for every field.
    let ll = unsafe { storage.view_as::<nix::libc::sockaddr_ll>() };
    ll.sll_family = nix::libc::AF_PACKET as u16;
    ll.sll_protocol = ethertype.to_be();
    ll.sll_ifindex = ifindex;
    let len = std::mem::size_of::<nix::libc::sockaddr_ll>() as socket2::socklen_t;
    // SAFETY: the storage holds an initialised `sockaddr_ll` of exactly `len` bytes with family AF_PACKET.
    Ok(unsafe { SockAddr::new(storage, len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sender_of_an_ipv4_vrrp_frame() {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x11]);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[23] = 112;
        f[26..30].copy_from_slice(&[192, 0, 2, 11]);
        assert_eq!(
            parse(&f, false),
            Some((IpAddr::from([192, 0, 2, 11]), [2, 0, 0, 0, 0, 0x11]))
        );
        assert_eq!(parse(&f[..20], false), None, "truncated frame");
    }

    #[test]
    fn parses_the_sender_of_an_ipv6_vrrp_frame() {
        let mut f = vec![0u8; 14 + 40 + 8];
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x12]);
        let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x12);
        f[22..38].copy_from_slice(&src.octets());
        assert_eq!(
            parse(&f, true),
            Some((IpAddr::V6(src), [2, 0, 0, 0, 0, 0x12]))
        );
    }
}
