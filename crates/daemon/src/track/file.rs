//! `track_file`: a number in a file, watched with inotify (no polling). keepalived reads it
//! with `strtol`: leading whitespace, an optional sign, digits; anything else reads as 0.

use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::mpsc;

use super::TrackEv;
use crate::logging::Logger;

/// The value keepalived reads from `text`.
pub fn parse_value(text: &str) -> i64 {
    let t = text.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let v: i64 = digits[..end].parse().unwrap_or(0);
    if neg { -v } else { v }
}

fn read(path: &Path) -> i64 {
    std::fs::read_to_string(path)
        .map(|t| parse_value(&t))
        .unwrap_or(0)
}

/// Watches `path` and reports every change of its value to tracker `index`.
pub async fn watch(
    index: usize,
    path: PathBuf,
    init: Option<(i64, bool)>,
    tx: mpsc::Sender<TrackEv>,
    log: Logger,
) {
    if let Some((value, overwrite)) = init
        && (overwrite || !path.exists())
        && let Err(e) = std::fs::write(&path, format!("{value}\n"))
    {
        log.vrrp(&format!(
            "cannot initialise track file {}: {e}",
            path.display()
        ));
    }
    // The directory is watched, so a file that is replaced (written elsewhere and renamed)
    // or created later is seen too. The watch is in place before the first read, so no
    // change can fall between the two.
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path.file_name().map(|n| n.to_os_string());
    let result = tokio::task::spawn_blocking(move || -> nix::Result<()> {
        let ino = Inotify::init(InitFlags::IN_CLOEXEC)?;
        ino.add_watch(
            &dir,
            AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE,
        )?;
        let first = read(&path);
        if tx.blocking_send(TrackEv::Value(index, first)).is_err() {
            return Ok(());
        }
        let mut last = Some(first);
        loop {
            let events = ino.read_events()?;
            if events.iter().any(|e| e.name.as_ref() == name.as_ref()) {
                let v = read(&path);
                if last != Some(v) {
                    last = Some(v);
                    if tx.blocking_send(TrackEv::Value(index, v)).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    })
    .await;
    if let Ok(Err(e)) = result {
        log.vrrp(&format!("track file watch failed: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_like_strtol() {
        assert_eq!(parse_value("5\n"), 5);
        assert_eq!(parse_value("  -12abc"), -12);
        assert_eq!(parse_value("+3"), 3);
        assert_eq!(parse_value("x"), 0);
        assert_eq!(parse_value(""), 0);
    }
}
