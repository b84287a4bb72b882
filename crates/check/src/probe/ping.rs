//! PING_CHECK: an ICMP (or ICMPv6) echo request; a matching echo reply within the timeout
//! passes. Uses a raw socket (the daemon runs as root, as keepalived does).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::ProbeError;

/// What a PING_CHECK pings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingProbe {
    /// `connect_ip` (default: the real server).
    pub addr: IpAddr,
    /// `connect_timeout`.
    pub timeout: Duration,
    /// `bind_if`, `fwmark`.
    pub opts: super::SockOpts,
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request (type 8 for IPv4, 128 for IPv6; the kernel fills the ICMPv6 checksum).
pub fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"holdfast");
    if !v6 {
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    m
}

/// Whether `b` (an ICMP message, after any IPv4 header) is our echo reply.
pub fn is_reply(v6: bool, b: &[u8], id: u16, seq: u16) -> bool {
    b.len() >= 8
        && b[0] == if v6 { 129 } else { 0 }
        && u16::from_be_bytes([b[4], b[5]]) == id
        && u16::from_be_bytes([b[6], b[7]]) == seq
}

/// Pings once; `id` tells this checker's replies from others'. The raw socket is read
/// with a timeout on a blocking thread (tokio has no safe registration for it).
pub async fn ping(p: &PingProbe, id: u16, seq: u16) -> Result<(), ProbeError> {
    let p = p.clone();
    tokio::task::spawn_blocking(move || ping_blocking(&p, id, seq))
        .await
        .map_err(|e| ProbeError::Reply(format!("ping task: {e}")))?
}

fn ping_blocking(p: &PingProbe, id: u16, seq: u16) -> Result<(), ProbeError> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::Read;
    let v6 = p.addr.is_ipv6();
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let sock = Socket::new(domain, Type::RAW, Some(proto)).map_err(ProbeError::Connect)?;
    p.opts
        .apply(socket2::SockRef::from(&sock))
        .map_err(ProbeError::Connect)?;
    let target = SocketAddr::new(p.addr, 0);
    sock.send_to(&echo_request(v6, id, seq), &target.into())
        .map_err(ProbeError::Connect)?;
    let deadline = std::time::Instant::now() + p.timeout;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(ProbeError::Timeout(p.timeout));
        }
        sock.set_read_timeout(Some(left))
            .map_err(ProbeError::Connect)?;
        let mut r: &Socket = &sock;
        let n = match r.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ProbeError::Timeout(p.timeout));
            }
            Err(e) => return Err(ProbeError::Connect(e)),
        };
        let got = &buf[..n];
        let icmp = if v6 {
            got
        } else {
            // Raw IPv4 sockets deliver the IP header too: check its source.
            let ihl = usize::from(got.first().map_or(0, |b| b & 0x0f)) * 4;
            let src = got
                .get(12..16)
                .map(|a| IpAddr::from([a[0], a[1], a[2], a[3]]));
            if src != Some(p.addr) {
                continue;
            }
            got.get(ihl..).unwrap_or(&[])
        };
        if is_reply(v6, icmp, id, seq) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let m = echo_request(false, 0x1234, 7);
        assert_eq!(checksum(&m), 0, "a message with its checksum sums to zero");
        let mut reply = m.clone();
        reply[0] = 0;
        assert!(is_reply(false, &reply, 0x1234, 7));
        assert!(!is_reply(false, &reply, 0x1234, 8));
        assert!(!is_reply(false, &m, 0x1234, 7), "a request is not a reply");
    }

    #[tokio::test]
    async fn loopback_answers() {
        // Loopback only: nothing leaves the host (the e2e tests ping inside namespaces).
        let p = PingProbe {
            addr: "127.0.0.1".parse().unwrap(),
            timeout: Duration::from_secs(2),
            opts: Default::default(),
        };
        ping(&p, 0x4242, 1)
            .await
            .expect("ping 127.0.0.1 (needs root)");
    }
}
