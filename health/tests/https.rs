//! HTTPS checks against in-process fake apiservers: rise/fall, every failure reason, recovery, client
//! certificates, serverName, insecureSkipVerify.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use health::{Check, HealthChecker, HttpsCheck};
use vipd_lab::apiserver::{FakeApiserver, ServerCertSpec, TestPki, Validity};

#[tokio::test]
async fn up_at_first_success_down_after_fall_on_500_up_after_rise() {
    init_tracing();
    let pki = TestPki::new("ca").unwrap();
    let srv = server(&pki, "a", LO4).await;
    srv.set_ready(false);
    // rise 1000: only the first-success rule can bring this backend up.
    let mut cfg = fast(Check::Https(https(&pki)));
    cfg.rise = 1000;
    let checker = HealthChecker::start(cfg.clone(), vec![srv.addr()]).unwrap();
    let mut rx = checker.subscribe();
    let (b, _) = wait_down(&mut rx, srv.addr(), "HTTP 500").await;
    assert!(!b.healthy);

    srv.set_ready(true);
    let (b, _) = wait_up(&mut rx, srv.addr()).await;
    assert_eq!(b.reason, None);
    assert!(b.consecutive_successes < 1000);

    // Down after `fall` consecutive 500s.
    srv.set_ready(false);
    let (b, _) = wait_down(&mut rx, srv.addr(), "HTTP 500").await;
    assert!(b.consecutive_failures >= 2, "{b:#?}");
    assert_eq!(b.reason.as_deref(), Some("HTTP 500"));

    // Same backend, rise 3: the state is kept across the reconfigure...
    cfg.rise = 3;
    checker.reconfigure(cfg, vec![srv.addr()]).unwrap();
    let kept = find(&checker.snapshot(), srv.addr()).unwrap();
    assert!(
        !kept.healthy && kept.checks >= b.checks && kept.since == b.since,
        "{kept:#?}"
    );

    // ...and recovery now takes `rise` successes: it was up before.
    srv.set_ready(true);
    let (b, _) = wait_up(&mut rx, srv.addr()).await;
    assert!(
        b.consecutive_successes >= 3,
        "up only after rise=3 successes: {b:#?}"
    );
    assert!(b.failures >= 3, "{b:#?}");
    assert!(b.last_latency.is_some() && b.last_check.is_some());
    checker.shutdown().await;
    // One connection per check, one request per connection (a check cut by shutdown may lack its request).
    let stats = srv.stats();
    assert!(
        stats.requests >= b.checks && stats.connections - stats.requests <= 1,
        "{stats:?}, {b:#?}"
    );
}

#[tokio::test]
async fn refused_after_server_stops_then_recovers_on_ipv6() {
    init_tracing();
    let pki = TestPki::new("ca").unwrap();
    let srv = match std::net::TcpListener::bind((LO6, 0)) {
        Ok(_) => server(&pki, "v6", LO6).await,
        Err(e) => panic!("IPv6 loopback unavailable: {e}"),
    };
    let addr = srv.addr();
    let checker = HealthChecker::start(fast(Check::Https(https(&pki))), vec![addr]).unwrap();
    let mut rx = checker.subscribe();
    wait_up(&mut rx, addr).await;
    srv.shutdown().await;
    let (b, _) = wait_down(&mut rx, addr, "connection refused").await;
    assert_eq!(b.reason.as_deref(), Some("connection refused"));

    // A new server on the same port (the cert is for ::1, the IP checked by default).
    let files = pki.server_cert("v6b", &ServerCertSpec::ips([LO6])).unwrap();
    let tls = vipd_lab::apiserver::ServerTls {
        cert: files.cert,
        key: files.key,
        client_ca: None,
    };
    let srv2 = vipd_lab::apiserver::FakeApiserver::start(vipd_lab::apiserver::FakeConfig::new(
        "v6b",
        addr,
        Some(tls),
    ))
    .await
    .unwrap();
    let (b, _) = wait_up(&mut rx, addr).await;
    assert!(
        b.consecutive_successes >= 2,
        "recovery after having been up takes rise=2: {b:#?}"
    );
    checker.shutdown().await;
    srv2.shutdown().await;
}

#[tokio::test]
async fn stalled_server_times_out_within_fall_interval_timeout() {
    init_tracing();
    let pki = TestPki::new("ca").unwrap();
    let srv = server(&pki, "a", LO4).await;
    let cfg = fast(Check::Https(https(&pki)));
    let bound = cfg.interval * cfg.fall + cfg.timeout * cfg.fall;
    let checker = HealthChecker::start(cfg, vec![srv.addr()]).unwrap();
    let mut rx = checker.subscribe();
    wait_up(&mut rx, srv.addr()).await;
    srv.set_stall(true);
    let (b, took) = wait_down(&mut rx, srv.addr(), "timeout").await;
    assert_eq!(
        b.reason.as_deref(),
        Some("timeout (TLS handshake)"),
        "TCP is accepted, TLS never answered"
    );
    // fall checks each lasting up to `timeout`, spaced by `interval`, plus slack for a loaded machine.
    assert!(
        took < bound + Duration::from_secs(1),
        "took {took:?}, bound {bound:?}"
    );
    let lat = b.last_latency.unwrap();
    assert!(
        lat >= Duration::from_millis(240) && lat < Duration::from_secs(1),
        "a check is cut at its timeout: {lat:?}"
    );
    srv.set_stall(false);
    wait_up(&mut rx, srv.addr()).await;
    checker.shutdown().await;
}

/// A server whose certificate names only the DNS name `apiserver.example` (no IP).
async fn dns_named(pki: &TestPki) -> FakeApiserver {
    let spec = ServerCertSpec::ips([]).dns("apiserver.example");
    server_with(pki, "dns", LO4, &spec, None).await
}

/// A backend the check accepts comes up.
async fn comes_up(check: HttpsCheck, srv_addr: SocketAddr) {
    let checker = HealthChecker::start(fast(Check::Https(check)), vec![srv_addr]).unwrap();
    wait_up(&mut checker.subscribe(), srv_addr).await;
    checker.shutdown().await;
}

/// A backend whose certificate cannot be trusted never comes up, and says why.
async fn never_up(check: HttpsCheck, srv_addr: SocketAddr, reason: &str) {
    let checker = HealthChecker::start(fast(Check::Https(check)), vec![srv_addr]).unwrap();
    let mut rx = checker.subscribe();
    let (b, _) = wait_for(
        &mut rx,
        srv_addr,
        Duration::from_secs(5),
        "failed 3 times",
        |b| b.failures >= 3,
    )
    .await;
    assert!(!b.healthy, "{b:#?}");
    assert_eq!(b.reason.as_deref(), Some(reason), "{b:#?}");
    assert_eq!(b.checks, b.failures, "no check may have passed: {b:#?}");
    checker.shutdown().await;
}

#[tokio::test]
async fn wrong_ca_name_mismatch_and_expired_are_refused_with_reasons() {
    init_tracing();
    let pki = TestPki::new("ca").unwrap();
    let other = TestPki::new("other-ca").unwrap();

    let srv = server(&other, "foreign", LO4).await;
    never_up(https(&pki), srv.addr(), "TLS: unknown CA").await;

    // Certificates of the right CA that do not fit: for 127.0.0.2 only (checked at 127.0.0.1), expired, not yet
    // valid.
    for (name, spec, reason) in [
        (
            "wrongip",
            ServerCertSpec::ips(["127.0.0.2".parse().unwrap()]),
            "TLS: name mismatch",
        ),
        (
            "old",
            ServerCertSpec::ips([LO4]).validity(Validity::Expired),
            "TLS: certificate expired",
        ),
        (
            "new",
            ServerCertSpec::ips([LO4]).validity(Validity::NotYetValid),
            "TLS: certificate not yet valid",
        ),
    ] {
        let srv = server_with(&pki, name, LO4, &spec, None).await;
        never_up(https(&pki), srv.addr(), reason).await;
    }
    // ... and a serverName that is not in the certificate.
    let named = HttpsCheck {
        server_name: Some("apiserver.example".into()),
        ..https(&pki)
    };
    never_up(named, srv.addr(), "TLS: unknown CA").await;
    let named = HttpsCheck {
        server_name: Some("other.example".into()),
        ..https(&pki)
    };
    let dns_srv = dns_named(&pki).await;
    never_up(named, dns_srv.addr(), "TLS: name mismatch").await;
}

#[tokio::test]
async fn server_name_is_verified_instead_of_the_ip_when_set() {
    init_tracing();
    let pki = TestPki::new("ca").unwrap();
    let srv = dns_named(&pki).await;
    let check = HttpsCheck {
        server_name: Some("apiserver.example".into()),
        ..https(&pki)
    };
    comes_up(check, srv.addr()).await;
}

#[tokio::test]
async fn insecure_skip_verify_accepts_an_untrusted_certificate() {
    init_tracing();
    let other = TestPki::new("other-ca").unwrap();
    let srv = server_with(
        &other,
        "x",
        LO4,
        &ServerCertSpec::ips([])
            .dns("elsewhere.example")
            .validity(Validity::Expired),
        None,
    )
    .await;
    let check = HttpsCheck {
        ca_file: None,
        insecure_skip_verify: true,
        ..HttpsCheck::default()
    };
    let checker = HealthChecker::start(fast(Check::Https(check)), vec![srv.addr()]).unwrap();
    let mut rx = checker.subscribe();
    wait_up(&mut rx, srv.addr()).await;
    // Status is still checked.
    srv.set_ready(false);
    wait_down(&mut rx, srv.addr(), "HTTP 500").await;
    checker.shutdown().await;
}

#[tokio::test]
async fn client_certificate_required_supplied_or_missing() {
    init_tracing();
    let pki = TestPki::new("ca").unwrap();
    let srv = server_with(&pki, "mtls", LO4, &ServerCertSpec::ips([LO4]), Some(&pki)).await;
    let client = pki.client_cert("vipd").unwrap();

    let with = HttpsCheck {
        client_cert: Some(client.cert.clone()),
        client_key: Some(client.key.clone()),
        ..https(&pki)
    };
    comes_up(with, srv.addr()).await;

    never_up(
        https(&pki),
        srv.addr(),
        "TLS: server requires a client certificate",
    )
    .await;

    // A client certificate from a CA the server does not trust.
    let other = TestPki::new("other-ca").unwrap();
    let foreign = other.client_cert("intruder").unwrap();
    let wrong = HttpsCheck {
        client_cert: Some(foreign.cert),
        client_key: Some(foreign.key),
        ..https(&pki)
    };
    let checker = HealthChecker::start(fast(Check::Https(wrong)), vec![srv.addr()]).unwrap();
    let mut rx = checker.subscribe();
    let (b, _) = wait_for(
        &mut rx,
        srv.addr(),
        Duration::from_secs(5),
        "failed twice",
        |b| b.failures >= 2,
    )
    .await;
    let r = b.reason.unwrap();
    assert!(
        r.starts_with("TLS: server rejected the client certificate"),
        "{r}"
    );
    checker.shutdown().await;
}
