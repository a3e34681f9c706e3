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
//! First, closed loops: 1, 16, 64 and 256 proposer tasks
//! (`CLUSTER_RAFT_PROPOSERS`), each writing one after the other for 5 s
//! (`CLUSTER_RAFT_SECONDS`), on the leader and then on a follower (which
//! forwards each write to the leader over QUIC, together with the others
//! waiting at that moment, and answers once it has applied it); each prints
//! writes/s and p50/p99/max latency. Concurrent writes share Raft entries
//! (the Proposer packs what is queued), so entries are fewer than writes.
//! Then criterion's `leader_N` / `follower_forwarded_N`: one iteration is N
//! proposer tasks each making 4 writes in a row.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::future::join_all;
use shoal_actors::context::Timings;
use shoal_core::command::Command;
use shoal_core::model::{ClusterSpec, NodeRole};
use shoal_node::runtime::{NodeConfig, Runtime as Node};
use tokio::runtime::Runtime;

const PROPOSERS: [usize; 4] = [1, 16, 64, 256];
/// Writes each proposer makes one after the other in a criterion iteration.
const PER_PROPOSER: usize = 4;
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
                generic_resources: Vec::new(),
                max_sandboxes: None,
                sandbox_block_hosts: None,
                max_format: shoal_core::codec::FORMAT,
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
            let sealed = cluster.join_tokens.manager.clone();
            drop(guard);
            let keys = nodes[0].keyring().expect("the first node's keyring");
            shoal_node::keys::open_token(keys.as_ref(), &sealed).expect("open the join token")
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

/// `proposers` tasks, each proposing one write after the other through
/// `node` for `length`: the writes acknowledged per second and each write's
/// latency.
fn closed_loop(c: &Cluster, node: &Arc<Node>, proposers: usize, length: Duration) -> Load {
    let flushes = || -> Vec<(u64, u64)> {
        c.nodes
            .iter()
            .map(|n| {
                n.manager()
                    .map_or((0, 0), |m| (m.log.flush_count(), m.log.flushed_bytes()))
            })
            .collect()
    };
    let before = flushes();
    let mut load = c.rt.block_on(async {
        let start = Instant::now();
        let deadline = start + length;
        let tasks: Vec<_> = (0..proposers)
            .map(|_| {
                let node = node.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        node.propose(command()).await.expect("commit");
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.expect("a proposer task"));
        }
        Load {
            elapsed: start.elapsed(),
            latencies,
            flushes: Vec::new(),
        }
    });
    load.flushes = flushes()
        .iter()
        .zip(before)
        .map(|(after, before)| (after.0 - before.0, (after.1 - before.1) / 1024))
        .collect();
    load
}

struct Load {
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Log flushes during the run and the KiB they wrote, per node.
    flushes: Vec<(u64, u64)>,
}

impl Load {
    fn print(mut self, what: &str) {
        self.latencies.sort();
        let n = self.latencies.len();
        let mean = self.latencies.iter().sum::<Duration>() / n.max(1) as u32;
        eprintln!(
            "cluster_raft {what}: {n} writes in {:.2?} = {:.0} writes/s; p50={:.2?} p99={:.2?} max={:.2?} mean={:.2?}; (flushes, KiB flushed) per node {:?}",
            self.elapsed,
            n as f64 / self.elapsed.as_secs_f64(),
            percentile(&self.latencies, 0.50),
            percentile(&self.latencies, 0.99),
            self.latencies[n - 1],
            mean,
            self.flushes,
        );
    }
}

/// Proposer counts the bench runs with (`CLUSTER_RAFT_PROPOSERS=1,64` picks some).
fn proposer_counts() -> Vec<usize> {
    std::env::var("CLUSTER_RAFT_PROPOSERS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| PROPOSERS.to_vec())
}

/// How long each closed-loop run lasts (`CLUSTER_RAFT_SECONDS`, default 5).
fn load_length() -> Duration {
    let secs = std::env::var("CLUSTER_RAFT_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(5.0);
    Duration::from_secs_f64(secs)
}

fn bench_cluster_raft(c: &mut Criterion) {
    let cluster = start_cluster();
    let leader = cluster.nodes[cluster.leader].clone();
    let follower = cluster.nodes[cluster.follower].clone();
    let first = leader.manager().expect("manager").sm.applied().index;
    let counts = proposer_counts();
    let length = load_length();

    for &n in &counts {
        closed_loop(&cluster, &leader, n, length).print(&format!("leader, {n} proposers"));
    }
    for &n in &counts {
        closed_loop(&cluster, &follower, n, length)
            .print(&format!("follower-forwarded, {n} proposers"));
    }

    let mut group = c.benchmark_group("cluster_raft");
    group.sample_size(10);
    for &n in &counts {
        // One iteration: `n` proposers, each with `PER_PROPOSER` writes in a row.
        group.throughput(Throughput::Elements((n * PER_PROPOSER) as u64));
        for (name, node) in [("leader", &leader), ("follower_forwarded", &follower)] {
            group.bench_function(format!("{name}_{n}"), |b| {
                b.iter_custom(|iters| {
                    cluster.rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let tasks: Vec<_> = (0..n)
                                .map(|_| {
                                    let node = node.clone();
                                    tokio::spawn(async move {
                                        for _ in 0..PER_PROPOSER {
                                            node.propose(command()).await.expect("commit");
                                        }
                                    })
                                })
                                .collect();
                            for t in join_all(tasks).await {
                                t.expect("a proposer task");
                            }
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
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
