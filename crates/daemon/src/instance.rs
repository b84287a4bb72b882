//! One VRRP instance's driver: the sans-IO router on real Linux networking — its VRRP socket
//! (shared per interface, `rx.rs`), VIPs, routes and rules over rtnetlink, gratuitous ARPs and
//! neighbour adverts, trackers, notify scripts, the VRRP firewall — and what it shares with the
//! supervisor in `run.rs` (commands in, state changes out). `run.rs` starts, reloads and stops
//! instances; this module never reaches back into it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use holdfast_sys::garp::{Announcer, Garp, Unsolicited};
use holdfast_sys::iface;
use holdfast_sys::vip::Handle;
use holdfast_sys::vip::{self, VipSpec};
use holdfast_sys::vrrp_socket::{VrrpSocket, VrrpSocketV4, VrrpSocketV6};
use holdfast_vrrp::Instant;
use holdfast_vrrp::router::{Input, Output, State, VirtualRouter};
use tokio::sync::mpsc;

use crate::logging::Logger;
use crate::plan::InstancePlan;
use crate::trackers::{TrackEv, Trackers};

/// Commands from the supervisor to an instance driver.
#[derive(Debug)]
pub enum Ctl {
    /// Stop: priority 0, VIPs removed (unless `-V`).
    Stop,
    /// Apply a reloaded plan for this instance (same VRID, family, interface).
    Reload(Arc<InstancePlan>),
    /// A sync-group command.
    Sync(holdfast_vrrp::router::SyncCmd),
}

/// What reaches an instance driver, in one mailbox: adverts of its VRID from the
/// interface's reader (at most [`ADVERT_QUEUE`] waiting) and the supervisor's commands.
#[derive(Debug)]
pub enum Msg {
    /// A received VRRP packet.
    Advert(Arc<holdfast_sys::vrrp_socket::Received>),
    /// A command.
    Ctl(Ctl),
}

/// Adverts an instance may have waiting; a flood beyond it is dropped by the reader.
const ADVERT_QUEUE: usize = 256;

impl crate::mailbox::Sender<Msg> {
    /// Hands the instance a command (never refused for room, unlike adverts).
    pub(crate) fn command(&self, c: Ctl) {
        self.push_always(Msg::Ctl(c));
    }
}

/// What every instance driver shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) log: Logger,
    pub(crate) keep_vips: bool,
    pub(crate) guardian: Option<Arc<crate::guardian::Guardian>>,
    pub(crate) status: Arc<std::sync::Mutex<crate::dump::Table>>,
    /// State changes to the supervisor (for sync groups): instance, new state, whether a
    /// group command caused it.
    pub(crate) events: mpsc::UnboundedSender<(String, Event)>,
    /// The VRRP firewall, for instances without accept mode.
    pub(crate) firewall: Arc<crate::firewall::FirewallPlan>,
}

/// What an instance tells the supervisor.
#[derive(Debug)]
pub(crate) enum Event {
    /// It entered a state; `true` when its sync group's command caused it.
    State(State, bool),
    /// Its own cause of FAULT began or ended (see [`Output::OwnFault`]).
    OwnFault(bool),
}

/// keepalived's word for a state in notify arguments and FIFO lines.
pub(crate) fn state_word(state: State) -> &'static str {
    match state {
        State::Master => "MASTER",
        State::Backup => "BACKUP",
        State::Fault => "FAULT",
        State::Init => "STOP",
    }
}

/// The notify scripts for entering `state`: the specific one, then the generic `notify` with
/// keepalived's four arguments (`INSTANCE|GROUP name STATE priority`).
pub(crate) fn notify_commands(
    n: &holdfast_config::model::Notify,
    state: State,
    kind: &str,
    name: &str,
    priority: u8,
) -> Vec<holdfast_config::model::Command> {
    let specific = match state {
        State::Master => &n.master,
        State::Backup => &n.backup,
        State::Fault => &n.fault,
        State::Init => &n.stop,
    };
    let word = state_word(state);
    let mut cmds: Vec<_> = specific.iter().cloned().collect();
    if let Some(g) = &n.generic {
        cmds.push(holdfast_config::model::Command {
            cmd: format!("{} {kind} {} {word} {priority}", g.cmd, shell_quote(name)),
            user: g.user.clone(),
        });
    }
    cmds
}

/// Runs scripts one after the other off the driver (keepalived runs notify scripts
/// asynchronously), each as its own user or `script_user`, logging failures under `who`.
pub(crate) fn spawn_scripts(
    cmds: Vec<holdfast_config::model::Command>,
    script_user: Option<holdfast_config::model::UserSpec>,
    who: String,
    log: Logger,
) {
    if cmds.is_empty() {
        return;
    }
    let task = tokio::spawn(async move {
        for c in cmds {
            if let Err(e) =
                crate::script::run_notify(&c, script_user.as_ref(), "notify script").await
            {
                log.vrrp(&format!("{who} {e}"));
            }
        }
    });
    if let Ok(mut p) = NOTIFYING.lock() {
        p.retain(|t| !t.is_finished());
        p.push(task);
    }
}

/// Notify scripts still running: the daemon waits for them at stop (a script it started
/// would otherwise be killed with the runtime — notify_stop above all).
static NOTIFYING: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// How long the daemon waits at stop for the notify scripts it started.
const NOTIFY_AT_STOP: Duration = Duration::from_secs(10);

/// Waits (at most [`NOTIFY_AT_STOP`]) for every notify script started so far.
pub(crate) async fn notify_scripts_done(log: Logger) {
    let tasks = NOTIFYING
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default();
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(NOTIFY_AT_STOP, all).await.is_err() {
        log.vrrp(&format!(
            "notify scripts still running {} s after stop were ended",
            NOTIFY_AT_STOP.as_secs()
        ));
    }
}

pub(crate) fn spawn_instance(
    inst: Arc<InstancePlan>,
    sh: &Shared,
) -> (crate::mailbox::Sender<Msg>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = crate::mailbox::mailbox(ADVERT_QUEUE);
    let for_reader = tx.clone();
    // Listed from the start (INIT until its task reports), so that a SIGUSR1 or a `status`
    // answered before the task's first event still shows every configured instance, as
    // keepalived's do. A reload's entry for the same name stays until the new task replaces it.
    if let Ok(mut t) = sh.status.lock() {
        t.entry(inst.name.clone())
            .or_insert_with(|| crate::dump::Status {
                plan: inst.clone(),
                state: holdfast_vrrp::router::State::Init,
                effective: inst.router.priority,
                master: None,
                master_priority: None,
                stats: holdfast_vrrp::router::Stats::default(),
                since: std::time::SystemTime::now(),
            });
    }
    let sh = sh.clone();
    let log = sh.log;
    let task = tokio::spawn(async move {
        let mut inbox = rx;
        let mut plan = inst;
        let firewall = sh.firewall.clone();
        let mut first = true;
        loop {
            // `dynamic_interfaces`: an instance whose interface does not exist (yet, or any
            // more) is in FAULT until it appears.
            if plan.dynamic && holdfast_sys::iface::index(&plan.ifname).is_err() {
                match absent(&plan, &mut inbox, &sh, first).await {
                    Absent::Stop => return,
                    Absent::Reload(new) => {
                        plan = new;
                        continue;
                    }
                    Absent::Appeared => {}
                }
            }
            first = false;
            // `use_vmac`: the macvlan exists for the instance's whole life.
            let vmac = match shared_nl() {
                Ok(nl) => crate::vmac::up(&plan, &nl, &firewall, log)
                    .await
                    .map(|v| v.map(|v| (v, nl))),
                Err(e) => Err(e.into()),
            };
            let vmac = match vmac {
                Ok(v) => v,
                Err(e) => {
                    log.vrrp(&format!("({}) stopped on error: {e:#}", plan.name));
                    return;
                }
            };
            let exit = instance(plan.clone(), &mut inbox, for_reader.clone(), sh.clone()).await;
            if let Some((v, nl)) = vmac {
                v.down(&nl, &firewall, log).await;
            }
            match exit {
                Ok(Exit::InterfaceGone(last)) => plan = last,
                Ok(Exit::Stopped) => return,
                Err(e) => {
                    log.vrrp(&format!("({}) stopped on error: {e:#}", plan.name));
                    return;
                }
            }
        }
    });
    (tx, task)
}

/// How an instance driver ended.
enum Exit {
    /// Stopped by the supervisor (or its mailbox closed).
    Stopped,
    /// Its interface was deleted (`dynamic_interfaces`): the plan it last ran.
    InterfaceGone(Arc<InstancePlan>),
}

/// How waiting for an absent interface ended.
enum Absent {
    /// It appeared.
    Appeared,
    /// The supervisor stopped the instance.
    Stop,
    /// A reload brought this plan (waited for in turn).
    Reload(Arc<InstancePlan>),
}

/// An instance whose interface is absent (`dynamic_interfaces`): FAULT, as keepalived reports
/// it, until the interface appears; the supervisor's commands are answered meanwhile and
/// adverts (there are none without the interface) dropped.
async fn absent(
    plan: &Arc<InstancePlan>,
    inbox: &mut crate::mailbox::Receiver<Msg>,
    sh: &Shared,
    first: bool,
) -> Absent {
    let (name, ifname, log) = (&plan.name, &plan.ifname, sh.log);
    if first {
        log.vrrp(&format!(
            "Configuration specifies interface {ifname} which doesn't currently exist - will use if created"
        ));
        log.vrrp(&format!(
            "({name}): entering FAULT state (interface {ifname} down)"
        ));
    }
    if let Ok(mut t) = sh.status.lock()
        && let Some(e) = t.get_mut(name)
    {
        e.state = State::Fault;
        e.since = std::time::SystemTime::now();
    }
    let _ = sh.events.send((name.clone(), Event::OwnFault(true)));
    let _ = sh
        .events
        .send((name.clone(), Event::State(State::Fault, false)));
    let appeared = crate::nlhub::interface(ifname);
    tokio::pin!(appeared);
    loop {
        tokio::select! {
            _ = &mut appeared => {
                log.vrrp(&format!("Interface {ifname} added"));
                let _ = sh.events.send((name.clone(), Event::OwnFault(false)));
                return Absent::Appeared;
            }
            m = inbox.recv() => match m {
                Some(Msg::Ctl(Ctl::Reload(new))) => return Absent::Reload(new),
                Some(Msg::Ctl(Ctl::Stop)) | None => return Absent::Stop,
                Some(_) => {}
            }
        }
    }
}

/// Address dumps in turn: the instances share one rtnetlink request connection
/// ([`shared_nl`]) and the kernel refuses a second dump in flight on one socket (EBUSY).
static DUMPS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process's rtnetlink request connection (VIP changes and address dumps), opened on first
/// use. One per instance cost 72 KiB of buffers each.
fn shared_nl() -> std::io::Result<Handle> {
    static NL: std::sync::Mutex<Option<Handle>> = std::sync::Mutex::new(None);
    let mut g = NL
        .lock()
        .map_err(|_| std::io::Error::other("netlink handle poisoned"))?;
    if let Some(h) = g.as_ref() {
        return Ok(h.clone());
    }
    let h = vip::connect()?;
    *g = Some(h.clone());
    Ok(h)
}

/// `promote_secondaries`: sets the interface's sysctl while the instance runs, so removing a
/// VIP that is the interface's primary address in its subnet does not take the other
/// addresses of that subnet with it; put back at the end if holdfast changed it (as
/// keepalived does).
struct Promote(Option<Arc<InstancePlan>>);

impl Promote {
    fn path(ifname: &str) -> String {
        format!("/proc/sys/net/ipv4/conf/{ifname}/promote_secondaries")
    }

    fn set(plan: &Arc<InstancePlan>, log: Logger) -> Promote {
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
fn announce_one(announcer: &Announcer, plan: &InstancePlan, log: Logger, a: IpAddr) {
    announce_on(announcer, &plan.name, &plan.ifname, log, a);
}

/// [`announce_one`] on interface `dev`.
fn announce_on(announcer: &Announcer, name: &str, dev: &str, log: Logger, a: IpAddr) {
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
async fn announcer_on(
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

struct Io {
    /// A digest of the adverts last handed to the guardian (a copy of them, allocated at the
    /// transition among the transition's short-lived allocations, stranded small chunks in
    /// the heap between the holes those left).
    last_words: u64,
    /// Shared with the instance's task: a plan is large, and a task holding copies of it for
    /// its whole life costs kilobytes per instance.
    plan: Arc<InstancePlan>,
    sock: Arc<VrrpSocket>,
    announcer: Announcer,
    /// A spaced announcement burst in progress ([`Io::announce`]).
    burst: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// The burst on other interfaces, for VIPs set there.
    others_burst: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    nl: Handle,
    src: Option<IpAddr>,
    log: Logger,
    ifindexes: Vec<u32>,
    events: mpsc::UnboundedSender<(String, Event)>,
    /// Dropped-advert lines, rate limited (the counters count every one).
    drop_log: crate::logging::DropLog,
    /// `virtual_routes` and `virtual_rules`, resolved; `None` without any.
    routing: Option<Box<crate::routing::Resolved>>,
    /// The VRRP firewall (used when the plan says `no_accept`).
    firewall: Arc<crate::firewall::FirewallPlan>,
}

/// Something this MASTER holds removed from outside, beyond its own interface's addresses.
enum Gone {
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
struct Outside {
    rx: Option<mpsc::Receiver<Gone>>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Outside {
    fn watch(ifindexes: &[u32], own: u32, routing: bool) -> Outside {
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
    async fn next(&mut self) -> Option<Gone> {
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
    fn who(&self) -> String {
        format!("({}) ", self.plan.name)
    }

    /// A route or rule of this MASTER was removed by someone else: put it back.
    async fn restore_routing(&self, d: &holdfast_sys::route::Deleted) {
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
    async fn restore_vip(&self, ifindex: u32, addr: IpAddr, router: &VirtualRouter) {
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

    fn specs(&self) -> Vec<VipSpec> {
        self.plan
            .vips
            .iter()
            .zip(&self.ifindexes)
            .map(|(v, &ifindex)| v.spec(ifindex))
            .collect()
    }

    async fn add_vips(&self, only: Option<&[IpAddr]>) {
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

    async fn remove_vips(&self, only: Option<&[IpAddr]>) {
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
    fn announce(&self, count: u32) {
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
    fn stop_burst(&self) {
        if let Some(b) = self.others_burst.lock().ok().and_then(|mut b| b.take()) {
            b.abort();
        }
        if let Some(b) = self.burst.lock().ok().and_then(|mut b| b.take()) {
            b.abort();
        }
    }

    fn notify(&self, state: State, priority: u8) {
        crate::fifo::vrrp(&self.plan.name, false, state_word(state), priority);
        if self.plan.smtp_alert {
            crate::mail::vrrp_alert(&self.plan.name, false, state, self.log);
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

    fn send(&self, dst: IpAddr, payload: &[u8]) {
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
    fn blocked(&self, addrs: &[IpAddr]) -> Vec<crate::firewall::Blocked<'_>> {
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

    async fn execute(&self, out: Output, router: &VirtualRouter) {
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
                crate::fifo::vrrp(
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

fn shell_quote(s: &str) -> String {
    // A single quote closes the quoted part, is given in double quotes, and reopens it: read
    // the same way by the runner's word splitting (adjacent quoted parts make one word) and
    // by `/bin/sh -c`, which runs the line when the program is not an executable file.
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

#[allow(clippy::manual_async_fn)] // see the comment on the block
fn instance(
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
            if let Ok(mut t) = sh.status.lock() {
                // Updated in place at every event (ten adverts a second per instance at
                // advert_int 0.1); the plan's parts are written again only after a reload.
                match t.get_mut(&io.plan.name) {
                    Some(e) => {
                        if status_stale {
                            // The entry made at spawn, or a reload's: this plan from now on.
                            status_stale = false;
                            e.plan = io.plan.clone();
                        }
                        e.state = router.state();
                        e.effective = router.effective_priority();
                        e.master = router.master_addr();
                        e.master_priority = router.master_priority();
                        e.stats.clone_from(router.stats());
                        e.since = since;
                    }
                    None => {
                        status_stale = false;
                        t.insert(
                            io.plan.name.clone(),
                            crate::dump::Status {
                                plan: io.plan.clone(),
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
            while let Some(o) = router.poll_output() {
                match o {
                    // Adverts, ten a second at advert_int 0.1, are sent without an async step
                    // (and its boxed future).
                    Output::Send { dst, payload } => io.send(dst, &payload),
                    o => Box::pin(io.execute(o, &router)).await,
                }
            }
            let is_master = router.state() == State::Master;
            if let Some(g) = &guardian
                && (is_master != was_master || is_master)
            {
                // Last words for a crash: priority 0 and VIP removal while MASTER, nothing otherwise.
                let (adverts, vips) = if is_master {
                    (router.adverts(0), io.specs())
                } else {
                    (Vec::new(), Vec::new())
                };
                let changed = adverts_changed(&adverts, &mut io.last_words);
                if is_master != was_master || changed {
                    g.update(&crate::guardian::LastWords {
                        instance: &plan.name,
                        ifname: adv_ifname,
                        ifindex: adv_ifindex,
                        src: io.src,
                        adverts,
                        vips,
                    });
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_config::model::{Command, Notify, UserSpec};

    fn cmd(c: &str) -> Option<Command> {
        Some(Command {
            cmd: c.into(),
            user: None,
        })
    }

    #[test]
    fn notify_runs_the_specific_script_then_the_generic_one_with_four_arguments() {
        let n = Notify {
            master: cmd("/bin/m"),
            backup: cmd("/bin/b"),
            fault: None,
            stop: cmd("/bin/s"),
            generic: Some(Command {
                cmd: "/bin/n x".into(),
                user: Some(UserSpec {
                    user: "nobody".into(),
                    group: None,
                }),
            }),
            ..Notify::default()
        };
        let lines = |state, kind, name, prio| -> Vec<String> {
            notify_commands(&n, state, kind, name, prio)
                .into_iter()
                .map(|c| c.cmd)
                .collect()
        };
        assert_eq!(
            lines(State::Master, "INSTANCE", "VI_1", 150),
            ["/bin/m", "/bin/n x INSTANCE 'VI_1' MASTER 150"]
        );
        assert_eq!(
            lines(State::Init, "GROUP", "G1", 0),
            ["/bin/s", "/bin/n x GROUP 'G1' STOP 0"]
        );
        // No notify_fault: the generic one alone, as its own user.
        let fault = notify_commands(&n, State::Fault, "INSTANCE", "VI_1", 90);
        assert_eq!(fault.len(), 1);
        assert_eq!(fault[0].cmd, "/bin/n x INSTANCE 'VI_1' FAULT 90");
        assert_eq!(
            fault[0].user.as_ref().map(|u| u.user.as_str()),
            Some("nobody")
        );
    }

    #[test]
    fn a_name_reaches_the_script_as_one_argument_whatever_it_holds() {
        for name in ["VI_1", "with space", "it's", "a\"b", "$(reboot)", ""] {
            let line = format!("/bin/n INSTANCE {} MASTER 100", shell_quote(name));
            let words = crate::script::split(&line);
            assert_eq!(words.len(), 5, "{name:?} → {line}");
            assert_eq!(words[2], name, "{line}");
            // And through /bin/sh -c, the runner's fallback.
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", shell_quote(name)))
                .output()
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(String::from_utf8_lossy(&out.stdout), name);
        }
    }
}
