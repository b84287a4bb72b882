//! holdfast-lab: the failover lab (`holdfast lab`) and the namespace harness the end-to-end
//! tests share with it.

pub mod anycast;
pub mod balance;
pub mod client;
pub mod faults;
pub mod flows;
pub mod lab;
pub mod netns;
pub mod roles;
pub mod services;
