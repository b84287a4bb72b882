//! `vrrp_track_process`: counts the running processes that match a name (and optionally
//! parameters) and reports whether the count is within `quorum..=quorum_max`, as keepalived
//! does. The count starts from a scan of `/proc` and then follows the kernel's process events
//! (fork, exec, comm change, exit) from the proc connector — no polling. If the connector
//! cannot be reached, the tracker says so and rescans `/proc` every second instead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use holdfast_sys::proc_events::{ProcEvent, ProcEvents};
use tokio::sync::{broadcast, mpsc};

use crate::logging::Logger;
use crate::trackers::TrackEv;

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
    /// From the configuration.
    pub fn from_config(t: &holdfast_config::model::TrackProcess) -> Spec {
        let param_match = match (t.param_match.as_deref(), t.args.is_empty()) {
            (Some("partial"), _) => ParamMatch::Partial,
            (Some("initial"), _) => ParamMatch::Initial,
            (_, true) => ParamMatch::Any,
            (_, false) => ParamMatch::Exact,
        };
        Spec {
            process: t.process.clone(),
            args: t.args.clone(),
            param_match,
            full_command: t.full_command,
            quorum: t.quorum,
            quorum_max: t.quorum_max.unwrap_or(u32::MAX),
            fork_delay: t.fork_delay.or(t.delay).unwrap_or(Duration::ZERO),
            terminate_delay: t.terminate_delay.or(t.delay).unwrap_or(Duration::ZERO),
        }
    }

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

fn read_proc(pid: u32) -> Option<(String, Vec<u8>)> {
    let dir = Path::new("/proc").join(pid.to_string());
    let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
    let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    Some((comm.trim_end_matches('\n').to_string(), cmdline))
}

fn matching(spec: &Spec, pid: u32) -> bool {
    read_proc(pid).is_some_and(|(comm, cmd)| spec.matches(&comm, &cmd))
}

/// Every running process that matches.
pub fn scan(spec: &Spec) -> HashSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| matching(spec, *pid))
        .collect()
}

static NETNS: OnceLock<Option<PathBuf>> = OnceLock::new();
static HUB: OnceLock<Result<broadcast::Sender<Feed>, String>> = OnceLock::new();

/// What the shared reader passes on.
#[derive(Clone, Copy, Debug)]
enum Feed {
    Event(ProcEvent),
    /// The kernel dropped events (ENOBUFS): counts must be rebuilt from `/proc`.
    Lost,
}

/// `--proc-events-netns`: where to open the proc connector when the daemon runs outside
/// the initial network namespace. Call before the first tracker starts.
pub fn set_events_netns(path: Option<PathBuf>) {
    let _ = NETNS.set(path);
}

/// The process event feed shared by every tracker: one socket, one reading thread.
fn hub() -> &'static Result<broadcast::Sender<Feed>, String> {
    HUB.get_or_init(|| {
        let netns = NETNS.get().cloned().flatten();
        let ev = ProcEvents::open(netns.as_deref()).map_err(|e| e.to_string())?;
        let (tx, _) = broadcast::channel(4096);
        let out = tx.clone();
        std::thread::Builder::new()
            .name("proc-events".into())
            .spawn(move || {
                loop {
                    match ev.recv() {
                        Ok(events) => {
                            for e in events {
                                let _ = out.send(Feed::Event(e));
                            }
                        }
                        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {
                            let _ = out.send(Feed::Lost);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(tx)
    })
}

/// Runs one tracker: reports `TrackEv::Up(index, quorum)` at start and on every change
/// (after `fork_delay` / `terminate_delay`), with keepalived's log lines.
pub async fn watch(index: usize, name: String, spec: Spec, tx: mpsc::Sender<TrackEv>, log: Logger) {
    let mut rx = match hub() {
        Ok(h) => Some(h.subscribe()),
        Err(e) => {
            log.vrrp(&format!(
                "track_process {name}: cannot receive process events ({e}); rescanning /proc every second instead"
            ));
            None
        }
    };
    let mut pids = scan(&spec);
    let mut reported = spec.quorum_ok(pids.len());
    if tx.send(TrackEv::Up(index, reported)).await.is_err() {
        return;
    }
    let mut pending: Option<(bool, tokio::time::Instant)> = None;
    loop {
        let deadline = pending.map(|(_, at)| at);
        tokio::select! {
            ev = async {
                match rx.as_mut() {
                    Some(r) => Some(r.recv().await),
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        None
                    }
                }
            } => {
                match ev {
                    Some(Ok(Feed::Event(ProcEvent::Exec(pid) | ProcEvent::Comm(pid)))) => {
                        if matching(&spec, pid) {
                            pids.insert(pid);
                        } else {
                            pids.remove(&pid);
                        }
                    }
                    Some(Ok(Feed::Event(ProcEvent::Fork { parent, child }))) => {
                        if pids.contains(&parent) && matching(&spec, child) {
                            pids.insert(child);
                        }
                    }
                    Some(Ok(Feed::Lost)) | Some(Err(broadcast::error::RecvError::Lagged(_))) | None => {
                        pids = scan(&spec);
                    }
                    Some(Ok(Feed::Event(ProcEvent::Exit(pid)))) => {
                        pids.remove(&pid);
                    }
                    Some(Err(broadcast::error::RecvError::Closed)) => {
                        rx = None;
                    }
                }
            }
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {}
        }
        let now_ok = spec.quorum_ok(pids.len());
        let now = tokio::time::Instant::now();
        match pending {
            Some((want, at)) if want == now_ok && now >= at => pending = None,
            Some((want, _)) if want != now_ok => pending = None,
            Some(_) => continue,
            None if now_ok == reported => continue,
            None => {
                let delay = if now_ok {
                    spec.fork_delay
                } else {
                    spec.terminate_delay
                };
                if !delay.is_zero() {
                    pending = Some((now_ok, now + delay));
                    continue;
                }
            }
        }
        if now_ok == reported {
            continue;
        }
        reported = now_ok;
        log.vrrp(&format!(
            "Quorum {} for tracked process {name}",
            if now_ok { "gained" } else { "lost" }
        ));
        if tx.send(TrackEv::Up(index, now_ok)).await.is_err() {
            return;
        }
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

    #[test]
    fn a_scan_finds_this_process() {
        let me = std::process::id();
        let (comm, _) = read_proc(me).expect("own /proc entry");
        let s = spec(&comm, &[], ParamMatch::Any);
        assert!(scan(&s).contains(&me));
        assert!(!scan(&spec("no-such-process-holdfast", &[], ParamMatch::Any)).contains(&me));
    }
}
