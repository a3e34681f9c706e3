//! A swarm backup file (`shoal swarm backup` / `shoal swarm restore`): the
//! replicated state at one applied index, with what a new manager needs to
//! read it — the cluster's root CA, whose key derives the key that seals the
//! secrets in the state.
//!
//! ```text
//! "SHOAL-BACKUP\n"   magic (13 bytes)
//! u32 LE             the backup format (FORMAT)
//! ...                the `Backup`, encoded by shoal_core::codec
//! [u8; 32]           SHA-256 of everything before it
//! ```
//!
//! The CA key is sealed as the data directory holds it: under the KEK of
//! the swarm's unlock key when autolock is on (a restore needs the key),
//! and as it is otherwise (then the file is as secret as the data
//! directory, which holds its KEK in the clear beside the sealed key).
//! Secret values stay sealed inside the state either way.

use chrono::{DateTime, Utc};
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use shoal_core::codec;

const MAGIC: &[u8] = b"SHOAL-BACKUP\n";
/// The backup format this build writes and the newest it reads. 2 since
/// record formats (docs/upgrades.md): its body is a record of format 2,
/// which a build of backup format 1 could not read; a backup of format 1
/// holds records of format 1, which every build reads.
pub const FORMAT: u32 = 2;
/// The largest backup a restore takes (the codec's own ceiling on a value).
pub const MAX_BYTES: usize = 256 << 20;
const DIGEST: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a shoal swarm backup (it does not start with the backup header)")]
    NotABackup,
    #[error(
        "the backup was written by backup format {found}; this build reads up to format {FORMAT}"
    )]
    NewerFormat { found: u32 },
    #[error("the backup is damaged or truncated (its checksum does not match)")]
    Damaged,
    #[error("the backup is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("the backup cannot be read: {0}")]
    Decode(String),
    #[error("the backup's state cannot be read: {0}")]
    State(String),
    #[error("the backup was taken of an autolocked swarm: give its unlock key")]
    NeedsUnlockKey,
    #[error("invalid unlock key: it does not open the backup's CA key")]
    InvalidKey,
    #[error("cannot write the backup: {0}")]
    Encode(String),
}

/// The root CA's key as the backup holds it.
#[derive(Clone, Serialize, Deserialize)]
pub enum CaKey {
    /// The PEM, as it is (the swarm was not autolocked).
    Plain(String),
    /// Sealed under the KEK of the swarm's unlock key (`keys::Kek::wrap`).
    Sealed(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl std::fmt::Debug for CaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaKey::Plain(_) => f.write_str("CaKey::Plain(..)"),
            CaKey::Sealed(b) => write!(f, "CaKey::Sealed({} bytes)", b.len()),
        }
    }
}

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backup {
    pub created_at: DateTime<Utc>,
    pub cluster_id: String,
    /// The manager the backup was taken on: the restored manager is it.
    pub node_id: String,
    pub raft_id: u64,
    /// The applied index and Raft term the state is at.
    pub index: u64,
    pub term: u64,
    pub ca_cert_pem: String,
    pub ca_key: CaKey,
    /// The state machine's snapshot encoding (`StateMachine::snapshot_data`).
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

impl Backup {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BackupError> {
        let body = codec::encode(self).map_err(|e| BackupError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + body.len() + DIGEST);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        out.extend_from_slice(&body);
        let sum = digest(&SHA256, &out);
        out.extend_from_slice(sum.as_ref());
        Ok(out)
    }

    /// Reads a backup file, checking its header, format and checksum
    /// before anything in it is decoded.
    pub fn from_bytes(bytes: &[u8]) -> Result<Backup, BackupError> {
        if bytes.len() > MAX_BYTES {
            return Err(BackupError::TooLarge);
        }
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Err(BackupError::NotABackup);
        };
        let Some((format, _)) = rest.split_first_chunk::<4>() else {
            return Err(BackupError::Damaged);
        };
        let found = u32::from_le_bytes(*format);
        if found > FORMAT {
            return Err(BackupError::NewerFormat { found });
        }
        if bytes.len() < MAGIC.len() + 4 + DIGEST {
            return Err(BackupError::Damaged);
        }
        let (signed, sum) = bytes.split_at(bytes.len() - DIGEST);
        if digest(&SHA256, signed).as_ref() != sum {
            return Err(BackupError::Damaged);
        }
        codec::decode(&signed[MAGIC.len() + 4..]).map_err(|e| BackupError::Decode(e.to_string()))
    }

    /// Whether a restore needs the swarm's unlock key.
    pub fn is_sealed(&self) -> bool {
        matches!(self.ca_key, CaKey::Sealed(_))
    }

    /// The CA key's PEM, opened with the unlock key if it is sealed.
    pub fn open_ca_key(&self, unlock_key: Option<&str>) -> Result<String, BackupError> {
        match &self.ca_key {
            CaKey::Plain(pem) => Ok(pem.clone()),
            CaKey::Sealed(blob) => {
                let key = unlock_key.ok_or(BackupError::NeedsUnlockKey)?;
                let kek = crate::keys::lock::kek_for(key).ok_or(BackupError::InvalidKey)?;
                let plain = kek
                    .unwrap(std::path::Path::new("backup"), "ca.key", blob)
                    .map_err(|_| BackupError::InvalidKey)?;
                String::from_utf8(plain).map_err(|_| BackupError::InvalidKey)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Backup {
        Backup {
            created_at: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            cluster_id: "c".into(),
            node_id: "n".into(),
            raft_id: 7,
            index: 42,
            term: 3,
            ca_cert_pem: "cert".into(),
            ca_key: CaKey::Plain("key".into()),
            state: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_backup_reads_back_and_damage_is_refused() {
        let bytes = sample().to_bytes().expect("encodes");
        let back = Backup::from_bytes(&bytes).expect("reads");
        assert_eq!((back.index, back.term, back.state), (42, 3, vec![1, 2, 3]));
        // Any byte flipped, or any tail cut off, is refused.
        for i in [MAGIC.len() + 4, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(matches!(
                Backup::from_bytes(&bad),
                Err(BackupError::Damaged)
            ));
        }
        for cut in [0, 5, MAGIC.len() + 2, bytes.len() - 1] {
            assert!(Backup::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            Backup::from_bytes(b"{\"not\": \"a backup\"}"),
            Err(BackupError::NotABackup)
        ));
    }

    #[test]
    fn a_newer_format_is_refused_naming_both() {
        let mut bytes = sample().to_bytes().expect("encodes");
        bytes[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&(FORMAT + 1).to_le_bytes());
        let e = Backup::from_bytes(&bytes).expect_err("newer");
        assert_eq!(
            e.to_string(),
            format!(
                "the backup was written by backup format {}; this build reads up to format {FORMAT}",
                FORMAT + 1
            )
        );
    }

    #[test]
    fn a_sealed_ca_key_needs_the_right_unlock_key() {
        let key = crate::keys::lock::new_unlock_key().expect("key");
        let other = crate::keys::lock::new_unlock_key().expect("key");
        let kek = crate::keys::lock::kek_for(&key).expect("kek");
        let mut b = sample();
        b.ca_key = CaKey::Sealed(kek.wrap("ca.key", b"the pem").expect("wraps"));
        let b = Backup::from_bytes(&b.to_bytes().expect("encodes")).expect("reads");
        assert!(b.is_sealed());
        assert!(matches!(
            b.open_ca_key(None),
            Err(BackupError::NeedsUnlockKey)
        ));
        assert!(matches!(
            b.open_ca_key(Some(&other)),
            Err(BackupError::InvalidKey)
        ));
        assert_eq!(b.open_ca_key(Some(&key)).expect("opens"), "the pem");
    }
}
