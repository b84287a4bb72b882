//! The IPVS data plane: the kernel's own load balancer (keepalived's), driven over generic
//! netlink. `apply` reads the kernel's table, compares it with the wanted one and sends only
//! the differences; services holdfast did not create or adopt from its configuration are
//! never touched.

pub mod msg;
pub mod sock;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use holdfast_lb::sched::Kind;

use crate::{
    DataPlane, DataPlaneError, DestStats, ServiceKey, ServiceSpec, ServiceStats, ServiceTable,
};
use msg::{Attr, Cmd, Counters, Dest, DestEntry, Service, cmd_attr, flag};
use sock::Genl;

/// The kernel's IPVS, as far as holdfast owns it.
pub struct IpvsPlane {
    genl: Mutex<Genl>,
    /// Services created by holdfast or named by its configuration: the only ones it changes
    /// or deletes.
    owned: BTreeSet<ServiceKey>,
}

/// What the kernel holds for one service.
pub struct KernelService {
    /// The service.
    pub service: Service,
    /// Its counters.
    pub counters: Counters,
    /// Its destinations.
    pub dests: Vec<DestEntry>,
}

/// The kernel's connection sync daemon's settings (`lvs_sync_daemon`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncDaemon {
    /// Interface.
    pub iface: String,
    /// Sync id.
    pub id: u8,
    /// Largest message.
    pub maxlen: Option<u16>,
    /// UDP port.
    pub port: Option<u16>,
    /// Multicast TTL.
    pub ttl: Option<u8>,
    /// Multicast group.
    pub group: Option<std::net::IpAddr>,
}

/// Whether this kernel (in this network namespace) answers for IPVS.
pub fn available() -> bool {
    Genl::open().is_ok()
}

fn io_err(key: ServiceKey, error: io::Error) -> DataPlaneError {
    DataPlaneError { key, error }
}

/// The kernel's record of a wanted service.
pub fn service_of(spec: &ServiceSpec) -> Service {
    let mut flags = 0;
    if spec.flags.fallback {
        flags |= flag::SCHED1;
    }
    if spec.flags.port {
        flags |= flag::SCHED2;
    }
    if spec.one_packet {
        flags |= flag::ONEPACKET;
    }
    let timeout = match spec.persistence {
        Some(t) => {
            flags |= flag::PERSISTENT;
            u32::try_from(t.as_secs()).unwrap_or(u32::MAX)
        }
        None => 0,
    };
    let netmask = if spec.key.is_v6() {
        u32::from(spec.persistence_prefix.unwrap_or(128).min(128))
    } else {
        // The mask as an IPv4 address, in network order (ipvsadm's -M).
        match crate::prefix_mask(false, spec.persistence_prefix.unwrap_or(32)) {
            std::net::IpAddr::V4(m) => u32::from_ne_bytes(m.octets()),
            std::net::IpAddr::V6(_) => u32::MAX,
        }
    };
    Service {
        key: spec.key,
        sched: spec.sched.name().to_owned(),
        flags,
        timeout,
        netmask,
        pe: spec.persistence_engine.clone().unwrap_or_default(),
    }
}

fn dests_of(spec: &ServiceSpec) -> BTreeMap<SocketAddr, Dest> {
    spec.dests
        .iter()
        .map(|d| {
            (
                d.addr,
                Dest {
                    addr: d.addr,
                    method: d.method,
                    weight: d.weight,
                    upper: d.upper.unwrap_or(0),
                    lower: d.lower.unwrap_or(0),
                    tunnel: if d.method == crate::Forward::Tunnel {
                        d.tunnel
                    } else {
                        crate::Tunnel::default()
                    },
                },
            )
        })
        .collect()
}

impl IpvsPlane {
    /// Connects to the kernel's IPVS (an error when it has none).
    pub fn open() -> io::Result<IpvsPlane> {
        Ok(IpvsPlane {
            genl: Mutex::new(Genl::open()?),
            owned: BTreeSet::new(),
        })
    }

    fn genl(&self) -> std::sync::MutexGuard<'_, Genl> {
        self.genl.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kernel's whole table (every service, owned or not), as `ipvsadm -Ln` lists it.
    pub fn table(&self) -> io::Result<Vec<KernelService>> {
        let mut g = self.genl();
        let mut out = Vec::new();
        for raw in g.dump(Cmd::GetService, Vec::new())? {
            for (kind, nested) in raw {
                if kind != cmd_attr::SERVICE {
                    continue;
                }
                let (service, counters) = Service::parse(&nested)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let dests = dump_dests(&mut g, &service.key)?;
                out.push(KernelService {
                    service,
                    counters,
                    dests,
                });
            }
        }
        Ok(out)
    }

    /// `lvs_flush`: removes every service in the kernel, holdfast's or not.
    pub fn flush(&mut self) -> io::Result<()> {
        self.genl().exec(Cmd::Flush, Vec::new())?;
        self.owned.clear();
        Ok(())
    }

    /// Removes the services holdfast owns (at stop, unless told to keep them).
    pub fn release(&mut self) -> Vec<DataPlaneError> {
        let owned = std::mem::take(&mut self.owned);
        let mut g = self.genl();
        owned
            .into_iter()
            .filter_map(|k| {
                match g.exec(
                    Cmd::DelService,
                    vec![Attr::Nested(cmd_attr::SERVICE, msg::key_attrs(&k))],
                ) {
                    // Already gone (removed by hand): nothing to release.
                    Err(e) if e.raw_os_error() == Some(ESRCH) => None,
                    Err(e) => Some(io_err(k, e)),
                    Ok(()) => None,
                }
            })
            .collect()
    }

    /// `lvs_timeouts`: connection timeouts in seconds (0 keeps the kernel's value).
    pub fn set_timeouts(&mut self, tcp: u32, tcpfin: u32, udp: u32) -> io::Result<()> {
        self.genl().exec(
            Cmd::SetConfig,
            vec![
                Attr::u32(cmd_attr::TIMEOUT_TCP, tcp),
                Attr::u32(cmd_attr::TIMEOUT_TCP_FIN, tcpfin),
                Attr::u32(cmd_attr::TIMEOUT_UDP, udp),
            ],
        )
    }

    /// The kernel's connection timeouts (tcp, tcpfin, udp) in seconds.
    pub fn timeouts(&self) -> io::Result<(u32, u32, u32)> {
        let raw = self.genl().get(Cmd::GetConfig)?;
        let get = |k: u16| {
            raw.iter()
                .find(|(kind, _)| *kind == k)
                .and_then(|(_, v)| v.get(..4)?.try_into().ok())
                .map_or(0, u32::from_ne_bytes)
        };
        Ok((
            get(cmd_attr::TIMEOUT_TCP),
            get(cmd_attr::TIMEOUT_TCP_FIN),
            get(cmd_attr::TIMEOUT_UDP),
        ))
    }

    /// IPVS's version, as `ipvsadm` prints it (`1.2.1`), and the connection table size.
    pub fn info(&self) -> io::Result<(String, u32)> {
        let raw = self.genl().get(Cmd::GetInfo)?;
        let get = |k: u16| {
            raw.iter()
                .find(|(kind, _)| *kind == k)
                .and_then(|(_, v)| v.get(..4)?.try_into().ok())
                .map_or(0, u32::from_ne_bytes)
        };
        let v = get(msg::info::VERSION);
        Ok((
            format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff),
            get(msg::info::CONN_TAB_SIZE),
        ))
    }

    /// `lvs_sync_daemon`: starts the kernel's connection sync daemon as master (`backup`
    /// false) or backup.
    pub fn start_sync_daemon(&mut self, backup: bool, d: &SyncDaemon) -> io::Result<()> {
        let mut a = vec![
            Attr::u32(msg::daemon::STATE, if backup { 2 } else { 1 }),
            Attr::string(msg::daemon::MCAST_IFN, &d.iface),
            Attr::u32(msg::daemon::SYNC_ID, u32::from(d.id)),
        ];
        if let Some(m) = d.maxlen {
            a.push(Attr::u16(msg::daemon::SYNC_MAXLEN, m));
        }
        match d.group {
            Some(std::net::IpAddr::V4(g)) => {
                a.push(Attr::Leaf(msg::daemon::MCAST_GROUP, g.octets().to_vec()));
            }
            Some(std::net::IpAddr::V6(g)) => {
                a.push(Attr::Leaf(msg::daemon::MCAST_GROUP6, g.octets().to_vec()));
            }
            None => {}
        }
        if let Some(p) = d.port {
            a.push(Attr::u16(msg::daemon::MCAST_PORT, p));
        }
        if let Some(t) = d.ttl {
            a.push(Attr::Leaf(msg::daemon::MCAST_TTL, vec![t]));
        }
        self.genl()
            .exec(Cmd::NewDaemon, vec![Attr::Nested(cmd_attr::DAEMON, a)])
    }

    /// Stops the sync daemon in that role (no error if it was not running).
    pub fn stop_sync_daemon(&mut self, backup: bool) -> io::Result<()> {
        match self.genl().exec(
            Cmd::DelDaemon,
            vec![Attr::Nested(
                cmd_attr::DAEMON,
                vec![Attr::u32(msg::daemon::STATE, if backup { 2 } else { 1 })],
            )],
        ) {
            Err(e) if e.raw_os_error() == Some(ESRCH) => Ok(()),
            other => other,
        }
    }

    /// The sync daemons running: (backup, interface, sync id).
    pub fn sync_daemons(&self) -> io::Result<Vec<(bool, String, u32)>> {
        let mut out = Vec::new();
        for raw in self.genl().dump(Cmd::GetDaemon, Vec::new())? {
            for (kind, nested) in raw {
                if kind != cmd_attr::DAEMON {
                    continue;
                }
                let a = msg::attrs(&nested)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let u32_of = |k: u16| {
                    a.iter()
                        .find(|(kind, _)| *kind == k)
                        .and_then(|(_, v)| v.get(..4)?.try_into().ok())
                        .map_or(0, u32::from_ne_bytes)
                };
                let iface = a
                    .iter()
                    .find(|(kind, _)| *kind == msg::daemon::MCAST_IFN)
                    .map(|(_, v)| {
                        let end = v.iter().position(|c| *c == 0).unwrap_or(v.len());
                        String::from_utf8_lossy(&v[..end]).into_owned()
                    })
                    .unwrap_or_default();
                out.push((
                    u32_of(msg::daemon::STATE) == 2,
                    iface,
                    u32_of(msg::daemon::SYNC_ID),
                ));
            }
        }
        Ok(out)
    }

    /// The kernel's entry for one service, if it has one.
    fn service(&self, key: &ServiceKey) -> io::Result<Option<Service>> {
        let raw = match self.genl().get_with(
            Cmd::GetService,
            vec![Attr::Nested(cmd_attr::SERVICE, msg::key_attrs(key))],
        ) {
            Err(e) if e.raw_os_error() == Some(ESRCH) => return Ok(None),
            r => r?,
        };
        for (kind, nested) in raw {
            if kind == cmd_attr::SERVICE {
                let (service, _) = Service::parse(&nested)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                return Ok(Some(service));
            }
        }
        Ok(None)
    }

    fn apply_one(&mut self, spec: &ServiceSpec, kernel: Option<&Service>) -> io::Result<()> {
        let want = service_of(spec);
        self.owned.insert(spec.key);
        let mut g = self.genl();
        match kernel {
            None => g.exec(Cmd::NewService, vec![want.attr()])?,
            Some(k) if *k != want => g.exec(Cmd::SetService, vec![want.attr()])?,
            Some(_) => {}
        }
        let have: BTreeMap<SocketAddr, Dest> = dump_dests(&mut g, &spec.key)?
            .into_iter()
            .map(|d| (d.dest.addr, d.dest))
            .collect();
        let want = dests_of(spec);
        let svc = || Attr::Nested(cmd_attr::SERVICE, msg::key_attrs(&spec.key));
        // Removals first: a table at its size limit then has room for the additions.
        for addr in have.keys().filter(|a| !want.contains_key(a)) {
            g.exec(Cmd::DelDest, vec![svc(), Dest::key_attr(*addr)])?;
        }
        for (addr, d) in &want {
            match have.get(addr) {
                None => g.exec(Cmd::NewDest, vec![svc(), d.attr()])?,
                Some(h) if h != d => g.exec(Cmd::SetDest, vec![svc(), d.attr()])?,
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// IPVS's answer for a service or daemon that does not exist.
const ESRCH: i32 = 3;

fn dump_dests(g: &mut Genl, key: &ServiceKey) -> io::Result<Vec<DestEntry>> {
    let mut out = Vec::new();
    let svc = Attr::Nested(cmd_attr::SERVICE, msg::key_attrs(key));
    for raw in g.dump(Cmd::GetDest, vec![svc])? {
        for (kind, nested) in raw {
            if kind == cmd_attr::DEST {
                out.push(
                    Dest::parse(&nested, key.is_v6())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
                );
            }
        }
    }
    Ok(out)
}

impl DataPlane for IpvsPlane {
    fn apply(&mut self, wanted: &ServiceTable) -> Result<(), Vec<DataPlaneError>> {
        let mut errors = Vec::new();
        let kernel: BTreeMap<ServiceKey, Service> = match self.table() {
            Ok(t) => t.into_iter().map(|k| (k.service.key, k.service)).collect(),
            Err(e) => {
                return Err(wanted
                    .iter()
                    .map(|s| io_err(s.key, clone_err(&e)))
                    .collect());
            }
        };
        let keep: BTreeSet<ServiceKey> = wanted.iter().map(|s| s.key).collect();
        let gone: Vec<ServiceKey> = self.owned.difference(&keep).copied().collect();
        for key in gone {
            self.owned.remove(&key);
            if kernel.contains_key(&key)
                && let Err(e) = self.genl().exec(
                    Cmd::DelService,
                    vec![Attr::Nested(cmd_attr::SERVICE, msg::key_attrs(&key))],
                )
            {
                errors.push(io_err(key, e));
            }
        }
        for spec in wanted {
            if let Err(e) = self.apply_one(spec, kernel.get(&spec.key)) {
                errors.push(io_err(spec.key, e));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Only `changed` is compared with the kernel (its service and its destinations): with
    /// thousands of real servers a checker's flip costs one service's dump, not the table's.
    fn apply_changed(
        &mut self,
        wanted: &ServiceTable,
        changed: ServiceKey,
    ) -> Result<(), Vec<DataPlaneError>> {
        let result = match wanted.iter().find(|s| s.key == changed) {
            Some(spec) => self
                .service(&changed)
                .and_then(|kernel| self.apply_one(spec, kernel.as_ref())),
            None if self.owned.remove(&changed) => match self.genl().exec(
                Cmd::DelService,
                vec![Attr::Nested(cmd_attr::SERVICE, msg::key_attrs(&changed))],
            ) {
                Err(e) if e.raw_os_error() == Some(ESRCH) => Ok(()),
                r => r,
            },
            None => Ok(()),
        };
        result.map_err(|e| vec![io_err(changed, e)])
    }

    fn stats(&self) -> Vec<ServiceStats> {
        let Ok(table) = self.table() else {
            return Vec::new();
        };
        table
            .into_iter()
            .filter(|k| self.owned.contains(&k.service.key))
            .map(|k| ServiceStats {
                key: k.service.key,
                sched: Kind::parse(&k.service.sched).unwrap_or(Kind::Wlc),
                flags: holdfast_lb::sched::HashFlags {
                    fallback: k.service.flags & flag::SCHED1 != 0,
                    port: k.service.flags & flag::SCHED2 != 0,
                },
                persistence: (k.service.flags & flag::PERSISTENT != 0)
                    .then(|| Duration::from_secs(u64::from(k.service.timeout))),
                one_packet: k.service.flags & flag::ONEPACKET != 0,
                persistence_engine: Some(k.service.pe.clone()).filter(|p| !p.is_empty()),
                counted: crate::Counted::ALL,
                persistence_prefix: {
                    // The kernel holds an IPv6 prefix length, an IPv4 mask in network order.
                    let p = if k.service.key.is_v6() {
                        u8::try_from(k.service.netmask.min(128)).unwrap_or(128)
                    } else {
                        u8::try_from(
                            u32::from_be_bytes(k.service.netmask.to_ne_bytes()).count_ones(),
                        )
                        .unwrap_or(32)
                    };
                    let full = if k.service.key.is_v6() { 128 } else { 32 };
                    (p < full && k.service.flags & flag::PERSISTENT != 0).then_some(p)
                },
                dests: k
                    .dests
                    .iter()
                    .map(|d| DestStats {
                        addr: Some(d.dest.addr),
                        weight: d.dest.weight,
                        method: d.dest.method,
                        active: d.active,
                        inactive: d.inactive,
                        conns: d.counters.conns,
                        bytes_in: d.counters.in_bytes,
                        bytes_out: d.counters.out_bytes,
                        packets_in: d.counters.in_pkts,
                        packets_out: d.counters.out_pkts,
                    })
                    .collect(),
            })
            .collect()
    }
}

fn clone_err(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}
