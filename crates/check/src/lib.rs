//! holdfast-check: health checks with keepalived's semantics.
//!
//! With the `probes` feature, async probes bounded by a deadline run in-process without
//! forking: [`probe::tcp`] (TCP_CHECK) and [`probe::http`] (HTTP_GET: status ranges, MD5
//! digest of the body, virtual host, HTTP/1.0 or 1.1). The daemon runs them for native
//! `vrrp_script` trackers.

#[cfg(feature = "probes")]
pub mod probe;
