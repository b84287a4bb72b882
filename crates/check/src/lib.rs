//! holdfast-check: health checks with keepalived's semantics.
//!
//! The core, [`state::CheckerState`], is pure: it decides when a probe is due and what its
//! result changes (retry, delay_before_retry, delay_loop, warmup, alpha, rise). With the
//! `probes` feature, async probes bounded by a deadline run in-process without forking:
//! [`probe::tcp`] (TCP_CHECK) and [`probe::http`] (HTTP_GET: status ranges, MD5 digest of the
//! body, virtual host, HTTP/1.0 or 1.1).

pub mod bfd;
pub mod state;

#[cfg(feature = "probes")]
pub mod probe;
