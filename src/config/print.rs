//! A `Config` written back as the YAML `Config::from_yaml` reads: what `vipd validate --cluster-config --print`
//! shows, so an operator sees exactly what a node runs. Every field is written, defaults too, in the order of
//! `examples/vipd.yaml`; strings and addresses are quoted (JSON strings are YAML strings).

use std::fmt::Write as _;
use std::time::Duration;

use super::{fmt_duration, Balance, Checksum, Config, HealthKind, Track};

/// The YAML text of `c`; `Config::from_yaml` of it gives `c` back.
pub fn to_yaml(c: &Config) -> String {
    let mut y = String::new();
    top(&mut y, c);
    vrrp(&mut y, c);
    health(&mut y, c);
    proxy(&mut y, c);
    let _ = writeln!(y, "admin:\n  listen: {}", q(c.admin.listen));
    if let Some(m) = c.metrics.listen {
        let _ = writeln!(y, "metrics:\n  listen: {}", q(m));
    }
    y
}

/// A quoted YAML scalar.
fn q(v: impl ToString) -> String {
    serde_json::Value::String(v.to_string()).to_string()
}

fn d(v: Duration) -> String {
    fmt_duration(v)
}

fn top(y: &mut String, c: &Config) {
    let _ = writeln!(y, "interface: {}", q(&c.interface));
    let _ = writeln!(y, "controlPlaneVIP: {}", q(c.control_plane_vip));
    let _ = writeln!(y, "controlPlaneLBPort: {}", c.control_plane_lb_port);
    let _ = writeln!(y, "backends:");
    for b in &c.backends {
        let _ = writeln!(y, "  - {}", q(b));
    }
}

fn vrrp(y: &mut String, c: &Config) {
    let v = &c.vrrp;
    let _ = writeln!(y, "vrrp:");
    let _ = writeln!(y, "  vrid: {}", v.vrid.get());
    let _ = writeln!(y, "  priority: {}", v.priority.get());
    let _ = writeln!(
        y,
        "  advertInterval: {}",
        d(v.advert_interval.as_duration())
    );
    let _ = writeln!(y, "  preempt: {}", v.preempt);
    let _ = writeln!(y, "  preemptDelay: {}", d(v.preempt_delay));
    let peers: Vec<String> = v.unicast_peers.iter().map(q).collect();
    let _ = writeln!(y, "  unicastPeers: [{}]", peers.join(", "));
    if let Some(s) = v.unicast_source {
        let _ = writeln!(y, "  unicastSource: {}", q(s));
    }
    let checksum = match v.checksum {
        Checksum::PseudoHeader => "pseudoHeader",
        Checksum::MessageOnly => "messageOnly",
    };
    let _ = writeln!(y, "  checksum: {checksum}");
    let g = &v.garp;
    let _ = writeln!(
        y,
        "  garp: {{repeat: {}, delay: {}, refresh: {}}}",
        g.repeat,
        d(g.delay),
        d(g.refresh)
    );
    let track = match v.track {
        Track::Lowest => "lowest".to_string(),
        Track::Fault => "fault".to_string(),
        Track::Weight(w) => w.to_string(),
    };
    let _ = writeln!(y, "  trackWeight: {track}");
    let _ = writeln!(y, "  version: {}", q(v.version.as_str()));
    if let Some(p) = &v.auth_pass {
        let _ = writeln!(y, "  authPass: {}", q(p));
    }
}

fn health(y: &mut String, c: &Config) {
    let h = &c.health;
    let _ = writeln!(y, "health:");
    let kind = match h.kind {
        HealthKind::Https => "https",
        HealthKind::Tcp => "tcp",
    };
    let _ = writeln!(y, "  type: {kind}");
    let _ = writeln!(y, "  path: {}", q(&h.path));
    let _ = writeln!(y, "  expectStatus: {}", h.expect_status);
    let _ = writeln!(y, "  interval: {}", d(h.interval));
    let _ = writeln!(y, "  timeout: {}", d(h.timeout));
    let _ = writeln!(y, "  rise: {}", h.rise);
    let _ = writeln!(y, "  fall: {}", h.fall);
    let _ = writeln!(y, "  caFile: {}", q(h.ca_file.display()));
    if let Some(n) = &h.server_name {
        let _ = writeln!(y, "  serverName: {}", q(n));
    }
    if let Some(a) = &h.client_auth {
        let _ = writeln!(y, "  clientCert: {}", q(a.cert.display()));
        let _ = writeln!(y, "  clientKey: {}", q(a.key.display()));
    }
    let _ = writeln!(y, "  insecureSkipVerify: {}", h.insecure_skip_verify);
}

fn proxy(y: &mut String, c: &Config) {
    let p = &c.proxy;
    let _ = writeln!(y, "proxy:");
    if let Some(b) = p.bind {
        let _ = writeln!(y, "  bind: {}", q(b));
    }
    let balance = match p.balance {
        Balance::LeastConn => "leastconn",
        Balance::RoundRobin => "roundrobin",
    };
    let _ = writeln!(y, "  balance: {balance}");
    let _ = writeln!(y, "  connectTimeout: {}", d(p.connect_timeout));
    let _ = writeln!(y, "  retries: {}", p.retries);
    let _ = writeln!(y, "  maxConnections: {}", p.max_connections);
    let _ = writeln!(y, "  idleTimeout: {}", d(p.idle_timeout));
    let _ = writeln!(y, "  drainTimeout: {}", d(p.drain_timeout));
    let _ = writeln!(
        y,
        "  shutdownSessionsOnBackendDown: {}",
        p.shutdown_sessions_on_backend_down
    );
    match p.threads {
        None => y.push_str("  threads: auto\n"),
        Some(n) => {
            let _ = writeln!(y, "  threads: {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn round_trip(yaml: &str) {
        let c = Config::from_yaml(yaml).unwrap();
        let printed = to_yaml(&c);
        let back = Config::from_yaml(&printed)
            .unwrap_or_else(|e| panic!("printed config is refused: {e}\n{printed}"));
        assert_eq!(back, c, "{printed}");
    }

    #[test]
    fn the_example_round_trips() {
        round_trip(include_str!("../../examples/vipd.yaml"));
    }

    /// Every field away from its default, the optional ones set, IPv6 and a numeric weight.
    #[test]
    fn every_field_round_trips() {
        round_trip(
            r#"
interface: bond0.12
controlPlaneVIP: "2001:db8::100"
controlPlaneLBPort: 8443
backends: ["[2001:db8::20]:6443", "[2001:db8::21]:6443"]
vrrp:
  vrid: 200
  priority: 254
  advertInterval: 40.95s
  preempt: false
  preemptDelay: 1m30s
  unicastPeers: ["2001:db8::2", "2001:db8::3"]
  unicastSource: "2001:db8::1"
  garp: {repeat: 100, delay: 0s, refresh: 1h}
  trackWeight: -254
health:
  type: tcp
  path: /livez
  expectStatus: 204
  interval: 5m
  timeout: 250ms
  rise: 100
  fall: 1
  caFile: "/etc/pki/ca with space.crt"
  serverName: kubernetes.default
  clientCert: /etc/vipd/c.crt
  clientKey: /etc/vipd/c.key
  insecureSkipVerify: true
proxy:
  bind: "::"
  balance: roundrobin
  connectTimeout: 10ms
  retries: 0
  maxConnections: 1000000
  idleTimeout: 168h
  drainTimeout: 0s
  shutdownSessionsOnBackendDown: true
  threads: 64
admin:
  listen: "[::1]:9555"
metrics:
  listen: "[2001:db8::1]:9441"
"#,
        );
        round_trip(
            "interface: eth0\ncontrolPlaneVIP: 192.0.2.100\nbackends: [192.0.2.20:6443]\n\
             vrrp: {vrid: 1, priority: 1, trackWeight: fault, checksum: messageOnly}\n",
        );
        // VRRPv2 (an interval beyond VRRPv3's range, a password that needs quoting) and mixed.
        round_trip(
            "interface: eth0\ncontrolPlaneVIP: 192.0.2.100\nbackends: [192.0.2.20:6443]\n\
             vrrp: {vrid: 9, version: 2, advertInterval: 255s, authPass: \"0123 \\\"x\\\"\"}\n",
        );
        round_trip(
            "interface: eth0\ncontrolPlaneVIP: 192.0.2.100\nbackends: [192.0.2.20:6443]\n\
             vrrp: {vrid: 9, version: mixed, advertInterval: 3s}\n",
        );
    }
}
