//! `shoal node ...`.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::Value;
use shoal_node::api::wire;

use super::service_view::{TaskList, DESIRED_STATES, TASK_FILTERS};
use crate::client::{enc, Client, DaemonError};
use crate::filter::{prefix, Filters};
use crate::output::{capitalize, print_inspect, print_rows, Failed, ListArgs, Row};

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
    #[command(flatten)]
    table: super::service_view::TaskTableArgs,
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

/// docker's STATUS, with shoal's flag of a clock off the cluster's
/// (`Ready (clock +10m0s)`; docs/cli.md).
fn status_column(state: &str, n: &wire::Node) -> String {
    match &n.clock_skew {
        Some(skew) => format!("{state} (clock {skew})"),
        None => state.to_string(),
    }
}

fn manager_status(n: &wire::Node) -> String {
    match &n.docker.manager_status {
        Some(m) if m.leader == Some(true) => "Leader".into(),
        Some(m) => capitalize(&word(m.reachability.as_ref())),
        None => String::new(),
    }
}

/// A word of one of bollard's enums ("" when absent).
fn word<E: std::fmt::Display>(e: Option<&E>) -> String {
    e.map(E::to_string).unwrap_or_default()
}

fn hostname(n: &wire::Node) -> &str {
    n.description
        .as_ref()
        .and_then(|d| d.docker.hostname.as_deref())
        .unwrap_or("")
}

fn node_id(n: &wire::Node) -> &str {
    n.docker.id.as_deref().unwrap_or("")
}

/// This node's id, as `/info` gives it.
pub async fn self_id(client: &Client) -> anyhow::Result<String> {
    let info: wire::Info = client.get_as("/info").await?;
    Ok(info
        .swarm
        .and_then(|s| s.docker.node_id)
        .unwrap_or_default())
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
            let me = self_id(client).await?;
            let nodes: Vec<wire::Node> = client.get_as("/nodes").await?;
            let mut nodes: Vec<wire::Node> = nodes
                .into_iter()
                .filter(|n| {
                    let spec = n.docker.spec.as_ref();
                    let labels = spec.and_then(|s| s.labels.as_ref());
                    let role = word(spec.and_then(|s| s.role.as_ref()));
                    filters.allows("id", prefix(node_id(n)))
                        && filters.allows("name", prefix(hostname(n)))
                        && filters.allows("role", |r| r.eq_ignore_ascii_case(&role))
                        // Every node in the state has been accepted.
                        && filters.allows("membership", |m| m.eq_ignore_ascii_case("accepted"))
                        && filters.allows_labels("label", labels)
                        && filters.allows_labels("node.label", labels)
                })
                .collect();
            nodes.sort_by(|x, y| hostname(x).cmp(hostname(y)));
            if a.quiet {
                for n in &nodes {
                    println!("{}", node_id(n));
                }
                return Ok(());
            }
            let rows: Vec<Row> = nodes
                .iter()
                .map(|n| {
                    let is_self = node_id(n) == me;
                    let id = if is_self && a.format.is_none() {
                        format!("{} *", node_id(n))
                    } else {
                        node_id(n).to_string()
                    };
                    let spec = n.docker.spec.as_ref();
                    let state = n.docker.status.as_ref().and_then(|s| s.state.as_ref());
                    let engine = n
                        .description
                        .as_ref()
                        .and_then(|d| d.engine.as_ref())
                        .and_then(|e| e.docker.engine_version.as_deref());
                    vec![
                        ("ID", id.into()),
                        ("Hostname", hostname(n).into()),
                        ("Status", status_column(&capitalize(&word(state)), n).into()),
                        (
                            "Availability",
                            capitalize(&word(spec.and_then(|s| s.availability.as_ref()))).into(),
                        ),
                        ("ManagerStatus", manager_status(n).into()),
                        ("EngineVersion", engine.unwrap_or("").into()),
                        // shoal's own: the newest record format the node
                        // supports (docs/upgrades.md).
                        (
                            "Format",
                            n.description
                                .as_ref()
                                .and_then(|d| d.format)
                                .map_or(String::new(), |f| f.to_string())
                                .into(),
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
                    "FORMAT",
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
                if set_role(client, n, wire::NodeSpecRoleEnum::MANAGER).await? {
                    println!("Node {n} promoted to a manager in the swarm.");
                } else {
                    println!("Node {n} is already a manager.");
                }
            }
        }
        NodeCmd::Demote(a) => {
            for n in &a.nodes {
                if set_role(client, n, wire::NodeSpecRoleEnum::WORKER).await? {
                    println!("Manager {n} demoted in the swarm.");
                } else {
                    println!("Node {n} is already a worker.");
                }
            }
        }
        NodeCmd::Update(a) => {
            let availability = a.availability.as_deref().map(availability).transpose()?;
            let node: wire::Node = client.get_as(&format!("/nodes/{}", enc(&a.node))).await?;
            let mut spec = node.docker.spec.clone().unwrap_or_default();
            let mut labels = spec.labels.take().unwrap_or_default();
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
                labels.insert(k.to_string(), v.to_string());
            }
            spec.labels = Some(labels);
            if let Some(av) = availability {
                spec.availability = av.parse().ok();
            }
            update_spec(client, &node, &spec).await?;
            println!("{}", a.node);
        }
        NodeCmd::Ps(p) => {
            let a = &p.table;
            let filters = Filters::parse(&a.filter, TASK_FILTERS)?;
            filters.check_values("desired-state", DESIRED_STATES)?;
            let nodes: Vec<wire::Node> = client.get_as("/nodes").await?;
            let tasks: Vec<wire::Task> = client.get_as("/tasks").await?;
            let names = if p.nodes.is_empty() {
                vec!["self".to_string()]
            } else {
                p.nodes.clone()
            };
            let mut list = TaskList::default();
            let mut missing = false;
            for name in &names {
                let key = if name == "self" {
                    self_id(client).await?
                } else {
                    name.clone()
                };
                match client
                    .get_as::<wire::Node>(&format!("/nodes/{}", enc(&key)))
                    .await
                {
                    Ok(node) => {
                        let id = node_id(&node);
                        let mine: Vec<wire::Task> = tasks
                            .iter()
                            .filter(|t| t.docker.node_id.as_deref() == Some(id))
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
                    self_id(client).await?
                } else {
                    key.clone()
                };
                match client
                    .get_as::<wire::Node>(&format!("/nodes/{}", enc(&key)))
                    .await
                {
                    Ok(n) => found.push(serde_json::to_value(n)?),
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
async fn update_spec(
    client: &Client,
    node: &wire::Node,
    spec: &wire::NodeSpec,
) -> anyhow::Result<()> {
    let version = node
        .docker
        .version
        .as_ref()
        .and_then(|v| v.index)
        .unwrap_or_default();
    client
        .post(
            &format!("/nodes/{}/update?version={version}", enc(node_id(node))),
            serde_json::to_value(spec)?,
        )
        .await?;
    Ok(())
}

/// Gives `key` the role `role`; false if it already had it.
async fn set_role(
    client: &Client,
    key: &str,
    role: wire::NodeSpecRoleEnum,
) -> anyhow::Result<bool> {
    let node: wire::Node = client.get_as(&format!("/nodes/{}", enc(key))).await?;
    let mut spec = node.docker.spec.clone().unwrap_or_default();
    if spec.role == Some(role) {
        return Ok(false);
    }
    spec.role = Some(role);
    update_spec(client, &node, &spec).await?;
    Ok(true)
}
