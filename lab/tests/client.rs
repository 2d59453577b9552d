//! The lab's client of the VIP ([`vipd_lab::client`]) against fake apiservers: what one request reports
//! (answer, TLS verified against the CA, connect retries, timeouts), and the [`Probe`] loop inside a
//! namespace, its samples and the outage it measures across a stall.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use vipd_lab::apiserver::{
    ClientOpts, FakeApiserver, FakeConfig, NsApiserver, ServerCertSpec, ServerTls, TestPki,
};
use vipd_lab::client::{request, wait_served, Probe, ProbeSpec, Retries};
use vipd_lab::netns::{spawn_in_netns, Netns};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn opts(ca: Option<&TestPki>, timeout_ms: u64) -> ClientOpts {
    ClientOpts {
        ca: ca.map(|p| p.ca_cert().to_path_buf()),
        timeout: Some(Duration::from_millis(timeout_ms)),
        ..ClientOpts::default()
    }
}

async fn tls_server(pki: &TestPki, name: &str) -> FakeApiserver {
    let files = pki.server_cert(name, &ServerCertSpec::ips([LO])).unwrap();
    let tls = ServerTls {
        cert: files.cert,
        key: files.key,
        client_ca: None,
    };
    FakeApiserver::start(FakeConfig::new(name, SocketAddr::new(LO, 0), Some(tls)))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_request_names_who_answered_and_verifies_the_ca() {
    let pki = TestPki::new("client-ca").unwrap();
    let server = tls_server(&pki, "api7").await;
    let s = request(server.addr(), &opts(Some(&pki), 2000), Retries::NONE).await;
    assert_eq!((s.result, s.attempts), (Ok("api7".to_string()), 1));
    assert!(s.end >= s.start);

    // Another CA: the TLS handshake fails after the connect, so it is no connect failure and is retried as
    // "other" only.
    let other = TestPki::new("client-other-ca").unwrap();
    let retries = Retries {
        connect: 3,
        other: 1,
    };
    let s = request(server.addr(), &opts(Some(&other), 2000), retries).await;
    let why = s.result.unwrap_err();
    assert!(!why.starts_with("connect"), "{why}");
    assert_eq!(s.attempts, 2);
}

#[test]
fn a_refused_connect_is_retried_apart_and_says_connect() {
    // A fresh namespace: nothing listens on its loopback (the root namespace's ports are shared and reused).
    let ns = Netns::new("refused").unwrap();
    let retries = Retries {
        connect: 2,
        other: 0,
    };
    let (s, took) = spawn_in_netns(ns.name(), "client", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let t = Instant::now();
        let s = rt.block_on(request(
            SocketAddr::new(LO, 6443),
            &opts(None, 1000),
            retries,
        ));
        (s, t.elapsed())
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(
        (s.result, s.attempts),
        (Err("connect: connection refused".to_string()), 3)
    );
    // Two 50 ms pauses between the three attempts.
    assert!(took >= Duration::from_millis(100), "{took:?}");
}

#[tokio::test]
async fn a_stalled_server_times_out_within_one_attempt_bound() {
    let server = FakeApiserver::start(FakeConfig::new("stuck", SocketAddr::new(LO, 0), None))
        .await
        .unwrap();
    server.set_stall(true);
    let t = Instant::now();
    let s = request(server.addr(), &opts(None, 300), Retries::NONE).await;
    let took = t.elapsed();
    assert_eq!((s.result, s.attempts), (Err("timed out".to_string()), 1));
    // Connect, TLS and GET share the one bound: not twice it (generous for a loaded machine).
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(590),
        "{took:?}"
    );
    server.set_stall(false);
    let s = request(server.addr(), &opts(None, 300), Retries::NONE).await;
    assert_eq!(s.result, Ok("stuck".to_string()));
}

#[test]
fn a_probe_in_a_namespace_measures_a_stall_as_its_outage() {
    let ns = Netns::new("probe").unwrap();
    let listen = SocketAddr::new(LO, 0);
    let server = NsApiserver::start(ns.name(), FakeConfig::new("in-ns", listen, None)).unwrap();
    let addr = server.addr();
    assert_eq!(
        wait_served(ns.name(), addr, opts(None, 500), Duration::from_secs(10)).unwrap(),
        Some("in-ns".to_string())
    );

    let probe = Probe::start(ns.name(), ProbeSpec::new(addr, opts(None, 200))).unwrap();
    let t0 = Instant::now();
    assert!(probe.wait_successes_after(t0, 5, Duration::from_secs(10)));
    assert!(probe.is_running());
    let t_stall = Instant::now();
    server.handle().set_stall(true);
    std::thread::sleep(Duration::from_millis(800));
    server.handle().set_stall(false);
    let t_back = Instant::now();
    assert!(probe.wait_successes_after(t_back, 5, Duration::from_secs(10)));
    let t_end = Instant::now();

    // Nobody was served for the whole stall: the outage covers it, and is bounded by it plus one attempt's
    // timeout and the loop's pauses (generous for a loaded machine).
    let outage = probe.outage(t0, t_end);
    assert!(outage >= Duration::from_millis(700), "{outage:?}");
    assert!(outage < Duration::from_millis(800 + 1500), "{outage:?}");
    let fails = probe.failures(t_stall, t_back);
    assert!(!fails.is_empty());
    assert!(fails
        .iter()
        .all(|s| s.result.as_ref().err().map(String::as_str) == Some("timed out")));
    assert_eq!(probe.last_failures(1), ["timed out"]);
    assert_eq!(probe.names(t0, t_end), ["in-ns"]);
    assert!(probe.failures(t0, t_stall).is_empty());
    assert_eq!(probe.since(probe.len()), []);
    drop(probe); // stops and joins its thread
    server.stop();
}
