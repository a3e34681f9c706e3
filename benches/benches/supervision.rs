//! Restart latency of a supervised actor: kill the child a `Supervisor`
//! keeps running and wait until the `Directory` names a new incarnation.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use shoal_actors::supervision::{
    ChildSpec, Directory, Intensity, Restart, Supervisor, SupervisorArgs,
};

/// The smallest actor there is.
#[derive(Clone)]
struct Child;

impl Actor for Child {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<()>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// The running incarnation of "child", waiting through a restart if needed.
async fn current(directory: &Directory) -> ActorCell {
    loop {
        if let Some(cell) = directory.cell("child") {
            return cell;
        }
        tokio::task::yield_now().await;
    }
}

fn bench_restart(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let directory = Directory::new();
    let root = rt.block_on(async {
        let (root, _) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                directory: directory.clone(),
                // Restart forever: the bench kills the child far more often
                // than any real intensity would allow.
                intensity: Intensity {
                    max_restarts: usize::MAX,
                    period: Duration::from_millis(1),
                },
                children: vec![ChildSpec::new("child", Restart::Permanent, Child, ())],
            },
        )
        .await
        .expect("spawn the supervisor");
        root
    });

    c.bench_function("supervision/restart_killed_child", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let old = current(&directory).await;
                    let old_id = old.get_id();
                    old.kill();
                    loop {
                        match directory.cell("child") {
                            Some(cell) if cell.get_id() != old_id => break,
                            _ => tokio::task::yield_now().await,
                        }
                    }
                    total += start.elapsed();
                }
                total
            })
        })
    });

    let mut heals = directory.heal_times("child");
    heals.sort();
    if let Some(median) = heals.get(heals.len() / 2) {
        eprintln!(
            "supervision bench: supervisor-side heal time (failure noticed -> new incarnation \
             running), median of the last {}: {median:?}",
            heals.len()
        );
    }
    root.stop(None);
    rt.shutdown_timeout(Duration::from_secs(5));
}

criterion_group!(benches, bench_restart);
criterion_main!(benches);
