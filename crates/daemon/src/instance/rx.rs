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
    /// VRRP inside IPsec AH (`auth_type AH`): sockets of AH's protocol.
    pub ah: bool,
}

type Inbox = crate::mailbox::Sender<super::Msg>;

/// Each VRID's subscriber, in a table made once with the socket: an instance joining
/// allocates nothing (a small allocation per instance, made among the short-lived ones of
/// its start, stayed stranded between their holes in the heap). A second subscriber of a
/// VRID (rare: an instance and its replacement during a reload) waits in `extra`.
/// Packets go to subscribers shared: an `Arc` is what each mailbox slot holds.
struct Subscribers {
    slots: Box<[Option<(u64, Inbox)>]>,
    extra: Vec<(u8, u64, Inbox)>,
}

impl Default for Subscribers {
    fn default() -> Subscribers {
        Subscribers {
            slots: (0..256).map(|_| None).collect(),
            extra: Vec::new(),
        }
    }
}

impl Subscribers {
    fn add(&mut self, vrid: u8, id: u64, inbox: Inbox) {
        match &mut self.slots[usize::from(vrid)] {
            slot @ None => *slot = Some((id, inbox)),
            Some(_) => self.extra.push((vrid, id, inbox)),
        }
    }

    fn remove(&mut self, vrid: u8, id: u64) {
        let slot = &mut self.slots[usize::from(vrid)];
        if slot.as_ref().is_some_and(|(i, _)| *i == id) {
            // The VRID's next subscriber, if any, takes the slot.
            *slot = self
                .extra
                .iter()
                .position(|(v, _, _)| *v == vrid)
                .map(|k| self.extra.remove(k))
                .map(|(_, i, tx)| (i, tx));
        } else {
            self.extra.retain(|(v, i, _)| !(*v == vrid && *i == id));
        }
    }

    /// The VRIDs that have a subscriber.
    fn vrids(&self) -> Vec<u8> {
        let mut v: Vec<u8> = (0..=255u8)
            .filter(|&x| self.slots[usize::from(x)].is_some())
            .chain(self.extra.iter().map(|(x, _, _)| *x))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn of(&self, vrid: u8) -> impl Iterator<Item = &Inbox> {
        let first = self.slots[usize::from(vrid)].as_ref().map(|(_, tx)| tx);
        let rest = self
            .extra
            .iter()
            .filter(move |(v, _, _)| *v == vrid)
            .map(|(_, _, tx)| tx);
        first.into_iter().chain(rest)
    }
}

struct Shared {
    sock: Arc<VrrpSocket>,
    subs: Mutex<Subscribers>,
    /// The subscribers changed since the kernel's VRID filters were last set: the reader
    /// thread sets them again (there, not in the instance joining: a thousand instances
    /// starting would each build a filter among their long-lived allocations, and the
    /// daemon's heap would keep the holes).
    refilter: std::sync::atomic::AtomicBool,
}

/// The shared sockets by key. Process-wide because the kernel hands every VRRP packet to every
/// raw socket of its protocol: one socket per interface per process, or every packet is
/// copied once per socket.
fn registry() -> &'static Mutex<HashMap<Key, Weak<Shared>>> {
    static R: OnceLock<Mutex<HashMap<Key, Weak<Shared>>>> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

/// Subscription ids, unique across the sockets of [`registry`].
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
        if let Ok(mut subs) = self.shared.subs.lock() {
            subs.remove(self.vrid, self.id);
            self.shared.refilter.store(true, Ordering::Relaxed);
        }
    }
}

/// Joins the socket for `key` (opening it with `open` if no instance has it yet) for `vrid`,
/// whose packets go to `inbox`: returns the socket to send on and the subscription to hold.
pub fn subscribe(
    key: Key,
    vrid: u8,
    open: impl FnOnce() -> std::io::Result<VrrpSocket>,
    inbox: crate::mailbox::Sender<super::Msg>,
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
                refilter: std::sync::atomic::AtomicBool::new(true),
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
        subs.add(vrid, id, inbox);
        // Only this interface's VRIDs reach the socket (the reader sets the filter within
        // 200 ms: a new instance waits longer than that before it may take over).
        shared.refilter.store(true, Ordering::Relaxed);
    }
    let sock = shared.sock.clone();
    Ok((sock, Subscription { shared, vrid, id }))
}

/// Packets the interfaces' readers handed to no instance, since start.
#[derive(Debug, Default)]
pub struct Unowned {
    /// Too short to carry a VRID (0 or 1 byte of VRRP).
    pub too_short: AtomicU64,
    /// For a VRID no instance on that interface has.
    pub unknown_vrid: AtomicU64,
    /// Dropped because the instance's queue was full (a flood).
    pub queue_full: AtomicU64,
}

/// The process's counts of packets handed to no instance (for `/metrics`), kept beside the
/// process-wide sockets that count them.
pub static UNOWNED: Unowned = Unowned {
    too_short: AtomicU64::new(0),
    unknown_vrid: AtomicU64::new(0),
    queue_full: AtomicU64::new(0),
};

/// The reader thread: reads until the last subscription is gone (checked at least every
/// 200 ms, the socket's receive timeout) and hands each packet to its VRID's instances.
fn reader(
    key: &Key,
    shared: Weak<Shared>,
    sock: Arc<VrrpSocket>,
    log: Logger,
) -> std::io::Result<()> {
    // Adverts for the VRIDs nobody here runs arrive on a socket of their own (the kernel
    // sorts them by VRID), read by a thread that only counts them: a flood of them fills that
    // socket's queue, never the one the instances' adverts come through.
    let other = {
        let (shared, sock) = (shared.clone(), sock.clone());
        move || {
            loop {
                let got = sock.recv_other();
                if shared.strong_count() == 0 {
                    return;
                }
                match got {
                    Ok(true) => {
                        UNOWNED.unknown_vrid.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
    };
    std::thread::Builder::new()
        .name(format!("vrrp-oth-{}", key.ifname))
        .spawn(other)?;
    let name = format!("vrrp-rx-{}", key.ifname);
    let ifname = key.ifname.clone();
    // `vrrp_rt_priority`: the reader runs under the real-time policy of the thread that
    // starts it (the VRRP thread), which a new thread does not inherit (SCHED_RESET_ON_FORK);
    // without it, under the normal policy with the VRRP thread's short slice.
    let realtime = holdfast_sys::sched::realtime();
    std::thread::Builder::new().name(name).spawn(move || {
        match realtime {
            Some(priority) => {
                let _ = holdfast_sys::sched::set_realtime(priority);
            }
            None => crate::tuning::shorten_slice(),
        }
        loop {
            let got = sock.recv();
            let Some(shared) = shared.upgrade() else {
                return;
            };
            // Only this interface's VRIDs reach the socket; the others go to the counting
            // one: a flood on another VRID is sorted out by the kernel instead of crowding
            // out these adverts in the socket's queue.
            if shared.refilter.swap(false, Ordering::Relaxed) {
                let vrids = match shared.subs.lock() {
                    Ok(s) => s.vrids(),
                    Err(_) => return,
                };
                if let Err(e) = sock.set_vrids(&vrids) {
                    log.vrrp(&format!(
                        "cannot filter VRRP packets by VRID on {ifname}: {e}"
                    ));
                }
            }
            match got {
                // The VRID is the second byte in both versions; a packet too short to have
                // one is nobody's.
                Ok(Some(p)) => {
                    let p = Arc::new(p);
                    // (After an AH header, the socket gives the message behind it.)
                    let Some(&vrid) = p.payload.get(1) else {
                        UNOWNED.too_short.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let Ok(subs) = shared.subs.lock() else {
                        return;
                    };
                    let mut owners = 0;
                    for tx in subs.of(vrid) {
                        owners += 1;
                        // A full queue (a flood) drops rather than stalls the link's reader.
                        if !tx.push(super::Msg::Advert(p.clone())) {
                            UNOWNED.queue_full.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if owners == 0 {
                        UNOWNED.unknown_vrid.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &Subscribers, vrid: u8) -> Vec<u64> {
        let mut v: Vec<u64> = s.slots[usize::from(vrid)]
            .iter()
            .map(|(i, _)| *i)
            .chain(
                s.extra
                    .iter()
                    .filter(|(v, _, _)| *v == vrid)
                    .map(|(_, i, _)| *i),
            )
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn a_vrid_keeps_every_subscriber_until_each_leaves() {
        let (tx, _rx) = crate::mailbox::mailbox(4);
        let mut s = Subscribers::default();
        s.add(5, 1, tx.clone());
        s.add(5, 2, tx.clone());
        s.add(255, 3, tx.clone());
        s.add(0, 4, tx.clone());
        assert_eq!(s.of(5).count(), 2);
        assert_eq!(
            (ids(&s, 5), ids(&s, 255), ids(&s, 0)),
            (vec![1, 2], vec![3], vec![4])
        );
        assert_eq!(s.of(6).count(), 0);
        // The slot's holder leaves: the waiting subscriber takes its place.
        s.remove(5, 1);
        assert_eq!(ids(&s, 5), vec![2]);
        assert!(s.extra.is_empty());
        // Unknown ids and VRIDs change nothing.
        s.remove(5, 9);
        s.remove(7, 2);
        assert_eq!(ids(&s, 5), vec![2]);
        s.add(5, 6, tx.clone());
        s.remove(5, 6);
        assert_eq!(ids(&s, 5), vec![2]);
        s.remove(5, 2);
        assert_eq!(s.of(5).count(), 0);
        assert_eq!(ids(&s, 255), vec![3]);
    }
}
