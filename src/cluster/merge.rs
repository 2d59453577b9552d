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
    let opts = ClusterOptions {
        node: src.node,
        subnet: src.subnet,
        local_addrs,
    };
    let cluster_file = src.cluster.display().to_string();
    let mut report = check_file(&src.cluster, &opts).map_err(|e| Refused(e.lines(&src.cluster)))?;
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
    let config_file = src.config.as_ref().map(|p| p.display().to_string());
    let user = match &src.config {
        Some(path) => read_vipd_config(path)?,
        None => Map::new(),
    };
    let written = Written::of(&user);
    let mut errs = FieldErrors::default();
    let merged = fill_topology(user, &derived, &mut errs, config_file.as_deref());
    let config = match Config::from_value(Value::Object(merged)) {
        Ok(c) if errs.is_empty() => c,
        Ok(_) => return Err(refused(errs, config_file.as_deref(), &cluster_file)),
        Err(e) => {
            errs.0.extend(e.0);
            return Err(refused(errs, config_file.as_deref(), &cluster_file));
        }
    };
    let here = config_file.as_deref().unwrap_or("--config");
    check_agreement(&config, &derived, &written, here, &cluster_file, &mut errs);
    if !errs.is_empty() {
        return Err(refused(errs, config_file.as_deref(), &cluster_file));
    }
    report.warnings = tracking_warnings(&config, &derived, written.priority);
    let interface = (config.interface != ELSEWHERE_INTERFACE).then(|| config.interface.clone());
    report.derived = Some(Derived {
        config: config.clone(),
        interface,
        ..derived
    });
    Ok(Resolved { config, report })
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
