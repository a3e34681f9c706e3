//! `shoal swarm ...`.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use shoal_node::api::wire;

use crate::client::Client;

#[derive(Subcommand)]
pub enum SwarmCmd {
    /// Initialize a swarm
    Init(InitArgs),
    /// Join a swarm as a node and/or manager
    Join(JoinArgs),
    /// Manage join tokens
    JoinToken(JoinTokenArgs),
    /// Leave the swarm
    Leave(LeaveArgs),
    /// Unlock swarm
    Unlock,
    /// Manage the unlock key
    UnlockKey(super::swarm_lock::UnlockKeyArgs),
    /// Update the swarm
    Update(super::swarm_lock::UpdateArgs),
    /// Write a backup of the swarm's state to a file (on a manager)
    Backup(super::swarm_backup::BackupArgs),
    /// Make this node, in no swarm yet, the only manager of a swarm restored from a backup
    Restore(super::swarm_backup::RestoreArgs),
}

#[derive(Args)]
pub struct LeaveArgs {
    /// Force this node to leave the swarm, ignoring warnings
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct JoinArgs {
    /// Token for entry into the swarm
    #[arg(long)]
    token: String,
    /// Advertised address (format: <ip|interface>[:port])
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Listen address (format: <ip|interface>[:port]; default: the daemon's --listen-addr)
    #[arg(long)]
    listen_addr: Option<String>,
    /// Availability of the node ("active", "pause", "drain")
    #[arg(long, default_value = "active")]
    availability: String,
    /// A manager of the swarm (HOST:PORT)
    remote: String,
}

#[derive(Args)]
pub struct InitArgs {
    /// Advertised address (format: <ip|interface>[:port])
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Listen address (format: <ip|interface>[:port]; default: the daemon's --listen-addr)
    #[arg(long)]
    listen_addr: Option<String>,
    /// Task history retention limit
    #[arg(long, default_value_t = 5)]
    task_history_limit: u64,
    /// Force create a new cluster from current state
    #[arg(long)]
    force_new_cluster: bool,
    /// Number of Raft log entries between snapshots
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_interval: u64,
    /// Default address pool in CIDR format
    #[arg(long)]
    default_addr_pool: Vec<String>,
    /// Default address pool subnet mask length
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(16..=29))]
    default_addr_pool_mask_length: u8,
    /// Enable manager autolocking (requiring an unlock key to start a stopped manager)
    #[arg(long)]
    autolock: bool,
}

#[derive(Args)]
pub struct JoinTokenArgs {
    /// Only display token
    #[arg(short, long)]
    quiet: bool,
    /// Rotate join token
    #[arg(long)]
    rotate: bool,
    /// worker or manager
    role: String,
}

pub async fn run(client: &Client, cmd: SwarmCmd) -> anyhow::Result<()> {
    match cmd {
        SwarmCmd::Init(a) => {
            let body = wire::SwarmInitRequest {
                docker: wire::docker::SwarmInitRequest {
                    listen_addr: a.listen_addr,
                    force_new_cluster: Some(a.force_new_cluster),
                    advertise_addr: a.advertise_addr,
                    default_addr_pool: Some(a.default_addr_pool),
                    subnet_size: Some(u32::from(a.default_addr_pool_mask_length)),
                    ..Default::default()
                },
                spec: Some(wire::SwarmSpec {
                    docker: wire::docker::SwarmSpec {
                        raft: Some(wire::SwarmSpecRaft {
                            snapshot_interval: Some(a.snapshot_interval),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    orchestration: Some(wire::Orchestration {
                        docker: wire::docker::SwarmSpecOrchestration {
                            task_history_retention_limit: Some(wire::int(a.task_history_limit)),
                        },
                        rebalance: None,
                    }),
                }),
                auto_lock_managers: Some(a.autolock),
            };
            // The answer is the new node's id, a JSON string.
            let node_id: String = client.post_as("/swarm/init", &body).await?;
            let swarm: wire::Swarm = client.get_as("/swarm").await?;
            println!("Swarm initialized: current node ({node_id}) is now a manager.\n");
            println!("To add a worker to this swarm, run the following command:\n");
            println!(
                "    shoal swarm join --token {} {}\n",
                join_token(&swarm, "worker"),
                node_addr(client).await?
            );
            println!("To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.\n");
            if a.autolock {
                let v: wire::UnlockKeyResponse = client.get_as("/swarm/unlockkey").await?;
                super::swarm_lock::print_unlock_key(v.unlock_key.as_deref().unwrap_or(""));
            }
        }
        SwarmCmd::Unlock => super::swarm_lock::unlock(client).await?,
        SwarmCmd::UnlockKey(a) => super::swarm_lock::unlock_key(client, a).await?,
        SwarmCmd::Update(a) => super::swarm_lock::update(client, a).await?,
        SwarmCmd::Backup(a) => super::swarm_backup::backup(client, a).await?,
        SwarmCmd::Restore(a) => super::swarm_backup::restore(client, a).await?,
        SwarmCmd::Join(a) => {
            let body = wire::SwarmJoinRequest {
                docker: wire::docker::SwarmJoinRequest {
                    join_token: Some(a.token),
                    remote_addrs: Some(vec![a.remote]),
                    listen_addr: a.listen_addr,
                    advertise_addr: a.advertise_addr,
                    ..Default::default()
                },
                availability: Some(a.availability),
            };
            client
                .post("/swarm/join", serde_json::to_value(&body)?)
                .await?;
            let info: wire::Info = client.get_as("/info").await?;
            if info.swarm.and_then(|s| s.docker.control_available) == Some(true) {
                println!("This node joined a swarm as a manager.");
            } else {
                println!("This node joined a swarm as a worker.");
            }
        }
        SwarmCmd::Leave(a) => {
            client
                .post_empty(&format!("/swarm/leave?force={}", a.force))
                .await?;
            println!("Node left the swarm.");
        }
        SwarmCmd::JoinToken(a) => {
            if a.role != "worker" && a.role != "manager" {
                return Err(anyhow!("unknown role {}", a.role));
            }
            if a.rotate {
                let param = if a.role == "worker" {
                    "rotateWorkerToken"
                } else {
                    "rotateManagerToken"
                };
                client
                    .post_empty(&format!("/swarm/update?{param}=true"))
                    .await?;
                if !a.quiet {
                    println!("Successfully rotated {} join token.\n", a.role);
                }
            }
            let swarm: wire::Swarm = client.get_as("/swarm").await?;
            let token = join_token(&swarm, &a.role);
            if a.quiet {
                println!("{token}");
            } else {
                println!(
                    "To add a {} to this swarm, run the following command:\n",
                    a.role
                );
                println!(
                    "    shoal swarm join --token {token} {}\n",
                    node_addr(client).await?
                );
            }
        }
    }
    Ok(())
}

/// The swarm's join token for `role` (worker or manager).
fn join_token<'a>(swarm: &'a wire::Swarm, role: &str) -> &'a str {
    let tokens = swarm.docker.join_tokens.as_ref();
    let token = match role {
        "worker" => tokens.and_then(|t| t.worker.as_deref()),
        _ => tokens.and_then(|t| t.manager.as_deref()),
    };
    token.unwrap_or("")
}

/// The address this node tells others to join at (`/info`'s `Swarm.NodeAddr`).
async fn node_addr(client: &Client) -> anyhow::Result<String> {
    let info: wire::Info = client.get_as("/info").await?;
    Ok(info
        .swarm
        .and_then(|s| s.docker.node_addr)
        .unwrap_or_default())
}
