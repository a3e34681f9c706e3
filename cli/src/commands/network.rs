//! `shoal network create|ls|inspect|rm|prune|connect|disconnect`: the
//! swarm's overlay networks (`ingress` among them) and the node's task
//! bridge, in docker's columns and shapes; `connect` joins a container of
//! this node's engine to an attachable network.

use anyhow::anyhow;
use clap::Subcommand;
use std::collections::{BTreeMap, HashMap};

use shoal_node::api::wire;

use crate::client::{enc, Client};
use crate::filter::{prefix, Filters};
use crate::output::{print_inspect, print_rows, short_id, ListArgs, Row};

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long, default_value = "overlay")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    subnet: Vec<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    gateway: Vec<String>,
    /// Enable manual container attachment
    #[arg(long)]
    attachable: bool,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Set metadata on a network
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// Set driver specific options (encrypted=false: the kernel VXLAN fast path, plaintext)
    #[arg(short, long = "opt")]
    opt: Vec<String>,
    /// Network name
    name: String,
}

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove all unused networks
    Prune {
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (e.g. "label=<key>=<value>")
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
    /// List networks
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Connect a container of this node's Docker engine to an attachable network
    Connect {
        /// IPv4 address (from this node's block of the network)
        #[arg(long)]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Force the container to disconnect from a network
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Display detailed information on one or more networks
    Inspect {
        /// Format output using a custom template: json, or a Go template
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

fn map(list: &[String]) -> HashMap<String, String> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

async fn create(client: &Client, a: CreateArgs) -> anyhow::Result<()> {
    if a.subnet.len() > 1 || a.gateway.len() > 1 {
        return Err(anyhow!(
            "an overlay network takes one subnet and one gateway"
        ));
    }
    if !a.gateway.is_empty() && a.subnet.is_empty() {
        return Err(anyhow!(
            "every ip-range or gateway must have a corresponding subnet"
        ));
    }
    let config = match (a.subnet.first(), a.gateway.first()) {
        (None, None) => Vec::new(),
        (subnet, gateway) => vec![wire::IpamConfig {
            subnet: subnet.cloned(),
            gateway: gateway.cloned(),
            ..Default::default()
        }],
    };
    let body = wire::docker::NetworkCreateRequest {
        name: a.name,
        driver: Some(a.driver),
        attachable: Some(a.attachable),
        internal: Some(a.internal),
        labels: Some(map(&a.label)),
        options: Some(map(&a.opt)),
        ipam: Some(wire::Ipam {
            driver: Some("default".into()),
            config: Some(config),
            options: None,
        }),
        ..Default::default()
    };
    let made: wire::NetworkCreateResponse = client.post_as("/networks/create", &body).await?;
    println!("{}", made.id);
    Ok(())
}

pub async fn run(client: &Client, cmd: NetworkCmd) -> anyhow::Result<()> {
    match cmd {
        NetworkCmd::Create(a) => create(client, a).await?,
        NetworkCmd::Rm { networks } => {
            let mut failed = false;
            for n in &networks {
                match client.delete(&format!("/networks/{}", enc(n))).await {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(crate::output::Failed(1).into());
            }
        }
        NetworkCmd::Prune { force, filter } => {
            if !force {
                use std::io::{BufRead, Write};
                print!("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ");
                std::io::stdout().flush()?;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    return Ok(());
                }
            }
            let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for f in &filter {
                let (k, v) = f
                    .split_once('=')
                    .ok_or_else(|| anyhow!("bad format of filter (expected name=value)"))?;
                if k != "label" {
                    return Err(anyhow!("invalid filter '{k}'"));
                }
                filters
                    .entry(k.to_string())
                    .or_default()
                    .push(v.to_string());
            }
            let path = match filters.is_empty() {
                true => "/networks/prune".to_string(),
                false => format!(
                    "/networks/prune?filters={}",
                    enc(&serde_json::to_string(&filters)?)
                ),
            };
            let out: wire::NetworkPruneResponse = client.post_as(&path, &wire::Empty {}).await?;
            let deleted = out.networks_deleted.unwrap_or_default();
            if !deleted.is_empty() {
                println!("Deleted Networks:");
                for d in deleted {
                    println!("{d}");
                }
            }
        }
        NetworkCmd::Ls(a) => {
            let list: Vec<wire::Network> = client.get_as("/networks").await?;
            let filters = Filters::parse(&a.filter, &["id", "name", "driver", "scope"])?;
            let text = |x: &Option<String>| x.clone().unwrap_or_default();
            let mut list: Vec<wire::docker::NetworkInspect> = list
                .into_iter()
                .map(|n| n.docker)
                .filter(|n| {
                    filters.allows("id", prefix(&text(&n.id)))
                        && filters.allows("name", |w| text(&n.name).contains(w))
                        && filters.allows("driver", |d| d == text(&n.driver))
                        && filters.allows("scope", |d| d == text(&n.scope))
                })
                .collect();
            list.sort_by_key(|n| text(&n.name));
            if a.quiet {
                for n in &list {
                    println!("{}", short_id(&text(&n.id)));
                }
                return Ok(());
            }
            let rows: Vec<Row> = list
                .iter()
                .map(|n| {
                    vec![
                        ("ID", short_id(&text(&n.id)).into()),
                        ("Name", text(&n.name).into()),
                        ("Driver", text(&n.driver).into()),
                        ("Scope", text(&n.scope).into()),
                    ]
                })
                .collect();
            print_rows(
                &rows,
                &["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                a.format.as_deref(),
            )?;
        }
        NetworkCmd::Connect {
            ip,
            network,
            container,
        } => {
            let body = wire::docker::NetworkConnectRequest {
                container,
                endpoint_config: ip.map(|ip| wire::docker::EndpointSettings {
                    ipam_config: Some(wire::docker::EndpointIpamConfig {
                        ipv4_address: Some(ip),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            };
            // The answer is a bare 200, no body.
            client
                .post(
                    &format!("/networks/{}/connect", enc(&network)),
                    serde_json::to_value(&body)?,
                )
                .await?;
        }
        NetworkCmd::Disconnect {
            force,
            network,
            container,
        } => {
            let body = wire::docker::NetworkDisconnectRequest {
                container,
                force: Some(force),
            };
            client
                .post(
                    &format!("/networks/{}/disconnect", enc(&network)),
                    serde_json::to_value(&body)?,
                )
                .await?;
        }
        NetworkCmd::Inspect { format, networks } => {
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for n in &networks {
                match client
                    .get_as::<wire::Network>(&format!("/networks/{}", enc(n)))
                    .await
                {
                    Ok(v) => found.push(serde_json::to_value(v)?),
                    Err(_) => missing.push(n.clone()),
                }
            }
            print_inspect(&found, format.as_deref())?;
            if !missing.is_empty() {
                for m in &missing {
                    eprintln!("Error: no such network: {m}");
                }
                return Err(crate::output::Failed(1).into());
            }
        }
    }
    Ok(())
}
