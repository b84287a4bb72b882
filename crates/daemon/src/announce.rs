//! `bgp_announce`: a route per prefix in the table the site's BGP speaker imports, held
//! while every virtual server the block tracks has its quorum and every tracker it follows
//! agrees ([`Gate`]), removed when not, at stop, and by the guardian if the daemon dies. The
//! speaker turns the route into an announcement (FRR: `ip import-table N` with
//! `redistribute table N`; BIRD: a `kernel` protocol on table N with `learn`); holdfast
//! speaks no BGP itself. The routes go through lo and carry keepalived's protocol number.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use holdfast_lb::announce::Gate;
use holdfast_sys::route::{add_route, del_route};
use holdfast_sys::vip::Handle;
use tokio::sync::mpsc;

use crate::guardian::Guardian;
use crate::logging::Logger;
use crate::plan::AnnouncePlan;
use crate::routing::announced_route;
use crate::services::Services;
use crate::track::{TrackEv, Trackers};

/// The trackers' last states, by (announcement, tracker): a reload starts the trackers again
/// from them, so that one that was down does not announce until its first result.
type Memory = Arc<Mutex<HashMap<(String, String), bool>>>;

/// Who must know which announcements are made: the guardian (to withdraw them if the daemon
/// dies) and the stop (to withdraw them, saying so, and to remove quietly what was not made).
#[derive(Clone, Default)]
struct Record {
    guardian: Option<Arc<Guardian>>,
    made: Arc<Mutex<BTreeSet<String>>>,
}

impl Record {
    /// Announcement `name` holds `routes` now (none: withdrawn).
    fn holds(&self, name: &str, routes: &[(IpAddr, u8, u32)]) {
        if let Some(g) = &self.guardian {
            g.announced(name, routes);
        }
        if let Ok(mut m) = self.made.lock() {
            if routes.is_empty() {
                m.remove(name);
            } else {
                m.insert(name.to_string());
            }
        }
    }

    fn made(&self, name: &str) -> bool {
        self.made.lock().is_ok_and(|m| m.contains(name))
    }
}

/// The running announcements.
pub struct Announcer {
    plans: Vec<AnnouncePlan>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    memory: Memory,
    services: Arc<Services>,
    planes: Arc<crate::lvs::Planes>,
    record: Record,
    log: Logger,
}

impl Announcer {
    /// Starts every announcement of `plans`; an announcement is made once `planes` hold the
    /// services it tracks.
    pub fn start(
        plans: Vec<AnnouncePlan>,
        services: Arc<Services>,
        planes: Arc<crate::lvs::Planes>,
        guardian: Option<Arc<Guardian>>,
        log: Logger,
    ) -> Announcer {
        let mut a = Announcer {
            plans: Vec::new(),
            tasks: Vec::new(),
            memory: Memory::default(),
            services,
            planes,
            record: Record {
                guardian,
                made: Arc::default(),
            },
            log,
        };
        a.spawn(plans);
        a
    }

    fn spawn(&mut self, plans: Vec<AnnouncePlan>) {
        if plans.iter().any(|p| p.on_ipvs) {
            sloppy_ipvs(self.log);
        }
        self.tasks = plans
            .iter()
            .map(|p| {
                tokio::spawn(run(
                    p.clone(),
                    self.services.clone(),
                    self.planes.clone(),
                    self.record.clone(),
                    self.memory.clone(),
                    self.log,
                ))
            })
            .collect();
        self.plans = plans;
    }

    /// Replaces the announcements with `plans`'; a route no announcement of `plans` holds is
    /// withdrawn.
    pub async fn reload(&mut self, plans: Vec<AnnouncePlan>) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let kept: BTreeSet<(IpAddr, u8, u32)> = plans.iter().flat_map(|p| p.routes()).collect();
        let old = std::mem::take(&mut self.plans);
        let gone: Vec<&AnnouncePlan> = old
            .iter()
            .filter(|o| !plans.iter().any(|p| p.name == o.name))
            .collect();
        if let Ok(h) = holdfast_sys::vip::connect() {
            for p in &old {
                let made = self.record.made(&p.name);
                for r in p.routes().filter(|r| !kept.contains(r)) {
                    if made {
                        withdraw_one(&h, &p.name, r, "no longer configured", self.log).await;
                    } else {
                        let _ = del_route(&h, &announced_route(r.0, r.1, r.2, None)).await;
                    }
                }
            }
        }
        for p in gone {
            self.record.holds(&p.name, &[]);
        }
        self.spawn(plans);
    }

    /// Withdraws every announcement (a clean stop).
    pub async fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let Ok(h) = holdfast_sys::vip::connect() else {
            return;
        };
        for p in &self.plans {
            let made = self.record.made(&p.name);
            for r in p.routes() {
                if made {
                    withdraw_one(&h, &p.name, r, "stopping", self.log).await;
                } else {
                    let _ = del_route(&h, &announced_route(r.0, r.1, r.2, None)).await;
                }
            }
            self.record.holds(&p.name, &[]);
        }
    }
}

/// IPVS schedules a TCP or SCTP connection only from its first packet unless told to take
/// any: a connection that equal-cost routing moves here from another director would be
/// refused. With `mh` every director then picks the same real server for it.
fn sloppy_ipvs(log: Logger) {
    for key in ["sloppy_tcp", "sloppy_sctp"] {
        let path = format!("/proc/sys/net/ipv4/vs/{key}");
        match std::fs::write(&path, "1") {
            Ok(()) => log.check(&format!(
                "bgp_announce: net.ipv4.vs.{key} set to 1 (IPVS takes up a connection from any of its packets, so one moved here from another director keeps its real server)"
            )),
            Err(e) => log.check(&format!(
                "WARNING - bgp_announce: cannot set net.ipv4.vs.{key}: {e} (connections moved here from another director will be refused)"
            )),
        }
    }
}

async fn withdraw_one(h: &Handle, name: &str, r: (IpAddr, u8, u32), why: &str, log: Logger) {
    let (addr, len, table) = r;
    match del_route(h, &announced_route(addr, len, table, None)).await {
        Ok(()) => log.check(&format!(
            "bgp_announce {name}: withdrawing {addr}/{len} from table {table} ({why})"
        )),
        Err(e) => log.check(&format!(
            "bgp_announce {name}: cannot withdraw {addr}/{len} from table {table}: {e}"
        )),
    }
}

/// What changes an announcement's gate.
enum Ev {
    /// Tracked virtual server `i`'s quorum.
    Quorum(usize, bool),
    /// A tracker's report.
    Tracker(TrackEv),
}

/// The announcement's helpers — its event forwarders and trackers — stopped when it is
/// (its task aborted at a reload or stop).
struct Helpers {
    forwarders: Vec<tokio::task::JoinHandle<()>>,
    trackers: Option<Box<Trackers>>,
}

impl Drop for Helpers {
    fn drop(&mut self) {
        for t in &self.forwarders {
            t.abort();
        }
        Trackers::stop(&mut self.trackers);
    }
}

async fn run(
    plan: AnnouncePlan,
    services: Arc<Services>,
    planes: Arc<crate::lvs::Planes>,
    record: Record,
    memory: Memory,
    log: Logger,
) {
    let name = plan.name.clone();
    let h = match holdfast_sys::vip::connect() {
        Ok(h) => h,
        Err(e) => {
            log.check(&format!(
                "bgp_announce {name}: cannot open rtnetlink: {e}; not announced"
            ));
            return;
        }
    };
    let lo = holdfast_sys::iface::index("lo").ok();
    let (tx, mut rx) = mpsc::channel::<Ev>(64);
    let mut forwarders = Vec::new();
    let mut quorum = Vec::new();
    for (i, vs) in plan.services.iter().enumerate() {
        let mut w = services.quorums.watch(vs);
        quorum.push(w.borrow_and_update().unwrap_or(false));
        let tx = tx.clone();
        forwarders.push(tokio::spawn(async move {
            while w.changed().await.is_ok() {
                let up = w.borrow_and_update().unwrap_or(false);
                if tx.send(Ev::Quorum(i, up)).await.is_err() {
                    break;
                }
            }
        }));
    }
    // Trackers start where the last run of this announcement left them.
    let remembered = |t: &str| {
        memory
            .lock()
            .ok()
            .and_then(|m| m.get(&(name.clone(), t.to_string())).copied())
    };
    let mut trackers = Vec::new();
    let mut states = Vec::new();
    for (t, reverse) in &plan.trackers {
        let mut t = t.clone();
        let up = remembered(&t.name).unwrap_or(!t.init_fail);
        t.init_fail = !up;
        states.push((up, *reverse));
        trackers.push(t);
    }
    let mut helpers = Helpers {
        forwarders: Vec::new(),
        trackers: None,
    };
    Trackers::restart(
        &mut helpers.trackers,
        &format!("bgp_announce {name}"),
        &trackers,
        &services,
        log,
    );
    if let Some((_, mut trx)) = helpers.trackers.as_mut().and_then(|t| t.chan.take()) {
        let tx = tx.clone();
        forwarders.push(tokio::spawn(async move {
            while let Some(ev) = trx.recv().await {
                if tx.send(Ev::Tracker(ev)).await.is_err() {
                    break;
                }
            }
        }));
    }
    helpers.forwarders = forwarders;
    drop(tx);
    let mut gate = Gate::new(quorum, states);
    if gate.up() {
        ready(&planes, &name, log).await;
        set(&h, &plan, lo, true, &record, "", log).await;
    } else {
        // Not healthy yet: a route left by an earlier run goes, without a word (nothing was
        // announced by this one).
        for (addr, len, table) in plan.routes() {
            let _ = del_route(&h, &announced_route(addr, len, table, None)).await;
        }
        log.check(&format!(
            "bgp_announce {name}: not announcing until what it tracks is healthy"
        ));
    }
    while let Some(ev) = rx.recv().await {
        let (changed, why) = match ev {
            Ev::Quorum(i, up) => {
                let vs = plan.services.get(i).map_or("", String::as_str);
                let why = if up {
                    format!("VS {vs} has its quorum")
                } else {
                    format!("VS {vs} lost its quorum")
                };
                (gate.set_service(i, up), why)
            }
            Ev::Tracker(ev) => {
                let (i, up) = match ev {
                    TrackEv::Up(i, up) => (i, up),
                    // A value tracker with no weight: a non-zero value is a failure.
                    TrackEv::Value(i, v) => (i, v == 0),
                };
                if let Some(c) = helpers.trackers.as_ref().and_then(|t| t.cells.get(i)) {
                    c.set_up(up);
                }
                let t = trackers.get(i).map_or("", |t| t.name.as_str());
                if let Ok(mut m) = memory.lock() {
                    m.insert((name.clone(), t.to_string()), up);
                }
                let kind = trackers.get(i).map_or("tracker", |t| t.kind.keyword());
                let why = format!("{kind} {t} is {}", if up { "up" } else { "down" });
                (gate.set_tracker(i, up), why)
            }
        };
        if let Some(up) = changed {
            if up {
                ready(&planes, &name, log).await;
            }
            set(&h, &plan, lo, up, &record, &why, log).await;
        }
    }
}

/// How long an announcement waits for the data planes to hold the services it tracks.
const READY_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until the data planes hold what they were handed: traffic the announcement draws
/// must find the service's rules in place (a large nftables table takes a while to load).
async fn ready(planes: &crate::lvs::Planes, name: &str, log: Logger) {
    if tokio::time::timeout(READY_LIMIT, planes.applied())
        .await
        .is_err()
    {
        log.check(&format!(
            "bgp_announce {name}: the data plane did not apply its table within {} s; announcing anyway",
            READY_LIMIT.as_secs()
        ));
    }
}

/// Adds (`up`) or removes every route of `plan`; the record (the guardian) learns first what
/// would have to be withdrawn, so that no route is ever left without it knowing.
async fn set(
    h: &Handle,
    plan: &AnnouncePlan,
    lo: Option<u32>,
    up: bool,
    record: &Record,
    why: &str,
    log: Logger,
) {
    let name = &plan.name;
    let routes: Vec<(IpAddr, u8, u32)> = plan.routes().collect();
    let because = if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    };
    if up {
        // Set again after a reload, an announcement already made is not announced anew.
        let again = record.made(name);
        record.holds(name, &routes);
        for &(addr, len, table) in &routes {
            match add_route(h, &announced_route(addr, len, table, lo)).await {
                Ok(()) if again => {}
                Ok(()) => log.check(&format!(
                    "bgp_announce {name}: announcing {addr}/{len} in table {table}{because}"
                )),
                Err(e) => log.check(&format!(
                    "bgp_announce {name}: cannot announce {addr}/{len} in table {table}: {e}"
                )),
            }
        }
    } else {
        for &r in &routes {
            withdraw_one(h, name, r, why, log).await;
        }
        record.holds(name, &[]);
    }
}

/// The FRR configuration that announces `plans`' routes from BGP AS `asn`: per table, a
/// route-map admitting each block's IPv4 prefixes with its community, MED and next hop (and
/// nothing else found in the table), `ip import-table`, and `redistribute table` under
/// `router bgp`. FRR takes IPv4 routes only from a table (`ip import-table`; there is no IPv6
/// form in FRR 8.4), so a block's IPv6 prefixes are named in a comment for another speaker.
pub fn frr_config(plans: &[AnnouncePlan], asn: u32) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "! holdfast: the bgp_announce blocks' routes, imported from their tables and announced\n\
         ! with their attributes. Paste beside your own router bgp settings (neighbors).\n",
    );
    let tables: BTreeSet<u32> = plans.iter().map(|p| p.table).collect();
    for p in plans {
        let v4: Vec<&(IpAddr, u8)> = p.prefixes.iter().filter(|(a, _)| a.is_ipv4()).collect();
        for (i, (a, l)) in v4.iter().enumerate() {
            let _ = writeln!(
                out,
                "ip prefix-list holdfast-{} seq {} permit {a}/{l}",
                p.name,
                5 * (i + 1)
            );
        }
        for (a, l) in p.prefixes.iter().filter(|(a, _)| a.is_ipv6()) {
            let _ = writeln!(
                out,
                "! bgp_announce {}: {a}/{l} is in table {} for a speaker that imports IPv6 from a table (BIRD); FRR 8.4 has no ipv6 import-table",
                p.name, p.table
            );
        }
    }
    for t in &tables {
        let mut seq = 0;
        for p in plans
            .iter()
            .filter(|p| p.table == *t && p.prefixes.iter().any(|(a, _)| a.is_ipv4()))
        {
            seq += 10;
            let _ = writeln!(out, "route-map holdfast-table-{t} permit {seq}");
            let _ = writeln!(out, " match ip address prefix-list holdfast-{}", p.name);
            let (standard, large): (Vec<&String>, Vec<&String>) = p
                .communities
                .iter()
                .partition(|c| c.matches(':').count() < 2);
            if !standard.is_empty() {
                let words: Vec<&str> = standard.iter().map(|c| c.as_str()).collect();
                let _ = writeln!(out, " set community {} additive", words.join(" "));
            }
            if !large.is_empty() {
                let words: Vec<&str> = large.iter().map(|c| c.as_str()).collect();
                let _ = writeln!(out, " set large-community {} additive", words.join(" "));
            }
            if let Some(m) = p.med {
                let _ = writeln!(out, " set metric {m}");
            }
            if let Some(h) = p.next_hops.iter().find(|h| h.is_ipv4()) {
                let _ = writeln!(out, " set ip next-hop {h}");
            }
            out.push_str("exit\n");
        }
        if seq > 0 {
            let _ = writeln!(out, "ip import-table {t}");
        }
    }
    let _ = writeln!(out, "router bgp {asn}");
    out.push_str(" address-family ipv4 unicast\n");
    for t in &tables {
        let any = plans
            .iter()
            .any(|p| p.table == *t && p.prefixes.iter().any(|(a, _)| a.is_ipv4()));
        if any {
            let _ = writeln!(out, "  redistribute table {t} route-map holdfast-table-{t}");
        }
    }
    out.push_str(" exit-address-family\nexit\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(name: &str, table: u32, prefixes: &[&str]) -> AnnouncePlan {
        AnnouncePlan {
            name: name.into(),
            prefixes: prefixes
                .iter()
                .map(|p| {
                    let (a, l) = p.split_once('/').unwrap();
                    (a.parse().unwrap(), l.parse().unwrap())
                })
                .collect(),
            table,
            services: Vec::new(),
            trackers: Vec::new(),
            on_ipvs: false,
            communities: Vec::new(),
            med: None,
            next_hops: Vec::new(),
        }
    }

    #[test]
    fn frr_gets_a_route_map_per_table_with_each_blocks_attributes() {
        let mut web = plan(
            "web",
            100,
            &["192.0.2.10/32", "192.0.2.11/32", "2001:db8::/64"],
        );
        web.communities = vec!["65001:100".into(), "no-export".into(), "65001:1:2".into()];
        web.med = Some(50);
        web.next_hops = vec!["2001:db8::1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let db = plan("db", 100, &["192.0.2.20/32"]);
        let other = plan("other", 101, &["198.51.100.0/24"]);
        let text = frr_config(&[web, db, other], 65001);
        let expected = "\
ip prefix-list holdfast-web seq 5 permit 192.0.2.10/32
ip prefix-list holdfast-web seq 10 permit 192.0.2.11/32
! bgp_announce web: 2001:db8::/64 is in table 100 for a speaker that imports IPv6 from a table (BIRD); FRR 8.4 has no ipv6 import-table
ip prefix-list holdfast-db seq 5 permit 192.0.2.20/32
ip prefix-list holdfast-other seq 5 permit 198.51.100.0/24
route-map holdfast-table-100 permit 10
 match ip address prefix-list holdfast-web
 set community 65001:100 no-export additive
 set large-community 65001:1:2 additive
 set metric 50
 set ip next-hop 10.0.0.2
exit
route-map holdfast-table-100 permit 20
 match ip address prefix-list holdfast-db
exit
ip import-table 100
route-map holdfast-table-101 permit 10
 match ip address prefix-list holdfast-other
exit
ip import-table 101
router bgp 65001
 address-family ipv4 unicast
  redistribute table 100 route-map holdfast-table-100
  redistribute table 101 route-map holdfast-table-101
 exit-address-family
exit
";
        let body: String = text.lines().skip(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(body, expected);
    }
}
