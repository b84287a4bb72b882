//! UDP_CHECK: a datagram to the server; without `require_reply` the check passes unless the
//! host answers "port unreachable" within the timeout; with it, a reply must come (and match
//! the given bytes, and have a length within the bounds).

use std::net::SocketAddr;
use std::time::Duration;

use super::ProbeError;

/// What a UDP_CHECK sends and expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpProbe {
    /// `connect_ip`:`connect_port`.
    pub addr: SocketAddr,
    /// `bindto`:`bind_port`.
    pub bind: Option<SocketAddr>,
    /// `connect_timeout`.
    pub timeout: Duration,
    /// `payload` (bytes).
    pub payload: Vec<u8>,
    /// `require_reply [HEX]`: `Some(prefix)` (possibly empty) when a reply is required.
    pub require_reply: Option<Vec<u8>>,
    /// `min_reply_length`.
    pub min_len: Option<usize>,
    /// `max_reply_length`.
    pub max_len: Option<usize>,
    /// `bind_if`, `fwmark`.
    pub opts: super::SockOpts,
}

/// Parses keepalived's hex strings (`payload`, `require_reply`).
pub fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Sends and waits as the probe says.
pub async fn udp(p: &UdpProbe) -> Result<(), ProbeError> {
    let local = p.bind.unwrap_or_else(|| super::any_of(p.addr));
    let sock = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(ProbeError::Connect)?;
    p.opts
        .apply(socket2::SockRef::from(&sock))
        .map_err(ProbeError::Connect)?;
    sock.connect(p.addr).await.map_err(ProbeError::Connect)?;
    sock.send(&p.payload).await.map_err(ProbeError::Connect)?;
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(p.timeout, sock.recv(&mut buf)).await {
        // No answer: fine unless one is required.
        Err(_) if p.require_reply.is_none() => Ok(()),
        Err(_) => Err(ProbeError::Timeout(p.timeout)),
        Ok(Err(e)) => Err(ProbeError::Connect(e)),
        Ok(Ok(n)) => {
            let reply = &buf[..n];
            if p.min_len.is_some_and(|m| n < m) || p.max_len.is_some_and(|m| n > m) {
                return Err(ProbeError::Reply(format!(
                    "reply of {n} bytes out of bounds"
                )));
            }
            match &p.require_reply {
                Some(want) if !reply.starts_with(want) => Err(ProbeError::Reply(
                    "reply does not match require_reply".into(),
                )),
                _ => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(addr: SocketAddr, require: Option<&str>) -> UdpProbe {
        UdpProbe {
            addr,
            bind: None,
            timeout: Duration::from_millis(300),
            payload: b"ping".to_vec(),
            require_reply: require.map(|h| hex(h).unwrap()),
            min_len: None,
            max_len: None,
            opts: Default::default(),
        }
    }

    #[tokio::test]
    async fn an_echo_passes_a_closed_port_fails() {
        let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            while let Ok((n, from)) = echo.recv_from(&mut b).await {
                let _ = echo.send_to(&b[..n], from).await;
            }
        });
        // "ping" = 70696e67
        assert!(udp(&probe(addr, Some("7069"))).await.is_ok());
        assert!(matches!(
            udp(&probe(addr, Some("ffff"))).await,
            Err(ProbeError::Reply(_))
        ));
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        assert!(matches!(
            udp(&probe(closed, None)).await,
            Err(ProbeError::Connect(_))
        ));
        assert_eq!(hex("0aFF"), Some(vec![10, 255]));
        assert_eq!(hex("abc"), None);
    }
}
