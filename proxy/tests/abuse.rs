//! Abusive clients, bounded: connections held up to `max_connections` (further ones are refused fast and
//! counted while the held ones keep flowing), clients that trickle a byte a second (one session each, no
//! more), and a storm of connections opened and reset (no session and no descriptor left behind).
//! Alone in its test binary, because it counts /proc/self/fd and raises RLIMIT_NOFILE; the tests take turns
//! for the same reason. Together about 20 s on a loaded machine.

mod common;

use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::*;
use proxy::Forwarding;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The tests count descriptors of the whole process, so they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Distinct sockets and pipes open in this process: what sessions hold. Other descriptors are left out and
/// duplicates counted once, since the runtime of a test waiting for its turn has descriptors of its own
/// (epoll, eventfd, a duplicate of tokio's signal socket).
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| l.starts_with("socket:") || l.starts_with("pipe:"))
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Raises the soft descriptor limit to the hard one (20,000 in the sandbox); returns it.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    hard
}

/// Closes with a RST instead of a FIN.
fn reset(c: TcpStream) {
    let _ = socket2::SockRef::from(&c.as_fd()).set_linger(Some(Duration::ZERO));
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_proxy_refuses_fast_and_keeps_serving_the_held_sessions() {
    let _turn = SERIAL.lock().await;
    let limit = raise_fd_limit();
    // Four descriptors per held session live in this process (client, both proxy legs, backend), plus the
    // refused clients: sized well under the limit.
    let held = 2000usize
        .min((limit as usize).saturating_sub(1000) / 5)
        .max(8);
    let extra = 300usize;
    let before = fds();
    let b = Backend::spawn(Mode::Echo).await;
    let mut cfg = config(Forwarding::Splice);
    cfg.settings.max_connections = held;
    let p = start(cfg, &[(b.addr, true)]);

    let mut conns = Vec::with_capacity(held);
    for _ in 0..held {
        conns.push(TcpStream::connect(p.addr).await.unwrap());
    }
    // Every held session is established end to end.
    let conns = ping_all(conns).await;
    assert!(
        eventually(Duration::from_secs(10), || p.stats.active.load(Relaxed)
            == held as u64)
        .await
    );

    // While the extra clients are refused, the held sessions keep flowing.
    let traffic = tokio::spawn(async move {
        let mut conns = conns;
        for _ in 0..3 {
            conns = ping_all(conns).await;
        }
        conns
    });
    let mut slowest = Duration::ZERO;
    for _ in 0..extra {
        let t = Instant::now();
        // The reset can beat the connect's own completion check, which then reports it.
        match TcpStream::connect(p.addr).await {
            Ok(mut c) => assert!(
                closed_within(&mut c, Duration::from_secs(5)).await,
                "an extra client is closed, not left waiting"
            ),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
        slowest = slowest.max(t.elapsed());
    }
    let conns = tokio::time::timeout(Duration::from_secs(60), traffic)
        .await
        .expect("held sessions flow while the proxy is full")
        .unwrap();
    assert!(
        slowest < Duration::from_secs(2),
        "refusal is immediate (slowest took {slowest:?})"
    );
    assert_eq!(p.stats.refused.load(Relaxed), extra as u64);
    assert_eq!(p.stats.accepted.load(Relaxed), (held + extra) as u64);
    let bs = p.stats.backend(b.addr).unwrap();
    assert_eq!(
        bs.total.load(Relaxed),
        held as u64,
        "refused clients never reach a backend"
    );

    // Room again once sessions end.
    drop(conns);
    assert!(
        eventually(Duration::from_secs(20), || p.stats.active.load(Relaxed)
            == 0)
        .await
    );
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    ping(&mut c).await.unwrap();
    drop(c);
    finish(p, b, before).await;
}

/// One round trip on every connection, all at once.
async fn ping_all(conns: Vec<TcpStream>) -> Vec<TcpStream> {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                ping(&mut c).await.expect("held session answers");
                c
            })
        })
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        back.push(t.await.unwrap());
    }
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_clients_hold_one_session_each() {
    let _turn = SERIAL.lock().await;
    raise_fd_limit();
    let clients = 100usize;
    let bytes = 5usize;
    let before = fds();
    let b = Backend::spawn(Mode::Echo).await;
    let p = start(config(Forwarding::Splice), &[(b.addr, true)]);
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(TcpStream::connect(p.addr).await.unwrap());
    }
    assert!(
        eventually(Duration::from_secs(10), || p.stats.active.load(Relaxed)
            == clients as u64)
        .await
    );
    let mut settled = None;
    for i in 0..bytes {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // One byte from every client; each comes back on its own, not held for more.
        for c in conns.iter_mut() {
            c.write_all(&[i as u8]).await.unwrap();
        }
        for c in conns.iter_mut() {
            let mut one = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut one))
                .await
                .expect("the trickled byte is forwarded at once")
                .unwrap();
            assert_eq!(one[0], i as u8);
        }
        assert_eq!(
            p.stats.active.load(Relaxed),
            clients as u64,
            "one session per client"
        );
        // Every session is connected end to end after the first byte; from then on nothing is opened.
        let now = fds();
        assert_eq!(
            *settled.get_or_insert(now),
            now,
            "no descriptor per trickled byte"
        );
    }
    let bs = p.stats.backend(b.addr).unwrap();
    assert_eq!(
        bs.total.load(Relaxed),
        clients as u64,
        "one backend connection per client"
    );
    assert_eq!(bs.bytes_to_backend.load(Relaxed), (clients * bytes) as u64);
    assert_eq!(p.stats.accepted.load(Relaxed), clients as u64);
    assert_eq!(
        p.stats.spliced_directions.load(Relaxed),
        0,
        "single bytes are copied"
    );
    drop(conns);
    assert!(
        eventually(Duration::from_secs(10), || p.stats.active.load(Relaxed)
            == 0)
        .await
    );
    finish(p, b, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_reset_storm_leaves_nothing_behind() {
    let _turn = SERIAL.lock().await;
    raise_fd_limit();
    let total = 3000usize;
    let batch = 150usize;
    let before = fds();
    let b = Backend::spawn(Mode::Echo).await;
    let p = start(config(Forwarding::Splice), &[(b.addr, true)]);
    let addr = p.addr;
    let mut done = 0usize;
    while done < total {
        let tasks: Vec<_> = (done..(done + batch).min(total))
            .map(|i| {
                tokio::spawn(async move {
                    // Refused connects do not happen here (no limit is set); a reset may race the accept.
                    let Ok(mut c) = TcpStream::connect(addr).await else {
                        return;
                    };
                    match i % 3 {
                        // Reset at once, maybe before the proxy even accepted.
                        0 => {}
                        // Reset with a request in flight.
                        1 => {
                            let _ = c.write_all(b"half a request").await;
                        }
                        // Reset an established session after a round trip.
                        _ => {
                            let _ = ping(&mut c).await;
                        }
                    }
                    reset(c);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        done += batch;
    }
    assert!(
        eventually(Duration::from_secs(20), || p.stats.active.load(Relaxed)
            == 0)
        .await,
        "{} sessions left",
        p.stats.active.load(Relaxed)
    );
    let bs = p.stats.backend(b.addr).unwrap();
    assert!(eventually(Duration::from_secs(10), || bs.active.load(Relaxed) == 0).await);
    assert!(p.stats.accepted.load(Relaxed) >= (total as u64) * 9 / 10);
    // Still serving afterwards.
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    ping(&mut c).await.unwrap();
    drop(c);
    finish(p, b, before).await;
}

/// Stops proxy and backend and checks that every descriptor opened since `before` is closed.
async fn finish(p: Running, b: Backend, before: usize) {
    stop_and_check_fds(p, b, (fds, before), Duration::from_secs(10), "abuse").await;
}
