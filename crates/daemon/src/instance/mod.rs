//! One VRRP instance's driver: the sans-IO router on real Linux networking — its VRRP socket
//! (shared per interface, `rx.rs`), VIPs, routes and rules over rtnetlink, gratuitous ARPs and
//! neighbour adverts, trackers, notify scripts, the VRRP firewall — and what it shares with the
//! supervisor in `run.rs` (commands in, state changes out). `run.rs` starts, reloads and stops
//! instances; this module never reaches back into it.
//!
//! `mod.rs`: what the supervisor sees (commands, events, spawning) and the wait for an absent
//! interface; `driver.rs`: the driver's loop; `io.rs`: what it does to the host (sockets,
//! VIPs, announcements, firewall); `notify.rs`: the notify scripts.

mod driver;
mod io;
mod notify;
pub mod rx;

pub(crate) use notify::{notify_commands, notify_scripts_done, spawn_scripts};

use std::sync::Arc;

use holdfast_sys::vip;
use holdfast_sys::vip::Handle;
use holdfast_vrrp::router::State;
use tokio::sync::mpsc;

use crate::logging::Logger;
use crate::plan::InstancePlan;

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
    /// Alerts, health cells, BFD sessions.
    pub(crate) services: Arc<crate::services::Services>,
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
            let exit =
                driver::instance(plan.clone(), &mut inbox, for_reader.clone(), sh.clone()).await;
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
