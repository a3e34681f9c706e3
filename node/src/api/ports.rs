//! Published ports in the Engine API's shapes: `Spec.EndpointSpec` parsed
//! into `ports::EndpointSpec`, and rendered back with the ports the swarm
//! assigned (`Endpoint.Ports`).

use super::wire::{self, word};
use shoal_core::model::network::EndpointMode;
use shoal_core::model::port::{
    Balance, EndpointSpec, PortConfig, Protocol, ProxyProtocol, PublishMode, MAX_PORTS,
};

fn port_number(v: Option<i64>, what: &str) -> Result<u16, String> {
    match v {
        None => Ok(0),
        Some(v) => u16::try_from(v).map_err(|_| format!("invalid {what} {v}: expected 0 to 65535")),
    }
}

pub fn parse(es: Option<&wire::EndpointSpec>) -> Result<EndpointSpec, String> {
    let Some(es) = es else {
        return Ok(EndpointSpec::default());
    };
    let mode = match es.docker.mode.map(|m| m.to_string()).as_deref() {
        None | Some("") => EndpointMode::default(),
        Some(m) => EndpointMode::parse(m)
            .ok_or_else(|| format!("invalid endpoint mode {m:?}: expected vip or dnsrr"))?,
    };
    let balance = match es.balance.as_deref() {
        None => Balance::default(),
        Some(b) => Balance::parse(b).ok_or_else(|| {
            format!("invalid endpoint balance {b:?}: expected round-robin or least-conn")
        })?,
    };
    let raw = es.ports.as_deref().unwrap_or_default();
    if raw.len() > MAX_PORTS {
        return Err(format!("at most {MAX_PORTS} published ports per service"));
    }
    let mut ports = Vec::new();
    for p in raw {
        let protocol = match p.docker.protocol.map(|x| x.to_string()).as_deref() {
            None => Protocol::Tcp,
            Some(s) => Protocol::parse(s)
                .ok_or_else(|| format!("invalid protocol {s:?}: expected tcp or udp"))?,
        };
        let publish_mode = match p.docker.publish_mode.map(|x| x.to_string()).as_deref() {
            None => PublishMode::Ingress,
            Some(s) => PublishMode::parse(s)
                .ok_or_else(|| format!("invalid publish mode {s:?}: expected ingress or host"))?,
        };
        let target_port = port_number(p.docker.target_port, "target port")?;
        if target_port == 0 {
            return Err("No port specified: TargetPort is required".into());
        }
        let proxy_protocol = match p.proxy_protocol.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                ProxyProtocol::parse(s)
                    .ok_or_else(|| format!("invalid proxy protocol {s:?}: expected v1 or v2"))?,
            ),
        };
        if proxy_protocol.is_some() && protocol == Protocol::Udp {
            return Err("the PROXY protocol is for TCP ports only".into());
        }
        ports.push(PortConfig {
            protocol,
            target_port,
            published_port: port_number(p.docker.published_port, "published port")?,
            publish_mode,
            proxy_protocol,
            idle_timeout_ns: p.idle_timeout.unwrap_or(0),
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
        extra: Default::default(),
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
        extra: Default::default(),
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
