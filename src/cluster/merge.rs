//! `--cluster-config FILE [--config FILE]`: one node's config from both files. The cluster configuration gives
//! the topology (VIP, port, backends, unicast peers and source, this node's interface); the optional vipd config,
//! in vipd's own schema with none of its keys required, gives what a cluster configuration does not carry
//! (health, VRRP timing, priority, VRID, proxy, admin). A topology key the vipd config also sets must agree.
//!
//! The merge works on the YAML tree: the derived topology is written into the vipd config's document where the
//! document is silent, and the result goes through `Config::from_value`, so every rule of `validate --config`
//! applies, to keys this module has never heard of too.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{check_file, render, ClusterOptions, ClusterReport, Derived};
use crate::config::{parse_yaml, Config, FieldErrors, Track, UNHEALTHY_PRIORITY};
use crate::localnet::{Cidr, LocalAddr};

/// Where a node's config comes from in cluster mode (`vipd run` / `validate` / `manifest --cluster-config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSources {
    pub cluster: PathBuf,
    /// `--config`: vipd's own schema, every key optional.
    pub config: Option<PathBuf>,
    /// `--node`: else the load-balancer node whose L2 address is on this machine.
    pub node: Option<IpAddr>,
    /// `--subnet` (validate only): else the prefix of the interface holding the node's address.
    pub subnet: Option<Cidr>,
}

/// The config a node runs, and what checking the cluster configuration said on the way.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    /// Skipped checks and warnings (never errors: with an error there is no `Resolved`).
    pub report: ClusterReport,
}

/// Why the files give no config: the lines to print, each error with its field path, then a count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub Vec<String>);

/// Stands in for the interface when a config is derived for another machine (`vipd manifest --node`): the pod
/// finds the real one when it runs. Nothing reads it but the printed manifest's own fields.
pub const ELSEWHERE_INTERFACE: &str = "on-the-node";

/// Whether the node's interface must be known: yes to run or print a config, no to write another node's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    Required,
    FoundOnTheNode,
}

/// Reads both files and derives this node's config; `local_addrs` is this machine (a parameter for tests).
pub fn resolve(src: &ClusterSources, local_addrs: Vec<LocalAddr>) -> Result<Resolved, Refused> {
    resolve_for(src, local_addrs, Interface::Required)
}

/// [`resolve`], for a node that may be another machine when `interface` says so.
pub fn resolve_for(
    src: &ClusterSources,
    local_addrs: Vec<LocalAddr>,
    interface: Interface,
) -> Result<Resolved, Refused> {
    let (mut report, derived) = derive_node(src, local_addrs, interface)?;
    let user = match &src.config {
        Some(path) => read_vipd_config(path)?,
        None => Map::new(),
    };
    let written = Written::of(&user);
    let config = merge_checked(src, user, &derived, &written)?;
    report.warnings = tracking_warnings(&config, &derived, written.priority);
    let interface = (config.interface != ELSEWHERE_INTERFACE).then(|| config.interface.clone());
    report.derived = Some(Derived {
        config: config.clone(),
        interface,
        ..derived
    });
    Ok(Resolved { config, report })
}

/// The cluster configuration's rules, and this node's topology from it.
fn derive_node(
    src: &ClusterSources,
    local_addrs: Vec<LocalAddr>,
    interface: Interface,
) -> Result<(ClusterReport, Derived), Refused> {
    let opts = ClusterOptions {
        node: src.node,
        subnet: src.subnet,
        local_addrs,
    };
    let cluster_file = src.cluster.display().to_string();
    let report = check_file(&src.cluster, &opts).map_err(|e| Refused(e.lines(&src.cluster)))?;
    if !report.errors.is_empty() {
        return Err(Refused(lines(&render(&cluster_file, &report))));
    }
    let Some(mut derived) = report.derived.clone() else {
        return Err(Refused(vec![format!(
            "{cluster_file}: no load-balancer node's address is on this machine; add --node ADDR"
        )]));
    };
    if derived.interface.is_none() && interface == Interface::FoundOnTheNode {
        derived.interface = Some(ELSEWHERE_INTERFACE.to_string());
    }
    Ok((report, derived))
}

/// The vipd config's document with the topology filled in, through every rule of `validate --config`, then
/// checked against the cluster configuration where both set a key.
fn merge_checked(
    src: &ClusterSources,
    user: Map<String, Value>,
    derived: &Derived,
    written: &Written,
) -> Result<Config, Refused> {
    let cluster_file = src.cluster.display().to_string();
    let config_file = src.config.as_ref().map(|p| p.display().to_string());
    let mut errs = FieldErrors::default();
    let merged = fill_topology(user, derived, &mut errs, config_file.as_deref());
    match Config::from_value(Value::Object(merged)) {
        Ok(config) if errs.is_empty() => {
            let here = config_file.as_deref().unwrap_or("--config");
            check_agreement(&config, derived, written, here, &cluster_file, &mut errs);
            if errs.is_empty() {
                return Ok(config);
            }
        }
        Ok(_) => {}
        Err(e) => errs.0.extend(e.0),
    }
    Err(refused(errs, config_file.as_deref(), &cluster_file))
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

fn refused(errs: FieldErrors, config_file: Option<&str>, cluster_file: &str) -> Refused {
    let mut out: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let count = match config_file {
        Some(c) => format!("{c} with {cluster_file}: {} error(s)", errs.len()),
        None => format!(
            "{cluster_file}: the derived config: {} error(s)",
            errs.len()
        ),
    };
    out.push(count);
    Refused(out)
}

/// The vipd config as a YAML mapping (an empty file is an empty mapping: every key is optional here).
fn read_vipd_config(path: &std::path::Path) -> Result<Map<String, Value>, Refused> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Refused(vec![format!("{}: cannot read it: {e}", path.display())]))?;
    let shown = path.display();
    match parse_yaml(&text) {
        Ok(Value::Null) => Ok(Map::new()),
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Refused(vec![format!(
            "{shown}: the document is not a mapping"
        )])),
        Err(e) => Err(Refused(e.lines(path))),
    }
}

/// Which topology keys the vipd config wrote itself (so they must agree with the cluster configuration).
#[derive(Debug, Default)]
struct Written {
    interface: bool,
    vip: bool,
    port: bool,
    backends: bool,
    peers: bool,
    source: bool,
    priority: bool,
}

impl Written {
    fn of(user: &Map<String, Value>) -> Written {
        let vrrp = user.get("vrrp").and_then(Value::as_object);
        let in_vrrp = |k: &str| vrrp.is_some_and(|v| v.contains_key(k));
        Written {
            interface: user.contains_key("interface"),
            vip: user.contains_key("controlPlaneVIP"),
            port: user.contains_key("controlPlaneLBPort"),
            backends: user.contains_key("backends"),
            peers: in_vrrp("unicastPeers"),
            source: in_vrrp("unicastSource"),
            priority: in_vrrp("priority"),
        }
    }
}

/// Writes the derived topology, VRID and priority where the vipd config is silent.
fn fill_topology(
    mut user: Map<String, Value>,
    d: &Derived,
    errs: &mut FieldErrors,
    config_file: Option<&str>,
) -> Map<String, Value> {
    let c = &d.config;
    let text = |v: &dyn ToString| Value::String(v.to_string());
    match &d.interface {
        Some(i) => put(&mut user, "interface", text(i)),
        None if !user.contains_key("interface") => {
            errs.push(
                "interface",
                format!(
                    "node {}'s address {} is on no interface of this machine; run on that node, or set interface in {}",
                    d.node.address,
                    d.node.l2(),
                    config_file.unwrap_or("a --config file")
                ),
            );
            // Said once: not again as "is required" by the schema.
            put(&mut user, "interface", text(&ELSEWHERE_INTERFACE));
        }
        None => {}
    }
    put(&mut user, "controlPlaneVIP", text(&c.control_plane_vip));
    put(
        &mut user,
        "controlPlaneLBPort",
        Value::from(c.control_plane_lb_port),
    );
    put(
        &mut user,
        "backends",
        Value::Array(c.backends.iter().map(|b| text(b)).collect()),
    );
    let vrrp = user
        .entry("vrrp")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(v) = vrrp {
        let peers = c.vrrp.unicast_peers.iter().map(|p| text(p)).collect();
        put(v, "unicastPeers", Value::Array(peers));
        if let Some(s) = c.vrrp.unicast_source {
            put(v, "unicastSource", text(&s));
        }
        put(v, "vrid", Value::from(c.vrrp.vrid.get()));
        put(v, "priority", Value::from(c.vrrp.priority.get()));
    }
    user
}

/// Only where the document is silent: what it wrote is compared afterwards, typed.
fn put(m: &mut Map<String, Value>, key: &str, v: Value) {
    m.entry(key).or_insert(v);
}

/// A topology key both files set must say the same; the error names both places.
fn check_agreement(
    c: &Config,
    d: &Derived,
    w: &Written,
    here: &str,
    cluster_file: &str,
    errs: &mut FieldErrors,
) {
    let want = &d.config;
    let mut differ = |written: bool, key: &str, ours: String, theirs: String, place: String| {
        if written && ours != theirs {
            errs.push(
                key,
                format!("{ours} (in {here}) disagrees with {place}: {theirs} (in {cluster_file})"),
            );
        }
    };
    if let Some(i) = d.interface.as_ref().filter(|i| *i != ELSEWHERE_INTERFACE) {
        let place = format!("the interface holding {}", d.node.l2());
        differ(
            w.interface,
            "interface",
            c.interface.clone(),
            i.clone(),
            place,
        );
    }
    differ(
        w.vip,
        "controlPlaneVIP",
        c.control_plane_vip.to_string(),
        want.control_plane_vip.to_string(),
        "spec.loadBalancer.vips.controlPlaneVIP".into(),
    );
    differ(
        w.port,
        "controlPlaneLBPort",
        c.control_plane_lb_port.to_string(),
        want.control_plane_lb_port.to_string(),
        "spec.loadBalancer.ports.controlPlaneLBPort".into(),
    );
    differ(
        w.backends,
        "backends",
        set(&c.backends),
        set(&want.backends),
        "spec.controlPlane.nodePoolSpec.nodes (on :6443)".into(),
    );
    differ(
        w.peers,
        "vrrp.unicastPeers",
        set(&c.vrrp.unicast_peers),
        set(&want.vrrp.unicast_peers),
        format!("the other load-balancer nodes ({})", d.lb_nodes_path),
    );
    let show = |a: Option<IpAddr>| a.map_or("none".to_string(), |a| a.to_string());
    differ(
        w.source,
        "vrrp.unicastSource",
        show(c.vrrp.unicast_source),
        show(want.vrrp.unicast_source),
        format!("this node's address ({})", d.lb_nodes_path),
    );
}

fn set<T: ToString>(items: &[T]) -> String {
    let s: BTreeSet<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", s.into_iter().collect::<Vec<_>>().join(", "))
}

/// With every node's priority known (one shared `--config`, or by position), a numeric `trackWeight` that leaves
/// an unhealthy node at or above a healthy peer cannot move the VIP to it: one warning per such node.
pub fn tracking_warnings(c: &Config, d: &Derived, priority_written: bool) -> Vec<String> {
    let Track::Weight(w) = c.vrrp.track else {
        return Vec::new();
    };
    let prio = |i: usize| {
        if priority_written {
            c.vrrp.priority
        } else {
            super::position_priority(i)
        }
    };
    let mut out = Vec::new();
    for (i, a) in d.lb_nodes.iter().enumerate() {
        let down = c.vrrp.track.unhealthy_priority(prio(i)).unwrap_or(prio(i));
        let kept_from: Vec<String> = d
            .lb_nodes
            .iter()
            .enumerate()
            // A backup preempts only a lower priority: a tie keeps the master (RFC 5798 6.4.2).
            .filter(|(j, _)| *j != i && down >= prio(*j))
            .map(|(j, b)| format!("{} ({})", b.l2(), prio(j)))
            .collect();
        if !kept_from.is_empty() {
            out.push(format!(
                "vrrp.trackWeight: {w} cannot move the VIP away from {} (priority {}, {down} without a healthy \
                 backend) to {}; leave trackWeight out (lowest: {UNHEALTHY_PRIORITY}) or use fault",
                a.l2(),
                prio(i),
                kept_from.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use vrrp::proto::Priority;

    /// Three load-balancer nodes (.31, .32, .33) in front of three control-plane nodes.
    const CLUSTER: &str = "apiVersion: baremetal.cluster.gke.io/v1
kind: Cluster
metadata: {name: prod}
spec:
  controlPlane:
    nodePoolSpec:
      nodes: [{address: 192.0.2.11}, {address: 192.0.2.12}, {address: 192.0.2.13}]
  loadBalancer:
    mode: bundled
    ports: {controlPlaneLBPort: 8443}
    vips: {controlPlaneVIP: 192.0.2.100}
    nodePoolSpec:
      nodes: [{address: 192.0.2.31}, {address: 192.0.2.32}, {address: 192.0.2.33}]
";

    struct Files(PathBuf);

    impl Files {
        fn new(tag: &str) -> Files {
            let dir = std::env::temp_dir().join(format!("vipd-merge-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cluster.yaml"), CLUSTER).unwrap();
            Files(dir)
        }
        fn sources(&self, config: Option<&str>, node: Option<&str>) -> ClusterSources {
            let config = config.map(|text| {
                let p = self.0.join("vipd.yaml");
                std::fs::write(&p, text).unwrap();
                p
            });
            ClusterSources {
                cluster: self.0.join("cluster.yaml"),
                config,
                node: node.map(|n| n.parse().unwrap()),
                subnet: None,
            }
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// This machine is node `addr` on eth1.
    fn machine(addr: &str) -> Vec<LocalAddr> {
        vec![LocalAddr {
            interface: "eth1".into(),
            cidr: format!("{addr}/24").parse().unwrap(),
        }]
    }

    fn resolved(files: &Files, config: Option<&str>, on: &str) -> Resolved {
        resolve(&files.sources(config, None), machine(on)).unwrap_or_else(|r| panic!("{:#?}", r.0))
    }

    fn refused(files: &Files, config: Option<&str>, on: &str) -> Vec<String> {
        match resolve(&files.sources(config, None), machine(on)) {
            Ok(r) => panic!("accepted: {:?}", r.config),
            Err(r) => r.0,
        }
    }

    fn shown(p: &Path) -> String {
        p.display().to_string()
    }

    #[test]
    fn the_cluster_configuration_alone_gives_a_running_config() {
        let f = Files::new("alone");
        let c = resolved(&f, None, "192.0.2.32").config;
        assert_eq!(c.interface, "eth1");
        assert_eq!(c.control_plane_vip.to_string(), "192.0.2.100");
        assert_eq!(c.control_plane_lb_port, 8443);
        assert_eq!(c.backends.len(), 3);
        let peers: Vec<String> = c.vrrp.unicast_peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, ["192.0.2.31", "192.0.2.33"]);
        assert_eq!(c.vrrp.unicast_source, Some("192.0.2.32".parse().unwrap()));
        assert_eq!(c.vrrp.vrid, super::super::vrid_for("prod"));
        // Second in the pool: 190; the first has 200, the third 180.
        assert_eq!(c.vrrp.priority, Priority(190));
        assert_eq!(c.vrrp.track, Track::Lowest);
    }

    #[test]
    fn the_small_config_gives_what_the_cluster_configuration_does_not() {
        let f = Files::new("small");
        let small =
            "vrrp: {vrid: 51, advertInterval: 100ms}\nhealth: {type: tcp, caFile: /etc/ca.pem}\n\
                     admin: {listen: 127.0.0.1:9555}\n";
        let c = resolved(&f, Some(small), "192.0.2.31").config;
        assert_eq!(
            c.vrrp.vrid.get(),
            51,
            "a VRID set in --config matches an existing router"
        );
        assert_eq!(c.vrrp.advert_interval.as_duration().as_millis(), 100);
        assert_eq!(
            c.vrrp.priority,
            Priority(200),
            "no priority in --config: by position"
        );
        assert_eq!(c.health.ca_file, PathBuf::from("/etc/ca.pem"));
        assert_eq!(c.admin.listen.port(), 9555);
        assert_eq!(c.control_plane_lb_port, 8443);
        let c = resolved(&f, Some("vrrp: {priority: 120}\n"), "192.0.2.33").config;
        assert_eq!(c.vrrp.priority, Priority(120));
    }

    #[test]
    fn agreeing_topology_is_fine_and_a_disagreement_names_both_places() {
        let f = Files::new("agree");
        let same = "interface: eth1\ncontrolPlaneVIP: 192.0.2.100\ncontrolPlaneLBPort: 8443\n\
                    backends: [192.0.2.13:6443, 192.0.2.11:6443, 192.0.2.12:6443]\n\
                    vrrp: {unicastPeers: [192.0.2.33, 192.0.2.31], unicastSource: 192.0.2.32}\n";
        resolved(&f, Some(same), "192.0.2.32");
        let other = "interface: eth9\ncontrolPlaneVIP: 192.0.2.99\ncontrolPlaneLBPort: 443\n\
                     backends: [192.0.2.11:6443]\nvrrp: {unicastPeers: [192.0.2.31]}\n";
        let lines = refused(&f, Some(other), "192.0.2.32");
        let (cfg, cl) = (
            shown(&f.0.join("vipd.yaml")),
            shown(&f.0.join("cluster.yaml")),
        );
        assert_eq!(
            lines,
            [
                format!("interface: eth9 (in {cfg}) disagrees with the interface holding 192.0.2.32: eth1 (in {cl})"),
                format!("controlPlaneVIP: 192.0.2.99 (in {cfg}) disagrees with spec.loadBalancer.vips.controlPlaneVIP: 192.0.2.100 (in {cl})"),
                format!("controlPlaneLBPort: 443 (in {cfg}) disagrees with spec.loadBalancer.ports.controlPlaneLBPort: 8443 (in {cl})"),
                format!("backends: [192.0.2.11:6443] (in {cfg}) disagrees with spec.controlPlane.nodePoolSpec.nodes (on :6443): [192.0.2.11:6443, 192.0.2.12:6443, 192.0.2.13:6443] (in {cl})"),
                format!("vrrp.unicastPeers: [192.0.2.31] (in {cfg}) disagrees with the other load-balancer nodes (spec.loadBalancer.nodePoolSpec.nodes): [192.0.2.31, 192.0.2.33] (in {cl})"),
                format!("{cfg} with {cl}: 5 error(s)"),
            ]
        );
    }

    #[test]
    fn every_rule_of_both_files_applies() {
        let f = Files::new("rules");
        let lines = refused(
            &f,
            Some("vrrp: {priority: 300}\nhealth: {tyme: tcp}\n"),
            "192.0.2.31",
        );
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0], "vrrp.priority: 300 is out of range 1..=255");
        assert!(
            lines[1].starts_with("health.tyme: unknown key"),
            "{lines:?}"
        );
        // A cluster-configuration rule: --node must be a load-balancer node.
        let r = resolve(&f.sources(None, Some("192.0.2.11")), machine("192.0.2.31")).unwrap_err();
        assert!(
            r.0[0].starts_with("--node: 192.0.2.11 is not a load-balancer node"),
            "{:?}",
            r.0
        );
        // Not a load-balancer node, and no --node: nothing to run.
        let r = resolve(&f.sources(None, None), machine("192.0.2.77")).unwrap_err();
        assert!(
            r.0.iter().any(|l| l.contains("add --node ADDR")),
            "{:?}",
            r.0
        );
    }

    #[test]
    fn another_machine_needs_an_interface_unless_for_a_manifest() {
        let f = Files::new("elsewhere");
        let r = resolve(&f.sources(None, Some("192.0.2.33")), machine("192.0.2.31")).unwrap_err();
        assert_eq!(
            r.0[0],
            "interface: node 192.0.2.33's address 192.0.2.33 is on no interface of this machine; \
             run on that node, or set interface in a --config file"
        );
        assert_eq!(r.0.len(), 2, "said once: {:?}", r.0);
        let ok = resolve_for(
            &f.sources(None, Some("192.0.2.33")),
            machine("192.0.2.31"),
            Interface::FoundOnTheNode,
        )
        .unwrap();
        assert_eq!(ok.config.vrrp.priority, Priority(180));
        assert_eq!(ok.report.derived.unwrap().interface, None);
    }

    #[test]
    fn a_weight_that_cannot_move_the_vip_is_warned_about() {
        let f = Files::new("warn");
        // 200 / 190 / 180 by position: -50 moves it from every node, -15 not from the first to the second.
        assert!(
            resolved(&f, Some("vrrp: {trackWeight: -50}\n"), "192.0.2.31")
                .report
                .warnings
                .is_empty()
        );
        let w = resolved(&f, Some("vrrp: {trackWeight: -15}\n"), "192.0.2.31")
            .report
            .warnings;
        assert_eq!(
            w,
            ["vrrp.trackWeight: -15 cannot move the VIP away from 192.0.2.31 (priority 200, 185 without a \
              healthy backend) to 192.0.2.33 (180); leave trackWeight out (lowest: 1) or use fault"]
        );
        // A tie keeps the master: 200 - 10 = 190 does not move it to the second node.
        let w = resolved(&f, Some("vrrp: {trackWeight: -10}\n"), "192.0.2.31")
            .report
            .warnings;
        assert!(
            w[0].contains("to 192.0.2.32 (190), 192.0.2.33 (180)"),
            "{w:?}"
        );
        assert!(resolved(&f, None, "192.0.2.31").report.warnings.is_empty());
        let fault = "vrrp: {trackWeight: fault}\n";
        assert!(resolved(&f, Some(fault), "192.0.2.31")
            .report
            .warnings
            .is_empty());
    }
}
