//! Replays the VRRP fuzz corpora through the targets' bodies.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("corpus") {
        f(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    n
}

#[test]
fn vrrp_corpora_replay_cleanly() {
    assert!(replay("vrrp_parse", holdfast_vrrp::fuzzing::vrrp_parse) >= 9);
    assert!(replay("vrrp_roundtrip", holdfast_vrrp::fuzzing::vrrp_roundtrip) >= 9);
}
