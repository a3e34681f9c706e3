//! The network table: what every node's data plane (routes, VIP balancing)
//! and DNS server need, built from the replicated state alone and pushed to
//! every node by the dispatcher whenever it changes.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::model::network::{EndpointMode, Subnet};
use crate::model::{NodeState, TaskState};
use crate::state::ClusterState;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkTable {
    pub networks: Vec<NetworkInfo>,
    /// Every address a task holds, on a node that is up, while the task has
    /// not ended: where packets for that address go.
    pub tasks: Vec<TaskAddr>,
    /// Blocks of addresses nodes hand to containers outside shoal.
    pub blocks: Vec<NodeBlock>,
    /// The names a service answers to, on each network it joins.
    pub services: Vec<ServiceNames>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    /// false: the kernel VXLAN fast path, plaintext between nodes.
    pub encrypted: bool,
    pub attachable: bool,
    pub ingress: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskAddr {
    pub network_id: String,
    pub addr: Ipv4Addr,
    pub task_id: String,
    pub service_id: String,
    pub node_id: String,
    /// The node's cluster address, where packets for the task go.
    pub node_addr: String,
    /// Running (and healthy, with a health check) and meant to run: in DNS
    /// answers and behind the service's VIP. A task told to stop leaves
    /// them before its process is signalled, and keeps its route.
    pub serving: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBlock {
    pub network_id: String,
    pub node_id: String,
    pub node_addr: String,
    pub block: Subnet,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceNames {
    pub service_id: String,
    pub name: String,
    pub mode: EndpointMode,
    pub networks: Vec<ServiceNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceNet {
    pub network_id: String,
    /// Endpoint mode `vip` only.
    pub vip: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
}

impl NetworkTable {
    pub fn network(&self, id: &str) -> Option<&NetworkInfo> {
        self.networks.iter().find(|n| n.id == id)
    }

    /// The serving tasks of a service on a network, in address order.
    pub fn backends<'a>(
        &'a self,
        service_id: &'a str,
        network_id: &'a str,
    ) -> impl Iterator<Item = &'a TaskAddr> + 'a {
        self.tasks
            .iter()
            .filter(move |t| t.serving && t.service_id == service_id && t.network_id == network_id)
    }
}

/// The table of the whole swarm, from the state alone.
pub fn table(state: &ClusterState) -> NetworkTable {
    let networks = state
        .networks
        .values()
        .map(|n| NetworkInfo {
            id: n.id.clone(),
            name: n.spec.name.clone(),
            subnet: n.subnet,
            gateway: n.gateway,
            internal: n.spec.internal,
            encrypted: n.spec.encrypted,
            attachable: n.spec.attachable,
            ingress: n.ingress,
        })
        .collect();
    let up = |node_id: &str| {
        state
            .nodes
            .get(node_id)
            .filter(|n| n.state == NodeState::Ready)
    };
    let mut tasks: Vec<TaskAddr> = state
        .tasks
        .values()
        .filter(|t| !t.attachments.is_empty() && !t.status.state.is_terminal())
        .filter_map(|t| Some((t, up(t.node_id.as_deref()?)?)))
        .flat_map(|(t, node)| {
            let serving = t.is_up() && t.desired_state == TaskState::Running;
            t.attachments.iter().map(move |a| TaskAddr {
                network_id: a.network_id.clone(),
                addr: a.addr,
                task_id: t.id.clone(),
                service_id: t.service_id.clone(),
                node_id: node.id.clone(),
                node_addr: node.addr.clone(),
                serving,
            })
        })
        .collect();
    tasks.sort();
    let blocks = state
        .networks
        .values()
        .flat_map(|n| {
            // A block holds each of its offsets: report it once, at its first.
            let size = 1u32 << (32 - u32::from(super::BLOCK_PREFIX));
            n.ipam.used.iter().filter_map(move |(off, h)| match h {
                super::Holder::Block(node_id) if off % size == 0 => {
                    let node = up(node_id)?;
                    Some(NodeBlock {
                        network_id: n.id.clone(),
                        node_id: node.id.clone(),
                        node_addr: node.addr.clone(),
                        block: Subnet {
                            addr: n.subnet.nth(*off),
                            prefix: super::BLOCK_PREFIX,
                        },
                    })
                }
                _ => None,
            })
        })
        .collect();
    let services = state
        .services
        .values()
        .filter(|s| !s.spec.task_template.networks.is_empty() || !s.virtual_ips.is_empty())
        .map(|s| ServiceNames {
            service_id: s.id.clone(),
            name: s.spec.name.clone(),
            mode: s.spec.endpoint.mode,
            networks: super::joined(state, s)
                .map(|(net, aliases)| ServiceNet {
                    network_id: net.id.clone(),
                    vip: s
                        .virtual_ips
                        .iter()
                        .find(|v| v.network_id == net.id)
                        .map(|v| v.addr),
                    aliases: aliases.to_vec(),
                })
                .collect(),
        })
        .collect();
    NetworkTable {
        networks,
        tasks,
        blocks,
        services,
    }
}
