//! Socket options the proxy sets on both legs of a session: low latency (TCP_NODELAY) and dead-peer detection
//! (keepalive + TCP_USER_TIMEOUT), so a vanished apiserver or client does not pin a session forever. The client
//! leg inherits them all from the listener; the backend leg gets TCP_NODELAY at once and the rest once the
//! session is [`TUNE_AFTER`] old, so short sessions make one setsockopt call instead of six.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// First keepalive probe after this much silence.
pub(crate) const KEEPALIVE_TIME: Duration = Duration::from_secs(30);
/// Gap between keepalive probes.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel declares the peer dead.
pub(crate) const KEEPALIVE_RETRIES: u32 = 3;
/// Unacknowledged data older than this kills the connection. It must cover the keepalive schedule
/// (time + interval * retries), or it would cut keepalive short.
pub(crate) const USER_TIMEOUT: Duration = Duration::from_secs(60);

/// Applies the per-connection options. On a listening socket they are inherited by every accepted socket
/// (Linux clones the listener's TCP state), which saves six system calls per accepted connection.
pub(crate) fn tune(sock: SockRef<'_>) -> io::Result<()> {
    sock.set_tcp_nodelay(true)?;
    // Also turns SO_KEEPALIVE on.
    tune_late(sock)
}

/// Creates the listening socket. IP_FREEBIND lets every LB node listen on the VIP before it holds it.
/// `shared_port` sets SO_REUSEPORT, for one listener per proxy thread on the same port (the kernel hashes each
/// new connection to one of them). Only sockets of the same user can join such a group, as with HAProxy's
/// listeners; a port held by anyone else still fails the bind.
pub(crate) fn listener(
    bind: SocketAddr,
    freebind: bool,
    backlog: i32,
    shared_port: bool,
) -> io::Result<std::net::TcpListener> {
    let sock = Socket::new(
        Domain::for_address(bind),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    if shared_port {
        sock.set_reuse_port(true)?;
    }
    if freebind {
        match bind {
            SocketAddr::V4(_) => sock.set_freebind_v4(true)?,
            SocketAddr::V6(_) => sock.set_freebind_v6(true)?,
        }
    }
    if bind.is_ipv6() {
        // An explicit v6 address serves v6 only; a wildcard [::] keeps the kernel default (dual stack).
        if !bind.ip().is_unspecified() {
            sock.set_only_v6(true)?;
        }
    }
    tune(SockRef::from(&sock))?;
    sock.bind(&bind.into())?;
    sock.listen(backlog)?;
    Ok(sock.into())
}

/// A fresh non-blocking socket for a backend connection, with TCP_NODELAY only: the dead-peer options come
/// from [`tune_late`] once the session has lived [`TUNE_AFTER`], so the short sessions that make up most of a
/// connection-heavy load skip five system calls (HAProxy sets SO_KEEPALIVE alone, with the kernel's timings).
pub(crate) fn backend_socket(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_tcp_nodelay(true)?;
    Ok(sock)
}

/// Age at which a session's backend socket gets keepalive and TCP_USER_TIMEOUT. Neither can act sooner
/// anyway: the first keepalive probe goes out after [`KEEPALIVE_TIME`] of silence, and the kernel applies a
/// user timeout set later to data already unacknowledged. So a dead backend is detected at most this much
/// later than with the options set at connect time.
pub(crate) const TUNE_AFTER: Duration = Duration::from_secs(10);

/// The dead-peer options of [`tune`] without TCP_NODELAY, for a backend socket that outlived [`TUNE_AFTER`].
pub(crate) fn tune_late(sock: SockRef<'_>) -> io::Result<()> {
    let ka = TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    sock.set_tcp_keepalive(&ka)?;
    sock.set_tcp_user_timeout(Some(USER_TIMEOUT))
}

/// Starts a non-blocking connect; true if it completed at once.
pub(crate) fn start_connect(sock: &Socket, addr: SocketAddr) -> io::Result<bool> {
    match sock.connect(&addr.into()) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes the next close send a RST instead of a FIN: the way a reset is passed on to the other side.
pub(crate) fn reset_on_close<S: std::os::fd::AsFd>(s: &S) {
    let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options that find a dead peer: keepalive with our timings, and the user timeout.
    fn assert_dead_peer_options(r: &SockRef<'_>) {
        assert!(r.keepalive().unwrap());
        assert_eq!(r.tcp_keepalive_time().unwrap(), KEEPALIVE_TIME);
        assert_eq!(r.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(r.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
        assert_eq!(r.tcp_user_timeout().unwrap(), Some(USER_TIMEOUT));
    }

    /// The accept path relies on options being inherited from the listener; if a kernel stops doing that,
    /// this test says so.
    #[test]
    fn accepted_socket_inherits_listener_options() {
        let l = listener("127.0.0.1:0".parse().unwrap(), false, 16, false).unwrap();
        let addr = l.local_addr().unwrap();
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().unwrap();
        let r = SockRef::from(&s);
        assert!(r.tcp_nodelay().unwrap());
        assert_dead_peer_options(&r);
    }

    #[test]
    fn late_tuning_sets_the_dead_peer_options() {
        let s = backend_socket("127.0.0.1:9".parse().unwrap()).unwrap();
        let r = SockRef::from(&s);
        assert!(r.tcp_nodelay().unwrap());
        assert!(!r.keepalive().unwrap());
        tune_late(SockRef::from(&s)).unwrap();
        assert_dead_peer_options(&r);
    }

    #[test]
    fn freebind_allows_a_foreign_address() {
        // 192.0.2.1 is not on this host; without IP_FREEBIND bind would fail with EADDRNOTAVAIL.
        let l = listener("192.0.2.1:0".parse().unwrap(), true, 16, false).unwrap();
        assert_eq!(l.local_addr().unwrap().ip().to_string(), "192.0.2.1");
        assert!(listener("192.0.2.1:0".parse().unwrap(), false, 16, false).is_err());
    }
}
