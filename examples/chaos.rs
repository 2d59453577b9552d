//! The chaos run (issue 17) from the command line: the same seeded schedule against vipd and against
//! Keepalived + HAProxy in the namespace lab, each history checked, drawn and summed up side by side.
//! `bench/chaos.sh` builds and runs it and writes `bench/RESULTS-chaos.md`.
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use vipd_lab::chaos::check::{check, Options, Report};
use vipd_lab::chaos::run::{history_path, run, RunConfig};
use vipd_lab::chaos::schedule::{generate, Kind};
use vipd_lab::chaos::world::{Imp, ADVERT_MS};
use vipd_lab::chaos::{markdown, svg};

#[derive(Debug, Parser)]
#[command(about = "vipd vs Keepalived + HAProxy under a seeded schedule of faults")]
struct Args {
    /// Length of each run's schedule, minutes.
    #[arg(long, default_value_t = 3.0)]
    minutes: f64,
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// vipd | pair | both
    #[arg(long, default_value = "both")]
    imp: String,
    /// Directory for histories (`*.jsonl`), reports (`*.json`), timelines (`*.svg`) and `summary.md`.
    #[arg(long, default_value = "target/chaos")]
    out: PathBuf,
    /// The vipd binary (default: target/<profile>/vipd next to this example).
    #[arg(long)]
    vipd: Option<PathBuf>,
    /// Run nothing: check these recorded histories (JSON lines), print the table and the violations.
    #[arg(long, num_args = 1..)]
    check: Vec<PathBuf>,
}

fn check_files(files: &[PathBuf]) -> Result<()> {
    let mut reports = Vec::new();
    for f in files {
        let events =
            vipd_lab::chaos::history::read(std::io::BufReader::new(std::fs::File::open(f)?))?;
        // vipd's history carries its metrics' evidence; Keepalived's has only its log lines.
        let vipd = events.iter().any(|e| {
            matches!(e, vipd_lab::chaos::history::Event::Meta { implementation, .. } if implementation == "vipd")
        });
        let r = check(
            &events,
            Options {
                require_observed: vipd,
                require_logs: vipd,
            },
        );
        let title = format!(
            "{} seed {}: holders, client ARP entry, faults, failed requests",
            r.implementation, r.seed
        );
        std::fs::write(
            f.with_extension("svg"),
            svg::render(&events, &title, 1400.0),
        )?;
        std::fs::write(f.with_extension("json"), serde_json::to_string_pretty(&r)?)?;
        for v in &r.violations {
            eprintln!("{}: {v}", f.display());
        }
        reports.push(r);
    }
    print!("{}", markdown(&reports));
    Ok(())
}

fn main() -> Result<()> {
    let a = Args::parse();
    if !a.check.is_empty() {
        return check_files(&a.check);
    }
    let vipd = match a.vipd {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .context("no target dir")?
            .join("vipd"),
    };
    std::fs::create_dir_all(&a.out)?;
    let imps = match a.imp.as_str() {
        "vipd" => vec![Imp::Vipd],
        "pair" => vec![Imp::Pair],
        _ => vec![Imp::Vipd, Imp::Pair],
    };
    let faults = generate(
        a.seed,
        a.minutes * 60.0,
        &Kind::ALL,
        ADVERT_MS as f64 / 1000.0,
    );
    let mut reports: Vec<Report> = Vec::new();
    for imp in imps {
        let history = history_path(&a.out, imp, a.seed);
        eprintln!(
            "chaos: {} seed {} ({} faults) -> {}",
            imp.label(),
            a.seed,
            faults.len(),
            history.display()
        );
        let cfg = RunConfig {
            imp,
            seed: a.seed,
            faults: faults.clone(),
            history: history.clone(),
            vipd_bin: vipd.clone(),
            tag: format!("chs{}", if imp == Imp::Vipd { "v" } else { "k" }),
        };
        let events = run(&cfg)?;
        let report = check(
            &events,
            Options {
                require_observed: imp == Imp::Vipd,
                require_logs: imp == Imp::Vipd,
            },
        );
        let title = format!(
            "{} seed {}: holders, client ARP entry, faults, failed requests",
            imp.label(),
            a.seed
        );
        std::fs::write(
            history.with_extension("svg"),
            svg::render(&events, &title, 1400.0),
        )?;
        std::fs::write(
            history.with_extension("json"),
            serde_json::to_string_pretty(&report)?,
        )?;
        eprintln!(
            "chaos: {}: {} violations",
            imp.label(),
            report.violations.len()
        );
        for v in &report.violations {
            eprintln!("  {v}");
        }
        reports.push(report);
    }
    let md = markdown(&reports);
    std::fs::write(a.out.join("summary.md"), &md)?;
    print!("{md}");
    Ok(())
}
