//! `shoal node ...`.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::service_view::{TaskList, DESIRED_STATES, TASK_FILTERS};
use crate::client::{enc, Client, DaemonError};
use crate::filter::{prefix, Filters};
use crate::output::{capitalize, print_inspect, print_rows, s, Failed, ListArgs, Row};

#[derive(Subcommand)]
pub enum NodeCmd {
    /// List nodes in the swarm
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more nodes
    Inspect(InspectArgs),
    /// Remove one or more nodes from the swarm
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Update a node
    Update(UpdateArgs),
    /// Promote one or more nodes to manager in the swarm
    Promote(NodesArgs),
    /// Demote one or more nodes from manager in the swarm
    Demote(NodesArgs),
    /// List tasks running on one or more nodes, defaults to current node
    Ps(PsArgs),
}

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
    /// Node IDs or hostnames ("self", the default, for this node)
    nodes: Vec<String>,
}

#[derive(Args)]
pub struct NodesArgs {
    #[arg(required = true)]
    nodes: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force remove a node from the swarm
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    nodes: Vec<String>,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Availability of the node ("active", "pause", "drain")
    #[arg(long)]
    availability: Option<String>,
    /// Add or update a node label (key=value)
    #[arg(long)]
    label_add: Vec<String>,
    /// Remove a node label if exists
    #[arg(long)]
    label_rm: Vec<String>,
    node: String,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template: json, or a Go template like '{{.ID}}'
    #[arg(short, long)]
    format: Option<String>,
    /// Print the information in a human friendly format
    #[arg(long)]
    pretty: bool,
    /// Node IDs or hostnames ("self" for this node)
    #[arg(required = true)]
    nodes: Vec<String>,
}

/// docker's check of `--availability`, before anything is sent.
fn availability(text: &str) -> anyhow::Result<String> {
    let lower = text.to_lowercase();
    match lower.as_str() {
        "active" | "pause" | "drain" => Ok(lower),
        _ => Err(anyhow!("invalid Availability: {text:?}")),
    }
}

fn manager_status(n: &Value) -> String {
    match n.get("ManagerStatus") {
        Some(m) if !m.is_null() => {
            if m["Leader"].as_bool() == Some(true) {
                "Leader".into()
            } else {
                capitalize(m["Reachability"].as_str().unwrap_or(""))
            }
        }
        _ => String::new(),
    }
}

pub async fn run(client: &Client, cmd: NodeCmd) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Ls(a) => {
            let filters = Filters::parse(
                &a.filter,
                &["id", "label", "node.label", "membership", "name", "role"],
            )?;
            filters.check_values("role", &["manager", "worker"])?;
            filters.check_values("membership", &["accepted", "pending"])?;
            let me = client.get("/info").await?;
            let me = s(&me, "/Swarm/NodeID").to_string();
            let nodes = client.get("/nodes").await?;
            let mut nodes: Vec<Value> = nodes
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|n| {
                    filters.allows("id", prefix(s(n, "/ID")))
                        && filters.allows("name", prefix(s(n, "/Description/Hostname")))
                        && filters.allows("role", |r| r.eq_ignore_ascii_case(s(n, "/Spec/Role")))
                        // Every node in the state has been accepted.
                        && filters.allows("membership", |m| m.eq_ignore_ascii_case("accepted"))
                        && filters.allows_labels("label", &n["Spec"]["Labels"])
                        && filters.allows_labels("node.label", &n["Spec"]["Labels"])
                })
                .collect();
            nodes.sort_by(|x, y| s(x, "/Description/Hostname").cmp(s(y, "/Description/Hostname")));
            if a.quiet {
                for n in &nodes {
                    println!("{}", s(n, "/ID"));
                }
                return Ok(());
            }
            let rows: Vec<Row> = nodes
                .iter()
                .map(|n| {
                    let is_self = s(n, "/ID") == me;
                    let id = if is_self && a.format.is_none() {
                        format!("{} *", s(n, "/ID"))
                    } else {
                        s(n, "/ID").to_string()
                    };
                    vec![
                        ("ID", id.into()),
                        ("Hostname", s(n, "/Description/Hostname").into()),
                        ("Status", capitalize(s(n, "/Status/State")).into()),
                        (
                            "Availability",
                            capitalize(s(n, "/Spec/Availability")).into(),
                        ),
                        ("ManagerStatus", manager_status(n).into()),
                        (
                            "EngineVersion",
                            s(n, "/Description/Engine/EngineVersion").into(),
                        ),
                        ("Self", Value::Bool(is_self)),
                    ]
                })
                .collect();
            print_rows(
                &rows,
                &[
                    "ID",
                    "HOSTNAME",
                    "STATUS",
                    "AVAILABILITY",
                    "MANAGER STATUS",
                    "ENGINE VERSION",
                ],
                a.format.as_deref(),
            )?;
        }
        NodeCmd::Rm(a) => {
            let mut failed = false;
            for n in &a.nodes {
                match client
                    .delete(&format!("/nodes/{}?force={}", enc(n), a.force))
                    .await
                {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(anyhow::anyhow!("some nodes could not be removed"));
            }
        }
        NodeCmd::Promote(a) => {
            for n in &a.nodes {
                if set_role(client, n, "manager").await? {
                    println!("Node {n} promoted to a manager in the swarm.");
                } else {
                    println!("Node {n} is already a manager.");
                }
            }
        }
        NodeCmd::Demote(a) => {
            for n in &a.nodes {
                if set_role(client, n, "worker").await? {
                    println!("Manager {n} demoted in the swarm.");
                } else {
                    println!("Node {n} is already a worker.");
                }
            }
        }
        NodeCmd::Update(a) => {
            let availability = a.availability.as_deref().map(availability).transpose()?;
            let node = client.get(&format!("/nodes/{}", enc(&a.node))).await?;
            let mut spec = node.get("Spec").cloned().unwrap_or_else(|| json!({}));
            let mut labels = spec
                .get("Labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for key in &a.label_rm {
                if labels.remove(key).is_none() {
                    return Err(anyhow!("key {key} doesn't exist in node's labels"));
                }
            }
            for l in &a.label_add {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                if k.is_empty() {
                    return Err(anyhow::anyhow!("invalid label {l:?}: expected KEY=VALUE"));
                }
                labels.insert(k.to_string(), Value::String(v.to_string()));
            }
            spec["Labels"] = Value::Object(labels);
            if let Some(av) = availability {
                spec["Availability"] = json!(av);
            }
            update_spec(client, &node, spec).await?;
            println!("{}", a.node);
        }
        NodeCmd::Ps(a) => {
            let filters = Filters::parse(&a.filter, TASK_FILTERS)?;
            filters.check_values("desired-state", DESIRED_STATES)?;
            let nodes = client.get("/nodes").await?;
            let tasks = client.get("/tasks").await?;
            let tasks = tasks.as_array().cloned().unwrap_or_default();
            let names = if a.nodes.is_empty() {
                vec!["self".to_string()]
            } else {
                a.nodes.clone()
            };
            let mut list = TaskList::default();
            let mut missing = false;
            for name in &names {
                let key = if name == "self" {
                    s(&client.get("/info").await?, "/Swarm/NodeID").to_string()
                } else {
                    name.clone()
                };
                match client.get(&format!("/nodes/{}", enc(&key))).await {
                    Ok(node) => {
                        let id = s(&node, "/ID");
                        let mine: Vec<Value> = tasks
                            .iter()
                            .filter(|t| s(t, "/NodeID") == id)
                            .cloned()
                            .collect();
                        list.add(mine, &nodes, &filters, a.no_trunc);
                    }
                    Err(e) if DaemonError::is_not_found(&e) => {
                        missing = true;
                        eprintln!("Error: no such node: {name}");
                    }
                    Err(e) => return Err(e),
                }
            }
            list.print(a.quiet, a.format.as_deref())?;
            if missing {
                return Err(Failed(1).into());
            }
        }
        NodeCmd::Inspect(a) => {
            if !a.pretty {
                crate::template::Format::parse(a.format.as_deref())?;
            }
            let mut found = Vec::new();
            let mut missing = false;
            for key in &a.nodes {
                let key = if key == "self" {
                    s(&client.get("/info").await?, "/Swarm/NodeID").to_string()
                } else {
                    key.clone()
                };
                match client.get(&format!("/nodes/{}", enc(&key))).await {
                    Ok(n) => found.push(n),
                    Err(e) if DaemonError::is_not_found(&e) => {
                        missing = true;
                        eprintln!("Error: no such node: {key}");
                    }
                    Err(e) => return Err(e),
                }
            }
            if a.pretty {
                for (i, n) in found.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    print!("{}", crate::pretty::node(n));
                }
            } else {
                print_inspect(&found, a.format.as_deref())?;
            }
            if missing {
                return Err(Failed(1).into());
            }
        }
    }
    Ok(())
}

/// Sends a node's whole spec back with the version it was read at, as the
/// docker client does.
async fn update_spec(client: &Client, node: &Value, spec: Value) -> anyhow::Result<()> {
    let id = node.get("ID").and_then(Value::as_str).unwrap_or_default();
    let version = node
        .pointer("/Version/Index")
        .and_then(Value::as_u64)
        .unwrap_or_default();
    client
        .post(
            &format!("/nodes/{}/update?version={version}", enc(id)),
            spec,
        )
        .await?;
    Ok(())
}

/// Gives `key` the role `role`; false if it already had it.
async fn set_role(client: &Client, key: &str, role: &str) -> anyhow::Result<bool> {
    let node = client.get(&format!("/nodes/{}", enc(key))).await?;
    if node.pointer("/Spec/Role").and_then(Value::as_str) == Some(role) {
        return Ok(false);
    }
    let mut spec = node.get("Spec").cloned().unwrap_or_else(|| json!({}));
    spec["Role"] = json!(role);
    update_spec(client, &node, spec).await?;
    Ok(true)
}
