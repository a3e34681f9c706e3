//! Autolock on the node: `swarm unlock`, `swarm unlock-key [--rotate]`,
//! `swarm update --autolock`, and the follower that brings this manager's
//! key files in line with the unlock key in the replicated state.

use std::path::PathBuf;
use std::sync::Arc;

use shoal_actors::context::ManagerCtx;
use shoal_core::command::Command;
use shoal_core::model::secret::SecretCommand;
use shoal_core::state::Change;

use super::{NodeError, Runtime};
use crate::keys::lock::{self, LockError};

const UNLOCK_AAD: &[u8] = b"shoal-unlock-key";

impl From<LockError> for NodeError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::InvalidKey | LockError::NotLocked => NodeError::Precondition(e.to_string()),
            LockError::File(f) => NodeError::Precondition(f.to_string()),
        }
    }
}

impl Runtime {
    /// Autolocked and not unlocked since the daemon started.
    pub fn is_locked(&self) -> bool {
        lock::is_locked(&self.config.data_dir)
    }

    /// `swarm unlock`: a wrong key is refused; the right one opens the
    /// node's key and starts the node (transport, manager, worker).
    pub async fn unlock(self: &Arc<Self>, unlock_key: &str) -> Result<(), NodeError> {
        let id = self.identity().ok_or(NodeError::NotInSwarm)?;
        let dir = self.config.data_dir.clone();
        let key = unlock_key.to_string();
        tokio::task::spawn_blocking(move || lock::unlock(&dir, &key))
            .await
            .map_err(|e| NodeError::Actors(e.to_string()))??;
        if self.transport().is_none() {
            return self.start_node(&id).await;
        }
        self.start_manager(&id).await
    }

    /// The current unlock key, if autolock is on.
    pub fn unlock_key(&self) -> Result<Option<String>, NodeError> {
        let m = self.manager()?;
        if m.keyring().is_none() {
            self.keyring()?;
        }
        current_unlock_key(&m)
    }

    /// `swarm update --autolock=<on>` and `swarm unlock-key --rotate`.
    pub async fn set_autolock(&self, on: bool, rotate: bool) -> Result<(), NodeError> {
        let current = self.unlock_key()?;
        let sealed = match (on, current.is_some(), rotate) {
            (false, false, _) => return Ok(()),
            (true, true, false) => return Ok(()),
            (false, true, _) => None,
            (true, _, _) => {
                let key =
                    lock::new_unlock_key().map_err(|e| NodeError::Precondition(e.to_string()))?;
                let keys = self.keyring()?;
                Some(
                    crate::keys::seal_text(keys.as_ref(), UNLOCK_AAD, &key)
                        .map_err(|e| NodeError::Precondition(e.to_string()))?,
                )
            }
        };
        self.propose(Command::Secrets(SecretCommand::SetUnlockKey {
            sealed,
            at: shoal_actors::world::now(),
        }))
        .await?;
        // This node's files follow at once, so that a restart right after
        // finds them locked; the other managers follow the state.
        let key = self.unlock_key()?;
        seal_files_under(self.config.data_dir.clone(), key).await
    }
}

/// The unlock key in the state, opened with the manager's keyring.
fn current_unlock_key(m: &ManagerCtx) -> Result<Option<String>, NodeError> {
    let sealed =
        m.sm.read()
            .0
            .cluster
            .as_ref()
            .and_then(|c| c.unlock_key.clone());
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let keys = m.keyring().ok_or(NodeError::Locked)?;
    crate::keys::open_text(keys.as_ref(), UNLOCK_AAD, &sealed)
        .map(Some)
        .map_err(|e| NodeError::Precondition(e.to_string()))
}

/// Seals this manager's key files under `key`'s KEK, or a random KEK on
/// disk when autolock is off.
async fn seal_files_under(dir: PathBuf, key: Option<String>) -> Result<(), NodeError> {
    tokio::task::spawn_blocking(move || match key {
        Some(k) => lock::set_unlock_key(&dir, &k),
        None => lock::clear_unlock_key(&dir),
    })
    .await
    .map_err(|e| NodeError::Actors(e.to_string()))??;
    Ok(())
}

/// A loop that follows the cluster entry while this node manages: its key
/// files follow the swarm's autolock setting. The manager part runs it.
pub(super) fn lock_follower(
    dir: PathBuf,
    ctx: &Arc<ManagerCtx>,
) -> impl std::future::Future<Output = ()> + Send {
    let mut events = ctx.events.subscribe();
    let ctx = Arc::downgrade(ctx);
    async move {
        let mut last: Option<Option<String>> = None;
        loop {
            let relevant = match events.recv().await {
                Ok(ev) => ev.changes.iter().any(|c| matches!(c, Change::Cluster)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if !relevant && last.is_some() {
                continue;
            }
            let Some(m) = ctx.upgrade() else { return };
            let Ok(now) = current_unlock_key(&m) else {
                continue;
            };
            drop(m);
            if last.as_ref() == Some(&now) {
                continue;
            }
            match seal_files_under(dir.clone(), now.clone()).await {
                Ok(()) => last = Some(now),
                Err(e) => tracing::warn!(error = %e, "cannot follow the swarm's autolock setting"),
            }
        }
    }
}
