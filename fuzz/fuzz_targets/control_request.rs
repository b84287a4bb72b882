//! `cargo fuzz run -s none control_request` (stable toolchain: no sanitizer).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    holdfast::fuzzing::control_request(std::hint::black_box(data));
});
