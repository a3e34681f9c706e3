//! Placement throughput: `place` over 10k and 100k pending tasks on 100 and
//! 1,000 Ready/Active nodes, tasks spread over 10 services.

use std::collections::HashMap;

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use shoal_actors::model::{Availability, NodeState};
use shoal_actors::scheduler::placement::{place, Candidate, Decision, Request};

const SERVICES: usize = 10;

fn candidates(nodes: usize) -> Vec<Candidate> {
    (0..nodes)
        .map(|i| Candidate {
            id: format!("node-{i:05}"),
            state: NodeState::Ready,
            availability: Availability::Active,
            drivers: vec!["process".into()],
            sandbox: true,
            host_ports: Vec::new(),
            total_tasks: 0,
            service_tasks: HashMap::new(),
        })
        .collect()
}

fn requests(tasks: usize) -> Vec<Request> {
    (0..tasks)
        .map(|i| Request {
            task_id: format!("task-{i:07}"),
            service_id: format!("service-{}", i % SERVICES),
            driver: "process".into(),
            needs_sandbox: false,
            host_ports: Vec::new(),
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

criterion_group!(benches, bench_place);
criterion_main!(benches);
