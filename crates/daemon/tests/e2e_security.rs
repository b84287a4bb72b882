//! Security end to end (as root, in namespaces the test creates): keepalived's script security
//! (an unsafe script refused, a safe one run as `script_user`), the control socket closed to
//! other users, and no secrets — VRRP passwords, MySQL passwords — in logs or status.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use holdfast_lab::netns;

const SEC: Duration = Duration::from_secs(1);

fn script(lab: &netns::Lab, name: &str, body: &str, mode: u32) -> String {
    let p = lab.file(name, body);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.display().to_string()
}

/// (That a safe script runs as `script_user` is e2e_vrrp's
/// `scripts_run_as_script_user_and_lines_go_to_the_log_file`.)
#[test]
fn an_unsafe_script_run_as_root_is_refused_and_never_run() {
    let mut lab = netns::Lab::new(1).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let marker = lab.dir().join("ran");
    // Writable by anyone and run as root: keepalived refuses it under enable_script_security
    // (a script run as an unprivileged user may be that user's to change).
    let unsafe_ = script(
        &lab,
        "unsafe.sh",
        &format!("#!/bin/sh\ntouch {}\n", marker.display()),
        0o777,
    );
    let conf = format!(
        "global_defs {{\n    enable_script_security\n}}\nvrrp_script chk_unsafe {{\n    script \"{unsafe_}\"\n    user root\n    interval 0.2\n}}\n{}",
        netns::conf(150, "    track_script {\n        chk_unsafe\n    }", "")
            .replace("global_defs {\n\n}\n", "")
    );
    let mut n1 = lab.holdfast(1, &conf);
    n1.wait_for("Disabling track script chk_unsafe due to insecure", 5 * SEC);
    // Disabled, it does not hold the instance back, and it never runs.
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert_eq!(n1.count("VRRP_Script(chk_unsafe)"), 0);
    assert!(!marker.exists(), "the unsafe script ran");
}

#[test]
fn the_control_socket_is_closed_to_other_users() {
    let mut lab = netns::Lab::new(1).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let socket = lab.dir().join("control.sock");
    let global = format!("control_socket {}", socket.display());
    let mut n1 = lab.holdfast(1, &netns::conf(150, "", &global));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // root gets an answer; nobody does not.
    let ask = |as_nobody: bool| {
        let mut c = if as_nobody {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_holdfast"));
            c
        } else {
            std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        };
        c.args(["status", "-s"]).arg(&socket).output().unwrap()
    };
    let root = ask(false);
    assert!(
        root.status.success(),
        "{}",
        String::from_utf8_lossy(&root.stderr)
    );
    assert!(String::from_utf8_lossy(&root.stdout).contains("VI_1"));
    let other = ask(true);
    assert!(!other.status.success(), "nobody was answered");
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
}

#[test]
fn passwords_appear_in_no_log_line_and_no_status() {
    let mut lab = netns::Lab::new(1).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let socket = lab.dir().join("control.sock");
    // A VRRP password, and a MySQL password for a server that is not there (its check
    // fails and says why).
    let conf = format!(
        "global_defs {{\n    control_socket {}\n}}\nvrrp_instance VI_1 {{\n    state MASTER\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 0.5\n    authentication {{\n        auth_type PASS\n        auth_pass vrrpS3c\n    }}\n    virtual_ipaddress {{\n        10.77.0.100/24\n    }}\n}}\nvirtual_server 10.77.0.100 3306 {{\n    delay_loop 0.5\n    real_server 10.77.0.9 3306 {{\n        MYSQL_CHECK {{\n            user lab\n            password dbS3cret\n            connect_timeout 0.5\n            retry 0\n        }}\n    }}\n}}\n",
        socket.display()
    );
    let mut n1 = lab.holdfast(1, &conf);
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n1.wait_for(
        "MYSQL_CHECK on service [10.77.0.9]:tcp:3306 failed",
        10 * SEC,
    );
    for args in [
        &["status", "--json"][..],
        &["status", "--lvs"],
        &["dump"],
        &["stats"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .args(args)
            .arg("-s")
            .arg(&socket)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        for secret in ["vrrpS3c", "dbS3cret"] {
            assert!(!text.contains(secret), "{secret} in {args:?}:\n{text}");
        }
    }
    // SIGUSR1's file too, and every line logged with -D so far.
    n1.signal("USR1");
    let data = lab.dir().join("keepalived.data");
    let deadline = std::time::Instant::now() + 5 * SEC;
    while !data.exists() {
        assert!(std::time::Instant::now() < deadline, "no keepalived.data");
        std::thread::sleep(SEC / 20);
    }
    let text = std::fs::read_to_string(&data).unwrap();
    let log = n1.log();
    for secret in ["vrrpS3c", "dbS3cret"] {
        assert!(!text.contains(secret), "{secret} in keepalived.data");
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// A low soft limit on open files (systemd's default is 1 024) is raised to the hard limit at
/// start: with hundreds of real servers checked at once, probes would fail with EMFILE and
/// healthy servers be removed.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let mut lab = netns::Lab::new(1).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let conf = lab.file("n1.conf", &netns::conf(150, "", ""));
    let data = lab.dir().display().to_string();
    let mut n1 = lab.spawn(
        1,
        "holdfast",
        &[
            "prlimit",
            "--nofile=256:8192",
            env!("CARGO_BIN_EXE_holdfast"),
            "run",
            "-n",
            "-l",
            "-D",
            "--data-dir",
            &data,
            "-f",
            conf.to_str().unwrap(),
        ],
    );
    n1.wait_for("Open file limit raised from 256 to 8192", 5 * SEC);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", n1.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["8192", "8192"],
        "{line}"
    );
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
}
