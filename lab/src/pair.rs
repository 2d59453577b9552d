//! A Keepalived 2.2 (VRRPv3) + HAProxy 2.6 node doing vipd's job, for the comparisons (the failover
//! benchmark, the chaos run): the two config files from a typed spec, both processes in the node's namespace,
//! and the ways they are stopped, killed and reloaded. Every process is a [`Proc`] guard (killed and reaped
//! by PID on drop); Keepalived's VRRP child is found by its pid file and killed by that PID.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::netns::{wait_for, Netns, Proc, TempDir};

/// HAProxy's health checks of the backends.
#[derive(Debug, Clone)]
pub enum PairCheck {
    /// TCP connect.
    Tcp,
    /// HTTPS `GET /readyz`, expecting 200, the certificate verified against `ca_file`.
    Https { ca_file: PathBuf },
}

/// One node's Keepalived + HAProxy config.
#[derive(Debug, Clone)]
pub struct PairSpec {
    /// The node's name (Keepalived's `router_id ka_<node>`).
    pub node: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub priority: u8,
    pub advert_ms: u64,
    /// HAProxy's servers: name and address.
    pub backends: Vec<(String, SocketAddr)>,
    pub check: PairCheck,
    pub check_interval_ms: u64,
    pub check_timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
    /// HAProxy's `maxconn`.
    pub maxconn: usize,
}

impl PairSpec {
    /// keepalived.conf: one VRRPv3 instance (VRID 51 on `eth0`) holding the VIP, gratuitous-ARP settings at
    /// their defaults (as most files leave them).
    pub fn keepalived_conf(&self) -> String {
        format!(
            "global_defs {{\n    router_id ka_{}\n    vrrp_version 3\n    enable_script_security\n}}\n\
             vrrp_instance VI_51 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
             priority {}\n    advert_int {}\n    virtual_ipaddress {{\n        {}/32 dev eth0\n    }}\n}}\n",
            self.node,
            self.priority,
            self.advert_ms as f64 / 1000.0,
            self.vip
        )
    }

    /// haproxy.cfg: TCP mode on VIP:port, leastconn over the backends, the health checks of `check`.
    pub fn haproxy_cfg(&self) -> String {
        let mut servers = String::new();
        for (name, addr) in &self.backends {
            servers.push_str(&format!("    server {name} {addr} check\n"));
        }
        let (t, i, f, r) = (
            self.check_timeout_ms,
            self.check_interval_ms,
            self.fall,
            self.rise,
        );
        let check = match &self.check {
            PairCheck::Https { ca_file } => format!(
                "    option httpchk GET /readyz\n    http-check expect status 200\n    \
                 timeout check {t}ms\n    default-server inter {i}ms fall {f} rise {r} \
                 check-ssl verify required ca-file {}\n",
                ca_file.display()
            ),
            PairCheck::Tcp => {
                format!(
                    "    timeout check {t}ms\n    default-server inter {i}ms fall {f} rise {r}\n"
                )
            }
        };
        format!(
            "global\n    nbthread 2\n    maxconn {}\n\
             defaults\n    mode tcp\n    balance leastconn\n    retries 2\n    timeout connect 300ms\n    \
             timeout client 1h\n    timeout server 1h\n\
             frontend apiserver\n    bind {}:{}\n    default_backend apiservers\n\
             backend apiservers\n{check}{servers}",
            self.maxconn, self.vip, self.port
        )
    }
}

/// Keepalived (parent + its VRRP child, `-P`: VRRP only) and HAProxy running on one node.
#[derive(Debug)]
pub struct PairNode {
    pub ka: Proc,
    pub vrrp_pid: i32,
    pub haproxy: Proc,
    /// HAProxy processes replaced by a reload, finishing their sessions (killed on drop).
    pub retired: Vec<Proc>,
    dir: TempDir,
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// Keepalived in `ns`, VRRP only (`-P`), in the foreground, logging to the console: its config is
/// `dir/keepalived.conf`, its pid files `ka.pid` (the parent), `vrrp.pid` (the VRRP child, written once it
/// runs) and `checkers.pid`, all in `dir`.
pub fn keepalived_command(ns: &Netns, dir: &Path) -> Command {
    let mut k = ns.command("keepalived");
    k.args(["-n", "-l", "-D", "-P", "-f"])
        .arg(dir.join("keepalived.conf"))
        .arg("-p")
        .arg(dir.join("ka.pid"))
        .arg("-r")
        .arg(dir.join("vrrp.pid"))
        .arg("-c")
        .arg(dir.join("checkers.pid"));
    k
}

impl PairNode {
    /// Writes both files and starts HAProxy, then Keepalived; returns once Keepalived wrote its VRRP pid.
    /// The node needs `net.ipv4.ip_nonlocal_bind=1`: HAProxy binds the VIP before holding it.
    pub fn start(ns: &Netns, spec: &PairSpec) -> Result<PairNode> {
        let dir = TempDir::new(&format!("pair-{}", spec.node))?;
        std::fs::write(dir.join("keepalived.conf"), spec.keepalived_conf())?;
        std::fs::write(dir.join("haproxy.cfg"), spec.haproxy_cfg())?;
        let mut h = ns.command("haproxy");
        h.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
        let haproxy = ns.spawn(h)?;
        let ka = ns.spawn(keepalived_command(ns, dir.path()))?;
        let pidfile = dir.join("vrrp.pid");
        let vrrp_pid = wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
        })
        .ok_or_else(|| {
            anyhow!(
                "keepalived on {} wrote no VRRP pid: {:?}",
                spec.node,
                ka.lines()
            )
        })?;
        Ok(PairNode {
            ka,
            vrrp_pid,
            haproxy,
            retired: Vec::new(),
            dir,
        })
    }

    /// Keepalived's parent and VRRP child (the processes SIGSTOP freezes).
    pub fn vrrp_pids(&self) -> Vec<i32> {
        vec![self.ka.pid(), self.vrrp_pid]
    }

    /// Everything on the node dies at once, as in a crash: nothing hands over, the VIP stays configured.
    pub fn kill9(&mut self) {
        // The parent is stopped first so it cannot respawn the child, and the child dies before the parent
        // so it never sees the parent's death (which would make it hand over).
        let _ = self.ka.signal(Signal::SIGSTOP);
        let _ = kill(Pid::from_raw(self.vrrp_pid), Signal::SIGKILL);
        self.haproxy.kill9();
        self.retired.iter_mut().for_each(Proc::kill9);
        self.ka.kill9();
    }

    /// SIGTERM to Keepalived only, not waited for (HAProxy stays, as when an operator stops Keepalived for
    /// maintenance).
    pub fn sigterm_keepalived(&self) {
        let _ = self.ka.signal(Signal::SIGTERM);
    }

    /// A graceful stop of the whole node, waited for (bounded): Keepalived (it hands over), then HAProxy.
    pub fn stop(&mut self) {
        self.ka.stop(Signal::SIGTERM, Duration::from_secs(10));
        self.wait_vrrp_child();
        self.haproxy.stop(Signal::SIGTERM, Duration::from_secs(5));
        for p in &mut self.retired {
            p.stop(Signal::SIGTERM, Duration::from_secs(5));
        }
    }

    /// The VRRP child gone within 3 s of its parent, or killed.
    fn wait_vrrp_child(&self) {
        let pid = self.vrrp_pid;
        if wait_for(Duration::from_secs(3), || (!alive(pid)).then_some(())).is_none() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// The usual reload without master-worker mode, `haproxy -sf $(cat pid)`: `spec`'s haproxy.cfg written,
    /// a new process started on it (it takes over the listener), the old one told to finish its sessions
    /// and exit.
    pub fn reload_haproxy(&mut self, ns: &Netns, spec: &PairSpec) -> Result<()> {
        std::fs::write(self.dir.join("haproxy.cfg"), spec.haproxy_cfg())?;
        let mut h = ns.command("haproxy");
        h.arg("-db")
            .arg("-f")
            .arg(self.dir.join("haproxy.cfg"))
            .arg("-sf")
            .arg(self.haproxy.pid().to_string());
        let new = ns.spawn(h)?;
        self.retired
            .retain_mut(|p| p.wait_exit(Duration::ZERO).is_none());
        self.retired.push(std::mem::replace(&mut self.haproxy, new));
        Ok(())
    }
}

impl Drop for PairNode {
    fn drop(&mut self) {
        let _ = self.ka.signal(Signal::SIGCONT);
        let _ = kill(Pid::from_raw(self.vrrp_pid), Signal::SIGCONT);
        self.ka.stop(Signal::SIGTERM, Duration::from_secs(5));
        self.wait_vrrp_child();
        self.haproxy.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(check: PairCheck) -> PairSpec {
        PairSpec {
            node: "lb0".into(),
            vip: Ipv4Addr::new(192, 0, 2, 100),
            port: 443,
            priority: 150,
            advert_ms: 100,
            backends: vec![
                ("api0".into(), "192.0.2.4:6443".parse().unwrap()),
                ("api1".into(), "192.0.2.5:6443".parse().unwrap()),
            ],
            check,
            check_interval_ms: 300,
            check_timeout_ms: 250,
            rise: 1,
            fall: 2,
            maxconn: 2000,
        }
    }

    #[test]
    fn the_files_say_what_the_spec_says() {
        let s = spec(PairCheck::Https {
            ca_file: "/tmp/ca.pem".into(),
        });
        let ka = s.keepalived_conf();
        assert!(ka.contains("router_id ka_lb0\n"), "{ka}");
        assert!(ka.contains("priority 150\n    advert_int 0.1\n"), "{ka}");
        assert!(ka.contains("192.0.2.100/32 dev eth0"), "{ka}");
        let h = s.haproxy_cfg();
        assert!(h.contains("maxconn 2000\n"), "{h}");
        assert!(h.contains("bind 192.0.2.100:443\n"), "{h}");
        assert!(h.contains("option httpchk GET /readyz\n"), "{h}");
        assert!(h.contains("timeout check 250ms\n"), "{h}");
        assert!(
            h.contains("default-server inter 300ms fall 2 rise 1 check-ssl verify required ca-file /tmp/ca.pem\n"),
            "{h}"
        );
        assert!(h.ends_with(
            "    server api0 192.0.2.4:6443 check\n    server api1 192.0.2.5:6443 check\n"
        ));
        let t = spec(PairCheck::Tcp).haproxy_cfg();
        assert!(!t.contains("httpchk") && !t.contains("check-ssl"), "{t}");
        assert!(
            t.contains("default-server inter 300ms fall 2 rise 1\n"),
            "{t}"
        );
    }
}
