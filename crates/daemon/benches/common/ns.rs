//! Network namespaces for the daemon benchmarks: one per daemon run, with veth pairs whose
//! two ends are both inside, deleted (with every process in it) when dropped.

#![allow(dead_code)] // the checks benchmark runs its daemons in a VM instead

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {}", args.join(" "));
}

/// A namespace with `links` veth pairs (eth0/peer0, eth1/peer1, …), deleted when dropped.
pub struct Ns(pub String);

impl Ns {
    pub fn new(tag: &str, links: usize) -> Ns {
        let name = format!("hfbench-{tag}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        for i in 0..links {
            let (a, b) = (format!("eth{i}"), format!("peer{i}"));
            ip(&[
                "-n", &name, "link", "add", &a, "type", "veth", "peer", "name", &b,
            ]);
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("10.{}.0.1/16", 100 + i),
                "dev",
                &a,
            ]);
            ip(&["-n", &name, "link", "set", &a, "up"]);
            ip(&["-n", &name, "link", "set", &b, "up"]);
        }
        Ns(name)
    }

    /// How many of the benchmark's VIPs (10.100-..., /32) are on the namespace's links.
    pub fn vips(&self) -> usize {
        let out = Command::new("ip")
            .args(["-n", &self.0, "-4", "-o", "addr", "show"])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("/32"))
            .count()
    }

    /// Starts `daemon` ("holdfast" or "keepalived") in the namespace on `conf`, its files in
    /// `dir`, logging to the console (here discarded), not to the machine's syslog.
    pub fn start(&self, daemon: &str, dir: &Path, conf: &Path) -> Child {
        let conf = conf.to_str().expect("a UTF-8 path");
        match daemon {
            "holdfast" => Command::new("ip")
                .args(["netns", "exec", &self.0, env!("CARGO_BIN_EXE_holdfast")])
                .args(["run", "-n", "-l", "-G", "-P", "--data-dir"])
                .arg(dir)
                .arg("-p")
                .arg(dir.join("holdfast.pid"))
                .args(["-f", conf])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("holdfast"),
            _ => Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.0,
                    "keepalived",
                    "-n",
                    "-l",
                    "-G",
                    "-P",
                    "-f",
                    conf,
                ])
                .arg(format!("--pid={}/ka.pid", dir.display()))
                .arg(format!("--vrrp_pid={}/ka-vrrp.pid", dir.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("keepalived (scripts/test installs it)"),
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.0])
            .output()
            .expect("ip netns pids");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
