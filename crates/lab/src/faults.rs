//! The fault-injection scenario: lb1 (priority 150) and lb2 (100) run holdfast with VRRPv3 at
//! 0.1 s in front of HAProxy and db1 while the client writes through the VIP every 100 ms, and
//! one fault follows another:
//!
//! - SIGSTOP of the master for longer than the master-down interval, then SIGCONT: the woken
//!   master must take its role back cleanly (lb2 yields);
//! - kill -9 at random moments during transitions: the master, then the new master while it
//!   is taking over, then the old master while it is starting and preempting again;
//! - the master's cable cut and healed repeatedly, for random lengths of time;
//! - disk full: keepalived.data and keepalived.stats on a full device (SIGUSR1/SIGUSR2 fail
//!   with ENOSPC and are logged), then another failure the daemon must still handle;
//! - all along, `notify_master` and `notify_backup` scripts that hang: transitions must not
//!   wait for them.
//!
//! After every fault is healed exactly one node holds the VIP, stays so for a second, and the
//! two daemons' last state lines agree (one MASTER, one BACKUP); at the end every write the
//! client saw acknowledged is in the database. The random delays come from a seed the report
//! prints (`HOLDFAST_LAB_SEED` repeats a run).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::client::{longest_gap, now_us};
use crate::lab::{Options, finish_client, start_client, topology};
use crate::netns::{Lab, Proc};
use crate::services::{self, Daemon};

const VIP: &str = "10.88.0.100/24";
const SEC: Duration = Duration::from_secs(1);

/// One healed fault.
#[derive(Clone, Debug)]
pub struct Step {
    /// What was done.
    pub fault: String,
    /// From the heal (or the fault, when nothing is healed) to one stable MASTER.
    pub settled: Duration,
    /// The node left holding the VIP.
    pub holder: &'static str,
}

/// What the fault run measured.
#[derive(Clone, Debug)]
pub struct FaultsOutcome {
    /// The seed of the random delays.
    pub seed: u64,
    /// Every fault, in order.
    pub steps: Vec<Step>,
    /// Notify scripts still hanging at the end (they must not have held anything up).
    pub hanging_notifies: usize,
    /// Longest time without an acknowledged write.
    pub gap: Duration,
    /// Attempts that failed.
    pub failed: usize,
    /// Acknowledged writes.
    pub acked: usize,
    /// Rows stored.
    pub stored: usize,
    /// Acknowledged writes missing from the database (must be empty).
    pub lost: Vec<u64>,
}

/// xorshift64*: enough to spread fault times, and repeatable from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A duration uniformly in `[lo, hi)`.
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = (hi - lo).as_micros().max(1) as u64;
        lo + Duration::from_micros(self.next() % span)
    }
}

/// The two load balancers and how to restart them.
struct Pair {
    conf: [String; 2],
    node: [usize; 2],
    d: [Proc; 2],
    /// Not killed since it was last started.
    alive: [bool; 2],
}

impl Pair {
    fn start(lab: &mut Lab, node: usize, conf: &str) -> Proc {
        lab.holdfast(node, conf)
    }

    fn restart(&mut self, lab: &mut Lab, i: usize) {
        self.d[i] = Pair::start(lab, self.node[i], &self.conf[i]);
        self.alive[i] = true;
    }

    fn kill(&mut self, i: usize) {
        self.d[i].signal("KILL");
        self.alive[i] = false;
    }

    /// The last state each daemon logged.
    fn states(&mut self) -> [Option<&'static str>; 2] {
        let mut out = [None, None];
        for (i, d) in self.d.iter_mut().enumerate() {
            d.drain();
            out[i] = d.lines.iter().rev().find_map(|(_, l)| {
                ["MASTER", "BACKUP", "FAULT"]
                    .into_iter()
                    .find(|s| l.contains(&format!("(VI_1) Entering {s} STATE")))
            });
        }
        out
    }
}

const NAMES: [&str; 2] = ["lb1", "lb2"];

/// Waits until exactly `want` holds the VIP for a second without change and the daemons'
/// last state lines say `want` is MASTER and the other, if running, BACKUP; returns how long
/// it took.
fn settle(lab: &Lab, pair: &mut Pair, want: usize, from: Instant) -> Result<Duration, String> {
    let deadline = Instant::now() + 15 * SEC;
    let mut stable_since: Option<Instant> = None;
    loop {
        let holders: Vec<usize> = (0..2).filter(|&i| lab.has(pair.node[i], VIP)).collect();
        let states = pair.states();
        let ok = holders == [want]
            && states[want] == Some("MASTER")
            && (!pair.alive[1 - want] || states[1 - want] == Some("BACKUP"));
        if ok {
            let since = *stable_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= SEC {
                return Ok(since.saturating_duration_since(from));
            }
        } else {
            stable_since = None;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no single stable MASTER ({} wanted): VIP on {:?}, last states {:?}\n-- lb1:\n{}\n-- lb2:\n{}",
                NAMES[want],
                holders.iter().map(|&i| NAMES[i]).collect::<Vec<_>>(),
                states,
                pair.d[0].log(),
                pair.d[1].log()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `d` to log `line` after `since`.
fn expect_after(d: &mut Proc, line: &str, since: Instant) -> Result<Instant, String> {
    d.try_wait_for_after(line, Some(since), 10 * SEC)
        .ok_or_else(|| format!("no {line:?} after the fault; log:\n{}", d.log()))
}

/// lb_conf with notify scripts that never return on their own.
fn conf(lab: &Lab, priority: u8) -> String {
    let hang = lab.file(
        "hang.sh",
        "#!/bin/sh\n# A notify script that hangs (the lab's namespaces end it).\nexec sleep 600\n",
    );
    let _ = std::process::Command::new("chmod")
        .arg("0755")
        .arg(&hang)
        .status();
    let script = services::check_script(lab);
    let base = services::lb_conf(
        Daemon::Holdfast,
        priority,
        VIP,
        Duration::from_millis(100),
        &script,
        None,
    );
    let hang = hang.display();
    base.replacen(
        "    virtual_ipaddress {",
        &format!(
            "    notify_master \"{hang}\"\n    notify_backup \"{hang}\"\n    virtual_ipaddress {{"
        ),
        1,
    )
}

/// Runs the fault sequence in a fresh topology (cleaned up on return).
pub fn run(opts: &Options) -> Result<FaultsOutcome, String> {
    let seed = std::env::var("HOLDFAST_LAB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_us() | 1);
    // A failed run names its seed too, so that its fault times can be repeated.
    run_seeded(opts, seed).map_err(|e| {
        format!("{e}\n(seed {seed}: HOLDFAST_LAB_SEED={seed} repeats these fault times)")
    })
}

fn run_seeded(opts: &Options, seed: u64) -> Result<FaultsOutcome, String> {
    let mut rng = Rng(seed);
    let mut lab = topology(opts);
    let (lb1, lb2, db1) = (lab.node("lb1"), lab.node("lb2"), lab.node("db1"));
    let _db = services::mariadb(&mut lab, db1)?;
    let _p1 = services::haproxy(&mut lab, lb1, "10.88.0.21");
    let _p2 = services::haproxy(&mut lab, lb2, "10.88.0.21");
    let confs = [conf(&lab, 150), conf(&lab, 100)];
    let mut d1 = Pair::start(&mut lab, lb1, &confs[0]);
    d1.expect_line("(VI_1) Entering MASTER STATE", 20 * SEC)?;
    let d2 = Pair::start(&mut lab, lb2, &confs[1]);
    let mut pair = Pair {
        conf: confs,
        node: [lb1, lb2],
        d: [d1, d2],
        alive: [true, true],
    };
    pair.d[1].expect_line("(VI_1) Entering BACKUP STATE", 20 * SEC)?;
    let mut steps = Vec::new();
    let mut cl = start_client(&mut lab, opts)?;
    settle(&lab, &mut pair, 0, Instant::now())?;

    // SIGSTOP the master past the down interval (3 × 0.1 s + skew), then SIGCONT.
    let stop_for = rng.between(SEC, 3 * SEC);
    let t = Instant::now();
    pair.d[0].signal("STOP");
    expect_after(&mut pair.d[1], "(VI_1) Entering MASTER STATE", t)?;
    std::thread::sleep(stop_for.saturating_sub(t.elapsed()));
    let heal = Instant::now();
    pair.d[0].signal("CONT");
    steps.push(Step {
        fault: format!("SIGSTOP master {:.1} s, SIGCONT", stop_for.as_secs_f64()),
        settled: settle(&lab, &mut pair, 0, heal)?,
        holder: NAMES[0],
    });

    // kill -9 during transitions, three rounds.
    for round in 0..3 {
        // The master dies; lb2 takes over and is killed at a random moment of that.
        let t = Instant::now();
        pair.kill(0);
        let mid = rng.between(Duration::ZERO, Duration::from_millis(800));
        std::thread::sleep(mid);
        pair.kill(1);
        let _ = pair.d[0].wait_exit(5 * SEC);
        let _ = pair.d[1].wait_exit(5 * SEC);
        // lb2 comes back first and becomes MASTER alone; lb1 comes back, and is killed at a
        // random moment while it starts and preempts.
        pair.restart(&mut lab, 1);
        let back = Instant::now();
        expect_after(&mut pair.d[1], "(VI_1) Entering MASTER STATE", back)?;
        pair.restart(&mut lab, 0);
        let during = rng.between(Duration::ZERO, Duration::from_millis(1500));
        std::thread::sleep(during);
        pair.kill(0);
        let _ = pair.d[0].wait_exit(5 * SEC);
        steps.push(Step {
            fault: format!(
                "kill -9 round {}: master, new master after {:.2} s; restarted lb1 after {:.2} s",
                round + 1,
                mid.as_secs_f64(),
                during.as_secs_f64()
            ),
            settled: settle(&lab, &mut pair, 1, t)?,
            holder: NAMES[1],
        });
        pair.restart(&mut lab, 0);
        let t = Instant::now();
        steps.push(Step {
            fault: format!("lb1 restarted (round {})", round + 1),
            settled: settle(&lab, &mut pair, 0, t)?,
            holder: NAMES[0],
        });
    }

    // The master's cable cut and healed, five times.
    for _ in 0..5 {
        let cut = rng.between(Duration::from_millis(200), 2 * SEC);
        let cable = lab.cable(lb1);
        lab.exec_switch(&["ip", "link", "set", &cable, "down"]);
        std::thread::sleep(cut);
        lab.exec_switch(&["ip", "link", "set", &cable, "up"]);
        let heal = Instant::now();
        steps.push(Step {
            fault: format!("lb1's cable cut for {:.2} s", cut.as_secs_f64()),
            settled: settle(&lab, &mut pair, 0, heal)?,
            holder: NAMES[0],
        });
    }

    // Disk full: the data and stats files on /dev/full.
    for f in ["keepalived.data", "keepalived.stats"] {
        let p = lab.dir().join(f);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink("/dev/full", &p).map_err(|e| format!("symlink {f}: {e}"))?;
    }
    let t = Instant::now();
    pair.d[0].signal("USR1");
    pair.d[0].signal("USR2");
    for f in ["keepalived.data", "keepalived.stats"] {
        expect_after(
            &mut pair.d[0],
            &format!("cannot write {}", lab.dir().join(f).display()),
            t,
        )?;
    }
    // Still in charge: a cut it must notice and a heal it must recover from.
    let cable = lab.cable(lb1);
    lab.exec_switch(&["ip", "link", "set", &cable, "down"]);
    expect_after(&mut pair.d[1], "(VI_1) Entering MASTER STATE", t)?;
    lab.exec_switch(&["ip", "link", "set", &cable, "up"]);
    let heal = Instant::now();
    steps.push(Step {
        fault: "disk full (SIGUSR1/SIGUSR2 → ENOSPC), then a cable cut".into(),
        settled: settle(&lab, &mut pair, 0, heal)?,
        holder: NAMES[0],
    });

    // The hanging notify scripts are still there: nothing waited for them.
    let hanging_notifies = [lb1, lb2]
        .iter()
        .flat_map(|&n| lab.pids(n))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x00600\x00")
        })
        .count();

    let w = finish_client(&lab, opts, &mut cl, &[db1])?;
    Ok(FaultsOutcome {
        seed,
        steps,
        hanging_notifies,
        gap: longest_gap(&w.attempts),
        failed: w.attempts.iter().filter(|a| a.acked_us.is_none()).count(),
        acked: w.attempts.iter().filter(|a| a.acked_us.is_some()).count(),
        stored: w.stored.len(),
        lost: w.lost,
    })
}

/// The human report.
pub fn report(o: &FaultsOutcome) -> String {
    let mut s = format!(
        "== faults: holdfast on lb1 + lb2 (VRRPv3, 0.1 s), HAProxy, db1; seed {} (HOLDFAST_LAB_SEED)\n",
        o.seed
    );
    let _ = writeln!(s, "{:<78} {:>8}  MASTER", "fault", "settled");
    for st in &o.steps {
        let _ = writeln!(
            s,
            "{:<78} {:>6.2} s  {}",
            st.fault,
            st.settled.as_secs_f64(),
            st.holder
        );
    }
    let _ = writeln!(
        s,
        "notify_master/notify_backup scripts still hanging at the end: {} (transitions did not wait)",
        o.hanging_notifies
    );
    let _ = writeln!(
        s,
        "writes: {} acknowledged, {} failed, {} stored, {} lost; longest gap {:.2} s",
        o.acked,
        o.failed,
        o.stored,
        o.lost.len(),
        o.gap.as_secs_f64()
    );
    s
}
