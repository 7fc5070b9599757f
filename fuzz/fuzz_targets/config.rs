//! `cargo fuzz run config`: see tiering::fuzz_targets::config.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tiering::fuzz_targets::config(data));
