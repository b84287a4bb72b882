//! The nftables data plane: NAT in the kernel without IPVS. holdfast owns one `inet` table
//! (default `holdfast`) with a `nat` chain at prerouting (clients elsewhere) and at output
//! (clients on this host). Each virtual service is one rule: it matches the service's address,
//! protocol and port (or its fwmark) and DNATs to a destination picked by an expression the
//! kernel evaluates per new connection — `numgen inc` over a weighted list for rr/wrr, `jhash`
//! of the source (sh) or destination (dh) over IPVS's 256-bucket table, `jhash` over the
//! Maglev table for mh, the heaviest server for fo. Conntrack keeps each connection on its
//! destination, so a membership change (one atomic `nft` transaction replacing the table's
//! rules) never moves established connections. The table goes at stop, and a table left by a
//! crash is removed when the plane opens.
//!
//! Persistence (`persistence_timeout`, `persistence_granularity`): one dynamic set per
//! destination holds the clients (source addresses, masked to the granularity) it serves,
//! with the persistence timeout; a client found in a live destination's set goes there again
//! (refreshing its entry), any other is scheduled as usual by a verdict map that jumps to the
//! chosen destination's chain, which records the client in that destination's set and DNATs.
//! A destination that leaves (removed, or weight 0) takes its set with it, so its clients are
//! scheduled afresh. The timeout runs from a client's last new connection.
//!
//! Direct return (LVS's DR) uses a second table, `netdev` of the same name, with an ingress
//! chain on every interface but loopback: per destination, a timed set of the connections it
//! serves (client address and port) and a chain that records the connection and forwards the
//! packet unchanged to the destination's MAC address (`fwd ip to … device …`). Known
//! connections go back to their destination (a weight-0 one keeps them); new ones are
//! scheduled as above through a verdict map. No conntrack is involved. A TCP connection's
//! entry keeps IPVS's timeouts by what the client's packets say: established (`tcp`, 15 min)
//! refreshed by every packet, 10 s after a reset, `tcpfin` (2 min) after a FIN — a second set
//! per destination holds the closing connections so that the client's last ACK does not make
//! one established again. Every set holds up to `SET_SIZE` (1 048 576) entries (nft's own default,
//! 65 535, would refuse new connections once that many had been seen within the timeout).
//!
//! With persistence, direct return also keeps, per live destination, a timed set of its
//! clients (`q_`, source address masked to the granularity) and a chain (`r_`) that refreshes
//! the client's entry before the connection's chain: a new connection of a known client goes
//! back to its destination, any other is scheduled through `r_`.
//!
//! Established NAT connections take the kernel's flowtable fast path where the kernel has one
//! (`nf_flow_table`; `nft_flowtable off` turns it off): a flowtable `ft` on every interface but
//! loopback and a `forward` chain that offloads each of holdfast's NAT connections (matched by
//! its original destination, the service) once conntrack has seen it established. Its
//! packets are then NATed and sent on from the ingress hook, without conntrack's per-packet
//! work or the forwarding path; a FIN or RST gives the connection back to conntrack. This
//! also means they skip every table's forward hook, as IPVS's do in part. A kernel without it
//! answers the first attempt with an error, and the plane runs on without
//! ([`NftPlane::fast_path`] says which).
//!
//! Schedulers that need live connection counts (lc, wlc, sed, nq, lblc, lblcr, ovf), TUN,
//! DR mixed with NAT, and DR for fwmark services are refused ([`unsupported`]).

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;

use holdfast_lb::sched::{self, Dest, Kind};
use nftables::batch::Batch;
use nftables::expr::{CT, CTDir, Payload, PayloadField, SetItem};
use nftables::expr::{Expression, JHash, Map, Meta, MetaKey, NamedExpression, NgMode, Numgen};
use nftables::schema::{Chain, FlowTable, FlushObject, NfCmd, NfListObject, Rule, Table};
use nftables::stmt::{Flow, Match, NAT, NATFamily, Operator, SetOp, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::{
    DataPlane, DataPlaneError, DestStats, Forward, Proto, ServiceKey, ServiceSpec, ServiceStats,
    ServiceTable, Timeouts,
};

/// jhash's seed for sh, dh and mh.
const JHASH_SEED: u32 = 0x686f_6c64;

/// The default name of holdfast's table.
pub const DEFAULT_TABLE: &str = "holdfast";

/// Why a service cannot run on nftables, or `None` when it can.
pub fn unsupported(spec: &ServiceSpec) -> Option<String> {
    if !matches!(
        spec.sched,
        Kind::Rr | Kind::Wrr | Kind::Sh | Kind::Dh | Kind::Mh | Kind::Fo
    ) {
        return Some(format!(
            "scheduler {} needs live connection counts, which nftables rules cannot see (use rr, wrr, sh, dh, mh or fo, or dataplane ipvs)",
            spec.sched.name()
        ));
    }
    if spec
        .dests
        .iter()
        .any(|d| d.upper.is_some() || d.lower.is_some())
    {
        return Some(
            "uthreshold and lthreshold need live connection counts, which nftables rules cannot see (use dataplane ipvs or proxy)"
                .into(),
        );
    }
    if spec.one_packet {
        return Some(
            "ops (one-packet scheduling) is not built on nftables (use dataplane ipvs)".into(),
        );
    }
    if let Some(pe) = &spec.persistence_engine {
        return Some(format!(
            "persistence_engine {pe}: persistence engines are IPVS's; nftables has none (use dataplane ipvs)"
        ));
    }
    if spec.proxy_protocol {
        return Some(
            "proxy_protocol: nftables forwards the client's packets unchanged and cannot send a PROXY header (use dataplane proxy)"
                .into(),
        );
    }
    if spec.dests.iter().any(|d| d.method == Forward::Tunnel) {
        return Some("lvs_method TUN is not built on nftables (use dataplane ipvs)".into());
    }
    if spec.dests.iter().any(|d| d.method == Forward::Route)
        && spec.dests.iter().any(|d| d.method != Forward::Route)
    {
        return Some(
            "real servers mixing lvs_method DR and NAT in one virtual server are not built on nftables (use dataplane ipvs)"
                .into(),
        );
    }
    if is_direct(spec) && matches!(spec.key, ServiceKey::Fwmark { .. }) {
        return Some(
            "a fwmark virtual server cannot use lvs_method DR on nftables: direct return is decided at ingress, before the mark is set (use dataplane ipvs)"
                .into(),
        );
    }
    if spec
        .dests
        .iter()
        .any(|d| d.addr.is_ipv6() != spec.key.is_v6())
    {
        return Some("real servers must be of the service's address family on nftables".into());
    }
    None
}

/// The flowtable fast path of NAT connections, as far as the plane knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FastPath {
    /// Turned off (`nft_flowtable off`).
    Off,
    /// Wanted; no NAT service has needed it yet.
    Wanted,
    /// In the table, on these interfaces.
    On(Vec<String>),
    /// The kernel refused the flowtable: its answer.
    Unavailable(String),
}

/// The flowtable's name in holdfast's `inet` table.
const FLOWTABLE: &str = "ft";

/// The statements of one NAT service's rule in the `forward` chain offloading its
/// connections to the flowtable, matched by what conntrack recorded of their original
/// direction (every packet of the connection, either way, carries it): the service's
/// protocol, address and port, or for a fwmark service the mark with a DNAT done (only the
/// client's packets carry the mark). `None` for SCTP, which the flowtable cannot carry.
fn offload(spec: &ServiceSpec) -> Option<Vec<Statement<'static>>> {
    let ct = |key: &str, dir: Option<CTDir>| {
        Expression::Named(NamedExpression::CT(CT {
            key: s(key),
            family: None,
            dir,
        }))
    };
    let v6 = spec.key.is_v6();
    let mut out = Vec::new();
    match spec.key {
        ServiceKey::Addr {
            proto: Proto::Sctp, ..
        } => return None,
        ServiceKey::Addr { proto, addr } => {
            out.push(l4proto(proto));
            out.push(eq(
                ct(
                    if v6 { "ip6 daddr" } else { "ip daddr" },
                    Some(CTDir::Original),
                ),
                Expression::String(s(&addr.ip().to_string())),
            ));
            out.push(eq(
                ct("proto-dst", Some(CTDir::Original)),
                Expression::Number(u32::from(addr.port())),
            ));
        }
        ServiceKey::Fwmark { .. } => {
            out = service_match(spec);
            out.push(Statement::Match(Match {
                left: ct("status", None),
                right: Expression::String(s("dnat")),
                op: Operator::IN,
            }));
        }
    }
    out.push(Statement::Flow(Flow {
        op: SetOp::Add,
        flowtable: s(&format!("@{FLOWTABLE}")),
    }));
    Some(out)
}

/// holdfast's nftables table. Stop is explicit ([`NftPlane::release`]): a plane dropped
/// without it leaves the table for the next start to clear, as after a crash.
pub struct NftPlane {
    table: String,
    /// The last table applied, for `stats`.
    applied: ServiceTable,
    /// Persistence sets and destination chains in the table, to remove when unused.
    objects: std::collections::BTreeSet<String>,
    /// `lvs_timeouts`.
    timeouts: Timeouts,
    /// Whether the table holds the timeout policies of `timeouts`.
    policies: bool,
    /// The flowtable fast path of NAT connections.
    fast: FastPath,
}

fn s(v: &str) -> Cow<'static, str> {
    Cow::Owned(v.to_owned())
}

fn field(protocol: &str, name: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: s(protocol),
            field: s(name),
        },
    )))
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn target(a: SocketAddr) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![
        Expression::String(s(&a.ip().to_string())),
        Expression::Number(u32::from(a.port())),
    ]))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The destination choice as (key expression, bucket → destination), or a single
/// destination.
enum Choice {
    One(SocketAddr),
    Buckets(Expression<'static>, Vec<SocketAddr>),
}

fn choice(spec: &ServiceSpec) -> Option<Choice> {
    let mut live: Vec<(SocketAddr, u32)> = spec
        .dests
        .iter()
        .filter(|d| d.weight > 0)
        .map(|d| (d.addr, d.weight))
        .collect();
    // Hash tables in address order: they then depend only on who is live, not on the order
    // servers failed and returned in (a returning server gets its old buckets back). rr, wrr
    // and fo keep the configuration's order, as IPVS does.
    if matches!(spec.sched, Kind::Sh | Kind::Dh | Kind::Mh) {
        live.sort();
    }
    if live.is_empty() {
        return None;
    }
    let v6 = spec.key.is_v6();
    let ipf = if v6 { "ip6" } else { "ip" };
    let numgen = |n: usize| {
        Expression::Named(NamedExpression::Numgen(Numgen {
            mode: NgMode::Inc,
            ng_mod: u32::try_from(n).unwrap_or(u32::MAX),
            offset: None,
        }))
    };
    let jhash = |of: Expression<'static>, n: usize| {
        Expression::Named(NamedExpression::JHash(JHash {
            hash_mod: u32::try_from(n).unwrap_or(u32::MAX),
            offset: None,
            expr: Box::new(of),
            // Without a seed the kernel draws one per rule, and every table change would move
            // hashed clients; a fixed one keeps the mapping across changes and restarts.
            seed: Some(JHASH_SEED),
        }))
    };
    let source = || {
        if spec.flags.port {
            Expression::Named(NamedExpression::Concat(vec![
                field(ipf, "saddr"),
                field("th", "sport"),
            ]))
        } else {
            field(ipf, "saddr")
        }
    };
    Some(match spec.sched {
        Kind::Fo => {
            // The first server of the highest weight.
            let top = live.iter().map(|(_, w)| *w).max().unwrap_or(0);
            Choice::One(live.iter().find(|(_, w)| *w == top)?.0)
        }
        Kind::Rr => {
            let list: Vec<SocketAddr> = live.iter().map(|(a, _)| *a).collect();
            Choice::Buckets(numgen(list.len()), list)
        }
        Kind::Wrr => {
            // Each server weight/gcd times, interleaved as IPVS's wrr does over a cycle.
            let g = live.iter().fold(0, |g, (_, w)| gcd(g, *w));
            let mut left: Vec<u32> = live.iter().map(|(_, w)| w / g.max(1)).collect();
            let mut list = Vec::new();
            while left.iter().any(|n| *n > 0) {
                for (i, n) in left.iter_mut().enumerate() {
                    if *n > 0 {
                        list.push(live[i].0);
                        *n -= 1;
                    }
                }
            }
            Choice::Buckets(numgen(list.len()), list)
        }
        Kind::Sh | Kind::Dh => {
            let pool: Vec<Dest> = live.iter().map(|(a, w)| Dest::new(*a, *w)).collect();
            let list: Vec<SocketAddr> = sched::hash_buckets(&pool)
                .into_iter()
                .map(|i| live[i].0)
                .collect();
            let key = if spec.sched == Kind::Sh {
                source()
            } else {
                field(ipf, "daddr")
            };
            Choice::Buckets(jhash(key, list.len()), list)
        }
        Kind::Mh => {
            let list: Vec<SocketAddr> = sched::maglev_buckets(&live)
                .into_iter()
                .map(|i| i.map(|i| live[i].0))
                .collect::<Option<_>>()?;
            Choice::Buckets(jhash(source(), list.len()), list)
        }
        _ => return None,
    })
}

/// A name for nftables objects from an address: `10.0.0.2:3306` → `10_0_0_2_3306`.
fn ident(a: SocketAddr) -> String {
    format!("{}_{}", a.ip(), a.port())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The persistence set and chain of destination `dest` of service `spec`.
/// How a service keeps a client (or a connection) on one destination: by persistence in the
/// `inet` table (DNAT), or by direct return in the `netdev` table (forwarding to the
/// destination's MAC address through `dev`).
#[derive(Clone, Copy)]
enum Mode<'a> {
    Persist,
    Direct(&'a std::collections::BTreeMap<SocketAddr, String>),
}

/// The set and chain of destination `dest` of service `spec` in `mode`.
fn sticky_names(spec: &ServiceSpec, dest: SocketAddr, mode: Mode<'_>) -> (String, String) {
    if let Mode::Direct(_) = mode {
        let (_, chain) = persist_names(spec, dest);
        let (open, _) = connection_sets(spec, dest);
        return (open, chain.replacen("c_", "d_", 1));
    }
    persist_names(spec, dest)
}

/// The sets of direct-return destination `dest`: the connections it serves (`k_`) and the
/// TCP connections among them whose client has sent a FIN (`f_`).
fn connection_sets(spec: &ServiceSpec, dest: SocketAddr) -> (String, String) {
    let (_, chain) = persist_names(spec, dest);
    (chain.replacen("c_", "k_", 1), chain.replacen("c_", "f_", 1))
}

/// The persistence set and chain of direct-return destination `dest` (in the `netdev` table,
/// beside its connections).
fn direct_persist_names(spec: &ServiceSpec, dest: SocketAddr) -> (String, String) {
    let (set, chain) = persist_names(spec, dest);
    (set.replacen("p_", "q_", 1), chain.replacen("c_", "r_", 1))
}

fn persist_names(spec: &ServiceSpec, dest: SocketAddr) -> (String, String) {
    let svc = match spec.key {
        ServiceKey::Addr { proto, addr } => format!("{}_{}", proto.name(), ident(addr)),
        ServiceKey::Fwmark { mark, v6 } => format!("fwm{mark}{}", if v6 { "_6" } else { "" }),
    };
    let d = ident(dest);
    // The timeout and granularity are the set's own: a change makes a new set rather than an
    // update the kernel would refuse.
    let t = spec.persistence.map_or(0, |t| t.as_secs());
    let m = spec
        .persistence_prefix
        .map_or(String::new(), |m| format!("_m{m}"));
    (format!("p_{svc}_{d}_t{t}{m}"), format!("c_{svc}_{d}"))
}

/// What persistence remembers of a client: its source address, masked to the granularity.
fn persist_key(spec: &ServiceSpec) -> Expression<'static> {
    let v6 = spec.key.is_v6();
    let saddr = field(if v6 { "ip6" } else { "ip" }, "saddr");
    let full = if v6 { 128 } else { 32 };
    let prefix = spec.persistence_prefix.unwrap_or(full).min(full);
    if prefix == full {
        return saddr;
    }
    let mask = crate::prefix_mask(v6, prefix);
    Expression::BinaryOperation(Box::new(nftables::expr::BinaryOperation::AND(
        saddr,
        Expression::String(s(&mask.to_string())),
    )))
}

/// `meta l4proto PROTO` (nft's protocol names are keepalived's).
fn l4proto(proto: Proto) -> Statement<'static> {
    eq(
        Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::L4proto,
        })),
        Expression::String(s(proto.keyword())),
    )
}

/// The statements matching a service's packets.
fn service_match(spec: &ServiceSpec) -> Vec<Statement<'static>> {
    let v6 = spec.key.is_v6();
    let mut out = Vec::new();
    match spec.key {
        ServiceKey::Addr { proto, addr } => {
            out.push(l4proto(proto));
            out.push(eq(
                field(if v6 { "ip6" } else { "ip" }, "daddr"),
                Expression::String(s(&addr.ip().to_string())),
            ));
            out.push(eq(
                field("th", "dport"),
                Expression::Number(u32::from(addr.port())),
            ));
        }
        ServiceKey::Fwmark { mark, .. } => {
            out.push(eq(
                Expression::Named(NamedExpression::Meta(Meta {
                    key: MetaKey::Nfproto,
                })),
                Expression::String(s(if v6 { "ipv6" } else { "ipv4" })),
            ));
            out.push(eq(
                Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Mark })),
                Expression::Number(mark),
            ));
        }
    }
    out
}

/// DNAT to an address:port pair a map gives (`addr` is a map of concatenations), or, with
/// `port`, to one address and port — nft reads a lone `concat` of constants as an invalid
/// expression.
fn dnat(spec: &ServiceSpec, addr: Expression<'static>, port: Option<u16>) -> Statement<'static> {
    Statement::DNAT(Some(NAT {
        addr: Some(addr),
        family: Some(if spec.key.is_v6() {
            NATFamily::IP6
        } else {
            NATFamily::IP
        }),
        port: port.map(|p| Expression::Number(u32::from(p))),
        flags: None,
    }))
}

fn dnat_to(spec: &ServiceSpec, a: SocketAddr) -> Statement<'static> {
    dnat(
        spec,
        Expression::String(s(&a.ip().to_string())),
        Some(a.port()),
    )
}

/// The literal map `{ 0: f(first), 1: f(second), … }` from bucket numbers.
fn buckets(
    list: Vec<SocketAddr>,
    f: impl Fn(SocketAddr) -> Expression<'static>,
) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        list.into_iter()
            .enumerate()
            .map(|(i, a)| {
                SetItem::Mapping(
                    Expression::Number(u32::try_from(i).unwrap_or(u32::MAX)),
                    f(a),
                )
            })
            .collect(),
    ))
}

/// The statements of one service's rule, or `None` when no destination may take new
/// connections (then packets to the service meet the host, which has no listener).
fn rule(spec: &ServiceSpec) -> Option<Vec<Statement<'static>>> {
    let mut out = service_match(spec);
    let addr = match choice(spec)? {
        Choice::One(a) => {
            out.push(dnat_to(spec, a));
            return Some(out);
        }
        Choice::Buckets(key, list) => Expression::Named(NamedExpression::Map(Box::new(Map {
            key,
            data: buckets(list, target),
        }))),
    };
    out.push(dnat(spec, addr, None));
    Some(out)
}

/// A service that keeps clients or connections on their destination: the rules for its base
/// chains (lookups in each destination's set, then the scheduler's choice jumping to the
/// chosen destination's chain) and, per destination, its sets, chain and the chain's rules.
/// `None` when no destination may take new connections.
struct Sticky {
    base: Vec<Vec<Statement<'static>>>,
    dests: Vec<StickyDest>,
}

/// One destination of a [`Sticky`] service.
struct StickyDest {
    /// Its sets: the clients (persistence) or connections (direct return) it serves; for
    /// direct return, the TCP connections that have sent a FIN, and with persistence the
    /// clients it serves.
    sets: Vec<String>,
    /// Its chains with their rules, each before any chain that jumps to it.
    chains: Vec<(String, Vec<Vec<Statement<'static>>>)>,
}

/// How many entries a set of clients or connections may hold. nft gives a set that rules
/// fill 65 535 when it names no size; once full, a new entry fails, the rule with it, and the
/// connection is not forwarded at all. IPVS's connection table has no such bound; this one is
/// far above what a director sees live (an entry costs the kernel about 100 bytes).
const SET_SIZE: u32 = 1 << 20;

/// Seconds a direct-return TCP connection stays known after a reset: IPVS's CLOSE state.
const CLOSE_SECS: u32 = 10;

/// A set timeout in nft's whole seconds: `d` (at least 1 s), or `default` without one.
fn set_secs(d: Option<std::time::Duration>, default: u64) -> u32 {
    u32::try_from(d.map_or(default, |d| d.as_secs().max(1))).unwrap_or(u32::MAX)
}

/// The key of a direct-return connection: the client's address and port.
fn connection_key(spec: &ServiceSpec) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![
        field(if spec.key.is_v6() { "ip6" } else { "ip" }, "saddr"),
        field("th", "sport"),
    ]))
}

/// Forwards the packet unchanged to `dest`'s MAC address on `dev` (LVS's DR).
fn forward_to(spec: &ServiceSpec, dest: SocketAddr, dev: &str) -> Statement<'static> {
    Statement::FWD(Some(nftables::stmt::FWD {
        dev: Some(Expression::String(s(dev))),
        family: Some(if spec.key.is_v6() {
            nftables::stmt::FWDFamily::IP6
        } else {
            nftables::stmt::FWDFamily::IP
        }),
        addr: Some(Expression::String(s(&dest.ip().to_string()))),
    }))
}

/// `fin`: seconds a direct-return TCP connection stays known after its client's FIN.
fn sticky(spec: &ServiceSpec, mode: Mode<'_>, fin: u32) -> Option<Sticky> {
    let jump = |chain: &str| Statement::Jump(nftables::stmt::JumpTarget { target: s(chain) });
    let key = match mode {
        Mode::Persist => persist_key(spec),
        Mode::Direct(_) => connection_key(spec),
    };
    // Persistence forgets a destination that leaves the scheduling; direct return keeps the
    // connections of a destination at weight 0 (IPVS's quiescent server) until they end.
    let kept: Vec<SocketAddr> = spec
        .dests
        .iter()
        .filter(|d| d.weight > 0 || matches!(mode, Mode::Direct(_)))
        .map(|d| d.addr)
        .collect();
    // Direct return with persistence: a new connection of a client a live destination knows
    // goes there (through the chain recording the client), before the scheduler is asked.
    let direct_persist = matches!(mode, Mode::Direct(_)) && spec.persistence.is_some();
    let mut base = Vec::new();
    let mut remembered = Vec::new();
    let mut dests = Vec::new();
    for &d in &kept {
        let (set, chain) = sticky_names(spec, d, mode);
        let mut lookup = service_match(spec);
        lookup.push(eq(key.clone(), Expression::String(s(&format!("@{set}")))));
        lookup.push(jump(&chain));
        base.push(lookup);
        let send = match mode {
            Mode::Persist => dnat_to(spec, d),
            // `apply` resolved every direct-return destination's device or refused the service.
            Mode::Direct(devs) => forward_to(spec, d, devs.get(&d)?),
        };
        // Refreshes (or adds) this client's or connection's entry in `set`, with the set's
        // timeout or `timeout`.
        let update = |set: &str, timeout: Option<u32>| {
            Statement::Set(nftables::stmt::Set {
                op: nftables::stmt::SetOp::Update,
                elem: match timeout {
                    None => key.clone(),
                    Some(t) => Expression::Named(NamedExpression::Elem(nftables::expr::Elem {
                        val: Box::new(key.clone()),
                        timeout: Some(t),
                        ..nftables::expr::Elem::default()
                    })),
                },
                set: s(&format!("@{set}")),
            })
        };
        // Each rule starts with the service's match again: nft maps a port only after a
        // protocol match.
        let rule = |then: Vec<Statement<'static>>| {
            let mut r = service_match(spec);
            r.extend(then);
            r
        };
        let tcp = matches!(
            spec.key,
            ServiceKey::Addr {
                proto: Proto::Tcp,
                ..
            }
        );
        let (closing, rules) = if matches!(mode, Mode::Direct(_)) && tcp {
            // TCP by direct return: the director sees the client's packets only, and keeps
            // IPVS's timeouts by what they say. A reset leaves the connection 10 s; a FIN
            // leaves it `fin` and puts it in the closing set, where later packets (the client's
            // last ACK) no longer refresh it; a SYN starts it afresh; anything else refreshes
            // it to the established timeout (the set's own).
            let (_, closing) = connection_sets(spec, d);
            let flag = |f: &str| {
                Statement::Match(Match {
                    left: field("tcp", "flags"),
                    right: Expression::String(s(f)),
                    op: Operator::IN,
                })
            };
            let rules = vec![
                rule(vec![
                    flag("rst"),
                    update(&set, Some(CLOSE_SECS)),
                    send.clone(),
                ]),
                rule(vec![
                    flag("fin"),
                    update(&set, Some(fin)),
                    update(&closing, None),
                    send.clone(),
                ]),
                rule(vec![flag("syn"), update(&set, None), send.clone()]),
                rule(vec![
                    eq(key.clone(), Expression::String(s(&format!("@{closing}")))),
                    send.clone(),
                ]),
                rule(vec![update(&set, None), send]),
            ];
            (Some(closing), rules)
        } else {
            (None, vec![rule(vec![update(&set, None), send])])
        };
        let mut sets: Vec<String> = std::iter::once(set).chain(closing).collect();
        let mut chains = vec![(chain.clone(), rules)];
        let live = spec.dests.iter().any(|x| x.addr == d && x.weight > 0);
        if direct_persist && live {
            let (clients, record) = direct_persist_names(spec, d);
            let mut lookup = service_match(spec);
            lookup.push(eq(
                persist_key(spec),
                Expression::String(s(&format!("@{clients}"))),
            ));
            lookup.push(jump(&record));
            remembered.push(lookup);
            // Refreshes the client's entry, then the connection's chain records it and
            // forwards.
            let mut r = service_match(spec);
            r.push(Statement::Set(nftables::stmt::Set {
                op: nftables::stmt::SetOp::Update,
                elem: persist_key(spec),
                set: s(&format!("@{clients}")),
            }));
            r.push(jump(&chain));
            chains.push((record, vec![r]));
            sets.push(clients);
        }
        dests.push(StickyDest { sets, chains });
    }
    base.extend(remembered);
    // Where the scheduler's choice goes: the destination's chain, or with persistence by
    // direct return the chain recording the client first.
    let first = |a: SocketAddr| {
        if direct_persist {
            direct_persist_names(spec, a).1
        } else {
            sticky_names(spec, a, mode).1
        }
    };
    let mut pick = service_match(spec);
    match choice(spec)? {
        Choice::One(a) => pick.push(jump(&first(a))),
        Choice::Buckets(k, list) => pick.push(Statement::VerdictMap(nftables::stmt::VerdictMap {
            key: k,
            data: buckets(list, |a| {
                Expression::Verdict(nftables::expr::Verdict::Jump(nftables::stmt::JumpTarget {
                    target: s(&first(a)),
                }))
            }),
        })),
    }
    base.push(pick);
    Some(Sticky { base, dests })
}

/// Whether a service forwards by direct return (every destination DR).
fn is_direct(spec: &ServiceSpec) -> bool {
    route_only(spec.dests.iter().map(|d| d.method))
}

/// Whether there is at least one method and every one is DR.
fn route_only(methods: impl IntoIterator<Item = Forward>) -> bool {
    let mut any = false;
    methods.into_iter().all(|m| {
        any = true;
        m == Forward::Route
    }) && any
}

/// What `ip -j ARGS` prints, parsed.
fn ip_json(args: &[&str]) -> io::Result<serde_json::Value> {
    json_of("ip", args)
}

/// The Debian package that provides a program this plane runs.
fn package_of(program: &str) -> &'static str {
    match program {
        "nft" => "nftables",
        "ip" => "iproute2",
        _ => "the package providing it",
    }
}

/// A program this plane runs could not be started: a missing one is named with the package
/// to install, not left as "No such file or directory".
fn tool_error(program: &str, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound {
        let package = package_of(program);
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "`{program}` not found: holdfast needs it here (Debian: apt install {package})"
            ),
        )
    } else {
        io::Error::new(e.kind(), format!("{program}: {e}"))
    }
}

/// What `PROGRAM -j ARGS` prints (`ip`, `nft`), parsed.
fn json_of(program: &str, args: &[&str]) -> io::Result<serde_json::Value> {
    let out = std::process::Command::new(program)
        .arg("-j")
        .args(args)
        .output()
        .map_err(|e| tool_error(program, e))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// This host's interfaces but loopback (`ip link`).
fn interfaces() -> io::Result<Vec<String>> {
    let links = ip_json(&["link", "show"])?;
    Ok(links
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| {
                    !l.get("flags")
                        .and_then(serde_json::Value::as_array)
                        .is_some_and(|f| f.iter().any(|x| x == "LOOPBACK"))
                })
                .filter_map(|l| l.get("ifname").and_then(serde_json::Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// The interface through which `addr` is reached directly (`ip route get`), for direct
/// return: a destination behind a gateway, or this host's own address, cannot be one.
pub fn direct_device(addr: std::net::IpAddr) -> io::Result<String> {
    let routes = ip_json(&["route", "get", &addr.to_string()])
        .map_err(|e| io::Error::other(format!("no route to real server {addr}: {e}")))?;
    let route = routes
        .get(0)
        .ok_or_else(|| io::Error::other("ip route get: no route"))?;
    if route.get("gateway").is_some() {
        return Err(io::Error::other(format!(
            "real server {addr} is behind a gateway: direct return needs it on an attached network"
        )));
    }
    match route.get("dev").and_then(serde_json::Value::as_str) {
        Some("lo") | None => Err(io::Error::other(format!(
            "real server {addr} is an address of this host: direct return needs another machine"
        ))),
        Some(dev) => Ok(dev.to_owned()),
    }
}

/// Fills in each destination's ActiveConn and InActConn in `stats` (the table as applied on
/// `table`) from the kernel, as IPVS counts them: NAT connections from conntrack (established
/// TCP is active, any other state and every UDP flow inactive), direct return's from its
/// connection sets (a connection whose client has sent a FIN, in the closing set, is
/// inactive). A fwmark service's connections are found by their real server alone.
pub fn count_connections(table: &str, stats: &mut [ServiceStats]) -> io::Result<()> {
    let direct = |s: &ServiceStats| route_only(s.dests.iter().map(|d| d.method));
    if stats.iter().any(|s| !direct(s)) {
        // One pass over the table (it may hold hundreds of thousands of connections):
        // (active, inactive) by service and server, and by server alone for fwmark services.
        let mut by_service = std::collections::HashMap::new();
        let mut by_server = std::collections::HashMap::new();
        for f in crate::conntrack::dump()? {
            let tally = |c: &mut (u32, u32)| {
                if f.established {
                    c.0 = c.0.saturating_add(1);
                } else {
                    c.1 = c.1.saturating_add(1);
                }
            };
            tally(by_service.entry((f.proto, f.to, f.from)).or_default());
            tally(by_server.entry(f.from).or_default());
        }
        for s in stats.iter_mut().filter(|s| !direct(s)) {
            for d in &mut s.dests {
                let Some(addr) = d.addr else {
                    continue;
                };
                let counted = match s.key {
                    ServiceKey::Addr { proto, addr: vip } => by_service.get(&(proto, vip, addr)),
                    ServiceKey::Fwmark { .. } => by_server.get(&addr),
                };
                (d.active, d.inactive) = counted.copied().unwrap_or_default();
            }
        }
    }
    if stats.iter().any(direct) {
        let listed = json_of("nft", &["list", "table", "netdev", table])?;
        let sets = set_elements(&listed);
        for s in stats.iter_mut().filter(|s| direct(s)) {
            let spec = ServiceSpec::new(s.key, s.sched, Vec::new());
            for d in &mut s.dests {
                let Some(addr) = d.addr else {
                    continue;
                };
                let (open, closing) = connection_sets(&spec, addr);
                let (open, closing) = (sets.get(&open), sets.get(&closing));
                let (mut active, mut inactive) = (0u32, 0u32);
                for e in open.into_iter().flatten() {
                    if closing.is_some_and(|c| c.contains(e)) {
                        inactive = inactive.saturating_add(1);
                    } else {
                        active = active.saturating_add(1);
                    }
                }
                d.active = active;
                d.inactive = inactive;
            }
        }
    }
    Ok(())
}

/// Each set's elements (their keys, as nft prints them) by set name.
fn set_elements(
    listed: &serde_json::Value,
) -> std::collections::HashMap<String, std::collections::HashSet<String>> {
    let mut out = std::collections::HashMap::new();
    let objects = listed
        .get("nftables")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for o in objects {
        let Some(set) = o.get("set") else {
            continue;
        };
        let Some(name) = set.get("name").and_then(serde_json::Value::as_str) else {
            continue;
        };
        // An element with a timeout is `{"elem": {"val": KEY, "expires": …}}`, one without
        // is KEY itself.
        let keys = set
            .get("elem")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| {
                        e.get("elem")
                            .and_then(|x| x.get("val"))
                            .unwrap_or(e)
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name.to_owned(), keys);
    }
    out
}

/// Runs `nft ARGS -f -` on `input`; a refusal is an error carrying what nft said (the
/// `nftables` crate's helper lets nft's message go to our standard error and keeps none), a
/// missing `nft` one naming its package. Blocking: waits for nft. Also the daemon's VRRP
/// firewall's runner.
pub fn nft_input(args: &[&str], input: &str) -> io::Result<()> {
    let mut child = std::process::Command::new("nft")
        .args(args)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| tool_error("nft", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    // nft's JSON reader places every error at `internal:0:0-0:`, which tells nothing.
    let said: Vec<&str> = said
        .lines()
        .map(|l| l.trim_start_matches("internal:0:0-0: ").trim())
        .filter(|l| !l.is_empty())
        .collect();
    Err(io::Error::other(if said.is_empty() {
        format!("nft failed ({})", out.status)
    } else {
        said.join("; ")
    }))
}

/// Applies `batch` as one nft transaction.
fn apply_batch(batch: Batch<'_>) -> io::Result<()> {
    let json = serde_json::to_string(&batch.to_nftables())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    nft_input(&["-j"], &json)
}

impl NftPlane {
    /// Opens the plane on table `table`, removing what a previous run may have left.
    pub fn open(table: &str) -> io::Result<NftPlane> {
        NftPlane::open_with_timeouts(table, Timeouts::default())
    }

    /// [`NftPlane::open`] with `lvs_timeouts`: NAT connections get conntrack timeout
    /// policies (`tcp` for an established connection, `tcpfin` once a FIN was seen, `udp` for
    /// UDP flows; what is not set keeps conntrack's own), and direct return's connection sets
    /// the `tcp` and `udp` timeouts instead of IPVS's defaults. They are fixed for the
    /// plane's life, as a policy in the kernel cannot change.
    pub fn open_with_timeouts(table: &str, timeouts: Timeouts) -> io::Result<NftPlane> {
        let mut p = NftPlane {
            table: table.to_owned(),
            applied: Vec::new(),
            objects: std::collections::BTreeSet::new(),
            timeouts,
            policies: false,
            fast: FastPath::Wanted,
        };
        p.release()?;
        Ok(p)
    }

    /// Seconds a direct-return TCP connection stays known after its client's FIN:
    /// `lvs_timeouts`' tcpfin, or IPVS's default (2 minutes).
    fn fin_secs(&self) -> u32 {
        set_secs(self.timeouts.tcpfin, 120)
    }

    /// Adds the conntrack timeout policies `lvs_timeouts` asks for (`t_tcp4`, `t_tcp6`,
    /// `t_udp4`, `t_udp6`), once: the rules of later batches name them. Written in nft's own
    /// syntax, because the JSON reader of nft 1.0.6 (Debian 12) drops a policy's states and
    /// its layer 3 protocol. Adding an object that exists changes nothing.
    fn add_timeout_policies(&mut self) -> io::Result<()> {
        if self.policies || !self.timeouts.any() {
            return Ok(());
        }
        let secs = |d: std::time::Duration| d.as_secs().max(1);
        let t = self.timeouts;
        let mut tcp = Vec::new();
        if let Some(v) = t.tcp {
            tcp.push(format!("established: {}", secs(v)));
        }
        if let Some(v) = t.tcpfin {
            // IPVS's FIN_WAIT: after the first FIN, whichever side sent it.
            tcp.push(format!("fin_wait: {}", secs(v)));
            tcp.push(format!("close_wait: {}", secs(v)));
        }
        let mut udp = Vec::new();
        if let Some(v) = t.udp {
            udp.push(format!("unreplied: {}", secs(v)));
            udp.push(format!("replied: {}", secs(v)));
        }
        let table = &self.table;
        if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("table name '{table}' is not an nft identifier"),
            ));
        }
        let mut script = format!("add table inet {table}\n");
        for (l4, policy) in [("tcp", tcp), ("udp", udp)] {
            if policy.is_empty() {
                continue;
            }
            for (l3, v) in [("ip", "4"), ("ip6", "6")] {
                script.push_str(&format!(
                    "add ct timeout inet {table} t_{l4}{v} {{ protocol {l4}; l3proto {l3}; policy = {{ {} }}; }}\n",
                    policy.join(", ")
                ));
            }
        }
        nft_input(&[], &script)
            .map_err(|e| io::Error::other(format!("cannot add the lvs_timeouts policies: {e}")))?;
        self.policies = true;
        Ok(())
    }

    /// The statements giving a new NAT connection of `spec` its timeout policy.
    fn timeout_statements(&self, spec: &ServiceSpec) -> Vec<Statement<'static>> {
        let t = &self.timeouts;
        let v = if spec.key.is_v6() { "6" } else { "4" };
        let (tcp, udp) = match spec.key {
            ServiceKey::Addr {
                proto: Proto::Tcp, ..
            } => (true, false),
            ServiceKey::Addr {
                proto: Proto::Udp, ..
            } => (false, true),
            ServiceKey::Addr { .. } => (false, false),
            // A mark may gather both; each policy applies only to its own protocol.
            ServiceKey::Fwmark { .. } => (true, true),
        };
        let mut out = Vec::new();
        if tcp && (t.tcp.is_some() || t.tcpfin.is_some()) {
            out.push(Statement::CTTimeout(Expression::String(s(&format!(
                "t_tcp{v}"
            )))));
        }
        if udp && t.udp.is_some() {
            out.push(Statement::CTTimeout(Expression::String(s(&format!(
                "t_udp{v}"
            )))));
        }
        out
    }

    /// `rule` with the timeout statements of `spec` before its DNAT (a rule without one is
    /// returned as it is).
    fn with_timeouts(
        &self,
        mut rule: Vec<Statement<'static>>,
        spec: &ServiceSpec,
    ) -> Vec<Statement<'static>> {
        if matches!(rule.last(), Some(Statement::DNAT(_))) {
            let at = rule.len() - 1;
            rule.splice(at..at, self.timeout_statements(spec));
        }
        rule
    }

    /// Turns the flowtable fast path of NAT connections on (the default) or off, from the
    /// next apply on.
    pub fn set_flowtable(&mut self, on: bool) {
        self.fast = match (on, &self.fast) {
            (false, _) => FastPath::Off,
            (true, FastPath::Off) => FastPath::Wanted,
            (true, f) => f.clone(),
        };
    }

    /// Where the flowtable fast path stands.
    pub fn fast_path(&self) -> &FastPath {
        &self.fast
    }

    /// The flowtable on `devs`.
    fn flowtable(&self, devs: &[String]) -> FlowTable<'static> {
        FlowTable {
            family: NfFamily::INet,
            table: s(&self.table),
            name: s(FLOWTABLE),
            handle: None,
            hook: Some(NfHook::Ingress),
            prio: Some(0),
            dev: Some(Cow::Owned(devs.iter().map(|d| s(d)).collect())),
        }
    }

    /// The `forward` chain offloading NAT connections to the flowtable.
    fn forward_chain(&self) -> Chain<'static> {
        Chain {
            family: NfFamily::INet,
            table: s(&self.table),
            name: s("forward"),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Forward),
            prio: Some(0),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }
    }

    /// Settles whether the fast path can be on for a table whose NAT services are `nat` and
    /// this host's interfaces but loopback `ifaces`: the first time it is wanted, the kernel
    /// is asked for the flowtable alone, and a refusal is kept (and no more asked).
    fn settle_fast_path(&mut self, nat: bool, ifaces: &[String]) {
        if !nat || ifaces.is_empty() || self.fast != FastPath::Wanted {
            return;
        }
        let mut b = Batch::new();
        b.add(NfListObject::Table(self.table_obj()));
        b.add(NfListObject::FlowTable(self.flowtable(ifaces)));
        self.fast = match apply_batch(b) {
            Ok(()) => FastPath::On(ifaces.to_vec()),
            Err(e) => FastPath::Unavailable(e.to_string()),
        };
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Removes holdfast's table (at stop; also when opening, after a crash).
    pub fn release(&mut self) -> io::Result<()> {
        let mut b = Batch::new();
        // Adding first makes the deletion valid whether or not the table exists.
        for t in [self.table_obj(), self.netdev_table()] {
            b.add(NfListObject::Table(t.clone()));
            b.delete(NfListObject::Table(t));
        }
        apply_batch(b)?;
        self.applied.clear();
        self.objects.clear();
        self.policies = false;
        if let FastPath::On(_) = self.fast {
            self.fast = FastPath::Wanted;
        }
        Ok(())
    }

    fn table_obj(&self) -> Table<'static> {
        Table {
            family: NfFamily::INet,
            name: s(&self.table),
            ..Table::default()
        }
    }

    fn chain(&self, name: &str, hook: NfHook) -> Chain<'static> {
        Chain {
            family: NfFamily::INet,
            table: s(&self.table),
            name: s(name),
            _type: Some(NfChainType::NAT),
            hook: Some(hook),
            // dstnat.
            prio: Some(-100),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }
    }

    /// The family of one of holdfast's objects, from its name: the `netdev` table holds
    /// direct return (`k_`, `f_` and `q_` sets, `d_` and `r_` chains, `in_` ingress chains),
    /// the `inet` table the rest.
    fn family_of(name: &str) -> NfFamily {
        if ["k_", "f_", "q_", "d_", "r_", "in_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            NfFamily::NetDev
        } else {
            NfFamily::INet
        }
    }

    fn rule_in(
        &self,
        chain: &str,
        expr: Vec<Statement<'static>>,
        spec: &ServiceSpec,
    ) -> Rule<'static> {
        Rule {
            family: Self::family_of(chain),
            table: s(&self.table),
            chain: s(chain),
            expr: Cow::Owned(expr),
            comment: Some(s(&spec.key.to_string())),
            ..Rule::default()
        }
    }

    fn regular_chain(&self, name: &str) -> Chain<'static> {
        Chain {
            family: Self::family_of(name),
            table: s(&self.table),
            name: s(name),
            ..Chain::default()
        }
    }

    /// The ingress chain of device `dev` in the `netdev` table.
    fn ingress_chain(&self, dev: &str) -> Chain<'static> {
        Chain {
            family: NfFamily::NetDev,
            table: s(&self.table),
            name: s(&format!("in_{dev}")),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Ingress),
            prio: Some(0),
            dev: Some(s(dev)),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }
    }

    /// A set of persistent clients (`p_`, or `q_` for direct return), direct-return
    /// connections (`k_`) or the closing ones among them (`f_`).
    fn set(&self, name: &str, spec: &ServiceSpec) -> nftables::schema::Set<'static> {
        use nftables::schema::{SetFlag, SetType, SetTypeValue};
        let addr = if spec.key.is_v6() {
            SetType::Ipv6Addr
        } else {
            SetType::Ipv4Addr
        };
        // Direct return's connection sets are keyed by client address and port; persistence
        // sets (`p_`, and `q_` beside direct return's connections) by client address.
        let direct = Self::family_of(name) == NfFamily::NetDev && !name.starts_with("q_");
        let timeout = if name.starts_with("f_") {
            // Closing direct-return connections: `lvs_timeouts`' tcpfin, or IPVS's default.
            self.fin_secs()
        } else if direct {
            // `lvs_timeouts`, or IPVS's defaults for an established TCP connection and for
            // UDP, refreshed by every packet.
            match spec.key {
                ServiceKey::Addr {
                    proto: Proto::Udp, ..
                } => set_secs(self.timeouts.udp, 300),
                _ => set_secs(self.timeouts.tcp, 900),
            }
        } else {
            set_secs(spec.persistence, 1)
        };
        nftables::schema::Set {
            family: Self::family_of(name),
            table: s(&self.table),
            name: s(name),
            handle: None,
            set_type: if direct {
                SetTypeValue::Concatenated(Cow::Owned(vec![addr, SetType::InetService]))
            } else {
                SetTypeValue::Single(addr)
            },
            policy: None,
            // nft marks the set dynamic itself (1.0.6 refuses the flag in JSON).
            flags: Some([SetFlag::Timeout].into_iter().collect()),
            elem: None,
            timeout: Some(timeout),
            gc_interval: None,
            size: Some(SET_SIZE),
            comment: None,
        }
    }

    fn netdev_table(&self) -> Table<'static> {
        Table {
            family: NfFamily::NetDev,
            name: s(&self.table),
            ..Table::default()
        }
    }

    /// The batch making the tables hold exactly `wanted` (`devs`: the interface of each
    /// direct-return destination; `ifaces`: this host's interfaces but loopback), and the
    /// sets and chains they then hold.
    fn batch(
        &self,
        wanted: &ServiceTable,
        devs: &std::collections::BTreeMap<SocketAddr, String>,
        ifaces: &[String],
    ) -> (Batch<'static>, std::collections::BTreeSet<String>) {
        let mut b = Batch::new();
        let mut objects = std::collections::BTreeSet::new();
        b.add(NfListObject::Table(self.table_obj()));
        b.add(NfListObject::Table(self.netdev_table()));
        for (name, hook) in [
            ("prerouting", NfHook::Prerouting),
            ("output", NfHook::Output),
        ] {
            b.add(NfListObject::Chain(self.chain(name, hook)));
            b.add_cmd(NfCmd::Flush(FlushObject::Chain(self.chain(name, hook))));
        }
        // The fast path, once on, stays in the table: its devices follow the interfaces (an
        // `add` registers new ones; the kernel drops those that go), its rules the services.
        if let FastPath::On(_) = self.fast {
            if !ifaces.is_empty() {
                b.add(NfListObject::FlowTable(self.flowtable(ifaces)));
            }
            b.add(NfListObject::Chain(self.forward_chain()));
            b.add_cmd(NfCmd::Flush(FlushObject::Chain(self.forward_chain())));
            for spec in wanted.iter().filter(|s| !is_direct(s)) {
                if let Some(r) = offload(spec) {
                    b.add(NfListObject::Rule(self.rule_in("forward", r, spec)));
                }
            }
        }
        // Direct return is decided at the ingress of every interface clients may come in by
        // (IPVS decides at local delivery, whatever the interface): all but loopback.
        let ingress: std::collections::BTreeSet<&String> = if wanted.iter().any(is_direct) {
            ifaces.iter().collect()
        } else {
            std::collections::BTreeSet::new()
        };
        for dev in &ingress {
            b.add(NfListObject::Chain(self.ingress_chain(dev)));
            b.add_cmd(NfCmd::Flush(FlushObject::Chain(self.ingress_chain(dev))));
            objects.insert(format!("in_{dev}"));
        }
        for spec in wanted {
            let direct = is_direct(spec);
            let (rules, chains): (Vec<Vec<Statement<'static>>>, Vec<String>) =
                if direct || spec.persistence.is_some() {
                    let mode = if direct {
                        Mode::Direct(devs)
                    } else {
                        Mode::Persist
                    };
                    let Some(p) = sticky(spec, mode, self.fin_secs()) else {
                        continue;
                    };
                    for dest in p.dests {
                        // A set already there keeps its entries: it is not added again (nft
                        // made it dynamic when a rule first updated it, and the kernel refuses
                        // an `add` whose flags differ). Its chains' rules are written afresh.
                        for set in dest.sets {
                            if !self.objects.contains(&set) {
                                b.add(NfListObject::Set(Box::new(self.set(&set, spec))));
                            }
                            objects.insert(set);
                        }
                        for (chain, rules) in dest.chains {
                            b.add(NfListObject::Chain(self.regular_chain(&chain)));
                            b.add_cmd(NfCmd::Flush(FlushObject::Chain(self.regular_chain(&chain))));
                            for rule in rules {
                                let rule = if direct {
                                    rule
                                } else {
                                    self.with_timeouts(rule, spec)
                                };
                                b.add(NfListObject::Rule(self.rule_in(&chain, rule, spec)));
                            }
                            objects.insert(chain);
                        }
                    }
                    let chains = if direct {
                        ingress.iter().map(|d| format!("in_{d}")).collect()
                    } else {
                        vec!["prerouting".into(), "output".into()]
                    };
                    (p.base, chains)
                } else {
                    match rule(spec) {
                        Some(r) => (
                            vec![self.with_timeouts(r, spec)],
                            vec!["prerouting".into(), "output".into()],
                        ),
                        None => continue,
                    }
                };
            for chain in &chains {
                for r in &rules {
                    b.add(NfListObject::Rule(self.rule_in(chain, r.clone(), spec)));
                }
            }
        }
        // What is no longer wanted goes, after the rules that used it were flushed above:
        // chains first (a set cannot go while a rule uses it), then sets.
        for gone in self.objects.difference(&objects) {
            if let Some(dev) = gone.strip_prefix("in_") {
                b.add_cmd(NfCmd::Flush(FlushObject::Chain(self.ingress_chain(dev))));
                b.delete(NfListObject::Chain(self.ingress_chain(dev)));
            } else if ["c_", "d_", "r_"].iter().any(|p| gone.starts_with(p)) {
                b.add_cmd(NfCmd::Flush(FlushObject::Chain(self.regular_chain(gone))));
                b.delete(NfListObject::Chain(self.regular_chain(gone)));
            }
        }
        for gone in self.objects.difference(&objects) {
            if ["p_", "k_", "f_", "q_"].iter().any(|p| gone.starts_with(p)) {
                // The type is irrelevant to a deletion.
                let any = ServiceSpec::new(
                    ServiceKey::tcp(SocketAddr::from(([0, 0, 0, 0], 0))),
                    Kind::Rr,
                    Vec::new(),
                );
                b.delete(NfListObject::Set(Box::new(self.set(gone, &any))));
            }
        }
        (b, objects)
    }
}

impl DataPlane for NftPlane {
    fn apply(&mut self, wanted: &ServiceTable) -> Result<(), Vec<DataPlaneError>> {
        let mut errors = Vec::new();
        let mut ok: ServiceTable = Vec::new();
        for spec in wanted {
            match unsupported(spec) {
                Some(why) => errors.push(DataPlaneError {
                    key: spec.key,
                    error: io::Error::new(io::ErrorKind::Unsupported, why),
                }),
                None => ok.push(spec.clone()),
            }
        }
        // Direct return: each destination's interface, from the routing table.
        let mut devs = std::collections::BTreeMap::new();
        ok.retain(|spec| {
            if !is_direct(spec) {
                return true;
            }
            for d in &spec.dests {
                match direct_device(d.addr.ip()) {
                    Ok(dev) => {
                        devs.insert(d.addr, dev);
                    }
                    Err(e) => {
                        errors.push(DataPlaneError {
                            key: spec.key,
                            error: e,
                        });
                        return false;
                    }
                }
            }
            true
        });
        let nat = ok.iter().any(|s| !is_direct(s));
        let fast = nat && matches!(self.fast, FastPath::Wanted | FastPath::On(_));
        let ifaces = if devs.is_empty() && !fast {
            Vec::new()
        } else {
            match interfaces() {
                Ok(i) => i,
                Err(e) => {
                    let msg = e.to_string();
                    ok.retain(|spec| {
                        let direct = is_direct(spec);
                        if direct {
                            errors.push(DataPlaneError {
                                key: spec.key,
                                error: io::Error::other(msg.clone()),
                            });
                        }
                        !direct
                    });
                    Vec::new()
                }
            }
        };
        if let Err(e) = self.add_timeout_policies() {
            let msg = e.to_string();
            errors.extend(ok.iter().map(|s| DataPlaneError {
                key: s.key,
                error: io::Error::other(msg.clone()),
            }));
            return Err(errors);
        }
        self.settle_fast_path(nat, &ifaces);
        // One transaction: the tables change all at once or not at all.
        let (batch, objects) = self.batch(&ok, &devs, &ifaces);
        match apply_batch(batch) {
            Ok(()) => {
                self.applied = ok;
                self.objects = objects;
                if let FastPath::On(devs) = &mut self.fast
                    && !ifaces.is_empty()
                {
                    devs.clone_from(&ifaces);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                errors.extend(ok.iter().map(|s| DataPlaneError {
                    key: s.key,
                    error: io::Error::other(msg.clone()),
                }));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The table as applied, with connection counts at 0: [`count_connections`] reads them
    /// from the kernel (blocking).
    fn stats(&self) -> Vec<ServiceStats> {
        self.applied
            .iter()
            .map(|spec| ServiceStats {
                key: spec.key,
                sched: spec.sched,
                flags: spec.flags,
                persistence: spec.persistence,
                persistence_prefix: spec.persistence.and(spec.persistence_prefix),
                one_packet: false,
                persistence_engine: None,
                // nftables keeps no per-server totals (see [`count_connections`]).
                counted: crate::Counted::default(),
                dests: spec
                    .dests
                    .iter()
                    .map(|d| DestStats {
                        addr: Some(d.addr),
                        weight: d.weight,
                        method: d.method,
                        ..DestStats::default()
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DestSpec;
    use std::time::Duration;

    #[test]
    fn a_missing_tool_is_named_with_its_package() {
        let e = json_of("holdfast-no-such-tool", &["list"]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with("`holdfast-no-such-tool` not found"),
            "{e}"
        );
        let e = tool_error("nft", io::Error::from(io::ErrorKind::NotFound));
        assert!(e.to_string().contains("apt install nftables"), "{e}");
        let e = tool_error("ip", io::Error::from(io::ErrorKind::NotFound));
        assert!(e.to_string().contains("apt install iproute2"), "{e}");
    }

    fn spec(sched: Kind, dests: &[(&str, u32)]) -> ServiceSpec {
        let dests = dests
            .iter()
            .map(|(a, w)| DestSpec::new(a.parse().unwrap(), *w))
            .collect();
        ServiceSpec::new(
            ServiceKey::tcp("10.0.0.1:3306".parse().unwrap()),
            sched,
            dests,
        )
    }

    fn buckets(spec: &ServiceSpec) -> Vec<SocketAddr> {
        match choice(spec) {
            Some(Choice::Buckets(_, l)) => l,
            Some(Choice::One(a)) => vec![a],
            None => Vec::new(),
        }
    }

    #[test]
    fn wrr_lists_each_server_by_weight_and_weight_zero_takes_nothing() {
        let l = buckets(&spec(
            Kind::Wrr,
            &[
                ("10.0.5.2:3306", 200),
                ("10.0.5.3:3306", 100),
                ("10.0.5.4:3306", 0),
            ],
        ));
        let a: SocketAddr = "10.0.5.2:3306".parse().unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l.iter().filter(|x| **x == a).count(), 2);
        assert!(
            !l.iter()
                .any(|x| x.port() == 3306 && x.ip().to_string() == "10.0.5.4")
        );
        // No live server: no rule.
        assert!(rule(&spec(Kind::Rr, &[("10.0.5.2:3306", 0)])).is_none());
    }

    #[test]
    fn sh_and_mh_use_ipvs_tables_and_fo_the_heaviest() {
        let s = spec(Kind::Sh, &[("10.0.5.2:3306", 1), ("10.0.5.3:3306", 3)]);
        let l = buckets(&s);
        assert_eq!(l.len(), sched::HASH_TABLE_SIZE);
        assert_eq!(
            l.iter()
                .filter(|a| a.ip().to_string() == "10.0.5.3")
                .count(),
            192
        );
        let m = buckets(&spec(
            Kind::Mh,
            &[("10.0.5.2:3306", 1), ("10.0.5.3:3306", 1)],
        ));
        assert_eq!(m.len(), sched::MH_TABLE_SIZE);
        let f = buckets(&spec(
            Kind::Fo,
            &[("10.0.5.2:3306", 1), ("10.0.5.3:3306", 5)],
        ));
        assert_eq!(f, vec!["10.0.5.3:3306".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn what_rules_cannot_express_is_refused_with_the_reason() {
        assert!(unsupported(&spec(Kind::Wlc, &[])).unwrap().contains("wlc"));
        let mut p = spec(Kind::Rr, &[]);
        p.persistence = Some(Duration::from_secs(60));
        assert!(unsupported(&p).is_none());
        p.persistence_engine = Some("sip".into());
        assert!(
            unsupported(&p)
                .unwrap()
                .contains("persistence engines are IPVS's")
        );
        let mut d = spec(Kind::Rr, &[("10.0.5.2:3306", 1), ("10.0.5.3:3306", 1)]);
        d.dests[0].method = Forward::Route;
        assert!(unsupported(&d).unwrap().contains("mixing"));
        d.dests[1].method = Forward::Route;
        assert!(unsupported(&d).is_none());
        d.key = ServiceKey::Fwmark { mark: 7, v6: false };
        assert!(unsupported(&d).unwrap().contains("fwmark"));
        d.dests[0].method = Forward::Tunnel;
        assert!(unsupported(&d).unwrap().contains("TUN"));
        assert!(unsupported(&spec(Kind::Dh, &[("10.0.5.2:3306", 1)])).is_none());
    }

    #[test]
    fn the_fast_path_offloads_each_nat_service_by_its_original_destination() {
        let r = offload(&spec(Kind::Rr, &[("10.0.5.2:3306", 1)])).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        // As `nft -j list` prints `meta l4proto tcp ct original ip daddr 10.0.0.1 ct original
        // proto-dst 3306 flow add @ft`.
        assert_eq!(
            json,
            r#"[{"match":{"left":{"meta":{"key":"l4proto"}},"right":"tcp","op":"=="}},{"match":{"left":{"ct":{"key":"ip daddr","dir":"original"}},"right":"10.0.0.1","op":"=="}},{"match":{"left":{"ct":{"key":"proto-dst","dir":"original"}},"right":3306,"op":"=="}},{"flow":{"op":"add","flowtable":"@ft"}}]"#
        );
        let mut mark = spec(Kind::Rr, &[("10.0.5.2:3306", 1)]);
        mark.key = ServiceKey::Fwmark { mark: 7, v6: true };
        let json = serde_json::to_string(&offload(&mark).unwrap()).unwrap();
        assert!(
            json.contains(r#"{"match":{"left":{"meta":{"key":"mark"}},"right":7,"op":"=="}},{"match":{"left":{"ct":{"key":"status"}},"right":"dnat","op":"in"}}"#),
            "{json}"
        );
        let mut sctp = spec(Kind::Rr, &[("10.0.5.2:3306", 1)]);
        sctp.key = ServiceKey::Addr {
            proto: Proto::Sctp,
            addr: "10.0.0.1:3306".parse().unwrap(),
        };
        assert!(offload(&sctp).is_none());
    }

    #[test]
    fn the_rule_serialises_as_nft_reads_it() {
        let r = rule(&spec(
            Kind::Rr,
            &[("10.0.5.2:3306", 1), ("10.0.5.3:3306", 1)],
        ))
        .unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.contains(r#"{"dnat":{"addr":{"map":{"key":{"numgen":{"mode":"inc","mod":2}},"data":{"set":[[0,{"concat":["10.0.5.2",3306]}],[1,{"concat":["10.0.5.3",3306]}]]}}},"family":"ip"}}"#),
            "{json}"
        );
    }
}
