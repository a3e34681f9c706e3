//! The rebalancer (beyond Swarm: moby/moby#24103, swarmkit#310): a pure
//! plan that, once a replicated service has converged, moves one task at a
//! time from its most loaded eligible node towards the least loaded one.
//!
//! The rule: only when rebalancing is on (the cluster's `Rebalance`,
//! overridden by the service label `com.shoal.rebalance=on|off`), never
//! during a rollout, only when every slot has exactly one task and it is up,
//! only when the busiest and the idlest eligible node differ by more than
//! one task of the service, and at most one move per service per interval
//! (`UpdateConfig.Delay`, at least `MIN_INTERVAL`, counted from the
//! service's newest task). A move is start-first: the slot gets a second
//! task, which the scheduler places on a node with the fewest tasks of the
//! service; the old one is told to stop only once the new one is up, so
//! never fewer tasks run than the service wants.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::global::eligible;
use super::Plan;
use crate::command::{Command, TaskUpdate};
use crate::model::{id_from, Service, ServiceMode, Task, TaskState};
use crate::rules::placement::Constraint;
use crate::state::ClusterState;

/// The service label that overrides the cluster's setting.
pub const LABEL: &str = "com.shoal.rebalance";
/// The shortest time between two moves of one service.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Whether `svc` is to be rebalanced.
pub fn enabled(state: &ClusterState, svc: &Service) -> bool {
    match svc.spec.labels.get(LABEL).map(String::as_str) {
        Some("on" | "true") => true,
        Some("off" | "false") => false,
        _ => state.cluster.as_ref().is_some_and(|c| c.spec.rebalance),
    }
}

pub fn plan(
    state: &ClusterState,
    service_id: &str,
    now: DateTime<Utc>,
    rng: &mut dyn RngCore,
) -> Plan {
    let mut plan = Plan::default();
    let Some(svc) = state.services.get(service_id) else {
        return plan;
    };
    let ServiceMode::Replicated { replicas } = svc.spec.mode else {
        return plan;
    };
    if !enabled(state, svc)
        || svc
            .update_status
            .as_ref()
            .is_some_and(|u| u.state.in_progress())
    {
        return plan;
    }
    let mut slots: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    let mut newest: Option<DateTime<Utc>> = None;
    for t in state.tasks_of_service(service_id) {
        newest = newest.max(Some(t.created_at));
        if t.is_runnable() {
            slots.entry(t.slot).or_default().push(t);
        }
    }
    // A move in flight: its old task stops once the new one is up.
    let mut moving = false;
    let mut updates = Vec::new();
    for tasks in slots.values().filter(|l| l.len() > 1) {
        let Some(new) = tasks.iter().max_by_key(|t| t.created_at) else {
            continue;
        };
        if new.is_up() {
            for old in tasks.iter().filter(|t| t.id != new.id) {
                updates.push(TaskUpdate::Desired {
                    task_id: old.id.clone(),
                    state: TaskState::Shutdown,
                });
            }
        } else {
            moving = true;
        }
    }
    if !updates.is_empty() {
        plan.commands
            .push(Command::UpdateTasks { updates, at: now });
        return plan;
    }
    let settled =
        slots.len() as u64 == replicas && slots.values().all(|l| l.len() == 1 && l[0].is_up());
    if moving || !settled {
        return plan;
    }
    let interval = Duration::from_nanos(svc.spec.update_config.delay_ns).max(MIN_INTERVAL);
    if let Some(newest) = newest {
        let since = (now - newest).to_std().unwrap_or_default();
        if since < interval {
            plan.wake_in = Some(interval - since);
            return plan;
        }
    }
    let constraints =
        Constraint::parse_all(&svc.spec.task_template.placement.constraints).unwrap_or_default();
    let mut load: BTreeMap<&str, Vec<&Task>> = state
        .nodes
        .values()
        .filter(|n| eligible(svc, &constraints, n))
        .map(|n| (n.id.as_str(), Vec::new()))
        .collect();
    for t in slots.values().flatten() {
        if let Some(list) = t.node_id.as_deref().and_then(|n| load.get_mut(n)) {
            list.push(t);
        }
    }
    let (Some(busiest), Some(idlest)) = (
        load.values().max_by_key(|l| l.len()),
        load.values().min_by_key(|l| l.len()),
    ) else {
        return plan;
    };
    if busiest.len() <= idlest.len() + 1 {
        return plan;
    }
    let max = svc.spec.task_template.placement.max_replicas;
    if max > 0 && idlest.len() as u64 >= max {
        return plan;
    }
    if let Some(mover) = busiest.iter().max_by_key(|t| t.slot) {
        let mut task = Task::for_slot(
            id_from(rng),
            svc,
            mover.slot,
            mover.restart_history.clone(),
            TaskState::Running,
            now,
        );
        task.status.message = "rebalancing".into();
        plan.commands.push(Command::CreateTasks(vec![task]));
    }
    plan
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use crate::command::Command;
    use crate::model::sample_node as node_record;
    use crate::model::{
        Cluster, ClusterSpec, DriverInfo, JoinTokens, NodeRole, NodeState, Service, ServiceMode,
        ServiceSpec, Task, TaskState,
    };
    use crate::plan::rebalance::plan;
    use crate::state::ClusterState;

    fn world(rebalance: bool) -> ClusterState {
        let now = Utc::now() - Duration::seconds(60);
        let mut state = ClusterState {
            cluster: Some(Cluster {
                id: "c".into(),
                spec: ClusterSpec {
                    rebalance,
                    ..ClusterSpec::default()
                },
                join_tokens: JoinTokens {
                    worker: String::new(),
                    manager: String::new(),
                },
                ca_cert_pem: String::new(),
                removed_nodes: Vec::new(),
                unlock_key: None,
                created_at: now,
                updated_at: now,
                version: 1,
                format: 0,
            }),
            ..ClusterState::default()
        };
        let mut spec = ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas: 4 },
            task_template: Default::default(),
            endpoint: Default::default(),
            update_config: Default::default(),
            rollback_config: Default::default(),
        };
        spec.task_template.driver = "process".into();
        let svc = Service {
            id: "s".into(),
            spec,
            previous_spec: None,
            update_status: None,
            virtual_ips: Vec::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        for id in ["a", "b"] {
            let mut n = node_record(id, id, NodeRole::Worker);
            n.state = NodeState::Ready;
            n.drivers = vec![DriverInfo {
                name: "process".into(),
                version: "1".into(),
            }];
            state.nodes.insert(id.into(), n);
        }
        for slot in 1..=4 {
            let mut t = Task::for_slot(
                crate::model::id_from(&mut crate::model::sample_rng()),
                &svc,
                slot,
                Vec::new(),
                TaskState::Running,
                now,
            );
            t.id = format!("t{slot}");
            t.node_id = Some("a".into());
            t.status.state = TaskState::Running;
            state.tasks.insert(t.id.clone(), t);
        }
        state.services.insert("s".into(), svc);
        state
    }

    fn moves(state: &ClusterState) -> Vec<u64> {
        plan(state, "s", Utc::now(), &mut crate::model::sample_rng())
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::CreateTasks(t) => Some(t.iter().map(|t| t.slot).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn moves_one_task_at_a_time_only_when_on() {
        assert!(moves(&world(false)).is_empty(), "off by default");
        assert_eq!(moves(&world(true)), [4]);
        // A service label overrides the cluster.
        let mut off = world(true);
        if let Some(s) = off.services.get_mut("s") {
            s.spec.labels.insert(super::LABEL.into(), "off".into());
        }
        assert!(moves(&off).is_empty());
    }

    #[test]
    fn the_old_task_stops_only_once_the_new_one_is_up() {
        let mut state = world(true);
        let svc = state.services["s"].clone();
        let mut new = Task::for_slot(
            crate::model::id_from(&mut crate::model::sample_rng()),
            &svc,
            4,
            Vec::new(),
            TaskState::Running,
            Utc::now(),
        );
        new.id = "n4".into();
        new.node_id = Some("b".into());
        new.status.state = TaskState::Starting;
        state.tasks.insert("n4".into(), new);
        assert!(
            plan(&state, "s", Utc::now(), &mut crate::model::sample_rng())
                .commands
                .is_empty()
        );
        if let Some(t) = state.tasks.get_mut("n4") {
            t.status.state = TaskState::Running;
        }
        let p = plan(&state, "s", Utc::now(), &mut crate::model::sample_rng());
        assert!(
            matches!(&p.commands[..], [Command::UpdateTasks { updates, .. }] if updates.len() == 1)
        );
    }
}
