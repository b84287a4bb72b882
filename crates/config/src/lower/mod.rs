//! Lowering: the node tree → the typed [`Config`], collecting every diagnostic on the way.
//!
//! One module per section family. Each block lowerer walks its children once, matching
//! keepalived's keyword spellings; anything else goes through [`Cx::unknown`], which tells a
//! keyword keepalived has but holdfast does not implement (`unsupported`) from one nobody
//! knows (`Unknown keyword`).

mod announce;
mod bfd;
mod checker;
mod global;
mod lvs;
mod route;
mod track;
mod vrrp;

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::diag::{Class, Diagnostics};
use crate::model::{Command, Config, LvsSyncDaemon, Origin, UserSpec};
use crate::span::Span;
use crate::tree::{Node, Word};

/// Lowers a parsed tree. `global_defs` is read first wherever it appears, since instance
/// defaults depend on it. `host`, when given, answers whether a script's user and group
/// exist (keepalived drops a script whose owner does not while reading it).
pub fn lower(
    nodes: &[Node],
    host: Option<&dyn crate::validate::Host>,
    d: &mut Diagnostics,
) -> Config {
    let mut cx = Cx {
        d,
        sync_daemon_interface: None,
        rule_priorities: route::RulePriorities::default(),
        bfd_names: Vec::new(),
        host,
        script_user: None,
        default_lookup: default_lookup(nodes),
        default_owner: None,
        min_cfg_failed: false,
        seen_once: std::collections::HashMap::new(),
        vmac_names: Vec::new(),
        bfd_seen: std::collections::HashSet::new(),
        sync_daemon_named: None,
    };
    let mut cfg = Config::default();
    for n in nodes.iter().filter(|n| n.key.text == "global_defs") {
        cfg.global.origin = origin(n);
        let block = cx.block(n);
        global::lower(&mut cx, block, &mut cfg.global);
    }
    cx.sync_daemon_named = cfg.global.lvs_sync_daemon.as_ref().map(|d| d.iface.clone());
    for n in nodes {
        match n.key.text.as_str() {
            "global_defs" => {}
            "vrrp_script" => {
                if let Some(s) = track::script(&mut cx, n) {
                    cfg.scripts.push(s);
                }
            }
            "track_file" | "vrrp_track_file" => {
                if let Some(t) = track::file(&mut cx, n) {
                    cfg.track_files.push(t);
                }
            }
            "vrrp_track_process" => {
                if let Some(t) = track::process(&mut cx, n) {
                    cfg.track_processes.push(t);
                }
            }
            // keepalived skips a second block of the same name, saying so.
            "vrrp_instance" => {
                let name = n.args.first().map(|w| w.text.as_str());
                let known = |m: &&str| {
                    (cfg.instances.iter())
                        .chain(&cfg.dropped_instances.0)
                        .any(|i| i.name == *m)
                };
                if let Some(name) = name.filter(known) {
                    cx.d.invalid(
                        n.line_span(),
                        format!("vrrp instance {name} already defined"),
                    );
                } else {
                    match vrrp::instance(&mut cx, n, &cfg.global) {
                        Some(Ok(i)) => cfg.instances.push(i),
                        Some(Err(i)) => cfg.dropped_instances.0.push(i),
                        None => {}
                    }
                }
            }
            "vrrp_sync_group" => {
                let name = n.args.first().map(|w| w.text.as_str());
                if let Some(name) = name.filter(|m| cfg.sync_groups.iter().any(|g| g.name == *m)) {
                    cx.d.invalid(
                        n.line_span(),
                        format!("vrrp sync group {name} already defined"),
                    );
                } else if let Some(g) = vrrp::sync_group(&mut cx, n) {
                    cfg.sync_groups.push(g);
                }
            }
            "virtual_server_group" => {
                if let Some(g) = lvs::vs_group(&mut cx, n) {
                    cfg.vs_groups.push(g);
                }
            }
            "virtual_server" => {
                if let Some(v) = lvs::virtual_server(&mut cx, n) {
                    cfg.virtual_servers.push(v);
                }
            }
            "net_namespace" | "instance" => {
                let k = n.key.text.as_str();
                let slot = if k == "instance" {
                    &mut cfg.global.instance_name
                } else {
                    &mut cfg.global.net_namespace
                };
                match n.args.first() {
                    None => {
                        cx.d.invalid(n.key.span, format!("{k} name missing - ignoring"))
                    }
                    Some(v) if slot.is_some() => cx.d.invalid(
                        v.span,
                        if k == "instance" {
                            format!("Duplicate instance definition {} - ignoring", v.text)
                        } else {
                            format!("Duplicate net_namespace definition {} - ignoring", v.text)
                        },
                    ),
                    Some(v) => *slot = Some(v.text.clone()),
                }
            }
            "static_ipaddress" => {
                for c in cx.block(n) {
                    if let Some(mut v) = vrrp::vip(&mut cx, c, "static") {
                        // keepalived: the default interface (eth0) when no `dev` is given.
                        if v.dev.is_none() {
                            let dev = cfg.global.default_interface.as_deref().unwrap_or("eth0");
                            v.dev = Some(dev.to_owned());
                        }
                        cfg.static_addresses.push(v);
                    }
                }
            }
            "bfd_instance" => {
                if let Some(b) = bfd::instance(&mut cx, n, &cfg.bfd_instances) {
                    cfg.bfd_instances.push(b);
                }
            }
            "bgp_announce" => {
                if let Some(a) = announce::announce(&mut cx, n, &cfg.announces) {
                    cfg.announces.push(a);
                }
            }
            "static_routes" => cfg.static_routes.extend(route::routes(&mut cx, n)),
            "static_rules" => {
                let mut auto = std::mem::take(&mut cx.rule_priorities);
                cfg.static_rules.extend(route::rules(&mut cx, n, &mut auto));
                cx.rule_priorities = auto;
            }
            _ => cx.unknown(n, TOP_UNSUPPORTED),
        }
    }
    // A vrrp_instance's deprecated lvs_sync_daemon_interface, unless global_defs says.
    if cfg.global.lvs_sync_daemon.is_none()
        && let Some((iface, instance, origin)) = cx.sync_daemon_interface.take()
    {
        cfg.global.lvs_sync_daemon = Some(LvsSyncDaemon {
            iface,
            instance: Some(instance),
            id: None,
            maxlen: None,
            port: None,
            ttl: None,
            group: None,
            origin,
        });
    }
    cfg
}

/// Top-level blocks keepalived has that holdfast does not implement.
const TOP_UNSUPPORTED: &[&str] = &[
    "track_group",
    "garp_group",
    "linkbeat_interfaces",
    "interface_up_down_delays",
    "SSL",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "use_pid_dir",
    "linkbeat_use_polling",
    "child_wait_time",
];

/// Where keepalived first looks up the default script user, and whether
/// `enable_script_security` was read by then. `keepalived -t` reads the file three times in one
/// process — `global_defs` first, then as the checker, then as VRRP — and looks the user up
/// once, at the first script without a user of its own: a `global_defs` script (security as
/// read so far), else the checker's first (quorum and real servers' notify scripts, a
/// `MISC_CHECK` at its closing brace), else VRRP's (notify scripts, a `vrrp_script` at its
/// closing brace); `global_defs` has then been read whole.
fn default_lookup(nodes: &[Node]) -> Option<(Span, bool)> {
    const NOTIFY: &[&str] = &[
        "notify_master",
        "notify_backup",
        "notify_fault",
        "notify_stop",
        "notify",
        "notify_master_rx_lower_pri",
        "quorum_up",
        "quorum_down",
        "notify_up",
        "notify_down",
    ];
    const GLOBAL: &[&str] = &[
        "startup_script",
        "shutdown_script",
        "notify_fifo",
        "vrrp_notify_fifo",
        "lvs_notify_fifo",
        "notify_fifo_script",
        "vrrp_notify_fifo_script",
        "lvs_notify_fifo_script",
    ];
    #[derive(Default)]
    struct Walk {
        secure: bool,
        global: Option<(Span, bool)>,
        checker: Option<Span>,
        vrrp: Option<Span>,
    }
    impl Walk {
        fn walk(&mut self, nodes: &[Node], parent: &str) {
            let own_user = |n: &Node| {
                n.block
                    .as_ref()
                    .is_some_and(|b| b.iter().any(|c| c.key.text == "user"))
            };
            for n in nodes {
                let k = n.key.text.as_str();
                match (parent, k) {
                    ("global_defs", "enable_script_security") => self.secure = true,
                    ("global_defs", k) if GLOBAL.contains(&k) && n.args.len() == 1 => {
                        let secure = self.secure;
                        self.global.get_or_insert((n.line_span(), secure));
                    }
                    ("vrrp_instance" | "vrrp_sync_group", k)
                        if NOTIFY.contains(&k) && n.args.len() == 1 =>
                    {
                        self.vrrp.get_or_insert(n.line_span());
                    }
                    ("virtual_server" | "real_server", k)
                        if NOTIFY.contains(&k) && n.args.len() == 1 =>
                    {
                        self.checker.get_or_insert(n.line_span());
                    }
                    ("", "vrrp_script") if !own_user(n) => {
                        self.vrrp.get_or_insert(n.close.unwrap_or(n.span()));
                    }
                    ("real_server", "MISC_CHECK") if !own_user(n) => {
                        self.checker.get_or_insert(n.close.unwrap_or(n.span()));
                    }
                    (_, k) => {
                        if let Some(b) = &n.block {
                            self.walk(b, k);
                        }
                    }
                }
            }
        }
    }
    let mut w = Walk::default();
    w.walk(nodes, "");
    w.global
        .or(w.checker.map(|s| (s, w.secure)))
        .or(w.vrrp.map(|s| (s, w.secure)))
}

/// Lowering context: the diagnostics sink plus value parsers that report in one style.
pub(crate) struct Cx<'d> {
    pub(crate) d: &'d mut Diagnostics,
    /// The first vrrp_instance's deprecated `lvs_sync_daemon_interface`: (interface,
    /// instance), made the global `lvs_sync_daemon` when global_defs has none.
    pub(crate) sync_daemon_interface: Option<(String, String, Origin)>,
    /// keepalived's automatic rule preferences, shared by every rule of the configuration.
    pub(crate) rule_priorities: route::RulePriorities,
    /// The names of the `bfd_instance`s read so far, as keepalived's VRRP process knows them
    /// (a `track_bfd` must name one defined before it).
    pub(crate) bfd_names: Vec<String>,
    /// The host, for script owners (none: every owner is taken to exist).
    pub(crate) host: Option<&'d dyn crate::validate::Host>,
    /// `script_user`, once read.
    pub(crate) script_user: Option<UserSpec>,
    /// Where keepalived first looks the default script user up, and whether
    /// `enable_script_security` was read before that.
    default_lookup: Option<(Span, bool)>,
    /// Whether scripts without a user of their own have one: decided once, at the first.
    default_owner: Option<bool>,
    /// An instance failed keepalived's minimum configuration check (no VRID, no interface):
    /// keepalived stops checking there, so later ones are not reported.
    pub(crate) min_cfg_failed: bool,
    /// Global keywords keepalived takes once, seen so far.
    seen_once: std::collections::HashMap<String, String>,
    /// The `use_vmac` interface names given so far, with their instances (keepalived
    /// refuses a name another instance uses).
    pub(crate) vmac_names: Vec<(String, String)>,
    /// The `bfd_instance` names read so far (keepalived ignores a second one).
    pub(crate) bfd_seen: std::collections::HashSet<String>,
    /// The sync daemon's interface as keepalived first recorded it (global `lvs_sync_daemon`
    /// or an instance's `lvs_sync_daemon_interface`): a later instance's is ignored.
    pub(crate) sync_daemon_named: Option<String>,
}

impl Cx<'_> {
    /// Reports a keyword that does not belong here.
    pub(crate) fn unknown(&mut self, n: &Node, unsupported: &[&str]) {
        let k = &n.key.text;
        // Lowerers check `no_block` before matching; an unrecognised keyword's block is
        // skipped with it, so that complaint does not apply.
        if n.block.is_some() {
            self.d.retract(Class::Syntax, n.span());
        }
        if unsupported.contains(&k.as_str())
            || k.ends_with("_rcv_bufs")
            || k.ends_with("_rcv_bufs_force")
        {
            self.d.push(
                Class::Unsupported,
                Some(n.span()),
                format!("unsupported: keepalived keyword '{k}' is recognised but not implemented by holdfast"),
            );
            self.unsupported_value(n);
        } else {
            self.d.push(
                Class::Unknown,
                Some(n.span()),
                format!("Unknown keyword '{k}'"),
            );
        }
    }

    /// keepalived's checks of the value of a keyword holdfast does not act on: a missing value
    /// (which stops keepalived, or is an error, as for any keyword), and the ranges and forms
    /// of the values its handlers read.
    fn unsupported_value(&mut self, n: &Node) {
        let k = n.key.text.as_str();
        if k == "vrrp_vmac_garp_intvl" {
            self.d.invalid(
                n.line_span(),
                "Keyword \"vrrp_vmac_garp_intvl\" is deprecated - please use \"vrrp_garp_extra_if\"",
            );
        }
        // keepalived keeps the first table name it could take.
        if k == "nftables_ipvs" {
            if self.seen_once.contains_key(k) {
                self.d
                    .invalid(n.line_span(), "ipvs nftables already specified - ignoring");
            } else if n.args.first().is_some_and(|w| w.text.len() >= 256) {
                self.d.invalid(
                    n.line_span(),
                    "ipvs nftables table name too long - ignoring",
                );
            } else {
                self.seen_once.insert(k.to_owned(), String::new());
            }
            return;
        }
        // Global keywords keepalived takes once (the first is kept).
        let once = match k {
            "vmac_prefix" => Some("vmac prefix"),
            "vmac_addr_prefix" => Some("vmac_addr prefix"),
            _ => None,
        };
        if let (Some(what), Some(w)) = (once, n.args.first())
            && self
                .seen_once
                .insert(k.to_owned(), w.text.clone())
                .is_some()
        {
            self.d.invalid(
                n.line_span(),
                format!("{what} has already been specified - ignoring {}", w.text),
            );
            return;
        }
        // Keywords keepalived takes with exactly one value.
        let arity = match k {
            "snmp_name" => Some("snmp_name missing or extra parameters".to_string()),
            "reload_time_file" => Some("reload_time_file invalid".into()),
            "vrrp_rx_bufs_multiplier" => Some("Invalid vrrp_rx_bufs_multiplier".into()),
            "snmp_socket" if n.args.is_empty() => {
                Some("SNMP error : snmp socket name missing".into())
            }
            "snmp_socket" => {
                Some("Too many parameters specified for snmp_socket - ignoring".into())
            }
            _ => None,
        };
        if let Some(msg) = arity.filter(|_| n.args.len() != 1 && n.block.is_none()) {
            self.d.invalid(n.line_span(), msg);
            return;
        }
        // keepalived keeps the first SNMP socket it could take.
        if k == "snmp_socket"
            && let Some(w) = n.args.first()
            && w.text.len() < 4096
        {
            match self.seen_once.get(k) {
                Some(first) => {
                    let msg = format!("SNMP socket already set to {first} - ignoring");
                    self.d.invalid(n.line_span(), msg);
                }
                None => {
                    self.seen_once.insert(k.to_owned(), w.text.clone());
                }
            }
        }
        let Some(w) = n.args.first() else {
            let missing = match k {
                _ if n.block.is_some() => None,
                // keepalived stops reading where its handler reads the missing value.
                _ if missing_value(k) == Missing::Stop => {
                    self.arg(n, 0);
                    None
                }
                "dbus_service_name" => Some("dbus_service_name missing - ignoring".to_string()),
                _ if k.ends_with("_cpu_affinity") => Some(format!(
                    "No {} cpu_id set specified",
                    k.trim_end_matches("_cpu_affinity")
                )),
                _ if k.ends_with("_rcv_bufs") => Some(format!("{k} size missing")),
                "min_auto_priority_delay" => Some(format!("{k} requires delay time")),
                "vrrp_rx_bufs_policy" => Some("vrrp_rx_bufs_policy missing".into()),
                "bfd_priority" => Some("No bfd process priority specified".into()),
                "process_name"
                | "vrrp_process_name"
                | "checker_process_name"
                | "lvs_process_name"
                | "bfd_process_name" => Some("Process name missing".into()),
                "bfd_rt_priority" => Some("No bfd process real-time priority specified".into()),
                "kernel_rx_buf_size" => Some("invalid kernel_rx_buf_size specified".into()),
                "vrrp_garp_extra_if" | "vrrp_vmac_garp_intvl" => garp_extra_if(n, 1),
                _ => None,
            };
            if let Some(msg) = missing {
                self.d.invalid(n.line_span(), msg);
            }
            return;
        };
        let v = w.text.as_str();
        let bad = match k {
            "vrrp_down_timer_adverts" | "down_timer_adverts" => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .is_none()
                .then(|| format!("Invalid {k} [1:100] '{v}'")),
            "nftables_ipvs_priority" => v
                .parse::<i32>()
                .is_err()
                .then(|| format!("invalid ipvs nftables chain priority '{v}'")),
            "nftables_ipvs_start_fwmark" => v
                .parse::<u32>()
                .map_or(true, |f| f == 0)
                .then(|| format!("invalid ipvs nftables start_fwmark priority '{v}'")),
            // A nice value, and SCHED_RR's priorities (1 to 99, clamped with an error).
            "bfd_priority" => v
                .parse::<i32>()
                .map_or(true, |p| !(-20..=19).contains(&p))
                .then(|| "Invalid bfd process priority specified".to_string()),
            "bfd_rt_priority" => match v.parse::<i32>() {
                Err(_) => Some(format!("bfd process real-time priority '{v}' invalid")),
                Ok(p) if p < 1 => Some(format!(
                    "bfd process real-time priority {p} less than minimum 1 - setting to minimum"
                )),
                Ok(p) if p > 99 => Some(format!(
                    "bfd process real-time priority {p} greater than maximum 99 - setting to maximum"
                )),
                Ok(_) => None,
            },
            "old_unicast_checksum" => {
                (v != "never").then(|| format!("Unknown old_unicast_chksum mode {v} - ignoring"))
            }
            "include_check" => n.args.iter().enumerate().find_map(|(i, w)| {
                let (word, flag) = match w.text.strip_prefix(['+', '-']) {
                    Some(rest) => (rest, true),
                    None => (w.text.as_str(), false),
                };
                if !flag && i > 0 {
                    Some(format!(
                        "Duplicate include_check '{}' specified - ignoring",
                        w.text
                    ))
                } else if !matches!(word, "read" | "match" | "wildcard_match" | "brace_match") {
                    Some(format!("Unknown include_check type '{word}' - ignoring"))
                } else {
                    None
                }
            }),
            // Sizes or the MTU / ADVERT policy; keepalived reads every size from the first word.
            "vrrp_rx_bufs_policy" => {
                let words: Vec<&str> = n.args.iter().map(|w| w.text.as_str()).collect();
                let policy =
                    |w: &&str| w.eq_ignore_ascii_case("MTU") || w.eq_ignore_ascii_case("ADVERT");
                let sized = words.iter().any(|w| !policy(w));
                if let Some(w) = words
                    .iter()
                    .find(|w| !policy(w))
                    .filter(|_| v.parse::<u32>().is_err())
                {
                    Some(format!("Invalid vrrp_rx_bufs_policy {w}"))
                } else if sized && words.iter().any(policy) {
                    Some("Cannot set vrrp_rx_bufs_policy size and policy, ignoring policy".into())
                } else if words.iter().any(|w| w.eq_ignore_ascii_case("MTU"))
                    && words.iter().any(|w| w.eq_ignore_ascii_case("ADVERT"))
                {
                    Some(
                        "Cannot set both vrrp_rx_bufs_policy MTU and ADVERT, ignoring ADVERT"
                            .into(),
                    )
                } else {
                    None
                }
            }
            "umask" => umask(&n.args.iter().map(|w| w.text.as_str()).collect::<Vec<_>>()).err(),
            // keepalived: exactly one unsigned number.
            "kernel_rx_buf_size" => (n.args.len() != 1 || v.parse::<u32>().is_err())
                .then(|| "invalid kernel_rx_buf_size specified".to_string()),
            // keepalived's check_true_false (lower case only), with its message.
            _ if k.ends_with("_rcv_bufs_force")
                || matches!(
                    k,
                    "rs_init_notifies"
                        | "data_use_instance"
                        | "vrrp_notify_priority_changes"
                        | "notify_priority_changes"
                ) =>
            {
                (!matches!(v, "true" | "on" | "yes" | "false" | "off" | "no")).then(|| {
                    // keepalived names data_use_instance "date_use_instance" in its message.
                    let k = if k == "data_use_instance" {
                        "date_use_instance"
                    } else {
                        k
                    };
                    format!("Invalid value '{v}' for global {k} specified")
                })
            }
            // IPVS's weight limit (INT_MAX); a virtual server's weight is not used.
            "weight" => v
                .parse::<u32>()
                .map_or(true, |w| w == 0 || w > i32::MAX as u32)
                .then(|| format!("Virtual server weight {v} is outside range 1-2147483647")),
            // A process's name: what the kernel keeps (15 characters).
            "process_name"
            | "vrrp_process_name"
            | "checker_process_name"
            | "lvs_process_name"
            | "bfd_process_name" => (v.len() > 15)
                .then(|| format!("Process name {v} more than 15 characters, truncating")),
            "random_seed" => v
                .parse::<u32>()
                .is_err()
                .then(|| format!("random_seed {v} invalid")),
            "vrrp_rx_bufs_multiplier" => v
                .parse::<u32>()
                .map_or(true, |m| m == 0)
                .then(|| format!("Invalid vrrp_rx_bufs_multiplier {v}")),
            "min_auto_priority_delay" => v
                .parse::<i32>()
                .map_or(true, |d| !(1..=10_000_000).contains(&d))
                .then(|| format!("{k} '{v}' must be in [1, 10000000] - ignoring")),
            // Globally a delay of at least a second.
            "vrrp_garp_extra_if" | "vrrp_vmac_garp_intvl" => garp_extra_if(n, 1),
            _ if k.ends_with("_rlimit_rttime") || k.ends_with("_rlimit_rtime") => {
                v.parse::<u32>().map_or(true, |l| l == 0).then(|| {
                    let process = k.split('_').next().unwrap_or(k);
                    format!("Invalid {process} real-time limit - {v}")
                })
            }
            _ if k.ends_with("_rcv_bufs") => v.parse::<u32>().is_err().then(|| {
                format!(
                    "{}_rcv_bufs size ({v}) invalid",
                    k.trim_end_matches("_rcv_bufs")
                )
            }),
            // keepalived: a CPU that is online (sysconf's count; 0 to count - 1).
            _ if k.ends_with("_cpu_affinity") => {
                let part = k.trim_end_matches("_cpu_affinity");
                let online = self.host.and_then(|h| h.cpus_online());
                n.args
                    .iter()
                    .find(|a| {
                        a.text
                            .parse::<u32>()
                            .map_or(true, |c| online.is_some_and(|n| c >= n))
                    })
                    .map(|a| format!("Invalid cpu_id:{} specified for {part} process", a.text))
            }
            _ => None,
        };
        if let Some(msg) = bad {
            self.d.invalid(n.line_span(), msg);
        }
    }

    /// Reports a keyword holdfast reads (its value is checked and printed back) but does not
    /// act on.
    pub(crate) fn not_implemented(&mut self, n: &Node) {
        self.d.push(
            Class::Unsupported,
            Some(n.span()),
            format!(
                "unsupported: keepalived keyword '{}' is recognised but not implemented by holdfast",
                n.key.text
            ),
        );
    }

    /// The children of a block keyword; reports a missing `{`.
    pub(crate) fn block<'n>(&mut self, n: &'n Node) -> &'n [Node] {
        match &n.block {
            Some(b) => b,
            None => {
                self.d.push(
                    Class::Syntax,
                    Some(n.span()),
                    format!(
                        "Missing '{{' at beginning of configuration block '{}'",
                        n.key.text
                    ),
                );
                &[]
            }
        }
    }

    /// Argument `i`, reporting its absence (where keepalived stops reading at a missing
    /// value, in its words).
    pub(crate) fn arg<'n>(&mut self, n: &'n Node, i: usize) -> Option<&'n Word> {
        let w = n.args.get(i);
        if w.is_none() {
            let key = &n.key.text;
            let missing = missing_value(key);
            if missing == Missing::Silent {
                return None;
            }
            if missing == Missing::Stop {
                let after = i
                    .checked_sub(1)
                    .and_then(|p| n.args.get(p))
                    .map_or(key.as_str(), |w| w.text.as_str());
                self.d.push(
                    Class::Stop,
                    Some(n.line_span()),
                    format!(
                        "*** Configuration line starting `{key}` is missing a parameter after keyword `{after}` at word position {}",
                        i + 2
                    ),
                );
            } else {
                self.d
                    .invalid(n.line_span(), format!("{key} requires a value"));
            }
        }
        w
    }

    /// A block's name (first argument), which must not be empty.
    pub(crate) fn name(&mut self, n: &Node) -> Option<String> {
        let name = self.string(n)?;
        if name.is_empty() {
            self.d.invalid(
                n.line_span(),
                format!("{} needs a non-empty name", n.key.text),
            );
            return None;
        }
        Some(name)
    }

    /// The first argument as a string.
    pub(crate) fn string(&mut self, n: &Node) -> Option<String> {
        self.arg(n, 0).map(|w| w.text.clone())
    }

    /// Argument `i` as an integer in `lo..=hi`.
    pub(crate) fn int(&mut self, n: &Node, i: usize, lo: i64, hi: i64) -> Option<i64> {
        let w = self.arg(n, i)?;
        self.int_word(w, &n.key.text, lo, hi)
    }

    /// A word as an integer in `lo..=hi`.
    pub(crate) fn int_word(&mut self, w: &Word, what: &str, lo: i64, hi: i64) -> Option<i64> {
        match w.text.parse::<i64>() {
            Ok(v) if (lo..=hi).contains(&v) => Some(v),
            Ok(_) => {
                self.d.invalid(
                    w.span,
                    format!("{what} '{}' out of range [{lo}, {hi}]", w.text),
                );
                None
            }
            Err(_) => {
                self.d
                    .invalid(w.span, format!("{what} '{}' is not a valid number", w.text));
                None
            }
        }
    }

    /// The first argument as an unsigned count.
    pub(crate) fn count(&mut self, n: &Node, lo: i64, hi: i64) -> Option<u32> {
        self.int(n, 0, lo, hi).map(|v| v as u32)
    }

    /// The first argument as keepalived's `read_timer` reads it: decimal seconds with µs
    /// resolution between `min_us` and `max_us` microseconds, out of range reported with
    /// keepalived's message. A time beyond [`TIMER_CAP`] (keepalived's maximum is some 584 000
    /// years) is kept at the cap, so no deadline computed from it overflows.
    pub(crate) fn ka_timer(&mut self, n: &Node, min_us: u64, max_us: u64) -> Option<Duration> {
        let w = self.arg(n, 0)?;
        let Some(d) = parse_timer(&w.text) else {
            self.d
                .invalid(w.span, format!("invalid number '{}'", w.text));
            return None;
        };
        let us = d.as_micros();
        if us < u128::from(min_us) || us > u128::from(max_us) {
            let f = |v: u64| format!("{}.{:06}", v / 1_000_000, v % 1_000_000);
            self.d.invalid(
                w.span,
                format!(
                    "number '{}' outside range [{}, {}]",
                    w.text,
                    f(min_us),
                    f(max_us)
                ),
            );
            return None;
        }
        Some(d.min(TIMER_CAP))
    }

    /// Argument `i` as a `<TIMER>`: decimal seconds with µs resolution.
    pub(crate) fn timer(&mut self, n: &Node, i: usize, max_secs: u64) -> Option<Duration> {
        let w = self.arg(n, i)?;
        match parse_timer(&w.text) {
            Some(d) if d.as_secs() <= max_secs => Some(d),
            Some(_) => {
                self.d.invalid(
                    w.span,
                    format!("{} '{}' out of range [0, {max_secs}]", n.key.text, w.text),
                );
                None
            }
            None => {
                self.d.invalid(
                    w.span,
                    format!("{} '{}' is not a valid time in seconds", n.key.text, w.text),
                );
                None
            }
        }
    }

    /// An optional `<BOOL>` argument: the bare keyword means true.
    pub(crate) fn boolean(&mut self, n: &Node) -> bool {
        match n.args.first() {
            None => true,
            Some(w) => match parse_bool(&w.text) {
                Some(b) => b,
                None => {
                    self.d.invalid(
                        w.span,
                        format!(
                            "{} '{}' is not a valid boolean (on|off|true|false|yes|no)",
                            n.key.text, w.text
                        ),
                    );
                    true
                }
            },
        }
    }

    /// A word as an IP address.
    pub(crate) fn ip(&mut self, w: &Word) -> Option<IpAddr> {
        match IpAddr::from_str(&w.text) {
            Ok(a) => Some(a),
            Err(_) => {
                self.d
                    .invalid(w.span, format!("invalid IP address '{}'", w.text));
                None
            }
        }
    }

    /// Argument `i` as an IP address, read as keepalived reads a socket address
    /// (`inet_stosockaddr`): a range or a mask after the address (`-N`, `/N`) is dropped.
    pub(crate) fn ip_arg(&mut self, n: &Node, i: usize) -> Option<IpAddr> {
        let w = self.arg(n, i)?;
        self.sockaddr_ip(w)
    }

    /// A word as the address of a socket address (see [`Cx::ip_arg`]).
    pub(crate) fn sockaddr_ip(&mut self, w: &Word) -> Option<IpAddr> {
        let bare = w.text.split(['-', '/']).next().unwrap_or_default();
        match IpAddr::from_str(bare) {
            Ok(a) => Some(a),
            Err(_) => {
                self.d
                    .invalid(w.span, format!("invalid IP address '{}'", w.text));
                None
            }
        }
    }

    /// A word as a port (0-65535).
    pub(crate) fn port(&mut self, w: &Word) -> Option<u16> {
        self.int_word(w, "port", 0, 65535).map(|p| p as u16)
    }

    /// `CMD [user [[:]group]]`.
    pub(crate) fn command(&mut self, n: &Node) -> Option<Command> {
        let cmd = self.string(n)?;
        if cmd.is_empty() {
            self.d.invalid(
                n.line_span(),
                format!("{} has an empty command", n.key.text),
            );
            return None;
        }
        let user = user_spec(&n.args[1..]);
        if n.args.len() > 3 {
            self.d.invalid(
                n.args[3].span,
                format!(
                    "{}: too many arguments (quote the command line)",
                    n.key.text
                ),
            );
        }
        Some(Command { cmd, user })
    }

    /// Whether the user and group a script names exist (a script without one runs as the
    /// default script user, checked with the scripts' security). keepalived drops a script
    /// whose owner does not exist as it reads it, so a later one is not a duplicate.
    pub(crate) fn owner_exists(&self, c: &Command) -> bool {
        c.user.as_ref().is_none_or(|u| self.user_exists(u))
    }

    /// Whether a user (and its group) exists on the host (taken to, without one).
    pub(crate) fn user_exists(&self, u: &UserSpec) -> bool {
        self.host.is_none_or(|h| {
            h.user(&u.user).is_some() && u.group.as_ref().is_none_or(|g| h.group(g).is_some())
        })
    }

    /// Whether a script without a user of its own has one to run as: `script_user` when it
    /// exists, else `keepalived_script`, else root — but not under `enable_script_security`
    /// (read before keepalived's first lookup, [`default_lookup`]), where keepalived removes
    /// such scripts, saying so at the first.
    pub(crate) fn default_owner(&mut self) -> bool {
        if let Some(ok) = self.default_owner {
            return ok;
        }
        let ok = match (self.host, &self.script_user, self.default_lookup) {
            (None, _, _) | (_, _, None) => true,
            // A missing script_user is reported where it is written.
            (Some(_), Some(u), _) => self.user_exists(u),
            (Some(h), None, Some((first, secure))) => {
                let ok = !secure || h.user("keepalived_script").is_some();
                if !ok {
                    self.d.invalid(
                        first,
                        "Unable to set default user keepalived_script for script",
                    );
                }
                ok
            }
        };
        self.default_owner = Some(ok);
        ok
    }

    /// Whether a script block (`vrrp_script`, `MISC_CHECK`; `what` names it) has a user to run
    /// as: its own, or the default one; keepalived removes it at its closing brace otherwise.
    pub(crate) fn script_block_owned(&mut self, n: &Node, own_user: bool, what: &str) -> bool {
        if own_user || self.default_owner() {
            return true;
        }
        self.d.invalid(
            n.close.unwrap_or(n.span()),
            format!("Unable to set default user for {what} - removing"),
        );
        false
    }

    /// A notify-style script (or FIFO) as keepalived keeps it: `None` (logged with `what`,
    /// e.g. `(VI_1) notify_master script`) when its user or group does not exist, or it has
    /// none and there is no default one.
    pub(crate) fn owned_command(&mut self, n: &Node, what: &str) -> Option<Command> {
        let c = self.command(n)?;
        let reason = if c.user.is_some() {
            (!self.owner_exists(&c)).then_some("Invalid user/group")
        } else {
            (!self.default_owner()).then_some("Failed to set default user")
        };
        if let Some(reason) = reason {
            self.d.push_unlined(
                Class::Note,
                Some(n.line_span()),
                format!(
                    "{reason} for {what} {} - ignoring",
                    c.cmd.split_whitespace().next().unwrap_or("")
                ),
            );
            return None;
        }
        Some(c)
    }

    /// A script keyword keepalived takes once: the first whose owner exists is kept and a
    /// later one refused, naming `owner` (one without a value stops keepalived at the value
    /// first).
    pub(crate) fn script_once(&mut self, n: &Node, slot: &mut Option<Command>, owner: &str) {
        if slot.is_some() {
            if let Some(w) = self.arg(n, 0) {
                let cmd = w.text.clone();
                self.d.invalid(
                    n.line_span(),
                    format!(
                        "{owner} {} script already specified - ignoring {cmd}",
                        n.key.text
                    ),
                );
            }
            return;
        }
        *slot = self.owned_command(n, &format!("{owner} {} script", n.key.text));
    }

    /// Reports a block on a keyword that takes none.
    pub(crate) fn no_block(&mut self, n: &Node) {
        if n.block.is_some() {
            self.d.push(
                Class::Syntax,
                Some(n.span()),
                format!("'{}' does not take a block", n.key.text),
            );
        }
    }

    /// Records a deprecated synonym (no exit-code effect).
    pub(crate) fn deprecated(&mut self, n: &Node, instead: &str) {
        self.d.note(
            n.span(),
            format!("'{}' is deprecated; use '{instead}'", n.key.text),
        );
    }
}

/// `user [[:]group]` from words.
pub(crate) fn user_spec(words: &[Word]) -> Option<UserSpec> {
    let user = words.first()?;
    let (user, inline_group) = match user.text.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.trim_start_matches(':').to_string())),
        None => (user.text.clone(), None),
    };
    let group = inline_group.or_else(|| {
        words
            .get(1)
            .map(|g| g.text.trim_start_matches(':').to_string())
    });
    Some(UserSpec { user, group })
}

/// What keepalived says of a `(vrrp_)garp_extra_if` (or its deprecated `vmac_garp_intvl`
/// name) line: words `all` and a delay of `min` to 86400 s, in any order; `None` when it takes
/// it.
pub(crate) fn garp_extra_if(n: &Node, min: u32) -> Option<String> {
    let k = &n.key.text;
    match n.args.iter().map(|w| w.text.as_str()).find(|a| {
        *a != "all"
            && a.parse::<u32>()
                .map_or(true, |d| !(min..=86400).contains(&d))
    }) {
        Some(a) => Some(format!("{k} '{a}' invalid - ignoring")),
        None if n.args.iter().all(|w| w.text == "all") => {
            Some(format!("{k} specified without time - ignoring"))
        }
        None => None,
    }
}

/// `umask` as keepalived reads it: one number (`strtol` base 0: octal with a leading 0, hex
/// with 0x) within 0777, or permission bits by name joined with `|` (`IWGRP|IWOTH`), spaces
/// allowed; the error is keepalived's message.
fn umask(args: &[&str]) -> Result<u32, String> {
    const BITS: [(&str, u32); 9] = [
        ("IRUSR", 0o400),
        ("IWUSR", 0o200),
        ("IXUSR", 0o100),
        ("IRGRP", 0o040),
        ("IWGRP", 0o020),
        ("IXGRP", 0o010),
        ("IROTH", 0o004),
        ("IWOTH", 0o002),
        ("IXOTH", 0o001),
    ];
    let Some(first) = args.first() else {
        return Err("Missing parameter(s) to umask option".into());
    };
    if first.starts_with(|c: char| c.is_ascii_digit()) {
        if args.len() != 1 {
            return Err("Extra parameter(s) to umask option".into());
        }
        let v = if let Some(h) = first
            .strip_prefix("0x")
            .or_else(|| first.strip_prefix("0X"))
        {
            u32::from_str_radix(h, 16).ok()
        } else if first.len() > 1 && first.starts_with('0') {
            u32::from_str_radix(&first[1..], 8).ok()
        } else {
            first.parse::<u32>().ok()
        };
        return v
            .filter(|v| v & !0o777 == 0)
            .ok_or_else(|| format!("invalid umask value {first}"));
    }
    let (mut bits, mut need_or) = (0, false);
    for a in args {
        let mut p = *a;
        while !p.is_empty() {
            if need_or {
                p = p
                    .strip_prefix('|')
                    .ok_or_else(|| format!("Invalid umask syntax {a}"))?;
                need_or = false;
                continue;
            }
            let (_, b) = BITS
                .iter()
                .find(|(name, _)| p.starts_with(name))
                .ok_or_else(|| format!("Unknown umask bit {p}"))?;
            bits |= b;
            p = &p[5..];
            need_or = true;
        }
    }
    if !need_or {
        return Err("umask missing bit value".into());
    }
    Ok(bits)
}

/// An IPv4 address in the forms `inet_aton(3)` accepts: one to four parts, each decimal,
/// octal (leading 0) or hexadecimal (0x), the last filling the remaining bytes.
pub fn inet_aton(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"))
        {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        let n = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        nums.push(n);
    }
    let last = nums.len() - 1;
    let mut out: u64 = 0;
    for (i, n) in nums.iter().enumerate() {
        if i < last {
            if *n > 255 {
                return None;
            }
            out |= n << (8 * (3 - i));
        } else {
            let room = 8 * (4 - i) as u32;
            if *n >= 1u64 << room {
                return None;
            }
            out |= n;
        }
    }
    u32::try_from(out).ok()
}

/// keepalived's largest timer (`ULONG_MAX - 1` µs).
pub(crate) const KA_TIMER_MAX_US: u64 = u64::MAX - 1;

/// The longest time holdfast keeps from a configuration (about 136 years): longer ones are
/// kept at this, so no deadline computed from one overflows.
pub const TIMER_CAP: Duration = Duration::from_secs(u32::MAX as u64);

/// Parses keepalived's `<TIMER>`: decimal seconds, µs resolution.
pub fn parse_timer(s: &str) -> Option<Duration> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut micros = 0u32;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += (b - b'0') as u32 * 10u32.pow(5 - i as u32);
    }
    Some(Duration::from_secs(secs) + Duration::from_micros(micros as u64))
}

/// `on|off|true|false|yes|no`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// The origin of a node.
pub(crate) fn origin(n: &Node) -> Origin {
    Origin(Some(n.span()))
}

/// The span of a node's first argument, or its keyword.
pub(crate) fn arg_span(n: &Node) -> Span {
    n.args.first().map_or(n.span(), |w| w.span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umask_is_read_as_keepalived_reads_it() {
        assert_eq!(umask(&["022"]), Ok(0o22));
        assert_eq!(umask(&["0x1ff"]), Ok(0o777));
        assert_eq!(umask(&["18"]), Ok(18));
        assert_eq!(umask(&["IRUSR|IWGRP", "|IXOTH"]), Ok(0o421));
        assert_eq!(umask(&["0999"]), Err("invalid umask value 0999".into()));
        assert_eq!(umask(&["01000"]), Err("invalid umask value 01000".into()));
        assert_eq!(umask(&["-1"]), Err("Unknown umask bit -1".into()));
        assert_eq!(umask(&["IWGRP|"]), Err("umask missing bit value".into()));
        assert_eq!(
            umask(&["IRUSR", "IWUSR"]),
            Err("Invalid umask syntax IWUSR".into())
        );
        assert_eq!(
            umask(&["022", "1"]),
            Err("Extra parameter(s) to umask option".into())
        );
    }

    #[test]
    fn timers_have_microsecond_resolution() {
        assert_eq!(parse_timer("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_timer("0.000001"), Some(Duration::from_micros(1)));
        assert_eq!(parse_timer("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timer(".5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_timer("1.2345678"),
            Some(Duration::from_micros(1_234_567))
        );
        assert_eq!(parse_timer("x"), None);
        assert_eq!(parse_timer("-1"), None);
        assert_eq!(parse_timer("."), None);
    }

    #[test]
    fn bools_accept_keepalived_spellings() {
        for (s, v) in [
            ("on", true),
            ("YES", true),
            ("true", true),
            ("off", false),
            ("no", false),
            ("False", false),
        ] {
            assert_eq!(parse_bool(s), Some(v), "{s}");
        }
        assert_eq!(parse_bool("1"), None);
    }

    #[test]
    fn lvs_sync_daemon_global_and_the_deprecated_instance_keyword() {
        let r = crate::parse_str(
            "global_defs {\n lvs_sync_daemon eth1 VI_1 id 7 maxlen 1400 port 8848 ttl 2 group 224.0.0.81\n}\n",
        );
        let d = r.config.global.lvs_sync_daemon.clone().unwrap();
        assert_eq!(
            (
                d.iface.as_str(),
                d.instance.as_deref(),
                d.id,
                d.maxlen,
                d.port,
                d.ttl
            ),
            (
                "eth1",
                Some("VI_1"),
                Some(7),
                Some(1400),
                Some(8848),
                Some(2)
            )
        );
        assert_eq!(d.group, Some("224.0.0.81".parse().unwrap()));
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
        // `inst` spelled out, and errors named at their word.
        let r = crate::parse_str(
            "global_defs {\n lvs_sync_daemon eth1 inst VI_2 id 300 group 10.0.0.1\n}\n",
        );
        assert_eq!(
            r.config
                .global
                .lvs_sync_daemon
                .as_ref()
                .unwrap()
                .instance
                .as_deref(),
            Some("VI_2")
        );
        assert_eq!(r.diagnostics.len(), 2, "{:?}", r.diagnostics);
        // keepalived's deprecated form inside a vrrp_instance: a warning, and it works.
        let r = crate::parse_str(
            "vrrp_instance DB_HA {\n interface eth0\n virtual_router_id 10\n lvs_sync_daemon_interface eth0\n}\n",
        );
        let d = r.config.global.lvs_sync_daemon.clone().unwrap();
        assert_eq!(
            (d.iface.as_str(), d.instance.as_deref()),
            ("eth0", Some("DB_HA"))
        );
        assert!(r.diagnostics.iter().any(|d| d.message.contains(
            "(DB_HA) Specifying lvs_sync_daemon_interface against a vrrp is deprecated. Please use global lvs_sync_daemon"
        )));
    }
}

#[cfg(test)]
mod unsupported_tests {
    use crate::diag::Class;

    /// The lines of `text` reported unsupported, and the rendered diagnostics.
    fn unsupported_lines(text: &str) -> (Vec<usize>, String) {
        let loaded = crate::parse_str(text);
        let mut lines: Vec<usize> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.class == Class::Unsupported)
            .filter_map(|d| d.span.map(|s| loaded.sources.line_of(s)))
            .collect();
        lines.sort_unstable();
        (lines, loaded.render())
    }

    /// A keyword holdfast reads but does not act on is reported as unsupported on its own
    /// line, so check-config never lets it pass silently; the ones it acts on are not.
    #[test]
    fn keywords_read_but_not_acted_on_are_reported_where_they_are() {
        let text = "global_defs {\n notify_fifo /tmp/f\n vrrp_notify_fifo /tmp/g\n lvs_notify_fifo /tmp/h\n startup_script /bin/true\n startup_script_timeout 3\n shutdown_script /bin/true\n shutdown_script_timeout 3\n checker_log_all_failures\n vrrp_min_garp\n max_auto_priority 10\n vrrp_rt_priority 10\n checker_rt_priority 10\n vrrp_no_swap\n checker_no_swap\n vrrp_strict\n vrrp_garp_interval 0.1\n vrrp_gna_interval 0.1\n notification_email {\n  a@example.com\n }\n notification_email_from b@example.com\n smtp_server 10.0.0.9\n smtp_connect_timeout 5\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n unicast_fault_no_peer\n strict_mode\n promote_secondaries\n virtual_ipaddress {\n  10.0.0.1/24 preferred_lft 0\n  10.0.0.2/32 peer 10.0.0.3\n }\n}\nvirtual_server 10.0.0.1 80 {\n real_server 10.0.0.5 80 {\n  HTTP_GET {\n   url {\n    path /\n   }\n   bind_if eth0\n   fwmark 3\n   log_all_failures\n   fast_recovery\n  }\n }\n}\n";
        let (lines, diags) = unsupported_lines(text);
        // max_auto_priority, unicast_fault_no_peer (vrrp_strict, strict_mode and the
        // real-time priorities run).
        assert_eq!(lines, [11, 29], "{diags}");
    }

    #[test]
    fn dynamic_interfaces_accept_modes_and_groups_are_not_reported() {
        let text = "global_defs {\n dynamic_interfaces\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n no_accept\n accept\n virtual_ipaddress {\n  10.0.0.1/24\n }\n}\nvirtual_server_group G {\n 10.0.0.1 80\n}\nvirtual_server group G {\n real_server 10.0.0.5 80 {\n }\n}\n";
        let (lines, diags) = unsupported_lines(text);
        // `dynamic_interfaces` runs (an absent interface is waited for), so do `no_accept`
        // and `accept` (the VRRP firewall) and the group.
        assert!(lines.is_empty(), "{diags}");
    }
}

/// What keepalived 2.2.7 does with a keyword that comes without its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Stops reading the configuration there (exit 2).
    Stop,
    /// Says nothing (the value is optional, or its absence ignored).
    Silent,
    /// Reports an error and carries on.
    Error,
}

/// From `reference/keepalived-2.2.7-stops.txt` (keepalived run on each keyword without its
/// value, by scripts/keepalived-stops); a keyword that stops in some block stops here, one
/// silent in some block and stopping in none is silent.
fn missing_value(keyword: &str) -> Missing {
    static TABLE: std::sync::OnceLock<std::collections::HashMap<&'static str, Missing>> =
        std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut m = std::collections::HashMap::new();
        for l in include_str!("../reference/keepalived-2.2.7-stops.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
        {
            let mut w = l.split_whitespace().skip(1);
            let (Some(k), Some(what)) = (w.next(), w.next()) else {
                continue;
            };
            let what = if what == "stop" {
                Missing::Stop
            } else {
                Missing::Silent
            };
            let e = m.entry(k).or_insert(what);
            if what == Missing::Stop {
                *e = Missing::Stop;
            }
        }
        m
    });
    table.get(keyword).copied().unwrap_or(Missing::Error)
}
