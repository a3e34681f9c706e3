//! The counters and histograms the actors update as they work: plain
//! in-memory atomics (prometheus-client's metric types), no IO. One
//! `ActorMetrics` per node lives in its `Directory`, so every actor already
//! holds it; the node registers the same handles in its registry and serves
//! them (`shoal_node::metrics`). Gauges of the state (term, indexes, tasks by
//! state) are not here: the node reads them from the state when scraped.
//!
//! Labels are bounded: an actor's kind (`task`, `service`, …), never a task
//! id or a service name.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Seconds, from 0.5 ms to about 65 s (18 buckets, doubling).
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

fn writes_histogram() -> Histogram {
    // 1, 2, 4, … 512 writes (MAX_COMMANDS_PER_ENTRY).
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// A supervised actor's kind: its name up to the first `/` (`task/<id>` is
/// `task`), so the label's values are the tree's few kinds.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorLabel {
    pub actor: String,
}

impl ActorLabel {
    pub fn of(name: &str) -> Self {
        ActorLabel {
            actor: name.split('/').next().unwrap_or(name).to_string(),
        }
    }
}

/// A task state (`running`, `failed`, …: `TaskState::as_str`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

/// A driver operation that failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

/// What the actors of one node count and time.
#[derive(Debug)]
pub struct ActorMetrics {
    /// Writes proposed through the Proposer (each of a packed entry's writes).
    pub raft_proposals: Counter,
    /// Writes that came back refused, timed out or without a leader.
    pub raft_proposals_failed: Counter,
    /// From a write's proposal to its being applied here (or refused).
    pub raft_proposal_latency: Histogram,
    /// Writes per entry the Proposer sent.
    pub raft_packed_writes: Histogram,
    /// Times this node saw the leader change (including to "no leader").
    pub raft_leader_changes: Counter,
    /// Snapshots this node sent to a follower (raft-rs `MsgSnapshot`).
    pub raft_snapshot_sends: Counter,
    /// Snapshots this node installed from the leader.
    pub raft_snapshot_installs: Counter,
    /// How long the store took to apply one batch of committed entries.
    pub store_apply_latency: Histogram,
    /// One scheduling pass.
    pub scheduler_pass_duration: Histogram,
    /// Tasks the orchestrator proposed to create (leader only).
    pub orchestrator_tasks_created: Counter,
    /// Agent sessions the dispatcher holds (leader only; 0 elsewhere).
    pub dispatcher_sessions: Gauge,
    /// Heartbeat deadlines a node missed.
    pub dispatcher_heartbeats_missed: Counter,
    /// Nodes the dispatcher marked down.
    pub dispatcher_node_down: Counter,
    /// Ticks that found the dispatcher deaf for more than a period.
    pub dispatcher_stalls: Counter,
    /// From a task actor's start to its task reported RUNNING.
    pub task_start_latency: Histogram,
    /// Tasks whose run ended in FAILED or REJECTED on this node.
    pub tasks_failed: Counter,
    /// Driver calls that failed, by operation.
    pub driver_errors: Family<OpLabel, Counter>,
    /// This node's assigned tasks by their latest state (the agent's view).
    pub node_tasks: Family<StateLabel, Gauge>,
    /// Supervised restarts, by actor kind.
    pub actor_restarts: Family<ActorLabel, Counter>,
}

impl Default for ActorMetrics {
    fn default() -> Self {
        ActorMetrics {
            raft_proposals: Counter::default(),
            raft_proposals_failed: Counter::default(),
            raft_proposal_latency: latency_histogram(),
            raft_packed_writes: writes_histogram(),
            raft_leader_changes: Counter::default(),
            raft_snapshot_sends: Counter::default(),
            raft_snapshot_installs: Counter::default(),
            store_apply_latency: latency_histogram(),
            scheduler_pass_duration: latency_histogram(),
            orchestrator_tasks_created: Counter::default(),
            dispatcher_sessions: Gauge::default(),
            dispatcher_heartbeats_missed: Counter::default(),
            dispatcher_node_down: Counter::default(),
            dispatcher_stalls: Counter::default(),
            task_start_latency: latency_histogram(),
            tasks_failed: Counter::default(),
            driver_errors: Family::default(),
            node_tasks: Family::default(),
            actor_restarts: Family::default(),
        }
    }
}

impl ActorMetrics {
    pub fn driver_error(&self, op: &'static str) {
        self.driver_errors.get_or_create(&OpLabel { op }).inc();
    }

    pub fn node_task_state(&self, state: &'static str, count: i64) {
        self.node_tasks
            .get_or_create(&StateLabel { state })
            .set(count);
    }

    pub fn restart(&self, name: &str) {
        self.actor_restarts
            .get_or_create(&ActorLabel::of(name))
            .inc();
    }
}

/// A duration as a histogram's seconds.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
