//! The running daemon's live state: what the admin endpoint and the metrics read. The supervisor builds it and
//! swaps it as a whole when VRRP restarts on reload; readers take a snapshot under the lock.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::config::Config;

/// The live pieces the admin endpoint and the metrics read; swapped as a whole when VRRP restarts on reload.
#[derive(Debug, Clone)]
pub struct Live {
    pub config: Arc<Config>,
    pub vrrp_status: watch::Receiver<vrrp::sys::VrrpStatus>,
    pub vrrp_stats: Arc<vrrp::sys::VrrpStats>,
    pub health: watch::Receiver<health::Snapshot>,
    pub proxy_stats: Arc<proxy::ProxyStats>,
    pub proxy_listen: SocketAddr,
    pub started: SystemTime,
    pub reloads: u64,
    pub reload_failures: u64,
}

pub type SharedLive = Arc<RwLock<Live>>;
