//! `GET /services/{id}/logs`: the service's task logs, prefixed the way docker
//! prefixes them (`web.1.abcdef123456@host    | line`), optionally followed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::ApiError;
use crate::logs::parse_line;
use crate::runtime::Runtime;

#[derive(Deserialize)]
pub struct LogsQuery {
    follow: Option<String>,
    /// A number, or "all".
    tail: Option<String>,
    timestamps: Option<String>,
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

/// Tasks of the service: id -> prefix.
fn sources(rt: &Runtime, service_id: &str) -> Vec<(String, String)> {
    let Ok(m) = rt.manager() else {
        return Vec::new();
    };
    let guard = m.sm.read();
    let state = &guard.0;
    let mut tasks: Vec<_> = state.tasks_of_service(service_id).collect();
    tasks.sort_by_key(|t| (t.slot, t.created_at));
    tasks
        .into_iter()
        .map(|t| {
            let host = t
                .node_id
                .as_ref()
                .and_then(|n| state.nodes.get(n))
                .map_or("", |n| n.hostname.as_str());
            let short: String = t.id.chars().take(12).collect();
            (t.id.clone(), format!("{}.{}@{}", t.name(), short, host))
        })
        .collect()
}

fn render(prefix: &str, line: &str, timestamps: bool) -> Option<String> {
    let l = parse_line(line)?;
    Some(if timestamps {
        format!("{prefix}    | {} {}\n", l.timestamp, l.text)
    } else {
        format!("{prefix}    | {}\n", l.text)
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

pub async fn service_logs(
    State(rt): State<Arc<Runtime>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let m = rt.manager()?;
    let service_id = super::service_id(&m, &id)?;
    let tail = match q.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid value for tail: {n:?}: expected a number or \"all\""
            ))
        })?),
    };
    let (follow, timestamps) = (flag(&q.follow), flag(&q.timestamps));
    let (tx, rx) = mpsc::channel::<String>(256);
    tokio::spawn(async move {
        let mut known: HashMap<String, Source> = HashMap::new();
        // First pass: what is there now, with --tail applied per task (as docker does).
        for (task_id, prefix) in sources(&rt, &service_id) {
            let mut src = Source {
                prefix,
                offset: 0,
                partial: String::new(),
            };
            let lines = read_new(&rt, &task_id, &mut src).await;
            let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
            for line in &lines[skip..] {
                if let Some(out) = render(&src.prefix, line, timestamps) {
                    if tx.send(out).await.is_err() {
                        return;
                    }
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
            let current = sources(&rt, &service_id);
            if current.is_empty()
                && rt
                    .manager()
                    .is_ok_and(|m| !m.sm.read().0.services.contains_key(&service_id))
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
                    if let Some(out) = render(&src.prefix, &line, timestamps) {
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
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
