//! HTTP_GET and SSL_GET: for every `url`, a GET on a fresh connection (over TLS for SSL_GET);
//! the status must be in the accepted ranges (default 200-299) and, when a digest is given,
//! the body's MD5 must match. SSL_GET does not verify the server's certificate, as keepalived
//! does not without an `SSL { ca }` block; the handshake itself is still checked.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};

use super::{ProbeError, connect};

/// `http_protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpVersion {
    /// `1.0` (keepalived's default).
    #[default]
    Http10,
    /// `1.0C`: HTTP/1.0 with `Connection: close`.
    Http10Close,
    /// `1.1` (with `Connection: close`).
    Http11,
}

/// One `url { … }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlCheck {
    /// `path`.
    pub path: String,
    /// `status_code` ranges; empty: 200-299.
    pub status: Vec<(u16, u16)>,
    /// `digest`: MD5 of the body, hex.
    pub digest: Option<String>,
    /// `virtualhost` of this url.
    pub virtualhost: Option<String>,
    /// `regex`: what the body must (or must not) match.
    pub regex: Option<RegexCheck>,
}

/// A url's `regex` (keepalived's semantics): the body matches when the pattern is found
/// starting between `min` and `max` (bytes into the body); the check passes when that is
/// what `no_match` does not ask for.
#[derive(Clone, Debug)]
pub struct RegexCheck {
    /// The compiled pattern (`holdfast_config::model::UrlRegex::compile`).
    pub re: regex::bytes::Regex,
    /// `regex_no_match`: the check passes when the body does not match.
    pub no_match: bool,
    /// `regex_min_offset`.
    pub min: usize,
    /// `regex_max_offset`.
    pub max: Option<usize>,
    /// `firstline`: the match must start in the body's first line.
    pub firstline: bool,
    /// `$` without `multiline` also matches before a final newline, as in PCRE2, unless
    /// `dollar_endonly` (Rust's `$` is end-only).
    pub dollar_endonly: bool,
}

impl PartialEq for RegexCheck {
    fn eq(&self, o: &RegexCheck) -> bool {
        self.re.as_str() == o.re.as_str()
            && (
                self.no_match,
                self.min,
                self.max,
                self.firstline,
                self.dollar_endonly,
            ) == (o.no_match, o.min, o.max, o.firstline, o.dollar_endonly)
    }
}

impl Eq for RegexCheck {}

impl RegexCheck {
    /// Whether `body` matches (before `no_match` is applied).
    pub fn matches(&self, body: &[u8]) -> bool {
        let found = |text: &[u8]| -> bool {
            if self.min > text.len() {
                return false;
            }
            let Some(m) = self.re.find_at(text, self.min) else {
                return false;
            };
            let first_line_end = text.iter().position(|b| *b == b'\n').unwrap_or(text.len());
            self.max.is_none_or(|max| m.start() <= max)
                && (!self.firstline || m.start() <= first_line_end)
        };
        if found(body) {
            return true;
        }
        // PCRE2's `$` also matches before a final newline; Rust's only at the very end.
        !self.dollar_endonly && body.last() == Some(&b'\n') && found(&body[..body.len() - 1])
    }
}

/// How much of a body a regex is matched against (the MD5 digest covers all of it).
pub const REGEX_BODY_LIMIT: usize = 4 << 20;

/// What an HTTP_GET checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    /// `connect_ip`:`connect_port`.
    pub addr: SocketAddr,
    /// `bindto`:`bind_port`.
    pub bind: Option<SocketAddr>,
    /// `connect_timeout`: bounds each request from connect to the end of the body.
    pub timeout: Duration,
    /// The urls, all of which must pass.
    pub urls: Vec<UrlCheck>,
    /// The checker's `virtualhost` (a url's own wins).
    pub virtualhost: Option<String>,
    /// `http_protocol`.
    pub version: HttpVersion,
    /// SSL_GET: TLS, with this SNI name (`sni_name`, or the virtual host with `enable_sni`).
    pub tls: Option<Tls>,
    /// `bind_if`, `fwmark`.
    pub opts: super::SockOpts,
}

/// TLS for SSL_GET.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// Server name sent in SNI; none sends no SNI.
    pub sni: Option<String>,
}

/// Accepts any certificate (keepalived's SSL_GET without a CA), still checking that the
/// server holds the key of the certificate it presents.
#[derive(Debug)]
struct AnyCert(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, ProbeError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Http(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg)))
}

/// Runs every url in turn; the first failure is returned.
pub async fn http(p: &HttpProbe) -> Result<(), ProbeError> {
    for u in &p.urls {
        match tokio::time::timeout(p.timeout, one(p, u)).await {
            Ok(r) => r?,
            Err(_) => return Err(ProbeError::Timeout(p.timeout)),
        }
    }
    Ok(())
}

/// keepalived's Host header: the virtual host, else the address, with the port unless 80.
fn host(p: &HttpProbe, u: &UrlCheck) -> String {
    let name = match u.virtualhost.as_ref().or(p.virtualhost.as_ref()) {
        Some(v) => v.clone(),
        None if p.addr.is_ipv6() => format!("[{}]", p.addr.ip()),
        None => p.addr.ip().to_string(),
    };
    if p.addr.port() == 80 {
        name
    } else {
        format!("{name}:{}", p.addr.port())
    }
}

async fn one(p: &HttpProbe, u: &UrlCheck) -> Result<(), ProbeError> {
    let stream = connect(p.addr, p.bind, &p.opts, p.timeout).await?;
    match &p.tls {
        None => exchange(stream, p, u).await,
        Some(t) => {
            let name = match &t.sni {
                Some(n) => rustls::pki_types::ServerName::try_from(n.clone())
                    .map_err(|e| ProbeError::Http(format!("sni_name {n}: {e}")))?,
                // An IP address as the name: rustls sends no SNI for it.
                None => rustls::pki_types::ServerName::IpAddress(p.addr.ip().into()),
            };
            let tls = tls_connector()?
                .connect(name, stream)
                .await
                .map_err(|e| ProbeError::Http(format!("TLS handshake: {e}")))?;
            exchange(tls, p, u).await
        }
    }
}

async fn exchange<IO>(io: IO, p: &HttpProbe, u: &UrlCheck) -> Result<(), ProbeError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ProbeError::Http(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let mut req = hyper::Request::get(if u.path.is_empty() { "/" } else { &u.path })
        .header(hyper::header::HOST, host(p, u))
        .header(hyper::header::USER_AGENT, "KeepAliveClient");
    req = match p.version {
        HttpVersion::Http10 => req.version(hyper::Version::HTTP_10),
        HttpVersion::Http10Close => req
            .version(hyper::Version::HTTP_10)
            .header(hyper::header::CONNECTION, "close"),
        HttpVersion::Http11 => req
            .version(hyper::Version::HTTP_11)
            .header(hyper::header::CONNECTION, "close"),
    };
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Http(e.to_string()))?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ProbeError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let ok = if u.status.is_empty() {
            (200..=299).contains(&status)
        } else {
            u.status
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&status))
        };
        if !ok {
            return Err(ProbeError::Status(status));
        }
        if u.digest.is_none() && u.regex.is_none() {
            return Ok(());
        }
        // The body, streamed: all of it through MD5, the first REGEX_BODY_LIMIT bytes kept
        // for the regex.
        let mut md5 = Md5::new();
        let mut kept = Vec::new();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ProbeError::Http(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                md5.update(&data);
                if u.regex.is_some() && kept.len() < REGEX_BODY_LIMIT {
                    let room = REGEX_BODY_LIMIT - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
        if let Some(want) = &u.digest {
            let got = format!("{:x}", md5.finalize());
            if !got.eq_ignore_ascii_case(want) {
                return Err(ProbeError::Digest { got });
            }
        }
        if let Some(r) = &u.regex
            && r.matches(&kept) == r.no_match
        {
            return Err(ProbeError::Regex);
        }
        Ok(())
    }
    .await;
    conn.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection-at-a-time HTTP server answering `status` and `body`, recording the
    /// request heads it saw.
    async fn server(
        status: u16,
        body: &'static str,
    ) -> (SocketAddr, tokio::sync::mpsc::Receiver<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .await;
                let resp = format!(
                    "HTTP/1.0 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (addr, rx)
    }

    fn probe(addr: SocketAddr, urls: Vec<UrlCheck>) -> HttpProbe {
        HttpProbe {
            addr,
            bind: None,
            timeout: Duration::from_secs(2),
            urls,
            virtualhost: None,
            version: HttpVersion::Http10,
            tls: None,
            opts: Default::default(),
        }
    }

    #[tokio::test]
    async fn status_ranges_digest_and_host_header() {
        let (addr, mut seen) = server(200, "hello").await;
        let url = |status: Vec<(u16, u16)>, digest: Option<&str>| UrlCheck {
            path: "/health".into(),
            status,
            digest: digest.map(Into::into),
            virtualhost: None,
            regex: None,
        };
        assert!(http(&probe(addr, vec![url(vec![], None)])).await.is_ok());
        let head = seen.recv().await.unwrap();
        assert!(head.starts_with("GET /health HTTP/1.0\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("host: 127.0.0.1:{}", addr.port())),
            "{head}"
        );
        assert!(matches!(
            http(&probe(addr, vec![url(vec![(300, 399)], None)])).await,
            Err(ProbeError::Status(200))
        ));
        // md5("hello")
        let good = "5d41402abc4b2a76b9719d911017c592";
        assert!(
            http(&probe(addr, vec![url(vec![], Some(good))]))
                .await
                .is_ok()
        );
        assert!(matches!(
            http(&probe(addr, vec![url(vec![], Some("00"))])).await,
            Err(ProbeError::Digest { .. })
        ));
    }

    #[tokio::test]
    async fn a_server_error_and_a_silent_server_fail() {
        let (addr, _seen) = server(503, "").await;
        let u = UrlCheck {
            path: "/".into(),
            ..UrlCheck::default()
        };
        assert!(matches!(
            http(&probe(addr, vec![u.clone()])).await,
            Err(ProbeError::Status(503))
        ));
        // Accepts and never answers: the timeout bounds the probe.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = l.local_addr().unwrap();
        let mut p = probe(silent, vec![u]);
        p.timeout = Duration::from_millis(200);
        assert!(matches!(http(&p).await, Err(ProbeError::Timeout(_))));
        drop(l);
    }

    #[tokio::test]
    async fn ssl_get_talks_to_a_self_signed_server() {
        let ck = rcgen::generate_simple_self_signed(vec!["db.example".into()]).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = vec![0; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let mut p = probe(
            addr,
            vec![UrlCheck {
                path: "/".into(),
                digest: Some("5d41402abc4b2a76b9719d911017c592".into()),
                ..UrlCheck::default()
            }],
        );
        p.tls = Some(Tls {
            sni: Some("db.example".into()),
        });
        http(&p)
            .await
            .expect("SSL_GET over a self-signed certificate");
        // The same server spoken to in plain HTTP fails.
        p.tls = None;
        p.timeout = Duration::from_millis(500);
        assert!(http(&p).await.is_err());
    }

    fn rx(pattern: &str) -> RegexCheck {
        RegexCheck {
            re: regex::bytes::RegexBuilder::new(pattern)
                .unicode(false)
                .build()
                .unwrap(),
            no_match: false,
            min: 0,
            max: None,
            firstline: false,
            dollar_endonly: false,
        }
    }

    #[test]
    fn a_regex_matches_where_keepalived_s_would() {
        // `$` before a final newline, as PCRE2's; not with dollar_endonly.
        assert!(rx(r"\d+ UP$").matches(b"node 3 UP\n"));
        let end_only = RegexCheck {
            dollar_endonly: true,
            ..rx(r"\d+ UP$")
        };
        assert!(!end_only.matches(b"node 3 UP\n"));
        assert!(end_only.matches(b"node 3 UP"));
        // The match must start between the offsets.
        let body = b"0123456789 UP";
        assert!(
            RegexCheck {
                min: 11,
                ..rx("UP")
            }
            .matches(body)
        );
        assert!(
            !RegexCheck {
                min: 12,
                ..rx("UP")
            }
            .matches(body)
        );
        assert!(
            RegexCheck {
                max: Some(11),
                ..rx("UP")
            }
            .matches(body)
        );
        assert!(
            !RegexCheck {
                max: Some(10),
                ..rx("UP")
            }
            .matches(body)
        );
        assert!(!RegexCheck { min: 99, ..rx("") }.matches(body));
        // firstline: only a match starting in the first line counts.
        assert!(
            !RegexCheck {
                firstline: true,
                ..rx("UP")
            }
            .matches(b"status\nUP")
        );
        assert!(
            RegexCheck {
                firstline: true,
                ..rx("UP")
            }
            .matches(b"UP\nstatus")
        );
    }

    #[tokio::test]
    async fn the_body_must_match_the_url_s_regex_or_not_with_regex_no_match() {
        let (addr, _seen) = server(200, "proxysql: ONLINE\n").await;
        let url = |r: RegexCheck| UrlCheck {
            path: "/".into(),
            regex: Some(r),
            ..UrlCheck::default()
        };
        assert!(http(&probe(addr, vec![url(rx("ONLINE$"))])).await.is_ok());
        assert!(matches!(
            http(&probe(addr, vec![url(rx("OFFLINE"))])).await,
            Err(ProbeError::Regex)
        ));
        let not = |p: &str| RegexCheck {
            no_match: true,
            ..rx(p)
        };
        assert!(http(&probe(addr, vec![url(not("OFFLINE"))])).await.is_ok());
        assert!(matches!(
            http(&probe(addr, vec![url(not("ONLINE"))])).await,
            Err(ProbeError::Regex)
        ));
        // With a digest too: both are checked on the one body.
        let both = UrlCheck {
            digest: Some(format!("{:x}", Md5::digest(b"proxysql: ONLINE\n"))),
            ..url(rx("ONLINE"))
        };
        assert!(http(&probe(addr, vec![both])).await.is_ok());
    }
}
