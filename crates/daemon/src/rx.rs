//! VRRP sockets shared by the instances on one interface, as keepalived shares them: one
//! socket (and one reader thread) per interface, family, multicast group and source, whatever
//! the number of instances on it, each packet handed only to the instance of its VRID.
//! A socket per instance made every instance receive — and copy — every advert on the link:
//! with 250 instances a link at 0.1 s that is 625 000 deliveries a second per link.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use holdfast_sys::vrrp_socket::VrrpSocket;

use crate::logging::Logger;

/// What makes two instances' sockets the same socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// Interface.
    pub ifname: String,
    /// Multicast group joined (none: unicast).
    pub group: Option<IpAddr>,
    /// The source an IPv6 socket is bound to (IPv4 sockets take it per packet).
    pub v6_src: Option<IpAddr>,
    /// TTL for unicast sends.
    pub unicast_ttl: u8,
}

/// Packets go to subscribers shared: an `Arc` is what each mailbox slot holds.
type Subscribers = HashMap<u8, Vec<(u64, crate::mailbox::Sender<crate::run::Msg>)>>;

struct Shared {
    sock: Arc<VrrpSocket>,
    subs: Mutex<Subscribers>,
}

fn registry() -> &'static Mutex<HashMap<Key, Weak<Shared>>> {
    static R: OnceLock<Mutex<HashMap<Key, Weak<Shared>>>> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// An instance's place on a shared socket: its packets arrive on the receiver it was given;
/// dropping it leaves, and the last one to leave closes the socket.
pub struct Subscription {
    shared: Arc<Shared>,
    vrid: u8,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.shared.subs.lock()
            && let Some(v) = subs.get_mut(&self.vrid)
        {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                subs.remove(&self.vrid);
            }
        }
    }
}

/// Joins the socket for `key` (opening it with `open` if no instance has it yet) for `vrid`,
/// whose packets go to `inbox`: returns the socket to send on and the subscription to hold.
pub fn subscribe(
    key: Key,
    vrid: u8,
    open: impl FnOnce() -> std::io::Result<VrrpSocket>,
    inbox: crate::mailbox::Sender<crate::run::Msg>,
    log: Logger,
) -> std::io::Result<(Arc<VrrpSocket>, Subscription)> {
    let mut reg = registry()
        .lock()
        .map_err(|_| std::io::Error::other("socket registry poisoned"))?;
    let shared = match reg.get(&key).and_then(Weak::upgrade) {
        Some(s) => s,
        None => {
            let shared = Arc::new(Shared {
                sock: Arc::new(open()?),
                subs: Mutex::default(),
            });
            reader(&key, Arc::downgrade(&shared), shared.sock.clone(), log)?;
            reg.insert(key, Arc::downgrade(&shared));
            shared
        }
    };
    reg.retain(|_, w| w.strong_count() > 0);
    drop(reg);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut subs) = shared.subs.lock() {
        subs.entry(vrid).or_default().push((id, inbox));
    }
    let sock = shared.sock.clone();
    Ok((sock, Subscription { shared, vrid, id }))
}

/// The reader thread: reads until the last subscription is gone (checked at least every
/// 200 ms, the socket's receive timeout) and hands each packet to its VRID's instances.
fn reader(
    key: &Key,
    shared: Weak<Shared>,
    sock: Arc<VrrpSocket>,
    log: Logger,
) -> std::io::Result<()> {
    let name = format!("vrrp-rx-{}", key.ifname);
    std::thread::Builder::new().name(name).spawn(move || {
        loop {
            let got = sock.recv();
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match got {
                // The VRID is the second byte in both versions; a packet too short to have
                // one is nobody's.
                Ok(Some(p)) => {
                    let p = Arc::new(p);
                    let Some(&vrid) = p.payload.get(1) else {
                        continue;
                    };
                    let Ok(subs) = shared.subs.lock() else {
                        return;
                    };
                    for (_, tx) in subs.get(&vrid).into_iter().flatten() {
                        // A full queue (a flood) drops rather than stalls the link's reader.
                        tx.push(crate::run::Msg::Advert(p.clone()));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    log.vrrp(&format!("receive error: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })?;
    Ok(())
}
