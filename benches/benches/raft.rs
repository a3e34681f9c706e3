//! Raft commits on a single manager with sled persistence: the manager
//! subtree (Store, Raft actor, and the leader subtree once it leads) built
//! the way the daemon builds it, writes going through `Proposer::propose`,
//! which returns once the entry is committed, flushed and applied.
//!
//! The command is `DeleteTasks(vec![])`: it always succeeds and changes
//! nothing, so the leader actors have nothing to react to and the figures are
//! Raft + sled + Store alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ractor::{Actor, ActorRef};
use shoal_actors::context::{ManagerCtx, Timings};
use shoal_actors::leader::manager_spec;
use shoal_actors::raft::{NoPeers, RaftMsg};
use shoal_actors::supervision::{Directory, Intensity, Supervisor, SupervisorArgs, SupervisorMsg};
use shoal_core::command::Command;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const CONCURRENT: usize = 64;

struct Manager {
    rt: Runtime,
    ctx: Arc<ManagerCtx>,
    root: ActorRef<SupervisorMsg>,
    // Dropped last: the actors hold trees of this database.
    _db: sled::Db,
    _dir: tempfile::TempDir,
}

fn command() -> Command {
    Command::DeleteTasks(Vec::new())
}

fn start_manager() -> Manager {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .expect("open sled");
    let directory = Directory::new();
    let ctx = ManagerCtx::new(
        "benchnode000000000000000".into(),
        1,
        &db,
        directory.clone(),
        Timings::default(),
    )
    .expect("manager ctx");
    if !ctx.log.is_initialized() {
        ctx.log.bootstrap(vec![1]).expect("bootstrap raft log");
    }
    let spec = manager_spec(&ctx, Arc::new(NoPeers));
    let root = rt.block_on(async {
        let (root, _) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                directory: directory.clone(),
                intensity: Intensity::default(),
                children: vec![spec],
            },
        )
        .await
        .expect("spawn the root supervisor");
        let deadline = Instant::now() + Duration::from_secs(10);
        while directory.get::<RaftMsg>("raft").is_none() {
            assert!(Instant::now() < deadline, "the raft actor never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The single voter campaigns at once; retry until it leads.
        loop {
            match ctx.proposer.propose(command()).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("waiting for leadership: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("no commit within 10s: {e}"),
            }
        }
        root
    });
    Manager {
        rt,
        ctx,
        root,
        _db: db,
        _dir: dir,
    }
}

fn bench_raft(c: &mut Criterion) {
    let m = start_manager();
    let first = m.ctx.sm.applied().index;

    let mut group = c.benchmark_group("raft_commit");
    group.sample_size(20);

    group.throughput(Throughput::Elements(1));
    group.bench_function("sequential", |b| {
        b.iter_custom(|iters| {
            m.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    m.ctx.proposer.propose(command()).await.expect("commit");
                }
                start.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function(format!("concurrent_{CONCURRENT}"), |b| {
        b.iter_custom(|iters| {
            m.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut set = JoinSet::new();
                    for _ in 0..CONCURRENT {
                        let proposer = m.ctx.proposer.clone();
                        set.spawn(async move { proposer.propose(command()).await });
                    }
                    while let Some(done) = set.join_next().await {
                        done.expect("proposer task").expect("commit");
                    }
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    eprintln!(
        "raft bench: {} entries applied, log {}..={} (snapshot at {})",
        m.ctx.sm.applied().index - first,
        m.ctx.log.first_index(),
        m.ctx.log.last_index(),
        m.ctx.log.snapshot_index(),
    );
    m.root.stop(None);
    m.rt.shutdown_timeout(Duration::from_secs(5));
}

criterion_group!(benches, bench_raft);
criterion_main!(benches);
