//! `shoal volume create|ls|inspect|rm|prune`: the node's own volumes (the
//! ones its process tasks mount), as `docker volume` shows an engine's. The
//! node asked is the one whose volumes these are.

use anyhow::anyhow;
use clap::Subcommand;
use std::collections::BTreeMap;

use shoal_node::api::wire::{
    self,
    docker::{Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse},
};

use crate::client::{enc, Client};
use crate::output::{print_inspect, print_rows, ListArgs, Row};

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create {
        /// Specify volume driver name (only "local")
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Set metadata for a volume
        #[arg(long = "label")]
        label: Vec<String>,
        /// Specify volume name
        name: Option<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more volumes
    Inspect {
        /// Format output using a custom template: json, or a Go template
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm {
        /// Do not fail for a volume that does not exist
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused volumes
    Prune {
        /// Remove all unused volumes, not just anonymous ones (what API 1.41 prunes anyway)
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (e.g. "label=<label>")
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
}

/// `--filter k=v` flags as docker's `filters` JSON.
fn filters_json(flags: &[String]) -> anyhow::Result<Option<String>> {
    let mut m: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in flags {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("bad format of filter (expected name=value)"))?;
        m.entry(k.to_string())
            .or_default()
            .insert(v.to_string(), true);
    }
    Ok((!m.is_empty())
        .then(|| serde_json::to_string(&m))
        .transpose()?)
}

pub async fn run(client: &Client, cmd: VolumeCmd) -> anyhow::Result<()> {
    match cmd {
        VolumeCmd::Create {
            driver,
            label,
            name,
        } => {
            let labels = label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let body = VolumeCreateRequest {
                name: Some(name.unwrap_or_default()),
                driver: Some(driver),
                labels: Some(labels),
                ..Default::default()
            };
            let made: Volume = client.post_as("/volumes/create", &body).await?;
            println!("{}", made.name);
        }
        VolumeCmd::Ls(a) => {
            let path = match filters_json(&a.filter)? {
                Some(f) => format!("/volumes?filters={}", enc(&f)),
                None => "/volumes".into(),
            };
            let list: VolumeListResponse = client.get_as(&path).await?;
            let vols = list.volumes.unwrap_or_default();
            if a.quiet {
                for v in &vols {
                    println!("{}", v.name);
                }
                return Ok(());
            }
            let rows: Vec<Row> = vols
                .iter()
                .map(|v| {
                    vec![
                        ("Driver", v.driver.clone().into()),
                        ("Name", v.name.clone().into()),
                        (
                            "Scope",
                            v.scope.map(|x| x.to_string()).unwrap_or_default().into(),
                        ),
                        ("Mountpoint", v.mountpoint.clone().into()),
                    ]
                })
                .collect();
            print_rows(&rows, &["DRIVER", "VOLUME NAME"], a.format.as_deref())?;
        }
        VolumeCmd::Inspect { format, volumes } => {
            let mut found = Vec::new();
            let mut failed = false;
            for v in &volumes {
                match client
                    .get_as::<Volume>(&format!("/volumes/{}", enc(v)))
                    .await
                {
                    Ok(v) => found.push(serde_json::to_value(v)?),
                    Err(_) => {
                        eprintln!("Error: No such volume: {v}");
                        failed = true;
                    }
                }
            }
            print_inspect(&found, format.as_deref())?;
            if failed {
                return Err(crate::output::Failed(1).into());
            }
        }
        VolumeCmd::Rm { force, volumes } => {
            let mut failed = false;
            for v in &volumes {
                let path = format!("/volumes/{}{}", enc(v), if force { "?force=1" } else { "" });
                match client.delete(&path).await {
                    Ok(_) => println!("{v}"),
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
        VolumeCmd::Prune { all, force, filter } => {
            if !force {
                use std::io::{BufRead, Write};
                let what = if all {
                    "all local volumes not used by at least one container"
                } else {
                    "anonymous local volumes not used by at least one container"
                };
                print!(
                    "WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] "
                );
                std::io::stdout().flush()?;
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    return Ok(());
                }
            }
            let mut flags = filter.clone();
            if all {
                flags.push("all=true".into());
            }
            let path = match filters_json(&flags)? {
                Some(f) => format!("/volumes/prune?filters={}", enc(&f)),
                None => "/volumes/prune".into(),
            };
            let out: VolumePruneResponse = client.post_as(&path, &wire::Empty {}).await?;
            let deleted = out.volumes_deleted.unwrap_or_default();
            if !deleted.is_empty() {
                println!("Deleted Volumes:");
                for d in &deleted {
                    println!("{d}");
                }
                println!();
            }
            let reclaimed = u64::try_from(out.space_reclaimed.unwrap_or(0)).unwrap_or(0);
            println!(
                "Total reclaimed space: {}",
                crate::pretty::human_size(reclaimed)
            );
        }
    }
    Ok(())
}
