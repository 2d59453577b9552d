//! haproxy.cfg: sections of lines (`global`, `defaults`, `frontend`, `backend`, `listen`, ...), each line a
//! keyword and its words, comments from `#`; and the mapping of one frontend (or `listen`), its
//! `default_backend` and the `defaults` in effect for them to vipd's `controlPlaneLBPort`, `backends`,
//! `health` and `proxy` keys.
//!
//! HAProxy semantics kept in the mapping: a `defaults` section applies to the proxies after it until the next
//! one; a proxy's own line overrides the default; `default-server` options apply to the `server` lines after
//! them; of `option httpchk`, `option ssl-hello-chk` and `option tcp-check` the last one wins; a `check`
//! with none of them is a TCP connect; times without a unit are milliseconds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::render::{quote, Value};
use super::{Doc, ImportError, Loc, VrrpSummary, Warnings};
use crate::config::fmt_duration;

const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "userlist",
    "peers",
    "resolvers",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
    "crt-store",
];

/// One line: its words (quotes removed) and where it is.
#[derive(Debug, Clone)]
pub struct Line {
    pub words: Vec<String>,
    pub loc: Loc,
}

impl Line {
    fn w(&self, i: usize) -> &str {
        self.words.get(i).map(String::as_str).unwrap_or_default()
    }

    fn text(&self) -> String {
        self.words.join(" ")
    }
}

#[derive(Debug, Clone)]
pub struct Section {
    pub kind: String,
    pub name: String,
    pub loc: Loc,
    pub lines: Vec<Line>,
}

/// A parsed haproxy.cfg.
#[derive(Debug, Clone)]
pub struct Cfg {
    pub sections: Vec<Section>,
}

pub fn parse(file: &Arc<str>, text: &str) -> Result<Cfg, ImportError> {
    let mut sections: Vec<Section> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let loc = Loc {
            file: file.clone(),
            line: n as u32 + 1,
        };
        let words = split_line(raw, &loc)?;
        let Some(first) = words.first() else { continue };
        if SECTIONS.contains(&first.as_str()) {
            sections.push(Section {
                kind: first.clone(),
                name: words.get(1).cloned().unwrap_or_default(),
                loc,
                lines: Vec::new(),
            });
            continue;
        }
        match sections.last_mut() {
            Some(s) => s.lines.push(Line { words, loc }),
            None => {
                return Err(ImportError::at(
                    &loc,
                    format!("{first}: outside any section (global, defaults, frontend, backend, listen, ...)"),
                ))
            }
        }
    }
    Ok(Cfg { sections })
}

/// Words separated by blanks; `"..."` and `'...'` quote, `\` escapes one character, `#` outside quotes
/// starts a comment.
fn split_line(line: &str, loc: &Loc) -> Result<Vec<String>, ImportError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(ImportError::at(loc, "unterminated quoted string"));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

// ---- mapping ----

#[derive(Debug, Clone, PartialEq)]
enum CheckKind {
    Http { method: String, uri: String },
    SslHello,
    Tcp,
}

/// A setting and the line it came from; later lines replace earlier ones, as in HAProxy.
type At<T> = Option<(T, Loc)>;

#[derive(Debug, Default)]
struct Settings {
    binds: Vec<Line>,
    default_backend: At<String>,
    mode: At<String>,
    balance: At<String>,
    check_kind: At<CheckKind>,
    send_uri: At<(String, String)>,
    connect_ssl: Option<Loc>,
    expect_status: At<u16>,
    /// `default-server` option words in order, each with its line.
    default_server: Vec<(Vec<String>, Loc)>,
    servers: Vec<Server>,
    timeout_connect: At<Duration>,
    timeout_client: At<Duration>,
    timeout_server: At<Duration>,
    timeout_tunnel: At<Duration>,
    timeout_check: At<Duration>,
    retries: At<u32>,
    maxconn: At<u32>,
    global_maxconn: At<u32>,
    /// Each line read so far, by line number, to name an overridden setting.
    texts: std::collections::HashMap<u32, String>,
}

#[derive(Debug, Clone)]
struct Server {
    name: String,
    addr: SocketAddr,
    /// default-server options in effect, then the server's own.
    opts: Vec<(String, Option<String>, Loc)>,
    loc: Loc,
}

/// Which part of the chosen proxy a section plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Defaults,
    Frontend,
    Backend,
    /// A `listen` section: both.
    Listen,
}

pub(crate) fn map(
    cfg: &Cfg,
    frontend: Option<&str>,
    vrrp: &VrrpSummary,
    doc: &mut Doc,
    warns: &mut Warnings,
) -> Result<(), ImportError> {
    let fe = select_frontend(cfg, frontend)?;
    let fe_sec = &cfg.sections[fe];
    let be = if fe_sec.kind == "listen" {
        fe
    } else {
        find_backend(cfg, fe_sec)?
    };
    let fe_defaults = defaults_before(cfg, fe);
    let be_defaults = defaults_before(cfg, be);
    let mut st = Settings::default();
    let mut used: Vec<(usize, Role)> = Vec::new();
    for d in [fe_defaults, be_defaults].into_iter().flatten() {
        if !used.iter().any(|(i, _)| *i == d) {
            used.push((d, Role::Defaults));
        }
    }
    if fe == be {
        used.push((fe, Role::Listen));
    } else {
        used.push((fe, Role::Frontend));
        used.push((be, Role::Backend));
    }
    for (i, s) in cfg.sections.iter().enumerate() {
        if s.kind == "global" {
            read_global(s, &mut st, warns);
        } else if !used.iter().any(|(u, _)| *u == i) {
            warns.push(
                &s.loc,
                format!(
                    "{} {}: {}",
                    s.kind,
                    s.name,
                    unused_reason(s, &cfg.sections[fe])
                ),
            );
        }
    }
    for (i, role) in &used {
        for l in &cfg.sections[*i].lines {
            read_line(l, *role, &mut st, doc, warns)?;
        }
    }
    emit(&st, &cfg.sections[fe], &cfg.sections[be], vrrp, doc, warns)
}

fn unused_reason(s: &Section, fe: &Section) -> String {
    match s.kind.as_str() {
        "frontend" | "listen" => {
            format!("not the imported frontend ({}); not carried over", fe.name)
        }
        "backend" => format!("not the default_backend of {}; not carried over", fe.name),
        "defaults" => {
            "not in effect for the imported frontend and backend; not carried over".to_string()
        }
        _ => "no vipd equivalent; not carried over".to_string(),
    }
}

/// The frontend or listen section to import: the one named, or the only one that forwards to servers (a
/// `frontend` with a `default_backend`, a `listen` with `server` lines). Stats pages and monitor-only
/// frontends are not candidates; they are named in warnings like every other section left out.
fn select_frontend(cfg: &Cfg, want: Option<&str>) -> Result<usize, ImportError> {
    let all: Vec<usize> = (0..cfg.sections.len())
        .filter(|i| matches!(cfg.sections[*i].kind.as_str(), "frontend" | "listen"))
        .collect();
    let forwards = |i: &usize| {
        let s = &cfg.sections[*i];
        let key = if s.kind == "listen" {
            "server"
        } else {
            "default_backend"
        };
        s.lines.iter().any(|l| l.w(0) == key)
    };
    let candidates: Vec<usize> = all.iter().copied().filter(forwards).collect();
    let list = |ids: &[usize]| {
        ids.iter()
            .map(|i| {
                let s = &cfg.sections[*i];
                format!("{} {} ({})", s.kind, s.name, s.loc)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match want {
        Some(name) => all
            .iter()
            .copied()
            .find(|i| cfg.sections[*i].name == name)
            .ok_or_else(|| {
                ImportError(format!(
                    "--frontend {name}: no frontend or listen section of that name (the file has: {})",
                    if all.is_empty() { "none".to_string() } else { list(&all) }
                ))
            }),
        None => match candidates.as_slice() {
            [one] => Ok(*one),
            [] if all.is_empty() => Err(ImportError(
                "the haproxy config has no frontend or listen section".to_string(),
            )),
            [] => Err(ImportError(format!(
                "no frontend with a default_backend and no listen section with server lines (the file has: {}); choose one with --frontend NAME",
                list(&all)
            ))),
            _ => Err(ImportError(format!(
                "the haproxy config has {} frontend/listen sections that forward to servers: {}; choose one with --frontend NAME",
                candidates.len(),
                list(&candidates)
            ))),
        },
    }
}

fn find_backend(cfg: &Cfg, fe: &Section) -> Result<usize, ImportError> {
    let line = fe
        .lines
        .iter()
        .rev()
        .find(|l| l.w(0) == "default_backend")
        .ok_or_else(|| {
            ImportError::at(
                &fe.loc,
                format!(
                    "frontend {} has no default_backend: no server lines to import",
                    fe.name
                ),
            )
        })?;
    let name = line.w(1);
    cfg.sections
        .iter()
        .position(|s| matches!(s.kind.as_str(), "backend" | "listen") && s.name == name)
        .ok_or_else(|| {
            ImportError::at(
                &line.loc,
                format!("default_backend {name}: no backend of that name"),
            )
        })
}

/// The `defaults` section in effect for the section at `i`: the last one before it.
fn defaults_before(cfg: &Cfg, i: usize) -> Option<usize> {
    (0..i).rev().find(|j| cfg.sections[*j].kind == "defaults")
}

fn read_global(s: &Section, st: &mut Settings, warns: &mut Warnings) {
    for l in &s.lines {
        match l.w(0) {
            "maxconn" => match l.w(1).parse::<u32>() {
                Ok(n) => st.global_maxconn = Some((n, l.loc.clone())),
                Err(_) => warns.push(
                    &l.loc,
                    format!("global maxconn {}: not a number; not carried over", l.w(1)),
                ),
            },
            "log" | "log-send-hostname" | "log-tag" => warns.push(
                &l.loc,
                format!(
                    "global {}: vipd logs to stderr (journald or the pod log)",
                    l.text()
                ),
            ),
            "nbthread" => warns.push(
                &l.loc,
                format!(
                    "global {}: not carried over; vipd's proxy shares vipd's runtime by default \
                     (proxy.threads: N gives it N threads of its own, each with its listener, as nbthread does)",
                    l.text()
                ),
            ),
            "daemon" | "master-worker" | "pidfile" | "chroot" | "user" | "group" | "uid"
            | "gid" | "nbproc" | "cpu-map" | "ulimit-n" => warns.push(
                &l.loc,
                format!(
                    "global {}: process setting; vipd runs as a systemd service or static pod",
                    l.text()
                ),
            ),
            "stats" => warns.push(
                &l.loc,
                format!(
                    "global {}: vipd's runtime state is on its admin endpoint (/status, /metrics)",
                    l.text()
                ),
            ),
            _ => warns.push(
                &l.loc,
                format!("global {}: no vipd equivalent; not carried over", l.text()),
            ),
        }
    }
}

/// One line of a section in effect: mapped into `st` (or `doc`'s header), else named in a warning.
fn read_line(
    l: &Line,
    role: Role,
    st: &mut Settings,
    doc: &mut Doc,
    warns: &mut Warnings,
) -> Result<(), ImportError> {
    let loc = || l.loc.clone();
    st.texts.insert(l.loc.line, l.text());
    let fe_side = matches!(role, Role::Frontend | Role::Listen);
    let be_side = matches!(role, Role::Backend | Role::Listen | Role::Defaults);
    match (l.w(0), l.w(1)) {
        ("bind", _) if fe_side => st.binds.push(l.clone()),
        ("default_backend", _) if role == Role::Frontend => {
            st.default_backend = Some((l.w(1).to_string(), loc()))
        }
        ("mode", m) => {
            match m {
                "tcp" => doc.carried(format!("mode tcp ({}): vipd is a TCP proxy", l.loc)),
                other => warns.push(
                    &l.loc,
                    format!("mode {other}: vipd forwards TCP, as mode tcp does; HTTP processing is not carried over"),
                ),
            }
            st.mode = Some((m.to_string(), loc()));
        }
        ("balance", b) if be_side => put(&mut st.balance, b.to_string(), l, &st.texts, warns),
        ("server", _) if matches!(role, Role::Backend | Role::Listen) => {
            st.servers.push(read_server(l, &st.default_server)?)
        }
        ("default-server", _) if be_side => st.default_server.push((l.words[1..].to_vec(), loc())),
        ("option", "httpchk" | "ssl-hello-chk" | "tcp-check") if be_side => {
            read_check_option(l, st, warns)
        }
        ("http-check", _) if be_side => read_http_check(l, st, warns)?,
        ("option", "redispatch") => doc.carried(format!(
            "option redispatch ({}): vipd tries another backend when a connect fails",
            l.loc
        )),
        ("timeout", kind) => read_timeout(l, kind, st, warns)?,
        ("retries", n) => put(&mut st.retries, parse_u32(l, n)?, l, &st.texts, warns),
        ("maxconn", n) if fe_side || role == Role::Defaults => {
            put(&mut st.maxconn, parse_u32(l, n)?, l, &st.texts, warns)
        }
        _ => warns.push(&l.loc, format!("{}: {}", l.text(), unmapped_reason(l))),
    }
    Ok(())
}

/// `option httpchk [METHOD] URI`, `option ssl-hello-chk`, `option tcp-check`: the last one wins.
fn read_check_option(l: &Line, st: &mut Settings, warns: &mut Warnings) {
    let kind = match l.w(1) {
        "httpchk" => {
            let (method, uri) = match (l.words.get(2), l.words.get(3)) {
                (Some(m), Some(u)) => (m.clone(), u.clone()),
                (Some(u), None) => ("OPTIONS".to_string(), u.clone()),
                _ => ("OPTIONS".to_string(), "/".to_string()),
            };
            CheckKind::Http { method, uri }
        }
        "ssl-hello-chk" => CheckKind::SslHello,
        _ => CheckKind::Tcp,
    };
    put(&mut st.check_kind, kind, l, &st.texts, warns);
}

/// Why a line with no vipd equivalent is not carried over.
fn unmapped_reason(l: &Line) -> &'static str {
    match (l.w(0), l.w(1)) {
        ("log", _)
        | ("option", "tcplog" | "httplog" | "dontlognull" | "log-health-checks" | "logasap") => {
            "vipd logs to stderr (journald or the pod log)"
        }
        (
            "option",
            "http-server-close" | "forwardfor" | "httpclose" | "http-keep-alive" | "http-use-htx",
        ) => "HTTP mode option; vipd forwards TCP (the apiserver's TLS end to end)",
        ("use_backend", _) => "vipd forwards everything to one set of backends; not carried over",
        ("tcp-check", _) => {
            "vipd's tcp check only connects; the tcp-check script is not carried over"
        }
        _ => "no vipd equivalent; not carried over",
    }
}

fn read_http_check(l: &Line, st: &mut Settings, warns: &mut Warnings) -> Result<(), ImportError> {
    match l.w(1) {
        "expect" if l.w(2) == "status" => {
            let n = l
                .w(3)
                .parse::<u16>()
                .ok()
                .filter(|n| (100..=599).contains(n));
            match n {
                Some(n) => st.expect_status = Some((n, l.loc.clone())),
                None => warns.push(
                    &l.loc,
                    format!(
                        "{}: vipd expects one status code; not carried over",
                        l.text()
                    ),
                ),
            }
        }
        "send" => {
            let mut method = "GET".to_string();
            let mut uri = None;
            let mut w = l.words[2..].iter();
            while let Some(k) = w.next() {
                match k.as_str() {
                    "meth" => method = w.next().cloned().unwrap_or(method),
                    "uri" => uri = w.next().cloned(),
                    other => {
                        let v = w.next().cloned().unwrap_or_default();
                        warns.push(&l.loc, format!("http-check send {other} {v}: vipd sends a plain GET; not carried over"));
                    }
                }
            }
            if let Some(u) = uri {
                st.send_uri = Some(((method, u), l.loc.clone()));
            }
        }
        "connect" => {
            let mut w = l.words[2..].iter();
            while let Some(k) = w.next() {
                match k.as_str() {
                    "ssl" => st.connect_ssl = Some(l.loc.clone()),
                    other => {
                        let v = if other == "port" || other == "sni" || other == "alpn" {
                            w.next().cloned().unwrap_or_default()
                        } else {
                            String::new()
                        };
                        warns.push(&l.loc, format!("http-check connect {other} {v}: vipd checks each backend on its own address and port; not carried over"));
                    }
                }
            }
        }
        _ => warns.push(
            &l.loc,
            format!(
                "{}: not carried over (vipd: GET health.path, expect health.expectStatus)",
                l.text()
            ),
        ),
    }
    Ok(())
}

fn read_timeout(
    l: &Line,
    kind: &str,
    st: &mut Settings,
    warns: &mut Warnings,
) -> Result<(), ImportError> {
    let slot = match kind {
        "connect" => &mut st.timeout_connect,
        "client" => &mut st.timeout_client,
        "server" => &mut st.timeout_server,
        "tunnel" => &mut st.timeout_tunnel,
        "check" => &mut st.timeout_check,
        _ => {
            warns.push(
                &l.loc,
                format!(
                    "{}: no vipd equivalent (vipd forwards TCP); not carried over",
                    l.text()
                ),
            );
            return Ok(());
        }
    };
    let t = parse_time(l, l.w(2))?;
    put(slot, t, l, &st.texts, warns);
    Ok(())
}

/// Sets a setting; the line it replaces (a default overridden by the proxy, or a repeated keyword) is
/// named in a warning, so it does not vanish.
fn put<T>(
    slot: &mut At<T>,
    v: T,
    l: &Line,
    texts: &std::collections::HashMap<u32, String>,
    warns: &mut Warnings,
) {
    if let Some((_, old)) = slot.replace((v, l.loc.clone())) {
        let was = texts.get(&old.line).cloned().unwrap_or_default();
        warns.push(
            &old,
            format!(
                "{was}: overridden by {} ({}), as in HAProxy",
                l.text(),
                l.loc
            ),
        );
    }
}

/// Server options that take a value (the rest are flags).
const VALUED: &[&str] = &[
    "inter",
    "fastinter",
    "downinter",
    "fall",
    "rise",
    "port",
    "verify",
    "ca-file",
    "weight",
    "maxconn",
    "maxqueue",
    "minconn",
    "slowstart",
    "sni",
    "check-sni",
    "crt",
    "addr",
    "id",
    "cookie",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "init-addr",
    "resolvers",
    "resolve-prefer",
    "observe",
    "error-limit",
    "agent-port",
    "agent-inter",
    "agent-addr",
    "agent-send",
    "check-proto",
    "proto",
    "alpn",
    "check-alpn",
    "ciphers",
    "ssl-min-ver",
    "ssl-max-ver",
    "pool-max-conn",
    "pool-purge-delay",
    "source",
    "track",
    "redir",
    "namespace",
    "usesrc",
    "proxy-v2-options",
    "max-reuse",
    "tfo",
    "ws",
];

fn split_opts(words: &[String], loc: &Loc) -> Vec<(String, Option<String>, Loc)> {
    let mut out = Vec::new();
    let mut w = words.iter();
    while let Some(k) = w.next() {
        let v = if VALUED.contains(&k.as_str()) {
            w.next().cloned()
        } else {
            None
        };
        out.push((k.clone(), v, loc.clone()));
    }
    out
}

fn read_server(l: &Line, defaults: &[(Vec<String>, Loc)]) -> Result<Server, ImportError> {
    let name = l.w(1).to_string();
    let addr_word = l.w(2);
    let addr = parse_server_addr(addr_word).ok_or_else(|| {
        ImportError::at(
            &l.loc,
            format!(
                "server {name} {addr_word}: vipd needs an address and port (IPv4 a.b.c.d:port, IPv6 [addr]:port), not a name or a missing port"
            ),
        )
    })?;
    let mut opts = Vec::new();
    for (words, loc) in defaults {
        opts.extend(split_opts(words, loc));
    }
    opts.extend(split_opts(&l.words[3.min(l.words.len())..], &l.loc));
    Ok(Server {
        name,
        addr,
        opts,
        loc: l.loc.clone(),
    })
}

fn parse_server_addr(s: &str) -> Option<SocketAddr> {
    let s = s
        .strip_prefix("ipv4@")
        .or_else(|| s.strip_prefix("ipv6@"))
        .unwrap_or(s);
    if let Ok(a) = s.parse::<SocketAddr>() {
        return (a.port() != 0).then_some(a);
    }
    // HAProxy also reads a bare IPv6 address with the port after its last colon.
    let (host, port) = s.rsplit_once(':')?;
    let ip: Ipv6Addr = host.parse().ok()?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some(SocketAddr::new(IpAddr::V6(ip), port))
}

/// `bind` address: (`None` = all addresses of that family, the address otherwise), port.
fn parse_bind(l: &Line) -> Result<(Option<IpAddr>, IpAddr, u16), ImportError> {
    let word = l.w(1);
    let bad = |why: &str| ImportError::at(&l.loc, format!("bind {word}: {why}"));
    if word.contains(',') {
        return Err(bad(
            "several addresses on one bind line; vipd listens on one address (use one bind line)",
        ));
    }
    let s = word
        .strip_prefix("ipv4@")
        .or_else(|| word.strip_prefix("ipv6@"))
        .unwrap_or(word);
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| bad("expected [address]:port"))?;
        (h, p)
    } else {
        s.rsplit_once(':').ok_or_else(|| bad("no port"))?
    };
    if port.contains('-') {
        return Err(bad("a port range; vipd listens on one port"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("not a port"))?;
    let (any, ip) = match host {
        "" | "*" | "0.0.0.0" => (true, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        "::" | ":" => (true, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        h => (
            false,
            h.parse::<IpAddr>()
                .map_err(|_| bad("vipd needs an address, not a name"))?,
        ),
    };
    Ok((if any { None } else { Some(ip) }, ip, port))
}

fn emit(
    st: &Settings,
    fe: &Section,
    be: &Section,
    vrrp: &VrrpSummary,
    doc: &mut Doc,
    warns: &mut Warnings,
) -> Result<(), ImportError> {
    emit_bind(st, fe, vrrp, doc, warns)?;
    if let Some((name, loc)) = &st.default_backend {
        doc.carried(format!(
            "default_backend {name} ({loc}): its server lines are the backends"
        ));
    }
    if st.mode.is_none() {
        warns.push(
            &fe.loc,
            "no mode: HAProxy's default is http; vipd forwards TCP, as mode tcp does",
        );
    }
    if st.servers.is_empty() {
        return Err(ImportError::at(
            &be.loc,
            format!(
                "{} {} has no server lines: no backends to import",
                be.kind, be.name
            ),
        ));
    }
    let items = st
        .servers
        .iter()
        .map(|s| {
            (
                quote(&s.addr.to_string()),
                format!("{} server {}", s.loc, s.name),
            )
        })
        .collect();
    doc.set(
        "backends",
        Value::List(items),
        format!("{} {} {}", be.loc, be.kind, be.name),
    );
    emit_health(st, doc, warns);
    emit_proxy(st, doc, warns);
    Ok(())
}

fn emit_bind(
    st: &Settings,
    fe: &Section,
    vrrp: &VrrpSummary,
    doc: &mut Doc,
    warns: &mut Warnings,
) -> Result<(), ImportError> {
    let Some(first) = st.binds.first() else {
        return Err(ImportError::at(
            &fe.loc,
            format!("{} {} has no bind line", fe.kind, fe.name),
        ));
    };
    for extra in &st.binds[1..] {
        warns.push(
            &extra.loc,
            format!(
                "bind {}: vipd listens on one address; only the first bind line ({}) is carried over",
                extra.w(1),
                first.loc
            ),
        );
    }
    let (addr, ip, port) = parse_bind(first)?;
    let opts = &first.words[2..];
    if opts.iter().any(|o| o == "ssl") {
        return Err(ImportError::at(
            &first.loc,
            "bind ... ssl: HAProxy terminates TLS here; vipd forwards TCP and leaves TLS to the apiservers",
        ));
    }
    if !opts.is_empty() {
        warns.push(
            &first.loc,
            format!("bind options {}: not carried over", opts.join(" ")),
        );
    }
    doc.set(
        "controlPlaneLBPort",
        Value::raw(port),
        format!("{} bind {}", first.loc, first.w(1)),
    );
    match addr {
        Some(a) if a == vrrp.vip => {}
        Some(a) => doc.set(
            "proxy.bind",
            Value::str(&a.to_string()),
            format!("{} bind {}", first.loc, first.w(1)),
        ),
        None => doc.set(
            "proxy.bind",
            Value::str(&ip.to_string()),
            format!(
                "{} bind {}: every address (leave out to listen on the VIP only)",
                first.loc,
                first.w(1)
            ),
        ),
    }
    Ok(())
}

/// The health check: its kind from the check options, timing from the servers' `inter` / `fall` / `rise`
/// (which must agree, vipd has one setting), TLS from `check-ssl` or `http-check connect ssl`.
fn emit_health(st: &Settings, doc: &mut Doc, warns: &mut Warnings) {
    let sv = ServerChecks::gather(&st.servers, warns);
    if !sv.any_check {
        warns.push(
            &st.servers[0].loc,
            "no server has check: HAProxy did not check the backends; vipd always does (see health)",
        );
    }
    let ssl = sv.check_ssl.clone().or(st.connect_ssl.clone());
    let https = match &st.check_kind {
        Some((CheckKind::Http { method, uri }, loc)) => {
            emit_http_check(st, method, uri, loc, ssl.is_some(), doc, warns);
            true
        }
        Some((CheckKind::SslHello, loc)) => {
            doc.set(
                "health.type",
                Value::str("tcp"),
                format!("{loc} option ssl-hello-chk"),
            );
            warns.push(
                loc,
                "option ssl-hello-chk: vipd's tcp check only connects; type: https (GET /readyz) checks more",
            );
            false
        }
        Some((CheckKind::Tcp, loc)) => {
            doc.set(
                "health.type",
                Value::str("tcp"),
                format!("{loc} option tcp-check"),
            );
            false
        }
        None => {
            let loc = sv.first_check.clone().unwrap_or(st.servers[0].loc.clone());
            if ssl.is_some() {
                doc.set(
                    "health.type",
                    Value::str("https"),
                    format!("{loc} check-ssl"),
                );
                warns.push(
                    &loc,
                    "check-ssl without httpchk: HAProxy only completed a TLS handshake; vipd also GETs health.path",
                );
            } else {
                doc.set(
                    "health.type",
                    Value::str("tcp"),
                    format!("{loc} check: a TCP connect"),
                );
            }
            ssl.is_some()
        }
    };
    warn_unused_http_lines(st, warns);
    if let Some((_, l)) = &sv.verify_none {
        let why = if https {
            "check-ssl verify none: vipd verifies the backends against health.caFile"
        } else {
            "verify none: vipd's tcp check makes no TLS handshake"
        };
        warns.push(l, why);
    }
    sv.emit(doc);
    emit_check_timeout(st, doc, warns);
}

/// `option httpchk` with `http-check send` / `expect`: vipd's HTTPS GET of a path, expecting one status.
fn emit_http_check(
    st: &Settings,
    method: &str,
    uri: &str,
    loc: &Loc,
    ssl: bool,
    doc: &mut Doc,
    warns: &mut Warnings,
) {
    let (method, uri, uri_loc) = match &st.send_uri {
        Some(((m, u), l)) => (m.as_str(), u.as_str(), l.clone()),
        None => (method, uri, loc.clone()),
    };
    doc.set(
        "health.type",
        Value::str("https"),
        format!("{loc} option httpchk"),
    );
    if !ssl {
        warns.push(
            loc,
            "option httpchk without check-ssl: vipd checks over HTTPS (the apiservers serve only TLS)",
        );
    }
    if method != "GET" {
        warns.push(&uri_loc, format!("httpchk method {method}: vipd sends GET"));
    }
    if uri.starts_with('/') && !uri.contains(char::is_whitespace) {
        doc.set(
            "health.path",
            Value::str(uri),
            format!("{uri_loc} {method} {uri}"),
        );
    } else {
        warns.push(
            &uri_loc,
            format!("httpchk uri {uri}: not a path; vipd's default is used"),
        );
    }
    if let Some((n, l)) = &st.expect_status {
        doc.set(
            "health.expectStatus",
            Value::raw(n),
            format!("{l} http-check expect status {n}"),
        );
    }
}

/// Without `option httpchk` in effect, `http-check` lines do nothing in HAProxy either: say so.
fn warn_unused_http_lines(st: &Settings, warns: &mut Warnings) {
    let kind = match &st.check_kind {
        Some((CheckKind::Http { .. }, _)) => return,
        Some((_, l)) => format!("the check kind is the one at {l}"),
        None => "there is no option httpchk".to_string(),
    };
    let locs = [
        st.expect_status.as_ref().map(|x| &x.1),
        st.send_uri.as_ref().map(|x| &x.1),
        st.connect_ssl.as_ref(),
    ];
    for l in locs.into_iter().flatten() {
        warns.push(l, format!("http-check: unused, {kind} (as in HAProxy)"));
    }
}

fn emit_check_timeout(st: &Settings, doc: &mut Doc, warns: &mut Warnings) {
    let interval = match doc.get("health.interval") {
        Some(Value::Scalar(s)) => {
            crate::config::parse_duration(s).unwrap_or(Duration::from_secs(2))
        }
        _ => Duration::from_secs(2),
    };
    match &st.timeout_check {
        Some((t, l)) if *t > interval => {
            warns.push(
                l,
                format!(
                    "timeout check {}: vipd's health.timeout is at most health.interval ({})",
                    fmt_duration(*t),
                    fmt_duration(interval)
                ),
            );
            doc.set(
                "health.timeout",
                Value::raw(fmt_duration(interval)),
                format!("{l} timeout check, capped at health.interval"),
            );
        }
        Some((t, l)) => doc.set(
            "health.timeout",
            Value::raw(fmt_duration(*t)),
            format!("{l} timeout check"),
        ),
        None if interval < Duration::from_secs(1) => {
            doc.set(
                "health.timeout",
                Value::raw(fmt_duration(interval)),
                "HAProxy times a check out after inter",
            );
        }
        None => {}
    }
}

/// What the servers' check options say, with the line each came from.
#[derive(Debug, Default)]
struct ServerChecks {
    any_check: bool,
    first_check: Option<Loc>,
    check_ssl: Option<Loc>,
    verify_none: At<()>,
    inter: At<Duration>,
    fall: At<u32>,
    rise: At<u32>,
    ca_file: At<String>,
}

impl ServerChecks {
    fn gather(servers: &[Server], warns: &mut Warnings) -> ServerChecks {
        let mut sc = ServerChecks::default();
        let mut warned: Vec<String> = Vec::new();
        for s in servers {
            let mut per: ServerChecks = ServerChecks::default();
            for (k, v, loc) in &s.opts {
                let v = v.clone().unwrap_or_default();
                match k.as_str() {
                    "check" => {
                        per.any_check = true;
                        per.first_check = Some(loc.clone());
                    }
                    "check-ssl" => per.check_ssl = Some(loc.clone()),
                    "verify" if v == "none" => per.verify_none = Some(((), loc.clone())),
                    "verify" => {}
                    "inter" => per.inter = parse_time_str(&v).map(|d| (d, loc.clone())),
                    "fall" => per.fall = v.parse().ok().map(|n| (n, loc.clone())),
                    "rise" => per.rise = v.parse().ok().map(|n| (n, loc.clone())),
                    "ca-file" => per.ca_file = Some((v, loc.clone())),
                    "port" if v.parse::<u16>().ok() == Some(s.addr.port()) => {}
                    other => {
                        if !warned.contains(&other.to_string()) {
                            warned.push(other.to_string());
                            warns.push(
                                loc,
                                format!(
                                    "server option {other}{}: {}",
                                    if v.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" {v}")
                                    },
                                    server_opt_reason(other)
                                ),
                            );
                        }
                    }
                }
            }
            sc.merge(per, s, warns);
        }
        sc
    }

    /// The first server's values stand; a server that differs is named in a warning.
    fn merge(&mut self, per: ServerChecks, s: &Server, warns: &mut Warnings) {
        self.any_check |= per.any_check;
        self.first_check = self.first_check.take().or(per.first_check);
        self.check_ssl = self.check_ssl.take().or(per.check_ssl);
        self.verify_none = self.verify_none.take().or(per.verify_none);
        fn agree<T: PartialEq + std::fmt::Debug>(
            slot: &mut At<T>,
            new: At<T>,
            what: &str,
            s: &Server,
            warns: &mut Warnings,
        ) {
            match (slot.as_ref(), new) {
                (None, n) => *slot = n,
                (Some((a, _)), Some((b, l))) if *a != b => warns.push(&l, format!("server {} {what} {b:?} differs from the first server's {a:?}; vipd uses one value for all backends", s.name)),
                _ => {}
            }
        }
        agree(&mut self.inter, per.inter, "inter", s, warns);
        agree(&mut self.fall, per.fall, "fall", s, warns);
        agree(&mut self.rise, per.rise, "rise", s, warns);
        agree(&mut self.ca_file, per.ca_file, "ca-file", s, warns);
    }

    fn emit(&self, doc: &mut Doc) {
        if let Some((d, l)) = &self.inter {
            let d = (*d).clamp(Duration::from_millis(100), Duration::from_secs(300));
            doc.set(
                "health.interval",
                Value::raw(fmt_duration(d)),
                format!("{l} inter"),
            );
        }
        if let Some((n, l)) = &self.rise {
            doc.set(
                "health.rise",
                Value::raw((*n).clamp(1, 100)),
                format!("{l} rise"),
            );
        }
        if let Some((n, l)) = &self.fall {
            doc.set(
                "health.fall",
                Value::raw((*n).clamp(1, 100)),
                format!("{l} fall"),
            );
        }
        if let Some((f, l)) = &self.ca_file {
            doc.set("health.caFile", Value::str(f), format!("{l} ca-file"));
        }
    }
}

fn server_opt_reason(opt: &str) -> &'static str {
    match opt {
        "port" => "vipd checks each backend on its own address and port",
        "weight" => "vipd balances over all backends equally",
        "maxconn" | "maxqueue" | "minconn" => "vipd limits connections in total (proxy.maxConnections), not per backend",
        "backup" => "vipd has no backup servers: every backend is used",
        "slowstart" => "vipd sends a backend its share as soon as it is healthy",
        "fastinter" | "downinter" => "vipd checks every health.interval in every state",
        "ssl" => "vipd does not re-encrypt: the client's TLS reaches the apiserver",
        "disabled" => "the server is imported as a normal backend; remove it from backends if it should stay out",
        _ => "not carried over",
    }
}

fn emit_proxy(st: &Settings, doc: &mut Doc, warns: &mut Warnings) {
    if let Some((b, l)) = &st.balance {
        match b.as_str() {
            "roundrobin" | "static-rr" => doc.set("proxy.balance", Value::str("roundrobin"), format!("{l} balance {b}")),
            "leastconn" => doc.set("proxy.balance", Value::str("leastconn"), format!("{l} balance {b}")),
            other => warns.push(l, format!("balance {other}: vipd balances by leastconn or roundrobin; vipd's default (leastconn) is used")),
        }
    }
    if let Some((t, l)) = &st.timeout_connect {
        let t = (*t).clamp(Duration::from_millis(10), Duration::from_secs(300));
        doc.set(
            "proxy.connectTimeout",
            Value::raw(fmt_duration(t)),
            format!("{l} timeout connect"),
        );
    }
    if let Some((n, l)) = &st.retries {
        if *n > 10 {
            warns.push(
                l,
                format!("retries {n}: vipd tries at most 10 other backends"),
            );
        }
        doc.set(
            "proxy.retries",
            Value::raw((*n).min(10)),
            format!("{l} retries (vipd retries on another backend)"),
        );
    }
    if let (Some((_, l)), Some((n, g))) = (&st.maxconn, &st.global_maxconn) {
        warns.push(
            g,
            format!("global maxconn {n}: the process limit; proxy.maxConnections comes from the proxy's maxconn ({l})"),
        );
    }
    if let Some((n, l)) = st.maxconn.as_ref().or(st.global_maxconn.as_ref()) {
        doc.set(
            "proxy.maxConnections",
            Value::raw((*n).clamp(1, 1_000_000)),
            format!("{l} maxconn"),
        );
    }
    emit_idle(st, doc, warns);
}

/// HAProxy closes a quiet TCP session when `timeout tunnel` (or, without it, the shorter of `client` and
/// `server`) passes: that is vipd's `idleTimeout`.
fn emit_idle(st: &Settings, doc: &mut Doc, warns: &mut Warnings) {
    let idle = match (&st.timeout_tunnel, &st.timeout_client, &st.timeout_server) {
        (Some((t, l)), _, _) => Some((*t, format!("{l} timeout tunnel"))),
        (None, Some((c, lc)), Some((s, ls))) => Some(if c <= s {
            (
                *c,
                format!("{lc} timeout client (shorter than timeout server, {ls})"),
            )
        } else {
            (
                *s,
                format!("{ls} timeout server (shorter than timeout client, {lc})"),
            )
        }),
        (None, Some((t, l)), None) => Some((*t, format!("{l} timeout client"))),
        (None, None, Some((t, l))) => Some((*t, format!("{l} timeout server"))),
        (None, None, None) => None,
    };
    if let Some((_, tl)) = &st.timeout_tunnel {
        for (_, l) in [&st.timeout_client, &st.timeout_server]
            .into_iter()
            .flatten()
        {
            let was = st.texts.get(&l.line).cloned().unwrap_or_default();
            warns.push(
                l,
                format!("{was}: superseded by timeout tunnel ({tl}) once a TCP session is established, as in HAProxy"),
            );
        }
    }
    let Some((t, from)) = idle else { return };
    let t = t.min(Duration::from_secs(7 * 24 * 3600));
    doc.set("proxy.idleTimeout", Value::raw(fmt_duration(t)), from);
    if t < Duration::from_secs(3600) {
        let loc = st
            .timeout_tunnel
            .as_ref()
            .or(st.timeout_client.as_ref())
            .or(st.timeout_server.as_ref())
            .map(|x| x.1.clone())
            .expect("a timeout was set");
        warns.push(&loc, format!("idle timeout {}: watches and `kubectl logs -f` that stay quiet longer are cut, as with HAProxy; vipd's default is none (idleTimeout: 0s)", fmt_duration(t)));
    }
}

fn parse_u32(l: &Line, v: &str) -> Result<u32, ImportError> {
    v.parse()
        .map_err(|_| ImportError::at(&l.loc, format!("{} {v}: expected a number", l.w(0))))
}

/// HAProxy times: a number with an optional unit (us, ms, s, m, h, d); no unit means milliseconds.
fn parse_time_str(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "us" => Duration::from_micros(n),
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => return None,
    })
}

fn parse_time(l: &Line, v: &str) -> Result<Duration, ImportError> {
    parse_time_str(v).ok_or_else(|| {
        ImportError::at(
            &l.loc,
            format!(
                "{} {v}: not a HAProxy time (e.g. 5s, 500ms, 5000)",
                l.text()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_sections_and_comments() {
        let cfg = parse(
            &Arc::from("h.cfg"),
            "# c\nglobal\n  log \"/dev/log\" local0 # x\ndefaults\n  timeout connect 5s\n",
        )
        .unwrap();
        assert_eq!(cfg.sections.len(), 2);
        assert_eq!(
            cfg.sections[0].lines[0].words,
            ["log", "/dev/log", "local0"]
        );
        assert_eq!(cfg.sections[1].lines[0].loc.line, 5);
        let e = parse(&Arc::from("h.cfg"), "  bind :80\n").unwrap_err();
        assert!(e.0.starts_with("h.cfg:1: bind: outside any section"), "{e}");
    }

    #[test]
    fn nbthread_points_at_proxy_threads() {
        let cfg = parse(&Arc::from("h.cfg"), "global\n  nbthread 4\n  daemon\n").unwrap();
        let mut warns = Warnings::default();
        read_global(&cfg.sections[0], &mut Settings::default(), &mut warns);
        assert_eq!(warns.0.len(), 2);
        assert_eq!(warns.0[0].loc.line, 2);
        assert!(
            warns.0[0]
                .message
                .starts_with("global nbthread 4: not carried over")
                && warns.0[0].message.contains("proxy.threads: N"),
            "{}",
            warns.0[0].message
        );
        assert!(warns.0[1].message.contains("process setting"));
    }

    #[test]
    fn times_default_to_milliseconds() {
        assert_eq!(parse_time_str("5000"), Some(Duration::from_secs(5)));
        assert_eq!(parse_time_str("35s"), Some(Duration::from_secs(35)));
        assert_eq!(parse_time_str("3h"), Some(Duration::from_secs(3 * 3600)));
        assert_eq!(parse_time_str("1x"), None);
    }

    #[test]
    fn bind_and_server_addresses() {
        let line = |w: &str| Line {
            words: vec!["bind".into(), w.into()],
            loc: Loc {
                file: Arc::from("h"),
                line: 1,
            },
        };
        assert_eq!(
            parse_bind(&line("*:8443")).unwrap(),
            (None, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8443)
        );
        assert_eq!(
            parse_bind(&line(":::443")).unwrap(),
            (None, IpAddr::V6(Ipv6Addr::UNSPECIFIED), 443)
        );
        assert_eq!(
            parse_bind(&line("192.0.2.100:8443")).unwrap().0,
            Some("192.0.2.100".parse().unwrap())
        );
        assert_eq!(parse_bind(&line("[2001:db8::1]:443")).unwrap().2, 443);
        assert!(parse_bind(&line("192.0.2.1:80-81")).is_err());
        assert!(parse_bind(&line("lb.example:443")).is_err());
        assert_eq!(
            parse_server_addr("2001:db8::20:6443"),
            Some("[2001:db8::20]:6443".parse().unwrap())
        );
        assert_eq!(
            parse_server_addr("192.0.2.20:6443"),
            Some("192.0.2.20:6443".parse().unwrap())
        );
        assert_eq!(parse_server_addr("cp1.example:6443"), None);
        assert_eq!(parse_server_addr("192.0.2.20"), None);
    }
}
