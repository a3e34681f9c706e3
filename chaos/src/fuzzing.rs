//! Fuzz entry point for the scenario parser. It takes any bytes and must never
//! panic; a panic is a finding. `fuzz/` (cargo-fuzz, nightly) and
//! `tests/fuzz_smoke.rs` (stable, in CI) drive it.

use crate::scenario;

/// A scenario file: parsed and checked, or refused at a place inside it.
pub fn scenario(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = scenario::parse(src) {
        let lines = src.split('\n').count();
        assert!(
            (1..=lines).contains(&e.line) && e.column >= 1,
            "error at {}:{} outside a {lines}-line file",
            e.line,
            e.column
        );
        let _ = e.to_string();
    }
}
