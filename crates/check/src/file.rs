//! FILE_CHECK's rule: what a number read from a `track_file` does to a real server. Pure.

/// FILE_CHECK (keepalived's semantics): with weight 0 a non-zero value (a zero one with
/// `reverse`) takes the server down; otherwise value × weight (negated with `reverse`) is
/// added to the server's weight, and a sum at or below -65536 takes it down.
pub fn effect(value: i64, weight: i32, reverse: bool, configured: u32) -> (bool, Option<u32>) {
    if weight == 0 {
        return ((value != 0) == reverse, None);
    }
    let w = i64::from(weight) * if reverse { -1 } else { 1 };
    let delta = value.saturating_mul(w);
    if delta <= -65_536 {
        return (false, None);
    }
    let eff = (i64::from(configured) + delta).clamp(0, i64::from(u32::MAX));
    (true, Some(eff as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_check_follows_keepalived_s_weights() {
        assert_eq!(effect(0, 0, false, 5), (true, None));
        assert_eq!(effect(3, 0, false, 5), (false, None));
        assert_eq!(effect(0, 0, true, 5), (false, None));
        assert_eq!(effect(2, 10, false, 5), (true, Some(25)));
        assert_eq!(effect(2, 10, true, 50), (true, Some(30)));
        assert_eq!(effect(-1, 1, false, 5), (true, Some(4)));
        assert_eq!(effect(100_000, -1, false, 5), (false, None));
    }
}
