//! `vrrp_track_process`'s rules, as keepalived applies them: which processes match a name and
//! parameters, and whether their number makes a quorum. Pure; the daemon scans `/proc` and
//! follows the kernel's process events.

use std::time::Duration;

/// How a process's parameters are compared with the configured ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamMatch {
    /// No parameters configured: any.
    Any,
    /// Exactly the configured parameters.
    Exact,
    /// `param_match partial`: the process's parameters start with the configured ones.
    Partial,
    /// `param_match initial`: as partial, and the last configured one may be the start of
    /// the process's parameter.
    Initial,
}

/// What one `vrrp_track_process` counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// `process NAME`: compared with `/proc/PID/comm` (at most 15 bytes, as the kernel keeps
    /// it), or with the command line's first word under `full_command`.
    pub process: String,
    /// The parameters after the name.
    pub args: Vec<String>,
    /// How parameters match.
    pub param_match: ParamMatch,
    /// `full_command`.
    pub full_command: bool,
    /// `quorum` (default 1).
    pub quorum: u32,
    /// `quorum_max` (default unlimited).
    pub quorum_max: u32,
    /// `fork_delay` (or `delay`): quorum gained is reported after this.
    pub fork_delay: Duration,
    /// `terminate_delay` (or `delay`): quorum lost is reported after this.
    pub terminate_delay: Duration,
}

impl Spec {
    /// Whether a process with this `comm` and NUL-separated `cmdline` matches.
    pub fn matches(&self, comm: &str, cmdline: &[u8]) -> bool {
        let mut words = cmdline
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned());
        let argv0 = words.next().unwrap_or_default();
        let name_ok = if self.full_command {
            argv0 == self.process
        } else {
            // The kernel keeps 15 bytes of a task name.
            let want: String = self.process.bytes().take(15).map(char::from).collect();
            comm == want || comm == self.process
        };
        if !name_ok {
            return false;
        }
        let mut params: Vec<String> = words.collect();
        // cmdline ends with a NUL, which leaves one empty word at the end.
        if params.last().is_some_and(String::is_empty) {
            params.pop();
        }
        let want = &self.args;
        match self.param_match {
            ParamMatch::Any => true,
            ParamMatch::Exact => &params == want,
            ParamMatch::Partial => params.len() >= want.len() && params[..want.len()] == want[..],
            ParamMatch::Initial => {
                let Some((last, first)) = want.split_last() else {
                    return true;
                };
                params.len() >= want.len()
                    && params[..first.len()] == first[..]
                    && params[first.len()].starts_with(last.as_str())
            }
        }
    }

    /// Whether `n` processes make a quorum.
    pub fn quorum_ok(&self, n: usize) -> bool {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        n >= self.quorum && n <= self.quorum_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(process: &str, args: &[&str], m: ParamMatch) -> Spec {
        Spec {
            process: process.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            param_match: m,
            full_command: false,
            quorum: 1,
            quorum_max: u32::MAX,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
        }
    }

    const HAPROXY: &[u8] = b"/usr/sbin/haproxy\0-Ws\0-f\0/etc/haproxy/haproxy.cfg\0";

    #[test]
    fn names_and_parameters_match_as_keepalived_matches_them() {
        assert!(spec("haproxy", &[], ParamMatch::Any).matches("haproxy", HAPROXY));
        assert!(!spec("haproxy", &[], ParamMatch::Any).matches("haproxy-wrk", HAPROXY));
        let exact = spec(
            "haproxy",
            &["-Ws", "-f", "/etc/haproxy/haproxy.cfg"],
            ParamMatch::Exact,
        );
        assert!(exact.matches("haproxy", HAPROXY));
        assert!(!spec("haproxy", &["-Ws"], ParamMatch::Exact).matches("haproxy", HAPROXY));
        assert!(spec("haproxy", &["-Ws", "-f"], ParamMatch::Partial).matches("haproxy", HAPROXY));
        assert!(!spec("haproxy", &["-W"], ParamMatch::Partial).matches("haproxy", HAPROXY));
        assert!(spec("haproxy", &["-W"], ParamMatch::Initial).matches("haproxy", HAPROXY));
        assert!(
            !spec("haproxy", &["-f"], ParamMatch::Initial).matches("haproxy", HAPROXY),
            "initial compares from the first parameter"
        );
        let mut full = spec("/usr/sbin/haproxy", &[], ParamMatch::Any);
        full.full_command = true;
        assert!(full.matches("haproxy", HAPROXY));
        assert!(!full.matches("haproxy", b"haproxy\0"));
        // comm holds 15 bytes of a longer name.
        assert!(spec("mariadbd-safe-helper", &[], ParamMatch::Any).matches("mariadbd-safe-h", b""));
    }

    #[test]
    fn quorum_is_a_range() {
        let mut s = spec("x", &[], ParamMatch::Any);
        assert!(!s.quorum_ok(0) && s.quorum_ok(1) && s.quorum_ok(9));
        s.quorum = 2;
        s.quorum_max = 3;
        assert!(!s.quorum_ok(1) && s.quorum_ok(2) && s.quorum_ok(3) && !s.quorum_ok(4));
    }
}
