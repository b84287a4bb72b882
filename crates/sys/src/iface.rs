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
