//! `/secrets` and `/configs`: docker's shapes. A secret's value goes in (as
//! base64 `Data`), is sealed here before it is proposed, and never comes
//! out; a config's `Data` is shown base64, as docker does.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use shoal_core::command::Command;
use shoal_core::model::secret::{self as secrets, FileRef, Kind, Object, SecretCommand, Stored};
use shoal_core::model::TaskTemplate;
use shoal_core::rules::secret::refs;
use shoal_core::state::ClusterState;

use super::filters::Filters;
use super::wire;
use super::{ApiError, ApiResult, Rt};
use crate::runtime::Runtime;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Docker's `Secret`: never its data.
pub fn secret(o: &Object) -> wire::Secret {
    wire::Secret {
        docker: bollard::models::Secret {
            id: Some(o.id.clone()),
            version: wire::version(o.version),
            created_at: Some(wire::time_nanos(&o.created_at)),
            updated_at: Some(wire::time_nanos(&o.updated_at)),
            spec: Some(wire::SecretSpec {
                name: Some(o.name.clone()),
                labels: Some(o.labels.clone().into_iter().collect()),
                data: plain_data(o),
                ..Default::default()
            }),
        },
        data_version: Some(o.data_version),
    }
}

/// Docker's `Config`: its data base64, as docker shows it.
pub fn config(o: &Object) -> wire::Config {
    wire::Config {
        docker: bollard::models::Config {
            id: Some(o.id.clone()),
            version: wire::version(o.version),
            created_at: Some(wire::time_nanos(&o.created_at)),
            updated_at: Some(wire::time_nanos(&o.updated_at)),
            spec: Some(wire::ConfigSpec {
                name: Some(o.name.clone()),
                labels: Some(o.labels.clone().into_iter().collect()),
                data: plain_data(o),
                templating: None,
            }),
        },
        data_version: Some(o.data_version),
    }
}

/// A config's data (a secret's is sealed: `None`).
fn plain_data(o: &Object) -> Option<String> {
    match &o.data {
        Stored::Plain(data) => Some(b64().encode(data)),
        Stored::Sealed(_) => None,
    }
}

/// A secret or a config, as JSON.
pub fn object(o: &Object) -> Value {
    let typed = match o.kind {
        Kind::Secret => serde_json::to_value(secret(o)),
        Kind::Config => serde_json::to_value(config(o)),
    };
    typed.unwrap_or(Value::Null)
}

/// A create or update body as docker's `SecretSpec` (a `ConfigSpec` has
/// the same fields but `Driver`). shoal's CLI sends an update as the object
/// itself, `{"Spec": …}`: its spec is read then.
fn spec_of(body: &Value) -> Result<wire::SecretSpec, ApiError> {
    let spec = match body {
        Value::Object(m) if m.contains_key("Spec") => &m["Spec"],
        _ => body,
    };
    super::typed::read(spec).map_err(ApiError::bad_request)
}

fn labels_of(spec: &wire::SecretSpec) -> BTreeMap<String, String> {
    spec.labels
        .as_ref()
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The plaintext of a create/update body, size-checked.
fn data_of(kind: Kind, spec: &wire::SecretSpec) -> Result<Vec<u8>, ApiError> {
    let text = spec.data.as_deref().unwrap_or("");
    // Base64 of the largest value allowed, and a little: refuse more
    // before decoding it.
    if text.len() > kind.max_bytes() / 3 * 4 + 8 {
        return Err(ApiError::bad_request(
            secrets::check_size(kind, kind.max_bytes())
                .err()
                .unwrap_or_default(),
        ));
    }
    let data = b64().decode(text).map_err(|_| {
        ApiError::bad_request(format!("{} data is not valid base64", kind.as_str()))
    })?;
    secrets::check_size(kind, data.len()).map_err(ApiError::bad_request)?;
    Ok(data)
}

fn store(
    rt: &Runtime,
    kind: Kind,
    id: &str,
    data_version: u64,
    data: &[u8],
) -> Result<Stored, ApiError> {
    match kind {
        Kind::Config => Ok(Stored::Plain(data.to_vec())),
        Kind::Secret => {
            let keys = rt.keyring()?;
            keys.seal(&secrets::aad(id, data_version), data)
                .map(Stored::Sealed)
                .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
        }
    }
}

async fn create(
    rt: Arc<Runtime>,
    kind: Kind,
    body: Value,
) -> Result<(StatusCode, Json<wire::Created>), ApiError> {
    rt.manager()?;
    let spec = spec_of(&body)?;
    let name = spec.name.clone().unwrap_or_default();
    secrets::check_name(&name).map_err(ApiError::bad_request)?;
    let labels = labels_of(&spec);
    let data = data_of(kind, &spec)?;
    let id = shoal_actors::world::new_id();
    let now = shoal_actors::world::now();
    let obj = Object {
        id: id.clone(),
        kind,
        name,
        labels,
        data: store(&rt, kind, &id, 0, &data)?,
        size: data.len() as u64,
        data_version: 0,
        version: 0,
        created_at: now,
        updated_at: now,
    };
    rt.propose(Command::Secrets(SecretCommand::Create(Box::new(obj))))
        .await?;
    Ok((StatusCode::CREATED, Json(wire::Created { id })))
}

#[derive(Deserialize)]
pub struct ListQuery {
    filters: Option<String>,
}

fn list(rt: &Runtime, kind: Kind, q: &ListQuery) -> ApiResult {
    let m = rt.manager()?;
    // `name` and `id` by prefix, `names` exactly, as dockerd.
    let f = Filters::parse(q.filters.as_deref(), &["id", "label", "name", "names"])?;
    let guard = m.sm.read();
    let all = match kind {
        Kind::Secret => &guard.0.secrets,
        Kind::Config => &guard.0.configs,
    };
    let mut rows: Vec<&Object> = all
        .values()
        .filter(|o| {
            f.prefix("id", &o.id)
                && f.prefix("name", &o.name)
                && f.exact("names", &o.name)
                && f.labels("label", &o.labels)
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Value::Array(rows.into_iter().map(object).collect())))
}

fn inspect(rt: &Runtime, kind: Kind, key: &str) -> ApiResult {
    let m = rt.manager()?;
    let guard = m.sm.read();
    match guard.0.find_object(kind, key) {
        Some(o) => Ok(Json(object(o))),
        None => Err(ApiError::not_found(format!(
            "{} {key} not found",
            kind.as_str()
        ))),
    }
}

async fn remove(rt: Arc<Runtime>, kind: Kind, key: String) -> Result<Json<wire::Empty>, ApiError> {
    rt.manager()?;
    rt.propose(Command::Secrets(SecretCommand::Remove { kind, key }))
        .await?;
    Ok(Json(wire::Empty {}))
}

/// Beyond docker: `Spec.Data` given replaces the value in place (and rolls
/// every service that uses it); docker's update changes labels only, which
/// shoal refuses as docker refuses changing anything but labels.
#[derive(Deserialize)]
pub struct UpdateQuery {
    version: Option<u64>,
}

/// `POST /{secrets,configs}/{id}/update?version=N`: a new value is shoal's
/// rotation (docs/secrets.md); the same value again, as `docker stack
/// deploy` sends on every redeploy, changes nothing and rolls nothing.
async fn update(
    rt: Arc<Runtime>,
    kind: Kind,
    key: String,
    version: Option<u64>,
    body: Value,
) -> Result<Json<wire::Empty>, ApiError> {
    let m = rt.manager()?;
    let spec = spec_of(&body)?;
    let current = {
        let guard = m.sm.read();
        let Some(o) = guard.0.find_object(kind, &key) else {
            return Err(ApiError::not_found(format!(
                "{} {key} not found",
                kind.as_str()
            )));
        };
        o.clone()
    };
    if version.is_some_and(|v| v != current.version) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "update out of sequence",
        ));
    }
    let data = data_of(kind, &spec)?;
    let labels = match spec.labels {
        None => current.labels.clone(),
        Some(_) => labels_of(&spec),
    };
    if labels != current.labels {
        return Err(ApiError::bad_request(format!(
            "shoal cannot change the labels of a {} (only its value): create a new one",
            kind.as_str()
        )));
    }
    let same_value = match &current.data {
        Stored::Plain(old) => *old == data,
        Stored::Sealed(sealed) => {
            let keys = rt.keyring()?;
            keys.open(&secrets::aad(&current.id, current.data_version), sealed)
                .is_ok_and(|old| old == data)
        }
    };
    if same_value {
        return Ok(Json(wire::Empty {}));
    }
    let next = current.data_version + 1;
    let stored = store(&rt, kind, &current.id, next, &data)?;
    rt.propose(Command::Secrets(SecretCommand::Update {
        kind,
        key: current.id,
        data: stored,
        size: data.len() as u64,
        at: shoal_actors::world::now(),
    }))
    .await?;
    Ok(Json(wire::Empty {}))
}

pub async fn secret_create(
    State(rt): Rt,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<wire::Created>), ApiError> {
    create(rt, Kind::Secret, body).await
}
pub async fn config_create(
    State(rt): Rt,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<wire::Created>), ApiError> {
    create(rt, Kind::Config, body).await
}
pub async fn secret_list(State(rt): Rt, Query(q): Query<ListQuery>) -> ApiResult {
    list(&rt, Kind::Secret, &q)
}
pub async fn config_list(State(rt): Rt, Query(q): Query<ListQuery>) -> ApiResult {
    list(&rt, Kind::Config, &q)
}
pub async fn secret_inspect(State(rt): Rt, UrlPath(id): UrlPath<String>) -> ApiResult {
    inspect(&rt, Kind::Secret, &id)
}
pub async fn config_inspect(State(rt): Rt, UrlPath(id): UrlPath<String>) -> ApiResult {
    inspect(&rt, Kind::Config, &id)
}
pub async fn secret_rm(
    State(rt): Rt,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<wire::Empty>, ApiError> {
    remove(rt, Kind::Secret, id).await
}
pub async fn config_rm(
    State(rt): Rt,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<wire::Empty>, ApiError> {
    remove(rt, Kind::Config, id).await
}
pub async fn secret_update(
    State(rt): Rt,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<UpdateQuery>,
    Json(body): Json<Value>,
) -> Result<Json<wire::Empty>, ApiError> {
    update(rt, Kind::Secret, id, q.version, body).await
}
pub async fn config_update(
    State(rt): Rt,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<UpdateQuery>,
    Json(body): Json<Value>,
) -> Result<Json<wire::Empty>, ApiError> {
    update(rt, Kind::Config, id, q.version, body).await
}

/// `ContainerSpec.Secrets` as docker shapes them.
pub fn render_secret_refs(t: &TaskTemplate) -> Vec<wire::TaskSpecContainerSpecSecrets> {
    refs(t, Kind::Secret)
        .iter()
        .map(|r| wire::TaskSpecContainerSpecSecrets {
            file: Some(wire::TaskSpecContainerSpecFile {
                name: Some(r.target.clone()),
                uid: Some(r.uid.to_string()),
                gid: Some(r.gid.to_string()),
                mode: Some(r.mode),
            }),
            secret_id: Some(r.id.clone()),
            secret_name: Some(r.name.clone()),
        })
        .collect()
}

/// `ContainerSpec.Configs` as docker shapes them.
pub fn render_config_refs(t: &TaskTemplate) -> Vec<wire::TaskSpecContainerSpecConfigs> {
    refs(t, Kind::Config)
        .iter()
        .map(|r| wire::TaskSpecContainerSpecConfigs {
            file: Some(wire::TaskSpecContainerSpecFile1 {
                name: Some(r.target.clone()),
                uid: Some(r.uid.to_string()),
                gid: Some(r.gid.to_string()),
                mode: Some(r.mode),
            }),
            runtime: None,
            config_id: Some(r.id.clone()),
            config_name: Some(r.name.clone()),
        })
        .collect()
}

/// Parses `ContainerSpec.Secrets`/`Configs` (ids and versions are filled
/// in by `resolve_refs`).
pub fn parse_refs(
    container_spec: Option<&wire::ContainerSpec>,
    kind: Kind,
) -> Result<Vec<FileRef>, String> {
    let key = match kind {
        Kind::Secret => "Secrets",
        Kind::Config => "Configs",
    };
    // Both kinds' entries as one shape: id, name, file.
    let c = container_spec.map(|c| &c.docker);
    let list: Vec<(
        Option<String>,
        Option<String>,
        wire::TaskSpecContainerSpecFile,
    )> = match kind {
        Kind::Secret => c
            .and_then(|c| c.secrets.as_ref())
            .map(|l| {
                l.iter()
                    .map(|r| {
                        let file = r.file.clone().unwrap_or_default();
                        (r.secret_id.clone(), r.secret_name.clone(), file)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Kind::Config => c
            .and_then(|c| c.configs.as_ref())
            .map(|l| {
                l.iter()
                    .map(|r| {
                        let f = r.file.clone().unwrap_or_default();
                        let file = wire::TaskSpecContainerSpecFile {
                            name: f.name,
                            uid: f.uid,
                            gid: f.gid,
                            mode: f.mode,
                        };
                        (r.config_id.clone(), r.config_name.clone(), file)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    if list.len() > secrets::MAX_REFS {
        return Err(format!(
            "a service uses at most {} {key}",
            secrets::MAX_REFS
        ));
    }
    let mut out = Vec::new();
    for (id, name, file) in list {
        let name = name.unwrap_or_default();
        let target = match file.name.unwrap_or_default() {
            t if t.is_empty() => name.clone(),
            t => t,
        };
        let num = |k: &str, t: Option<String>| -> Result<u32, String> {
            match t.unwrap_or_default() {
                t if t.is_empty() => Ok(0),
                t => t.parse().map_err(|_| format!("invalid {k} {t:?}")),
            }
        };
        let mode = match file.mode {
            None => 0o444,
            Some(m) if m <= 0o7777 => m,
            Some(m) => return Err(format!("invalid file mode {m}")),
        };
        secrets::check_target(kind, &target)?;
        out.push(FileRef {
            id: id.unwrap_or_default(),
            name,
            target,
            uid: num("UID", file.uid)?,
            gid: num("GID", file.gid)?,
            mode,
            data_version: 0,
        });
    }
    Ok(out)
}

/// Names each reference's object by id (looked up by name when the id is
/// absent, as docker's CLI does) and its current data version. The state
/// machine checks again when the entry applies.
pub fn resolve_refs(state: &ClusterState, t: &mut TaskTemplate) -> Result<(), ApiError> {
    for kind in [Kind::Secret, Kind::Config] {
        let list = match kind {
            Kind::Secret => &mut t.secrets,
            Kind::Config => &mut t.configs,
        };
        for r in list.iter_mut() {
            let key = if r.id.is_empty() { &r.name } else { &r.id };
            let Some(o) = state.find_object(kind, key) else {
                return Err(ApiError::not_found(format!(
                    "{} not found: {}",
                    kind.as_str(),
                    if r.name.is_empty() { &r.id } else { &r.name }
                )));
            };
            r.id = o.id.clone();
            r.name = o.name.clone();
            r.data_version = o.data_version;
        }
    }
    Ok(())
}
