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

use crate::proto::packet::Ipv4Header;
use crate::proto::DecodeError;

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

    /// Receive one packet into `buf`. `Ok(Err(_))` is a packet whose IP header is unusable (to be counted).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Result<Received, DecodeError>> {
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
pub(crate) fn register(s: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its file descriptor: it stays open and refers to the same socket until the
    // `Socket` (moved into the `AsyncFd`) is dropped, and `as_raw_fd` always returns that descriptor.
    unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1)
}

fn recv_once(fd: i32, v6: bool, buf: &mut [u8]) -> io::Result<Result<Received, DecodeError>> {
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
            return Ok(Err(DecodeError::IpHeader));
        };
        Ok(Ok(Received {
            src: IpAddr::V6(src),
            dst: IpAddr::V6(dst),
            ttl,
            payload: 0..len,
        }))
    } else {
        // The IPv4 header (with options, IHL) precedes the message on a raw IPv4 socket.
        Ok(Ipv4Header::parse(&buf[..len]).map(|(h, _)| Received {
            src: IpAddr::V4(h.src),
            dst: IpAddr::V4(h.dst),
            // The control message and the header agree; the header is the fallback.
            ttl: ttl.or(Some(h.ttl)),
            payload: h.header_len..h.total_len,
        }))
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
            let scope = if dst.is_multicast() || dst.is_unicast_link_local() {
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
