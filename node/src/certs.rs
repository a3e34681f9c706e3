//! Node certificates: issued by the cluster's root CA, naming the node id
//! (CN), its role (OU) and the cluster (O), as Swarm's do.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use shoal_actors::model::NodeRole;

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

pub fn role_unit(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "swarm-manager",
        NodeRole::Worker => "swarm-worker",
    }
}

/// A node's certificate chain and key, in PEM.
#[derive(Debug, Clone)]
pub struct NodeCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl NodeCert {
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("node.crt"), &self.cert_pem)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dir.join("node.key"))?;
        std::io::Write::write_all(&mut f, self.key_pem.as_bytes())?;
        f.sync_all()?;
        Ok(())
    }

    /// When the node certificate (the first in the chain) expires.
    pub fn not_after(&self) -> Option<std::time::SystemTime> {
        let der = crate::pem::pem_certs(&self.cert_pem).into_iter().next()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let secs = cert.validity().not_after.timestamp();
        Some(std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
    }

    pub fn load(dir: &Path) -> Result<Self, CaError> {
        Ok(NodeCert {
            cert_pem: std::fs::read_to_string(dir.join("node.crt"))?,
            key_pem: std::fs::read_to_string(dir.join("node.key"))?,
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
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::seconds(validity.as_secs() as i64);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeCert {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
