//! The Prometheus endpoint (`global_defs { metrics_listen ADDR:PORT }`, off unless set): the
//! text exposition format over HTTP/1.1 (hyper) at any path, from the same tables the control
//! socket reads. No secrets appear: no authentication passwords, no MySQL credentials, only
//! names, states and counts.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use holdfast_dataplane::{ServiceKey, ServiceStats};
use holdfast_vrrp::router::{Drop, State};
use http_body_util::Full;
use hyper::body::Bytes;

use crate::health::{Owner, Snapshot};
use crate::logging::Logger;

/// Reload outcomes (SIGHUP).
#[derive(Clone, Debug, Default)]
pub struct Reloads {
    /// Reloads attempted.
    pub total: u64,
    /// Reloads refused (the running configuration kept).
    pub failed: u64,
    /// Whether the last one applied.
    pub last_ok: Option<bool>,
    /// When the last one ran (seconds since the epoch).
    pub last_at: Option<u64>,
}

impl Reloads {
    /// Records one reload's outcome.
    pub fn record(&mut self, ok: bool) {
        self.total += 1;
        if !ok {
            self.failed += 1;
        }
        self.last_ok = Some(ok);
        self.last_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
    }
}

/// What the endpoint reads.
#[derive(Clone)]
pub struct Sources {
    /// The VRRP instances' status table.
    pub vrrp: Arc<Mutex<crate::dump::Table>>,
    /// The data planes.
    pub planes: Arc<crate::lvs::Planes>,
    /// Reloads.
    pub reloads: Arc<Mutex<Reloads>>,
    /// The checkers' and trackers' health cells.
    pub services: Arc<crate::services::Services>,
}

/// Every drop reason, named for the `reason` label.
const DROPS: [(Drop, &str); 14] = [
    (Drop::Length, "length"),
    (Drop::Ttl, "ttl"),
    (Drop::Version, "version"),
    (Drop::InvalidAuthType, "invalid_auth_type"),
    (Drop::AuthTypeMismatch, "auth_type_mismatch"),
    (Drop::AuthFailure, "auth_failure"),
    (Drop::Interval, "interval"),
    (Drop::Type, "type"),
    (Drop::Checksum, "checksum"),
    (Drop::Addressing, "addressing"),
    (Drop::AddressCount, "address_count"),
    (Drop::AddressList, "address_list"),
    (Drop::NotPeer, "not_peer"),
    (Drop::Vrid, "vrid"),
];

const STATES: [(State, &str); 4] = [
    (State::Init, "init"),
    (State::Backup, "backup"),
    (State::Master, "master"),
    (State::Fault, "fault"),
];

/// A label value, escaped as the exposition format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn vs_label(k: &ServiceKey) -> String {
    esc(&crate::lvs::vs_name(k))
}

/// One metric family: HELP, TYPE, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, v: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {v}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {v}");
        }
    }
}

/// The exposition text.
pub fn render(
    vrrp: &crate::dump::Table,
    services: &[ServiceStats],
    alive: &[(ServiceKey, SocketAddr, bool)],
    health: &[(Owner, Snapshot)],
    reloads: &Reloads,
) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let inst = |name: &str| format!("instance=\"{}\"", esc(name));

    f.head(
        "holdfast_vrrp_state",
        "gauge",
        "1 for the VRRP instance's current state, 0 for the others.",
    );
    for (name, s) in vrrp {
        for (st, label) in STATES {
            let l = format!("{},state=\"{label}\"", inst(name));
            f.sample("holdfast_vrrp_state", &l, u8::from(s.state == st));
        }
    }
    type Of = fn(&crate::dump::Status) -> u64;
    let gauges: [(&str, &str, Of); 2] = [
        ("holdfast_vrrp_priority", "Configured priority.", |s| {
            u64::from(s.priority())
        }),
        (
            "holdfast_vrrp_effective_priority",
            "Priority after trackers.",
            |s| u64::from(s.effective),
        ),
    ];
    for (metric, help, get) in gauges {
        f.head(metric, "gauge", help);
        for (name, s) in vrrp {
            f.sample(metric, &inst(name), get(s));
        }
    }
    let counters: [(&str, &str, Of); 6] = [
        ("holdfast_vrrp_adverts_sent_total", "Adverts sent.", |s| {
            s.stats.adverts_sent
        }),
        (
            "holdfast_vrrp_adverts_received_total",
            "Adverts accepted.",
            |s| s.stats.adverts_received,
        ),
        (
            "holdfast_vrrp_master_transitions_total",
            "Transitions to MASTER.",
            |s| s.stats.became_master,
        ),
        (
            "holdfast_vrrp_master_releases_total",
            "Transitions out of MASTER.",
            |s| s.stats.released_master,
        ),
        (
            "holdfast_vrrp_priority_zero_received_total",
            "Priority-0 adverts received (a master leaving).",
            |s| s.stats.priority_zero_received,
        ),
        (
            "holdfast_vrrp_priority_zero_sent_total",
            "Priority-0 adverts sent.",
            |s| s.stats.priority_zero_sent,
        ),
    ];
    for (metric, help, get) in counters {
        f.head(metric, "counter", help);
        for (name, s) in vrrp {
            f.sample(metric, &inst(name), get(s));
        }
    }
    f.head(
        "holdfast_vrrp_adverts_dropped_total",
        "counter",
        "Adverts dropped, by keepalived's receive check that refused them.",
    );
    for (name, s) in vrrp {
        for (d, label) in DROPS {
            let l = format!("{},reason=\"{label}\"", inst(name));
            f.sample(
                "holdfast_vrrp_adverts_dropped_total",
                &l,
                s.stats.dropped(d),
            );
        }
    }

    let rs = |k: &ServiceKey, a: SocketAddr| {
        format!("virtual_server=\"{}\",real_server=\"{}\"", vs_label(k), a)
    };
    f.head(
        "holdfast_real_server_up",
        "gauge",
        "1 when the real server's checkers are all up.",
    );
    for (k, a, up) in alive {
        f.sample("holdfast_real_server_up", &rs(k, *a), u8::from(*up));
    }
    type Get = fn(&holdfast_dataplane::DestStats) -> u64;
    // Whether the service's plane measures the family (a total it does not keep is left out,
    // not reported as 0).
    type Measured = fn(&holdfast_dataplane::Counted) -> bool;
    let dest: [(&str, &str, &str, Get, Measured); 7] = [
        (
            "holdfast_real_server_weight",
            "gauge",
            "Weight in the data plane (0: drained).",
            |d| u64::from(d.weight),
            |_| true,
        ),
        (
            "holdfast_real_server_active_connections",
            "gauge",
            "ActiveConn.",
            |d| u64::from(d.active),
            |_| true,
        ),
        (
            "holdfast_real_server_inactive_connections",
            "gauge",
            "InActConn.",
            |d| u64::from(d.inactive),
            |_| true,
        ),
        (
            "holdfast_real_server_connections_total",
            "counter",
            "Connections scheduled to the real server (proxy and IPVS planes).",
            |d| d.conns,
            |c| c.conns,
        ),
        (
            "holdfast_real_server_received_bytes_total",
            "counter",
            "Bytes from clients to the real server (proxy and IPVS planes).",
            |d| d.bytes_in,
            |c| c.bytes,
        ),
        (
            "holdfast_real_server_sent_bytes_total",
            "counter",
            "Bytes from the real server to clients (proxy and IPVS planes).",
            |d| d.bytes_out,
            |c| c.bytes,
        ),
        (
            "holdfast_real_server_packets_total",
            "counter",
            "Packets both ways (IPVS plane).",
            |d| d.packets_in + d.packets_out,
            |c| c.packets,
        ),
    ];
    for (metric, kind, help, get, measured) in dest {
        f.head(metric, kind, help);
        for s in services.iter().filter(|s| measured(&s.counted)) {
            for d in &s.dests {
                if let Some(a) = d.addr {
                    f.sample(metric, &rs(&s.key, a), get(d));
                }
            }
        }
    }

    health_families(&mut f, health);

    f.head(
        "holdfast_reloads_total",
        "counter",
        "Configuration reloads attempted (SIGHUP).",
    );
    f.sample("holdfast_reloads_total", "", reloads.total);
    f.head(
        "holdfast_reload_failures_total",
        "counter",
        "Reloads refused; the running configuration was kept.",
    );
    f.sample("holdfast_reload_failures_total", "", reloads.failed);
    f.head(
        "holdfast_vrrp_packets_unowned_total",
        "counter",
        "VRRP packets the interfaces' readers handed to no instance: too short to carry a VRID, for a VRID no instance has, or dropped because the instance's queue was full (a flood).",
    );
    let u = &crate::instance::rx::UNOWNED;
    for (reason, n) in [
        ("too_short", &u.too_short),
        ("unknown_vrid", &u.unknown_vrid),
        ("queue_full", &u.queue_full),
    ] {
        f.sample(
            "holdfast_vrrp_packets_unowned_total",
            &format!("reason=\"{reason}\""),
            n.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    f.head(
        "holdfast_log_lines_dropped_total",
        "counter",
        "Log lines dropped because syslog, stderr or the log files did not keep up.",
    );
    f.sample(
        "holdfast_log_lines_dropped_total",
        "",
        crate::logging::dropped(),
    );
    if let Some(ok) = reloads.last_ok {
        f.head(
            "holdfast_reload_last_success",
            "gauge",
            "1 when the last reload applied.",
        );
        f.sample("holdfast_reload_last_success", "", u8::from(ok));
    }
    if let Some(at) = reloads.last_at {
        f.head(
            "holdfast_reload_last_timestamp_seconds",
            "gauge",
            "When the last reload ran.",
        );
        f.sample("holdfast_reload_last_timestamp_seconds", "", at);
    }
    out
}

/// Checkers' and trackers' state, probe counts and probe latency (a summary without
/// quantiles: `_sum` and `_count`).
fn health_families(f: &mut Family<'_>, health: &[(Owner, Snapshot)]) {
    let labels = |o: &Owner| match o {
        Owner::Checker {
            vs,
            rs,
            kind,
            index,
        } => format!(
            "virtual_server=\"{}\",real_server=\"{rs}\",checker=\"{kind}\",index=\"{index}\"",
            esc(vs)
        ),
        Owner::Tracker {
            instance,
            name,
            kind,
        } => format!(
            "instance=\"{}\",tracker=\"{}\",kind=\"{kind}\"",
            esc(instance),
            esc(name)
        ),
    };
    for (prefix, what) in [
        ("holdfast_checker", "checker"),
        ("holdfast_tracker", "tracker"),
    ] {
        let mine: Vec<(String, &Snapshot)> = health
            .iter()
            .filter(|(o, _)| matches!(o, Owner::Checker { .. }) == (what == "checker"))
            .map(|(o, s)| (labels(o), s))
            .collect();
        let up = format!("{prefix}_up");
        f.head(
            &up,
            "gauge",
            &format!("1 when the {what} is up (after rise/fall)."),
        );
        for (l, s) in &mine {
            f.sample(&up, l, u8::from(s.up));
        }
        let probes = format!("{prefix}_probes_total");
        f.head(&probes, "counter", &format!("Probes the {what} ran."));
        for (l, s) in &mine {
            f.sample(&probes, l, s.probes);
        }
        let failures = format!("{prefix}_probe_failures_total");
        f.head(
            &failures,
            "counter",
            &format!("Probes of the {what} that failed."),
        );
        for (l, s) in &mine {
            f.sample(&failures, l, s.failures);
        }
        let dur = format!("{prefix}_probe_duration_seconds");
        f.head(&dur, "summary", &format!("Time the {what}'s probes took."));
        for (l, s) in &mine {
            f.sample(&format!("{dur}_sum"), l, s.sum.as_secs_f64());
            f.sample(&format!("{dur}_count"), l, s.probes);
        }
        let last = format!("{prefix}_last_probe_duration_seconds");
        f.head(
            &last,
            "gauge",
            &format!("Time the {what}'s last probe took."),
        );
        for (l, s) in &mine {
            f.sample(&last, l, s.last.as_secs_f64());
        }
    }
    let value = "holdfast_track_file_value";
    f.head(
        value,
        "gauge",
        "The last value read from a track_file (a tracker's or a FILE_CHECK's).",
    );
    for (o, s) in health {
        if let Some(v) = s.value {
            f.sample(value, &labels(o), v);
        }
    }
}

/// Metrics clients served at once.
pub const CLIENTS: usize = 16;
/// How long a metrics connection may stay open.
pub const CLIENT_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds `addr` and serves the metrics until aborted.
pub async fn serve(
    addr: SocketAddr,
    src: Sources,
    log: Logger,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    log.main(&format!(
        "Serving Prometheus metrics on http://{addr}/metrics"
    ));
    // A scraper needs one connection for milliseconds. Idle or slow clients must not hold
    // descriptors the VRRP path and the trackers need: at most CLIENTS at once (the rest wait
    // in the kernel's backlog), one request each, and each connection closed after
    // CLIENT_TIME whatever it is doing.
    let clients = std::sync::Arc::new(tokio::sync::Semaphore::new(CLIENTS));
    Ok(tokio::spawn(async move {
        loop {
            let Ok(permit) = clients.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                drop(permit);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let src = src.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let src = src.clone();
                    async move {
                        let body = snapshot(&src).await;
                        hyper::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(body)))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Some(CLIENT_TIME))
                    .keep_alive(false)
                    .serve_connection(io, svc);
                let _ = tokio::time::timeout(CLIENT_TIME, conn).await;
                drop(permit);
            });
        }
    }))
}

async fn snapshot(src: &Sources) -> String {
    let services = src.planes.stats_off_runtime().await;
    let vrrp = src.vrrp.lock().map(|t| t.clone()).unwrap_or_default();
    let alive = src.planes.alive();
    let reloads = src.reloads.lock().map(|r| r.clone()).unwrap_or_default();
    let health = src.services.health.snapshot();
    render(&vrrp, &services, &alive, &health, &reloads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_dataplane::DestStats;
    use holdfast_lb::sched::Kind;

    fn status(state: State) -> crate::dump::Status {
        let mut stats = holdfast_vrrp::router::Stats {
            adverts_sent: 12,
            adverts_received: 21,
            became_master: 3,
            released_master: 2,
            priority_zero_received: 4,
            priority_zero_sent: 5,
            ..Default::default()
        };
        stats.drops.push((Drop::AuthFailure, 3));
        crate::dump::Status {
            plan: std::sync::Arc::new(crate::plan::test_instance(
                "VI_1",
                "eth0",
                51,
                150,
                "10.0.0.100/24",
            )),
            state,
            effective: 140,
            master: None,
            master_priority: None,
            stats,
            since: std::time::SystemTime::now(),
        }
    }

    #[test]
    fn vrrp_and_real_servers_in_prometheus_text() {
        let mut t = crate::dump::Table::new();
        t.insert("VI_\"1\"".into(), status(State::Master));
        let key = ServiceKey::tcp("10.0.0.100:3306".parse().unwrap());
        let rs: SocketAddr = "10.0.0.2:3306".parse().unwrap();
        let svc = ServiceStats {
            key,
            sched: Kind::Rr,
            flags: Default::default(),
            persistence: None,
            persistence_prefix: None,
            one_packet: false,
            persistence_engine: None,
            counted: holdfast_dataplane::Counted {
                conns: true,
                bytes: true,
                packets: false,
            },
            dests: vec![DestStats {
                addr: Some(rs),
                weight: 9,
                active: 2,
                inactive: 6,
                conns: 7,
                bytes_in: 100,
                bytes_out: 200,
                ..DestStats::default()
            }],
        };
        let mut r = Reloads::default();
        r.record(false);
        let health = [
            (
                Owner::Checker {
                    vs: crate::lvs::vs_name(&key),
                    rs,
                    kind: "TCP_CHECK",
                    index: 0,
                },
                Snapshot {
                    up: true,
                    probes: 4,
                    failures: 1,
                    last: std::time::Duration::from_micros(250),
                    sum: std::time::Duration::from_millis(3),
                    value: None,
                },
            ),
            (
                Owner::Tracker {
                    instance: "VI_1".into(),
                    name: "chk_mysql".into(),
                    kind: "vrrp_script",
                },
                Snapshot {
                    up: false,
                    probes: 9,
                    failures: 9,
                    value: Some(-20),
                    ..Snapshot::default()
                },
            ),
        ];
        let text = render(&t, &[svc], &[(key, rs, true)], &health, &r);
        let expected = [
            "# TYPE holdfast_vrrp_state gauge",
            r#"holdfast_vrrp_state{instance="VI_\"1\"",state="master"} 1"#,
            r#"holdfast_vrrp_state{instance="VI_\"1\"",state="backup"} 0"#,
            r#"holdfast_vrrp_effective_priority{instance="VI_\"1\""} 140"#,
            r#"holdfast_vrrp_adverts_sent_total{instance="VI_\"1\""} 12"#,
            r#"holdfast_vrrp_adverts_dropped_total{instance="VI_\"1\"",reason="auth_failure"} 3"#,
            r#"holdfast_vrrp_adverts_dropped_total{instance="VI_\"1\"",reason="ttl"} 0"#,
            r#"holdfast_real_server_up{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306"} 1"#,
            r#"holdfast_real_server_active_connections{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306"} 2"#,
            r#"holdfast_real_server_connections_total{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306"} 7"#,
            "holdfast_reloads_total 1",
            "holdfast_reload_failures_total 1",
            "holdfast_log_lines_dropped_total 0",
            r#"holdfast_vrrp_packets_unowned_total{reason="unknown_vrid"} 0"#,
            "holdfast_reload_last_success 0",
            r#"holdfast_checker_up{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306",checker="TCP_CHECK",index="0"} 1"#,
            r#"holdfast_checker_probe_failures_total{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306",checker="TCP_CHECK",index="0"} 1"#,
            r#"holdfast_checker_probe_duration_seconds_sum{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306",checker="TCP_CHECK",index="0"} 0.003"#,
            r#"holdfast_checker_probe_duration_seconds_count{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306",checker="TCP_CHECK",index="0"} 4"#,
            r#"holdfast_checker_last_probe_duration_seconds{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306",checker="TCP_CHECK",index="0"} 0.00025"#,
            r#"holdfast_tracker_up{instance="VI_1",tracker="chk_mysql",kind="vrrp_script"} 0"#,
            r#"holdfast_tracker_probes_total{instance="VI_1",tracker="chk_mysql",kind="vrrp_script"} 9"#,
            r#"holdfast_track_file_value{instance="VI_1",tracker="chk_mysql",kind="vrrp_script"} -20"#,
            r#"holdfast_vrrp_priority{instance="VI_\"1\""} 150"#,
            r#"holdfast_vrrp_adverts_received_total{instance="VI_\"1\""} 21"#,
            r#"holdfast_vrrp_master_transitions_total{instance="VI_\"1\""} 3"#,
            r#"holdfast_vrrp_master_releases_total{instance="VI_\"1\""} 2"#,
            r#"holdfast_vrrp_priority_zero_received_total{instance="VI_\"1\""} 4"#,
            r#"holdfast_vrrp_priority_zero_sent_total{instance="VI_\"1\""} 5"#,
            r#"holdfast_real_server_weight{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306"} 9"#,
            r#"holdfast_real_server_inactive_connections{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306"} 6"#,
            r#"holdfast_real_server_received_bytes_total{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306"} 100"#,
            r#"holdfast_real_server_sent_bytes_total{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306"} 200"#,
            r#"holdfast_checker_probes_total{virtual_server="[10.0.0.100]:tcp:3306",real_server="10.0.0.2:3306",checker="TCP_CHECK",index="0"} 4"#,
            r#"holdfast_tracker_probe_failures_total{instance="VI_1",tracker="chk_mysql",kind="vrrp_script"} 9"#,
            r#"holdfast_tracker_last_probe_duration_seconds{instance="VI_1",tracker="chk_mysql",kind="vrrp_script"} 0"#,
            r#"holdfast_tracker_probe_duration_seconds_count{instance="VI_1",tracker="chk_mysql",kind="vrrp_script"} 9"#,
        ];
        for line in expected {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        // Every family the endpoint announces has a sample checked above (but the proxy's
        // packet counts, which it does not keep, and the reload timestamp, a clock reading,
        // checked for presence below): a new metric cannot go out untested.
        let families: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for f in families {
            if f == "holdfast_real_server_packets_total"
                || f == "holdfast_reload_last_timestamp_seconds"
            {
                continue;
            }
            assert!(
                expected.iter().any(|l| l
                    .strip_prefix(f)
                    .is_some_and(|r| r.starts_with(['{', ' ', '_']))),
                "family {f} is asserted nowhere"
            );
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("holdfast_reload_last_timestamp_seconds ")),
            "{text}"
        );
        // The proxy keeps no packet counts: the family is announced, no sample is invented.
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("holdfast_real_server_packets_total{")),
            "{text}"
        );
        // Every sample line belongs to a family announced before it (a summary's samples
        // carry _sum and _count).
        let mut typed = std::collections::HashMap::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let mut w = rest.split(' ');
                typed.insert(w.next().unwrap().to_owned(), w.next().unwrap().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let family = ["_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| typed.get(*f).is_some_and(|k| k == "summary"))
                    .unwrap_or(name);
                assert!(typed.contains_key(family), "{name} has no TYPE line");
            }
        }
    }
}
