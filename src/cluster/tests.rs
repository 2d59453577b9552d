//! One test per cluster-config rule with its exact message, node discovery on simulated machines, and the
//! golden files under `tests/golden/cluster/` (first line of each input may hold `# args: --node A --subnet C
//! --local IFACE=ADDR/PREFIX`, the machine it runs on).

use super::*;
use crate::config::Track;

const BASE: &str = "apiVersion: baremetal.cluster.gke.io/v1
kind: Cluster
metadata:
  name: prod
spec:
  type: user
  controlPlane:
    nodePoolSpec:
      nodes:
        - address: 192.0.2.11
        - address: 192.0.2.12
        - address: 192.0.2.13
  loadBalancer:
    mode: bundled
    ports:
      controlPlaneLBPort: 443
    vips:
      controlPlaneVIP: 192.0.2.100
      ingressVIP: 192.0.2.150
    addressPools:
      - name: pool1
        addresses:
          - 192.0.2.144/28
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn local(iface: &str, cidr: &str) -> LocalAddr {
    LocalAddr {
        interface: iface.to_string(),
        cidr: cidr.parse().unwrap(),
    }
}

/// Runs as node 192.0.2.11 with eth0 = 192.0.2.11/24.
fn on_node() -> ClusterOptions {
    ClusterOptions {
        local_addrs: vec![local("lo", "127.0.0.1/8"), local("eth0", "192.0.2.11/24")],
        ..Default::default()
    }
}

fn run(yaml: &str, opts: &ClusterOptions) -> ClusterReport {
    check_str(yaml, opts).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(yaml: &str, opts: &ClusterOptions) -> Vec<String> {
    run(yaml, opts)
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[track_caller]
fn assert_error(yaml: &str, expected: &str) {
    assert_eq!(
        errors(yaml, &on_node()),
        [expected.to_string()],
        "input:\n{yaml}"
    );
}

/// Each case is BASE with `from` replaced by `to`, and the one error that edit must give.
#[track_caller]
fn assert_edit_errors(cases: &[(&str, &str, &str)]) {
    for &(from, to, expected) in cases {
        assert!(BASE.contains(from), "case {from:?} -> {to:?}: not in BASE");
        assert_eq!(
            errors(&BASE.replace(from, to), &on_node()),
            [expected.to_string()],
            "case {from:?} -> {to:?}"
        );
    }
}

#[test]
fn base_derives_the_node_config() {
    let r = run(BASE, &on_node());
    assert!(r.errors.is_empty(), "{}", r.errors);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    let d = r.derived.unwrap();
    assert_eq!(d.node.address, ip("192.0.2.11"));
    assert_eq!(d.interface.as_deref(), Some("eth0"));
    let c = &d.config;
    assert_eq!(c.interface, "eth0");
    assert_eq!(c.control_plane_vip, ip("192.0.2.100"));
    assert_eq!(c.control_plane_lb_port, 443);
    let backends: Vec<String> = c.backends.iter().map(|b| b.to_string()).collect();
    assert_eq!(
        backends,
        ["192.0.2.11:6443", "192.0.2.12:6443", "192.0.2.13:6443"]
    );
    // Without loadBalancer.nodePoolSpec the control-plane nodes balance: peers are the other two.
    assert_eq!(c.vrrp.unicast_peers, [ip("192.0.2.12"), ip("192.0.2.13")]);
    assert_eq!(c.vrrp.unicast_source, Some(ip("192.0.2.11")));
    assert_eq!(c.vrrp.vrid, vrid_for("prod"));
    assert_eq!(c.vrrp.track, Track::Lowest);
    assert_eq!(r.cluster_name, "prod");
}

#[test]
fn vrid_is_stable_and_depends_on_the_name() {
    assert_eq!(vrid_for("prod"), vrid_for("prod"));
    assert_ne!(vrid_for("prod"), vrid_for("staging"));
    for name in ["", "a", "prod", "a-very-long-cluster-name-0123456789"] {
        assert!(vrid_for(name).get() >= 1);
    }
}

#[test]
fn separate_lb_pool_and_k8s_ip() {
    let y = format!(
        "{BASE}    nodePoolSpec:\n      nodes:\n        - address: 198.51.100.31\n          k8sIP: 192.0.2.31\n        - address: 192.0.2.32\n"
    );
    let opts = ClusterOptions {
        local_addrs: vec![
            local("eth1", "192.0.2.31/24"),
            local("eth0", "198.51.100.31/24"),
        ],
        ..Default::default()
    };
    let r = run(&y, &opts);
    assert!(r.errors.is_empty(), "{}", r.errors);
    let d = r.derived.unwrap();
    assert_eq!(d.node.address, ip("198.51.100.31"));
    // The L2 address (k8sIP) decides the interface and the VRRP source.
    assert_eq!(d.interface.as_deref(), Some("eth1"));
    assert_eq!(d.config.vrrp.unicast_source, Some(ip("192.0.2.31")));
    assert_eq!(d.config.vrrp.unicast_peers, [ip("192.0.2.32")]);
    assert_eq!(d.config.backends.len(), 3);
}

#[test]
fn mode_must_be_bundled() {
    assert_edit_errors(&[
        (
            "mode: bundled",
            "mode: manual",
            "spec.loadBalancer.mode: \"manual\" is not supported: vipd implements mode bundled",
        ),
        (
            "    mode: bundled\n",
            "",
            "spec.loadBalancer.mode: is required",
        ),
    ]);
}

#[test]
fn port_default_and_range() {
    let r = run(&BASE.replace("controlPlaneLBPort: 443", "{}"), &on_node());
    assert_eq!(r.derived.unwrap().config.control_plane_lb_port, 443);
    assert_error(
        &BASE.replace("controlPlaneLBPort: 443", "controlPlaneLBPort: 0"),
        "spec.loadBalancer.ports.controlPlaneLBPort: 0 is out of range 1..=65535",
    );
}

#[test]
fn control_plane_vip_rules() {
    let vip = "controlPlaneVIP: 192.0.2.100";
    assert_edit_errors(&[
        (
            vip,
            "controlPlaneVIP: 192.0.2.145",
            "spec.loadBalancer.vips.controlPlaneVIP: 192.0.2.145 is inside address pool range \"192.0.2.144/28\" \
             (spec.loadBalancer.addressPools[0].addresses[0]); the control-plane VIP must be in no pool",
        ),
        (
            vip,
            "controlPlaneVIP: 198.51.100.100",
            "spec.loadBalancer.vips.controlPlaneVIP: 198.51.100.100 is not in the load-balancer nodes' subnet 192.0.2.0/24",
        ),
        (
            vip,
            "controlPlaneVIP: 0.0.0.0",
            "spec.loadBalancer.vips.controlPlaneVIP: 0.0.0.0 is not a unicast host address",
        ),
        (
            "      controlPlaneVIP: 192.0.2.100\n",
            "",
            "spec.loadBalancer.vips.controlPlaneVIP: is required",
        ),
    ]);
}

#[test]
fn ingress_vip_rules() {
    assert_edit_errors(&[
        (
            "ingressVIP: 192.0.2.150",
            "ingressVIP: 192.0.2.120",
            "spec.loadBalancer.vips.ingressVIP: 192.0.2.120 is in no address pool",
        ),
        (
            "type: user",
            "type: admin",
            "spec.loadBalancer.vips.ingressVIP: is not allowed in an admin cluster (spec.type: admin): admin clusters run no ingress",
        ),
        (
            "type: user",
            "type: tenant",
            "spec.type: \"tenant\" is not one of admin | user | hybrid | standalone",
        ),
    ]);
    let admin = BASE
        .replace("type: user", "type: admin")
        .replace("      ingressVIP: 192.0.2.150\n", "");
    assert!(errors(&admin, &on_node()).is_empty());
}

#[test]
fn avoid_buggy_ips() {
    let y = BASE
        .replace("ingressVIP: 192.0.2.150", "ingressVIP: 192.0.2.255")
        .replace(
            "192.0.2.144/28",
            "192.0.2.240/28\n        avoidBuggyIPs: true",
        );
    assert_error(
        &y,
        "spec.loadBalancer.vips.ingressVIP: 192.0.2.255 ends in .0 or .255, which pool \"pool1\" excludes (avoidBuggyIPs: true)",
    );
    let without = BASE
        .replace("ingressVIP: 192.0.2.150", "ingressVIP: 192.0.2.255")
        .replace("192.0.2.144/28", "192.0.2.240/28");
    assert!(errors(&without, &on_node()).is_empty());
    assert_edit_errors(&[
        (
            "192.0.2.144/28",
            "192.0.2.144/28\n        avoidBuggyIPs: 1",
            "spec.loadBalancer.addressPools[0].avoidBuggyIPs: 1 is not true or false",
        ),
        (
            "192.0.2.144/28",
            "192.0.2.144/28\n        manualAssign: x",
            "spec.loadBalancer.addressPools[0].manualAssign: \"x\" is not true or false",
        ),
    ]);
}

#[test]
fn pool_names() {
    let y = format!("{BASE}      - name: pool1\n        addresses: [192.0.2.170-192.0.2.180]\n");
    assert_error(
        &y,
        "spec.loadBalancer.addressPools[1].name: \"pool1\" is already the name of spec.loadBalancer.addressPools[0]",
    );
    let y = format!("{BASE}      - addresses: [192.0.2.170-192.0.2.180]\n");
    assert_error(&y, "spec.loadBalancer.addressPools[1].name: is required");
}

#[test]
fn address_forms() {
    let a = |r: &str| {
        BASE.replace(
            "- 192.0.2.144/28",
            &format!("- 192.0.2.144/28\n          - {r}"),
        )
    };
    // Each range, added as the pool's second, and the rule it breaks.
    for (range, rule) in [
        (
            "192.0.2.170 - 192.0.2.180",
            "has spaces around the dash; write A-B",
        ),
        ("192.0.2.180-192.0.2.170", "starts after it ends"),
        ("192.0.2.170-2001:db8::1", "mixes IPv4 and IPv6"),
        (
            "192.0.2.170/28",
            "has host bits set (the network is 192.0.2.160/28)",
        ),
        ("192.0.2.0/40", "is not a CIDR (address/prefix)"),
        (
            "192.0.2.170",
            "is neither a CIDR (192.0.2.0/24) nor a range (192.0.2.10-192.0.2.20)",
        ),
        (
            "x-192.0.2.170",
            "has a start \"x\" that is not an IP address",
        ),
    ] {
        assert_error(
            &a(range),
            &format!("spec.loadBalancer.addressPools[0].addresses[1]: \"{range}\" {rule}"),
        );
    }
    assert!(errors(&a("192.0.2.170-192.0.2.170"), &on_node()).is_empty());
    let empty = BASE
        .replace(
            "        addresses:\n          - 192.0.2.144/28\n",
            "        addresses: []\n",
        )
        .replace("      ingressVIP: 192.0.2.150\n", "");
    assert_error(
        &empty,
        "spec.loadBalancer.addressPools[0].addresses: at least one range is required",
    );
}

#[test]
fn overlaps_within_and_across_pools() {
    let within = BASE.replace(
        "- 192.0.2.144/28",
        "- 192.0.2.144/28\n          - 192.0.2.150-192.0.2.200",
    );
    assert_error(
        &within,
        "spec.loadBalancer.addressPools[0].addresses[1]: \"192.0.2.150-192.0.2.200\" overlaps \"192.0.2.144/28\" \
         (spec.loadBalancer.addressPools[0].addresses[0])",
    );
    let across =
        format!("{BASE}      - name: pool2\n        addresses: [192.0.2.159-192.0.2.170]\n");
    assert_error(
        &across,
        "spec.loadBalancer.addressPools[1].addresses[0]: \"192.0.2.159-192.0.2.170\" overlaps \"192.0.2.144/28\" \
         (spec.loadBalancer.addressPools[0].addresses[0])",
    );
    let touching =
        format!("{BASE}      - name: pool2\n        addresses: [192.0.2.160-192.0.2.170]\n");
    assert!(errors(&touching, &on_node()).is_empty());
}

#[test]
fn ranges_must_be_in_the_subnet() {
    let y = format!("{BASE}      - name: pool2\n        addresses: [198.51.100.0/28]\n");
    assert_error(
        &y,
        "spec.loadBalancer.addressPools[1].addresses[0]: \"198.51.100.0/28\" is not inside the load-balancer subnet 192.0.2.0/24",
    );
}

#[test]
fn nodes_must_be_in_one_subnet_by_their_l2_address() {
    let y = BASE.replace(
        "- address: 192.0.2.13",
        "- address: 192.0.2.13\n          k8sIP: 198.51.100.13",
    );
    assert_error(
        &y,
        "spec.controlPlane.nodePoolSpec.nodes[2].k8sIP: 198.51.100.13 is not in the load-balancer subnet 192.0.2.0/24",
    );
    // k8sIP in the subnet rescues an address outside it.
    let y = BASE.replace(
        "- address: 192.0.2.13",
        "- address: 198.51.100.13\n          k8sIP: 192.0.2.13",
    );
    assert!(errors(&y, &on_node()).is_empty());
    let y = BASE.replace("- address: 192.0.2.13", "- address: 198.51.100.13");
    assert_error(
        &y,
        "spec.controlPlane.nodePoolSpec.nodes[2].address: 198.51.100.13 is not in the load-balancer subnet 192.0.2.0/24",
    );
}

#[test]
fn node_list_rules() {
    let third = "- address: 192.0.2.13";
    assert_edit_errors(&[
        (
            third,
            "- address: 192.0.2.12",
            "spec.controlPlane.nodePoolSpec.nodes[2].address: 192.0.2.12 is listed twice (also spec.controlPlane.nodePoolSpec.nodes[1])",
        ),
        (
            third,
            "- k8sIP: 192.0.2.13",
            "spec.controlPlane.nodePoolSpec.nodes[2].address: is required",
        ),
        (
            third,
            "- address: 192.0.2.x",
            "spec.controlPlane.nodePoolSpec.nodes[2].address: \"192.0.2.x\" is not an IPv4 or IPv6 address",
        ),
    ]);
    let none = BASE.replace(
        "        - address: 192.0.2.11\n        - address: 192.0.2.12\n        - address: 192.0.2.13\n",
        "        []\n",
    );
    let errs = errors(&none, &on_node());
    assert_eq!(
        errs,
        ["spec.controlPlane.nodePoolSpec.nodes: at least one node is required"]
    );
}

#[test]
fn peers_must_share_the_vip_family() {
    let y = format!("{BASE}    nodePoolSpec:\n      nodes:\n        - address: 192.0.2.11\n        - address: 2001:db8::12\n");
    let errs = errors(&y, &on_node());
    assert_eq!(
        errs[0],
        "spec.loadBalancer.nodePoolSpec.nodes[1]: 2001:db8::12 is not the same family as controlPlaneVIP 192.0.2.100"
    );
}

#[test]
fn node_selection() {
    let opts = ClusterOptions {
        node: Some(ip("192.0.2.12")),
        subnet: Some("192.0.2.0/24".parse().unwrap()),
        ..Default::default()
    };
    let r = run(BASE, &opts);
    assert!(r.errors.is_empty(), "{}", r.errors);
    let d = r.derived.unwrap();
    assert_eq!(d.node.address, ip("192.0.2.12"));
    assert_eq!(d.interface, None);
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert!(r.skipped[0].starts_with("the interface for node 192.0.2.12"));

    let opts = ClusterOptions {
        node: Some(ip("192.0.2.99")),
        ..on_node()
    };
    assert_eq!(
        errors(BASE, &opts),
        ["--node: 192.0.2.99 is not a load-balancer node (spec.controlPlane.nodePoolSpec.nodes)"]
    );
}

#[test]
fn unknown_subnet_skips_and_says_how() {
    let r = run(BASE, &ClusterOptions::default());
    assert!(r.errors.is_empty());
    assert!(r.derived.is_none());
    assert_eq!(r.skipped.len(), 2);
    assert!(r.skipped[0].contains("--subnet CIDR"), "{:?}", r.skipped);
    assert!(r.skipped[1].contains("--node ADDR"), "{:?}", r.skipped);
    // --subnet alone runs the subnet checks.
    let opts = ClusterOptions {
        subnet: Some("198.51.100.0/24".parse().unwrap()),
        ..Default::default()
    };
    let errs = errors(BASE, &opts);
    assert_eq!(errs.len(), 5, "{errs:?}");
}

#[test]
fn subnet_with_host_bits_is_normalised() {
    let opts = ClusterOptions {
        node: Some(ip("192.0.2.11")),
        subnet: Some("192.0.2.11/24".parse().unwrap()),
        ..Default::default()
    };
    assert!(errors(BASE, &opts).is_empty());
}

#[test]
fn documents_and_kind() {
    let two = format!("{BASE}---\n{BASE}");
    assert_eq!(
        errors(&two, &on_node()),
        ["kind: 2 documents of kind Cluster in the file; keep one"]
    );
    assert_eq!(
        errors("kind: NodePool\n", &on_node()),
        ["kind: no document of kind Cluster in the file"]
    );
    let with_others =
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: x}}\n---\n{BASE}");
    assert!(errors(&with_others, &on_node()).is_empty());
    assert_eq!(
        errors(&BASE.replace("  name: prod\n", ""), &on_node()),
        ["metadata.name: is required"]
    );
    assert!(matches!(
        check_str("a: [", &on_node()),
        Err(ConfigError::Yaml(_))
    ));
}

#[test]
fn unrelated_fields_are_ignored() {
    let y = BASE.replace(
        "spec:\n",
        "spec:\n  clusterNetwork: {pods: {cidrBlocks: [10.4.0.0/16]}}\n  storage: {}\n",
    );
    assert!(errors(&y, &on_node()).is_empty());
}

#[test]
fn example_cluster_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster.yaml");
    let opts = ClusterOptions {
        local_addrs: vec![local("eth0", "192.0.2.31/24")],
        ..Default::default()
    };
    let r = check_file(&path, &opts).unwrap();
    assert!(r.errors.is_empty(), "{}", r.errors);
    let d = r.derived.unwrap();
    assert_eq!(d.config.backends.len(), 3);
    assert_eq!(d.config.vrrp.unicast_peers, [ip("192.0.2.42")]);
}

/// Parses the `# args:` line of a golden input into options.
fn golden_options(text: &str) -> ClusterOptions {
    let mut opts = ClusterOptions::default();
    let Some(args) = text.lines().next().and_then(|l| l.strip_prefix("# args:")) else {
        return opts;
    };
    let words: Vec<&str> = args.split_whitespace().collect();
    for pair in words.chunks(2) {
        match pair {
            ["--node", a] => opts.node = Some(ip(a)),
            ["--subnet", c] => opts.subnet = Some(c.parse().unwrap()),
            ["--local", l] => {
                let (iface, cidr) = l.split_once('=').unwrap();
                opts.local_addrs.push(local(iface, cidr));
            }
            other => panic!("bad golden args {other:?}"),
        }
    }
    opts
}

#[test]
fn golden_messages() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cluster");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 3,
        "golden files missing in {}",
        dir.display()
    );
    for input in inputs {
        let text = std::fs::read_to_string(&input).unwrap();
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        let got = match check_str(&text, &golden_options(&text)) {
            Ok(r) => render(&name, &r),
            Err(e) => format!("{e}\n"),
        };
        crate::golden::compare(&input.with_extension("out"), &got);
    }
}

/// First highest, and a node added at the end of the pool changes no other node's priority.
#[test]
fn priority_follows_the_position_and_is_stable_when_the_pool_grows() {
    let pool = |n: usize| {
        let nodes: Vec<String> = (0..n)
            .map(|i| format!("{{address: 192.0.2.{}}}", 31 + i))
            .collect();
        BASE.replace(
            "    addressPools:",
            &format!(
                "    nodePoolSpec:\n      nodes: [{}]\n    addressPools:",
                nodes.join(", ")
            ),
        )
    };
    let prio = |yaml: &str, node: &str| {
        let opts = ClusterOptions {
            node: Some(ip(node)),
            subnet: Some("192.0.2.0/24".parse().unwrap()),
            ..Default::default()
        };
        let r = run(yaml, &opts);
        assert!(r.errors.is_empty(), "{}", r.errors);
        r.derived.unwrap().config.vrrp.priority.get()
    };
    let (three, four) = (pool(3), pool(4));
    for (node, want) in [
        ("192.0.2.31", 200),
        ("192.0.2.32", 190),
        ("192.0.2.33", 180),
    ] {
        assert_eq!(prio(&three, node), want);
        assert_eq!(prio(&four, node), want);
    }
    assert_eq!(prio(&four, "192.0.2.34"), 170);
    assert_eq!(position_priority(19).get(), 10);
    assert_eq!(
        position_priority(25).get(),
        2,
        "never below what the default tracking needs"
    );
}
