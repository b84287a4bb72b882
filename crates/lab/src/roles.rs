//! The database-roles scenario: db1 is a MariaDB primary, db2 its replica; lb1 runs holdfast
//! with the VIP and two virtual servers on its own proxy — port 3306 to the single writable
//! server (MYSQL_CHECK `require_writable`, `fo`), port 3307 to the replica while it is
//! read-only and within 2 s of lag (`rise 3`). The client writes through VIP:3306 every
//! 100 ms. The replica's SQL thread is stopped (drained from 3307) and started (readmitted
//! after three passing checks); then the operator promotes db2 by hand and 3306 follows
//! without a restart. Every acknowledged write must be stored on db1 or db2.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::client::longest_gap;
use crate::lab::Options;
use crate::services;

/// What the roles run measured.
#[derive(Clone, Debug)]
pub struct RolesOutcome {
    /// From stopping the replica's SQL thread to its removal from 3307.
    pub drained: Option<Duration>,
    /// From starting it again to its readmission to 3307.
    pub readmitted: Option<Duration>,
    /// From the promotion to db2 being the writer on 3306.
    pub switched: Option<Duration>,
    /// The old primary, restarted (writable again, and stale), was held out of 3306.
    pub restarted_held: bool,
    /// Longest time without an acknowledged write (the whole run).
    pub gap: Duration,
    /// Failed attempts.
    pub failed: usize,
    /// Acknowledged writes.
    pub acked: usize,
    /// Distinct rows stored on db1 and db2.
    pub stored: usize,
    /// Acknowledged writes stored nowhere (must be empty).
    pub lost: Vec<u64>,
}

fn check(gate: &str) -> String {
    format!(
        "        MYSQL_CHECK {{\n            user lab\n            password lab\n{gate}            connect_timeout 1\n            retry 0\n        }}\n"
    )
}

fn conf() -> String {
    let vip = crate::lab::VIP_INSTANCE;
    let writer = check("            require_writable\n");
    let reader = check(
        "            require_read_only\n            max_replication_lag 2\n            rise 3\n",
    );
    format!(
        "{vip}virtual_server 10.88.0.100 3306 {{
    delay_loop 0.2
    lb_algo fo
    real_server 10.88.0.21 3306 {{
        weight 2
        readmit manual
{writer}    }}
    real_server 10.88.0.22 3306 {{
        weight 1
{writer}    }}
}}
virtual_server 10.88.0.100 3307 {{
    delay_loop 0.2
    lb_algo wlc
    real_server 10.88.0.22 3306 {{
{reader}    }}
}}
"
    )
}

/// Runs the roles scenario in a fresh topology.
pub fn run(opts: &Options) -> Result<RolesOutcome, String> {
    let mut lab = crate::lab::topology(opts);
    let (lb1, db1, db2) = (lab.node("lb1"), lab.node("db1"), lab.node("db2"));
    let p1 = services::mariadb_with(&mut lab, db1, &["--log-bin=mysql-bin", "--server-id=1"])?;
    let _r = services::mariadb_with(&mut lab, db2, &["--log-bin=mysql-bin", "--server-id=2"])?;
    let (s1, s2) = (
        services::mariadb_socket(&lab, db1),
        services::mariadb_socket(&lab, db2),
    );
    for s in [&s1, &s2] {
        services::sql(s, "GRANT SLAVE MONITOR ON *.* TO 'lab'@'%'")?;
    }
    services::replicate(&lab, db1, db2, "10.88.0.21")?;
    services::sql(&s2, "SET GLOBAL read_only = 1")?;
    let mut lb = lab.holdfast(lb1, &conf());
    // The instance and the checkers start side by side. The replica is read-only, so the
    // writer pool drains it at its first check.
    lb.expect_all(
        &[
            "(VI_1) Entering MASTER STATE",
            "Disabling service [10.88.0.22]:tcp:3306 of VS [10.88.0.100]:tcp:3306",
        ],
        Duration::from_secs(20),
    )?;
    let mut cl = crate::lab::start_client(&mut lab, opts)?;
    // A steady state first: 10 more acknowledged writes (1 s).
    cl.expect_count(crate::lab::ACKED, 10, Duration::from_secs(20))?;

    // Lag: the replica's SQL thread stops, then starts again.
    let stopped = Instant::now();
    services::sql(&s2, "STOP SLAVE SQL_THREAD")?;
    let drained = lb
        .try_wait_for_after(
            "Disabling service [10.88.0.22]:tcp:3306 of VS [10.88.0.100]:tcp:3307",
            Some(stopped),
            Duration::from_secs(10),
        )
        .map(|t| t.saturating_duration_since(stopped));
    let started = Instant::now();
    services::sql(&s2, "START SLAVE SQL_THREAD")?;
    let readmitted = lb
        .try_wait_for_after(
            "Enabling service [10.88.0.22]:tcp:3306 of VS [10.88.0.100]:tcp:3307",
            Some(started),
            Duration::from_secs(10),
        )
        .map(|t| t.saturating_duration_since(started));

    // Promotion by hand, as the seeds' operators do it, after 10 more acknowledged writes.
    cl.expect_count(crate::lab::ACKED, 10, Duration::from_secs(20))?;
    let promoted = Instant::now();
    services::sql(&s2, "STOP SLAVE; SET GLOBAL read_only = 0")?;
    services::sql(&s1, "SET GLOBAL read_only = 1")?;
    let switched = lb
        .try_wait_for_after(
            "Enabling service [10.88.0.22]:tcp:3306 of VS [10.88.0.100]:tcp:3306",
            Some(promoted),
            Duration::from_secs(10),
        )
        .map(|t| t.saturating_duration_since(promoted));

    // The old primary crashes and restarts: writable again (read_only is not persistent) and
    // stale. `readmit manual` keeps it out of the writer pool until an operator says so.
    p1.signal("KILL");
    let _p1 = services::mariadb_start(&mut lab, db1)?;
    let back = Instant::now();
    let restarted_held = lb
        .try_wait_for_after(
            "[10.88.0.21]:tcp:3306 of VS [10.88.0.100]:tcp:3306 passes its checks but stays out until `holdfast enable` (readmit manual)",
            Some(back),
            Duration::from_secs(10),
        )
        .is_some()
        && lb.count_since(
            "Adding service [10.88.0.21]:tcp:3306 to VS [10.88.0.100]:tcp:3306",
            back,
        ) == 0;

    let crate::lab::Writes {
        attempts,
        stored,
        lost,
    } = crate::lab::finish_client(&lab, opts, &mut cl, &[db1, db2])?;
    Ok(RolesOutcome {
        drained,
        readmitted,
        switched,
        restarted_held,
        gap: longest_gap(&attempts),
        failed: attempts.iter().filter(|a| a.acked_us.is_none()).count(),
        acked: attempts.iter().filter(|a| a.acked_us.is_some()).count(),
        stored: stored.len(),
        lost,
    })
}

/// The human report.
pub fn report(o: &RolesOutcome) -> String {
    let secs = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    let mut s = String::from(
        "== roles: writer on VIP:3306 (require_writable, fo), reader on VIP:3307 (read-only, lag <= 2 s, rise 3)\n",
    );
    let _ = writeln!(
        s,
        "   replica SQL thread stopped -> drained from 3307 after {}",
        secs(o.drained)
    );
    let _ = writeln!(
        s,
        "   started again             -> readmitted to 3307 after {}",
        secs(o.readmitted)
    );
    let _ = writeln!(
        s,
        "   db2 promoted by hand      -> writer on 3306 after {}",
        secs(o.switched)
    );
    let _ = writeln!(
        s,
        "   old primary restarted     -> {}",
        if o.restarted_held {
            "held out of 3306 (readmit manual) until holdfast enable"
        } else {
            "NOT held out"
        }
    );
    let _ = writeln!(
        s,
        "   client: longest gap {:.2} s, {} failed, {} acked, {} stored, {} lost",
        o.gap.as_secs_f64(),
        o.failed,
        o.acked,
        o.stored,
        o.lost.len()
    );
    s
}
