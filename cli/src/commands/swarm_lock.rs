//! `swarm unlock`, `swarm unlock-key [-q] [--rotate]`, `swarm update
//! --autolock`: docker's words and shapes.

use std::io::BufRead;

use clap::Args;
use serde_json::{json, Value};

use crate::client::Client;
use crate::output::s;

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
        .post("/swarm/unlock", json!({ "UnlockKey": key.trim() }))
        .await?;
    Ok(())
}

pub async fn unlock_key(client: &Client, a: UnlockKeyArgs) -> anyhow::Result<()> {
    if a.rotate {
        client
            .post("/swarm/update?rotateManagerUnlockKey=true", json!({}))
            .await?;
        if !a.quiet {
            println!("Successfully rotated manager unlock key.\n");
        }
    }
    let v = client.get("/swarm/unlockkey").await?;
    let key = s(&v, "/UnlockKey");
    if a.quiet {
        println!("{key}");
    } else {
        print_unlock_key(key);
    }
    Ok(())
}

pub async fn update(client: &Client, a: UpdateArgs) -> anyhow::Result<()> {
    let mut body = json!({});
    if let Some(on) = a.autolock {
        body["EncryptionConfig"] = json!({ "AutoLockManagers": on });
    }
    let mut orchestration = serde_json::Map::new();
    if let Some(n) = a.task_history_limit {
        orchestration.insert("TaskHistoryRetentionLimit".into(), json!(n));
    }
    if let Some(r) = &a.rebalance {
        orchestration.insert("Rebalance".into(), json!(r == "on"));
    }
    if !orchestration.is_empty() {
        body["Orchestration"] = Value::Object(orchestration);
    }
    client.post("/swarm/update", body).await?;
    println!("Swarm updated.");
    if a.autolock == Some(true) {
        let v = client.get("/swarm/unlockkey").await?;
        println!("You can unlock a swarm manager after it restarts with the following key:\n");
        println!("    {}\n", s(&v, "/UnlockKey"));
        println!("Please remember to store this key in a password manager, since without it you");
        println!("will not be able to restart the manager.");
    }
    Ok(())
}
