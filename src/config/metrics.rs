//! The `metrics` section: an optional second listener that serves only `/metrics`, on an address Prometheus
//! can reach (the node's own address, or the wildcard), while the admin endpoint stays on loopback.
//!
//! Why a listener of its own rather than `admin.listen` on the node address: `/status` names the node, its
//! peers and backends, and the admin endpoint is what probes and `vipd status` use; a scraper needs none of
//! that. The static pod runs on the host network, so the listener is on the node's address with nothing else
//! to map.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::fields::{socket_addr, FieldErrors, Section};
use super::Config;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// `None` (the default): no metrics listener; `/metrics` is on the admin endpoint only.
    pub listen: Option<SocketAddr>,
}

/// Reads the `metrics` section (its per-value rules; the ones relating it to other sections are in
/// [`cross_checks`]).
pub(crate) fn parse(s: &mut Section, errs: &mut FieldErrors) -> MetricsConfig {
    let path = s.path("listen");
    let listen = s.field("listen", errs, socket_addr).filter(|a| {
        let why = if a.ip().is_loopback() {
            Some(
                "is a loopback address, which no Prometheus off this node can reach (admin.listen already \
                 serves /metrics on loopback); use this node's address or 0.0.0.0",
            )
        } else if a.ip().is_multicast() || a.ip() == IpAddr::V4(Ipv4Addr::BROADCAST) {
            Some("cannot be listened on")
        } else {
            None
        };
        if let Some(why) = why {
            errs.push(path.clone(), format!("{a} {why}"));
        }
        why.is_none()
    });
    MetricsConfig { listen }
}

/// Whether two listen addresses would take the same socket: the same port on overlapping addresses, by the
/// rule `admin.listen` follows too ([`super::overlap`]).
pub(crate) fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && super::overlap(a.ip(), b.ip())
}

/// `metrics.listen` against the VIP, the proxy and the admin endpoint.
pub(crate) fn cross_checks(c: &Config, errs: &mut FieldErrors) {
    let Some(m) = c.metrics.listen else { return };
    let path = "metrics.listen";
    if m.ip() == c.control_plane_vip {
        errs.push(
            path,
            format!(
                "{m} is on the VIP, which moves between nodes (Prometheus would scrape whichever node holds \
                 it); use this node's own address or 0.0.0.0"
            ),
        );
        return;
    }
    let proxy = c.proxy_listen();
    if clash(m, proxy) {
        errs.push(
            path,
            format!("{m} collides with the proxy listener {proxy}"),
        );
    }
    let admin = c.admin.listen;
    if clash(m, admin) {
        errs.push(
            path,
            format!("{m} collides with admin.listen {admin}; give the metrics listener a port of its own"),
        );
    }
}
