//! `vrrp_script`, `track_file`, `vrrp_track_process`, and the `track_*` reference lists.

use std::time::Duration;

use super::{Cx, arg_span, checker, origin, user_spec};
use crate::model::{ScriptKind, TrackFile, TrackIf, TrackProcess, TrackRef, Tracking, VrrpScript};
use crate::tree::Node;

/// `weight N [reverse]`: weight and reverse flag.
fn weight(cx: &mut Cx<'_>, n: &Node, lo: i64, hi: i64) -> (Option<i32>, bool) {
    let w = cx.int(n, 0, lo, hi).map(|v| v as i32);
    let reverse = match n.args.get(1).map(|w| w.text.as_str()) {
        None => false,
        Some("reverse") => true,
        Some(_) => {
            cx.d.invalid(
                n.args[1].span,
                format!("{}: expected 'reverse' after the weight", n.key.text),
            );
            false
        }
    };
    (w, reverse)
}

pub(super) fn script(cx: &mut Cx<'_>, n: &Node) -> Option<VrrpScript> {
    let name = cx.name(n)?;
    let mut s = VrrpScript {
        name,
        kind: None,
        interval: Duration::from_secs(1),
        timeout: None,
        weight: 0,
        reverse: false,
        rise: 1,
        fall: 1,
        user: None,
        init_fail: false,
        origin: origin(n),
    };
    for c in cx.block(n) {
        // holdfast's native trackers (a block keepalived does not have): the checkers that
        // make sense on the local host; other checker names are unknown here, as to keepalived.
        if let Some(kind) = checker::checker_kind_keyword(&c.key.text)
            .filter(|k| matches!(k, checker::Kw::Tcp | checker::Kw::Http | checker::Kw::Mysql))
        {
            if let Some(chk) = checker::checker(cx, c, kind) {
                s.kind = Some(ScriptKind::Checker(Box::new(chk)));
            }
            continue;
        }
        cx.no_block(c);
        match c.key.text.as_str() {
            // keepalived ignores a `script` without a value (the one before stays).
            "script" => {
                if let Some(cmd) = cx.string(c) {
                    s.kind = Some(ScriptKind::Command(cmd));
                }
            }
            // keepalived: 1 to 4294 s (holdfast also runs shorter intervals: see the
            // parity deviations).
            "interval" => match cx.timer(c, 0, 4294) {
                Some(d) if d.is_zero() => cx.d.invalid(
                    c.line_span(),
                    format!(
                        "({}): vrrp script interval '0' must be between 1 and 4294 - ignoring",
                        s.name
                    ),
                ),
                Some(d) => s.interval = d,
                None => {}
            },
            // keepalived: whole seconds up to 4294 (holdfast also runs shorter timeouts: see
            // the parity deviations).
            "timeout" => match cx.timer(c, 0, u64::MAX) {
                Some(d) if d > Duration::from_secs(4294) => {
                    let v = c.args.first().map_or("", |w| w.text.as_str());
                    cx.d.invalid(arg_span(c), format!("number '{v}' outside range [0, 4294]"));
                    cx.d.invalid(
                        c.line_span(),
                        format!("({}): vrrp script timeout '{v}' invalid - ignoring", s.name),
                    );
                }
                // keepalived: a timeout must be greater than 0; it takes 1 s.
                Some(d) if d.is_zero() => {
                    cx.d.invalid(
                        c.line_span(),
                        format!(
                            "({}): vrrp script timeout must be greater than 0, setting to 1",
                            s.name
                        ),
                    );
                    s.timeout = Some(Duration::from_secs(1));
                }
                d => s.timeout = d,
            },
            "weight" => {
                let (w, r) = weight(cx, c, -253, 253);
                s.weight = w.unwrap_or(0);
                s.reverse = r;
            }
            "rise" => s.rise = cx.count(c, 1, i64::from(u32::MAX)).unwrap_or(1),
            "fall" => s.fall = cx.count(c, 1, i64::from(u32::MAX)).unwrap_or(1),
            "user" => {
                if cx.arg(c, 0).is_some() {
                    s.user = user_spec(&c.args);
                }
            }
            "init_fail" => s.init_fail = true,
            _ => cx.unknown(c, &[]),
        }
    }
    if s.kind.is_none() {
        cx.d.invalid(
            n.close.unwrap_or(n.span()),
            format!("No script set for vrrp_script {} - removing", s.name),
        );
        return None;
    }
    if !cx.script_block_owned(n, s.user.is_some(), &format!("vrrp script {}", s.name)) {
        return None;
    }
    Some(s)
}

pub(super) fn file(cx: &mut Cx<'_>, n: &Node) -> Option<TrackFile> {
    if n.key.text == "vrrp_track_file" {
        cx.deprecated(n, "track_file");
    }
    let name = cx.name(n)?;
    let mut t = TrackFile {
        name,
        file: String::new(),
        weight: 1,
        reverse: false,
        init_file: None,
        origin: origin(n),
    };
    for c in cx.block(n) {
        cx.no_block(c);
        match c.key.text.as_str() {
            "file" => t.file = cx.string(c).unwrap_or_default(),
            "weight" => {
                let (w, r) = weight(cx, c, -254, 254);
                t.weight = w.unwrap_or(1);
                t.reverse = r;
            }
            "init_file" => {
                let mut value = 0;
                let mut overwrite = false;
                for a in &c.args {
                    if a.text == "overwrite" {
                        overwrite = true;
                    } else if let Some(v) = cx.int_word(a, "init_file", -(1 << 31), (1 << 31) - 1) {
                        value = v;
                    }
                }
                t.init_file = Some((value, overwrite));
            }
            _ => cx.unknown(c, &[]),
        }
    }
    if t.file.is_empty() {
        cx.d.invalid(
            n.span(),
            format!("No file set for track_file {} - removing", t.name),
        );
        return None;
    }
    Some(t)
}

pub(super) fn process(cx: &mut Cx<'_>, n: &Node) -> Option<TrackProcess> {
    let name = cx.name(n)?;
    let mut t = TrackProcess {
        name,
        process: String::new(),
        args: Vec::new(),
        param_match: None,
        weight: 0,
        reverse: false,
        quorum: 1,
        quorum_max: None,
        fork_delay: None,
        terminate_delay: None,
        delay: None,
        full_command: false,
        origin: origin(n),
    };
    for c in cx.block(n) {
        cx.no_block(c);
        match c.key.text.as_str() {
            "process" => {
                t.process = cx.string(c).unwrap_or_default();
                t.args = c.args.iter().skip(1).map(|w| w.text.clone()).collect();
            }
            "param_match" => {
                if let Some(w) = cx.arg(c, 0) {
                    if w.text == "initial" || w.text == "partial" {
                        t.param_match = Some(w.text.clone());
                    } else {
                        cx.d.invalid(
                            w.span,
                            format!("param_match '{}' is not initial or partial", w.text),
                        );
                    }
                }
            }
            "weight" => {
                let (w, r) = weight(cx, c, -254, 254);
                t.weight = w.unwrap_or(0);
                t.reverse = r;
            }
            "quorum" => t.quorum = cx.count(c, 0, 65535).unwrap_or(1),
            "quorum_max" => t.quorum_max = cx.count(c, 0, 65535),
            "fork_delay" => t.fork_delay = cx.timer(c, 0, 3600),
            "terminate_delay" => t.terminate_delay = cx.timer(c, 0, 3600),
            "delay" => t.delay = cx.timer(c, 0, 3600),
            "full_command" => t.full_command = true,
            _ => cx.unknown(c, &[]),
        }
    }
    if t.process.is_empty() {
        cx.d.invalid(
            n.span(),
            format!(
                "No process set for vrrp_track_process {} - removing",
                t.name
            ),
        );
        return None;
    }
    Some(t)
}

/// `track_interface { IF [weight N] [reverse] }`.
pub(super) fn interfaces(cx: &mut Cx<'_>, n: &Node, out: &mut Vec<TrackIf>) {
    for c in cx.block(n) {
        let mut t = TrackIf {
            name: c.key.text.clone(),
            weight: 0,
            reverse: false,
            origin: origin(c),
        };
        let mut i = 0;
        while i < c.args.len() {
            match c.args[i].text.as_str() {
                "weight" => {
                    if let Some(v) = c.args.get(i + 1) {
                        t.weight = cx.int_word(v, "weight", -253, 253).unwrap_or(0) as i32;
                    } else {
                        cx.d.invalid(c.args[i].span, "weight requires a value");
                    }
                    i += 2;
                }
                "reverse" => {
                    t.reverse = true;
                    i += 1;
                }
                other => {
                    cx.d.invalid(
                        c.args[i].span,
                        format!("track_interface: unknown option '{other}'"),
                    );
                    i += 1;
                }
            }
        }
        out.push(t);
    }
}

/// `track_script|track_file|track_process { NAME [weight N] [reverse|noreverse] }`.
pub(super) fn refs(cx: &mut Cx<'_>, n: &Node, range: i64, out: &mut Vec<TrackRef>) {
    for c in cx.block(n) {
        let mut t = TrackRef {
            name: c.key.text.clone(),
            weight: None,
            reverse: None,
            origin: origin(c),
        };
        let mut i = 0;
        while i < c.args.len() {
            match c.args[i].text.as_str() {
                "weight" => {
                    if let Some(v) = c.args.get(i + 1) {
                        t.weight = cx.int_word(v, "weight", -range, range).map(|v| v as i32);
                    } else {
                        cx.d.invalid(c.args[i].span, "weight requires a value");
                    }
                    i += 2;
                }
                "reverse" => {
                    t.reverse = Some(true);
                    i += 1;
                }
                "noreverse" => {
                    t.reverse = Some(false);
                    i += 1;
                }
                other => {
                    cx.d.invalid(
                        c.args[i].span,
                        format!("{}: unknown option '{other}'", n.key.text),
                    );
                    i += 1;
                }
            }
        }
        out.push(t);
    }
}

/// A `track_*` keyword inside an instance or sync group; returns whether it was one.
pub(super) fn tracking_key(cx: &mut Cx<'_>, n: &Node, t: &mut Tracking) -> bool {
    match n.key.text.as_str() {
        "track_interface" => interfaces(cx, n, &mut t.interfaces),
        "track_script" => refs(cx, n, 253, &mut t.scripts),
        "track_file" => refs(cx, n, 254, &mut t.files),
        "track_process" => refs(cx, n, 254, &mut t.processes),
        _ => return false,
    }
    true
}
