//! keepalived's VRRP firewall with nftables, for instances that do not accept traffic to
//! their VIPs (`no_accept`, and `vrrp_strict` for every instance but an address owner): RFC
//! 5798's Accept_Mode false. While such an instance is MASTER its VIPs are in the `vips` set
//! of keepalived's tables, `ip keepalived` and `ip6 keepalived` (or the name `nftables`
//! gives), whose `in` and `out` chains drop packets to and from them — neighbour discovery
//! excepted, so that IPv6 VIPs still resolve. With `use_vmac`, the same tables send the
//! macvlans' IGMP and MLD reports out of their base interface (keepalived's `vmac_map`). The
//! tables are made when first needed, and removed at stop (and at start, if a crash left
//! them).

use std::net::IpAddr;

use crate::logging::Logger;

/// A macvlan's IGMP reports (`use_vmac`) leave through its base interface instead, as
/// keepalived sends them: from the virtual MAC, a BACKUP's reports would teach the switches
/// that the virtual router's MAC is on the BACKUP's port.
const IGMP: &str =
    "ip protocol igmp meta oifkind \"macvlan\" dup to ip daddr device oif map @vmac_map";
/// The same for IPv6's MLD reports.
const MLD: &str = "icmpv6 type mld2-listener-report meta oifkind \"macvlan\" dup to ip6 daddr device oif map @vmac_map";
/// A macvlan sends no router solicitations (from the virtual MAC).
const RS: &str = "icmpv6 type nd-router-solicit meta oifkind \"macvlan\" oif @vmac_set";

/// `nftables [TABLE]`, `nftables_priority`, `nftables_counters`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallPlan {
    /// Table name (`keepalived`).
    pub table: String,
    /// The chains' priority (-1).
    pub priority: i32,
    /// A counter on each drop rule.
    pub counters: bool,
    /// `nftables` was given (keepalived says when it chooses nftables itself).
    pub configured: bool,
    /// `nftables_ifindex`: link-local VIPs always matched by interface index.
    pub ifindex: bool,
}

/// A VIP as the firewall matches it: an IPv6 link-local address together with its interface
/// (by name for an instance with `dont_track_primary` on its own interface, unless
/// `nftables_ifindex`; by index otherwise, as keepalived matches them), any other alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked<'a> {
    /// The address.
    pub addr: IpAddr,
    /// Its interface.
    pub dev: &'a str,
    /// A link-local address matched by interface name.
    pub by_name: bool,
}

impl Blocked<'_> {
    fn link_local(&self) -> bool {
        matches!(self.addr, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
    }
}

impl Default for FirewallPlan {
    fn default() -> Self {
        FirewallPlan {
            table: "keepalived".into(),
            priority: -1,
            counters: false,
            configured: false,
            ifindex: false,
        }
    }
}

impl FirewallPlan {
    /// The tables with their chains and empty sets, as nft input.
    fn tables(&self) -> String {
        let (t, p) = (&self.table, self.priority);
        let c = if self.counters { "counter " } else { "" };
        format!(
            "table ip {t} {{\n\
             \tset vips {{ type ipv4_addr; }}\n\
             \tmap vmac_map {{ type iface_index : iface_index; }}\n\
             \tchain in {{ type filter hook input priority {p}; policy accept; ip daddr @vips {c}drop; }}\n\
             \tchain out {{ type filter hook output priority {p}; policy accept; {IGMP} {c}drop; ip saddr @vips {c}drop; }}\n\
             }}\n\
             table ip6 {t} {{\n\
             \tset vips {{ type ipv6_addr; }}\n\
             \tmap vmac_map {{ type iface_index : iface_index; }}\n\
             \tset vmac_set {{ type iface_index; }}\n\
             \tset neighbor-discovery {{ type icmpv6_type; elements = {{ nd-neighbor-solicit, nd-neighbor-advert }}; }}\n\
             \tset vips_link_local {{ type ipv6_addr . iface_index; }}\n\
             \tset vips_link_local_name {{ type ipv6_addr . ifname; }}\n\
             \tchain in_link_local {{ ip6 daddr . iif @vips_link_local {c}drop; ip6 daddr . iifname @vips_link_local_name {c}drop; }}\n\
             \tchain out_link_local {{ ip6 saddr . oif @vips_link_local {c}drop; ip6 saddr . oifname @vips_link_local_name {c}drop; }}\n\
             \tchain in {{ type filter hook input priority {p}; policy accept; icmpv6 type @neighbor-discovery accept; ip6 daddr fe80::/10 goto in_link_local; ip6 daddr @vips {c}drop; }}\n\
             \tchain out {{ type filter hook output priority {p}; policy accept; {MLD} {c}drop; {RS} {c}drop; icmpv6 type @neighbor-discovery accept; ip6 saddr fe80::/10 goto out_link_local; ip6 saddr @vips {c}drop; }}\n\
             }}\n"
        )
    }

    /// Adding (`add`) or removing `vips` from the sets, as nft input.
    fn elements(&self, add: bool, vips: &[Blocked<'_>]) -> String {
        let verb = if add { "add" } else { "delete" };
        let mut s = String::new();
        type Member = fn(&Blocked<'_>) -> bool;
        let sets: [(&str, &str, Member); 4] = [
            ("ip", "vips", |b| b.addr.is_ipv4()),
            ("ip6", "vips", |b| b.addr.is_ipv6() && !b.link_local()),
            ("ip6", "vips_link_local", |b| b.link_local() && !b.by_name),
            ("ip6", "vips_link_local_name", |b| {
                b.link_local() && b.by_name
            }),
        ];
        for (fam, set, member) in sets {
            let list: Vec<String> = vips
                .iter()
                .filter(|b| member(b))
                .map(|b| {
                    if b.link_local() {
                        format!("{} . \"{}\"", b.addr, b.dev)
                    } else {
                        b.addr.to_string()
                    }
                })
                .collect();
            if !list.is_empty() {
                s.push_str(&format!(
                    "{verb} element {fam} {} {set} {{ {} }}\n",
                    self.table,
                    list.join(", ")
                ));
            }
        }
        s
    }
}

/// Runs `nft -f -` on `input` with the nftables plane's runner (its errors carry what nft
/// said, and name the package of a missing `nft`), on a blocking thread: nft is waited for off
/// the VRRP runtime.
async fn nft(input: String) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || holdfast_dataplane::nft::nft_input(&[], &input))
        .await
        .map_err(std::io::Error::other)?
}

/// One per process: serialises the changes so that a set is never changed before its table
/// exists (the table is the host's, one per configured name, whichever instance makes it).
static LOCK: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

/// Drops traffic to and from `vips` (an instance becoming MASTER without accept mode).
pub async fn block(plan: &FirewallPlan, name: &str, vips: &[Blocked<'_>], log: Logger) {
    if log.detail {
        log.vrrp(&format!("({name}) setting firewall drop rule"));
    }
    if let Err(e) = add(plan, plan.elements(true, vips)).await {
        log.vrrp(&format!("({name}) cannot set the firewall drop rule: {e}"));
    }
}

/// Adds `elements` (nft input), making the tables first if this process has not yet.
async fn add(plan: &FirewallPlan, elements: String) -> std::io::Result<()> {
    let mut made = LOCK.lock().await;
    let mut input = String::new();
    if !*made {
        input.push_str(&plan.tables());
    }
    input.push_str(&elements);
    nft(input).await?;
    *made = true;
    Ok(())
}

/// Lets traffic to and from `addrs` through again (the instance left MASTER).
pub async fn unblock(plan: &FirewallPlan, name: &str, vips: &[Blocked<'_>], log: Logger) {
    let made = LOCK.lock().await;
    if !*made {
        return;
    }
    if log.detail {
        log.vrrp(&format!("({name}) removing firewall drop rule"));
    }
    // One element at a time: deleting a missing element fails the whole batch.
    for b in vips {
        let _ = nft(plan.elements(false, std::slice::from_ref(b))).await;
    }
}

/// The macvlan `vmac` on `base` in the tables (`add`) or out of them, as nft input.
fn vmac_elements(plan: &FirewallPlan, vmac: &str, base: &str, v6: bool, add: bool) -> String {
    let verb = if add { "add" } else { "delete" };
    let t = &plan.table;
    let (fam, set) = if v6 {
        (
            "ip6",
            format!("{verb} element ip6 {t} vmac_set {{ \"{vmac}\" }}\n"),
        )
    } else {
        ("ip", String::new())
    };
    let map = if add {
        format!("\"{vmac}\" : \"{base}\"")
    } else {
        format!("\"{vmac}\"")
    };
    format!("{verb} element {fam} {t} vmac_map {{ {map} }}\n{set}")
}

/// Sends the IGMP (IPv6: MLD) reports of macvlan `vmac` out of `base` instead (an instance
/// with `use_vmac` starting).
pub async fn vmac_add(plan: &FirewallPlan, vmac: &str, base: &str, v6: bool, log: Logger) {
    if let Err(e) = add(plan, vmac_elements(plan, vmac, base, v6, true)).await {
        log.vrrp(&format!(
            "cannot set the firewall rules of VMAC {vmac}: {e}"
        ));
    }
}

/// Takes macvlan `vmac` out of the tables (before it is removed).
pub async fn vmac_remove(plan: &FirewallPlan, vmac: &str, base: &str, v6: bool) {
    let made = LOCK.lock().await;
    if *made {
        let _ = nft(vmac_elements(plan, vmac, base, v6, false)).await;
    }
}

/// Removes the tables if this process made them (at stop).
pub async fn remove_if_made(plan: &FirewallPlan) {
    if *LOCK.lock().await {
        remove(plan).await;
    }
}

/// Removes the tables (at stop, and at start for a crash's leftovers).
pub async fn remove(plan: &FirewallPlan) {
    let mut made = LOCK.lock().await;
    for fam in ["ip", "ip6"] {
        let _ = nft(format!("delete table {fam} {}\n", plan.table)).await;
    }
    *made = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_s_tables_sets_and_rules() {
        let p = FirewallPlan {
            counters: true,
            ..FirewallPlan::default()
        };
        let t = p.tables();
        assert!(t.contains("table ip keepalived {"));
        assert!(t.contains("chain in { type filter hook input priority -1; policy accept; ip daddr @vips counter drop; }"));
        assert!(t.contains("chain out { type filter hook output priority -1; policy accept; ip protocol igmp meta oifkind \"macvlan\" dup to ip daddr device oif map @vmac_map counter drop; ip saddr @vips counter drop; }"));
        assert!(t.contains(
            "icmpv6 type nd-router-solicit meta oifkind \"macvlan\" oif @vmac_set counter drop;"
        ));
        assert_eq!(
            vmac_elements(&p, "vrrp.51", "eth0", false, true),
            "add element ip keepalived vmac_map { \"vrrp.51\" : \"eth0\" }\n"
        );
        assert_eq!(
            vmac_elements(&p, "vrrp6.51", "eth0", true, false),
            "delete element ip6 keepalived vmac_map { \"vrrp6.51\" }\ndelete element ip6 keepalived vmac_set { \"vrrp6.51\" }\n"
        );
        assert!(t.contains(
            "icmpv6 type @neighbor-discovery accept; ip6 daddr fe80::/10 goto in_link_local;"
        ));
        let b = |a: &str, dev, by_name| Blocked {
            addr: a.parse().unwrap(),
            dev,
            by_name,
        };
        let e = p.elements(
            true,
            &[
                b("10.0.0.1", "eth0", false),
                b("fd00::1", "eth0", false),
                b("10.0.0.2", "eth1", false),
                b("fe80::52", "eth0", false),
                b("fe80::53", "eth1", true),
            ],
        );
        assert_eq!(
            e,
            "add element ip keepalived vips { 10.0.0.1, 10.0.0.2 }\n\
             add element ip6 keepalived vips { fd00::1 }\n\
             add element ip6 keepalived vips_link_local { fe80::52 . \"eth0\" }\n\
             add element ip6 keepalived vips_link_local_name { fe80::53 . \"eth1\" }\n"
        );
        assert!(
            t.contains("ip6 daddr fe80::/10 goto in_link_local; ip6 daddr @vips counter drop;")
        );
        assert!(t.contains(
            "chain in_link_local { ip6 daddr . iif @vips_link_local counter drop; ip6 daddr . iifname @vips_link_local_name counter drop; }"
        ));
    }
}
