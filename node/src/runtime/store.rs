//! The node's sled store (the Raft log and the state), swappable: sled
//! takes no write after an I/O error until the database is opened again,
//! and it holds a file lock until every clone of the old `Db` is gone, so
//! the store can be closed and opened again in place (`disk.rs`).

use std::path::{Path, PathBuf};

use parking_lot::RwLock;

use super::NodeError;

pub struct Store {
    path: PathBuf,
    db: RwLock<Option<sled::Db>>,
}

/// How a node opens its sled store.
pub fn store_config(path: &Path) -> sled::Config {
    sled::Config::new().path(path)
}

impl Store {
    pub fn open(path: PathBuf) -> Result<Store, NodeError> {
        let db = store_config(&path).open()?;
        Ok(Store {
            path,
            db: RwLock::new(Some(db)),
        })
    }

    /// The open database; refused while it is being opened again.
    pub fn db(&self) -> Result<sled::Db, NodeError> {
        self.db
            .read()
            .clone()
            .ok_or_else(|| NodeError::CannotPersist("the store is being opened again".to_string()))
    }

    /// Lets go of this store's handle and gives it to the caller (the file
    /// lock goes with the last clone, held elsewhere by the manager's
    /// context until it is dropped).
    pub(super) fn close(&self) -> Option<sled::Db> {
        self.db.write().take()
    }

    /// Opens the database again on the same path, once it is closed.
    pub(super) fn reopen(&self) -> Result<(), NodeError> {
        let db = store_config(&self.path).open()?;
        *self.db.write() = Some(db);
        Ok(())
    }

    /// Flushes the store, if it is open.
    pub async fn flush(&self) -> Result<(), NodeError> {
        let db = self.db.read().clone();
        if let Some(db) = db {
            db.flush_async().await?;
        }
        Ok(())
    }
}
