//! The VRRPv3 state machine (RFC 5798 section 6, RFC 9568). CONTRACT STUB: to be implemented (issue 3).
//!
//! Shape (quinn-proto / str0m): feed an [`Input`] with `handle(now, input)`, then drain [`Action`]s with
//! `poll_action()` and arm one timer at `poll_timeout()`; when it fires, `handle(now, Input::Timeout)`.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::packet::Advertisement;
use super::types::{Centis, Priority, Vrid};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    pub vrid: Vrid,
    /// Configured priority (255 = address owner).
    pub priority: Priority,
    pub advert_interval: Centis,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// This router's primary address for the VIP's family (tie-break on equal priority; advert source).
    pub primary_address: IpAddr,
    pub vips: Vec<IpAddr>,
    /// Gratuitous ARP / NA: `repeat` frames at takeover, the same burst again after `delay`, and one burst every
    /// `refresh` while master (zero = off).
    pub garp_repeat: u32,
    pub garp_delay: Duration,
    pub garp_refresh: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Startup,
    /// Leave: a master sends priority 0 and removes its VIPs.
    Shutdown,
    /// A valid advertisement for our VRID from `src` (already checked by the codec and the socket layer).
    Advert {
        src: IpAddr,
        advert: Advertisement,
    },
    /// The deadline from `poll_timeout()` has passed.
    Timeout,
    /// Tracking changed the effective priority (clamped by the router to 1..=254 unless owner).
    PriorityChanged(Priority),
    /// `trackWeight: fault`: this node must not be master (true) or may be again (false).
    TrackFault(bool),
    LinkDown,
    LinkUp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransitionReason {
    Startup,
    Owner,
    MasterDown,
    Preempted,
    HigherPriority,
    PriorityZero,
    Shutdown,
    LinkDown,
    LinkUp,
    TrackFault,
    TrackRecovered,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send one advertisement carrying `priority` (0 when leaving).
    SendAdvert {
        priority: Priority,
    },
    AddVips,
    RemoveVips,
    /// Send `count` gratuitous ARP / unsolicited NA frames for every VIP now.
    Announce {
        count: u32,
    },
    StateChanged {
        from: State,
        to: State,
        reason: TransitionReason,
    },
}

#[derive(Debug)]
pub struct Router {
    _cfg: RouterConfig,
}

impl Router {
    pub fn new(cfg: RouterConfig) -> Self {
        Router { _cfg: cfg }
    }
    pub fn handle(&mut self, _now: Instant, _input: Input) {
        unimplemented!("issue 3")
    }
    pub fn poll_action(&mut self) -> Option<Action> {
        unimplemented!("issue 3")
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        unimplemented!("issue 3")
    }
    pub fn state(&self) -> State {
        unimplemented!("issue 3")
    }
    /// The priority currently advertised (configured, adjusted by tracking).
    pub fn effective_priority(&self) -> Priority {
        unimplemented!("issue 3")
    }
    /// The current master's address as last heard (ours when master).
    pub fn master_address(&self) -> Option<IpAddr> {
        unimplemented!("issue 3")
    }
}
