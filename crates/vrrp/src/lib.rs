//! holdfast-vrrp: who holds the VIP.
//!
//! [`wire`] is the VRRPv2/v3 codec; [`ah`] IPsec AH as keepalived authenticates VRRPv2 with it;
//! [`router`] the sans-IO virtual router with keepalived 2.2's semantics; [`sync`] the sync
//! group. The crate is pure: time comes in as [`Instant`] values,
//! randomness as a seed, packets as byte slices; outputs are values for the caller to carry out.

pub mod ah;
pub mod router;
pub mod sync;
pub mod time;
pub mod wire;

pub use time::Instant;

/// Bodies of the fuzz targets, callable from ordinary tests.
pub mod fuzzing {
    use std::net::IpAddr;

    use crate::router::{Input, RouterConfig, VirtualRouter};
    use crate::time::Instant;
    use crate::wire::{AdvertRepr, ChecksumForm, Family, IpPair, Packet};

    fn split(data: &[u8]) -> (Family, IpPair, &[u8]) {
        let v6 = data.first().is_some_and(|b| b & 1 == 1);
        let ips = if v6 {
            IpPair {
                src: IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 1]),
                dst: IpAddr::from([0xff02, 0, 0, 0, 0, 0, 0, 0x12]),
            }
        } else {
            IpPair {
                src: IpAddr::from([10, 0, 0, 1]),
                dst: IpAddr::from([224, 0, 0, 18]),
            }
        };
        (
            if v6 { Family::V6 } else { Family::V4 },
            ips,
            data.get(1..).unwrap_or(&[]),
        )
    }

    /// Parsing arbitrary bytes never panics; whatever parses re-emits to an advert that parses
    /// to the same value, byte for byte unless the sender set bits the protocol tells a
    /// receiver to ignore (v2 authentication data with auth type 0, v3 reserved bits).
    pub fn vrrp_roundtrip(data: &[u8]) {
        let (family, ips, bytes) = split(data);
        let p = Packet::new_unchecked(bytes);
        if let Ok((repr, form)) = AdvertRepr::parse(&p, family, &ips) {
            assert_eq!(repr.buffer_len(), bytes.len());
            let again = repr.to_bytes(form, &ips);
            let reparsed =
                AdvertRepr::parse(&Packet::new_unchecked(&again[..]), family, &ips).map(|(r, _)| r);
            assert_eq!(
                reparsed.as_ref(),
                Ok(&repr),
                "re-emitted advert parses differently"
            );
            let ignored_bits = match repr.version {
                crate::wire::Version::V2 => {
                    repr.auth == crate::wire::Auth::None
                        && bytes[bytes.len() - 8..].iter().any(|b| *b != 0)
                }
                crate::wire::Version::V3 => bytes[4] & 0xf0 != 0,
            };
            if !ignored_bits {
                assert_eq!(again, bytes, "re-emit differs for {repr:?}");
            }
        }
    }

    /// A router fed arbitrary bytes as adverts (and time passing) never panics.
    pub fn vrrp_parse(data: &[u8]) {
        let (family, ips, bytes) = split(data);
        let vip = if family == Family::V6 {
            IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 1])
        } else {
            IpAddr::from([10, 0, 0, 100])
        };
        let mut r = VirtualRouter::new(
            RouterConfig::new(
                "F",
                bytes.get(1).copied().unwrap_or(1).max(1),
                100,
                vec![vip],
            ),
            Instant::ZERO,
            0,
        );
        let mine = if family == Family::V6 {
            IpAddr::from([0xfe80, 0, 0, 0, 0, 0, 0, 2])
        } else {
            IpAddr::from([10, 0, 0, 2])
        };
        r.handle(Instant::ZERO, Input::SourceAddr(Some(mine)));
        r.handle(Instant::ZERO, Input::Start);
        let mut now = Instant::ZERO;
        for chunk in bytes.chunks(64) {
            r.handle(
                now,
                Input::Advert {
                    src: ips.src,
                    dst: ips.dst,
                    ttl: 255,
                    payload: chunk,
                    ah: None,
                },
            );
            now = now + std::time::Duration::from_millis(700);
            r.handle_timeout(now);
            while r.poll_output().is_some() {}
        }
        let _ = ChecksumForm::PseudoHeader;
    }
}
