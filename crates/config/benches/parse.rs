//! Parses a generated 5 000-block keepalived.conf with holdfast-config and with `keepalived -t`
//! in the same run, and prints holdfast's time as a ratio of keepalived's.
//!
//! `cargo bench -p holdfast-config --bench parse`. The baseline must run: without keepalived,
//! or when `keepalived -t` does not read the file through (a non-zero exit), the benchmark
//! fails instead of printing a figure without its baseline.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failure should stop the run

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use holdfast_config::loader::FsLoader;
use holdfast_config::{Options, load};

#[path = "record.rs"]
mod record;
use record::record;

/// 1 000 virtual servers × (1 + 2 real servers + 2 TCP_CHECKs) = 5 000 blocks.
fn generate() -> String {
    let mut s = String::from("global_defs {\n    router_id bench\n}\n");
    for i in 0..1000u32 {
        let (a, b) = (i / 250, i % 250);
        let _ = write!(
            s,
            "virtual_server 10.{a}.{b}.1 3306 {{\n    delay_loop 3\n    lb_algo wlc\n    lb_kind NAT\n    protocol TCP\n    persistence_timeout 50\n"
        );
        for r in 0..2 {
            let _ = write!(
                s,
                "    real_server 10.{a}.{b}.{} 3306 {{\n        weight 100\n        TCP_CHECK {{\n            connect_port 3306\n            connect_timeout 3\n            retry 2\n            delay_before_retry 1\n        }}\n    }}\n",
                10 + r
            );
        }
        s.push_str("}\n");
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = std::env::temp_dir().join(format!("holdfast-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("keepalived.conf");
    if let Err(e) = std::fs::write(&path, generate()) {
        eprintln!("bench: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    let opts = Options {
        config_id: "bench".into(),
        strict: false,
    };
    let runs = 15;
    let ours: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let loaded = load(Path::new(&path), &FsLoader, None, &opts);
            std::hint::black_box(&loaded);
            assert_eq!(loaded.config.virtual_servers.len(), 1000);
            t.elapsed()
        })
        .collect();
    let ours = median(ours);
    println!(
        "holdfast-config parse of 5000 blocks: median {:.2} ms over {runs} runs",
        ours.as_secs_f64() * 1e3
    );
    let ka: Result<Vec<Duration>, String> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new("keepalived")
                .args(["-t", "-l", "-f"])
                .arg(&path)
                .output()
                .map_err(|e| {
                    format!(
                        "keepalived cannot be run ({e}): install it (apt-get install keepalived)"
                    )
                })?;
            let took = t.elapsed();
            if !out.status.success() {
                return Err(format!(
                    "keepalived -t did not accept the file ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(took)
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let ka = match ka {
        Ok(ka) => median(ka),
        Err(e) => {
            eprintln!("bench parse: no baseline, so no figure: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "keepalived -t on the same file:       median {:.2} ms over {runs} runs",
        ka.as_secs_f64() * 1e3
    );
    let ratio = ours.as_secs_f64() / ka.as_secs_f64();
    println!("ratio holdfast/keepalived: {ratio:.3} (below 1 = holdfast faster)");
    record(
        "parse",
        &[
            ("holdfast_ms", ours.as_secs_f64() * 1e3),
            ("keepalived_ms", ka.as_secs_f64() * 1e3),
            ("ratio", ratio),
        ],
    );
}
