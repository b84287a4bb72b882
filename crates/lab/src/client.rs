//! The lab's client: one INSERT through the VIP every interval, each attempt bounded by a
//! timeout, reconnecting after any failure. Each attempt is printed as one JSON line with
//! wall-clock microseconds, so the lab can line it up with the daemons' logs.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

/// Wall-clock microseconds.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Row id.
    pub id: u64,
    /// When it was sent.
    pub sent_us: u64,
    /// When it was acknowledged, if it was.
    pub acked_us: Option<u64>,
}

impl Attempt {
    /// Parses one line of [`run`]'s output.
    pub fn parse(line: &str) -> Option<Attempt> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        Some(Attempt {
            id: v["id"].as_u64()?,
            sent_us: v["sent"].as_u64()?,
            acked_us: v["acked"].as_u64(),
        })
    }
}

/// Writes rows `0..` to `host:3306` every `interval` for `duration`, printing attempts.
pub async fn run(host: &str, interval: Duration, duration: Duration, timeout: Duration) {
    let opts: Opts = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(3306)
        .user(Some("lab"))
        .pass(Some("lab"))
        .db_name(Some("lab"))
        .prefer_socket(false)
        .into();
    let mut conn: Option<Conn> = None;
    let start = tokio::time::Instant::now();
    let mut id = 0u64;
    let mut out = std::io::stdout().lock();
    while start.elapsed() < duration {
        tokio::time::sleep_until(start + interval * id as u32).await;
        let sent = now_us();
        let attempt = async {
            if conn.is_none() {
                conn = Some(Conn::new(opts.clone()).await?);
            }
            match conn.as_mut() {
                Some(c) => c.exec_drop("INSERT INTO t (id) VALUES (?)", (id,)).await,
                None => Ok(()),
            }
        };
        let acked = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(())) => Some(now_us()),
            _ => {
                conn = None;
                None
            }
        };
        let line = match acked {
            Some(a) => format!("{{\"id\":{id},\"sent\":{sent},\"acked\":{a}}}"),
            None => format!("{{\"id\":{id},\"sent\":{sent}}}"),
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        id += 1;
    }
    if let Some(c) = conn {
        let _ = tokio::time::timeout(Duration::from_secs(1), c.disconnect()).await;
    }
}

/// The longest time without an acknowledged write, from the first ack to the last.
pub fn longest_gap(attempts: &[Attempt]) -> Duration {
    let mut acks: Vec<u64> = attempts.iter().filter_map(|a| a.acked_us).collect();
    acks.sort_unstable();
    let gap = acks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Duration::from_micros(gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_parse_and_the_gap_is_the_longest_interval_between_acks() {
        let a: Vec<Attempt> = [
            "{\"id\":0,\"sent\":1000,\"acked\":1100}",
            "{\"id\":1,\"sent\":101000}",
            "{\"id\":2,\"sent\":201000,\"acked\":900000}",
            "{\"id\":3,\"sent\":950000,\"acked\":951000}",
        ]
        .iter()
        .filter_map(|l| Attempt::parse(l))
        .collect();
        assert_eq!(a.len(), 4);
        assert_eq!(a[1].acked_us, None);
        assert_eq!(longest_gap(&a), Duration::from_micros(900000 - 1100));
    }
}
