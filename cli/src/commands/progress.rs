//! docker's convergence display for `service create` and `service scale`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{enc, Client};
use crate::output::{s, u};

/// How long every slot must stay running before the service counts as converged.
const VERIFY: Duration = Duration::from_secs(2);

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

fn bar(state: &str) -> String {
    let pos = STATES.iter().position(|s| *s == state).unwrap_or(0);
    let filled = 50 * pos / (STATES.len() - 1);
    format!("[{}>{}]", "=".repeat(filled), " ".repeat(50 - filled))
}

/// The progress lines for the service's current tasks, and whether all slots run.
fn render(svc: &Value, tasks: &[Value]) -> (Vec<String>, bool) {
    let replicas = u(svc, "/Spec/Mode/Replicated/Replicas");
    let mut lines = Vec::new();
    let mut running = 0;
    for slot in 1..=replicas {
        let current = tasks
            .iter()
            .filter(|t| {
                u(t, "/Slot") == slot && matches!(s(t, "/DesiredState"), "running" | "ready")
            })
            .max_by(|a, b| s(a, "/CreatedAt").cmp(s(b, "/CreatedAt")));
        let line = match current {
            Some(t) => {
                let state = s(t, "/Status/State");
                if state == "running" {
                    running += 1;
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
    let mut out = vec![format!(
        "overall progress: {running} out of {replicas} tasks"
    )];
    out.extend(lines);
    (out, running == replicas)
}

pub async fn wait_converged(client: &Client, service_id: &str, quiet: bool) -> anyhow::Result<()> {
    let tty = std::io::stdout().is_terminal() && !quiet;
    let mut drawn = 0usize;
    let mut stable_since: Option<Instant> = None;
    loop {
        let svc = client
            .get(&format!("/services/{}", enc(service_id)))
            .await?;
        let tasks = client
            .get(&format!("/tasks?service={}", enc(service_id)))
            .await?;
        let tasks = tasks.as_array().cloned().unwrap_or_default();
        let (mut lines, all_running) = render(&svc, &tasks);
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
            lines.push("verify: Service converged".into());
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
        } else if converged && !quiet {
            for l in &lines {
                println!("{l}");
            }
        }
        if converged {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
