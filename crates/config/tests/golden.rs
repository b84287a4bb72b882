//! Golden tests: each `tests/golden/*.conf` → its rendered diagnostics and the printed
//! effective configuration, compared with `*.expected` (regenerate with
//! `HOLDFAST_UPDATE_EXPECT=1 cargo test -p holdfast-config --test golden`). Every case also
//! round-trips: parsing the printed configuration gives the same model, with no diagnostics.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failure should stop the run

use std::path::{Path, PathBuf};

use holdfast_config::loader::FsLoader;
use holdfast_config::{Options, load, parse_str, print::print};

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("tests/golden")
        .expect("tests/golden")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    v.sort();
    v
}

fn render(path: &Path) -> String {
    let loaded = load(
        path,
        &FsLoader,
        None,
        &Options {
            config_id: "node1".into(),
            strict: false,
        },
    );
    format!(
        "exit {}\n{}--- effective configuration ---\n{}",
        loaded.exit_code(false),
        loaded.render(),
        print(&loaded.config)
    )
}

#[test]
fn golden_cases_match_expectations() {
    let cases = cases();
    assert!(cases.len() >= 4, "golden cases missing");
    let update = std::env::var_os("HOLDFAST_UPDATE_EXPECT").is_some();
    // Under CI nothing may rewrite the expectations it checks against.
    assert!(
        !(update && std::env::var_os("CI").is_some()),
        "HOLDFAST_UPDATE_EXPECT is set under CI: the golden files would accept anything"
    );
    let mut failed = Vec::new();
    for case in cases {
        let actual = render(&case);
        let expected_path = case.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &actual).expect("write expectation");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failed.push(format!("{}:\n{actual}", case.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "golden mismatch (HOLDFAST_UPDATE_EXPECT=1 to accept):\n{}",
        failed.join("\n")
    );
}

#[test]
fn printed_configurations_parse_back_to_the_same_model() {
    let mut fixtures = cases();
    let seeds = Path::new("../daemon/tests/fixtures/seeds");
    fixtures.extend(
        std::fs::read_dir(seeds)
            .expect("seed fixtures")
            .filter_map(|e| e.ok().map(|e| e.path())),
    );
    for case in fixtures {
        let first = load(
            &case,
            &FsLoader,
            None,
            &Options {
                config_id: "node1".into(),
                strict: false,
            },
        );
        let text = print(&first.config);
        let again = parse_str(&text);
        assert_eq!(
            again.config,
            first.config,
            "{}: round trip changed the model:\n{text}",
            case.display()
        );
        let errors: Vec<_> = again
            .diagnostics
            .iter()
            .map(|d| d.message.clone())
            .collect();
        let unexpected: Vec<_> = errors
            .iter()
            .filter(|m| {
                !m.contains("VRID conflict")
                    && !m.contains("virtual router id must be set")
                    && !m.contains("not found, ignoring")
                    && !m.contains("doesn't exist")
                    && !m.contains("no real servers")
                    // Properties of the configuration itself, printed as it is.
                    && !m.contains("No VIP specified")
                    && !m.contains("Unknown interface!")
                    && !m.contains("has only 1 virtual router(s)")
                    // Printed back as configured; still not acted on.
                    && !m.starts_with("unsupported:")
                    // Reported about a valid configuration keepalived keeps as it is.
                    && !m.contains("is configured on VRRP instance and sync group")
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "{}: printed config has diagnostics {unexpected:?}\n{text}",
            case.display()
        );
    }
}
