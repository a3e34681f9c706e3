//! `service ls`, `service ps` and `service inspect`: what they show, with
//! docker's filters, sort order, id lengths and `--format`/`--pretty`.

use clap::Args;
use serde_json::Value;

use super::service::lookup;
use crate::client::{enc, Client, DaemonError};
use crate::filter::{prefix, Filters};
use crate::output::{
    ago, capitalize, print_inspect, print_rows, s, short_id, u, Failed, ListArgs, Row,
};

/// docker's limit for the ERROR column unless --no-trunc.
const MAX_ERROR: usize = 30;

#[derive(Args)]
pub struct PsArgs {
    /// Only display task IDs
    #[arg(short, long)]
    quiet: bool,
    /// Format output: table, json, or a Go template like '{{.Name}}'
    #[arg(long)]
    format: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
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
async fn lookup_all(client: &Client, names: &[String]) -> anyhow::Result<(Vec<Value>, bool)> {
    let mut found = Vec::new();
    let mut missing = false;
    for name in names {
        match lookup(client, name).await {
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

/// The mode as `service ls` shows it.
fn mode(svc: &Value) -> &'static str {
    let has = |m: &str| {
        svc.pointer(&format!("/Spec/Mode/{m}"))
            .is_some_and(|v| !v.is_null())
    };
    if has("Global") {
        "global"
    } else if has("ReplicatedJob") {
        "replicated job"
    } else if has("GlobalJob") {
        "global job"
    } else {
        "replicated"
    }
}

/// `3/3`, or for a job docker's `1/1 (2/3 completed)`.
fn replicas(svc: &Value) -> String {
    let running = u(svc, "/ServiceStatus/RunningTasks");
    let desired = u(svc, "/ServiceStatus/DesiredTasks");
    let completed = u(svc, "/ServiceStatus/CompletedTasks");
    match mode(svc) {
        "replicated job" => format!(
            "{running}/{desired} ({completed}/{} completed)",
            u(svc, "/Spec/Mode/ReplicatedJob/TotalCompletions")
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
    let list = client.get("/services").await?;
    let mut list: Vec<Value> = list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|svc| {
            filters.allows("id", prefix(s(svc, "/ID")))
                && filters.allows("name", prefix(s(svc, "/Spec/Name")))
                && filters.allows("mode", |m| {
                    m.eq_ignore_ascii_case(&mode(svc).replace(' ', "-"))
                })
                && filters.allows_labels("label", &svc["Spec"]["Labels"])
        })
        .collect();
    list.sort_by(|x, y| s(x, "/Spec/Name").cmp(s(y, "/Spec/Name")));
    if a.quiet {
        for svc in &list {
            println!("{}", short_id(s(svc, "/ID")));
        }
        return Ok(());
    }
    let rows: Vec<Row> = list
        .iter()
        .map(|svc| {
            vec![
                ("ID", short_id(s(svc, "/ID")).into()),
                ("Name", s(svc, "/Spec/Name").into()),
                ("Mode", mode(svc).into()),
                ("Replicas", replicas(svc).into()),
                (
                    "Image",
                    s(svc, "/Spec/TaskTemplate/ContainerSpec/Image").into(),
                ),
                (
                    "Ports",
                    crate::publish::column(&svc["Endpoint"]["Ports"]).into(),
                ),
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

pub async fn ps(client: &Client, a: PsArgs) -> anyhow::Result<()> {
    let filters = Filters::parse(&a.filter, TASK_FILTERS)?;
    filters.check_values("desired-state", DESIRED_STATES)?;
    let nodes = client.get("/nodes").await?;
    let (services, missing) = lookup_all(client, &a.services).await?;
    let mut list = TaskList::default();
    for svc in &services {
        let tasks = client
            .get(&format!("/tasks?service={}", enc(s(svc, "/ID"))))
            .await?;
        list.add(
            tasks.as_array().cloned().unwrap_or_default(),
            &nodes,
            &filters,
            a.no_trunc,
        );
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
    pub fn add(&mut self, mut tasks: Vec<Value>, nodes: &Value, filters: &Filters, no_trunc: bool) {
        let hostname = |id: &str| {
            nodes
                .as_array()
                .and_then(|l| l.iter().find(|n| s(n, "/ID") == id))
                .map(|n| s(n, "/Description/Hostname").to_string())
                .unwrap_or_default()
        };
        tasks.sort_by(|x, y| {
            s(x, "/ServiceName")
                .cmp(s(y, "/ServiceName"))
                .then_with(|| u(x, "/Slot").cmp(&u(y, "/Slot")))
                .then_with(|| s(x, "/NodeID").cmp(s(y, "/NodeID")))
                .then_with(|| s(y, "/CreatedAt").cmp(s(x, "/CreatedAt")))
        });
        let mut last_slot: Option<(String, String)> = None;
        for t in &tasks {
            // A global task's slot is its node, and docker names it so.
            let slot = (
                s(t, "/ServiceName").to_string(),
                match u(t, "/Slot") {
                    0 => s(t, "/NodeID").to_string(),
                    n => n.to_string(),
                },
            );
            let task_name = format!("{}.{}", slot.0, slot.1);
            let node = hostname(s(t, "/NodeID"));
            let keep = filters.allows("id", prefix(s(t, "/ID")))
                && filters.allows("name", prefix(&task_name))
                && filters.allows("node", |n| n == s(t, "/NodeID") || n == node)
                && filters.allows("desired-state", |d| {
                    d.eq_ignore_ascii_case(s(t, "/DesiredState"))
                });
            if !keep {
                continue;
            }
            let name = if last_slot.as_ref() == Some(&slot) {
                format!(" \\_ {task_name}")
            } else {
                task_name
            };
            last_slot = Some(slot);
            let err = s(t, "/Status/Err");
            let err = if no_trunc {
                err.to_string()
            } else {
                ellipsis(err, MAX_ERROR)
            };
            let id = if no_trunc {
                s(t, "/ID").to_string()
            } else {
                short_id(s(t, "/ID"))
            };
            self.ids.push(s(t, "/ID").to_string());
            self.rows.push(vec![
                ("ID", id.into()),
                ("Name", name.into()),
                ("Image", s(t, "/Spec/ContainerSpec/Image").into()),
                ("Node", node.into()),
                ("DesiredState", capitalize(s(t, "/DesiredState")).into()),
                (
                    "CurrentState",
                    format!(
                        "{} {}",
                        capitalize(s(t, "/Status/State")),
                        ago(&t["Status"]["Timestamp"])
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
                (
                    "Ports",
                    crate::publish::task_column(&t["Status"]["PortStatus"]["Ports"]).into(),
                ),
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

pub async fn inspect(client: &Client, a: InspectArgs) -> anyhow::Result<()> {
    // Parse the template before asking the daemon, so a bad one says so alone.
    if !a.pretty {
        crate::template::Format::parse(a.format.as_deref())?;
    }
    let (found, missing) = lookup_all(client, &a.services).await?;
    if a.pretty {
        for svc in &found {
            print!("{}", crate::pretty::service(svc));
        }
    } else {
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
