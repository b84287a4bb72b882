//! The anycast lab's client: long connections that ask "who answers?" every period for the
//! whole run (each must keep its real server), and a new connection every interval asking
//! once. Every event is one JSON line with wall-clock microseconds; [`Flows::parse`] reads them
//! back.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::client::now_us;

/// The client's last line.
pub const DONE: &str = "{\"done\":true}";

/// How long a long connection may go unanswered before it counts as broken.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);

/// How long a new connection may take (connect, ask, answer).
pub const NEW_LIMIT: Duration = Duration::from_secs(1);

/// Runs the client against `target` for `duration`: `long` long connections asking every
/// `period`, and a new connection every `every`.
pub async fn run(
    target: SocketAddr,
    long: usize,
    period: Duration,
    every: Duration,
    duration: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let end = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    for i in 0..long {
        tasks.push(tokio::spawn(long_conn(i, target, period, end, tx.clone())));
    }
    let news = {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut k = 0u64;
            let start = tokio::time::Instant::now();
            let mut attempts = Vec::new();
            while tokio::time::Instant::now() < end {
                tokio::time::sleep_until(start + every * k as u32).await;
                attempts.push(tokio::spawn(new_conn(k, target, tx.clone())));
                k += 1;
            }
            for a in attempts {
                let _ = a.await;
            }
        })
    };
    drop(tx);
    let printer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{DONE}");
        let _ = out.flush();
    });
    for t in tasks {
        let _ = t.await;
    }
    let _ = news.await;
    let _ = printer.await;
}

/// One question and its answer (the real server's name) on `conn`.
async fn ask(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<String> {
    writer.write_all(b"who\n").await?;
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    Ok(line.trim().to_string())
}

async fn long_conn(
    i: usize,
    target: SocketAddr,
    period: Duration,
    end: tokio::time::Instant,
    tx: mpsc::UnboundedSender<String>,
) {
    let say = |s: String| {
        let _ = tx.send(s);
    };
    let stream = match tokio::time::timeout(STALL_LIMIT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return say(format!(
                "{{\"long\":{i},\"at\":{},\"broken\":\"connect: {e}\"}}",
                now_us()
            ));
        }
        Err(_) => {
            return say(format!(
                "{{\"long\":{i},\"at\":{},\"broken\":\"connect timed out\"}}",
                now_us()
            ));
        }
    };
    let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut first: Option<String> = None;
    let mut answers = 0u64;
    let mut longest = Duration::ZERO;
    while tokio::time::Instant::now() < end {
        let asked = tokio::time::Instant::now();
        match tokio::time::timeout(STALL_LIMIT, ask(&mut r, &mut w)).await {
            Ok(Ok(who)) => {
                answers += 1;
                longest = longest.max(asked.elapsed());
                match &first {
                    None => {
                        say(format!(
                            "{{\"long\":{i},\"port\":{port},\"at\":{},\"backend\":\"{who}\"}}",
                            now_us()
                        ));
                        first = Some(who);
                    }
                    Some(f) if *f != who => {
                        say(format!(
                            "{{\"long\":{i},\"port\":{port},\"at\":{},\"switched\":\"{who}\"}}",
                            now_us()
                        ));
                        first = Some(who);
                    }
                    Some(_) => {}
                }
            }
            Ok(Err(e)) => {
                return say(format!(
                    "{{\"long\":{i},\"port\":{port},\"at\":{},\"broken\":\"{e}\"}}",
                    now_us()
                ));
            }
            Err(_) => {
                return say(format!(
                    "{{\"long\":{i},\"port\":{port},\"at\":{},\"broken\":\"no answer for {} s\"}}",
                    now_us(),
                    STALL_LIMIT.as_secs()
                ));
            }
        }
        tokio::time::sleep_until(asked + period).await;
    }
    say(format!(
        "{{\"long\":{i},\"port\":{port},\"at\":{},\"end\":{answers},\"stall_us\":{}}}",
        now_us(),
        longest.as_micros()
    ));
}

async fn new_conn(k: u64, target: SocketAddr, tx: mpsc::UnboundedSender<String>) {
    let at = now_us();
    let attempt = async {
        let s = TcpStream::connect(target).await?;
        let (r, mut w) = s.into_split();
        ask(&mut BufReader::new(r), &mut w).await
    };
    let line = match tokio::time::timeout(NEW_LIMIT, attempt).await {
        Ok(Ok(who)) => format!(
            "{{\"new\":{k},\"at\":{at},\"ok\":\"{who}\",\"took\":{}}}",
            now_us().saturating_sub(at)
        ),
        Ok(Err(e)) => format!("{{\"new\":{k},\"at\":{at},\"failed\":\"{e}\"}}"),
        Err(_) => format!("{{\"new\":{k},\"at\":{at},\"failed\":\"timed out\"}}"),
    };
    let _ = tx.send(line);
}

/// One long connection as the client saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Long {
    /// Its local port (its flow, with the client's address).
    pub port: u16,
    /// The real server that answered first.
    pub backend: String,
    /// Real servers that answered later instead (must stay empty).
    pub switched: Vec<String>,
    /// Why and when it broke (µs), if it did.
    pub broken: Option<(u64, String)>,
    /// Answers when the run ended, if it lasted.
    pub answers: Option<u64>,
    /// The longest wait for an answer, µs.
    pub stall_us: u64,
}

/// One new connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct New {
    /// When it was started, µs.
    pub at: u64,
    /// The real server that answered, or why it failed.
    pub outcome: Result<String, String>,
}

/// What the client saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flows {
    /// Long connections by index.
    pub long: BTreeMap<u64, Long>,
    /// New connections in order.
    pub new: Vec<New>,
}

impl Flows {
    /// Reads [`run`]'s lines (others are skipped).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Flows {
        let mut f = Flows::default();
        for l in lines {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            let at = v["at"].as_u64().unwrap_or(0);
            if let Some(i) = v["long"].as_u64() {
                let e = f.long.entry(i).or_default();
                if let Some(p) = v["port"].as_u64() {
                    e.port = u16::try_from(p).unwrap_or(0);
                }
                if let Some(b) = v["backend"].as_str() {
                    e.backend = b.to_string();
                }
                if let Some(b) = v["switched"].as_str() {
                    e.switched.push(b.to_string());
                }
                if let Some(b) = v["broken"].as_str() {
                    e.broken = Some((at, b.to_string()));
                }
                if let Some(n) = v["end"].as_u64() {
                    e.answers = Some(n);
                    e.stall_us = v["stall_us"].as_u64().unwrap_or(0);
                }
            } else if v["new"].as_u64().is_some() {
                let outcome = match (v["ok"].as_str(), v["failed"].as_str()) {
                    (Some(b), _) => Ok(b.to_string()),
                    (None, Some(e)) => Err(e.to_string()),
                    (None, None) => continue,
                };
                f.new.push(New { at, outcome });
            }
        }
        f.new.sort_by_key(|n| n.at);
        f
    }

    /// New connections started at or after `since` (µs) that failed.
    pub fn new_failed(&self, since: u64) -> Vec<&New> {
        self.new
            .iter()
            .filter(|n| n.at >= since && n.outcome.is_err())
            .collect()
    }

    /// From the first failed new connection at or after `since` to the first success after
    /// the last failure: how long new connections could not be made.
    pub fn outage(&self, since: u64) -> Duration {
        let failed = self.new_failed(since);
        let (Some(first), Some(last)) = (failed.first(), failed.last()) else {
            return Duration::ZERO;
        };
        let back = self
            .new
            .iter()
            .find(|n| n.at > last.at && n.outcome.is_ok())
            .map_or(last.at, |n| n.at);
        Duration::from_micros(back.saturating_sub(first.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_back_and_the_outage_spans_the_failures() {
        let lines = [
            r#"{"long":0,"port":40000,"at":10,"backend":"b1"}"#,
            r#"{"long":1,"port":40001,"at":11,"backend":"b2"}"#,
            r#"{"long":1,"port":40001,"at":500,"broken":"closed"}"#,
            r#"{"long":0,"port":40000,"at":900,"switched":"b2"}"#,
            r#"{"long":0,"port":40000,"at":1000,"end":42,"stall_us":1500}"#,
            r#"{"new":0,"at":100,"ok":"b1"}"#,
            r#"{"new":2,"at":300,"failed":"timed out"}"#,
            r#"{"new":1,"at":200,"failed":"refused"}"#,
            r#"{"new":3,"at":400,"ok":"b2"}"#,
            "not json",
        ];
        let f = Flows::parse(lines);
        assert_eq!(f.long.len(), 2);
        assert_eq!(f.long[&0].backend, "b1");
        assert_eq!(f.long[&0].switched, ["b2"]);
        assert_eq!(f.long[&0].answers, Some(42));
        assert_eq!(f.long[&0].stall_us, 1500);
        assert_eq!(f.long[&1].broken, Some((500, "closed".to_string())));
        assert_eq!(f.new.len(), 4);
        assert_eq!(f.new_failed(0).len(), 2);
        assert_eq!(f.new_failed(250).len(), 1);
        assert_eq!(f.outage(0), Duration::from_micros(400 - 200));
        assert_eq!(f.outage(350), Duration::ZERO);
    }
}
