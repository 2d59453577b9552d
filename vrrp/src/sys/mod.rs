//! Linux I/O for VRRP: one [`Instance`] per virtual router puts a [`crate::proto::Router`] on the wire.
//!
//! It owns the raw IP socket (protocol 112), the send-only packet socket for gratuitous ARP / unsolicited NA,
//! the rtnetlink connection (VIP add / remove, link and address watch), and the driver task that feeds packets,
//! timers and control messages to the state machine and executes its actions.
mod announce;
mod driver;
mod late;
mod netlink;
mod peer_macs;
mod peers;
mod socket;

/// Rate-limited warnings (drops, mismatches, peers of another version, late timers): at most one line per kind
/// per this period; the counters count every event.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a warning last written at `last` may be written again at `now`; if so, `now` becomes the last time.
fn log_due(last: &mut Option<std::time::Instant>, now: std::time::Instant) -> bool {
    if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::proto::{
    Auth, Centis, ChecksumMode, DecodeError, Priority, Router, RouterConfig, State, Version, Vrid,
};

/// One virtual router on one interface. All addresses (VIP, peers, source) share the VIP's family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceConfig {
    pub interface: String,
    pub vrid: Vrid,
    pub priority: Priority,
    pub advert_interval: Centis,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub vip: IpAddr,
    /// Empty = multicast (224.0.0.18 / ff02::12); otherwise advertisements go to each peer, and only these
    /// peers are listened to.
    pub unicast_peers: Vec<IpAddr>,
    /// Source of advertisements; default: the interface's primary IPv4 address or IPv6 link-local address.
    pub unicast_source: Option<IpAddr>,
    pub checksum: ChecksumMode,
    pub garp_repeat: u32,
    pub garp_delay: Duration,
    pub garp_refresh: Duration,
    /// VRRPv3, VRRPv2 or both (IPv4 only for the last two); changes in place with [`Instance::set_wire`].
    pub version: Version,
    /// VRRPv2 authentication, sent and demanded in v2 advertisements (v3 has none).
    pub auth: Auth,
}

/// A router whose advertisements say the virtual router is split by version: a VRRPv2 router heard while we
/// speak VRRPv3 only, or a VRRPv3-only router heard while we speak VRRPv2 only (either cannot hear us, so it
/// is most likely master too), or, in mixed mode, a master that sends VRRPv3 without VRRPv2 copies (VRRPv2
/// routers cannot hear it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerHeard {
    pub src: IpAddr,
    pub priority: Priority,
    /// When its last advertisement arrived.
    pub last_heard: Instant,
}

/// What the instance is doing now, published on a watch channel after every event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpStatus {
    pub state: State,
    pub effective_priority: Priority,
    pub master_address: Option<IpAddr>,
    pub vip_held: bool,
    pub transitions: u64,
    pub master_advert_interval: Centis,
    /// The protocol version running now.
    pub version: Version,
    /// Version 3 only: the last VRRPv2 router heard in our VRID (see [`PeerHeard`]).
    pub v2_peer: Option<PeerHeard>,
    /// Version 2 only: the last VRRPv3 router heard in our VRID that sends no VRRPv2 copies.
    pub v3_peer: Option<PeerHeard>,
    /// Mixed only: a master heard in VRRPv3 for a Master_Down_Interval without a VRRPv2 copy (RFC 5798 8.4.2
    /// allows reporting it: the two do not agree on supporting VRRPv2).
    pub v3_only_master: Option<PeerHeard>,
}

/// Why a received packet was dropped. One counter per variant, one rate-limited log line per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Multicast mode: TTL / hop limit not 255 (the packet crossed a router).
    HopLimit,
    /// The IPv4 header is unreadable (too short, IHL < 5, total length < header).
    IpHeader,
    Truncated,
    Version,
    Type,
    Checksum,
    NoAddresses,
    ZeroInterval,
    ZeroVrid,
    /// The addresses' family does not match the IP header or this instance.
    Family,
    /// A VRID this instance does not run.
    UnknownVrid,
    /// Unicast mode: the source is not a configured peer.
    UnknownPeer,
    /// Our own advertisement came back (looped or reflected).
    OwnPacket,
    /// VRRPv2: wrong or missing password, or another authentication type.
    Auth,
    /// VRRPv2 (version 2 only): the sender's Adver Int is not ours.
    Interval,
}

impl DropReason {
    pub const ALL: [DropReason; 15] = [
        DropReason::HopLimit,
        DropReason::IpHeader,
        DropReason::Truncated,
        DropReason::Version,
        DropReason::Type,
        DropReason::Checksum,
        DropReason::NoAddresses,
        DropReason::ZeroInterval,
        DropReason::ZeroVrid,
        DropReason::Family,
        DropReason::UnknownVrid,
        DropReason::UnknownPeer,
        DropReason::OwnPacket,
        DropReason::Auth,
        DropReason::Interval,
    ];

    /// A stable label (metrics, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::HopLimit => "hop_limit",
            DropReason::IpHeader => "ip_header",
            DropReason::Truncated => "truncated",
            DropReason::Version => "version",
            DropReason::Type => "type",
            DropReason::Checksum => "checksum",
            DropReason::NoAddresses => "no_addresses",
            DropReason::ZeroInterval => "zero_interval",
            DropReason::ZeroVrid => "zero_vrid",
            DropReason::Family => "family",
            DropReason::UnknownVrid => "unknown_vrid",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::OwnPacket => "own_packet",
            DropReason::Auth => "auth",
            DropReason::Interval => "interval",
        }
    }

    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl From<&DecodeError> for DropReason {
    fn from(e: &DecodeError) -> Self {
        match e {
            DecodeError::Truncated => DropReason::Truncated,
            DecodeError::Version(_) => DropReason::Version,
            DecodeError::Type(_) => DropReason::Type,
            DecodeError::Checksum => DropReason::Checksum,
            DecodeError::NoAddresses => DropReason::NoAddresses,
            DecodeError::ZeroInterval => DropReason::ZeroInterval,
            DecodeError::ZeroVrid => DropReason::ZeroVrid,
            DecodeError::Family => DropReason::Family,
            DecodeError::HopLimit(_) => DropReason::HopLimit,
            DecodeError::UnknownVrid(_) => DropReason::UnknownVrid,
            DecodeError::UnknownPeer(_) => DropReason::UnknownPeer,
            DecodeError::IpHeader => DropReason::IpHeader,
            DecodeError::Auth => DropReason::Auth,
            DecodeError::Interval(_) => DropReason::Interval,
        }
    }
}

/// Counters of one instance, shared with whoever exports metrics.
#[derive(Debug, Default)]
pub struct VrrpStats {
    pub adverts_sent: AtomicU64,
    pub adverts_received: AtomicU64,
    pub transitions: AtomicU64,
    pub garp_sent: AtomicU64,
    /// Repair frames sent after stepping down, naming the new master's MAC (see `Router::start_repair`).
    pub garp_repair_sent: AtomicU64,
    /// Repairs skipped because the new master's MAC was not known (no VRRP frame of it seen yet).
    pub garp_repair_skipped: AtomicU64,
    pub netlink_errors: AtomicU64,
    pub vip_restored: AtomicU64,
    pub send_errors: AtomicU64,
    /// VRRPv2 advertisements for our VRID heard while running version 3 (also counted as `version` drops).
    pub v2_peer_adverts: AtomicU64,
    /// VRRPv3 advertisements for our VRID from a router without VRRPv2 copies, heard while running version 2
    /// (also counted as `version` drops).
    pub v3_peer_adverts: AtomicU64,
    /// Timer deadlines the driver woke for more than an advertisement interval (and 100 ms) late: the process
    /// was not scheduled (see `late.rs`).
    pub late_timers: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl VrrpStats {
    /// Every drop reason with its count (zeros included, so an exporter sees every series).
    pub fn drops(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.drops[r.index()].load(Ordering::Relaxed)))
            .collect()
    }

    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r.index()].load(Ordering::Relaxed)
    }

    fn count_drop(&self, r: DropReason) -> u64 {
        self.drops[r.index()].fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("interface {0:?} not found")]
    NoInterface(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("no usable {0} address on {1} to send advertisements from")]
    NoPrimaryAddress(&'static str, String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SysError {
    let what = what.into();
    move |source| SysError::Io { what, source }
}

#[derive(Debug)]
enum Control {
    Shutdown(oneshot::Sender<()>),
}

/// A running VRRP instance. Dropping it without [`Instance::shutdown`] also stops the driver (it sees its
/// control channel close and leaves as on shutdown).
#[derive(Debug)]
pub struct Instance {
    ctl: mpsc::Sender<Control>,
    // Only the latest value matters, so tracking updates never queue up or get lost.
    prio: watch::Sender<Priority>,
    fault: watch::Sender<bool>,
    wire: watch::Sender<(Version, Auth)>,
    status: watch::Receiver<VrrpStatus>,
    stats: Arc<VrrpStats>,
    task: JoinHandle<()>,
}

/// How long a link-local IPv6 address may take to appear (DAD) before start-up gives up.
const PRIMARY_WAIT: Duration = Duration::from_secs(5);

impl Instance {
    /// Open the sockets, remove a VIP left by an earlier crash, resolve the primary address, spawn the driver.
    pub async fn start(cfg: InstanceConfig) -> Result<Self, SysError> {
        check_config(&cfg)?;
        let ifindex = nix::net::if_::if_nametoindex(cfg.interface.as_str())
            .map_err(|_| SysError::NoInterface(cfg.interface.clone()))?;
        let net = netlink::Net::connect(ifindex).map_err(io_err("netlink socket"))?;
        clear_stale_vip(&net, &cfg).await?;
        let link = net.link().await.map_err(nl_err)?;
        let primary = resolve_primary(&net, &cfg).await?;
        let sockets = open_sockets(&cfg, ifindex)?;
        tracing::info!(
            interface = %cfg.interface, vrid = %cfg.vrid, priority = %cfg.priority, vip = %cfg.vip,
            source = %primary, unicast = !cfg.unicast_peers.is_empty(), "VRRP instance starting"
        );
        let router = Router::new(router_config(&cfg, primary));
        Ok(spawn_driver(cfg, router, sockets, net, primary, link))
    }

    /// The status, updated after every event. Clone out of `borrow()` rather than holding the guard across
    /// an `.await`: the driver's next update waits for every guard to be dropped.
    pub fn status(&self) -> watch::Receiver<VrrpStatus> {
        self.status.clone()
    }

    pub fn stats(&self) -> Arc<VrrpStats> {
        self.stats.clone()
    }

    /// Tracking: the priority to advertise from now on (the router clamps it; the owner stays 255).
    pub fn set_priority(&self, p: Priority) {
        self.prio.send_replace(p);
    }

    /// Tracking with `fault` policy: while true this node must not be master.
    pub fn set_track_fault(&self, fault: bool) {
        self.fault.send_replace(fault);
    }

    /// Change the protocol version and VRRPv2 authentication in place: no handover, the state, timers and VIP
    /// stay. What the router sends and accepts changes from the next packet on.
    pub fn set_wire(&self, version: Version, auth: Auth) {
        self.wire.send_replace((version, auth));
    }

    /// Leave the virtual router: as master, send priority 0 and remove the VIP. Returns when done.
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(Control::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }
}

fn nl_err(e: rtnetlink::Error) -> SysError {
    SysError::Netlink(e.to_string())
}

fn family_name(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// The rules the config layer also enforces, checked again here so the library never runs half configured.
fn check_config(cfg: &InstanceConfig) -> Result<(), SysError> {
    let v6 = cfg.vip.is_ipv6();
    let fam = family_name(v6);
    if cfg.unicast_peers.iter().any(|p| p.is_ipv6() != v6) {
        return Err(SysError::Config(format!(
            "unicast peers must be {fam} like the VIP"
        )));
    }
    if cfg.unicast_source.is_some_and(|s| s.is_ipv6() != v6) {
        return Err(SysError::Config(format!(
            "unicast source must be {fam} like the VIP"
        )));
    }
    if cfg.unicast_peers.contains(&cfg.vip) {
        return Err(SysError::Config("the VIP cannot be a unicast peer".into()));
    }
    if cfg.priority == Priority::LEAVING {
        return Err(SysError::Config(
            "priority 0 is reserved for a leaving master".into(),
        ));
    }
    if cfg.garp_repeat == 0 {
        return Err(SysError::Config("garp_repeat must be at least 1".into()));
    }
    if v6 && cfg.version != Version::V3 {
        return Err(SysError::Config(
            "VRRPv2 (version 2 or mixed) is IPv4 only".into(),
        ));
    }
    if cfg.version.sends_v2() && cfg.advert_interval.whole_secs().is_none() {
        return Err(SysError::Config(
            "VRRPv2 needs an advertisement interval of whole seconds".into(),
        ));
    }
    if cfg.version.sends_v3() && cfg.advert_interval.get() > Centis::MAX {
        return Err(SysError::Config(
            "VRRPv3 carries an advertisement interval of at most 40.95s".into(),
        ));
    }
    Ok(())
}

/// A VIP still on the interface means an earlier run died as master; holding it as backup would make two
/// nodes answer for it. The address owner (255) owns it as a real address and keeps it.
async fn clear_stale_vip(net: &netlink::Net, cfg: &InstanceConfig) -> Result<(), SysError> {
    if cfg.priority != Priority::OWNER && net.del_vip(cfg.vip).await.map_err(nl_err)? {
        tracing::warn!(vip = %cfg.vip, interface = %cfg.interface, "removed a stale VIP left by an earlier run");
    }
    Ok(())
}

/// The advertisements' source: the configured one, else the interface's primary address of the VIP's family
/// (waiting up to [`PRIMARY_WAIT`] for an IPv6 link-local address to finish DAD).
async fn resolve_primary(net: &netlink::Net, cfg: &InstanceConfig) -> Result<IpAddr, SysError> {
    if let Some(s) = cfg.unicast_source {
        return Ok(s);
    }
    let v6 = cfg.vip.is_ipv6();
    let deadline = tokio::time::Instant::now() + PRIMARY_WAIT;
    loop {
        if let Some(a) = net.primary_address(v6, cfg.vip).await.map_err(nl_err)? {
            return Ok(a);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SysError::NoPrimaryAddress(
                family_name(v6),
                cfg.interface.clone(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The instance's sockets: see [`open_sockets`].
#[derive(Debug)]
struct Sockets {
    sock: socket::VrrpSocket,
    announce: announce::AnnounceSocket,
    peer_macs: peer_macs::PeerMacs,
}

/// The raw VRRP socket (joined to the group in multicast mode), the packet socket for ARP / NA, and the
/// receive-only packet socket that learns the peers' MACs.
fn open_sockets(cfg: &InstanceConfig, ifindex: u32) -> Result<Sockets, SysError> {
    let sock = socket::VrrpSocket::open(
        &cfg.interface,
        ifindex,
        cfg.vip.is_ipv6(),
        cfg.unicast_peers.is_empty(),
    )
    .map_err(io_err(format!("VRRP socket on {}", cfg.interface)))?;
    let announce = announce::AnnounceSocket::open(ifindex)
        .map_err(io_err(format!("packet socket on {}", cfg.interface)))?;
    let peer_macs = peer_macs::PeerMacs::open(ifindex, cfg.vip.is_ipv6())
        .map_err(io_err(format!("VRRP packet socket on {}", cfg.interface)))?;
    Ok(Sockets {
        sock,
        announce,
        peer_macs,
    })
}

fn router_config(cfg: &InstanceConfig, primary: IpAddr) -> RouterConfig {
    RouterConfig {
        vrid: cfg.vrid,
        priority: cfg.priority,
        advert_interval: cfg.advert_interval,
        preempt: cfg.preempt,
        preempt_delay: cfg.preempt_delay,
        primary_address: primary,
        vips: vec![cfg.vip],
        garp_repeat: cfg.garp_repeat,
        garp_delay: cfg.garp_delay,
        garp_refresh: cfg.garp_refresh,
        version: cfg.version,
    }
}

/// The channels between the [`Instance`] handle and its driver, the netlink watch, and the driver task.
fn spawn_driver(
    cfg: InstanceConfig,
    router: Router,
    sockets: Sockets,
    net: netlink::Net,
    primary: IpAddr,
    link: netlink::LinkInfo,
) -> Instance {
    let status0 = VrrpStatus {
        state: State::Initialize,
        effective_priority: cfg.priority,
        master_address: None,
        vip_held: false,
        transitions: 0,
        master_advert_interval: cfg.advert_interval,
        version: cfg.version,
        v2_peer: None,
        v3_peer: None,
        v3_only_master: None,
    };
    let (status_tx, status) = watch::channel(status0);
    let stats = Arc::new(VrrpStats::default());
    let (ctl, ctl_rx) = mpsc::channel(1);
    let (prio, prio_rx) = watch::channel(cfg.priority);
    let (fault, fault_rx) = watch::channel(false);
    let (wire, wire_rx) = watch::channel((cfg.version, cfg.auth));
    let (net_tx, net_rx) = mpsc::channel(16);
    let watch_task = tokio::spawn(netlink::watch(
        net.clone(),
        cfg.vip,
        driver::NET_TICK,
        net_tx,
    ));
    let d = driver::Driver {
        router,
        sock: sockets.sock,
        announce: sockets.announce,
        peer_macs: sockets.peer_macs,
        net,
        primary,
        mac: link.mac,
        link_up: link.up,
        stats: stats.clone(),
        status_tx,
        ctl_rx,
        prio_rx,
        fault_rx,
        wire_rx,
        net_rx,
        vip_held: false,
        peers: Default::default(),
        drop_log: driver::DropLog::default(),
        mismatch_logged: None,
        late: late::LateTimers::default(),
        cfg,
    };
    let task = tokio::spawn(async move {
        d.run().await;
        watch_task.abort();
    });
    Instance {
        ctl,
        prio,
        fault,
        wire,
        status,
        stats,
        task,
    }
}

#[cfg(test)]
mod ns_tests;
