//! Whole-configuration checks keepalived makes after parsing: tracker references, sync-group
//! members, VRID conflicts, interfaces that must exist, and script security (§1.9).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::diag::{Class, Diagnostics};
use crate::model::{Command, Config, ScriptKind, UserSpec};
use crate::span::Span;

/// What the host can tell about itself; the binary implements it on Linux, tests fake it.
pub trait Host {
    /// Whether a network interface exists.
    fn interface_exists(&self, name: &str) -> bool;
    /// `(uid, gid)` of a user.
    fn user(&self, name: &str) -> Option<(u32, u32)>;
    /// The gid of a group.
    fn group(&self, name: &str) -> Option<u32>;
    /// Metadata of a path (symlinks followed); `None` if it cannot be accessed.
    fn stat(&self, path: &Path) -> Option<Stat>;
    /// Metadata of a path itself (a final symbolic link not followed).
    fn lstat(&self, path: &Path) -> Option<Stat>;
    /// The path with every symbolic link, `.` and `..` resolved (`realpath(3)`).
    fn realpath(&self, path: &Path) -> Option<PathBuf>;
    /// Directories of `$PATH`, for commands given without a slash.
    fn path_dirs(&self) -> Vec<PathBuf>;
    /// How many CPUs are online (`sysconf(_SC_NPROCESSORS_ONLN)`), if known.
    fn cpus_online(&self) -> Option<u32> {
        None
    }
    /// Whether interface `name` is a private-mode macvlan (`None`: no such interface, or not
    /// known). keepalived reuses such an interface for `use_vmac` and refuses a name taken by
    /// any other kind.
    fn private_macvlan(&self, _name: &str) -> Option<bool> {
        None
    }
}

/// What kind of file a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only from [`Host::lstat`]).
    Symlink,
    /// Anything else (device, socket, FIFO).
    Other,
}

/// File metadata the security check needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// What it is.
    pub kind: FileKind,
}

/// Whether something defined at `def` is read by keepalived before a reference at `used`:
/// earlier in the same file (in another file, included before it or after: taken as
/// defined).
fn defined_before(def: Option<Span>, used: Option<Span>) -> bool {
    match (def, used) {
        (Some(def), Some(used)) if def.file == used.file => def.lo < used.lo,
        _ => true,
    }
}

/// Checks needing no host. keepalived looks up a `track_script`, `track_file` or
/// `track_process` entry while it reads it: one naming a tracker not defined before it (later
/// in the file, or nowhere) is reported and dropped, by holdfast too, so that `run` tracks
/// what `check-config` says.
pub fn references(cfg: &mut Config, d: &mut Diagnostics) {
    let scripts: Vec<_> = cfg
        .scripts
        .iter()
        .map(|s| (s.name.clone(), s.origin.0))
        .collect();
    let files: Vec<_> = (cfg.track_files.iter())
        .map(|s| (s.name.clone(), s.origin.0))
        .collect();
    let procs: Vec<_> = (cfg.track_processes.iter())
        .map(|s| (s.name.clone(), s.origin.0))
        .collect();
    let before = |defs: &[(String, Option<Span>)], name: &str, used: Option<Span>| {
        defs.iter()
            .any(|(n, def)| n == name && defined_before(*def, used))
    };
    let mut trackers: Vec<(String, &mut crate::model::Tracking)> = Vec::new();
    // Instances dropped by the checks after reading were read (and looked up) all the same.
    for i in cfg.instances.iter_mut().chain(&mut cfg.dropped_instances.0) {
        trackers.push((i.name.clone(), &mut i.track));
    }
    for g in &mut cfg.sync_groups {
        trackers.push((g.name.clone(), &mut g.track));
    }
    for (owner, t) in trackers {
        t.scripts.retain(|r| {
            let found = before(&scripts, &r.name, r.origin.0);
            if !found {
                d.invalid(
                    span(r.origin.0),
                    format!("({owner}) track script {} not found, ignoring...", r.name),
                );
            }
            found
        });
        t.files.retain(|r| {
            let found = before(&files, &r.name, r.origin.0);
            if !found {
                d.invalid(
                    span(r.origin.0),
                    format!("({owner}) track file {} not found, ignoring...", r.name),
                );
            }
            found
        });
        t.processes.retain(|r| {
            let found = before(&procs, &r.name, r.origin.0);
            if !found {
                d.invalid(
                    span(r.origin.0),
                    format!("({owner}) track process {} not found, ignoring...", r.name),
                );
            }
            found
        });
    }
    let instances: HashSet<&str> = cfg.instances.iter().map(|i| i.name.as_str()).collect();
    // keepalived gives an instance to the first sync group naming it; a later naming (in
    // another group or the same) is reported and left out.
    let mut synced: HashSet<String> = HashSet::new();
    for g in &mut cfg.sync_groups {
        let members = std::mem::take(&mut g.members);
        for m in members {
            let why = if !instances.contains(m.as_str()) {
                format!(
                    "specified in sync group {} doesn't exist - ignoring",
                    g.name
                )
            } else if !synced.insert(m.clone()) {
                format!(
                    "cannot exist in more than one sync group; ignoring {}",
                    g.name
                )
            } else {
                g.members.push(m);
                continue;
            };
            d.push_unlined(
                Class::Invalid,
                g.origin.0,
                format!("Virtual router {m} {why}"),
            );
        }
        match g.members.len() {
            0 => d.push_unlined(
                Class::Invalid,
                g.origin.0,
                format!(
                    "Sync group {}, no matching virtual router found in group declaration - removing",
                    g.name
                ),
            ),
            // keepalived: "for most users a sync group with only one member is a
            // configuration error".
            1 => d.push_unlined(
                Class::Invalid,
                g.origin.0,
                format!(
                    "Sync group {} has only 1 virtual router(s) - this probably isn't what you want",
                    g.name
                ),
            ),
            _ => {}
        }
    }
    let groups: HashSet<&str> = cfg.vs_groups.iter().map(|g| g.name.as_str()).collect();
    for vs in &cfg.virtual_servers {
        if let crate::model::VsKey::Group(name) = &vs.key
            && !groups.contains(name.as_str())
        {
            d.invalid(
                span(vs.origin.0),
                format!("Virtual server group {name} doesn't exist"),
            );
        }
    }
    // VRID conflicts: one (interface, family, vrid) per multicast domain (keepalived fails
    // to start on them; `-t` does not report them).
    let mut seen: HashMap<(Option<&str>, bool, bool, u8), &str> = HashMap::new();
    for i in &cfg.instances {
        if i.vrid == 0 {
            continue;
        }
        let v6 = i.is_v6();
        let key = (
            i.interface.as_deref(),
            v6,
            !i.unicast_peers.is_empty(),
            i.vrid,
        );
        if let Some(other) = seen.insert(key, &i.name)
            && i.unicast_peers.is_empty()
        {
            d.push_unlined(
                Class::Invalid,
                i.origin.0,
                format!(
                    "VRID conflict between {other} and {} IPv{} vrid {}",
                    i.name,
                    if v6 { 6 } else { 4 },
                    i.vrid
                ),
            );
        }
    }
}

/// A FILE_CHECK names a track_file keepalived has already read: one defined further down in
/// the same file (or not at all) is not found, and keepalived drops the checker — so does
/// holdfast, so that `run` does what `check-config` says.
pub fn file_check_order(cfg: &mut Config, d: &mut Diagnostics) {
    let files: Vec<(String, Option<Span>)> = cfg
        .track_files
        .iter()
        .map(|t| (t.name.clone(), t.origin.0))
        .collect();
    for vs in &mut cfg.virtual_servers {
        for rs in &mut vs.real_servers {
            rs.checkers.retain(|chk| {
                let crate::model::CheckerKind::File {
                    track_file,
                    at: (named_at, closed_at),
                    ..
                } = &chk.kind
                else {
                    return true;
                };
                let at = named_at.0.or(chk.origin.0);
                let before = files
                    .iter()
                    .any(|(name, def)| name == track_file && defined_before(*def, at));
                if !before {
                    d.invalid(span(at), format!("track_file {track_file} not found"));
                    d.invalid(
                        span(closed_at.0.or(at)),
                        "FILE_CHECK has no track_file specified - ignoring",
                    );
                }
                before
            });
        }
    }
}

/// keepalived's rules for weights in sync groups and on address owners, applied as it applies
/// them (and reported with its messages): a member of a sync group without
/// `sync_group_tracking_weight`, and an instance with priority 255, cannot have weighted
/// trackers — a weighted interface becomes unweighted (an owner stops tracking it), a
/// weighted script is dropped, a track file with the default weight becomes unweighted and
/// one with an explicit weight is dropped. A sync group's own trackers lose their weights when
/// a member is an address owner.
///
/// An instance's `track_interface` naming its own interface is dropped (keepalived tracks its
/// own link anyway) — where the host has that interface: a missing one is reported missing,
/// as keepalived does, by [`interfaces`].
pub fn sync_group_tracking(cfg: &mut Config, host: Option<&dyn Host>, d: &mut Diagnostics) {
    // keepalived drops a second `track_interface` entry for an interface it found (one the
    // host does not have is reported missing each time instead).
    let owners = (cfg
        .instances
        .iter_mut()
        .map(|i| (i.name.clone(), &mut i.track)))
    .chain(
        cfg.sync_groups
            .iter_mut()
            .map(|g| (g.name.clone(), &mut g.track)),
    );
    for (owner, track) in owners {
        let mut seen = HashSet::new();
        track.interfaces.retain(|t| {
            if host.is_some_and(|h| !h.interface_exists(&t.name)) || seen.insert(t.name.clone()) {
                return true;
            }
            d.invalid(
                span(t.origin.0),
                format!("({owner}) duplicate track_interface {} - ignoring", t.name),
            );
            false
        });
        // And a second reference to a script, file or process it found (one not found was
        // reported and dropped by `references`).
        for (kind, refs) in [
            ("track_script", &mut track.scripts),
            ("track_file", &mut track.files),
            ("track_process", &mut track.processes),
        ] {
            let mut seen = HashSet::new();
            refs.retain(|t| {
                if seen.insert(t.name.clone()) {
                    return true;
                }
                d.invalid(
                    span(t.origin.0),
                    format!("({owner}) duplicate {kind} {} - ignoring", t.name),
                );
                false
            });
        }
    }
    let script_weight: HashMap<String, i32> = cfg
        .scripts
        .iter()
        .map(|s| (s.name.clone(), s.weight))
        .collect();
    let file_weight: HashMap<String, i32> = cfg
        .track_files
        .iter()
        .map(|f| (f.name.clone(), f.weight))
        .collect();
    let proc_weight: HashMap<String, i32> = cfg
        .track_processes
        .iter()
        .map(|p| (p.name.clone(), p.weight))
        .collect();
    let groups = cfg.sync_groups.clone();
    for i in &mut cfg.instances {
        if let Some(own) = i.interface.clone()
            && host.is_none_or(|h| h.interface_exists(&own))
        {
            let name = i.name.clone();
            let at = i.origin.0;
            i.track.interfaces.retain(|t| {
                if t.name != own {
                    return true;
                }
                d.push_unlined(
                    Class::Invalid,
                    at,
                    format!("({name}) Ignoring track_interface {own} since own interface"),
                );
                false
            });
        }
        let sync = groups
            .iter()
            .any(|g| !g.tracking_weight && g.members.contains(&i.name));
        let owner = i.priority == 255;
        if !sync && !owner {
            continue;
        }
        let why = if sync { "SYNC group" } else { "address_owner" };
        let name = i.name.clone();
        let at = i.origin.0;
        i.track.interfaces.retain_mut(|t| {
            if t.weight == 0 {
                return true;
            }
            if sync {
                d.push_unlined(
                    Class::Invalid,
                    at,
                    format!(
                        "({name}) ignoring {} tracked interface weight due to SYNC group",
                        t.name
                    ),
                );
                t.weight = 0;
                true
            } else {
                d.push_unlined(
                    Class::Invalid,
                    at,
                    format!(
                        "({name}) ignoring {} tracked interface due to address owner",
                        t.name
                    ),
                );
                false
            }
        });
        i.track.scripts.retain(|r| {
            let w = r
                .weight
                .unwrap_or_else(|| script_weight.get(&r.name).copied().unwrap_or(0));
            if w == 0 {
                return true;
            }
            d.push_unlined(
                Class::Invalid,
                at,
                format!(
                    "({name}) ignoring tracked script {} with weights due to {why}",
                    r.name
                ),
            );
            false
        });
        i.track.files.retain_mut(|r| {
            let w = r
                .weight
                .unwrap_or_else(|| file_weight.get(&r.name).copied().unwrap_or(1));
            match w {
                0 => true,
                1 => {
                    d.push_unlined(
                        Class::Invalid,
                        at,
                        format!(
                            "({name}) ignoring weight from tracked file {} due to {why}. specify weight 0",
                            r.name
                        ),
                    );
                    r.weight = Some(0);
                    true
                }
                w => {
                    d.push_unlined(
                        Class::Invalid,
                        at,
                        format!(
                            "({name}) ignoring tracked file {} with weight {w} due to {why}",
                            r.name
                        ),
                    );
                    false
                }
            }
        });
    }
    let owners: HashSet<String> = cfg
        .instances
        .iter()
        .filter(|i| i.priority == 255)
        .map(|i| i.name.clone())
        .collect();
    for g in &mut cfg.sync_groups {
        let has_owner = g.members.iter().any(|m| owners.contains(m));
        let gname = g.name.clone();
        let at = g.origin.0;
        let clear = |d: &mut Diagnostics, kind: &str, what: &str, verb: &str| {
            d.push_unlined(
                Class::Invalid,
                at,
                format!("({gname}) Cannot have weighted track {kind} '{what}' with member having priority 255 - {verb}"),
            );
        };
        for t in g.track.scripts.iter_mut().filter(|_| has_owner) {
            let w = t
                .weight
                .unwrap_or_else(|| script_weight.get(&t.name).copied().unwrap_or(0));
            if w != 0 {
                clear(d, "script", &t.name, "clearing weight");
                t.weight = Some(0);
            }
        }
        for t in g.track.files.iter_mut().filter(|_| has_owner) {
            let w = t
                .weight
                .unwrap_or_else(|| file_weight.get(&t.name).copied().unwrap_or(1));
            if w != 0 {
                clear(d, "file", &t.name, "setting weight 0");
                t.weight = Some(0);
            }
        }
        for t in g.track.processes.iter_mut().filter(|_| has_owner) {
            let w = t
                .weight
                .unwrap_or_else(|| proc_weight.get(&t.name).copied().unwrap_or(0));
            if w != 0 {
                clear(d, "process", &t.name, "setting weight 0");
                t.weight = Some(0);
            }
        }
        for t in &mut g.track.interfaces {
            if has_owner && t.weight != 0 {
                clear(d, "interface", &t.name, "clearing weight");
                t.weight = 0;
            }
            for m in cfg.instances.iter().filter(|i| g.members.contains(&i.name)) {
                let own = m.interface.as_deref() == Some(t.name.as_str()) && !m.dont_track_primary;
                if own || m.track.interfaces.iter().any(|x| x.name == t.name) {
                    d.push_unlined(
                        Class::Invalid,
                        m.origin.0,
                        format!(
                            "({}) track_interface {} is configured on VRRP instance and sync group. Remove vrrp instance or sync group config",
                            m.name, t.name
                        ),
                    );
                }
            }
        }
    }
}

fn span(s: Option<Span>) -> Span {
    s.unwrap_or(Span {
        file: crate::span::FileId(0),
        lo: 0,
        hi: 0,
    })
}

/// Interface existence, as keepalived checks at start; returns whether any was missing (which
/// keepalived treats as fatal for the VRRP process, skipping its later checks).
pub fn interfaces(cfg: &mut Config, host: &dyn Host, d: &mut Diagnostics) -> bool {
    if cfg.global.dynamic_interfaces {
        return false;
    }
    let mut missing = route_interfaces(cfg, host, d);
    for i in cfg.instances.iter().chain(&cfg.dropped_instances.0) {
        let named = i.replaced_interfaces.0.iter().map(|(n, at)| (n, *at));
        for (ifname, at) in named.chain(i.interface.as_ref().map(|n| (n, i.interface_at))) {
            if !host.interface_exists(ifname) {
                missing = true;
                d.push(
                    Class::Invalid,
                    at.0.or(i.origin.0),
                    format!(
                        "WARNING - interface {ifname} for vrrp_instance {} doesn't exist",
                        i.name
                    ),
                );
            }
        }
        for v in i.vips.iter().chain(&i.excluded_vips) {
            if let Some(dev) = &v.dev
                && !host.interface_exists(dev)
            {
                missing = true;
                d.invalid(
                    span(v.origin.0),
                    format!(
                        "WARNING - interface {dev} for ip address {} doesn't exist",
                        v.written()
                    ),
                );
            }
        }
    }
    // Tracked interfaces, of instances and of sync groups alike.
    let trackers = (cfg.instances.iter().chain(&cfg.dropped_instances.0))
        .map(|i| (&i.name, &i.track))
        .chain(cfg.sync_groups.iter().map(|g| (&g.name, &g.track)));
    for (owner, track) in trackers {
        for t in &track.interfaces {
            if !host.interface_exists(&t.name) {
                missing = true;
                d.invalid(
                    span(t.origin.0),
                    format!("({owner}) tracked interface {} doesn't exist", t.name),
                );
            }
        }
    }
    if missing {
        d.push(
            Class::Invalid,
            None,
            "Non-existent interface specified in configuration",
        );
    }
    missing
}

/// Routes, rules and static addresses naming an interface the host does not have are dropped
/// with keepalived's messages (keepalived drops them while parsing); returns whether any was.
fn route_interfaces(cfg: &mut Config, host: &dyn Host, d: &mut Diagnostics) -> bool {
    let mut missing = false;
    let mut route_ok = |r: &crate::model::Route, d: &mut Diagnostics| {
        let devs = r
            .dev
            .iter()
            .chain(r.nexthops.iter().filter_map(|n| n.dev.as_ref()));
        for dev in devs {
            if !host.interface_exists(dev) {
                missing = true;
                d.invalid(
                    span(r.origin.0),
                    format!("WARNING - interface {dev} for VROUTE nexthop doesn't exist"),
                );
                return false;
            }
        }
        true
    };
    let mut routes = std::mem::take(&mut cfg.static_routes);
    routes.retain(|r| route_ok(r, d));
    cfg.static_routes = routes;
    for i in &mut cfg.instances {
        let mut routes = std::mem::take(&mut i.routes);
        routes.retain(|r| route_ok(r, d));
        i.routes = routes;
    }
    let mut rule_ok = |r: &crate::model::Rule, d: &mut Diagnostics| {
        for dev in r.iif.iter().chain(&r.oif) {
            if !host.interface_exists(dev) {
                missing = true;
                d.invalid(
                    span(r.origin.0),
                    format!("WARNING - interface {dev} for rule doesn't exist"),
                );
                return false;
            }
        }
        true
    };
    let mut rules = std::mem::take(&mut cfg.static_rules);
    rules.retain(|r| rule_ok(r, d));
    cfg.static_rules = rules;
    for i in &mut cfg.instances {
        let mut rules = std::mem::take(&mut i.rules);
        rules.retain(|r| rule_ok(r, d));
        i.rules = rules;
    }
    let before = cfg.static_addresses.len();
    cfg.static_addresses.retain(|v| {
        let dev = v.dev.as_deref().unwrap_or("eth0");
        let ok = host.interface_exists(dev);
        if !ok {
            d.invalid(
                span(v.origin.0),
                format!(
                    "WARNING - interface {dev} for ip address {} doesn't exist",
                    v.written()
                ),
            );
        }
        ok
    });
    missing || cfg.static_addresses.len() != before
}

/// keepalived's script security (reference §1.9, keepalived's `check_script_secure`), applied
/// to the configuration as keepalived applies it at start:
/// - a program given without a slash is found on `$PATH`, and every program is resolved to its
///   real path (`realpath(3)`: symbolic links, `.` and `..`), which is what then runs, so that
///   a link cannot be pointed elsewhere after the check;
/// - a script run as root, as group root, or set-uid/set-gid root needs every component of
///   that real path owned by root and writable by nobody else (a group-writable one only if
///   the group is root, a world-writable directory only if sticky);
/// - a script that is missing, not executable for its user, or insecure under
///   `enable_script_security` is disabled: notify and quorum scripts and `startup_script`s are
///   removed from the configuration, a `MISC_CHECK` is removed from its real server, and a
///   `vrrp_script`'s name is returned (its trackers ignore it).
///
/// `vrrp` false (an interface is missing, which stops keepalived's VRRP process before its
/// script checks) leaves the VRRP scripts unchecked.
pub fn script_security(
    cfg: &mut Config,
    host: &dyn Host,
    d: &mut Diagnostics,
    vrrp: bool,
) -> Vec<String> {
    let mut disabled = Vec::new();
    let default_user = cfg.global.script_user.clone().or_else(|| {
        host.user("keepalived_script").map(|_| UserSpec {
            user: "keepalived_script".into(),
            group: None,
        })
    });
    let secure = cfg.global.enable_script_security;
    let mut sc = ScriptCheck {
        host,
        secure,
        default_user: default_user.unwrap_or(UserSpec {
            user: "root".into(),
            group: None,
        }),
        scripts: 0,
        insecure: 0,
        any: false,
    };
    // keepalived checks its scripts in three places, each reporting its own violation: the
    // VRRP process (only when there are instances), the checker (only when there are virtual
    // servers) and the parent (the shutdown script).
    let at = cfg.global.origin.0;
    if vrrp && !cfg.instances.is_empty() {
        // Every vrrp_script, used or not: keepalived checks them all.
        for s in &mut cfg.scripts {
            if let Some(ScriptKind::Command(cmd)) = &mut s.kind {
                let what = Script::Track(&s.name);
                if !sc.check(cmd, s.user.as_ref(), s.origin.0, what, d) {
                    disabled.push(s.name.clone());
                }
            }
        }
        for i in &mut cfg.instances {
            let what = format!("({})", i.name);
            for (k, slot) in i.notify.slots_mut() {
                sc.command(slot, &format!("{what} {k}"), i.origin.0, d);
            }
        }
        for g in &mut cfg.sync_groups {
            let what = format!("VRRP_Group({})", g.name);
            for (k, slot) in g.notify.slots_mut() {
                sc.command(slot, &format!("{what} {k}"), g.origin.0, d);
            }
        }
        sc.fifo_scripts(&mut cfg.global, false, d);
        sc.violation("scripts", d);
    }
    if !cfg.virtual_servers.is_empty() {
        for vs in &mut cfg.virtual_servers {
            let at = vs.origin.0;
            sc.command(&mut vs.quorum_up, "quorum_up", at, d);
            sc.command(&mut vs.quorum_down, "quorum_down", at, d);
            for rs in &mut vs.real_servers {
                let at = rs.origin.0;
                sc.command(&mut rs.notify_up, "notify_up", at, d);
                sc.command(&mut rs.notify_down, "notify_down", at, d);
                rs.checkers.retain_mut(|chk| match &mut chk.kind {
                    crate::model::CheckerKind::Misc(m) => {
                        let user = m.user.clone();
                        sc.check(&mut m.path, user.as_ref(), chk.origin.0, Script::Misc, d)
                    }
                    _ => true,
                });
            }
        }
        sc.fifo_scripts(&mut cfg.global, true, d);
        sc.violation("check scripts", d);
    }
    sc.command(&mut cfg.global.startup_script, "startup_script", at, d);
    sc.command(&mut cfg.global.shutdown_script, "shutdown_script", at, d);
    sc.violation("start/shutdown scripts", d);
    disabled
}

/// Which kind of script is checked (keepalived words its disabling lines by kind).
#[derive(Clone, Copy)]
enum Script<'a> {
    /// A `vrrp_script` a tracker uses.
    Track(&'a str),
    /// A `MISC_CHECK`'s `misc_path`.
    Misc,
    /// A notify, quorum, startup or shutdown script: the keyword and its owner.
    Notify(&'a str),
}

impl Script<'_> {
    fn what(&self) -> String {
        match self {
            Script::Track(name) => format!("vrrp_script {name}"),
            Script::Misc => "MISC_CHECK".into(),
            Script::Notify(what) => (*what).to_string(),
        }
    }
}

/// One pass of keepalived's script checks over a configuration.
struct ScriptCheck<'a> {
    host: &'a dyn Host,
    secure: bool,
    default_user: UserSpec,
    /// Scripts that run a program (keepalived's `SC_ISSCRIPT`).
    scripts: usize,
    /// Of those, how many are insecure.
    insecure: usize,
    /// Whether any script was seen at all.
    any: bool,
}

impl ScriptCheck<'_> {
    /// The FIFO scripts one of keepalived's processes checks: the common one and its own
    /// (the checker's with `lvs`, VRRP's without).
    fn fifo_scripts(&mut self, g: &mut crate::model::Global, lvs: bool, d: &mut Diagnostics) {
        let at = g.origin.0;
        self.command(&mut g.notify_fifo_script, "notify_fifo_script", at, d);
        let (own, what) = if lvs {
            (&mut g.lvs_notify_fifo_script, "lvs_notify_fifo_script")
        } else {
            (&mut g.vrrp_notify_fifo_script, "vrrp_notify_fifo_script")
        };
        self.command(own, what, at, d);
    }

    /// Reports the scripts counted since the last report as keepalived's process reports
    /// them, `what` being its word for them ("check scripts"), when security is off.
    fn violation(&mut self, what: &str, d: &mut Diagnostics) {
        if !self.secure && self.scripts > 0 {
            let extra = if self.insecure > 0 {
                " There are insecure scripts."
            } else {
                ""
            };
            d.push(
                Class::Security,
                None,
                format!("SECURITY VIOLATION - {what} are being executed but script_security not enabled.{extra}"),
            );
        }
        self.scripts = 0;
        self.insecure = 0;
    }

    /// Checks a notify-style slot; empties it when keepalived would not run the script.
    fn command(
        &mut self,
        slot: &mut Option<Command>,
        what: &str,
        at: Option<Span>,
        d: &mut Diagnostics,
    ) {
        if let Some(c) = slot {
            let user = c.user.clone();
            if !self.check(&mut c.cmd, user.as_ref(), at, Script::Notify(what), d) {
                *slot = None;
            }
        }
    }

    /// Checks one script and rewrites its program to the real path it will run as. `false`
    /// when keepalived disables it.
    fn check(
        &mut self,
        cmd: &mut String,
        user: Option<&UserSpec>,
        at: Option<Span>,
        script: Script<'_>,
        d: &mut Diagnostics,
    ) -> bool {
        self.any = true;
        let spec = user.unwrap_or(&self.default_user);
        // keepalived reads the words after a notify script's command as its user and group
        // (an unquoted command with arguments gives them as a user): it logs and ignores the
        // script, and `-t` exits 0. Other scripts are disabled with an error.
        let no_owner = |d: &mut Diagnostics, what: String| match script {
            Script::Notify(_) => d.push_unlined(
                Class::Note,
                at,
                format!(
                    "Invalid user/group for {} script {} - ignoring",
                    script.what(),
                    program(cmd)
                ),
            ),
            _ => d.push_unlined(
                Class::Invalid,
                at,
                format!("Unable to set {what} for {} - disabling", script.what()),
            ),
        };
        let Some((uid, primary)) = self.host.user(&spec.user) else {
            no_owner(d, format!("user {}", spec.user));
            return false;
        };
        let gid = match &spec.group {
            None => primary,
            Some(g) => match self.host.group(g) {
                Some(gid) => gid,
                None => {
                    no_owner(d, format!("group {g}"));
                    return false;
                }
            },
        };
        let prog = program(cmd).to_string();
        // `</dev/tcp/…` opens a file through the shell and executes nothing (keepalived's
        // SC_SYSTEM); an empty command likewise.
        if prog.is_empty() || prog.starts_with('<') {
            return true;
        }
        let found = if prog.contains('/') {
            Some(PathBuf::from(&prog))
        } else {
            self.host
                .path_dirs()
                .into_iter()
                .map(|dir| dir.join(&prog))
                .find(|p| {
                    self.host
                        .stat(p)
                        .is_some_and(|s| s.kind == FileKind::File && executable(&s, uid, gid))
                })
        };
        let resolved = found.and_then(|p| {
            let real = self.host.realpath(&p)?;
            let st = self.host.stat(&real)?;
            Some((real, st))
        });
        let Some((real, st)) = resolved else {
            match script {
                Script::Track(name) => d.push_unlined(
                    Class::Invalid,
                    at,
                    format!("Disabling track script {name} since not found/accessible"),
                ),
                Script::Misc => d.push_unlined(
                    Class::Note,
                    at,
                    format!("Disabling misc script {cmd} since not found/accessible"),
                ),
                Script::Notify(what) => d.push_unlined(
                    Class::Note,
                    at,
                    format!("Cannot find script {prog} in path ({what}) - disabling"),
                ),
            }
            return false;
        };
        let real_str = real.display().to_string();
        if !executable(&st, uid, gid) {
            d.push_unlined(
                Class::Note,
                at,
                format!("WARNING - script '{real_str}' is not executable for uid:gid {uid}:{gid} - disabling."),
            );
            return false;
        }
        self.scripts += 1;
        let needs_protection = uid == 0
            || gid == 0
            || (st.uid == 0 && st.mode & 0o4100 == 0o4100)
            || (st.gid == 0 && st.mode & 0o2010 == 0o2010);
        let verdict = if needs_protection {
            path_security(self.host, &real)
        } else {
            PathVerdict::Safe
        };
        let inhibit = match verdict {
            PathVerdict::Safe => false,
            PathVerdict::WrongType => {
                d.push_unlined(
                    Class::Note,
                    at,
                    format!("Wrong file type found in script path '{real_str}'."),
                );
                true
            }
            PathVerdict::Unsafe => {
                self.insecure += 1;
                let tail = if self.secure { " - disabling" } else { "" };
                d.push_unlined(
                    Class::Note,
                    at,
                    format!("Unsafe permissions found for script '{real_str}'{tail}."),
                );
                self.secure
            }
        };
        if inhibit {
            match script {
                Script::Track(name) => d.push_unlined(
                    Class::Invalid,
                    at,
                    format!("Disabling track script {name} due to insecure"),
                ),
                Script::Misc => d.push_unlined(
                    Class::Note,
                    at,
                    format!("Disabling misc script {cmd} due to insecure"),
                ),
                Script::Notify(_) => {}
            }
            return false;
        }
        if real_str != prog {
            replace_program(cmd, &real_str);
        }
        true
    }
}

/// Whether `uid:gid` may execute a file (as keepalived's `is_executable` decides).
fn executable(st: &Stat, uid: u32, gid: u32) -> bool {
    if uid == 0 {
        st.mode & 0o111 != 0
    } else if uid == st.uid {
        st.mode & 0o100 != 0
    } else if gid == st.gid {
        st.mode & 0o010 != 0
    } else {
        st.mode & 0o001 != 0
    }
}

/// The outcome of walking a script's real path.
#[derive(Debug, PartialEq, Eq)]
enum PathVerdict {
    Safe,
    /// A component that is not a directory, or a final one that is not a file.
    WrongType,
    /// A component someone other than root can change.
    Unsafe,
}

/// Every component of `path` (from `/`), not following symbolic links: each owned by root and
/// writable by nobody else — group write only with group root, world write only on a sticky
/// directory.
fn path_security(host: &dyn Host, path: &Path) -> PathVerdict {
    let mut parts: Vec<&Path> = path.ancestors().collect();
    parts.reverse();
    let last = parts.len().saturating_sub(1);
    for (i, p) in parts.into_iter().enumerate() {
        let Some(st) = host.lstat(p) else {
            return PathVerdict::Unsafe;
        };
        let kind_ok = if i < last {
            st.kind == FileKind::Dir
        } else {
            matches!(st.kind, FileKind::File | FileKind::Symlink)
        };
        if !kind_ok {
            return PathVerdict::WrongType;
        }
        let writable_check =
            (st.kind == FileKind::Dir && st.mode & 0o1000 == 0) || st.kind == FileKind::File;
        if st.uid != 0
            || (writable_check && ((st.gid != 0 && st.mode & 0o020 != 0) || st.mode & 0o002 != 0))
        {
            return PathVerdict::Unsafe;
        }
    }
    PathVerdict::Safe
}

/// The program part of a command line (first word, honouring simple quotes).
fn program(cmd: &str) -> &str {
    let cmd = cmd.trim_start();
    match cmd.as_bytes().first() {
        Some(b'"') | Some(b'\'') => {
            let q = &cmd[..1];
            cmd[1..].split(q).next().unwrap_or("")
        }
        _ => cmd
            .split(|c: char| c.is_ascii_whitespace())
            .next()
            .unwrap_or(""),
    }
}

/// Replaces the program word of a command line (see [`program`]) with `to`, quoting it when
/// it holds white space or quotes; leaves the command alone when it cannot be quoted.
fn replace_program(cmd: &mut String, to: &str) {
    let trimmed = cmd.trim_start();
    let lead = cmd.len() - trimmed.len();
    let word_len = match trimmed.as_bytes().first() {
        Some(q @ (b'"' | b'\'')) => match trimmed[1..].find(*q as char) {
            Some(end) => end + 2,
            None => trimmed.len(),
        },
        _ => trimmed
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(trimmed.len()),
    };
    let quoted = if !to.contains(|c: char| c.is_ascii_whitespace() || c == '\'' || c == '"') {
        to.to_string()
    } else if !to.contains('\'') {
        format!("'{to}'")
    } else if !to.contains('"') {
        format!("\"{to}\"")
    } else {
        return;
    };
    let rest = trimmed[word_len..].to_string();
    *cmd = format!("{}{quoted}{rest}", &cmd[..lead]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_the_first_word() {
        assert_eq!(program("/sbin/pidof haproxy"), "/sbin/pidof");
        assert_eq!(program("'/my dir/x' a"), "/my dir/x");
        assert_eq!(program("pidof"), "pidof");
    }

    #[test]
    fn the_program_word_is_replaced_and_quoted_when_needed() {
        let mut c = "/usr/local/bin/chk a 'b c'".to_string();
        replace_program(&mut c, "/opt/real/chk");
        assert_eq!(c, "/opt/real/chk a 'b c'");
        let mut c = "'/my dir/x' a".to_string();
        replace_program(&mut c, "/real dir/x");
        assert_eq!(c, "'/real dir/x' a");
        let mut c = "x".to_string();
        replace_program(&mut c, "/it's/x");
        assert_eq!(c, "\"/it's/x\"");
        assert_eq!(program(&c), "/it's/x");
    }

    /// A file system in memory: `(path, owner, group, mode, kind, link target)`.
    struct Fake {
        nodes: HashMap<PathBuf, (Stat, Option<PathBuf>)>,
        users: HashMap<&'static str, (u32, u32)>,
    }

    const ROOT_DIR: (u32, u32, u32, FileKind) = (0, 0, 0o755, FileKind::Dir);

    impl Fake {
        fn new() -> Fake {
            let mut f = Fake {
                nodes: HashMap::new(),
                users: HashMap::from([("root", (0, 0)), ("nobody", (65534, 65534))]),
            };
            for d in [
                "/",
                "/usr",
                "/usr/bin",
                "/usr/local",
                "/usr/local/bin",
                "/home",
            ] {
                f.add(d, ROOT_DIR);
            }
            f.add("/tmp", (0, 0, 0o1777, FileKind::Dir));
            f.add("/home/user", (1000, 1000, 0o755, FileKind::Dir));
            f
        }

        fn add(&mut self, p: &str, (uid, gid, mode, kind): (u32, u32, u32, FileKind)) {
            let st = Stat {
                uid,
                gid,
                mode,
                kind,
            };
            self.nodes.insert(PathBuf::from(p), (st, None));
        }

        fn file(&mut self, p: &str, uid: u32, gid: u32, mode: u32) {
            self.add(p, (uid, gid, mode, FileKind::File));
        }

        fn link(&mut self, p: &str, owner: u32, to: &str) {
            let st = Stat {
                uid: owner,
                gid: owner,
                mode: 0o777,
                kind: FileKind::Symlink,
            };
            self.nodes
                .insert(PathBuf::from(p), (st, Some(PathBuf::from(to))));
        }
    }

    impl Host for Fake {
        fn interface_exists(&self, _: &str) -> bool {
            true
        }
        fn user(&self, name: &str) -> Option<(u32, u32)> {
            self.users.get(name).copied()
        }
        fn group(&self, name: &str) -> Option<u32> {
            self.users.get(name).map(|u| u.1)
        }
        fn stat(&self, path: &Path) -> Option<Stat> {
            self.nodes.get(&self.realpath(path)?).map(|n| n.0)
        }
        fn lstat(&self, path: &Path) -> Option<Stat> {
            self.nodes.get(path).map(|n| n.0)
        }
        fn realpath(&self, path: &Path) -> Option<PathBuf> {
            let mut cur = PathBuf::from("/");
            for c in path.components().skip(1) {
                cur.push(c);
                for _ in 0..8 {
                    match self.nodes.get(&cur)? {
                        (_, Some(to)) => cur = to.clone(),
                        (_, None) => break,
                    }
                }
            }
            Some(cur)
        }
        fn path_dirs(&self) -> Vec<PathBuf> {
            vec![PathBuf::from("/usr/bin")]
        }
    }

    fn check(host: &Fake, conf: &str) -> crate::Loaded {
        let loader = crate::loader::MemLoader::single("/k.conf", conf);
        let opts = crate::Options {
            config_id: String::new(),
            strict: false,
        };
        crate::load(Path::new("/k.conf"), &loader, Some(host), &opts)
    }

    fn said(l: &crate::Loaded, text: &str) -> bool {
        l.diagnostics.iter().any(|d| d.message.contains(text))
    }

    fn instance(extra: &str) -> String {
        format!(
            "vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 1\n{extra}\n virtual_ipaddress {{\n  10.0.0.1\n }}\n}}\n"
        )
    }

    fn tracked(script: &str, global: &str) -> String {
        format!(
            "global_defs {{\n{global}\n}}\nvrrp_script chk {{\n script \"{script}\"\n}}\n{}",
            instance(" track_script {\n  chk\n }")
        )
    }

    const SECURE: &str = " enable_script_security\n script_user root";

    #[test]
    fn a_link_into_a_directory_a_user_owns_is_insecure() {
        let mut h = Fake::new();
        // The file is root's, but its directory is the user's: the user can replace it.
        h.file("/home/user/chk", 0, 0, 0o755);
        h.link("/usr/local/bin/chk", 0, "/home/user/chk");
        let l = check(&h, &tracked("/usr/local/bin/chk", SECURE));
        assert_eq!(l.disabled_scripts, ["chk"]);
        assert!(said(
            &l,
            "Unsafe permissions found for script '/home/user/chk' - disabling."
        ));
        assert!(said(&l, "Disabling track script chk due to insecure"));
        assert_eq!(l.exit_code(false), 5);
    }

    #[test]
    fn a_link_to_a_safe_file_runs_the_real_path() {
        let mut h = Fake::new();
        h.file("/usr/bin/chk-real", 0, 0, 0o755);
        h.link("/usr/local/bin/chk", 0, "/usr/bin/chk-real");
        let l = check(&h, &tracked("/usr/local/bin/chk --fast", SECURE));
        assert!(l.disabled_scripts.is_empty(), "{:?}", l.diagnostics);
        assert_eq!(
            l.config.scripts[0].kind,
            Some(ScriptKind::Command("/usr/bin/chk-real --fast".into()))
        );
        assert_eq!(l.exit_code(false), 0);
    }

    #[test]
    fn a_link_a_user_owns_is_followed_and_its_target_checked() {
        let mut h = Fake::new();
        h.file("/usr/bin/chk-real", 0, 0, 0o755);
        // The user's own link to a safe file: what runs is the safe file, named by its real
        // path, so re-pointing the link later changes nothing.
        h.link("/home/user/chk", 1000, "/usr/bin/chk-real");
        let l = check(&h, &tracked("/home/user/chk", SECURE));
        assert!(l.disabled_scripts.is_empty(), "{:?}", l.diagnostics);
        assert_eq!(
            l.config.scripts[0].kind,
            Some(ScriptKind::Command("/usr/bin/chk-real".into()))
        );
    }

    #[test]
    fn group_root_needs_the_same_protection_as_user_root() {
        let mut h = Fake::new();
        h.file("/tmp/chk", 65534, 65534, 0o755);
        let as_group_root = " enable_script_security\n script_user nobody root";
        let l = check(&h, &tracked("/tmp/chk", as_group_root));
        assert_eq!(l.disabled_scripts, ["chk"]);
        // As nobody:nobody, the file is nobody's own business.
        let l = check(
            &h,
            &tracked("/tmp/chk", " enable_script_security\n script_user nobody"),
        );
        assert!(l.disabled_scripts.is_empty(), "{:?}", l.diagnostics);
    }

    #[test]
    fn set_uid_root_programs_need_protection_whoever_runs_them() {
        let mut h = Fake::new();
        h.add("/home/user/bin", (1000, 1000, 0o755, FileKind::Dir));
        h.file("/home/user/bin/chk", 0, 0, 0o4755);
        let l = check(
            &h,
            &tracked(
                "/home/user/bin/chk",
                " enable_script_security\n script_user nobody",
            ),
        );
        assert_eq!(l.disabled_scripts, ["chk"]);
    }

    #[test]
    fn an_insecure_notify_script_is_removed_and_does_not_change_the_exit_code() {
        let mut h = Fake::new();
        h.file("/tmp/notify.sh", 0, 0, 0o777);
        let conf = format!(
            "global_defs {{\n{SECURE}\n}}\n{}",
            instance(" notify_master \"/tmp/notify.sh master\"")
        );
        let l = check(&h, &conf);
        assert_eq!(l.config.instances[0].notify.master, None);
        assert!(said(
            &l,
            "Unsafe permissions found for script '/tmp/notify.sh' - disabling."
        ));
        // keepalived -t only logs it (exit 0).
        assert_eq!(l.exit_code(false), 0);
    }

    #[test]
    fn an_insecure_misc_check_is_removed_from_its_real_server() {
        let mut h = Fake::new();
        h.file("/home/user/misc", 1000, 1000, 0o755);
        h.file("/usr/bin/misc-ok", 0, 0, 0o755);
        let conf = format!(
            "global_defs {{\n{SECURE}\n}}\nvirtual_server 10.0.0.1 80 {{\n real_server 10.0.0.2 80 {{\n  MISC_CHECK {{\n   misc_path /home/user/misc\n  }}\n  MISC_CHECK {{\n   misc_path \"misc-ok 1\"\n  }}\n }}\n}}\n"
        );
        let l = check(&h, &conf);
        let checkers = &l.config.virtual_servers[0].real_servers[0].checkers;
        assert_eq!(checkers.len(), 1, "{:?}", l.diagnostics);
        match &checkers[0].kind {
            crate::model::CheckerKind::Misc(m) => assert_eq!(m.path, "/usr/bin/misc-ok 1"),
            k => panic!("{k:?}"),
        }
        assert!(said(
            &l,
            "Disabling misc script /home/user/misc due to insecure"
        ));
    }

    #[test]
    fn a_script_its_user_cannot_execute_is_disabled() {
        let mut h = Fake::new();
        h.file("/usr/bin/chk", 0, 0, 0o744);
        let l = check(
            &h,
            &tracked(
                "/usr/bin/chk",
                " enable_script_security\n script_user nobody",
            ),
        );
        assert_eq!(l.disabled_scripts, ["chk"]);
        assert!(said(
            &l,
            "is not executable for uid:gid 65534:65534 - disabling."
        ));
    }

    #[test]
    fn a_redirect_executes_nothing_and_is_no_security_violation() {
        // keepalived -t exits 0 on this (its SC_SYSTEM): the shell opens a file, no program runs.
        let l = check(&Fake::new(), &tracked("</dev/tcp/127.0.0.1/3306", ""));
        assert!(l.disabled_scripts.is_empty());
        assert_eq!(l.exit_code(false), 0, "{:?}", l.diagnostics);
        let mut h = Fake::new();
        h.file("/usr/bin/true", 0, 0, 0o755);
        let l = check(&h, &tracked("/usr/bin/true", ""));
        assert_eq!(l.exit_code(false), 6, "{:?}", l.diagnostics);
    }

    #[test]
    fn without_script_security_insecure_scripts_run_and_exit_six() {
        let mut h = Fake::new();
        h.file("/home/user/chk", 1000, 1000, 0o755);
        let l = check(&h, &tracked("/home/user/chk", " script_user root"));
        assert!(l.disabled_scripts.is_empty());
        assert!(said(
            &l,
            "Unsafe permissions found for script '/home/user/chk'."
        ));
        assert!(said(&l, "There are insecure scripts."));
        assert_eq!(l.exit_code(false), 6);
    }
}
