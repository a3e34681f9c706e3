//! The key hierarchy of a manager.
//!
//! ```text
//! KEK  <data-dir>/keys/kek (32 random bytes, 0600)
//!  ├─ wraps the node's key    <data-dir>/certs/node.key (autolocked only)
//!  └─ wraps the root CA key   <data-dir>/ca/ca.key (AES-256-GCM, "SHOAL-SEALED-1")
//!      └─ derives the DEK     HKDF-SHA256(CA key, "shoal secrets dek v1")
//!          └─ seals every secret value before it is proposed
//! ```
//!
//! Every manager holds the CA key (a joining manager receives it over mTLS),
//! so every manager derives the same DEK without a new key to distribute;
//! the Raft log, snapshots and the `state` tree hold only ciphertexts. A
//! copy of `state.db` alone reveals no secret; a copy of the whole data dir
//! does (the KEK is beside it): see docs/security.md.

pub mod lock;

use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use shoal_core::model::secret::{KeyError, Keyring, Sealed};

/// What marks a file sealed under the KEK.
const MAGIC: &[u8] = b"SHOAL-SEALED-1\n";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: the key-encryption key does not open it (damaged, or another node's)")]
    Damaged(PathBuf),
    #[error("Swarm is encrypted and needs to be unlocked before it can be used. Please use \"shoal swarm unlock\" to unlock it.")]
    Locked,
    #[error("no randomness: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn random<const N: usize>() -> Result<[u8; N], KeyFileError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| KeyFileError::Random("the OS gave no random bytes".into()))?;
    Ok(b)
}

fn key(bytes: &[u8]) -> Option<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .ok()
        .map(LessSafeKey::new)
}

fn seal_with(k: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<Sealed, KeyError> {
    let nonce: [u8; NONCE_LEN] = random().map_err(|e| KeyError::Seal(e.to_string()))?;
    let mut buf = plain.to_vec();
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| KeyError::Seal("AES-256-GCM refused".into()))?;
    Ok(Sealed {
        nonce: nonce.to_vec(),
        ciphertext: buf,
    })
}

fn open_with(k: &LessSafeKey, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, KeyError> {
    let nonce = Nonce::try_assume_unique_for_key(&sealed.nonce).map_err(|_| KeyError::Damaged)?;
    let mut buf = sealed.ciphertext.clone();
    let plain = k
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| KeyError::Damaged)?;
    Ok(plain.to_vec())
}

/// Writes `data` to `path` with mode 0600, atomically.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), KeyFileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The node's key-encryption key, made at first use.
pub struct Kek(LessSafeKey);

impl Kek {
    /// `<data-dir>/keys/kek`, created (0600, in a 0700 directory) if absent.
    pub fn load_or_create(data_dir: &Path) -> Result<Kek, KeyFileError> {
        if lock::is_autolocked(data_dir) {
            return lock::unlocked(data_dir)
                .and_then(|k| Kek::from_bytes(&k))
                .ok_or(KeyFileError::Locked);
        }
        let path = data_dir.join("keys").join("kek");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let fresh: [u8; 32] = random()?;
                write_private(&path, &fresh)?;
                fresh.to_vec()
            }
            Err(e) => return Err(io(&path)(e)),
        };
        key(&bytes)
            .map(Kek)
            .ok_or_else(|| KeyFileError::Damaged(path.clone()))
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Kek> {
        key(bytes).map(Kek)
    }

    /// `plain` sealed for a file (`MAGIC`, nonce, ciphertext).
    pub fn wrap(&self, what: &str, plain: &[u8]) -> Result<Vec<u8>, KeyFileError> {
        let sealed = seal_with(&self.0, what.as_bytes(), plain)
            .map_err(|e| KeyFileError::Random(e.to_string()))?;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&sealed.nonce);
        out.extend_from_slice(&sealed.ciphertext);
        Ok(out)
    }

    /// What `wrap` sealed; a file without the mark is returned as it is
    /// (written before keys existed), so the caller can seal it now.
    pub fn unwrap(&self, path: &Path, what: &str, blob: &[u8]) -> Result<Vec<u8>, KeyFileError> {
        let Some(rest) = blob.strip_prefix(MAGIC) else {
            return Ok(blob.to_vec());
        };
        if rest.len() < NONCE_LEN {
            return Err(KeyFileError::Damaged(path.to_path_buf()));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let sealed = Sealed {
            nonce: nonce.to_vec(),
            ciphertext: ciphertext.to_vec(),
        };
        open_with(&self.0, what.as_bytes(), &sealed)
            .map_err(|_| KeyFileError::Damaged(path.to_path_buf()))
    }
}

/// Whether a file's bytes are sealed under a KEK.
pub fn is_wrapped(blob: &[u8]) -> bool {
    blob.starts_with(MAGIC)
}

/// The cluster's data-encryption key: AES-256-GCM.
pub struct ClusterKeyring(LessSafeKey);

impl ClusterKeyring {
    /// The DEK every manager derives from the root CA's key.
    pub fn from_ca_key(ca_key_pem: &str) -> ClusterKeyring {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"shoal");
        let prk = salt.extract(ca_key_pem.as_bytes());
        let info: [&[u8]; 1] = [b"shoal secrets dek v1"];
        // `expand` fails only for an output longer than 255 hashes.
        let okm = prk.expand(&info, &AES_256_GCM);
        let unbound = match okm {
            Ok(okm) => UnboundKey::from(okm),
            Err(_) => unreachable_key(),
        };
        ClusterKeyring(LessSafeKey::new(unbound))
    }
}

#[cold]
fn unreachable_key() -> UnboundKey {
    // 32 bytes is within HKDF-SHA256's 8160; `expand` cannot fail here.
    panic!("HKDF-SHA256 cannot expand 32 bytes")
}

impl Keyring for ClusterKeyring {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Sealed, KeyError> {
        seal_with(&self.0, aad, plain)
    }

    fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Vec<u8>, KeyError> {
        open_with(&self.0, aad, sealed)
    }
}

/// What marks a join token sealed under the DEK in the replicated state.
const TOKEN_MARK: &str = shoal_core::model::secret::SEALED_TEXT_MARK;
const TOKEN_AAD: &[u8] = b"shoal-join-token";

/// A join token as the state keeps it: sealed, so `state.db` and the Raft
/// log do not hand a reader the key to the swarm.
pub fn seal_token(keys: &dyn Keyring, token: &str) -> Result<String, KeyError> {
    seal_text(keys, TOKEN_AAD, token)
}

/// The token behind `seal_token`'s text (a token stored before sealing
/// existed is returned as it is).
pub fn open_token(keys: &dyn Keyring, stored: &str) -> Result<String, KeyError> {
    open_text(keys, TOKEN_AAD, stored)
}

/// A short text sealed under the DEK, as the state keeps it.
pub fn seal_text(keys: &dyn Keyring, aad: &[u8], text: &str) -> Result<String, KeyError> {
    use base64::Engine as _;
    let sealed = keys.seal(aad, text.as_bytes())?;
    let mut raw = sealed.nonce;
    raw.extend_from_slice(&sealed.ciphertext);
    Ok(format!(
        "{TOKEN_MARK}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
}

/// What `seal_text` sealed; an unmarked text is returned as it is.
pub fn open_text(keys: &dyn Keyring, aad: &[u8], stored: &str) -> Result<String, KeyError> {
    use base64::Engine as _;
    let Some(text) = stored.strip_prefix(TOKEN_MARK) else {
        return Ok(stored.to_string());
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| KeyError::Damaged)?;
    if raw.len() < NONCE_LEN {
        return Err(KeyError::Damaged);
    }
    let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
    let plain = keys.open(
        aad,
        &Sealed {
            nonce: nonce.to_vec(),
            ciphertext: ciphertext.to_vec(),
        },
    )?;
    String::from_utf8(plain).map_err(|_| KeyError::Damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_aad() {
        let a = ClusterKeyring::from_ca_key("key a");
        let b = ClusterKeyring::from_ca_key("key b");
        let s = a.seal(b"id:1", b"1q2w3e4r").expect("seal");
        assert!(!s.ciphertext.windows(8).any(|w| w == b"1q2w3e4r"));
        assert_eq!(a.open(b"id:1", &s).expect("open"), b"1q2w3e4r");
        assert!(a.open(b"id:2", &s).is_err());
        assert!(b.open(b"id:1", &s).is_err());
    }

    #[test]
    fn a_wrapped_file_opens_with_the_kek_that_wrapped_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kek = Kek::load_or_create(dir.path()).expect("kek");
        let blob = kek.wrap("ca.key", b"PRIVATE").expect("wrap");
        assert!(is_wrapped(&blob));
        let path = dir.path().join("x");
        assert_eq!(
            kek.unwrap(&path, "ca.key", &blob).expect("open"),
            b"PRIVATE"
        );
        let other = tempfile::tempdir().expect("tempdir");
        let kek2 = Kek::load_or_create(other.path()).expect("kek");
        assert!(kek2.unwrap(&path, "ca.key", &blob).is_err());
    }
}
