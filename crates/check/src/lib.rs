//! holdfast-check: health checks with keepalived's semantics.
//!
//! The core, [`state::CheckerState`], is pure: it decides when a probe is due and what its
//! result changes (retry, delay_before_retry, delay_loop, warmup, alpha, rise). [`words`]
//! holds keepalived's wording for each kind of checker (log lines, mail bodies), and [`bfd`]
//! the BFD session. With the `probes` feature, [`probe::Probe`] is every network checker
//! (TCP, HTTP/SSL, UDP, ICMP, SMTP, DNS, MySQL) as one value that a [`probe::Session`] runs
//! in-process, bounded by its timeout, without forking.

pub mod bfd;
pub mod file;
pub mod process;
pub mod state;
pub mod words;

#[cfg(feature = "probes")]
pub mod probe;
