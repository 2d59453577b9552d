//! The short chaos run (issue 17): about three minutes of faults from a seeded schedule against three `vipd
//! run` nodes, three fake apiservers and a client making HTTPS requests through the VIP and holding watch
//! streams; the recorded history must pass every invariant of `vipd_lab::chaos::check`. On failure the
//! history (JSON lines), the report and the timeline SVG are kept under target/chaos-test/ and the seed is
//! printed: `CHAOS_SEED=N cargo test --test chaos` replays the same schedule.
use std::path::PathBuf;

use vipd_lab::chaos::check::{check, Options};
use vipd_lab::chaos::run::{history_path, run, RunConfig};
use vipd_lab::chaos::schedule::{generate, Kind};
use vipd_lab::chaos::svg;
use vipd_lab::chaos::world::{Imp, ADVERT_MS};

/// Seconds of faults (plus about 20 s of start-up): every kind once, some twice.
const SHORT: f64 = 150.0;

#[test]
fn short_chaos_run_keeps_one_holder_and_serves_the_client() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(17);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos-test");
    std::fs::create_dir_all(&dir).unwrap();
    let faults = generate(seed, SHORT, &Kind::ALL, ADVERT_MS as f64 / 1000.0);
    for k in Kind::ALL {
        assert!(faults.iter().any(|f| f.kind == k), "schedule lacks {k:?}");
    }
    let history = history_path(&dir, Imp::Vipd, seed);
    let cfg = RunConfig {
        imp: Imp::Vipd,
        seed,
        faults,
        history: history.clone(),
        vipd_bin: PathBuf::from(env!("CARGO_BIN_EXE_vipd")),
        tag: "chst".into(),
    };
    let events = run(&cfg).unwrap();
    let report = check(
        &events,
        Options {
            require_observed: true,
            require_logs: true,
        },
    );
    std::fs::write(
        history.with_extension("svg"),
        svg::render(&events, &format!("vipd seed {seed}"), 1200.0),
    )
    .unwrap();
    std::fs::write(
        history.with_extension("json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    eprintln!(
        "{}",
        vipd_lab::chaos::markdown(std::slice::from_ref(&report))
    );
    assert!(
        report.requests > 1000,
        "the client ran: {}",
        report.requests
    );
    assert!(
        report.ok(),
        "seed {seed}: {} violation(s), history {}:\n{}",
        report.violations.len(),
        history.display(),
        report.violations.join("\n")
    );
}
