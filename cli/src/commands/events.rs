//! `shoal events`: the swarm's events as they are committed, docker's
//! `events` with `--since`, `--until`, `--filter` and `--format`.

use std::collections::BTreeMap;

use chrono::Utc;
use clap::Args;
use serde_json::{json, Value};
// docker's filter keys for events, as the daemon takes them.
use shoal_node::api::events::KEYS;

use crate::client::{enc, Client};
use crate::template::Format;

#[derive(Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output using a custom template: json, or a Go template like '{{.Type}}'
    #[arg(long)]
    format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    until: Option<String>,
}

/// docker's default line: `TIME TYPE ACTION ID (k=v, k=v)`.
fn default_line(e: &Value) -> String {
    let nanos = e.get("timeNano").and_then(Value::as_i64).unwrap_or(0);
    let time = chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
    let id = e.pointer("/Actor/ID").and_then(Value::as_str).unwrap_or("");
    let attrs: BTreeMap<String, String> = e
        .pointer("/Actor/Attributes")
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default();
    let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{time} {} {} {id} ({})",
        text("Type"),
        text("Action"),
        attrs.join(", ")
    )
}

pub async fn run(client: &Client, a: EventsArgs) -> anyhow::Result<()> {
    let mut filters: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in &a.filter {
        let (key, value) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))?;
        let key = key.trim().to_lowercase();
        if !KEYS.contains(&key.as_str()) {
            anyhow::bail!("Invalid filter '{key}'");
        }
        filters
            .entry(key)
            .or_default()
            .insert(value.trim().to_string(), true);
    }
    let now = Utc::now();
    let mut query = Vec::new();
    if let Some(s) = &a.since {
        query.push(format!("since={}", enc(&super::since::parse(s, now)?)));
    }
    if let Some(u) = &a.until {
        query.push(format!("until={}", enc(&super::since::parse(u, now)?)));
    }
    if !filters.is_empty() {
        query.push(format!("filters={}", enc(&json!(filters).to_string())));
    }
    let format = Format::parse(a.format.as_deref())?;
    let path = format!("/events?{}", query.join("&"));
    client
        .stream_lines(&path, |line| {
            let Ok(mut e) = serde_json::from_str::<Value>(line) else {
                return Ok(());
            };
            let out = match &format {
                Format::Table => default_line(&e),
                Format::Json => line.to_string(),
                Format::Template { template, .. } => {
                    // The names docker's templates use for the lower-case keys.
                    for (from, to) in [
                        ("scope", "Scope"),
                        ("time", "Time"),
                        ("timeNano", "TimeNano"),
                    ] {
                        if let Some(v) = e.get(from).cloned() {
                            e[to] = v;
                        }
                    }
                    template.render(&e)?
                }
            };
            println!("{out}");
            Ok(())
        })
        .await
}
