//! The raw IP socket (protocol 112) of one instance: one per interface and family, bound to the device.
//!
//! The source address of every advertisement is set per packet with IP_PKTINFO / IPV6_PKTINFO, so the socket
//! need not be bound to an address (a bound raw socket would only receive packets sent to that address, never
//! the multicast group). The received TTL / hop limit comes from control messages (IP_RECVTTL /
//! IPV6_RECVHOPLIMIT), and the IPv6 destination from IPV6_PKTINFO (raw IPv6 sockets do not see the header).
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6, SockaddrStorage,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

pub(crate) const VRRP_PROTO: i32 = 112;
pub(crate) const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub(crate) const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// One received packet: addresses, the TTL / hop limit it arrived with, and where the VRRP message is in the
/// receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: Option<u8>,
    pub payload: std::ops::Range<usize>,
}

/// Why an IPv4 header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Shorter than its own header, IHL < 5, or a total length shorter than the header.
    Malformed,
}

/// Read an IPv4 header with options (IHL), returning source, destination, TTL and the payload range (bounded
/// by the header's total length, so link padding is not part of the payload).
pub(crate) fn parse_ipv4(
    b: &[u8],
) -> Result<(Ipv4Addr, Ipv4Addr, u8, std::ops::Range<usize>), HeaderError> {
    if b.len() < 20 || b[0] >> 4 != 4 {
        return Err(HeaderError::Malformed);
    }
    let ihl = usize::from(b[0] & 0x0f) * 4;
    if ihl < 20 || b.len() < ihl {
        return Err(HeaderError::Malformed);
    }
    let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if total < ihl {
        return Err(HeaderError::Malformed);
    }
    let end = total.min(b.len());
    let src = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
    let dst = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    Ok((src, dst, b[8], ihl..end))
}

#[derive(Debug)]
pub(crate) struct VrrpSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
    v6: bool,
}

impl VrrpSocket {
    /// Open, bind to `ifname`, and (multicast mode) join the VRRP group on `ifindex`.
    pub fn open(ifname: &str, ifindex: u32, v6: bool, multicast: bool) -> io::Result<Self> {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(domain, Type::RAW, Some(Protocol::from(VRRP_PROTO)))?;
        s.set_nonblocking(true)?;
        s.bind_device(Some(ifname.as_bytes()))?;
        if v6 {
            s.set_multicast_hops_v6(255)?;
            s.set_unicast_hops_v6(255)?;
            s.set_multicast_loop_v6(false)?;
            s.set_multicast_if_v6(ifindex)?;
            s.set_recv_hoplimit_v6(true)?;
            setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
            if multicast {
                s.join_multicast_v6(&GROUP_V6, ifindex)?;
            }
        } else {
            s.set_multicast_ttl_v4(255)?;
            s.set_ttl_v4(255)?;
            s.set_tos_v4(0xc0)?;
            s.set_multicast_loop_v4(false)?;
            setsockopt(&s, sockopt::Ipv4RecvTtl, &true).map_err(io::Error::from)?;
            if multicast {
                s.join_multicast_v4_n(&GROUP_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
            }
        }
        Ok(VrrpSocket {
            fd: register(s)?,
            ifindex,
            v6,
        })
    }

    /// Receive one packet into `buf`. `Ok(Err(_))` is a packet whose IPv4 header is unreadable (to be counted).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Result<Received, HeaderError>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let v6 = self.v6;
            match guard.try_io(|inner| recv_once(inner.get_ref().as_raw_fd(), v6, buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Send one VRRP message from `src` to `dst` out of this socket's interface.
    pub async fn send(&self, src: IpAddr, dst: IpAddr, msg: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            let ifindex = self.ifindex;
            match guard
                .try_io(|inner| send_once(inner.get_ref().as_raw_fd(), ifindex, src, dst, msg))
            {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Register the socket with the runtime's reactor.
#[allow(unsafe_code)]
fn register(s: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its file descriptor: it stays open and refers to the same socket until the
    // `Socket` (moved into the `AsyncFd`) is dropped, and `as_raw_fd` always returns that descriptor.
    unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1)
}

fn recv_once(fd: i32, v6: bool, buf: &mut [u8]) -> io::Result<Result<Received, HeaderError>> {
    let mut cmsg = nix::cmsg_space!(libc::c_int, libc::in6_pktinfo, libc::in_pktinfo);
    let (len, from, ttl, pktdst) = {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty())
            .map_err(io::Error::from)?;
        let mut ttl = None;
        let mut pktdst = None;
        if let Ok(cm) = msg.cmsgs() {
            for c in cm {
                match c {
                    ControlMessageOwned::Ipv4Ttl(t) => ttl = u8::try_from(t).ok(),
                    ControlMessageOwned::Ipv6HopLimit(t) => ttl = u8::try_from(t).ok(),
                    ControlMessageOwned::Ipv6PacketInfo(pi) => {
                        pktdst = Some(Ipv6Addr::from(pi.ipi6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
        }
        let from = msg
            .address
            .and_then(|a| a.as_sockaddr_in6().map(|s| s.ip()));
        (msg.bytes, from, ttl, pktdst)
    };
    if v6 {
        let (Some(src), Some(dst)) = (from, pktdst) else {
            return Ok(Err(HeaderError::Malformed));
        };
        Ok(Ok(Received {
            src: IpAddr::V6(src),
            dst: IpAddr::V6(dst),
            ttl,
            payload: 0..len,
        }))
    } else {
        Ok(
            parse_ipv4(&buf[..len]).map(|(src, dst, hdr_ttl, payload)| Received {
                src: IpAddr::V4(src),
                dst: IpAddr::V4(dst),
                // The control message and the header agree; the header is the fallback.
                ttl: ttl.or(Some(hdr_ttl)),
                payload,
            }),
        )
    }
}

fn send_once(fd: i32, ifindex: u32, src: IpAddr, dst: IpAddr, msg: &[u8]) -> io::Result<()> {
    let iov = [IoSlice::new(msg)];
    let n = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let pi = libc::in_pktinfo {
                ipi_ifindex: ifindex as libc::c_int,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(src.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
            sendmsg(
                fd,
                &iov,
                &[ControlMessage::Ipv4PacketInfo(&pi)],
                MsgFlags::empty(),
                Some(&to),
            )
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let pi = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: src.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            let scope = if dst.is_multicast() || dst.segments()[0] & 0xffc0 == 0xfe80 {
                ifindex
            } else {
                0
            };
            let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, scope));
            sendmsg(
                fd,
                &iov,
                &[ControlMessage::Ipv6PacketInfo(&pi)],
                MsgFlags::empty(),
                Some(&to),
            )
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "address families differ",
            ))
        }
    }
    .map_err(io::Error::from)?;
    if n != msg.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(ihl: u8, total: u16, ttl: u8) -> Vec<u8> {
        let mut b = vec![0u8; (usize::from(ihl) * 4).max(20)];
        b[0] = 0x40 | ihl;
        b[2..4].copy_from_slice(&total.to_be_bytes());
        b[8] = ttl;
        b[9] = 112;
        b[12..16].copy_from_slice(&[192, 0, 2, 1]);
        b[16..20].copy_from_slice(&[224, 0, 0, 18]);
        b
    }

    #[test]
    fn ipv4_header_with_options_is_skipped_by_ihl() {
        let mut b = hdr(6, 24 + 12, 255);
        b.extend_from_slice(&[0xAA; 12]);
        b.extend_from_slice(&[0; 6]); // link padding after the datagram
        let (src, dst, ttl, p) = parse_ipv4(&b).unwrap();
        assert_eq!(src, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(dst, GROUP_V4);
        assert_eq!(ttl, 255);
        assert_eq!(p, 24..36);
    }

    #[test]
    fn malformed_ipv4_headers_are_rejected() {
        assert_eq!(parse_ipv4(&[0x45; 10]), Err(HeaderError::Malformed));
        assert_eq!(parse_ipv4(&hdr(4, 40, 255)), Err(HeaderError::Malformed));
        let mut b = hdr(5, 10, 255);
        b.extend_from_slice(&[0; 8]);
        assert_eq!(parse_ipv4(&b), Err(HeaderError::Malformed));
        let mut b = hdr(15, 60, 255);
        b.truncate(40);
        assert_eq!(parse_ipv4(&b), Err(HeaderError::Malformed));
        let mut b = hdr(5, 20, 255);
        b[0] = 0x65;
        assert_eq!(parse_ipv4(&b), Err(HeaderError::Malformed));
    }

    #[test]
    fn ipv4_total_length_beyond_buffer_is_clamped() {
        let mut b = hdr(5, 100, 1);
        b.extend_from_slice(&[1, 2, 3]);
        let (_, _, ttl, p) = parse_ipv4(&b).unwrap();
        assert_eq!((ttl, p), (1, 20..23));
    }
}
