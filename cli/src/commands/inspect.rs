//! `shoal inspect`: docker's generic inspect, for the objects shoal has
//! (tasks, services, nodes), found by id, name or unique id prefix.

use clap::Args;
use serde_json::Value;
use shoal_node::api::wire;

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

/// `path` read as the Engine API type `T`, as JSON; `None` if there is no such object.
async fn one<T: serde::de::DeserializeOwned + serde::Serialize>(
    client: &Client,
    path: &str,
) -> anyhow::Result<Option<Value>> {
    match client.get_as::<T>(path).await {
        Ok(v) => Ok(Some(serde_json::to_value(v)?)),
        Err(e) if DaemonError::is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The first kind of object that has `name`, in docker's order of lookup.
async fn find(client: &Client, kind: Option<&str>, name: &str) -> anyhow::Result<Option<Value>> {
    let wanted = |k: &str| kind.is_none_or(|want| want == k);
    let name = enc(name);
    if wanted("task") {
        if let Some(v) = one::<wire::Task>(client, &format!("/tasks/{name}")).await? {
            return Ok(Some(v));
        }
    }
    if wanted("service") {
        if let Some(v) = one::<wire::Service>(client, &format!("/services/{name}")).await? {
            return Ok(Some(v));
        }
    }
    if wanted("node") {
        if let Some(v) = one::<wire::Node>(client, &format!("/nodes/{name}")).await? {
            return Ok(Some(v));
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
