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
    /// `require_reply [HEX]`: `Some` when a reply is required (its pattern may be empty:
    /// any reply will do).
    pub require_reply: Option<Reply>,
    /// `bind_if`, `fwmark`.
    pub opts: super::SockOpts,
}

/// What a reply must hold (keepalived's `require_reply` with `min_reply_length` and
/// `max_reply_length`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// The octets the reply starts with (empty: any reply).
    pub data: Vec<u8>,
    /// Per octet of `data`, the bits that may differ (wildcard nibbles).
    pub mask: Vec<u8>,
    /// `min_reply_length` (keepalived: 0).
    pub min_len: usize,
    /// `max_reply_length` (keepalived: 255).
    pub max_len: usize,
}

impl Reply {
    /// keepalived's judgement of a reply: with reply data, its length must be within the
    /// bounds and as many octets as both have must match outside the wildcards; without, any
    /// reply is enough.
    pub fn matches(&self, reply: &[u8]) -> bool {
        if self.data.is_empty() {
            return true;
        }
        if reply.len() < self.min_len || reply.len() > self.max_len {
            return false;
        }
        reply
            .iter()
            .zip(&self.data)
            .enumerate()
            .all(|(i, (got, want))| (got ^ want) & !self.mask.get(i).copied().unwrap_or(0) == 0)
    }
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
        Ok(Ok(n)) => match &p.require_reply {
            Some(want) if !want.matches(&buf[..n]) => Err(ProbeError::Reply(format!(
                "reply of {n} bytes does not match require_reply"
            ))),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(addr: SocketAddr, require: Option<&[u8]>) -> UdpProbe {
        UdpProbe {
            addr,
            bind: None,
            timeout: Duration::from_millis(300),
            payload: b"ping".to_vec(),
            require_reply: require.map(|d| Reply {
                data: d.to_vec(),
                mask: vec![0; d.len()],
                min_len: 0,
                max_len: 255,
            }),
            opts: Default::default(),
        }
    }

    #[test]
    fn a_reply_is_judged_as_keepalived_judges_it() {
        let r = Reply {
            data: vec![0x12, 0x30, 0xff],
            mask: vec![0x00, 0x0f, 0x00],
            min_len: 2,
            max_len: 4,
        };
        // The wildcard nibble may be anything; the others must match.
        assert!(r.matches(&[0x12, 0x3a, 0xff]));
        assert!(!r.matches(&[0x12, 0x4a, 0xff]));
        assert!(!r.matches(&[0x13, 0x30, 0xff]));
        // Only as many octets as both have are compared; the length bounds hold.
        assert!(r.matches(&[0x12, 0x30]));
        assert!(!r.matches(&[0x12]));
        assert!(!r.matches(&[0x12, 0x30, 0xff, 0, 0]));
        // Without reply data, any reply will do (the bounds are not checked).
        let any = Reply {
            min_len: 10,
            ..Reply::default()
        };
        assert!(any.matches(&[1]));
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
        assert!(udp(&probe(addr, Some(&[0x70, 0x69]))).await.is_ok());
        assert!(matches!(
            udp(&probe(addr, Some(&[0xff, 0xff]))).await,
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
    }
}
