//! A replicated service: one task per slot, the restart policy applied slot
//! by slot, tasks on lost nodes replaced, slots above the replica count
//! removed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::restart::{decide, SlotDecision};
use super::Plan;
use crate::command::TaskUpdate;
use crate::limits::MAX_TASKS_PER_PASS;
use crate::model::{id_from, Service, Task, TaskState};
use crate::state::ClusterState;

fn new_task(
    rng: &mut dyn RngCore,
    svc: &Service,
    slot: u64,
    history: Vec<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Task {
    Task::for_slot(id_from(rng), svc, slot, history, TaskState::Running, now)
}

/// One slot's tasks, oldest first. Most slots hold one task, which needs
/// no allocation of its own (a `Vec` per slot was a tenth of a pass over a
/// 100k-replica service).
#[derive(Default)]
enum SlotTasks<'a> {
    #[default]
    Empty,
    One([&'a Task; 1]),
    Many(Vec<&'a Task>),
}

impl<'a> SlotTasks<'a> {
    fn push(&mut self, t: &'a Task) {
        *self = match std::mem::take(self) {
            SlotTasks::Empty => SlotTasks::One([t]),
            SlotTasks::One([first]) => SlotTasks::Many(vec![first, t]),
            SlotTasks::Many(mut all) => {
                all.push(t);
                SlotTasks::Many(all)
            }
        };
    }

    fn sort(&mut self) {
        if let SlotTasks::Many(all) = self {
            all.sort_by_key(|t| t.created_at);
        }
    }

    fn as_slice(&self) -> &[&'a Task] {
        match self {
            SlotTasks::Empty => &[],
            SlotTasks::One(one) => one,
            SlotTasks::Many(all) => all,
        }
    }
}

/// A task on a node that is down, drained or removed is lost: its slot is
/// restarted elsewhere, and the old task is told to shut down should the
/// node return. The nodes that keep their tasks are put in a hash set once
/// a pass (a tree lookup per task was most of a pass over a 100k-task
/// service).
struct Lost<'a> {
    up: std::collections::HashSet<&'a str>,
}

impl<'a> Lost<'a> {
    fn new(state: &'a ClusterState) -> Self {
        let up = state
            .nodes
            .values()
            .filter(|n| {
                n.state != crate::model::NodeState::Down
                    && n.availability != crate::model::Availability::Drain
            })
            .map(|n| n.id.as_str())
            .collect();
        Lost { up }
    }

    fn on_down_node(&self, t: &Task) -> bool {
        t.node_id.as_deref().is_some_and(|n| !self.up.contains(n))
    }
}

/// A slot's newest task that ended by itself and that the restart policy
/// then shut down for good. (A restart or a move shuts the old task down in
/// the same entry that creates its successor, so that one is never newest;
/// a task a manager stopped ends as `Shutdown`, not by itself.)
pub(crate) fn gave_up(newest: &Task) -> bool {
    newest.desired_state == TaskState::Shutdown
        && matches!(
            newest.status.state,
            TaskState::Complete | TaskState::Failed | TaskState::Rejected
        )
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
    let replicas = svc.spec.replicas();
    // Slots 1..=replicas by index (a pass over a 100k-replica service is a
    // scan, not 100k tree inserts); slots above the count (a scale down) apart.
    let wanted = usize::try_from(replicas).unwrap_or(usize::MAX);
    let mut in_range: Vec<SlotTasks> = Vec::new();
    let mut above: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for t in state.tasks_of_service(service_id) {
        match usize::try_from(t.slot) {
            // Slot 0 is a global task's: not this plan's.
            Ok(0) => {}
            Ok(s) if s <= wanted => {
                if in_range.len() < s {
                    in_range.resize_with(s, SlotTasks::default);
                }
                in_range[s - 1].push(t);
            }
            _ => above.entry(t.slot).or_default().push(t),
        }
    }
    in_range.iter_mut().for_each(SlotTasks::sort);
    for tasks in above.values_mut() {
        tasks.sort_by_key(|t| t.created_at);
    }
    let lost = Lost::new(state);
    let mut create = Vec::new();
    let mut updates = Vec::new();
    let full = |create: &Vec<Task>, updates: &Vec<TaskUpdate>| {
        create.len() + updates.len() >= MAX_TASKS_PER_PASS
    };
    for slot in 1..=replicas {
        if full(&create, &updates) {
            plan.more = true;
            break;
        }
        let tasks = usize::try_from(slot - 1)
            .ok()
            .and_then(|i| in_range.get(i))
            .map(SlotTasks::as_slice)
            .unwrap_or(&[]);
        if tasks
            .iter()
            .any(|t| t.is_runnable() && !lost.on_down_node(t))
        {
            continue;
        }
        // Until the service changes: then, as docker's reconcile on a service
        // update does, the slot gets a new task.
        if tasks
            .last()
            .is_some_and(|t| gave_up(t) && t.spec_version >= svc.version)
        {
            continue;
        }
        // Moving a task off a lost node is not a restart: the policy does
        // not apply, and the attempts it counts stay as they were.
        if let Some(lost) = tasks
            .iter()
            .find(|t| t.is_runnable() && lost.on_down_node(t))
        {
            updates.push(TaskUpdate::Desired {
                task_id: lost.id.clone(),
                state: TaskState::Shutdown,
            });
            create.push(new_task(rng, svc, slot, lost.restart_history.clone(), now));
            continue;
        }
        let last = tasks
            .iter()
            .rev()
            .find(|t| t.desired_state <= TaskState::Running);
        match last {
            None => create.push(new_task(rng, svc, slot, Vec::new(), now)),
            Some(last) => match decide(&svc.spec.task_template.restart_policy, last, now) {
                SlotDecision::Restart {
                    history,
                    node_faults,
                } => {
                    updates.push(TaskUpdate::Desired {
                        task_id: last.id.clone(),
                        state: TaskState::Shutdown,
                    });
                    let mut next = new_task(rng, svc, slot, history, now);
                    next.node_faults = node_faults;
                    create.push(next);
                }
                SlotDecision::Wait(d) => {
                    plan.wake_in = Some(plan.wake_in.map_or(d, |r| r.min(d)));
                }
                // As docker shows it: the finished task is not wanted any more.
                SlotDecision::GiveUp => updates.push(TaskUpdate::Desired {
                    task_id: last.id.clone(),
                    state: TaskState::Shutdown,
                }),
            },
        }
    }
    // Scale down: slots above the replica count go away, highest first.
    'down: for tasks in above.values() {
        for t in tasks.iter().filter(|t| t.desired_state < TaskState::Remove) {
            if full(&create, &updates) {
                plan.more = true;
                break 'down;
            }
            updates.push(TaskUpdate::Desired {
                task_id: t.id.clone(),
                state: TaskState::Remove,
            });
        }
    }
    plan.write(updates, create, now);
    plan
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use crate::command::{Command, TaskUpdate};
    use crate::model::{
        sample_task, RestartCondition, Service, ServiceMode, ServiceSpec, TaskState,
    };
    use crate::plan::replicated::plan;
    use crate::state::ClusterState;

    fn state_with(condition: RestartCondition, task_state: TaskState) -> ClusterState {
        let now = Utc::now();
        let mut spec = ServiceSpec {
            name: "web".into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas: 1 },
            task_template: Default::default(),
            endpoint: Default::default(),
            update_config: Default::default(),
            rollback_config: Default::default(),
        };
        spec.task_template.restart_policy.condition = condition;
        spec.task_template.restart_policy.delay_ns = 0;
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
        state.tasks.insert("t".into(), sample_task(task_state, now));
        state
    }

    #[test]
    fn a_slot_the_policy_gave_up_on_shows_desired_shutdown_and_stays_down() {
        let mut state = state_with(RestartCondition::None, TaskState::Failed);
        let first = plan(&state, "s", Utc::now(), &mut crate::model::sample_rng());
        assert_eq!(
            first.commands,
            vec![Command::UpdateTasks {
                updates: vec![TaskUpdate::Desired {
                    task_id: "t".into(),
                    state: TaskState::Shutdown,
                }],
                at: match &first.commands[0] {
                    Command::UpdateTasks { at, .. } => *at,
                    _ => Utc::now(),
                },
            }]
        );
        if let Some(t) = state.tasks.get_mut("t") {
            t.desired_state = TaskState::Shutdown;
        }
        assert!(
            plan(&state, "s", Utc::now(), &mut crate::model::sample_rng())
                .commands
                .is_empty()
        );
        // A change to the service (a scale, an update) brings the slot back.
        if let Some(svc) = state.services.get_mut("s") {
            svc.version = 2;
        }
        assert!(
            plan(&state, "s", Utc::now(), &mut crate::model::sample_rng())
                .commands
                .iter()
                .any(|c| matches!(c, Command::CreateTasks(t) if t.len() == 1))
        );
    }

    #[test]
    fn a_restarted_slot_gets_a_new_task() {
        let state = state_with(RestartCondition::Any, TaskState::Failed);
        let p = plan(&state, "s", Utc::now(), &mut crate::model::sample_rng());
        assert!(p
            .commands
            .iter()
            .any(|c| matches!(c, Command::CreateTasks(t) if t.len() == 1)));
    }
}
