//! Global mode as a pure plan: one task on every eligible node (ready,
//! active, the service's driver, its constraints). Slots are nodes: a global
//! task has slot 0 and is made for its node; the scheduler still checks it
//! fits there (resources, ports) before the dispatcher sends it.
//!
//! A node that stops being eligible (down, drained, removed, no longer
//! matching) has its task shut down and not replaced elsewhere. The restart
//! policy applies per node. A spec change is rolled out here, node by node,
//! at most `UpdateConfig.Parallelism` nodes at once (the updater's slots are
//! replica numbers, so it leaves global services to this plan).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::replicated::gave_up;
use super::restart::{decide, SlotDecision};
use super::Plan;
use crate::command::TaskUpdate;
use crate::limits::MAX_TASKS_PER_PASS;
use crate::model::{id_from, Availability, Node, NodeState, Service, Task, TaskState};
use crate::rules::placement::{node_matches, Constraint};
use crate::state::ClusterState;

/// Whether `svc` wants a task on `node`.
pub fn eligible(svc: &Service, constraints: &[Constraint], node: &Node) -> bool {
    node.state == NodeState::Ready
        && node.availability == Availability::Active
        && node.has_driver(&svc.spec.task_template.driver)
        && node_matches(constraints, node)
}

fn new_task(
    rng: &mut dyn RngCore,
    svc: &Service,
    node: &str,
    history: Vec<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Task {
    let mut t = Task::for_slot(id_from(rng), svc, 0, history, TaskState::Running, now);
    t.node_id = Some(node.to_string());
    t
}

/// `job`: a global job, whose node is done once its task of the current
/// spec completed.
pub fn plan(
    state: &ClusterState,
    service_id: &str,
    now: DateTime<Utc>,
    job: bool,
    rng: &mut dyn RngCore,
) -> Plan {
    let mut plan = Plan::default();
    let Some(svc) = state.services.get(service_id) else {
        return plan;
    };
    let template = &svc.spec.task_template;
    // `check` refused bad constraints before they reached the log.
    let constraints = Constraint::parse_all(&template.placement.constraints).unwrap_or_default();
    let mut by_node: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in state.tasks_of_service(service_id) {
        if let Some(n) = &t.node_id {
            by_node.entry(n.as_str()).or_default().push(t);
        }
    }
    for tasks in by_node.values_mut() {
        tasks.sort_by_key(|t| t.created_at);
    }
    let mut create = Vec::new();
    let mut updates = Vec::new();
    let full = |create: &Vec<Task>, updates: &Vec<TaskUpdate>| {
        create.len() + updates.len() >= MAX_TASKS_PER_PASS
    };
    // Nodes whose current task runs an older spec, and how many nodes are
    // still bringing a new one up (the rollout's in-flight count).
    let mut outdated: Vec<&Task> = Vec::new();
    let mut in_flight = 0u64;
    for node in state.nodes.values() {
        let tasks = by_node
            .get(node.id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if !eligible(svc, &constraints, node) {
            for t in tasks.iter().filter(|t| t.is_runnable()) {
                updates.push(TaskUpdate::Desired {
                    task_id: t.id.clone(),
                    state: TaskState::Shutdown,
                });
            }
            continue;
        }
        if full(&create, &updates) {
            plan.more = true;
            break;
        }
        if let Some(current) = tasks.iter().rev().find(|t| t.is_runnable()) {
            if current.spec != *template {
                outdated.push(current);
            } else if !current.is_up() {
                in_flight += 1;
            }
            continue;
        }
        if tasks
            .last()
            .is_some_and(|t| gave_up(t) && t.spec_version >= svc.version)
        {
            continue;
        }
        if job && super::job::completed(tasks, template) {
            continue;
        }
        let last = tasks
            .iter()
            .rev()
            .find(|t| t.desired_state <= TaskState::Running);
        match last {
            None => create.push(new_task(rng, svc, &node.id, Vec::new(), now)),
            Some(last) => match decide(&template.restart_policy, last, now) {
                SlotDecision::Restart {
                    history,
                    node_faults,
                } => {
                    updates.push(TaskUpdate::Desired {
                        task_id: last.id.clone(),
                        state: TaskState::Shutdown,
                    });
                    let mut next = new_task(rng, svc, &node.id, history, now);
                    next.node_faults = node_faults;
                    create.push(next);
                }
                SlotDecision::Wait(d) => {
                    plan.wake_in = Some(plan.wake_in.map_or(d, |r| r.min(d)));
                }
                SlotDecision::GiveUp => updates.push(TaskUpdate::Desired {
                    task_id: last.id.clone(),
                    state: TaskState::Shutdown,
                }),
            },
        }
    }
    // Tasks on nodes that left the swarm.
    for (node, tasks) in &by_node {
        if state.nodes.contains_key(*node) {
            continue;
        }
        for t in tasks.iter().filter(|t| t.is_runnable()) {
            updates.push(TaskUpdate::Desired {
                task_id: t.id.clone(),
                state: TaskState::Shutdown,
            });
        }
    }
    // The rollout: stop-first, `Parallelism` nodes at a time (0 = all).
    let parallelism = match svc.spec.update_config.parallelism {
        0 => u64::MAX,
        p => p,
    };
    let budget = parallelism.saturating_sub(in_flight);
    for old in outdated.into_iter().take(budget as usize) {
        if full(&create, &updates) {
            plan.more = true;
            break;
        }
        let Some(node) = &old.node_id else { continue };
        updates.push(TaskUpdate::Desired {
            task_id: old.id.clone(),
            state: TaskState::Shutdown,
        });
        create.push(new_task(rng, svc, node, Vec::new(), now));
    }
    plan.write(updates, create, now);
    plan
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use crate::command::Command;
    use crate::model::sample_node as node_record;
    use crate::model::{
        Availability, DriverInfo, NodeRole, NodeState, Service, ServiceMode, ServiceSpec,
    };
    use crate::plan::global::plan;
    use crate::state::ClusterState;

    fn world(constraints: &[&str]) -> ClusterState {
        let now = Utc::now();
        let mut spec = ServiceSpec {
            name: "agent".into(),
            labels: Default::default(),
            mode: ServiceMode::Global,
            task_template: Default::default(),
            endpoint: Default::default(),
            update_config: Default::default(),
            rollback_config: Default::default(),
        };
        spec.task_template.driver = "process".into();
        spec.task_template.placement.constraints =
            constraints.iter().map(|c| c.to_string()).collect();
        let mut state = ClusterState::default();
        state.services.insert(
            "s".into(),
            Service {
                id: "s".into(),
                spec,
                previous_spec: None,
                update_status: None,
                virtual_ips: Vec::new(),
                version: 1,
                created_at: now,
                updated_at: now,
            },
        );
        for (id, role) in [
            ("m", NodeRole::Manager),
            ("w1", NodeRole::Worker),
            ("w2", NodeRole::Worker),
        ] {
            let mut n = node_record(id, id, role);
            n.state = NodeState::Ready;
            n.drivers = vec![DriverInfo {
                name: "process".into(),
                version: "1".into(),
            }];
            state.nodes.insert(id.into(), n);
        }
        state
    }

    fn created_on(state: &ClusterState) -> Vec<String> {
        let p = plan(
            state,
            "s",
            Utc::now(),
            false,
            &mut crate::model::sample_rng(),
        );
        let mut nodes: Vec<String> = p
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::CreateTasks(t) => Some(t.clone()),
                _ => None,
            })
            .flatten()
            .filter_map(|t| t.node_id)
            .collect();
        nodes.sort();
        nodes
    }

    #[test]
    fn one_task_per_eligible_node() {
        assert_eq!(created_on(&world(&[])), ["m", "w1", "w2"]);
        assert_eq!(created_on(&world(&["node.role==worker"])), ["w1", "w2"]);
        let mut drained = world(&[]);
        if let Some(n) = drained.nodes.get_mut("w2") {
            n.availability = Availability::Drain;
        }
        assert_eq!(created_on(&drained), ["m", "w1"]);
    }
}
