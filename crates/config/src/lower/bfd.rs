//! `bfd_instance` and `track_bfd`, with keepalived 2.2.7's checks and messages (its BFD
//! process reads the sessions, its VRRP process the weights and the tracking).

use std::net::IpAddr;
use std::time::Duration;

use super::{Cx, origin};
use crate::model::{BfdInstance, TrackRef};
use crate::tree::Node;

/// keepalived's longest BFD instance name (`BFD_INAME_MAX` less the NUL).
const NAME_MAX: usize = 31;

/// A value in milliseconds with up to three decimals (keepalived's
/// `read_decimal_unsigned_strvec(…, 3)`), as µs in `lo_ms..=hi_ms` ms.
fn millis(text: &str, lo_ms: u64, hi_ms: u64) -> Option<Duration> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 3
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let us =
        int.parse::<u64>().ok()?.checked_mul(1000)? + format!("{frac:0<3}").parse::<u64>().ok()?;
    (lo_ms * 1000..=hi_ms * 1000)
        .contains(&us)
        .then(|| Duration::from_micros(us))
}

/// An address as keepalived reads a socket address (`inet_stosockaddr`: a range or a mask
/// after it is dropped).
fn sockaddr(text: &str) -> Option<IpAddr> {
    text.split(['-', '/']).next()?.parse().ok()
}

/// An integer in `lo..=hi` (keepalived's `read_int_strvec`).
fn int(text: &str, lo: i64, hi: i64) -> Option<i64> {
    text.parse::<i64>().ok().filter(|v| (lo..=hi).contains(v))
}

/// `bfd_instance NAME { … }`; `None` when keepalived ignores or disables it (`known`: the
/// instances kept so far).
pub(super) fn instance(cx: &mut Cx<'_>, n: &Node, known: &[BfdInstance]) -> Option<BfdInstance> {
    let name = n.args.first()?.text.clone();
    // Each of keepalived's processes keeps its own list of the names: the checker's (any
    // length), VRRP's (at most 31 characters) and BFD's (the sessions it kept). A name one of
    // them has already is said once, on this line, by the first that reads it; a process
    // that has it skips the block.
    let too_long = name.len() > NAME_MAX;
    let checker_dup = !cx.bfd_seen.insert(name.clone());
    let vrrp_dup = !too_long && cx.bfd_names.contains(&name);
    let bfd_dup = known.iter().any(|b| b.name == name);
    let first = [(checker_dup, 1), (vrrp_dup, 2), (bfd_dup, 3)]
        .into_iter()
        .find_map(|(dup, pass)| dup.then_some(pass));
    if let Some(pass) = first {
        cx.d.invalid_in(
            pass,
            n.line_span(),
            format!("Configuration error: BFD instance {name} already configured - ignoring"),
        );
    }
    if too_long {
        // VRRP's process says it first (`BFD name … too long`).
        cx.d.invalid_in(
            2,
            n.line_span(),
            format!(
                "Configuration error: BFD instance {name} name too long (maximum length is {NAME_MAX} characters) - ignoring"
            ),
        );
    }
    let checker_reads = !checker_dup;
    let vrrp_reads = !too_long && !vrrp_dup;
    // VRRP's process knows the name from here on, whatever its BFD process makes of the block.
    if vrrp_reads {
        cx.bfd_names.push(name.clone());
    }
    // `vrrp` / `checker`: the processes the session's events go to; the others forget it at
    // the end of the block.
    let (mut for_vrrp, mut for_checker) = (false, false);
    let mut neighbor: Option<IpAddr> = None;
    // keepalived 2.2.7 names the neighbour "neighbor" in its messages whichever spelling is
    // used (it compares the value, not the keyword, with "neighbour_ip").
    let neighbor_word = "neighbor";
    // The BFD process stops reading the block at a malformed neighbour address.
    let mut session = !too_long && !bfd_dup;
    let mut b = BfdInstance {
        name: name.clone(),
        neighbor: IpAddr::from([0, 0, 0, 0]),
        source: None,
        min_rx: Duration::from_millis(10),
        min_tx: Duration::from_millis(10),
        idle_tx: Duration::from_millis(1000),
        multiplier: 5,
        passive: false,
        ttl: 0,
        max_hops: 0,
        weight: 0,
        weight_reverse: false,
        origin: origin(n),
    };
    const MS_MAX: u64 = u32::MAX as u64 / 1000;
    for c in cx.block(n) {
        cx.no_block(c);
        let k = c.key.text.as_str();
        const KEYWORDS: &[&str] = &[
            "neighbor_ip",
            "neighbour_ip",
            "source_ip",
            "min_rx",
            "min_tx",
            "idle_tx",
            "multiplier",
            "ttl",
            "hoplimit",
            "max_hops",
            "weight",
            "passive",
            "vrrp",
            "checker",
        ];
        if !KEYWORDS.contains(&k) {
            // Unknown to every process reading the block: said by the first that does.
            let reader = [(checker_reads, 1), (vrrp_reads, 2), (session, 3)]
                .into_iter()
                .find_map(|(reads, pass)| reads.then_some(pass));
            if let Some(pass) = reader {
                cx.unknown(c, &[]);
                cx.d.in_pass(pass);
            }
            continue;
        }
        // The processes the events go to: every process reading the block takes note.
        match k {
            "vrrp" => for_vrrp = true,
            "checker" => for_checker = true,
            _ => {}
        }
        // `weight` is VRRP's; the rest the BFD process's.
        let read = if k == "weight" { vrrp_reads } else { session };
        if !read {
            continue;
        }
        let Some(v) = c.args.first().map(|w| w.text.clone()) else {
            match k {
                "passive" => b.passive = true,
                "vrrp" | "checker" => {}
                _ => {
                    cx.arg(c, 0);
                    if k == "weight" {
                        cx.d.in_pass(2);
                    }
                }
            }
            continue;
        };
        let bad = |what: &str| {
            format!(
                "Configuration error: BFD instance {name} {what} value {v} is not valid (must be in range"
            )
        };
        match k {
            "neighbor_ip" | "neighbour_ip" => match sockaddr(&v) {
                Some(a) => neighbor = Some(a),
                None => {
                    cx.d.invalid(
                        c.line_span(),
                        format!(
                            "Configuration error: BFD instance {name} has malformed {neighbor_word} address {v}, ignoring instance"
                        ),
                    );
                    session = false;
                }
            },
            "source_ip" => match sockaddr(&v) {
                Some(a) => b.source = Some(a),
                None => cx.d.invalid(
                    c.line_span(),
                    format!(
                        "Configuration error: BFD instance {name} has malformed source address {v}, ignoring"
                    ),
                ),
            },
            "min_rx" | "min_tx" | "idle_tx" => {
                let lo = if k == "idle_tx" { 1000 } else { 1 };
                match millis(&v, lo, MS_MAX) {
                    Some(d) if k == "min_rx" => b.min_rx = d,
                    Some(d) if k == "min_tx" => b.min_tx = d,
                    Some(d) => b.idle_tx = d,
                    None => cx.d.invalid(
                        c.line_span(),
                        format!("{} [{lo}-{MS_MAX}]), ignoring", bad(k)),
                    ),
                }
            }
            "multiplier" => match int(&v, 1, 255) {
                Some(m) => b.multiplier = m as u8,
                None => cx.d.invalid(
                    c.line_span(),
                    format!(
                        "Configuration error: BFD instance {name} multiplier value {v} not valid (must be in range [1-255]), ignoring"
                    ),
                ),
            },
            "ttl" | "hoplimit" => match int(&v, 1, 255) {
                Some(t) => b.ttl = t as u8,
                None => cx.d.invalid(
                    c.line_span(),
                    format!(
                        "Configuration error: BFD instance {name} ttl/hoplimit value {v} not valid (must be in range [1-255]), ignoring"
                    ),
                ),
            },
            // keepalived keeps it in a byte: -1 is 255, "any number of hops".
            "max_hops" => match int(&v, -1, 255) {
                Some(h) => b.max_hops = if h < 0 { 255 } else { h as i32 },
                None => cx.d.invalid(
                    c.line_span(),
                    format!(
                        "Configuration error: BFD instance {name} max_hops value {v} not valid (must be in range [-1-255]), ignoring"
                    ),
                ),
            },
            "weight" => {
                match int(&v, -253, 253) {
                    Some(w) => b.weight = w as i32,
                    None => cx.d.invalid_in(
                        2,
                        c.line_span(),
                        format!(
                            "Configuration error: BFD instance {name} weight value {v} not valid (must be in range [-253-253]), ignoring"
                        ),
                    ),
                }
                match c.args.get(1).map(|w| w.text.as_str()) {
                    Some("reverse") => b.weight_reverse = true,
                    Some(o) => cx.d.invalid_in(
                        2,
                        c.line_span(),
                        format!("Configuration error: BFD instance {name} unknown weight option {o}"),
                    ),
                    None => {}
                }
            }
            // `passive`, `vrrp` and `checker` take no value.
            _ => b.passive |= k == "passive",
        }
    }
    if for_vrrp || for_checker {
        if !for_vrrp && vrrp_reads {
            cx.bfd_names.retain(|x| x != &name);
        }
        if !for_checker && checker_reads {
            cx.bfd_seen.remove(&name);
        }
    }
    if !session {
        return None;
    }
    // keepalived's end of block.
    let at = n.close.unwrap_or(n.span());
    let Some(nbr) = neighbor else {
        cx.d.invalid(
            at,
            format!(
                "Configuration error: BFD instance {name} has no {neighbor_word} address set, disabling instance"
            ),
        );
        return None;
    };
    if let Some(src) = b.source
        && src.is_ipv4() != nbr.is_ipv4()
    {
        cx.d.invalid(
            at,
            format!(
                "Configuration error: BFD instance {name} source address {src} and {neighbor_word} address {nbr} are not of the same family, disabling instance"
            ),
        );
        return None;
    }
    // keepalived: the same neighbour, and either side without a source or the same source.
    if known.iter().any(|o| {
        o.neighbor == nbr && (o.source.is_none() || b.source.is_none() || o.source == b.source)
    }) {
        let msg = match b.source {
            Some(src) => format!(
                "Configuration error: BFD instance {name} has duplicate source/{neighbor_word} address {src}/{nbr}, ignoring instance"
            ),
            None => format!(
                "Configuration error: BFD instance {name} has duplicate {neighbor_word} address {nbr}, ignoring instance"
            ),
        };
        cx.d.invalid(at, msg);
        return None;
    }
    b.neighbor = nbr;
    if b.ttl == 0 {
        b.ttl = if nbr.is_ipv4() { 255 } else { 64 };
    }
    if b.max_hops > i32::from(b.ttl) {
        cx.d.invalid(
            at,
            format!("BFD instance {name}: max_hops exceeds ttl/hoplimit - setting to ttl/hoplimit"),
        );
        b.max_hops = i32::from(b.ttl);
    }
    Some(b)
}

/// `track_bfd { NAME [weight N [reverse|noreverse]] … }` in an instance or sync group, with
/// keepalived's checks; `owner` names it in the messages.
pub(super) fn track(cx: &mut Cx<'_>, c: &Node, owner: &str, into: &mut Vec<TrackRef>) {
    for e in c.block.as_deref().unwrap_or(&[]) {
        let name = &e.key.text;
        let at = e.line_span();
        if !cx.bfd_names.contains(name) {
            cx.d.invalid(
                at,
                format!("({owner}) track bfd {name} not found, ignoring..."),
            );
            continue;
        }
        if into.iter().any(|t| &t.name == name) {
            cx.d.invalid(
                at,
                format!("({owner}) duplicate track_bfd {name} - ignoring"),
            );
            continue;
        }
        let mut t = TrackRef {
            name: name.clone(),
            weight: None,
            reverse: None,
            origin: origin(e),
        };
        let args: Vec<&str> = e.args.iter().map(|w| w.text.as_str()).collect();
        if let Some(opt) = args.first() {
            if *opt != "weight" {
                cx.d.invalid(
                    at,
                    format!("({owner}) unknown track bfd {name} option {opt} - ignoring"),
                );
                continue;
            }
            let Some(w) = args.get(1) else {
                cx.d.invalid(
                    at,
                    format!(
                        "({owner}) weight without value specified for track bfd {name} - ignoring"
                    ),
                );
                continue;
            };
            match int(w, -253, 253) {
                Some(w) => t.weight = Some(w as i32),
                None => cx.d.invalid(
                    at,
                    format!(
                        "({owner}) weight for track bfd {name} must be in [-253..253] inclusive. Ignoring..."
                    ),
                ),
            }
            match args.get(2) {
                Some(&"reverse") => t.reverse = Some(true),
                Some(&"noreverse") => t.reverse = Some(false),
                Some(o) => {
                    cx.d.invalid(
                        at,
                        format!("({owner}) unknown track bfd {name} weight option {o} - ignoring"),
                    );
                    continue;
                }
                None => {}
            }
        }
        into.push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_take_three_decimals_in_range() {
        assert_eq!(millis("10", 1, 100), Some(Duration::from_millis(10)));
        assert_eq!(millis("0.5", 0, 100), Some(Duration::from_micros(500)));
        assert_eq!(millis("1.25", 1, 100), Some(Duration::from_micros(1250)));
        assert_eq!(millis("0", 1, 100), None);
        assert_eq!(millis("1.2345", 1, 100), None);
        assert_eq!(millis("x", 1, 100), None);
        assert_eq!(millis("101", 1, 100), None);
    }
}
