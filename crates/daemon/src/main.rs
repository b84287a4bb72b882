//! `holdfast`: the command line.

use holdfast::host;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod lab_cli;
use lab_cli::{LabArgs, lab};

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
    /// Print the FRR configuration that announces the `bgp_announce` blocks' routes through BGP
    /// (route-maps with their community, MED and next hop, `ip import-table`, `redistribute
    /// table`), to paste into frr.conf beside the site's own BGP settings.
    FrrConfig {
        #[command(flatten)]
        config: ConfigFile,
        /// The BGP AS number of `router bgp` on this host.
        #[arg(long)]
        asn: u32,
    },
    /// Print the configuration reference (every keyword keepalived 2.2.7 knows and holdfast's
    /// own, with what holdfast does with each), as the manual's reference page.
    Reference,
    /// (internal) The anycast lab's client (long connections and new ones), run inside the
    /// client namespace.
    #[command(hide = true)]
    LabFlows {
        #[arg(long)]
        target: std::net::SocketAddr,
        #[arg(long, default_value_t = 48)]
        long: usize,
        #[arg(long, default_value_t = 100)]
        period_ms: u64,
        #[arg(long, default_value_t = 20)]
        every_ms: u64,
        #[arg(long, default_value_t = 12)]
        duration_s: u64,
    },
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
        #[command(flatten)]
        config: ConfigFile,
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
        #[command(flatten)]
        config: ConfigFile,
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
/// The configuration file, where keepalived's `-f` names it.
#[derive(clap::Args, Debug)]
struct ConfigFile {
    /// Configuration file.
    #[arg(
        short = 'f',
        long = "use-file",
        default_value = "/etc/keepalived/keepalived.conf"
    )]
    file: PathBuf,
}

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
        Command::FrrConfig {
            config: ConfigFile { file },
            asn,
        } => {
            let id = holdfast::host::short_hostname();
            match holdfast::run::load_plan(&file, &id) {
                Err(e) => {
                    eprintln!("holdfast: {e}");
                    ExitCode::from(1)
                }
                Ok(plan) if plan.announces.is_empty() => {
                    eprintln!(
                        "holdfast: {} has no bgp_announce block that can run",
                        file.display()
                    );
                    ExitCode::from(1)
                }
                Ok(plan) => {
                    print!("{}", holdfast::announce::frr_config(&plan.announces, asn));
                    ExitCode::SUCCESS
                }
            }
        }
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
        Command::LabFlows {
            target,
            long,
            period_ms,
            every_ms,
            duration_s,
        } => {
            let ms = std::time::Duration::from_millis;
            on_one_thread(
                "lab-flows",
                holdfast_lab::flows::run(
                    target,
                    long,
                    ms(period_ms),
                    ms(every_ms),
                    std::time::Duration::from_secs(duration_s),
                ),
            )
        }
        Command::LabClient {
            host,
            interval_ms,
            timeout_ms,
            duration_s,
        } => on_one_thread(
            "lab-client",
            holdfast_lab::client::run(
                &host,
                std::time::Duration::from_millis(interval_ms),
                std::time::Duration::from_secs(duration_s),
                std::time::Duration::from_millis(timeout_ms),
            ),
        ),
        Command::Run {
            config: ConfigFile { file },
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
            // A blocked reader (a track_file's inotify watch waits for the file's next
            // change) must not hold the exit: everything the daemon does at stop is done.
            rt.shutdown_timeout(std::time::Duration::from_millis(100));
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
            config: ConfigFile { file },
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

/// Runs a lab helper `what` (a client inside a namespace) on a runtime of one thread.
fn on_one_thread(what: &str, f: impl std::future::Future<Output = ()>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            rt.block_on(f);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::from(1)
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
