//! IPsec AH for VRRPv2 over IPv4 (`auth_type AH`), as keepalived 2.2.7 builds and checks it
//! (RFC 2402's header; RFC 2403's HMAC-MD5-96):
//!
//! - the header follows the IPv4 header: next header 112 (VRRP), payload length 4, the
//!   Security Parameters Index set to the sender's IPv4 address, a sequence number, and a
//!   12-byte Integrity Check Value;
//! - the ICV is HMAC-MD5 keyed with the 8-byte password (zero padded), truncated to 96 bits,
//!   over the IPv4 header with its mutable fields zero (TOS, fragment offset and flags,
//!   checksum; the TTL too for unicast), the AH header with a zero ICV, and the VRRP message;
//! - the VRRP message's own authentication data is zero.
//!
//! Pure functions on byte slices: the caller builds and sends the IPv4 header.

use std::net::Ipv4Addr;

use hmac::{Hmac, Mac};
use md5::Md5;

/// IP protocol number of AH.
pub const PROTO_AH: u8 = 51;
/// Length of the AH header with its 96-bit ICV.
pub const AH_LEN: usize = 24;
/// keepalived's payload length field (the header's length in 32-bit words, minus 2).
const PAYLOAD_LEN: u8 = 4;
/// The ICV's place in the header.
const ICV: std::ops::Range<usize> = 12..24;

/// The AH header for an advert from `spi` (the sender's address) with sequence number `seq`,
/// its ICV zero (see [`sign`]).
pub fn header(spi: Ipv4Addr, seq: u32) -> [u8; AH_LEN] {
    let mut h = [0u8; AH_LEN];
    h[0] = crate::wire::PROTO_VRRP;
    h[1] = PAYLOAD_LEN;
    h[4..8].copy_from_slice(&spi.octets());
    h[8..12].copy_from_slice(&seq.to_be_bytes());
    h
}

/// The ICV of `ip` (the IPv4 header as sent or received), `ah` and `vrrp`, keyed with `key`.
fn icv(key: &[u8; 8], ip: &[u8], ah: &[u8], vrrp: &[u8], unicast: bool) -> [u8; 12] {
    let mut ip = ip.to_vec();
    // Mutable in transit: TOS, flags and fragment offset, checksum; the TTL when unicast
    // (routers may decrement it).
    ip[1] = 0;
    ip[6] = 0;
    ip[7] = 0;
    ip[10] = 0;
    ip[11] = 0;
    if unicast {
        ip[8] = 0;
    }
    let mut ah = ah.to_vec();
    ah[ICV].fill(0);
    let mut mac = match Hmac::<Md5>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes a key of any length.
        Err(_) => return [0; 12],
    };
    mac.update(&ip);
    mac.update(&ah);
    mac.update(vrrp);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 12];
    out.copy_from_slice(&full[..12]);
    out
}

/// Writes the ICV of a whole packet (IPv4 header, AH header, VRRP message) into its AH header.
/// A packet too short to hold them is left as it is.
pub fn sign(key: &[u8; 8], packet: &mut [u8], unicast: bool) {
    let Some(ihl) = packet.first().map(|b| usize::from(b & 0x0f) * 4) else {
        return;
    };
    if ihl < 20 || packet.len() < ihl + AH_LEN {
        return;
    }
    let v = {
        let (ip, rest) = packet.split_at(ihl);
        let (ah, vrrp) = rest.split_at(AH_LEN);
        icv(key, ip, ah, vrrp, unicast)
    };
    packet[ihl + ICV.start..ihl + ICV.end].copy_from_slice(&v);
}

/// Why a received AH header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AhError {
    /// The ICV does not match: the password differs, or the packet was changed.
    Icv,
    /// The SPI is not the sender's address.
    Spi {
        /// The source address, as keepalived prints it (network order read as a number).
        saddr: u32,
        /// The SPI.
        spi: u32,
    },
}

/// Checks the AH header `ah` of a packet whose IPv4 header is `ip` and VRRP message `vrrp`;
/// its sequence number when the ICV and the SPI are right.
pub fn verify(
    key: &[u8; 8],
    ip: &[u8],
    ah: &[u8; AH_LEN],
    vrrp: &[u8],
    unicast: bool,
) -> Result<u32, AhError> {
    if ip.len() < 20 {
        return Err(AhError::Icv);
    }
    let want = icv(key, ip, ah, vrrp, unicast);
    // Constant-time comparison.
    let diff = want
        .iter()
        .zip(&ah[ICV])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(AhError::Icv);
    }
    if ah[4..8] != ip[12..16] {
        let n = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        return Err(AhError::Spi {
            saddr: n(&ip[12..16]),
            spi: n(&ah[4..8]),
        });
    }
    Ok(u32::from_be_bytes([ah[8], ah[9], ah[10], ah[11]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keepalived 2.2.7's first advert of `auth_type AH`, `auth_pass secret`, VRID 51,
    /// priority 150, VIP 10.9.0.100, from 10.9.0.1 (captured on a bridge).
    const CAPTURED: &str = "45c000400001000 0ff33d0ad0a090001e0000012\
        7004 0000 0a090001 00000001 30eed98b248dccb53feb4de4\
        21339601 02013c5d 0a090064 0000000000000000";

    fn captured() -> Vec<u8> {
        let hex: String = CAPTURED.chars().filter(|c| !c.is_whitespace()).collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn key(s: &str) -> [u8; 8] {
        let mut k = [0u8; 8];
        for (d, b) in k.iter_mut().zip(s.bytes()) {
            *d = b;
        }
        k
    }

    #[test]
    fn keepalived_s_advert_verifies_and_is_signed_the_same_way() {
        let p = captured();
        let (ip, rest) = p.split_at(20);
        let (ah, vrrp) = rest.split_at(AH_LEN);
        let ah: [u8; AH_LEN] = ah.try_into().unwrap();
        assert_eq!(verify(&key("secret"), ip, &ah, vrrp, false), Ok(1));
        assert_eq!(
            verify(&key("secreT"), ip, &ah, vrrp, false),
            Err(AhError::Icv)
        );
        // Signing the same packet with its ICV cleared gives keepalived's ICV back; the
        // mutable fields (here the checksum, which the kernel fills) do not count.
        let mut again = p.clone();
        again[20 + 12..20 + 24].fill(0);
        again[10] = 0;
        again[11] = 0;
        sign(&key("secret"), &mut again, false);
        assert_eq!(again[20..], p[20..]);
        // The header we build is keepalived's.
        let h = header(Ipv4Addr::new(10, 9, 0, 1), 1);
        assert_eq!(h[..12], p[20..32]);
    }

    #[test]
    fn a_changed_packet_or_a_foreign_spi_is_refused() {
        let p = captured();
        let (ip, rest) = p.split_at(20);
        let (ah, vrrp) = rest.split_at(AH_LEN);
        let ah: [u8; AH_LEN] = ah.try_into().unwrap();
        let mut prio = vrrp.to_vec();
        prio[2] = 255;
        assert_eq!(
            verify(&key("secret"), ip, &ah, &prio, false),
            Err(AhError::Icv)
        );
        // The TTL counts in multicast, not in unicast; TOS never.
        let mut ttl = ip.to_vec();
        ttl[8] = 64;
        assert_eq!(
            verify(&key("secret"), &ttl, &ah, vrrp, false),
            Err(AhError::Icv)
        );
        let mut tos = ip.to_vec();
        tos[1] = 0;
        assert_eq!(verify(&key("secret"), &tos, &ah, vrrp, false), Ok(1));
        // Another sender signing with its own address as the SPI but claiming ours.
        let mut other = p.clone();
        other[20 + 4..20 + 8].copy_from_slice(&[10, 9, 0, 2]);
        sign(&key("secret"), &mut other, false);
        let (ip2, rest2) = other.split_at(20);
        let (ah2, vrrp2) = rest2.split_at(AH_LEN);
        assert!(matches!(
            verify(&key("secret"), ip2, ah2.try_into().unwrap(), vrrp2, false),
            Err(AhError::Spi { .. })
        ));
    }
}
