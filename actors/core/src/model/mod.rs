//! The cluster's domain objects, as they are replicated through Raft.
//!
//! These types are encoded with bincode (see `codec`), so they use no serde
//! attributes that need a self-describing format. The Docker-shaped JSON the
//! control API shows is built from them in `node::api::views`.

//!
//! Types only, one file per aggregate: nothing here reads the state, the
//! clock or the OS's randomness (`rules/` checks and applies commands;
//! ids and times come in as arguments).

pub mod cluster;
pub mod container;
pub mod mount;
pub mod network;
pub mod node;
pub mod placement;
pub mod port;
pub mod secret;
pub mod service;
pub mod task;

pub use cluster::*;
pub use node::*;
pub use service::*;
pub use task::*;

use rand::Rng;

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ID_LEN: usize = 25;

/// An id of `new_id`'s shape drawn from `rng` (the CA draws token secrets
/// from the OS, never from a harness's seed).
pub fn id_from(rng: &mut (impl Rng + ?Sized)) -> String {
    (0..ID_LEN)
        .map(|_| ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char)
        .collect()
}

/// Whether `id` has the shape `new_id` makes. Checked wherever an id turns
/// into a path or a key, so `../x` never names a file.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b))
}

#[cfg(any(test, feature = "samples"))]
use chrono::{DateTime, Utc};
#[cfg(any(test, feature = "samples"))]
use std::collections::BTreeMap;

/// A task of service `s` in slot 1, for unit tests.
#[cfg(any(test, feature = "samples"))]
pub fn sample_task(state: TaskState, at: DateTime<Utc>) -> Task {
    Task {
        id: "t".into(),
        service_id: "s".into(),
        service_name: "web".into(),
        service_labels: BTreeMap::new(),
        slot: 1,
        node_id: None,
        spec_version: 1,
        spec: TaskTemplate::default(),
        desired_state: TaskState::Running,
        status: TaskStatus {
            state,
            timestamp: at,
            ..Default::default()
        },
        restart_history: Vec::new(),
        node_faults: 0,
        started_at: None,
        attachments: Vec::new(),
        created_at: at,
        updated_at: at,
        version: 1,
    }
}

/// A 4-CPU, 8 GiB linux/x86_64 machine, for unit tests and simulations.
#[cfg(any(test, feature = "samples"))]
pub fn sample_machine() -> placement::Machine {
    placement::Machine {
        os: "linux".into(),
        arch: "x86_64".into(),
        nano_cpus: 4_000_000_000,
        memory_bytes: 8 << 30,
        engine_labels: Default::default(),
        confinement: Default::default(),
        generic_resources: Vec::new(),
        max_sandboxes: None,
    }
}

/// A node record on `sample_machine`, for unit tests and simulations.
#[cfg(any(test, feature = "samples"))]
pub fn sample_node(id: &str, hostname: &str, role: NodeRole) -> Node {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    Node {
        id: id.to_string(),
        raft_id: u64::from(role == NodeRole::Manager),
        hostname: hostname.to_string(),
        role,
        availability: Availability::Active,
        labels: Default::default(),
        state: NodeState::Unknown,
        status_message: String::new(),
        clock_skew_ms: None,
        addr: format!("{hostname}:2377"),
        drivers: Vec::new(),
        sandbox_error: None,
        machine: sample_machine(),
        cert_generation: 0,
        created_at: epoch,
        updated_at: epoch,
        version: 0,
        max_format: crate::codec::FORMAT,
    }
}

/// A generator for unit tests: each one draws a stream of its own, so ids
/// drawn from two of them differ (SplitMix64 over a process-wide counter).
#[cfg(any(test, feature = "samples"))]
pub fn sample_rng() -> impl rand::RngCore {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    struct SplitMix(u64);
    impl rand::RngCore for SplitMix {
        fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            for chunk in dst.chunks_mut(8) {
                let n = chunk.len();
                chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..n]);
            }
        }
    }
    SplitMix(
        NEXT.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x2545_f491_4f6c_dd1d),
    )
}
