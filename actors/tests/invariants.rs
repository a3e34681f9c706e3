//! docs/architecture.md's invariants of `actors/` that a machine can check,
//! checked on the sources: the actors read time and randomness only through
//! `world.rs` (so a harness seed replays a run), and make no IO of their own
//! (no sockets, processes, files or kernel calls: those live in node/).
//! Test code (`#[cfg(test)]` items) is left out.

use std::path::{Path, PathBuf};

/// What only `world.rs` may read: the system clock and the OS's randomness.
const CLOCK_AND_RANDOMNESS: &[&str] = &[
    "Utc::now(",
    "Local::now(",
    "std::time::Instant",
    "SystemTime",
    "rand::rng(",
    "thread_rng(",
    "OsRng",
    "getrandom",
];

/// What no file of `actors/` may use.
const IO: &[&str] = &[
    "std::fs",
    "tokio::fs",
    "std::process",
    "tokio::process",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "tokio::net",
    "libc::",
    "nix::",
    "std::os::",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("actors/src").flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file without its `#[cfg(test)]` items: the attribute's item up to
/// its closing brace at the start of a line (or its `;`).
fn without_tests(text: &str) -> String {
    let mut kept = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            kept.push_str(line);
            kept.push('\n');
            continue;
        }
        for skipped in lines.by_ref() {
            let t = skipped.trim_end();
            let one_line = !t.starts_with('#') && t.ends_with(';') && !skipped.starts_with(' ');
            if one_line || t == "}" {
                break;
            }
        }
    }
    kept
}

fn offences(allowed: &[&str], forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} sources", files.len());
    let mut found = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("source");
        for line in without_tests(&text).lines() {
            let code = line.split("//").next().unwrap_or("");
            for word in forbidden {
                if code.contains(word) {
                    found.push(format!("actors/src/{rel}: {word} in {:?}", line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn only_world_reads_the_clock_and_the_oss_randomness() {
    let found = offences(&["world.rs"], CLOCK_AND_RANDOMNESS);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_actors_make_no_io_of_their_own() {
    let found = offences(&[], IO);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn test_items_are_left_out_and_the_rest_is_kept() {
    let text = "a\n#[cfg(test)]\nfn helper() {\n    x\n}\nb\n#[cfg(test)]\nuse y;\nc\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n";
    assert_eq!(without_tests(text), "a\nb\nc\n");
}
