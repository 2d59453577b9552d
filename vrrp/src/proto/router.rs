//! The VRRPv3 state machine (RFC 5798 section 6 with the RFC 9568 changes): one virtual router's state,
//! timers and the actions it asks its driver to perform.
//!
//! Shape (quinn-proto / str0m): feed an [`Input`] with `handle(now, input)`, then drain [`Action`]s with
//! `poll_action()` and arm one timer at `poll_timeout()`; when it fires, `handle(now, Input::Timeout)`.
//! Time only ever comes in as `now`, so the whole machine runs on a virtual clock in tests.
//!
//! Beyond the RFC text:
//! - RFC 9568: a master that hears a lower priority (or an equal one from a lower address) advertises at once,
//!   which ends a dual-master period after a partition within one delivery. Beyond RFC 9568, it also sends
//!   gratuitous ARP / NA (hosts may have learnt the other master's MAC), and a master that steps down to a
//!   higher priority sends one last advertisement so that the winner hears there was a second master.
//! - Repair after stepping down ([`Action::AnnounceFor`]): see [`Router::repair_announce`].
//! - Preempt delay (Keepalived's `preempt_delay`): a backup that could preempt a lower-priority master keeps
//!   accepting its advertisements for `preempt_delay` after first hearing it, then takes over.
//! - Fault: link down or a `fault` tracking policy; a master leaving for a fault sends priority 0 so a backup
//!   takes over after Skew_Time instead of Master_Down_Interval.
//!
//! Versions ([`Version`]): with `V3` a VRRPv2 advertisement is ignored (the driver warns: a router that cannot
//! hear us). With `V2` (RFC 3768) a VRRPv3 one is ignored, `Skew_Time = (256 - Priority) / 256` s whatever the
//! interval, and the master's interval is never learned (the driver drops a v2 advertisement whose interval is
//! not ours, RFC 3768 7.1). With `Mixed` (RFC 5798 8.4.2) both are accepted, v3 timers apply with the interval
//! learned from either (a v2 master's seconds read as centiseconds), and a backup ignores the v2
//! advertisements of a master it also hears in v3, so the two copies of one advertisement count once.
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::packet::Advertisement;
use super::types::{Centis, Priority, Version, Vrid};

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
    /// Which advertisements are sent (the driver encodes them) and accepted, and which timers apply.
    pub version: Version,
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
    /// The same for a VRRPv2 advertisement (authentication already checked), its interval in centiseconds.
    AdvertV2 {
        src: IpAddr,
        advert: Advertisement,
    },
    /// Change the protocol version in place (a reload): state, timers and VIPs stay as they are.
    SetVersion(Version),
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
    /// Initialize -> Backup.
    Startup,
    /// Initialize -> Master for the address owner (priority 255).
    Owner,
    /// Backup -> Master: no advertisement for Master_Down_Interval.
    MasterDown,
    /// Backup -> Master: we outrank the current master and preempt it (after any preempt delay).
    Preempted,
    /// Master -> Backup: a higher priority (or equal priority from a higher address) was heard.
    HigherPriority,
    /// Backup -> Master: the master left with priority 0 and Skew_Time passed.
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
    /// Send `count` gratuitous ARP / unsolicited NA frames for every VIP that name `master`'s MAC address, not
    /// ours (the Ethernet source stays ours, so no switch learns the master's MAC on our port). The driver
    /// knows `master`'s MAC from the Ethernet source of its advertisements; it skips (and counts) the repair
    /// when it has not seen one.
    AnnounceFor {
        master: IpAddr,
        count: u32,
    },
    StateChanged {
        from: State,
        to: State,
        reason: TransitionReason,
    },
}

/// What a received advertisement has that our configuration does not (see [`Router::mismatch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The sender's interval, when it is not ours.
    pub interval: Option<Centis>,
    /// The address lists differ (compared as sets).
    pub addresses: bool,
}

/// `Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256`, in nanoseconds so nothing is truncated
/// (the exact value is a multiple of 1/2 ns; the remainder is below anything a timer can express).
pub fn skew_time(priority: Priority, master_adver_interval: Centis) -> Duration {
    let ns =
        (256 - u64::from(priority.get())) * u64::from(master_adver_interval.get()) * 10_000_000
            / 256;
    Duration::from_nanos(ns)
}

/// `Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time`.
pub fn master_down_interval(priority: Priority, master_adver_interval: Centis) -> Duration {
    master_adver_interval.as_duration() * 3 + skew_time(priority, master_adver_interval)
}

/// RFC 3768 `Skew_Time = (256 - Priority) / 256` seconds: VRRPv2's skew does not scale with the interval.
pub fn skew_time_v2(priority: Priority) -> Duration {
    Duration::from_nanos((256 - u64::from(priority.get())) * 1_000_000_000 / 256)
}

/// Which version an advertisement arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    V3,
    V2,
}

/// At most one dual-master re-announcement episode per this long.
const REASSERT_MIN_GAP: Duration = Duration::from_secs(1);

/// Repair bursts after stepping down, at these offsets; each burst is `garp_repeat` frames. The first two
/// cover the instant of the step-down and the moment after any other loser of the same episode has stepped
/// down too; the later ones ride out a lossy link (30% loss loses five frames in a row 0.2% of the time, and
/// three bursts in a row practically never).
const REPAIR_AT_SECONDS: [f64; 3] = [1.0, 2.0, 4.0];

#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    state: State,
    /// Configured priority adjusted by tracking; the owner's stays 255.
    priority: Priority,
    /// The interval the master advertises (ours while master), learned from every accepted advertisement.
    master_adver_interval: Centis,
    master_address: Option<IpAddr>,
    link_up: bool,
    track_fault: bool,
    /// Why the master down timer will fire, for the transition reason.
    down_reason: TransitionReason,
    master_down_at: Option<Instant>,
    adver_at: Option<Instant>,
    /// When a pending preemption (delayed by `preempt_delay`) happens.
    preempt_at: Option<Instant>,
    garp_delay_at: Option<Instant>,
    garp_refresh_at: Option<Instant>,
    /// The second gratuitous ARP burst after a dual-master episode (see `master_advert`).
    reannounce_at: Option<Instant>,
    /// When this master last re-announced because of a lower-priority master, to rate-limit that.
    reasserted_at: Option<Instant>,
    /// Mixed mode: the last VRRPv3 sender and when, so its VRRPv2 copies are not counted twice.
    v3_heard: Option<(IpAddr, Instant)>,
    /// After stepping down: when the next repair burst is due, and when we stepped down.
    repair_at: Option<Instant>,
    stepped_down_at: Option<Instant>,
    /// When the master (`master_address`) was last heard, so a repair never speaks for a master that is gone.
    master_heard_at: Option<Instant>,
    actions: VecDeque<Action>,
}

impl Router {
    pub fn new(cfg: RouterConfig) -> Self {
        Router {
            priority: cfg.priority,
            master_adver_interval: cfg.advert_interval,
            cfg,
            state: State::Initialize,
            master_address: None,
            link_up: true,
            track_fault: false,
            down_reason: TransitionReason::MasterDown,
            master_down_at: None,
            adver_at: None,
            preempt_at: None,
            garp_delay_at: None,
            garp_refresh_at: None,
            reannounce_at: None,
            reasserted_at: None,
            v3_heard: None,
            repair_at: None,
            stepped_down_at: None,
            master_heard_at: None,
            actions: VecDeque::new(),
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Startup => self.on_startup(now),
            Input::Shutdown => self.on_shutdown(),
            Input::Advert { src, advert } => self.on_advert(now, src, &advert, Wire::V3),
            Input::AdvertV2 { src, advert } => self.on_advert(now, src, &advert, Wire::V2),
            Input::SetVersion(v) => self.cfg.version = v,
            Input::Timeout => self.on_timeout(now),
            Input::PriorityChanged(p) => self.on_priority(now, p),
            Input::TrackFault(fault) => {
                self.track_fault = fault;
                self.check_fault(
                    now,
                    TransitionReason::TrackFault,
                    TransitionReason::TrackRecovered,
                );
            }
            Input::LinkDown => {
                self.link_up = false;
                self.check_fault(now, TransitionReason::LinkDown, TransitionReason::LinkUp);
            }
            Input::LinkUp => {
                self.link_up = true;
                self.check_fault(now, TransitionReason::LinkDown, TransitionReason::LinkUp);
            }
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.master_down_at,
            self.adver_at,
            self.preempt_at,
            self.garp_delay_at,
            self.garp_refresh_at,
            self.reannounce_at,
            self.repair_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The priority currently advertised (configured, adjusted by tracking).
    pub fn effective_priority(&self) -> Priority {
        self.priority
    }

    /// The current master's address as last heard (ours when master).
    pub fn master_address(&self) -> Option<IpAddr> {
        self.master_address
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// The master's advertisement interval as learned (our own until a master is heard, and while master).
    pub fn master_advert_interval(&self) -> Centis {
        self.master_adver_interval
    }

    /// Skew_Time for our effective priority and the learned interval (VRRPv2: the priority alone).
    pub fn skew_time(&self) -> Duration {
        match self.cfg.version {
            Version::V2 => skew_time_v2(self.priority),
            Version::V3 | Version::Mixed => skew_time(self.priority, self.master_adver_interval),
        }
    }

    /// Master_Down_Interval (`3 * Master_Adver_Interval + Skew_Time`) for our effective priority.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval.as_duration() * 3 + self.skew_time()
    }

    /// The protocol version in use (it changes in place with [`Input::SetVersion`]).
    pub fn version(&self) -> Version {
        self.cfg.version
    }

    /// The advertisement to put on the wire for a [`Action::SendAdvert`].
    pub fn advertisement(&self, priority: Priority) -> Advertisement {
        Advertisement {
            vrid: self.cfg.vrid,
            priority,
            max_advert_int: self.cfg.advert_interval,
            addresses: self.cfg.vips.clone(),
        }
    }

    /// How `adv` differs from our configuration. RFC 5798 7.1 says to log this, not to drop the packet: during
    /// a rolling change of interval or VIPs both sides must keep electing.
    pub fn mismatch(&self, adv: &Advertisement) -> Option<Mismatch> {
        let interval =
            (adv.max_advert_int != self.cfg.advert_interval).then_some(adv.max_advert_int);
        let mut theirs = adv.addresses.clone();
        let mut ours = self.cfg.vips.clone();
        theirs.sort();
        theirs.dedup();
        ours.sort();
        ours.dedup();
        let addresses = theirs != ours;
        (interval.is_some() || addresses).then_some(Mismatch {
            interval,
            addresses,
        })
    }

    fn is_owner(&self) -> bool {
        self.cfg.priority == Priority::OWNER
    }

    fn faulty(&self) -> bool {
        !self.link_up || self.track_fault
    }

    fn transition(&mut self, to: State, reason: TransitionReason) {
        let from = self.state;
        self.state = to;
        self.actions
            .push_back(Action::StateChanged { from, to, reason });
    }

    fn clear_timers(&mut self) {
        self.master_down_at = None;
        self.adver_at = None;
        self.preempt_at = None;
        self.garp_delay_at = None;
        self.garp_refresh_at = None;
        self.reannounce_at = None;
        self.repair_at = None;
    }

    fn on_startup(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        if self.faulty() {
            let reason = if self.link_up {
                TransitionReason::TrackFault
            } else {
                TransitionReason::LinkDown
            };
            self.transition(State::Fault, reason);
        } else {
            self.leave_initial(now, TransitionReason::Startup, TransitionReason::Owner);
        }
    }

    /// RFC 5798 6.4.1: the owner goes straight to master, everyone else waits as backup.
    fn leave_initial(
        &mut self,
        now: Instant,
        backup_reason: TransitionReason,
        owner_reason: TransitionReason,
    ) {
        if self.priority == Priority::OWNER {
            self.become_master(now, owner_reason);
        } else {
            self.become_backup(now, backup_reason);
        }
    }

    fn become_master(&mut self, now: Instant, reason: TransitionReason) {
        self.clear_timers();
        self.transition(State::Master, reason);
        self.master_adver_interval = self.cfg.advert_interval;
        self.master_address = Some(self.cfg.primary_address);
        self.actions.push_back(Action::AddVips);
        self.send_advert(now);
        if self.cfg.garp_repeat > 0 {
            self.actions.push_back(Action::Announce {
                count: self.cfg.garp_repeat,
            });
            if !self.cfg.garp_delay.is_zero() {
                self.garp_delay_at = Some(now + self.cfg.garp_delay);
            }
            if !self.cfg.garp_refresh.is_zero() {
                self.garp_refresh_at = Some(now + self.cfg.garp_refresh);
            }
        }
    }

    /// Enter backup from Initialize or Fault, waiting Master_Down_Interval for a master to show up.
    fn become_backup(&mut self, now: Instant, reason: TransitionReason) {
        self.clear_timers();
        self.transition(State::Backup, reason);
        self.master_adver_interval = self.cfg.advert_interval;
        self.master_address = None;
        self.down_reason = TransitionReason::MasterDown;
        self.master_down_at = Some(now + self.master_down_interval());
    }

    fn send_advert(&mut self, now: Instant) {
        self.actions.push_back(Action::SendAdvert {
            priority: self.priority,
        });
        self.adver_at = Some(now + self.cfg.advert_interval.as_duration());
    }

    /// Leave master for `to` (Initialize or Fault), telling backups to take over after Skew_Time.
    fn abdicate(&mut self, to: State, reason: TransitionReason) {
        self.clear_timers();
        self.actions.push_back(Action::SendAdvert {
            priority: Priority::LEAVING,
        });
        self.actions.push_back(Action::RemoveVips);
        self.master_address = None;
        self.transition(to, reason);
    }

    fn on_shutdown(&mut self) {
        match self.state {
            State::Initialize => {}
            State::Master => self.abdicate(State::Initialize, TransitionReason::Shutdown),
            State::Backup | State::Fault => {
                self.clear_timers();
                self.master_address = None;
                self.transition(State::Initialize, TransitionReason::Shutdown);
            }
        }
    }

    fn check_fault(&mut self, now: Instant, enter: TransitionReason, leave: TransitionReason) {
        match (self.state, self.faulty()) {
            (State::Master, true) => self.abdicate(State::Fault, enter),
            (State::Backup, true) => {
                self.clear_timers();
                self.master_address = None;
                self.transition(State::Fault, enter);
            }
            (State::Fault, false) => self.leave_initial(now, leave, leave),
            _ => {}
        }
    }

    fn on_priority(&mut self, now: Instant, p: Priority) {
        if self.is_owner() {
            return;
        }
        let p = Priority(p.get().clamp(1, 254));
        if p == self.priority {
            return;
        }
        self.priority = p;
        if self.state == State::Master {
            // Tell the backups now: one that outranks us can start preempting without waiting an interval.
            self.send_advert(now);
        }
    }

    fn on_advert(&mut self, now: Instant, src: IpAddr, adv: &Advertisement, wire: Wire) {
        if adv.vrid != self.cfg.vrid || src == self.cfg.primary_address {
            // Not ours, or our own looped back: the socket layer should have filtered both.
            return;
        }
        if !self.hears(now, src, wire) {
            return;
        }
        match self.state {
            State::Backup => self.backup_advert(now, src, adv),
            State::Master => self.master_advert(now, src, adv),
            State::Initialize | State::Fault => {}
        }
    }

    /// Whether an advertisement in `wire` counts. RFC 5798 8.4.2: a mixed-mode backup ignores the VRRPv2
    /// advertisements of the master it also hears in VRRPv3 (within one Master_Down_Interval).
    fn hears(&mut self, now: Instant, src: IpAddr, wire: Wire) -> bool {
        match (self.cfg.version, wire) {
            (Version::V3, Wire::V3) | (Version::V2, Wire::V2) => true,
            (Version::V3, Wire::V2) | (Version::V2, Wire::V3) => false,
            (Version::Mixed, Wire::V3) => {
                self.v3_heard = Some((src, now));
                true
            }
            (Version::Mixed, Wire::V2) => {
                let window = self.master_down_interval();
                let also_v3 = self
                    .v3_heard
                    .is_some_and(|(a, t)| a == src && now.saturating_duration_since(t) < window);
                !(also_v3 && self.state == State::Backup && self.master_address == Some(src))
            }
        }
    }

    /// The master's interval from its advertisement; VRRPv2 keeps its own (RFC 3768 has no learning, and the
    /// driver drops a v2 advertisement with another interval).
    fn learn_interval(&mut self, adv: &Advertisement) {
        if self.cfg.version != Version::V2 {
            self.master_adver_interval = adv.max_advert_int;
        }
    }

    /// RFC 5798 6.4.2, receiving an ADVERTISEMENT in Backup.
    fn backup_advert(&mut self, now: Instant, src: IpAddr, adv: &Advertisement) {
        if adv.priority == Priority::LEAVING {
            self.master_address = None;
            self.preempt_at = None;
            self.down_reason = TransitionReason::PriorityZero;
            self.master_down_at = Some(now + self.skew_time());
            return;
        }
        let outranked = adv.priority < self.priority;
        if outranked && self.cfg.preempt {
            if self.cfg.preempt_delay.is_zero() {
                // Discard: the down timer runs out and we take over. It is still the master we hear.
                self.master_address = Some(src);
                self.down_reason = TransitionReason::Preempted;
                return;
            }
            // Accept below (so a vanishing master is still noticed), and take over when the delay ends.
            self.preempt_at.get_or_insert(now + self.cfg.preempt_delay);
        } else {
            self.preempt_at = None;
        }
        self.master_address = Some(src);
        self.master_heard_at = Some(now);
        self.learn_interval(adv);
        self.down_reason = TransitionReason::MasterDown;
        self.master_down_at = Some(now + self.master_down_interval());
    }

    /// RFC 5798 6.4.3, receiving an ADVERTISEMENT in Master.
    fn master_advert(&mut self, now: Instant, src: IpAddr, adv: &Advertisement) {
        let theirs = (adv.priority, src);
        let ours = (self.priority, self.cfg.primary_address);
        if adv.priority == Priority::LEAVING || theirs < ours {
            // 6.4.3 for priority 0; RFC 9568 for a lower one: re-assert at once.
            self.send_advert(now);
            // Only a master sends either, so a second master was on this LAN (a partition healing, or it is
            // leaving): hosts that learnt its MAC for the VIP must be told otherwise.
            self.reassert_vips(now);
            return;
        }
        self.clear_timers();
        // One last advertisement of our own: the winner may never have heard us (its advertisement reached
        // us first), and hearing a lower priority is what makes it re-announce the VIP to the hosts that
        // learnt our MAC while we were master too.
        self.actions.push_back(Action::SendAdvert {
            priority: self.priority,
        });
        self.actions.push_back(Action::RemoveVips);
        self.transition(State::Backup, TransitionReason::HigherPriority);
        self.master_address = Some(src);
        self.master_heard_at = Some(now);
        self.learn_interval(adv);
        self.down_reason = TransitionReason::MasterDown;
        self.master_down_at = Some(now + self.master_down_interval());
        self.start_repair(now);
    }

    /// A master that steps down to a better one has told the LAN, with its own gratuitous ARPs, that the VIP
    /// is at its MAC; hosts that heard it now send the VIP's traffic to a node that no longer holds it. The
    /// RFC leaves the repair to the winner, and the winner only learns of it by hearing the loser's
    /// advertisements (RFC 9568 6.4.3, and our last advertisement above). When the loser's own VRRP packets
    /// are lost (the lossy link that made it time out in the first place), the winner never hears them, never
    /// re-announces, and hosts keep the loser's MAC until their neighbour entry fails, seconds later.
    ///
    /// So the loser repairs what its announcement broke, depending on nothing it cannot see itself: it sends
    /// gratuitous ARP / NA naming the winner's MAC, at once, one advertisement interval later (by then any
    /// other loser of the same episode has stepped down, and we speak for whoever won in the end), and at
    /// [`REPAIR_AT_SECONDS`], against loss. Each burst names the master as now known, and only one heard
    /// within the last two advertisement intervals, so a repair never points hosts at a master that
    /// died meanwhile: the next master announces itself. The frames carry what the winner announces anyway,
    /// so they are harmless beside any peer (Keepalived included), and the winner needs no change.
    fn start_repair(&mut self, now: Instant) {
        if self.cfg.garp_repeat == 0 {
            return;
        }
        self.stepped_down_at = Some(now);
        self.repair_announce(now);
        self.repair_at = Some(now + self.master_adver_interval.as_duration());
    }

    /// One repair burst on behalf of the master as now known (see [`Router::start_repair`]).
    fn repair_announce(&mut self, now: Instant) {
        let fresh = self.master_heard_at.is_some_and(|t| {
            now.saturating_duration_since(t) <= self.master_adver_interval.as_duration() * 2
        });
        if let (Some(master), true) = (self.master_address, fresh) {
            self.actions.push_back(Action::AnnounceFor {
                master,
                count: self.cfg.garp_repeat,
            });
        }
    }

    /// Schedule the repair burst after the one just sent, if any.
    fn next_repair(&mut self, now: Instant) {
        let since = self
            .stepped_down_at
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        self.repair_at = REPAIR_AT_SECONDS
            .iter()
            .map(|s| Duration::from_secs_f64(*s))
            .find(|d| *d > since)
            .and_then(|d| self.stepped_down_at.map(|t| t + d));
    }

    /// Two masters at once (both backups' timers fired together, or a healed partition): the other one sent
    /// its gratuitous ARPs too, and if they reach the LAN after ours, hosts send the VIP's traffic to a node
    /// that is about to drop it, until our next burst (`garp.delay` later). So the winner announces again now
    /// and once more one advertisement interval later, after the loser has stepped down, as Keepalived's
    /// `garp_lower_prio_repeat` does. Rate-limited to one episode a second against a peer stuck as master.
    fn reassert_vips(&mut self, now: Instant) {
        if self.cfg.garp_repeat == 0
            || self
                .reasserted_at
                .is_some_and(|t| now.saturating_duration_since(t) < REASSERT_MIN_GAP)
        {
            return;
        }
        self.reasserted_at = Some(now);
        self.actions.push_back(Action::Announce {
            count: self.cfg.garp_repeat,
        });
        self.reannounce_at = Some(now + self.cfg.advert_interval.as_duration());
    }

    fn on_timeout(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        match self.state {
            State::Backup => {
                if due(self.preempt_at) {
                    self.become_master(now, TransitionReason::Preempted);
                } else if due(self.master_down_at) {
                    self.become_master(now, self.down_reason);
                } else if due(self.repair_at) {
                    self.repair_announce(now);
                    self.next_repair(now);
                }
            }
            State::Master => {
                if due(self.adver_at) {
                    self.send_advert(now);
                }
                if due(self.garp_delay_at) {
                    self.garp_delay_at = None;
                    self.actions.push_back(Action::Announce {
                        count: self.cfg.garp_repeat,
                    });
                }
                if due(self.reannounce_at) {
                    self.reannounce_at = None;
                    self.actions.push_back(Action::Announce {
                        count: self.cfg.garp_repeat,
                    });
                }
                if due(self.garp_refresh_at) {
                    self.garp_refresh_at = Some(now + self.cfg.garp_refresh);
                    self.actions.push_back(Action::Announce {
                        count: self.cfg.garp_repeat,
                    });
                }
            }
            State::Initialize | State::Fault => {}
        }
    }
}
