//! The control API: HTTP/JSON on a Unix socket, shaped like the Docker Engine
//! API so that `curl --unix-socket` works. See docs/api.md.

pub mod backup;
mod connect;
pub mod container_opts;
mod error;
pub mod events;
pub mod filters;
mod logs;
pub mod mounts;
pub mod networks;
mod placement;
mod ports;
pub mod secrets;
pub mod server;
mod typed;
pub mod unhonoured;
pub mod version;
pub mod views;
mod volumes;
pub mod wire;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_actors::raft::RaftMsg;
use shoal_core::command::Command;
use shoal_core::model::{ClusterSpec, Service};

pub use error::ApiError;
use filters::Filters;

use crate::runtime::Runtime;

type Rt = State<Arc<Runtime>>;
type ApiResult = Result<Json<Value>, ApiError>;
/// An answer in one of the Engine API's types (`wire`).
type Typed<T> = Result<Json<T>, ApiError>;

/// The routes, written without a version prefix: `version::negotiate` takes
/// it off before they are matched.
pub fn router(rt: Arc<Runtime>) -> Router {
    let routes = routes(rt);
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(version::negotiate))
}

fn routes(rt: Arc<Runtime>) -> Router {
    Router::new()
        .route("/_ping", get(version::ping))
        .route("/version", get(version::version))
        .route("/events", get(events::events))
        .route("/distribution/{*image}", get(distribution))
        .route("/info", get(info))
        .route("/swarm", get(swarm))
        .route("/swarm/init", post(swarm_init))
        .route("/swarm/join", post(swarm_join))
        .route("/swarm/leave", post(swarm_leave))
        .route("/swarm/update", post(swarm_update))
        .route("/swarm/unlock", post(swarm_unlock))
        .route("/swarm/unlockkey", get(swarm_unlock_key))
        .route("/swarm/backup", get(backup::backup))
        .route(
            "/swarm/restore",
            post(backup::restore).layer(axum::extract::DefaultBodyLimit::max(
                crate::backup::MAX_BYTES,
            )),
        )
        .route("/nodes", get(nodes))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(connect::connect))
        .route("/networks/{id}/disconnect", post(connect::disconnect))
        .route("/nodes/{id}", get(node).delete(node_rm))
        .route("/nodes/{id}/update", post(node_update))
        .route("/services", get(services))
        .route("/services/create", post(service_create))
        .route("/services/{id}", get(service).delete(service_rm))
        .route("/services/{id}/update", post(service_update))
        .route("/services/{id}/logs", get(logs::service_logs))
        .route("/secrets", get(secrets::secret_list))
        .route("/secrets/create", post(secrets::secret_create))
        .route(
            "/secrets/{id}",
            get(secrets::secret_inspect).delete(secrets::secret_rm),
        )
        .route("/secrets/{id}/update", post(secrets::secret_update))
        .route("/configs", get(secrets::config_list))
        .route("/configs/create", post(secrets::config_create))
        .route(
            "/configs/{id}",
            get(secrets::config_inspect).delete(secrets::config_rm),
        )
        .route("/configs/{id}/update", post(secrets::config_update))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/tasks", get(tasks))
        .route("/tasks/{id}", get(task))
        .route("/tasks/{id}/logs", get(logs::task_logs))
        .route("/debug/actors", get(debug_actors))
        .route("/debug/chaos/kill", post(chaos_kill))
        .route("/debug/chaos/disk", post(chaos_disk))
        .route("/debug/chaos/clock", post(chaos_clock))
        .route(
            "/debug/chaos/network",
            get(chaos_network_list)
                .post(chaos_network_add)
                .delete(chaos_network_clear),
        )
        // Counts and times each matched route (`--metrics-addr`).
        .route_layer(axum::middleware::from_fn_with_state(
            rt.clone(),
            crate::metrics::api::track,
        ))
        .with_state(rt)
}

/// Serves the API on `socket` until the task is dropped.
pub async fn serve(rt: Arc<Runtime>, socket: &Path) -> std::io::Result<()> {
    if socket.exists() {
        std::fs::remove_file(socket)?;
    }
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = server::bind(socket).await?;
    server::serve(listener, router(rt), server::Limits::from_env()).await
}

async fn raft_status(rt: &Runtime) -> Option<shoal_actors::raft::RaftStatus> {
    let raft = rt.directory.get::<RaftMsg>("raft")?;
    match raft
        .call(RaftMsg::Status, Some(Duration::from_secs(2)))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(s)) => Some(s),
        _ => None,
    }
}

/// The node id of the current Raft leader, if this manager knows it.
async fn leader_node_id(rt: &Runtime) -> Option<String> {
    let status = raft_status(rt).await?;
    let m = rt.manager().ok()?;
    let guard = m.sm.read();
    guard
        .0
        .nodes
        .values()
        .find(|n| n.raft_id == status.leader_id && status.leader_id != 0)
        .map(|n| n.id.clone())
}

async fn info(State(rt): Rt) -> Typed<wire::Info> {
    let raft = match rt.manager() {
        Ok(_) => raft_status(&rt).await,
        Err(_) => None,
    };
    Ok(Json(views::info(&rt, raft.as_ref())))
}

async fn swarm(State(rt): Rt) -> Typed<wire::Swarm> {
    if rt.identity().is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not part of a swarm",
        ));
    }
    let m = rt.manager()?;
    let guard = m.sm.read();
    let c = guard.0.cluster.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the swarm is still initialising",
        )
    })?;
    let mut c = c.clone();
    drop(guard);
    // The state holds the join tokens sealed; the API shows them.
    let keys = rt.keyring()?;
    for t in [&mut c.join_tokens.worker, &mut c.join_tokens.manager] {
        *t = crate::keys::open_token(keys.as_ref(), t)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    Ok(Json(views::swarm(&c)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct InitRequest {
    #[serde(default)]
    spec: Option<Value>,
    #[serde(default)]
    force_new_cluster: bool,
    #[serde(default)]
    listen_addr: Option<String>,
    #[serde(default)]
    advertise_addr: Option<String>,
    /// `swarm init --autolock`.
    #[serde(default)]
    auto_lock_managers: bool,
    #[serde(default)]
    default_addr_pool: Vec<String>,
    #[serde(default)]
    subnet_size: Option<u8>,
}

/// `POST /swarm/init` answers the node's id, a JSON string (dockerd's).
async fn swarm_init(State(rt): Rt, body: Option<Json<InitRequest>>) -> Typed<String> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    if req.force_new_cluster && rt.identity().is_some() {
        return Ok(Json(rt.force_new_cluster().await?));
    }
    let mut spec = ClusterSpec::default();
    if let Some(s) = req.spec {
        let s: wire::SwarmSpec = typed::read(&s).map_err(ApiError::bad_request)?;
        swarm_settings(&mut spec, &s)?;
    }
    if !req.default_addr_pool.is_empty() {
        spec.default_addr_pool = req
            .default_addr_pool
            .iter()
            .map(|p| shoal_core::model::network::Subnet::parse(p))
            .collect::<Result<_, _>>()
            .map_err(ApiError::bad_request)?;
    }
    if let Some(n) = req.subnet_size {
        spec.subnet_size = n;
    }
    shoal_core::limits::check_cluster_spec(&spec).map_err(|e| ApiError::bad_request(e.0))?;
    // docker's client sends "" for an address it was not given.
    let addrs = crate::runtime::AddrRequest {
        listen: req.listen_addr.filter(|a| !a.is_empty()),
        advertise: req.advertise_addr.filter(|a| !a.is_empty()),
    };
    let node_id = rt.init_swarm(spec, addrs).await?;
    if req.auto_lock_managers {
        rt.set_autolock(true, false).await?;
    }
    Ok(Json(node_id))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JoinRequest {
    join_token: String,
    remote_addrs: Vec<String>,
    #[serde(default)]
    listen_addr: Option<String>,
    #[serde(default)]
    advertise_addr: Option<String>,
    /// `swarm join --availability` (the Engine API's `Availability`).
    #[serde(default)]
    availability: Option<String>,
}

/// `POST /swarm/join` answers the node's id, a JSON string.
async fn swarm_join(State(rt): Rt, Json(req): Json<JoinRequest>) -> Typed<String> {
    let remote = req.remote_addrs.first().ok_or_else(|| {
        ApiError::bad_request("RemoteAddrs must name at least one manager (HOST:PORT)")
    })?;
    let availability = parse_availability(req.availability.as_deref())?.unwrap_or_default();
    // docker's client sends "" for an address it was not given.
    let addrs = crate::runtime::AddrRequest {
        listen: req.listen_addr.filter(|a| !a.is_empty()),
        advertise: req.advertise_addr.filter(|a| !a.is_empty()),
    };
    let node_id = rt
        .join_swarm(&req.join_token, remote, addrs, availability)
        .await?;
    Ok(Json(node_id))
}

/// The query of a list route: docker's `filters`, and `status` on `/services`.
#[derive(Deserialize, Default)]
struct ListQuery {
    filters: Option<String>,
    /// shoal's own `?service=` on `/tasks` (docker's is the `service` filter).
    service: Option<String>,
}

async fn nodes(State(rt): Rt, Query(q): Query<ListQuery>) -> Typed<Vec<wire::Node>> {
    let f = Filters::parse(
        q.filters.as_deref(),
        &["id", "label", "node.label", "membership", "name", "role"],
    )?;
    let m = rt.manager()?;
    let leader = leader_node_id(&rt).await;
    let guard = m.sm.read();
    let list: Vec<wire::Node> = guard
        .0
        .nodes
        .values()
        .filter(|n| {
            f.prefix("id", &n.id)
                && f.prefix("name", &n.hostname)
                && f.exact_ci("role", n.role.as_str())
                && f.exact_ci("membership", "accepted")
                && f.labels("label", &n.machine.engine_labels)
                && f.labels("node.label", &n.labels)
        })
        .map(|n| views::node(n, leader.as_deref()))
        .collect();
    Ok(Json(list))
}

async fn node(State(rt): Rt, UrlPath(id): UrlPath<String>) -> Typed<wire::Node> {
    let m = rt.manager()?;
    let leader = leader_node_id(&rt).await;
    let guard = m.sm.read();
    let n = guard
        .0
        .find_node(&id)
        .ok_or_else(|| ApiError::not_found(format!("node {id} not found")))?;
    Ok(Json(views::node(n, leader.as_deref())))
}

/// `GET /services`: `ServiceStatus` is always filled (docker fills it for
/// `status=true`).
async fn services(State(rt): Rt, Query(q): Query<ListQuery>) -> Typed<Vec<wire::Service>> {
    let f = Filters::parse(q.filters.as_deref(), &["id", "label", "mode", "name"])?;
    let m = rt.manager()?;
    let guard = m.sm.read();
    let list: Vec<wire::Service> = guard
        .0
        .services
        .values()
        .filter(|s| {
            f.prefix("id", &s.id)
                && f.prefix("name", &s.spec.name)
                && f.labels("label", &s.spec.labels)
                && f.exact("mode", views::mode_name(&s.spec.mode))
        })
        .map(|s| views::service(s, &guard.0))
        .collect();
    Ok(Json(list))
}

/// A service spec from a request body: docker's shape, every field set in
/// it honoured or the request refused (see `unhonoured`).
fn parse_spec(body: &Value) -> Result<shoal_core::model::ServiceSpec, ApiError> {
    let mut body = body.clone();
    unhonoured::canonical_case(&mut body);
    let spec = views::parse_service_spec(&body).map_err(ApiError::bad_request)?;
    let unhonoured = unhonoured::fields(&body, &views::service_spec_json(&spec));
    if !unhonoured.is_empty() {
        return Err(ApiError::bad_request(format!(
            "shoal does not support {} in a service spec (docs/api.md lists the fields it acts on)",
            unhonoured.join(", ")
        )));
    }
    Ok(spec)
}

fn no_such_service(id: &str) -> ApiError {
    ApiError::not_found(format!("service {id} not found"))
}

/// The full id of the service `key` names (id, name or unique id prefix).
fn service_id(m: &shoal_actors::context::ManagerCtx, key: &str) -> Result<String, ApiError> {
    m.sm.read()
        .0
        .find_service(key)
        .map(|s| s.id.clone())
        .ok_or_else(|| no_such_service(key))
}

async fn service(State(rt): Rt, UrlPath(id): UrlPath<String>) -> Typed<wire::Service> {
    let m = rt.manager()?;
    let guard = m.sm.read();
    let s = guard
        .0
        .find_service(&id)
        .ok_or_else(|| no_such_service(&id))?;
    Ok(Json(views::service(s, &guard.0)))
}

async fn service_create(
    State(rt): Rt,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<wire::ServiceCreateResponse>), ApiError> {
    // Uniqueness is the state machine's to decide, when the entry applies:
    // this manager's local state may be stale.
    let m = rt.manager()?;
    let mut spec = parse_spec(&body)?;
    secrets::resolve_refs(&m.sm.read().0, &mut spec.task_template)?;
    networks::resolve_refs(&m.sm.read().0, &mut spec.task_template)?;
    let svc = Service::new(
        shoal_actors::world::new_id(),
        spec,
        shoal_actors::world::now(),
    );
    let id = svc.id.clone();
    rt.propose(Command::CreateService(Box::new(svc))).await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::ServiceCreateResponse {
            id: Some(id),
            warnings: Some(Vec::new()),
        }),
    ))
}

#[derive(Deserialize)]
struct UpdateQuery {
    version: Option<u64>,
    /// `previous`: go back to the previous spec (docker's `service rollback`).
    rollback: Option<String>,
}

/// A service update's answer: no warnings.
fn updated() -> wire::ServiceUpdateResponse {
    wire::ServiceUpdateResponse {
        warnings: Some(Vec::new()),
    }
}

async fn service_update(
    State(rt): Rt,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<UpdateQuery>,
    body: Option<Json<Value>>,
) -> Typed<wire::ServiceUpdateResponse> {
    let m = rt.manager()?;
    match q.rollback.as_deref() {
        None | Some("") => {}
        Some("previous") => {
            rt.propose(Command::RollbackService {
                service: id,
                expected_version: q.version,
                manual: true,
                message: "manually requested rollback".into(),
                at: shoal_actors::world::now(),
            })
            .await?;
            return Ok(Json(updated()));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unrecognized rollback option {other}"
            )))
        }
    }
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request(
            "a service update needs the new spec as its JSON body",
        ));
    };
    let mut spec = parse_spec(&body)?;
    secrets::resolve_refs(&m.sm.read().0, &mut spec.task_template)?;
    networks::resolve_refs(&m.sm.read().0, &mut spec.task_template)?;
    // Nothing changed (and no --force): nothing to write, nothing to roll
    // out; unless a rollout is paused, which any update resumes.
    let unchanged = m.sm.read().0.find_service(&id).is_some_and(|s| {
        let paused = s.update_status.as_ref().is_some_and(|u| {
            matches!(
                u.state,
                shoal_core::model::UpdateState::Paused
                    | shoal_core::model::UpdateState::RollbackPaused
            )
        });
        s.spec == spec && !paused && q.version.is_none_or(|v| v == s.version)
    });
    if unchanged {
        return Ok(Json(updated()));
    }
    rt.propose(Command::UpdateService {
        service: id,
        spec,
        expected_version: q.version,
        at: shoal_actors::world::now(),
    })
    .await?;
    Ok(Json(updated()))
}

async fn service_rm(State(rt): Rt, UrlPath(id): UrlPath<String>) -> Typed<wire::Empty> {
    rt.manager()?;
    rt.propose(Command::RemoveService {
        service: id,
        at: shoal_actors::world::now(),
    })
    .await?;
    Ok(Json(wire::Empty {}))
}

/// `GET /tasks`: docker's filters; `service` and `node` take ids, names or
/// unique id prefixes, as the daemon resolves them for the docker CLI.
async fn tasks(State(rt): Rt, Query(q): Query<ListQuery>) -> Typed<Vec<wire::Task>> {
    let f = Filters::parse(
        q.filters.as_deref(),
        &[
            "id",
            "label",
            "name",
            "_up-to-date",
            "service",
            "node",
            "desired-state",
        ],
    )?;
    let m = rt.manager()?;
    let guard = m.sm.read();
    let state = &guard.0;
    let mut service_ids = Vec::new();
    for key in f.values("service").chain(q.service.as_deref()) {
        let svc = state
            .find_service(key)
            .ok_or_else(|| no_such_service(key))?;
        service_ids.push(svc.id.as_str());
    }
    let node_ids: Vec<&str> = f
        .values("node")
        .map(|key| state.find_node(key).map_or(key, |n| n.id.as_str()))
        .collect();
    for d in f.values("desired-state") {
        if !["running", "shutdown", "accepted"].contains(&d) {
            return Err(ApiError::bad_request(format!(
                "Invalid desired-state filter: '{d}'"
            )));
        }
    }
    let up_to_date = f.values("_up-to-date").any(|v| v == "true" || v == "1");
    let list: Vec<wire::Task> = state
        .tasks
        .values()
        .filter(|t| {
            (service_ids.is_empty() || service_ids.contains(&t.service_id.as_str()))
                && (node_ids.is_empty()
                    || t.node_id.as_deref().is_some_and(|n| node_ids.contains(&n)))
                && f.prefix("id", &t.id)
                && f.prefix("name", &views::task_name(t))
                && f.labels("label", &t.spec.container_labels)
                && f.exact("desired-state", t.desired_state.as_str())
                && (!up_to_date
                    || state
                        .services
                        .get(&t.service_id)
                        .is_some_and(|s| s.spec.task_template == t.spec))
        })
        .map(|t| views::task(t, state))
        .collect();
    Ok(Json(list))
}

/// One task by its id or a unique prefix of it, as `docker inspect` finds one.
fn find_task<'a>(
    state: &'a shoal_core::state::ClusterState,
    id: &str,
) -> Result<&'a shoal_core::model::Task, ApiError> {
    if let Some(t) = state.tasks.get(id) {
        return Ok(t);
    }
    let mut found = state.tasks.values().filter(|t| t.id.starts_with(id));
    match (found.next(), found.next()) {
        (Some(t), None) if !id.is_empty() => Ok(t),
        _ => Err(ApiError::not_found(format!("task {id} not found"))),
    }
}

async fn task(State(rt): Rt, UrlPath(id): UrlPath<String>) -> Typed<wire::Task> {
    let m = rt.manager()?;
    let guard = m.sm.read();
    let state = &guard.0;
    Ok(Json(views::task(find_task(state, &id)?, state)))
}

/// `GET /distribution/{image}/json`: shoal reaches no registry, so it
/// cannot pin an image to a digest. docker's client then warns and sends
/// the image as written, which each node's engine resolves locally.
async fn distribution(UrlPath(image): UrlPath<String>) -> ApiResult {
    let image = image.strip_suffix("/json").unwrap_or(&image);
    Err(ApiError::not_found(format!(
        "shoal does not query registries: {image} is not pinned to a digest and each node uses its own copy"
    )))
}

async fn debug_actors(State(rt): Rt) -> ApiResult {
    let list: Vec<Value> = rt
        .directory
        .names()
        .into_iter()
        .map(|(name, status)| {
            let heals: Vec<u128> = rt
                .directory
                .heal_times(&name)
                .iter()
                .map(|d| d.as_nanos())
                .collect();
            json!({"Name": name, "Status": format!("{status:?}"), "HealTimesNanos": heals})
        })
        .collect();
    Ok(Json(
        json!({ "Actors": list, "Raft": raft_status(&rt).await.as_ref().map(views::raft_status) }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KillRequest {
    actor: String,
    /// `kill` (default): abort the actor where it stands, which its
    /// supervisor treats like a panic. `stop`: ask it to stop normally,
    /// which only a permanent child comes back from.
    #[serde(default)]
    mode: Option<String>,
}

fn chaos_enabled(rt: &Runtime) -> Result<(), ApiError> {
    if rt.config.enable_chaos {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "chaos hooks are disabled on this node; start the daemon with --enable-chaos to use them",
        ))
    }
}

fn chaos_transport(rt: &Runtime) -> Result<Arc<crate::transport::Transport>, ApiError> {
    chaos_enabled(rt)?;
    rt.transport().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not part of a swarm",
        )
    })
}

/// Chaos hook: drop or delay this node's traffic to/from some peers.
async fn chaos_network_add(
    State(rt): Rt,
    Json(rule): Json<crate::transport::faults::Rule>,
) -> Typed<wire::Empty> {
    chaos_transport(&rt)?.faults.add(rule);
    tracing::warn!("chaos: network fault added");
    Ok(Json(wire::Empty {}))
}

async fn chaos_network_list(State(rt): Rt) -> ApiResult {
    Ok(Json(json!(chaos_transport(&rt)?.faults.rules())))
}

async fn chaos_network_clear(State(rt): Rt) -> Typed<wire::Empty> {
    chaos_transport(&rt)?.faults.clear();
    tracing::warn!("chaos: network faults cleared");
    Ok(Json(wire::Empty {}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DiskFault {
    /// Added to every Raft log flush of this manager; 0 takes it off.
    flush_delay_ms: u64,
}

/// Chaos hook: a slow disk under this manager's Raft log (every flush waits
/// `FlushDelayMs` first). A seam rather than a device-mapper `delay` target:
/// it needs no kernel support (the test machines have no device-mapper) and
/// slows exactly the flush Raft waits on before it acknowledges.
async fn chaos_disk(State(rt): Rt, Json(req): Json<DiskFault>) -> ApiResult {
    chaos_enabled(&rt)?;
    let m = rt.manager()?;
    m.log
        .set_flush_delay(Duration::from_millis(req.flush_delay_ms));
    tracing::warn!(ms = req.flush_delay_ms, "chaos: Raft log flush delay set");
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ClockFault {
    /// How far to move this node's wall clock from the host's; 0 puts it
    /// back. At most a year either way.
    offset_ms: i64,
}

/// Chaos hook: moves this node's wall clock, as a wrong host clock would
/// (`shoal_actors::world::set_skew`): what the node writes into the state,
/// stamps on its logs and events, and checks certificates against. A seam
/// rather than a time namespace, which cannot move the wall clock.
async fn chaos_clock(State(rt): Rt, Json(req): Json<ClockFault>) -> ApiResult {
    chaos_enabled(&rt)?;
    let offset = chrono::TimeDelta::milliseconds(req.offset_ms);
    if offset.abs() > shoal_actors::world::MAX_SKEW {
        return Err(ApiError::bad_request(format!(
            "offset {} ms out of range: at most a year either way",
            req.offset_ms
        )));
    }
    shoal_actors::world::set_skew(offset);
    tracing::warn!(offset_ms = req.offset_ms, "chaos: wall clock moved");
    Ok(Json(json!({})))
}

/// Chaos hook: kills (or stops) a named actor and reports how long the tree
/// took to replace it.
async fn chaos_kill(State(rt): Rt, Json(req): Json<KillRequest>) -> ApiResult {
    chaos_enabled(&rt)?;
    let stop = match req.mode.as_deref() {
        None | Some("kill") => false,
        Some("stop") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid mode {other:?}: expected kill or stop"
            )))
        }
    };
    let cell = rt.directory.cell(&req.actor).ok_or_else(|| {
        ApiError::not_found(format!(
            "no running actor named {:?} (see GET /debug/actors)",
            req.actor
        ))
    })?;
    let old = cell.get_id();
    let started = Instant::now();
    if stop {
        cell.stop(Some("stopped by a chaos hook".into()));
    } else {
        cell.kill();
    }
    // A stopped transient child is not replaced: after the old one is gone
    // its supervisor decides at once, so a second without a successor says so.
    let mut gone_at = None;
    loop {
        match rt.directory.cell(&req.actor) {
            Some(new) if new.get_id() != old => {
                let took = started.elapsed();
                return Ok(Json(json!({
                    "Actor": req.actor,
                    "Mode": if stop { "stop" } else { "kill" },
                    "Replaced": true,
                    "HealedInNanos": took.as_nanos() as u64,
                    "HealedIn": format!("{took:?}"),
                })));
            }
            Some(_) => gone_at = None,
            None => {
                let since = *gone_at.get_or_insert_with(Instant::now);
                if stop && since.elapsed() > Duration::from_secs(1) {
                    return Ok(Json(json!({
                        "Actor": req.actor,
                        "Mode": "stop",
                        "Replaced": false,
                    })));
                }
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("actor {} was killed but not replaced within 10s", req.actor),
            ));
        }
        tokio::task::yield_now().await;
        if started.elapsed() > Duration::from_millis(5) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RotateQuery {
    #[serde(default, deserialize_with = "query_bool")]
    rotate_worker_token: bool,
    #[serde(default, deserialize_with = "query_bool")]
    rotate_manager_token: bool,
    #[serde(default, deserialize_with = "query_bool")]
    rotate_manager_unlock_key: bool,
    /// docker's: the swarm's `Version.Index` the spec was read at.
    version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UnlockRequest {
    unlock_key: String,
}

/// `swarm unlock`: docker's words for a node that is not locked and a wrong key.
async fn swarm_unlock(State(rt): Rt, Json(req): Json<UnlockRequest>) -> Typed<wire::Empty> {
    if !rt.is_locked() {
        return Err(ApiError::bad_request("swarm is not locked"));
    }
    match rt.unlock(&req.unlock_key).await {
        Ok(()) => Ok(Json(wire::Empty {})),
        Err(crate::runtime::NodeError::Precondition(m)) => Err(ApiError::bad_request(m)),
        Err(e) => Err(e.into()),
    }
}

async fn swarm_unlock_key(State(rt): Rt) -> Typed<wire::UnlockKeyResponse> {
    match rt.unlock_key()? {
        Some(k) => Ok(Json(wire::UnlockKeyResponse {
            unlock_key: Some(k),
        })),
        None => Err(ApiError::not_found("no unlock key is set")),
    }
}

/// The settings of a `SwarmSpec` shoal acts on, where it gives them:
/// `Orchestration.TaskHistoryRetentionLimit`, shoal's
/// `Orchestration.Rebalance` and `Raft.SnapshotInterval`.
fn swarm_settings(spec: &mut ClusterSpec, s: &wire::SwarmSpec) -> Result<(), ApiError> {
    let orchestration = s.orchestration.as_ref();
    if let Some(n) = orchestration.and_then(|o| o.docker.task_history_retention_limit) {
        spec.task_history_limit = u64::try_from(n).map_err(|_| {
            ApiError::bad_request("TaskHistoryRetentionLimit must be a non-negative integer")
        })?;
    }
    if let Some(on) = orchestration.and_then(|o| o.rebalance) {
        spec.rebalance = on;
    }
    if let Some(n) = s.docker.raft.as_ref().and_then(|r| r.snapshot_interval) {
        if n == 0 {
            return Err(ApiError::bad_request(
                "SnapshotInterval must be a positive integer",
            ));
        }
        spec.snapshot_interval = n;
    }
    Ok(())
}

/// `POST /swarm/update`: token rotations and unlock-key rotation (query),
/// autolock (`EncryptionConfig.AutoLockManagers`), and the settings in the
/// body's `Spec` that are given (`Orchestration.TaskHistoryRetentionLimit`,
/// shoal's `Orchestration.Rebalance`).
async fn swarm_update(
    State(rt): Rt,
    Query(q): Query<RotateQuery>,
    body: Option<Json<Value>>,
) -> Typed<wire::Empty> {
    if q.rotate_worker_token || q.rotate_manager_token {
        rt.rotate_tokens(q.rotate_worker_token, q.rotate_manager_token)
            .await?;
    }
    // The body is docker's SwarmSpec.
    let typed_spec: Option<wire::SwarmSpec> = body
        .as_ref()
        .map(|Json(b)| typed::read(b))
        .transpose()
        .map_err(ApiError::bad_request)?;
    let autolock = typed_spec
        .as_ref()
        .and_then(|s| s.docker.encryption_config.as_ref())
        .and_then(|e| e.auto_lock_managers);
    if let Some(on) = autolock {
        rt.set_autolock(on, false).await?;
    }
    if q.rotate_manager_unlock_key {
        if rt.unlock_key()?.is_none() {
            return Err(ApiError::bad_request("no unlock key is set"));
        }
        rt.set_autolock(true, true).await?;
    }
    let (Some(Json(body)), Some(typed_spec)) = (body, typed_spec) else {
        return Ok(Json(wire::Empty {}));
    };
    let new = &body;
    let (mut spec, version) = {
        let m = rt.manager()?;
        let guard = m.sm.read();
        let cluster = guard.0.cluster.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the swarm is still initialising",
            )
        })?;
        (cluster.spec.clone(), cluster.version)
    };
    if q.version.is_some_and(|v| v != version) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "update out of sequence",
        ));
    }
    swarm_settings(&mut spec, &typed_spec)?;
    let autolock = rt.unlock_key()?.is_some();
    let unhonoured = unhonoured::fields(new, &views::cluster_spec_json(&spec, autolock));
    let changed_fixed = views::fixed_swarm_settings_changed(new);
    if !unhonoured.is_empty() || !changed_fixed.is_empty() {
        let mut all = unhonoured;
        all.extend(changed_fixed);
        return Err(ApiError::bad_request(format!(
            "shoal does not support changing {} (docs/api.md lists the settings it acts on)",
            all.join(", ")
        )));
    }
    shoal_core::limits::check_cluster_spec(&spec).map_err(|e| ApiError::bad_request(e.0))?;
    rt.propose(shoal_core::command::Command::UpdateClusterSpec {
        spec,
        at: shoal_actors::world::now(),
    })
    .await?;
    Ok(Json(wire::Empty {}))
}

#[derive(Deserialize)]
struct ForceQuery {
    #[serde(default, deserialize_with = "query_bool")]
    force: bool,
}

/// A boolean query parameter as docker's clients write it: `true`, `1`,
/// and docker-py's `True` (dockerd reads them with Go's `ParseBool`).
fn query_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let text = String::deserialize(d)?;
    match text.as_str() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "invalid boolean value {other:?}"
        ))),
    }
}

async fn swarm_leave(State(rt): Rt, Query(q): Query<ForceQuery>) -> Typed<wire::Empty> {
    rt.leave_swarm(q.force).await?;
    Ok(Json(wire::Empty {}))
}

async fn node_rm(
    State(rt): Rt,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<ForceQuery>,
) -> Typed<wire::Empty> {
    rt.remove_node(&id, q.force).await?;
    Ok(Json(wire::Empty {}))
}

/// `active`, `pause` or `drain`, in docker's words when it is none of them.
fn parse_availability(
    text: Option<&str>,
) -> Result<Option<shoal_core::model::Availability>, ApiError> {
    use shoal_core::model::Availability;
    match text.map(str::to_lowercase).as_deref() {
        // docker's client sends "" for "leave it as it is".
        None | Some("") => Ok(None),
        Some("active") => Ok(Some(Availability::Active)),
        Some("pause") => Ok(Some(Availability::Pause)),
        Some("drain") => Ok(Some(Availability::Drain)),
        Some(_) => Err(ApiError::bad_request(format!(
            "invalid Availability: {:?}",
            text.unwrap_or_default()
        ))),
    }
}

/// docker's `NodeSpec`: the whole spec as the client wants it to be.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeSpecBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    availability: Option<String>,
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<u64>,
}

/// `POST /nodes/{id}/update?version=N`: docker's whole `NodeSpec`. Labels
/// are replaced, a new `Role` promotes or demotes, and a `version` older
/// than the node's is refused as swarmkit refuses it.
async fn node_update(
    State(rt): Rt,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<VersionQuery>,
    Json(spec): Json<NodeSpecBody>,
) -> Typed<wire::Empty> {
    let labels = spec.labels.unwrap_or_default();
    shoal_core::limits::check_labels("node labels", &labels)
        .map_err(|e| ApiError::bad_request(e.0))?;
    let availability = parse_availability(spec.availability.as_deref())?;
    let role = match spec.role.as_deref().map(str::to_lowercase).as_deref() {
        None | Some("") => None,
        Some("manager") => Some(shoal_core::model::NodeRole::Manager),
        Some("worker") => Some(shoal_core::model::NodeRole::Worker),
        Some(other) => {
            return Err(ApiError::bad_request(format!("invalid Role: {other:?}")));
        }
    };
    let node = {
        let m = rt.manager()?;
        let guard = m.sm.read();
        guard
            .0
            .find_node(&id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("node {id} not found")))?
    };
    if q.version.is_some_and(|v| v != node.version) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "update out of sequence",
        ));
    }
    if spec
        .name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node.hostname)
    {
        return Err(ApiError::bad_request(
            "a node's Name cannot be changed: shoal names a node by its hostname",
        ));
    }
    let add: Vec<(String, String)> = labels
        .iter()
        .filter(|(k, v)| node.labels.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let rm: Vec<String> = node
        .labels
        .keys()
        .filter(|k| !labels.contains_key(*k))
        .cloned()
        .collect();
    let availability = availability.filter(|a| *a != node.availability);
    if availability.is_some() || !add.is_empty() || !rm.is_empty() {
        rt.update_node(&node.id, availability, add, rm).await?;
    }
    match role {
        Some(r) if r != node.role => match r {
            shoal_core::model::NodeRole::Manager => rt.promote(&node.id).await?,
            shoal_core::model::NodeRole::Worker => rt.demote(&node.id).await?,
        },
        _ => {}
    }
    Ok(Json(wire::Empty {}))
}
