//! This node's identity in its swarm, kept in `<data-dir>/node.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub node_id: String,
    pub raft_id: u64,
    pub manager: bool,
    #[serde(default)]
    pub cluster_id: String,
    /// Managers' addresses as last known: where a restarted node reconnects.
    #[serde(default)]
    pub managers: Vec<String>,
    /// The listen and advertise addresses `swarm init`/`join` chose; the
    /// daemon's flags when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_addr: Option<std::net::SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_addr: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("node.json")
}

pub fn load(data_dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let p = path(data_dir);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| IdentityError::Corrupt { path: p, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Io { path: p, source }),
    }
}

/// Written atomically (temp file, fsync, rename) so a crash leaves the old or the new.
pub fn save(data_dir: &Path, id: &Identity) -> Result<(), IdentityError> {
    let p = path(data_dir);
    let tmp = data_dir.join("node.json.tmp");
    let io = |source| IdentityError::Io {
        path: p.clone(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(id).unwrap_or_default();
    let f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::private::FILE_MODE)
            .open(&tmp)
            .map_err(io)?
    };
    std::io::Write::write_all(&mut &f, &bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &p).map_err(io)?;
    Ok(())
}

/// Forgets the swarm (`swarm leave`).
pub fn remove(data_dir: &Path) -> Result<(), IdentityError> {
    let p = path(data_dir);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(IdentityError::Io { path: p, source: e })
        }
        _ => Ok(()),
    }
}
