//! One connection's life: the PROXY protocol header, the connect with its timeout, and the
//! relay both ways (splice, half-close, the idle timeouts, a removed destination's close).

use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{OFlag, SpliceFFlags, splice};
use nix::unistd::pipe2;
use tokio::io::AsyncWriteExt;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::pick::{Service, choose};

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

pub(super) async fn serve(svc: Arc<Service>, client: TcpStream, peer: SocketAddr) {
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
pub(super) async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
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
pub(super) struct Clock<'a> {
    pub(super) start: Instant,
    pub(super) last: &'a AtomicU64,
}

impl Clock<'_> {
    pub(super) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    pub(super) fn idle_for(&self) -> Duration {
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
pub(super) async fn pump(
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
pub(super) enum Passed {
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
pub(super) fn pass(from: &TcpStream, to: &TcpStream, buf: &mut [u8]) -> Passed {
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
pub(super) const BULK: usize = 64 * 1024;

/// A pipe for splicing one direction of a connection: socket → pipe → socket.
pub(super) struct Pipe {
    pub(super) r: OwnedFd,
    pub(super) w: OwnedFd,
}

impl Pipe {
    pub(super) fn new() -> std::io::Result<Pipe> {
        let (r, w) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        Ok(Pipe { r, w })
    }

    /// Relays from `from` to `to` until EOF (Ok) or an error. Each splice moves what the
    /// socket holds into the pipe, and the pipe is emptied into the other socket before the
    /// next: the pipe never holds data across an await on the reading side.
    pub(super) async fn relay(
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
pub(super) enum End {
    /// The sender finished (FIN): half-close the other side.
    Eof,
    /// The connection was reset or broke: close both sides now.
    Reset,
}

/// Sleeps until the connection has moved nothing for `limit`.
pub(super) async fn quiet_for(clock: &Clock<'_>, limit: Duration) {
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
pub(super) async fn orphaned(released: &mut watch::Receiver<bool>) {
    loop {
        if released.changed().await.is_err() {
            return std::future::pending().await;
        }
        if *released.borrow_and_update() {
            return;
        }
    }
}

pub(super) async fn relay(
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
