//! What keepalived's checker process says about a checker: its configuration keyword, the
//! log line of a failed attempt (`log_all_failures`), the lines of a checker coming up and
//! going down, and the body of the mail it sends for either. Users' alerting matches these
//! lines, so each is keepalived's wording where keepalived has one. Pure: no I/O.

use crate::state::Flip;

/// A kind of checker, as the lines about it differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// TCP_CHECK.
    Tcp,
    /// HTTP_GET.
    Http,
    /// SSL_GET.
    Ssl,
    /// UDP_CHECK.
    Udp,
    /// PING_CHECK.
    Ping,
    /// SMTP_CHECK.
    Smtp,
    /// DNS_CHECK.
    Dns,
    /// MYSQL_CHECK (holdfast's; worded as keepalived words its other checkers).
    Mysql,
    /// FILE_CHECK.
    File,
    /// MISC_CHECK.
    Misc,
}

/// Whom a line is about.
#[derive(Clone, Copy, Debug)]
pub struct About<'a> {
    /// The real server as keepalived prints it (`[192.0.2.1]:tcp:80`).
    pub rs: &'a str,
    /// The virtual server as keepalived prints it.
    pub vs: &'a str,
    /// MISC_CHECK's program (the first word of `misc_path`); empty for other kinds.
    pub script: &'a str,
}

impl Kind {
    /// The checker's configuration keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Kind::Tcp => "TCP_CHECK",
            Kind::Http => "HTTP_GET",
            Kind::Ssl => "SSL_GET",
            Kind::Udp => "UDP_CHECK",
            Kind::Ping => "PING_CHECK",
            Kind::Smtp => "SMTP_CHECK",
            Kind::Dns => "DNS_CHECK",
            Kind::Mysql => "MYSQL_CHECK",
            Kind::File => "FILE_CHECK",
            Kind::Misc => "MISC_CHECK",
        }
    }

    /// The line for one failed attempt, logged with `log_all_failures`; `detail` says why.
    pub fn attempt_line(self, at: About<'_>, detail: &str) -> String {
        let rs = at.rs;
        match self {
            Kind::Tcp if detail.starts_with("timeout") => {
                format!("TCP connection to {rs} timeout.")
            }
            Kind::Tcp => format!("TCP connection to {rs} failed."),
            Kind::Udp => format!("UDP connection to {rs} failed."),
            Kind::Ping => format!("ICMP connection to {rs} of {} failed.", at.vs),
            Kind::Misc => format!(
                "Misc check for [{rs} VS {}] by [{}] failed.",
                at.vs, at.script
            ),
            Kind::Http | Kind::Ssl => format!("HTTP_CHECK on service {rs} failed: {detail}."),
            Kind::Smtp => format!("SMTP_CHECK on service {rs} failed: {detail}."),
            Kind::Dns => format!("DNS_CHECK on service {rs} failed: {detail}."),
            Kind::Mysql => format!("MYSQL_CHECK on service {rs} failed: {detail}."),
            Kind::File => format!("FILE_CHECK on service {rs} failed: {detail}."),
        }
    }

    /// The line for the checker coming up or going down; `detail` says why the last attempt
    /// failed.
    pub fn flip_line(self, at: About<'_>, flip: Flip, detail: &str) -> String {
        let rs = at.rs;
        let retries = match flip {
            Flip::Up => return self.up_line(at),
            Flip::Down { retries } => retries,
        };
        match self {
            Kind::Misc => {
                let tries = match retries {
                    0 => " with retry disabled".to_string(),
                    1 => " after 1 retry".to_string(),
                    n => format!(" after {n} retries"),
                };
                let head = format!("Misc check for [{rs} VS {}] by [{}]", at.vs, at.script);
                if detail == "timed out" {
                    format!("{head} timed out{tries}.")
                } else {
                    format!("{head} failed{tries} ({detail}).")
                }
            }
            Kind::Mysql if retries > 0 => {
                format!("MYSQL_CHECK on service {rs} failed after {retries} retries ({detail}).")
            }
            Kind::Mysql => format!("MYSQL_CHECK on service {rs} failed ({detail})."),
            Kind::Dns => format!("DNS_CHECK ({rs}) failed: {detail}."),
            Kind::Ping if retries > 0 => format!(
                "ICMP CHECK on service {rs} of {} failed after {retries} retries.",
                at.vs
            ),
            Kind::Ping => format!("ICMP CHECK on service {rs} failed."),
            _ => {
                let kind = match self {
                    Kind::Tcp => "TCP_CHECK",
                    Kind::Ssl => "SSL_CHECK",
                    Kind::Udp => "UDP_CHECK",
                    Kind::Smtp => "SMTP_CHECK",
                    Kind::File => "FILE_CHECK",
                    _ => "HTTP_CHECK",
                };
                if retries > 0 {
                    format!("{kind} on service {rs} failed after {retries} retries.")
                } else {
                    format!("{kind} on service {rs} failed.")
                }
            }
        }
    }

    fn up_line(self, at: About<'_>) -> String {
        let rs = at.rs;
        match self {
            Kind::Tcp => format!("TCP connection to {rs} success."),
            Kind::Http | Kind::Ssl => format!("Remote Web server {rs} succeed on service."),
            Kind::Misc => format!(
                "Misc check for [{rs} VS {}] by [{}] succeeded.",
                at.vs, at.script
            ),
            Kind::File => format!("FILE_CHECK on service {rs} up."),
            Kind::Mysql => format!("MYSQL_CHECK on service {rs} succeeded."),
            Kind::Udp => format!("UDP connection to {rs} success."),
            Kind::Ping => format!("ICMP connection to {rs} success."),
            Kind::Smtp => format!("Remote SMTP server {rs} succeed on service."),
            Kind::Dns => format!("DNS_CHECK ({rs}) succeeded."),
        }
    }

    /// The body of the mail for the checker coming up or going down (`None` for FILE_CHECK,
    /// which keepalived does not mail).
    pub fn mail_body(self, up: bool) -> Option<String> {
        let ok = if up { "succeed" } else { "failed" };
        Some(match self {
            Kind::Tcp => format!("=> TCP CHECK {ok} on service <="),
            Kind::Http | Kind::Ssl if up => "=> CHECK succeed on service <=".into(),
            Kind::Http | Kind::Ssl => "=> CHECK failed on service : HTTP request failed <=".into(),
            Kind::Smtp => format!("=> CHECK {ok} on service <="),
            Kind::Udp => format!("=> UDP CHECK {ok} on service <="),
            Kind::Ping => format!("=> ICMP CHECK {ok} on service <="),
            Kind::Dns => format!("=> DNS_CHECK: {ok} on service <="),
            Kind::Mysql => format!("=> MYSQL_CHECK {ok} on service <="),
            Kind::Misc => format!(
                "=> MISC CHECK {} on service <=",
                if up { "succeeded" } else { "failed" }
            ),
            Kind::File => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: About<'static> = About {
        rs: "[10.0.0.2]:tcp:80",
        vs: "[10.0.0.100]:tcp:80",
        script: "/bin/check",
    };

    // keepalived 2.2.7's lines (check_tcp.c, check_http.c, check_misc.c, check_ping.c,
    // check_udp.c, check_smtp.c, check_dns.c, check_file.c).
    #[test]
    fn up_lines() {
        let up = |k: Kind| k.flip_line(AT, Flip::Up, "");
        assert_eq!(
            up(Kind::Tcp),
            "TCP connection to [10.0.0.2]:tcp:80 success."
        );
        assert_eq!(
            up(Kind::Ssl),
            "Remote Web server [10.0.0.2]:tcp:80 succeed on service."
        );
        assert_eq!(
            up(Kind::Misc),
            "Misc check for [[10.0.0.2]:tcp:80 VS [10.0.0.100]:tcp:80] by [/bin/check] succeeded."
        );
        assert_eq!(up(Kind::Dns), "DNS_CHECK ([10.0.0.2]:tcp:80) succeeded.");
        assert_eq!(
            up(Kind::Smtp),
            "Remote SMTP server [10.0.0.2]:tcp:80 succeed on service."
        );
        assert_eq!(
            up(Kind::Ping),
            "ICMP connection to [10.0.0.2]:tcp:80 success."
        );
        assert_eq!(
            up(Kind::Udp),
            "UDP connection to [10.0.0.2]:tcp:80 success."
        );
        assert_eq!(
            up(Kind::File),
            "FILE_CHECK on service [10.0.0.2]:tcp:80 up."
        );
    }

    #[test]
    fn down_lines_count_retries() {
        let down = |k: Kind, retries, d: &str| k.flip_line(AT, Flip::Down { retries }, d);
        assert_eq!(
            down(Kind::Tcp, 0, ""),
            "TCP_CHECK on service [10.0.0.2]:tcp:80 failed."
        );
        assert_eq!(
            down(Kind::Ssl, 3, ""),
            "SSL_CHECK on service [10.0.0.2]:tcp:80 failed after 3 retries."
        );
        assert_eq!(
            down(Kind::Http, 1, ""),
            "HTTP_CHECK on service [10.0.0.2]:tcp:80 failed after 1 retries."
        );
        assert_eq!(
            down(Kind::Misc, 0, "timed out"),
            "Misc check for [[10.0.0.2]:tcp:80 VS [10.0.0.100]:tcp:80] by [/bin/check] timed out with retry disabled."
        );
        assert_eq!(
            down(Kind::Misc, 1, "exited with status 1"),
            "Misc check for [[10.0.0.2]:tcp:80 VS [10.0.0.100]:tcp:80] by [/bin/check] failed after 1 retry (exited with status 1)."
        );
        assert_eq!(
            down(Kind::Ping, 2, ""),
            "ICMP CHECK on service [10.0.0.2]:tcp:80 of [10.0.0.100]:tcp:80 failed after 2 retries."
        );
        assert_eq!(
            down(Kind::Mysql, 0, "MySQL: refused"),
            "MYSQL_CHECK on service [10.0.0.2]:tcp:80 failed (MySQL: refused)."
        );
        assert_eq!(
            down(Kind::Dns, 2, "no answer"),
            "DNS_CHECK ([10.0.0.2]:tcp:80) failed: no answer."
        );
    }

    #[test]
    fn attempts_and_mail() {
        assert_eq!(
            Kind::Tcp.attempt_line(AT, "timeout after 1.000 s"),
            "TCP connection to [10.0.0.2]:tcp:80 timeout."
        );
        assert_eq!(
            Kind::Tcp.attempt_line(AT, "connection failed: refused"),
            "TCP connection to [10.0.0.2]:tcp:80 failed."
        );
        assert_eq!(
            Kind::Http.attempt_line(AT, "HTTP status code error (503)"),
            "HTTP_CHECK on service [10.0.0.2]:tcp:80 failed: HTTP status code error (503)."
        );
        assert_eq!(
            Kind::Http.mail_body(false).as_deref(),
            Some("=> CHECK failed on service : HTTP request failed <=")
        );
        assert_eq!(
            Kind::Misc.mail_body(true).as_deref(),
            Some("=> MISC CHECK succeeded on service <=")
        );
        assert_eq!(
            Kind::Tcp.mail_body(true).as_deref(),
            Some("=> TCP CHECK succeed on service <=")
        );
        assert_eq!(Kind::File.mail_body(true), None);
        assert_eq!(Kind::Ssl.keyword(), "SSL_GET");
    }
}
