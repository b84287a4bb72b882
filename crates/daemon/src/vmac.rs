//! `use_vmac`: the instance's macvlan, made (or taken over from an earlier run) before the
//! instance starts and removed after it stops, with the kernel settings keepalived makes for
//! it and puts back:
//!
//! - on the macvlan (IPv4): `arp_ignore` 1 (it answers ARP only for its own addresses, the
//!   VIPs), `accept_local` 1 and `rp_filter` 0 (it hears adverts without an address of its
//!   own), `promote_secondaries` 1; IPv6 off unless the instance has IPv6 addresses; no
//!   link-local address generated from the virtual MAC (RFC 5798 §7.4);
//! - on the base interface: `arp_ignore` 1 and `arp_filter` 1, so that it does not answer
//!   for the VIPs with its own MAC; restored when its last macvlan goes;
//! - `net.ipv4.conf.all.rp_filter`: 0 while an IPv4 macvlan exists (the kernel takes the
//!   larger of `all` and the interface's), each interface's and `default`'s raised to the
//!   old value first so that nothing else changes; restored after the last one;
//! - IGMP/MLD reports sent through the base interface (the VRRP firewall's `vmac_map`).
//!
//! The settings are the network namespace's, shared by every instance: one table per process
//! counts who uses what (the reason for the process-wide state).

use std::collections::HashMap;
use std::sync::Mutex;

use holdfast_sys::vip::Handle;
use holdfast_sys::{iface, vmac};

use crate::logging::Logger;
use crate::plan::{InstancePlan, VmacPlan};

/// What this process has changed, to put back.
#[derive(Default)]
struct Changes {
    /// Macvlans in use, by name: how many instances use each.
    vmacs: HashMap<String, usize>,
    /// Base interfaces whose ARP settings were changed: (instances, old arp_ignore, old
    /// arp_filter).
    bases: HashMap<String, (usize, String, String)>,
    /// IPv4 macvlans alive.
    v4: usize,
    /// What [`clear_rp_filter`] changed.
    rp_filter: Option<RpFilter>,
}

/// `all.rp_filter` and `default.rp_filter` as they were (the latter when changed), and the
/// interfaces raised to `all`'s old value, with their old values.
struct RpFilter {
    all: String,
    default: Option<String>,
    raised: Vec<(String, String)>,
}

/// The host settings the process changed for its macvlans, put back when the last one goes.
/// Process-wide because the settings are the host's (`all.rp_filter`, the base interfaces'),
/// whichever instance changed them first.
static CHANGES: Mutex<Option<Changes>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Changes) -> T) -> T {
    let mut g = CHANGES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(g.get_or_insert_with(Changes::default))
}

fn conf(family: &str, ifname: &str, key: &str) -> String {
    format!("/proc/sys/net/{family}/conf/{ifname}/{key}")
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn write(path: &str, value: &str, log: Logger) {
    if let Err(e) = std::fs::write(path, value) {
        log.vrrp(&format!("cannot set {path} to {value}: {e}"));
    }
}

/// `net.ipv4.conf.all.rp_filter` to 0 with nothing else changing (keepalived's
/// `clear_rp_filter`), when the first IPv4 macvlan comes.
fn clear_rp_filter(c: &mut Changes, log: Logger) {
    let Some(all) = read(&conf("ipv4", "all", "rp_filter")) else {
        log.vrrp("Unable to read sysctl net.ipv4.conf.all.rp_filter");
        return;
    };
    if all == "0" {
        return;
    }
    let default = read(&conf("ipv4", "default", "rp_filter"));
    let mut old_default = None;
    if let Some(d) = default.filter(|d| d.as_str() < all.as_str()) {
        log.vrrp(&format!(
            "NOTICE: setting sysctl net.ipv4.conf.default.rp_filter from {d} to {all}"
        ));
        write(&conf("ipv4", "default", "rp_filter"), &all, log);
        old_default = Some(d);
    }
    let mut raised = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/sys/net/ipv4/conf") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "all" || name == "default" {
                continue;
            }
            let path = conf("ipv4", &name, "rp_filter");
            if let Some(v) = read(&path).filter(|v| v.as_str() < all.as_str()) {
                write(&path, &all, log);
                raised.push((name, v));
            }
        }
    }
    log.vrrp(&format!(
        "NOTICE: setting sysctl net.ipv4.conf.all.rp_filter from {all} to 0"
    ));
    write(&conf("ipv4", "all", "rp_filter"), "0", log);
    c.rp_filter = Some(RpFilter {
        all,
        default: old_default,
        raised,
    });
}

/// Puts back what [`clear_rp_filter`] changed, where nobody changed it since.
fn restore_rp_filter(c: &mut Changes, log: Logger) {
    let Some(RpFilter {
        all,
        default: old_default,
        raised,
    }) = c.rp_filter.take()
    else {
        return;
    };
    if read(&conf("ipv4", "all", "rp_filter")).as_deref() == Some("0") {
        log.vrrp(&format!(
            "NOTICE: resetting sysctl net.ipv4.conf.all.rp_filter to {all}"
        ));
        write(&conf("ipv4", "all", "rp_filter"), &all, log);
    }
    if let Some(d) = old_default
        && read(&conf("ipv4", "default", "rp_filter")).as_deref() == Some(all.as_str())
    {
        log.vrrp(&format!(
            "NOTICE: resetting sysctl net.ipv4.conf.default.rp_filter to {d}"
        ));
        write(&conf("ipv4", "default", "rp_filter"), &d, log);
    }
    for (name, v) in raised {
        let path = conf("ipv4", &name, "rp_filter");
        if read(&path).as_deref() == Some(all.as_str()) {
            write(&path, &v, log);
        }
    }
}

/// An instance's macvlan, up. [`Vmac::down`] removes it (and puts the settings back) when no
/// other instance of this process uses it.
pub(crate) struct Vmac {
    plan: VmacPlan,
    base: String,
    index: u32,
    instance: String,
}

/// Makes (or takes over) `inst`'s macvlan, sets it up and brings it up.
pub(crate) async fn up(
    inst: &InstancePlan,
    nl: &Handle,
    firewall: &crate::firewall::FirewallPlan,
    log: Logger,
) -> anyhow::Result<Option<Vmac>> {
    let Some(plan) = inst.vmac.clone() else {
        return Ok(None);
    };
    let (name, base) = (plan.name.clone(), inst.ifname.clone());
    let iname = &inst.name;
    let base_index = iface::index(&base)?;
    let shared = with(|c| c.vmacs.get(&name).copied().unwrap_or(0) > 0);
    if !shared {
        let existing = vmac::facts(&name)?;
        let update = match existing {
            None => None,
            Some(f) if f.kind.as_deref() != Some("macvlan") => {
                anyhow::bail!("VMAC {name} conflicts with existing interface");
            }
            Some(f) if f.link != Some(base_index) => {
                log.vrrp(&format!(
                    "({iname}) Removing old VMAC interface {name} due to conflicting interface"
                ));
                vmac::delete(nl, f.index).await?;
                None
            }
            Some(f) if f.mac != Some(plan.mac) || !f.private_macvlan => {
                log.vrrp(&format!(
                    "({iname}) Update old VMAC interface {name} due to wrong MAC/mode "
                ));
                Some(f.index)
            }
            Some(_) => {
                log.vrrp(&format!("({iname}) Found matching interface {name}"));
                Some(0)
            }
        };
        match update {
            Some(0) => {}
            u => {
                vmac::create(nl, &name, base_index, plan.mac, u)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("({iname}): Unable to create VMAC interface {name}: {e}")
                    })?;
                if log.detail {
                    let what = if u.is_some() { "upd" } else { "cre" };
                    log.vrrp(&format!(
                        "({iname}): Success {what}ating VMAC interface {name}"
                    ));
                }
            }
        }
    }
    let index = iface::index(&name)?;
    with(|c| {
        *c.vmacs.entry(name.clone()).or_default() += 1;
        if plan.v6 {
            return;
        }
        // IPv4: rp_filter (before the macvlan's own is set), the macvlan's and its base's
        // ARP settings.
        c.v4 += 1;
        if c.v4 == 1 {
            clear_rp_filter(c, log);
        }
        for (k, v) in [
            ("arp_ignore", "1"),
            ("accept_local", "1"),
            ("rp_filter", "0"),
            ("promote_secondaries", "1"),
        ] {
            write(&conf("ipv4", &name, k), v, log);
        }
        let b = c.bases.entry(base.clone()).or_insert_with(|| {
            let old = |k| read(&conf("ipv4", &base, k)).unwrap_or_else(|| "0".into());
            let saved = (0, old("arp_ignore"), old("arp_filter"));
            write(&conf("ipv4", &base, "arp_ignore"), "1", log);
            write(&conf("ipv4", &base, "arp_filter"), "1", log);
            saved
        });
        b.0 += 1;
    });
    let has_v6 = inst.vips.iter().any(|v| v.dev == name && v.addr.is_ipv6());
    if !shared {
        // No address of its own from the virtual MAC; IPv6 only where it is used.
        write(&conf("ipv6", &name, "addr_gen_mode"), "1", log);
        let off = if plan.v6 || has_v6 { "0" } else { "1" };
        write(&conf("ipv6", &name, "disable_ipv6"), off, log);
    }
    crate::firewall::vmac_add(firewall, &name, &base, plan.v6, log).await;
    vmac::up(nl, index).await?;
    if plan.v6 && !plan.xmit_base {
        // Adverts leave the macvlan from the base interface's link-local address.
        match holdfast_sys::vip::link_local_v6(nl, base_index).await? {
            Some(ll) => {
                let mut spec = holdfast_sys::vip::VipSpec::plain(ll, 64, index);
                spec.nodad = true;
                if let Err(e) = holdfast_sys::vip::add(nl, &spec).await
                    && e.kind() != std::io::ErrorKind::AlreadyExists
                {
                    log.vrrp(&format!(
                        "({iname}) adding link-local address to {name} failed: {e}"
                    ));
                }
            }
            None => anyhow::bail!("({iname}) no IPv6 link-local address on {base}"),
        }
    }
    Ok(Some(Vmac {
        plan,
        base,
        index,
        instance: inst.name.clone(),
    }))
}

impl Vmac {
    /// The instance is done with its macvlan: removed, with the settings put back, when no
    /// other instance of this process uses it.
    pub(crate) async fn down(
        self,
        nl: &Handle,
        firewall: &crate::firewall::FirewallPlan,
        log: Logger,
    ) {
        let name = &self.plan.name;
        let last = with(|c| {
            let n = c.vmacs.entry(name.clone()).or_default();
            *n = n.saturating_sub(1);
            let last = *n == 0;
            if last {
                c.vmacs.remove(name);
            }
            if !self.plan.v6 {
                if let Some(b) = c.bases.get_mut(&self.base) {
                    b.0 = b.0.saturating_sub(1);
                    if b.0 == 0
                        && let Some((_, ignore, filter)) = c.bases.remove(&self.base)
                    {
                        write(&conf("ipv4", &self.base, "arp_ignore"), &ignore, log);
                        write(&conf("ipv4", &self.base, "arp_filter"), &filter, log);
                    }
                }
                c.v4 = c.v4.saturating_sub(1);
                if c.v4 == 0 {
                    restore_rp_filter(c, log);
                }
            }
            last
        });
        if !last {
            return;
        }
        crate::firewall::vmac_remove(firewall, name, &self.base, self.plan.v6).await;
        match vmac::delete(nl, self.index).await {
            Ok(()) => log.vrrp(&format!(
                "({}) Success removing VMAC interface {name}",
                self.instance
            )),
            Err(e) => log.vrrp(&format!(
                "({}) Error removing VMAC interface {name}: {e}",
                self.instance
            )),
        }
    }
}
