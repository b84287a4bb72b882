//! The control socket: a Unix stream socket, mode 0600, answering one JSON request per line
//! (`{"command":"status"}`) with one JSON line, only to root or the daemon's own user.
//! `holdfast status` is its client; `--lvs` renders the services as `ipvsadm -Ln` does.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::logging::Logger;

/// Where the daemon listens unless `control_socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/holdfast/control.sock";

/// Longest request line accepted.
const MAX_REQUEST: usize = 4096;

/// What the control socket reports from.
#[derive(Clone)]
pub struct Sources {
    /// The VRRP instances' status table.
    pub vrrp: Arc<std::sync::Mutex<crate::dump::Table>>,
    /// The data plane.
    pub planes: Arc<crate::lvs::Planes>,
}

/// Binds the socket (replacing a stale one) with mode 0600 and serves it until aborted.
pub fn serve(
    path: &Path,
    src: Sources,
    log: Logger,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let me = nix::unistd::Uid::effective().as_raw();
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let allowed = stream
                .peer_cred()
                .is_ok_and(|c| c.uid() == 0 || c.uid() == me);
            if !allowed {
                log.main(
                    "control socket: request from a user other than root or the daemon's - refused",
                );
                continue;
            }
            let src = src.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, src)).await;
            });
        }
    }))
}

async fn answer(stream: tokio::net::UnixStream, src: Sources) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = Vec::new();
    let mut r = tokio::io::BufReader::new(r).take(MAX_REQUEST as u64 + 1);
    r.read_until(b'\n', &mut line).await?;
    let reply = if line.len() > MAX_REQUEST {
        json!({"error": "request too long"})
    } else {
        handle(&line, &src).await
    };
    let mut out = reply.to_string();
    out.push('\n');
    w.write_all(out.as_bytes()).await?;
    w.shutdown().await
}

/// A control request, as one JSON line carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `{"command":"status"}`: instances and services.
    Status,
    /// `{"command":"dump"}`: what SIGUSR1 writes to keepalived.data.
    Dump,
    /// `{"command":"stats"}`: what SIGUSR2 writes to keepalived.stats.
    Stats,
    /// `{"command":"enable"|"disable","vs":"IP:PORT","rs":"IP:PORT"}`.
    Admin {
        /// Enable (true) or disable the real server.
        enable: bool,
        /// The virtual server.
        vs: std::net::SocketAddr,
        /// The real server.
        rs: std::net::SocketAddr,
    },
}

impl Request {
    /// Parses one request line; the error is the text the reply carries.
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        let req: Value = serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))?;
        match req.get("command").and_then(Value::as_str) {
            Some("status") => Ok(Self::Status),
            Some("dump") => Ok(Self::Dump),
            Some("stats") => Ok(Self::Stats),
            Some(c @ ("enable" | "disable")) => {
                let addr = |k: &str| -> Result<std::net::SocketAddr, String> {
                    let v = req.get(k).and_then(Value::as_str).unwrap_or("");
                    v.parse().map_err(|_| {
                        format!(
                            "bad request: \"{k}\" must be IP:PORT, not '{}'",
                            v.escape_debug()
                        )
                    })
                };
                Ok(Self::Admin {
                    enable: c == "enable",
                    vs: addr("vs")?,
                    rs: addr("rs")?,
                })
            }
            // Echoed escaped: the reply is one line, and so is the client's message.
            Some(other) => Err(format!("unknown command '{}'", other.escape_debug())),
            None => Err("bad request: no \"command\"".to_string()),
        }
    }

    /// The request as the client sends it.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Status => json!({"command": "status"}),
            Self::Dump => json!({"command": "dump"}),
            Self::Stats => json!({"command": "stats"}),
            Self::Admin { enable, vs, rs } => json!({
                "command": if *enable { "enable" } else { "disable" },
                "vs": vs.to_string(),
                "rs": rs.to_string(),
            }),
        }
    }
}

/// A service's scheduler flags as `ipvsadm -Ln` names them: `sh-fallback`/`sh-port` for sh,
/// `mh-fallback`/`mh-port` for mh, `flag-1`/`flag-2` otherwise.
fn sched_flags(sched: holdfast_lb::sched::Kind, f: holdfast_lb::sched::HashFlags) -> Vec<String> {
    let named = matches!(
        sched,
        holdfast_lb::sched::Kind::Sh | holdfast_lb::sched::Kind::Mh
    );
    let mut out = Vec::new();
    for (on, what, raw) in [
        (f.fallback, "fallback", "flag-1"),
        (f.port, "port", "flag-2"),
    ] {
        if on {
            out.push(if named {
                format!("{}-{what}", sched.name())
            } else {
                raw.to_string()
            });
        }
    }
    out
}

/// A persistence granularity as `ipvsadm -Ln` prints it: an IPv4 mask, an IPv6 prefix length.
fn mask(v6: bool, prefix: u8) -> String {
    if v6 {
        prefix.to_string()
    } else {
        holdfast_dataplane::prefix_mask(false, prefix).to_string()
    }
}

/// Answers one request line (see [`Request`]).
pub async fn handle(line: &[u8], src: &Sources) -> Value {
    let req = match Request::parse(line) {
        Ok(r) => r,
        Err(e) => return json!({ "error": e }),
    };
    match req {
        Request::Status => status(src, src.planes.stats_off_runtime().await),
        Request::Dump | Request::Stats => {
            let text = src.vrrp.lock().map(|t| {
                if req == Request::Dump {
                    crate::dump::data(&t)
                } else {
                    crate::dump::stats(&t)
                }
            });
            match text {
                Ok(t) => json!({ "text": t }),
                Err(_) => json!({"error": "status table unavailable"}),
            }
        }
        Request::Admin { enable, vs, rs } => match src.planes.admin(vs, enable, rs).await {
            Ok(msg) => json!({ "ok": msg }),
            Err(e) => json!({ "error": e }),
        },
    }
}

fn status(src: &Sources, services: Vec<holdfast_dataplane::ServiceStats>) -> Value {
    let instances: Vec<Value> = src
        .vrrp
        .lock()
        .map(|t| {
            t.iter()
                .map(|(name, s)| {
                    json!({
                        "name": name,
                        "interface": s.ifname(),
                        "vrid": s.vrid(),
                        "state": s.state.to_string(),
                        "priority": s.priority(),
                        "effective_priority": s.effective,
                        "master": s.master.map(|a| a.to_string()),
                        "since": s.since.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                        "vips": s.vips(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let services: Vec<Value> = services
        .iter()
        .map(|s| {
            let (protocol, address) = match s.key {
                holdfast_dataplane::ServiceKey::Addr { proto, addr } => {
                    (proto.name(), addr.to_string())
                }
                holdfast_dataplane::ServiceKey::Fwmark { mark, .. } => ("FWM", mark.to_string()),
            };
            json!({
                "protocol": protocol,
                "address": address,
                "scheduler": s.sched.name(),
                "flags": sched_flags(s.sched, s.flags),
                "persistence": s.persistence.map(|d| d.as_secs()),
                "persistence_mask": s.persistence_prefix.map(|p| mask(s.key.is_v6(), p)),
                "ops": s.one_packet,
                "persistence_engine": s.persistence_engine,
                "destinations": s.dests.iter().map(|d| json!({
                    "address": d.addr.map(|a| a.to_string()),
                    "forward": d.method.name(),
                    "weight": d.weight,
                    "active": d.active,
                    "inactive": d.inactive,
                    // Totals the plane does not keep are null, not 0.
                    "connections": s.counted.conns.then_some(d.conns),
                    "bytes_in": s.counted.bytes.then_some(d.bytes_in),
                    "bytes_out": s.counted.bytes.then_some(d.bytes_out),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"instances": instances, "services": services})
}

/// Sends one request and returns the reply.
pub fn request(path: &Path, command: &str) -> Result<Value, String> {
    request_json(path, &json!({ "command": command }))
}

/// Sends one JSON request and returns the reply.
pub fn request_json(path: &Path, req: &Value) -> Result<Value, String> {
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = req.to_string();
    req.push('\n');
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&line).map_err(|e| format!("bad reply: {e}"))?;
    match v.get("error").and_then(Value::as_str) {
        Some(e) => Err(e.to_string()),
        None => Ok(v),
    }
}

/// `addr:port`, IPv6 in brackets, as ipvsadm -n writes it.
fn ipvs_addr(a: &str) -> String {
    match a.parse::<std::net::SocketAddr>() {
        Ok(std::net::SocketAddr::V6(v)) => format!("[{}]:{}", v.ip(), v.port()),
        Ok(v) => v.to_string(),
        Err(_) => a.to_string(),
    }
}

/// The services in `ipvsadm -Ln`'s layout (sorted, as ipvsadm sorts them).
pub fn render_lvs(status: &Value) -> String {
    let mut out = String::from(
        "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    );
    let mut services: Vec<&Value> = status["services"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    services.sort_by_key(|s| s["address"].as_str().unwrap_or("").to_string());
    for s in services {
        let mut line = format!(
            "{:<4} {} {}",
            s["protocol"].as_str().unwrap_or("TCP"),
            ipvs_addr(s["address"].as_str().unwrap_or("")),
            s["scheduler"].as_str().unwrap_or("")
        );
        let flags: Vec<&str> = s["flags"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !flags.is_empty() {
            line.push_str(&format!(" ({})", flags.join(",")));
        }
        if let Some(p) = s["persistence"].as_u64() {
            line.push_str(&format!(" persistent {p}"));
            if let Some(m) = s["persistence_mask"].as_str() {
                line.push_str(&format!(" mask {m}"));
            }
            if let Some(pe) = s["persistence_engine"].as_str() {
                line.push_str(&format!(" pe {pe}"));
            }
        }
        if s["ops"].as_bool() == Some(true) {
            line.push_str(" ops");
        }
        out.push_str(&line);
        out.push('\n');
        let mut dests: Vec<&Value> = s["destinations"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        dests.sort_by_key(|d| d["address"].as_str().unwrap_or("").to_string());
        for d in dests {
            out.push_str(&format!(
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}\n",
                ipvs_addr(d["address"].as_str().unwrap_or("")),
                d["forward"].as_str().unwrap_or("Masq"),
                d["weight"].as_u64().unwrap_or(0),
                d["active"].as_u64().unwrap_or(0),
                d["inactive"].as_u64().unwrap_or(0),
            ));
        }
    }
    out
}

/// The human status view.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let instances = status["instances"].as_array().cloned().unwrap_or_default();
    out.push_str("VRRP instances\n");
    if instances.is_empty() {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&format!(
            "  {:<16} {:<7} {:>4} {:>9}  {:<20} {}\n",
            "NAME", "STATE", "PRIO", "EFFECTIVE", "MASTER", "SINCE"
        ));
    }
    for i in &instances {
        let since = now.saturating_sub(i["since"].as_u64().unwrap_or(now));
        out.push_str(&format!(
            "  {:<16} {:<7} {:>4} {:>9}  {:<20} {}s ago\n",
            i["name"].as_str().unwrap_or(""),
            i["state"].as_str().unwrap_or(""),
            i["priority"].as_u64().unwrap_or(0),
            i["effective_priority"].as_u64().unwrap_or(0),
            i["master"].as_str().unwrap_or("-"),
            since
        ));
    }
    let services = status["services"].as_array().cloned().unwrap_or_default();
    out.push_str("Virtual servers\n");
    if services.is_empty() {
        out.push_str("  (none)\n");
    }
    for s in &services {
        out.push_str(&format!(
            "  {} {}{}\n",
            ipvs_addr(s["address"].as_str().unwrap_or("")),
            s["scheduler"].as_str().unwrap_or(""),
            s["persistence"]
                .as_u64()
                .map(|p| format!(" persistent {p}"))
                .unwrap_or_default()
        ));
        for d in s["destinations"].as_array().cloned().unwrap_or_default() {
            out.push_str(&format!(
                "    -> {:<28} weight {:<3} active {:<5} inactive {:<5} connections {}\n",
                ipvs_addr(d["address"].as_str().unwrap_or("")),
                d["weight"].as_u64().unwrap_or(0),
                d["active"].as_u64().unwrap_or(0),
                d["inactive"].as_u64().unwrap_or(0),
                // `-`: the plane does not count them (nftables).
                d["connections"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            ));
        }
    }
    out
}

/// The socket path the configuration names, or the default.
pub fn socket_path(cfg: Option<&str>) -> PathBuf {
    PathBuf::from(cfg.unwrap_or(DEFAULT_SOCKET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvs_rendering_follows_ipvsadm() {
        let v = json!({"services": [{
            "protocol": "TCP", "address": "10.0.0.100:3306", "scheduler": "wlc",
            "persistence": 360, "forward": "Masq", "flags": ["flag-2"],
            "persistence_mask": "255.255.255.0", "ops": true,
            "destinations": [
                {"address": "10.0.0.12:3306", "weight": 0, "active": 0, "inactive": 0},
                {"address": "10.0.0.11:3306", "weight": 1, "active": 12, "inactive": 3}
            ]
        }]});
        assert_eq!(
            render_lvs(&v),
            "IP Virtual Server version 1.2.1 (size=4096)\n\
             Prot LocalAddress:Port Scheduler Flags\n  \
             -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  10.0.0.100:3306 wlc (flag-2) persistent 360 mask 255.255.255.0 ops\n  \
             -> 10.0.0.11:3306               Masq    1      12         3         \n  \
             -> 10.0.0.12:3306               Masq    0      0          0         \n"
        );
        // A persistence engine follows the persistence, as in ipvsadm.
        let v = json!({"services": [{
            "protocol": "UDP", "address": "10.0.0.100:5060", "scheduler": "rr",
            "persistence": 60, "persistence_engine": "sip", "flags": [], "destinations": []
        }]});
        assert!(
            render_lvs(&v).contains("\nUDP  10.0.0.100:5060 rr persistent 60 pe sip\n"),
            "{}",
            render_lvs(&v)
        );
    }

    #[test]
    fn a_total_the_plane_does_not_keep_is_shown_as_such_not_as_zero() {
        let v = json!({"instances": [], "services": [{
            "protocol": "TCP", "address": "10.0.0.100:3306", "scheduler": "rr",
            "destinations": [
                {"address": "10.0.0.11:3306", "weight": 1, "active": 2, "inactive": 0,
                 "connections": null},
                {"address": "10.0.0.12:3306", "weight": 1, "active": 0, "inactive": 1,
                 "connections": 0}
            ]
        }]});
        let text = render(&v);
        assert!(
            text.lines()
                .any(|l| l.contains("10.0.0.11:3306") && l.ends_with("connections -")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains("10.0.0.12:3306") && l.ends_with("connections 0")),
            "{text}"
        );
    }

    #[test]
    fn scheduler_flags_are_named_as_ipvsadm_names_them() {
        use holdfast_lb::sched::{HashFlags, Kind};
        let both = HashFlags {
            port: true,
            fallback: true,
        };
        assert_eq!(sched_flags(Kind::Sh, both), ["sh-fallback", "sh-port"]);
        assert_eq!(sched_flags(Kind::Mh, both), ["mh-fallback", "mh-port"]);
        assert_eq!(sched_flags(Kind::Rr, both), ["flag-1", "flag-2"]);
        assert!(sched_flags(Kind::Sh, HashFlags::default()).is_empty());
        assert_eq!(mask(false, 24), "255.255.255.0");
        assert_eq!(mask(true, 64), "64");
    }

    #[tokio::test]
    async fn bad_requests_get_clear_errors() {
        let src = Sources {
            vrrp: Arc::default(),
            planes: Arc::new(crate::lvs::Planes::new()),
        };
        assert!(
            handle(b"not json", &src).await["error"]
                .as_str()
                .unwrap()
                .starts_with("bad request")
        );
        assert_eq!(
            handle(br#"{"command":"reboot"}"#, &src).await["error"],
            "unknown command 'reboot'"
        );
        let ok = handle(br#"{"command":"status"}"#, &src).await;
        assert!(ok["instances"].as_array().unwrap().is_empty());
        let bad = handle(br#"{"command":"enable","vs":"x","rs":"10.0.0.1:1"}"#, &src).await;
        assert_eq!(bad["error"], "bad request: \"vs\" must be IP:PORT, not 'x'");
        let none = handle(
            br#"{"command":"disable","vs":"10.0.0.100:3306","rs":"10.0.0.1:3306"}"#,
            &src,
        )
        .await;
        assert_eq!(none["error"], "no virtual server 10.0.0.100:3306");
    }
}
