//! Every figure the README and the manual quote from a benchmark or the failover lab is a
//! value recorded in `docs/bench/NAME.json` (a copy of what `scripts/bench` or
//! `holdfast lab --figures` wrote in one full run), never one copied by hand. A quoted figure
//! carries its source right after it, `0.31<!-- fig parse.ratio -->` (invisible once
//! rendered); this test checks that each one is the recorded value as printed (same decimals),
//! that every number in the figure tables carries a source, and that no recorded file comes
//! from a short run.
//!
//! `scripts/bench-figures` copies a full run's files into `docs/bench/` and sets
//! `HOLDFAST_UPDATE_FIGURES=1` to rewrite the quoted figures from them (refused under CI).

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The documents that quote figures.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    let src = root().join("docs/manual/src");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&src)
        .expect("docs/manual/src")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    out.extend(pages);
    out
}

/// The pages whose tables hold only recorded figures: every number in a table row there
/// must carry its source.
const TABLES: &[&str] = &["README.md", "benchmarks.md", "lab.md"];

/// Every recorded file: name → (key → value; `None` for a figure that is not a number).
fn recorded() -> BTreeMap<String, BTreeMap<String, Option<f64>>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(root().join("docs/bench")).expect("docs/bench") {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("{}: not one object of figures", p.display()));
        let figures = obj.iter().map(|(k, v)| (k.clone(), v.as_f64())).collect();
        out.insert(name, figures);
    }
    out
}

/// A quoted figure: where its number starts and ends in the text, and its source.
struct Quote {
    start: usize,
    end: usize,
    file: String,
    key: String,
}

const OPEN: &str = "<!-- fig ";

/// The quoted figures of `text`: a number (digits, optionally grouped by single spaces, and
/// decimals) directly followed by `<!-- fig FILE.KEY -->`.
fn quotes(text: &str) -> Vec<Quote> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(OPEN) {
        let marker = from + at;
        let close = text[marker..]
            .find("-->")
            .expect("an unclosed figure marker")
            + marker;
        let source = text[marker + OPEN.len()..close].trim();
        let (file, key) = source
            .split_once('.')
            .unwrap_or_else(|| panic!("figure source {source:?} is not FILE.KEY"));
        // The number ends at the marker and runs back over digits, one '.', and single spaces
        // between digit groups.
        let bytes = text.as_bytes();
        let mut start = marker;
        while start > 0 {
            let c = bytes[start - 1];
            let grouped = c == b' '
                && start >= 2
                && bytes[start - 2].is_ascii_digit()
                && bytes[start].is_ascii_digit()
                && text[start..marker]
                    .split(['.', ' '])
                    .next()
                    .is_some_and(|g| g.len() == 3);
            if c.is_ascii_digit() || c == b'.' || c == b'-' || grouped {
                start -= 1;
            } else {
                break;
            }
        }
        assert!(
            start < marker,
            "no number before the figure marker for {source}: {:?}",
            &text[marker.saturating_sub(40)..marker]
        );
        out.push(Quote {
            start,
            end: marker,
            file: file.to_owned(),
            key: key.to_owned(),
        });
        from = close + 3;
    }
    out
}

/// `v` printed as `like` is: the same number of decimals, digits grouped by spaces in
/// thousands when `like` groups them.
fn print_like(v: f64, like: &str) -> String {
    let decimals = like.split_once('.').map_or(0, |(_, d)| d.len());
    let s = format!("{v:.decimals$}");
    if !like.contains(' ') {
        return s;
    }
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

#[test]
fn the_number_printer_keeps_the_quoted_form() {
    assert_eq!(print_like(0.3038, "0.31"), "0.30");
    assert_eq!(print_like(48239.4, "47 618"), "48 239");
    assert_eq!(print_like(1515.0, "1 515"), "1 515");
    assert_eq!(print_like(998.0, "1 515"), "998");
    assert_eq!(print_like(14.6523, "14.7"), "14.7");
    assert_eq!(print_like(3.0, "3"), "3");
    let q = quotes("| 48 239<!-- fig proxy.short --> | 0.96<!-- fig proxy.ratio --> | 3 %");
    let got: Vec<(&str, &str)> = q
        .iter()
        .map(|q| (q.file.as_str(), q.key.as_str()))
        .collect();
    assert_eq!(got, [("proxy", "short"), ("proxy", "ratio")]);
    let text = "| 48 239<!-- fig proxy.short --> | 0.96<!-- fig proxy.ratio -->";
    assert_eq!(&text[q[0].start..q[0].end], "48 239");
    assert_eq!(&text[q[1].start..q[1].end], "0.96");
}

#[test]
fn every_quoted_figure_is_the_recorded_one() {
    let recorded = recorded();
    assert!(!recorded.is_empty(), "docs/bench holds no recorded figures");
    for (name, figures) in &recorded {
        assert!(
            !figures.contains_key("short"),
            "docs/bench/{name}.json comes from a short run (scripts/bench --short): its figures are not to be quoted"
        );
    }
    let update = std::env::var_os("HOLDFAST_UPDATE_FIGURES").is_some();
    assert!(
        !(update && std::env::var_os("CI").is_some()),
        "HOLDFAST_UPDATE_FIGURES is refused under CI: figures are rewritten by hand with scripts/bench-figures"
    );
    let mut wrong = Vec::new();
    let mut unsourced = Vec::new();
    let mut seen = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.file_name().unwrap().to_string_lossy().into_owned();
        let mut rewritten = String::new();
        let mut last = 0;
        for q in quotes(&text) {
            seen += 1;
            let written = &text[q.start..q.end];
            let Some(value) = recorded.get(&q.file).and_then(|f| f.get(&q.key)) else {
                wrong.push(format!(
                    "{name}: {written} quotes {}.{}, which is not recorded",
                    q.file, q.key
                ));
                continue;
            };
            let want = match value {
                Some(v) => print_like(*v, written),
                None => {
                    wrong.push(format!(
                        "{name}: {written} quotes {}.{}, recorded as no number",
                        q.file, q.key
                    ));
                    continue;
                }
            };
            if want != written {
                wrong.push(format!(
                    "{name}: {written} where {}.{} is {want}",
                    q.file, q.key
                ));
            }
            rewritten.push_str(&text[last..q.start]);
            rewritten.push_str(&want);
            last = q.end;
        }
        rewritten.push_str(&text[last..]);
        if update && rewritten != text {
            std::fs::write(&doc, &rewritten).unwrap();
        }
        if TABLES.contains(&name.as_str()) {
            unsourced.extend(unsourced_numbers(&name, &text));
        }
    }
    assert!(seen > 0, "no document quotes a recorded figure");
    if update {
        return;
    }
    assert!(
        wrong.is_empty(),
        "quoted figures that are not the recorded ones:\n{}",
        wrong.join("\n")
    );
    assert!(
        unsourced.is_empty(),
        "numbers in figure tables without their source (<!-- fig FILE.KEY -->):\n{}",
        unsourced.join("\n")
    );
}

/// Numbers with decimals in the table rows of `text` that carry no source.
fn unsourced_numbers(name: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let header = lines.get(i + 1).is_some_and(|n| n.starts_with("|---"));
        if !line.starts_with('|') || line.starts_with("|---") || header {
            continue;
        }
        // Take the sourced figures out, then look for any number with decimals left after
        // the first cell (which names the row: "VRRPv3, 0.1 s adverts").
        let mut rest = line.to_string();
        for q in quotes(line).iter().rev() {
            let close = line[q.end..].find("-->").unwrap() + q.end + 3;
            rest.replace_range(q.start..close, "");
        }
        let rest = rest[1..].split_once('|').map_or("", |(_, r)| r);
        // A version after a name ("HAProxy 2.6", "keepalived 2.2.7") is not a figure.
        let rest = ["HAProxy ", "keepalived "]
            .iter()
            .fold(rest.to_owned(), |r, name| {
                r.replace(&format!("{name}2."), name)
            });
        let b = rest.as_bytes();
        let bare = (1..b.len().saturating_sub(1))
            .any(|j| b[j] == b'.' && b[j - 1].is_ascii_digit() && b[j + 1].is_ascii_digit());
        if bare {
            out.push(format!("{name}:{}: {line}", i + 1));
        }
    }
    out
}
