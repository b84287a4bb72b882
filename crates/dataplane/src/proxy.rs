//! The userspace L4 proxy: one listener per TCP service, bound with `IP_FREEBIND` so a BACKUP
//! can listen on the VIP before it owns it. Each connection is scheduled (persistence first),
//! connected with a timeout — a refused or silent server is skipped for the next — and relayed
//! both ways with half-close and idle timeouts (one while both sides send, a shorter one once
//! a side has finished, as IPVS's `tcp` and `tcpfin`). A destination at weight 0 takes no new
//! connections and keeps its established ones; a destination removed from the table has its
//! connections closed, as IPVS expires them.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use holdfast_lb::sched::{Dest, Flow, Scheduler};
use nix::fcntl::{OFlag, SpliceFFlags, splice};
use nix::unistd::pipe2;
use tokio::io::AsyncWriteExt;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{
    DataPlane, DataPlaneError, DestSpec, DestStats, ServiceKey, ServiceSpec, ServiceStats,
    ServiceTable,
};

struct DestState {
    stats: DestStats,
    /// Thresholds and whether the destination is over them (IPVS's OVERLOAD flag).
    upper: Option<u32>,
    lower: Option<u32>,
    overloaded: bool,
    /// Set to true when the destination leaves the table: its connections close.
    removed: watch::Sender<bool>,
}

struct Inner {
    spec: ServiceSpec,
    sched: Scheduler,
    dests: Vec<DestState>,
    /// Client (masked) → (server, expiry).
    persist: HashMap<IpAddr, (SocketAddr, Instant)>,
    /// How many entries `persist` kept at its last sweep of expired ones.
    swept: usize,
}

struct Service {
    inner: Mutex<Inner>,
    /// True while this node does not hold the service's address (its VRRP instance left
    /// MASTER): the connections it still carries are orphans — their clients' packets now
    /// reach another node — and are closed at once instead of holding a server connection
    /// and two descriptors until they time out.
    released: watch::Sender<bool>,
}

impl Service {
    fn new(spec: &ServiceSpec) -> Service {
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counts inconsistent in a way that
        // matters more than stopping the service would.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Running {
    svc: Arc<Service>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

/// How often a worker's keeper timer fires (see [`Worker::spawn`]).
const KEEPER: Duration = Duration::from_secs(1);

/// A proxy worker: a thread running a single-threaded runtime. Each worker accepts on its
/// own SO_REUSEPORT listener and serves the connections it accepted, so a connection never
/// hops between threads (HAProxy's thread model).
struct Worker {
    handle: tokio::runtime::Handle,
    /// Dropping it ends the worker's thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Worker {
    fn spawn(i: usize) -> std::io::Result<Worker> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("proxy-{i}"))
            .spawn(move || {
                rt.block_on(async {
                    // A timer always due within a second. A task that arms a timer due before
                    // every timer the runtime already waits for (a connection's connect
                    // timeout, when no other is pending) makes tokio wake its own poller
                    // through its eventfd: a system call and an event per connection. With
                    // this one pending, a timer a second or more away never does.
                    let keeper = async {
                        loop {
                            tokio::time::sleep(KEEPER).await;
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = keeper => {}
                    }
                });
            })?;
        Ok(Worker {
            handle,
            _stop: stop,
        })
    }
}

/// The proxy data plane, with its own worker threads (one per CPU, at most 4).
pub struct ProxyPlane {
    running: HashMap<ServiceKey, Running>,
    workers: Vec<Worker>,
    /// Connections carried at once, over every service: a permit per connection.
    limit: Arc<tokio::sync::Semaphore>,
}

impl Default for ProxyPlane {
    fn default() -> Self {
        ProxyPlane::with_max_connections(default_max_connections())
    }
}

/// The default connection limit: what the open file limit leaves, two descriptors a
/// connection, after a reserve of a quarter of it (at least 256) for everything else the
/// daemon opens — VRRP sockets, checks, scripts, the control and metrics sockets — so that a
/// flood of clients can never leave a tracker unable to start its script (HAProxy likewise
/// derives its `maxconn` from the limit). At least 16.
pub fn default_max_connections() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    let reserve = (soft / 4).max(256);
    (soft.saturating_sub(reserve) / 2).max(16)
}

impl ProxyPlane {
    /// An empty plane with the default connection limit; its worker threads start with the
    /// first service.
    pub fn new() -> ProxyPlane {
        ProxyPlane::default()
    }

    /// Whether this node holds `addrs` (a VRRP instance's VIPs): when it stops holding them,
    /// the connections of the services on those addresses are closed (they are orphans: their
    /// clients now reach another node); when it holds them again, new ones are carried as
    /// before.
    pub fn set_held(&mut self, addrs: &[std::net::IpAddr], held: bool) {
        for r in self.running.values() {
            let on = r.svc.lock().spec.key.addr().map(|a| a.ip());
            if on.is_some_and(|ip| addrs.contains(&ip)) {
                r.svc.released.send_replace(!held);
            }
        }
    }

    /// An empty plane carrying at most `max` connections at once; past it, accepts pause and
    /// new connections wait in the kernel's backlog, as HAProxy does at `maxconn` (each of a
    /// service's accept loops may hold one accepted connection while it waits).
    pub fn with_max_connections(max: usize) -> ProxyPlane {
        ProxyPlane {
            running: HashMap::new(),
            workers: Vec::new(),
            limit: Arc::new(tokio::sync::Semaphore::new(
                max.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
        }
    }

    fn workers(&mut self) -> std::io::Result<&[Worker]> {
        if self.workers.is_empty() {
            self.workers = (0..listeners())
                .map(Worker::spawn)
                .collect::<std::io::Result<_>>()?;
        }
        Ok(&self.workers)
    }
}

impl Drop for ProxyPlane {
    fn drop(&mut self) {
        for (_, r) in self.running.drain() {
            stop(r);
        }
    }
}

fn stop(r: Running) {
    for l in &r.listeners {
        l.abort();
    }
    for d in &r.svc.lock().dests {
        let _ = d.removed.send(true);
    }
}

/// Listening sockets per service: one per CPU (at most 4), sharing the port through
/// SO_REUSEPORT so the kernel spreads new connections over as many accept loops.
fn listeners() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    match addr {
        SocketAddr::V4(_) => s.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            s.set_freebind_v6(true)?;
            s.set_only_v6(true)?;
        }
    }
    // Accepted sockets inherit TCP_NODELAY from the listener: one call per service, not per
    // connection.
    s.set_tcp_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

fn dest_state(d: &DestSpec) -> DestState {
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

impl DataPlane for ProxyPlane {
    fn apply(&mut self, wanted: &ServiceTable) -> Result<(), Vec<DataPlaneError>> {
        let mut errors = Vec::new();
        let keep: Vec<ServiceKey> = wanted.iter().map(|s| s.key).collect();
        let gone: Vec<ServiceKey> = self
            .running
            .keys()
            .filter(|k| !keep.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(r) = self.running.remove(&k) {
                stop(r);
            }
        }
        for spec in wanted {
            if let Some(pe) = &spec.persistence_engine {
                errors.push(DataPlaneError {
                    key: spec.key,
                    error: std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        format!("persistence_engine {pe}: persistence engines are IPVS's; the proxy has none"),
                    ),
                });
                continue;
            }
            if let Some(r) = self.running.get(&spec.key) {
                update(&mut r.svc.lock(), spec);
                continue;
            }
            let Some(addr) = spec.key.addr().filter(|_| {
                matches!(
                    spec.key,
                    ServiceKey::Addr {
                        proto: crate::Proto::Tcp,
                        ..
                    }
                )
            }) else {
                errors.push(DataPlaneError {
                    key: spec.key,
                    error: std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        "the proxy forwards TCP services only (UDP, SCTP and fwmark need a kernel plane)",
                    ),
                });
                continue;
            };
            let workers: Vec<tokio::runtime::Handle> = match self.workers() {
                Ok(w) => w.iter().map(|w| w.handle.clone()).collect(),
                Err(error) => {
                    errors.push(DataPlaneError {
                        key: spec.key,
                        error,
                    });
                    continue;
                }
            };
            // Sockets are registered with the worker's reactor, so they are made there.
            let bound: std::io::Result<Vec<TcpListener>> = workers
                .iter()
                .map(|h| {
                    let _enter = h.enter();
                    bind(addr)
                })
                .collect();
            let bound = match bound {
                Ok(l) => l,
                Err(error) => {
                    errors.push(DataPlaneError {
                        key: spec.key,
                        error,
                    });
                    continue;
                }
            };
            let svc = Arc::new(Service::new(spec));
            let listeners = bound
                .into_iter()
                .zip(&workers)
                .map(|(l, h)| h.spawn(accept_loop(l, svc.clone(), self.limit.clone())))
                .collect();
            self.running.insert(spec.key, Running { svc, listeners });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn stats(&self) -> Vec<ServiceStats> {
        let mut out: Vec<ServiceStats> = self
            .running
            .values()
            .map(|r| {
                let i = r.svc.lock();
                ServiceStats {
                    key: i.spec.key,
                    sched: i.spec.sched,
                    flags: i.spec.flags,
                    persistence: i.spec.persistence,
                    persistence_prefix: i.spec.persistence.and(i.spec.persistence_prefix),
                    one_packet: false,
                    persistence_engine: None,
                    // Connections and bytes; packets are the kernel's.
                    counted: crate::Counted {
                        conns: true,
                        bytes: true,
                        packets: false,
                    },
                    dests: i.dests.iter().map(|d| d.stats).collect(),
                }
            })
            .collect();
        out.sort_by_key(|s| s.key);
        out
    }
}

/// A changed spec for a running service: weights updated in place (counts kept), new
/// destinations added, removed ones closed.
fn update(i: &mut Inner, spec: &ServiceSpec) {
    if i.spec.sched != spec.sched || i.spec.flags != spec.flags {
        i.sched = Scheduler::new(spec.sched, spec.flags);
    }
    let mut old: Vec<DestState> = std::mem::take(&mut i.dests);
    for d in &spec.dests {
        match old.iter().position(|o| o.stats.addr == Some(d.addr)) {
            Some(p) => {
                let mut s = old.swap_remove(p);
                s.stats.weight = d.weight;
                s.upper = d.upper;
                s.lower = d.lower;
                i.dests.push(s);
            }
            None => i.dests.push(dest_state(d)),
        }
    }
    for gone in old {
        let _ = gone.removed.send(true);
    }
    i.spec = spec.clone();
}

async fn accept_loop(listener: TcpListener, svc: Arc<Service>, limit: Arc<tokio::sync::Semaphore>) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                // At the limit, this loop stops accepting until a connection ends: the next
                // clients wait in the kernel's backlog. (The permit is taken after the accept:
                // a loop waiting for one on an empty listener would strand a connection queued
                // on another listener of the service.)
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let svc = svc.clone();
                tokio::spawn(async move {
                    serve(svc, client, peer).await;
                    drop(permit);
                });
            }
            // Out of descriptors and the like: pause rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn masked(ip: IpAddr, prefix: Option<u8>) -> IpAddr {
    match (ip, crate::prefix_mask(ip.is_ipv6(), prefix.unwrap_or(128))) {
        (IpAddr::V4(a), IpAddr::V4(m)) => IpAddr::V4((u32::from(a) & u32::from(m)).into()),
        (IpAddr::V6(a), IpAddr::V6(m)) => IpAddr::V6((u128::from(a) & u128::from(m)).into()),
        _ => ip,
    }
}

/// IPVS's overload flag with hysteresis: set at `upper` connections, cleared below `lower`
/// (three quarters of `upper` when not given).
fn overloaded(d: &DestState) -> bool {
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
fn choose(
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
const PERSIST_SWEEP_MIN: usize = 1024;

impl Inner {
    fn persistence_target(&mut self, key: IpAddr, now: Instant) -> Option<SocketAddr> {
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

    fn with_dest(&mut self, addr: SocketAddr, f: impl FnOnce(&mut DestStats)) {
        if let Some(d) = self.dests.iter_mut().find(|d| d.stats.addr == Some(addr)) {
            f(&mut d.stats);
        }
    }
}

/// A PROXY protocol v2 header (PROXY command, TCP) for a client at `src` that connected to
/// `dst`. An IPv4 client of an IPv6 service is written as IPv6 (v4-mapped).
pub fn proxy_v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    const SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
    let mut h = SIG.to_vec();
    h.push(0x21); // version 2, PROXY
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.push(0x11); // TCP over IPv4
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
        }
        _ => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(v) => v.ip().to_ipv6_mapped(),
                SocketAddr::V6(v) => *v.ip(),
            };
            h.push(0x21); // TCP over IPv6
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(src).octets());
            h.extend_from_slice(&v6(dst).octets());
        }
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

async fn serve(svc: Arc<Service>, client: TcpStream, peer: SocketAddr) {
    let (connect_timeout, idle, vip, proxy_protocol) = {
        let i = svc.lock();
        (
            i.spec.connect_timeout,
            (i.spec.idle_timeout, i.spec.fin_timeout),
            i.spec.key.addr(),
            i.spec.proxy_protocol,
        )
    };
    let Some(vip) = vip else {
        return;
    };
    // The service address, unless the listener is a wildcard (then ask the socket).
    let local = if vip.ip().is_unspecified() {
        match client.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        }
    } else {
        vip
    };
    let mut tried = Vec::new();
    let (backend, addr, removed) = loop {
        let Some((addr, removed)) = choose(&svc, peer, local, &tried) else {
            // No server may take it: the client sees the connection closed.
            return;
        };
        match tokio::time::timeout(connect_timeout, connect(addr)).await {
            Ok(Ok(mut b)) => {
                if proxy_protocol && b.write_all(&proxy_v2_header(peer, local)).await.is_err() {
                    svc.lock().with_dest(addr, |d| {
                        d.active = d.active.saturating_sub(1);
                    });
                    tried.push(addr);
                    continue;
                }
                break (b, addr, removed);
            }
            _ => {
                svc.lock().with_dest(addr, |d| {
                    d.active = d.active.saturating_sub(1);
                });
                tried.push(addr);
            }
        }
    };
    relay(&svc, client, backend, addr, removed, idle).await;
}

/// Connects to a server with TCP_NODELAY set before the SYN, and learns of a refusal from the
/// readiness the poller reports (hang-up and error) instead of asking the socket for its
/// error: one system call less per connection than `TcpStream::connect`.
async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    s.set_tcp_nodelay(true)?;
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(s.into())?;
    let ready = stream.ready(Interest::WRITABLE).await?;
    if ready.is_write_closed() {
        let e = stream.take_error()?;
        return Err(e.unwrap_or_else(|| std::io::ErrorKind::ConnectionRefused.into()));
    }
    Ok(stream)
}

/// When the connection last moved data, in ms since `start`.
struct Clock<'a> {
    start: Instant,
    last: &'a AtomicU64,
}

impl Clock<'_> {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// One direction: copies until EOF or error, then half-closes the other side (or, after an
/// error, arms it to close with an abort). `moved` counts the bytes as they pass, so the
/// count survives the relay ending this direction early.
///
/// Data is read into the worker thread's buffer and written on at once, without an await in
/// between: a connection owns no buffer while it waits (HAProxy holds two of 16 KiB per
/// connection). Only what the other side cannot take yet is copied into a buffer of its own
/// until it has been written.
async fn pump(
    r: tokio::net::tcp::ReadHalf<'_>,
    mut w: tokio::net::tcp::WriteHalf<'_>,
    clock: &Clock<'_>,
    moved: &AtomicU64,
) -> End {
    let mut end = End::Eof;
    loop {
        if r.as_ref().readable().await.is_err() {
            end = End::Reset;
            break;
        }
        let (n, rest) = match SCRATCH.with_borrow_mut(|buf| pass(r.as_ref(), w.as_ref(), buf)) {
            Passed::Nothing => continue,
            Passed::Eof => break,
            Passed::Failed => {
                end = End::Reset;
                break;
            }
            Passed::Data(n, rest) => (n, rest),
        };
        clock.touch();
        if !rest.is_empty() && w.write_all(&rest).await.is_err() {
            end = End::Reset;
            break;
        }
        moved.fetch_add(n as u64, Ordering::Relaxed);
        if n == BULK {
            // A read that filled the largest buffer: a bulk transfer. Move the rest through
            // a pipe with splice, never copying it into userspace (HAProxy's splice-auto).
            if let Ok(pipe) = Pipe::new() {
                if pipe
                    .relay(r.as_ref(), w.as_ref(), clock, moved)
                    .await
                    .is_err()
                {
                    end = End::Reset;
                }
                break;
            }
        }
    }
    if end == End::Reset {
        // Pass an abort on as an abort (RST, no TIME_WAIT left on the proxy), as HAProxy
        // does: linger 0, no FIN first; the socket closes when the relay drops it.
        let _ = socket2::SockRef::from(w.as_ref()).set_linger(Some(Duration::ZERO));
    } else {
        let _ = w.shutdown().await;
    }
    end
}

thread_local! {
    /// The thread's copy buffer (see [`pump`]): borrowed only between a read and the write
    /// that follows it, never across an await.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; BULK].into_boxed_slice());
}

/// What one [`pass`] did.
enum Passed {
    /// The readiness was stale: nothing to read after all.
    Nothing,
    /// The sender finished.
    Eof,
    /// Reading or writing failed.
    Failed,
    /// Bytes read, and those the writer could not take at once (to write before reading more).
    Data(usize, Vec<u8>),
}

/// Reads what `from` holds into `buf` and writes as much of it to `to` as it takes now.
///
/// A read that leaves room in the buffer has drained the socket, so it also hands the
/// readiness back to the poller: the next read waits for the next event instead of making a
/// system call only to hear EAGAIN. (tokio clears readiness only if no event arrived since it
/// was observed, so data that came during the read is not missed.)
fn pass(from: &TcpStream, to: &TcpStream, buf: &mut [u8]) -> Passed {
    let room = buf.len();
    let mut got = None;
    let read = from.try_io(Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(from)).read(buf)?;
        got = Some(n);
        if n > 0 && n < room {
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    let n = match (read, got) {
        (_, Some(0)) => return Passed::Eof,
        (_, Some(n)) => n,
        (Err(e), None) if e.kind() == std::io::ErrorKind::WouldBlock => return Passed::Nothing,
        (_, None) => return Passed::Failed,
    };
    let mut sent = 0;
    while sent < n {
        match to.try_write(&buf[sent..n]) {
            Ok(m) => sent += m,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return Passed::Failed,
        }
    }
    Passed::Data(n, buf[sent..n].to_vec())
}

/// The copy buffer's size; a direction whose read fills it switches to splice.
const BULK: usize = 64 * 1024;

/// A pipe for splicing one direction of a connection: socket → pipe → socket.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn new() -> std::io::Result<Pipe> {
        let (r, w) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        Ok(Pipe { r, w })
    }

    /// Relays from `from` to `to` until EOF (Ok) or an error. Each splice moves what the
    /// socket holds into the pipe, and the pipe is emptied into the other socket before the
    /// next: the pipe never holds data across an await on the reading side.
    async fn relay(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        clock: &Clock<'_>,
        moved: &AtomicU64,
    ) -> std::io::Result<()> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        loop {
            from.readable().await?;
            let n = match from.try_io(Interest::READABLE, || {
                Ok(splice(from, None, &self.w, None, BULK, flags)?)
            }) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            clock.touch();
            let mut left = n;
            while left > 0 {
                to.writable().await?;
                match to.try_io(Interest::WRITABLE, || {
                    Ok(splice(&self.r, None, to, None, left, flags)?)
                }) {
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            moved.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// How one direction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The sender finished (FIN): half-close the other side.
    Eof,
    /// The connection was reset or broke: close both sides now.
    Reset,
}

/// Sleeps until the connection has moved nothing for `limit`.
async fn quiet_for(clock: &Clock<'_>, limit: Duration) {
    loop {
        // Sleep exactly until the connection would have been idle long enough.
        let quiet = clock.idle_for();
        if quiet >= limit {
            return;
        }
        tokio::time::sleep(limit - quiet).await;
    }
}

/// Copies both ways until both sides are done, the destination is removed, or nothing moved
/// for `idle.0` (`idle.1` once one side has finished). Counts the connection active until one
/// side finishes, then inactive.
/// Returns once the service's address is released after the connection began (a value
/// current when it began, set by a transition the connection raced, does not count).
async fn orphaned(released: &mut watch::Receiver<bool>) {
    loop {
        if released.changed().await.is_err() {
            return std::future::pending().await;
        }
        if *released.borrow_and_update() {
            return;
        }
    }
}

async fn relay(
    svc: &Service,
    mut client: TcpStream,
    mut backend: TcpStream,
    addr: SocketAddr,
    mut removed: watch::Receiver<bool>,
    (idle, fin): (Duration, Duration),
) {
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (bytes_in, bytes_out) = (AtomicU64::new(0), AtomicU64::new(0));
    let (cr, cw) = client.split();
    let (br, bw) = backend.split();
    let clock = Clock { start, last: &last };
    let up = pump(cr, bw, &clock, &bytes_in);
    let down = pump(br, cw, &clock, &bytes_out);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let mut half = false;
    let idle_check = quiet_for(&clock, idle);
    tokio::pin!(idle_check);
    let mut released = svc.released.subscribe();
    while !(up_done && down_done) {
        tokio::select! {
            e = &mut up, if !up_done => {
                up_done = true;
                if e == End::Reset {
                    break;
                }
            }
            e = &mut down, if !down_done => {
                down_done = true;
                if e == End::Reset {
                    break;
                }
            }
            r = removed.wait_for(|gone| *gone) => {
                if r.is_ok() {
                    break;
                }
            }
            () = orphaned(&mut released) => break,
            _ = &mut idle_check => break,
        }
        if !half && (up_done || down_done) && !(up_done && down_done) {
            half = true;
            idle_check.set(quiet_for(&clock, fin));
            svc.lock().with_dest(addr, |d| {
                d.active = d.active.saturating_sub(1);
                d.inactive += 1;
            });
        }
    }
    // One lock for the connection's end: its count and its bytes.
    svc.lock().with_dest(addr, |d| {
        if half {
            d.inactive = d.inactive.saturating_sub(1);
        } else {
            d.active = d.active.saturating_sub(1);
        }
        d.bytes_in += bytes_in.load(Ordering::Relaxed);
        d.bytes_out += bytes_out.load(Ordering::Relaxed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    use holdfast_lb::sched::Kind;
    use tokio::io::AsyncReadExt;

    /// A backend that writes `tag` and then echoes.
    async fn backend(tag: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(tag.as_bytes()).await;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    fn spec(vip: SocketAddr, sched: Kind, dests: &[(SocketAddr, u32)]) -> ServiceSpec {
        let dests = dests.iter().map(|(a, w)| DestSpec::new(*a, *w)).collect();
        ServiceSpec::new(ServiceKey::tcp(vip), sched, dests)
    }

    async fn free_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    async fn hello(vip: SocketAddr) -> String {
        let mut s = TcpStream::connect(vip).await.unwrap();
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_persistence_engine_is_refused_and_the_rest_of_the_table_applies() {
        let (a, _ta) = backend("a").await;
        let (vip, other) = (free_port().await, free_port().await);
        let mut sip = spec(vip, Kind::Rr, &[(a, 1)]);
        sip.persistence_engine = Some("sip".into());
        let mut plane = ProxyPlane::new();
        let errs = plane
            .apply(&vec![sip, spec(other, Kind::Rr, &[(a, 1)])])
            .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].key, ServiceKey::tcp(vip));
        assert!(
            errs[0]
                .to_string()
                .contains("persistence engines are IPVS's")
        );
        assert_eq!(hello(other).await, "a");
        assert!(plane.stats().iter().all(|s| s.key != ServiceKey::tcp(vip)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_on_an_address_this_node_released_are_closed() {
        let (a, _ta) = backend("a").await;
        let vip = free_port().await;
        let mut plane = ProxyPlane::new();
        plane.apply(&vec![spec(vip, Kind::Rr, &[(a, 1)])]).unwrap();
        let mut held = TcpStream::connect(vip).await.unwrap();
        let mut byte = [0u8; 1];
        held.read_exact(&mut byte).await.unwrap();
        // Another address released: this connection carries on.
        plane.set_held(&["192.0.2.1".parse().unwrap()], false);
        held.write_all(b"x").await.unwrap();
        held.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"x");
        // Its own address released: closed at once.
        plane.set_held(&[vip.ip()], false);
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), held.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the orphaned connection stayed open");
        // Held again: new connections are carried as before.
        plane.set_held(&[vip.ip()], true);
        assert_eq!(hello(vip).await, "a");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_connection_limit_accepts_pause_until_one_ends() {
        let (a, _ta) = backend("a").await;
        let vip = free_port().await;
        let mut plane = ProxyPlane::with_max_connections(2);
        plane.apply(&vec![spec(vip, Kind::Rr, &[(a, 1)])]).unwrap();
        // Two connections are carried: each hears the backend's tag.
        let mut held = Vec::new();
        let mut tag = [0u8; 1];
        for _ in 0..2 {
            let mut s = TcpStream::connect(vip).await.unwrap();
            s.read_exact(&mut tag).await.unwrap();
            held.push(s);
        }
        // A third waits in the kernel's backlog: connected, but nothing relays it.
        let mut third = TcpStream::connect(vip).await.unwrap();
        let waited =
            tokio::time::timeout(Duration::from_millis(300), third.read_exact(&mut tag)).await;
        assert!(
            waited.is_err(),
            "a third connection was carried past the limit"
        );
        // One ends: the third gets its turn.
        drop(held.pop());
        tokio::time::timeout(Duration::from_secs(5), third.read_exact(&mut tag))
            .await
            .expect("the waiting connection was never carried")
            .unwrap();
        assert_eq!(&tag, b"a");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_robin_through_the_proxy_and_weight_zero_drains() {
        let (a, _ta) = backend("a").await;
        let (b, _tb) = backend("b").await;
        let vip = free_port().await;
        let mut plane = ProxyPlane::new();
        plane
            .apply(&vec![spec(vip, Kind::Rr, &[(a, 1), (b, 1)])])
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(hello(vip).await);
        }
        assert_eq!(seen, ["a", "b", "a", "b"]);
        // b at weight 0: new connections go to a; an established one to b stays open.
        let mut held = TcpStream::connect(vip).await.unwrap();
        let mut tag = [0u8; 1];
        held.read_exact(&mut tag).await.unwrap();
        let held_on = tag[0];
        plane
            .apply(&vec![spec(vip, Kind::Rr, &[(a, 1), (b, 0)])])
            .unwrap();
        for _ in 0..3 {
            assert_eq!(hello(vip).await, "a");
        }
        held.write_all(b"x").await.unwrap();
        let mut echo = [0u8; 1];
        held.read_exact(&mut echo).await.unwrap();
        assert_eq!(
            &echo, b"x",
            "the established connection (on {held_on}) survives"
        );
        let st = plane.stats();
        let total: u64 = st[0].dests.iter().map(|d| d.conns).sum();
        assert_eq!(total, 8);
        // The closed connections leave the counts as their relays notice the close (on the
        // proxy's own threads); only the held one stays active.
        let deadline = Instant::now() + Duration::from_secs(5);
        let active = loop {
            let a: u32 = plane.stats()[0].dests.iter().map(|d| d.active).sum();
            if a == 1 || Instant::now() > deadline {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(active, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refusing_server_is_skipped_and_a_removed_one_loses_its_connections() {
        let (a, _ta) = backend("a").await;
        let dead = free_port().await; // nothing listens
        let vip = free_port().await;
        let mut plane = ProxyPlane::new();
        plane
            .apply(&vec![spec(vip, Kind::Rr, &[(dead, 1), (a, 1)])])
            .unwrap();
        for _ in 0..3 {
            assert_eq!(hello(vip).await, "a");
        }
        let mut held = TcpStream::connect(vip).await.unwrap();
        let mut tag = [0u8; 1];
        held.read_exact(&mut tag).await.unwrap();
        // a leaves the table (removal, not inhibit): its connection is closed.
        plane
            .apply(&vec![spec(vip, Kind::Rr, &[(dead, 1)])])
            .unwrap();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), held.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .unwrap();
        assert_eq!(n, 0);
        // Nothing can take a new connection: it is closed without data.
        let mut s = TcpStream::connect(vip).await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn what_the_writer_cannot_take_is_handed_back_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut src = TcpStream::connect(addr).await.unwrap();
        let (from, _) = l.accept().await.unwrap();
        let to = TcpStream::connect(addr).await.unwrap();
        let (mut sink, _) = l.accept().await.unwrap();
        // Fill `to` until the kernel takes no more: its reader (`sink`) is not reading.
        let filler = [0xeeu8; 16 * 1024];
        let mut filled = 0;
        to.writable().await.unwrap();
        loop {
            match to.try_write(&filler) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let data: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
        src.write_all(&data).await.unwrap();
        let mut peek = vec![0u8; data.len()];
        let arrived = async {
            while from.peek(&mut peek).await.unwrap() < data.len() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), arrived)
            .await
            .expect("the data arrives");
        let mut buf = vec![0u8; BULK];
        let Passed::Data(n, rest) = pass(&from, &to, &mut buf) else {
            panic!("no data passed");
        };
        assert_eq!(n, data.len(), "one read takes what the socket holds");
        assert!(!rest.is_empty(), "a full writer takes nothing more");
        assert_eq!(rest[..], data[n - rest.len()..], "the tail is handed back");
        // Written after what the writer took, the stream arrives whole and in order.
        let mut to = to;
        let mut got = vec![0u8; filled + data.len()];
        let (wrote, read) = tokio::join!(to.write_all(&rest), sink.read_exact(&mut got));
        wrote.unwrap();
        read.unwrap();
        assert!(got[..filled].iter().all(|&b| b == 0xee));
        assert!(got[filled..] == data[..], "bytes changed or reordered");
        // Its sender finishing is an end of stream.
        src.shutdown().await.unwrap();
        let end = loop {
            from.readable().await.unwrap();
            match pass(&from, &to, &mut buf) {
                Passed::Nothing => continue,
                other => break other,
            }
        };
        assert!(matches!(end, Passed::Eof));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_moves_intact_both_ways_through_splice_and_is_counted() {
        let (a, _ta) = backend("a").await;
        let vip = free_port().await;
        let mut plane = ProxyPlane::new();
        plane.apply(&vec![spec(vip, Kind::Rr, &[(a, 1)])]).unwrap();
        // Several times the largest copy buffer, so both directions switch to splice.
        let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let c = TcpStream::connect(vip).await.unwrap();
        let (mut r, mut w) = c.into_split();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            // Half close after the spliced stream: the FIN must follow the last byte.
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut got))
            .await
            .expect("the echo ends in time")
            .unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), data.len() + 1);
        assert_eq!(got[0], b'a');
        assert!(got[1..] == data[..], "bytes changed on the way");
        // The counts land when the relay ends.
        let want = (data.len() as u64, data.len() as u64 + 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let d = plane.stats()[0].dests[0];
            if (d.bytes_in, d.bytes_out) == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "counts {:?}",
                (d.bytes_in, d.bytes_out)
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_connection_is_closed_and_a_half_closed_one_still_answers() {
        let (a, _ta) = backend("a").await;
        let vip = free_port().await;
        let mut s = spec(vip, Kind::Rr, &[(a, 1)]);
        s.idle_timeout = Duration::from_millis(300);
        let mut plane = ProxyPlane::new();
        plane.apply(&vec![s]).unwrap();
        // Half close: the client stops sending; the server's answer still arrives.
        let mut c = TcpStream::connect(vip).await.unwrap();
        c.write_all(b"q").await.unwrap();
        c.shutdown().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got))
            .await
            .expect("closed in time")
            .unwrap();
        assert_eq!(got, b"aq");
        // Idle: nothing either way for 300 ms and the proxy closes it.
        let mut idle = TcpStream::connect(vip).await.unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf))
            .await
            .expect("closed by the idle timeout")
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_closed_connection_is_closed_after_the_fin_timeout_and_an_open_one_is_kept() {
        // A server that greets and then holds every connection, whatever the client does.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"h").await;
                held.push(s);
            }
        });
        let vip = free_port().await;
        let mut sp = spec(vip, Kind::Rr, &[(server, 1)]);
        sp.idle_timeout = Duration::from_secs(60);
        sp.fin_timeout = Duration::from_millis(300);
        let mut plane = ProxyPlane::new();
        plane.apply(&vec![sp]).unwrap();
        let mut open = TcpStream::connect(vip).await.unwrap();
        let mut half = TcpStream::connect(vip).await.unwrap();
        let mut h = [0u8; 1];
        open.read_exact(&mut h).await.unwrap();
        half.read_exact(&mut h).await.unwrap();
        half.shutdown().await.unwrap();
        let start = Instant::now();
        let mut rest = Vec::new();
        // The proxy ends it (a FIN or a reset, either ends the read).
        let ended = tokio::time::timeout(Duration::from_secs(5), half.read_to_end(&mut rest)).await;
        assert!(
            ended.is_ok(),
            "the half-closed connection outlived its fin timeout"
        );
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );
        assert!(rest.is_empty());
        // The open one, as quiet for as long, is still relayed.
        open.write_all(b"?").await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(500), open.read(&mut h)).await;
        assert!(r.is_err(), "the open connection was closed: {r:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_proxy_protocol_header_tells_the_server_who_the_client_is() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = l.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let mut h = [0u8; 28];
                let _ = s.read_exact(&mut h).await;
                let _ = tx.send(h).await;
                let _ = s.write_all(b"k").await;
            }
        });
        let vip = free_port().await;
        let mut sp = spec(vip, Kind::Rr, &[(server, 1)]);
        sp.proxy_protocol = true;
        let mut plane = ProxyPlane::new();
        plane.apply(&vec![sp]).unwrap();
        let mut c = TcpStream::connect(vip).await.unwrap();
        let me = c.local_addr().unwrap();
        let mut k = [0u8; 1];
        c.read_exact(&mut k).await.unwrap();
        let h = rx.recv().await.unwrap();
        assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[127, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), me.port());
        assert_eq!(u16::from_be_bytes([h[26], h[27]]), vip.port());
        assert_eq!(h.to_vec(), proxy_v2_header(me, vip));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_abort_reaches_the_server_as_an_abort() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = l.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"k").await;
                let mut b = [0u8; 16];
                let r = s.read(&mut b).await;
                let _ = tx.send(r.map_err(|e| e.kind())).await;
            }
        });
        let vip = free_port().await;
        let mut plane = ProxyPlane::new();
        plane
            .apply(&vec![spec(vip, Kind::Rr, &[(server, 1)])])
            .unwrap();
        let mut c = TcpStream::connect(vip).await.unwrap();
        let mut k = [0u8; 1];
        c.read_exact(&mut k).await.unwrap();
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(c);
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the server hears of it")
            .unwrap();
        assert_eq!(got, Err(std::io::ErrorKind::ConnectionReset));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uthreshold_stops_new_connections_until_below_lthreshold() {
        let (a, _ta) = backend("a").await;
        let (b, _tb) = backend("b").await;
        let vip = free_port().await;
        let mut sp = spec(vip, Kind::Fo, &[(a, 2), (b, 1)]);
        sp.dests[0].upper = Some(2);
        sp.dests[0].lower = Some(1);
        let mut plane = ProxyPlane::new();
        plane.apply(&vec![sp]).unwrap();
        // fo prefers a (weight 2) until it holds 2 connections.
        let mut held = Vec::new();
        for want in ["a", "a", "b"] {
            let mut c = TcpStream::connect(vip).await.unwrap();
            let mut t = [0u8; 1];
            c.read_exact(&mut t).await.unwrap();
            assert_eq!(&t, want.as_bytes());
            held.push(c);
        }
        // One of a's closes: 1 left, not below lthreshold 1, still overloaded.
        drop(held.remove(0));
        let deadline = Instant::now() + Duration::from_secs(5);
        // The overload flag counts active and inactive (half-closed) connections alike.
        let held_by_a = |p: &ProxyPlane| {
            let d = p.stats()[0].dests[0];
            d.active + d.inactive
        };
        while held_by_a(&plane) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(hello(vip).await, "b");
        // Both of a's closed: below lthreshold, a takes new connections again.
        drop(held.remove(0));
        let deadline = Instant::now() + Duration::from_secs(5);
        while held_by_a(&plane) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(hello(vip).await, "a");
    }

    #[tokio::test]
    async fn accepted_connections_inherit_nodelay_from_the_listener() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let _c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        assert!(s.nodelay().unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn persistence_keeps_a_client_on_its_server() {
        let (a, _ta) = backend("a").await;
        let (b, _tb) = backend("b").await;
        let vip = free_port().await;
        let mut s = spec(vip, Kind::Rr, &[(a, 1), (b, 1)]);
        s.persistence = Some(Duration::from_secs(60));
        let mut plane = ProxyPlane::new();
        plane.apply(&vec![s]).unwrap();
        let first = hello(vip).await;
        for _ in 0..4 {
            assert_eq!(hello(vip).await, first);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn persistence_forgets_clients_that_never_come_back() {
        let a: SocketAddr = "192.0.2.1:3306".parse().unwrap();
        let vip: SocketAddr = "192.0.2.100:3306".parse().unwrap();
        let mut s = spec(vip, Kind::Rr, &[(a, 1)]);
        s.persistence = Some(Duration::from_secs(60));
        let svc = Service::new(&s);
        let client = |n: u32| SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 40000));
        // Clients that each come once, a persistence timeout apart: the table holds about
        // one timeout's worth of them, not every client ever seen.
        let mut most = 0;
        for round in 0..10u32 {
            for n in 0..1000 {
                assert_eq!(
                    choose(&svc, client(round * 1000 + n), vip, &[]).map(|c| c.0),
                    Some(a)
                );
            }
            most = most.max(svc.lock().persist.len());
            tokio::time::advance(Duration::from_secs(61)).await;
        }
        assert!(
            most <= 2 * PERSIST_SWEEP_MIN,
            "{most} entries for 1000 live clients"
        );
        // A client within its timeout keeps its entry through a sweep.
        let recent = client(100_000);
        assert!(choose(&svc, recent, vip, &[]).is_some());
        for n in 0..2 * PERSIST_SWEEP_MIN as u32 {
            assert!(choose(&svc, client(200_000 + n), vip, &[]).is_some());
        }
        assert!(svc.lock().persist.contains_key(&recent.ip()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_can_listen_on_an_address_it_does_not_have() {
        // TEST-NET-3: not configured anywhere; IP_FREEBIND lets the listener exist.
        let vip: SocketAddr = "203.0.113.77:3306".parse().unwrap();
        let mut plane = ProxyPlane::new();
        plane.apply(&vec![spec(vip, Kind::Wlc, &[])]).unwrap();
        assert_eq!(plane.stats().len(), 1);
        plane.apply(&Vec::new()).unwrap();
        assert!(plane.stats().is_empty());
    }
}
