//! `holdfast check-config` against `keepalived -t` (Debian's 2.2.7) on every seed fixture and
//! every sample keepalived ships: same exit code and the same reported line numbers, except
//! for the deliberate differences listed in `parity-deviations.txt`.
//!
//! Both run in one network namespace the test makes, holding `eth0` and `eth1` (a veth pair),
//! so that each sees the same interfaces whatever the host has: keepalived through `ip netns
//! exec`, holdfast's checks in a thread that has entered the namespace.
//!
//! Needs root and the `keepalived` binary (`scripts/test` installs it); fails when either is
//! missing.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failure should stop the run

use std::path::{Path, PathBuf};

#[path = "support/parity.rs"]
mod parity;
use parity::compare;

/// The files of `tests/fixtures/NAME`, sorted.
fn fixtures(name: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files
}

#[test]
fn seed_configs_match_keepalived() {
    let files = fixtures("seeds");
    assert_eq!(
        files.len(),
        8,
        "one fixture per keepalived.conf in the seeds"
    );
    compare(&files);
}

#[test]
fn debian_samples_match_keepalived() {
    let dir = Path::new("/usr/share/doc/keepalived/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{} missing (install keepalived): {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("keepalived.conf."))
        })
        .collect();
    files.sort();
    compare(&files);
}

/// Cases found to differ once, kept so they stay alike (`tests/fixtures/parity`).
#[test]
fn edge_cases_match_keepalived() {
    let files = fixtures("parity");
    assert!(!files.is_empty());
    compare(&files);
}

/// Configurations shaped like real deployments (`tests/fixtures/realworld`, each naming the
/// project it follows), and the default configuration keepalived installs.
#[test]
fn real_world_configs_match_keepalived() {
    let mut files: Vec<PathBuf> = fixtures("realworld")
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    assert!(files.len() >= 12, "{files:?}");
    let default = Path::new("/etc/keepalived/keepalived.conf.sample");
    assert!(
        default.exists(),
        "{} missing (install keepalived)",
        default.display()
    );
    files.push(default.to_path_buf());
    compare(&files);
}
