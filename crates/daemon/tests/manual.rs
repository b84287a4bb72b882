//! The manual (`docs/manual`, an mdBook) checked against the code and against itself:
//! - every page is in `SUMMARY.md` and every entry there is a page;
//! - every link between pages, and to a heading (`page.md#id`, `#id`), leads somewhere;
//! - every configuration shown as a complete file (a fenced block marked `keepalived`) loads in
//!   `holdfast check-config` without an error, a warning or an unsupported keyword, on a host
//!   with `eth0` (a network namespace of the test's own), and builds a plan `run` accepts.
//!
//! `mdbook build` and `mdbook test` run in `scripts/test` beside it.
//!
//! The namespace check needs root.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failure should stop the run

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use holdfast::host::LinuxHost;
use holdfast_config::loader::FsLoader;
use holdfast_config::{Class, Options, load};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/manual/src")
}

/// Every page's text by file name.
fn pages() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(src()).expect("docs/manual/src") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(name, std::fs::read_to_string(&p).unwrap());
        }
    }
    out
}

/// The fenced blocks of `text` as (language, first line number, body); fences are skipped
/// when looking for links and headings.
fn blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, l) in text.lines().enumerate() {
        if let Some(lang) = l.strip_prefix("```") {
            match open.take() {
                Some(b) => out.push(b),
                None => open = Some((lang.trim().to_owned(), i + 1, String::new())),
            }
        } else if let Some((_, _, body)) = open.as_mut() {
            body.push_str(l);
            body.push('\n');
        }
    }
    assert!(open.is_none(), "an unclosed fence");
    out
}

/// `text` without its fenced blocks.
fn prose(text: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for l in text.lines() {
        if l.starts_with("```") {
            inside = !inside;
        } else if !inside {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// mdBook's id for a heading: lower case, spaces to `-`, only alphanumerics, `-` and `_` kept.
fn heading_id(h: &str) -> String {
    h.trim()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_ascii_lowercase())
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

fn ids(text: &str) -> BTreeSet<String> {
    prose(text)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| heading_id(l.trim_start_matches('#')))
        .collect()
}

/// The targets of `[text](target)` links in `text`'s prose.
fn links(text: &str) -> Vec<String> {
    let p = prose(text);
    let mut out = Vec::new();
    let mut rest = p.as_str();
    while let Some(k) = rest.find("](") {
        rest = &rest[k + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_page_is_in_the_summary_and_every_entry_is_a_page() {
    let pages = pages();
    let summary = pages.get("SUMMARY.md").expect("SUMMARY.md");
    let listed: BTreeSet<String> = links(summary).into_iter().collect();
    for name in pages.keys().filter(|n| *n != "SUMMARY.md") {
        assert!(listed.contains(name), "{name} is not in SUMMARY.md");
    }
    for l in &listed {
        assert!(
            pages.contains_key(l),
            "SUMMARY.md lists {l}, which is not a page"
        );
    }
}

#[test]
fn every_link_between_pages_leads_to_a_page_and_a_heading() {
    let pages = pages();
    let mut checked = 0;
    for (name, text) in &pages {
        for target in links(text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let page = if file.is_empty() { name.as_str() } else { file };
            let Some(body) = pages.get(page) else {
                panic!("{name}: link to {target}: no page {page}");
            };
            if let Some(a) = anchor {
                assert!(
                    ids(body).contains(a),
                    "{name}: link to {target}: {page} has no heading with id {a} (it has {:?})",
                    ids(body)
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > 10,
        "only {checked} links found: the link reader is broken"
    );
}

#[test]
fn the_heading_ids_are_mdbook_s() {
    assert_eq!(
        heading_id(" Extension: `preempt_fast`"),
        "extension-preempt_fast"
    );
    assert_eq!(
        heading_id(" Metrics (`metrics_listen`)"),
        "metrics-metrics_listen"
    );
}

/// Loads `text` as a configuration file in a network namespace of this thread's own that has
/// `eth0` (and its veth peer `eth1`); the namespace goes with the thread.
fn check_in_netns(text: &str, dir: &Path, name: &str) -> holdfast_config::Loaded {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare (the manual test needs root)");
            let st = std::process::Command::new("ip")
                .args([
                    "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
                ])
                .status()
                .expect("ip (iproute2)");
            assert!(st.success());
            let opts = Options {
                config_id: "holdfast-manual".into(),
                strict: false,
            };
            load(&path, &FsLoader, Some(&LinuxHost), &opts)
        })
        .join()
        .expect("the checks")
    })
}

#[test]
fn every_complete_configuration_in_the_manual_loads_cleanly_and_runs() {
    let dir = std::env::temp_dir().join(format!("holdfast-manual-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The MySQL examples name a credentials file, which must exist with mode 0600: one of the
    // test's own stands in for it.
    let mut checked = 0;
    for (name, text) in pages() {
        for (lang, line, body) in blocks(&text) {
            if lang != "keepalived" {
                continue;
            }
            let body = body.replace(
                "/etc/holdfast/mysql.cnf",
                &dir.join("mysql.cnf").display().to_string(),
            );
            let creds = dir.join("mysql.cnf");
            std::fs::write(&creds, "[client]\nuser=monitor\npassword=secret\n").unwrap();
            std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            let loaded = check_in_netns(&body, &dir, &format!("{name}-{line}.conf"));
            let findings: Vec<_> = loaded
                .diagnostics
                .iter()
                .filter(|d| d.class != Class::Note)
                .collect();
            assert!(
                findings.is_empty() && loaded.exit_code(false) == 0,
                "{name}:{line}: the example does not load cleanly:\n{}",
                loaded.render()
            );
            let plan = holdfast::plan::build(
                &loaded.config,
                &loaded.disabled_scripts,
                holdfast::plan::Facts { ipvs: true },
            );
            assert!(
                plan.findings.is_empty(),
                "{name}:{line}: run would not do {:?}",
                plan.findings
            );
            checked += 1;
        }
    }
    // And the examples the Debian package ships.
    for example in [
        "packaging/keepalived.conf",
        "docs/examples/writer-reader.conf",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(example);
        let body = std::fs::read_to_string(&path).unwrap().replace(
            "/etc/holdfast/mysql.cnf",
            &dir.join("mysql.cnf").display().to_string(),
        );
        let loaded = check_in_netns(&body, &dir, "example.conf");
        assert!(
            loaded.diagnostics.iter().all(|d| d.class == Class::Note)
                && loaded.exit_code(false) == 0,
            "{example} does not load cleanly:\n{}",
            loaded.render()
        );
        checked += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(checked >= 6, "only {checked} configurations found");
}

/// The README's list of what is not supported yet, checked against the code: each keyword it
/// names is reported `unsupported` by check-config in some block it belongs to (so the list
/// cannot keep a keyword that has since been implemented, nor name one holdfast does not know).
#[test]
fn the_readme_s_unsupported_keywords_are_reported_unsupported() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split("## What is not supported yet")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README's section on what is not supported");
    // The data-plane line names keywords that are supported elsewhere.
    let section = section
        .split("- on the proxy data plane")
        .next()
        .unwrap_or(section);
    let items: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("- ") || l.starts_with("  "))
        .flat_map(|l| l.split('`').skip(1).step_by(2))
        .collect();
    assert!(items.len() >= 5, "only {items:?} found in the list");
    let vrrp = |inner: &str| {
        format!(
            "vrrp_instance VI_1 {{\n state BACKUP\n interface eth0\n virtual_router_id 1\n priority 100\n virtual_ipaddress {{\n  10.0.0.1/24\n }}\n{inner}\n}}\n"
        )
    };
    for kw in items {
        let contexts = [
            format!("global_defs {{\n {kw}\n}}\n"),
            vrrp(&format!(" {kw}\n")),
            vrrp(&format!(" authentication {{\n  {kw}\n }}\n")),
            format!("{kw} {{\n}}\n"),
            format!(
                "virtual_server 10.0.0.1 80 {{\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 10.0.0.2 80 {{\n  {kw} {{\n  }}\n }}\n}}\n"
            ),
        ];
        let reported = contexts.iter().any(|text| {
            let loaded = holdfast_config::parse_str(text);
            loaded
                .diagnostics
                .iter()
                .any(|d| d.class == Class::Unsupported)
        });
        assert!(
            reported,
            "the README lists `{kw}` as not supported, but check-config does not report it unsupported in any block"
        );
    }
}

/// The configuration reference page is what the parser says now (`holdfast reference`
/// regenerates it): a keyword implemented, or newly reported, changes the page.
#[test]
fn the_configuration_reference_page_is_current() {
    let want = holdfast_config::reference::markdown(&holdfast_config::reference::entries());
    let have = pages().remove("reference.md").expect("reference.md");
    assert!(
        have == want,
        "docs/manual/src/reference.md is stale: run `holdfast reference > docs/manual/src/reference.md`"
    );
}
