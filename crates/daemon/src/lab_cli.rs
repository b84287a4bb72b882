//! `holdfast lab`: the failover lab's command line, its scenarios and reports.

use std::process::ExitCode;

/// `holdfast lab roles`: prints the report; whether every step happened and no write was lost.
fn lab_roles(opts: &holdfast_lab::lab::Options) -> bool {
    match holdfast_lab::roles::run(opts) {
        Ok(o) => {
            print!("{}", holdfast_lab::roles::report(&o));
            o.lost.is_empty()
                && o.restarted_held
                && o.drained.is_some()
                && o.readmitted.is_some()
                && o.switched.is_some()
        }
        Err(e) => {
            eprintln!("holdfast lab: roles failed: {e}");
            false
        }
    }
}

/// `holdfast lab faults`: prints the report; whether every fault healed to one MASTER (the run
/// stops at the first that did not) and no write was lost.
fn lab_faults(opts: &holdfast_lab::lab::Options) -> bool {
    match holdfast_lab::faults::run(opts) {
        Ok(o) => {
            print!("{}", holdfast_lab::faults::report(&o));
            o.lost.is_empty()
        }
        Err(e) => {
            eprintln!("holdfast lab: faults failed: {e}");
            false
        }
    }
}

/// `holdfast lab balance`, with removal and with inhibit_on_failure.
fn lab_balance(opts: &holdfast_lab::lab::Options) -> bool {
    let mut outcomes = Vec::new();
    let mut ok = true;
    for inhibit in [false, true] {
        match holdfast_lab::balance::run(opts, inhibit) {
            Ok(o) => {
                ok &= o.lost.is_empty() && o.removed.is_some() && o.readmitted.is_some();
                outcomes.push(o);
            }
            Err(e) => {
                eprintln!("holdfast lab: balance failed: {e}");
                ok = false;
            }
        }
    }
    print!("{}", holdfast_lab::balance::report(&outcomes));
    ok
}

/// `holdfast lab anycast`: every failure with three directors announcing the VIP, and the
/// VRRP baseline with the same failures (but a director joining); prints the report. Whether
/// every run showed what it must ([`holdfast_lab::anycast::Outcome::verdict`]).
fn lab_anycast(
    opts: &holdfast_lab::anycast::Options,
) -> (bool, serde_json::Map<String, serde_json::Value>) {
    use holdfast_lab::anycast::{Fault, Mode, report, run};
    let mut outcomes = Vec::new();
    let mut ok = true;
    for mode in [Mode::Anycast, Mode::AnycastProxy, Mode::Vrrp] {
        for fault in Fault::ALL {
            // A VRRP pair has no director to add; the proxy's real-server failure is the
            // nftables plane's.
            if (mode == Mode::Vrrp && fault == Fault::Added)
                || (mode == Mode::AnycastProxy && fault == Fault::Backend)
            {
                continue;
            }
            match run(opts, mode, fault) {
                Ok(mut o) => {
                    if let Err(e) = o.verdict() {
                        o.notes.push(e);
                        ok = false;
                    }
                    outcomes.push(o);
                }
                Err(e) => {
                    eprintln!(
                        "holdfast lab: anycast, {} ({}): {e}",
                        fault.name(),
                        mode.name()
                    );
                    ok = false;
                }
            }
        }
    }
    print!("{}", report(&outcomes));
    (ok, holdfast_lab::anycast::figures(&outcomes))
}

/// `holdfast lab`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct LabArgs {
    /// Scenarios (default: all VRRP ones): graceful-stop, kill-9, node-crash, proxy-dies,
    /// partition-heal; `balance` runs the load-balancing scenario (holdfast's proxy in
    /// front of two MariaDB servers, one killed and restarted); `roles` the database-roles
    /// one (primary + replica, writer/reader ports, lag, promotion by hand); `faults` the
    /// fault-injection run (SIGSTOP, kill -9 mid-transition, cable flaps, disk full, hanging
    /// notify scripts; VRRPv3 at 0.1 s whatever --fast says); `anycast` three directors
    /// announcing the VIP through BGP (FRR) against a VRRP pair: a director killed, its cable
    /// cut, a director added, a real server failing.
    scenarios: Vec<String>,
    /// Run Debian's keepalived 2.2.7 on lb2 (the node that takes over) instead of holdfast.
    #[arg(long, value_parser = ["keepalived"])]
    peer: Option<String>,
    /// Also run the same scenarios with keepalived on both nodes and print ratios.
    #[arg(long)]
    compare: bool,
    /// VRRPv3 with 0.1 s adverts (default: VRRPv2, 1 s, as the seeds).
    #[arg(long, conflicts_with = "advert_int")]
    fast: bool,
    /// advert_int in seconds (VRRPv3 below 1; down to 0.01, VRRPv3's centisecond).
    #[arg(long, value_name = "SECS", value_parser = advert_secs)]
    advert_int: Option<f64>,
    /// How often the client writes, in milliseconds (5 shows gaps well under 100 ms; a
    /// client this fast gives up on a write after four periods and reconnects).
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    client_ms: u64,
    /// Repeat each scenario N times and report min/median/max gaps.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Machine-readable results.
    #[arg(long)]
    json: bool,
    /// Also write the medians (gap, VIP move, and with --compare the ratio, per scenario) to
    /// FILE as one JSON object of figures, the form the documentation quotes from.
    #[arg(long, value_name = "FILE")]
    figures: Option<std::path::PathBuf>,
    /// Seconds the client writes per run.
    #[arg(long, default_value_t = 12)]
    duration_s: u64,
    /// `proxy`: the holdfast nodes serve `virtual_server VIP 3306` with holdfast's own
    /// proxy instead of running HAProxy (seed 004 without ProxySQL); `proxy-dies` then
    /// kills holdfast itself. keepalived nodes keep HAProxy.
    #[arg(long, value_parser = ["proxy"], conflicts_with = "peer")]
    dataplane: Option<String>,
}

/// Writes `recorded` to `file` as one JSON object of figures (marked short under
/// `scripts/bench --short`, whose figures are never quoted); whether it could.
fn write_figures(
    file: &std::path::Path,
    mut recorded: serde_json::Map<String, serde_json::Value>,
) -> bool {
    if std::env::var_os("HOLDFAST_BENCH_SHORT").is_some() {
        recorded.insert("short".into(), true.into());
    }
    let text =
        serde_json::to_string_pretty(&serde_json::Value::Object(recorded)).unwrap_or_default();
    match std::fs::write(file, text + "\n") {
        Ok(()) => true,
        Err(e) => {
            eprintln!("holdfast lab: cannot write {}: {e}", file.display());
            false
        }
    }
}

/// `--advert-int`: VRRP's range (0.01 s, VRRPv3's centisecond, to 255 s), whole seconds at and
/// above 1 (VRRPv2).
fn advert_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.01..=255.0).contains(&v) {
        return Err(format!("{s} is outside 0.01 to 255 seconds"));
    }
    if v >= 1.0 && v.fract() != 0.0 {
        return Err("from 1 s up, adverts are VRRPv2's whole seconds".into());
    }
    if v < 1.0 && ((v * 100.0).round() - v * 100.0).abs() > 1e-9 {
        return Err("below 1 s, adverts are VRRPv3's centiseconds".into());
    }
    Ok(v)
}

pub(crate) fn lab(args: LabArgs) -> ExitCode {
    let LabArgs {
        scenarios: names,
        peer,
        compare,
        fast,
        advert_int,
        client_ms,
        repeat,
        json,
        figures,
        duration_s,
        dataplane,
    } = args;
    let own_proxy = dataplane.is_some();
    let advert = match (advert_int, fast) {
        (Some(s), _) => std::time::Duration::from_millis((s * 1000.0).round() as u64),
        (None, true) => std::time::Duration::from_millis(100),
        (None, false) => std::time::Duration::from_secs(1),
    };
    let client = std::time::Duration::from_millis(client_ms);
    use holdfast_lab::lab::{self as l, Scenario};
    use holdfast_lab::services::{self, Daemon};
    if !holdfast_lab::netns::is_root() {
        eprintln!("holdfast lab: run as root (it creates network namespaces)");
        return ExitCode::from(1);
    }
    let mut scenarios = Vec::new();
    let balance = names.iter().any(|n| n == "balance");
    let roles = names.iter().any(|n| n == "roles");
    let faults = names.iter().any(|n| n == "faults");
    let anycast = names.iter().any(|n| n == "anycast");
    for n in names
        .iter()
        .filter(|n| !["balance", "roles", "faults", "anycast"].contains(&n.as_str()))
    {
        match Scenario::parse(n) {
            Some(s) => scenarios.push(s),
            None => {
                eprintln!(
                    "holdfast lab: unknown scenario '{n}' (graceful-stop, kill-9, node-crash, proxy-dies, partition-heal, balance, roles, faults, anycast)"
                );
                return ExitCode::from(2);
            }
        }
    }
    if scenarios.is_empty() && !balance && !roles && !faults && !anycast {
        scenarios = Scenario::ALL.to_vec();
    }
    if let Err(e) = services::install_packages() {
        eprintln!("holdfast lab: {e}");
        return ExitCode::from(1);
    }
    let bin = std::env::current_exe().unwrap_or_else(|_| "holdfast".into());
    // The database scenarios: holdfast with its own proxy on lb1.
    let db_opts = l::Options {
        bin: bin.clone(),
        lb1: Daemon::Holdfast,
        lb2: Daemon::Holdfast,
        advert,
        client,
        duration: std::time::Duration::from_secs(duration_s),
        own_proxy: true,
    };
    let mut all_ok = true;
    let mut anycast_figures = None;
    if anycast {
        if let Err(e) = services::install(&["frr", "socat", "keepalived", "nftables"]) {
            eprintln!("holdfast lab: {e}");
            return ExitCode::from(1);
        }
        let (ok, figs) = lab_anycast(&holdfast_lab::anycast::Options {
            bin: bin.clone(),
            advert,
            duration: std::time::Duration::from_secs(duration_s),
        });
        all_ok &= ok;
        anycast_figures = Some(figs);
    }
    if roles {
        all_ok &= lab_roles(&db_opts);
    }
    if balance {
        all_ok &= lab_balance(&db_opts);
    }
    if faults {
        all_ok &= lab_faults(&l::Options {
            duration: std::time::Duration::from_secs(duration_s.max(60)),
            ..db_opts.clone()
        });
    }
    if scenarios.is_empty() {
        if let (Some(file), Some(figs)) = (&figures, anycast_figures)
            && !write_figures(file, figs)
        {
            return ExitCode::from(1);
        }
        return if all_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let lb2 = if peer.is_some() {
        Daemon::Keepalived
    } else {
        Daemon::Holdfast
    };
    let mut runs = vec![(
        format!(
            "holdfast (lb1) / {} (lb2)",
            if peer.is_some() {
                "keepalived"
            } else {
                "holdfast"
            }
        ),
        Daemon::Holdfast,
        lb2,
    )];
    if compare {
        runs.push((
            "keepalived (lb1) / keepalived (lb2)".to_string(),
            Daemon::Keepalived,
            Daemon::Keepalived,
        ));
    }
    let mut medians: Vec<Vec<Option<std::time::Duration>>> = Vec::new();
    let mut recorded = serde_json::Map::new();
    for (title, d1, d2) in runs {
        let who = match d1 {
            Daemon::Holdfast => "holdfast",
            Daemon::Keepalived => "keepalived",
        };
        let opts = l::Options {
            bin: bin.clone(),
            lb1: d1,
            lb2: d2,
            advert,
            client,
            duration: std::time::Duration::from_secs(duration_s),
            own_proxy,
        };
        let mut outcomes = Vec::new();
        let mut meds = Vec::new();
        for &s in &scenarios {
            let mut gaps = Vec::new();
            let mut moves = Vec::new();
            let (mut overs, mut reconnects, mut within) = (Vec::new(), Vec::new(), 0usize);
            for _ in 0..repeat.max(1) {
                match l::run(&opts, s) {
                    Ok(o) => {
                        all_ok &= o.lost.is_empty();
                        gaps.push(o.gap);
                        moves.extend(o.vip_move);
                        overs.extend(o.over_limit());
                        reconnects.extend(o.reconnect);
                        within += usize::from(o.over_limit().is_some_and(|v| v <= o.allowed));
                        outcomes.push(o);
                    }
                    Err(e) => {
                        eprintln!("holdfast lab: {} failed: {e}", s.name());
                        all_ok = false;
                    }
                }
            }
            gaps.sort();
            if !gaps.is_empty() && repeat > 1 {
                eprintln!(
                    "{title}: {} gap min {:.2} s median {:.2} s max {:.2} s",
                    s.name(),
                    gaps[0].as_secs_f64(),
                    gaps[gaps.len() / 2].as_secs_f64(),
                    gaps[gaps.len() - 1].as_secs_f64()
                );
            }
            let median = |v: &mut Vec<std::time::Duration>| {
                v.sort();
                v.get(v.len() / 2).copied()
            };
            let (gap, vip_move) = (median(&mut gaps), median(&mut moves));
            let (over, reconnect) = (median(&mut overs), median(&mut reconnects));
            for (what, v) in [
                ("gap_s", gap),
                ("vip_move_s", vip_move),
                ("over_s", over),
                ("reconnect_s", reconnect),
            ] {
                let v = v.map_or(serde_json::Value::Null, |d| d.as_secs_f64().into());
                recorded.insert(format!("{}_{who}_{what}", s.name()), v);
            }
            // Runs whose gap beyond the client's own reconnection stayed within what VRRP
            // may take (3 × advert + skew + one client period).
            recorded.insert(format!("{}_{who}_within", s.name()), within.into());
            recorded.insert(format!("{}_runs", s.name()), repeat.max(1).into());
            recorded.insert(
                "allowed_s".into(),
                l::allowed(advert, client).as_secs_f64().into(),
            );
            meds.push(gap);
        }
        if json {
            println!("{}", l::json(&title, &outcomes));
        } else {
            println!("{}", l::report(&title, &outcomes));
        }
        medians.push(meds);
    }
    if compare && medians.len() == 2 {
        if !json {
            println!("median gap ratio holdfast/keepalived (below 1 = holdfast better):");
        }
        for (i, s) in scenarios.iter().enumerate() {
            if let (Some(Some(h)), Some(Some(k))) = (medians[0].get(i), medians[1].get(i)) {
                let ratio = h.as_secs_f64() / k.as_secs_f64().max(1e-3);
                if !json {
                    println!(
                        "  {:<15} {:.2} s / {:.2} s = {ratio:.2}",
                        s.name(),
                        h.as_secs_f64(),
                        k.as_secs_f64(),
                    );
                }
                recorded.insert(format!("{}_ratio", s.name()), ratio.into());
            }
        }
    }
    if let Some(file) = figures
        && !write_figures(&file, recorded)
    {
        return ExitCode::from(1);
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advert_intervals_are_vrrp_s() {
        assert_eq!(advert_secs("0.01"), Ok(0.01));
        assert_eq!(advert_secs("1"), Ok(1.0));
        assert!(advert_secs("0.005").is_err(), "below a centisecond");
        assert!(advert_secs("0.015").is_err(), "not whole centiseconds");
        assert!(advert_secs("1.5").is_err(), "VRRPv2 counts seconds");
        assert!(advert_secs("x").is_err());
    }
}
