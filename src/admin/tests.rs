//! The admin endpoints over real HTTP (hyper client against the server on a loopback port), the status
//! document's JSON shape, and the `vipd status` table (golden file `tests/golden/status/table.out`).

use super::*;
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) fn sample_doc() -> StatusDoc {
    StatusDoc {
        node: "lb-1".to_string(),
        vrrp: VrrpStatus {
            state: VrrpState::Master,
            vrid: 51,
            priority: 100,
            effective_priority: 50,
            master_address: Some("192.0.2.11".parse().unwrap()),
            advert_interval: "1s".to_string(),
            transitions: 3,
            version: "3".to_string(),
        },
        vip: VipStatus {
            address: "192.0.2.100".parse().unwrap(),
            held: true,
        },
        proxy: ProxyStatus {
            listen: "192.0.2.100:443".parse().unwrap(),
            active_connections: 12,
            total_connections: 3456,
        },
        backends: vec![
            BackendStatus {
                address: "192.0.2.20:6443".parse().unwrap(),
                healthy: true,
                since: "2026-11-25T09:00:00Z".to_string(),
                reason: "GET /readyz: 200".to_string(),
                active_connections: 12,
            },
            BackendStatus {
                address: "[2001:db8::21]:6443".parse().unwrap(),
                healthy: false,
                since: "2026-11-25T09:10:05Z".to_string(),
                reason: "connect: connection refused".to_string(),
                active_connections: 0,
            },
        ],
        warnings: vec![
            "VRRPv2 router 192.0.2.12 (priority 101) advertises VRID 51, last 1s ago: it cannot hear this \
             version-3 node, so both may hold the VIP; set vrrp.version: mixed while it runs"
                .to_string(),
        ],
    }
}

pub(crate) struct Running {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub live: Arc<AtomicBool>,
    pub ready: Arc<AtomicBool>,
}

pub(crate) async fn start() -> Running {
    let mut registry = Registry::default();
    let c: Counter = Counter::default();
    c.inc_by(7);
    registry.register("vipd_test_events", "Events seen by the test", c);
    let live = Arc::new(AtomicBool::new(true));
    let ready = Arc::new(AtomicBool::new(false));
    let (l, r) = (live.clone(), ready.clone());
    let state = AdminState::new(
        Arc::new(registry),
        sample_doc,
        move || {
            if l.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("vrrp task stopped".to_string())
            }
        },
        move || {
            if r.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("proxy not listening yet".to_string())
            }
        },
    );
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(listener, state, stop.clone()));
    Running {
        addr,
        stop,
        task,
        live,
        ready,
    }
}

/// One request with the hyper client: status, content type, body.
async fn request(addr: SocketAddr, method: Method, path: &str) -> (StatusCode, String, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String, String) {
    request(addr, Method::GET, path).await
}

#[tokio::test]
async fn healthz_follows_liveness() {
    let s = start().await;
    assert_eq!(get(s.addr, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(s.addr, "/healthz").await.2, "ok\n");
    s.live.store(false, Ordering::SeqCst);
    let (code, _, body) = get(s.addr, "/healthz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "vrrp task stopped\n");
    s.stop.cancel();
    s.task.await.unwrap();
}

#[tokio::test]
async fn readyz_follows_readiness() {
    let s = start().await;
    let (code, _, body) = get(s.addr, "/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "proxy not listening yet\n");
    s.ready.store(true, Ordering::SeqCst);
    assert_eq!(
        get(s.addr, "/readyz").await,
        (
            StatusCode::OK,
            "text/plain; charset=utf-8".to_string(),
            "ready\n".to_string()
        )
    );
    s.stop.cancel();
    s.task.await.unwrap();
}

#[tokio::test]
async fn metrics_are_openmetrics_text() {
    let s = start().await;
    let (code, ct, body) = get(s.addr, "/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ct, OPENMETRICS);
    assert!(
        body.contains("# HELP vipd_test_events Events seen by the test.\n"),
        "{body}"
    );
    assert!(body.contains("# TYPE vipd_test_events counter\n"), "{body}");
    assert!(body.contains("vipd_test_events_total 7\n"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    s.stop.cancel();
    s.task.await.unwrap();
}

#[tokio::test]
async fn status_is_the_json_document() {
    let s = start().await;
    let (code, ct, body) = get(s.addr, "/status").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ct, "application/json");
    let doc: StatusDoc = serde_json::from_str(&body).unwrap();
    assert_eq!(doc, sample_doc());
    s.stop.cancel();
    s.task.await.unwrap();
}

#[test]
fn status_json_has_the_documented_shape() {
    let v = serde_json::to_value(sample_doc()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "node": "lb-1",
            "vrrp": {"state": "master", "vrid": 51, "priority": 100, "effectivePriority": 50,
                     "masterAddress": "192.0.2.11", "advertInterval": "1s", "transitions": 3,
                     "version": "3"},
            "vip": {"address": "192.0.2.100", "held": true},
            "proxy": {"listen": "192.0.2.100:443", "activeConnections": 12, "totalConnections": 3456},
            "backends": [
                {"address": "192.0.2.20:6443", "healthy": true, "since": "2026-11-25T09:00:00Z",
                 "reason": "GET /readyz: 200", "activeConnections": 12},
                {"address": "[2001:db8::21]:6443", "healthy": false, "since": "2026-11-25T09:10:05Z",
                 "reason": "connect: connection refused", "activeConnections": 0}
            ],
            "warnings": [sample_doc().warnings[0]]
        })
    );
    for (state, word) in [
        (VrrpState::Initialize, "initialize"),
        (VrrpState::Backup, "backup"),
        (VrrpState::Master, "master"),
        (VrrpState::Fault, "fault"),
    ] {
        assert_eq!(serde_json::to_value(state).unwrap(), word);
        assert_eq!(state.as_str(), word);
    }
}

#[tokio::test]
async fn other_paths_and_methods() {
    let s = start().await;
    assert_eq!(get(s.addr, "/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        request(s.addr, Method::POST, "/status").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let (code, _, body) = request(s.addr, Method::HEAD, "/healthz").await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, ""));
    s.stop.cancel();
    s.task.await.unwrap();
}

/// The metrics listener (`metrics.listen`) serves the same registry on `/metrics` and nothing else.
#[tokio::test]
async fn metrics_only_state_serves_metrics_and_nothing_else() {
    let mut registry = Registry::default();
    let c: Counter = Counter::default();
    c.inc_by(3);
    registry.register("vipd_test_events", "Events seen by the test", c);
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        AdminState::metrics_only(Arc::new(registry)),
        stop.clone(),
    ));
    let (code, ct, body) = get(addr, "/metrics").await;
    assert_eq!((code, ct.as_str()), (StatusCode::OK, OPENMETRICS));
    assert!(body.contains("vipd_test_events_total 3\n"), "{body}");
    for path in ["/status", "/healthz", "/readyz", "/"] {
        let (code, _, body) = get(addr, path).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body, "not found; only /metrics is served here\n", "{path}");
    }
    assert_eq!(
        request(addr, Method::POST, "/metrics").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let s = start().await;
    assert_eq!(get(s.addr, "/healthz").await.0, StatusCode::OK);
    s.stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), s.task)
        .await
        .expect("serve returns promptly")
        .unwrap();
    assert!(TcpStream::connect(s.addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn fetch_status_round_trip_and_errors() {
    let s = start().await;
    let (doc, raw) = fetch_status(&format!("http://{}", s.addr), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(doc, sample_doc());
    assert!(raw.contains("\"effectivePriority\": 50"), "{raw}");
    // A bare host:port works too, and a trailing slash.
    assert!(fetch_status(&s.addr.to_string(), Duration::from_secs(5))
        .await
        .is_ok());
    assert!(
        fetch_status(&format!("http://{}/", s.addr), Duration::from_secs(5))
            .await
            .is_ok()
    );
    // Something that answers, but not with a status document.
    match fetch_status(&format!("http://{}/nope", s.addr), Duration::from_secs(5)).await {
        Err(FetchError::BadResponse { why, .. }) => assert!(why.starts_with("HTTP 404"), "{why}"),
        other => panic!("{other:?}"),
    }
    s.stop.cancel();
    s.task.await.unwrap();
    match fetch_status(&s.addr.to_string(), Duration::from_secs(5)).await {
        Err(e @ FetchError::NoDaemon { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("no vipd answers at http://{}/status: ", s.addr)),
                "{msg}"
            );
            assert!(msg.contains("--admin URL"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        fetch_status("https://127.0.0.1:9440", Duration::from_secs(1)).await,
        Err(FetchError::BadUrl(_))
    ));
    assert!(matches!(
        fetch_status("http://[::1", Duration::from_secs(1)).await,
        Err(FetchError::BadUrl(_))
    ));
}

#[tokio::test]
async fn fetch_status_times_out_on_a_silent_peer() {
    // Accepts and never answers.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    match fetch_status(&addr.to_string(), Duration::from_millis(300)).await {
        Err(FetchError::NoDaemon { why, .. }) => assert_eq!(why, "no answer within 300ms"),
        other => panic!("{other:?}"),
    }
    hold.abort();
}

#[test]
fn status_table_golden() {
    let mut doc = sample_doc();
    let mut got = render_status(&doc);
    doc.vrrp.state = VrrpState::Backup;
    doc.vrrp.effective_priority = 100;
    doc.vrrp.master_address = None;
    doc.vip.held = false;
    doc.backends.clear();
    doc.warnings.clear();
    doc.vrrp.version = "mixed".to_string();
    got.push_str("---\n");
    got.push_str(&render_status(&doc));
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/status/table.out");
    crate::golden::compare(&file, &got);
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00Z"
    );
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_599_000)),
        "2026-11-25T09:30:00Z"
    );
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
        "2099-12-31T23:59:59Z"
    );
}
