//! keepalived's routing entries: an instance's `virtual_routes` and `virtual_rules`, installed
//! while it is MASTER (after its VIPs, and removed before them), and the configuration's
//! `static_ipaddress`, `static_routes` and `static_rules`, installed at start and removed at
//! stop. Routes and rules carry keepalived's protocol number unless `no_track`; one removed by
//! someone else is put back (keepalived reinstates static ones; a MASTER here restores its
//! virtual ones as it restores its VIPs).

use std::io;
use std::sync::OnceLock;

use holdfast_config::model::{Route, RouteMode, Rule, RuleAction};
use holdfast_sys::route::{Deleted, HopSpec, Mode, RouteSpec, RuleSpec};
use holdfast_sys::vip::Handle;
use holdfast_sys::vip::{self, VipSpec};
use tokio::sync::{broadcast, mpsc};

use crate::logging::Logger;

/// keepalived's protocol number for what it installs (RTPROT_KEEPALIVED).
const PROTO: u8 = 18;

/// The route a `bgp_announce` block holds for `addr/len` in `table` while announced: through
/// lo (its index when known: a route to remove matches without it), with keepalived's
/// protocol number. The announcer adds and removes it; the guardian removes it if the daemon
/// dies.
pub fn announced_route(addr: std::net::IpAddr, len: u8, table: u32, lo: Option<u32>) -> RouteSpec {
    RouteSpec::through_lo((addr, len), table, lo, PROTO)
}

/// An instance's or the configuration's routes and rules, as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    /// Routes.
    pub routes: Vec<Route>,
    /// Rules.
    pub rules: Vec<Rule>,
}

impl Routing {
    /// Whether there is nothing to install.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.rules.is_empty()
    }
}

/// A route resolved for the kernel, with what it was made from.
#[derive(Clone, Debug)]
pub struct Installed<T, S> {
    /// As configured.
    pub conf: T,
    /// As sent.
    pub spec: S,
}

/// Routes and rules resolved against the host's interfaces.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// Routes.
    pub routes: Vec<Installed<Route, RouteSpec>>,
    /// Rules.
    pub rules: Vec<Installed<Rule, RuleSpec>>,
}

/// The route for the kernel: interfaces by index.
pub fn route_spec(r: &Route) -> io::Result<RouteSpec> {
    let index = |dev: &Option<String>| -> io::Result<Option<u32>> {
        dev.as_deref().map(holdfast_sys::iface::index).transpose()
    };
    Ok(RouteSpec {
        v6: r.v6,
        kind: r.kind,
        dst: r.dst,
        from: r.from,
        src: r.src,
        via: r.via,
        oif: index(&r.dev)?,
        table: r.table,
        // keepalived marks every route it installs as its own, `no_track` ones too (only
        // rules without tracking go without a protocol).
        protocol: Some(r.protocol.unwrap_or(PROTO)),
        scope: r.scope,
        metric: r.metric,
        tos: r.tos,
        onlink: r.onlink,
        metrics: r.metrics.clone(),
        nexthops: r
            .nexthops
            .iter()
            .map(|h| {
                Ok(HopSpec {
                    via: h.via,
                    oif: index(&h.dev)?,
                    weight: h.weight,
                    onlink: h.onlink,
                })
            })
            .collect::<io::Result<_>>()?,
        mode: match r.mode {
            RouteMode::Prepend => Mode::Prepend,
            RouteMode::Add => Mode::Add,
            RouteMode::Append => Mode::Append,
        },
    })
}

/// The rule for the kernel.
pub fn rule_spec(r: &Rule) -> RuleSpec {
    let (action, target) = match r.action {
        RuleAction::Table(t) => (1, t),
        RuleAction::Goto(g) => (2, g),
        RuleAction::Nop => (3, 0),
        RuleAction::Blackhole => (6, 0),
        RuleAction::Unreachable => (7, 0),
        RuleAction::Prohibit => (8, 0),
    };
    RuleSpec {
        v6: r.v6,
        invert: r.invert,
        from: r.from,
        to: r.to,
        priority: r.priority,
        action,
        target,
        tos: r.tos,
        fwmark: r.fwmark,
        iif: r.iif.clone(),
        oif: r.oif.clone(),
        suppress_prefixlen: r.suppress_prefixlen,
        ipproto: r.ipproto,
        sport: r.sport,
        dport: r.dport,
        protocol: r.protocol,
    }
}

/// Resolves `routing`; an entry whose interface has gone is logged and left out.
pub fn resolve(routing: &Routing, who: &str, log: Logger) -> Resolved {
    let mut out = Resolved::default();
    for r in &routing.routes {
        match route_spec(r) {
            Ok(spec) => out.routes.push(Installed {
                conf: r.clone(),
                spec,
            }),
            Err(e) => log.vrrp(&format!(
                "{who}cannot resolve route {}: {e}",
                describe_route(r)
            )),
        }
    }
    for r in &routing.rules {
        out.rules.push(Installed {
            conf: r.clone(),
            spec: rule_spec(r),
        });
    }
    out
}

/// A route as keepalived's messages show it (its `format_iproute`).
pub fn describe_route(r: &Route) -> String {
    let mut s = String::from(match r.mode {
        RouteMode::Add => "add",
        RouteMode::Append => "append",
        RouteMode::Prepend => "prepend",
    });
    s.push(' ');
    s.push_str(&holdfast_config::print::route_line(r));
    s
}

/// A rule as keepalived's messages show it.
pub fn describe_rule(r: &Rule) -> String {
    holdfast_config::print::rule_line(r)
}

impl Resolved {
    /// Installs the routes, then the rules (keepalived's order after the VIPs).
    pub async fn install(&self, nl: &Handle, who: &str, log: Logger) {
        for r in &self.routes {
            if let Err(e) = holdfast_sys::route::add_route(nl, &r.spec).await {
                log.vrrp(&format!(
                    "{who}cannot add route {}: {e}",
                    describe_route(&r.conf)
                ));
            }
        }
        for r in &self.rules {
            if let Err(e) = holdfast_sys::route::add_rule(nl, &r.spec).await {
                log.vrrp(&format!(
                    "{who}cannot add rule {}: {e}",
                    describe_rule(&r.conf)
                ));
            }
        }
    }

    /// Removes the rules, then the routes (keepalived's order before the VIPs).
    pub async fn remove(&self, nl: &Handle, who: &str, log: Logger) {
        for r in &self.rules {
            if let Err(e) = holdfast_sys::route::del_rule(nl, &r.spec).await {
                log.vrrp(&format!(
                    "{who}cannot remove rule {}: {e}",
                    describe_rule(&r.conf)
                ));
            }
        }
        for r in &self.routes {
            if let Err(e) = holdfast_sys::route::del_route(nl, &r.spec).await {
                log.vrrp(&format!(
                    "{who}cannot remove route {}: {e}",
                    describe_route(&r.conf)
                ));
            }
        }
    }

    /// What `self` has that `other` has not (the same configured entry and spec).
    pub fn minus(&self, other: &Resolved) -> Resolved {
        Resolved {
            routes: self
                .routes
                .iter()
                .filter(|r| !other.routes.iter().any(|o| o.spec == r.spec))
                .cloned()
                .collect(),
            rules: self
                .rules
                .iter()
                .filter(|r| !other.rules.iter().any(|o| o.spec == r.spec))
                .cloned()
                .collect(),
        }
    }

    /// Puts back a tracked entry `d` names, if it is one of these; returns its description.
    pub async fn reinstate(&self, nl: &Handle, d: &Deleted) -> Option<(&'static str, String)> {
        for r in self.routes.iter().filter(|r| r.conf.track) {
            if r.spec.is(d) {
                let _ = holdfast_sys::route::add_route(nl, &r.spec).await;
                return Some(("route", describe_route(&r.conf)));
            }
        }
        for r in self.rules.iter().filter(|r| r.conf.track) {
            if r.spec.is(d) {
                let _ = holdfast_sys::route::add_rule(nl, &r.spec).await;
                return Some(("rule", describe_rule(&r.conf)));
            }
        }
        None
    }
}

/// Deletions of routes and rules carrying keepalived's protocol, for every subscriber of the
/// process (one netlink socket, started by the first subscriber).
pub fn deletions() -> broadcast::Receiver<Deleted> {
    static TX: OnceLock<broadcast::Sender<Deleted>> = OnceLock::new();
    TX.get_or_init(|| {
        let (btx, _) = broadcast::channel(256);
        let fan = btx.clone();
        tokio::spawn(async move {
            let (tx, mut rx) = mpsc::channel(256);
            tokio::spawn(holdfast_sys::route::watch_deletions(PROTO, tx));
            while let Some(d) = rx.recv().await {
                let _ = fan.send(d);
            }
        });
        btx
    })
    .subscribe()
}

/// The configuration's static entries while the daemon runs.
pub struct Statics {
    addresses: Vec<VipSpec>,
    resolved: Resolved,
    watch: Option<tokio::task::JoinHandle<()>>,
    /// One task per interface carrying static addresses, putting back those removed.
    address_watch: Vec<tokio::task::JoinHandle<()>>,
    nl: Option<Handle>,
}

impl Statics {
    /// Installs the static addresses, routes and rules (in keepalived's order) and puts back
    /// any tracked one that someone removes, logging keepalived's line.
    pub async fn start(addresses: Vec<VipSpec>, routing: &Routing, log: Logger) -> Statics {
        let mut s = Statics {
            addresses,
            resolved: resolve(routing, "", log),
            watch: None,
            address_watch: Vec::new(),
            nl: None,
        };
        if s.addresses.is_empty() && s.resolved.routes.is_empty() && s.resolved.rules.is_empty() {
            return s;
        }
        let nl = match vip::connect() {
            Ok(h) => h,
            Err(e) => {
                log.vrrp(&format!(
                    "cannot open rtnetlink for the static entries: {e}"
                ));
                return s;
            }
        };
        for a in &s.addresses {
            if let Err(e) = vip::add(&nl, a).await {
                log.vrrp(&format!("cannot add static address {}: {e}", a.addr));
            }
        }
        s.resolved.install(&nl, "", log).await;
        s.nl = Some(nl);
        s.rewatch(log);
        s
    }

    fn rewatch(&mut self, log: Logger) {
        if let Some(w) = self.watch.take() {
            w.abort();
        }
        for w in self.address_watch.drain(..) {
            w.abort();
        }
        if let Some(nl) = self.nl.clone() {
            let mut ifindexes: Vec<u32> = self.addresses.iter().map(|a| a.ifindex).collect();
            ifindexes.sort_unstable();
            ifindexes.dedup();
            for ix in ifindexes {
                let mine: Vec<VipSpec> = self
                    .addresses
                    .iter()
                    .filter(|a| a.ifindex == ix)
                    .cloned()
                    .collect();
                let nl = nl.clone();
                let mut sub = Some(crate::nlhub::changes(ix));
                self.address_watch.push(tokio::spawn(async move {
                    loop {
                        if let Ok(crate::nlhub::Change::Addr(c)) =
                            crate::nlhub::next(&mut sub).await
                            && !c.added
                            && let Some(a) = mine.iter().find(|a| a.addr == c.addr)
                        {
                            let _ = vip::add(&nl, a).await;
                            log.vrrp(&format!(
                                "Restoring deleted static address {}/{}",
                                a.addr, a.prefix
                            ));
                        }
                    }
                }));
            }
        }
        let (Some(nl), false) = (
            self.nl.clone(),
            self.resolved.routes.is_empty() && self.resolved.rules.is_empty(),
        ) else {
            return;
        };
        let resolved = self.resolved.clone();
        let mut rx = deletions();
        self.watch = Some(tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(d) => {
                        if let Some((kind, what)) = resolved.reinstate(&nl, &d).await {
                            log.vrrp(&format!("Restoring deleted static {kind} {what}"));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }));
    }

    /// A reload: entries that went are removed, new ones added (keepalived's
    /// `clear_diff_static_*`).
    pub async fn reload(&mut self, addresses: Vec<VipSpec>, routing: &Routing, log: Logger) {
        let new = resolve(routing, "", log);
        if self.nl.is_none() && (!addresses.is_empty() || !routing.is_empty()) {
            self.nl = vip::connect().ok();
        }
        let Some(nl) = self.nl.clone() else {
            return;
        };
        // Not watched while changing: the old watch would put back what the reload removes.
        if let Some(w) = self.watch.take() {
            w.abort();
        }
        for w in self.address_watch.drain(..) {
            w.abort();
        }
        self.resolved.minus(&new).remove(&nl, "", log).await;
        for a in self.addresses.iter().filter(|a| !addresses.contains(a)) {
            let _ = vip::del(&nl, a).await;
        }
        for a in addresses.iter().filter(|a| !self.addresses.contains(a)) {
            if let Err(e) = vip::add(&nl, a).await {
                log.vrrp(&format!("cannot add static address {}: {e}", a.addr));
            }
        }
        new.minus(&self.resolved).install(&nl, "", log).await;
        self.addresses = addresses;
        self.resolved = new;
        self.rewatch(log);
    }

    /// Removes the rules, routes and addresses (keepalived's order at stop).
    pub async fn stop(mut self, log: Logger) {
        if let Some(w) = self.watch.take() {
            w.abort();
        }
        for w in self.address_watch.drain(..) {
            w.abort();
        }
        let Some(nl) = self.nl.take() else {
            return;
        };
        self.resolved.remove(&nl, "", log).await;
        for a in &self.addresses {
            let _ = vip::del(&nl, a).await;
        }
    }
}
