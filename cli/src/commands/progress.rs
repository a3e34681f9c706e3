//! docker's convergence display for `service create` and `service scale`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use shoal_node::api::wire;

use crate::client::{enc, Client};

/// How long every slot must stay running before the service counts as converged.
pub(super) const VERIFY: Duration = Duration::from_secs(2);

const STATES: &[&str] = &[
    "new",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
    "running",
];

/// A slot's task state as docker's progress bar.
pub(super) fn bar(state: &str) -> String {
    let pos = match state {
        "complete" => STATES.len() - 1,
        _ => STATES.iter().position(|s| *s == state).unwrap_or(0),
    };
    let filled = 50 * pos / (STATES.len() - 1);
    format!("[{}>{}]", "=".repeat(filled), " ".repeat(50 - filled))
}

/// Observed states after which a task never runs again.
const TERMINAL: &[&str] = &[
    "complete", "shutdown", "failed", "rejected", "remove", "orphaned",
];

/// Observed states of a task that ended by itself.
const GAVE_UP: &[&str] = &["complete", "failed", "rejected"];

/// Margin past the restart delay before an absent restart counts as given up.
const RESTART_MARGIN: Duration = Duration::from_secs(2);

/// Where one slot stands.
#[derive(Debug, PartialEq)]
enum Slot {
    Running,
    /// Starting, or finished with a restart still to come.
    InProgress,
    /// Finished, and the restart policy starts no new task: why not.
    GaveUp(String),
}

/// What the displays read of a task.
pub(super) mod task {
    use shoal_node::api::wire;

    pub fn slot(t: &wire::Task) -> u64 {
        t.docker
            .slot
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0)
    }

    pub fn desired(t: &wire::Task) -> String {
        t.docker
            .desired_state
            .map(|d| d.to_string())
            .unwrap_or_default()
    }

    pub fn state(t: &wire::Task) -> String {
        t.status
            .as_ref()
            .and_then(|s| s.docker.state)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    pub fn err(t: &wire::Task) -> &str {
        t.status
            .as_ref()
            .and_then(|s| s.docker.err.as_deref())
            .unwrap_or("")
    }

    pub fn created(t: &wire::Task) -> &str {
        t.docker.created_at.as_deref().unwrap_or("")
    }

    pub fn timestamp(t: &wire::Task) -> &str {
        t.status
            .as_ref()
            .and_then(|s| s.docker.timestamp.as_deref())
            .unwrap_or("")
    }
}

/// A service's name, "" without one.
pub(super) fn service_name(svc: &wire::Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.docker.name.as_deref())
        .unwrap_or("")
}

/// A replicated service's replicas (0 for the other modes).
pub(super) fn replicas(svc: &wire::Service) -> u64 {
    svc.spec
        .as_ref()
        .and_then(|s| s.docker.mode.as_ref())
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .and_then(|r| u64::try_from(r).ok())
        .unwrap_or(0)
}

fn since(at: &str, now: DateTime<Utc>) -> Duration {
    at.parse::<DateTime<Utc>>()
        .ok()
        .and_then(|t| (now - t).to_std().ok())
        .unwrap_or_default()
}

fn nanos(n: Option<i64>) -> Duration {
    Duration::from_nanos(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
}

fn condition(policy: &wire::TaskSpecRestartPolicy) -> String {
    policy.condition.map(|c| c.to_string()).unwrap_or_default()
}

/// Whether the restart policy leaves this slot down for good, mirroring the
/// orchestrator's decision (actors/src/orchestrator/restart.rs). `last` is the
/// slot's latest task, finished; `slot_tasks` all the slot's tasks the API lists.
fn gives_up(
    policy: &wire::TaskSpecRestartPolicy,
    last: &wire::Task,
    slot_tasks: &[&wire::Task],
    now: DateTime<Utc>,
) -> Option<String> {
    let failed = task::state(last) != "complete";
    match condition(policy).as_str() {
        "none" => return Some("condition none".into()),
        "on-failure" if !failed => {
            return Some("condition on-failure, and the task exited with code 0".into())
        }
        _ => {}
    }
    let max = policy.max_attempts.unwrap_or(0);
    if max <= 0 {
        return None;
    }
    let delay = nanos(policy.delay);
    let window = nanos(policy.window);
    let finished_for = since(task::timestamp(last), now);
    // Every task of the slot after its first was a restart (a move off a lost
    // node is not, so this may count too many: hence the wait below).
    let mut created: Vec<&str> = slot_tasks.iter().map(|t| task::created(t)).collect();
    created.sort_unstable();
    let restarts = slot_tasks
        .iter()
        .filter(|t| created.first() != Some(&task::created(t)))
        .filter(|t| window.is_zero() || since(task::created(t), now) <= window)
        .count() as i64;
    let reached = restarts >= max && finished_for > delay + RESTART_MARGIN;
    // The API keeps only a few old tasks per slot, so the count can also be
    // short: a restart that has not come well after its delay will not come.
    let overdue = finished_for > delay + 5 * RESTART_MARGIN;
    (reached || overdue).then(|| format!("max attempts {max} reached"))
}

/// Which rule of the restart policy ended a slot the orchestrator gave up on.
fn gave_up_because(policy: &wire::TaskSpecRestartPolicy, last: &wire::Task) -> String {
    match condition(policy).as_str() {
        "none" => "condition none".into(),
        "on-failure" if task::state(last) == "complete" => {
            "condition on-failure, and the task exited with code 0".into()
        }
        _ => format!("max attempts {} reached", policy.max_attempts.unwrap_or(0)),
    }
}

/// The progress lines for the service's current tasks, and where each slot stands.
fn render(
    svc: &wire::Service,
    tasks: &[wire::Task],
    now: DateTime<Utc>,
) -> (Vec<String>, Vec<Slot>) {
    let replicas = replicas(svc);
    let policy = svc
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.docker.restart_policy.clone())
        .unwrap_or_default();
    let mut lines = Vec::new();
    let mut slots = Vec::new();
    for slot in 1..=replicas {
        let slot_tasks: Vec<&wire::Task> = tasks.iter().filter(|t| task::slot(t) == slot).collect();
        // The slot's newest task: wanted running, or finished and shut down
        // for good by its restart policy.
        let current = slot_tasks
            .iter()
            .copied()
            .filter(|t| {
                matches!(task::desired(t).as_str(), "running" | "ready")
                    || (task::desired(t) == "shutdown"
                        && GAVE_UP.contains(&task::state(t).as_str()))
            })
            .max_by(|a, b| task::created(a).cmp(task::created(b)));
        let (line, state) = match current {
            Some(t) => {
                let state = task::state(t);
                let state = state.as_str();
                let slot_state = if state == "running" {
                    Slot::Running
                } else if task::desired(t) == "shutdown" {
                    // The orchestrator has given up on the slot: say by which rule.
                    Slot::GaveUp(gave_up_because(&policy, t))
                } else if TERMINAL.contains(&state) {
                    gives_up(&policy, t, &slot_tasks, now).map_or(Slot::InProgress, Slot::GaveUp)
                } else {
                    Slot::InProgress
                };
                let err = task::err(t);
                let line = if !err.is_empty() && state != "running" {
                    format!("{slot}/{replicas}: {err}")
                } else {
                    format!("{slot}/{replicas}: {state:<9} {}", bar(state))
                };
                (line, slot_state)
            }
            None => (format!("{slot}/{replicas}:"), Slot::InProgress),
        };
        lines.push(line);
        slots.push(state);
    }
    let running = slots.iter().filter(|s| **s == Slot::Running).count();
    let mut out = vec![format!(
        "overall progress: {running} out of {replicas} tasks"
    )];
    out.extend(lines);
    (out, slots)
}

/// Why the service can never converge: some slot gave up and no slot is
/// still on its way (shoal's deviation from docker, see docs/cli.md).
fn cannot_converge(name: &str, slots: &[Slot]) -> Option<String> {
    if slots.contains(&Slot::InProgress) {
        return None;
    }
    let mut reasons: Vec<&str> = Vec::new();
    for slot in slots {
        if let Slot::GaveUp(r) = slot {
            if !reasons.contains(&r.as_str()) {
                reasons.push(r);
            }
        }
    }
    if reasons.is_empty() {
        return None;
    }
    let down = slots
        .iter()
        .filter(|s| matches!(s, Slot::GaveUp(_)))
        .count();
    let reasons = reasons.join("; ");
    Some(if down == slots.len() {
        format!(
            "service {name} cannot converge: every task has finished and its restart policy ({reasons}) starts no new one"
        )
    } else {
        format!(
            "service {name} cannot converge: {down} of {} tasks have finished and their restart policy ({reasons}) starts no new one",
            slots.len()
        )
    })
}

pub async fn wait_converged(client: &Client, service_id: &str, quiet: bool) -> anyhow::Result<()> {
    let tty = std::io::stdout().is_terminal() && !quiet;
    let mut drawn = 0usize;
    // Without a TTY, each line is printed when it changes, as docker does.
    let mut printed: Vec<String> = Vec::new();
    let mut stable_since: Option<Instant> = None;
    loop {
        let svc: wire::Service = client
            .get_as(&format!("/services/{}", enc(service_id)))
            .await?;
        let tasks: Vec<wire::Task> = client
            .get_as(&format!("/tasks?service={}", enc(service_id)))
            .await?;
        let (mut lines, slots) = render(&svc, &tasks, Utc::now());
        let all_running = slots.iter().all(|s| *s == Slot::Running);
        let stuck = cannot_converge(service_name(&svc), &slots);
        stable_since = match (all_running, stable_since) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
        let converged = stable_since.is_some_and(|t| t.elapsed() >= VERIFY);
        if let Some(t) = stable_since.filter(|_| !converged) {
            let left = VERIFY.saturating_sub(t.elapsed()).as_secs() + 1;
            lines.push(format!(
                "verify: Waiting {left} seconds to verify that tasks are stable..."
            ));
        }
        if converged {
            lines.push(format!("verify: Service {} converged", service_name(&svc)));
        }
        if tty {
            let mut out = std::io::stdout();
            if drawn > 0 {
                write!(out, "\x1b[{drawn}A")?;
            }
            for l in &lines {
                writeln!(out, "\x1b[2K{l}")?;
            }
            out.flush()?;
            drawn = lines.len();
        } else if !quiet {
            for (i, l) in lines.iter().enumerate() {
                // The countdown line changes every second: shown once.
                let countdown = l.starts_with("verify: Waiting");
                let seen = printed
                    .get(i)
                    .is_some_and(|p| p == l || (countdown && p.starts_with("verify: Waiting")));
                if !seen {
                    println!("{l}");
                }
            }
            std::io::stdout().flush()?;
            printed = lines;
        }
        if converged {
            return Ok(());
        }
        if let Some(why) = stuck {
            return Err(anyhow!(why));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Fixtures as the daemon's JSON, read into the wire types as the CLI reads it.
    fn policy(condition: &str, max: u64) -> wire::TaskSpecRestartPolicy {
        serde_json::from_value(
            json!({"Condition": condition, "Delay": 100_000_000u64, "MaxAttempts": max, "Window": 0}),
        )
        .expect("a restart policy")
    }

    fn task(state: &str, created: &str, finished: &str) -> wire::Task {
        serde_json::from_value(
            json!({"Slot": 1, "DesiredState": "running", "CreatedAt": created,
               "Status": {"State": state, "Timestamp": finished}}),
        )
        .expect("a task")
    }

    fn now() -> DateTime<Utc> {
        "2025-01-01T00:01:00Z".parse().expect("time")
    }

    #[test]
    fn the_policy_decides_whether_a_finished_slot_stays_down() {
        let done = task("complete", "2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z");
        let failed = task("failed", "2025-01-01T00:00:00Z", "2025-01-01T00:00:59Z");
        let one = [&done];
        assert!(gives_up(&policy("none", 0), &done, &one, now()).is_some());
        assert!(gives_up(&policy("on-failure", 0), &done, &one, now()).is_some());
        assert!(gives_up(&policy("on-failure", 0), &failed, &[&failed], now()).is_none());
        assert!(gives_up(&policy("any", 0), &done, &one, now()).is_none());
        // One restart allowed: the slot's second task that fails is the last.
        let first = task("failed", "2025-01-01T00:00:00Z", "2025-01-01T00:00:01Z");
        let second = task("failed", "2025-01-01T00:00:02Z", "2025-01-01T00:00:03Z");
        assert_eq!(
            gives_up(&policy("on-failure", 1), &second, &[&first, &second], now()),
            Some("max attempts 1 reached".into())
        );
        // Just failed, its restart not due yet: still on its way.
        assert!(gives_up(&policy("on-failure", 1), &failed, &[&failed], now()).is_none());
    }

    #[test]
    fn cannot_converge_only_once_no_slot_is_on_its_way() {
        let none = || Slot::GaveUp("condition none".into());
        assert_eq!(
            cannot_converge("web", &[Slot::Running, Slot::InProgress]),
            None
        );
        assert_eq!(cannot_converge("web", &[none(), Slot::InProgress]), None);
        assert_eq!(cannot_converge("web", &[Slot::Running]), None);
        assert_eq!(
            cannot_converge("web", &[none(), none()]).as_deref(),
            Some("service web cannot converge: every task has finished and its restart policy (condition none) starts no new one")
        );
        assert_eq!(
            cannot_converge("web", &[Slot::Running, none(), Slot::Running]).as_deref(),
            Some("service web cannot converge: 1 of 3 tasks have finished and their restart policy (condition none) starts no new one")
        );
    }
}
