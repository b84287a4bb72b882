//! The configuration model mapped onto what `holdfast run` drives: one [`InstancePlan`] per
//! `vrrp_instance`, with its router configuration, VIPs, notify scripts and trackers.
//! Everything `run` will not do as the configuration asks is a finding in [`Plan::findings`],
//! with the place in the configuration that asks for it: `run` logs it at start and
//! `check-config` reports it (file:line:col), so the two cannot disagree — `check-config` runs
//! this same planning with the same host facts ([`Facts`]).

use std::net::IpAddr;
use std::time::Duration;

use holdfast_config::diag::{Class, Diagnostic, Diagnostics};
use holdfast_config::model::{
    AuthType, Checker, CheckerKind, Config, InitState, Notify, Origin, ScriptKind, Tracking,
    VrrpInstance,
};
use holdfast_vrrp::router::{GarpTiming, Peer, RouterConfig, Tracker};
use holdfast_vrrp::wire::{Auth, ChecksumForm, Family, Version};

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

    fn from_config(v: &holdfast_config::model::Vip, dev: &str) -> PlannedVip {
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
    Process(crate::track_process::Spec),
    /// A `vrrp_script` with a native checker block (no fork).
    Native(NativeProbe),
}

/// A native checker run in-process by a `vrrp_script`.
#[derive(Clone, Debug, PartialEq)]
pub enum NativeProbe {
    /// `TCP_CHECK`.
    Tcp(holdfast_check::probe::TcpProbe),
    /// `HTTP_GET`.
    Http(holdfast_check::probe::HttpProbe),
    /// `MYSQL_CHECK` (a kept session; role and lag gates).
    Mysql(holdfast_check::probe::MysqlProbe),
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

/// A `vrrp_sync_group`.
#[derive(Clone, Debug)]
pub struct GroupPlan {
    /// Group name.
    pub name: String,
    /// Member instance names.
    pub members: Vec<String>,
    /// Group notify scripts.
    pub notify: Notify,
    /// `script_user`.
    pub script_user: Option<holdfast_config::model::UserSpec>,
    /// `smtp_alert` (or `smtp_alert_vrrp` / `smtp_alert` in `global_defs`; off by default).
    pub smtp_alert: bool,
}

/// Whether a VRRP instance or sync group with `smtp_alert` `own` mails its state changes:
/// its own setting, else `smtp_alert_vrrp`, else `smtp_alert`, else not (keepalived's order).
fn vrrp_smtp_alert(cfg: &Config, own: Option<bool>) -> bool {
    own.or(cfg.global.smtp_alert_vrrp)
        .or(cfg.global.smtp_alert)
        .unwrap_or(false)
}

/// The whole run plan.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The configuration's errors (each message with how often it occurs): a reload that
    /// brings an error the running configuration does not have is refused.
    pub errors: std::collections::BTreeMap<String, usize>,
    /// Instances.
    pub instances: Vec<InstancePlan>,
    /// Sync groups.
    pub groups: Vec<GroupPlan>,
    /// Virtual servers.
    pub virtual_servers: Vec<crate::lvs::VsPlan>,
    /// `control_socket` (default [`crate::control::DEFAULT_SOCKET`]).
    pub control_socket: Option<String>,
    /// `metrics_listen`: where the Prometheus endpoint listens (off when `None`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `lvs_flush`, `lvs_flush_on_stop`, `lvs_timeouts`, `lvs_sync_daemon` for the IPVS plane;
    /// `nft_table` for the nftables plane.
    pub planes: crate::lvs::PlaneOptions,
    /// What the configuration asks for that `holdfast run` will not do, each where it is
    /// asked for: [`Class::Unsupported`] for what keepalived would do and holdfast does not
    /// (here), [`Class::Invalid`] for holdfast's own keywords asking for something
    /// contradictory.
    pub findings: Vec<Diagnostic>,
    /// The findings' first lines (`file:line:col: warning: message`), for the log.
    pub warnings: Vec<String>,
    /// The VRRP firewall's table and chain settings (`nftables`, `nftables_priority`,
    /// `nftables_counters`), used by instances without accept mode.
    pub firewall: crate::firewall::FirewallPlan,
    /// `static_ipaddress` (each on its `dev`).
    pub static_addresses: Vec<PlannedVip>,
    /// `static_routes` and `static_rules`.
    pub static_routing: crate::routing::Routing,
    /// Email alerts (`notification_email`, `smtp_server`), when configured.
    pub mail: Option<crate::mail::Mailer>,
    /// `startup_script` and its timeout (10 s): run before anything starts.
    pub startup: Option<(holdfast_config::model::Command, std::time::Duration)>,
    /// `shutdown_script` and its timeout (10 s): run once everything stopped.
    pub shutdown: Option<(holdfast_config::model::Command, std::time::Duration)>,
    /// `script_user`, for the startup and shutdown scripts.
    pub script_user: Option<holdfast_config::model::UserSpec>,
    /// `notify_fifo`, `vrrp_notify_fifo`, `lvs_notify_fifo`.
    pub fifos: crate::fifo::FifoPlan,
    /// `vrrp_no_swap`, `checker_no_swap`: keep the process in memory while it runs VRRP
    /// instances, virtual servers.
    pub no_swap: (bool, bool),
    /// `vrrp_priority`, `checker_priority`: the nice value of the process while it runs VRRP
    /// instances, virtual servers.
    pub nice: (Option<i32>, Option<i32>),
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

fn broadcast(addr: IpAddr, prefix: u8, brd: Option<&str>) -> Option<std::net::Ipv4Addr> {
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

/// Maps the configuration; `disabled` names the `vrrp_script`s script security turned off.
/// What planning needs to know about the host, asked once: `run` and `check-config` plan with
/// the same facts of the host (and network namespace) they run on.
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    /// Whether the kernel answers for IPVS.
    pub ipvs: bool,
}

impl Facts {
    /// This host's (this network namespace's) facts.
    pub fn of_host() -> Facts {
        Facts {
            ipvs: holdfast_dataplane::ipvs::available(),
        }
    }
}

/// Records what `run` will not do, where the configuration asks for it.
pub(crate) struct Findings(Diagnostics);

impl Findings {
    pub(crate) fn new() -> Findings {
        Findings(Diagnostics::new(false))
    }

    /// The findings so far.
    pub(crate) fn into_vec(self) -> Vec<Diagnostic> {
        self.0.into_vec()
    }

    /// Something keepalived does (or this host lacks) that `run` will not do.
    pub(crate) fn not_run(&mut self, at: Origin, message: impl Into<String>) {
        self.0.push_unlined(Class::Unsupported, at.0, message);
    }

    /// A holdfast keyword asking for something that cannot be done as asked.
    pub(crate) fn refused(&mut self, at: Origin, message: impl Into<String>) {
        self.0.push_unlined(Class::Invalid, at.0, message);
    }
}

/// `check-config`: the configuration's own diagnostics and, when it can run at all, what
/// `run` would not do with it — the findings of the same planning `run` does, with `facts` of
/// the host it runs on. `strict` makes those of [`Class::Unsupported`] errors, as for
/// keywords.
pub fn check(
    mut loaded: holdfast_config::Loaded,
    facts: Facts,
    strict: bool,
) -> holdfast_config::Loaded {
    if runnable(&loaded) {
        let plan = build(&loaded.config, &loaded.disabled_scripts, facts);
        loaded
            .diagnostics
            .extend(plan.findings.into_iter().map(|mut d| {
                if strict && d.class == Class::Unsupported {
                    d.severity = holdfast_config::diag::Severity::Error;
                }
                d
            }));
    }
    loaded
}

/// Whether `run` starts with this configuration at all: it could be read, and keepalived
/// would not have stopped reading it (exit 2) or been unable to run it (exit 4).
pub fn runnable(loaded: &holdfast_config::Loaded) -> bool {
    loaded.readable && !matches!(loaded.exit_code(false), 2 | 4)
}

/// The plan `run` follows for `cfg` (`disabled`: the scripts script security disabled) on a
/// host with `facts`; what it will not do is in [`Plan::findings`].
pub fn build(cfg: &Config, disabled: &[String], facts: Facts) -> Plan {
    let mut plan = Plan::default();
    let mut found = Findings::new();
    plan.virtual_servers = crate::lvs::build(cfg, facts, &mut found);
    plan.control_socket = cfg.global.control_socket.clone();
    plan.planes = crate::lvs::PlaneOptions {
        flush: cfg.global.lvs_flush,
        flush_on_stop: cfg.global.lvs_flush_on_stop,
        keep_on_stop: false,
        sync: cfg.global.lvs_sync_daemon.as_ref().map(|d| {
            (
                holdfast_dataplane::ipvs::SyncDaemon {
                    iface: d.iface.clone(),
                    id: d.id.unwrap_or(0),
                    maxlen: d.maxlen,
                    port: d.port,
                    ttl: d.ttl,
                    group: d.group,
                },
                d.instance.clone(),
            )
        }),
        timeouts: cfg.global.lvs_timeouts.as_ref().map(|t| {
            (
                t.tcp.unwrap_or(0),
                t.tcpfin.unwrap_or(0),
                t.udp.unwrap_or(0),
            )
        }),
        nft_table: cfg.global.nft_table.clone(),
        nft_flowtable_off: cfg.global.nft_flowtable == Some(false),
        proxy_maxconn: cfg.global.proxy_maxconn,
    };
    plan.metrics_listen = cfg.global.metrics_listen;
    let fw = crate::firewall::FirewallPlan::default();
    plan.firewall = crate::firewall::FirewallPlan {
        table: cfg.global.nftables.clone().unwrap_or(fw.table),
        priority: cfg.global.nftables_priority.unwrap_or(fw.priority),
        counters: cfg.global.nftables_counters,
        configured: cfg.global.nftables.is_some(),
        ifindex: cfg.global.nftables_ifindex,
    };
    plan.static_addresses = cfg
        .static_addresses
        .iter()
        .map(|v| PlannedVip::from_config(v, "eth0"))
        .collect();
    plan.static_routing = crate::routing::Routing {
        routes: cfg.static_routes.clone(),
        rules: cfg.static_rules.clone(),
    };
    plan.mail = crate::mail::Mailer::from_config(&cfg.global);
    let ten = std::time::Duration::from_secs(10);
    plan.startup = cfg
        .global
        .startup_script
        .clone()
        .map(|c| (c, cfg.global.startup_script_timeout.unwrap_or(ten)));
    plan.shutdown = cfg
        .global
        .shutdown_script
        .clone()
        .map(|c| (c, cfg.global.shutdown_script_timeout.unwrap_or(ten)));
    plan.script_user = cfg.global.script_user.clone();
    plan.fifos = crate::fifo::FifoPlan::from_config(&cfg.global);
    plan.no_swap = (cfg.global.vrrp_no_swap, cfg.global.checker_no_swap);
    plan.nice = (cfg.global.vrrp_priority, cfg.global.checker_priority);
    for g in &cfg.sync_groups {
        plan.groups.push(GroupPlan {
            name: g.name.clone(),
            members: g.members.clone(),
            notify: g.notify.clone(),
            script_user: cfg.global.script_user.clone(),
            smtp_alert: vrrp_smtp_alert(cfg, g.smtp_alert),
        });
    }
    // Configured macvlan names are taken before any default one is chosen (keepalived reads
    // them all before completing the instances).
    let mut vmac_names: Vec<String> = cfg
        .instances
        .iter()
        .filter_map(|i| i.vmac.as_ref()?.name.clone())
        .collect();
    for inst in &cfg.instances {
        if let Some(p) = instance(cfg, inst, &mut found, disabled, &mut vmac_names) {
            plan.instances.push(p);
        }
    }
    plan.findings = found.into_vec();
    plan
}

fn instance(
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
                        format!("({name}) vrrp_script {}: {why}; not tracked", s.name),
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
            TrackerKind::Process(crate::track_process::Spec::from_config(p)),
        ));
        weights.push(Tracker {
            weight: r.weight.unwrap_or(p.weight),
            reverse: r.reverse.unwrap_or(p.reverse),
        });
    }
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
fn native_probe(c: &Checker) -> Result<NativeProbe, String> {
    let ip = c.common.connect_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let timeout = c
        .common
        .timing
        .connect_timeout
        .unwrap_or(Duration::from_secs(5));
    let bind = c
        .common
        .bindto
        .map(|b| std::net::SocketAddr::new(b, c.common.bind_port.unwrap_or(0)));
    let opts = crate::probes::sock_opts(&c.common);
    match &c.kind {
        CheckerKind::Tcp => {
            let port = c
                .common
                .connect_port
                .ok_or("TCP_CHECK needs connect_port")?;
            Ok(NativeProbe::Tcp(holdfast_check::probe::TcpProbe {
                addr: std::net::SocketAddr::new(ip, port),
                bind,
                timeout,
                opts,
            }))
        }
        CheckerKind::Http(h) => {
            if h.urls.is_empty() {
                return Err("HTTP_GET needs a url block".into());
            }
            Ok(NativeProbe::Http(crate::probes::http_probe(
                h,
                std::net::SocketAddr::new(ip, c.common.connect_port.unwrap_or(80)),
                bind,
                opts,
                timeout,
                None,
                None,
            )?))
        }
        CheckerKind::Mysql(m) => Ok(NativeProbe::Mysql(crate::probes::mysql_probe(
            m,
            std::net::SocketAddr::new(ip, c.common.connect_port.unwrap_or(3306)),
            timeout,
        )?)),
        _ => Err("only TCP_CHECK, HTTP_GET and MYSQL_CHECK run as native trackers".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_IPVS: Facts = Facts { ipvs: false };

    #[test]
    fn seed_004_maps_to_a_router_with_a_weighted_script_tracker() {
        let text = "vrrp_script chk_service {\n script \"/etc/keepalived/check_service.sh\"\n interval 2\n weight -20\n fall 2\n}\nvrrp_instance VI_1 {\n state MASTER\n interface enp0s3\n virtual_router_id 51\n priority 100\n authentication {\n  auth_type PASS\n  auth_pass 1234\n }\n virtual_ipaddress {\n  192.168.0.20/24\n }\n track_script {\n  chk_service\n }\n}\n";
        let cfg = holdfast_config::parse_str(text).config;
        let plan = build(&cfg, &[], NO_IPVS);
        assert!(plan.findings.is_empty(), "{:?}", plan.findings);
        let p = &plan.instances[0];
        assert_eq!(p.router.priority, 100);
        assert!(p.router.init_master);
        assert_eq!(p.router.auth, Auth::pass("1234"));
        assert_eq!(
            p.router.trackers,
            vec![Tracker {
                weight: -20,
                reverse: false
            }]
        );
        assert_eq!(p.trackers[0].fall, 2);
        assert_eq!(p.trackers[0].interval, Duration::from_secs(2));
        assert_eq!(p.vips[0].dev, "enp0s3");
        assert_eq!(p.vips[0].prefix, 24);
    }

    #[test]
    fn vrrp_min_garp_sends_one_arp_without_a_second_burst_unless_told_otherwise() {
        let inst = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n";
        let timing = |global: &str| {
            let cfg =
                holdfast_config::parse_str(&format!("global_defs {{\n{global}\n}}\n{inst}")).config;
            build(&cfg, &[], NO_IPVS).instances[0].router.garp.clone()
        };
        let plain = timing("");
        assert_eq!(
            (plain.master_repeat, plain.master_delay),
            (5, Duration::from_secs(5))
        );
        let min = timing(" vrrp_min_garp");
        assert_eq!(min.master_repeat, 1);
        assert_eq!(min.master_delay, Duration::ZERO);
        assert_eq!((min.master_refresh, min.master_refresh_repeat), (None, 0));
        // What global_defs sets stays set.
        let set = timing(" vrrp_min_garp\n vrrp_garp_master_repeat 3");
        assert_eq!((set.master_repeat, set.master_delay), (3, Duration::ZERO));
    }

    #[test]
    fn a_persistence_mask_a_prefix_cannot_say_is_not_run_and_said_so() {
        let vs = |g: &str| {
            format!(
                "virtual_server 10.0.0.1 80 {{\n protocol TCP\n lb_algo rr\n lb_kind NAT\n persistence_granularity {g}\n real_server 10.0.0.5 80 {{\n }}\n}}\n"
            )
        };
        let ipvs = Facts { ipvs: true };
        // Every form check-config takes is the same prefix for the plane.
        let cfg = holdfast_config::parse_str(&vs("0xffffff00")).config;
        let plan = build(&cfg, &[], ipvs);
        assert!(plan.findings.is_empty(), "{:?}", plan.findings);
        assert_eq!(plan.virtual_servers[0].spec.persistence_prefix, Some(24));
        let cfg = holdfast_config::parse_str(&vs("255.0.255.0")).config;
        let plan = build(&cfg, &[], ipvs);
        assert!(plan.virtual_servers.is_empty());
        assert!(
            plan.findings.iter().any(|d| d
                .message
                .contains("255.0.255.0 is not a contiguous netmask")),
            "{:?}",
            plan.findings
        );
    }

    #[test]
    fn scripts_disabled_by_script_security_are_not_tracked() {
        let text = "vrrp_script chk {\n script \"/x\"\n weight -20\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.1\n }\n track_script {\n  chk\n }\n}\n";
        let cfg = holdfast_config::parse_str(text).config;
        assert_eq!(build(&cfg, &[], NO_IPVS).instances[0].trackers.len(), 1);
        let p = build(&cfg, &["chk".to_string()], NO_IPVS);
        assert!(p.instances[0].trackers.is_empty());
        assert!(p.instances[0].router.trackers.is_empty());
    }

    #[test]
    fn sync_group_trackers_are_added_to_every_member() {
        let text = "vrrp_script chk {\n script \"/x\"\n}\nvrrp_sync_group G {\n group {\n  A\n  B\n }\n track_script {\n  chk weight -30\n }\n track_interface {\n  eth0\n  eth1 weight 5\n }\n}\nvrrp_instance A {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n  10.0.0.1\n }\n}\nvrrp_instance B {\n interface eth2\n virtual_router_id 2\n virtual_ipaddress {\n  10.0.0.2\n }\n}\n";
        let cfg = holdfast_config::parse_str(text).config;
        let plan = build(&cfg, &[], NO_IPVS);
        assert!(plan.findings.is_empty(), "{:?}", plan.findings);
        let names = |p: &InstancePlan| {
            p.trackers
                .iter()
                .zip(&p.router.trackers)
                .map(|(t, w)| (t.name.clone(), w.weight))
                .collect::<Vec<_>>()
        };
        // A's own interface is eth0: the group's eth0 adds nothing there.
        assert_eq!(
            names(&plan.instances[0]),
            [("eth1".to_string(), 5), ("chk".to_string(), -30)]
        );
        assert_eq!(
            names(&plan.instances[1]),
            [
                ("eth0".to_string(), 0),
                ("eth1".to_string(), 5),
                ("chk".to_string(), -30)
            ]
        );
    }

    #[test]
    fn broadcast_plus_is_computed_from_the_prefix() {
        assert_eq!(
            broadcast("10.1.2.3".parse().unwrap(), 24, Some("+")),
            Some("10.1.2.255".parse().unwrap())
        );
        assert_eq!(broadcast("10.1.2.3".parse().unwrap(), 24, Some("-")), None);
    }

    #[test]
    fn virtual_servers_are_planned() {
        let cfg = holdfast_config::parse_str(
            "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n }\n}\n",
        )
        .config;
        let p = build(&cfg, &[], NO_IPVS);
        assert!(p.findings.is_empty(), "{:?}", p.findings);
        assert_eq!(p.virtual_servers.len(), 1);
    }
}
