//! TCP_CHECK: a connection that opens within the timeout is a success.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ProbeError, connect};

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
    connect(p.addr, p.bind, &p.opts, p.timeout).await.map(drop)
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
