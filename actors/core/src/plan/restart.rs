//! The restart policy as a pure decision about one slot.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{RestartCondition, RestartPolicy, Task, TaskState};

#[derive(Debug, Clone, PartialEq)]
pub enum SlotDecision {
    /// Make a new task now; it carries this restart history and count of
    /// node faults in a row.
    Restart {
        history: Vec<DateTime<Utc>>,
        node_faults: u32,
    },
    /// Come back after this long (the restart delay has not passed yet).
    Wait(Duration),
    /// The policy says this slot stays down.
    GiveUp,
}

/// The first wait after a node fault, when the restart delay is shorter.
const NODE_FAULT_BASE: Duration = Duration::from_secs(1);
/// The longest a node fault makes a slot wait (unless its restart delay is longer).
const NODE_FAULT_CAP: Duration = Duration::from_secs(60);

/// How long a slot waits after `last` ended: the restart delay, or, when
/// `last` failed for a node fault (its node could not make its sandbox),
/// the delay (at least `NODE_FAULT_BASE`) doubled for each earlier node
/// fault in a row, up to `NODE_FAULT_CAP`: a node that cannot start tasks
/// is not handed a new one at the restart delay forever.
fn delay(policy: &RestartPolicy, last: &Task) -> Duration {
    let delay = Duration::from_nanos(policy.delay_ns);
    if !last.status.node_fault {
        return delay;
    }
    let backoff = delay
        .max(NODE_FAULT_BASE)
        .saturating_mul(1u32.checked_shl(last.node_faults).unwrap_or(u32::MAX))
        .min(NODE_FAULT_CAP);
    delay.max(backoff)
}

/// The `node_faults` of the task that follows `last` in its slot.
fn node_faults_after(last: &Task) -> u32 {
    if last.status.node_fault {
        last.node_faults.saturating_add(1)
    } else {
        0
    }
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
    let delay = delay(policy, last);
    let since = crate::clock::elapsed(now, last.status.timestamp);
    if since < delay {
        return SlotDecision::Wait(delay - since);
    }
    let mut history = history;
    history.push(now);
    SlotDecision::Restart {
        history,
        node_faults: node_faults_after(last),
    }
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
            matches!(decide(&p, &task(TaskState::Failed, now, vec![now]), now), SlotDecision::Restart { history, .. } if history.len() == 2)
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
    fn node_faults_back_off_exponentially_up_to_the_cap() {
        let now = Utc::now();
        let p = policy(RestartCondition::Any, 0, 0);
        let waits: Vec<Option<Duration>> = [0u32, 1, 2, 5, 6, 40]
            .into_iter()
            .map(|faults| {
                let mut last = task(TaskState::Failed, now, vec![]);
                last.status.node_fault = true;
                last.node_faults = faults;
                match decide(&p, &last, now) {
                    SlotDecision::Wait(d) => Some(d),
                    _ => None,
                }
            })
            .collect();
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(
            waits,
            vec![secs(1), secs(2), secs(4), secs(32), secs(60), secs(60)]
        );
        // A task's own failure keeps the restart delay (0 here): no backoff.
        let own = task(TaskState::Failed, now, vec![]);
        assert!(matches!(
            decide(&p, &own, now),
            SlotDecision::Restart { .. }
        ));
        // The count grows with each node fault in a row and starts over after any other end.
        let mut faulted = task(TaskState::Failed, now, vec![]);
        faulted.status.node_fault = true;
        faulted.node_faults = 3;
        assert_eq!(node_faults_after(&faulted), 4);
        assert_eq!(node_faults_after(&own), 0);
        // A restart delay longer than the cap is kept.
        let slow = policy(RestartCondition::Any, 0, 90_000);
        assert_eq!(
            decide(&slow, &faulted, now),
            SlotDecision::Wait(Duration::from_secs(90))
        );
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
