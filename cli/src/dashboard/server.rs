//! The dashboard's HTTP server, on 127.0.0.1 only. Every path starts with
//! the token (`/<token>/...`); a request without it, or with another, gets
//! 404 and nothing else, whatever it asks for (page, asset, data, stream).
//! The token is compared in constant time. A `Host` that is not this
//! address is refused (403), so a page of another origin that rebinds a
//! name to 127.0.0.1 reaches nothing either.
//!
//! What it serves is read-only: the embedded page, the feed's snapshot and
//! stream (server-sent events), the timeline's SVG and one service's task
//! history. It proxies no other route of the control API, and never a
//! write.
//!
//! Bounds: `MAX_CONNECTIONS` connections at once (more are closed at
//! once), `MAX_STREAMS` event streams, `MAX_HISTORY_READS` history reads in
//! flight, a request head of at most `MAX_HEAD` bytes read within
//! `HEAD_TIMEOUT`; requests have no body.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::feed::Published;
use super::model;
use crate::client::{enc, Client};

pub const MAX_CONNECTIONS: usize = 64;
pub const MAX_STREAMS: usize = 16;
pub const MAX_HISTORY_READS: usize = 4;
/// hyper's smallest read buffer: a request head must fit in it.
pub const MAX_HEAD: usize = 8 * 1024;
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A comment on every event stream this often, so a dead reader is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// What the page may load: only this origin; no inline script or style.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Clone)]
struct Shared {
    token: Arc<str>,
    /// `127.0.0.1:PORT` and `localhost:PORT`: the `Host`s taken.
    hosts: Arc<[String; 2]>,
    /// The control socket, for a service's history.
    host: Arc<str>,
    published: Arc<Published>,
    streams: Arc<Semaphore>,
    history_reads: Arc<Semaphore>,
}

/// Refuses whatever does not start with the token (404) or names another
/// host (403), before any route is matched.
async fn guard(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let host_ok = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| s.hosts.iter().any(|ok| ok == h));
    if !host_ok {
        return (StatusCode::FORBIDDEN, "forbidden\n").into_response();
    }
    let presented = req
        .uri()
        .path()
        .strip_prefix('/')
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    if !shoal_node::ca::tokens_equal(presented, &s.token) {
        return not_found().await.into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "404 page not found\n")
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `/<token>` to `/<token>/`, where the page's relative URLs resolve.
async fn to_index(Path(token): Path<String>) -> Response {
    axum::response::Redirect::to(&format!("/{token}/")).into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn state(State(s): State<Shared>) -> Response {
    let snapshot = s.published.snapshot.borrow().clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        snapshot.to_string(),
    )
        .into_response()
}

async fn timeline(State(s): State<Shared>) -> Response {
    let svg = s
        .published
        .timeline
        .lock()
        .render(chrono::Utc::now().timestamp_millis());
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

/// The snapshot now, then each new one, as server-sent events (`state`).
async fn stream(State(s): State<Shared>) -> Response {
    let Ok(permit) = s.streams.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboard streams open\n",
        )
            .into_response();
    };
    let mut rx = s.published.snapshot.subscribe();
    rx.mark_changed();
    let events = futures::stream::unfold((rx, permit), |(mut rx, permit)| async move {
        rx.changed().await.ok()?;
        let snapshot = rx.borrow_and_update().clone();
        let event = Event::default().event("state").data(snapshot.as_ref());
        Some((Ok::<_, std::convert::Infallible>(event), (rx, permit)))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// A service's tasks, every one the state keeps, with their errors.
async fn history(State(s): State<Shared>, Path((_, id)): Path<(String, String)>) -> Response {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return not_found().await.into_response();
    }
    let Ok(_permit) = s.history_reads.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "busy; try again\n").into_response();
    };
    match read_history(&s.host, &id).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) if crate::client::DaemonError::is_not_found(&e) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e:#}\n")).into_response(),
    }
}

async fn read_history(host: &str, id: &str) -> anyhow::Result<Value> {
    let client = Client::new(host)?;
    let service = client.get(&format!("/services/{}", enc(id))).await?;
    let name = service
        .pointer("/Spec/Name")
        .and_then(Value::as_str)
        .unwrap_or(id)
        .to_string();
    let filters = enc(&json!({ "service": [id] }).to_string());
    let tasks = client.get(&format!("/tasks?filters={filters}")).await?;
    let nodes = client.get("/nodes").await?;
    let hostnames = nodes
        .as_array()
        .map(|ns| {
            ns.iter()
                .filter_map(|n| {
                    let id = n.get("ID")?.as_str()?.to_string();
                    let host = n.pointer("/Description/Hostname")?.as_str()?.to_string();
                    Some((id, host))
                })
                .collect()
        })
        .unwrap_or_default();
    let tasks = tasks.as_array().cloned().unwrap_or_default();
    Ok(json!({
        "id": id,
        "name": name,
        "tasks": model::history(&tasks, &name, &hostnames),
    }))
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/{token}", get(to_index))
        .route("/{token}/", get(index))
        .route("/{token}/app.js", get(app_js))
        .route("/{token}/style.css", get(style))
        .route("/{token}/state", get(state))
        .route("/{token}/stream", get(stream))
        .route("/{token}/timeline.svg", get(timeline))
        .route("/{token}/services/{id}", get(history))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// Serves until the process ends.
pub async fn serve(
    listener: TcpListener,
    token: String,
    host: String,
    published: Arc<Published>,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let shared = Shared {
        token: Arc::from(token),
        hosts: Arc::new([format!("127.0.0.1:{port}"), format!("localhost:{port}")]),
        host: Arc::from(host),
        published,
        streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        history_reads: Arc::new(Semaphore::new(MAX_HISTORY_READS)),
    };
    let service = hyper_util::service::TowerToHyperService::new(router(shared));
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors, say: a pause, not a spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Beyond the cap: closed at once.
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}
