//! Virtual servers: keepalived's checker process, on holdfast's proxy data plane. Each real
//! server's checkers run as tasks over the pure [`CheckerState`]; a real server is alive iff
//! all its checkers are up; each virtual server's [`Service`] turns that into the wanted table
//! (inhibit vs removal, quorum, sorry server) and the data plane is given the whole table
//! after every change. Log lines are keepalived's (`Keepalived_healthcheckers`).

use std::net::SocketAddr;
use std::sync::Arc;

use holdfast_config::model::{Command, UserSpec};
use holdfast_dataplane::{DestSpec, ServiceKey, ServiceSpec};
use holdfast_lb::service::{Event, RealServer, Service};
use tokio::sync::mpsc;

use crate::logging::Logger;
use crate::services::Services;

mod checker;
mod planes;

use checker::{AbortOnDrop, CheckCtx, CheckEv, checker, file_checker};

pub use crate::plan::lvs::*;
pub use planes::*;

/// Runs every virtual server until the returned handles are aborted.
pub fn start(
    plans: Vec<VsPlan>,
    planes: Arc<Planes>,
    services: Arc<Services>,
    log: Logger,
) -> Vec<tokio::task::JoinHandle<()>> {
    let on = |k: PlaneKind| plans.iter().filter(|p| p.plane == k).count();
    let (proxy, ipvs) = (on(PlaneKind::Proxy), on(PlaneKind::Ipvs));
    if proxy > 0 {
        log.check(&format!(
            "Using the proxy data plane for {proxy} virtual server(s){}",
            if planes.options().ipvs_present {
                ""
            } else {
                " (dataplane auto: the kernel has no IPVS)"
            }
        ));
    }
    if ipvs > 0 {
        log.check(&format!(
            "Using the IPVS data plane for {ipvs} virtual server(s)"
        ));
    }
    let nft = on(PlaneKind::Nft);
    if nft > 0 {
        log.check(&format!(
            "Using the nftables data plane for {nft} virtual server(s) (table inet {})",
            planes.options.nft_table()
        ));
    }
    plans
        .into_iter()
        .map(|p| tokio::spawn(run_vs(p, planes.clone(), services.clone(), log)))
        .collect()
}

/// Removes the virtual servers' services from the data plane.
pub fn clear(plans: &[VsPlan], planes: &Planes, log: Logger) {
    for p in plans {
        for k in p.keys() {
            planes.set(None, k, p.plane, log);
        }
    }
}

/// At reload: removes the services of `old` that no plan of `new` runs.
pub fn clear_gone(old: &[VsPlan], new: &[VsPlan], planes: &Planes, log: Logger) {
    let kept: std::collections::HashSet<ServiceKey> = new.iter().flat_map(VsPlan::keys).collect();
    for p in old {
        for k in p.keys().into_iter().filter(|k| !kept.contains(k)) {
            planes.set(None, k, p.plane, log);
        }
    }
}

/// Hands the data plane the wanted table of every service of `plan`.
fn set_wanted(plan: &VsPlan, svc: &Service, planes: &Planes, log: Logger) {
    let w = wanted(plan, svc);
    for k in plan.keys() {
        let spec = ServiceSpec {
            key: k,
            ..w.clone()
        };
        planes.set(Some(spec), k, plan.plane, log);
    }
}

/// At stop: the proxy's services close; the kernel's are released as configured
/// ([`Planes::release`]).
pub fn stop(plans: &[VsPlan], planes: &Planes, log: Logger) {
    // The proxy's services close; the kernel planes' are released below as configured.
    let proxied: Vec<VsPlan> = plans
        .iter()
        .filter(|p| p.plane == PlaneKind::Proxy)
        .cloned()
        .collect();
    clear(&proxied, planes, log);
    planes.release(log);
}

fn wanted(plan: &VsPlan, svc: &Service) -> ServiceSpec {
    let mut spec = plan.spec.clone();
    spec.dests = svc
        .wanted()
        .iter()
        .map(|d| match plan.servers.iter().find(|r| r.addr == d.addr) {
            Some(rs) => rs.dest(d.weight),
            // Not a real server: the sorry server.
            None => DestSpec {
                method: plan.sorry_method,
                tunnel: plan.sorry_tunnel,
                ..DestSpec::new(d.addr, d.weight)
            },
        })
        .collect();
    spec
}

async fn run_vs(plan: VsPlan, planes: Arc<Planes>, services: Arc<Services>, log: Logger) {
    let name = plan.name();
    let known = |addr: SocketAddr| -> Option<bool> {
        planes
            .alive
            .lock()
            .ok()
            .and_then(|m| m.get(&(plan.spec.key, addr)).copied())
    };
    // Each checker starts up unless alpha — or as its server was before a reload.
    let ups: Vec<Vec<bool>> = plan
        .servers
        .iter()
        .map(|r| {
            r.checkers
                .iter()
                .map(|c| known(r.addr).unwrap_or(!c.cfg.alpha))
                .collect()
        })
        .collect();
    let servers = plan
        .servers
        .iter()
        .zip(&ups)
        .map(|(r, u)| RealServer {
            addr: r.addr,
            weight: r.weight,
            inhibit_on_failure: r.inhibit,
            alive: u.iter().all(|x| *x),
            dynamic_weight: None,
            drained: false,
        })
        .collect();
    let mut svc = Service::new(plan.service.clone(), servers);
    if !svc.quorum_up() {
        log.check(&format!("Starting with quorum down for VS {name}"));
    }
    set_wanted(&plan, &svc, &planes, log);
    services.quorums.set(&name, svc.quorum_up());
    let (tx, mut rx) = mpsc::channel(64);
    let (atx, mut arx) = mpsc::channel::<Admin>(8);
    if let Ok(mut m) = planes.admin.lock() {
        m.insert(plan.spec.key, atx);
    }
    // `readmit manual`: servers that failed (before a reload) wait for `holdfast enable`.
    let held: Vec<bool> = plan
        .servers
        .iter()
        .map(|r| r.readmit_manual && known(r.addr) == Some(false))
        .collect();
    let manual = plan.servers.iter().map(|r| r.readmit_manual).collect();
    let mut health = holdfast_lb::health::Health::new(ups.clone(), manual, held);
    let mut tasks = Vec::new();
    for (ri, rs) in plan.servers.iter().enumerate() {
        for (ci, ck) in rs.checkers.iter().enumerate() {
            log.check(&format!(
                "Activating healthchecker for service {} for VS {name}",
                rs_name(&plan.spec.key, &rs.addr)
            ));
            let suspend = plan
                .ha_suspend
                .then_some(plan.spec.key.addr().map(|a| a.ip()))
                .flatten();
            let ctx = CheckCtx {
                rs: ri,
                ck: ci,
                label: rs_name(&plan.spec.key, &rs.addr),
                vs: name.clone(),
                suspend,
                script_user: plan.script_user.clone(),
                seed: (ri as u64) << 32 | ci as u64,
                cell: services.health.register(
                    crate::health::Owner::Checker {
                        vs: name.clone(),
                        rs: rs.addr,
                        kind: ck.check.kind().keyword(),
                        index: ci,
                    },
                    ups[ri][ci],
                ),
            };
            let mut ck = ck.clone();
            ck.cfg.alpha = !ups[ri][ci];
            if let Check::File { .. } = ck.check {
                tasks.push(tokio::spawn(file_checker(
                    ctx,
                    ck,
                    rs.weight,
                    tx.clone(),
                    log,
                )));
                continue;
            }
            tasks.push(tokio::spawn(checker(ctx, ck, tx.clone(), log)));
        }
    }
    drop(tx);
    let _guard = AbortOnDrop(tasks);
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
            Some(cmd) = arx.recv() => {
                let (enable, addr, reply) = match cmd {
                    Admin::Enable(a, r) => (true, a, r),
                    Admin::Disable(a, r) => (false, a, r),
                };
                let Some(i) = plan.servers.iter().position(|r| r.addr == addr) else {
                    let _ = reply.send(Err(format!("no real server {addr} in VS {name}")));
                    continue;
                };
                let events = health.on_admin(&mut svc, i, enable);
                if !events.is_empty() {
                    set_wanted(&plan, &svc, &planes, log);
                }
                for e in &events {
                    log.check(&e.line(&name, proto_of(&plan.spec.key)));
                }
                let what = if enable { "enabled" } else { "disabled (draining)" };
                let rs = rs_name(&plan.spec.key, &addr);
                log.check(&format!("{rs} of VS {name} {what} by the operator"));
                let _ = reply.send(Ok(format!("{rs} of VS {name} {what}")));
                continue;
            }
        };
        let events = match ev {
            CheckEv::State { rs, ck, up, gated } => {
                let holdfast_lb::health::Outcome {
                    events: ev,
                    was_up,
                    alive,
                    was_alive,
                    held_passing,
                } = health.on_check(&mut svc, rs, ck, up, gated);
                if held_passing {
                    log.check(&format!(
                        "{} of VS {name} passes its checks but stays out until `holdfast enable` (readmit manual)",
                        plan.servers.get(rs).map(|r| rs_name(&plan.spec.key, &r.addr)).unwrap_or_default()
                    ));
                }
                if let (Some(r), Ok(mut m)) = (plan.servers.get(rs), planes.alive.lock()) {
                    m.insert((plan.spec.key, r.addr), alive);
                }
                if was_alive != alive
                    && let Some(r) = plan.servers.get(rs)
                {
                    let cmd = if alive { &r.notify_up } else { &r.notify_down };
                    run_script(cmd.clone(), plan.script_user.clone(), log);
                    services
                        .fifo
                        .real_server(&rs_name(&plan.spec.key, &r.addr), &name, alive);
                }
                if let Some(r) = plan.servers.get(rs)
                    && r.smtp_alert
                    && was_up != up
                    && (was_alive != alive || !plan.no_checker_emails)
                    && let Some(body) = r
                        .checkers
                        .get(ck)
                        .and_then(|c| c.check.kind().mail_body(up))
                {
                    let state = if alive { "UP" } else { "DOWN" };
                    services.mail.alert(
                        crate::mail::Source::Checker,
                        format!(
                            "Realserver {} of virtual server {name} - {state}",
                            rs_name(&plan.spec.key, &r.addr)
                        ),
                        body,
                        log,
                    );
                }
                ev
            }
            CheckEv::Weight { rs, weight } => svc.set_dynamic_weight(rs, weight),
        };
        if !events.is_empty() {
            // The table first, then the lines: whoever reads the log sees the table changed.
            set_wanted(&plan, &svc, &planes, log);
        }
        for e in &events {
            log.check(&e.line(&name, proto_of(&plan.spec.key)));
            if plan.smtp_alert
                && let Some((state, body)) = quorum_mail(e)
            {
                services.mail.alert(
                    crate::mail::Source::Checker,
                    format!("Virtualserver {name} - {state}"),
                    body,
                    log,
                );
            }
            match e {
                Event::QuorumGained { .. } => {
                    services.fifo.virtual_server(&name, true);
                    services.quorums.set(&name, true);
                }
                Event::QuorumLost { .. } => {
                    services.fifo.virtual_server(&name, false);
                    services.quorums.set(&name, false);
                }
                _ => {}
            }
            match e {
                Event::QuorumGained { .. } => {
                    run_script(plan.quorum_up.clone(), plan.script_user.clone(), log)
                }
                Event::QuorumLost { .. } => {
                    run_script(plan.quorum_down.clone(), plan.script_user.clone(), log)
                }
                _ => {}
            }
        }
    }
}

/// The state word and body of the mail for a quorum change, as keepalived writes them
/// (its threshold after the `=`; keepalived prints `+` for a loss too).
fn quorum_mail(e: &Event) -> Option<(&'static str, String)> {
    match e {
        Event::QuorumGained {
            quorum,
            hysteresis,
            live,
        } => Some((
            "UP",
            format!(
                "=> Gained quorum {quorum}+{hysteresis}={} <= {live} <=",
                u64::from(*quorum) + u64::from(*hysteresis)
            ),
        )),
        Event::QuorumLost {
            quorum,
            hysteresis,
            live,
        } => Some((
            "DOWN",
            format!(
                "=> Lost quorum {quorum}+{hysteresis}={} <= {live} <=",
                i64::from(*quorum) - i64::from(*hysteresis)
            ),
        )),
        _ => None,
    }
}

fn run_script(cmd: Option<Command>, script_user: Option<UserSpec>, log: Logger) {
    tokio::spawn(run_script_now(cmd, script_user, log));
}

async fn run_script_now(cmd: Option<Command>, script_user: Option<UserSpec>, log: Logger) {
    if let Some(c) = cmd
        && let Err(e) = crate::script::run_notify(&c, script_user.as_ref(), "script").await
    {
        log.check(&e);
    }
}

/// `omega` at shutdown: notify_down for every live server and quorum_down for every virtual
/// server with `omega`, as keepalived runs them when it stops; waited for (60 s each at most).
pub async fn omega(plans: &[VsPlan], planes: &Planes, log: Logger) {
    for p in plans.iter().filter(|p| p.omega) {
        for r in &p.servers {
            let alive = planes
                .alive
                .lock()
                .ok()
                .and_then(|m| m.get(&(p.spec.key, r.addr)).copied())
                .unwrap_or(!r.alpha);
            if alive {
                run_script_now(r.notify_down.clone(), p.script_user.clone(), log).await;
            }
        }
        run_script_now(p.quorum_down.clone(), p.script_user.clone(), log).await;
    }
}

#[cfg(test)]
mod tests {
    use super::checker::{SLACK, coalesce_on};
    use super::*;
    use holdfast_dataplane::Proto;
    use holdfast_lb::sched::Kind;
    use std::time::Duration;

    /// The virtual servers' plans, and the messages of what is not run, on a host without
    /// IPVS.
    fn planned(cfg: &holdfast_config::Config) -> (Vec<VsPlan>, Vec<String>) {
        let mut un = crate::plan::Findings::new();
        let plans = build(cfg, crate::plan::Facts { ipvs: false }, &mut un);
        (
            plans,
            un.into_vec().into_iter().map(|d| d.message).collect(),
        )
    }

    #[test]
    fn probes_due_close_together_share_a_grid_step_and_are_never_early() {
        let grid = tokio::time::Instant::now();
        let now = grid + Duration::from_millis(3);
        let ms = |m: u64| now + Duration::from_millis(m);
        // A 1 s wait moves to the next 50 ms step: probes due 1 001 and 1 049 ms from now
        // (1 004 and 1 052 on the grid) go out together at 1 100 on the grid.
        let a = coalesce_on(grid, now, ms(1001));
        let b = coalesce_on(grid, now, ms(1049));
        assert_eq!(a, grid + Duration::from_millis(1050));
        assert_eq!(coalesce_on(grid, now, ms(1046)), a);
        assert_eq!(b, grid + Duration::from_millis(1100));
        // A 100 ms retry moves by at most 5 ms; a due time already past is kept.
        let r = coalesce_on(grid, now, ms(100));
        assert!(r >= ms(100) && r <= ms(105), "{r:?}");
        assert_eq!(coalesce_on(grid, now, ms(0)), ms(0));
        for m in [1, 7, 99, 250, 999, 5000] {
            let c = coalesce_on(grid, now, ms(m));
            assert!(c >= ms(m), "early: {m}");
            assert!(c <= ms(m) + SLACK, "late by more than the slack: {m}");
        }
    }

    #[test]
    fn a_virtual_server_group_runs_one_service_per_address_and_mark() {
        let text = "virtual_server_group G {\n 10.0.0.1-3 80\n 10.0.0.2 80\n fwmark 5\n}\nvirtual_server group G {\n lb_algo rr\n real_server 10.0.1.1 80 {\n  TCP_CHECK {\n   connect_timeout 1\n  }\n }\n}\n";
        let on_nft = format!("global_defs {{\n dataplane nft\n}}\n{text}");
        let cfg = holdfast_config::parse_str(&on_nft).config;
        let (plans, un) = planned(&cfg);
        assert!(un.is_empty(), "{un:?}");
        let p = &plans[0];
        assert_eq!(p.name(), "[G]:0");
        let tcp = |a: &str| ServiceKey::tcp(a.parse().unwrap());
        let keys = p.keys();
        assert_eq!(keys.len(), 4, "{keys:?}");
        for k in [tcp("10.0.0.1:80"), tcp("10.0.0.2:80"), tcp("10.0.0.3:80")] {
            assert!(keys.contains(&k), "{k:?} in {keys:?}");
        }
        assert!(keys.contains(&ServiceKey::Fwmark { mark: 5, v6: false }));
        assert_eq!(p.spec.key, keys[0]);
        // A mark's family: `ip_family`, even with no real server to take it from.
        let v6 = "global_defs {\n dataplane nft\n}\nvirtual_server fwmark 7 {\n ip_family inet6\n lb_algo rr\n sorry_server 2001:db8::9 80\n}\n";
        let (plans, un) = planned(&holdfast_config::parse_str(v6).config);
        assert!(un.is_empty(), "{un:?}");
        assert_eq!(plans[0].spec.key, ServiceKey::Fwmark { mark: 7, v6: true });
        // The proxy cannot run a mark; an unknown group is an error, not a silent nothing.
        let proxied = format!("global_defs {{\n dataplane proxy\n}}\n{text}");
        let (plans, un) = planned(&holdfast_config::parse_str(&proxied).config);
        assert!(plans.is_empty());
        assert!(
            un[0].contains("dataplane proxy: the proxy forwards TCP services by address only"),
            "{un:?}"
        );
        let missing = text.replace("virtual_server group G", "virtual_server group H");
        let (plans, un) = planned(&holdfast_config::parse_str(&missing).config);
        assert!(plans.is_empty());
        assert!(un[0].contains("no virtual_server_group H"), "{un:?}");
    }

    #[test]
    fn seed_000_balances_both_replicas_with_tcp_checks() {
        let text = "virtual_server 192.168.0.100 3306 {\n delay_loop 2\n lb_algo rr\n lb_kind NAT\n protocol TCP\n real_server 192.168.0.11 3306 {\n  weight 1\n  TCP_CHECK {\n   connect_timeout 3\n  }\n }\n real_server 192.168.0.12 3306 {\n  weight 2\n  inhibit_on_failure\n  MISC_CHECK {\n   misc_path \"/bin/true\"\n  }\n }\n}\n";
        let cfg = holdfast_config::parse_str(text).config;
        let (plans, un) = planned(&cfg);
        assert!(un.is_empty(), "{un:?}");
        let p = &plans[0];
        assert_eq!(p.name(), "[192.168.0.100]:tcp:3306");
        assert_eq!(p.spec.sched, Kind::Rr);
        assert_eq!(p.servers[1].weight, 2);
        assert!(p.servers[1].inhibit);
        match &p.servers[0].checkers[0].check {
            Check::Probe(holdfast_check::probe::Probe::Tcp(t)) => {
                assert_eq!(t.addr, "192.168.0.11:3306".parse().unwrap());
                assert_eq!(t.timeout, Duration::from_secs(3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.servers[0].checkers[0].cfg.delay_loop,
            Duration::from_secs(2)
        );
        assert!(matches!(p.servers[1].checkers[0].check, Check::Misc { .. }));
    }

    #[test]
    fn a_persistence_engine_off_ipvs_is_refused_where_the_virtual_server_is() {
        let vs = |extra: &str| {
            format!(
                "virtual_server 10.0.0.1 80 {{\n lb_algo rr\n persistence_engine sip\n{extra} real_server 10.0.0.2 80 {{\n }}\n}}\n"
            )
        };
        for (extra, want) in [
            (
                " dataplane nft\n",
                "persistence engines are IPVS's; nftables has none",
            ),
            (" dataplane proxy\n", "the proxy has none"),
            (
                " proxy_protocol\n",
                "no data plane can run it (ipvs: proxy_protocol",
            ),
        ] {
            let loaded = holdfast_config::parse_str(&vs(extra));
            let mut un = crate::plan::Findings::new();
            let facts = crate::plan::Facts { ipvs: true };
            assert!(build(&loaded.config, facts, &mut un).is_empty(), "{extra}");
            let found = un.into_vec();
            assert_eq!(found.len(), 1, "{extra}: {found:?}");
            assert_eq!(found[0].class, holdfast_config::Class::Invalid, "{extra}");
            assert!(found[0].message.contains(want), "{extra}: {found:?}");
            // Where the virtual server is declared (line 1).
            let span = found[0].span.expect("a place");
            assert_eq!(loaded.sources.line_of(span), 1, "{extra}");
        }
        // On IPVS it runs; without IPVS, auto cannot run it and says why.
        let loaded = holdfast_config::parse_str(&vs(""));
        let mut un = crate::plan::Findings::new();
        let plans = build(&loaded.config, crate::plan::Facts { ipvs: true }, &mut un);
        assert_eq!(plans.len(), 1);
        assert!(un.into_vec().is_empty());
        let (plans, un) = planned(&loaded.config);
        assert!(plans.is_empty());
        assert!(
            un[0].contains("only IPVS can run it, and the kernel has no IPVS"),
            "{un:?}"
        );
    }

    #[test]
    fn what_the_proxy_cannot_run_is_reported() {
        let text = "virtual_server fwmark 1 {\n real_server 10.0.0.1 80 {\n }\n}\nvirtual_server 10.0.0.9 53 {\n protocol UDP\n real_server 10.0.0.1 53 {\n }\n}\nvirtual_server 10.0.0.9 80 {\n lb_algo twos\n real_server 10.0.0.1 80 {\n }\n}\n";
        let cfg = holdfast_config::parse_str(text).config;
        let (plans, un) = planned(&cfg);
        assert!(plans.is_empty());
        assert_eq!(un.len(), 3, "{un:?}");
    }

    #[test]
    fn the_seeds_virtual_servers_run_on_the_proxy() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seeds");
        for (file, sched, servers) in [
            ("seed000-dbms.conf", Kind::Dh, 2),
            ("seed003-lvs1.conf", Kind::Rr, 2),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let cfg = holdfast_config::parse_str(&text).config;
            let (plans, un) = planned(&cfg);
            assert_eq!(plans.len(), 1, "{file}: {un:?}");
            assert_eq!(plans[0].spec.sched, sched, "{file}");
            assert_eq!(plans[0].servers.len(), servers, "{file}");
            assert!(
                plans[0].servers.iter().all(|r| !r.checkers.is_empty()),
                "{file}"
            );
            // Only seed 003's DR is noted: the proxy forwards it as NAT.
            assert!(
                un.iter().all(|u| u.contains("lvs_method Dr")),
                "{file}: {un:?}"
            );
        }
    }

    #[test]
    fn real_servers_are_named_with_their_virtual_server_s_protocol() {
        let rs: SocketAddr = "10.0.0.2:53".parse().unwrap();
        let udp = ServiceKey::Addr {
            proto: Proto::Udp,
            addr: "10.0.0.100:53".parse().unwrap(),
        };
        assert_eq!(vs_name(&udp), "[10.0.0.100]:udp:53");
        assert_eq!(rs_name(&udp, &rs), "[10.0.0.2]:udp:53");
        let fwm = ServiceKey::Fwmark { mark: 3, v6: false };
        assert_eq!(vs_name(&fwm), "FWM 3");
        assert_eq!(rs_name(&fwm, &rs), "[10.0.0.2]:tcp:53");
        let v6 = ServiceKey::Addr {
            proto: Proto::Sctp,
            addr: "[fd00::1]:80".parse().unwrap(),
        };
        assert_eq!(vs_name(&v6), "[fd00::1]:sctp:80");
    }
}
