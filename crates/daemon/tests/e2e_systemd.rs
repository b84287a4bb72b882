//! systemd's notify protocol end to end (as root, in a namespace the test creates): the test
//! plays systemd's side of `NOTIFY_SOCKET` and sees READY when holdfast runs, RELOADING and
//! READY around a SIGHUP, STOPPING at SIGTERM. And the packaged unit starts holdfast with
//! options it accepts.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use holdfast_lab::netns;

const SEC: Duration = Duration::from_secs(1);

const CONF: &str = "vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 0.5
    virtual_ipaddress {
        10.77.0.100/24
    }
}
";

/// The next notification holdfast sends (within 10 s).
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_reloading_and_stopping_reach_systemd() {
    let mut lab = netns::Lab::new(1).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let path = lab.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(10 * SEC)).unwrap();
    let conf = lab.file("notify.conf", CONF);
    let env = format!("NOTIFY_SOCKET={}", path.display());
    let bin = env!("CARGO_BIN_EXE_holdfast");
    let pid = lab.dir().join("holdfast.pid");
    let mut hf = lab.spawn(
        1,
        "holdfast",
        &[
            "env",
            &env,
            bin,
            "run",
            "--dont-fork",
            "--log-console",
            "--no-syslog",
            "--pid",
            pid.to_str().unwrap(),
            "--use-file",
            conf.to_str().unwrap(),
        ],
    );
    let ready = next(&sock);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready
            .lines()
            .any(|l| l == "STATUS=1 VRRP instance(s), 0 virtual server(s)"),
        "{ready:?}"
    );
    hf.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    hf.signal("HUP");
    let reloading = next(&sock);
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    // systemd ≥ 253 wants the monotonic time of the reload with it.
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let again = next(&sock);
    assert!(again.lines().any(|l| l == "READY=1"), "{again:?}");
    hf.signal("TERM");
    let stopping = next(&sock);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(hf.wait_exit(10 * SEC), "holdfast did not stop");
}

#[test]
fn the_packaged_unit_runs_holdfast_with_options_it_accepts() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/holdfast.service"),
    )
    .unwrap();
    assert!(unit.lines().any(|l| l == "Type=notify"), "{unit}");
    assert!(
        unit.lines()
            .any(|l| l == "ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/sbin/holdfast"));
    // The same arguments against this build, with a configuration that exists, and
    // check-config's parser of the command line: `run --help`-level acceptance without
    // starting anything.
    let args: Vec<&str> = words.collect();
    assert_eq!(args.first(), Some(&"run"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{exec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The reload runs check-config first: the gate line, run as systemd would run it (with
    // `$$` as `$`) against this build, fails on a configuration that cannot run and passes on
    // one with errors keepalived corrects (the daemon judges those against the running one).
    let gate = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecReload="))
        .find(|l| l.contains("check-config"))
        .expect("an ExecReload running check-config");
    let dir = std::env::temp_dir().join(format!("holdfast-reload-gate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.conf");
    std::fs::write(&good, "global_defs {\n    router_id gate\n}\n").unwrap();
    let corrected = dir.join("corrected.conf");
    std::fs::write(
        &corrected,
        "vrrp_instance VI_1 {\n    virtual_router_id 51\n    advert_int 0.5\n    virtual_ipaddress {\n        10.0.0.1\n    }\n}\n",
    )
    .unwrap();
    let missing = dir.join("missing.conf");
    let run_gate = |conf: &std::path::Path| {
        let line = gate
            .replace("$$", "$")
            .replace("/usr/sbin/holdfast", env!("CARGO_BIN_EXE_holdfast"))
            .replace("/etc/keepalived/keepalived.conf", conf.to_str().unwrap());
        let words: Vec<&str> = line.splitn(3, ' ').collect();
        assert_eq!(&words[..2], ["/bin/sh", "-c"], "{line}");
        let script = words[2].trim_matches('\'');
        std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        !run_gate(&missing),
        "the reload gate let a configuration that cannot run through"
    );
    assert!(
        run_gate(&good),
        "the reload gate refused a good configuration"
    );
    assert!(
        run_gate(&corrected),
        "the reload gate refused a configuration keepalived corrects"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // The capabilities VRRP, addresses and the kernel planes need stay in the bounding set.
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap();
    for cap in ["CAP_NET_ADMIN", "CAP_NET_RAW"] {
        assert!(caps.split_whitespace().any(|c| c == cap), "{caps}");
    }
}
