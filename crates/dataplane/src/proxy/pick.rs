//! Which destination a new connection goes to: persistence first (the client's entry, masked to
//! the granularity), then the scheduler over the destinations that take connections (not at
//! weight 0, not over their `uthreshold`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};

use holdfast_lb::sched::{Dest, Flow, Scheduler};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{DestSpec, DestStats, ServiceSpec};

pub(super) struct DestState {
    pub(super) stats: DestStats,
    /// Thresholds and whether the destination is over them (IPVS's OVERLOAD flag).
    pub(super) upper: Option<u32>,
    pub(super) lower: Option<u32>,
    pub(super) overloaded: bool,
    /// Set to true when the destination leaves the table: its connections close.
    pub(super) removed: watch::Sender<bool>,
}

pub(super) struct Inner {
    pub(super) spec: ServiceSpec,
    pub(super) sched: Scheduler,
    pub(super) dests: Vec<DestState>,
    /// Client (masked) → (server, expiry).
    pub(super) persist: HashMap<IpAddr, (SocketAddr, Instant)>,
    /// How many entries `persist` kept at its last sweep of expired ones.
    pub(super) swept: usize,
}

pub(super) struct Service {
    pub(super) inner: Mutex<Inner>,
    /// True while this node does not hold the service's address (its VRRP instance left
    /// MASTER): the connections it still carries are orphans — their clients' packets now
    /// reach another node — and are closed at once instead of holding a server connection
    /// and two descriptors until they time out.
    pub(super) released: watch::Sender<bool>,
}

impl Service {
    pub(super) fn new(spec: &ServiceSpec) -> Service {
        Service {
            inner: Mutex::new(Inner {
                sched: Scheduler::new(spec.sched, spec.flags),
                dests: spec.dests.iter().map(dest_state).collect(),
                persist: HashMap::new(),
                swept: 0,
                spec: spec.clone(),
            }),
            released: watch::channel(false).0,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counts inconsistent in a way that
        // matters more than stopping the service would.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) fn masked(ip: IpAddr, prefix: Option<u8>) -> IpAddr {
    match (ip, crate::prefix_mask(ip.is_ipv6(), prefix.unwrap_or(128))) {
        (IpAddr::V4(a), IpAddr::V4(m)) => IpAddr::V4((u32::from(a) & u32::from(m)).into()),
        (IpAddr::V6(a), IpAddr::V6(m)) => IpAddr::V6((u128::from(a) & u128::from(m)).into()),
        _ => ip,
    }
}

/// IPVS's overload flag with hysteresis: set at `upper` connections, cleared below `lower`
/// (three quarters of `upper` when not given).
pub(super) fn overloaded(d: &DestState) -> bool {
    let Some(upper) = d.upper.filter(|u| *u > 0) else {
        return false;
    };
    let conns = d.stats.active + d.stats.inactive;
    let lower = d.lower.unwrap_or(upper * 3 / 4);
    if d.overloaded {
        conns >= lower
    } else {
        conns >= upper
    }
}

/// Chooses a destination not in `tried`, counts the connection on it and returns its address
/// and removal watch.
pub(super) fn choose(
    svc: &Service,
    peer: SocketAddr,
    local: SocketAddr,
    tried: &[SocketAddr],
) -> Option<(SocketAddr, watch::Receiver<bool>)> {
    let mut i = svc.lock();
    let now = Instant::now();
    let key = masked(peer.ip(), i.spec.persistence_prefix);
    let sticky = i
        .persistence_target(key, now)
        .filter(|a| !tried.contains(a));
    let idx = match sticky.and_then(|a| i.dests.iter().position(|d| d.stats.addr == Some(a))) {
        Some(p) if i.dests[p].stats.weight > 0 => p,
        _ => {
            for d in &mut i.dests {
                d.overloaded = overloaded(d);
            }
            let pool: Vec<Dest> = i
                .dests
                .iter()
                .map(|d| {
                    let addr = d.stats.addr.unwrap_or(local);
                    Dest {
                        addr,
                        weight: if tried.contains(&addr) {
                            0
                        } else {
                            d.stats.weight
                        },
                        active: d.stats.active,
                        inactive: d.stats.inactive,
                        overloaded: d.overloaded,
                    }
                })
                .collect();
            let flow = Flow {
                src: peer,
                dst: local,
            };
            i.sched.pick(&pool, &flow)?
        }
    };
    let d = &mut i.dests[idx];
    d.stats.active += 1;
    d.stats.conns += 1;
    let addr = d.stats.addr?;
    let rx = d.removed.subscribe();
    if let Some(t) = i.spec.persistence {
        i.persist.insert(key, (addr, now + t));
        // A client that never comes back would keep its entry for ever: once the map has
        // doubled since the last sweep, the expired entries go (amortised O(1) a connection).
        if i.persist.len() >= (2 * i.swept).max(PERSIST_SWEEP_MIN) {
            i.persist.retain(|_, (_, until)| *until > now);
            i.swept = i.persist.len();
        }
    }
    Some((addr, rx))
}

/// The persistence table's size below which expired entries are left until their client
/// returns.
pub(super) const PERSIST_SWEEP_MIN: usize = 1024;

impl Inner {
    pub(super) fn persistence_target(&mut self, key: IpAddr, now: Instant) -> Option<SocketAddr> {
        self.spec.persistence?;
        match self.persist.get(&key) {
            Some((a, until)) if *until > now => Some(*a),
            Some(_) => {
                self.persist.remove(&key);
                None
            }
            None => None,
        }
    }

    pub(super) fn with_dest(&mut self, addr: SocketAddr, f: impl FnOnce(&mut DestStats)) {
        if let Some(d) = self.dests.iter_mut().find(|d| d.stats.addr == Some(addr)) {
            f(&mut d.stats);
        }
    }
}

pub(super) fn dest_state(d: &DestSpec) -> DestState {
    DestState {
        stats: DestStats {
            addr: Some(d.addr),
            weight: d.weight,
            ..DestStats::default()
        },
        upper: d.upper,
        lower: d.lower,
        overloaded: false,
        removed: watch::channel(false).0,
    }
}
