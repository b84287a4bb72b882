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

/// The local-root attack: a root-owned link in a safe directory that points at a file in a
/// directory another user owns (who can swap the file at will), and a world-writable notify
/// script. Neither may ever run as root; a safe notify beside them shows that the daemon got as
/// far as running scripts (the tracker, every 0.2 s, had run many times by then).
#[test]
fn a_link_into_a_users_directory_and_an_unsafe_notify_script_never_run() {
    use std::os::unix::fs::{chown, symlink};
    let mut lab = netns::Lab::new(1).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let dir = lab.dir().to_path_buf();
    let userdir = dir.join("userdir");
    std::fs::create_dir(&userdir).unwrap();
    chown(&userdir, Some(65534), Some(65534)).unwrap();
    let linked_ran = dir.join("linked-ran");
    let target = userdir.join("chk");
    std::fs::write(
        &target,
        format!("#!/bin/sh\ntouch {}\n", linked_ran.display()),
    )
    .unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = dir.join("chk-link");
    symlink(&target, &link).unwrap();
    let notify_ran = dir.join("notify-ran");
    let unsafe_notify = script(
        &lab,
        "notify-master.sh",
        &format!("#!/bin/sh\ntouch {}\n", notify_ran.display()),
        0o777,
    );
    let safe_ran = dir.join("safe-notify-ran");
    let safe_notify = script(
        &lab,
        "notify.sh",
        &format!("#!/bin/sh\necho \"$@\" >> {}\n", safe_ran.display()),
        0o755,
    );
    let conf = format!(
        "global_defs {{\n    enable_script_security\n    script_user root\n}}\nvrrp_script chk_link {{\n    script \"{}\"\n    interval 0.2\n}}\n{}",
        link.display(),
        netns::conf(
            150,
            &format!(
                "    track_script {{\n        chk_link\n    }}\n    notify_master \"{unsafe_notify} master\"\n    notify \"{safe_notify}\""
            ),
            ""
        )
        .replace("global_defs {\n\n}\n", "")
    );
    let mut n1 = lab.holdfast(1, &conf);
    n1.wait_for("Disabling track script chk_link due to insecure", 5 * SEC);
    n1.wait_for(
        &format!(
            "Unsafe permissions found for script '{}' - disabling.",
            std::fs::canonicalize(&unsafe_notify).unwrap().display()
        ),
        5 * SEC,
    );
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    // The safe `notify` runs for MASTER; notify_master would have started with it.
    let deadline = std::time::Instant::now() + 10 * SEC;
    while !std::fs::read_to_string(&safe_ran).is_ok_and(|t| t.contains("MASTER")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the safe notify script never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(n1.count("VRRP_Script(chk_link)"), 0);
    assert!(!linked_ran.exists(), "the linked script ran as root");
    assert!(
        !notify_ran.exists(),
        "the world-writable notify script ran as root"
    );
}

/// A second daemon on the same pid file refuses to start, as keepalived does, and leaves the
/// running MASTER its VIP: whether the first daemon is holdfast (which holds the file locked)
/// or keepalived (which only wrote its pid there).
#[test]
fn a_second_daemon_on_the_same_pid_file_refuses_to_start() {
    let mut lab = netns::Lab::new(1).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let conf = netns::conf(150, "", "");
    let pid_file = lab.dir().join("n1-holdfast.pid");
    let mut first = lab.holdfast(1, &conf);
    first.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert!(lab.wait_has(1, "10.77.0.100/24", true, 5 * SEC));
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        first.pid().to_string()
    );
    let mut second = lab.holdfast(1, &conf);
    second.wait_for("daemon is already running", 5 * SEC);
    assert!(second.wait_exit(5 * SEC), "the second daemon kept running");
    assert_eq!(second.count("removing VIPs"), 0, "{}", second.log());
    // The first keeps its VIP, its pid file and its place.
    assert!(
        lab.has(1, "10.77.0.100/24"),
        "the second daemon took the VIP"
    );
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        first.pid().to_string()
    );
    first.signal("TERM");
    assert!(first.wait_exit(10 * SEC));
    assert!(!pid_file.exists(), "the pid file outlived the daemon");

    // keepalived takes no lock: its pid in the file is enough.
    let mut ka = lab.keepalived(1, &conf);
    ka.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert!(lab.wait_has(1, "10.77.0.100/24", true, 5 * SEC));
    let ka_pid = lab.dir().join("n1-main.pid");
    let mut hf = lab.holdfast_with(1, &conf, &["-p", ka_pid.to_str().unwrap()]);
    hf.wait_for("daemon is already running", 5 * SEC);
    assert!(hf.wait_exit(5 * SEC), "holdfast ran beside keepalived");
    assert!(
        lab.has(1, "10.77.0.100/24"),
        "holdfast took keepalived's VIP"
    );
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
    n1.wait_for_all(
        &[
            "(VI_1) Entering MASTER STATE",
            "MYSQL_CHECK on service [10.77.0.9]:tcp:3306 failed",
        ],
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
    let conf = netns::conf(150, "", "");
    let mut n1 = lab.holdfast_under(1, &conf, &["prlimit", "--nofile=256:8192"], &[]);
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
