//! `holdfast`: the command line.

use holdfast::host;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    let cli = Cli::parse();
    match cli.command {
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
