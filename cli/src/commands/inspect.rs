//! `shoal inspect`: docker's generic inspect, for the objects shoal has
//! (tasks, services, nodes), found by id, name or unique id prefix.

use clap::Args;
use serde_json::Value;

use crate::client::{enc, Client, DaemonError};
use crate::output::{print_inspect, Failed};

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template: json, or a Go template like '{{.Status.State}}'
    #[arg(short, long)]
    format: Option<String>,
    /// Return JSON for the specified type only (task, service, node)
    #[arg(long = "type", value_parser = ["task", "service", "node"])]
    kind: Option<String>,
    /// Objects to inspect
    #[arg(required = true)]
    names: Vec<String>,
}

/// The first kind of object that has `name`, in docker's order of lookup.
async fn find(client: &Client, kind: Option<&str>, name: &str) -> anyhow::Result<Option<Value>> {
    for (k, path) in [
        ("task", "tasks"),
        ("service", "services"),
        ("node", "nodes"),
    ] {
        if kind.is_some_and(|want| want != k) {
            continue;
        }
        match client.get(&format!("/{path}/{}", enc(name))).await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if DaemonError::is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

pub async fn run(client: &Client, a: InspectArgs) -> anyhow::Result<()> {
    crate::template::Format::parse(a.format.as_deref())?;
    let mut found = Vec::new();
    let mut missing = false;
    for name in &a.names {
        match find(client, a.kind.as_deref(), name).await? {
            Some(v) => found.push(v),
            None => {
                missing = true;
                eprintln!("Error: No such object: {name}");
            }
        }
    }
    print_inspect(&found, a.format.as_deref())?;
    if missing {
        return Err(Failed(1).into());
    }
    Ok(())
}
