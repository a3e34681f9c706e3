//! `shoal_chaos::fuzzing::scenario` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_chaos::fuzzing::scenario(data));
