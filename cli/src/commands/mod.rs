pub mod daemon;
pub mod events;
pub mod executable;
pub mod file_flags;
pub mod inspect;
pub mod network;
pub mod node;
pub mod placement;
pub mod pretty_service;
pub mod progress;
pub mod secret;
pub mod service;
pub mod service_view;
pub mod since;
pub mod stack;
pub mod swarm;
pub mod swarm_backup;
pub mod swarm_lock;
pub mod update;
pub mod update_progress;
pub mod values;
pub mod volume;

use shoal_node::api::wire;

use crate::client::Client;
use crate::output::print_inspect;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Format output using a custom template: json, or a Go template like '{{.Name}}'
    #[arg(short, long)]
    format: Option<String>,
}

/// `shoal info`: the parts of `docker info` that describe the node and its swarm.
pub async fn info(client: &Client, args: InfoArgs) -> anyhow::Result<()> {
    let info: wire::Info = client.get_as("/info").await?;
    if let Some(format) = args.format.as_deref() {
        let format = if format == "json" {
            "{{json .}}"
        } else {
            format
        };
        print_inspect(&[serde_json::to_value(&info)?], Some(format))?;
        return Ok(());
    }
    let text = |x: &Option<String>| x.clone().unwrap_or_default();
    println!("Server:");
    println!(" Server Version: {}", text(&info.docker.server_version));
    println!(" Name: {}", text(&info.docker.name));
    println!(" Data Dir: {}", text(&info.data_dir));
    let drivers: Vec<&str> = info
        .drivers
        .iter()
        .flatten()
        .map(|d| d.name.as_str())
        .collect();
    println!(" Task Drivers: {}", drivers.join(" "));
    let swarm = info.swarm.clone().unwrap_or_default();
    let state = swarm
        .docker
        .local_node_state
        .map(|s| s.to_string())
        .unwrap_or_default();
    println!(" Swarm: {state}");
    if state == "active" {
        let manager = swarm.docker.control_available == Some(true);
        println!("  NodeID: {}", text(&swarm.docker.node_id));
        println!("  Is Manager: {manager}");
        if manager {
            let cluster = swarm.cluster.clone().unwrap_or_default();
            let orchestration = cluster
                .spec
                .and_then(|s| s.orchestration)
                .unwrap_or_default();
            println!("  ClusterID: {}", text(&cluster.docker.id));
            println!("  Managers: {}", swarm.docker.managers.unwrap_or(0));
            println!("  Nodes: {}", swarm.docker.nodes.unwrap_or(0));
            println!("  Orchestration:");
            println!(
                "   Task History Retention Limit: {}",
                orchestration
                    .docker
                    .task_history_retention_limit
                    .unwrap_or(0)
            );
            println!(
                "   Rebalance: {}",
                if orchestration.rebalance == Some(true) {
                    "on"
                } else {
                    "off"
                }
            );
            if let Some(r) = &swarm.raft_status {
                println!("  Raft:");
                println!("   Term: {}", r.term);
                println!("   Commit Index: {}", r.commit);
                println!("   Snapshot Index: {}", r.snapshot_index);
            }
        }
        println!("  Node Address: {}", text(&swarm.docker.node_addr));
    }
    if info.chaos_enabled == Some(true) {
        println!(" Chaos Hooks: enabled");
    }
    Ok(())
}
