//! What to check and how often: the settings the daemon hands over, and their validation.

use std::path::PathBuf;
use std::time::Duration;

use crate::HealthError;

/// Settings shared by every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub check: Check,
    /// Mean time between the starts of two checks of one backend (each wait is jittered by +-10%).
    pub interval: Duration,
    /// Budget of one whole check: connect, TLS handshake, request and response head.
    pub timeout: Duration,
    /// Consecutive successes that mark a down backend up (once it has been up before; see the crate docs).
    pub rise: u32,
    /// Consecutive failures that mark an up backend down.
    pub fall: u32,
}

impl Default for HealthConfig {
    /// The defaults of vipd's config file: HTTPS `GET /readyz` every 2 s, 1 s timeout, rise 2, fall 3.
    fn default() -> Self {
        Self {
            check: Check::Https(HttpsCheck::default()),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

/// The kind of check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A TCP connect within the timeout, then close.
    Tcp,
    /// An HTTPS `GET` whose status must be `expect_status`.
    Https(HttpsCheck),
}

/// HTTPS check settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsCheck {
    /// Absolute path, with optional query (`/readyz`, `/readyz?verbose`).
    pub path: String,
    pub expect_status: u16,
    /// The only CA trusted (PEM, may hold several certificates). Required unless `insecure_skip_verify`.
    pub ca_file: Option<PathBuf>,
    /// Name (DNS or IP) the certificate must carry; `None` = the backend's IP address (IP SAN).
    pub server_name: Option<String>,
    /// PEM client certificate (chain) and key, for clusters that do not allow anonymous `/readyz`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Accept any certificate. Logged as a warning whenever it takes effect.
    pub insecure_skip_verify: bool,
}

impl Default for HttpsCheck {
    fn default() -> Self {
        Self {
            path: "/readyz".to_string(),
            expect_status: 200,
            ca_file: Some(PathBuf::from("/etc/kubernetes/pki/ca.crt")),
            server_name: None,
            client_cert: None,
            client_key: None,
            insecure_skip_verify: false,
        }
    }
}

impl HealthConfig {
    /// Checks the numbers and the shape of the HTTPS settings (the files are read by [`crate::HealthChecker`]).
    pub fn validate(&self) -> Result<(), HealthError> {
        let bad = |m: String| Err(HealthError::InvalidConfig(m));
        if self.interval.is_zero() {
            return bad("interval must be greater than zero".into());
        }
        if self.timeout.is_zero() {
            return bad("timeout must be greater than zero".into());
        }
        if self.rise == 0 || self.fall == 0 {
            return bad(format!(
                "rise and fall must be at least 1 (rise {}, fall {})",
                self.rise, self.fall
            ));
        }
        if let Check::Https(h) = &self.check {
            if !h.path.starts_with('/') {
                return bad(format!("path {:?} must start with '/'", h.path));
            }
            if h.path.parse::<hyper::http::uri::PathAndQuery>().is_err() {
                return bad(format!("path {:?} is not a valid request path", h.path));
            }
            if !(100..=599).contains(&h.expect_status) {
                return bad(format!(
                    "expectStatus {} is not an HTTP status (100..=599)",
                    h.expect_status
                ));
            }
            if h.client_cert.is_some() != h.client_key.is_some() {
                return bad("clientCert and clientKey must be given together".into());
            }
            if h.ca_file.is_none() && !h.insecure_skip_verify {
                return bad(
                    "caFile is required for HTTPS checks (or set insecureSkipVerify)".into(),
                );
            }
            if let Some(n) = &h.server_name {
                if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
                    return bad(format!(
                        "serverName {n:?} is neither a DNS name nor an IP address"
                    ));
                }
            }
        }
        Ok(())
    }
}
