//! `shoal secret` and `shoal config`: create, ls, inspect, rm, and (beyond
//! docker) update, which replaces the value in place and rolls every
//! service that uses it. A secret's value is read from a file or stdin and
//! sent once; nothing ever prints it.

use std::io::Read;

use anyhow::Context;
use base64::Engine as _;
use clap::Subcommand;
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use shoal_node::api::wire;

use crate::client::{enc, Client};
use crate::filter::{prefix, Filters};
use crate::output::{ago_at, print_inspect, print_rows, ListArgs, Row};

#[derive(Subcommand)]
pub enum ObjectCmd {
    /// Create from a file or STDIN as content
    Create {
        /// Labels
        #[arg(short, long = "label")]
        label: Vec<String>,
        name: String,
        /// A file, or - for STDIN
        file: String,
    },
    /// List
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more
    Inspect {
        /// Format output using a custom template: json, or a Go template
        #[arg(short, long)]
        format: Option<String>,
        /// Print the information in a human friendly format
        #[arg(long)]
        pretty: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Replace the value in place, rolling every service that uses it
    Update { name: String, file: String },
}

#[derive(Clone, Copy)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Kind::Secret => "/secrets",
            Kind::Config => "/configs",
        }
    }
}

/// The value, from `file` or stdin (`-`), read no further than the limit
/// and a byte (so the daemon reports the limit, in swarmkit's words).
fn read_value(file: &str) -> anyhow::Result<Vec<u8>> {
    let limit = 1000 * 1024 + 1;
    let mut data = Vec::new();
    if file == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut data)
            .context("cannot read STDIN")?;
    } else {
        std::fs::File::open(file)
            .with_context(|| format!("open {file}"))?
            .take(limit)
            .read_to_end(&mut data)
            .with_context(|| format!("read {file}"))?;
    }
    Ok(data)
}

fn labels(list: &[String]) -> HashMap<String, String> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// A secret or a config as the daemon shows it: the Engine API's `Secret`
/// or `Config` (they differ only in their spec's type).
enum Object {
    Secret(wire::Secret),
    Config(wire::Config),
}

/// The fields the commands read, whichever the kind.
struct Fields<'a> {
    id: &'a str,
    name: &'a str,
    labels: Option<&'a HashMap<String, String>>,
    created_at: Option<&'a str>,
    updated_at: Option<&'a str>,
    data: Option<&'a str>,
    data_version: u64,
}

/// The fields a secret and a config share (bollard has a type for each).
macro_rules! fields_of {
    ($o:expr) => {{
        let spec = $o.docker.spec.as_ref();
        Fields {
            id: $o.docker.id.as_deref().unwrap_or(""),
            name: spec.and_then(|s| s.name.as_deref()).unwrap_or(""),
            labels: spec.and_then(|s| s.labels.as_ref()),
            created_at: $o.docker.created_at.as_deref(),
            updated_at: $o.docker.updated_at.as_deref(),
            data: spec.and_then(|s| s.data.as_deref()),
            data_version: $o.data_version.unwrap_or(0),
        }
    }};
}

impl Object {
    fn fields(&self) -> Fields<'_> {
        match self {
            Object::Secret(o) => fields_of!(o),
            Object::Config(o) => fields_of!(o),
        }
    }

    /// As JSON, for `inspect` and `--format`.
    fn json(&self) -> anyhow::Result<Value> {
        Ok(match self {
            Object::Secret(o) => serde_json::to_value(o)?,
            Object::Config(o) => serde_json::to_value(o)?,
        })
    }
}

async fn get_one(client: &Client, kind: Kind, key: &str) -> anyhow::Result<Object> {
    let path = format!("{}/{}", kind.path(), enc(key));
    Ok(match kind {
        Kind::Secret => Object::Secret(client.get_as(&path).await?),
        Kind::Config => Object::Config(client.get_as(&path).await?),
    })
}

async fn list(client: &Client, kind: Kind) -> anyhow::Result<Vec<Object>> {
    Ok(match kind {
        Kind::Secret => client
            .get_as::<Vec<wire::Secret>>(kind.path())
            .await?
            .into_iter()
            .map(Object::Secret)
            .collect(),
        Kind::Config => client
            .get_as::<Vec<wire::Config>>(kind.path())
            .await?
            .into_iter()
            .map(Object::Config)
            .collect(),
    })
}

fn pretty(kind: Kind, o: &Object) -> String {
    let f = o.fields();
    let mut out = format!("ID:              {}\nName:            {}\n", f.id, f.name);
    if let Some(l) = f.labels.filter(|l| !l.is_empty()) {
        out.push_str("Labels:\n");
        let sorted: BTreeMap<&String, &String> = l.iter().collect();
        for (k, val) in sorted {
            out.push_str(&format!(" - {k}={val}\n"));
        }
    }
    if let Kind::Secret = kind {
        out.push_str("Driver:          \n");
    }
    out.push_str(&format!(
        "Created at:      {}\nUpdated at:      {}\nData version:    {}\n",
        f.created_at.unwrap_or(""),
        f.updated_at.unwrap_or(""),
        f.data_version
    ));
    if let Kind::Config = kind {
        let data = base64::engine::general_purpose::STANDARD
            .decode(f.data.unwrap_or(""))
            .unwrap_or_default();
        out.push_str("Data:\n");
        out.push_str(&String::from_utf8_lossy(&data));
        if !data.ends_with(b"\n") {
            out.push('\n');
        }
    }
    out
}

pub async fn run(client: &Client, kind: Kind, cmd: ObjectCmd) -> anyhow::Result<()> {
    match cmd {
        ObjectCmd::Create { label, name, file } => {
            let data = read_value(&file)?;
            let body = wire::SecretSpec {
                name: Some(name),
                labels: Some(labels(&label)),
                data: Some(base64::engine::general_purpose::STANDARD.encode(&data)),
                ..Default::default()
            };
            let created: wire::Created = client
                .post_as(&format!("{}/create", kind.path()), &body)
                .await?;
            println!("{}", created.id);
        }
        ObjectCmd::Update { name, file } => {
            let data = read_value(&file)?;
            // shoal's rotation: a new `Data` in place (docs/secrets.md).
            let body = wire::Secret {
                docker: wire::docker::Secret {
                    spec: Some(wire::SecretSpec {
                        data: Some(base64::engine::general_purpose::STANDARD.encode(&data)),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                data_version: None,
            };
            client
                .post(
                    &format!("{}/{}/update", kind.path(), enc(&name)),
                    serde_json::to_value(&body)?,
                )
                .await?;
            println!("{name}");
        }
        ObjectCmd::Ls(a) => {
            let list = list(client, kind).await?;
            let filters = Filters::parse(&a.filter, &["id", "name", "label"])?;
            let list: Vec<Fields> = list
                .iter()
                .map(Object::fields)
                .filter(|o| {
                    filters.allows("id", prefix(o.id))
                        && filters.allows("name", prefix(o.name))
                        && filters.allows_labels("label", o.labels)
                })
                .collect();
            if a.quiet {
                for o in &list {
                    println!("{}", o.id);
                }
                return Ok(());
            }
            let rows: Vec<Row> = list
                .iter()
                .map(|o| {
                    let mut row: Row = vec![("ID", o.id.into()), ("Name", o.name.into())];
                    if let Kind::Secret = kind {
                        row.push(("Driver", "".into()));
                    }
                    row.push(("CreatedAt", ago_at(o.created_at).into()));
                    row.push(("UpdatedAt", ago_at(o.updated_at).into()));
                    row
                })
                .collect();
            let headers: &[&str] = match kind {
                Kind::Secret => &["ID", "NAME", "DRIVER", "CREATED", "UPDATED"],
                Kind::Config => &["ID", "NAME", "CREATED", "UPDATED"],
            };
            print_rows(&rows, headers, a.format.as_deref())?;
        }
        ObjectCmd::Inspect {
            format,
            pretty: human,
            names,
        } => {
            let mut found = Vec::new();
            let mut missing = Vec::new();
            for n in &names {
                match get_one(client, kind, n).await {
                    Ok(o) => found.push(o),
                    Err(_) => missing.push(n.clone()),
                }
            }
            if human {
                let text: Vec<String> = found.iter().map(|o| pretty(kind, o)).collect();
                print!("{}", text.join("\n\n"));
            } else {
                let found = found
                    .iter()
                    .map(Object::json)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                print_inspect(&found, format.as_deref())?;
            }
            if !missing.is_empty() {
                for m in &missing {
                    eprintln!("Error: no such {}: {m}", kind.word());
                }
                return Err(crate::output::Failed(1).into());
            }
        }
        ObjectCmd::Rm { names } => {
            let mut failed = false;
            for n in &names {
                match client.delete(&format!("{}/{}", kind.path(), enc(n))).await {
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
    }
    Ok(())
}
