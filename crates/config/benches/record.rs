//! Every benchmark's figures, machine-readable: one JSON object per benchmark in
//! `$HOLDFAST_BENCH_DIR/NAME.json` (default `target/bench` in the workspace), the file the
//! documentation's figures are taken from. Shared by the benchmarks of every crate
//! (`#[path = ".../record.rs"] mod record;`).

use std::path::{Path, PathBuf};

/// Writes `figures` (name, value) as `NAME.json`; a benchmark whose figures cannot be kept
/// fails.
pub fn record<K: AsRef<str>>(name: &str, figures: &[(K, f64)]) {
    let dir = std::env::var_os("HOLDFAST_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench"),
        PathBuf::from,
    );
    let body: Vec<String> = figures
        .iter()
        .map(|(k, v)| {
            // JSON has no NaN or infinity: a figure that is not a number is null.
            let v = if v.is_finite() {
                format!("{v:.4}")
            } else {
                "null".to_owned()
            };
            format!("  \"{}\": {v}", k.as_ref())
        })
        .collect();
    let text = format!("{{\n{}\n}}\n", body.join(",\n"));
    let file = dir.join(format!("{name}.json"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, text)) {
        eprintln!("bench {name}: cannot write {}: {e}", file.display());
        std::process::exit(1);
    }
    println!("figures written to {}", file.display());
}
