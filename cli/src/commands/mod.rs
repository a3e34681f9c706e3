pub mod daemon;
pub mod events;
pub mod executable;
pub mod file_flags;
pub mod inspect;
pub mod network;
pub mod node;
pub mod placement;
pub mod pretty_update;
pub mod progress;
pub mod secret;
pub mod service;
pub mod service_view;
pub mod since;
pub mod swarm;
pub mod swarm_lock;
pub mod update;
pub mod update_progress;
pub mod volume;

use crate::client::Client;
use crate::output::{print_inspect, s, u};

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Format output using a custom template: json, or a Go template like '{{.Name}}'
    #[arg(short, long)]
    format: Option<String>,
}

/// `shoal info`: the parts of `docker info` that describe the node and its swarm.
pub async fn info(client: &Client, args: InfoArgs) -> anyhow::Result<()> {
    let v = client.get("/info").await?;
    if let Some(format) = args.format.as_deref() {
        let format = if format == "json" {
            "{{json .}}"
        } else {
            format
        };
        print_inspect(std::slice::from_ref(&v), Some(format))?;
        return Ok(());
    }
    println!("Server:");
    println!(" Server Version: {}", s(&v, "/ServerVersion"));
    println!(" Name: {}", s(&v, "/Name"));
    println!(" Data Dir: {}", s(&v, "/DataDir"));
    let drivers: Vec<&str> = v["Drivers"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["Name"].as_str()).collect())
        .unwrap_or_default();
    println!(" Task Drivers: {}", drivers.join(" "));
    let state = s(&v, "/Swarm/LocalNodeState");
    println!(" Swarm: {state}");
    if state == "active" {
        let manager = v
            .pointer("/Swarm/ControlAvailable")
            .and_then(|b| b.as_bool())
            == Some(true);
        println!("  NodeID: {}", s(&v, "/Swarm/NodeID"));
        println!("  Is Manager: {manager}");
        if manager {
            println!("  ClusterID: {}", s(&v, "/Swarm/Cluster/ID"));
            println!("  Managers: {}", u(&v, "/Swarm/Managers"));
            println!("  Nodes: {}", u(&v, "/Swarm/Nodes"));
            println!("  Orchestration:");
            println!(
                "   Task History Retention Limit: {}",
                u(
                    &v,
                    "/Swarm/Cluster/Spec/Orchestration/TaskHistoryRetentionLimit"
                )
            );
            println!(
                "   Rebalance: {}",
                if v.pointer("/Swarm/Cluster/Spec/Orchestration/Rebalance")
                    == Some(&serde_json::Value::Bool(true))
                {
                    "on"
                } else {
                    "off"
                }
            );
            if let Some(r) = v.pointer("/Swarm/RaftStatus").filter(|r| !r.is_null()) {
                println!("  Raft:");
                println!("   Term: {}", u(r, "/Term"));
                println!("   Commit Index: {}", u(r, "/Commit"));
                println!("   Snapshot Index: {}", u(r, "/SnapshotIndex"));
            }
        }
        println!("  Node Address: {}", s(&v, "/Swarm/NodeAddr"));
    }
    if v["ChaosEnabled"].as_bool() == Some(true) {
        println!(" Chaos Hooks: enabled");
    }
    Ok(())
}
