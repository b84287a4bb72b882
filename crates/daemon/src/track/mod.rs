//! An instance's trackers (`track_script`, `track_interface`, `track_file`,
//! `track_process`, native checks): each a task of its own reporting up/down or a value to
//! the instance's driver ([`TrackEv`]); scripts counted with `rise`/`fall` as keepalived
//! counts them.

use std::sync::Arc;
use std::time::Duration;

use holdfast_sys::iface;
use tokio::sync::mpsc;

pub mod file;
pub mod process;

use crate::logging::Logger;
use crate::plan::{TrackerKind, TrackerPlan};
use crate::services::Services;

/// What trackers report to an instance driver.
#[derive(Debug, Clone, Copy)]
pub enum TrackEv {
    /// Tracker `i` went up or down.
    Up(usize, bool),
    /// Value tracker `i` read a value (`track_file`).
    Value(usize, i64),
}

/// An instance's running trackers, kept boxed (and only once it has some): most instances
/// have none, and every instance's task would otherwise carry the room for them.
#[derive(Default)]
pub(crate) struct Trackers {
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    pub(crate) cells: Vec<Arc<crate::health::Cell>>,
    /// Their reports, made with the first tracker and kept across reloads.
    pub(crate) chan: Option<(mpsc::Sender<TrackEv>, mpsc::Receiver<TrackEv>)>,
}

impl Trackers {
    /// Stops the trackers running in `slot`.
    pub(crate) fn stop(slot: &mut Option<Box<Trackers>>) {
        if let Some(t) = slot.as_mut() {
            for task in t.tasks.drain(..) {
                task.abort();
            }
            t.cells.clear();
        }
    }

    /// Stops the trackers running in `slot` and starts `plans`'.
    pub(crate) fn restart(
        slot: &mut Option<Box<Trackers>>,
        instance: &str,
        plans: &[TrackerPlan],
        services: &Services,
        log: Logger,
    ) {
        Trackers::stop(slot);
        if plans.is_empty() {
            return;
        }
        let t = slot.get_or_insert_with(Box::default);
        (t.tasks, t.cells) = start_trackers(instance, plans, &mut t.chan, services, log);
    }
}

/// Starts an instance's trackers; each has a health cell (state, probe latency) that the
/// instance updates from the trackers' events.
fn start_trackers(
    instance: &str,
    trackers: &[TrackerPlan],
    chan: &mut Option<(mpsc::Sender<TrackEv>, mpsc::Receiver<TrackEv>)>,
    services: &Services,
    log: Logger,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    Vec<Arc<crate::health::Cell>>,
) {
    if trackers.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let tx = &chan.get_or_insert_with(|| mpsc::channel(64)).0;
    trackers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let cell = services.health.register(
                crate::health::Owner::Tracker {
                    instance: instance.to_string(),
                    name: t.name.clone(),
                    kind: t.kind.keyword(),
                },
                !t.init_fail,
            );
            let task = match &t.kind {
                TrackerKind::Bfd(name) => {
                    // A session the BFD side does not run (keepalived's BFD process disabled
                    // it) never comes up.
                    let session = services.bfd.watch(name);
                    tokio::spawn(bfd(
                        instance.to_string(),
                        i,
                        name.clone(),
                        session,
                        tx.clone(),
                        log,
                    ))
                }
                _ => tokio::spawn(tracker(i, t.clone(), cell.clone(), tx.clone(), log)),
            };
            (task, cell)
        })
        .unzip()
}

/// `track_bfd`: follows the session's state (down until it first comes up), with keepalived's
/// line at each change.
async fn bfd(
    instance: String,
    index: usize,
    name: String,
    session: Option<tokio::sync::watch::Receiver<bool>>,
    tx: mpsc::Sender<TrackEv>,
    log: Logger,
) {
    let Some(mut rx) = session else {
        return;
    };
    let mut up = false;
    loop {
        let now = *rx.borrow_and_update();
        if now != up {
            up = now;
            log.vrrp(&format!(
                "VRRP_Instance({instance}) Tracked BFD instance {name} is {}",
                if up { "UP" } else { "DOWN" }
            ));
            if tx.send(TrackEv::Up(index, up)).await.is_err() {
                return;
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Runs one tracker forever, reporting state changes after `rise`/`fall` consecutive results
/// with keepalived's log lines.
async fn tracker(
    index: usize,
    t: TrackerPlan,
    cell: Arc<crate::health::Cell>,
    tx: mpsc::Sender<TrackEv>,
    log: Logger,
) {
    if let TrackerKind::File { path, init } = &t.kind {
        return file::watch(index, path.clone(), *init, tx, log).await;
    }
    if let TrackerKind::Process(spec) = &t.kind {
        return process::watch(index, t.name.clone(), spec.clone(), tx, log).await;
    }
    if let TrackerKind::Interface(name) = &t.kind {
        // keepalived: `Netlink reports IF up|down`; weight/FAULT applied by the router.
        // An interface that does not exist (yet: `dynamic_interfaces`), or that was deleted,
        // is down until an interface of that name appears.
        let mut rx = iface::index(name).ok().map(crate::nlhub::changes);
        let mut up = iface::is_up(name).unwrap_or(false);
        if tx.send(TrackEv::Up(index, up)).await.is_err() {
            return;
        }
        loop {
            let next = async {
                if rx.is_none() {
                    let ix = crate::nlhub::interface(name).await;
                    rx = Some(crate::nlhub::changes(ix));
                    return Ok(crate::nlhub::Change::Link(
                        iface::is_up(name).unwrap_or(false),
                    ));
                }
                crate::nlhub::next(&mut rx).await
            };
            let now_up = match next.await {
                Ok(crate::nlhub::Change::Link(u)) => u,
                Ok(crate::nlhub::Change::Addr(_)) => continue,
                Ok(crate::nlhub::Change::Deleted) => {
                    rx = None;
                    false
                }
                // Missed changes (lagged): read the link afresh.
                Err(_) => iface::is_up(name).unwrap_or(false),
            };
            if now_up != up {
                up = now_up;
                log.vrrp(&format!(
                    "Netlink reports {name} {}",
                    if up { "up" } else { "down" }
                ));
                if tx.send(TrackEv::Up(index, up)).await.is_err() {
                    return;
                }
            }
        }
    }
    // keepalived's rise/fall counting, as a checker counts (holdfast-check's one rule).
    let epoch = std::time::Instant::now();
    let mut state = holdfast_check::state::CheckerState::new(
        holdfast_check::state::CheckerConfig::rise_fall(t.interval, t.rise, t.fall, t.init_fail),
        Duration::ZERO,
        0,
    );
    let mut last_status: Option<i32> = None;
    let run_as = match &t.kind {
        TrackerKind::Script { user, .. } => match crate::script::run_as(user.as_ref(), None) {
            Ok(r) => r,
            Err(e) => {
                // check-config reports this too; keepalived disables the script.
                log.vrrp(&format!("{e} for VRRP_Script({}) - disabling", t.name));
                return;
            }
        },
        _ => None,
    };
    // A MYSQL_CHECK tracker keeps its session between checks.
    let mut session = holdfast_check::probe::Session::new(std::process::id() as u16 ^ index as u16);
    let mut tick = tokio::time::interval(t.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        let (ok, how) = match &t.kind {
            // Event-driven above.
            TrackerKind::File { .. }
            | TrackerKind::Interface(_)
            | TrackerKind::Process(_)
            | TrackerKind::Bfd(_) => {
                return;
            }
            TrackerKind::Native(probe) => {
                let r = session.run(probe).await;
                match r {
                    Ok(()) => (true, String::new()),
                    Err(e) => (false, e.to_string()),
                }
            }
            TrackerKind::Script { cmd, .. } => {
                match crate::script::run_once(cmd, t.timeout, run_as).await {
                    Ok(code) => {
                        if last_status != Some(code) && last_status.is_some() {
                            log.vrrp(&format!("Script `{}` now returning {code}", t.name));
                        }
                        last_status = Some(code);
                        (code == 0, format!("exited with status {code}"))
                    }
                    Err(crate::script::ScriptError::TimedOut) => (false, "timed_out".into()),
                    Err(crate::script::ScriptError::Signal(s)) => {
                        (false, format!("due to signal {s}"))
                    }
                    Err(crate::script::ScriptError::Spawn(e)) => {
                        (false, format!("cannot run: {e}"))
                    }
                }
            }
        };
        cell.probed(ok, started.elapsed());
        if state.observe(epoch.elapsed(), ok).is_none() {
            continue;
        }
        let up = state.is_up();
        if ok {
            log.vrrp(&format!("VRRP_Script({}) succeeded", t.name));
        } else if how == "timed_out" {
            log.vrrp(&format!("VRRP_Script({}) timed_out", t.name));
        } else if how.is_empty() {
            log.vrrp(&format!("VRRP_Script({}) failed", t.name));
        } else {
            log.vrrp(&format!("VRRP_Script({}) failed ({how})", t.name));
        }
        if tx.send(TrackEv::Up(index, up)).await.is_err() {
            return;
        }
    }
}
