//! Last words: a small guardian process that outlives the daemon's death.
//!
//! keepalived's VRRP child sends priority-0 adverts and removes the VIPs when its parent dies;
//! holdfast is one process, so `holdfast run` starts `holdfast guardian` with a pipe. The daemon
//! tells it, per instance, what to do if it dies while MASTER (the priority-0 adverts, the
//! VIPs), and per `bgp_announce` block the routes it holds in the BGP speaker's table. On a
//! clean exit the daemon says so; if the pipe closes without that (kill -9, a crash), the
//! guardian sends the adverts, removes the VIPs and withdraws the announcements, then exits.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use holdfast_sys::vip::{self, VipSpec};
use holdfast_sys::vrrp_socket::{VrrpSocket, VrrpSocketV4, VrrpSocketV6};

/// The daemon's end.
pub struct Guardian {
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
}

/// Appends `b` in lower-case hex to `out`.
fn push_hex(out: &mut String, b: &[u8]) {
    use std::fmt::Write as _;
    for x in b {
        let _ = write!(out, "{x:02x}");
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// What to do for one instance if the daemon dies now.
pub struct LastWords<'a> {
    /// Instance name.
    pub instance: &'a str,
    /// Interface the adverts go out on.
    pub ifname: &'a str,
    /// Interface index.
    pub ifindex: u32,
    /// Advert source address.
    pub src: Option<IpAddr>,
    /// Priority-0 adverts by destination; empty when not MASTER.
    pub adverts: Vec<(IpAddr, Vec<u8>)>,
    /// VIPs to remove; empty when not MASTER.
    pub vips: Vec<VipSpec>,
}

impl LastWords<'_> {
    /// The line the guardian reads: written straight into one string (a `serde_json::Value`
    /// tree cost some thirty allocations a line, a thousand instances' worth of them at start).
    fn to_json(&self) -> String {
        use std::fmt::Write as _;
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut line = String::with_capacity(160 + 96 * self.adverts.len());
        let _ = write!(
            line,
            "{{\"instance\":{},\"ifname\":{},\"ifindex\":{},\"src\":",
            quoted(self.instance),
            quoted(self.ifname),
            self.ifindex
        );
        let _ = match self.src {
            Some(a) => write!(line, "\"{a}\""),
            None => write!(line, "null"),
        };
        line.push_str(",\"adverts\":[");
        for (i, (dst, payload)) in self.adverts.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(line, "{sep}{{\"dst\":\"{dst}\",\"payload\":\"");
            push_hex(&mut line, payload);
            line.push_str("\"}");
        }
        line.push_str("],\"vips\":[");
        for (i, v) in self.vips.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                line,
                "{sep}{{\"addr\":\"{}\",\"prefix\":{},\"ifindex\":{}}}",
                v.addr, v.prefix, v.ifindex
            );
        }
        line.push_str("]}");
        line
    }
}

impl Guardian {
    /// Starts `holdfast-guardian` from beside `exe` (the daemon's executable), or
    /// `exe guardian` where there is none.
    pub fn spawn(exe: &std::path::Path, detail: bool) -> std::io::Result<Guardian> {
        use std::os::unix::process::CommandExt;
        let small = exe.with_file_name("holdfast-guardian");
        let mut cmd = if small.is_file() {
            Command::new(small)
        } else {
            let mut c = Command::new(exe);
            c.arg("guardian");
            c
        };
        // Its own process group: a terminal's Ctrl-C reaches the daemon (which shuts down
        // cleanly and dismisses the guardian), not the guardian.
        let mut child = cmd
            .args(detail.then_some("--detail"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Guardian {
            stdin: Mutex::new(stdin),
            child: Mutex::new(child),
        })
    }

    fn send(&self, line: &str) {
        if let Ok(mut g) = self.stdin.lock()
            && let Some(s) = g.as_mut()
        {
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }

    /// Records an instance's last words (replacing earlier ones).
    pub fn update(&self, w: &LastWords<'_>) {
        self.send(&w.to_json());
    }

    /// Records the routes announcement `name` holds now (replacing earlier ones), as
    /// (prefix, length, table): the guardian removes them if the daemon dies.
    pub fn announced(&self, name: &str, routes: &[(IpAddr, u8, u32)]) {
        self.send(&announce_line(name, routes));
    }

    /// A clean exit: the guardian leaves without acting.
    pub fn dismiss(&self) {
        self.send("{\"exit\":true}");
        if let Ok(mut g) = self.stdin.lock() {
            g.take();
        }
        if let Ok(mut c) = self.child.lock() {
            let _ = c.wait();
        }
    }
}

/// One instance's last words as the guardian keeps them (compact: a thousand instances are
/// held for the daemon's whole life; the interface's name is kept once per interface).
struct Words {
    ifindex: u32,
    src: Option<IpAddr>,
    adverts: Box<[(IpAddr, Box<[u8]>)]>,
    vips: Box<[(IpAddr, u8, u32)]>,
}

impl Words {
    fn parse(v: &serde_json::Value) -> Option<Words> {
        let ip = |x: &serde_json::Value| x.as_str().and_then(|s| s.parse::<IpAddr>().ok());
        Some(Words {
            ifindex: u32::try_from(v["ifindex"].as_u64()?).ok()?,
            src: ip(&v["src"]),
            adverts: v["adverts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|a| {
                            Some((ip(&a["dst"])?, unhex(a["payload"].as_str()?)?.into()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            vips: v["vips"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| {
                            Some((
                                ip(&v["addr"])?,
                                u8::try_from(v["prefix"].as_u64()?).ok()?,
                                u32::try_from(v["ifindex"].as_u64()?).ok()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// `holdfast guardian`: the guardian on its standard input.
pub fn main(detail: bool) -> std::process::ExitCode {
    serve(std::io::stdin().lock(), detail);
    std::process::ExitCode::SUCCESS
}

/// The guardian: reads last words until the pipe closes, then acts unless dismissed. With
/// `detail`, logs when it is armed for an instance (-D).
fn serve(input: impl BufRead, detail: bool) {
    let mut words: BTreeMap<Box<str>, Words> = BTreeMap::new();
    let mut ifnames: BTreeMap<u32, Box<str>> = BTreeMap::new();
    let mut announced: BTreeMap<Box<str>, Vec<(IpAddr, u8, u32)>> = BTreeMap::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["exit"].as_bool() == Some(true) {
            return;
        }
        if let Some(name) = v["announce"].as_str() {
            announced.insert(name.into(), routes_of(&v["routes"]));
            continue;
        }
        if let Some(name) = v["instance"].as_str() {
            let (Some(w), Some(ifname)) = (Words::parse(&v), v["ifname"].as_str()) else {
                continue;
            };
            if ifnames.get(&w.ifindex).is_none_or(|n| **n != *ifname) {
                ifnames.insert(w.ifindex, ifname.into());
            }
            if detail {
                let what = if w.adverts.is_empty() {
                    "disarmed"
                } else {
                    "armed: priority 0 and VIP removal if the daemon dies"
                };
                crate::logging::console(&format!(
                    "Keepalived_vrrp[{}]: ({name}) guardian {what}",
                    std::process::id()
                ));
            }
            match words.get_mut(name) {
                Some(old) => *old = w,
                None => {
                    words.insert(name.into(), w);
                }
            }
        }
    }
    // The daemon died without a clean exit.
    let pid = std::process::id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    for (name, w) in &words {
        if w.adverts.is_empty() && w.vips.is_empty() {
            continue;
        }
        let ifname = ifnames.get(&w.ifindex).map_or("", |n| n);
        let sock = match w.src {
            Some(IpAddr::V4(_)) => VrrpSocketV4::open(ifname, w.ifindex, None, 255, false)
                .map(VrrpSocket::V4)
                .ok(),
            Some(IpAddr::V6(ll)) => VrrpSocketV6::open(ifname, w.ifindex, ll, None)
                .map(VrrpSocket::V6)
                .ok(),
            None => None,
        };
        // No adverts under AH (the router gives none): only the VIPs are removed.
        if let (Some(sock), Some(src)) = (sock, w.src)
            && !w.adverts.is_empty()
        {
            for (dst, p) in w.adverts.iter() {
                let _ = sock.send(src, *dst, p, None);
            }
            crate::logging::console(&format!("Keepalived_vrrp[{pid}]: ({name}) sent 0 priority"));
        }
        if let Ok(rt) = &rt {
            rt.block_on(async {
                let Ok(h) = vip::connect() else { return };
                for &(addr, prefix, ifindex) in w.vips.iter() {
                    let _ = vip::del(&h, &VipSpec::plain(addr, prefix, ifindex)).await;
                }
            });
            crate::logging::console(&format!("Keepalived_vrrp[{pid}]: ({name}) removing VIPs."));
        }
    }
    if let Ok(rt) = &rt {
        rt.block_on(withdraw(&announced, pid));
    }
}

/// The line recording announcement `name`'s routes.
fn announce_line(name: &str, routes: &[(IpAddr, u8, u32)]) -> String {
    let quoted = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".into());
    let list: Vec<String> = routes
        .iter()
        .map(|(a, l, t)| format!("[\"{a}\",{l},{t}]"))
        .collect();
    format!("{{\"announce\":{quoted},\"routes\":[{}]}}", list.join(","))
}

/// The routes of an `announce` line: `[["192.0.2.10",32,100], …]`.
fn routes_of(v: &serde_json::Value) -> Vec<(IpAddr, u8, u32)> {
    let Some(list) = v.as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|r| {
            Some((
                r[0].as_str()?.parse().ok()?,
                u8::try_from(r[1].as_u64()?).ok()?,
                u32::try_from(r[2].as_u64()?).ok()?,
            ))
        })
        .collect()
}

/// Withdraws what every announcement held when the daemon died.
async fn withdraw(announced: &BTreeMap<Box<str>, Vec<(IpAddr, u8, u32)>>, pid: u32) {
    if announced.values().all(Vec::is_empty) {
        return;
    }
    let Ok(h) = vip::connect() else { return };
    for (name, routes) in announced {
        for &(addr, len, table) in routes {
            let route = crate::routing::announced_route(addr, len, table, None);
            let _ = holdfast_sys::route::del_route(&h, &route).await;
            crate::logging::console(&format!(
                "Keepalived_healthcheckers[{pid}]: bgp_announce {name}: withdrawing {addr}/{len} from table {table} (the daemon died)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn last_words_are_read_back_as_written() {
        let spec =
            |addr: &str, prefix, ifindex| VipSpec::plain(addr.parse().unwrap(), prefix, ifindex);
        let w = LastWords {
            instance: "VI_\"1\\",
            ifname: "eth0",
            ifindex: 7,
            src: Some("10.0.0.1".parse().unwrap()),
            adverts: vec![
                ("224.0.0.18".parse().unwrap(), vec![0x31, 0x33, 0x00, 0xff]),
                ("ff02::12".parse().unwrap(), vec![0x01]),
            ],
            vips: vec![spec("10.0.0.100", 24, 7), spec("fd00::1", 64, 8)],
        };
        let line = w.to_json();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["instance"].as_str(), Some("VI_\"1\\"));
        assert_eq!(v["ifname"].as_str(), Some("eth0"));
        let back = Words::parse(&v).unwrap();
        assert_eq!(back.ifindex, 7);
        assert_eq!(back.src, w.src);
        let adverts: Vec<_> = back.adverts.iter().map(|(d, p)| (*d, p.to_vec())).collect();
        assert_eq!(adverts, w.adverts);
        assert_eq!(
            &*back.vips,
            &[
                ("10.0.0.100".parse().unwrap(), 24, 7),
                ("fd00::1".parse().unwrap(), 64, 8)
            ]
        );
        let none = LastWords {
            src: None,
            adverts: Vec::new(),
            vips: Vec::new(),
            ..w
        };
        let v: serde_json::Value = serde_json::from_str(&none.to_json()).unwrap();
        let back = Words::parse(&v).unwrap();
        assert_eq!(
            (back.src, back.adverts.len(), back.vips.len()),
            (None, 0, 0)
        );
    }

    #[test]
    fn announced_routes_are_read_back_as_written() {
        let routes = [
            ("192.0.2.10".parse().unwrap(), 32, 100),
            ("2001:db8::".parse().unwrap(), 64, 252),
        ];
        let line = announce_line("web \"1\"", &routes);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["announce"].as_str(), Some("web \"1\""));
        assert_eq!(routes_of(&v["routes"]), routes);
        assert!(routes_of(&serde_json::json!([["x", 32, 1], ["10.0.0.1", 300, 1]])).is_empty());
    }

    #[test]
    fn hex_round_trips() {
        let b = [0x21, 0x33, 0x00, 0xff];
        let mut h = String::new();
        push_hex(&mut h, &b);
        assert_eq!(h, "213300ff");
        assert_eq!(unhex("213300ff"), Some(b.to_vec()));
        assert_eq!(unhex("2g"), None);
    }

    /// A stand-in executable that records its arguments and reads its input to the end.
    fn fake(path: &std::path::Path, marker: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(
            path,
            format!(
                "#!/bin/sh\necho \"$0 $*\" > {}\ncat > /dev/null\n",
                marker.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Spawns, retrying while another test thread's fork still holds the just-written file
    /// open (ETXTBSY; only under `cargo test`, which runs tests as threads of one process).
    fn spawn(exe: &std::path::Path, detail: bool) -> Guardian {
        for _ in 0..100 {
            match Guardian::spawn(exe, detail) {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                r => return r.unwrap(),
            }
        }
        panic!("{} stayed busy", exe.display());
    }

    #[test]
    fn the_small_guardian_beside_the_daemon_is_preferred_and_the_daemon_is_the_fallback() {
        let dir = std::env::temp_dir().join(format!("hf-guardian-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (exe, small, marker) = (
            dir.join("holdfast"),
            dir.join("holdfast-guardian"),
            dir.join("started"),
        );
        fake(&exe, &marker);
        // Without the small binary: `holdfast guardian --detail`.
        spawn(&exe, true).dismiss();
        let said = std::fs::read_to_string(&marker).unwrap();
        assert_eq!(said.trim(), format!("{} guardian --detail", exe.display()));
        // With it: `holdfast-guardian` (the subcommand word is not passed).
        fake(&small, &marker);
        spawn(&exe, false).dismiss();
        let said = std::fs::read_to_string(&marker).unwrap();
        assert_eq!(said.trim(), small.display().to_string());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
