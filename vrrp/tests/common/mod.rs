//! Shared by the namespace tests: how to start a VRRP node (one place: [`node_command`]), Keepalived
//! configuration, and readers of the node's stdout lines.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use vipd_lab::netns::{wait_for, Lab, Node, Proc, TempDir};

/// Everything a test says about a node; [`node_command`] turns it into a process.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub vrid: u8,
    pub priority: u8,
    pub interval_cs: u16,
    pub vip: IpAddr,
    pub peers: Vec<IpAddr>,
    pub source: Option<IpAddr>,
    /// "pseudo" or "message".
    pub checksum: &'static str,
    pub preempt: bool,
    pub garp_repeat: u32,
}

impl NodeSpec {
    pub fn new(vrid: u8, priority: u8, vip: IpAddr) -> Self {
        NodeSpec {
            vrid,
            priority,
            interval_cs: 10,
            vip,
            peers: Vec::new(),
            source: None,
            checksum: "pseudo",
            preempt: true,
            garp_repeat: 3,
        }
    }
}

/// The node binary: the `vrrp-node` example next to the test binary, or `$VRRP_NODE_BIN`.
pub fn node_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VRRP_NODE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("vrrp-node")
}

/// The only place that knows how to start a node: switch this to `vipd run --config` later and every test
/// follows. The process must print `ready`, `state <State> ... vip=<bool>` lines and `stats k=v ...` on
/// SIGUSR1.
pub fn node_command(node: &Node, spec: &NodeSpec) -> Command {
    let mut c = node.ns.command(node_bin());
    c.env("RUST_LOG", "info")
        .args(["--interface", &node.ifname])
        .args(["--vrid", &spec.vrid.to_string()])
        .args(["--priority", &spec.priority.to_string()])
        .args(["--interval-cs", &spec.interval_cs.to_string()])
        .args(["--vip", &spec.vip.to_string()])
        .args(["--checksum", spec.checksum])
        .args(["--garp-repeat", &spec.garp_repeat.to_string()]);
    for p in &spec.peers {
        c.args(["--peer", &p.to_string()]);
    }
    if let Some(s) = spec.source {
        c.args(["--source", &s.to_string()]);
    }
    if !spec.preempt {
        c.arg("--no-preempt");
    }
    c
}

pub fn start_node(node: &Node, spec: &NodeSpec) -> Proc {
    let p = node.ns.spawn(node_command(node, spec)).unwrap();
    assert!(
        p.wait_line(Duration::from_secs(15), |l| l == "ready")
            .is_some(),
        "node {} did not start: {:?}",
        node.name,
        p.lines()
    );
    p
}

/// The last `state` line's state ("Master", "Backup", ...).
pub fn state(p: &Proc) -> Option<String> {
    p.lines().iter().rev().find_map(|l| {
        l.strip_prefix("state ")
            .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
    })
}

pub fn wait_state(p: &Proc, want: &str, timeout: Duration) -> bool {
    wait_for(timeout, || {
        (state(p).as_deref() == Some(want)).then_some(())
    })
    .is_some()
}

/// Ask for a stats line (SIGUSR1) and parse it.
pub fn stats(p: &Proc) -> HashMap<String, u64> {
    let from = p.line_count();
    p.signal(Signal::SIGUSR1).unwrap();
    let (_, line) = p
        .wait_line_from(from, Duration::from_secs(5), |l| l.starts_with("stats "))
        .expect("no stats line");
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Which of `nodes` hold `vip` on their interface right now.
pub fn holders<'a>(nodes: &[&'a Node], vip: IpAddr) -> Vec<&'a str> {
    nodes
        .iter()
        .filter(|n| n.ns.has_addr(&n.ifname, vip))
        .map(|n| n.name.as_str())
        .collect()
}

/// Wait until exactly `who` holds the VIP, then check it stays so for `steady` (never two masters).
pub fn assert_sole_holder(
    nodes: &[&Node],
    vip: IpAddr,
    who: &str,
    timeout: Duration,
    steady: Duration,
) {
    let got = wait_for(timeout, || (holders(nodes, vip) == [who]).then_some(()));
    assert!(
        got.is_some(),
        "expected only {who} to hold {vip}, have {:?}",
        holders(nodes, vip)
    );
    let end = Instant::now() + steady;
    while Instant::now() < end {
        assert_eq!(
            holders(nodes, vip),
            [who],
            "VIP holder changed in steady state"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Keepalived 2.2 VRRP process in a node namespace, its files in a temp dir; reaped by its guard.
pub struct Keepalived {
    pub proc: Proc,
    _dir: TempDir,
}

#[derive(Clone, Debug)]
pub struct KaSpec {
    pub vrid: u8,
    pub priority: u8,
    /// Seconds, e.g. "0.1".
    pub advert_int: &'static str,
    pub vip: IpAddr,
    pub peers: Vec<IpAddr>,
    pub source: Option<IpAddr>,
}

pub fn keepalived(node: &Node, spec: &KaSpec) -> Keepalived {
    let dir = TempDir::new("vipd-ka").unwrap();
    let prefix = if spec.vip.is_ipv4() { 32 } else { 128 };
    let mut unicast = String::new();
    if !spec.peers.is_empty() {
        unicast.push_str("    unicast_peer {\n");
        for p in &spec.peers {
            unicast.push_str(&format!("        {p}\n"));
        }
        unicast.push_str("    }\n");
    }
    if let Some(s) = spec.source {
        unicast.push_str(&format!("    unicast_src_ip {s}\n"));
    }
    let conf = format!(
        "global_defs {{\n    router_id ka_{name}\n    vrrp_version 3\n    enable_script_security\n}}\n\
         vrrp_instance VI_{vrid} {{\n    state BACKUP\n    interface {ifname}\n    virtual_router_id {vrid}\n    \
         priority {prio}\n    advert_int {adv}\n{unicast}    virtual_ipaddress {{\n        {vip}/{prefix} dev {ifname}\n    }}\n}}\n",
        name = node.name,
        vrid = spec.vrid,
        ifname = node.ifname,
        prio = spec.priority,
        adv = spec.advert_int,
        vip = spec.vip,
    );
    let conf_path = dir.join("keepalived.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut c = node.ns.command("keepalived");
    c.args(["-n", "-l", "-D", "-P", "-f"])
        .arg(&conf_path)
        .arg("-p")
        .arg(dir.join("ka.pid"))
        .arg("-r")
        .arg(dir.join("vrrp.pid"))
        .arg("-c")
        .arg(dir.join("checkers.pid"));
    let proc = node.ns.spawn(c).unwrap();
    Keepalived { proc, _dir: dir }
}

impl Keepalived {
    /// Graceful stop: keepalived sends priority 0 and removes its VIP. Its VRRP child is not our child, so
    /// the parent (ours, reaped) is asked with SIGTERM; the child is killed by PID only if it outlives it.
    pub fn stop(&mut self) {
        let child = std::fs::read_to_string(self._dir.join("vrrp.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        self.proc.stop(Signal::SIGTERM, Duration::from_secs(10));
        if let Some(pid) = child {
            let pid = nix::unistd::Pid::from_raw(pid);
            let gone = wait_for(Duration::from_secs(5), || {
                nix::sys::signal::kill(pid, None).is_err().then_some(())
            });
            if gone.is_none() {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A lab with `n` nodes named n0.. plus a client namespace named "client".
pub fn lab(tag: &str, n: usize) -> Lab {
    let mut lab = Lab::new(tag).unwrap();
    for i in 0..n {
        lab.add_node(&format!("n{i}")).unwrap();
    }
    lab.add_node("client").unwrap();
    lab
}
