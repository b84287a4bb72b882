//! The configuration model mapped onto what `holdfast run` drives: one [`InstancePlan`] per
//! `vrrp_instance`, with its router configuration, VIPs, notify scripts and trackers.
//! Everything `run` will not do as the configuration asks is a finding in [`Plan::findings`],
//! with the place in the configuration that asks for it: `run` logs it at start and
//! `check-config` reports it (file:line:col), so the two cannot disagree — `check-config` runs
//! this same planning with the same host facts ([`Facts`]).
//!
//! `vrrp.rs` plans the VRRP instances, `lvs.rs` the virtual servers (with their checkers and
//! data planes); this module puts them together with the process-wide settings.

mod announce;
pub mod lvs;
mod probe;
mod vrrp;

pub use announce::AnnouncePlan;
use vrrp::instance;
#[cfg(test)]
pub(crate) use vrrp::test_instance;
pub use vrrp::{InstancePlan, PlannedVip, TrackerKind, TrackerPlan, VmacPlan};

use holdfast_config::diag::{Class, Diagnostic, Diagnostics};
use holdfast_config::model::{Config, Notify, Origin};

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
    /// `vrrp_rt_priority` and `checker_rt_priority` with their `*_rlimit_rttime`
    /// (keepalived's default 10 000 µs): SCHED_RR for the thread that runs the part.
    pub realtime: (Option<Realtime>, Option<Realtime>),
    /// `bfd_instance` sessions.
    pub bfd: Vec<holdfast_config::model::BfdInstance>,
    /// `bgp_announce` blocks.
    pub announces: Vec<AnnouncePlan>,
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

    /// Done as asked, with a consequence the configuration may not expect.
    pub(crate) fn note(&mut self, at: Origin, message: impl Into<String>) {
        self.0.push_unlined(Class::Note, at.0, message);
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

/// A part's real-time scheduling: SCHED_RR priority and `RLIMIT_RTTIME` in microseconds.
pub type Realtime = (u32, u64);

/// The plan `run` follows for `cfg` (`disabled`: the scripts script security disabled) on a
/// host with `facts`; what it will not do is in [`Plan::findings`].
pub fn build(cfg: &Config, disabled: &[String], facts: Facts) -> Plan {
    let mut plan = Plan::default();
    let mut found = Findings::new();
    plan.virtual_servers = crate::lvs::build(cfg, facts, &mut found);
    plan.announces = announce::build(cfg, &plan.virtual_servers, disabled, &mut found);
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
        ipvs_present: facts.ipvs,
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
    let g = &cfg.global;
    let rt = |p: Option<u32>, limit: Option<u64>| p.map(|p| (p, limit.unwrap_or(10_000)));
    plan.realtime = (
        rt(g.vrrp_rt_priority, g.vrrp_rlimit_rttime),
        rt(g.checker_rt_priority, g.checker_rlimit_rttime),
    );
    plan.bfd = cfg.bfd_instances.clone();
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

#[cfg(test)]
mod tests {
    use super::vrrp::broadcast;
    use super::*;
    use holdfast_vrrp::router::Tracker;
    use holdfast_vrrp::wire::Auth;
    use std::time::Duration;

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
