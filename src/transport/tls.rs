//! TLS client settings: the system trust store plus extra CA files, and, for a host
//! configured with `skip_verify`, a verifier that accepts any certificate (the handshake
//! signatures are still checked, so the session is at least bound to the certificate the
//! server showed); and a client certificate for registries that ask for one (mutual TLS).
//!
//! The system store is read on the first TLS handshake, not when the client is built:
//! parsing a few hundred certificates is most of the start-up cost of a one-shot fetch, and
//! a plain-HTTP registry never needs them. Extra CA files are read at once, so a wrong path
//! is reported before any request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, ErrorKind, Result};

/// A client certificate and its key, PEM files, shown to servers that ask for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate, followed by any intermediates.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Builds the client configuration: verified against the system store and `ca_files`, or
/// not verified at all with `skip_verify`; presenting `identity` when a server asks.
pub fn client_config(
    ca_files: &[PathBuf],
    skip_verify: bool,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Io, "configuring TLS").with_cause(e))?;
    let mut extra = rustls::RootCertStore::empty();
    if !skip_verify {
        for path in ca_files {
            add_pem(&mut extra, path)?;
        }
    }
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            skip_verify,
            extra,
            provider,
            webpki: OnceLock::new(),
        }));
    let Some(identity) = identity else {
        return Ok(builder.with_no_client_auth());
    };
    let (chain, key) = load_identity(identity)?;
    builder.with_client_auth_cert(chain, key).map_err(|e| {
        Error::invalid(format!(
            "client certificate {} with key {}",
            identity.cert.display(),
            identity.key.display()
        ))
        .with_cause(e)
    })
}

/// Reads a client certificate chain and its key; errors name the file, never its content.
fn load_identity(
    identity: &ClientIdentity,
) -> Result<(
    Vec<CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
)> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| {
            Error::new(ErrorKind::Io, format!("reading {}", path.display())).with_cause(e)
        })
    };
    let pem = read(&identity.cert)?;
    let chain = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::invalid(format!("parsing {}", identity.cert.display())).with_cause(e)
        })?;
    if chain.is_empty() {
        return Err(Error::invalid(format!(
            "{} holds no certificate",
            identity.cert.display()
        )));
    }
    let pem = read(&identity.key)?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| Error::invalid(format!("parsing {}", identity.key.display())).with_cause(e))?
        .ok_or_else(|| {
            Error::invalid(format!("{} holds no private key", identity.key.display()))
        })?;
    Ok((chain, key))
}

/// Verifies against the system store plus `extra`, loading the system store on first use;
/// or, with `skip_verify`, accepts any certificate. Handshake signatures are checked either
/// way.
#[derive(Debug)]
struct Verifier {
    skip_verify: bool,
    extra: rustls::RootCertStore,
    provider: Arc<CryptoProvider>,
    webpki: OnceLock<std::result::Result<Arc<WebPkiServerVerifier>, String>>,
}

impl Verifier {
    fn webpki(&self) -> std::result::Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.webpki
            .get_or_init(|| {
                let mut roots = self.extra.clone();
                for cert in rustls_native_certs::load_native_certs().certs {
                    // One unparsable system certificate must not make every registry
                    // unreachable.
                    let _ = roots.add(cert);
                }
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| rustls::Error::General(format!("no usable trust store: {e}")))
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if self.skip_verify {
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn add_pem(roots: &mut rustls::RootCertStore, path: &Path) -> Result<()> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::new(ErrorKind::Io, format!("reading CA file {}", path.display())).with_cause(e)
    })?;
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| {
            Error::invalid(format!("parsing CA file {}", path.display())).with_cause(e)
        })?;
        roots
            .add(cert)
            .map_err(|e| Error::invalid(format!("CA file {}", path.display())).with_cause(e))?;
        n += 1;
    }
    if n == 0 {
        return Err(Error::invalid(format!(
            "CA file {} holds no certificate",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_is_reported() {
        let e = client_config(&[PathBuf::from("/nonexistent/ca.pem")], false, None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"));
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "not a certificate").unwrap();
        assert!(client_config(&[f.path().to_owned()], false, None).is_err());
        assert!(client_config(&[], true, None).is_ok());
    }
}
