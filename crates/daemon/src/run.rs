//! `holdfast run`: one driver task per VRRP instance over the sans-IO router, on real Linux
//! networking (raw sockets, rtnetlink VIPs, gratuitous ARP), with trackers, notify scripts and
//! keepalived's signals and log lines.

use std::path::PathBuf;
use std::sync::Arc;

use holdfast_sys::iface;
use holdfast_sys::vip::VipSpec;
use holdfast_vrrp::router::State;
use tokio::sync::mpsc;

use crate::instance::{
    Ctl, Event, Msg, Shared, notify_commands, notify_scripts_done, spawn_instance, spawn_scripts,
    state_word,
};
use crate::plan::InstancePlan;

pub use crate::logging::Logger;
use crate::services::Services;

/// Options of `holdfast run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Logging (`-l`, `-D`, `-S`, `-G`).
    pub log: Logger,
    /// Log detail (`-D`).
    pub detail: bool,
    /// `-V`: leave VIPs in place on exit.
    pub keep_vips: bool,
    /// `-I`: leave holdfast's IPVS services in the kernel at exit.
    pub keep_ipvs: bool,
    /// Pid files (`-p`, `-r`).
    pub pid_files: Vec<PathBuf>,
    /// The configuration file (re-read on SIGHUP).
    pub file: PathBuf,
    /// Config-id for `@ID` lines.
    pub config_id: String,
    /// Where SIGUSR1/SIGUSR2 write `keepalived.data` / `keepalived.stats` (keepalived: /tmp).
    pub data_dir: PathBuf,
    /// Run the VRRP instances (not with `-C`).
    pub vrrp: bool,
    /// Run the virtual servers (not with `-P`).
    pub checkers: bool,
}

/// Loads and plans the configuration, printing its diagnostics and what it asks for that
/// `run` will not do (as `check-config` prints them); `Err` when it cannot run.
pub fn load_plan(file: &std::path::Path, config_id: &str) -> Result<crate::plan::Plan, String> {
    let loaded = load(file, config_id);
    eprint!("{}", loaded.render());
    if !crate::plan::runnable(&loaded) {
        return Err(format!("configuration {} cannot run", file.display()));
    }
    let plan = plan_of(&loaded);
    for d in &plan.findings {
        eprint!("{}", holdfast_config::diag::render(&loaded.sources, d));
    }
    Ok(plan)
}

/// The plan of a loaded configuration, with its errors (what later reloads are judged by)
/// and its findings located for the log.
fn plan_of(loaded: &holdfast_config::Loaded) -> crate::plan::Plan {
    let mut plan = crate::plan::build(
        &loaded.config,
        &loaded.disabled_scripts,
        crate::plan::Facts::of_host(),
    );
    plan.errors = errors(loaded.diagnostics.iter().chain(&plan.findings));
    plan.warnings = first_lines(loaded, &plan.findings);
    plan
}

/// Each diagnostic's first line (`file:line:col: error: message`), to log.
fn first_lines(
    loaded: &holdfast_config::Loaded,
    diagnostics: &[holdfast_config::Diagnostic],
) -> Vec<String> {
    diagnostics
        .iter()
        .filter_map(|d| {
            let text = holdfast_config::diag::render(&loaded.sources, d);
            text.lines().next().map(str::to_string)
        })
        .collect()
}

/// The errors of a configuration that lose or change something — a bad value, a keyword
/// keepalived does not know, broken syntax, a holdfast keyword the plan refuses — by message,
/// with their counts. (Unsupported keywords, notes and script security are not among them.)
fn errors<'a>(
    diagnostics: impl Iterator<Item = &'a holdfast_config::Diagnostic>,
) -> std::collections::BTreeMap<String, usize> {
    use holdfast_config::Class;
    let mut m = std::collections::BTreeMap::new();
    for d in diagnostics {
        if matches!(
            d.class,
            Class::Invalid | Class::Syntax | Class::Unknown | Class::Fatal | Class::Stop
        ) {
            *m.entry(d.message.clone()).or_insert(0) += 1;
        }
    }
    m
}

/// The errors `new` has that `running` does not (or has fewer times).
pub fn new_errors<'a>(
    running: &std::collections::BTreeMap<String, usize>,
    new: &'a std::collections::BTreeMap<String, usize>,
) -> Vec<&'a str> {
    new.iter()
        .filter(|(m, n)| running.get(*m).is_none_or(|r| r < n))
        .map(|(m, _)| m.as_str())
        .collect()
}

fn load(file: &std::path::Path, config_id: &str) -> holdfast_config::Loaded {
    use holdfast_config::loader::FsLoader;
    let opts = holdfast_config::Options {
        config_id: config_id.to_string(),
        strict: false,
    };
    holdfast_config::load(file, &FsLoader, Some(&crate::host::LinuxHost), &opts)
}

/// A configuration read for a reload: its plan, or why the running one is kept.
pub struct ReloadLoad {
    /// The plan to apply, or why the reload is refused.
    pub plan: Result<crate::plan::Plan, String>,
    /// Each diagnostic's first line (`file:line:col: error: message`), to log.
    pub lines: Vec<String>,
}

/// Reads the configuration again for SIGHUP (on a blocking thread: parsing must not hold up
/// adverts). Stricter than a start: a configuration that brings an error the running one does
/// not have (a bad value, an unknown keyword, broken syntax) is refused, so a typo cannot take
/// a VIP or an instance away from a running MASTER; errors the running configuration already
/// had (keepalived corrects many — an advert interval rounded, a default scheduler set) do
/// not stop its reloads.
pub fn load_for_reload(
    file: &std::path::Path,
    config_id: &str,
    running: &std::collections::BTreeMap<String, usize>,
) -> ReloadLoad {
    let loaded = load(file, config_id);
    let lines = first_lines(&loaded, &loaded.diagnostics);
    if !crate::plan::runnable(&loaded) {
        let plan = Err(format!("configuration {} cannot be read", file.display()));
        return ReloadLoad { plan, lines };
    }
    let planned = plan_of(&loaded);
    let fresh = new_errors(running, &planned.errors);
    let plan = if fresh.is_empty() {
        Ok(planned)
    } else {
        Err(format!(
            "{} new error(s) in {}: {}",
            fresh.len(),
            file.display(),
            fresh.join("; ")
        ))
    };
    ReloadLoad { plan, lines }
}

/// The sync groups the supervisor drives.
struct Groups {
    groups: Vec<(crate::plan::GroupPlan, holdfast_vrrp::sync::SyncGroup)>,
    services: Arc<Services>,
}

impl Groups {
    fn new(plans: &[crate::plan::GroupPlan], services: Arc<Services>) -> Groups {
        Groups {
            services,
            groups: plans
                .iter()
                .map(|g| {
                    (
                        g.clone(),
                        holdfast_vrrp::sync::SyncGroup::new(&g.name, g.members.len()),
                    )
                })
                .collect(),
        }
    }

    /// Feeds a member's state change; returns the commands for other members by name.
    /// A member's own cause of FAULT began or ended: the commands that follow.
    fn own_fault(
        &mut self,
        name: &str,
        faulted: bool,
        log: Logger,
    ) -> Vec<(String, holdfast_vrrp::router::SyncCmd)> {
        let mut out = Vec::new();
        for (plan, group) in &mut self.groups {
            let Some(i) = plan.members.iter().position(|m| m == name) else {
                continue;
            };
            let (cmds, event) = group.own_fault(i, faulted);
            if let Some(e) = event {
                log.vrrp(&e.to_string());
            }
            out.extend(
                cmds.into_iter()
                    .filter_map(|(j, c)| plan.members.get(j).map(|m| (m.clone(), c))),
            );
        }
        out
    }

    fn on_change(
        &mut self,
        name: &str,
        to: State,
        by_sync: bool,
        log: Logger,
    ) -> Vec<(String, holdfast_vrrp::router::SyncCmd)> {
        let mut out = Vec::new();
        for (plan, group) in &mut self.groups {
            let Some(i) = plan.members.iter().position(|m| m == name) else {
                continue;
            };
            let before = group.state();
            let (cmds, event) = group.on_change(i, to, by_sync);
            if let Some(e) = event {
                log.vrrp(&e.to_string());
            }
            out.extend(
                cmds.into_iter()
                    .filter_map(|(j, c)| plan.members.get(j).map(|m| (m.clone(), c))),
            );
            let after = group.state();
            if before != after {
                group_notify(plan, after, &self.services, log);
            }
        }
        out
    }
}

fn group_notify(plan: &crate::plan::GroupPlan, state: State, services: &Services, log: Logger) {
    services.fifo.vrrp(&plan.name, true, state_word(state), 0);
    if plan.smtp_alert {
        services.mail.vrrp_alert(&plan.name, true, state, log);
    }
    // keepalived: groups pass priority 0.
    let cmds = notify_commands(&plan.notify, state, "GROUP", &plan.name, 0);
    spawn_scripts(
        cmds,
        plan.script_user.clone(),
        format!("VRRP_Group({})", plan.name),
        log,
    );
}

/// Runs the plan until SIGTERM/SIGINT.
pub async fn run(plan: crate::plan::Plan, opts: RunOptions) -> anyhow::Result<()> {
    // Every signal the daemon answers is caught before anything it does can be seen (its pid
    // file, the startup script, an instance's first state, the readiness notification). Until
    // then SIGHUP, SIGUSR1 and SIGUSR2 would kill it (their default action) and SIGTERM would
    // skip the cleanup; caught, they wait for the main loop.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    // RLIMIT_RTTIME's warning (`*_rlimit_rttime`): logged, not the default (a core dump).
    let mut xcpu = signal(SignalKind::from_raw(nix::libc::SIGXCPU))?;
    let log = opts.log;
    // Before anything the daemon changes: a second daemon on the same pid file would take the
    // first one's VIPs for leftovers and its control socket for its own.
    let _pid_files = match crate::pidfile::claim(&opts.pid_files, |p| {
        log.main(&format!("Remove a zombie pid file {}", p.display()))
    }) {
        Ok(held) => held,
        Err(refused @ crate::pidfile::Refused::Running { .. }) => {
            // keepalived's line and exit status (0).
            log.main("daemon is already running");
            log.main(&refused.to_string());
            return Ok(());
        }
        Err(e) => anyhow::bail!("{e}"),
    };
    for u in &plan.warnings {
        log.main(&format!("WARNING - not done by holdfast run: {u}"));
    }
    // The alert channels, health cells and BFD sessions the parts share.
    let services = Arc::new(Services::default());
    services.mail.configure(plan.mail.clone());
    if let Some((c, t)) = &plan.startup {
        lifecycle_script("startup", c, *t, plan.script_user.as_ref(), log).await;
    }
    let (shutdown, script_user) = (plan.shutdown.clone(), plan.script_user.clone());
    // keepalived gives its VRRP and checker processes their own nice values; holdfast runs
    // both parts in one process, which takes the more favourable of those of the parts it
    // runs (threads started later inherit it).
    let nice = [(opts.vrrp, plan.nice.0), (opts.checkers, plan.nice.1)]
        .into_iter()
        .filter_map(|(runs, n)| n.filter(|_| runs))
        .min();
    if let Some(n) = nice {
        crate::tuning::set_nice(n, log);
    }
    // Likewise SCHED_RR: the highest priority of the parts it runs, for the thread that runs
    // them all (and the threads reading VRRP packets, which take it from this one).
    let realtime = [
        (opts.vrrp, plan.realtime.0),
        (opts.checkers, plan.realtime.1),
    ]
    .into_iter()
    .filter_map(|(runs, rt)| rt.filter(|_| runs))
    .max_by_key(|(priority, limit)| (*priority, *limit));
    if let Some((priority, limit)) = realtime {
        crate::tuning::set_realtime(priority, limit, log);
    } else if opts.vrrp {
        crate::tuning::shorten_slice();
    }

    if (opts.vrrp && plan.no_swap.0) || (opts.checkers && plan.no_swap.1) {
        crate::tuning::lock_in_memory(log);
    }
    services.fifo.configure(Some(plan.fifos.clone()), log);
    crate::tuning::raise_file_limit(log);
    let guardian = if opts.keep_vips {
        None
    } else {
        match std::env::current_exe()
            .and_then(|exe| crate::guardian::Guardian::spawn(&exe, opts.detail))
        {
            Ok(g) => Some(Arc::new(g)),
            Err(e) => {
                log.main(&format!(
                    "WARNING - cannot start the guardian (no last words on a crash): {e}"
                ));
                None
            }
        }
    };
    let (events, mut events_rx) = mpsc::unbounded_channel();
    // A crash may have left the VRRP firewall's tables behind (and its VIPs in them).
    let firewall_used = opts.vrrp
        && plan
            .instances
            .iter()
            .any(|i| i.no_accept || i.vmac.is_some());
    if firewall_used {
        if !plan.firewall.configured {
            log.vrrp(
                "use_vmac or no_accept/strict specified, but no firewall configured - using nftables",
            );
        }
        crate::firewall::remove(&plan.firewall).await;
    }
    let sh = Shared {
        log,
        keep_vips: opts.keep_vips,
        guardian: guardian.clone(),
        status: Arc::default(),
        events,
        firewall: Arc::new(plan.firewall.clone()),
        services: services.clone(),
    };
    let mut groups = Groups::new(&plan.groups, services.clone());
    let mut config_errors = plan.errors.clone();
    let mut running: Vec<Running> = Vec::new();
    let planes = Arc::new(crate::lvs::Planes::with_options(crate::lvs::PlaneOptions {
        keep_on_stop: opts.keep_ipvs,
        ..plan.planes.clone()
    }));
    let mut vs_plans = if opts.checkers {
        plan.virtual_servers
    } else {
        Vec::new()
    };
    // BFD sessions first: the instances' `track_bfd` trackers follow them.
    let mut bfd = opts
        .vrrp
        .then(|| crate::bfd::Bfd::start(&plan.bfd, services.bfd.clone(), log));
    let mut vs_tasks = crate::lvs::start(vs_plans.clone(), planes.clone(), services.clone(), log);
    planes.start_sync(log);
    // Announcements follow the virtual servers' quorums: after them.
    let mut announcer = opts.checkers.then(|| {
        crate::announce::Announcer::start(
            plan.announces.clone(),
            services.clone(),
            planes.clone(),
            guardian.clone(),
            log,
        )
    });
    let control_path = crate::control::socket_path(plan.control_socket.as_deref());
    let control = match crate::control::serve(
        &control_path,
        crate::control::Sources {
            vrrp: sh.status.clone(),
            planes: planes.clone(),
        },
        log,
    ) {
        Ok(t) => Some(t),
        Err(e) => {
            log.main(&format!(
                "WARNING - cannot open the control socket {}: {e} (holdfast status will not answer)",
                control_path.display()
            ));
            None
        }
    };
    let reloads = Arc::new(std::sync::Mutex::new(crate::metrics::Reloads::default()));
    let metrics = match plan.metrics_listen {
        None => None,
        Some(addr) => match crate::metrics::serve(
            addr,
            crate::metrics::Sources {
                vrrp: sh.status.clone(),
                planes: planes.clone(),
                reloads: reloads.clone(),
                services: services.clone(),
            },
            log,
        )
        .await
        {
            Ok(t) => Some(t),
            Err(e) => {
                log.main(&format!(
                    "WARNING - cannot listen for metrics on {addr}: {e}"
                ));
                None
            }
        },
    };
    // keepalived's static addresses, routes and rules: before the instances start.
    let mut statics = if opts.vrrp {
        Some(
            crate::routing::Statics::start(
                static_specs(&plan.static_addresses, log),
                &plan.static_routing,
                log,
            )
            .await,
        )
    } else {
        None
    };
    let instances = if opts.vrrp {
        plan.instances
    } else {
        Vec::new()
    };
    // Each interface's change ring sized for the VIPs it carries.
    let mut vips_on: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for i in &instances {
        vips_on.entry(i.ifname.as_str()).or_default();
        for v in &i.vips {
            *vips_on.entry(v.dev.as_str()).or_default() += 1;
        }
    }
    for (dev, n) in vips_on {
        if let Ok(ifindex) = iface::index(dev) {
            crate::nlhub::reserve(ifindex, n);
        }
    }
    for inst in instances {
        let inst = Arc::new(inst);
        let (tx, task) = spawn_instance(inst.clone(), &sh);
        running.push((inst, tx, task));
    }
    crate::systemd::ready(&format!(
        "{} VRRP instance(s), {} virtual server(s)",
        running.len(),
        vs_plans.len()
    ));
    // A burst of work (the start, a reload, a failover) leaves freed pages behind: they go
    // back once the instances have been quiet for a second.
    const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);
    let settle = tokio::time::sleep(SETTLE);
    tokio::pin!(settle);
    let mut unsettled = true;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            () = &mut settle, if unsettled => {
                unsettled = false;
                holdfast_sys::mem::release_free_heap();
            }
            Some((name, ev)) = events_rx.recv() => match ev {
                Event::OwnFault(faulted) => {
                    for (member, cmd) in groups.own_fault(&name, faulted, log) {
                        if let Some((_, tx, _)) = running.iter().find(|(p, _, _)| p.name == member) {
                            tx.command(Ctl::Sync(cmd));
                        }
                    }
                }
                Event::State(to, by_sync) => {
                    unsettled = true;
                    settle.as_mut().reset(tokio::time::Instant::now() + SETTLE);
                    planes.vrrp_state(&name, to == State::Master, log);
                    if let Some((p, _, _)) = running.iter().find(|(p, _, _)| p.name == name) {
                        planes.vips_held(&p.vip_addrs(), to == State::Master);
                    }
                    for (member, cmd) in groups.on_change(&name, to, by_sync, log) {
                        if let Some((_, tx, _)) = running.iter().find(|(p, _, _)| p.name == member) {
                            tx.command(Ctl::Sync(cmd));
                        }
                    }
                }
            },
            _ = usr1.recv() => dump_file(&sh, &opts.data_dir.join("keepalived.data"), crate::dump::data),
            _ = xcpu.recv() => {
                // RLIMIT_RTTIME's soft limit: the real-time thread ran half its limit without
                // blocking (at the limit the kernel kills the process).
                let (part, key) = if opts.vrrp { ("VRRP", "vrrp") } else { ("Checker", "checker") };
                log.main(&format!("{part} process has used too much CPU time, {key}_rlimit_rttime may need to be increased"));
            }
            _ = usr2.recv() => dump_file(&sh, &opts.data_dir.join("keepalived.stats"), crate::dump::stats),
            _ = hup.recv() => {
                log.main("Reloading");
                crate::systemd::reloading();
                let (file, id) = (opts.file.clone(), opts.config_id.clone());
                let running_errors = config_errors.clone();
                let loaded = tokio::task::spawn_blocking(move || load_for_reload(&file, &id, &running_errors))
                    .await
                    .map_err(|e| format!("the configuration reader failed: {e}"))
                    .and_then(|l| {
                        for line in &l.lines {
                            log.main(line);
                        }
                        l.plan
                    });
                match loaded {
                    Err(e) => {
                        log.main(&format!("Reload failed, keeping the running configuration: {e}"));
                        if let Ok(mut r) = reloads.lock() {
                            r.record(false);
                        }
                    }
                    Ok(new) => {
                        if let Ok(mut r) = reloads.lock() {
                            r.record(true);
                        }
                        config_errors = new.errors.clone();
                        for u in &new.warnings {
                            log.main(&format!("WARNING - not done by holdfast run: {u}"));
                        }
                        services.mail.configure(new.mail.clone());
                        services.fifo.configure(Some(new.fifos.clone()), log);
                        if opts.vrrp {
                            if let Some(s) = statics.as_mut() {
                                s.reload(static_specs(&new.static_addresses, log), &new.static_routing, log).await;
                            }
                            // BFD first: the instances' trackers look their sessions up.
                            if let Some(b) = bfd.as_mut() {
                                b.reload(&new.bfd);
                            }
                            running = reload(running, new.instances, &sh).await;
                            groups = Groups::new(&new.groups, services.clone());
                        }
                        let wanted = crate::lvs::PlaneOptions {
                            keep_on_stop: planes.options().keep_on_stop,
                            ..new.planes.clone()
                        };
                        if &wanted != planes.options() {
                            log.main("WARNING - lvs_flush, lvs_flush_on_stop, lvs_timeouts, lvs_sync_daemon, nft_table and nft_flowtable take effect at the next start, not on reload");
                        }
                        if opts.checkers {
                            // Checkers restart; the data plane is handed the new table, so
                            // established connections to servers that stay are kept.
                            for t in vs_tasks.drain(..) {
                                t.abort();
                            }
                            crate::lvs::clear_gone(&vs_plans, &new.virtual_servers, &planes, log);
                            vs_plans = new.virtual_servers;
                            vs_tasks = crate::lvs::start(vs_plans.clone(), planes.clone(), services.clone(), log);
                            if let Some(a) = announcer.as_mut() {
                                a.reload(new.announces.clone()).await;
                            }
                        }
                        log.main("Reload finished");
                    }
                }
                unsettled = true;
                settle.as_mut().reset(tokio::time::Instant::now() + SETTLE);
                crate::systemd::ready(&format!(
                    "{} VRRP instance(s), {} virtual server(s)",
                    running.len(),
                    vs_plans.len()
                ));
            }
        }
    }
    log.main("Stopping");
    crate::systemd::stopping();
    // The announcements go first: the routers stop sending here while the services still
    // answer.
    if let Some(a) = announcer.take() {
        a.stop().await;
    }
    for t in vs_tasks.drain(..) {
        t.abort();
    }
    for p in &vs_plans {
        log.check(&format!("Removing Virtual Server {}", p.name()));
    }
    crate::lvs::stop(&vs_plans, &planes, log);
    crate::lvs::omega(&vs_plans, &planes, log).await;
    for (_, tx, _) in &running {
        tx.command(Ctl::Stop);
    }
    for (_, _, t) in running {
        let _ = t.await;
    }
    if let Some(b) = bfd {
        b.stop();
    }
    // Every member has stopped: the groups stop too (keepalived runs their STOP scripts),
    // unless -V leaves everything as it is.
    if opts.vrrp && !opts.keep_vips {
        for (g, _) in &groups.groups {
            group_notify(g, State::Init, &services, log);
        }
    }
    notify_scripts_done(log).await;
    // The firewall's tables go with the instances (keepalived removes its table at exit).
    if !opts.keep_vips {
        crate::firewall::remove_if_made(&sh.firewall).await;
    }
    // keepalived clears the static entries once the instances are down, unless -V.
    if let Some(s) = statics
        && !opts.keep_vips
    {
        s.stop(log).await;
    }
    if let Some(g) = guardian {
        g.dismiss();
    }
    if let Some(c) = control {
        c.abort();
        let _ = std::fs::remove_file(&control_path);
    }
    if let Some(m) = metrics {
        m.abort();
    }
    services.fifo.configure(None, log);
    if let Some((c, t)) = &shutdown {
        lifecycle_script("shutdown", c, *t, script_user.as_ref(), log).await;
    }
    log.main("Stopped");
    Ok(())
}

/// The static addresses for the kernel; one whose interface has gone is logged and left out.
fn static_specs(addresses: &[crate::plan::PlannedVip], log: Logger) -> Vec<VipSpec> {
    addresses
        .iter()
        .filter_map(|v| match iface::index(&v.dev) {
            Ok(ix) => Some(v.spec(ix)),
            Err(e) => {
                log.vrrp(&format!(
                    "Not adding address {} to {} since interface doesn't exist ({e})",
                    v.addr, v.dev
                ));
                None
            }
        })
        .collect()
}

/// Runs `startup_script` or `shutdown_script` (`kind`: `startup`, `shutdown`) and waits for
/// it, at most `timeout`, logging as keepalived does.
async fn lifecycle_script(
    kind: &str,
    c: &holdfast_config::model::Command,
    timeout: std::time::Duration,
    script_user: Option<&holdfast_config::model::UserSpec>,
    log: Logger,
) {
    let what = format!("{kind} script");
    if log.detail {
        let prog = crate::script::split(&c.cmd)
            .into_iter()
            .next()
            .unwrap_or_default();
        log.main(&format!("Running {what} {prog}"));
    }
    let run_as = match crate::script::run_as(c.user.as_ref(), script_user) {
        Ok(r) => r,
        Err(e) => {
            log.main(&format!("{e} for {what} '{}' - skipping", c.cmd));
            return;
        }
    };
    match crate::script::run_once(&c.cmd, timeout, run_as).await {
        // keepalived's wording, doubled "script" included.
        Ok(0) if log.detail => log.main(&format!("{what} script succeeded")),
        Ok(0) => {}
        Ok(status) => log.main(&format!("{what} script failed, status {status}")),
        Err(crate::script::ScriptError::TimedOut) => log.main(&format!("{what} timed out")),
        Err(e) => log.main(&format!("Call of {what} {} failed: {e}", c.cmd)),
    }
}

/// A running instance: its plan, its control channel, its task.
/// The plan is the one the instance's task holds (shared, not copied).
type Running = (
    Arc<InstancePlan>,
    crate::mailbox::Sender<Msg>,
    tokio::task::JoinHandle<()>,
);

/// keepalived's reload: an instance whose VRID, family, interface and addressing are unchanged
/// keeps its state (a MASTER stays MASTER, VIPs are diffed); others are stopped and started.
async fn reload(running: Vec<Running>, wanted: Vec<InstancePlan>, sh: &Shared) -> Vec<Running> {
    let log = sh.log;
    let mut old: Vec<Option<Running>> = running.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for new in wanted {
        let new = Arc::new(new);
        let found = old
            .iter()
            .position(|o| o.as_ref().is_some_and(|(p, _, _)| p.name == new.name));
        match found.and_then(|i| old[i].take()) {
            Some((p, tx, task))
                if holdfast_vrrp::router::continues(&p.placement(), &new.placement()) =>
            {
                tx.command(Ctl::Reload(new.clone()));
                out.push((new, tx, task));
            }
            Some((_, tx, task)) => {
                tx.command(Ctl::Stop);
                let _ = task.await;
                let (tx, task) = spawn_instance(new.clone(), sh);
                out.push((new, tx, task));
            }
            None => {
                let (tx, task) = spawn_instance(new.clone(), sh);
                out.push((new, tx, task));
            }
        }
    }
    for (p, tx, task) in old.into_iter().flatten() {
        log.vrrp(&format!("({}) removed by reload", p.name));
        tx.command(Ctl::Stop);
        let _ = task.await;
        if let Ok(mut t) = sh.status.lock() {
            t.remove(&p.name);
        }
    }
    out
}

fn dump_file(sh: &Shared, path: &std::path::Path, render: fn(&crate::dump::Table) -> String) {
    let text = match sh.status.lock() {
        Ok(t) => render(&t),
        Err(_) => return,
    };
    if let Err(e) = std::fs::write(path, text) {
        sh.log
            .main(&format!("cannot write {}: {e}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_is_refused_only_for_errors_the_running_configuration_does_not_have() {
        let set = |v: &[(&str, usize)]| -> std::collections::BTreeMap<String, usize> {
            v.iter().map(|(m, n)| (m.to_string(), *n)).collect()
        };
        let running = set(&[("(VI_1) advert interval rounded", 1)]);
        // The same correction again: nothing new.
        assert!(new_errors(&running, &running).is_empty());
        // Fixed: nothing new either.
        assert!(new_errors(&running, &set(&[])).is_empty());
        // A new one, and one more of a kind already there.
        let new = set(&[
            ("(VI_1) advert interval rounded", 2),
            ("virtual_router_id '300' out of range [1, 255]", 1),
        ]);
        assert_eq!(
            new_errors(&running, &new),
            [
                "(VI_1) advert interval rounded",
                "virtual_router_id '300' out of range [1, 255]"
            ]
        );
    }
}
