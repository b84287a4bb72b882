//! `global_defs`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{Cx, user_spec};
use crate::model::{Command, DataPlane, Garp, Global, LvsSyncDaemon, LvsTimeouts};
use crate::tree::Node;

const UNSUPPORTED: &[&str] = &[
    "nftables_ipvs",
    "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark",
    "disable_local_igmp",
    "enable_snmp_vrrp",
    "enable_snmp_checker",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_snmp_keepalived",
    "enable_traps",
    "snmp_socket",
    "enable_dbus",
    "dbus_service_name",
    "dbus_no_interface_name",
    "reload_check_config",
    "reload_time_file",
    "reload_repeat",
    "reload_file",
    "vrrp_down_timer_adverts",
    "vrrp_owner_ignore_adverts",
    "log_unknown_vrids",
    "vmac_prefix",
    "vmac_addr_prefix",
    "vrrp_rx_bufs_policy",
    "vrrp_rx_bufs_multiplier",
    "umask",
    "random_seed",
    "rs_init_notifies",
    "linkbeat_use_polling",
    "namespace_with_ipsets",
    "process_names",
    "process_name",
    "vrrp_process_name",
    "checker_process_name",
    "lvs_process_name",
    "vrrp_vmac_garp_intvl",
    "include_check",
    "bfd_process_name",
    "tmp_config_directory",
    "config_save_dir",
    "data_use_instance",
    "json_version",
    "use_symlink_paths",
    "lvs_sync_daemon_interface",
    "bfd_priority",
    "bfd_rt_priority",
    "bfd_no_swap",
    "bfd_rlimit_rttime",
    "bfd_rlimit_rtime",
    "vrrp_cpu_affinity",
    "checker_cpu_affinity",
    "bfd_cpu_affinity",
    "min_auto_priority_delay",
    "vrrp_garp_extra_if",
    "fifo_write_vrrp_states_on_reload",
    "vrrp_notify_priority_changes",
    "net_namespace",
    "net_namespace_ipvs",
    "instance",
    "use_pid_dir",
    "child_wait_time",
    "vrrp_netlink_monitor_rcv_bufs",
    "lvs_netlink_cmd_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs",
    "process_monitor_rcv_bufs",
    "vrrp_startup_delay_after_boot",
    "vrrp_delay_after_boot",
    "script_security",
    "vmac_garp_intvl",
    "vrrp_track_process_max_processes",
    "dynamic_interfaces_allow_if_changes",
    "snmp_vrrp_stats_update_interval",
    "snmp_rfc_stats_update_interval",
    "iproute_usr_dir",
    "iproute_etc_dir",
    "max_auto_priority_delay",
];

/// Read into the model (checked, printed back) but not acted on by holdfast.
const NOT_IMPLEMENTED: &[&str] = &["max_auto_priority"];

pub(super) fn lower(cx: &mut Cx<'_>, block: &[Node], g: &mut Global) {
    for n in block {
        if n.key.text != "notification_email" && n.key.text != "lvs_timeouts" {
            cx.no_block(n);
        }
        if NOT_IMPLEMENTED.contains(&n.key.text.as_str()) {
            cx.not_implemented(n);
        }
        match n.key.text.as_str() {
            "router_id" => g.router_id = cx.string(n),
            "notification_email" => {
                let b = cx.block(n);
                if b.is_empty() && n.block.is_some() {
                    cx.d.invalid(
                        n.close.unwrap_or(n.span()),
                        "Warning - empty notification_email block",
                    );
                }
                g.notification_email
                    .extend(b.iter().map(|e| e.key.text.clone()));
            }
            "notification_email_from" => g.notification_email_from = cx.string(n),
            "smtp_server" => {
                g.smtp_server = cx.string(n);
                g.smtp_port = n.args.get(1).and_then(|w| cx.port(w));
                if let Some(extra) = n.args.get(2) {
                    cx.d.invalid(extra.span, "smtp_server takes HOST [PORT]");
                }
            }
            // keepalived: whole seconds up to 4294; 0 is made 1, saying so.
            "smtp_connect_timeout" => {
                g.smtp_connect_timeout = match cx.int(n, 0, 0, 4294) {
                    Some(0) => {
                        cx.d.invalid(
                            n.line_span(),
                            "smtp_conect_timeout must be greater than 0, setting to 1",
                        );
                        Some(Duration::from_secs(1))
                    }
                    v => v.map(|s| Duration::from_secs(s as u64)),
                }
            }
            "smtp_helo_name" => g.smtp_helo_name = cx.string(n),
            "smtp_alert" => g.smtp_alert = Some(cx.boolean(n)),
            "smtp_alert_vrrp" => g.smtp_alert_vrrp = Some(cx.boolean(n)),
            "smtp_alert_checker" => g.smtp_alert_checker = Some(cx.boolean(n)),
            "no_checker_emails" => g.no_checker_emails = cx.boolean(n),
            "no_email_faults" => g.no_email_faults = true,
            "script_user" => match user_spec(&n.args) {
                Some(u) => {
                    if !cx.user_exists(&u) {
                        cx.d.invalid(n.line_span(), "Error setting global script uid/gid");
                    }
                    cx.script_user = Some(u.clone());
                    g.script_user = Some(u);
                }
                None => cx.d.invalid(n.span(), "script_user requires a user name"),
            },
            // keepalived enables it whatever follows the keyword.
            "enable_script_security" => g.enable_script_security = true,
            "vrrp_version" => {
                if let Some(v) = cx.int(n, 0, 2, 3) {
                    g.vrrp_version = v as u8;
                }
            }
            // keepalived: a multicast address of the group's family, or the default stays.
            "vrrp_mcast_group4" | "vrrp_mcast_group6" => {
                let v6 = n.key.text.ends_with('6');
                match cx.ip_arg(n, 0) {
                    Some(IpAddr::V4(a)) if !v6 && a.is_multicast() => g.vrrp_mcast_group4 = a,
                    Some(IpAddr::V6(a)) if v6 && a.is_multicast() => g.vrrp_mcast_group6 = a,
                    Some(_) => cx.d.invalid(
                        n.line_span(),
                        format!(
                            "{} [{}] is not multicast. Skipping",
                            n.key.text,
                            n.args.first().map_or("", |w| w.text.as_str())
                        ),
                    ),
                    None => {}
                }
            }
            "vrrp_min_garp" => g.vrrp_min_garp = cx.boolean(n),
            "vrrp_lower_prio_no_advert" => g.lower_prio_no_advert = cx.boolean(n),
            "vrrp_higher_prio_send_advert" => g.higher_prio_send_advert = cx.boolean(n),
            // keepalived: the keyword alone decides, whatever follows it.
            "vrrp_check_unicast_src" => g.check_unicast_src = true,
            // keepalived: the keyword alone decides, whatever follows it.
            "vrrp_skip_check_adv_addr" => g.skip_check_adv_addr = true,
            "vrrp_strict" => g.strict = true,
            // keepalived built with nftables and without iptables (Debian's 2.2.7, and
            // holdfast, whose VRRP firewall is nftables) reads `vrrp_iptables` as `nftables`
            // with its default table, and does not know `vrrp_ipsets`.
            "vrrp_iptables" => {
                cx.d.invalid(
                    n.key.span,
                    "iptables not supported, using nftables instead. Please replace 'vrrp_iptables and 'vrrp_ipsets' with 'nftables' config option",
                );
                g.nftables = Some("keepalived".to_owned());
                g.nftables_priority = Some(-1);
            }
            "vrrp_ipsets" => cx.d.push(
                crate::diag::Class::Unknown,
                Some(n.key.span),
                "Unknown keyword 'vrrp_ipsets'",
            ),
            "nftables" => {
                if g.nftables.is_some() {
                    cx.d.invalid(n.key.span, "nftables already specified - ignoring");
                } else {
                    match n.args.first() {
                        Some(w) if w.text.len() >= 256 => {
                            cx.d.invalid(w.span, "nftables table name too long - ignoring")
                        }
                        Some(w) => g.nftables = Some(w.text.clone()),
                        None => g.nftables = Some("keepalived".to_owned()),
                    }
                }
            }
            "nftables_priority" => match n.args.first().map(|w| (w, w.text.parse::<i32>())) {
                Some((_, Ok(p))) => g.nftables_priority = Some(p),
                Some((w, Err(_))) => cx.d.invalid(
                    w.span,
                    format!("invalid nftables chain priority '{}'", w.text),
                ),
                None => {
                    cx.arg(n, 0);
                }
            },
            "nftables_counters" => g.nftables_counters = true,
            "nftables_ifindex" => g.nftables_ifindex = true,
            // keepalived: 0.001 to 4294.967295 s.
            "vrrp_startup_delay" => match cx.timer(n, 0, 4294) {
                Some(d) if d < Duration::from_millis(1) => cx.d.invalid(
                    n.line_span(),
                    format!(
                        "vrrp_startup_delay '{}' is invalid",
                        n.args.first().map_or("", |w| w.text.as_str())
                    ),
                ),
                d => g.startup_delay = d,
            },
            "dynamic_interfaces" => {
                g.dynamic_interfaces = true;
                if let Some(w) = n.args.first().filter(|w| w.text != "allow_if_changes") {
                    cx.d.invalid(
                        n.line_span(),
                        format!("Unknown dynamic_interfaces option '{}'", w.text),
                    );
                }
            }
            "max_auto_priority" => {
                g.max_auto_priority = if n.args.is_empty() {
                    Some(99)
                } else {
                    cx.int(n, 0, -1, 99).map(|v| v as i32)
                }
            }
            // keepalived: a nice value, -20 to 19, with its own messages.
            k @ ("vrrp_priority" | "checker_priority") => {
                let part = &k[..k.len() - "_priority".len()];
                let value = match n.args.first() {
                    None => {
                        cx.d.invalid(
                            n.line_span(),
                            format!("No {part} process priority specified"),
                        );
                        None
                    }
                    Some(w) => match w.text.parse::<i32>() {
                        Ok(v) if (-20..=19).contains(&v) => Some(v),
                        _ => {
                            cx.d.invalid(
                                n.line_span(),
                                format!("Invalid {part} process priority specified"),
                            );
                            None
                        }
                    },
                };
                // keepalived sets 0 (the default) on an error.
                if k == "vrrp_priority" {
                    g.vrrp_priority = value;
                } else {
                    g.checker_priority = value;
                }
            }
            "vrrp_rt_priority" => g.vrrp_rt_priority = rt_priority(cx, n, "vrrp"),
            "checker_rt_priority" => g.checker_rt_priority = rt_priority(cx, n, "checker"),
            "vrrp_rlimit_rttime" | "vrrp_rlimit_rtime" => {
                g.vrrp_rlimit_rttime = rt_rlimit(cx, n, "vrrp").or(g.vrrp_rlimit_rttime);
            }
            "checker_rlimit_rttime" | "checker_rlimit_rtime" => {
                g.checker_rlimit_rttime = rt_rlimit(cx, n, "checker").or(g.checker_rlimit_rttime);
            }
            "vrrp_no_swap" => g.vrrp_no_swap = true,
            "checker_no_swap" => g.checker_no_swap = true,
            "lvs_flush" => g.lvs_flush = true,
            "lvs_flush_on_stop" | "lvs_flush_onstop" => {
                if n.key.text == "lvs_flush_onstop" {
                    cx.deprecated(n, "lvs_flush_on_stop");
                }
                match n.args.first() {
                    Some(w) if w.text != "VS" => {
                        cx.d.invalid(w.span, format!("Unknown lvs_flush_on_stop type {}", w.text))
                    }
                    _ => g.lvs_flush_on_stop = true,
                }
            }
            "lvs_timeouts" => g.lvs_timeouts = lvs_timeouts(cx, n),
            "lvs_sync_daemon" => g.lvs_sync_daemon = lvs_sync_daemon(cx, n),
            // keepalived keeps the first of each and refuses the others.
            k @ ("notify_fifo" | "vrrp_notify_fifo" | "lvs_notify_fifo") => {
                let slot = match k {
                    "notify_fifo" => &mut g.notify_fifo,
                    "vrrp_notify_fifo" => &mut g.vrrp_notify_fifo,
                    _ => &mut g.lvs_notify_fifo,
                };
                match n.args.first() {
                    Some(w) if slot.is_some() => cx.d.invalid(
                        n.line_span(),
                        format!("{k} already specified - ignoring {}", w.text),
                    ),
                    // Without a name keepalived says so and keeps the one it has.
                    None if slot.is_some() => {
                        cx.arg(n, 0);
                    }
                    _ => *slot = cx.owned_command(n, &format!("{k} fifo")),
                }
            }
            "default_interface" => match n.args.first() {
                Some(v) => g.default_interface = Some(v.text.clone()),
                None => {
                    cx.d.invalid(n.key.span, "default_interface requires interface name")
                }
            },
            "notify_fifo_script" | "vrrp_notify_fifo_script" | "lvs_notify_fifo_script" => {
                let k = n.key.text.as_str();
                let kind = k.strip_suffix("notify_fifo_script").unwrap_or("");
                let slot = match kind {
                    "vrrp_" => &mut g.vrrp_notify_fifo_script,
                    "lvs_" => &mut g.lvs_notify_fifo_script,
                    _ => &mut g.notify_fifo_script,
                };
                if n.args.is_empty() {
                    cx.d.invalid(n.key.span, format!("No {kind}notify_fifo_script specified"));
                } else if slot.is_some() {
                    cx.d.invalid(
                        n.key.span,
                        format!(
                            "{kind}notify_fifo_script already specified - ignoring {}",
                            n.args[0].text
                        ),
                    );
                } else {
                    let what = format!("{kind}notify_fifo script");
                    *slot = cx.owned_command(n, &what);
                }
            }
            "v3_checksum_as_v2" => g.v3_checksum_as_v2 = cx.boolean(n),
            "checker_log_all_failures" => g.checker_log_all_failures = cx.boolean(n),
            "startup_script" if g.startup_script.is_some() => {
                cx.d.invalid(n.line_span(), "startup script already specified")
            }
            "startup_script" => g.startup_script = startup_shutdown(cx, n, "startup"),
            // keepalived: whole seconds, 1 to 1000.
            "startup_script_timeout" => {
                g.startup_script_timeout =
                    cx.int(n, 0, 1, 1000).map(|s| Duration::from_secs(s as u64))
            }
            "shutdown_script" if g.shutdown_script.is_some() => {
                cx.d.invalid(n.line_span(), "shutdown script already specified")
            }
            "shutdown_script" => g.shutdown_script = startup_shutdown(cx, n, "shutdown"),
            "shutdown_script_timeout" => {
                g.shutdown_script_timeout =
                    cx.int(n, 0, 1, 1000).map(|s| Duration::from_secs(s as u64))
            }
            "dataplane" => g.dataplane = dataplane(cx, n),
            "control_socket" => g.control_socket = cx.string(n),
            "nft_table" => {
                if let Some(w) = cx.arg(n, 0) {
                    let ok = w.text.len() <= 64
                        && w.text
                            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                        && w.text
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if ok {
                        g.nft_table = Some(w.text.clone());
                    } else {
                        cx.d.invalid(
                            w.span,
                            format!(
                                "nft_table '{}' is not a table name (letters, digits and _, not starting with a digit, at most 64)",
                                w.text
                            ),
                        );
                    }
                }
            }
            "nft_flowtable" => g.nft_flowtable = Some(cx.boolean(n)),
            "proxy_maxconn" => {
                g.proxy_maxconn = cx.int(n, 0, 1, i64::from(u32::MAX)).map(|v| v as u32);
            }
            "metrics_listen" => {
                if let Some(w) = cx.arg(n, 0) {
                    match w.text.parse::<SocketAddr>() {
                        Ok(a) => g.metrics_listen = Some(a),
                        Err(_) => cx.d.invalid(
                            w.span,
                            format!("metrics_listen '{}' is not ADDR:PORT", w.text),
                        ),
                    }
                }
            }
            k => {
                if !garp_key(cx, n, k, &mut g.garp, "vrrp_") {
                    cx.unknown(n, UNSUPPORTED);
                }
            }
        }
    }
}

/// `[prefix]garp_*` / `[prefix]gna_interval`; returns whether the keyword was one.
/// Whole seconds from 0 to `max` (keepalived's `read_unsigned`).
fn whole_secs(cx: &mut Cx<'_>, n: &Node, max: i64) -> Option<Duration> {
    cx.int(n, 0, 0, max).map(|v| Duration::from_secs(v as u64))
}

/// A GARP repeat count: 0 is made 1, as keepalived does (saying so).
fn repeat(cx: &mut Cx<'_>, n: &Node) -> Option<u32> {
    let v = cx.int(n, 0, 0, i64::from(u32::MAX))? as u32;
    if v == 0 {
        cx.d.invalid(
            n.line_span(),
            format!("{} must be greater than 0, setting to 1", n.key.text),
        );
        return Some(1);
    }
    Some(v)
}

pub(super) fn garp_key(cx: &mut Cx<'_>, n: &Node, k: &str, garp: &mut Garp, prefix: &str) -> bool {
    let Some(k) = k.strip_prefix(prefix) else {
        return false;
    };
    match k {
        // keepalived reads these as whole seconds and counts (`read_unsigned`): a fraction
        // or a value out of its range is an error and ignored; a repeat of 0 becomes 1.
        "garp_master_delay" => garp.master_delay = whole_secs(cx, n, 4294),
        "garp_master_repeat" => garp.master_repeat = repeat(cx, n),
        "garp_master_refresh" => garp.master_refresh = whole_secs(cx, n, i64::from(u32::MAX)),
        "garp_master_refresh_repeat" => garp.master_refresh_repeat = repeat(cx, n),
        "garp_lower_prio_delay" => garp.lower_prio_delay = whole_secs(cx, n, 4294),
        "garp_lower_prio_repeat" => {
            garp.lower_prio_repeat = cx.int(n, 0, 0, i64::from(i32::MAX)).map(|v| v as u32)
        }
        // Global only (`vrrp_garp_interval`): an instance has no such keyword in keepalived
        // 2.2.7 (a garp_group has), so there it is unknown.
        "garp_interval" | "gna_interval" if !prefix.is_empty() => {
            let v = cx.timer(n, 0, 4295);
            let v = match v {
                Some(d) if d.is_zero() || d > Duration::from_micros(4_294_967_295) => {
                    let w = n.args.first().map_or(n.key.span, |w| w.span);
                    cx.d.invalid(
                        w,
                        format!(
                            "{}{k} '{}' outside range [0.000001, 4294.967295]",
                            prefix,
                            n.args.first().map_or("", |w| w.text.as_str())
                        ),
                    );
                    None
                }
                v => v,
            };
            if k == "garp_interval" {
                garp.interval = v;
            } else {
                garp.gna_interval = v;
            }
        }
        _ => return false,
    }
    true
}

pub(super) fn dataplane(cx: &mut Cx<'_>, n: &Node) -> Option<DataPlane> {
    let w = cx.arg(n, 0)?;
    match w.text.as_str() {
        "proxy" => Some(DataPlane::Proxy),
        "nft" => Some(DataPlane::Nft),
        "ipvs" => Some(DataPlane::Ipvs),
        "auto" => Some(DataPlane::Auto),
        other => {
            cx.d.invalid(
                w.span,
                format!("dataplane '{other}' is not one of proxy, nft, ipvs, auto"),
            );
            None
        }
    }
}

fn lvs_sync_daemon(cx: &mut Cx<'_>, n: &Node) -> Option<LvsSyncDaemon> {
    let iface = cx.arg(n, 0)?;
    // An interface name is at most 15 bytes (IFNAMSIZ).
    if iface.text.len() >= 16 {
        cx.d.invalid(
            iface.span,
            format!(
                "lvs_sync_daemon interface name '{}' too long - ignoring",
                iface.text
            ),
        );
        return None;
    }
    let mut d = LvsSyncDaemon {
        iface: iface.text.clone(),
        instance: None,
        id: None,
        maxlen: None,
        port: None,
        ttl: None,
        group: None,
        origin: super::origin(n),
    };
    let mut i = 1;
    while i < n.args.len() {
        let w = &n.args[i];
        let value = n.args.get(i + 1);
        let key = w.text.as_str();
        match (key, value) {
            ("inst", Some(v)) => d.instance = Some(v.text.clone()),
            ("id", Some(v)) => d.id = cx.int_word(v, key, 0, 255).map(|v| v as u8),
            ("maxlen", Some(v)) => {
                d.maxlen = cx.int_word(v, key, 1, 65535 - 20 - 8).map(|v| v as u16)
            }
            ("port", Some(v)) => d.port = cx.port(v),
            ("ttl", Some(v)) => d.ttl = cx.int_word(v, key, 1, 255).map(|v| v as u8),
            ("group", Some(v)) => match v.text.parse::<IpAddr>() {
                Ok(a) if a.is_multicast() => d.group = Some(a),
                _ => cx.d.invalid(
                    v.span,
                    format!(
                        "lvs_sync_daemon group '{}' is not a multicast address",
                        v.text
                    ),
                ),
            },
            ("inst" | "id" | "maxlen" | "port" | "ttl" | "group", None) => {
                cx.d.invalid(w.span, format!("lvs_sync_daemon: {key} needs a value"));
            }
            // The instance name may come without `inst`, right after the interface.
            _ if i == 1 => {
                d.instance = Some(w.text.clone());
                i += 1;
                continue;
            }
            _ => {
                cx.d.invalid(w.span, format!("lvs_sync_daemon: unknown option '{key}'"));
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    Some(d)
}

fn lvs_timeouts(cx: &mut Cx<'_>, n: &Node) -> Option<LvsTimeouts> {
    if n.args.is_empty() {
        cx.d.invalid(n.line_span(), "lvs_timeouts requires at least one option");
        return None;
    }
    let mut t = LvsTimeouts::default();
    let mut i = 0;
    while i < n.args.len() {
        let key = n.args[i].text.as_str();
        let slot = match key {
            "tcp" => &mut t.tcp,
            "tcpfin" => &mut t.tcpfin,
            "udp" => &mut t.udp,
            _ => {
                cx.d.invalid(
                    n.args[i].span,
                    format!("lvs_timeouts: unknown option '{key}'"),
                );
                i += 1;
                continue;
            }
        };
        match n.args.get(i + 1) {
            Some(v) => {
                *slot = cx.int_word(v, key, 1, 86400 * 31).map(|v| v as u32);
            }
            None => {
                cx.d.invalid(n.args[i].span, format!("lvs_timeouts: {key} needs a value"))
            }
        }
        i += 2;
    }
    // Nothing set (every option was refused): as if the keyword were not there.
    (t != LvsTimeouts::default()).then_some(t)
}

/// `startup_script` / `shutdown_script`: keepalived refuses one whose user or group does not
/// exist as it reads it.
fn startup_shutdown(cx: &mut Cx<'_>, n: &Node, kind: &str) -> Option<Command> {
    let c = cx.owned_command(n, &format!("{kind} script"));
    if c.is_none() && !n.args.is_empty() {
        cx.d.invalid(n.line_span(), format!("Invalid {kind} script"));
    }
    c
}

/// keepalived's `get_realtime_priority`: SCHED_RR's 1 to 99, a value outside kept at the
/// nearer end with keepalived's error.
fn rt_priority(cx: &mut Cx<'_>, n: &Node, process: &str) -> Option<u32> {
    let w = cx.arg(n, 0)?;
    let Ok(p) = w.text.parse::<i32>() else {
        cx.d.invalid(
            w.span,
            format!("{process} process real-time priority '{}' invalid", w.text),
        );
        return None;
    };
    let (lo, hi) = (1, 99);
    if p < lo {
        cx.d.invalid(
            w.span,
            format!("{process} process real-time priority {p} less than minimum {lo} - setting to minimum"),
        );
        return Some(lo as u32);
    }
    if p > hi {
        cx.d.invalid(
            w.span,
            format!("{process} process real-time priority {p} greater than maximum {hi} - setting to maximum"),
        );
        return Some(hi as u32);
    }
    Some(p as u32)
}

/// keepalived's `get_rt_rlimit`: microseconds, 1 to 2^32-1 (1 is taken as 2: half of it is
/// the warning limit); `*_rlimit_rtime` is the deprecated spelling.
fn rt_rlimit(cx: &mut Cx<'_>, n: &Node, process: &str) -> Option<u64> {
    if n.key.text.ends_with("_rlimit_rtime") {
        cx.deprecated(n, &format!("{process}_rlimit_rttime"));
    }
    let w = cx.arg(n, 0)?;
    match w.text.parse::<u32>() {
        Ok(0) | Err(_) => {
            cx.d.invalid(
                n.line_span(),
                format!("Invalid {process} real-time limit - {}", w.text),
            );
            None
        }
        Ok(l) => Some(u64::from(l.max(2))),
    }
}
