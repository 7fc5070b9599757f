//! `cargo fuzz run nbd`: see tiering::fuzz_targets::nbd.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tiering::fuzz_targets::nbd(data));
