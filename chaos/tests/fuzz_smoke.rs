//! The stable smoke fuzzer for the scenario parser: the same seeded inputs on
//! every run (random bytes and mutations of the shipped scenarios), so CI
//! catches a parser that panics without nightly. The long, coverage-guided
//! runs are `fuzz/` (see docs/fuzzing.md).
//!
//! `write_seed_corpus` (ignored) writes the shipped scenarios into
//! `fuzz/corpus/scenario/`.

#[path = "../../fuzz/mutate.rs"]
mod mutate;

use shoal_chaos::fuzzing;

/// Inputs: a few seconds in a debug build.
const INPUTS: usize = 50_000;

const TOML_TOKENS: &[&str] = &[
    "\n",
    "=",
    "\"",
    "'",
    "\"\"\"",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    ",",
    ".",
    "#",
    "\\u00e9",
    "é",
    "\u{1F980}",
    "-9223372036854775808",
    "9223372036854775807",
    "1e999",
    "nan",
    "inf",
    "0x7f",
    "1979-05-27T07:32:00Z",
    "[[method]]\n",
    "[[rollback]]\n",
    "[[hypothesis]]\n",
    "[[service]]\n",
    "[cluster]\n",
    "[load]\n",
    "at = \"1s\"\n",
    "action = \"kill\"\n",
    "target = \"leader\"\n",
    "bind = \"x\"\n",
    "repeat = 3\n",
    "every = \"0ms\"\n",
    "duration = \"86400s\"\n",
    "groups = [[\"rest\"], []]\n",
    "managers = 0\n",
    "ms = 18446744073709551615\n",
    "hosts = [\"a\"]\n",
    "rate = 1e-300\n",
];

fn seeds() -> Vec<Vec<u8>> {
    shoal_chaos::SHIPPED
        .iter()
        .map(|(_, src)| src.as_bytes().to_vec())
        .collect()
}

#[test]
fn scenario_parser_survives_hostile_input() {
    mutate::run(
        "scenario",
        5,
        INPUTS,
        seeds(),
        TOML_TOKENS,
        fuzzing::scenario,
    );
}

/// `cargo nextest run -p shoal-chaos --test fuzz_smoke --run-ignored only`
/// writes the shipped scenarios into `fuzz/corpus/scenario/` for cargo-fuzz.
#[test]
#[ignore = "writes files; run by hand to refresh fuzz/corpus"]
fn write_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/scenario");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for (name, src) in shoal_chaos::SHIPPED {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
