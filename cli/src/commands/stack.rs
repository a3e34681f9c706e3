//! `shoal stack deploy|ls|services|ps|rm`: docker's stack verbs, on the
//! objects docker's client makes (names `STACK_x`, the
//! `com.docker.stack.namespace` label), so either client manages a stack
//! the other deployed. The deploy itself is in `crate::stack`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use shoal_node::api::wire;

use super::service_view::{self, TaskList, TaskTableArgs, DESIRED_STATES, TASK_FILTERS};
use crate::client::{enc, Client};
use crate::filter::Filters;
use crate::output::{print_rows, ListArgs, Row};
use crate::stack::convert::LABEL_NAMESPACE;
use crate::stack::deploy::{self, stack_objects, stack_services};

#[derive(Subcommand)]
pub enum StackCmd {
    /// Deploy a new stack or update an existing stack
    #[command(alias = "up")]
    Deploy(DeployArgs),
    /// List stacks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// List the services in the stack
    Services(ServicesArgs),
    /// List the tasks in the stack
    Ps(StackPsArgs),
    /// Remove one or more stacks
    #[command(alias = "remove", alias = "down")]
    Rm(RmArgs),
}

#[derive(Args)]
pub struct DeployArgs {
    /// Path to a Compose file
    #[arg(short = 'c', long = "compose-file", required = true)]
    compose_file: Vec<PathBuf>,
    /// Prune services that are no longer referenced
    #[arg(long)]
    prune: bool,
    /// Query the registry to resolve image digest and supported platforms ("always", "changed", "never")
    #[arg(long, default_value = "always", value_parser = ["always", "changed", "never"])]
    resolve_image: String,
    /// Send registry authentication details to Swarm agents (no registry here: accepted, unused)
    #[arg(long)]
    with_registry_auth: bool,
    /// Exit immediately instead of waiting for the stack services to converge
    #[arg(short, long)]
    detach: bool,
    /// Suppress progress output
    #[arg(short, long)]
    quiet: bool,
    /// Print what would be created, updated (field by field) and removed, and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Stack name
    stack: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Format output: table, json, or a Go template like '{{.Name}}'
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    list: ListArgs,
    /// Stack name
    stack: String,
}

#[derive(Args)]
pub struct StackPsArgs {
    #[command(flatten)]
    table: TaskTableArgs,
    /// Do not map IDs to Names (accepted; names are shown)
    #[arg(long)]
    no_resolve: bool,
    /// Stack name
    stack: String,
}

#[derive(Args)]
pub struct RmArgs {
    /// Do not wait for stack removal
    #[arg(short, long, default_value_t = true)]
    detach: bool,
    #[arg(required = true)]
    stacks: Vec<String>,
}

/// docker's rule for a stack name.
fn check_name(stack: &str) -> anyhow::Result<()> {
    if stack.is_empty()
        || !stack
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(anyhow::anyhow!(
            "invalid stack name: {stack:?}: a stack name may hold letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

pub async fn run(client: &Client, cmd: StackCmd) -> anyhow::Result<()> {
    match cmd {
        StackCmd::Deploy(a) => {
            check_name(&a.stack)?;
            let loaded = crate::stack::load::load(&a.compose_file)?;
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            let plan = crate::stack::convert::plan(&loaded, &a.stack)?;
            let _ = (a.resolve_image, a.with_registry_auth);
            deploy::deploy(
                client,
                plan,
                &deploy::Options {
                    stack: a.stack,
                    prune: a.prune,
                    detach: a.detach,
                    dry_run: a.dry_run,
                    quiet: a.quiet,
                },
            )
            .await
        }
        StackCmd::Ls(a) => ls(client, a).await,
        StackCmd::Services(a) => {
            let services = stack_services(client, &a.stack).await?;
            if services.is_empty() {
                eprintln!("Nothing found in stack: {}", a.stack);
                return Ok(());
            }
            let mut list = a.list;
            list.filter
                .push(format!("label={LABEL_NAMESPACE}={}", a.stack));
            service_view::ls(client, list).await
        }
        StackCmd::Ps(a) => ps(client, a).await,
        StackCmd::Rm(a) => rm(client, a).await,
    }
}

async fn ls(client: &Client, a: LsArgs) -> anyhow::Result<()> {
    let all: Vec<wire::Service> = client.get_as("/services").await?;
    let mut stacks: BTreeMap<String, usize> = BTreeMap::new();
    for s in &all {
        if let Some(ns) = s
            .spec
            .as_ref()
            .and_then(|s| s.docker.labels.as_ref())
            .and_then(|l| l.get(LABEL_NAMESPACE))
        {
            *stacks.entry(ns.clone()).or_default() += 1;
        }
    }
    let rows: Vec<Row> = stacks
        .iter()
        .map(|(name, n)| {
            vec![
                ("Name", name.clone().into()),
                ("Services", n.to_string().into()),
            ]
        })
        .collect();
    print_rows(&rows, &["NAME", "SERVICES"], a.format.as_deref())?;
    Ok(())
}

async fn ps(client: &Client, p: StackPsArgs) -> anyhow::Result<()> {
    let a = &p.table;
    let filters = Filters::parse(&a.filter, TASK_FILTERS)?;
    filters.check_values("desired-state", DESIRED_STATES)?;
    let services = stack_services(client, &p.stack).await?;
    if services.is_empty() {
        eprintln!("Nothing found in stack: {}", p.stack);
        return Ok(());
    }
    let nodes: Vec<wire::Node> = client.get_as("/nodes").await?;
    let mut list = TaskList::default();
    for svc in services.values() {
        let id = svc.docker.id.clone().unwrap_or_default();
        let tasks: Vec<wire::Task> = client
            .get_as(&format!("/tasks?service={}", enc(&id)))
            .await?;
        list.add(tasks, &nodes, &filters, a.no_trunc);
    }
    let _ = p.no_resolve;
    list.print(a.quiet, a.format.as_deref())?;
    Ok(())
}

/// `stack rm`: services, then networks, secrets and configs with the
/// stack's label, in docker's order and words.
async fn rm(client: &Client, a: RmArgs) -> anyhow::Result<()> {
    let _ = a.detach;
    let mut failed = false;
    for stack in &a.stacks {
        let services = stack_services(client, stack).await?;
        let networks = stack_objects(client, "networks", stack).await?;
        let secrets = stack_objects(client, "secrets", stack).await?;
        let configs = stack_objects(client, "configs", stack).await?;
        if services.is_empty() && networks.is_empty() && secrets.is_empty() && configs.is_empty() {
            eprintln!("Nothing found in stack: {stack}");
            continue;
        }
        for (name, svc) in &services {
            println!("Removing service {name}");
            let id = svc.docker.id.clone().unwrap_or_default();
            if let Err(e) = client.delete(&format!("/services/{}", enc(&id))).await {
                eprintln!("Failed to remove service {id}: {e}");
                failed = true;
            }
        }
        for (kind, objects) in [
            ("secret", &secrets),
            ("config", &configs),
            ("network", &networks),
        ] {
            for (name, id) in objects {
                println!("Removing {kind} {name}");
                if let Err(e) = remove_object(client, kind, id).await {
                    eprintln!("Failed to remove {kind} {id}: {e}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        return Err(crate::output::Failed(1).into());
    }
    Ok(())
}

/// Removes an object; a network still held by a removed service's tasks
/// is retried for a while, as they stop.
async fn remove_object(client: &Client, kind: &str, id: &str) -> anyhow::Result<()> {
    let path = format!("/{kind}s/{}", enc(id));
    let mut tries = 0;
    loop {
        match client.delete(&path).await {
            Ok(_) => return Ok(()),
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
