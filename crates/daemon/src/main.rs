//! `holdfast`: the command line.

use holdfast::host;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Under the name `keepalived`, accept keepalived's command line: `-t` is `check-config`,
/// anything else is `run`.
fn keepalived_args(args: Vec<String>) -> Vec<String> {
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().to_string());
    if invoked_as.as_deref() != Some("keepalived") {
        return args;
    }
    let mut out = vec!["holdfast".to_string()];
    let rest: Vec<String> = args.into_iter().skip(1).collect();
    if rest.iter().any(|a| a == "-t" || a == "--config-test") {
        out.push("check-config".into());
        out.extend(
            rest.into_iter().filter(|a| {
                a != "-t" && a != "--config-test" && a != "-l" && a != "-D" && a != "-n"
            }),
        );
    } else {
        out.push("run".into());
        out.extend(rest);
    }
    out
}
use holdfast_config::loader::FsLoader;
use holdfast_config::{Options, load, print::print};

/// A high-availability daemon that reads keepalived.conf: VRRP virtual IPs, health checks and
/// load balancing.
#[derive(Parser, Debug)]
#[command(name = "holdfast", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The failover lab: network namespaces with two load balancers (HAProxy + holdfast), a
    /// MariaDB server and a client writing through the VIP every 100 ms; injects failures and
    /// reports the client-visible gap, lost writes and VIP move times. Needs root.
    Lab(LabArgs),
    /// (internal) The crash guardian `run` starts: sends priority 0 and removes the VIPs if
    /// the daemon dies without a clean exit.
    #[command(hide = true)]
    Guardian {
        /// Log arming and disarming.
        #[arg(long)]
        detail: bool,
    },
    /// (packaging) Print the holdfast(8) manual page, generated from this command line, in
    /// roff.
    #[command(hide = true)]
    Man {
        /// The configuration's page, holdfast.conf(5), instead of the command line's.
        #[arg(long)]
        conf: bool,
    },
    /// Print the configuration reference (every keyword keepalived 2.2.7 knows and holdfast's
    /// own, with what holdfast does with each), as the manual's reference page.
    Reference,
    /// (internal) The lab's client write loop, run inside the client namespace.
    #[command(hide = true)]
    LabClient {
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 12)]
        duration_s: u64,
    },
    /// Run the daemon (VRRP instances and virtual servers) in the foreground, like
    /// `keepalived -n`.
    Run {
        /// Configuration file.
        #[arg(
            short = 'f',
            long = "use-file",
            default_value = "/etc/keepalived/keepalived.conf"
        )]
        file: PathBuf,
        /// Stay in the foreground (always the case; accepted for keepalived's command line).
        #[arg(short = 'n', long = "dont-fork")]
        dont_fork: bool,
        /// Log to the console (stderr) as well as to syslog.
        #[arg(short = 'l', long = "log-console")]
        log_console: bool,
        /// Detailed logging: also the lines keepalived logs only with -D.
        #[arg(short = 'D', long = "log-detail")]
        log_detail: bool,
        /// Run only the VRRP subsystem (no virtual servers).
        #[arg(short = 'P', long = "vrrp")]
        vrrp: bool,
        /// Run only the checker subsystem (virtual servers: health checks and the data plane).
        #[arg(short = 'C', long = "check", conflicts_with = "vrrp")]
        check: bool,
        /// Main pid file (default /run/keepalived.pid, as keepalived's): held locked while
        /// the daemon runs; a second daemon on it refuses to start.
        #[arg(short = 'p', long = "pid")]
        pid: Option<PathBuf>,
        /// VRRP pid file (holdfast is one process: same pid).
        #[arg(short = 'r', long = "vrrp_pid")]
        vrrp_pid: Option<PathBuf>,
        /// Checkers pid file (holdfast is one process: same pid).
        #[arg(short = 'c', long = "checkers_pid")]
        checkers_pid: Option<PathBuf>,
        /// Syslog facility: 0-7 (local0-7), local0-7, daemon (default) or user.
        #[arg(short = 'S', long = "log-facility", default_value = "daemon")]
        log_facility: String,
        /// Do not log to syslog.
        #[arg(short = 'G', long = "no-syslog")]
        no_syslog: bool,
        /// Also log to FILE (default /tmp/keepalived.log); VRRP lines go to FILE's name with
        /// `_vrrp` before the extension, as keepalived's VRRP process writes them.
        #[arg(short = 'g', long = "log-file", num_args = 0..=1, require_equals = true,
              default_missing_value = "keepalived.log")]
        log_file: Option<PathBuf>,
        /// Accepted for keepalived's command line: holdfast writes every log file line at once.
        #[arg(long = "flush-log-file")]
        flush_log_file: bool,
        /// Config-id for `@ID` lines (default: the short host name).
        #[arg(short = 'i', long = "config-id")]
        config_id: Option<String>,
        /// Do not remove VIPs on exit.
        #[arg(short = 'V', long = "dont-release-vrrp")]
        dont_release_vrrp: bool,
        /// Do not remove holdfast's IPVS services on exit.
        #[arg(short = 'I', long = "dont-release-ipvs")]
        dont_release_ipvs: bool,
        /// Directory for the SIGUSR1/SIGUSR2 files keepalived.data and keepalived.stats.
        #[arg(long, default_value = "/tmp")]
        data_dir: PathBuf,
        /// Network namespace in which to open the kernel's process-event socket for
        /// track_process when holdfast runs in another one (the proc connector answers only
        /// in the initial namespace; default /proc/1/ns/net).
        #[arg(long)]
        proc_events_netns: Option<PathBuf>,
    },
    /// Show the running daemon's VRRP instances (state, priorities, master, since when) and
    /// virtual servers, over its control socket.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// The virtual servers exactly as `ipvsadm -Ln` lays them out (Forward shows `Masq`
        /// for the proxy data plane).
        #[arg(long)]
        lvs: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Print what keepalived writes to keepalived.data on SIGUSR1 (each instance's state,
    /// priorities, master, VIPs), from the running daemon.
    Dump {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Print what keepalived writes to keepalived.stats on SIGUSR2 (advert, error and
    /// transition counters per instance), from the running daemon.
    Stats {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Let a real server back in: clears `holdfast disable` and a `readmit manual` hold.
    Enable {
        /// The virtual server, IP:PORT.
        vs: String,
        /// The real server, IP:PORT.
        rs: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Drain a real server on purpose: weight 0, established connections kept.
    Disable {
        /// The virtual server, IP:PORT.
        vs: String,
        /// The real server, IP:PORT.
        rs: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Check a configuration like `keepalived -t`: diagnostics on stderr; exit 0 ok,
    /// 4 cannot run, 5 errors, 6 script security violation (keepalived 2.2.7's codes).
    CheckConfig {
        /// Configuration file.
        #[arg(
            short = 'f',
            long = "use-file",
            default_value = "/etc/keepalived/keepalived.conf"
        )]
        file: PathBuf,
        /// Treat unknown and unsupported keywords as errors.
        #[arg(long)]
        strict: bool,
        /// Config-id for `@ID` conditional lines (default: the short host name).
        #[arg(short = 'i', long = "config-id")]
        config_id: Option<String>,
        /// Print the effective configuration, every default explicit, on stdout.
        #[arg(long)]
        dump_conf: bool,
    },
}

/// `holdfast dump|stats`: the daemon's text for SIGUSR1/SIGUSR2's files.
/// Where the running daemon's control socket is: `-s`, else the `control_socket` of the
/// configuration `-f` names (keepalived's default file unless given), else the default.
#[derive(clap::Args, Debug)]
struct SocketArg {
    /// The daemon's control socket [default: the configuration's control_socket, else
    /// /run/holdfast/control.sock].
    #[arg(short = 's', long)]
    socket: Option<PathBuf>,
    /// The daemon's configuration, read for its control_socket when -s is not given.
    #[arg(
        short = 'f',
        long = "use-file",
        default_value = "/etc/keepalived/keepalived.conf"
    )]
    file: PathBuf,
}

impl SocketArg {
    fn path(&self) -> PathBuf {
        if let Some(s) = &self.socket {
            return s.clone();
        }
        let opts = holdfast_config::Options {
            config_id: holdfast::host::short_hostname(),
            strict: false,
        };
        let loaded =
            holdfast_config::load(&self.file, &holdfast_config::loader::FsLoader, None, &opts);
        loaded.config.global.control_socket.map_or_else(
            || PathBuf::from(holdfast::control::DEFAULT_SOCKET),
            PathBuf::from,
        )
    }
}

fn text_request(socket: &std::path::Path, command: &str) -> ExitCode {
    match holdfast::control::request(socket, command) {
        Ok(v) => match v.get("text").and_then(|t| t.as_str()) {
            Some(t) => {
                print!("{t}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!(
                    "holdfast {command}: {}",
                    v.get("error")
                        .and_then(|e| e.as_str())
                        .unwrap_or("no answer")
                );
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("holdfast {command}: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    // The guardian lives as long as the daemon: it goes straight to its loop, without the
    // command-line parser's code and data in its memory.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("guardian") {
        return holdfast::guardian::main(args.next().as_deref() == Some("--detail"));
    }
    let cli = Cli::parse_from(keepalived_args(std::env::args().collect()));
    match cli.command {
        Command::Lab(args) => lab(args),
        Command::Dump { socket } => text_request(&socket.path(), "dump"),
        Command::Stats { socket } => text_request(&socket.path(), "stats"),
        Command::Reference => {
            let entries = holdfast_config::reference::entries();
            print!("{}", holdfast_config::reference::markdown(&entries));
            ExitCode::SUCCESS
        }
        Command::Man { conf: true } => {
            let entries = holdfast_config::reference::entries();
            print!("{}", holdfast_config::reference::man(&entries));
            ExitCode::SUCCESS
        }
        Command::Man { conf: false } => {
            use clap::CommandFactory;
            let page = clap_mangen::Man::new(Cli::command()).section("8");
            match page.render(&mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("holdfast man: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Guardian { detail } => holdfast::guardian::main(detail),
        Command::Enable { vs, rs, socket } => admin("enable", &vs, &rs, &socket.path()),
        Command::Disable { vs, rs, socket } => admin("disable", &vs, &rs, &socket.path()),
        Command::Status { json, lvs, socket } => {
            match holdfast::control::request(&socket.path(), "status") {
                Ok(v) => {
                    if json {
                        println!("{v}");
                    } else if lvs {
                        print!("{}", holdfast::control::render_lvs(&v));
                    } else {
                        print!("{}", holdfast::control::render(&v));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("holdfast status: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::LabClient {
            host,
            interval_ms,
            timeout_ms,
            duration_s,
        } => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("lab-client: {e}");
                    return ExitCode::from(1);
                }
            };
            rt.block_on(holdfast_lab::client::run(
                &host,
                std::time::Duration::from_millis(interval_ms),
                std::time::Duration::from_secs(duration_s),
                std::time::Duration::from_millis(timeout_ms),
            ));
            ExitCode::SUCCESS
        }
        Command::Run {
            file,
            dont_fork: _,
            log_console,
            log_detail,
            vrrp,
            check,
            pid,
            vrrp_pid,
            checkers_pid,
            log_facility,
            no_syslog,
            log_file,
            flush_log_file: _,
            config_id,
            dont_release_vrrp,
            dont_release_ipvs,
            data_dir,
            proc_events_netns,
        } => {
            holdfast::track::process::set_events_netns(proc_events_netns);
            if let Some(f) = &log_file
                && let Err(e) = holdfast::logging::open_log_file(f)
            {
                eprintln!("holdfast: cannot open log file: {e}");
                return ExitCode::from(1);
            }
            let config_id = config_id.unwrap_or_else(host::short_hostname);
            // keepalived's net_namespace: entered before anything looks at interfaces, and
            // before any thread starts (they all inherit it).
            let (netns, instance) = host::identity(&file, &config_id);
            holdfast::logging::set_ident_suffix(host::ident_suffix(
                netns.as_deref(),
                instance.as_deref(),
            ));
            if let Some(ns) = &netns
                && let Err(e) = host::enter_netns(ns)
            {
                eprintln!("holdfast: Unable to set network namespace {ns} - exiting ({e})");
                return ExitCode::from(1);
            }
            let plan = match holdfast::run::load_plan(&file, &config_id) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("holdfast: {e}");
                    return ExitCode::from(1);
                }
            };
            let Some(facility) = holdfast::logging::parse_facility(&log_facility) else {
                eprintln!(
                    "holdfast: invalid log facility '{log_facility}' (0-7, local0-7, daemon, user)"
                );
                return ExitCode::from(2);
            };
            let run_opts = holdfast::run::RunOptions {
                log: holdfast::logging::Logger {
                    detail: log_detail,
                    console: log_console,
                    facility: (!no_syslog).then_some(facility),
                },
                detail: log_detail,
                keep_vips: dont_release_vrrp,
                keep_ipvs: dont_release_ipvs,
                pid_files: std::iter::once(pid.unwrap_or_else(|| {
                    host::default_pid_file(netns.as_deref(), instance.as_deref())
                }))
                .chain(vrrp_pid)
                .chain(checkers_pid)
                .collect(),
                file,
                config_id,
                data_dir,
                vrrp: !check,
                checkers: !vrrp,
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("holdfast: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let outcome = rt.block_on(holdfast::run::run(plan, run_opts));
            // The last lines (the stop, a fatal error) are still on their way to the log.
            holdfast::logging::flush(std::time::Duration::from_secs(2));
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("holdfast: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig {
            file,
            strict,
            config_id,
            dump_conf,
        } => {
            let opts = Options {
                config_id: config_id.unwrap_or_else(host::short_hostname),
                strict,
            };
            // As keepalived -t: the interfaces checked are those of the configured namespace.
            if let (Some(ns), _) = host::identity(&file, &opts.config_id)
                && let Err(e) = host::enter_netns(&ns)
            {
                eprintln!("Unable to set network namespace {ns} - exiting ({e})");
                return ExitCode::from(4);
            }
            // The same planning `run` does, with this host's facts: what `run` would not do
            // is reported here, where the configuration asks for it.
            let loaded = holdfast::plan::check(
                load(&file, &FsLoader, Some(&host::LinuxHost), &opts),
                holdfast::plan::Facts::of_host(),
                strict,
            );
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(loaded.render().as_bytes());
            if dump_conf && loaded.readable {
                let _ = std::io::stdout()
                    .lock()
                    .write_all(print(&loaded.config).as_bytes());
            }
            ExitCode::from(loaded.exit_code(strict))
        }
    }
}

/// `holdfast enable|disable VS RS` over the control socket.
fn admin(command: &str, vs: &str, rs: &str, socket: &std::path::Path) -> ExitCode {
    let req = serde_json::json!({ "command": command, "vs": vs, "rs": rs });
    match holdfast::control::request_json(socket, &req) {
        Ok(v) => {
            println!("{}", v["ok"].as_str().unwrap_or("done"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("holdfast {command}: {e}");
            ExitCode::from(1)
        }
    }
}

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

/// `holdfast lab`'s arguments.
#[derive(clap::Args, Debug)]
struct LabArgs {
    /// Scenarios (default: all VRRP ones): graceful-stop, kill-9, node-crash, proxy-dies,
    /// partition-heal; `balance` runs the load-balancing scenario (holdfast's proxy in
    /// front of two MariaDB servers, one killed and restarted); `roles` the database-roles
    /// one (primary + replica, writer/reader ports, lag, promotion by hand); `faults` the
    /// fault-injection run (SIGSTOP, kill -9 mid-transition, cable flaps, disk full, hanging
    /// notify scripts; VRRPv3 at 0.1 s whatever --fast says).
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

fn lab(args: LabArgs) -> ExitCode {
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
    for n in names
        .iter()
        .filter(|n| !["balance", "roles", "faults"].contains(&n.as_str()))
    {
        match Scenario::parse(n) {
            Some(s) => scenarios.push(s),
            None => {
                eprintln!(
                    "holdfast lab: unknown scenario '{n}' (graceful-stop, kill-9, node-crash, proxy-dies, partition-heal, balance, roles, faults)"
                );
                return ExitCode::from(2);
            }
        }
    }
    if scenarios.is_empty() && !balance && !roles && !faults {
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
    if let Some(file) = figures {
        if std::env::var_os("HOLDFAST_BENCH_SHORT").is_some() {
            // scripts/bench --short: figures that show the run works, not ones to quote.
            recorded.insert("short".into(), true.into());
        }
        let text =
            serde_json::to_string_pretty(&serde_json::Value::Object(recorded)).unwrap_or_default();
        if let Err(e) = std::fs::write(&file, text + "\n") {
            eprintln!("holdfast lab: cannot write {}: {e}", file.display());
            return ExitCode::from(1);
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
