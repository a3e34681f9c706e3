//! `shoal daemon --metrics-addr`: the node's Prometheus registry and its
//! HTTP listener. One `NodeMetrics` per node, owned by the `Runtime` (and
//! read from it at each scrape, `scrape.rs`):
//!
//! * the actors' counters and histograms (`shoal_actors::metrics`), which
//!   they update as they work, registered here under swarmkit-style names;
//! * the node's own (control API requests, metrics scrapes);
//! * gauges of the state (Raft term and indexes, tasks waiting for a node,
//!   rollouts by state, the transport's open connections), read when a
//!   scrape comes (`refresh`), not kept up to date on every change.
//!
//! The text is prometheus-client's encoding (OpenMetrics 1.0), or, for a
//! scraper that does not ask for OpenMetrics, the same samples in the
//! classic format (`classic`), which `promtool check metrics` reads. No
//! label holds a task id, a service name or anything else without a bound.
//! docs/observability.md lists every series.

pub mod api;
mod listen;
mod scrape;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use shoal_actors::metrics::{latency_histogram, ActorMetrics};
use shoal_core::model::UpdateState;

pub use listen::{serve, MetricsAddr, MetricsAddrError};

/// An HTTP route of the control API as the router matched it
/// (`/services/{id}`), its method and the status answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

/// A rollout's state (`UpdateState::as_str`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabel {
    pub state: &'static str,
}

/// A protocol of the routing mesh.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
}

/// Why the mesh turned a connection or flow away at a cap.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapLabel {
    pub outcome: &'static str,
}

/// Which way overlay packets went.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: &'static str,
}

/// Why the overlay data plane dropped a packet (`overlay/dataplane.rs` `Counters`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    pub reason: &'static str,
}

/// Where the transport refused a connection: `handshake` or `admission`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

/// Every series of one node.
pub struct NodeMetrics {
    registry: Registry,
    pub actors: Arc<ActorMetrics>,
    // Read from the state at scrape time.
    raft_term: Gauge,
    raft_commit_index: Gauge,
    raft_applied_index: Gauge,
    raft_is_leader: Gauge,
    raft_voters: Gauge,
    scheduler_pending: Gauge,
    rollouts: Family<RolloutLabel, Gauge>,
    manager: Gauge,
    // The control API.
    pub api_requests: Family<RequestLabels, Counter>,
    pub api_latency: Family<RouteLabel, Histogram>,
    pub scrapes: Counter,
    // The transport, read at scrape time.
    transport_connections: Gauge,
    transport_refused: Family<StageLabel, Counter>,
    transport_bytes: Family<DirectionLabel, Counter>,
    // The routing mesh: what it counts, and what its caps hold (read at
    // scrape time).
    mesh: crate::mesh::MeshCounts,
    mesh_held: Family<ProtocolLabel, Gauge>,
    mesh_caps_hit: Family<CapLabel, Counter>,
    overlay_packets: Family<DirectionLabel, Counter>,
    overlay_drops: Family<DropLabel, Counter>,
    /// Handed to the DNS server each time the node starts it.
    pub dns: crate::dns::DnsCounts,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// Registers the actors' metrics (the directory's) and the node's own.
    pub fn new(actors: Arc<ActorMetrics>, mesh: crate::mesh::MeshCounts) -> Arc<Self> {
        let mut m = NodeMetrics {
            registry: Registry::default(),
            actors,
            raft_term: Gauge::default(),
            raft_commit_index: Gauge::default(),
            raft_applied_index: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_voters: Gauge::default(),
            scheduler_pending: Gauge::default(),
            rollouts: Family::default(),
            manager: Gauge::default(),
            api_requests: Family::default(),
            api_latency: Family::new_with_constructor(latency_histogram),
            scrapes: Counter::default(),
            transport_connections: Gauge::default(),
            transport_refused: Family::default(),
            transport_bytes: Family::default(),
            mesh,
            mesh_held: Family::default(),
            mesh_caps_hit: Family::default(),
            dns: crate::dns::DnsCounts::default(),
            overlay_packets: Family::default(),
            overlay_drops: Family::default(),
        };
        m.register();
        Arc::new(m)
    }

    fn register(&mut self) {
        let a = self.actors.clone();
        let r = &mut self.registry;
        // Raft.
        r.register(
            "swarm_raft_term",
            "The Raft term this manager is in",
            self.raft_term.clone(),
        );
        r.register(
            "swarm_raft_commit_index",
            "The highest log index this manager knows committed",
            self.raft_commit_index.clone(),
        );
        r.register(
            "swarm_raft_applied_index",
            "The highest log index applied to this manager's state",
            self.raft_applied_index.clone(),
        );
        r.register(
            "swarm_raft_is_leader",
            "1 if this manager is the Raft leader",
            self.raft_is_leader.clone(),
        );
        r.register(
            "swarm_raft_voters",
            "Voters in the Raft configuration as this manager sees it",
            self.raft_voters.clone(),
        );
        r.register(
            "swarm_raft_proposals",
            "Writes proposed by this manager (each write of a packed entry)",
            a.raft_proposals.clone(),
        );
        r.register(
            "swarm_raft_proposals_failed",
            "Proposed writes that were refused, timed out or found no leader",
            a.raft_proposals_failed.clone(),
        );
        r.register_with_unit(
            "swarm_raft_proposal_latency",
            "From a write's proposal to its result on this manager",
            Unit::Seconds,
            a.raft_proposal_latency.clone(),
        );
        r.register(
            "swarm_raft_packed_writes_per_entry",
            "Writes per Raft entry this manager proposed",
            a.raft_packed_writes.clone(),
        );
        r.register(
            "swarm_raft_leader_changes",
            "Times this manager learned of a new leader",
            a.raft_leader_changes.clone(),
        );
        r.register(
            "swarm_raft_snapshot_sends",
            "Raft snapshots this manager sent to followers",
            a.raft_snapshot_sends.clone(),
        );
        r.register(
            "swarm_raft_snapshot_installs",
            "Raft snapshots this manager installed from the leader",
            a.raft_snapshot_installs.clone(),
        );
        // The store.
        r.register_with_unit(
            "swarm_store_apply_latency",
            "Time to apply one batch of committed entries to the state",
            Unit::Seconds,
            a.store_apply_latency.clone(),
        );
        // Scheduler, orchestrator, updater (read on every manager, moved
        // by the leader's loops).
        r.register(
            "swarm_scheduler_pending_tasks",
            "Tasks desired running that wait for a node",
            self.scheduler_pending.clone(),
        );
        r.register_with_unit(
            "swarm_scheduler_placement_pass_duration",
            "One scheduling pass of the leader",
            Unit::Seconds,
            a.scheduler_pass_duration.clone(),
        );
        r.register(
            "swarm_orchestrator_tasks_created",
            "Tasks the leader's orchestrator created",
            a.orchestrator_tasks_created.clone(),
        );
        r.register(
            "swarm_updater_rollouts",
            "Services by the state of their last rollout",
            self.rollouts.clone(),
        );
        // Dispatcher.
        r.register(
            "swarm_dispatcher_sessions",
            "Agent sessions the leader's dispatcher holds (0 off the leader)",
            a.dispatcher_sessions.clone(),
        );
        r.register(
            "swarm_dispatcher_heartbeats_missed",
            "Agent heartbeats found a quarter period late",
            a.dispatcher_heartbeats_missed.clone(),
        );
        r.register(
            "swarm_dispatcher_node_down",
            "Nodes the dispatcher marked down",
            a.dispatcher_node_down.clone(),
        );
        r.register(
            "swarm_dispatcher_stalls",
            "Times the dispatcher heard nothing for more than a heartbeat period (no node is held to that time)",
            a.dispatcher_stalls.clone(),
        );
        // This node.
        r.register(
            "swarm_node_manager",
            "1 if this node is a manager",
            self.manager.clone(),
        );
        r.register(
            "swarm_node_tasks",
            "Tasks assigned to this node, by their latest state",
            a.node_tasks.clone(),
        );
        r.register_with_unit(
            "swarm_node_task_start_latency",
            "From a task actor's start to its task running",
            Unit::Seconds,
            a.task_start_latency.clone(),
        );
        r.register(
            "swarm_node_tasks_failed",
            "Tasks that ended failed or rejected on this node",
            a.tasks_failed.clone(),
        );
        r.register(
            "swarm_node_driver_errors",
            "Driver calls that failed, by operation",
            a.driver_errors.clone(),
        );
        r.register(
            "swarm_actor_restarts",
            "Supervised restarts, by actor kind",
            a.actor_restarts.clone(),
        );
        // Control API.
        r.register(
            "swarm_api_requests",
            "Control API requests, by route, method and status",
            self.api_requests.clone(),
        );
        r.register_with_unit(
            "swarm_api_request_duration",
            "Control API time to a response's head, by route",
            Unit::Seconds,
            self.api_latency.clone(),
        );
        r.register(
            "swarm_metrics_scrapes",
            "Scrapes of this endpoint",
            self.scrapes.clone(),
        );
        // Transport.
        r.register(
            "swarm_transport_connections",
            "Open QUIC connections of the cluster endpoint",
            self.transport_connections.clone(),
        );
        r.register(
            "swarm_transport_refused",
            "Incoming cluster connections refused, at the handshake or by admission",
            self.transport_refused.clone(),
        );
        r.register_with_unit(
            "swarm_transport",
            "Bytes of QUIC packets the cluster endpoint sent and received",
            Unit::Bytes,
            self.transport_bytes.clone(),
        );
        // Routing mesh.
        r.register(
            "swarm_mesh_connections",
            "Connections (tcp) and flows (udp) admitted on a published port",
            self.mesh.admitted.clone(),
        );
        r.register(
            "swarm_mesh_backend_picks",
            "Where an ingress connection or flow went: a task on this node, on another, or none",
            self.mesh.backends.clone(),
        );
        r.register(
            "swarm_mesh_held",
            "Connections (tcp) and flows (udp) the published ports hold now",
            self.mesh_held.clone(),
        );
        r.register(
            "swarm_mesh_caps_hit",
            "Connections or flows turned away at a cap: evicted or refused",
            self.mesh_caps_hit.clone(),
        );
        r.register(
            "swarm_mesh_tunnel_errors",
            "Tunnels to a backend on another node that could not be opened",
            self.mesh.tunnel_errors.clone(),
        );
        // The overlay data plane.
        r.register(
            "swarm_overlay_packets",
            "Overlay packets this node's data plane sent to and received from peers",
            self.overlay_packets.clone(),
        );
        r.register(
            "swarm_overlay_drops",
            "Overlay packets this node's data plane dropped, by reason",
            self.overlay_drops.clone(),
        );
        // The embedded DNS server.
        r.register(
            "swarm_dns_queries",
            "Queries to the embedded DNS server",
            self.dns.queries.clone(),
        );
        r.register(
            "swarm_dns_answers",
            "Answers of the embedded DNS server, by outcome",
            self.dns.answers.clone(),
        );
        r.register(
            "swarm_dns_forwarded",
            "Queries relayed to the node's resolvers",
            self.dns.forwarded.clone(),
        );
    }

    /// The registry in the text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 << 10);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The two text formats a scraper may ask for (`Accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

/// prometheus-client's OpenMetrics text as Prometheus's classic text
/// format: the two differ only where a counter is named (OpenMetrics
/// describes the family `x` and writes the sample `x_total`; the classic
/// format describes `x_total` itself) and in the `# UNIT` and `# EOF`
/// lines, which it has not. Samples pass unchanged.
pub fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# EOF") || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = described {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

const ROLLOUT_STATES: [UpdateState; 6] = [
    UpdateState::Updating,
    UpdateState::Paused,
    UpdateState::Completed,
    UpdateState::RollbackStarted,
    UpdateState::RollbackPaused,
    UpdateState::RollbackCompleted,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_in_the_text_with_its_type() {
        let metrics = NodeMetrics::new(
            Arc::new(ActorMetrics::default()),
            crate::mesh::MeshCounts::default(),
        );
        metrics.actors.restart("task/abc");
        metrics.actors.driver_error("start");
        // Families with labels show once they have a sample.
        metrics
            .transport_bytes
            .get_or_create(&DirectionLabel { direction: "sent" })
            .inc_by(1200);
        metrics
            .mesh
            .backend(shoal_core::model::port::Protocol::Tcp, 30001, "remote");
        let text = metrics.encode().expect("encode");
        assert!(text.contains("# TYPE swarm_raft_term gauge"), "{text}");
        assert!(
            text.contains("# TYPE swarm_transport_bytes counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE swarm_mesh_backend_picks counter"),
            "{text}"
        );
        assert!(text.contains("swarm_transport_bytes_total{direction=\"sent\"} 1200"));
        assert!(text.contains(
            "swarm_mesh_backend_picks_total{port=\"30001\",protocol=\"tcp\",backend=\"remote\"} 1"
        ));
        assert!(text.contains("# TYPE swarm_raft_proposal_latency_seconds histogram"));
        assert!(text.contains("swarm_actor_restarts_total{actor=\"task\"} 1"));
        assert!(!text.contains("abc"), "no task id in a label: {text}");
        assert!(text.contains("swarm_node_driver_errors_total{op=\"start\"} 1"));
        assert!(text.ends_with("# EOF\n"));
        let classic = classic(&text);
        assert!(classic.contains("# TYPE swarm_raft_proposals_total counter\n"));
        assert!(classic.contains("# HELP swarm_raft_proposals_total Writes proposed"));
        assert!(classic.contains("swarm_raft_proposals_total 0\n"));
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
        assert!(classic.contains("# TYPE swarm_raft_term gauge\n"));
    }
}
