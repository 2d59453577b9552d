//! The monitoring kit in `monitoring/` (issue 18): the alert rules pass `promtool check rules` and their unit
//! tests, every alert carries the annotations and a runbook section, the scrape examples select what
//! `vipd manifest` declares, every Grafana query is valid PromQL and the state panels compute what they draw.
//! The last test (root: network namespaces) scrapes a real vipd through `metrics.listen` from another
//! namespace, shows that nothing is reachable from there by default, and evaluates every rule and dashboard
//! query against the series the daemons really export.
//!
//! Needs promtool (Debian package `prometheus`, installed by scripts/test.sh); the tests say so when it is
//! missing.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use vipd_lab::apiserver::fake_apiserver_bin;
use vipd_lab::netns::{wait_for, Lab, TempDir};
use vipd_lab::vipd::{http_get, in_netns, metric_value, VipdNode, VipdSpec};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kit(name: &str) -> PathBuf {
    repo().join("monitoring").join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// promtool from the PATH, or a clear failure naming the package.
fn promtool() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "promtool is not on the PATH: the monitoring tests need it (Debian package `prometheus`; \
                 scripts/test.sh installs it, or run `apt-get install prometheus`)"
            )
        })
}

/// Runs promtool: (success, stdout and stderr).
fn promtool_run<S: AsRef<OsStr>>(args: &[S]) -> (bool, String) {
    let out = Command::new(promtool())
        .args(args)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[track_caller]
fn promtool_ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    let (ok, text) = promtool_run(args);
    assert!(ok, "promtool failed:\n{text}");
    text
}

/// Every alerting rule of the rule file, as parsed YAML.
fn alerts() -> Vec<Value> {
    let rules = yaml(&kit("vipd-alerts.yaml"));
    let alerts: Vec<Value> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .filter(|r| r.get("alert").is_some())
        .collect();
    assert!(!alerts.is_empty());
    alerts
}

fn alert_names() -> BTreeSet<String> {
    alerts()
        .iter()
        .map(|a| a["alert"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check() {
    let text = promtool_ok(&[
        OsStr::new("check"),
        OsStr::new("rules"),
        kit("vipd-alerts.yaml").as_os_str(),
    ]);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// `promtool test rules`, and the test file gives every alert a case where it fires and one where it must not.
#[test]
fn alert_rules_pass_their_unit_tests() {
    promtool_ok(&[
        OsStr::new("test"),
        OsStr::new("rules"),
        kit("vipd-alerts.test.yaml").as_os_str(),
    ]);
    let tests = yaml(&kit("vipd-alerts.test.yaml"));
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for t in tests["tests"].as_array().unwrap() {
        for case in t["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap().to_string();
            match case["exp_alerts"].as_array() {
                Some(a) if !a.is_empty() => fires.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    let names = alert_names();
    let missing_fire: Vec<_> = names.difference(&fires).collect();
    let missing_silent: Vec<_> = names.difference(&silent).collect();
    assert!(
        missing_fire.is_empty(),
        "alerts never tested firing: {missing_fire:?}"
    );
    assert!(
        missing_silent.is_empty(),
        "alerts never tested silent: {missing_silent:?}"
    );
}

/// GitHub's anchors of the `###` headings of docs/monitoring.md.
fn runbook_anchors() -> BTreeSet<String> {
    read(&repo().join("docs/monitoring.md"))
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_has_severity_summary_description_and_a_runbook_section() {
    let anchors = runbook_anchors();
    for a in alerts() {
        let name = a["alert"].as_str().unwrap();
        let severity = a["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook_url"] {
            let v = a["annotations"][key].as_str().unwrap_or_default();
            assert!(!v.trim().is_empty(), "{name}: no {key}");
        }
        let url = a["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url
            .strip_prefix("docs/monitoring.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} is not docs/monitoring.md#..."));
        assert_eq!(
            anchor,
            name.to_lowercase(),
            "{name}: runbook_url names another section"
        );
        assert!(
            anchors.contains(anchor),
            "{name}: docs/monitoring.md has no section `### {name}` (anchors: {anchors:?})"
        );
    }
    // And no runbook section for an alert that does not exist.
    let names: BTreeSet<String> = alert_names().iter().map(|n| n.to_lowercase()).collect();
    let orphans: Vec<_> = anchors.difference(&names).collect();
    assert!(
        orphans.is_empty(),
        "runbook sections without an alert: {orphans:?}"
    );
}

#[test]
fn prometheusrule_carries_the_same_rules() {
    let rules = yaml(&kit("vipd-alerts.yaml"));
    let pr = yaml(&kit("prometheusrule.yaml"));
    assert_eq!(pr["kind"], "PrometheusRule");
    assert_eq!(pr["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        pr["spec"]["groups"], rules["groups"],
        "monitoring/prometheusrule.yaml is stale: make it again with the command in docs/monitoring.md"
    );
}

#[test]
fn prometheus_config_passes_promtool_check_config() {
    let text = promtool_ok(&[
        OsStr::new("check"),
        OsStr::new("config"),
        kit("prometheus.yaml").as_os_str(),
    ]);
    assert!(text.contains("1 rule files found"), "{text}");
    let cfg = yaml(&kit("prometheus.yaml"));
    assert_eq!(cfg["scrape_configs"][0]["job_name"], "vipd");
}

/// A config with `metrics.listen` set, and `vipd manifest` for it.
fn manifest_with_metrics(dir: &TempDir) -> Value {
    let path = dir.join("vipd.yaml");
    std::fs::write(
        &path,
        "interface: eth0\ncontrolPlaneVIP: 192.0.2.100\nbackends: [192.0.2.20:6443]\nvrrp: {vrid: 51}\n\
         health: {type: tcp}\nmetrics: {listen: \"192.0.2.11:9441\"}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(["manifest", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

/// The PodMonitor and the Kubernetes SD job select the pod `vipd manifest` prints, on the port it declares,
/// and name the job as the rules expect.
#[test]
fn scrape_examples_select_the_manifest_pod_and_port() {
    let dir = TempDir::new("mon-manifest").unwrap();
    let pod = manifest_with_metrics(&dir);
    let ns = pod["metadata"]["namespace"].as_str().unwrap();
    let component = pod["metadata"]["labels"]["component"].as_str().unwrap();
    let ports = &pod["spec"]["containers"][0]["ports"];
    assert_eq!(ports[0]["name"], "metrics", "{pod}");
    assert_eq!(ports[0]["containerPort"], 9441);

    let pm = yaml(&kit("podmonitor.yaml"));
    assert_eq!(pm["kind"], "PodMonitor");
    assert_eq!(pm["spec"]["namespaceSelector"]["matchNames"], json!([ns]));
    assert_eq!(
        pm["spec"]["selector"]["matchLabels"],
        json!({"component": component})
    );
    let ep = &pm["spec"]["podMetricsEndpoints"][0];
    assert_eq!(ep["port"], "metrics");
    assert_eq!(ep["path"], "/metrics");
    let relabel = ep["relabelings"].as_array().unwrap();
    assert!(
        relabel
            .iter()
            .any(|r| r["targetLabel"] == "job" && r["replacement"] == "vipd"),
        "the PodMonitor must set job=vipd"
    );

    let sd = yaml(&kit("scrape-kubernetes-sd.yaml"));
    let job = &sd[0];
    assert_eq!(job["job_name"], "vipd");
    assert_eq!(
        job["kubernetes_sd_configs"][0]["namespaces"]["names"],
        json!([ns])
    );
    let keep = job["relabel_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "keep")
        .expect("a keep rule");
    assert_eq!(
        keep["source_labels"],
        json!([
            "__meta_kubernetes_pod_label_component",
            "__meta_kubernetes_pod_container_port_name"
        ])
    );
    assert_eq!(keep["regex"], format!("{component};metrics"));

    // The job the examples set is the one VipdTargetDown watches.
    let target_down = alerts()
        .into_iter()
        .find(|a| a["alert"] == "VipdTargetDown")
        .unwrap();
    assert!(target_down["expr"]
        .as_str()
        .unwrap()
        .contains("up{job=\"vipd\"}"));
}

#[test]
fn validate_refuses_a_metrics_listener_on_the_vip() {
    let dir = TempDir::new("mon-validate").unwrap();
    let path = dir.join("vipd.yaml");
    std::fs::write(
        &path,
        "interface: eth0\ncontrolPlaneVIP: 192.0.2.100\nbackends: [192.0.2.20:6443]\nvrrp: {vrid: 51}\n\
         metrics: {listen: \"192.0.2.100:9441\"}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics.listen: 192.0.2.100:9441 is on the VIP"),
        "{err}"
    );
}

// ---- the dashboard ----

fn dashboard() -> Value {
    serde_json::from_str(&read(&kit("vipd-dashboard.json"))).expect("the dashboard is JSON")
}

/// Panels, rows' nested panels included.
fn panels(d: &Value) -> Vec<Value> {
    fn walk(list: &Value, out: &mut Vec<Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p.clone());
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// Every PromQL query of the dashboard with where it is: panel targets, annotation queries, and the
/// selector inside each `label_values(selector, label)` variable query.
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("target without expr: {t}"));
            out.push((
                format!("panel {:?} {}", p["title"], t["refId"]),
                expr.to_string(),
            ));
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            out.push((format!("annotation {:?}", a["name"]), expr.to_string()));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_default();
        if let Some(args) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            if let Some((selector, _label)) = args.rsplit_once(',') {
                out.push((
                    format!("variable {:?}", v["name"]),
                    selector.trim().to_string(),
                ));
            }
        }
    }
    out
}

/// The dashboard's variables, for substitution.
fn dashboard_variables(d: &Value) -> BTreeSet<String> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

/// A Grafana query as Prometheus receives it: `$__rate_interval` and the other interval macros become `5m`,
/// a dashboard variable (all of them are multi-value regexes) becomes `.*`. An unknown `$name` is an error.
fn as_promql(expr: &str, vars: &BTreeSet<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(b) => {
                let end = b
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {expr:?}"))?;
                (&b[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        if name.starts_with("__") {
            out.push_str("5m");
        } else if vars.contains(name) {
            out.push_str(".*");
        } else {
            return Err(format!("unknown variable ${name} in {expr:?}"));
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A rule file with one recording rule per query, for `promtool check rules` (JSON is YAML).
fn recording_rules(queries: &[(String, String)]) -> String {
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, q))| json!({"record": format!("dashboard:query_{i}"), "expr": q}))
        .collect();
    json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string()
}

fn promql_queries() -> Vec<(String, String)> {
    let d = dashboard();
    let vars = dashboard_variables(&d);
    dashboard_queries(&d)
        .into_iter()
        .map(|(at, q)| (at, as_promql(&q, &vars).unwrap()))
        .collect()
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let queries = promql_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let dir = TempDir::new("mon-dash").unwrap();
    let file = dir.join("dashboard-rules.yaml");
    std::fs::write(&file, recording_rules(&queries)).unwrap();
    let (ok, text) = promtool_run(&[OsStr::new("check"), OsStr::new("rules"), file.as_os_str()]);
    assert!(
        ok,
        "a dashboard query is not valid PromQL:\n{text}\nqueries:\n{queries:#?}"
    );
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{text}"
    );

    // The check can fail: one broken query among them is reported.
    let mut broken = queries.clone();
    broken.push(("broken".into(), "sum by (instance (vipd_vip_held)".into()));
    std::fs::write(&file, recording_rules(&broken)).unwrap();
    let (ok, text) = promtool_run(&[OsStr::new("check"), OsStr::new("rules"), file.as_os_str()]);
    assert!(!ok, "promtool accepted a broken query:\n{text}");
}

#[test]
fn dashboard_variables_are_substituted_and_unknown_ones_refused() {
    let vars: BTreeSet<String> = ["job".to_string(), "vip".to_string()].into();
    assert_eq!(
        as_promql(
            "rate(x{job=~\"$job\", vip=~\"${vip}\"}[$__rate_interval])",
            &vars
        )
        .unwrap(),
        "rate(x{job=~\".*\", vip=~\".*\"}[5m])"
    );
    assert!(as_promql("x{a=~\"$nope\"}", &vars).is_err());
}

/// What the issue asks the dashboard to show, by the metric each view needs, and the panels' plumbing.
#[test]
fn dashboard_shows_what_the_issue_asks() {
    let d = dashboard();
    let all: String = dashboard_queries(&d)
        .into_iter()
        .map(|(_, q)| q + "\n")
        .collect();
    for (view, needle) in [
        (
            "which node holds the VIP",
            "max by (instance) (vipd_vip_held",
        ),
        ("transitions", "vipd_vrrp_transitions_total"),
        ("effective priority", "vipd_vrrp_effective_priority"),
        ("backend health", "vipd_backend_healthy"),
        (
            "connections per backend",
            "sum by (backend) (vipd_backend_active_connections",
        ),
        (
            "bytes per backend",
            "sum by (backend, direction) (rate(vipd_backend_bytes_total",
        ),
        (
            "drops by reason",
            "sum by (instance, reason) (rate(vipd_vrrp_packets_dropped_total",
        ),
        ("VRRP state", "vipd_vrrp_state"),
        (
            "refused at maxConnections",
            "vipd_proxy_refused_connections_total",
        ),
    ] {
        assert!(all.contains(needle), "no query for {view} ({needle})");
    }
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate panel id {}",
            p["id"]
        );
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(
            p["gridPos"]["w"].as_u64().is_some(),
            "{:?} has no gridPos",
            p["title"]
        );
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{:?}", p["title"]);
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{:?}", p["title"]);
            }
        }
    }
}

/// The query of the panel titled `title` (its first target), as Prometheus receives it.
fn panel_query(title: &str) -> String {
    let d = dashboard();
    let p = panels(&d)
        .into_iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?}"));
    as_promql(
        p["targets"][0]["expr"].as_str().unwrap(),
        &dashboard_variables(&d),
    )
    .unwrap()
}

/// The two state timelines compute the values their value mappings name (master 3, backup 2, fault 1,
/// initialize 0; holder 1), on synthetic series evaluated by promtool.
#[test]
fn dashboard_state_queries_evaluate_as_drawn() {
    let state = panel_query("VRRP state per node");
    let holder = panel_query("Who holds the VIP");
    let d = dashboard();
    let p = panels(&d)
        .into_iter()
        .find(|p| p["title"] == "VRRP state per node")
        .unwrap();
    let mapping = &p["fieldConfig"]["defaults"]["mappings"][0]["options"];
    for (v, text) in [
        ("3", "master"),
        ("2", "backup"),
        ("1", "fault"),
        ("0", "initialize"),
    ] {
        assert_eq!(mapping[v]["text"], text);
    }
    let mut series = Vec::new();
    for (node, current) in [
        ("lb1", "master"),
        ("lb2", "backup"),
        ("lb3", "fault"),
        ("lb4", "initialize"),
    ] {
        for s in ["initialize", "backup", "master", "fault"] {
            series.push(json!({
                "series": format!("vipd_vrrp_state{{job=\"vipd\",instance=\"{node}\",vrid=\"51\",state=\"{s}\"}}"),
                "values": if s == current { "1x10" } else { "0x10" },
            }));
        }
        series.push(json!({
            "series": format!("vipd_vip_held{{job=\"vipd\",instance=\"{node}\",vip=\"192.0.2.100\"}}"),
            "values": if node == "lb1" { "1x10" } else { "0x10" },
        }));
    }
    let samples = |pairs: &[(&str, u32)]| -> Value {
        pairs
            .iter()
            .map(|(n, v)| json!({"labels": format!("{{instance=\"{n}\"}}"), "value": v}))
            .collect()
    };
    let test = json!({
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                {"expr": state, "eval_time": "5m",
                 "exp_samples": samples(&[("lb1", 3), ("lb2", 2), ("lb3", 1), ("lb4", 0)])},
                {"expr": holder, "eval_time": "5m",
                 "exp_samples": samples(&[("lb1", 1), ("lb2", 0), ("lb3", 0), ("lb4", 0)])},
            ],
        }],
    });
    let dir = TempDir::new("mon-dash-eval").unwrap();
    let file = dir.join("dashboard.test.yaml");
    std::fs::write(&file, test.to_string()).unwrap();
    promtool_ok(&[OsStr::new("test"), OsStr::new("rules"), file.as_os_str()]);
}

// ---- a real vipd, scraped from another namespace ----

/// Every `vipd_*` selector (name and matchers, without range or offset) in a PromQL expression.
fn vipd_selectors(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(off) = expr[i..].find("vipd_") {
        let start = i + off;
        let word_start =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if word_start {
            if b.get(end) == Some(&b'{') {
                end += expr[end..].find('}').map_or(0, |j| j + 1);
            }
            out.push(expr[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    out
}

#[test]
fn selectors_are_found_in_expressions() {
    assert_eq!(
        vipd_selectors(
            "sum by (vip) (vipd_vip_held) < 1 or max_over_time(vipd_vip_held[1h]) x_vipd_no"
        ),
        ["vipd_vip_held", "vipd_vip_held"]
    );
    assert_eq!(
        vipd_selectors(
            "increase(vipd_vrrp_packets_dropped_total{reason=~\"version|auth.*\"}[5m]) > 0"
        ),
        ["vipd_vrrp_packets_dropped_total{reason=~\"version|auth.*\"}"]
    );
}

/// Sample lines of an OpenMetrics text as promtool input series with `instance` and `job` added, each held
/// constant for 10 minutes.
fn input_series(scrape: &str, instance: &str) -> Vec<Value> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample {l:?}"));
            let extra = format!("instance=\"{instance}\",job=\"vipd\"");
            let series = match series.split_once('{') {
                Some((name, labels)) => format!("{name}{{{extra},{labels}"),
                None => format!("{series}{{{extra}}}"),
            };
            json!({"series": series, "values": format!("{value}+0x10")})
        })
        .collect()
}

/// Metric names of the sample lines of an OpenMetrics text.
fn sample_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

const VIP: &str = "192.0.2.100";

#[test]
fn metrics_listener_is_reachable_from_another_namespace_only_when_configured() {
    let mut lab = Lab::new("mon").unwrap();
    for n in ["lb1", "lb2", "be", "prom"] {
        lab.add_node(n).unwrap();
    }
    let dir = TempDir::new("mon-ns").unwrap();
    let vip: IpAddr = VIP.parse().unwrap();
    let be = SocketAddr::new(IpAddr::V4(lab.node("be").v4), 6443);
    let api = lab
        .node("be")
        .ns
        .spawn_args(
            fake_apiserver_bin().to_str().unwrap(),
            ["--listen", &be.to_string(), "--name", "be"],
        )
        .unwrap();
    assert!(api
        .wait_line(Duration::from_secs(20), |l| l.trim() == "serving")
        .is_some());

    // lb1: the default config (admin on loopback, no metrics listener). lb2: metrics.listen on its address.
    let lb2_ip = IpAddr::V4(lab.node("lb2").v4);
    let metrics_at = SocketAddr::new(lb2_ip, 9441);
    let lb1 = VipdNode::start(
        Path::new(env!("CARGO_BIN_EXE_vipd")),
        &lab.node("lb1").ns,
        &VipdSpec::new(vip, vec![be], 150),
        dir.path(),
    )
    .unwrap();
    let lb2 = VipdNode::start(
        Path::new(env!("CARGO_BIN_EXE_vipd")),
        &lab.node("lb2").ns,
        &VipdSpec::new(vip, vec![be], 100)
            .with_extra("metrics", &format!("listen: \"{metrics_at}\"")),
        dir.path(),
    )
    .unwrap();
    let long = Duration::from_secs(20);
    for (node, state) in [(&lb1, "master"), (&lb2, "backup")] {
        assert!(
            node.wait_state(state, long).is_some(),
            "never {state}: {:?}\n{}",
            node.status().ok(),
            node.proc.lines().join("\n")
        );
        assert!(
            wait_for(long, || (node.metric("vipd_healthy_backends")? == 1.0)
                .then_some(()))
            .is_some(),
            "backend never healthy"
        );
    }

    // From the Prometheus namespace: lb2's metrics listener answers /metrics, and only that.
    let prom = lab.node("prom").ns.name().to_string();
    let get = |addr: SocketAddr, path: &'static str| {
        in_netns(&prom, move || http_get(addr, path, Duration::from_secs(2))).unwrap()
    };
    let (code, lb2_scrape) = get(metrics_at, "/metrics").expect("metrics listener reachable");
    assert_eq!(code, 200);
    assert!(
        lb2_scrape.contains("# TYPE vipd_vip_held gauge\n"),
        "{lb2_scrape}"
    );
    assert_eq!(
        metric_value(&lb2_scrape, "vipd_vip_held{vip=\"192.0.2.100\"}"),
        Some(0.0)
    );
    assert_eq!(get(metrics_at, "/status").unwrap().0, 404);
    assert_eq!(get(metrics_at, "/healthz").unwrap().0, 404);
    // Neither admin endpoint, nor anything on lb1 (default config), is reachable from there...
    let lb1_ip = IpAddr::V4(lab.node("lb1").v4);
    for addr in [
        SocketAddr::new(lb1_ip, 9440),
        SocketAddr::new(lb1_ip, 9441),
        SocketAddr::new(lb2_ip, 9440),
    ] {
        let r = get(addr, "/metrics");
        assert!(r.is_err(), "{addr} answered from another namespace: {r:?}");
    }
    // ...while lb1 serves /metrics on its own loopback.
    let (code, _) = lb1.admin_get("/metrics").unwrap();
    assert_eq!(code, 200);

    // One request through the VIP, so the per-backend proxy series exist on the master.
    let (code, _) = get(SocketAddr::new(vip, 443), "/version").expect("request through the VIP");
    assert_eq!(code, 200);
    let lb1_scrape = wait_for(long, || {
        let (_, m) = lb1.admin_get("/metrics").ok()?;
        metric_value(&m, "vipd_backend_bytes_total")
            .is_some_and(|b| b > 0.0)
            .then_some(m)
    })
    .expect("per-backend bytes on lb1");
    let (_, lb2_scrape) = get(metrics_at, "/metrics").unwrap();

    check_kit_against_scrapes(&[("lb1", &lb1_scrape), ("lb2", &lb2_scrape)]);

    // A reload that moves the listener is refused, and counted where VipdConfigReloadRefused looks: on the
    // listener, which stays where it was.
    let moved = VipdSpec::new(vip, vec![be], 100)
        .with_extra("metrics", &format!("listen: \"{lb2_ip}:9442\""));
    lb2.write_config(&moved).unwrap();
    lb2.signal(nix::sys::signal::Signal::SIGHUP).unwrap();
    let refused = wait_for(long, || {
        let (_, m) = get(metrics_at, "/metrics").ok()?;
        (metric_value(&m, "vipd_config_reload_failures_total")? == 1.0).then_some(())
    });
    assert!(
        refused.is_some(),
        "reload not refused:\n{}",
        lb2.proc.lines().join("\n")
    );
    assert!(get(SocketAddr::new(lb2_ip, 9442), "/metrics").is_err());

    // A metrics port already taken refuses the start, naming the listener, before VRRP joins.
    let clash = VipdSpec {
        port: 8443,
        admin_listen: "127.0.0.1:9450".parse().unwrap(),
        ..VipdSpec::new(vip, vec![be], 90)
    }
    .with_extra("metrics", &format!("listen: \"{metrics_at}\""));
    let clash_path = dir.join("clash.yaml");
    std::fs::write(&clash_path, clash.to_yaml()).unwrap();
    let mut third = VipdNode::start_with_config(
        Path::new(env!("CARGO_BIN_EXE_vipd")),
        &lab.node("lb2").ns,
        &clash_path,
        clash.admin_listen,
    )
    .unwrap();
    let status = third.proc.wait_exit(long);
    let log = third.proc.lines().join("\n");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(
        log.contains(&format!("metrics: cannot listen on {metrics_at}")),
        "{log}"
    );
    assert!(!log.contains("VRRP state change"), "{log}");
    assert_eq!(lb2.state().as_deref(), Some("backup"));
}

/// Every metric the rules and the dashboard name is exported; every selector and dashboard query returns
/// series from the real scrapes, and no alert fires on this healthy pair of nodes.
fn check_kit_against_scrapes(scrapes: &[(&str, &str)]) {
    let names: BTreeSet<String> = scrapes.iter().flat_map(|(_, s)| sample_names(s)).collect();
    let rule_exprs: Vec<(String, String)> = alerts()
        .iter()
        .map(|a| {
            (
                a["alert"].as_str().unwrap().to_string(),
                a["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dash = promql_queries();
    let mut selectors = BTreeSet::new();
    for (at, q) in rule_exprs.iter().chain(&dash) {
        for s in vipd_selectors(q) {
            let name = s.split('{').next().unwrap().to_string();
            assert!(
                names.contains(&name),
                "{at}: {name} is not exported; exported: {names:?}"
            );
            selectors.insert(s);
        }
    }
    let non_empty = |expr: &str| {
        json!({"expr": format!("count({expr}) > bool 0"), "eval_time": "10m",
                                        "exp_samples": [{"labels": "{}", "value": 1}]})
    };
    let mut expr_tests: Vec<Value> = selectors.iter().map(|s| non_empty(s)).collect();
    // Panels and variables draw something on a healthy cluster; annotations mark events, so only their
    // selectors are held to it.
    expr_tests.extend(
        dash.iter()
            .filter(|(at, _)| !at.starts_with("annotation"))
            .map(|(_, q)| non_empty(q)),
    );
    let alert_tests: Vec<Value> = alert_names()
        .iter()
        .map(|a| json!({"eval_time": "10m", "alertname": a, "exp_alerts": []}))
        .collect();
    let series: Vec<Value> = scrapes
        .iter()
        .flat_map(|(i, s)| input_series(s, i))
        .collect();
    let test = json!({
        "rule_files": [kit("vipd-alerts.yaml")],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series,
                   "alert_rule_test": alert_tests, "promql_expr_test": expr_tests}],
    });
    let dir = TempDir::new("mon-live").unwrap();
    let file = dir.join("live.test.yaml");
    std::fs::write(&file, test.to_string()).unwrap();
    let (ok, text) = promtool_run(&[OsStr::new("test"), OsStr::new("rules"), file.as_os_str()]);
    assert!(
        ok,
        "the kit disagrees with what vipd exports:\n{text}\nscrapes:\n{}",
        scrapes
            .iter()
            .map(|(i, s)| format!("--- {i}\n{s}"))
            .collect::<String>()
    );
}
