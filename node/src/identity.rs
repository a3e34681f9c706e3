//! This node's identity in its swarm, kept in `<data-dir>/node.json`, with
//! the format it was written in (`"format"`; a file without one is of
//! format 1, written before formats existed). A file of a newer format than
//! this build reads is refused, never half read (docs/upgrades.md).

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
    #[error("{path}: file written by format {found}; this build reads up to {supported}")]
    TooNew {
        path: PathBuf,
        found: u64,
        supported: u32,
    },
}

/// `node.json` as written: the identity and the format it is written in.
#[derive(Serialize)]
struct OnDisk<'a> {
    format: u32,
    #[serde(flatten)]
    identity: &'a Identity,
}

/// The identity in `node.json`'s bytes: its format checked first (absent:
/// format 1), then its fields (a `"format"` key is not one of them, and
/// serde skips it).
fn parse(p: &Path, bytes: &[u8]) -> Result<Identity, IdentityError> {
    let corrupt = |source| IdentityError::Corrupt {
        path: p.to_path_buf(),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(corrupt)?;
    let found = match value.get("format") {
        None => u64::from(shoal_core::codec::OLDEST),
        Some(f) => f
            .as_u64()
            .ok_or_else(|| corrupt(serde::de::Error::custom("\"format\" is not a number")))?,
    };
    let supported = shoal_core::codec::supported();
    if found > u64::from(supported) {
        return Err(IdentityError::TooNew {
            path: p.to_path_buf(),
            found,
            supported,
        });
    }
    serde_json::from_value(value).map_err(corrupt)
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("node.json")
}

pub fn load(data_dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let p = path(data_dir);
    match std::fs::read(&p) {
        Ok(bytes) => parse(&p, &bytes).map(Some),
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
    let bytes = serde_json::to_vec_pretty(&OnDisk {
        format: shoal_core::codec::supported(),
        identity: id,
    })
    .unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_format_is_of_format_1_and_a_newer_one_is_refused() {
        let p = Path::new("node.json");
        let old = br#"{"node_id":"n","raft_id":1,"manager":true}"#;
        let id = parse(p, old).expect("format 1");
        assert_eq!(id.node_id, "n");
        let future = br#"{"format":3,"node_id":"n","raft_id":1,"manager":true}"#;
        let err = parse(p, future).expect_err("format 3");
        assert_eq!(
            err.to_string(),
            "node.json: file written by format 3; this build reads up to 2"
        );
    }

    #[test]
    fn a_saved_file_names_its_format() {
        let dir = tempfile::tempdir().expect("dir");
        let id = Identity {
            node_id: "n".into(),
            raft_id: 2,
            manager: false,
            cluster_id: "c".into(),
            managers: vec!["a:1".into()],
            listen_addr: None,
            advertise_addr: None,
        };
        save(dir.path(), &id).expect("save");
        let text = std::fs::read_to_string(dir.path().join("node.json")).expect("read");
        assert!(text.contains("\"format\": 2"), "{text}");
        let back = load(dir.path()).expect("load").expect("some");
        assert_eq!(back.node_id, "n");
        assert_eq!(back.managers, ["a:1"]);
    }
}
