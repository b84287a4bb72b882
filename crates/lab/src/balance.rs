//! The balancing scenario: lb1 runs holdfast with the VIP and `virtual_server VIP 3306` on
//! its own proxy (no HAProxy) in front of two MariaDB servers, db1 checked with TCP_CHECK and
//! db2 with seed 000's MISC_CHECK script; the client writes through the VIP every 100 ms.
//! db2's server is killed — holdfast must remove it (or, with `inhibit_on_failure`, set it to
//! weight 0) — then restarted and readmitted. Every acknowledged write must be stored on one
//! of the two servers.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::client::{Attempt, longest_gap, now_us};
use crate::lab::Options;
use crate::services;

/// What the balancing run measured.
#[derive(Clone, Debug)]
pub struct BalanceOutcome {
    /// db2 kept at weight 0 instead of removed.
    pub inhibit: bool,
    /// Longest time without an acknowledged write.
    pub gap: Duration,
    /// Attempts that failed.
    pub failed: usize,
    /// Acknowledged writes.
    pub acked: usize,
    /// Rows stored on db1 and db2 together.
    pub stored: usize,
    /// Acknowledged writes stored nowhere (must be empty).
    pub lost: Vec<u64>,
    /// From db2's death to holdfast taking it out.
    pub removed: Option<Duration>,
    /// From db2's restart (answering) to holdfast taking it back.
    pub readmitted: Option<Duration>,
    /// `holdfast status --lvs` while db2 is out.
    pub lvs_failed: String,
    /// `holdfast status --lvs` after readmission.
    pub lvs_back: String,
}

fn conf(check: &Path, control: &Path, inhibit: bool) -> String {
    let inhibit = if inhibit {
        "        inhibit_on_failure\n"
    } else {
        ""
    };
    format!(
        "global_defs {{
    enable_script_security
    script_user root
    control_socket {control}
}}
{vip}virtual_server 10.88.0.100 3306 {{
    delay_loop 0.5
    lb_algo rr
    protocol TCP
    real_server 10.88.0.21 3306 {{
        weight 100
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
    real_server 10.88.0.22 3306 {{
        weight 100
{inhibit}        MISC_CHECK {{
            misc_path \"{check} 10.88.0.22\"
            misc_timeout 2
        }}
    }}
}}
",
        vip = crate::lab::VIP_INSTANCE,
        control = control.display(),
        check = check.display()
    )
}

fn lvs(bin: &Path, control: &Path) -> String {
    std::process::Command::new(bin)
        .args(["status", "--lvs", "-s"])
        .arg(control)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Runs the balancing scenario in a fresh topology.
pub fn run(opts: &Options, inhibit: bool) -> Result<BalanceOutcome, String> {
    let mut lab = crate::lab::topology(opts);
    let (lb1, db1, db2) = (lab.node("lb1"), lab.node("db1"), lab.node("db2"));
    let _db1 = services::mariadb(&mut lab, db1)?;
    let db2_proc = services::mariadb(&mut lab, db2)?;
    // Seed 000's check: the mysql client selecting now() on the server.
    let check = lab.file(
        "mysql_check.sh",
        "#!/bin/bash\nexec mariadb --no-defaults -u lab -plab -h \"$1\" --connect-timeout=1 -Nse 'select now()'\n",
    );
    let _ = std::process::Command::new("chmod")
        .args(["0755"])
        .arg(&check)
        .status();
    let control = lab.dir().join("control.sock");
    let mut lb = lab.holdfast(lb1, &conf(&check, &control, inhibit));
    lb.expect_line("(VI_1) Entering MASTER STATE", Duration::from_secs(20))?;
    let mut cl = crate::lab::start_client(&mut lab, opts)?;
    // A steady state first: 20 more acknowledged writes (2 s).
    cl.expect_count(crate::lab::ACKED, 20, Duration::from_secs(20))?;
    let (out_line, back_line) = if inhibit {
        (
            "Disabling service [10.88.0.22]:tcp:3306 of VS [10.88.0.100]:tcp:3306",
            "Enabling service [10.88.0.22]:tcp:3306 of VS [10.88.0.100]:tcp:3306",
        )
    } else {
        (
            "Removing service [10.88.0.22]:tcp:3306 from VS [10.88.0.100]:tcp:3306",
            "Adding service [10.88.0.22]:tcp:3306 to VS [10.88.0.100]:tcp:3306",
        )
    };
    let killed = Instant::now();
    let kill_us = now_us();
    db2_proc.signal("KILL");
    let removed = lb
        .try_wait_for_after(out_line, Some(killed), Duration::from_secs(15))
        .map(|t| t.saturating_duration_since(killed));
    let lvs_failed = lvs(&opts.bin, &control);
    let _db2_again = services::mariadb_start(&mut lab, db2)?;
    let restarted = Instant::now();
    let readmitted = lb
        .try_wait_for_after(back_line, Some(restarted), Duration::from_secs(15))
        .map(|t| t.saturating_duration_since(restarted));
    let lvs_back = lvs(&opts.bin, &control);
    let crate::lab::Writes {
        attempts,
        stored,
        lost,
    } = crate::lab::finish_client(&lab, opts, &mut cl, &[db1, db2])?;
    let after_kill: Vec<Attempt> = attempts
        .iter()
        .filter(|a| a.sent_us + 1_000_000 >= kill_us)
        .cloned()
        .collect();
    Ok(BalanceOutcome {
        inhibit,
        gap: longest_gap(&after_kill),
        failed: attempts.iter().filter(|a| a.acked_us.is_none()).count(),
        acked: attempts.iter().filter(|a| a.acked_us.is_some()).count(),
        stored: stored.len(),
        lost,
        removed,
        readmitted,
        lvs_failed,
        lvs_back,
    })
}

/// The human report.
pub fn report(outcomes: &[BalanceOutcome]) -> String {
    let mut s = String::from("== balance: holdfast's proxy in front of db1 + db2\n");
    for o in outcomes {
        let mode = if o.inhibit {
            "inhibit_on_failure"
        } else {
            "removal"
        };
        let _ = writeln!(s, "-- db2 killed and restarted ({mode})");
        let _ = writeln!(s, "   while db2 is down (holdfast status --lvs):");
        for l in o.lvs_failed.lines() {
            let _ = writeln!(s, "     {l}");
        }
        let _ = writeln!(s, "   after db2 is back:");
        for l in o.lvs_back.lines() {
            let _ = writeln!(s, "     {l}");
        }
    }
    let _ = writeln!(
        s,
        "\n{:<20} {:>9} {:>7} {:>7} {:>7} {:>5} {:>9} {:>11}",
        "balance", "gap", "failed", "acked", "stored", "lost", "db2-out", "db2-back"
    );
    let secs = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    for o in outcomes {
        let _ = writeln!(
            s,
            "{:<20} {:>9} {:>7} {:>7} {:>7} {:>5} {:>9} {:>11}",
            if o.inhibit {
                "inhibit_on_failure"
            } else {
                "removal"
            },
            format!("{:.2} s", o.gap.as_secs_f64()),
            o.failed,
            o.acked,
            o.stored,
            o.lost.len(),
            secs(o.removed),
            secs(o.readmitted)
        );
    }
    s
}
