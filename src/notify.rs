//! systemd readiness protocol (`sd_notify`): READY, RELOADING (with MONOTONIC_USEC, which systemd 253+
//! requires), STOPPING, STATUS, and the WATCHDOG keep-alive task. Without `NOTIFY_SOCKET` everything is a no-op,
//! so the same binary runs under systemd, in a static pod or by hand.
//!
//! The environment is read once, at `Notifier::from_env`, and the notifier then carries the socket address and
//! watchdog interval itself: that keeps tests free of process-global environment changes. Message formatting
//! and the watchdog variables come from the sd-notify crate.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where notifications go, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<OsString>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC` / `WATCHDOG_PID`, as systemd sets them.
    pub fn from_env() -> Notifier {
        Notifier {
            socket: std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()),
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// Sends nothing.
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// An explicit socket (a path, or `@name` for the abstract namespace) and watchdog interval.
    pub fn new(socket: Option<impl Into<OsString>>, watchdog: Option<Duration>) -> Notifier {
        Notifier {
            socket: socket.map(Into::into),
            watchdog,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The interval systemd expects pings within (`WatchdogSec`), if the unit sets one.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref().and(self.watchdog)
    }

    /// Start-up finished: the VIP machinery and the proxy are running.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)])
    }

    /// A reload has begun; `ready` again when it is done (or refused).
    pub fn reloading(&self) -> io::Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        self.send(&[NotifyState::Reloading, NotifyState::monotonic_usec_now()?])
    }

    /// Shutdown has begun (priority 0 sent, proxy draining).
    pub fn stopping(&self) -> io::Result<()> {
        self.send(&[NotifyState::Stopping])
    }

    /// Free-form status line shown by `systemctl status`.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&[NotifyState::Status(status)])
    }

    pub fn watchdog_ping(&self) -> io::Result<()> {
        self.send(&[NotifyState::Watchdog])
    }

    /// Sends one datagram with every state, one per line.
    pub fn send(&self, states: &[NotifyState<'_>]) -> io::Result<()> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let mut msg = String::new();
        for s in states {
            msg.push_str(&s.to_string());
            msg.push('\n');
        }
        let addr = socket_addr(socket)?;
        let sock = UnixDatagram::unbound()?;
        sock.connect_addr(&addr)?;
        let sent = sock.send(msg.as_bytes())?;
        if sent != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "incomplete notification",
            ));
        }
        Ok(())
    }

    /// Pings the watchdog at half its interval while `alive()` holds; when it does not, pings stop and
    /// systemd restarts the service, which is the point. `None` when no watchdog is configured. A failed
    /// send is logged and retried at the next tick.
    pub fn spawn_watchdog(
        &self,
        alive: impl Fn() -> bool + Send + 'static,
        shutdown: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        let interval = self.watchdog_interval()?;
        let period = (interval / 2).max(Duration::from_millis(1));
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if !alive() {
                    tracing::warn!("not pinging the systemd watchdog: a task is not alive");
                    continue;
                }
                if let Err(e) = me.watchdog_ping() {
                    tracing::warn!(error = %e, "systemd watchdog ping failed");
                }
            }
        }))
    }
}

/// `@name` is an abstract socket (as systemd may hand out); anything else a path.
fn socket_addr(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        None => SocketAddr::from_pathname(std::path::Path::new(socket)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn temp_socket() -> (UnixDatagram, std::path::PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("vipd-notify-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (sock, path)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn disabled_is_a_no_op() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        n.ready("x").unwrap();
        n.reloading().unwrap();
        n.stopping().unwrap();
        assert_eq!(
            Notifier::new(None::<String>, Some(Duration::from_secs(1))).watchdog_interval(),
            None
        );
    }

    #[test]
    fn sends_each_state() {
        let (sock, path) = temp_socket();
        let n = Notifier::new(Some(&path), None);
        n.ready("VIP held").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=VIP held\n");
        n.reloading().unwrap();
        let msg = recv(&sock);
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: i128 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{msg:?}"));
        assert!(usec > 0);
        n.stopping().unwrap();
        assert_eq!(recv(&sock), "STOPPING=1\n");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn abstract_socket() {
        let name = format!("vipd-notify-test-{}", std::process::id());
        let addr = {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
        };
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Notifier::new(Some(format!("@{name}")), None)
            .stopping()
            .unwrap();
        assert_eq!(recv(&sock), "STOPPING=1\n");
    }

    #[test]
    fn missing_socket_is_an_error_not_a_panic() {
        let n = Notifier::new(Some("/nonexistent/vipd/notify.sock"), None);
        assert!(n.ready("x").is_err());
    }

    #[tokio::test]
    async fn watchdog_pings_while_alive_and_stops_when_not() {
        let (sock, path) = temp_socket();
        sock.set_nonblocking(true).unwrap();
        let n = Notifier::new(Some(&path), Some(Duration::from_millis(100)));
        let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let a = alive.clone();
        let stop = CancellationToken::new();
        let task = n
            .spawn_watchdog(
                move || a.load(std::sync::atomic::Ordering::SeqCst),
                stop.clone(),
            )
            .expect("watchdog configured");
        let count = |sock: &UnixDatagram| {
            let mut buf = [0u8; 64];
            let mut n = 0;
            while let Ok(len) = sock.recv(&mut buf) {
                assert_eq!(&buf[..len], b"WATCHDOG=1\n");
                n += 1;
            }
            n
        };
        let start = Instant::now();
        let mut pings = 0;
        while pings < 3 && start.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            pings += count(&sock);
        }
        assert!(pings >= 3, "only {pings} pings");
        alive.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        count(&sock); // a ping may have been in flight
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(count(&sock), 0, "no pings while not alive");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn no_watchdog_task_without_interval() {
        let n = Notifier::new(Some("/tmp/x"), None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(n
                .spawn_watchdog(|| true, CancellationToken::new())
                .is_none());
        });
    }
}
