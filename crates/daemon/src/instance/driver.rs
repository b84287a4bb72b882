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
use crate::trackers::{TrackEv, Trackers};

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
        let (log, keep_vips, guardian) = (sh.log, sh.keep_vips, sh.guardian.clone());
        let nl = shared_nl()?;
        let epoch = std::time::Instant::now();
        // By reference: the task holds the epoch once, not once per closure.
        let now = || Instant::from_epoch(epoch.elapsed());
        let to_tokio = |t: Instant| tokio::time::Instant::from_std(epoch + t.since_epoch());
        let ifindex = iface::index(&plan.ifname)?;
        // Adverts are sent and read on the macvlan with `use_vmac` (made before the
        // instance started), else on the instance's interface.
        let adv_ifname = plan.advert_ifname();
        let adv_ifindex = iface::index(adv_ifname)?;
        let _promote = Promote::set(&plan, log);
        let mac = iface::mac(&plan.ifname)?;
        let unicast = !plan.router.unicast_peers.is_empty();
        let ifindexes = plan
            .vips
            .iter()
            .map(|v| iface::index(&v.dev))
            .collect::<std::io::Result<Vec<_>>>()?;
        let vrid = plan.router.vrid;
        let group = (!unicast).then_some(plan.router.mcast_group);
        let (sock, _subscription, announcer, src) = match plan.router.mcast_group {
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
                let key = crate::rx::Key {
                    ifname: adv_ifname.to_owned(),
                    group,
                    v6_src: None,
                    unicast_ttl: plan.unicast_ttl,
                    ah,
                };
                let (sock, sub) = crate::rx::subscribe(
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
                let key = crate::rx::Key {
                    ifname: adv_ifname.to_owned(),
                    group,
                    v6_src: Some(IpAddr::V6(ll)),
                    unicast_ttl: plan.unicast_ttl,
                    ah: false,
                };
                let (sock, sub) = crate::rx::subscribe(
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
        let mut io = Io {
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
        // change falls between the two.
        let track_link = !plan.dont_track_primary;
        let track_src = plan.src.is_none();
        // Always: a MASTER also watches for its VIPs being removed by someone else.
        let mut changes = Some(crate::nlhub::changes(ifindex));
        // And, for VIPs set on other interfaces (`dev`), their removals there.
        // And the removal of its routes and rules, when it has any.
        let mut outside = Outside::watch(&io.ifindexes, ifindex, io.routing.is_some());

        let mut router =
            VirtualRouter::new(plan.router.clone(), now(), u64::from(std::process::id()));
        router.handle(now(), Input::SourceAddr(src));
        router.handle(
            now(),
            Input::Link(plan.dont_track_primary || iface::is_up(&plan.ifname).unwrap_or(false)),
        );

        // Packets of this VRID arrive in the inbox from the interface's shared reader (crate::rx).

        // Trackers report on a channel made only when the instance has some.
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
        let mut trackers: Option<Box<Trackers>> = None;
        Trackers::restart(&mut trackers, &plan.name, &plan.trackers, log);

        router.handle(now(), Input::Start);
        let mut was_master = false;
        let mut exit = Exit::Stopped;
        let mut last_state = router.state();
        let mut since = std::time::SystemTime::now();
        let mut status_stale = true;
        // One timer for the instance's life, moved to each new deadline (a timer made for
        // every wait would be registered and dropped ten times a second at advert_int 0.1).
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        loop {
            if router.state() != last_state {
                last_state = router.state();
                since = std::time::SystemTime::now();
            }
            // Before the outputs run: the state shown (`status`, SIGUSR1) is the router's as
            // soon as it changes, not after the VIPs and the GARP burst of a transition, so
            // whoever reads "Entering MASTER STATE" and then asks sees MASTER.
            publish_status(&sh, &io.plan, &router, since, &mut status_stale);
            while let Some(o) = router.poll_output() {
                match o {
                    // Adverts, ten a second at advert_int 0.1, are sent without an async step
                    // (and its boxed future).
                    Output::Send { dst, payload } => io.send(dst, &payload),
                    o => Box::pin(io.execute(o, &router)).await,
                }
            }
            let is_master = router.state() == State::Master;
            if let Some(g) = &guardian {
                let at = (adv_ifname, adv_ifindex);
                last_words(g, &mut io, &router, at, is_master != was_master);
            }
            was_master = is_master;
            let deadline = router.poll_timeout().map(to_tokio);
            if let Some(d) = deadline
                && d != timer.deadline()
            {
                timer.as_mut().reset(d);
            }
            tokio::select! {
                Some(ev) = std::future::poll_fn(|cx| match trackers.as_mut().and_then(|t| t.chan.as_mut()) { Some((_, rx)) => rx.poll_recv(cx), None => std::task::Poll::Pending }) => {
                    match ev {
                        TrackEv::Up(index, up) => {
                            if let Some(c) = trackers.as_ref().and_then(|t| t.cells.get(index)) {
                                c.set_up(up);
                            }
                            router.handle(now(), Input::Tracker { index, up })
                        }
                        TrackEv::Value(index, value) => {
                            if let Some(c) = trackers.as_ref().and_then(|t| t.cells.get(index)) {
                                c.set_value(value);
                            }
                            router.handle(now(), Input::TrackerValue { index, value })
                        }
                    }
                }
                Some(gone) = outside.next() => {
                    if router.state() == State::Master {
                        match gone {
                            Gone::Addr(ix, addr) => Box::pin(io.restore_vip(ix, addr, &router)).await,
                            Gone::Routing(d) => Box::pin(io.restore_routing(&d)).await,
                        }
                    }
                }
                c = crate::nlhub::next(&mut changes) => {
                    use crate::nlhub::Change;
                    if let Ok(Change::Deleted) = c {
                        if !io.plan.dynamic {
                            // Down (FAULT) for good: without `dynamic_interfaces` an interface
                            // made again is another one.
                            continue;
                        }
                        log.vrrp(&format!("Interface {} deleted", plan.ifname));
                        router.handle(now(), Input::Link(false));
                        while let Some(o) = router.poll_output() {
                            Box::pin(io.execute(o, &router)).await;
                        }
                        exit = Exit::InterfaceGone(io.plan.clone());
                        break;
                    }
                    if let Ok(Change::Addr(a)) = &c
                        && !a.added
                        && router.state() == State::Master
                    {
                        Box::pin(io.restore_vip(ifindex, a.addr, &router)).await;
                    }
                    if track_link {
                        match c {
                            Ok(Change::Link(up)) => router.handle(now(), Input::Link(up)),
                            // Missed changes: read the link afresh.
                            Err(_) => router.handle(now(), Input::Link(iface::is_up(&plan.ifname).unwrap_or(false))),
                            Ok(Change::Addr(_) | Change::Deleted) => {}
                        }
                    }
                    if !track_src {
                        continue;
                    }
                    // An added address cannot displace a primary (it is secondary or comes after
                    // it), and only removing the source can lose it: ask the kernel only then,
                    // not for every VIP another instance sets. Missed changes: ask.
                    let relevant = match c {
                        Ok(Change::Link(_) | Change::Deleted) => false,
                        Ok(Change::Addr(c)) => {
                            if io.plan.vips.iter().any(|v| v.addr == c.addr) {
                                continue;
                            }
                            if log.detail {
                                log.vrrp(&if c.added {
                                    format!("Assigned address {} for interface {}", c.addr, plan.ifname)
                                } else {
                                    format!("Deassigned address {} from interface {}", c.addr, plan.ifname)
                                });
                            }
                            if c.added { io.src.is_none() } else { io.src == Some(c.addr) }
                        }
                        Err(_) => true,
                    };
                    if !relevant {
                        continue;
                    }
                    let _dump = DUMPS.lock().await;
                    let now_src = match plan.router.mcast_group {
                        IpAddr::V4(_) => Box::pin(vip::primary_v4(&io.nl, ifindex, &io.plan.vip_addrs())).await,
                        IpAddr::V6(_) => Box::pin(vip::link_local_v6(&io.nl, ifindex)).await,
                    };
                    drop(_dump);
                    if let Ok(a) = now_src && a != io.src {
                        io.src = a;
                        router.handle(now(), Input::SourceAddr(a));
                    }
                }
                () = &mut timer, if deadline.is_some() => {
                    router.handle_timeout(now());
                }
                m = inbox.recv() => {
                    let c = match m {
                        Some(Msg::Advert(p)) => {
                            let ah = p.ah.as_deref().map(|a| holdfast_vrrp::router::AhPart { ip_header: &a.ip_header, ah: &a.ah });
                            router.handle(now(), Input::Advert { src: p.src, dst: p.dst, ttl: p.ttl, payload: &p.payload, ah });
                            // A flooded inbox is always ready, and this task would never give
                            // the runtime back: every instance shares one thread, so spend
                            // tokio's cooperative budget (a yield every 128 adverts) and let
                            // the others send their adverts on time.
                            tokio::task::consume_budget().await;
                            continue;
                        }
                        Some(Msg::Ctl(c)) => Some(c),
                        None => None,
                    };
                    match c {
                        Some(Ctl::Sync(cmd)) => router.handle(now(), Input::Sync(cmd)),
                        Some(Ctl::Reload(new)) => {
                            // Routes and rules that went or came: a MASTER applies the
                            // difference now, so that whatever the router decides next
                            // (stay, or step down) acts on the new set.
                            let routing = new.routing.as_ref().map(|r| {
                                Box::new(crate::routing::resolve(r, &format!("({}) ", new.name), log))
                            });
                            if router.state() == State::Master {
                                let empty = crate::routing::Resolved::default();
                                let (old, wanted) = (io.routing.as_deref().unwrap_or(&empty), routing.as_deref().unwrap_or(&empty));
                                Box::pin(old.minus(wanted).remove(&io.nl, &io.who(), log)).await;
                                Box::pin(wanted.minus(old).install(&io.nl, &io.who(), log)).await;
                            }
                            io.routing = routing;
                            router.handle(now(), Input::Reload(&new.router));
                            Trackers::restart(&mut trackers, &new.name, &new.trackers, log);
                            io.ifindexes = new.vips.iter().map(|v| iface::index(&v.dev)).collect::<std::io::Result<Vec<_>>>().unwrap_or_default();
                            outside = Outside::watch(&io.ifindexes, ifindex, io.routing.is_some());
                            // VipsChanged from the router is applied against the new plan.
                            io.plan = new;
                            status_stale = true;
                        }
                        Some(Ctl::Stop) | None => {
                            Trackers::stop(&mut trackers);
                            if keep_vips {
                                // `-V`: leave the VIPs and say nothing.
                                break;
                            }
                            router.handle(now(), Input::Stop);
                            while let Some(o) = router.poll_output() {
                                Box::pin(io.execute(o, &router)).await;
                            }
                            break;
                        }
                    }
                }
            }
        }
        Ok(exit)
    }
}
