//! `vipd status` as an operator runs it: the real binary against an admin server started in this process,
//! and against a port where nothing listens.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vipd::admin::{self, AdminState, ProxyStatus, StatusDoc, VipStatus, VrrpState, VrrpStatus};

fn doc() -> StatusDoc {
    StatusDoc {
        node: "lb-2".to_string(),
        vrrp: VrrpStatus {
            state: VrrpState::Backup,
            vrid: 51,
            priority: 90,
            effective_priority: 90,
            master_address: Some("192.0.2.11".parse().unwrap()),
            advert_interval: "1s".to_string(),
            transitions: 1,
            version: "3".to_string(),
        },
        vip: VipStatus {
            address: "192.0.2.100".parse().unwrap(),
            held: false,
        },
        proxy: ProxyStatus {
            listen: "192.0.2.100:443".parse().unwrap(),
            active_connections: 0,
            total_connections: 0,
        },
        backends: vec![],
        warnings: vec![],
    }
}

async fn run_vipd(args: Vec<String>) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run vipd")
}

#[tokio::test]
async fn status_against_a_running_admin_server() {
    let listener = admin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AdminState::new(Arc::new(Default::default()), doc, || Ok(()), || Ok(()));
    let stop = CancellationToken::new();
    let server = tokio::spawn(admin::serve(listener, state, stop.clone()));

    let out = run_vipd(vec![
        "status".into(),
        "--admin".into(),
        format!("http://{addr}"),
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("node      lb-2\nvrrp      BACKUP, vrid 51, priority 90"),
        "{text}"
    );
    assert!(text.contains("master 192.0.2.11"), "{text}");

    let out = run_vipd(vec![
        "status".into(),
        "--json".into(),
        "--admin".into(),
        addr.to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0));
    let got: StatusDoc = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, doc());

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn status_without_a_daemon_exits_3_with_a_clear_message() {
    // A port that was just free: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_vipd(vec![
        "status".into(),
        "--admin".into(),
        format!("http://127.0.0.1:{port}"),
    ])
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let msg = String::from_utf8(out.stderr).unwrap();
    assert!(
        msg.starts_with(&format!(
            "vipd status: no vipd answers at http://127.0.0.1:{port}/status: "
        )),
        "{msg}"
    );
    assert!(msg.contains("Is vipd running"), "{msg}");
}
