//! VRRP instances planned from the configuration: the router's configuration, VIPs, notify
//! scripts, trackers and macvlans of each `vrrp_instance`, and what `run` will not do of it.
//! Pure mapping, no I/O.

use std::net::IpAddr;
use std::time::Duration;

use holdfast_config::model::{
    AuthType, Checker, CheckerKind, Config, InitState, Notify, ScriptKind, Tracking, VrrpInstance,
};
use holdfast_vrrp::router::{GarpTiming, Peer, RouterConfig, Tracker};
use holdfast_vrrp::wire::{Auth, ChecksumForm, Family, Version};

use super::{Findings, vrrp_smtp_alert};

/// A VIP with the interface it goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedVip {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// Interface name.
    pub dev: String,
    /// Broadcast (`brd`), IPv4 only; `+` computes it from the prefix.
    pub brd: Option<std::net::Ipv4Addr>,
    /// Label.
    pub label: Option<String>,
    /// Scope.
    pub scope: Option<String>,
    /// `noprefixroute`.
    pub noprefixroute: bool,
    /// `-nodad` / `nodad` (IPv6).
    pub nodad: bool,
    /// `peer`, `preferred_lft`, `home`, `mngtmpaddr`, `autojoin`.
    pub extra: holdfast_sys::vip::VipExtra,
}

impl PlannedVip {
    /// The address for the kernel, on interface `ifindex` (its `dev`, resolved).
    pub fn spec(&self, ifindex: u32) -> holdfast_sys::vip::VipSpec {
        holdfast_sys::vip::VipSpec {
            addr: self.addr,
            prefix: self.prefix,
            ifindex,
            brd: self.brd,
            label: self.label.clone(),
            scope: self.scope.clone(),
            noprefixroute: self.noprefixroute,
            nodad: self.nodad,
            extra: self.extra.clone(),
        }
    }

    /// A configured address as the daemon sets it; `dev` when the address names none.
    /// The same VIP on interface `dev`.
    fn on(mut self, dev: &str) -> PlannedVip {
        dev.clone_into(&mut self.dev);
        self
    }

    pub(super) fn from_config(v: &holdfast_config::model::Vip, dev: &str) -> PlannedVip {
        PlannedVip {
            addr: v.addr,
            prefix: v.prefix,
            dev: v.dev.clone().unwrap_or_else(|| dev.to_owned()),
            brd: broadcast(v.addr, v.prefix, v.brd.as_deref()),
            label: v.label.clone(),
            scope: v.scope.clone(),
            noprefixroute: v.flags.iter().any(|f| f == "noprefixroute"),
            nodad: v.flags.iter().any(|f| f == "-nodad" || f == "nodad"),
            extra: holdfast_sys::vip::VipExtra {
                peer: v.peer,
                // `forever` (or anything not a number of seconds) is the default.
                preferred_lft: v.preferred_lft.as_deref().and_then(|l| l.parse().ok()),
                home: v.flags.iter().any(|f| f == "home"),
                mngtmpaddr: v.flags.iter().any(|f| f == "mngtmpaddr"),
                autojoin: v.flags.iter().any(|f| f == "autojoin"),
            },
        }
    }
}

/// What a tracker watches.
#[derive(Clone, Debug, PartialEq)]
pub enum TrackerKind {
    /// `track_interface`: the link state of an interface.
    Interface(String),
    /// A `vrrp_script` with a command, run as `user` (else the default script user).
    Script {
        /// The command line.
        cmd: String,
        /// `user USER [GROUP]` of the `vrrp_script`, else `script_user`.
        user: Option<holdfast_config::model::UserSpec>,
    },
    /// A `track_file`: a number in a file.
    File {
        /// Path.
        path: std::path::PathBuf,
        /// `init_file VALUE [overwrite]`.
        init: Option<(i64, bool)>,
    },
    /// A `vrrp_track_process`: whether the matching processes make a quorum.
    Process(holdfast_check::process::Spec),
    /// A `vrrp_script` with a native checker block (no fork): TCP_CHECK, HTTP_GET or
    /// MYSQL_CHECK.
    Native(holdfast_check::probe::Probe),
    /// `track_bfd`: a `bfd_instance` session's state (down until it first comes up).
    Bfd(String),
}

/// A tracker of one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackerPlan {
    /// `vrrp_script` name or interface name, for log lines.
    pub name: String,
    /// What to watch.
    pub kind: TrackerKind,
    /// How often.
    pub interval: Duration,
    /// Script timeout.
    pub timeout: Duration,
    /// Consecutive successes to go up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
    /// Start failed (`init_fail`).
    pub init_fail: bool,
}

impl TrackerKind {
    /// The configuration block or keyword the tracker comes from.
    pub fn keyword(&self) -> &'static str {
        match self {
            TrackerKind::Interface(_) => "track_interface",
            TrackerKind::Script { .. } | TrackerKind::Native(_) => "vrrp_script",
            TrackerKind::File { .. } => "track_file",
            TrackerKind::Process(_) => "vrrp_track_process",
            TrackerKind::Bfd(_) => "bfd_instance",
        }
    }
}

impl TrackerPlan {
    /// An event-driven tracker (interface, file, process): no interval, no rise/fall.
    fn event(name: &str, kind: TrackerKind) -> TrackerPlan {
        TrackerPlan {
            name: name.to_string(),
            kind,
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            rise: 1,
            fall: 1,
            init_fail: false,
        }
    }
}

/// One instance as the daemon runs it.
#[derive(Clone, Debug)]
pub struct InstancePlan {
    /// Instance name.
    pub name: String,
    /// Interface adverts use.
    pub ifname: String,
    /// The sans-IO router's configuration; tracker `i` is `trackers[i]`.
    pub router: std::sync::Arc<RouterConfig>,
    /// VIPs and excluded VIPs.
    pub vips: Vec<PlannedVip>,
    /// `unicast_src_ip` / `mcast_src_ip`.
    pub src: Option<IpAddr>,
    /// TTL of unicast adverts.
    pub unicast_ttl: u8,
    /// Notify scripts, `None` when there are none (432 bytes less for each instance
    /// without; see [`InstancePlan::notify`]).
    pub notify: Option<Box<Notify>>,
    /// `script_user`: whom scripts without their own `user` run as.
    pub script_user: Option<holdfast_config::model::UserSpec>,
    /// Trackers, in router index order.
    pub trackers: Vec<TrackerPlan>,
    /// `dont_track_primary`: the instance's own link going down does not fault it.
    pub dont_track_primary: bool,
    /// `smtp_alert` (or `smtp_alert_vrrp` / `smtp_alert` in `global_defs`; off by default).
    pub smtp_alert: bool,
    /// `promote_secondaries`: the interface's `promote_secondaries` sysctl is set while the
    /// instance runs.
    pub promote_secondaries: bool,
    /// `debug` level (shown in the SIGUSR1 dump).
    pub debug: u8,
    /// `garp_interval` (IPv4) or `gna_interval` (IPv6), in µs: the gap between two
    /// announcements of a burst (0: none).
    pub announce_gap_us: u32,
    /// `virtual_routes` and `virtual_rules`, when there are any (boxed: most instances have
    /// none).
    pub routing: Option<Box<crate::routing::Routing>>,
    /// Accept mode off (`no_accept`, or `vrrp_strict` for a non-owner): while MASTER, traffic
    /// to and from the VIPs is dropped by the VRRP firewall.
    pub no_accept: bool,
    /// `use_vmac`: the macvlan the VIPs (and, without `vmac_xmit_base`, the adverts) use.
    pub vmac: Option<VmacPlan>,
    /// `dynamic_interfaces`: an absent interface, or one deleted, is waited for (FAULT).
    pub dynamic: bool,
}

/// `use_vmac`: a private macvlan on the instance's interface, with the virtual MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmacPlan {
    /// Its name (`vrrp.VRID` unless configured).
    pub name: String,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// `vmac_xmit_base`: adverts go out of (and are read from) the instance's interface.
    pub xmit_base: bool,
    /// An IPv6 instance (its link-local source address is also set on the macvlan).
    pub v6: bool,
}

impl InstancePlan {
    /// The interface adverts are sent and read on: the macvlan with `use_vmac` (unless
    /// `vmac_xmit_base`), else the instance's own.
    pub fn advert_ifname(&self) -> &str {
        match &self.vmac {
            Some(v) if !v.xmit_base => &v.name,
            _ => &self.ifname,
        }
    }
}

/// keepalived's name for an instance's macvlan when none is configured: `vrrp.VRID`, or, when
/// another instance already has that name, `vrrp6.VRID` (IPv6 only), then `vrrp1.VRID`,
/// `vrrp2.VRID`… (IPv6 skipping 6), each cut to 15 characters.
fn vmac_name(vrid: u8, v6: bool, taken: &[String]) -> String {
    let name = |num: Option<u32>| {
        let n = num.map(|x| x.to_string()).unwrap_or_default();
        let tail = format!("{n}.{vrid}");
        let keep = 15usize.saturating_sub(tail.len()).min(4);
        format!("{}{tail}", &"vrrp"[..keep])
    };
    let mut num: Option<u32> = None;
    for _ in 0..1000 {
        let candidate = name(num);
        if !taken.contains(&candidate) {
            return candidate;
        }
        num = Some(match num {
            None if v6 => 6,
            None => 1,
            Some(6) if v6 => 1,
            Some(5) if v6 => 7,
            Some(x) => x + 1,
        });
    }
    name(num)
}

impl InstancePlan {
    /// Where its router runs, for [`holdfast_vrrp::router::continues`].
    pub fn placement(&self) -> holdfast_vrrp::router::Placement<'_> {
        holdfast_vrrp::router::Placement {
            interface: &self.ifname,
            source: self.src,
            unicast_ttl: self.unicast_ttl,
            vmac: self
                .vmac
                .as_ref()
                .map(|v| (v.name.as_str(), v.mac, v.xmit_base)),
            config: &self.router,
        }
    }

    /// The VIPs' addresses (made when needed: a copy kept by every instance cost memory).
    pub fn vip_addrs(&self) -> Vec<std::net::IpAddr> {
        self.vips.iter().map(|v| v.addr).collect()
    }

    /// The instance's notify scripts (every one `None` when it has none).
    pub fn notify(&self) -> &Notify {
        static NONE: Notify = Notify {
            master: None,
            backup: None,
            fault: None,
            stop: None,
            generic: None,
            master_rx_lower_pri: None,
        };
        self.notify.as_deref().unwrap_or(&NONE)
    }
}

/// A plain instance for unit tests: VRRPv2, one VIP (`ADDR/PREFIX`) on `ifname`.
#[cfg(test)]
pub(crate) fn test_instance(
    name: &str,
    ifname: &str,
    vrid: u8,
    priority: u8,
    vip: &str,
) -> InstancePlan {
    let (addr, prefix) = vip.split_once('/').expect("ADDR/PREFIX");
    let addr: IpAddr = addr.parse().expect("address");
    InstancePlan {
        name: name.into(),
        ifname: ifname.into(),
        router: std::sync::Arc::new(RouterConfig::new(name, vrid, priority, vec![addr])),
        vips: vec![PlannedVip {
            addr,
            prefix: prefix.parse().expect("prefix"),
            dev: ifname.into(),
            brd: None,
            label: None,
            scope: None,
            noprefixroute: false,
            nodad: false,
            extra: Default::default(),
        }],
        src: None,
        unicast_ttl: 255,
        notify: None,
        script_user: None,
        trackers: Vec::new(),
        dont_track_primary: false,
        smtp_alert: false,
        promote_secondaries: false,
        debug: 0,
        announce_gap_us: 0,
        routing: None,
        no_accept: false,
        vmac: None,
        dynamic: false,
    }
}

/// An instance's gratuitous ARP timing: its own settings, else `global_defs`' (`vrrp_garp_*`),
/// else keepalived's defaults — which `vrrp_min_garp` (`min`) turns into one ARP, no second
/// burst and no refresh, without overriding what `global_defs` sets explicitly.
fn garp(
    g: &holdfast_config::model::Garp,
    global: &holdfast_config::model::Garp,
    min: bool,
) -> GarpTiming {
    let mut d = GarpTiming::default();
    if min {
        d.master_delay = std::time::Duration::ZERO;
        d.master_repeat = 1;
        d.master_refresh_repeat = 0;
    }
    let master_delay = g
        .master_delay
        .or(global.master_delay)
        .unwrap_or(d.master_delay);
    let master_repeat = g
        .master_repeat
        .or(global.master_repeat)
        .unwrap_or(d.master_repeat);
    GarpTiming {
        master_delay,
        master_repeat,
        master_refresh: g
            .master_refresh
            .or(global.master_refresh)
            .filter(|d| !d.is_zero()),
        master_refresh_repeat: g
            .master_refresh_repeat
            .or(global.master_refresh_repeat)
            .unwrap_or(d.master_refresh_repeat),
        lower_prio_delay: g
            .lower_prio_delay
            .or(global.lower_prio_delay)
            .unwrap_or(master_delay),
        lower_prio_repeat: g
            .lower_prio_repeat
            .or(global.lower_prio_repeat)
            .unwrap_or(master_repeat),
    }
}

pub(super) fn broadcast(addr: IpAddr, prefix: u8, brd: Option<&str>) -> Option<std::net::Ipv4Addr> {
    let IpAddr::V4(a) = addr else { return None };
    match brd {
        None | Some("-") => None,
        Some("+") => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            Some((u32::from(a) | !mask).into())
        }
        Some(s) => s.parse().ok(),
    }
}

pub(super) fn instance(
    cfg: &Config,
    i: &VrrpInstance,
    un: &mut Findings,
    disabled: &[String],
    vmac_names: &mut Vec<String>,
) -> Option<InstancePlan> {
    let name = &i.name;
    let Some(ifname) = i.interface.clone() else {
        if i.unicast_peers.is_empty() {
            // keepalived's minimum configuration check reports it ("Unknown interface!").
            return None;
        }
        un.not_run(
            i.origin,
            format!("({name}) is not started: an instance without an interface (unicast without interface) is not implemented by holdfast"),
        );
        return None;
    };
    if i.vrid == 0 {
        // keepalived's check reports it (virtual_router_id missing or out of range).
        return None;
    }
    let family = if i.is_v6() { Family::V6 } else { Family::V4 };
    let auth = match &i.auth {
        Some(a) if a.auth_type == AuthType::Pass => Auth::pass(&a.pass),
        Some(a) => Auth::ah(&a.pass),
        None => Auth::None,
    };
    let mut router = RouterConfig::new(
        name,
        i.vrid,
        i.priority,
        i.vips.iter().map(|v| v.addr).collect(),
    );
    router.version = if i.version == 3 {
        Version::V3
    } else {
        Version::V2
    };
    router.family = family;
    router.advert_int = i.advert_int;
    router.init_master = i.state == InitState::Master;
    router.nopreempt = i.nopreempt;
    router.preempt_delay = i.preempt_delay.unwrap_or(Duration::ZERO);
    router.preempt_fast = i.preempt_fast;
    router.auth = auth;
    router.unicast_peers = i
        .unicast_peers
        .iter()
        .map(|p| Peer {
            addr: p.addr,
            min_ttl: p.min_ttl,
            max_ttl: p.max_ttl,
        })
        .collect();
    router.check_unicast_src = i.check_unicast_src;
    router.mcast_group = match family {
        Family::V4 => IpAddr::V4(cfg.global.vrrp_mcast_group4),
        Family::V6 => IpAddr::V6(cfg.global.vrrp_mcast_group6),
    };
    router.garp = garp(&i.garp, &cfg.global.garp, cfg.global.vrrp_min_garp);
    router.lower_prio_no_advert = i
        .lower_prio_no_advert
        .unwrap_or(cfg.global.lower_prio_no_advert);
    router.higher_prio_send_advert = i
        .higher_prio_send_advert
        .unwrap_or(cfg.global.higher_prio_send_advert);
    router.skip_check_adv_addr = i
        .skip_check_adv_addr
        .unwrap_or(cfg.global.skip_check_adv_addr);
    router.v3_checksum = if cfg.global.v3_checksum_as_v2 {
        ChecksumForm::MessageOnly
    } else {
        ChecksumForm::PseudoHeader
    };
    router.startup_delay = cfg.global.startup_delay.unwrap_or(Duration::ZERO);

    let track = with_group_trackers(cfg, i);
    let (trackers, weights) = tracker_plans(cfg, &track, disabled, un, &format!("({name})"));
    router.trackers = weights;

    let v6 = family == Family::V6;
    let vmac = i.vmac.as_ref().map(|v| VmacPlan {
        name: v.name.clone().unwrap_or_else(|| {
            let n = vmac_name(i.vrid, v6, vmac_names);
            vmac_names.push(n.clone());
            n
        }),
        mac: v
            .mac
            .unwrap_or_else(|| holdfast_sys::vmac::rfc_mac(i.vrid, v6)),
        xmit_base: i.vmac_xmit_base,
        v6,
    });
    // keepalived: with `use_vmac`, the VIPs of the instance's family set on its own interface
    // go on the macvlan.
    let vips = i
        .vips
        .iter()
        .chain(&i.excluded_vips)
        .map(|v| {
            let on_vmac = vmac
                .as_ref()
                .filter(|_| v.addr.is_ipv6() == v6 && v.dev.as_deref().is_none_or(|d| d == ifname));
            match on_vmac {
                Some(m) => PlannedVip::from_config(v, &m.name).on(&m.name),
                None => PlannedVip::from_config(v, &ifname),
            }
        })
        .collect();
    let routing = crate::routing::Routing {
        routes: i.routes.clone(),
        rules: i.rules.clone(),
    };
    Some(InstancePlan {
        name: name.clone(),
        ifname,
        router: router.into(),
        vips,
        src: i.unicast_src_ip.or(i.mcast_src_ip),
        unicast_ttl: i.unicast_ttl.unwrap_or(255),
        notify: (i.notify != Notify::default()).then(|| Box::new(i.notify.clone())),
        script_user: cfg.global.script_user.clone(),
        trackers,
        dont_track_primary: i.dont_track_primary,
        smtp_alert: vrrp_smtp_alert(cfg, i.smtp_alert),
        promote_secondaries: i.promote_secondaries,
        debug: i.debug,
        announce_gap_us: {
            let gap = match family {
                Family::V4 => i.garp.interval.or(cfg.global.garp.interval),
                Family::V6 => i.garp.gna_interval.or(cfg.global.garp.gna_interval),
            };
            gap.map_or(0, |d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
        },
        routing: (!routing.is_empty()).then(|| Box::new(routing)),
        // keepalived: the address owner always accepts; otherwise accept mode is on unless
        // `no_accept` (or strict mode's default) turned it off.
        no_accept: i.priority != 255 && !i.accept.unwrap_or(true),
        vmac,
        dynamic: cfg.global.dynamic_interfaces,
    })
}

/// The trackers of `track` (an instance's, with its sync groups', or a `bgp_announce`'s), each
/// with its weight and reverse flag; `who` names the owner in findings (`(VI_1)`).
pub(super) fn tracker_plans(
    cfg: &Config,
    track: &Tracking,
    disabled: &[String],
    un: &mut Findings,
    who: &str,
) -> (Vec<TrackerPlan>, Vec<Tracker>) {
    let mut trackers = Vec::new();
    let mut weights = Vec::new();
    for t in &track.interfaces {
        trackers.push(TrackerPlan::event(
            &t.name,
            TrackerKind::Interface(t.name.clone()),
        ));
        weights.push(Tracker {
            weight: t.weight,
            reverse: t.reverse,
        });
    }
    for r in &track.scripts {
        let Some(s) = cfg.scripts.iter().find(|s| s.name == r.name) else {
            continue;
        };
        if disabled.contains(&s.name) {
            // keepalived: a script disabled by script security is not tracked (check-config
            // and the start-up diagnostics say why).
            continue;
        }
        let kind = match &s.kind {
            Some(ScriptKind::Command(c)) => TrackerKind::Script {
                cmd: c.clone(),
                user: s.user.clone().or_else(|| cfg.global.script_user.clone()),
            },
            Some(ScriptKind::Checker(c)) => match native_probe(c) {
                Ok(p) => TrackerKind::Native(p),
                Err(why) => {
                    un.not_run(
                        s.origin,
                        format!("{who} vrrp_script {}: {why}; not tracked", s.name),
                    );
                    continue;
                }
            },
            None => continue,
        };
        trackers.push(TrackerPlan {
            name: s.name.clone(),
            kind,
            interval: s.interval,
            timeout: s.timeout.unwrap_or(s.interval),
            rise: s.rise,
            fall: s.fall,
            init_fail: s.init_fail,
        });
        weights.push(Tracker {
            weight: r.weight.unwrap_or(s.weight),
            reverse: r.reverse.unwrap_or(s.reverse),
        });
    }
    for r in &track.files {
        let Some(f) = cfg.track_files.iter().find(|f| f.name == r.name) else {
            continue;
        };
        trackers.push(TrackerPlan::event(
            &f.name,
            TrackerKind::File {
                path: f.file.clone().into(),
                init: f.init_file,
            },
        ));
        weights.push(Tracker {
            weight: r.weight.unwrap_or(f.weight),
            reverse: r.reverse.unwrap_or(f.reverse),
        });
    }
    for r in &track.processes {
        let Some(p) = cfg.track_processes.iter().find(|p| p.name == r.name) else {
            continue;
        };
        trackers.push(TrackerPlan::event(
            &p.name,
            TrackerKind::Process(process_spec(p)),
        ));
        weights.push(Tracker {
            weight: r.weight.unwrap_or(p.weight),
            reverse: r.reverse.unwrap_or(p.reverse),
        });
    }
    for r in &track.bfds {
        // keepalived's VRRP process knows a session disabled by its BFD process (which then
        // never comes up), with the weight it read.
        let b = cfg.bfd_instances.iter().find(|b| b.name == r.name);
        let mut t = TrackerPlan::event(&r.name, TrackerKind::Bfd(r.name.clone()));
        t.init_fail = true;
        trackers.push(t);
        weights.push(Tracker {
            weight: r.weight.unwrap_or(b.map_or(0, |b| b.weight)),
            reverse: r.reverse.unwrap_or(b.is_some_and(|b| b.weight_reverse)),
        });
    }
    (trackers, weights)
}

/// The instance's trackers plus those of the sync groups it belongs to, as keepalived adds
/// them: a group tracker the instance also has replaces the instance's weight unless that is
/// 0; a group's `track_interface` on the instance's own interface adds nothing (the own link
/// already faults the instance).
fn with_group_trackers(cfg: &Config, i: &VrrpInstance) -> Tracking {
    let mut track = i.track.clone();
    for g in cfg
        .sync_groups
        .iter()
        .filter(|g| g.members.contains(&i.name))
    {
        for t in &g.track.interfaces {
            if i.interface.as_deref() == Some(t.name.as_str()) && !i.dont_track_primary {
                continue;
            }
            match track.interfaces.iter_mut().find(|x| x.name == t.name) {
                Some(x) if x.weight != 0 => {
                    x.weight = t.weight;
                    x.reverse = t.reverse;
                }
                Some(_) => {}
                None => track.interfaces.push(t.clone()),
            }
        }
        let refs = [
            (&g.track.scripts, &mut track.scripts),
            (&g.track.files, &mut track.files),
            (&g.track.processes, &mut track.processes),
            (&g.track.bfds, &mut track.bfds),
        ];
        for (from, into) in refs {
            for t in from {
                match into.iter_mut().find(|x| x.name == t.name) {
                    Some(x) if x.weight != Some(0) => {
                        x.weight = t.weight;
                        x.reverse = t.reverse;
                    }
                    Some(_) => {}
                    None => into.push(t.clone()),
                }
            }
        }
    }
    track
}

/// A native checker of a `vrrp_script`: it checks the local host unless `connect_ip` says
/// otherwise (there is no real server to default to).
fn native_probe(c: &Checker) -> Result<holdfast_check::probe::Probe, String> {
    match &c.kind {
        CheckerKind::Tcp | CheckerKind::Mysql(_) => {}
        CheckerKind::Http(h) if !h.urls.is_empty() => {}
        CheckerKind::Http(_) => return Err("HTTP_GET needs a url block".into()),
        _ => return Err("only TCP_CHECK, HTTP_GET and MYSQL_CHECK run as native trackers".into()),
    }
    let to = super::probe::Target {
        ip: c.common.connect_ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
        port: c.common.connect_port,
        timeout: c
            .common
            .timing
            .connect_timeout
            .unwrap_or(Duration::from_secs(5)),
        vhost: None,
    };
    super::probe::probe(c, &to)
}

/// What a `vrrp_track_process` block counts.
fn process_spec(t: &holdfast_config::model::TrackProcess) -> holdfast_check::process::Spec {
    use holdfast_check::process::{ParamMatch, Spec};
    let param_match = match (t.param_match.as_deref(), t.args.is_empty()) {
        (Some("partial"), _) => ParamMatch::Partial,
        (Some("initial"), _) => ParamMatch::Initial,
        (_, true) => ParamMatch::Any,
        (_, false) => ParamMatch::Exact,
    };
    Spec {
        process: t.process.clone(),
        args: t.args.clone(),
        param_match,
        full_command: t.full_command,
        quorum: t.quorum,
        quorum_max: t.quorum_max.unwrap_or(u32::MAX),
        fork_delay: t.fork_delay.or(t.delay).unwrap_or(Duration::ZERO),
        terminate_delay: t.terminate_delay.or(t.delay).unwrap_or(Duration::ZERO),
    }
}
