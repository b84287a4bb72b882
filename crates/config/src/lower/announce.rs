//! `bgp_announce NAME { … }` (holdfast extension): prefixes a BGP speaker announces while what
//! they track is healthy.

use std::net::IpAddr;
use std::str::FromStr;

use super::{Cx, origin, track};
use crate::model::{Announce, Protocol, Tracking, VsKey};
use crate::tree::Node;

/// The well-known communities FRR's `set community` takes by name.
const WELL_KNOWN: &[&str] = &[
    "no-export",
    "no-advertise",
    "local-AS",
    "no-peer",
    "blackhole",
    "graceful-shutdown",
    "accept-own",
];

pub(super) fn announce(cx: &mut Cx<'_>, n: &Node, before: &[Announce]) -> Option<Announce> {
    let name = cx.name(n)?;
    if before.iter().any(|a| a.name == name) {
        cx.d.invalid(
            n.line_span(),
            format!("bgp_announce {name} already defined - ignoring"),
        );
        return None;
    }
    let mut a = Announce {
        name,
        prefixes: Vec::new(),
        table: None,
        virtual_servers: Vec::new(),
        track: Tracking::default(),
        communities: Vec::new(),
        med: None,
        next_hops: Vec::new(),
        origin: origin(n),
    };
    for c in cx.block(n) {
        if matches!(
            c.key.text.as_str(),
            "track_interface" | "track_script" | "track_file" | "track_process"
        ) {
            track::tracking_key(cx, c, &mut a.track);
            continue;
        }
        cx.no_block(c);
        match c.key.text.as_str() {
            "prefix" => {
                if let Some(w) = cx.arg(c, 0)
                    && let Some((addr, len)) = prefix(&w.text)
                {
                    a.prefixes.push((addr, len, origin(c)));
                } else if let Some(w) = c.args.first() {
                    cx.d.invalid(w.span, format!("bgp_announce: invalid prefix '{}'", w.text));
                }
            }
            "table" => {
                if let Some(t) = cx.int(c, 0, 1, 252) {
                    a.table = Some(t as u32);
                }
            }
            "track_virtual_server" => {
                if let Some(t) = virtual_server(cx, c) {
                    a.virtual_servers.push((t.0, t.1, origin(c)));
                }
            }
            "community" => {
                if c.args.is_empty() {
                    cx.arg(c, 0);
                }
                for w in &c.args {
                    if community(&w.text) {
                        a.communities.push(w.text.clone());
                    } else {
                        cx.d.invalid(
                            w.span,
                            format!(
                                "bgp_announce: invalid community '{}' (AA:NN, A:B:C or one of {})",
                                w.text,
                                WELL_KNOWN.join(", ")
                            ),
                        );
                    }
                }
            }
            "med" => {
                if let Some(v) = cx.int(c, 0, 0, i64::from(u32::MAX)) {
                    a.med = Some(v as u32);
                }
            }
            "next_hop" => {
                if let Some(w) = cx.arg(c, 0)
                    && let Some(ip) = cx.ip(w)
                {
                    if a.next_hops.iter().any(|h| h.is_ipv6() == ip.is_ipv6()) {
                        cx.d.invalid(
                            w.span,
                            format!(
                                "bgp_announce: a second {} next_hop",
                                if ip.is_ipv6() { "IPv6" } else { "IPv4" }
                            ),
                        );
                    } else {
                        a.next_hops.push(ip);
                    }
                }
            }
            _ => cx.unknown(c, &[]),
        }
    }
    if a.table.is_none() {
        cx.d.invalid(
            n.line_span(),
            format!(
                "bgp_announce {}: table missing (the routing table the BGP speaker imports, 1-252)",
                a.name
            ),
        );
        return None;
    }
    if a.prefixes.is_empty() {
        cx.d.invalid(
            n.line_span(),
            format!("bgp_announce {}: no prefix to announce", a.name),
        );
        return None;
    }
    Some(a)
}

/// `ADDR[/LEN]`, the address being the prefix's first (no host bits set).
fn prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (IpAddr::from_str(a).ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = IpAddr::from_str(s).ok()?;
            (a, if a.is_ipv6() { 128 } else { 32 })
        }
    };
    let bits = if addr.is_ipv6() { 128 } else { 32 };
    if len > bits {
        return None;
    }
    let host_bits = |v: u128, width: u32| {
        let keep = u32::from(len);
        keep < width && v & ((1u128 << (width - keep)) - 1) != 0
    };
    let set = match addr {
        IpAddr::V4(a) => host_bits(u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => len < 128 && host_bits(u128::from(a), 128),
    };
    (!set).then_some((addr, len))
}

/// A community as FRR's route-maps take it.
fn community(s: &str) -> bool {
    if WELL_KNOWN.contains(&s) {
        return true;
    }
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [a, b] => a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
        [a, b, c] => [a, b, c].iter().all(|p| p.parse::<u32>().is_ok()),
        _ => false,
    }
}

/// `track_virtual_server IP PORT [TCP|UDP|SCTP]`, `fwmark N`, `group NAME`.
fn virtual_server(cx: &mut Cx<'_>, n: &Node) -> Option<(VsKey, Protocol)> {
    let first = cx.arg(n, 0)?;
    let (key, rest) = match first.text.as_str() {
        "fwmark" => {
            let v = cx.int(n, 1, 1, i64::from(u32::MAX))?;
            (VsKey::Fwmark(v as u32), 2)
        }
        "group" => (VsKey::Group(cx.arg(n, 1)?.text.clone()), 2),
        _ => {
            let ip = cx.ip(first)?;
            let port = cx
                .arg(n, 1)
                .and_then(|w| cx.int_word(w, "port", 0, 65535))?;
            (VsKey::Addr(ip, port as u16), 2)
        }
    };
    let proto = match n.args.get(rest).map(|w| w.text.to_ascii_uppercase()) {
        None => Protocol::Tcp,
        Some(p) if p == "TCP" => Protocol::Tcp,
        Some(p) if p == "UDP" => Protocol::Udp,
        Some(p) if p == "SCTP" => Protocol::Sctp,
        Some(_) => {
            let w = &n.args[rest];
            cx.d.invalid(
                w.span,
                format!(
                    "track_virtual_server: unknown protocol '{}' (TCP, UDP or SCTP)",
                    w.text
                ),
            );
            return None;
        }
    };
    if let Some(w) = n.args.get(rest + 1) {
        cx.d.invalid(
            w.span,
            format!("track_virtual_server: unexpected '{}'", w.text),
        );
    }
    Some((key, proto))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_read_with_their_length_and_refused_with_host_bits() {
        let v4 = |s: &str| prefix(s);
        assert_eq!(v4("192.0.2.10"), Some(("192.0.2.10".parse().unwrap(), 32)));
        assert_eq!(v4("192.0.2.0/24"), Some(("192.0.2.0".parse().unwrap(), 24)));
        assert_eq!(v4("192.0.2.1/24"), None);
        assert_eq!(v4("192.0.2.0/33"), None);
        assert_eq!(v4("0.0.0.0/0"), Some(("0.0.0.0".parse().unwrap(), 0)));
        assert_eq!(
            v4("2001:db8::/32"),
            Some(("2001:db8::".parse().unwrap(), 32))
        );
        assert_eq!(
            v4("2001:db8::1"),
            Some(("2001:db8::1".parse().unwrap(), 128))
        );
        assert_eq!(v4("2001:db8::1/64"), None);
        assert_eq!(v4("x/24"), None);
    }

    #[test]
    fn communities_are_frr_forms() {
        for ok in [
            "65000:100",
            "0:0",
            "65535:65535",
            "4200000000:1:2",
            "no-export",
        ] {
            assert!(community(ok), "{ok}");
        }
        for bad in ["65536:1", "1", "a:b", "1:2:3:4", "NO-EXPORT", ""] {
            assert!(!community(bad), "{bad}");
        }
    }
}
