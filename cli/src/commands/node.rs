use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::{enc, Client};
use crate::output::{capitalize, print_rows, s, ListArgs, Row};

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
    #[arg(long, value_parser = ["active", "pause", "drain"])]
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
    /// Node IDs or hostnames ("self" for this node)
    #[arg(required = true)]
    nodes: Vec<String>,
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
            let me = client.get("/info").await?;
            let me = s(&me, "/Swarm/NodeID").to_string();
            let nodes = client.get("/nodes").await?;
            let nodes = nodes.as_array().cloned().unwrap_or_default();
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
                        ("ID", id),
                        ("Hostname", s(n, "/Description/Hostname").into()),
                        ("Status", capitalize(s(n, "/Status/State"))),
                        ("Availability", capitalize(s(n, "/Spec/Availability"))),
                        ("ManagerStatus", manager_status(n)),
                        (
                            "EngineVersion",
                            s(n, "/Description/Engine/EngineVersion").into(),
                        ),
                        ("Self", is_self.to_string()),
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
            );
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
                client
                    .post(&format!("/nodes/{}/promote", enc(n)), json!({}))
                    .await?;
                println!("Node {n} promoted to a manager in the swarm.");
            }
        }
        NodeCmd::Demote(a) => {
            for n in &a.nodes {
                client
                    .post(&format!("/nodes/{}/demote", enc(n)), json!({}))
                    .await?;
                println!("Manager {n} demoted in the swarm.");
            }
        }
        NodeCmd::Update(a) => {
            let mut add = serde_json::Map::new();
            for l in &a.label_add {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                if k.is_empty() {
                    return Err(anyhow::anyhow!("invalid label {l:?}: expected KEY=VALUE"));
                }
                add.insert(k.to_string(), Value::String(v.to_string()));
            }
            client
                .post(
                    &format!("/nodes/{}/update", enc(&a.node)),
                    json!({ "Availability": a.availability, "LabelAdd": add, "LabelRm": a.label_rm }),
                )
                .await?;
            println!("{}", a.node);
        }
        NodeCmd::Inspect(a) => {
            let mut out = Vec::new();
            for key in a.nodes {
                let key = if key == "self" {
                    s(&client.get("/info").await?, "/Swarm/NodeID").to_string()
                } else {
                    key
                };
                out.push(client.get(&format!("/nodes/{}", enc(&key))).await?);
            }
            println!("{}", serde_json::to_string_pretty(&json!(out))?);
        }
    }
    Ok(())
}
