//! `shoal events`: the swarm's events as they are committed, docker's
//! `events` with `--since`, `--until`, `--filter` and `--format`.

use std::collections::BTreeMap;

use chrono::Utc;
use clap::Args;
use serde_json::Value;
use shoal_node::api::wire::docker::EventMessage;
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
fn default_line(e: &EventMessage) -> String {
    let time = chrono::DateTime::from_timestamp_nanos(e.time_nano.unwrap_or(0))
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let kind = e.typ.map(|t| t.to_string()).unwrap_or_default();
    let actor = e.actor.as_ref();
    let id = actor.and_then(|a| a.id.as_deref()).unwrap_or("");
    let attrs: BTreeMap<&String, &String> = actor
        .and_then(|a| a.attributes.as_ref())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{time} {kind} {} {id} ({})",
        e.action.as_deref().unwrap_or(""),
        attrs.join(", ")
    )
}

/// The event as `--format` templates see it: its JSON, plus the names
/// docker's templates use for the lower-case keys (`.Scope`, `.Time`,
/// `.TimeNano`).
fn template_value(e: &EventMessage) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    for (from, to) in [
        ("scope", "Scope"),
        ("time", "Time"),
        ("timeNano", "TimeNano"),
    ] {
        if let Some(x) = v.get(from).cloned() {
            v[to] = x;
        }
    }
    v
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
        query.push(format!(
            "filters={}",
            enc(&serde_json::to_string(&filters)?)
        ));
    }
    let format = Format::parse(a.format.as_deref())?;
    let path = format!("/events?{}", query.join("&"));
    client
        .stream_lines(&path, |line| {
            // A line this build cannot read (a newer daemon's) is skipped,
            // as docker's client skips what it cannot decode.
            let Ok(e) = serde_json::from_str::<EventMessage>(line) else {
                return Ok(());
            };
            let out = match &format {
                Format::Table => default_line(&e),
                Format::Json => serde_json::to_string(&e)?,
                Format::Template { template, .. } => template.render(&template_value(&e))?,
            };
            println!("{out}");
            Ok(())
        })
        .await
}
