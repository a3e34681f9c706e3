//! `/volumes`: this node's own volumes (the ones its process tasks mount,
//! `volumes.rs`), in the Engine API's shapes, as dockerd serves its
//! engine's. Local to the node that answers, like `docker volume`; a docker
//! task's volumes are its engine's and `docker volume` lists them there.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::Json;
use bollard::models::{
    Volume as WireVolume, VolumeListResponse, VolumePruneResponse, VolumeScopeEnum,
};
use serde::Deserialize;
use serde_json::Value;

use super::filters::Filters;
use super::{ApiError, ApiResult, Rt};
use crate::volumes::{Volume, Volumes};

fn wire(v: &Volume, size: Option<u64>, refs: usize) -> WireVolume {
    WireVolume {
        name: v.name.clone(),
        driver: "local".into(),
        mountpoint: v.mountpoint.to_string_lossy().into_owned(),
        created_at: Some(
            v.meta
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
        labels: v.meta.labels.clone().into_iter().collect(),
        scope: Some(VolumeScopeEnum::LOCAL),
        options: HashMap::new(),
        usage_data: size.map(|size| bollard::models::VolumeUsageData {
            size: i64::try_from(size).unwrap_or(i64::MAX),
            ref_count: i64::try_from(refs).unwrap_or(i64::MAX),
        }),
        ..Default::default()
    }
}

fn json<T: serde::Serialize>(v: &T) -> ApiResult {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Runs a blocking look at the volumes directory off the runtime's threads.
async fn blocking<T: Send + 'static>(
    rt: &crate::runtime::Runtime,
    f: impl FnOnce(&Volumes) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let volumes = rt.worker_part.volumes.clone();
    tokio::task::spawn_blocking(move || f(&volumes))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[derive(Deserialize)]
pub struct ListQuery {
    filters: Option<String>,
}

/// `GET /volumes`: `name` (substring, as dockerd), `label`, `dangling`, `driver`.
pub async fn list(State(rt): Rt, Query(q): Query<ListQuery>) -> ApiResult {
    let f = Filters::parse(
        q.filters.as_deref(),
        &["name", "label", "dangling", "driver"],
    )?;
    let volumes = blocking(&rt, |v| v.list()).await?;
    let dangling: Option<bool> = f
        .values("dangling")
        .next()
        .map(|d| matches!(d, "1" | "true"));
    let shown: Vec<WireVolume> = volumes
        .iter()
        .filter(|v| !f.has("name") || f.values("name").any(|n| v.name.contains(n)))
        .filter(|v| f.labels("label", &v.meta.labels))
        .filter(|_| !f.has("driver") || f.values("driver").any(|d| d == "local"))
        .filter(|v| {
            dangling.is_none_or(|d| rt.worker_part.volumes.users_of(&v.name).is_empty() == d)
        })
        .map(|v| wire(v, None, 0))
        .collect();
    json(&VolumeListResponse {
        volumes: Some(shown),
        warnings: Some(Vec::new()),
    })
}

fn no_such(name: &str) -> ApiError {
    ApiError::not_found(format!("get {name}: no such volume"))
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(rt): Rt, UrlPath(name): UrlPath<String>) -> ApiResult {
    let found = {
        let name = name.clone();
        blocking(&rt, move |v| {
            v.get(&name).map(|vol| {
                let size = v.size(&vol);
                (vol, size)
            })
        })
        .await?
    };
    let (vol, size) = found.ok_or_else(|| no_such(&name))?;
    let refs = rt.worker_part.volumes.users_of(&name).len();
    json(&wire(&vol, Some(size), refs))
}

/// `POST /volumes/create`: `Name` (none: a random one), `Labels`; the
/// `local` driver only, without options (they would mount a device or a
/// remote filesystem, which shoal's volumes do not).
pub async fn create(
    State(rt): Rt,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: bollard::models::VolumeCreateRequest =
        super::typed::read(&body).map_err(ApiError::bad_request)?;
    let driver = req.driver.clone().unwrap_or_default();
    if !(driver.is_empty() || driver == "local") {
        return Err(ApiError::bad_request(format!(
            "volume driver {driver} is not available here: shoal's volumes are local"
        )));
    }
    if req.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::bad_request(
            "shoal's local volumes take no driver options",
        ));
    }
    let labels: BTreeMap<String, String> = req
        .labels
        .as_ref()
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    shoal_core::limits::check_labels("Labels", &labels).map_err(|e| ApiError::bad_request(e.0))?;
    let name = match req.name.clone().unwrap_or_default() {
        n if n.is_empty() => {
            let bytes: [u8; 32] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
        n => n,
    };
    let made = blocking(&rt, move |v| v.create(&name, &labels)).await?;
    let vol = made.map_err(ApiError::bad_request)?;
    let Json(v) = json(&wire(&vol, None, 0))?;
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    force: Option<String>,
}

/// `DELETE /volumes/{name}`: refused while a task mounts it (409, with
/// dockerd's words), even with `force`.
pub async fn remove(
    State(rt): Rt,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    let force = matches!(q.force.as_deref(), Some("1" | "true" | "True"));
    let removed = {
        let name = name.clone();
        blocking(&rt, move |v| v.get(&name).map(|_| v.remove_unused(&name))).await?
    };
    match removed {
        None if force => Ok(StatusCode::NO_CONTENT),
        None => Err(no_such(&name)),
        Some(Ok(())) => Ok(StatusCode::NO_CONTENT),
        Some(Err(Ok(users))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("remove {name}: volume is in use - [{}]", users.join(", ")),
        )),
        Some(Err(Err(e))) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("remove {name}: {e}"),
        )),
    }
}

/// `POST /volumes/prune`: every volume no task of this node mounts, with
/// `label` filters (API 1.41's rule: named ones too; `all` is taken and
/// changes nothing).
pub async fn prune(State(rt): Rt, Query(q): Query<ListQuery>) -> ApiResult {
    let f = Filters::parse(q.filters.as_deref(), &["label", "label!", "all"])?;
    let volumes = blocking(&rt, |v| v.list()).await?;
    let candidates: Vec<Volume> = volumes
        .into_iter()
        .filter(|v| f.labels("label", &v.meta.labels))
        .filter(|v| {
            !f.values("label!").any(|l| match l.split_once('=') {
                Some((k, val)) => v.meta.labels.get(k).is_some_and(|x| x == val),
                None => v.meta.labels.contains_key(l),
            })
        })
        .filter(|v| rt.worker_part.volumes.users_of(&v.name).is_empty())
        .collect();
    let volumes = rt.worker_part.volumes.clone();
    let (deleted, reclaimed) = tokio::task::spawn_blocking(move || {
        let mut deleted = Vec::new();
        let mut reclaimed = 0u64;
        for v in candidates {
            let size = volumes.size(&v);
            // One a task took meanwhile stays.
            if volumes.remove_unused(&v.name).is_ok() {
                reclaimed += size;
                deleted.push(v.name);
            }
        }
        (deleted, reclaimed)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    json(&VolumePruneResponse {
        volumes_deleted: Some(deleted),
        space_reclaimed: Some(i64::try_from(reclaimed).unwrap_or(i64::MAX)),
    })
}
