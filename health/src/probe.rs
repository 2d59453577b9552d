//! One check of one backend: a TCP connect, or an HTTPS `GET` on a fresh connection that is closed right
//! after the response head. Failures are turned into short reasons in words for operators.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::{Check, HealthConfig, HealthError};

/// A check ready to run: files loaded, TLS configured.
#[derive(Clone)]
pub(crate) enum Probe {
    Tcp,
    Https(Arc<HttpsProbe>),
}

pub(crate) struct HttpsProbe {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
    path: String,
    expect_status: u16,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp => f.write_str("Tcp"),
            Probe::Https(h) => f
                .debug_struct("Https")
                .field("server_name", &h.server_name)
                .field("path", &h.path)
                .field("expect_status", &h.expect_status)
                .finish_non_exhaustive(),
        }
    }
}

/// Where a check was when its time ran out; tells "nothing listens" apart from "a wedged process".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    TlsHandshake,
    Response,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::TlsHandshake => "TLS handshake",
            Phase::Response => "waiting for the response",
        })
    }
}

impl Probe {
    /// Validates `cfg` and loads its files.
    pub(crate) fn new(cfg: &HealthConfig) -> Result<Self, HealthError> {
        cfg.validate()?;
        match &cfg.check {
            Check::Tcp => Ok(Probe::Tcp),
            Check::Https(h) => {
                let tls = crate::tls::client_config(h)?;
                if h.insecure_skip_verify {
                    tracing::warn!(
                        "health checks run with insecureSkipVerify: apiserver certificates are NOT verified, \
                         anyone answering on a backend address is trusted; set caFile instead"
                    );
                }
                let server_name = match &h.server_name {
                    Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
                        HealthError::InvalidConfig(format!(
                            "serverName {n:?} is not a DNS name or IP address"
                        ))
                    })?),
                    None => None,
                };
                Ok(Probe::Https(Arc::new(HttpsProbe {
                    connector: TlsConnector::from(tls),
                    server_name,
                    path: h.path.clone(),
                    expect_status: h.expect_status,
                })))
            }
        }
    }

    /// Runs one check within `timeout`; `Err` holds the reason.
    pub(crate) async fn run(&self, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut phase = Phase::Connect;
        let result = match self {
            Probe::Tcp => tokio::time::timeout_at(deadline, tcp(addr)).await,
            Probe::Https(h) => tokio::time::timeout_at(deadline, h.run(addr, &mut phase)).await,
        };
        match result {
            Ok(r) => r,
            Err(_) => Err(format!("timeout ({phase})")),
        }
    }
}

async fn tcp(addr: SocketAddr) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| reason(&e))?;
    drop(stream);
    Ok(())
}

impl HttpsProbe {
    async fn run(&self, addr: SocketAddr, phase: &mut Phase) -> Result<(), String> {
        *phase = Phase::Connect;
        let tcp = TcpStream::connect(addr).await.map_err(|e| reason(&e))?;
        let _ = tcp.set_nodelay(true);
        *phase = Phase::TlsHandshake;
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let host = match &self.server_name {
            Some(ServerName::DnsName(d)) => format!("{}:{}", d.as_ref(), addr.port()),
            _ => addr.to_string(),
        };
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| reason(&e))?;
        *phase = Phase::Response;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| reason(&e))?;
        let req = Request::get(self.path.as_str())
            .header(HOST, host)
            .header(
                USER_AGENT,
                concat!("vipd-health/", env!("CARGO_PKG_VERSION")),
            )
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        // The connection is driven here rather than spawned: when this function returns (or the timeout
        // drops it), the socket is closed and nothing is left running.
        let mut conn = pin!(conn);
        let mut send = pin!(sender.send_request(req));
        let mut conn_done = false;
        let response = loop {
            tokio::select! {
                r = &mut send => break r.map_err(|e| reason(&e))?,
                r = &mut conn, if !conn_done => {
                    conn_done = true;
                    r.map_err(|e| reason(&e))?;
                }
            }
        };
        let status = response.status().as_u16();
        if status == self.expect_status {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

/// A short reason in words for a failed connect, handshake or request.
pub(crate) fn reason(err: &(dyn StdError + 'static)) -> String {
    // The most specific cause wins: a TLS error anywhere in the chain, then an OS error, then hyper's view.
    let chain = || std::iter::successors(Some(err), |e: &&(dyn StdError + 'static)| (*e).source());
    for e in chain() {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return tls_reason(t);
        }
        if let Some(t) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            if let Some(t) = t.downcast_ref::<rustls::Error>() {
                return tls_reason(t);
            }
        }
    }
    for e in chain() {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(r) = io_reason(io) {
                return r;
            }
        }
    }
    for e in chain() {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return "connection closed before the response".into();
            }
            if h.is_parse() {
                return "invalid HTTP response".into();
            }
        }
    }
    err.to_string()
}

fn io_reason(e: &io::Error) -> Option<String> {
    use io::ErrorKind::*;
    Some(
        match e.kind() {
            ConnectionRefused => "connection refused",
            ConnectionReset => "connection reset",
            ConnectionAborted => "connection aborted",
            UnexpectedEof => "connection closed",
            BrokenPipe => "connection closed",
            TimedOut => "timeout",
            HostUnreachable => "host unreachable",
            NetworkUnreachable => "network unreachable",
            AddrNotAvailable => "address not available",
            NetworkDown => "network down",
            _ => return e.raw_os_error().map(|_| e.to_string()),
        }
        .to_string(),
    )
}

fn tls_reason(e: &rustls::Error) -> String {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "TLS: unknown CA".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => "TLS: name mismatch".into(),
            C::Expired | C::ExpiredContext { .. } => "TLS: certificate expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "TLS: certificate not yet valid".into()
            }
            C::BadSignature => "TLS: bad certificate signature".into(),
            C::Revoked => "TLS: certificate revoked".into(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "TLS: certificate not valid for server authentication".into()
            }
            other => format!("TLS: invalid certificate ({other:?})"),
        },
        rustls::Error::AlertReceived(a) => match a {
            AlertDescription::CertificateRequired => {
                "TLS: server requires a client certificate".into()
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied => {
                format!("TLS: server rejected the client certificate ({a:?})")
            }
            other => format!("TLS: alert from server ({other:?})"),
        },
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_found_through_io_wrapping() {
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(reason(&wrapped), "TLS: unknown CA");
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(reason(&refused), "connection refused");
        let alert = io::Error::other(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert_eq!(reason(&alert), "TLS: server requires a client certificate");
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(reason(&expired), "TLS: certificate expired");
    }
}
