//! The nftables plane's rules, built without I/O: each service's match, its DNAT or direct
//! forwarding, the scheduling expression, persistence and connection sets, the fast path's
//! offload rule.

use std::borrow::Cow;
use std::net::SocketAddr;

use holdfast_lb::sched::{self, Dest, Kind};
use nftables::expr::{CT, CTDir, Payload, PayloadField, SetItem};
use nftables::expr::{Expression, JHash, Map, Meta, MetaKey, NamedExpression, NgMode, Numgen};
use nftables::stmt::{Flow, Match, NAT, NATFamily, Operator, SetOp, Statement};

use crate::{Forward, Proto, ServiceKey, ServiceSpec};

use super::JHASH_SEED;

/// The flowtable's name in holdfast's `inet` table.
pub(super) const FLOWTABLE: &str = "ft";

/// The statements of one NAT service's rule in the `forward` chain offloading its
/// connections to the flowtable, matched by what conntrack recorded of their original
/// direction (every packet of the connection, either way, carries it): the service's
/// protocol, address and port, or for a fwmark service the mark with a DNAT done (only the
/// client's packets carry the mark). `None` for SCTP, which the flowtable cannot carry.
pub(super) fn offload(spec: &ServiceSpec) -> Option<Vec<Statement<'static>>> {
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

pub(super) fn s(v: &str) -> Cow<'static, str> {
    Cow::Owned(v.to_owned())
}

pub(super) fn field(protocol: &str, name: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: s(protocol),
            field: s(name),
        },
    )))
}

pub(super) fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

pub(super) fn target(a: SocketAddr) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![
        Expression::String(s(&a.ip().to_string())),
        Expression::Number(u32::from(a.port())),
    ]))
}

pub(super) fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The destination choice as (key expression, bucket → destination), or a single
/// destination.
pub(super) enum Choice {
    One(SocketAddr),
    Buckets(Expression<'static>, Vec<SocketAddr>),
}

pub(super) fn choice(spec: &ServiceSpec) -> Option<Choice> {
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
pub(super) fn ident(a: SocketAddr) -> String {
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
pub(super) enum Mode<'a> {
    Persist,
    Direct(&'a std::collections::BTreeMap<SocketAddr, String>),
}

/// The set and chain of destination `dest` of service `spec` in `mode`.
pub(super) fn sticky_names(
    spec: &ServiceSpec,
    dest: SocketAddr,
    mode: Mode<'_>,
) -> (String, String) {
    if let Mode::Direct(_) = mode {
        let (_, chain) = persist_names(spec, dest);
        let (open, _) = connection_sets(spec, dest);
        return (open, chain.replacen("c_", "d_", 1));
    }
    persist_names(spec, dest)
}

/// The sets of direct-return destination `dest`: the connections it serves (`k_`) and the
/// TCP connections among them whose client has sent a FIN (`f_`).
pub(super) fn connection_sets(spec: &ServiceSpec, dest: SocketAddr) -> (String, String) {
    let (_, chain) = persist_names(spec, dest);
    (chain.replacen("c_", "k_", 1), chain.replacen("c_", "f_", 1))
}

/// The persistence set and chain of direct-return destination `dest` (in the `netdev` table,
/// beside its connections).
pub(super) fn direct_persist_names(spec: &ServiceSpec, dest: SocketAddr) -> (String, String) {
    let (set, chain) = persist_names(spec, dest);
    (set.replacen("p_", "q_", 1), chain.replacen("c_", "r_", 1))
}

pub(super) fn persist_names(spec: &ServiceSpec, dest: SocketAddr) -> (String, String) {
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
pub(super) fn persist_key(spec: &ServiceSpec) -> Expression<'static> {
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
pub(super) fn l4proto(proto: Proto) -> Statement<'static> {
    eq(
        Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::L4proto,
        })),
        Expression::String(s(proto.keyword())),
    )
}

/// The statements matching a service's packets.
pub(super) fn service_match(spec: &ServiceSpec) -> Vec<Statement<'static>> {
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
pub(super) fn dnat(
    spec: &ServiceSpec,
    addr: Expression<'static>,
    port: Option<u16>,
) -> Statement<'static> {
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

pub(super) fn dnat_to(spec: &ServiceSpec, a: SocketAddr) -> Statement<'static> {
    dnat(
        spec,
        Expression::String(s(&a.ip().to_string())),
        Some(a.port()),
    )
}

/// The literal map `{ 0: f(first), 1: f(second), … }` from bucket numbers.
pub(super) fn buckets(
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
pub(super) fn rule(spec: &ServiceSpec) -> Option<Vec<Statement<'static>>> {
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
pub(super) struct Sticky {
    pub(super) base: Vec<Vec<Statement<'static>>>,
    pub(super) dests: Vec<StickyDest>,
}

/// One destination of a [`Sticky`] service.
pub(super) struct StickyDest {
    /// Its sets: the clients (persistence) or connections (direct return) it serves; for
    /// direct return, the TCP connections that have sent a FIN, and with persistence the
    /// clients it serves.
    pub(super) sets: Vec<String>,
    /// Its chains with their rules, each before any chain that jumps to it.
    pub(super) chains: Vec<(String, Vec<Vec<Statement<'static>>>)>,
}

/// How many entries a set of clients or connections may hold. nft gives a set that rules
/// fill 65 535 when it names no size; once full, a new entry fails, the rule with it, and the
/// connection is not forwarded at all. IPVS's connection table has no such bound; this one is
/// far above what a director sees live (an entry costs the kernel about 100 bytes).
pub(super) const SET_SIZE: u32 = 1 << 20;

/// Seconds a direct-return TCP connection stays known after a reset: IPVS's CLOSE state.
pub(super) const CLOSE_SECS: u32 = 10;

/// A set timeout in nft's whole seconds: `d` (at least 1 s), or `default` without one.
pub(super) fn set_secs(d: Option<std::time::Duration>, default: u64) -> u32 {
    u32::try_from(d.map_or(default, |d| d.as_secs().max(1))).unwrap_or(u32::MAX)
}

/// The key of a direct-return connection: the client's address and port.
pub(super) fn connection_key(spec: &ServiceSpec) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(vec![
        field(if spec.key.is_v6() { "ip6" } else { "ip" }, "saddr"),
        field("th", "sport"),
    ]))
}

/// Forwards the packet unchanged to `dest`'s MAC address on `dev` (LVS's DR).
pub(super) fn forward_to(spec: &ServiceSpec, dest: SocketAddr, dev: &str) -> Statement<'static> {
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
pub(super) fn sticky(spec: &ServiceSpec, mode: Mode<'_>, fin: u32) -> Option<Sticky> {
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
pub(super) fn is_direct(spec: &ServiceSpec) -> bool {
    route_only(spec.dests.iter().map(|d| d.method))
}

/// Whether there is at least one method and every one is DR.
pub(super) fn route_only(methods: impl IntoIterator<Item = Forward>) -> bool {
    let mut any = false;
    methods.into_iter().all(|m| {
        any = true;
        m == Forward::Route
    }) && any
}
