//! `shoal swarm backup FILE` and `shoal swarm restore FILE` (shoal's own:
//! docker backs a swarm up by copying its data directory with the daemon
//! stopped). See docs/upgrades.md, "Backup and restore".

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hyper::body::Bytes;
use hyper::Method;
use shoal_node::backup::Backup;

use crate::client::{enc, Client};

#[derive(Args)]
pub struct BackupArgs {
    /// Where to write the backup (created with mode 0600)
    file: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// Advertised address (format: <ip|interface>[:port])
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Listen address (format: <ip|interface>[:port]; default: the daemon's --listen-addr)
    #[arg(long)]
    listen_addr: Option<String>,
    /// A file written by `shoal swarm backup`
    file: PathBuf,
}

pub async fn backup(client: &Client, a: BackupArgs) -> anyhow::Result<()> {
    let bytes = client
        .exchange_bytes(Method::GET, "/swarm/backup", Bytes::new(), &[])
        .await?;
    let backup = Backup::from_bytes(&bytes).context("the daemon's answer")?;
    // 0600 whatever the umask, through a temporary file beside it.
    shoal_node::keys::write_private(&a.file, &bytes)?;
    println!(
        "Swarm backed up to {} ({} bytes, Raft index {}{}).",
        a.file.display(),
        bytes.len(),
        backup.index,
        if backup.is_sealed() {
            "; a restore needs the swarm's unlock key"
        } else {
            "; it holds the swarm's CA key: keep it as safe as the data directory"
        }
    );
    Ok(())
}

pub async fn restore(client: &Client, a: RestoreArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("{}", a.file.display()))?;
    // Read here first: a damaged file is refused before it is sent, and
    // the key is asked for only when the backup is sealed.
    let backup = Backup::from_bytes(&bytes)?;
    let mut key = String::new();
    if backup.is_sealed() {
        eprint!("Please enter unlock key: ");
        std::io::stdin().lock().read_line(&mut key)?;
    }
    let key = key.trim();
    let headers: Vec<(&str, &str)> = match key.is_empty() {
        true => Vec::new(),
        false => vec![(shoal_node::api::backup::UNLOCK_KEY_HEADER, key)],
    };
    let mut query = Vec::new();
    if let Some(l) = &a.listen_addr {
        query.push(format!("listenAddr={}", enc(l)));
    }
    if let Some(ad) = &a.advertise_addr {
        query.push(format!("advertiseAddr={}", enc(ad)));
    }
    let path = match query.is_empty() {
        true => "/swarm/restore".to_string(),
        false => format!("/swarm/restore?{}", query.join("&")),
    };
    let answer = client
        .exchange_bytes(Method::POST, &path, Bytes::from(bytes), &headers)
        .await?;
    let node_id: String = serde_json::from_slice(&answer).context("the daemon's answer")?;
    println!(
        "Swarm restored from {} at Raft index {}: current node ({node_id}) is its only manager.",
        a.file.display(),
        backup.index
    );
    println!("Other managers of the backup are now workers; remove them and join new managers with 'shoal swarm join-token manager'.");
    Ok(())
}
