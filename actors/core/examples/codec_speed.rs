//! The codec's share of the Raft write path, timed alone: a proposal
//! encoded as the Proposer encodes it and decoded as the state machine
//! decodes an entry, for a dispatcher's write (100 task states) and a node
//! registration, beside bincode alone (what the codec did before record
//! formats), interleaved. The `raft` bench (benches/) times the whole path,
//! which an fsync per commit dominates; this times what a change of the
//! codec can change. docs/benchmarks.md, "Versioned records":
//!
//! ```sh
//! cargo run --release -p shoal-core --features samples --example codec_speed
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shoal_core::codec;
use shoal_core::command::{Command, Proposal, TaskUpdate};
use shoal_core::model::{NodeRole, TaskState, TaskStatus};

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_547_200, 0).unwrap_or_default()
}

fn status_updates() -> Proposal {
    let updates = (0..100)
        .map(|i| TaskUpdate::Status {
            task_id: format!("task{i:021}"),
            node_id: "node0000000000000000000001".into(),
            status: TaskStatus::new(TaskState::Running, "started", at()),
        })
        .collect();
    Proposal {
        id: u128::MAX / 3,
        command: Command::UpdateTasks { updates, at: at() },
    }
}

fn upsert_node() -> Proposal {
    Proposal {
        id: 12_345,
        command: Command::UpsertNode(shoal_core::model::sample_node(
            "node0000000000000000000002",
            "host",
            NodeRole::Worker,
        )),
    }
}

/// The median over `rounds` rounds of `per_round` calls, per call.
fn time(rounds: usize, per_round: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                f();
            }
            start.elapsed() / per_round as u32
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// What `codec` did before formats: bincode alone, with the same
/// configuration and limit, no envelope.
fn bare_encode(p: &Proposal) -> Vec<u8> {
    let config = bincode::config::standard().with_limit::<{ 256 * 1024 * 1024 }>();
    bincode::serde::encode_to_vec(p, config).expect("encode")
}

fn bare_decode(bytes: &[u8]) -> Proposal {
    let config = bincode::config::standard().with_limit::<{ 1 << 24 }>();
    bincode::serde::decode_from_slice(bytes, config)
        .expect("decode")
        .0
}

fn main() {
    for (name, proposal, per_round) in [
        ("status_100", status_updates(), 2_000),
        ("upsert_node", upsert_node(), 50_000),
    ] {
        let bytes = codec::encode(&proposal).expect("encode");
        let bare = bare_encode(&proposal);
        // Warm up.
        time(3, per_round, || {
            black_box(codec::encode(black_box(&proposal)).expect("encode"));
        });
        // Interleaved, so that a busy machine weighs on both alike.
        let (mut enc, mut dec, mut bare_enc, mut bare_dec) = (vec![], vec![], vec![], vec![]);
        for _ in 0..15 {
            enc.push(time(3, per_round, || {
                black_box(codec::encode(black_box(&proposal)).expect("encode"));
            }));
            bare_enc.push(time(3, per_round, || {
                black_box(bare_encode(black_box(&proposal)));
            }));
            dec.push(time(3, per_round, || {
                black_box(codec::decode::<Proposal>(black_box(&bytes)).expect("decode"));
            }));
            bare_dec.push(time(3, per_round, || {
                black_box(bare_decode(black_box(&bare)));
            }));
        }
        let median = |mut v: Vec<Duration>| {
            v.sort();
            v[v.len() / 2].as_nanos()
        };
        println!(
            "{name}: {} bytes ({} bare): encode {} ns (bare {} ns), decode {} ns (bare {} ns)",
            bytes.len(),
            bare.len(),
            median(enc),
            median(bare_enc),
            median(dec),
            median(bare_dec),
        );
    }
}
