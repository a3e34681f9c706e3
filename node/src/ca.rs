//! The cluster's root CA and its join tokens.
//!
//! `swarm init` creates an ECDSA P-256 root; join tokens carry a digest of its
//! certificate (`SWMTKN-1-<digest>-<secret>`), as Swarm's do, so that a joining
//! node can check the CA it is shown before it presents the secret.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot create the cluster CA: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("cannot store the cluster CA: {0}")]
    Io(#[from] std::io::Error),
}

pub struct RootCa {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
}

/// The data dir whose `keys/kek` seals the CA in `dir` (`<data-dir>/ca`).
fn keys_home(dir: &Path) -> std::path::PathBuf {
    dir.parent().unwrap_or(dir).to_path_buf()
}

impl RootCa {
    pub fn generate() -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params()?.self_signed(&key)?;
        Ok(RootCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Reads a CA written by `save`.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let cert_pem = std::fs::read_to_string(dir.join("ca.crt"))?;
        let key_path = dir.join("ca.key");
        let blob = std::fs::read(&key_path)?;
        let key_pem = match crate::keys::is_wrapped(&blob) {
            true => {
                let kek = crate::keys::Kek::load_or_create(&keys_home(dir))
                    .map_err(std::io::Error::other)?;
                let plain = kek
                    .unwrap(&key_path, "ca.key", &blob)
                    .map_err(std::io::Error::other)?;
                String::from_utf8(plain).map_err(std::io::Error::other)?
            }
            false => String::from_utf8(blob).map_err(std::io::Error::other)?,
        };
        let cert_der = crate::pem::pem_certs(&cert_pem)
            .into_iter()
            .next()
            .map(|c| c.to_vec())
            .ok_or_else(|| std::io::Error::other("ca.crt holds no certificate"))?;
        Ok(RootCa {
            cert_pem,
            cert_der,
            key_pem,
        })
    }

    /// The token digest: base-36 SHA-256 of the CA certificate.
    pub fn digest(&self) -> String {
        ca_digest(&self.cert_der)
    }

    /// Writes the CA into `dir` (the key readable by the owner only).
    /// The key is sealed under the node's key-encryption key
    /// (`crate::keys`), never written in plaintext.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.crt"), &self.cert_pem)?;
        let kek =
            crate::keys::Kek::load_or_create(&keys_home(dir)).map_err(std::io::Error::other)?;
        let blob = kek
            .wrap("ca.key", self.key_pem.as_bytes())
            .map_err(std::io::Error::other)?;
        crate::keys::write_private(&dir.join("ca.key"), &blob).map_err(std::io::Error::other)?;
        Ok(())
    }

    pub fn join_token(&self) -> String {
        format!("SWMTKN-1-{}-{}", self.digest(), random_secret())
    }
}

/// Compares a presented join token with the cluster's in time that does
/// not depend on where they differ, so timing cannot reveal the secret.
pub fn tokens_equal(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, y) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ y);
    }
    diff == 0
}

/// The CA's parameters, rebuilt identically from its fixed subject so that
/// certificates it signs name it as their issuer.
pub(crate) fn ca_params() -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "shoal-swarm-ca");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    Ok(params)
}

/// base-36 SHA-256 of a CA certificate's DER, 50 digits, as in join tokens.
pub fn ca_digest(der: &[u8]) -> String {
    base36(&Sha256::digest(der), 50)
}

/// The token's secret: 25 random characters of the id alphabet.
fn random_secret() -> String {
    shoal_core::model::id_from(&mut rand::rng())
}

/// Big-endian bytes as a base-36 number, zero-padded to `width` digits.
fn base36(bytes: &[u8], width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut num = bytes.to_vec();
    let mut out = Vec::new();
    while num.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in num.iter_mut() {
            let cur = (rem << 8) | *b as u32;
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        out.push(DIGITS[rem as usize]);
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_has_swarms_shape() {
        let ca = RootCa::generate().unwrap();
        let t = ca.join_token();
        let parts: Vec<&str> = t.split('-').collect();
        assert_eq!(parts[0], "SWMTKN");
        assert_eq!(parts[1], "1");
        assert_eq!(parts[2].len(), 50);
        assert_eq!(parts[3].len(), 25);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_equal("SWMTKN-1-a-b", "SWMTKN-1-a-b"));
        assert!(!tokens_equal("SWMTKN-1-a-c", "SWMTKN-1-a-b"));
        assert!(!tokens_equal("SWMTKN-1-a-b-", "SWMTKN-1-a-b"));
        assert!(!tokens_equal("SWMTKN-1-a-", "SWMTKN-1-a-b"));
        assert!(!tokens_equal("", "x"));
    }

    #[test]
    fn base36_encodes_numbers() {
        assert_eq!(base36(&[0, 35], 2), "0z");
        assert_eq!(base36(&[1, 0], 3), "074");
    }
}
