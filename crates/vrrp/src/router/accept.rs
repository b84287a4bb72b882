//! Whether a received advertisement is accepted: keepalived's `vrrp_check_packet` checks in
//! its order (reference/keepalived.md §2.6), each refusal a typed [`Rejection`] that names its
//! counter and prints keepalived's line.

use std::fmt;
use std::net::IpAddr;

use super::RouterConfig;
use super::log::Drop;
use crate::wire::{AdvertRepr, Auth, ChecksumForm, Family, HEADER_LEN, IpPair, Packet, Version};
use crate::wire::{PROTO_VRRP, WireError};

/// Why an advertisement was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// An AH header without `auth_type AH` (`received`), or none with it.
    AhPresence {
        /// Whether the packet had an AH header.
        received: bool,
    },
    /// Shorter than a VRRP header.
    TooShort,
    /// Another VRID: a demultiplexing error upstream, counted and not logged.
    OtherVrid,
    /// Another VRRP version.
    Version {
        /// The packet's.
        received: u8,
        /// Ours.
        expected: u8,
    },
    /// The length does not fit the address count.
    Length {
        /// The packet's.
        len: usize,
        /// What its address count makes it.
        expected: usize,
    },
    /// Multicast with a TTL / hop limit other than 255.
    Ttl {
        /// The packet's.
        received: u8,
    },
    /// Unicast with a TTL outside the peer's `min_ttl`..`max_ttl`.
    TtlRange {
        /// The packet's.
        received: u8,
        /// `min_ttl`.
        min: u8,
        /// `max_ttl`.
        max: u8,
    },
    /// VRRPv2 authentication type above 2.
    InvalidAuthType(u8),
    /// VRRPv2 authentication type other than ours.
    AuthTypeMismatch {
        /// The packet's.
        received: u8,
        /// Ours.
        expected: u8,
    },
    /// `auth_type PASS` with another password.
    Password,
    /// An AH header for another protocol: not ours, neither counted nor logged.
    AhOtherProtocol,
    /// `auth_type AH`: the ICV does not verify.
    AhIcv,
    /// `auth_type AH`: the SPI is not the source address.
    AhSpi {
        /// The source address, as a number.
        saddr: u32,
        /// The packet's SPI.
        spi: u32,
    },
    /// `auth_type AH`: a sequence number already seen.
    AhReplay {
        /// The packet's.
        seq: u32,
        /// The last one accepted.
        local: u32,
    },
    /// VRRPv2 advert interval other than ours.
    Interval {
        /// Ours, in seconds.
        ours: u64,
        /// The packet's, in seconds.
        received: u8,
    },
    /// Not an advertisement.
    Type,
    /// The checksum does not verify (in either of VRRPv3-over-IPv4's forms).
    Checksum(Version),
    /// Multicast where unicast was expected, or the reverse.
    Addressing {
        /// Whether unicast was expected.
        unicast: bool,
    },
    /// Another number of addresses (keepalived 2.2 refuses it).
    AddressCount {
        /// The packet's.
        received: usize,
        /// Ours.
        expected: usize,
    },
    /// One of our addresses missing from the packet (keepalived 2.2 refuses it).
    AddressMissing {
        /// The instance's VRID.
        vrid: u8,
        /// The address.
        addr: IpAddr,
    },
    /// A unicast source that is not a configured peer.
    NotPeer(IpAddr),
}

impl Rejection {
    /// The counter it bumps, if any.
    pub fn counter(&self) -> Option<Drop> {
        Some(match self {
            Rejection::AhPresence { .. } | Rejection::AuthTypeMismatch { .. } => {
                Drop::AuthTypeMismatch
            }
            Rejection::TooShort | Rejection::Length { .. } => Drop::Length,
            Rejection::OtherVrid => Drop::Vrid,
            Rejection::Version { .. } => Drop::Version,
            Rejection::Ttl { .. } | Rejection::TtlRange { .. } => Drop::Ttl,
            Rejection::InvalidAuthType(_) => Drop::InvalidAuthType,
            Rejection::Password
            | Rejection::AhIcv
            | Rejection::AhSpi { .. }
            | Rejection::AhReplay { .. } => Drop::AuthFailure,
            Rejection::AhOtherProtocol => return None,
            Rejection::Interval { .. } => Drop::Interval,
            Rejection::Type => Drop::Type,
            Rejection::Checksum(_) => Drop::Checksum,
            Rejection::Addressing { .. } => Drop::Addressing,
            Rejection::AddressCount { .. } => Drop::AddressCount,
            Rejection::AddressMissing { .. } => Drop::AddressList,
            Rejection::NotPeer(_) => Drop::NotPeer,
        })
    }

    /// Whether keepalived logs it (it says nothing of another VRID or another protocol's AH).
    pub fn logged(&self) -> bool {
        !matches!(self, Rejection::OtherVrid | Rejection::AhOtherProtocol)
    }

    /// Whether keepalived's line names the instance (its AH SPI line does not).
    pub fn names_instance(&self) -> bool {
        !matches!(self, Rejection::AhSpi { .. })
    }
}

/// keepalived's line for the refusal, without the instance's name.
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::AhPresence { received: true } => {
                f.write_str("Received AH header but auth type not AH")
            }
            Rejection::AhPresence { received: false } => {
                f.write_str("No AH header but auth type is AH")
            }
            Rejection::TooShort => f.write_str("IPv4 VRRP packet too short"),
            Rejection::OtherVrid => f.write_str("another VRID"),
            Rejection::Version { received, expected } => write!(
                f,
                "wrong version. Received {received} and expect {expected}"
            ),
            Rejection::Length { len, expected } => write!(
                f,
                "vrrp packet too short/long, length {len} and expect {expected}"
            ),
            Rejection::Ttl { received } => {
                write!(f, "invalid TTL/HL. Received {received} and expect 255")
            }
            Rejection::TtlRange { received, min, max } => {
                write!(f, "TTL/HL {received} not in range {min} - {max}")
            }
            Rejection::InvalidAuthType(t) => write!(f, "Invalid auth type: {t}"),
            Rejection::AuthTypeMismatch { received, expected } => {
                write!(f, "received a {received} auth, expecting {expected}!")
            }
            Rejection::Password => f.write_str("received an invalid passwd!"),
            Rejection::AhOtherProtocol => f.write_str("AH header for another protocol"),
            Rejection::AhIcv => f.write_str(
                "IPSEC-AH : invalid IPSEC HMAC-MD5 value. Due to fields mutation or bad password !",
            ),
            Rejection::AhSpi { saddr, spi } => write!(
                f,
                "IPSEC AH : invalid IPSEC SPI value. {saddr} and expect {spi}"
            ),
            Rejection::AhReplay { seq, local } => write!(
                f,
                "IPSEC-AH : sequence number {seq} already processed. Packet dropped. Local({local})"
            ),
            Rejection::Interval { ours, received } => write!(
                f,
                "advertisement interval mismatch mine={ours} sec rcv'd={received} sec"
            ),
            Rejection::Type => f.write_str("Invalid packet type"),
            Rejection::Checksum(v) => write!(f, "Invalid VRRPv{} checksum", v.number()),
            Rejection::Addressing { unicast: true } => {
                f.write_str("Expected unicast packet but received multicast packet")
            }
            Rejection::Addressing { unicast: false } => {
                f.write_str("Expected multicast packet but received unicast packet")
            }
            Rejection::AddressCount { received, expected } => write!(
                f,
                "received an unexpected ip number count {received}, expected {expected}!"
            ),
            Rejection::AddressMissing { vrid, addr } => write!(
                f,
                "ip address associated with VRID {vrid} not present in MASTER advert: {addr}"
            ),
            Rejection::NotPeer(src) => {
                write!(f, "unicast source address {src} not a unicast peer")
            }
        }
    }
}

/// A received advertisement, as [`accept`] sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Received<'a> {
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) ttl: u8,
    pub(super) payload: &'a [u8],
    pub(super) ah: Option<super::AhPart<'a>>,
}

/// What an accepted advertisement says, and the checksum form its sender uses.
pub(super) struct Accepted {
    pub(super) advert: AdvertRepr,
    pub(super) form: ChecksumForm,
}

/// The outcome of [`accept`].
pub(super) struct Verdict {
    /// `auth_type AH`: the sequence number of an AH header that verified, which the router
    /// takes as its own even if a later check refuses the advertisement (as keepalived does).
    pub(super) ah_seq: Option<u32>,
    pub(super) result: Result<Accepted, Rejection>,
}

/// Checks `rx` for the router configured as `cfg`, whose last AH sequence number is
/// `ah_seq` and whose master is `master` (for `skip_check_adv_addr`).
pub(super) fn accept(
    cfg: &RouterConfig,
    rx: &Received<'_>,
    ah_seq: u32,
    master: Option<IpAddr>,
) -> Verdict {
    let mut seq = None;
    let result = check(cfg, rx, ah_seq, master, &mut seq);
    Verdict {
        ah_seq: seq,
        result,
    }
}

fn check(
    cfg: &RouterConfig,
    rx: &Received<'_>,
    ah_seq: u32,
    master: Option<IpAddr>,
    verified_seq: &mut Option<u32>,
) -> Result<Accepted, Rejection> {
    let family = cfg.family;
    let unicast = !cfg.unicast_peers.is_empty();
    let ah_key = match cfg.auth {
        Auth::Ah(k) if family == Family::V4 => Some(k),
        _ => None,
    };
    let payload = rx.payload;
    if rx.ah.is_some() != ah_key.is_some() {
        return Err(Rejection::AhPresence {
            received: rx.ah.is_some(),
        });
    }
    if payload.len() < HEADER_LEN {
        return Err(Rejection::TooShort);
    }
    let p = Packet::new_unchecked(payload);
    if p.vrid() != cfg.vrid {
        return Err(Rejection::OtherVrid);
    }
    let expected_version = cfg.version.number();
    if let Err(e) = p.check_len(family) {
        return Err(match e {
            WireError::Version(v) => Rejection::Version {
                received: v,
                expected: expected_version,
            },
            _ => Rejection::Length {
                len: payload.len(),
                expected: match cfg.version {
                    Version::V2 => HEADER_LEN + 4 * usize::from(p.count()) + 8,
                    Version::V3 => HEADER_LEN + family_len(family) * usize::from(p.count()),
                },
            },
        });
    }
    // TTL: multicast must be 255; unicast only checked against min/max_ttl.
    if !unicast {
        if rx.ttl != 255 {
            return Err(Rejection::Ttl { received: rx.ttl });
        }
    } else if let Some(peer) = cfg.unicast_peers.iter().find(|p| p.addr == rx.src) {
        let (min, max) = (peer.min_ttl.unwrap_or(0), peer.max_ttl.unwrap_or(255));
        if rx.ttl < min || rx.ttl > max {
            return Err(Rejection::TtlRange {
                received: rx.ttl,
                min,
                max,
            });
        }
    }
    if p.version() != expected_version {
        return Err(Rejection::Version {
            received: p.version(),
            expected: expected_version,
        });
    }
    if cfg.version == Version::V2 {
        let t = p.auth_type();
        if t > 2 {
            return Err(Rejection::InvalidAuthType(t));
        }
        if t != cfg.auth.type_number() {
            return Err(Rejection::AuthTypeMismatch {
                received: t,
                expected: cfg.auth.type_number(),
            });
        }
        if let Auth::Pass(ours) = cfg.auth {
            // Constant-time comparison.
            let diff = ours
                .iter()
                .zip(p.auth_data())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff != 0 {
                return Err(Rejection::Password);
            }
        }
        if let (Some(key), Some(ah)) = (ah_key, rx.ah) {
            if ah.ah[0] != PROTO_VRRP {
                return Err(Rejection::AhOtherProtocol);
            }
            match crate::ah::verify(&key, ah.ip_header, ah.ah, payload, unicast) {
                Err(crate::ah::AhError::Icv) => return Err(Rejection::AhIcv),
                Err(crate::ah::AhError::Spi { saddr, spi }) => {
                    return Err(Rejection::AhSpi { saddr, spi });
                }
                Ok(seq) if seq > ah_seq => *verified_seq = Some(seq),
                Ok(seq) => {
                    return Err(Rejection::AhReplay { seq, local: ah_seq });
                }
            }
        }
        let ours = cfg.advert_int.as_secs();
        if u64::from(p.adver_int_secs()) != ours {
            return Err(Rejection::Interval {
                ours,
                received: p.adver_int_secs(),
            });
        }
    }
    if p.kind() != 1 {
        return Err(Rejection::Type);
    }
    let ips = IpPair {
        src: rx.src,
        dst: rx.dst,
    };
    let Some(form) = p.verify_checksum(family, &ips) else {
        return Err(Rejection::Checksum(cfg.version));
    };
    if rx.dst.is_multicast() == unicast {
        return Err(Rejection::Addressing { unicast });
    }
    let Ok((advert, _)) = AdvertRepr::parse(&p, family, &ips) else {
        return Err(Rejection::Checksum(cfg.version));
    };
    // keepalived 2.2 refuses adverts whose VIP count or list differs.
    if advert.addrs.len() != cfg.vips.len() {
        return Err(Rejection::AddressCount {
            received: advert.addrs.len(),
            expected: cfg.vips.len(),
        });
    }
    let same_master = master == Some(rx.src);
    if !(cfg.skip_check_adv_addr && same_master)
        && let Some(missing) = cfg.vips.iter().find(|v| !advert.addrs.contains(v))
    {
        return Err(Rejection::AddressMissing {
            vrid: cfg.vrid,
            addr: *missing,
        });
    }
    let peer_check = cfg.check_unicast_src
        || cfg
            .unicast_peers
            .iter()
            .any(|p| p.min_ttl.is_some() || p.max_ttl.is_some());
    if unicast && peer_check && !cfg.unicast_peers.iter().any(|p| p.addr == rx.src) {
        return Err(Rejection::NotPeer(rx.src));
    }
    Ok(Accepted { advert, form })
}

fn family_len(f: Family) -> usize {
    match f {
        Family::V4 => 4,
        Family::V6 => 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(cfg: &RouterConfig, priority: u8, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        AdvertRepr {
            version: cfg.version,
            vrid: cfg.vrid,
            priority,
            interval_cs: 100,
            addrs: cfg.vips.clone(),
            auth: Auth::None,
        }
        .to_bytes(ChecksumForm::PseudoHeader, &IpPair { src, dst })
    }

    #[test]
    fn each_refusal_is_typed_counted_and_worded() {
        let mut cfg = RouterConfig::new("VI_1", 51, 100, vec!["10.0.0.100".parse().unwrap()]);
        cfg.version = Version::V3;
        let (src, dst) = ("10.0.0.2".parse().unwrap(), cfg.mcast_group);
        let bytes = advert(&cfg, 120, src, dst);
        let rx = |ttl, payload| Received {
            src,
            dst,
            ttl,
            payload,
            ah: None,
        };
        let ok = accept(&cfg, &rx(255, &bytes), 0, None);
        assert_eq!(ok.result.map(|a| a.advert.priority).ok(), Some(120));

        let why = accept(&cfg, &rx(64, &bytes), 0, None).result.err();
        assert_eq!(why, Some(Rejection::Ttl { received: 64 }));
        let why = why.unwrap_or(Rejection::Type);
        assert_eq!(why.counter(), Some(Drop::Ttl));
        assert_eq!(
            why.to_string(),
            "invalid TTL/HL. Received 64 and expect 255"
        );

        let mut other = bytes.clone();
        other[1] = 52;
        let why = accept(&cfg, &rx(255, &other), 0, None).result.err();
        assert_eq!(why, Some(Rejection::OtherVrid));
        assert!(!Rejection::OtherVrid.logged());

        let mut corrupt = bytes.clone();
        corrupt[2] ^= 1;
        let why = accept(&cfg, &rx(255, &corrupt), 0, None).result.err();
        assert_eq!(why, Some(Rejection::Checksum(Version::V3)));
    }
}
