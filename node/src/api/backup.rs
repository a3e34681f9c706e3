//! `GET /swarm/backup` and `POST /swarm/restore` (shoal's own: the Engine
//! API has no backup). The backup travels as the file's bytes
//! (`application/octet-stream`); a restore's addresses come in the query
//! and the unlock key of an autolocked swarm's backup in a header, never in
//! a URL that a log could keep.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::ApiError;
use crate::runtime::{AddrRequest, Runtime};

/// The header that carries the unlock key of a sealed backup.
pub const UNLOCK_KEY_HEADER: &str = "x-shoal-unlock-key";

pub async fn backup(State(rt): State<Arc<Runtime>>) -> Result<impl IntoResponse, ApiError> {
    let bytes = tokio::task::spawn_blocking(move || rt.backup())
        .await
        .map_err(|e| {
            ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        })??;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestoreQuery {
    #[serde(default)]
    listen_addr: Option<String>,
    #[serde(default)]
    advertise_addr: Option<String>,
}

/// Answers the restored node's id, a JSON string (as `POST /swarm/init`).
pub async fn restore(
    State(rt): State<Arc<Runtime>>,
    Query(q): Query<RestoreQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<String>, ApiError> {
    let unlock_key = match headers.get(UNLOCK_KEY_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("invalid unlock key"))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let addrs = AddrRequest {
        listen: q.listen_addr.filter(|a| !a.is_empty()),
        advertise: q.advertise_addr.filter(|a| !a.is_empty()),
    };
    let node_id = rt
        .restore_swarm(&body, unlock_key.as_deref(), addrs)
        .await?;
    Ok(Json(node_id))
}
