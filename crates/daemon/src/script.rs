//! Running scripts as keepalived does: directly when the program is an executable file,
//! otherwise through `/bin/sh -c` (this is how `script "</dev/tcp/127.0.0.1/3306"` works);
//! in a process group of its own, killed (SIGTERM, then SIGKILL 2 s later) on timeout; with
//! IFS, LD_PRELOAD and LD_LIBRARY_PATH removed from the environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The user and group a script runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Whom a script runs as, decided as keepalived decides: its own `user USER [GROUP]`, else
/// `global_defs { script_user }`, else the user `keepalived_script` if it exists, else the
/// daemon's own user (`None`). Without a group, the user's primary group.
pub fn run_as(
    own: Option<&holdfast_config::model::UserSpec>,
    default: Option<&holdfast_config::model::UserSpec>,
) -> Result<Option<RunAs>, String> {
    use nix::unistd::{Group, User};
    let (name, group) = match own.or(default) {
        Some(u) => (u.user.clone(), u.group.clone()),
        None => match User::from_name("keepalived_script") {
            Ok(Some(_)) => ("keepalived_script".to_string(), None),
            _ => return Ok(None),
        },
    };
    let user = match User::from_name(&name) {
        Ok(Some(u)) => u,
        _ => return Err(format!("Unable to set user {name}")),
    };
    let gid = match group {
        Some(g) => match Group::from_name(&g) {
            Ok(Some(g)) => g.gid.as_raw(),
            _ => return Err(format!("Unable to set group {g}")),
        },
        None => user.gid.as_raw(),
    };
    Ok(Some(RunAs {
        uid: user.uid.as_raw(),
        gid,
    }))
}

/// Why a script did not report an exit status.
#[derive(Debug)]
pub enum ScriptError {
    /// It ran past its timeout and was killed.
    TimedOut,
    /// It was killed by this signal.
    Signal(i32),
    /// It could not be started.
    Spawn(std::io::Error),
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptError::TimedOut => f.write_str("timed out"),
            ScriptError::Signal(s) => write!(f, "killed by signal {s}"),
            ScriptError::Spawn(e) => write!(f, "cannot start: {e}"),
        }
    }
}

/// Splits a command line on whitespace, honouring single and double quotes.
pub fn split(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in cmd.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_ascii_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where `prog` resolves: itself if it has a slash, else the first match on `$PATH`.
pub fn resolve(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| executable(p))
}

/// The process for `cmd` (and `arg` after its own arguments), as keepalived starts a script:
/// the program by its path (found on `$PATH`), or a command that is not one through
/// `/bin/sh -c` (`arg` then being the shell's `$0`); its own process group; no inherited
/// `IFS` or loader variables; standard streams closed; as `run_as`.
fn command(cmd: &str, arg: Option<&str>, run_as: Option<RunAs>) -> tokio::process::Command {
    let mut words = split(cmd);
    words.extend(arg.map(str::to_owned));
    let mut command = match words.first().and_then(|w| resolve(w)) {
        Some(prog) => {
            let mut c = tokio::process::Command::new(prog);
            c.args(&words[1..]);
            c
        }
        None => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(cmd).args(arg);
            c
        }
    };
    command
        .env_remove("IFS")
        .env_remove("LD_PRELOAD")
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some(r) = run_as {
        // Group first: once the user is not root it may no longer change its group.
        command.gid(r.gid).uid(r.uid);
    }
    command
}

/// Runs `cmd` once; returns its exit status.
pub async fn run_once(
    cmd: &str,
    timeout: Duration,
    run_as: Option<RunAs>,
) -> Result<i32, ScriptError> {
    let mut command = command(cmd, None, run_as);
    command.kill_on_drop(true);
    let mut child = command.spawn().map_err(ScriptError::Spawn)?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    match tokio::time::timeout(timeout.max(Duration::from_millis(1)), child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(c), _) => Ok(c),
                (None, Some(s)) => Err(ScriptError::Signal(s)),
                (None, None) => Err(ScriptError::Signal(0)),
            }
        }
        Ok(Err(e)) => Err(ScriptError::Spawn(e)),
        Err(_) => {
            if let Some(pg) = pgid {
                let _ = killpg(pg, Signal::SIGTERM);
                if tokio::time::timeout(Duration::from_secs(2), child.wait())
                    .await
                    .is_err()
                {
                    let _ = killpg(pg, Signal::SIGKILL);
                    let _ = child.wait().await;
                }
            }
            Err(ScriptError::TimedOut)
        }
    }
}

/// Starts `c` with `arg` after its own arguments, as its own user or `script_user`, to run as
/// long as it likes (a notify FIFO's reader: keepalived starts it with the FIFO's path and
/// never times it out). Its own process group, so that it is not killed with the daemon's
/// terminal; standard streams closed.
pub fn spawn_with_arg(
    c: &holdfast_config::model::Command,
    script_user: Option<&holdfast_config::model::UserSpec>,
    arg: &str,
) -> Result<tokio::process::Child, String> {
    let run_as = run_as(c.user.as_ref(), script_user)
        .map_err(|e| format!("{e} for script '{}' - skipping", c.cmd))?;
    command(&c.cmd, Some(arg), run_as)
        .spawn()
        .map_err(|e| format!("cannot start '{}': {e}", c.cmd))
}

/// Runs a notify-style script (notify_*, notify_up/down, quorum_up/down) as its own user or
/// `script_user`, bounded to 60 s; the error, if any, is the line to log (`what` names the
/// script in it, e.g. "notify script").
pub async fn run_notify(
    c: &holdfast_config::model::Command,
    script_user: Option<&holdfast_config::model::UserSpec>,
    what: &str,
) -> Result<(), String> {
    let run_as = run_as(c.user.as_ref(), script_user)
        .map_err(|e| format!("{e} for {what} '{}' - skipping", c.cmd))?;
    run_once(&c.cmd, Duration::from_secs(60), run_as)
        .await
        .map(drop)
        .map_err(|e| format!("{what} '{}' failed: {e}", c.cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_honours_quotes() {
        assert_eq!(
            split("/bin/echo 'a b' \"c\" d"),
            ["/bin/echo", "a b", "c", "d"]
        );
        assert_eq!(split("pidof haproxy"), ["pidof", "haproxy"]);
        assert_eq!(split("x ''"), ["x", ""]);
    }

    #[tokio::test]
    async fn exit_status_direct_and_through_the_shell() {
        assert_eq!(
            run_once("/bin/sh -c 'exit 3'", Duration::from_secs(5), None)
                .await
                .ok(),
            Some(3)
        );
        // Not a path to an executable: run by /bin/sh -c, as keepalived does.
        assert_eq!(
            run_once("exit 4", Duration::from_secs(5), None).await.ok(),
            Some(4)
        );
        assert_eq!(
            run_once("true", Duration::from_secs(5), None).await.ok(),
            Some(0)
        );
    }

    fn spec(user: &str, group: Option<&str>) -> holdfast_config::model::UserSpec {
        holdfast_config::model::UserSpec {
            user: user.into(),
            group: group.map(Into::into),
        }
    }

    #[test]
    fn run_as_prefers_the_scripts_own_user_then_script_user() {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        let root = spec("root", None);
        let own = run_as(Some(&spec("nobody", None)), Some(&root)).unwrap();
        assert_eq!(
            own,
            Some(RunAs {
                uid: nobody.uid.as_raw(),
                gid: nobody.gid.as_raw()
            })
        );
        assert_eq!(
            run_as(None, Some(&root)).unwrap(),
            Some(RunAs { uid: 0, gid: 0 })
        );
        let with_group = run_as(Some(&spec("nobody", Some("root"))), None).unwrap();
        assert_eq!(with_group.map(|r| r.gid), Some(0));
        assert!(run_as(Some(&spec("no-such-user-holdfast", None)), None).is_err());
        assert!(run_as(Some(&spec("nobody", Some("no-such-group-holdfast"))), None).is_err());
    }

    #[tokio::test]
    async fn a_script_runs_as_the_user_it_is_given() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test runs as root (it changes user)");
        }
        let nobody = run_as(Some(&spec("nobody", None)), None).unwrap();
        let uid = nobody.map(|r| r.uid).unwrap();
        let check = format!("/bin/sh -c 'test $(id -u) = {uid}'");
        assert_eq!(
            run_once(&check, Duration::from_secs(5), nobody).await.ok(),
            Some(0)
        );
        // The same check as the daemon's own user fails, so the test can tell them apart.
        assert_eq!(
            run_once(&check, Duration::from_secs(5), None).await.ok(),
            Some(1)
        );
    }

    #[tokio::test]
    async fn a_hanging_script_is_killed_with_its_process_group() {
        let start = std::time::Instant::now();
        let r = run_once(
            "/bin/sh -c 'sleep 30 & sleep 30'",
            Duration::from_millis(200),
            None,
        )
        .await;
        assert!(matches!(r, Err(ScriptError::TimedOut)), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
