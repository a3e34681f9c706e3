//! The Raft actor over a real sled directory: restarting it (even from a
//! freshly opened database) keeps its log, commit index and snapshot, and
//! compaction runs every `snapshot_interval` entries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::Actor;
use shoal_actors::context::{ManagerCtx, Timings};
use shoal_actors::leader::manager_spec;
use shoal_actors::raft::{NoPeers, RaftTimings};
use shoal_actors::supervision::{Directory, Intensity, Supervisor, SupervisorArgs};
use shoal_core::command::Command;
use shoal_core::model::{Availability, Node, NodeRole, NodeState};

fn node(i: usize) -> Node {
    Node {
        id: format!("node-{i}"),
        raft_id: 0,
        hostname: format!("host-{i}"),
        role: NodeRole::Worker,
        availability: Availability::Active,
        labels: Default::default(),
        state: NodeState::Unknown,
        status_message: String::new(),
        clock_skew_ms: None,
        addr: String::new(),
        drivers: Vec::new(),
        sandbox_error: None,
        machine: Default::default(),
        cert_generation: 0,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        version: 0,
        max_format: shoal_core::codec::FORMAT,
    }
}

fn open(dir: &std::path::Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot reopen sled: {e}"),
        }
    }
}

async fn start(
    ctx: &Arc<ManagerCtx>,
) -> (
    ractor::ActorRef<shoal_actors::supervision::SupervisorMsg>,
    tokio::task::JoinHandle<()>,
) {
    Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            directory: ctx.directory.clone(),
            intensity: Intensity::default(),
            children: vec![manager_spec(ctx, Arc::new(NoPeers))],
        },
    )
    .await
    .expect("spawn manager")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_restart_keeps_log_commit_and_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let timings = Timings {
        raft: RaftTimings {
            snapshot_interval: 25,
            tick: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    };
    let (commit, snapshot, last) = {
        let db = open(dir.path());
        let ctx = ManagerCtx::new("n1".into(), 1, &db, Directory::new(), timings).expect("ctx");
        ctx.log.bootstrap(vec![1]).expect("bootstrap");
        let (root, handle) = start(&ctx).await;
        for i in 0..60 {
            ctx.proposer
                .propose(Command::UpsertNode(node(i)))
                .await
                .expect("propose");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while ctx.log.snapshot_index() == 0 {
            assert!(Instant::now() < deadline, "log was never compacted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            ctx.log.first_index() > 1,
            "compaction dropped the old entries"
        );
        assert_eq!(ctx.sm.read().0.nodes.len(), 60);
        root.stop(None);
        handle.await.expect("stopped");
        // Children stop after their supervisor: wait until the Raft actor is gone
        // too, so that nothing compacts behind the figures read below.
        while ctx.directory.cell("raft").is_some() || ctx.directory.cell("store").is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ctx.log.flush().await.expect("flush");
        let r = (
            ctx.log.hard_state().commit,
            ctx.log.snapshot_index(),
            ctx.log.last_index(),
        );
        drop(ctx);
        drop(db);
        r
    };
    assert!(commit >= 60 && snapshot >= 25 && last >= commit);

    // A new process would do exactly this: open the directory and start over.
    let db = open(dir.path());
    let ctx = ManagerCtx::new("n1".into(), 1, &db, Directory::new(), timings).expect("ctx");
    assert!(ctx.log.is_initialized());
    assert_eq!(ctx.log.snapshot_index(), snapshot);
    assert_eq!(ctx.log.hard_state().commit, commit);
    assert_eq!(ctx.log.last_index(), last);
    assert_eq!(ctx.sm.read().0.nodes.len(), 60, "state machine reloaded");
    assert!(ctx.sm.applied().index >= snapshot);

    let (root, handle) = start(&ctx).await;
    ctx.proposer
        .propose(Command::UpsertNode(node(60)))
        .await
        .expect("propose after restart");
    assert_eq!(ctx.sm.read().0.nodes.len(), 61);
    assert!(ctx.log.hard_state().commit > commit);
    root.stop(None);
    handle.await.expect("stopped");
}

/// Applies `UpsertNode(node(i))` for i in `nodes` at indexes 1, 2, ...
fn fill(sm: &shoal_actors::store::StateMachine, nodes: std::ops::Range<usize>) {
    for (k, i) in nodes.enumerate() {
        let p = shoal_core::command::Proposal {
            id: i as u128 + 1,
            command: Command::UpsertNode(node(i)),
        };
        let data = shoal_core::codec::encode(&p).expect("encode");
        sm.apply_entry(k as u64 + 1, 1, &data).expect("apply");
    }
}

#[test]
fn a_snapshot_whose_restore_did_not_finish_is_restored_again_on_open() {
    // The leader's state: nodes 0-29, applied up to 30.
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let leader_db = open(leader_dir.path());
    let leader = shoal_actors::store::StateMachine::open(&leader_db).expect("open");
    fill(&leader, 0..30);
    let (at, data) = leader.snapshot_data();
    assert_eq!(at.index, 30);

    // A follower that has nodes 100-104 (applied 5) installs the leader's
    // snapshot in its log and dies before the state is restored.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = open(dir.path());
        let ctx =
            ManagerCtx::new("f".into(), 2, &db, Directory::new(), Timings::default()).expect("ctx");
        fill(&ctx.sm, 100..105);
        let mut snap = raft::prelude::Snapshot {
            data: data.into(),
            ..Default::default()
        };
        snap.mut_metadata().index = 30;
        snap.mut_metadata().term = 1;
        ctx.log
            .apply_snapshot(&snap)
            .expect("log takes the snapshot");
        db.flush().expect("flush");
    }

    let db = open(dir.path());
    let ctx =
        ManagerCtx::new("f".into(), 2, &db, Directory::new(), Timings::default()).expect("ctx");
    let guard = ctx.sm.read();
    assert_eq!(guard.1.index, 30, "applied as of the snapshot");
    assert_eq!(guard.0.nodes.len(), 30, "the snapshot's nodes only");
    assert!(guard.0.nodes.contains_key("node-0"));
    assert!(!guard.0.nodes.contains_key("node-100"));
}
