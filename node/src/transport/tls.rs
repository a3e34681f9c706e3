//! rustls configurations for QUIC with mutual TLS against the cluster CA.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::certs::NODE_SERVER_NAME;
use crate::pem::pem_certs;

pub const ALPN: &[u8] = b"shoal/1";
/// Connections that carry only proxied traffic (the routing mesh's tunnels),
/// apart from the control messages.
pub const MESH_ALPN: &[u8] = b"shoal-mesh/1";
/// Connections that carry the overlay data plane: IP packets as datagrams.
pub const OVERLAY_ALPN: &[u8] = b"shoal-overlay/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate in the PEM data")]
    NoCert,
    #[error("no private key in the PEM data")]
    NoKey,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("QUIC crypto: {0}")]
    Quic(String),
}

fn pem_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| TlsError::NoKey)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates are checked against the node's wall clock as the rest of
/// the node reads it (`shoal_actors::world::now`), so a moved clock (a chaos
/// fault) meets the certificates as a wrong host clock would.
#[derive(Debug)]
struct NodeClock;

impl rustls::time_provider::TimeProvider for NodeClock {
    fn current_time(&self) -> Option<rustls::pki_types::UnixTime> {
        let secs = u64::try_from(shoal_actors::world::now().timestamp()).ok()?;
        Some(rustls::pki_types::UnixTime::since_unix_epoch(
            std::time::Duration::from_secs(secs),
        ))
    }
}

fn clock() -> Arc<dyn rustls::time_provider::TimeProvider> {
    Arc::new(NodeClock)
}

fn roots(ca_pem: &str) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(ca_pem) {
        roots.add(c)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCert);
    }
    Ok(Arc::new(roots))
}

/// What this node presents and trusts.
pub struct TlsIdentity {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

/// The server side. A client certificate, if shown, must come from the
/// cluster CA; a client without one (a node joining with a token) may only
/// make a join request, which the transport enforces.
pub fn server_config(id: &TlsIdentity) -> Result<quinn::ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&id.ca_pem)?, provider())
        .allow_unauthenticated()
        .build()?;
    let chain = pem_certs(&id.chain_pem);
    if chain.is_empty() {
        return Err(TlsError::NoCert);
    }
    let mut cfg = rustls::ServerConfig::builder_with_details(provider(), clock())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, pem_key(&id.key_pem)?)?;
    cfg.alpn_protocols = vec![ALPN.to_vec(), MESH_ALPN.to_vec(), OVERLAY_ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(cfg)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

/// The client side: the peer must show a node certificate of the same CA.
pub fn client_config(id: &TlsIdentity) -> Result<quinn::ClientConfig, TlsError> {
    client_config_for(id, ALPN)
}

/// The client side of the mesh's tunnel connections.
pub fn mesh_client_config(id: &TlsIdentity) -> Result<quinn::ClientConfig, TlsError> {
    client_config_for(id, MESH_ALPN)
}

/// The client side of the overlay data plane's connections.
pub fn overlay_client_config(id: &TlsIdentity) -> Result<quinn::ClientConfig, TlsError> {
    client_config_for(id, OVERLAY_ALPN)
}

fn client_config_for(id: &TlsIdentity, alpn: &[u8]) -> Result<quinn::ClientConfig, TlsError> {
    let chain = pem_certs(&id.chain_pem);
    if chain.is_empty() {
        return Err(TlsError::NoCert);
    }
    let mut cfg = rustls::ClientConfig::builder_with_details(provider(), clock())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(&id.ca_pem)?)
        .with_client_auth_cert(chain, pem_key(&id.key_pem)?)?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

pub fn server_name() -> &'static str {
    NODE_SERVER_NAME
}

/// Verifies a server against the CA whose digest a join token carries: the
/// chain must end in a CA certificate with that digest, and the node
/// certificate must be signed by it. Nothing secret is sent before this holds.
#[derive(Debug)]
struct PinnedCa {
    digest: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let Some((ca, rest)) = intermediates.split_last() else {
            return Err(rustls::Error::General(
                "the manager presented no CA certificate".into(),
            ));
        };
        if crate::ca::ca_digest(ca.as_ref()) != self.digest {
            return Err(rustls::Error::General(
                "the manager's CA does not match the join token".into(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, rest, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client without a certificate, trusting only the CA with `ca_digest`.
pub fn join_client_config(ca_digest: &str) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let mut cfg = rustls::ClientConfig::builder_with_details(provider.clone(), clock())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            digest: ca_digest.to_string(),
            provider,
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}
