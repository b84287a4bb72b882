//! Reading the kernel's connection tracking table (ctnetlink, as `conntrack -L` does), for the
//! connection counts of the nftables plane's NAT services. A blocking dump with a receive
//! timeout, like the IPVS socket: it is asked for by status and metrics, off the daemon's
//! runtime.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Protocol,
    Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_NETFILTER};

use crate::Proto;

/// conntrack's TCP state for an established connection (`TCP_CONNTRACK_ESTABLISHED`).
const TCP_ESTABLISHED: u8 = 3;

/// One tracked connection, as far as the counts need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub proto: Proto,
    /// Where the client sent it (the virtual service).
    pub to: SocketAddr,
    /// Who answers it (after DNAT, the real server).
    pub from: SocketAddr,
    /// A TCP connection in conntrack's ESTABLISHED state (IPVS's ActiveConn); anything else,
    /// and every UDP flow, counts as inactive, as IPVS counts them.
    pub established: bool,
}

/// Every TCP and UDP connection conntrack tracks in this network namespace.
pub fn dump() -> io::Result<Vec<Flow>> {
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    sock.connect(&NlAddr::new(0, 0))?;
    socket2::SockRef::from(&sock).set_read_timeout(Some(Duration::from_secs(5)))?;
    let ask = NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
        ConntrackMessage::Get(Vec::new()),
    );
    crate::nl::send(&sock, ask, NLM_F_REQUEST | NLM_F_DUMP, 1)?;
    Ok(crate::nl::replies::<NetfilterMessage>(&sock, 1, true)?
        .into_iter()
        .filter_map(|m| match m.inner {
            NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) => flow(&attrs),
            _ => None,
        })
        .collect())
}

/// The addresses and ports of a tuple, and its protocol number.
fn tuple(t: &[Tuple]) -> Option<(IpAddr, IpAddr, u16, u16, Proto)> {
    let (mut src, mut dst, mut sport, mut dport, mut proto) = (None, None, None, None, None);
    for part in t {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(Protocol::Tcp) => proto = Some(Proto::Tcp),
                        ProtoTuple::Protocol(Protocol::Udp) => proto = Some(Proto::Udp),
                        ProtoTuple::Protocol(Protocol::Sctp) => proto = Some(Proto::Sctp),
                        ProtoTuple::SourcePort(p) => sport = Some(*p),
                        ProtoTuple::DestinationPort(p) => dport = Some(*p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((src?, dst?, sport?, dport?, proto?))
}

/// A connection from its attributes (`None` for protocols without ports).
fn flow(attrs: &[ConntrackAttribute]) -> Option<Flow> {
    let mut orig = None;
    let mut reply = None;
    let mut established = false;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => orig = tuple(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = tuple(t),
            ConntrackAttribute::CtaProtoInfo(info) => {
                established = info.iter().any(|i| match i {
                    ProtoInfo::TCP(t) => t
                        .iter()
                        .any(|x| matches!(x, ProtoInfoTCP::State(TCP_ESTABLISHED))),
                    _ => false,
                });
            }
            _ => {}
        }
    }
    let (_, odst, _, odport, proto) = orig?;
    let (rsrc, _, rsport, _, _) = reply?;
    Some(Flow {
        proto,
        to: SocketAddr::new(odst, odport),
        from: SocketAddr::new(rsrc, rsport),
        established: established && proto == Proto::Tcp,
    })
}
