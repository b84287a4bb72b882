//! What the daemon's parts share while it runs, made once by `run` and handed to the parts
//! that need it: the alert channels of the running configuration (mail, notify FIFOs), the
//! health cells the metrics endpoint reads, and the BFD sessions `track_bfd` follows. None of
//! it is a process-wide static: a test makes its own.

/// The shared services.
#[derive(Default)]
pub struct Services {
    /// SMTP alerts.
    pub mail: crate::mail::Outbox,
    /// Notify FIFOs.
    pub fifo: crate::fifo::Notifier,
    /// Checkers' and trackers' state and latency, for `/metrics`.
    pub health: crate::health::Registry,
    /// `bfd_instance` sessions' states.
    pub bfd: std::sync::Arc<crate::bfd::Sessions>,
    /// Each virtual server's quorum, for the `bgp_announce` blocks that track it.
    pub quorums: Quorums,
}

/// Each virtual server's quorum state by keepalived's name for it, published by the virtual
/// server's task and followed by announcements. It outlives reloads: a virtual server that
/// keeps its quorum through one is not seen to lose it.
#[derive(Default)]
pub struct Quorums(std::sync::Mutex<std::collections::HashMap<String, QuorumCell>>);

type QuorumCell = tokio::sync::watch::Sender<Option<bool>>;

impl Quorums {
    fn cell<T>(&self, vs: &str, f: impl FnOnce(&QuorumCell) -> T) -> Option<T> {
        let mut m = self.0.lock().ok()?;
        let cell = m
            .entry(vs.to_string())
            .or_insert_with(|| tokio::sync::watch::Sender::new(None));
        Some(f(cell))
    }

    /// Virtual server `vs` has (`true`) or has not its quorum.
    pub fn set(&self, vs: &str, up: bool) {
        self.cell(vs, |c| {
            c.send_if_modified(|v| {
                let changed = *v != Some(up);
                *v = Some(up);
                changed
            })
        });
    }

    /// Follows `vs`'s quorum (`None` until its task has started).
    pub fn watch(&self, vs: &str) -> tokio::sync::watch::Receiver<Option<bool>> {
        self.cell(vs, QuorumCell::subscribe)
            .unwrap_or_else(|| tokio::sync::watch::Sender::new(None).subscribe())
    }
}
