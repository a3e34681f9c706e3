//! PEM text to DER certificates: the leaf the CA, the node certificates and
//! the TLS setup all read certificates through (ca -> certs -> tls, no circle).

use rustls::pki_types::CertificateDer;

/// Every certificate in `pem`, in order; what does not parse is skipped.
pub fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}
