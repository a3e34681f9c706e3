//! docker's progress display for `service update` and `service rollback`:
//! slot by slot, until the updater says the rollout is complete, paused or
//! rolled back.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::Value;

// The slot bars, and how long every slot must stay up with no rollout to
// follow, are `service create`'s.
use super::progress::{bar, VERIFY};
use crate::client::{enc, Client};
use crate::output::{s, u};

/// The progress lines, and how many slots run the current spec.
pub fn render(svc: &Value, tasks: &[Value], rolling_back: bool) -> (Vec<String>, u64) {
    let replicas = u(svc, "/Spec/Mode/Replicated/Replicas");
    let template = &svc["Spec"]["TaskTemplate"];
    let mut lines = Vec::new();
    let mut done = 0;
    for slot in 1..=replicas {
        let newest = tasks
            .iter()
            .filter(|t| u(t, "/Slot") == slot)
            .filter(|t| matches!(s(t, "/DesiredState"), "running" | "ready"))
            .filter(|t| t["Spec"] == *template)
            .max_by(|a, b| s(a, "/CreatedAt").cmp(s(b, "/CreatedAt")));
        let line = match newest {
            Some(t) => {
                let state = s(t, "/Status/State");
                let healthy = matches!(t["Status"]["Health"].as_str(), None | Some("healthy"));
                if state == "running" && healthy {
                    done += 1;
                }
                let err = s(t, "/Status/Err");
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
        let svc = client
            .get(&format!("/services/{}", enc(service_id)))
            .await?;
        let tasks = client
            .get(&format!("/tasks?service={}", enc(service_id)))
            .await?;
        let tasks = tasks.as_array().cloned().unwrap_or_default();
        let state = s(&svc, "/UpdateStatus/State");
        let message = s(&svc, "/UpdateStatus/Message");
        let rolling_back = state.starts_with("rollback");
        if rolling_back && header.is_none() && !message.is_empty() {
            header = Some(format!("rollback: {message}"));
        }
        let (body, done) = render(&svc, &tasks, rolling_back);
        let replicas = u(&svc, "/Spec/Mode/Replicated/Replicas");
        let all_up = done == replicas;
        up_since = match (all_up, up_since) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
        let config = if rolling_back {
            "RollbackConfig"
        } else {
            "UpdateConfig"
        };
        let monitor = Duration::from_nanos(u(&svc, &format!("/Spec/{config}/Monitor")));
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
        let svc = json!({"Spec": {"Mode": {"Replicated": {"Replicas": 2}},
                                  "TaskTemplate": {"ContainerSpec": {"Image": "v2"}}}});
        let old = json!({"Slot": 1, "DesiredState": "running", "CreatedAt": "1",
                         "Spec": {"ContainerSpec": {"Image": "v1"}},
                         "Status": {"State": "running"}});
        let new = json!({"Slot": 2, "DesiredState": "running", "CreatedAt": "2",
                         "Spec": {"ContainerSpec": {"Image": "v2"}},
                         "Status": {"State": "running"}});
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
