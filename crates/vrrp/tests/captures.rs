//! Wire codec against advertisements captured from keepalived 2.2.7 (tests/captures/*.pcap,
//! described in the shared reference README): smoltcp's four tests per packet type —
//! deconstruct (field accessors), construct (setters give the same bytes), parse (to a Repr),
//! emit (the Repr re-emits byte for byte).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use holdfast_vrrp::wire::*;

struct Frame {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    tos: u8,
    payload: Vec<u8>,
}

/// Reads the single frame of a classic pcap file (Ethernet link type).
fn frame(name: &str) -> Frame {
    let path = format!("{}/tests/captures/{name}", env!("CARGO_MANIFEST_DIR"));
    let pcap = std::fs::read(&path).expect("capture");
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let rec = &pcap[24..];
    let caplen = u32::from_le_bytes(rec[8..12].try_into().unwrap()) as usize;
    let eth = &rec[16..16 + caplen];
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let ip = &eth[14..];
    match ethertype {
        0x0800 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let tot = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            assert_eq!(ip[9], PROTO_VRRP);
            Frame {
                src: IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
                dst: IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
                ttl: ip[8],
                tos: ip[1],
                payload: ip[ihl..tot].to_vec(),
            }
        }
        0x86dd => {
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            assert_eq!(ip[6], PROTO_VRRP);
            let a = |o: usize| {
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&ip[o..o + 16]).unwrap(),
                ))
            };
            Frame {
                src: a(8),
                dst: a(24),
                ttl: ip[7],
                tos: (u16::from_be_bytes([ip[0], ip[1]]) >> 4) as u8,
                payload: ip[40..40 + plen].to_vec(),
            }
        }
        other => panic!("unexpected ethertype {other:#x}"),
    }
}

struct Expect {
    file: &'static str,
    version: Version,
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    addrs: &'static [&'static str],
    auth: Auth,
    form: ChecksumForm,
}

const CASES: &[Expect] = &[
    Expect {
        file: "vrrp-v2-advert.pcap",
        version: Version::V2,
        vrid: 51,
        priority: 100,
        interval_cs: 100,
        addrs: &["10.99.0.100"],
        auth: Auth::None,
        form: ChecksumForm::MessageOnly,
    },
    Expect {
        file: "vrrp-v2-lb2-takeover-advert.pcap",
        version: Version::V2,
        vrid: 51,
        priority: 90,
        interval_cs: 100,
        addrs: &["10.99.0.100"],
        auth: Auth::None,
        form: ChecksumForm::MessageOnly,
    },
    Expect {
        file: "vrrp-v2-pass-advert.pcap",
        version: Version::V2,
        vrid: 51,
        priority: 255,
        interval_cs: 100,
        addrs: &["10.99.1.100"],
        auth: Auth::Pass(*b"1234\0\0\0\0"),
        form: ChecksumForm::MessageOnly,
    },
    Expect {
        file: "vrrp-v2-prio0.pcap",
        version: Version::V2,
        vrid: 51,
        priority: 0,
        interval_cs: 100,
        addrs: &["10.99.0.100"],
        auth: Auth::None,
        form: ChecksumForm::MessageOnly,
    },
    Expect {
        file: "vrrp-v3-advert.pcap",
        version: Version::V3,
        vrid: 51,
        priority: 100,
        interval_cs: 10,
        addrs: &["10.99.0.100"],
        auth: Auth::None,
        form: ChecksumForm::PseudoHeader,
    },
    Expect {
        file: "vrrp-v3-lb2-takeover-advert.pcap",
        version: Version::V3,
        vrid: 51,
        priority: 90,
        interval_cs: 10,
        addrs: &["10.99.0.100"],
        auth: Auth::None,
        form: ChecksumForm::PseudoHeader,
    },
    Expect {
        file: "vrrp-v3-prio0.pcap",
        version: Version::V3,
        vrid: 51,
        priority: 0,
        interval_cs: 10,
        addrs: &["10.99.0.100"],
        auth: Auth::None,
        form: ChecksumForm::PseudoHeader,
    },
    Expect {
        file: "vrrp-v3-unicast-advert.pcap",
        version: Version::V3,
        vrid: 53,
        priority: 255,
        interval_cs: 10,
        addrs: &["10.99.1.101"],
        auth: Auth::None,
        form: ChecksumForm::PseudoHeader,
    },
    Expect {
        file: "vrrp-v3-ipv6-advert.pcap",
        version: Version::V3,
        vrid: 52,
        priority: 255,
        interval_cs: 10,
        addrs: &["fd99::100"],
        auth: Auth::None,
        form: ChecksumForm::PseudoHeader,
    },
];

fn ctx(f: &Frame) -> (Family, IpPair) {
    (
        Family::of(f.src),
        IpPair {
            src: f.src,
            dst: f.dst,
        },
    )
}

#[test]
fn captured_frames_are_sent_with_ttl_255_and_tos_c0() {
    for c in CASES {
        let f = frame(c.file);
        assert_eq!((f.ttl, f.tos), (255, 0xc0), "{}", c.file);
    }
}

#[test]
fn deconstruct_captured_packets() {
    for c in CASES {
        let f = frame(c.file);
        let (family, _) = ctx(&f);
        let p = Packet::new_checked(&f.payload[..], family).expect(c.file);
        assert_eq!(p.version(), c.version.number(), "{}", c.file);
        assert_eq!(p.kind(), 1);
        assert_eq!(p.vrid(), c.vrid);
        assert_eq!(p.priority(), c.priority);
        assert_eq!(p.count() as usize, c.addrs.len());
        match c.version {
            Version::V2 => {
                assert_eq!(u16::from(p.adver_int_secs()) * 100, c.interval_cs);
                assert_eq!(p.auth_type(), c.auth.type_number());
            }
            Version::V3 => assert_eq!(p.max_adver_int_cs(), c.interval_cs),
        }
    }
}

#[test]
fn construct_captured_packets_with_setters() {
    for c in CASES {
        let f = frame(c.file);
        let (family, ips) = ctx(&f);
        let mut buf = vec![0u8; f.payload.len()];
        buf[4..6].copy_from_slice(&f.payload[4..6]);
        buf[8..].copy_from_slice(&f.payload[8..]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version_kind(c.version.number(), 1);
        p.set_vrid(c.vrid);
        p.set_priority(c.priority);
        p.set_count(c.addrs.len() as u8);
        p.fill_checksum(c.form, &ips);
        assert_eq!(buf, f.payload, "{}", c.file);
        let _ = family;
    }
}

#[test]
fn parse_captured_packets() {
    for c in CASES {
        let f = frame(c.file);
        let (family, ips) = ctx(&f);
        let p = Packet::new_checked(&f.payload[..], family).unwrap();
        let (repr, form) = AdvertRepr::parse(&p, family, &ips).expect(c.file);
        let addrs: Vec<IpAddr> = c.addrs.iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(
            repr,
            AdvertRepr {
                version: c.version,
                vrid: c.vrid,
                priority: c.priority,
                interval_cs: c.interval_cs,
                addrs,
                auth: c.auth
            },
            "{}",
            c.file
        );
        assert_eq!(form, c.form, "{}", c.file);
    }
}

#[test]
fn emit_reproduces_captured_packets_byte_for_byte() {
    for c in CASES {
        let f = frame(c.file);
        let (family, ips) = ctx(&f);
        let (repr, form) =
            AdvertRepr::parse(&Packet::new_unchecked(&f.payload[..]), family, &ips).unwrap();
        assert_eq!(repr.buffer_len(), f.payload.len());
        assert_eq!(repr.to_bytes(form, &ips), f.payload, "{}", c.file);
    }
}

#[test]
fn v3_ipv4_message_only_checksum_is_accepted_and_recognised() {
    let f = frame("vrrp-v3-advert.pcap");
    let (family, ips) = ctx(&f);
    let (repr, _) =
        AdvertRepr::parse(&Packet::new_unchecked(&f.payload[..]), family, &ips).unwrap();
    let bytes = repr.to_bytes(ChecksumForm::MessageOnly, &ips);
    assert_ne!(bytes, f.payload);
    let (again, form) =
        AdvertRepr::parse(&Packet::new_unchecked(&bytes[..]), family, &ips).unwrap();
    assert_eq!((again, form), (repr, ChecksumForm::MessageOnly));
}

#[test]
fn damaged_packets_are_rejected_with_a_reason() {
    let f = frame("vrrp-v2-advert.pcap");
    let (family, ips) = ctx(&f);
    let mut bad = f.payload.clone();
    bad[7] ^= 1;
    assert_eq!(
        AdvertRepr::parse(&Packet::new_unchecked(&bad[..]), family, &ips),
        Err(WireError::Checksum)
    );
    assert_eq!(
        Packet::new_checked(&f.payload[..10], family).err(),
        Some(WireError::Truncated)
    );
    let mut long = f.payload.clone();
    long.push(0);
    assert_eq!(
        Packet::new_checked(&long[..], family).err(),
        Some(WireError::TooLong)
    );
    let mut ty = f.payload.clone();
    ty[0] = 0x22;
    assert_eq!(
        AdvertRepr::parse(&Packet::new_unchecked(&ty[..]), family, &ips),
        Err(WireError::Type(2))
    );
    let mut ver = f.payload.clone();
    ver[0] = 0x41;
    assert_eq!(
        Packet::new_checked(&ver[..], family).err(),
        Some(WireError::Version(4))
    );
    let v6 = IpPair {
        src: "fe80::1".parse().unwrap(),
        dst: "ff02::12".parse().unwrap(),
    };
    assert_eq!(
        AdvertRepr::parse(&Packet::new_unchecked(&f.payload[..]), Family::V6, &v6),
        Err(WireError::Family)
    );
}
