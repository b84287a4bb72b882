//! `vrrp_instance` and `vrrp_sync_group`.

use std::net::IpAddr;
use std::time::Duration;

use super::{Cx, arg_span, global, origin, track};
use crate::diag::Class;
use crate::model::{
    Auth, AuthType, Garp, Global, InitState, Notify, Origin, SyncGroup, Tracking, UnicastPeer, Vip,
    VrrpInstance,
};
use crate::tree::Node;

const UNSUPPORTED: &[&str] = &[
    "use_vmac_addr",
    "use_ipvlan",
    "notify_priority_changes",
    "notify_deleted",
    "down_timer_adverts",
    "timer_expired_backup",
    "thread_timer_expired",
    "owner_ignore_adverts",
    "mcast_dst_ip",
    "track_src_ip",
    "old_unicast_checksum",
    "vrf",
    "no_virtual_ipaddress",
    "garp_extra_if",
    "linkbeat_use_polling",
    "kernel_rx_buf_size",
    "vmac_garp_intvl",
    "kernel_rx_buf_size",
];

/// keepalived's checks of instance keywords holdfast does not act on (reported unsupported),
/// where they depend on the instance read so far.
fn unsupported_instance_key(cx: &mut Cx<'_>, c: &Node, i: &VrrpInstance) {
    let name = &i.name;
    let args: Vec<&str> = c.args.iter().map(|w| w.text.as_str()).collect();
    let k = c.key.text.as_str();
    let bad = match k {
        "linkbeat_use_polling" => Some(format!(
            "({name}) 'linkbeat_use_polling' in vrrp instance deprecated - use linkbeat_interfaces block"
        )),
        "vrf" => match args.first() {
            _ if i.interface.is_some() => Some(format!(
                "({name}) Cannot specify VRF interface and interface - ignoring"
            )),
            Some(v) if v.len() >= 16 => Some(format!(
                "({name}) VRF interface name '{v}' too long - ignoring"
            )),
            Some(v) if cx.host.is_some_and(|h| !h.interface_exists(v)) => Some(format!(
                "({name}) WARNING - VRF interface {v} doesn't exist"
            )),
            _ => None,
        },
        "garp_extra_if" | "vmac_garp_intvl" => {
            super::garp_extra_if(c, 0).map(|m| format!("({name}): {m}"))
        }
        "mcast_dst_ip" => match args.first().map(|a| a.parse::<std::net::IpAddr>()) {
            Some(Err(_)) => Some(format!(
                "({name}) malformed mcast dest address {}. Skipping...",
                args[0]
            )),
            Some(Ok(ip))
                if i.vips
                    .first()
                    .is_some_and(|v| v.addr.is_ipv6() != ip.is_ipv6()) =>
            {
                Some(format!(
                    "({name}) mcast dest address {} MUST match VRRP instance family. Skipping...",
                    args[0]
                ))
            }
            Some(Ok(std::net::IpAddr::V4(a))) if !a.is_multicast() => Some(format!(
                "({name}) mcast_dst_ip {} not multicast. Skipping...",
                args[0]
            )),
            // Link-local multicast: ff02::/16.
            Some(Ok(std::net::IpAddr::V6(a))) if a.segments()[0] & 0xff0f != 0xff02 => {
                Some(format!(
                    "({name}) mcast_dst_ip {} not link-local multicast. Skipping...",
                    args[0]
                ))
            }
            _ => None,
        },
        _ => None,
    };
    cx.unknown(c, UNSUPPORTED);
    if k == "vmac_garp_intvl" {
        cx.d.invalid(
            c.line_span(),
            "Keyword \"vmac_garp_intvl\" is deprecated - please use \"garp_extra_if\"",
        );
    }
    let bare_is_bad = matches!(
        k,
        "linkbeat_use_polling" | "garp_extra_if" | "vmac_garp_intvl"
    );
    if let Some(msg) = bad.filter(|_| !args.is_empty() || bare_is_bad) {
        cx.d.invalid(c.line_span(), msg);
    }
}

/// keepalived's interface name check (`dev_name_valid`): 1–15 characters, not `.` or `..`,
/// no `/`, `:` or white space.
fn dev_name_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_ascii_whitespace())
}

/// A `use_vmac` MAC address as keepalived reads it: one or two hex digits per octet, `:`
/// between them; five octets (with or without a final `:`) leave the sixth to the VRID
/// (`Some((mac, true))`). `None` when malformed.
fn vmac_mac(text: &str) -> Option<([u8; 6], bool)> {
    let b = text.as_bytes();
    let mut mac = [0u8; 6];
    let mut p = 0;
    for (j, octet) in mac.iter_mut().enumerate() {
        let digits = b[p..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 2 {
            return None;
        }
        let end = p + digits;
        let next = b.get(end).copied();
        if next != Some(b':') && (next.is_some() || j < 4) {
            return None;
        }
        *octet = u8::from_str_radix(&text[p..end], 16).ok()?;
        if j == 4 && (next.is_none() || end + 1 == b.len()) {
            return Some((mac, true));
        }
        p = end + 1;
        if p >= b.len() && j < 5 {
            return None;
        }
    }
    Some((mac, false))
}

/// `use_vmac [NAME] [MAC]` (either order, the first two words), with keepalived's checks.
fn use_vmac(cx: &mut Cx<'_>, c: &Node, i: &mut VrrpInstance) {
    let name = i.name.clone();
    let mut v = i.vmac.take().unwrap_or_default();
    v.at = origin(c);
    for w in c.args.iter().take(2) {
        let t = w.text.as_str();
        if t.contains(':') {
            if v.mac.is_some() {
                cx.d.invalid(w.span, "VMAC interface address already specified");
                continue;
            }
            if !t.chars().all(|ch| ch.is_ascii_hexdigit() || ch == ':') {
                cx.d.invalid(w.span, format!("VMAC invalid MAC address {t}"));
                continue;
            }
            match vmac_mac(t) {
                None => {
                    cx.d.invalid(w.span, format!("VMAC invalid MAC address {t} - ignored"))
                }
                Some((m, _)) if m[0] & 1 == 1 => cx.d.invalid(
                    w.span,
                    format!("VMAC MAC address is multicast {t} - ignoring"),
                ),
                Some((m, _)) if m[..4] == [0, 0, 0x5e, 0] && matches!(m[4], 1 | 2) => cx.d.invalid(
                    w.span,
                    format!("VMAC MAC address not allowed to be RFC5798 address ({t}) - ignoring"),
                ),
                Some((m, use_vrid)) => {
                    v.mac = Some(m);
                    v.mac_use_vrid = use_vrid;
                }
            }
        } else {
            if v.name.is_some() {
                cx.d.invalid(w.span, "VMAC interface name already specified");
                continue;
            }
            if !dev_name_valid(t) {
                cx.d.invalid(
                    w.span,
                    format!("VMAC interface name '{t}' too long or invalid characters - ignoring"),
                );
                continue;
            }
            if let Some((other, _)) = cx.vmac_names.iter().find(|(_, n)| n == t) {
                let msg =
                    format!("({name}) VRRP instance {other} is already using {t} - ignoring name");
                cx.d.invalid(w.span, msg);
                continue;
            }
            if cx.host.and_then(|h| h.private_macvlan(t)) == Some(false) {
                cx.d.invalid(
                    w.span,
                    format!(
                        "({name}) interface {t} already exists and is not a private macvlan; ignoring vmac if_name"
                    ),
                );
                continue;
            }
            v.name = Some(t.to_owned());
            cx.vmac_names.push((name.clone(), t.to_owned()));
        }
    }
    i.vmac = Some(v);
}

/// Tries the `notify*` keywords; returns whether `n` was one.
fn notify_key(cx: &mut Cx<'_>, n: &Node, notify: &mut Notify, owner: &str) -> bool {
    let slot = match n.key.text.as_str() {
        "notify_master" => &mut notify.master,
        "notify_backup" => &mut notify.backup,
        "notify_fault" => &mut notify.fault,
        "notify_stop" => &mut notify.stop,
        "notify" => &mut notify.generic,
        "notify_master_rx_lower_pri" => &mut notify.master_rx_lower_pri,
        _ => return false,
    };
    cx.script_once(n, slot, owner);
    true
}

pub(super) fn instance(
    cx: &mut Cx<'_>,
    n: &Node,
    g: &Global,
) -> Option<Result<VrrpInstance, VrrpInstance>> {
    let name = cx.name(n)?;
    let mut i = VrrpInstance {
        name: name.clone(),
        state: InitState::Backup,
        interface: None,
        interface_at: Origin::default(),
        replaced_interfaces: Default::default(),
        vrid: 0,
        priority: 100,
        advert_int: Duration::from_secs(1),
        version: g.vrrp_version,
        nopreempt: false,
        preempt_delay: None,
        preempt_fast: false,
        unicast_peers: Vec::new(),
        unicast_src_ip: None,
        mcast_src_ip: None,
        unicast_ttl: None,
        check_unicast_src: g.check_unicast_src,
        unicast_fault_no_peer: false,
        smtp_alert: None,
        auth: None,
        vips: Vec::new(),
        excluded_vips: Vec::new(),
        routes: Vec::new(),
        rules: Vec::new(),
        track: Tracking::default(),
        dont_track_primary: false,
        native_ipv6: false,
        accept: None,
        skip_check_adv_addr: None,
        strict_mode: None,
        garp: Garp::default(),
        lower_prio_no_advert: None,
        higher_prio_send_advert: None,
        notify: Notify::default(),
        promote_secondaries: false,
        debug: 0,
        vmac: None,
        vmac_xmit_base: false,
        origin: origin(n),
    };
    let mut priority_set = false;
    let mut version_set = false;
    for c in cx.block(n) {
        if track::tracking_key(cx, c, &mut i.track) {
            continue;
        }
        match c.key.text.as_str() {
            "authentication" => i.auth = auth(cx, c, &name),
            "virtual_ipaddress" => vips(cx, c, &name, &mut i.vips),
            "virtual_ipaddress_excluded" => vips(cx, c, &name, &mut i.excluded_vips),
            "virtual_routes" => i.routes.extend(super::route::routes(cx, c)),
            "virtual_rules" => {
                let mut auto = std::mem::take(&mut cx.rule_priorities);
                i.rules.extend(super::route::rules(cx, c, &mut auto));
                cx.rule_priorities = auto;
            }
            "unicast_peer" => {
                let mut peers = std::mem::take(&mut i.unicast_peers);
                unicast_peers(cx, c, &mut peers, &i);
                i.unicast_peers = peers;
            }
            "track_bfd" => {
                let mut t = std::mem::take(&mut i.track.bfds);
                super::bfd::track(cx, c, &i.name, &mut t);
                i.track.bfds = t;
            }
            _ => {
                cx.no_block(c);
                if notify_key(cx, c, &mut i.notify, &format!("({name})"))
                    || global::garp_key(cx, c, &c.key.text, &mut i.garp, "")
                {
                    continue;
                }
                scalar(cx, c, &mut i, &mut priority_set, &mut version_set);
            }
        }
    }
    let strict = i.strict_mode.unwrap_or(g.strict);
    if strict {
        strict_first(cx, n, &mut i, version_set, priority_set);
    }
    finish(cx, n, &mut i, priority_set, version_set);
    unicast_without_peers(cx, n, &i);
    vmac_end(cx, n, &mut i);
    if i.unicast_peers.is_empty() && i.unicast_ttl.is_some() {
        cx.d.invalid(
            n.close.unwrap_or(n.span()),
            format!(
                "({}): Cannot use unicast_ttl without unicast peers - resetting",
                i.name
            ),
        );
        i.unicast_ttl = None;
    }
    vmac_complete(cx, n, &mut i, strict);
    if strict && !strict_rules(cx, n, &mut i) {
        return Some(Err(i));
    }
    // keepalived: VRRPv3 (or strict mode) needs a VIP (the instance is dropped); v2 runs
    // without one, but says it is not sensible.
    if i.vips.is_empty() {
        if i.version == 3 || strict {
            cx.d.push_unlined(
                Class::Invalid,
                Some(n.span()),
                format!("({}) No VIP specified; at least one is required", i.name),
            );
            return Some(Err(i));
        }
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!("({}) No VIP specified; at least one is sensible", i.name),
        );
    }
    Some(Ok(i))
}

fn scalar(
    cx: &mut Cx<'_>,
    c: &Node,
    i: &mut VrrpInstance,
    priority_set: &mut bool,
    version_set: &mut bool,
) {
    let name = i.name.clone();
    match c.key.text.as_str() {
        "state" => match c.args.first().map(|w| w.text.as_str()) {
            Some("MASTER") => i.state = InitState::Master,
            Some("BACKUP") => i.state = InitState::Backup,
            None => {
                cx.arg(c, 0);
            }
            _ => cx.d.invalid(
                arg_span(c),
                format!(
                    "({name}) unknown state '{}', defaulting to BACKUP",
                    c.args.first().map_or("", |w| w.text.as_str())
                ),
            ),
        },
        "interface" => {
            if let Some(w) = cx.arg(c, 0) {
                // IFNAMSIZ holds 15 characters and the terminating NUL.
                if w.text.len() >= 16 {
                    cx.d.invalid(
                        w.span,
                        format!("Interface name '{}' too long - ignoring", w.text),
                    );
                } else if w.text == "lo" {
                    cx.d.invalid(
                        w.span,
                        format!(
                            "({name}) cannot use a loopback interface (lo) for vrrp - ignoring"
                        ),
                    );
                } else {
                    if let Some(old) = i.interface.replace(w.text.clone()) {
                        i.replaced_interfaces.0.push((old, i.interface_at));
                    }
                    i.interface_at = origin(c);
                }
            }
        }
        "virtual_router_id" => {
            if let Some(v) = cx.int(c, 0, 1, 255) {
                i.vrid = v as u8;
            }
        }
        "priority" => match cx.int(c, 0, 1, 255) {
            Some(v) => {
                i.priority = v as u8;
                *priority_set = true;
            }
            None => cx.d.note(
                c.span(),
                format!("({name}) Priority not valid! must be between 1 & 255. Using default 100"),
            ),
        },
        "advert_int" => {
            if let Some(d) = cx.timer(c, 0, 255) {
                if d.is_zero() {
                    cx.d.invalid(
                        arg_span(c),
                        format!("({name}) Advert interval must be greater than 0 - ignoring"),
                    );
                } else {
                    i.advert_int = d;
                }
            }
        }
        "version" => {
            if let Some(v) = cx.int(c, 0, 2, 3) {
                i.version = v as u8;
                *version_set = true;
            }
        }
        "nopreempt" => i.nopreempt = true,
        "smtp_alert" => i.smtp_alert = Some(cx.boolean(c)),
        "preempt" => {}
        "preempt_delay" => i.preempt_delay = cx.timer(c, 0, 1000),
        "preempt_fast" => i.preempt_fast = true,
        "unicast_src_ip" | "mcast_src_ip" => {
            let ip = cx.ip_arg(c, 0);
            // keepalived: once the VIPs before it set the instance's family, a source
            // address of the other family is refused.
            let ip = match (ip, i.vips.first()) {
                (Some(a), Some(v)) if a.is_ipv6() != v.addr.is_ipv6() => {
                    cx.d.invalid(
                        c.line_span(),
                        format!(
                            "Configuration error: VRRP instance[{}] and src address[{a}] MUST be of the same family !!! Skipping...",
                            i.name
                        ),
                    );
                    None
                }
                (ip, _) => ip,
            };
            if c.key.text == "unicast_src_ip" {
                i.unicast_src_ip = ip;
            } else {
                i.mcast_src_ip = ip;
            }
        }
        // An invalid value keeps the one before it, as keepalived does.
        "unicast_ttl" => {
            if let Some(v) = cx.int(c, 0, 1, 255) {
                i.unicast_ttl = Some(v as u8);
            }
        }
        "check_unicast_src" => i.check_unicast_src = true,
        "unicast_fault_no_peer" => {
            cx.not_implemented(c);
            i.unicast_fault_no_peer = true
        }
        "dont_track_primary" => i.dont_track_primary = true,
        // keepalived: refused once an IPv4 address set the family; otherwise IPv6 and VRRPv3.
        "native_ipv6" => {
            let v4 = i
                .vips
                .first()
                .map(|v| v.addr)
                .or(i.unicast_src_ip)
                .or(i.mcast_src_ip)
                .or(i.unicast_peers.first().map(|p| p.addr))
                .is_some_and(|a| a.is_ipv4());
            if v4 {
                cx.d.invalid(
                    c.line_span(),
                    format!(
                        "({}) Cannot specify native_ipv6 with IPv4 addresses",
                        i.name
                    ),
                );
            } else {
                i.native_ipv6 = true;
                i.version = 3;
            }
        }
        "accept" => i.accept = Some(true),
        "no_accept" => i.accept = Some(false),
        "skip_check_adv_addr" => i.skip_check_adv_addr = Some(cx.boolean(c)),
        "strict_mode" => i.strict_mode = Some(cx.boolean(c)),
        "lower_prio_no_advert" => i.lower_prio_no_advert = Some(cx.boolean(c)),
        "higher_prio_send_advert" => i.higher_prio_send_advert = Some(cx.boolean(c)),
        "promote_secondaries" => i.promote_secondaries = true,
        "use_vmac" => use_vmac(cx, c, i),
        "vmac_xmit_base" => i.vmac_xmit_base = true,
        "debug" => match cx.int(c, 0, 0, 4) {
            Some(v) => i.debug = v as u8,
            None => {
                if let Some(w) = c.args.first() {
                    cx.d.invalid(
                        c.line_span(),
                        format!(
                            "({}) Debug value '{}' not valid; must be between 0-4",
                            i.name, w.text
                        ),
                    );
                }
            }
        },
        "lvs_sync_daemon_interface" => {
            // keepalived reports it as a configuration error (keepalived -t exits 5) and
            // still runs the sync daemon it asks for; so does holdfast.
            cx.d.invalid(
                c.span(),
                format!("({name}) Specifying lvs_sync_daemon_interface against a vrrp is deprecated. Please use global lvs_sync_daemon"),
            );
            // keepalived keeps the first one named (reading no value after it).
            if let Some(first) = cx.sync_daemon_named.clone() {
                cx.d.invalid(
                    c.span(),
                    format!(
                        "({name}) lvs_sync_daemon_interface has already been specified as {first} - ignoring"
                    ),
                );
                return;
            }
            let Some(f) = cx.string(c) else { return };
            cx.sync_daemon_named = Some(f.clone());
            // An interface name is at most 15 bytes (IFNAMSIZ), as for lvs_sync_daemon.
            if f.len() < 16 && cx.sync_daemon_interface.is_none() {
                cx.sync_daemon_interface = Some((f, name.to_string(), super::origin(c)));
            }
        }
        "linkbeat_use_polling" | "vrf" | "garp_extra_if" | "vmac_garp_intvl" | "mcast_dst_ip" => {
            unsupported_instance_key(cx, c, i)
        }
        _ => cx.unknown(c, UNSUPPORTED),
    }
}

/// Strict mode's checks that come before the others in keepalived's `vrrp_complete_instance`:
/// an IPv6 instance of VRRP version 2 is an error (not just a note) and becomes version 3;
/// the initial state MASTER is for the address owner only (before the checks of an initial
/// MASTER's preemption settings, which then no longer apply).
/// keepalived: a unicast keyword without a unicast peer is deprecated (it runs multicast),
/// unless `unicast_fault_no_peer` makes it a fault.
/// Whether the instance has a unicast keyword (keepalived's "unicast configured").
fn unicast_configured(n: &Node) -> bool {
    const UNICAST: &[&str] = &[
        "unicast_peer",
        "check_unicast_src",
        "old_unicast_checksum",
        "unicast_src_ip",
        "unicast_fault_no_peer",
    ];
    n.block
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .any(|c| UNICAST.contains(&c.key.text.as_str()))
}

/// keepalived's check of `use_vmac` with unicast at the instance's closing brace: adverts
/// then go out of the base interface (`vmac_xmit_base`), or, without an interface, no VMAC.
fn vmac_end(cx: &mut Cx<'_>, n: &Node, i: &mut VrrpInstance) {
    if i.vmac.is_none() || !unicast_configured(n) {
        return;
    }
    let at = n.close.unwrap_or(n.span());
    if i.interface.is_none() {
        let msg = format!(
            "({}): Cannot use VMAC/ipvlan with unicast and no interface - clearing use_vmac",
            i.name
        );
        cx.d.invalid(at, msg);
        i.vmac = None;
    } else if !i.vmac_xmit_base {
        let msg = format!(
            "({}) unicast with use_vmac requires vmac_xmit_base - setting",
            i.name
        );
        cx.d.invalid(at, msg);
        i.vmac_xmit_base = true;
    }
}

/// keepalived's checks of `use_vmac` once the instance is read.
fn vmac_complete(cx: &mut Cx<'_>, n: &Node, i: &mut VrrpInstance, strict: bool) {
    let name = i.name.clone();
    let mut unlined = |msg: String| cx.d.push_unlined(Class::Invalid, Some(n.span()), msg);
    match &mut i.vmac {
        None => {
            if i.vmac_xmit_base {
                unlined(format!("({name}) vmac_xmit_base is only valid with a vmac"));
                i.vmac_xmit_base = false;
            }
        }
        Some(v) => {
            if strict && v.mac.is_some() {
                unlined(format!(
                    "({name}): cannot specify MAC address with strict mode - clearing"
                ));
                v.mac = None;
                v.mac_use_vrid = false;
            }
            if let Some(m) = v.mac.as_mut().filter(|_| v.mac_use_vrid) {
                m[5] = i.vrid;
            }
            if strict && i.vmac_xmit_base {
                unlined(format!(
                    "({name}) xmit_base is incompatible with strict mode - resetting"
                ));
                i.vmac_xmit_base = false;
            }
            if i.promote_secondaries {
                unlined(format!(
                    "({name}) promote_secondaries is automatically set for vmacs - ignoring"
                ));
                i.promote_secondaries = false;
            }
        }
    }
}

fn unicast_without_peers(cx: &mut Cx<'_>, n: &Node, i: &VrrpInstance) {
    let configured = unicast_configured(n);
    if configured && i.unicast_peers.is_empty() && !i.unicast_fault_no_peer {
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!(
                "({}) A unicast keyword has been specified without any unicast peers. Defaulting to multicast. This usage is deprecated - please update your configuration.",
                i.name
            ),
        );
    }
}

fn strict_first(
    cx: &mut Cx<'_>,
    n: &Node,
    i: &mut VrrpInstance,
    version_set: bool,
    priority_set: bool,
) {
    let v6 = i.is_v6();
    if v6 && version_set && i.version == 2 {
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!(
                "({}) cannot use IPv6 with VRRP version 2; setting version 3",
                i.name
            ),
        );
        i.version = 3;
    }
    // `state MASTER` without a priority makes the instance the owner (priority 255).
    let owner = i.priority == 255 || (i.state == InitState::Master && !priority_set);
    if (i.state == InitState::Master) != owner {
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!("({}) State MASTER must match being address owner", i.name),
        );
        i.state = if owner {
            InitState::Master
        } else {
            InitState::Backup
        };
    }
}

/// `vrrp_strict` / `strict_mode` (RFC 5798 to the letter), as keepalived 2.2.7 applies it
/// with its messages: no authentication, no unicast, the initial state MASTER only for the
/// address owner, no `preempt_delay`, IPv6 VIPs led by a link-local one, no accept mode for a
/// VRRPv2 non-owner, and no answer to lower-priority adverts beyond the advert itself. An
/// instance keepalived drops returns `false`.
fn strict_rules(cx: &mut Cx<'_>, n: &Node, i: &mut VrrpInstance) -> bool {
    let name = i.name.clone();
    let err = |cx: &mut Cx<'_>, msg: String| {
        cx.d.push_unlined(Class::Invalid, Some(n.span()), msg);
    };
    let owner = i.priority == 255;
    if i.auth.is_some() {
        err(
            cx,
            format!("({name}) Strict mode does not support authentication. Ignoring."),
        );
        i.auth = None;
    }
    // keepalived 2.2.7 means to refuse unicast peers in strict mode, but checks before it has
    // marked the instance unicast: it never does, and runs the instance with its peers.
    if let Some(IpAddr::V6(a)) = i.vips.first().map(|v| v.addr)
        && (a.segments()[0] & 0xffc0) != 0xfe80
    {
        err(
            cx,
            format!("({name}) the first IPv6 VIP address must be link local"),
        );
    }
    if i.preempt_delay.is_some_and(|d| !d.is_zero()) {
        err(
            cx,
            format!("({name}) preempt_delay is incompatible with strict mode - resetting"),
        );
        i.preempt_delay = None;
    }
    if i.accept == Some(true) && !owner && i.version == 2 {
        err(
            cx,
            format!(
                "({name}) warning - accept mode for VRRP version 2 does not comply with RFC3768 - resetting"
            ),
        );
        i.accept = Some(false);
    }
    match i.garp.lower_prio_repeat {
        Some(r) if r != 0 => {
            err(
                cx,
                format!("({name}) Strict mode requires no repeat garps. resetting"),
            );
            i.garp.lower_prio_repeat = Some(0);
        }
        Some(_) => {}
        None => i.garp.lower_prio_repeat = Some(0),
    }
    match i.garp.lower_prio_delay {
        Some(d) if !d.is_zero() => {
            err(
                cx,
                format!("({name}) Strict mode requires no repeat garp delay. resetting"),
            );
            i.garp.lower_prio_delay = Some(Duration::ZERO);
        }
        Some(_) => {}
        None => i.garp.lower_prio_delay = Some(Duration::ZERO),
    }
    if i.lower_prio_no_advert == Some(false) {
        err(
            cx,
            format!("({name}) Strict mode requires no lower priority advert. resetting"),
        );
    }
    i.lower_prio_no_advert = Some(true);
    if i.higher_prio_send_advert == Some(true) {
        err(
            cx,
            format!("({name}) strict mode requires higher_prio_send_advert to be clear. resetting"),
        );
    }
    i.higher_prio_send_advert = Some(false);
    // keepalived's default accept mode in strict mode: only the address owner accepts.
    if i.accept.is_none() {
        i.accept = Some(owner);
    }
    true
}

/// keepalived's post-parse adjustments (`vrrp_complete_instance`).
fn finish(cx: &mut Cx<'_>, n: &Node, i: &mut VrrpInstance, priority_set: bool, version_set: bool) {
    let name = i.name.clone();
    // keepalived's minimum configuration: a VRID, and an interface or unicast peers.
    let missing = if i.vrid == 0 {
        Some("the virtual router id must be set")
    } else if i.interface.is_none() && i.unicast_peers.is_empty() {
        Some("Unknown interface!")
    } else {
        None
    };
    if let Some(what) = missing.filter(|_| !cx.min_cfg_failed) {
        cx.min_cfg_failed = true;
        cx.d.push_unlined(Class::Invalid, Some(n.span()), format!("({name}) {what}"));
    }
    if i.state == InitState::Master && !priority_set {
        i.priority = 255;
    }
    let v6 = i.is_v6();
    if v6 && !version_set {
        i.version = 3;
    } else if v6 && i.version == 2 {
        // keepalived sets version 3 and says so in its log; `-t` exits 0.
        cx.d.push_unlined(
            Class::Note,
            Some(n.span()),
            format!("({name}) cannot use IPv6 with VRRP version 2; setting version 3"),
        );
        i.version = 3;
    }
    if i.nopreempt && i.priority == 255 {
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!("({name}) nopreempt is incompatible with priority 255. resetting nopreempt"),
        );
        i.nopreempt = false;
    }
    // keepalived: an initial MASTER preempts whatever the settings say.
    if i.state == InitState::Master {
        if i.nopreempt {
            cx.d.push_unlined(
                Class::Invalid,
                Some(n.span()),
                format!("({name}) Warning - nopreempt will not work with initial state MASTER - clearing"),
            );
            i.nopreempt = false;
        }
        if i.preempt_delay.is_some_and(|d| !d.is_zero()) {
            cx.d.push_unlined(
                Class::Invalid,
                Some(n.span()),
                format!("({name}) Warning - preempt delay will not work with initial state MASTER - clearing"),
            );
            i.preempt_delay = None;
        }
    }
    if i.nopreempt && i.preempt_delay.is_some_and(|d| !d.is_zero()) {
        cx.d.push_unlined(
            Class::Invalid,
            Some(n.span()),
            format!("({name}) preempt_delay is incompatible with nopreempt mode - resetting"),
        );
        i.preempt_delay = None;
    }
    if i.version == 2 {
        let us = i.advert_int.as_micros();
        if !us.is_multiple_of(1_000_000) {
            cx.d.push_unlined(
                Class::Invalid,
                Some(n.span()),
                format!(
                    "({name}) VRRPv2 advertisement interval {}.{:06}s must be an integer. rounding",
                    us / 1_000_000,
                    us % 1_000_000
                ),
            );
            let secs = ((us + 500_000) / 1_000_000).max(1) as u64;
            i.advert_int = Duration::from_secs(secs);
        }
        if let Some(a) = &i.auth
            && a.auth_type == AuthType::Ah
            && i.state == InitState::Master
        {
            cx.d.push_unlined(Class::Invalid, Some(n.span()), format!("({name}) Initial state master is incompatible with AH authentication - clearing"));
            i.state = InitState::Backup;
        }
    } else {
        let us = i.advert_int.as_micros();
        if !us.is_multiple_of(10_000) {
            cx.d.push_unlined(
                Class::Invalid,
                Some(n.span()),
                format!("({name}) VRRPv3 advertisement interval {}.{:06}s must be in units of 10ms - rounding", us / 1_000_000, us % 1_000_000),
            );
            let cs = ((us + 5_000) / 10_000).max(1) as u64;
            i.advert_int = Duration::from_millis(cs * 10);
        }
        if i.advert_int > Duration::from_millis(40_950) {
            cx.d.push_unlined(
                Class::Invalid,
                Some(n.span()),
                format!("({name}) VRRPv3 advertisement interval too large; using 40.95s"),
            );
            i.advert_int = Duration::from_millis(40_950);
        }
        if i.auth.is_some() {
            cx.d.push_unlined(
                Class::Invalid,
                Some(n.span()),
                format!("({name}) authentication is not supported with VRRPv3 - ignoring"),
            );
            i.auth = None;
        }
    }
}

fn auth(cx: &mut Cx<'_>, n: &Node, name: &str) -> Option<Auth> {
    let mut t = None;
    let mut pass = None;
    for c in cx.block(n) {
        cx.no_block(c);
        match c.key.text.as_str() {
            "auth_type" => match c.args.first().map(|w| w.text.as_str()) {
                Some("PASS") => t = Some(AuthType::Pass),
                Some("AH") => t = Some(AuthType::Ah),
                _ => cx.d.invalid(
                    arg_span(c),
                    format!(
                        "({name}) unknown authentication type '{}'",
                        c.args.first().map_or("", |w| w.text.as_str())
                    ),
                ),
            },
            "auth_pass" => {
                pass = cx.string(c);
                // keepalived keeps the 8 bytes the advert has room for, and says so.
                if let (Some(p), Some(w)) = (pass.as_mut(), c.args.first())
                    && p.len() > 8
                {
                    cx.d.invalid(w.span, "Truncating auth_pass to 8 characters");
                    let mut end = 8;
                    while !p.is_char_boundary(end) {
                        end -= 1;
                    }
                    p.truncate(end);
                }
            }
            _ => cx.unknown(c, &[]),
        }
    }
    match (t, pass) {
        (Some(auth_type), Some(pass)) => Some(Auth { auth_type, pass }),
        (Some(auth_type), None) => Some(Auth {
            auth_type,
            pass: String::new(),
        }),
        (None, _) => None,
    }
}

fn unicast_peers(cx: &mut Cx<'_>, n: &Node, out: &mut Vec<UnicastPeer>, i: &VrrpInstance) {
    for c in cx.block(n) {
        let Some(addr) = cx.sockaddr_ip(&c.key) else {
            continue;
        };
        // keepalived: once the VIPs before it set the instance's family, a peer of the
        // other family is refused.
        if let Some(v) = i.vips.first()
            && v.addr.is_ipv6() != addr.is_ipv6()
        {
            cx.d.invalid(
                c.line_span(),
                format!(
                    "Configuration error: VRRP instance[{}] and unicast peer address[{addr}] MUST be of the same family !!! Skipping...",
                    i.name
                ),
            );
            continue;
        }
        let mut p = UnicastPeer {
            addr,
            min_ttl: None,
            max_ttl: None,
        };
        let mut k = 0;
        while k < c.args.len() {
            let opt = c.args[k].text.as_str();
            let val = c.args.get(k + 1);
            match (opt, val) {
                ("min_ttl", Some(v)) => {
                    p.min_ttl = cx.int_word(v, "min_ttl", 0, 255).map(|v| v as u8)
                }
                ("max_ttl", Some(v)) => {
                    p.max_ttl = cx.int_word(v, "max_ttl", 0, 255).map(|v| v as u8)
                }
                _ => cx.d.invalid(
                    c.args[k].span,
                    format!("unicast_peer: unknown option '{opt}'"),
                ),
            }
            k += 2;
        }
        out.push(p);
    }
}

/// `virtual_ipaddress { IP[/MASK] [brd …] [dev …] [scope …] [label …] … }`.
fn vips(cx: &mut Cx<'_>, n: &Node, name: &str, out: &mut Vec<Vip>) {
    for c in cx.block(n) {
        if let Some(v) = vip(cx, c, name) {
            if let Some(first) = out.first()
                && first.addr.is_ipv4() != v.addr.is_ipv4()
                && n.key.text == "virtual_ipaddress"
            {
                cx.d.invalid(
                    c.span(),
                    format!(
                        "({name}): address family must match VRRP instance [{}] - ignoring",
                        v.addr
                    ),
                );
                continue;
            }
            out.push(v);
        }
    }
}

pub(super) fn vip(cx: &mut Cx<'_>, c: &Node, name: &str) -> Option<Vip> {
    let (addr_s, prefix_s) = match c.key.text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (c.key.text.as_str(), None),
    };
    let Ok(addr) = addr_s.parse::<IpAddr>() else {
        cx.d.invalid(
            c.span(),
            format!("VRRP parsed invalid IP {}. skipping IP...", c.key.text),
        );
        return None;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_s.map(str::parse::<u8>) {
        None => max,
        Some(Ok(p)) if p <= max => p,
        Some(_) => {
            cx.d.invalid(
                c.span(),
                format!("VRRP parsed invalid IP {}. skipping IP...", c.key.text),
            );
            return None;
        }
    };
    let _ = name;
    let mut v = Vip {
        addr,
        prefix,
        brd: None,
        dev: None,
        scope: None,
        label: None,
        peer: None,
        flags: Vec::new(),
        preferred_lft: None,
        origin: origin(c),
    };
    let mut k = 0;
    while k < c.args.len() {
        let w = &c.args[k];
        let val = c.args.get(k + 1);
        let takes_value = matches!(
            w.text.as_str(),
            "brd" | "broadcast" | "dev" | "scope" | "label" | "peer" | "preferred_lft"
        );
        if takes_value && val.is_none() {
            cx.d.invalid(w.span, format!("'{}' needs a value", w.text));
            break;
        }
        match (w.text.as_str(), val) {
            ("brd" | "broadcast", Some(b)) => v.brd = Some(b.text.clone()),
            ("dev", Some(d)) => v.dev = Some(d.text.clone()),
            ("scope", Some(s)) => {
                if matches!(
                    s.text.as_str(),
                    "site" | "link" | "host" | "nowhere" | "global"
                ) || s.text.parse::<u8>().is_ok()
                {
                    v.scope = Some(s.text.clone());
                } else {
                    cx.d.invalid(
                        s.span,
                        format!(
                            "Invalid scope '{}' specified for {} - ignoring",
                            s.text, c.key.text
                        ),
                    );
                }
            }
            ("label", Some(l)) => v.label = Some(l.text.clone()),
            ("peer", Some(p)) => v.peer = cx.ip(p),
            ("preferred_lft", Some(p)) => {
                if p.text != "forever" && p.text.parse::<u32>().is_err() {
                    cx.d.invalid(
                        p.span,
                        format!("preferred_lft '{}' is not 'forever' or seconds", p.text),
                    );
                }
                v.preferred_lft = Some(p.text.clone())
            }
            (
                "home" | "-nodad" | "nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin"
                | "no_track",
                _,
            ) => {
                v.flags.push(w.text.clone());
                k += 1;
                continue;
            }
            ("use_vmac", _) => {
                cx.d.push(
                    Class::Unsupported,
                    Some(w.span),
                    "unsupported: VIP option 'use_vmac' is not implemented by holdfast",
                );
                k += 1;
                continue;
            }
            _ => {
                cx.d.invalid(
                    w.span,
                    format!(
                        "Unknown configuration entry '{}' for ip address - ignoring",
                        w.text
                    ),
                );
                k += 1;
                continue;
            }
        }
        k += 2;
    }
    // keepalived: IPv6 addresses take neither a scope nor a label.
    if addr.is_ipv6() {
        for (what, set) in [("scope", &mut v.scope), ("label", &mut v.label)] {
            if set.take().is_some() {
                cx.d.invalid(
                    c.span(),
                    format!(
                        "Cannot specify {what} for IPv6 addresses ({}) - ignoring {what}",
                        c.key.text
                    ),
                );
            }
        }
    }
    Some(v)
}

pub(super) fn sync_group(cx: &mut Cx<'_>, n: &Node) -> Option<SyncGroup> {
    let name = cx.name(n)?;
    let mut g = SyncGroup {
        name,
        origin: origin(n),
        ..Default::default()
    };
    let mut group_seen = false;
    for c in cx.block(n) {
        if track::tracking_key(cx, c, &mut g.track) {
            continue;
        }
        match c.key.text.as_str() {
            // keepalived refuses a second list without reading its block (its lines pass
            // unreported); its `}` ends the group (the tree reads what follows at the top
            // level).
            "group" if group_seen => {
                cx.d.invalid(
                    c.line_span(),
                    format!("Group list already specified for sync group {}", g.name),
                );
            }
            "group" => {
                group_seen = true;
                for m in cx.block(c) {
                    g.members.push(m.key.text.clone());
                    for extra in &m.args {
                        g.members.push(extra.text.clone());
                    }
                }
            }
            "sync_group_tracking_weight" | "global_tracking" => {
                // keepalived reports the old spelling as an error (and honours it).
                if c.key.text == "global_tracking" {
                    cx.d.invalid(
                        c.line_span(),
                        format!(
                            "({}) global_tracking is deprecated. Use track_interface/script/file on the sync group",
                            g.name
                        ),
                    );
                }
                g.tracking_weight = true;
            }
            "smtp_alert" => g.smtp_alert = Some(cx.boolean(c)),
            "track_bfd" => {
                let mut t = std::mem::take(&mut g.track.bfds);
                super::bfd::track(cx, c, &g.name, &mut t);
                g.track.bfds = t;
            }
            _ => {
                if !notify_key(cx, c, &mut g.notify, &format!("vrrp group {}:", g.name)) {
                    cx.unknown(c, &["notify_priority_changes", "notify_deleted"]);
                }
            }
        }
    }
    Some(g)
}
