//! The driver task: one `select!` over the VRRP socket, the router's next deadline, the netlink watch and the
//! control channels; after every event it executes the router's actions and publishes the status.
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::announce::AnnounceSocket;
use super::late::LateTimers;
use super::netlink::{Net, NetState};
use super::peer_macs::PeerMacs;
use super::peers::{Foreign, VersionPeers};
use super::socket::{Received, VrrpSocket, GROUP_V4, GROUP_V6};
use super::{Control, DropReason, InstanceConfig, VrrpStats, VrrpStatus};
use crate::proto::packet::check_hop_limit;
use crate::proto::v2::{self, AdvertisementV2};
use crate::proto::{
    frames, Action, Advertisement, Auth, DecodeError, Input, Priority, Router, State, Version,
};

/// How often the interface is re-read even without a netlink notification.
pub(crate) const NET_TICK: Duration = Duration::from_secs(1);
/// Rate-limited logging of drops: the first of each reason at once, then one line per period with the count.
#[derive(Debug, Default)]
pub(crate) struct DropLog {
    last: [Option<Instant>; DropReason::ALL.len()],
}

impl DropLog {
    fn log(&mut self, r: DropReason, total: u64, src: Option<IpAddr>, now: Instant) {
        let i = DropReason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        if !super::log_due(&mut self.last[i], now) {
            return;
        }
        tracing::warn!(reason = r.as_str(), src = ?src, total, "dropped VRRP packet");
    }
}

#[derive(Debug)]
pub(crate) struct Driver {
    pub router: Router,
    pub sock: VrrpSocket,
    pub announce: AnnounceSocket,
    pub peer_macs: PeerMacs,
    pub net: Net,
    pub cfg: InstanceConfig,
    pub primary: IpAddr,
    pub mac: [u8; 6],
    pub link_up: bool,
    pub stats: Arc<VrrpStats>,
    pub status_tx: watch::Sender<VrrpStatus>,
    pub ctl_rx: mpsc::Receiver<Control>,
    pub prio_rx: watch::Receiver<Priority>,
    pub fault_rx: watch::Receiver<bool>,
    pub wire_rx: watch::Receiver<(Version, Auth)>,
    pub net_rx: mpsc::Receiver<Result<NetState, String>>,
    /// We added the VIP and have not removed it.
    pub vip_held: bool,
    pub drop_log: DropLog,
    pub mismatch_logged: Option<Instant>,
    /// Who speaks which version, for the warnings about a virtual router split by version.
    pub peers: VersionPeers,
    /// Deadlines the driver woke for late (the process was not scheduled).
    pub late: LateTimers,
}

impl Driver {
    pub async fn run(mut self) {
        self.router.handle(Instant::now(), Input::Startup);
        self.execute().await;
        if !self.link_up {
            tracing::warn!(interface = %self.cfg.interface, "link is down at start-up");
            self.router.handle(Instant::now(), Input::LinkDown);
            self.execute().await;
        }
        self.publish();
        let mut buf = vec![0u8; 65536];
        let mut prio_open = true;
        let mut fault_open = true;
        let mut wire_open = true;
        let done: Option<oneshot::Sender<()>> = loop {
            let deadline = self.router.poll_timeout();
            let sleep_to = deadline
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = self.sock.recv(&mut buf) => match r {
                    Ok(Ok(rx)) => {
                        // A packet can reset the deadline before the timer branch sees it was missed.
                        self.woke(deadline);
                        self.on_packet(&rx, &buf)
                    }
                    Ok(Err(e)) => self.count_drop(DropReason::from(&e), None),
                    Err(e) => {
                        tracing::error!(error = %e, "VRRP socket receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = tokio::time::sleep_until(sleep_to), if deadline.is_some() => {
                    let now = self.woke(deadline);
                    self.router.handle(now, Input::Timeout);
                }
                c = self.ctl_rx.recv() => match c {
                    Some(Control::Shutdown(tx)) => break Some(tx),
                    None => break None,
                },
                r = self.prio_rx.changed(), if prio_open => match r {
                    Ok(()) => {
                        let p = *self.prio_rx.borrow_and_update();
                        self.router.handle(Instant::now(), Input::PriorityChanged(p));
                    }
                    Err(_) => prio_open = false,
                },
                r = self.fault_rx.changed(), if fault_open => match r {
                    Ok(()) => {
                        let f = *self.fault_rx.borrow_and_update();
                        self.router.handle(Instant::now(), Input::TrackFault(f));
                    }
                    Err(_) => fault_open = false,
                },
                r = self.wire_rx.changed(), if wire_open => match r {
                    Ok(()) => {
                        let (version, auth) = *self.wire_rx.borrow_and_update();
                        self.set_wire(version, auth);
                    }
                    Err(_) => wire_open = false,
                },
                Some(ev) = self.net_rx.recv() => self.on_net(ev).await,
                r = self.peer_macs.learn() => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "VRRP packet socket receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            }
            self.execute().await;
            self.publish();
        };
        self.router.handle(Instant::now(), Input::Shutdown);
        self.execute().await;
        if self.vip_held {
            // The router removes the VIP when it leaves as master; this covers any other path that held it.
            self.remove_vip().await;
        }
        self.publish();
        tracing::info!(interface = %self.cfg.interface, vrid = %self.cfg.vrid, "VRRP instance stopped");
        if let Some(tx) = done {
            let _ = tx.send(());
        }
    }

    /// The time now, after counting (and warning about) `deadline` when it passed well before it.
    fn woke(&mut self, deadline: Option<Instant>) -> Instant {
        let now = Instant::now();
        let interval = self.router.master_advert_interval().as_duration();
        self.late
            .check(deadline, now, interval, &self.stats, self.cfg.vrid);
        now
    }

    fn count_drop(&mut self, r: DropReason, src: Option<IpAddr>) {
        let total = self.stats.count_drop(r);
        self.drop_log.log(r, total, src, Instant::now());
    }

    fn on_packet(&mut self, rx: &Received, buf: &[u8]) {
        if rx.src == self.primary {
            return self.count_drop(DropReason::OwnPacket, Some(rx.src));
        }
        let payload = &buf[rx.payload.clone()];
        let src = rx.src;
        let accepted = match v2::version_of(payload) {
            Some(v2::VERSION) => self
                .accept_v2(rx, payload)
                .map(|advert| Input::AdvertV2 { src, advert }),
            _ => self.accept(rx, payload).map(|advert| {
                let (window, mixed) = (self.sender_window(), self.cfg.version == Version::Mixed);
                self.peers
                    .heard_v3(src, advert.priority, window, mixed, self.cfg.vrid);
                Input::Advert { src, advert }
            }),
        };
        match accepted {
            Ok(input) => {
                self.stats.adverts_received.fetch_add(1, Ordering::Relaxed);
                if let Input::Advert { advert, .. } | Input::AdvertV2 { advert, .. } = &input {
                    self.log_mismatch(src, advert);
                }
                self.router.handle(Instant::now(), input);
            }
            Err(e) => self.count_drop(DropReason::from(&e), Some(src)),
        }
    }

    /// RFC 5798 7.1: log, do not drop (a rolling change must keep electing).
    fn log_mismatch(&mut self, src: IpAddr, advert: &Advertisement) {
        let Some(m) = self.router.mismatch(advert) else {
            return;
        };
        if super::log_due(&mut self.mismatch_logged, Instant::now()) {
            tracing::warn!(%src, interval = ?m.interval, addresses_differ = m.addresses,
                "advertisement differs from our configuration");
        }
    }

    /// The receive checks of RFC 5798 7.1 that need the socket's view (hop limit, peer list).
    fn check_source(&self, rx: &Received) -> Result<(), DecodeError> {
        if self.cfg.unicast_peers.is_empty() {
            check_hop_limit(rx.ttl.unwrap_or(0))
        } else if !self.cfg.unicast_peers.contains(&rx.src) {
            Err(DecodeError::UnknownPeer(rx.src))
        } else {
            Ok(())
        }
    }

    /// A VRRPv3 advertisement: source, codec, VRID and family checks. Running version 2, one for our VRID
    /// is foreign ([`Self::foreign`]).
    fn accept(&mut self, rx: &Received, payload: &[u8]) -> Result<Advertisement, DecodeError> {
        self.check_source(rx)?;
        let advert = Advertisement::decode(payload, rx.src, rx.dst)?;
        if advert.vrid != self.cfg.vrid {
            return Err(DecodeError::UnknownVrid(advert.vrid.get()));
        }
        if self.cfg.version == Version::V2 {
            return Err(self.foreign(Foreign::V3, rx.src, advert.priority));
        }
        if advert
            .addresses
            .iter()
            .any(|a| a.is_ipv6() != self.cfg.vip.is_ipv6())
        {
            return Err(DecodeError::Family);
        }
        Ok(advert)
    }

    /// A VRRPv2 advertisement (RFC 3768 7.1). Running version 3, one for our VRID is foreign
    /// ([`Self::foreign`]).
    fn accept_v2(&mut self, rx: &Received, payload: &[u8]) -> Result<Advertisement, DecodeError> {
        self.check_source(rx)?;
        let advert = AdvertisementV2::decode(payload)?;
        if advert.vrid != self.cfg.vrid {
            return Err(DecodeError::UnknownVrid(advert.vrid.get()));
        }
        if self.cfg.version == Version::V3 {
            return Err(self.foreign(Foreign::V2, rx.src, advert.priority));
        }
        // The sender speaks VRRPv2 even if its password or interval is refused below.
        self.peers.heard_v2(rx.src, self.sender_window());
        advert.check_auth(&self.cfg.auth)?;
        if self.cfg.version == Version::V2
            && self.cfg.advert_interval.whole_secs() != Some(advert.adver_int)
        {
            return Err(DecodeError::Interval(advert.adver_int));
        }
        Ok(advert.to_advert())
    }

    /// An advertisement for our VRID in the version this router does not run: a router that cannot hear us
    /// unless it is mixed, noted for the warning and counted; dropped as a version mismatch.
    fn foreign(&mut self, foreign: Foreign, src: IpAddr, priority: Priority) -> DecodeError {
        let (window, vrid) = (self.sender_window(), self.cfg.vrid);
        let counter = match foreign {
            Foreign::V2 => &self.stats.v2_peer_adverts,
            Foreign::V3 => &self.stats.v3_peer_adverts,
        };
        let count = || counter.fetch_add(1, Ordering::Relaxed) + 1;
        self.peers
            .heard_foreign(foreign, src, priority, window, vrid, count);
        DecodeError::Version(foreign.number())
    }

    /// How long a sender counts as heard: a Master_Down_Interval plus a second for scheduling.
    fn sender_window(&self) -> Duration {
        self.router.master_down_interval() + Duration::from_secs(1)
    }

    /// A reload changed the version or the VRRPv2 password: applied in place, no handover.
    fn set_wire(&mut self, version: Version, auth: Auth) {
        if (version, auth) == (self.cfg.version, self.cfg.auth) {
            return;
        }
        tracing::info!(vrid = %self.cfg.vrid, from = self.cfg.version.as_str(), to = version.as_str(),
            auth_changed = auth != self.cfg.auth, "VRRP version / authentication changed in place");
        self.cfg.version = version;
        self.cfg.auth = auth;
        self.peers.version_changed(version);
        self.router
            .handle(Instant::now(), Input::SetVersion(version));
    }

    async fn on_net(&mut self, ev: Result<NetState, String>) {
        let st = match ev {
            Ok(st) => st,
            Err(e) => {
                self.stats.netlink_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "netlink watch");
                return;
            }
        };
        if st.link_up != self.link_up {
            self.link_up = st.link_up;
            let input = if st.link_up {
                Input::LinkUp
            } else {
                Input::LinkDown
            };
            tracing::warn!(interface = %self.cfg.interface, up = st.link_up, "link changed");
            self.router.handle(Instant::now(), input);
            // Execute now so a VIP removed by LinkDown is not mistaken below for one someone else removed.
            self.execute().await;
        }
        if self.router.state() != State::Master && self.vip_held && st.vip_present {
            // A removal that failed (netlink error) left the VIP on a node that is not master: two nodes
            // would answer for it. Retry on every reading until it is gone.
            tracing::warn!(vip = %self.cfg.vip, "VIP still on the interface after leaving master: removing it");
            self.remove_vip().await;
        }
        if self.router.state() == State::Master && !st.vip_present {
            // The watch's reading may predate our own add: confirm before acting.
            match self.net.has(self.cfg.vip).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(vip = %self.cfg.vip, "VIP removed from the interface while master: restoring it");
                    if self.add_vip().await {
                        self.stats.vip_restored.fetch_add(1, Ordering::Relaxed);
                        self.announce(self.cfg.garp_repeat);
                    }
                }
                Err(e) => {
                    self.stats.netlink_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "netlink query");
                }
            }
        }
    }

    /// Execute every pending action of the router.
    async fn execute(&mut self) {
        while let Some(a) = self.router.poll_action() {
            match a {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::AddVips => {
                    self.add_vip().await;
                }
                Action::RemoveVips => self.remove_vip().await,
                Action::Announce { count } => self.announce(count),
                Action::AnnounceFor { master, count } => self.announce_for(master, count),
                Action::StateChanged { from, to, reason } => {
                    self.stats.transitions.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(vrid = %self.cfg.vrid, ?from, ?to, ?reason, "VRRP state change");
                }
            }
        }
    }

    /// One advertisement to the group or to each unicast peer: VRRPv3, VRRPv2 or (mixed) both.
    async fn send_advert(&mut self, priority: Priority) {
        let advert = self.router.advertisement(priority);
        let version = self.cfg.version;
        let v2 = version
            .sends_v2()
            .then(|| AdvertisementV2::from_advert(&advert, &self.cfg.auth).encode());
        let group = if self.cfg.vip.is_ipv6() {
            IpAddr::V6(GROUP_V6)
        } else {
            IpAddr::V4(GROUP_V4)
        };
        let targets: Vec<IpAddr> = if self.cfg.unicast_peers.is_empty() {
            vec![group]
        } else {
            self.cfg.unicast_peers.clone()
        };
        for dst in targets {
            if version.sends_v3() {
                let bytes = advert.encode(self.primary, dst, self.cfg.checksum);
                self.send_one(dst, &bytes).await;
            }
            if let Some(bytes) = &v2 {
                self.send_one(dst, bytes).await;
            }
        }
    }

    async fn send_one(&mut self, dst: IpAddr, bytes: &[u8]) {
        match self.sock.send(self.primary, dst, bytes).await {
            Ok(()) => {
                self.stats.adverts_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // Link down, no route to a peer ...: counted; the next interval retries.
                let n = self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(100) {
                    tracing::warn!(%dst, error = %e, total = n + 1, "sending advertisement failed");
                }
            }
        }
    }

    /// Add the VIP; true on success (also when it was already there).
    async fn add_vip(&mut self) -> bool {
        match self.net.add_vip(self.cfg.vip).await {
            Ok(_) => {
                self.vip_held = true;
                tracing::info!(vip = %self.cfg.vip, interface = %self.cfg.interface, "VIP added");
                true
            }
            Err(e) => {
                // The watch notices the VIP missing while master and retries on its next reading.
                self.stats.netlink_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(vip = %self.cfg.vip, error = %e, "adding the VIP failed");
                false
            }
        }
    }

    async fn remove_vip(&mut self) {
        match self.net.del_vip(self.cfg.vip).await {
            Ok(_) => {
                self.vip_held = false;
                tracing::info!(vip = %self.cfg.vip, interface = %self.cfg.interface, "VIP removed");
            }
            Err(e) => {
                self.stats.netlink_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(vip = %self.cfg.vip, error = %e, "removing the VIP failed");
            }
        }
    }

    fn announce(&mut self, count: u32) {
        let sent = self.send_announce(self.mac, count);
        self.stats.garp_sent.fetch_add(sent, Ordering::Relaxed);
    }

    /// Repair after stepping down: tell the LAN the VIP is at the new master's MAC (`Router::start_repair`).
    fn announce_for(&mut self, master: IpAddr, count: u32) {
        let Some(mac) = self.peer_macs.mac_of(master) else {
            let n = self
                .stats
                .garp_repair_skipped
                .fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(100) {
                tracing::warn!(%master, total = n + 1, "cannot repair neighbour entries: MAC of the new master not seen");
            }
            return;
        };
        let sent = self.send_announce(mac, count);
        self.stats
            .garp_repair_sent
            .fetch_add(sent, Ordering::Relaxed);
        tracing::info!(%master, mac = %fmt_mac(mac), frames = sent, "announced the VIP at the new master's MAC (repair after stepping down)");
    }

    /// Send `count` announcements of the VIP at `mac` from our own MAC; returns how many went out.
    fn send_announce(&mut self, mac: [u8; 6], count: u32) -> u64 {
        let frame = match self.cfg.vip {
            IpAddr::V4(v) => frames::gratuitous_arp_for(self.mac, mac, v),
            IpAddr::V6(v) => frames::unsolicited_na_for(self.mac, mac, v),
        };
        let mut sent = 0;
        for _ in 0..count {
            match self.announce.send(&frame) {
                Ok(()) => sent += 1,
                Err(e) => {
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "sending gratuitous ARP / NA failed");
                    break;
                }
            }
        }
        sent
    }

    fn publish(&self) {
        let st = VrrpStatus {
            state: self.router.state(),
            effective_priority: self.router.effective_priority(),
            master_address: self.router.master_address(),
            vip_held: self.vip_held,
            transitions: self.stats.transitions.load(Ordering::Relaxed),
            master_advert_interval: self.router.master_advert_interval(),
            version: self.cfg.version,
            v2_peer: self.peers.v2_peer,
            v3_peer: self.peers.v3_peer,
            v3_only_master: self.peers.v3_only_master,
        };
        self.status_tx.send_if_modified(|old| {
            if *old != st {
                *old = st;
                true
            } else {
                false
            }
        });
    }
}

fn fmt_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}
