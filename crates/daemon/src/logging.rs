//! Log lines with keepalived's idents: `Keepalived[PID]` for the parent's lines and
//! `Keepalived_vrrp[PID]` for VRRP's, to syslog (`/dev/log`, facility `-S`, default daemon)
//! unless `-G`, and to stderr with `-l` (or when syslog is unreachable).

use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

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
    }

    /// A line from the VRRP side.
    pub fn vrrp(&self, msg: &str) {
        self.emit("Keepalived_vrrp", msg);
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn facilities_follow_keepalived_s_flag() {
        assert_eq!(parse_facility("daemon"), Some(3));
        assert_eq!(parse_facility("0"), Some(16));
        assert_eq!(parse_facility("local7"), Some(23));
        assert_eq!(parse_facility("8"), None);
        assert_eq!(parse_facility("kern"), None);
    }
}
