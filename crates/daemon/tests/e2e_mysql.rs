//! MYSQL_CHECK end to end against real MariaDB servers in namespaces: role gates follow a
//! promotion without restarting anything, a hanging server times out, a wrong password
//! fails with a clear line, and checks keep one session per server.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::time::Duration;

use holdfast_lab::{netns, services};

const SEC: Duration = Duration::from_secs(1);

fn conf() -> String {
    let rs = |ip: &str| {
        format!(
            "    real_server {ip} 3306 {{\n        MYSQL_CHECK {{\n            user lab\n            password lab\n            require_writable\n            connect_timeout 1\n            retry 0\n        }}\n    }}\n"
        )
    };
    format!(
        "vrrp_script chk_db {{\n    MYSQL_CHECK {{\n        connect_ip 10.77.0.2\n        user lab\n        password wrong\n        connect_timeout 1\n    }}\n    interval 0.5\n}}\nvrrp_instance VI_1 {{\n    state MASTER\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    advert_int 1\n    virtual_ipaddress {{\n        10.77.0.100/24\n    }}\n    track_script {{\n        chk_db\n    }}\n}}\nvirtual_server 10.77.0.1 3306 {{\n    delay_loop 0.3\n    lb_algo fo\n{}{}}}\n",
        rs("10.77.0.2"),
        rs("10.77.0.3")
    )
}

fn sessions(lab: &netns::Lab, n: usize) -> usize {
    services::sql(
        &services::mariadb_socket(lab, n),
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'lab'",
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn role_gates_follow_a_promotion_and_failures_are_clear() {
    let mut lab = netns::Lab::new(3).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let _db2 = services::mariadb(&mut lab, 2).unwrap();
    let db3 = services::mariadb(&mut lab, 3).unwrap();
    let (sock2, sock3) = (
        services::mariadb_socket(&lab, 2),
        services::mariadb_socket(&lab, 3),
    );
    services::sql(&sock3, "SET GLOBAL read_only = 1").unwrap();
    let mut lb = lab.holdfast(1, &conf());
    // The read-only server is taken out at its first check, with the reason; a wrong
    // password fails the native tracker with MariaDB's own words (the checker and the
    // tracker run side by side).
    lb.wait_for_all(
        &[
            "MYSQL_CHECK on service [10.77.0.3]:tcp:3306 failed (not writable (read_only=1, innodb_read_only=0)).",
            "Disabling service [10.77.0.3]:tcp:3306 of VS [10.77.0.1]:tcp:3306",
            "VRRP_Script(chk_db) failed (MySQL: ",
            "Access denied for user 'lab'",
        ],
        10 * SEC,
    );

    // Promotion by hand: db2 read-only, db3 writable. Writes follow within a check interval.
    lb.mark();
    services::sql(&sock2, "SET GLOBAL read_only = 1").unwrap();
    services::sql(&sock3, "SET GLOBAL read_only = 0").unwrap();
    lb.wait_for_all(
        &[
            "Disabling service [10.77.0.2]:tcp:3306 of VS [10.77.0.1]:tcp:3306",
            "MYSQL_CHECK on service [10.77.0.3]:tcp:3306 succeeded.",
            "Enabling service [10.77.0.3]:tcp:3306 of VS [10.77.0.1]:tcp:3306",
        ],
        5 * SEC,
    );
    // One kept session per checker, not one per check.
    assert_eq!(sessions(&lab, 3), 1, "sessions on db3");

    // db3 hangs (SIGSTOP): the check times out and takes it out; SIGCONT brings it back.
    lb.mark();
    db3.signal("STOP");
    lb.wait_for(
        "MYSQL_CHECK on service [10.77.0.3]:tcp:3306 failed (timeout after 1.000 s).",
        5 * SEC,
    );
    lb.wait_for(
        "Removing service [10.77.0.3]:tcp:3306 from VS [10.77.0.1]:tcp:3306",
        5 * SEC,
    );
    lb.mark();
    db3.signal("CONT");
    lb.wait_for(
        "Adding service [10.77.0.3]:tcp:3306 to VS [10.77.0.1]:tcp:3306",
        10 * SEC,
    );
}

#[test]
fn a_lagging_replica_is_drained_and_readmitted_after_rise_checks() {
    let mut lab = netns::Lab::new(3).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let _p =
        services::mariadb_with(&mut lab, 2, &["--log-bin=mysql-bin", "--server-id=2"]).unwrap();
    let _r =
        services::mariadb_with(&mut lab, 3, &["--log-bin=mysql-bin", "--server-id=3"]).unwrap();
    services::replicate(&lab, 2, 3, "10.77.0.2").unwrap();
    let replica = services::mariadb_socket(&lab, 3);
    // The monitoring user may read replica status.
    services::sql(&replica, "GRANT SLAVE MONITOR ON *.* TO 'lab'@'%'").unwrap();
    services::sql(&replica, "SET GLOBAL read_only = 1").unwrap();
    let conf = "virtual_server 10.77.0.1 3307 {
    delay_loop 0.3
    lb_algo wlc
    real_server 10.77.0.3 3306 {
        MYSQL_CHECK {
            user lab
            password lab
            require_read_only
            max_replication_lag 5
            rise 3
            connect_timeout 1
            retry 0
        }
    }
}
";
    let mut lb = lab.holdfast(1, conf);
    lb.wait_for(
        "Activating healthchecker for service [10.77.0.3]:tcp:3306 for VS [10.77.0.1]:tcp:3307",
        5 * SEC,
    );
    // The replica's SQL thread stops: it is drained, with the reason.
    services::sql(&replica, "STOP SLAVE SQL_THREAD").unwrap();
    lb.wait_for(
        "MYSQL_CHECK on service [10.77.0.3]:tcp:3306 failed (replication not running (IO Yes, SQL No)).",
        5 * SEC,
    );
    // Drained (weight 0, connections kept), not removed: its session is healthy.
    lb.wait_for(
        "Disabling service [10.77.0.3]:tcp:3306 of VS [10.77.0.1]:tcp:3307",
        5 * SEC,
    );
    // Caught up again: readmitted only after 3 passing checks (0.3 s apart).
    services::sql(&replica, "START SLAVE SQL_THREAD").unwrap();
    let started = std::time::Instant::now();
    lb.wait_for(
        "MYSQL_CHECK on service [10.77.0.3]:tcp:3306 succeeded.",
        10 * SEC,
    );
    let back = lb.wait_for(
        "Enabling service [10.77.0.3]:tcp:3306 of VS [10.77.0.1]:tcp:3307",
        5 * SEC,
    );
    assert!(
        back.saturating_duration_since(started) >= Duration::from_millis(550),
        "readmitted after {:?}, before 3 checks",
        back.saturating_duration_since(started)
    );
}

/// A CA and a server certificate for `ip`, in `dir`: (ca.pem, server.pem, server.key).
fn certs(
    dir: &std::path::Path,
    ip: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |n: &str| dir.join(n);
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (ca, cakey, crt, key, csr, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("server.pem"),
        p("server.key"),
        p("server.csr"),
        p("ext.cnf"),
    );
    sh(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=lab-ca",
        "-keyout",
        &s(&cakey),
        "-out",
        &s(&ca),
    ]);
    sh(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=db",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    std::fs::write(&ext, format!("subjectAltName=IP:{ip}\n")).unwrap();
    sh(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&cakey),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&crt),
    ]);
    (ca, crt, key)
}

#[test]
fn mysql_check_over_tls_verifies_the_server_against_tls_ca() {
    let mut lab = netns::Lab::new(2).with_bin(env!("CARGO_BIN_EXE_holdfast").into());
    let (ca, crt, key) = certs(lab.dir(), "10.77.0.2");
    let (c, k) = (
        format!("--ssl-cert={}", crt.display()),
        format!("--ssl-key={}", key.display()),
    );
    let _db = services::mariadb_with(&mut lab, 2, &[&c, &k]).unwrap();
    services::sql(
        &services::mariadb_socket(&lab, 2),
        "ALTER USER 'lab'@'%' REQUIRE SSL",
    )
    .unwrap();
    let rs = |port: u16, tls: &str, alpha: &str| {
        format!(
            "virtual_server 10.77.0.1 {port} {{\n    delay_loop 0.3\n{alpha}    real_server 10.77.0.2 3306 {{\n        MYSQL_CHECK {{\n            user lab\n            password lab\n{tls}            connect_timeout 2\n            retry 0\n        }}\n    }}\n}}\n"
        )
    };
    let conf = rs(
        3306,
        &format!("            tls_ca {}\n", ca.display()),
        "    alpha\n",
    ) + &rs(3307, "", "");
    let mut lb = lab.holdfast(1, &conf);
    // Verified TLS: up. Without TLS the server refuses the user (REQUIRE SSL): stays down.
    // The two virtual servers' checkers run side by side.
    lb.wait_for_all(
        &[
            "MYSQL_CHECK on service [10.77.0.2]:tcp:3306 succeeded.",
            "Adding service [10.77.0.2]:tcp:3306 to VS [10.77.0.1]:tcp:3306",
            "Removing service [10.77.0.2]:tcp:3306 from VS [10.77.0.1]:tcp:3307",
        ],
        10 * SEC,
    );
    assert!(
        lb.log().contains("Access denied for user 'lab'"),
        "{}",
        lb.log()
    );
}
