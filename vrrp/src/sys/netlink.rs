//! rtnetlink for one interface: link state and MAC, its addresses, idempotent VIP add / remove, and a watch
//! task that reports link changes and VIP presence to the driver.
//!
//! The watch listens to the kernel's link and address multicast groups and also re-reads the state on a
//! periodic tick, so a missed notification (netlink buffers can overflow) costs at most one tick.
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::mpsc;

/// What the driver needs to know about the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkInfo {
    /// Administratively up and carrier present.
    pub up: bool,
    pub mac: [u8; 6],
}

/// The interface as the watch last read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NetState {
    pub link_up: bool,
    pub vip_present: bool,
}

/// Attempts after the first for an address dump the kernel interrupted.
const DUMP_RETRIES: u32 = 5;

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().raw_os_error(),
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Net {
    handle: Handle,
    ifindex: u32,
}

impl Net {
    pub fn connect(ifindex: u32) -> std::io::Result<Net> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Net { handle, ifindex })
    }

    pub async fn link(&self) -> Result<LinkInfo, rtnetlink::Error> {
        let mut s = self.handle.link().get().match_index(self.ifindex).execute();
        let msg = s.try_next().await?.ok_or(rtnetlink::Error::RequestFailed)?;
        let f = msg.header.flags;
        let mut mac = [0u8; 6];
        for a in &msg.attributes {
            if let LinkAttribute::Address(b) = a {
                if b.len() == 6 {
                    mac.copy_from_slice(b);
                }
            }
        }
        Ok(LinkInfo {
            up: f.contains(LinkFlags::Up) && f.contains(LinkFlags::LowerUp),
            mac,
        })
    }

    /// The interface's address messages (only `only`'s, when given). The kernel fails a dump with EBUSY when
    /// the address list changed while it ran (NLM_F_DUMP_INTR), as it does when a VIP was added a moment
    /// before: retried, a few times, so a VIP removal right after its addition does not fail and leave the VIP
    /// on a backup (found by the chaos run: 30% loss on the master's link).
    async fn dump_addresses(
        &self,
        only: Option<IpAddr>,
    ) -> Result<Vec<AddressMessage>, rtnetlink::Error> {
        let mut attempt = 0;
        loop {
            let mut req = self
                .handle
                .address()
                .get()
                .set_link_index_filter(self.ifindex);
            if let Some(ip) = only {
                req = req.set_address_filter(ip);
            }
            match req.execute().try_collect().await {
                Err(e) if errno(&e) == Some(nix::libc::EBUSY) && attempt < DUMP_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                r => return r,
            }
        }
    }

    /// The interface's addresses with their header flags (secondary, tentative ...).
    pub async fn addresses(&self) -> Result<Vec<(IpAddr, AddressHeaderFlags)>, rtnetlink::Error> {
        let msgs = self.dump_addresses(None).await?;
        let mut out = Vec::new();
        for m in msgs {
            let mut addr = None;
            let mut flags = m.header.flags;
            for a in &m.attributes {
                match a {
                    // For IPv4, Local is the interface's own address; Address may be a peer's.
                    AddressAttribute::Local(ip) => addr = Some(*ip),
                    AddressAttribute::Address(ip) if addr.is_none() => addr = Some(*ip),
                    AddressAttribute::Flags(f) => {
                        flags |= AddressHeaderFlags::from_bits_truncate(f.bits() as u8)
                    }
                    _ => {}
                }
            }
            if let Some(a) = addr {
                out.push((a, flags));
            }
        }
        Ok(out)
    }

    pub async fn has(&self, ip: IpAddr) -> Result<bool, rtnetlink::Error> {
        Ok(self.addresses().await?.iter().any(|(a, _)| *a == ip))
    }

    /// Add the VIP as a host address (/32 or /128, IPv6 without DAD). Returns false if it was already there.
    pub async fn add_vip(&self, vip: IpAddr) -> Result<bool, rtnetlink::Error> {
        let prefix = if vip.is_ipv4() { 32 } else { 128 };
        let mut req = self.handle.address().add(self.ifindex, vip, prefix);
        if vip.is_ipv6() {
            let m = req.message_mut();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(nix::libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Remove the VIP (any prefix length). Returns false if it was not there.
    pub async fn del_vip(&self, vip: IpAddr) -> Result<bool, rtnetlink::Error> {
        let msgs = self.dump_addresses(Some(vip)).await?;
        let mut removed = false;
        for m in msgs {
            match self.handle.address().del(m).execute().await {
                Ok(()) => removed = true,
                Err(e) if matches!(errno(&e), Some(c) if c == nix::libc::EADDRNOTAVAIL || c == nix::libc::ENOENT) =>
                    {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// The address advertisements are sent from: IPv6 uses the interface's link-local address, IPv4 its first
    /// primary (non-secondary) address other than the VIP.
    pub async fn primary_address(
        &self,
        v6: bool,
        vip: IpAddr,
    ) -> Result<Option<IpAddr>, rtnetlink::Error> {
        let addrs = self.addresses().await?;
        let usable = |f: &AddressHeaderFlags| {
            !f.contains(AddressHeaderFlags::Tentative) && !f.contains(AddressHeaderFlags::Dadfailed)
        };
        if v6 {
            Ok(addrs.iter().find_map(|(a, f)| match a {
                IpAddr::V6(v) if v.is_unicast_link_local() && usable(f) => Some(*a),
                _ => None,
            }))
        } else {
            let v4: Vec<(Ipv4Addr, AddressHeaderFlags)> = addrs
                .iter()
                .filter_map(|(a, f)| match a {
                    IpAddr::V4(v) if *a != vip => Some((*v, *f)),
                    _ => None,
                })
                .collect();
            Ok(v4
                .iter()
                .find(|(_, f)| !f.contains(AddressHeaderFlags::Secondary))
                .or(v4.first())
                .map(|(a, _)| IpAddr::V4(*a)))
        }
    }
}

/// Report the interface's state to `tx` whenever the kernel announces a change to it, and every `tick`.
/// Runs until the receiver is dropped.
pub(crate) async fn watch(
    net: Net,
    vip: IpAddr,
    tick: Duration,
    tx: mpsc::Sender<Result<NetState, String>>,
) {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ];
    let mut events = match rtnetlink::new_multicast_connection(&groups) {
        Ok((conn, _h, msgs)) => {
            tokio::spawn(conn);
            Some(msgs)
        }
        Err(e) => {
            // The periodic tick still covers everything, only slower.
            let _ = tx.send(Err(format!("netlink watch: {e}"))).await;
            None
        }
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            m = async { match events.as_mut() { Some(e) => e.next().await, None => std::future::pending().await } } => {
                let Some((msg, _)) = m else { events = None; continue };
                let ours = match msg.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l)) => l.header.index == net.ifindex,
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a)) => a.header.index == net.ifindex,
                    _ => false,
                };
                if !ours { continue; }
            }
        }
        let state = async {
            let link = net.link().await?;
            let vip_present = net.has(vip).await?;
            Ok::<_, rtnetlink::Error>(NetState {
                link_up: link.up,
                vip_present,
            })
        }
        .await
        .map_err(|e| format!("netlink query: {e}"));
        if tx.send(state).await.is_err() {
            return;
        }
    }
}
