//! Writes proposed at the same moment share Raft entries, and each proposer
//! still gets its own result: one write refused among accepted ones fails
//! alone. A single manager over a real sled directory.

use std::sync::Arc;

use futures::future::join_all;
use ractor::Actor;
use shoal_actors::context::{ManagerCtx, Timings};
use shoal_actors::leader::manager_spec;
use shoal_actors::proposer::ProposeError;
use shoal_actors::raft::NoPeers;
use shoal_actors::supervision::{Directory, Intensity, Supervisor, SupervisorArgs};
use shoal_core::codec;
use shoal_core::command::{Command, Proposal};
use shoal_core::model::{Node, NodeRole};
use shoal_core::state::ApplyError;

fn node(id: &str) -> Node {
    shoal_actors::harness::node_record(id, id, NodeRole::Worker)
}

/// Writes: every third one removes a node that does not exist (refused).
fn write(i: usize) -> Command {
    if i % 3 == 2 {
        Command::RemoveNode {
            id: format!("ghost-{i}"),
        }
    } else {
        Command::UpsertNode(node(&format!("n{i}")))
    }
}

/// Which write a command is (the nodes' timestamps differ).
fn name(c: &Command) -> String {
    match c {
        Command::UpsertNode(n) => n.id.clone(),
        Command::RemoveNode { id } => id.clone(),
        other => format!("{other:?}"),
    }
}

const WRITES: usize = 300;

/// One manager, the only voter, over a sled directory in `dir`, under a
/// root supervisor (stop it with the returned handles).
async fn single_manager(
    dir: &std::path::Path,
) -> (
    Arc<ManagerCtx>,
    ractor::ActorRef<shoal_actors::supervision::SupervisorMsg>,
    tokio::task::JoinHandle<()>,
) {
    let db = sled::Config::new().path(dir).open().expect("sled");
    let ctx =
        ManagerCtx::new("m".into(), 1, &db, Directory::new(), Timings::default()).expect("ctx");
    ctx.log.bootstrap(vec![1]).expect("bootstrap");
    let (root, handle) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            directory: ctx.directory.clone(),
            intensity: Intensity::default(),
            children: vec![manager_spec(&ctx, Arc::new(NoPeers))],
        },
    )
    .await
    .expect("spawn manager");
    (ctx, root, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_entries_and_each_gets_its_own_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ctx, root, handle) = single_manager(dir.path()).await;
    // The first write waits for the election (a group of one campaigns at once).
    ctx.proposer
        .propose(Command::DeleteTasks(Vec::new()))
        .await
        .expect("first write");
    let before = ctx.log.last_index();

    let results = join_all((0..WRITES).map(|i| {
        let p = ctx.proposer.clone();
        async move { p.propose(write(i)).await }
    }))
    .await;
    for (i, r) in results.iter().enumerate() {
        if i % 3 == 2 {
            assert_eq!(
                r,
                &Err(ProposeError::Rejected(ApplyError::NodeNotFound(format!(
                    "ghost-{i}"
                )))),
                "write {i}"
            );
        } else {
            assert_eq!(r, &Ok(()), "write {i}");
        }
    }
    let nodes = ctx.sm.read().0.nodes.len();
    assert_eq!(nodes, WRITES - WRITES / 3, "every accepted write applied");

    // Fewer entries than writes: they were packed. Every write is in the
    // log exactly once, in an entry a reader decodes as a `Proposal`.
    let entries = ctx
        .log
        .entries_between(before + 1, ctx.log.last_index() + 1);
    assert!(
        entries.len() < WRITES,
        "{} entries for {WRITES} writes",
        entries.len()
    );
    let mut commands = Vec::new();
    for e in entries.iter().filter(|e| !e.data.is_empty()) {
        let p: Proposal = codec::decode(&e.data).expect("an entry decodes as a Proposal");
        commands.extend(p.into_commands());
    }
    let mut named: Vec<String> = commands.iter().map(name).collect();
    let mut expected: Vec<String> = (0..WRITES).map(|i| name(&write(i))).collect();
    named.sort();
    expected.sort();
    assert_eq!(named, expected, "each write once");

    // A packed command is the Proposer's own: nobody proposes one.
    let smuggled = Command::Packed(vec![Proposal {
        id: 1,
        command: Command::UpsertNode(node("smuggled")),
    }]);
    assert!(matches!(
        ctx.proposer.propose(smuggled).await,
        Err(ProposeError::Rejected(ApplyError::Invalid(_)))
    ));
    // And one in a batch is refused by the state machine.
    let batch = Command::Batch(vec![Command::Packed(Vec::new())]);
    assert!(matches!(
        ctx.proposer.propose(batch).await,
        Err(ProposeError::Rejected(ApplyError::Invalid(_)))
    ));
    assert!(!ctx.sm.read().0.nodes.contains_key("smuggled"));

    // propose_all: one unit, one result each, in order.
    let all = ctx
        .proposer
        .propose_all(vec![
            Command::UpsertNode(node("a")),
            Command::RemoveNode {
                id: "nobody".into(),
            },
            Command::UpsertNode(node("b")),
        ])
        .await;
    assert_eq!(
        all,
        [
            Ok(()),
            Err(ProposeError::Rejected(ApplyError::NodeNotFound(
                "nobody".into()
            ))),
            Ok(())
        ]
    );

    root.stop(None);
    handle.await.expect("stopped");
}

/// A cluster whose version is below `PACKED_SINCE` (a node of format 1 is a
/// member): every write is an entry of its own, which that node reads; once
/// the node reports a newer format, writes share entries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_packing_cluster_version_each_write_is_an_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ctx, root, handle) = single_manager(dir.path()).await;
    let old = Node {
        max_format: 0,
        ..node("old")
    };
    let cluster: shoal_core::model::Cluster = serde_json::from_value(serde_json::json!({
        "id": "c", "spec": serde_json::to_value(shoal_core::model::ClusterSpec::default()).expect("spec"),
        "join_tokens": {"worker": "sealed:w", "manager": "sealed:m"},
        "ca_cert_pem": "", "removed_nodes": [], "unlock_key": null,
        "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
        "version": 0, "format": 0
    }))
    .expect("cluster");
    ctx.proposer
        .propose(Command::InitCluster { cluster, node: old })
        .await
        .expect("init");
    assert_eq!(ctx.sm.read().0.format(), 1);

    let writes = |from: usize| {
        join_all((from..from + 60).map(|i| {
            let p = ctx.proposer.clone();
            async move { p.propose(Command::UpsertNode(node(&format!("n{i}")))).await }
        }))
    };
    let before = ctx.log.last_index();
    for r in writes(0).await {
        r.expect("write");
    }
    let entries = ctx
        .log
        .entries_between(before + 1, ctx.log.last_index() + 1);
    for e in entries.iter().filter(|e| !e.data.is_empty()) {
        let p: Proposal = codec::decode(&e.data).expect("a Proposal");
        assert!(
            !matches!(p.command, Command::Packed(_)),
            "a packed entry at cluster version 1"
        );
    }

    // The old node registers again from a newer build: version 2, packing.
    ctx.proposer
        .propose(Command::UpsertNode(node("old")))
        .await
        .expect("upgraded");
    assert_eq!(ctx.sm.read().0.format(), shoal_core::codec::FORMAT);
    let before = ctx.log.last_index();
    for r in writes(100).await {
        r.expect("write");
    }
    let entries = ctx
        .log
        .entries_between(before + 1, ctx.log.last_index() + 1);
    assert!(
        entries.len() < 60,
        "{} entries for 60 writes",
        entries.len()
    );

    root.stop(None);
    handle.await.expect("stopped");
}
