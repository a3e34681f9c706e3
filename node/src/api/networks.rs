//! `/networks`: overlay networks in docker's shapes (create, ls, inspect,
//! rm, prune), beside this node's own task bridge (scope `local`), and the
//! network references of a task template (`TaskTemplate.Networks`).

use std::collections::BTreeMap;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use shoal_actors::proposer::ProposeError;
use shoal_core::command::Command;
use shoal_core::model::network::{
    self as networks, Network, NetworkCommand, NetworkRef, NetworkSpec, Subnet,
};
use shoal_core::model::TaskTemplate;
use shoal_core::rules::network::check_spec;
use shoal_core::state::{ApplyError, ClusterState};

use super::filters::Filters;
use super::wire;
use super::{ApiError, Rt};
use crate::cluster::wire::Refusal;
use crate::runtime::{NodeError, Runtime};

/// Parses `TaskTemplate.Networks` (`Target` is a name or id until
/// `resolve_refs` names it by id).
pub fn parse_refs(
    list: Option<&[wire::NetworkAttachmentConfig]>,
) -> Result<Vec<NetworkRef>, String> {
    let list = list.unwrap_or_default();
    if list.len() > networks::MAX_ATTACHMENTS {
        return Err(format!(
            "a service joins at most {} networks",
            networks::MAX_ATTACHMENTS
        ));
    }
    list.iter()
        .map(|n| {
            let target = n
                .target
                .clone()
                .filter(|t| !t.is_empty())
                .ok_or("a network needs a Target")?;
            Ok(NetworkRef {
                target,
                aliases: n.aliases.clone().unwrap_or_default(),
            })
        })
        .collect()
}

pub fn refs(list: &[NetworkRef]) -> Vec<wire::NetworkAttachmentConfig> {
    list.iter()
        .map(|n| wire::NetworkAttachmentConfig {
            target: Some(n.target.clone()),
            aliases: (!n.aliases.is_empty()).then(|| n.aliases.clone()),
            driver_opts: None,
        })
        .collect()
}

/// Names each reference's network by id, as docker's CLI does before it
/// sends a spec; `host` stays as it is.
pub fn resolve_refs(state: &ClusterState, t: &mut TaskTemplate) -> Result<(), ApiError> {
    for r in t.networks.iter_mut().filter(|r| r.target != "host") {
        let Some(n) = state.find_network(&r.target) else {
            return Err(ApiError::not_found(format!(
                "network {} not found",
                r.target
            )));
        };
        r.target = n.id.clone();
    }
    Ok(())
}

/// `Endpoint.VirtualIPs`: `[{"NetworkID": .., "Addr": "10.0.9.2/24"}]`.
pub fn virtual_ips(
    svc: &shoal_core::model::Service,
    state: &ClusterState,
) -> Vec<wire::ServiceEndpointVirtualIps> {
    svc.virtual_ips
        .iter()
        .map(|v| {
            let prefix = state
                .networks
                .get(&v.network_id)
                .map_or(32, |n| n.subnet.prefix);
            wire::ServiceEndpointVirtualIps {
                network_id: Some(v.network_id.clone()),
                addr: Some(format!("{}/{prefix}", v.addr)),
            }
        })
        .collect()
}

/// A task's `NetworksAttachments`, docker's shape.
pub fn attachments(
    t: &shoal_core::model::Task,
    state: &ClusterState,
) -> Vec<wire::NetworkAttachment> {
    t.attachments
        .iter()
        .map(|a| {
            let net = state.networks.get(&a.network_id);
            wire::NetworkAttachment {
                network: wire::AttachedNetwork {
                    id: a.network_id.clone(),
                    spec: wire::AttachedNetworkSpec {
                        name: net.map(|n| n.spec.name.clone()).unwrap_or_default(),
                    },
                },
                addresses: vec![format!(
                    "{}/{}",
                    a.addr,
                    net.map_or(32, |n| n.subnet.prefix)
                )],
            }
        })
        .collect()
}

/// Docker's `Network` object of a swarm network.
pub fn network(n: &Network, state: &ClusterState) -> wire::Network {
    let services: BTreeMap<String, wire::NetworkService> = state
        .services
        .values()
        .filter_map(|s| {
            let vip = s.virtual_ips.iter().find(|v| v.network_id == n.id);
            let joined = s
                .spec
                .task_template
                .networks
                .iter()
                .any(|r| r.target == n.id);
            (joined || vip.is_some()).then(|| {
                let tasks = state
                    .tasks_of_service(&s.id)
                    .filter(|t| !t.status.state.is_terminal())
                    .filter_map(|t| {
                        let a = t.attachments.iter().find(|a| a.network_id == n.id)?;
                        Some(wire::NetworkTask {
                            name: t.name(),
                            endpoint_id: t.id.clone(),
                            endpoint_ip: a.addr.to_string(),
                            info: BTreeMap::new(),
                        })
                    })
                    .collect();
                (
                    s.spec.name.clone(),
                    wire::NetworkService {
                        vip: vip.map(|v| v.addr.to_string()).unwrap_or_default(),
                        ports: Vec::new(),
                        local_lb_index: 0,
                        tasks,
                    },
                )
            })
        })
        .collect();
    let mut options: BTreeMap<String, String> = n.spec.options.clone();
    options.insert(
        "encrypted".into(),
        match n.spec.encrypted {
            true => "quic".into(),
            false => "false".into(),
        },
    );
    wire::Network {
        docker: bollard::models::NetworkInspect {
            name: Some(n.spec.name.clone()),
            id: Some(n.id.clone()),
            created: Some(wire::time(&n.created_at)),
            scope: Some("swarm".into()),
            driver: Some("overlay".into()),
            enable_ipv6: Some(false),
            ipam: Some(wire::Ipam {
                driver: Some("default".into()),
                options: None,
                config: Some(vec![wire::IpamConfig {
                    subnet: Some(n.subnet.to_string()),
                    gateway: Some(n.gateway.to_string()),
                    ..Default::default()
                }]),
            }),
            internal: Some(n.spec.internal),
            attachable: Some(n.spec.attachable),
            ingress: Some(n.ingress),
            config_only: Some(false),
            containers: Some(Default::default()),
            options: Some(options.into_iter().collect()),
            labels: Some(n.spec.labels.clone().into_iter().collect()),
            ..Default::default()
        },
        services: Some(services),
        version: wire::version(n.version),
    }
}

/// This node's task network (routed veths, the dummy link `shb<tag>`
/// holding its address blocks), as docker shows a local bridge network.
fn bridge(rt: &Runtime, cluster_id: &str) -> Option<wire::Network> {
    use sha2::Digest;
    let sb = rt.worker_part.process.sandbox()?;
    let d = sha2::Sha256::digest(format!("{cluster_id}/{}", sb.bridge()).as_bytes());
    let id = d.iter().map(|b| format!("{b:02x}")).collect::<String>()[..25].to_string();
    Some(wire::Network {
        docker: bollard::models::NetworkInspect {
            name: Some(sb.bridge().to_string()),
            id: Some(id),
            driver: Some("bridge".into()),
            scope: Some("local".into()),
            ingress: Some(false),
            internal: Some(false),
            attachable: Some(false),
            ipam: Some(wire::Ipam {
                driver: Some("default".into()),
                options: None,
                // One entry a block the node holds; every task's gateway
                // is the on-link 169.254.1.1 (its veth's host end).
                config: Some(
                    sb.subnets()
                        .into_iter()
                        .map(|subnet| wire::IpamConfig {
                            subnet: Some(subnet),
                            gateway: Some(crate::sandbox::TASK_GATEWAY.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            options: Some(Default::default()),
            labels: Some(Default::default()),
            ..Default::default()
        },
        services: None,
        version: None,
    })
}

fn all(rt: &Runtime) -> Result<Vec<wire::Network>, ApiError> {
    let m = rt.manager()?;
    let guard = m.sm.read();
    let state = &guard.0;
    let cluster_id = state
        .cluster
        .as_ref()
        .map(|c| c.id.clone())
        .unwrap_or_default();
    let mut list: Vec<wire::Network> = state.networks.values().map(|n| network(n, state)).collect();
    list.extend(bridge(rt, &cluster_id));
    Ok(list)
}

#[derive(Deserialize)]
pub struct ListQuery {
    filters: Option<String>,
}

/// docker's network filters: `name` (a substring, as dockerd matches it),
/// `id` (a prefix), `driver`, `scope`, `type`, `label`, `dangling`.
fn matches(f: &Filters, n: &wire::Network) -> bool {
    let d = &n.docker;
    let text = |x: &Option<String>| x.clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = d
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let builtin = text(&d.scope) == "local" || d.ingress == Some(true);
    let dangling = n.services.as_ref().is_none_or(|s| s.is_empty());
    (!f.has("name") || f.values("name").any(|w| text(&d.name).contains(w)))
        && f.prefix("id", &text(&d.id))
        && f.exact("driver", &text(&d.driver))
        && f.exact("scope", &text(&d.scope))
        && f.exact("type", if builtin { "builtin" } else { "custom" })
        && f.labels("label", &labels)
        && (!f.has("dangling")
            || f.values("dangling")
                .any(|x| (x == "true" || x == "1") == dangling))
}

pub async fn list(
    State(rt): Rt,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<wire::Network>>, ApiError> {
    let f = Filters::parse(
        q.filters.as_deref(),
        &["dangling", "driver", "id", "label", "name", "scope", "type"],
    )?;
    let list = all(&rt)?.into_iter().filter(|n| matches(&f, n)).collect();
    Ok(Json(list))
}

pub async fn inspect(
    State(rt): Rt,
    UrlPath(key): UrlPath<String>,
) -> Result<Json<wire::Network>, ApiError> {
    let list = all(&rt)?;
    let id = |n: &wire::Network| n.docker.id.clone().unwrap_or_default();
    // docker's order: full id, name, then a unique id prefix.
    let by = |f: &dyn Fn(&wire::Network) -> bool| {
        list.iter().filter(|n| f(n)).cloned().collect::<Vec<_>>()
    };
    let exact = by(&|n| id(n) == key || n.docker.name.as_deref() == Some(key.as_str()));
    let found = match exact.first() {
        Some(n) => Some(n.clone()),
        None => {
            let p = by(&|n| id(n).starts_with(&key));
            (p.len() == 1 && !key.is_empty()).then(|| p[0].clone())
        }
    };
    let mut found = found.ok_or_else(|| ApiError::not_found(format!("network {key} not found")))?;
    if let Some(id) = found.docker.id.clone() {
        found.docker.containers = Some(super::connect::containers(&rt, &id));
    }
    Ok(Json(found))
}

fn str_map(m: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// `POST /networks/create`: docker's body (`Name`, `Driver`, `IPAM.Config`,
/// `Attachable`, `Internal`, `Labels`, `Options`), read as bollard's
/// `NetworkCreateRequest`.
pub async fn create(
    State(rt): Rt,
    Json(mut body): Json<Value>,
) -> Result<(StatusCode, Json<wire::NetworkCreateResponse>), ApiError> {
    rt.manager()?;
    // docker's client always names the network; without a name the name
    // check below refuses it in its words.
    if let Value::Object(m) = &mut body {
        m.entry("Name").or_insert_with(|| Value::from(""));
    }
    let req: wire::docker::NetworkCreateRequest =
        super::typed::read(&body).map_err(ApiError::bad_request)?;
    let driver = match req.driver.clone().unwrap_or_default() {
        d if d.is_empty() => "overlay".to_string(),
        d => d,
    };
    let config = req
        .ipam
        .as_ref()
        .and_then(|i| i.config.clone())
        .unwrap_or_default();
    if config.len() > 1 {
        return Err(ApiError::bad_request(
            "an overlay network takes one IPAM config (one subnet)",
        ));
    }
    let first = config.first();
    let subnet = first
        .and_then(|c| c.subnet.as_deref())
        .filter(|s| !s.is_empty())
        .map(Subnet::parse)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let gateway = first
        .and_then(|c| c.gateway.as_deref())
        .filter(|s| !s.is_empty())
        .map(|g| {
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gateway address {g}")))
        })
        .transpose()?;
    if first
        .and_then(|c| c.ip_range.as_deref())
        .is_some_and(|r| !r.is_empty())
    {
        return Err(ApiError::bad_request(
            "--ip-range is not supported: the swarm hands out the whole subnet",
        ));
    }
    let mut options = str_map(req.options.as_ref());
    let encrypted = match options.remove("encrypted").as_deref() {
        None | Some("") | Some("true") | Some("quic") => true,
        Some("false") => false,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "invalid option encrypted={o}: expected true or false"
            )))
        }
    };
    let spec = NetworkSpec {
        name: req.name.clone(),
        labels: str_map(req.labels.as_ref()),
        driver,
        subnet,
        gateway,
        attachable: req.attachable.unwrap_or(false),
        internal: req.internal.unwrap_or(false),
        encrypted,
        options,
    };
    check_spec(&spec).map_err(ApiError::bad_request)?;
    let now = shoal_actors::world::now();
    let id = shoal_actors::world::new_id();
    let net = Network::proposed(id.clone(), spec, now);
    rt.propose(Command::Networks(NetworkCommand::Create(Box::new(net))))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(wire::NetworkCreateResponse {
            id,
            warning: String::new(),
        }),
    ))
}

/// How long a network's removal waits for departing tasks' endpoints.
const ENDPOINTS_GONE_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

pub async fn remove(State(rt): Rt, UrlPath(key): UrlPath<String>) -> Result<StatusCode, ApiError> {
    let m = rt.manager()?;
    if m.sm.read().0.find_network(&key).is_none() {
        return Err(ApiError::not_found(format!("network {key} not found")));
    }
    // The tasks of a service just removed (`stack rm` removes the services,
    // then their networks) give their addresses back as they stop: wait
    // for that in this manager's state, rather than fail (or propose a
    // removal the state machine would refuse, again and again).
    let deadline = std::time::Instant::now() + ENDPOINTS_GONE_WITHIN;
    loop {
        // Only departing tasks are waited for: a service that names the
        // network is refused at once, by the state machine.
        let busy = {
            let guard = m.sm.read();
            let state = &guard.0;
            state.find_network(&key).is_some_and(|n| {
                n.in_use()
                    && !state.services.values().any(|s| {
                        s.spec
                            .task_template
                            .networks
                            .iter()
                            .any(|r| r.target == n.id)
                    })
            })
        };
        if busy && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            continue;
        }
        let removal = rt.propose(Command::Networks(NetworkCommand::Remove {
            key: key.clone(),
        }));
        match removal.await {
            // This manager's state was behind the leader's: wait again.
            Err(
                NodeError::Propose(ProposeError::Rejected(ApplyError::NetworkHasEndpoints(_)))
                | NodeError::Remote(Refusal::Rejected(ApplyError::NetworkHasEndpoints(_))),
            ) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
            Ok(()) => return Ok(StatusCode::NO_CONTENT),
        }
    }
}

#[derive(Deserialize)]
pub struct PruneQuery {
    filters: Option<String>,
}

/// `POST /networks/prune`: every network no service uses and no task holds
/// an address on (the ingress network stays), docker's `label=` filters.
pub async fn prune(
    State(rt): Rt,
    Query(q): Query<PruneQuery>,
) -> Result<Json<wire::NetworkPruneResponse>, ApiError> {
    let m = rt.manager()?;
    let filters: BTreeMap<String, Vec<String>> = match q.filters.as_deref() {
        None | Some("") => BTreeMap::new(),
        Some(f) => serde_json::from_str(f)
            .map_err(|_| ApiError::bad_request("filters must be a JSON map of lists"))?,
    };
    let candidates: Vec<(String, String)> = {
        let guard = m.sm.read();
        guard
            .0
            .networks
            .values()
            .filter(|n| !n.ingress)
            .filter(|n| {
                filters.get("label").is_none_or(|ls| {
                    ls.iter().all(|w| match w.split_once('=') {
                        Some((k, v)) => n.spec.labels.get(k).is_some_and(|x| x == v),
                        None => n.spec.labels.contains_key(w.as_str()),
                    })
                })
            })
            .filter(|n| {
                guard
                    .0
                    .check(&Command::Networks(NetworkCommand::Remove {
                        key: n.id.clone(),
                    }))
                    .is_ok()
            })
            .map(|n| (n.id.clone(), n.spec.name.clone()))
            .collect()
    };
    let mut deleted = Vec::new();
    for (id, name) in candidates {
        // Each on its own: one taken meanwhile is refused alone.
        if rt
            .propose(Command::Networks(NetworkCommand::Remove { key: id }))
            .await
            .is_ok()
        {
            deleted.push(name);
        }
    }
    Ok(Json(wire::NetworkPruneResponse {
        networks_deleted: Some(deleted),
    }))
}
