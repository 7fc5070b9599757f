//! NBD over TLS (the protocol's STARTTLS option), with rustls: the server's
//! X.509 certificate and key, and optionally a CA whose certificates clients
//! must present.
//!
//! Owns: loading the PEM files into one acceptor at start-up, and what each
//! listener demands. Invariant: on a listener that requires TLS, nothing but
//! STARTTLS (or ABORT) is answered before the TLS session is up, so no export
//! name, size or data crosses the network in the clear.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// What a listener asks of its clients.
#[derive(Clone)]
pub enum TlsMode {
    /// No TLS configured: STARTTLS is refused.
    Off,
    /// Clients may upgrade with STARTTLS (the unix socket).
    Optional(TlsAcceptor),
    /// Clients must upgrade before anything else (TCP, once TLS is set up).
    Required(TlsAcceptor),
}

impl TlsMode {
    pub fn acceptor(&self) -> Option<&TlsAcceptor> {
        match self {
            TlsMode::Off => None,
            TlsMode::Optional(a) | TlsMode::Required(a) => Some(a),
        }
    }

    pub fn required(&self) -> bool {
        matches!(self, TlsMode::Required(_))
    }
}

/// The acceptor for `cert` and `key` (PEM), verifying client certificates
/// against `client_ca` when given. Errors name the file and what is wrong.
pub fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("server.tls_cert_file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls_cert_file {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("server.tls_key_file {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("server.tls_client_ca_file {}: {e}", ca.display()))?;
            for c in cas {
                roots
                    .add(c)
                    .map_err(|e| format!("server.tls_client_ca_file {}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "server.tls_client_ca_file {}: no certificate in it",
                    ca.display()
                ));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("server.tls_client_ca_file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "server.tls_cert_file {} and server.tls_key_file: {e}",
            cert.display()
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
