//! TCP checks, the check schedule, reconfiguration without leaks, shutdown, and start-up errors.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use health::{Check, HealthChecker, HealthConfig, HealthError, HttpsCheck};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use vipd_lab::apiserver::TestPki;

/// A TCP listener recording when each connection arrived.
struct Counting {
    addr: SocketAddr,
    accepts: Arc<Mutex<Vec<Instant>>>,
    task: JoinHandle<()>,
}

impl Counting {
    async fn start() -> Self {
        let listener = TcpListener::bind((LO4, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(Mutex::new(Vec::new()));
        let a = accepts.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                a.lock().unwrap().push(Instant::now());
                drop(sock);
            }
        });
        Self {
            addr,
            accepts,
            task,
        }
    }

    fn count(&self) -> usize {
        self.accepts.lock().unwrap().len()
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn tcp_check_up_then_refused() {
    init_tracing();
    let srv = Counting::start().await;
    let checker = HealthChecker::start(fast(Check::Tcp), vec![srv.addr]).unwrap();
    let mut rx = checker.subscribe();
    wait_up(&mut rx, srv.addr).await;
    drop(srv); // closes the listener
    let (b, _) = wait_down(&mut rx, checker.snapshot()[0].addr, "connection refused").await;
    assert!(b.consecutive_failures >= 2);
    checker.shutdown().await;
}

#[tokio::test]
async fn tcp_check_passes_against_a_listener_that_never_accepts() {
    // The kernel completes TCP handshakes for a listener whose process never calls accept (a wedged or
    // stopped apiserver), so a TCP check passes: the documented limit of TCP checks, and why HTTPS is the
    // default. This pins that behaviour so nobody mistakes TCP checks for liveness checks.
    init_tracing();
    let std_listener = std::net::TcpListener::bind((LO4, 0)).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let checker = HealthChecker::start(fast(Check::Tcp), vec![addr]).unwrap();
    wait_up(&mut checker.subscribe(), addr).await;
    checker.shutdown().await;
    drop(std_listener);
}

#[tokio::test]
async fn jitter_keeps_the_mean_interval_and_spreads_checks() {
    init_tracing();
    let srv = Counting::start().await;
    let mut cfg = fast(Check::Tcp);
    cfg.interval = Duration::from_millis(40);
    let checker = HealthChecker::start(cfg, vec![srv.addr]).unwrap();
    let run = Duration::from_millis(2000);
    tokio::time::sleep(run).await;
    checker.shutdown().await;
    let times = srv.accepts.lock().unwrap().clone();
    assert!(times.len() >= 20, "too few checks: {}", times.len());
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    // Mean interval close to 40 ms (deadline-based schedule; slack for a loaded machine).
    assert!(
        (34.0..=48.0).contains(&mean),
        "mean gap {mean:.1} ms over {} gaps",
        gaps.len()
    );
    let (min, max) = gaps
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), g| (a.min(*g), b.max(*g)));
    assert!(
        max - min > 2.0,
        "gaps should vary with jitter: {min:.1}..{max:.1} ms"
    );
}

#[tokio::test]
async fn reconfigure_adds_removes_and_keeps_state_without_leaking_tasks() {
    init_tracing();
    let a = Counting::start().await;
    let b = Counting::start().await;
    let c = Counting::start().await;
    let checker = HealthChecker::start(fast(Check::Tcp), vec![a.addr, b.addr, b.addr]).unwrap();
    let mut rx = checker.subscribe();
    assert_eq!(checker.task_count(), 2, "duplicate backend checked once");
    wait_up(&mut rx, a.addr).await;
    let (b_before, _) = wait_up(&mut rx, b.addr).await;

    checker
        .reconfigure(fast(Check::Tcp), vec![c.addr, b.addr])
        .unwrap();
    let snap = checker.snapshot();
    let order: Vec<_> = snap.iter().map(|h| h.addr).collect();
    assert_eq!(
        order,
        vec![c.addr, b.addr],
        "snapshot follows the new order, without the removed backend"
    );
    let b_kept = find(&snap, b.addr).unwrap();
    assert!(
        b_kept.healthy && b_kept.since == b_before.since && b_kept.checks >= b_before.checks,
        "{b_kept:#?}"
    );
    assert!(
        !find(&snap, c.addr).unwrap().healthy,
        "a new backend starts down"
    );
    wait_up(&mut rx, c.addr).await;

    // The removed backend's task ends and its server sees no more connections.
    let deadline = Instant::now() + Duration::from_secs(2);
    while checker.task_count() != 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(checker.task_count(), 2);
    let a_count = a.count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.count(), a_count, "removed backend still checked");
    assert!(b.count() > 3 && c.count() > 3);

    // Many reloads do not accumulate tasks.
    for i in 0..20 {
        let set = if i % 2 == 0 {
            vec![a.addr, b.addr]
        } else {
            vec![b.addr, c.addr]
        };
        checker.reconfigure(fast(Check::Tcp), set).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while checker.task_count() != 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(checker.task_count(), 2);

    // Removing everything ends every task; shutting down too.
    checker.reconfigure(fast(Check::Tcp), vec![]).unwrap();
    assert!(checker.snapshot().is_empty());
    let deadline = Instant::now() + Duration::from_secs(2);
    while checker.task_count() != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(checker.task_count(), 0);
    checker.shutdown().await;
}

#[tokio::test]
async fn reconfigure_switches_check_kind_and_interval() {
    init_tracing();
    let pki = TestPki::new("ca").unwrap();
    let srv = server(&pki, "a", LO4).await;
    let mut slow = fast(Check::Tcp);
    slow.interval = Duration::from_secs(30);
    let checker = HealthChecker::start(slow, vec![srv.addr()]).unwrap();
    let mut rx = checker.subscribe();
    wait_up(&mut rx, srv.addr()).await;
    // The 30 s wait in progress is cut short by the new interval, and the HTTPS check now sees the 500.
    srv.set_ready(false);
    checker
        .reconfigure(fast(Check::Https(https(&pki))), vec![srv.addr()])
        .unwrap();
    wait_down(&mut rx, srv.addr(), "HTTP 500").await;
    checker.shutdown().await;
}

#[tokio::test]
async fn dropping_the_checker_stops_its_checks() {
    init_tracing();
    let srv = Counting::start().await;
    let checker = HealthChecker::start(fast(Check::Tcp), vec![srv.addr]).unwrap();
    wait_up(&mut checker.subscribe(), srv.addr).await;
    drop(checker);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = srv.count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(srv.count(), n);
}

fn https_with(ca: Option<PathBuf>) -> HealthConfig {
    fast(Check::Https(HttpsCheck {
        ca_file: ca,
        ..HttpsCheck::default()
    }))
}

#[tokio::test]
async fn bad_settings_and_files_are_errors_and_start_nothing() {
    let pki = TestPki::new("ca").unwrap();
    let srv = Counting::start().await;
    let backends = vec![srv.addr];
    let missing = pki.dir().join("missing.crt");
    assert!(matches!(
        HealthChecker::start(https_with(Some(missing)), backends.clone()),
        Err(HealthError::ReadFile { .. })
    ));
    let garbage = pki.dir().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let err = HealthChecker::start(https_with(Some(garbage)), backends.clone()).unwrap_err();
    assert!(matches!(err, HealthError::BadPem { .. }), "{err}");
    assert!(matches!(
        HealthChecker::start(https_with(None), backends.clone()),
        Err(HealthError::InvalidConfig(_))
    ));

    let client = pki.client_cert("c").unwrap();
    let half = HttpsCheck {
        client_cert: Some(client.cert.clone()),
        ..https(&pki)
    };
    assert!(matches!(
        HealthChecker::start(fast(Check::Https(half)), backends.clone()),
        Err(HealthError::InvalidConfig(_))
    ));
    let other = pki.client_cert("d").unwrap();
    let mismatched = HttpsCheck {
        client_cert: Some(client.cert),
        client_key: Some(other.key),
        ..https(&pki)
    };
    let err = HealthChecker::start(fast(Check::Https(mismatched)), backends.clone()).unwrap_err();
    assert!(err.to_string().contains("do not fit"), "{err}");

    for bad in [
        HealthConfig {
            interval: Duration::ZERO,
            ..fast(Check::Tcp)
        },
        HealthConfig {
            timeout: Duration::ZERO,
            ..fast(Check::Tcp)
        },
        HealthConfig {
            rise: 0,
            ..fast(Check::Tcp)
        },
        HealthConfig {
            fall: 0,
            ..fast(Check::Tcp)
        },
        fast(Check::Https(HttpsCheck {
            path: "readyz".into(),
            ..https(&pki)
        })),
        fast(Check::Https(HttpsCheck {
            expect_status: 42,
            ..https(&pki)
        })),
        fast(Check::Https(HttpsCheck {
            server_name: Some("bad name!".into()),
            ..https(&pki)
        })),
    ] {
        assert!(
            matches!(
                HealthChecker::start(bad.clone(), backends.clone()),
                Err(HealthError::InvalidConfig(_))
            ),
            "{bad:?}"
        );
    }

    // A failed reconfigure changes nothing.
    let checker = HealthChecker::start(fast(Check::Tcp), backends.clone()).unwrap();
    wait_up(&mut checker.subscribe(), srv.addr).await;
    let bad = https_with(Some(pki.dir().join("missing.crt")));
    assert!(checker.reconfigure(bad, vec![]).is_err());
    assert_eq!(checker.snapshot().len(), 1);
    assert_eq!(checker.task_count(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(find(&checker.snapshot(), srv.addr).unwrap().healthy);
    checker.shutdown().await;
    assert!(srv.count() > 0);
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let err = HealthChecker::start(fast(Check::Tcp), vec![SocketAddr::from((LO4, 1))]).unwrap_err();
    assert!(matches!(err, HealthError::NoRuntime));
}
