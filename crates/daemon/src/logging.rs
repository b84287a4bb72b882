//! Log lines with keepalived's idents: `Keepalived[PID]` for the parent's lines and
//! `Keepalived_vrrp[PID]` for VRRP's, to syslog (`/dev/log`, facility `-S`, default daemon)
//! unless `-G`, to stderr with `-l` (or when syslog is unreachable), and with `-g` to log
//! files named as keepalived names them.
//!
//! Nothing that logs waits for a log reader: a line goes into a bounded queue that a thread of
//! its own drains to syslog, stderr and the files, whose writes may block (a stalled syslog
//! daemon or journal). When the queue is full the line is dropped and counted; the writer
//! thread reports how many were lost as soon as it catches up, and [`dropped`] totals them.
//! The VRRP path therefore keeps sending adverts while the log is stuck.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use holdfast_vrrp::router::Log;

/// How to log. Copy, so every task carries its own.
#[derive(Clone, Copy, Debug)]
pub struct Logger {
    /// `-D`: also the lines keepalived logs only with `--log-detail`.
    pub detail: bool,
    /// `-l`: also to the console (stderr).
    pub console: bool,
    /// Syslog facility number (daemon = 3, local0..7 = 16..23); `None` with `-G`.
    pub facility: Option<u8>,
}

/// The process's connection to syslog. Process-wide: every part of the daemon (and the panic
/// and signal paths, which have no context to carry one) logs through it, as keepalived's
/// processes each hold one.
static SYSLOG: OnceLock<Option<UnixDatagram>> = OnceLock::new();

fn syslog() -> Option<&'static UnixDatagram> {
    SYSLOG
        .get_or_init(|| {
            let s = UnixDatagram::unbound().ok()?;
            s.connect("/dev/log").ok()?;
            Some(s)
        })
        .as_ref()
}

struct LogFiles {
    main: std::fs::File,
    vrrp: std::fs::File,
    check: std::fs::File,
}

/// `--log-file`'s files, opened once for the process (keepalived's flag names one file per
/// process; several writers would interleave their lines).
static LOG_FILES: OnceLock<Mutex<LogFiles>> = OnceLock::new();

/// keepalived's file name for a process's log: relative names live in `/tmp`, and a process
/// tag goes before the extension (`keepalived.log` → `/tmp/keepalived_vrrp.log`).
pub fn log_file_name(name: &Path, prog: Option<&str>) -> PathBuf {
    let full = if name.is_absolute() {
        name.to_path_buf()
    } else {
        Path::new("/tmp").join(name)
    };
    let Some(prog) = prog else { return full };
    let stem = full
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let file = match full.extension() {
        Some(e) => format!("{stem}_{prog}.{}", e.to_string_lossy()),
        None => format!("{stem}_{prog}"),
    };
    full.with_file_name(file)
}

/// `-g FILE`: opens (appending) the main and the VRRP log files. Each line is written with
/// one `write` as it is logged (keepalived buffers unless `--flush-log-file`; a crash should
/// not lose the lines that explain it).
pub fn open_log_file(name: &Path) -> std::io::Result<()> {
    let open = |p: PathBuf| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    let files = LogFiles {
        main: open(log_file_name(name, None))?,
        vrrp: open(log_file_name(name, Some("vrrp")))?,
        check: open(log_file_name(name, Some("healthcheckers")))?,
    };
    let _ = LOG_FILES.set(Mutex::new(files));
    Ok(())
}

/// A log file line as keepalived writes it: `Sun Nov 22 02:55:01.123456789 2026: message`,
/// in the zone of `t`.
pub fn file_line<Tz: chrono::TimeZone>(t: chrono::DateTime<Tz>, msg: &str) -> String
where
    Tz::Offset: std::fmt::Display,
{
    format!("{}: {msg}", t.format("%a %b %d %T%.9f %Y"))
}

fn to_file(ident: &str, msg: &str) {
    let Some(files) = LOG_FILES.get() else { return };
    let Ok(mut f) = files.lock() else { return };
    let line = format!("{}\n", file_line(chrono::Local::now(), msg));
    let w = match ident {
        "Keepalived_vrrp" => &mut f.vrrp,
        "Keepalived_healthcheckers" => &mut f.check,
        _ => &mut f.main,
    };
    let _ = w.write_all(line.as_bytes());
}

/// Parses keepalived's `-S` argument: `0`-`7` (local0-7) or a facility name.
pub fn parse_facility(s: &str) -> Option<u8> {
    match s {
        "daemon" => Some(3),
        "user" => Some(1),
        _ => {
            let n = s.strip_prefix("local").unwrap_or(s);
            n.parse::<u8>().ok().filter(|n| *n <= 7).map(|n| 16 + n)
        }
    }
}

/// One syslog datagram: RFC 3164 without a timestamp (syslogd adds it), severity info.
pub fn syslog_line(facility: u8, ident: &str, pid: u32, msg: &str) -> String {
    format!("<{}>{ident}[{pid}]: {msg}", u32::from(facility) * 8 + 6)
}

impl Logger {
    /// Console only (tests, tools).
    pub fn console(detail: bool) -> Logger {
        Logger {
            detail,
            console: true,
            facility: None,
        }
    }

    fn emit(&self, ident: &'static str, msg: &str) {
        enqueue(Line {
            ident,
            msg: msg.to_string(),
            facility: self.facility,
            console: self.console,
        });
    }

    /// A line from the VRRP side.
    pub fn vrrp(&self, msg: &str) {
        self.emit("Keepalived_vrrp", msg);
    }

    /// A line from the checkers (virtual servers).
    pub fn check(&self, msg: &str) {
        self.emit("Keepalived_healthcheckers", msg);
    }

    /// A line from BFD (keepalived's BFD process).
    pub fn bfd(&self, msg: &str) {
        self.emit("Keepalived_bfd", msg);
    }

    /// A line from the parent process.
    pub fn main(&self, msg: &str) {
        self.emit("Keepalived", msg);
    }

    /// A router event, subject to `-D`.
    pub fn router(&self, l: &Log) {
        if !l.detail() || self.detail {
            self.vrrp(&l.to_string());
        }
    }
}

/// One line on its way out.
struct Line {
    ident: &'static str,
    msg: String,
    facility: Option<u8>,
    console: bool,
}

enum Item {
    Line(Line),
    /// Answered once every line queued before it is written.
    Flush(SyncSender<()>),
}

/// Lines the queue holds; past this, lines are dropped and counted.
const QUEUE: usize = 4096;

/// A bounded queue of lines and the thread that writes them out through `sink`.
struct LogQueue {
    tx: SyncSender<Item>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Since start.
    dropped: AtomicU64,
    /// Not yet reported in a line.
    unreported: AtomicU64,
}

impl LogQueue {
    fn start(capacity: usize, mut sink: impl FnMut(&Line) + Send + 'static) -> Option<LogQueue> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Item>(capacity);
        let counts = Arc::new(Counts::default());
        let seen = counts.clone();
        std::thread::Builder::new()
            .name("log".into())
            .spawn(move || {
                while let Ok(item) = rx.recv() {
                    match item {
                        Item::Line(l) => {
                            sink(&l);
                            let lost = seen.unreported.swap(0, Ordering::Relaxed);
                            if lost > 0 {
                                sink(&Line {
                                    ident: "Keepalived",
                                    msg: format!(
                                        "{lost} log lines dropped: the log readers (syslog, stderr, log files) did not keep up"
                                    ),
                                    facility: l.facility,
                                    console: l.console,
                                });
                            }
                        }
                        Item::Flush(ack) => {
                            let _ = ack.send(());
                        }
                    }
                }
            })
            .ok()?;
        Some(LogQueue { tx, counts })
    }

    /// Queues a line without waiting; `false` when it was dropped.
    fn push(&self, l: Line) -> bool {
        match self.tx.try_send(Item::Line(l)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                self.counts.unreported.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(TrySendError::Disconnected(Item::Line(l))) => {
                write_line(&l);
                true
            }
            Err(TrySendError::Disconnected(Item::Flush(_))) => false,
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        let mut item = Item::Flush(ack_tx);
        loop {
            match self.tx.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        ack_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The queue to the one writer thread: process-wide for the same reason as [`SYSLOG`] (a
/// stalled syslog must hold up no caller, wherever it logs from).
static LOG_QUEUE: OnceLock<Option<LogQueue>> = OnceLock::new();

fn log_queue() -> Option<&'static LogQueue> {
    LOG_QUEUE
        .get_or_init(|| LogQueue::start(QUEUE, write_line))
        .as_ref()
}

/// Log lines lost because the log readers did not keep up, since start.
pub fn dropped() -> u64 {
    log_queue().map_or(0, |q| q.counts.dropped.load(Ordering::Relaxed))
}

fn enqueue(l: Line) {
    match log_queue() {
        Some(q) => {
            q.push(l);
        }
        // No writer thread could be started: write here rather than lose the line.
        None => write_line(&l),
    }
}

/// Waits (at most `timeout`) until every line logged so far is written: before the process
/// exits, so that its last lines are not lost with the queue.
pub fn flush(timeout: Duration) {
    if let Some(q) = log_queue() {
        q.flush(timeout);
    }
}

/// Writes one line to stderr in a single `write`: stderr is unbuffered, and a formatted
/// `eprintln!` goes out piece by piece, so lines from the daemon and its guardian (which share
/// the descriptor) would interleave mid-line. Not `eprintln!` either because that panics when
/// stderr is gone.
pub fn console(line: &str) {
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let _ = std::io::stderr().lock().write_all(buf.as_bytes());
}

/// keepalived's identity suffix with `net_namespace` / `instance` (`_ns1`), after every
/// ident; set once, before the first line.
static IDENT_SUFFIX: OnceLock<String> = OnceLock::new();

/// Sets the identity suffix (see [`IDENT_SUFFIX`]); later calls change nothing.
pub fn set_ident_suffix(suffix: String) {
    let _ = IDENT_SUFFIX.set(suffix);
}

fn write_line(l: &Line) {
    let pid = std::process::id();
    let suffixed;
    let ident = match IDENT_SUFFIX.get().filter(|s| !s.is_empty()) {
        Some(s) => {
            suffixed = format!("{}{s}", l.ident);
            suffixed.as_str()
        }
        None => l.ident,
    };
    let mut sent = false;
    if let (Some(f), Some(sock)) = (l.facility, syslog()) {
        sent = sock
            .send(syslog_line(f, ident, pid, &l.msg).as_bytes())
            .is_ok();
    }
    if l.console || !sent {
        console(&format!("{ident}[{pid}]: {}", l.msg));
    }
    to_file(l.ident, &l.msg);
}

/// Which per-packet line a window limits: a drop reason, or another line a received advert
/// can cause (a flood of valid adverts must not become a flood of log lines either).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketLine {
    /// An advert dropped for this reason.
    Drop(holdfast_vrrp::router::Drop),
    /// Another line, named by its kind.
    Other(&'static str),
}

impl From<holdfast_vrrp::router::Drop> for PacketLine {
    fn from(d: holdfast_vrrp::router::Drop) -> Self {
        PacketLine::Drop(d)
    }
}

impl PacketLine {
    /// The limited kind of a router log line, if a received packet can cause it.
    pub fn of(l: &Log) -> Option<PacketLine> {
        Some(match l {
            Log::Dropped(_, why) => PacketLine::Drop(why.counter()?),
            Log::LowerPriority(..) => PacketLine::Other("lower priority"),
            Log::Discarding(..) => PacketLine::Other("discarding"),
            Log::FastPreempt(..) => PacketLine::Other("fast preempt"),
            Log::BackupPrio0(..) => PacketLine::Other("backup priority 0"),
            Log::MasterPrio0(..) => PacketLine::Other("master priority 0"),
            Log::EqualPriorityOurIp(..) => PacketLine::Other("our IP"),
            Log::TwoOwners(..) => PacketLine::Other("two owners"),
            _ => return None,
        })
    }
}

/// Per-packet lines (dropped adverts, and the lines a valid advert can cause), rate limited
/// per kind: a flood is counted in full (the router's counters) but logged as the first
/// [`DropLog::BURST`] lines of each [`DropLog::WINDOW`], then one line saying how many more
/// there were.
#[derive(Default)]
pub struct DropLog {
    /// A window per kind seen (a handful: a list, smaller in every instance than a hash map).
    windows: Mutex<Vec<(PacketLine, Window)>>,
}

#[derive(Clone, Copy)]
struct Window {
    start: std::time::Instant,
    logged: u32,
    suppressed: u64,
}

impl DropLog {
    /// Lines per reason per window.
    pub const BURST: u32 = 5;
    /// The window.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

    /// Whether to log this drop now, and how many earlier ones of the same reason went
    /// unlogged (reported once, when their window has passed).
    pub fn admit(
        &self,
        reason: impl Into<PacketLine>,
        now: std::time::Instant,
    ) -> (bool, Option<u64>) {
        let reason = reason.into();
        let Ok(mut m) = self.windows.lock() else {
            return (true, None);
        };
        let k = match m.iter().position(|(r, _)| *r == reason) {
            Some(k) => k,
            None => {
                m.push((
                    reason,
                    Window {
                        start: now,
                        logged: 0,
                        suppressed: 0,
                    },
                ));
                m.len() - 1
            }
        };
        let w = &mut m[k].1;
        let mut summary = None;
        if now.duration_since(w.start) >= Self::WINDOW {
            if w.suppressed > 0 {
                summary = Some(w.suppressed);
            }
            *w = Window {
                start: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if w.logged < Self::BURST {
            w.logged += 1;
            (true, summary)
        } else {
            w.suppressed += 1;
            (false, summary)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_lines_are_limited_per_reason_and_the_rest_reported() {
        use holdfast_vrrp::router::Drop;
        let d = DropLog::default();
        let t0 = std::time::Instant::now();
        let logged = (0..100)
            .filter(|_| d.admit(Drop::AuthFailure, t0).0)
            .count();
        assert_eq!(logged, DropLog::BURST as usize);
        // Another reason has its own allowance.
        assert_eq!(d.admit(Drop::Ttl, t0), (true, None));
        // After the window: logged again, with the count of what was not.
        let later = t0 + DropLog::WINDOW;
        assert_eq!(d.admit(Drop::AuthFailure, later), (true, Some(95)));
        assert_eq!(d.admit(Drop::AuthFailure, later), (true, None));
    }

    #[test]
    fn a_stalled_log_reader_drops_and_counts_lines_instead_of_blocking() {
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let (out_tx, out_rx) = std::sync::mpsc::channel::<String>();
        // The sink stalls until the gate opens, as a syslog daemon that stopped reading.
        let q = LogQueue::start(8, move |l: &Line| {
            let _ = gate_rx.recv();
            let _ = out_tx.send(l.msg.clone());
        })
        .unwrap();
        let line = |i: usize| Line {
            ident: "Keepalived_vrrp",
            msg: format!("line {i}"),
            facility: None,
            console: false,
        };
        // The writer takes one line and stalls on it; eight more fill the queue; the rest
        // are dropped, and none of the pushes waits.
        let t0 = Instant::now();
        let queued = (0..30).filter(|i| q.push(line(*i))).count();
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "a push waited for the reader"
        );
        let dropped = q.counts.dropped.load(Ordering::Relaxed);
        assert_eq!(queued as u64 + dropped, 30);
        assert!((8..=9).contains(&queued), "{queued} queued");
        // The reader comes back: every queued line, then how many were lost.
        for _ in 0..64 {
            let _ = gate_tx.send(());
        }
        assert!(q.flush(Duration::from_secs(5)));
        let out: Vec<String> = out_rx.try_iter().collect();
        assert_eq!(out[0], "line 0");
        assert_eq!(out.len(), queued + 1, "{out:?}");
        assert!(
            out.iter()
                .any(|l| l.starts_with(&format!("{dropped} log lines dropped"))),
            "{out:?}"
        );
    }

    #[test]
    fn syslog_lines_carry_priority_ident_and_pid() {
        assert_eq!(
            syslog_line(3, "Keepalived_vrrp", 42, "(VI_1) Entering MASTER STATE"),
            "<30>Keepalived_vrrp[42]: (VI_1) Entering MASTER STATE"
        );
        assert_eq!(
            syslog_line(23, "Keepalived", 1, "Stopping"),
            "<190>Keepalived[1]: Stopping"
        );
    }

    #[test]
    fn log_files_are_named_and_stamped_like_keepalived_s() {
        assert_eq!(
            log_file_name(Path::new("keepalived.log"), Some("vrrp")),
            Path::new("/tmp/keepalived_vrrp.log")
        );
        assert_eq!(
            log_file_name(Path::new("/var/log/ka.log"), None),
            Path::new("/var/log/ka.log")
        );
        assert_eq!(
            log_file_name(Path::new("/var/log/ka"), Some("vrrp")),
            Path::new("/var/log/ka_vrrp")
        );
        // 2026-11-22 02:55:01.5 UTC was a Sunday.
        let t = chrono::DateTime::from_timestamp(1_795_316_101, 500_000_000).unwrap();
        assert_eq!(
            file_line(t, "(VI_1) Entering MASTER STATE"),
            "Sun Nov 22 02:55:01.500000000 2026: (VI_1) Entering MASTER STATE"
        );
    }

    #[test]
    fn facilities_follow_keepalived_s_flag() {
        assert_eq!(parse_facility("daemon"), Some(3));
        assert_eq!(parse_facility("0"), Some(16));
        assert_eq!(parse_facility("local7"), Some(23));
        assert_eq!(parse_facility("8"), None);
        assert_eq!(parse_facility("kern"), None);
    }
}
