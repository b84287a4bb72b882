//! What the parity tests share: a network namespace with `eth0` and `eth1`, `keepalived -t`
//! and holdfast's check-config run on one file in it, the deliberate deviations
//! (`tests/parity-deviations.txt`), and the comparison of the two verdicts.

#![allow(dead_code)] // each parity test uses part of it

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use holdfast::host::LinuxHost;
use holdfast_config::loader::FsLoader;
use holdfast_config::{Class, Options, load};

#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub exit: u8,
    pub lines: BTreeSet<usize>,
}

/// A network namespace with `eth0` and `eth1`, removed when dropped.
pub struct Ns(pub String);

impl Ns {
    pub fn new() -> Ns {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "hfpar{}x{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let ip = |args: &[&str]| {
            let st = Command::new("ip")
                .args(args)
                .status()
                .expect("ip (iproute2)");
            assert!(st.success(), "ip {args:?} (the parity test needs root)");
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "-n", &name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ]);
        Ns(name)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub fn keepalived(ns: &Ns, path: &Path) -> Outcome {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "keepalived", "-t", "-l", "-f"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("keepalived must be installed (scripts/test installs it): {e}"));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let mut lines = BTreeSet::new();
    for part in text.split("Line ").skip(1) {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        if part[digits.len()..].starts_with(')')
            && let Ok(n) = digits.parse()
        {
            lines.insert(n);
        }
    }
    Outcome {
        exit: out.status.code().unwrap_or(255) as u8,
        lines,
    }
}

/// `f`'s result, run in a thread of its own that has entered the namespace (so host checks
/// see its links).
pub fn in_ns<T: Send>(ns: &Ns, f: impl FnOnce() -> T + Send) -> T {
    let netns = std::fs::File::open(format!("/run/netns/{}", ns.0)).expect("the namespace");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("the checks")
    })
}

pub fn holdfast(ns: &Ns, path: &Path) -> Outcome {
    let opts = Options {
        config_id: "holdfast-parity".into(),
        strict: false,
    };
    let loaded = in_ns(ns, || {
        // What `check-config` does: keepalived's checks, then run's planning.
        holdfast::plan::check(
            load(path, &FsLoader, Some(&LinuxHost), &opts),
            holdfast::plan::Facts::of_host(),
            false,
        )
    });
    let lines = loaded
        .diagnostics
        .iter()
        .filter(|d| d.keepalived_lined && !matches!(d.class, Class::Note | Class::Unsupported))
        .filter_map(|d| d.span)
        .map(|s| loaded.sources.line_of(s))
        .collect();
    Outcome {
        exit: loaded.exit_code(false),
        lines,
    }
}

/// `name | keepalived-only lines | holdfast-only lines | keepalived exit/holdfast exit | why`.
pub fn deviations() -> BTreeMap<String, (String, String, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity-deviations.txt"),
    )
    .expect("parity-deviations.txt");
    let mut m = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = l.split('|').map(str::trim).collect();
        assert_eq!(f.len(), 5, "bad deviation line: {l}");
        assert!(!f[4].is_empty(), "a deviation needs a reason: {l}");
        m.insert(
            f[0].to_string(),
            (f[1].to_string(), f[2].to_string(), f[3].to_string()),
        );
    }
    m
}

pub fn join(s: &BTreeSet<usize>) -> String {
    s.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// How `path` (deviations listed under `name`) fares in both: `None` when they agree, or
/// agree but for a listed deviation; otherwise what differs.
pub fn disagreement(
    ns: &Ns,
    path: &Path,
    name: &str,
    dev: &BTreeMap<String, (String, String, String)>,
) -> Option<String> {
    let (k, h) = (keepalived(ns, path), holdfast(ns, path));
    let k_only = join(&k.lines.difference(&h.lines).copied().collect());
    let h_only = join(&h.lines.difference(&k.lines).copied().collect());
    let exits = if k.exit == h.exit {
        "=".to_string()
    } else {
        format!("{}/{}", k.exit, h.exit)
    };
    let actual = (k_only, h_only, exits);
    let expected = dev
        .get(name)
        .cloned()
        .unwrap_or_else(|| (String::new(), String::new(), "=".into()));
    // Documented line differences may shrink on a host with more interfaces (both tools
    // check the host), so each side must be a subset of what is documented; exit codes must
    // match exactly.
    let within = |got: &str, doc: &str| {
        got.split_whitespace()
            .all(|l| doc.split_whitespace().any(|d| d == l))
    };
    if within(&actual.0, &expected.0) && within(&actual.1, &expected.1) && actual.2 == expected.2 {
        return None;
    }
    Some(format!(
        "{name}: keepalived exit {} lines [{}], holdfast exit {} lines [{}]; difference {actual:?}, documented {expected:?}",
        k.exit,
        join(&k.lines),
        h.exit,
        join(&h.lines)
    ))
}

/// Every file in both; fails listing each disagreement.
pub fn compare(files: &[PathBuf]) {
    assert!(!files.is_empty(), "no files to compare");
    let dev = deviations();
    let ns = Ns::new();
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            disagreement(&ns, f, &name, &dev)
        })
        .collect();
    assert!(
        failures.is_empty(),
        "check-config disagrees with keepalived -t:\n{}",
        failures.join("\n")
    );
}
