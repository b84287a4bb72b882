//! Virtual servers: keepalived's checker process, on holdfast's proxy data plane. Each real
//! server's checkers run as tasks over the pure [`CheckerState`]; a real server is alive iff
//! all its checkers are up; each virtual server's [`Service`] turns that into the wanted table
//! (inhibit vs removal, quorum, sorry server) and the data plane is given the whole table
//! after every change. Log lines are keepalived's (`Keepalived_healthcheckers`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use holdfast_check::probe::{
    DnsProbe, HttpProbe, MysqlChecker, MysqlProbe, PingProbe, SmtpProbe, TcpProbe, Tls, UdpProbe,
};
use holdfast_check::state::{CheckerConfig, CheckerState, Flip};
use holdfast_config::model::{
    Checker, CheckerKind, Command, Config, LvsMethod, Protocol, UserSpec, VirtualServer, VsKey,
};
use holdfast_dataplane::ipvs::{IpvsPlane, SyncDaemon};
use holdfast_dataplane::nft::{FastPath, NftPlane};
use holdfast_dataplane::proxy::ProxyPlane;
use holdfast_dataplane::{DataPlane, DestSpec, Forward, Proto, ServiceKey, ServiceSpec};
use holdfast_lb::sched::Kind;
use holdfast_lb::service::{Event, RealServer, Service, ServiceConfig, trio};
use tokio::sync::mpsc;

use crate::logging::Logger;

/// What a checker probes.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    /// TCP_CHECK.
    Tcp(TcpProbe),
    /// HTTP_GET, or SSL_GET when `tls` is set.
    Http(HttpProbe),
    /// UDP_CHECK.
    Udp(UdpProbe),
    /// PING_CHECK.
    Ping(PingProbe),
    /// SMTP_CHECK.
    Smtp(SmtpProbe),
    /// DNS_CHECK.
    Dns(DnsProbe),
    /// MYSQL_CHECK (holdfast).
    Mysql(MysqlProbe),
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

impl Probe {
    /// The checker's configuration keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Probe::Tcp(_) => "TCP_CHECK",
            Probe::Http(h) if h.tls.is_some() => "SSL_GET",
            Probe::Http(_) => "HTTP_GET",
            Probe::Udp(_) => "UDP_CHECK",
            Probe::Ping(_) => "PING_CHECK",
            Probe::Smtp(_) => "SMTP_CHECK",
            Probe::Dns(_) => "DNS_CHECK",
            Probe::Mysql(_) => "MYSQL_CHECK",
            Probe::File { .. } => "FILE_CHECK",
            Probe::Misc { .. } => "MISC_CHECK",
        }
    }
}

/// One checker of a real server.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckPlan {
    /// The probe.
    pub probe: Probe,
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

/// Which data plane runs a virtual server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaneKind {
    /// holdfast's userspace proxy.
    Proxy,
    /// The kernel's IPVS.
    Ipvs,
    /// nftables NAT rules in holdfast's table.
    Nft,
}

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
fn plan_name(key: &ServiceKey, group: Option<&str>) -> String {
    match group {
        Some(g) => format!("[{g}]:0"),
        None => vs_name(key),
    }
}

/// Most services one `virtual_server_group` may stand for.
const GROUP_MAX: usize = 4096;

/// The services of `virtual_server_group` `g` for protocol `proto`.
fn group_keys(
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
fn tunnel(t: Option<holdfast_config::model::Tunnel>) -> holdfast_dataplane::Tunnel {
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

fn forward(m: LvsMethod) -> Forward {
    match m {
        LvsMethod::Nat => Forward::Masq,
        LvsMethod::Dr => Forward::Route,
        LvsMethod::Tun => Forward::Tunnel,
    }
}

/// A persistence_granularity mask (`255.255.255.0`) or prefix length as a prefix length.
fn granularity(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    let m: std::net::Ipv4Addr = s.parse().ok()?;
    let bits = u32::from(m);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then_some(bits.leading_ones() as u8)
}

/// Maps the configuration's virtual servers; what cannot run goes to `un`.
pub fn build(cfg: &Config, un: &mut Vec<String>) -> Vec<VsPlan> {
    let mut out = Vec::new();
    for vs in &cfg.virtual_servers {
        match plan_vs(cfg, vs, un) {
            Ok(p) => out.push(p),
            Err(why) => un.push(why),
        }
    }
    out
}

fn plan_vs(cfg: &Config, vs: &VirtualServer, un: &mut Vec<String>) -> Result<VsPlan, String> {
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
            // `ip_family`, else the family of its real servers (keepalived's default: IPv4).
            v6: vs
                .ip_family_v6
                .unwrap_or_else(|| vs.real_servers.first().is_some_and(|r| r.addr.is_ipv6())),
        },
        VsKey::Group(g) => {
            let Some(group) = cfg.vs_groups.iter().find(|x| &x.name == g) else {
                return Err(format!(
                    "virtual_server group {g}: no virtual_server_group {g}; not run"
                ));
            };
            let keys = group_keys(group, proto).map_err(|e| format!("{e}; not run"))?;
            group_of = Some((g.clone(), keys.clone()));
            keys[0]
        }
    };
    let name = plan_name(&key, group_of.as_ref().map(|(g, _)| g.as_str()));
    // The port real servers default to (a fwmark service has none: theirs must be given).
    let vport = key.addr().map_or(0, |a| a.port());
    // The proxy listens on addresses: a group's every entry must be one.
    let proxyable = proto == Proto::Tcp
        && key.addr().is_some()
        && group_of
            .as_ref()
            .is_none_or(|(_, k)| k.iter().all(|k| k.addr().is_some()));
    let plane = match vs.dataplane.or(cfg.global.dataplane) {
        _ if vs.proxy_protocol && vs.persistence_engine.is_some() => {
            return Err(format!(
                "virtual_server {name}: proxy_protocol needs the proxy data plane and persistence_engine needs IPVS: not both; not run"
            ));
        }
        _ if vs.proxy_protocol && !proxyable => {
            return Err(format!(
                "virtual_server {name}: proxy_protocol: the PROXY header is sent by the proxy data plane, which forwards TCP services by address only; not run"
            ));
        }
        Some(holdfast_config::model::DataPlane::Ipvs) if vs.proxy_protocol => {
            return Err(format!(
                "virtual_server {name}: proxy_protocol: dataplane ipvs forwards the client's packets unchanged and cannot send a PROXY header; not run"
            ));
        }
        // Persistence engines are IPVS modules (nftables refuses them with the rest of what
        // it cannot do, below).
        Some(holdfast_config::model::DataPlane::Proxy) if vs.persistence_engine.is_some() => {
            return Err(format!(
                "virtual_server {name}: persistence_engine {}: persistence engines are IPVS's (dataplane proxy has none); not run",
                vs.persistence_engine.as_deref().unwrap_or("")
            ));
        }
        None | Some(holdfast_config::model::DataPlane::Auto)
            if vs.persistence_engine.is_some() && !ipvs_available() =>
        {
            return Err(format!(
                "virtual_server {name}: persistence_engine {}: persistence engines are IPVS's, which this kernel does not have; not run",
                vs.persistence_engine.as_deref().unwrap_or("")
            ));
        }
        Some(holdfast_config::model::DataPlane::Proxy) if proxyable => PlaneKind::Proxy,
        Some(holdfast_config::model::DataPlane::Proxy) => {
            return Err(format!(
                "virtual_server {name}: the proxy data plane forwards TCP services only (UDP, SCTP and fwmark need dataplane ipvs); not run"
            ));
        }
        Some(holdfast_config::model::DataPlane::Ipvs) if ipvs_available() => PlaneKind::Ipvs,
        Some(holdfast_config::model::DataPlane::Ipvs) => {
            return Err(format!(
                "virtual_server {name}: dataplane ipvs: the kernel has no IPVS (generic netlink family \"IPVS\" not found; modprobe ip_vs); not run"
            ));
        }
        Some(holdfast_config::model::DataPlane::Nft) => PlaneKind::Nft,
        // A PROXY header is sent by the proxy only.
        None | Some(holdfast_config::model::DataPlane::Auto) if vs.proxy_protocol && proxyable => {
            PlaneKind::Proxy
        }
        None | Some(holdfast_config::model::DataPlane::Auto) => {
            if ipvs_available() {
                PlaneKind::Ipvs
            } else if proxyable {
                PlaneKind::Proxy
            } else {
                return Err(format!(
                    "virtual_server {name}: UDP, SCTP and fwmark services need IPVS, which this kernel does not have; not run"
                ));
            }
        }
    };
    let sched = Kind::parse(&vs.lvs_sched).ok_or_else(|| {
        format!(
            "virtual_server {name}: scheduler '{}' is not implemented; not run",
            vs.lvs_sched
        )
    })?;
    if plane == PlaneKind::Proxy && vs.lvs_method != LvsMethod::Nat {
        un.push(format!(
            "virtual_server {name}: lvs_method {:?} — the proxy data plane forwards as NAT (the real servers see the proxy as the client)",
            vs.lvs_method
        ));
    }
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
                Err(why) => un.push(format!(
                    "real_server {} of VS {name}: {why}; that checker is not run",
                    rs_name(&key, &rs_addr)
                )),
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
    let plan = VsPlan {
        plane,
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
            persistence_prefix: vs.persistence_granularity.as_deref().and_then(granularity),
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
    if plane == PlaneKind::Nft {
        let mut spec = plan.spec.clone();
        spec.dests = plan
            .servers
            .iter()
            .map(|r| DestSpec {
                addr: r.addr,
                weight: r.weight,
                upper: r.upper,
                lower: r.lower,
                method: r.method,
                tunnel: r.tunnel,
            })
            .collect();
        if let Some(why) = holdfast_dataplane::nft::unsupported(&spec) {
            return Err(format!(
                "virtual_server {name}: dataplane nft: {why}; not run"
            ));
        }
    }
    Ok(plan)
}

fn check_plan(
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
    let target = SocketAddr::new(
        c.common.connect_ip.unwrap_or(rs_addr.ip()),
        c.common.connect_port.unwrap_or(rs_addr.port()),
    );
    let bind = c
        .common
        .bindto
        .map(|b| SocketAddr::new(b, c.common.bind_port.unwrap_or(0)));
    let opts = crate::probes::sock_opts(&c.common);
    let probe = match &c.kind {
        CheckerKind::Tcp => Probe::Tcp(TcpProbe {
            addr: target,
            bind,
            timeout: t.connect_timeout,
            opts: opts.clone(),
        }),
        CheckerKind::Http(h) | CheckerKind::Ssl(h) => {
            let tls = matches!(c.kind, CheckerKind::Ssl(_)).then(|| Tls {
                sni: h.sni_name.clone().or_else(|| {
                    h.enable_sni
                        .then(|| h.virtualhost.clone().or(vs.virtualhost.clone()))
                        .flatten()
                }),
            });
            Probe::Http(crate::probes::http_probe(
                h,
                target,
                bind,
                opts.clone(),
                t.connect_timeout,
                vs.virtualhost.as_ref(),
                tls,
            )?)
        }
        CheckerKind::Udp {
            payload,
            require_reply,
            min_reply_length,
            max_reply_length,
        } => {
            let bytes = |h: &Option<String>, what: &str| -> Result<Option<Vec<u8>>, String> {
                match h {
                    None => Ok(None),
                    Some(h) => holdfast_check::probe::hex(h)
                        .map(Some)
                        .ok_or_else(|| format!("UDP_CHECK {what} '{h}' is not hex")),
                }
            };
            Probe::Udp(UdpProbe {
                addr: target,
                bind,
                timeout: t.connect_timeout,
                payload: bytes(payload, "payload")?.unwrap_or_default(),
                require_reply: bytes(require_reply, "require_reply")?,
                min_len: min_reply_length.map(|n| n as usize),
                max_len: max_reply_length.map(|n| n as usize),
                opts: opts.clone(),
            })
        }
        CheckerKind::Ping => Probe::Ping(PingProbe {
            addr: target.ip(),
            timeout: t.connect_timeout,
            opts: opts.clone(),
        }),
        CheckerKind::Smtp { helo_name } => Probe::Smtp(SmtpProbe {
            addr: SocketAddr::new(target.ip(), c.common.connect_port.unwrap_or(25)),
            bind,
            timeout: t.connect_timeout,
            helo: helo_name
                .clone()
                .unwrap_or_else(crate::host::short_hostname),
            opts: opts.clone(),
        }),
        CheckerKind::Dns { qtype, name } => Probe::Dns(DnsProbe {
            addr: SocketAddr::new(target.ip(), c.common.connect_port.unwrap_or(53)),
            timeout: t.connect_timeout,
            qtype: match qtype {
                None => 6,
                Some(q) => holdfast_check::probe::qtype(q)
                    .ok_or_else(|| format!("DNS_CHECK type '{q}' is not supported"))?,
            },
            name: name.clone().unwrap_or_else(|| ".".into()),
            opts: opts.clone(),
        }),
        CheckerKind::Misc(m) => Probe::Misc {
            cmd: m.path.clone(),
            timeout: m.timeout.unwrap_or(t.delay_loop),
            dynamic: m.dynamic,
            user: m.user.clone(),
        },
        CheckerKind::Mysql(m) => {
            cfg.rise = m.rise.unwrap_or(1);
            Probe::Mysql(crate::probes::mysql_probe(m, target, t.connect_timeout)?)
        }
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
            Probe::File {
                path: f.file.clone().into(),
                init: f.init_file,
                weight: weight.unwrap_or(f.weight),
                reverse: *reverse || (weight.is_none() && f.reverse),
            }
        }
    };
    Ok(CheckPlan {
        probe,
        cfg,
        log_all_failures: c
            .common
            .log_all_failures
            .unwrap_or(checker_log_all_failures),
    })
}

/// An operator's command for one real server (`holdfast enable|disable VS RS`).
#[derive(Debug)]
pub enum Admin {
    /// Let it back: clears a drain and a `readmit manual` hold.
    Enable(
        SocketAddr,
        tokio::sync::oneshot::Sender<Result<String, String>>,
    ),
    /// Drain it: weight 0, established connections kept.
    Disable(
        SocketAddr,
        tokio::sync::oneshot::Sender<Result<String, String>>,
    ),
}

/// A checker's report to its virtual server.
#[derive(Debug)]
enum CheckEv {
    /// Checker `ck` of real server `rs` came up or went down; `gated` when it went down
    /// because a MYSQL_CHECK gate failed on a healthy session (role or lag): the server is
    /// then drained (weight 0, connections kept), not removed.
    State {
        rs: usize,
        ck: usize,
        up: bool,
        gated: bool,
    },
    /// MISC_CHECK with misc_dynamic set a weight (`None`: configured weight).
    Weight { rs: usize, weight: Option<u32> },
}

/// Whether the kernel answers for IPVS in this network namespace.
pub fn ipvs_available() -> bool {
    holdfast_dataplane::ipvs::available()
}

/// What the kernel planes do at start and stop (`global_defs` and the command line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlaneOptions {
    /// `lvs_flush`: empty the kernel's table when the plane opens.
    pub flush: bool,
    /// `lvs_flush_on_stop`: empty it at stop (every service, not only holdfast's).
    pub flush_on_stop: bool,
    /// `-I` / `--dont-release-ipvs`: leave holdfast's services in the kernel at stop.
    pub keep_on_stop: bool,
    /// `lvs_timeouts` (tcp, tcpfin, udp; 0 keeps the kernel's).
    pub timeouts: Option<(u32, u32, u32)>,
    /// `lvs_sync_daemon`: the daemon's settings and the VRRP instance it follows (none:
    /// both roles run from the start).
    pub sync: Option<(SyncDaemon, Option<String>)>,
    /// `nft_table`: the nftables plane's table (default `holdfast`).
    pub nft_table: Option<String>,
    /// `nft_flowtable off`: established NAT connections stay on conntrack's path (by default
    /// they go to a flowtable where the kernel has one).
    pub nft_flowtable_off: bool,
    /// `proxy_maxconn` (default: derived from the open file limit, see
    /// [`holdfast_dataplane::proxy::default_max_connections`]).
    pub proxy_maxconn: Option<u32>,
}

impl PlaneOptions {
    /// The nftables plane's table.
    pub fn nft_table(&self) -> &str {
        self.nft_table
            .as_deref()
            .unwrap_or(holdfast_dataplane::nft::DEFAULT_TABLE)
    }
}

/// The wanted table of every virtual server, handed whole to each data plane.
pub struct Planes {
    wanted: Mutex<BTreeMap<ServiceKey, (PlaneKind, ServiceSpec)>>,
    proxy: Mutex<ProxyPlane>,
    /// Opened when the first virtual server on IPVS starts.
    ipvs: Mutex<Option<IpvsPlane>>,
    /// The nftables plane, applied on a thread of its own.
    nft: Arc<NftWorker>,
    options: PlaneOptions,
    /// Whether each real server was alive, kept across reloads so a server known dead is
    /// not put back in the table while its checkers start again.
    alive: Mutex<std::collections::HashMap<(ServiceKey, SocketAddr), bool>>,
    /// Each running virtual server's operator channel.
    admin: Mutex<std::collections::HashMap<ServiceKey, mpsc::Sender<Admin>>>,
}

impl Planes {
    /// What the kernel planes were started with.
    pub fn options(&self) -> &PlaneOptions {
        &self.options
    }

    /// Empty planes.
    pub fn new() -> Planes {
        Planes::with_options(PlaneOptions::default())
    }

    /// Empty planes; the IPVS plane, once opened, follows `options`.
    pub fn with_options(options: PlaneOptions) -> Planes {
        Planes {
            wanted: Mutex::new(BTreeMap::new()),
            proxy: Mutex::new(ProxyPlane::with_max_connections(
                options
                    .proxy_maxconn
                    .map_or_else(holdfast_dataplane::proxy::default_max_connections, |n| {
                        n as usize
                    }),
            )),
            ipvs: Mutex::new(None),
            nft: Arc::new(NftWorker::new(
                options.nft_table().to_owned(),
                timeouts(&options),
                !options.nft_flowtable_off,
            )),
            options,
            alive: Mutex::default(),
            admin: Mutex::default(),
        }
    }

    fn open_ipvs(&self, log: Logger) -> Option<std::sync::MutexGuard<'_, Option<IpvsPlane>>> {
        let mut g = self.ipvs.lock().ok()?;
        if g.is_none() {
            match IpvsPlane::open() {
                Ok(mut p) => {
                    if self.options.flush
                        && let Err(e) = p.flush()
                    {
                        log.check(&format!("IPVS: cannot flush the table (lvs_flush): {e}"));
                    }
                    if let Some((tcp, tcpfin, udp)) = self.options.timeouts
                        && let Err(e) = p.set_timeouts(tcp, tcpfin, udp)
                    {
                        log.check(&format!("IPVS: cannot set lvs_timeouts: {e}"));
                    }
                    *g = Some(p);
                }
                Err(e) => {
                    log.check(&format!("IPVS: {e}"));
                    return None;
                }
            }
        }
        Some(g)
    }

    fn set(&self, spec: Option<ServiceSpec>, key: ServiceKey, plane: PlaneKind, log: Logger) {
        let (proxy, ipvs): (Vec<ServiceSpec>, Vec<ServiceSpec>) = {
            let Ok(mut w) = self.wanted.lock() else {
                return;
            };
            match spec {
                Some(s) => w.insert(key, (plane, s)),
                None => w.remove(&key),
            };
            let pick = |k: PlaneKind| -> Vec<ServiceSpec> {
                w.values()
                    .filter(|(p, _)| *p == k)
                    .map(|(_, s)| s.clone())
                    .collect()
            };
            // The proxy's idle timeouts are IPVS's `tcp` and `tcpfin` (`lvs_timeouts`).
            let t = timeouts(&self.options);
            let mut proxy = pick(PlaneKind::Proxy);
            for s in &mut proxy {
                s.idle_timeout = t.tcp.unwrap_or(s.idle_timeout);
                s.fin_timeout = t.tcpfin.unwrap_or(s.fin_timeout);
            }
            if plane == PlaneKind::Nft {
                // Handed over while the lock is held: a later table cannot overtake it.
                self.nft.hand(pick(PlaneKind::Nft), log);
            }
            (proxy, pick(PlaneKind::Ipvs))
        };
        let report = |errs: Vec<holdfast_dataplane::DataPlaneError>| {
            for e in errs {
                log.check(&format!("Cannot set up {e}"));
            }
        };
        if plane == PlaneKind::Proxy
            && let Ok(mut p) = self.proxy.lock()
            && let Err(errs) = p.apply(&proxy)
        {
            report(errs);
        }
        if plane == PlaneKind::Ipvs
            && let Some(mut g) = self.open_ipvs(log)
            && let Some(p) = g.as_mut()
            && let Err(errs) = p.apply_changed(&ipvs, key)
        {
            report(errs);
        }
    }

    /// Starts the sync daemons `lvs_sync_daemon` asks for at start: both roles when it names
    /// no VRRP instance (a named instance's state changes choose the role later).
    pub fn start_sync(&self, log: Logger) {
        if let Some((_, None)) = &self.options.sync {
            self.sync_role(None, log);
        }
    }

    /// Whether this node holds `vips` (an instance entered MASTER, or left it): the proxy
    /// closes the connections it carries on addresses it no longer holds.
    pub fn vips_held(&self, vips: &[std::net::IpAddr], held: bool) {
        if let Ok(mut p) = self.proxy.lock() {
            p.set_held(vips, held);
        }
    }

    /// The VRRP instance `instance` entered a state: the sync daemon follows it, master
    /// with MASTER and backup otherwise (keepalived's ipvs_syncd_master/backup).
    pub fn vrrp_state(&self, instance: &str, master: bool, log: Logger) {
        if let Some((_, Some(i))) = &self.options.sync
            && i == instance
        {
            self.sync_role(Some(master), log);
        }
    }

    /// Runs the sync daemon as master (`Some(true)`), backup (`Some(false)`) or both.
    fn sync_role(&self, master: Option<bool>, log: Logger) {
        let Some((d, _)) = &self.options.sync else {
            return;
        };
        let Some(mut g) = self.open_ipvs(log) else {
            return;
        };
        let Some(p) = g.as_mut() else {
            return;
        };
        for backup in [false, true] {
            let run = master.is_none_or(|m| m != backup);
            let running = p
                .sync_daemons()
                .map(|v| v.iter().any(|(b, _, _)| *b == backup))
                .unwrap_or(false);
            let role = if backup { "backup" } else { "master" };
            if run && !running {
                match p.start_sync_daemon(backup, d) {
                    Ok(()) => log.check(&format!(
                        "Starting IPVS {role} sync daemon on {} (syncid {})",
                        d.iface, d.id
                    )),
                    Err(e) => log.check(&format!(
                        "IPVS: cannot start the {role} sync daemon on {}: {e}",
                        d.iface
                    )),
                }
            } else if !run && running {
                match p.stop_sync_daemon(backup) {
                    Ok(()) => log.check(&format!("Stopping IPVS {role} sync daemon")),
                    Err(e) => log.check(&format!("IPVS: cannot stop the {role} sync daemon: {e}")),
                }
            }
        }
    }

    /// At stop: removes holdfast's services from the kernel (or every service with
    /// `lvs_flush_on_stop`), unless told to keep them.
    pub fn release(&self, log: Logger) {
        self.nft.finish(!self.options.keep_on_stop, log);
        let Ok(mut g) = self.ipvs.lock() else {
            return;
        };
        let Some(p) = g.as_mut() else {
            return;
        };
        if self.options.sync.is_some() {
            for backup in [false, true] {
                let _ = p.stop_sync_daemon(backup);
            }
        }
        if self.options.flush_on_stop {
            if let Err(e) = p.flush() {
                log.check(&format!(
                    "IPVS: cannot flush the table (lvs_flush_on_stop): {e}"
                ));
            }
        } else if !self.options.keep_on_stop {
            for e in p.release() {
                log.check(&format!("IPVS: cannot remove {e}"));
            }
        }
    }

    /// Sends an operator command to the virtual server at `vs` and waits for its answer.
    pub async fn admin(
        &self,
        vs: SocketAddr,
        enable: bool,
        rs: SocketAddr,
    ) -> Result<String, String> {
        let tx = self
            .admin
            .lock()
            .ok()
            .and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.addr() == Some(vs))
                    .map(|(_, t)| t.clone())
            })
            .ok_or_else(|| format!("no virtual server {vs}"))?;
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        let cmd = if enable {
            Admin::Enable(rs, rtx)
        } else {
            Admin::Disable(rs, rtx)
        };
        tx.send(cmd)
            .await
            .map_err(|_| format!("virtual server {vs} is stopping"))?;
        rrx.await
            .map_err(|_| format!("virtual server {vs} is stopping"))?
    }

    /// Whether each real server's checkers are up, as last known.
    pub fn alive(&self) -> Vec<(ServiceKey, SocketAddr, bool)> {
        let mut v: Vec<(ServiceKey, SocketAddr, bool)> = self
            .alive
            .lock()
            .map(|m| m.iter().map(|((k, a), up)| (*k, *a, *up)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// [`Planes::stats`] on a blocking thread: the nftables plane's counts run `nft` and
    /// read conntrack, which the daemon's runtime must not wait for.
    pub async fn stats_off_runtime(self: &Arc<Self>) -> Vec<holdfast_dataplane::ServiceStats> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.stats())
            .await
            .unwrap_or_default()
    }

    /// Live counts for status, from every plane (blocking: see
    /// [`Planes::stats_off_runtime`]).
    pub fn stats(&self) -> Vec<holdfast_dataplane::ServiceStats> {
        let mut out = self.proxy.lock().map(|p| p.stats()).unwrap_or_default();
        if let Ok(g) = self.ipvs.lock()
            && let Some(p) = g.as_ref()
        {
            out.extend(p.stats());
        }
        let mut nft = self
            .nft
            .applied
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        // The connection counts, read from the kernel (conntrack, direct return's sets): they
        // stay 0 when it cannot be read.
        if !nft.is_empty() {
            let _ = holdfast_dataplane::nft::count_connections(&self.nft.table, &mut nft);
        }
        out.extend(nft);
        out.sort_by_key(|s| s.key);
        out
    }
}

impl Default for Planes {
    fn default() -> Planes {
        Planes::new()
    }
}

impl Drop for Planes {
    fn drop(&mut self) {
        self.nft.stop();
    }
}

/// `lvs_timeouts` of `options`, as the planes take them.
fn timeouts(options: &PlaneOptions) -> holdfast_dataplane::Timeouts {
    options
        .timeouts
        .map_or_else(holdfast_dataplane::Timeouts::default, |(tcp, fin, udp)| {
            holdfast_dataplane::Timeouts::from_secs(tcp, fin, udp)
        })
}

/// How long stopping waits for an nftables change under way before removing the table.
const NFT_FINISH: Duration = Duration::from_secs(30);

/// The nftables plane on a thread of its own. Applying a table runs `nft` (and `ip` for
/// direct return) and waits for them: on the daemon's single-threaded runtime that would stop
/// every VRRP instance's adverts meanwhile, long enough with a slow `nft` or a large table
/// for a BACKUP to take over. The thread applies the newest table handed over: one handed
/// over while another is applied replaces any still waiting, so none is applied after a newer
/// one, and a burst of changes costs one apply.
struct NftWorker {
    slot: Mutex<NftSlot>,
    changed: std::sync::Condvar,
    /// The table as last applied, for status, readable while the next apply runs.
    applied: Mutex<Vec<holdfast_dataplane::ServiceStats>>,
    /// Opened (clearing a table a crash left) by the thread's first apply.
    plane: Mutex<Option<NftPlane>>,
    table: String,
    timeouts: holdfast_dataplane::Timeouts,
    /// `nft_flowtable`.
    flowtable: bool,
}

#[derive(Default)]
struct NftSlot {
    /// The newest table not yet applied, and the logger its errors go to.
    pending: Option<(Vec<ServiceSpec>, Logger)>,
    /// The thread was started.
    started: bool,
    /// The thread is applying a table.
    busy: bool,
    /// The thread ends once idle; nothing more is handed over.
    stop: bool,
}

impl NftWorker {
    fn new(table: String, timeouts: holdfast_dataplane::Timeouts, flowtable: bool) -> NftWorker {
        NftWorker {
            slot: Mutex::default(),
            changed: std::sync::Condvar::new(),
            applied: Mutex::default(),
            plane: Mutex::new(None),
            table,
            timeouts,
            flowtable,
        }
    }

    /// Hands the thread the wanted table, starting the thread the first time (in the calling
    /// thread's network namespace, which `nft` and `ip` then run in).
    fn hand(self: &Arc<Self>, table: Vec<ServiceSpec>, log: Logger) {
        let Ok(mut g) = self.slot.lock() else {
            return;
        };
        if g.stop {
            return;
        }
        g.pending = Some((table, log));
        if !g.started {
            let me = self.clone();
            match std::thread::Builder::new()
                .name("holdfast-nft".into())
                .spawn(move || me.run())
            {
                Ok(_) => g.started = true,
                Err(e) => {
                    // No thread: apply here rather than never.
                    log.check(&format!("nftables: cannot start its thread: {e}"));
                    let pending = g.pending.take();
                    drop(g);
                    if let Some((t, log)) = pending {
                        self.apply(t, log);
                    }
                    return;
                }
            }
        }
        self.changed.notify_all();
    }

    fn run(self: Arc<Self>) {
        loop {
            let (table, log) = {
                let Ok(mut g) = self.slot.lock() else {
                    return;
                };
                loop {
                    if let Some(p) = g.pending.take() {
                        g.busy = true;
                        break p;
                    }
                    if g.stop {
                        return;
                    }
                    g = match self.changed.wait(g) {
                        Ok(g) => g,
                        Err(_) => return,
                    };
                }
            };
            self.apply(table, log);
            if let Ok(mut g) = self.slot.lock() {
                g.busy = false;
            }
            self.changed.notify_all();
        }
    }

    fn apply(&self, table: Vec<ServiceSpec>, log: Logger) {
        let Ok(mut g) = self.plane.lock() else {
            return;
        };
        if g.is_none() {
            match NftPlane::open_with_timeouts(&self.table, self.timeouts) {
                Ok(mut p) => {
                    p.set_flowtable(self.flowtable);
                    *g = Some(p);
                }
                Err(e) => log.check(&format!("nftables: cannot open table: {e}")),
            }
        }
        let Some(p) = g.as_mut() else {
            return;
        };
        let before = p.fast_path().clone();
        if let Err(errs) = p.apply(&table) {
            for e in errs {
                log.check(&format!("Cannot set up {e}"));
            }
        }
        if let Some(line) = fast_path_news(&before, p.fast_path()) {
            log.check(&line);
        }
        if let Ok(mut a) = self.applied.lock() {
            *a = p.stats();
        }
    }

    /// At stop: waits (a bounded time) for the change under way and any waiting, stops the
    /// thread, then removes the table if `remove`.
    fn finish(&self, remove: bool, log: Logger) {
        if let Ok(g) = self.slot.lock() {
            let idle = self.changed.wait_timeout_while(g, NFT_FINISH, |s| {
                s.started && (s.busy || s.pending.is_some())
            });
            if let Ok((mut g, t)) = idle {
                if t.timed_out() {
                    log.check("nftables: a table change did not finish in time at stop");
                }
                g.stop = true;
            }
        }
        self.changed.notify_all();
        let Ok(mut g) = self.plane.lock() else {
            return;
        };
        if remove
            && let Some(p) = g.as_mut()
            && let Err(e) = p.release()
        {
            log.check(&format!("nftables: cannot remove table {}: {e}", p.table()));
        }
    }

    /// Ends the thread once it is idle.
    fn stop(&self) {
        if let Ok(mut g) = self.slot.lock() {
            g.stop = true;
        }
        self.changed.notify_all();
    }
}

/// What to log when the nftables plane's flowtable fast path went from `before` to `now`.
fn fast_path_news(before: &FastPath, now: &FastPath) -> Option<String> {
    match now {
        FastPath::On(devs) if !matches!(before, FastPath::On(_)) => Some(format!(
            "nftables: established NAT connections are offloaded to a flowtable (on {})",
            devs.join(", ")
        )),
        FastPath::Unavailable(why) if !matches!(before, FastPath::Unavailable(_)) => Some(format!(
            "nftables: the kernel has no flowtable ({why}): NAT connections stay on conntrack's path"
        )),
        _ => None,
    }
}

/// Runs every virtual server until the returned handles are aborted.
pub fn start(
    plans: Vec<VsPlan>,
    planes: Arc<Planes>,
    log: Logger,
) -> Vec<tokio::task::JoinHandle<()>> {
    let on = |k: PlaneKind| plans.iter().filter(|p| p.plane == k).count();
    let (proxy, ipvs) = (on(PlaneKind::Proxy), on(PlaneKind::Ipvs));
    if proxy > 0 {
        log.check(&format!(
            "Using the proxy data plane for {proxy} virtual server(s){}",
            if ipvs_available() {
                ""
            } else {
                " (dataplane auto: the kernel has no IPVS)"
            }
        ));
    }
    if ipvs > 0 {
        log.check(&format!(
            "Using the IPVS data plane for {ipvs} virtual server(s)"
        ));
    }
    let nft = on(PlaneKind::Nft);
    if nft > 0 {
        log.check(&format!(
            "Using the nftables data plane for {nft} virtual server(s) (table inet {})",
            planes.options.nft_table()
        ));
    }
    plans
        .into_iter()
        .map(|p| tokio::spawn(run_vs(p, planes.clone(), log)))
        .collect()
}

/// Removes the virtual servers' services from the data plane.
pub fn clear(plans: &[VsPlan], planes: &Planes, log: Logger) {
    for p in plans {
        for k in p.keys() {
            planes.set(None, k, p.plane, log);
        }
    }
}

/// At reload: removes the services of `old` that no plan of `new` runs.
pub fn clear_gone(old: &[VsPlan], new: &[VsPlan], planes: &Planes, log: Logger) {
    let kept: std::collections::HashSet<ServiceKey> = new.iter().flat_map(VsPlan::keys).collect();
    for p in old {
        for k in p.keys().into_iter().filter(|k| !kept.contains(k)) {
            planes.set(None, k, p.plane, log);
        }
    }
}

/// Hands the data plane the wanted table of every service of `plan`.
fn set_wanted(plan: &VsPlan, svc: &Service, planes: &Planes, log: Logger) {
    let w = wanted(plan, svc);
    for k in plan.keys() {
        let spec = ServiceSpec {
            key: k,
            ..w.clone()
        };
        planes.set(Some(spec), k, plan.plane, log);
    }
}

/// At stop: the proxy's services close; the kernel's are released as configured
/// ([`Planes::release`]).
pub fn stop(plans: &[VsPlan], planes: &Planes, log: Logger) {
    // The proxy's services close; the kernel planes' are released below as configured.
    let proxied: Vec<VsPlan> = plans
        .iter()
        .filter(|p| p.plane == PlaneKind::Proxy)
        .cloned()
        .collect();
    clear(&proxied, planes, log);
    planes.release(log);
}

fn wanted(plan: &VsPlan, svc: &Service) -> ServiceSpec {
    let mut spec = plan.spec.clone();
    spec.dests = svc
        .wanted()
        .iter()
        .map(|d| {
            let rs = plan.servers.iter().find(|r| r.addr == d.addr);
            DestSpec {
                addr: d.addr,
                weight: d.weight,
                upper: rs.and_then(|r| r.upper),
                lower: rs.and_then(|r| r.lower),
                // Not a real server: the sorry server.
                method: rs.map_or(plan.sorry_method, |r| r.method),
                tunnel: rs.map_or(plan.sorry_tunnel, |r| r.tunnel),
            }
        })
        .collect();
    spec
}

async fn run_vs(plan: VsPlan, planes: Arc<Planes>, log: Logger) {
    let name = plan.name();
    let known = |addr: SocketAddr| -> Option<bool> {
        planes
            .alive
            .lock()
            .ok()
            .and_then(|m| m.get(&(plan.spec.key, addr)).copied())
    };
    // Each checker starts up unless alpha — or as its server was before a reload.
    let mut ups: Vec<Vec<bool>> = plan
        .servers
        .iter()
        .map(|r| {
            r.checkers
                .iter()
                .map(|c| known(r.addr).unwrap_or(!c.cfg.alpha))
                .collect()
        })
        .collect();
    let servers = plan
        .servers
        .iter()
        .zip(&ups)
        .map(|(r, u)| RealServer {
            addr: r.addr,
            weight: r.weight,
            inhibit_on_failure: r.inhibit,
            alive: u.iter().all(|x| *x),
            dynamic_weight: None,
            drained: false,
        })
        .collect();
    let mut svc = Service::new(plan.service.clone(), servers);
    if !svc.quorum_up() {
        log.check(&format!("Starting with quorum down for VS {name}"));
    }
    set_wanted(&plan, &svc, &planes, log);
    let (tx, mut rx) = mpsc::channel(64);
    let (atx, mut arx) = mpsc::channel::<Admin>(8);
    if let Ok(mut m) = planes.admin.lock() {
        m.insert(plan.spec.key, atx);
    }
    // `readmit manual`: servers that failed and wait for `holdfast enable`.
    let mut held: Vec<bool> = plan
        .servers
        .iter()
        .map(|r| r.readmit_manual && known(r.addr) == Some(false))
        .collect();
    let mut tasks = Vec::new();
    for (ri, rs) in plan.servers.iter().enumerate() {
        for (ci, ck) in rs.checkers.iter().enumerate() {
            log.check(&format!(
                "Activating healthchecker for service {} for VS {name}",
                rs_name(&plan.spec.key, &rs.addr)
            ));
            let suspend = plan
                .ha_suspend
                .then_some(plan.spec.key.addr().map(|a| a.ip()))
                .flatten();
            let ctx = CheckCtx {
                rs: ri,
                ck: ci,
                label: rs_name(&plan.spec.key, &rs.addr),
                vs: name.clone(),
                suspend,
                script_user: plan.script_user.clone(),
                seed: (ri as u64) << 32 | ci as u64,
                cell: crate::health::Registry::global().register(
                    crate::health::Owner::Checker {
                        vs: name.clone(),
                        rs: rs.addr,
                        kind: ck.probe.keyword(),
                        index: ci,
                    },
                    ups[ri][ci],
                ),
            };
            let mut ck = ck.clone();
            ck.cfg.alpha = !ups[ri][ci];
            if let Probe::File { .. } = ck.probe {
                tasks.push(tokio::spawn(file_checker(
                    ctx,
                    ck,
                    rs.weight,
                    tx.clone(),
                    log,
                )));
                continue;
            }
            tasks.push(tokio::spawn(checker(ctx, ck, tx.clone(), log)));
        }
    }
    drop(tx);
    let _guard = AbortOnDrop(tasks);
    // Per checker: down because of a MYSQL_CHECK gate. Per server: drained by the operator.
    let mut gates: Vec<Vec<bool>> = ups.iter().map(|u| vec![false; u.len()]).collect();
    let mut op_drained = vec![false; plan.servers.len()];
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
            Some(cmd) = arx.recv() => {
                let (enable, addr, reply) = match cmd {
                    Admin::Enable(a, r) => (true, a, r),
                    Admin::Disable(a, r) => (false, a, r),
                };
                let Some(i) = plan.servers.iter().position(|r| r.addr == addr) else {
                    let _ = reply.send(Err(format!("no real server {addr} in VS {name}")));
                    continue;
                };
                op_drained[i] = !enable;
                let gated = gates[i].iter().any(|g| *g);
                let mut events = svc.set_drained(i, op_drained[i] || gated);
                if enable && held[i] {
                    held[i] = false;
                    let checks_pass = ups[i].iter().zip(&gates[i]).all(|(u, g)| *u || *g);
                    events.extend(svc.set_alive(i, checks_pass));
                }
                if !events.is_empty() {
                    set_wanted(&plan, &svc, &planes, log);
                }
                for e in &events {
                    log.check(&e.line(&name, proto_of(&plan.spec.key)));
                }
                let what = if enable { "enabled" } else { "disabled (draining)" };
                let rs = rs_name(&plan.spec.key, &addr);
                log.check(&format!("{rs} of VS {name} {what} by the operator"));
                let _ = reply.send(Ok(format!("{rs} of VS {name} {what}")));
                continue;
            }
        };
        let events = match ev {
            CheckEv::State { rs, ck, up, gated } => {
                let mut was_up = up;
                if let Some(u) = ups.get_mut(rs).and_then(|v| v.get_mut(ck)) {
                    was_up = *u;
                    *u = up;
                }
                if let Some(g) = gates.get_mut(rs).and_then(|v| v.get_mut(ck)) {
                    *g = gated;
                }
                // A gate failure leaves the server alive (its session is fine) but drained.
                let checks_pass = ups
                    .get(rs)
                    .zip(gates.get(rs))
                    .is_some_and(|(u, g)| u.iter().zip(g).all(|(u, g)| *u || *g));
                let any_gate = gates.get(rs).is_some_and(|g| g.iter().any(|x| *x));
                let mut drain_events =
                    svc.set_drained(rs, any_gate || op_drained.get(rs).copied().unwrap_or(false));
                let manual = plan.servers.get(rs).is_some_and(|r| r.readmit_manual);
                if manual && !checks_pass {
                    held[rs] = true;
                }
                if held[rs] && checks_pass {
                    log.check(&format!(
                        "{} of VS {name} passes its checks but stays out until `holdfast enable` (readmit manual)",
                        plan.servers.get(rs).map(|r| rs_name(&plan.spec.key, &r.addr)).unwrap_or_default()
                    ));
                }
                let alive = checks_pass && !held[rs];
                let before = svc.servers().get(rs).map(|s| s.alive);
                if let (Some(r), Ok(mut m)) = (plan.servers.get(rs), planes.alive.lock()) {
                    m.insert((plan.spec.key, r.addr), alive);
                }
                let mut ev = svc.set_alive(rs, alive);
                drain_events.append(&mut ev);
                let ev = drain_events;
                if before != Some(alive)
                    && let Some(r) = plan.servers.get(rs)
                {
                    let cmd = if alive { &r.notify_up } else { &r.notify_down };
                    run_script(cmd.clone(), plan.script_user.clone(), log);
                    crate::fifo::real_server(&rs_name(&plan.spec.key, &r.addr), &name, alive);
                }
                if let Some(r) = plan.servers.get(rs)
                    && r.smtp_alert
                    && was_up != up
                    && (before != Some(alive) || !plan.no_checker_emails)
                    && let Some(body) = r.checkers.get(ck).and_then(|c| mail_body(&c.probe, up))
                {
                    let state = if alive { "UP" } else { "DOWN" };
                    crate::mail::alert(
                        crate::mail::Source::Checker,
                        format!(
                            "Realserver {} of virtual server {name} - {state}",
                            rs_name(&plan.spec.key, &r.addr)
                        ),
                        body,
                        log,
                    );
                }
                ev
            }
            CheckEv::Weight { rs, weight } => svc.set_dynamic_weight(rs, weight),
        };
        if !events.is_empty() {
            // The table first, then the lines: whoever reads the log sees the table changed.
            set_wanted(&plan, &svc, &planes, log);
        }
        for e in &events {
            log.check(&e.line(&name, proto_of(&plan.spec.key)));
            if plan.smtp_alert
                && let Some((state, body)) = quorum_mail(e)
            {
                crate::mail::alert(
                    crate::mail::Source::Checker,
                    format!("Virtualserver {name} - {state}"),
                    body,
                    log,
                );
            }
            match e {
                Event::QuorumGained { .. } => crate::fifo::virtual_server(&name, true),
                Event::QuorumLost { .. } => crate::fifo::virtual_server(&name, false),
                _ => {}
            }
            match e {
                Event::QuorumGained { .. } => {
                    run_script(plan.quorum_up.clone(), plan.script_user.clone(), log)
                }
                Event::QuorumLost { .. } => {
                    run_script(plan.quorum_down.clone(), plan.script_user.clone(), log)
                }
                _ => {}
            }
        }
    }
}

/// The body of the mail for a checker that came up or went down, as keepalived words it
/// (`None` for FILE_CHECK, which keepalived does not mail).
fn mail_body(probe: &Probe, up: bool) -> Option<String> {
    let ok = if up { "succeed" } else { "failed" };
    Some(match probe {
        Probe::Tcp(_) => format!("=> TCP CHECK {ok} on service <="),
        Probe::Http(_) if up => "=> CHECK succeed on service <=".into(),
        Probe::Http(_) => "=> CHECK failed on service : HTTP request failed <=".into(),
        Probe::Smtp(_) => format!("=> CHECK {ok} on service <="),
        Probe::Udp(_) => format!("=> UDP CHECK {ok} on service <="),
        Probe::Ping(_) => format!("=> ICMP CHECK {ok} on service <="),
        Probe::Dns(_) => format!("=> DNS_CHECK: {ok} on service <="),
        Probe::Mysql(_) => format!("=> MYSQL_CHECK {ok} on service <="),
        Probe::Misc { .. } => format!(
            "=> MISC CHECK {} on service <=",
            if up { "succeeded" } else { "failed" }
        ),
        Probe::File { .. } => return None,
    })
}

/// The state word and body of the mail for a quorum change, as keepalived writes them
/// (its threshold after the `=`; keepalived prints `+` for a loss too).
fn quorum_mail(e: &Event) -> Option<(&'static str, String)> {
    match e {
        Event::QuorumGained {
            quorum,
            hysteresis,
            live,
        } => Some((
            "UP",
            format!(
                "=> Gained quorum {quorum}+{hysteresis}={} <= {live} <=",
                u64::from(*quorum) + u64::from(*hysteresis)
            ),
        )),
        Event::QuorumLost {
            quorum,
            hysteresis,
            live,
        } => Some((
            "DOWN",
            format!(
                "=> Lost quorum {quorum}+{hysteresis}={} <= {live} <=",
                i64::from(*quorum) - i64::from(*hysteresis)
            ),
        )),
        _ => None,
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn run_script(cmd: Option<Command>, script_user: Option<UserSpec>, log: Logger) {
    tokio::spawn(run_script_now(cmd, script_user, log));
}

async fn run_script_now(cmd: Option<Command>, script_user: Option<UserSpec>, log: Logger) {
    if let Some(c) = cmd
        && let Err(e) = crate::script::run_notify(&c, script_user.as_ref(), "script").await
    {
        log.check(&e);
    }
}

/// `omega` at shutdown: notify_down for every live server and quorum_down for every virtual
/// server with `omega`, as keepalived runs them when it stops; waited for (60 s each at most).
pub async fn omega(plans: &[VsPlan], planes: &Planes, log: Logger) {
    for p in plans.iter().filter(|p| p.omega) {
        for r in &p.servers {
            let alive = planes
                .alive
                .lock()
                .ok()
                .and_then(|m| m.get(&(p.spec.key, r.addr)).copied())
                .unwrap_or(!r.alpha);
            if alive {
                run_script_now(r.notify_down.clone(), p.script_user.clone(), log).await;
            }
        }
        run_script_now(p.quorum_down.clone(), p.script_user.clone(), log).await;
    }
}

struct CheckCtx {
    rs: usize,
    ck: usize,
    label: String,
    vs: String,
    suspend: Option<IpAddr>,
    script_user: Option<UserSpec>,
    seed: u64,
    /// State and latency for the metrics endpoint.
    cell: Arc<crate::health::Cell>,
}

/// Whether `ip` is an address of this host (`ha_suspend`): binding it succeeds only then.
fn is_local(ip: IpAddr) -> bool {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// A sequence number for ICMP echoes and DNS ids.
fn next_seq() -> u16 {
    static SEQ: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The outcome of one probe: up or not, and a MISC_CHECK dynamic weight.
struct Outcome {
    ok: bool,
    /// The failure is a MYSQL_CHECK gate, not a dead server.
    gated: bool,
    weight: Option<Option<u32>>,
    detail: String,
}

/// Runs one probe. A MYSQL_CHECK keeps its session in `mysql` between calls.
async fn probe_once(p: &Probe, ctx: &CheckCtx, mysql: &mut Option<MysqlChecker>) -> Outcome {
    let plain = |r: Result<(), holdfast_check::probe::ProbeError>| Outcome {
        ok: r.is_ok(),
        gated: matches!(r, Err(holdfast_check::probe::ProbeError::Gate(_))),
        weight: None,
        detail: r.err().map(|e| e.to_string()).unwrap_or_default(),
    };
    match p {
        Probe::Tcp(t) => plain(holdfast_check::probe::tcp(t).await),
        Probe::Http(h) => plain(holdfast_check::probe::http(h).await),
        Probe::Udp(u) => plain(holdfast_check::probe::udp(u).await),
        Probe::Ping(q) => {
            let id = (ctx.seed as u16) ^ (std::process::id() as u16);
            plain(holdfast_check::probe::ping(q, id, next_seq()).await)
        }
        Probe::Smtp(m) => plain(holdfast_check::probe::smtp(m).await),
        Probe::Dns(d) => plain(holdfast_check::probe::dns(d, next_seq()).await),
        Probe::Mysql(m) => plain(
            mysql
                .get_or_insert_with(|| MysqlChecker::new(m.clone()))
                .check()
                .await,
        ),
        // Event-driven (`file_checker`), never polled: say so rather than pass.
        Probe::File { .. } => Outcome {
            ok: false,
            gated: false,
            weight: None,
            detail: "FILE_CHECK follows its file and is not polled".into(),
        },
        Probe::Misc {
            cmd,
            timeout,
            dynamic,
            user,
        } => {
            let run_as = match crate::script::run_as(user.as_ref(), ctx.script_user.as_ref()) {
                Ok(r) => r,
                Err(e) => {
                    return Outcome {
                        ok: false,
                        gated: false,
                        weight: None,
                        detail: e,
                    };
                }
            };
            match crate::script::run_once(cmd, *timeout, run_as).await {
                // keepalived misc_dynamic: 0 up (configured weight), 1 down, 2-255 up with
                // weight exit-2.
                Ok(0) => Outcome {
                    ok: true,
                    gated: false,
                    weight: dynamic.then_some(None),
                    detail: String::new(),
                },
                Ok(code) if *dynamic && code >= 2 => Outcome {
                    ok: true,
                    gated: false,
                    weight: Some(Some(u32::try_from(code - 2).unwrap_or(0))),
                    detail: String::new(),
                },
                Ok(code) => Outcome {
                    ok: false,
                    gated: false,
                    weight: None,
                    detail: format!("exited with status {code}"),
                },
                Err(crate::script::ScriptError::TimedOut) => Outcome {
                    ok: false,
                    gated: false,
                    weight: None,
                    detail: "timed out".into(),
                },
                Err(crate::script::ScriptError::Signal(sig)) => Outcome {
                    ok: false,
                    gated: false,
                    weight: None,
                    detail: format!("due to signal {sig}"),
                },
                Err(e) => Outcome {
                    ok: false,
                    gated: false,
                    weight: None,
                    detail: e.to_string(),
                },
            }
        }
    }
}

/// The program of a MISC_CHECK command line, as keepalived names it in log lines.
fn script_name(cmd: &str) -> String {
    crate::script::split(cmd)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// keepalived's lines for a checker coming up and going down.
/// The line `log_all_failures` logs for one failed attempt: keepalived's where it has one.
fn attempt_line(p: &Probe, ctx: &CheckCtx, detail: &str) -> String {
    let rs = &ctx.label;
    match p {
        Probe::Tcp(_) if detail.starts_with("timeout") => {
            format!("TCP connection to {rs} timeout.")
        }
        Probe::Tcp(_) => format!("TCP connection to {rs} failed."),
        Probe::Udp(_) => format!("UDP connection to {rs} failed."),
        Probe::Ping(_) => format!("ICMP connection to {rs} of {} failed.", ctx.vs),
        Probe::Misc { cmd, .. } => format!(
            "Misc check for [{rs} VS {}] by [{}] failed.",
            ctx.vs,
            script_name(cmd)
        ),
        Probe::Http(_) => format!("HTTP_CHECK on service {rs} failed: {detail}."),
        Probe::Smtp(_) => format!("SMTP_CHECK on service {rs} failed: {detail}."),
        Probe::Dns(_) => format!("DNS_CHECK on service {rs} failed: {detail}."),
        Probe::Mysql(_) => format!("MYSQL_CHECK on service {rs} failed: {detail}."),
        Probe::File { .. } => format!("FILE_CHECK on service {rs} failed: {detail}."),
    }
}

fn flip_line(p: &Probe, ctx: &CheckCtx, flip: Flip, detail: &str) -> String {
    let rs = &ctx.label;
    match (p, flip) {
        (Probe::Tcp(_), Flip::Up) => format!("TCP connection to {rs} success."),
        (Probe::Http(_), Flip::Up) => format!("Remote Web server {rs} succeed on service."),
        (Probe::Misc { cmd, .. }, Flip::Up) => format!(
            "Misc check for [{rs} VS {}] by [{}] succeeded.",
            ctx.vs,
            script_name(cmd)
        ),
        (Probe::Misc { cmd, .. }, Flip::Down { retries }) => {
            let tries = match retries {
                0 => " with retry disabled".to_string(),
                1 => " after 1 retry".to_string(),
                n => format!(" after {n} retries"),
            };
            let head = format!(
                "Misc check for [{rs} VS {}] by [{}]",
                ctx.vs,
                script_name(cmd)
            );
            if detail == "timed out" {
                format!("{head} timed out{tries}.")
            } else {
                format!("{head} failed{tries} ({detail}).")
            }
        }
        (Probe::File { .. }, Flip::Up) => format!("FILE_CHECK on service {rs} up."),
        (Probe::Mysql(_), Flip::Up) => format!("MYSQL_CHECK on service {rs} succeeded."),
        (Probe::Mysql(_), Flip::Down { retries }) if retries > 0 => {
            format!("MYSQL_CHECK on service {rs} failed after {retries} retries ({detail}).")
        }
        (Probe::Mysql(_), Flip::Down { .. }) => {
            format!("MYSQL_CHECK on service {rs} failed ({detail}).")
        }
        (Probe::Udp(_), Flip::Up) => format!("UDP connection to {rs} success."),
        (Probe::Ping(_), Flip::Up) => format!("ICMP connection to {rs} success."),
        (Probe::Smtp(_), Flip::Up) => format!("Remote SMTP server {rs} succeed on service."),
        (Probe::Dns(_), Flip::Up) => format!("DNS_CHECK ({rs}) succeeded."),
        (Probe::Dns(_), Flip::Down { .. }) => format!("DNS_CHECK ({rs}) failed: {detail}."),
        (Probe::Ping(_), Flip::Down { retries }) if retries > 0 => format!(
            "ICMP CHECK on service {rs} of {} failed after {retries} retries.",
            ctx.vs
        ),
        (Probe::Ping(_), Flip::Down { .. }) => format!("ICMP CHECK on service {rs} failed."),
        (p, Flip::Down { retries }) => {
            let kind = match p {
                Probe::Tcp(_) => "TCP_CHECK",
                Probe::Http(h) if h.tls.is_some() => "SSL_CHECK",
                Probe::Udp(_) => "UDP_CHECK",
                Probe::Smtp(_) => "SMTP_CHECK",
                Probe::File { .. } => "FILE_CHECK",
                _ => "HTTP_CHECK",
            };
            if retries > 0 {
                format!("{kind} on service {rs} failed after {retries} retries.")
            } else {
                format!("{kind} on service {rs} failed.")
            }
        }
    }
}

/// FILE_CHECK (keepalived's semantics): with weight 0 a non-zero value (a zero one with
/// `reverse`) takes the server down; otherwise value × weight (negated with `reverse`) is
/// added to the server's weight, and a sum at or below -65536 takes it down.
pub fn file_effect(value: i64, weight: i32, reverse: bool, configured: u32) -> (bool, Option<u32>) {
    if weight == 0 {
        return ((value != 0) == reverse, None);
    }
    let w = i64::from(weight) * if reverse { -1 } else { 1 };
    let delta = value.saturating_mul(w);
    if delta <= -65_536 {
        return (false, None);
    }
    let eff = (i64::from(configured) + delta).clamp(0, i64::from(u32::MAX));
    (true, Some(eff as u32))
}

async fn file_checker(
    ctx: CheckCtx,
    plan: CheckPlan,
    configured: u32,
    tx: mpsc::Sender<CheckEv>,
    log: Logger,
) {
    let probe_kind = plan.probe.clone();
    let Probe::File {
        path,
        init,
        weight,
        reverse,
    } = plan.probe
    else {
        return;
    };
    let (vtx, mut vrx) = mpsc::channel(8);
    let watcher = tokio::spawn(crate::track_file::watch(0, path, init, vtx, log));
    let _guard = AbortOnDrop(vec![watcher]);
    let mut up = !plan.cfg.alpha;
    while let Some(ev) = vrx.recv().await {
        let crate::trackers::TrackEv::Value(_, value) = ev else {
            continue;
        };
        ctx.cell.set_value(value);
        let (now_up, w) = file_effect(value, weight, reverse, configured);
        if w.is_some()
            && tx
                .send(CheckEv::Weight {
                    rs: ctx.rs,
                    weight: w,
                })
                .await
                .is_err()
        {
            return;
        }
        if now_up != up {
            up = now_up;
            let flip = if up {
                Flip::Up
            } else {
                Flip::Down { retries: 0 }
            };
            log.check(&flip_line(&probe_kind, &ctx, flip, ""));
            ctx.cell.set_up(up);
            let ev = CheckEv::State {
                rs: ctx.rs,
                ck: ctx.ck,
                up,
                gated: false,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
}

/// The most a probe is held back so that probes due close together go out together.
const SLACK: Duration = Duration::from_millis(50);

/// `due` moved later, by at most a twentieth of the wait and at most [`SLACK`], to the next
/// step of a grid all checkers share, so that probes due close together start in one turn of
/// the runtime: one wake-up for many probes instead of one each, as the kernel's timer slack
/// does for its timers. A probe is never early.
fn coalesce(due: tokio::time::Instant) -> tokio::time::Instant {
    static GRID: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let grid = tokio::time::Instant::from_std(*GRID.get_or_init(std::time::Instant::now));
    coalesce_on(grid, tokio::time::Instant::now(), due)
}

/// [`coalesce`] on the grid that starts at `grid`, at time `now`.
fn coalesce_on(
    grid: tokio::time::Instant,
    now: tokio::time::Instant,
    due: tokio::time::Instant,
) -> tokio::time::Instant {
    let step = (due.saturating_duration_since(now) / 20)
        .min(SLACK)
        .as_nanos();
    match due.checked_duration_since(grid) {
        Some(since) if step > 0 => {
            let n = since.as_nanos().div_ceil(step);
            let at = u64::try_from(n * step).unwrap_or(u64::MAX);
            grid + Duration::from_nanos(at)
        }
        _ => due,
    }
}

async fn checker(ctx: CheckCtx, plan: CheckPlan, tx: mpsc::Sender<CheckEv>, log: Logger) {
    let epoch = tokio::time::Instant::now();
    let now = || epoch.elapsed();
    let mut st = CheckerState::new(plan.cfg, now(), ctx.seed);
    let mut mysql = None;
    let mut last_weight: Option<Option<u32>> = None;
    // Whether a probe has run yet (keepalived logs a first failure as if the checker was up).
    let mut ran = false;
    // One timer for the checker's life, moved to each due time.
    let timer = tokio::time::sleep_until(epoch);
    tokio::pin!(timer);
    loop {
        timer.as_mut().reset(coalesce(epoch + st.next_due()));
        (&mut timer).await;
        if ctx.suspend.is_some_and(|ip| !is_local(ip)) {
            // ha_suspend: not the node holding the virtual address; look again later.
            let again = plan.cfg.delay_loop.min(Duration::from_secs(1));
            timer.as_mut().reset(tokio::time::Instant::now() + again);
            (&mut timer).await;
            continue;
        }
        let started = std::time::Instant::now();
        let out = probe_once(&plan.probe, &ctx, &mut mysql).await;
        ctx.cell.probed(out.ok, started.elapsed());
        if !out.ok && plan.log_all_failures && (st.is_up() || !ran) {
            log.check(&attempt_line(&plan.probe, &ctx, &out.detail));
        }
        ran = true;
        if let Some(flip) = st.observe(now(), out.ok) {
            log.check(&flip_line(&plan.probe, &ctx, flip, &out.detail));
            let up = matches!(flip, Flip::Up);
            ctx.cell.set_up(up);
            let ev = CheckEv::State {
                rs: ctx.rs,
                ck: ctx.ck,
                up,
                gated: !up && out.gated,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        if let Some(w) = out.weight
            && last_weight != Some(w)
        {
            last_weight = Some(w);
            if tx
                .send(CheckEv::Weight {
                    rs: ctx.rs,
                    weight: w,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_due_close_together_share_a_grid_step_and_are_never_early() {
        let grid = tokio::time::Instant::now();
        let now = grid + Duration::from_millis(3);
        let ms = |m: u64| now + Duration::from_millis(m);
        // A 1 s wait moves to the next 50 ms step: probes due 1 001 and 1 049 ms from now
        // (1 004 and 1 052 on the grid) go out together at 1 100 on the grid.
        let a = coalesce_on(grid, now, ms(1001));
        let b = coalesce_on(grid, now, ms(1049));
        assert_eq!(a, grid + Duration::from_millis(1050));
        assert_eq!(coalesce_on(grid, now, ms(1046)), a);
        assert_eq!(b, grid + Duration::from_millis(1100));
        // A 100 ms retry moves by at most 5 ms; a due time already past is kept.
        let r = coalesce_on(grid, now, ms(100));
        assert!(r >= ms(100) && r <= ms(105), "{r:?}");
        assert_eq!(coalesce_on(grid, now, ms(0)), ms(0));
        for m in [1, 7, 99, 250, 999, 5000] {
            let c = coalesce_on(grid, now, ms(m));
            assert!(c >= ms(m), "early: {m}");
            assert!(c <= ms(m) + SLACK, "late by more than the slack: {m}");
        }
    }

    #[test]
    fn a_virtual_server_group_runs_one_service_per_address_and_mark() {
        let text = "virtual_server_group G {\n 10.0.0.1-3 80\n 10.0.0.2 80\n fwmark 5\n}\nvirtual_server group G {\n lb_algo rr\n real_server 10.0.1.1 80 {\n  TCP_CHECK {\n   connect_timeout 1\n  }\n }\n}\n";
        let on_nft = format!("global_defs {{\n dataplane nft\n}}\n{text}");
        let cfg = holdfast_config::parse_str(&on_nft).config;
        let mut un = Vec::new();
        let plans = build(&cfg, &mut un);
        assert!(un.is_empty(), "{un:?}");
        let p = &plans[0];
        assert_eq!(p.name(), "[G]:0");
        let tcp = |a: &str| ServiceKey::tcp(a.parse().unwrap());
        let keys = p.keys();
        assert_eq!(keys.len(), 4, "{keys:?}");
        for k in [tcp("10.0.0.1:80"), tcp("10.0.0.2:80"), tcp("10.0.0.3:80")] {
            assert!(keys.contains(&k), "{k:?} in {keys:?}");
        }
        assert!(keys.contains(&ServiceKey::Fwmark { mark: 5, v6: false }));
        assert_eq!(p.spec.key, keys[0]);
        // A mark's family: `ip_family`, even with no real server to take it from.
        let v6 = "global_defs {\n dataplane nft\n}\nvirtual_server fwmark 7 {\n ip_family inet6\n lb_algo rr\n sorry_server 2001:db8::9 80\n}\n";
        let mut un = Vec::new();
        let plans = build(&holdfast_config::parse_str(v6).config, &mut un);
        assert!(un.is_empty(), "{un:?}");
        assert_eq!(plans[0].spec.key, ServiceKey::Fwmark { mark: 7, v6: true });
        // The proxy cannot run a mark; an unknown group is an error, not a silent nothing.
        let proxied = format!("global_defs {{\n dataplane proxy\n}}\n{text}");
        let mut un = Vec::new();
        assert!(build(&holdfast_config::parse_str(&proxied).config, &mut un).is_empty());
        assert!(
            un[0].contains("the proxy data plane forwards TCP services only"),
            "{un:?}"
        );
        let missing = text.replace("virtual_server group G", "virtual_server group H");
        let mut un = Vec::new();
        assert!(build(&holdfast_config::parse_str(&missing).config, &mut un).is_empty());
        assert!(un[0].contains("no virtual_server_group H"), "{un:?}");
    }

    #[test]
    fn seed_000_balances_both_replicas_with_tcp_checks() {
        let text = "virtual_server 192.168.0.100 3306 {\n delay_loop 2\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 192.168.0.11 3306 {\n  weight 1\n  TCP_CHECK {\n   connect_timeout 3\n  }\n }\n real_server 192.168.0.12 3306 {\n  weight 2\n  inhibit_on_failure\n  MISC_CHECK {\n   misc_path \"/bin/true\"\n  }\n }\n}\n";
        let cfg = holdfast_config::parse_str(text).config;
        let mut un = Vec::new();
        let plans = build(&cfg, &mut un);
        assert!(un.is_empty(), "{un:?}");
        let p = &plans[0];
        assert_eq!(p.name(), "[192.168.0.100]:tcp:3306");
        assert_eq!(p.spec.sched, Kind::Rr);
        assert_eq!(p.servers[1].weight, 2);
        assert!(p.servers[1].inhibit);
        match &p.servers[0].checkers[0].probe {
            Probe::Tcp(t) => {
                assert_eq!(t.addr, "192.168.0.11:3306".parse().unwrap());
                assert_eq!(t.timeout, Duration::from_secs(3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.servers[0].checkers[0].cfg.delay_loop,
            Duration::from_secs(2)
        );
        assert!(matches!(p.servers[1].checkers[0].probe, Probe::Misc { .. }));
    }

    #[test]
    fn what_the_proxy_cannot_run_is_reported() {
        let text = "virtual_server fwmark 1 {\n real_server 10.0.0.1 80 {\n }\n}\nvirtual_server 10.0.0.9 53 {\n protocol UDP\n real_server 10.0.0.1 53 {\n }\n}\nvirtual_server 10.0.0.9 80 {\n lb_algo twos\n real_server 10.0.0.1 80 {\n }\n}\n";
        let cfg = holdfast_config::parse_str(text).config;
        let mut un = Vec::new();
        assert!(build(&cfg, &mut un).is_empty());
        assert_eq!(un.len(), 3, "{un:?}");
    }

    #[test]
    fn the_seeds_virtual_servers_run_on_the_proxy() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seeds");
        for (file, sched, servers) in [
            ("seed000-dbms.conf", Kind::Dh, 2),
            ("seed003-lvs1.conf", Kind::Rr, 2),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let cfg = holdfast_config::parse_str(&text).config;
            let mut un = Vec::new();
            let plans = build(&cfg, &mut un);
            assert_eq!(plans.len(), 1, "{file}: {un:?}");
            assert_eq!(plans[0].spec.sched, sched, "{file}");
            assert_eq!(plans[0].servers.len(), servers, "{file}");
            assert!(
                plans[0].servers.iter().all(|r| !r.checkers.is_empty()),
                "{file}"
            );
            // Only seed 003's DR is noted: the proxy forwards it as NAT.
            assert!(
                un.iter().all(|u| u.contains("lvs_method Dr")),
                "{file}: {un:?}"
            );
        }
    }

    #[test]
    fn file_check_follows_keepalived_s_weights() {
        assert_eq!(file_effect(0, 0, false, 5), (true, None));
        assert_eq!(file_effect(3, 0, false, 5), (false, None));
        assert_eq!(file_effect(0, 0, true, 5), (false, None));
        assert_eq!(file_effect(2, 10, false, 5), (true, Some(25)));
        assert_eq!(file_effect(2, 10, true, 50), (true, Some(30)));
        assert_eq!(file_effect(-1, 1, false, 5), (true, Some(4)));
        assert_eq!(file_effect(100_000, -1, false, 5), (false, None));
    }

    #[test]
    fn real_servers_are_named_with_their_virtual_server_s_protocol() {
        let rs: SocketAddr = "10.0.0.2:53".parse().unwrap();
        let udp = ServiceKey::Addr {
            proto: Proto::Udp,
            addr: "10.0.0.100:53".parse().unwrap(),
        };
        assert_eq!(vs_name(&udp), "[10.0.0.100]:udp:53");
        assert_eq!(rs_name(&udp, &rs), "[10.0.0.2]:udp:53");
        let fwm = ServiceKey::Fwmark { mark: 3, v6: false };
        assert_eq!(vs_name(&fwm), "FWM 3");
        assert_eq!(rs_name(&fwm, &rs), "[10.0.0.2]:tcp:53");
        let v6 = ServiceKey::Addr {
            proto: Proto::Sctp,
            addr: "[fd00::1]:80".parse().unwrap(),
        };
        assert_eq!(vs_name(&v6), "[fd00::1]:sctp:80");
    }

    #[test]
    fn granularity_accepts_masks_and_prefixes() {
        assert_eq!(granularity("255.255.255.0"), Some(24));
        assert_eq!(granularity("16"), Some(16));
        assert_eq!(granularity("255.0.255.0"), None);
    }
}
