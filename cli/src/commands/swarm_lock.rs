//! `swarm unlock`, `swarm unlock-key [-q] [--rotate]`, `swarm update
//! --autolock`: docker's words and shapes.

use std::io::BufRead;

use clap::Args;
use serde_json::Value;
use shoal_node::api::wire;

use crate::client::Client;

#[derive(Args)]
pub struct UnlockKeyArgs {
    /// Only display the unlock key
    #[arg(short, long)]
    quiet: bool,
    /// Rotate unlock key
    #[arg(long)]
    rotate: bool,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Change manager autolocking setting (true|false)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = clap::value_parser!(bool))]
    autolock: Option<bool>,
    /// Task history retention limit
    #[arg(long)]
    task_history_limit: Option<u64>,
    /// Move replicas onto nodes that become ready or active (shoal's; default off)
    #[arg(long, value_parser = ["on", "off"])]
    rebalance: Option<String>,
}

/// docker's text around an unlock key.
pub fn print_unlock_key(key: &str) {
    println!("To unlock a swarm manager after it restarts, run the `shoal swarm unlock`");
    println!("command and provide the following key:\n");
    println!("    {key}\n");
    println!("Please remember to store this key in a password manager, since without it you");
    println!("will not be able to restart the manager.");
}

pub async fn unlock(client: &Client) -> anyhow::Result<()> {
    eprint!("Please enter unlock key: ");
    let mut key = String::new();
    std::io::stdin().lock().read_line(&mut key)?;
    client
        .post_as::<_, Value>(
            "/swarm/unlock",
            &wire::SwarmUnlockRequest {
                unlock_key: Some(key.trim().to_string()),
            },
        )
        .await?;
    Ok(())
}

pub async fn unlock_key(client: &Client, a: UnlockKeyArgs) -> anyhow::Result<()> {
    if a.rotate {
        client
            .post_empty("/swarm/update?rotateManagerUnlockKey=true")
            .await?;
        if !a.quiet {
            println!("Successfully rotated manager unlock key.\n");
        }
    }
    let v: wire::UnlockKeyResponse = client.get_as("/swarm/unlockkey").await?;
    let key = v.unlock_key.as_deref().unwrap_or("");
    if a.quiet {
        println!("{key}");
    } else {
        print_unlock_key(key);
    }
    Ok(())
}

pub async fn update(client: &Client, a: UpdateArgs) -> anyhow::Result<()> {
    // Only what was asked: the daemon keeps the rest.
    let orchestration = wire::Orchestration {
        docker: wire::docker::SwarmSpecOrchestration {
            task_history_retention_limit: a.task_history_limit.map(wire::int),
        },
        rebalance: a.rebalance.as_ref().map(|r| r == "on"),
    };
    let body = wire::SwarmSpec {
        docker: wire::docker::SwarmSpec {
            encryption_config: a.autolock.map(|on| wire::SwarmSpecEncryptionConfig {
                auto_lock_managers: Some(on),
            }),
            ..Default::default()
        },
        orchestration: (orchestration != wire::Orchestration::default()).then_some(orchestration),
    };
    client
        .post("/swarm/update", serde_json::to_value(&body)?)
        .await?;
    println!("Swarm updated.");
    if a.autolock == Some(true) {
        let v: wire::UnlockKeyResponse = client.get_as("/swarm/unlockkey").await?;
        println!("You can unlock a swarm manager after it restarts with the following key:\n");
        println!("    {}\n", v.unlock_key.as_deref().unwrap_or(""));
        println!("Please remember to store this key in a password manager, since without it you");
        println!("will not be able to restart the manager.");
    }
    Ok(())
}
