//! Live state and probe latency of every real-server checker and VRRP tracker, for the metrics
//! endpoint. Each running checker or tracker holds its [`Cell`]; the process-wide registry keeps
//! only weak references, so a checker stopped by a reload leaves the registry with it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Whose health a cell holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// Checker `index` (in configuration order) of a real server.
    Checker {
        /// The virtual server, as keepalived names it (`[10.0.0.100]:tcp:3306`).
        vs: String,
        /// The real server.
        rs: SocketAddr,
        /// The checker's keyword (`TCP_CHECK`, `MISC_CHECK` …).
        kind: &'static str,
        /// Its position among the real server's checkers.
        index: usize,
    },
    /// A tracker of a VRRP instance.
    Tracker {
        /// The instance.
        instance: String,
        /// The script, interface, file or process name.
        name: String,
        /// `vrrp_script`, `track_interface`, `track_file` or `vrrp_track_process`.
        kind: &'static str,
    },
}

/// One checker's or tracker's live figures.
#[derive(Debug, Default)]
pub struct Cell {
    up: AtomicBool,
    probes: AtomicU64,
    failures: AtomicU64,
    last_us: AtomicU64,
    sum_us: AtomicU64,
    /// A `track_file`'s last value, if it has one.
    value: AtomicI64,
    has_value: AtomicBool,
}

impl Cell {
    /// Records one probe: its outcome and how long it took.
    pub fn probed(&self, ok: bool, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.probes.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.last_us.store(us, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Records the checker's or tracker's state (after rise/fall).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Records a value tracker's reading.
    pub fn set_value(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
        self.has_value.store(true, Ordering::Relaxed);
    }

    /// A consistent-enough copy for one scrape.
    pub fn read(&self) -> Snapshot {
        Snapshot {
            up: self.up.load(Ordering::Relaxed),
            probes: self.probes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last: Duration::from_micros(self.last_us.load(Ordering::Relaxed)),
            sum: Duration::from_micros(self.sum_us.load(Ordering::Relaxed)),
            value: self
                .has_value
                .load(Ordering::Relaxed)
                .then(|| self.value.load(Ordering::Relaxed)),
        }
    }
}

/// What a scrape reports of one cell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Up after rise/fall.
    pub up: bool,
    /// Probes run (event-driven trackers run none).
    pub probes: u64,
    /// Probes that failed.
    pub failures: u64,
    /// The last probe's duration.
    pub last: Duration,
    /// Sum of every probe's duration.
    pub sum: Duration,
    /// A `track_file`'s value.
    pub value: Option<i64>,
}

/// The cells of everything running, weakly held.
#[derive(Default)]
pub struct Registry {
    cells: Mutex<Vec<(Owner, Weak<Cell>)>>,
}

impl Registry {
    /// A new cell for `owner`, starting `up` or down; it counts as long as the caller keeps it.
    pub fn register(&self, owner: Owner, up: bool) -> Arc<Cell> {
        let cell = Arc::new(Cell::default());
        cell.set_up(up);
        if let Ok(mut v) = self.cells.lock() {
            // Dead cells (a reload's stopped checkers) go when the list has doubled since
            // they were last swept: scanning at every registration cost O(n²) for 10 000
            // checkers starting.
            if v.len() == v.capacity() {
                v.retain(|(_, w)| w.strong_count() > 0);
            }
            v.push((owner, Arc::downgrade(&cell)));
        }
        cell
    }

    /// Every live cell, ordered by owner.
    pub fn snapshot(&self) -> Vec<(Owner, Snapshot)> {
        let mut out: Vec<(Owner, Snapshot)> = self
            .cells
            .lock()
            .map(|v| {
                v.iter()
                    .filter_map(|(o, w)| w.upgrade().map(|c| (o.clone(), c.read())))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_cell_leaves_the_registry() {
        let r = Registry::default();
        let owner = |i| Owner::Checker {
            vs: "[10.0.0.100]:tcp:3306".into(),
            rs: "10.0.0.11:3306".parse().unwrap(),
            kind: "TCP_CHECK",
            index: i,
        };
        let kept = r.register(owner(0), false);
        let gone = r.register(owner(1), true);
        kept.probed(true, Duration::from_millis(2));
        kept.probed(false, Duration::from_millis(4));
        kept.set_up(true);
        drop(gone);
        let s = r.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, owner(0));
        assert_eq!(
            s[0].1,
            Snapshot {
                up: true,
                probes: 2,
                failures: 1,
                last: Duration::from_millis(4),
                sum: Duration::from_millis(6),
                value: None,
            }
        );
    }
}
