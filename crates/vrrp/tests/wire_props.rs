//! Property tests for the wire codec: emit→parse round trip for every version and family,
//! parse never panics, and the router survives arbitrary adverts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use holdfast_vrrp::fuzzing::{vrrp_parse, vrrp_roundtrip};
use holdfast_vrrp::wire::*;
use proptest::prelude::*;

fn repr() -> impl Strategy<Value = (AdvertRepr, ChecksumForm)> {
    let v2 = (
        1u8..=255,
        any::<u8>(),
        1u16..=255,
        proptest::collection::vec(any::<u32>(), 0..20),
        any::<[u8; 8]>(),
        0u8..3,
    )
        .prop_map(|(vrid, priority, secs, addrs, pass, at)| {
            let auth = match at {
                0 => Auth::None,
                1 => Auth::Pass(pass),
                // AH's key signs the AH header; the message carries zeros (as keepalived's).
                _ => Auth::Ah([0; 8]),
            };
            let addrs = addrs
                .into_iter()
                .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                .collect();
            (
                AdvertRepr {
                    version: Version::V2,
                    vrid,
                    priority,
                    interval_cs: secs * 100,
                    addrs,
                    auth,
                },
                ChecksumForm::MessageOnly,
            )
        });
    let v3v4 = (
        1u8..=255,
        any::<u8>(),
        1u16..=4095,
        proptest::collection::vec(any::<u32>(), 0..20),
        any::<bool>(),
    )
        .prop_map(|(vrid, priority, cs, addrs, pseudo)| {
            let addrs = addrs
                .into_iter()
                .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                .collect();
            let form = if pseudo {
                ChecksumForm::PseudoHeader
            } else {
                ChecksumForm::MessageOnly
            };
            (
                AdvertRepr {
                    version: Version::V3,
                    vrid,
                    priority,
                    interval_cs: cs,
                    addrs,
                    auth: Auth::None,
                },
                form,
            )
        });
    let v3v6 = (
        1u8..=255,
        any::<u8>(),
        1u16..=4095,
        proptest::collection::vec(any::<u128>(), 1..10),
    )
        .prop_map(|(vrid, priority, cs, addrs)| {
            let addrs = addrs
                .into_iter()
                .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                .collect();
            (
                AdvertRepr {
                    version: Version::V3,
                    vrid,
                    priority,
                    interval_cs: cs,
                    addrs,
                    auth: Auth::None,
                },
                ChecksumForm::PseudoHeader,
            )
        });
    prop_oneof![v2, v3v4, v3v6]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn emit_then_parse_gives_the_same_advert((r, form) in repr(), src in any::<u32>(), dst in any::<u32>()) {
        let ips = match r.family() {
            Family::V4 => IpPair { src: IpAddr::V4(src.into()), dst: IpAddr::V4(dst.into()) },
            Family::V6 => IpPair { src: IpAddr::V6(Ipv6Addr::from(u128::from(src))), dst: IpAddr::V6(MCAST_V6) },
        };
        let bytes = r.to_bytes(form, &ips);
        prop_assert_eq!(bytes.len(), r.buffer_len());
        let p = Packet::new_checked(&bytes[..], r.family()).expect("length");
        let (back, got_form) = AdvertRepr::parse(&p, r.family(), &ips).expect("parse");
        prop_assert_eq!(back, r.clone());
        // A message-only v3/IPv4 checksum can coincide with the pseudo-header one only by chance.
        if r.version == Version::V3 && r.family() == Family::V4 && form == ChecksumForm::MessageOnly {
            prop_assert!(got_form == form || checksum(&bytes, ChecksumForm::PseudoHeader, Some(&ips)) == checksum(&bytes, ChecksumForm::MessageOnly, Some(&ips)));
        } else {
            prop_assert_eq!(got_form, form);
        }
        vrrp_roundtrip(&[u8::from(r.family() == Family::V6)].iter().copied().chain(bytes.iter().copied()).collect::<Vec<_>>());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_codec_or_the_router(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        vrrp_roundtrip(&data);
        vrrp_parse(&data);
    }
}
