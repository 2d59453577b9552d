//! The daemon as an operator runs it: the real `vipd run` in lab namespaces, with fake apiservers as backends
//! (in a backend namespace) and clients in a client namespace. Covers issue 7's tests: the admin endpoints
//! and status document, SIGHUP reloads under load, a refused reload, the SIGTERM sequence, tracking, the
//! sd_notify protocol and least privilege.
//!
//! Needs root (namespaces), tcpdump, setpriv, and the `fake-apiserver` binary (`cargo build -p vipd-lab`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use vipd_lab::apiserver::fake_apiserver_bin;
use vipd_lab::netns::{decode_frame, wait_for, Decoded, Lab, Netns, Proc, TempDir};
use vipd_lab::vipd::{metric_value, VipdNode, VipdSpec};

const VIP: &str = "192.0.2.100";
const LONG: Duration = Duration::from_secs(20);

fn vipd_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vipd"))
}

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

fn vip_port() -> SocketAddr {
    SocketAddr::new(vip(), 443)
}

/// A `fake-apiserver` serving plain HTTP on `addr` inside `ns`, named `name` (its /version says so).
fn backend(ns: &Netns, addr: SocketAddr, name: &str) -> Proc {
    let bin = fake_apiserver_bin();
    let p = ns
        .spawn_args(
            bin.to_str().unwrap(),
            ["--listen", &addr.to_string(), "--name", name],
        )
        .unwrap();
    assert!(
        p.wait_line(LONG, |l| l.trim() == "serving").is_some(),
        "fake apiserver {name} did not start: {:?}",
        p.lines()
    );
    p
}

/// Lab with the given vipd node names, then a `be` (backend) and a `client` node.
fn lab(tag: &str, vipd_nodes: &[&str]) -> Lab {
    let mut lab = Lab::new(tag).unwrap();
    for n in vipd_nodes.iter().chain(&["be", "client"]) {
        lab.add_node(n).unwrap();
    }
    lab
}

fn be_addr(lab: &Lab, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(lab.node("be").v4), port)
}

/// A [`lab`] with a scratch directory of the same tag and one backend, `be-a` at `a` (port 6443).
struct OneBackend {
    lab: Lab,
    dir: TempDir,
    a: SocketAddr,
    _ba: Proc,
}

fn one_backend(tag: &str, vipd_nodes: &[&str]) -> OneBackend {
    let lab = lab(tag, vipd_nodes);
    let dir = TempDir::new(tag).unwrap();
    let a = be_addr(&lab, 6443);
    let _ba = backend(&lab.node("be").ns, a, "be-a");
    OneBackend { lab, dir, a, _ba }
}

/// Waits for the VIP to be on `name`'s eth0.
#[track_caller]
fn wait_vip_on(lab: &Lab, name: &str) {
    assert!(
        wait_for(LONG, || lab
            .node(name)
            .ns
            .has_addr("eth0", vip())
            .then_some(()))
        .is_some(),
        "the VIP is not on {name}"
    );
}

fn wait_first_backend_healthy(node: &VipdNode) {
    wait_for(LONG, || {
        (node.status().ok()?["backends"][0]["healthy"] == true).then_some(())
    })
    .expect("healthy");
}

fn wait_master(node: &VipdNode) {
    assert!(
        node.wait_state("master", LONG).is_some(),
        "never became master; status {:?}\nlog:\n{}",
        node.status().ok(),
        node.proc.lines().join("\n")
    );
}

/// A long-lived HTTP/1.1 keep-alive connection through the proxy, asking `/version` every 50 ms from a thread
/// in the client namespace. Any failure before `stop` is recorded: that is a dropped connection.
struct Client {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    backend: Arc<Mutex<Option<String>>>,
    handle: JoinHandle<Result<u64, String>>,
}

impl Client {
    fn start(ns: &Netns, target: SocketAddr) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let backend = Arc::new(Mutex::new(None));
        let path = format!("/run/netns/{}", ns.name());
        let (s, d, b) = (stop.clone(), done.clone(), backend.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| e.to_string())?;
            let stream = TcpStream::connect_timeout(&target, Duration::from_secs(5));
            let _ = tx.send(());
            let mut stream = stream.map_err(|e| format!("connect: {e}"))?;
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while !s.load(Ordering::SeqCst) {
                let name =
                    request(&mut stream, &mut reader).map_err(|e| format!("request: {e}"))?;
                let mut seen = b.lock().unwrap();
                match &*seen {
                    None => *seen = Some(name),
                    Some(prev) if *prev != name => {
                        return Err(format!("moved from {prev} to {name}"))
                    }
                    _ => {}
                }
                drop(seen);
                d.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(d.load(Ordering::SeqCst))
        });
        let _ = rx.recv_timeout(Duration::from_secs(10));
        Client {
            stop,
            done,
            backend,
            handle,
        }
    }

    fn requests(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    fn backend(&self) -> Option<String> {
        self.backend.lock().unwrap().clone()
    }

    /// Waits until this client has made `n` more requests than now.
    fn progress(&self, n: u64) -> bool {
        let start = self.requests();
        wait_for(LONG, || (self.requests() >= start + n).then_some(())).is_some()
            || self.handle.is_finished()
    }

    fn finish(self) -> Result<u64, String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// One keep-alive `GET /version`; returns the backend's name.
fn request(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    stream.write_all(b"GET /version HTTP/1.1\r\nHost: vip\r\n\r\n")?;
    let mut status = String::new();
    if reader.read_line(&mut status)? == 0 {
        return Err(std::io::Error::other("connection closed"));
    }
    if !status.contains(" 200 ") {
        return Err(std::io::Error::other(format!("status line {status:?}")));
    }
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Err(std::io::Error::other("closed in headers"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().map_err(std::io::Error::other)?;
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let v: Value = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
    Ok(v["name"].as_str().unwrap_or_default().to_string())
}

/// `vipd <args>` inside `ns`: (exit code, stdout, stderr).
fn vipd_in(ns: &Netns, args: &[&str]) -> (Option<i32>, String, String) {
    let out = ns.command(vipd_bin()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn metrics(node: &VipdNode) -> String {
    let (code, body) = node.admin_get("/metrics").unwrap();
    assert_eq!(code, 200);
    body
}

fn metric(text: &str, prefix: &str) -> f64 {
    metric_value(text, prefix).unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
}

/// Waits until `prefix` reads `want` on the node's `/metrics` (a read right after a log line races the daemon).
fn assert_metric_becomes(node: &VipdNode, prefix: &str, want: f64) {
    if let Err(last) = node.wait_metric(prefix, want, LONG) {
        panic!("{prefix} is {last:?}, not {want}, after {LONG:?}");
    }
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(k: &[&'a str]) -> BTreeSet<&'a str> {
    k.iter().copied().collect()
}

/// The capability masks of every thread of `pid`.
fn thread_caps(pid: i32) -> Vec<(String, u64, u64, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap();
        let f = |name| vipd::caps::parse_status_mask(&status, name).unwrap();
        out.push((
            t.file_name().to_string_lossy().into_owned(),
            f("CapEff"),
            f("CapPrm"),
            f("CapBnd"),
        ));
    }
    out
}

const NET_BIND_SERVICE: u64 = 1 << 10;
const NET_ADMIN: u64 = 1 << 12;
const NET_RAW: u64 = 1 << 13;

#[test]
fn admin_endpoints_metrics_status_and_capabilities() {
    let lab = lab("vd-adm", &["lb"]);
    let dir = TempDir::new("vd-adm").unwrap();
    let be = &lab.node("be").ns;
    let (a, b) = (be_addr(&lab, 6443), be_addr(&lab, 6444));
    let _ba = backend(be, a, "be-a");
    let mut bb = backend(be, b, "be-b");
    let lb = &lab.node("lb").ns;
    let node = VipdNode::start(
        vipd_bin(),
        lb,
        &VipdSpec::new(vip(), vec![a, b], 150),
        dir.path(),
    )
    .unwrap();

    // /readyz: never 200 before the daemon is ready; 503 (or no answer yet) until then.
    let mut answers = Vec::new();
    let ready = wait_for(LONG, || match node.admin_get("/readyz") {
        Ok((200, body)) => Some(body),
        Ok((code, body)) => {
            answers.push((code, body));
            None
        }
        Err(_) => None,
    })
    .unwrap_or_else(|| panic!("/readyz never 200: {answers:?}\n{:?}", node.proc.lines()));
    assert_eq!(ready, "ready\n");
    assert!(answers.iter().all(|(c, _)| *c == 503), "{answers:?}");
    assert_eq!(node.admin_get("/healthz").unwrap(), (200, "ok\n".into()));
    assert_eq!(node.admin_get("/nope").unwrap().0, 404);
    wait_master(&node);
    assert!(lb.has_addr("eth0", vip()));

    // Least privilege: every thread keeps NET_ADMIN and NET_RAW (and at most NET_BIND_SERVICE), nothing else.
    for (tid, eff, prm, bnd) in thread_caps(node.pid()) {
        for (set, mask) in [("CapEff", eff), ("CapPrm", prm), ("CapBnd", bnd)] {
            assert_eq!(
                mask & !(NET_ADMIN | NET_RAW | NET_BIND_SERVICE),
                0,
                "thread {tid} {set} {mask:#x}"
            );
            assert_eq!(
                mask & (NET_ADMIN | NET_RAW),
                NET_ADMIN | NET_RAW,
                "{tid} {set}"
            );
        }
    }

    // /status: every key of the issue's document, with the values this node must have.
    let wait_healthy = |n: usize| {
        wait_for(LONG, || {
            let s = node.status().ok()?;
            let healthy = s["backends"]
                .as_array()?
                .iter()
                .filter(|b| b["healthy"] == true)
                .count();
            (healthy == n).then_some(s)
        })
    };
    let s = wait_healthy(2).expect("both backends healthy");
    assert_eq!(
        keys(&s),
        set(&["node", "vrrp", "vip", "proxy", "backends", "warnings"])
    );
    assert_eq!(s["warnings"], serde_json::json!([]), "{s}");
    assert_eq!(
        keys(&s["vrrp"]),
        set(&[
            "state",
            "vrid",
            "priority",
            "effectivePriority",
            "masterAddress",
            "advertInterval",
            "transitions",
            "version"
        ])
    );
    assert_eq!(s["vrrp"]["version"], "3");
    assert_eq!(keys(&s["vip"]), set(&["address", "held"]));
    assert_eq!(
        keys(&s["proxy"]),
        set(&["listen", "activeConnections", "totalConnections"])
    );
    assert!(s["node"].as_str().is_some_and(|n| !n.is_empty()), "{s}");
    assert_eq!(s["vrrp"]["state"], "master");
    assert_eq!(s["vrrp"]["vrid"], 51);
    assert_eq!(s["vrrp"]["priority"], 150);
    assert_eq!(s["vrrp"]["effectivePriority"], 150);
    assert_eq!(s["vrrp"]["advertInterval"], "100ms");
    assert!(s["vrrp"]["transitions"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["vip"]["address"], VIP);
    assert_eq!(s["vip"]["held"], true);
    assert_eq!(s["proxy"]["listen"], vip_port().to_string());
    let backends = s["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    for (doc, addr) in backends.iter().zip([a, b]) {
        assert_eq!(
            keys(doc),
            set(&["address", "healthy", "since", "reason", "activeConnections"])
        );
        assert_eq!(doc["address"], addr.to_string());
        let since = doc["since"].as_str().unwrap();
        assert!(since.len() == 20 && since.ends_with('Z'), "{since}");
        assert!(!doc["reason"].as_str().unwrap().is_empty());
    }

    // /metrics: OpenMetrics, the issue's families, and they move.
    let (code, m0) = node.admin_get("/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(m0.trim_end().ends_with("# EOF"), "not OpenMetrics:\n{m0}");
    for (family, kind) in [
        ("vipd_vrrp_state", "gauge"),
        ("vipd_vrrp_effective_priority", "gauge"),
        ("vipd_vrrp_transitions", "counter"),
        ("vipd_vrrp_adverts_sent", "counter"),
        ("vipd_vrrp_adverts_received", "counter"),
        ("vipd_vrrp_packets_dropped", "counter"),
        ("vipd_vip_held", "gauge"),
        ("vipd_backend_healthy", "gauge"),
        ("vipd_proxy_active_connections", "gauge"),
        ("vipd_proxy_accepted_connections", "counter"),
        ("vipd_backend_bytes", "counter"),
        ("vipd_backend_connect_failures", "counter"),
        ("vipd_config_reload_failures", "counter"),
    ] {
        assert!(
            m0.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} ({kind}) missing:\n{m0}"
        );
    }
    assert_eq!(
        metric(&m0, "vipd_vrrp_state{vrid=\"51\",state=\"master\"}"),
        1.0
    );
    assert_eq!(
        metric(&m0, "vipd_vrrp_state{vrid=\"51\",state=\"backup\"}"),
        0.0
    );
    assert_eq!(metric(&m0, "vipd_vip_held{vip=\"192.0.2.100\"}"), 1.0);
    assert_eq!(
        metric(&m0, &format!("vipd_backend_healthy{{backend=\"{a}\"}}")),
        1.0
    );
    assert_eq!(metric(&m0, "vipd_proxy_active_connections"), 0.0);
    let sent0 = metric(&m0, "vipd_vrrp_adverts_sent_total");
    std::thread::sleep(Duration::from_millis(600));

    let clients: Vec<Client> = (0..2)
        .map(|_| Client::start(&lab.node("client").ns, vip_port()))
        .collect();
    for c in &clients {
        assert!(c.progress(3), "client made no progress");
    }
    let bytes = |m: &str, dir: &str| -> f64 {
        [a, b]
            .iter()
            .map(|x| {
                metric_value(
                    m,
                    &format!("vipd_backend_bytes_total{{backend=\"{x}\",direction=\"{dir}\"}}"),
                )
                .unwrap_or(0.0)
            })
            .sum()
    };
    // The counters move as traffic flows: poll until they show it rather than read once.
    let m1 = wait_for(LONG, || {
        let m = metrics(&node);
        (metric(&m, "vipd_vrrp_adverts_sent_total") >= sent0 + 3.0
            && metric(&m, "vipd_proxy_active_connections") == 2.0
            && metric(&m, "vipd_proxy_accepted_connections_total") >= 2.0
            && bytes(&m, "to_backend") > 0.0
            && bytes(&m, "to_client") > 0.0)
            .then_some(m)
    })
    .unwrap_or_else(|| {
        panic!(
            "adverts, connections or bytes do not move (sent0 {sent0}):\n{}",
            metrics(&node)
        )
    });
    for c in &clients {
        assert!(c.progress(3));
    }
    assert!(
        wait_for(LONG, || (bytes(&metrics(&node), "to_client")
            > bytes(&m1, "to_client"))
        .then_some(()))
        .is_some(),
        "to_client bytes stay at {}",
        bytes(&m1, "to_client")
    );
    let s = node.status().unwrap();
    assert_eq!(s["proxy"]["activeConnections"], 2);
    let per_backend: u64 = s["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["activeConnections"].as_u64().unwrap())
        .sum();
    assert_eq!(per_backend, 2, "{s}");

    // `vipd status` and `--json` inside the namespace, against the same daemon.
    let (code, out, err) = vipd_in(lb, &["status", "--admin", "http://127.0.0.1:9440"]);
    assert_eq!(code, Some(0), "{err}");
    for want in [
        "MASTER",
        "vrid 51",
        "priority 150",
        VIP,
        "held here",
        "healthy",
    ] {
        assert!(out.contains(want), "{want:?} missing from\n{out}");
    }
    for addr in [a, b] {
        assert!(out.contains(&addr.to_string()), "{out}");
    }
    let (code, out, err) = vipd_in(
        lb,
        &["status", "--json", "--admin", "http://127.0.0.1:9440"],
    );
    assert_eq!(code, Some(0), "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys(&doc), keys(&s));
    assert_eq!(doc["vrrp"]["state"], "master");
    assert_eq!(doc["backends"].as_array().unwrap().len(), 2);
    // No daemon at that address: a clear message and exit 3.
    let (code, _, err) = vipd_in(lb, &["status", "--admin", "http://127.0.0.1:9441"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("no vipd answers"), "{err}");

    // A backend goes away: its health gauge and the status document follow, with a reason.
    for c in clients {
        let r = c.finish();
        assert!(r.is_ok(), "{r:?}");
    }
    bb.kill9();
    let s = wait_healthy(1).expect("be-b seen unhealthy");
    let down = &s["backends"][1];
    assert_eq!(down["healthy"], false);
    assert_ne!(down["reason"], "ok");
    assert_eq!(
        metric(
            &metrics(&node),
            &format!("vipd_backend_healthy{{backend=\"{b}\"}}")
        ),
        0.0
    );
    assert!(
        node.proc
            .wait_line(LONG, |l| l.contains("backend is down")
                && l.contains(&format!("backend={b}"))
                && l.contains("reason="))
            .is_some(),
        "no log line for the health change: {:?}",
        node.proc.lines()
    );
}

#[test]
fn reload_under_load_drops_no_established_connection() {
    let lab = lab("vd-rl", &["lb"]);
    let dir = TempDir::new("vd-rl").unwrap();
    let be = &lab.node("be").ns;
    let addrs: Vec<SocketAddr> = (0..3).map(|i| be_addr(&lab, 6443 + i)).collect();
    let _bes: Vec<Proc> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| backend(be, *a, &format!("be{i}")))
        .collect();
    let lb = &lab.node("lb").ns;
    let mut spec = VipdSpec::new(vip(), vec![addrs[0], addrs[1]], 150);
    let node = VipdNode::start(vipd_bin(), lb, &spec, dir.path()).unwrap();
    wait_master(&node);
    let healthy = |want: &[SocketAddr]| {
        wait_for(LONG, || {
            let s = node.status().ok()?;
            let list: Vec<String> = s["backends"]
                .as_array()?
                .iter()
                .filter(|b| b["healthy"] == true)
                .map(|b| b["address"].as_str().unwrap().to_string())
                .collect();
            let want: Vec<String> = want.iter().map(ToString::to_string).collect();
            (list == want).then_some(())
        })
        .is_some()
    };
    assert!(healthy(&[addrs[0], addrs[1]]));

    let client_ns = &lab.node("client").ns;
    let mut clients: Vec<Client> = (0..6)
        .map(|_| Client::start(client_ns, vip_port()))
        .collect();
    for c in &clients {
        assert!(c.progress(2));
    }
    let on = |name: &str, cs: &[Client]| {
        cs.iter()
            .filter(|c| c.backend().as_deref() == Some(name))
            .count()
    };
    assert!(
        on("be0", &clients) > 0 && on("be1", &clients) > 0,
        "least-conn spreads"
    );

    // Four reloads: add be2, remove be0, swap be1 for be0, back to all three. Clients run through all.
    let steps: [&[usize]; 4] = [&[0, 1, 2], &[1, 2], &[0, 2], &[0, 1, 2]];
    for (n, step) in steps.iter().enumerate() {
        spec.backends = step.iter().map(|i| addrs[*i]).collect();
        node.write_config(&spec).unwrap();
        let cursor = node.proc.line_count();
        node.signal(Signal::SIGHUP).unwrap();
        assert!(
            node.proc
                .wait_line_from(cursor, LONG, |l| l
                    .contains("reload: new configuration applied"))
                .is_some(),
            "reload {n} not applied: {:?}",
            node.proc.lines()
        );
        assert!(
            healthy(&spec.backends),
            "reload {n}: backends not {:?}",
            spec.backends
        );
        // New connections go to the current backends only.
        let fresh = Client::start(client_ns, vip_port());
        assert!(fresh.progress(1));
        let name = fresh.backend().unwrap();
        let idx: usize = name.trim_start_matches("be").parse().unwrap();
        assert!(
            step.contains(&idx),
            "reload {n}: new connection went to {name}"
        );
        clients.push(fresh);
        // Every established connection, including those to a removed backend, keeps working.
        for (i, c) in clients.iter().enumerate() {
            assert!(
                c.progress(2) && !c.handle.is_finished(),
                "reload {n}: client {i} stalled or failed"
            );
        }
    }
    assert_metric_becomes(&node, "vipd_config_reloads_total", 4.0);
    let m = metrics(&node);
    assert_eq!(metric(&m, "vipd_config_reload_failures_total"), 0.0);
    assert_eq!(
        metric(&m, "vipd_proxy_active_connections"),
        clients.len() as f64
    );

    // With shutdownSessionsOnBackendDown, removing a backend does close its sessions, and only those.
    spec = spec.with_extra("proxy", "shutdownSessionsOnBackendDown: true");
    spec.backends = vec![addrs[1], addrs[2]];
    node.write_config(&spec).unwrap();
    node.signal(Signal::SIGHUP).unwrap();
    let (gone, kept): (Vec<Client>, Vec<Client>) = clients
        .into_iter()
        .partition(|c| c.backend().as_deref() == Some("be0"));
    assert!(!gone.is_empty(), "no client was on be0");
    for c in gone {
        assert!(
            wait_for(LONG, || c.handle.is_finished().then_some(())).is_some(),
            "a session to the removed backend stayed open"
        );
        assert!(c.finish().is_err());
    }
    for c in &kept {
        assert!(c.progress(2) && !c.handle.is_finished());
    }
    for (i, c) in kept.into_iter().enumerate() {
        let r = c.finish();
        assert!(r.is_ok(), "client {i} dropped: {r:?}");
    }
}

#[test]
fn broken_reload_keeps_the_old_config() {
    let OneBackend { lab, dir, a, _ba } = one_backend("vd-br", &["lb"]);
    let lb = &lab.node("lb").ns;
    let spec = VipdSpec::new(vip(), vec![a], 150);
    let node = VipdNode::start(vipd_bin(), lb, &spec, dir.path()).unwrap();
    wait_master(&node);
    wait_first_backend_healthy(&node);
    let client = Client::start(&lab.node("client").ns, vip_port());
    assert!(client.progress(2));
    let mut before = node.status().unwrap();

    let good_yaml = spec.to_yaml();
    let broken = [
        // Not YAML.
        "interface: eth0\nbackends: [192.0.2.20:6443\n".to_string(),
        // An invalid value (and a second one), the rest intact.
        good_yaml
            .replace("  priority: 150", "  priority: 300")
            .replace("  vrid: 51", "  vrid: 0"),
    ];
    for (n, text) in broken.iter().enumerate() {
        std::fs::write(&node.config_path, text).unwrap();
        let out = std::process::Command::new(vipd_bin())
            .args(["validate", "--config"])
            .arg(&node.config_path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let expected: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(str::to_string)
            .collect();
        assert!(!expected.is_empty());
        let cursor = node.proc.line_count();
        node.signal(Signal::SIGHUP).unwrap();
        assert!(
            node.proc
                .wait_line_from(cursor, LONG, |l| l.contains("reload refused"))
                .is_some(),
            "{:?}",
            node.proc.lines()
        );
        let logged: Vec<String> = node.proc.lines()[cursor..]
            .iter()
            .filter_map(|l| l.split_once("reload: ").map(|(_, m)| m.to_string()))
            .collect();
        assert_eq!(
            logged, expected,
            "broken config {n}: log differs from `vipd validate`"
        );
        assert_metric_becomes(&node, "vipd_config_reload_failures_total", (n + 1) as f64);
        assert_eq!(metric(&metrics(&node), "vipd_config_reloads_total"), 0.0);
        // The old config keeps running: same document (bar counters that move by themselves).
        let now = node.status().unwrap();
        for key in ["vrrp", "vip", "backends"] {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(b) = v.as_array_mut() {
                    for x in b {
                        x["activeConnections"] = Value::Null;
                    }
                }
                v
            };
            assert_eq!(strip(&now[key]), strip(&before[key]), "{key} changed");
        }
        before = now;
        assert!(client.progress(2), "the proxy stopped serving");
    }
    // The same file, fixed, is applied.
    node.write_config(&spec.clone().with_extra("proxy", "drainTimeout: 7s"))
        .unwrap();
    let cursor = node.proc.line_count();
    node.signal(Signal::SIGHUP).unwrap();
    assert!(node
        .proc
        .wait_line_from(cursor, LONG, |l| l
            .contains("reload: new configuration applied"))
        .is_some());
    assert_metric_becomes(&node, "vipd_config_reloads_total", 1.0);
    assert!(client.finish().is_ok());
}

#[test]
fn sigterm_hands_over_withdraws_the_vip_and_drains() {
    let OneBackend { lab, dir, a, _ba } = one_backend("vd-term", &["lb"]);
    let lbn = lab.node("lb");
    // Bound to every address: a connection to the node's own address survives the VIP leaving, so the
    // drain is what ends it (connections through the VIP move with it).
    let spec = VipdSpec::new(vip(), vec![a], 150)
        .with_extra("proxy", "bind: 0.0.0.0")
        .with_extra("proxy", "drainTimeout: 4s");
    let mut node = VipdNode::start(vipd_bin(), &lbn.ns, &spec, dir.path()).unwrap();
    wait_master(&node);
    wait_first_backend_healthy(&node);
    let node_addr = SocketAddr::new(IpAddr::V4(lbn.v4), 443);
    let client_ns = &lab.node("client").ns;
    let client = Client::start(client_ns, node_addr);
    assert!(client.progress(2));
    let cap = lbn.ns.capture("eth0", "ip proto 112").unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    node.signal(Signal::SIGTERM).unwrap();
    // The VIP leaves the interface while the process still drains.
    assert!(
        wait_for(Duration::from_secs(3), || (!lbn.ns.has_addr("eth0", vip()))
            .then_some(()))
        .is_some(),
        "VIP still on eth0"
    );
    // New connections are refused at once; the open one keeps working during the drain.
    // New connections are refused (the listener is closed) while the open one still drains.
    let refused = wait_for(Duration::from_secs(3), || {
        let r = client_ns
            .run_in(move || {
                TcpStream::connect_timeout(&node_addr, Duration::from_secs(2)).map(drop)
            })
            .unwrap();
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused).then_some(())
    });
    assert!(
        refused.is_some(),
        "new connections still accepted after SIGTERM"
    );
    assert!(
        node.proc.wait_exit(Duration::ZERO).is_none(),
        "exited before the drain"
    );
    assert!(
        client.progress(5),
        "the open connection stopped during the drain"
    );
    let status = node
        .proc
        .wait_exit(Duration::from_secs(15))
        .expect("vipd did not exit");
    let took = t0.elapsed();
    assert!(status.success(), "exit {status:?}: {:?}", node.proc.lines());
    assert!(
        took >= Duration::from_millis(3500),
        "exited after {took:?}: the open connection did not get its drainTimeout"
    );
    // The drain's end closed the client's connection: its next request fails on its own.
    assert!(
        wait_for(Duration::from_secs(10), || client
            .handle
            .is_finished()
            .then_some(()))
        .is_some(),
        "the client still runs after vipd exited"
    );
    let r = client.finish();
    assert!(r.is_err(), "connection still open after exit: {r:?}");
    // On the wire: priority 0 from this node, after the master's ordinary adverts.
    let frames = cap.stop().unwrap();
    let prios: Vec<u8> = frames
        .iter()
        .filter_map(|f| match decode_frame(&f.data) {
            Decoded::Vrrp {
                src,
                vrid: 51,
                priority,
                ..
            } if src == IpAddr::V4(lbn.v4) => Some(priority),
            _ => None,
        })
        .collect();
    assert!(prios.contains(&150), "{prios:?}");
    assert_eq!(
        prios.last(),
        Some(&0),
        "no priority 0 advertisement: {prios:?}"
    );
    let lines = node.proc.lines().join("\n");
    assert!(lines.contains("SIGTERM"), "{lines}");
    node.proc.kill9();
}

fn tracking(track_weight: &str, degraded_state: &str) {
    let lab = lab("vd-trk", &["n1", "n2"]);
    let dir = TempDir::new("vd-trk").unwrap();
    let be = &lab.node("be").ns;
    // Each node has its own backend, so one node's backends can fail while the other's are fine.
    let (a1, a2) = (be_addr(&lab, 6443), be_addr(&lab, 6444));
    let mut b1 = backend(be, a1, "be1");
    let _b2 = backend(be, a2, "be2");
    let mut s1 = VipdSpec::new(vip(), vec![a1], 150);
    s1.track_weight = track_weight.to_string();
    let mut s2 = VipdSpec::new(vip(), vec![a2], 100);
    s2.track_weight = track_weight.to_string();
    let n1 = VipdNode::start(vipd_bin(), &lab.node("n1").ns, &s1, dir.path()).unwrap();
    let n2 = VipdNode::start(vipd_bin(), &lab.node("n2").ns, &s2, dir.path()).unwrap();
    wait_master(&n1);
    assert!(n2.wait_state("backup", LONG).is_some());

    b1.kill9();
    assert!(
        n2.wait_state("master", LONG).is_some(),
        "VIP did not move to the node with healthy backends: n1 {:?}",
        n1.status().ok()
    );
    assert!(
        n1.wait_state(degraded_state, LONG).is_some(),
        "{:?}",
        n1.status().ok()
    );
    wait_vip_on(&lab, "n2");
    assert!(!lab.node("n1").ns.has_addr("eth0", vip()));
    let st = n1.status().unwrap();
    if track_weight != "fault" {
        assert_eq!(st["vrrp"]["effectivePriority"], 90, "{st}");
    }
    assert!(n1
        .proc
        .wait_line(LONG, |l| l.contains("no healthy backend"))
        .is_some());

    // Recovery: the backend comes back on the same address; n1 preempts again.
    let _b1 = backend(be, a1, "be1");
    wait_master(&n1);
    assert!(n2.wait_state("backup", LONG).is_some());
    assert_eq!(n1.status().unwrap()["vrrp"]["effectivePriority"], 150);
    wait_vip_on(&lab, "n1");
}

#[test]
fn tracking_weight_moves_the_vip_and_back() {
    tracking("-60", "backup");
}

#[test]
fn tracking_fault_moves_the_vip_and_back() {
    tracking("fault", "fault");
}

#[test]
fn sd_notify_ready_reloading_stopping_and_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let OneBackend { lab, dir, a, _ba } = one_backend("vd-sd", &["lb"]);
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let msgs: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (m, s) = (msgs.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    m.lock().unwrap().push((Instant::now(), text));
                }
            }
        })
    };
    let has = |pred: &dyn Fn(&str) -> bool, from: usize| -> Option<usize> {
        wait_for(LONG, || {
            let m = msgs.lock().unwrap();
            m.iter()
                .skip(from)
                .position(|(_, t)| pred(t))
                .map(|i| i + from)
        })
    };
    let spec = VipdSpec::new(vip(), vec![a], 150);
    let mut node = VipdNode::start_with_env(
        vipd_bin(),
        &lab.node("lb").ns,
        &spec,
        dir.path(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    )
    .unwrap();
    let ready = has(&|t| t.lines().any(|l| l == "READY=1"), 0)
        .unwrap_or_else(|| panic!("no READY=1: {:?}", node.proc.lines()));
    // READY comes once the admin endpoint answers.
    assert_eq!(node.admin_get("/healthz").unwrap().0, 200);
    assert!(msgs.lock().unwrap()[ready].1.contains("STATUS="));
    // Watchdog pings every WATCHDOG_USEC / 2.
    let t = Instant::now();
    let pings = wait_for(LONG, || {
        let m = msgs.lock().unwrap();
        let n = m
            .iter()
            .filter(|(at, x)| *at >= t && x == "WATCHDOG=1\n")
            .count();
        (n >= 4).then_some(t.elapsed())
    })
    .expect("no watchdog pings");
    assert!(pings < Duration::from_secs(5), "4 pings took {pings:?}");

    let from = msgs.lock().unwrap().len();
    node.signal(Signal::SIGHUP).unwrap();
    let reloading =
        has(&|t| t.starts_with("RELOADING=1\nMONOTONIC_USEC="), from).expect("RELOADING=1");
    has(&|t| t.starts_with("READY=1"), reloading + 1).expect("READY=1 after the reload");

    let from = msgs.lock().unwrap().len();
    let st = node.proc.stop(Signal::SIGTERM, LONG);
    assert!(st.is_some_and(|s| s.success()), "{st:?}");
    has(&|t| t == "STOPPING=1\n", from).expect("STOPPING=1");
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
}

#[test]
fn run_refuses_without_net_raw_or_net_admin() {
    let ns = Netns::new("vd-caps").unwrap();
    let dir = TempDir::new("vd-caps").unwrap();
    let spec = VipdSpec::new(vip(), vec!["192.0.2.20:6443".parse().unwrap()], 150);
    let cfg = dir.join("vipd.yaml");
    std::fs::write(&cfg, spec.to_yaml()).unwrap();
    for (drop, name) in [("-net_raw", "CAP_NET_RAW"), ("-net_admin", "CAP_NET_ADMIN")] {
        // Root, but with the capability out of the bounding set: the exec'd vipd cannot have it.
        let out = ns
            .command("setpriv")
            .arg(format!("--bounding-set={drop}"))
            .arg("--")
            .arg(vipd_bin())
            .args(["run", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("vipd run: vipd lacks {name}")),
            "{err}"
        );
        assert!(err.contains("AmbientCapabilities"), "{err}");
    }
}

#[test]
fn readyz_is_503_until_vrrp_joins() {
    let lab = lab("vd-rdy", &["lb"]);
    let dir = TempDir::new("vd-rdy").unwrap();
    // A backend nobody answers for: the first round of checks takes the whole health timeout, and VRRP
    // waits for it (up to timeout + 500 ms) before joining.
    let mut spec = VipdSpec::new(vip(), vec!["192.0.2.250:6443".parse().unwrap()], 150);
    spec.health_interval = "5s";
    spec.health_timeout = "2s";
    let node = VipdNode::start(vipd_bin(), &lab.node("lb").ns, &spec, dir.path()).unwrap();
    let starting = wait_for(LONG, || match node.admin_get("/readyz") {
        Ok((503, body)) => Some(body),
        _ => None,
    })
    .unwrap_or_else(|| {
        panic!(
            "no 503 from /readyz while starting: {:?}",
            node.proc.lines()
        )
    });
    assert!(starting.contains("initializing"), "{starting}");
    // Meanwhile the process is alive and says what it is doing.
    assert_eq!(node.admin_get("/healthz").unwrap().0, 200);
    let s = node.status().unwrap();
    assert!(
        s["vrrp"]["state"] == "initialize" || node.admin_get("/readyz").unwrap().0 == 200,
        "{s}"
    );
    let (code, _, _) = vipd_in(
        &lab.node("lb").ns,
        &["status", "--admin", "http://127.0.0.1:9440"],
    );
    assert_eq!(code, Some(0));
    assert!(wait_for(LONG, || (node.admin_get("/readyz").ok()?.0 == 200)
        .then_some(()))
    .is_some());
    assert_ne!(node.state().as_deref(), Some("initialize"));
}

#[test]
fn reload_of_vrrp_settings_restarts_the_instance_with_a_handover() {
    let OneBackend { lab, dir, a, _ba } = one_backend("vd-vr", &["n1", "n2"]);
    let mut s1 = VipdSpec::new(vip(), vec![a], 150);
    let s2 = VipdSpec::new(vip(), vec![a], 100);
    let n1 = VipdNode::start(vipd_bin(), &lab.node("n1").ns, &s1, dir.path()).unwrap();
    let n2 = VipdNode::start(vipd_bin(), &lab.node("n2").ns, &s2, dir.path()).unwrap();
    wait_master(&n1);
    assert!(n2.wait_state("backup", LONG).is_some());
    let cap = lab
        .node("client")
        .ns
        .capture("eth0", "ip proto 112")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // A lower priority is a VRRP change: the instance restarts, handing over with priority 0 first.
    s1.priority = 50;
    n1.write_config(&s1).unwrap();
    let cursor = n1.proc.line_count();
    n1.signal(Signal::SIGHUP).unwrap();
    assert!(n1
        .proc
        .wait_line_from(cursor, LONG, |l| l.contains("restarting the instance"))
        .is_some());
    wait_master(&n2);
    assert!(n1.wait_state("backup", LONG).is_some());
    // /status follows the new instance once the reload is published: wait for it, do not read once.
    let priorities = wait_for(LONG, || {
        let st = n1.status().ok()?;
        let p = (
            st["vrrp"]["priority"].clone(),
            st["vrrp"]["effectivePriority"].clone(),
        );
        (p == (50.into(), 50.into())).then_some(())
    });
    assert!(priorities.is_some(), "priority not 50: {:?}", n1.status());
    assert_metric_becomes(&n1, "vipd_config_reloads_total", 1.0);
    wait_vip_on(&lab, "n2");
    assert!(!lab.node("n1").ns.has_addr("eth0", vip()));
    std::thread::sleep(Duration::from_millis(300));
    let n1_ip = IpAddr::V4(lab.node("n1").v4);
    let frames = cap.stop().unwrap();
    let prios: Vec<u8> = frames
        .iter()
        .filter_map(|f| match decode_frame(&f.data) {
            Decoded::Vrrp { src, priority, .. } if src == n1_ip => Some(priority),
            _ => None,
        })
        .collect();
    let zero = prios.iter().position(|p| *p == 0);
    assert!(zero.is_some(), "no priority 0 handover from n1: {prios:?}");
    assert!(prios[..zero.unwrap()].contains(&150), "{prios:?}");
}

/// Which node holds the VIP on its `eth0`, once exactly one does.
fn vip_holder(lab: &Lab, names: &[&str]) -> Option<String> {
    wait_for(LONG, || {
        let holders: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| lab.node(n).ns.has_addr("eth0", vip()))
            .collect();
        (holders.len() == 1).then(|| holders[0].to_string())
    })
}

/// The default tracking (`trackWeight` left out): nodes with these priorities, each with a backend of its own;
/// the first `lose` nodes (the highest) lose theirs. The VIP must go to the best node that still has one, however
/// far apart the priorities; with every backend gone some node must still hold it; then it comes back.
fn default_tracking(tag: &str, priorities: &[u8], lose: usize) {
    let names: Vec<String> = (1..=priorities.len()).map(|i| format!("n{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let lab = lab(tag, &names);
    let dir = TempDir::new(tag).unwrap();
    let be = &lab.node("be").ns;
    let addrs: Vec<SocketAddr> = (0..names.len())
        .map(|i| be_addr(&lab, 6443 + i as u16))
        .collect();
    let mut backends: Vec<Proc> = (0..names.len())
        .map(|i| backend(be, addrs[i], &format!("be{i}")))
        .collect();
    let nodes: Vec<VipdNode> = (0..names.len())
        .map(|i| {
            let mut s = VipdSpec::new(vip(), vec![addrs[i]], priorities[i]);
            s.track_weight = String::new();
            VipdNode::start(vipd_bin(), &lab.node(names[i]).ns, &s, dir.path()).unwrap()
        })
        .collect();
    wait_master(&nodes[0]);
    assert_eq!(vip_holder(&lab, &names).as_deref(), Some(names[0]));

    for b in &mut backends[..lose] {
        b.kill9();
    }
    wait_master(&nodes[lose]);
    assert_eq!(vip_holder(&lab, &names).as_deref(), Some(names[lose]));
    for n in &nodes[..lose] {
        assert!(
            n.wait_state("backup", LONG).is_some(),
            "{:?}",
            n.status().ok()
        );
        assert_eq!(n.status().unwrap()["vrrp"]["effectivePriority"], 1);
        assert!(n
            .proc
            .wait_line(LONG, |l| l.contains("VRRP priority drops to 1 (lowest)"))
            .is_some());
    }

    // No backend anywhere (bootstrap: no apiserver is up yet): all advertise 1, and the tie still elects one.
    for b in &mut backends[lose..] {
        b.kill9();
    }
    assert!(wait_for(LONG, || nodes
        .iter()
        .all(|n| n
            .status()
            .is_ok_and(|s| s["vrrp"]["effectivePriority"] == 1))
        .then_some(()))
    .is_some());
    let holder = vip_holder(&lab, &names).expect("no node holds the VIP with every backend down");
    let masters = nodes
        .iter()
        .filter(|n| n.state().as_deref() == Some("master"))
        .count();
    assert_eq!(masters, 1, "VIP on {holder}");

    // Every backend back: the highest priority takes the VIP back (preempt).
    let _back: Vec<Proc> = (0..names.len())
        .map(|i| backend(be, addrs[i], &format!("be{i}")))
        .collect();
    wait_master(&nodes[0]);
    assert_eq!(
        nodes[0].status().unwrap()["vrrp"]["effectivePriority"],
        priorities[0]
    );
    assert_eq!(vip_holder(&lab, &names).as_deref(), Some(names[0]));
}

/// Measured before the fix: 150 - 50 = 100 tied with the backup, and a tie keeps the master.
#[test]
fn default_tracking_moves_the_vip_150_100() {
    default_tracking("vd-dt2", &[150, 100], 1);
}

#[test]
fn default_tracking_moves_the_vip_200_150_100() {
    default_tracking("vd-dt3", &[200, 150, 100], 2);
}

/// `vrrp: {vrid: 65, priority: 255}` with no trackWeight starts, takes the VIP from a running master at once,
/// says once that its priority never changes, and keeps the VIP without a healthy backend.
#[test]
fn the_owner_starts_without_track_weight_and_takes_the_vip_at_once() {
    let lab = lab("vd-own", &["n1", "n2"]);
    let dir = TempDir::new("vd-own").unwrap();
    let be = &lab.node("be").ns;
    let a = be_addr(&lab, 6443);
    let mut b = backend(be, a, "be");
    let mut s2 = VipdSpec::new(vip(), vec![a], 100);
    s2.vrid = 65;
    let n2 = VipdNode::start(vipd_bin(), &lab.node("n2").ns, &s2, dir.path()).unwrap();
    wait_master(&n2);
    let mut s1 = VipdSpec::new(vip(), vec![a], 255);
    s1.vrid = 65;
    s1.track_weight = String::new();
    let started = Instant::now();
    let n1 = VipdNode::start(vipd_bin(), &lab.node("n1").ns, &s1, dir.path()).unwrap();
    wait_master(&n1);
    let took = started.elapsed();
    println!("owner: master {} ms after its start", took.as_millis());
    // Start-up waits at most health.timeout + 500 ms for the first checks; an owner skips Master_Down_Interval.
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(n2.wait_state("backup", LONG).is_some());
    assert_eq!(vip_holder(&lab, &["n1", "n2"]).as_deref(), Some("n1"));
    let owner_lines = |n: &VipdNode| {
        n.proc
            .lines()
            .iter()
            .filter(|l| l.contains("priority 255: this node owns the VIP"))
            .count()
    };
    assert_eq!(owner_lines(&n1), 1, "{:?}", n1.proc.lines());

    b.kill9();
    assert!(n1
        .proc
        .wait_line(LONG, |l| l.contains("VRRP priority stays 255"))
        .is_some());
    let st = n1.status().unwrap();
    assert_eq!(
        (&st["vrrp"]["state"], &st["vrrp"]["effectivePriority"]),
        (&Value::from("master"), &Value::from(255)),
        "{st}"
    );
    assert_eq!(owner_lines(&n1), 1);
}

/// Cluster bootstrap: no apiserver is up yet, yet kubeadm needs the VIP to reach the first one. With the default
/// tracking every node joins at priority 1 and the election still gives the VIP to exactly one of them.
#[test]
fn default_tracking_elects_one_node_when_no_backend_is_up() {
    let lab = lab("vd-boot", &["n1", "n2", "n3"]);
    let dir = TempDir::new("vd-boot").unwrap();
    let nothing = be_addr(&lab, 6443);
    let nodes: Vec<VipdNode> = [("n1", 200), ("n2", 150), ("n3", 100)]
        .iter()
        .map(|(n, p)| {
            let mut s = VipdSpec::new(vip(), vec![nothing], *p);
            s.track_weight = String::new();
            VipdNode::start(vipd_bin(), &lab.node(n).ns, &s, dir.path()).unwrap()
        })
        .collect();
    let holder = vip_holder(&lab, &["n1", "n2", "n3"]).expect("nobody holds the VIP at bootstrap");
    let masters: Vec<usize> = (0..3)
        .filter(|i| nodes[*i].state().as_deref() == Some("master"))
        .collect();
    assert_eq!(masters.len(), 1, "VIP on {holder}");
    for n in &nodes {
        assert_eq!(n.status().unwrap()["vrrp"]["effectivePriority"], 1);
    }
}

/// `proxy.threads: 2`: the proxy serves on two threads of its own (each with its own listening socket), new and
/// long-lived connections alike; the thread count is fixed at start, so a reload that changes it is refused and
/// the proxy keeps serving.
#[test]
fn proxy_on_threads_of_its_own_serves_and_its_thread_count_is_fixed() {
    let lab = lab("vd-thr", &["lb"]);
    let dir = TempDir::new("vd-thr").unwrap();
    let a = be_addr(&lab, 6443);
    let _ba = backend(&lab.node("be").ns, a, "be-a");
    let spec = VipdSpec::new(vip(), vec![a], 150).with_extra("proxy", "threads: 2");
    let node = VipdNode::start(vipd_bin(), &lab.node("lb").ns, &spec, dir.path()).unwrap();
    wait_master(&node);
    wait_for(LONG, || {
        (node.status().ok()?["backends"][0]["healthy"] == true).then_some(())
    })
    .expect("healthy");
    let proxy_threads = std::fs::read_dir(format!("/proc/{}/task", node.pid()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "vipd-proxy")
        .count();
    assert_eq!(proxy_threads, 2, "threads named vipd-proxy");
    let client = Client::start(&lab.node("client").ns, vip_port());
    assert!(client.progress(2));
    // Short connections, one request each: every one is answered, whichever listener the kernel picks.
    let ns_path = format!("/run/netns/{}", lab.node("client").ns.name());
    let short = std::thread::spawn(move || {
        let f = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        for i in 0..40 {
            let mut s = TcpStream::connect_timeout(&vip_port(), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let name = request(&mut s, &mut r).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert_eq!(name, "be-a", "connection {i}");
        }
    });
    short.join().expect("a short connection failed");
    // 40 short ones and the keep-alive client's.
    assert_metric_becomes(&node, "vipd_proxy_accepted_connections_total", 41.0);

    let refused = VipdSpec::new(vip(), vec![a], 150).with_extra("proxy", "threads: 3");
    node.write_config(&refused).unwrap();
    let cursor = node.proc.line_count();
    node.signal(Signal::SIGHUP).unwrap();
    let line = node
        .proc
        .wait_line_from(cursor, LONG, |l| l.contains("reload refused"))
        .unwrap_or_else(|| panic!("no refusal: {:?}", node.proc.lines()));
    assert!(
        node.proc.lines()[cursor..]
            .iter()
            .any(|l| l.contains("proxy.threads")),
        "the refusal names proxy.threads: {line:?}"
    );
    assert_metric_becomes(&node, "vipd_config_reload_failures_total", 1.0);
    assert!(client.progress(2), "the proxy stopped serving");
    assert!(client.finish().is_ok());
}
