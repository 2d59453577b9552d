//! The chaos run's world: three load-balancer nodes (`lb0..lb2`, priorities 150/120/100, 100 ms adverts),
//! three fake apiservers (`api0..api2`, HTTPS with certificates naming their address and the VIP), and a
//! client, all on one lab LAN. Each load-balancer node runs either vipd or Keepalived 2.2 (VRRPv3) + HAProxy,
//! configured to do the same job (HTTPS `/readyz` checks, leastconn, VIP:443).
//!
//! Every process is a guard killed and reaped by PID on drop; the Keepalived + HAProxy nodes are
//! [`crate::pair`]'s, the same as the failover benchmark's.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::history::HealthTimers;
use crate::apiserver::{fake_apiserver_bin, ServerCertSpec, TestPki};
use crate::netns::{Lab, Proc, TempDir};
use crate::pair::{PairCheck, PairNode, PairSpec};
use crate::vipd::{HealthSpec, VipdNode, VipdSpec};

pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const PORT: u16 = 443;
pub const PRIORITIES: [u8; 3] = [150, 120, 100];
pub const ADVERT_MS: u64 = 100;
pub const LBS: [&str; 3] = ["lb0", "lb1", "lb2"];
pub const APIS: [&str; 3] = ["api0", "api1", "api2"];
/// Health checks of both implementations: HTTPS `/readyz` every 300 ms, 250 ms timeout, fall 2, rise 1.
pub const HEALTH: HealthTimers = HealthTimers {
    interval_ms: 300,
    timeout_ms: 250,
    rise: 1,
    fall: 2,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imp {
    Vipd,
    /// Keepalived 2.2 (VRRPv3) + HAProxy 2.6.
    Pair,
}

impl Imp {
    pub fn label(self) -> &'static str {
        match self {
            Imp::Vipd => "vipd",
            Imp::Pair => "keepalived+haproxy",
        }
    }
}

/// The load balancer on one node.
#[derive(Debug)]
pub enum Lb {
    Vipd(VipdNode),
    Pair(PairNode),
}

impl Lb {
    /// The processes whose footprint is sampled.
    pub fn pids(&self) -> Vec<i32> {
        match self {
            Lb::Vipd(v) => vec![v.pid()],
            Lb::Pair(p) => vec![p.vrrp_pid, p.haproxy.pid()],
        }
    }

    /// The VRRP process (the one SIGSTOP freezes).
    pub fn vrrp_pids(&self) -> Vec<i32> {
        match self {
            Lb::Vipd(v) => vec![v.pid()],
            Lb::Pair(p) => p.vrrp_pids(),
        }
    }

    /// Everything on the node dies at once: nothing hands over, the VIP stays configured.
    pub fn kill9(&mut self) {
        match self {
            Lb::Vipd(v) => v.proc.kill9(),
            Lb::Pair(p) => p.kill9(),
        }
    }

    /// A graceful stop of the whole node's load balancer, waited for (bounded).
    pub fn sigterm(&mut self) {
        match self {
            Lb::Vipd(v) => {
                v.proc.stop(Signal::SIGTERM, Duration::from_secs(10));
            }
            Lb::Pair(p) => p.stop(),
        }
    }

    pub fn signal_vrrp(&self, sig: Signal) {
        for pid in self.vrrp_pids() {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }

    /// Whether the node's daemons still run (a reaped or zombie process counts as gone).
    pub fn exited(&mut self) -> Option<String> {
        match self {
            Lb::Vipd(v) => v
                .proc
                .wait_exit(Duration::ZERO)
                .map(|s| format!("vipd {s}")),
            Lb::Pair(p) => {
                p.ka.wait_exit(Duration::ZERO)
                    .map(|s| format!("keepalived {s}"))
                    .or_else(|| {
                        p.haproxy
                            .wait_exit(Duration::ZERO)
                            .map(|s| format!("haproxy {s}"))
                    })
            }
        }
    }

    /// Log lines so far (vipd's, or Keepalived's).
    pub fn log_lines(&self) -> Vec<String> {
        match self {
            Lb::Vipd(v) => v.proc.lines(),
            Lb::Pair(p) => p.ka.lines(),
        }
    }

    /// Lines logged since `cursor` (advanced): vipd's, or Keepalived's then the current HAProxy's. A reload
    /// or restart starts a process with its own lines: reset the cursor to `[0, 0]` then.
    pub fn new_log_lines(&self, cursor: &mut [usize; 2]) -> Vec<String> {
        let mut out = Vec::new();
        let procs: Vec<&Proc> = match self {
            Lb::Vipd(v) => vec![&v.proc],
            Lb::Pair(p) => vec![&p.ka, &p.haproxy],
        };
        for (p, c) in procs.into_iter().zip(cursor.iter_mut()) {
            let n = p.line_count();
            if n > *c {
                out.extend(p.lines_from(*c));
                *c = n;
            }
        }
        out
    }
}

/// The lab, the PKI, the apiservers and the load balancers. Field order is drop order: processes first.
#[derive(Debug)]
pub struct World {
    pub lbs: Vec<Option<Lb>>,
    pub apis: Vec<Option<Proc>>,
    pub imp: Imp,
    pub pki: TestPki,
    pub dir: TempDir,
    pub vipd_bin: PathBuf,
    pub lab: Lab,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

impl World {
    pub fn new(tag: &str, imp: Imp, vipd_bin: &Path) -> Result<World> {
        let mut lab = Lab::new(tag)?;
        for n in LBS.iter().chain(APIS.iter()).chain(["client"].iter()) {
            lab.add_node(n)?;
        }
        for n in LBS {
            // HAProxy binds the VIP before holding it (vipd uses IP_FREEBIND).
            lab.node(n).ns.sysctl("net.ipv4.ip_nonlocal_bind", "1")?;
        }
        let pki = TestPki::new(&format!("{tag}-ca"))?;
        let mut w = World {
            lbs: Vec::new(),
            apis: Vec::new(),
            imp,
            pki,
            dir: TempDir::new(&format!("{tag}-cfg"))?,
            vipd_bin: vipd_bin.to_path_buf(),
            lab,
        };
        for i in 0..APIS.len() {
            let p = w.start_api(i)?;
            w.apis.push(Some(p));
        }
        for i in 0..LBS.len() {
            let lb = w.start_lb(i)?;
            w.lbs.push(Some(lb));
        }
        Ok(w)
    }

    pub fn api_addrs(&self) -> Vec<SocketAddr> {
        APIS.iter()
            .map(|n| SocketAddr::new(IpAddr::V4(self.lab.node(n).v4), 6443))
            .collect()
    }

    pub fn start_api(&self, i: usize) -> Result<Proc> {
        let node = self.lab.node(APIS[i]);
        let ip = IpAddr::V4(node.v4);
        let cert = self
            .pki
            .server_cert(APIS[i], &ServerCertSpec::ips([ip, IpAddr::V4(VIP)]))?;
        let mut c = node.ns.command(fake_apiserver_bin());
        c.arg("--listen")
            .arg(format!("{ip}:6443"))
            .arg("--cert")
            .arg(&cert.cert)
            .arg("--key")
            .arg(&cert.key)
            .arg("--name")
            .arg(APIS[i])
            .arg("--watch-interval-ms")
            .arg("100");
        let p = node.ns.spawn(c)?;
        p.wait_line(Duration::from_secs(10), |l| l.trim() == "serving")
            .ok_or_else(|| anyhow!("fake-apiserver on {} did not start", APIS[i]))?;
        Ok(p)
    }

    pub fn vipd_spec(&self, i: usize, backends: Vec<SocketAddr>) -> VipdSpec {
        let mut spec = VipdSpec::new(IpAddr::V4(VIP), backends, PRIORITIES[i]);
        spec.port = PORT;
        spec.advert_interval = leak(format!("{ADVERT_MS}ms"));
        spec.health = HealthSpec::Https {
            ca_file: self.pki.ca_cert().to_path_buf(),
        };
        spec.health_interval = leak(format!("{}ms", HEALTH.interval_ms));
        spec.health_timeout = leak(format!("{}ms", HEALTH.timeout_ms));
        spec.rise = HEALTH.rise;
        spec.fall = HEALTH.fall;
        spec.with_extra("proxy", "drainTimeout: 1s")
    }

    pub fn start_lb(&self, i: usize) -> Result<Lb> {
        match self.imp {
            Imp::Vipd => {
                let spec = self.vipd_spec(i, self.api_addrs());
                let ns = &self.lab.node(LBS[i]).ns;
                Ok(Lb::Vipd(VipdNode::start(
                    &self.vipd_bin,
                    ns,
                    &spec,
                    self.dir.path(),
                )?))
            }
            Imp::Pair => self.start_pair(i),
        }
    }

    fn start_pair(&self, i: usize) -> Result<Lb> {
        let ns = &self.lab.node(LBS[i]).ns;
        Ok(Lb::Pair(PairNode::start(
            ns,
            &self.pair_spec(i, &self.api_addrs()),
        )?))
    }

    /// Keepalived + HAProxy doing vipd's job: the same priorities and interval; leastconn over the
    /// apiservers, HTTPS `/readyz` checks with vipd's timers.
    pub fn pair_spec(&self, i: usize, backends: &[SocketAddr]) -> PairSpec {
        PairSpec {
            node: LBS[i].to_string(),
            vip: VIP,
            port: PORT,
            priority: PRIORITIES[i],
            advert_ms: ADVERT_MS,
            backends: self
                .api_addrs()
                .iter()
                .enumerate()
                .filter(|(_, a)| backends.contains(a))
                .map(|(k, a)| (APIS[k].to_string(), *a))
                .collect(),
            check: PairCheck::Https {
                ca_file: self.pki.ca_cert().to_path_buf(),
            },
            check_interval_ms: HEALTH.interval_ms,
            check_timeout_ms: HEALTH.timeout_ms,
            rise: HEALTH.rise,
            fall: HEALTH.fall,
            maxconn: 2000,
        }
    }

    /// Reload node `i`'s load balancer with `backends`: vipd rewrites its file and gets SIGHUP; HAProxy gets
    /// a new process on the new file with `-sf` (see [`PairNode::reload_haproxy`]).
    pub fn reload(&mut self, i: usize, backends: &[SocketAddr]) -> Result<()> {
        let spec = self.vipd_spec(i, backends.to_vec());
        let pair = self.pair_spec(i, backends);
        let ns = &self.lab.node(LBS[i]).ns;
        match self.lbs[i].as_mut() {
            None => Ok(()),
            Some(Lb::Vipd(v)) => {
                v.write_config(&spec)?;
                v.signal(Signal::SIGHUP)
            }
            Some(Lb::Pair(p)) => p.reload_haproxy(ns, &pair),
        }
    }

    /// Which load-balancer nodes hold the VIP on their interface.
    pub fn holders(&self) -> Vec<String> {
        LBS.iter()
            .filter(|n| self.lab.node(n).ns.has_addr("eth0", IpAddr::V4(VIP)))
            .map(|n| n.to_string())
            .collect()
    }

    /// The node whose MAC the client's neighbour entry for the VIP names.
    pub fn client_arp(&self) -> Option<String> {
        let mac = self.lab.node("client").ns.neigh_mac(IpAddr::V4(VIP))?;
        LBS.iter()
            .find(|n| self.lab.node(n).mac.eq_ignore_ascii_case(&mac))
            .map(|n| n.to_string())
    }

    /// Removes the VIP from every node (after a run, or a Keepalived node that died holding it).
    pub fn remove_vip(&self, node: &str) -> Result<()> {
        self.lab
            .node(node)
            .ns
            .run(["ip", "addr", "del", &format!("{VIP}/32"), "dev", "eth0"])
            .map(drop)
            .context("ip addr del")
    }
}
