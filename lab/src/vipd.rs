//! Running the real `vipd` binary as a lab node: its config (rendered as YAML from a typed spec), the process
//! in its namespace, and its admin endpoint read from inside that namespace.
//!
//! Tests of the root package pass `env!("CARGO_BIN_EXE_vipd")`; the demo passes its own executable.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use crate::netns::{Netns, Proc};

/// How a node checks its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthSpec {
    Tcp,
    /// HTTPS `GET /readyz`, trusting `ca_file` (certificates are checked against the backend's IP).
    Https {
        ca_file: PathBuf,
    },
}

/// One node's vipd config. Only what the lab varies is typed; `extra` holds further YAML lines for the
/// `vrrp`, `health` and `proxy` sections, or for a section of its own (`metrics`), keys as in the file.
#[derive(Debug, Clone)]
pub struct VipdSpec {
    pub interface: String,
    pub vip: IpAddr,
    pub port: u16,
    pub backends: Vec<SocketAddr>,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: &'static str,
    pub preempt: bool,
    pub unicast_peers: Vec<IpAddr>,
    pub health: HealthSpec,
    pub health_interval: &'static str,
    pub health_timeout: &'static str,
    pub rise: u32,
    pub fall: u32,
    /// `trackWeight`: a number, `lowest` or `fault`; empty leaves it out (vipd's default).
    pub track_weight: String,
    pub admin_listen: SocketAddr,
    /// Extra keys per section: `extra["proxy"] = ["drainTimeout: 5s"]`.
    pub extra: BTreeMap<&'static str, Vec<String>>,
}

impl VipdSpec {
    /// A node on the lab LAN (`eth0`) with a 100 ms advertisement interval and fast TCP checks.
    pub fn new(vip: IpAddr, backends: Vec<SocketAddr>, priority: u8) -> VipdSpec {
        VipdSpec {
            interface: "eth0".into(),
            vip,
            port: 443,
            backends,
            vrid: 51,
            priority,
            advert_interval: "100ms",
            preempt: true,
            unicast_peers: Vec::new(),
            health: HealthSpec::Tcp,
            health_interval: "200ms",
            health_timeout: "150ms",
            rise: 1,
            fall: 2,
            track_weight: "-50".into(),
            admin_listen: "127.0.0.1:9440".parse().expect("literal"),
            extra: BTreeMap::new(),
        }
    }

    pub fn with_extra(mut self, section: &'static str, line: &str) -> Self {
        self.extra
            .entry(section)
            .or_default()
            .push(line.to_string());
        self
    }

    /// The config file's text.
    pub fn to_yaml(&self) -> String {
        let mut y = String::new();
        let _ = writeln!(y, "interface: {}", self.interface);
        let _ = writeln!(y, "controlPlaneVIP: \"{}\"", self.vip);
        let _ = writeln!(y, "controlPlaneLBPort: {}", self.port);
        let _ = writeln!(y, "backends:");
        for b in &self.backends {
            let _ = writeln!(y, "  - \"{b}\"");
        }
        let _ = writeln!(y, "vrrp:");
        let _ = writeln!(y, "  vrid: {}", self.vrid);
        let _ = writeln!(y, "  priority: {}", self.priority);
        let _ = writeln!(y, "  advertInterval: {}", self.advert_interval);
        let _ = writeln!(y, "  preempt: {}", self.preempt);
        if !self.track_weight.is_empty() {
            let _ = writeln!(y, "  trackWeight: {}", self.track_weight);
        }
        if !self.unicast_peers.is_empty() {
            let _ = writeln!(y, "  unicastPeers:");
            for p in &self.unicast_peers {
                let _ = writeln!(y, "    - \"{p}\"");
            }
        }
        self.write_extra(&mut y, "vrrp");
        let _ = writeln!(y, "health:");
        match &self.health {
            HealthSpec::Tcp => {
                let _ = writeln!(y, "  type: tcp");
            }
            HealthSpec::Https { ca_file } => {
                let _ = writeln!(y, "  type: https");
                let _ = writeln!(y, "  caFile: \"{}\"", ca_file.display());
            }
        }
        let _ = writeln!(y, "  interval: {}", self.health_interval);
        let _ = writeln!(y, "  timeout: {}", self.health_timeout);
        let _ = writeln!(y, "  rise: {}", self.rise);
        let _ = writeln!(y, "  fall: {}", self.fall);
        self.write_extra(&mut y, "health");
        let _ = writeln!(y, "proxy:");
        let _ = writeln!(y, "  connectTimeout: 300ms");
        self.write_extra(&mut y, "proxy");
        let _ = writeln!(y, "admin:");
        let _ = writeln!(y, "  listen: \"{}\"", self.admin_listen);
        // Any other section (`metrics`, ...) is written whole from its extra lines.
        for (section, lines) in &self.extra {
            if !["vrrp", "health", "proxy"].contains(section) {
                let _ = writeln!(y, "{section}:");
                for line in lines {
                    let _ = writeln!(y, "  {line}");
                }
            }
        }
        y
    }

    fn write_extra(&self, y: &mut String, section: &str) {
        for line in self.extra.get(section).into_iter().flatten() {
            let _ = writeln!(y, "  {line}");
        }
    }
}

/// A running `vipd run` in a namespace; killed (SIGKILL, by PID) and reaped on drop.
#[derive(Debug)]
pub struct VipdNode {
    pub proc: Proc,
    pub config_path: PathBuf,
    ns_name: String,
    admin: SocketAddr,
}

impl VipdNode {
    /// Writes the config to `dir/<ns name>.yaml` and starts `bin run --config` in `ns`. Does not wait.
    pub fn start(bin: &Path, ns: &Netns, spec: &VipdSpec, dir: &Path) -> Result<VipdNode> {
        Self::start_with_env(bin, ns, spec, dir, &[])
    }

    /// Starts `bin run --config path` in `ns` with an existing config file.
    pub fn start_with_config(
        bin: &Path,
        ns: &Netns,
        config_path: &Path,
        admin: SocketAddr,
    ) -> Result<VipdNode> {
        let args = ["--config".as_ref(), config_path.as_os_str()];
        Self::spawn_run(bin, ns, &args, &[], config_path, admin)
    }

    /// Starts `bin run ARGS` in `ns` (`--cluster-config FILE --config FILE`, ...); `config_path` is the file a
    /// reload rewrites, `admin` where its admin endpoint answers. Does not wait.
    pub fn start_with_args(
        bin: &Path,
        ns: &Netns,
        args: &[&str],
        config_path: &Path,
        admin: SocketAddr,
    ) -> Result<VipdNode> {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        Self::spawn_run(bin, ns, &args, &[], config_path, admin)
    }

    /// Like [`VipdNode::start`], with extra environment variables for the daemon (`NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC`, ...).
    pub fn start_with_env(
        bin: &Path,
        ns: &Netns,
        spec: &VipdSpec,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<VipdNode> {
        let config_path = dir.join(format!("{}.yaml", ns.name()));
        std::fs::write(&config_path, spec.to_yaml())
            .with_context(|| format!("writing {}", config_path.display()))?;
        let args = ["--config".as_ref(), config_path.as_os_str()];
        Self::spawn_run(bin, ns, &args, env, &config_path, spec.admin_listen)
    }

    /// The one place a node's daemon is spawned: `bin run ARGS` in `ns`, logging at info without colours (its
    /// stderr is a pipe anyway), with `env` on top.
    fn spawn_run(
        bin: &Path,
        ns: &Netns,
        args: &[&OsStr],
        env: &[(&str, &str)],
        config_path: &Path,
        admin: SocketAddr,
    ) -> Result<VipdNode> {
        let mut cmd = ns.command(bin);
        cmd.arg("run").args(args);
        cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proc = ns.spawn(cmd)?;
        Ok(VipdNode {
            proc,
            config_path: config_path.to_path_buf(),
            ns_name: ns.name().to_string(),
            admin,
        })
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    pub fn signal(&self, sig: Signal) -> Result<()> {
        self.proc.signal(sig)
    }

    /// Rewrites the config file (for a SIGHUP reload).
    pub fn write_config(&self, spec: &VipdSpec) -> Result<()> {
        std::fs::write(&self.config_path, spec.to_yaml()).context("rewriting config")
    }

    /// `GET path` on the admin endpoint, from inside the node's namespace: (status code, body).
    pub fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        let ns = self.ns_name.clone();
        let admin = self.admin;
        let path = path.to_string();
        in_netns(&ns, move || http_get(admin, &path, Duration::from_secs(2)))?
    }

    /// The `/status` document.
    pub fn status(&self) -> Result<serde_json::Value> {
        let (code, body) = self.admin_get("/status")?;
        if code != 200 {
            bail!("/status answered {code}");
        }
        serde_json::from_str(&body).context("parsing /status")
    }

    /// The VRRP state from `/status` (`master`, `backup`, ...), or `None` when the daemon does not answer.
    pub fn state(&self) -> Option<String> {
        let s = self.status().ok()?;
        s["vrrp"]["state"].as_str().map(str::to_string)
    }

    /// Polls `/status` until the VRRP state is `want`; returns how long it took.
    pub fn wait_state(&self, want: &str, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.state().as_deref() == Some(want) {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A metric's value from `/metrics` (the first sample whose name and labels start with `prefix`).
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, body) = self.admin_get("/metrics").ok()?;
        metric_value(&body, prefix)
    }

    /// Polls `/metrics` until `prefix`'s value is `want`. A log line can come before the counter it
    /// announces is visible, so tests wait for the value instead of reading it once. On timeout: the last
    /// value seen (`None` if there was none), for the failure message.
    pub fn wait_metric(
        &self,
        prefix: &str,
        want: f64,
        timeout: Duration,
    ) -> Result<(), Option<f64>> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < timeout {
            last = self.metric(prefix);
            if last == Some(want) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(last)
    }
}

/// The value of the first sample line starting with `prefix` in an OpenMetrics text.
pub fn metric_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs `f` on a thread inside the named namespace and waits for it (see [`Netns::run_in`]).
pub fn in_netns<F, R>(ns_name: &str, f: F) -> Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    crate::netns::spawn_in_netns(ns_name, "netns", f)?
        .join()
        .map_err(|_| anyhow!("thread in netns {ns_name} panicked"))?
}

/// A minimal HTTP/1.1 GET over plain TCP (the admin endpoint): (status code, body).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header end"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_are_found_by_prefix() {
        let text = "# HELP x y\nvipd_vip_held{vip=\"192.0.2.100\"} 1\nvipd_a_total 7\n";
        assert_eq!(metric_value(text, "vipd_vip_held"), Some(1.0));
        assert_eq!(metric_value(text, "vipd_a_total"), Some(7.0));
        assert_eq!(metric_value(text, "vipd_b"), None);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }

    #[test]
    fn spec_renders_every_section() {
        let spec = VipdSpec::new(
            "192.0.2.100".parse().unwrap(),
            vec!["192.0.2.20:6443".parse().unwrap()],
            150,
        )
        .with_extra("proxy", "drainTimeout: 5s")
        .with_extra("metrics", "listen: \"192.0.2.10:9441\"");
        let y = spec.to_yaml();
        for want in [
            "controlPlaneVIP: \"192.0.2.100\"",
            "  - \"192.0.2.20:6443\"",
            "  priority: 150",
            "  type: tcp",
            "  drainTimeout: 5s",
            "  listen: \"127.0.0.1:9440\"",
            "metrics:\n  listen: \"192.0.2.10:9441\"\n",
        ] {
            assert!(y.contains(want), "{want:?} missing from\n{y}");
        }
    }
}
