//! A virtual router's timers, one slot each (quinn's timer table): the router sets and stops
//! them by name, asks for the earliest, and fires the due ones in a fixed order.

use crate::time::Instant;

/// A router timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// BACKUP: the master is declared down (master-down interval, or skew after a
    /// priority-0 advert or with `preempt_fast`).
    MasterDown,
    /// MASTER: the next advertisement.
    Advert,
    /// MASTER: the delayed gratuitous ARP round (`garp_master_delay`,
    /// `garp_lower_prio_delay`).
    Garp,
    /// MASTER: the periodic gratuitous ARP refresh (`garp_master_refresh`).
    Refresh,
}

impl Timer {
    /// Every timer, in the order due ones fire: a master-down timer that makes the router
    /// MASTER comes before the MASTER's own timers, which it has just set.
    pub(super) const ALL: [Timer; 4] = [
        Timer::MasterDown,
        Timer::Advert,
        Timer::Garp,
        Timer::Refresh,
    ];
}

/// When each timer expires, if set.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Timers {
    at: [Option<Instant>; 4],
}

impl Timers {
    /// Sets `t` to expire at `at`.
    pub(super) fn set(&mut self, t: Timer, at: Instant) {
        self.at[t as usize] = Some(at);
    }

    /// Stops `t`.
    pub(super) fn stop(&mut self, t: Timer) {
        self.at[t as usize] = None;
    }

    /// When `t` expires.
    pub(super) fn get(&self, t: Timer) -> Option<Instant> {
        self.at[t as usize]
    }

    /// Stops every timer.
    pub(super) fn clear(&mut self) {
        self.at = [None; 4];
    }

    /// The earliest expiry.
    pub(super) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// Whether `t` is due at `now`; a due timer is stopped.
    pub(super) fn expire(&mut self, t: Timer, now: Instant) -> bool {
        let due = self.get(t).is_some_and(|at| at <= now);
        if due {
            self.stop(t);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_is_next_and_only_due_timers_expire() {
        let t0 = Instant::ZERO;
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Advert, t0 + Duration::from_secs(1));
        t.set(Timer::Refresh, t0 + Duration::from_millis(500));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(500)));
        assert!(!t.expire(Timer::Advert, t0 + Duration::from_millis(999)));
        assert!(t.expire(Timer::Refresh, t0 + Duration::from_millis(500)));
        assert_eq!(t.get(Timer::Refresh), None);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        t.clear();
        assert_eq!(t.next(), None);
    }
}
