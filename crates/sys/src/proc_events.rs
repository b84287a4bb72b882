//! Process events from the kernel's proc connector (netlink `NETLINK_CONNECTOR`, group
//! `CN_IDX_PROC`): fork, exec, comm change and exit, as they happen — what keepalived's
//! `vrrp_track_process` listens to, with no polling.
//!
//! The connector only answers sockets of the initial network namespace. A daemon started
//! inside another network namespace (the tests, the lab, containers sharing the host's PID
//! namespace) opens its socket from a short-lived thread that joins the initial network
//! namespace (`/proc/1/ns/net`, or a path the caller gives) for the `socket`/`bind`/`send`
//! calls only; nothing else happens there (no address, no route, no traffic). Events carry
//! PIDs of the PID namespace the kernel sees; the daemon must share it with the processes
//! it tracks, as keepalived must.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_CONNECTOR};

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;

const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_COMM: u32 = 0x0000_0200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One process event (thread-level events are reported only for thread group leaders).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// `child` was forked from `parent` (both thread group ids).
    Fork {
        /// Parent process.
        parent: u32,
        /// New process.
        child: u32,
    },
    /// `pid` executed a new program.
    Exec(u32),
    /// `pid` changed its name (`prctl(PR_SET_NAME)`).
    Comm(u32),
    /// `pid` exited.
    Exit(u32),
}

/// A subscribed proc connector socket.
#[derive(Debug)]
pub struct ProcEvents {
    sock: Socket,
}

impl ProcEvents {
    /// Subscribes to process events: in this network namespace if the connector answers
    /// here, else from the network namespace at `initial` (default `/proc/1/ns/net`; see the
    /// module documentation).
    pub fn open(initial: Option<&std::path::Path>) -> io::Result<ProcEvents> {
        match ProcEvents::open_here() {
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                let path = initial.unwrap_or(std::path::Path::new("/proc/1/ns/net"));
                ProcEvents::open_in(path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "the proc connector answers only in the initial network namespace; joining {} for it failed: {e}",
                            path.display()
                        ),
                    )
                })
            }
            r => r,
        }
    }

    fn open_here() -> io::Result<ProcEvents> {
        let mut sock = Socket::new(NETLINK_CONNECTOR)?;
        sock.bind(&SocketAddr::new(0, CN_IDX_PROC))?;
        let _ = sock.set_rx_buf_sz(1 << 20);
        sock.send(&listen_request(), 0)?;
        Ok(ProcEvents { sock })
    }

    fn open_in(path: &std::path::Path) -> io::Result<ProcEvents> {
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("proc-events-open".into())
            .spawn(move || {
                let init = std::fs::File::open(&path)?;
                nix::sched::setns(&init, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                // This thread ends right after: the namespace change dies with it.
                ProcEvents::open_here()
            })?
            .join()
            .map_err(|_| io::Error::other("proc events thread panicked"))?
    }

    /// Bounds how long [`ProcEvents::recv`] blocks (`None`: forever); a timeout returns an
    /// error of kind `WouldBlock` or `TimedOut`.
    pub fn set_timeout(&self, t: Option<std::time::Duration>) -> io::Result<()> {
        socket2::SockRef::from(&self.sock).set_read_timeout(t)
    }

    /// Blocks for the next datagram and returns the events in it (possibly none).
    pub fn recv(&self) -> io::Result<Vec<ProcEvent>> {
        let (buf, _) = self.sock.recv_from_full()?;
        Ok(parse(&buf))
    }
}

/// The subscription request: nlmsghdr + cn_msg + `PROC_CN_MCAST_LISTEN`.
fn listen_request() -> Vec<u8> {
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&(total as u32).to_ne_bytes());
    b.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    b.extend_from_slice(&0u16.to_ne_bytes()); // flags
    b.extend_from_slice(&0u32.to_ne_bytes()); // seq
    b.extend_from_slice(&std::process::id().to_ne_bytes());
    b.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    b.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // seq
    b.extend_from_slice(&0u32.to_ne_bytes()); // ack
    b.extend_from_slice(&4u16.to_ne_bytes()); // len
    b.extend_from_slice(&0u16.to_ne_bytes()); // flags
    b.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    b
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
}

/// Parses every netlink message of a datagram; anything malformed or of another kind is
/// skipped.
pub fn parse(buf: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = u32_at(buf, at).map(|l| l as usize) {
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            break;
        }
        let msg = &buf[at + NLMSG_HDRLEN..at + len];
        if let Some(e) = event(msg) {
            out.push(e);
        }
        at += (len + 3) & !3;
    }
    out
}

/// One `cn_msg` carrying a `proc_event`: what, cpu, timestamp (16 bytes), then the union.
fn event(msg: &[u8]) -> Option<ProcEvent> {
    if u32_at(msg, 0)? != CN_IDX_PROC || u32_at(msg, 4)? != CN_VAL_PROC {
        return None;
    }
    let ev = msg.get(CN_MSG_LEN..)?;
    let what = u32_at(ev, 0)?;
    let data = ev.get(16..)?;
    // Each variant starts with (pid, tgid) of the process concerned; fork has the parent's
    // pair first, then the child's.
    let leader = |p: usize| -> Option<u32> {
        let pid = u32_at(data, p)?;
        (pid == u32_at(data, p + 4)?).then_some(pid)
    };
    match what {
        PROC_EVENT_FORK => Some(ProcEvent::Fork {
            parent: u32_at(data, 4)?,
            child: leader(8)?,
        }),
        PROC_EVENT_EXEC => leader(0).map(ProcEvent::Exec),
        PROC_EVENT_COMM => leader(0).map(ProcEvent::Comm),
        PROC_EVENT_EXIT => leader(0).map(ProcEvent::Exit),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(what: u32, words: &[u32]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        body.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        body.extend_from_slice(&[0; 8]);
        let payload = 16 + 4 * words.len();
        body.extend_from_slice(&(payload as u16).to_ne_bytes());
        body.extend_from_slice(&[0; 2]);
        body.extend_from_slice(&what.to_ne_bytes());
        body.extend_from_slice(&[0; 12]);
        for w in words {
            body.extend_from_slice(&w.to_ne_bytes());
        }
        let mut b = Vec::new();
        b.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&body);
        b
    }

    #[test]
    fn events_are_parsed_and_thread_events_dropped() {
        assert_eq!(
            parse(&datagram(PROC_EVENT_EXEC, &[42, 42])),
            [ProcEvent::Exec(42)]
        );
        assert_eq!(
            parse(&datagram(PROC_EVENT_EXIT, &[7, 7, 0, 9])),
            [ProcEvent::Exit(7)]
        );
        // A thread (pid ≠ tgid) exiting is not a process exit.
        assert!(parse(&datagram(PROC_EVENT_EXIT, &[8, 7, 0, 9])).is_empty());
        assert_eq!(
            parse(&datagram(PROC_EVENT_FORK, &[1, 1, 50, 50])),
            [ProcEvent::Fork {
                parent: 1,
                child: 50
            }]
        );
        let mut two = datagram(PROC_EVENT_COMM, &[3, 3, 0, 0, 0, 0]);
        two.extend(datagram(PROC_EVENT_EXEC, &[4, 4]));
        assert_eq!(parse(&two), [ProcEvent::Comm(3), ProcEvent::Exec(4)]);
    }

    #[test]
    fn truncated_and_foreign_datagrams_yield_nothing() {
        let d = datagram(PROC_EVENT_EXEC, &[42, 42]);
        for cut in 0..d.len() {
            let _ = parse(&d[..cut]);
        }
        assert!(parse(&d[..d.len() - 1]).is_empty());
        let mut other = d.clone();
        other[NLMSG_HDRLEN] = 9; // another connector index
        assert!(parse(&other).is_empty());
    }

    #[test]
    fn an_exec_is_seen_as_it_happens() {
        let ev = ProcEvents::open(None).expect("proc connector (needs root)");
        ev.set_timeout(Some(std::time::Duration::from_millis(200)))
            .expect("timeout");
        let mut child = std::process::Command::new("/bin/true")
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = false;
        while !seen && std::time::Instant::now() < deadline {
            seen = ev
                .recv()
                .unwrap_or_default()
                .contains(&ProcEvent::Exec(pid));
        }
        let _ = child.wait();
        assert!(seen, "no exec event for {pid}");
    }
}
