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

#[cfg(test)]
mod tests {
    //! MySQL 8.4 spoken at the protocol level: a fake server that refuses `SHOW SLAVE STATUS`
    //! as 8.4 does and answers `SHOW REPLICA STATUS` with 8.4's column names, so the probe's
    //! MySQL 8 path runs against the client library without a MySQL 8 server (Debian ships only
    //! MariaDB, whose path the end-to-end tests cover). The server speaks just enough of the
    //! classic protocol (handshake v10, text result sets with EOF packets) for one client.

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What the fake replica reports (`None`: not a replica), and the queries it was asked.
    #[derive(Default)]
    struct Status {
        replica: Option<(&'static str, &'static str, Option<u64>)>,
        queries: Vec<String>,
    }

    fn lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
        assert!(s.len() < 251, "short strings only");
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }

    /// One connection's packets, numbered as the protocol wants.
    struct Wire {
        stream: TcpStream,
        seq: u8,
    }

    impl Wire {
        fn send(&mut self, body: &[u8]) -> std::io::Result<()> {
            let len = (body.len() as u32).to_le_bytes();
            self.stream.write_all(&[len[0], len[1], len[2], self.seq])?;
            self.seq = self.seq.wrapping_add(1);
            self.stream.write_all(body)
        }

        fn recv(&mut self) -> std::io::Result<Vec<u8>> {
            let mut head = [0u8; 4];
            self.stream.read_exact(&mut head)?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
            self.seq = head[3].wrapping_add(1);
            let mut body = vec![0; len];
            self.stream.read_exact(&mut body)?;
            Ok(body)
        }

        fn ok(&mut self) -> std::io::Result<()> {
            // OK, 0 rows, no insert id, autocommit, no warnings.
            self.send(&[0x00, 0, 0, 0x02, 0, 0, 0])
        }

        fn eof(&mut self) -> std::io::Result<()> {
            self.send(&[0xfe, 0, 0, 0x02, 0])
        }

        fn error(&mut self, code: u16, state: &str, msg: &str) -> std::io::Result<()> {
            let mut p = vec![0xff];
            p.extend_from_slice(&code.to_le_bytes());
            p.push(b'#');
            p.extend_from_slice(state.as_bytes());
            p.extend_from_slice(msg.as_bytes());
            self.send(&p)
        }

        /// A text result set: every column a string (the client converts), `None` is NULL.
        fn rows(&mut self, cols: &[&str], rows: &[Vec<Option<String>>]) -> std::io::Result<()> {
            self.send(&[cols.len() as u8])?;
            for name in cols {
                let mut p = Vec::new();
                for part in [&b"def"[..], b"", b"", b"", name.as_bytes(), name.as_bytes()] {
                    lenenc_str(&mut p, part);
                }
                p.push(0x0c);
                p.extend_from_slice(&33u16.to_le_bytes()); // utf8
                p.extend_from_slice(&255u32.to_le_bytes()); // length
                p.push(0xfd); // VAR_STRING
                p.extend_from_slice(&[0, 0, 0, 0, 0]); // flags, decimals, filler
                self.send(&p)?;
            }
            self.eof()?;
            for row in rows {
                let mut p = Vec::new();
                for v in row {
                    match v {
                        Some(v) => lenenc_str(&mut p, v.as_bytes()),
                        None => p.push(0xfb),
                    }
                }
                self.send(&p)?;
            }
            self.eof()
        }
    }

    fn session(stream: TcpStream, status: &Mutex<Status>) -> std::io::Result<()> {
        let mut w = Wire { stream, seq: 0 };
        // Handshake v10: protocol 41, secure connection, plugin auth, mysql_native_password.
        let caps: u32 = 0x1 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x2_0000 | 0x8_0000;
        let mut hello = vec![0x0a];
        hello.extend_from_slice(b"8.4.3\0");
        hello.extend_from_slice(&7u32.to_le_bytes());
        hello.extend_from_slice(b"abcdefgh\0");
        hello.extend_from_slice(&(caps as u16).to_le_bytes());
        hello.push(33);
        hello.extend_from_slice(&2u16.to_le_bytes());
        hello.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        hello.push(21);
        hello.extend_from_slice(&[0; 10]);
        hello.extend_from_slice(b"ijklmnopqrst\0");
        hello.extend_from_slice(b"mysql_native_password\0");
        w.send(&hello)?;
        // Any credentials will do.
        w.recv()?;
        w.ok()?;
        loop {
            let Ok(p) = w.recv() else { return Ok(()) };
            match p.first() {
                Some(0x03) => {}
                Some(0x0e) => {
                    w.ok()?;
                    continue;
                }
                Some(0x01) | None => return Ok(()),
                Some(_) => {
                    w.error(1047, "08S01", "Unknown command")?;
                    continue;
                }
            }
            let sql = String::from_utf8_lossy(&p[1..]).into_owned();
            let replica = {
                let mut s = status.lock().expect("status");
                s.queries.push(sql.clone());
                s.replica
            };
            let one = |v: &str| vec![vec![Some(v.to_owned())]];
            match sql.as_str() {
                "SELECT 1" => w.rows(&["1"], &one("1"))?,
                "SELECT @@global.read_only, @@global.innodb_read_only" => w.rows(
                    &["@@global.read_only", "@@global.innodb_read_only"],
                    &[vec![Some("1".into()), Some("0".into())]],
                )?,
                // 8.4 no longer knows the old spelling.
                "SHOW SLAVE STATUS" => w.error(
                    1064,
                    "42000",
                    "You have an error in your SQL syntax; check the manual that corresponds \
                     to your MySQL server version for the right syntax to use near \
                     'SLAVE STATUS' at line 1",
                )?,
                // A few of 8.4's columns, in its order, around the three the probe reads.
                "SHOW REPLICA STATUS" => {
                    let rows: Vec<Vec<Option<String>>> = replica
                        .iter()
                        .map(|&(io, sql, lag)| {
                            vec![
                                Some("Waiting for source to send event".into()),
                                Some("10.0.0.1".into()),
                                Some(io.into()),
                                Some(sql.into()),
                                Some("0".into()),
                                lag.map(|l| l.to_string()),
                            ]
                        })
                        .collect();
                    let cols = [
                        "Replica_IO_State",
                        "Source_Host",
                        "Replica_IO_Running",
                        "Replica_SQL_Running",
                        "Last_Errno",
                        "Seconds_Behind_Source",
                    ];
                    w.rows(&cols, &rows)?
                }
                // The client's own settings query, and anything else: no rows.
                _ => w.ok()?,
            }
        }
    }

    /// A fake MySQL 8.4 on a loopback port, one thread per connection, for the test's life.
    fn serve(status: Arc<Mutex<Status>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let status = status.clone();
                std::thread::spawn(move || session(stream, &status));
            }
        });
        addr
    }

    fn probe(addr: SocketAddr) -> MysqlProbe {
        MysqlProbe {
            addr,
            timeout: Duration::from_secs(5),
            user: "monitor".into(),
            password: Some("secret".into()),
            database: None,
            query: "SELECT 1".into(),
            require_writable: false,
            require_read_only: true,
            max_lag: Some(Duration::from_secs(5)),
            tls: None,
        }
    }

    #[tokio::test]
    async fn mysql_8_4_replica_status_is_read_under_its_new_names() {
        let status = Arc::new(Mutex::new(Status::default()));
        let addr = serve(status.clone());
        let mut checker = MysqlChecker::new(probe(addr));
        let set = |r| status.lock().expect("status").replica = r;

        // Both threads running, 2 s behind: within the limit of 5.
        set(Some(("Yes", "Yes", Some(2))));
        checker.check().await.expect("a healthy replica passes");
        {
            let s = status.lock().expect("status");
            let asked = |q: &str| s.queries.iter().position(|x| x == q);
            assert!(
                matches!(
                    (asked("SHOW SLAVE STATUS"), asked("SHOW REPLICA STATUS")),
                    (Some(a), Some(b)) if a < b
                ),
                "{:?}",
                s.queries
            );
        }

        // Behind by more than the limit, on the same session (a gate keeps it).
        set(Some(("Yes", "Yes", Some(30))));
        let e = checker.check().await.expect_err("lagging");
        assert_eq!(e.to_string(), "replication lag 30 s above 5 s");
        // The SQL thread stopped.
        set(Some(("Yes", "No", Some(0))));
        let e = checker.check().await.expect_err("stopped");
        assert_eq!(e.to_string(), "replication not running (IO Yes, SQL No)");
        // The IO thread reconnecting.
        set(Some(("Connecting", "Yes", None)));
        let e = checker.check().await.expect_err("connecting");
        assert_eq!(
            e.to_string(),
            "replication not running (IO Connecting, SQL Yes)"
        );
        // Running, but the lag unknown (NULL).
        set(Some(("Yes", "Yes", None)));
        let e = checker.check().await.expect_err("unknown lag");
        assert_eq!(e.to_string(), "replication lag unknown");
        // Not a replica at all: an empty status.
        set(None);
        let e = checker.check().await.expect_err("not a replica");
        assert_eq!(e.to_string(), "not a replica");
        // And back.
        set(Some(("Yes", "Yes", Some(0))));
        checker.check().await.expect("caught up");
        checker.close().await;
        // One session throughout: gates do not close it.
        let s = status.lock().expect("status");
        let settings = s
            .queries
            .iter()
            .filter(|q| q.contains("@@max_allowed_packet"));
        assert_eq!(settings.count(), 1, "{:?}", s.queries);
    }
}
