//! Address management, done by the state machine as entries apply: the
//! networks' own checks (docker's messages), the subnet a network gets from
//! the default pool, a service's VIPs, a task's addresses when it is
//! assigned, and their release when it ends or is removed.

use std::net::Ipv4Addr;

mod table;

pub use table::{table, NetworkInfo, NetworkTable, NodeBlock, ServiceNames, ServiceNet, TaskAddr};

use crate::model::network::{
    Attachment, Holder, Network, NetworkCommand, NetworkSpec, Subnet, VirtualIp, BLOCK_PREFIX,
    INGRESS, MAX_ALIASES, MAX_ATTACHMENTS, MAX_NAME, MAX_NETWORKS, MAX_PREFIX, MIN_PREFIX,
};
use crate::model::{Service, ServiceSpec, Task};
use crate::state::{ApplyError, Change, ClusterState};

fn invalid(msg: impl Into<String>) -> ApplyError {
    ApplyError::Network(msg.into())
}

/// docker's rule for object names, shared with secrets and configs.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "invalid name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] allowed, at most {MAX_NAME} characters"
        )),
    }
}

/// The addresses a task or VIP may take: neither the network address nor
/// the broadcast address.
fn usable(net: Subnet) -> std::ops::Range<u32> {
    1..(net.size().saturating_sub(1) as u32)
}

impl Network {
    /// The next free address from where the last search stopped.
    fn free_offset(&self) -> Option<u32> {
        let range = usable(self.subnet);
        let len = range.end.saturating_sub(range.start);
        (0..len)
            .map(|i| range.start + (self.ipam.next.saturating_sub(range.start) + i) % len)
            .find(|o| !self.ipam.used.contains_key(o))
    }

    fn take(&mut self, holder: Holder) -> Option<Ipv4Addr> {
        let off = self.free_offset()?;
        self.ipam.used.insert(off, holder);
        self.ipam.next = off + 1;
        Some(self.subnet.nth(off))
    }

    fn free(&mut self, addr: Ipv4Addr, holder: &Holder) {
        let off = self.subnet.offset(addr);
        if self.ipam.used.get(&off) == Some(holder) {
            self.ipam.used.remove(&off);
        }
    }

    fn free_count(&self) -> usize {
        usable(self.subnet).len() - self.ipam.used.len()
    }

    /// Tasks and VIPs: what keeps a network from going (a node's block goes
    /// with the network).
    pub fn in_use(&self) -> bool {
        self.ipam
            .used
            .values()
            .any(|h| matches!(h, Holder::Task(_) | Holder::Service(_)))
    }

    /// A free, aligned block for a node's outside containers.
    fn take_block(&mut self, node_id: &str) -> Option<Subnet> {
        let n = 1u32 << (32 - u32::from(BLOCK_PREFIX));
        let range = usable(self.subnet);
        let start = (0..self.subnet.size() as u32 / n)
            .map(|i| i * n)
            .find(|s| {
                (*s..s + n).all(|o| range.contains(&o) && !self.ipam.used.contains_key(&o))
            })?;
        for o in start..start + n {
            self.ipam.used.insert(o, Holder::Block(node_id.to_string()));
        }
        Some(Subnet {
            addr: self.subnet.nth(start),
            prefix: BLOCK_PREFIX,
        })
    }
}

/// The networks a service joins (by reference) and the aliases it has on
/// each: those of its task template. The ingress network is not among them:
/// the routing mesh reaches tasks through its tunnels, not by addresses on
/// ingress, so neither VIPs nor task addresses are given there.
pub(crate) fn joined<'a>(
    state: &'a ClusterState,
    svc: &'a Service,
) -> impl Iterator<Item = (&'a Network, &'a [String])> + 'a {
    joined_spec(state, &svc.spec)
}

fn joined_spec<'a>(
    state: &'a ClusterState,
    spec: &'a ServiceSpec,
) -> impl Iterator<Item = (&'a Network, &'a [String])> + 'a {
    spec.task_template
        .networks
        .iter()
        .filter_map(|r| Some((state.networks.get(&r.target)?, r.aliases.as_slice())))
}

/// An id every manager derives alike from the cluster's (for the ingress
/// network, made as `InitCluster` applies).
fn derived_id(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::with_capacity(25);
    for round in 0..25u64 {
        for b in seed.bytes().chain(round.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let c = b"0123456789abcdefghijklmnopqrstuvwxyz"[(h % 36) as usize];
        out.push(c as char);
    }
    out
}

impl ClusterState {
    /// A network by id, name or unique id prefix (docker's order).
    pub fn find_network(&self, key: &str) -> Option<&Network> {
        if let Some(n) = self.networks.get(key) {
            return Some(n);
        }
        if let Some(n) = self.networks.values().find(|n| n.spec.name == key) {
            return Some(n);
        }
        let mut matches = self.networks.values().filter(|n| n.id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(n), None) if !key.is_empty() => Some(n),
            _ => None,
        }
    }

    /// The first subnet of the default pool no network overlaps.
    fn pool_subnet(&self) -> Option<Subnet> {
        let spec = self
            .cluster
            .as_ref()
            .map(|c| c.spec.clone())
            .unwrap_or_default();
        spec.default_addr_pool.iter().find_map(|pool| {
            let count = 1u64 << spec.subnet_size.saturating_sub(pool.prefix).min(16);
            (0..count)
                .filter_map(|i| pool.child(spec.subnet_size, i))
                .find(|s| self.networks.values().all(|n| !n.subnet.overlaps(*s)))
        })
    }

    pub(crate) fn check_networks(&self, cmd: &NetworkCommand) -> Result<(), ApplyError> {
        match cmd {
            NetworkCommand::Create(net) => {
                check_spec(&net.spec).map_err(ApplyError::Invalid)?;
                if self.networks.len() >= MAX_NETWORKS {
                    return Err(invalid(format!(
                        "a swarm holds at most {MAX_NETWORKS} networks"
                    )));
                }
                if self.networks.values().any(|n| n.spec.name == net.spec.name)
                    || self.networks.contains_key(&net.id)
                {
                    return Err(ApplyError::NetworkExists(net.spec.name.clone()));
                }
                match net.spec.subnet {
                    Some(s) if self.networks.values().any(|n| n.subnet.overlaps(s)) => Err(invalid(
                        "invalid pool request: Pool overlaps with other one on this address space",
                    )),
                    Some(_) => Ok(()),
                    None => match self.pool_subnet() {
                        Some(_) => Ok(()),
                        None => Err(invalid(
                            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
                        )),
                    },
                }
            }
            NetworkCommand::Remove { key } => {
                let net = self
                    .find_network(key)
                    .ok_or_else(|| ApplyError::NetworkNotFound(key.clone()))?;
                if net.ingress {
                    return Err(invalid(format!(
                        "{} is a pre-defined network and cannot be removed",
                        net.spec.name
                    )));
                }
                if let Some(s) = self.services.values().find(|s| {
                    s.spec
                        .task_template
                        .networks
                        .iter()
                        .any(|r| r.target == net.id)
                }) {
                    return Err(ApplyError::NetworkInUse {
                        network: net.id.clone(),
                        service: s.id.clone(),
                    });
                }
                if net.in_use() {
                    return Err(ApplyError::NetworkHasEndpoints(net.spec.name.clone()));
                }
                Ok(())
            }
        }
    }

    pub(crate) fn mutate_networks(
        &mut self,
        cmd: &NetworkCommand,
        index: u64,
        changes: &mut Vec<Change>,
    ) {
        match cmd {
            NetworkCommand::Create(net) => {
                let mut net = Network::clone(net);
                let Some(subnet) = net.spec.subnet.or_else(|| self.pool_subnet()) else {
                    return;
                };
                net.subnet = subnet;
                net.gateway = net.spec.gateway.unwrap_or(subnet.nth(1));
                net.ipam = Default::default();
                net.ipam
                    .used
                    .insert(subnet.offset(net.gateway), Holder::Gateway);
                net.ipam.next = subnet.offset(net.gateway) + 1;
                net.version = index;
                changes.push(Change::Network(net.id.clone()));
                self.networks.insert(net.id.clone(), net);
            }
            NetworkCommand::Remove { key } => {
                if let Some(id) = self.find_network(key).map(|n| n.id.clone()) {
                    self.networks.remove(&id);
                    changes.push(Change::Network(id));
                }
            }
        }
        self.reserve_blocks();
    }

    /// The ingress network, made with the swarm.
    pub(crate) fn create_ingress(&mut self, index: u64, changes: &mut Vec<Change>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let mut net = Network::proposed(
            derived_id(&cluster.id),
            NetworkSpec {
                name: INGRESS.into(),
                labels: Default::default(),
                driver: "overlay".into(),
                subnet: None,
                gateway: None,
                attachable: false,
                internal: false,
                encrypted: true,
                options: Default::default(),
            },
            cluster.created_at,
        );
        net.ingress = true;
        self.mutate_networks(&NetworkCommand::Create(Box::new(net)), index, changes);
    }

    /// Refuses a service spec whose networks are unknown (or host mixed
    /// with others), or that needs more VIPs than its networks have left.
    pub(crate) fn check_service_networks(
        &self,
        spec: &ServiceSpec,
        own: Option<&Service>,
    ) -> Result<(), ApplyError> {
        let refs = &spec.task_template.networks;
        if refs.len() > MAX_ATTACHMENTS {
            return Err(invalid(format!(
                "a service joins at most {MAX_ATTACHMENTS} networks"
            )));
        }
        let host = refs.iter().any(|r| r.target == "host");
        if host && refs.len() > 1 {
            return Err(invalid(
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        for r in refs.iter().filter(|r| r.target != "host") {
            let Some(net) = self.networks.get(&r.target) else {
                return Err(ApplyError::NetworkNotFound(r.target.clone()));
            };
            if net.ingress {
                return Err(invalid(
                    "service cannot be explicitly attached to the ingress network \"ingress\"",
                ));
            }
            if r.aliases.len() > MAX_ALIASES {
                return Err(invalid(format!(
                    "at most {MAX_ALIASES} aliases per network"
                )));
            }
            for a in &r.aliases {
                crate::limits::check_dns_name(a).map_err(|e| invalid(e.0))?;
            }
            if refs.iter().filter(|o| o.target == r.target).count() > 1 {
                return Err(invalid(format!(
                    "duplicate network name or id {} in the network list",
                    net.spec.name
                )));
            }
        }
        if spec.endpoint.mode == crate::model::network::EndpointMode::Vip {
            for (net, _) in joined_spec(self, spec) {
                let has = own.is_some_and(|s| s.virtual_ips.iter().any(|v| v.network_id == net.id));
                if !has && net.free_count() == 0 {
                    return Err(invalid(format!(
                        "could not allocate a virtual IP on network {}: no address left in {}",
                        net.spec.name, net.subnet
                    )));
                }
            }
        }
        if spec.endpoint.mode == crate::model::network::EndpointMode::Dnsrr
            && spec
                .endpoint
                .ports
                .iter()
                .any(|p| p.publish_mode == crate::model::port::PublishMode::Ingress)
        {
            return Err(invalid(
                "port published with ingress mode can't be used with dnsrr mode",
            ));
        }
        Ok(())
    }

    /// A network whose addresses are about to change, marked so that the
    /// entry reports it.
    fn touch(&mut self, id: &str) -> Option<&mut Network> {
        if self.networks.contains_key(id) {
            self.touched_networks.insert(id.to_string());
        }
        self.networks.get_mut(id)
    }

    /// Gives the service a VIP on each network it joins (endpoint mode
    /// `vip`) and takes back those it no longer needs. A VIP it keeps stays
    /// the same across updates and scaling.
    pub(crate) fn assign_vips(&mut self, service_id: &str) {
        let Some(svc) = self.services.get(service_id) else {
            return;
        };
        let want: Vec<String> = match svc.spec.endpoint.mode {
            crate::model::network::EndpointMode::Vip => {
                joined(self, svc).map(|(n, _)| n.id.clone()).collect()
            }
            crate::model::network::EndpointMode::Dnsrr => Vec::new(),
        };
        let mut vips = svc.virtual_ips.clone();
        let holder = Holder::Service(service_id.to_string());
        vips.retain(|v| {
            let keep = want.contains(&v.network_id);
            if !keep {
                if let Some(net) = self.touch(&v.network_id) {
                    net.free(v.addr, &holder);
                }
            }
            keep
        });
        for id in want {
            if vips.iter().any(|v| v.network_id == id) {
                continue;
            }
            if let Some(addr) = self.touch(&id).and_then(|n| n.take(holder.clone())) {
                vips.push(VirtualIp {
                    network_id: id,
                    addr,
                });
            }
        }
        if let Some(svc) = self.services.get_mut(service_id) {
            svc.virtual_ips = vips;
        }
    }

    /// Gives a removed service's VIPs back.
    pub(crate) fn release_vips(&mut self, svc: &Service) {
        let holder = Holder::Service(svc.id.clone());
        for v in &svc.virtual_ips {
            if let Some(net) = self.touch(&v.network_id) {
                net.free(v.addr, &holder);
            }
        }
    }

    /// An address on each network the task's service joins, taken as it is
    /// assigned to a node; all or none. Err names the network that is full.
    pub(crate) fn allocate(&mut self, task_id: &str) -> Result<Vec<Attachment>, String> {
        let Some(task) = self.tasks.get(task_id) else {
            return Ok(Vec::new());
        };
        if !task.attachments.is_empty() {
            return Ok(task.attachments.clone());
        }
        let wanted: Vec<String> = task
            .spec
            .networks
            .iter()
            .filter(|r| self.networks.contains_key(&r.target))
            .map(|r| r.target.clone())
            .collect();
        if let Some(full) = wanted
            .iter()
            .filter_map(|id| self.networks.get(id))
            .find(|n| n.free_count() == 0)
        {
            return Err(format!(
                "could not allocate an address on network {}: no address left in {}",
                full.spec.name, full.subnet
            ));
        }
        let holder = Holder::Task(task_id.to_string());
        Ok(wanted
            .into_iter()
            .filter_map(|id| {
                let addr = self.touch(&id)?.take(holder.clone())?;
                Some(Attachment {
                    network_id: id,
                    addr,
                })
            })
            .collect())
    }

    /// Gives a task's addresses back (it ended, or was removed).
    pub(crate) fn release(&mut self, task: &Task) {
        let holder = Holder::Task(task.id.clone());
        for a in &task.attachments {
            if let Some(net) = self.touch(&a.network_id) {
                net.free(a.addr, &holder);
            }
        }
    }

    /// A block on every attachable network for every node that runs docker
    /// containers and has none yet (while blocks are left).
    pub(crate) fn reserve_blocks(&mut self) {
        let nodes: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.has_driver("docker"))
            .map(|n| n.id.clone())
            .collect();
        for net in self.networks.values_mut().filter(|n| n.spec.attachable) {
            for node in &nodes {
                let holder = Holder::Block(node.clone());
                if !net.ipam.used.values().any(|h| *h == holder) && net.take_block(node).is_some() {
                    self.touched_networks.insert(net.id.clone());
                }
            }
        }
    }

    /// Gives a removed node's blocks back.
    pub(crate) fn release_blocks(&mut self, node_id: &str) {
        let holder = Holder::Block(node_id.to_string());
        for net in self.networks.values_mut() {
            let before = net.ipam.used.len();
            net.ipam.used.retain(|_, h| *h != holder);
            if net.ipam.used.len() != before {
                self.touched_networks.insert(net.id.clone());
            }
        }
    }
}

/// What `network create` may ask for, before any state is read.
pub fn check_spec(spec: &NetworkSpec) -> Result<(), String> {
    check_name(&spec.name)?;
    if spec.driver != "overlay" {
        return Err(format!(
            "network driver {:?} is not supported: swarm networks use the overlay driver",
            spec.driver
        ));
    }
    crate::limits::check_labels("labels", &spec.labels).map_err(|e| e.0)?;
    crate::limits::check_labels("options", &spec.options).map_err(|e| e.0)?;
    if let Some(s) = spec.subnet {
        if s.prefix < MIN_PREFIX || s.prefix > MAX_PREFIX {
            return Err(format!(
                "invalid subnet {s}: an overlay's prefix must be between /{MIN_PREFIX} and /{MAX_PREFIX}"
            ));
        }
    }
    match (spec.gateway, spec.subnet) {
        (Some(_), None) => Err("gateway needs a subnet".into()),
        (Some(g), Some(s)) if !s.contains(g) || !usable(s).contains(&s.offset(g)) => Err(format!(
            "invalid gateway {g}: it is not a host address of {s}"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DriverInfo, NodeState};
    use chrono::Utc;

    fn network(name: &str, subnet: &str, attachable: bool) -> Network {
        Network {
            id: format!("id-{name}"),
            spec: NetworkSpec {
                name: name.into(),
                labels: Default::default(),
                driver: "overlay".into(),
                subnet: Some(Subnet::parse(subnet).unwrap()),
                gateway: None,
                attachable,
                internal: false,
                encrypted: true,
                options: Default::default(),
            },
            subnet: Subnet::parse(subnet).unwrap(),
            gateway: Ipv4Addr::UNSPECIFIED,
            ingress: false,
            ipam: Default::default(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 0,
        }
    }

    #[test]
    fn docker_nodes_get_a_block_on_attachable_networks_and_give_it_back() {
        let mut s = ClusterState::default();
        let mut node = crate::model::sample_node("n1", "h1", crate::model::NodeRole::Worker);
        node.state = NodeState::Ready;
        node.drivers = vec![DriverInfo {
            name: "docker".into(),
            version: "27".into(),
        }];
        s.apply(&crate::command::Command::UpsertNode(node), 1)
            .unwrap();
        for (i, (name, attachable)) in [("att", true), ("plain", false)].into_iter().enumerate() {
            let subnet = format!("10.0.{}.0/24", 20 + i);
            let cmd = NetworkCommand::Create(Box::new(network(name, &subnet, attachable)));
            s.apply(&crate::command::Command::Networks(cmd), 2 + i as u64)
                .unwrap();
        }
        let table = crate::rules::network::table(&s);
        assert_eq!(table.blocks.len(), 1, "{:?}", table.blocks);
        let b = &table.blocks[0];
        assert_eq!(
            (b.network_id.as_str(), b.node_id.as_str()),
            ("id-att", "n1")
        );
        // The first block holds the gateway: the next one is the node's.
        assert_eq!(b.block.to_string(), "10.0.20.16/28");
        // Its addresses are never a task's.
        let net = &s.networks["id-att"];
        assert_eq!(net.free_count(), 254 - 1 - 16);
        s.apply(&crate::command::Command::RemoveNode { id: "n1".into() }, 9)
            .unwrap();
        assert_eq!(s.networks["id-att"].ipam.used.len(), 1);
    }
}
