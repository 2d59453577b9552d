//! The rustls client configuration of HTTPS checks: trust only the configured CA, optional client
//! certificate, and the explicit opt-out `insecure_skip_verify`. Always the ring provider, never the
//! process-wide default, so the binary does not depend on who installed what.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{HealthError, HttpsCheck};

fn read(path: &Path) -> Result<Vec<u8>, HealthError> {
    std::fs::read(path).map_err(|source| HealthError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(path: &Path, what: impl std::fmt::Display) -> HealthError {
    HealthError::BadPem {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, HealthError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad_pem(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, HealthError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| bad_pem(path, format!("no usable private key: {e}")))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client configuration, reading every file now so a bad file is a start-up error.
pub(crate) fn client_config(h: &HttpsCheck) -> Result<Arc<ClientConfig>, HealthError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if h.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
    } else {
        let path = h.ca_file.as_deref().ok_or_else(|| {
            HealthError::InvalidConfig("caFile is required for HTTPS checks".into())
        })?;
        let mut roots = RootCertStore::empty();
        for cert in load_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| bad_pem(path, format!("not a usable CA certificate: {e}")))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut cfg = match (&h.client_cert, &h.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| {
                bad_pem(
                    cert,
                    format!("client certificate and key do not fit together: {e}"),
                )
            })?,
        _ => builder.with_no_client_auth(),
    };
    // The checks speak HTTP/1.1 on a fresh connection each time; h2 would buy nothing.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake signatures are still checked so
/// the connection is at least a working TLS session with whoever holds the presented key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
