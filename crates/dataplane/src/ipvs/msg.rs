//! IPVS generic netlink messages (`linux/ip_vs.h`): the command set, an attribute tree that
//! emits and parses the family's nested attributes, and the typed service and destination
//! records the plane works with.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, Nla, NlaBuffer, NlasIterator, Parseable,
    ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use crate::{Forward, Proto, ServiceKey};

/// The family's name and version.
pub const FAMILY: &str = "IPVS";
const VERSION: u8 = 1;

/// `IPVS_CMD_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    /// Add a service.
    NewService = 1,
    /// Change a service.
    SetService = 2,
    /// Delete a service.
    DelService = 3,
    /// Get or dump services.
    GetService = 4,
    /// Add a destination.
    NewDest = 5,
    /// Change a destination.
    SetDest = 6,
    /// Delete a destination.
    DelDest = 7,
    /// Dump a service's destinations.
    GetDest = 8,
    /// Start a sync daemon.
    NewDaemon = 9,
    /// Stop a sync daemon.
    DelDaemon = 10,
    /// Dump the sync daemons.
    GetDaemon = 11,
    /// Set the connection timeouts.
    SetConfig = 12,
    /// Get the connection timeouts.
    GetConfig = 13,
    /// Get the version and table size.
    GetInfo = 15,
    /// Zero the counters.
    Zero = 16,
    /// Remove every service.
    Flush = 17,
}

/// `IPVS_CMD_ATTR_*`.
pub mod cmd_attr {
    /// Nested service.
    pub const SERVICE: u16 = 1;
    /// Nested destination.
    pub const DEST: u16 = 2;
    /// Nested sync daemon.
    pub const DAEMON: u16 = 3;
    /// TCP timeout (u32 s).
    pub const TIMEOUT_TCP: u16 = 4;
    /// TCP FIN timeout.
    pub const TIMEOUT_TCP_FIN: u16 = 5;
    /// UDP timeout.
    pub const TIMEOUT_UDP: u16 = 6;
}

/// `IPVS_SVC_ATTR_*`.
mod svc {
    pub const AF: u16 = 1;
    pub const PROTOCOL: u16 = 2;
    pub const ADDR: u16 = 3;
    pub const PORT: u16 = 4;
    pub const FWMARK: u16 = 5;
    pub const SCHED_NAME: u16 = 6;
    pub const FLAGS: u16 = 7;
    pub const TIMEOUT: u16 = 8;
    pub const NETMASK: u16 = 9;
    pub const STATS: u16 = 10;
    pub const PE_NAME: u16 = 11;
    pub const STATS64: u16 = 12;
}

/// `IPVS_DEST_ATTR_*`.
mod dest {
    pub const ADDR: u16 = 1;
    pub const PORT: u16 = 2;
    pub const FWD_METHOD: u16 = 3;
    pub const WEIGHT: u16 = 4;
    pub const U_THRESH: u16 = 5;
    pub const L_THRESH: u16 = 6;
    pub const ACTIVE_CONNS: u16 = 7;
    pub const INACT_CONNS: u16 = 8;
    pub const STATS64: u16 = 12;
    pub const ADDR_FAMILY: u16 = 11;
    pub const TUN_TYPE: u16 = 13;
    pub const TUN_PORT: u16 = 14;
    pub const TUN_FLAGS: u16 = 15;
}

/// `IPVS_DAEMON_ATTR_*`.
pub mod daemon {
    /// Master (1) or backup (2).
    pub const STATE: u16 = 1;
    /// Interface name.
    pub const MCAST_IFN: u16 = 2;
    /// Sync id.
    pub const SYNC_ID: u16 = 3;
    /// Largest sync message (u16).
    pub const SYNC_MAXLEN: u16 = 4;
    /// IPv4 multicast group (in_addr).
    pub const MCAST_GROUP: u16 = 5;
    /// IPv6 multicast group.
    pub const MCAST_GROUP6: u16 = 6;
    /// UDP port (u16).
    pub const MCAST_PORT: u16 = 7;
    /// Multicast TTL (u8).
    pub const MCAST_TTL: u16 = 8;
}

/// `IPVS_STATS_ATTR_*` (in STATS64, all u64).
mod stats {
    pub const CONNS: u16 = 1;
    pub const INPKTS: u16 = 2;
    pub const OUTPKTS: u16 = 3;
    pub const INBYTES: u16 = 4;
    pub const OUTBYTES: u16 = 5;
}

/// `IPVS_INFO_ATTR_*`.
pub mod info {
    /// Version, `(major << 16) | (minor << 8) | patch`.
    pub const VERSION: u16 = 1;
    /// Connection table size.
    pub const CONN_TAB_SIZE: u16 = 2;
}

/// `IP_VS_SVC_F_*`.
pub mod flag {
    /// Persistent service.
    pub const PERSISTENT: u32 = 0x1;
    /// Set by the kernel on hashed services.
    pub const HASHED: u32 = 0x2;
    /// One-packet scheduling (`ops`).
    pub const ONEPACKET: u32 = 0x4;
    /// Scheduler flag 1 (sh-fallback, mh-fallback).
    pub const SCHED1: u32 = 0x8;
    /// Scheduler flag 2 (sh-port, mh-port).
    pub const SCHED2: u32 = 0x10;
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// One attribute: raw bytes or nested attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attr {
    /// A leaf.
    Leaf(u16, Vec<u8>),
    /// A nested attribute.
    Nested(u16, Vec<Attr>),
}

impl Attr {
    /// A native-endian u32.
    pub fn u32(kind: u16, v: u32) -> Attr {
        Attr::Leaf(kind, v.to_ne_bytes().to_vec())
    }

    /// A u8.
    pub fn u8(kind: u16, v: u8) -> Attr {
        Attr::Leaf(kind, vec![v])
    }

    /// A native-endian u16.
    pub fn u16(kind: u16, v: u16) -> Attr {
        Attr::Leaf(kind, v.to_ne_bytes().to_vec())
    }

    /// A big-endian u16 (ports).
    pub fn be16(kind: u16, v: u16) -> Attr {
        Attr::Leaf(kind, v.to_be_bytes().to_vec())
    }

    /// A NUL-terminated string.
    pub fn string(kind: u16, v: &str) -> Attr {
        let mut b = v.as_bytes().to_vec();
        b.push(0);
        Attr::Leaf(kind, b)
    }

    /// An address in `union nf_inet_addr` (16 bytes, IPv4 in the first four).
    pub fn addr(kind: u16, ip: IpAddr) -> Attr {
        let mut b = vec![0u8; 16];
        match ip {
            IpAddr::V4(a) => b[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => b.copy_from_slice(&a.octets()),
        }
        Attr::Leaf(kind, b)
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Leaf(_, b) => b.len(),
            Attr::Nested(_, a) => a.as_slice().buffer_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::Leaf(k, _) | Attr::Nested(k, _) => *k,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::Leaf(_, b) => buffer[..b.len()].copy_from_slice(b),
            Attr::Nested(_, a) => a.as_slice().emit(buffer),
        }
    }

    fn is_nested(&self) -> bool {
        matches!(self, Attr::Nested(..))
    }
}

/// Attributes as parsed: kind and value bytes, nested ones parsed on demand with [`attrs`].
pub type Raw = Vec<(u16, Vec<u8>)>;

/// Parses a run of attributes.
pub fn attrs(buf: &[u8]) -> Result<Raw, DecodeError> {
    NlasIterator::new(buf)
        .map(|nla| {
            nla.and_then(|b: NlaBuffer<&[u8]>| {
                let d = DefaultNla::parse(&b)?;
                let mut v = vec![0u8; d.value_len()];
                d.emit_value(&mut v);
                // The nested flag is not part of the type.
                Ok((b.kind() & 0x3fff, v))
            })
        })
        .collect()
}

fn find(raw: &Raw, kind: u16) -> Option<&[u8]> {
    raw.iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v.as_slice())
}

fn get_u32(raw: &Raw, kind: u16) -> Option<u32> {
    find(raw, kind)?
        .get(..4)?
        .try_into()
        .ok()
        .map(u32::from_ne_bytes)
}

fn get_u8(raw: &Raw, kind: u16) -> Option<u8> {
    find(raw, kind)?.first().copied()
}

fn get_u16(raw: &Raw, kind: u16) -> Option<u16> {
    find(raw, kind)?
        .get(..2)?
        .try_into()
        .ok()
        .map(u16::from_ne_bytes)
}

fn get_be16(raw: &Raw, kind: u16) -> Option<u16> {
    find(raw, kind)?
        .get(..2)?
        .try_into()
        .ok()
        .map(u16::from_be_bytes)
}

fn get_u64(raw: &Raw, kind: u16) -> Option<u64> {
    find(raw, kind)?
        .get(..8)?
        .try_into()
        .ok()
        .map(u64::from_ne_bytes)
}

fn get_ip(raw: &Raw, kind: u16, v6: bool) -> Option<IpAddr> {
    let b = find(raw, kind)?;
    if v6 {
        let o: [u8; 16] = b.get(..16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(o)))
    } else {
        let o: [u8; 4] = b.get(..4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(o)))
    }
}

fn get_string(raw: &Raw, kind: u16) -> Option<String> {
    let b = find(raw, kind)?;
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    Some(String::from_utf8_lossy(&b[..end]).into_owned())
}

/// An IPVS message: a command and its top-level attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMsg {
    /// Command (`IPVS_CMD_*`).
    pub cmd: u8,
    /// Attributes to send.
    pub attrs: Vec<Attr>,
    /// Attributes received.
    pub raw: Raw,
}

impl IpvsMsg {
    /// A request.
    pub fn new(cmd: Cmd, attrs: Vec<Attr>) -> IpvsMsg {
        IpvsMsg {
            cmd: cmd as u8,
            attrs,
            raw: Vec::new(),
        }
    }
}

impl GenlFamily for IpvsMsg {
    fn family_name() -> &'static str {
        FAMILY
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        VERSION
    }
}

impl Emitable for IpvsMsg {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMsg {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(IpvsMsg {
            cmd: header.cmd,
            attrs: Vec::new(),
            raw: attrs(buf)?,
        })
    }
}

/// A service as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Identity.
    pub key: ServiceKey,
    /// Scheduler name (`wlc`, `sh`, …).
    pub sched: String,
    /// `IP_VS_SVC_F_*` (PERSISTENT, SCHED1..3; HASHED is the kernel's and ignored).
    pub flags: u32,
    /// Persistence timeout in seconds.
    pub timeout: u32,
    /// Persistence granularity: for IPv4 the mask as an address, for IPv6 a prefix length.
    pub netmask: u32,
    /// The persistence engine (`sip`), empty for none.
    pub pe: String,
}

/// Counters of a service or destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub in_pkts: u64,
    /// Packets out.
    pub out_pkts: u64,
    /// Bytes in.
    pub in_bytes: u64,
    /// Bytes out.
    pub out_bytes: u64,
}

/// A destination as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    /// Address and port.
    pub addr: SocketAddr,
    /// Forwarding method.
    pub method: Forward,
    /// Weight.
    pub weight: u32,
    /// Upper threshold (0: none).
    pub upper: u32,
    /// Lower threshold (0: none).
    pub lower: u32,
    /// The tunnel's encapsulation (meaningful with [`Forward::Tunnel`]).
    pub tunnel: crate::Tunnel,
}

/// A dumped destination with its live counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestEntry {
    /// The destination.
    pub dest: Dest,
    /// ActiveConn.
    pub active: u32,
    /// InActConn.
    pub inactive: u32,
    /// Counters.
    pub counters: Counters,
}

fn proto_number(p: Proto) -> u16 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Sctp => 132,
    }
}

fn af(v6: bool) -> u16 {
    if v6 { AF_INET6 } else { AF_INET }
}

/// The attributes naming a service (enough for DEL_SERVICE and the destination commands).
pub fn key_attrs(key: &ServiceKey) -> Vec<Attr> {
    match key {
        ServiceKey::Addr { proto, addr } => vec![
            Attr::u16(svc::AF, af(addr.is_ipv6())),
            Attr::u16(svc::PROTOCOL, proto_number(*proto)),
            Attr::addr(svc::ADDR, addr.ip()),
            Attr::be16(svc::PORT, addr.port()),
        ],
        ServiceKey::Fwmark { mark, v6 } => {
            vec![Attr::u16(svc::AF, af(*v6)), Attr::u32(svc::FWMARK, *mark)]
        }
    }
}

impl Service {
    /// The full nested service attribute (NEW_SERVICE, SET_SERVICE).
    pub fn attr(&self) -> Attr {
        let mut a = key_attrs(&self.key);
        a.push(Attr::string(svc::SCHED_NAME, &self.sched));
        // struct ip_vs_flags { flags, mask }: every flag is ours to set.
        let mut f = self.flags.to_ne_bytes().to_vec();
        f.extend_from_slice(&u32::MAX.to_ne_bytes());
        a.push(Attr::Leaf(svc::FLAGS, f));
        a.push(Attr::u32(svc::TIMEOUT, self.timeout));
        a.push(Attr::Leaf(
            svc::NETMASK,
            self.netmask.to_ne_bytes().to_vec(),
        ));
        // Left out, an edit removes the service's engine (the kernel's `ip_vs_edit_service`).
        if !self.pe.is_empty() {
            a.push(Attr::string(svc::PE_NAME, &self.pe));
        }
        Attr::Nested(cmd_attr::SERVICE, a)
    }

    /// Reads a dumped service (the nested attribute's value) and its counters.
    pub fn parse(nested: &[u8]) -> Result<(Service, Counters), DecodeError> {
        let raw = attrs(nested)?;
        let v6 = get_u16(&raw, svc::AF) == Some(AF_INET6);
        let key = if let Some(mark) = get_u32(&raw, svc::FWMARK).filter(|m| *m != 0) {
            ServiceKey::Fwmark { mark, v6 }
        } else {
            let proto = match get_u16(&raw, svc::PROTOCOL) {
                Some(6) => Proto::Tcp,
                Some(17) => Proto::Udp,
                Some(132) => Proto::Sctp,
                other => {
                    return Err(DecodeError::from(format!(
                        "IPVS service with protocol {other:?}"
                    )));
                }
            };
            let ip = get_ip(&raw, svc::ADDR, v6)
                .ok_or_else(|| DecodeError::from("IPVS service without an address"))?;
            let port = get_be16(&raw, svc::PORT).unwrap_or(0);
            ServiceKey::Addr {
                proto,
                addr: SocketAddr::new(ip, port),
            }
        };
        let flags = find(&raw, svc::FLAGS)
            .and_then(|b| b.get(..4))
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
            .unwrap_or(0)
            & !flag::HASHED;
        let service = Service {
            key,
            sched: get_string(&raw, svc::SCHED_NAME).unwrap_or_default(),
            flags,
            timeout: get_u32(&raw, svc::TIMEOUT).unwrap_or(0),
            netmask: get_u32(&raw, svc::NETMASK).unwrap_or(0),
            pe: get_string(&raw, svc::PE_NAME).unwrap_or_default(),
        };
        Ok((service, counters(&raw, svc::STATS64, svc::STATS)?))
    }
}

fn counters(raw: &Raw, stats64: u16, stats32: u16) -> Result<Counters, DecodeError> {
    if let Some(b) = find(raw, stats64) {
        let s = attrs(b)?;
        return Ok(Counters {
            conns: get_u64(&s, stats::CONNS).unwrap_or(0),
            in_pkts: get_u64(&s, stats::INPKTS).unwrap_or(0),
            out_pkts: get_u64(&s, stats::OUTPKTS).unwrap_or(0),
            in_bytes: get_u64(&s, stats::INBYTES).unwrap_or(0),
            out_bytes: get_u64(&s, stats::OUTBYTES).unwrap_or(0),
        });
    }
    // Older kernels: 32-bit connection and packet counts, 64-bit bytes.
    let Some(b) = find(raw, stats32) else {
        return Ok(Counters::default());
    };
    let s = attrs(b)?;
    Ok(Counters {
        conns: get_u32(&s, stats::CONNS).map_or(0, u64::from),
        in_pkts: get_u32(&s, stats::INPKTS).map_or(0, u64::from),
        out_pkts: get_u32(&s, stats::OUTPKTS).map_or(0, u64::from),
        in_bytes: get_u64(&s, stats::INBYTES).unwrap_or(0),
        out_bytes: get_u64(&s, stats::OUTBYTES).unwrap_or(0),
    })
}

/// `IP_VS_CONN_F_*` forwarding methods.
fn fwd_number(m: Forward) -> u32 {
    match m {
        Forward::Masq => 0,
        Forward::Tunnel => 2,
        Forward::Route => 3,
    }
}

impl Dest {
    /// The full nested destination attribute (NEW_DEST, SET_DEST).
    pub fn attr(&self) -> Attr {
        Attr::Nested(
            cmd_attr::DEST,
            vec![
                Attr::addr(dest::ADDR, self.addr.ip()),
                Attr::be16(dest::PORT, self.addr.port()),
                Attr::u16(dest::ADDR_FAMILY, af(self.addr.is_ipv6())),
                Attr::u32(dest::FWD_METHOD, fwd_number(self.method)),
                Attr::u32(dest::WEIGHT, self.weight),
                Attr::u32(dest::U_THRESH, self.upper),
                Attr::u32(dest::L_THRESH, self.lower),
            ]
            .into_iter()
            // Only a tunnel other than the default IPIP: kernels before 5.3 know no such
            // attribute.
            .chain(
                (self.method == Forward::Tunnel && self.tunnel != crate::Tunnel::default())
                    .then(|| {
                        [
                            Attr::u8(dest::TUN_TYPE, self.tunnel.kind),
                            Attr::be16(dest::TUN_PORT, self.tunnel.port),
                            Attr::u16(dest::TUN_FLAGS, self.tunnel.flags),
                        ]
                    })
                    .into_iter()
                    .flatten(),
            )
            .collect(),
        )
    }

    /// The attribute naming a destination (DEL_DEST).
    pub fn key_attr(addr: SocketAddr) -> Attr {
        Attr::Nested(
            cmd_attr::DEST,
            vec![
                Attr::addr(dest::ADDR, addr.ip()),
                Attr::be16(dest::PORT, addr.port()),
                Attr::u16(dest::ADDR_FAMILY, af(addr.is_ipv6())),
            ],
        )
    }

    /// Reads a dumped destination of a service of family `v6` (older kernels do not send the
    /// destination's own family).
    pub fn parse(nested: &[u8], v6: bool) -> Result<DestEntry, DecodeError> {
        let raw = attrs(nested)?;
        let v6 = get_u16(&raw, dest::ADDR_FAMILY).map_or(v6, |f| f == AF_INET6);
        let ip = get_ip(&raw, dest::ADDR, v6)
            .ok_or_else(|| DecodeError::from("IPVS destination without an address"))?;
        let method = match get_u32(&raw, dest::FWD_METHOD).map(|m| m & 7) {
            Some(2) => Forward::Tunnel,
            Some(3) => Forward::Route,
            _ => Forward::Masq,
        };
        Ok(DestEntry {
            dest: Dest {
                addr: SocketAddr::new(ip, get_be16(&raw, dest::PORT).unwrap_or(0)),
                method,
                weight: get_u32(&raw, dest::WEIGHT).unwrap_or(0),
                upper: get_u32(&raw, dest::U_THRESH).unwrap_or(0),
                lower: get_u32(&raw, dest::L_THRESH).unwrap_or(0),
                tunnel: if method == Forward::Tunnel {
                    crate::Tunnel {
                        kind: get_u8(&raw, dest::TUN_TYPE).unwrap_or(0),
                        port: get_be16(&raw, dest::TUN_PORT).unwrap_or(0),
                        flags: get_u16(&raw, dest::TUN_FLAGS).unwrap_or(0),
                    }
                } else {
                    crate::Tunnel::default()
                },
            },
            active: get_u32(&raw, dest::ACTIVE_CONNS).unwrap_or(0),
            inactive: get_u32(&raw, dest::INACT_CONNS).unwrap_or(0),
            counters: counters(&raw, dest::STATS64, 10)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emit(a: &[Attr]) -> Vec<u8> {
        let mut b = vec![0u8; a.buffer_len()];
        a.emit(&mut b);
        b
    }

    #[test]
    fn a_service_is_laid_out_as_ip_vs_h_says() {
        let s = Service {
            key: ServiceKey::tcp("10.0.0.1:3306".parse().unwrap()),
            sched: "rr".into(),
            flags: 0,
            timeout: 0,
            netmask: u32::MAX,
            pe: String::new(),
        };
        let b = emit(&[s.attr()]);
        // Nested SERVICE header: length, type 1 with NLA_F_NESTED (0x8000).
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 0x8001);
        assert_eq!(usize::from(u16::from_ne_bytes([b[0], b[1]])), b.len());
        let inner = attrs(&b[4..]).unwrap();
        assert_eq!(find(&inner, svc::AF), Some(&2u16.to_ne_bytes()[..]));
        assert_eq!(find(&inner, svc::PROTOCOL), Some(&6u16.to_ne_bytes()[..]));
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(find(&inner, svc::ADDR), Some(&addr[..]));
        // The port in network order: 3306 = 0x0cea.
        assert_eq!(find(&inner, svc::PORT), Some(&[0x0c, 0xea][..]));
        assert_eq!(find(&inner, svc::SCHED_NAME), Some(&b"rr\0"[..]));
        assert_eq!(find(&inner, svc::FLAGS).map(<[u8]>::len), Some(8));
        // No engine, no attribute (an edit without one removes the engine).
        assert_eq!(find(&inner, svc::PE_NAME), None);
        // And it reads back.
        let (back, _) = Service::parse(&b[4..]).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn fwmark_and_ipv6_services_and_destinations_round_trip() {
        let s = Service {
            key: ServiceKey::Fwmark { mark: 7, v6: true },
            sched: "sh".into(),
            flags: flag::PERSISTENT | flag::SCHED1,
            timeout: 360,
            netmask: 64,
            pe: "sip".into(),
        };
        let b = emit(&[s.attr()]);
        assert_eq!(
            find(&attrs(&b[4..]).unwrap(), svc::PE_NAME),
            Some(&b"sip\0"[..])
        );
        assert_eq!(Service::parse(&b[4..]).unwrap().0, s);
        let d = Dest {
            addr: "[2001:db8::2]:80".parse().unwrap(),
            method: Forward::Route,
            weight: 3,
            upper: 100,
            lower: 50,
            tunnel: crate::Tunnel::default(),
        };
        let b = emit(&[d.attr()]);
        let back = Dest::parse(&b[4..], true).unwrap();
        assert_eq!(back.dest, d);
        // A GUE tunnel with checksums keeps its encapsulation both ways; the default IPIP
        // sends no tunnel attribute at all (kernels before 5.3 have none).
        let gue = Dest {
            addr: "192.0.2.9:3306".parse().unwrap(),
            method: Forward::Tunnel,
            weight: 0,
            upper: 0,
            lower: 0,
            tunnel: crate::Tunnel {
                kind: 1,
                port: 6080,
                flags: 1,
            },
        };
        let b = emit(&[gue.attr()]);
        assert_eq!(Dest::parse(&b[4..], false).unwrap().dest, gue);
        let ipip = Dest {
            tunnel: crate::Tunnel::default(),
            ..gue
        };
        let b = emit(&[ipip.attr()]);
        let Attr::Nested(_, inner) = ipip.attr() else {
            panic!("a nested attribute");
        };
        assert!(
            !inner
                .iter()
                .any(|a| matches!(a, Attr::Leaf(k, _) if *k == dest::TUN_TYPE))
        );
        assert_eq!(Dest::parse(&b[4..], false).unwrap().dest, ipip);
    }

    #[test]
    fn counters_come_from_stats64_or_the_older_stats() {
        let s64 = Attr::Nested(
            svc::STATS64,
            vec![
                Attr::Leaf(stats::CONNS, 5u64.to_ne_bytes().to_vec()),
                Attr::Leaf(stats::INBYTES, 1000u64.to_ne_bytes().to_vec()),
            ],
        );
        let mut a = key_attrs(&ServiceKey::tcp("10.0.0.1:80".parse().unwrap()));
        a.push(s64);
        let (_, c) = Service::parse(&emit(&a)).unwrap();
        assert_eq!((c.conns, c.in_bytes), (5, 1000));
        let s32 = Attr::Nested(svc::STATS, vec![Attr::u32(stats::CONNS, 9)]);
        let mut a = key_attrs(&ServiceKey::tcp("10.0.0.1:80".parse().unwrap()));
        a.push(s32);
        assert_eq!(Service::parse(&emit(&a)).unwrap().1.conns, 9);
    }

    #[test]
    fn malformed_attributes_are_errors_not_panics() {
        // A length running past the buffer, a service with no address, an unknown protocol.
        assert!(attrs(&[200, 0, 1, 0, 1, 2]).is_err());
        assert!(
            Service::parse(&emit(&[Attr::u16(svc::AF, 2), Attr::u16(svc::PROTOCOL, 6)])).is_err()
        );
        assert!(Service::parse(&emit(&[Attr::u16(svc::PROTOCOL, 99)])).is_err());
        assert!(Dest::parse(&emit(&[Attr::u32(dest::WEIGHT, 1)]), false).is_err());
    }
}
