//! A worker's agent: which of its assigned tasks to start, stop or report
//! as never started, from what its task actors and statuses say. Pure: the
//! agent (`shoal_actors::worker::agent`) carries the actions out.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Task, TaskState, TaskStatus};

/// New task actors one reconcile starts; the rest follow in the next one,
/// so the agent's mailbox (status reports, flushes) keeps moving.
pub const STARTS_PER_RECONCILE: usize = 100;

/// What the agent knows of the tasks on its node.
pub struct Here<'a> {
    /// Tasks a task actor runs for (by task id).
    pub running: &'a BTreeSet<&'a str>,
    /// The last status each task reported here.
    pub statuses: &'a BTreeMap<String, TaskStatus>,
    /// Tasks a published port or a VIP sends connections to, in any of
    /// these sets (a stop waits for the drain).
    pub backends: &'a [&'a BTreeSet<String>],
    /// Tasks whose drain has already begun.
    pub draining: &'a BTreeSet<String>,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a task actor for this task.
    Start(Box<Task>),
    /// Stop the task's actor now.
    Stop(String),
    /// Stop it once connections have drained away from it.
    Drain(String),
    /// It was never started here (or lost with a restart): report it shut down.
    ReportShutdown(String),
}

/// The actions that bring this node's task actors to the `assigned` tasks,
/// at most `STARTS_PER_RECONCILE` starts; `true` if more starts wait.
pub fn reconcile(assigned: Vec<Task>, here: &Here) -> (Vec<Action>, bool) {
    let mut actions = Vec::new();
    let mut started = 0;
    let mut more = false;
    let wanted: BTreeSet<String> = assigned.iter().map(|t| t.id.clone()).collect();
    let gone: Vec<String> = here
        .running
        .iter()
        .filter(|id| !wanted.contains(**id))
        .map(|id| id.to_string())
        .collect();
    for task in assigned {
        let finished = here
            .statuses
            .get(&task.id)
            .is_some_and(|s| s.state.is_terminal());
        let running = here.running.contains(task.id.as_str());
        if task.desired_state > TaskState::Running {
            if running {
                if !here.backends.iter().any(|b| b.contains(&task.id)) {
                    actions.push(Action::Stop(task.id));
                } else if !here.draining.contains(&task.id) {
                    actions.push(Action::Drain(task.id));
                }
            } else if !finished && !task.status.state.is_terminal() {
                actions.push(Action::ReportShutdown(task.id));
            }
            continue;
        }
        if running || finished || task.status.state.is_terminal() {
            continue;
        }
        if started == STARTS_PER_RECONCILE {
            more = true;
            continue;
        }
        started += 1;
        actions.push(Action::Start(Box::new(task)));
    }
    // Task actors of tasks the managers no longer assign here.
    actions.extend(gone.into_iter().map(Action::Stop));
    (actions, more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample_task;
    use chrono::Utc;

    fn task(id: &str, desired: TaskState) -> Task {
        Task {
            id: id.into(),
            desired_state: desired,
            ..sample_task(TaskState::Assigned, Utc::now())
        }
    }

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn names<'a>(list: &[&'a str]) -> BTreeSet<&'a str> {
        list.iter().copied().collect()
    }

    #[test]
    fn starts_what_is_assigned_and_stops_what_is_not() {
        let running = names(&["old", "kept"]);
        let none = BTreeMap::new();
        let empty = BTreeSet::new();
        let here = Here {
            running: &running,
            statuses: &none,
            backends: &[],
            draining: &empty,
        };
        let assigned = vec![
            task("kept", TaskState::Running),
            task("new", TaskState::Running),
        ];
        let (actions, more) = reconcile(assigned, &here);
        assert!(!more);
        assert_eq!(actions.len(), 2);
        assert!(matches!(&actions[0], Action::Start(t) if t.id == "new"));
        assert_eq!(actions[1], Action::Stop("old".into()));
    }

    #[test]
    fn a_backend_drains_before_it_stops_and_a_task_never_started_is_reported() {
        let running = names(&["web", "db"]);
        let none = BTreeMap::new();
        let backends = ids(&["web"]);
        let empty = BTreeSet::new();
        let here = Here {
            running: &running,
            statuses: &none,
            backends: &[&backends],
            draining: &empty,
        };
        let assigned = vec![
            task("web", TaskState::Shutdown),
            task("db", TaskState::Shutdown),
            task("ghost", TaskState::Shutdown),
        ];
        let (actions, _) = reconcile(assigned, &here);
        assert_eq!(
            actions,
            vec![
                Action::Drain("web".into()),
                Action::Stop("db".into()),
                Action::ReportShutdown("ghost".into()),
            ]
        );
        // A drain already under way is not begun again.
        let draining = ids(&["web"]);
        let only_web = names(&["web"]);
        let here = Here {
            running: &only_web,
            draining: &draining,
            ..here
        };
        let (actions, _) = reconcile(vec![task("web", TaskState::Shutdown)], &here);
        assert!(actions.is_empty());
    }

    #[test]
    fn one_pass_starts_a_bounded_number() {
        let empty = BTreeSet::new();
        let none = BTreeMap::new();
        let here = Here {
            running: &BTreeSet::new(),
            statuses: &none,
            backends: &[],
            draining: &empty,
        };
        let assigned = (0..STARTS_PER_RECONCILE + 5)
            .map(|i| task(&format!("t{i}"), TaskState::Running))
            .collect();
        let (actions, more) = reconcile(assigned, &here);
        assert!(more);
        assert_eq!(actions.len(), STARTS_PER_RECONCILE);
    }

    #[test]
    fn a_finished_task_is_not_started_again() {
        let empty = BTreeSet::new();
        let mut statuses = BTreeMap::new();
        statuses.insert(
            "done".to_string(),
            TaskStatus::new(TaskState::Complete, "finished", Utc::now()),
        );
        let here = Here {
            running: &BTreeSet::new(),
            statuses: &statuses,
            backends: &[],
            draining: &empty,
        };
        let (actions, _) = reconcile(vec![task("done", TaskState::Running)], &here);
        assert!(actions.is_empty());
    }
}
