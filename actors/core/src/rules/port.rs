//! The rules the state machine applies to published ports (no two
//! services on one ingress port; a port left at 0 gets one from Swarm's
//! dynamic range), and the endpoint table every node's proxy follows.

use serde::{Deserialize, Serialize};

use crate::model::port::*;
use crate::model::{NodeState, TaskState};
use crate::state::ClusterState;

/// The error docker gives for an ingress port another service holds.
pub fn port_in_use(port: u16, service: &str, id: &str) -> String {
    format!("port '{port}' is already in use by service '{service}' ({id}) as an ingress port")
}

/// Refuses `spec`'s ports if another service than `own` (the service being
/// updated) publishes one of its ingress ports, or it repeats one.
pub fn check(state: &ClusterState, spec: &EndpointSpec, own: Option<&str>) -> Result<(), String> {
    if spec.ports.len() > MAX_PORTS {
        return Err(format!("at most {MAX_PORTS} published ports per service"));
    }
    for (i, p) in spec.ports.iter().enumerate() {
        if p.target_port == 0 {
            return Err("target port must be between 1 and 65535".into());
        }
        if p.idle_timeout_ns != 0
            && !(crate::limits::MIN_IDLE_TIMEOUT.as_nanos()
                ..=crate::limits::MAX_DURATION.as_nanos())
                .contains(&u128::from(p.idle_timeout_ns))
        {
            return Err("idle timeout must be between 1s and 365 days".into());
        }
        if p.published_port != 0
            && spec.ports[..i]
                .iter()
                .any(|q| q.published_port == p.published_port && q.protocol == p.protocol)
        {
            return Err(format!("duplicate published port {}", p.published_port));
        }
        if p.publish_mode != PublishMode::Ingress || p.published_port == 0 {
            continue;
        }
        for svc in state
            .services
            .values()
            .filter(|s| Some(s.id.as_str()) != own)
        {
            let clash = svc.spec.endpoint.ports.iter().any(|q| {
                q.publish_mode == PublishMode::Ingress
                    && q.published_port == p.published_port
                    && q.protocol == p.protocol
            });
            if clash {
                return Err(port_in_use(p.published_port, &svc.spec.name, &svc.id));
            }
        }
    }
    Ok(())
}

/// `spec` with every ingress port left at 0 given the lowest free port of
/// `DYNAMIC_PORTS` (deterministic: every replica picks the same).
pub fn assign(state: &ClusterState, own: Option<&str>, mut spec: EndpointSpec) -> EndpointSpec {
    let mut taken: Vec<(Protocol, u16)> = state
        .services
        .values()
        .filter(|s| Some(s.id.as_str()) != own)
        .flat_map(|s| s.spec.endpoint.ports.iter())
        .chain(spec.ports.iter())
        .filter(|p| p.publish_mode == PublishMode::Ingress && p.published_port != 0)
        .map(|p| (p.protocol, p.published_port))
        .collect();
    for p in spec.ports.iter_mut() {
        if p.publish_mode == PublishMode::Ingress && p.published_port == 0 {
            if let Some(free) = DYNAMIC_PORTS
                .clone()
                .find(|n| !taken.contains(&(p.protocol, *n)))
            {
                p.published_port = free;
                taken.push((p.protocol, free));
            }
        }
    }
    spec
}

/// A running task a proxy may send connections to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Backend {
    pub task_id: String,
    pub node_id: String,
    /// The node's cluster address, where a tunnel to the task goes.
    pub node_addr: String,
}

/// What every node's proxy needs of one service that publishes ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoints {
    pub service_id: String,
    pub ports: Vec<PortConfig>,
    pub balance: Balance,
    /// Tasks observed running (and healthy, if they have a health check)
    /// and still meant to run, on nodes that are up. A task told to stop
    /// leaves this list before its process is stopped.
    pub backends: Vec<Backend>,
}

/// The endpoint table of the whole swarm, from the state alone.
pub fn endpoints(state: &ClusterState) -> Vec<ServiceEndpoints> {
    state
        .services
        .values()
        .filter(|s| !s.spec.endpoint.ports.is_empty())
        .map(|s| {
            let mut backends: Vec<Backend> = state
                .tasks_of_service(&s.id)
                .filter(|t| t.is_up() && t.desired_state == TaskState::Running)
                .filter_map(|t| {
                    let node = state.nodes.get(t.node_id.as_deref()?)?;
                    (node.state == NodeState::Ready).then(|| Backend {
                        task_id: t.id.clone(),
                        node_id: node.id.clone(),
                        node_addr: node.addr.clone(),
                    })
                })
                .collect();
            backends.sort();
            ServiceEndpoints {
                service_id: s.id.clone(),
                ports: s.spec.endpoint.ports.clone(),
                balance: s.spec.endpoint.balance,
                backends,
            }
        })
        .collect()
}
