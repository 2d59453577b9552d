//! The fake apiserver, in process and as the `fake-apiserver` binary.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nix::sys::signal::Signal;
use vipd_lab::apiserver::{
    get, watch_lines, ClientOpts, FakeApiserver, FakeConfig, FakeProcess, ServerCertSpec,
    ServerTls, TestPki, Validity,
};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn loopback0() -> SocketAddr {
    SocketAddr::new(LO, 0)
}

#[tokio::test]
async fn in_process_readyz_version_stall_and_watch() {
    let pki = TestPki::new("lab-ca").unwrap();
    let files = pki
        .server_cert("apiserver-a", &ServerCertSpec::ips([LO]))
        .unwrap();
    let tls = ServerTls {
        cert: files.cert,
        key: files.key,
        client_ca: None,
    };
    let server = FakeApiserver::start(FakeConfig::new("apiserver-a", loopback0(), Some(tls)))
        .await
        .unwrap();
    let opts = ClientOpts {
        ca: Some(pki.ca_cert().to_path_buf()),
        ..Default::default()
    };

    let (status, body) = get(server.addr(), &opts, "/readyz").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = get(server.addr(), &opts, "/version").await.unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "apiserver-a");

    server.set_ready(false);
    assert_eq!(get(server.addr(), &opts, "/readyz").await.unwrap().0, 500);
    server.set_ready(true);

    // Stalled: the TCP connection is accepted but nothing answers.
    server.set_stall(true);
    let before = server.stats().connections;
    let short = ClientOpts {
        timeout: Some(Duration::from_millis(300)),
        ..opts.clone()
    };
    let err = get(server.addr(), &short, "/readyz").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(
        server.stats().connections,
        before + 1,
        "stalled server still accepts TCP"
    );
    server.set_stall(false);
    assert_eq!(get(server.addr(), &opts, "/readyz").await.unwrap().0, 200);

    // A watch sends lines until the client leaves.
    let (status, lines) = watch_lines(server.addr(), &opts, "/watch?interval_ms=20", 5)
        .await
        .unwrap();
    assert_eq!(status, 200);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            (v["name"].as_str(), v["seq"].as_u64()),
            (Some("apiserver-a"), Some(i as u64 + 1))
        );
    }
    // Having left, the client's connection is closed on the server side too.
    let mut closed = false;
    for _ in 0..100 {
        if server.stats().active == 0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        closed,
        "watch connection still open after the client left: {:?}",
        server.stats()
    );
    // A stalled server pauses running streams.
    let stalled = ClientOpts {
        timeout: Some(Duration::from_millis(300)),
        ..opts.clone()
    };
    let watcher = {
        let (addr, stalled) = (server.addr(), stalled.clone());
        tokio::spawn(
            async move { watch_lines(addr, &stalled, "/watch?interval_ms=20", 1000).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.set_stall(true);
    let err = watcher.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("stalled"), "{err}");
    server.set_stall(false);

    // Wrong names and expired certificates are refused by a verifying client.
    let wrong = ClientOpts {
        server_name: Some("other.example".into()),
        ..opts.clone()
    };
    assert!(get(server.addr(), &wrong, "/readyz").await.is_err());
    server.shutdown().await;

    let expired = pki
        .server_cert(
            "old",
            &ServerCertSpec::ips([LO]).validity(Validity::Expired),
        )
        .unwrap();
    let tls = ServerTls {
        cert: expired.cert,
        key: expired.key,
        client_ca: None,
    };
    let server = FakeApiserver::start(FakeConfig::new("old", loopback0(), Some(tls)))
        .await
        .unwrap();
    let err = get(server.addr(), &opts, "/readyz").await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("expired"), "{err}");
}

#[tokio::test]
async fn client_certificate_required() {
    let pki = TestPki::new("lab-ca").unwrap();
    let files = pki
        .server_cert("a", &ServerCertSpec::ips([LO]).dns("a.example"))
        .unwrap();
    let client = pki.client_cert("vipd").unwrap();
    let tls = ServerTls {
        cert: files.cert,
        key: files.key,
        client_ca: Some(pki.ca_cert().to_path_buf()),
    };
    let server = FakeApiserver::start(FakeConfig::new("a", loopback0(), Some(tls)))
        .await
        .unwrap();
    let mut opts = ClientOpts {
        ca: Some(pki.ca_cert().to_path_buf()),
        server_name: Some("a.example".into()),
        ..Default::default()
    };
    assert!(
        get(server.addr(), &opts, "/readyz").await.is_err(),
        "no client certificate must be refused"
    );
    opts.client_cert = Some(client);
    assert_eq!(get(server.addr(), &opts, "/readyz").await.unwrap().0, 200);
}

#[tokio::test]
async fn binary_signals_control_port_and_clean_exit() {
    let pki = TestPki::new("lab-ca").unwrap();
    let files = pki.server_cert("bin", &ServerCertSpec::ips([LO])).unwrap();
    let extra = ["--control", "127.0.0.1:0"];
    let proc = FakeProcess::spawn_https((LO, 0).into(), &files, "apiserver-bin", &extra).unwrap();
    let opts = ClientOpts {
        ca: Some(pki.ca_cert().to_path_buf()),
        ..Default::default()
    };
    let (status, body) = get(proc.addr(), &opts, "/version").await.unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "apiserver-bin");
    assert_eq!(v["pid"], proc.pid().as_raw());

    // SIGUSR1 toggles ready; the change is asynchronous, so poll briefly.
    proc.signal(Signal::SIGUSR1).unwrap();
    assert!(
        wait_status(&proc, &opts, 500).await,
        "SIGUSR1 should make /readyz answer 500"
    );
    proc.signal(Signal::SIGUSR1).unwrap();
    assert!(
        wait_status(&proc, &opts, 200).await,
        "second SIGUSR1 should restore 200"
    );

    // The control port does the same over plain HTTP.
    let ctl = proc.control().unwrap();
    let (status, _) = get(ctl, &ClientOpts::default(), "/ready/off")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(get(proc.addr(), &opts, "/readyz").await.unwrap().0, 500);
    let (_, state) = get(ctl, &ClientOpts::default(), "/state").await.unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["ready"], false);
    get(ctl, &ClientOpts::default(), "/stall/on").await.unwrap();
    let short = ClientOpts {
        timeout: Some(Duration::from_millis(300)),
        ..opts.clone()
    };
    assert!(get(proc.addr(), &short, "/readyz").await.is_err());
    get(ctl, &ClientOpts::default(), "/stall/off")
        .await
        .unwrap();
    get(ctl, &ClientOpts::default(), "/ready/on").await.unwrap();
    assert_eq!(get(proc.addr(), &opts, "/readyz").await.unwrap().0, 200);

    let status = proc.terminate().unwrap();
    assert!(
        status.success(),
        "SIGTERM should exit cleanly, got {status:?}"
    );
}

async fn wait_status(proc: &FakeProcess, opts: &ClientOpts, want: u16) -> bool {
    for _ in 0..100 {
        if let Ok((s, _)) = get(proc.addr(), opts, "/readyz").await {
            if s == want {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
