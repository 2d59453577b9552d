//! Runs the proxy alone for benchmarks (bench/proxy.sh), without the daemon.
//!
//! Usage: bench-proxy [--threads N] [--own-threads] [--copy] LISTEN=BACKEND[,BACKEND...] ...
//! One proxy per LISTEN=BACKENDS pair, all in one process, so one /proc/PID/stat covers them all.
//! `--threads N`: N tokio workers (default 2, as the daemon on 2 cores), the proxy on that runtime (its default,
//! `threads = 0`). `--own-threads`: N threads of the proxy's own instead, each with its listener and event loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proxy::{BackendState, Forwarding, Proxy, ProxyConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn usage() -> ! {
    eprintln!(
        "usage: bench-proxy [--threads N] [--own-threads] [--copy] LISTEN=BACKEND[,BACKEND...] ..."
    );
    std::process::exit(2)
}

fn main() {
    let mut threads = 2usize;
    let mut in_runtime = true;
    let mut forwarding = Forwarding::Splice;
    let mut maps: Vec<(SocketAddr, Vec<SocketAddr>)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--copy" => forwarding = Forwarding::Copy,
            "--own-threads" => in_runtime = false,
            m => {
                let Some((l, bs)) = m.split_once('=') else {
                    usage()
                };
                let listen = l.parse().unwrap_or_else(|_| usage());
                let backends = bs
                    .split(',')
                    .map(|b| b.parse().unwrap_or_else(|_| usage()))
                    .collect();
                maps.push((listen, backends));
            }
        }
    }
    if maps.is_empty() {
        usage();
    }
    // With its own threads the proxy needs the runtime only for its start, drain and health watch.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(if in_runtime { threads } else { 1 })
        // Named so that a profile (bench/proxy-split.sh) tells its threads from the origin's.
        .thread_name("bench-proxy")
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut senders = Vec::new();
        for (listen, backends) in maps {
            let mut cfg = ProxyConfig::new(listen);
            cfg.settings.forwarding = forwarding;
            cfg.settings.max_connections = 4000;
            cfg.threads = if in_runtime { 0 } else { threads };
            cfg.settings.drain_timeout = Duration::from_secs(1);
            let list = backends
                .into_iter()
                .map(|addr| BackendState {
                    addr,
                    healthy: true,
                })
                .collect();
            let (tx, rx) = watch::channel(Arc::new(list));
            senders.push(tx);
            let p = Proxy::bind(cfg, rx).unwrap_or_else(|e| {
                eprintln!("bench-proxy: bind {listen}: {e}");
                std::process::exit(1)
            });
            tasks.push(tokio::spawn(p.run(stop.clone())));
        }
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
        drop(senders);
    });
}
