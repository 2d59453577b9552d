//! The corpus: each directory under testdata/ holds a keepalived.conf, usually a haproxy.cfg, optionally an
//! `args` file (`--instance NAME`, `--frontend NAME`), and the golden `expected.yaml` (stdout) and
//! `expected.stderr` (the warnings, or the error). `UPDATE_GOLDEN=1` rewrites the golden files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::Config;
use crate::golden;

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/import/testdata");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "the corpus is in {}", root.display());
    dirs
}

fn options(dir: &Path) -> ImportOptions {
    let mut opts = ImportOptions {
        keepalived: dir.join("keepalived.conf"),
        haproxy: Some(dir.join("haproxy.cfg")).filter(|p| p.exists()),
        ..ImportOptions::default()
    };
    let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    let mut words = args.split_whitespace();
    while let Some(flag) = words.next() {
        let value = words.next().map(str::to_string);
        match flag {
            "--instance" => opts.instance = value,
            "--frontend" => opts.frontend = value,
            other => panic!("{}: unknown flag {other} in args", dir.display()),
        }
    }
    opts
}

/// Runs one case; paths are shown relative to the case's directory so the golden files do not depend on
/// where the repository lies.
fn run(dir: &Path) -> (Option<String>, String) {
    let prefix = format!("{}/", dir.display());
    let strip = |s: &str| s.replace(&prefix, "");
    match import(&options(dir)) {
        Ok(out) => {
            let warns: String = out.warnings.iter().map(|w| format!("{w}\n")).collect();
            (Some(strip(&out.yaml)), strip(&warns))
        }
        Err(e) => (None, strip(&format!("error: {e}\n"))),
    }
}

#[test]
fn corpus_matches_its_golden_files() {
    for dir in corpus() {
        let (yaml, stderr) = run(&dir);
        golden::compare(&dir.join("expected.stderr"), &stderr);
        let yaml_file = dir.join("expected.yaml");
        match yaml {
            Some(y) => golden::compare(&yaml_file, &y),
            None => assert!(
                !yaml_file.exists(),
                "{}: expected an import, got {stderr}",
                dir.display()
            ),
        }
        let is_error = dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("err-");
        assert_eq!(
            stderr.starts_with("error: "),
            is_error,
            "{}: {stderr}",
            dir.display()
        );
    }
}

/// `vipd validate --config` accepts every import, and what it reads back is what the import meant: a
/// Keepalived that speaks VRRPv2 becomes `mixed` with its password.
#[test]
fn every_imported_config_is_valid_for_vipd() {
    use vrrp::proto::Version;
    for dir in corpus() {
        let (Some(yaml), _) = run(&dir) else { continue };
        let c = match Config::from_yaml(&yaml) {
            Ok(c) => c,
            Err(e) => panic!("{}: {e}\n{yaml}", dir.display()),
        };
        let mixed = yaml.contains("\n  version: mixed ");
        assert_eq!(c.vrrp.version == Version::Mixed, mixed, "{}", dir.display());
        assert_eq!(
            c.vrrp.auth_pass.is_some(),
            yaml.contains("\n  authPass: "),
            "{}",
            dir.display()
        );
        if !mixed {
            assert_eq!(c.vrrp.version, Version::V3, "{}", dir.display());
        }
    }
    let kubeadm = corpus()
        .into_iter()
        .find(|d| d.ends_with("kubeadm-guide"))
        .unwrap();
    let c = Config::from_yaml(&run(&kubeadm).0.unwrap()).unwrap();
    assert_eq!(
        (c.vrrp.version, c.vrrp.auth_pass.as_deref()),
        (Version::Mixed, Some("42"))
    );
}

/// `file:line` references in a text, as `(file, line)`.
fn mentions(text: &str) -> BTreeSet<(String, u32)> {
    let mut out = BTreeSet::new();
    for word in text.split(|c: char| c.is_whitespace() || "(),".contains(c)) {
        if let Some((file, line)) = word.trim_end_matches(':').rsplit_once(':') {
            if let Ok(n) = line.parse::<u32>() {
                if file.ends_with(".conf") || file.ends_with(".cfg") {
                    out.insert((file.to_string(), n));
                }
            }
        }
    }
    out
}

/// Every key of every input is in the output, in a warning, or in the header (behaviour vipd has
/// anyway): nothing is dropped silently. A block counts as accounted for when its line is named (all its
/// contents then are) or when each of its children is.
#[test]
fn no_setting_is_dropped_silently() {
    for dir in corpus() {
        let (Some(yaml), stderr) = run(&dir) else {
            continue;
        };
        let named = mentions(&format!("{yaml}\n{stderr}"));
        let prefix = format!("{}/", dir.display());
        let rel = |l: &Loc| l.file.replace(&prefix, "");
        let opts = options(&dir);
        let mut missing = Vec::new();
        let ka = keepalived::parse_file(&opts.keepalived).unwrap();
        fn walk(
            s: &keepalived::Stmt,
            named: &BTreeSet<(String, u32)>,
            rel: &dyn Fn(&Loc) -> String,
            missing: &mut Vec<String>,
        ) {
            if named.contains(&(rel(&s.loc), s.loc.line)) {
                return;
            }
            match &s.block {
                Some(children) if !children.is_empty() => {
                    for c in children {
                        walk(c, named, rel, missing);
                    }
                }
                _ => missing.push(format!("{}:{} {}", rel(&s.loc), s.loc.line, s.key)),
            }
        }
        for s in &ka {
            walk(s, &named, &rel, &mut missing);
        }
        if let Some(h) = &opts.haproxy {
            let cfg =
                haproxy::parse(&display_name(h), &std::fs::read_to_string(h).unwrap()).unwrap();
            for sec in &cfg.sections {
                if named.contains(&(rel(&sec.loc), sec.loc.line)) {
                    continue;
                }
                for l in &sec.lines {
                    if !named.contains(&(rel(&l.loc), l.loc.line)) {
                        missing.push(format!(
                            "{}:{} {}",
                            rel(&l.loc),
                            l.loc.line,
                            l.words.join(" ")
                        ));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{}: not named anywhere: {missing:#?}",
            dir.display()
        );
    }
}
