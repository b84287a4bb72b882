//! `cargo fuzz run -s none vrrp_roundtrip` (stable toolchain: no sanitizer).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    holdfast_vrrp::fuzzing::vrrp_roundtrip(std::hint::black_box(data));
});
