//! `holdfast check-config` as a user runs it: exit codes, diagnostics on stderr, `--strict`,
//! `--dump-conf`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::path::PathBuf;
use std::process::{Command, Output};

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("holdfast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(args)
        .output()
        .unwrap()
}

const OK: &str = "global_defs {\n dynamic_interfaces\n}\nvrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  192.0.2.1/24\n }\n}\n";

#[test]
fn a_clean_file_exits_zero_and_dumps_its_effective_config() {
    let p = write("ok.conf", OK);
    let out = run(&["check-config", "-f", p.to_str().unwrap(), "--dump-conf"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8(out.stdout).unwrap();
    assert!(dump.contains("    priority 100\n"), "{dump}");
    assert!(dump.contains("    advert_int 1\n"), "{dump}");
    assert!(dump.contains("192.0.2.1/24"), "{dump}");
}

#[test]
fn a_missing_file_exits_four() {
    let out = run(&["check-config", "-f", "/nonexistent/holdfast.conf"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be read"));
}

#[test]
fn an_unknown_keyword_exits_five_with_file_line_col_and_caret() {
    let p = write(
        "unknown.conf",
        &OK.replace(
            " virtual_router_id 51\n",
            " virtual_router_id 51\n prioirty 10\n",
        ),
    );
    let out = run(&["check-config", "-f", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown.conf:7:2: warning: Unknown keyword 'prioirty'"),
        "{err}"
    );
    assert!(err.contains("7 |  prioirty 10\n  |  ^^^^^^^^"), "{err}");
}

#[test]
fn scripts_without_script_security_exit_six() {
    let p = write(
        "sec.conf",
        &format!(
            "vrrp_script chk {{\n script \"/bin/true\"\n}}\n{}",
            OK.replace(
                "virtual_ipaddress",
                "track_script {\n  chk\n }\n virtual_ipaddress"
            )
        ),
    );
    let out = run(&["check-config", "-f", p.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "SECURITY VIOLATION - scripts are being executed but script_security not enabled."
    ));
}

#[test]
fn strict_fails_on_unsupported_keywords() {
    let p = write(
        "unsupported.conf",
        &OK.replace(
            " virtual_router_id 51\n",
            " virtual_router_id 51\n use_vmac\n",
        ),
    );
    let lenient = run(&["check-config", "-f", p.to_str().unwrap()]);
    assert_eq!(lenient.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&lenient.stderr)
            .contains("warning: unsupported: keepalived keyword 'use_vmac'")
    );
    let strict = run(&["check-config", "--strict", "-f", p.to_str().unwrap()]);
    assert_eq!(strict.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("error: unsupported"));
}

#[test]
fn config_id_selects_conditional_lines() {
    let p = write(
        "cond.conf",
        &OK.replace(
            " virtual_router_id 51\n",
            " virtual_router_id 51\n@lb1 priority 200\n@^lb1 priority 50\n",
        ),
    );
    for (id, prio) in [("lb1", "200"), ("lb2", "50")] {
        let out = run(&[
            "check-config",
            "-i",
            id,
            "--dump-conf",
            "-f",
            p.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("priority {prio}\n")),
            "{id}"
        );
    }
}

#[test]
fn the_documented_example_configurations_are_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "conf") {
            let out = run(&["check-config", "--strict", "-f", p.to_str().unwrap()]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "no examples in {}", dir.display());
}
