//! keepalived's notify FIFOs: `notify_fifo` receives a line for every VRRP instance or sync
//! group state change and every real server or virtual server (quorum) change,
//! `vrrp_notify_fifo` only the VRRP lines, `lvs_notify_fifo` only the others. The lines are
//! keepalived's, so the readers written for it keep working:
//!
//! ```text
//! INSTANCE "VI_1" MASTER 100
//! GROUP "G1" BACKUP 0
//! RS [10.0.0.2]:tcp:80 [10.0.0.1]:tcp:80 DOWN
//! VS [10.0.0.1]:tcp:80 UP
//! ```
//!
//! A FIFO that does not exist is created (mode 0644, owned by the configured user and group)
//! and removed at stop; one that exists is used as it is. It is opened read-write and
//! non-blocking, as keepalived opens it: a write never waits for a reader, and a line that
//! does not fit (no reader draining it) is dropped.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use holdfast_config::model::Command;

use crate::logging::Logger;

/// The FIFO settings of a configuration: `notify_fifo`, `vrrp_notify_fifo`, `lvs_notify_fifo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FifoPlan {
    /// `notify_fifo`: every line.
    pub all: Option<Command>,
    /// `vrrp_notify_fifo`: VRRP lines.
    pub vrrp: Option<Command>,
    /// `lvs_notify_fifo`: real and virtual server lines.
    pub lvs: Option<Command>,
    /// `notify_fifo_script`, `vrrp_notify_fifo_script`, `lvs_notify_fifo_script`: started
    /// once each with their FIFO's path, to read it.
    pub scripts: [Option<Command>; 3],
    /// `script_user`, for the scripts without a user of their own.
    pub script_user: Option<holdfast_config::model::UserSpec>,
}

impl FifoPlan {
    /// From `global_defs`.
    pub fn from_config(g: &holdfast_config::model::Global) -> FifoPlan {
        FifoPlan {
            all: g.notify_fifo.clone(),
            vrrp: g.vrrp_notify_fifo.clone(),
            lvs: g.lvs_notify_fifo.clone(),
            scripts: [
                g.notify_fifo_script.clone(),
                g.vrrp_notify_fifo_script.clone(),
                g.lvs_notify_fifo_script.clone(),
            ],
            script_user: g.script_user.clone(),
        }
    }
}

struct Fifo {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    /// Created by holdfast: removed when closed.
    created: bool,
    /// The process group of its reader script, ended when the FIFO closes (keepalived
    /// terminates it at stop).
    script: Option<nix::unistd::Pid>,
}

impl Fifo {
    /// Creates (if missing) and opens the FIFO of `c`, starting its reader `script` first
    /// (as keepalived does); `kind` is keepalived's prefix of its log lines (`""`, `"vrrp_"`,
    /// `"lvs_"`).
    fn open(
        c: &Command,
        kind: &str,
        script: Option<&Command>,
        plan: &FifoPlan,
        log: Logger,
    ) -> Option<Fifo> {
        use nix::sys::stat::Mode;
        let path = PathBuf::from(&c.cmd);
        let mode = Mode::S_IRUSR | Mode::S_IWUSR | Mode::S_IRGRP | Mode::S_IROTH;
        let created = match nix::unistd::mkfifo(&path, mode) {
            Ok(()) => {
                if let Some(u) = &c.user {
                    let uid = nix::unistd::User::from_name(&u.user)
                        .ok()
                        .flatten()
                        .map(|u| u.uid);
                    let gid = u
                        .group
                        .as_deref()
                        .and_then(|g| nix::unistd::Group::from_name(g).ok().flatten())
                        .map(|g| g.gid);
                    if nix::unistd::chown(&path, uid, gid).is_err() {
                        log.main(&format!("Failed to set uid:gid for fifo {}", c.cmd));
                    }
                }
                true
            }
            Err(nix::errno::Errno::EEXIST) => false,
            Err(_) => {
                log.main(&format!("Unable to create {kind}notify fifo {}", c.cmd));
                return None;
            }
        };
        let mut script_pid = None;
        if let Some(s) = script {
            match crate::script::spawn_with_arg(s, plan.script_user.as_ref(), &c.cmd) {
                Ok(mut child) => {
                    script_pid = child
                        .id()
                        .and_then(|id| i32::try_from(id).ok())
                        .map(nix::unistd::Pid::from_raw);
                    let which = match kind {
                        "lvs_" => "lvs notify fifo script",
                        "vrrp_" => "vrrp notify fifo script",
                        _ => "notify fifo script",
                    };
                    // It reads until the FIFO closes; its end is logged as keepalived logs it.
                    tokio::spawn(async move {
                        let _ = child.wait().await;
                        log.main(&format!("{which} terminated"));
                    });
                }
                Err(e) => log.main(&e),
            }
        }
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => Some(Fifo {
                path,
                file: Mutex::new(file),
                created,
                script: script_pid,
            }),
            Err(e) => {
                log.main(&format!(
                    "Unable to open {kind}notify fifo {} - errno {}",
                    c.cmd,
                    e.raw_os_error().unwrap_or(0)
                ));
                if created {
                    let _ = std::fs::remove_file(&path);
                }
                if let Some(pg) = script_pid {
                    let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGTERM);
                }
                None
            }
        }
    }

    fn write(&self, line: &str) {
        if let Ok(mut f) = self.file.lock() {
            // Non-blocking: with nobody reading, a full FIFO drops the line (as keepalived).
            let _ = f.write(line.as_bytes());
        }
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        // Removed first, so a reader reopening it in a loop cannot reopen this one.
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(pg) = self.script {
            let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGTERM);
        }
    }
}

/// The open FIFOs.
struct Fifos {
    plan: FifoPlan,
    all: Option<Fifo>,
    vrrp: Option<Fifo>,
    lvs: Option<Fifo>,
}

/// The notify FIFOs of the running configuration (reopened at a reload that changes them),
/// which VRRP instances, sync groups and virtual servers write to.
#[derive(Default)]
pub struct Notifier {
    fifos: RwLock<Option<Arc<Fifos>>>,
}

impl Notifier {
    /// Opens the FIFOs of `plan` (at start; at reload only if they changed). `None` closes them.
    pub fn configure(&self, plan: Option<FifoPlan>, log: Logger) {
        let Ok(mut g) = self.fifos.write() else {
            return;
        };
        if g.as_ref().map(|f| &f.plan) == plan.as_ref() {
            return;
        }
        // The old ones close (and go, if holdfast made them) before the new ones open.
        *g = None;
        let Some(plan) = plan else {
            return;
        };
        let all = plan
            .all
            .as_ref()
            .and_then(|c| Fifo::open(c, "", plan.scripts[0].as_ref(), &plan, log));
        // A specific FIFO that is the global one is left out, as keepalived does.
        let own = |c: &Option<Command>, kind: &str, name: &str, script: &Option<Command>| {
            let c = c.as_ref()?;
            if plan.all.as_ref().is_some_and(|a| a.cmd == c.cmd) {
                log.main(&format!(
                "notify FIFO {} has been specified for global and {name} FIFO - ignoring {name} FIFO",
                c.cmd
            ));
                return None;
            }
            Fifo::open(c, kind, script.as_ref(), &plan, log)
        };
        let vrrp = own(&plan.vrrp, "vrrp_", "vrrp", &plan.scripts[1]);
        let lvs = own(&plan.lvs, "lvs_", "LVS", &plan.scripts[2]);
        *g = Some(Arc::new(Fifos {
            plan,
            all,
            vrrp,
            lvs,
        }));
    }

    /// Writes the line `line` makes to the global FIFO and to the VRRP (`vrrp`) or LVS one; the
    /// line is only made when one of them is open.
    fn send(&self, vrrp: bool, line: impl FnOnce() -> String) {
        let Some(f) = self.fifos.read().ok().and_then(|g| g.clone()) else {
            return;
        };
        let own = if vrrp { &f.vrrp } else { &f.lvs };
        let open: Vec<&Fifo> = f.all.iter().chain(own).collect();
        if open.is_empty() {
            return;
        }
        let line = line();
        for fifo in open {
            fifo.write(&line);
        }
    }

    /// Writes a VRRP line (see [`vrrp_line`]).
    pub fn vrrp(&self, name: &str, group: bool, state: &str, priority: u8) {
        self.send(true, || vrrp_line(name, group, state, priority));
    }

    /// Writes `RS [rs] [vs] UP|DOWN`.
    pub fn real_server(&self, rs: &str, vs: &str, up: bool) {
        let state = if up { "UP" } else { "DOWN" };
        self.send(false, || format!("RS {rs} {vs} {state}\n"));
    }

    /// Writes `VS [vs] UP|DOWN` (its quorum).
    pub fn virtual_server(&self, vs: &str, up: bool) {
        let state = if up { "UP" } else { "DOWN" };
        self.send(false, || format!("VS {vs} {state}\n"));
    }
}

/// The line of a VRRP instance (`group`: a sync group, priority 0) entering `state`
/// (`MASTER`, `BACKUP`, `FAULT`, `STOP`, or an event such as `MASTER_RX_LOWER_PRI`).
pub fn vrrp_line(name: &str, group: bool, state: &str, priority: u8) -> String {
    let kind = if group { "GROUP" } else { "INSTANCE" };
    format!("{kind} \"{name}\" {state} {priority}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn lines_are_keepalived_s() {
        assert_eq!(
            vrrp_line("VI_1", false, "MASTER", 100),
            "INSTANCE \"VI_1\" MASTER 100\n"
        );
        assert_eq!(vrrp_line("G", true, "BACKUP", 0), "GROUP \"G\" BACKUP 0\n");
    }

    #[test]
    fn a_fifo_is_created_written_without_a_reader_and_removed() {
        let dir = std::env::temp_dir().join(format!("hf-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let c = Command {
            cmd: path.display().to_string(),
            user: None,
        };
        let log = Logger::console(false);
        let f = Fifo::open(&c, "", None, &FifoPlan::default(), log).expect("fifo");
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&path).unwrap().file_type().is_fifo());
        // No reader yet: the write neither blocks nor fails loudly.
        f.write("INSTANCE \"VI_1\" MASTER 100\n");
        let mut r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let mut got = [0u8; 64];
        let n = r.read(&mut got).unwrap();
        assert_eq!(&got[..n], b"INSTANCE \"VI_1\" MASTER 100\n");
        drop(f);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
