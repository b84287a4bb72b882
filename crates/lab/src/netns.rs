//! Network namespaces the lab (or a test) creates: a bridge in a "switch" namespace and named
//! nodes, each with `eth0` on `SUBNET.HOST/24` (addresses exist only inside these namespaces).
//! Processes started here are killed by PID and the namespaces deleted on drop. Names carry
//! the process id and a counter, so parallel and leftover runs never collide.
//!
//! A harness failure is a test or lab failure, so setup errors panic with the command that
//! failed.

#![allow(clippy::expect_used, clippy::unwrap_used)] // harness: a failed setup must stop the run

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces of one test.
pub struct Lab {
    /// Name prefix.
    pub prefix: String,
    /// Number of nodes.
    pub nodes: usize,
    dir: PathBuf,
    procs: Vec<u32>,
    names: Vec<String>,
    bin: PathBuf,
}

impl Lab {
    /// Creates the switch and nodes `n1..nN` on 10.77.0.N/24. Panics unless run as root.
    pub fn new(nodes: usize) -> Lab {
        let hosts: Vec<(String, u8)> = (1..=nodes).map(|n| (format!("n{n}"), n as u8)).collect();
        Lab::with_hosts("10.77.0", &hosts)
    }

    /// Creates the switch and one node per `(name, host)` on `subnet.host/24`.
    pub fn with_hosts(subnet: &str, hosts: &[(String, u8)]) -> Lab {
        assert!(
            is_root(),
            "network namespaces need root (scripts/test and the lab run as root)"
        );
        let prefix = format!(
            "hf{}x{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).unwrap();
        let names = hosts.iter().map(|(n, _)| n.clone()).collect();
        let lab = Lab {
            prefix: prefix.clone(),
            nodes: hosts.len(),
            dir,
            procs: Vec::new(),
            names,
            bin: PathBuf::from("holdfast"),
        };
        let sw = lab.ns(0);
        sh(&["ip", "netns", "add", &sw]);
        sh(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        for (i, (_, host)) in hosts.iter().enumerate() {
            let n = i + 1;
            let ns = lab.ns(n);
            sh(&["ip", "netns", "add", &ns]);
            // No duplicate address detection: link-local addresses are usable at once (VRRPv3
            // over IPv6 sends from them) and VIPs are not tentative.
            for knob in [
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.accept_dad=0",
            ] {
                sh(&["ip", "netns", "exec", &ns, "sysctl", "-qw", knob]);
            }
            let v = format!("v{n}");
            sh(&[
                "ip", "-n", &sw, "link", "add", &v, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            sh(&["ip", "-n", &sw, "link", "set", &v, "master", "br0", "up"]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{subnet}.{host}/24"),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        // Each node's link has carrier before anything starts on it: a daemon started on a
        // link still coming up begins in FAULT, which tests waiting for BACKUP have caught
        // under load.
        for n in 1..=lab.nodes {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let out = Command::new("ip")
                    .args(["-n", &lab.ns(n), "-o", "link", "show", "eth0"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                if out.contains("state UP") || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        lab
    }

    /// Uses `bin` as the holdfast binary.
    pub fn with_bin(mut self, bin: PathBuf) -> Lab {
        self.bin = bin;
        self
    }

    /// Node number of a named node.
    pub fn node(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The switch-side interface of node `n` (down = the node's cable is cut).
    pub fn cable(&self, n: usize) -> String {
        format!("v{n}")
    }

    /// The lab's working directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Starts a program inside node `n`, tracking its output lines.
    pub fn spawn(&mut self, n: usize, name: &str, args: &[&str]) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(n)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        self.track(child, name)
    }

    /// Namespace name of node `n` (0 = the switch).
    pub fn ns(&self, n: usize) -> String {
        if n == 0 {
            format!("{}-sw", self.prefix)
        } else {
            format!("{}-{}", self.prefix, self.names[n - 1])
        }
    }

    /// A file in this test's directory.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Starts `holdfast run` on node `n` with this configuration.
    pub fn holdfast(&mut self, n: usize, conf: &str) -> Proc {
        self.holdfast_with(n, conf, &[])
    }

    /// Starts `holdfast run` on node `n` with extra command-line arguments.
    pub fn holdfast_with(&mut self, n: usize, conf: &str, args: &[&str]) -> Proc {
        self.holdfast_under(n, conf, &[], args)
    }

    /// Starts `holdfast run` on node `n` through `wrapper` (a command that runs the rest of its
    /// command line, e.g. `prlimit --nofile=256:256`), with extra command-line arguments.
    pub fn holdfast_under(
        &mut self,
        n: usize,
        conf: &str,
        wrapper: &[&str],
        args: &[&str],
    ) -> Proc {
        let path = self.file(&format!("n{n}.conf"), conf);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(n)])
            .args(wrapper)
            .arg(&self.bin)
            .args(["run", "-n", "-l", "-D", "--data-dir"])
            .arg(&self.dir)
            // Each node's own, as each machine has its own /run/keepalived.pid, unless the
            // caller names one.
            .args(if args.contains(&"-p") {
                vec![]
            } else {
                vec!["-p".into(), self.dir.join(format!("n{n}-holdfast.pid"))]
            })
            .arg("-f")
            .arg(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn holdfast");
        self.track(child, &format!("holdfast@n{n}"))
    }

    /// Starts FRR's zebra, bfdd and bgpd (Debian's `frr`) on node `n` with `conf` (frr.conf
    /// syntax).
    /// Their sockets and pid files are in a directory of this lab's, owned by the `frr` user
    /// they run as, so that no two labs' daemons meet; [`Frr::vtysh`] talks to them there.
    /// They stop with the lab (every process in its namespaces is killed).
    pub fn frr(&mut self, n: usize, conf: &str) -> Frr {
        let dir = self.dir.join(format!("frr-n{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let owned = Command::new("chown")
            .args(["frr:frr"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            owned,
            "chown frr:frr {}: is Debian's frr installed?",
            dir.display()
        );
        let conf_path = dir.join("frr.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let d = dir.display().to_string();
        let (zserv, conf_s) = (format!("{d}/zserv.api"), conf_path.display().to_string());
        let mut procs = Vec::new();
        let bfdctl = format!("{d}/bfdd.sock");
        for daemon in ["zebra", "bfdd", "bgpd"] {
            let pid = format!("{d}/{daemon}.pid");
            let bin = format!("/usr/lib/frr/{daemon}");
            let mut args = vec![
                bin.as_str(),
                "-z",
                &zserv,
                "--vty_socket",
                &d,
                "-i",
                &pid,
                "-f",
                &conf_s,
            ];
            if daemon == "bfdd" {
                args.extend(["--bfdctl", bfdctl.as_str()]);
            }
            procs.push(self.spawn(n, &format!("{daemon}@n{n}"), &args));
            // bgpd reaches zebra through its socket: started once zebra listens.
            let vty = dir.join(format!("{daemon}.vty"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !vty.exists() {
                assert!(Instant::now() < deadline, "{daemon} did not start on n{n}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Frr { dir, procs }
    }

    /// Starts BIRD (Debian's `bird2`) on node `n` with `conf`, in the foreground, its control
    /// socket in this lab's directory; it stops with the lab.
    pub fn bird(&mut self, n: usize, conf: &str) -> Bird {
        let conf_path = self.file(&format!("bird-n{n}.conf"), conf);
        let ctl = self.dir.join(format!("bird-n{n}.ctl"));
        let pid = self.dir.join(format!("bird-n{n}.pid"));
        let (c, s, p) = (
            conf_path.display().to_string(),
            ctl.display().to_string(),
            pid.display().to_string(),
        );
        let proc = self.spawn(
            n,
            &format!("bird@n{n}"),
            &["bird", "-f", "-c", &c, "-s", &s, "-P", &p],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ctl.exists() {
            assert!(Instant::now() < deadline, "bird did not start on n{n}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Bird { ctl, proc }
    }

    /// Starts Debian's keepalived on node `n` (VRRP only) with this configuration.
    pub fn keepalived(&mut self, n: usize, conf: &str) -> Proc {
        let path = self.file(&format!("n{n}-ka.conf"), conf);
        let pid = |s: &str| self.dir.join(format!("n{n}-{s}.pid"));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(n),
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-P",
                "-f",
            ])
            .arg(&path)
            .arg("-p")
            .arg(pid("main"))
            .arg("-r")
            .arg(pid("vrrp"))
            .arg("-c")
            .arg(pid("check"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keepalived (install it: scripts/test does)");
        self.track(child, &format!("keepalived@n{n}"))
    }

    fn track(&mut self, mut child: Child, name: &str) -> Proc {
        self.procs.push(child.id());
        let (tx, rx) = mpsc::channel();
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            child,
            rx,
            lines: Vec::new(),
            cursor: 0,
            name: name.to_string(),
        }
    }

    /// IPv4 and IPv6 addresses on node `n`'s eth0.
    pub fn addrs(&self, n: usize) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-n", &self.ns(n), "-o", "addr", "show", "dev", "eth0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .skip_while(|w| *w != "inet" && *w != "inet6")
                    .nth(1)
                    .map(str::to_string)
            })
            .collect()
    }

    /// Whether node `n` holds `vip` (as `a.b.c.d/len`).
    pub fn has(&self, n: usize, vip: &str) -> bool {
        self.addrs(n).iter().any(|a| a == vip)
    }

    /// Waits (at most `timeout`, polling every 20 ms) until node `n` holds `vip` or not, as
    /// `held` says; whether it got there.
    pub fn wait_has(&self, n: usize, vip: &str, held: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.has(n, vip) == held {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts tcpdump on the switch's bridge for VRRP packets (`-v`: with their addresses),
    /// once it listens: adverts seen on the wire are events a test can wait for
    /// ([`Proc::wait_count`]) where it would otherwise sleep for "a few adverts".
    pub fn vrrp_dump(&mut self) -> Proc {
        self.bridge_dump("tcpdump-vrrp", &["-v"])
    }

    /// Starts tcpdump on the switch's bridge for VRRP packets, one line each that starts with
    /// the kernel's capture time (`-tt`, seconds since the epoch), once it listens; a large
    /// capture buffer, so that a loaded machine delays the lines, not their times.
    pub fn vrrp_times(&mut self) -> Proc {
        self.bridge_dump("tcpdump-vrrp-times", &["-tt", "-B", "16384"])
    }

    fn bridge_dump(&mut self, name: &str, opts: &[&str]) -> Proc {
        let mut args = vec!["tcpdump", "-l", "-n"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["-i", "br0", "ip proto 112 or ip6 proto 112"]);
        let mut dump = self.spawn(0, name, &args);
        dump.wait_for("listening on br0", Duration::from_secs(10));
        dump
    }

    /// `GET /metrics` from node `n` to `addr` (`IP:PORT`, reached from that node), with bash's
    /// `/dev/tcp` (bounded to 3 s); the whole response, headers included.
    pub fn http_get(&self, n: usize, addr: &str) -> String {
        let (ip, port) = addr.rsplit_once(':').unwrap_or((addr, "80"));
        let script = format!(
            "exec 3<>/dev/tcp/{ip}/{port} && printf 'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' >&3 && cat <&3"
        );
        self.output(n, &["timeout", "3", "bash", "-c", &script])
    }

    /// Runs a command in the switch namespace.
    pub fn exec_switch(&self, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec"];
        let ns = self.ns(0);
        v.push(&ns);
        v.extend_from_slice(args);
        sh(&v);
    }

    /// Runs a command inside node `n` and returns its standard output (empty if it failed
    /// to start).
    pub fn output(&self, n: usize, args: &[&str]) -> String {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(n)])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Runs a command inside node `n`.
    pub fn exec(&self, n: usize, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec"];
        let ns = self.ns(n);
        v.push(&ns);
        v.extend_from_slice(args);
        sh(&v);
    }
}

impl Lab {
    /// The processes inside node `n`'s namespace.
    pub fn pids(&self, n: usize) -> Vec<u32> {
        Command::new("ip")
            .args(["netns", "pids", &self.ns(n)])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for &pid in &self.procs {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
        }
        // `ip netns exec` children (the daemons) die with the namespace's last process;
        // kill anything still inside our namespaces by PID too.
        for n in 0..=self.nodes {
            for pid in self.pids(n) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        for n in 0..=self.nodes {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// BIRD on one node of a lab.
pub struct Bird {
    ctl: PathBuf,
    /// The daemon (its output is read while it runs).
    pub proc: Proc,
}

impl Bird {
    /// `birdc CMD` against this daemon: what it printed.
    pub fn birdc(&self, cmd: &str) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.ctl)
            .args(cmd.split_whitespace())
            .output()
            .unwrap_or_else(|e| panic!("birdc: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// FRR's daemons on one node of a lab.
pub struct Frr {
    dir: PathBuf,
    /// zebra, bfdd and bgpd (their output is read while they run).
    pub procs: Vec<Proc>,
}

impl Frr {
    /// `vtysh -c CMD` against these daemons: what it printed.
    pub fn vtysh(&self, cmd: &str) -> String {
        let out = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(&self.dir)
            .args(["-c", cmd])
            .output()
            .unwrap_or_else(|e| panic!("vtysh: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A started daemon and its log lines.
///
/// Waits read forward, as `expect` does: [`Proc::wait_for`] looks only at lines after its
/// cursor — the line the previous wait matched, or the point [`Proc::mark`] set — and moves
/// the cursor past the line it finds. So a wait after an action cannot be satisfied by a line
/// logged before it (every node logs `Entering BACKUP STATE` at start; a later wait for that
/// line means a later one).
pub struct Proc {
    child: Child,
    rx: mpsc::Receiver<(Instant, String)>,
    /// Every line read so far.
    pub lines: Vec<(Instant, String)>,
    /// Index of the first line a wait may match.
    cursor: usize,
    name: String,
}

impl Proc {
    /// Moves the cursor to the end of what has been logged so far: the next wait matches
    /// only lines logged from now on. Call it before the action whose effect is awaited.
    pub fn mark(&mut self) {
        self.drain();
        self.cursor = self.lines.len();
    }

    /// Waits (at most `timeout`) for a line after the cursor containing `pat`; `None` on
    /// timeout (the cursor then stays).
    pub fn try_wait_for(&mut self, pat: &str, timeout: Duration) -> Option<Instant> {
        self.try_wait_for_after(pat, None, timeout)
    }

    /// Like [`Proc::try_wait_for`], counting only lines logged at or after `since`.
    pub fn try_wait_for_after(
        &mut self,
        pat: &str,
        since: Option<Instant>,
        timeout: Duration,
    ) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let fresh = |t: &Instant| since.is_none_or(|s| *t >= s);
        let mut i = self.cursor;
        loop {
            while let Some((t, l)) = self.lines.get(i) {
                if fresh(t) && l.contains(pat) {
                    let t = *t;
                    self.cursor = i + 1;
                    return Some(t);
                }
                i += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.rx.recv_timeout(left).ok()?;
            self.lines.push(line);
        }
    }

    /// Waits (at most `timeout`) for `n` lines after the cursor containing `pat`, and moves
    /// the cursor past the last; the error names the process and shows its log.
    pub fn expect_count(&mut self, pat: &str, n: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for k in 0..n {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.try_wait_for(pat, left).is_none() {
                let log = self.log();
                return Err(format!(
                    "{}: {k} of {n} lines containing {pat:?} within {timeout:?}; log:\n{log}",
                    self.name
                ));
            }
        }
        Ok(())
    }

    /// [`Proc::expect_count`], panicking on failure.
    pub fn wait_count(&mut self, pat: &str, n: usize, timeout: Duration) {
        if let Err(e) = self.expect_count(pat, n, timeout) {
            panic!("{e}");
        }
    }

    /// Waits (at most `timeout`) until every pattern has a line after the cursor, in any
    /// order (events that race each other), then moves the cursor past the last of them; the
    /// error names what is missing and shows the log.
    pub fn expect_all(&mut self, pats: &[&str], timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let start = self.cursor;
        let mut found: Vec<Option<usize>> = vec![None; pats.len()];
        let mut i = start;
        loop {
            while let Some((_, l)) = self.lines.get(i) {
                for (k, p) in pats.iter().enumerate() {
                    if found[k].is_none() && l.contains(p) {
                        found[k] = Some(i);
                    }
                }
                i += 1;
            }
            if found.iter().all(Option::is_some) {
                self.cursor = found.iter().flatten().max().map_or(start, |m| m + 1);
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.lines.push(line),
                Err(_) => {
                    let missing: Vec<&&str> = pats
                        .iter()
                        .zip(&found)
                        .filter(|(_, f)| f.is_none())
                        .map(|(p, _)| p)
                        .collect();
                    let log = self.log();
                    return Err(format!(
                        "{}: no line after line {start} for {missing:?} within {timeout:?}; log:\n{log}",
                        self.name
                    ));
                }
            }
        }
    }

    /// [`Proc::expect_all`], panicking on failure.
    pub fn wait_for_all(&mut self, pats: &[&str], timeout: Duration) {
        if let Err(e) = self.expect_all(pats, timeout) {
            panic!("{e}");
        }
    }

    /// How many lines logged at or after `since` contain `pat` (wherever the cursor is).
    pub fn count_since(&mut self, pat: &str, since: Instant) -> usize {
        self.drain();
        self.lines
            .iter()
            .filter(|(t, l)| *t >= since && l.contains(pat))
            .count()
    }

    /// Like [`Proc::try_wait_for`], but the error names the process and shows its log.
    pub fn expect_line(&mut self, pat: &str, timeout: Duration) -> Result<Instant, String> {
        match self.try_wait_for(pat, timeout) {
            Some(t) => Ok(t),
            None => {
                let cursor = self.cursor;
                let log = self.log();
                Err(format!(
                    "{}: no line containing {pat:?} after line {cursor} within {timeout:?}; log:\n{log}",
                    self.name
                ))
            }
        }
    }

    /// Waits (at most `timeout`) for a line after the cursor containing every one of `pats`,
    /// and returns it (the cursor moves past it); panics with the log if none comes.
    pub fn wait_line(&mut self, pats: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some((_, l)) = self.lines.get(self.cursor) {
                self.cursor += 1;
                if pats.iter().all(|p| l.contains(p)) {
                    return l.clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.lines.push(line),
                Err(_) => {
                    let log = self.log();
                    panic!(
                        "{}: no line with all of {pats:?} within {timeout:?}; log:\n{log}",
                        self.name
                    );
                }
            }
        }
    }

    /// Waits (at most `timeout`) for a line after the cursor containing `pat`, returning when
    /// it was logged; panics with the log if none comes.
    pub fn wait_for(&mut self, pat: &str, timeout: Duration) -> Instant {
        match self.expect_line(pat, timeout) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// The lines logged after the cursor (after the line the last wait matched), read up to
    /// now.
    pub fn after_cursor(&mut self) -> Vec<String> {
        self.drain();
        self.lines[self.cursor.min(self.lines.len())..]
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Reads what is available now without waiting.
    pub fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.lines.push(l);
        }
    }

    /// The log so far.
    pub fn log(&mut self) -> String {
        self.drain();
        self.lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Lines after `since` that contain `pat`.
    pub fn count(&mut self, pat: &str) -> usize {
        self.drain();
        self.lines.iter().filter(|(_, l)| l.contains(pat)).count()
    }

    /// The process id (`ip netns exec` execs the program, so it is the program's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the daemon (the child of `ip netns exec`, which execs it).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .output();
    }

    /// Waits for the process to exit (bounded).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// Runs `bin ARGS… -s SOCKET` (a `holdfast` client command against a daemon's control
/// socket, from the host) and returns its standard output; a failure stops the test.
pub fn cli(bin: &str, socket: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .arg("-s")
        .arg(socket)
        .output()
        .unwrap_or_else(|e| panic!("{bin} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `cond` holds within 5 s, polling every 20 ms: for the kernel's state after a
/// logged transition ("Entering MASTER STATE" is logged before the VIPs are set, as
/// keepalived does).
pub fn settles(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A VRRP instance configuration for node tests.
pub fn conf(priority: u8, extra: &str, global: &str) -> String {
    format!(
        "global_defs {{\n{global}\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    advert_int 1\n    authentication {{\n        auth_type PASS\n        auth_pass 1234\n    }}\n    virtual_ipaddress {{\n        10.77.0.100/24\n    }}\n{extra}\n}}\n"
    )
}
