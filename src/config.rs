//! The vipd configuration file: its schema, defaults and every validation rule, producing a `Config` of typed
//! values (addresses, durations, enums) so that nothing downstream ever parses or re-checks a string.
//!
//! `Config::load` is what both `vipd validate` and `vipd run` call: same rules, same messages.

pub mod duration;
pub mod fields;
pub mod metrics;
pub mod print;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use vrrp::proto::{Centis, Priority, Version, Vrid};

pub use duration::{fmt_duration, parse_duration};
use fields::{boolean, duration, int, ip, list, one_of, show, socket_addr, text, Section};
pub use fields::{FieldError, FieldErrors};
pub use metrics::MetricsConfig;

/// A validated vipd configuration. Every field holds its default when the file left it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where VRRP runs and the VIP is added.
    pub interface: String,
    pub control_plane_vip: IpAddr,
    pub control_plane_lb_port: u16,
    /// Never empty, no duplicates.
    pub backends: Vec<SocketAddr>,
    pub vrrp: VrrpConfig,
    pub health: HealthConfig,
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    /// The optional listener that serves only `/metrics` (see `config::metrics`).
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VrrpConfig {
    pub vrid: Vrid,
    /// 1..=255 (never 0, which only a leaving master sends); 255 means this node owns the VIP.
    pub priority: Priority,
    /// 10ms..=40.95s in the file, a whole number of centiseconds; with version 2 whole seconds 1s..=255s,
    /// with mixed 1s..=40s.
    pub advert_interval: Centis,
    pub preempt: bool,
    /// At most 1000s.
    pub preempt_delay: Duration,
    /// Empty means multicast. Same family as the VIP, no duplicates, never the VIP or the unicast source.
    pub unicast_peers: Vec<IpAddr>,
    /// `None`: the interface's primary address of the VIP's family. Same family as the VIP.
    pub unicast_source: Option<IpAddr>,
    /// Only meaningful for IPv4 (IPv6 always uses the pseudo-header).
    pub checksum: Checksum,
    pub garp: GarpConfig,
    pub track: Track,
    /// `3` (default), `2` or `mixed` (RFC 5798 8.4: both). 2 and mixed are IPv4 only.
    pub version: Version,
    /// VRRPv2 simple text password (Keepalived's `auth_type PASS`); only with version 2 or mixed. Only its first
    /// 8 bytes go on the wire, as with Keepalived.
    pub auth_pass: Option<String>,
}

/// How the VRRPv3 checksum of IPv4 packets is computed; the two camps do not interoperate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Includes the IPv4 pseudo-header: Keepalived, FRR. The default.
    PseudoHeader,
    /// VRRP message only, as RFC 9568 says for IPv4: Cisco and others.
    MessageOnly,
}

/// Gratuitous ARP / unsolicited neighbour advertisements sent on becoming master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GarpConfig {
    /// Messages per burst, 1..=100.
    pub repeat: u32,
    /// Delay before the second burst, 0 (no second burst) ..=1000s.
    pub delay: Duration,
    /// Periodic refresh while master; zero = off, else 1s..=24h.
    pub refresh: Duration,
}

/// What happens to this node's VRRP priority while it has no healthy backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// The default: advertise priority 1 (`Priority::UNHEALTHY`), below every healthy node whatever the
    /// priorities (no healthy node may be configured with 1), while staying in the election, so that some node
    /// still holds the VIP when none is healthy (bootstrap: kubeadm needs the VIP before the first apiserver).
    Lowest,
    /// Added to the configured priority (clamped to 1..=254 by the VRRP side); -254..=254.
    Weight(i16),
    /// The instance goes to the fault state and gives up the VIP.
    Fault,
}

impl Track {
    /// The priority a node configured with `base` advertises while it has no healthy backend; `None` for
    /// `Fault` (the node leaves instead). Tracking never makes or unmakes an address owner (255) and never
    /// means "leaving" (0): a weight is kept within 1..=254.
    pub fn unhealthy_priority(self, base: Priority) -> Option<Priority> {
        match self {
            Track::Fault => None,
            _ if base == Priority::OWNER => Some(base),
            Track::Lowest => Some(UNHEALTHY_PRIORITY),
            Track::Weight(w) => {
                let p = (i32::from(base.get()) + i32::from(w)).clamp(1, 254);
                Some(Priority(p as u8))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthKind {
    /// HTTPS GET of `path`, expecting `expect_status`, certificate verified against `ca_file`.
    Https,
    /// A TCP connect.
    Tcp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub kind: HealthKind,
    /// Starts with `/`.
    pub path: String,
    /// 100..=599.
    pub expect_status: u16,
    /// 100ms..=5m.
    pub interval: Duration,
    /// 10ms..=interval.
    pub timeout: Duration,
    /// 1..=100 consecutive results to change state.
    pub rise: u32,
    pub fall: u32,
    pub ca_file: PathBuf,
    /// `None`: verify the backend's IP address against the certificate.
    pub server_name: Option<String>,
    /// Both or neither of clientCert / clientKey.
    pub client_auth: Option<ClientAuth>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    LeastConn,
    RoundRobin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// `None`: the VIP, bound with IP_FREEBIND so the proxy listens before this node holds it.
    pub bind: Option<IpAddr>,
    pub balance: Balance,
    /// 10ms..=5m.
    pub connect_timeout: Duration,
    /// 0..=10 other backends tried before a client connection fails.
    pub retries: u32,
    /// 1..=1_000_000.
    pub max_connections: u32,
    /// Zero = none, else at most 7 days.
    pub idle_timeout: Duration,
    /// At most 1h.
    pub drain_timeout: Duration,
    pub shutdown_sessions_on_backend_down: bool,
    /// Threads of the proxy's own, each with its own listening socket (SO_REUSEPORT) and event loop, as
    /// HAProxy's `nbthread`: `None` (`auto`, the default) one per CPU vipd may run on, `Some(0)` none (the
    /// proxy serves on vipd's tokio runtime), `Some(n)` n (1..=64). Fixed at start.
    pub threads: Option<u32>,
}

impl ProxyConfig {
    /// The address the proxy listens on.
    pub fn listen_addr(&self, config_vip: IpAddr, port: u16) -> SocketAddr {
        SocketAddr::new(self.bind.unwrap_or(config_vip), port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Config {
    /// The proxy's listen address: `proxy.bind` (or the VIP) on `controlPlaneLBPort`.
    pub fn proxy_listen(&self) -> SocketAddr {
        self.proxy
            .listen_addr(self.control_plane_vip, self.control_plane_lb_port)
    }

    /// The one line `vipd validate` prints for a valid config.
    pub fn summary(&self, file: &str) -> String {
        let mode = if self.vrrp.unicast_peers.is_empty() {
            "multicast".to_string()
        } else {
            format!("unicast to {} peer(s)", self.vrrp.unicast_peers.len())
        };
        // Said only when it is not the default, so the usual line stays as it was.
        let mode = match self.vrrp.version {
            vrrp::proto::Version::V3 => mode,
            vrrp::proto::Version::V2 => format!("{mode}, VRRPv2"),
            vrrp::proto::Version::Mixed => format!("{mode}, VRRPv3 + VRRPv2 (mixed)"),
        };
        format!(
            "{file}: valid: VIP {} on {}, proxy {} -> {} backend(s), VRID {} priority {} every {}, {mode}",
            self.control_plane_vip,
            self.interface,
            self.proxy_listen(),
            self.backends.len(),
            self.vrrp.vrid,
            self.vrrp.priority,
            fmt_duration(self.vrrp.advert_interval.as_duration()),
        )
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Config::from_yaml(&text)
    }

    /// Validates a config given as YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let value = parse_yaml(text)?;
        Config::from_value(value).map_err(ConfigError::Invalid)
    }

    /// Validates an already parsed document; every problem is returned, not just the first.
    pub fn from_value(value: Value) -> Result<Config, FieldErrors> {
        let mut errs = FieldErrors::default();
        if value.is_null() {
            errs.push(
                "",
                "the file is empty; interface, controlPlaneVIP, backends and vrrp.vrid are required",
            );
            return Err(errs);
        }
        let config =
            Section::new("", value, &mut errs).and_then(|root| parse_root(root, &mut errs));
        match config {
            Some(c) if errs.is_empty() => Ok(c),
            _ => Err(errs),
        }
    }

    /// Re-runs the cross-field rules on a config built in code (the cluster-config path derives one).
    pub fn check(&self) -> Result<(), FieldErrors> {
        let mut errs = FieldErrors::default();
        cross_checks(self, &Listed::of(self), &mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// Why a config could not be used.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not well-formed YAML (or several documents); the message has the line and column.
    Yaml(String),
    /// Well-formed, but breaks the schema or its rules.
    Invalid(FieldErrors),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ConfigError::Yaml(msg) => write!(f, "not valid YAML: {msg}"),
            ConfigError::Invalid(errs) => write!(f, "{errs}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The lines `vipd validate` prints for this error, and a refused reload logs: one per field error and a
    /// count, or the read / YAML error (whose excerpt of the file spans several lines) one line each.
    pub fn lines(&self, path: &Path) -> Vec<String> {
        match self {
            ConfigError::Invalid(errs) => errs
                .iter()
                .map(|e| e.to_string())
                .chain(std::iter::once(format!(
                    "{}: {} error(s)",
                    path.display(),
                    errs.len()
                )))
                .collect(),
            other => format!("{}: {other}", path.display())
                .lines()
                .map(str::to_string)
                .collect(),
        }
    }
}

/// Reads YAML into a generic tree; the schema is applied afterwards so that every error can be reported.
pub(crate) fn parse_yaml(text: &str) -> Result<Value, ConfigError> {
    let value: Value =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    Ok(value)
}

pub const DEFAULT_LB_PORT: u16 = 443;
/// What a node without a healthy backend advertises with `trackWeight: lowest`: the lowest priority that is
/// still a candidate (0 would mean "leaving").
pub const UNHEALTHY_PRIORITY: Priority = Priority(1);
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9440);

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

impl Default for VrrpConfig {
    /// Defaults for everything but `vrid`, which a file must give (1 here only to be a valid value).
    fn default() -> Self {
        VrrpConfig {
            vrid: Vrid::new(1).expect("1 is a valid VRID"),
            priority: Priority(100),
            advert_interval: Centis::new(100).expect("100cs is a valid interval"),
            preempt: true,
            preempt_delay: Duration::ZERO,
            unicast_peers: Vec::new(),
            unicast_source: None,
            checksum: Checksum::PseudoHeader,
            garp: GarpConfig {
                repeat: 5,
                delay: secs(5),
                refresh: Duration::ZERO,
            },
            track: Track::Lowest,
            version: Version::V3,
            auth_pass: None,
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            kind: HealthKind::Https,
            path: "/readyz".to_string(),
            expect_status: 200,
            interval: secs(2),
            timeout: secs(1),
            rise: 2,
            fall: 3,
            ca_file: PathBuf::from("/etc/kubernetes/pki/ca.crt"),
            server_name: None,
            client_auth: None,
            insecure_skip_verify: false,
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            bind: None,
            balance: Balance::LeastConn,
            connect_timeout: secs(2),
            retries: 2,
            max_connections: 20_000,
            idle_timeout: Duration::ZERO,
            drain_timeout: secs(30),
            shutdown_sessions_on_backend_down: false,
            threads: None,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: DEFAULT_ADMIN_LISTEN,
        }
    }
}

/// Assigns `parsed` to `slot` when it parsed; leaves the default otherwise (the error is already recorded).
fn set<T>(slot: &mut T, parsed: Option<T>) {
    if let Some(v) = parsed {
        *slot = v;
    }
}

fn parse_root(mut root: Section, errs: &mut FieldErrors) -> Option<Config> {
    let interface = root
        .require("interface", errs)
        .and_then(|v| interface_name(&root.path("interface"), &v, errs));
    let vip = root
        .require("controlPlaneVIP", errs)
        .and_then(|v| vip_addr(&root.path("controlPlaneVIP"), &v, errs));
    let mut lb_port = DEFAULT_LB_PORT;
    set(
        &mut lb_port,
        root.field("controlPlaneLBPort", errs, int(1..=65535))
            .map(|n| n as u16),
    );
    let mut listed = Listed::default();
    let backends = root
        .require("backends", errs)
        .and_then(|v| parse_backends(&root.path("backends"), v, &mut listed.backends, errs));

    let mut vrrp_sec = root.section("vrrp", errs);
    let (vrrp, partial_vrrp) = parse_vrrp(&mut vrrp_sec, &mut listed.peers, errs);
    vrrp_sec.finish(errs);
    let mut health_sec = root.section("health", errs);
    let health = parse_health(&mut health_sec, errs);
    health_sec.finish(errs);
    let mut proxy_sec = root.section("proxy", errs);
    let proxy = parse_proxy(&mut proxy_sec, errs);
    proxy_sec.finish(errs);
    let mut admin_sec = root.section("admin", errs);
    let mut admin = AdminConfig::default();
    set(
        &mut admin.listen,
        admin_sec.field("listen", errs, socket_addr),
    );
    admin_sec.finish(errs);
    let mut metrics_sec = root.section("metrics", errs);
    let metrics = metrics::parse(&mut metrics_sec, errs);
    metrics_sec.finish(errs);
    root.finish(errs);

    // The cross-field rules all relate to the VIP; they still run when other fields failed, on what did
    // parse (every list entry that parsed, with its index, even when a sibling failed or repeats one), so
    // one pass shows every error. The placeholders never escape: any error makes the whole result an error.
    let complete = interface.is_some() && backends.is_some() && vrrp.is_some();
    let Some(vip) = vip else {
        // Without a VIP, the rules that do not involve it still run.
        unhealthy_priority_rule(vrrp.as_ref().unwrap_or(&partial_vrrp), errs);
        owner_rule(vrrp.as_ref().unwrap_or(&partial_vrrp), errs);
        if let Some(bind) = proxy.bind {
            admin_rule(admin.listen, SocketAddr::new(bind, lb_port), errs);
        }
        return None;
    };
    let config = Config {
        interface: interface.unwrap_or_default(),
        control_plane_vip: vip,
        control_plane_lb_port: lb_port,
        backends: backends.unwrap_or_default(),
        vrrp: vrrp.unwrap_or(partial_vrrp),
        health,
        proxy,
        admin,
        metrics,
    };
    cross_checks(&config, &listed, errs);
    complete.then_some(config)
}

/// The list entries that parsed, each with its index in the file: the cross-field rules name entries by
/// these indices, which a list with a failed or repeated entry removed would shift.
#[derive(Debug, Default)]
struct Listed {
    backends: Vec<(usize, SocketAddr)>,
    peers: Vec<(usize, IpAddr)>,
}

impl Listed {
    /// A config built in code has no file: its own lists, in order.
    fn of(c: &Config) -> Listed {
        Listed {
            backends: c.backends.iter().copied().enumerate().collect(),
            peers: c.vrrp.unicast_peers.iter().copied().enumerate().collect(),
        }
    }
}

/// Linux interface names: 1..=15 bytes, no `/`, no whitespace, not `.` or `..`.
fn interface_name(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<String> {
    let name = text(path, v, errs)?;
    let bad = name.len() > 15
        || name == "."
        || name == ".."
        || name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        errs.push(
            path,
            format!(
                "{name:?} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)"
            ),
        );
        return None;
    }
    Some(name)
}

/// A VIP must be a unicast address some client can reach.
fn vip_addr(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<IpAddr> {
    let a = ip(path, v, errs)?;
    if let Some(why) = not_a_host_address(a) {
        errs.push(path, format!("{a} {why}"));
        return None;
    }
    Some(a)
}

/// Why an address cannot be a VIP, peer or source, if it cannot.
fn not_a_host_address(a: IpAddr) -> Option<&'static str> {
    if a.is_unspecified() {
        Some("is the unspecified address")
    } else if a.is_multicast() {
        Some("is a multicast address")
    } else if a.is_loopback() {
        Some("is a loopback address")
    } else if a == IpAddr::V4(Ipv4Addr::BROADCAST) {
        Some("is the broadcast address")
    } else {
        None
    }
}

/// The backend list, when every entry is good; `listed` gets every entry that parsed (a repeat is reported
/// as such, once), with its index, for the cross-field rules.
fn parse_backends(
    path: &str,
    v: Value,
    listed: &mut Vec<(usize, SocketAddr)>,
    errs: &mut FieldErrors,
) -> Option<Vec<SocketAddr>> {
    let items = list(path, v, errs, |p, item, errs| socket_addr(p, &item, errs))?;
    if items.is_empty() {
        errs.push(path, "at least one backend is required");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.into_iter().enumerate() {
        let Some(a) = item else {
            ok = false;
            continue;
        };
        if out.contains(&a) {
            errs.push(format!("{path}[{i}]"), format!("{a} is listed twice"));
            ok = false;
        } else {
            listed.push((i, a));
            out.push(a);
        }
    }
    ok.then_some(out)
}

/// The section, when complete; and in any case what parsed, defaults elsewhere (for the cross-field rules).
/// `listed_peers` gets every unicast peer that parsed, with its index (see [`Listed`]).
fn parse_vrrp(
    s: &mut Section,
    listed_peers: &mut Vec<(usize, IpAddr)>,
    errs: &mut FieldErrors,
) -> (Option<VrrpConfig>, VrrpConfig) {
    let mut c = VrrpConfig::default();
    let vrid = s
        .require("vrid", errs)
        .and_then(|v| int(1..=255)(&s.path("vrid"), &v, errs));
    set(
        &mut c.priority,
        s.field("priority", errs, int(1..=255))
            .map(|n| Priority(n as u8)),
    );
    set(&mut c.version, s.field("version", errs, vrrp_version));
    let version = c.version;
    set(
        &mut c.advert_interval,
        s.field("advertInterval", errs, |p, v, errs| {
            advert_interval(version, p, v, errs)
        }),
    );
    parse_auth(s, &mut c, errs);
    set(&mut c.preempt, s.field("preempt", errs, boolean));
    set(
        &mut c.preempt_delay,
        s.field("preemptDelay", errs, duration(Duration::ZERO..=secs(1000))),
    );
    if let Some(v) = s.take("unicastPeers") {
        let path = s.path("unicastPeers");
        let peers = list(&path, v, errs, |p, item, errs| {
            let a = ip(p, &item, errs)?;
            if let Some(why) = not_a_host_address(a) {
                errs.push(p, format!("{a} {why}"));
                return None;
            }
            Some(a)
        });
        if let Some(peers) = peers {
            let mut out = Vec::new();
            for (i, p) in peers.into_iter().enumerate() {
                let Some(a) = p else { continue };
                if out.contains(&a) {
                    errs.push(format!("{path}[{i}]"), format!("{a} is listed twice"));
                } else {
                    listed_peers.push((i, a));
                    out.push(a);
                }
            }
            c.unicast_peers = out;
        }
    }
    if let Some(v) = s.take("unicastSource") {
        let path = s.path("unicastSource");
        if let Some(a) = ip(&path, &v, errs) {
            match not_a_host_address(a) {
                Some(why) => errs.push(path, format!("{a} {why}")),
                None => c.unicast_source = Some(a),
            }
        }
    }
    set(
        &mut c.checksum,
        s.field("checksum", errs, one_of(&["pseudoHeader", "messageOnly"]))
            .map(|w| match w {
                "messageOnly" => Checksum::MessageOnly,
                _ => Checksum::PseudoHeader,
            }),
    );
    let mut garp = s.section("garp", errs);
    set(
        &mut c.garp.repeat,
        garp.field("repeat", errs, int(1..=100)).map(|n| n as u32),
    );
    set(
        &mut c.garp.delay,
        garp.field("delay", errs, duration(Duration::ZERO..=secs(1000))),
    );
    set(
        &mut c.garp.refresh,
        garp.field("refresh", errs, garp_refresh),
    );
    garp.finish(errs);
    set(&mut c.track, s.field("trackWeight", errs, track_weight));
    match vrid.and_then(|n| Vrid::new(n as u8)) {
        Some(v) => {
            c.vrid = v;
            (Some(c.clone()), c)
        }
        None => (None, c),
    }
}

/// `3`, `2` or `"mixed"` (the numbers also as strings).
fn vrrp_version(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<Version> {
    match v {
        Value::Number(n) if n.as_i64() == Some(3) => Some(Version::V3),
        Value::Number(n) if n.as_i64() == Some(2) => Some(Version::V2),
        Value::String(s) if s == "3" => Some(Version::V3),
        Value::String(s) if s == "2" => Some(Version::V2),
        Value::String(s) if s == "mixed" => Some(Version::Mixed),
        other => {
            errs.push(
                path,
                format!("{} is not one of 3 | 2 | mixed", fields::show(other)),
            );
            None
        }
    }
}

/// `authPass` and `authType` (Keepalived's `authentication { auth_type PASS  auth_pass ... }`). Whether the
/// version allows them is a cross-field rule ([`cross_checks`]).
fn parse_auth(s: &mut Section, c: &mut VrrpConfig, errs: &mut FieldErrors) {
    let auth_type = s.field("authType", errs, |p, v, errs| match v {
        Value::String(t) if t.eq_ignore_ascii_case("ah") => {
            errs.push(
                p,
                "AH (IPsec Authentication Header, Keepalived's auth_type AH) is not supported: RFC 3768 \
                 dropped it and VRRPv3 has no authentication; use authPass (auth_type PASS) or nothing",
            );
            None
        }
        Value::String(t) if t.eq_ignore_ascii_case("pass") => Some(()),
        other => {
            errs.push(
                p,
                format!(
                    "{} is not pass (AH is not supported)",
                    fields::show(other)
                ),
            );
            None
        }
    });
    let pass = s.field("authPass", errs, |p, v, errs| {
        if v.is_number() {
            errs.push(
                p,
                format!(
                    "{} is a number: quote the password (\"1234\")",
                    fields::show(v)
                ),
            );
            return None;
        }
        let pass = fields::string(p, v, errs)?;
        if pass.is_empty() {
            errs.push(
                p,
                "must not be empty (leave authPass out for no authentication)",
            );
            return None;
        }
        Some(pass)
    });
    if auth_type.is_some() && pass.is_none() && !errs.iter().any(|e| e.path == s.path("authPass")) {
        errs.push(s.path("authPass"), "is required with authType: pass");
    }
    c.auth_pass = pass;
}

/// Version 3: 10ms..=40.95s in whole centiseconds (the packet carries a 12-bit centisecond count). Version 2:
/// whole seconds 1s..=255s (an 8-bit count of seconds). Mixed sends both, so whole seconds 1s..=40s.
fn advert_interval(
    version: Version,
    path: &str,
    v: &Value,
    errs: &mut FieldErrors,
) -> Option<Centis> {
    let max_secs = match version {
        Version::V3 => return advert_interval_v3(path, v, errs),
        Version::V2 => 255,
        Version::Mixed => 40,
    };
    let d = duration(secs(1)..=secs(max_secs))(path, v, errs)?;
    let whole = d.subsec_nanos() == 0;
    if !whole {
        errs.push(
            path,
            format!(
                "{} is not a whole number of seconds (version {} carries the interval in seconds)",
                fields::show(v),
                version.as_str()
            ),
        );
        return None;
    }
    u8::try_from(d.as_secs()).ok().and_then(Centis::from_secs)
}

fn advert_interval_v3(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<Centis> {
    let d = duration(ms(10)..=ms(40_950))(path, v, errs)?;
    let centis = Centis::from_duration(d);
    if centis.is_none() {
        errs.push(
            path,
            format!(
                "{} is not a whole number of centiseconds (10ms steps)",
                fields::show(v)
            ),
        );
    }
    centis
}

fn garp_refresh(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<Duration> {
    let d = duration(Duration::ZERO..=secs(24 * 3600))(path, v, errs)?;
    if !d.is_zero() && d < secs(1) {
        errs.push(
            path,
            format!("{} must be 0s (off) or at least 1s", fields::show(v)),
        );
        return None;
    }
    Some(d)
}

fn track_weight(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<Track> {
    match v {
        Value::String(s) if s == "fault" => Some(Track::Fault),
        Value::String(s) if s == "lowest" => Some(Track::Lowest),
        Value::Number(_) => int(-254..=254)(path, v, errs).map(|n| Track::Weight(n as i16)),
        other => {
            errs.push(
                path,
                format!(
                    "{} is neither an integer in -254..=254 nor \"lowest\" or \"fault\"",
                    fields::show(other)
                ),
            );
            None
        }
    }
}

fn parse_health(s: &mut Section, errs: &mut FieldErrors) -> HealthConfig {
    let mut c = HealthConfig::default();
    parse_probe(s, errs, &mut c);
    let timeout = parse_schedule(s, errs, &mut c);
    parse_tls(s, errs, &mut c);
    // Last, once the interval (given or default) is known.
    apply_timeout(timeout, errs, &mut c);
    c
}

/// What one check asks: `type`, `path`, `expectStatus`.
fn parse_probe(s: &mut Section, errs: &mut FieldErrors, c: &mut HealthConfig) {
    set(
        &mut c.kind,
        s.field("type", errs, one_of(&["https", "tcp"]))
            .map(|w| match w {
                "tcp" => HealthKind::Tcp,
                _ => HealthKind::Https,
            }),
    );
    set(&mut c.path, s.field("path", errs, health_path));
    set(
        &mut c.expect_status,
        s.field("expectStatus", errs, int(100..=599))
            .map(|n| n as u16),
    );
}

fn health_path(p: &str, v: &Value, errs: &mut FieldErrors) -> Option<String> {
    let path = text(p, v, errs)?;
    if !path.starts_with('/') || path.contains(char::is_whitespace) {
        errs.push(
            p,
            format!("{path:?} must start with '/' and contain no spaces"),
        );
        return None;
    }
    Some(path)
}

/// A `timeout` as given (its range checked), with its path for the check against the interval.
struct TimeoutGiven {
    path: String,
    value: Option<Duration>,
}

/// How often and how many: `interval`, `rise`, `fall` set; `timeout` returned, to be checked against the
/// interval by [`apply_timeout`].
fn parse_schedule(s: &mut Section, errs: &mut FieldErrors, c: &mut HealthConfig) -> TimeoutGiven {
    set(
        &mut c.interval,
        s.field("interval", errs, duration(ms(100)..=secs(300))),
    );
    let timeout = TimeoutGiven {
        path: s.path("timeout"),
        value: s.field("timeout", errs, duration(ms(10)..=secs(300))),
    };
    set(
        &mut c.rise,
        s.field("rise", errs, int(1..=100)).map(|n| n as u32),
    );
    set(
        &mut c.fall,
        s.field("fall", errs, int(1..=100)).map(|n| n as u32),
    );
    timeout
}

/// How the HTTPS check trusts and identifies: `caFile`, `serverName`, `clientCert` + `clientKey`,
/// `insecureSkipVerify`.
fn parse_tls(s: &mut Section, errs: &mut FieldErrors, c: &mut HealthConfig) {
    set(
        &mut c.ca_file,
        s.field("caFile", errs, text).map(PathBuf::from),
    );
    c.server_name = s.field("serverName", errs, server_name);
    c.client_auth = client_auth(s, errs);
    set(
        &mut c.insecure_skip_verify,
        s.field("insecureSkipVerify", errs, boolean),
    );
}

fn server_name(p: &str, v: &Value, errs: &mut FieldErrors) -> Option<String> {
    let name = text(p, v, errs)?;
    let ok = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        });
    if !ok && name.parse::<IpAddr>().is_err() {
        errs.push(p, format!("{name:?} is not a DNS name or IP address"));
        return None;
    }
    Some(name)
}

/// `clientCert` and `clientKey`: both or neither.
fn client_auth(s: &mut Section, errs: &mut FieldErrors) -> Option<ClientAuth> {
    let cert_path = s.path("clientCert");
    let cert = s.field("clientCert", errs, text);
    let key_path = s.path("clientKey");
    let key = s.field("clientKey", errs, text);
    match (cert, key) {
        (Some(cert), Some(key)) => Some(ClientAuth {
            cert: cert.into(),
            key: key.into(),
        }),
        (Some(_), None) => {
            errs.push(key_path, "is required when clientCert is set");
            None
        }
        (None, Some(_)) => {
            errs.push(cert_path, "is required when clientKey is set");
            None
        }
        (None, None) => None,
    }
}

/// A check must end before the next one starts: the timeout (given, or the default) within the interval.
fn apply_timeout(timeout: TimeoutGiven, errs: &mut FieldErrors, c: &mut HealthConfig) {
    if let Some(t) = timeout.value {
        if t > c.interval {
            errs.push(
                timeout.path,
                format!(
                    "{} is longer than health.interval ({})",
                    fmt_duration(t),
                    fmt_duration(c.interval)
                ),
            );
        } else {
            c.timeout = t;
        }
    } else if c.timeout > c.interval {
        errs.push(
            timeout.path,
            format!(
                "the default {} is longer than health.interval ({}); set a shorter timeout",
                fmt_duration(c.timeout),
                fmt_duration(c.interval)
            ),
        );
    }
}

fn parse_proxy(s: &mut Section, errs: &mut FieldErrors) -> ProxyConfig {
    let mut c = ProxyConfig::default();
    if let Some(v) = s.take("bind") {
        let path = s.path("bind");
        if let Some(a) = ip(&path, &v, errs) {
            if a.is_multicast() || a == IpAddr::V4(Ipv4Addr::BROADCAST) {
                errs.push(path, format!("{a} cannot be listened on"));
            } else {
                c.bind = Some(a);
            }
        }
    }
    set(
        &mut c.balance,
        s.field("balance", errs, one_of(&["leastconn", "roundrobin"]))
            .map(|w| match w {
                "roundrobin" => Balance::RoundRobin,
                _ => Balance::LeastConn,
            }),
    );
    set(
        &mut c.connect_timeout,
        s.field("connectTimeout", errs, duration(ms(10)..=secs(300))),
    );
    set(
        &mut c.retries,
        s.field("retries", errs, int(0..=10)).map(|n| n as u32),
    );
    set(
        &mut c.max_connections,
        s.field("maxConnections", errs, int(1..=1_000_000))
            .map(|n| n as u32),
    );
    set(
        &mut c.idle_timeout,
        s.field(
            "idleTimeout",
            errs,
            duration(Duration::ZERO..=secs(7 * 24 * 3600)),
        ),
    );
    set(
        &mut c.drain_timeout,
        s.field("drainTimeout", errs, duration(Duration::ZERO..=secs(3600))),
    );
    set(
        &mut c.shutdown_sessions_on_backend_down,
        s.field("shutdownSessionsOnBackendDown", errs, boolean),
    );
    set(&mut c.threads, s.field("threads", errs, proxy_threads));
    c
}

/// `auto` (None) or a thread count 0..=64.
fn proxy_threads(path: &str, v: &Value, errs: &mut FieldErrors) -> Option<Option<u32>> {
    match v {
        Value::String(s) if s == "auto" => Some(None),
        Value::Number(_) => int(0..=64)(path, v, errs).map(|n| Some(n as u32)),
        _ => {
            errs.push(path, format!("{} is not auto or a number 0..=64", show(v)));
            None
        }
    }
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Whether listeners on `a` and `b` (same port) would take the same address, so the second bind fails: the same
/// address, `::` (dual-stack: every address), or `0.0.0.0` beside any IPv4 address. Two different specific
/// addresses (the VIP and 127.0.0.1) can share a port.
fn overlap(a: IpAddr, b: IpAddr) -> bool {
    let v4_wildcard = |x: IpAddr, y: IpAddr| x == IpAddr::V4(Ipv4Addr::UNSPECIFIED) && y.is_ipv4();
    a == b
        || a == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        || b == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        || v4_wildcard(a, b)
        || v4_wildcard(b, a)
}

/// Rules that relate fields to each other; run only on fields that parsed.
fn cross_checks(c: &Config, listed: &Listed, errs: &mut FieldErrors) {
    let vip = c.control_plane_vip;
    for (i, p) in &listed.peers {
        let path = format!("vrrp.unicastPeers[{i}]");
        if p.is_ipv4() != vip.is_ipv4() {
            errs.push(
                path,
                format!(
                    "{p} is {} but controlPlaneVIP {vip} is {}",
                    family(*p),
                    family(vip)
                ),
            );
        } else if *p == vip {
            errs.push(path, format!("{p} is the VIP itself"));
        } else if Some(*p) == c.vrrp.unicast_source {
            errs.push(path, format!("{p} is this node's own unicastSource"));
        }
    }
    if let Some(src) = c.vrrp.unicast_source {
        if src.is_ipv4() != vip.is_ipv4() {
            errs.push(
                "vrrp.unicastSource",
                format!(
                    "{src} is {} but controlPlaneVIP {vip} is {}",
                    family(src),
                    family(vip)
                ),
            );
        } else if src == vip {
            errs.push(
                "vrrp.unicastSource",
                format!(
                    "{src} is the VIP itself (it moves between nodes; use this node's own address)"
                ),
            );
        }
    }
    if vip.is_ipv6() && c.vrrp.version != Version::V3 {
        errs.push(
            "vrrp.version",
            format!(
                "{} speaks VRRPv2, which is IPv4 only, but controlPlaneVIP {vip} is IPv6 (use 3)",
                c.vrrp.version.as_str()
            ),
        );
    }
    if c.vrrp.auth_pass.is_some() && c.vrrp.version == Version::V3 {
        errs.push(
            "vrrp.authPass",
            "VRRPv3 has no authentication: authPass needs vrrp.version 2 or mixed",
        );
    }
    if vip.is_ipv6() && c.vrrp.checksum == Checksum::MessageOnly {
        errs.push(
            "vrrp.checksum",
            "messageOnly applies to IPv4 only (IPv6 VRRP always includes the pseudo-header)",
        );
    }
    unhealthy_priority_rule(&c.vrrp, errs);
    owner_rule(&c.vrrp, errs);
    if let Some(bind) = c.proxy.bind {
        if bind.is_ipv4() != vip.is_ipv4() && !bind.is_unspecified() {
            errs.push(
                "proxy.bind",
                format!(
                    "{bind} is {} but controlPlaneVIP {vip} is {}",
                    family(bind),
                    family(vip)
                ),
            );
        }
    }
    let listen = c.proxy_listen();
    for (i, b) in &listed.backends {
        let loops = b.port() == listen.port()
            && (b.ip() == listen.ip() || b.ip() == vip || listen.ip().is_unspecified());
        if loops {
            errs.push(
                format!("backends[{i}]"),
                format!(
                    "{b} is the proxy's own listen address (controlPlaneVIP:controlPlaneLBPort)"
                ),
            );
        }
    }
    admin_rule(c.admin.listen, listen, errs);
    metrics::cross_checks(c, errs);
}

/// With `priority: 255` (the address owner) the priority never changes, so tracking cannot lower it.
/// Priority 1 is what an unhealthy node advertises by default: a healthy node there could not win over one.
fn unhealthy_priority_rule(v: &VrrpConfig, errs: &mut FieldErrors) {
    if v.priority == UNHEALTHY_PRIORITY && v.track == Track::Lowest {
        errs.push(
            "vrrp.priority",
            "1 is what a node without a healthy backend advertises with trackWeight: lowest (the default), \
             so this node could not win over one; use 2..=255, or a numeric trackWeight or fault",
        );
    }
}

fn owner_rule(v: &VrrpConfig, errs: &mut FieldErrors) {
    if v.priority != Priority::OWNER {
        return;
    }
    if let Track::Weight(w) = v.track {
        if w != 0 {
            errs.push(
                "vrrp.trackWeight",
                format!(
                    "{w} cannot apply to priority 255 (the address owner's priority never changes); \
                     use a priority below 255, or leave trackWeight out (or write 0, lowest or fault)"
                ),
            );
        }
    }
}

/// The admin endpoint may not take the proxy's port on an address the proxy listens on too.
fn admin_rule(admin: SocketAddr, listen: SocketAddr, errs: &mut FieldErrors) {
    if admin.port() == listen.port() && overlap(admin.ip(), listen.ip()) {
        errs.push(
            "admin.listen",
            format!("{admin} collides with the proxy listener {listen}"),
        );
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod version_tests;
