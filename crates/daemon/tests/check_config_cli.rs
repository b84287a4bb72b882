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
            " virtual_router_id 51\n use_ipvlan\n",
        ),
    );
    let lenient = run(&["check-config", "-f", p.to_str().unwrap()]);
    assert_eq!(lenient.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&lenient.stderr)
            .contains("warning: unsupported: keepalived keyword 'use_ipvlan'")
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
            // A MySQL check's credentials file must exist with mode 0600 (run reads it when it
            // plans the check): one of the test's own stands in for /etc/holdfast/mysql.cnf.
            let creds = write("mysql.cnf", "[client]\nuser=monitor\npassword=secret\n");
            std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            let text = std::fs::read_to_string(&p)
                .unwrap()
                .replace("/etc/holdfast/mysql.cnf", &creds.display().to_string());
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let p = write(&name, &text);
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

/// A virtual server on `plane` with `vs` and `rs` lines added.
fn lvs(plane: &str, vs: &str, rs: &str) -> String {
    format!(
        "global_defs {{\n    dataplane {plane}\n}}\nvirtual_server 10.0.0.1 80 {{\n    lb_algo rr\n    lb_kind NAT\n{vs}    real_server 10.0.0.2 80 {{\n{rs}        TCP_CHECK {{\n        }}\n    }}\n}}\n"
    )
}

#[test]
fn what_a_data_plane_cannot_do_is_refused_with_its_line_not_ignored() {
    let check = |name: &str, text: &str| -> (Option<i32>, String) {
        let p = write(name, text);
        let out = run(&["check-config", "-f", p.to_str().unwrap()]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (name, text, line, want) in [
        (
            "nft-wlc.conf",
            lvs("nft", "", "").replace("lb_algo rr", "lb_algo wlc"),
            4,
            "dataplane nft: scheduler wlc needs live connection counts",
        ),
        (
            "nft-threshold.conf",
            lvs("nft", "", "        uthreshold 100\n"),
            4,
            "dataplane nft: uthreshold and lthreshold need live connection counts",
        ),
        (
            "nft-proxy-protocol.conf",
            lvs("nft", "    proxy_protocol\n", ""),
            4,
            "dataplane nft: proxy_protocol: nftables forwards the client's packets unchanged",
        ),
        (
            "nft-ops.conf",
            lvs("nft", "    protocol UDP\n    ops\n", ""),
            4,
            "dataplane nft: ops (one-packet scheduling) is not built on nftables",
        ),
        (
            "ipvs-proxy-protocol.conf",
            lvs("ipvs", "    proxy_protocol\n", ""),
            4,
            "dataplane ipvs: proxy_protocol: IPVS forwards the client's packets unchanged",
        ),
        (
            "udp-proxy-protocol.conf",
            lvs("auto", "    protocol UDP\n    proxy_protocol\n", ""),
            4,
            "no data plane can run it (ipvs: proxy_protocol: IPVS forwards the client's packets unchanged and cannot send a PROXY header (use dataplane proxy, or auto); proxy: the proxy forwards TCP services by address only",
        ),
    ] {
        let (code, err) = check(name, &text);
        assert_eq!(code, Some(5), "{name}: {err}");
        assert!(err.contains(&format!("{name}:{line}:")), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
    }
    // What the planes can do passes: thresholds on IPVS (where the kernel has IPVS: run
    // refuses dataplane ipvs without it, and so does check-config), PROXY headers with auto
    // (the proxy).
    let (code, err) = check(
        "ipvs-threshold.conf",
        &lvs("ipvs", "", "        uthreshold 100\n"),
    );
    if holdfast::plan::Facts::of_host().ipvs {
        assert_eq!(code, Some(0), "{err}");
    } else {
        assert_eq!(code, Some(5), "{err}");
        assert!(
            err.contains("ipvs-threshold.conf:4:") && err.contains("the kernel has no IPVS"),
            "{err}"
        );
    }
    let (code, err) = check(
        "auto-proxy-protocol.conf",
        &lvs("auto", "    proxy_protocol\n", ""),
    );
    assert_eq!(code, Some(0), "{err}");
}
