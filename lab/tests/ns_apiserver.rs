//! A fake apiserver served in process from inside a network namespace ([`NsApiserver`]), and
//! [`spawn_in_netns`]: its socket lives in that namespace only, it is controlled from the test's thread, and it
//! stops cleanly.

use std::net::{Ipv4Addr, SocketAddr};

use vipd_lab::apiserver::{get, ClientOpts, FakeConfig, NsApiserver};
use vipd_lab::netns::{spawn_in_netns, Netns};

/// `GET path` from a thread inside `ns`.
fn get_in(ns: &Netns, addr: SocketAddr, path: &'static str) -> std::io::Result<(u16, String)> {
    spawn_in_netns(ns.name(), "client", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(get(addr, &ClientOpts::default(), path))
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap()
}

#[test]
fn serves_inside_its_namespace_only_and_stops() {
    let ns = Netns::new("nsapi").unwrap();
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = NsApiserver::start(ns.name(), FakeConfig::new("in-ns", listen, None)).unwrap();
    let addr = server.addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(server.name(), "in-ns");

    let (code, body) = get_in(&ns, addr, "/version").unwrap();
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "in-ns");

    // Controlled from this thread, while it runs on its own.
    server.handle().set_ready(false);
    assert_eq!(get_in(&ns, addr, "/readyz").unwrap().0, 500);
    server.handle().set_ready(true);
    assert_eq!(get_in(&ns, addr, "/readyz").unwrap().0, 200);
    assert!(server.handle().stats().requests >= 3);

    // Not in the test's namespace: nothing listens on that loopback port here.
    assert!(std::net::TcpStream::connect(addr).is_err());

    server.stop();
    let err = get_in(&ns, addr, "/version").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn missing_namespace_is_an_error_not_a_panic() {
    let cfg = FakeConfig::new("x", SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None);
    let err = NsApiserver::start("vipd-lab-no-such-namespace", cfg).unwrap_err();
    assert!(
        err.to_string()
            .contains("/run/netns/vipd-lab-no-such-namespace"),
        "{err}"
    );
    assert!(spawn_in_netns("vipd-lab-no-such-namespace", "t", || ()).is_err());
}
