//! Probes from their configuration blocks, shared by virtual-server checkers (`lvs`) and
//! native `vrrp_script` trackers (`plan`).

use std::net::SocketAddr;
use std::time::Duration;

use holdfast_check::probe::{HttpProbe, HttpVersion, MysqlProbe, SockOpts, Tls, UrlCheck};

/// A MYSQL_CHECK probe from its configuration block. The password comes from the block or
/// from `credentials_file` (`user=…` / `password=…` lines, like a my.cnf section), which must
/// not be readable by group or others.
pub fn mysql_probe(
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
pub fn sock_opts(c: &holdfast_config::model::CheckerCommon) -> SockOpts {
    SockOpts {
        device: c.bind_if.clone(),
        mark: c.fwmark,
    }
}

/// An HTTP_GET / SSL_GET probe from its configuration block.
pub fn http_probe(
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
