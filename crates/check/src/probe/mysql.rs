//! MYSQL_CHECK (holdfast extension): a real MySQL/MariaDB session (mysql_async), kept open
//! between checks, running the check query and then the role and lag gates:
//! `require_writable` (`@@read_only = 0` and `@@innodb_read_only = 0`), `require_read_only`
//! (`@@read_only = 1`) and `max_replication_lag` (`SHOW SLAVE STATUS` on MariaDB, `SHOW REPLICA
//! STATUS` on MySQL 8: both replication threads running, lag known and within the limit).
//! Every step is bounded by the timeout; a failed or timed-out session is closed and a new one
//! opened at the next check, so a check never leaves connections behind.

use std::net::SocketAddr;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};

use super::ProbeError;

/// What a MYSQL_CHECK connects to and requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MysqlProbe {
    /// `connect_ip`:`connect_port`.
    pub addr: SocketAddr,
    /// `connect_timeout`: bounds each check.
    pub timeout: Duration,
    /// `user`.
    pub user: String,
    /// `password` (never logged).
    pub password: Option<String>,
    /// `database`.
    pub database: Option<String>,
    /// `query` (default `SELECT 1`).
    pub query: String,
    /// `require_writable`.
    pub require_writable: bool,
    /// `require_read_only`.
    pub require_read_only: bool,
    /// `max_replication_lag`.
    pub max_lag: Option<Duration>,
    /// `tls`: encrypt the session. With `tls_ca` the server's certificate must chain to it
    /// (and name the address connected to); without, it is not verified (encryption only).
    pub tls: Option<Option<std::path::PathBuf>>,
}

/// A MYSQL_CHECK with its session.
pub struct MysqlChecker {
    probe: MysqlProbe,
    conn: Option<Conn>,
}

impl std::fmt::Debug for MysqlChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlChecker")
            .field("addr", &self.probe.addr)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

fn db_err(e: mysql_async::Error) -> ProbeError {
    ProbeError::Mysql(e.to_string())
}

/// A column of a status row as text (`NULL` as `None`).
fn text(row: &Row, name: &str) -> Option<String> {
    let i = row
        .columns_ref()
        .iter()
        .position(|c| c.name_str() == name)?;
    match row.as_ref(i)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Judges a replica status row against the lag limit.
pub fn replica_ok(row: &Row, limit: Duration) -> Result<(), ProbeError> {
    let pick = |a: &str, b: &str| text(row, a).or_else(|| text(row, b));
    let io = pick("Slave_IO_Running", "Replica_IO_Running").unwrap_or_default();
    let sql = pick("Slave_SQL_Running", "Replica_SQL_Running").unwrap_or_default();
    if io != "Yes" || sql != "Yes" {
        return Err(ProbeError::Gate(format!(
            "replication not running (IO {io}, SQL {sql})"
        )));
    }
    let lag = pick("Seconds_Behind_Master", "Seconds_Behind_Source")
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| ProbeError::Gate("replication lag unknown".into()))?;
    if Duration::from_secs(lag) > limit {
        return Err(ProbeError::Gate(format!(
            "replication lag {lag} s above {} s",
            limit.as_secs()
        )));
    }
    Ok(())
}

impl MysqlChecker {
    /// A checker; it connects at its first check.
    pub fn new(probe: MysqlProbe) -> MysqlChecker {
        MysqlChecker { probe, conn: None }
    }

    /// One check, bounded by the timeout. On failure of the session the connection is
    /// closed (a gate that fails on a healthy session keeps it).
    pub async fn check(&mut self) -> Result<(), ProbeError> {
        let timeout = self.probe.timeout;
        match tokio::time::timeout(timeout, self.run()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e @ ProbeError::Gate(_))) => Err(e),
            Ok(Err(e)) => {
                self.close().await;
                Err(e)
            }
            Err(_) => {
                // The server hangs: forget the session (its socket is closed on drop).
                self.conn = None;
                Err(ProbeError::Timeout(timeout))
            }
        }
    }

    /// Closes the session politely (COM_QUIT), bounded by the timeout.
    pub async fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = tokio::time::timeout(self.probe.timeout, c.disconnect()).await;
        }
    }

    async fn run(&mut self) -> Result<(), ProbeError> {
        let p = &self.probe;
        if self.conn.is_none() {
            let opts = OptsBuilder::default()
                .ip_or_hostname(p.addr.ip().to_string())
                .tcp_port(p.addr.port())
                .user(Some(p.user.clone()))
                .pass(p.password.clone())
                .db_name(p.database.clone())
                .prefer_socket(false)
                .ssl_opts(p.tls.as_ref().map(|ca| {
                    match ca {
                        Some(ca) => {
                            mysql_async::SslOpts::default().with_root_certs(vec![ca.clone().into()])
                        }
                        None => mysql_async::SslOpts::default()
                            .with_danger_accept_invalid_certs(true)
                            .with_danger_skip_domain_validation(true),
                    }
                }));
            self.conn = Some(Conn::new(opts).await.map_err(db_err)?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(ProbeError::Mysql("no session".into()));
        };
        conn.query_drop(&p.query).await.map_err(db_err)?;
        if p.require_writable || p.require_read_only {
            let (ro, inno): (Option<i64>, Option<i64>) = conn
                .query_first("SELECT @@global.read_only, @@global.innodb_read_only")
                .await
                .map_err(db_err)?
                .unwrap_or((None, None));
            let (ro, inno) = (ro.unwrap_or(0), inno.unwrap_or(0));
            if p.require_writable && (ro != 0 || inno != 0) {
                return Err(ProbeError::Gate(format!(
                    "not writable (read_only={ro}, innodb_read_only={inno})"
                )));
            }
            if p.require_read_only && ro == 0 {
                return Err(ProbeError::Gate("not read-only (read_only=0)".into()));
            }
        }
        if let Some(limit) = p.max_lag {
            let row: Option<Row> = match conn.query_first("SHOW SLAVE STATUS").await {
                Ok(r) => r,
                // MySQL 8.4 dropped the old spelling.
                Err(_) => conn
                    .query_first("SHOW REPLICA STATUS")
                    .await
                    .map_err(db_err)?,
            };
            let row = row.ok_or_else(|| ProbeError::Gate("not a replica".into()))?;
            replica_ok(&row, limit)?;
        }
        Ok(())
    }
}
