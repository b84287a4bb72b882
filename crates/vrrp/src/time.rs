//! Time as the core sees it.
//!
//! DESIGN.md sketches `std::time::Instant`; a pure core cannot create one (only reading the
//! clock can), which would make deterministic simulation impossible. So the core
//! uses this monotonic instant — microseconds since an epoch the driver chooses (the daemon:
//! its start) — and the daemon maps `std::time::Instant` onto it.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in monotonic time, in microseconds since the driver's epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(0);

    /// `d` after the epoch.
    pub fn from_epoch(d: Duration) -> Instant {
        Instant(d.as_micros().min(u128::from(u64::MAX)) as u64)
    }

    /// Time since the epoch.
    pub fn since_epoch(self) -> Duration {
        Duration::from_micros(self.0)
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(d.as_micros().min(u128::from(u64::MAX)) as u64),
        )
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}
