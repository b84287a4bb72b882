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
}
