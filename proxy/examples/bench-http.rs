//! A tiny HTTP/1.1 origin for benchmarks (bench/proxy.sh): answers every request with a 2-byte body, keeps the
//! connection alive unless the request says `Connection: close`. Fast enough that the proxy, not the origin,
//! is what a wrk run measures.
//!
//! Usage: bench-http LISTEN [THREADS]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEEP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
const CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok";

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("bench-http")
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = TcpListener::bind(&listen).await.unwrap();
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                continue;
            };
            let _ = c.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut have = 0usize;
                loop {
                    let n = match c.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    have += n;
                    // Answer every complete request in the buffer (wrk does not pipeline, but be correct).
                    while let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                        let close = find(&buf[..end], b"onnection: close").is_some();
                        if c.write_all(if close { CLOSE } else { KEEP }).await.is_err() || close {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                    if have == buf.len() {
                        return;
                    }
                }
            });
        }
    });
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}
