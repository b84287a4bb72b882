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
//! chain on every interface but loopback (frames addressed to this host only: a flooded one
//! is another host's business): per destination, a timed set of the connections it
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

mod host;
mod rules;

use host::*;
pub use host::{count_connections, direct_device, nft_input};
use rules::*;

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;

use holdfast_lb::sched::Kind;
use nftables::batch::Batch;
use nftables::expr::Expression;
use nftables::schema::{Chain, FlowTable, FlushObject, NfCmd, NfListObject, Rule, Table};
use nftables::stmt::Statement;
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

    /// The first rule of device `dev`'s ingress chain: a frame not addressed to this host
    /// (flooded by a switch that has not learnt, or no longer knows, where its MAC address
    /// is — another director's, say) goes on untouched. IPVS sees only what the IP layer
    /// accepts; without it every director on the segment would forward a flooded frame.
    fn only_for_this_host(&self, dev: &str) -> Rule<'static> {
        use nftables::expr::{Meta, MetaKey, NamedExpression};
        use nftables::stmt::{Match, Operator};
        Rule {
            family: NfFamily::NetDev,
            table: s(&self.table),
            chain: s(&format!("in_{dev}")),
            expr: Cow::Owned(vec![
                Statement::Match(Match {
                    left: Expression::Named(NamedExpression::Meta(Meta {
                        key: MetaKey::Pkttype,
                    })),
                    right: Expression::String(s("host")),
                    op: Operator::NEQ,
                }),
                Statement::Accept(None),
            ]),
            ..Rule::default()
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
            b.add(NfListObject::Rule(self.only_for_this_host(dev)));
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
        // every chain that goes is emptied before any is deleted (a chain cannot go while a
        // rule jumps to it: an ingress chain's rules jump to `d_` chains, `r_` chains to `d_`
        // chains), then the chains, then the sets (nor can a set while a rule uses it).
        let gone_chains: Vec<Chain<'static>> = self
            .objects
            .difference(&objects)
            .filter_map(|gone| match gone.strip_prefix("in_") {
                Some(dev) => Some(self.ingress_chain(dev)),
                None => ["c_", "d_", "r_"]
                    .iter()
                    .any(|p| gone.starts_with(p))
                    .then(|| self.regular_chain(gone)),
            })
            .collect();
        for c in &gone_chains {
            b.add_cmd(NfCmd::Flush(FlushObject::Chain(c.clone())));
        }
        for c in gone_chains {
            b.delete(NfListObject::Chain(c));
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
    use holdfast_lb::sched;
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
