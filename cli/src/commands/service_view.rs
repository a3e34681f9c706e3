//! `service ls`, `service ps` and `service inspect`: what they show, with
//! docker's filters, sort order, id lengths and `--format`/`--pretty`.

use std::collections::HashMap;

use clap::Args;
use serde_json::Value;

use shoal_node::api::wire;

use crate::client::{enc, Client, DaemonError};
use crate::filter::{prefix, Filters};
use crate::output::{
    ago_at, capitalize, print_inspect, print_rows, short_id, Failed, ListArgs, Row,
};

/// docker's limit for the ERROR column unless --no-trunc.
const MAX_ERROR: usize = 30;

/// The flags of a task table: `service ps`, `node ps`, `stack ps`.
#[derive(Args)]
pub struct TaskTableArgs {
    /// Only display task IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output: table, json, or a Go template like '{{.Name}}'
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args)]
pub struct PsArgs {
    #[command(flatten)]
    table: TaskTableArgs,
    #[arg(required = true)]
    services: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template: json, or a Go template like '{{.Spec.Name}}'
    #[arg(short, long)]
    format: Option<String>,
    /// Print the information in a human friendly format
    #[arg(long)]
    pretty: bool,
    #[arg(required = true)]
    services: Vec<String>,
}

/// docker's Ellipsis: at most `max` characters, the last one `…` if cut.
pub fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Looks each name up; prints `Error: no such service: X` for those that do
/// not exist (as docker does) and returns the others.
async fn lookup_all(
    client: &Client,
    names: &[String],
) -> anyhow::Result<(Vec<wire::Service>, bool)> {
    let mut found = Vec::new();
    let mut missing = false;
    for name in names {
        match client
            .get_as::<wire::Service>(&format!("/services/{}", enc(name)))
            .await
        {
            Ok(svc) => found.push(svc),
            Err(e) if DaemonError::is_not_found(&e) => {
                missing = true;
                eprintln!("Error: no such service: {name}");
            }
            Err(e) => return Err(e),
        }
    }
    Ok((found, missing))
}

fn id(svc: &wire::Service) -> &str {
    svc.docker.id.as_deref().unwrap_or("")
}

fn name(svc: &wire::Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.docker.name.as_deref())
        .unwrap_or("")
}

/// The mode as `service ls` shows it.
fn mode(svc: &wire::Service) -> &'static str {
    let m = svc.spec.as_ref().and_then(|s| s.docker.mode.as_ref());
    match m {
        Some(m) if m.global.is_some() => "global",
        Some(m) if m.replicated_job.is_some() => "replicated job",
        Some(m) if m.global_job.is_some() => "global job",
        _ => "replicated",
    }
}

/// `3/3`, or for a job docker's `1/1 (2/3 completed)`.
fn replicas(svc: &wire::Service) -> String {
    let status = svc.docker.service_status.clone().unwrap_or_default();
    let running = status.running_tasks.unwrap_or(0);
    let desired = status.desired_tasks.unwrap_or(0);
    let completed = status.completed_tasks.unwrap_or(0);
    match mode(svc) {
        "replicated job" => format!(
            "{running}/{desired} ({completed}/{} completed)",
            svc.spec
                .as_ref()
                .and_then(|s| s.docker.mode.as_ref())
                .and_then(|m| m.replicated_job.as_ref())
                .and_then(|j| j.total_completions)
                .unwrap_or(0)
        ),
        "global job" => format!(
            "{running}/{desired} ({completed}/{} completed)",
            desired + completed
        ),
        _ => format!("{running}/{desired}"),
    }
}

pub async fn ls(client: &Client, a: ListArgs) -> anyhow::Result<()> {
    let filters = Filters::parse(&a.filter, &["id", "label", "mode", "name"])?;
    filters.check_values(
        "mode",
        &["replicated", "global", "replicated-job", "global-job"],
    )?;
    let list: Vec<wire::Service> = client.get_as("/services").await?;
    let mut list: Vec<wire::Service> = list
        .into_iter()
        .filter(|svc| {
            filters.allows("id", prefix(id(svc)))
                && filters.allows("name", prefix(name(svc)))
                && filters.allows("mode", |m| {
                    m.eq_ignore_ascii_case(&mode(svc).replace(' ', "-"))
                })
                && filters.allows_labels(
                    "label",
                    svc.spec.as_ref().and_then(|s| s.docker.labels.as_ref()),
                )
        })
        .collect();
    list.sort_by(|x, y| name(x).cmp(name(y)));
    if a.quiet {
        for svc in &list {
            println!("{}", short_id(id(svc)));
        }
        return Ok(());
    }
    let rows: Vec<Row> = list
        .iter()
        .map(|svc| {
            let image = svc
                .spec
                .as_ref()
                .and_then(|s| s.task_template.as_ref())
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.docker.image.as_deref())
                .unwrap_or("");
            let ports = svc.endpoint.as_ref().and_then(|e| e.ports.as_deref());
            vec![
                ("ID", short_id(id(svc)).into()),
                ("Name", name(svc).into()),
                ("Mode", mode(svc).into()),
                ("Replicas", replicas(svc).into()),
                ("Image", image.into()),
                ("Ports", crate::publish::column(ports).into()),
            ]
        })
        .collect();
    print_rows(
        &rows,
        &["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"],
        a.format.as_deref(),
    )?;
    Ok(())
}

pub async fn ps(client: &Client, p: PsArgs) -> anyhow::Result<()> {
    let a = &p.table;
    let filters = Filters::parse(&a.filter, TASK_FILTERS)?;
    filters.check_values("desired-state", DESIRED_STATES)?;
    let nodes: Vec<wire::Node> = client.get_as("/nodes").await?;
    let (services, missing) = lookup_all(client, &p.services).await?;
    let mut list = TaskList::default();
    for svc in &services {
        let tasks: Vec<wire::Task> = client
            .get_as(&format!("/tasks?service={}", enc(id(svc))))
            .await?;
        list.add(tasks, &nodes, &filters, a.no_trunc);
    }
    if !services.is_empty() || a.quiet {
        list.print(a.quiet, a.format.as_deref())?;
    }
    if missing {
        return Err(Failed(1).into());
    }
    Ok(())
}

/// docker's task filters, for `service ps` and `node ps`.
pub const TASK_FILTERS: &[&str] = &["id", "name", "node", "desired-state"];
pub const DESIRED_STATES: &[&str] = &["running", "shutdown", "accepted"];

/// The rows of `service ps` and `node ps`.
#[derive(Default)]
pub struct TaskList {
    rows: Vec<Row>,
    ids: Vec<String>,
}

impl TaskList {
    /// Adds the tasks that pass `filters`: by service and slot, within a
    /// slot the newest first and older ones as its history (` \_ web.1`).
    pub fn add(
        &mut self,
        mut tasks: Vec<wire::Task>,
        nodes: &[wire::Node],
        filters: &Filters,
        no_trunc: bool,
    ) {
        let hostname = |id: &str| {
            nodes
                .iter()
                .find(|n| n.docker.id.as_deref() == Some(id))
                .and_then(|n| n.description.as_ref())
                .and_then(|d| d.docker.hostname.clone())
                .unwrap_or_default()
        };
        let text = |x: &Option<String>| x.clone().unwrap_or_default();
        // docker's order: by task name (`web.1`, or `web.NODE` for a global
        // task), the newest first within one name, wherever it ran.
        tasks.sort_by(|x, y| {
            let slot = |t: &wire::Task| t.docker.slot.unwrap_or(0);
            let node = |t: &wire::Task| match slot(t) {
                0 => text(&t.docker.node_id),
                _ => String::new(),
            };
            text(&x.service_name)
                .cmp(&text(&y.service_name))
                .then_with(|| slot(x).cmp(&slot(y)))
                .then_with(|| node(x).cmp(&node(y)))
                .then_with(|| text(&y.docker.created_at).cmp(&text(&x.docker.created_at)))
        });
        let mut last_slot: Option<(String, String)> = None;
        for t in &tasks {
            let node_id = text(&t.docker.node_id);
            let task_id = text(&t.docker.id);
            let status = t.status.clone().unwrap_or_default();
            let desired = t
                .docker
                .desired_state
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default();
            // A global task's slot is its node, and docker names it so.
            let slot = (
                text(&t.service_name),
                match t.docker.slot.unwrap_or(0) {
                    0 => node_id.clone(),
                    n => n.to_string(),
                },
            );
            let task_name = format!("{}.{}", slot.0, slot.1);
            let node = hostname(&node_id);
            let keep = filters.allows("id", prefix(&task_id))
                && filters.allows("name", prefix(&task_name))
                && filters.allows("node", |n| n == node_id || n == node)
                && filters.allows("desired-state", |d| d.eq_ignore_ascii_case(&desired));
            if !keep {
                continue;
            }
            let name = if last_slot.as_ref() == Some(&slot) {
                format!(" \\_ {task_name}")
            } else {
                task_name
            };
            last_slot = Some(slot);
            let err = text(&status.docker.err);
            let err = if no_trunc {
                err
            } else {
                ellipsis(&err, MAX_ERROR)
            };
            let id = if no_trunc {
                task_id.clone()
            } else {
                short_id(&task_id)
            };
            let image = t
                .spec
                .as_ref()
                .and_then(|s| s.container_spec.as_ref())
                .and_then(|c| c.docker.image.clone())
                .unwrap_or_default();
            let state = status
                .docker
                .state
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let ports = status.port_status.as_ref().and_then(|p| p.ports.as_deref());
            self.ids.push(task_id);
            self.rows.push(vec![
                ("ID", id.into()),
                ("Name", name.into()),
                ("Image", image.into()),
                ("Node", node.into()),
                ("DesiredState", capitalize(&desired).into()),
                (
                    "CurrentState",
                    format!(
                        "{} {}",
                        capitalize(&state),
                        ago_at(status.docker.timestamp.as_deref())
                    )
                    .into(),
                ),
                (
                    "Error",
                    if err.is_empty() {
                        String::new()
                    } else {
                        format!("\"{err}\"")
                    }
                    .into(),
                ),
                ("Ports", crate::publish::task_column(ports).into()),
            ]);
        }
    }

    /// `-q` prints full task ids, as docker does.
    pub fn print(
        &self,
        quiet: bool,
        format: Option<&str>,
    ) -> Result<(), crate::template::TemplateError> {
        if quiet {
            for id in &self.ids {
                println!("{id}");
            }
            return Ok(());
        }
        print_rows(
            &self.rows,
            &[
                "ID",
                "NAME",
                "IMAGE",
                "NODE",
                "DESIRED STATE",
                "CURRENT STATE",
                "ERROR",
                "PORTS",
            ],
            format,
        )
    }
}

/// The names of the networks a service's spec names by id, as docker's
/// `resolveNetworks` finds them (one it cannot find keeps its id).
async fn network_names(client: &Client, svc: &wire::Service) -> HashMap<String, String> {
    let mut names = HashMap::new();
    let targets = svc
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.docker.networks.clone())
        .unwrap_or_default();
    for target in targets.into_iter().filter_map(|n| n.target) {
        if let Ok(n) = client
            .get_as::<wire::Network>(&format!("/networks/{}", enc(&target)))
            .await
        {
            if let Some(name) = n.docker.name {
                names.insert(target, name);
            }
        }
    }
    names
}

pub async fn inspect(client: &Client, a: InspectArgs) -> anyhow::Result<()> {
    // Parse the template before asking the daemon, so a bad one says so alone.
    if !a.pretty {
        crate::template::Format::parse(a.format.as_deref())?;
    }
    let (found, missing) = lookup_all(client, &a.services).await?;
    if a.pretty {
        for svc in &found {
            // docker's formatter ends each service with a newline of its own.
            println!(
                "{}",
                super::pretty_service::service(svc, &network_names(client, svc).await)
            );
        }
    } else {
        let found = found
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<Value>, _>>()?;
        print_inspect(&found, a.format.as_deref())?;
    }
    if missing {
        return Err(Failed(1).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::commands::service_view::ellipsis;

    #[test]
    fn errors_are_cut_as_docker_cuts_them() {
        assert_eq!(ellipsis("short", 30), "short");
        let long = "starting container failed: no such image here";
        let cut = ellipsis(long, 30);
        assert_eq!(cut.chars().count(), 30);
        assert!(cut.ends_with('…'));
    }
}
