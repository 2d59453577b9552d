//! Errors of setting the checker up (a check failing is not an error: it is a health state).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("invalid health check settings: {0}")]
    InvalidConfig(String),
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    BadPem { path: PathBuf, what: String },
    #[error("TLS settings rejected: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the health checker must be started inside a tokio runtime")]
    NoRuntime,
}
