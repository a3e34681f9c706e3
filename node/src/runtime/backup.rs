//! `swarm backup` and `swarm restore`: the state at one applied index with
//! the CA that reads it, out of a manager and into a fresh node that then
//! leads a new single-manager cluster, as `--force-new-cluster` leaves one.

use raft::prelude::{ConfState, Snapshot};
use shoal_actors::store::StateMachine;

use super::*;
use crate::backup::{Backup, BackupError, CaKey};

impl Runtime {
    /// A backup of the swarm as this manager has applied it. Encoding the
    /// whole state is CPU work: the API runs it on a blocking thread.
    pub fn backup(&self) -> Result<Vec<u8>, NodeError> {
        let id = self.identity().ok_or(NodeError::NotManager)?;
        let m = self.manager()?;
        let ca = RootCa::load(&self.ca_dir())?;
        let data_dir = &self.config.data_dir;
        let ca_key = if crate::keys::lock::is_autolocked(data_dir) {
            let kek = crate::keys::Kek::load_or_create(data_dir).map_err(|_| NodeError::Locked)?;
            let blob = kek
                .wrap("ca.key", ca.key_pem.as_bytes())
                .map_err(|e| NodeError::Precondition(e.to_string()))?;
            CaKey::Sealed(blob)
        } else {
            CaKey::Plain(ca.key_pem)
        };
        // One consistent state: `snapshot_data` holds the state's lock
        // while it encodes, so no write is half in it.
        let (at, state) = m.sm.snapshot_data();
        let backup = Backup {
            created_at: shoal_actors::world::now(),
            cluster_id: id.cluster_id,
            node_id: id.node_id,
            raft_id: id.raft_id,
            index: at.index,
            term: m.log.hard_state().term.max(1),
            ca_cert_pem: ca.cert_pem,
            ca_key,
            state,
        };
        tracing::info!(index = at.index, "swarm backup taken");
        Ok(backup.to_bytes()?)
    }

    /// `swarm restore`: this node, in no swarm yet, becomes the manager the
    /// backup was taken on, alone in its Raft group, with the backup's
    /// state. Everything is checked before anything is written: a backup
    /// that is damaged, of another format, or sealed under another key
    /// leaves the node as it was.
    pub async fn restore_swarm(
        self: &Arc<Self>,
        bytes: &[u8],
        unlock_key: Option<&str>,
        addrs: AddrRequest,
    ) -> Result<String, NodeError> {
        let _guard = self.init_lock.lock().await;
        if self.identity.read().is_some() {
            return Err(NodeError::AlreadyInSwarm);
        }
        let backup = Backup::from_bytes(bytes)?;
        let key_pem = backup.open_ca_key(unlock_key)?;
        let state = StateMachine::decode_snapshot(&backup.state)
            .map_err(|e| BackupError::State(e.to_string()))?;
        let cluster_id = state.cluster.as_ref().map(|c| c.id.clone());
        if cluster_id.as_deref() != Some(backup.cluster_id.as_str())
            || !state.nodes.contains_key(&backup.node_id)
            || backup.raft_id == 0
        {
            return Err(BackupError::State(
                "it names a cluster or manager its state does not hold".into(),
            )
            .into());
        }
        let cert_der = crate::pem::pem_certs(&backup.ca_cert_pem)
            .into_iter()
            .next()
            .map(|c| c.to_vec())
            .ok_or_else(|| BackupError::State("its CA certificate cannot be read".into()))?;
        let (listen, advertise) = self.choose_addrs(&addrs, None)?;
        swarm::check_listen_addr(listen)?;
        self.set_addrs(listen, advertise.clone());

        // Sealed as the backup's swarm sealed it: autolocked with the same
        // unlock key, or under a new KEK of this node's.
        if let (true, Some(key)) = (backup.is_sealed(), unlock_key) {
            crate::keys::lock::set_unlock_key(&self.config.data_dir, key)?;
        }
        let ca = RootCa {
            cert_pem: backup.ca_cert_pem.clone(),
            cert_der,
            key_pem,
        };
        ca.save(&self.ca_dir())?;
        let id = Identity {
            node_id: backup.node_id.clone(),
            raft_id: backup.raft_id,
            manager: true,
            cluster_id: backup.cluster_id.clone(),
            managers: vec![advertise.clone()],
            listen_addr: Some(listen),
            advertise_addr: Some(advertise),
        };
        ca.issue(
            &id.cluster_id,
            &id.node_id,
            NodeRole::Manager,
            0,
            self.config.cert_validity,
        )?
        .save(&self.certs_dir())?;
        // The Raft log starts at the backup's snapshot, this manager its
        // one voter; the state is restored from it as the manager opens
        // (`ManagerCtx::new`: applied behind the log's snapshot).
        let log = shoal_actors::raft::LogStore::open(&self.store.db()?)?;
        let mut snap = Snapshot {
            data: backup.state.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = backup.index;
        meta.term = backup.term;
        meta.set_conf_state(ConfState {
            voters: vec![id.raft_id],
            ..Default::default()
        });
        log.apply_snapshot(&snap)?;
        log.flush().await?;
        self.save_identity(&id)?;
        self.start_transport(&id)?;
        self.start_manager(&id).await?;
        self.leave_alone(&id).await?;
        self.start_worker(&id).await?;
        tracing::warn!(node = %id.node_id, index = backup.index, "restored the swarm from a backup: this manager leads it alone");
        Ok(id.node_id)
    }
}
