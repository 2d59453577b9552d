//! `--cluster-config` at the command line, on any machine: `validate --print` output is a config
//! `validate --config` accepts, and `manifest --all` writes one Pod per load-balancer node that runs
//! `vipd run --cluster-config` with both files mounted read-only.

mod cli_common;

use std::path::Path;

use cli_common::*;
use k8s_openapi::api::core::v1::Pod;

#[test]
fn printed_config_round_trips_through_validate_config() {
    let d = Dir::new("print");
    let small = d.file(
        "vipd.yaml",
        "interface: eth0\nvrrp: {vrid: 65, advertInterval: 250ms}\nhealth: {caFile: /etc/pki/ca.pem}\n",
    );
    let out = with_cluster(
        "validate",
        &[
            "--config",
            &small,
            "--node",
            "192.0.2.32",
            "--subnet",
            "192.0.2.0/24",
            "--print",
        ],
    );
    assert_exit(&out, 0);
    let printed = text(&out.stdout);
    // The report goes to stderr, so stdout is the config alone.
    assert!(text(&out.stderr).contains("valid cluster config for cluster \"prod\""));
    assert!(printed.starts_with("interface: \"eth0\"\n"), "{printed}");
    let file = d.file("printed.yaml", &printed);
    let back = vipd(&["validate", "--config", &file]);
    assert_eq!(
        back.status.code(),
        Some(0),
        "{}\n{printed}",
        text(&back.stderr)
    );
    let summary = text(&back.stdout);
    assert!(
        summary.contains(
            "VIP 192.0.2.100 on eth0, proxy 192.0.2.100:443 -> 3 backend(s), VRID 65 priority 190 every 250ms, \
             unicast to 1 peer(s)"
        ),
        "{summary}"
    );
    let c = vipd::config::Config::from_yaml(&printed).unwrap();
    assert_eq!(c.vrrp.unicast_source, Some("192.0.2.42".parse().unwrap()));
    assert_eq!(c.health.ca_file, Path::new("/etc/pki/ca.pem"));
}

#[test]
fn manifest_all_writes_one_pod_per_load_balancer_node() {
    let d = Dir::new("manifest");
    let small = d.file(
        "vipd.yaml",
        "health: {caFile: /etc/pki/ca.pem}\nproxy: {drainTimeout: 10s}\n",
    );
    let out_dir = d.0.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = with_cluster(
        "manifest",
        &[
            "--config",
            &small,
            "--all",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_exit(&out, 0);
    let cluster = std::path::absolute("examples/cluster.yaml").unwrap();
    for node in ["192.0.2.31", "192.0.2.32"] {
        let path = out_dir.join(format!("vipd-{node}.yaml"));
        assert!(text(&out.stdout).contains(&path.display().to_string()));
        let pod: Pod = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let spec = pod.spec.unwrap();
        let c = &spec.containers[0];
        assert_eq!(
            c.args.as_deref().unwrap(),
            [
                "run",
                "--cluster-config",
                "/etc/vipd/cluster.yaml",
                "--config",
                "/etc/vipd/vipd.yaml",
                "--node",
                node
            ]
        );
        assert_eq!(spec.termination_grace_period_seconds, Some(25));
        let mounts: Vec<(&str, bool)> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.mount_path.as_str(), m.read_only == Some(true)))
            .collect();
        assert_eq!(
            mounts,
            [
                ("/etc/vipd/cluster.yaml", true),
                ("/etc/vipd/vipd.yaml", true),
                ("/etc/pki/ca.pem", true)
            ]
        );
        let hosts: Vec<String> = spec
            .volumes
            .unwrap()
            .iter()
            .map(|v| v.host_path.as_ref().unwrap().path.clone())
            .collect();
        assert_eq!(hosts[0], cluster.display().to_string());
        assert_eq!(hosts[1], small);
    }
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 2);
}

#[test]
fn manifest_for_one_node_and_its_refusals() {
    let out = with_cluster("manifest", &["--node", "192.0.2.32"]);
    assert_exit(&out, 0);
    let pod: Pod = serde_saphyr::from_str(&text(&out.stdout)).unwrap();
    let c = &pod.spec.unwrap().containers[0];
    assert_eq!(
        c.args.as_deref().unwrap(),
        [
            "run",
            "--cluster-config",
            "/etc/vipd/cluster.yaml",
            "--node",
            "192.0.2.32"
        ]
    );
    let not_lb = with_cluster("manifest", &["--node", "192.0.2.11"]);
    assert_exit(&not_lb, 1);
    assert!(text(&not_lb.stderr).contains("--node: 192.0.2.11 is not a load-balancer node"));
    let neither = with_cluster("manifest", &[]);
    assert_exit(&neither, 2);
    let all_without_out = with_cluster("manifest", &["--all"]);
    assert_exit(&all_without_out, 2);
}

/// From a workstation, `--config` with `--cluster-config` checks both files, skipping only the interface;
/// `--print` needs the interface, since what it prints must be a complete config.
#[test]
fn validate_with_both_files_from_anywhere() {
    let d = Dir::new("anywhere");
    let small = d.file("vipd.yaml", "vrrp: {trackWeight: -5}\n");
    let base = [
        "validate",
        "--cluster-config",
        "examples/cluster.yaml",
        "--config",
        &small,
        "--node",
        "192.0.2.31",
        "--subnet",
        "192.0.2.0/24",
    ];
    let out = vipd(&base);
    assert_exit(&out, 0);
    let report = text(&out.stdout);
    assert!(
        report.contains("skipped: the interface for node 192.0.2.31"),
        "{report}"
    );
    assert!(
        report.contains(
            "warning: vrrp.trackWeight: -5 cannot move the VIP away from 192.0.2.31 (priority 200, 195 without \
             a healthy backend) to 192.0.2.42 (190)"
        ),
        "{report}"
    );
    let printed = vipd(&[&base[..], &["--print"]].concat());
    assert_exit(&printed, 1);
    assert!(
        text(&printed.stderr)
            .starts_with("interface: node 192.0.2.31's address 192.0.2.31 is on no interface"),
        "{}",
        text(&printed.stderr)
    );
    let bad = d.file("bad.yaml", "controlPlaneLBPort: 8443\n");
    let out = vipd(&[&base[..4], &[bad.as_str()], &base[5..]].concat());
    assert_exit(&out, 1);
    assert!(
        text(&out.stderr).starts_with(&format!(
            "controlPlaneLBPort: 8443 (in {bad}) disagrees with spec.loadBalancer.ports.controlPlaneLBPort: 443 \
             (in examples/cluster.yaml)"
        )),
        "{}",
        text(&out.stderr)
    );
}
