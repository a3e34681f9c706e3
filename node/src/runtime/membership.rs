//! Who is in the swarm and in which role: admitting joiners, Raft voters,
//! `node promote|demote|update|rm`, and applying a role change on the node itself.

use super::*;

/// A joiner must read the swarm's records: its formats (`OLDEST` to
/// `max_format`; 0, from a node of format 1, is 1) must include the cluster
/// version.
fn check_format(cluster: &shoal_core::model::Cluster, max_format: u32) -> Result<(), NodeError> {
    let swarm = cluster.cluster_format();
    let newest = max_format.max(codec::OLDEST);
    if (codec::OLDEST..=newest).contains(&swarm) {
        return Ok(());
    }
    Err(NodeError::FormatMismatch {
        oldest: codec::OLDEST,
        newest,
        swarm,
    })
}

impl Runtime {
    /// On a manager: admit a node that presented a join token.
    pub async fn handle_join(
        &self,
        token: &str,
        hostname: String,
        addr: String,
        drivers: Vec<shoal_core::model::DriverInfo>,
        availability: Availability,
        max_format: u32,
    ) -> Response {
        self.admit(token, hostname, addr, drivers, availability, max_format)
            .await
            .unwrap_or_else(|e| Response::Refused(e.into()))
    }

    pub(super) async fn admit(
        &self,
        token: &str,
        hostname: String,
        addr: String,
        drivers: Vec<shoal_core::model::DriverInfo>,
        availability: Availability,
        max_format: u32,
    ) -> Result<Response, NodeError> {
        let m = self.manager()?;
        let (cluster, managers) = {
            let guard = m.sm.read();
            let cluster = guard.0.cluster.clone().ok_or(NodeError::NotManager)?;
            let managers: Vec<String> = guard
                .0
                .nodes
                .values()
                .filter(|n| n.role == NodeRole::Manager)
                .map(|n| n.addr.clone())
                .collect();
            (cluster, managers)
        };
        let keys = self.keyring()?;
        let open = |t: &str| {
            crate::keys::open_token(keys.as_ref(), t)
                .map_err(|e| NodeError::Precondition(e.to_string()))
        };
        let (manager_token, worker_token) = (
            open(&cluster.join_tokens.manager)?,
            open(&cluster.join_tokens.worker)?,
        );
        let role = if crate::ca::tokens_equal(token, &manager_token) {
            NodeRole::Manager
        } else if crate::ca::tokens_equal(token, &worker_token) {
            NodeRole::Worker
        } else {
            return Err(NodeError::BadToken(
                "the token is not this swarm's (it may have been rotated); ask a manager for `shoal swarm join-token`".into(),
            ));
        };
        check_format(&cluster, max_format)?;
        let ca = RootCa::load(&self.ca_dir())?;
        let id = Identity {
            node_id: new_id(),
            raft_id: rand::random::<u64>().max(1),
            manager: role == NodeRole::Manager,
            cluster_id: cluster.id.clone(),
            managers: managers.clone(),
            listen_addr: None,
            advertise_addr: None,
        };
        let cert = ca.issue(&cluster.id, &id.node_id, role, 0, self.config.cert_validity)?;
        let mut node = self.new_node(
            &id,
            role,
            NodeDescription {
                node_id: id.node_id.clone(),
                hostname,
                addr,
                drivers,
                // Told at registration, by the node itself.
                sandbox_error: None,
                machine: Default::default(),
                max_format,
            },
        );
        node.availability = availability;
        self.propose(Command::UpsertNode(node)).await?;
        if role == NodeRole::Manager {
            self.add_voter(id.raft_id).await?;
        }
        Ok(Response::Joined(Box::new(Joined {
            node_id: id.node_id,
            raft_id: id.raft_id,
            role,
            cluster_id: cluster.id,
            ca_cert_pem: ca.cert_pem.clone(),
            ca_key_pem: (role == NodeRole::Manager).then(|| ca.key_pem.clone()),
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            managers,
        })))
    }

    pub(super) async fn add_voter(&self, raft_id: u64) -> Result<(), NodeError> {
        match self.add_voter_here(raft_id).await {
            Err(NodeError::Propose(ProposeError::NotLeader { leader: Some(l) })) => {
                self.forward(l, &Request::AddVoter(raft_id)).await
            }
            other => other,
        }
    }

    pub(super) async fn remove_voter(&self, raft_id: u64) -> Result<(), NodeError> {
        match self.remove_voter_here(raft_id).await {
            Err(NodeError::Propose(ProposeError::NotLeader { leader: Some(l) })) => {
                self.forward(l, &Request::RemoveVoter(raft_id)).await
            }
            other => other,
        }
    }

    /// Makes `raft_id` a voter; returns once the change is applied here.
    pub async fn add_voter_here(&self, raft_id: u64) -> Result<(), NodeError> {
        self.change_voters(raft_id, raft::prelude::ConfChangeType::AddNode)
            .await
    }

    /// Takes `raft_id` out of the voters; returns once the change is applied here.
    pub async fn remove_voter_here(&self, raft_id: u64) -> Result<(), NodeError> {
        self.change_voters(raft_id, raft::prelude::ConfChangeType::RemoveNode)
            .await
    }

    pub(super) async fn change_voters(
        &self,
        raft_id: u64,
        change_type: raft::prelude::ConfChangeType,
    ) -> Result<(), NodeError> {
        let m = self.manager()?;
        let change = raft::prelude::ConfChange {
            change_type,
            node_id: raft_id,
            ..Default::default()
        };
        let deadline = Instant::now() + m.timings.propose_timeout;
        let index = loop {
            // The Raft actor may be between two incarnations, or just starting.
            let Some(raft) = self.directory.get::<RaftMsg>("raft") else {
                if Instant::now() > deadline {
                    return Err(ProposeError::NoLeader.into());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let answer = raft
                .call(
                    |reply| RaftMsg::ProposeConfChange {
                        change: change.clone(),
                        reply,
                    },
                    Some(m.timings.propose_timeout),
                )
                .await;
            match answer {
                Ok(ractor::rpc::CallResult::Success(Ok(index))) => break index,
                Ok(ractor::rpc::CallResult::Success(Err(ProposeRefused::NotLeader {
                    leader: Some(l),
                }))) => return Err(ProposeError::NotLeader { leader: Some(l) }.into()),
                // An election is running (or a change is pending): wait for it.
                Ok(ractor::rpc::CallResult::Success(Err(
                    ProposeRefused::Busy | ProposeRefused::NotLeader { leader: None },
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return Err(ProposeError::Timeout.into()),
            }
        };
        while m.sm.applied().index < index {
            if Instant::now() > deadline {
                return Err(ProposeError::Timeout.into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// `node rm`: refused for a manager, and for a node that is not down
    /// unless forced. The node's certificate is refused from then on.
    pub async fn remove_node(&self, key: &str, force: bool) -> Result<(), NodeError> {
        let m = self.manager()?;
        let node =
            m.sm.read()
                .0
                .find_node(key)
                .cloned()
                .ok_or_else(|| NodeError::NotFound(format!("node {key} not found")))?;
        if node.role == NodeRole::Manager {
            return Err(NodeError::Precondition(format!(
                "node {} is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal",
                node.id
            )));
        }
        if node.state != NodeState::Down && !force {
            return Err(NodeError::Precondition(format!(
                "node {} is not down and can't be removed; use --force to remove it anyway",
                node.id
            )));
        }
        self.propose(Command::RemoveNode { id: node.id }).await
    }

    /// `node update`: availability and labels.
    pub async fn update_node(
        &self,
        key: &str,
        availability: Option<Availability>,
        labels_add: Vec<(String, String)>,
        labels_rm: Vec<String>,
    ) -> Result<(), NodeError> {
        let m = self.manager()?;
        let id =
            m.sm.read()
                .0
                .find_node(key)
                .map(|n| n.id.clone())
                .ok_or_else(|| NodeError::NotFound(format!("node {key} not found")))?;
        self.propose(Command::UpdateNode {
            id,
            role: None,
            availability,
            labels_add,
            labels_rm,
            at: shoal_actors::world::now(),
        })
        .await
    }

    /// Hands `node` its new role and certificate (and the CA key, to a manager).
    pub(super) async fn send_role_change(
        &self,
        node: &Node,
        role: NodeRole,
        cert: crate::certs::NodeCert,
        ca_key_pem: Option<String>,
    ) -> Result<(), NodeError> {
        let mut managers = self.managers_addrs()?;
        managers.retain(|a| *a != node.addr);
        let change = RoleChange {
            role,
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            ca_key_pem,
            managers,
        };
        if self.identity().is_some_and(|i| i.node_id == node.id) {
            return self.change_role(change).await;
        }
        self.ask(&node.addr, &Request::RoleChange(Box::new(change)))
            .await
    }

    pub(super) fn set_role(&self, id: String, role: NodeRole) -> Command {
        Command::UpdateNode {
            id,
            role: Some(role),
            availability: None,
            labels_add: Vec::new(),
            labels_rm: Vec::new(),
            at: shoal_actors::world::now(),
        }
    }

    /// `node promote`: the worker gets a manager certificate and the CA,
    /// starts its manager actors, and becomes a Raft voter.
    pub async fn promote(&self, key: &str) -> Result<(), NodeError> {
        let m = self.manager()?;
        let (node, cluster_id) = {
            let guard = m.sm.read();
            let node = guard
                .0
                .find_node(key)
                .cloned()
                .ok_or_else(|| NodeError::NotFound(format!("node {key} not found")))?;
            let cluster_id = guard
                .0
                .cluster
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            (node, cluster_id)
        };
        if node.role == NodeRole::Manager {
            return Ok(());
        }
        if node.state != NodeState::Ready {
            return Err(NodeError::Precondition(format!(
                "node {} is not ready and can't be promoted",
                node.id
            )));
        }
        let ca = RootCa::load(&self.ca_dir())?;
        let cert = ca.issue(
            &cluster_id,
            &node.id,
            NodeRole::Manager,
            node.cert_generation + 1,
            self.config.cert_validity,
        )?;
        self.propose(self.set_role(node.id.clone(), NodeRole::Manager))
            .await?;
        self.send_role_change(&node, NodeRole::Manager, cert, Some(ca.key_pem.clone()))
            .await?;
        self.add_voter(node.raft_id).await
    }

    /// `node demote`: refused for the last manager, and when the managers
    /// left reachable would be no majority of the new group.
    pub async fn demote(&self, key: &str) -> Result<(), NodeError> {
        let m = self.manager()?;
        let (node, cluster_id, managers, reachable) = {
            let guard = m.sm.read();
            let node = guard
                .0
                .find_node(key)
                .cloned()
                .ok_or_else(|| NodeError::NotFound(format!("node {key} not found")))?;
            let managers: Vec<&Node> = guard
                .0
                .nodes
                .values()
                .filter(|n| n.role == NodeRole::Manager)
                .collect();
            let reachable = managers
                .iter()
                .filter(|n| n.id != node.id && n.state == NodeState::Ready)
                .count();
            let cluster_id = guard
                .0
                .cluster
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            (node, cluster_id, managers.len(), reachable)
        };
        if node.role == NodeRole::Worker {
            return Ok(());
        }
        if managers == 1 {
            return Err(NodeError::Precondition(
                "attempting to demote the last manager of the swarm".into(),
            ));
        }
        let left = managers - 1;
        if reachable <= left / 2 {
            return Err(NodeError::Precondition(format!(
                "can't remove node: removing this node leaves {reachable} reachable managers out of {left}, which is below quorum"
            )));
        }
        let ca = RootCa::load(&self.ca_dir())?;
        let cert = ca.issue(
            &cluster_id,
            &node.id,
            NodeRole::Worker,
            node.cert_generation + 1,
            self.config.cert_validity,
        )?;
        if self.raft_leader().await == Some(node.raft_id) {
            self.hand_over_leadership(node.raft_id).await?;
        }
        self.remove_voter(node.raft_id).await?;
        self.propose(self.set_role(node.id.clone(), NodeRole::Worker))
            .await?;
        self.send_role_change(&node, NodeRole::Worker, cert, None)
            .await
    }

    /// A leader about to be demoted first hands leadership to another
    /// reachable manager, so that the group never waits on a leader that is
    /// no longer in it.
    pub(super) async fn hand_over_leadership(&self, leader: u64) -> Result<(), NodeError> {
        let successor = {
            let m = self.manager()?;
            let guard = m.sm.read();
            guard
                .0
                .nodes
                .values()
                .find(|n| {
                    n.role == NodeRole::Manager
                        && n.raft_id != leader
                        && n.state == NodeState::Ready
                })
                .map(|n| n.raft_id)
        }
        .ok_or_else(|| {
            NodeError::Precondition("no other reachable manager can take over".into())
        })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.raft_leader().await == Some(leader) {
            if Instant::now() > deadline {
                return Err(ProposeError::Timeout.into());
            }
            match self.directory.get::<RaftMsg>("raft") {
                // This node leads: transfer directly.
                Some(raft) if self.identity().is_some_and(|i| i.raft_id == leader) => {
                    let _ = raft.send_message(RaftMsg::TransferLeader(successor));
                }
                // The leader is another node: ask it over the transport.
                _ => {
                    if let Some(addr) = self.addr_of_raft(leader) {
                        let _ = self.ask(&addr, &Request::TransferLeader(successor)).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// On the node whose role changed: switch certificates, then start or
    /// stop the manager actors. Raft state from an earlier membership is
    /// dropped: a promoted node catches up from the leader.
    pub async fn change_role(&self, change: RoleChange) -> Result<(), NodeError> {
        let Some(mut id) = self.identity() else {
            return Err(NodeError::NotInSwarm);
        };
        let cert = NodeCert {
            cert_pem: change.cert_pem,
            key_pem: change.key_pem,
        };
        // Only a newer certificate of this node: an older role change (sent
        // again, or overtaken by a later one) changes nothing.
        let current = NodeCert::load(&self.certs_dir())?.identity();
        match (cert.identity(), current) {
            (Some(new), Some(now))
                if new.node_id == id.node_id
                    && new.cluster_id == now.cluster_id
                    && new.generation > now.generation => {}
            _ => {
                return Err(NodeError::Precondition(
                    "a role change must carry a newer certificate of this node".into(),
                ))
            }
        }
        cert.save(&self.certs_dir())?;
        let manager = change.role == NodeRole::Manager;
        match &change.ca_key_pem {
            Some(key) => RootCa {
                cert_pem: std::fs::read_to_string(self.ca_dir().join("ca.crt"))
                    .map_err(|e| io_err(&self.ca_dir(), e))?,
                cert_der: Vec::new(),
                key_pem: key.clone(),
            }
            .save(&self.ca_dir())?,
            None => {
                let _ = std::fs::remove_file(self.ca_dir().join("ca.key"));
                let _ = std::fs::remove_file(self.config.data_dir.join("keys").join("kek"));
            }
        }
        if let Some(t) = self.transport() {
            t.reload(&self.tls_identity(&cert)?)?;
        }
        if id.manager && !manager {
            self.manager_part.stop_actors_and_wait().await;
            self.manager_part.forget();
        }
        if id.manager != manager {
            for tree in ["raft_log", "raft_meta", "state"] {
                self.store.db()?.drop_tree(tree)?;
            }
        }
        let was_manager = id.manager;
        id.manager = manager;
        id.managers = change.managers;
        self.save_identity(&id)?;
        let mut managers = id.managers.clone();
        if manager {
            managers.insert(0, self.advertise());
        }
        *self.managers.write() = managers;
        if manager && !was_manager {
            self.start_manager(&id).await?;
        }
        tracing::info!(node = %id.node_id, role = ?change.role, "role changed");
        Ok(())
    }
}
