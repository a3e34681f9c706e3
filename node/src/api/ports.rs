//! Published ports in the Engine API's shapes: `Spec.EndpointSpec` parsed
//! into `ports::EndpointSpec`, and rendered back with the ports the swarm
//! assigned (`Endpoint.Ports`).

use serde_json::Value;

use super::wire::{self, word};
use shoal_actors::networks::EndpointMode;
use shoal_actors::ports::{
    Balance, EndpointSpec, PortConfig, Protocol, ProxyProtocol, PublishMode, MAX_PORTS,
};

fn port_number(v: Option<&Value>, what: &str) -> Result<u16, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| format!("invalid {what} {v}: expected 0 to 65535")),
    }
}

/// `Spec.EndpointSpec` (absent: no published ports).
pub fn parse(body: &Value) -> Result<EndpointSpec, String> {
    let Some(es) = body.get("EndpointSpec").filter(|v| !v.is_null()) else {
        return Ok(EndpointSpec::default());
    };
    let mode = match es.get("Mode").and_then(Value::as_str) {
        None | Some("") => EndpointMode::default(),
        Some(m) => EndpointMode::parse(m)
            .ok_or_else(|| format!("invalid endpoint mode {m:?}: expected vip or dnsrr"))?,
    };
    let balance = match es.get("Balance").and_then(Value::as_str) {
        None => Balance::default(),
        Some(b) => Balance::parse(b).ok_or_else(|| {
            format!("invalid endpoint balance {b:?}: expected round-robin or least-conn")
        })?,
    };
    let raw = match es.get("Ports") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err("EndpointSpec.Ports must be a list".into()),
    };
    if raw.len() > MAX_PORTS {
        return Err(format!("at most {MAX_PORTS} published ports per service"));
    }
    let mut ports = Vec::new();
    for p in &raw {
        let protocol = match p.get("Protocol").and_then(Value::as_str) {
            None => Protocol::Tcp,
            Some(s) => Protocol::parse(s)
                .ok_or_else(|| format!("invalid protocol {s:?}: expected tcp or udp"))?,
        };
        let publish_mode = match p.get("PublishMode").and_then(Value::as_str) {
            None => PublishMode::Ingress,
            Some(s) => PublishMode::parse(s)
                .ok_or_else(|| format!("invalid publish mode {s:?}: expected ingress or host"))?,
        };
        let target_port = port_number(p.get("TargetPort"), "target port")?;
        if target_port == 0 {
            return Err("No port specified: TargetPort is required".into());
        }
        let proxy_protocol = match p.get("ProxyProtocol").and_then(Value::as_str) {
            None | Some("") => None,
            Some(s) => Some(
                ProxyProtocol::parse(s)
                    .ok_or_else(|| format!("invalid proxy protocol {s:?}: expected v1 or v2"))?,
            ),
        };
        if proxy_protocol.is_some() && protocol == Protocol::Udp {
            return Err("the PROXY protocol is for TCP ports only".into());
        }
        let idle_timeout_ns = match p.get("IdleTimeout") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| format!("invalid IdleTimeout {v}: expected nanoseconds"))?,
        };
        ports.push(PortConfig {
            protocol,
            target_port,
            published_port: port_number(p.get("PublishedPort"), "published port")?,
            publish_mode,
            proxy_protocol,
            idle_timeout_ns,
        });
    }
    Ok(EndpointSpec {
        ports,
        balance,
        mode,
    })
}

fn port(p: &PortConfig) -> wire::PortConfig {
    wire::PortConfig {
        docker: wire::EndpointPortConfig {
            protocol: word(p.protocol.as_str()),
            target_port: Some(i64::from(p.target_port)),
            published_port: Some(i64::from(p.published_port)),
            publish_mode: word(p.publish_mode.as_str()),
            name: None,
        },
        proxy_protocol: p.proxy_protocol.map(|pp| pp.as_str().to_string()),
        idle_timeout: (p.idle_timeout_ns != 0).then_some(p.idle_timeout_ns),
    }
}

/// `Spec.EndpointSpec`.
pub fn spec(e: &EndpointSpec) -> wire::EndpointSpec {
    wire::EndpointSpec {
        docker: bollard::models::EndpointSpec {
            mode: word(e.mode.as_str()),
            ports: None,
        },
        balance: Some(e.balance.as_str().to_string()),
        ports: Some(e.ports.iter().map(port).collect()),
    }
}

/// Ports as the Engine API lists them (a task's `Status.PortStatus.Ports`).
pub fn published_ports(ports: &[&PortConfig]) -> Vec<wire::PortConfig> {
    ports.iter().map(|p| port(p)).collect()
}

/// `Endpoint.Ports`: the ports as published (the swarm's picks filled in).
pub fn published(e: &EndpointSpec) -> Vec<wire::PortConfig> {
    e.ports.iter().map(port).collect()
}
