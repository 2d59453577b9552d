//! `--cluster-config`: reads a bare-metal cluster configuration (the `Cluster` resource), enforces its
//! load-balancer rules, and derives the vipd `Config` for one load-balancer node.
//!
//! Shape read (other fields of the resource are not ours and are ignored; other documents in the file, such as a
//! `Namespace` or `NodePool`, are skipped):
//!
//! ```yaml
//! apiVersion: baremetal.cluster.gke.io/v1     # any non-empty value
//! kind: Cluster
//! metadata: {name: prod}
//! spec:
//!   type: user          # admin | user | hybrid | standalone; `admin` = an admin cluster (ingressVIP refused)
//!   controlPlane:
//!     nodePoolSpec:
//!       nodes: [{address: 192.0.2.11}, {address: 192.0.2.12, k8sIP: 192.0.2.22}]
//!   loadBalancer:
//!     mode: bundled
//!     ports: {controlPlaneLBPort: 443}
//!     vips: {controlPlaneVIP: 192.0.2.100, ingressVIP: 192.0.2.150}
//!     addressPools: [{name: pool1, addresses: [192.0.2.144/28, 192.0.2.170-192.0.2.180]}]
//!     nodePoolSpec:     # optional; default: the control-plane nodes balance
//!       nodes: [{address: 192.0.2.31}]
//! ```
//!
//! Derived for the node: VIP and port, backends = control-plane nodes on :6443, unicast peers = the other
//! load-balancer nodes, unicast source = this node, VRID derived from `metadata.name` (so two clusters on one
//! L2 segment do not share a VRID by default), priority from the node's position in the load-balancer pool,
//! everything else at its default. `merge` adds what the optional `--config` file says. A node's L2 address is its
//! `k8sIP` when set, else its `address`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use crate::config::fields::{boolean, int, ip, list, one_of, show, text, FieldErrors, Section};
use crate::config::{Config, ConfigError, VrrpConfig, DEFAULT_LB_PORT};
use crate::localnet::{to_u128, Cidr, LocalAddr};
use vrrp::proto::{Priority, Vrid};

/// kube-apiserver's port on the control-plane nodes.
pub const APISERVER_PORT: u16 = 6443;

/// What the caller knows about where it runs.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `--node`: which load-balancer node to derive for; else found among `local_addrs`.
    pub node: Option<IpAddr>,
    /// `--subnet`: the load-balancer nodes' L2 subnet; else the prefix of the local interface holding the node.
    pub subnet: Option<Cidr>,
    /// This machine's addresses (`localnet::local_addrs()`); a parameter so tests can play any machine.
    pub local_addrs: Vec<LocalAddr>,
}

/// One node of a node pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterNode {
    pub address: IpAddr,
    pub k8s_ip: Option<IpAddr>,
}

impl ClusterNode {
    /// The address on the load-balancer L2 segment, used for VRRP, backends and the subnet checks.
    pub fn l2(&self) -> IpAddr {
        self.k8s_ip.unwrap_or(self.address)
    }
}

/// The outcome of checking a cluster config.
#[derive(Debug, Clone, Default)]
pub struct ClusterReport {
    pub cluster_name: String,
    /// The load-balancer nodes, in file order (empty when they could not be read).
    pub lb_nodes: Vec<ClusterNode>,
    /// Rule violations; any one makes the file invalid.
    pub errors: FieldErrors,
    /// Checks that could not run here, each with how to run it.
    pub skipped: Vec<String>,
    /// Allowed, but probably not what was meant (a tracking weight that cannot move the VIP).
    pub warnings: Vec<String>,
    /// This node's config, when the node could be found and there is no error.
    pub derived: Option<Derived>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub node: ClusterNode,
    /// The load-balancer nodes in file order (this node among them), and where that list is in the file.
    pub lb_nodes: Vec<ClusterNode>,
    pub lb_nodes_path: String,
    /// The local interface holding the node's L2 address; `None` when the node is not this machine.
    pub interface: Option<String>,
    /// The config, with `interface` empty when unknown.
    pub config: Config,
}

/// Reads and checks a cluster config file.
pub fn check_file(
    path: &std::path::Path,
    opts: &ClusterOptions,
) -> Result<ClusterReport, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    check_str(&text, opts)
}

/// Checks a cluster config given as YAML (one or more documents).
pub fn check_str(text: &str, opts: &ClusterOptions) -> Result<ClusterReport, ConfigError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    let mut clusters: Vec<Value> = docs
        .into_iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("Cluster"))
        .collect();
    let mut report = ClusterReport::default();
    match clusters.len() {
        1 => check_value(clusters.remove(0), opts, &mut report),
        0 => report
            .errors
            .push("kind", "no document of kind Cluster in the file"),
        n => report.errors.push(
            "kind",
            format!("{n} documents of kind Cluster in the file; keep one"),
        ),
    }
    Ok(report)
}

/// One parsed address pool range, inclusive.
#[derive(Debug, Clone)]
struct Range {
    path: String,
    text: String,
    start: IpAddr,
    end: IpAddr,
    pool: usize,
}

impl Range {
    fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.start.is_ipv4()
            && to_u128(self.start) <= to_u128(a)
            && to_u128(a) <= to_u128(self.end)
    }
}

#[derive(Debug)]
struct Pool {
    name: Option<String>,
    avoid_buggy_ips: bool,
}

/// What the cluster resource says about load balancing, read field by field (errors collected on the way).
struct Parsed {
    name: String,
    /// `spec.type: admin`: an admin cluster, which runs no ingress.
    admin: bool,
    cp_nodes: Vec<ClusterNode>,
    port: u16,
    cp_vip: Option<IpAddr>,
    cp_vip_path: String,
    ingress: Option<IpAddr>,
    ingress_path: String,
    pools: Vec<Pool>,
    ranges: Vec<Range>,
    lb_nodes: Vec<ClusterNode>,
    /// Where `lb_nodes` came from: the load balancer's node pool, else the control plane's.
    lb_nodes_path: String,
}

fn check_value(doc: Value, opts: &ClusterOptions, report: &mut ClusterReport) {
    let Some(p) = parse_cluster(doc, &mut report.errors) else {
        return;
    };
    report.cluster_name = p.name.clone();
    report.lb_nodes = p.lb_nodes.clone();
    check_pool_overlaps(&p.ranges, &mut report.errors);
    check_control_plane_vip(&p, &mut report.errors);
    check_ingress_vip(&p, &mut report.errors);
    let (node, local) = find_this_node(&p, opts, &mut report.errors);
    check_subnet(&p, opts, local, report);
    if node.is_none() && opts.node.is_none() {
        report.skipped.push(
            "deriving this node's vipd config: no load-balancer node address is on this machine; \
             add --node ADDR"
                .to_string(),
        );
    }
    if let Some(node) = node {
        derive(&p, node, local, report);
    }
}

fn parse_cluster(doc: Value, errs: &mut FieldErrors) -> Option<Parsed> {
    let mut root = Section::new("", doc, errs)?;
    root.require("apiVersion", errs)
        .and_then(|v| text("apiVersion", &v, errs));
    let mut meta = root.section("metadata", errs);
    let name = meta
        .require("name", errs)
        .and_then(|v| text("metadata.name", &v, errs))
        .unwrap_or_default();
    meta.ignore_rest();
    let mut spec = root.section("spec", errs);
    root.ignore_rest();
    let admin = spec.field(
        "type",
        errs,
        one_of(&["admin", "user", "hybrid", "standalone"]),
    ) == Some("admin");
    let cp_nodes = control_plane_nodes(&mut spec, errs);
    let mut lb = spec.section("loadBalancer", errs);
    spec.ignore_rest();
    let mut p = Parsed {
        name,
        admin,
        cp_nodes,
        port: DEFAULT_LB_PORT,
        cp_vip: None,
        cp_vip_path: String::new(),
        ingress: None,
        ingress_path: String::new(),
        pools: Vec::new(),
        ranges: Vec::new(),
        lb_nodes: Vec::new(),
        lb_nodes_path: String::new(),
    };
    read_load_balancer(&mut lb, &mut p, errs);
    lb.ignore_rest();
    Some(p)
}

fn control_plane_nodes(spec: &mut Section, errs: &mut FieldErrors) -> Vec<ClusterNode> {
    let mut cp = spec.section("controlPlane", errs);
    let mut cp_pool = cp.section("nodePoolSpec", errs);
    let cp_nodes = match cp_pool.require("nodes", errs) {
        Some(v) => nodes(&cp_pool.path("nodes"), v, errs),
        None => Vec::new(),
    };
    cp_pool.ignore_rest();
    cp.ignore_rest();
    cp_nodes
}

/// `spec.loadBalancer`: mode, port, VIPs, address pools and the load-balancer nodes.
fn read_load_balancer(lb: &mut Section, p: &mut Parsed, errs: &mut FieldErrors) {
    if let Some(v) = lb.require("mode", errs) {
        if v.as_str() != Some("bundled") {
            errs.push(
                lb.path("mode"),
                format!(
                    "{} is not supported: vipd implements mode bundled",
                    show(&v)
                ),
            );
        }
    }
    let mut ports = lb.section("ports", errs);
    p.port = ports
        .field("controlPlaneLBPort", errs, int(1..=65535))
        .map_or(DEFAULT_LB_PORT, |n| n as u16);
    ports.ignore_rest();

    let mut vips = lb.section("vips", errs);
    p.cp_vip_path = vips.path("controlPlaneVIP");
    p.cp_vip = vips
        .require("controlPlaneVIP", errs)
        .and_then(|v| host_ip(&p.cp_vip_path, &v, errs));
    p.ingress_path = vips.path("ingressVIP");
    p.ingress = vips.field("ingressVIP", errs, host_ip);
    vips.ignore_rest();
    if p.admin && p.ingress.is_some() {
        errs.push(
            &p.ingress_path,
            "is not allowed in an admin cluster (spec.type: admin): admin clusters run no ingress",
        );
    }

    (p.pools, p.ranges) = match lb.take("addressPools") {
        Some(v) => address_pools(&lb.path("addressPools"), v, errs),
        None => (Vec::new(), Vec::new()),
    };

    let mut np = lb.section("nodePoolSpec", errs);
    let lb_pool_path = np.path("nodes");
    let lb_nodes = np.take("nodes").map(|v| nodes(&lb_pool_path, v, errs));
    np.ignore_rest();
    (p.lb_nodes, p.lb_nodes_path) = match lb_nodes {
        Some(n) => (n, lb_pool_path),
        None => (
            p.cp_nodes.clone(),
            "spec.controlPlane.nodePoolSpec.nodes".to_string(),
        ),
    };
}

/// Overlaps, within a pool or across pools.
fn check_pool_overlaps(ranges: &[Range], errs: &mut FieldErrors) {
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[..i] {
            if a.start.is_ipv4() == b.start.is_ipv4()
                && to_u128(a.start) <= to_u128(b.end)
                && to_u128(b.start) <= to_u128(a.end)
            {
                errs.push(
                    &a.path,
                    format!("{:?} overlaps {:?} ({})", a.text, b.text, b.path),
                );
            }
        }
    }
}

/// The control-plane VIP is in no address pool and of the load-balancer nodes' family.
fn check_control_plane_vip(p: &Parsed, errs: &mut FieldErrors) {
    let Some(vip) = p.cp_vip else { return };
    if let Some(r) = p.ranges.iter().find(|r| r.contains(vip)) {
        errs.push(
            &p.cp_vip_path,
            format!("{vip} is inside address pool range {:?} ({}); the control-plane VIP must be in no pool", r.text, r.path),
        );
    }
    for (i, n) in p.lb_nodes.iter().enumerate() {
        if n.l2().is_ipv4() != vip.is_ipv4() {
            errs.push(
                format!("{}[{i}]", p.lb_nodes_path),
                format!("{} is not the same family as controlPlaneVIP {vip}", n.l2()),
            );
        }
    }
}

/// The ingress VIP is in an address pool (admin clusters excepted) and not an address its pool excludes.
fn check_ingress_vip(p: &Parsed, errs: &mut FieldErrors) {
    let Some(vip) = p.ingress else { return };
    match p.ranges.iter().find(|r| r.contains(vip)) {
        None if !p.admin => errs.push(&p.ingress_path, format!("{vip} is in no address pool")),
        None => {}
        Some(r) if p.pools[r.pool].avoid_buggy_ips && is_buggy(vip) => {
            errs.push(
                &p.ingress_path,
                format!(
                    "{vip} ends in .0 or .255, which pool {:?} excludes (avoidBuggyIPs: true)",
                    p.pools[r.pool].name.as_deref().unwrap_or("")
                ),
            );
        }
        Some(_) => {}
    }
}

/// This node: `--node`, or the load-balancer node whose address is on this machine; and the local address
/// that holds its L2 address, when it is this machine.
fn find_this_node<'a>(
    p: &Parsed,
    opts: &'a ClusterOptions,
    errs: &mut FieldErrors,
) -> (Option<ClusterNode>, Option<&'a LocalAddr>) {
    let node = match opts.node {
        Some(want) => {
            let found = p
                .lb_nodes
                .iter()
                .copied()
                .find(|n| n.address == want || n.k8s_ip == Some(want));
            if found.is_none() {
                errs.push(
                    "--node",
                    format!("{want} is not a load-balancer node ({})", p.lb_nodes_path),
                );
            }
            found
        }
        None => p.lb_nodes.iter().copied().find(|n| {
            opts.local_addrs
                .iter()
                .any(|l| l.cidr.addr == n.l2() || l.cidr.addr == n.address)
        }),
    };
    let local = node.and_then(|n| opts.local_addrs.iter().find(|l| l.cidr.addr == n.l2()));
    (node, local)
}

/// The L2 subnet (`--subnet`, else the local interface's prefix) holds every load-balancer node, the
/// control-plane VIP and every address pool range; skipped, and said so, when the subnet is unknown.
fn check_subnet(
    p: &Parsed,
    opts: &ClusterOptions,
    local: Option<&LocalAddr>,
    report: &mut ClusterReport,
) {
    let subnet = opts
        .subnet
        .or(local.map(|l| l.cidr))
        .map(|c| Cidr::new(c.network(), c.prefix).unwrap_or(c));
    let Some(net) = subnet else {
        report.skipped.push(
            "the L2 subnet checks (load-balancer nodes in one subnet, controlPlaneVIP in it, every \
             address pool range in it): no load-balancer node address is on this machine; run \
             `vipd validate --cluster-config FILE` on a load-balancer node, or add --subnet CIDR"
                .to_string(),
        );
        return;
    };
    let errs = &mut report.errors;
    for (i, n) in p.lb_nodes.iter().enumerate() {
        if !net.contains(n.l2()) {
            let which = if n.k8s_ip.is_some() {
                "k8sIP"
            } else {
                "address"
            };
            errs.push(
                format!("{}[{i}].{which}", p.lb_nodes_path),
                format!("{} is not in the load-balancer subnet {net}", n.l2()),
            );
        }
    }
    if let Some(vip) = p.cp_vip {
        if !net.contains(vip) {
            errs.push(
                &p.cp_vip_path,
                format!("{vip} is not in the load-balancer nodes' subnet {net}"),
            );
        }
    }
    for r in &p.ranges {
        if !(net.contains(r.start) && net.contains(r.end)) {
            errs.push(
                &r.path,
                format!("{:?} is not inside the load-balancer subnet {net}", r.text),
            );
        }
    }
}

/// This node's vipd config, when the file has no error: the derived `Config` must pass vipd's own checks too.
fn derive(p: &Parsed, node: ClusterNode, local: Option<&LocalAddr>, report: &mut ClusterReport) {
    let Some(vip) = p.cp_vip else { return };
    if !report.errors.is_empty() {
        return;
    }
    let interface = local.map(|l| l.interface.clone());
    let config = Config {
        interface: interface.clone().unwrap_or_default(),
        control_plane_vip: vip,
        control_plane_lb_port: p.port,
        backends: p
            .cp_nodes
            .iter()
            .map(|n| SocketAddr::new(n.l2(), APISERVER_PORT))
            .collect(),
        vrrp: VrrpConfig {
            vrid: vrid_for(&p.name),
            unicast_peers: p
                .lb_nodes
                .iter()
                .map(ClusterNode::l2)
                .filter(|a| *a != node.l2())
                .collect(),
            unicast_source: Some(node.l2()),
            priority: position_priority(p.lb_nodes.iter().position(|n| *n == node).unwrap_or(0)),
            ..VrrpConfig::default()
        },
        health: Default::default(),
        proxy: Default::default(),
        admin: Default::default(),
        metrics: Default::default(),
    };
    if let Err(e) = config.check() {
        report.errors.0.extend(e.0);
        return;
    }
    if interface.is_none() {
        report.skipped.push(format!(
            "the interface for node {}: its address is not on this machine; run validate on that node",
            node.address
        ));
    }
    report.derived = Some(Derived {
        node,
        lb_nodes: p.lb_nodes.clone(),
        lb_nodes_path: p.lb_nodes_path.clone(),
        interface,
        config,
    });
}

/// A load-balancer node's priority when no `--config` sets one: by position in the node pool, first highest
/// (200, 190, 180, ... never below 2, which the default tracking needs). A node added at the end of the list
/// changes no existing node's priority, so nothing moves when the pool grows.
pub fn position_priority(index: usize) -> Priority {
    let p = 200usize.saturating_sub(10 * index).max(2);
    Priority(p as u8)
}

/// VRID from the cluster name (FNV-1a folded into 1..=255): stable per cluster, different across clusters
/// most of the time, which is what a shared L2 segment needs.
pub fn vrid_for(name: &str) -> Vrid {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    Vrid::new((h % 255) as u8 + 1).expect("1..=255 is a valid VRID")
}

fn is_buggy(a: IpAddr) -> bool {
    matches!(a, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255))
}

fn host_ip(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<IpAddr> {
    let a = ip(path, v, errs)?;
    if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
        errs.push(path, format!("{a} is not a unicast host address"));
        return None;
    }
    Some(a)
}

fn nodes(path: &str, v: Value, errs: &mut FieldErrors) -> Vec<ClusterNode> {
    let items = list(path, v, errs, |p, item, errs| {
        let mut s = Section::new(p, item, errs)?;
        let address = s
            .require("address", errs)
            .and_then(|v| host_ip(&s.path("address"), &v, errs));
        let k8s_ip = s.field("k8sIP", errs, host_ip);
        s.ignore_rest();
        Some(ClusterNode {
            address: address?,
            k8s_ip,
        })
    })
    .unwrap_or_default();
    let mut seen: BTreeMap<IpAddr, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, n) in items.into_iter().enumerate() {
        let Some(n) = n else { continue };
        if let Some(first) = seen.get(&n.address) {
            errs.push(
                format!("{path}[{i}].address"),
                format!("{} is listed twice (also {path}[{first}])", n.address),
            );
            continue;
        }
        seen.insert(n.address, i);
        out.push(n);
    }
    if out.is_empty() && errs.iter().all(|e| !e.path.starts_with(path)) {
        errs.push(path, "at least one node is required");
    }
    out
}

fn address_pools(path: &str, v: Value, errs: &mut FieldErrors) -> (Vec<Pool>, Vec<Range>) {
    let mut pools = Vec::new();
    let mut ranges = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let items = match v {
        Value::Array(items) => items,
        other => {
            errs.push(path, format!("{} is not a list", show(&other)));
            return (pools, ranges);
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(mut s) = Section::new(&p, item, errs) else {
            continue;
        };
        let name_path = s.path("name");
        let name = s
            .require("name", errs)
            .and_then(|v| text(&name_path, &v, errs));
        if let Some(n) = &name {
            if let Some(first) = names.get(n) {
                errs.push(&name_path, format!("{n:?} is already the name of {first}"));
            } else {
                names.insert(n.clone(), p.clone());
            }
        }
        let avoid = s.field("avoidBuggyIPs", errs, boolean).unwrap_or(false);
        s.field("manualAssign", errs, boolean);
        let pool_index = pools.len();
        let addr_path = s.path("addresses");
        if let Some(v) = s.require("addresses", errs) {
            let parsed = list(&addr_path, v, errs, |rp, item, errs| {
                let t = text(rp, &item, errs)?;
                match parse_range(&t) {
                    Ok((start, end)) => Some(Range {
                        path: rp.to_string(),
                        text: t,
                        start,
                        end,
                        pool: pool_index,
                    }),
                    Err(why) => {
                        errs.push(rp, format!("{t:?} {why}"));
                        None
                    }
                }
            });
            match parsed {
                Some(rs) if rs.is_empty() => {
                    errs.push(&addr_path, "at least one range is required")
                }
                Some(rs) => ranges.extend(rs.into_iter().flatten()),
                None => {}
            }
        }
        s.ignore_rest();
        pools.push(Pool {
            name,
            avoid_buggy_ips: avoid,
        });
    }
    (pools, ranges)
}

/// `A.B.C.D/N` (no host bits) or `A-B` (no spaces around the dash, one family, start <= end).
fn parse_range(t: &str) -> Result<(IpAddr, IpAddr), String> {
    if t.contains('/') {
        let c: Cidr = t
            .parse()
            .map_err(|_| "is not a CIDR (address/prefix)".to_string())?;
        if c.has_host_bits() {
            return Err(format!(
                "has host bits set (the network is {}/{})",
                c.network(),
                c.prefix
            ));
        }
        return Ok((c.network(), c.last()));
    }
    let Some((a, b)) = t.split_once('-') else {
        return Err(
            "is neither a CIDR (192.0.2.0/24) nor a range (192.0.2.10-192.0.2.20)".to_string(),
        );
    };
    if a != a.trim() || b != b.trim() {
        return Err("has spaces around the dash; write A-B".to_string());
    }
    let start: IpAddr = a
        .parse()
        .map_err(|_| format!("has a start {a:?} that is not an IP address"))?;
    let end: IpAddr = b
        .parse()
        .map_err(|_| format!("has an end {b:?} that is not an IP address"))?;
    if start.is_ipv4() != end.is_ipv4() {
        return Err("mixes IPv4 and IPv6".to_string());
    }
    if to_u128(start) > to_u128(end) {
        return Err("starts after it ends".to_string());
    }
    Ok((start, end))
}

/// The text `vipd validate` prints for a report: errors, then skipped checks, then one summary line.
pub fn render(file: &str, report: &ClusterReport) -> String {
    let mut out = String::new();
    for e in report.errors.iter() {
        let _ = writeln!(out, "{e}");
    }
    for s in &report.skipped {
        let _ = writeln!(out, "skipped: {s}");
    }
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if report.errors.is_empty() {
        let what = match &report.derived {
            Some(d) => format!(
                "node {} on {}: VIP {}, {} backends, {} unicast peers, VRID {}, priority {}",
                d.node.address,
                d.interface.as_deref().unwrap_or("an unknown interface"),
                SocketAddr::new(d.config.control_plane_vip, d.config.control_plane_lb_port),
                d.config.backends.len(),
                d.config.vrrp.unicast_peers.len(),
                d.config.vrrp.vrid,
                d.config.vrrp.priority,
            ),
            None => "no node derived".to_string(),
        };
        let skipped = match report.skipped.len() {
            0 => String::new(),
            n => format!(", {n} check(s) skipped"),
        };
        let _ = writeln!(
            out,
            "{file}: valid cluster config for cluster {:?} ({what}){skipped}",
            report.cluster_name
        );
    } else {
        let _ = writeln!(out, "{file}: {} error(s)", report.errors.len());
    }
    out
}

pub mod merge;

#[cfg(test)]
mod tests;
