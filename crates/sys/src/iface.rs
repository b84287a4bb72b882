//! Interface facts: index, MAC address, operational state — of the calling thread's network
//! namespace. sysfs shows the interfaces of the namespace it was mounted for, which is not the
//! daemon's after it entered another (`net_namespace`): the index comes from
//! `if_nametoindex(3)`, and sysfs is read only when its entry is the same interface (same
//! index), else the kernel is asked through `getifaddrs(3)`.

use std::io;
use std::path::PathBuf;

/// Whether sysfs describes `name` of this thread's namespace.
fn sysfs_is_ours(name: &str) -> bool {
    match (sys(name, "ifindex"), index(name)) {
        (Ok(s), Ok(i)) => s.parse::<u32>().ok() == Some(i),
        _ => false,
    }
}

/// The link-layer address and flags of `name` from `getifaddrs(3)`.
fn from_ifaddrs(name: &str) -> io::Result<([u8; 6], nix::net::if_::InterfaceFlags)> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    for a in addrs.filter(|a| a.interface_name == name) {
        if let Some(link) = a.address.as_ref().and_then(|s| s.as_link_addr()) {
            return Ok((link.addr().unwrap_or([0; 6]), a.flags));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no interface {name}"),
    ))
}

fn sys(name: &str, file: &str) -> io::Result<String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name '{name}'"),
        ));
    }
    let p: PathBuf = ["/sys/class/net", name, file].iter().collect();
    Ok(std::fs::read_to_string(p)?.trim().to_string())
}

/// The interface index.
pub fn index(name: &str) -> io::Result<u32> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name '{name}'"),
        ));
    }
    nix::net::if_::if_nametoindex(name).map_err(|e| match e {
        nix::errno::Errno::ENODEV => {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}"))
        }
        e => io::Error::from(e),
    })
}

/// The hardware address.
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    if !sysfs_is_ours(name) {
        return from_ifaddrs(name).map(|(mac, _)| mac);
    }
    let text = sys(name, "address")?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("MAC of {name}: '{text}'"),
        ));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("MAC of {name}: {e}"))
        })?;
    }
    Ok(mac)
}

/// Whether the link is up (operstate `up`, or `unknown` as loopback-like links report).
pub fn is_up(name: &str) -> io::Result<bool> {
    if !sysfs_is_ours(name) {
        use nix::net::if_::InterfaceFlags as F;
        return from_ifaddrs(name)
            .map(|(_, f)| f.contains(F::IFF_UP) && f.contains(F::IFF_RUNNING));
    }
    let s = sys(name, "operstate")?;
    Ok(s == "up" || s == "unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_attributes_are_read_from_sysfs() {
        // Read only: the loopback interface every network namespace has.
        assert_eq!(index("lo").unwrap(), 1);
        assert_eq!(mac("lo").unwrap(), [0u8; 6]);
        // lo's operstate is "unknown", which counts as up (as keepalived takes it).
        assert!(is_up("lo").unwrap());
    }

    #[test]
    fn bad_or_missing_interfaces_are_errors() {
        assert_eq!(
            index("../lo").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(index("").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            index("hf-no-such-if").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
