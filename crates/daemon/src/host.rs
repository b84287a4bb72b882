//! The Linux host as `holdfast-config` sees it: interfaces (and which are private macvlans),
//! users, file modes, `$PATH`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use holdfast_config::validate::{FileKind, Host, Stat};

/// Reads `/sys/class/net`, `/etc/passwd` and file metadata.
#[derive(Debug, Default)]
pub struct LinuxHost;

impl Host for LinuxHost {
    fn interface_exists(&self, name: &str) -> bool {
        // Asked of the kernel (an ioctl on a socket) rather than of /sys/class/net, which shows
        // the interfaces of the namespace sysfs was mounted in, not of the calling thread's.
        !name.is_empty()
            && !name.contains(['/', '\0'])
            && nix::net::if_::if_nametoindex(name).is_ok()
    }

    fn user(&self, name: &str) -> Option<(u32, u32)> {
        let f = entry("/etc/passwd", name)?;
        Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
    }

    fn group(&self, name: &str) -> Option<u32> {
        entry("/etc/group", name)?.get(2)?.parse().ok()
    }

    fn stat(&self, path: &Path) -> Option<Stat> {
        std::fs::metadata(path).ok().map(|m| to_stat(&m))
    }

    fn lstat(&self, path: &Path) -> Option<Stat> {
        std::fs::symlink_metadata(path).ok().map(|m| to_stat(&m))
    }

    fn realpath(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }

    /// The kernel's list of online CPUs (`0-3,6`), as glibc's `sysconf` reads it.
    fn cpus_online(&self) -> Option<u32> {
        let list = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
        let mut n = 0u32;
        for part in list.trim().split(',').filter(|p| !p.is_empty()) {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let (lo, hi): (u32, u32) = (lo.parse().ok()?, hi.parse().ok()?);
            n += hi.checked_sub(lo)? + 1;
        }
        Some(n)
    }

    fn private_macvlan(&self, name: &str) -> Option<bool> {
        let f = holdfast_sys::vmac::facts(name).ok()??;
        Some(f.kind.as_deref() == Some("macvlan") && f.private_macvlan)
    }

    fn path_dirs(&self) -> Vec<PathBuf> {
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin:/usr/sbin:/sbin".into());
        std::env::split_paths(&path).collect()
    }
}

/// The colon-separated fields of `name`'s line in `/etc/passwd` or `/etc/group`.
fn entry(file: &str, name: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .map(|f| f.into_iter().map(str::to_owned).collect())
}

fn to_stat(m: &std::fs::Metadata) -> Stat {
    let t = m.file_type();
    let kind = if t.is_symlink() {
        FileKind::Symlink
    } else if t.is_dir() {
        FileKind::Dir
    } else if t.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    Stat {
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode(),
        kind,
    }
}

/// keepalived's default config-id: the host name up to the first dot.
pub fn short_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    name.trim().split('.').next().unwrap_or("").to_string()
}

/// The configuration's `net_namespace` and `instance` names, read without any check of the
/// host: the namespace must be entered before the checks and the daemon look at interfaces,
/// as keepalived enters it first.
pub fn identity(file: &std::path::Path, config_id: &str) -> (Option<String>, Option<String>) {
    let opts = holdfast_config::Options {
        config_id: config_id.to_owned(),
        strict: false,
    };
    let g = holdfast_config::load(file, &holdfast_config::loader::FsLoader, None, &opts)
        .config
        .global;
    (g.net_namespace, g.instance_name)
}

/// keepalived's pid file when `-p` is not given: `/run/keepalived/keepalived_INSTANCE.pid`
/// with `instance`, `/run/keepalived/NAMESPACE/keepalived.pid` with only `net_namespace`
/// (keepalived mounts a directory of its own per namespace there), else
/// `/run/keepalived.pid`.
pub fn default_pid_file(netns: Option<&str>, instance: Option<&str>) -> std::path::PathBuf {
    let dir = std::path::Path::new("/run/keepalived");
    match (netns, instance) {
        (_, Some(i)) => dir.join(format!("keepalived_{i}.pid")),
        (Some(ns), None) => dir.join(ns).join("keepalived.pid"),
        (None, None) => crate::pidfile::DEFAULT.into(),
    }
}

/// keepalived's log identity suffix: `_NAMESPACE`, then `_INSTANCE`, after each ident
/// (`Keepalived_vrrp_ns1`).
pub fn ident_suffix(netns: Option<&str>, instance: Option<&str>) -> String {
    netns
        .iter()
        .chain(instance.iter())
        .map(|s| format!("_{s}"))
        .collect()
}

/// Enters network namespace `name` (`/var/run/netns/NAME`, as `ip netns` makes them) for the
/// calling thread, and so for every thread and process it starts afterwards. Call it before
/// any other thread exists.
pub fn enter_netns(name: &str) -> std::io::Result<()> {
    let path = std::path::Path::new("/var/run/netns").join(name);
    let f = std::fs::File::open(&path).map_err(|e| {
        std::io::Error::new(e.kind(), format!("Failed to open {}: {e}", path.display()))
    })?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| std::io::Error::other(format!("setns() failed with error {}", e as i32)))
}
