//! What the nftables plane asks the host: `nft` runs and their errors (naming the package of a
//! missing tool), `ip` queries (interfaces, the device towards a destination), the kernel's
//! connection counts.

use super::rules::{connection_sets, route_only};
use std::io;

use nftables::batch::Batch;

use crate::{ServiceKey, ServiceSpec, ServiceStats};

/// What `ip -j ARGS` prints, parsed.
pub(super) fn ip_json(args: &[&str]) -> io::Result<serde_json::Value> {
    json_of("ip", args)
}

/// The Debian package that provides a program this plane runs.
pub(super) fn package_of(program: &str) -> &'static str {
    match program {
        "nft" => "nftables",
        "ip" => "iproute2",
        _ => "the package providing it",
    }
}

/// A program this plane runs could not be started: a missing one is named with the package
/// to install, not left as "No such file or directory".
pub(super) fn tool_error(program: &str, e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound {
        let package = package_of(program);
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "`{program}` not found: holdfast needs it here (Debian: apt install {package})"
            ),
        )
    } else {
        io::Error::new(e.kind(), format!("{program}: {e}"))
    }
}

/// What `PROGRAM -j ARGS` prints (`ip`, `nft`), parsed.
pub(super) fn json_of(program: &str, args: &[&str]) -> io::Result<serde_json::Value> {
    let out = std::process::Command::new(program)
        .arg("-j")
        .args(args)
        .output()
        .map_err(|e| tool_error(program, e))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// This host's interfaces but loopback (`ip link`).
pub(super) fn interfaces() -> io::Result<Vec<String>> {
    let links = ip_json(&["link", "show"])?;
    Ok(links
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|l| {
                    !l.get("flags")
                        .and_then(serde_json::Value::as_array)
                        .is_some_and(|f| f.iter().any(|x| x == "LOOPBACK"))
                })
                .filter_map(|l| l.get("ifname").and_then(serde_json::Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// The interface through which `addr` is reached directly (`ip route get`), for direct
/// return: a destination behind a gateway, or this host's own address, cannot be one.
pub fn direct_device(addr: std::net::IpAddr) -> io::Result<String> {
    let routes = ip_json(&["route", "get", &addr.to_string()])
        .map_err(|e| io::Error::other(format!("no route to real server {addr}: {e}")))?;
    let route = routes
        .get(0)
        .ok_or_else(|| io::Error::other("ip route get: no route"))?;
    if route.get("gateway").is_some() {
        return Err(io::Error::other(format!(
            "real server {addr} is behind a gateway: direct return needs it on an attached network"
        )));
    }
    match route.get("dev").and_then(serde_json::Value::as_str) {
        Some("lo") | None => Err(io::Error::other(format!(
            "real server {addr} is an address of this host: direct return needs another machine"
        ))),
        Some(dev) => Ok(dev.to_owned()),
    }
}

/// Fills in each destination's ActiveConn and InActConn in `stats` (the table as applied on
/// `table`) from the kernel, as IPVS counts them: NAT connections from conntrack (established
/// TCP is active, any other state and every UDP flow inactive), direct return's from its
/// connection sets (a connection whose client has sent a FIN, in the closing set, is
/// inactive). A fwmark service's connections are found by their real server alone.
pub fn count_connections(table: &str, stats: &mut [ServiceStats]) -> io::Result<()> {
    let direct = |s: &ServiceStats| route_only(s.dests.iter().map(|d| d.method));
    if stats.iter().any(|s| !direct(s)) {
        // One pass over the table (it may hold hundreds of thousands of connections):
        // (active, inactive) by service and server, and by server alone for fwmark services.
        let mut by_service = std::collections::HashMap::new();
        let mut by_server = std::collections::HashMap::new();
        for f in crate::conntrack::dump()? {
            let tally = |c: &mut (u32, u32)| {
                if f.established {
                    c.0 = c.0.saturating_add(1);
                } else {
                    c.1 = c.1.saturating_add(1);
                }
            };
            tally(by_service.entry((f.proto, f.to, f.from)).or_default());
            tally(by_server.entry(f.from).or_default());
        }
        for s in stats.iter_mut().filter(|s| !direct(s)) {
            for d in &mut s.dests {
                let Some(addr) = d.addr else {
                    continue;
                };
                let counted = match s.key {
                    ServiceKey::Addr { proto, addr: vip } => by_service.get(&(proto, vip, addr)),
                    ServiceKey::Fwmark { .. } => by_server.get(&addr),
                };
                (d.active, d.inactive) = counted.copied().unwrap_or_default();
            }
        }
    }
    if stats.iter().any(direct) {
        let listed = json_of("nft", &["list", "table", "netdev", table])?;
        let sets = set_elements(&listed);
        for s in stats.iter_mut().filter(|s| direct(s)) {
            let spec = ServiceSpec::new(s.key, s.sched, Vec::new());
            for d in &mut s.dests {
                let Some(addr) = d.addr else {
                    continue;
                };
                let (open, closing) = connection_sets(&spec, addr);
                let (open, closing) = (sets.get(&open), sets.get(&closing));
                let (mut active, mut inactive) = (0u32, 0u32);
                for e in open.into_iter().flatten() {
                    if closing.is_some_and(|c| c.contains(e)) {
                        inactive = inactive.saturating_add(1);
                    } else {
                        active = active.saturating_add(1);
                    }
                }
                d.active = active;
                d.inactive = inactive;
            }
        }
    }
    Ok(())
}

/// Each set's elements (their keys, as nft prints them) by set name.
pub(super) fn set_elements(
    listed: &serde_json::Value,
) -> std::collections::HashMap<String, std::collections::HashSet<String>> {
    let mut out = std::collections::HashMap::new();
    let objects = listed
        .get("nftables")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for o in objects {
        let Some(set) = o.get("set") else {
            continue;
        };
        let Some(name) = set.get("name").and_then(serde_json::Value::as_str) else {
            continue;
        };
        // An element with a timeout is `{"elem": {"val": KEY, "expires": …}}`, one without
        // is KEY itself.
        let keys = set
            .get("elem")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| {
                        e.get("elem")
                            .and_then(|x| x.get("val"))
                            .unwrap_or(e)
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name.to_owned(), keys);
    }
    out
}

/// Runs `nft ARGS -f -` on `input`; a refusal is an error carrying what nft said (the
/// `nftables` crate's helper lets nft's message go to our standard error and keeps none), a
/// missing `nft` one naming its package. Blocking: waits for nft. Also the daemon's VRRP
/// firewall's runner.
pub fn nft_input(args: &[&str], input: &str) -> io::Result<()> {
    let mut child = std::process::Command::new("nft")
        .args(args)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| tool_error("nft", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    // nft's JSON reader places every error at `internal:0:0-0:`, which tells nothing.
    let said: Vec<&str> = said
        .lines()
        .map(|l| l.trim_start_matches("internal:0:0-0: ").trim())
        .filter(|l| !l.is_empty())
        .collect();
    Err(io::Error::other(if said.is_empty() {
        format!("nft failed ({})", out.status)
    } else {
        said.join("; ")
    }))
}

/// Applies `batch` as one nft transaction.
pub(super) fn apply_batch(batch: Batch<'_>) -> io::Result<()> {
    let json = serde_json::to_string(&batch.to_nftables())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    nft_input(&["-j"], &json)
}
