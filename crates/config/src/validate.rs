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
    /// Metadata of a path (symlinks followed); `None` if it cannot be accessed.
    fn stat(&self, path: &Path) -> Option<Stat>;
    /// Directories of `$PATH`, for commands given without a slash.
    fn path_dirs(&self) -> Vec<PathBuf>;
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
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// Checks needing no host.
pub fn references(cfg: &Config, d: &mut Diagnostics) {
    let scripts: HashSet<&str> = cfg.scripts.iter().map(|s| s.name.as_str()).collect();
    let files: HashSet<&str> = cfg.track_files.iter().map(|s| s.name.as_str()).collect();
    let procs: HashSet<&str> = cfg
        .track_processes
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let mut trackers = Vec::new();
    for i in &cfg.instances {
        trackers.push((i.name.as_str(), &i.track));
    }
    for g in &cfg.sync_groups {
        trackers.push((g.name.as_str(), &g.track));
    }
    for (owner, t) in trackers {
        for r in &t.scripts {
            if !scripts.contains(r.name.as_str()) {
                d.invalid(
                    span(r.origin.0),
                    format!("({owner}) track script {} not found, ignoring...", r.name),
                );
            }
        }
        for r in &t.files {
            if !files.contains(r.name.as_str()) {
                d.invalid(
                    span(r.origin.0),
                    format!("({owner}) track file {} not found, ignoring...", r.name),
                );
            }
        }
        for r in &t.processes {
            if !procs.contains(r.name.as_str()) {
                d.invalid(
                    span(r.origin.0),
                    format!("({owner}) track process {} not found, ignoring...", r.name),
                );
            }
        }
    }
    let instances: HashSet<&str> = cfg.instances.iter().map(|i| i.name.as_str()).collect();
    for g in &cfg.sync_groups {
        for m in &g.members {
            if !instances.contains(m.as_str()) {
                d.invalid(
                    span(g.origin.0),
                    format!(
                        "Virtual router {m} specified in sync group {} doesn't exist - ignoring",
                        g.name
                    ),
                );
            }
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
    // proxy_protocol (holdfast): only a proxy sends the header. A kernel plane forwards the
    // client's packets as they are, so asking for one there is refused, not ignored.
    for vs in &cfg.virtual_servers {
        if !vs.proxy_protocol {
            continue;
        }
        let plane = vs.dataplane.or(cfg.global.dataplane);
        let why = if matches!(vs.key, crate::model::VsKey::Fwmark(_))
            || vs.protocol != crate::model::Protocol::Tcp
        {
            Some("proxy_protocol: the PROXY header is sent by the proxy data plane, which forwards TCP services by address only".to_string())
        } else {
            match plane {
                Some(p @ (crate::model::DataPlane::Nft | crate::model::DataPlane::Ipvs)) => {
                    Some(format!(
                        "proxy_protocol: dataplane {} forwards the client's packets unchanged and cannot send a PROXY header (use dataplane proxy, or auto)",
                        if p == crate::model::DataPlane::Nft {
                            "nft"
                        } else {
                            "ipvs"
                        }
                    ))
                }
                _ => None,
            }
        };
        if let Some(w) = why {
            d.push_unlined(Class::Invalid, vs.origin.0, format!("virtual_server: {w}"));
        }
    }
    // persistence_engine: persistence engines (`sip`) are IPVS modules; the proxy and
    // nftables have none, so asking for one there is refused, not ignored.
    for vs in &cfg.virtual_servers {
        let Some(pe) = &vs.persistence_engine else {
            continue;
        };
        let why = if vs.proxy_protocol {
            format!(
                "virtual_server: persistence_engine {pe}: persistence engines are IPVS's and proxy_protocol needs the proxy data plane: not both"
            )
        } else {
            let plane = match vs.dataplane.or(cfg.global.dataplane) {
                Some(crate::model::DataPlane::Nft) => "nft",
                Some(crate::model::DataPlane::Proxy) => "proxy",
                _ => continue,
            };
            format!(
                "virtual_server: persistence_engine {pe}: persistence engines are IPVS's (dataplane {plane} has none; use dataplane ipvs or auto)"
            )
        };
        d.push_unlined(Class::Invalid, vs.origin.0, why);
    }
    // dataplane nft (holdfast): what nftables rules cannot express is refused here, not at
    // run time.
    for vs in &cfg.virtual_servers {
        if vs.dataplane.or(cfg.global.dataplane) != Some(crate::model::DataPlane::Nft) {
            continue;
        }
        if vs.ops {
            d.push_unlined(
                Class::Invalid,
                vs.origin.0,
                "virtual_server: ops (one-packet scheduling) is not built on dataplane nft (use dataplane ipvs)",
            );
        }
        for rs in &vs.real_servers {
            if rs.uthreshold.is_some() || rs.lthreshold.is_some() {
                d.push_unlined(
                    Class::Invalid,
                    rs.origin.0,
                    "real_server: uthreshold and lthreshold need live connection counts, which nftables rules cannot see (use dataplane ipvs or proxy)",
                );
            }
        }
        let mut why = Vec::new();
        if !matches!(
            vs.lvs_sched.as_str(),
            "rr" | "wrr" | "sh" | "dh" | "mh" | "fo"
        ) {
            why.push(format!(
                "scheduler {} needs live connection counts, which nftables rules cannot see (use rr, wrr, sh, dh, mh or fo, or dataplane ipvs)",
                vs.lvs_sched
            ));
        }
        use crate::model::LvsMethod;
        let methods: Vec<LvsMethod> = vs
            .real_servers
            .iter()
            .map(|r| r.lvs_method.unwrap_or(vs.lvs_method))
            .collect();
        if methods.contains(&LvsMethod::Tun) || vs.lvs_method == LvsMethod::Tun {
            why.push("lvs_method TUN is not built on dataplane nft (use dataplane ipvs)".into());
        } else if methods.contains(&LvsMethod::Dr) && methods.contains(&LvsMethod::Nat) {
            why.push("real servers mixing lvs_method DR and NAT in one virtual server are not built on dataplane nft (use dataplane ipvs)".into());
        } else if methods.contains(&LvsMethod::Dr)
            && matches!(vs.key, crate::model::VsKey::Fwmark(_))
        {
            why.push("a fwmark virtual server cannot use lvs_method DR on dataplane nft: direct return is decided at ingress, before the mark is set (use dataplane ipvs)".into());
        }
        for w in why {
            d.push_unlined(Class::Invalid, vs.origin.0, format!("virtual_server: {w}"));
        }
    }
    // VRID conflicts: one (interface, family, vrid) per multicast domain (keepalived fails
    // to start on them; `-t` does not report them).
    let mut seen: HashMap<(Option<&str>, bool, bool, u8), &str> = HashMap::new();
    for i in &cfg.instances {
        if i.vrid == 0 {
            continue;
        }
        let v6 = i.vips.first().is_some_and(|v| v.addr.is_ipv6());
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

/// keepalived's rules for weights in sync groups and on address owners, applied as it applies
/// them (and reported with its messages): a member of a sync group without
/// `sync_group_tracking_weight`, and an instance with priority 255, cannot have weighted
/// trackers — a weighted interface becomes unweighted (an owner stops tracking it), a
/// weighted script is dropped, a track file with the default weight becomes unweighted and
/// one with an explicit weight is dropped. A sync group's own trackers lose their weights when
/// a member is an address owner.
pub fn sync_group_tracking(cfg: &mut Config, d: &mut Diagnostics) {
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
        if let Some(own) = i.interface.clone() {
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
pub fn interfaces(cfg: &Config, host: &dyn Host, d: &mut Diagnostics) -> bool {
    if cfg.global.dynamic_interfaces {
        return false;
    }
    let mut missing = false;
    for i in &cfg.instances {
        if let Some(ifname) = &i.interface
            && !host.interface_exists(ifname)
        {
            missing = true;
            d.push(
                Class::Invalid,
                i.interface_at.0.or(i.origin.0),
                format!(
                    "WARNING - interface {ifname} for vrrp_instance {} doesn't exist",
                    i.name
                ),
            );
        }
        for t in &i.track.interfaces {
            if !host.interface_exists(&t.name) {
                missing = true;
                d.invalid(
                    span(t.origin.0),
                    format!("({}) tracked interface {} doesn't exist", i.name, t.name),
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
                        v.addr
                    ),
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

/// A script in use, with where it was configured.
struct Use<'a> {
    what: String,
    cmd: &'a str,
    user: Option<&'a UserSpec>,
    span: Option<Span>,
    track_script: Option<&'a str>,
}

/// keepalived's script security rules (reference §1.9). Returns the `vrrp_script`s keepalived
/// would disable (not found, or insecure under `enable_script_security`).
pub fn script_security(cfg: &Config, host: &dyn Host, d: &mut Diagnostics) -> Vec<String> {
    let mut disabled = Vec::new();
    let tracked: HashSet<&str> = cfg
        .instances
        .iter()
        .map(|i| &i.track)
        .chain(cfg.sync_groups.iter().map(|g| &g.track))
        .flat_map(|t| t.scripts.iter().map(|r| r.name.as_str()))
        .collect();
    let mut uses: Vec<Use<'_>> = Vec::new();
    for s in &cfg.scripts {
        if let Some(ScriptKind::Command(cmd)) = &s.kind
            && tracked.contains(s.name.as_str())
        {
            uses.push(Use {
                what: format!("vrrp_script {}", s.name),
                cmd,
                user: s.user.as_ref(),
                span: s.origin.0,
                track_script: Some(&s.name),
            });
        }
    }
    let mut commands: Vec<(String, &Command, Option<Span>)> = Vec::new();
    for i in &cfg.instances {
        for (k, c) in i.notify.commands() {
            commands.push((format!("({}) {k}", i.name), c, i.origin.0));
        }
    }
    for g in &cfg.sync_groups {
        for (k, c) in g.notify.commands() {
            commands.push((format!("VRRP_Group({}) {k}", g.name), c, g.origin.0));
        }
    }
    for vs in &cfg.virtual_servers {
        for (k, c) in [
            ("quorum_up", &vs.quorum_up),
            ("quorum_down", &vs.quorum_down),
        ] {
            if let Some(c) = c {
                commands.push((k.to_string(), c, vs.origin.0));
            }
        }
        for rs in &vs.real_servers {
            for (k, c) in [
                ("notify_up", &rs.notify_up),
                ("notify_down", &rs.notify_down),
            ] {
                if let Some(c) = c {
                    commands.push((k.to_string(), c, rs.origin.0));
                }
            }
            for chk in &rs.checkers {
                if let crate::model::CheckerKind::Misc(m) = &chk.kind {
                    uses.push(Use {
                        what: "MISC_CHECK".into(),
                        cmd: &m.path,
                        user: m.user.as_ref(),
                        span: chk.origin.0,
                        track_script: None,
                    });
                }
            }
        }
    }
    for (what, c) in [
        ("startup_script", &cfg.global.startup_script),
        ("shutdown_script", &cfg.global.shutdown_script),
    ] {
        if let Some(c) = c {
            commands.push((what.to_string(), c, cfg.global.origin.0));
        }
    }
    for (what, c, span) in commands {
        uses.push(Use {
            what,
            cmd: &c.cmd,
            user: c.user.as_ref(),
            span,
            track_script: None,
        });
    }
    if uses.is_empty() {
        return disabled;
    }
    let secure = cfg.global.enable_script_security;
    let default_user = cfg
        .global
        .script_user
        .as_ref()
        .map(|u| u.user.clone())
        .or_else(|| {
            host.user("keepalived_script")
                .map(|_| "keepalived_script".to_string())
        })
        .unwrap_or_else(|| "root".to_string());
    if secure && cfg.global.script_user.is_none() && host.user("keepalived_script").is_none() {
        d.note(span(cfg.global.origin.0), "default user 'keepalived_script' for script execution does not exist - scripts run as root");
    }
    let mut insecure = 0;
    let mut enabled = 0;
    for u in &uses {
        let user = u
            .user
            .map(|u| u.user.clone())
            .unwrap_or_else(|| default_user.clone());
        let uid = match host.user(&user) {
            Some((uid, _)) => uid,
            None => {
                d.push_unlined(
                    Class::Invalid,
                    u.span,
                    format!("Unable to set user {user} for {} - disabling", u.what),
                );
                continue;
            }
        };
        let prog = program(u.cmd);
        // keepalived: `</dev/tcp/…` and other non-paths run through /bin/sh -c.
        let path = if prog.starts_with('<') || prog.is_empty() {
            Some(PathBuf::from("/bin/sh"))
        } else if prog.contains('/') {
            Some(PathBuf::from(prog))
        } else {
            host.path_dirs()
                .into_iter()
                .map(|d| d.join(prog))
                .find(|p| host.stat(p).is_some_and(|s| !s.is_dir))
        };
        let Some(path) = path.filter(|p| host.stat(p).is_some()) else {
            match u.track_script {
                Some(name) => {
                    disabled.push(name.to_string());
                    d.push_unlined(
                        Class::Invalid,
                        u.span,
                        format!("Disabling track script {name} since not found/accessible"),
                    )
                }
                None => d.push_unlined(
                    Class::Note,
                    u.span,
                    format!("Cannot find script {prog} in path ({}) - disabling", u.what),
                ),
            }
            continue;
        };
        let unsafe_path = uid == 0 && !path_is_safe(host, &path);
        if unsafe_path {
            insecure += 1;
            if secure {
                match u.track_script {
                    Some(name) => {
                        disabled.push(name.to_string());
                        d.push_unlined(
                            Class::Invalid,
                            u.span,
                            format!("Disabling track script {name} due to insecure"),
                        )
                    }
                    None => d.push_unlined(
                        Class::Invalid,
                        u.span,
                        format!(
                            "Unsafe permissions found for script '{}' - disabling.",
                            u.cmd
                        ),
                    ),
                }
                continue;
            }
        }
        enabled += 1;
    }
    if !secure && enabled > 0 {
        let extra = if insecure > 0 {
            " There are insecure scripts."
        } else {
            ""
        };
        d.push(Class::Security, None, format!("SECURITY VIOLATION - scripts are being executed but script_security not enabled.{extra}"));
    }
    disabled
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

/// Every component root-owned, not group-writable (unless the group is root), not
/// world-writable (sticky directories excepted).
fn path_is_safe(host: &dyn Host, path: &Path) -> bool {
    let mut cur = Some(path);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() {
            break;
        }
        let Some(st) = host.stat(p) else { return false };
        let sticky = st.is_dir && st.mode & 0o1000 != 0;
        if st.uid != 0 || (st.mode & 0o020 != 0 && st.gid != 0) || (st.mode & 0o002 != 0 && !sticky)
        {
            return false;
        }
        cur = p.parent();
    }
    true
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
}
