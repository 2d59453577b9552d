//! Helpers shared by the health integration tests.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use health::{BackendHealth, Check, HealthConfig, HttpsCheck, Snapshot};
use tokio::sync::watch;
use vipd_lab::apiserver::{FakeApiserver, FakeConfig, ServerCertSpec, ServerTls, TestPki};

pub const LO4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LO6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("health=debug")
        .try_init();
}

/// Fast settings: checks every 50 ms, 250 ms timeout, rise 2, fall 2.
pub fn fast(check: Check) -> HealthConfig {
    HealthConfig {
        check,
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(250),
        rise: 2,
        fall: 2,
    }
}

pub fn https(pki: &TestPki) -> HttpsCheck {
    HttpsCheck {
        ca_file: Some(pki.ca_cert().to_path_buf()),
        ..HttpsCheck::default()
    }
}

/// A TLS fake apiserver on `ip` with a certificate for exactly that IP.
pub async fn server(pki: &TestPki, name: &str, ip: IpAddr) -> FakeApiserver {
    server_with(pki, name, ip, &ServerCertSpec::ips([ip]), None).await
}

pub async fn server_with(
    pki: &TestPki,
    name: &str,
    ip: IpAddr,
    spec: &ServerCertSpec,
    client_ca: Option<&TestPki>,
) -> FakeApiserver {
    let files = pki.server_cert(name, spec).unwrap();
    let tls = ServerTls {
        cert: files.cert,
        key: files.key,
        client_ca: client_ca.map(|p| p.ca_cert().to_path_buf()),
    };
    FakeApiserver::start(FakeConfig::new(name, SocketAddr::new(ip, 0), Some(tls)))
        .await
        .unwrap()
}

pub fn find(s: &Snapshot, addr: SocketAddr) -> Option<BackendHealth> {
    s.iter().find(|b| b.addr == addr).cloned()
}

/// Waits until the backend's state satisfies `pred`; returns it and the time waited, or panics with the
/// last state seen.
pub async fn wait_for(
    rx: &mut watch::Receiver<Snapshot>,
    addr: SocketAddr,
    within: Duration,
    what: &str,
    pred: impl Fn(&BackendHealth) -> bool,
) -> (BackendHealth, Duration) {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let current = find(&rx.borrow_and_update(), addr);
        if let Some(b) = &current {
            if pred(b) {
                return (b.clone(), start.elapsed());
            }
        }
        // Counters change without notification: poll as well as wait.
        let tick = tokio::time::Instant::now() + Duration::from_millis(20);
        let _ = tokio::time::timeout_at(tick.min(deadline), rx.changed()).await;
        if tokio::time::Instant::now() >= deadline {
            let last = find(&rx.borrow(), addr);
            panic!("{addr}: not {what} within {within:?}; last state: {last:#?}");
        }
    }
}

pub async fn wait_up(
    rx: &mut watch::Receiver<Snapshot>,
    addr: SocketAddr,
) -> (BackendHealth, Duration) {
    wait_for(rx, addr, Duration::from_secs(5), "up", |b| b.healthy).await
}

/// Waits for a down state whose reason starts with `reason`.
pub async fn wait_down(
    rx: &mut watch::Receiver<Snapshot>,
    addr: SocketAddr,
    reason: &str,
) -> (BackendHealth, Duration) {
    wait_for(
        rx,
        addr,
        Duration::from_secs(5),
        &format!("down with {reason:?}"),
        |b| !b.healthy && b.reason.as_deref().is_some_and(|r| r.starts_with(reason)),
    )
    .await
}
