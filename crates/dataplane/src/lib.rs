//! holdfast-dataplane: where connections to a virtual service go. A [`DataPlane`] holds the
//! wanted [`ServiceTable`] — `apply` is declarative and idempotent, so a reload and a recovery
//! are the same operation — and reports per-destination counts for `holdfast status --lvs`.
//! [`proxy::ProxyPlane`] is the userspace L4 proxy.

pub mod proxy;

use std::net::SocketAddr;
use std::time::Duration;

use holdfast_lb::sched::{HashFlags, Kind};

/// A service's identity: protocol and address (TCP only for the proxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Virtual address and port.
    pub addr: SocketAddr,
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
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// Send a PROXY protocol v2 header to the destination first.
    pub proxy_protocol: bool,
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
}

/// Live counts of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStats {
    /// The service.
    pub key: ServiceKey,
    /// Scheduler.
    pub sched: Kind,
    /// Persistence.
    pub persistence: Option<Duration>,
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
        write!(f, "service {}: {}", self.key.addr, self.error)
    }
}

impl std::error::Error for DataPlaneError {}

/// A data plane: holds the wanted table.
pub trait DataPlane {
    /// Makes the plane hold exactly `wanted`: services added, removed and changed in place
    /// (established connections survive a change that keeps their destination).
    fn apply(&mut self, wanted: &ServiceTable) -> Result<(), Vec<DataPlaneError>>;
    /// Live counts.
    fn stats(&self) -> Vec<ServiceStats>;
}
