//! Notify scripts of instances and sync groups: keepalived's arguments, run off the driver,
//! waited for at stop.

use std::time::Duration;

use holdfast_vrrp::router::State;

use super::state_word;
use crate::logging::Logger;

/// The notify scripts for entering `state`: the specific one, then the generic `notify` with
/// keepalived's four arguments (`INSTANCE|GROUP name STATE priority`).
pub(crate) fn notify_commands(
    n: &holdfast_config::model::Notify,
    state: State,
    kind: &str,
    name: &str,
    priority: u8,
) -> Vec<holdfast_config::model::Command> {
    let specific = match state {
        State::Master => &n.master,
        State::Backup => &n.backup,
        State::Fault => &n.fault,
        State::Init => &n.stop,
    };
    let word = state_word(state);
    let mut cmds: Vec<_> = specific.iter().cloned().collect();
    if let Some(g) = &n.generic {
        cmds.push(holdfast_config::model::Command {
            cmd: format!("{} {kind} {} {word} {priority}", g.cmd, shell_quote(name)),
            user: g.user.clone(),
        });
    }
    cmds
}

/// Runs scripts one after the other off the driver (keepalived runs notify scripts
/// asynchronously), each as its own user or `script_user`, logging failures under `who`.
pub(crate) fn spawn_scripts(
    cmds: Vec<holdfast_config::model::Command>,
    script_user: Option<holdfast_config::model::UserSpec>,
    who: String,
    log: Logger,
) {
    if cmds.is_empty() {
        return;
    }
    let task = tokio::spawn(async move {
        for c in cmds {
            if let Err(e) =
                crate::script::run_notify(&c, script_user.as_ref(), "notify script").await
            {
                log.vrrp(&format!("{who} {e}"));
            }
        }
    });
    if let Ok(mut p) = NOTIFYING.lock() {
        p.retain(|t| !t.is_finished());
        p.push(task);
    }
}

/// Notify scripts still running: the daemon waits for them at stop (a script it started
/// would otherwise be killed with the runtime — notify_stop above all). Process-wide: they are
/// the process's children, whichever part started them.
static NOTIFYING: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// How long the daemon waits at stop for the notify scripts it started.
const NOTIFY_AT_STOP: Duration = Duration::from_secs(10);

/// Waits (at most [`NOTIFY_AT_STOP`]) for every notify script started so far.
pub(crate) async fn notify_scripts_done(log: Logger) {
    let tasks = NOTIFYING
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default();
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(NOTIFY_AT_STOP, all).await.is_err() {
        log.vrrp(&format!(
            "notify scripts still running {} s after stop were ended",
            NOTIFY_AT_STOP.as_secs()
        ));
    }
}

fn shell_quote(s: &str) -> String {
    // A single quote closes the quoted part, is given in double quotes, and reopens it: read
    // the same way by the runner's word splitting (adjacent quoted parts make one word) and
    // by `/bin/sh -c`, which runs the line when the program is not an executable file.
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_config::model::{Command, Notify, UserSpec};

    fn cmd(c: &str) -> Option<Command> {
        Some(Command {
            cmd: c.into(),
            user: None,
        })
    }

    #[test]
    fn notify_runs_the_specific_script_then_the_generic_one_with_four_arguments() {
        let n = Notify {
            master: cmd("/bin/m"),
            backup: cmd("/bin/b"),
            fault: None,
            stop: cmd("/bin/s"),
            generic: Some(Command {
                cmd: "/bin/n x".into(),
                user: Some(UserSpec {
                    user: "nobody".into(),
                    group: None,
                }),
            }),
            ..Notify::default()
        };
        let lines = |state, kind, name, prio| -> Vec<String> {
            notify_commands(&n, state, kind, name, prio)
                .into_iter()
                .map(|c| c.cmd)
                .collect()
        };
        assert_eq!(
            lines(State::Master, "INSTANCE", "VI_1", 150),
            ["/bin/m", "/bin/n x INSTANCE 'VI_1' MASTER 150"]
        );
        assert_eq!(
            lines(State::Init, "GROUP", "G1", 0),
            ["/bin/s", "/bin/n x GROUP 'G1' STOP 0"]
        );
        // No notify_fault: the generic one alone, as its own user.
        let fault = notify_commands(&n, State::Fault, "INSTANCE", "VI_1", 90);
        assert_eq!(fault.len(), 1);
        assert_eq!(fault[0].cmd, "/bin/n x INSTANCE 'VI_1' FAULT 90");
        assert_eq!(
            fault[0].user.as_ref().map(|u| u.user.as_str()),
            Some("nobody")
        );
    }

    #[test]
    fn a_name_reaches_the_script_as_one_argument_whatever_it_holds() {
        for name in ["VI_1", "with space", "it's", "a\"b", "$(reboot)", ""] {
            let line = format!("/bin/n INSTANCE {} MASTER 100", shell_quote(name));
            let words = crate::script::split(&line);
            assert_eq!(words.len(), 5, "{name:?} → {line}");
            assert_eq!(words[2], name, "{line}");
            // And through /bin/sh -c, the runner's fallback.
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", shell_quote(name)))
                .output()
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(String::from_utf8_lossy(&out.stdout), name);
        }
    }
}
