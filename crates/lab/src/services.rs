//! Services the lab runs inside its namespaces: MariaDB, HAProxy, and the configurations of
//! the load-balancer nodes (holdfast or keepalived).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::netns::{Lab, Proc};

/// Debian packages the lab needs.
pub const PACKAGES: &[&str] = &[
    "mariadb-server",
    "mariadb-client",
    "haproxy",
    "keepalived",
    "iproute2",
];

/// Installs the missing Debian packages the failover lab needs without starting their
/// services.
pub fn install_packages() -> Result<(), String> {
    install(PACKAGES)
}

/// Installs those of `packages` that are missing, without starting their services.
pub fn install(packages: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("lab: installing {}", missing.join(" "));
    // Keep Debian from starting mariadb/haproxy/keepalived in the root namespace.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let had_policy = policy.exists();
    if !had_policy {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n").map_err(|e| e.to_string())?;
        let _ = Command::new("chmod")
            .args(["+x", "/usr/sbin/policy-rc.d"])
            .status();
    }
    let ok = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        && Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !had_policy {
        let _ = std::fs::remove_file(policy);
    }
    if ok {
        Ok(())
    } else {
        Err(format!("apt-get install {} failed", missing.join(" ")))
    }
}

/// A MariaDB server in node `n`, with database `lab`, table `t` and user `lab`/`lab`.
pub fn mariadb(lab: &mut Lab, n: usize) -> Result<Proc, String> {
    mariadb_with(lab, n, &[])
}

/// A MariaDB server in node `n` with extra server options (for example `--log-bin` and
/// `--server-id=N` for replication).
pub fn mariadb_with(lab: &mut Lab, n: usize, extra: &[&str]) -> Result<Proc, String> {
    let dir = lab.dir().join(format!("mariadb-{n}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let d = dir.display().to_string();
    // Its own temporary directory: servers bootstrapping side by side in the shared /tmp
    // have been seen to lose each other's temporary tables.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let out = Command::new("mariadb-install-db")
        .env("TMPDIR", &tmp)
        .args([
            "--no-defaults",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={d}/data"))
        .output()
        .map_err(|e| format!("mariadb-install-db: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(dir.join("extra-args"), extra.join("\n")).map_err(|e| e.to_string())?;
    let p = mariadb_start(lab, n)?;
    sql(
        &mariadb_socket(lab, n),
        "CREATE DATABASE lab; CREATE TABLE lab.t (id INT PRIMARY KEY, at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3)); CREATE USER 'lab'@'%' IDENTIFIED BY 'lab'; GRANT ALL ON lab.* TO 'lab'@'%';",
    )?;
    Ok(p)
}

/// Starts (or restarts) node `n`'s MariaDB on its existing data directory and waits until it
/// answers.
pub fn mariadb_start(lab: &mut Lab, n: usize) -> Result<Proc, String> {
    let d = lab.dir().join(format!("mariadb-{n}")).display().to_string();
    let sock = format!("{d}/sock");
    let args = [
        "mariadbd".to_string(),
        "--no-defaults".into(),
        "--user=root".into(),
        format!("--datadir={d}/data"),
        format!("--socket={sock}"),
        format!("--pid-file={d}/pid"),
        format!("--log-error={d}/error.log"),
        format!("--tmpdir={d}/tmp"),
        "--port=3306".into(),
        "--bind-address=0.0.0.0".into(),
        "--skip-name-resolve".into(),
        "--innodb-buffer-pool-size=32M".into(),
        "--innodb-flush-log-at-trx-commit=1".into(),
        "--max-connections=500".into(),
    ];
    let extra = std::fs::read_to_string(format!("{d}/extra-args")).unwrap_or_default();
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    argv.extend(extra.lines().filter(|l| !l.is_empty()));
    let p = lab.spawn(n, &format!("mariadb@{n}"), &argv);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = Command::new("mariadb-admin")
            .args(["--no-defaults", &format!("--socket={sock}"), "ping"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(p);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "MariaDB in node {n} did not start: see {d}/error.log"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes node `replica`'s MariaDB replicate node `primary`'s (both started with `--log-bin`
/// and distinct `--server-id`s), from the primary's current position.
pub fn replicate(
    lab: &Lab,
    primary: usize,
    replica: usize,
    primary_ip: &str,
) -> Result<(), String> {
    let (p, r) = (mariadb_socket(lab, primary), mariadb_socket(lab, replica));
    sql(
        &p,
        "CREATE USER 'repl'@'%' IDENTIFIED BY 'repl'; GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';",
    )?;
    let pos = sql(&p, "SELECT @@GLOBAL.gtid_binlog_pos")?;
    sql(
        &r,
        &format!(
            "SET GLOBAL gtid_slave_pos = '{}'; CHANGE MASTER TO MASTER_HOST='{primary_ip}', MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos; START SLAVE;",
            pos.trim()
        ),
    )?;
    Ok(())
}

/// Runs SQL over the server's socket; returns its tab-separated output.
pub fn sql(sock: &str, q: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            &format!("--socket={sock}"),
            "-N",
            "-B",
            "-e",
            q,
        ])
        .output()
        .map_err(|e| format!("mariadb client: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "SQL failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// The socket path of node `n`'s MariaDB.
pub fn mariadb_socket(lab: &Lab, n: usize) -> String {
    lab.dir()
        .join(format!("mariadb-{n}/sock"))
        .display()
        .to_string()
}

/// Writes the lab's proxy check script (root-owned, mode 0755, so script security accepts it).
pub fn check_script(lab: &Lab) -> String {
    let p = lab.file("chk_proxy.sh", "#!/bin/bash\n# Exit 0 when the local proxy accepts a TCP connection.\nexec 3<>/dev/tcp/127.0.0.1/3306\n");
    let _ = Command::new("chmod").args(["0755"]).arg(&p).status();
    p.display().to_string()
}

/// HAProxy in node `n` forwarding TCP 3306 to `backend`.
pub fn haproxy(lab: &mut Lab, n: usize, backend: &str) -> Proc {
    let cfg = format!(
        "global\n    maxconn 2000\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\nlisten mysql\n    bind 0.0.0.0:3306\n    server db {backend}:3306 check inter 500ms\n"
    );
    let path = lab.file(&format!("haproxy-{n}.cfg"), &cfg);
    let p = path.display().to_string();
    lab.spawn(n, &format!("haproxy@{n}"), &["haproxy", "-db", "-f", &p])
}

/// What the load-balancer nodes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    /// holdfast with native tracking of the local proxy.
    Holdfast,
    /// Debian's keepalived 2.2.7 with a script check, as the seeds do.
    Keepalived,
}

/// The lab's keepalived.conf, modelled on seed 004: one VIP, PASS authentication, a tracker on
/// the local proxy weighted to move the VIP when the proxy dies. With `own_proxy` (holdfast
/// only) there is no separate proxy to track: holdfast's own proxy serves
/// `virtual_server VIP 3306` in front of `backend`, in the same process as VRRP.
pub fn lb_conf(
    daemon: Daemon,
    priority: u8,
    vip: &str,
    advert: Duration,
    check_script: &str,
    own_proxy: Option<&str>,
) -> String {
    // Below a second, VRRPv3 (centiseconds); VRRPv2 with PASS otherwise, as the seeds.
    let fast = advert < Duration::from_secs(1);
    let (version, advert) = if fast {
        ("    version 3\n", format!("{}", advert.as_secs_f64()))
    } else {
        ("", format!("{}", advert.as_secs()))
    };
    let auth = if fast {
        ""
    } else {
        "    authentication {\n        auth_type PASS\n        auth_pass 1234\n    }\n"
    };
    let check: &str = match daemon {
        // holdfast: native TCP check, no fork, 50 ms interval.
        Daemon::Holdfast => {
            "vrrp_script chk_proxy {\n    TCP_CHECK {\n        connect_ip 127.0.0.1\n        connect_port 3306\n        connect_timeout 0.1\n    }\n    interval 0.05\n    fall 2\n    rise 2\n    weight -60\n}\n"
        }
        // keepalived: a script check as the seeds have (a bash /dev/tcp probe), 1 s interval.
        Daemon::Keepalived => &format!(
            "vrrp_script chk_proxy {{\n    script \"{check_script}\"\n    interval 1\n    timeout 1\n    fall 2\n    rise 2\n    weight -60\n}}\n"
        ),
    };
    // holdfast: a backup hearing the degraded master takes over after Skew_Time.
    let preempt = match daemon {
        Daemon::Holdfast => "    preempt_fast\n",
        Daemon::Keepalived => "",
    };
    if let (Daemon::Holdfast, Some(backend)) = (daemon, own_proxy) {
        let addr = vip.split('/').next().unwrap_or(vip);
        return format!(
            "global_defs {{\n    router_id lb{priority}\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    advert_int {advert}\n{version}{preempt}{auth}    virtual_ipaddress {{\n        {vip}\n    }}\n}}\nvirtual_server {addr} 3306 {{\n    delay_loop 1\n    lb_algo wlc\n    real_server {backend} 3306 {{\n        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}\n}}\n"
        );
    }
    format!(
        "global_defs {{\n    router_id lb{priority}\n    enable_script_security\n    script_user root\n}}\n{check}vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    advert_int {advert}\n{version}{preempt}{auth}    virtual_ipaddress {{\n        {vip}\n    }}\n    track_script {{\n        chk_proxy\n    }}\n}}\n"
    )
}
