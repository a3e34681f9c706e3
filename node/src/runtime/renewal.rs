//! Node certificates renewed before they expire.

use super::*;

impl Runtime {
    /// On a manager: a fresh certificate for a node of the swarm, in the role
    /// the replicated state gives it.
    pub fn renew_for(&self, node_id: &str) -> Result<Response, NodeError> {
        let m = self.manager()?;
        let (role, generation, cluster_id) = {
            let guard = m.sm.read();
            let node = guard
                .0
                .nodes
                .get(node_id)
                .ok_or_else(|| NodeError::NotFound(format!("node {node_id} not found")))?;
            let cluster_id = guard
                .0
                .cluster
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            (node.role, node.cert_generation, cluster_id)
        };
        let cert = RootCa::load(&self.ca_dir())?.issue(
            &cluster_id,
            node_id,
            role,
            generation,
            self.config.cert_validity,
        )?;
        Ok(Response::Renewed {
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
        })
    }

    /// Renews this node's certificate when less than a third of its
    /// validity is left, or at once if `superseded` (a manager refused it as
    /// older than the node's role): from its own CA as a manager, else from
    /// a manager.
    pub(super) async fn renew_if_due(&self, superseded: bool) -> Result<bool, NodeError> {
        let Some(id) = self.identity() else {
            return Ok(false);
        };
        if self.is_locked() {
            // Its key is sealed until `swarm unlock`: nothing to renew with.
            return Ok(false);
        }
        let current = NodeCert::load(&self.certs_dir())?;
        let Some(expiry) = current.not_after() else {
            return Ok(false);
        };
        let left = expiry
            .duration_since(shoal_actors::world::now().into())
            .unwrap_or_default();
        if left > self.config.cert_validity / 3 && !superseded {
            return Ok(false);
        }
        let renewed = if let Ok(Response::Renewed { cert_pem, key_pem }) =
            self.renew_for(&id.node_id)
        {
            NodeCert { cert_pem, key_pem }
        } else {
            let t = self.transport().ok_or(NodeError::NotInSwarm)?;
            let bytes =
                codec::encode(&Request::RenewCert).map_err(|e| NodeError::Actors(e.to_string()))?;
            let managers = self.managers.read().clone();
            let mut got = None;
            for addr in managers {
                let Ok(sock) = addr.parse::<SocketAddr>() else {
                    continue;
                };
                if let Ok(answer) = t.request(sock, &bytes).await {
                    if let Ok(Response::Renewed { cert_pem, key_pem }) = codec::decode(&answer) {
                        got = Some(NodeCert { cert_pem, key_pem });
                        break;
                    }
                }
            }
            got.ok_or_else(|| {
                NodeError::Unreachable(
                    "managers".into(),
                    "no manager renewed the certificate".into(),
                )
            })?
        };
        renewed.save(&self.certs_dir())?;
        if let Some(t) = self.transport() {
            t.reload(&self.tls_identity(&renewed)?)?;
        }
        tracing::info!(node = %id.node_id, "node certificate renewed");
        Ok(true)
    }
}

/// A loop that checks the certificate now and then for as long as the node
/// runs (the node's front runs it).
pub(super) fn renewal_loop(rt: &Arc<Runtime>) -> impl std::future::Future<Output = ()> + Send {
    let weak = Arc::downgrade(rt);
    let every =
        (rt.config.cert_validity / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let superseded = rt.superseded.clone();
    async move {
        loop {
            let now = tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = superseded.notified() => true,
            };
            let Some(rt) = weak.upgrade() else {
                return;
            };
            if now {
                tracing::warn!(
                    "a manager refused this node's certificate as superseded; renewing it"
                );
            }
            if let Err(e) = rt.renew_if_due(now).await {
                tracing::warn!(error = %e, "certificate renewal failed; will retry");
            }
        }
    }
}
