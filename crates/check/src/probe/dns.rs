//! DNS_CHECK: a query over UDP (default: type SOA for the root); the check passes when the
//! answer carries the query's id, is a response, has RCODE 0 and at least one answer.

use std::net::SocketAddr;
use std::time::Duration;

use super::ProbeError;

/// What a DNS_CHECK asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsProbe {
    /// `connect_ip`:`connect_port` (default port 53).
    pub addr: SocketAddr,
    /// `connect_timeout`.
    pub timeout: Duration,
    /// `type` as a number (SOA = 6).
    pub qtype: u16,
    /// `name` (default `.`).
    pub name: String,
    /// `bind_if`, `fwmark`.
    pub opts: super::SockOpts,
}

/// keepalived's `type` names.
pub fn qtype(name: &str) -> Option<u16> {
    Some(match name.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        _ => return None,
    })
}

/// A standard query with recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let len = u8::try_from(label.len()).ok().filter(|l| *l <= 63)?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Some(q)
}

/// Checks a response header against the query id.
pub fn answer_ok(id: u16, r: &[u8]) -> Result<(), ProbeError> {
    if r.len() < 12 {
        return Err(ProbeError::Reply("short DNS response".into()));
    }
    if u16::from_be_bytes([r[0], r[1]]) != id || r[2] & 0x80 == 0 {
        return Err(ProbeError::Reply("not a response to our query".into()));
    }
    let rcode = r[3] & 0x0f;
    if rcode != 0 {
        return Err(ProbeError::Reply(format!("DNS RCODE {rcode}")));
    }
    if u16::from_be_bytes([r[6], r[7]]) == 0 {
        return Err(ProbeError::Reply("no answer".into()));
    }
    Ok(())
}

/// Asks once and checks the answer.
pub async fn dns(p: &DnsProbe, id: u16) -> Result<(), ProbeError> {
    let q = query(id, &p.name, p.qtype)
        .ok_or_else(|| ProbeError::Reply(format!("bad name {}", p.name)))?;
    let local = super::any_of(p.addr);
    let sock = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(ProbeError::Connect)?;
    p.opts
        .apply(socket2::SockRef::from(&sock))
        .map_err(ProbeError::Connect)?;
    sock.connect(p.addr).await.map_err(ProbeError::Connect)?;
    sock.send(&q).await.map_err(ProbeError::Connect)?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(p.timeout, sock.recv(&mut buf))
        .await
        .map_err(|_| ProbeError::Timeout(p.timeout))?
        .map_err(ProbeError::Connect)?;
    answer_ok(id, &buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_answers() {
        let q = query(0x1234, "example.org.", 6).unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x07example\x03org\x00\x00\x06\x00\x01");
        assert_eq!(query(1, ".", 6).unwrap()[12..], [0, 0, 6, 0, 1]);
        let mut r = q.clone();
        r[2] |= 0x80;
        r[7] = 1;
        assert!(answer_ok(0x1234, &r).is_ok());
        r[3] |= 3; // NXDOMAIN
        assert!(answer_ok(0x1234, &r).is_err());
        assert!(answer_ok(0x9999, &q).is_err());
        assert!(answer_ok(1, &[0; 5]).is_err());
        assert_eq!(qtype("aaaa"), Some(28));
    }
}
