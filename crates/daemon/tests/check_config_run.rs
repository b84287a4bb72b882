//! `check-config` says what `run` will do: every configuration the repository keeps (the
//! seeds, the parity cases, keepalived's own samples, the golden files, the shipped and
//! documented examples) is read by `check-config` and by `run`'s start-up in one network
//! namespace, and they must agree — `run` starts exactly when `check-config` does not say
//! it cannot, and everything `run` will not do is a `check-config` finding at a
//! file:line:col, word for word.
//!
//! Needs root (it makes the namespace).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failure should stop the run

use std::path::{Path, PathBuf};
use std::time::Duration;

use holdfast::host::LinuxHost;
use holdfast_config::loader::FsLoader;
use holdfast_config::{Options, load};

#[path = "support/parity.rs"]
mod parity;

const CONFIG_ID: &str = "holdfast-walk";

/// Every `.conf` file under `dir` (and its subdirectories), sorted.
fn confs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            confs(&p, out);
        } else if p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains(".conf"))
        {
            out.push(p);
        }
    }
}

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in [
        "crates/daemon/tests/fixtures",
        "crates/config/tests/golden",
        "docs/examples",
        "examples",
        "packaging",
    ] {
        confs(&root.join(dir), &mut files);
    }
    confs(Path::new("/usr/share/doc/keepalived/samples"), &mut files);
    files.push(PathBuf::from("/etc/keepalived/keepalived.conf.sample"));
    files.sort();
    files
}

/// What differs between `check-config`'s verdict on `path` and `run`'s start-up (`Err`), or
/// how many things `run` will not do (`Ok`).
fn difference(path: &Path) -> Result<usize, String> {
    let opts = Options {
        config_id: CONFIG_ID.into(),
        strict: false,
    };
    let checked = holdfast::plan::check(
        load(path, &FsLoader, Some(&LinuxHost), &opts),
        holdfast::plan::Facts::of_host(),
        false,
    );
    let code = checked.exit_code(false);
    let started = holdfast::run::load_plan(path, CONFIG_ID);
    let name = path.display();
    let plan = match started {
        Err(_) if matches!(code, 2 | 4) => return Ok(0),
        Err(e) => {
            return Err(format!(
                "{name}: check-config exits {code}, run refuses: {e}"
            ));
        }
        Ok(_) if matches!(code, 2 | 4) => {
            return Err(format!("{name}: check-config exits {code}, run starts"));
        }
        Ok(plan) => plan,
    };
    if plan.findings.len() != plan.warnings.len() {
        return Err(format!(
            "{name}: {} findings, {} logged",
            plan.findings.len(),
            plan.warnings.len()
        ));
    }
    for (d, line) in plan.findings.iter().zip(&plan.warnings) {
        let Some(span) = d.span else {
            return Err(format!(
                "{name}: run will not do '{}', said nowhere",
                d.message
            ));
        };
        if !checked.diagnostics.contains(d) {
            return Err(format!(
                "{name}: run will not do '{}', which check-config does not say",
                d.message
            ));
        }
        let at = format!(
            "{}:{}:",
            checked.sources.file(span.file).path.display(),
            checked.sources.line_of(span)
        );
        if !line.starts_with(&at) {
            return Err(format!("{name}: run logs '{line}', not at {at}"));
        }
    }
    Ok(plan.findings.len())
}

#[test]
fn check_config_and_run_agree_on_every_kept_configuration() {
    let files = corpus();
    assert!(
        files.len() >= 60,
        "only {} configurations found",
        files.len()
    );
    let ns = parity::Ns::new();
    let mut findings = 0;
    let mut failures = Vec::new();
    for f in &files {
        match parity::in_ns(&ns, || difference(f)) {
            Ok(n) => findings += n,
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The walk must meet what run does not do, or it proves nothing.
    assert!(findings > 0, "no configuration has a finding");
}

/// `holdfast run` logs what it will not do at the place `check-config` names, word for word.
#[test]
fn run_logs_what_it_will_not_do_where_check_config_says_it() {
    use holdfast_lab::netns;
    let mut lab = netns::Lab::new(1).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    // The proxy forwards as NAT whatever lb_kind says.
    let conf = "global_defs {\n    dataplane proxy\n}\nvirtual_server 10.77.0.100 80 {\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n    real_server 10.77.0.2 80 {\n        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n}\n";
    let mut p = lab.holdfast(1, conf);
    p.wait_for(
        "WARNING - not done by holdfast run: ",
        Duration::from_secs(10),
    );
    let log = p.log();
    let logged: Vec<&str> = log
        .lines()
        .filter_map(|l| {
            l.split_once("WARNING - not done by holdfast run: ")
                .map(|x| x.1)
        })
        .collect();
    let path = lab.dir().join("n1.conf");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns(1)])
        .arg(env!("CARGO_BIN_EXE_holdfast"))
        .args(["check-config", "-f"])
        .arg(&path)
        .output()
        .expect("check-config");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(logged.len(), 1, "{log}");
    let want = format!(
        "{}:4:1: warning: virtual_server [10.77.0.100]:tcp:80: lvs_method Dr is not run",
        path.display()
    );
    assert!(logged[0].starts_with(&want), "{}", logged[0]);
    assert!(
        said.lines().any(|l| l == logged[0]),
        "check-config said:\n{said}\nrun logged: {}",
        logged[0]
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
}
