//! The fault schedule: a pure function of a seed (FoundationDB's rule), so a failing run is replayed by
//! passing its seed again. Faults come one at a time: each is applied, held, healed, then the run settles
//! (the checker's bounds start at the heal) before the next.
use serde::{Deserialize, Serialize};

/// Every fault the run knows. `node` in [`Fault`] is the load-balancer node it hits (an apiserver index for
/// the apiserver faults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// kill -9 the daemon, restart it at the heal.
    Kill9,
    /// SIGTERM the daemon, restart it at the heal.
    Sigterm,
    /// SIGSTOP for less than Master_Down_Interval, then SIGCONT.
    StopShort,
    /// SIGSTOP for longer than Master_Down_Interval, then SIGCONT.
    StopLong,
    /// The node's cable cut, then restored.
    LinkCut,
    /// The cable cut and restored several times in a row.
    LinkFlap,
    /// 30% packet loss on the node's link.
    Loss,
    /// The node's VRRP isolated from the others (the client still reaches it).
    VrrpPartition,
    /// The scenario 2: a backup hears nothing for 0.6 s, then its own VRRP is lost for 3 s more.
    LossyBackup,
    /// The VIP removed by hand from the master's interface.
    VipRemoved,
    /// An apiserver stalled (accepts, never answers), then resumed.
    ApiStall,
    /// An apiserver killed, then restarted.
    ApiKill,
    /// An apiserver's `/readyz` answering 500 (it still serves everything else), then 200 again.
    ApiNotReady,
    /// Every load balancer reloaded with a changed backend list (apiserver `node` left out), then reloaded
    /// with the full list at the heal: vipd by SIGHUP, HAProxy by starting a new process with `-sf` (the
    /// old one finishes its sessions).
    Reload,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::Kill9,
        Kind::Sigterm,
        Kind::StopShort,
        Kind::StopLong,
        Kind::LinkCut,
        Kind::LinkFlap,
        Kind::Loss,
        Kind::VrrpPartition,
        Kind::LossyBackup,
        Kind::VipRemoved,
        Kind::ApiStall,
        Kind::ApiKill,
        Kind::ApiNotReady,
        Kind::Reload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Kill9 => "kill9",
            Kind::Sigterm => "sigterm",
            Kind::StopShort => "stop_short",
            Kind::StopLong => "stop_long",
            Kind::LinkCut => "link_cut",
            Kind::LinkFlap => "link_flap",
            Kind::Loss => "loss",
            Kind::VrrpPartition => "vrrp_partition",
            Kind::LossyBackup => "lossy_backup",
            Kind::VipRemoved => "vip_removed",
            Kind::ApiStall => "api_stall",
            Kind::ApiKill => "api_kill",
            Kind::ApiNotReady => "api_not_ready",
            Kind::Reload => "reload",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Faults on the load-balancer node that holds the VIP when they strike (the others pick any node).
    pub fn hits_master(self) -> bool {
        matches!(self, Kind::VipRemoved)
    }

    /// Faults during which two holders are allowed (the two sides cannot hear each other).
    pub fn splits(self) -> bool {
        matches!(self, Kind::VrrpPartition | Kind::Loss | Kind::LossyBackup)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: Kind,
    /// Load-balancer node index (0 = highest priority), or apiserver index for `Api*` and `Reload` (the
    /// backend the reload leaves out).
    pub node: usize,
    /// How long the fault is held, seconds.
    pub hold: f64,
    /// How long the run settles after the heal before the next fault, seconds.
    pub settle: f64,
}

/// xorshift64*: small, deterministic, good enough to draw faults.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

/// Faults for a run of about `seconds`, drawn from `kinds` (every kind once in turn, shuffled per round, so a
/// short run still sees each kind), each hold and settle drawn within the kind's range. `advert` is the
/// advertisement interval in seconds, which sets the short and long SIGSTOP.
pub fn generate(seed: u64, seconds: f64, kinds: &[Kind], advert: f64) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let mdi = 3.0 * advert + advert; // upper bound of Master_Down_Interval (skew < one interval)
    let mut out = Vec::new();
    let mut used = 0.0;
    'rounds: for _ in 0..10_000 {
        let mut round: Vec<Kind> = kinds.to_vec();
        for i in (1..round.len()).rev() {
            round.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for kind in round {
            let hold = match kind {
                Kind::StopShort => rng.range(0.3, 0.6) * (3.0 * advert),
                Kind::StopLong => mdi * 2.0 + rng.range(0.0, 2.0),
                Kind::LossyBackup => 3.6,
                Kind::LinkFlap => rng.range(2.0, 4.0),
                Kind::VipRemoved => 0.0,
                // Longer than the checks take to mark the backend down (fall x interval) plus the slack, so the
                // checker always requires the line.
                Kind::ApiNotReady => rng.range(3.5, 5.0),
                _ => rng.range(1.0, 4.0),
            };
            // Long enough for the checker's bound after the heal, so each fault is judged on its own.
            let settle = rng
                .range(4.0, 6.0)
                .max(super::check::bound(kind, 150, advert) + 1.5);
            let node = match kind {
                Kind::LossyBackup => 1 + rng.below(2) as usize,
                _ => rng.below(3) as usize,
            };
            if used + hold + settle > seconds {
                break 'rounds;
            }
            used += hold + settle;
            out.push(Fault {
                kind,
                node,
                hold,
                settle,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed() {
        let a = generate(42, 300.0, &Kind::ALL, 0.1);
        assert_eq!(a, generate(42, 300.0, &Kind::ALL, 0.1));
        assert_ne!(a, generate(43, 300.0, &Kind::ALL, 0.1));
        let total: f64 = a.iter().map(|f| f.hold + f.settle).sum();
        assert!(total <= 300.0);
        // Every kind appears in the first round.
        for k in Kind::ALL {
            assert!(a[..Kind::ALL.len()].iter().any(|f| f.kind == k), "{k:?}");
        }
    }

    #[test]
    fn stops_are_shorter_and_longer_than_master_down_interval() {
        let mdi = 0.3 + 0.1 * (256.0 - 100.0) / 256.0;
        for f in generate(1, 2000.0, &[Kind::StopShort, Kind::StopLong], 0.1) {
            match f.kind {
                Kind::StopShort => assert!(f.hold < 0.3, "{f:?}"),
                Kind::StopLong => assert!(f.hold > mdi, "{f:?}"),
                _ => unreachable!(),
            }
        }
        assert_eq!(Kind::parse("lossy_backup"), Some(Kind::LossyBackup));
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }
}
