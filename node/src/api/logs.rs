//! `GET /services/{id}/logs`: the service's task logs, prefixed the way docker
//! prefixes them (`web.1.abcdef123456@host    | line`), optionally followed.
//! A client that accepts `application/vnd.docker.multiplexed-stream` gets
//! docker's framing, which keeps stdout and stderr apart; others plain text.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::version::ApiVersion;
use super::ApiError;
use crate::logs::parse_line;
use crate::runtime::Runtime;

#[derive(Deserialize)]
pub struct LogsQuery {
    follow: Option<String>,
    /// A number, or "all".
    tail: Option<String>,
    timestamps: Option<String>,
    /// Only lines written at or after this RFC 3339 instant.
    since: Option<String>,
    /// The lines alone, without the task prefix.
    raw: Option<String>,
    /// Whether the prefix names the task id (default yes).
    task_ids: Option<String>,
    /// Whether the prefix's task id is cut to 12 characters (default yes).
    trunc: Option<String>,
    /// docker's: each line starts with the task's node, service and task
    /// ids (`com.docker.swarm.node.id=…,…`) instead of shoal's prefix; the
    /// docker client makes its own prefix from them.
    details: Option<String>,
}

/// How each line is shown.
#[derive(Clone, Copy)]
struct Shape {
    timestamps: bool,
    raw: bool,
    task_ids: bool,
    trunc: bool,
    details: bool,
}

const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";

/// docker's frame: `[stream, 0, 0, 0, size (u32 big endian)]`, then the bytes.
fn frame(stream: u8, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + text.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Docker clients send `1`/`0` as often as `true`/`false`.
fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | "True" | "yes"))
}

struct Source {
    prefix: String,
    offset: u64,
    partial: String,
}

/// Whose logs: a whole service's, or one task's.
#[derive(Clone)]
enum Target {
    Service(String),
    Task { id: String, service_id: String },
}

impl Target {
    fn service_id(&self) -> &str {
        match self {
            Target::Service(id) | Target::Task { service_id: id, .. } => id,
        }
    }
}

/// The target's tasks: id -> prefix.
fn sources(rt: &Runtime, target: &Target, shape: Shape) -> Vec<(String, String)> {
    let Ok(m) = rt.manager() else {
        return Vec::new();
    };
    let guard = m.sm.read();
    let state = &guard.0;
    let mut tasks: Vec<_> = state
        .tasks_of_service(target.service_id())
        .filter(|t| match target {
            Target::Service(_) => true,
            Target::Task { id, .. } => t.id == *id,
        })
        .collect();
    tasks.sort_by_key(|t| (t.slot, t.created_at));
    tasks
        .into_iter()
        .map(|t| {
            if shape.details {
                let details = format!(
                    "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={}",
                    t.node_id.as_deref().unwrap_or_default(),
                    t.service_id,
                    t.id
                );
                return (t.id.clone(), details);
            }
            let host = t
                .node_id
                .as_ref()
                .and_then(|n| state.nodes.get(n))
                .map_or("", |n| n.hostname.as_str());
            let prefix = if !shape.task_ids {
                format!("{}@{}", t.name(), host)
            } else if shape.trunc {
                let short: String = t.id.chars().take(12).collect();
                format!("{}.{}@{}", t.name(), short, host)
            } else {
                format!("{}.{}@{}", t.name(), t.id, host)
            };
            (t.id.clone(), prefix)
        })
        .collect()
}

/// One log line as the client sees it (`None` if before `since`), as a
/// frame when `mux`.
fn render(prefix: &str, line: &str, shape: Shape, since: &str, mux: bool) -> Option<Vec<u8>> {
    let l = parse_line(line)?;
    // RFC 3339 with nanoseconds in UTC sorts as text.
    if !since.is_empty() && l.timestamp < since {
        return None;
    }
    let text = match (shape.raw || shape.details, shape.timestamps) {
        // docker's details come between the time and the text.
        (_, true) if shape.details => format!("{} {prefix} {}\n", l.timestamp, l.text),
        (_, false) if shape.details => format!("{prefix} {}\n", l.text),
        (true, true) => format!("{} {}\n", l.timestamp, l.text),
        (true, false) => format!("{}\n", l.text),
        (false, true) => format!("{prefix}    | {} {}\n", l.timestamp, l.text),
        (false, false) => format!("{prefix}    | {}\n", l.text),
    };
    Some(if mux {
        frame(if l.stream == "stderr" { 2 } else { 1 }, &text)
    } else {
        text.into_bytes()
    })
}

/// Reads what was appended to a task's log since the last call, from
/// whichever node runs the task.
async fn read_new(rt: &Runtime, task_id: &str, src: &mut Source) -> Vec<String> {
    let buf = rt.task_log(task_id, src.offset).await;
    src.offset += buf.len() as u64;
    src.partial.push_str(&String::from_utf8_lossy(&buf));
    let mut lines = Vec::new();
    while let Some(pos) = src.partial.find('\n') {
        let line: String = src.partial.drain(..=pos).collect();
        lines.push(line.trim_end_matches('\n').to_string());
    }
    lines
}

/// `GET /services/{id}/logs`.
pub async fn service_logs(
    State(rt): State<Arc<Runtime>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<LogsQuery>,
    version: Option<Extension<ApiVersion>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let m = rt.manager()?;
    let target = Target::Service(super::service_id(&m, &id)?);
    stream_logs(rt, target, q, &headers, version.is_some())
}

/// `GET /tasks/{id}/logs`: one task's, by id or unique id prefix.
pub async fn task_logs(
    State(rt): State<Arc<Runtime>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<LogsQuery>,
    version: Option<Extension<ApiVersion>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let m = rt.manager()?;
    let target = {
        let guard = m.sm.read();
        let t = super::find_task(&guard.0, &id)?;
        Target::Task {
            id: t.id.clone(),
            service_id: t.service_id.clone(),
        }
    };
    stream_logs(rt, target, q, &headers, version.is_some())
}

fn stream_logs(
    rt: Arc<Runtime>,
    target: Target,
    q: LogsQuery,
    headers: &HeaderMap,
    versioned: bool,
) -> Result<Response, ApiError> {
    let mux = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(MULTIPLEXED))
        // docker's clients expect the frames without asking (they name an
        // API version instead).
        || versioned;
    let tail = match q.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid value for tail: {n:?}: expected a number or \"all\""
            ))
        })?),
    };
    let follow = flag(&q.follow);
    let shape = Shape {
        timestamps: flag(&q.timestamps),
        raw: flag(&q.raw),
        task_ids: q.task_ids.is_none() || flag(&q.task_ids),
        trunc: q.trunc.is_none() || flag(&q.trunc),
        details: flag(&q.details),
    };
    // docker's clients send Unix seconds (`0`: from the start).
    let since = match q.since.as_deref().filter(|s| !s.is_empty() && *s != "0") {
        None => String::new(),
        Some(s) => {
            let nanos = super::events::parse_time("since", s)?;
            chrono::DateTime::from_timestamp_nanos(nanos)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        }
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
    tokio::spawn(async move {
        let mut known: HashMap<String, Source> = HashMap::new();
        // First pass: what is there now, with --tail applied per task (as docker does).
        for (task_id, prefix) in sources(&rt, &target, shape) {
            let mut src = Source {
                prefix,
                offset: 0,
                partial: String::new(),
            };
            let lines = read_new(&rt, &task_id, &mut src).await;
            let shown: Vec<Vec<u8>> = lines
                .iter()
                .filter_map(|line| render(&src.prefix, line, shape, &since, mux))
                .collect();
            let skip = tail.map_or(0, |n| shown.len().saturating_sub(n));
            for out in shown.into_iter().skip(skip) {
                if tx.send(out).await.is_err() {
                    return;
                }
            }
            known.insert(task_id, src);
        }
        if !follow {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tx.is_closed() {
                return;
            }
            let current = sources(&rt, &target, shape);
            if current.is_empty()
                && rt
                    .manager()
                    .is_ok_and(|m| !m.sm.read().0.services.contains_key(target.service_id()))
            {
                return;
            }
            for (task_id, prefix) in current {
                let src = known.entry(task_id.clone()).or_insert(Source {
                    prefix,
                    offset: 0,
                    partial: String::new(),
                });
                for line in read_new(&rt, &task_id, src).await {
                    if let Some(out) = render(&src.prefix, &line, shape, &since, mux) {
                        if tx.send(out).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|s| (Ok::<_, std::io::Error>(s), rx))
    });
    Response::builder()
        .header(
            "Content-Type",
            if mux {
                MULTIPLEXED
            } else {
                "text/plain; charset=utf-8"
            },
        )
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
