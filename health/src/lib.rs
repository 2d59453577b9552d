//! Health checks of the kube-apiservers: which backends may receive new connections.
//!
//! Owns the per-backend check tasks, the rise/fall decision and the published state. It knows nothing about
//! VRRP or the proxy: the daemon subscribes to [`HealthChecker::subscribe`] and decides what "no healthy
//! backend" means.
//!
//! Behaviour, in short:
//! - A check is a TCP connect, or an HTTPS `GET` (hyper over rustls with the ring provider) on a fresh
//!   connection that is closed after the response head. Only `caFile` is trusted; the certificate must be
//!   valid for `serverName`, or by default for the backend's IP address (an IP SAN, as kubeadm issues).
//!   `insecureSkipVerify` disables certificate checks and is logged as a warning each time it takes effect.
//! - Each check has its own `timeout` covering connect, handshake and response head. Checks of a backend
//!   start every `interval` +-10% (uniform jitter, so the mean stays `interval` and nodes drift apart);
//!   the first check of a backend runs at once.
//! - A backend starts down and is marked up by its first success (rise counts as 1 the first time only);
//!   after that, `rise` consecutive successes mark it up and `fall` consecutive failures mark it down.
//! - The state is published on a `watch` channel. Receivers are notified when a backend's health or
//!   failure reason changes or the backend set changes; counters (checks, failures, latency) are updated in
//!   the published value after every check without a notification, so `borrow()` always reads fresh ones.

mod checker;
mod config;
mod error;
mod hysteresis;
mod probe;
mod tls;

pub use checker::{BackendHealth, HealthChecker, Snapshot};
pub use config::{Check, HealthConfig, HttpsCheck};
pub use error::HealthError;
