//! Async probes. Each is bounded by its timeout and reports why it failed, in words close to
//! keepalived's log lines.

mod dns;
mod http;
mod mysql;
mod ping;
mod smtp;
mod tcp;
mod udp;

pub use dns::{DnsProbe, dns, qtype};
pub use http::{HttpProbe, HttpVersion, RegexCheck, Tls, UrlCheck, http};
pub use mysql::{MysqlChecker, MysqlProbe, replica_ok};
pub use ping::{PingProbe, ping};
pub use smtp::{SmtpProbe, smtp};
pub use tcp::{TcpProbe, tcp};
pub use udp::{Reply, UdpProbe, udp};

/// Options a checker sets on its socket before using it: `bind_if` (`SO_BINDTODEVICE`: the
/// probe leaves by that interface only) and `fwmark` (`SO_MARK`, for policy routing and
/// firewall rules).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SockOpts {
    /// `bind_if`.
    pub device: Option<String>,
    /// `fwmark`.
    pub mark: Option<u32>,
}

impl SockOpts {
    pub(crate) fn apply(&self, s: socket2::SockRef<'_>) -> std::io::Result<()> {
        if let Some(d) = &self.device {
            s.bind_device(Some(d.as_bytes()))?;
        }
        if let Some(m) = self.mark {
            s.set_mark(m)?;
        }
        Ok(())
    }
}

use std::time::Duration;

use crate::words::Kind;

/// What a network checker probes: one value per checker, built from its configuration block
/// once, run by a [`Session`] each time the checker is due. A new checker is a file of this
/// module and a variant here.
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
    /// MYSQL_CHECK (a kept session; role and lag gates).
    Mysql(MysqlProbe),
}

impl Probe {
    /// The kind of checker, for its keyword and keepalived's lines about it.
    pub fn kind(&self) -> Kind {
        match self {
            Probe::Tcp(_) => Kind::Tcp,
            Probe::Http(h) if h.tls.is_some() => Kind::Ssl,
            Probe::Http(_) => Kind::Http,
            Probe::Udp(_) => Kind::Udp,
            Probe::Ping(_) => Kind::Ping,
            Probe::Smtp(_) => Kind::Smtp,
            Probe::Dns(_) => Kind::Dns,
            Probe::Mysql(_) => Kind::Mysql,
        }
    }
}

/// What one checker keeps between its probes of one [`Probe`]: the ICMP identifier, the
/// sequence of echo and DNS query ids, and a MYSQL_CHECK's open session.
pub struct Session {
    id: u16,
    seq: u16,
    mysql: Option<MysqlChecker>,
}

impl Session {
    /// A session whose ICMP echoes carry identifier `id` (distinct per checker, so that
    /// concurrent checkers on one host do not take each other's replies).
    pub fn new(id: u16) -> Session {
        Session {
            id,
            seq: 0,
            mysql: None,
        }
    }

    /// Runs `probe` once, within its timeout.
    pub async fn run(&mut self, probe: &Probe) -> Result<(), ProbeError> {
        self.seq = self.seq.wrapping_add(1);
        match probe {
            Probe::Tcp(t) => tcp(t).await,
            Probe::Http(h) => http(h).await,
            Probe::Udp(u) => udp(u).await,
            Probe::Ping(q) => ping(q, self.id, self.seq).await,
            Probe::Smtp(m) => smtp(m).await,
            Probe::Dns(d) => dns(d, self.seq).await,
            Probe::Mysql(m) => {
                self.mysql
                    .get_or_insert_with(|| MysqlChecker::new(m.clone()))
                    .check()
                    .await
            }
        }
    }
}

/// Why a probe failed.
#[derive(Debug)]
pub enum ProbeError {
    /// The connection failed (refused, unreachable, reset).
    Connect(std::io::Error),
    /// Nothing within the timeout.
    Timeout(Duration),
    /// The HTTP status was outside the accepted ranges.
    Status(u16),
    /// The body's MD5 digest differed.
    Digest {
        /// The digest of what was received (lower-case hex).
        got: String,
    },
    /// The body did not match the url's `regex` (or matched it with `regex_no_match`).
    Regex,
    /// The HTTP exchange failed.
    Http(String),
    /// The server answered, but not as required.
    Reply(String),
    /// The database session failed (connect, authentication, query).
    Mysql(String),
    /// The database answered, but its role or lag does not pass the gate.
    Gate(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Connect(e) => write!(f, "connection failed: {e}"),
            ProbeError::Timeout(d) => write!(f, "timeout after {:.3} s", d.as_secs_f64()),
            ProbeError::Status(s) => write!(f, "HTTP status code error ({s})"),
            ProbeError::Digest { got } => write!(f, "MD5 digest error (got {got})"),
            ProbeError::Regex => write!(f, "Regex match failed"),
            ProbeError::Http(e) => write!(f, "HTTP error: {e}"),
            ProbeError::Reply(e) => write!(f, "unexpected reply: {e}"),
            ProbeError::Mysql(e) => write!(f, "MySQL: {e}"),
            ProbeError::Gate(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// The wildcard address of `addr`'s family, port 0 (a local address for a UDP socket).
pub(crate) fn any_of(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    match addr {
        std::net::SocketAddr::V4(_) => std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        std::net::SocketAddr::V6(_) => std::net::SocketAddr::from(([0u16; 8], 0)),
    }
}

/// A connection [`open`] started: already open, or still opening.
pub(crate) enum Opening {
    /// The handshake completed within `connect(2)`, as it does for a server on the same host
    /// (loopback): nothing to wait for, and no need to register the socket with the poller.
    Open(socket2::Socket),
    /// The handshake is under way.
    Pending(socket2::Socket),
}

/// Starts a non-blocking connection to `addr` (from `bind` if given, with `opts`).
pub(crate) fn open(
    addr: std::net::SocketAddr,
    bind: Option<std::net::SocketAddr>,
    opts: &SockOpts,
) -> Result<Opening, ProbeError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )
    .map_err(ProbeError::Connect)?;
    opts.apply(socket2::SockRef::from(&sock))
        .map_err(ProbeError::Connect)?;
    if let Some(b) = bind {
        // A checker may bind an address that is not (yet) local, as keepalived allows.
        match b {
            std::net::SocketAddr::V4(_) => sock.set_freebind_v4(true),
            std::net::SocketAddr::V6(_) => sock.set_freebind_v6(true),
        }
        .map_err(ProbeError::Connect)?;
        sock.bind(&b.into()).map_err(ProbeError::Connect)?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => Ok(Opening::Open(sock)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            // On loopback the kernel has run the whole handshake before `connect` returns;
            // a peer address says so (ENOTCONN while the SYN is still out, or after a refusal).
            if sock.peer_addr().is_ok() {
                Ok(Opening::Open(sock))
            } else {
                Ok(Opening::Pending(sock))
            }
        }
        Err(e) => Err(ProbeError::Connect(e)),
    }
}

/// `sock` as a tokio stream (registered with the poller).
fn registered(sock: socket2::Socket) -> Result<tokio::net::TcpStream, ProbeError> {
    tokio::net::TcpStream::from_std(std::net::TcpStream::from(sock)).map_err(ProbeError::Connect)
}

/// Waits, within `timeout`, for a connection [`open`] left pending: it is open when the
/// socket turns writable with no error pending (what tokio's own connect does).
async fn finish(
    sock: socket2::Socket,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, ProbeError> {
    let stream = registered(sock)?;
    match tokio::time::timeout(timeout, stream.writable()).await {
        Ok(Ok(())) => match stream.take_error() {
            Ok(None) => Ok(stream),
            Ok(Some(e)) | Err(e) => Err(ProbeError::Connect(e)),
        },
        Ok(Err(e)) => Err(ProbeError::Connect(e)),
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

/// Connects to `addr` (from `bind` if given, with `opts`) within `timeout`.
pub(crate) async fn connect(
    addr: std::net::SocketAddr,
    bind: Option<std::net::SocketAddr>,
    opts: &SockOpts,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, ProbeError> {
    match open(addr, bind, opts)? {
        Opening::Open(s) => registered(s),
        Opening::Pending(s) => finish(s, timeout).await,
    }
}

/// Whether a connection to `addr` opens within `timeout`, closed at once either way. A
/// connection open when `connect(2)` returns is closed without ever reaching the poller.
pub(crate) async fn connects(
    addr: std::net::SocketAddr,
    bind: Option<std::net::SocketAddr>,
    opts: &SockOpts,
    timeout: Duration,
) -> Result<(), ProbeError> {
    match open(addr, bind, opts)? {
        Opening::Open(_) => Ok(()),
        Opening::Pending(s) => finish(s, timeout).await.map(drop),
    }
}
