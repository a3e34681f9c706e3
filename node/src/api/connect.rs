//! `POST /networks/{id}/connect` and `/disconnect` in docker's shapes
//! (`Container`, `EndpointConfig.IPAMConfig.IPv4Address`, `Force`): a
//! container of this node's engine joins or leaves an attachable overlay
//! network (`driver/docker_connect.rs`). Served by any node, for its own
//! containers, as docker's engine serves its own.

use std::net::Ipv4Addr;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
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
    rt.connections.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Docker engine on this node: only its containers can be connected",
        )
    })
}

fn container_of(body: &Value) -> Result<String, ApiError> {
    body.get("Container")
        .and_then(Value::as_str)
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
    let container = container_of(&body)?;
    let want = match body
        .pointer("/EndpointConfig/IPAMConfig/IPv4Address")
        .and_then(Value::as_str)
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
    let container = container_of(&body)?;
    let force = body.get("Force").and_then(Value::as_bool).unwrap_or(false);
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
