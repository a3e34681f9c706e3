//! Waiting for a deployed stack to converge: every service's tasks running
//! (a job's completed), with one progress line per service. A job ends as
//! completed rather than waiting forever (docker/cli#5299).

use std::io::IsTerminal;
use std::time::Duration;

use shoal_node::api::wire;

use crate::client::{enc, Client};

/// Polls until every service in `ids` has converged.
pub async fn wait(client: &Client, ids: &[String], quiet: bool) -> anyhow::Result<()> {
    let tty = std::io::stdout().is_terminal() && !quiet;
    let mut last: Vec<String> = Vec::new();
    loop {
        let mut lines = Vec::new();
        let mut done = true;
        for id in ids {
            let svc: wire::Service = client.get_as(&format!("/services/{}", enc(id))).await?;
            let name = svc
                .spec
                .as_ref()
                .and_then(|s| s.docker.name.clone())
                .unwrap_or_default();
            let mode = svc
                .spec
                .as_ref()
                .and_then(|s| s.docker.mode.clone())
                .unwrap_or_default();
            let status = svc.docker.service_status.clone().unwrap_or_default();
            let running = status.running_tasks.unwrap_or(0);
            let desired = status.desired_tasks.unwrap_or(0);
            let completed = status.completed_tasks.unwrap_or(0);
            let updating = svc
                .docker
                .update_status
                .as_ref()
                .and_then(|u| u.state)
                .is_some_and(|s| s == wire::ServiceUpdateStatusStateEnum::UPDATING);
            let (line, ok) = if let Some(job) = &mode.replicated_job {
                let total = u64::try_from(job.total_completions.unwrap_or(1)).unwrap_or(1);
                (
                    format!("{name}: {completed}/{total} completed"),
                    completed >= total,
                )
            } else if mode.global_job.is_some() {
                (
                    format!("{name}: {completed} completed, {running} running"),
                    running == 0 && completed > 0,
                )
            } else {
                (
                    format!("{name}: {running}/{desired} running"),
                    running == desired && desired > 0 && !updating,
                )
            };
            done &= ok;
            lines.push(line);
        }
        if !quiet && lines != last {
            if tty && !last.is_empty() {
                print!("\x1b[{}A", last.len());
            }
            for l in &lines {
                if tty {
                    println!("\x1b[2K{l}");
                } else if !last.contains(l) {
                    println!("{l}");
                }
            }
            last = lines;
        }
        if done {
            if !quiet {
                println!("Stack converged");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
