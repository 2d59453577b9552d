//! Keepalived without HAProxy: its LVS `virtual_server` for the VIP names the backends (`real_server`), the
//! port, the balancing and the checks. vipd proxies where LVS forwarded in the kernel, so the backends see
//! vipd's address instead of the client's (as they did behind HAProxy).

use std::net::IpAddr;

use super::keepalived::{parse_int, parse_ip, parse_seconds, Stmt};
use super::render::{quote, Value};
use super::{Doc, ImportError, VrrpSummary, Warnings};
use crate::config::fmt_duration;

/// Maps the `virtual_server` whose address is the VIP; warns about the others.
pub(crate) fn map(
    stmts: &[Stmt],
    vrrp: &VrrpSummary,
    doc: &mut Doc,
    warns: &mut Warnings,
) -> Result<(), ImportError> {
    let mut chosen: Option<&Stmt> = None;
    for s in stmts.iter().filter(|s| s.key == "virtual_server") {
        let addr = s.arg(0).and_then(|a| a.parse::<IpAddr>().ok());
        if addr == Some(vrrp.vip) && chosen.is_none() {
            chosen = Some(s);
        } else {
            warns.push(
                &s.loc,
                format!(
                    "virtual_server {}: not the VIP's first virtual_server; not carried over",
                    s.args.join(" ")
                ),
            );
        }
    }
    let Some(vs) = chosen else {
        return Err(ImportError(format!(
            "no backends: give --haproxy FILE with the apiservers' server lines (the keepalived config has no virtual_server {})",
            vrrp.vip
        )));
    };
    let port = vs
        .arg(1)
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| ImportError::at(&vs.loc, "virtual_server needs an address and a port"))?;
    doc.set(
        "controlPlaneLBPort",
        Value::raw(port),
        format!("{} virtual_server {} {port}", vs.loc, vrrp.vip),
    );
    let mut backends = Vec::new();
    let mut checked = false;
    for c in vs.children() {
        match c.key.as_str() {
            "real_server" => {
                backends.push(real_server(c, doc, warns, !checked)?);
                checked = true;
            }
            "delay_loop" => {
                let d = parse_seconds(c)?.clamp(std::time::Duration::from_millis(100), std::time::Duration::from_secs(300));
                doc.set("health.interval", Value::raw(fmt_duration(d)), format!("{} delay_loop", c.loc));
            }
            "lb_algo" => match c.value()? {
                "rr" | "wrr" => doc.set("proxy.balance", Value::str("roundrobin"), format!("{} lb_algo {}", c.loc, c.value()?)),
                "lc" | "wlc" => doc.set("proxy.balance", Value::str("leastconn"), format!("{} lb_algo {}", c.loc, c.value()?)),
                other => warns.push(&c.loc, format!("lb_algo {other}: vipd balances by leastconn or roundrobin; vipd's default (leastconn) is used")),
            },
            "protocol" if c.value()? == "TCP" => doc.carried(format!("protocol TCP ({}): vipd is a TCP proxy", c.loc)),
            "lb_kind" => warns.push(&c.loc, format!("lb_kind {}: vipd proxies the connection; the backends see vipd's address, not the client's", c.value()?)),
            other => warns.push(&c.loc, format!("virtual_server {other}: no vipd equivalent; not carried over")),
        }
    }
    if backends.is_empty() {
        return Err(ImportError::at(
            &vs.loc,
            "virtual_server has no real_server: no backends to import",
        ));
    }
    doc.set(
        "backends",
        Value::List(backends),
        format!("{} virtual_server", vs.loc),
    );
    Ok(())
}

/// One `real_server IP PORT { ... }`; the first one's check becomes vipd's health check.
fn real_server(
    rs: &Stmt,
    doc: &mut Doc,
    warns: &mut Warnings,
    first: bool,
) -> Result<(String, String), ImportError> {
    let ip = parse_ip(rs, rs.arg(0).unwrap_or_default())?;
    let port = parse_int(rs, rs.arg(1).unwrap_or_default(), 1..=65535)? as u16;
    let addr = std::net::SocketAddr::new(ip, port);
    for c in rs.children() {
        match c.key.as_str() {
            "TCP_CHECK" | "SSL_GET" | "HTTP_GET" if first => check(c, doc, warns)?,
            "TCP_CHECK" | "SSL_GET" | "HTTP_GET" => {}
            "weight" => warns.push(
                &c.loc,
                "real_server weight: vipd balances over all backends equally",
            ),
            other => warns.push(
                &c.loc,
                format!("real_server {other}: no vipd equivalent; not carried over"),
            ),
        }
    }
    Ok((quote(&addr.to_string()), format!("{} real_server", rs.loc)))
}

fn check(c: &Stmt, doc: &mut Doc, warns: &mut Warnings) -> Result<(), ImportError> {
    let kind = if c.key == "TCP_CHECK" { "tcp" } else { "https" };
    doc.set(
        "health.type",
        Value::str(kind),
        format!("{} {}", c.loc, c.key),
    );
    if c.key == "HTTP_GET" {
        warns.push(
            &c.loc,
            "HTTP_GET: vipd checks over HTTPS (the apiservers serve only TLS)",
        );
    }
    for k in c.children() {
        match k.key.as_str() {
            "connect_timeout" => {
                let d = parse_seconds(k)?;
                doc.set(
                    "health.timeout",
                    Value::raw(fmt_duration(d)),
                    format!("{} connect_timeout", k.loc),
                );
            }
            "url" => {
                for u in k.children() {
                    match u.key.as_str() {
                        "path" => doc.set(
                            "health.path",
                            Value::str(u.value()?),
                            format!("{} path", u.loc),
                        ),
                        "status_code" => {
                            let n = parse_int(u, u.value()?, 100..=599)?;
                            doc.set(
                                "health.expectStatus",
                                Value::raw(n),
                                format!("{} status_code", u.loc),
                            );
                        }
                        other => warns.push(
                            &u.loc,
                            format!("url {other}: vipd checks the status code only"),
                        ),
                    }
                }
            }
            "retry" | "nb_get_retry" => {
                let n = parse_int(k, k.value()?, 0..=99)?;
                doc.set(
                    "health.fall",
                    Value::raw(n + 1),
                    format!("{} {} {n}: down after {} failures", k.loc, k.key, n + 1),
                );
            }
            other => warns.push(&k.loc, format!("{} {other}: not carried over", c.key)),
        }
    }
    Ok(())
}
