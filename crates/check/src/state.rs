//! keepalived's checker timing and state, without IO: when the next probe is due and what a
//! probe's result changes. Time is a `Duration` since an epoch the driver picks.
//!
//! A checker probes every `delay_loop`. A failure while up is retried `retry` times,
//! `delay_before_retry` apart, before the checker goes down; a checker that is down probes
//! again every `delay_loop` and comes up after `rise` consecutive successes (keepalived: 1).
//! The first probe waits a random time up to `warmup` (default: up to `delay_loop`), so many
//! checkers do not start together. With `alpha` a checker starts down.

use std::time::Duration;

/// A checker's timing and thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckerConfig {
    /// `delay_loop`: time between probes.
    pub delay_loop: Duration,
    /// `retry`: failed retries before going down.
    pub retry: u32,
    /// `delay_before_retry`.
    pub delay_before_retry: Duration,
    /// `warmup`: largest random delay before the first probe (`None`: `delay_loop`).
    pub warmup: Option<Duration>,
    /// `alpha`: start down.
    pub alpha: bool,
    /// Consecutive successes to come up (keepalived: 1).
    pub rise: u32,
}

impl CheckerConfig {
    /// A `vrrp_script`'s (or native tracker's) thresholds as a checker's: probed every
    /// `interval`, down after `fall` consecutive failures (a failure is "retried" at the next
    /// interval, `fall - 1` times), up after `rise` consecutive successes; starting down with
    /// `init_fail`. keepalived counts both the same way.
    pub fn rise_fall(interval: Duration, rise: u32, fall: u32, init_fail: bool) -> CheckerConfig {
        CheckerConfig {
            delay_loop: interval,
            retry: fall.max(1) - 1,
            delay_before_retry: interval,
            warmup: Some(Duration::ZERO),
            alpha: init_fail,
            rise: rise.max(1),
        }
    }
}

impl Default for CheckerConfig {
    /// keepalived 2.2's defaults for TCP_CHECK.
    fn default() -> CheckerConfig {
        CheckerConfig {
            delay_loop: Duration::from_secs(60),
            retry: 1,
            delay_before_retry: Duration::from_secs(1),
            warmup: None,
            alpha: false,
            rise: 1,
        }
    }
}

/// A change of a checker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flip {
    /// Came up.
    Up,
    /// Went down after this many failed retries.
    Down {
        /// Retries made before giving up (0: the first failure decided).
        retries: u32,
    },
}

/// One checker's state.
#[derive(Clone, Debug)]
pub struct CheckerState {
    cfg: CheckerConfig,
    up: bool,
    failures: u32,
    successes: u32,
    due: Duration,
}

impl CheckerState {
    /// A checker created at `now`; `seed` places its first probe within the warmup.
    pub fn new(cfg: CheckerConfig, now: Duration, seed: u64) -> CheckerState {
        let warmup = cfg.warmup.unwrap_or(cfg.delay_loop);
        let first = if warmup.is_zero() {
            Duration::ZERO
        } else {
            let micros = u64::try_from(warmup.as_micros()).unwrap_or(u64::MAX);
            Duration::from_micros(splitmix64(seed) % micros.saturating_add(1))
        };
        CheckerState {
            cfg,
            up: !cfg.alpha,
            failures: 0,
            successes: 0,
            due: now + first,
        }
    }

    /// Whether the checker is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// When the next probe is due.
    pub fn next_due(&self) -> Duration {
        self.due
    }

    /// Whether the last failure is being retried.
    pub fn retrying(&self) -> u32 {
        self.failures
    }

    /// Records a probe's result at `now`; returns the change it makes, if any.
    pub fn observe(&mut self, now: Duration, ok: bool) -> Option<Flip> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            self.due = now + self.cfg.delay_loop;
            if !self.up && self.successes >= self.cfg.rise.max(1) {
                self.up = true;
                return Some(Flip::Up);
            }
            return None;
        }
        self.successes = 0;
        if !self.up {
            self.due = now + self.cfg.delay_loop;
            return None;
        }
        if self.failures < self.cfg.retry {
            self.failures += 1;
            self.due = now + self.cfg.delay_before_retry;
            return None;
        }
        let retries = self.failures;
        self.failures = 0;
        self.up = false;
        self.due = now + self.cfg.delay_loop;
        Some(Flip::Down { retries })
    }
}

/// A fixed, well-mixed function of the seed (SplitMix64's finaliser).
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn cfg(retry: u32) -> CheckerConfig {
        CheckerConfig {
            delay_loop: s(6),
            retry,
            delay_before_retry: s(1),
            warmup: Some(Duration::ZERO),
            alpha: false,
            rise: 1,
        }
    }

    #[test]
    fn a_failure_is_retried_then_declared_down() {
        let mut c = CheckerState::new(cfg(2), s(0), 1);
        assert_eq!(c.next_due(), s(0));
        assert_eq!(c.observe(s(0), false), None);
        assert_eq!(c.next_due(), s(1), "retry after delay_before_retry");
        assert_eq!(c.observe(s(1), false), None);
        assert_eq!(c.observe(s(2), false), Some(Flip::Down { retries: 2 }));
        assert!(!c.is_up());
        assert_eq!(c.next_due(), s(8), "down: back to delay_loop");
        assert_eq!(c.observe(s(8), false), None);
        assert_eq!(c.observe(s(14), true), Some(Flip::Up));
        assert_eq!(c.next_due(), s(20));
    }

    #[test]
    fn rise_and_fall_count_consecutive_results_as_vrrp_script_does() {
        let mut c = CheckerState::new(CheckerConfig::rise_fall(s(2), 2, 3, false), s(0), 1);
        assert!(c.is_up());
        // Two failures, a success: the count starts again.
        assert_eq!(c.observe(s(0), false), None);
        assert_eq!(c.observe(s(2), false), None);
        assert_eq!(c.next_due(), s(4), "failures are counted at the interval");
        assert_eq!(c.observe(s(4), true), None);
        assert_eq!(c.observe(s(6), false), None);
        assert_eq!(c.observe(s(8), false), None);
        assert_eq!(c.observe(s(10), false), Some(Flip::Down { retries: 2 }));
        // Down: a success, a failure, then two successes.
        assert_eq!(c.observe(s(12), true), None);
        assert_eq!(c.observe(s(14), false), None);
        assert_eq!(c.observe(s(16), true), None);
        assert_eq!(c.observe(s(18), true), Some(Flip::Up));
        // fall 1 (or 0) and rise 1: every result decides; init_fail starts down.
        let mut c = CheckerState::new(CheckerConfig::rise_fall(s(1), 0, 0, true), s(0), 1);
        assert!(!c.is_up());
        assert_eq!(c.observe(s(0), true), Some(Flip::Up));
        assert_eq!(c.observe(s(1), false), Some(Flip::Down { retries: 0 }));
    }

    #[test]
    fn a_success_between_retries_resets_them() {
        let mut c = CheckerState::new(cfg(1), s(0), 1);
        assert_eq!(c.observe(s(0), false), None);
        assert_eq!(c.observe(s(1), true), None);
        assert_eq!(c.observe(s(7), false), None, "one retry again");
        assert_eq!(c.observe(s(8), false), Some(Flip::Down { retries: 1 }));
    }

    #[test]
    fn retry_zero_goes_down_at_the_first_failure() {
        let mut c = CheckerState::new(cfg(0), s(0), 1);
        assert_eq!(c.observe(s(0), false), Some(Flip::Down { retries: 0 }));
    }

    #[test]
    fn alpha_starts_down_and_rise_needs_consecutive_successes() {
        let mut c = CheckerState::new(
            CheckerConfig {
                alpha: true,
                rise: 3,
                ..cfg(1)
            },
            s(0),
            1,
        );
        assert!(!c.is_up());
        assert_eq!(c.observe(s(0), true), None);
        assert_eq!(c.observe(s(6), true), None);
        assert_eq!(c.observe(s(12), false), None);
        assert_eq!(c.observe(s(18), true), None);
        assert_eq!(c.observe(s(24), true), None);
        assert_eq!(c.observe(s(30), true), Some(Flip::Up));
    }

    #[test]
    fn warmup_spreads_first_probes_within_the_bound() {
        let c = CheckerConfig {
            warmup: None,
            ..cfg(1)
        };
        let firsts: Vec<Duration> = (0..200)
            .map(|seed| CheckerState::new(c, s(100), seed).next_due())
            .collect();
        assert!(firsts.iter().all(|d| *d >= s(100) && *d <= s(106)));
        let distinct: std::collections::HashSet<_> = firsts.iter().collect();
        assert!(distinct.len() > 150, "first probes must be spread out");
    }
}
