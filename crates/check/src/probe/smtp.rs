//! SMTP_CHECK: the server's 220 greeting, then `HELO name` answered with 250, then QUIT.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{ProbeError, connect};

/// What an SMTP_CHECK talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpProbe {
    /// `connect_ip`:`connect_port` (default port 25).
    pub addr: SocketAddr,
    /// `bindto`:`bind_port`.
    pub bind: Option<SocketAddr>,
    /// `connect_timeout`: bounds the whole exchange.
    pub timeout: Duration,
    /// `helo_name` (keepalived: the host name).
    pub helo: String,
    /// `bind_if`, `fwmark`.
    pub opts: super::SockOpts,
}

/// Reads one (possibly multi-line) SMTP reply and returns its code.
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<u16, ProbeError> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).await.map_err(ProbeError::Connect)?;
        if n == 0 {
            return Err(ProbeError::Reply("connection closed".into()));
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| ProbeError::Reply(format!("not an SMTP reply: {}", line.trim())))?;
        // "250-…" continues, "250 …" ends.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
}

async fn exchange(p: &SmtpProbe) -> Result<(), ProbeError> {
    let stream = connect(p.addr, p.bind, &p.opts, p.timeout).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let greeting = reply(&mut r).await?;
    if greeting != 220 {
        return Err(ProbeError::Reply(format!("greeting {greeting}")));
    }
    w.write_all(format!("HELO {}\r\n", p.helo).as_bytes())
        .await
        .map_err(ProbeError::Connect)?;
    let helo = reply(&mut r).await?;
    let _ = w.write_all(b"QUIT\r\n").await;
    if helo == 250 {
        Ok(())
    } else {
        Err(ProbeError::Reply(format!("HELO answered {helo}")))
    }
}

/// Runs the exchange within the timeout.
pub async fn smtp(p: &SmtpProbe) -> Result<(), ProbeError> {
    tokio::time::timeout(p.timeout, exchange(p))
        .await
        .map_err(|_| ProbeError::Timeout(p.timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn server(helo_code: &'static str) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"220-mx.example ESMTP\r\n220 ready\r\n").await;
                let mut b = [0u8; 256];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(format!("{helo_code} hello\r\n").as_bytes())
                    .await;
                let _ = s.read(&mut b).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn helo_must_be_accepted() {
        let p = |addr| SmtpProbe {
            addr,
            bind: None,
            timeout: Duration::from_secs(2),
            helo: "lb1".into(),
            opts: Default::default(),
        };
        assert!(smtp(&p(server("250").await)).await.is_ok());
        assert!(matches!(
            smtp(&p(server("554").await)).await,
            Err(ProbeError::Reply(_))
        ));
    }
}
