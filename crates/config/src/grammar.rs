//! keepalived's grammar as its reader applies it to braces: which keywords open a block of
//! keywords, which a block of values, which none — from the list of its keywords by block
//! (`reference/keepalived-2.2.7.txt`) and its handlers that read a block of values.

use std::collections::HashSet;
use std::sync::OnceLock;

use crate::tree::{Kind, Node};

/// keepalived's handlers that read the lines of their block as values (its
/// `alloc_value_block` / `read_value_block`), by block.
const VALUES: &[(&str, &str)] = &[
    ("/", "static_ipaddress"),
    ("/", "static_routes"),
    ("/", "static_rules"),
    ("/", "linkbeat_interfaces"),
    ("/", "interface_up_down_delays"),
    ("/", "virtual_server_group"),
    ("/global_defs", "notification_email"),
    ("/track_group", "group"),
    ("/vrrp_sync_group", "group"),
    ("/vrrp_sync_group", "track_interface"),
    ("/vrrp_sync_group", "track_script"),
    ("/vrrp_sync_group", "track_file"),
    ("/vrrp_sync_group", "track_process"),
    ("/vrrp_sync_group", "track_bfd"),
    ("/vrrp_instance", "unicast_peer"),
    ("/vrrp_instance", "track_interface"),
    ("/vrrp_instance", "track_script"),
    ("/vrrp_instance", "track_file"),
    ("/vrrp_instance", "track_process"),
    ("/vrrp_instance", "track_bfd"),
    ("/vrrp_instance", "virtual_ipaddress"),
    ("/vrrp_instance", "virtual_ipaddress_excluded"),
    ("/vrrp_instance", "virtual_routes"),
    ("/vrrp_instance", "virtual_rules"),
];

/// holdfast's own blocks of keywords (their contents are read leniently).
const HOLDFAST_BLOCKS: &[(&str, &str)] = &[
    ("/", "bgp_announce"),
    ("/vrrp_script", "TCP_CHECK"),
    ("/vrrp_script", "HTTP_GET"),
    ("/vrrp_script", "MYSQL_CHECK"),
    ("/virtual_server/real_server", "MYSQL_CHECK"),
];

/// The blocks keepalived knows, as `/a/b` paths.
fn blocks() -> &'static HashSet<String> {
    static B: OnceLock<HashSet<String>> = OnceLock::new();
    B.get_or_init(|| {
        let mut b: HashSet<String> = include_str!("reference/keepalived-2.2.7.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' ').map(|(p, _)| p.to_string()))
            .collect();
        b.insert("/".into());
        b
    })
}

fn joined(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}

/// keepalived 2.2.7's reader.
pub struct Keepalived;

impl crate::tree::Grammar for Keepalived {
    fn kind(&self, path: &[String], keyword: &str) -> Kind {
        kind(path, keyword)
    }

    fn knows(&self, path: &[String]) -> bool {
        blocks().contains(&joined(path))
    }
}

/// How `keyword` in the block at `path` reads braces.
fn kind(path: &[String], keyword: &str) -> Kind {
    let at = joined(path);
    if !blocks().contains(&at) {
        return Kind::Lenient;
    }
    let child = if path.is_empty() {
        format!("/{keyword}")
    } else {
        format!("{at}/{keyword}")
    };
    if blocks().contains(&child)
        || HOLDFAST_BLOCKS
            .iter()
            .any(|&(p, k)| p == at && k == keyword)
    {
        Kind::Block
    } else if VALUES.iter().any(|&(p, k)| p == at && k == keyword) {
        Kind::Values
    } else {
        Kind::Leaf
    }
}

/// Whether keepalived refuses the block `node` opens at `path` without reading it (its
/// handler skips the block): an instance, sync group or track group without a name, or named
/// as one before it (`before`: the statements before it in the same block).
pub fn skipped(path: &[String], node: &Node, before: &[Node]) -> bool {
    let key = node.key.text.as_str();
    if !path.is_empty() || !matches!(key, "vrrp_instance" | "vrrp_sync_group" | "track_group") {
        return false;
    }
    let Some(name) = node.args.first() else {
        return true;
    };
    before
        .iter()
        .any(|b| b.key.text == key && b.args.first().is_some_and(|n| n.text == name.text))
}

/// Whether keepalived, refusing `node` and skipping its block, also ends the block `node` is
/// in (its skip's `}` closes that level): a sync group's second `group` list.
pub fn ends_block(path: &[String], node: &Node, before: &[Node]) -> bool {
    path == ["vrrp_sync_group"]
        && node.key.text == "group"
        && before.iter().any(|n| n.key.text == "group")
}
