//! Replicated jobs as a pure plan: `TotalCompletions` slots, each done once
//! a task of the current spec completed, at most `MaxConcurrent` running at
//! once. A task that fails is restarted as the restart policy says; one that
//! succeeds is never restarted. A new task template (an update, `--force`)
//! runs the job again, as docker's job iteration does.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::replicated::gave_up;
use super::restart::{decide, SlotDecision};
use super::Plan;
use crate::command::TaskUpdate;
use crate::limits::MAX_TASKS_PER_PASS;
use crate::model::{id_from, ServiceMode, Task, TaskState, TaskTemplate};
use crate::state::ClusterState;

/// A slot (or a global job's node) whose task of `template` completed.
pub fn completed(tasks: &[&Task], template: &TaskTemplate) -> bool {
    tasks
        .iter()
        .any(|t| t.status.state == TaskState::Complete && t.spec == *template)
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
    let ServiceMode::ReplicatedJob {
        max_concurrent,
        total_completions,
    } = svc.spec.mode
    else {
        return plan;
    };
    let template = &svc.spec.task_template;
    let mut slots: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for t in state.tasks_of_service(service_id) {
        slots.entry(t.slot).or_default().push(t);
    }
    for tasks in slots.values_mut() {
        tasks.sort_by_key(|t| t.created_at);
    }
    let mut create = Vec::new();
    let mut updates = Vec::new();
    // Tasks of an older template are not this iteration's: they stop.
    for t in slots.values().flatten() {
        if t.is_runnable() && t.spec != *template {
            updates.push(TaskUpdate::Desired {
                task_id: t.id.clone(),
                state: TaskState::Shutdown,
            });
        }
    }
    let mut active = slots
        .values()
        .flatten()
        .filter(|t| t.is_runnable() && t.spec == *template)
        .count() as u64;
    for slot in 1..=total_completions {
        if active >= max_concurrent.max(1) {
            break;
        }
        if create.len() + updates.len() >= MAX_TASKS_PER_PASS {
            plan.more = true;
            break;
        }
        let tasks: Vec<&Task> = slots
            .get(&slot)
            .map(|l| l.iter().copied().filter(|t| t.spec == *template).collect())
            .unwrap_or_default();
        if completed(&tasks, template) || tasks.iter().any(|t| t.is_runnable()) {
            continue;
        }
        if tasks.last().is_some_and(|t| gave_up(t)) {
            continue;
        }
        let last = tasks
            .iter()
            .rev()
            .find(|t| t.desired_state <= TaskState::Running);
        let next = match last {
            None => Some((Vec::new(), 0)),
            Some(last) => match decide(&template.restart_policy, last, now) {
                SlotDecision::Restart {
                    history,
                    node_faults,
                } => {
                    updates.push(TaskUpdate::Desired {
                        task_id: last.id.clone(),
                        state: TaskState::Shutdown,
                    });
                    Some((history, node_faults))
                }
                SlotDecision::Wait(d) => {
                    plan.wake_in = Some(plan.wake_in.map_or(d, |r| r.min(d)));
                    None
                }
                SlotDecision::GiveUp => {
                    updates.push(TaskUpdate::Desired {
                        task_id: last.id.clone(),
                        state: TaskState::Shutdown,
                    });
                    None
                }
            },
        };
        if let Some((history, node_faults)) = next {
            let mut task =
                Task::for_slot(id_from(rng), svc, slot, history, TaskState::Running, now);
            task.node_faults = node_faults;
            create.push(task);
            active += 1;
        }
    }
    plan.write(updates, create, now);
    plan
}
