//! A single VRRP instance as a process: the node binary of the namespace tests until `vipd run` exists.
//!
//! Prints machine-readable lines on stdout: `ready`, `state <State> prio=<p> master=<addr|-> vip=<bool>` on
//! every change, `stats k=v ...` on SIGUSR1 and at exit, then `exit`. SIGUSR2 toggles a tracking fault
//! (`Instance::set_track_fault`, printed as `track_fault <bool>`). SIGTERM / SIGINT leave gracefully
//! (priority 0 as master, VIP removed). Logs go to stderr.
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use vrrp::proto::{Centis, ChecksumMode, Priority, Vrid};
use vrrp::sys::{Instance, InstanceConfig, VrrpStats};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    interface: String,
    #[arg(long)]
    vrid: u8,
    #[arg(long, default_value_t = 100)]
    priority: u8,
    /// Advertisement interval in centiseconds.
    #[arg(long, default_value_t = 100)]
    interval_cs: u16,
    #[arg(long)]
    no_preempt: bool,
    #[arg(long, default_value_t = 0)]
    preempt_delay_ms: u64,
    #[arg(long)]
    vip: IpAddr,
    /// Unicast peer (repeat); none = multicast.
    #[arg(long = "peer")]
    peers: Vec<IpAddr>,
    #[arg(long)]
    source: Option<IpAddr>,
    /// `pseudo` (Keepalived's default) or `message` (RFC 9568).
    #[arg(long, default_value = "pseudo")]
    checksum: String,
    #[arg(long, default_value_t = 5)]
    garp_repeat: u32,
    #[arg(long, default_value_t = 5000)]
    garp_delay_ms: u64,
    #[arg(long, default_value_t = 0)]
    garp_refresh_ms: u64,
}

fn stats_line(s: &VrrpStats) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut line = format!(
        "stats adverts_sent={} adverts_received={} transitions={} garp_sent={} netlink_errors={} vip_restored={} send_errors={}",
        s.adverts_sent.load(Relaxed),
        s.adverts_received.load(Relaxed),
        s.transitions.load(Relaxed),
        s.garp_sent.load(Relaxed),
        s.netlink_errors.load(Relaxed),
        s.vip_restored.load(Relaxed),
        s.send_errors.load(Relaxed),
    );
    for (k, v) in s.drops() {
        line.push_str(&format!(" drop_{k}={v}"));
    }
    line
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    let cfg = InstanceConfig {
        interface: a.interface,
        vrid: Vrid::new(a.vrid).ok_or_else(|| anyhow!("VRID must be 1..=255"))?,
        priority: Priority(a.priority),
        advert_interval: Centis::new(a.interval_cs)
            .ok_or_else(|| anyhow!("interval must be 1..=4095 cs"))?,
        preempt: !a.no_preempt,
        preempt_delay: Duration::from_millis(a.preempt_delay_ms),
        vip: a.vip,
        unicast_peers: a.peers,
        unicast_source: a.source,
        checksum: match a.checksum.as_str() {
            "pseudo" => ChecksumMode::PseudoHeader,
            "message" => ChecksumMode::MessageOnly,
            c => return Err(anyhow!("unknown checksum mode {c:?}")),
        },
        garp_repeat: a.garp_repeat,
        garp_delay: Duration::from_millis(a.garp_delay_ms),
        garp_refresh: Duration::from_millis(a.garp_refresh_ms),
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut fault = false;
    let inst = Instance::start(cfg)
        .await
        .context("starting the VRRP instance")?;
    let stats = inst.stats();
    let mut status = inst.status();
    println!("ready");
    let mut last = None;
    loop {
        {
            let s = status.borrow_and_update().clone();
            let key = (s.state, s.vip_held, s.master_address);
            if last != Some(key) {
                last = Some(key);
                println!(
                    "state {:?} prio={} master={} vip={}",
                    s.state,
                    s.effective_priority,
                    s.master_address
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "-".into()),
                    s.vip_held
                );
            }
        }
        tokio::select! {
            r = status.changed() => if r.is_err() { break },
            _ = usr1.recv() => println!("{}", stats_line(&stats)),
            _ = usr2.recv() => {
                fault = !fault;
                inst.set_track_fault(fault);
                println!("track_fault {fault}");
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    inst.shutdown().await;
    println!("{}", stats_line(&stats));
    println!("exit");
    Ok(())
}
