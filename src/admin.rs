//! The admin HTTP endpoint (`admin.listen`, default 127.0.0.1:9440): `/healthz`, `/readyz`, `/metrics`
//! (OpenMetrics text) and `/status` (JSON `StatusDoc`), plus the client side `vipd status` uses.
//!
//! The server knows nothing of VRRP or the proxy: the supervisor hands it closures that report liveness,
//! readiness and the status document, and the metrics registry. It stops on a `CancellationToken`, letting
//! in-flight requests finish for a short grace period.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The `/status` document (issue 7's shape, camelCase JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDoc {
    /// This node's name (host name, or its address from the cluster config).
    pub node: String,
    pub vrrp: VrrpStatus,
    pub vip: VipStatus,
    pub proxy: ProxyStatus,
    pub backends: Vec<BackendStatus>,
    /// Things an operator should act on (e.g. a VRRPv2 router in our VRID that cannot hear us); empty when
    /// all is well. Absent in documents from older versions.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VrrpStatus {
    pub state: VrrpState,
    pub vrid: u8,
    /// As configured.
    pub priority: u8,
    /// After tracking (`priority + trackWeight` while no backend is healthy).
    pub effective_priority: u8,
    /// The current master's address, when known (`null` before the first advertisement).
    pub master_address: Option<IpAddr>,
    /// As written in the config: `1s`, `250ms` (see `config::fmt_duration`).
    pub advert_interval: String,
    pub transitions: u64,
    /// The protocol spoken now: `3`, `2` or `mixed` (`vrrp.version`; `3` in documents from older versions).
    #[serde(default = "default_version")]
    pub version: String,
}

fn default_version() -> String {
    "3".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VrrpState {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl VrrpState {
    pub fn as_str(self) -> &'static str {
        match self {
            VrrpState::Initialize => "initialize",
            VrrpState::Backup => "backup",
            VrrpState::Master => "master",
            VrrpState::Fault => "fault",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VipStatus {
    pub address: IpAddr,
    /// Whether the VIP is on this node's interface now.
    pub held: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus {
    pub listen: SocketAddr,
    pub active_connections: u64,
    pub total_connections: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    pub address: SocketAddr,
    pub healthy: bool,
    /// When the health last changed, RFC 3339 UTC (see `rfc3339`).
    pub since: String,
    /// Why it is in that state: the last check's outcome.
    pub reason: String,
    pub active_connections: u64,
}

/// `Ok` when fine; `Err(why)` is shown in the 503 body.
pub type Check = Result<(), String>;

/// What the admin server serves; cheap to clone (everything is shared).
#[derive(Clone)]
pub struct AdminState {
    status: Arc<dyn Fn() -> StatusDoc + Send + Sync>,
    live: Arc<dyn Fn() -> Check + Send + Sync>,
    ready: Arc<dyn Fn() -> Check + Send + Sync>,
    registry: Arc<Registry>,
    /// The metrics listener (`metrics.listen`): `/metrics` and nothing else.
    metrics_only: bool,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

impl AdminState {
    /// `live`: the process and its tasks are alive (`/healthz`); `ready`: VRRP running and the proxy
    /// listening (`/readyz`); `status`: the current document (`/status`).
    pub fn new(
        registry: Arc<Registry>,
        status: impl Fn() -> StatusDoc + Send + Sync + 'static,
        live: impl Fn() -> Check + Send + Sync + 'static,
        ready: impl Fn() -> Check + Send + Sync + 'static,
    ) -> AdminState {
        AdminState {
            status: Arc::new(status),
            live: Arc::new(live),
            ready: Arc::new(ready),
            registry,
            metrics_only: false,
        }
    }

    /// What the metrics listener serves: the same registry, and no other path (`/status` names the node's
    /// peers and backends, and the probes belong on the admin endpoint).
    pub fn metrics_only(registry: Arc<Registry>) -> AdminState {
        let unused = || Err("not served here".to_string());
        AdminState {
            metrics_only: true,
            ..AdminState::new(registry, no_status, unused, unused)
        }
    }
}

fn no_status() -> StatusDoc {
    unreachable!("the metrics listener never serves /status")
}

/// How long requests in flight may take to finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Slow or idle clients lose their connection; the endpoint is for probes and scrapers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many connections are served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;

/// Binds the admin listener. Separate from `serve` so that `vipd run` reports a taken port before it
/// starts anything else.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `shutdown` is cancelled, then gives requests in flight `SHUTDOWN_GRACE` to finish.
/// Accept errors (e.g. out of file descriptors) are logged and survived.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, req)) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "admin: connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("admin: requests still in flight after the grace period were dropped");
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if state.metrics_only && req.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "not found; only /metrics is served here\n",
        );
    }
    match req.uri().path() {
        "/healthz" => check((state.live)(), "ok\n"),
        "/readyz" => check((state.ready)(), "ready\n"),
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
                Ok(()) => with_type(StatusCode::OK, body, OPENMETRICS),
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "metrics encoding failed\n",
                ),
            }
        }
        "/status" => match serde_json::to_string_pretty(&(state.status)()) {
            Ok(mut json) => {
                json.push('\n');
                with_type(StatusCode::OK, json, "application/json")
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz /readyz /metrics /status\n",
        ),
    }
}

fn check(result: Check, ok_body: &str) -> Response<Full<Bytes>> {
    match result {
        Ok(()) => text(StatusCode::OK, ok_body),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{why}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    with_type(status, body.to_string(), "text/plain; charset=utf-8")
}

fn with_type(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// RFC 3339 UTC with second precision, e.g. `2026-11-25T09:30:00Z`; what `BackendStatus::since` holds.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---- client side: `vipd status` ----

/// Why `vipd status` got no document.
#[derive(Debug)]
pub enum FetchError {
    /// The URL is not `http://host:port[/prefix]`.
    BadUrl(String),
    /// Nothing answers there: vipd is not running, or listens elsewhere.
    NoDaemon { url: String, why: String },
    /// Something answered, but not with a status document.
    BadResponse { url: String, why: String },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::BadUrl(why) => write!(f, "{why}"),
            FetchError::NoDaemon { url, why } => write!(
                f,
                "no vipd answers at {url}: {why}. Is vipd running on this node? Its admin address is \
                 admin.listen in the config; pass it with --admin URL"
            ),
            FetchError::BadResponse { url, why } => write!(f, "{url}: {why}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// The default `--admin` URL, from the default `admin.listen`.
pub fn default_admin_url() -> String {
    format!("http://{}", crate::config::DEFAULT_ADMIN_LISTEN)
}

/// Fetches `/status` under `base` (`http://host:port`, a bare `host:port` is taken as http). Returns the
/// parsed document and the raw body.
pub async fn fetch_status(
    base: &str,
    timeout: Duration,
) -> Result<(StatusDoc, String), FetchError> {
    let with_scheme = if base.contains("://") {
        base.to_string()
    } else {
        format!("http://{base}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e| FetchError::BadUrl(format!("--admin {base:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(FetchError::BadUrl(format!(
            "--admin {base:?}: only http:// is served by the admin endpoint"
        )));
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err(FetchError::BadUrl(format!("--admin {base:?} has no host")));
    };
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let prefix = uri.path().trim_end_matches('/');
    let url = format!("http://{authority}{prefix}/status");
    let no_daemon = |why: String| FetchError::NoDaemon {
        url: url.clone(),
        why,
    };
    let bad = |why: String| FetchError::BadResponse {
        url: url.clone(),
        why,
    };

    let work = async {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| no_daemon(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| no_daemon(e.to_string()))?;
        let conn_task = tokio::spawn(conn);
        let req = Request::get(format!("{prefix}/status"))
            .header("host", authority.as_str())
            .header("accept", "application/json")
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| bad(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| no_daemon(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| bad(format!("reading the answer: {e}")))?
            .to_bytes();
        conn_task.abort();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status != StatusCode::OK {
            return Err(bad(format!("HTTP {status}: {}", body.trim())));
        }
        let doc: StatusDoc = serde_json::from_str(&body)
            .map_err(|e| bad(format!("the answer is not a vipd status document: {e}")))?;
        Ok((doc, body))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(no_daemon(format!(
            "no answer within {}",
            crate::config::fmt_duration(timeout)
        ))),
    }
}

/// The short table `vipd status` prints.
pub fn render_status(doc: &StatusDoc) -> String {
    let v = &doc.vrrp;
    let mut out = String::new();
    let _ = writeln!(out, "node      {}", doc.node);
    let effective = if v.effective_priority == v.priority {
        format!("priority {}", v.priority)
    } else {
        format!(
            "priority {} (effective {})",
            v.priority, v.effective_priority
        )
    };
    let master = match v.master_address {
        Some(a) => format!(", master {a}"),
        None => String::new(),
    };
    // The version only when it is not the default, so the usual line stays short.
    let version = match v.version.as_str() {
        "3" => String::new(),
        "mixed" => ", VRRPv3 + VRRPv2 (mixed)".to_string(),
        other => format!(", VRRPv{other}"),
    };
    let _ = writeln!(
        out,
        "vrrp      {}, vrid {}, {effective}, advert {}, {} transitions{master}{version}",
        v.state.as_str().to_uppercase(),
        v.vrid,
        v.advert_interval,
        v.transitions,
    );
    let _ = writeln!(
        out,
        "vip       {} {}",
        doc.vip.address,
        if doc.vip.held {
            "held here"
        } else {
            "not held here"
        }
    );
    let _ = writeln!(
        out,
        "proxy     {} ({} active, {} total connections)",
        doc.proxy.listen, doc.proxy.active_connections, doc.proxy.total_connections
    );
    for w in &doc.warnings {
        let _ = writeln!(out, "warning   {w}");
    }
    if doc.backends.is_empty() {
        let _ = writeln!(out, "backends  none");
        return out;
    }
    let width = doc
        .backends
        .iter()
        .map(|b| b.address.to_string().len())
        .max()
        .unwrap_or(0)
        .max("BACKEND".len());
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<width$}  {:<9}  {:>6}  {:<20}  REASON",
        "BACKEND", "HEALTH", "ACTIVE", "SINCE"
    );
    for b in &doc.backends {
        let _ = writeln!(
            out,
            "{:<width$}  {:<9}  {:>6}  {:<20}  {}",
            b.address.to_string(),
            if b.healthy { "healthy" } else { "unhealthy" },
            b.active_connections,
            b.since,
            b.reason
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
