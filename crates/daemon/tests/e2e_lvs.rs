//! Virtual servers end to end (as root, in namespaces the test creates): holdfast holds the
//! VIP, checks two web servers and balances TCP across them with its own proxy; failures
//! remove or inhibit a server with keepalived's log lines, and recovery brings it back.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::time::Duration;

use holdfast_lab::netns;

const SEC: Duration = Duration::from_secs(1);

/// A web server on node `n` answering every request with `body`.
fn web(lab: &mut netns::Lab, n: usize, body: &str) -> netns::Proc {
    let cfg = lab.file(
        &format!("web{n}.cfg"),
        &format!(
            "defaults\n    mode http\n    timeout client 5s\n    timeout connect 1s\n    timeout server 5s\nfrontend web\n    bind 0.0.0.0:80\n    http-request return status 200 content-type text/plain string {body}\n"
        ),
    );
    lab.spawn(
        n,
        &format!("web{n}"),
        &["haproxy", "-db", "-f", cfg.to_str().unwrap()],
    )
}

/// One HTTP request through the VIP from the client node; the body, or "" when refused.
fn get(lab: &netns::Lab) -> String {
    let out = lab.output(
        4,
        &[
            "timeout",
            "3",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/10.77.0.100/80 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
        ],
    );
    out.rsplit("\r\n\r\n")
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `holdfast status` against the daemon's control socket.
fn status(socket: &std::path::Path, args: &[&str]) -> String {
    let args: Vec<&str> = std::iter::once("status")
        .chain(args.iter().copied())
        .collect();
    netns::cli(env!("CARGO_BIN_EXE_holdfast"), socket, &args)
}

fn bodies(lab: &netns::Lab, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|_| get(lab)).collect();
    v.sort();
    v.dedup();
    v
}

const CONF: &str = "global_defs {
    enable_script_security
    script_user root
    control_socket CONTROL
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        10.77.0.100/24
    }
}
virtual_server 10.77.0.100 80 {
    delay_loop 0.5
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.77.0.2 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 0.5
            retry 1
            delay_before_retry 0.2
        }
    }
    real_server 10.77.0.3 80 {
        weight 1
        inhibit_on_failure
        HTTP_GET {
            url {
                path /
                status_code 200
                regex \"^web[0-9]$\"
                regex_options caseless
            }
            connect_timeout 0.5
            retry 1
            delay_before_retry 0.2
        }
    }
}
";

#[test]
fn the_proxy_balances_checked_servers_and_follows_their_failures() {
    let mut lab = netns::Lab::new(4).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let web2 = web(&mut lab, 2, "web2");
    let web3 = web(&mut lab, 3, "web3");
    let control = lab.dir().join("control.sock");
    let mut lb = lab.holdfast(1, &CONF.replace("CONTROL", control.to_str().unwrap()));
    // The instance and the checkers start side by side.
    lb.wait_for_all(
        &[
            "(VI_1) Entering MASTER STATE",
            "Activating healthchecker for service [10.77.0.3]:tcp:80 for VS [10.77.0.100]:tcp:80",
        ],
        10 * SEC,
    );
    // Round robin over both.
    assert_eq!(bodies(&lab, 4), ["web2", "web3"]);
    // holdfast status --lvs: ipvsadm's layout, both servers at weight 1, 2 connections each.
    // (The four connections leave ActiveConn as the proxy notices their close.)
    let want = "TCP  10.77.0.100:80 rr\n  -> 10.77.0.2:80                 Masq    1      0          0         \n  -> 10.77.0.3:80                 Masq    1      0          0         \n";
    let deadline = std::time::Instant::now() + 5 * SEC;
    let lvs = loop {
        let l = status(&control, &["--lvs"]);
        if l.contains(want) || std::time::Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(lvs.contains(want), "{lvs}");
    let json: serde_json::Value = serde_json::from_str(&status(&control, &["--json"])).unwrap();
    assert_eq!(json["instances"][0]["state"], "MASTER");
    let conns: u64 = json["services"][0]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(conns, 4);
    // The socket is for root only.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&control).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // web3 (HTTP_GET, inhibit_on_failure) dies: disabled, new connections go to web2.
    lb.mark();
    web3.signal("KILL");
    lb.wait_for(
        "HTTP_CHECK on service [10.77.0.3]:tcp:80 failed after 1 retries.",
        5 * SEC,
    );
    lb.wait_for(
        "Disabling service [10.77.0.3]:tcp:80 of VS [10.77.0.100]:tcp:80",
        5 * SEC,
    );
    assert_eq!(bodies(&lab, 4), ["web2"]);
    // A reload restarts the checkers but does not put the dead server back meanwhile.
    lb.mark();
    lb.signal("HUP");
    lb.wait_for("Reload finished", 5 * SEC);
    let lvs = status(&control, &["--lvs"]);
    assert!(
        lvs.contains(&format!("  -> {:<28} Masq    0 ", "10.77.0.3:80")),
        "{lvs}"
    );
    assert_eq!(bodies(&lab, 4), ["web2"]);
    assert_eq!(lb.count("Enabling service [10.77.0.3]"), 0, "{}", lb.log());

    // web2 (TCP_CHECK, no inhibit) dies too: removed; nothing answers.
    lb.mark();
    web2.signal("KILL");
    lb.wait_for(
        "Removing service [10.77.0.2]:tcp:80 from VS [10.77.0.100]:tcp:80",
        5 * SEC,
    );
    assert_eq!(get(&lab), "");

    // web3 comes back: enabled, and it serves again.
    lb.mark();
    let _web3 = web(&mut lab, 3, "web3");
    lb.wait_for(
        "Remote Web server [10.77.0.3]:tcp:80 succeed on service.",
        5 * SEC,
    );
    lb.wait_for(
        "Enabling service [10.77.0.3]:tcp:80 of VS [10.77.0.100]:tcp:80",
        5 * SEC,
    );
    assert_eq!(bodies(&lab, 3), ["web3"]);
    // web2 is removed (no inhibit): not listed; web3 is back at weight 1.
    let lvs = status(&control, &["--lvs"]);
    assert!(!lvs.contains("10.77.0.2:80"), "{lvs}");
    assert!(
        lvs.contains("  -> 10.77.0.3:80                 Masq    1 "),
        "{lvs}"
    );
}

const QUORUM_CONF: &str = "virtual_server 10.77.0.1 80 {
    delay_loop 0.5
    lb_algo wrr
    persistence_timeout 60
    quorum 2
    hysteresis 0
    sorry_server 10.77.0.4 80
    real_server 10.77.0.2 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 0.5
            retry 0
        }
    }
    real_server 10.77.0.3 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 0.5
            retry 0
        }
    }
}
";

/// One HTTP request to 10.77.0.1:80 from node 5.
fn get_from(lab: &netns::Lab, node: usize) -> String {
    let out = lab.output(
        node,
        &[
            "timeout",
            "3",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/10.77.0.1/80 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
        ],
    );
    out.rsplit("\r\n\r\n")
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

#[test]
fn persistence_quorum_and_the_sorry_server() {
    let mut lab = netns::Lab::new(5).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let web2 = web(&mut lab, 2, "web2");
    let _web3 = web(&mut lab, 3, "web3");
    let _sorry = web(&mut lab, 4, "sorry");
    // The service address is the lb node's own address: no VRRP needed.
    let mut lb = lab.holdfast(1, QUORUM_CONF);
    lb.wait_for(
        "Activating healthchecker for service [10.77.0.3]:tcp:80 for VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    // Persistence: one client keeps its server (once the web servers answer).
    let deadline = std::time::Instant::now() + 5 * SEC;
    let first = loop {
        let b = get_from(&lab, 5);
        if !b.is_empty() || std::time::Instant::now() > deadline {
            break b;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(first == "web2" || first == "web3", "{first:?}");
    for _ in 0..4 {
        assert_eq!(get_from(&lab, 5), first);
    }
    // Quorum 2 of weight: one server down loses it; the sorry server takes every client.
    web2.signal("KILL");
    lb.wait_for("Lost quorum 2-0=2 > 1 for VS [10.77.0.1]:tcp:80", 5 * SEC);
    lb.wait_for(
        "Adding sorry server [10.77.0.4]:tcp:80 to VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    assert_eq!(get_from(&lab, 5), "sorry");
    // web2 back: quorum regained, the sorry server leaves.
    let _web2 = web(&mut lab, 2, "web2");
    lb.wait_for(
        "Gained quorum 2+0=2 <= 2 for VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    lb.wait_for(
        "Removing sorry server [10.77.0.4]:tcp:80 from VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    let again = get_from(&lab, 5);
    assert!(again == "web2" || again == "web3", "{again:?}");
}

const CHECKERS_CONF: &str = "virtual_server 10.77.0.1 80 {
    delay_loop 0.5
    lb_algo rr
    alpha
    real_server 10.77.0.2 80 {
        SSL_GET {
            url {
                path /
                status_code 200
            }
            connect_port 443
            connect_timeout 1
            retry 0
        }
        PING_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 10.77.0.3 80 {
        UDP_CHECK {
            connect_port 5000
            payload 6869
            require_reply 6869
            connect_timeout 1
            retry 0
        }
    }
}
";

#[test]
fn ssl_ping_and_udp_checkers_against_real_servers() {
    let mut lab = netns::Lab::new(3).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    // A TLS web server with a self-signed certificate on n2, a UDP echo on n3.
    let pem = lab.dir().join("web.pem");
    let key = lab.dir().join("web.key");
    let crt = lab.dir().join("web.crt");
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=web",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let both = std::fs::read_to_string(&crt).unwrap() + &std::fs::read_to_string(&key).unwrap();
    std::fs::write(&pem, both).unwrap();
    let cfg = lab.file(
        "tls.cfg",
        &format!(
            "defaults\n    mode http\n    timeout client 5s\n    timeout connect 1s\n    timeout server 5s\nfrontend web\n    bind 0.0.0.0:443 ssl crt {}\n    http-request return status 200 content-type text/plain string tls\n",
            pem.display()
        ),
    );
    let _tls = lab.spawn(2, "tls", &["haproxy", "-db", "-f", cfg.to_str().unwrap()]);
    let echo = lab.spawn(
        3,
        "udp-echo",
        &["socat", "UDP4-RECVFROM:5000,fork", "EXEC:/bin/cat"],
    );
    let mut lb = lab.holdfast(1, CHECKERS_CONF);
    // alpha: every checker starts down and reports its first success, in any order.
    lb.wait_for_all(
        &[
            "Remote Web server [10.77.0.2]:tcp:80 succeed on service.",
            "ICMP connection to [10.77.0.2]:tcp:80 success.",
            "UDP connection to [10.77.0.3]:tcp:80 success.",
            "Adding service [10.77.0.3]:tcp:80 to VS [10.77.0.1]:tcp:80",
        ],
        10 * SEC,
    );
    // The UDP echo stops: port unreachable.
    lb.mark();
    echo.signal("KILL");
    lb.wait_for("UDP_CHECK on service [10.77.0.3]:tcp:80 failed.", 5 * SEC);
    lb.wait_for(
        "Removing service [10.77.0.3]:tcp:80 from VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    // n2's cable is cut: no echo reply, no TLS.
    lb.mark();
    lab.exec_switch(&["ip", "link", "set", &lab.cable(2), "down"]);
    lb.wait_for_all(
        &[
            "ICMP CHECK on service [10.77.0.2]:tcp:80 failed.",
            "SSL_CHECK on service [10.77.0.2]:tcp:80 failed.",
        ],
        5 * SEC,
    );
}

#[test]
fn file_check_takes_a_server_out_and_back_through_its_file() {
    let mut lab = netns::Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let flag = lab.file("maintenance", "0\n");
    let conf = format!(
        "track_file maint {{\n    file {}\n    weight 0\n}}\nvirtual_server 10.77.0.1 80 {{\n    delay_loop 1\n    lb_algo rr\n    real_server 10.77.0.2 80 {{\n        FILE_CHECK {{\n            track_file maint\n        }}\n    }}\n}}\n",
        flag.display()
    );
    let mut lb = lab.holdfast(1, &conf);
    lb.wait_for(
        "Activating healthchecker for service [10.77.0.2]:tcp:80 for VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    std::fs::write(&flag, "1\n").unwrap();
    lb.wait_for("FILE_CHECK on service [10.77.0.2]:tcp:80 failed.", 5 * SEC);
    lb.wait_for(
        "Removing service [10.77.0.2]:tcp:80 from VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    std::fs::write(&flag, "0\n").unwrap();
    lb.wait_for(
        "Adding service [10.77.0.2]:tcp:80 to VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
}

fn admin(socket: &std::path::Path, cmd: &str, rs: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args([cmd, "10.77.0.1:80", rs, "-s"])
        .arg(socket)
        .output()
        .unwrap()
}

#[test]
fn readmit_manual_holds_a_server_until_enable_and_disable_drains() {
    let mut lab = netns::Lab::new(5).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let web2 = web(&mut lab, 2, "web2");
    let _web3 = web(&mut lab, 3, "web3");
    let control = lab.dir().join("control.sock");
    let conf = format!(
        "global_defs {{\n    control_socket {}\n    metrics_listen 127.0.0.1:9653\n}}\nvirtual_server 10.77.0.1 80 {{\n    delay_loop 0.3\n    lb_algo rr\n    real_server 10.77.0.2 80 {{\n        readmit manual\n        TCP_CHECK {{\n            connect_timeout 0.5\n            retry 0\n        }}\n    }}\n    real_server 10.77.0.3 80 {{\n        TCP_CHECK {{\n            connect_timeout 0.5\n            retry 0\n        }}\n    }}\n}}\n",
        control.display()
    );
    let mut lb = lab.holdfast(1, &conf);
    lb.wait_for(
        "Activating healthchecker for service [10.77.0.3]:tcp:80",
        5 * SEC,
    );
    // Without -s, the client finds the socket through the configuration's control_socket.
    let by_file = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["status", "--lvs", "-f"])
        .arg(lab.dir().join("n1.conf"))
        .output()
        .unwrap();
    assert!(
        by_file.status.success()
            && String::from_utf8_lossy(&by_file.stdout).contains("10.77.0.3:80"),
        "status -f: {by_file:?}"
    );
    web2.signal("KILL");
    lb.wait_for(
        "Removing service [10.77.0.2]:tcp:80 from VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    // Back, but held out: a database that just restarted may be stale.
    let _web2 = web(&mut lab, 2, "web2");
    lb.wait_for(
        "[10.77.0.2]:tcp:80 of VS [10.77.0.1]:tcp:80 passes its checks but stays out until `holdfast enable` (readmit manual)",
        5 * SEC,
    );
    // Held out across check rounds, not just at one look: three more passing checks.
    wait_probes(&lab, "[10.77.0.1]:tcp:80", "10.77.0.2:80", 3);
    assert!(!status(&control, &["--lvs"]).contains("10.77.0.2:80"));
    assert_eq!(
        lb.count("Adding service [10.77.0.2]:tcp:80"),
        0,
        "{}",
        lb.log()
    );
    let out = admin(&control, "enable", "10.77.0.2:80");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lb.wait_for(
        "Adding service [10.77.0.2]:tcp:80 to VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    // Drain web3 on purpose: weight 0, every new request to web2.
    let out = admin(&control, "disable", "10.77.0.3:80");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lb.wait_for(
        "Disabling service [10.77.0.3]:tcp:80 of VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    let lvs = status(&control, &["--lvs"]);
    assert!(
        lvs.contains(&format!("  -> {:<28} Masq    0 ", "10.77.0.3:80")),
        "{lvs}"
    );
    for _ in 0..3 {
        assert_eq!(get_from(&lab, 5), "web2");
    }
    // A wrong name is a clear error, not a crash.
    let out = admin(&control, "enable", "10.77.0.9:80");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no real server 10.77.0.9:80"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn omega_runs_notify_down_and_quorum_down_at_shutdown() {
    let mut lab = netns::Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let _web2 = web(&mut lab, 2, "web2");
    let (down, quorum) = (lab.dir().join("down"), lab.dir().join("quorum"));
    let conf = format!(
        "global_defs {{\n    enable_script_security\n    script_user root\n}}\nvirtual_server 10.77.0.1 80 {{\n    delay_loop 0.5\n    omega\n    quorum_down \"/bin/sh -c 'echo q > {}'\"\n    real_server 10.77.0.2 80 {{\n        notify_down \"/bin/sh -c 'echo d > {}'\"\n        TCP_CHECK {{\n            connect_timeout 0.5\n        }}\n    }}\n}}\n",
        quorum.display(),
        down.display()
    );
    let mut lb = lab.holdfast(1, &conf);
    lb.wait_for(
        "Activating healthchecker for service [10.77.0.2]:tcp:80",
        5 * SEC,
    );
    assert!(!down.exists() && !quorum.exists());
    lb.signal("TERM");
    assert!(lb.wait_exit(10 * SEC));
    // The scripts ran before the daemon exited.
    assert_eq!(std::fs::read_to_string(&down).unwrap().trim(), "d");
    assert_eq!(std::fs::read_to_string(&quorum).unwrap().trim(), "q");
}

#[test]
fn smtp_and_dns_checkers_against_real_servers() {
    let mut lab = netns::Lab::new(3).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    // n2: a minimal SMTP server (greeting, HELO answered 250) behind socat.
    let smtp = lab.file(
        "smtp.sh",
        "#!/bin/bash\nprintf '220 mx ESMTP\\r\\n'\nread -r helo\nprintf '250 hello\\r\\n'\nread -r quit\nprintf '221 bye\\r\\n'\n",
    );
    let _ = std::process::Command::new("chmod")
        .arg("0755")
        .arg(&smtp)
        .status();
    let smtpd = lab.spawn(
        2,
        "smtp",
        &[
            "socat",
            "TCP-LISTEN:25,fork,reuseaddr",
            &format!("EXEC:{}", smtp.display()),
        ],
    );
    // n3: dnsmasq answering for lab.test.
    let _dns = lab.spawn(
        3,
        "dnsmasq",
        &[
            "dnsmasq",
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--port=53",
            "--listen-address=10.77.0.3",
            "--bind-interfaces",
            "--address=/lab.test/10.77.0.9",
            "--pid-file=",
        ],
    );
    let conf = "virtual_server 10.77.0.1 80 {
    delay_loop 0.3
    alpha
    real_server 10.77.0.2 80 {
        SMTP_CHECK {
            helo_name lb1
            connect_timeout 1
            retry 0
        }
    }
    real_server 10.77.0.3 80 {
        DNS_CHECK {
            type A
            name lab.test
            connect_timeout 1
            retry 0
        }
    }
}
";
    let mut lb = lab.holdfast(1, conf);
    lb.wait_for_all(
        &[
            "Remote SMTP server [10.77.0.2]:tcp:80 succeed on service.",
            "DNS_CHECK ([10.77.0.3]:tcp:80) succeeded.",
        ],
        10 * SEC,
    );
    lb.mark();
    smtpd.signal("KILL");
    lb.wait_for("SMTP_CHECK on service [10.77.0.2]:tcp:80 failed.", 5 * SEC);
}

#[test]
fn dash_p_runs_only_vrrp_and_dash_c_only_the_virtual_servers() {
    let mut lab = netns::Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let _web2 = web(&mut lab, 2, "web2");
    let control = lab.dir().join("control.sock");
    let conf = CONF.replace("CONTROL", control.to_str().unwrap());
    // -P: the instance runs, no virtual server is set up.
    let mut p = lab.holdfast_with(1, &conf, &["-P"]);
    p.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let json: serde_json::Value = serde_json::from_str(&status(&control, &["--json"])).unwrap();
    assert!(json["services"].as_array().unwrap().is_empty(), "{json}");
    assert_eq!(p.count("Activating healthchecker"), 0, "{}", p.log());
    p.signal("TERM");
    assert!(p.wait_exit(5 * SEC));
    // -C: the virtual server runs, no instance.
    let mut c = lab.holdfast_with(1, &conf, &["-C"]);
    c.wait_for(
        "Activating healthchecker for service [10.77.0.2]:tcp:80",
        5 * SEC,
    );
    let json: serde_json::Value = serde_json::from_str(&status(&control, &["--json"])).unwrap();
    assert_eq!(json["services"].as_array().unwrap().len(), 1, "{json}");
    assert!(json["instances"].as_array().unwrap().is_empty(), "{json}");
    assert_eq!(c.count("Entering"), 0, "{}", c.log());
}

/// How many milliseconds `client`, a shell command on node 3 that connects through the
/// virtual server and waits for the connection to end, ran.
fn held_ms(lab: &netns::Lab, client: &str) -> u64 {
    let script =
        format!("s=$(date +%s%N); {client}; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))");
    let out = lab.output(3, &["timeout", "20", "bash", "-c", &script]);
    out.trim()
        .lines()
        .last()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no time from the client: {out:?}"))
}

#[test]
fn lvs_timeouts_close_quiet_proxied_connections_as_ipvs_expires_them() {
    let mut lab = netns::Lab::new(3).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    // A server that holds every connection for 30 s and never speaks, even after a FIN.
    let _held = lab.spawn(
        2,
        "holder",
        &[
            "socat",
            "-t",
            "30",
            "TCP-LISTEN:80,fork,reuseaddr",
            "SYSTEM:sleep 30",
        ],
    );
    let conf = "global_defs {\n    lvs_timeouts tcp 3 tcpfin 1\n    dataplane proxy\n}\nvirtual_server 10.77.0.1 80 {\n    delay_loop 1\n    lb_algo rr\n    real_server 10.77.0.2 80 {\n        TCP_CHECK {\n            connect_timeout 1\n        }\n    }\n}\n";
    let mut lb = lab.holdfast(1, conf);
    lb.wait_for(
        "Activating healthchecker for service [10.77.0.2]:tcp:80 for VS [10.77.0.1]:tcp:80",
        5 * SEC,
    );
    // Both sides open and quiet: closed after `tcp` (IPVS's default would be 15 minutes).
    let idle = held_ms(
        &lab,
        "exec 3<>/dev/tcp/10.77.0.1/80 || exit 9; cat <&3 >/dev/null",
    );
    assert!(
        (2700..6000).contains(&idle),
        "idle connection held {idle} ms"
    );
    // The client finished (FIN) and the server says nothing: closed after `tcpfin`.
    let fin = held_ms(&lab, "socat -t 30 /dev/null TCP:10.77.0.1:80");
    assert!(
        (800..2500).contains(&fin),
        "half-closed connection held {fin} ms"
    );
}

/// A minimal SMTP server on node `n`'s address, port 2525, inside its namespace (a thread
/// moved there): it accepts every command and sends each whole session's transcript (what
/// the client wrote) down the channel.
fn smtp_sink(lab: &netns::Lab, n: usize) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = lab.ns(n);
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = std::net::TcpListener::bind(("0.0.0.0", 2525)).unwrap();
        ready_tx.send(()).unwrap();
        for c in l.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                let mut seen = String::new();
                let _ = w.write_all(b"220 sink ESMTP\r\n");
                let mut data = false;
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|k| k > 0) {
                    seen.push_str(&line);
                    let reply: &[u8] = if data {
                        if line == ".\r\n" {
                            data = false;
                            b"250 queued\r\n"
                        } else {
                            b""
                        }
                    } else if line.starts_with("DATA") {
                        data = true;
                        b"354 go on\r\n"
                    } else if line.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n");
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = w.write_all(reply);
                    line.clear();
                }
                let _ = tx.send(seen);
            });
        }
    });
    ready.recv_timeout(5 * SEC).expect("the SMTP sink listens");
    rx
}

/// The next session whose transcript contains `subject`, within `within`; header lines
/// folded by the sender (RFC 5322) are unfolded.
fn mail_with(rx: &std::sync::mpsc::Receiver<String>, subject: &str, within: Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    let mut others = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left).map(|m| m.replace("\r\n ", " ")) {
            Ok(m) if m.contains(subject) => return m,
            Ok(m) => others.push(m),
            Err(_) => panic!("no mail with {subject:?}; got {others:#?}"),
        }
    }
}

#[test]
fn smtp_alerts_mail_a_new_master_and_a_failed_real_server_as_keepalived() {
    let mut lab = netns::Lab::new(3).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let mail = smtp_sink(&lab, 3);
    let web = lab.spawn(
        2,
        "web",
        &["socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo up"],
    );
    // Seed 003's global_defs (its smtp server on node 3), an instance with smtp_alert, and a
    // real server that mails by default.
    let conf = "global_defs {\n   notification_email {\n   \tops@example.com\n   \tdba@example.com\n   }\n   notification_email_from mail@example.com\n   smtp_server 10.77.0.3 2525\n   smtp_connect_timeout 5\n   router_id LVS_1\n}\nvrrp_instance VI_1 {\n    state MASTER\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    smtp_alert\n    virtual_ipaddress {\n        10.77.0.100/24\n    }\n}\nvirtual_server 10.77.0.100 80 {\n    delay_loop 0.5\n    lb_algo rr\n    real_server 10.77.0.2 80 {\n        TCP_CHECK {\n            connect_timeout 0.5\n        }\n    }\n}\n";
    let mut lb = lab.holdfast(1, conf);
    lb.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    let m = mail_with(
        &mail,
        "Subject: [LVS_1] VRRP Instance VI_1 - Entering MASTER state\r\n",
        10 * SEC,
    );
    for want in [
        "MAIL FROM:<mail@example.com>",
        "RCPT TO:<ops@example.com>",
        "RCPT TO:<dba@example.com>",
        "X-Mailer: Keepalived\r\n",
        "=> VRRP Instance is now owning VRRP VIPs <=\r\n",
    ] {
        assert!(m.contains(want), "no {want:?} in\n{m}");
    }
    web.signal("KILL");
    lb.wait_for("TCP_CHECK on service [10.77.0.2]:tcp:80 failed", 5 * SEC);
    let m = mail_with(
        &mail,
        "Subject: [LVS_1] Realserver [10.77.0.2]:tcp:80 of virtual server [10.77.0.100]:tcp:80 - DOWN\r\n",
        10 * SEC,
    );
    assert!(m.contains("=> TCP CHECK failed on service <=\r\n"), "{m}");
}

/// Waits (up to 10 s) until the first checker of real server `rs` in `vs` has run `more`
/// probes from now, counted on the metrics endpoint at 127.0.0.1:9653 of node 1.
fn wait_probes(lab: &netns::Lab, vs: &str, rs: &str, more: u64) {
    let prefix = format!(
        r#"holdfast_checker_probes_total{{virtual_server="{vs}",real_server="{rs}",checker="TCP_CHECK",index="0"}} "#
    );
    let probes = || -> u64 {
        lab.http_get(1, "127.0.0.1:9653")
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let from = probes();
    let deadline = std::time::Instant::now() + 10 * SEC;
    while probes() < from + more {
        assert!(
            std::time::Instant::now() < deadline,
            "no {more} more checks of {rs} in {vs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn log_all_failures_logs_every_failed_attempt_while_the_checker_is_up() {
    let mut lab = netns::Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    // Nothing listens on node 2: every attempt fails. Two retries: three failed attempts
    // while the checker is up, then it goes down and the attempts are no longer logged.
    let conf = "global_defs {\n    checker_log_all_failures\n    metrics_listen 127.0.0.1:9653\n}\nvirtual_server 10.77.0.1 80 {\n    delay_loop 0.3\n    lb_algo rr\n    real_server 10.77.0.2 80 {\n        TCP_CHECK {\n            connect_timeout 0.5\n            retry 2\n            delay_before_retry 0.1\n        }\n    }\n    real_server 10.77.0.2 81 {\n        TCP_CHECK {\n            connect_timeout 0.5\n            retry 2\n            delay_before_retry 0.1\n            log_all_failures off\n        }\n    }\n}\n";
    let mut lb = lab.holdfast(1, conf);
    // The two checkers run side by side.
    lb.wait_for_all(
        &[
            "TCP_CHECK on service [10.77.0.2]:tcp:80 failed after 2 retries.",
            "TCP_CHECK on service [10.77.0.2]:tcp:81 failed after 2 retries.",
            "Removing service [10.77.0.2]:tcp:81 from VS [10.77.0.1]:tcp:80",
        ],
        5 * SEC,
    );
    // Three more checks of each with both checkers down, whose failed attempts must not be
    // logged.
    wait_probes(&lab, "[10.77.0.1]:tcp:80", "10.77.0.2:80", 3);
    wait_probes(&lab, "[10.77.0.1]:tcp:80", "10.77.0.2:81", 3);
    assert_eq!(lb.count("TCP connection to [10.77.0.2]:tcp:80 failed."), 3);
    assert_eq!(lb.count("TCP connection to [10.77.0.2]:tcp:81 failed."), 0);
}

#[test]
fn notify_fifo_carries_keepalived_s_lines_for_instances_and_real_servers() {
    use std::io::BufRead;
    let mut lab = netns::Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let dir = lab.dir().to_path_buf();
    let (all, lvs) = (dir.join("notify.fifo"), dir.join("lvs.fifo"));
    let web = lab.spawn(
        2,
        "web",
        &["socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo up"],
    );
    let conf = format!(
        "global_defs {{\n    notify_fifo {}\n    lvs_notify_fifo {}\n}}\nvrrp_instance VI_1 {{\n    state MASTER\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    virtual_ipaddress {{\n        10.77.0.100/24\n    }}\n}}\nvirtual_server 10.77.0.100 80 {{\n    delay_loop 0.5\n    lb_algo rr\n    real_server 10.77.0.2 80 {{\n        TCP_CHECK {{\n            connect_timeout 0.5\n        }}\n    }}\n}}\n",
        all.display(),
        lvs.display()
    );
    let mut lb = lab.holdfast(1, &conf);
    lb.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    // holdfast made the FIFOs before starting anything; a reader attaches now.
    let reader = |path: std::path::PathBuf| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let f = std::fs::File::open(path).expect("the FIFO exists");
            for l in std::io::BufReader::new(f).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        rx
    };
    let (all_rx, lvs_rx) = (reader(all.clone()), reader(lvs.clone()));
    let next = |rx: &std::sync::mpsc::Receiver<String>, want: &str| {
        let deadline = std::time::Instant::now() + 10 * SEC;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l == want => return seen,
                Ok(l) => seen.push(l),
                Err(_) => panic!("no line {want:?}; saw {seen:?}"),
            }
        }
    };
    // The FIFO kept what was written before anyone read: the instance's way to MASTER.
    next(&all_rx, "INSTANCE \"VI_1\" MASTER 150");
    web.signal("KILL");
    let rs = "RS [10.77.0.2]:tcp:80 [10.77.0.100]:tcp:80 DOWN";
    next(&all_rx, rs);
    // The LVS FIFO has the real server's line and no VRRP line before it.
    let before = next(&lvs_rx, rs);
    assert!(
        before.iter().all(|l| !l.starts_with("INSTANCE")),
        "{before:?}"
    );
    lb.signal("TERM");
    lb.wait_for("Stopped", 10 * SEC);
    assert!(
        !all.exists() && !lvs.exists(),
        "the FIFOs holdfast made are removed at stop"
    );
}

#[test]
fn bind_if_and_fwmark_reach_the_checkers_sockets() {
    let mut lab = netns::Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let _web = lab.spawn(
        2,
        "web",
        &["socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo up"],
    );
    // The director refuses its own packets marked 7.
    lab.exec(1, &["nft", "add", "table", "inet", "marks"]);
    lab.exec(
        1,
        &[
            "nft",
            "add",
            "chain",
            "inet",
            "marks",
            "out",
            "{ type filter hook output priority 0 ; }",
        ],
    );
    lab.exec(
        1,
        &[
            "nft", "add", "rule", "inet", "marks", "out", "meta", "mark", "7", "reject",
        ],
    );
    let check = |port: u16, opts: &str| {
        format!(
            "    real_server 10.77.0.2 {port} {{\n        TCP_CHECK {{\n            connect_port 80\n            connect_timeout 0.5\n{opts}        }}\n    }}\n"
        )
    };
    let conf = format!(
        "virtual_server 10.77.0.1 80 {{\n    delay_loop 0.5\n    lb_algo rr\n{}{}{}}}\n",
        check(80, "            fwmark 7\n"),
        check(81, "            bind_if lo\n"),
        check(82, "            bind_if eth0\n            fwmark 8\n"),
    );
    let mut lb = lab.holdfast(1, &conf);
    // Marked 7: refused by the rule; bound to lo: no way to the server; eth0 and mark 8: up.
    lb.wait_for("TCP_CHECK on service [10.77.0.2]:tcp:80 failed", 5 * SEC);
    lb.wait_for("TCP_CHECK on service [10.77.0.2]:tcp:81 failed", 5 * SEC);
    assert_eq!(lb.count("[10.77.0.2]:tcp:82 failed"), 0, "{}", lb.log());
}

#[test]
fn a_virtual_server_group_balances_every_address_and_follows_its_servers() {
    let mut lab = netns::Lab::new(3).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let web = web(&mut lab, 2, "grouped");
    lab.exec(1, &["ip", "addr", "add", "10.77.0.101/24", "dev", "eth0"]);
    let control = lab.dir().join("control.sock");
    let conf = format!(
        "global_defs {{\n    control_socket {}\n}}\nvirtual_server_group WEB {{\n    10.77.0.100-101 80\n}}\nvirtual_server group WEB {{\n    delay_loop 0.5\n    lb_algo rr\n    protocol TCP\n    real_server 10.77.0.2 80 {{\n        TCP_CHECK {{\n            connect_timeout 0.5\n        }}\n    }}\n}}\n",
        control.display()
    );
    lab.exec(1, &["ip", "addr", "add", "10.77.0.100/24", "dev", "eth0"]);
    let get_from = |lab: &netns::Lab, vip: &str| {
        let script = format!(
            "exec 3<>/dev/tcp/{vip}/80 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
        );
        let out = lab.output(3, &["timeout", "3", "bash", "-c", &script]);
        out.rsplit("\r\n\r\n")
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    };
    // The web server (HAProxy) answers before holdfast starts checking it.
    let deadline = std::time::Instant::now() + 5 * SEC;
    while get_from(&lab, "10.77.0.2") != "grouped" {
        assert!(
            std::time::Instant::now() < deadline,
            "the web server never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut lb = lab.holdfast(1, &conf);
    lb.wait_for(
        "Activating healthchecker for service [10.77.0.2]:tcp:80 for VS [WEB]:0",
        5 * SEC,
    );
    assert_eq!(get_from(&lab, "10.77.0.100"), "grouped", "{}", lb.log());
    assert_eq!(get_from(&lab, "10.77.0.101"), "grouped", "{}", lb.log());
    let lvs = status(&control, &["--lvs"]);
    for vip in ["TCP  10.77.0.100:80 rr", "TCP  10.77.0.101:80 rr"] {
        assert!(lvs.contains(vip), "{lvs}");
    }
    // One checker for both services: its server leaves both.
    web.signal("KILL");
    lb.wait_for(
        "Removing service [10.77.0.2]:tcp:80 from VS [WEB]:0",
        5 * SEC,
    );
    let deadline = std::time::Instant::now() + 5 * SEC;
    while status(&control, &["--lvs"]).contains("-> 10.77.0.2:80") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            status(&control, &["--lvs"])
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        lb.count("Activating healthchecker for service [10.77.0.2]:tcp:80"),
        1
    );
}

/// A node that loses the VIP closes the connections its proxy still carries on it: their
/// clients' packets now reach the new MASTER, and each orphan would otherwise hold a server
/// connection and two descriptors until it timed out.
#[test]
fn a_node_that_loses_the_vip_closes_the_connections_it_carried() {
    let mut lab = netns::Lab::new(4).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let _holder = lab.spawn(
        4,
        "holder",
        &["socat", "TCP-LISTEN:8080,fork,reuseaddr", "SYSTEM:sleep 60"],
    );
    let conf = |prio: u8| {
        format!(
            "global_defs {{\n    dataplane proxy\n}}\n{}virtual_server 10.77.0.100 80 {{\n    delay_loop 1\n    lb_algo rr\n    protocol TCP\n    real_server 10.77.0.4 8080 {{\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n}}\n",
            netns::conf(prio, "", "").replace("global_defs {\n\n}\n", "")
        )
    };
    let mut n1 = lab.holdfast(1, &conf(150));
    n1.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    assert!(lab.wait_has(1, "10.77.0.100/24", true, 5 * SEC));
    let carried = |lab: &netns::Lab| {
        lab.output(
            1,
            &[
                "ss",
                "-Htn",
                "state",
                "established",
                "dst",
                "10.77.0.4:8080",
            ],
        )
        .lines()
        .count()
    };
    let _client = lab.spawn(
        3,
        "client",
        &[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/10.77.0.100/80 && echo connected >&2 && sleep 30",
        ],
    );
    let deadline = std::time::Instant::now() + 5 * SEC;
    while carried(&lab) != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the connection was never carried"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A higher priority takes the VIP: n1's carried connection is closed at once, not after
    // the 15 idle minutes.
    n1.mark();
    let mut n2 = lab.holdfast(2, &conf(200));
    n2.wait_for("(VI_1) Entering MASTER STATE", 10 * SEC);
    n1.wait_for("(VI_1) Entering BACKUP STATE", 5 * SEC);
    let deadline = std::time::Instant::now() + 5 * SEC;
    while carried(&lab) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "n1 still carries the orphaned connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
