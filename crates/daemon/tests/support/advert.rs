//! A VRRPv2 advert as keepalived would send it, for the tests and benchmarks that craft their
//! own (hostile adverts, floods).

use holdfast_vrrp::wire::{ChecksumForm, checksum};

/// A VRRPv2 advert for `vrid` at `priority` announcing `vip`, with PASS authentication
/// `pass` and an address count of `count` (one address follows whatever it says, so a larger
/// count makes a malformed advert).
pub fn v2(vrid: u8, priority: u8, pass: &[u8], count: u8, vip: [u8; 4]) -> Vec<u8> {
    let mut m = vec![0x21, vrid, priority, count, 1, 1, 0, 0];
    m.extend_from_slice(&vip);
    let mut auth = [0u8; 8];
    auth[..pass.len()].copy_from_slice(pass);
    m.extend_from_slice(&auth);
    let c = checksum(&m, ChecksumForm::MessageOnly, None);
    m[6..8].copy_from_slice(&c.to_be_bytes());
    m
}
