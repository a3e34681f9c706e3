//! Secrets and configs: the replicated objects, the commands that change
//! them, their checks (docker's names, swarmkit's sizes, "in use"), the
//! references a task template holds, and what the dispatcher hands a node.
//!
//! A secret's value is in the state only sealed (`Sealed`): managers seal it
//! with their `Keyring` before they propose it, so the Raft log, snapshots
//! and the `state` tree never hold it in plaintext. Configs are not secret
//! and are stored as given, as in Swarm. Pure: no IO, no cryptography (the
//! `Keyring` is implemented by `shoal-node`).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// swarmkit's `MaxSecretSize`.
pub const MAX_SECRET_BYTES: usize = 500 * 1024;
/// swarmkit's `MaxConfigSize`.
pub const MAX_CONFIG_BYTES: usize = 1000 * 1024;
/// docker's limit on a secret's or config's name.
pub const MAX_NAME: usize = 64;
/// Secrets (and, separately, configs) a swarm holds.
pub const MAX_OBJECTS: usize = 10_000;
/// Secret (and config) references of one task template.
pub const MAX_REFS: usize = 256;
/// A reference's target path.
pub const MAX_TARGET: usize = 4096;

/// Whether a value is a secret or a config: the two are alike in all but
/// confidentiality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    pub fn max_bytes(self) -> usize {
        match self {
            Kind::Secret => MAX_SECRET_BYTES,
            Kind::Config => MAX_CONFIG_BYTES,
        }
    }
}

/// An AEAD ciphertext (tag included) and its nonce, under the cluster's
/// data-encryption key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

/// A value as the state holds it: sealed (secrets) or as given (configs).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stored {
    Sealed(Sealed),
    Plain(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stored::Sealed(s) => s.fmt(f),
            Stored::Plain(p) => write!(f, "Plain({} bytes)", p.len()),
        }
    }
}

/// A secret or a config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub id: String,
    pub kind: Kind,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub data: Stored,
    /// Bytes of the plaintext (checked against the limit before sealing).
    pub size: u64,
    /// Bumped by `secret update`/`config update`: which value tasks get.
    pub data_version: u64,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A task template's reference to a secret or config, docker's
/// `SecretReference`/`ConfigReference` with its `File` target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub id: String,
    pub name: String,
    /// Relative (under `/run/secrets` for a secret) or absolute.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// The object's data version the template was made for: `secret update`
    /// bumps it in every service that uses the object, which rolls them.
    pub data_version: u64,
}

impl FileRef {
    /// Where the file appears inside the task.
    pub fn path(&self, kind: Kind) -> String {
        if self.target.starts_with('/') {
            self.target.clone()
        } else {
            match kind {
                Kind::Secret => format!("/run/secrets/{}", self.target),
                Kind::Config => format!("/{}", self.target),
            }
        }
    }
}

/// The changes to secrets and configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SecretCommand {
    Create(Box<Object>),
    /// In-place rotation: a new value under the same name; every service
    /// using it gets the new data version (and so rolls).
    Update {
        kind: Kind,
        key: String,
        data: Stored,
        size: u64,
        at: DateTime<Utc>,
    },
    Remove {
        kind: Kind,
        key: String,
    },
    /// Autolock on (a new unlock key, sealed) or off.
    SetUnlockKey {
        sealed: Option<String>,
        at: DateTime<Utc>,
    },
}

/// A value the dispatcher hands the node that runs a task using it.
#[derive(Clone, Serialize, Deserialize)]
pub struct Payload {
    pub kind: Kind,
    pub id: String,
    pub data_version: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Payload({} {} v{}, {} bytes)",
            self.kind.as_str(),
            self.id,
            self.data_version,
            self.data.len()
        )
    }
}

/// One file a driver puts in a task: where, whose, which mode, what.
#[derive(Clone)]
pub struct TaskFile {
    pub kind: Kind,
    pub name: String,
    /// Absolute path inside the task.
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub data: Arc<Vec<u8>>,
}

impl std::fmt::Debug for TaskFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TaskFile({} {} at {})",
            self.kind.as_str(),
            self.name,
            self.path
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("This node is locked: run \"shoal swarm unlock\"")]
    Locked,
    #[error("cannot decrypt: the data is damaged or was sealed under another key")]
    Damaged,
    #[error("cannot encrypt: {0}")]
    Seal(String),
}

/// The manager's keys: seals values before they are proposed, opens them
/// for the dispatcher. `aad` binds a ciphertext to its object.
pub trait Keyring: Send + Sync + 'static {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Sealed, KeyError>;
    fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, KeyError>;
}

/// What marks a short text (a join token, the unlock key) sealed under the
/// DEK in the state: `sealed:` and the base64 of nonce and ciphertext.
pub const SEALED_TEXT_MARK: &str = "sealed:";

/// Whether `text` is a sealed text (its seal is checked only where the DEK
/// is: a replica cannot open it, but it refuses plaintext, so a node
/// without the DEK, such as a thief of a locked manager's data dir, cannot
/// set a token or an unlock key it knows).
pub fn is_sealed_text(text: &str) -> bool {
    text.strip_prefix(SEALED_TEXT_MARK)
        .is_some_and(|rest| !rest.is_empty())
}

/// What a value is sealed with: its object's id and data version.
pub fn aad(id: &str, data_version: u64) -> Vec<u8> {
    format!("shoal-secret:{id}:{data_version}").into_bytes()
}

/// A name as docker validates it: 1 to 64 of `[a-zA-Z0-9-_.]`, starting and
/// ending with `[a-zA-Z0-9]`.
pub fn check_name(name: &str) -> Result<(), String> {
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|c| alnum(c) || c == b'-' || c == b'_' || c == b'.')
        && name.bytes().next().is_some_and(alnum)
        && name.bytes().last().is_some_and(alnum);
    match ok {
        true => Ok(()),
        false => Err(format!(
            "invalid name, only {MAX_NAME} [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]"
        )),
    }
}

/// swarmkit's size check, in its words.
pub fn check_size(kind: Kind, len: usize) -> Result<(), String> {
    if len == 0 || len >= kind.max_bytes() {
        return Err(format!(
            "{} data must be larger than 0 and less than {} KB",
            kind.as_str(),
            kind.max_bytes() / 1024
        ));
    }
    Ok(())
}

/// A reference's target: relative names without `..`, or absolute paths.
pub fn check_target(kind: Kind, target: &str) -> Result<(), String> {
    let bad = target.is_empty()
        || target.len() > MAX_TARGET
        || target.contains('\0')
        || target.split('/').any(|c| c == ".." || c == ".")
        || target.ends_with('/')
        || (!target.starts_with('/') && target.contains('/'));
    if bad {
        return Err(format!("invalid {} target {target:?}", kind.as_str()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte fields went from serde's sequence of `u8` to `serde_bytes`
    /// (a 22 MB snapshot of configs took seconds to encode element by
    /// element in a debug build, stalling the Raft actor): bincode writes
    /// both as a length and the bytes, so what earlier builds wrote reads
    /// the same.
    #[test]
    fn byte_fields_encode_as_a_sequence_of_u8_did() {
        #[derive(Serialize)]
        struct SealedBefore {
            nonce: Vec<u8>,
            ciphertext: Vec<u8>,
        }
        #[derive(Serialize)]
        enum StoredBefore {
            Sealed(SealedBefore),
            Plain(Vec<u8>),
        }
        let bytes: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let plain = crate::codec::encode(&Stored::Plain(bytes.clone())).expect("encodes");
        let before = crate::codec::encode(&StoredBefore::Plain(bytes.clone())).expect("encodes");
        assert_eq!(plain, before);
        let sealed = Stored::Sealed(Sealed {
            nonce: bytes[..12].to_vec(),
            ciphertext: bytes.clone(),
        });
        let before = StoredBefore::Sealed(SealedBefore {
            nonce: bytes[..12].to_vec(),
            ciphertext: bytes,
        });
        let sealed_bytes = crate::codec::encode(&sealed).expect("encodes");
        assert_eq!(
            sealed_bytes,
            crate::codec::encode(&before).expect("encodes")
        );
        assert_eq!(
            crate::codec::decode::<Stored>(&sealed_bytes).expect("decodes"),
            sealed
        );
    }
}
