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
use holdfast_check::process::Spec;

use super::TrackEv;

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

/// The network namespace the proc connector is read in (`-s`), set once at start.
static NETNS: OnceLock<Option<PathBuf>> = OnceLock::new();
/// The proc connector's feed. Process-wide because the kernel sends every process event to
/// every connector socket: one socket per process, shared by every `vrrp_track_process`.
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
    use holdfast_check::process::ParamMatch;

    fn spec(process: &str) -> Spec {
        Spec {
            process: process.into(),
            args: Vec::new(),
            param_match: ParamMatch::Any,
            full_command: false,
            quorum: 1,
            quorum_max: u32::MAX,
            fork_delay: Duration::ZERO,
            terminate_delay: Duration::ZERO,
        }
    }

    #[test]
    fn a_scan_finds_this_process() {
        let me = std::process::id();
        let (comm, _) = read_proc(me).expect("own /proc entry");
        let s = spec(&comm);
        assert!(scan(&s).contains(&me));
        assert!(!scan(&spec("no-such-process-holdfast")).contains(&me));
    }
}
