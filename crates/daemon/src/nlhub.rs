//! rtnetlink notifications shared by every VRRP instance and tracker of the process: one
//! socket for link changes and one for address changes, fanned out by interface index. A
//! socket per instance cost each instance two netlink connections (72 KiB of buffers each)
//! and a copy of every notification; a queue per subscriber cost each instance two more
//! channels. Now each interface has one broadcast ring that its subscribers read from.

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

fn links_hub() -> &'static Hub<bool> {
    static H: OnceLock<Hub<bool>> = OnceLock::new();
    H.get_or_init(|| {
        tokio::spawn(async {
            let (tx, mut rx) = mpsc::channel(256);
            tokio::spawn(holdfast_sys::link::watch_all(tx));
            // Only changes are reported, per interface.
            let mut last: HashMap<u32, bool> = HashMap::new();
            while let Some((ifindex, up)) = rx.recv().await {
                if last.insert(ifindex, up) != Some(up) {
                    links_hub().dispatch(ifindex, up);
                }
            }
        });
        Hub::new(64)
    })
}

fn addrs_hub() -> &'static Hub<AddrChange> {
    static H: OnceLock<Hub<AddrChange>> = OnceLock::new();
    H.get_or_init(|| {
        tokio::spawn(async {
            let (tx, mut rx) = mpsc::channel(1024);
            tokio::spawn(holdfast_sys::link::watch_addresses_all(tx));
            while let Some((ifindex, c)) = rx.recv().await {
                addrs_hub().dispatch(ifindex, c);
            }
        });
        // A thousand instances each adding a VIP on one link notify that many changes at
        // once.
        Hub::new(1024)
    })
}

/// Up/down changes of interface `ifindex` (the current state is not sent: read it after
/// subscribing). `Lagged` means changes were missed: read the state again.
pub fn links(ifindex: u32) -> broadcast::Receiver<bool> {
    links_hub().subscribe(ifindex)
}

/// Addresses added to or removed from interface `ifindex`. `Lagged` means changes were
/// missed: read the addresses again.
pub fn addresses(ifindex: u32) -> broadcast::Receiver<AddrChange> {
    addrs_hub().subscribe(ifindex)
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
