//! `shoal swarm ...`.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::client::Client;
use crate::output::s;

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
            let node_id = client
                .post(
                    "/swarm/init",
                    json!({
                        "ListenAddr": a.listen_addr,
                        "ForceNewCluster": a.force_new_cluster,
                        "AdvertiseAddr": a.advertise_addr,
                        "AutoLockManagers": a.autolock,
                        "DefaultAddrPool": a.default_addr_pool,
                        "SubnetSize": a.default_addr_pool_mask_length,
                        "Spec": {
                            "Orchestration": { "TaskHistoryRetentionLimit": a.task_history_limit },
                            "Raft": { "SnapshotInterval": a.snapshot_interval },
                        },
                    }),
                )
                .await?;
            let swarm = client.get("/swarm").await?;
            let info = client.get("/info").await?;
            println!(
                "Swarm initialized: current node ({}) is now a manager.\n",
                node_id.as_str().unwrap_or_default()
            );
            println!("To add a worker to this swarm, run the following command:\n");
            println!(
                "    shoal swarm join --token {} {}\n",
                s(&swarm, "/JoinTokens/Worker"),
                s(&info, "/Swarm/NodeAddr")
            );
            println!("To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.\n");
            if a.autolock {
                let v = client.get("/swarm/unlockkey").await?;
                super::swarm_lock::print_unlock_key(s(&v, "/UnlockKey"));
            }
        }
        SwarmCmd::Unlock => super::swarm_lock::unlock(client).await?,
        SwarmCmd::UnlockKey(a) => super::swarm_lock::unlock_key(client, a).await?,
        SwarmCmd::Update(a) => super::swarm_lock::update(client, a).await?,
        SwarmCmd::Join(a) => {
            client
                .post(
                    "/swarm/join",
                    json!({
                        "JoinToken": a.token,
                        "RemoteAddrs": [a.remote],
                        "ListenAddr": a.listen_addr,
                        "AdvertiseAddr": a.advertise_addr,
                        "Availability": a.availability,
                    }),
                )
                .await?;
            let info = client.get("/info").await?;
            if info
                .pointer("/Swarm/ControlAvailable")
                .and_then(|v| v.as_bool())
                == Some(true)
            {
                println!("This node joined a swarm as a manager.");
            } else {
                println!("This node joined a swarm as a worker.");
            }
        }
        SwarmCmd::Leave(a) => {
            client
                .post(&format!("/swarm/leave?force={}", a.force), json!({}))
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
                    .post(&format!("/swarm/update?{param}=true"), json!({}))
                    .await?;
                if !a.quiet {
                    println!("Successfully rotated {} join token.\n", a.role);
                }
            }
            let swarm = client.get("/swarm").await?;
            let key = if a.role == "worker" {
                "/JoinTokens/Worker"
            } else {
                "/JoinTokens/Manager"
            };
            let token = s(&swarm, key);
            if a.quiet {
                println!("{token}");
            } else {
                let info = client.get("/info").await?;
                println!(
                    "To add a {} to this swarm, run the following command:\n",
                    a.role
                );
                println!(
                    "    shoal swarm join --token {token} {}\n",
                    s(&info, "/Swarm/NodeAddr")
                );
            }
        }
    }
    Ok(())
}
