//! The userspace L4 proxy: one listener per TCP service, bound with `IP_FREEBIND` so a BACKUP
//! can listen on the VIP before it owns it. Each connection is scheduled (persistence first),
//! connected with a timeout — a refused or silent server is skipped for the next — and relayed
//! both ways with half-close and idle timeouts (one while both sides send, a shorter one once
//! a side has finished, as IPVS's `tcp` and `tcpfin`). A destination at weight 0 takes no new
//! connections and keeps its established ones; a destination removed from the table has its
//! connections closed, as IPVS expires them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use holdfast_lb::sched::Scheduler;
use tokio::net::TcpListener;

use crate::{DataPlane, DataPlaneError, ServiceKey, ServiceSpec, ServiceStats, ServiceTable};

mod pick;
mod relay;

use pick::*;
pub use relay::proxy_v2_header;
use relay::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DestSpec;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::time::Instant;

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
