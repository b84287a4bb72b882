//! Virtual servers planned from the configuration: what each real server's checkers probe
//! (with keepalived's timing cascade), which data plane serves each virtual server, and the
//! names keepalived's log lines give them. Pure mapping, no I/O.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use holdfast_check::probe::Probe;
use holdfast_check::state::CheckerConfig;
use holdfast_config::model::{
    Checker, CheckerKind, Command, Config, LvsMethod, Protocol, UserSpec, VirtualServer, VsKey,
};
use holdfast_dataplane::{DestSpec, Forward, Proto, ServiceKey, ServiceSpec};
use holdfast_lb::sched::Kind;
use holdfast_lb::service::{ServiceConfig, trio};

use crate::plan::{Facts, Findings};

/// What a checker does: a network probe, or one of the two kinds that use the daemon's own
/// machinery (a script run as a user, a file watched with inotify).
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// TCP_CHECK, HTTP_GET, SSL_GET, UDP_CHECK, PING_CHECK, SMTP_CHECK, DNS_CHECK,
    /// MYSQL_CHECK.
    Probe(Probe),
    /// FILE_CHECK: a `track_file`'s value, watched with inotify.
    File {
        /// The file.
        path: std::path::PathBuf,
        /// `init_file`.
        init: Option<(i64, bool)>,
        /// Weight (the checker's, else the track_file's); 0: non-zero means down.
        weight: i32,
        /// `reverse`.
        reverse: bool,
    },
    /// MISC_CHECK.
    Misc {
        /// `misc_path`.
        cmd: String,
        /// `misc_timeout` (default: delay_loop).
        timeout: Duration,
        /// `misc_dynamic`.
        dynamic: bool,
        /// `user`.
        user: Option<UserSpec>,
    },
}

impl Check {
    /// The kind of checker, for its keyword and keepalived's lines about it.
    pub fn kind(&self) -> holdfast_check::words::Kind {
        match self {
            Check::Probe(p) => p.kind(),
            Check::File { .. } => holdfast_check::words::Kind::File,
            Check::Misc { .. } => holdfast_check::words::Kind::Misc,
        }
    }
}

/// One checker of a real server.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckPlan {
    /// What it does.
    pub check: Check,
    /// Timing.
    pub cfg: CheckerConfig,
    /// `log_all_failures` (or `checker_log_all_failures`): log every failed attempt while
    /// the checker is up, not only the one that takes it down.
    pub log_all_failures: bool,
}

/// One real server.
#[derive(Clone, Debug, PartialEq)]
pub struct RsPlan {
    /// Address and port.
    pub addr: SocketAddr,
    /// `weight`.
    pub weight: u32,
    /// `inhibit_on_failure`.
    pub inhibit: bool,
    /// `alpha`: starts down.
    pub alpha: bool,
    /// `notify_up`.
    pub notify_up: Option<Command>,
    /// `notify_down`.
    pub notify_down: Option<Command>,
    /// Checkers; none means always alive.
    pub checkers: Vec<CheckPlan>,
    /// `readmit manual` (holdfast): after a failure it stays out until `holdfast enable`.
    pub readmit_manual: bool,
    /// `uthreshold`.
    pub upper: Option<u32>,
    /// `lthreshold`.
    pub lower: Option<u32>,
    /// `lvs_method` (the real server's, else the virtual server's).
    pub method: Forward,
    /// Its tunnel options, with `lvs_method TUN`.
    pub tunnel: holdfast_dataplane::Tunnel,
    /// `smtp_alert`: mail its checkers' changes (on by default, as in keepalived).
    pub smtp_alert: bool,
}

impl RsPlan {
    /// The real server as a data plane's destination, at `weight`.
    pub fn dest(&self, weight: u32) -> DestSpec {
        DestSpec {
            addr: self.addr,
            weight,
            upper: self.upper,
            lower: self.lower,
            method: self.method,
            tunnel: self.tunnel,
        }
    }
}

/// Which data plane runs a virtual server.
pub use holdfast_dataplane::caps::Plane as PlaneKind;

/// One virtual server.
#[derive(Clone, Debug, PartialEq)]
pub struct VsPlan {
    /// The wanted service without destinations.
    pub spec: ServiceSpec,
    /// The data plane that runs it.
    pub plane: PlaneKind,
    /// `sorry_server_lvs_method`.
    pub sorry_method: Forward,
    /// `sorry_server_lvs_method TUN …`'s options.
    pub sorry_tunnel: holdfast_dataplane::Tunnel,
    /// Quorum and sorry server.
    pub service: ServiceConfig,
    /// Real servers.
    pub servers: Vec<RsPlan>,
    /// `quorum_up`.
    pub quorum_up: Option<Command>,
    /// `quorum_down`.
    pub quorum_down: Option<Command>,
    /// `ha_suspend`: probe only while the virtual address is local.
    pub ha_suspend: bool,
    /// `omega`: at shutdown, run notify_down of the live servers and quorum_down.
    pub omega: bool,
    /// `script_user`.
    pub script_user: Option<UserSpec>,
    /// `smtp_alert`: mail quorum changes (off by default, as in keepalived).
    pub smtp_alert: bool,
    /// `no_checker_emails`: a checker's change is mailed only when it changes its server.
    pub no_checker_emails: bool,
    /// `virtual_server group NAME`: the group's name and every service it stands for (the
    /// first is `spec.key`); each gets the same real servers, checked once.
    pub group: Option<(String, Vec<ServiceKey>)>,
}

impl VsPlan {
    /// keepalived's name for it: `[IP]:tcp:PORT`, `FWM N`, `[GROUP]:0`.
    pub fn name(&self) -> String {
        plan_name(&self.spec.key, self.group.as_ref().map(|(g, _)| g.as_str()))
    }

    /// The services it runs: its own, or each of its group's.
    pub fn keys(&self) -> Vec<ServiceKey> {
        match &self.group {
            Some((_, keys)) => keys.clone(),
            None => vec![self.spec.key],
        }
    }
}

/// keepalived's name for a virtual server, or for the `virtual_server group` `group`.
pub(crate) fn plan_name(key: &ServiceKey, group: Option<&str>) -> String {
    match group {
        Some(g) => format!("[{g}]:0"),
        None => vs_name(key),
    }
}

/// Most services one `virtual_server_group` may stand for.
pub(crate) const GROUP_MAX: usize = 4096;

/// The services of `virtual_server_group` `g` for protocol `proto`.
pub(crate) fn group_keys(
    g: &holdfast_config::model::VsGroup,
    proto: Proto,
) -> Result<Vec<ServiceKey>, String> {
    use holdfast_config::model::VsGroupEntry;
    let mut keys = Vec::new();
    for e in &g.entries {
        match e {
            VsGroupEntry::Addr {
                prefix: Some(_), ..
            } => {
                return Err(format!(
                    "virtual_server_group {}: an ADDRESS/PREFIX entry is not run yet",
                    g.name
                ));
            }
            VsGroupEntry::Addr {
                addr,
                range_end,
                port,
                ..
            } => {
                // `A.B.C.D-E`: the last octet (hextet for IPv6) from D to E.
                let addrs: Vec<IpAddr> = match (addr, range_end) {
                    (_, None) => vec![*addr],
                    (IpAddr::V4(a), Some(end)) => {
                        let o = a.octets();
                        (u16::from(o[3])..=*end)
                            .filter_map(|l| u8::try_from(l).ok())
                            .map(|l| IpAddr::from([o[0], o[1], o[2], l]))
                            .collect()
                    }
                    (IpAddr::V6(a), Some(end)) => {
                        let mut s = a.segments();
                        (s[7]..=*end)
                            .map(|l| {
                                s[7] = l;
                                IpAddr::from(s)
                            })
                            .collect()
                    }
                };
                keys.extend(addrs.into_iter().map(|a| ServiceKey::Addr {
                    proto,
                    addr: SocketAddr::new(a, *port),
                }));
            }
            VsGroupEntry::Fwmark { mark, family } => keys.push(ServiceKey::Fwmark {
                mark: *mark,
                v6: family.as_deref() == Some("inet6"),
            }),
        }
        if keys.len() > GROUP_MAX {
            return Err(format!(
                "virtual_server_group {} stands for more than {GROUP_MAX} services",
                g.name
            ));
        }
    }
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return Err(format!("virtual_server_group {} is empty", g.name));
    }
    Ok(keys)
}

/// keepalived's name for a virtual server: `[IP]:tcp:PORT` (`udp`, `sctp`), `FWM N`.
pub fn vs_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { addr, .. } => trio(addr, proto_of(key)),
        ServiceKey::Fwmark { mark, .. } => format!("FWM {mark}"),
    }
}

/// The protocol keepalived writes in a virtual server's and its real servers' names (`tcp`
/// for a fwmark service, as keepalived defaults its service type).
pub fn proto_of(key: &ServiceKey) -> &'static str {
    match key {
        ServiceKey::Addr { proto, .. } => proto.keyword(),
        ServiceKey::Fwmark { .. } => Proto::Tcp.keyword(),
    }
}

/// keepalived's name for real server `a` of virtual server `key`.
pub fn rs_name(key: &ServiceKey, a: &SocketAddr) -> String {
    trio(a, proto_of(key))
}

/// A configured tunnel as IPVS takes it (`IP_VS_CONN_F_TUNNEL_TYPE_*`,
/// `IP_VS_TUNNEL_ENCAP_FLAG_*`).
pub(crate) fn tunnel(t: Option<holdfast_config::model::Tunnel>) -> holdfast_dataplane::Tunnel {
    use holdfast_config::model::{TunnelCsum, TunnelType};
    t.map_or_else(holdfast_dataplane::Tunnel::default, |t| {
        holdfast_dataplane::Tunnel {
            kind: match t.kind {
                TunnelType::Ipip => 0,
                TunnelType::Gue => 1,
                TunnelType::Gre => 2,
            },
            port: t.port,
            flags: match t.csum {
                TunnelCsum::NoCsum => 0,
                TunnelCsum::Csum => 1,
                TunnelCsum::RemCsum => 2,
            },
        }
    })
}

pub(crate) fn forward(m: LvsMethod) -> Forward {
    match m {
        LvsMethod::Nat => Forward::Masq,
        LvsMethod::Dr => Forward::Route,
        LvsMethod::Tun => Forward::Tunnel,
    }
}

/// Maps the configuration's virtual servers; what cannot run goes to `un`.
pub(crate) fn build(cfg: &Config, facts: Facts, un: &mut Findings) -> Vec<VsPlan> {
    let mut out = Vec::new();
    for vs in &cfg.virtual_servers {
        match plan_vs(cfg, vs, facts, un) {
            Ok(p) => out.push(p),
            Err(NotRun::Host(why)) => un.not_run(vs.origin, why),
            Err(NotRun::Refused(why)) => un.refused(vs.origin, why),
        }
    }
    out
}

/// Why a virtual server is not run.
pub(crate) enum NotRun {
    /// What keepalived would run and holdfast (or this host) cannot.
    Host(String),
    /// holdfast's own keywords ask for something that cannot be done as asked.
    Refused(String),
}

pub(crate) fn plan_vs(
    cfg: &Config,
    vs: &VirtualServer,
    facts: Facts,
    un: &mut Findings,
) -> Result<VsPlan, NotRun> {
    use NotRun::Host;
    let proto = match vs.protocol {
        Protocol::Tcp => Proto::Tcp,
        Protocol::Udp => Proto::Udp,
        Protocol::Sctp => Proto::Sctp,
    };
    let mut group_of: Option<(String, Vec<ServiceKey>)> = None;
    let key = match &vs.key {
        VsKey::Addr(ip, port) => ServiceKey::Addr {
            proto,
            addr: SocketAddr::new(*ip, *port),
        },
        VsKey::Fwmark(m) => ServiceKey::Fwmark {
            mark: *m,
            // The family its block settled, else its sorry server's (keepalived's default:
            // IPv4).
            v6: vs
                .family_v6
                .or_else(|| vs.sorry_server.map(|(ip, _)| ip.is_ipv6()))
                .unwrap_or(false),
        },
        VsKey::Group(g) => {
            let Some(group) = cfg.vs_groups.iter().find(|x| &x.name == g) else {
                return Err(Host(format!(
                    "virtual_server group {g} is not run: there is no virtual_server_group {g}"
                )));
            };
            let keys = group_keys(group, proto)
                .map_err(|e| Host(format!("virtual_server group {g} is not run: {e}")))?;
            group_of = Some((g.clone(), keys.clone()));
            keys[0]
        }
    };
    let name = plan_name(&key, group_of.as_ref().map(|(g, _)| g.as_str()));
    // The port real servers default to (a fwmark service has none: theirs must be given).
    let vport = key.addr().map_or(0, |a| a.port());
    let persistence_prefix = match vs.persistence_prefix() {
        Some(Err(mask)) => {
            return Err(Host(format!(
                "virtual_server {name} is not run: persistence_granularity {mask} is not a contiguous netmask, which holdfast's data planes cannot express"
            )));
        }
        p => p.and_then(Result::ok),
    };
    let sched = Kind::parse(&vs.lvs_sched).ok_or_else(|| {
        Host(format!(
            "virtual_server {name} is not run: scheduler '{}' is not implemented by holdfast",
            vs.lvs_sched
        ))
    })?;
    let mut servers = Vec::new();
    for rs in &vs.real_servers {
        let rs_addr = SocketAddr::new(rs.addr, rs.port.unwrap_or(vport));
        let mut checkers = Vec::new();
        for c in &rs.checkers {
            match check_plan(
                c,
                rs,
                vs,
                rs_addr,
                &cfg.track_files,
                cfg.global.checker_log_all_failures,
            ) {
                Ok(p) => checkers.push(p),
                Err(why) => un.not_run(
                    c.origin,
                    format!(
                        "real_server {} of VS {name}: {why}; that checker is not run",
                        rs_name(&key, &rs_addr)
                    ),
                ),
            }
        }
        servers.push(RsPlan {
            addr: rs_addr,
            weight: u32::try_from(rs.weight).unwrap_or(0),
            inhibit: rs.inhibit_on_failure.unwrap_or(vs.inhibit_on_failure),
            alpha: rs.alpha.unwrap_or(vs.alpha),
            notify_up: rs.notify_up.clone(),
            notify_down: rs.notify_down.clone(),
            checkers,
            readmit_manual: rs.readmit_manual,
            upper: rs.uthreshold,
            lower: rs.lthreshold,
            method: forward(rs.lvs_method.unwrap_or(vs.lvs_method)),
            // The real server's own `lvs_method` brings its options; otherwise the virtual
            // server's.
            tunnel: tunnel(if rs.lvs_method.is_some() {
                rs.tunnel
            } else {
                vs.tunnel
            }),
            smtp_alert: rs
                .smtp_alert
                .or(cfg.global.smtp_alert_checker)
                .or(cfg.global.smtp_alert)
                .unwrap_or(true),
        });
    }
    let sorry = vs
        .sorry_server
        .map(|(ip, port)| SocketAddr::new(ip, port.unwrap_or(vport)));
    let mut plan = VsPlan {
        plane: PlaneKind::Proxy,
        sorry_method: forward(vs.sorry_server_lvs_method.unwrap_or(vs.lvs_method)),
        sorry_tunnel: tunnel(if vs.sorry_server_lvs_method.is_some() {
            vs.sorry_server_tunnel
        } else {
            vs.tunnel
        }),
        spec: ServiceSpec {
            persistence: vs
                .persistence_timeout
                .map(|s| Duration::from_secs(u64::from(s))),
            persistence_prefix,
            flags: holdfast_lb::sched::HashFlags {
                port: vs.sched_port,
                fallback: vs.sched_fallback,
            },
            proxy_protocol: vs.proxy_protocol,
            one_packet: vs.ops,
            persistence_engine: vs.persistence_engine.clone(),
            ..ServiceSpec::new(key, sched, Vec::new())
        },
        service: ServiceConfig {
            quorum: vs.quorum,
            hysteresis: vs.hysteresis,
            sorry_server: sorry,
            sorry_server_inhibit: vs.sorry_server_inhibit,
        },
        servers,
        quorum_up: vs.quorum_up.clone(),
        quorum_down: vs.quorum_down.clone(),
        ha_suspend: vs.ha_suspend,
        omega: vs.omega,
        script_user: cfg.global.script_user.clone(),
        smtp_alert: vs
            .smtp_alert
            .or(cfg.global.smtp_alert_checker)
            .or(cfg.global.smtp_alert)
            .unwrap_or(false),
        no_checker_emails: cfg.global.no_checker_emails,
        group: group_of,
    };
    plan.plane = choose_plane(&plan, vs.dataplane.or(cfg.global.dataplane), facts, &name)?;
    if plan.plane == PlaneKind::Proxy && vs.lvs_method != LvsMethod::Nat {
        un.not_run(
            vs.origin,
            format!(
                "virtual_server {name}: lvs_method {:?} is not run: the proxy data plane forwards as NAT (the real servers see the proxy as the client)",
                vs.lvs_method
            ),
        );
    }
    Ok(plan)
}

/// The data plane of a virtual server: the one `dataplane` names, else (`auto`) IPVS where
/// the kernel has it and the proxy otherwise, passing over a plane that cannot run the
/// service; each plane says itself what it cannot run ([`PlaneKind::refuses`]).
fn choose_plane(
    plan: &VsPlan,
    wanted: Option<holdfast_config::model::DataPlane>,
    facts: Facts,
    name: &str,
) -> Result<PlaneKind, NotRun> {
    use holdfast_config::model::DataPlane;
    let mut spec = plan.spec.clone();
    spec.dests = plan.servers.iter().map(|r| r.dest(r.weight)).collect();
    let keys = match &plan.group {
        Some((_, keys)) => keys.clone(),
        None => vec![spec.key],
    };
    let refuses = |p: PlaneKind| p.refuses(&spec, &keys);
    let no_ipvs =
        "the kernel has no IPVS (generic netlink family \"IPVS\" not found; modprobe ip_vs)";
    let plane = match wanted {
        Some(DataPlane::Proxy) => PlaneKind::Proxy,
        Some(DataPlane::Nft) => PlaneKind::Nft,
        Some(DataPlane::Ipvs) => PlaneKind::Ipvs,
        None | Some(DataPlane::Auto) => {
            let ipvs = refuses(PlaneKind::Ipvs);
            let proxy = refuses(PlaneKind::Proxy);
            return match (facts.ipvs, ipvs, proxy) {
                (true, None, _) => Ok(PlaneKind::Ipvs),
                (_, _, None) => Ok(PlaneKind::Proxy),
                // What keepalived would run on IPVS, on a kernel without it.
                (false, None, Some(why)) => Err(NotRun::Host(format!(
                    "virtual_server {name} is not run: only IPVS can run it, and {no_ipvs} (proxy: {why})"
                ))),
                (_, Some(ipvs), Some(proxy)) => Err(NotRun::Refused(format!(
                    "virtual_server {name} is not run: no data plane can run it (ipvs: {ipvs}; proxy: {proxy})"
                ))),
            };
        }
    };
    match refuses(plane) {
        Some(why) => Err(NotRun::Refused(format!(
            "virtual_server {name} is not run: dataplane {}: {why}",
            plane.name()
        ))),
        None if plane == PlaneKind::Ipvs && !facts.ipvs => Err(NotRun::Refused(format!(
            "virtual_server {name} is not run: dataplane ipvs: {no_ipvs}"
        ))),
        None => Ok(plane),
    }
}

pub(crate) fn check_plan(
    c: &Checker,
    rs: &holdfast_config::model::RealServer,
    vs: &VirtualServer,
    rs_addr: SocketAddr,
    files: &[holdfast_config::model::TrackFile],
    checker_log_all_failures: bool,
) -> Result<CheckPlan, String> {
    let t = c.effective_timing(rs, vs);
    let mut cfg = CheckerConfig {
        delay_loop: t.delay_loop,
        retry: t.retry,
        delay_before_retry: t.delay_before_retry,
        warmup: t.warmup,
        alpha: c.common.alpha.or(rs.alpha).unwrap_or(vs.alpha),
        rise: 1,
    };
    let check = match &c.kind {
        CheckerKind::Misc(m) => Check::Misc {
            cmd: m.path.clone(),
            timeout: m.timeout.unwrap_or(t.delay_loop),
            dynamic: m.dynamic,
            user: m.user.clone(),
        },
        CheckerKind::File {
            track_file,
            weight,
            reverse,
            ..
        } => {
            let f = files
                .iter()
                .find(|f| f.name == *track_file)
                .ok_or_else(|| format!("FILE_CHECK: track_file {track_file} not found"))?;
            Check::File {
                path: f.file.clone().into(),
                init: f.init_file,
                weight: weight.unwrap_or(f.weight),
                reverse: *reverse || (weight.is_none() && f.reverse),
            }
        }
        kind => {
            if let CheckerKind::Mysql(m) = kind {
                cfg.rise = m.rise.unwrap_or(1);
            }
            let to = super::probe::Target {
                ip: c.common.connect_ip.unwrap_or(rs_addr.ip()),
                port: Some(c.common.connect_port.unwrap_or(rs_addr.port())),
                timeout: t.connect_timeout,
                vhost: vs.virtualhost.as_ref(),
            };
            Check::Probe(super::probe::probe(c, &to)?)
        }
    };
    Ok(CheckPlan {
        check,
        cfg,
        log_all_failures: c
            .common
            .log_all_failures
            .unwrap_or(checker_log_all_failures),
    })
}
