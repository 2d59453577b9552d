//! Many concurrent sessions, then no descriptor left behind. Alone in its test binary, because it counts
//! /proc/self/fd and a parallel test would open descriptors of its own.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use proxy::Forwarding;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_sessions_leak_no_fd() {
    // 500 clients hold four sockets each across client, proxy and backend, plus pipes.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    for mode in [Forwarding::Splice, Forwarding::Copy] {
        let before = fds();
        let b = Backend::spawn(Mode::Echo).await;
        let p = start(config(mode), &[(b.addr, true)]);
        let n = 500;
        // All connected at once, then all transfer at once.
        let mut conns = Vec::new();
        for _ in 0..n {
            conns.push(TcpStream::connect(p.addr).await.unwrap());
        }
        let mut tasks = Vec::new();
        for (i, mut c) in conns.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let msg = pattern(i as u64, 1000 + i * 37);
                c.write_all(&msg).await.unwrap();
                c.shutdown().await.unwrap();
                let mut back = Vec::new();
                c.read_to_end(&mut back).await.unwrap();
                assert_eq!(back, msg);
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("transfer in time")
                .unwrap();
        }
        assert_eq!(p.stats.accepted.load(Relaxed), n as u64);
        assert_eq!(
            p.stats.backend(b.addr).unwrap().total.load(Relaxed),
            n as u64
        );
        stop_and_check_fds(
            p,
            b,
            (fds, before),
            Duration::from_secs(5),
            &format!("{mode:?}"),
        )
        .await;
    }
}
