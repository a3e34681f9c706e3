//! docs/architecture.md's invariants of `actors/` that a machine can check,
//! checked on the sources: the actors read time and randomness only through
//! `world.rs` (so a harness seed replays a run), and make no IO of their own
//! (no sockets, processes, files or kernel calls: those live in node/); the
//! core (`actors/core`) reads neither and knows no actor, runtime or store;
//! and the modules of the core, of the actors, of the node (`node/src`),
//! of the CLI (`cli/src`) and of the chaos harness (`chaos/src`, its
//! library) import each other without a circle (checked here so that one
//! checker serves them all). Test code (`#[cfg(test)]` items) is left out.
//!
//! (`.ci/run` also builds the core alone, where chrono has no clock and rand
//! no OS generator: there `Utc::now()` does not compile at all.)

use std::collections::{BTreeMap, BTreeSet};
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

/// What the core may not know: the actor shell, its runtime and its store.
const SHELL: &[&str] = &[
    "tokio",
    "ractor",
    "sled",
    "raft::",
    "shoal_actors",
    "world::",
    "std::thread",
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
    for e in std::fs::read_dir(dir).expect("a source folder").flatten() {
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

/// The sources of `actors/src` (`Shell`), `actors/core/src` (`Core`) or,
/// for their import graphs alone, `node/src` (`Node`), `cli/src` (`Cli`)
/// and `chaos/src` (`Chaos`: its library, not the binaries beside it).
#[derive(Clone, Copy)]
enum Crate {
    Shell,
    Core,
    Node,
    Cli,
    Chaos,
}

fn root(c: Crate) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    match c {
        Crate::Shell => here.join("src"),
        Crate::Core => here.join("core").join("src"),
        Crate::Node => here.join("..").join("node").join("src"),
        Crate::Cli => here.join("..").join("cli").join("src"),
        Crate::Chaos => here.join("..").join("chaos").join("src"),
    }
}

fn files(c: Crate) -> (PathBuf, Vec<PathBuf>) {
    let root = root(c);
    let mut files = Vec::new();
    sources(&root, &mut files);
    if matches!(c, Crate::Chaos) {
        // Crates of their own, which name the library as `shoal_chaos`.
        files.retain(|f| {
            let rel = f.strip_prefix(&root).unwrap_or(f);
            rel != Path::new("main.rs") && !rel.starts_with("bin")
        });
    }
    files.sort();
    assert!(files.len() > 20, "found only {} sources", files.len());
    (root, files)
}

fn offences(c: Crate, allowed: &[&str], forbidden: &[&str]) -> Vec<String> {
    let (root, files) = files(c);
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
                    found.push(format!("{rel}: {word} in {:?}", line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn only_world_reads_the_clock_and_the_oss_randomness() {
    let mut found = offences(Crate::Shell, &["world.rs"], CLOCK_AND_RANDOMNESS);
    found.extend(offences(Crate::Core, &[], CLOCK_AND_RANDOMNESS));
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_actors_make_no_io_of_their_own() {
    let mut found = offences(Crate::Shell, &[], IO);
    found.extend(offences(Crate::Core, &[], IO));
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_core_knows_no_actor_runtime_or_store() {
    let found = offences(Crate::Core, &[], SHELL);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// A source's module path: `plan/update.rs` is `plan::update`, `plan/mod.rs`
/// is `plan`, `lib.rs` (or a binary's `main.rs`) is the root.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The modules `code` (of module `me`) names by `crate::…` or `super::…`
/// paths (a `{…}` group names each of its paths), each as the longest
/// prefix that is a module of `known`.
fn imports(me: &[String], code: &str, known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        if !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            for path in paths(&code[at + "crate::".len()..]) {
                out.extend(longest_module(path, known));
            }
        }
    }
    for (at, _) in code.match_indices("super::") {
        if code[..at].ends_with("::") {
            continue;
        }
        let mut base = me.to_vec();
        let mut rest = &code[at..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        for path in paths(rest) {
            out.extend(longest_module(
                base.iter().cloned().chain(path).collect(),
                known,
            ));
        }
    }
    out.remove(me);
    out
}

/// The paths `text` starts with: `a::b::C` is one, `{a, b::{c, d}}` three.
fn paths(text: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut head = Vec::new();
    let mut rest = text;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            // The group's items, split at the commas of its own level.
            let (mut depth, mut start, mut out) = (0, 0, Vec::new());
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(&group[start..i]);
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(&group[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return out
                .into_iter()
                .flat_map(|item| paths(item.trim_start()))
                .map(|tail| head.iter().cloned().chain(tail).collect())
                .collect();
        }
        let name = ident(rest);
        if name.is_empty() {
            return vec![head];
        }
        rest = &rest[name.len()..];
        head.push(name);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => return vec![head],
        }
    }
}

fn longest_module(mut path: Vec<String>, known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    while !path.is_empty() {
        if known.contains(&path) {
            return Some(path);
        }
        path.pop();
    }
    None
}

/// A circle of `graph`, if it has one (depth-first search).
fn circle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            return Some(
                path[at..]
                    .iter()
                    .chain([node])
                    .map(|m| m.join("::"))
                    .collect(),
            );
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// `c`'s import graph: each module and the modules it names.
fn import_graph(c: Crate) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let (root, files) = files(c);
    let modules: Vec<(Vec<String>, String)> = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&root).unwrap_or(f);
            let text = std::fs::read_to_string(f).expect("source");
            let code: String = without_tests(&text)
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            (module_of(rel), code)
        })
        .collect();
    let known: BTreeSet<Vec<String>> = modules.iter().map(|(m, _)| m.clone()).collect();
    modules
        .iter()
        .map(|(m, code)| (m.clone(), imports(m, code, &known)))
        .collect()
}

#[test]
fn modules_import_each_other_without_a_circle() {
    let core = import_graph(Crate::Core);
    // The check sees the edges that made the old circle.
    assert!(core[&vec!["rules".to_string()]].contains(&vec!["state".to_string()]));
    // And one edge each of the old circles of the CLI and the chaos harness.
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    assert!(import_graph(Crate::Cli)[&m("commands::service")].contains(&m("commands::update")));
    assert!(import_graph(Crate::Chaos)[&m("traffic")].contains(&m("overlay")));
    for (c, name) in [
        (Crate::Core, "actors/core"),
        (Crate::Shell, "actors"),
        (Crate::Node, "node"),
        (Crate::Cli, "cli"),
        (Crate::Chaos, "chaos"),
    ] {
        if let Some(circle) = circle(&import_graph(c)) {
            panic!(
                "{name}'s modules import each other in a circle: {}",
                circle.join(" -> ")
            );
        }
    }
}

#[test]
fn a_circle_is_found() {
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let mut graph = BTreeMap::new();
    graph.insert(m("a"), BTreeSet::from([m("b")]));
    graph.insert(m("b"), BTreeSet::from([m("c")]));
    graph.insert(m("c"), BTreeSet::from([m("a")]));
    assert_eq!(circle(&graph).map(|c| c.len()), Some(4));
    graph.insert(m("c"), BTreeSet::new());
    assert_eq!(circle(&graph), None);
    let known = BTreeSet::from([m("plan"), m("plan::update"), m("model")]);
    assert_eq!(
        imports(
            &m("plan::update"),
            "use super::Plan; use crate::model::Task;",
            &known
        ),
        BTreeSet::from([m("plan"), m("model")])
    );
}

#[test]
fn test_items_are_left_out_and_the_rest_is_kept() {
    let text = "a\n#[cfg(test)]\nfn helper() {\n    x\n}\nb\n#[cfg(test)]\nuse y;\nc\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n";
    assert_eq!(without_tests(text), "a\nb\nc\n");
}
