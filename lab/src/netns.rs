//! Network-namespace lab: namespace guards, a switch namespace with a bridge, node namespaces on veth pairs,
//! child processes reaped by PID, `ip -j` readers and a tcpdump-based packet capture.
//!
//! Everything is created inside namespaces this module made (the veth pairs are created inside the switch
//! namespace, one end moved into the node namespace), so a test never changes the root namespace. Every guard
//! cleans up on `Drop`, which also runs when a test panics. Names carry the PID and a counter so tests can run
//! in parallel. Addresses come from the documentation ranges only.
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Run a command to completion; a non-zero exit is an error carrying stderr.
/// A missing program is an error naming it and its package ([`crate::tools::require_for`]).
pub fn run_checked(cmd: &mut Command) -> Result<Output> {
    crate::tools::require_for(cmd)?;
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// A network namespace that is deleted when dropped (processes still inside keep it alive only until they
/// exit; children spawned through [`Netns::spawn`] are killed by their own guards).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create a namespace named from `prefix` plus PID and counter, with loopback up.
    pub fn new(prefix: &str) -> Result<Netns> {
        let name = unique_name(prefix);
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.run(["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `Command` that runs `program` inside this namespace (`ip netns exec` execs in place, so the child's
    /// PID is the program's PID).
    pub fn command<S: AsRef<OsStr>>(&self, program: S) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Run `argv` in the namespace and return its stdout; a non-zero exit is an error.
    pub fn run<I, S>(&self, argv: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut it = argv.into_iter();
        let prog = it.next().ok_or_else(|| anyhow!("empty command"))?;
        let mut cmd = self.command(prog);
        cmd.args(it);
        let out = run_checked(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run `argv` in the namespace and report only whether it succeeded (e.g. `ping -c1`). A missing program
    /// is not a "no": it panics, naming the program and its package (at the caller's line).
    #[track_caller]
    pub fn succeeds<I, S>(&self, argv: I) -> bool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut it = argv.into_iter();
        let Some(prog) = it.next() else { return false };
        if let Err(e) = crate::tools::require(prog.as_ref()) {
            panic!("{e}");
        }
        let mut cmd = self.command(prog);
        cmd.args(it).stdout(Stdio::null()).stderr(Stdio::null());
        cmd.status().map(|s| s.success()).unwrap_or(false)
    }

    /// Set a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run(["sysctl", "-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Spawn a long-running child in the namespace; its stdout and stderr lines are collected (see
    /// [`Proc::wait_line`]) and it is killed and reaped when the guard drops.
    pub fn spawn(&self, cmd: Command) -> Result<Proc> {
        Proc::spawn(cmd)
    }

    /// Spawn `program args` in the namespace (see [`Netns::spawn`]).
    pub fn spawn_args<I, S>(&self, program: &str, args: I) -> Result<Proc>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(program);
        c.args(args);
        Proc::spawn(c)
    }

    /// Run `f` on a fresh thread that has entered this namespace (setns moves only the calling thread, so the
    /// test's own threads are never moved).
    pub fn run_in<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        spawn_in_netns(&self.name, "netns", f)?
            .join()
            .map_err(|_| anyhow!("thread in netns {} panicked", self.name))?
    }

    /// `ip -j addr show dev <ifname>`: the interface's addresses.
    pub fn addrs(&self, ifname: &str) -> Result<Vec<IpAddr>> {
        let out = self.run(["ip", "-j", "addr", "show", "dev", ifname])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("ip -j addr")?;
        let mut addrs = Vec::new();
        for link in v.as_array().into_iter().flatten() {
            for a in link["addr_info"].as_array().into_iter().flatten() {
                if let Some(ip) = a["local"].as_str().and_then(|s| s.parse().ok()) {
                    addrs.push(ip);
                }
            }
        }
        Ok(addrs)
    }

    pub fn has_addr(&self, ifname: &str, ip: IpAddr) -> bool {
        self.addrs(ifname).map(|a| a.contains(&ip)).unwrap_or(false)
    }

    /// `ip -j neigh show`: the neighbour table.
    pub fn neighbours(&self) -> Result<Vec<Neighbour>> {
        let out = self.run(["ip", "-j", "neigh", "show"])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("ip -j neigh")?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| {
                Some(Neighbour {
                    dst: n["dst"].as_str()?.parse().ok()?,
                    dev: n["dev"].as_str().unwrap_or_default().to_string(),
                    lladdr: n["lladdr"].as_str().map(str::to_string),
                    state: n["state"]
                        .as_array()
                        .map(|s| {
                            s.iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default(),
                })
            })
            .collect())
    }

    /// The MAC the neighbour table holds for `ip` (None if absent or incomplete).
    pub fn neigh_mac(&self, ip: IpAddr) -> Option<String> {
        self.neighbours()
            .ok()?
            .into_iter()
            .find(|n| n.dst == ip)
            .and_then(|n| n.lladdr)
    }

    /// The MAC address of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> Result<String> {
        let out = self.run(["ip", "-j", "link", "show", "dev", ifname])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("ip -j link")?;
        v[0]["address"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no address for {ifname}"))
    }

    /// Start tcpdump on `ifname` writing to a file; see [`Capture`].
    pub fn capture(&self, ifname: &str, filter: &str) -> Result<Capture> {
        Capture::start(self, ifname, filter)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One row of `ip -j neigh`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub dst: IpAddr,
    pub dev: String,
    pub lladdr: Option<String>,
    pub state: String,
}

#[derive(Debug, Default)]
struct Lines {
    lines: Vec<String>,
    closed: usize,
}

/// A child process killed by PID (SIGKILL) and reaped when dropped. Its stdout and stderr lines are kept so a
/// test can wait for a line.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    lines: Arc<(Mutex<Lines>, Condvar)>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// A missing program is an error naming it and its package ([`crate::tools::require_for`]).
    pub fn spawn(mut cmd: Command) -> Result<Proc> {
        crate::tools::require_for(&cmd)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let lines = Arc::new((Mutex::new(Lines::default()), Condvar::new()));
        let mut readers = Vec::new();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped"));
        for r in [out, err] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    let (m, cv) = &*lines;
                    m.lock().unwrap().lines.push(line);
                    cv.notify_all();
                }
                let (m, cv) = &*lines;
                m.lock().unwrap().closed += 1;
                cv.notify_all();
            }));
        }
        Ok(Proc {
            child,
            lines,
            readers,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send a signal to this child (by PID).
    pub fn signal(&self, sig: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid()), sig).context("kill")
    }

    /// All lines so far (stdout and stderr interleaved).
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().lines.clone()
    }

    /// The lines from index `from` on (a cursor from [`Proc::line_count`]).
    pub fn lines_from(&self, from: usize) -> Vec<String> {
        let g = self.lines.0.lock().unwrap();
        g.lines
            .get(from..)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// Wait until a line at index >= `from` matches `pred`; returns (index, line). Bounded by `timeout`.
    pub fn wait_line_from(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, String)> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.lines;
        let mut g = m.lock().unwrap();
        let mut next = from;
        loop {
            while next < g.lines.len() {
                if pred(&g.lines[next]) {
                    return Some((next, g.lines[next].clone()));
                }
                next += 1;
            }
            let now = Instant::now();
            if now >= deadline || g.closed == 2 {
                return None;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Wait for any line (from the start) matching `pred`.
    pub fn wait_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_line_from(0, timeout, pred).map(|(_, l)| l)
    }

    /// Number of lines seen so far (a cursor for [`Proc::wait_line_from`]).
    pub fn line_count(&self) -> usize {
        self.lines.0.lock().unwrap().lines.len()
    }

    /// Wait for the child to exit by itself, bounded by `timeout`; None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// Stop with `sig`, wait up to `timeout`, then SIGKILL; returns the exit status if it exited by itself.
    pub fn stop(&mut self, sig: Signal, timeout: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        let _ = self.signal(sig);
        let st = self.wait_exit(timeout);
        if st.is_none() {
            self.kill9();
        }
        self.join_readers();
        st
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        self.join_readers();
    }
}

/// A directory under the system temp dir removed on drop (configs, pid files, captures).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(unique_name(prefix));
        fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(TempDir { path })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A node namespace attached to the lab's switch.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub ns: Netns,
    /// The node's interface inside its namespace.
    pub ifname: String,
    /// The switch-side end of the node's veth (in the switch namespace).
    pub port: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    pub mac: String,
}

impl Node {
    pub fn ip(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(self.v6)
        } else {
            IpAddr::V4(self.v4)
        }
    }
    /// The IPv6 link-local address of the node's interface.
    pub fn link_local(&self) -> Result<Ipv6Addr> {
        self.ns
            .addrs(&self.ifname)?
            .into_iter()
            .find_map(|a| match a {
                IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
                _ => None,
            })
            .ok_or_else(|| anyhow!("no link-local on {}", self.name))
    }
}

/// A LAN: one switch namespace with a bridge, and node namespaces attached through veth pairs. Node `i`
/// (0-based, in order of `add_node`) gets 192.0.2.(10+i)/24 and 2001:db8::(10+i)/64 on `eth0`.
#[derive(Debug)]
pub struct Lab {
    // Nodes are dropped before the switch (field order), each namespace taking its veth end along.
    nodes: Vec<Node>,
    by_name: HashMap<String, usize>,
    switch: Netns,
    tag: String,
}

pub const BRIDGE: &str = "br0";

impl Lab {
    /// A switch namespace with a bridge that floods multicast (snooping off) and forwards at once (no STP).
    pub fn new(tag: &str) -> Result<Lab> {
        let switch = Netns::new(&format!("{tag}-sw"))?;
        switch.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        switch.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        switch.run([
            "ip",
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        switch.run(["ip", "link", "set", BRIDGE, "up"])?;
        Ok(Lab {
            nodes: Vec::new(),
            by_name: HashMap::new(),
            switch,
            tag: tag.to_string(),
        })
    }

    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// Add a node namespace with an `eth0` attached to the bridge; IPv6 DAD is off inside it so addresses
    /// (including the link-local) are usable at once.
    pub fn add_node(&mut self, name: &str) -> Result<&Node> {
        if self.by_name.contains_key(name) {
            bail!("node {name} exists");
        }
        let i = self.nodes.len();
        if i > 200 {
            bail!("too many nodes");
        }
        let ns = Netns::new(&format!("{}-{name}", self.tag))?;
        for k in ["all", "default"] {
            ns.sysctl(&format!("net.ipv6.conf.{k}.accept_dad"), "0")?;
            ns.sysctl(&format!("net.ipv6.conf.{k}.dad_transmits"), "0")?;
        }
        let port = format!("p{i}");
        let ifname = "eth0".to_string();
        self.switch.run([
            "ip", "link", "add", &port, "type", "veth", "peer", "name", &ifname,
        ])?;
        self.switch
            .run(["ip", "link", "set", &ifname, "netns", ns.name()])?;
        self.switch
            .run(["ip", "link", "set", &port, "master", BRIDGE])?;
        self.switch.run(["ip", "link", "set", &port, "up"])?;
        let v4 = Ipv4Addr::new(192, 0, 2, 10 + i as u8);
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + i as u16);
        ns.run(["ip", "addr", "add", &format!("{v4}/24"), "dev", &ifname])?;
        ns.run([
            "ip",
            "addr",
            "add",
            &format!("{v6}/64"),
            "dev",
            &ifname,
            "nodad",
        ])?;
        ns.run(["ip", "link", "set", &ifname, "up"])?;
        let mac = ns.mac(&ifname)?;
        let node = Node {
            name: name.to_string(),
            ns,
            ifname,
            port,
            v4,
            v6,
            mac,
        };
        // Wait (bounded) for the link-local address, which the kernel adds when the link comes up.
        let deadline = Instant::now() + Duration::from_secs(5);
        while node.link_local().is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.by_name.insert(name.to_string(), i);
        self.nodes.push(node);
        Ok(&self.nodes[i])
    }

    pub fn node(&self, name: &str) -> &Node {
        &self.nodes[self.by_name[name]]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Cut a node's cable: the switch-side port goes down, so the node sees carrier loss.
    pub fn link_down(&self, name: &str) -> Result<()> {
        let port = &self.node(name).port;
        self.switch
            .run(["ip", "link", "set", port, "down"])
            .map(drop)
    }

    pub fn link_up(&self, name: &str) -> Result<()> {
        let port = &self.node(name).port;
        self.switch.run(["ip", "link", "set", port, "up"]).map(drop)
    }
}

/// Poll `f` every 20 ms until it returns `Some`, bounded by `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tcpdump capture to a pcap file in a temp dir; [`Capture::stop`] returns the frames.
#[derive(Debug)]
pub struct Capture {
    proc: Proc,
    dir: TempDir,
}

/// One captured frame: seconds since the epoch (microsecond resolution) and the whole Ethernet frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub ts: f64,
    pub data: Vec<u8>,
}

impl Capture {
    pub fn start(ns: &Netns, ifname: &str, filter: &str) -> Result<Capture> {
        let dir = TempDir::new("vipd-cap")?;
        let file = dir.join("cap.pcap");
        // --immediate-mode: without it libpcap hands packets over in blocks (up to a second late), and the last
        // block is lost when tcpdump is stopped, so a capture stopped soon after an event misses the event.
        let mut args: Vec<String> = [
            "-i",
            ifname,
            "-n",
            "-U",
            "--immediate-mode",
            "-Z",
            "root",
            "-w",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(file.display().to_string());
        if !filter.is_empty() {
            args.extend(filter.split_whitespace().map(str::to_string));
        }
        let proc = ns.spawn_args("tcpdump", &args)?;
        if proc
            .wait_line(Duration::from_secs(10), |l| l.contains("listening on"))
            .is_none()
        {
            bail!("tcpdump did not start: {:?}", proc.lines());
        }
        Ok(Capture { proc, dir })
    }

    /// Frames captured so far (the file is written packet by packet).
    pub fn frames(&self) -> Result<Vec<Frame>> {
        parse_pcap(&fs::read(self.dir.join("cap.pcap"))?)
    }

    /// Stop tcpdump (SIGINT, reaped) and return every frame.
    pub fn stop(mut self) -> Result<Vec<Frame>> {
        self.proc.stop(Signal::SIGINT, Duration::from_secs(5));
        self.frames()
    }
}

/// Parse a classic pcap file (either byte order, microsecond or nanosecond timestamps).
pub fn parse_pcap(b: &[u8]) -> Result<Vec<Frame>> {
    if b.len() < 24 {
        return Ok(Vec::new());
    }
    let magic = u32::from_le_bytes(b[0..4].try_into()?);
    let (le, nanos) = match magic {
        0xa1b2c3d4 => (true, false),
        0xa1b23c4d => (true, true),
        0xd4c3b2a1 => (false, false),
        0x4d3cb2a1 => (false, true),
        m => bail!("not a pcap file (magic {m:#x})"),
    };
    let rd = |s: &[u8]| -> u32 {
        let a: [u8; 4] = s.try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut off = 24;
    let mut out = Vec::new();
    while off + 16 <= b.len() {
        let sec = rd(&b[off..off + 4]) as f64;
        let frac = rd(&b[off + 4..off + 8]) as f64;
        let incl = rd(&b[off + 8..off + 12]) as usize;
        off += 16;
        if off + incl > b.len() {
            break; // a record still being written
        }
        let ts = sec + frac / if nanos { 1e9 } else { 1e6 };
        out.push(Frame {
            ts,
            data: b[off..off + incl].to_vec(),
        });
        off += incl;
    }
    Ok(out)
}

/// What a test needs to know about a captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A VRRP packet (any version) with its IP source, TTL / hop limit and VRRP fields.
    Vrrp {
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        /// IPv4 TOS or IPv6 traffic class.
        tos: u8,
        version: u8,
        vrid: u8,
        priority: u8,
        eth_src: [u8; 6],
    },
    /// An ARP packet: operation, sender MAC and IP, target IP.
    Arp {
        op: u16,
        sender_mac: [u8; 6],
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    },
    /// An ICMPv6 neighbour advertisement: target, flags (R, S, O) and the IP destination.
    NeighAdvert {
        target: Ipv6Addr,
        dst: Ipv6Addr,
        solicited: bool,
        override_flag: bool,
        eth_src: [u8; 6],
    },
    Other,
}

/// Decode the few frame kinds tests look at (Ethernet, no VLAN).
pub fn decode_frame(f: &[u8]) -> Decoded {
    if f.len() < 14 {
        return Decoded::Other;
    }
    let eth_src: [u8; 6] = f[6..12].try_into().unwrap();
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    let p = &f[14..];
    match ethertype {
        0x0800 if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if p[9] != 112 || p.len() < ihl + 4 {
                return Decoded::Other;
            }
            let v = &p[ihl..];
            Decoded::Vrrp {
                src: IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])),
                dst: IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])),
                ttl: p[8],
                tos: p[1],
                version: v[0] >> 4,
                vrid: v[1],
                priority: v[2],
                eth_src,
            }
        }
        0x0806 if p.len() >= 28 => Decoded::Arp {
            op: u16::from_be_bytes([p[6], p[7]]),
            sender_mac: p[8..14].try_into().unwrap(),
            sender_ip: Ipv4Addr::new(p[14], p[15], p[16], p[17]),
            target_ip: Ipv4Addr::new(p[24], p[25], p[26], p[27]),
        },
        0x86dd if p.len() >= 40 => {
            let src: [u8; 16] = p[8..24].try_into().unwrap();
            let dst: [u8; 16] = p[24..40].try_into().unwrap();
            let next = p[6];
            let v = &p[40..];
            if next == 112 && v.len() >= 4 {
                Decoded::Vrrp {
                    src: IpAddr::V6(src.into()),
                    dst: IpAddr::V6(dst.into()),
                    ttl: p[7],
                    tos: (p[0] << 4) | (p[1] >> 4),
                    version: v[0] >> 4,
                    vrid: v[1],
                    priority: v[2],
                    eth_src,
                }
            } else if next == 58 && v.len() >= 24 && v[0] == 136 {
                let t: [u8; 16] = v[8..24].try_into().unwrap();
                Decoded::NeighAdvert {
                    target: t.into(),
                    dst: dst.into(),
                    solicited: v[4] & 0x40 != 0,
                    override_flag: v[4] & 0x20 != 0,
                    eth_src,
                }
            } else {
                Decoded::Other
            }
        }
        _ => Decoded::Other,
    }
}

/// Parse "aa:bb:cc:dd:ee:ff".
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

/// Spawns a long-lived thread that enters the namespace `ns_name` and then runs `f` (for clients and servers
/// that live as long as a lab phase; [`Netns::run_in`] is for one-shot work). The namespace file is opened
/// before the thread starts, so a missing namespace is an error here, not in the thread.
pub fn spawn_in_netns<F, R>(
    ns_name: &str,
    thread_name: &str,
    f: F,
) -> Result<std::thread::JoinHandle<Result<R>>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let path = format!("/run/netns/{ns_name}");
    let file = fs::File::open(&path).with_context(|| format!("open {path}"))?;
    std::thread::Builder::new()
        .name(thread_name.to_string())
        .spawn(move || -> Result<R> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("setns {path}"))?;
            Ok(f())
        })
        .context("spawning a thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("x"), unique_name("x"));
    }

    #[test]
    fn pcap_parse_rejects_garbage_and_reads_records() {
        assert!(parse_pcap(&[0u8; 30]).is_err());
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        b.extend_from_slice(&[0u8; 20]);
        for (sec, data) in [(5u32, vec![1u8, 2, 3]), (6, vec![4])] {
            b.extend_from_slice(&sec.to_le_bytes());
            b.extend_from_slice(&500_000u32.to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(&data);
        }
        let f = parse_pcap(&b).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].data, vec![1, 2, 3]);
        assert!((f[1].ts - 6.5).abs() < 1e-9);
    }

    /// Two nodes on the lab switch reach each other over IPv4 and IPv6, a cut port breaks it, and every
    /// namespace is gone after the lab drops.
    #[test]
    fn lab_nodes_talk_and_clean_up() {
        let names;
        {
            let mut lab = Lab::new("labt").unwrap();
            lab.add_node("a").unwrap();
            lab.add_node("b").unwrap();
            let a = lab.node("a");
            let b = lab.node("b");
            assert!(a.ns.succeeds(["ping", "-c1", "-W2", &b.v4.to_string()]));
            assert!(a
                .ns
                .succeeds(["ping", "-6", "-c1", "-W2", &b.v6.to_string()]));
            assert_eq!(
                a.ns.neigh_mac(IpAddr::V4(b.v4)).as_deref(),
                Some(b.mac.as_str())
            );
            assert!(a.ns.has_addr("eth0", IpAddr::V4(a.v4)));
            lab.link_down("b").unwrap();
            assert!(!a.ns.succeeds(["ping", "-c1", "-W1", &b.v4.to_string()]));
            lab.link_up("b").unwrap();
            assert!(wait_for(Duration::from_secs(5), || a
                .ns
                .succeeds(["ping", "-c1", "-W1", &b.v4.to_string()])
                .then_some(()))
            .is_some());
            names = vec![
                lab.switch().name().to_string(),
                a.ns.name().to_string(),
                b.ns.name().to_string(),
            ];
        }
        let list = String::from_utf8(
            Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        for n in names {
            assert!(!list.split_whitespace().any(|w| w == n), "{n} left behind");
        }
    }

    #[test]
    fn a_missing_tool_fails_naming_itself() {
        let ns = Netns::new("tool").unwrap();
        let tool = "no-such-tool-xyz";
        let e = ns.run([tool, "-c1"]).unwrap_err().to_string();
        assert_eq!(e, format!("{tool} not found on PATH"));
        let e = ns.spawn_args(tool, ["x"]).unwrap_err().to_string();
        assert_eq!(e, format!("{tool} not found on PATH"));
        // `succeeds` answers yes or no, so a missing program is a panic with the message, not a "no".
        let panic = std::panic::catch_unwind(|| ns.succeeds([tool, "-c1"])).unwrap_err();
        let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(msg, format!("{tool} not found on PATH"));
    }

    #[test]
    fn capture_sees_pings_and_proc_is_reaped() {
        let mut lab = Lab::new("capt").unwrap();
        lab.add_node("a").unwrap();
        lab.add_node("b").unwrap();
        let a = lab.node("a");
        let b = lab.node("b");
        let cap = b.ns.capture("eth0", "arp").unwrap();
        assert!(a.ns.succeeds(["ping", "-c1", "-W2", &b.v4.to_string()]));
        let frames = wait_for(Duration::from_secs(5), || {
            let f = cap.frames().ok()?;
            (!f.is_empty()).then_some(f)
        })
        .expect("no ARP captured");
        assert!(frames.iter().any(|f| matches!(
            decode_frame(&f.data),
            Decoded::Arp { target_ip, .. } if target_ip == b.v4
        )));
        let pid = {
            let p = a.ns.spawn_args("sleep", ["30"]).unwrap();
            p.pid()
        };
        // Dropped guard: the process is gone (reaped, so not even a zombie).
        assert!(kill(Pid::from_raw(pid), None).is_err());
        cap.stop().unwrap();
    }
}
