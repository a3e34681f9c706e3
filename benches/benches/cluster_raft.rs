//! Raft commits on a three-manager swarm in one process: three node
//! `Runtime`s, each with its own sled data directory and its own QUIC
//! endpoint (mutual TLS) on 127.0.0.2, .3 and .4, formed the way
//! `shoal swarm init` / `shoal swarm join` form a swarm.
//!
//! Every write is `Runtime::propose(Command::DeleteTasks(vec![]))`, which
//! returns once the entry is committed by a majority of the three voters (each
//! of which flushes its sled log before acknowledging) and applied by the
//! proposing node's Store. The command always succeeds and changes nothing, so
//! the leader actors have nothing to react to: the figures are Raft + QUIC +
//! sled + Store.
//!
//! - `leader_sequential`: one proposer on the leader, one commit at a time.
//! - `leader_concurrent_64`: 64 proposals on the leader at once (`join_all`).
//! - `follower_forwarded`: one proposer on a follower, which forwards each
//!   write to the leader over QUIC and answers when the leader has applied it.
//!
//! Besides criterion's figures, the bench times 500 single commits one by one
//! (leader and forwarded) and prints their p50/p99.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::future::join_all;
use shoal_actors::command::Command;
use shoal_actors::context::Timings;
use shoal_actors::model::{ClusterSpec, NodeRole};
use shoal_node::runtime::{NodeConfig, Runtime as Node};
use tokio::runtime::Runtime;

const CONCURRENT: usize = 64;
const PERCENTILE_SAMPLES: usize = 500;
const IPS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];

struct Cluster {
    rt: Runtime,
    /// In the order of `IPS`: the first one initialised the swarm.
    nodes: Vec<Arc<Node>>,
    leader: usize,
    follower: usize,
    // Removed after the nodes are dropped.
    _dirs: Vec<tempfile::TempDir>,
}

fn command() -> Command {
    Command::DeleteTasks(Vec::new())
}

/// A UDP port nobody uses on `ip` right now.
fn free_udp_addr(ip: &str) -> SocketAddr {
    let ip: IpAddr = ip.parse().expect("ip");
    let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind a free UDP port");
    sock.local_addr().expect("local addr")
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn managers_in_state(node: &Node) -> usize {
    node.manager()
        .map(|m| {
            m.sm.read()
                .0
                .nodes
                .values()
                .filter(|n| n.role == NodeRole::Manager)
                .count()
        })
        .unwrap_or(0)
}

fn start_cluster() -> Cluster {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dirs: Vec<tempfile::TempDir> = IPS
        .iter()
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let (nodes, leader, follower) = rt.block_on(async {
        let mut nodes = Vec::new();
        for (i, ip) in IPS.iter().enumerate() {
            let config = NodeConfig {
                data_dir: dirs[i].path().to_path_buf(),
                hostname: format!("bench-manager-{}", i + 1),
                listen_addr: free_udp_addr(ip),
                advertise_addr: None,
                enable_chaos: false,
                timings: Timings::default(),
                cert_validity: Duration::from_secs(90 * 24 * 3600),
            };
            nodes.push(Node::start(config).await.expect("start a node"));
        }
        nodes[0]
            .init_swarm(ClusterSpec::default(), Default::default())
            .await
            .expect("swarm init");
        let token = {
            let m = nodes[0].manager().expect("the first node manages");
            let guard = m.sm.read();
            let cluster = guard.0.cluster.as_ref().expect("a cluster after init");
            cluster.join_tokens.manager.clone()
        };
        let remote = nodes[0].config.listen_addr.to_string();
        for node in &nodes[1..] {
            node.join_swarm(&token, &remote, Default::default(), Default::default())
                .await
                .expect("swarm join as a manager");
        }
        wait_until("3 managers in every state", Duration::from_secs(30), || {
            let ok = nodes.iter().all(|n| managers_in_state(n) == 3);
            async move { ok }
        })
        .await;
        // Every node knows the leader, and a write commits through each.
        let deadline = Instant::now() + Duration::from_secs(30);
        let leader_id = loop {
            let mut seen = Vec::new();
            for n in &nodes {
                seen.push(n.raft_leader().await);
            }
            if seen[0].is_some() && seen.iter().all(|l| *l == seen[0]) {
                break seen[0];
            }
            assert!(Instant::now() < deadline, "no leader known to all");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let leader_id = leader_id.expect("a leader");
        let leader = nodes
            .iter()
            .position(|n| n.manager().expect("manager").raft_id == leader_id)
            .expect("the leader is one of the three");
        for n in &nodes {
            wait_until(
                "a write through every node",
                Duration::from_secs(30),
                || {
                    let n = n.clone();
                    async move { n.propose(command()).await.is_ok() }
                },
            )
            .await;
        }
        let follower = (leader + 1) % nodes.len();
        (nodes, leader, follower)
    });
    eprintln!(
        "cluster_raft: leader {} ({}), forwarding follower {} ({})",
        nodes[leader].config.hostname,
        nodes[leader].config.listen_addr,
        nodes[follower].config.hostname,
        nodes[follower].config.listen_addr,
    );
    Cluster {
        rt,
        nodes,
        leader,
        follower,
        _dirs: dirs,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    eprintln!(
        "cluster_raft {what}: n={} p50={:?} p99={:?} max={:?} mean={:?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
        mean,
    );
}

/// Times `PERCENTILE_SAMPLES` single commits through `node`, one at a time.
fn single_commits(c: &Cluster, node: &Node) -> Vec<Duration> {
    c.rt.block_on(async {
        let mut out = Vec::with_capacity(PERCENTILE_SAMPLES);
        for _ in 0..PERCENTILE_SAMPLES {
            let start = Instant::now();
            node.propose(command()).await.expect("commit");
            out.push(start.elapsed());
        }
        out
    })
}

/// Times batches of `CONCURRENT` commits started together on `node`: each
/// proposal's own latency, and each batch's.
fn concurrent_commits(c: &Cluster, node: &Node, batches: usize) -> (Vec<Duration>, Vec<Duration>) {
    c.rt.block_on(async {
        let mut each = Vec::with_capacity(batches * CONCURRENT);
        let mut batch = Vec::with_capacity(batches);
        for _ in 0..batches {
            let start = Instant::now();
            let done = join_all((0..CONCURRENT).map(|_| async {
                node.propose(command()).await.expect("commit");
                start.elapsed()
            }))
            .await;
            batch.push(start.elapsed());
            each.extend(done);
        }
        (each, batch)
    })
}

fn bench_cluster_raft(c: &mut Criterion) {
    let cluster = start_cluster();
    let leader = cluster.nodes[cluster.leader].clone();
    let follower = cluster.nodes[cluster.follower].clone();
    let first = leader.manager().expect("manager").sm.applied().index;

    report("leader single commit", single_commits(&cluster, &leader));
    report(
        "follower-forwarded single commit",
        single_commits(&cluster, &follower),
    );
    let (each, batch) = concurrent_commits(&cluster, &leader, PERCENTILE_SAMPLES / 10);
    report(
        &format!("leader, {CONCURRENT} concurrent: per proposal"),
        each,
    );
    report(
        &format!("leader, {CONCURRENT} concurrent: per batch"),
        batch,
    );

    let mut group = c.benchmark_group("cluster_raft");
    group.sample_size(20);

    group.throughput(Throughput::Elements(1));
    group.bench_function("leader_sequential", |b| {
        b.iter_custom(|iters| {
            cluster.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    leader.propose(command()).await.expect("commit");
                }
                start.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function(format!("leader_concurrent_{CONCURRENT}"), |b| {
        b.iter_custom(|iters| {
            cluster.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    for r in join_all((0..CONCURRENT).map(|_| leader.propose(command()))).await {
                        r.expect("commit");
                    }
                }
                start.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("follower_forwarded", |b| {
        b.iter_custom(|iters| {
            cluster.rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    follower.propose(command()).await.expect("commit");
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    let m = leader.manager().expect("manager");
    eprintln!(
        "cluster_raft: {} entries applied on the leader, log {}..={} (snapshot at {})",
        m.sm.applied().index - first,
        m.log.first_index(),
        m.log.last_index(),
        m.log.snapshot_index(),
    );
    drop(m);

    // The node runtimes have no stop; their actors and endpoints end with
    // the tokio runtime. Drop them inside it (QUIC endpoints want one).
    let Cluster {
        rt,
        nodes,
        _dirs: dirs,
        ..
    } = cluster;
    {
        let _inside = rt.enter();
        drop(leader);
        drop(follower);
        drop(nodes);
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(dirs);
}

criterion_group!(benches, bench_cluster_raft);
criterion_main!(benches);
