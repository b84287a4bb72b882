//! Printer: writes a [`Config`] back as keepalived.conf text with every default made explicit
//! (`check-config --dump-conf`). `parse(print(c)) == c` holds for every configuration the
//! lowering produces.

use std::fmt::Write as _;
use std::time::Duration;

use crate::model::*;

/// Prints a whole configuration.
pub fn print(c: &Config) -> String {
    let mut p = P {
        out: String::new(),
        depth: 0,
    };
    for (k, v) in [
        ("net_namespace", &c.global.net_namespace),
        ("instance", &c.global.instance_name),
    ] {
        if let Some(v) = v {
            p.line(&format!("{k} {}", q(v)));
        }
    }
    p.global(&c.global);
    for s in &c.scripts {
        p.script(s);
    }
    for t in &c.track_files {
        p.open("track_file", &[&t.name]);
        p.kv("file", &[&q(&t.file)]);
        p.weight(t.weight, t.reverse);
        if let Some((v, o)) = t.init_file {
            p.kv(
                "init_file",
                &[&v.to_string(), if o { "overwrite" } else { "" }],
            );
        }
        p.close();
    }
    for t in &c.track_processes {
        p.open("vrrp_track_process", &[&t.name]);
        let mut proc_args = vec![q(&t.process)];
        proc_args.extend(t.args.iter().map(|a| q(a)));
        p.line(&format!("process {}", proc_args.join(" ")));
        p.opt("param_match", &t.param_match);
        p.weight(t.weight, t.reverse);
        p.kv("quorum", &[&t.quorum.to_string()]);
        p.optn("quorum_max", t.quorum_max);
        p.optd("fork_delay", t.fork_delay);
        p.optd("terminate_delay", t.terminate_delay);
        p.optd("delay", t.delay);
        p.flag("full_command", t.full_command);
        p.close();
    }
    for b in &c.bfd_instances {
        p.open("bfd_instance", &[&b.name]);
        p.kv("neighbor_ip", &[&b.neighbor.to_string()]);
        if let Some(s) = b.source {
            p.kv("source_ip", &[&s.to_string()]);
        }
        let ms = |d: std::time::Duration| {
            let us = d.as_micros();
            if us.is_multiple_of(1000) {
                (us / 1000).to_string()
            } else {
                format!("{}.{:03}", us / 1000, us % 1000)
            }
        };
        p.kv("min_rx", &[&ms(b.min_rx)]);
        p.kv("min_tx", &[&ms(b.min_tx)]);
        p.kv("idle_tx", &[&ms(b.idle_tx)]);
        p.kv("multiplier", &[&b.multiplier.to_string()]);
        p.flag("passive", b.passive);
        p.kv("ttl", &[&b.ttl.to_string()]);
        p.kv("max_hops", &[&b.max_hops.to_string()]);
        if b.weight != 0 || b.weight_reverse {
            p.kv(
                "weight",
                &[
                    &b.weight.to_string(),
                    if b.weight_reverse { "reverse" } else { "" },
                ],
            );
        }
        p.close();
    }
    for a in &c.announces {
        p.announce(a);
    }
    if !c.static_addresses.is_empty() {
        p.open("static_ipaddress", &[]);
        for v in &c.static_addresses {
            p.vip(v);
        }
        p.close();
    }
    if !c.static_routes.is_empty() {
        p.open("static_routes", &[]);
        for r in &c.static_routes {
            p.line(&route_line(r));
        }
        p.close();
    }
    if !c.static_rules.is_empty() {
        p.open("static_rules", &[]);
        for r in &c.static_rules {
            p.line(&rule_line(r));
        }
        p.close();
    }
    for i in &c.instances {
        p.instance(i);
    }
    for g in &c.sync_groups {
        p.open("vrrp_sync_group", &[&g.name]);
        p.open("group", &[]);
        for m in &g.members {
            p.line(&q(m));
        }
        p.close();
        p.tracking(&g.track);
        p.notify(&g.notify);
        p.flag("sync_group_tracking_weight", g.tracking_weight);
        p.boolean("smtp_alert", g.smtp_alert);
        p.close();
    }
    for g in &c.vs_groups {
        p.open("virtual_server_group", &[&g.name]);
        for e in &g.entries {
            match e {
                VsGroupEntry::Addr {
                    addr,
                    range_end,
                    prefix,
                    port,
                } => {
                    let mut s = addr.to_string();
                    if let Some(r) = range_end {
                        if addr.is_ipv6() {
                            let _ = write!(s, "-{r:x}");
                        } else {
                            let _ = write!(s, "-{r}");
                        }
                    }
                    if let Some(pf) = prefix {
                        let _ = write!(s, "/{pf}");
                    }
                    p.line(&format!("{s} {port}"));
                }
                VsGroupEntry::Fwmark { mark, family } => {
                    // The family word as it reads back (a quoted `}` is a word too).
                    let family = family.as_deref().map(q).unwrap_or_default();
                    p.kv("fwmark", &[&mark.to_string(), &family]);
                }
            }
        }
        p.close();
    }
    for vs in &c.virtual_servers {
        p.virtual_server(vs);
    }
    p.out
}

/// A route entry as `virtual_routes` / `static_routes` take it back.
pub fn route_line(r: &Route) -> String {
    let mut w: Vec<String> = Vec::new();
    let kinds = [
        "",
        "unicast",
        "local",
        "broadcast",
        "anycast",
        "multicast",
        "blackhole",
        "unreachable",
        "prohibit",
        "throw",
        "nat",
    ];
    if r.kind != 1
        && let Some(k) = kinds.get(usize::from(r.kind))
    {
        w.push((*k).to_owned());
    }
    w.push(format!("{}/{}", r.dst.0, r.dst.1));
    if let Some((a, l)) = r.from {
        w.push(format!("from {a}/{l}"));
    }
    if let Some(a) = r.src {
        w.push(format!("src {a}"));
    }
    if let Some(t) = r.tos {
        w.push(format!("tos 0x{t:x}"));
    }
    if let Some(a) = r.via {
        w.push(format!("via {a}"));
    }
    if let Some(d) = &r.dev {
        w.push(format!("dev {}", q(d)));
    }
    if r.table != 254 {
        w.push(format!("table {}", r.table));
    }
    if let Some(pr) = r.protocol {
        w.push(format!("protocol {pr}"));
    }
    if let Some(sc) = r.scope {
        w.push(format!("scope {sc}"));
    }
    if let Some(m) = r.metric {
        w.push(format!("metric {m}"));
    }
    if r.onlink {
        w.push("onlink".to_owned());
    }
    for &(kind, val, lock) in &r.metrics {
        let name = match kind {
            2 => "mtu",
            3 => "window",
            6 => "ssthresh",
            7 => "cwnd",
            8 => "advmss",
            9 => "reordering",
            10 => "hoplimit",
            11 => "initcwnd",
            _ => "initrwnd",
        };
        w.push(format!("{name} {}{val}", if lock { "lock " } else { "" }));
    }
    match r.mode {
        RouteMode::Prepend => {}
        RouteMode::Add => w.push("add".to_owned()),
        RouteMode::Append => w.push("append".to_owned()),
    }
    if !r.track {
        w.push("no_track".to_owned());
    }
    for nh in &r.nexthops {
        w.push("nexthop".to_owned());
        if let Some(a) = nh.via {
            w.push(format!("via {a}"));
        }
        if let Some(d) = &nh.dev {
            w.push(format!("dev {}", q(d)));
        }
        w.push(format!("weight {}", nh.weight));
        if nh.onlink {
            w.push("onlink".to_owned());
        }
    }
    w.join(" ")
}

/// A rule entry as `virtual_rules` / `static_rules` take it back.
pub fn rule_line(r: &Rule) -> String {
    let mut w: Vec<String> = Vec::new();
    if r.v6 && r.from.is_none() && r.to.is_none() {
        // The family can only come from this word; keepalived steps over the word after it.
        w.push("inet6 inet6".to_owned());
    }
    if r.invert {
        w.push("not".to_owned());
    }
    if let Some((a, l)) = r.from {
        w.push(format!("from {a}/{l}"));
    }
    if let Some((a, l)) = r.to {
        w.push(format!("to {a}/{l}"));
    }
    if let Some(t) = r.tos {
        w.push(format!("tos 0x{t:x}"));
    }
    if let Some((m, mask)) = r.fwmark {
        match mask {
            Some(k) => w.push(format!("fwmark 0x{m:x}/0x{k:x}")),
            None => w.push(format!("fwmark 0x{m:x}")),
        }
    }
    if let Some(d) = &r.iif {
        w.push(format!("iif {}", q(d)));
    }
    if let Some(d) = &r.oif {
        w.push(format!("oif {}", q(d)));
    }
    if let Some(p) = r.ipproto {
        w.push(format!("ipproto {p}"));
    }
    for (k, range) in [("sport", r.sport), ("dport", r.dport)] {
        if let Some((a, b)) = range {
            w.push(format!("{k} {a}-{b}"));
        }
    }
    if let Some(p) = r.suppress_prefixlen {
        w.push(format!("suppress_prefixlength {p}"));
    }
    if let Some(p) = r.protocol {
        w.push(format!("protocol {p}"));
    }
    if !r.track {
        w.push("no_track".to_owned());
    }
    w.push(format!("priority {}", r.priority));
    w.push(match r.action {
        RuleAction::Table(t) => format!("table {t}"),
        RuleAction::Goto(g) => format!("goto {g}"),
        RuleAction::Nop => "nop".to_owned(),
        RuleAction::Blackhole => "blackhole".to_owned(),
        RuleAction::Unreachable => "unreachable".to_owned(),
        RuleAction::Prohibit => "prohibit".to_owned(),
    });
    w.join(" ")
}

/// A method with its tunnel options, as `lvs_method` takes them.
fn with_tunnel(m: &str, t: Option<crate::model::Tunnel>) -> String {
    use crate::model::{TunnelCsum, TunnelType};
    let Some(t) = t else {
        return m.to_string();
    };
    let kind = match t.kind {
        TunnelType::Ipip => "ipip",
        TunnelType::Gue => "gue",
        TunnelType::Gre => "gre",
    };
    let port = if t.port == 0 {
        String::new()
    } else {
        format!(" port {}", t.port)
    };
    let csum = match t.csum {
        TunnelCsum::NoCsum => "nocsum",
        TunnelCsum::Csum => "csum",
        TunnelCsum::RemCsum => "remcsum",
    };
    format!("{m} type {kind}{port} {csum}")
}

/// Quotes a word if keepalived's tokenizer would otherwise split or alter it.
pub fn q(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            !(c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    '"' | '\'' | '#' | '!' | '{' | '}' | '\\' | '$' | '\u{a0}'
                ))
        })
        && !s.starts_with(['@', '~']);
    if plain {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '$' => out.push_str("\\x24"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A duration as keepalived `<TIMER>` text.
pub fn timer(d: Duration) -> String {
    let us = d.subsec_micros();
    if us == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}.{:06}", d.as_secs(), us)
            .trim_end_matches('0')
            .to_string()
    }
}

struct P {
    out: String,
    depth: usize,
}

impl P {
    fn line(&mut self, s: &str) {
        for _ in 0..self.depth {
            self.out.push_str("    ");
        }
        self.out.push_str(s.trim_end());
        self.out.push('\n');
    }
    fn open(&mut self, k: &str, args: &[&str]) {
        let a: Vec<String> = args
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| q(a))
            .collect();
        let sep = if a.is_empty() { "" } else { " " };
        self.line(&format!("{k}{sep}{} {{", a.join(" ")));
        self.depth += 1;
    }
    fn close(&mut self) {
        self.depth -= 1;
        self.line("}");
    }
    /// `k args…` with args already quoted as needed.
    fn kv(&mut self, k: &str, args: &[&str]) {
        let a: Vec<&str> = args.iter().copied().filter(|a| !a.is_empty()).collect();
        self.line(&format!("{k} {}", a.join(" ")));
    }
    fn flag(&mut self, k: &str, on: bool) {
        if on {
            self.line(k);
        }
    }
    fn boolean(&mut self, k: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.line(&format!("{k} {}", if v { "on" } else { "off" }));
        }
    }
    fn opt(&mut self, k: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.kv(k, &[&q(v)]);
        }
    }
    fn optn<T: ToString>(&mut self, k: &str, v: Option<T>) {
        if let Some(v) = v {
            self.kv(k, &[&v.to_string()]);
        }
    }
    fn optd(&mut self, k: &str, v: Option<Duration>) {
        if let Some(v) = v {
            self.kv(k, &[&timer(v)]);
        }
    }
    fn user(u: &Option<UserSpec>) -> String {
        match u {
            None => String::new(),
            Some(UserSpec { user, group: None }) => q(user),
            Some(UserSpec {
                user,
                group: Some(g),
            }) => format!("{} {}", q(user), q(g)),
        }
    }
    fn cmd(&mut self, k: &str, c: &Option<Command>) {
        if let Some(c) = c {
            self.kv(k, &[&q(&c.cmd), &Self::user(&c.user)]);
        }
    }
    fn weight(&mut self, w: i32, reverse: bool) {
        self.kv(
            "weight",
            &[&w.to_string(), if reverse { "reverse" } else { "" }],
        );
    }
    fn garp(&mut self, g: &Garp, prefix: &str) {
        self.optd(&format!("{prefix}garp_master_delay"), g.master_delay);
        self.optn(&format!("{prefix}garp_master_repeat"), g.master_repeat);
        self.optd(&format!("{prefix}garp_master_refresh"), g.master_refresh);
        self.optn(
            &format!("{prefix}garp_master_refresh_repeat"),
            g.master_refresh_repeat,
        );
        self.optd(
            &format!("{prefix}garp_lower_prio_delay"),
            g.lower_prio_delay,
        );
        self.optn(
            &format!("{prefix}garp_lower_prio_repeat"),
            g.lower_prio_repeat,
        );
        self.optd(&format!("{prefix}garp_interval"), g.interval);
        self.optd(&format!("{prefix}gna_interval"), g.gna_interval);
    }

    fn global(&mut self, g: &Global) {
        self.open("global_defs", &[]);
        self.opt("router_id", &g.router_id);
        if !g.notification_email.is_empty() {
            self.open("notification_email", &[]);
            for e in &g.notification_email {
                self.line(&q(e));
            }
            self.close();
        }
        self.opt("notification_email_from", &g.notification_email_from);
        if let Some(s) = &g.smtp_server {
            let port = g.smtp_port.map(|p| p.to_string()).unwrap_or_default();
            self.kv("smtp_server", &[&q(s), &port]);
        }
        self.optd("smtp_connect_timeout", g.smtp_connect_timeout);
        self.opt("smtp_helo_name", &g.smtp_helo_name);
        self.boolean("smtp_alert", g.smtp_alert);
        self.boolean("smtp_alert_vrrp", g.smtp_alert_vrrp);
        self.boolean("smtp_alert_checker", g.smtp_alert_checker);
        self.flag("no_checker_emails", g.no_checker_emails);
        self.flag("no_email_faults", g.no_email_faults);
        if g.script_user.is_some() {
            self.kv("script_user", &[&Self::user(&g.script_user)]);
        }
        self.flag("enable_script_security", g.enable_script_security);
        self.kv("vrrp_version", &[&g.vrrp_version.to_string()]);
        self.kv("vrrp_mcast_group4", &[&g.vrrp_mcast_group4.to_string()]);
        self.kv("vrrp_mcast_group6", &[&g.vrrp_mcast_group6.to_string()]);
        self.garp(&g.garp, "vrrp_");
        self.flag("vrrp_min_garp", g.vrrp_min_garp);
        self.flag("vrrp_lower_prio_no_advert", g.lower_prio_no_advert);
        self.flag("vrrp_higher_prio_send_advert", g.higher_prio_send_advert);
        self.flag("vrrp_check_unicast_src", g.check_unicast_src);
        self.flag("vrrp_skip_check_adv_addr", g.skip_check_adv_addr);
        self.flag("vrrp_strict", g.strict);
        self.opt("nftables", &g.nftables);
        self.optn("nftables_priority", g.nftables_priority);
        self.flag("nftables_counters", g.nftables_counters);
        self.flag("nftables_ifindex", g.nftables_ifindex);
        self.optd("vrrp_startup_delay", g.startup_delay);
        self.flag("dynamic_interfaces", g.dynamic_interfaces);
        self.optn("max_auto_priority", g.max_auto_priority);
        self.optn("vrrp_priority", g.vrrp_priority);
        self.optn("checker_priority", g.checker_priority);
        self.optn("vrrp_rt_priority", g.vrrp_rt_priority);
        self.optn("checker_rt_priority", g.checker_rt_priority);
        self.optn("vrrp_rlimit_rttime", g.vrrp_rlimit_rttime);
        self.optn("checker_rlimit_rttime", g.checker_rlimit_rttime);
        self.flag("vrrp_no_swap", g.vrrp_no_swap);
        self.flag("checker_no_swap", g.checker_no_swap);
        self.flag("lvs_flush", g.lvs_flush);
        self.flag("lvs_flush_on_stop", g.lvs_flush_on_stop);
        if let Some(t) = &g.lvs_timeouts {
            let mut s = String::from("lvs_timeouts");
            for (k, v) in [("tcp", t.tcp), ("tcpfin", t.tcpfin), ("udp", t.udp)] {
                if let Some(v) = v {
                    let _ = write!(s, " {k} {v}");
                }
            }
            self.line(&s);
        }
        if let Some(d) = &g.lvs_sync_daemon {
            let mut s = format!("lvs_sync_daemon {}", q(&d.iface));
            if let Some(i) = &d.instance {
                let _ = write!(s, " inst {}", q(i));
            }
            for (k, v) in [
                ("id", d.id.map(u32::from)),
                ("maxlen", d.maxlen.map(u32::from)),
                ("port", d.port.map(u32::from)),
                ("ttl", d.ttl.map(u32::from)),
            ] {
                if let Some(v) = v {
                    let _ = write!(s, " {k} {v}");
                }
            }
            if let Some(g) = d.group {
                let _ = write!(s, " group {g}");
            }
            self.line(&s);
        }
        self.cmd("notify_fifo", &g.notify_fifo);
        self.cmd("vrrp_notify_fifo", &g.vrrp_notify_fifo);
        self.cmd("lvs_notify_fifo", &g.lvs_notify_fifo);
        self.opt("default_interface", &g.default_interface);
        self.cmd("notify_fifo_script", &g.notify_fifo_script);
        self.cmd("vrrp_notify_fifo_script", &g.vrrp_notify_fifo_script);
        self.cmd("lvs_notify_fifo_script", &g.lvs_notify_fifo_script);
        self.flag("v3_checksum_as_v2", g.v3_checksum_as_v2);
        self.flag("checker_log_all_failures", g.checker_log_all_failures);
        self.cmd("startup_script", &g.startup_script);
        self.optd("startup_script_timeout", g.startup_script_timeout);
        self.cmd("shutdown_script", &g.shutdown_script);
        self.optd("shutdown_script_timeout", g.shutdown_script_timeout);
        if let Some(d) = g.dataplane {
            self.kv("dataplane", &[dataplane(d)]);
        }
        self.opt("control_socket", &g.control_socket);
        self.optn("metrics_listen", g.metrics_listen);
        self.opt("nft_table", &g.nft_table);
        if let Some(on) = g.nft_flowtable {
            self.kv("nft_flowtable", &[if on { "on" } else { "off" }]);
        }
        self.optn("proxy_maxconn", g.proxy_maxconn);
        self.close();
    }

    fn script(&mut self, s: &VrrpScript) {
        self.open("vrrp_script", &[&s.name]);
        match &s.kind {
            Some(ScriptKind::Command(c)) => self.kv("script", &[&q(c)]),
            Some(ScriptKind::Checker(c)) => self.checker(c),
            None => {}
        }
        self.kv("interval", &[&timer(s.interval)]);
        self.optd("timeout", s.timeout);
        self.weight(s.weight, s.reverse);
        self.kv("rise", &[&s.rise.to_string()]);
        self.kv("fall", &[&s.fall.to_string()]);
        if s.user.is_some() {
            self.kv("user", &[&Self::user(&s.user)]);
        }
        self.flag("init_fail", s.init_fail);
        self.close();
    }

    fn announce(&mut self, a: &Announce) {
        self.open("bgp_announce", &[&q(&a.name)]);
        for (addr, len, _) in &a.prefixes {
            self.kv("prefix", &[&format!("{addr}/{len}")]);
        }
        if let Some(t) = a.table {
            self.kv("table", &[&t.to_string()]);
        }
        for (key, proto, _) in &a.virtual_servers {
            let proto = match proto {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
                Protocol::Sctp => "SCTP",
            };
            let line = match key {
                VsKey::Addr(ip, port) => format!("track_virtual_server {ip} {port} {proto}"),
                VsKey::Fwmark(m) => format!("track_virtual_server fwmark {m} {proto}"),
                VsKey::Group(g) => format!("track_virtual_server group {} {proto}", q(g)),
            };
            self.line(&line);
        }
        self.tracking(&a.track);
        if !a.communities.is_empty() {
            let words: Vec<&str> = a.communities.iter().map(String::as_str).collect();
            self.kv("community", &words);
        }
        self.optn("med", a.med);
        for h in &a.next_hops {
            self.kv("next_hop", &[&h.to_string()]);
        }
        self.close();
    }

    fn tracking(&mut self, t: &Tracking) {
        if !t.interfaces.is_empty() {
            self.open("track_interface", &[]);
            for i in &t.interfaces {
                let w = if i.weight != 0 {
                    format!(" weight {}", i.weight)
                } else {
                    String::new()
                };
                let r = if i.reverse { " reverse" } else { "" };
                self.line(&format!("{}{w}{r}", q(&i.name)));
            }
            self.close();
        }
        for (k, list) in [
            ("track_script", &t.scripts),
            ("track_file", &t.files),
            ("track_process", &t.processes),
            ("track_bfd", &t.bfds),
        ] {
            if list.is_empty() {
                continue;
            }
            self.open(k, &[]);
            for r in list {
                let mut s = q(&r.name);
                if let Some(w) = r.weight {
                    let _ = write!(s, " weight {w}");
                }
                match r.reverse {
                    Some(true) => s.push_str(" reverse"),
                    Some(false) => s.push_str(" noreverse"),
                    None => {}
                }
                self.line(&s);
            }
            self.close();
        }
    }

    fn notify(&mut self, n: &Notify) {
        self.cmd("notify_master", &n.master);
        self.cmd("notify_backup", &n.backup);
        self.cmd("notify_fault", &n.fault);
        self.cmd("notify_stop", &n.stop);
        self.cmd("notify", &n.generic);
        self.cmd("notify_master_rx_lower_pri", &n.master_rx_lower_pri);
    }

    fn vip(&mut self, v: &Vip) {
        let mut s = format!("{}/{}", v.addr, v.prefix);
        for (k, val) in [
            ("brd", &v.brd),
            ("dev", &v.dev),
            ("scope", &v.scope),
            ("label", &v.label),
        ] {
            if let Some(val) = val {
                let _ = write!(s, " {k} {}", q(val));
            }
        }
        if let Some(p) = v.peer {
            let _ = write!(s, " peer {p}");
        }
        for f in &v.flags {
            let _ = write!(s, " {f}");
        }
        if let Some(p) = &v.preferred_lft {
            let _ = write!(s, " preferred_lft {}", q(p));
        }
        self.line(&s);
    }

    fn instance(&mut self, i: &VrrpInstance) {
        self.open("vrrp_instance", &[&i.name]);
        self.kv(
            "state",
            &[if i.state == InitState::Master {
                "MASTER"
            } else {
                "BACKUP"
            }],
        );
        if let Some(ifn) = &i.interface {
            self.kv("interface", &[&q(ifn)]);
        }
        if i.vrid != 0 {
            self.kv("virtual_router_id", &[&i.vrid.to_string()]);
        }
        self.kv("priority", &[&i.priority.to_string()]);
        self.kv("advert_int", &[&timer(i.advert_int)]);
        self.kv("version", &[&i.version.to_string()]);
        self.flag("nopreempt", i.nopreempt);
        self.flag("preempt_fast", i.preempt_fast);
        self.optd("preempt_delay", i.preempt_delay);
        if !i.unicast_peers.is_empty() {
            self.open("unicast_peer", &[]);
            for p in &i.unicast_peers {
                let mut s = p.addr.to_string();
                if let Some(t) = p.min_ttl {
                    let _ = write!(s, " min_ttl {t}");
                }
                if let Some(t) = p.max_ttl {
                    let _ = write!(s, " max_ttl {t}");
                }
                self.line(&s);
            }
            self.close();
        }
        self.optn("unicast_src_ip", i.unicast_src_ip);
        self.optn("mcast_src_ip", i.mcast_src_ip);
        self.optn("unicast_ttl", i.unicast_ttl);
        self.flag("check_unicast_src", i.check_unicast_src);
        self.flag("unicast_fault_no_peer", i.unicast_fault_no_peer);
        if let Some(a) = &i.auth {
            self.open("authentication", &[]);
            self.kv(
                "auth_type",
                &[if a.auth_type == AuthType::Pass {
                    "PASS"
                } else {
                    "AH"
                }],
            );
            if !a.pass.is_empty() {
                self.kv("auth_pass", &[&q(&a.pass)]);
            }
            self.close();
        }
        for (k, list) in [
            ("virtual_ipaddress", &i.vips),
            ("virtual_ipaddress_excluded", &i.excluded_vips),
        ] {
            if list.is_empty() {
                continue;
            }
            self.open(k, &[]);
            for v in list {
                self.vip(v);
            }
            self.close();
        }
        if !i.routes.is_empty() {
            self.open("virtual_routes", &[]);
            for r in &i.routes {
                self.line(&route_line(r));
            }
            self.close();
        }
        if !i.rules.is_empty() {
            self.open("virtual_rules", &[]);
            for r in &i.rules {
                self.line(&rule_line(r));
            }
            self.close();
        }
        self.tracking(&i.track);
        self.flag("dont_track_primary", i.dont_track_primary);
        self.flag("native_ipv6", i.native_ipv6);
        match i.accept {
            Some(true) => self.line("accept"),
            Some(false) => self.line("no_accept"),
            None => {}
        }
        self.boolean("skip_check_adv_addr", i.skip_check_adv_addr);
        self.boolean("strict_mode", i.strict_mode);
        self.boolean("smtp_alert", i.smtp_alert);
        self.garp(&i.garp, "");
        self.boolean("lower_prio_no_advert", i.lower_prio_no_advert);
        self.boolean("higher_prio_send_advert", i.higher_prio_send_advert);
        self.notify(&i.notify);
        self.flag("promote_secondaries", i.promote_secondaries);
        if let Some(v) = &i.vmac {
            let mut words = vec!["use_vmac".to_string()];
            words.extend(v.name.clone());
            words.extend(v.mac.map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }));
            self.line(&words.join(" "));
        }
        self.flag("vmac_xmit_base", i.vmac_xmit_base);
        if i.debug != 0 {
            self.line(&format!("debug {}", i.debug));
        }
        self.close();
    }

    fn timing(&mut self, t: &CheckTiming) {
        self.optd("connect_timeout", t.connect_timeout);
        self.optn("retry", t.retry);
        self.optd("delay_before_retry", t.delay_before_retry);
        self.optd("warmup", t.warmup);
        self.optd("delay_loop", t.delay_loop);
    }

    fn virtual_server(&mut self, vs: &VirtualServer) {
        let head = match &vs.key {
            VsKey::Addr(ip, port) => format!("{ip} {port}"),
            VsKey::Fwmark(m) => format!("fwmark {m}"),
            VsKey::Group(g) => format!("group {}", q(g)),
        };
        self.line(&format!("virtual_server {head} {{"));
        self.depth += 1;
        self.kv("delay_loop", &[&timer(vs.delay_loop)]);
        self.kv("lvs_sched", &[&vs.lvs_sched]);
        self.flag("ops", vs.ops);
        if let Some(v6) = vs.ip_family_v6 {
            self.line(if v6 {
                "ip_family inet6"
            } else {
                "ip_family inet"
            });
        }
        // After the scheduler, which the named forms are read against.
        let named = matches!(vs.lvs_sched.as_str(), "sh" | "mh");
        if vs.sched_port {
            self.line(&if named {
                format!("{}-port", vs.lvs_sched)
            } else {
                "flag-2".into()
            });
        }
        if vs.sched_fallback {
            self.line(&if named {
                format!("{}-fallback", vs.lvs_sched)
            } else {
                "flag-1".into()
            });
        }
        self.kv(
            "lvs_method",
            &[&with_tunnel(method(vs.lvs_method), vs.tunnel)],
        );
        if !matches!(vs.key, VsKey::Fwmark(_)) {
            self.kv(
                "protocol",
                &[match vs.protocol {
                    Protocol::Tcp => "TCP",
                    Protocol::Udp => "UDP",
                    Protocol::Sctp => "SCTP",
                }],
            );
        }
        self.optn("persistence_timeout", vs.persistence_timeout);
        self.opt("persistence_granularity", &vs.persistence_granularity);
        self.opt("persistence_engine", &vs.persistence_engine);
        self.flag("ha_suspend", vs.ha_suspend);
        self.flag("proxy_protocol", vs.proxy_protocol);
        self.opt("virtualhost", &vs.virtualhost);
        self.flag("alpha", vs.alpha);
        self.flag("omega", vs.omega);
        self.kv("quorum", &[&vs.quorum.to_string()]);
        self.kv("hysteresis", &[&vs.hysteresis.to_string()]);
        self.cmd("quorum_up", &vs.quorum_up);
        self.cmd("quorum_down", &vs.quorum_down);
        if let Some((ip, port)) = vs.sorry_server {
            self.kv(
                "sorry_server",
                &[
                    &ip.to_string(),
                    &port.map(|p| p.to_string()).unwrap_or_default(),
                ],
            );
        }
        self.flag("sorry_server_inhibit", vs.sorry_server_inhibit);
        if let Some(m) = vs.sorry_server_lvs_method {
            self.kv(
                "sorry_server_lvs_method",
                &[&with_tunnel(method(m), vs.sorry_server_tunnel)],
            );
        }
        self.flag("inhibit_on_failure", vs.inhibit_on_failure);
        self.boolean("smtp_alert", vs.smtp_alert);
        self.timing(&vs.timing);
        if let Some(d) = vs.dataplane {
            self.kv("dataplane", &[dataplane(d)]);
        }
        for rs in &vs.real_servers {
            let port = rs.port.map(|p| p.to_string()).unwrap_or_default();
            self.open("real_server", &[&rs.addr.to_string(), &port]);
            self.kv("weight", &[&rs.weight.to_string()]);
            if let Some(m) = rs.lvs_method {
                self.kv("lvs_method", &[&with_tunnel(method(m), rs.tunnel)]);
            }
            self.cmd("notify_up", &rs.notify_up);
            self.cmd("notify_down", &rs.notify_down);
            self.optn("uthreshold", rs.uthreshold);
            self.optn("lthreshold", rs.lthreshold);
            self.boolean("inhibit_on_failure", rs.inhibit_on_failure);
            self.boolean("smtp_alert", rs.smtp_alert);
            self.boolean("alpha", rs.alpha);
            self.timing(&rs.timing);
            self.flag("readmit manual", rs.readmit_manual);
            for c in &rs.checkers {
                self.checker(c);
            }
            self.close();
        }
        self.close();
    }

    fn http(&mut self, h: &HttpCheck) {
        for u in &h.urls {
            self.open("url", &[]);
            self.kv("path", &[&q(&u.path)]);
            self.opt("digest", &u.digest);
            if !u.status_codes.is_empty() {
                let codes: Vec<String> = u
                    .status_codes
                    .iter()
                    .map(|(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                self.line(&format!("status_code {}", codes.join(" ")));
            }
            self.opt("virtualhost", &u.virtualhost);
            if let Some(r) = &u.regex {
                self.kv("regex", &[&q(&r.pattern)]);
                self.flag("regex_no_match", r.no_match);
                if !r.options.is_empty() {
                    self.line(&format!("regex_options {}", r.options.join(" ")));
                }
                self.optn("regex_min_offset", r.min_offset);
                self.optn("regex_max_offset", r.max_offset);
            }
            self.close();
        }
        self.opt("http_protocol", &h.http_protocol);
        self.opt("virtualhost", &h.virtualhost);
        self.flag("enable_sni", h.enable_sni);
        self.opt("sni_name", &h.sni_name);
        self.flag("fast_recovery", h.fast_recovery);
    }

    fn checker(&mut self, c: &Checker) {
        self.open(c.kind.keyword(), &[]);
        let m = &c.common;
        self.optn("connect_ip", m.connect_ip);
        self.optn("connect_port", m.connect_port);
        self.optn("bindto", m.bindto);
        self.optn("bind_port", m.bind_port);
        self.opt("bind_if", &m.bind_if);
        self.optn("fwmark", m.fwmark);
        self.timing(&m.timing);
        self.boolean("alpha", m.alpha);
        self.boolean("log_all_failures", m.log_all_failures);
        match &c.kind {
            CheckerKind::Tcp | CheckerKind::Ping => {}
            CheckerKind::Http(h) | CheckerKind::Ssl(h) => self.http(h),
            CheckerKind::Misc(x) => {
                self.kv("misc_path", &[&q(&x.path)]);
                self.optd("misc_timeout", x.timeout);
                self.flag("misc_dynamic", x.dynamic);
                if x.user.is_some() {
                    self.kv("user", &[&Self::user(&x.user)]);
                }
            }
            CheckerKind::Smtp { helo_name } => self.opt("helo_name", helo_name),
            CheckerKind::Dns { qtype, name } => {
                self.opt("type", qtype);
                self.opt("name", name);
            }
            CheckerKind::Udp {
                payload,
                require_reply,
                min_reply_length,
                max_reply_length,
            } => {
                if let Some(p) = payload {
                    let words: Vec<&str> = p.split(' ').collect();
                    self.kv("payload", &words);
                }
                if let Some(r) = require_reply {
                    let words: Vec<&str> = r.split(' ').filter(|w| !w.is_empty()).collect();
                    self.kv("require_reply", &words);
                }
                self.optn("min_reply_length", *min_reply_length);
                self.optn("max_reply_length", *max_reply_length);
            }
            CheckerKind::File {
                track_file,
                dynamic,
                weight,
                reverse,
                ..
            } => {
                self.kv("track_file", &[&q(track_file)]);
                self.flag("dynamic", *dynamic);
                if let Some(w) = weight {
                    self.weight(*w, *reverse);
                }
            }
            CheckerKind::Mysql(x) => {
                self.opt("user", &x.user);
                self.opt("password", &x.password);
                self.opt("credentials_file", &x.credentials_file);
                self.opt("database", &x.database);
                self.opt("query", &x.query);
                self.flag("require_writable", x.require_writable);
                self.flag("require_read_only", x.require_read_only);
                self.optd("max_replication_lag", x.max_replication_lag);
                if let Some(r) = x.rise {
                    self.kv("rise", &[&r.to_string()]);
                }
                self.flag("tls", x.tls);
                self.opt("tls_ca", &x.tls_ca);
            }
        }
        self.close();
    }
}

fn method(m: LvsMethod) -> &'static str {
    match m {
        LvsMethod::Nat => "NAT",
        LvsMethod::Dr => "DR",
        LvsMethod::Tun => "TUN",
    }
}

fn dataplane(d: DataPlane) -> &'static str {
    match d {
        DataPlane::Proxy => "proxy",
        DataPlane::Nft => "nft",
        DataPlane::Ipvs => "ipvs",
        DataPlane::Auto => "auto",
    }
}
