//! `vipd run --cluster-config`: three load-balancer nodes run from one cluster configuration and one small
//! shared `--config` (no per-node file), in network namespaces with real HTTPS fake apiservers. They find
//! themselves and their interface from their addresses, elect one master by their position in the node pool,
//! serve HTTPS through the VIP, fail over on kill -9, and reload both files on SIGHUP. The config
//! `validate --print` shows on a node round-trips through `validate --config`; every node's manifest is a Pod.
//!
//! Needs root (namespaces) and the `fake-apiserver` binary (`cargo build -p vipd-lab`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use nix::sys::signal::Signal;
use vipd_lab::apiserver::{ClientOpts, FakeProcess, ServerCertSpec, TestPki};
use vipd_lab::client::wait_served;
use vipd_lab::netns::{wait_for, Lab, Netns, TempDir};
use vipd_lab::vipd::VipdNode;

const VIP: &str = "192.0.2.100";
const LONG: Duration = Duration::from_secs(20);
const ADMIN: &str = "127.0.0.1:9440";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vipd"))
}

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

fn cluster_yaml(apis: &[IpAddr], lbs: &[IpAddr]) -> String {
    let list = |a: &[IpAddr]| {
        a.iter()
            .map(|ip| format!("{{address: {ip}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "apiVersion: baremetal.cluster.gke.io/v1\nkind: Cluster\nmetadata: {{name: lab}}\nspec:\n  type: user\n  \
         controlPlane:\n    nodePoolSpec:\n      nodes: [{}]\n  loadBalancer:\n    mode: bundled\n    \
         ports: {{controlPlaneLBPort: 443}}\n    vips: {{controlPlaneVIP: {VIP}}}\n    nodePoolSpec:\n      \
         nodes: [{}]\n",
        list(apis),
        list(lbs)
    )
}

/// What a cluster configuration does not carry: timing fast enough for a test, the CA of the test PKI.
fn small_yaml(ca: &Path, extra: &str) -> String {
    format!(
        "vrrp: {{advertInterval: 100ms}}\nhealth: {{caFile: \"{}\", interval: 300ms, timeout: 250ms, rise: 1, fall: 2}}\n\
         proxy: {{connectTimeout: 300ms{extra}}}\n",
        ca.display()
    )
}

/// Polls `GET /version` through the VIP from the client namespace, TLS verified against the test CA, each
/// attempt bounded at 2 s, until one is answered or [`LONG`] passed: who answered.
fn wait_https_version(client: &Netns, ca: &Path) -> Option<String> {
    let opts = ClientOpts {
        ca: Some(ca.to_path_buf()),
        timeout: Some(Duration::from_secs(2)),
        ..ClientOpts::default()
    };
    wait_served(client.name(), SocketAddr::new(vip(), 443), opts, LONG).unwrap()
}

fn vipd_in(ns: &Netns, args: &[&str]) -> Output {
    ns.command(bin()).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sole_master(lab: &Lab, nodes: &[Option<VipdNode>], want: usize) {
    let ok = wait_for(LONG, || {
        let holders: Vec<usize> = (0..nodes.len())
            .filter(|i| lab.node(&format!("lb{i}")).ns.has_addr("eth0", vip()))
            .collect();
        let master = nodes[want].as_ref()?.state();
        (holders == [want] && master.as_deref() == Some("master")).then_some(())
    });
    assert!(
        ok.is_some(),
        "lb{want} is not the sole master: {:?}",
        nodes
            .iter()
            .map(|n| n.as_ref().and_then(|n| n.state()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn three_nodes_run_from_one_cluster_configuration() {
    let mut lab = Lab::new("cr").unwrap();
    for n in ["lb0", "lb1", "lb2", "api0", "api1", "api2", "client"] {
        lab.add_node(n).unwrap();
    }
    let pki = TestPki::new("cr-ca").unwrap();
    let dir = TempDir::new("cr-cfg").unwrap();
    let ip = |n: &str| IpAddr::V4(lab.node(n).v4);
    let apis: Vec<IpAddr> = (0..3).map(|i| ip(&format!("api{i}"))).collect();
    let lbs: Vec<IpAddr> = (0..3).map(|i| ip(&format!("lb{i}"))).collect();
    let _apiservers: Vec<FakeProcess> = (0..3)
        .map(|i| {
            let cert = pki
                .server_cert(&format!("api{i}"), &ServerCertSpec::ips([apis[i], vip()]))
                .unwrap();
            let listen = SocketAddr::new(apis[i], 6443);
            let ns = lab.node(&format!("api{i}")).ns.name();
            FakeProcess::spawn_https_in(ns, listen, &cert, &format!("api{i}"), &[]).unwrap()
        })
        .collect();
    let cluster = dir.join("cluster.yaml");
    std::fs::write(&cluster, cluster_yaml(&apis, &lbs)).unwrap();
    let small = dir.join("vipd.yaml");
    std::fs::write(&small, small_yaml(pki.ca_cert(), "")).unwrap();
    let (c, s) = (cluster.to_str().unwrap(), small.to_str().unwrap());

    // No --node: each node finds itself (and its interface) by its address; the same two files for all.
    let mut nodes: Vec<Option<VipdNode>> = (0..3)
        .map(|i| {
            let ns = &lab.node(&format!("lb{i}")).ns;
            let args = ["--cluster-config", c, "--config", s];
            Some(
                VipdNode::start_with_args(&bin(), ns, &args, &small, ADMIN.parse().unwrap())
                    .unwrap(),
            )
        })
        .collect();
    // Priority by position in the node pool, first highest.
    sole_master(&lab, &nodes, 0);
    for (i, want) in [(0, 200), (1, 190), (2, 180)] {
        let st = nodes[i].as_ref().unwrap().status().unwrap();
        assert_eq!(st["vrrp"]["priority"], want, "{st}");
        assert_eq!(st["vrrp"]["vrid"], vipd::cluster::vrid_for("lab").get());
    }
    let client = &lab.node("client").ns;
    let ca = pki.ca_cert();
    let served = wait_https_version(client, ca);
    assert!(served.is_some_and(|n| n.starts_with("api")));

    // What lb1 would run, printed, is a config validate --config accepts, with lb1's interface and address.
    let lb1 = &lab.node("lb1").ns;
    let printed = vipd_in(
        lb1,
        &["validate", "--cluster-config", c, "--config", s, "--print"],
    );
    assert_eq!(printed.status.code(), Some(0), "{}", text(&printed.stderr));
    let printed_file = dir.join("printed.yaml");
    std::fs::write(&printed_file, &printed.stdout).unwrap();
    let back = vipd_in(
        lb1,
        &["validate", "--config", printed_file.to_str().unwrap()],
    );
    assert_eq!(back.status.code(), Some(0), "{}", text(&back.stderr));
    let cfg = vipd::config::Config::from_yaml(&text(&printed.stdout)).unwrap();
    assert_eq!(
        (
            cfg.interface.as_str(),
            cfg.vrrp.unicast_source,
            cfg.vrrp.priority.get()
        ),
        ("eth0", Some(lbs[1]), 190)
    );
    assert_eq!(cfg.vrrp.unicast_peers, [lbs[0], lbs[2]]);

    // Every node's manifest is a Pod running vipd run --cluster-config for that node.
    let out_dir = dir.join("manifests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let m = vipd_in(
        lb1,
        &[
            "manifest",
            "--cluster-config",
            c,
            "--config",
            s,
            "--all",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(m.status.code(), Some(0), "{}", text(&m.stderr));
    for lb in &lbs {
        let yaml = std::fs::read_to_string(out_dir.join(format!("vipd-{lb}.yaml"))).unwrap();
        let pod: Pod = serde_saphyr::from_str(&yaml).unwrap();
        let args = pod.spec.unwrap().containers[0].args.clone().unwrap();
        assert_eq!(args[..2], ["run", "--cluster-config"]);
        assert_eq!(args.last(), Some(&lb.to_string()));
    }

    // SIGHUP re-reads both files: a change in the small file applies; one that contradicts the cluster
    // configuration is refused, naming both files, and the running config stays.
    let n0 = nodes[0].as_ref().unwrap();
    std::fs::write(&small, small_yaml(ca, ", retries: 1")).unwrap();
    n0.signal(Signal::SIGHUP).unwrap();
    assert!(wait_for(LONG, || (n0.metric("vipd_config_reloads")? == 1.0)
        .then_some(()))
    .is_some());
    let bad = format!("controlPlaneVIP: 192.0.2.99\n{}", small_yaml(ca, ""));
    std::fs::write(&small, bad).unwrap();
    n0.signal(Signal::SIGHUP).unwrap();
    assert!(
        wait_for(LONG, || (n0.metric("vipd_config_reload_failures")? == 1.0)
            .then_some(()))
        .is_some()
    );
    let refusal = n0
        .proc
        .wait_line(LONG, |l| l.contains("controlPlaneVIP: 192.0.2.99"))
        .unwrap();
    assert!(refusal.contains(s) && refusal.contains(c), "{refusal}");
    std::fs::write(&small, small_yaml(ca, "")).unwrap();
    sole_master(&lab, &nodes, 0);

    // kill -9 the master: the next in the pool takes over and HTTPS through the VIP works again.
    nodes[0].as_mut().unwrap().proc.kill9();
    nodes[0] = None;
    let left = [None, nodes[1].take(), nodes[2].take()];
    let ok = wait_for(LONG, || {
        (left[1].as_ref()?.state().as_deref() == Some("master")
            && lab.node("lb1").ns.has_addr("eth0", vip()))
        .then_some(())
    });
    assert!(
        ok.is_some(),
        "lb1 did not take over: {:?}",
        left[1].as_ref().unwrap().status().ok()
    );
    assert_eq!(left[2].as_ref().unwrap().state().as_deref(), Some("backup"));
    let served = wait_https_version(client, ca);
    assert!(
        served.is_some(),
        "no HTTPS answer through the VIP after the failover"
    );
}
