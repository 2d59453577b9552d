//! `fake-apiserver`: a stand-in kube-apiserver process for tests that need a real PID (SIGSTOP) or a
//! separate network namespace. Behaviour and control are documented in `vipd_lab::apiserver`.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::signal::unix::{signal, SignalKind};
use vipd_lab::apiserver::{FakeApiserver, FakeConfig, ServerTls};

#[derive(Debug, Parser)]
#[command(about = "Fake kube-apiserver for vipd tests")]
struct Args {
    /// Address to serve on (port 0 = any free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Server certificate (PEM); without --cert/--key, plain HTTP is served.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to; makes a client certificate required.
    #[arg(long, requires = "cert")]
    ca: Option<PathBuf>,
    /// Identity reported by /version.
    #[arg(long, default_value = "fake-apiserver")]
    name: String,
    /// Optional plain-HTTP control port (/ready/on|off, /stall/on|off, /state).
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Start with /readyz answering 500.
    #[arg(long)]
    not_ready: bool,
    /// Default period of /watch lines, in milliseconds.
    #[arg(long, default_value_t = 100)]
    watch_interval_ms: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tls = match (args.cert, args.key) {
        (Some(cert), Some(key)) => Some(ServerTls {
            cert,
            key,
            client_ca: args.ca,
        }),
        _ => None,
    };
    let mut cfg = FakeConfig::new(&args.name, args.listen, tls);
    cfg.watch_interval = Duration::from_millis(args.watch_interval_ms.max(1));
    cfg.ready = !args.not_ready;
    let server = Arc::new(
        FakeApiserver::start(cfg)
            .await
            .context("starting fake apiserver")?,
    );

    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", server.addr())?;
    if let Some(ctl) = args.control {
        let listener = tokio::net::TcpListener::bind(ctl)
            .await
            .context("binding control port")?;
        writeln!(out, "control on {}", listener.local_addr()?)?;
        tokio::spawn(control_loop(listener, server.clone()));
    }
    writeln!(out, "serving")?;
    out.flush()?;
    drop(out);

    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = usr1.recv() => server.set_ready(!server.is_ready()),
            _ = usr2.recv() => server.set_stall(!server.is_stalled()),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    if let Ok(server) = Arc::try_unwrap(server) {
        server.shutdown().await;
    }
    Ok(())
}

async fn control_loop(listener: tokio::net::TcpListener, server: Arc<FakeApiserver>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let server = server.clone();
                async move {
                    let (status, body) = match req.uri().path() {
                        "/ready/on" => (200, server.set_ready(true)),
                        "/ready/off" => (200, server.set_ready(false)),
                        "/stall/on" => (200, server.set_stall(true)),
                        "/stall/off" => (200, server.set_stall(false)),
                        "/state" => (200, ()),
                        _ => (404, ()),
                    };
                    let () = body;
                    let stats = server.stats();
                    let json = serde_json::json!({
                        "ready": server.is_ready(),
                        "stalled": server.is_stalled(),
                        "connections": stats.connections,
                        "requests": stats.requests,
                    });
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(json.to_string())))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
