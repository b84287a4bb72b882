//! rtnetlink notifications shared by every VRRP instance and tracker of the process: one
//! socket for link changes and one for address changes, fanned out by interface index. A
//! socket per instance cost each instance two netlink connections (72 KiB of buffers each)
//! and a copy of every notification; a queue per subscriber cost each instance two more
//! channels. Now each interface has one broadcast ring of both kinds of change that its
//! subscribers read from.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use holdfast_sys::link::AddrChange;
use tokio::sync::{broadcast, mpsc};

struct Hub<T> {
    subs: Mutex<HashMap<u32, broadcast::Sender<T>>>,
    /// Ring size per interface: a subscriber further behind than this is told it lagged
    /// (and reads the state afresh) instead of holding the notifier up.
    depth: usize,
}

impl<T: Clone + Send + 'static> Hub<T> {
    fn new(depth: usize) -> Hub<T> {
        Hub {
            subs: Mutex::default(),
            depth,
        }
    }

    /// Makes `ifindex`'s ring `depth` deep if it does not exist yet.
    fn reserve(&self, ifindex: u32, depth: usize) {
        if let Ok(mut s) = self.subs.lock() {
            s.entry(ifindex)
                .or_insert_with(|| broadcast::channel(depth).0);
        }
    }

    fn subscribe(&self, ifindex: u32) -> broadcast::Receiver<T> {
        match self.subs.lock() {
            Ok(mut s) => s
                .entry(ifindex)
                .or_insert_with(|| broadcast::channel(self.depth).0)
                .subscribe(),
            // Poisoned: a receiver that never hears anything (its sender is dropped here).
            Err(_) => broadcast::channel(1).1,
        }
    }

    /// Hands `ev` to `ifindex`'s subscribers; an interface nobody listens to any more is
    /// forgotten.
    fn dispatch(&self, ifindex: u32, ev: T) {
        if let Ok(mut s) = self.subs.lock()
            && let Some(tx) = s.get(&ifindex)
            && tx.send(ev).is_err()
        {
            s.remove(&ifindex);
        }
    }
}

/// A change on an interface, as its subscribers receive it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The link went up (true) or down.
    Link(bool),
    /// An address was added or removed.
    Addr(AddrChange),
    /// The interface was deleted (after its link went down).
    Deleted,
}

/// Interfaces appearing (`dynamic_interfaces`): their names, for whoever waits for one
/// (fed by [`hub`]'s one socket).
fn appeared() -> &'static broadcast::Sender<String> {
    static A: OnceLock<broadcast::Sender<String>> = OnceLock::new();
    A.get_or_init(|| broadcast::channel(64).0)
}

/// The names of interfaces as they appear (the link notifications of a new interface). Make
/// sure [`changes`]' notifier runs (any subscription starts it), then look for the interface
/// after subscribing: one that appears in between is then seen.
pub fn appearing() -> broadcast::Receiver<String> {
    hub();
    appeared().subscribe()
}

/// One ring per interface for both kinds of change: an instance waiting on one receiver
/// instead of two keeps about a hundred bytes less in its task, a thousand times over.
/// Process-wide because the kernel sends every link and address notification to every
/// rtnetlink socket subscribed to them: one socket for the process, fanned out here.
fn hub() -> &'static Hub<Change> {
    static H: OnceLock<Hub<Change>> = OnceLock::new();
    H.get_or_init(|| {
        tokio::spawn(async {
            let (tx, mut rx) = mpsc::channel(256);
            tokio::spawn(holdfast_sys::link::watch_all(tx));
            // Only changes are reported, per interface.
            let mut last: HashMap<u32, bool> = HashMap::new();
            while let Some(ev) = rx.recv().await {
                let holdfast_sys::link::LinkEvent {
                    index,
                    name,
                    up,
                    deleted,
                } = ev;
                let before = last.insert(index, up);
                if before != Some(up) {
                    hub().dispatch(index, Change::Link(up));
                }
                if deleted {
                    last.remove(&index);
                    hub().dispatch(index, Change::Deleted);
                } else if before.is_none()
                    && let Some(n) = name
                {
                    let _ = appeared().send(n);
                }
            }
        });
        tokio::spawn(async {
            let (tx, mut rx) = mpsc::channel(1024);
            tokio::spawn(holdfast_sys::link::watch_addresses_all(tx));
            while let Some((ifindex, c)) = rx.recv().await {
                hub().dispatch(ifindex, Change::Addr(c));
            }
        });
        // A thousand instances each adding a VIP on one link notify that many changes at
        // once.
        Hub::new(1024)
    })
}

/// Sizes `ifindex`'s ring for an interface that will carry `vips` VIPs (each added and
/// removed at once by its instance's transitions): twice that, between 64 and 1 024 changes.
/// Without it a ring is 1 024 deep (49 KB). A change dispatched before anyone subscribes
/// drops the ring (nobody listens), and the first subscriber then makes a 1 024-deep one.
pub fn reserve(ifindex: u32, vips: usize) {
    let depth = vips
        .saturating_mul(2)
        .checked_next_power_of_two()
        .unwrap_or(1024)
        .clamp(64, 1024);
    hub().reserve(ifindex, depth);
}

/// Link up/down changes and addresses added to or removed from interface `ifindex` (the
/// current state is not sent: read it after subscribing). `Lagged` means changes were
/// missed: read the link and the addresses again.
pub fn changes(ifindex: u32) -> broadcast::Receiver<Change> {
    hub().subscribe(ifindex)
}

/// Waits until interface `name` exists (it may already) and returns its index.
pub async fn interface(name: &str) -> u32 {
    let mut appear = appearing();
    loop {
        if let Ok(ix) = holdfast_sys::iface::index(name) {
            return ix;
        }
        match appear.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// The next item of an optional subscription; never ready when there is none or it has
/// closed (which leaves `None` behind).
pub async fn next<T: Clone>(
    rx: &mut Option<broadcast::Receiver<T>>,
) -> Result<T, broadcast::error::RecvError> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    let got = r.recv().await;
    if matches!(got, Err(broadcast::error::RecvError::Closed)) {
        *rx = None;
        return std::future::pending().await;
    }
    got
}
