//! `virtual_server`, `virtual_server_group`, `real_server`.

use std::net::IpAddr;

use crate::model::{Tunnel, TunnelCsum, TunnelType};
use std::time::Duration;

use super::{Cx, KA_TIMER_MAX_US, arg_span, checker, global, origin};
use crate::diag::Class;
use crate::model::{
    CheckTiming, LvsMethod, Protocol, RealServer, VirtualServer, VsGroup, VsGroupEntry, VsKey,
};
use crate::tree::Node;

const VS_UNSUPPORTED: &[&str] = &["flag-3", "snmp_name", "lvs_tun_type", "weight"];

/// keepalived's real_server keywords holdfast reads but does not act on.
const RS_UNSUPPORTED: &[&str] = &["virtualhost", "BFD_CHECK", "snmp_name"];

const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos",
];

/// Where a cascading timing keyword is written (keepalived words each level's messages; in
/// this order in `timing_key`'s table).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    VirtualServer,
    RealServer,
    Checker,
}

/// Tries a cascading timing keyword, read in keepalived's ranges (a microsecond at least for
/// connect_timeout and delay_loop, connect_timeout at most 4294.967295 s) with the message
/// keepalived gives at each level for a value it refuses (the default is kept).
pub(super) fn timing_key(cx: &mut Cx<'_>, n: &Node, t: &mut CheckTiming, at: Level) -> bool {
    use Level::*;
    let v = n.args.first().map_or("", |w| w.text.as_str()).to_owned();
    let (min, max, refused) = match (n.key.text.as_str(), at) {
        ("retry", _) => {
            // A virtual or real server's retry is at least 1, a checker's may be 0.
            let min = if at == Checker { 0 } else { 1 };
            let r = cx.count(n, min, i64::from(u32::MAX));
            if r.is_none() && !n.args.is_empty() {
                let msg = match at {
                    Checker => format!("Invalid retry connection value '{v}'"),
                    _ => format!("retry value invalid - {v}"),
                };
                cx.d.invalid(n.line_span(), msg);
            }
            t.retry = r.or(t.retry);
            return true;
        }
        (k, at) => {
            // keepalived's range, then its message at each level (`{v}`: the value).
            const TIMING: [(&str, u64, u64, [&str; 3]); 4] = [
                (
                    "connect_timeout",
                    1,
                    u32::MAX as u64,
                    [
                        "virtual server connect_timeout {v} invalid - ignoring",
                        "real server connect_timeout {v} invalid - ignoring",
                        "connect_timeout {v} invalid - ignoring",
                    ],
                ),
                (
                    "delay_before_retry",
                    0,
                    KA_TIMER_MAX_US,
                    [
                        "virtual server delay before retry '{v}' invalid - ignoring",
                        "real server delay_before_retry '{v}' invalid - ignoring",
                        "Invalid delay_before_retry connection value '{v}'",
                    ],
                ),
                (
                    "warmup",
                    0,
                    KA_TIMER_MAX_US,
                    [
                        "virtual server warmup '{v}' invalid - ignoring",
                        "real server warmup '{v}' invalid - ignoring",
                        "Invalid warmup connection value '{v}'",
                    ],
                ),
                (
                    "delay_loop",
                    1,
                    KA_TIMER_MAX_US,
                    [
                        "virtual server delay loop '{v}' invalid - ignoring",
                        "real server delay_loop '{v}' invalid - ignoring",
                        "delay_loop '{v}' is invalid - ignoring",
                    ],
                ),
            ];
            let Some((_, min, max, said)) = TIMING.iter().find(|(key, ..)| *key == k) else {
                return false;
            };
            (*min, *max, said[at as usize].replace("{v}", &v))
        }
    };
    let Some(d) = cx.ka_timer(n, min, max) else {
        if !n.args.is_empty() {
            cx.d.invalid(n.line_span(), refused);
        }
        return true;
    };
    let slot = match n.key.text.as_str() {
        "connect_timeout" => &mut t.connect_timeout,
        "delay_before_retry" => &mut t.delay_before_retry,
        "warmup" => &mut t.warmup,
        _ => &mut t.delay_loop,
    };
    *slot = Some(d);
    true
}

/// `lvs_method NAT|DR|TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]`, read as
/// keepalived reads it: the method is taken first, and a bad tunnel option is reported and
/// leaves the tunnel at its defaults (IPIP, no checksum).
fn method(cx: &mut Cx<'_>, n: &Node) -> Option<(LvsMethod, Option<Tunnel>)> {
    let w = cx.arg(n, 0)?;
    let m = match w.text.as_str() {
        "NAT" => LvsMethod::Nat,
        "DR" => LvsMethod::Dr,
        "TUN" => LvsMethod::Tun,
        other => {
            cx.d.invalid(w.span, format!("Unknown LVS method '{other}'"));
            return None;
        }
    };
    if n.args.len() < 2 {
        return Some((m, None));
    }
    let mut t = Tunnel::default();
    let mut port = None;
    let mut i = 1;
    while i < n.args.len() {
        let o = &n.args[i];
        let next = n.args.get(i + 1);
        match o.text.as_str() {
            "type" => {
                t.kind = match next.map(|w| w.text.as_str()) {
                    Some("ipip") => TunnelType::Ipip,
                    Some("gue") => TunnelType::Gue,
                    Some("gre") => TunnelType::Gre,
                    Some(k) => {
                        cx.d.invalid(
                            next.map_or(o.span, |w| w.span),
                            format!("Unknown tunnel type {k}"),
                        );
                        return Some((m, None));
                    }
                    None => {
                        cx.d.invalid(o.span, "Missing tunnel type");
                        return Some((m, None));
                    }
                };
                i += 1;
            }
            "port" => {
                match next.map(|w| (w, w.text.parse::<u16>())) {
                    Some((_, Ok(p))) if p > 0 => port = Some(p),
                    Some((w, _)) => {
                        cx.d.invalid(w.span, format!("Invalid gue tunnel port {}", w.text));
                        return Some((m, None));
                    }
                    None => {
                        cx.d.invalid(o.span, "Missing port for gue tunnel");
                        return Some((m, None));
                    }
                }
                i += 1;
            }
            "nocsum" => t.csum = TunnelCsum::NoCsum,
            "csum" => t.csum = TunnelCsum::Csum,
            "remcsum" => t.csum = TunnelCsum::RemCsum,
            other => {
                cx.d.invalid(o.span, format!("Invalid tunnel option {other}"));
                return Some((m, None));
            }
        }
        i += 1;
    }
    if (t.kind == TunnelType::Gue) != port.is_some() {
        cx.d.invalid(
            arg_span(n),
            "gue tunnels require port, otherwise cannot have port.",
        );
        return Some((m, None));
    }
    if t.kind == TunnelType::Ipip && t.csum != TunnelCsum::NoCsum {
        cx.d.invalid(arg_span(n), "ipip tunnels do not support checksum option.");
        return Some((m, None));
    }
    if t.kind == TunnelType::Gre && t.csum == TunnelCsum::RemCsum {
        cx.d.invalid(
            arg_span(n),
            "gre tunnels do not support remote checksum option.",
        );
        return Some((m, None));
    }
    if m != LvsMethod::Tun {
        // keepalived takes them and hands them to IPVS, which uses them only to tunnel.
        cx.d.note(
            arg_span(n),
            "tunnel options have no effect without lvs_method TUN (keepalived accepts them; IPVS uses them only for tunnelling)",
        );
        return Some((m, None));
    }
    t.port = port.unwrap_or(0);
    Some((m, Some(t)))
}

pub(super) fn virtual_server(cx: &mut Cx<'_>, n: &Node) -> Option<VirtualServer> {
    let key = match n.args.first().map(|w| w.text.as_str()) {
        Some("fwmark") => VsKey::Fwmark(cx.int(n, 1, 0, i64::from(u32::MAX))? as u32),
        Some("group") => VsKey::Group(cx.arg(n, 1)?.text.clone()),
        Some(_) => {
            let ip = cx.ip_arg(n, 0)?;
            let port = match n.args.get(1) {
                Some(w) => cx.port(w)?,
                None => 0,
            };
            VsKey::Addr(ip, port)
        }
        None => {
            cx.d.invalid(
                n.span(),
                "virtual_server requires IP PORT, fwmark N or group NAME",
            );
            return None;
        }
    };
    let family_v6 = match &key {
        VsKey::Addr(ip, _) => Some(ip.is_ipv6()),
        _ => None,
    };
    let mut vs = VirtualServer {
        key,
        delay_loop: Duration::from_secs(60),
        lvs_sched: "wlc".into(),
        sched_port: false,
        sched_fallback: false,
        ops: false,
        ip_family_v6: None,
        family_v6,
        lvs_method: LvsMethod::Nat,
        tunnel: None,
        protocol: Protocol::Tcp,
        persistence_timeout: None,
        persistence_granularity: None,
        persistence_engine: None,
        ha_suspend: false,
        proxy_protocol: false,
        virtualhost: None,
        alpha: false,
        omega: false,
        quorum: 1,
        hysteresis: 0,
        quorum_up: None,
        quorum_down: None,
        sorry_server: None,
        sorry_server_inhibit: false,
        sorry_server_lvs_method: None,
        sorry_server_tunnel: None,
        inhibit_on_failure: false,
        smtp_alert: None,
        timing: CheckTiming::default(),
        dataplane: None,
        real_servers: Vec::new(),
        origin: origin(n),
    };
    // Whether a valid scheduler and forwarding method were given (keepalived reports their
    // absence once the block is read, an invalid one included).
    let (mut sched_set, mut method_set) = (false, false);
    for c in cx.block(n) {
        if c.key.text == "real_server" {
            if let Some(rs) = real_server(cx, c) {
                // keepalived: a real server not tunnelled is of the service's family, and the
                // first one settles a family nothing else has.
                let tunnelled = rs.lvs_method.unwrap_or(vs.lvs_method) == LvsMethod::Tun;
                match vs.family_v6 {
                    _ if tunnelled => {}
                    None => vs.family_v6 = Some(rs.addr.is_ipv6()),
                    Some(v6) if v6 != rs.addr.is_ipv6() => {
                        cx.d.invalid(
                            c.close.unwrap_or(c.span()),
                            format!(
                                "Address family of virtual server and real server {} don't match - skipping real server.",
                                rs.addr
                            ),
                        );
                        continue;
                    }
                    Some(_) => {}
                }
                vs.real_servers.push(rs);
            }
            continue;
        }
        cx.no_block(c);
        if timing_key(cx, c, &mut vs.timing, Level::VirtualServer) {
            // A virtual server's own delay_loop is its checkers' default, kept apart.
            if let Some(d) = vs.timing.delay_loop.take() {
                vs.delay_loop = d;
            }
            continue;
        }
        match c.key.text.as_str() {
            "lvs_sched" | "lb_algo" => {
                if let Some(w) = cx.arg(c, 0) {
                    if SCHEDULERS.contains(&w.text.as_str()) {
                        vs.lvs_sched = w.text.clone();
                        sched_set = true;
                    } else {
                        cx.d.invalid(w.span, format!("Unknown LVS scheduler '{}'", w.text));
                    }
                }
            }
            "ops" => vs.ops = true,
            "ip_family" => match c.args.first().map(|w| (w, w.text.as_str())) {
                Some((w, f @ ("inet" | "inet6"))) => {
                    let v6 = f == "inet6";
                    match vs.family_v6 {
                        Some(family) if family != v6 => cx.d.invalid(
                            w.span,
                            format!(
                                "Virtual server specified family {f} conflicts with server family"
                            ),
                        ),
                        _ => {
                            vs.ip_family_v6 = Some(v6);
                            vs.family_v6 = Some(v6);
                        }
                    }
                }
                Some((w, f)) => cx.d.invalid(w.span, format!("unknown address family {f}")),
                None => {
                    cx.arg(c, 0);
                }
            },
            "flag-1" => vs.sched_fallback = true,
            "flag-2" => vs.sched_port = true,
            // As keepalived: read against the scheduler set so far.
            // With sh, the mh flags do nothing (and with mh the sh ones), silently; keepalived
            // 2.2.7 reads `hashed` the same way and sets nothing with it.
            k @ ("sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" | "hashed") => {
                if k[..2] == vs.lvs_sched {
                    if k.ends_with("port") {
                        vs.sched_port = true;
                    } else {
                        vs.sched_fallback = true;
                    }
                } else if vs.lvs_sched == "sh" || vs.lvs_sched == "mh" {
                } else {
                    cx.d.invalid(
                        c.key.span,
                        format!("{k} only applies to sh scheduler - ignoring"),
                    );
                }
            }
            "lvs_method" | "lb_kind" => {
                if let Some((m, t)) = method(cx, c) {
                    vs.lvs_method = m;
                    vs.tunnel = t;
                    method_set = true;
                }
            }
            // keepalived reads the value first (stopping when there is none), and the name in
            // any case.
            "protocol" => match c.args.first().map(|w| w.text.to_ascii_uppercase()) {
                None => {
                    cx.arg(c, 0);
                }
                Some(p) if !matches!(p.as_str(), "TCP" | "UDP" | "SCTP") => cx.d.invalid(
                    c.line_span(),
                    format!(
                        "Unknown protocol {} - ignoring",
                        c.args.first().map_or("", |w| w.text.as_str())
                    ),
                ),
                Some(_) if matches!(vs.key, VsKey::Fwmark(_)) => cx.d.push_unlined(
                    Class::Invalid,
                    Some(c.span()),
                    format!("Warning: Virtual server {}: protocol specified for fwmark - protocol will be ignored", vs_name(&vs.key)),
                ),
                Some(p) => {
                    vs.protocol = match p.as_str() {
                        "UDP" => Protocol::Udp,
                        "SCTP" => Protocol::Sctp,
                        _ => Protocol::Tcp,
                    }
                }
            },
            // keepalived's range: up to 31 days.
            "persistence_timeout" => {
                vs.persistence_timeout =
                    if c.args.is_empty() { Some(360) } else { cx.count(c, 1, 2_678_400) }
            }
            "persistence_granularity" => {
                vs.persistence_granularity = granularity(cx, c, &mut vs.family_v6);
            }
            // keepalived copies the name into IPVS's 16-byte field, cutting what is longer.
            // IPVS's field holds 15 characters: keepalived says so and cuts the name.
            "persistence_engine" => {
                if let Some(s) = cx.string(c) {
                    if s.len() > 15 {
                        cx.d.invalid(
                            c.line_span(),
                            format!("persistence_name too long, truncating - {s}"),
                        );
                    }
                    vs.persistence_engine = Some(s.chars().take(15).collect());
                }
            }
            "ha_suspend" => vs.ha_suspend = true,
            "proxy_protocol" => vs.proxy_protocol = true,
            "virtualhost" => vs.virtualhost = cx.string(c),
            "alpha" => vs.alpha = true,
            "omega" => vs.omega = true,
            "quorum" => vs.quorum = cx.count(c, 1, i64::from(u32::MAX)).unwrap_or(1),
            "hysteresis" => vs.hysteresis = cx.count(c, 0, i64::from(u32::MAX)).unwrap_or(0),
            // keepalived keeps the first and refuses the others (naming no owner).
            "quorum_up" => cx.script_once(c, &mut vs.quorum_up, "((null))"),
            "quorum_down" => cx.script_once(c, &mut vs.quorum_down, "((null))"),
            "sorry_server" => {
                // Its family is checked when the block ends (below).
                if let Some(ip) = cx.ip_arg(c, 0) {
                    let port = c.args.get(1).and_then(|w| cx.port(w));
                    vs.sorry_server = Some((ip, port));
                }
            }
            "sorry_server_inhibit" if vs.sorry_server.is_none() => cx.d.invalid(
                c.line_span(),
                "Ignoring sorry_server inhibit used before or without sorry_server",
            ),
            "sorry_server_inhibit" => vs.sorry_server_inhibit = true,
            "sorry_server_lvs_method" => {
                if let Some((m, t)) = method(cx, c) {
                    vs.sorry_server_lvs_method = Some(m);
                    vs.sorry_server_tunnel = t;
                }
            }
            // keepalived: the keyword alone decides, whatever follows it.
            "inhibit_on_failure" => vs.inhibit_on_failure = true,
            "smtp_alert" => vs.smtp_alert = Some(cx.boolean(c)),
            "dataplane" => vs.dataplane = global::dataplane(cx, c),
            _ => cx.unknown(c, VS_UNSUPPORTED),
        }
    }
    // keepalived 2.2.7 gives an address service without `protocol` UDP ("no protocol set -
    // defaulting to UDP", an error); holdfast gives it TCP, and says so.
    if !matches!(vs.key, VsKey::Fwmark(_))
        && !n.block.iter().flatten().any(|c| c.key.text == "protocol")
    {
        cx.d.note(
            n.span(),
            format!(
                "Virtual server {}: no protocol set - holdfast uses TCP (keepalived 2.2.7 defaults to UDP and reports an error; add 'protocol TCP' to be explicit)",
                vs_name(&vs.key)
            ),
        );
    }
    // keepalived reports a missing scheduler and a missing forwarding method (one a real
    // server or the sorry server would take from the service) and sets its default.
    if !sched_set {
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!(
                "Virtual server {}: no scheduler set, setting default 'wlc'",
                vs_name(&vs.key)
            ),
        );
    }
    if !method_set
        && (vs.real_servers.iter().any(|r| r.lvs_method.is_none())
            || (vs.sorry_server.is_some() && vs.sorry_server_lvs_method.is_none()))
    {
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!(
                "Virtual server {}: no forwarding method set, setting default NAT",
                vs_name(&vs.key)
            ),
        );
    }
    // As keepalived: one-packet scheduling is for UDP (or a fwmark).
    if vs.ops && !matches!(vs.key, VsKey::Fwmark(_)) && vs.protocol != Protocol::Udp {
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!(
                "Virtual server {}: one packet scheduling requires UDP - resetting",
                vs_name(&vs.key)
            ),
        );
        vs.ops = false;
    }
    // keepalived drops a sorry server of the other family when the block ends, reporting it on
    // the closing line.
    // (None declared: the sorry server sets it. A tunnelled sorry server may differ.)
    if let (Some(v6), Some((ip, _))) = (vs.family_v6, vs.sorry_server)
        && v6 != ip.is_ipv6()
        && vs.sorry_server_lvs_method != Some(LvsMethod::Tun)
    {
        cx.d.invalid(
            n.close.unwrap_or(n.span()),
            format!(
                "Address family of virtual server and sorry server {ip} don't match - skipping sorry server."
            ),
        );
        vs.sorry_server = None;
        vs.sorry_server_inhibit = false;
    }
    // keepalived: a quorum above the real servers' total weight could never be reached.
    let total: i64 = vs
        .real_servers
        .iter()
        .map(|r| i64::from(r.weight.max(0)))
        .sum();
    if !vs.real_servers.is_empty() && i64::from(vs.quorum) > total {
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!(
                "Warning - quorum {} for {} exceeds total weight of real servers {total}, reducing quorum to {total}",
                vs.quorum,
                vs_name(&vs.key)
            ),
        );
        vs.quorum = total as _;
    }
    if !vs.real_servers.is_empty() && vs.hysteresis >= vs.quorum {
        // keepalived prints quorum - 1 as an unsigned number (4294967295 for a quorum of 0).
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!(
                "Virtual server {}: hysteresis {} >= quorum {}; setting hysteresis to {}",
                vs_name(&vs.key),
                vs.hysteresis,
                vs.quorum,
                vs.quorum.wrapping_sub(1)
            ),
        );
        vs.hysteresis = vs.quorum.saturating_sub(1);
    }
    // keepalived reports it (an error) and drops the service.
    if vs.real_servers.is_empty() && vs.sorry_server.is_none() {
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!(
                "Virtual server {} has no real servers - ignoring",
                vs_name(&vs.key)
            ),
        );
        return None;
    }
    Some(vs)
}

/// `persistence_granularity` as keepalived reads it: for an IPv6 service a prefix length
/// (1-128); for an IPv4 one a netmask in any form `inet_aton(3)` takes (`255.255.255.0`,
/// `0xffffff00`); a service whose family nothing has settled yet (a fwmark) is taken as IPv4
/// when the value has a dot, and takes that family.
fn granularity(cx: &mut Cx<'_>, c: &Node, family_v6: &mut Option<bool>) -> Option<String> {
    let w = cx.arg(c, 0)?;
    let v6 = family_v6.unwrap_or(!w.text.contains('.'));
    let ok = if v6 {
        w.text.parse::<u8>().is_ok_and(|n| (1..=128).contains(&n))
    } else {
        super::inet_aton(&w.text).is_some()
    };
    if !ok {
        let family = if v6 { "IPv6" } else { "IPv4" };
        cx.d.invalid(
            w.span,
            format!(
                "Invalid {family} persistence_granularity specified - {}",
                w.text
            ),
        );
        return None;
    }
    *family_v6 = Some(v6);
    Some(w.text.clone())
}

/// keepalived's printed name of a virtual server: `[IP]:tcp:PORT`, `FWM N`, `[GROUP]`.
pub fn vs_name(key: &VsKey) -> String {
    match key {
        VsKey::Addr(ip, port) => format!("[{ip}]:tcp:{port}"),
        VsKey::Fwmark(m) => format!("FWM {m}"),
        VsKey::Group(g) => format!("[{g}]"),
    }
}

fn real_server(cx: &mut Cx<'_>, n: &Node) -> Option<RealServer> {
    let addr = cx.ip_arg(n, 0)?;
    let port = match n.args.get(1) {
        Some(w) => Some(cx.port(w)?),
        None => None,
    };
    let mut rs = RealServer {
        addr,
        port,
        weight: 1,
        lvs_method: None,
        tunnel: None,
        notify_up: None,
        notify_down: None,
        uthreshold: None,
        lthreshold: None,
        inhibit_on_failure: None,
        smtp_alert: None,
        alpha: None,
        timing: CheckTiming::default(),
        readmit_manual: false,
        checkers: Vec::new(),
        origin: origin(n),
    };
    for c in cx.block(n) {
        if let Some(kind) = checker::checker_kind_keyword(&c.key.text) {
            if let Some(chk) = checker::checker(cx, c, kind) {
                rs.checkers.push(chk);
            }
            continue;
        }
        cx.no_block(c);
        if timing_key(cx, c, &mut rs.timing, Level::RealServer) {
            continue;
        }
        match c.key.text.as_str() {
            "weight" => rs.weight = cx.int(c, 0, 0, 65535).map_or(1, |v| v as i32),
            "lvs_method" | "lb_kind" => {
                if let Some((m, t)) = method(cx, c) {
                    rs.lvs_method = Some(m);
                    rs.tunnel = t;
                }
            }
            // As a virtual server's quorum scripts.
            "notify_up" => cx.script_once(c, &mut rs.notify_up, "((null))"),
            "notify_down" => cx.script_once(c, &mut rs.notify_down, "((null))"),
            "uthreshold" => rs.uthreshold = cx.count(c, 0, i64::from(u32::MAX)),
            "lthreshold" => rs.lthreshold = cx.count(c, 0, i64::from(u32::MAX)),
            "inhibit_on_failure" => rs.inhibit_on_failure = Some(cx.boolean(c)),
            "smtp_alert" => rs.smtp_alert = Some(cx.boolean(c)),
            "alpha" => rs.alpha = Some(cx.boolean(c)),
            "readmit" => match c.args.first().map(|w| w.text.as_str()) {
                Some("manual") => rs.readmit_manual = true,
                Some("auto") => rs.readmit_manual = false,
                _ => {
                    cx.d.invalid(arg_span(c), "readmit must be 'manual' or 'auto'")
                }
            },
            _ => cx.unknown(c, RS_UNSUPPORTED),
        }
    }
    Some(rs)
}

pub(super) fn vs_group(cx: &mut Cx<'_>, n: &Node) -> Option<VsGroup> {
    let name = cx.name(n)?;
    let mut g = VsGroup {
        name,
        entries: Vec::new(),
        origin: origin(n),
    };
    for c in cx.block(n) {
        if c.key.text == "fwmark" {
            if let Some(m) = cx.int(c, 0, 0, i64::from(u32::MAX)) {
                g.entries.push(VsGroupEntry::Fwmark {
                    mark: m as u32,
                    family: c.args.get(1).map(|w| w.text.clone()),
                });
            }
            continue;
        }
        let text = c.key.text.as_str();
        let (base, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().ok()),
            None => (text, None),
        };
        // `10.0.0.1-10` ranges vary the last octet (IPv4) or hextet (IPv6).
        let (addr_s, range_end) = match base.rsplit_once('-') {
            Some((a, e)) if a.parse::<IpAddr>().is_ok() => {
                let end = if a.contains(':') {
                    u16::from_str_radix(e, 16).ok()
                } else {
                    e.parse::<u16>().ok()
                };
                (a, end)
            }
            _ => (base, None),
        };
        let Ok(addr) = addr_s.parse::<IpAddr>() else {
            cx.d.invalid(
                c.span(),
                format!("virtual_server_group {}: invalid address '{text}'", g.name),
            );
            continue;
        };
        let Some(pw) = cx.arg(c, 0) else { continue };
        let Some(port) = cx.port(pw) else { continue };
        if prefix.is_some() {
            cx.d.push(
                crate::diag::Class::Unsupported,
                Some(c.span()),
                "unsupported: an ADDRESS/PREFIX entry of a virtual_server_group is recognised but not run by holdfast",
            );
        }
        g.entries.push(VsGroupEntry::Addr {
            addr,
            range_end,
            prefix,
            port,
        });
    }
    Some(g)
}

#[cfg(test)]
mod tests {
    use crate::diag::Class;

    /// Whether a diagnostic of `class` starts with `start` and also holds `also`.
    fn said(loaded: &crate::Loaded, class: Class, start: &str, also: &str) -> bool {
        loaded
            .diagnostics
            .iter()
            .any(|d| d.class == class && d.message.starts_with(start) && d.message.contains(also))
    }

    fn vs(lines: &str) -> String {
        format!(
            "virtual_server 10.0.0.1 80 {{\n protocol TCP\n lb_algo rr\n lb_kind NAT\n{lines} real_server 10.0.0.5 80 {{\n }}\n}}\n"
        )
    }

    #[test]
    fn persistence_granularity_is_one_prefix_length_in_every_form_check_config_takes() {
        let prefix = |g: &str| {
            let loaded = crate::parse_str(&vs(&format!(" persistence_granularity {g}\n")));
            loaded.config.virtual_servers[0].persistence_prefix()
        };
        assert_eq!(prefix("255.255.255.0"), Some(Ok(24)));
        // inet_aton's forms, as keepalived reads them.
        assert_eq!(prefix("0xffffff00"), Some(Ok(24)));
        assert_eq!(prefix("255.255.0xff00"), Some(Ok(24)));
        assert_eq!(prefix("0.0.0.0"), Some(Ok(0)));
        assert_eq!(
            prefix("255.0.255.0"),
            Some(Err("255.0.255.0".parse().unwrap()))
        );
        let v6 = crate::parse_str(
            "virtual_server fd00::1 80 {\n protocol TCP\n lb_algo rr\n lb_kind NAT\n persistence_granularity 64\n real_server fd00::5 80 {\n }\n}\n",
        );
        assert_eq!(
            v6.config.virtual_servers[0].persistence_prefix(),
            Some(Ok(64))
        );
    }

    #[test]
    fn scheduler_flags_are_read_against_the_scheduler_set_before_them() {
        let loaded = crate::parse_str(&vs(" lb_algo sh\n sh-port\n sh-fallback\n"));
        assert!(loaded.diagnostics.is_empty(), "{}", loaded.render());
        let v = &loaded.config.virtual_servers[0];
        assert!(v.sched_port && v.sched_fallback);
        // Printed after the scheduler, they read back the same.
        let printed = crate::print::print(&loaded.config);
        assert!(
            printed.contains("lvs_sched sh\n    sh-port\n    sh-fallback\n"),
            "{printed}"
        );
        let again = crate::parse_str(&printed);
        assert_eq!(again.config.virtual_servers, loaded.config.virtual_servers);
        // With mh, the sh flags do nothing, silently (and the mh ones with sh).
        for text in [vs(" lb_algo mh\n sh-port\n"), vs(" lb_algo sh\n mh-port\n")] {
            let loaded = crate::parse_str(&text);
            assert!(!loaded.config.virtual_servers[0].sched_port);
            assert!(loaded.diagnostics.is_empty(), "{}", loaded.render());
        }
        // Before `lb_algo sh`, or with another scheduler: keepalived's complaint, ignored.
        for text in [vs(" sh-port\n lb_algo sh\n"), vs(" lb_algo rr\n sh-port\n")] {
            let loaded = crate::parse_str(&text);
            assert!(!loaded.config.virtual_servers[0].sched_port);
            assert!(
                loaded
                    .diagnostics
                    .iter()
                    .any(|d| d.message == "sh-port only applies to sh scheduler - ignoring"),
                "{}",
                loaded.render()
            );
        }
        // flag-1 and flag-2 whatever the scheduler; mh's own names with mh.
        let loaded = crate::parse_str(&vs(" lb_algo rr\n flag-1\n flag-2\n"));
        let v = &loaded.config.virtual_servers[0];
        assert!(v.sched_port && v.sched_fallback, "{}", loaded.render());
        let loaded = crate::parse_str(&vs(" lb_algo mh\n mh-port\n"));
        let v = &loaded.config.virtual_servers[0];
        assert!(v.sched_port && !v.sched_fallback, "{}", loaded.render());
    }

    #[test]
    fn ops_is_read_for_udp_and_reset_with_keepalived_s_complaint_otherwise() {
        let text = "virtual_server 10.0.0.1 53 {\n lb_algo rr\n lb_kind NAT\n ops\n protocol UDP\n real_server 10.0.0.5 53 {\n }\n}\n";
        let loaded = crate::parse_str(text);
        assert!(loaded.diagnostics.is_empty(), "{}", loaded.render());
        assert!(loaded.config.virtual_servers[0].ops);
        let again = crate::parse_str(&crate::print::print(&loaded.config));
        assert_eq!(again.config.virtual_servers, loaded.config.virtual_servers);
        let loaded = crate::parse_str(&vs(" ops\n"));
        assert!(!loaded.config.virtual_servers[0].ops);
        assert!(
            loaded.diagnostics.iter().any(|d| d.message
                == "Virtual server [10.0.0.1]:tcp:80: one packet scheduling requires UDP - resetting"),
            "{}",
            loaded.render()
        );
    }

    #[test]
    fn persistence_engine_is_read_cut_to_ipvs_s_field() {
        let loaded = crate::parse_str(&vs(" persistence_timeout 60\n persistence_engine sip\n"));
        assert!(loaded.diagnostics.is_empty(), "{}", loaded.render());
        let v = &loaded.config.virtual_servers[0];
        assert_eq!(v.persistence_engine.as_deref(), Some("sip"));
        let printed = crate::print::print(&loaded.config);
        assert!(printed.contains("persistence_engine sip"), "{printed}");
        assert_eq!(
            crate::parse_str(&printed).config.virtual_servers,
            loaded.config.virtual_servers
        );
        // keepalived copies it into IPVS's 16-byte name: 15 characters and the NUL.
        let loaded = crate::parse_str(&vs(" persistence_engine abcdefghijklmnopqrst\n"));
        assert_eq!(
            loaded.config.virtual_servers[0]
                .persistence_engine
                .as_deref(),
            Some("abcdefghijklmno")
        );
    }

    #[test]
    fn tunnel_options_are_read_with_keepalived_s_rules() {
        use crate::model::{LvsMethod, Tunnel, TunnelCsum, TunnelType};
        let text = "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n real_server 10.0.0.5 80 {\n  lvs_method TUN type gue port 6080 csum\n }\n real_server 10.0.0.6 80 {\n  lvs_method TUN\n }\n}\n";
        let loaded = crate::parse_str(text);
        assert!(loaded.diagnostics.is_empty(), "{}", loaded.render());
        let rs = &loaded.config.virtual_servers[0].real_servers;
        assert_eq!(rs[0].lvs_method, Some(LvsMethod::Tun));
        assert_eq!(
            rs[0].tunnel,
            Some(Tunnel {
                kind: TunnelType::Gue,
                port: 6080,
                csum: TunnelCsum::Csum
            })
        );
        assert_eq!(rs[1].tunnel, None);
        let printed = crate::print::print(&loaded.config);
        assert!(
            printed.contains("lvs_method TUN type gue port 6080 csum"),
            "{printed}"
        );
        let again = crate::parse_str(&printed);
        assert_eq!(again.config.virtual_servers, loaded.config.virtual_servers);
        // keepalived's complaints; the method stays TUN with the default tunnel.
        for (opts, want) in [
            (
                "type gue",
                "gue tunnels require port, otherwise cannot have port.",
            ),
            (
                "type ipip port 5",
                "gue tunnels require port, otherwise cannot have port.",
            ),
            (
                "type ipip csum",
                "ipip tunnels do not support checksum option.",
            ),
            (
                "type gre remcsum",
                "gre tunnels do not support remote checksum option.",
            ),
            ("type vxlan", "Unknown tunnel type vxlan"),
            ("mtu 1400", "Invalid tunnel option mtu"),
        ] {
            let text = format!(
                "virtual_server 10.0.0.1 80 {{\n protocol TCP\n real_server 10.0.0.5 80 {{\n  lvs_method TUN {opts}\n }}\n}}\n"
            );
            let loaded = crate::parse_str(&text);
            let rs = &loaded.config.virtual_servers[0].real_servers[0];
            assert_eq!(
                (rs.lvs_method, rs.tunnel),
                (Some(LvsMethod::Tun), None),
                "{opts}"
            );
            assert!(
                loaded.diagnostics.iter().any(|d| d.message == want),
                "{opts}: {}",
                loaded.render()
            );
        }
        // On NAT or DR keepalived takes them (`-t` exits 0) and IPVS ignores them: a note.
        for method in ["NAT", "DR"] {
            let text = format!(
                "virtual_server 10.0.0.1 80 {{\n protocol TCP\n lb_algo rr\n real_server 10.0.0.5 80 {{\n  lvs_method {method} type gue port 6080\n }}\n}}\n"
            );
            let loaded = crate::parse_str(&text);
            let rs = &loaded.config.virtual_servers[0].real_servers[0];
            assert_eq!(rs.tunnel, None, "{method}");
            assert_eq!(
                crate::diag::exit_code(&loaded.diagnostics, false),
                0,
                "{}",
                loaded.render()
            );
            assert!(
                said(
                    &loaded,
                    Class::Note,
                    "tunnel options have no effect without lvs_method TUN",
                    ""
                ),
                "{}",
                loaded.render()
            );
        }
    }

    #[test]
    fn ip_family_sets_a_mark_s_family_and_must_agree_with_an_address() {
        let loaded = crate::parse_str(
            "virtual_server fwmark 7 {\n lb_algo rr\n lb_kind NAT\n ip_family inet6\n real_server 2001:db8::5 80 {\n }\n}\n",
        );
        assert!(loaded.diagnostics.is_empty(), "{}", loaded.render());
        assert_eq!(loaded.config.virtual_servers[0].ip_family_v6, Some(true));
        let again = crate::parse_str(&crate::print::print(&loaded.config));
        assert_eq!(again.config.virtual_servers, loaded.config.virtual_servers);
        for (line, want) in [
            (
                " ip_family inet6\n",
                "Virtual server specified family inet6 conflicts with server family",
            ),
            (" ip_family ipx\n", "unknown address family ipx"),
        ] {
            let loaded = crate::parse_str(&vs(line));
            assert_eq!(loaded.config.virtual_servers[0].ip_family_v6, None);
            assert!(
                loaded.diagnostics.iter().any(|d| d.message == want),
                "{}",
                loaded.render()
            );
        }
    }

    #[test]
    fn a_service_without_protocol_is_tcp_and_the_difference_from_keepalived_is_noted() {
        let loaded = crate::parse_str(
            "virtual_server 10.0.0.1 80 {\n lb_algo rr\n lb_kind NAT\n real_server 10.0.0.5 80 {\n }\n}\nvirtual_server fwmark 3 {\n lb_algo rr\n lb_kind NAT\n real_server 10.0.0.5 80 {\n }\n}\n",
        );
        assert_eq!(
            loaded.config.virtual_servers[0].protocol,
            crate::model::Protocol::Tcp
        );
        let notes: Vec<&str> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.class == Class::Note)
            .map(|d| d.message.as_str())
            .collect();
        // The address service only: a fwmark service has no protocol of its own.
        assert_eq!(
            notes,
            [
                "Virtual server [10.0.0.1]:tcp:80: no protocol set - holdfast uses TCP (keepalived 2.2.7 defaults to UDP and reports an error; add 'protocol TCP' to be explicit)"
            ],
            "{}",
            loaded.render()
        );
        assert_eq!(crate::diag::exit_code(&loaded.diagnostics, false), 0);
    }
}
