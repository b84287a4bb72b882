//! Replays the fuzz corpus (`fuzz/corpus/config_parse`) through the fuzz target's body, so
//! every input the fuzzer kept is an ordinary regression test.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failure should stop the run

#[test]
fn config_parse_corpus_replays_cleanly() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/config_parse");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        holdfast_config::fuzzing::config_parse(&data);
        n += 1;
    }
    assert!(n >= 8, "corpus has only {n} inputs");
}
