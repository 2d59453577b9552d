//! Gratuitous ARP / unsolicited NA: a send-only AF_PACKET socket per interface.
//!
//! Protocol 0 means the kernel never delivers a frame to this socket, so it needs no reader and never fills a
//! receive queue. The frames themselves come from `proto::frames`.
use std::io;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

#[derive(Debug)]
pub(crate) struct AnnounceSocket {
    sock: Socket,
    addr: SockAddr,
}

impl AnnounceSocket {
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        sock.set_nonblocking(true)?;
        Ok(AnnounceSocket {
            sock,
            addr: link_addr(ifindex)?,
        })
    }

    /// Send one whole Ethernet frame out of the interface. Non-blocking: a full queue is an error the caller
    /// counts, never a stall of the driver.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = self.sock.send_to(frame, &self.addr)?;
        if n != frame.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
        }
        Ok(())
    }
}

/// A `sockaddr_ll` naming the interface; with a SOCK_RAW packet socket the frame carries its own Ethernet
/// header, so only the family and the interface index matter.
#[allow(unsafe_code)]
fn link_addr(ifindex: u32) -> io::Result<SockAddr> {
    let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::other("ifindex out of range"))?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is a plain C struct smaller than `sockaddr_storage` (view_as asserts the size), and
    // the storage is zero-initialised, a valid value for every field.
    let ll = unsafe { storage.view_as::<nix::libc::sockaddr_ll>() };
    ll.sll_family = nix::libc::AF_PACKET as u16;
    ll.sll_ifindex = ifindex;
    ll.sll_halen = 6;
    let len = std::mem::size_of::<nix::libc::sockaddr_ll>() as socket2::socklen_t;
    // SAFETY: the storage holds an initialised `sockaddr_ll` of exactly `len` bytes with family AF_PACKET.
    Ok(unsafe { SockAddr::new(storage, len) })
}
