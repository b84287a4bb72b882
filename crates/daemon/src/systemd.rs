//! systemd's readiness protocol (`Type=notify`): READY when the instances and virtual servers
//! are running, RELOADING (with the monotonic time systemd asks for) and READY again around a
//! SIGHUP reload, STOPPING at shutdown, and a STATUS line. Without `NOTIFY_SOCKET` (not under
//! systemd) each call does nothing.

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    // Not under systemd, or systemd gone: nothing to tell.
    let _ = sd_notify::notify(states);
}

/// Running: `status` describes what.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}
