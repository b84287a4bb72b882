//! holdfast-dataplane: where connections to a virtual service go. A [`DataPlane`] holds the
//! wanted [`ServiceTable`] — `apply` is declarative and idempotent, so a reload and a recovery
//! are the same operation — and reports per-destination counts for `holdfast status --lvs`.
//! [`proxy::ProxyPlane`] is the userspace L4 proxy; [`ipvs::IpvsPlane`] drives the kernel's
//! IPVS over generic netlink.

pub mod caps;
mod conntrack;
pub mod ipvs;
pub mod nft;
mod nl;
pub mod proxy;

use std::net::SocketAddr;
use std::time::Duration;

use holdfast_lb::sched::{HashFlags, Kind};

/// A service's transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// The name `ipvsadm -Ln` prints.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        }
    }

    /// The name keepalived's configuration and log lines use (`tcp`, `udp`, `sctp`).
    pub fn keyword(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// A service's identity: protocol, address and port, or a firewall mark (kernel planes only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// `virtual_server IP PORT` with its `protocol`.
    Addr {
        /// Protocol.
        proto: Proto,
        /// Virtual address and port.
        addr: SocketAddr,
    },
    /// `virtual_server fwmark N`.
    Fwmark {
        /// The mark.
        mark: u32,
        /// Whether the service is IPv6.
        v6: bool,
    },
}

impl ServiceKey {
    /// A TCP service.
    pub fn tcp(addr: SocketAddr) -> ServiceKey {
        ServiceKey::Addr {
            proto: Proto::Tcp,
            addr,
        }
    }

    /// The service address, if it has one.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            ServiceKey::Addr { addr, .. } => Some(*addr),
            ServiceKey::Fwmark { .. } => None,
        }
    }

    /// Whether the service is IPv6.
    pub fn is_v6(&self) -> bool {
        match self {
            ServiceKey::Addr { addr, .. } => addr.is_ipv6(),
            ServiceKey::Fwmark { v6, .. } => *v6,
        }
    }
}

impl std::fmt::Display for ServiceKey {
    /// As `ipvsadm -Ln` names it: `TCP  10.0.0.1:3306`'s protocol and address, `FWM  1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceKey::Addr { proto, addr } => write!(f, "{} {addr}", proto.name()),
            ServiceKey::Fwmark { mark, .. } => write!(f, "FWM {mark}"),
        }
    }
}

/// How a kernel plane forwards to a destination (`lvs_method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Forward {
    /// NAT: `Masq`.
    #[default]
    Masq,
    /// Direct routing: `Route`.
    Route,
    /// IP-in-IP tunnelling: `Tunnel`.
    Tunnel,
}

impl Forward {
    /// The name `ipvsadm -Ln` prints.
    pub fn name(self) -> &'static str {
        match self {
            Forward::Masq => "Masq",
            Forward::Route => "Route",
            Forward::Tunnel => "Tunnel",
        }
    }
}

/// One destination of a wanted service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestSpec {
    /// Address and port.
    pub addr: SocketAddr,
    /// Weight (0: no new connections, existing ones kept).
    pub weight: u32,
    /// `uthreshold`: at this many connections (active + inactive) the destination takes no
    /// more until it falls below `lthreshold` (IPVS: default three quarters of it).
    pub upper: Option<u32>,
    /// `lthreshold`.
    pub lower: Option<u32>,
    /// Forwarding method (the proxy always forwards as NAT).
    pub method: Forward,
    /// With [`Forward::Tunnel`]: the encapsulation (IPVS; default IPIP).
    pub tunnel: Tunnel,
}

/// The netmask of a prefix length (persistence granularity): `prefix` leading ones, at most
/// the family's width (32 or 128).
pub fn prefix_mask(v6: bool, prefix: u8) -> std::net::IpAddr {
    if v6 {
        let p = u32::from(prefix.min(128));
        std::net::Ipv6Addr::from(u128::MAX.checked_shl(128 - p).unwrap_or(0)).into()
    } else {
        let p = u32::from(prefix.min(32));
        std::net::Ipv4Addr::from(u32::MAX.checked_shl(32 - p).unwrap_or(0)).into()
    }
}

/// `lvs_method TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]`: IPVS's tunnel
/// encapsulation of a destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tunnel {
    /// `IP_VS_CONN_F_TUNNEL_TYPE_*`: 0 IPIP, 1 GUE, 2 GRE.
    pub kind: u8,
    /// GUE's UDP port (0 otherwise).
    pub port: u16,
    /// `IP_VS_TUNNEL_ENCAP_FLAG_*`: 0 no checksum, 1 checksum, 2 remote checksum.
    pub flags: u16,
}

impl DestSpec {
    /// A NAT destination without thresholds.
    pub fn new(addr: SocketAddr, weight: u32) -> DestSpec {
        DestSpec {
            addr,
            weight,
            upper: None,
            lower: None,
            method: Forward::Masq,
            tunnel: Tunnel::default(),
        }
    }
}

/// One wanted service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Identity.
    pub key: ServiceKey,
    /// Scheduler.
    pub sched: Kind,
    /// Scheduler flags.
    pub flags: HashFlags,
    /// `persistence_timeout`: a client keeps its server this long after its last connection.
    pub persistence: Option<Duration>,
    /// `persistence_granularity` as a prefix length (IPv4 32 / IPv6 128 when absent).
    pub persistence_prefix: Option<u8>,
    /// Destinations.
    pub dests: Vec<DestSpec>,
    /// Time to connect to a destination before trying the next.
    pub connect_timeout: Duration,
    /// A connection with no traffic either way for this long is closed (IPVS's `tcp`
    /// timeout).
    pub idle_timeout: Duration,
    /// Once one side has finished (FIN), the connection is closed after this long without
    /// traffic (IPVS's `tcpfin` timeout).
    pub fin_timeout: Duration,
    /// Send a PROXY protocol v2 header to the destination first.
    pub proxy_protocol: bool,
    /// `ops`: one-packet scheduling (each UDP datagram scheduled on its own; IPVS only).
    pub one_packet: bool,
    /// `persistence_engine`: an IPVS persistence engine's name (`sip`; IPVS only).
    pub persistence_engine: Option<String>,
}

impl ServiceSpec {
    /// A service with keepalived's defaults: no persistence, no scheduler flags, 3 s to
    /// connect to a destination, 15 minutes idle and 2 minutes idle after a FIN (IPVS's
    /// defaults), no PROXY header.
    pub fn new(key: ServiceKey, sched: Kind, dests: Vec<DestSpec>) -> ServiceSpec {
        ServiceSpec {
            key,
            sched,
            flags: HashFlags::default(),
            persistence: None,
            persistence_prefix: None,
            dests,
            connect_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(900),
            fin_timeout: Duration::from_secs(120),
            proxy_protocol: false,
            one_packet: false,
            persistence_engine: None,
        }
    }
}

/// `lvs_timeouts`: how long an idle connection is kept, as `ipvsadm --set tcp tcpfin udp`
/// sets it for IPVS (`None`: the plane's own default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// An established TCP connection.
    pub tcp: Option<Duration>,
    /// A TCP connection after a FIN.
    pub tcpfin: Option<Duration>,
    /// A UDP flow.
    pub udp: Option<Duration>,
}

impl Timeouts {
    /// From `lvs_timeouts`' seconds, where 0 keeps the default, as for IPVS.
    pub fn from_secs(tcp: u32, tcpfin: u32, udp: u32) -> Timeouts {
        let d = |s: u32| (s > 0).then(|| Duration::from_secs(u64::from(s)));
        Timeouts {
            tcp: d(tcp),
            tcpfin: d(tcpfin),
            udp: d(udp),
        }
    }

    /// Whether any timeout is set.
    pub fn any(&self) -> bool {
        self.tcp.is_some() || self.tcpfin.is_some() || self.udp.is_some()
    }
}

/// The whole wanted table.
pub type ServiceTable = Vec<ServiceSpec>;

/// Live counts of one destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestStats {
    /// Address and port.
    pub addr: Option<SocketAddr>,
    /// Current weight.
    pub weight: u32,
    /// Forwarding method.
    pub method: Forward,
    /// Connections open both ways.
    pub active: u32,
    /// Connections half closed.
    pub inactive: u32,
    /// Connections made since the service started.
    pub conns: u64,
    /// Bytes client → server.
    pub bytes_in: u64,
    /// Bytes server → client.
    pub bytes_out: u64,
    /// Packets client → server (kernel planes).
    pub packets_in: u64,
    /// Packets server → client (kernel planes).
    pub packets_out: u64,
}

/// Which of [`DestStats`]' totals a plane measures; the others read 0 and mean nothing, so
/// status and metrics leave them out rather than report a zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counted {
    /// `conns`.
    pub conns: bool,
    /// `bytes_in` and `bytes_out`.
    pub bytes: bool,
    /// `packets_in` and `packets_out`.
    pub packets: bool,
}

impl Counted {
    /// Every total (IPVS).
    pub const ALL: Counted = Counted {
        conns: true,
        bytes: true,
        packets: true,
    };
}

/// Live counts of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStats {
    /// The service.
    pub key: ServiceKey,
    /// Scheduler.
    pub sched: Kind,
    /// Scheduler flags.
    pub flags: HashFlags,
    /// Persistence.
    pub persistence: Option<Duration>,
    /// Persistence granularity as a prefix length (`None`: the whole address).
    pub persistence_prefix: Option<u8>,
    /// `ops`: one-packet scheduling.
    pub one_packet: bool,
    /// The persistence engine (IPVS).
    pub persistence_engine: Option<String>,
    /// Which totals of `dests` the plane measures.
    pub counted: Counted,
    /// Destinations in table order.
    pub dests: Vec<DestStats>,
}

/// Why applying a table failed (the rest of the table is still applied).
#[derive(Debug)]
pub struct DataPlaneError {
    /// The service that could not be set up.
    pub key: ServiceKey,
    /// Why.
    pub error: std::io::Error,
}

impl std::fmt::Display for DataPlaneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "service {}: {}", self.key, self.error)
    }
}

impl std::error::Error for DataPlaneError {}

/// A data plane: holds the wanted table.
pub trait DataPlane {
    /// Makes the plane hold exactly `wanted`: services added, removed and changed in place
    /// (established connections survive a change that keeps their destination).
    fn apply(&mut self, wanted: &ServiceTable) -> Result<(), Vec<DataPlaneError>>;
    /// Like [`DataPlane::apply`] when only the service `changed` differs from the last table
    /// applied (added, changed or removed); a plane may then look at that service alone.
    fn apply_changed(
        &mut self,
        wanted: &ServiceTable,
        changed: ServiceKey,
    ) -> Result<(), Vec<DataPlaneError>> {
        let _ = changed;
        self.apply(wanted)
    }
    /// Live counts.
    fn stats(&self) -> Vec<ServiceStats>;
}
