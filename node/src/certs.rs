//! Node certificates: issued by the cluster's root CA, naming the node id
//! (CN), its role (OU) and the cluster (O), as Swarm's do.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use shoal_core::model::NodeRole;

use crate::ca::{ca_params, CaError, RootCa};

/// Every node certificate carries this DNS name, so that a dialer can verify
/// "a node of my cluster" without knowing which one answers.
pub const NODE_SERVER_NAME: &str = "shoal-node";

/// A DNS name `gen-<n>.shoal` in every node certificate says which
/// certificate generation of its node it belongs to.
const GENERATION_PREFIX: &str = "gen-";

/// The certificate generation among a certificate's DNS names (0 if none).
pub fn generation_of<'a>(dns_names: impl IntoIterator<Item = &'a str>) -> u64 {
    dns_names
        .into_iter()
        .filter_map(|n| n.strip_prefix(GENERATION_PREFIX)?.strip_suffix(".shoal"))
        .find_map(|g| g.parse().ok())
        .unwrap_or(0)
}

/// Who is on the other end, from its verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerId {
    pub node_id: String,
    /// `swarm-manager` or `swarm-worker`.
    pub role: String,
    pub cluster_id: String,
    /// The certificate generation it was issued for (`Node::cert_generation`).
    pub generation: u64,
}

/// The node identity a certificate (DER) names: node id (CN), role (OU),
/// cluster id (O) and generation (a DNS name).
pub fn identity_of(der: &[u8]) -> Option<PeerId> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let text = |a: Option<&x509_parser::x509::AttributeTypeAndValue>| {
        a.and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    let node_id = text(subject.iter_common_name().next())?;
    let role = text(subject.iter_organizational_unit().next()).unwrap_or_default();
    let cluster_id = text(subject.iter_organization().next()).unwrap_or_default();
    let names: Vec<&str> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(*d),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(PeerId {
        node_id,
        role,
        cluster_id,
        generation: generation_of(names),
    })
}

pub fn role_unit(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "swarm-manager",
        NodeRole::Worker => "swarm-worker",
    }
}

use crate::keys::lock::NODE_KEY;

/// A node's certificate chain and key, in PEM.
#[derive(Debug, Clone)]
pub struct NodeCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The data dir of a certificates dir (`<data-dir>/certs`), whose KEK may
/// seal the node's key.
fn keys_home(dir: &Path) -> &Path {
    dir.parent().unwrap_or(dir)
}

impl NodeCert {
    /// Writes the certificate and key into `dir` (`<data-dir>/certs`). On an
    /// autolocked manager the key is sealed under the KEK, as the CA key
    /// is: a copy of the data dir holds no key that opens a connection.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("node.crt"), &self.cert_pem)?;
        let home = keys_home(dir);
        if crate::keys::lock::is_autolocked(home) {
            let kek = crate::keys::Kek::load_or_create(home).map_err(std::io::Error::other)?;
            let blob = kek
                .wrap(NODE_KEY, self.key_pem.as_bytes())
                .map_err(std::io::Error::other)?;
            crate::keys::write_private(&dir.join(NODE_KEY), &blob)
                .map_err(std::io::Error::other)?;
            return Ok(());
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join(NODE_KEY))?;
        std::io::Write::write_all(&mut f, self.key_pem.as_bytes())?;
        f.sync_all()?;
        Ok(())
    }

    /// The identity the node certificate (the first in the chain) names.
    pub fn identity(&self) -> Option<PeerId> {
        let der = crate::pem::pem_certs(&self.cert_pem).into_iter().next()?;
        identity_of(der.as_ref())
    }

    /// When the node certificate (the first in the chain) expires.
    pub fn not_after(&self) -> Option<std::time::SystemTime> {
        let der = crate::pem::pem_certs(&self.cert_pem).into_iter().next()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let secs = cert.validity().not_after.timestamp();
        Some(std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
    }

    /// Reads what `save` wrote; a sealed key needs the KEK (an autolocked
    /// manager that is still locked cannot load it).
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let key_path = dir.join(NODE_KEY);
        let blob = std::fs::read(&key_path)?;
        let key = match crate::keys::is_wrapped(&blob) {
            true => crate::keys::Kek::load_or_create(keys_home(dir))
                .and_then(|kek| kek.unwrap(&key_path, NODE_KEY, &blob))
                .map_err(std::io::Error::other)?,
            false => blob,
        };
        Ok(NodeCert {
            cert_pem: std::fs::read_to_string(dir.join("node.crt"))?,
            key_pem: String::from_utf8(key).map_err(std::io::Error::other)?,
        })
    }
}

impl RootCa {
    /// Issues a certificate for `node_id` in `role`, valid for `validity`,
    /// of the node's certificate `generation` (see `Node::cert_generation`).
    pub fn issue(
        &self,
        cluster_id: &str,
        node_id: &str,
        role: NodeRole,
        generation: u64,
        validity: Duration,
    ) -> Result<NodeCert, CaError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![
            NODE_SERVER_NAME.to_string(),
            format!("{node_id}.shoal"),
            format!("{GENERATION_PREFIX}{generation}.shoal"),
        ])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        dn.push(DnType::OrganizationalUnitName, role_unit(role));
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time_now();
        params.not_before = now - CERT_BACKDATE;
        params.not_after = now + time::Duration::seconds(validity.as_secs() as i64);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeCert {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

/// How far before its issue a certificate's validity starts, as swarmkit
/// backdates its own: a node whose clock is up to this much behind the
/// issuer's still accepts a certificate issued a moment ago
/// (docs/security.md, clocks).
pub const CERT_BACKDATE: time::Duration = time::Duration::hours(1);

/// The node's wall clock (`shoal_actors::world::now`, which a chaos fault
/// can move), as the certificate library counts time.
fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::from(std::time::SystemTime::from(shoal_actors::world::now()))
}
