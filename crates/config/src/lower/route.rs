//! `virtual_routes` / `static_routes` and `virtual_rules` / `static_rules` entries, read as
//! keepalived 2.2.7 reads them (its `ip route` / `ip rule`-like words, its defaults and its
//! messages). Options keepalived has and holdfast does not implement are reported
//! `unsupported` on their word and the entry is dropped, never half-applied.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Cx, origin};
use crate::diag::Class;
use crate::model::{NextHop, Route, RouteMode, Rule, RuleAction};
use crate::tree::{Node, Word};

/// The word after word `$i` of `$w` (advancing `$i`), or keepalived's error for a missing one
/// and `return None`.
macro_rules! value {
    ($cx:expr, $w:expr, $i:ident) => {{
        $i += 1;
        match $w.get($i) {
            Some(v) => *v,
            None => {
                $cx.d.invalid(
                    $w[$i - 1].span,
                    format!("'{}' needs a value", $w[$i - 1].text),
                );
                return None;
            }
        }
    }};
}

/// Reports an invalid entry (keepalived drops it) and `return None`.
macro_rules! fail {
    ($cx:expr, $span:expr, $($msg:tt)*) => {{
        $cx.d.invalid($span, format!($($msg)*));
        return None;
    }};
}

/// The kernel's protocol number for keepalived's routes and rules (RTPROT_KEEPALIVED).
pub const PROTO_KEEPALIVED: u8 = 18;

/// keepalived's first automatic rule preference, counted down per family.
const RULE_START_PRIORITY: u32 = 16384;

/// Route options keepalived has that holdfast does not implement.
const ROUTE_UNSUPPORTED: &[&str] = &[
    "encap",
    "expires",
    "realms",
    "as",
    "features",
    "quickack",
    "congctl",
    "pref",
    "ttl-propagate",
    "fastopen_no_cookie",
    "track_group",
    "vrf",
    "rtt",
    "rttvar",
    "rto_min",
];

/// Rule options keepalived has that holdfast does not implement.
const RULE_UNSUPPORTED: &[&str] = &[
    "realms",
    "suppress_ifgroup",
    "sup_group",
    "tunnel-id",
    "uidrange",
    "l3mdev",
    "track_group",
];

/// The kernel's route types by name (RTN_*).
pub fn route_type(s: &str) -> Option<u8> {
    Some(match s {
        "unicast" => 1,
        "local" => 2,
        "broadcast" => 3,
        "anycast" => 4,
        "multicast" => 5,
        "blackhole" => 6,
        "unreachable" => 7,
        "prohibit" => 8,
        "throw" => 9,
        "nat" => 10,
        _ => return None,
    })
}

/// A routing table by number or by iproute2's built-in names.
fn table(s: &str) -> Option<u32> {
    match s {
        "default" => Some(253),
        "main" => Some(254),
        "local" => Some(255),
        "unspec" => Some(0),
        _ => s.parse().ok(),
    }
}

/// A route protocol by number or by iproute2's names.
fn protocol(s: &str) -> Option<u8> {
    Some(match s {
        "redirect" => 1,
        "kernel" => 2,
        "boot" => 3,
        "static" => 4,
        "gated" => 8,
        "ra" => 9,
        "mrt" => 10,
        "zebra" => 11,
        "bird" => 12,
        "dnrouted" => 13,
        "xorp" => 14,
        "ntk" => 15,
        "dhcp" => 16,
        "keepalived" => 18,
        "babel" => 42,
        "bgp" => 186,
        "isis" => 187,
        "ospf" => 188,
        "rip" => 189,
        "eigrp" => 192,
        _ => return parse_u32(s).and_then(|v| u8::try_from(v).ok()),
    })
}

/// A route scope by number or name.
fn scope(s: &str) -> Option<u8> {
    Some(match s {
        "global" | "universe" => 0,
        "site" => 200,
        "link" => 253,
        "host" => 254,
        "nowhere" => 255,
        _ => return s.parse().ok(),
    })
}

/// A TOS / dsfield value (hex as iproute2 takes it, or a decimal).
fn dsfield(s: &str) -> Option<u8> {
    let t = s.strip_prefix("0x").unwrap_or(s);
    u8::from_str_radix(t, 16).ok().or_else(|| s.parse().ok())
}

/// An unsigned number in C's `strtoul(…, 0)` forms (decimal, 0x hex, 0 octal).
fn parse_u32(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// `ADDR[/LEN]`, or `default`/`any`/`all` (prefix 0 of whichever family the entry has).
enum Prefix {
    Any,
    Net(IpAddr, u8),
}

fn prefix(s: &str) -> Option<Prefix> {
    if matches!(s, "default" | "any" | "all") {
        return Some(Prefix::Any);
    }
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match l {
        None => max,
        Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max)?,
    };
    Some(Prefix::Net(addr, len))
}

fn any(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// The entry's words: the keyword and its arguments.
fn words(n: &Node) -> Vec<&Word> {
    std::iter::once(&n.key).chain(&n.args).collect()
}

/// Tracks the entry's family: the first address fixes it, a later one of the other family is
/// keepalived's "Cannot mix" error.
struct Family(Option<bool>);

impl Family {
    fn see(&mut self, v6: bool) -> bool {
        match self.0 {
            None => {
                self.0 = Some(v6);
                true
            }
            Some(f) => f == v6,
        }
    }
}

/// Reads a route entry; `None` (with its error) when keepalived would drop it.
pub(super) fn route(cx: &mut Cx<'_>, n: &Node) -> Option<Route> {
    let w = words(n);
    let mut fam = Family(None);
    let mut r = Route {
        v6: false,
        kind: 1,
        dst: (any(false), 0),
        from: None,
        src: None,
        via: None,
        dev: None,
        table: 254,
        protocol: None,
        scope: None,
        metric: None,
        tos: None,
        onlink: false,
        metrics: Vec::new(),
        nexthops: Vec::new(),
        mode: RouteMode::Prepend,
        track: true,
        origin: origin(n),
    };
    let mut dst: Option<Prefix> = None;
    let mut protocol_given = false;
    let mut i = 0;
    let mix = "Cannot mix IPv4 and IPv6 addresses for route";
    while i < w.len() {
        let word = w[i];
        let s = word.text.as_str();
        match s {
            "inet" | "inet6" => {
                if !fam.see(s == "inet6") {
                    fail!(
                        cx,
                        word.span,
                        "{s} specified for IPv{} route",
                        if s == "inet6" { 4 } else { 6 }
                    );
                }
                // keepalived 2.2.7 steps over the word after `inet`/`inet6` as well (its
                // loop advances twice), so `inet6 default via …` has no destination there:
                // the same here, so that a configuration means the same to both.
                i += 1;
            }
            "src" => {
                let v = value!(cx, w, i);
                let Ok(a) = v.text.parse::<IpAddr>() else {
                    fail!(cx, v.span, "invalid route src address {}", v.text)
                };
                if !fam.see(a.is_ipv6()) {
                    fail!(cx, v.span, "{mix}");
                }
                r.src = Some(a);
            }
            "via" | "gw" => {
                if s == "gw" {
                    cx.d.invalid(
                        word.span,
                        "\"gw\" for routes is deprecated. Please use \"via\"",
                    );
                }
                let mut v = value!(cx, w, i);
                if matches!(v.text.as_str(), "inet" | "inet6") {
                    if !fam.see(v.text == "inet6") {
                        fail!(cx, v.span, "{mix}");
                    }
                    v = value!(cx, w, i);
                }
                let Ok(a) = v.text.parse::<IpAddr>() else {
                    fail!(cx, v.span, "invalid route via address {}", v.text)
                };
                if !fam.see(a.is_ipv6()) {
                    fail!(cx, v.span, "{mix}");
                }
                r.via = Some(a);
            }
            "from" => {
                let v = value!(cx, w, i);
                match prefix(&v.text) {
                    Some(Prefix::Net(a, l)) if a.is_ipv6() => {
                        if !fam.see(true) {
                            fail!(cx, v.span, "{mix}");
                        }
                        r.from = Some((a, l));
                    }
                    Some(_) => fail!(
                        cx,
                        v.span,
                        "route from address only supported with IPv6 ({})",
                        v.text
                    ),
                    None => fail!(cx, v.span, "invalid route from address {}", v.text),
                }
            }
            "tos" | "dsfield" => {
                let v = value!(cx, w, i);
                let Some(t) = dsfield(&v.text) else {
                    fail!(cx, v.span, "TOS value {} is invalid", v.text)
                };
                r.tos = Some(t);
            }
            "table" => {
                let v = value!(cx, w, i);
                let Some(t) = table(&v.text) else {
                    fail!(cx, v.span, "Routing table {} not found for route", v.text)
                };
                r.table = t;
            }
            "protocol" => {
                let v = value!(cx, w, i);
                let Some(p) = protocol(&v.text) else {
                    fail!(
                        cx,
                        v.span,
                        "Protocol {} not found or invalid for route",
                        v.text
                    )
                };
                r.protocol = Some(p);
                protocol_given = true;
            }
            "scope" => {
                let v = value!(cx, w, i);
                let Some(sc) = scope(&v.text) else {
                    fail!(
                        cx,
                        v.span,
                        "Scope {} not found or invalid for route",
                        v.text
                    )
                };
                r.scope = Some(sc);
            }
            "metric" | "priority" | "preference" => {
                let v = value!(cx, w, i);
                let Some(m) = parse_u32(&v.text) else {
                    fail!(cx, v.span, "Invalid metric {} specified for route", v.text)
                };
                r.metric = Some(m);
            }
            "dev" | "oif" => {
                let v = value!(cx, w, i);
                r.dev = Some(v.text.clone());
            }
            "onlink" => r.onlink = true,
            "mtu" | "advmss" | "hoplimit" | "window" | "cwnd" | "ssthresh" | "reordering"
            | "initcwnd" | "initrwnd" => {
                let mut v = value!(cx, w, i);
                let lock = v.text == "lock";
                if lock {
                    v = value!(cx, w, i);
                }
                let Some(val) = parse_u32(&v.text) else {
                    fail!(cx, v.span, "Invalid {s} {} specified for route", v.text)
                };
                // RTAX_* numbers.
                let kind = match s {
                    "mtu" => 2,
                    "window" => 3,
                    "ssthresh" => 6,
                    "cwnd" => 7,
                    "advmss" => 8,
                    "reordering" => 9,
                    "hoplimit" => 10,
                    "initcwnd" => 11,
                    "initrwnd" => 14,
                    _ => 0,
                };
                r.metrics.push((kind, val, lock));
            }
            "add" => r.mode = RouteMode::Add,
            "append" => r.mode = RouteMode::Append,
            "prepend" => r.mode = RouteMode::Prepend,
            "nexthop" => {
                r.nexthops = nexthops(cx, &w[i..])?;
                i = w.len();
                continue;
            }
            "no_track" => r.track = false,
            // keepalived's older form of a two-hop route: `via A or B`.
            "or" => {
                cx.d.invalid(
                    word.span,
                    "\"or\" for routes is deprecated. Please use \"nexthop\"",
                );
                if !r.nexthops.is_empty() {
                    cx.d.invalid(
                        word.span,
                        "\"or\" route already specified - ignoring subsequent",
                    );
                    i += 2;
                    continue;
                }
                let v = value!(cx, w, i);
                let Ok(a) = v.text.parse::<IpAddr>() else {
                    fail!(cx, v.span, "Invalid \"or\" address {}", v.text)
                };
                let hop = |via| NextHop {
                    via,
                    dev: None,
                    weight: 1,
                    onlink: false,
                };
                r.nexthops = vec![hop(r.via.take()), hop(Some(a))];
            }
            _ if ROUTE_UNSUPPORTED.contains(&s) => {
                cx.d.push(
                    Class::Unsupported,
                    Some(word.span),
                    format!("unsupported: route option '{s}' is not implemented by holdfast - route ignored"),
                );
                return None;
            }
            _ => {
                let mut k = i;
                if s == "to" {
                    k += 1;
                }
                let mut t = w.get(k).copied();
                if let Some(tw) = t
                    && let Some(kind) = route_type(&tw.text)
                {
                    r.kind = kind;
                    k += 1;
                    t = w.get(k).copied();
                }
                let Some(t) = t else {
                    fail!(cx, word.span, "Route must have a destination");
                };
                match prefix(&t.text) {
                    Some(p) => {
                        if let Prefix::Net(a, _) = p
                            && !fam.see(a.is_ipv6())
                        {
                            fail!(
                                cx,
                                t.span,
                                "Cannot mix IPv4 and IPv6 addresses for route ({})",
                                t.text
                            );
                        }
                        dst = Some(p);
                    }
                    None => fail!(cx, t.span, "unknown route keyword {}", t.text),
                }
                i = k;
            }
        }
        i += 1;
    }
    let Some(dst) = dst else {
        fail!(cx, n.key.span, "Route must have a destination");
    };
    r.v6 = fam.0.unwrap_or(false);
    r.dst = match dst {
        Prefix::Any => (any(r.v6), 0),
        Prefix::Net(a, l) => (a, l),
    };
    if r.track {
        if protocol_given && r.protocol != Some(PROTO_KEEPALIVED) {
            cx.d.invalid(
                n.key.span,
                format!("Route cannot be tracked if protocol is not RTPROT_KEEPALIVED({PROTO_KEEPALIVED}), resetting protocol"),
            );
        }
        r.protocol = Some(PROTO_KEEPALIVED);
        if r.dev.is_none() {
            let shown = match dst_text(&r) {
                t if t.is_empty() => "default".to_owned(),
                t => t,
            };
            cx.d.invalid(
                n.key.span,
                format!(
                    "Warning - cannot track route {shown} with no interface specified, not tracking"
                ),
            );
            r.track = false;
        }
    }
    Some(r)
}

/// The destination as keepalived's messages name it.
fn dst_text(r: &Route) -> String {
    let (a, l) = r.dst;
    let max = if a.is_ipv4() { 32 } else { 128 };
    if l == max {
        a.to_string()
    } else {
        format!("{a}/{l}")
    }
}

/// `nexthop via … dev … weight … onlink nexthop …` (the first word is `nexthop`).
fn nexthops(cx: &mut Cx<'_>, w: &[&Word]) -> Option<Vec<NextHop>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < w.len() {
        if w[i].text != "nexthop" {
            cx.d.invalid(
                w[i].span,
                format!("Route has trailing nonsense - {}", w[i].text),
            );
            return None;
        }
        i += 1;
        let mut nh = NextHop {
            via: None,
            dev: None,
            weight: 1,
            onlink: false,
        };
        while i < w.len() && w[i].text != "nexthop" {
            let s = w[i].text.as_str();
            let val = w.get(i + 1);
            match (s, val) {
                ("via", Some(v)) => {
                    let mut v = *v;
                    if matches!(v.text.as_str(), "inet" | "inet6") {
                        i += 1;
                        let Some(n) = w.get(i + 1) else {
                            cx.d.invalid(v.span, "nexthop via needs an address");
                            return None;
                        };
                        v = n;
                    }
                    let Ok(a) = v.text.parse::<IpAddr>() else {
                        cx.d.invalid(v.span, format!("Invalid nexthop via address {}", v.text));
                        return None;
                    };
                    nh.via = Some(a);
                    i += 2;
                }
                ("dev", Some(v)) => {
                    nh.dev = Some(v.text.clone());
                    i += 2;
                }
                ("weight", Some(v)) => {
                    match v.text.parse::<u16>() {
                        Ok(x) if (1..=256).contains(&x) => nh.weight = x,
                        _ => {
                            cx.d.invalid(v.span, format!("Invalid nexthop weight {}", v.text));
                            return None;
                        }
                    }
                    i += 2;
                }
                ("onlink", _) => {
                    nh.onlink = true;
                    i += 1;
                }
                (s, _) if ROUTE_UNSUPPORTED.contains(&s) => {
                    cx.d.push(
                        Class::Unsupported,
                        Some(w[i].span),
                        format!("unsupported: nexthop option '{s}' is not implemented by holdfast - route ignored"),
                    );
                    return None;
                }
                _ => {
                    cx.d.invalid(w[i].span, format!("Unknown nexthop option {s}"));
                    return None;
                }
            }
        }
        out.push(nh);
    }
    Some(out)
}

/// Automatic rule preferences, counted down per family as keepalived does.
#[derive(Debug)]
pub(crate) struct RulePriorities {
    v4: u32,
    v6: u32,
}

impl Default for RulePriorities {
    fn default() -> Self {
        RulePriorities {
            v4: RULE_START_PRIORITY,
            v6: RULE_START_PRIORITY,
        }
    }
}

/// A port or `N-M` range.
fn port_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => s.parse().ok().map(|p| (p, p)),
    }
}

/// An IP protocol by name or number.
fn ip_protocol(s: &str) -> Option<u8> {
    Some(match s {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmpv6" => 58,
        "sctp" => 132,
        _ => return s.parse().ok(),
    })
}

/// Reads a rule entry; `None` (with its error) when keepalived would drop it.
pub(super) fn rule(cx: &mut Cx<'_>, n: &Node, auto: &mut RulePriorities) -> Option<Rule> {
    let w = words(n);
    let mut fam = Family(None);
    let mut r = Rule {
        v6: false,
        invert: false,
        from: None,
        to: None,
        priority: 0,
        action: RuleAction::Nop,
        tos: None,
        fwmark: None,
        iif: None,
        oif: None,
        suppress_prefixlen: None,
        ipproto: None,
        sport: None,
        dport: None,
        protocol: None,
        track: true,
        origin: origin(n),
    };
    let mut action: Option<RuleAction> = None;
    let mut priority: Option<u32> = None;
    let mut protocol_given = false;
    let mut i = 0;
    let more =
        "Cannot specify more than one of table/nop/goto/blackhole/prohibit/unreachable for rule";
    while i < w.len() {
        let word = w[i];
        let s = word.text.as_str();
        match s {
            "inet" | "inet6" => {
                if !fam.see(s == "inet6") {
                    fail!(
                        cx,
                        word.span,
                        "{s} specified for IPv{} rule",
                        if s == "inet6" { 4 } else { 6 }
                    );
                }
                // As for routes: keepalived steps over the next word too.
                i += 1;
            }
            "from" | "to" => {
                let v = value!(cx, w, i);
                let p = match prefix(&v.text) {
                    Some(Prefix::Any) => None,
                    Some(Prefix::Net(a, l)) => {
                        if !fam.see(a.is_ipv6()) {
                            fail!(cx, v.span, "rule specification has mixed IPv4 and IPv6");
                        }
                        Some((a, l))
                    }
                    None => fail!(cx, v.span, "Invalid rule {s} address {}", v.text),
                };
                if s == "from" {
                    r.from = p;
                } else {
                    r.to = p;
                }
            }
            "table" | "lookup" => {
                let v = value!(cx, w, i);
                let Some(t) = table(&v.text) else {
                    fail!(cx, v.span, "Routing table {} not found for rule", v.text)
                };
                if t == 0 {
                    fail!(cx, v.span, "Table 0 is not valid");
                }
                if action.is_some() {
                    fail!(cx, word.span, "{more}");
                }
                action = Some(RuleAction::Table(t));
            }
            "not" => r.invert = true,
            "preference" | "order" | "priority" => {
                let v = value!(cx, w, i);
                let Some(p) = parse_u32(&v.text) else {
                    fail!(cx, v.span, "Invalid rule preference {s} specified")
                };
                priority = Some(p);
            }
            "tos" | "dsfield" => {
                let v = value!(cx, w, i);
                let Some(t) = dsfield(&v.text) else {
                    fail!(cx, v.span, "TOS value {} is invalid", v.text)
                };
                r.tos = Some(t);
            }
            "fwmark" => {
                let v = value!(cx, w, i);
                let (m, mask) = match v.text.split_once('/') {
                    Some((m, k)) => (parse_u32(m), Some(parse_u32(k))),
                    None => (parse_u32(&v.text), None),
                };
                match (m, mask) {
                    (Some(m), None) => r.fwmark = Some((m, None)),
                    (Some(m), Some(Some(k))) => r.fwmark = Some((m, Some(k))),
                    _ => fail!(cx, v.span, "Invalid rule fwmark {} specified", v.text),
                }
            }
            "suppress_prefixlength" | "sup_pl" => {
                let v = value!(cx, w, i);
                let Some(p) = v.text.parse::<u32>().ok().filter(|p| *p <= i32::MAX as u32) else {
                    fail!(cx, v.span, "Invalid suppress_prefixlength {s} specified")
                };
                r.suppress_prefixlen = Some(p);
            }
            "dev" | "iif" => r.iif = Some(value!(cx, w, i).text.clone()),
            "oif" => r.oif = Some(value!(cx, w, i).text.clone()),
            "protocol" => {
                let v = value!(cx, w, i);
                match v.text.parse::<u8>() {
                    Ok(p) => {
                        r.protocol = Some(p);
                        protocol_given = true;
                    }
                    Err(_) => cx.d.invalid(v.span, format!("Invalid protocol {}", v.text)),
                }
            }
            "ipproto" => {
                let v = value!(cx, w, i);
                match ip_protocol(&v.text) {
                    Some(p) => r.ipproto = Some(p),
                    None => cx.d.invalid(v.span, format!("Invalid ipproto {}", v.text)),
                }
            }
            "sport" | "dport" => {
                let v = value!(cx, w, i);
                match port_range(&v.text) {
                    Some(p) if s == "sport" => r.sport = Some(p),
                    Some(p) => r.dport = Some(p),
                    None => {
                        cx.d.invalid(v.span, format!("invalid {s} range {}", v.text))
                    }
                }
            }
            "no_track" => r.track = false,
            _ if RULE_UNSUPPORTED.contains(&s) => {
                cx.d.push(
                    Class::Unsupported,
                    Some(word.span),
                    format!("unsupported: rule option '{s}' is not implemented by holdfast - rule ignored"),
                );
                return None;
            }
            _ => {
                let mut t = word;
                if s == "type" {
                    t = value!(cx, w, i);
                }
                let a = match t.text.as_str() {
                    "goto" => {
                        let v = value!(cx, w, i);
                        let Some(g) = parse_u32(&v.text) else {
                            fail!(cx, v.span, "Invalid target {} specified", t.text)
                        };
                        RuleAction::Goto(g)
                    }
                    "nop" => RuleAction::Nop,
                    x => match route_type(x) {
                        Some(6) => RuleAction::Blackhole,
                        Some(7) => RuleAction::Unreachable,
                        Some(8) => RuleAction::Prohibit,
                        Some(_) => fail!(cx, t.span, "Invalid rule action {x}"),
                        None => fail!(cx, t.span, "Unknown rule option {x}"),
                    },
                };
                if action.is_some() {
                    fail!(cx, t.span, "{more}");
                }
                action = Some(a);
            }
        }
        i += 1;
    }
    let Some(action) = action else {
        fail!(cx, n.key.span, "No action specified for rule - ignoring");
    };
    if let RuleAction::Goto(g) = action {
        match priority {
            Some(p) if p >= g => fail!(
                cx,
                n.key.span,
                "Invalid rule - preference {p} >= goto target {g}"
            ),
            None => fail!(
                cx,
                n.key.span,
                "Invalid rule - goto target {g} specified without preference"
            ),
            _ => {}
        }
    }
    if r.suppress_prefixlen.is_some() && !matches!(action, RuleAction::Table(_)) {
        fail!(
            cx,
            n.key.span,
            "suppressor/realm specified for non table action - skipping"
        );
    }
    r.action = action;
    if r.track {
        if protocol_given && r.protocol != Some(PROTO_KEEPALIVED) {
            cx.d.invalid(
                n.key.span,
                format!("Rule cannot be tracked if protocol is not RTPROT_KEEPALIVED({PROTO_KEEPALIVED}), resetting protocol"),
            );
        }
        r.protocol = Some(PROTO_KEEPALIVED);
    }
    r.v6 = fam.0.unwrap_or(false);
    r.priority = match priority {
        Some(p) => p,
        None => {
            let next = if r.v6 { &mut auto.v6 } else { &mut auto.v4 };
            let p = *next;
            *next = next.saturating_sub(1);
            cx.d.invalid(
                n.key.span,
                format!("Rule has no preference specified - setting to {p}. This is probably not what you want."),
            );
            p
        }
    };
    Some(r)
}

/// Every entry of a `virtual_routes` / `static_routes` block.
pub(super) fn routes(cx: &mut Cx<'_>, n: &Node) -> Vec<Route> {
    let mut out = Vec::new();
    for c in cx.block(n) {
        if let Some(r) = route(cx, c) {
            out.push(r);
        }
    }
    out
}

/// Every entry of a `virtual_rules` / `static_rules` block.
pub(super) fn rules(cx: &mut Cx<'_>, n: &Node, auto: &mut RulePriorities) -> Vec<Rule> {
    let mut out = Vec::new();
    for c in cx.block(n) {
        if let Some(r) = rule(cx, c, auto) {
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::{RouteMode, RuleAction};

    fn parsed(entries: &str) -> crate::Loaded {
        crate::parse_str(&format!(
            "vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {{\n  10.0.0.1/24\n }}\n{entries}}}\n"
        ))
    }

    #[test]
    fn a_route_takes_keepalived_s_words_and_defaults() {
        let l = parsed(
            " virtual_routes {\n  blackhole 10.2.0.0/16 table 7 metric 9 no_track\n  10.3.0.0/16 dev eth0 nexthop via 10.0.0.2 dev eth0 weight 3 nexthop via 10.0.0.3 onlink\n  default via 10.0.0.254 dev eth0 append mtu lock 1400\n }\n",
        );
        let r = &l.config.instances[0].routes;
        assert_eq!(r.len(), 3, "{:?}", l.diagnostics);
        assert_eq!(
            (r[0].kind, r[0].table, r[0].metric, r[0].track),
            (6, 7, Some(9), false)
        );
        assert_eq!(r[0].protocol, None);
        assert_eq!(r[1].nexthops.len(), 2);
        assert_eq!(
            (r[1].nexthops[0].weight, r[1].nexthops[1].onlink),
            (3, true)
        );
        assert_eq!(r[1].protocol, Some(super::PROTO_KEEPALIVED));
        assert_eq!(r[2].dst.1, 0);
        assert_eq!(r[2].mode, RouteMode::Append);
        assert_eq!(r[2].metrics, vec![(2, 1400, true)]);
    }

    #[test]
    fn rules_without_preference_count_down_from_16384_per_family() {
        let l = parsed(
            " virtual_rules {\n  from 10.1.0.0/16 table 10\n  from 10.2.0.0/16 table 11\n  from fd00::/8 table 12\n  fwmark 0x10/0xf0 goto 900 priority 800\n }\n",
        );
        let r = &l.config.instances[0].rules;
        assert_eq!(
            r.iter().map(|r| r.priority).collect::<Vec<_>>(),
            [16384, 16383, 16384, 800]
        );
        assert_eq!(r[3].action, RuleAction::Goto(900));
        assert_eq!(r[3].fwmark, Some((0x10, Some(0xf0))));
        assert_eq!(
            l.diagnostics
                .iter()
                .filter(|d| d.message.starts_with("Rule has no preference"))
                .count(),
            3
        );
    }

    #[test]
    fn what_keepalived_refuses_is_dropped_with_its_message() {
        for (entry, said) in [
            (
                "virtual_routes {\n  10.1.0.0/16 via fd00::1\n }",
                "Cannot mix IPv4 and IPv6",
            ),
            (
                "virtual_routes {\n  inet6 default via fe80::1 dev eth0\n }",
                "Route must have a destination",
            ),
            (
                "virtual_routes {\n  10.1.0.0/16 table nosuch\n }",
                "Routing table nosuch not found",
            ),
            (
                "virtual_rules {\n  from 10.1.0.0/16 priority 5\n }",
                "No action specified for rule",
            ),
            (
                "virtual_rules {\n  from 10.1.0.0/16 goto 4 priority 5\n }",
                "preference 5 >= goto target 4",
            ),
            (
                "virtual_rules {\n  from 10.1.0.0/16 table 0 priority 5\n }",
                "Table 0 is not valid",
            ),
        ] {
            let l = parsed(&format!(" {entry}\n"));
            let i = &l.config.instances[0];
            assert!(i.routes.is_empty() && i.rules.is_empty(), "{entry}");
            assert!(
                l.diagnostics.iter().any(|d| d.message.contains(said)),
                "{entry}: {:?}",
                l.diagnostics
            );
        }
        // An option holdfast does not implement: unsupported, on its word.
        let l = parsed(" virtual_routes {\n  10.1.0.0/16 dev eth0 encap mpls 100\n }\n");
        assert!(l.config.instances[0].routes.is_empty());
        assert!(
            l.diagnostics
                .iter()
                .any(|d| d.class == crate::Class::Unsupported && d.message.contains("'encap'"))
        );
    }
}
