//! Against a real `fake-apiserver` process: SIGSTOP is detected within `fall * interval + timeout`-ish
//! bounds, and SIGCONT brings the backend back.

mod common;

use std::time::Duration;

use common::*;
use health::{Check, HealthChecker};
use nix::sys::signal::Signal;
use vipd_lab::apiserver::{FakeProcess, ServerCertSpec, TestPki};

#[tokio::test]
async fn sigstopped_apiserver_is_detected_and_sigcont_recovers() {
    init_tracing();
    let pki = TestPki::new("ca").unwrap();
    let files = pki
        .server_cert("proc", &ServerCertSpec::ips([LO4]))
        .unwrap();
    let proc = FakeProcess::spawn_https((LO4, 0).into(), &files, "stopped", &[]).unwrap();
    let cfg = fast(Check::Https(https(&pki)));
    let checker = HealthChecker::start(cfg.clone(), vec![proc.addr()]).unwrap();
    let mut rx = checker.subscribe();
    wait_up(&mut rx, proc.addr()).await;

    proc.signal(Signal::SIGSTOP).unwrap();
    let (b, took) = wait_down(&mut rx, proc.addr(), "timeout").await;
    // The check in flight when the process stopped, then `fall` checks each cut at `timeout`, spaced by
    // `interval`: fall * (interval + timeout) in theory; one second of slack for a loaded machine.
    let bound = (cfg.interval + cfg.timeout) * cfg.fall + Duration::from_secs(1);
    assert!(took <= bound, "detected after {took:?}, bound {bound:?}");
    assert!(
        b.reason.as_deref().unwrap().starts_with("timeout"),
        "{b:#?}"
    );

    proc.signal(Signal::SIGCONT).unwrap();
    wait_up(&mut rx, proc.addr()).await;
    checker.shutdown().await;
    let status = proc.terminate().unwrap();
    assert!(status.success(), "{status:?}");
}
