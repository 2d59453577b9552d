//! A virtual LAN for the VRRP state machine: N routers, a virtual clock that jumps to the next deadline, a
//! delivery delay, seeded random loss and partitions. Advertisements go through the real codec on the way.
//! Every input and every action is written to a text trace, compared with a checked-in golden file.
//! A host on the LAN keeps one neighbour entry for the VIP: it follows every gratuitous ARP (a router's own,
//! or one naming another router's MAC), which is how a stale entry shows up on the virtual clock.
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vrrp::proto::packet::{MULTICAST_V4, MULTICAST_V6};
use vrrp::proto::v2::{self, AdvertisementV2};
use vrrp::proto::{
    Action, Advertisement, Auth, Centis, ChecksumMode, Input, Priority, Router, RouterConfig,
    State, TransitionReason, Version, Vrid,
};

pub fn cfg(prio: u8, last_octet: u8, interval_cs: u16) -> RouterConfig {
    RouterConfig {
        vrid: Vrid::new(51).unwrap(),
        priority: Priority(prio),
        advert_interval: Centis::new(interval_cs).unwrap(),
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: IpAddr::from([192, 0, 2, last_octet]),
        vips: vec![IpAddr::from([192, 0, 2, 100])],
        garp_repeat: 5,
        garp_delay: Duration::from_secs(5),
        garp_refresh: Duration::ZERO,
        version: Version::V3,
    }
}

/// The same router on IPv6: link-local source fe80::N, VIP 2001:db8::100.
pub fn cfg6(prio: u8, last: u16, interval_cs: u16) -> RouterConfig {
    RouterConfig {
        primary_address: IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, last]),
        vips: vec![IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100])],
        ..cfg(prio, 1, interval_cs)
    }
}

fn group(src: IpAddr) -> IpAddr {
    if src.is_ipv4() {
        MULTICAST_V4.into()
    } else {
        MULTICAST_V6.into()
    }
}

/// A VRRPv2 (`Version::V2`) or mixed router, interval in whole seconds.
pub fn cfg_v(version: Version, prio: u8, last_octet: u8, interval_s: u16) -> RouterConfig {
    RouterConfig {
        version,
        ..cfg(prio, last_octet, interval_s * 100)
    }
}

/// RFC 3768: `Skew_Time = (256 - Priority) / 256` s, `Master_Down_Interval = 3 * Adver_Int + Skew_Time`,
/// straight from the formula in nanoseconds.
pub fn rfc3768_skew(prio: u8) -> Duration {
    Duration::from_nanos((256 - u64::from(prio)) * 1_000_000_000 / 256)
}

pub fn rfc3768_mdi(prio: u8, interval_s: u64) -> Duration {
    Duration::from_secs(3 * interval_s) + rfc3768_skew(prio)
}

/// Master_Down_Interval straight from the RFC formula, in nanoseconds, independent of the crate's helper.
pub fn rfc_mdi(prio: u8, interval_cs: u64) -> Duration {
    Duration::from_nanos(3 * interval_cs * 10_000_000 + rfc_skew_ns(prio, interval_cs))
}

pub fn rfc_skew(prio: u8, interval_cs: u64) -> Duration {
    Duration::from_nanos(rfc_skew_ns(prio, interval_cs))
}

fn rfc_skew_ns(prio: u8, interval_cs: u64) -> u64 {
    (256 - u64::from(prio)) * interval_cs * 10_000_000 / 256
}

struct Node {
    name: String,
    router: Router,
    alive: bool,
    group: u32,
    /// Hears no advertisement (inbound VRRP lost).
    deaf: bool,
    /// Its advertisements are lost (outbound VRRP lost); its gratuitous ARPs still go out.
    mute: bool,
}

struct Packet {
    at: Instant,
    seq: u64,
    from: usize,
    to: usize,
    src: IpAddr,
    bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub at: Duration,
    pub node: usize,
    pub from: State,
    pub to: State,
    pub reason: TransitionReason,
}

pub struct Lan {
    base: Instant,
    now: Instant,
    nodes: Vec<Node>,
    inflight: Vec<Packet>,
    seq: u64,
    delay: Duration,
    loss_percent: u64,
    rng: u64,
    pub lost: u64,
    trace: String,
    pub transitions: Vec<Transition>,
    /// (time, node, priority) of every advertisement sent.
    pub sent: Vec<(Duration, usize, Priority)>,
    /// Periods with more than one live master: (start, end).
    pub multi_master: Vec<(Duration, Option<Duration>)>,
    /// The node whose MAC the host's neighbour entry for the VIP names, and every change of it.
    pub host_entry: Option<usize>,
    pub host_entries: Vec<(Duration, usize)>,
    /// Repair announcements: (time, by node, naming node).
    pub repairs: Vec<(Duration, usize, usize)>,
}

impl Lan {
    pub fn new(delay: Duration) -> Self {
        let base = Instant::now();
        Lan {
            base,
            now: base,
            nodes: Vec::new(),
            inflight: Vec::new(),
            seq: 0,
            delay,
            loss_percent: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            lost: 0,
            trace: String::new(),
            transitions: Vec::new(),
            sent: Vec::new(),
            multi_master: Vec::new(),
            host_entry: None,
            host_entries: Vec::new(),
            repairs: Vec::new(),
        }
    }

    pub fn with_loss(mut self, percent: u64, seed: u64) -> Self {
        self.loss_percent = percent;
        self.rng = seed | 1;
        self
    }

    pub fn add(&mut self, name: &str, cfg: RouterConfig) -> usize {
        writeln!(
            self.trace,
            "# {name}: priority {} interval {} address {} preempt {} preempt_delay {:?}{}",
            cfg.priority,
            cfg.advert_interval,
            cfg.primary_address,
            cfg.preempt,
            cfg.preempt_delay,
            match cfg.version {
                Version::V3 => String::new(),
                v => format!(" version {}", v.as_str()),
            }
        )
        .unwrap();
        self.nodes.push(Node {
            name: name.to_string(),
            router: Router::new(cfg),
            alive: true,
            group: 0,
            deaf: false,
            mute: false,
        });
        self.nodes.len() - 1
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    pub fn router(&self, i: usize) -> &Router {
        &self.nodes[i].router
    }

    pub fn state(&self, i: usize) -> State {
        self.nodes[i].router.state()
    }

    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.state(i) == State::Master)
            .collect()
    }

    fn stamp(&self) -> String {
        let d = self.elapsed();
        format!("{:>4}.{:09}", d.as_secs(), d.subsec_nanos())
    }

    fn note(&mut self, line: String) {
        let s = self.stamp();
        writeln!(self.trace, "{s} {line}").unwrap();
    }

    pub fn input(&mut self, i: usize, input: Input) {
        let line = match &input {
            Input::Advert { src, advert } => format!(
                "{} <- Advert from {src} priority {} interval {}",
                self.nodes[i].name, advert.priority, advert.max_advert_int
            ),
            Input::AdvertV2 { src, advert } => format!(
                "{} <- AdvertV2 from {src} priority {} interval {}",
                self.nodes[i].name, advert.priority, advert.max_advert_int
            ),
            other => format!("{} <- {other:?}", self.nodes[i].name),
        };
        self.note(line);
        let now = self.now;
        self.nodes[i].router.handle(now, input);
        self.drain(i);
        self.watch_masters();
    }

    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].router.poll_action() {
            let line = format!("{} -> {action:?}", self.nodes[i].name);
            self.note(line);
            match action {
                Action::SendAdvert { priority } => self.broadcast(i, priority),
                Action::Announce { .. } => self.host_learns(i),
                Action::AnnounceFor { master, .. } => {
                    let named = self.node_of(master).expect("a repair names a known router");
                    self.repairs.push((self.elapsed(), i, named));
                    self.host_learns(named);
                }
                Action::StateChanged { from, to, reason } => self.transitions.push(Transition {
                    at: self.elapsed(),
                    node: i,
                    from,
                    to,
                    reason,
                }),
                _ => {}
            }
        }
    }

    fn node_of(&self, addr: IpAddr) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.nodes[i].router.config().primary_address == addr)
    }

    fn host_learns(&mut self, node: usize) {
        if self.host_entry != Some(node) {
            self.host_entry = Some(node);
            self.host_entries.push((self.elapsed(), node));
        }
    }

    /// Inbound VRRP to `i` lost (true) or delivered again (false).
    pub fn set_deaf(&mut self, i: usize, deaf: bool) {
        self.note(format!("{} deaf {deaf}", self.nodes[i].name));
        self.nodes[i].deaf = deaf;
    }

    /// Outbound VRRP from `i` lost (true) or delivered again (false); gratuitous ARP is not affected.
    pub fn set_mute(&mut self, i: usize, mute: bool) {
        self.note(format!("{} mute {mute}", self.nodes[i].name));
        self.nodes[i].mute = mute;
    }

    fn broadcast(&mut self, from: usize, priority: Priority) {
        self.sent.push((self.elapsed(), from, priority));
        if self.nodes[from].mute {
            self.lost += 1;
            return;
        }
        let router = &self.nodes[from].router;
        let src = router.config().primary_address;
        let advert = router.advertisement(priority);
        // What the driver puts on the wire: VRRPv3, VRRPv2 or (mixed) both, one after the other.
        let mut payloads = Vec::new();
        if router.version().sends_v3() {
            payloads.push(advert.encode(src, group(src), ChecksumMode::PseudoHeader));
        }
        if router.version().sends_v2() {
            payloads.push(AdvertisementV2::from_advert(&advert, &Auth::None).encode());
        }
        for bytes in payloads {
            self.send_to_all(from, src, bytes);
        }
    }

    fn send_to_all(&mut self, from: usize, src: IpAddr, bytes: Vec<u8>) {
        for to in 0..self.nodes.len() {
            if to == from {
                continue;
            }
            if self.loss_percent > 0 && self.random() % 100 < self.loss_percent {
                self.lost += 1;
                continue;
            }
            self.seq += 1;
            self.inflight.push(Packet {
                at: self.now + self.delay,
                seq: self.seq,
                from,
                to,
                src,
                bytes: bytes.clone(),
            });
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: deterministic, so a lossy run has a stable golden trace.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn watch_masters(&mut self) {
        let many = self.masters().len() > 1;
        let now = self.elapsed();
        match self.multi_master.last_mut() {
            Some((_, end @ None)) if !many => *end = Some(now),
            Some((_, None)) => {}
            _ if many => self.multi_master.push((now, None)),
            _ => {}
        }
    }

    pub fn startup_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.input(i, Input::Startup);
        }
    }

    /// Kill a node hard: it neither hears nor says anything any more, and leaves no priority 0 behind.
    pub fn crash(&mut self, i: usize) {
        let line = format!("{} crashed", self.nodes[i].name);
        self.note(line);
        self.nodes[i].alive = false;
        self.watch_masters();
    }

    /// Put each node in a group; packets only cross within a group (checked at delivery).
    pub fn partition(&mut self, groups: &[u32]) {
        self.note(format!("partition {groups:?}"));
        for (n, g) in self.nodes.iter_mut().zip(groups) {
            n.group = *g;
        }
    }

    pub fn heal(&mut self) {
        self.note("healed".to_string());
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    /// Run events until `until` (since the start), then move the clock there. Bounded in event count.
    pub fn run_until(&mut self, until: Duration) {
        let end = self.base + until;
        for _ in 0..1_000_000 {
            let next_packet = self.inflight.iter().map(|p| (p.at, p.seq)).min();
            let next_timer = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].alive)
                .filter_map(|i| self.nodes[i].router.poll_timeout().map(|t| (t, i)))
                .min();
            let packet_first = match (next_packet, next_timer) {
                (Some((p, _)), Some((t, _))) => p <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if packet_first {
                let (at, seq) = next_packet.unwrap();
                if at > end {
                    break;
                }
                let pos = self.inflight.iter().position(|p| p.seq == seq).unwrap();
                let p = self.inflight.swap_remove(pos);
                self.now = at;
                let (from, to) = (&self.nodes[p.from], &self.nodes[p.to]);
                if !to.alive || to.deaf || from.group != to.group {
                    continue;
                }
                if let Some(input) = self.receive(p.to, p.src, &p.bytes) {
                    self.input(p.to, input);
                }
            } else {
                let (at, i) = next_timer.unwrap();
                if at > end {
                    break;
                }
                self.now = at;
                self.input(i, Input::Timeout);
            }
        }
        assert!(self.now <= end, "event loop bound reached");
        self.now = end;
    }

    /// What the receiving driver hands its router: nothing for a version it does not speak (the driver
    /// drops it as a version mismatch).
    fn receive(&self, to: usize, src: IpAddr, bytes: &[u8]) -> Option<Input> {
        let version = self.nodes[to].router.version();
        if v2::version_of(bytes) == Some(v2::VERSION) {
            let advert =
                AdvertisementV2::decode(bytes).expect("the v2 codec decodes what it encoded");
            return version.sends_v2().then(|| Input::AdvertV2 {
                src,
                advert: advert.to_advert(),
            });
        }
        let advert = Advertisement::decode(bytes, src, group(src))
            .expect("the codec decodes what it encoded");
        version.sends_v3().then_some(Input::Advert { src, advert })
    }

    pub fn at(&mut self, t: Duration) {
        self.run_until(t);
    }

    /// The last time `node` became master.
    pub fn became_master_at(&self, node: usize) -> Option<Duration> {
        self.transitions
            .iter()
            .rev()
            .find(|t| t.node == node && t.to == State::Master)
            .map(|t| t.at)
    }

    pub fn ever_master(&self, node: usize) -> bool {
        self.became_master_at(node).is_some()
    }

    /// The last advertisement `node` sent at or before `t`.
    pub fn last_advert_before(&self, node: usize, t: Duration) -> Duration {
        self.sent
            .iter()
            .filter(|(at, n, _)| *n == node && *at <= t)
            .map(|(at, _, _)| *at)
            .max()
            .unwrap()
    }

    /// Compare the trace with `tests/golden/NAME.txt`; `UPDATE_GOLDEN=1` rewrites it instead.
    pub fn check_golden(&self, name: &str) {
        let path: PathBuf = [
            env!("CARGO_MANIFEST_DIR"),
            "tests",
            "golden",
            &format!("{name}.txt"),
        ]
        .iter()
        .collect();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &self.trace).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                path.display()
            )
        });
        if want != self.trace {
            let diff = want
                .lines()
                .zip(self.trace.lines())
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .map(|(n, (a, b))| format!("line {}:\n  golden: {a}\n  now:    {b}", n + 1))
                .unwrap_or_else(|| "one trace is a prefix of the other".to_string());
            panic!(
                "trace differs from {} (UPDATE_GOLDEN=1 to accept)\n{diff}",
                path.display()
            );
        }
    }
}
