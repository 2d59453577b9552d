//! The socket and netlink layers against a real kernel, in namespaces of their own (no state machine).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use vipd_lab::netns::{Lab, Node};

use super::netlink::Net;
use super::socket::{VrrpSocket, GROUP_V4, GROUP_V6};
use crate::proto::{Advertisement, Centis, ChecksumMode, Priority, Vrid};

/// Run an async block on a current-thread runtime inside the node's namespace.
fn in_ns<F, Fut, R>(node: &Node, f: F) -> R
where
    F: FnOnce(u32) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = R>,
    R: Send + 'static,
{
    let ifname = node.ifname.clone();
    node.ns
        .run_in(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let idx = nix::net::if_::if_nametoindex(ifname.as_str()).unwrap();
            rt.block_on(f(idx))
        })
        .unwrap()
}

fn advert(vip: IpAddr) -> Advertisement {
    Advertisement {
        vrid: Vrid::new(9).unwrap(),
        priority: Priority(120),
        max_advert_int: Centis::new(10).unwrap(),
        addresses: vec![vip],
    }
}

/// One node sends to the group from its primary / link-local address; the other receives TTL 255, the right
/// addresses, and a message that decodes.
#[test]
fn multicast_advert_crosses_the_lab_with_ttl_255() {
    let mut lab = Lab::new("sock").unwrap();
    lab.add_node("a").unwrap();
    lab.add_node("b").unwrap();
    for v6 in [false, true] {
        let a = lab.node("a");
        let b = lab.node("b");
        let src: IpAddr = if v6 {
            IpAddr::V6(a.link_local().unwrap())
        } else {
            IpAddr::V4(a.v4)
        };
        let dst: IpAddr = if v6 {
            IpAddr::V6(GROUP_V6)
        } else {
            IpAddr::V4(GROUP_V4)
        };
        let vip: IpAddr = if v6 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100))
        } else {
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let recv = {
            let b_if = b.ifname.clone();
            let path = format!("/run/netns/{}", b.ns.name());
            std::thread::spawn(move || {
                let f = std::fs::File::open(path).unwrap();
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let idx = nix::net::if_::if_nametoindex(b_if.as_str()).unwrap();
                    let s = VrrpSocket::open(&b_if, idx, v6, true).unwrap();
                    tx.send(()).unwrap();
                    let mut buf = vec![0u8; 2048];
                    let r = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf)).await;
                    let rx = r.expect("nothing received").unwrap().unwrap();
                    let adv =
                        Advertisement::decode(&buf[rx.payload.clone()], rx.src, rx.dst).unwrap();
                    (rx.src, rx.dst, rx.ttl, adv)
                })
            })
        };
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let a_if = a.ifname.clone();
        in_ns(a, move |idx| async move {
            let s = VrrpSocket::open(&a_if, idx, v6, true).unwrap();
            let bytes = advert(vip).encode(src, dst, ChecksumMode::PseudoHeader);
            for _ in 0..5 {
                s.send(src, dst, &bytes).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let (rsrc, rdst, ttl, adv) = recv.join().unwrap();
        assert_eq!((rsrc, rdst, ttl), (src, dst, Some(255)), "v6={v6}");
        assert_eq!(adv, advert(vip));
    }
}

#[test]
fn vip_add_and_remove_are_idempotent_and_primary_skips_the_vip() {
    let mut lab = Lab::new("nl").unwrap();
    lab.add_node("a").unwrap();
    let a = lab.node("a");
    let a4 = a.v4;
    let ll = a.link_local().unwrap();
    in_ns(a, move |idx| async move {
        let net = Net::connect(idx).unwrap();
        for vip in [
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100)),
        ] {
            assert!(!net.has(vip).await.unwrap());
            assert!(net.add_vip(vip).await.unwrap());
            assert!(
                !net.add_vip(vip).await.unwrap(),
                "second add reports already present"
            );
            assert!(net.has(vip).await.unwrap());
            let primary = net.primary_address(vip.is_ipv6(), vip).await.unwrap();
            let want = if vip.is_ipv6() {
                IpAddr::V6(ll)
            } else {
                IpAddr::V4(a4)
            };
            assert_eq!(primary, Some(want));
            assert!(net.del_vip(vip).await.unwrap());
            assert!(
                !net.del_vip(vip).await.unwrap(),
                "second remove reports absent"
            );
            assert!(!net.has(vip).await.unwrap());
        }
        let link = net.link().await.unwrap();
        assert!(link.up);
        assert_ne!(link.mac, [0; 6]);
    });
}

fn cfg(interface: &str, vip: IpAddr) -> super::InstanceConfig {
    super::InstanceConfig {
        interface: interface.into(),
        vrid: Vrid::new(7).unwrap(),
        priority: Priority(100),
        advert_interval: Centis::new(10).unwrap(),
        preempt: true,
        preempt_delay: Duration::ZERO,
        vip,
        unicast_peers: vec![],
        unicast_source: None,
        checksum: ChecksumMode::PseudoHeader,
        garp_repeat: 1,
        garp_delay: Duration::from_secs(5),
        garp_refresh: Duration::ZERO,
        version: crate::proto::Version::V3,
        auth: crate::proto::Auth::None,
    }
}

/// Bad configuration is a clear error at start, never a panic or a half-started instance.
#[test]
fn start_rejects_bad_configuration() {
    use super::{Instance, SysError};
    let mut lab = Lab::new("cfg").unwrap();
    lab.add_node("a").unwrap();
    let a = lab.node("a");
    let ifname = a.ifname.clone();
    in_ns(a, move |_| async move {
        let vip4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
        let vip6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
        let r = Instance::start(cfg("nope0", vip4)).await;
        assert!(matches!(r, Err(SysError::NoInterface(_))), "{r:?}");
        let mut c = cfg(&ifname, vip4);
        c.unicast_peers = vec![vip6];
        assert!(matches!(Instance::start(c).await, Err(SysError::Config(_))));
        let mut c = cfg(&ifname, vip4);
        c.unicast_source = Some(vip6);
        assert!(matches!(Instance::start(c).await, Err(SysError::Config(_))));
        let mut c = cfg(&ifname, vip4);
        c.priority = Priority(0);
        assert!(matches!(Instance::start(c).await, Err(SysError::Config(_))));
        let mut c = cfg(&ifname, vip4);
        c.unicast_peers = vec![vip4];
        assert!(matches!(Instance::start(c).await, Err(SysError::Config(_))));
        // VRRPv2: IPv4 only, whole seconds; mixed also within VRRPv3's 40.95 s.
        use crate::proto::Version;
        let mut c = cfg(&ifname, vip6);
        c.version = Version::Mixed;
        c.advert_interval = Centis::new(100).unwrap();
        assert!(matches!(Instance::start(c).await, Err(SysError::Config(_))));
        let mut c = cfg(&ifname, vip4);
        c.version = Version::V2;
        assert!(matches!(Instance::start(c).await, Err(SysError::Config(_))));
        let mut c = cfg(&ifname, vip4);
        c.version = Version::Mixed;
        c.advert_interval = Centis::from_secs(41).unwrap();
        assert!(matches!(Instance::start(c).await, Err(SysError::Config(_))));
        // And a good one starts, becomes master alone, and leaves cleanly.
        let inst = Instance::start(cfg(&ifname, vip4)).await.unwrap();
        let mut st = inst.status();
        // The watch guard must be dropped at once: holding it blocks the driver's next status update.
        let master = tokio::time::timeout(Duration::from_secs(5), st.wait_for(|s| s.vip_held))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(master, "never held the VIP");
        let stats = inst.stats();
        inst.shutdown().await;
        assert!(
            stats
                .adverts_sent
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        );
        let net = Net::connect(nix::net::if_::if_nametoindex(ifname.as_str()).unwrap()).unwrap();
        assert!(!net.has(vip4).await.unwrap(), "VIP left after shutdown");
    });
}
