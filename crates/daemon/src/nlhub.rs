//! rtnetlink notifications shared by every VRRP instance and tracker of the process: one
//! socket for link changes and one for address changes, fanned out by interface index. A
//! socket per instance cost each instance two netlink connections (72 KiB of buffers each)
//! and a copy of every notification.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use holdfast_sys::link::AddrChange;
use tokio::sync::mpsc;

struct Hub<T> {
    subs: Mutex<HashMap<u32, Vec<mpsc::Sender<T>>>>,
}

impl<T: Clone + Send + 'static> Hub<T> {
    fn new() -> Hub<T> {
        Hub {
            subs: Mutex::default(),
        }
    }

    fn subscribe(&self, ifindex: u32) -> mpsc::Receiver<T> {
        let (tx, rx) = mpsc::channel(64);
        if let Ok(mut s) = self.subs.lock() {
            s.entry(ifindex).or_default().push(tx);
        }
        rx
    }

    /// Hands `ev` to `ifindex`'s subscribers, forgetting those that have gone.
    async fn dispatch(&self, ifindex: u32, ev: T) {
        let targets: Vec<mpsc::Sender<T>> = match self.subs.lock() {
            Ok(mut s) => {
                if let Some(v) = s.get_mut(&ifindex) {
                    v.retain(|tx| !tx.is_closed());
                }
                s.get(&ifindex).cloned().unwrap_or_default()
            }
            Err(_) => return,
        };
        for tx in targets {
            let _ = tx.send(ev.clone()).await;
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
                    links_hub().dispatch(ifindex, up).await;
                }
            }
        });
        Hub::new()
    })
}

fn addrs_hub() -> &'static Hub<AddrChange> {
    static H: OnceLock<Hub<AddrChange>> = OnceLock::new();
    H.get_or_init(|| {
        tokio::spawn(async {
            let (tx, mut rx) = mpsc::channel(1024);
            tokio::spawn(holdfast_sys::link::watch_addresses_all(tx));
            while let Some((ifindex, c)) = rx.recv().await {
                addrs_hub().dispatch(ifindex, c).await;
            }
        });
        Hub::new()
    })
}

/// Up/down changes of interface `ifindex` (the current state is not sent: read it first).
pub fn links(ifindex: u32) -> mpsc::Receiver<bool> {
    links_hub().subscribe(ifindex)
}

/// Addresses added to or removed from interface `ifindex`.
pub fn addresses(ifindex: u32) -> mpsc::Receiver<AddrChange> {
    addrs_hub().subscribe(ifindex)
}
