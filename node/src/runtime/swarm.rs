//! Entering and leaving a swarm: `swarm init`, `swarm join`, `swarm leave`,
//! `--force-new-cluster`, and join-token rotation.

use super::*;

/// `--listen-addr` and `--advertise-addr` of `swarm init` and `swarm join`.
#[derive(Debug, Clone, Default)]
pub struct AddrRequest {
    pub listen: Option<String>,
    pub advertise: Option<String>,
}

impl Runtime {
    /// The addresses a swarm init or join asks for, the daemon's flags
    /// standing in for what it leaves out.
    pub(super) fn choose_addrs(
        &self,
        req: &AddrRequest,
        manager: Option<SocketAddr>,
    ) -> Result<(SocketAddr, String), NodeError> {
        let interfaces = addrs::interfaces();
        let listen = match &req.listen {
            Some(spec) => addrs::listen(spec, addrs::DEFAULT_PORT, &interfaces)?,
            None => self.config.listen_addr,
        };
        let spec = req
            .advertise
            .as_deref()
            .or(self.config.advertise_addr.as_deref());
        // Joining with nothing to advertise on an unspecified listen address:
        // the address this machine reaches the manager from.
        if let (None, Some(manager)) = (spec, manager) {
            if listen.ip().is_unspecified() {
                if let Some(ip) = addrs::route_to(manager) {
                    return Ok((listen, SocketAddr::new(ip, listen.port()).to_string()));
                }
            }
        }
        let advertise = addrs::advertise(spec, listen, &interfaces)?;
        Ok((listen, advertise.to_string()))
    }

    pub(super) fn set_addrs(&self, listen: SocketAddr, advertise: String) {
        *self.listen.write() = listen;
        *self.advertise.write() = advertise;
    }

    /// `swarm init`: a new cluster with this node as its only manager.
    pub async fn init_swarm(
        self: &Arc<Self>,
        spec: ClusterSpec,
        addrs: AddrRequest,
    ) -> Result<String, NodeError> {
        let _guard = self.init_lock.lock().await;
        if self.identity.read().is_some() {
            return Err(NodeError::AlreadyInSwarm);
        }
        let (listen, advertise) = self.choose_addrs(&addrs, None)?;
        check_listen_addr(listen)?;
        self.set_addrs(listen, advertise.clone());
        let ca = RootCa::generate()?;
        ca.save(&self.ca_dir())?;
        let cluster_id = new_id();
        let id = Identity {
            node_id: new_id(),
            raft_id: rand::random::<u64>().max(1),
            manager: true,
            cluster_id: cluster_id.clone(),
            managers: vec![advertise.clone()],
            listen_addr: Some(listen),
            advertise_addr: Some(advertise),
        };
        ca.issue(
            &cluster_id,
            &id.node_id,
            NodeRole::Manager,
            0,
            self.config.cert_validity,
        )?
        .save(&self.certs_dir())?;
        let now = shoal_actors::world::now();
        let cluster = Cluster {
            id: cluster_id,
            spec,
            join_tokens: {
                let keys = crate::keys::ClusterKeyring::from_ca_key(&ca.key_pem);
                let seal = |t: String| {
                    crate::keys::seal_token(&keys, &t)
                        .map_err(|e| NodeError::Precondition(e.to_string()))
                };
                JoinTokens {
                    worker: seal(ca.join_token())?,
                    manager: seal(ca.join_token())?,
                }
            },
            ca_cert_pem: ca.cert_pem.clone(),
            removed_nodes: Vec::new(),
            unlock_key: None,
            created_at: now,
            updated_at: now,
            // The state machine sets it from the nodes as the entry applies.
            format: 0,
            version: 0,
        };
        let node = self.new_node(&id, NodeRole::Manager, self.node_description(&id.node_id));
        // The identity is written first, so that a restart finds the Raft log
        // this node is about to create. (A crash before InitCluster commits
        // leaves a manager without a cluster: remove the data dir and init again.)
        self.save_identity(&id)?;
        self.start_transport(&id)?;
        let ctx_log = shoal_actors::raft::LogStore::open(&self.store.db()?)?;
        ctx_log.bootstrap(vec![id.raft_id])?;
        self.start_manager(&id).await?;
        // The bootstrap voter set lives only in this node's storage; a log
        // entry naming this manager lets managers that join later, and replay
        // the log from its start, know it is a voter too.
        self.add_voter_here(id.raft_id).await?;
        self.manager()?
            .proposer
            .propose(Command::InitCluster { cluster, node })
            .await?;
        self.start_worker(&id).await?;
        tracing::info!(node = %id.node_id, "swarm initialised");
        Ok(id.node_id)
    }

    /// `swarm join`: ask a manager for a place in its swarm.
    pub async fn join_swarm(
        self: &Arc<Self>,
        token: &str,
        remote: &str,
        addrs: AddrRequest,
        availability: Availability,
    ) -> Result<String, NodeError> {
        let _guard = self.init_lock.lock().await;
        if self.identity.read().is_some() {
            return Err(NodeError::AlreadyInSwarm);
        }
        let digest = token_digest(token)?;
        let remote_addr: SocketAddr = remote
            .parse()
            .map_err(|_| NodeError::Unreachable(remote.into(), "not an IP:PORT address".into()))?;
        let (listen, advertise) = self.choose_addrs(&addrs, Some(remote_addr))?;
        check_listen_addr(listen)?;
        self.set_addrs(listen, advertise.clone());
        let desc = self.node_description("");
        let req = Request::Join {
            token: token.to_string(),
            hostname: desc.hostname,
            addr: desc.addr,
            drivers: desc.drivers,
            availability,
            max_format: desc.max_format,
        };
        let bytes = codec::encode(&req).map_err(|e| NodeError::Actors(e.to_string()))?;
        let bind = SocketAddr::new(listen.ip(), 0);
        let answer = crate::transport::anonymous_request(bind, remote_addr, &digest, &bytes)
            .await
            .map_err(|e| NodeError::Unreachable(remote.into(), e.to_string()))?;
        let joined = match codec::decode::<Response>(&answer) {
            Ok(Response::Joined(j)) => *j,
            Ok(Response::Refused(r)) => return Err(NodeError::Remote(r)),
            _ => {
                return Err(NodeError::Unreachable(
                    remote.into(),
                    "unexpected answer".into(),
                ))
            }
        };
        let ca_dir = self.ca_dir();
        std::fs::create_dir_all(&ca_dir).map_err(|e| io_err(&ca_dir, e))?;
        std::fs::write(ca_dir.join("ca.crt"), &joined.ca_cert_pem)
            .map_err(|e| io_err(&ca_dir, e))?;
        if let Some(key) = &joined.ca_key_pem {
            let ca = RootCa {
                cert_pem: joined.ca_cert_pem.clone(),
                cert_der: Vec::new(),
                key_pem: key.clone(),
            };
            ca.save(&ca_dir)?;
        }
        NodeCert {
            cert_pem: joined.cert_pem.clone(),
            key_pem: joined.key_pem.clone(),
        }
        .save(&self.certs_dir())?;
        let id = Identity {
            node_id: joined.node_id.clone(),
            raft_id: joined.raft_id,
            manager: joined.role == NodeRole::Manager,
            cluster_id: joined.cluster_id.clone(),
            managers: joined.managers.clone(),
            listen_addr: Some(listen),
            advertise_addr: Some(advertise),
        };
        self.save_identity(&id)?;
        self.start_transport(&id)?;
        self.start_manager(&id).await?;
        self.start_worker(&id).await?;
        tracing::info!(node = %id.node_id, role = ?joined.role, "joined the swarm");
        Ok(id.node_id)
    }

    /// `swarm leave`: stop this node's tasks and actors and forget the swarm.
    /// A manager must be forced, since its leaving may cost the swarm its quorum.
    pub async fn leave_swarm(&self, force: bool) -> Result<(), NodeError> {
        let _guard = self.init_lock.lock().await;
        let Some(id) = self.identity() else {
            return Err(NodeError::NotInSwarm);
        };
        if id.manager && !force {
            let managers = self.manager().map_or(1, |m| {
                m.sm.read()
                    .0
                    .nodes
                    .values()
                    .filter(|n| n.role == NodeRole::Manager)
                    .count()
            });
            return Err(NodeError::Precondition(format!(
                "You are attempting to leave the swarm on a node that is participating as a manager. \
                 Removing this node leaves {} managers out of {managers}. Without a Raft quorum your swarm will be inaccessible. \
                 The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. \
                 Use `--force` to suppress this message.",
                managers.saturating_sub(1)
            )));
        }
        self.worker_part.stop_actors();
        self.manager_part.stop_actors();
        let network = &self.network_stack;
        self.worker_part
            .process
            .stop_all(Duration::from_secs(10))
            .await;
        network.mesh.clear();
        self.peers.clear();
        self.push_term.clear();
        network.stop_dns();
        network.overlay.stop();
        if let Some(sb) = self.worker_part.process.sandbox() {
            let _ = tokio::task::spawn_blocking(move || sb.release_all()).await;
        }
        network.close_transport();
        self.manager_part.forget();
        for tree in ["raft_log", "raft_meta", "state"] {
            self.store.db()?.drop_tree(tree)?;
        }
        self.store.db()?.flush_async().await?;
        crate::keys::lock::forget(&self.config.data_dir);
        for dir in [
            self.certs_dir(),
            self.ca_dir(),
            self.config.data_dir.join("keys"),
        ] {
            let _ = std::fs::remove_dir_all(dir);
        }
        identity::remove(&self.config.data_dir)?;
        *self.identity.write() = None;
        let advertise = self
            .config
            .advertise_addr
            .clone()
            .unwrap_or_else(|| self.config.listen_addr.to_string());
        self.set_addrs(self.config.listen_addr, advertise);
        tracing::info!(node = %id.node_id, "left the swarm");
        Ok(())
    }

    /// `swarm init --force-new-cluster`: this manager alone becomes the Raft
    /// group, keeping all the state it has.
    pub async fn force_new_cluster(&self) -> Result<String, NodeError> {
        let _guard = self.init_lock.lock().await;
        let id = self.identity().ok_or(NodeError::NotManager)?;
        if !id.manager {
            return Err(NodeError::NotManager);
        }
        // Wait until the old Raft actor is gone before rewriting its membership.
        self.manager_part.stop_actors_and_wait().await;
        let log = shoal_actors::raft::LogStore::open(&self.store.db()?)?;
        let cs = raft::prelude::ConfState {
            voters: vec![id.raft_id],
            ..Default::default()
        };
        log.set_conf_state(&cs)?;
        log.flush().await?;
        self.start_manager(&id).await?;
        self.leave_alone(&id).await?;
        tracing::warn!(node = %id.node_id, "forced a new cluster with this manager alone");
        Ok(id.node_id)
    }

    /// After a forced new cluster or a restore: the other managers are no
    /// longer part of the Raft group; the log says so too (for managers
    /// that join later and replay it) and the state lists them as workers.
    pub(super) async fn leave_alone(&self, id: &Identity) -> Result<(), NodeError> {
        let others: Vec<(String, u64)> = {
            let m = self.manager()?;
            let guard = m.sm.read();
            guard
                .0
                .nodes
                .values()
                .filter(|n| n.role == NodeRole::Manager && n.id != id.node_id)
                .map(|n| (n.id.clone(), n.raft_id))
                .collect()
        };
        for (other, raft_id) in others {
            self.remove_voter_here(raft_id).await?;
            self.propose(Command::UpdateNode {
                id: other,
                role: Some(NodeRole::Worker),
                availability: None,
                labels_add: Vec::new(),
                labels_rm: Vec::new(),
                at: shoal_actors::world::now(),
            })
            .await?;
        }
        Ok(())
    }

    /// `swarm join-token --rotate`: new secrets; the old tokens stop working.
    pub async fn rotate_tokens(&self, worker: bool, manager: bool) -> Result<(), NodeError> {
        let ca = RootCa::load(&self.ca_dir())?;
        let keys = self.keyring()?;
        let seal = |t: String| {
            crate::keys::seal_token(keys.as_ref(), &t)
                .map_err(|e| NodeError::Precondition(e.to_string()))
        };
        self.propose(Command::RotateJoinTokens {
            worker: worker.then(|| seal(ca.join_token())).transpose()?,
            manager: manager.then(|| seal(ca.join_token())).transpose()?,
            at: shoal_actors::world::now(),
        })
        .await
    }
}

/// Fails before anything is written when the cluster port is taken, so
/// that a failed init or join leaves the node out of any swarm, as it was.
pub(super) fn check_listen_addr(addr: SocketAddr) -> Result<(), NodeError> {
    std::net::UdpSocket::bind(addr)
        .map(drop)
        .map_err(|e| crate::transport::TransportError::Bind(addr, e).into())
}

/// The CA digest inside a `SWMTKN-1-<digest>-<secret>` token.
fn token_digest(token: &str) -> Result<String, NodeError> {
    let parts: Vec<&str> = token.split('-').collect();
    match parts.as_slice() {
        ["SWMTKN", "1", digest, secret] if digest.len() == 50 && secret.len() == 25 => {
            Ok(digest.to_string())
        }
        _ => Err(NodeError::BadToken(
            "expected SWMTKN-1-<digest>-<secret>, as `shoal swarm join-token` prints it".into(),
        )),
    }
}
