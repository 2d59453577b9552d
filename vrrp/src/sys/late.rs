//! Late timers: the driver woke well after the deadline it slept towards (Keepalived's "A thread timer expired
//! N seconds ago"). The process was not scheduled meanwhile (SIGSTOP, a paused VM, CPU starvation, a
//! synchronous call stuck on a disk), so a backup may have taken over. Measured on the monotonic clock
//! (`std::time::Instant`), so a wall-clock step never counts.
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::VrrpStats;
use crate::proto::Vrid;

/// Lateness below this never counts, whatever the interval (10 ms adverts see that much scheduling jitter).
pub(crate) const LATE_FLOOR: Duration = Duration::from_millis(100);

/// How late a timer due at `deadline` is at `now`, when that counts: more than one advertisement `interval`
/// and more than [`LATE_FLOOR`] past the deadline. `None` when on time (or early).
pub(crate) fn lateness(deadline: Instant, now: Instant, interval: Duration) -> Option<Duration> {
    let late = now.checked_duration_since(deadline)?;
    (late > interval.max(LATE_FLOOR)).then_some(late)
}

/// Counts each late deadline once and logs at most one warning per 10 s ([`super::log_due`]).
#[derive(Debug, Default)]
pub(crate) struct LateTimers {
    /// The last deadline counted (the driver can see the same one late from two branches).
    counted: Option<Instant>,
    logged: Option<Instant>,
}

impl LateTimers {
    /// Checks the deadline the driver slept towards against `now`; counts and logs when it is late.
    pub fn check(
        &mut self,
        deadline: Option<Instant>,
        now: Instant,
        interval: Duration,
        stats: &VrrpStats,
        vrid: Vrid,
    ) {
        let Some(deadline) = deadline else { return };
        if self.counted == Some(deadline) {
            return;
        }
        let Some(late) = lateness(deadline, now, interval) else {
            return;
        };
        self.counted = Some(deadline);
        let total = stats.late_timers.fetch_add(1, Ordering::Relaxed) + 1;
        if !super::log_due(&mut self.logged, now) {
            return;
        }
        tracing::warn!(%vrid, late_ms = late.as_millis() as u64, interval_ms = interval.as_millis() as u64,
            total, "VRRP timer expired {:.3} s late: vipd was not scheduled (stopped by SIGSTOP, a paused VM, \
            CPU starvation or a call stuck on a disk); a backup may have taken over meanwhile",
            late.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn late_only_past_one_interval_and_the_floor() {
        let d = Instant::now();
        let second = 1000 * MS;
        // Early or on time: never late.
        assert_eq!(lateness(d + MS, d, second), None);
        assert_eq!(lateness(d, d, second), None);
        // Within one interval: jitter, not late; beyond it: late, by how much.
        assert_eq!(lateness(d, d + 999 * MS, second), None);
        assert_eq!(lateness(d, d + second, second), None);
        assert_eq!(lateness(d, d + 1001 * MS, second), Some(1001 * MS));
        // 10 ms adverts: the 100 ms floor applies, not the interval.
        assert_eq!(lateness(d, d + 50 * MS, 10 * MS), None);
        assert_eq!(lateness(d, d + 100 * MS, 10 * MS), None);
        assert_eq!(lateness(d, d + 101 * MS, 10 * MS), Some(101 * MS));
        // A 2 s stop with 100 ms adverts.
        assert_eq!(lateness(d, d + 2000 * MS, 100 * MS), Some(2000 * MS));
    }

    #[test]
    fn each_late_deadline_counts_once() {
        let stats = VrrpStats::default();
        let vrid = Vrid::new(7).unwrap();
        let mut late = LateTimers::default();
        let d = Instant::now();
        late.check(None, d + 5000 * MS, 10 * MS, &stats, vrid);
        late.check(Some(d), d + 50 * MS, 10 * MS, &stats, vrid);
        assert_eq!(stats.late_timers.load(Ordering::Relaxed), 0);
        late.check(Some(d), d + 2000 * MS, 10 * MS, &stats, vrid);
        late.check(Some(d), d + 2001 * MS, 10 * MS, &stats, vrid);
        assert_eq!(stats.late_timers.load(Ordering::Relaxed), 1);
        // Another deadline late again counts again (the log line is rate-limited, the count is not).
        late.check(Some(d + 3000 * MS), d + 5000 * MS, 10 * MS, &stats, vrid);
        assert_eq!(stats.late_timers.load(Ordering::Relaxed), 2);
    }
}
