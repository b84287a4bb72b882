//! The `bfd_instance` sessions (keepalived's BFD process): one task drives every session over
//! the pure [`holdfast_check::bfd::Session`], reading port 3784 and sending from each session's
//! own socket; `track_bfd` trackers follow a session's Up/Down through [`watch`]. A reload
//! keeps the sessions whose configuration is unchanged.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use holdfast_check::bfd::{Event, Packet, Session, SessionConfig};
use holdfast_config::model::BfdInstance;
use holdfast_sys::bfd_socket;
use tokio::sync::watch;

use crate::logging::Logger;

/// Each session's Up (true) or not, by name: made when the sessions start, read by trackers.
#[derive(Default)]
pub struct Sessions {
    by_name: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl Sessions {
    /// Session `name`'s state, as it changes (down until it first comes up); `None` when no
    /// session has that name.
    pub fn watch(&self, name: &str) -> Option<watch::Receiver<bool>> {
        self.by_name
            .lock()
            .ok()?
            .get(name)
            .map(watch::Sender::subscribe)
    }
}

/// One session with what it needs on the wire.
struct Running {
    /// Its configuration (a reload keeps a session whose configuration is unchanged).
    cfg: BfdInstance,
    session: Session,
    tx: UdpSocket,
    up: watch::Sender<bool>,
    /// The last send failed (keepalived says so once, until one succeeds).
    send_error: bool,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The running sessions: a task, and the configuration it was last given.
pub struct Bfd {
    sessions: Arc<Sessions>,
    task: tokio::task::JoinHandle<()>,
    tx: tokio::sync::mpsc::UnboundedSender<Vec<(BfdInstance, watch::Sender<bool>)>>,
    current: Vec<BfdInstance>,
}

/// Each instance of `instances` with its state channel: the one it has if a session of that
/// name runs with the same configuration, a new one (down) otherwise; the registry then holds
/// exactly these, so that trackers started next find them.
fn register(
    sessions: &Sessions,
    instances: &[BfdInstance],
    current: &[BfdInstance],
) -> Vec<(BfdInstance, watch::Sender<bool>)> {
    let Ok(mut r) = sessions.by_name.lock() else {
        return Vec::new();
    };
    let out: Vec<_> = instances
        .iter()
        .map(|b| {
            let kept = current
                .contains(b)
                .then(|| r.get(&b.name).cloned())
                .flatten();
            let up = kept.unwrap_or_else(|| watch::channel(false).0);
            r.insert(b.name.clone(), up.clone());
            (b.clone(), up)
        })
        .collect();
    r.retain(|name, _| instances.iter().any(|b| &b.name == name));
    out
}

impl Bfd {
    /// Starts the sessions of `instances`; they run until [`Bfd::stop`].
    pub fn start(instances: &[BfdInstance], sessions: Arc<Sessions>, log: Logger) -> Bfd {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = tx.send(register(&sessions, instances, &[]));
        Bfd {
            sessions,
            task: tokio::spawn(run(rx, log)),
            tx,
            current: instances.to_vec(),
        }
    }

    /// A reload: sessions whose configuration is unchanged go on (their state kept), the
    /// others stop, new ones start.
    pub fn reload(&mut self, instances: &[BfdInstance]) {
        if instances == self.current.as_slice() {
            return;
        }
        let _ = self
            .tx
            .send(register(&self.sessions, instances, &self.current));
        self.current = instances.to_vec();
    }

    /// Stops every session.
    pub fn stop(self) {
        self.task.abort();
        register(&self.sessions, &[], &[]);
    }
}

/// A session for `b`, reporting on `up`; `None` (said in the log) when its socket cannot be
/// opened.
fn session(
    b: &BfdInstance,
    up: watch::Sender<bool>,
    now: Duration,
    log: Logger,
) -> Option<Running> {
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let k = SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = u64::from(std::process::id()) << 20 | k;
    let tx = match bfd_socket::open_tx(b.source, b.neighbor.is_ipv6(), b.ttl, seed as u16) {
        Ok(s) => s,
        Err(e) => {
            log.bfd(&format!("({}) Error opening socket: {e}", b.name));
            return None;
        }
    };
    let cfg = SessionConfig {
        min_rx: micros(b.min_rx),
        min_tx: micros(b.min_tx),
        idle_tx: micros(b.idle_tx),
        multiplier: b.multiplier,
        passive: b.passive,
    };
    Some(Running {
        cfg: b.clone(),
        session: Session::new(&b.name, cfg, now, seed.wrapping_mul(0x9e37_79b9)),
        tx,
        up,
        send_error: false,
    })
}

/// Waits until `s` has a datagram (never, without a socket).
async fn readable(s: &Option<tokio::net::UdpSocket>) -> std::io::Result<()> {
    match s {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

/// Reads every datagram waiting on `s` and hands each to its session.
fn read_all(
    s: &Option<tokio::net::UdpSocket>,
    sessions: &mut [Running],
    buf: &mut [u8],
    now: Duration,
    log: Logger,
) {
    let Some(s) = s else { return };
    loop {
        match s.try_io(tokio::io::Interest::READABLE, || bfd_socket::recv(s, buf)) {
            Ok((n, src, ttl)) => deliver(sessions, &buf[..n], src, ttl, now, log),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                log.bfd(&format!("Error receiving BFD packet: {e}"));
                return;
            }
        }
    }
}

async fn run(
    mut cmds: tokio::sync::mpsc::UnboundedReceiver<Vec<(BfdInstance, watch::Sender<bool>)>>,
    log: Logger,
) {
    let epoch = Instant::now();
    let now = || epoch.elapsed();
    let mut buf = [0u8; 1500];
    let mut sessions: Vec<Running> = Vec::new();
    let mut rx: [Option<tokio::net::UdpSocket>; 2] = [None, None];
    loop {
        for r in &mut sessions {
            drain(r, log);
        }
        let next = sessions
            .iter()
            .filter_map(|r| r.session.poll_timeout())
            .min()
            .map(|t| tokio::time::Instant::from_std(epoch + t));
        let timer = async {
            match next {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = timer => {
                let t = now();
                for r in &mut sessions {
                    if r.session.poll_timeout().is_some_and(|d| d <= t) {
                        r.session.on_timeout(t);
                    }
                }
            }
            Ok(()) = readable(&rx[0]) => read_all(&rx[0], &mut sessions, &mut buf, now(), log),
            Ok(()) = readable(&rx[1]) => read_all(&rx[1], &mut sessions, &mut buf, now(), log),
            wanted = cmds.recv() => {
                let Some(wanted) = wanted else { return };
                let mut old = std::mem::take(&mut sessions);
                for (b, up) in wanted {
                    match old.iter().position(|r| r.cfg == b) {
                        Some(k) => sessions.push(old.swap_remove(k)),
                        None => sessions.extend(session(&b, up, now(), log)),
                    }
                }
                for (slot, v6) in rx.iter_mut().zip([false, true]) {
                    let needed = sessions.iter().any(|r| r.cfg.neighbor.is_ipv6() == v6);
                    if !needed {
                        *slot = None;
                    } else if slot.is_none() {
                        match bfd_socket::open_rx(v6).and_then(tokio::net::UdpSocket::from_std) {
                            Ok(s) => *slot = Some(s),
                            Err(e) => log.bfd(&format!(
                                "Error opening the BFD receive socket (IPv{}): {e}",
                                if v6 { 6 } else { 4 }
                            )),
                        }
                    }
                }
            }
        }
    }
}

/// Hands a datagram to its session: by its "your discriminator", or, while that is zero, by
/// the neighbour's address; checked as keepalived checks it (bogus packets and a TTL below
/// `ttl - max_hops` are discarded).
fn deliver(
    sessions: &mut [Running],
    b: &[u8],
    src: SocketAddr,
    ttl: u8,
    now: Duration,
    log: Logger,
) {
    let Ok(p) = Packet::parse(b) else {
        if log.detail {
            log.bfd(&format!("Discarding bogus packet from {src}"));
        }
        return;
    };
    let found = sessions.iter_mut().find(|r| {
        if p.your_discr == 0 {
            r.cfg.neighbor == src.ip()
        } else {
            r.session.discriminator_value() == p.your_discr
        }
    });
    let Some(r) = found else {
        if log.detail {
            log.bfd(&format!(
                "Discarding packet from {src} (session is not found - your discriminator field is 0x{:08x})",
                p.your_discr
            ));
        }
        return;
    };
    let (max_hops, want) = (r.cfg.max_hops, i32::from(r.cfg.ttl));
    if max_hops != 255 && ttl != 0 && i32::from(ttl) + max_hops < want {
        if log.detail {
            log.bfd(&format!(
                "Packet ttl({ttl}) < {} - discarding",
                want - max_hops
            ));
        }
        return;
    }
    r.session.on_packet(now, &p);
}

/// Carries out what a session asked for.
fn drain(r: &mut Running, log: Logger) {
    while let Some(e) = r.session.poll_event() {
        match e {
            Event::Send(p) => {
                let to = SocketAddr::new(r.cfg.neighbor, bfd_socket::PORT);
                match r.tx.send_to(&p.to_bytes(), to) {
                    Ok(_) => r.send_error = false,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        if !r.send_error {
                            log.bfd(&format!("({}) Error sending packet", r.cfg.name));
                        }
                        r.send_error = true;
                    }
                }
            }
            Event::Up(up) => {
                let _ = r.up.send(up);
            }
            Event::Log(l) => log.bfd(&l),
        }
    }
}
