//! holdfast-lb: load balancing without IO. [`service::Service`] keeps a virtual service's
//! real servers, weights, health, quorum and sorry server as keepalived does and yields the
//! table a data plane must hold; [`sched::Scheduler`] picks a server for a new connection the
//! way the Linux IPVS scheduler of the same name does; [`announce::Gate`] says whether a
//! `bgp_announce` block's prefixes are announced.

pub mod announce;
pub mod health;
pub mod sched;
pub mod service;
