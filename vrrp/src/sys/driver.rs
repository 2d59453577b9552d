//! The driver task: one `select!` over the VRRP socket, the router's next deadline, the netlink watch and the
//! control channels; after every event it executes the router's actions and publishes the status.
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::announce::AnnounceSocket;
use super::netlink::{Net, NetState};
use super::socket::{Received, VrrpSocket, GROUP_V4, GROUP_V6};
use super::{Control, DropReason, InstanceConfig, VrrpStats, VrrpStatus};
use crate::proto::packet::check_hop_limit;
use crate::proto::{frames, Action, Advertisement, DecodeError, Input, Priority, Router, State};

/// How often the interface is re-read even without a netlink notification.
pub(crate) const NET_TICK: Duration = Duration::from_secs(1);
/// At most one log line per drop reason per this period.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Rate-limited logging of drops: the first of each reason at once, then one line per period with the count.
#[derive(Debug, Default)]
pub(crate) struct DropLog {
    last: [Option<Instant>; DropReason::ALL.len()],
}

impl DropLog {
    fn log(&mut self, r: DropReason, total: u64, src: Option<IpAddr>, now: Instant) {
        let i = DropReason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        if self.last[i].is_some_and(|t| now.duration_since(t) < DROP_LOG_EVERY) {
            return;
        }
        self.last[i] = Some(now);
        tracing::warn!(reason = r.as_str(), src = ?src, total, "dropped VRRP packet");
    }
}

#[derive(Debug)]
pub(crate) struct Driver {
    pub router: Router,
    pub sock: VrrpSocket,
    pub announce: AnnounceSocket,
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
    pub net_rx: mpsc::Receiver<Result<NetState, String>>,
    /// We added the VIP and have not removed it.
    pub vip_held: bool,
    pub drop_log: DropLog,
    pub mismatch_logged: Option<Instant>,
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
        let done: Option<oneshot::Sender<()>> = loop {
            let deadline = self.router.poll_timeout();
            let sleep_to = deadline
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = self.sock.recv(&mut buf) => match r {
                    Ok(Ok(rx)) => self.on_packet(&rx, &buf),
                    Ok(Err(e)) => self.count_drop(DropReason::from(&e), None),
                    Err(e) => {
                        tracing::error!(error = %e, "VRRP socket receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = tokio::time::sleep_until(sleep_to), if deadline.is_some() => {
                    self.router.handle(Instant::now(), Input::Timeout);
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
                Some(ev) = self.net_rx.recv() => self.on_net(ev).await,
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

    fn count_drop(&mut self, r: DropReason, src: Option<IpAddr>) {
        let total = self.stats.count_drop(r);
        self.drop_log.log(r, total, src, Instant::now());
    }

    fn on_packet(&mut self, rx: &Received, buf: &[u8]) {
        if rx.src == self.primary {
            return self.count_drop(DropReason::OwnPacket, Some(rx.src));
        }
        match self.accept(rx, buf) {
            Ok(advert) => {
                self.stats.adverts_received.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = self.router.mismatch(&advert) {
                    // RFC 5798 7.1: log, do not drop (a rolling change must keep electing).
                    let now = Instant::now();
                    if self
                        .mismatch_logged
                        .is_none_or(|t| now.duration_since(t) >= DROP_LOG_EVERY)
                    {
                        self.mismatch_logged = Some(now);
                        tracing::warn!(src = %rx.src, interval = ?m.interval, addresses_differ = m.addresses,
                            "advertisement differs from our configuration");
                    }
                }
                let src = rx.src;
                self.router
                    .handle(Instant::now(), Input::Advert { src, advert });
            }
            Err(e) => self.count_drop(DropReason::from(&e), Some(rx.src)),
        }
    }

    /// The receive checks of RFC 5798 7.1 that need the socket's view (hop limit, peer list, VRID).
    fn accept(&self, rx: &Received, buf: &[u8]) -> Result<Advertisement, DecodeError> {
        if self.cfg.unicast_peers.is_empty() {
            check_hop_limit(rx.ttl.unwrap_or(0))?;
        } else if !self.cfg.unicast_peers.contains(&rx.src) {
            return Err(DecodeError::UnknownPeer(rx.src));
        }
        let advert = Advertisement::decode(&buf[rx.payload.clone()], rx.src, rx.dst)?;
        if advert.vrid != self.cfg.vrid {
            return Err(DecodeError::UnknownVrid(advert.vrid.get()));
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
                Action::StateChanged { from, to, reason } => {
                    self.stats.transitions.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(vrid = %self.cfg.vrid, ?from, ?to, ?reason, "VRRP state change");
                }
            }
        }
    }

    async fn send_advert(&mut self, priority: Priority) {
        let advert = self.router.advertisement(priority);
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
            let bytes = advert.encode(self.primary, dst, self.cfg.checksum);
            match self.sock.send(self.primary, dst, &bytes).await {
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
        let frame = match self.cfg.vip {
            IpAddr::V4(v) => frames::gratuitous_arp(self.mac, v),
            IpAddr::V6(v) => frames::unsolicited_na(self.mac, v),
        };
        for _ in 0..count {
            match self.announce.send(&frame) {
                Ok(()) => {
                    self.stats.garp_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "sending gratuitous ARP / NA failed");
                    break;
                }
            }
        }
    }

    fn publish(&self) {
        let st = VrrpStatus {
            state: self.router.state(),
            effective_priority: self.router.effective_priority(),
            master_address: self.router.master_address(),
            vip_held: self.vip_held,
            transitions: self.stats.transitions.load(Ordering::Relaxed),
            master_advert_interval: self.router.master_advert_interval(),
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
