//! Which tasks can be deleted: removed ones that have stopped, and history
//! beyond the retention limit of each slot.

use std::collections::BTreeMap;

use crate::model::TaskState;
use crate::state::ClusterState;

pub fn reap(state: &ClusterState, history_limit: u64) -> Vec<String> {
    let mut doomed = Vec::new();
    // A global task's slot is its node.
    let mut slots: BTreeMap<(&str, u64, Option<&str>), Vec<&crate::model::Task>> = BTreeMap::new();
    for t in state.tasks.values() {
        let never_placed = t.node_id.is_none();
        if t.desired_state == TaskState::Remove && (t.status.state.is_terminal() || never_placed) {
            doomed.push(t.id.clone());
        } else {
            slots
                .entry((
                    t.service_id.as_str(),
                    t.slot,
                    t.node_id.as_deref().filter(|_| t.slot == 0),
                ))
                .or_default()
                .push(t);
        }
    }
    let keep = history_limit.max(1) as usize;
    for tasks in slots.values_mut() {
        if tasks.len() <= keep {
            continue;
        }
        tasks.sort_by_key(|t| std::cmp::Reverse(t.created_at));
        let mut excess = tasks.len() - keep;
        for t in tasks.iter().rev() {
            if excess == 0 {
                break;
            }
            if t.status.state.is_terminal() && t.desired_state > TaskState::Running {
                doomed.push(t.id.clone());
                excess -= 1;
            }
        }
    }
    doomed
}
