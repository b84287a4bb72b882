//! Interface facts from sysfs: index, MAC address, operational state.

use std::io;
use std::path::PathBuf;

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
    sys(name, "ifindex")?.parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("ifindex of {name}: {e}"),
        )
    })
}

/// The hardware address.
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
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
