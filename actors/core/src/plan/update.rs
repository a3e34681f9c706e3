//! The rolling update of one service as a pure step: from the replicated
//! state and the time, the writes that move the rollout on and when to look
//! again. Follows swarmkit's `manager/orchestrator/update/updater.go`.
//!
//! Nothing is remembered between steps: which slots are done, which are in
//! flight and how many new tasks failed all come from the tasks and the
//! service's `UpdateStatus`, so a new leader's updater takes over where the
//! old one stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::Plan;
use crate::command::{Command, TaskUpdate};
use crate::limits::MAX_TASKS_PER_PASS;
use crate::model::{
    id_from, Availability, FailureAction, NodeState, Task, TaskState, TaskTemplate, UpdateConfig,
    UpdateOrder, UpdateState, UpdateStatus,
};
use crate::state::ClusterState;

/// Where one slot stands against the service's current task template.
#[derive(Debug)]
enum Slot<'a> {
    /// No task wants to run: the orchestrator fills it (with the new spec).
    Empty,
    /// Its tasks run an older spec.
    Dirty { old: Vec<&'a Task> },
    /// A new task is on its way. `old` still wants to run (start-first);
    /// `lingering` was told to stop and may still be running.
    Starting {
        new: &'a Task,
        old: Vec<&'a Task>,
        lingering: bool,
    },
    /// The new task is running (and healthy, if it has a health check).
    /// `settling`: an old task still wants to run or has not stopped yet.
    Up {
        new: &'a Task,
        old: Vec<&'a Task>,
        settling: bool,
    },
}

fn node_is_up(state: &ClusterState, t: &Task) -> bool {
    t.node_id
        .as_ref()
        .and_then(|n| state.nodes.get(n))
        .is_some_and(|n| n.state != NodeState::Down && n.availability != Availability::Drain)
}

/// Told to stop but perhaps still running: assigned to a node that is up,
/// and not reported finished yet.
fn lingers(state: &ClusterState, t: &Task) -> bool {
    t.desired_state > TaskState::Running
        && t.status.state >= TaskState::Assigned
        && !t.status.state.is_terminal()
        && node_is_up(state, t)
}

fn classify<'a>(state: &ClusterState, tasks: &[&'a Task], target: &TaskTemplate) -> Slot<'a> {
    let current: Vec<&Task> = tasks.iter().copied().filter(|t| t.is_runnable()).collect();
    let (new, old): (Vec<&Task>, Vec<&Task>) = current.into_iter().partition(|t| t.spec == *target);
    let Some(new) = new.into_iter().max_by_key(|t| t.created_at) else {
        return if old.is_empty() {
            Slot::Empty
        } else {
            Slot::Dirty { old }
        };
    };
    let lingering = tasks.iter().any(|t| lingers(state, t));
    if new.is_up() && new.desired_state == TaskState::Running {
        let settling = lingering || !old.is_empty();
        Slot::Up { new, old, settling }
    } else {
        Slot::Starting {
            new,
            old,
            lingering,
        }
    }
}

/// When a new task counts as up: when it started, or (with a health check)
/// when it was last reported, which is when it turned healthy.
fn up_since(t: &Task) -> DateTime<Utc> {
    match t.status.health {
        Some(_) => t.status.timestamp,
        None => t.started_at.unwrap_or(t.status.timestamp),
    }
}

fn after(now: DateTime<Utc>, at: DateTime<Utc>, wait: Duration) -> Option<Duration> {
    let elapsed = crate::clock::elapsed(now, at);
    wait.checked_sub(elapsed).filter(|d| !d.is_zero())
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The new tasks of this rollout that ended by themselves within the
/// monitor period of starting (or before they started): swarmkit's
/// "failure or early termination". The last of them comes last.
fn failures<'a>(
    tasks: &[&'a Task],
    target: &TaskTemplate,
    since: DateTime<Utc>,
    monitor: Duration,
) -> Vec<&'a Task> {
    let mut failed: Vec<&Task> = tasks
        .iter()
        .copied()
        .filter(|t| t.spec == *target && t.created_at >= since)
        .filter(|t| {
            matches!(
                t.status.state,
                TaskState::Failed | TaskState::Rejected | TaskState::Complete
            )
        })
        .filter(|t| match t.started_at {
            None => true,
            Some(started) => (t.status.timestamp - started)
                .to_std()
                .map_or(true, |ran| ran <= monitor),
        })
        .collect();
    failed.sort_by(|a, b| (a.status.timestamp, &a.id).cmp(&(b.status.timestamp, &b.id)));
    failed
}

/// `failures` out of `slots` is more than the ratio allows.
fn too_many(failures: usize, slots: u64, config: &UpdateConfig) -> bool {
    slots > 0
        && (failures as u128) * 1_000_000
            > u128::from(config.max_failure_ratio_ppm) * u128::from(slots)
}

fn status(state: UpdateState, started_at: Option<DateTime<Utc>>, message: String) -> UpdateStatus {
    UpdateStatus {
        state,
        started_at,
        completed_at: None,
        message,
    }
}

/// One step of the rollout of `service_id`.
pub fn step(
    state: &ClusterState,
    service_id: &str,
    now: DateTime<Utc>,
    rng: &mut dyn RngCore,
) -> Plan {
    let mut plan = Plan::default();
    let Some(svc) = state.services.get(service_id) else {
        return plan;
    };
    let target = &svc.spec.task_template;
    let replicas = svc.spec.replicas();
    let all: Vec<&Task> = state.tasks_of_service(service_id).collect();
    let mut by_slot: BTreeMap<u64, Vec<&Task>> = BTreeMap::new();
    for t in &all {
        by_slot.entry(t.slot).or_default().push(t);
    }
    let slots: Vec<(u64, Slot)> = (1..=replicas)
        .map(|n| {
            let tasks = by_slot.get(&n).map(Vec::as_slice).unwrap_or(&[]);
            (n, classify(state, tasks, target))
        })
        .collect();

    let mut updates: Vec<TaskUpdate> = Vec::new();
    let mut creates: Vec<Task> = Vec::new();
    let room = |u: &Vec<TaskUpdate>, c: &Vec<Task>| u.len() + c.len() < MAX_TASKS_PER_PASS;

    // Whatever the rollout's state (a paused one too, as swarmkit's slot
    // updates finish after a pause): a stop-first task starts once its
    // slot's old task is gone, and a start-first slot's old task stops once
    // the new one is up.
    let mut more = false;
    for (_, slot) in &slots {
        if !room(&updates, &creates) {
            more = true;
            break;
        }
        match slot {
            Slot::Starting {
                new,
                old,
                lingering,
            } if new.desired_state < TaskState::Running && old.is_empty() && !lingering => {
                updates.push(TaskUpdate::Desired {
                    task_id: new.id.clone(),
                    state: TaskState::Running,
                });
            }
            Slot::Up { old, .. } if !old.is_empty() => {
                for t in old {
                    updates.push(TaskUpdate::Desired {
                        task_id: t.id.clone(),
                        state: TaskState::Shutdown,
                    });
                }
            }
            _ => {}
        }
    }
    if more {
        plan.wake_in = Some(Duration::ZERO);
    }

    let current = svc.update_status.as_ref();
    let rolling_back = current.is_some_and(|s| s.state == UpdateState::RollbackStarted);
    let config = if rolling_back {
        &svc.spec.rollback_config
    } else {
        &svc.spec.update_config
    };
    let monitor = Duration::from_nanos(config.monitor_ns);
    let delay = Duration::from_nanos(config.delay_ns);
    let mut new_status: Option<UpdateStatus> = None;
    let mut rollback: Option<String> = None;

    let dirty: Vec<(u64, &Vec<&Task>)> = slots
        .iter()
        .filter_map(|(n, s)| match s {
            Slot::Dirty { old } => Some((*n, old)),
            _ => None,
        })
        .collect();
    let started_at = match current {
        Some(s) if s.state.in_progress() => s.started_at.unwrap_or(svc.updated_at),
        _ => now,
    };
    // A slot whose new task of this rollout ended by itself was tried: as
    // swarmkit's slot updates, the rollout does not wait for its restarts
    // (the failure counts, and the failure action decides).
    let tried = |n: u64| -> Option<DateTime<Utc>> {
        by_slot
            .get(&n)?
            .iter()
            .filter(|t| t.spec == *target && t.created_at >= started_at)
            .filter(|t| t.status.state.is_terminal() && t.status.state != TaskState::Shutdown)
            .map(|t| t.status.timestamp)
            .max()
    };
    let in_flight = slots
        .iter()
        .filter(|(n, s)| match s {
            Slot::Starting { .. } => tried(*n).is_none(),
            Slot::Up { settling, .. } => *settling,
            _ => false,
        })
        .count();
    let paused = current.is_some_and(|s| {
        !s.state.in_progress()
            && !matches!(
                s.state,
                UpdateState::Completed | UpdateState::RollbackCompleted
            )
    });

    // Slots this rollout replaced (or tried to), and when each was done.
    let done: Vec<DateTime<Utc>> = slots
        .iter()
        .filter_map(|(n, s)| match s {
            Slot::Up { new, .. } if new.created_at >= started_at => Some(up_since(new)),
            Slot::Starting { .. } => tried(*n),
            _ => None,
        })
        .collect();

    let in_progress = current.is_some_and(|s| s.state.in_progress());
    if paused {
        // Paused until the next `service update` (or rollback).
    } else if !in_progress && dirty.is_empty() {
        // Nothing runs an older spec: no rollout to start (a new service's
        // first tasks, a restart, a scale-up are the orchestrator's).
    } else if dirty.is_empty() && in_flight == 0 {
        if let Some(st) = current.filter(|s| s.state.in_progress()) {
            // Every slot is new: watch the last ones for one more monitor
            // period, then the rollout is complete.
            let failed = failures(&all, target, started_at, monitor);
            let watching = done.iter().filter_map(|at| after(now, *at, monitor)).max();
            if config.failure_action != FailureAction::Continue
                && too_many(failed.len(), replicas, config)
            {
                apply_failure(
                    st.state,
                    config,
                    failed,
                    started_at,
                    &mut new_status,
                    &mut rollback,
                );
            } else if let Some(wait) = watching {
                plan.wake_in = earliest(plan.wake_in, Some(wait));
            } else {
                let (state, message) = if st.state == UpdateState::RollbackStarted {
                    (UpdateState::RollbackCompleted, "rollback completed")
                } else {
                    (UpdateState::Completed, "update completed")
                };
                new_status = Some(UpdateStatus {
                    completed_at: Some(now),
                    ..status(state, Some(started_at), message.into())
                });
            }
        }
    } else {
        if !in_progress {
            new_status = Some(status(
                UpdateState::Updating,
                Some(now),
                "update in progress".into(),
            ));
        }
        let failed = if in_progress {
            failures(&all, target, started_at, monitor)
        } else {
            Vec::new()
        };
        if config.failure_action != FailureAction::Continue
            && too_many(failed.len(), replicas, config)
        {
            let st = current.map_or(UpdateState::Updating, |s| s.state);
            apply_failure(
                st,
                config,
                failed,
                started_at,
                &mut new_status,
                &mut rollback,
            );
        } else {
            // swarmkit runs `Parallelism` workers, each of which waits
            // `Delay` after its slot is up: a slot up less than `Delay` ago
            // still holds its worker.
            let cooling: Vec<Duration> = done
                .iter()
                .filter_map(|at| after(now, *at, delay))
                .collect();
            plan.wake_in = earliest(plan.wake_in, cooling.iter().min().copied());
            let busy = in_flight + cooling.len();
            let free = match config.parallelism {
                0 => usize::MAX,
                p => usize::try_from(p)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(busy),
            };
            let restart_delay = Duration::from_nanos(target.restart_policy.delay_ns);
            let mut taken = 0;
            for (n, old) in &dirty {
                if taken >= free {
                    break;
                }
                if !room(&updates, &creates) {
                    plan.wake_in = Some(Duration::ZERO);
                    break;
                }
                // A new task of this slot just failed (start-first keeps the
                // old one running, so the orchestrator does not restart the
                // slot): try again after the restart delay.
                let tasks = by_slot.get(n).map(Vec::as_slice).unwrap_or(&[]);
                let cool = tasks
                    .iter()
                    .filter(|t| t.spec == *target && t.status.state.is_terminal())
                    .filter_map(|t| after(now, t.status.timestamp, restart_delay))
                    .max();
                if let Some(wait) = cool {
                    plan.wake_in = earliest(plan.wake_in, Some(wait));
                    continue;
                }
                taken += 1;
                match config.order {
                    UpdateOrder::StopFirst => {
                        for t in old.iter() {
                            updates.push(TaskUpdate::Desired {
                                task_id: t.id.clone(),
                                state: TaskState::Shutdown,
                            });
                        }
                        creates.push(Task::for_slot(
                            id_from(rng),
                            svc,
                            *n,
                            Vec::new(),
                            TaskState::Ready,
                            now,
                        ));
                    }
                    UpdateOrder::StartFirst => {
                        creates.push(Task::for_slot(
                            id_from(rng),
                            svc,
                            *n,
                            Vec::new(),
                            TaskState::Running,
                            now,
                        ));
                    }
                }
            }
        }
    }

    if let Some(message) = rollback {
        // The rollback replaces the spec: this step's task writes were
        // made for the spec being left, so only the rollback goes in.
        plan.commands.push(Command::RollbackService {
            service: svc.id.clone(),
            expected_version: Some(svc.version),
            manual: false,
            message,
            at: now,
        });
        plan.wake_in = None;
        return plan;
    }
    if updates.is_empty() && creates.is_empty() && new_status.is_none() {
        return plan;
    }
    plan.commands.push(Command::UpdateProgress {
        service_id: svc.id.clone(),
        expected_version: svc.version,
        status: new_status,
        at: now,
    });
    plan.write(updates, creates, now);
    plan
}

/// The failure action, once too many new tasks failed.
fn apply_failure(
    state: UpdateState,
    config: &UpdateConfig,
    failed: Vec<&Task>,
    started_at: DateTime<Utc>,
    new_status: &mut Option<UpdateStatus>,
    rollback: &mut Option<String>,
) {
    let task = failed.last().map(|t| t.id.as_str()).unwrap_or_default();
    let rolling_back = state == UpdateState::RollbackStarted;
    match config.failure_action {
        FailureAction::Continue => {}
        // A rollback is never rolled back: it pauses instead.
        FailureAction::Rollback if !rolling_back => {
            *rollback = Some(format!(
                "update rolled back due to failure or early termination of task {task}"
            ));
        }
        FailureAction::Pause | FailureAction::Rollback => {
            let (state, what) = if rolling_back {
                (UpdateState::RollbackPaused, "rollback")
            } else {
                (UpdateState::Paused, "update")
            };
            *new_status = Some(status(
                state,
                Some(started_at),
                format!("{what} paused due to failure or early termination of task {task}"),
            ));
        }
    }
}

/// Whether the service needs an updater: a rollout under way, a task on
/// an older spec, or a task waiting (desired READY) for its slot.
pub fn wants_updater(state: &ClusterState, service_id: &str) -> bool {
    let Some(svc) = state.services.get(service_id) else {
        return false;
    };
    rolling(svc) || state.tasks_of_service(service_id).any(|t| behind(svc, t))
}

fn rolling(svc: &crate::model::Service) -> bool {
    svc.update_status
        .as_ref()
        .is_some_and(|s| s.state.in_progress())
}

/// The task runs an older spec than its service's, or waits (desired
/// READY) for its slot.
fn behind(svc: &crate::model::Service, t: &crate::model::Task) -> bool {
    (t.is_runnable() && t.spec != svc.spec.task_template) || t.desired_state == TaskState::Ready
}

/// Whether task `task_id` alone makes a rollout of `service_id` due: it
/// runs an older spec, or waits (desired READY) for its slot.
pub fn task_wants_updater(state: &ClusterState, service_id: &str, task_id: &str) -> bool {
    let (Some(svc), Some(t)) = (state.services.get(service_id), state.tasks.get(task_id)) else {
        return false;
    };
    rolling(svc) || behind(svc, t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Node, NodeRole, Service, ServiceMode, ServiceSpec, TaskStatus, UpdateConfig, UpdateStatus,
    };

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    fn template(image: &str) -> TaskTemplate {
        TaskTemplate {
            image: image.into(),
            ..TaskTemplate::default()
        }
    }

    /// A service at `v2` whose `replicas` slots all run `v1` on a ready node.
    fn world(replicas: u64, config: UpdateConfig) -> ClusterState {
        let mut s = ClusterState::default();
        s.nodes.insert(
            "n1".into(),
            Node {
                id: "n1".into(),
                raft_id: 0,
                hostname: "h".into(),
                role: NodeRole::Worker,
                availability: Availability::Active,
                labels: Default::default(),
                state: NodeState::Ready,
                status_message: String::new(),
                clock_skew_ms: None,
                addr: String::new(),
                drivers: Vec::new(),
                sandbox_error: None,
                machine: Default::default(),
                cert_generation: 0,
                created_at: at(0),
                updated_at: at(0),
                version: 1,
                max_format: crate::codec::FORMAT,
            },
        );
        let svc = Service {
            id: "s".into(),
            spec: ServiceSpec {
                name: "web".into(),
                labels: Default::default(),
                mode: ServiceMode::Replicated { replicas },
                task_template: template("v2"),
                update_config: config,
                rollback_config: UpdateConfig::default(),
                endpoint: Default::default(),
            },
            previous_spec: None,
            update_status: None,
            virtual_ips: Vec::new(),
            version: 10,
            created_at: at(0),
            updated_at: at(0),
        };
        for slot in 1..=replicas {
            let mut t = Task::for_slot(
                crate::model::id_from(&mut crate::model::sample_rng()),
                &svc,
                slot,
                Vec::new(),
                TaskState::Running,
                at(0),
            );
            t.id = format!("old{slot}");
            t.spec = template("v1");
            t.node_id = Some("n1".into());
            t.status = TaskStatus::new(TaskState::Running, "started", Utc::now());
            t.started_at = Some(at(0));
            s.tasks.insert(t.id.clone(), t);
        }
        s.services.insert("s".into(), svc);
        s
    }

    fn updating(s: &mut ClusterState, since: i64) {
        s.services.get_mut("s").expect("svc").update_status = Some(UpdateStatus {
            state: UpdateState::Updating,
            started_at: Some(at(since)),
            completed_at: None,
            message: "update in progress".into(),
        });
    }

    /// A new (v2) task in `slot`, in `state`, created at `created`.
    fn new_task(s: &mut ClusterState, slot: u64, state: TaskState, created: i64) -> String {
        let svc = s.services["s"].clone();
        let mut t = Task::for_slot(
            crate::model::id_from(&mut crate::model::sample_rng()),
            &svc,
            slot,
            Vec::new(),
            TaskState::Running,
            at(created),
        );
        t.id = format!("new{slot}");
        t.node_id = Some("n1".into());
        t.status.state = state;
        t.status.timestamp = at(created + 1);
        if state >= TaskState::Running {
            t.started_at = Some(at(created + 1));
        }
        s.tasks.insert(t.id.clone(), t);
        if let Some(old) = s.tasks.get_mut(&format!("old{slot}")) {
            old.desired_state = TaskState::Shutdown;
            old.status.state = TaskState::Shutdown;
        }
        format!("new{slot}")
    }

    fn created(plan: &Plan) -> Vec<&Task> {
        plan.commands
            .iter()
            .filter_map(|c| match c {
                Command::CreateTasks(t) => Some(t.iter()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn desired(plan: &Plan) -> Vec<(String, TaskState)> {
        plan.commands
            .iter()
            .filter_map(|c| match c {
                Command::UpdateTasks { updates, .. } => Some(updates.iter()),
                _ => None,
            })
            .flatten()
            .filter_map(|u| match u {
                TaskUpdate::Desired { task_id, state } => Some((task_id.clone(), *state)),
                _ => None,
            })
            .collect()
    }

    fn new_status(plan: &Plan) -> Option<&UpdateStatus> {
        plan.commands.iter().find_map(|c| match c {
            Command::UpdateProgress { status, .. } => status.as_ref(),
            _ => None,
        })
    }

    #[test]
    fn the_first_step_starts_the_rollout_with_parallelism_slots() {
        let config = UpdateConfig {
            parallelism: 2,
            ..UpdateConfig::default()
        };
        let s = world(4, config);
        let plan = step(&s, "s", at(5), &mut crate::model::sample_rng());
        assert_eq!(
            new_status(&plan).map(|s| s.state),
            Some(UpdateState::Updating)
        );
        let made = created(&plan);
        assert_eq!(made.iter().map(|t| t.slot).collect::<Vec<_>>(), [1, 2]);
        // Stop-first: the new tasks wait (READY) for the old ones to stop.
        assert!(made.iter().all(|t| t.desired_state == TaskState::Ready));
        assert_eq!(
            desired(&plan),
            [
                ("old1".to_string(), TaskState::Shutdown),
                ("old2".to_string(), TaskState::Shutdown)
            ]
        );
        // Every write is guarded by the version the step was made from.
        assert!(matches!(
            plan.commands[0],
            Command::UpdateProgress {
                expected_version: 10,
                ..
            }
        ));
    }

    #[test]
    fn parallelism_zero_takes_every_slot_at_once() {
        let config = UpdateConfig {
            parallelism: 0,
            ..UpdateConfig::default()
        };
        assert_eq!(
            created(&step(
                &world(5, config),
                "s",
                at(5),
                &mut crate::model::sample_rng()
            ))
            .len(),
            5
        );
    }

    #[test]
    fn a_ready_task_starts_once_its_slot_s_old_task_has_stopped() {
        let mut s = world(1, UpdateConfig::default());
        updating(&mut s, 1);
        let id = new_task(&mut s, 1, TaskState::New, 1);
        s.tasks.get_mut(&id).expect("task").desired_state = TaskState::Ready;
        s.tasks.get_mut("old1").expect("task").status.state = TaskState::Running;
        assert!(
            desired(&step(&s, "s", at(3), &mut crate::model::sample_rng())).is_empty(),
            "old one still runs"
        );
        s.tasks.get_mut("old1").expect("task").status.state = TaskState::Shutdown;
        assert_eq!(
            desired(&step(&s, "s", at(3), &mut crate::model::sample_rng())),
            [(id, TaskState::Running)]
        );
    }

    #[test]
    fn a_slot_up_less_than_delay_ago_holds_its_worker() {
        let config = UpdateConfig {
            delay_ns: 10_000_000_000,
            monitor_ns: 0,
            ..UpdateConfig::default()
        };
        let mut s = world(2, config);
        updating(&mut s, 1);
        new_task(&mut s, 1, TaskState::Running, 1);
        let plan = step(&s, "s", at(5), &mut crate::model::sample_rng());
        assert!(created(&plan).is_empty());
        assert_eq!(plan.wake_in, Some(Duration::from_secs(7)));
        assert_eq!(
            created(&step(&s, "s", at(13), &mut crate::model::sample_rng())).len(),
            1
        );
    }

    #[test]
    fn the_rollout_completes_one_monitor_period_after_the_last_slot() {
        let config = UpdateConfig {
            monitor_ns: 5_000_000_000,
            ..UpdateConfig::default()
        };
        let mut s = world(1, config);
        updating(&mut s, 1);
        new_task(&mut s, 1, TaskState::Running, 1);
        let plan = step(&s, "s", at(4), &mut crate::model::sample_rng());
        assert!(new_status(&plan).is_none());
        assert_eq!(plan.wake_in, Some(Duration::from_secs(3)));
        let done = step(&s, "s", at(7), &mut crate::model::sample_rng());
        let st = new_status(&done).expect("status");
        assert_eq!(st.state, UpdateState::Completed);
        assert_eq!(st.message, "update completed");
        assert_eq!(st.completed_at, Some(at(7)));
    }

    #[test]
    fn a_new_task_failing_within_the_monitor_pauses_the_rollout() {
        let config = UpdateConfig {
            monitor_ns: 30_000_000_000,
            ..UpdateConfig::default()
        };
        let mut s = world(3, config);
        updating(&mut s, 1);
        let id = new_task(&mut s, 1, TaskState::Failed, 1);
        let plan = step(&s, "s", at(5), &mut crate::model::sample_rng());
        let st = new_status(&plan).expect("status");
        assert_eq!(st.state, UpdateState::Paused);
        assert_eq!(
            st.message,
            format!("update paused due to failure or early termination of task {id}")
        );
        assert!(created(&plan).is_empty(), "a paused rollout takes no slot");
        // Paused: nothing more until the next update.
        updating(&mut s, 1);
        s.services.get_mut("s").expect("svc").update_status = Some(st.clone());
        assert!(step(&s, "s", at(6), &mut crate::model::sample_rng())
            .commands
            .is_empty());
    }

    #[test]
    fn a_failure_within_the_ratio_is_tolerated() {
        let config = UpdateConfig {
            monitor_ns: 30_000_000_000,
            max_failure_ratio_ppm: 500_000,
            ..UpdateConfig::default()
        };
        let mut s = world(3, config);
        updating(&mut s, 1);
        new_task(&mut s, 1, TaskState::Failed, 1);
        // 1 of 3 is not more than a half: the rollout goes on with slot 2.
        let plan = step(&s, "s", at(5), &mut crate::model::sample_rng());
        assert!(new_status(&plan).is_none());
        assert_eq!(
            created(&plan).iter().map(|t| t.slot).collect::<Vec<_>>(),
            [2]
        );
    }

    #[test]
    fn failure_action_rollback_rolls_back_but_never_a_rollback() {
        let config = UpdateConfig {
            monitor_ns: 30_000_000_000,
            failure_action: FailureAction::Rollback,
            ..UpdateConfig::default()
        };
        let mut s = world(2, config.clone());
        updating(&mut s, 1);
        let id = new_task(&mut s, 1, TaskState::Rejected, 1);
        let plan = step(&s, "s", at(5), &mut crate::model::sample_rng());
        match &plan.commands[..] {
            [Command::RollbackService {
                manual: false,
                message,
                expected_version: Some(10),
                ..
            }] => assert_eq!(
                *message,
                format!("update rolled back due to failure or early termination of task {id}")
            ),
            other => panic!("expected a rollback, got {other:?}"),
        }
        // The same failure during a rollback pauses it instead.
        let svc = s.services.get_mut("s").expect("svc");
        svc.spec.rollback_config = config;
        svc.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackStarted,
            started_at: Some(at(1)),
            completed_at: None,
            message: "manually requested rollback".into(),
        });
        let st = new_status(&step(&s, "s", at(5), &mut crate::model::sample_rng()))
            .expect("status")
            .clone();
        assert_eq!(st.state, UpdateState::RollbackPaused);
        assert!(st.message.starts_with("rollback paused due to failure"));
    }

    #[test]
    fn start_first_starts_the_new_task_then_stops_the_old_one() {
        let config = UpdateConfig {
            order: UpdateOrder::StartFirst,
            ..UpdateConfig::default()
        };
        let mut s = world(1, config);
        let plan = step(&s, "s", at(5), &mut crate::model::sample_rng());
        let made = created(&plan);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].desired_state, TaskState::Running);
        assert!(desired(&plan).is_empty(), "the old task keeps running");
        updating(&mut s, 1);
        let id = new_task(&mut s, 1, TaskState::Running, 1);
        let old = s.tasks.get_mut("old1").expect("old");
        old.desired_state = TaskState::Running;
        old.status.state = TaskState::Running;
        // Running but not healthy yet: the old one stays.
        s.tasks.get_mut(&id).expect("new").status.health = Some(crate::model::Health::Starting);
        assert!(desired(&step(&s, "s", at(5), &mut crate::model::sample_rng())).is_empty());
        s.tasks.get_mut(&id).expect("new").status.health = Some(crate::model::Health::Healthy);
        let plan = step(&s, "s", at(5), &mut crate::model::sample_rng());
        assert_eq!(desired(&plan), [("old1".to_string(), TaskState::Shutdown)]);
        assert!(
            new_status(&plan).is_none(),
            "not complete while the old one runs"
        );
    }

    #[test]
    fn a_service_with_nothing_to_roll_out_gets_no_status_and_no_updater() {
        let mut s = world(2, UpdateConfig::default());
        assert!(wants_updater(&s, "s"), "its tasks run v1");
        for t in s.tasks.values_mut() {
            t.spec = template("v2");
        }
        assert!(step(&s, "s", at(5), &mut crate::model::sample_rng())
            .commands
            .is_empty());
        assert!(!wants_updater(&s, "s"));
        updating(&mut s, 1);
        assert!(wants_updater(&s, "s"), "a rollout under way");
    }
}
