//! `GET /events`: the swarm events this manager applied, as dockerd streams
//! them (one JSON object per line), with `since`, `until` and `filters`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use bollard::models::{EventActor, EventMessage, EventMessageScopeEnum};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::filters::Filters;
use super::wire::word;
use super::ApiError;
use crate::events::Recorded;
use crate::runtime::Runtime;

#[derive(Deserialize)]
pub struct EventsQuery {
    since: Option<String>,
    until: Option<String>,
    filters: Option<String>,
}

/// The filter keys dockerd takes. Those naming an object (`service`,
/// `node`, …) match its id or name, by prefix, whatever the event's type.
pub const KEYS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];
const OBJECT_KEYS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "image",
    "network",
    "node",
    "plugin",
    "secret",
    "service",
    "volume",
];

/// docker's timestamps: Unix seconds with optional nanoseconds
/// (`1700000000.000000001`, what the CLI sends), or RFC 3339.
pub(super) fn parse_time(what: &str, text: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid value for {what}: {text:?}: expected Unix seconds or an RFC 3339 time"
        ))
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        // Beyond the years nanoseconds reach (1677–2262): the end there.
        return Ok(t.timestamp_nanos_opt().unwrap_or(if t.timestamp() > 0 {
            i64::MAX
        } else {
            i64::MIN
        }));
    }
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || secs.len() > 12 || frac.len() > 9 {
        return Err(bad());
    }
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

fn matches(f: &Filters, r: &Recorded) -> bool {
    let e = &r.event;
    let name = e.attributes.get("name").map_or("", String::as_str);
    f.exact("type", e.kind.as_str())
        && f.exact("event", e.action.as_str())
        && f.exact("scope", "swarm")
        && OBJECT_KEYS
            .iter()
            .all(|k| !f.has(k) || f.prefix(k, &e.id) || (!name.is_empty() && f.prefix(k, name)))
        && f.labels("label", &e.attributes)
}

/// One event as dockerd sends it: bollard's `EventMessage`, the type and
/// scope as its enums (every kind shoal records has its variant).
pub fn event_message(r: &Recorded) -> EventMessage {
    let e = &r.event;
    EventMessage {
        typ: word(e.kind.as_str()),
        action: Some(e.action.as_str().to_string()),
        actor: Some(EventActor {
            id: Some(e.id.clone()),
            attributes: Some(
                e.attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        }),
        scope: Some(EventMessageScopeEnum::SWARM),
        time: Some(r.time_nano.div_euclid(1_000_000_000)),
        time_nano: Some(r.time_nano),
    }
}

/// A line of the stream. Through `Value` so the attributes come out with
/// their keys sorted, as Go writes a map.
fn message(r: &Recorded) -> Vec<u8> {
    let mut line = serde_json::to_value(event_message(r))
        .map(|v| v.to_string())
        .unwrap_or_default()
        .into_bytes();
    line.push(b'\n');
    line
}

fn now_nanos() -> i64 {
    let now = shoal_actors::world::now();
    now.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

pub async fn events(
    State(rt): State<Arc<Runtime>>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let filters = Filters::parse(q.filters.as_deref(), KEYS)?;
    let since = q
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_time("since", s))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_time("until", s))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(ApiError::bad_request(
                "`since` time cannot be after `until` time",
            ));
        }
    }
    let (kept, mut live) = rt.manager_part.events.read();
    let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
    tokio::spawn(async move {
        let in_range = |r: &Recorded| until.is_none_or(|u| r.time_nano <= u);
        let mut last_seq = None;
        if let Some(since) = since {
            for r in kept.iter().filter(|r| r.time_nano >= since && in_range(r)) {
                if matches(&filters, r) && tx.send(message(r)).await.is_err() {
                    return;
                }
            }
        }
        if let Some(r) = kept.last() {
            last_seq = Some(r.seq);
        }
        loop {
            let wait = match until {
                Some(u) => {
                    let left = u.saturating_sub(now_nanos());
                    if left <= 0 {
                        return;
                    }
                    Duration::from_nanos(left as u64)
                }
                // Wake now and then to notice a reader that went away.
                None => Duration::from_secs(1),
            };
            let r = match tokio::time::timeout(wait, live.recv()).await {
                Ok(Ok(r)) => r,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(broadcast::error::RecvError::Closed)) => return,
                Err(_) => {
                    if tx.is_closed() {
                        return;
                    }
                    continue;
                }
            };
            if last_seq.is_some_and(|s| r.seq <= s) || !in_range(&r) {
                continue;
            }
            if matches(&filters, &r) && tx.send(message(&r)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|s| (Ok::<_, std::io::Error>(s), rx))
    });
    Response::builder()
        .header("Content-Type", "application/json")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timestamps_parse() {
        assert_eq!(
            parse_time("since", "1700000000").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time("since", "1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time("since", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time("since", "2999-01-01T00:00:00Z").unwrap(),
            i64::MAX
        );
        assert!(parse_time("since", "yesterday").is_err());
        assert!(parse_time("since", "1.1234567890").is_err());
    }

    #[test]
    fn a_line_is_docker_s_event_message() {
        use shoal_actors::store::swarm_events::{EventAction, EventType, SwarmEvent};
        for kind in [
            EventType::Service,
            EventType::Node,
            EventType::Secret,
            EventType::Config,
            EventType::Network,
        ] {
            let r = Recorded {
                seq: 1,
                time_nano: 1_700_000_000_123_456_789,
                event: Arc::new(SwarmEvent {
                    kind,
                    action: EventAction::Update,
                    id: "abc".into(),
                    attributes: [("name", "web"), ("replicas.new", "3")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                }),
            };
            let line = String::from_utf8(message(&r)).expect("utf-8");
            assert!(line.ends_with('\n'));
            let v: serde_json::Value = serde_json::from_str(&line).expect("json");
            assert_eq!(
                v,
                serde_json::json!({
                    "Type": kind.as_str(), "Action": "update", "scope": "swarm",
                    "Actor": {"ID": "abc", "Attributes": {"name": "web", "replicas.new": "3"}},
                    "time": 1_700_000_000i64, "timeNano": 1_700_000_000_123_456_789i64,
                })
            );
            let back: EventMessage = serde_json::from_str(&line).expect("an EventMessage");
            assert_eq!(back, event_message(&r));
        }
    }
}
