//! holdfast-vrrp: who holds the VIP.
//!
//! [`wire`] is the VRRPv2/v3 codec; [`router`] the sans-IO virtual router with keepalived 2.2's
//! semantics; [`sync`] the sync group. The crate is pure: time comes in as [`Instant`] values,
//! randomness as a seed, packets as byte slices; outputs are values for the caller to carry out.

pub mod router;
pub mod sync;
pub mod time;
pub mod wire;

pub use time::Instant;
