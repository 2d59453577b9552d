//! Prometheus metrics (OpenMetrics text on `/metrics`), read at scrape time from the counters VRRP, health and
//! the proxy already keep: nothing on a hot path updates a metric twice.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use vrrp::proto::State;

use crate::live::{Live, SharedLive};

/// A registry holding vipd's collector.
pub fn registry(live: SharedLive) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(VipdCollector { live }));
    r
}

/// Renders the registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        let _ = writeln!(out, "# encoding failed");
    }
    out
}

#[derive(Debug)]
struct VipdCollector {
    live: SharedLive,
}

pub fn state_name(s: State) -> &'static str {
    match s {
        State::Initialize => "initialize",
        State::Backup => "backup",
        State::Master => "master",
        State::Fault => "fault",
    }
}

type Labels = Vec<(&'static str, String)>;

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(0i64);
    let mut m = enc.encode_descriptor(name, help, None, g.metric_type())?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(0u64);
    let mut m = enc.encode_descriptor(name, help, None, c.metric_type())?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for VipdCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let live = self.live.read().unwrap_or_else(|e| e.into_inner()).clone();
        let vrid = live.config.vrrp.vrid.get().to_string();
        encode_vrrp_state(&mut enc, &live, &vrid)?;
        encode_vrrp_counters(&mut enc, &live.vrrp_stats, &vrid)?;
        encode_health(&mut enc, &live.health.borrow())?;
        encode_proxy(&mut enc, &live.proxy_stats)?;
        encode_backend_sessions(&mut enc, &live.proxy_stats)?;
        encode_reloads(&mut enc, &live)
    }
}

type Enc<'a, 'b> = &'a mut DescriptorEncoder<'b>;

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn backend_label(addr: std::net::SocketAddr) -> Labels {
    vec![("backend", addr.to_string())]
}

/// State, priorities and whether the VIP is held: what an operator reads first.
fn encode_vrrp_state(enc: Enc<'_, '_>, live: &Live, vrid: &str) -> Result<(), std::fmt::Error> {
    let vr = || vec![("vrid", vrid.to_string())];
    let status = live.vrrp_status.borrow().clone();
    let states = [
        State::Initialize,
        State::Backup,
        State::Master,
        State::Fault,
    ];
    let rows: Vec<_> = states
        .iter()
        .map(|s| {
            let mut l = vr();
            l.push(("state", state_name(*s).to_string()));
            (l, i64::from(status.state == *s))
        })
        .collect();
    gauge(
        enc,
        "vipd_vrrp_state",
        "VRRP state (1 for the current one)",
        &rows,
    )?;
    gauge(
        enc,
        "vipd_vrrp_effective_priority",
        "Priority advertised now (configured, adjusted by tracking)",
        &[(vr(), i64::from(status.effective_priority.get()))],
    )?;
    gauge(
        enc,
        "vipd_vrrp_configured_priority",
        "Priority from the config file",
        &[(vr(), i64::from(live.config.vrrp.priority.get()))],
    )?;
    gauge(
        enc,
        "vipd_vip_held",
        "1 while this node holds the VIP",
        &[(
            vec![("vip", live.config.control_plane_vip.to_string())],
            i64::from(status.vip_held),
        )],
    )?;
    Ok(())
}

/// VRRP's counters: adverts, drops by reason, gratuitous ARP, errors.
fn encode_vrrp_counters(
    enc: Enc<'_, '_>,
    st: &vrrp::sys::VrrpStats,
    vrid: &str,
) -> Result<(), std::fmt::Error> {
    let vr = || vec![("vrid", vrid.to_string())];
    let c = load;
    counter(
        enc,
        "vipd_vrrp_transitions",
        "VRRP state transitions",
        &[(vr(), c(&st.transitions))],
    )?;
    counter(
        enc,
        "vipd_vrrp_adverts_sent",
        "VRRP advertisements sent",
        &[(vr(), c(&st.adverts_sent))],
    )?;
    counter(
        enc,
        "vipd_vrrp_adverts_received",
        "Valid VRRP advertisements received",
        &[(vr(), c(&st.adverts_received))],
    )?;
    let drops: Vec<_> = st
        .drops()
        .into_iter()
        .map(|(reason, n)| {
            let mut l = vr();
            l.push(("reason", reason.to_string()));
            (l, n)
        })
        .collect();
    counter(
        enc,
        "vipd_vrrp_packets_dropped",
        "Received VRRP packets dropped, by reason",
        &drops,
    )?;
    counter(
        enc,
        "vipd_vrrp_garp_sent",
        "Gratuitous ARP / unsolicited NA frames sent",
        &[(vr(), c(&st.garp_sent))],
    )?;
    counter(
        enc,
        "vipd_vrrp_garp_repair_sent",
        "Gratuitous ARP / NA frames naming the new master's MAC, sent after stepping down",
        &[(vr(), c(&st.garp_repair_sent))],
    )?;
    counter(
        enc,
        "vipd_vrrp_garp_repair_skipped",
        "Repairs after stepping down skipped: the new master's MAC was not seen",
        &[(vr(), c(&st.garp_repair_skipped))],
    )?;
    counter(
        enc,
        "vipd_vrrp_netlink_errors",
        "Netlink operations that failed (VIP add/remove, link watch)",
        &[(vr(), c(&st.netlink_errors))],
    )?;
    counter(
        enc,
        "vipd_vrrp_vip_restored",
        "Times the VIP was put back after someone else removed it while master",
        &[(vr(), c(&st.vip_restored))],
    )?;
    counter(
        enc,
        "vipd_vrrp_send_errors",
        "Advertisements that could not be sent",
        &[(vr(), c(&st.send_errors))],
    )?;
    counter(
        enc,
        "vipd_vrrp_v2_peer_adverts",
        "VRRPv2 advertisements for our VRID heard while running version 3: a router that cannot hear us",
        &[(vr(), c(&st.v2_peer_adverts))],
    )?;
    counter(
        enc,
        "vipd_vrrp_v3_peer_adverts",
        "VRRPv3 advertisements for our VRID without VRRPv2 copies, heard while running version 2: a router \
         that cannot hear us",
        &[(vr(), c(&st.v3_peer_adverts))],
    )?;
    counter(
        enc,
        "vipd_vrrp_late_timers",
        "VRRP timers that fired more than an advertisement interval (and 100 ms) late: vipd was not scheduled",
        &[(vr(), c(&st.late_timers))],
    )?;

    Ok(())
}

/// Health per backend, and the count of healthy ones (what tracking looks at).
fn encode_health(enc: Enc<'_, '_>, health: &health::Snapshot) -> Result<(), std::fmt::Error> {
    let b = backend_label;
    let rows: Vec<_> = health
        .iter()
        .map(|h| (b(h.addr), i64::from(h.healthy)))
        .collect();
    gauge(
        enc,
        "vipd_backend_healthy",
        "1 while the backend passes its health checks",
        &rows,
    )?;
    let rows: Vec<_> = health.iter().map(|h| (b(h.addr), h.checks)).collect();
    counter(enc, "vipd_backend_checks", "Health checks run", &rows)?;
    let rows: Vec<_> = health.iter().map(|h| (b(h.addr), h.failures)).collect();
    counter(
        enc,
        "vipd_backend_check_failures",
        "Health checks failed",
        &rows,
    )?;
    gauge(
        enc,
        "vipd_healthy_backends",
        "Backends passing their health checks",
        &[(vec![], health.iter().filter(|h| h.healthy).count() as i64)],
    )?;

    Ok(())
}

/// The proxy's listener: sessions open, accepted, refused and failed.
fn encode_proxy(enc: Enc<'_, '_>, ps: &proxy::ProxyStats) -> Result<(), std::fmt::Error> {
    let c = load;
    gauge(
        enc,
        "vipd_proxy_active_connections",
        "Client sessions open now",
        &[(vec![], c(&ps.active) as i64)],
    )?;
    counter(
        enc,
        "vipd_proxy_accepted_connections",
        "Client connections accepted",
        &[(vec![], c(&ps.accepted))],
    )?;
    counter(
        enc,
        "vipd_proxy_refused_connections",
        "Client connections closed at once because maxConnections was reached",
        &[(vec![], c(&ps.refused))],
    )?;
    counter(
        enc,
        "vipd_proxy_no_backend",
        "Client connections closed because no backend could be reached",
        &[(vec![], c(&ps.no_backend))],
    )?;
    counter(
        enc,
        "vipd_proxy_panic_picks",
        "Backend picks made while no backend was healthy (all were tried)",
        &[(vec![], c(&ps.panic_picks))],
    )?;
    counter(
        enc,
        "vipd_proxy_accept_errors",
        "accept(2) failures",
        &[(vec![], c(&ps.accept_errors))],
    )?;
    Ok(())
}

/// Sessions, bytes, connect failures and retries per backend.
fn encode_backend_sessions(
    enc: Enc<'_, '_>,
    ps: &proxy::ProxyStats,
) -> Result<(), std::fmt::Error> {
    let (b, c) = (backend_label, load);
    let per = ps.backends();
    let rows: Vec<_> = per
        .iter()
        .map(|(a, s)| (b(*a), c(&s.active) as i64))
        .collect();
    gauge(
        enc,
        "vipd_backend_active_connections",
        "Sessions open to the backend",
        &rows,
    )?;
    let rows: Vec<_> = per.iter().map(|(a, s)| (b(*a), c(&s.total))).collect();
    counter(
        enc,
        "vipd_backend_connections",
        "Sessions established to the backend",
        &rows,
    )?;
    let rows: Vec<_> = per
        .iter()
        .flat_map(|(a, s)| {
            let mut up = b(*a);
            up.push(("direction", "to_backend".into()));
            let mut down = b(*a);
            down.push(("direction", "to_client".into()));
            [(up, c(&s.bytes_to_backend)), (down, c(&s.bytes_to_client))]
        })
        .collect();
    counter(enc, "vipd_backend_bytes", "Bytes forwarded", &rows)?;
    let rows: Vec<_> = per
        .iter()
        .map(|(a, s)| (b(*a), c(&s.connect_failures)))
        .collect();
    counter(
        enc,
        "vipd_backend_connect_failures",
        "Connects to the backend that failed or timed out",
        &rows,
    )?;
    let rows: Vec<_> = per.iter().map(|(a, s)| (b(*a), c(&s.retries))).collect();
    counter(
        enc,
        "vipd_backend_retries",
        "Connects to the backend made after another backend failed",
        &rows,
    )?;

    Ok(())
}

fn encode_reloads(enc: Enc<'_, '_>, live: &Live) -> Result<(), std::fmt::Error> {
    counter(
        enc,
        "vipd_config_reloads",
        "Successful configuration reloads",
        &[(vec![], live.reloads)],
    )?;
    counter(
        enc,
        "vipd_config_reload_failures",
        "Refused configuration reloads",
        &[(vec![], live.reload_failures)],
    )?;
    Ok(())
}
