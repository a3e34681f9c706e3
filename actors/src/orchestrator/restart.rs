//! The restart policy as a pure decision about one slot.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{RestartCondition, RestartPolicy, Task, TaskState};

#[derive(Debug, Clone, PartialEq)]
pub enum SlotDecision {
    /// Make a new task now; it carries this restart history.
    Restart { history: Vec<DateTime<Utc>> },
    /// Come back after this long (the restart delay has not passed yet).
    Wait(Duration),
    /// The policy says this slot stays down.
    GiveUp,
}

/// What to do about a slot whose latest task has finished (`last` is terminal).
pub fn decide(policy: &RestartPolicy, last: &Task, now: DateTime<Utc>) -> SlotDecision {
    let failed = last.status.state != TaskState::Complete;
    match policy.condition {
        RestartCondition::None => return SlotDecision::GiveUp,
        RestartCondition::OnFailure if !failed => return SlotDecision::GiveUp,
        _ => {}
    }
    let window = Duration::from_nanos(policy.window_ns);
    let history: Vec<DateTime<Utc>> = last
        .restart_history
        .iter()
        .copied()
        .filter(|t| {
            policy.window_ns == 0 || (now - *t).to_std().map(|d| d <= window).unwrap_or(true)
        })
        .collect();
    if policy.max_attempts > 0 && history.len() as u64 >= policy.max_attempts {
        return SlotDecision::GiveUp;
    }
    let delay = Duration::from_nanos(policy.delay_ns);
    let since = crate::clock::elapsed(now, last.status.timestamp);
    if since < delay {
        return SlotDecision::Wait(delay - since);
    }
    let mut history = history;
    history.push(now);
    SlotDecision::Restart { history }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: TaskState, at: DateTime<Utc>, history: Vec<DateTime<Utc>>) -> Task {
        Task {
            restart_history: history,
            ..crate::model::sample_task(state, at)
        }
    }

    fn policy(condition: RestartCondition, max: u64, delay_ms: u64) -> RestartPolicy {
        RestartPolicy {
            condition,
            delay_ns: delay_ms * 1_000_000,
            max_attempts: max,
            window_ns: 0,
        }
    }

    #[test]
    fn condition_decides_which_exits_restart() {
        let now = Utc::now();
        let ok = task(TaskState::Complete, now, vec![]);
        let failed = task(TaskState::Failed, now, vec![]);
        assert_eq!(
            decide(&policy(RestartCondition::None, 0, 0), &failed, now),
            SlotDecision::GiveUp
        );
        assert_eq!(
            decide(&policy(RestartCondition::OnFailure, 0, 0), &ok, now),
            SlotDecision::GiveUp
        );
        assert!(matches!(
            decide(&policy(RestartCondition::OnFailure, 0, 0), &failed, now),
            SlotDecision::Restart { .. }
        ));
        assert!(matches!(
            decide(&policy(RestartCondition::Any, 0, 0), &ok, now),
            SlotDecision::Restart { .. }
        ));
    }

    #[test]
    fn max_attempts_counts_earlier_restarts() {
        let now = Utc::now();
        let p = policy(RestartCondition::OnFailure, 2, 0);
        assert!(
            matches!(decide(&p, &task(TaskState::Failed, now, vec![now]), now), SlotDecision::Restart { history } if history.len() == 2)
        );
        assert_eq!(
            decide(&p, &task(TaskState::Failed, now, vec![now, now]), now),
            SlotDecision::GiveUp
        );
    }

    #[test]
    fn window_forgets_old_restarts() {
        let now = Utc::now();
        let old = now - chrono::Duration::seconds(60);
        let mut p = policy(RestartCondition::Any, 1, 0);
        p.window_ns = 10_000_000_000;
        assert!(matches!(
            decide(&p, &task(TaskState::Failed, now, vec![old]), now),
            SlotDecision::Restart { .. }
        ));
    }

    #[test]
    fn delay_is_counted_from_the_exit() {
        let now = Utc::now();
        let p = policy(RestartCondition::Any, 0, 5000);
        let exited = now - chrono::Duration::seconds(2);
        match decide(&p, &task(TaskState::Failed, exited, vec![]), now) {
            SlotDecision::Wait(d) => {
                assert!(d <= Duration::from_secs(3) && d > Duration::from_millis(2900))
            }
            other => panic!("expected a wait, got {other:?}"),
        }
    }
}
