//! The data planes the virtual servers run on — holdfast's proxy, the kernel's IPVS,
//! nftables — kept per kind in one registry, with the nftables applier's thread of its own
//! (so that a slow `nft` never holds up VRRP).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use holdfast_dataplane::ipvs::{IpvsPlane, SyncDaemon};
use holdfast_dataplane::nft::{FastPath, NftPlane};
use holdfast_dataplane::proxy::ProxyPlane;
use holdfast_dataplane::{DataPlane, ServiceKey, ServiceSpec};
use tokio::sync::mpsc;

use crate::logging::Logger;

use crate::plan::lvs::*;

/// What the kernel planes do at start and stop (`global_defs` and the command line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlaneOptions {
    /// `lvs_flush`: empty the kernel's table when the plane opens.
    pub flush: bool,
    /// `lvs_flush_on_stop`: empty it at stop (every service, not only holdfast's).
    pub flush_on_stop: bool,
    /// `-I` / `--dont-release-ipvs`: leave holdfast's services in the kernel at stop.
    pub keep_on_stop: bool,
    /// `lvs_timeouts` (tcp, tcpfin, udp; 0 keeps the kernel's).
    pub timeouts: Option<(u32, u32, u32)>,
    /// `lvs_sync_daemon`: the daemon's settings and the VRRP instance it follows (none:
    /// both roles run from the start).
    pub sync: Option<(SyncDaemon, Option<String>)>,
    /// `nft_table`: the nftables plane's table (default `holdfast`).
    pub nft_table: Option<String>,
    /// `nft_flowtable off`: established NAT connections stay on conntrack's path (by default
    /// they go to a flowtable where the kernel has one).
    pub nft_flowtable_off: bool,
    /// `proxy_maxconn` (default: derived from the open file limit, see
    /// [`holdfast_dataplane::proxy::default_max_connections`]).
    pub proxy_maxconn: Option<u32>,
    /// The kernel answered for IPVS when the plan was made (the planning's host fact, said
    /// again in the start-up line of an `auto` plane that chose the proxy).
    pub ipvs_present: bool,
}

impl PlaneOptions {
    /// The nftables plane's table.
    pub fn nft_table(&self) -> &str {
        self.nft_table
            .as_deref()
            .unwrap_or(holdfast_dataplane::nft::DEFAULT_TABLE)
    }
}

/// The wanted table of every virtual server, handed whole to each data plane.
pub struct Planes {
    pub(crate) wanted: Mutex<BTreeMap<ServiceKey, (PlaneKind, ServiceSpec)>>,
    pub(crate) proxy: Mutex<ProxyPlane>,
    /// Opened when the first virtual server on IPVS starts.
    pub(crate) ipvs: Mutex<Option<IpvsPlane>>,
    /// The nftables plane, applied on a thread of its own.
    pub(crate) nft: Arc<NftWorker>,
    pub(crate) options: PlaneOptions,
    /// Whether each real server was alive, kept across reloads so a server known dead is
    /// not put back in the table while its checkers start again.
    pub(crate) alive: Mutex<std::collections::HashMap<(ServiceKey, SocketAddr), bool>>,
    /// Each running virtual server's operator channel.
    pub(crate) admin: Mutex<std::collections::HashMap<ServiceKey, mpsc::Sender<Admin>>>,
}

impl Planes {
    /// What the kernel planes were started with.
    pub fn options(&self) -> &PlaneOptions {
        &self.options
    }

    /// Empty planes.
    pub fn new() -> Planes {
        Planes::with_options(PlaneOptions::default())
    }

    /// Empty planes; the IPVS plane, once opened, follows `options`.
    pub fn with_options(options: PlaneOptions) -> Planes {
        Planes {
            wanted: Mutex::new(BTreeMap::new()),
            proxy: Mutex::new(ProxyPlane::with_max_connections(
                options
                    .proxy_maxconn
                    .map_or_else(holdfast_dataplane::proxy::default_max_connections, |n| {
                        n as usize
                    }),
            )),
            ipvs: Mutex::new(None),
            nft: Arc::new(NftWorker::new(
                options.nft_table().to_owned(),
                timeouts(&options),
                !options.nft_flowtable_off,
            )),
            options,
            alive: Mutex::default(),
            admin: Mutex::default(),
        }
    }

    pub(crate) fn open_ipvs(
        &self,
        log: Logger,
    ) -> Option<std::sync::MutexGuard<'_, Option<IpvsPlane>>> {
        let mut g = self.ipvs.lock().ok()?;
        if g.is_none() {
            match IpvsPlane::open() {
                Ok(mut p) => {
                    if self.options.flush
                        && let Err(e) = p.flush()
                    {
                        log.check(&format!("IPVS: cannot flush the table (lvs_flush): {e}"));
                    }
                    if let Some((tcp, tcpfin, udp)) = self.options.timeouts
                        && let Err(e) = p.set_timeouts(tcp, tcpfin, udp)
                    {
                        log.check(&format!("IPVS: cannot set lvs_timeouts: {e}"));
                    }
                    *g = Some(p);
                }
                Err(e) => {
                    log.check(&format!("IPVS: {e}"));
                    return None;
                }
            }
        }
        Some(g)
    }

    pub(crate) fn set(
        &self,
        spec: Option<ServiceSpec>,
        key: ServiceKey,
        plane: PlaneKind,
        log: Logger,
    ) {
        let (proxy, ipvs): (Vec<ServiceSpec>, Vec<ServiceSpec>) = {
            let Ok(mut w) = self.wanted.lock() else {
                return;
            };
            match spec {
                Some(s) => w.insert(key, (plane, s)),
                None => w.remove(&key),
            };
            let pick = |k: PlaneKind| -> Vec<ServiceSpec> {
                w.values()
                    .filter(|(p, _)| *p == k)
                    .map(|(_, s)| s.clone())
                    .collect()
            };
            // The proxy's idle timeouts are IPVS's `tcp` and `tcpfin` (`lvs_timeouts`).
            let t = timeouts(&self.options);
            let mut proxy = pick(PlaneKind::Proxy);
            for s in &mut proxy {
                s.idle_timeout = t.tcp.unwrap_or(s.idle_timeout);
                s.fin_timeout = t.tcpfin.unwrap_or(s.fin_timeout);
            }
            if plane == PlaneKind::Nft {
                // Handed over while the lock is held: a later table cannot overtake it.
                self.nft.hand(pick(PlaneKind::Nft), log);
            }
            (proxy, pick(PlaneKind::Ipvs))
        };
        let report = |errs: Vec<holdfast_dataplane::DataPlaneError>| {
            for e in errs {
                log.check(&format!("Cannot set up {e}"));
            }
        };
        if plane == PlaneKind::Proxy
            && let Ok(mut p) = self.proxy.lock()
            && let Err(errs) = p.apply(&proxy)
        {
            report(errs);
        }
        if plane == PlaneKind::Ipvs
            && let Some(mut g) = self.open_ipvs(log)
            && let Some(p) = g.as_mut()
            && let Err(errs) = p.apply_changed(&ipvs, key)
        {
            report(errs);
        }
    }

    /// Waits until the data planes hold every table handed to them so far (the proxy and
    /// IPVS apply as they are handed one; nftables on its thread).
    pub async fn applied(&self) {
        self.nft.applied().await;
    }

    /// Starts the sync daemons `lvs_sync_daemon` asks for at start: both roles when it names
    /// no VRRP instance (a named instance's state changes choose the role later).
    pub fn start_sync(&self, log: Logger) {
        if let Some((_, None)) = &self.options.sync {
            self.sync_role(None, log);
        }
    }

    /// Whether this node holds `vips` (an instance entered MASTER, or left it): the proxy
    /// closes the connections it carries on addresses it no longer holds.
    pub fn vips_held(&self, vips: &[std::net::IpAddr], held: bool) {
        if let Ok(mut p) = self.proxy.lock() {
            p.set_held(vips, held);
        }
    }

    /// The VRRP instance `instance` entered a state: the sync daemon follows it, master
    /// with MASTER and backup otherwise (keepalived's ipvs_syncd_master/backup).
    pub fn vrrp_state(&self, instance: &str, master: bool, log: Logger) {
        if let Some((_, Some(i))) = &self.options.sync
            && i == instance
        {
            self.sync_role(Some(master), log);
        }
    }

    /// Runs the sync daemon as master (`Some(true)`), backup (`Some(false)`) or both.
    pub(crate) fn sync_role(&self, master: Option<bool>, log: Logger) {
        let Some((d, _)) = &self.options.sync else {
            return;
        };
        let Some(mut g) = self.open_ipvs(log) else {
            return;
        };
        let Some(p) = g.as_mut() else {
            return;
        };
        for backup in [false, true] {
            let run = master.is_none_or(|m| m != backup);
            let running = p
                .sync_daemons()
                .map(|v| v.iter().any(|(b, _, _)| *b == backup))
                .unwrap_or(false);
            let role = if backup { "backup" } else { "master" };
            if run && !running {
                match p.start_sync_daemon(backup, d) {
                    Ok(()) => log.check(&format!(
                        "Starting IPVS {role} sync daemon on {} (syncid {})",
                        d.iface, d.id
                    )),
                    Err(e) => log.check(&format!(
                        "IPVS: cannot start the {role} sync daemon on {}: {e}",
                        d.iface
                    )),
                }
            } else if !run && running {
                match p.stop_sync_daemon(backup) {
                    Ok(()) => log.check(&format!("Stopping IPVS {role} sync daemon")),
                    Err(e) => log.check(&format!("IPVS: cannot stop the {role} sync daemon: {e}")),
                }
            }
        }
    }

    /// At stop: removes holdfast's services from the kernel (or every service with
    /// `lvs_flush_on_stop`), unless told to keep them.
    pub fn release(&self, log: Logger) {
        self.nft.finish(!self.options.keep_on_stop, log);
        let Ok(mut g) = self.ipvs.lock() else {
            return;
        };
        let Some(p) = g.as_mut() else {
            return;
        };
        if self.options.sync.is_some() {
            for backup in [false, true] {
                let _ = p.stop_sync_daemon(backup);
            }
        }
        if self.options.flush_on_stop {
            if let Err(e) = p.flush() {
                log.check(&format!(
                    "IPVS: cannot flush the table (lvs_flush_on_stop): {e}"
                ));
            }
        } else if !self.options.keep_on_stop {
            for e in p.release() {
                log.check(&format!("IPVS: cannot remove {e}"));
            }
        }
    }

    /// Sends an operator command to the virtual server at `vs` and waits for its answer.
    pub async fn admin(
        &self,
        vs: SocketAddr,
        enable: bool,
        rs: SocketAddr,
    ) -> Result<String, String> {
        let tx = self
            .admin
            .lock()
            .ok()
            .and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.addr() == Some(vs))
                    .map(|(_, t)| t.clone())
            })
            .ok_or_else(|| format!("no virtual server {vs}"))?;
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        let cmd = if enable {
            Admin::Enable(rs, rtx)
        } else {
            Admin::Disable(rs, rtx)
        };
        tx.send(cmd)
            .await
            .map_err(|_| format!("virtual server {vs} is stopping"))?;
        rrx.await
            .map_err(|_| format!("virtual server {vs} is stopping"))?
    }

    /// Whether each real server's checkers are up, as last known.
    pub fn alive(&self) -> Vec<(ServiceKey, SocketAddr, bool)> {
        let mut v: Vec<(ServiceKey, SocketAddr, bool)> = self
            .alive
            .lock()
            .map(|m| m.iter().map(|((k, a), up)| (*k, *a, *up)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// [`Planes::stats`] on a blocking thread: the nftables plane's counts run `nft` and
    /// read conntrack, which the daemon's runtime must not wait for.
    pub async fn stats_off_runtime(self: &Arc<Self>) -> Vec<holdfast_dataplane::ServiceStats> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.stats())
            .await
            .unwrap_or_default()
    }

    /// Live counts for status, from every plane (blocking: see
    /// [`Planes::stats_off_runtime`]).
    pub fn stats(&self) -> Vec<holdfast_dataplane::ServiceStats> {
        let mut out = self.proxy.lock().map(|p| p.stats()).unwrap_or_default();
        if let Ok(g) = self.ipvs.lock()
            && let Some(p) = g.as_ref()
        {
            out.extend(p.stats());
        }
        let mut nft = self
            .nft
            .applied
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        // The connection counts, read from the kernel (conntrack, direct return's sets): they
        // stay 0 when it cannot be read.
        if !nft.is_empty() {
            let _ = holdfast_dataplane::nft::count_connections(&self.nft.table, &mut nft);
        }
        out.extend(nft);
        out.sort_by_key(|s| s.key);
        out
    }
}

impl Default for Planes {
    fn default() -> Planes {
        Planes::new()
    }
}

impl Drop for Planes {
    fn drop(&mut self) {
        self.nft.stop();
    }
}

/// `lvs_timeouts` of `options`, as the planes take them.
pub(crate) fn timeouts(options: &PlaneOptions) -> holdfast_dataplane::Timeouts {
    options
        .timeouts
        .map_or_else(holdfast_dataplane::Timeouts::default, |(tcp, fin, udp)| {
            holdfast_dataplane::Timeouts::from_secs(tcp, fin, udp)
        })
}

/// How long stopping waits for an nftables change under way before removing the table.
pub(crate) const NFT_FINISH: Duration = Duration::from_secs(30);

/// The nftables plane on a thread of its own. Applying a table runs `nft` (and `ip` for
/// direct return) and waits for them: on the daemon's single-threaded runtime that would stop
/// every VRRP instance's adverts meanwhile, long enough with a slow `nft` or a large table
/// for a BACKUP to take over. The thread applies the newest table handed over: one handed
/// over while another is applied replaces any still waiting, so none is applied after a newer
/// one, and a burst of changes costs one apply.
pub(crate) struct NftWorker {
    pub(crate) slot: Mutex<NftSlot>,
    pub(crate) changed: std::sync::Condvar,
    /// The table as last applied, for status, readable while the next apply runs.
    pub(crate) applied: Mutex<Vec<holdfast_dataplane::ServiceStats>>,
    /// Opened (clearing a table a crash left) by the thread's first apply.
    pub(crate) plane: Mutex<Option<NftPlane>>,
    pub(crate) table: String,
    pub(crate) timeouts: holdfast_dataplane::Timeouts,
    /// `nft_flowtable`.
    pub(crate) flowtable: bool,
    /// The number of the newest table applied (tables are numbered as handed over).
    pub(crate) done: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
pub(crate) struct NftSlot {
    /// How many tables were handed over.
    pub(crate) handed: u64,
    /// The newest table not yet applied, and the logger its errors go to.
    pub(crate) pending: Option<(Vec<ServiceSpec>, Logger)>,
    /// The thread was started.
    pub(crate) started: bool,
    /// The thread is applying a table.
    pub(crate) busy: bool,
    /// The thread ends once idle; nothing more is handed over.
    pub(crate) stop: bool,
}

impl NftWorker {
    pub(crate) fn new(
        table: String,
        timeouts: holdfast_dataplane::Timeouts,
        flowtable: bool,
    ) -> NftWorker {
        NftWorker {
            slot: Mutex::default(),
            changed: std::sync::Condvar::new(),
            applied: Mutex::default(),
            plane: Mutex::new(None),
            table,
            timeouts,
            flowtable,
            done: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Waits until every table handed over so far has been applied (at once when none was).
    pub(crate) async fn applied(&self) {
        let target = match self.slot.lock() {
            Ok(g) => g.handed,
            Err(_) => return,
        };
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|n| *n >= target).await;
    }

    /// Hands the thread the wanted table, starting the thread the first time (in the calling
    /// thread's network namespace, which `nft` and `ip` then run in).
    pub(crate) fn hand(self: &Arc<Self>, table: Vec<ServiceSpec>, log: Logger) {
        let Ok(mut g) = self.slot.lock() else {
            return;
        };
        if g.stop {
            return;
        }
        g.pending = Some((table, log));
        g.handed += 1;
        if !g.started {
            let me = self.clone();
            match std::thread::Builder::new()
                .name("holdfast-nft".into())
                .spawn(move || me.run())
            {
                Ok(_) => g.started = true,
                Err(e) => {
                    // No thread: apply here rather than never.
                    log.check(&format!("nftables: cannot start its thread: {e}"));
                    let pending = g.pending.take();
                    let number = g.handed;
                    drop(g);
                    if let Some((t, log)) = pending {
                        self.apply(t, log);
                    }
                    self.done.send_replace(number);
                    return;
                }
            }
        }
        self.changed.notify_all();
    }

    pub(crate) fn run(self: Arc<Self>) {
        loop {
            let (table, log, number) = {
                let Ok(mut g) = self.slot.lock() else {
                    return;
                };
                loop {
                    if let Some((t, l)) = g.pending.take() {
                        g.busy = true;
                        break (t, l, g.handed);
                    }
                    if g.stop {
                        return;
                    }
                    g = match self.changed.wait(g) {
                        Ok(g) => g,
                        Err(_) => return,
                    };
                }
            };
            self.apply(table, log);
            if let Ok(mut g) = self.slot.lock() {
                g.busy = false;
            }
            self.done.send_replace(number);
            self.changed.notify_all();
        }
    }

    pub(crate) fn apply(&self, table: Vec<ServiceSpec>, log: Logger) {
        let Ok(mut g) = self.plane.lock() else {
            return;
        };
        if g.is_none() {
            match NftPlane::open_with_timeouts(&self.table, self.timeouts) {
                Ok(mut p) => {
                    p.set_flowtable(self.flowtable);
                    *g = Some(p);
                }
                Err(e) => log.check(&format!("nftables: cannot open table: {e}")),
            }
        }
        let Some(p) = g.as_mut() else {
            return;
        };
        let before = p.fast_path().clone();
        if let Err(errs) = p.apply(&table) {
            for e in errs {
                log.check(&format!("Cannot set up {e}"));
            }
        }
        if let Some(line) = fast_path_news(&before, p.fast_path()) {
            log.check(&line);
        }
        if let Ok(mut a) = self.applied.lock() {
            *a = p.stats();
        }
    }

    /// At stop: waits (a bounded time) for the change under way and any waiting, stops the
    /// thread, then removes the table if `remove`.
    pub(crate) fn finish(&self, remove: bool, log: Logger) {
        if let Ok(g) = self.slot.lock() {
            let idle = self.changed.wait_timeout_while(g, NFT_FINISH, |s| {
                s.started && (s.busy || s.pending.is_some())
            });
            if let Ok((mut g, t)) = idle {
                if t.timed_out() {
                    log.check("nftables: a table change did not finish in time at stop");
                }
                g.stop = true;
            }
        }
        self.changed.notify_all();
        let Ok(mut g) = self.plane.lock() else {
            return;
        };
        if remove
            && let Some(p) = g.as_mut()
            && let Err(e) = p.release()
        {
            log.check(&format!("nftables: cannot remove table {}: {e}", p.table()));
        }
    }

    /// Ends the thread once it is idle.
    pub(crate) fn stop(&self) {
        if let Ok(mut g) = self.slot.lock() {
            g.stop = true;
        }
        self.changed.notify_all();
    }
}

/// What to log when the nftables plane's flowtable fast path went from `before` to `now`.
pub(crate) fn fast_path_news(before: &FastPath, now: &FastPath) -> Option<String> {
    match now {
        FastPath::On(devs) if !matches!(before, FastPath::On(_)) => Some(format!(
            "nftables: established NAT connections are offloaded to a flowtable (on {})",
            devs.join(", ")
        )),
        FastPath::Unavailable(why) if !matches!(before, FastPath::Unavailable(_)) => Some(format!(
            "nftables: the kernel has no flowtable ({why}): NAT connections stay on conntrack's path"
        )),
        _ => None,
    }
}

/// An operator's command for one real server (`holdfast enable|disable VS RS`).
#[derive(Debug)]
pub enum Admin {
    /// Let it back: clears a drain and a `readmit manual` hold.
    Enable(
        SocketAddr,
        tokio::sync::oneshot::Sender<Result<String, String>>,
    ),
    /// Drain it: weight 0, established connections kept.
    Disable(
        SocketAddr,
        tokio::sync::oneshot::Sender<Result<String, String>>,
    ),
}
