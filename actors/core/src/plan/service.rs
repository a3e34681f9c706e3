//! The orchestrator's pass over one service, by the service's mode.

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::{global, job, rebalance, replicated, Plan};
use crate::model::ServiceMode;
use crate::state::ClusterState;

/// The orchestrator's pass over service `service_id`: by its mode, and for a
/// replicated service that needs nothing else, a rebalancing move.
pub fn plan(
    state: &ClusterState,
    service_id: &str,
    now: DateTime<Utc>,
    rng: &mut dyn RngCore,
) -> Plan {
    match state.services.get(service_id).map(|s| &s.spec.mode) {
        Some(ServiceMode::Global) => global::plan(state, service_id, now, false, rng),
        Some(ServiceMode::GlobalJob) => global::plan(state, service_id, now, true, rng),
        Some(ServiceMode::ReplicatedJob { .. }) => job::plan(state, service_id, now, rng),
        _ => {
            let p = replicated::plan(state, service_id, now, rng);
            // Moves only once the service is where its spec wants it.
            if p.commands.is_empty() && p.wake_in.is_none() && !p.more {
                rebalance::plan(state, service_id, now, rng)
            } else {
                p
            }
        }
    }
}
