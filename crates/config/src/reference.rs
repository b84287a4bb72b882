//! The configuration reference: every keyword keepalived 2.2.7 knows (the list in
//! `reference/keepalived-2.2.7.txt`, read from keepalived's parser sources by
//! `scripts/keepalived-keywords`) and holdfast's own, each with what holdfast does with it.
//!
//! Nothing here is written by hand about a keyword's support: each entry is found by asking
//! the parser itself. A keyword is put in its block of a minimal configuration, and what the
//! parser reports on its line says whether holdfast implements it, reads it without acting on
//! it (`unsupported`), or does not know it; a bad value and an out-of-range one give the kind of
//! value and its range in the parser's own words; the printer (`check-config --dump-conf`) of
//! the minimal configuration gives its default. The manual's reference page and the
//! `holdfast.conf(5)` manual page are rendered from these entries, and a test fails when the
//! committed page differs from what the parser says now.

use std::fmt::Write as _;

use crate::Class;

/// keepalived 2.2.7's keywords: `BLOCK/PATH keyword` lines.
const KEEPALIVED: &str = include_str!("reference/keepalived-2.2.7.txt");

/// holdfast's own keywords (blocks as in [`KEEPALIVED`]); what each does is in the manual's
/// extensions page.
const HOLDFAST: &[(&str, &str)] = &[
    ("/global_defs", "dataplane"),
    ("/global_defs", "control_socket"),
    ("/global_defs", "metrics_listen"),
    ("/global_defs", "nft_table"),
    ("/global_defs", "nft_flowtable"),
    ("/global_defs", "proxy_maxconn"),
    ("/vrrp_instance", "preempt_fast"),
    ("/vrrp_script", "TCP_CHECK"),
    ("/vrrp_script", "HTTP_GET"),
    ("/vrrp_script", "MYSQL_CHECK"),
    ("/virtual_server", "dataplane"),
    ("/virtual_server", "proxy_protocol"),
    ("/virtual_server/real_server", "readmit"),
    ("/virtual_server/real_server", "MYSQL_CHECK"),
    ("/", "bgp_announce"),
    ("/bgp_announce", "prefix"),
    ("/bgp_announce", "table"),
    ("/bgp_announce", "track_virtual_server"),
    ("/bgp_announce", "track_interface"),
    ("/bgp_announce", "track_script"),
    ("/bgp_announce", "track_file"),
    ("/bgp_announce", "track_process"),
    ("/bgp_announce", "community"),
    ("/bgp_announce", "med"),
    ("/bgp_announce", "next_hop"),
];

/// What holdfast does with a keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Read and acted on.
    Implemented,
    /// Read (its value checked) but not acted on: `check-config` reports it `unsupported`.
    Unsupported,
    /// Not known to holdfast: reported as an unknown keyword.
    Unknown,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Implemented => "yes",
            Status::Unsupported => "unsupported",
            Status::Unknown => "unknown to holdfast",
        }
    }
}

/// One keyword in one block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The block path, e.g. `/vrrp_instance/authentication`; `/` for the top level.
    pub block: String,
    /// The keyword.
    pub keyword: String,
    /// Whether keepalived 2.2.7 has it (false: a holdfast extension).
    pub keepalived: bool,
    /// What holdfast does with it.
    pub status: Status,
    /// The kind of value and its range, in the parser's words (empty when it takes none or
    /// the parser does not say).
    pub value: String,
    /// The default the printer shows for a configuration without it (empty: none shown).
    pub default: String,
}

/// Blocks that take a name (`vrrp_instance NAME {`) or addresses.
fn opener(elem: &str) -> String {
    match elem {
        "virtual_server" => "virtual_server 10.0.0.1 80".to_owned(),
        "real_server" => "real_server 10.0.0.2 80".to_owned(),
        "vrrp_instance"
        | "vrrp_script"
        | "vrrp_sync_group"
        | "vrrp_track_process"
        | "track_file"
        | "vrrp_track_file"
        | "bfd_instance"
        | "garp_group"
        | "track_group"
        | "virtual_server_group"
        | "bgp_announce" => format!("{elem} p"),
        _ => elem.to_owned(),
    }
}

/// What a block needs to be valid in a probe (so that the only findings are about the probed
/// line); a keyword set here has no default to show.
fn filler(elem: &str) -> &'static [&'static str] {
    match elem {
        "vrrp_instance" => &[
            "interface eth0",
            "virtual_router_id 1",
            "virtual_ipaddress {",
            " 10.0.0.1/24",
            "}",
        ],
        // keepalived drops a virtual server without real servers.
        "virtual_server" => &[
            "lb_algo rr",
            "lb_kind NAT",
            "protocol TCP",
            "real_server 10.0.0.9 80 {",
            "}",
        ],
        "vrrp_script" => &["script /bin/true"],
        "bgp_announce" => &["prefix 192.0.2.1", "table 100"],
        _ => &[],
    }
}

/// A minimal configuration with `line` inside the blocks of `path`, and `line`'s number.
/// The instance and virtual server carry what they need to be valid, so that the only findings
/// are about `line`.
fn probe_text(path: &[&str], line: &str) -> (String, usize) {
    let mut text = String::new();
    let mut n = 1;
    for (depth, elem) in path.iter().enumerate() {
        let _ = writeln!(text, "{}{} {{", " ".repeat(depth), opener(elem));
        n += 1;
        let pad = " ".repeat(depth + 1);
        for f in filler(elem) {
            let _ = writeln!(text, "{pad}{f}");
            n += 1;
        }
    }
    let _ = writeln!(text, "{}{line}", " ".repeat(path.len()));
    for depth in (0..path.len()).rev() {
        let _ = writeln!(text, "{}}}", " ".repeat(depth));
    }
    (text, n)
}

/// The findings on line `n` of `text` (class, message).
fn findings_on(text: &str, n: usize) -> Vec<(Class, String)> {
    let loaded = crate::parse_str(text);
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.span.is_some_and(|s| loaded.sources.line_of(s) == n))
        .map(|d| (d.class, d.message.clone()))
        .collect()
}

/// The default of `keyword` in block `path` as the printer shows it for a configuration
/// without it.
fn default_of(path: &[&str], keyword: &str) -> String {
    // keepalived's synonyms: the printer shows the second for the first.
    fn canonical(k: &str) -> &str {
        match k {
            "lb_algo" => "lvs_sched",
            "lb_kind" => "lvs_method",
            k => k,
        }
    }
    let set_by_probe = path.last().is_some_and(|b| {
        filler(b).iter().any(|f| {
            f.split_whitespace()
                .next()
                .is_some_and(|w| canonical(w) == canonical(keyword))
        })
    });
    if path.is_empty() || set_by_probe {
        return String::new();
    }
    let (text, _) = probe_text(path, "");
    let printed = crate::print::print(&crate::parse_str(&text).config);
    // Walk the printed blocks, matching each block's first word against `path`.
    let mut stack: Vec<String> = Vec::new();
    for l in printed.lines() {
        let t = l.trim();
        if t == "}" {
            stack.pop();
            continue;
        }
        let first = t.split_whitespace().next().unwrap_or("");
        if t.ends_with('{') {
            stack.push(first.to_owned());
            continue;
        }
        if first == keyword
            && stack.len() == path.len()
            && stack.iter().zip(path).all(|(a, b)| a == b)
        {
            return t[first.len()..].trim().to_owned();
        }
    }
    String::new()
}

/// The kind of value and its range, from what the parser says of a word and of a huge number.
fn value_of(path: &[&str], keyword: &str) -> String {
    let said = |arg: &str| {
        let (text, n) = probe_text(path, &format!("{keyword} {arg}"));
        findings_on(&text, n)
    };
    let mut kind = String::new();
    for (_, m) in said("x") {
        if let Some((_, k)) = m.split_once("is not a valid ") {
            kind = k.trim_end_matches('.').to_owned();
        } else if m.starts_with("invalid number '") {
            // keepalived's wording: a time when it takes a fraction.
            kind = if said("0.5").is_empty() {
                "time in seconds".into()
            } else {
                "number".into()
            };
        }
    }
    let mut range = String::new();
    for (_, m) in said("99999999999") {
        if let Some((_, r)) = m
            .split_once("out of range [")
            .or_else(|| m.split_once("outside range ["))
        {
            if let Some((lo, hi)) = r.trim_end_matches(']').split_once(", ") {
                range = format!("{lo} to {hi}");
            }
        } else if let Some((_, r)) = m.split_once("between ") {
            let words: Vec<&str> = r.split_whitespace().take(3).collect();
            if let [lo, _, hi] = words.as_slice() {
                range = format!(
                    "{} to {}",
                    lo,
                    hi.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                );
            }
        }
    }
    match (kind.is_empty(), range.is_empty()) {
        (false, false) => format!("{kind}, {range}"),
        (false, true) => kind,
        (true, false) => range,
        (true, true) => String::new(),
    }
}

fn classify(path: &[&str], keyword: &str, opens_block: bool) -> Status {
    let line = if opens_block {
        format!("{} {{\n{}}}", opener(keyword), " ".repeat(path.len()))
    } else {
        keyword.to_owned()
    };
    let (text, n) = probe_text(path, &line);
    let found = findings_on(&text, n);
    if found.iter().any(|(c, _)| *c == Class::Unknown) {
        Status::Unknown
    } else if found.iter().any(|(c, _)| *c == Class::Unsupported) {
        Status::Unsupported
    } else {
        Status::Implemented
    }
}

/// Every entry, keepalived's first in keepalived's order, then holdfast's own.
pub fn entries() -> Vec<Entry> {
    let listed: Vec<(&str, &str)> = KEEPALIVED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' '))
        .collect();
    let has_children = |block: &str, kw: &str| {
        let me = if block == "/" {
            format!("/{kw}")
        } else {
            format!("{block}/{kw}")
        };
        listed.iter().any(|(b, _)| *b == me)
    };
    let mut out = Vec::new();
    let all = listed
        .iter()
        .map(|&(b, k)| (b, k, true))
        .chain(HOLDFAST.iter().map(|&(b, k)| (b, k, false)));
    for (block, keyword, keepalived) in all {
        let path: Vec<&str> = block.split('/').filter(|s| !s.is_empty()).collect();
        let opens_block = has_children(block, keyword);
        let status = classify(&path, keyword, opens_block);
        let (value, default) = if status == Status::Unknown || opens_block {
            (String::new(), String::new())
        } else {
            (value_of(&path, keyword), default_of(&path, keyword))
        };
        out.push(Entry {
            block: block.to_owned(),
            keyword: keyword.to_owned(),
            keepalived,
            status,
            value,
            default,
        });
    }
    out
}

fn block_title(block: &str) -> String {
    if block == "/" {
        "Top level".to_owned()
    } else {
        block.trim_start_matches('/').replace('/', " › ")
    }
}

/// The manual's reference page (Markdown).
pub fn markdown(entries: &[Entry]) -> String {
    let mut s = String::new();
    s.push_str("# Configuration reference\n\n");
    s.push_str(
        "Every keyword keepalived 2.2.7 knows, block by block, and holdfast's own (marked\n\
         *holdfast*), with what holdfast does with it: **yes** (implemented), **unsupported**\n\
         (read and checked, reported by `check-config` with its location, not acted on) or\n\
         **unknown to holdfast** (reported as an unknown keyword). The value column gives the\n\
         kind of value and its range as the parser reports them; the default is what\n\
         `holdfast check-config --dump-conf` shows for a configuration without the keyword.\n\
         This page is generated from the parser (`holdfast reference`); a test fails when it\n\
         is stale.\n",
    );
    let (yes, un, unknown) =
        entries
            .iter()
            .filter(|e| e.keepalived)
            .fold((0, 0, 0), |(y, u, k), e| match e.status {
                Status::Implemented => (y + 1, u, k),
                Status::Unsupported => (y, u + 1, k),
                Status::Unknown => (y, u, k + 1),
            });
    let _ = writeln!(
        s,
        "\nOf keepalived's {} keywords, holdfast implements {yes}, reads {un} without acting on them and does not know {unknown}.",
        yes + un + unknown
    );
    let mut blocks: Vec<&str> = Vec::new();
    for e in entries {
        if !blocks.contains(&e.block.as_str()) {
            blocks.push(&e.block);
        }
    }
    for b in blocks {
        let _ = write!(
            s,
            "\n## {}\n\n| keyword | holdfast | value | default |\n|---|---|---|---|\n",
            block_title(b)
        );
        for e in entries.iter().filter(|e| e.block == b) {
            let own = if e.keepalived { "" } else { " *(holdfast)*" };
            let _ = writeln!(
                s,
                "| `{}`{own} | {} | {} | {} |",
                e.keyword,
                e.status.word(),
                e.value.replace('|', "\\|"),
                if e.default.is_empty() {
                    String::new()
                } else {
                    format!("`{}`", e.default)
                }
            );
        }
    }
    s
}

/// Escapes text for roff.
fn roff(t: &str) -> String {
    let t = t.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// The `holdfast.conf(5)` manual page (roff).
pub fn man(entries: &[Entry]) -> String {
    let mut s = String::new();
    s.push_str(".TH HOLDFAST.CONF 5 \"\" \"holdfast\" \"File Formats\"\n");
    s.push_str(".SH NAME\nholdfast.conf \\- holdfast's configuration, keepalived.conf\n");
    s.push_str(".SH SYNOPSIS\n/etc/keepalived/keepalived.conf\n");
    s.push_str(".SH DESCRIPTION\n");
    s.push_str(
        "holdfast reads keepalived's configuration language: blocks in braces, one keyword and \
         its values per line, comments after \\fB!\\fR or \\fB#\\fR, \\fBinclude\\fR, \
         \\fB$NAME=value\\fR definitions and \\fB@id\\fR lines, as keepalived 2.2.7 does. Each \
         keyword below is listed with what holdfast does with it: \\fByes\\fR (implemented), \
         \\fBunsupported\\fR (read and checked, reported by \\fBholdfast check\\-config\\fR, not \
         acted on) or \\fBunknown to holdfast\\fR. Keywords marked (holdfast) are holdfast's own \
         extensions. The manual in /usr/share/doc/holdfast/manual describes each feature.\n",
    );
    let mut blocks: Vec<&str> = Vec::new();
    for e in entries {
        if !blocks.contains(&e.block.as_str()) {
            blocks.push(&e.block);
        }
    }
    for b in blocks {
        let _ = writeln!(s, ".SH {}", roff(&block_title(b).to_uppercase()));
        for e in entries.iter().filter(|e| e.block == b) {
            let own = if e.keepalived { "" } else { " (holdfast)" };
            let _ = writeln!(s, ".TP\n\\fB{}\\fR{own}", roff(&e.keyword));
            let mut text = e.status.word().to_owned();
            if !e.value.is_empty() {
                let _ = write!(text, "; {}", e.value);
            }
            if !e.default.is_empty() {
                let _ = write!(text, "; default {}", e.default);
            }
            let _ = writeln!(s, "{}", roff(&text));
        }
    }
    s.push_str(".SH SEE ALSO\n\\fBholdfast\\fR(8), \\fBkeepalived.conf\\fR(5)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_implemented_an_unsupported_and_an_unknown_keyword_are_told_apart() {
        assert_eq!(
            classify(&["vrrp_instance"], "priority", false),
            Status::Implemented
        );
        assert_eq!(
            classify(&["vrrp_instance"], "use_ipvlan", false),
            Status::Unsupported
        );
        assert_eq!(
            classify(&["vrrp_instance"], "no_such_keyword", false),
            Status::Unknown
        );
        assert_eq!(classify(&[], "vrrp_instance", true), Status::Implemented);
    }

    #[test]
    fn values_and_defaults_come_from_the_parser_and_the_printer() {
        assert_eq!(default_of(&["vrrp_instance"], "priority"), "100");
        assert_eq!(default_of(&["vrrp_instance"], "advert_int"), "1");
        assert!(value_of(&["vrrp_instance"], "advert_int").contains("time in seconds"));
        assert_eq!(
            value_of(&["vrrp_instance"], "virtual_router_id"),
            "number, 1 to 255"
        );
        assert_eq!(value_of(&["vrrp_instance"], "priority"), "number, 1 to 255");
        // Set by the probe itself: no default to show.
        assert_eq!(default_of(&["vrrp_instance"], "interface"), "");
    }

    #[test]
    fn every_keepalived_keyword_is_listed_once_per_block_and_holdfast_s_own_are_implemented() {
        let all = entries();
        let mut seen = std::collections::BTreeSet::new();
        for e in &all {
            assert!(
                seen.insert((e.block.clone(), e.keyword.clone(), e.keepalived)),
                "{e:?} twice"
            );
            if !e.keepalived {
                assert_eq!(e.status, Status::Implemented, "{e:?}");
            }
        }
        assert!(all.iter().filter(|e| e.keepalived).count() > 400);
        // A keyword keepalived knows is never "unknown" to holdfast: keepalived -t would take
        // it, and check-config must not call the configuration wrong for it.
        let unknown: Vec<_> = all.iter().filter(|e| e.status == Status::Unknown).collect();
        assert!(unknown.is_empty(), "{unknown:?}");
    }
}
