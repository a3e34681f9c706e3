//! `shoal secret` and `shoal config`: create, ls, inspect, rm, and (beyond
//! docker) update, which replaces the value in place and rolls every
//! service that uses it. A secret's value is read from a file or stdin and
//! sent once; nothing ever prints it.

use std::io::Read;

use anyhow::Context;
use base64::Engine as _;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::{enc, Client};
use crate::filter::{prefix, Filters};
use crate::output::{ago, print_inspect, print_rows, s, ListArgs, Row};

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

fn labels(list: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for l in list {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        m.insert(k.to_string(), json!(v));
    }
    Value::Object(m)
}

fn pretty(kind: Kind, v: &Value) -> String {
    let mut out = format!(
        "ID:              {}\nName:            {}\n",
        s(v, "/ID"),
        s(v, "/Spec/Name")
    );
    if let Some(l) = v
        .pointer("/Spec/Labels")
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
    {
        out.push_str("Labels:\n");
        for (k, val) in l {
            out.push_str(&format!(" - {k}={}\n", val.as_str().unwrap_or("")));
        }
    }
    if let Kind::Secret = kind {
        out.push_str("Driver:          \n");
    }
    out.push_str(&format!(
        "Created at:      {}\nUpdated at:      {}\nData version:    {}\n",
        s(v, "/CreatedAt"),
        s(v, "/UpdatedAt"),
        v.pointer("/DataVersion")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    ));
    if let Kind::Config = kind {
        let data = base64::engine::general_purpose::STANDARD
            .decode(s(v, "/Spec/Data"))
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
            let body = json!({
                "Name": name,
                "Labels": labels(&label),
                "Data": base64::engine::general_purpose::STANDARD.encode(&data),
            });
            let v = client
                .post(&format!("{}/create", kind.path()), body)
                .await?;
            println!("{}", s(&v, "/ID"));
        }
        ObjectCmd::Update { name, file } => {
            let data = read_value(&file)?;
            let body = json!({ "Spec": {
                "Data": base64::engine::general_purpose::STANDARD.encode(&data),
            }});
            client
                .post(&format!("{}/{}/update", kind.path(), enc(&name)), body)
                .await?;
            println!("{name}");
        }
        ObjectCmd::Ls(a) => {
            let list: Vec<Value> = match client.get(kind.path()).await? {
                Value::Array(a) => a,
                _ => Vec::new(),
            };
            let filters = Filters::parse(&a.filter, &["id", "name", "label"])?;
            let list: Vec<&Value> = list
                .iter()
                .filter(|o| {
                    filters.allows("id", prefix(s(o, "/ID")))
                        && filters.allows("name", prefix(s(o, "/Spec/Name")))
                        && filters.allows_labels("label", &o["Spec"]["Labels"])
                })
                .collect();
            if a.quiet {
                for o in &list {
                    println!("{}", s(o, "/ID"));
                }
                return Ok(());
            }
            let rows: Vec<Row> = list
                .iter()
                .map(|o| {
                    let mut row: Row = vec![
                        ("ID", s(o, "/ID").into()),
                        ("Name", s(o, "/Spec/Name").into()),
                    ];
                    if let Kind::Secret = kind {
                        row.push(("Driver", "".into()));
                    }
                    row.push(("CreatedAt", ago(&o["CreatedAt"]).into()));
                    row.push(("UpdatedAt", ago(&o["UpdatedAt"]).into()));
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
                match client.get(&format!("{}/{}", kind.path(), enc(n))).await {
                    Ok(v) => found.push(v),
                    Err(_) => missing.push(n.clone()),
                }
            }
            if human {
                let text: Vec<String> = found.iter().map(|v| pretty(kind, v)).collect();
                print!("{}", text.join("\n\n"));
            } else {
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
