//! What an instance driver does to the host: VIPs (and their restoration when removed from
//! outside), gratuitous ARPs and neighbour adverts, routes and rules, the VRRP firewall, the
//! adverts it sends, notify scripts and FIFO lines on state changes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use holdfast_sys::garp::{Announcer, Garp, Unsolicited};
use holdfast_sys::iface;
use holdfast_sys::vip::Handle;
use holdfast_sys::vip::{self, VipSpec};
use holdfast_sys::vrrp_socket::VrrpSocket;
use holdfast_vrrp::router::{Output, State, VirtualRouter};
use tokio::sync::mpsc;

use crate::logging::Logger;
use crate::plan::InstancePlan;

use super::{DUMPS, Event, notify_commands, spawn_scripts, state_word};

/// `promote_secondaries`: sets the interface's sysctl while the instance runs, so removing a
/// VIP that is the interface's primary address in its subnet does not take the other
/// addresses of that subnet with it; put back at the end if holdfast changed it (as
/// keepalived does).
pub(super) struct Promote(Option<Arc<InstancePlan>>);

impl Promote {
    pub(super) fn path(ifname: &str) -> String {
        format!("/proc/sys/net/ipv4/conf/{ifname}/promote_secondaries")
    }

    pub(super) fn set(plan: &Arc<InstancePlan>, log: Logger) -> Promote {
        if !plan.promote_secondaries {
            return Promote(None);
        }
        let path = Promote::path(&plan.ifname);
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
            return Promote(None);
        }
        match std::fs::write(&path, "1") {
            Ok(()) => Promote(Some(plan.clone())),
            Err(e) => {
                log.vrrp(&format!(
                    "({}) cannot set promote_secondaries on {}: {e}",
                    plan.name, plan.ifname
                ));
                Promote(None)
            }
        }
    }
}

impl Drop for Promote {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::write(Promote::path(&p.ifname), "0");
        }
    }
}

/// Sends one gratuitous ARP / unsolicited NA for `a` (logged as keepalived logs it, or its
/// failure).
pub(super) fn announce_one(announcer: &Announcer, plan: &InstancePlan, log: Logger, a: IpAddr) {
    announce_on(announcer, &plan.name, &plan.ifname, log, a);
}

/// [`announce_one`] on interface `dev`.
pub(super) fn announce_on(announcer: &Announcer, name: &str, dev: &str, log: Logger, a: IpAddr) {
    if let Err(e) = announcer.send(a) {
        log.vrrp(&format!("({name}) announcing {a} on {dev} failed: {e}"));
    } else if log.detail {
        let one = if a.is_ipv4() {
            "gratuitous ARP"
        } else {
            "Unsolicited Neighbour Advert"
        };
        log.vrrp(&format!("Sending {one} on {dev} for {a}"));
    }
}

/// An announcer on another interface than the instance's, for the VIPs set there (`dev`):
/// keepalived announces each VIP on its own interface.
pub(super) async fn announcer_on(
    nl: &Handle,
    dev: &str,
    ifindex: u32,
    v6: bool,
) -> std::io::Result<Announcer> {
    let mac = iface::mac(dev)?;
    if !v6 {
        return Ok(Announcer::Arp(Garp::open(ifindex, mac)?));
    }
    let _dump = DUMPS.lock().await;
    match Box::pin(vip::link_local_v6(nl, ifindex)).await? {
        Some(IpAddr::V6(ll)) => Ok(Announcer::Na(Unsolicited::open(dev, ifindex, mac, ll)?)),
        _ => Err(std::io::Error::other(format!(
            "no IPv6 link-local address on {dev}"
        ))),
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        self.stop_burst();
    }
}

pub(super) struct Io {
    /// A digest of the adverts last handed to the guardian (a copy of them, allocated at the
    /// transition among the transition's short-lived allocations, stranded small chunks in
    /// the heap between the holes those left).
    pub(super) last_words: u64,
    /// Shared with the instance's task: a plan is large, and a task holding copies of it for
    /// its whole life costs kilobytes per instance.
    pub(super) plan: Arc<InstancePlan>,
    pub(super) sock: Arc<VrrpSocket>,
    pub(super) announcer: Announcer,
    /// A spaced announcement burst in progress ([`Io::announce`]).
    pub(super) burst: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// The burst on other interfaces, for VIPs set there.
    pub(super) others_burst: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    pub(super) nl: Handle,
    pub(super) src: Option<IpAddr>,
    pub(super) log: Logger,
    pub(super) ifindexes: Vec<u32>,
    pub(super) events: mpsc::UnboundedSender<(String, Event)>,
    /// Dropped-advert lines, rate limited (the counters count every one).
    pub(super) drop_log: crate::logging::DropLog,
    /// `virtual_routes` and `virtual_rules`, resolved; `None` without any.
    pub(super) routing: Option<Box<crate::routing::Resolved>>,
    /// The VRRP firewall (used when the plan says `no_accept`).
    pub(super) firewall: Arc<crate::firewall::FirewallPlan>,
    /// Alerts (mail, FIFOs) and health cells.
    pub(super) services: Arc<crate::services::Services>,
}

/// Something this MASTER holds removed from outside, beyond its own interface's addresses.
pub(super) enum Gone {
    /// An address from interface `.0` (a VIP's `dev`).
    Addr(u32, IpAddr),
    /// A route or rule (`virtual_routes`, `virtual_rules`).
    Routing(holdfast_sys::route::Deleted),
}

/// Removals of this instance's VIPs from interfaces other than its own (a VIP's `dev`), and of
/// its routes and rules: small tasks forward them into one queue, so the driver waits on one
/// receiver for all of them (each kind of wait held in every instance's task costs its room
/// a thousand times over). Nothing is spawned for an instance that has neither. The tasks end
/// with this value.
#[derive(Default)]
pub(super) struct Outside {
    pub(super) rx: Option<mpsc::Receiver<Gone>>,
    pub(super) tasks: Vec<tokio::task::AbortHandle>,
}

impl Outside {
    pub(super) fn watch(ifindexes: &[u32], own: u32, routing: bool) -> Outside {
        let mut others: Vec<u32> = ifindexes.iter().copied().filter(|&i| i != own).collect();
        others.sort_unstable();
        others.dedup();
        if others.is_empty() && !routing {
            return Outside::default();
        }
        let (tx, rx) = mpsc::channel(64);
        let mut tasks: Vec<tokio::task::AbortHandle> = others
            .into_iter()
            .map(|ix| {
                let tx = tx.clone();
                let mut sub = Some(crate::nlhub::changes(ix));
                tokio::spawn(async move {
                    loop {
                        if let Ok(crate::nlhub::Change::Addr(a)) =
                            crate::nlhub::next(&mut sub).await
                            && !a.added
                            && tx.send(Gone::Addr(ix, a.addr)).await.is_err()
                        {
                            break;
                        }
                    }
                })
                .abort_handle()
            })
            .collect();
        if routing {
            let mut sub = Some(crate::routing::deletions());
            tasks.push(
                tokio::spawn(async move {
                    loop {
                        if let Ok(d) = crate::nlhub::next(&mut sub).await
                            && tx.send(Gone::Routing(d)).await.is_err()
                        {
                            break;
                        }
                    }
                })
                .abort_handle(),
            );
        }
        Outside {
            rx: Some(rx),
            tasks,
        }
    }

    /// The next removal; never ready when nothing is watched.
    pub(super) async fn next(&mut self) -> Option<Gone> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Io {
    /// `(NAME) `, before the instance's own log lines.
    pub(super) fn who(&self) -> String {
        format!("({}) ", self.plan.name)
    }

    /// A route or rule of this MASTER was removed by someone else: put it back.
    pub(super) async fn restore_routing(&self, d: &holdfast_sys::route::Deleted) {
        if let Some(r) = &self.routing
            && let Some((kind, what)) = r.reinstate(&self.nl, d).await
        {
            self.log.vrrp(&format!(
                "({}) virtual {kind} {what} was removed by someone else - restoring it",
                self.plan.name
            ));
        }
    }

    /// `addr` was removed from interface `ifindex` while this instance is MASTER: if it is
    /// one of its VIPs there (removed by an operator, another daemon, a network manager), put
    /// it back and announce it, rather than advertise an address nobody answers for.
    pub(super) async fn restore_vip(&self, ifindex: u32, addr: IpAddr, router: &VirtualRouter) {
        let Some(k) = (0..self.plan.vips.len())
            .find(|&k| self.plan.vips[k].addr == addr && self.ifindexes.get(k) == Some(&ifindex))
        else {
            return;
        };
        let dev = &self.plan.vips[k].dev;
        if self.log.detail {
            self.log.vrrp(&format!(
                "Netlink reflector reports IP {addr} removed from {dev}"
            ));
        }
        self.log.vrrp(&format!(
            "({}) VIP {addr} was removed from {dev} by someone else - restoring it",
            self.plan.name
        ));
        self.add_vips(Some(&[addr])).await;
        self.execute(
            Output::Announce {
                count: self.plan.router.garp.master_repeat,
            },
            router,
        )
        .await;
    }

    pub(super) fn specs(&self) -> Vec<VipSpec> {
        self.plan
            .vips
            .iter()
            .zip(&self.ifindexes)
            .map(|(v, &ifindex)| v.spec(ifindex))
            .collect()
    }

    pub(super) async fn add_vips(&self, only: Option<&[IpAddr]>) {
        for s in self
            .specs()
            .iter()
            .filter(|s| only.is_none_or(|o| o.contains(&s.addr)))
        {
            if let Err(e) = vip::add(&self.nl, s).await {
                self.log.vrrp(&format!(
                    "({}) cannot add VIP {}/{}: {e}",
                    self.plan.name, s.addr, s.prefix
                ));
            }
        }
    }

    pub(super) async fn remove_vips(&self, only: Option<&[IpAddr]>) {
        for s in self
            .specs()
            .iter()
            .filter(|s| only.is_none_or(|o| o.contains(&s.addr)))
        {
            let dump = DUMPS.lock().await;
            let done = vip::del(&self.nl, s).await;
            drop(dump);
            if let Err(e) = done {
                self.log.vrrp(&format!(
                    "({}) cannot remove VIP {}/{}: {e}",
                    self.plan.name, s.addr, s.prefix
                ));
            }
        }
    }

    /// A burst of `count` gratuitous ARPs / unsolicited NAs for the VIPs on the instance's
    /// interface. Back to back, they are sent now. Spaced (`vrrp_garp_interval`), they are
    /// sent by a task of their own, as keepalived queues them: the instance must go on
    /// sending its adverts meanwhile — a burst of 5 at 1 s would otherwise silence a MASTER
    /// for longer than its BACKUPs wait before taking over. A new burst replaces one still
    /// running, and leaving MASTER stops it ([`Io::stop_burst`]).
    pub(super) fn announce(&self, count: u32) {
        let addrs: Vec<IpAddr> = self
            .plan
            .vips
            .iter()
            .filter(|v| v.dev == self.plan.ifname)
            .map(|v| v.addr)
            .collect();
        // VIPs on other interfaces: announced there, by a task of their own (opening an
        // announcer there may ask the kernel for the interface's link-local address).
        let others: Vec<(IpAddr, String, u32)> = self
            .plan
            .vips
            .iter()
            .zip(&self.ifindexes)
            .filter(|(v, _)| v.dev != self.plan.ifname)
            .map(|(v, &ix)| (v.addr, v.dev.clone(), ix))
            .collect();
        let what = if matches!(self.announcer, Announcer::Arp(_)) {
            "gratuitous ARPs"
        } else {
            "Unsolicited Neighbour Adverts"
        };
        for a in &addrs {
            if self.log.detail {
                self.log.vrrp(&format!(
                    "({}) Sending/queueing {what} on {} for {a}",
                    self.plan.name, self.plan.ifname
                ));
            }
        }
        self.stop_burst();
        let gap = Duration::from_micros(u64::from(self.plan.announce_gap_us));
        if !others.is_empty() {
            let (nl, name, log) = (self.nl.clone(), self.plan.name.clone(), self.log);
            let what = what.to_owned();
            let task = tokio::spawn(async move {
                let mut on: Vec<(IpAddr, String, Announcer)> = Vec::new();
                for (a, dev, ix) in others {
                    match announcer_on(&nl, &dev, ix, a.is_ipv6()).await {
                        Ok(x) => {
                            if log.detail {
                                log.vrrp(&format!(
                                    "({name}) Sending/queueing {what} on {dev} for {a}"
                                ));
                            }
                            on.push((a, dev, x));
                        }
                        Err(e) => {
                            log.vrrp(&format!("({name}) announcing {a} on {dev} failed: {e}"))
                        }
                    }
                }
                for k in 0..count {
                    if k > 0 && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    for (a, dev, x) in &on {
                        announce_on(x, &name, dev, log, *a);
                    }
                }
            });
            if let Ok(mut b) = self.others_burst.lock() {
                *b = Some(task.abort_handle());
            }
        }
        // The burst's task gets a handle of its own on the socket (a descriptor, only for a
        // spaced burst: an instance keeps no shared copy for it).
        let own = if gap.is_zero() {
            None
        } else {
            match self.announcer.try_clone() {
                Ok(a) => Some(a),
                Err(e) => {
                    self.log.vrrp(&format!(
                        "({}) cannot space the announcements on {} ({e}): sending them at once",
                        self.plan.name, self.plan.ifname
                    ));
                    None
                }
            }
        };
        let Some(announcer) = own else {
            for _ in 0..count {
                for a in &addrs {
                    announce_one(&self.announcer, &self.plan, self.log, *a);
                }
            }
            return;
        };
        let (plan, log) = (self.plan.clone(), self.log);
        let burst = tokio::spawn(async move {
            let mut sent = 0u32;
            for _ in 0..count {
                for a in &addrs {
                    if sent > 0 {
                        tokio::time::sleep(gap).await;
                    }
                    sent += 1;
                    announce_one(&announcer, &plan, log, *a);
                }
            }
        });
        if let Ok(mut b) = self.burst.lock() {
            *b = Some(burst.abort_handle());
        }
    }

    /// Stops a spaced burst still running (and one on other interfaces).
    pub(super) fn stop_burst(&self) {
        if let Some(b) = self.others_burst.lock().ok().and_then(|mut b| b.take()) {
            b.abort();
        }
        if let Some(b) = self.burst.lock().ok().and_then(|mut b| b.take()) {
            b.abort();
        }
    }

    pub(super) fn notify(&self, state: State, priority: u8) {
        let services = &self.services;
        services
            .fifo
            .vrrp(&self.plan.name, false, state_word(state), priority);
        if self.plan.smtp_alert {
            services
                .mail
                .vrrp_alert(&self.plan.name, false, state, self.log);
        }
        let cmds = notify_commands(
            self.plan.notify(),
            state,
            "INSTANCE",
            &self.plan.name,
            priority,
        );
        spawn_scripts(
            cmds,
            self.plan.script_user.clone(),
            format!("({})", self.plan.name),
            self.log,
        );
    }

    pub(super) fn send(&self, dst: IpAddr, payload: &[u8]) {
        let Some(src) = self.src else {
            return;
        };
        // `auth_type AH`: the packet is signed once its IPv4 header is made.
        let sign = |pkt: &mut [u8]| {
            if let holdfast_vrrp::wire::Auth::Ah(key) = self.plan.router.auth {
                holdfast_vrrp::ah::sign(&key, pkt, !dst.is_multicast());
            }
        };
        let ah = matches!(self.plan.router.auth, holdfast_vrrp::wire::Auth::Ah(_));
        if let Err(e) = self
            .sock
            .send(src, dst, payload, ah.then_some(&sign as &dyn Fn(&mut [u8])))
        {
            self.log.vrrp(&format!(
                "({}) Cant send advert to {dst} ({e})",
                self.plan.name
            ));
        }
    }

    /// `addrs` as the VRRP firewall matches them: with their interfaces (a VIP no longer in
    /// the plan, after a reload, on the instance's), link-local ones on the instance's own
    /// interface by name under `dont_track_primary` unless `nftables_ifindex`, as keepalived
    /// matches them.
    pub(super) fn blocked(&self, addrs: &[IpAddr]) -> Vec<crate::firewall::Blocked<'_>> {
        addrs
            .iter()
            .map(|&addr| {
                let dev = self
                    .plan
                    .vips
                    .iter()
                    .find(|v| v.addr == addr)
                    .map_or(self.plan.ifname.as_str(), |v| v.dev.as_str());
                crate::firewall::Blocked {
                    addr,
                    dev,
                    by_name: self.plan.dont_track_primary
                        && !self.firewall.ifindex
                        && dev == self.plan.ifname,
                }
            })
            .collect()
    }

    pub(super) async fn execute(&self, out: Output, router: &VirtualRouter) {
        match out {
            Output::Send { dst, payload } => self.send(dst, &payload),
            Output::AddVips => {
                // keepalived's order: the drop rule before the addresses.
                if self.plan.no_accept {
                    Box::pin(crate::firewall::block(
                        &self.firewall,
                        &self.plan.name,
                        &self.blocked(&self.plan.vip_addrs()),
                        self.log,
                    ))
                    .await;
                }
                self.add_vips(None).await;
                // keepalived's order: the VIPs, then the routes, then the rules.
                if let Some(r) = &self.routing {
                    Box::pin(r.install(&self.nl, &self.who(), self.log)).await;
                }
            }
            Output::RemoveVips => {
                // Leaving MASTER: no more announcements of addresses it gives up.
                self.stop_burst();
                if let Some(r) = &self.routing {
                    Box::pin(r.remove(&self.nl, &self.who(), self.log)).await;
                }
                self.remove_vips(None).await;
                if self.plan.no_accept {
                    Box::pin(crate::firewall::unblock(
                        &self.firewall,
                        &self.plan.name,
                        &self.blocked(&self.plan.vip_addrs()),
                        self.log,
                    ))
                    .await;
                }
            }
            Output::VipsChanged { added, removed } => {
                self.remove_vips(Some(&removed)).await;
                if self.plan.no_accept {
                    Box::pin(crate::firewall::unblock(
                        &self.firewall,
                        &self.plan.name,
                        &self.blocked(&removed),
                        self.log,
                    ))
                    .await;
                    Box::pin(crate::firewall::block(
                        &self.firewall,
                        &self.plan.name,
                        &self.blocked(&added),
                        self.log,
                    ))
                    .await;
                }
                self.add_vips(Some(&added)).await;
            }
            // Not awaited: a spaced burst runs in a task of its own.
            Output::Announce { count } => self.announce(count),
            Output::StateChanged { to, reason, .. } => {
                self.notify(to, router.effective_priority());
                let _ = self.events.send((
                    self.plan.name.clone(),
                    Event::State(to, reason == holdfast_vrrp::router::Reason::Sync),
                ));
            }
            Output::OwnFault(faulted) => {
                let _ = self
                    .events
                    .send((self.plan.name.clone(), Event::OwnFault(faulted)));
            }
            Output::MasterRxLowerPri => {
                self.services.fifo.vrrp(
                    &self.plan.name,
                    false,
                    "MASTER_RX_LOWER_PRI",
                    router.effective_priority(),
                );
                let cmds = self
                    .plan
                    .notify()
                    .master_rx_lower_pri
                    .iter()
                    .cloned()
                    .collect();
                spawn_scripts(
                    cmds,
                    self.plan.script_user.clone(),
                    format!("({})", self.plan.name),
                    self.log,
                );
            }
            Output::Log(l) => {
                if let Some(kind) = crate::logging::PacketLine::of(&l) {
                    let (now, earlier) = self.drop_log.admit(kind, std::time::Instant::now());
                    if let Some(n) = earlier {
                        let what = match kind {
                            crate::logging::PacketLine::Drop(_) => {
                                "adverts dropped for the same reason were"
                            }
                            crate::logging::PacketLine::Other(_) => "lines like the last were",
                        };
                        self.log.vrrp(&format!(
                            "({}) {n} more {what} not logged (rate limit: {} lines per {} s)",
                            self.plan.name,
                            crate::logging::DropLog::BURST,
                            crate::logging::DropLog::WINDOW.as_secs()
                        ));
                    }
                    if !now {
                        return;
                    }
                }
                self.log.router(&l)
            }
        }
    }
}
