//! Accept under descriptor exhaustion: the proxy backs off instead of spinning, and serves again once
//! descriptors are free. Alone in its test binary, because it lowers this process's RLIMIT_NOFILE.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use proxy::Forwarding;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emfile_backs_off_and_recovers() {
    let b = Backend::spawn(Mode::Echo).await;
    let p = start(config(Forwarding::Splice), &[(b.addr, true)]);
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    ping(&mut c).await.unwrap();

    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // Client sockets are created first (connecting them needs no new descriptor), then the limit is lowered
    // to what is open now, so the proxy's accept(2) fails with EMFILE.
    let pending: Vec<socket2::Socket> = (0..3)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    let used = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    setrlimit(Resource::RLIMIT_NOFILE, used, hard).unwrap();
    let mut hog = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hog.push(f);
        if hog.len() > 100 {
            break;
        }
    }
    for s in &pending {
        s.connect(&p.addr.into()).unwrap();
    }
    // Pending clients sit in the backlog; accept fails with EMFILE, with back-off.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let errors = p.stats.accept_errors.load(Relaxed);
    assert!(errors >= 2, "accept was retried ({errors})");
    assert!(
        errors <= 30,
        "accept backed off instead of spinning ({errors} errors in 1.5 s)"
    );

    drop(hog);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    // Served again: the queued clients and a new one.
    for s in pending {
        s.set_nonblocking(true).unwrap();
        let mut c = TcpStream::from_std(s.into()).unwrap();
        ping(&mut c)
            .await
            .expect("queued client served after recovery");
    }
    let mut c2 = TcpStream::connect(p.addr).await.unwrap();
    ping(&mut c2).await.unwrap();
    drop((c, c2));
    p.stop().await;
}
