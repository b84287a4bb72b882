//! The failover lab: lb1/lb2 (HAProxy + holdfast or keepalived), db1 (MariaDB), a client
//! writing through the VIP every 100 ms; one injected failure per run; a timeline and a table.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client::{Attempt, longest_gap, now_us};
use crate::netns::{Lab, Proc};
use crate::services::{self, Daemon};

/// The injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// SIGTERM to the master's daemon (priority 0 handover).
    Graceful,
    /// SIGKILL to the master's daemon.
    Kill9,
    /// The master's cable is cut (its link on the switch goes down).
    Crash,
    /// The local proxy on the master dies; the tracker must move the VIP.
    ProxyDies,
    /// lb1 and lb2 stop hearing each other for 6 s (both still reach the client and the
    /// database): both become MASTER, then the partition heals and one MASTER remains.
    SplitBrain,
}

impl Scenario {
    /// All scenarios, in report order.
    pub const ALL: [Scenario; 5] = [
        Scenario::Graceful,
        Scenario::Kill9,
        Scenario::Crash,
        Scenario::ProxyDies,
        Scenario::SplitBrain,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Graceful => "graceful-stop",
            Scenario::Kill9 => "kill-9",
            Scenario::Crash => "node-crash",
            Scenario::ProxyDies => "proxy-dies",
            Scenario::SplitBrain => "partition-heal",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Lab options.
#[derive(Clone, Debug)]
pub struct Options {
    /// The holdfast binary.
    pub bin: PathBuf,
    /// Daemon on lb1 (the first master).
    pub lb1: Daemon,
    /// Daemon on lb2 (the node taking over).
    pub lb2: Daemon,
    /// `advert_int`: VRRPv3 below a second (0.1 s with `--fast`, down to 0.01 s), VRRPv2 with
    /// 1 s as the seeds.
    pub advert: Duration,
    /// How often the client writes (100 ms; 5 ms to see gaps well under 100 ms).
    pub client: Duration,
    /// How long the client writes.
    pub duration: Duration,
    /// holdfast's own proxy (`virtual_server`) instead of HAProxy on nodes running holdfast;
    /// `proxy-dies` then kills holdfast itself, its proxy's process.
    pub own_proxy: bool,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Scenario.
    pub scenario: Scenario,
    /// Longest time without an acknowledged write.
    pub gap: Duration,
    /// Attempts that failed or timed out.
    pub failed: usize,
    /// Acknowledged writes.
    pub acked: usize,
    /// Rows stored in the database afterwards.
    pub stored: usize,
    /// Acknowledged writes missing from the database (must be empty).
    pub lost: Vec<u64>,
    /// From the failure to lb2 entering MASTER.
    pub vip_move: Option<Duration>,
    /// From the failure to lb2's first gratuitous ARP.
    pub garp: Option<Duration>,
    /// Timeline lines, relative to the failure.
    pub timeline: Vec<String>,
    /// From lb2's first gratuitous ARP on the wire to the client's first acknowledged write
    /// after the failure: what the client's own path costs once the VIP has moved (new connection
    /// through lb2's proxy, one insert) — the part of the gap no VRRP daemon can shorten.
    pub reconnect: Option<Duration>,
    /// What VRRP may add to that: the master-down interval (3 × advert + skew, lb2 at
    /// priority 100) and one client period.
    pub allowed: Duration,
}

impl Outcome {
    /// The gap beyond the client's own reconnection, if it was measured.
    pub fn over_limit(&self) -> Option<Duration> {
        self.reconnect.map(|r| self.gap.saturating_sub(r))
    }
}

/// The wall-clock microseconds of the first gratuitous ARP for the VIP at or after `since_us`
/// in tcpdump's `-tt` output (`1765099999.123456 ARP, Request who-has 10.88.0.100 tell
/// 10.88.0.100, …`, or a reply saying where it is).
pub fn first_garp(dump: &str, since_us: u64) -> Option<u64> {
    dump.lines().find_map(|l| {
        let (t, rest) = l.split_once(' ')?;
        // tcpdump writes a request's target MAC when it is set (a GARP's is broadcast).
        let gratuitous = (rest.contains(&format!("who-has {VIP} "))
            && rest.contains(&format!("tell {VIP},")))
            || rest.contains(&format!("Reply {VIP} is-at"));
        let (secs, frac) = t.split_once('.')?;
        let us = secs.parse::<u64>().ok()? * 1_000_000 + frac.parse::<u64>().ok()?;
        (gratuitous && us >= since_us).then_some(us)
    })
}

/// The master-down interval of lb2 (priority 100) with `advert`, plus one client period: what
/// failing over may add to the client's own path after a silent loss of the master.
pub fn allowed(advert: Duration, client: Duration) -> Duration {
    // Skew: (256 - priority) / 256 of the advert interval (VRRPv3), of a second (VRRPv2).
    let unit = if advert < Duration::from_secs(1) {
        advert
    } else {
        Duration::from_secs(1)
    };
    advert * 3 + unit * 156 / 256 + client
}

/// The lab's hosts on 10.88.0.0/24.
pub(crate) const HOSTS: [(&str, u8); 5] = [
    ("lb1", 11),
    ("lb2", 12),
    ("db1", 21),
    ("db2", 22),
    ("client", 31),
];
const VIP: &str = "10.88.0.100";

fn daemon(lab: &mut Lab, n: usize, d: Daemon, prio: u8, advert: Duration, own_proxy: bool) -> Proc {
    let script = services::check_script(lab);
    let conf = services::lb_conf(
        d,
        prio,
        &format!("{VIP}/24"),
        advert,
        &script,
        own_proxy.then_some("10.88.0.21"),
    );
    match d {
        Daemon::Holdfast => lab.holdfast(n, &conf),
        Daemon::Keepalived => lab.keepalived(n, &conf),
    }
}

/// Isolated bridge ports do not forward to each other, only to the other ports.
fn isolate(lab: &Lab, nodes: &[usize], on: bool) {
    for &n in nodes {
        lab.exec_switch(&[
            "bridge",
            "link",
            "set",
            "dev",
            &lab.cable(n),
            "isolated",
            if on { "on" } else { "off" },
        ]);
    }
}

/// The single-node VRRP instance holding the VIP, for scenarios with one load balancer.
pub(crate) const VIP_INSTANCE: &str = "vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        10.88.0.100/24
    }
}
";

/// A fresh topology of the lab's hosts.
pub(crate) fn topology(opts: &Options) -> Lab {
    let hosts: Vec<(String, u8)> = HOSTS.iter().map(|(n, h)| (n.to_string(), *h)).collect();
    Lab::with_hosts("10.88.0", &hosts).with_bin(opts.bin.clone())
}

/// What the client's line for an acknowledged write holds (a failed one has no `acked`).
pub(crate) const ACKED: &str = "\"acked\":";

/// How long the client waits for one write: a second at the default pace; a fast client
/// gives up after four of its periods (at least 20 ms) and reconnects, so that a write lost
/// with the old master costs a few periods, not TCP's retransmission timer.
pub fn client_timeout(every: Duration) -> Duration {
    if every >= Duration::from_millis(100) {
        Duration::from_secs(1)
    } else {
        (every * 4).max(Duration::from_millis(20))
    }
}

/// Starts the client writing through the VIP every `opts.client` and waits for its first
/// acknowledged write.
pub(crate) fn start_client(lab: &mut Lab, opts: &Options) -> Result<Proc, String> {
    let bin = opts.bin.display().to_string();
    let secs = opts.duration.as_secs().to_string();
    let every = opts.client.as_millis().max(1).to_string();
    let timeout = client_timeout(opts.client).as_millis().to_string();
    let client = lab.node("client");
    let mut cl = lab.spawn(
        client,
        "client",
        &[
            &bin,
            "lab-client",
            "--host",
            VIP,
            "--interval-ms",
            &every,
            "--timeout-ms",
            &timeout,
            "--duration-s",
            &secs,
        ],
    );
    cl.expect_line(ACKED, Duration::from_secs(20))?;
    Ok(cl)
}

/// What the client did and what the databases hold.
pub(crate) struct Writes {
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// Distinct rows stored on the database nodes.
    pub stored: Vec<u64>,
    /// Acknowledged rows stored nowhere.
    pub lost: Vec<u64>,
}

/// Waits for the client to finish and collects its attempts and the rows stored on the
/// given database nodes.
pub(crate) fn finish_client(
    lab: &Lab,
    opts: &Options,
    cl: &mut Proc,
    dbs: &[usize],
) -> Result<Writes, String> {
    if !cl.wait_exit(opts.duration + Duration::from_secs(30)) {
        return Err("client did not finish".into());
    }
    let attempts: Vec<Attempt> = cl.log().lines().filter_map(Attempt::parse).collect();
    let mut stored: Vec<u64> = Vec::new();
    for &n in dbs {
        let text = services::sql(
            &services::mariadb_socket(lab, n),
            "SELECT id FROM lab.t ORDER BY id",
        )?;
        stored.extend(text.lines().filter_map(|l| l.trim().parse::<u64>().ok()));
    }
    stored.sort_unstable();
    stored.dedup();
    let lost = attempts
        .iter()
        .filter(|a| a.acked_us.is_some() && stored.binary_search(&a.id).is_err())
        .map(|a| a.id)
        .collect();
    Ok(Writes {
        attempts,
        stored,
        lost,
    })
}

/// Runs one scenario in a fresh topology (cleaned up on return).
pub fn run(opts: &Options, scenario: Scenario) -> Result<Outcome, String> {
    let mut lab = topology(opts);
    let (lb1, lb2, db1) = (lab.node("lb1"), lab.node("lb2"), lab.node("db1"));
    let _db = services::mariadb(&mut lab, db1)?;
    let own1 = opts.own_proxy && opts.lb1 == Daemon::Holdfast;
    let own2 = opts.own_proxy && opts.lb2 == Daemon::Holdfast;
    let proxy1 = (!own1).then(|| services::haproxy(&mut lab, lb1, "10.88.0.21"));
    let _proxy2 = (!own2).then(|| services::haproxy(&mut lab, lb2, "10.88.0.21"));
    let mut d1 = daemon(&mut lab, lb1, opts.lb1, 150, opts.advert, own1);
    d1.expect_line("(VI_1) Entering MASTER STATE", Duration::from_secs(20))?;
    let mut d2 = daemon(&mut lab, lb2, opts.lb2, 100, opts.advert, own2);
    d2.expect_line("(VI_1) Entering BACKUP STATE", Duration::from_secs(20))?;
    let mut cl = start_client(&mut lab, opts)?;
    // A steady state before the fault: 3 s more of acknowledged writes.
    let steady = (3_000 / opts.client.as_millis().max(1)) as usize;
    cl.expect_count(ACKED, steady, Duration::from_secs(20))?;
    // Gratuitous ARPs as the wire sees them (tcpdump's own timestamps): where the VIP moved,
    // whenever each daemon's log line about it is read.
    let mut arp = lab.spawn(
        0,
        "tcpdump-arp",
        &["tcpdump", "-l", "-n", "-tt", "-i", "br0", "arp"],
    );
    arp.expect_line("listening on br0", Duration::from_secs(10))?;
    let (inject_at, inject_us) = (Instant::now(), now_us());
    match scenario {
        Scenario::Graceful => d1.signal("TERM"),
        Scenario::Kill9 => d1.signal("KILL"),
        Scenario::Crash => lab.exec_switch(&["ip", "link", "set", &lab.cable(lb1), "down"]),
        Scenario::ProxyDies => match &proxy1 {
            Some(p) => p.signal("KILL"),
            // holdfast's own proxy lives in the holdfast process.
            None => d1.signal("KILL"),
        },
        // Isolated bridge ports do not forward to each other, only to the others.
        Scenario::SplitBrain => {
            isolate(&lab, &[lb1, lb2], true);
        }
    }
    let took = d2
        .try_wait_for_after(
            "(VI_1) Entering MASTER STATE",
            Some(inject_at),
            Duration::from_secs(20),
        )
        .ok_or_else(|| {
            format!(
                "lb2 did not become MASTER after the failure; log:\n{}",
                d2.log()
            )
        })?;
    let vip_move = took.checked_duration_since(inject_at);
    let mut healed = None;
    if scenario == Scenario::SplitBrain {
        std::thread::sleep(
            (inject_at + Duration::from_secs(6)).saturating_duration_since(Instant::now()),
        );
        isolate(&lab, &[lb1, lb2], false);
        let heal_at = Instant::now();
        let back = d2
            .try_wait_for_after(
                "(VI_1) Entering BACKUP STATE",
                Some(heal_at),
                Duration::from_secs(10),
            )
            .ok_or_else(|| format!("after the heal lb2 stayed MASTER; log:\n{}", d2.log()))?;
        if d1
            .try_wait_for_after(
                "(VI_1) Entering BACKUP STATE",
                Some(inject_at),
                Duration::from_millis(1),
            )
            .is_some()
        {
            return Err("lb1 left MASTER during the partition".into());
        }
        healed = Some((
            heal_at.saturating_duration_since(inject_at),
            back.saturating_duration_since(inject_at),
        ));
    }
    let garp = d2
        .lines
        .iter()
        .find(|(t, l)| *t >= took && l.contains("Sending gratuitous ARP on"))
        .map(|(t, _)| t.saturating_duration_since(inject_at))
        .or_else(|| {
            d2.try_wait_for("Sending gratuitous ARP on", Duration::from_secs(2))?;
            d2.lines
                .iter()
                .find(|(t, l)| *t >= took && l.contains("Sending gratuitous ARP on"))
                .map(|(t, _)| t.saturating_duration_since(inject_at))
        });
    let Writes {
        attempts,
        stored,
        lost,
    } = finish_client(&lab, opts, &mut cl, &[db1])?;
    let rel = |us: u64| (us as i64 - inject_us as i64) as f64 / 1e6;
    let mut timeline = vec![format!(
        "{:+8.3}s  failure injected: {}",
        0.0,
        scenario.name()
    )];
    let first_fail = attempts
        .iter()
        .find(|a| a.sent_us >= inject_us.saturating_sub(1_000_000) && a.acked_us.is_none());
    if let Some(f) = first_fail {
        timeline.push(format!(
            "{:+8.3}s  first failed write (row {})",
            rel(f.sent_us),
            f.id
        ));
    }
    if let Some(v) = vip_move {
        timeline.push(format!(
            "{:+8.3}s  lb2 Entering MASTER STATE",
            v.as_secs_f64()
        ));
    }
    if let Some(g) = garp {
        timeline.push(format!(
            "{:+8.3}s  lb2 first gratuitous ARP",
            g.as_secs_f64()
        ));
    }
    if let Some((heal, back)) = healed {
        timeline.push(format!("{:+8.3}s  partition healed", heal.as_secs_f64()));
        timeline.push(format!(
            "{:+8.3}s  lb2 Entering BACKUP STATE (one MASTER again)",
            back.as_secs_f64()
        ));
    }
    let again = attempts.iter().find(|a| {
        a.sent_us > inject_us && a.acked_us.is_some() && first_fail.is_some_and(|f| a.id > f.id)
    });
    let arp_log = arp.log();
    let wire_garp = first_garp(&arp_log, inject_us);
    if let Some(t) = wire_garp {
        timeline.push(format!(
            "{:+8.3}s  first gratuitous ARP for the VIP on the wire",
            rel(t)
        ));
    } else {
        timeline.push(format!(
            "   no gratuitous ARP for the VIP on the wire after the failure; tcpdump said: {}",
            arp_log
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    let reconnect = match (again.and_then(|a| a.acked_us), wire_garp) {
        (Some(acked), Some(moved)) => Some(Duration::from_micros(acked.saturating_sub(moved))),
        _ => None,
    };
    if let Some(r) = again {
        timeline.push(format!(
            "{:+8.3}s  first write acknowledged again (row {})",
            rel(r.acked_us.unwrap_or(r.sent_us)),
            r.id
        ));
    }
    // Lines are "+S.SSSs  what": order them by time.
    timeline.sort_by(|a, b| {
        let t = |l: &str| {
            l.trim()
                .split('s')
                .next()
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        t(a).total_cmp(&t(b))
    });
    Ok(Outcome {
        scenario,
        gap: longest_gap(&attempts),
        failed: attempts.iter().filter(|a| a.acked_us.is_none()).count(),
        acked: attempts.iter().filter(|a| a.acked_us.is_some()).count(),
        stored: stored.len(),
        lost,
        vip_move,
        garp,
        timeline,
        reconnect,
        allowed: allowed(opts.advert, opts.client),
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.3} s", d.as_secs_f64()))
}

/// The human report: timelines, then one table row per outcome. `reconnect` is the client's
/// own path once the VIP has moved (the physical limit), `over` the rest of the gap, `allowed`
/// what VRRP may take after a silent loss (3 × advert + skew + one client period).
pub fn report(title: &str, outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "== {title}");
    for o in outcomes {
        let _ = writeln!(s, "-- {}", o.scenario.name());
        for l in &o.timeline {
            let _ = writeln!(s, "   {l}");
        }
    }
    let _ = writeln!(
        s,
        "\n{:<15} {:>9} {:>7} {:>7} {:>7} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "scenario",
        "gap",
        "failed",
        "acked",
        "stored",
        "lost",
        "vip-move",
        "garp",
        "reconnect",
        "over",
        "allowed"
    );
    for o in outcomes {
        let _ = writeln!(
            s,
            "{:<15} {:>9} {:>7} {:>7} {:>7} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
            o.scenario.name(),
            format!("{:.3} s", o.gap.as_secs_f64()),
            o.failed,
            o.acked,
            o.stored,
            o.lost.len(),
            secs(o.vip_move),
            secs(o.garp),
            secs(o.reconnect),
            secs(o.over_limit()),
            secs(Some(o.allowed))
        );
    }
    s
}

/// One JSON object per outcome.
pub fn json(title: &str, outcomes: &[Outcome]) -> String {
    let rows: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "run": title,
                "scenario": o.scenario.name(),
                "gap_s": o.gap.as_secs_f64(),
                "failed": o.failed,
                "acked": o.acked,
                "stored": o.stored,
                "lost": o.lost,
                "vip_move_s": o.vip_move.map(|d| d.as_secs_f64()),
                "garp_s": o.garp.map(|d| d.as_secs_f64()),
                "reconnect_s": o.reconnect.map(|d| d.as_secs_f64()),
                "over_s": o.over_limit().map(|d| d.as_secs_f64()),
                "allowed_s": o.allowed.as_secs_f64(),
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrrp_may_add_the_master_down_interval_and_one_client_period() {
        let ms = Duration::from_millis;
        // VRRPv3 at 10 ms, lb2 at 100: 30 ms + 156/256 × 10 ms (6.09 ms) + 5 ms.
        assert_eq!(
            allowed(ms(10), ms(5)),
            ms(41) + Duration::from_nanos(93_750)
        );
        // VRRPv2 at 1 s: skew is of a second.
        assert_eq!(
            allowed(ms(1000), ms(100)),
            ms(3100) + ms(609) + Duration::from_micros(375)
        );
        assert_eq!(client_timeout(ms(5)), ms(20));
        let dump = "1765000000.000100 ARP, Request who-has 10.88.0.100 (ff:ff:ff:ff:ff:ff) tell 10.88.0.100, length 28\n\
                    1765000001.250000 ARP, Request who-has 10.88.0.31 tell 10.88.0.100, length 28\n\
                    1765000001.500000 ARP, Request who-has 10.88.0.100 (ff:ff:ff:ff:ff:ff) tell 10.88.0.100, length 28\n";
        assert_eq!(
            first_garp(dump, 1_765_000_001_000_000),
            Some(1_765_000_001_500_000)
        );
        assert_eq!(first_garp(dump, 1_765_000_002_000_000), None);
        assert_eq!(client_timeout(ms(100)), ms(1000));
    }
}
