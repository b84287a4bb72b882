//! One instance's driver: reads its inputs (adverts, commands, link and address changes,
//! trackers, timers), drives the router, carries its outputs out, and publishes its status.

use std::net::IpAddr;
use std::sync::Arc;

use holdfast_sys::garp::{Announcer, Garp, Unsolicited};
use holdfast_sys::iface;
use holdfast_sys::vip;
use holdfast_sys::vrrp_socket::{VrrpSocket, VrrpSocketV4, VrrpSocketV6};
use holdfast_vrrp::Instant;
use holdfast_vrrp::router::{Input, Output, State, VirtualRouter};

use crate::plan::InstancePlan;
use crate::track::{TrackEv, Trackers};

use super::io::{Gone, Io, Outside, Promote};
use super::{Ctl, DUMPS, Exit, Msg, Shared, shared_nl};

/// Step: the instance's entry in the status table (`status`, SIGUSR1) from the router,
/// updated in place (ten adverts a second per instance at advert_int 0.1); the plan's parts
/// are written again only after a reload (`stale`).
fn publish_status(
    sh: &Shared,
    plan: &Arc<InstancePlan>,
    router: &VirtualRouter,
    since: std::time::SystemTime,
    stale: &mut bool,
) {
    let Ok(mut t) = sh.status.lock() else {
        return;
    };
    match t.get_mut(&plan.name) {
        Some(e) => {
            if *stale {
                // The entry made at spawn, or a reload's: this plan from now on.
                *stale = false;
                e.plan = plan.clone();
            }
            e.state = router.state();
            e.effective = router.effective_priority();
            e.master = router.master_addr();
            e.master_priority = router.master_priority();
            e.stats.clone_from(router.stats());
            e.since = since;
        }
        None => {
            *stale = false;
            t.insert(
                plan.name.clone(),
                crate::dump::Status {
                    plan: plan.clone(),
                    state: router.state(),
                    effective: router.effective_priority(),
                    master: router.master_addr(),
                    master_priority: router.master_priority(),
                    stats: router.stats().clone(),
                    since,
                },
            );
        }
    }
}

/// Step: the guardian's last words for a crash — priority 0 and VIP removal while MASTER,
/// nothing otherwise — handed over when the state changed (`moved`) or, while MASTER, when
/// the adverts did; `at`: the interface adverts leave from, and its index.
fn last_words(
    g: &crate::guardian::Guardian,
    io: &mut Io,
    router: &VirtualRouter,
    at: (&str, u32),
    moved: bool,
) {
    let is_master = router.state() == State::Master;
    if !moved && !is_master {
        return;
    }
    let (adverts, vips) = if is_master {
        (router.adverts(0), io.specs())
    } else {
        (Vec::new(), Vec::new())
    };
    let changed = adverts_changed(&adverts, &mut io.last_words);
    if moved || changed {
        g.update(&crate::guardian::LastWords {
            instance: &io.plan.name,
            ifname: at.0,
            ifindex: at.1,
            src: io.src,
            adverts,
            vips,
        });
    }
}

fn adverts_changed(now: &[(IpAddr, Vec<u8>)], last: &mut u64) -> bool {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    now.hash(&mut h);
    let digest = h.finish();
    if digest == *last {
        return false;
    }
    *last = digest;
    true
}

#[allow(clippy::manual_async_fn)] // see the comment on the block
pub(super) fn instance(
    plan: Arc<InstancePlan>,
    inbox: &mut crate::mailbox::Receiver<Msg>,
    for_reader: crate::mailbox::Sender<Msg>,
    sh: Shared,
) -> impl std::future::Future<Output = anyhow::Result<Exit>> + '_ {
    // An async block rather than an async fn: the arguments live in the task once, not
    // twice (as captured arguments and again as the body's locals).
    async move {
        // The start on the heap: its locals, moved into the driver, are not kept in every
        // instance's task for its whole life.
        let mut d = Box::pin(Driver::start(&plan, for_reader, &sh)).await?;
        d.run(inbox, &sh).await
    }
}

impl<'a> Driver<'a> {
    /// Step: the start — sockets, the source address, VIPs left over from a crash removed,
    /// subscriptions, the router started.
    async fn start(
        plan: &'a Arc<InstancePlan>,
        for_reader: crate::mailbox::Sender<Msg>,
        sh: &Shared,
    ) -> anyhow::Result<Driver<'a>> {
        let log = sh.log;
        let nl = shared_nl()?;
        let epoch = std::time::Instant::now();
        // By reference: the task holds the epoch once, not once per closure.
        let now = || Instant::from_epoch(epoch.elapsed());
        let ifindex = iface::index(&plan.ifname)?;
        // Adverts are sent and read on the macvlan with `use_vmac` (made before the
        // instance started), else on the instance's interface.
        let adv_ifname = plan.advert_ifname();
        let adv_ifindex = iface::index(adv_ifname)?;
        let promote = Promote::set(plan, log);
        let mac = iface::mac(&plan.ifname)?;
        let unicast = !plan.router.unicast_peers.is_empty();
        let ifindexes = plan
            .vips
            .iter()
            .map(|v| iface::index(&v.dev))
            .collect::<std::io::Result<Vec<_>>>()?;
        let vrid = plan.router.vrid;
        let group = (!unicast).then_some(plan.router.mcast_group);
        let (sock, subscription, announcer, src) = match plan.router.mcast_group {
            IpAddr::V4(g) => {
                let src = match plan.src {
                    Some(s) => Some(s),
                    None => {
                        let _dump = DUMPS.lock().await;
                        // Boxed, as the other netlink and I/O futures below: awaited inline they
                        // would sit in every instance's task for its whole life.
                        Box::pin(vip::primary_v4(&nl, ifindex, &plan.vip_addrs())).await?
                    }
                };
                let ah = matches!(plan.router.auth, holdfast_vrrp::wire::Auth::Ah(_));
                let key = super::rx::Key {
                    ifname: adv_ifname.to_owned(),
                    group,
                    v6_src: None,
                    unicast_ttl: plan.unicast_ttl,
                    ah,
                };
                let (sock, sub) = super::rx::subscribe(
                    key,
                    vrid,
                    || {
                        VrrpSocketV4::open(
                            adv_ifname,
                            adv_ifindex,
                            (!unicast).then_some(g),
                            plan.unicast_ttl,
                            ah,
                        )
                        .map(VrrpSocket::V4)
                    },
                    for_reader,
                    log,
                )?;
                (sock, sub, Announcer::Arp(Garp::open(ifindex, mac)?), src)
            }
            IpAddr::V6(g) => {
                let src = match plan.src {
                    Some(s) => Some(s),
                    None => {
                        let _dump = DUMPS.lock().await;
                        Box::pin(vip::link_local_v6(&nl, ifindex)).await?
                    }
                };
                let Some(IpAddr::V6(ll)) = src else {
                    anyhow::bail!(
                        "({}) no IPv6 link-local address on {}",
                        plan.name,
                        plan.ifname
                    );
                };
                let key = super::rx::Key {
                    ifname: adv_ifname.to_owned(),
                    group,
                    v6_src: Some(IpAddr::V6(ll)),
                    unicast_ttl: plan.unicast_ttl,
                    ah: false,
                };
                let (sock, sub) = super::rx::subscribe(
                    key,
                    vrid,
                    || {
                        VrrpSocketV6::open(adv_ifname, adv_ifindex, ll, (!unicast).then_some(g))
                            .map(VrrpSocket::V6)
                    },
                    for_reader,
                    log,
                )?;
                (
                    sock,
                    sub,
                    Announcer::Na(Unsolicited::open(&plan.ifname, ifindex, mac, ll)?),
                    src,
                )
            }
        };
        let io = Io {
            last_words: 0,
            plan: plan.clone(),
            sock: sock.clone(),
            announcer,
            burst: std::sync::Mutex::new(None),
            others_burst: std::sync::Mutex::new(None),
            nl,
            src,
            log,
            ifindexes,
            events: sh.events.clone(),
            firewall: sh.firewall.clone(),
            services: sh.services.clone(),
            drop_log: crate::logging::DropLog::default(),
            routing: plan.routing.as_ref().map(|r| {
                Box::new(crate::routing::resolve(
                    r,
                    &format!("({}) ", plan.name),
                    log,
                ))
            }),
        };
        // keepalived: VIPs left over from a crash are removed at start.
        if log.detail {
            log.vrrp(&format!("({}) removing VIPs.", plan.name));
        }
        Box::pin(io.remove_vips(None)).await;

        // The instance's own link and, when the advert source is the interface's primary
        // address, the interface's addresses: subscribed before the first reading so that no
        // change falls between the two. Always: a MASTER also watches for its VIPs being
        // removed by someone else.
        let changes = Some(crate::nlhub::changes(ifindex));
        // And, for VIPs set on other interfaces (`dev`), their removals there, and the
        // removal of its routes and rules, when it has any.
        let outside = Outside::watch(&io.ifindexes, ifindex, io.routing.is_some());
        let mut router =
            VirtualRouter::new(plan.router.clone(), now(), u64::from(std::process::id()));
        router.handle(now(), Input::SourceAddr(src));
        router.handle(
            now(),
            Input::Link(plan.dont_track_primary || iface::is_up(&plan.ifname).unwrap_or(false)),
        );
        for (i, t) in plan.trackers.iter().enumerate() {
            if t.init_fail {
                router.handle(
                    now(),
                    Input::Tracker {
                        index: i,
                        up: false,
                    },
                );
            }
        }
        // Trackers report on a channel made only when the instance has some.
        let mut trackers: Option<Box<Trackers>> = None;
        Trackers::restart(&mut trackers, &plan.name, &plan.trackers, &sh.services, log);
        router.handle(now(), Input::Start);
        Ok(Driver {
            _promote: promote,
            _subscription: subscription,
            last_state: router.state(),
            io,
            router,
            trackers,
            changes,
            outside,
            ifindex,
            adverts_at: (adv_ifname, adv_ifindex),
            epoch,
            was_master: false,
            since: std::time::SystemTime::now(),
            status_stale: true,
        })
    }

    /// The driver's loop: wait for something to happen, take the step for it, settle.
    async fn run(
        &mut self,
        inbox: &mut crate::mailbox::Receiver<Msg>,
        sh: &Shared,
    ) -> anyhow::Result<Exit> {
        let d = self;
        let (keep_vips, guardian) = (sh.keep_vips, sh.guardian.as_deref());
        let epoch = d.epoch;
        let to_tokio = |t: Instant| tokio::time::Instant::from_std(epoch + t.since_epoch());
        // One timer for the instance's life, moved to each new deadline (a timer made for
        // every wait would be registered and dropped ten times a second at advert_int 0.1).
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        // Packets of this VRID arrive in the inbox from the interface's shared reader
        // (super::rx).
        loop {
            d.settle(sh, guardian).await;
            let deadline = d.router.poll_timeout().map(to_tokio);
            if let Some(t) = deadline
                && t != timer.deadline()
            {
                timer.as_mut().reset(t);
            }
            let trackers = &mut d.trackers;
            let wake = tokio::select! {
                Some(ev) = std::future::poll_fn(|cx| match trackers.as_mut().and_then(|t| t.chan.as_mut()) {
                    Some((_, rx)) => rx.poll_recv(cx),
                    None => std::task::Poll::Pending,
                }) => Wake::Tracker(ev),
                Some(gone) = d.outside.next() => Wake::Gone(gone),
                c = crate::nlhub::next(&mut d.changes) => Wake::Change(c),
                () = &mut timer, if deadline.is_some() => Wake::Timer,
                m = inbox.recv() => Wake::Inbox(m),
            };
            let flow = match wake {
                Wake::Tracker(ev) => {
                    d.on_tracker(ev);
                    Flow::Go
                }
                Wake::Timer => {
                    d.router.handle_timeout(d.now());
                    Flow::Go
                }
                Wake::Inbox(Some(Msg::Advert(p))) => {
                    d.on_advert(&p);
                    // A flooded inbox is always ready, and this task would never give the
                    // runtime back: every instance shares one thread, so spend tokio's
                    // cooperative budget (a yield every 128 adverts) and let the others send
                    // their adverts on time.
                    tokio::task::consume_budget().await;
                    Flow::Go
                }
                Wake::Gone(gone) => {
                    Box::pin(d.on_gone(gone)).await;
                    Flow::Go
                }
                Wake::Change(c) => Box::pin(d.on_change(c)).await,
                Wake::Inbox(Some(Msg::Ctl(Ctl::Sync(cmd)))) => {
                    d.router.handle(d.now(), Input::Sync(cmd));
                    Flow::Go
                }
                Wake::Inbox(Some(Msg::Ctl(Ctl::Reload(new)))) => {
                    Box::pin(d.on_reload(new)).await;
                    Flow::Go
                }
                Wake::Inbox(Some(Msg::Ctl(Ctl::Stop)) | None) => {
                    Box::pin(d.on_stop(keep_vips)).await;
                    Flow::Exit(Exit::Stopped)
                }
            };
            if let Flow::Exit(exit) = flow {
                return Ok(exit);
            }
        }
    }
}

/// What woke the driver.
enum Wake {
    /// A tracker's report.
    Tracker(TrackEv),
    /// A VIP on another interface, or a route or rule, was removed.
    Gone(Gone),
    /// The instance's interface changed (link, addresses, deletion), or changes were missed.
    Change(Result<crate::nlhub::Change, tokio::sync::broadcast::error::RecvError>),
    /// The router's deadline passed.
    Timer,
    /// An advert or a command; `None`: the supervisor has gone.
    Inbox(Option<Msg>),
}

/// Whether the driver goes on after a step.
enum Flow {
    Go,
    Exit(Exit),
}

/// One running instance: its router, the I/O that carries the router's outputs out, and
/// what it watches. Each kind of wake-up is a step below.
struct Driver<'a> {
    /// `promote_secondaries` set on the interface while the instance runs.
    _promote: Promote,
    /// This VRID's adverts from the interface's shared reader, while the instance runs.
    _subscription: super::rx::Subscription,
    io: Io,
    router: VirtualRouter,
    trackers: Option<Box<Trackers>>,
    /// The instance's interface: link, addresses, deletion.
    changes: Option<tokio::sync::broadcast::Receiver<crate::nlhub::Change>>,
    outside: Outside,
    ifindex: u32,
    /// The interface adverts leave from (the macvlan with `use_vmac`) and its index.
    adverts_at: (&'a str, u32),
    epoch: std::time::Instant,
    was_master: bool,
    last_state: State,
    /// When the state last changed.
    since: std::time::SystemTime,
    /// The status entry still shows an older plan.
    status_stale: bool,
}

impl Driver<'_> {
    fn now(&self) -> Instant {
        Instant::from_epoch(self.epoch.elapsed())
    }

    /// Step: after every wake-up — the status published, the router's outputs carried out,
    /// the guardian's last words brought up to date.
    async fn settle(&mut self, sh: &Shared, guardian: Option<&crate::guardian::Guardian>) {
        if self.router.state() != self.last_state {
            self.last_state = self.router.state();
            self.since = std::time::SystemTime::now();
        }
        // Before the outputs run: the state shown (`status`, SIGUSR1) is the router's as soon
        // as it changes, not after the VIPs and the GARP burst of a transition, so whoever
        // reads "Entering MASTER STATE" and then asks sees MASTER.
        let (plan, since) = (&self.io.plan, self.since);
        publish_status(sh, plan, &self.router, since, &mut self.status_stale);
        self.drain().await;
        let is_master = self.router.state() == State::Master;
        if let Some(g) = guardian {
            let moved = is_master != self.was_master;
            last_words(g, &mut self.io, &self.router, self.adverts_at, moved);
        }
        self.was_master = is_master;
    }

    /// Carries the router's outputs out, in order.
    async fn drain(&mut self) {
        while let Some(o) = self.router.poll_output() {
            match o {
                // Adverts, ten a second at advert_int 0.1, are sent without an async step (and
                // its boxed future).
                Output::Send { dst, payload } => self.io.send(dst, &payload),
                o => Box::pin(self.io.execute(o, &self.router)).await,
            }
        }
    }

    /// Step: a tracker's report, shown in its metrics cell and fed to the router.
    fn on_tracker(&mut self, ev: TrackEv) {
        let cell = |i: usize| self.trackers.as_ref().and_then(|t| t.cells.get(i));
        let input = match ev {
            TrackEv::Up(index, up) => {
                if let Some(c) = cell(index) {
                    c.set_up(up);
                }
                Input::Tracker { index, up }
            }
            TrackEv::Value(index, value) => {
                if let Some(c) = cell(index) {
                    c.set_value(value);
                }
                Input::TrackerValue { index, value }
            }
        };
        self.router.handle(self.now(), input);
    }

    /// Step: a received advert.
    fn on_advert(&mut self, p: &holdfast_sys::vrrp_socket::Received) {
        let ah = p.ah.as_deref().map(|a| holdfast_vrrp::router::AhPart {
            ip_header: &a.ip_header,
            ah: &a.ah,
        });
        let input = Input::Advert {
            src: p.src,
            dst: p.dst,
            ttl: p.ttl,
            payload: &p.payload,
            ah,
        };
        self.router.handle(self.now(), input);
    }

    /// Step: someone removed a VIP on another interface, or a route or rule: a MASTER puts
    /// it back.
    async fn on_gone(&mut self, gone: Gone) {
        if self.router.state() != State::Master {
            return;
        }
        match gone {
            Gone::Addr(ix, addr) => Box::pin(self.io.restore_vip(ix, addr, &self.router)).await,
            Gone::Routing(d) => Box::pin(self.io.restore_routing(&d)).await,
        }
    }

    /// Step: the instance's interface changed — deleted (`dynamic_interfaces`), its link,
    /// a VIP removed by someone else, or the address adverts are sent from.
    async fn on_change(
        &mut self,
        c: Result<crate::nlhub::Change, tokio::sync::broadcast::error::RecvError>,
    ) -> Flow {
        use crate::nlhub::Change;
        let plan = self.io.plan.clone();
        let log = self.io.log;
        if let Ok(Change::Deleted) = c {
            if !plan.dynamic {
                // Down (FAULT) for good: without `dynamic_interfaces` an interface made again
                // is another one.
                return Flow::Go;
            }
            log.vrrp(&format!("Interface {} deleted", plan.ifname));
            self.router.handle(self.now(), Input::Link(false));
            while let Some(o) = self.router.poll_output() {
                Box::pin(self.io.execute(o, &self.router)).await;
            }
            return Flow::Exit(Exit::InterfaceGone(plan));
        }
        if let Ok(Change::Addr(a)) = &c
            && !a.added
            && self.router.state() == State::Master
        {
            Box::pin(self.io.restore_vip(self.ifindex, a.addr, &self.router)).await;
        }
        if !plan.dont_track_primary {
            let up = match c {
                Ok(Change::Link(up)) => Some(up),
                // Missed changes: read the link afresh.
                Err(_) => Some(iface::is_up(&plan.ifname).unwrap_or(false)),
                Ok(Change::Addr(_) | Change::Deleted) => None,
            };
            if let Some(up) = up {
                self.router.handle(self.now(), Input::Link(up));
            }
        }
        if plan.src.is_none() {
            Box::pin(self.follow_source(&c)).await;
        }
        Flow::Go
    }

    /// The address adverts are sent from, when it is the interface's primary (or IPv6
    /// link-local) address: asked of the kernel again when a change can have moved it.
    async fn follow_source(
        &mut self,
        c: &Result<crate::nlhub::Change, tokio::sync::broadcast::error::RecvError>,
    ) {
        use crate::nlhub::Change;
        let (plan, log) = (&self.io.plan, self.io.log);
        // An added address cannot displace a primary (it is secondary or comes after it),
        // and only removing the source can lose it: ask the kernel only then, not for every
        // VIP another instance sets. Missed changes: ask.
        let relevant = match c {
            Ok(Change::Link(_) | Change::Deleted) => false,
            Ok(Change::Addr(c)) => {
                if plan.vips.iter().any(|v| v.addr == c.addr) {
                    return;
                }
                if log.detail {
                    log.vrrp(&if c.added {
                        format!("Assigned address {} for interface {}", c.addr, plan.ifname)
                    } else {
                        format!(
                            "Deassigned address {} from interface {}",
                            c.addr, plan.ifname
                        )
                    });
                }
                if c.added {
                    self.io.src.is_none()
                } else {
                    self.io.src == Some(c.addr)
                }
            }
            Err(_) => true,
        };
        if !relevant {
            return;
        }
        let dump = DUMPS.lock().await;
        let now_src = match plan.router.mcast_group {
            IpAddr::V4(_) => {
                Box::pin(vip::primary_v4(
                    &self.io.nl,
                    self.ifindex,
                    &plan.vip_addrs(),
                ))
                .await
            }
            IpAddr::V6(_) => Box::pin(vip::link_local_v6(&self.io.nl, self.ifindex)).await,
        };
        drop(dump);
        if let Ok(a) = now_src
            && a != self.io.src
        {
            self.io.src = a;
            self.router.handle(self.now(), Input::SourceAddr(a));
        }
    }

    /// Step: a reload that continues this instance ([`holdfast_vrrp::router::continues`]).
    async fn on_reload(&mut self, new: Arc<InstancePlan>) {
        let log = self.io.log;
        // Routes and rules that went or came: a MASTER applies the difference now, so that
        // whatever the router decides next (stay, or step down) acts on the new set.
        let routing = new
            .routing
            .as_ref()
            .map(|r| Box::new(crate::routing::resolve(r, &format!("({}) ", new.name), log)));
        if self.router.state() == State::Master {
            let empty = crate::routing::Resolved::default();
            let old = self.io.routing.as_deref().unwrap_or(&empty);
            let wanted = routing.as_deref().unwrap_or(&empty);
            let who = self.io.who();
            Box::pin(old.minus(wanted).remove(&self.io.nl, &who, log)).await;
            Box::pin(wanted.minus(old).install(&self.io.nl, &who, log)).await;
        }
        self.io.routing = routing;
        self.router.handle(self.now(), Input::Reload(&new.router));
        Trackers::restart(
            &mut self.trackers,
            &new.name,
            &new.trackers,
            &self.io.services,
            log,
        );
        self.io.ifindexes = new
            .vips
            .iter()
            .map(|v| iface::index(&v.dev))
            .collect::<std::io::Result<Vec<_>>>()
            .unwrap_or_default();
        self.outside = Outside::watch(&self.io.ifindexes, self.ifindex, self.io.routing.is_some());
        // VipsChanged from the router is applied against the new plan.
        self.io.plan = new;
        self.status_stale = true;
    }

    /// Step: stop — trackers stopped, then (unless `-V` keeps the VIPs, saying nothing) a
    /// MASTER's priority-0 advert and its VIPs removed.
    async fn on_stop(&mut self, keep_vips: bool) {
        Trackers::stop(&mut self.trackers);
        if keep_vips {
            return;
        }
        self.router.handle(self.now(), Input::Stop);
        while let Some(o) = self.router.poll_output() {
            Box::pin(self.io.execute(o, &self.router)).await;
        }
    }
}
