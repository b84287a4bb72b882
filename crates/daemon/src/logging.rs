//! Log lines with keepalived's idents: `Keepalived[PID]` for the parent's lines and
//! `Keepalived_vrrp[PID]` for VRRP's, to syslog (`/dev/log`, facility `-S`, default daemon)
//! unless `-G`, to stderr with `-l` (or when syslog is unreachable), and with `-g` to log
//! files named as keepalived names them.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

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

    fn emit(&self, ident: &str, msg: &str) {
        let pid = std::process::id();
        let mut sent = false;
        if let (Some(f), Some(sock)) = (self.facility, syslog()) {
            sent = sock
                .send(syslog_line(f, ident, pid, msg).as_bytes())
                .is_ok();
        }
        if self.console || !sent {
            eprintln!("{ident}[{pid}]: {msg}");
        }
        to_file(ident, msg);
    }

    /// A line from the VRRP side.
    pub fn vrrp(&self, msg: &str) {
        self.emit("Keepalived_vrrp", msg);
    }

    /// A line from the checkers (virtual servers).
    pub fn check(&self, msg: &str) {
        self.emit("Keepalived_healthcheckers", msg);
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

/// Dropped-advert lines, rate limited per reason: a flood of bad adverts is counted in full
/// (the router's counters) but logged as the first [`DropLog::BURST`] lines of each
/// [`DropLog::WINDOW`], then one line saying how many more there were.
#[derive(Default)]
pub struct DropLog {
    /// A window per reason seen (a handful of reasons: a list, smaller in every instance
    /// than a hash map).
    windows: Mutex<Vec<(holdfast_vrrp::router::Drop, Window)>>,
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
        reason: holdfast_vrrp::router::Drop,
        now: std::time::Instant,
    ) -> (bool, Option<u64>) {
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
