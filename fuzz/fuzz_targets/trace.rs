//! `cargo fuzz run trace`: see tiering::fuzz_targets::trace.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tiering::fuzz_targets::trace(data));
