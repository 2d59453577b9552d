//! The chaos run (issue 17): faults drawn from a seeded schedule against three load-balancer nodes, a client
//! and three fake apiservers; a recorded history of events and samples (JSON lines); a checker that reads the
//! history afterwards, so the same invariants judge vipd and Keepalived + HAProxy and can be unit-tested on
//! small hand-written histories; and a timeline of the history drawn as SVG.
pub mod check;
mod faults;
pub mod history;
pub mod inject;
pub mod run;
pub mod schedule;
pub mod svg;
pub mod world;

use std::fmt::Write as _;

/// The side-by-side table of the results file: one column per report (same schedule and seed).
pub fn markdown(reports: &[check::Report]) -> String {
    let mut s = String::new();
    let head: Vec<&str> = reports.iter().map(|r| r.implementation.as_str()).collect();
    let _ = writeln!(s, "| | {} |", head.join(" | "));
    let _ = writeln!(s, "| --- |{}", " --- |".repeat(reports.len()));
    let row = |s: &mut String, label: &str, f: &dyn Fn(&check::Report) -> String| {
        let cells: Vec<String> = reports.iter().map(f).collect();
        let _ = writeln!(s, "| {label} | {} |", cells.join(" | "));
    };
    row(&mut s, "run length", &|r| format!("{:.0} s", r.seconds));
    row(&mut s, "faults", &|r| r.faults.to_string());
    row(&mut s, "requests (failed)", &|r| {
        format!("{} ({})", r.requests, r.failed_requests)
    });
    row(&mut s, "seconds with two holders", &|r| {
        format!("{:.2}", r.dual_holder_seconds)
    });
    row(&mut s, "seconds with a stale ARP entry", &|r| {
        format!("{:.2}", r.stale_arp_seconds)
    });
    row(&mut s, "invariant violations", &|r| {
        r.violations.len().to_string()
    });
    let mut kinds: Vec<&String> = reports.iter().flat_map(|r| r.per_kind.keys()).collect();
    kinds.sort();
    kinds.dedup();
    for k in kinds {
        row(
            &mut s,
            &format!("outage `{k}`: median / worst (n)"),
            &|r| match r.per_kind.get(k) {
                Some(st) => {
                    let (m, w) = check::median_worst(&st.outages);
                    format!("{:.2} / {:.2} s ({})", m, w, st.outages.len())
                }
                None => "-".into(),
            },
        );
    }
    s
}
