//! `vipd validate` as an operator runs it: the real binary, the shipped examples, exit codes and output.

mod cli_common;

use std::path::Path;

use cli_common::*;

#[test]
fn example_config_validates() {
    let out = vipd(&["validate", "--config", "examples/vipd.yaml"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("examples/vipd.yaml: valid: VIP 192.0.2.100 on eth0"),
        "{stdout}"
    );
}

#[test]
fn example_cluster_config_validates() {
    // On any machine: the node and subnet are given, so every check runs.
    let out = with_cluster(
        "validate",
        &["--node", "192.0.2.31", "--subnet", "192.0.2.0/24"],
    );
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with(
            "examples/cluster.yaml: valid cluster config for cluster \"prod\" (node 192.0.2.31"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("subnet checks"),
        "nothing about the subnet is skipped: {stdout}"
    );
}

#[test]
fn example_cluster_config_without_subnet_says_what_it_skipped() {
    let out = with_cluster("validate", &[]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("skipped: the L2 subnet checks"), "{stdout}");
    assert!(stdout.contains("--subnet CIDR"), "{stdout}");
}

#[test]
fn invalid_config_prints_every_error_and_exits_1() {
    let out = vipd(&[
        "validate",
        "--config",
        "tests/golden/config/everything-wrong.yaml",
    ]);
    assert_exit(&out, 1);
    assert!(out.stdout.is_empty());
    let want = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/config/everything-wrong.out"),
    )
    .unwrap();
    let n = want.lines().count();
    assert_eq!(
        text(&out.stderr),
        format!("{want}tests/golden/config/everything-wrong.yaml: {n} error(s)\n")
    );
}

#[test]
fn invalid_cluster_config_exits_1() {
    let out = vipd(&[
        "validate",
        "--cluster-config",
        "tests/golden/cluster/everything-wrong.yaml",
        "--subnet",
        "192.0.2.0/24",
    ]);
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("spec.loadBalancer.mode: \"manual\" is not supported"),
        "{stderr}"
    );
    assert!(stderr.ends_with("error(s)\n"), "{stderr}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = vipd(&["validate", "--config", "does/not/exist.yaml"]);
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("does/not/exist.yaml: cannot read does/not/exist.yaml: "),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(vipd(&["validate"]).status.code(), Some(2));
    assert_eq!(
        vipd(&["validate", "--config", "a", "--print"])
            .status
            .code(),
        Some(2),
        "--print only goes with --cluster-config"
    );
    assert_eq!(
        vipd(&["validate", "--config", "a", "--node", "192.0.2.1"])
            .status
            .code(),
        Some(2),
        "--node only goes with --cluster-config"
    );
    let bad = vipd(&["validate", "--cluster-config", "a", "--subnet", "192.0.2.0"]);
    assert_exit(&bad, 2);
    assert!(text(&bad.stderr).contains("not a CIDR"));
    assert_eq!(
        vipd(&["run"]).status.code(),
        Some(2),
        "run does not exist yet"
    );
}

#[test]
fn version_and_log_flags() {
    let out = vipd(&["--version"]);
    assert_exit(&out, 0);
    assert_eq!(
        text(&out.stdout),
        format!("vipd {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = vipd(&[
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "validate",
        "--config",
        "examples/vipd.yaml",
    ]);
    assert_exit(&out, 0);
    let bad = vipd(&[
        "--log-level",
        "[[[",
        "validate",
        "--config",
        "examples/vipd.yaml",
    ]);
    assert_exit(&bad, 2);
    assert!(
        text(&bad.stderr).contains("--log-level"),
        "{}",
        text(&bad.stderr)
    );
    assert_eq!(
        vipd(&["--log-format", "xml", "validate"]).status.code(),
        Some(2)
    );
}

#[test]
fn subnet_with_host_bits_is_refused_with_the_network_meant() {
    for (given, meant) in [
        ("192.0.2.5/24", "192.0.2.0/24"),
        ("2001:db8::5/64", "2001:db8::/64"),
    ] {
        let out = with_cluster("validate", &["--node", "192.0.2.31", "--subnet", given]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = text(&out.stderr);
        let first = err.lines().next().unwrap_or_default();
        // The flag, the value, the rule and the fix, on one line.
        assert!(
            first.contains("--subnet")
                && first.contains(given)
                && first.contains("host bits are set")
                && first.ends_with(&format!("did you mean {meant}?")),
            "{err}"
        );
    }
}
