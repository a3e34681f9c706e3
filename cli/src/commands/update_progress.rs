//! docker's progress display for `service update` and `service rollback`:
//! slot by slot, until the updater says the rollout is complete, paused or
//! rolled back.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use shoal_node::api::wire;

// The slot bars, how long every slot must stay up with no rollout to
// follow, and what is read of a task, are `service create`'s.
use super::progress::{bar, replicas, task, VERIFY};
use crate::client::{enc, Client};

/// The progress lines, and how many slots run the current spec.
pub fn render(svc: &wire::Service, tasks: &[wire::Task], rolling_back: bool) -> (Vec<String>, u64) {
    let replicas = replicas(svc);
    let template = svc.spec.as_ref().and_then(|s| s.task_template.as_ref());
    let mut lines = Vec::new();
    let mut done = 0;
    for slot in 1..=replicas {
        let newest = tasks
            .iter()
            .filter(|t| task::slot(t) == slot)
            .filter(|t| matches!(task::desired(t).as_str(), "running" | "ready"))
            .filter(|t| t.spec.as_ref() == template)
            .max_by(|a, b| task::created(a).cmp(task::created(b)));
        let line = match newest {
            Some(t) => {
                let state = task::state(t);
                let state = state.as_str();
                let health = t.status.as_ref().and_then(|s| s.health.as_deref());
                let healthy = matches!(health, None | Some("healthy"));
                if state == "running" && healthy {
                    done += 1;
                }
                let err = task::err(t);
                if !err.is_empty() && state != "running" {
                    format!("{slot}/{replicas}: {err}")
                } else {
                    format!("{slot}/{replicas}: {state:<9} {}", bar(state))
                }
            }
            None => format!("{slot}/{replicas}:"),
        };
        lines.push(line);
    }
    let what = if rolling_back {
        "rolling back update: "
    } else {
        ""
    };
    let mut out = vec![format!(
        "overall progress: {what}{done} out of {replicas} tasks"
    )];
    out.extend(lines);
    (out, done)
}

/// How the wait ends.
enum End {
    Converged,
    Failed(String),
}

/// Follows the rollout until it ends. `rollback_requested`: the user asked
/// for a rollback (`service rollback`), so rolling back is the success.
pub async fn wait_rollout(
    client: &Client,
    service_id: &str,
    quiet: bool,
    rollback_requested: bool,
) -> anyhow::Result<()> {
    let tty = std::io::stdout().is_terminal() && !quiet;
    let mut drawn = 0usize;
    let mut header: Option<String> = None;
    let mut up_since: Option<Instant> = None;
    loop {
        let svc: wire::Service = client
            .get_as(&format!("/services/{}", enc(service_id)))
            .await?;
        let tasks: Vec<wire::Task> = client
            .get_as(&format!("/tasks?service={}", enc(service_id)))
            .await?;
        let status = svc.docker.update_status.clone().unwrap_or_default();
        let state = status.state.map(|s| s.to_string()).unwrap_or_default();
        let state = state.as_str();
        let message = status.message.as_deref().unwrap_or("");
        let rolling_back = state.starts_with("rollback");
        if rolling_back && header.is_none() && !message.is_empty() {
            header = Some(format!("rollback: {message}"));
        }
        let (body, done) = render(&svc, &tasks, rolling_back);
        let all_up = done == replicas(&svc);
        up_since = match (all_up, up_since) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
        let spec = svc.spec.as_ref().map(|s| &s.docker);
        let monitor = if rolling_back {
            spec.and_then(|s| s.rollback_config.as_ref())
                .and_then(|c| c.monitor)
        } else {
            spec.and_then(|s| s.update_config.as_ref())
                .and_then(|c| c.monitor)
        };
        let monitor =
            Duration::from_nanos(monitor.and_then(|m| u64::try_from(m).ok()).unwrap_or(0));
        let mut lines: Vec<String> = header.iter().cloned().collect();
        lines.extend(body);
        let end = match state {
            "paused" => Some(End::Failed(format!("service update paused: {message}"))),
            "rollback_paused" => Some(End::Failed(format!("service rollback paused: {message}"))),
            // As docker: a completed rollout ends the display, converged or not.
            "completed" | "rollback_completed" => {
                if all_up {
                    lines.push("verify: Service converged".into());
                }
                if state == "rollback_completed" {
                    lines.push("rollback: rollback completed".into());
                }
                if state == "rollback_completed" && !rollback_requested {
                    // The update undid itself: as docker, that is a failure.
                    let why = header
                        .as_deref()
                        .map_or(message, |h| h.trim_start_matches("rollback: "));
                    Some(End::Failed(format!("service rolled back: {why}")))
                } else {
                    Some(End::Converged)
                }
            }
            // No rollout (nothing a task runs changed): the display is
            // `service scale`'s.
            "" if all_up && up_since.is_some_and(|t| t.elapsed() >= VERIFY) => {
                lines.push("verify: Service converged".into());
                Some(End::Converged)
            }
            _ => {
                if let Some(t) = up_since {
                    let wait = if state.is_empty() { VERIFY } else { monitor };
                    let left = wait.saturating_sub(t.elapsed()).as_secs() + 1;
                    lines.push(format!(
                        "verify: Waiting {left} seconds to verify that tasks are stable..."
                    ));
                }
                None
            }
        };
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
        } else if end.is_some() && !quiet {
            for l in &lines {
                println!("{l}");
            }
        }
        match end {
            Some(End::Converged) => return Ok(()),
            Some(End::Failed(why)) => return Err(anyhow!(why)),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_slots_on_the_current_spec_count() {
        // Fixtures as the daemon's JSON, read into the wire types as the CLI reads it.
        let svc: wire::Service =
            serde_json::from_value(json!({"Spec": {"Mode": {"Replicated": {"Replicas": 2}},
                                  "TaskTemplate": {"ContainerSpec": {"Image": "v2"}}}}))
            .expect("a service");
        let task = |v| -> wire::Task { serde_json::from_value(v).expect("a task") };
        let old = task(
            json!({"Slot": 1, "DesiredState": "running", "CreatedAt": "1",
                         "Spec": {"ContainerSpec": {"Image": "v1"}},
                         "Status": {"State": "running"}}),
        );
        let new = task(
            json!({"Slot": 2, "DesiredState": "running", "CreatedAt": "2",
                         "Spec": {"ContainerSpec": {"Image": "v2"}},
                         "Status": {"State": "running"}}),
        );
        let (lines, done) = render(&svc, &[old, new], true);
        assert_eq!(done, 1);
        assert_eq!(
            lines[0],
            "overall progress: rolling back update: 1 out of 2 tasks"
        );
        assert_eq!(lines[1], "1/2:");
        assert!(lines[2].starts_with("2/2: running"));
        assert!(lines.iter().all(|l| !l.contains('\x1b')));
    }
}
