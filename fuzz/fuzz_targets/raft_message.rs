//! `shoal_node::fuzzing::raft_message` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_node::fuzzing::raft_message(data));
