//! The golden fixtures: what each format's build wrote (`tests/fixtures/
//! format-N/`, made by `examples/write_fixtures.rs`), decoded by this build
//! forever after. Each record must decode, and written again in its own
//! format give the same bytes (so this build still writes what an older
//! member reads); a record claiming a format newer than this build's is
//! refused with the versioned error. docs/upgrades.md has the rules.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_actors::store::{AppliedIndex, StateMachine};
use shoal_core::codec::{self, CodecError};
use shoal_core::command::{Command, Proposal};
use shoal_core::model::network::Network;
use shoal_core::model::secret::Object;
use shoal_core::model::{Cluster, Node, Service, Task, TaskState};
use shoal_node::cluster::wire::{OneWay, Request, Response};
use shoal_node::mesh::tunnel::Header;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every `format-N` directory, with N.
fn format_dirs() -> Vec<(u32, PathBuf)> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("format-")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    dirs.sort();
    dirs
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
}

/// Decodes a fixture as `T` and checks that this build, writing the value
/// in the fixture's format, writes the same bytes.
fn decodes<T: Serialize + DeserializeOwned>(format: u32, dir: &Path, name: &str) -> T {
    let bytes = read(dir, name);
    let (found, _) =
        codec::format_of(&bytes).unwrap_or_else(|e| panic!("format-{format}/{name}: {e}"));
    assert_eq!(found, format, "format-{format}/{name} is of format {found}");
    let value: T = codec::decode(&bytes).unwrap_or_else(|e| panic!("format-{format}/{name}: {e}"));
    let again = codec::encode_at(&value, format).expect("encode");
    assert!(
        again == bytes,
        "format-{format}/{name}: written again in format {format}, the bytes differ"
    );
    value
}

/// What each fixture is, by its file name.
fn decode_fixture(format: u32, dir: &Path, name: &str) {
    match name {
        "raft-entry.bin" => {
            let p: Proposal = decodes(format, dir, name);
            assert!(matches!(p.command, Command::UpdateService { .. }));
        }
        "raft-entry-packed.bin" => {
            let p: Proposal = decodes(format, dir, name);
            assert_eq!(p.writes().len(), 3);
            assert_eq!(p.writes()[1].0, u128::MAX);
        }
        "snapshot.bin" => {
            let _: (AppliedIndex, shoal_core::state::ClusterState) = decodes(format, dir, name);
            let state =
                StateMachine::decode_snapshot(&read(dir, name)).expect("the snapshot decodes");
            assert_eq!(
                (state.nodes.len(), state.services.len(), state.tasks.len()),
                (2, 1, 2)
            );
            assert_eq!((state.secrets.len(), state.configs.len()), (1, 1));
            assert!(state.cluster.is_some());
            // And a follower restores it.
            let db = sled::Config::new().temporary(true).open().expect("sled");
            let sm = StateMachine::open(&db).expect("open");
            sm.restore(&read(dir, name)).expect("restore");
            assert_eq!(sm.read().0.tasks.len(), 2);
        }
        "state-applied.bin" => {
            let _: AppliedIndex = decodes(format, dir, name);
        }
        "state-cluster.bin" => {
            let c: Cluster = decodes(format, dir, name);
            assert_eq!(c.removed_nodes.len(), 1);
            assert_eq!(c.cluster_format(), format);
        }
        "state-node.bin" => {
            let n: Node = decodes(format, dir, name);
            // Upgraded in memory: format 1 had no `max_format`.
            let expected = if format == 1 { 1 } else { format };
            assert_eq!(n.format(), expected);
        }
        "state-svc.bin" => {
            let s: Service = decodes(format, dir, name);
            assert_eq!(s.spec.name, "web");
        }
        "state-task.bin" => {
            let t: Task = decodes(format, dir, name);
            assert_eq!(t.desired_state, TaskState::Running);
        }
        "state-net.bin" => {
            // The first in the tree: the swarm's own ingress network.
            let n: Network = decodes(format, dir, name);
            assert_eq!(n.spec.name, "ingress");
        }
        "state-secret.bin" | "state-config.bin" => {
            let _: Object = decodes(format, dir, name);
        }
        "mesh-tunnel-header.bin" => {
            let h: Header = decodes(format, dir, name);
            assert_eq!(h.port, 80);
        }
        _ if name.starts_with("wire-oneway-") => {
            let _: OneWay = decodes(format, dir, name);
        }
        _ if name.starts_with("wire-request-") => {
            let _: Request = decodes(format, dir, name);
        }
        _ if name.starts_with("wire-response-") => {
            let _: Response = decodes(format, dir, name);
        }
        "node.json" => {
            let id = shoal_node::identity::load(dir)
                .unwrap_or_else(|e| panic!("format-{format}/node.json: {e}"))
                .expect("node.json");
            assert_eq!(id.raft_id, 1);
            assert!(id.manager);
        }
        other => panic!("format-{format}/{other}: a fixture this test does not know"),
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixture dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_of_every_format_decodes() {
    let dirs = format_dirs();
    assert!(
        dirs.iter().any(|(n, _)| *n == 1),
        "the fixtures of format 1 are missing"
    );
    assert!(
        dirs.iter().any(|(n, _)| *n == codec::FORMAT),
        "this build's format has no fixtures: run examples/write_fixtures.rs"
    );
    for (format, dir) in &dirs {
        let names = names(dir);
        for kind in [
            "raft-entry.bin",
            "raft-entry-packed.bin",
            "snapshot.bin",
            "state-node.bin",
            "state-task.bin",
            "wire-request-join.bin",
            "node.json",
        ] {
            assert!(
                names.iter().any(|n| n == kind),
                "format-{format}/{kind} missing"
            );
        }
        for name in &names {
            decode_fixture(*format, dir, name);
        }
    }
}

/// A data dir's state tree of an older format opens: its records are put
/// under their keys in a fresh sled tree, as that build left them.
#[test]
fn a_state_tree_of_every_format_opens() {
    for (format, dir) in format_dirs() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("state").expect("tree");
        let node: Node = codec::decode(&read(&dir, "state-node.bin")).expect("node");
        let task: Task = codec::decode(&read(&dir, "state-task.bin")).expect("task");
        let svc: Service = codec::decode(&read(&dir, "state-svc.bin")).expect("service");
        for (key, file) in [
            ("applied".to_string(), "state-applied.bin"),
            ("cluster".to_string(), "state-cluster.bin"),
            (format!("node/{}", node.id), "state-node.bin"),
            (format!("task/{}", task.id), "state-task.bin"),
            (format!("svc/{}", svc.id), "state-svc.bin"),
        ] {
            tree.insert(key.as_bytes(), read(&dir, file))
                .expect("insert");
        }
        let sm = StateMachine::open(&db).unwrap_or_else(|e| panic!("format-{format}: {e}"));
        let (state, applied) = &*sm.read();
        assert!(applied.index > 0, "format-{format}");
        assert_eq!(state.nodes.len(), 1);
        assert_eq!(state.tasks.len(), 1);
        assert!(state.cluster.is_some());
    }
}

/// Any record claiming a format after this build's: refused, naming both.
#[test]
fn a_fixture_of_a_future_format_is_refused_with_the_versioned_error() {
    let future = codec::FORMAT + 1;
    for (format, dir) in format_dirs() {
        for name in names(&dir).iter().filter(|n| n.ends_with(".bin")) {
            let bytes = read(&dir, name);
            let (_, start) = codec::format_of(&bytes).expect("format");
            let claimed = [&[codec::MAGIC, future as u8][..], &bytes[start..]].concat();
            let err = codec::decode::<Proposal>(&claimed).expect_err("a future format");
            assert!(
                matches!(err, CodecError::TooNew { found, supported }
                    if found == future && supported == codec::FORMAT),
                "format-{format}/{name}: {err}"
            );
        }
    }
    // The committed one, of a format far ahead.
    let bytes = std::fs::read(fixtures().join("future/raft-entry-format-250.bin")).expect("read");
    let err = codec::decode::<Proposal>(&bytes).expect_err("format 250");
    assert_eq!(
        err.to_string(),
        format!(
            "record written by format 250; this build reads up to {}",
            codec::FORMAT
        )
    );
    let err = StateMachine::decode_snapshot(&bytes).expect_err("format 250");
    assert!(
        err.to_string().contains("record written by format 250"),
        "{err}"
    );
    // And node.json.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("node.json"),
        br#"{"format": 250, "node_id": "n", "raft_id": 1, "manager": true}"#,
    )
    .expect("write");
    let err = shoal_node::identity::load(dir.path()).expect_err("format 250");
    assert!(
        err.to_string().ends_with(&format!(
            "file written by format 250; this build reads up to {}",
            codec::FORMAT
        )),
        "{err}"
    );
}
