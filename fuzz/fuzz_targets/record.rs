//! `shoal_node::fuzzing::record` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_node::fuzzing::record(data));
