//! One scrape: the gauges read at scrape time (from the transport, the
//! mesh, the overlay, the Raft actor and this manager's copy of the state)
//! refreshed, then the registry encoded. Apart from `mod.rs` so that the
//! registry knows nothing of the `Runtime` it is read from.

use shoal_actors::raft::RaftMsg;
use shoal_core::model::TaskState;

use super::*;
use crate::runtime::network::NetworkStack;
use crate::runtime::Runtime;

impl NodeMetrics {
    /// Sets the gauges read at scrape time: the network stack's, then the
    /// manager's.
    pub async fn refresh(&self, rt: &Runtime) {
        self.refresh_network(&rt.network_stack);
        self.refresh_manager(rt).await;
    }

    /// The network stack's gauges: the transport's, the mesh's, the data
    /// plane's.
    fn refresh_network(&self, network: &NetworkStack) {
        let transport = network.transport();
        let connections = transport.as_ref().map_or(0, |t| t.open_connections());
        self.transport_connections.set(connections as i64);
        if let Some(transport) = &transport {
            // The endpoint's own totals, copied (0 again with a new endpoint).
            for (stage, total) in transport.refused() {
                let counter = self.transport_refused.get_or_create(&StageLabel { stage });
                counter
                    .inner()
                    .store(total, std::sync::atomic::Ordering::Relaxed);
            }
            for (direction, total) in transport.bytes() {
                let counter = self
                    .transport_bytes
                    .get_or_create(&DirectionLabel { direction });
                counter
                    .inner()
                    .store(total, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let ((tcp, udp), (evicted, refused)) = network.mesh.held();
        for (protocol, held) in [("tcp", tcp), ("udp", udp)] {
            let label = ProtocolLabel { protocol };
            self.mesh_held.get_or_create(&label).set(held as i64);
        }
        // The mesh keeps these totals itself (monotonic): copied, not added.
        for (outcome, total) in [("evicted", evicted), ("refused", refused)] {
            let counter = self.mesh_caps_hit.get_or_create(&CapLabel { outcome });
            counter
                .inner()
                .store(total, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(dataplane) = network.overlay.dataplane() {
            // The data plane's own totals, copied (they start again at 0 with
            // a new data plane, after a leave and a join: a counter reset).
            for (name, total) in dataplane.counters.snapshot() {
                let counter = match name {
                    "sent" | "received" => self
                        .overlay_packets
                        .get_or_create(&DirectionLabel { direction: name }),
                    "merged" | "tun_writes" => continue,
                    reason => self.overlay_drops.get_or_create(&DropLabel { reason }),
                };
                counter
                    .inner()
                    .store(total, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// The manager's gauges: Raft's from the Raft actor, the rest from
    /// this manager's copy of the state.
    async fn refresh_manager(&self, rt: &Runtime) {
        let manager = rt.manager().ok();
        self.manager.set(i64::from(manager.is_some()));
        let raft = match rt.directory.get::<RaftMsg>("raft") {
            Some(raft) => match raft
                .call(RaftMsg::Status, Some(Duration::from_secs(2)))
                .await
            {
                Ok(ractor::rpc::CallResult::Success(s)) => Some(s),
                _ => None,
            },
            None => None,
        };
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        match raft {
            Some(s) => {
                self.raft_term.set(to_i64(s.term));
                self.raft_commit_index.set(to_i64(s.commit));
                self.raft_applied_index.set(to_i64(s.applied));
                self.raft_is_leader.set(i64::from(s.is_leader));
                self.raft_voters.set(s.voters.len() as i64);
            }
            None => {
                self.raft_is_leader.set(0);
            }
        }
        let Some(ctx) = manager else {
            return;
        };
        let (pending, rollouts) = {
            let guard = ctx.sm.read();
            let state = &guard.0;
            let pending = state
                .tasks
                .values()
                .filter(|t| {
                    t.desired_state == TaskState::Running && t.status.state <= TaskState::Pending
                })
                .count();
            let mut rollouts = [0i64; ROLLOUT_STATES.len()];
            for service in state.services.values() {
                if let Some(status) = &service.update_status {
                    if let Some(i) = ROLLOUT_STATES.iter().position(|s| *s == status.state) {
                        rollouts[i] += 1;
                    }
                }
            }
            (pending, rollouts)
        };
        self.scheduler_pending.set(pending as i64);
        for (state, count) in ROLLOUT_STATES.iter().zip(rollouts) {
            let label = RolloutLabel {
                state: state.as_str(),
            };
            self.rollouts.get_or_create(&label).set(count);
        }
    }

    /// One scrape: the gauges refreshed, then everything encoded, in
    /// OpenMetrics if the scraper asks for it, else in Prometheus's classic
    /// text format (0.0.4).
    pub async fn scrape(&self, rt: &Runtime, format: Format) -> Result<String, std::fmt::Error> {
        self.scrapes.inc();
        self.refresh(rt).await;
        let text = self.encode()?;
        Ok(match format {
            Format::OpenMetrics => text,
            Format::Classic => classic(&text),
        })
    }
}
