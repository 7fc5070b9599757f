//! `cargo fuzz run codec`: see tiering::fuzz_targets::codec.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tiering::fuzz_targets::codec(data));
