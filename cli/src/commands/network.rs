//! `shoal network ls|inspect`: the swarm's `ingress` network and the node's
//! task bridge, in docker's columns and shapes.

use clap::Subcommand;
use serde_json::Value;

use crate::client::{enc, Client};
use crate::filter::{prefix, Filters};
use crate::output::{print_inspect, print_rows, s, short_id, ListArgs, Row};

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// List networks
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more networks
    Inspect {
        /// Format output using a custom template: json, or a Go template
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

pub async fn run(client: &Client, cmd: NetworkCmd) -> anyhow::Result<()> {
    match cmd {
        NetworkCmd::Ls(a) => {
            let list: Vec<Value> = match client.get("/networks").await? {
                Value::Array(a) => a,
                _ => Vec::new(),
            };
            let filters = Filters::parse(&a.filter, &["id", "name", "driver", "scope"])?;
            let mut list: Vec<Value> = list
                .into_iter()
                .filter(|n| {
                    filters.allows("id", prefix(s(n, "/Id")))
                        && filters.allows("name", |w| s(n, "/Name").contains(w))
                        && filters.allows("driver", |d| d == s(n, "/Driver"))
                        && filters.allows("scope", |d| d == s(n, "/Scope"))
                })
                .collect();
            list.sort_by(|x, y| s(x, "/Name").cmp(s(y, "/Name")));
            if a.quiet {
                for n in &list {
                    println!("{}", short_id(s(n, "/Id")));
                }
                return Ok(());
            }
            let rows: Vec<Row> = list
                .iter()
                .map(|n| {
                    vec![
                        ("ID", short_id(s(n, "/Id")).into()),
                        ("Name", s(n, "/Name").into()),
                        ("Driver", s(n, "/Driver").into()),
                        ("Scope", s(n, "/Scope").into()),
                    ]
                })
                .collect();
            print_rows(
                &rows,
                &["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                a.format.as_deref(),
            )?;
        }
        NetworkCmd::Inspect { format, networks } => {
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for n in &networks {
                match client.get(&format!("/networks/{}", enc(n))).await {
                    Ok(v) => found.push(v),
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
