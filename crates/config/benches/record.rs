//! Every benchmark's figures, machine-readable: one JSON object per benchmark in
//! `$HOLDFAST_BENCH_DIR/NAME.json` (default `target/bench` in the workspace), the file the
//! documentation's figures are taken from. Shared by the benchmarks of every crate
//! (`#[path = ".../record.rs"] mod record;`).

use std::path::{Path, PathBuf};

/// Present only inside the test VM (`scripts/ipvs-vm/build.sh` writes it).
const VM_MARKER: &str = "/etc/holdfast-ipvs-vm";
/// How a benchmark inside the VM hands its figures to the host: one line on its output.
const VM_FIGURES: &str = "@figures ";

/// Whether this is a short run (`HOLDFAST_BENCH_SHORT` set, as CI runs them): one round of
/// each measure, to show the benchmark works, not to quote.
pub fn short() -> bool {
    std::env::var_os("HOLDFAST_BENCH_SHORT").is_some_and(|v| !v.is_empty())
}

/// How many rounds to run: `full`, or one in a short run.
#[allow(dead_code)] // not every benchmark runs rounds
pub fn rounds(full: usize) -> usize {
    if short() { 1 } else { full }
}

/// Writes `figures` (name, value) as `NAME.json`, with `"short": 1` after a short run (the
/// documentation takes no figure from one); a benchmark whose figures cannot be kept fails.
pub fn record<K: AsRef<str>>(name: &str, figures: &[(K, f64)]) {
    if Path::new(VM_MARKER).exists() {
        // Inside the VM nothing outlives the run: the host records them (`run_in_vm`).
        let pairs: Vec<String> = figures
            .iter()
            .map(|(k, v)| format!("{}={v}", k.as_ref()))
            .collect();
        println!("{VM_FIGURES}{name} {}", pairs.join(" "));
        return;
    }
    let dir = std::env::var_os("HOLDFAST_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench"),
        PathBuf::from,
    );
    let short = [("short", 1.0)];
    let body: Vec<String> = figures
        .iter()
        .map(|(k, v)| (k.as_ref(), *v))
        .chain(short.iter().copied().filter(|_| self::short()))
        .map(|(k, v)| {
            // JSON has no NaN or infinity: a figure that is not a number is null.
            let v = if v.is_finite() {
                format!("{v:.4}")
            } else {
                "null".to_owned()
            };
            format!("  \"{k}\": {v}")
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

/// `command` for the test VM, short there too when this run is.
#[allow(dead_code)] // not every benchmark uses the VM
pub fn vm_command(command: &str) -> String {
    if short() {
        format!("HOLDFAST_BENCH_SHORT=1 {command}")
    } else {
        command.to_owned()
    }
}

/// Runs `vm` (`scripts/ipvs-vm/run.sh …`), echoing its output, and records the figures the
/// benchmark inside printed; fails when the command in the VM fails.
#[allow(dead_code)] // not every benchmark uses the VM
pub fn run_in_vm(mut vm: std::process::Command, what: &str) {
    use std::io::BufRead;
    let mut child = vm
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: scripts/ipvs-vm/run.sh: {e}"));
    let mut sets = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            match line.trim_end().strip_prefix(VM_FIGURES) {
                Some(set) => sets.push(set.to_owned()),
                None => println!("{line}"),
            }
        }
    }
    let status = child.wait().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed in the VM: {status}");
    assert!(!sets.is_empty(), "{what}: the VM printed no figures");
    for set in sets {
        let mut words = set.split_whitespace();
        let name = words
            .next()
            .unwrap_or_else(|| panic!("{what}: a figure set without a name"));
        let figures: Vec<(String, f64)> = words
            .map(|w| {
                let (k, v) = w
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{what}: not a figure: {w}"));
                let v = v
                    .parse()
                    .unwrap_or_else(|_| panic!("{what}: not a number: {w}"));
                (k.to_owned(), v)
            })
            .collect();
        record(name, &figures);
    }
}
