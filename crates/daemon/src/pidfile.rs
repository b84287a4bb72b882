//! One daemon per pid file. keepalived refuses to start ("daemon is already running") when its
//! pid file names a live process; holdfast does the same, and also holds an exclusive `flock`
//! on each pid file for its whole life, so that two daemons started at the same moment cannot
//! both pass the check (keepalived's read-then-write can race). A keepalived, which takes no
//! lock, is seen through the pid it wrote.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// keepalived's main pid file, the default of `-p`.
pub const DEFAULT: &str = "/run/keepalived.pid";

/// Pid files this process owns; they are removed when it is dropped.
#[derive(Debug)]
pub struct PidFiles {
    held: Vec<(PathBuf, Flock<File>)>,
}

/// Why the daemon may not start.
#[derive(Debug)]
pub enum Refused {
    /// A live daemon holds or names this pid file.
    Running {
        /// The pid file.
        path: PathBuf,
        /// The pid it names, when readable.
        pid: Option<u32>,
    },
    /// The file could not be opened, locked or written.
    Io(PathBuf, std::io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Running { path, pid: Some(p) } => {
                write!(f, "pid file {} names running daemon {p}", path.display())
            }
            Refused::Running { path, pid: None } => {
                write!(
                    f,
                    "pid file {} is locked by a running daemon",
                    path.display()
                )
            }
            Refused::Io(path, e) => write!(f, "pid file {}: {e}", path.display()),
        }
    }
}

/// Whether `pid` is a live holdfast or keepalived process (a pid reused by anything else after
/// a crash does not count, where keepalived would refuse until the file is removed).
fn daemon_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| {
        let comm = comm.trim();
        comm == "holdfast" || comm == "keepalived"
    })
}

/// Locks and writes every pid file in `paths` (the same path given twice is taken once), or
/// says why the daemon must not start. `stale` is called with each pid file that named a dead
/// process (keepalived logs "Remove a zombie pid file").
pub fn claim(paths: &[PathBuf], mut stale: impl FnMut(&Path)) -> Result<PidFiles, Refused> {
    let me = std::process::id();
    let mut held: Vec<(PathBuf, Flock<File>)> = Vec::new();
    for path in paths {
        if held.iter().any(|(p, _)| p == path) {
            continue;
        }
        let io = |e: std::io::Error| Refused::Io(path.clone(), e);
        // keepalived's per-namespace directory (/run/keepalived/NAMESPACE) may not exist yet.
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(Refused::Running {
                    path: path.clone(),
                    pid: read_pid(file),
                });
            }
            Err((_, e)) => return Err(io(e.into())),
        };
        let mut text = String::new();
        lock.read_to_string(&mut text).map_err(io)?;
        match text.trim().parse::<u32>() {
            Ok(pid) if pid != me && daemon_alive(pid) => {
                return Err(Refused::Running {
                    path: path.clone(),
                    pid: Some(pid),
                });
            }
            Ok(pid) if pid != me => stale(path),
            _ => {}
        }
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        lock.write_all(format!("{me}\n").as_bytes()).map_err(io)?;
        held.push((path.clone(), lock));
    }
    Ok(PidFiles { held })
}

fn read_pid(mut file: File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

impl Drop for PidFiles {
    fn drop(&mut self) {
        // Removed while still locked, so no second daemon can take a file that is about to go.
        for (path, _) in &self.held {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "holdfast-pidfile-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn a_held_pid_file_refuses_a_second_claim_until_released() {
        let p = dir().join("a.pid");
        let first = claim(std::slice::from_ref(&p), |_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::read_to_string(&p).ok(),
            Some(format!("{}\n", std::process::id()))
        );
        // A second open file description cannot take the lock, even in the same process.
        match claim(std::slice::from_ref(&p), |_| {}) {
            Err(Refused::Running { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("claimed twice: {other:?}"),
        }
        drop(first);
        assert!(!p.exists(), "the pid file outlived its daemon");
        let again = claim(std::slice::from_ref(&p), |_| {});
        assert!(again.is_ok());
    }

    #[test]
    fn a_pid_file_naming_a_dead_process_is_taken_over() {
        let p = dir().join("b.pid");
        // The pid of a process that has exited (`true`, reaped).
        let mut child = std::process::Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let dead = child.id();
        let _ = child.wait();
        std::fs::write(&p, format!("{dead}\n")).unwrap_or_else(|e| panic!("{e}"));
        let mut said = Vec::new();
        let held = claim(std::slice::from_ref(&p), |s| said.push(s.to_path_buf()));
        assert!(held.is_ok());
        assert_eq!(said, std::slice::from_ref(&p));
        assert_eq!(
            std::fs::read_to_string(&p).ok(),
            Some(format!("{}\n", std::process::id()))
        );
    }
}
