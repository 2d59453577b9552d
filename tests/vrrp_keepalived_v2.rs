//! Interoperability with the distribution's Keepalived 2.2 in its default protocol (no `vrrp_version` line, so
//! VRRPv2), as most clusters run it: vipd `version: 2` and `version: mixed`, with and without `auth_type PASS`,
//! multicast and unicast. In each case vipd is master and then backup, and the VIP fails over both ways, by
//! SIGTERM (priority 0: the backup takes over after its Skew_Time) and by kill -9 (after Master_Down_Interval);
//! never two holders in steady state. Also: a wrong password is dropped and counted, a version-3 vipd beside a
//! VRRPv2 Keepalived raises its warning (and a version-2 vipd beside a VRRPv3 Keepalived its own, while a
//! mixed master raises none), and a SIGHUP that changes only the version moves nothing.
//!
//! Every case runs in its own lab with a 1 s interval (VRRPv2 counts whole seconds). The takeover times are
//! printed (`--nocapture`) next to the RFC formulas.
mod vrrp_common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use vipd_lab::netns::{wait_for, Node};
use vrrp_common::*;

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
/// Long enough for a Master_Down_Interval of 3.8 s plus start-up on a loaded machine.
const SLACK: Duration = Duration::from_secs(10);
const STEADY: Duration = Duration::from_millis(2500);

/// RFC 3768 Skew_Time and Master_Down_Interval for a 1 s interval.
fn skew(priority: u8) -> Duration {
    Duration::from_secs_f64(f64::from(256 - u32::from(priority)) / 256.0)
}

fn mdi(priority: u8) -> Duration {
    Duration::from_secs(3) + skew(priority)
}

/// How long after `since` only `who` holds the VIP.
fn took_over(nodes: &[&Node], who: &str, since: Instant) -> Duration {
    let got = wait_for(SLACK, || {
        (holders(nodes, VIP) == [who]).then(|| since.elapsed())
    });
    got.unwrap_or_else(|| {
        panic!(
            "{who} did not take over alone within {SLACK:?}: holders {:?}",
            holders(nodes, VIP)
        )
    })
}

/// A planned handover is the priority-0 path: Skew_Time, well before any Master_Down_Interval (>= 2.6 s).
fn assert_skew_takeover(what: &str, took: Duration, priority: u8) {
    eprintln!(
        "{what}: SIGTERM -> takeover {:.3} s (Skew_Time = (256 - {priority}) / 256 = {:.3} s)",
        took.as_secs_f64(),
        skew(priority).as_secs_f64()
    );
    assert!(
        took < skew(priority) + Duration::from_millis(1500),
        "{what}: {took:?} is not the priority-0 path"
    );
}

/// A crash is noticed after Master_Down_Interval since the last advertisement, which came up to one
/// interval before the kill.
fn assert_down_takeover(what: &str, took: Duration, priority: u8) {
    eprintln!(
        "{what}: kill -9 -> takeover {:.3} s (Master_Down_Interval = 3 + (256 - {priority}) / 256 = {:.3} s, \
         counted from the last advertisement, up to 1 s before the kill)",
        took.as_secs_f64(),
        mdi(priority).as_secs_f64()
    );
    assert!(
        took >= mdi(priority) - Duration::from_millis(1100),
        "{what}: {took:?} is earlier than Master_Down_Interval allows"
    );
    assert!(
        took < mdi(priority) + Duration::from_secs(3),
        "{what}: {took:?} is far beyond Master_Down_Interval"
    );
}

/// Keepalived's log lines that say it refused something of ours.
fn complaints(ka: &Keepalived) -> Vec<String> {
    ka.proc
        .lines()
        .into_iter()
        .filter(|l| {
            let l = l.to_lowercase();
            // Keepalived's own note about a long auth_pass is no complaint about us.
            let words = [
                "checksum", "invalid", "ttl", "passwd", "password", "auth", "mismatch",
            ];
            !l.contains("truncating auth_pass") && words.iter().any(|w| l.contains(w))
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Case {
    tag: &'static str,
    vrid: u8,
    version: &'static str,
    unicast: bool,
    pass: Option<&'static str>,
}

/// vipd for `vrid` at `prio` in `version`, advertising every second as Keepalived's VRRPv2 does.
fn one_second(vrid: u8, prio: u8, version: &'static str) -> NodeSpec {
    let mut s = NodeSpec::new(vrid, prio, VIP);
    s.interval_cs = 100;
    s.version = version;
    s
}

/// A VRRPv2 Keepalived on `node` that starts as master, with `auth_pass`.
fn keepalived_master(node: &Node, vrid: u8, prio: u8, auth_pass: &'static str) -> Keepalived {
    let mut ka = KaSpec::v2(vrid, prio, VIP);
    ka.auth_pass = Some(auth_pass);
    ka.master = true;
    keepalived(node, &ka)
}

/// The split brain a version warning is about: vipd (`p`) master, both `nodes` holding the VIP, and the
/// unheard router's advertisements counted in `series` of `/metrics`.
fn assert_split_brain_counted(p: &NodeProc, nodes: [&Node; 2], series: &str) {
    assert!(wait_state(p, "master", SLACK));
    let both = wait_for(SLACK, || (holders(&nodes, VIP).len() == 2).then_some(()));
    assert!(both.is_some(), "{:?}", holders(&nodes, VIP));
    let (_, text) = p.vipd.admin_get("/metrics").unwrap();
    assert!(text.contains(series), "{series} not in {text}");
}

fn specs(case: Case, n0: &Node, n1: &Node) -> (NodeSpec, KaSpec) {
    let mut s = one_second(case.vrid, 200, case.version);
    s.auth_pass = case.pass;
    let mut k = KaSpec::v2(case.vrid, 100, VIP);
    k.auth_pass = case.pass;
    if case.unicast {
        s.peers = vec![n1.ip(false)];
        s.source = Some(n0.ip(false));
        k.peers = vec![n0.ip(false)];
        k.source = Some(n1.ip(false));
    }
    (s, k)
}

/// Clear a VIP a killed node left behind (a crashed Keepalived never removes it).
fn remove_stale_vip(node: &Node) {
    if node.ns.has_addr(&node.ifname, VIP) {
        node.ns
            .run([
                "ip",
                "addr",
                "del",
                &format!("{VIP}/32"),
                "dev",
                &node.ifname,
            ])
            .unwrap();
    }
}

/// vipd (n0) beside Keepalived in VRRPv2 (n1).
fn interop(case: Case) {
    let lab = lab(case.tag, 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let nodes = [n0, n1];
    let (vipd_spec, ka_spec) = specs(case, n0, n1);
    let what = |s: &str| format!("{} {s}", case.tag);

    // 1. vipd 200 master, Keepalived 100 backup.
    let mut ka = keepalived(n1, &ka_spec);
    let mut p = start_node(n0, &vipd_spec);
    assert_reaches(&p, "master", SLACK, "vipd not master");
    assert_sole_holder(&nodes, VIP, "n0", SLACK, STEADY);
    let backup_seen = wait_for(SLACK, || {
        ka.proc
            .lines()
            .iter()
            .any(|l| l.contains("Entering BACKUP"))
            .then_some(())
    });
    assert!(
        backup_seen.is_some(),
        "Keepalived never backup: {:?}",
        ka.proc.lines()
    );

    // 2. vipd leaves with priority 0: Keepalived takes over after its Skew_Time.
    let t = Instant::now();
    p.stop(Signal::SIGTERM, Duration::from_secs(10));
    assert_skew_takeover(&what("vipd master"), took_over(&nodes, "n1", t), 100);
    assert_sole_holder(&nodes, VIP, "n1", SLACK, STEADY);

    // 3. vipd back: it preempts. 4. kill -9: Keepalived takes over after Master_Down_Interval.
    let mut p = start_node(n0, &vipd_spec);
    assert_reaches(&p, "master", SLACK, "vipd did not preempt");
    assert_sole_holder(&nodes, VIP, "n0", SLACK, STEADY);
    let st = stats(&p);
    assert!(
        st["adverts_received"] > 0,
        "no Keepalived advertisement accepted: {st:?}"
    );
    for r in ["version", "checksum", "auth", "interval"] {
        assert_eq!(st[&format!("drop_{r}")], 0, "drops {r}: {st:?}");
    }
    let t = Instant::now();
    p.kill9();
    let took = wait_for(SLACK, || {
        n1.ns.has_addr(&n1.ifname, VIP).then(|| t.elapsed())
    })
    .expect("Keepalived did not take over after kill -9");
    assert_down_takeover(&what("vipd master"), took, 100);

    // 5. vipd at 50 (its start-up clears the stale VIP): backup under Keepalived.
    let mut low = vipd_spec.clone();
    low.priority = 50;
    let p = start_node(n0, &low);
    assert_reaches(&p, "backup", SLACK, "vipd not backup");
    assert_sole_holder(&nodes, VIP, "n1", SLACK, STEADY);
    assert_eq!(state(&p).as_deref(), Some("backup"));
    let st = stats(&p);
    assert!(st["adverts_received"] > 0, "{st:?}");

    // 6. Keepalived leaves with priority 0: vipd takes over after its Skew_Time.
    let t = Instant::now();
    ka.stop();
    assert_skew_takeover(&what("Keepalived master"), took_over(&nodes, "n0", t), 50);
    assert_sole_holder(&nodes, VIP, "n0", SLACK, STEADY);

    // 7. Keepalived back at 100: it preempts vipd. 8. kill -9: vipd takes over after Master_Down_Interval.
    let mut ka = keepalived(n1, &ka_spec);
    assert!(
        wait_state(&p, "backup", SLACK),
        "Keepalived did not preempt: {:?}",
        ka.proc.lines()
    );
    assert_sole_holder(&nodes, VIP, "n1", SLACK, STEADY);
    let found = complaints(&ka);
    assert!(found.is_empty(), "Keepalived complained: {found:?}");
    let t = Instant::now();
    ka.kill9();
    let took = wait_for(SLACK, || {
        (state(&p).as_deref() == Some("master")).then(|| t.elapsed())
    })
    .expect("vipd did not take over after kill -9");
    assert_down_takeover(&what("Keepalived master"), took, 50);
    remove_stale_vip(n1);
    assert_sole_holder(&nodes, VIP, "n0", SLACK, STEADY);
    let st = stats(&p);
    for r in [
        "version",
        "checksum",
        "auth",
        "interval",
        "hop_limit",
        "unknown_peer",
    ] {
        assert_eq!(st[&format!("drop_{r}")], 0, "drops {r}: {st:?}");
    }
}

#[test]
fn v2_multicast_pass() {
    interop(Case {
        tag: "kv2mp",
        vrid: 91,
        version: "2",
        unicast: false,
        pass: Some("s3cret"),
    });
}

#[test]
fn v2_unicast_no_auth() {
    interop(Case {
        tag: "kv2u",
        vrid: 92,
        version: "2",
        unicast: true,
        pass: None,
    });
}

#[test]
fn mixed_multicast_no_auth() {
    interop(Case {
        tag: "kmixm",
        vrid: 93,
        version: "mixed",
        unicast: false,
        pass: None,
    });
}

#[test]
fn mixed_unicast_pass() {
    interop(Case {
        tag: "kmixup",
        vrid: 94,
        version: "mixed",
        unicast: true,
        pass: Some("k8s-ha-pass"),
    });
}

/// Keepalived with one password, vipd with another: every advertisement is dropped under `auth`, none is
/// accepted (so both end up master, as two Keepalived nodes with different passwords would).
#[test]
fn wrong_password_is_dropped_and_counted() {
    let lab = lab("kv2pw", 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let ka = keepalived_master(n1, 95, 150, "right");
    let mut s = one_second(95, 100, "2");
    s.auth_pass = Some("wrong");
    let p = start_node(n0, &s);
    // Keepalived starts as backup and sends only once master, after its own down interval.
    let ka_master = ka.proc.wait_line(SLACK, |l| l.contains("Entering MASTER"));
    assert!(ka_master.is_some(), "{:?}", ka.proc.lines());
    let dropped = wait_for(SLACK, || (stats(&p)["drop_auth"] >= 3).then_some(()));
    assert!(
        dropped.is_some(),
        "no auth drops: {:?}\nKeepalived: {:?}",
        stats(&p),
        ka.proc.lines()
    );
    let st = stats(&p);
    assert_eq!(st["adverts_received"], 0, "{st:?}");
    assert_eq!(st["drop_version"], 0, "{st:?}");
    // And the other way round: Keepalived refuses vipd's password.
    let refused = ka.proc.wait_line(SLACK, |l| l.contains("invalid passwd"));
    assert!(refused.is_some(), "{:?}", ka.proc.lines());
    // Without a password at all, the same.
    drop(p);
    let mut s = s.clone();
    s.auth_pass = None;
    let p = start_node(n0, &s);
    let dropped = wait_for(SLACK, || (stats(&p)["drop_auth"] >= 2).then_some(()));
    assert!(
        dropped.is_some(),
        "no auth drops without a password: {:?}",
        stats(&p)
    );
    assert_eq!(stats(&p)["adverts_received"], 0);
}

/// vipd in version 3 (the default) beside a VRRPv2 Keepalived: it cannot hear it (two masters), and says so
/// in the log, in `vipd_vrrp_v2_peer_adverts_total` and in the `/status` warnings.
#[test]
fn v3_beside_v2_keepalived_warns() {
    let lab = lab("kv3w", 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let _ka = keepalived_master(n1, 96, 101, "42");
    let p = start_node(n0, &one_second(96, 100, "3"));
    let warned = wait_for(SLACK, || {
        let doc = p.vipd.status().ok()?;
        let w = doc["warnings"].as_array()?.first()?.as_str()?.to_string();
        Some(w)
    })
    .expect("no warning in /status");
    let ka_ip = n1.ip(false).to_string();
    assert!(
        warned.contains(&ka_ip) && warned.contains("VRRPv2"),
        "{warned}"
    );
    assert!(warned.contains("priority 101"), "{warned}");
    let st = stats(&p);
    assert!(st["v2_peer_adverts"] > 0, "{st:?}");
    assert!(st["drop_version"] >= st["v2_peer_adverts"], "{st:?}");
    let logged = p.wait_line(SLACK, |l| l.contains("VRRPv2 advertisements for our VRID"));
    let logged = logged.expect("no warning in the log");
    assert!(logged.contains(&ka_ip), "{logged}");
    assert_split_brain_counted(&p, [n0, n1], "vipd_vrrp_v2_peer_adverts_total{vrid=\"96\"}");
}

/// The mirror case, a migration rolled back half-way: vipd back on version 2 beside a Keepalived already on
/// `vrrp_version 3`. Neither hears the other (both hold the VIP); vipd says so in the log, in
/// `vipd_vrrp_v3_peer_adverts_total` and in the `/status` warnings, naming the sender and the fix.
#[test]
fn v2_beside_v3_keepalived_warns() {
    let lab = lab("kv2w3", 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let mut ka = KaSpec::v2(94, 101, VIP);
    ka.vrrp_version = Some(3);
    ka.master = true;
    let _ka = keepalived(n1, &ka);
    let p = start_node(n0, &one_second(94, 100, "2"));
    // Keepalived's start-up, then two of its advertisements (the first might be a mixed router's).
    let warned = wait_for(SLACK * 2, || {
        let doc = p.vipd.status().ok()?;
        let w = doc["warnings"].as_array()?.first()?.as_str()?.to_string();
        Some(w)
    })
    .unwrap_or_else(|| panic!("no warning in /status; counters {:?}", stats(&p)));
    let ka_ip = n1.ip(false).to_string();
    for part in [
        ka_ip.as_str(),
        "VRRPv3-only router",
        "priority 101",
        "version-2 node",
        "vrrp.version: mixed",
    ] {
        assert!(warned.contains(part), "{part}: {warned}");
    }
    let st = stats(&p);
    assert!(st["v3_peer_adverts"] > 0, "{st:?}");
    assert!(st["drop_version"] > st["v3_peer_adverts"], "{st:?}");
    let logged = p.wait_line(SLACK, |l| l.contains("VRRPv3 advertisements for our VRID"));
    let logged = logged.expect("no warning in the log");
    assert!(
        logged.contains(&ka_ip) && logged.contains("vrrp.version: mixed"),
        "{logged}"
    );
    assert_split_brain_counted(&p, [n0, n1], "vipd_vrrp_v3_peer_adverts_total{vrid=\"94\"}");
    // `vipd status` (the CLI, default admin address) shows the same warning.
    let out = n0
        .ns
        .command(env!("CARGO_BIN_EXE_vipd"))
        .arg("status")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    let line = out.lines().find(|l| l.starts_with("warning"));
    assert!(
        line.is_some_and(|l| l.contains("VRRPv3-only router") && l.contains(&ka_ip)),
        "{out}"
    );
}

/// A version-2 vipd hears a mixed master's VRRPv3 copies too (dropped for the version), but that master also
/// speaks VRRPv2, so there is nothing to warn about: one holder, no count, no warning.
#[test]
fn v2_beside_a_mixed_master_raises_nothing() {
    let lab = lab("kv2mix", 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let spec = |prio, version| one_second(93, prio, version);
    let p0 = start_node(n0, &spec(200, "mixed"));
    let p1 = start_node(n1, &spec(100, "2"));
    assert!(wait_state(&p0, "master", SLACK));
    assert!(wait_state(&p1, "backup", SLACK));
    // Several of the master's advertisement pairs heard, in both versions.
    let st = wait_stats(&p1, SLACK * 2, "mixed pairs heard", |s| {
        s["adverts_received"] >= 5 && s["drop_version"] >= 5
    });
    assert_eq!(st["v3_peer_adverts"], 0, "{st:?}");
    for p in [&p0, &p1] {
        let doc = p.vipd.status().unwrap();
        assert_eq!(doc["warnings"], serde_json::json!([]), "{doc}");
    }
    assert_sole_holder(&[n0, n1], VIP, "n0", SLACK, STEADY);
}

/// A cluster that moves mixed -> 3 one node at a time: each SIGHUP changes only `version`, which applies in
/// place, so the VIP never moves and no node changes state.
#[test]
fn sighup_changing_only_the_version_moves_nothing() {
    let lab = lab("kv2hup", 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let nodes = [n0, n1];
    let spec = |prio, version| one_second(97, prio, version);
    let p0 = start_node(n0, &spec(200, "mixed"));
    let p1 = start_node(n1, &spec(100, "mixed"));
    assert!(wait_state(&p0, "master", SLACK));
    assert!(wait_state(&p1, "backup", SLACK));
    assert_sole_holder(&nodes, VIP, "n0", SLACK, STEADY);
    let before = (stats(&p0)["transitions"], stats(&p1)["transitions"]);
    for (p, node, prio) in [(&p1, n1, 100), (&p0, n0, 200)] {
        let mut v = vipd_spec(&spec(prio, "3"));
        v.interface = node.ifname.clone();
        p.vipd.write_config(&v).unwrap();
        let reloaded = p.line_count();
        p.vipd.signal(Signal::SIGHUP).unwrap();
        let applied = p.wait_line_from(reloaded, SLACK, |l| l.contains("applied in place"));
        assert!(applied.is_some(), "{}: {:?}", node.name, p.lines());
        let now_3 = wait_for(SLACK, || {
            (p.vipd.status().ok()?["vrrp"]["version"] == "3").then_some(())
        });
        assert!(
            now_3.is_some(),
            "{}: /status does not say version 3",
            node.name
        );
        // Several intervals: a handover or a missed advertisement would show within them.
        assert_sole_holder(&nodes, VIP, "n0", SLACK, Duration::from_secs(4));
    }
    assert_eq!(
        (stats(&p0)["transitions"], stats(&p1)["transitions"]),
        before
    );
    assert_eq!(state(&p0).as_deref(), Some("master"));
    assert_eq!(state(&p1).as_deref(), Some("backup"));
    assert!(stats(&p1)["adverts_received"] > 0);
    // While n0 was still mixed, n1 (already 3) heard its VRRPv2 copies: a router that also speaks VRRPv3 is
    // no cause for the warning.
    for p in [&p0, &p1] {
        assert_eq!(stats(p)["v2_peer_adverts"], 0, "{:?}", stats(p));
        let doc = p.vipd.status().unwrap();
        assert_eq!(doc["warnings"], serde_json::json!([]), "{doc}");
    }
}

/// RFC 5798 8.4.2's optional report: a mixed backup whose master sends VRRPv3 only (switched to version 3
/// while VRRPv2 routers may remain) says so in `/status` `warnings`; a mixed master raises nothing.
#[test]
fn mixed_backup_reports_a_v3_only_master() {
    let lab = lab("kv3only", 2);
    let (n0, n1) = (lab.node("n0"), lab.node("n1"));
    let spec = |prio, version| one_second(98, prio, version);
    let p0 = start_node(n0, &spec(200, "3"));
    let p1 = start_node(n1, &spec(100, "mixed"));
    assert!(wait_state(&p0, "master", SLACK));
    assert!(wait_state(&p1, "backup", SLACK));
    let warned = wait_for(SLACK, || {
        let doc = p1.vipd.status().ok()?;
        let w = doc["warnings"].as_array()?.first()?.as_str()?.to_string();
        Some(w)
    })
    .expect("no warning on the mixed backup");
    assert!(warned.contains("sends VRRPv3 only"), "{warned}");
    assert!(warned.contains(&n0.ip(false).to_string()), "{warned}");
    let doc = p0.vipd.status().unwrap();
    assert_eq!(doc["warnings"], serde_json::json!([]), "{doc}");
    // The master goes mixed (in place): its VRRPv2 copies clear the warning on the backup.
    let mut v = vipd_spec(&spec(200, "mixed"));
    v.interface = n0.ifname.clone();
    p0.vipd.write_config(&v).unwrap();
    p0.vipd.signal(Signal::SIGHUP).unwrap();
    let cleared = wait_for(SLACK, || {
        let doc = p1.vipd.status().ok()?;
        (doc["warnings"] == serde_json::json!([])).then_some(())
    });
    assert!(cleared.is_some(), "{:?}", p1.vipd.status());
    assert_eq!(state(&p0).as_deref(), Some("master"));
}
