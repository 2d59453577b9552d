//! Rise/fall hysteresis of one backend: pure, no clock, no I/O.

/// Consecutive-result counters and the up/down decision (pingora's model, plus the first-success rule).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Hysteresis {
    healthy: bool,
    /// Whether the backend has ever been up. Until then a single success marks it up: at start-up (or when a
    /// backend is added) there is nothing to protect against flapping yet, and waiting `rise` intervals
    /// would keep the proxy empty for no gain.
    ever_up: bool,
    pub(crate) successes: u32,
    pub(crate) failures: u32,
}

impl Hysteresis {
    pub(crate) fn healthy(&self) -> bool {
        self.healthy
    }

    /// Records one result; returns the new state when it changed.
    pub(crate) fn record(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            let needed = if self.ever_up { rise.max(1) } else { 1 };
            if !self.healthy && self.successes >= needed {
                self.healthy = true;
                self.ever_up = true;
                return Some(true);
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.healthy && self.failures >= fall.max(1) {
                self.healthy = false;
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_success_marks_up_then_rise_and_fall_apply() {
        let mut h = Hysteresis::default();
        assert!(!h.healthy());
        assert_eq!(h.record(false, 2, 3), None, "down stays down");
        assert_eq!(
            h.record(true, 2, 3),
            Some(true),
            "first success ever: up at once"
        );
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(
            h.record(true, 2, 3),
            None,
            "a success resets the failure count"
        );
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(
            h.record(false, 2, 3),
            Some(false),
            "third failure in a row: down"
        );
        assert_eq!(
            h.record(true, 2, 3),
            None,
            "after having been up, one success is not enough"
        );
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), Some(true), "rise 2 in a row: up");
    }

    #[test]
    fn rise_and_fall_of_one_flip_on_every_change() {
        let mut h = Hysteresis::default();
        assert_eq!(h.record(true, 1, 1), Some(true));
        assert_eq!(h.record(false, 1, 1), Some(false));
        assert_eq!(h.record(true, 1, 1), Some(true));
        assert_eq!(h.record(true, 1, 1), None);
    }
}
