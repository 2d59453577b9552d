//! `vipd import` as an operator runs it: the real binary on the corpus's files, the config on stdout,
//! one warning per line on stderr, exit 1 with only the reason when the input is ambiguous; and the output
//! accepted by `vipd validate --config`.

mod cli_common;

use std::process::Output;

use cli_common::*;

const CORPUS: &str = "src/import/testdata";

fn import(case: &str, extra: &[&str]) -> Output {
    let k = format!("{CORPUS}/{case}/keepalived.conf");
    let h = format!("{CORPUS}/{case}/haproxy.cfg");
    let mut args = vec!["import", "--keepalived", &k, "--haproxy", &h];
    args.extend_from_slice(extra);
    vipd(&args)
}

#[test]
fn kubeadm_guide_imports_with_warnings_on_stderr() {
    let out = import("kubeadm-guide", &[]);
    assert_exit(&out, 0);
    let yaml = text(&out.stdout);
    assert!(yaml.contains("\n  version: mixed "), "{yaml}");
    assert!(yaml.contains("\n  authPass: \"42\" "), "{yaml}");
    let stderr = text(&out.stderr);
    let track = format!(
        "{CORPUS}/kubeadm-guide/keepalived.conf:27: track_script check_apiserver: replaced by vipd's own health checks of the backends"
    );
    assert!(stderr.lines().any(|l| l == track), "{stderr}");
    let verify = format!(
        "{CORPUS}/kubeadm-guide/haproxy.cfg:52: check-ssl verify none: vipd verifies the backends against health.caFile"
    );
    assert!(stderr.lines().any(|l| l == verify), "{stderr}");
    // Nothing but warnings on stderr: each names its file and line.
    for line in stderr.lines() {
        assert!(
            line.starts_with(&format!("{CORPUS}/kubeadm-guide/")),
            "{line}"
        );
    }
}

/// Imports a corpus case and runs `vipd validate --config` on the output: its one-line summary.
fn import_then_validate(case: &str) -> String {
    let out = import(case, &[]);
    assert_exit(&out, 0);
    let dir = std::env::temp_dir().join(format!("vipd-import-{case}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vipd.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    let v = vipd(&["validate", "--config", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_exit(&v, 0);
    text(&v.stdout)
}

#[test]
fn imported_configs_pass_validate() {
    let v3 = import_then_validate("kubespray-ha-mode");
    assert!(
        v3.contains("valid: VIP 192.0.2.100 on bond0, proxy 192.0.2.100:8383 -> 2 backend(s), VRID 60 priority 152 every 500ms, unicast to 2 peer(s)"),
        "{v3}"
    );
    let mixed = import_then_validate("kubeadm-guide");
    assert!(
        mixed.contains("valid: VIP 192.0.2.100 on eth0, proxy 0.0.0.0:8443 -> 3 backend(s), VRID 51 priority 101 every 1s"),
        "{mixed}"
    );
}

#[test]
fn ambiguous_input_exits_1_with_the_reason_only() {
    let out = import("err-several-frontends", &[]);
    assert_exit(&out, 1);
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "vipd import: the haproxy config has 2 frontend/listen sections that forward to servers: frontend apiserver"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .trim_end()
            .ends_with("choose one with --frontend NAME"),
        "{stderr}"
    );
    // Naming the frontend resolves it.
    let out = import("err-several-frontends", &["--frontend", "apiserver"]);
    assert_exit(&out, 0);
}

#[test]
fn without_haproxy_there_are_no_backends() {
    let k = format!("{CORPUS}/kubeadm-guide/keepalived.conf");
    let out = vipd(&["import", "--keepalived", &k]);
    assert_exit(&out, 1);
    assert!(
        text(&out.stderr).contains("give --haproxy FILE"),
        "{}",
        text(&out.stderr)
    );
}
