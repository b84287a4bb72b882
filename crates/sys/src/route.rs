//! Routes and policy rules over rtnetlink, as keepalived installs `virtual_routes`,
//! `virtual_rules` and their `static_*` forms: one netlink request each, keepalived's flags
//! (a route is added with NLM_F_CREATE, plus NLM_F_EXCL for `add` or NLM_F_APPEND for
//! `append`; a rule with NLM_F_CREATE | NLM_F_EXCL), and deletion notifications of the routes
//! and rules carrying keepalived's protocol number, so that one removed by someone else can be
//! put back.

use std::io;
use std::net::IpAddr;

use futures_util::StreamExt;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{
    RuleAction, RuleAttribute, RuleFlags, RuleMessage, RulePortRange,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::AsyncSocket;
use rtnetlink::Handle;
use tokio::sync::mpsc;

/// How a route is added (keepalived's `prepend`, `add`, `append`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// NLM_F_CREATE.
    Prepend,
    /// NLM_F_CREATE | NLM_F_EXCL.
    Add,
    /// NLM_F_CREATE | NLM_F_APPEND.
    Append,
    /// NLM_F_CREATE | NLM_F_REPLACE: the route, whether or not it is there already
    /// (announcements, set again after a restart or reload).
    Replace,
}

/// One hop of a multipath route, its interface resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HopSpec {
    /// Gateway.
    pub via: Option<IpAddr>,
    /// Interface index.
    pub oif: Option<u32>,
    /// Weight, 1-256.
    pub weight: u16,
    /// RTNH_F_ONLINK.
    pub onlink: bool,
}

/// A route to install, its interfaces resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// IPv6 (true) or IPv4.
    pub v6: bool,
    /// RTN_* type.
    pub kind: u8,
    /// Destination and prefix length.
    pub dst: (IpAddr, u8),
    /// IPv6 source prefix (`from`).
    pub from: Option<(IpAddr, u8)>,
    /// Preferred source (`src`).
    pub src: Option<IpAddr>,
    /// Gateway.
    pub via: Option<IpAddr>,
    /// Output interface.
    pub oif: Option<u32>,
    /// Table.
    pub table: u32,
    /// Protocol (the kernel's default, boot, when `None`).
    pub protocol: Option<u8>,
    /// Scope (universe, or link for a route through an interface without a gateway, when
    /// `None`, as `ip route` picks it).
    pub scope: Option<u8>,
    /// Metric.
    pub metric: Option<u32>,
    /// TOS.
    pub tos: Option<u8>,
    /// RTNH_F_ONLINK.
    pub onlink: bool,
    /// RTAX_* metrics with their lock bit.
    pub metrics: Vec<(u16, u32, bool)>,
    /// Multipath hops.
    pub nexthops: Vec<HopSpec>,
    /// How it is added.
    pub mode: Mode,
}

/// A policy rule to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// IPv6 (true) or IPv4.
    pub v6: bool,
    /// `not`.
    pub invert: bool,
    /// `from`.
    pub from: Option<(IpAddr, u8)>,
    /// `to`.
    pub to: Option<(IpAddr, u8)>,
    /// Preference.
    pub priority: u32,
    /// FR_ACT_* action: 1 table, 2 goto, 3 nop, 6 blackhole, 7 unreachable, 8 prohibit.
    pub action: u8,
    /// The table (action 1) or the goto target (action 2).
    pub target: u32,
    /// TOS.
    pub tos: Option<u8>,
    /// fwmark and mask.
    pub fwmark: Option<(u32, Option<u32>)>,
    /// Input interface name.
    pub iif: Option<String>,
    /// Output interface name.
    pub oif: Option<String>,
    /// suppress_prefixlength.
    pub suppress_prefixlen: Option<u32>,
    /// IP protocol.
    pub ipproto: Option<u8>,
    /// Source port range.
    pub sport: Option<(u16, u16)>,
    /// Destination port range.
    pub dport: Option<(u16, u16)>,
    /// Protocol (FRA_PROTOCOL).
    pub protocol: Option<u8>,
}

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// The route's message, as for adding it or deleting it.
fn route_message(r: &RouteSpec) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(r.v6);
    m.header.destination_prefix_length = r.dst.1;
    m.header.tos = r.tos.unwrap_or(0);
    m.header.kind = RouteType::from(r.kind);
    m.header.protocol = RouteProtocol::from(r.protocol.unwrap_or(3));
    // `ip route`'s choice: link scope for a unicast route through an interface without a
    // gateway, host scope for local routes, universe otherwise.
    let scope = r.scope.unwrap_or(
        if r.kind == 1 && r.via.is_none() && r.nexthops.is_empty() && r.oif.is_some() {
            253
        } else if r.kind == 2 {
            254
        } else {
            0
        },
    );
    m.header.scope = RouteScope::from(scope);
    m.header.table = u8::try_from(r.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    if r.table > 255 || m.header.table == RouteHeader::RT_TABLE_UNSPEC {
        m.attributes.push(RouteAttribute::Table(r.table));
    }
    if r.dst.1 > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(r.dst.0)));
    }
    if let Some((a, l)) = r.from {
        m.header.source_prefix_length = l;
        m.attributes
            .push(RouteAttribute::Source(RouteAddress::from(a)));
    }
    if let Some(a) = r.src {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(a)));
    }
    if let Some(a) = r.via {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(a)));
    }
    if let Some(i) = r.oif {
        m.attributes.push(RouteAttribute::Oif(i));
    }
    if let Some(p) = r.metric {
        m.attributes.push(RouteAttribute::Priority(p));
    }
    if r.onlink {
        m.header.flags |= netlink_packet_route::route::RouteFlags::Onlink;
    }
    if !r.metrics.is_empty() {
        let mut locks = 0u32;
        let mut ms = Vec::new();
        for &(kind, v, lock) in &r.metrics {
            if lock {
                locks |= 1 << kind;
            }
            ms.push(match kind {
                2 => RouteMetric::Mtu(v),
                3 => RouteMetric::Window(v),
                6 => RouteMetric::SsThresh(v),
                7 => RouteMetric::Cwnd(v),
                8 => RouteMetric::Advmss(v),
                9 => RouteMetric::Reordering(v),
                10 => RouteMetric::Hoplimit(v),
                11 => RouteMetric::InitCwnd(v),
                _ => RouteMetric::InitRwnd(v),
            });
        }
        if locks != 0 {
            ms.insert(0, RouteMetric::Lock(locks));
        }
        m.attributes.push(RouteAttribute::Metrics(ms));
    }
    if !r.nexthops.is_empty() {
        let hops = r
            .nexthops
            .iter()
            .map(|h| {
                let mut nh = RouteNextHop::default();
                nh.hops = u8::try_from(h.weight.saturating_sub(1)).unwrap_or(u8::MAX);
                nh.interface_index = h.oif.unwrap_or(0);
                if h.onlink {
                    nh.flags |= RouteNextHopFlags::Onlink;
                }
                if let Some(a) = h.via {
                    nh.attributes
                        .push(RouteAttribute::Gateway(RouteAddress::from(a)));
                }
                nh
            })
            .collect();
        m.attributes.push(RouteAttribute::MultiPath(hops));
    }
    m
}

fn rule_message(r: &RuleSpec) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = family(r.v6);
    m.header.tos = r.tos.unwrap_or(0);
    m.header.action = match r.action {
        1 => RuleAction::ToTable,
        2 => RuleAction::Goto,
        3 => RuleAction::Nop,
        6 => RuleAction::Blackhole,
        7 => RuleAction::Unreachable,
        _ => RuleAction::Prohibit,
    };
    if r.invert {
        m.header.flags |= RuleFlags::Invert;
    }
    if r.action == 1 {
        m.header.table = u8::try_from(r.target).unwrap_or(0);
        m.attributes.push(RuleAttribute::Table(r.target));
    }
    if r.action == 2 {
        m.attributes.push(RuleAttribute::Goto(r.target));
    }
    m.attributes.push(RuleAttribute::Priority(r.priority));
    if let Some((a, l)) = r.from {
        m.header.src_len = l;
        if l > 0 {
            m.attributes.push(RuleAttribute::Source(a));
        }
    }
    if let Some((a, l)) = r.to {
        m.header.dst_len = l;
        if l > 0 {
            m.attributes.push(RuleAttribute::Destination(a));
        }
    }
    if let Some((mark, mask)) = r.fwmark {
        m.attributes.push(RuleAttribute::FwMark(mark));
        if let Some(k) = mask {
            m.attributes.push(RuleAttribute::FwMask(k));
        }
    }
    if let Some(i) = &r.iif {
        m.attributes.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(o) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(o.clone()));
    }
    if let Some(p) = r.suppress_prefixlen {
        m.attributes.push(RuleAttribute::SuppressPrefixLen(p));
    }
    if let Some(p) = r.ipproto {
        m.attributes.push(RuleAttribute::IpProtocol(p.into()));
    }
    if let Some((start, end)) = r.sport {
        m.attributes
            .push(RuleAttribute::SourcePortRange(RulePortRange { start, end }));
    }
    if let Some((start, end)) = r.dport {
        m.attributes
            .push(RuleAttribute::DestinationPortRange(RulePortRange {
                start,
                end,
            }));
    }
    if let Some(p) = r.protocol {
        m.attributes
            .push(RuleAttribute::Protocol(RouteProtocol::from(p)));
    }
    m
}

impl RouteSpec {
    /// A unicast route to `dst` through the loopback interface (its index `lo`, when known:
    /// a route to remove matches without it) in `table`, with `protocol`: what a BGP speaker
    /// that imports the table announces. Link scope is given on removal too, where the kernel
    /// matches an IPv4 route's scope.
    pub fn through_lo(dst: (IpAddr, u8), table: u32, lo: Option<u32>, protocol: u8) -> RouteSpec {
        RouteSpec {
            v6: dst.0.is_ipv6(),
            kind: 1, // RTN_UNICAST
            dst,
            from: None,
            src: None,
            via: None,
            oif: lo,
            table,
            protocol: Some(protocol),
            scope: Some(253), // RT_SCOPE_LINK
            metric: None,
            tos: None,
            onlink: false,
            metrics: Vec::new(),
            nexthops: Vec::new(),
            mode: Mode::Replace,
        }
    }
}

/// Sends one request and waits for its acknowledgement; the kernel's refusal is the error.
async fn request(handle: &Handle, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut handle = handle.clone();
    let mut resp = handle
        .request(req)
        .map_err(|e| io::Error::other(e.to_string()))?;
    while let Some(m) = resp.next().await {
        if let NetlinkPayload::Error(e) = m.payload
            && let Some(code) = e.code
        {
            return Err(io::Error::from_raw_os_error(-code.get()));
        }
    }
    Ok(())
}

/// Installs a route with keepalived's flags.
pub async fn add_route(handle: &Handle, r: &RouteSpec) -> io::Result<()> {
    let flags = NLM_F_CREATE
        | match r.mode {
            Mode::Prepend => 0,
            Mode::Add => NLM_F_EXCL,
            Mode::Append => NLM_F_APPEND,
            Mode::Replace => NLM_F_REPLACE,
        };
    request(
        handle,
        RouteNetlinkMessage::NewRoute(route_message(r)),
        flags,
    )
    .await
}

/// Removes a route; one that is not there is not an error.
pub async fn del_route(handle: &Handle, r: &RouteSpec) -> io::Result<()> {
    match request(handle, RouteNetlinkMessage::DelRoute(route_message(r)), 0).await {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other,
    }
}

/// Installs a rule (an identical one already there is not an error).
pub async fn add_rule(handle: &Handle, r: &RuleSpec) -> io::Result<()> {
    match request(
        handle,
        RouteNetlinkMessage::NewRule(rule_message(r)),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .await
    {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Removes a rule; one that is not there is not an error.
pub async fn del_rule(handle: &Handle, r: &RuleSpec) -> io::Result<()> {
    match request(handle, RouteNetlinkMessage::DelRule(rule_message(r)), 0).await {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// What a deletion notification names, to match against the routes and rules installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// A route: family, destination and prefix, table, metric.
    Route {
        /// IPv6.
        v6: bool,
        /// Destination (unspecified for a default route).
        dst: Option<IpAddr>,
        /// Prefix length.
        len: u8,
        /// Table.
        table: u32,
        /// Metric.
        metric: Option<u32>,
    },
    /// A rule: family and preference.
    Rule {
        /// IPv6.
        v6: bool,
        /// Preference.
        priority: u32,
    },
}

impl RouteSpec {
    /// Whether a deletion notification is of this route.
    pub fn is(&self, d: &Deleted) -> bool {
        match d {
            Deleted::Route {
                v6,
                dst,
                len,
                table,
                metric,
            } => {
                *v6 == self.v6
                    && *len == self.dst.1
                    && (*len == 0 || *dst == Some(self.dst.0))
                    && *table == self.table
                    && (metric.unwrap_or(0) == self.metric.unwrap_or(0))
            }
            Deleted::Rule { .. } => false,
        }
    }
}

impl RuleSpec {
    /// Whether a deletion notification is of this rule.
    pub fn is(&self, d: &Deleted) -> bool {
        matches!(d, Deleted::Rule { v6, priority } if *v6 == self.v6 && *priority == self.priority)
    }
}

/// Deletions of routes and rules carrying protocol `proto` (keepalived's, 18), from any
/// table, until `tx` closes.
pub async fn watch_deletions(proto: u8, tx: mpsc::Sender<Deleted>) -> io::Result<()> {
    use rtnetlink::constants::{RTMGRP_IPV4_ROUTE, RTMGRP_IPV4_RULE, RTMGRP_IPV6_ROUTE};
    // RTNLGRP_IPV6_RULE (19) has no RTMGRP_ constant: its bit is 1 << 18.
    const RTMGRP_IPV6_RULE: u32 = 1 << 18;
    let (mut conn, _handle, mut messages) = rtnetlink::new_connection()?;
    let groups = RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE;
    conn.socket_mut()
        .socket_mut()
        .bind(&netlink_sys::SocketAddr::new(0, groups))?;
    let task = tokio::spawn(conn);
    while let Some((msg, _)) = messages.next().await {
        let d = match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(m))
                if m.header.protocol == RouteProtocol::from(proto) =>
            {
                let mut table = u32::from(m.header.table);
                let mut dst = None;
                let mut metric = None;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Table(t) => table = *t,
                        RouteAttribute::Destination(RouteAddress::Inet(a)) => {
                            dst = Some(IpAddr::V4(*a))
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(a)) => {
                            dst = Some(IpAddr::V6(*a))
                        }
                        RouteAttribute::Priority(p) => metric = Some(*p),
                        _ => {}
                    }
                }
                Deleted::Route {
                    v6: m.header.address_family == AddressFamily::Inet6,
                    dst,
                    len: m.header.destination_prefix_length,
                    table,
                    metric,
                }
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRule(m))
                if m.attributes.iter().any(
                    |a| matches!(a, RuleAttribute::Protocol(p) if *p == RouteProtocol::from(proto)),
                ) =>
            {
                let priority = m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RuleAttribute::Priority(p) => Some(*p),
                        _ => None,
                    })
                    .unwrap_or(0);
                Deleted::Rule {
                    v6: m.header.family == AddressFamily::Inet6,
                    priority,
                }
            }
            _ => continue,
        };
        if tx.send(d).await.is_err() {
            break;
        }
    }
    task.abort();
    Ok(())
}
