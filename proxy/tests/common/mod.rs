//! Helpers shared by the proxy's integration tests: in-process backends on 127.0.0.1 and a proxy runner.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use proxy::{BackendState, Backends, Forwarding, Proxy, ProxyConfig, ProxyHandle, ProxyStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a test backend does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Echo until EOF, then close its write side.
    Echo,
    /// Send its own port (2 bytes, big endian), then echo.
    GreetEcho,
    /// Read until EOF, then answer with the byte count (8 bytes) and close.
    Count,
}

/// A backend server; `kill()` drops every connection it holds (and the listener).
pub struct Backend {
    pub addr: SocketAddr,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Backend {
    pub async fn spawn(mode: Mode) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (s, t) = (stop.clone(), tracker.clone());
        tracker.spawn(async move {
            loop {
                let (c, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    r = l.accept() => match r { Ok(c) => c, Err(_) => continue },
                };
                let s2 = s.clone();
                t.spawn(async move {
                    tokio::select! {
                        _ = s2.cancelled() => {}
                        _ = serve(c, mode, addr.port()) => {}
                    }
                });
            }
        });
        Self {
            addr,
            stop,
            tracker,
        }
    }

    pub async fn kill(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(mut c: TcpStream, mode: Mode, port: u16) {
    if mode == Mode::GreetEcho && c.write_all(&port.to_be_bytes()).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut count = 0u64;
    loop {
        match c.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                count += n as u64;
                if mode != Mode::Count && c.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    if mode == Mode::Count {
        let _ = c.write_all(&count.to_be_bytes()).await;
    }
    let _ = c.shutdown().await;
}

/// An address nothing listens on: connects to it are refused at once.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

pub fn states(list: &[(SocketAddr, bool)]) -> Backends {
    Arc::new(
        list.iter()
            .map(|&(addr, healthy)| BackendState { addr, healthy })
            .collect(),
    )
}

/// A running proxy and what a test needs to drive it.
pub struct Running {
    pub addr: SocketAddr,
    pub stats: Arc<ProxyStats>,
    pub handle: ProxyHandle,
    pub backends: watch::Sender<Backends>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl Running {
    pub fn set(&self, list: &[(SocketAddr, bool)]) {
        self.backends.send_replace(states(list));
    }

    /// Stops the proxy and waits for `run` to return (bounded).
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("proxy stops")
            .unwrap();
    }
}

pub fn config(forwarding: Forwarding) -> ProxyConfig {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.settings.connect_timeout = Duration::from_secs(2);
    // Short: tests that stop the proxy with clients still connected should not wait long.
    cfg.settings.drain_timeout = Duration::from_secs(1);
    cfg.settings.forwarding = forwarding;
    cfg
}

pub fn start(cfg: ProxyConfig, list: &[(SocketAddr, bool)]) -> Running {
    let (tx, rx) = watch::channel(states(list));
    let p = Proxy::bind(cfg, rx).unwrap();
    let (addr, stats, handle) = (p.local_addr(), p.stats(), p.handle());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(p.run(shutdown.clone()));
    Running {
        addr,
        stats,
        handle,
        backends: tx,
        shutdown,
        task,
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a transfer can be checked without storing it twice.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// FNV-1a over the stream: order-sensitive, enough to catch lost, duplicated or reordered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum(pub u64, pub u64);

impl Sum {
    pub fn new() -> Self {
        Sum(0xcbf29ce484222325, 0)
    }
    pub fn feed(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ x as u64).wrapping_mul(0x100000001b3);
        }
        self.1 += b.len() as u64;
    }
}

/// Sends `total` bytes through `addr` and reads the echo concurrently; returns (sent, received) sums.
pub async fn echo_transfer(addr: SocketAddr, total: usize) -> (Sum, Sum) {
    let c = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        let chunk = pattern(7, 1 << 20);
        let mut sum = Sum::new();
        let mut left = total;
        let mut i = 0usize;
        while left > 0 {
            // Varying sizes so chunk boundaries do not line up with pipe or buffer sizes.
            let n = left.min(1 + (i * 7919) % chunk.len());
            w.write_all(&chunk[..n]).await.unwrap();
            sum.feed(&chunk[..n]);
            left -= n;
            i += 1;
        }
        w.shutdown().await.unwrap();
        sum
    });
    let mut got = Sum::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.feed(&buf[..n]);
    }
    (writer.await.unwrap(), got)
}

/// Reads until EOF or error; true if the peer closed (EOF or reset) within `within`.
pub async fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// One round trip through an echo backend.
pub async fn ping(c: &mut TcpStream) -> std::io::Result<()> {
    c.write_all(b"ping").await?;
    let mut b = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut b))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    assert_eq!(&b, b"ping");
    Ok(())
}

/// Connects and reads a GreetEcho backend's port.
pub async fn connect_greet(addr: SocketAddr) -> (TcpStream, u16) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut b = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut b))
        .await
        .expect("greeting")
        .unwrap();
    (c, u16::from_be_bytes(b))
}

/// Polls `f` until true, for at most `within`.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// Stops proxy and backend once no session is left, then waits up to `settle` for the descriptor count
/// `fds()` to be back at `before`; `what` names the case in the failure.
pub async fn stop_and_check_fds(
    p: Running,
    b: Backend,
    (fds, before): (fn() -> usize, usize),
    settle: Duration,
    what: &str,
) {
    assert!(
        eventually(Duration::from_secs(10), || p.stats.active.load(Relaxed)
            == 0)
        .await
    );
    p.stop().await;
    b.kill().await;
    drop(b);
    assert!(
        eventually(settle, || fds() == before).await,
        "{what}: {before} sockets and pipes before, {} after",
        fds()
    );
}
