//! A real server's checkers: each one's loop (a network probe, a MISC_CHECK script, a
//! FILE_CHECK's file), the timing grid probes share, and `FILE_CHECK`'s weights. What a
//! probe does and keepalived's lines about it live in `holdfast-check`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use holdfast_check::probe::{ProbeError, Session};
use holdfast_check::state::{CheckerState, Flip};
use holdfast_check::words::About;
use holdfast_config::model::UserSpec;
use tokio::sync::mpsc;

use crate::logging::Logger;

use crate::plan::lvs::*;

/// A checker's report to its virtual server.
#[derive(Debug)]
pub(super) enum CheckEv {
    /// Checker `ck` of real server `rs` came up or went down; `gated` when it went down
    /// because a MYSQL_CHECK gate failed on a healthy session (role or lag): the server is
    /// then drained (weight 0, connections kept), not removed.
    State {
        rs: usize,
        ck: usize,
        up: bool,
        gated: bool,
    },
    /// MISC_CHECK with misc_dynamic set a weight (`None`: configured weight).
    Weight { rs: usize, weight: Option<u32> },
}

pub(super) struct CheckCtx {
    pub(super) rs: usize,
    pub(super) ck: usize,
    pub(super) label: String,
    pub(super) vs: String,
    pub(super) suspend: Option<IpAddr>,
    pub(super) script_user: Option<UserSpec>,
    pub(super) seed: u64,
    /// State and latency for the metrics endpoint.
    pub(super) cell: Arc<crate::health::Cell>,
}

/// Whether `ip` is an address of this host (`ha_suspend`): binding it succeeds only then.
pub(super) fn is_local(ip: IpAddr) -> bool {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The outcome of one probe: up or not, and a MISC_CHECK dynamic weight.
pub(super) struct Outcome {
    pub(super) ok: bool,
    /// The failure is a MYSQL_CHECK gate, not a dead server.
    pub(super) gated: bool,
    pub(super) weight: Option<Option<u32>>,
    pub(super) detail: String,
}

/// Runs one check: a network probe in `session`, or a MISC_CHECK's script.
pub(super) async fn probe_once(c: &Check, ctx: &CheckCtx, session: &mut Session) -> Outcome {
    match c {
        Check::Probe(p) => {
            let r = session.run(p).await;
            Outcome {
                ok: r.is_ok(),
                gated: matches!(r, Err(ProbeError::Gate(_))),
                weight: None,
                detail: r.err().map(|e| e.to_string()).unwrap_or_default(),
            }
        }
        // Event-driven (`file_checker`), never polled: say so rather than pass.
        Check::File { .. } => Outcome {
            ok: false,
            gated: false,
            weight: None,
            detail: "FILE_CHECK follows its file and is not polled".into(),
        },
        Check::Misc {
            cmd,
            timeout,
            dynamic,
            user,
        } => {
            let run_as = match crate::script::run_as(user.as_ref(), ctx.script_user.as_ref()) {
                Ok(r) => r,
                Err(e) => {
                    return Outcome {
                        ok: false,
                        gated: false,
                        weight: None,
                        detail: e,
                    };
                }
            };
            match crate::script::run_once(cmd, *timeout, run_as).await {
                // keepalived misc_dynamic: 0 up (configured weight), 1 down, 2-255 up with
                // weight exit-2.
                Ok(0) => Outcome {
                    ok: true,
                    gated: false,
                    weight: dynamic.then_some(None),
                    detail: String::new(),
                },
                Ok(code) if *dynamic && code >= 2 => Outcome {
                    ok: true,
                    gated: false,
                    weight: Some(Some(u32::try_from(code - 2).unwrap_or(0))),
                    detail: String::new(),
                },
                Ok(code) => Outcome {
                    ok: false,
                    gated: false,
                    weight: None,
                    detail: format!("exited with status {code}"),
                },
                Err(crate::script::ScriptError::TimedOut) => Outcome {
                    ok: false,
                    gated: false,
                    weight: None,
                    detail: "timed out".into(),
                },
                Err(crate::script::ScriptError::Signal(sig)) => Outcome {
                    ok: false,
                    gated: false,
                    weight: None,
                    detail: format!("due to signal {sig}"),
                },
                Err(e) => Outcome {
                    ok: false,
                    gated: false,
                    weight: None,
                    detail: e.to_string(),
                },
            }
        }
    }
}

/// The program of a MISC_CHECK command line, as keepalived names it in log lines.
pub(super) fn script_name(cmd: &str) -> String {
    crate::script::split(cmd)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Whom keepalived's lines about a checker name; `script`: a MISC_CHECK's program, else "".
pub(super) fn about<'a>(ctx: &'a CheckCtx, script: &'a str) -> About<'a> {
    About {
        rs: &ctx.label,
        vs: &ctx.vs,
        script,
    }
}

pub(super) async fn file_checker(
    ctx: CheckCtx,
    plan: CheckPlan,
    configured: u32,
    tx: mpsc::Sender<CheckEv>,
    log: Logger,
) {
    let kind = plan.check.kind();
    let Check::File {
        path,
        init,
        weight,
        reverse,
    } = plan.check
    else {
        return;
    };
    let (vtx, mut vrx) = mpsc::channel(8);
    let watcher = tokio::spawn(crate::track::file::watch(0, path, init, vtx, log));
    let _guard = AbortOnDrop(vec![watcher]);
    let mut up = !plan.cfg.alpha;
    while let Some(ev) = vrx.recv().await {
        let crate::track::TrackEv::Value(_, value) = ev else {
            continue;
        };
        ctx.cell.set_value(value);
        let (now_up, w) = holdfast_check::file::effect(value, weight, reverse, configured);
        if w.is_some()
            && tx
                .send(CheckEv::Weight {
                    rs: ctx.rs,
                    weight: w,
                })
                .await
                .is_err()
        {
            return;
        }
        if now_up != up {
            up = now_up;
            let flip = if up {
                Flip::Up
            } else {
                Flip::Down { retries: 0 }
            };
            log.check(&kind.flip_line(about(&ctx, ""), flip, ""));
            ctx.cell.set_up(up);
            let ev = CheckEv::State {
                rs: ctx.rs,
                ck: ctx.ck,
                up,
                gated: false,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
}

/// The most a probe is held back so that probes due close together go out together.
pub(super) const SLACK: Duration = Duration::from_millis(50);

/// `due` moved later, by at most a twentieth of the wait and at most [`SLACK`], to the next
/// step of a grid all checkers share, so that probes due close together start in one turn of
/// the runtime: one wake-up for many probes instead of one each, as the kernel's timer slack
/// does for its timers. A probe is never early.
pub(super) fn coalesce(due: tokio::time::Instant) -> tokio::time::Instant {
    static GRID: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let grid = tokio::time::Instant::from_std(*GRID.get_or_init(std::time::Instant::now));
    coalesce_on(grid, tokio::time::Instant::now(), due)
}

/// [`coalesce`] on the grid that starts at `grid`, at time `now`.
pub(super) fn coalesce_on(
    grid: tokio::time::Instant,
    now: tokio::time::Instant,
    due: tokio::time::Instant,
) -> tokio::time::Instant {
    let step = (due.saturating_duration_since(now) / 20)
        .min(SLACK)
        .as_nanos();
    match due.checked_duration_since(grid) {
        Some(since) if step > 0 => {
            let n = since.as_nanos().div_ceil(step);
            let at = u64::try_from(n * step).unwrap_or(u64::MAX);
            grid + Duration::from_nanos(at)
        }
        _ => due,
    }
}

pub(super) async fn checker(
    ctx: CheckCtx,
    plan: CheckPlan,
    tx: mpsc::Sender<CheckEv>,
    log: Logger,
) {
    let epoch = tokio::time::Instant::now();
    let now = || epoch.elapsed();
    let mut st = CheckerState::new(plan.cfg, now(), ctx.seed);
    let mut session = Session::new((ctx.seed as u16) ^ (std::process::id() as u16));
    let kind = plan.check.kind();
    let script = match &plan.check {
        Check::Misc { cmd, .. } => script_name(cmd),
        _ => String::new(),
    };
    let at = about(&ctx, &script);
    let mut last_weight: Option<Option<u32>> = None;
    // Whether a probe has run yet (keepalived logs a first failure as if the checker was up).
    let mut ran = false;
    // One timer for the checker's life, moved to each due time.
    let timer = tokio::time::sleep_until(epoch);
    tokio::pin!(timer);
    loop {
        timer.as_mut().reset(coalesce(epoch + st.next_due()));
        (&mut timer).await;
        if ctx.suspend.is_some_and(|ip| !is_local(ip)) {
            // ha_suspend: not the node holding the virtual address; look again later.
            let again = plan.cfg.delay_loop.min(Duration::from_secs(1));
            timer.as_mut().reset(tokio::time::Instant::now() + again);
            (&mut timer).await;
            continue;
        }
        let started = std::time::Instant::now();
        let out = probe_once(&plan.check, &ctx, &mut session).await;
        ctx.cell.probed(out.ok, started.elapsed());
        if !out.ok && plan.log_all_failures && (st.is_up() || !ran) {
            log.check(&kind.attempt_line(at, &out.detail));
        }
        ran = true;
        if let Some(flip) = st.observe(now(), out.ok) {
            log.check(&kind.flip_line(at, flip, &out.detail));
            let up = matches!(flip, Flip::Up);
            ctx.cell.set_up(up);
            let ev = CheckEv::State {
                rs: ctx.rs,
                ck: ctx.ck,
                up,
                gated: !up && out.gated,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        if let Some(w) = out.weight
            && last_weight != Some(w)
        {
            last_weight = Some(w);
            if tx
                .send(CheckEv::Weight {
                    rs: ctx.rs,
                    weight: w,
                })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Aborts the tasks it holds when dropped (a task ending takes its helpers with it).
pub(super) struct AbortOnDrop(pub(super) Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
