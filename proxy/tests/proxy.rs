//! Behaviour of the proxy on loopback with in-process backends: forwarding (both paths), half-close, resets,
//! retries, panic mode, balancing, health changes, idle timeout, max connections and draining.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::*;
use proxy::{Balance, Forwarding, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MODES: [Forwarding; 2] = [Forwarding::Splice, Forwarding::Copy];

/// One healthy backend of `mode` behind a proxy with `cfg`.
async fn serve(mode: Mode, cfg: ProxyConfig) -> (Backend, Running) {
    let b = Backend::spawn(mode).await;
    let p = start(cfg, &[(b.addr, true)]);
    (b, p)
}

/// `fut`'s output; it must come within 10 s.
async fn in_time<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("within 10 s")
}

/// Closes `s` with a reset (SO_LINGER 0) instead of a FIN.
fn reset<S: std::os::fd::AsFd>(s: S) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

#[track_caller]
fn assert_reset(r: std::io::Result<usize>, mode: Forwarding) {
    assert_eq!(
        r.map_err(|e| e.kind()).unwrap_err(),
        std::io::ErrorKind::ConnectionReset,
        "{mode:?}"
    );
}

async fn large_echo(mode: Forwarding) {
    let (b, p) = serve(Mode::Echo, config(mode)).await;
    let total = 64 << 20;
    let (sent, got) = echo_transfer(p.addr, total).await;
    assert_eq!(sent.1, total as u64);
    assert_eq!(sent, got, "echo must be byte-exact");
    let bs = p.stats.backend(b.addr).unwrap();
    assert!(eventually(Duration::from_secs(5), || bs.active.load(Relaxed) == 0).await);
    assert_eq!(bs.bytes_to_backend.load(Relaxed), total as u64);
    assert_eq!(bs.bytes_to_client.load(Relaxed), total as u64);
    assert_eq!(p.stats.splice_fallbacks.load(Relaxed), 0);
    // Bulk moves to splice on that path (both directions), never on the copy path.
    let spliced = p.stats.spliced_directions.load(Relaxed);
    match mode {
        Forwarding::Splice => assert_eq!(spliced, 2),
        Forwarding::Copy => assert_eq!(spliced, 0),
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_echo_splice() {
    large_echo(Forwarding::Splice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_echo_copy() {
    large_echo(Forwarding::Copy).await;
}

#[tokio::test]
async fn small_transfers_both_paths() {
    for mode in MODES {
        let (_b, p) = serve(Mode::Echo, config(mode)).await;
        for len in [0usize, 1, 2, 100, 1460, 4096, 65535, 65537] {
            let (sent, got) = echo_transfer(p.addr, len).await;
            assert_eq!(sent, got, "{mode:?} len {len}");
        }
        // Request/response on one connection: every small message comes back before the next is sent.
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        for i in 1..200usize {
            let msg = pattern(i as u64, i);
            c.write_all(&msg).await.unwrap();
            let mut back = vec![0u8; i];
            c.read_exact(&mut back).await.unwrap();
            assert_eq!(back, msg);
        }
        p.stop().await;
    }
}

#[tokio::test]
async fn half_close_client_side() {
    // The client's FIN reaches the backend, whose answer still flows back afterwards.
    for mode in MODES {
        let (_b, p) = serve(Mode::Count, config(mode)).await;
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        let data = pattern(3, 300_000);
        c.write_all(&data).await.unwrap();
        c.shutdown().await.unwrap();
        let mut ans = Vec::new();
        in_time(c.read_to_end(&mut ans)).await.unwrap();
        assert_eq!(ans, 300_000u64.to_be_bytes(), "{mode:?}");
        p.stop().await;
    }
}

#[tokio::test]
async fn half_close_backend_side() {
    // The backend closes its write side first; the client keeps sending and the backend keeps receiving.
    for mode in MODES {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let baddr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"hello").await.unwrap();
            s.shutdown().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let p = start(config(mode), &[(baddr, true)]);
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        let mut hello = Vec::new();
        in_time(c.read_to_end(&mut hello)).await.unwrap();
        assert_eq!(hello, b"hello");
        let data = pattern(5, 200_000);
        c.write_all(&data).await.unwrap();
        c.shutdown().await.unwrap();
        let got = in_time(server).await.unwrap();
        assert_eq!(got, data, "{mode:?}");
        p.stop().await;
    }
}

#[tokio::test]
async fn reset_is_propagated_both_ways() {
    for mode in MODES {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let baddr = l.local_addr().unwrap();
        let p = start(config(mode), &[(baddr, true)]);

        // Backend resets: the client sees a reset, not an orderly EOF.
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        c.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        reset(s);
        let mut buf = [0u8; 8];
        assert_reset(in_time(c.read(&mut buf)).await, mode);

        // Client resets: the backend sees a reset.
        let c = TcpStream::connect(p.addr).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        reset(c);
        assert_reset(in_time(s.read(&mut buf)).await, mode);
        p.stop().await;
    }
}

#[tokio::test]
async fn dead_backend_is_retried_elsewhere() {
    let dead = dead_addr().await;
    let b = Backend::spawn(Mode::Echo).await;
    let mut cfg = config(Forwarding::Splice);
    cfg.settings.balance = Balance::RoundRobin;
    cfg.settings.retries = 1;
    let p = start(cfg, &[(dead, true), (b.addr, true)]);
    for _ in 0..10 {
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        ping(&mut c)
            .await
            .expect("a dead backend never fails a client while another is up");
    }
    let d = p.stats.backend(dead).unwrap();
    let live = p.stats.backend(b.addr).unwrap();
    assert_eq!(
        d.connect_failures.load(Relaxed),
        5,
        "roundrobin sends every other client to the dead one"
    );
    assert_eq!(live.retries.load(Relaxed), 5);
    assert_eq!(live.total.load(Relaxed), 10);
    assert_eq!(d.total.load(Relaxed), 0);
    p.stop().await;
}

#[tokio::test]
async fn backend_death_mid_stream_closes_client() {
    for mode in MODES {
        let (b, p) = serve(Mode::Echo, config(mode)).await;
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        ping(&mut c).await.unwrap();
        b.kill().await;
        assert!(
            closed_within(&mut c, Duration::from_secs(10)).await,
            "{mode:?}: client sees the close"
        );
        // Half-close semantics: the session ends once the client closes too.
        drop(c);
        assert!(eventually(Duration::from_secs(5), || p.stats.active.load(Relaxed) == 0).await);
        p.stop().await;
    }
}

#[tokio::test]
async fn panic_mode_then_all_refuse() {
    let dead = dead_addr().await;
    let b = Backend::spawn(Mode::Echo).await;
    let p = start(
        config(Forwarding::Splice),
        &[(dead, false), (b.addr, false)],
    );
    // Nothing healthy: all are tried, the live one serves.
    for _ in 0..4 {
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        ping(&mut c).await.unwrap();
    }
    assert!(p.stats.panic_picks.load(Relaxed) >= 4);
    // Everything refuses: the client is closed promptly, and that is counted.
    b.kill().await;
    let dead2 = dead_addr().await;
    let before = p
        .stats
        .backend(dead)
        .map_or(0, |s| s.connect_failures.load(Relaxed));
    p.set(&[(dead, false), (dead2, true)]);
    let t0 = Instant::now();
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(10)).await);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(p.stats.no_backend.load(Relaxed), 1);
    // retries = 3: four attempts in all, spread over both.
    let fails = p
        .stats
        .backend(dead)
        .unwrap()
        .connect_failures
        .load(Relaxed)
        - before
        + p.stats
            .backend(dead2)
            .unwrap()
            .connect_failures
            .load(Relaxed);
    assert_eq!(fails, 4);
    // No backend at all: closed as well.
    p.set(&[]);
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(10)).await);
    p.stop().await;
}

#[tokio::test]
async fn roundrobin_distribution() {
    let bs = [
        Backend::spawn(Mode::GreetEcho).await,
        Backend::spawn(Mode::GreetEcho).await,
        Backend::spawn(Mode::GreetEcho).await,
    ];
    let mut cfg = config(Forwarding::Splice);
    cfg.settings.balance = Balance::RoundRobin;
    let p = start(cfg, &bs.iter().map(|b| (b.addr, true)).collect::<Vec<_>>());
    let mut ports = Vec::new();
    for _ in 0..9 {
        let (_c, port) = connect_greet(p.addr).await;
        ports.push(port);
    }
    // A strict cycle: every window of three hits each backend once.
    for w in ports.chunks(3) {
        let mut w = w.to_vec();
        w.sort();
        let mut all: Vec<u16> = bs.iter().map(|b| b.addr.port()).collect();
        all.sort();
        assert_eq!(w, all, "{ports:?}");
    }
    p.stop().await;
}

#[tokio::test]
async fn leastconn_distribution() {
    let bs = [
        Backend::spawn(Mode::GreetEcho).await,
        Backend::spawn(Mode::GreetEcho).await,
        Backend::spawn(Mode::GreetEcho).await,
    ];
    let p = start(
        config(Forwarding::Splice),
        &bs.iter().map(|b| (b.addr, true)).collect::<Vec<_>>(),
    );
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(connect_greet(p.addr).await);
    }
    for b in &bs {
        assert_eq!(
            conns
                .iter()
                .filter(|(_, port)| *port == b.addr.port())
                .count(),
            2,
            "even spread"
        );
    }
    // Free both sessions of one backend: the next two clients go there.
    let target = bs[1].addr.port();
    conns.retain(|(_, port)| *port != target);
    let bst = p.stats.backend(bs[1].addr).unwrap();
    assert!(eventually(Duration::from_secs(5), || bst.active.load(Relaxed) == 0).await);
    for _ in 0..2 {
        let (c, port) = connect_greet(p.addr).await;
        assert_eq!(port, target);
        conns.push((c, port));
    }
    p.stop().await;
}

#[tokio::test]
async fn unhealthy_backend_gets_no_new_connections() {
    let a = Backend::spawn(Mode::GreetEcho).await;
    let b = Backend::spawn(Mode::GreetEcho).await;
    let mut cfg = config(Forwarding::Splice);
    cfg.settings.balance = Balance::RoundRobin;
    let p = start(cfg, &[(a.addr, true), (b.addr, true)]);
    let mut on_a = None;
    for _ in 0..2 {
        let (c, port) = connect_greet(p.addr).await;
        if port == a.addr.port() {
            on_a = Some(c);
        }
    }
    let mut on_a = on_a.expect("roundrobin used a");
    p.set(&[(a.addr, false), (b.addr, true)]);
    for _ in 0..10 {
        let (_c, port) = connect_greet(p.addr).await;
        assert_eq!(port, b.addr.port());
    }
    // The open session stays (shutdown_sessions_on_backend_down is off).
    ping(&mut on_a).await.unwrap();
    // Removing a backend from the list drains it the same way.
    p.set(&[(b.addr, true)]);
    ping(&mut on_a).await.unwrap();
    p.stop().await;
}

#[tokio::test]
async fn shutdown_sessions_on_backend_down() {
    let a = Backend::spawn(Mode::GreetEcho).await;
    let b = Backend::spawn(Mode::GreetEcho).await;
    let mut cfg = config(Forwarding::Splice);
    cfg.settings.balance = Balance::RoundRobin;
    let p = start(cfg, &[(a.addr, true), (b.addr, true)]);
    let (c1, p1) = connect_greet(p.addr).await;
    let (c2, p2) = connect_greet(p.addr).await;
    assert_ne!(p1, p2);
    let (mut on_a, mut on_b) = if p1 == a.addr.port() {
        (c1, c2)
    } else {
        (c2, c1)
    };
    // Turned on live.
    let mut s = p.handle.settings();
    s.shutdown_sessions_on_backend_down = true;
    p.handle.update(s);
    p.set(&[(a.addr, false), (b.addr, true)]);
    assert!(
        closed_within(&mut on_a, Duration::from_secs(10)).await,
        "a's session is closed"
    );
    ping(&mut on_b).await.expect("b's session is untouched");
    assert_eq!(p.stats.killed.load(Relaxed), 1);
    // A removed backend goes the same way.
    p.set(&[(a.addr, true)]);
    assert!(closed_within(&mut on_b, Duration::from_secs(10)).await);
    let mut c3 = connect_greet(p.addr).await.0;
    ping(&mut c3).await.unwrap();
    p.stop().await;
}

#[tokio::test]
async fn idle_timeout_closes_quiet_sessions() {
    let mut cfg = config(Forwarding::Splice);
    cfg.settings.idle_timeout = Some(Duration::from_millis(300));
    let (_b, p) = serve(Mode::Echo, cfg).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    // Activity keeps it open past the timeout.
    for _ in 0..6 {
        ping(&mut c).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t0 = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(10)).await);
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "not closed before the timeout"
    );
    assert_eq!(p.stats.idle_timeouts.load(Relaxed), 1);
    // None turns it off, live.
    let mut s = p.handle.settings();
    s.idle_timeout = None;
    p.handle.update(s);
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    ping(&mut c).await.unwrap();
    assert!(!closed_within(&mut c, Duration::from_millis(800)).await);
    p.stop().await;
}

#[tokio::test]
async fn max_connections_refuses_extra_clients() {
    let mut cfg = config(Forwarding::Splice);
    cfg.settings.max_connections = 3;
    let (_b, p) = serve(Mode::Echo, cfg).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        ping(&mut c).await.unwrap();
        held.push(c);
    }
    let mut extra = TcpStream::connect(p.addr).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(5)).await);
    assert_eq!(p.stats.refused.load(Relaxed), 1);
    // Room again once one leaves.
    held.pop();
    assert!(eventually(Duration::from_secs(5), || p.stats.active.load(Relaxed) == 2).await);
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    ping(&mut c).await.unwrap();
    p.stop().await;
}

#[tokio::test]
async fn drain_lets_sessions_finish_then_forces() {
    let mut cfg = config(Forwarding::Splice);
    cfg.settings.drain_timeout = Duration::from_millis(1500);
    let (_b, p) = serve(Mode::Echo, cfg).await;
    let mut inflight = TcpStream::connect(p.addr).await.unwrap();
    ping(&mut inflight).await.unwrap();
    let mut finishing = TcpStream::connect(p.addr).await.unwrap();
    ping(&mut finishing).await.unwrap();

    p.shutdown.cancel();
    let t0 = Instant::now();
    // New clients are refused once the listener is gone.
    assert!(
        eventually(Duration::from_secs(5), || std::net::TcpStream::connect(
            p.addr
        )
        .is_err())
        .await
    );
    // In-flight sessions keep working during the drain; one finishes on its own.
    ping(&mut inflight).await.unwrap();
    ping(&mut finishing).await.unwrap();
    finishing.shutdown().await.unwrap();
    assert!(closed_within(&mut finishing, Duration::from_secs(5)).await);
    // The other is closed when the drain expires, and run() returns.
    assert!(closed_within(&mut inflight, Duration::from_secs(10)).await);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "closed only at the drain deadline ({waited:?})"
    );
    in_time(p.task).await.unwrap();
    assert_eq!(p.stats.killed.load(Relaxed), 1);
    assert_eq!(p.stats.active.load(Relaxed), 0);
}

#[tokio::test]
async fn drain_returns_early_when_sessions_end() {
    let mut cfg = config(Forwarding::Splice);
    cfg.settings.drain_timeout = Duration::from_secs(30);
    let (_b, p) = serve(Mode::Echo, cfg).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    ping(&mut c).await.unwrap();
    p.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(c);
    let t0 = Instant::now();
    in_time(p.task).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn connect_timeout_then_retry_elsewhere() {
    // A backend that takes no new connection: its accept queue is full, so the kernel drops further SYNs and
    // a connect hangs (the way a dead host behaves), until connect_timeout.
    let stuck = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stuck
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    stuck.listen(0).unwrap();
    let stuck_addr = stuck.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&stuck_addr.into());
        fillers.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let b = Backend::spawn(Mode::Echo).await;
    let mut cfg = config(Forwarding::Splice);
    cfg.settings.balance = Balance::RoundRobin;
    cfg.settings.connect_timeout = Duration::from_millis(300);
    cfg.settings.retries = 1;
    let p = start(cfg, &[(stuck_addr, true), (b.addr, true)]);
    for _ in 0..2 {
        let t0 = Instant::now();
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        ping(&mut c).await.expect("served by the other backend");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
    let s = p.stats.backend(stuck_addr).unwrap();
    assert_eq!(
        s.connect_failures.load(Relaxed),
        1,
        "one client of two went to the stuck backend first"
    );
    assert_eq!(s.total.load(Relaxed), 0);
    assert_eq!(p.stats.backend(b.addr).unwrap().retries.load(Relaxed), 1);
    p.stop().await;
    drop(fillers);
}

#[tokio::test]
async fn every_thread_setting_serves_drains_and_closes_its_listeners() {
    // 0: on the test's runtime; 1: one thread of the proxy's own; 3: three, each with its own listener on the
    // same port. Every client is served whichever listener the kernel hands it to, sessions still open at
    // the stop are closed after the drain, and no listener is left accepting.
    for threads in [0, 1, 3] {
        let mut cfg = config(Forwarding::Splice);
        cfg.threads = threads;
        let (_b, p) = serve(Mode::Echo, cfg).await;
        let mut held = Vec::new();
        for _ in 0..40 {
            let mut c = TcpStream::connect(p.addr).await.unwrap();
            ping(&mut c).await.unwrap();
            held.push(c);
        }
        assert_eq!(p.stats.accepted.load(Relaxed), 40, "threads {threads}");
        let (addr, stats) = (p.addr, p.stats.clone());
        p.stop().await;
        assert_eq!(stats.active.load(Relaxed), 0, "threads {threads}");
        assert!(
            stats.killed.load(Relaxed) >= 1,
            "threads {threads}: forced after the drain"
        );
        for mut c in held {
            assert!(closed_within(&mut c, Duration::from_secs(5)).await);
        }
        let refused = TcpStream::connect(addr).await;
        assert!(
            refused.is_err(),
            "threads {threads}: a listener is still open"
        );
    }
}
