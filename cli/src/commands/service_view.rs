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

pub async fn ls(client: &Client, a: ListArgs) -> anyhow::Result<()> {
    let filters = Filters::parse(&a.filter, &["id", "label", "mode", "name"])?;
    filters.check_values("mode", &["replicated", "global"])?;
    let list = client.get("/services").await?;
    let mut list: Vec<Value> = list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|svc| {
            filters.allows("id", prefix(s(svc, "/ID")))
                && filters.allows("name", prefix(s(svc, "/Spec/Name")))
                && filters.allows("mode", |m| m.eq_ignore_ascii_case("replicated"))
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
                ("Mode", "replicated".into()),
                (
                    "Replicas",
                    format!(
                        "{}/{}",
                        u(svc, "/ServiceStatus/RunningTasks"),
                        u(svc, "/ServiceStatus/DesiredTasks")
                    )
                    .into(),
                ),
                (
                    "Image",
                    s(svc, "/Spec/TaskTemplate/ContainerSpec/Image").into(),
                ),
                ("Ports", "".into()),
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
    let filters = Filters::parse(&a.filter, &["id", "name", "node", "desired-state"])?;
    filters.check_values("desired-state", &["running", "shutdown", "accepted"])?;
    let nodes = client.get("/nodes").await?;
    let node_of = |id: &str| {
        nodes
            .as_array()
            .and_then(|l| l.iter().find(|n| s(n, "/ID") == id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (services, missing) = lookup_all(client, &a.services).await?;
    let mut rows: Vec<Row> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for svc in &services {
        let tasks = client
            .get(&format!("/tasks?service={}", enc(s(svc, "/ID"))))
            .await?;
        let mut tasks = tasks.as_array().cloned().unwrap_or_default();
        // Slot order; within a slot the newest first, older ones as history.
        tasks.sort_by(|x, y| {
            u(x, "/Slot")
                .cmp(&u(y, "/Slot"))
                .then_with(|| s(y, "/CreatedAt").cmp(s(x, "/CreatedAt")))
        });
        let mut last_slot = None;
        for t in &tasks {
            let slot = u(t, "/Slot");
            let task_name = format!("{}.{}", s(svc, "/Spec/Name"), slot);
            let node = node_of(s(t, "/NodeID"));
            let hostname = s(&node, "/Description/Hostname").to_string();
            let keep = filters.allows("id", prefix(s(t, "/ID")))
                && filters.allows("name", prefix(&task_name))
                && filters.allows("node", |n| n == s(t, "/NodeID") || n == hostname)
                && filters.allows("desired-state", |d| {
                    d.eq_ignore_ascii_case(s(t, "/DesiredState"))
                });
            if !keep {
                continue;
            }
            let name = if last_slot == Some(slot) {
                format!(" \\_ {task_name}")
            } else {
                task_name
            };
            last_slot = Some(slot);
            let err = s(t, "/Status/Err");
            let err = if a.no_trunc {
                err.to_string()
            } else {
                ellipsis(err, MAX_ERROR)
            };
            let id = if a.no_trunc {
                s(t, "/ID").to_string()
            } else {
                short_id(s(t, "/ID"))
            };
            ids.push(s(t, "/ID").to_string());
            rows.push(vec![
                ("ID", id.into()),
                ("Name", name.into()),
                ("Image", s(t, "/Spec/ContainerSpec/Image").into()),
                ("Node", hostname.into()),
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
                ("Ports", "".into()),
            ]);
        }
    }
    if a.quiet {
        for id in &ids {
            println!("{id}");
        }
    } else if !services.is_empty() {
        print_rows(
            &rows,
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
            a.format.as_deref(),
        )?;
    }
    if missing {
        return Err(Failed(1).into());
    }
    Ok(())
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
