//! `POST /networks/{id}/connect` and `/disconnect` in docker's shapes
//! (`Container`, `EndpointConfig.IPAMConfig.IPv4Address`, `Force`): a
//! container of this node's engine joins or leaves an attachable overlay
//! network (`driver/docker_connect.rs`). Served by any node, for its own
//! containers, as docker's engine serves its own.

use std::net::Ipv4Addr;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use bollard::models::{NetworkConnectRequest, NetworkDisconnectRequest};
use serde_json::Value;

use super::{ApiError, Rt};
use crate::driver::docker_connect::{ConnectError, Connected, Connections};
use crate::runtime::Runtime;

impl From<ConnectError> for ApiError {
    fn from(e: ConnectError) -> Self {
        let status = match &e {
            ConnectError::NotFound(_) => StatusCode::NOT_FOUND,
            ConnectError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConnectError::Conflict(_) => StatusCode::CONFLICT,
            ConnectError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

fn connections(rt: &Runtime) -> Result<std::sync::Arc<Connections>, ApiError> {
    if rt.identity().is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not part of a swarm",
        ));
    }
    rt.worker_part.connections.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Docker engine on this node: only its containers can be connected",
        )
    })
}

/// A connect or disconnect body as its bollard type: docker's client always
/// names the container; without one, the check below says it is required.
fn body_as<T: serde::de::DeserializeOwned>(mut body: Value) -> Result<T, ApiError> {
    if let Value::Object(m) = &mut body {
        m.entry("Container").or_insert_with(|| Value::from(""));
    }
    super::typed::read(&body).map_err(ApiError::bad_request)
}

fn container_of(container: &str) -> Result<String, ApiError> {
    Some(container)
        .filter(|c| !c.is_empty() && c.len() <= 256)
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("Container is required"))
}

pub async fn connect(
    State(rt): Rt,
    UrlPath(network): UrlPath<String>,
    Json(body): Json<Value>,
) -> Result<StatusCode, ApiError> {
    let conns = connections(&rt)?;
    let req: NetworkConnectRequest = body_as(body)?;
    let container = container_of(&req.container)?;
    let want = match req
        .endpoint_config
        .as_ref()
        .and_then(|e| e.ipam_config.as_ref())
        .and_then(|i| i.ipv4_address.as_deref())
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => Some(
            s.parse::<Ipv4Addr>()
                .map_err(|_| ApiError::bad_request(format!("invalid IPv4 address: {s}")))?,
        ),
    };
    let node_id = rt.identity().map(|i| i.node_id).unwrap_or_default();
    conns.connect(&node_id, &network, &container, want).await?;
    Ok(StatusCode::OK)
}

pub async fn disconnect(
    State(rt): Rt,
    UrlPath(network): UrlPath<String>,
    Json(body): Json<Value>,
) -> Result<StatusCode, ApiError> {
    let conns = connections(&rt)?;
    let req: NetworkDisconnectRequest = body_as(body)?;
    let container = container_of(&req.container)?;
    let force = req.force.unwrap_or(false);
    match conns.disconnect(&network, &container).await {
        // docker: a forced disconnect of what is not connected is no error.
        Err(ConnectError::Forbidden(_)) if force => Ok(StatusCode::OK),
        r => r.map(|()| StatusCode::OK).map_err(ApiError::from),
    }
}

/// `Containers` of a network's inspect: those connected on this node.
pub fn containers(
    rt: &Runtime,
    network_id: &str,
) -> std::collections::HashMap<String, super::wire::docker::EndpointResource> {
    let list: Vec<Connected> = rt
        .worker_part
        .connections
        .as_ref()
        .map(|c| c.on(network_id))
        .unwrap_or_default();
    list.into_iter()
        .map(|c| {
            let endpoint = super::wire::docker::EndpointResource {
                name: Some(c.container_name.clone()),
                ipv4_address: Some(format!("{}/{}", c.addr, c.prefix)),
                ipv6_address: Some(String::new()),
                ..Default::default()
            };
            (c.container_id, endpoint)
        })
        .collect()
}
