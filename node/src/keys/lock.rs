//! Autolock: the key-encryption key comes from an unlock key
//! (`SWMKEY-1-...`) that is shown once and never stored. A manager
//! restarted with autolock on keeps its KEK only in memory once
//! `swarm unlock` gave it the key; until then it cannot unwrap the CA key
//! or its own node key, so it derives no DEK, binds no transport, starts no
//! actors and serves nothing.
//!
//! On disk: `<data-dir>/keys/kek` without autolock; `<data-dir>/keys/autolock`
//! (an empty marker) with it, and no KEK at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use parking_lot::Mutex;
use ring::rand::SecureRandom;

use super::KeyFileError;

/// The node's private key, in `<data-dir>/certs`.
pub const NODE_KEY: &str = "node.key";

/// The KEKs of autolocked data dirs this process was given, by data dir.
static UNLOCKED: Mutex<BTreeMap<PathBuf, [u8; 32]>> = Mutex::new(BTreeMap::new());

/// One change of key files at a time (the API and the follower may both
/// ask for the same one).
static CHANGING: Mutex<()> = Mutex::new(());

const PREFIX: &str = "SWMKEY-1-";

fn marker(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("autolock")
}

fn kek_file(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("kek")
}

/// Whether the node's KEK comes from an unlock key.
pub fn is_autolocked(data_dir: &Path) -> bool {
    marker(data_dir).exists()
}

/// Autolocked, and not given its unlock key since it started.
pub fn is_locked(data_dir: &Path) -> bool {
    is_autolocked(data_dir) && !UNLOCKED.lock().contains_key(data_dir)
}

/// The in-memory KEK of an autolocked data dir, if it was unlocked.
pub(super) fn unlocked(data_dir: &Path) -> Option<[u8; 32]> {
    UNLOCKED.lock().get(data_dir).copied()
}

/// A fresh unlock key.
pub fn new_unlock_key() -> Result<String, KeyFileError> {
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| KeyFileError::Random("the OS gave no random bytes".into()))?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
    ))
}

/// The KEK an unlock key stands for.
fn kek_of(unlock_key: &str) -> Option<[u8; 32]> {
    let text = unlock_key.trim().strip_prefix(PREFIX)?;
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .ok()
        .filter(|r| r.len() == 32)?;
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"shoal");
    let prk = salt.extract(&raw);
    let info: [&[u8]; 1] = [b"shoal kek v1"];
    let okm = prk.expand(&info, ring::hkdf::HKDF_SHA256).ok()?;
    let mut out = [0u8; 32];
    okm.fill(&mut out).ok()?;
    Some(out)
}

/// The KEK an unlock key stands for, as a key: what seals the CA key of
/// a backup taken of an autolocked swarm (`crate::backup`).
pub fn kek_for(unlock_key: &str) -> Option<super::Kek> {
    kek_of(unlock_key).and_then(|k| super::Kek::from_bytes(&k))
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("invalid key")]
    InvalidKey,
    #[error("swarm is not locked")]
    NotLocked,
    #[error(transparent)]
    File(#[from] KeyFileError),
}

/// Every file the KEK seals: the CA key, and the node's own key (either
/// grants manager rights to whoever holds it).
fn sealed_files(data_dir: &Path) -> Vec<(PathBuf, &'static str)> {
    vec![
        (data_dir.join("ca").join("ca.key"), "ca.key"),
        (data_dir.join("certs").join(NODE_KEY), NODE_KEY),
    ]
}

/// Seals every sealed file under `new` (one still in plaintext, as the
/// node's key is without autolock, is sealed as it is).
fn rewrap(data_dir: &Path, old: &super::Kek, new: &super::Kek) -> Result<(), KeyFileError> {
    for (path, what) in sealed_files(data_dir) {
        let blob = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(KeyFileError::Io { path, source }),
        };
        let plain = match super::is_wrapped(&blob) {
            true => old.unwrap(&path, what, &blob)?,
            false => blob,
        };
        super::write_private(&path, &new.wrap(what, &plain)?)?;
    }
    Ok(())
}

/// `swarm unlock`: checks the key against the sealed CA key and keeps the
/// KEK in memory.
pub fn unlock(data_dir: &Path, unlock_key: &str) -> Result<(), LockError> {
    let _one = CHANGING.lock();
    if !is_locked(data_dir) {
        return Err(LockError::NotLocked);
    }
    let kek = kek_of(unlock_key).ok_or(LockError::InvalidKey)?;
    let k = super::Kek::from_bytes(&kek).ok_or(LockError::InvalidKey)?;
    for (path, what) in sealed_files(data_dir) {
        let blob = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(LockError::File(KeyFileError::Io { path, source })),
        };
        if super::is_wrapped(&blob) {
            k.unwrap(&path, what, &blob)
                .map_err(|_| LockError::InvalidKey)?;
        }
    }
    UNLOCKED.lock().insert(data_dir.to_path_buf(), kek);
    Ok(())
}

/// Turns autolock on (or changes the unlock key): the sealed files are
/// sealed again under the unlock key's KEK, and the KEK file is removed.
pub fn set_unlock_key(data_dir: &Path, unlock_key: &str) -> Result<(), LockError> {
    let _one = CHANGING.lock();
    let kek = kek_of(unlock_key).ok_or(LockError::InvalidKey)?;
    let old = super::Kek::load_or_create(data_dir)?;
    let new = super::Kek::from_bytes(&kek).ok_or(LockError::InvalidKey)?;
    rewrap(data_dir, &old, &new)?;
    super::write_private(&marker(data_dir), b"")?;
    UNLOCKED.lock().insert(data_dir.to_path_buf(), kek);
    let _ = std::fs::remove_file(kek_file(data_dir));
    Ok(())
}

/// Turns autolock off: a random KEK on disk seals the files again.
pub fn clear_unlock_key(data_dir: &Path) -> Result<(), LockError> {
    let _one = CHANGING.lock();
    if !is_autolocked(data_dir) {
        return Ok(());
    }
    let old = super::Kek::load_or_create(data_dir)?;
    let _ = std::fs::remove_file(marker(data_dir));
    UNLOCKED.lock().remove(data_dir);
    let new = super::Kek::load_or_create(data_dir)?;
    rewrap(data_dir, &old, &new)?;
    Ok(())
}

/// Forgets the lock state of a data dir the node left.
pub fn forget(data_dir: &Path) {
    UNLOCKED.lock().remove(data_dir);
    let _ = std::fs::remove_file(marker(data_dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_autolocked_ca_key_opens_with_its_unlock_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path();
        let ca = crate::ca::RootCa::generate().expect("ca");
        ca.save(&data.join("ca")).expect("save");
        let key = new_unlock_key().expect("key");
        set_unlock_key(data, &key).expect("autolock");
        assert!(!kek_file(data).exists());
        // A restart forgets the KEK: locked until unlocked.
        UNLOCKED.lock().remove(data);
        assert!(is_locked(data));
        assert!(crate::ca::RootCa::load(&data.join("ca")).is_err());
        let wrong = new_unlock_key().expect("key");
        assert!(matches!(unlock(data, &wrong), Err(LockError::InvalidKey)));
        unlock(data, &key).expect("unlock");
        let back = crate::ca::RootCa::load(&data.join("ca")).expect("load");
        assert_eq!(back.key_pem, ca.key_pem);
        clear_unlock_key(data).expect("off");
        assert!(!is_autolocked(data) && kek_file(data).exists());
        assert_eq!(
            crate::ca::RootCa::load(&data.join("ca"))
                .expect("load")
                .key_pem,
            ca.key_pem
        );
    }

    #[test]
    fn the_node_key_is_sealed_while_autolocked_and_opens_once_unlocked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path();
        let ca = crate::ca::RootCa::generate().expect("ca");
        ca.save(&data.join("ca")).expect("save");
        let cert = ca
            .issue(
                "c",
                "n",
                shoal_core::model::NodeRole::Manager,
                0,
                std::time::Duration::from_secs(60),
            )
            .expect("cert");
        let certs = data.join("certs");
        cert.save(&certs).expect("save cert");
        let plain = || std::fs::read_to_string(certs.join(NODE_KEY));
        assert!(plain().is_ok_and(|k| k.contains("PRIVATE KEY")));
        let key = new_unlock_key().expect("key");
        set_unlock_key(data, &key).expect("autolock");
        let sealed = std::fs::read(certs.join(NODE_KEY)).expect("read");
        assert!(super::super::is_wrapped(&sealed));
        UNLOCKED.lock().remove(data);
        assert!(crate::certs::NodeCert::load(&certs).is_err());
        unlock(data, &key).expect("unlock");
        let back = crate::certs::NodeCert::load(&certs).expect("load");
        assert_eq!(back.key_pem, cert.key_pem);
        // A certificate saved while autolocked (a renewal) is sealed too.
        back.save(&certs).expect("save again");
        let again = std::fs::read(certs.join(NODE_KEY)).expect("read");
        assert!(super::super::is_wrapped(&again));
        clear_unlock_key(data).expect("off");
        assert_eq!(
            crate::certs::NodeCert::load(&certs).expect("load").key_pem,
            cert.key_pem
        );
    }
}
