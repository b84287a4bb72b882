//! Replays the control-request fuzz seeds through the target's body.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failure should stop the run

#[test]
fn control_request_corpus_replays_cleanly() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/control_request");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("corpus") {
        holdfast::fuzzing::control_request(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 10, "only {n} seeds");
}
