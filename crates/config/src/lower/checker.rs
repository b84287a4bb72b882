//! Checker blocks: TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, SMTP_CHECK, DNS_CHECK, UDP_CHECK,
//! PING_CHECK, FILE_CHECK and holdfast's MYSQL_CHECK.

use super::{Cx, arg_span, lvs, origin, user_spec};
use crate::diag::Class;
use crate::model::{
    Checker, CheckerCommon, CheckerKind, HttpCheck, MiscCheck, MysqlCheck, Origin, REGEX_OPTIONS,
    REGEX_OPTIONS_UNSUPPORTED, Url, UrlRegex,
};
use crate::tree::Node;

/// HTTP_GET/SSL_GET keywords keepalived has and holdfast does not implement, in the checker
/// and in `url` (`regex_stack` sizes PCRE2's JIT stack, which holdfast's engine has not).
const HTTP_UNSUPPORTED: &[&str] = &["tls_compliant"];
const URL_UNSUPPORTED: &[&str] = &["tls_compliant", "regex_stack"];

/// The checker kinds by block keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kw {
    Tcp,
    Http,
    Ssl,
    Misc,
    Smtp,
    Dns,
    Udp,
    Ping,
    File,
    Mysql,
}

pub(super) fn checker_kind_keyword(k: &str) -> Option<Kw> {
    Some(match k {
        "TCP_CHECK" => Kw::Tcp,
        "HTTP_GET" => Kw::Http,
        "SSL_GET" => Kw::Ssl,
        "MISC_CHECK" => Kw::Misc,
        "SMTP_CHECK" => Kw::Smtp,
        "DNS_CHECK" => Kw::Dns,
        "UDP_CHECK" => Kw::Udp,
        "PING_CHECK" | "ICMP_CHECK" => Kw::Ping,
        "FILE_CHECK" => Kw::File,
        "MYSQL_CHECK" => Kw::Mysql,
        _ => return None,
    })
}

fn common_key(cx: &mut Cx<'_>, n: &Node, c: &mut CheckerCommon, kw: Kw) -> bool {
    if lvs::timing_key(cx, n, &mut c.timing, lvs::Level::Checker) {
        return true;
    }
    match n.key.text.as_str() {
        "connect_ip" => c.connect_ip = cx.ip_arg(n, 0),
        "connect_port" => c.connect_port = cx.arg(n, 0).and_then(|w| cx.port(w)),
        "bindto" => c.bindto = cx.ip_arg(n, 0),
        // keepalived: [1, 65535] (0 is "Invalid checker bind_port").
        "bind_port" => {
            c.bind_port = cx
                .arg(n, 0)
                .and_then(|w| cx.int_word(w, "checker bind_port", 1, 65535))
                .map(|p| p as u16)
        }
        "bind_if" | "fwmark" => {
            // MYSQL_CHECK's client opens its own socket; MISC_CHECK has none.
            if matches!(kw, Kw::Mysql | Kw::Misc) {
                cx.not_implemented(n);
            }
            if n.key.text == "bind_if" {
                c.bind_if = cx.string(n);
            } else {
                c.fwmark = cx.count(n, 0, i64::from(u32::MAX));
            }
        }
        "alpha" => c.alpha = Some(cx.boolean(n)),
        "log_all_failures" => c.log_all_failures = Some(cx.boolean(n)),
        _ => return false,
    }
    true
}

pub(super) fn checker(cx: &mut Cx<'_>, n: &Node, kw: Kw) -> Option<Checker> {
    let mut common = CheckerCommon::default();
    let mut http = HttpCheck::default();
    let mut misc = MiscCheck::default();
    let mut mysql = MysqlCheck::default();
    let (mut helo, mut qtype, mut qname) = (None, None, None);
    let (mut payload, mut require_reply, mut min_len, mut max_len) = (None, None, None, None);
    let (mut track_file, mut dynamic, mut weight, mut reverse) =
        (String::new(), false, None, false);
    let mut track_file_at = Origin::default();
    for c in cx.block(n) {
        let takes_block = matches!(
            (kw, c.key.text.as_str()),
            (Kw::Http | Kw::Ssl, "url") | (Kw::Smtp, "host")
        );
        if !takes_block {
            cx.no_block(c);
        }
        // keepalived: nb_get_retry is an HTTP_GET/SSL_GET synonym of retry only; elsewhere it is
        // an unknown keyword and retry keeps its default.
        // There keepalived 2.2.7 reports it as an error (exit 5) and still uses the value.
        if c.key.text == "nb_get_retry" && matches!(kw, Kw::Http | Kw::Ssl) {
            cx.d.invalid(c.span(), "nb_get_retry is deprecated - please use 'retry'");
            common.timing.retry = cx.count(c, 0, i64::from(u32::MAX));
            continue;
        }
        if kw != Kw::File && common_key(cx, c, &mut common, kw) {
            continue;
        }
        let k = c.key.text.as_str();
        match (kw, k) {
            (Kw::Http | Kw::Ssl, "url") => {
                if let Some(u) = url(cx, c) {
                    http.urls.push(u);
                }
            }
            (Kw::Http | Kw::Ssl, "http_protocol") => {
                if let Some(w) = cx.arg(c, 0) {
                    if matches!(w.text.as_str(), "1.0" | "1.0C" | "1.0c" | "1.1") {
                        http.http_protocol = Some(w.text.clone());
                    } else {
                        cx.d.invalid(w.span, format!("invalid http_protocol '{}'", w.text));
                    }
                }
            }
            (Kw::Http | Kw::Ssl, "virtualhost") => http.virtualhost = cx.string(c),
            (Kw::Http | Kw::Ssl, "enable_sni") => http.enable_sni = cx.boolean(c),
            (Kw::Http | Kw::Ssl, "sni_name") => http.sni_name = cx.string(c),
            // holdfast checks every url in each round, which is what fast_recovery asks of
            // keepalived (one url per delay_loop otherwise): nothing more to do.
            (Kw::Http | Kw::Ssl, "fast_recovery") => http.fast_recovery = cx.boolean(c),
            (Kw::Misc, "misc_path") => misc.path = cx.string(c).unwrap_or_default(),
            (Kw::Misc, "misc_timeout") => misc.timeout = cx.timer(c, 0, 86400),
            (Kw::Misc, "misc_dynamic") => misc.dynamic = true,
            (Kw::Misc, "user") => misc.user = user_spec(&c.args),
            (Kw::Smtp, "helo_name") => helo = cx.string(c),
            (Kw::Smtp, "host") => cx.unknown(c, &["host"]),
            (Kw::Dns, "type") => {
                if let Some(w) = cx.arg(c, 0) {
                    if matches!(
                        w.text.as_str(),
                        "A" | "NS" | "CNAME" | "SOA" | "MX" | "TXT" | "AAAA"
                    ) {
                        qtype = Some(w.text.clone());
                    } else {
                        cx.d.invalid(w.span, format!("DNS_CHECK: unknown type '{}'", w.text));
                    }
                }
            }
            (Kw::Dns, "name") => qname = cx.string(c),
            // keepalived reads every word after the keyword as one hex string; one it cannot
            // read is an error and leaves no payload (an empty datagram), or no reply data
            // (any reply will do).
            (Kw::Udp, "payload") => {
                let words: Vec<&str> = c.args.iter().map(|w| w.text.as_str()).collect();
                payload = None;
                if words.is_empty() {
                    cx.d.invalid(c.span(), "UDP_CHECK payload requires a payload");
                } else if crate::model::hex(&words.join(" "), false).is_none() {
                    cx.d.invalid(c.span(), "Invalid hex string for UDP_CHECK payload");
                } else {
                    payload = Some(words.join(" "));
                }
            }
            (Kw::Udp, "require_reply") => {
                let words: Vec<&str> = c.args.iter().map(|w| w.text.as_str()).collect();
                require_reply = Some(String::new());
                if !words.is_empty() {
                    if crate::model::hex(&words.join(" "), true).is_none() {
                        cx.d.invalid(c.span(), "Invalid hex string for UDP_CHECK reply");
                    } else {
                        require_reply = Some(words.join(" "));
                    }
                }
            }
            (Kw::Udp, "min_reply_length") => min_len = cx.count(c, 0, 65535),
            (Kw::Udp, "max_reply_length") => max_len = cx.count(c, 0, 65535),
            (Kw::File, "track_file") => {
                track_file = cx.string(c).unwrap_or_default();
                track_file_at = Origin(Some(c.span()));
            }
            (Kw::File, "dynamic") => dynamic = true,
            (Kw::File, "weight") => {
                weight = cx.int(c, 0, -254, 254).map(|v| v as i32);
                reverse = c.args.get(1).is_some_and(|w| w.text == "reverse");
            }
            (Kw::Mysql, "user") => mysql.user = cx.string(c),
            (Kw::Mysql, "password") => mysql.password = cx.string(c),
            (Kw::Mysql, "credentials_file") => mysql.credentials_file = cx.string(c),
            (Kw::Mysql, "database") => mysql.database = cx.string(c),
            (Kw::Mysql, "query") => mysql.query = cx.string(c),
            (Kw::Mysql, "require_writable") => mysql.require_writable = true,
            (Kw::Mysql, "require_read_only") => mysql.require_read_only = true,
            (Kw::Mysql, "max_replication_lag") => {
                mysql.max_replication_lag = cx.timer(c, 0, 86400 * 365)
            }
            (Kw::Mysql, "rise") => mysql.rise = cx.count(c, 1, 1000),
            (Kw::Mysql, "tls") => mysql.tls = cx.boolean(c),
            (Kw::Mysql, "tls_ca") => mysql.tls_ca = cx.string(c),
            (Kw::Http | Kw::Ssl, _) => cx.unknown(c, HTTP_UNSUPPORTED),
            _ => cx.unknown(c, &[]),
        }
    }
    let kind = match kw {
        Kw::Tcp => CheckerKind::Tcp,
        Kw::Http => CheckerKind::Http(http),
        Kw::Ssl => CheckerKind::Ssl(http),
        Kw::Misc => {
            if misc.path.is_empty() {
                cx.d.invalid(
                    n.span(),
                    "MISC_CHECK: misc_path is missing - ignoring checker",
                );
                return None;
            }
            if !cx.script_block_owned(
                n,
                misc.user.is_some(),
                &format!("misc script {}", misc.path),
            ) {
                return None;
            }
            CheckerKind::Misc(misc)
        }
        Kw::Smtp => CheckerKind::Smtp { helo_name: helo },
        Kw::Dns => CheckerKind::Dns { qtype, name: qname },
        Kw::Udp => {
            // keepalived's defaults: replies of 0 to 255 octets.
            let (min, max) = (min_len.unwrap_or(0), max_len.unwrap_or(255));
            if min > max {
                // keepalived checks it when the block ends: on its closing line.
                cx.d.invalid(
                    n.close.unwrap_or(n.span()),
                    format!("UDP_CHECK min_reply length {min} > max_reply_length {max} - will always fail"),
                );
            }
            CheckerKind::Udp {
                payload,
                require_reply,
                min_reply_length: min_len,
                max_reply_length: max_len,
            }
        }
        Kw::Ping => CheckerKind::Ping,
        Kw::File => {
            if track_file.is_empty() {
                cx.d.invalid(
                    n.span(),
                    "FILE_CHECK: track_file is missing - ignoring checker",
                );
                return None;
            }
            CheckerKind::File {
                track_file,
                dynamic,
                weight,
                reverse,
                at: (track_file_at, Origin(n.close)),
            }
        }
        Kw::Mysql => {
            if mysql.require_writable && mysql.require_read_only {
                cx.d.invalid(
                    n.span(),
                    "MYSQL_CHECK: require_writable and require_read_only exclude each other",
                );
            }
            CheckerKind::Mysql(mysql)
        }
    };
    Some(Checker {
        kind,
        common,
        origin: origin(n),
    })
}

fn url(cx: &mut Cx<'_>, n: &Node) -> Option<Url> {
    let mut u = Url::default();
    let mut regex: Option<UrlRegex> = None;
    let mut pattern_at = None;
    for c in cx.block(n) {
        cx.no_block(c);
        match c.key.text.as_str() {
            "path" => u.path = cx.string(c).unwrap_or_default(),
            "digest" => u.digest = cx.string(c),
            "virtualhost" => u.virtualhost = cx.string(c),
            "status_code" => {
                for w in &c.args {
                    let (lo, hi) = w.text.split_once('-').unwrap_or((&w.text, &w.text));
                    match (lo.parse::<u16>(), hi.parse::<u16>()) {
                        (Ok(lo), Ok(hi))
                            if (100..=599).contains(&lo) && (lo..=599).contains(&hi) =>
                        {
                            u.status_codes.push((lo, hi))
                        }
                        _ => {
                            cx.d.invalid(w.span, format!("invalid status_code '{}'", w.text))
                        }
                    }
                }
            }
            "regex" => match (c.args.len(), c.args.first()) {
                (1, Some(w)) => {
                    let r = regex.get_or_insert_with(UrlRegex::default);
                    if !r.pattern.is_empty() {
                        cx.d.invalid(
                            w.span,
                            format!(
                                "Duplicate regex specified - replacing {} with {}",
                                r.pattern, w.text
                            ),
                        );
                    }
                    r.pattern = w.text.clone();
                    pattern_at = Some(w.span);
                }
                _ => {
                    cx.d.invalid(arg_span(c), "regex missing or too many fields")
                }
            },
            "regex_no_match" => regex.get_or_insert_with(UrlRegex::default).no_match = true,
            "regex_options" => {
                for w in &c.args {
                    let o = w.text.as_str();
                    if REGEX_OPTIONS.contains(&o) {
                        regex
                            .get_or_insert_with(UrlRegex::default)
                            .options
                            .push(o.to_owned());
                    } else if REGEX_OPTIONS_UNSUPPORTED.contains(&o) {
                        cx.d.push(
                            Class::Unsupported,
                            Some(w.span),
                            format!("unsupported: regex option '{o}' is recognised but not implemented by holdfast"),
                        );
                    } else {
                        cx.d.invalid(w.span, format!("Unknown regex option '{o}'"));
                    }
                }
            }
            k @ ("regex_min_offset" | "regex_max_offset") => {
                let v = cx.int(c, 0, 0, i64::from(u32::MAX)).map(|v| v as usize);
                let r = regex.get_or_insert_with(UrlRegex::default);
                if k == "regex_min_offset" {
                    r.min_offset = v;
                } else {
                    r.max_offset = v;
                }
            }
            _ => cx.unknown(c, URL_UNSUPPORTED),
        }
    }
    if let Some(r) = regex {
        if r.pattern.is_empty() {
            cx.d.invalid(arg_span(n), "regex parameters specified without regex");
        } else if let (Some(lo), Some(hi)) = (r.min_offset, r.max_offset)
            && lo > hi
        {
            cx.d.invalid(
                arg_span(n),
                format!("regex min offset {lo} > regex_max_offset {hi} - ignoring"),
            );
            u.regex = Some(UrlRegex {
                min_offset: None,
                max_offset: None,
                ..r
            });
        } else {
            u.regex = Some(r);
        }
        if let (Some(r), Some(at)) = (&u.regex, pattern_at)
            && let Err(e) = r.compile()
        {
            cx.d.invalid(
                at,
                format!(
                    "Invalid regex: '{}': {} (holdfast matches with Rust's regex engine: no look-around, no backreferences)",
                    r.pattern,
                    e.lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .trim_start_matches("error: ")
                ),
            );
            u.regex = None;
        }
    }
    if u.path.is_empty() {
        cx.d.invalid(arg_span(n), "url block has no path - ignoring");
        return None;
    }
    Some(u)
}

#[cfg(test)]
mod tests {
    use crate::diag::Class;
    use crate::model::CheckerKind;

    fn url_block(lines: &str) -> String {
        format!(
            "virtual_server 10.0.0.1 80 {{\n protocol TCP\n lb_algo rr\n lb_kind NAT\n real_server 10.0.0.5 80 {{\n  HTTP_GET {{\n   url {{\n    path /status\n{lines}   }}\n  }}\n }}\n}}\n"
        )
    }

    #[test]
    fn a_udp_check_keeps_what_keepalived_would_send_and_expect() {
        let text = |payload: &str, reply: &str| {
            format!(
                "virtual_server 10.0.0.1 53 {{\n protocol UDP\n lb_algo rr\n lb_kind NAT\n real_server 10.0.0.5 53 {{\n  UDP_CHECK {{\n   {payload}\n   {reply}\n  }}\n }}\n}}\n"
            )
        };
        let udp = |loaded: &crate::Loaded| match &loaded.config.virtual_servers[0].real_servers[0]
            .checkers[0]
            .kind
        {
            CheckerKind::Udp {
                payload,
                require_reply,
                ..
            } => (payload.clone(), require_reply.clone()),
            other => panic!("{other:?}"),
        };
        let good = crate::parse_str(&text("payload 0a \"1 2b\"", "require_reply 12 3X"));
        assert!(good.diagnostics.is_empty(), "{}", good.render());
        assert_eq!(udp(&good), (Some("0a 1 2b".into()), Some("12 3X".into())));
        // Printed and read again, it means the same.
        let again = crate::parse_str(&crate::print::print(&good.config));
        assert_eq!(udp(&again), udp(&good));
        // What keepalived cannot read it reports and does not use: no payload (an empty
        // datagram), and a reply required whatever it holds.
        let bad = crate::parse_str(&text("payload 0g", "require_reply zz"));
        assert_eq!(bad.diagnostics.len(), 2, "{}", bad.render());
        assert_eq!(udp(&bad), (None, Some(String::new())));
    }

    /// (class, line, message) of every finding.
    fn findings(text: &str) -> Vec<(Class, usize, String)> {
        let loaded = crate::parse_str(text);
        loaded
            .diagnostics
            .iter()
            .map(|d| {
                (
                    d.class,
                    d.span.map_or(0, |s| loaded.sources.line_of(s)),
                    d.message.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn a_url_regex_is_read_with_its_options_and_offsets() {
        let text = url_block(
            "    regex \"\\\\d+ UP$\"\n    regex_no_match\n    regex_options caseless firstline\n    regex_min_offset 2\n    regex_max_offset 100\n",
        );
        let loaded = crate::parse_str(&text);
        assert!(loaded.diagnostics.is_empty(), "{}", loaded.render());
        let CheckerKind::Http(h) =
            &loaded.config.virtual_servers[0].real_servers[0].checkers[0].kind
        else {
            panic!("not HTTP_GET");
        };
        let r = h.urls[0].regex.as_ref().expect("the regex");
        assert_eq!(r.pattern, "\\d+ UP$");
        assert!(r.no_match);
        assert_eq!(r.options, ["caseless", "firstline"]);
        assert_eq!((r.min_offset, r.max_offset), (Some(2), Some(100)));
        let re = r.compile().expect("compiles");
        assert!(re.is_match(b"12 up"));
        // The printed configuration reads back the same.
        let printed = crate::print::print(&loaded.config);
        let again = crate::parse_str(&printed);
        assert_eq!(
            again.config.virtual_servers, loaded.config.virtual_servers,
            "{printed}"
        );
    }

    #[test]
    fn what_holdfast_cannot_match_is_an_error_or_unsupported_on_its_word() {
        let f = findings(&url_block(
            "    regex \"(?<=a)b\"\n    regex_options alt_bsux nonsense\n    regex_stack 10 20\n",
        ));
        let has = |class: Class, line: usize, text: &str| {
            f.iter()
                .any(|(c, l, m)| *c == class && *l == line && m.contains(text))
        };
        assert!(
            has(Class::Invalid, 9, "Invalid regex: '(?<=a)b': look-around"),
            "{f:?}"
        );
        assert!(
            has(Class::Unsupported, 10, "regex option 'alt_bsux'"),
            "{f:?}"
        );
        assert!(
            has(Class::Invalid, 10, "Unknown regex option 'nonsense'"),
            "{f:?}"
        );
        assert!(has(Class::Unsupported, 11, "'regex_stack'"), "{f:?}");
    }

    #[test]
    fn keepalived_s_regex_complaints_are_kept() {
        let f = findings(&url_block("    regex_no_match\n"));
        assert!(
            f.iter()
                .any(|(c, _, m)| *c == Class::Invalid
                    && m == "regex parameters specified without regex"),
            "{f:?}"
        );
        let text = url_block("    regex ok\n    regex_min_offset 10\n    regex_max_offset 5\n");
        let f = findings(&text);
        assert!(
            f.iter()
                .any(|(_, _, m)| m == "regex min offset 10 > regex_max_offset 5 - ignoring"),
            "{f:?}"
        );
        let loaded = crate::parse_str(&text);
        let CheckerKind::Http(h) =
            &loaded.config.virtual_servers[0].real_servers[0].checkers[0].kind
        else {
            panic!("not HTTP_GET");
        };
        let r = h.urls[0].regex.as_ref().expect("the regex stays");
        assert_eq!((r.min_offset, r.max_offset), (None, None));
    }
}
