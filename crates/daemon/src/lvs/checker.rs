//! A real server's checkers: each probe's run, keepalived's log and mail lines for its
//! attempts and flips, the timing grid probes share, and `FILE_CHECK`'s weights.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use holdfast_check::probe::MysqlChecker;
use holdfast_check::state::{CheckerState, Flip};
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

/// A sequence number for ICMP echoes and DNS ids.
pub(super) fn next_seq() -> u16 {
    static SEQ: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The outcome of one probe: up or not, and a MISC_CHECK dynamic weight.
pub(super) struct Outcome {
    pub(super) ok: bool,
    /// The failure is a MYSQL_CHECK gate, not a dead server.
    pub(super) gated: bool,
    pub(super) weight: Option<Option<u32>>,
    pub(super) detail: String,
}

/// Runs one probe. A MYSQL_CHECK keeps its session in `mysql` between calls.
pub(super) async fn probe_once(
    p: &Probe,
    ctx: &CheckCtx,
    mysql: &mut Option<MysqlChecker>,
) -> Outcome {
    let plain = |r: Result<(), holdfast_check::probe::ProbeError>| Outcome {
        ok: r.is_ok(),
        gated: matches!(r, Err(holdfast_check::probe::ProbeError::Gate(_))),
        weight: None,
        detail: r.err().map(|e| e.to_string()).unwrap_or_default(),
    };
    match p {
        Probe::Tcp(t) => plain(holdfast_check::probe::tcp(t).await),
        Probe::Http(h) => plain(holdfast_check::probe::http(h).await),
        Probe::Udp(u) => plain(holdfast_check::probe::udp(u).await),
        Probe::Ping(q) => {
            let id = (ctx.seed as u16) ^ (std::process::id() as u16);
            plain(holdfast_check::probe::ping(q, id, next_seq()).await)
        }
        Probe::Smtp(m) => plain(holdfast_check::probe::smtp(m).await),
        Probe::Dns(d) => plain(holdfast_check::probe::dns(d, next_seq()).await),
        Probe::Mysql(m) => plain(
            mysql
                .get_or_insert_with(|| MysqlChecker::new(m.clone()))
                .check()
                .await,
        ),
        // Event-driven (`file_checker`), never polled: say so rather than pass.
        Probe::File { .. } => Outcome {
            ok: false,
            gated: false,
            weight: None,
            detail: "FILE_CHECK follows its file and is not polled".into(),
        },
        Probe::Misc {
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

/// keepalived's lines for a checker coming up and going down.
/// The line `log_all_failures` logs for one failed attempt: keepalived's where it has one.
pub(super) fn attempt_line(p: &Probe, ctx: &CheckCtx, detail: &str) -> String {
    let rs = &ctx.label;
    match p {
        Probe::Tcp(_) if detail.starts_with("timeout") => {
            format!("TCP connection to {rs} timeout.")
        }
        Probe::Tcp(_) => format!("TCP connection to {rs} failed."),
        Probe::Udp(_) => format!("UDP connection to {rs} failed."),
        Probe::Ping(_) => format!("ICMP connection to {rs} of {} failed.", ctx.vs),
        Probe::Misc { cmd, .. } => format!(
            "Misc check for [{rs} VS {}] by [{}] failed.",
            ctx.vs,
            script_name(cmd)
        ),
        Probe::Http(_) => format!("HTTP_CHECK on service {rs} failed: {detail}."),
        Probe::Smtp(_) => format!("SMTP_CHECK on service {rs} failed: {detail}."),
        Probe::Dns(_) => format!("DNS_CHECK on service {rs} failed: {detail}."),
        Probe::Mysql(_) => format!("MYSQL_CHECK on service {rs} failed: {detail}."),
        Probe::File { .. } => format!("FILE_CHECK on service {rs} failed: {detail}."),
    }
}

pub(super) fn flip_line(p: &Probe, ctx: &CheckCtx, flip: Flip, detail: &str) -> String {
    let rs = &ctx.label;
    match (p, flip) {
        (Probe::Tcp(_), Flip::Up) => format!("TCP connection to {rs} success."),
        (Probe::Http(_), Flip::Up) => format!("Remote Web server {rs} succeed on service."),
        (Probe::Misc { cmd, .. }, Flip::Up) => format!(
            "Misc check for [{rs} VS {}] by [{}] succeeded.",
            ctx.vs,
            script_name(cmd)
        ),
        (Probe::Misc { cmd, .. }, Flip::Down { retries }) => {
            let tries = match retries {
                0 => " with retry disabled".to_string(),
                1 => " after 1 retry".to_string(),
                n => format!(" after {n} retries"),
            };
            let head = format!(
                "Misc check for [{rs} VS {}] by [{}]",
                ctx.vs,
                script_name(cmd)
            );
            if detail == "timed out" {
                format!("{head} timed out{tries}.")
            } else {
                format!("{head} failed{tries} ({detail}).")
            }
        }
        (Probe::File { .. }, Flip::Up) => format!("FILE_CHECK on service {rs} up."),
        (Probe::Mysql(_), Flip::Up) => format!("MYSQL_CHECK on service {rs} succeeded."),
        (Probe::Mysql(_), Flip::Down { retries }) if retries > 0 => {
            format!("MYSQL_CHECK on service {rs} failed after {retries} retries ({detail}).")
        }
        (Probe::Mysql(_), Flip::Down { .. }) => {
            format!("MYSQL_CHECK on service {rs} failed ({detail}).")
        }
        (Probe::Udp(_), Flip::Up) => format!("UDP connection to {rs} success."),
        (Probe::Ping(_), Flip::Up) => format!("ICMP connection to {rs} success."),
        (Probe::Smtp(_), Flip::Up) => format!("Remote SMTP server {rs} succeed on service."),
        (Probe::Dns(_), Flip::Up) => format!("DNS_CHECK ({rs}) succeeded."),
        (Probe::Dns(_), Flip::Down { .. }) => format!("DNS_CHECK ({rs}) failed: {detail}."),
        (Probe::Ping(_), Flip::Down { retries }) if retries > 0 => format!(
            "ICMP CHECK on service {rs} of {} failed after {retries} retries.",
            ctx.vs
        ),
        (Probe::Ping(_), Flip::Down { .. }) => format!("ICMP CHECK on service {rs} failed."),
        (p, Flip::Down { retries }) => {
            let kind = match p {
                Probe::Tcp(_) => "TCP_CHECK",
                Probe::Http(h) if h.tls.is_some() => "SSL_CHECK",
                Probe::Udp(_) => "UDP_CHECK",
                Probe::Smtp(_) => "SMTP_CHECK",
                Probe::File { .. } => "FILE_CHECK",
                _ => "HTTP_CHECK",
            };
            if retries > 0 {
                format!("{kind} on service {rs} failed after {retries} retries.")
            } else {
                format!("{kind} on service {rs} failed.")
            }
        }
    }
}

/// FILE_CHECK (keepalived's semantics): with weight 0 a non-zero value (a zero one with
/// `reverse`) takes the server down; otherwise value × weight (negated with `reverse`) is
/// added to the server's weight, and a sum at or below -65536 takes it down.
pub fn file_effect(value: i64, weight: i32, reverse: bool, configured: u32) -> (bool, Option<u32>) {
    if weight == 0 {
        return ((value != 0) == reverse, None);
    }
    let w = i64::from(weight) * if reverse { -1 } else { 1 };
    let delta = value.saturating_mul(w);
    if delta <= -65_536 {
        return (false, None);
    }
    let eff = (i64::from(configured) + delta).clamp(0, i64::from(u32::MAX));
    (true, Some(eff as u32))
}

pub(super) async fn file_checker(
    ctx: CheckCtx,
    plan: CheckPlan,
    configured: u32,
    tx: mpsc::Sender<CheckEv>,
    log: Logger,
) {
    let probe_kind = plan.probe.clone();
    let Probe::File {
        path,
        init,
        weight,
        reverse,
    } = plan.probe
    else {
        return;
    };
    let (vtx, mut vrx) = mpsc::channel(8);
    let watcher = tokio::spawn(crate::track_file::watch(0, path, init, vtx, log));
    let _guard = AbortOnDrop(vec![watcher]);
    let mut up = !plan.cfg.alpha;
    while let Some(ev) = vrx.recv().await {
        let crate::trackers::TrackEv::Value(_, value) = ev else {
            continue;
        };
        ctx.cell.set_value(value);
        let (now_up, w) = file_effect(value, weight, reverse, configured);
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
            log.check(&flip_line(&probe_kind, &ctx, flip, ""));
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
    let mut mysql = None;
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
        let out = probe_once(&plan.probe, &ctx, &mut mysql).await;
        ctx.cell.probed(out.ok, started.elapsed());
        if !out.ok && plan.log_all_failures && (st.is_up() || !ran) {
            log.check(&attempt_line(&plan.probe, &ctx, &out.detail));
        }
        ran = true;
        if let Some(flip) = st.observe(now(), out.ok) {
            log.check(&flip_line(&plan.probe, &ctx, flip, &out.detail));
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
