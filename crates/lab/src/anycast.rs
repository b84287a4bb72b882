//! `holdfast lab anycast`: active-active directors behind equal-cost routes. In namespaces on
//! one switch: a router running FRR (AS 65000, ECMP over up to 8 paths, layer-4 hashing, BFD
//! to each director), three directors each running holdfast (nftables direct return, `mh`)
//! and FRR announcing the VIP 192.0.2.10 through `bgp_announce` (the FRR part as `holdfast
//! frr-config` prints it), two real servers answering with their names, and a client routed
//! to the VIP through the router. The client holds long connections asking "who answers?"
//! every 100 ms and opens a new connection every 20 ms.
//!
//! Scenarios: a director's daemons killed (-9), a director's cable cut, a director added, a
//! real server failing. The report gives, per scenario: how long until the router's route
//! changed, new connections failed and for how long, the long connections that survived or
//! broke (those of a failed real server apart), and those that equal-cost routing moved to
//! another director, which must keep their real server. The same failures run again with the
//! directors on the proxy plane, whose connections die with the director holding them or
//! when moved (reported apart). The baseline is a VRRP pair
//! (keepalived 2.2.7 for VRRP, holdfast's same nftables plane for the service) with the same
//! failures, the router reaching the VIP through the VRRP address.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::now_us;
use crate::flows::Flows;
use crate::netns::{Lab, Proc};

/// The announced service.
pub const VIP: &str = "192.0.2.10";
/// Its port.
pub const PORT: u16 = 7000;
/// The lab's subnet.
const NET: &str = "10.99.0";
/// The VRRP baseline's address, which the router routes the VIP through.
const VRRP_ADDR: &str = "10.99.0.50";
/// The router's address.
const ROUTER: &str = "10.99.0.1";
/// The client's address.
const CLIENT: &str = "10.99.0.100";
/// Long connections the client holds.
const LONG: usize = 48;
/// How often each long connection asks.
const PERIOD: Duration = Duration::from_millis(100);
/// How often the client opens a new connection.
const EVERY: Duration = Duration::from_millis(20);

/// The injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every daemon on director 1 (holdfast and FRR, or keepalived and holdfast) killed with
    /// SIGKILL; what they put in its kernel stays.
    Killed,
    /// Director 1's cable cut (its switch port down).
    Cable,
    /// A third director starts announcing (anycast only).
    Added,
    /// Real server 2's service killed.
    Backend,
}

impl Fault {
    /// Every fault, in report order.
    pub const ALL: [Fault; 4] = [Fault::Killed, Fault::Cable, Fault::Added, Fault::Backend];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Killed => "director killed (-9)",
            Fault::Cable => "director cable cut",
            Fault::Added => "director added",
            Fault::Backend => "real server fails",
        }
    }
}

/// How the directors share the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every director announces it through BGP; the router spreads flows over them.
    Anycast,
    /// The same, the directors on holdfast's proxy plane: each connection is held by the
    /// proxy process of the director that accepted it.
    AnycastProxy,
    /// One VRRP MASTER at a time (keepalived), the router's route through the VRRP address.
    Vrrp,
}

impl Mode {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Anycast => "anycast (BGP)",
            Mode::AnycastProxy => "anycast, proxy",
            Mode::Vrrp => "VRRP pair",
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How the VIP was shared.
    pub mode: Mode,
    /// The failure.
    pub fault: Fault,
    /// From the failure to the router's route for the VIP changing (a path gone or added; the
    /// VRRP address's neighbour entry for the baseline), if it did within the run.
    pub router: Option<Duration>,
    /// Long connections established before the failure.
    pub long: usize,
    /// Of those, the ones still answering at the end, each by the real server it started on.
    pub survived: usize,
    /// The ones that broke while their real server was alive.
    pub broken: usize,
    /// The ones that broke with their real server (the failed one).
    pub broken_with_backend: usize,
    /// The ones that broke with the director that held them (its proxy process killed, or
    /// cut off): not ones the remaining directors could serve.
    pub broken_with_director: usize,
    /// Answers from another real server than the first (must be zero).
    pub switched: usize,
    /// Survivors that equal-cost routing moved to another director.
    pub moved: usize,
    /// New connections started after the failure, and those that failed.
    pub new: (usize, usize),
    /// How long new connections could not be made.
    pub outage: Duration,
    /// The longest a surviving connection waited for an answer.
    pub stall: Duration,
    /// The run's own problems (a router that never converged …), if any.
    pub notes: Vec<String>,
}

impl Outcome {
    /// What this run must show, or what it did not: no answer from another real server than
    /// a connection's first; with several directors, no connection broken while its real
    /// server lived when a director was lost or added, and new connections failing no longer
    /// than the router took to change its route (plus a client period and one connection's
    /// time limit). On the proxy plane connections moved between directors are reset: only
    /// the failed-connection time is held to.
    pub fn verdict(&self) -> Result<(), String> {
        let mut wrong = Vec::new();
        if self.switched > 0 {
            wrong.push(format!(
                "{} answers came from another real server",
                self.switched
            ));
        }
        if self.mode == Mode::Anycast && self.fault != Fault::Backend && self.broken > 0 {
            wrong.push(format!(
                "{} established connections broke while their real server lived",
                self.broken
            ));
        }
        if self.mode != Mode::Vrrp && matches!(self.fault, Fault::Killed | Fault::Cable) {
            let allowed = self.router.unwrap_or_default() + EVERY + crate::flows::NEW_LIMIT;
            if self.outage > allowed {
                wrong.push(format!(
                    "new connections failed for {} ms, more than the router's {} ms",
                    self.outage.as_millis(),
                    self.router.unwrap_or_default().as_millis()
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }
}

/// Lab options.
#[derive(Clone, Debug)]
pub struct Options {
    /// The holdfast binary.
    pub bin: PathBuf,
    /// The baseline's VRRP advert interval.
    pub advert: Duration,
    /// How long the client runs in each scenario.
    pub duration: Duration,
}

/// The real servers: (node name, address, the name it answers with).
const BACKENDS: [(&str, u8); 2] = [("b1", 21), ("b2", 22)];

fn addr(host: u8) -> String {
    format!("{NET}.{host}")
}

/// The nodes: router, three directors, two real servers, the client.
fn topology() -> Lab {
    let hosts: Vec<(String, u8)> = [
        ("r", 1),
        ("d1", 11),
        ("d2", 12),
        ("d3", 13),
        ("b1", 21),
        ("b2", 22),
        ("c", 100),
    ]
    .iter()
    .map(|(n, h)| (n.to_string(), *h))
    .collect();
    let lab = Lab::with_hosts(NET, &hosts);
    let r = lab.node("r");
    for knob in [
        "net.ipv4.ip_forward=1",
        // ECMP by the flow's ports too, as a router in front of directors is set up.
        "net.ipv4.fib_multipath_hash_policy=1",
        // The router forwards back out of the port it received on: no redirect may tell the
        // client to skip it.
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.eth0.send_redirects=0",
    ] {
        lab.exec(r, &["sysctl", "-qw", knob]);
    }
    let c = lab.node("c");
    lab.exec(
        c,
        &["sysctl", "-qw", "net.ipv4.conf.all.accept_redirects=0"],
    );
    lab.exec(
        c,
        &["sysctl", "-qw", "net.ipv4.conf.eth0.accept_redirects=0"],
    );
    lab.exec(
        c,
        &["ip", "route", "add", &format!("{VIP}/32"), "via", ROUTER],
    );
    // Direct return: each real server has the VIP on lo and answers the client itself, and
    // does not answer ARP for it.
    for (name, _) in BACKENDS {
        let b = lab.node(name);
        lab.exec(b, &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        for knob in [
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            "net.ipv4.conf.eth0.arp_ignore=1",
            "net.ipv4.conf.eth0.arp_announce=2",
        ] {
            lab.exec(b, &["sysctl", "-qw", knob]);
        }
    }
    lab
}

/// Real server `name`'s service: answers each line with its name, a process per connection.
fn serve(lab: &mut Lab, name: &str) -> Proc {
    let b = lab.node(name);
    let reply = format!("SYSTEM:while read l; do echo {name}; done");
    lab.spawn(
        b,
        &format!("service@{name}"),
        &[
            "socat",
            &format!("TCP-LISTEN:{PORT},fork,reuseaddr,backlog=256"),
            &reply,
        ],
    )
}

/// holdfast's configuration on a director: the service by direct return with Maglev hashing
/// of the client's address and port (one client's connections spread over the servers) on
/// nftables, or on the proxy; announced while it has a live real server, or not announced
/// (the VRRP baseline, where keepalived holds the address).
fn holdfast_conf(mode: Mode) -> String {
    let (plane, method) = match mode {
        Mode::AnycastProxy => ("proxy", "NAT"),
        Mode::Anycast | Mode::Vrrp => ("nft", "DR"),
    };
    let mut s = format!(
        "global_defs {{\n    dataplane {plane}\n    nft_table hf_any\n}}\nvirtual_server {VIP} {PORT} {{\n    delay_loop 1\n    lb_algo mh\n    mh-port\n    lb_kind {method}\n    protocol TCP\n"
    );
    for (_, host) in BACKENDS {
        let _ = write!(
            s,
            "    real_server {} {PORT} {{\n        TCP_CHECK {{\n            connect_timeout 1\n            retry 0\n        }}\n    }}\n",
            addr(host)
        );
    }
    s.push_str("}\n");
    if mode != Mode::Vrrp {
        let _ = write!(
            s,
            "bgp_announce vip {{\n    prefix {VIP}\n    table 100\n    track_virtual_server {VIP} {PORT}\n    community 65000:10\n}}\n"
        );
    }
    s
}

/// What `holdfast frr-config` (`bin`) prints for the configuration `conf` on a host of AS
/// `asn`: FRR's part of announcing its `bgp_announce` blocks.
pub fn frr_config(bin: &Path, conf: &Path, asn: u32) -> Result<String, String> {
    let out = std::process::Command::new(bin)
        .args(["frr-config", "--asn", &asn.to_string(), "-f"])
        .arg(conf)
        .output()
        .map_err(|e| format!("holdfast frr-config: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "holdfast frr-config: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The director's FRR: [`frr_config`]'s output and the session to the router with BFD.
fn director_frr(bin: &Path, conf: &Path, asn: u32, me: &str) -> Result<String, String> {
    Ok(format!(
        "frr defaults datacenter\n{}router bgp {asn}\n bgp router-id {me}\n neighbor {ROUTER} remote-as 65000\n neighbor {ROUTER} bfd\nexit\n",
        frr_config(bin, conf, asn)?
    ))
}

/// The router's FRR: a session with BFD to each director, up to 8 equal-cost paths.
fn router_frr() -> String {
    let mut s = format!(
        "frr defaults datacenter\nrouter bgp 65000\n bgp router-id {ROUTER}\n bgp bestpath as-path multipath-relax\n"
    );
    for (i, host) in [11u8, 12, 13].iter().enumerate() {
        let _ = write!(
            s,
            " neighbor {} remote-as {}\n neighbor {} bfd\n",
            addr(*host),
            65001 + i,
            addr(*host)
        );
    }
    s.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\nexit\n");
    s
}

/// The router's next hops for the VIP (its kernel route).
fn next_hops(lab: &Lab) -> BTreeSet<String> {
    let out = lab.output(
        lab.node("r"),
        &["ip", "route", "show", &format!("{VIP}/32")],
    );
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect()
}

/// The router's neighbour entry for the VRRP address: which MAC it sends to.
fn vrrp_mac(lab: &Lab) -> String {
    lab.output(lab.node("r"), &["ip", "neigh", "show", VRRP_ADDR])
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The connections director `d` carries, by the client's port, with the real server each
/// goes to: its nftables direct-return sets, or its proxy's sockets.
fn director_flows(lab: &Lab, d: usize, mode: Mode) -> BTreeMap<u16, String> {
    if mode == Mode::AnycastProxy {
        // `ss`: the accepted sockets on the VIP's port, by the client's port.
        let text = lab.output(
            d,
            &[
                "ss",
                "-Htn",
                "state",
                "established",
                &format!("( sport = :{PORT} )"),
            ],
        );
        return text
            .lines()
            .filter_map(|l| {
                let peer = l.split_whitespace().last()?;
                let (ip, port) = peer.rsplit_once(':')?;
                (ip == CLIENT).then_some((port.parse().ok()?, "proxy".to_string()))
            })
            .collect();
    }
    let text = lab.output(d, &["nft", "list", "table", "netdev", "hf_any"]);
    let mut out = BTreeMap::new();
    let mut backend: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("set k_") {
            // k_TCP_192_0_2_10_7000_10_99_0_21_7000 {
            let parts: Vec<&str> = name.trim_end_matches(" {").split('_').collect();
            backend = (parts.len() >= 4).then(|| parts[parts.len() - 5..parts.len() - 1].join("."));
            continue;
        }
        if t == "}" {
            backend = None;
            continue;
        }
        let Some(b) = &backend else { continue };
        let words: Vec<&str> = t
            .split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}')
            .filter(|w| !w.is_empty())
            .collect();
        for w in words.windows(3) {
            if w[0] == CLIENT
                && w[1] == "."
                && let Ok(p) = w[2].parse::<u16>()
            {
                out.insert(p, b.clone());
            }
        }
    }
    out
}

/// Each director's connections (by node) by the client's port, with their real server.
type Carried = BTreeMap<usize, BTreeMap<u16, String>>;

/// Waits (at most `limit`) for `cond`, polling every 5 ms; when it held.
fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills every process in node `n` with SIGKILL.
fn kill_all(lab: &Lab, n: usize) {
    for pid in lab.pids(n) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .output();
    }
}

/// Runs one scenario in a fresh topology.
pub fn run(opts: &Options, mode: Mode, fault: Fault) -> Result<Outcome, String> {
    let mut lab = topology().with_bin(opts.bin.clone());
    let (r, c) = (lab.node("r"), lab.node("c"));
    let directors: Vec<usize> = ["d1", "d2", "d3"].iter().map(|d| lab.node(d)).collect();
    let mut services: BTreeMap<&str, Proc> = BTreeMap::new();
    for (name, _) in BACKENDS {
        services.insert(name, serve(&mut lab, name));
    }
    let mut daemons: Vec<Proc> = Vec::new();
    let mut frr = Vec::new();
    // How many directors serve before the failure, and the one that fails (or joins).
    let (serving, changed): (Vec<usize>, usize) = match (mode, fault) {
        (Mode::Anycast | Mode::AnycastProxy, Fault::Added) => {
            (directors[..2].to_vec(), directors[2])
        }
        (Mode::Anycast | Mode::AnycastProxy, _) => (directors.clone(), directors[0]),
        (Mode::Vrrp, _) => (directors[..2].to_vec(), directors[0]),
    };
    let conf = lab.file("director.conf", &holdfast_conf(mode));
    let conf_text = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
    match mode {
        Mode::Anycast | Mode::AnycastProxy => {
            if mode == Mode::AnycastProxy {
                // The proxy accepts the VIP's connections itself: the address is local, by a
                // local route rather than an address on lo (FRR would take the address for a
                // connected route, which outranks the imported table's and is not
                // redistributed).
                for &d in &directors {
                    lab.exec(
                        d,
                        &[
                            "ip",
                            "route",
                            "add",
                            "local",
                            &format!("{VIP}/32"),
                            "dev",
                            "lo",
                        ],
                    );
                }
            }
            frr.push(lab.frr(r, &router_frr()));
            for (i, &d) in directors.iter().enumerate() {
                let me = addr(11 + i as u8);
                frr.push(lab.frr(d, &director_frr(&opts.bin, &conf, 65001 + i as u32, &me)?));
            }
            for &d in &serving {
                daemons.push(lab.holdfast(d, &conf_text));
            }
            let want = serving.len();
            if until(Duration::from_secs(60), || next_hops(&lab).len() == want).is_none() {
                let logs: Vec<String> = daemons.iter_mut().map(Proc::log).collect();
                return Err(format!(
                    "the router did not learn {want} paths to {VIP}: {:?}\n{}",
                    next_hops(&lab),
                    logs.join("\n--\n")
                ));
            }
        }
        Mode::Vrrp => {
            lab.exec(
                r,
                &["ip", "route", "add", &format!("{VIP}/32"), "via", VRRP_ADDR],
            );
            for (i, &d) in serving.iter().enumerate() {
                let prio = if i == 0 { 150 } else { 100 };
                let ka = vrrp_conf(prio, opts.advert);
                daemons.push(lab.keepalived(d, &ka));
                daemons.push(lab.holdfast_with(d, &conf_text, &["-C"]));
            }
            until(Duration::from_secs(30), || {
                lab.output(changed, &["ip", "-o", "addr", "show", "eth0"])
                    .contains(&format!("{VRRP_ADDR}/24"))
            })
            .ok_or("the VRRP address never came up on director 1")?;
        }
    }
    // The client, once the service answers through the router.
    until(Duration::from_secs(30), || {
        lab.output(
            c,
            &[
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/{VIP}/{PORT} && echo who >&3 && timeout 1 head -n1 <&3"),
            ],
        )
        .starts_with('b')
    })
    .ok_or("the service never answered through the router")?;
    let bin = opts.bin.display().to_string();
    let secs = opts.duration.as_secs().to_string();
    let (period, every) = (
        PERIOD.as_millis().to_string(),
        EVERY.as_millis().to_string(),
    );
    let long = LONG.to_string();
    let target = format!("{VIP}:{PORT}");
    let mut client = lab.spawn(
        c,
        "client",
        &[
            &bin,
            "lab-flows",
            "--target",
            &target,
            "--long",
            &long,
            "--period-ms",
            &period,
            "--every-ms",
            &every,
            "--duration-s",
            &secs,
        ],
    );
    // Every long connection answered, then a second of steady state.
    client.expect_count("\"backend\"", LONG, Duration::from_secs(15))?;
    let steady = Instant::now() + Duration::from_secs(1);
    while Instant::now() < steady {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before: Carried = directors
        .iter()
        .map(|&d| (d, director_flows(&lab, d, mode)))
        .collect();
    let hops_before = next_hops(&lab);
    let mac_before = vrrp_mac(&lab);
    let (fault_at, fault_us) = (Instant::now(), now_us());
    match fault {
        Fault::Killed => kill_all(&lab, changed),
        Fault::Cable => lab.exec_switch(&["ip", "link", "set", &lab.cable(changed), "down"]),
        Fault::Added => daemons.push(lab.holdfast(changed, &conf_text)),
        Fault::Backend => {
            if let Some(p) = services.remove("b2") {
                drop(p);
            }
            kill_all(&lab, lab.node("b2"));
        }
    }
    let limit = opts.duration.saturating_sub(Duration::from_secs(2));
    let router = match (mode, fault) {
        (_, Fault::Backend) => None,
        (Mode::Anycast | Mode::AnycastProxy, _) => until(limit, || next_hops(&lab) != hops_before),
        (Mode::Vrrp, _) => until(limit, || {
            let m = vrrp_mac(&lab);
            !m.is_empty() && m != mac_before
        }),
    }
    .map(|t| t.saturating_duration_since(fault_at));
    // The client's last line says it is done: every line before it has been read.
    client.expect_line(crate::flows::DONE, opts.duration + Duration::from_secs(15))?;
    let after: Carried = directors
        .iter()
        .map(|&d| (d, director_flows(&lab, d, mode)))
        .collect();
    let log = client.log();
    let flows = Flows::parse(log.lines());
    Ok(measure(
        mode,
        (fault, changed),
        &flows,
        fault_us,
        (&before, &after),
        router,
    ))
}

/// keepalived's VRRP instance for the baseline.
fn vrrp_conf(priority: u8, advert: Duration) -> String {
    let (version, interval) = if advert < Duration::from_secs(1) {
        (3, format!("{:.2}", advert.as_secs_f64()))
    } else {
        (2, advert.as_secs().to_string())
    };
    format!(
        "global_defs {{\n    vrrp_version {version}\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 60\n    priority {priority}\n    advert_int {interval}\n    virtual_ipaddress {{\n        {VRRP_ADDR}/24\n    }}\n}}\n"
    )
}

/// The outcome from what the client saw and the directors' flows before and after.
fn measure(
    mode: Mode,
    (fault, changed): (Fault, usize),
    flows: &Flows,
    fault_us: u64,
    (before, after): (&Carried, &Carried),
    router: Option<Duration>,
) -> Outcome {
    let failed_backend = (fault == Fault::Backend).then_some("b2");
    let established: Vec<&crate::flows::Long> = flows
        .long
        .values()
        .filter(|l| {
            !l.backend.is_empty() && l.broken.as_ref().is_none_or(|(at, _)| *at >= fault_us)
        })
        .collect();
    let survived = established
        .iter()
        .filter(|l| l.broken.is_none() && l.switched.is_empty())
        .count();
    let on_failed = |l: &&&crate::flows::Long| Some(l.backend.as_str()) == failed_backend;
    let broken_with_backend = established
        .iter()
        .filter(|l| l.broken.is_some())
        .filter(on_failed)
        .count();
    let director_of = |m: &Carried, port: u16| -> BTreeSet<usize> {
        m.iter()
            .filter(|(_, f)| f.contains_key(&port))
            .map(|(d, _)| *d)
            .collect()
    };
    // A director lost (killed or cut off) takes the connections its own process held.
    let lost_director = matches!(fault, Fault::Killed | Fault::Cable);
    let held_by_lost = |l: &&&crate::flows::Long| {
        mode == Mode::AnycastProxy
            && lost_director
            && director_of(before, l.port).contains(&changed)
    };
    let broken_with_director = established
        .iter()
        .filter(|l| l.broken.is_some())
        .filter(|l| !on_failed(l))
        .filter(held_by_lost)
        .count();
    let broken = established.iter().filter(|l| l.broken.is_some()).count()
        - broken_with_backend
        - broken_with_director;
    let switched = established.iter().map(|l| l.switched.len()).sum();
    let moved = established
        .iter()
        .filter(|l| l.broken.is_none())
        .filter(|l| {
            let was = director_of(before, l.port);
            let now = director_of(after, l.port);
            !was.is_empty() && now.iter().any(|d| !was.contains(d))
        })
        .count();
    let stall = established
        .iter()
        .filter(|l| l.broken.is_none())
        .map(|l| Duration::from_micros(l.stall_us))
        .max()
        .unwrap_or_default();
    let new_after: Vec<_> = flows.new.iter().filter(|n| n.at >= fault_us).collect();
    Outcome {
        mode,
        fault,
        router,
        long: established.len(),
        survived,
        broken,
        broken_with_backend,
        broken_with_director,
        switched,
        moved,
        new: (new_after.len(), flows.new_failed(fault_us).len()),
        outage: flows.outage(fault_us),
        stall,
        notes: Vec::new(),
    }
}

impl Fault {
    /// Its short name in figure keys.
    pub fn key(self) -> &'static str {
        match self {
            Fault::Killed => "killed",
            Fault::Cable => "cable",
            Fault::Added => "added",
            Fault::Backend => "backend",
        }
    }
}

impl Mode {
    /// Its short name in figure keys.
    pub fn key(self) -> &'static str {
        match self {
            Mode::Anycast => "anycast",
            Mode::AnycastProxy => "proxy",
            Mode::Vrrp => "vrrp",
        }
    }
}

/// Every run's measures as figures (`MODE_FAULT_MEASURE`), the form the documentation quotes.
pub fn figures(outcomes: &[Outcome]) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for o in outcomes {
        let mut put = |measure: &str, v: serde_json::Value| {
            m.insert(format!("{}_{}_{measure}", o.mode.key(), o.fault.key()), v);
        };
        if let Some(r) = o.router {
            put("router_ms", (r.as_millis() as u64).into());
        }
        put("outage_ms", (o.outage.as_millis() as u64).into());
        put("new", o.new.0.into());
        put("new_failed", o.new.1.into());
        put("long", o.long.into());
        put("survived", o.survived.into());
        put("broken", o.broken.into());
        put("broken_with_rs", o.broken_with_backend.into());
        put("broken_with_director", o.broken_with_director.into());
        put("moved", o.moved.into());
        put("switched", o.switched.into());
        put("stall_ms", (o.stall.as_millis() as u64).into());
    }
    m
}

/// The human report: one row per run.
pub fn report(outcomes: &[Outcome]) -> String {
    let mut s = String::from(
        "== anycast: three directors announcing 192.0.2.10 through BGP (FRR, ECMP, BFD), holdfast nftables DR with mh\n   (and on the proxy plane); baseline: a keepalived VRRP pair with the nftables plane\n",
    );
    let _ = writeln!(
        s,
        "\n{:<22} {:<14} {:>9} {:>11} {:>9} {:>14} {:>7} {:>8} {:>9} {:>6} {:>9}",
        "scenario",
        "mode",
        "router",
        "new failed",
        "outage",
        "long survived",
        "broken",
        "with rs",
        "with dir",
        "moved",
        "switched"
    );
    for o in outcomes {
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        let _ = writeln!(
            s,
            "{:<22} {:<14} {:>9} {:>11} {:>9} {:>14} {:>7} {:>8} {:>9} {:>6} {:>9}",
            o.fault.name(),
            o.mode.name(),
            o.router.map_or("-".into(), ms),
            format!("{}/{}", o.new.1, o.new.0),
            ms(o.outage),
            format!("{}/{}", o.survived, o.long),
            o.broken,
            o.broken_with_backend,
            o.broken_with_director,
            o.moved,
            o.switched
        );
        for n in &o.notes {
            let _ = writeln!(s, "   note: {n}");
        }
    }
    s.push_str(
        "\nrouter: from the failure to the router's route changing (a path gone or added; for VRRP, the\n  address's MAC). outage: from the first failed new connection to the first success after the last.\n  long survived: connections established before the failure still answered by their first real\n  server at the end; broken: lost while their real server and the director holding them lived\n  (on the proxy: moved to another director by equal-cost routing); with rs: lost with a failed\n  real server; with dir: lost with the director whose proxy process held them; moved: survivors\n  that equal-cost routing moved to another director (they kept their real server); switched:\n  answers from another real server than the first (must be 0).\n",
    );
    s
}
