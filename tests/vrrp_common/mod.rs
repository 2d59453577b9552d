//! Shared by the VRRP namespace tests (`vrrp_*.rs`): how a test's [`NodeSpec`] becomes a running `vipd run`
//! (one place: [`vipd_spec`]), the node's state and counters read from its admin endpoint, Keepalived
//! configuration, and a TCP backend a test can take away.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use vipd_lab::netns::{wait_for, Lab, Node, Proc, TempDir};
use vipd_lab::pair::keepalived_command;
use vipd_lab::vipd::{in_netns, VipdNode, VipdSpec};

/// Everything a test says about a node; [`vipd_spec`] turns it into a vipd config.
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
    /// `None`: tracking is not the subject, so the node's only backend (nothing listens there) has
    /// `trackWeight: 0` and the priority stays as configured. `Some(addr)`: the backend, with `trackWeight:
    /// fault`.
    pub fault_backend: Option<SocketAddr>,
    /// `vrrp.version`: "3", "2" or "mixed".
    pub version: &'static str,
    /// `vrrp.authPass`.
    pub auth_pass: Option<&'static str>,
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
            fault_backend: None,
            version: "3",
            auth_pass: None,
        }
    }
}

/// Where the node's backend is when tracking does not matter: its own loopback, where nothing listens.
const NO_BACKEND: &str = "127.0.0.1:6443";

/// The only place that maps a test's node onto vipd's config.
pub fn vipd_spec(spec: &NodeSpec) -> VipdSpec {
    let backend = spec
        .fault_backend
        .unwrap_or_else(|| NO_BACKEND.parse().expect("literal"));
    let mut v = VipdSpec::new(spec.vip, vec![backend], spec.priority);
    v.vrid = spec.vrid;
    // The spec keeps a `&'static str`; a handful of short strings per test run.
    v.advert_interval =
        Box::leak(format!("{}ms", u32::from(spec.interval_cs) * 10).into_boxed_str());
    v.preempt = spec.preempt;
    v.unicast_peers = spec.peers.clone();
    v.track_weight = if spec.fault_backend.is_some() {
        "fault".into()
    } else {
        "0".into()
    };
    let mut v = v.with_extra(
        "vrrp",
        &format!("garp: {{repeat: {}, delay: 5s}}", spec.garp_repeat),
    );
    if let Some(s) = spec.source {
        v = v.with_extra("vrrp", &format!("unicastSource: \"{s}\""));
    }
    if spec.version != "3" {
        v = v.with_extra("vrrp", &format!("version: {}", spec.version));
    }
    if let Some(p) = spec.auth_pass {
        v = v.with_extra("vrrp", &format!("authPass: \"{p}\""));
    }
    match spec.checksum {
        "pseudo" => {}
        "message" => v = v.with_extra("vrrp", "checksum: messageOnly"),
        c => panic!("unknown checksum mode {c:?}"),
    }
    v
}

/// A running vipd node and its config directory.
pub struct NodeProc {
    pub vipd: VipdNode,
    _dir: TempDir,
}

impl std::ops::Deref for NodeProc {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.vipd.proc
    }
}

impl std::ops::DerefMut for NodeProc {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.vipd.proc
    }
}

/// Starts `vipd run` in the node's namespace and waits until its admin endpoint reports a VRRP state.
pub fn start_node(node: &Node, spec: &NodeSpec) -> NodeProc {
    let dir = TempDir::new("vipd-vrrp").unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_vipd"));
    let mut v = vipd_spec(spec);
    v.interface = node.ifname.clone();
    let vipd = VipdNode::start(bin, &node.ns, &v, dir.path()).unwrap();
    let p = NodeProc { vipd, _dir: dir };
    let up = wait_for(Duration::from_secs(15), || p.vipd.state());
    assert!(
        up.is_some(),
        "node {} did not start: {:?}",
        node.name,
        p.lines()
    );
    p
}

/// The VRRP state from `/status` ("master", "backup", "fault", ...).
pub fn state(p: &NodeProc) -> Option<String> {
    p.vipd.state()
}

pub fn wait_state(p: &NodeProc, want: &str, timeout: Duration) -> bool {
    p.vipd.wait_state(want, timeout).is_some()
}

/// `p` reaches `want` within `timeout`; else fails with `what` and the node's log.
#[track_caller]
pub fn assert_reaches(p: &NodeProc, want: &str, timeout: Duration, what: &str) {
    assert!(wait_state(p, want, timeout), "{what}: {:?}", p.lines());
}

/// The node's VRRP counters from `/metrics`: `vipd_vrrp_<name>_total` as `<name>`, and
/// `vipd_vrrp_packets_dropped_total{reason="<r>"}` as `drop_<r>`.
pub fn stats(p: &NodeProc) -> HashMap<String, u64> {
    let (code, body) = p.vipd.admin_get("/metrics").expect("/metrics");
    assert_eq!(code, 200, "/metrics: {body}");
    let mut out = HashMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix("vipd_vrrp_") else {
            continue;
        };
        let name_end = rest.find(['{', ' ']).unwrap_or(rest.len());
        let Some(name) = rest[..name_end].strip_suffix("_total") else {
            continue;
        };
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let key = if name == "packets_dropped" {
            let Some(reason) = label(line, "reason") else {
                continue;
            };
            format!("drop_{reason}")
        } else {
            name.to_string()
        };
        out.insert(key, value);
    }
    assert!(
        out.contains_key("transitions"),
        "no VRRP counters in /metrics: {body}"
    );
    out
}

/// Polls [`stats`] until `done` holds (a counter moves some time after the packet that moves it is sent);
/// panics with the last counters after `timeout`.
pub fn wait_stats(
    p: &NodeProc,
    timeout: Duration,
    what: &str,
    done: impl Fn(&HashMap<String, u64>) -> bool,
) -> HashMap<String, u64> {
    let mut last = HashMap::new();
    wait_for(timeout, || {
        last = stats(p);
        done(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("{what}: not within {timeout:?}; counters {last:?}"))
}

fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// A TCP backend in a namespace that a test can take away ([`TcpBackend::stop`]) and bring back
/// ([`TcpBackend::start`]): accepts and closes connections, which is all a TCP health check asks.
pub struct TcpBackend {
    ns_name: String,
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpBackend {
    pub fn new(node: &Node, addr: SocketAddr) -> TcpBackend {
        let mut b = TcpBackend {
            ns_name: node.ns.name().to_string(),
            addr,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        b.start();
        b
    }

    pub fn start(&mut self) {
        self.stop();
        let addr = self.addr;
        let l: TcpListener = in_netns(&self.ns_name, move || TcpListener::bind(addr))
            .unwrap()
            .unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        self.stop = stop.clone();
        self.thread = Some(std::thread::spawn(move || {
            // Bounded by the guard: `stop` is set on drop.
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
    }

    /// Closes the listening socket: connections are refused from now on.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.stop();
    }
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
    /// `Some(3)` writes `vrrp_version 3`; `None` leaves Keepalived's default (VRRPv2 for IPv4).
    pub vrrp_version: Option<u8>,
    /// `authentication { auth_type PASS  auth_pass ... }`.
    pub auth_pass: Option<&'static str>,
    /// `state MASTER` instead of `state BACKUP`.
    pub master: bool,
}

impl KaSpec {
    /// Keepalived as most clusters run it: no `vrrp_version` line (VRRPv2), `advert_int 1`.
    pub fn v2(vrid: u8, priority: u8, vip: IpAddr) -> KaSpec {
        KaSpec {
            vrid,
            priority,
            advert_int: "1",
            vip,
            peers: vec![],
            source: None,
            vrrp_version: None,
            auth_pass: None,
            master: false,
        }
    }
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
    if let Some(p) = spec.auth_pass {
        unicast.push_str(&format!(
            "    authentication {{\n        auth_type PASS\n        auth_pass {p}\n    }}\n"
        ));
    }
    let version = match spec.vrrp_version {
        Some(v) => format!("    vrrp_version {v}\n"),
        None => String::new(),
    };
    let state = if spec.master { "MASTER" } else { "BACKUP" };
    let conf = format!(
        "global_defs {{\n    router_id ka_{name}\n{version}    enable_script_security\n}}\n\
         vrrp_instance VI_{vrid} {{\n    state {state}\n    interface {ifname}\n    virtual_router_id {vrid}\n    \
         priority {prio}\n    advert_int {adv}\n{unicast}    virtual_ipaddress {{\n        {vip}/{prefix} dev {ifname}\n    }}\n}}\n",
        name = node.name,
        vrid = spec.vrid,
        ifname = node.ifname,
        prio = spec.priority,
        adv = spec.advert_int,
        vip = spec.vip,
    );
    std::fs::write(dir.join("keepalived.conf"), conf).unwrap();
    let proc = node
        .ns
        .spawn(keepalived_command(&node.ns, dir.path()))
        .unwrap();
    Keepalived { proc, _dir: dir }
}

impl Keepalived {
    /// Kill -9, as a crash: no priority 0, the VIP stays on the interface. The parent is stopped first so it
    /// cannot respawn its VRRP child (nor pass it a SIGTERM on its way out), then both are killed by PID.
    pub fn kill9(&mut self) {
        let child = std::fs::read_to_string(self._dir.join("vrrp.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let parent = nix::unistd::Pid::from_raw(self.proc.pid());
        let _ = nix::sys::signal::kill(parent, Signal::SIGSTOP);
        if let Some(pid) = child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        self.proc.kill9();
    }

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

/// The first `N` nodes of a [`lab`] (n0..) and its client.
pub fn lab_nodes<const N: usize>(lab: &Lab) -> ([&Node; N], &Node) {
    let nodes = std::array::from_fn(|i| lab.node(&format!("n{i}")));
    (nodes, lab.node("client"))
}

/// `vipd run` on each node for VRID `vrid` and `vip`, with the priority at the node's index.
pub fn start_nodes<const N: usize>(
    nodes: &[&Node; N],
    vrid: u8,
    priorities: [u8; N],
    vip: IpAddr,
) -> [NodeProc; N] {
    std::array::from_fn(|i| start_node(nodes[i], &NodeSpec::new(vrid, priorities[i], vip)))
}
