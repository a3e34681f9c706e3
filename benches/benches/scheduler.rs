//! Placement throughput: `place` over 10k and 100k pending tasks on 100 and
//! 1,000 Ready/Active nodes, tasks spread over 10 services; and 100k tasks
//! on 1,000 nodes with a constraint, a spread preference and reservations
//! (swarmkit's `BenchmarkSchedulerConstraints5kNodes100kTasks` in spirit).

use std::sync::Arc;

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use shoal_actors::harness::node_record;
use shoal_core::model::{DriverInfo, NodeRole, NodeState};
use shoal_core::plan::schedule::{place, Candidate, Decision, Request};
use shoal_core::rules::placement::Constraint;

const SERVICES: usize = 10;

/// Ready nodes offering `process`, 64 CPUs and 256 GiB each, a third of
/// them managers, labelled with one of 5 zones.
fn candidates(nodes: usize) -> Vec<Candidate> {
    (0..nodes)
        .map(|i| {
            let role = if i % 3 == 0 {
                NodeRole::Manager
            } else {
                NodeRole::Worker
            };
            let mut node = node_record(&format!("node-{i:05}"), &format!("host-{i}"), role);
            node.state = NodeState::Ready;
            node.drivers = vec![DriverInfo {
                name: "process".into(),
                version: "1".into(),
            }];
            node.machine.nano_cpus = 64_000_000_000;
            node.machine.memory_bytes = 256 << 30;
            node.labels.insert("zone".into(), format!("z{}", i % 5));
            Candidate::from_node(&node)
        })
        .collect()
}

fn requests(tasks: usize) -> Vec<Request> {
    (0..tasks)
        .map(|i| Request {
            task_id: format!("task-{i:07}"),
            service_id: format!("service-{}", i % SERVICES),
            spec_version: 1,
            driver: "process".into(),
            needs_sandbox: false,
            process_limits: Some(Vec::new()),
            host_ports: Vec::new(),
            constraints: Default::default(),
            spread: Default::default(),
            max_replicas: 0,
            reserve_nano_cpus: 0,
            reserve_memory_bytes: 0,
            reserve_generic: Vec::new(),
            node: None,
            prefer: None,
        })
        .collect()
}

/// The same tasks, on workers only, spread over the zones, each reserving
/// 0.1 CPU and 64 MiB.
fn constrained_requests(tasks: usize) -> Vec<Request> {
    let constraints = Arc::new(vec![
        Constraint::parse("node.role==worker").expect("constraint")
    ]);
    let spread = Arc::new(vec!["node.labels.zone".to_string()]);
    requests(tasks)
        .into_iter()
        .map(|mut r| {
            r.constraints = constraints.clone();
            r.spread = spread.clone();
            r.reserve_nano_cpus = 100_000_000;
            r.reserve_memory_bytes = 64 << 20;
            r
        })
        .collect()
}

fn bench_place(c: &mut Criterion) {
    for tasks in [10_000usize, 100_000] {
        let reqs = requests(tasks);
        let mut group = c.benchmark_group(format!("place/{}k_tasks", tasks / 1000));
        group.throughput(Throughput::Elements(tasks as u64));
        if tasks >= 100_000 {
            // ~0.1 s per iteration: few samples, each of the same length.
            group.sample_size(10).sampling_mode(SamplingMode::Flat);
        }
        for nodes in [100usize, 1_000] {
            let nodes_template = candidates(nodes);

            // Once, outside the measurement: every task lands, evenly.
            let mut check = nodes_template.clone();
            let decisions = place(&reqs, &mut check);
            assert_eq!(decisions.len(), tasks);
            assert!(decisions
                .iter()
                .all(|d| matches!(d, Decision::Assign { .. })));
            let (lo, hi) = check.iter().fold((usize::MAX, 0), |(lo, hi), n| {
                (lo.min(n.total_tasks), hi.max(n.total_tasks))
            });
            assert!(hi - lo <= SERVICES, "uneven spread: {lo}..{hi}");

            group.bench_with_input(BenchmarkId::new("nodes", nodes), &nodes, |b, _| {
                b.iter_batched(
                    || nodes_template.clone(),
                    |mut candidates| place(&reqs, &mut candidates),
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
}

fn bench_constrained(c: &mut Criterion) {
    let tasks = 100_000;
    let reqs = constrained_requests(tasks);
    let mut group = c.benchmark_group("place_constrained/100k_tasks");
    group.throughput(Throughput::Elements(tasks as u64));
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    let nodes = 1_000;
    let template = candidates(nodes);
    let mut check = template.clone();
    let decisions = place(&reqs, &mut check);
    assert!(decisions
        .iter()
        .all(|d| matches!(d, Decision::Assign { .. })));
    assert!(check
        .iter()
        .filter(|n| n.node.role == NodeRole::Manager)
        .all(|n| n.total_tasks == 0));
    group.bench_with_input(BenchmarkId::new("nodes", nodes), &nodes, |b, _| {
        b.iter_batched(
            || template.clone(),
            |mut candidates| place(&reqs, &mut candidates),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_place, bench_constrained);
criterion_main!(benches);
