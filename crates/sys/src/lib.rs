//! holdfast-sys: the Linux side of holdfast. VRRP raw sockets ([`vrrp_socket`]), VIPs over
//! rtnetlink ([`vip`]), gratuitous ARP over AF_PACKET ([`garp`]), interface facts ([`iface`]).
//!
//! `unsafe` is denied crate-wide and allowed only where a system interface has no safe
//! binding (building a `sockaddr_ll`), each with a `SAFETY:` comment.

pub mod bfd_socket;
pub mod garp;
pub mod iface;
pub mod link;
pub mod mem;
pub mod proc_events;
pub mod route;
pub mod sched;
pub mod vip;
pub mod vmac;
pub mod vrrp_socket;
