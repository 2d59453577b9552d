//! Fake kube-apiserver for tests, and the throwaway PKI it serves with.
//!
//! Owns: [`TestPki`] (a CA made by rcgen, server certificates with chosen IP SANs, DNS names and validity
//! including expired ones, client certificates; all written as PEM files into a temporary directory removed on
//! drop), [`FakeApiserver`] (hyper 1 over tokio-rustls with the ring provider, or plain HTTP), a tiny HTTPS
//! client for tests ([`get`], and [`watch_lines`] for streams), [`fake_apiserver_bin`] which finds the
//! `fake-apiserver` binary, and [`FakeProcess`] which runs it as a child process reaped on drop.
//!
//! Endpoints served:
//! - `GET /readyz` and `/livez`: 200 `ok`, or 500 when switched to not ready.
//! - `GET /version`: JSON `{"name", "gitVersion", "addr", "pid"}`; `name` is the server's own identity, so a
//!   client behind a proxy can tell which apiserver answered.
//! - `GET /watch[?interval_ms=N]`: a chunked stream that sends one JSON line every N ms (default from the
//!   config) until the client leaves.
//! - anything else: 404.
//!
//! Stall: while stalled, new connections are accepted at TCP level and then never answered (no TLS handshake,
//! no bytes) until the stall is lifted, when they are served normally; running watch streams pause. This is
//! what a client sees from a SIGSTOPped or wedged apiserver.
//!
//! Control: in-process through the [`FakeApiserver`] handle (`set_ready`, `set_stall`, `stats`). The binary
//! (`fake-apiserver --listen ADDR [--cert F --key F] [--ca F] [--name N] [--control ADDR] [--not-ready]
//! [--watch-interval-ms N]`; without `--cert`/`--key` it serves plain HTTP; `--ca` requires client
//! certificates from that CA) prints
//! `listening on ADDR` (and `control on ADDR`), then `serving`, on stdout, then obeys:
//! - signals: `SIGUSR1` toggles ready, `SIGUSR2` toggles stall, `SIGTERM`/`SIGINT` exit cleanly;
//! - the optional plain-HTTP control port: `GET /ready/on`, `/ready/off`, `/stall/on`, `/stall/off`, and
//!   `/state` (JSON with `ready`, `stalled`, `connections`, `requests`).

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

// ---------------------------------------------------------------------------------------------------------
// Temporary directory
// ---------------------------------------------------------------------------------------------------------

/// A directory under the system temp dir, unique per process and call, removed with its content on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/vipd-lab-{prefix}-{pid}-{counter}-{nanos}`.
    pub fn new(prefix: &str) -> io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "vipd-lab-{prefix}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------------------
// PKI
// ---------------------------------------------------------------------------------------------------------

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From a day ago to a year from now.
    Current,
    /// Expired a day ago (valid from 30 days ago to yesterday).
    Expired,
    /// Valid from tomorrow on.
    NotYetValid,
    /// Explicit bounds.
    Between(SystemTime, SystemTime),
}

impl Validity {
    fn bounds(self) -> (SystemTime, SystemTime) {
        const DAY: Duration = Duration::from_secs(86_400);
        let now = SystemTime::now();
        match self {
            Validity::Current => (now - DAY, now + 365 * DAY),
            Validity::Expired => (now - 30 * DAY, now - DAY),
            Validity::NotYetValid => (now + DAY, now + 365 * DAY),
            Validity::Between(a, b) => (a, b),
        }
    }
}

/// What a server certificate is issued for.
#[derive(Debug, Clone)]
pub struct ServerCertSpec {
    pub ips: Vec<IpAddr>,
    pub dns_names: Vec<String>,
    pub validity: Validity,
}

impl ServerCertSpec {
    /// A current certificate for these IP addresses only (what kubeadm issues for the node IP, roughly).
    pub fn ips(ips: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            ips: ips.into_iter().collect(),
            dns_names: Vec::new(),
            validity: Validity::Current,
        }
    }

    pub fn dns(mut self, name: &str) -> Self {
        self.dns_names.push(name.to_string());
        self
    }

    pub fn validity(mut self, validity: Validity) -> Self {
        self.validity = validity;
        self
    }
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test certificate authority whose files live in a temporary directory.
#[derive(Debug)]
pub struct TestPki {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_cert: PathBuf,
    name: String,
}

fn rc(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("rcgen: {e}"))
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

impl TestPki {
    /// A new CA named `name` (its common name), with its certificate written to `ca.crt`.
    pub fn new(name: &str) -> io::Result<Self> {
        let dir = TempDir::new(name)?;
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let (nb, na) = Validity::Current.bounds();
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(nb);
        params.not_after =
            rcgen::date_time_ymd(1970, 1, 1) + since_epoch(na) + Duration::from_secs(86_400);
        let ca = CertifiedIssuer::self_signed(params, key).map_err(rc)?;
        let ca_cert = dir.path().join("ca.crt");
        std::fs::write(&ca_cert, ca.pem())?;
        Ok(Self {
            dir,
            ca,
            ca_cert,
            name: name.to_string(),
        })
    }

    /// Path of the CA certificate (PEM), what a client trusts.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// The directory holding every file of this PKI.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn issue(
        &self,
        file_stem: &str,
        mut params: CertificateParams,
        validity: Validity,
    ) -> io::Result<CertFiles> {
        let key = KeyPair::generate().map_err(rc)?;
        let (nb, na) = validity.bounds();
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(nb);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(na);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.ca).map_err(rc)?;
        let files = CertFiles {
            cert: self.dir.path().join(format!("{file_stem}.crt")),
            key: self.dir.path().join(format!("{file_stem}.key")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }

    /// A server certificate (`{name}.crt` / `{name}.key`) for the given IP SANs, DNS names and validity.
    pub fn server_cert(&self, name: &str, spec: &ServerCertSpec) -> io::Result<CertFiles> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.subject_alt_names = spec.ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        for d in &spec.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(d.clone().try_into().map_err(rc)?));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(name, params, spec.validity)
    }

    /// A client certificate (`{name}.crt` / `{name}.key`), common name `name`.
    pub fn client_cert(&self, name: &str) -> io::Result<CertFiles> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(name, params, Validity::Current)
    }

    /// The CA's common name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

// ---------------------------------------------------------------------------------------------------------
// PEM loading and TLS configs
// ---------------------------------------------------------------------------------------------------------

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificate found"));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_err(path, e))
}

fn roots(ca: &Path) -> io::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| pem_err(ca, e))?;
    }
    Ok(roots)
}

/// Server TLS settings of a fake apiserver.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, a client certificate signed by this CA is required.
    pub client_ca: Option<PathBuf>,
}

fn server_config(tls: &ServerTls) -> io::Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(load_certs(&tls.cert)?, load_key(&tls.key)?)
        .map_err(|e| pem_err(&tls.cert, e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

// ---------------------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------------------

/// How to run a fake apiserver.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Identity reported by `/version`.
    pub name: String,
    /// Port 0 picks a free port; read it back with [`FakeApiserver::addr`].
    pub listen: SocketAddr,
    /// `None` serves plain HTTP.
    pub tls: Option<ServerTls>,
    /// Default period of `/watch` lines.
    pub watch_interval: Duration,
    /// Initial `/readyz` state.
    pub ready: bool,
}

impl FakeConfig {
    pub fn new(name: &str, listen: SocketAddr, tls: Option<ServerTls>) -> Self {
        Self {
            name: name.to_string(),
            listen,
            tls,
            watch_interval: Duration::from_millis(100),
            ready: true,
        }
    }
}

#[derive(Debug)]
struct Shared {
    name: String,
    addr: SocketAddr,
    ready: AtomicBool,
    /// `true` while stalled; receivers wait for it to drop back to `false`.
    stall: watch::Sender<bool>,
    connections: AtomicU64,
    active: AtomicU64,
    requests: AtomicU64,
    watch_interval: Duration,
}

/// Counters of a running fake apiserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeStats {
    /// TCP connections accepted (stalled ones included).
    pub connections: u64,
    /// Of those, still open.
    pub active: u64,
    /// HTTP requests answered.
    pub requests: u64,
}

/// A running fake apiserver; stops when dropped or on [`FakeApiserver::shutdown`].
#[derive(Debug)]
pub struct FakeApiserver {
    handle: FakeHandle,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl FakeApiserver {
    /// Binds and starts serving in the current tokio runtime.
    pub async fn start(cfg: FakeConfig) -> io::Result<Self> {
        let acceptor = match &cfg.tls {
            Some(tls) => Some(TlsAcceptor::from(Arc::new(server_config(tls)?))),
            None => None,
        };
        let listener = TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: cfg.name,
            addr,
            ready: AtomicBool::new(cfg.ready),
            stall: watch::Sender::new(false),
            connections: AtomicU64::new(0),
            active: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            watch_interval: cfg.watch_interval,
        });
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            acceptor,
            shared.clone(),
            cancel.clone(),
            tracker.clone(),
        ));
        Ok(Self {
            handle: FakeHandle { shared },
            cancel,
            tracker,
        })
    }

    /// A handle that outlives borrows of the server, for control from other threads. The server's own
    /// methods below are the handle's.
    pub fn handle(&self) -> FakeHandle {
        self.handle.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// Switches `/readyz` between 200 and 500.
    pub fn set_ready(&self, ready: bool) {
        self.handle.set_ready(ready)
    }

    pub fn is_ready(&self) -> bool {
        self.handle.is_ready()
    }

    /// Stalls (accept but never answer) or resumes.
    pub fn set_stall(&self, stall: bool) {
        self.handle.set_stall(stall)
    }

    pub fn is_stalled(&self) -> bool {
        self.handle.is_stalled()
    }

    pub fn stats(&self) -> FakeStats {
        self.handle.stats()
    }

    /// Stops accepting, closes every connection and waits for all tasks.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (tcp, _peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("fake-apiserver {}: accept: {e}", shared.name);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let (shared, acceptor, cancel) = (shared.clone(), acceptor.clone(), cancel.clone());
        let active = Active::new(shared.clone());
        tracker.spawn(async move {
            let _active = active;
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = serve_conn(tcp, acceptor, shared) => {}
            }
        });
    }
}

/// Counts a connection as active until dropped.
struct Active(Arc<Shared>);

impl Active {
    fn new(shared: Arc<Shared>) -> Self {
        shared.active.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn wait_unstalled(shared: &Shared) {
    let mut rx = shared.stall.subscribe();
    let _ = rx.wait_for(|stalled| !*stalled).await;
}

async fn serve_conn(tcp: TcpStream, acceptor: Option<TlsAcceptor>, shared: Arc<Shared>) {
    // A stalled server holds the socket without reading it, as a stopped process would.
    wait_unstalled(&shared).await;
    let svc_shared = shared.clone();
    let svc = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let result = match acceptor {
        Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(tls) => builder.serve_connection(TokioIo::new(tls), svc).await,
            Err(_) => return, // handshake refused (no client cert, unknown CA...): the client sees the alert
        },
        None => builder.serve_connection(TokioIo::new(tcp), svc).await,
    };
    drop(result); // clients leaving mid-stream is normal here
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: String) -> Response<BoxBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}

async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<BoxBody> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    wait_unstalled(shared).await;
    match req.uri().path() {
        "/readyz" | "/livez" | "/healthz" => {
            if shared.ready.load(Ordering::SeqCst) {
                full(StatusCode::OK, "text/plain", "ok".into())
            } else {
                full(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "[-]etcd failed: reason withheld\nreadyz check failed\n".into(),
                )
            }
        }
        "/version" => {
            let body = serde_json::json!({
                "name": shared.name,
                "gitVersion": "v1.31.0-fake",
                "addr": shared.addr.to_string(),
                "pid": std::process::id(),
            });
            full(StatusCode::OK, "application/json", body.to_string())
        }
        "/watch" => {
            let interval = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("interval_ms=")))
                .and_then(|v| v.parse::<u64>().ok())
                .map(|ms| Duration::from_millis(ms.max(1)))
                .unwrap_or(shared.watch_interval);
            let body = WatchBody {
                shared: shared.clone(),
                ticker: tokio::time::interval(interval),
                seq: 0,
            };
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(body.boxed())
                .unwrap()
        }
        _ => full(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// The `/watch` body: one line per tick, for as long as the client keeps reading; silent while stalled.
struct WatchBody {
    shared: Arc<Shared>,
    ticker: tokio::time::Interval,
    seq: u64,
}

impl Body for WatchBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if self.ticker.poll_tick(cx).is_pending() {
                return Poll::Pending;
            }
            if *self.shared.stall.borrow() {
                continue;
            }
            self.seq += 1;
            let line = format!(
                "{{\"type\":\"TICK\",\"name\":\"{}\",\"seq\":{}}}\n",
                self.shared.name, self.seq
            );
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Client for tests
// ---------------------------------------------------------------------------------------------------------

/// How [`get`] connects.
#[derive(Debug, Clone, Default)]
pub struct ClientOpts {
    /// `None` means plain HTTP.
    pub ca: Option<PathBuf>,
    /// Name to verify; by default the IP address connected to.
    pub server_name: Option<String>,
    pub client_cert: Option<CertFiles>,
    pub timeout: Option<Duration>,
}

impl ClientOpts {
    /// `timeout`, 5 s by default.
    fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(5))
    }
}

/// `fut`, or a `TimedOut` error once `opts.timeout` has passed.
async fn bounded<T>(
    opts: &ClientOpts,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(opts.timeout(), fut)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timeout")))
}

/// One HTTP/1.1 GET on a fresh connection; returns the status and the body as text.
pub async fn get(addr: SocketAddr, opts: &ClientOpts, path: &str) -> io::Result<(u16, String)> {
    bounded(opts, get_inner(addr, opts, path)).await
}

/// Reads the first `lines` lines of a streaming response (such as `/watch`), then leaves (closes the
/// connection). Returns the status and the lines; an error if the stream ends or stalls for `opts.timeout`
/// (default 5 s) before that many lines (at least one) arrived.
pub async fn watch_lines(
    addr: SocketAddr,
    opts: &ClientOpts,
    path: &str,
    lines: usize,
) -> io::Result<(u16, Vec<String>)> {
    let mut out = Vec::new();
    let status = stream_lines(addr, opts, path, false, |line| {
        out.push(line.to_string());
        out.len() < lines
    })
    .await?;
    Ok((status, out))
}

/// Any stream a test client talks HTTP over.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn connect(addr: SocketAddr, opts: &ClientOpts) -> io::Result<Box<dyn Io>> {
    let tcp = TcpStream::connect(addr).await?;
    wrap(tcp, addr, opts).await
}

/// TLS (when `opts.ca` is set) over an already connected socket, verifying `addr`'s IP or `opts.server_name`.
async fn wrap(tcp: TcpStream, addr: SocketAddr, opts: &ClientOpts) -> io::Result<Box<dyn Io>> {
    let Some(ca) = &opts.ca else {
        return Ok(Box::new(tcp));
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots(ca)?);
    let mut cfg = match &opts.client_cert {
        Some(c) => builder
            .with_client_auth_cert(load_certs(&c.cert)?, load_key(&c.key)?)
            .map_err(io::Error::other)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = match &opts.server_name {
        Some(n) => ServerName::try_from(n.clone()).map_err(io::Error::other)?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    Ok(Box::new(
        TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await?,
    ))
}

fn request_for(addr: SocketAddr, path: &str) -> io::Result<Request<Empty<Bytes>>> {
    Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(io::Error::other)
}

async fn get_inner(addr: SocketAddr, opts: &ClientOpts, path: &str) -> io::Result<(u16, String)> {
    let stream = connect(addr, opts).await?;
    get_over(stream, addr, path).await
}

/// One GET over a socket the caller connected itself (so it can tell a failed connect, which a client may
/// retry, from a failure after it, which it may not), bounded by `opts.timeout` (default 5 s).
pub async fn get_on(
    tcp: TcpStream,
    addr: SocketAddr,
    opts: &ClientOpts,
    path: &str,
) -> io::Result<(u16, String)> {
    let fut = async {
        let stream = wrap(tcp, addr, opts).await?;
        get_over(stream, addr, path).await
    };
    bounded(opts, fut).await
}

/// Follows a streaming response (such as `/watch`) line by line, calling `on_line` for each, until `on_line`
/// returns false (then leaves and returns Ok), the stream ends or fails, or no byte came for `opts.timeout`
/// (default 5 s): those are errors saying which.
pub async fn follow_lines(
    addr: SocketAddr,
    opts: &ClientOpts,
    path: &str,
    on_line: impl FnMut(&str) -> bool,
) -> io::Result<()> {
    stream_lines(addr, opts, path, true, on_line)
        .await
        .map(drop)
}

/// The one stream reader behind [`watch_lines`] and [`follow_lines`]: connects, sends `GET path`, and hands
/// each body line to `on_line` until it returns false; returns the status. With `require_ok`, a status other
/// than 200 is an error before any line is read.
async fn stream_lines(
    addr: SocketAddr,
    opts: &ClientOpts,
    path: &str,
    require_ok: bool,
    mut on_line: impl FnMut(&str) -> bool,
) -> io::Result<u16> {
    let timeout = opts.timeout();
    let stream = tokio::time::timeout(timeout, connect(addr, opts))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let conn = tokio::spawn(conn);
    let result = async {
        let resp = tokio::time::timeout(timeout, sender.send_request(request_for(addr, path)?))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response timeout"))?
            .map_err(io::Error::other)?;
        let status = resp.status();
        if require_ok && status != StatusCode::OK {
            return Err(io::Error::other(format!("status {status}")));
        }
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        loop {
            let frame = tokio::time::timeout(timeout, body.frame())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "stream stalled"))?;
            let Some(frame) = frame else {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended"));
            };
            if let Ok(data) = frame.map_err(io::Error::other)?.into_data() {
                buf.extend_from_slice(&data);
            }
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if !on_line(&String::from_utf8_lossy(&line[..line.len() - 1])) {
                    return Ok(status.as_u16());
                }
            }
        }
    }
    .await;
    conn.abort();
    result
}

async fn get_over(stream: Box<dyn Io>, addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let conn = tokio::spawn(conn);
    let result = async {
        let resp = sender
            .send_request(request_for(addr, path)?)
            .await
            .map_err(io::Error::other)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
    .await;
    conn.abort();
    result
}

// ---------------------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------------------

/// Path of the `fake-apiserver` binary built next to the running test executable.
///
/// Test executables live in `target/<profile>/deps/`; the binary in `target/<profile>/`.
pub fn fake_apiserver_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("fake-apiserver"));
        if let Some(up) = dir.parent() {
            candidates.push(up.join("fake-apiserver"));
        }
    }
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "fake-apiserver binary not found (looked at {candidates:?}); run `cargo build -p vipd-lab` first \
         (cargo test --workspace builds it too)"
    );
}

/// A `fake-apiserver` child process; killed (after a SIGCONT, in case it was stopped) and reaped on drop.
#[derive(Debug)]
pub struct FakeProcess {
    child: std::process::Child,
    addr: SocketAddr,
    control: Option<SocketAddr>,
}

impl FakeProcess {
    /// [`FakeProcess::spawn`] serving HTTPS on `listen` with `cert`, reporting `name` in `/version`; `extra` are
    /// further arguments (such as `--control 127.0.0.1:0`).
    pub fn spawn_https(
        listen: SocketAddr,
        cert: &CertFiles,
        name: &str,
        extra: &[&str],
    ) -> io::Result<Self> {
        Self::spawn(Self::https_args(listen, cert, name, extra))
    }

    /// The command line of a fake apiserver serving HTTPS (see [`FakeProcess::spawn_https`]).
    fn https_args(
        listen: SocketAddr,
        cert: &CertFiles,
        name: &str,
        extra: &[&str],
    ) -> Vec<std::ffi::OsString> {
        let flags: [(&str, std::ffi::OsString); 4] = [
            ("--listen", listen.to_string().into()),
            ("--cert", cert.cert.clone().into()),
            ("--key", cert.key.clone().into()),
            ("--name", name.into()),
        ];
        flags
            .into_iter()
            .flat_map(|(flag, value)| [flag.into(), value])
            .chain(extra.iter().map(Into::into))
            .collect()
    }

    /// Spawns [`fake_apiserver_bin`] with `args` and waits for it to print its addresses.
    pub fn spawn<I, S>(args: I) -> io::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = std::process::Command::new(fake_apiserver_bin());
        cmd.args(args);
        Self::spawn_command(cmd)
    }

    /// Spawns the binary inside the network namespace `ns_name` (through `ip netns exec`, which execs in
    /// place: the PID is the server's own, so SIGSTOP and SIGKILL reach it).
    pub fn spawn_in<I, S>(ns_name: &str, args: I) -> io::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", ns_name])
            .arg(fake_apiserver_bin())
            .args(args);
        Self::spawn_command(cmd)
    }

    /// [`FakeProcess::spawn_in`] serving HTTPS on `listen` with `cert`, reporting `name` in `/version`; `extra`
    /// are further arguments (such as `--watch-interval-ms 50`).
    pub fn spawn_https_in(
        ns_name: &str,
        listen: SocketAddr,
        cert: &CertFiles,
        name: &str,
        extra: &[&str],
    ) -> io::Result<Self> {
        Self::spawn_in(ns_name, Self::https_args(listen, cert, name, extra))
    }

    fn spawn_command(mut cmd: std::process::Command) -> io::Result<Self> {
        use std::io::BufRead;
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut proc = FakeProcess {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            control: None,
        };
        let mut lines = io::BufReader::new(stdout).lines();
        // The binary prints "listening on", then "control on" if asked, then "serving" last.
        for line in lines.by_ref() {
            let line = line?;
            if let Some(a) = line.strip_prefix("listening on ") {
                proc.addr = a.trim().parse().map_err(io::Error::other)?;
            } else if let Some(a) = line.strip_prefix("control on ") {
                proc.control = Some(a.trim().parse().map_err(io::Error::other)?);
            } else if line.trim() == "serving" {
                break;
            }
        }
        if proc.addr.port() == 0 {
            return Err(io::Error::other(
                "fake-apiserver exited before printing its address",
            ));
        }
        Ok(proc)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The control port, when started with `--control`.
    pub fn control(&self) -> Option<SocketAddr> {
        self.control
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `sig` to this process (by PID).
    pub fn signal(&self, sig: nix::sys::signal::Signal) -> io::Result<()> {
        nix::sys::signal::kill(self.pid(), sig).map_err(io::Error::from)
    }

    /// SIGTERM, then waits for the exit status (SIGKILL after 5 s).
    pub fn terminate(mut self) -> io::Result<std::process::ExitStatus> {
        let _ = self.signal(nix::sys::signal::Signal::SIGCONT);
        self.signal(nix::sys::signal::Signal::SIGTERM)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.signal(nix::sys::signal::Signal::SIGCONT);
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------------------
// In-process server inside a network namespace
// ---------------------------------------------------------------------------------------------------------

/// Controls a running [`FakeApiserver`] from any thread (the server may run on another thread's runtime).
#[derive(Debug, Clone)]
pub struct FakeHandle {
    shared: Arc<Shared>,
}

impl FakeHandle {
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Switches `/readyz` between 200 and 500.
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst)
    }

    /// Stalls (accept but never answer) or resumes.
    pub fn set_stall(&self, stall: bool) {
        self.shared.stall.send_replace(stall);
    }

    pub fn is_stalled(&self) -> bool {
        *self.shared.stall.borrow()
    }

    pub fn stats(&self) -> FakeStats {
        FakeStats {
            connections: self.shared.connections.load(Ordering::SeqCst),
            active: self.shared.active.load(Ordering::SeqCst),
            requests: self.shared.requests.load(Ordering::SeqCst),
        }
    }
}

/// A [`FakeApiserver`] serving inside a network namespace, in this process.
///
/// Sockets belong to the namespace of the thread that creates them, and `setns` moves only the calling
/// thread: so the server runs on a dedicated thread that entered the namespace, with its own current-thread
/// runtime. Stopped (every connection closed) and the thread joined on [`NsApiserver::stop`] or drop.
#[derive(Debug)]
pub struct NsApiserver {
    handle: FakeHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long a stopping server may take to close its connections before its thread gives up on them.
const NS_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl NsApiserver {
    /// Enters `/run/netns/{ns_name}` on a new thread and starts serving `cfg` there; returns once it listens.
    pub fn start(ns_name: &str, cfg: FakeConfig) -> io::Result<Self> {
        let path = format!("/run/netns/{ns_name}");
        let file = std::fs::File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<FakeHandle>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("apiserver-{}", cfg.name))
            .spawn(move || {
                let started = (|| {
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| io::Error::other(format!("setns {path}: {e}")))?;
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                })();
                let rt = match started {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let server = match FakeApiserver::start(cfg).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(server.handle()));
                    // Either a stop request or the owner gone (sender dropped) ends the server.
                    let _ = stop_rx.await;
                    let _ = tokio::time::timeout(NS_SHUTDOWN_GRACE, server.shutdown()).await;
                });
            })?;
        match ready_rx.recv() {
            Ok(Ok(handle)) => Ok(Self {
                handle,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(
                    "fake apiserver thread ended before listening",
                ))
            }
        }
    }

    pub fn handle(&self) -> &FakeHandle {
        &self.handle
    }

    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// Stops serving, closes every connection, joins the thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NsApiserver {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
