//! The checker: reads a history after the run (Jepsen's rule) and judges it against invariants whose bounds
//! come from the RFC timers of the fault at hand plus a slack for a loaded machine. The same checker judges
//! vipd and Keepalived + HAProxy; it knows nothing of either, only the history.
//!
//! Invariants, for every fault from its heal until the next fault:
//! - within `bound(kind)` of the heal, exactly one holder, the one the RFC says (the highest priority: preempt
//!   is on), and the client's neighbour entry for the VIP names it (no stale ARP), and it stays so;
//! - the client is served again within the same bound (plus one request timeout);
//! - two holders only while a fault that splits VRRP lasts and one advertisement interval (plus slack) after
//!   its heal; elsewhere at most a sampling blip (`BLIP`);
//! - no daemon exits on its own; descriptors and memory of each process flat over its life;
//! - a reload (changed backend list) fails no request and breaks no watch stream;
//! - (vipd) every fault that moves or touches the VIP is visible in the node's metrics, and every fault
//!   leaves the log lines it must (a state change, a link change, the VIP restored, a backend down within
//!   its checks' fall x interval and up again within rise x interval, a reload applied), see [`expected_logs`].
use std::collections::BTreeMap;

use serde::Serialize;

use super::faults::faults;
use super::history::{Event, HealthTimers};
use super::schedule::Kind;

/// Slack added to every RFC-derived bound: a loaded 2-core CI machine runs `ip` and the daemons late.
pub const SLACK: f64 = 2.5;
/// Time a restarted daemon may take before it joins VRRP (process start, first round of health checks).
pub const RESTART: f64 = 3.0;
/// The netlink watch's periodic re-read (a missed notification is seen this much later at worst).
pub const NET_TICK: f64 = 1.0;
/// Two holders seen for at most this long outside a split are one sample catching a handover mid-way.
pub const BLIP: f64 = 0.5;
/// A client request's timeout (a request that started just before recovery may fail this much later).
pub const REQUEST_TIMEOUT: f64 = 1.0;

/// Master_Down_Interval for `priority` at `advert` seconds.
pub fn master_down(priority: u8, advert: f64) -> f64 {
    3.0 * advert + (256.0 - f64::from(priority)) / 256.0 * advert
}

/// How long after the heal of `kind` the run must be back to one correct holder with the client's entry on it.
pub fn bound(kind: Kind, top_priority: u8, advert: f64) -> f64 {
    let mdi = master_down(top_priority, advert);
    let rfc = match kind {
        // Restarted: joins as backup, preempts after Master_Down_Interval (lower adverts are discarded).
        Kind::Kill9 | Kind::Sigterm => RESTART + mdi,
        // Link back: Fault -> Backup, then preempts after Master_Down_Interval.
        Kind::LinkCut | Kind::LinkFlap => NET_TICK + mdi,
        // Woken master advertises at its next interval; the other master hears it and steps down.
        Kind::StopShort | Kind::StopLong => 2.0 * advert,
        // VRRP heard again: the lower master steps down on the next advertisement.
        Kind::Loss | Kind::VrrpPartition | Kind::LossyBackup => 2.0 * advert,
        Kind::VipRemoved => NET_TICK,
        // No VRRP change: the holder never moves; health checks take the backend out (fall x interval).
        Kind::ApiStall | Kind::ApiKill | Kind::ApiNotReady => 1.0,
        // Backends change, VRRP does not: nothing moves, nothing may fail.
        Kind::Reload => 0.0,
    };
    rfc + SLACK
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct KindStats {
    pub faults: usize,
    /// Client-visible outage per fault, seconds: its longest run of failed requests, from the first one's
    /// start to the end of the success after it.
    pub outages: Vec<f64>,
    /// Seconds from heal to one correct holder with the client on it.
    pub converge: Vec<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub implementation: String,
    pub seed: u64,
    pub seconds: f64,
    pub faults: usize,
    pub requests: usize,
    pub failed_requests: usize,
    pub dual_holder_seconds: f64,
    pub stale_arp_seconds: f64,
    pub per_kind: BTreeMap<String, KindStats>,
    pub violations: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Options the history cannot carry.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Require an `observed` event (metrics) for each VIP-moving fault: vipd records them, Keepalived has none.
    pub require_observed: bool,
    /// Require vipd's log lines for each fault ([`expected_logs`]); Keepalived and HAProxy log otherwise.
    pub require_logs: bool,
}

#[derive(Clone, Debug)]
struct Window {
    kind: Kind,
    node: String,
    start: f64,
    heal: f64,
    end: f64,
}

struct Meta {
    implementation: String,
    seed: u64,
    nodes: Vec<String>,
    top_priority: u8,
    advert: f64,
    health: Option<HealthTimers>,
    backends: BTreeMap<String, String>,
}

fn meta(h: &[Event]) -> Option<Meta> {
    h.iter().find_map(|e| match e {
        Event::Meta {
            implementation,
            seed,
            nodes,
            priorities,
            advert_ms,
            health,
            backends,
            ..
        } => Some(Meta {
            health: *health,
            backends: backends.clone(),
            implementation: implementation.clone(),
            seed: *seed,
            top_priority: priorities.iter().copied().max().unwrap_or(100),
            nodes: nodes.clone(),
            advert: *advert_ms as f64 / 1000.0,
        }),
        _ => None,
    })
}

/// Pair each fault's start with its heal; a window runs to the next fault's start or the history's end.
fn windows(h: &[Event], violations: &mut Vec<String>) -> Vec<Window> {
    let last = h.last().map_or(0.0, Event::t);
    let mut out: Vec<Window> = Vec::new();
    for f in faults(h) {
        let Some(k) = Kind::parse(f.kind) else {
            violations.push(format!("{:.2}s: unknown fault kind {:?}", f.t, f.kind));
            continue;
        };
        match f.phase {
            "start" => {
                if let Some(prev) = out.last_mut() {
                    prev.end = prev.end.min(f.t);
                }
                out.push(Window {
                    kind: k,
                    node: f.node.to_string(),
                    start: f.t,
                    heal: f64::INFINITY,
                    end: last,
                });
            }
            _ => match out.last_mut() {
                Some(w) if w.kind == k && w.heal.is_infinite() => w.heal = f.t,
                _ => violations.push(format!("{:.2}s: heal of {} without its start", f.t, f.kind)),
            },
        }
    }
    for w in &out {
        if w.heal.is_infinite() {
            violations.push(format!(
                "{:.2}s: {} on {} never healed",
                w.start,
                w.kind.as_str(),
                w.node
            ));
        }
    }
    out
}

/// (time, live holders, the node the client's entry names).
type Samples<'a> = Vec<(f64, Vec<String>, Option<&'a str>)>;

fn samples(h: &[Event]) -> Samples<'_> {
    h.iter()
        .filter_map(|e| match e {
            Event::Sample {
                t,
                holders,
                arp,
                down,
            } => {
                let live = holders.iter().filter(|n| !down.contains(n)).cloned();
                Some((*t, live.collect(), arp.as_deref()))
            }
            _ => None,
        })
        .collect()
}

/// Check a history. Never panics on a malformed one: what cannot be judged is a violation.
pub fn check(h: &[Event], opts: Options) -> Report {
    let mut r = Report::default();
    let Some(m) = meta(h) else {
        r.violations.push("no meta line".into());
        return r;
    };
    r.implementation = m.implementation.clone();
    r.seed = m.seed;
    r.seconds = h.last().map_or(0.0, Event::t);
    let ws = windows(h, &mut r.violations);
    r.faults = ws.len();
    let ss = samples(h);
    let expected = m.nodes.first().cloned().unwrap_or_default();
    check_requests(h, &ws, &m, &mut r);
    check_holders(&ss, &ws, &m, &expected, &mut r);
    check_dual(&ss, &ws, &m, &mut r);
    check_processes(h, &mut r);
    check_reloads(h, &ws, &mut r);
    if opts.require_observed {
        check_observed(h, &ws, &m.nodes, &mut r);
    }
    if opts.require_logs {
        check_logs(h, &ws, &m, &mut r);
    }
    r
}

fn stats(r: &mut Report, k: Kind) -> &mut KindStats {
    r.per_kind.entry(k.as_str().to_string()).or_default()
}

/// Convergence after each heal, and the stale-ARP seconds.
fn check_holders(ss: &Samples<'_>, ws: &[Window], m: &Meta, expected: &str, r: &mut Report) {
    let good = |s: &(f64, Vec<String>, Option<&str>)| s.1 == [expected] && s.2 == Some(expected);
    for w in ws.iter().filter(|w| w.heal.is_finite()) {
        stats(r, w.kind).faults += 1;
        let after: Vec<_> = ss
            .iter()
            .filter(|s| s.0 >= w.heal && s.0 <= w.end)
            .collect();
        let Some(last_bad) = after.iter().rposition(|s| !good(s)) else {
            stats(r, w.kind).converge.push(0.0);
            continue;
        };
        let bound = bound(w.kind, m.top_priority, m.advert);
        if last_bad + 1 == after.len() {
            let s = after[last_bad];
            r.violations.push(format!(
                "{:.2}s: {} on {} healed at {:.2}s, not back to one holder ({expected}) with the client on it by the next fault: holders {:?}, client's entry {:?}",
                s.0, w.kind.as_str(), w.node, w.heal, s.1, s.2
            ));
            continue;
        }
        let converged = after[last_bad + 1].0 - w.heal;
        stats(r, w.kind).converge.push(converged);
        if converged > bound {
            let s = after[last_bad];
            r.violations.push(format!(
                "{:.2}s: {} on {}: {converged:.2}s from heal to one holder ({expected}) with the client on it, bound {bound:.2}s; last bad sample: holders {:?}, client's entry {:?}",
                s.0, w.kind.as_str(), w.node, s.1, s.2
            ));
        }
    }
    for pair in ss.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.1.len() == 1 && a.2 != Some(a.1[0].as_str()) {
            r.stale_arp_seconds += b.0 - a.0;
        }
    }
}

/// Two holders: allowed during a splitting fault and briefly after its heal; counted everywhere.
fn check_dual(ss: &Samples<'_>, ws: &[Window], m: &Meta, r: &mut Report) {
    let allowed = |t: f64| {
        ws.iter().any(|w| {
            // A stopped master is silent: a backup takes over while the stopped one still holds the VIP.
            (w.kind.splits() || matches!(w.kind, Kind::StopLong | Kind::StopShort))
                && t >= w.start
                && t <= w.heal + 2.0 * m.advert + SLACK
        })
    };
    let mut run_start: Option<f64> = None;
    for pair in ss.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.1.len() > 1 {
            r.dual_holder_seconds += b.0 - a.0;
        }
        let bad = a.1.len() > 1 && !allowed(a.0);
        match (bad, run_start) {
            (true, None) => run_start = Some(a.0),
            (false, Some(s)) => {
                if a.0 - s > BLIP {
                    r.violations.push(format!(
                        "{s:.2}s: two holders for {:.2}s with no partition to explain it",
                        a.0 - s
                    ));
                }
                run_start = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some(last)) = (run_start, ss.last()) {
        if last.0 - s > BLIP {
            r.violations
                .push(format!("{s:.2}s: two holders until the end of the run"));
        }
    }
}

/// Failed requests, outage per fault, and the client served again within the bound.
fn check_requests(h: &[Event], ws: &[Window], m: &Meta, r: &mut Report) {
    let reqs: Vec<(f64, f64, bool)> = h
        .iter()
        .filter_map(|e| match e {
            Event::Request { t, end, ok, .. } => Some((*t, *end, *ok)),
            _ => None,
        })
        .collect();
    r.requests = reqs.len();
    r.failed_requests = reqs.iter().filter(|q| !q.2).count();
    for w in ws.iter().filter(|w| w.heal.is_finite()) {
        // Requests belong to the fault during whose window they ended: one still running when the next fault
        // starts belongs to that fault.
        let inside: Vec<_> = reqs
            .iter()
            .filter(|q| q.1 > w.start && q.1 <= w.end)
            .collect();
        let outage = longest_outage(&inside, w.end);
        stats(r, w.kind).outages.push(outage);
        let bound = bound(w.kind, m.top_priority, m.advert) + REQUEST_TIMEOUT;
        if let Some(q) = inside.iter().rev().find(|q| !q.2) {
            if q.0 > w.heal + bound {
                r.violations.push(format!(
                    "{:.2}s: {} on {} healed at {:.2}s: a request still failed {:.2}s after the heal (bound {bound:.2}s)",
                    q.0, w.kind.as_str(), w.node, w.heal, q.0 - w.heal
                ));
            }
        }
        if !inside.iter().any(|q| q.2 && q.0 >= w.heal) && w.end - w.heal > bound {
            r.violations.push(format!(
                "{:.2}s: {} on {}: no request served after the heal",
                w.heal,
                w.kind.as_str(),
                w.node
            ));
        }
    }
}

/// The longest run of failed requests, from the first one's start to the end of the success after it (or
/// `end`): what the client saw as one outage. A fault can cause two (failover, then failback).
fn longest_outage(reqs: &[&(f64, f64, bool)], end: f64) -> f64 {
    let mut worst: f64 = 0.0;
    let mut run_start: Option<f64> = None;
    for q in reqs {
        match (q.2, run_start) {
            (false, None) => run_start = Some(q.0),
            (true, Some(s)) => {
                worst = worst.max(q.1 - s);
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = run_start {
        worst = worst.max(end - s);
    }
    worst
}

/// Unexpected exits, and descriptors / memory flat over each process's life.
fn check_processes(h: &[Event], r: &mut Report) {
    // (node, pid) -> (t, fds, rss_kb)
    type Series = BTreeMap<(String, i32), Vec<(f64, u64, u64)>>;
    let mut series: Series = BTreeMap::new();
    for e in h {
        match e {
            Event::Exit {
                t,
                node,
                expected: false,
                status,
            } => r.violations.push(format!(
                "{t:.2}s: {node}'s daemon exited on its own ({status})"
            )),
            Event::Resources {
                t,
                node,
                pid,
                fds,
                rss_kb,
            } => series
                .entry((node.clone(), *pid))
                .or_default()
                .push((*t, *fds, *rss_kb)),
            _ => {}
        }
    }
    for ((node, pid), s) in series {
        let (Some(first), Some(last)) = (s.first(), s.last()) else {
            continue;
        };
        if last.0 - first.0 < 30.0 {
            continue;
        }
        // Warm-up excluded: the first sample of a process may predate its sockets and threads.
        let base = s.iter().find(|x| x.0 >= first.0 + 10.0).unwrap_or(first);
        if last.1 > base.1 + 10 {
            r.violations.push(format!(
                "{node} (pid {pid}): file descriptors grew {} -> {} over {:.0}s",
                base.1,
                last.1,
                last.0 - base.0
            ));
        }
        if last.2 > base.2 + 16 * 1024 {
            r.violations.push(format!(
                "{node} (pid {pid}): resident memory grew {} -> {} KiB over {:.0}s",
                base.2,
                last.2,
                last.0 - base.0
            ));
        }
    }
}

/// Every fault that moves or touches the VIP left a trace in some node's metrics during its window.
fn check_observed(h: &[Event], ws: &[Window], nodes: &[String], r: &mut Report) {
    for w in ws.iter().filter(|w| {
        !matches!(
            w.kind,
            Kind::StopShort | Kind::ApiStall | Kind::ApiKill | Kind::ApiNotReady | Kind::Loss
        )
    }) {
        let seen = h
            .iter()
            .any(|e| matches!(e, Event::Observed { t, node, .. } if *t >= w.start && *t <= w.end && nodes.contains(node)));
        if !seen {
            r.violations.push(format!(
                "{:.2}s: {} on {} is not visible in any node's metrics",
                w.start,
                w.kind.as_str(),
                w.node
            ));
        }
    }
}

/// A reload with a changed backend list must not disturb the client: every request that ended during its
/// window (from the first reload to the next fault, so the reload back is included) succeeded, and no watch
/// stream broke.
fn check_reloads(h: &[Event], ws: &[Window], r: &mut Report) {
    for w in ws.iter().filter(|w| w.kind == Kind::Reload) {
        let in_window = |t: f64| t > w.start && t <= w.end;
        let failed = h
            .iter()
            .filter(|e| matches!(e, Event::Request { end, ok: false, .. } if in_window(*end)))
            .count();
        if failed > 0 {
            r.violations.push(format!(
                "{:.2}s: reload without {}: {failed} request(s) failed",
                w.start, w.node
            ));
        }
        for e in h {
            if let Event::Observed { t, node, what } = e {
                if node.starts_with("watch") && in_window(*t) {
                    r.violations.push(format!(
                        "{t:.2}s: reload without {} (at {:.2}s): {node}: {what}",
                        w.node, w.start
                    ));
                }
            }
        }
    }
}

/// Which nodes must log a line.
#[derive(Clone, Debug, PartialEq)]
pub enum Who {
    /// This load-balancer node.
    Node(String),
    /// Any one of them.
    Any,
    /// Every one of them (all check every backend and all are reloaded).
    Every,
}

/// A line vipd must log for a fault: from `who`, containing every one of `contains`, between `from` and `by`
/// (seconds since the run started).
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedLog {
    pub who: Who,
    pub contains: Vec<String>,
    pub from: f64,
    pub by: f64,
}

/// How long health checks take to mark a backend down after it breaks: `fall` checks, `interval` apart,
/// each failing at once (refused, 500) or after its timeout (stalled).
pub fn backend_down_after(kind: Kind, h: &HealthTimers) -> f64 {
    let per_check = h.interval_ms
        + if kind == Kind::ApiStall {
            h.timeout_ms
        } else {
            0
        };
    f64::from(h.fall) * per_check as f64 / 1000.0
}

/// How long health checks take to mark a recovered backend up: `rise` checks, `interval` apart.
pub fn backend_up_after(h: &HealthTimers) -> f64 {
    f64::from(h.rise) * (h.interval_ms + h.timeout_ms) as f64 / 1000.0
}

/// The lines vipd must log for the fault of window `w` (its heal at `w.heal`, the next fault at `w.end`).
/// `backend_went_down`: whether the window's apiserver was logged down (then it must come back up).
fn expected_logs(w: &Window, m: &Meta, backend_went_down: bool) -> Vec<ExpectedLog> {
    let e = |who: Who, contains: &[&str], from: f64, by: f64| ExpectedLog {
        who,
        contains: contains.iter().map(|s| s.to_string()).collect(),
        from,
        by,
    };
    let node = Who::Node(w.node.clone());
    let change = "VRRP state change";
    match w.kind {
        // The restarted daemon joins (Initialize -> Backup, and lb0 preempts to Master).
        Kind::Kill9 | Kind::Sigterm => vec![e(node, &[change], w.heal, w.end)],
        // A stopped master is replaced (a stopped backup may come back unnoticed, like StopShort).
        Kind::StopLong if m.nodes.first() == Some(&w.node) => {
            vec![e(Who::Any, &[change], w.start, w.end)]
        }
        Kind::StopLong | Kind::StopShort | Kind::Loss => vec![],
        Kind::LinkCut | Kind::LinkFlap => vec![e(node, &["link changed"], w.start, w.end)],
        // An isolated backup becomes master; an isolated master is replaced.
        Kind::VrrpPartition => vec![e(Who::Any, &[change], w.start, w.end)],
        // Deaf for longer than Master_Down_Interval: takes over, steps down, repairs the client's entry.
        Kind::LossyBackup => vec![
            e(node.clone(), &[change], w.start, w.end),
            e(
                node,
                &["announced the VIP at the new master's MAC"],
                w.start,
                w.end,
            ),
        ],
        Kind::VipRemoved => vec![e(
            node,
            &["VIP removed from the interface while master"],
            w.start,
            w.start + bound(w.kind, m.top_priority, m.advert),
        )],
        Kind::Reload => vec![
            e(
                Who::Every,
                &["reload: new configuration applied"],
                w.start,
                w.start + SLACK,
            ),
            e(
                Who::Every,
                &["reload: new configuration applied"],
                w.heal,
                w.heal + SLACK,
            ),
        ],
        Kind::ApiStall | Kind::ApiKill | Kind::ApiNotReady => backend_logs(w, m, backend_went_down),
    }
}

/// A broken apiserver: every node logs it down within its checks' detection time, when the fault lasted
/// that long (plus slack); once down, up again within the rise time after the heal.
fn backend_logs(w: &Window, m: &Meta, went_down: bool) -> Vec<ExpectedLog> {
    let Some(h) = m.health else { return vec![] };
    let addr = m.backends.get(&w.node).cloned().unwrap_or_default();
    let down_by = backend_down_after(w.kind, &h) + SLACK;
    let mut out = Vec::new();
    if w.heal - w.start >= down_by {
        out.push(ExpectedLog {
            who: Who::Every,
            contains: vec!["backend is down".into(), addr.clone()],
            from: w.start,
            by: w.start + down_by,
        });
    }
    if went_down {
        out.push(ExpectedLog {
            who: Who::Every,
            contains: vec!["backend is up".into(), addr],
            from: w.heal,
            by: w.heal + backend_up_after(&h) + SLACK,
        });
    }
    out
}

/// Every fault left the log lines [`expected_logs`] names.
fn check_logs(h: &[Event], ws: &[Window], m: &Meta, r: &mut Report) {
    let logs: Vec<(f64, &str, &str)> = h
        .iter()
        .filter_map(|e| match e {
            Event::Log { t, node, line } => Some((*t, node.as_str(), line.as_str())),
            _ => None,
        })
        .collect();
    let matches = |x: &ExpectedLog, node: &str| {
        logs.iter().any(|(t, n, line)| {
            *n == node
                && *t >= x.from
                && *t <= x.by
                && x.contains.iter().all(|c| line.contains(c.as_str()))
        })
    };
    for w in ws.iter().filter(|w| w.heal.is_finite()) {
        let addr = m.backends.get(&w.node).map_or("", String::as_str);
        let went_down = logs.iter().any(|(t, _, line)| {
            *t >= w.start && *t <= w.end && line.contains("backend is down") && line.contains(addr)
        });
        for x in expected_logs(w, m, went_down) {
            let missing: Vec<&String> = match &x.who {
                Who::Node(n) => m
                    .nodes
                    .iter()
                    .filter(|k| *k == n && !matches(&x, k))
                    .collect(),
                Who::Any => {
                    if m.nodes.iter().any(|k| matches(&x, k)) {
                        vec![]
                    } else {
                        m.nodes.iter().collect()
                    }
                }
                Who::Every => m.nodes.iter().filter(|k| !matches(&x, k)).collect(),
            };
            if !missing.is_empty() {
                r.violations.push(format!(
                    "{:.2}s: {} on {}: no log line with {:?} from {:?} between {:.2}s and {:.2}s",
                    w.start,
                    w.kind.as_str(),
                    w.node,
                    x.contains,
                    missing,
                    x.from,
                    x.by
                ));
            }
        }
    }
}

/// Median and worst of `v` (seconds), for the results table.
pub fn median_worst(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[s.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::read;

    const META: &str = r#"{"type":"meta","t":0.0,"implementation":"test","seed":1,"nodes":["lb0","lb1","lb2"],"priorities":[150,120,100],"advert_ms":100}"#;
    const OPTS: Options = Options {
        require_observed: false,
        require_logs: false,
    };

    fn sample(t: f64, holders: &[&str], arp: &str) -> String {
        format!(
            r#"{{"type":"sample","t":{t},"holders":{},"arp":"{arp}"}}"#,
            serde_json::to_string(holders).unwrap()
        )
    }

    fn fault(t: f64, kind: &str, phase: &str) -> String {
        format!(r#"{{"type":"fault","t":{t},"kind":"{kind}","node":"lb0","phase":"{phase}"}}"#)
    }

    fn req(t: f64, ok: bool) -> String {
        format!(
            r#"{{"type":"request","t":{t},"end":{},"ok":{ok}}}"#,
            t + 0.01
        )
    }

    /// META, then `lines`, then samples of lb0 holding with the client on it every 0.1 s in [from, to).
    fn history(lines: &[String], steady: (f64, f64)) -> Vec<Event> {
        let mut all = vec![META.to_string()];
        all.extend_from_slice(lines);
        let mut t = steady.0;
        while t < steady.1 {
            all.push(sample(t, &["lb0"], "lb0"));
            all.push(req(t, true));
            t += 0.1;
        }
        let mut evs = read(all.join("\n").as_bytes()).unwrap();
        evs.sort_by(|a, b| a.t().total_cmp(&b.t()));
        evs
    }

    #[test]
    fn a_clean_failover_and_preemption_back_passes() {
        let h = history(
            &[
                fault(1.0, "kill9", "start"),
                req(1.05, false),
                req(1.2, false),
                sample(1.5, &["lb1"], "lb1"),
                req(1.6, true),
                fault(2.0, "kill9", "heal"),
                sample(2.5, &["lb1"], "lb1"),
            ],
            (3.0, 12.0),
        );
        let r = check(&h, OPTS);
        assert!(r.ok(), "{:?}", r.violations);
        let k = &r.per_kind["kill9"];
        assert_eq!(k.faults, 1);
        assert!((k.converge[0] - 1.0).abs() < 1e-9, "{:?}", k.converge);
        assert!((k.outages[0] - 0.56).abs() < 1e-9, "{:?}", k.outages);
        assert_eq!(r.failed_requests, 2);
        assert_eq!(r.stale_arp_seconds, 0.0);
    }

    #[test]
    fn a_stale_neighbour_entry_after_the_heal_is_a_violation() {
        let mut lines = vec![
            fault(1.0, "lossy_backup", "start"),
            fault(4.6, "lossy_backup", "heal"),
        ];
        let mut t = 4.6;
        while t < 12.0 {
            lines.push(sample(t, &["lb0"], "lb1"));
            t += 0.1;
        }
        let r = check(&history(&lines, (12.0, 13.0)), OPTS);
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
        assert!(
            r.violations[0].contains("client's entry Some(\"lb1\")"),
            "{}",
            r.violations[0]
        );
        assert!(r.stale_arp_seconds > 7.0);
    }

    #[test]
    fn two_holders_need_a_partition_to_explain_them() {
        let dual: Vec<String> = (0..10)
            .map(|i| sample(5.0 + f64::from(i) * 0.1, &["lb0", "lb1"], "lb0"))
            .collect();
        let mut h = history(&dual, (6.0, 8.0));
        h.extend(history(&[], (0.0, 5.0)).into_iter().skip(1));
        h.sort_by(|a, b| a.t().total_cmp(&b.t()));
        let r = check(&h, OPTS);
        assert!(
            r.violations.iter().any(|v| v.contains("two holders")),
            "{:?}",
            r.violations
        );
        assert!((r.dual_holder_seconds - 1.0).abs() < 0.05);

        let mut lines = vec![
            fault(4.9, "vrrp_partition", "start"),
            fault(6.0, "vrrp_partition", "heal"),
        ];
        lines.extend(dual);
        let mut h = history(&lines, (6.0, 14.0));
        h.extend(history(&[], (0.0, 4.9)).into_iter().skip(1));
        h.sort_by(|a, b| a.t().total_cmp(&b.t()));
        let r = check(&h, OPTS);
        assert!(r.ok(), "{:?}", r.violations);
        assert!(r.dual_holder_seconds > 0.9);
    }

    #[test]
    fn slow_convergence_late_failures_and_exits_are_violations() {
        let mut lines = vec![
            fault(1.0, "stop_long", "start"),
            fault(2.0, "stop_long", "heal"),
        ];
        let mut t = 2.0;
        while t < 7.0 {
            lines.push(sample(t, &["lb1"], "lb1"));
            lines.push(req(t, false));
            t += 0.1;
        }
        lines.push(
            r#"{"type":"exit","t":3.0,"node":"lb2","expected":false,"status":"signal 11"}"#.into(),
        );
        let r = check(&history(&lines, (7.0, 12.0)), OPTS);
        let v = r.violations.join("\n");
        assert!(v.contains("from heal to one holder"), "{v}");
        assert!(v.contains("a request still failed"), "{v}");
        assert!(v.contains("lb2's daemon exited on its own"), "{v}");
        assert!(bound(Kind::StopLong, 150, 0.1) < 5.0);
    }

    #[test]
    fn growing_descriptors_and_missing_metrics_are_violations() {
        let mut lines = vec![
            fault(1.0, "link_cut", "start"),
            fault(2.0, "link_cut", "heal"),
        ];
        for i in 0..60 {
            lines.push(format!(
                r#"{{"type":"resources","t":{i},"node":"lb0","pid":7,"fds":{},"rss_kb":9000}}"#,
                20 + i
            ));
        }
        let h = history(&lines, (2.0, 60.0));
        let r = check(
            &h,
            Options {
                require_observed: true,
                require_logs: false,
            },
        );
        let v = r.violations.join("\n");
        assert!(v.contains("file descriptors grew"), "{v}");
        assert!(v.contains("not visible in any node's metrics"), "{v}");
        assert!(!v.contains("resident memory"), "{v}");
    }

    #[test]
    fn a_stale_vip_on_a_killed_node_is_not_a_second_holder() {
        let lines: Vec<String> = (0..20)
            .map(|i| {
                format!(
                    r#"{{"type":"sample","t":{},"holders":["lb0","lb1"],"arp":"lb1","down":["lb0"]}}"#,
                    1.1 + f64::from(i) * 0.1
                )
            })
            .chain([fault(1.0, "kill9", "start"), fault(3.1, "kill9", "heal")])
            .collect();
        let mut h = history(&lines, (3.2, 12.0));
        h.extend(history(&[], (0.0, 1.0)).into_iter().skip(1));
        h.sort_by(|a, b| a.t().total_cmp(&b.t()));
        let r = check(&h, OPTS);
        assert!(r.ok(), "{:?}", r.violations);
        assert_eq!(r.dual_holder_seconds, 0.0);
    }

    #[test]
    fn a_request_cut_by_the_next_fault_belongs_to_it() {
        let lines = vec![
            fault(1.0, "api_kill", "start"),
            fault(2.0, "api_kill", "heal"),
            // Starts just before the next fault and fails because of it.
            r#"{"type":"request","t":9.99,"end":11.0,"ok":false}"#.to_string(),
            fault(10.0, "stop_long", "start"),
            fault(11.0, "stop_long", "heal"),
        ];
        let r = check(&history(&lines, (0.0, 20.0)), OPTS);
        assert!(r.ok(), "{:?}", r.violations);
        assert_eq!(r.per_kind["api_kill"].outages, vec![0.0]);
        assert!(r.per_kind["stop_long"].outages[0] > 0.0);
    }

    const META_HEALTH: &str = r#"{"type":"meta","t":0.0,"implementation":"vipd","seed":1,"nodes":["lb0","lb1","lb2"],"priorities":[150,120,100],"advert_ms":100,"health":{"interval_ms":300,"timeout_ms":250,"rise":1,"fall":2},"backends":{"api0":"192.0.2.4:6443","api1":"192.0.2.5:6443","api2":"192.0.2.6:6443"}}"#;
    const LOGS: Options = Options {
        require_observed: false,
        require_logs: true,
    };

    fn api_fault(t: f64, kind: &str, node: &str, phase: &str) -> String {
        format!(r#"{{"type":"fault","t":{t},"kind":"{kind}","node":"{node}","phase":"{phase}"}}"#)
    }

    fn log(t: f64, node: &str, line: &str) -> String {
        serde_json::to_string(&Event::Log {
            t,
            node: node.into(),
            line: line.into(),
        })
        .unwrap()
    }

    fn logs_on_every_node(t: f64, line: &str) -> Vec<String> {
        ["lb0", "lb1", "lb2"]
            .iter()
            .map(|n| log(t, n, line))
            .collect()
    }

    /// Like [`history`], with the health timers and backend addresses in the meta line.
    fn history_health(lines: &[String], steady: (f64, f64)) -> Vec<Event> {
        let mut h = history(lines, steady);
        h[0] = read(META_HEALTH.as_bytes()).unwrap().remove(0);
        h
    }

    #[test]
    fn a_not_ready_apiserver_must_be_logged_down_within_fall_x_interval_and_up_after() {
        let down =
            " WARN health::checker: backend is down backend=192.0.2.5:6443 reason=status 500";
        let up = " INFO health::checker: backend is up backend=192.0.2.5:6443";
        // fall 2 x 300 ms = 0.6 s, plus the slack: logged by 1.0 + 3.1 s; up by 5.0 + 0.55 + 2.5 s.
        assert!((backend_down_after(Kind::ApiNotReady, &HEALTH) - 0.6).abs() < 1e-9);
        assert!((backend_down_after(Kind::ApiStall, &HEALTH) - 1.1).abs() < 1e-9);
        let base = [
            api_fault(1.0, "api_not_ready", "api1", "start"),
            api_fault(5.0, "api_not_ready", "api1", "heal"),
        ];
        let good: Vec<String> = base
            .iter()
            .cloned()
            .chain(logs_on_every_node(1.7, down))
            .chain(logs_on_every_node(5.4, up))
            .collect();
        let r = check(&history_health(&good, (0.0, 14.0)), LOGS);
        assert!(r.ok(), "{:?}", r.violations);

        // Down too late on lb2 (after 4.1 s), and never up again on lb0.
        let mut late: Vec<String> = base.to_vec();
        late.push(log(1.7, "lb0", down));
        late.push(log(1.7, "lb1", down));
        late.push(log(4.5, "lb2", down));
        late.push(log(5.4, "lb1", up));
        late.push(log(5.4, "lb2", up));
        let r = check(&history_health(&late, (0.0, 14.0)), LOGS);
        let v = r.violations.join("\n");
        assert_eq!(r.violations.len(), 2, "{v}");
        assert!(
            v.contains("backend is down") && v.contains("[\"lb2\"]"),
            "{v}"
        );
        assert!(
            v.contains("backend is up") && v.contains("[\"lb0\"]"),
            "{v}"
        );

        // A fault shorter than the detection time plus slack needs no line (the checks may not have seen it).
        let short = [
            api_fault(1.0, "api_not_ready", "api1", "start"),
            api_fault(2.0, "api_not_ready", "api1", "heal"),
        ];
        assert!(check(&history_health(&short, (0.0, 10.0)), LOGS).ok());
    }

    const HEALTH: HealthTimers = HealthTimers {
        interval_ms: 300,
        timeout_ms: 250,
        rise: 1,
        fall: 2,
    };

    #[test]
    fn a_reload_fails_no_request_breaks_no_watch_and_is_logged_on_every_node() {
        let applied = " INFO vipd::supervisor: reload: new configuration applied backends=2";
        let base = [
            api_fault(1.0, "reload", "api2", "start"),
            api_fault(3.0, "reload", "api2", "heal"),
        ];
        let good: Vec<String> = base
            .iter()
            .cloned()
            .chain(logs_on_every_node(1.2, applied))
            .chain(logs_on_every_node(3.2, applied))
            .collect();
        let r = check(&history_health(&good, (0.0, 10.0)), LOGS);
        assert!(r.ok(), "{:?}", r.violations);
        assert!(bound(Kind::Reload, 150, 0.1) <= SLACK);

        let mut bad = good.clone();
        bad.push(req(2.0, false));
        bad.push(
            r#"{"type":"observed","t":3.3,"node":"watch1","what":"watch broke after 40.0s: stream ended"}"#
                .into(),
        );
        bad.retain(|l| !(l.contains("\"lb2\"") && l.contains("\"t\":3.2")));
        let r = check(&history_health(&bad, (0.0, 10.0)), LOGS);
        let v = r.violations.join("\n");
        assert!(v.contains("1 request(s) failed"), "{v}");
        assert!(v.contains("watch1: watch broke"), "{v}");
        assert!(
            v.contains("reload: new configuration applied") && v.contains("[\"lb2\"]"),
            "{v}"
        );
        // The pair is held to the same client rules, not to vipd's log lines.
        let r = check(&history_health(&bad, (0.0, 10.0)), OPTS);
        assert_eq!(r.violations.len(), 2, "{:?}", r.violations);
    }

    #[test]
    fn vip_moving_faults_must_leave_their_log_lines() {
        let change = " INFO vrrp::sys::driver: VRRP state change vrid=51 from=Backup to=Master reason=MasterDown";
        let lines = vec![
            // Restarted lb0 logs its state changes: fine.
            fault(1.0, "kill9", "start"),
            fault(2.0, "kill9", "heal"),
            log(2.5, "lb0", change),
            // The VIP deleted on lb0, restored and logged.
            fault(10.0, "vip_removed", "start"),
            fault(10.0, "vip_removed", "heal"),
            log(10.3, "lb0", " WARN vrrp::sys::driver: VIP removed from the interface while master: restoring it vip=192.0.2.100"),
            // A SIGTERM on lb0 whose restart logged nothing.
            fault(20.0, "sigterm", "start"),
            fault(21.0, "sigterm", "heal"),
            // A link cut logged by another node only.
            fault(30.0, "link_cut", "start"),
            fault(31.0, "link_cut", "heal"),
            log(30.2, "lb1", " WARN vrrp::sys::driver: link changed interface=eth0 up=false"),
            // A short stop needs no line.
            fault(40.0, "stop_short", "start"),
            fault(40.1, "stop_short", "heal"),
        ];
        let r = check(&history_health(&lines, (0.0, 50.0)), LOGS);
        let v = r.violations.join("\n");
        assert_eq!(r.violations.len(), 2, "{v}");
        assert!(
            v.contains("sigterm on lb0: no log line with [\"VRRP state change\"]"),
            "{v}"
        );
        assert!(
            v.contains("link_cut on lb0: no log line with [\"link changed\"]"),
            "{v}"
        );
        // The same history without the log rule passes.
        assert!(check(&history_health(&lines, (0.0, 50.0)), OPTS).ok());
    }

    #[test]
    fn a_history_without_meta_or_heal_says_so() {
        assert_eq!(
            check(&[], OPTS).violations,
            vec!["no meta line".to_string()]
        );
        let r = check(&history(&[fault(1.0, "kill9", "start")], (1.0, 3.0)), OPTS);
        assert!(r.violations.iter().any(|v| v.contains("never healed")));
    }
}
