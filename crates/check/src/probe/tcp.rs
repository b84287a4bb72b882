//! TCP_CHECK: a connection that opens within the timeout is a success.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ProbeError, connects};

/// What a TCP_CHECK connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpProbe {
    /// `connect_ip`:`connect_port`.
    pub addr: SocketAddr,
    /// `bindto`:`bind_port`.
    pub bind: Option<SocketAddr>,
    /// `connect_timeout`.
    pub timeout: Duration,
    /// `bind_if`, `fwmark`.
    pub opts: super::SockOpts,
}

/// Connects and closes.
pub async fn tcp(p: &TcpProbe) -> Result<(), ProbeError> {
    connects(p.addr, p.bind, &p.opts, p.timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_port_passes_and_closed_port_fails() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let p = TcpProbe {
            addr,
            bind: None,
            timeout: Duration::from_secs(1),
            opts: Default::default(),
        };
        assert!(tcp(&p).await.is_ok());
        drop(l);
        assert!(matches!(tcp(&p).await, Err(ProbeError::Connect(_))));
    }

    #[tokio::test]
    async fn a_loopback_connection_is_open_when_connect_returns() {
        // The fast path: no poller registration, no timer.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let opened = super::super::open(addr, None, &Default::default()).unwrap();
        assert!(matches!(opened, super::super::Opening::Open(_)));
        // The listener has the connection, complete.
        l.set_nonblocking(true).unwrap();
        assert!(l.accept().is_ok());
    }

    #[tokio::test]
    async fn a_pending_connection_is_awaited_until_it_opens() {
        use super::super::{Opening, finish, open};
        // A listener whose accept queue is full drops SYNs: the next connection stays
        // pending until the queue has room and the SYN is sent again (after about 1 s).
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        sock.listen(0).unwrap();
        let l: std::net::TcpListener = sock.into();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let mut queued = Vec::new();
        let pending = loop {
            assert!(queued.len() < 16, "the accept queue never filled");
            match open(addr, None, &Default::default()).unwrap() {
                Opening::Open(s) => queued.push(s),
                Opening::Pending(s) => break s,
            }
        };
        assert!(!queued.is_empty());
        // Still pending after a short wait: the SYN was dropped, nothing answers it.
        assert!(matches!(
            finish(pending.try_clone().unwrap(), Duration::from_millis(100)).await,
            Err(ProbeError::Timeout(_))
        ));
        while l.accept().is_ok() {}
        let open_stream = finish(pending, Duration::from_secs(5)).await;
        assert!(open_stream.is_ok(), "{:?}", open_stream.err());
    }

    #[tokio::test]
    async fn bind_if_names_the_interface_the_probe_leaves_by() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut p = TcpProbe {
            addr: l.local_addr().unwrap(),
            bind: None,
            timeout: Duration::from_secs(1),
            opts: super::super::SockOpts {
                device: Some("lo".into()),
                mark: Some(3),
            },
        };
        assert!(tcp(&p).await.is_ok());
        p.opts.device = Some("hf-no-such-if".into());
        assert!(matches!(tcp(&p).await, Err(ProbeError::Connect(_))));
    }
}
