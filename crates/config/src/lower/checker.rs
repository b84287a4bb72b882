//! Checker blocks: TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, SMTP_CHECK, DNS_CHECK, UDP_CHECK,
//! PING_CHECK, FILE_CHECK and holdfast's MYSQL_CHECK.

use super::{Cx, arg_span, lvs, origin, user_spec};
use crate::model::{Checker, CheckerCommon, CheckerKind, HttpCheck, MiscCheck, MysqlCheck, Url};
use crate::tree::Node;

/// HTTP_GET/SSL_GET keywords keepalived has and holdfast does not implement (`url` takes the
/// regex ones, the checker all of them).
const HTTP_UNSUPPORTED: &[&str] = &[
    "tls_compliant",
    "regex",
    "regex_no_match",
    "regex_options",
    "regex_stack",
    "regex_min_offset",
    "regex_max_offset",
];

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
    if lvs::timing_key(cx, n, &mut c.timing) {
        return true;
    }
    match n.key.text.as_str() {
        "connect_ip" => c.connect_ip = cx.ip_arg(n, 0),
        "connect_port" => c.connect_port = cx.arg(n, 0).and_then(|w| cx.port(w)),
        "bindto" => c.bindto = cx.ip_arg(n, 0),
        "bind_port" => c.bind_port = cx.arg(n, 0).and_then(|w| cx.port(w)),
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
        if c.key.text == "nb_get_retry" && matches!(kw, Kw::Http | Kw::Ssl) {
            cx.deprecated(c, "retry");
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
            (Kw::Udp, "payload") => payload = cx.string(c),
            (Kw::Udp, "require_reply") => {
                require_reply = Some(c.args.first().map(|w| w.text.clone()).unwrap_or_default())
            }
            (Kw::Udp, "min_reply_length") => min_len = cx.count(c, 0, 65535),
            (Kw::Udp, "max_reply_length") => max_len = cx.count(c, 0, 65535),
            (Kw::File, "track_file") => track_file = cx.string(c).unwrap_or_default(),
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
            CheckerKind::Misc(misc)
        }
        Kw::Smtp => CheckerKind::Smtp { helo_name: helo },
        Kw::Dns => CheckerKind::Dns { qtype, name: qname },
        Kw::Udp => CheckerKind::Udp {
            payload,
            require_reply,
            min_reply_length: min_len,
            max_reply_length: max_len,
        },
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
            _ => cx.unknown(c, &HTTP_UNSUPPORTED[1..]),
        }
    }
    if u.path.is_empty() {
        cx.d.invalid(arg_span(n), "url block has no path - ignoring");
        return None;
    }
    Some(u)
}
