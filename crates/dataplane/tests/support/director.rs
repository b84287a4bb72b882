//! The namespaces a NAT director is deployed in, shared by the nft benchmark and the nftables
//! tests: a client, a director that forwards and a backend, joined by veth pairs created inside
//! them (nothing touches the namespace the caller runs in). The client is 10.201.1.2 behind
//! the director's `c0` (10.201.1.1), the backend 10.201.2.2 behind its `b0` (10.201.2.1), and
//! the director holds 10.201.3.1 on lo.

use std::process::{Command, Stdio};

/// The three namespaces, deleted when dropped.
pub struct Director {
    pub client: String,
    pub director: String,
    pub backend: String,
}

pub fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {}", args.join(" "));
}

impl Director {
    /// Namespaces `PREFIX-c`, `PREFIX-d` and `PREFIX-b` (ones of those names an earlier run
    /// left go first).
    pub fn new(prefix: &str) -> Director {
        let t = Director {
            client: format!("{prefix}-c"),
            director: format!("{prefix}-d"),
            backend: format!("{prefix}-b"),
        };
        t.delete();
        for n in [&t.client, &t.director, &t.backend] {
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        let (c, d, b) = (&t.client, &t.director, &t.backend);
        ip(&[
            "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "c0", "netns", d,
        ]);
        ip(&[
            "-n", b, "link", "add", "eth0", "type", "veth", "peer", "name", "b0", "netns", d,
        ]);
        ip(&["-n", c, "addr", "add", "10.201.1.2/24", "dev", "eth0"]);
        ip(&["-n", d, "addr", "add", "10.201.1.1/24", "dev", "c0"]);
        ip(&["-n", d, "addr", "add", "10.201.2.1/24", "dev", "b0"]);
        ip(&["-n", b, "addr", "add", "10.201.2.2/24", "dev", "eth0"]);
        ip(&["-n", d, "addr", "add", "10.201.3.1/32", "dev", "lo"]);
        for (n, dev) in [(c, "eth0"), (d, "c0"), (d, "b0"), (b, "eth0")] {
            ip(&["-n", n, "link", "set", dev, "up"]);
        }
        ip(&["-n", c, "route", "add", "default", "via", "10.201.1.1"]);
        ip(&["-n", b, "route", "add", "default", "via", "10.201.2.1"]);
        // /proc/sys/net is the namespace's own (and the test VM has no sysctl).
        ip(&[
            "netns",
            "exec",
            d,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ]);
        t
    }

    /// Direct return's own path back: a link from the backend straight to the client, taken by
    /// every reply from `vip` (which the backend holds on lo), so replies never pass the
    /// director, as in a real deployment where they go out through the site's router. (A
    /// director holding the virtual address itself, as IPVS needs, would drop them as
    /// martians.)
    #[allow(dead_code)] // the benchmark's, not the tests'
    pub fn return_path(&self, vip: &str) {
        let (c, b) = (&self.client, &self.backend);
        ip(&[
            "-n", b, "link", "add", "r0", "type", "veth", "peer", "name", "r0", "netns", c,
        ]);
        ip(&["-n", b, "addr", "add", &format!("{vip}/32"), "dev", "lo"]);
        for n in [c, b] {
            ip(&["-n", n, "link", "set", "r0", "up"]);
        }
        ip(&["-n", b, "rule", "add", "from", vip, "lookup", "100"]);
        ip(&[
            "-n",
            b,
            "route",
            "add",
            "10.201.1.0/24",
            "dev",
            "r0",
            "table",
            "100",
        ]);
        // The client takes replies on a link it does not route to.
        ip(&[
            "netns",
            "exec",
            c,
            "sh",
            "-c",
            "for f in all default r0; do echo 0 > /proc/sys/net/ipv4/conf/$f/rp_filter; done",
        ]);
    }

    fn delete(&self) {
        for n in [&self.client, &self.director, &self.backend] {
            let _ = Command::new("ip")
                .args(["netns", "del", n])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Moves the calling thread into namespace `name`.
pub fn enter(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("namespace file");
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Runs `f` on a thread inside namespace `name` (child processes it starts are there too).
pub fn in_ns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(name);
            f()
        })
        .join()
        .expect("thread in namespace")
    })
}
