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
    /// Run the daemon (VRRP today) in the foreground, like `keepalived -n`.
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
        /// Log to the console (stderr; always the case today).
        #[arg(short = 'l', long = "log-console")]
        log_console: bool,
        /// Detailed logging: also the lines keepalived logs only with -D.
        #[arg(short = 'D', long = "log-detail")]
        log_detail: bool,
        /// Run only the VRRP subsystem (the only one `run` has today).
        #[arg(short = 'P', long = "vrrp")]
        vrrp: bool,
        /// Main pid file.
        #[arg(short = 'p', long = "pid")]
        pid: Option<PathBuf>,
        /// VRRP pid file (holdfast is one process: same pid).
        #[arg(short = 'r', long = "vrrp_pid")]
        vrrp_pid: Option<PathBuf>,
        /// Config-id for `@ID` lines (default: the short host name).
        #[arg(short = 'i', long = "config-id")]
        config_id: Option<String>,
        /// Do not remove VIPs on exit.
        #[arg(short = 'V', long = "dont-release-vrrp")]
        dont_release_vrrp: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse_from(keepalived_args(std::env::args().collect()));
    match cli.command {
        Command::Run {
            file,
            dont_fork: _,
            log_console: _,
            log_detail,
            vrrp: _,
            pid,
            vrrp_pid,
            config_id,
            dont_release_vrrp,
        } => {
            let opts = Options {
                config_id: config_id.unwrap_or_else(host::short_hostname),
                strict: false,
            };
            let loaded = load(&file, &FsLoader, Some(&host::LinuxHost), &opts);
            let _ = std::io::stderr()
                .lock()
                .write_all(loaded.render().as_bytes());
            if !loaded.readable || loaded.exit_code(false) == 4 {
                return ExitCode::from(1);
            }
            let plan = holdfast::plan::build(&loaded.config);
            let run_opts = holdfast::run::RunOptions {
                detail: log_detail,
                keep_vips: dont_release_vrrp,
                pid_files: pid.into_iter().chain(vrrp_pid).collect(),
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("holdfast: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(holdfast::run::run(plan, run_opts)) {
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
            let loaded = load(&file, &FsLoader, Some(&host::LinuxHost), &opts);
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
