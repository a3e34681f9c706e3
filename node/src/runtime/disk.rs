//! A manager that cannot persist (its data filesystem is full, or a write
//! failed) recovers in place: sled takes no write after an I/O error until
//! the database is opened again, so the watch stops the manager's actors
//! (no restart loop), waits until the data directory's filesystem has room
//! again, closes the store (every handle of the old database: the manager
//! context's log and state go with it), opens it again on the same path
//! and starts the manager from it as a daemon start does. Writes through
//! this manager are refused meanwhile (`NodeError::CannotPersist`).

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Runtime;

/// How often the watch asks whether the manager can still persist.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// How often a full filesystem is asked whether it has room again.
const POLL_SPACE_EVERY: Duration = Duration::from_secs(1);

/// The free space the data filesystem must have before the store is opened
/// again: two of sled's 8 MiB segments, so the reopened log can roll over
/// at least once.
pub const ROOM: u64 = 16 * 1024 * 1024;

/// How long the old database may stay held (a write or a loop that still
/// holds the old manager context) before the watch gives up reopening.
const REOPEN_WITHIN: Duration = Duration::from_secs(30);

/// Follows the node's manager context while the node runs (among the
/// manager part's loops, so its shutdown ends this), and recovers it in
/// place when it reports that it cannot persist.
pub(super) async fn watch(rt: Weak<Runtime>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let Some(node) = rt.upgrade() else { return };
        let failed = node
            .manager_part
            .ctx()
            .and_then(|m| m.log.failed().or_else(|| m.sm.failed()));
        if let Some(why) = failed {
            node.recover_store(&why).await;
        }
    }
}

/// The bytes free to an unprivileged writer on `dir`'s filesystem.
fn free_bytes(dir: &Path) -> Result<u64, nix::Error> {
    let st = nix::sys::statvfs::statvfs(dir)?;
    #[allow(clippy::useless_conversion)] // the field widths differ by target
    let free = u64::from(st.blocks_available()) * u64::from(st.fragment_size());
    Ok(free)
}

async fn free_bytes_blocking(dir: &Path) -> Option<u64> {
    let dir = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || free_bytes(&dir)).await {
        Ok(Ok(free)) => Some(free),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the data filesystem's free space");
            None
        }
        Err(_) => None,
    }
}

impl Runtime {
    /// Stops the manager, waits for room, opens the store again and starts
    /// the manager from it. Returns when the manager runs again, or when it
    /// cannot (the node stopped managing meanwhile, or the store would not
    /// open: then it is logged, and the node takes no writes until it is
    /// restarted, as before).
    async fn recover_store(self: &Arc<Self>, why: &str) {
        let dir = self.config.data_dir.clone();
        tracing::error!(
            error = %why,
            data_dir = %dir.display(),
            room_mib = ROOM / (1024 * 1024),
            "this manager cannot persist: its actors are stopped and it waits for space on its data filesystem, then opens its store again"
        );
        if !self.manager_part.stop_actors_and_wait().await {
            tracing::warn!("the Raft actor did not stop in time");
        }
        loop {
            match free_bytes_blocking(&dir).await {
                Some(free) if free >= ROOM => {
                    tracing::info!(
                        free_mib = free / (1024 * 1024),
                        "the data filesystem has room again: opening the store again"
                    );
                    break;
                }
                _ => tokio::time::sleep(POLL_SPACE_EVERY).await,
            }
        }
        let Some(id) = self.identity().filter(|i| i.manager) else {
            return;
        };
        let old = (self.manager_part.forget(), self.store.close());
        // Dropping the last handle of a database that failed a write can
        // block in sled's `Drop` (seen in actors/tests/full_disk.rs): it
        // happens on a blocking thread, never on the runtime's. Until it
        // is done the file lock holds, and the loop below waits for it.
        tokio::task::spawn_blocking(move || drop(old));
        let closed = tokio::time::Instant::now();
        let deadline = closed + REOPEN_WITHIN;
        let mut tries = 0u32;
        loop {
            tries += 1;
            match self.store.reopen() {
                Ok(()) => break,
                // The file lock stays until the last clone of the old
                // database (a loop or a request still holding the old
                // manager context) is dropped.
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "the old store is still held; trying again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the store again: restart the daemon");
                    return;
                }
            }
        }
        match self.start_manager(&id).await {
            Ok(()) => tracing::info!(
                tries,
                reopened_in_ms = closed.elapsed().as_millis() as u64,
                "the manager runs again on its reopened store"
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the manager again: restart the daemon")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_has_a_free_space() {
        let dir = std::env::temp_dir();
        assert!(free_bytes(&dir).is_ok());
    }
}
