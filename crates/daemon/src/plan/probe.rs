//! Network probes from their checker blocks: the one place a checker's configuration becomes
//! a [`Probe`], for virtual-server checkers and native `vrrp_script` trackers alike.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use holdfast_check::probe::{
    DnsProbe, HttpProbe, HttpVersion, MysqlProbe, PingProbe, Probe, Reply, SmtpProbe, SockOpts,
    TcpProbe, Tls, UdpProbe, UrlCheck,
};
use holdfast_config::model::{Checker, CheckerKind};

/// Where a checker connects and for how long.
pub struct Target<'a> {
    /// `connect_ip`, else the real server's address (the local host for a `vrrp_script`).
    pub ip: IpAddr,
    /// `connect_port`, else the real server's port; none for a `vrrp_script`, where each
    /// kind has its own default (80, 3306) or needs one.
    pub port: Option<u16>,
    /// `connect_timeout`.
    pub timeout: Duration,
    /// The virtual server's `virtualhost` (HTTP_GET's default, SSL_GET's SNI).
    pub vhost: Option<&'a String>,
}

/// The network probe of checker `c` towards `to`; `Err` says why it cannot be built (and
/// MISC_CHECK and FILE_CHECK, which are not network probes, are refused here).
pub fn probe(c: &Checker, to: &Target<'_>) -> Result<Probe, String> {
    let port = |default: Option<u16>| {
        to.port
            .or(default)
            .ok_or_else(|| format!("{} needs connect_port", c.kind.keyword()))
    };
    let bind = c
        .common
        .bindto
        .map(|b| SocketAddr::new(b, c.common.bind_port.unwrap_or(0)));
    let opts = sock_opts(&c.common);
    let timeout = to.timeout;
    Ok(match &c.kind {
        CheckerKind::Tcp => Probe::Tcp(TcpProbe {
            addr: SocketAddr::new(to.ip, port(None)?),
            bind,
            timeout,
            opts,
        }),
        CheckerKind::Http(h) | CheckerKind::Ssl(h) => {
            let tls = matches!(c.kind, CheckerKind::Ssl(_)).then(|| Tls {
                sni: h.sni_name.clone().or_else(|| {
                    h.enable_sni
                        .then(|| h.virtualhost.clone().or(to.vhost.cloned()))
                        .flatten()
                }),
            });
            Probe::Http(http_probe(
                h,
                SocketAddr::new(to.ip, port(Some(80))?),
                bind,
                opts,
                timeout,
                to.vhost,
                tls,
            )?)
        }
        CheckerKind::Udp {
            payload,
            require_reply,
            min_reply_length,
            max_reply_length,
        } => {
            // The configuration holds only strings keepalived can read (it reports others).
            let bytes = |h: &str, wild: bool| holdfast_config::model::hex(h, wild);
            Probe::Udp(UdpProbe {
                addr: SocketAddr::new(to.ip, port(None)?),
                bind,
                timeout,
                payload: payload
                    .as_deref()
                    .and_then(|h| bytes(h, false))
                    .map(|(d, _)| d)
                    .unwrap_or_default(),
                require_reply: require_reply.as_deref().map(|h| {
                    let (data, mask) = bytes(h, true).unwrap_or_default();
                    Reply {
                        data,
                        mask,
                        min_len: min_reply_length.map_or(0, |n| n as usize),
                        max_len: max_reply_length.map_or(255, |n| n as usize),
                    }
                }),
                opts,
            })
        }
        CheckerKind::Ping => Probe::Ping(PingProbe {
            addr: to.ip,
            timeout,
            opts,
        }),
        CheckerKind::Smtp { helo_name } => Probe::Smtp(SmtpProbe {
            addr: SocketAddr::new(to.ip, c.common.connect_port.unwrap_or(25)),
            bind,
            timeout,
            helo: helo_name
                .clone()
                .unwrap_or_else(crate::host::short_hostname),
            opts,
        }),
        CheckerKind::Dns { qtype, name } => Probe::Dns(DnsProbe {
            addr: SocketAddr::new(to.ip, c.common.connect_port.unwrap_or(53)),
            timeout,
            qtype: match qtype {
                None => 6,
                Some(q) => holdfast_check::probe::qtype(q)
                    .ok_or_else(|| format!("DNS_CHECK type '{q}' is not supported"))?,
            },
            name: name.clone().unwrap_or_else(|| ".".into()),
            opts,
        }),
        CheckerKind::Mysql(m) => Probe::Mysql(mysql_probe(
            m,
            SocketAddr::new(to.ip, port(Some(3306))?),
            timeout,
        )?),
        CheckerKind::Misc(_) | CheckerKind::File { .. } => {
            return Err(format!("{} is not a network probe", c.kind.keyword()));
        }
    })
}

/// A MYSQL_CHECK probe from its configuration block. The password comes from the block or
/// from `credentials_file` (`user=…` / `password=…` lines, like a my.cnf section), which must
/// not be readable by group or others.
fn mysql_probe(
    m: &holdfast_config::model::MysqlCheck,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<MysqlProbe, String> {
    let (mut user, mut password) = (m.user.clone(), m.password.clone());
    if let Some(f) = &m.credentials_file {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(f).map_err(|e| format!("credentials_file {f}: {e}"))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "credentials_file {f} is readable by others (make it mode 0600)"
            ));
        }
        let text = std::fs::read_to_string(f).map_err(|e| format!("credentials_file {f}: {e}"))?;
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "user" => user = Some(v.trim().to_string()),
                    "password" => password = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
    }
    Ok(MysqlProbe {
        addr,
        timeout,
        user: user.ok_or("MYSQL_CHECK needs user (or a credentials_file)")?,
        password,
        database: m.database.clone(),
        query: m.query.clone().unwrap_or_else(|| "SELECT 1".into()),
        require_writable: m.require_writable,
        require_read_only: m.require_read_only,
        max_lag: m.max_replication_lag,
        tls: (m.tls || m.tls_ca.is_some()).then(|| m.tls_ca.as_ref().map(Into::into)),
    })
}

/// A checker's socket options: `bind_if` and `fwmark`.
fn sock_opts(c: &holdfast_config::model::CheckerCommon) -> SockOpts {
    SockOpts {
        device: c.bind_if.clone(),
        mark: c.fwmark,
    }
}

/// An HTTP_GET / SSL_GET probe from its configuration block.
fn http_probe(
    h: &holdfast_config::model::HttpCheck,
    addr: SocketAddr,
    bind: Option<SocketAddr>,
    opts: SockOpts,
    timeout: Duration,
    default_vhost: Option<&String>,
    tls: Option<Tls>,
) -> Result<HttpProbe, String> {
    let mut urls = Vec::new();
    for u in &h.urls {
        let regex = match &u.regex {
            None => None,
            Some(r) => Some(holdfast_check::probe::RegexCheck {
                re: r
                    .compile()
                    .map_err(|e| format!("url {}: invalid regex '{}': {e}", u.path, r.pattern))?,
                no_match: r.no_match,
                min: r.min_offset.unwrap_or(0),
                max: r.max_offset,
                firstline: r.has("firstline"),
                dollar_endonly: r.has("dollar_endonly") || r.has("multiline"),
            }),
        };
        urls.push(UrlCheck {
            path: u.path.clone(),
            status: u.status_codes.clone(),
            digest: u.digest.clone(),
            virtualhost: u.virtualhost.clone(),
            regex,
        });
    }
    Ok(HttpProbe {
        addr,
        bind,
        timeout,
        urls,
        virtualhost: h.virtualhost.clone().or(default_vhost.cloned()),
        version: match h.http_protocol.as_deref() {
            Some("1.1") => HttpVersion::Http11,
            Some("1.0C") => HttpVersion::Http10Close,
            _ => HttpVersion::Http10,
        },
        tls,
        opts,
    })
}
