//! keepalived.conf: a tokenizer (words, quoted strings, `{`, `}`, comments from `!` or `#`), `include`
//! expanded where it stands, a tree of statements that keeps each one's file and line, and the mapping of
//! one `vrrp_instance` (with the `vrrp_script`s it tracks and the `global_defs` it inherits) to vipd's
//! `interface`, `controlPlaneVIP` and `vrrp` keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::render::Value;
use super::{display_name, read, Doc, ImportError, Loc, VrrpSummary, Warnings};
use crate::config::fmt_duration;

/// How deep `include` may nest (Keepalived allows a file to include others; a loop must end).
const MAX_INCLUDE_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    /// End of a line: statements end there unless a block is open.
    Eol,
}

/// One statement: a keyword, its arguments on the same line, and a `{ }` block if it has one.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub key: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Stmt>>,
    pub loc: Loc,
}

impl Stmt {
    pub(crate) fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }

    /// The one argument a `key value` statement must have.
    pub(crate) fn value(&self) -> Result<&str, ImportError> {
        self.arg(0)
            .ok_or_else(|| ImportError::at(&self.loc, format!("{} needs a value", self.key)))
    }

    pub(crate) fn children(&self) -> &[Stmt] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// Reads a keepalived.conf and every file it includes into statements.
pub fn parse_file(path: &Path) -> Result<Vec<Stmt>, ImportError> {
    let mut toks = Vec::new();
    tokenize_file(path, 0, &mut toks)?;
    let mut i = 0;
    let stmts = parse_block(&toks, &mut i, None)?;
    Ok(stmts)
}

/// Parses keepalived.conf text (no includes are followed: for tests).
pub fn parse_str(name: &str, text: &str) -> Result<Vec<Stmt>, ImportError> {
    let mut toks = Vec::new();
    tokenize(Arc::from(name), text, Path::new("."), 0, &mut toks)?;
    let mut i = 0;
    parse_block(&toks, &mut i, None)
}

fn tokenize_file(path: &Path, depth: usize, out: &mut Vec<(Tok, Loc)>) -> Result<(), ImportError> {
    let text = read(path)?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    tokenize(display_name(path), &text, &dir, depth, out)
}

fn tokenize(
    file: Arc<str>,
    text: &str,
    dir: &Path,
    depth: usize,
    out: &mut Vec<(Tok, Loc)>,
) -> Result<(), ImportError> {
    for (n, raw) in text.lines().enumerate() {
        let loc = Loc {
            file: file.clone(),
            line: n as u32 + 1,
        };
        let words = split_line(raw, &loc)?;
        if words.first().map(|(w, _)| w.as_str()) == Some("include") {
            let Some((pattern, _)) = words.get(1) else {
                return Err(ImportError::at(&loc, "include needs a file name"));
            };
            include(pattern, dir, &loc, depth, out)?;
            continue;
        }
        for (w, quoted) in words {
            let tok = match (w.as_str(), quoted) {
                ("{", false) => Tok::Open,
                ("}", false) => Tok::Close,
                _ => Tok::Word(w),
            };
            out.push((tok, loc.clone()));
        }
        out.push((Tok::Eol, loc));
    }
    Ok(())
}

/// Splits one line into words: `{` and `}` are words of their own, `"..."` is one word, and a comment
/// (`!` or `#` outside quotes) ends the line. The bool says the word was quoted.
fn split_line(line: &str, loc: &Loc) -> Result<Vec<(String, bool)>, ImportError> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    let mut cur = String::new();
    let flush = |cur: &mut String, words: &mut Vec<(String, bool)>| {
        if !cur.is_empty() {
            words.push((std::mem::take(cur), false));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '!' | '#' => break,
            '"' => {
                flush(&mut cur, &mut words);
                let mut q = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(ch) => q.push(ch),
                        None => return Err(ImportError::at(loc, "unterminated quoted string")),
                    }
                }
                words.push((q, true));
            }
            '{' | '}' => {
                flush(&mut cur, &mut words);
                words.push((c.to_string(), false));
            }
            c if c.is_whitespace() => flush(&mut cur, &mut words),
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut words);
    Ok(words)
}

/// `include PATTERN`: relative to the including file's directory; `*` and `?` in the file name match as in a
/// shell (files in name order). A pattern that matches nothing is an error: what it held cannot be known.
fn include(
    pattern: &str,
    dir: &Path,
    loc: &Loc,
    depth: usize,
    out: &mut Vec<(Tok, Loc)>,
) -> Result<(), ImportError> {
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(ImportError::at(
            loc,
            format!("include {pattern}: more than {MAX_INCLUDE_DEPTH} levels of include (a loop?)"),
        ));
    }
    let full = dir.join(pattern);
    let files: Vec<PathBuf> = match full.file_name().and_then(|n| n.to_str()) {
        Some(name) if name.contains(['*', '?']) => {
            let parent = full.parent().unwrap_or(Path::new("."));
            let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
                .map_err(|e| {
                    ImportError::at(loc, format!("include {pattern}: {}: {e}", parent.display()))
                })?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_str().is_some_and(|n| glob_match(name, n)))
                .map(|e| e.path())
                .collect();
            found.sort();
            found
        }
        _ => vec![full.clone()],
    };
    if files.is_empty() || !files[0].exists() {
        return Err(ImportError::at(
            loc,
            format!("include {pattern}: no such file ({})", full.display()),
        ));
    }
    for f in files {
        tokenize_file(&f, depth + 1, out)?;
    }
    Ok(())
}

fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    !name.starts_with('.') && go(&p, &n)
}

/// Statements until the `}` that closes `opened_at` (or the end of input at top level). A `{` at the start of
/// a line opens the block of the statement before it, as Keepalived allows.
fn parse_block(
    toks: &[(Tok, Loc)],
    i: &mut usize,
    opened_at: Option<&Loc>,
) -> Result<Vec<Stmt>, ImportError> {
    let mut stmts: Vec<Stmt> = Vec::new();
    while let Some((tok, loc)) = toks.get(*i) {
        *i += 1;
        match tok {
            Tok::Eol => {}
            Tok::Close => {
                return match opened_at {
                    Some(_) => Ok(stmts),
                    None => Err(ImportError::at(loc, "'}' closes no block")),
                }
            }
            Tok::Open => {
                let block = parse_block(toks, i, Some(loc))?;
                match stmts.last_mut() {
                    Some(s) if s.block.is_none() => s.block = Some(block),
                    _ => return Err(ImportError::at(loc, "'{' opens a block for no keyword")),
                }
            }
            Tok::Word(w) => {
                let mut s = Stmt {
                    key: w.clone(),
                    args: Vec::new(),
                    block: None,
                    loc: loc.clone(),
                };
                while let Some((Tok::Word(a), _)) = toks.get(*i) {
                    s.args.push(a.clone());
                    *i += 1;
                }
                if let Some((Tok::Open, l)) = toks.get(*i) {
                    *i += 1;
                    s.block = Some(parse_block(toks, i, Some(l))?);
                }
                stmts.push(s);
            }
        }
    }
    match opened_at {
        Some(l) => Err(ImportError::at(l, "'{' is never closed")),
        None => Ok(stmts),
    }
}

// ---- mapping ----

/// A `vrrp_script`: only its weight carries over; the script itself is replaced by vipd's health checks.
#[derive(Debug, Clone)]
struct Script {
    loc: Loc,
    weight: i32,
    weight_loc: Option<Loc>,
    /// The keys not carried over, for the warning.
    keys: Vec<String>,
}

/// `global_defs` settings an instance inherits.
#[derive(Debug, Default)]
struct Globals {
    version: Option<(u8, Loc)>,
    garp: HashMap<&'static str, Stmt>,
}

/// Maps the chosen `vrrp_instance` into `doc`; warns about everything else in the file.
/// With `lvs`, the `virtual_server` blocks are left to [`super::lvs`] (no haproxy.cfg was given).
pub(crate) fn map(
    stmts: &[Stmt],
    instance: Option<&str>,
    lvs: bool,
    doc: &mut Doc,
    warns: &mut Warnings,
) -> Result<VrrpSummary, ImportError> {
    let inst = select_instance(stmts, instance)?;
    let mut globals = Globals::default();
    let mut scripts = HashMap::new();
    for s in stmts {
        match s.key.as_str() {
            "global_defs" => read_globals(s, &mut globals, warns)?,
            "vrrp_script" => {
                let name = s.arg(0).unwrap_or_default().to_string();
                scripts.insert(name, read_script(s)?);
            }
            "vrrp_instance" if std::ptr::eq(s, inst) => {}
            "vrrp_instance" => warns.push(
                &s.loc,
                format!(
                    "vrrp_instance {}: not the one imported ({}); not carried over",
                    s.arg(0).unwrap_or_default(),
                    inst.arg(0).unwrap_or_default()
                ),
            ),
            "virtual_server" if lvs => {}
            other => warns.push(&s.loc, format!("{other}: {}", top_level_reason(other))),
        }
    }
    let summary = map_instance(inst, &globals, &scripts, doc, warns)?;
    let tracked = tracked_scripts(inst);
    let mut unused: Vec<(&String, &Script)> = scripts
        .iter()
        .filter(|(n, _)| !tracked.contains(n))
        .collect();
    unused.sort_by_key(|(_, s)| s.loc.line);
    for (name, s) in unused {
        warns.push(
            &s.loc,
            format!("vrrp_script {name}: not tracked by the imported instance; not carried over"),
        );
    }
    Ok(summary)
}

fn top_level_reason(key: &str) -> &'static str {
    match key {
        "virtual_server" | "virtual_server_group" => {
            "LVS is not carried over: the backends come from haproxy.cfg (without --haproxy, from the virtual_server of the VIP)"
        }
        "vrrp_sync_group" => "vipd runs one VRRP instance; sync groups are not carried over",
        "static_ipaddress" | "static_routes" | "static_rules" => {
            "vipd manages only the VIP; keep these in the host's network config"
        }
        "vrrp_track_process" | "vrrp_track_file" | "track_file" | "track_process" => {
            "replaced by vipd's own health checks of the backends"
        }
        _ => "not understood by vipd import; not carried over",
    }
}

fn select_instance<'a>(stmts: &'a [Stmt], want: Option<&str>) -> Result<&'a Stmt, ImportError> {
    let all: Vec<&Stmt> = stmts.iter().filter(|s| s.key == "vrrp_instance").collect();
    let names = || {
        all.iter()
            .map(|s| format!("{} ({})", s.arg(0).unwrap_or("?"), s.loc))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match want {
        Some(name) => all
            .iter()
            .find(|s| s.arg(0) == Some(name))
            .copied()
            .ok_or_else(|| {
                ImportError(format!(
                    "--instance {name}: no such vrrp_instance (the file has: {})",
                    if all.is_empty() { "none".to_string() } else { names() }
                ))
            }),
        None => match all.as_slice() {
            [] => Err(ImportError(
                "the keepalived config has no vrrp_instance block".to_string(),
            )),
            [one] => Ok(one),
            _ => Err(ImportError(format!(
                "the keepalived config has {} vrrp_instance blocks: {}; choose one with --instance NAME",
                all.len(),
                names()
            ))),
        },
    }
}

fn read_globals(s: &Stmt, g: &mut Globals, warns: &mut Warnings) -> Result<(), ImportError> {
    for c in s.children() {
        match c.key.as_str() {
            "vrrp_version" => g.version = Some((parse_version(c)?, c.loc.clone())),
            "vrrp_garp_master_delay" => {
                g.garp.insert("delay", c.clone());
            }
            "vrrp_garp_master_repeat" => {
                g.garp.insert("repeat", c.clone());
            }
            "vrrp_garp_master_refresh" => {
                g.garp.insert("refresh", c.clone());
            }
            key => warns.push(&c.loc, format!("global_defs {key}: {}", global_reason(key))),
        }
    }
    Ok(())
}

fn global_reason(key: &str) -> &'static str {
    match key {
        "router_id" => "vipd needs no router id; not carried over",
        "enable_script_security" | "script_user" => "vipd runs no scripts; not carried over",
        k if k.starts_with("notification_email") || k.starts_with("smtp_") => {
            "vipd sends no mail; alert on its /metrics instead"
        }
        "vrrp_strict" => {
            "vipd always follows the RFC's receive checks and adds no firewall rules; not carried over"
        }
        "vrrp_skip_check_adv_addr" => {
            "vipd logs an advertisement whose address list differs from its own and accepts it"
        }
        _ => "no vipd equivalent; not carried over",
    }
}

fn read_script(s: &Stmt) -> Result<Script, ImportError> {
    let mut script = Script {
        loc: s.loc.clone(),
        weight: 0,
        weight_loc: None,
        keys: Vec::new(),
    };
    for c in s.children() {
        if c.key == "weight" {
            script.weight = parse_int(c, c.value()?, -253..=253)?;
            script.weight_loc = Some(c.loc.clone());
            if let Some(extra) = c.arg(1) {
                script.keys.push(format!("weight {extra}"));
            }
        } else {
            script.keys.push(c.key.clone());
        }
    }
    Ok(script)
}

fn tracked_scripts(inst: &Stmt) -> Vec<String> {
    inst.children()
        .iter()
        .filter(|c| c.key == "track_script")
        .flat_map(|c| c.children().iter().map(|t| t.key.clone()))
        .collect()
}

/// What the instance says, gathered before anything is written (priority depends on state, version on
/// the VIP's family, the track weight on the priority).
#[derive(Debug, Default)]
struct Instance<'a> {
    state: Option<&'a Stmt>,
    priority: Option<(u8, &'a Stmt)>,
    version: Option<(u8, Loc)>,
    auth: Option<&'a Stmt>,
    vips: Option<&'a Stmt>,
    tracks: Vec<&'a Stmt>,
    garp: HashMap<&'static str, &'a Stmt>,
    advert: Option<&'a Stmt>,
}

fn map_instance(
    inst: &Stmt,
    globals: &Globals,
    scripts: &HashMap<String, Script>,
    doc: &mut Doc,
    warns: &mut Warnings,
) -> Result<VrrpSummary, ImportError> {
    let name = inst.arg(0).unwrap_or_default().to_string();
    let mut it = Instance::default();
    for c in inst.children() {
        map_instance_key(c, &mut it, doc, warns)?;
    }
    let at = |k: &str| format!("vrrp_instance {name} ({}) has no {k}", inst.loc);
    if doc.get("interface").is_none() {
        return Err(ImportError(at("interface")));
    }
    if doc.get("vrrp.vrid").is_none() {
        return Err(ImportError(at("virtual_router_id")));
    }
    let vip = map_vips(it.vips, doc, warns)?
        .ok_or_else(|| ImportError(at("virtual_ipaddress (the VIP)")))?;
    let priority = map_priority(&it, doc, warns);
    map_tracking(&it, priority, scripts, doc, warns);
    map_garp(&it, globals, doc)?;
    map_version(&it, globals, vip, doc, warns)?;
    Ok(VrrpSummary { vip })
}

fn map_instance_key<'a>(
    c: &'a Stmt,
    it: &mut Instance<'a>,
    doc: &mut Doc,
    warns: &mut Warnings,
) -> Result<(), ImportError> {
    let from = |c: &Stmt| format!("{} {}", c.loc, c.key);
    match c.key.as_str() {
        "state" => it.state = Some(c),
        "interface" => doc.set("interface", Value::str(c.value()?), from(c)),
        "virtual_router_id" => {
            let n = parse_int(c, c.value()?, 1..=255)?;
            doc.set("vrrp.vrid", Value::raw(n), from(c));
        }
        "priority" => it.priority = Some((parse_int(c, c.value()?, 1..=255)? as u8, c)),
        "advert_int" => {
            it.advert = Some(c);
            let d = parse_seconds(c)?;
            doc.set(
                "vrrp.advertInterval",
                Value::raw(fmt_duration(d)),
                format!("{} advert_int {}", c.loc, c.value()?),
            );
        }
        "version" => it.version = Some((parse_version(c)?, c.loc.clone())),
        "authentication" => it.auth = Some(c),
        "virtual_ipaddress" => it.vips = Some(c),
        "unicast_src_ip" => {
            let a = parse_ip(c, c.value()?)?;
            doc.set("vrrp.unicastSource", Value::str(&a.to_string()), from(c));
        }
        "unicast_peer" => map_peers(c, doc, warns)?,
        "nopreempt" | "no_preempt" => doc.set("vrrp.preempt", Value::raw(false), from(c)),
        "preempt" => doc.set("vrrp.preempt", Value::raw(true), from(c)),
        "preempt_delay" => {
            let d = parse_seconds(c)?;
            doc.set(
                "vrrp.preemptDelay",
                Value::raw(fmt_duration(d)),
                format!("{} preempt_delay {}", c.loc, c.value()?),
            );
        }
        "garp_master_delay" => {
            it.garp.insert("delay", c);
        }
        "garp_master_repeat" => {
            it.garp.insert("repeat", c);
        }
        "garp_master_refresh" => {
            it.garp.insert("refresh", c);
        }
        "track_script" => it.tracks.push(c),
        key => warns.push(&c.loc, format!("{key}: {}", instance_reason(key))),
    }
    Ok(())
}

fn instance_reason(key: &str) -> &'static str {
    match key {
        k if k.starts_with("notify") => {
            "vipd runs no notify scripts; its state is on /status, /metrics and in its log"
        }
        "track_interface" => "vipd watches the link of its own interface and gives up the VIP when it goes down",
        "virtual_ipaddress_excluded" => "vipd carries one VIP; excluded addresses are not carried over",
        "virtual_routes" | "virtual_rules" => "vipd manages only the VIP; not carried over",
        "use_vmac" | "vmac_xmit_base" => {
            "vipd sends from the interface's own MAC, as Keepalived does without use_vmac; not carried over"
        }
        "dont_track_primary" => "vipd always watches its interface's link; not carried over",
        "smtp_alert" => "vipd sends no mail; alert on its /metrics instead",
        "strict_mode" => "vipd always follows the RFC's receive checks; not carried over",
        "mcast_src_ip" => {
            "vipd sends multicast from the interface's primary address; set vrrp.unicastSource only for unicast"
        }
        _ => "no vipd equivalent; not carried over",
    }
}

fn map_peers(c: &Stmt, doc: &mut Doc, warns: &mut Warnings) -> Result<(), ImportError> {
    let mut items = Vec::new();
    for p in c.children() {
        let a = parse_ip(p, &p.key)?;
        if !p.args.is_empty() {
            warns.push(
                &p.loc,
                format!(
                    "unicast_peer {} {}: vipd checks that unicast advertisements come from a listed peer; TTL bounds are not carried over",
                    p.key,
                    p.args.join(" ")
                ),
            );
        }
        items.push((super::render::quote(&a.to_string()), format!("{}", p.loc)));
    }
    doc.set(
        "vrrp.unicastPeers",
        Value::List(items),
        format!("{} unicast_peer", c.loc),
    );
    Ok(())
}

/// The first address is the VIP; the rest are named in warnings (vipd carries one VIP per instance).
fn map_vips(
    block: Option<&Stmt>,
    doc: &mut Doc,
    warns: &mut Warnings,
) -> Result<Option<IpAddr>, ImportError> {
    let Some(block) = block else { return Ok(None) };
    let interface = match doc.get("interface") {
        Some(Value::Scalar(s)) => s.clone(),
        _ => String::new(),
    };
    let mut vip = None;
    for v in block.children() {
        let (addr, prefix) = match v.key.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (v.key.as_str(), None),
        };
        let a = parse_ip(v, addr)?;
        if vip.is_some() {
            warns.push(
                &v.loc,
                format!(
                    "virtual_ipaddress {}: vipd carries one VIP per node; this address is not carried over \
                     (while Keepalived nodes remain they still add it; give it its own vipd instance or drop it)",
                    v.key
                ),
            );
            continue;
        }
        vip = Some(a);
        doc.set(
            "controlPlaneVIP",
            Value::str(&a.to_string()),
            format!("{} virtual_ipaddress", v.loc),
        );
        if let Some(p) = prefix {
            let host = if a.is_ipv4() { "32" } else { "128" };
            if p != host {
                warns.push(
                    &v.loc,
                    format!("virtual_ipaddress {}: vipd adds the VIP as /{host}; the /{p} prefix (and its subnet route) is not carried over", v.key),
                );
            }
        }
        map_vip_options(v, &interface, warns);
    }
    Ok(vip)
}

fn map_vip_options(v: &Stmt, interface: &str, warns: &mut Warnings) {
    let mut args = v.args.iter();
    while let Some(opt) = args.next() {
        let val = args.next().map(String::as_str).unwrap_or_default();
        match opt.as_str() {
            "dev" if quote_free(val) == interface => {}
            "dev" => warns.push(
                &v.loc,
                format!("virtual_ipaddress dev {val}: vipd adds the VIP on its interface ({interface})"),
            ),
            "label" => warns.push(
                &v.loc,
                format!("virtual_ipaddress label {val}: vipd adds the VIP without a label"),
            ),
            other => warns.push(
                &v.loc,
                format!("virtual_ipaddress {other} {val}: not carried over (vipd adds the VIP as a host address)"),
            ),
        }
    }
}

fn quote_free(s: &str) -> &str {
    s.trim_matches('"')
}

/// `priority`, or Keepalived's default: 255 for `state MASTER` with no priority, else 100.
fn map_priority(it: &Instance<'_>, doc: &mut Doc, warns: &mut Warnings) -> u8 {
    let master = it
        .state
        .is_some_and(|s| s.arg(0).is_some_and(|v| v.eq_ignore_ascii_case("MASTER")));
    let priority = match it.priority {
        Some((p, s)) => {
            doc.set(
                "vrrp.priority",
                Value::raw(p),
                format!("{} priority", s.loc),
            );
            p
        }
        None if master => {
            let s = it.state.expect("master implies a state line");
            doc.set(
                "vrrp.priority",
                Value::raw(255),
                format!("{} state MASTER with no priority: Keepalived's 255", s.loc),
            );
            255
        }
        None => 100,
    };
    if let Some(s) = it.state {
        let state = s.arg(0).unwrap_or_default();
        if !(master && it.priority.is_none()) {
            warns.push(
                &s.loc,
                format!(
                    "state {state}: vipd has no initial state; the highest priority takes the VIP"
                ),
            );
        }
    }
    priority
}

/// `track_script` weights become `vrrp.trackWeight`: vipd lowers the priority while no backend is healthy,
/// which is what a script that curls the apiserver approximates. Weight 0 (Keepalived's default) puts the
/// instance in fault; a positive weight is added while the script succeeds, so it moves into the priority.
fn map_tracking(
    it: &Instance<'_>,
    priority: u8,
    scripts: &HashMap<String, Script>,
    doc: &mut Doc,
    warns: &mut Warnings,
) {
    let tracked = tracked_weights(it, scripts, warns);
    let Some((_, _, loc)) = tracked.first() else {
        return;
    };
    let loc = loc.clone();
    let names: Vec<String> = tracked
        .iter()
        .map(|(n, w, _)| format!("{n} weight {w}"))
        .collect();
    let from = format!("{loc} {}", names.join(", "));
    if priority == 255 {
        warns.push(
            &loc,
            "track_script weight: priority 255 never changes (Keepalived ignores the weight too); trackWeight: 0",
        );
        doc.set("vrrp.trackWeight", Value::raw(0), from);
        return;
    }
    if tracked.iter().any(|(_, w, _)| *w == 0) {
        doc.set(
            "vrrp.trackWeight",
            Value::str("fault"),
            format!("{from} (0: fault)"),
        );
        return;
    }
    let total: i32 = tracked.iter().map(|(_, w, _)| w).sum();
    let mut tw = total.clamp(-254, 254);
    if total > 0 {
        // Keepalived adds a positive weight while the script succeeds: vipd's priority is the healthy one.
        let healthy = (priority as i32 + total).min(254);
        doc.set(
            "vrrp.priority",
            Value::raw(healthy),
            format!(
                "{}priority {priority} plus the positive track weight {total} (added while healthy)",
                it.priority.map(|(_, s)| format!("{} ", s.loc)).unwrap_or_default()
            ),
        );
        tw = -(healthy - priority as i32);
    }
    if tracked.len() > 1 {
        warns.push(
            &loc,
            format!(
                "track_script: {} scripts; vipd has one health signal, so trackWeight is their sum ({tw})",
                tracked.len()
            ),
        );
    }
    doc.set("vrrp.trackWeight", Value::raw(tw), from);
}

/// Each tracked script with its weight (the `track_script` line's own `weight` overrides the script's) and
/// the line the weight came from; every script is named in a warning, as vipd replaces it.
fn tracked_weights(
    it: &Instance<'_>,
    scripts: &HashMap<String, Script>,
    warns: &mut Warnings,
) -> Vec<(String, i32, Loc)> {
    let mut out = Vec::new();
    for t in it.tracks.iter().flat_map(|b| b.children()) {
        let Some(script) = scripts.get(&t.key) else {
            warns.push(
                &t.loc,
                format!(
                    "track_script {}: no vrrp_script of that name (Keepalived ignores it too)",
                    t.key
                ),
            );
            continue;
        };
        let weight = match (t.arg(0), t.arg(1)) {
            (Some("weight"), Some(w)) => w.parse::<i32>().unwrap_or(script.weight),
            _ => script.weight,
        };
        warns.push(
            &t.loc,
            format!(
                "track_script {}: replaced by vipd's own health checks of the backends",
                t.key
            ),
        );
        if !script.keys.is_empty() {
            warns.push(
                &script.loc,
                format!(
                    "vrrp_script {}: {} not carried over (vipd checks the backends itself, see health)",
                    t.key,
                    script.keys.join(", ")
                ),
            );
        }
        let loc = script.weight_loc.clone().unwrap_or(t.loc.clone());
        out.push((t.key.clone(), weight, loc));
    }
    out
}

fn map_garp(it: &Instance<'_>, g: &Globals, doc: &mut Doc) -> Result<(), ImportError> {
    for key in ["repeat", "delay", "refresh"] {
        let Some(s) = it.garp.get(key).copied().or(g.garp.get(key)) else {
            continue;
        };
        let value = if key == "repeat" {
            Value::raw(parse_int(s, s.value()?, 1..=100)?)
        } else {
            Value::raw(fmt_duration(parse_seconds(s)?))
        };
        doc.set(
            &format!("vrrp.garp.{key}"),
            value,
            format!("{} {} {}", s.loc, s.key, s.value()?),
        );
    }
    Ok(())
}

/// Keepalived speaks VRRPv2 unless told `vrrp_version 3` (IPv6 is always v3). vipd joins a v2 group with
/// `version: mixed` and the same PASS password.
fn map_version(
    it: &Instance<'_>,
    g: &Globals,
    vip: IpAddr,
    doc: &mut Doc,
    warns: &mut Warnings,
) -> Result<(), ImportError> {
    let (version, vloc) = match (&it.version, &g.version) {
        (Some((v, l)), _) | (None, Some((v, l))) => (*v, Some(l.clone())),
        (None, None) => (2, None),
    };
    let v3 = version == 3 || vip.is_ipv6();
    let auth = it.auth.map(read_auth).transpose()?;
    if v3 {
        match (&it.version, &g.version) {
            (Some((3, l)), _) | (None, Some((3, l))) => doc.carried(format!(
                "vrrp_version 3 ({l}): vipd speaks VRRPv3 by default"
            )),
            _ if vip.is_ipv6() => doc.carried("an IPv6 VIP: VRRPv3, as in Keepalived".to_string()),
            _ => {}
        }
        if let Some(a) = &auth {
            warns.push(&a.block, "authentication: VRRPv3 has none (Keepalived ignores it with version 3 too); not carried over");
        }
        return Ok(());
    }
    let from = match &vloc {
        Some(l) => format!("{l} vrrp_version 2"),
        None => "no vrrp_version: Keepalived speaks VRRPv2".to_string(),
    };
    doc.set("vrrp.version", Value::str("mixed"), from);
    let finish: &[&str] = if auth.is_some() {
        &[
            "mixed: VRRPv2 (with authPass) so the Keepalived nodes hear this node, and VRRPv3 as well.",
            "Once every node runs vipd: set version: 3 and remove authPass, one node and one reload at a time.",
        ]
    } else {
        &[
            "mixed: VRRPv2 so the Keepalived nodes hear this node, and VRRPv3 as well.",
            "Once every node runs vipd: set version: 3, one node and one reload at a time.",
        ]
    };
    doc.comment_above("vrrp.version", finish);
    if let Some(a) = it.advert {
        v2_advert_int(a, doc, warns)?;
    }
    if let Some(a) = auth {
        if let Some(l) = &a.truncated {
            warns.push(l, "auth_pass: longer than 8 characters; Keepalived uses the first 8, and so does authPass");
        }
        doc.set("vrrp.authPass", Value::str(&a.pass), a.note);
    }
    Ok(())
}

/// VRRPv2 carries whole seconds: Keepalived rounds `advert_int` to the nearest second (at least 1) and says
/// so; the import does the same. vipd's `mixed` also sends VRRPv3, whose interval ends at 40.95 s.
fn v2_advert_int(a: &Stmt, doc: &mut Doc, warns: &mut Warnings) -> Result<(), ImportError> {
    let ms = parse_seconds(a)?.as_millis() as u64;
    let secs = ((ms + 500) / 1000).max(1);
    if secs > 40 {
        return Err(ImportError::at(
            &a.loc,
            format!("advert_int {}: vrrp.version mixed sends VRRPv3 too, whose interval is at most 40 s", a.value()?),
        ));
    }
    if !ms.is_multiple_of(1000) {
        warns.push(
            &a.loc,
            format!("advert_int {}: VRRPv2 carries whole seconds; Keepalived rounds it to {secs}s, and so does the import", a.value()?),
        );
        doc.set(
            "vrrp.advertInterval",
            Value::raw(format!("{secs}s")),
            format!(
                "{} advert_int {} rounded as Keepalived does for VRRPv2",
                a.loc,
                a.value()?
            ),
        );
    }
    Ok(())
}

/// `authentication { auth_type PASS auth_pass X }`, read.
struct Auth {
    block: Loc,
    /// At most 8 characters: Keepalived logs "Truncating auth_pass to 8 characters" and sends only those.
    pass: String,
    note: String,
    truncated: Option<Loc>,
}

fn read_auth(block: &Stmt) -> Result<Auth, ImportError> {
    let mut kind = None;
    let mut pass: Option<&Stmt> = None;
    for c in block.children() {
        match c.key.as_str() {
            "auth_type" => kind = Some(c),
            "auth_pass" => pass = Some(c),
            other => {
                return Err(ImportError::at(
                    &c.loc,
                    format!("authentication {other}: not a Keepalived authentication keyword"),
                ))
            }
        }
    }
    let Some(kind) = kind else {
        return Err(ImportError::at(
            &block.loc,
            "authentication has no auth_type",
        ));
    };
    match kind.value()? {
        "PASS" => {}
        "AH" => {
            return Err(ImportError::at(
                &kind.loc,
                "auth_type AH: vipd speaks VRRPv2 with PASS or no authentication; switch the Keepalived nodes to auth_type PASS first",
            ))
        }
        other => return Err(ImportError::at(&kind.loc, format!("auth_type {other}: expected PASS or AH"))),
    }
    let Some(p) = pass else {
        return Err(ImportError::at(
            &block.loc,
            "authentication has auth_type PASS but no auth_pass",
        ));
    };
    let full = p.value()?;
    Ok(Auth {
        block: block.loc.clone(),
        pass: full.chars().take(8).collect(),
        note: format!("{} auth_type PASS, {} auth_pass", kind.loc, p.loc),
        truncated: (full.chars().count() > 8).then(|| p.loc.clone()),
    })
}

fn parse_version(s: &Stmt) -> Result<u8, ImportError> {
    match s.value()? {
        "2" => Ok(2),
        "3" => Ok(3),
        v => Err(ImportError::at(
            &s.loc,
            format!("{} {v}: expected 2 or 3", s.key),
        )),
    }
}

pub(crate) fn parse_int(
    s: &Stmt,
    v: &str,
    range: std::ops::RangeInclusive<i32>,
) -> Result<i32, ImportError> {
    match v.parse::<i32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ImportError::at(
            &s.loc,
            format!(
                "{} {v}: expected an integer in {}..={}",
                s.key,
                range.start(),
                range.end()
            ),
        )),
    }
}

/// Keepalived's times are decimal seconds (`1`, `0.5`); kept to the millisecond.
pub(crate) fn parse_seconds(s: &Stmt) -> Result<Duration, ImportError> {
    let v = s.value()?;
    match v.parse::<f64>() {
        Ok(f) if (0.0..1e6).contains(&f) => Ok(Duration::from_millis((f * 1000.0).round() as u64)),
        _ => Err(ImportError::at(
            &s.loc,
            format!("{} {v}: expected seconds (e.g. 1 or 0.5)", s.key),
        )),
    }
}

pub(crate) fn parse_ip(s: &Stmt, v: &str) -> Result<IpAddr, ImportError> {
    v.parse()
        .map_err(|_| ImportError::at(&s.loc, format!("{v}: not an IPv4 or IPv6 address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(stmts: &[Stmt]) -> Vec<String> {
        stmts
            .iter()
            .map(|s| {
                format!(
                    "{}:{}{}",
                    s.loc.line,
                    s.key,
                    if s.block.is_some() { "{}" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn comments_quotes_braces_and_lines() {
        let text = "! comment\nglobal_defs { # trailing\n  router_id LVS!x\n}\nvrrp_script chk {\n  script \"/bin/sh -c 'x # y'\"\n}\nvrrp_instance VI_1\n{\n  track_script { chk }\n}\n";
        let s = parse_str("k.conf", text).unwrap();
        assert_eq!(
            keys(&s),
            ["2:global_defs{}", "5:vrrp_script{}", "8:vrrp_instance{}"]
        );
        assert_eq!(s[0].children()[0].args, ["LVS"]);
        assert_eq!(s[1].children()[0].args, ["/bin/sh -c 'x # y'"]);
        assert_eq!(keys(s[2].children()), ["10:track_script{}"]);
        assert_eq!(keys(s[2].children()[0].children()), ["10:chk"]);
    }

    #[test]
    fn unbalanced_braces_name_their_line() {
        let e = parse_str("k.conf", "a {\n b\n").unwrap_err();
        assert_eq!(e.0, "k.conf:1: '{' is never closed");
        let e = parse_str("k.conf", "a\n}\n").unwrap_err();
        assert_eq!(e.0, "k.conf:2: '}' closes no block");
        let e = parse_str("k.conf", "x \"open\n").unwrap_err();
        assert_eq!(e.0, "k.conf:1: unterminated quoted string");
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("*.conf", "a.conf"));
        assert!(!glob_match("*.conf", ".hidden.conf"));
        assert!(glob_match("vi_?.conf", "vi_1.conf"));
        assert!(!glob_match("*.conf", "a.conf.bak"));
    }
}
