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
    // rustls 0.23.48 deprecates the ring provider for lacking post-quantum key exchange;
    // aws-lc-rs, which has it, is the only other built-in provider and needs a C toolchain
    // build of its own. `allow`, not `expect`: the lock's 0.23.46 has no deprecation.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Io, "configuring TLS").with_cause(e))?;
    let mut extra = rustls::RootCertStore::empty();
    let mut trusted = Vec::new();
    if !skip_verify {
        for path in ca_files {
            trusted.extend(add_pem(&mut extra, path)?);
        }
    }
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            skip_verify,
            extra,
            trusted,
            provider: provider.clone(),
            webpki: OnceLock::new(),
        }));
    let Some(identity) = identity else {
        return Ok(builder.with_no_client_auth());
    };
    let (chain, key) = load_identity(identity)?;
    let invalid = |e: rustls::Error| {
        Error::invalid(format!(
            "client certificate {} with key {}",
            identity.cert.display(),
            identity.key.display()
        ))
        .with_cause(e)
    };
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(invalid)?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    // rustls says only "keys may not be consistent: KeyMismatch": which file is wrong is
    // the user's to find, but they must learn that the two are not a pair.
    let mismatch = match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => true,
        // A certificate webpki cannot parse (an X.509 v1 certificate, as `openssl x509
        // -req` issues one without `-extfile`) was refused before any request, where
        // nginx, OpenSSL and Go take it: it is presented, the server judging it, once its
        // public key info is read as the key's own. One that cannot be read that far is
        // damaged rather than another key's, and told as webpki reads it.
        Err(rustls::Error::InvalidCertificate(why)) => {
            let spki = certified.key.public_key();
            let cert = certified.cert[0].as_ref();
            match spki.map(|spki| super::pinned::holds_public_key(cert, spki.as_ref())) {
                Some(Some(holds)) => !holds,
                None => false,
                Some(None) => return Err(invalid(rustls::Error::InvalidCertificate(why))),
            }
        }
        _ => false,
    };
    if mismatch {
        return Err(Error::invalid(format!(
            "the key {} is not the key of the client certificate {}",
            identity.key.display(),
            identity.cert.display()
        )));
    }
    Ok(
        builder
            .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified))),
    )
}

/// Reads a client certificate chain and its key.
fn load_identity(
    identity: &ClientIdentity,
) -> Result<(
    Vec<CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
)> {
    let chain = read_certs(&identity.cert, "client certificate")?;
    let what = "client key";
    let pem = read_pem(&identity.key, what)?;
    // rustls reads no encrypted key: PKCS#8's form is skipped as an unknown section ("holds
    // no private key"), OpenSSL's older one fails on its `Proc-Type` header as bad base64.
    // Either way the user would not learn what to do.
    if contains(&pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(&pem, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(Error::invalid(format!(
            "{what} {} is encrypted with a passphrase, which dist cannot ask for; \
             decrypt it first (openssl pkey -in {0} -out <new file>)",
            identity.key.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| {
            Error::invalid(format!("parsing {what} {}", identity.key.display())).with_cause(e)
        })?
        .ok_or_else(|| {
            Error::invalid(format!(
                "{what} {} holds no private key",
                identity.key.display()
            ))
        })?;
    Ok((chain, key))
}

/// Whether `needle` stands anywhere in `haystack` (a PEM file, a server's error page).
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Verifies against the system store plus `extra`, loading the system store on first use;
/// or, with `skip_verify`, accepts any certificate. Handshake signatures are checked either
/// way.
#[derive(Debug)]
struct Verifier {
    skip_verify: bool,
    extra: rustls::RootCertStore,
    /// The certificates of `extra` as the user gave them, for [`super::pinned`].
    trusted: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    webpki: OnceLock<std::result::Result<Webpki, rustls::Error>>,
}

/// The verifier over the system store and `extra`, with the store's certificates, which
/// [`super::pinned`] accepts as the server's own too: Go accepts any certificate of its
/// trust pool shown by the server itself, so a registry's self-signed certificate trusted
/// through `SSL_CERT_FILE` (as crane is told to trust it) serves as with `--ca-file`. A
/// server showing a CA's own certificate holds that CA's key, and could issue itself any
/// certificate it wanted anyway.
#[derive(Debug)]
struct Webpki {
    verifier: Arc<WebPkiServerVerifier>,
    system: Vec<CertificateDer<'static>>,
}

impl Verifier {
    fn webpki(&self) -> std::result::Result<&Webpki, rustls::Error> {
        self.webpki
            .get_or_init(|| {
                let mut roots = self.extra.clone();
                let native = rustls_native_certs::load_native_certs();
                let mut system = Vec::with_capacity(native.certs.len());
                for cert in native.certs {
                    // One unparsable system certificate must not make every registry
                    // unreachable.
                    if roots.add(cert.clone()).is_ok() {
                        system.push(cert);
                    }
                }
                if !roots.is_empty() && !native.errors.is_empty() {
                    warn_store_unread(&native.errors);
                }
                if roots.is_empty() {
                    return Err(rustls::Error::Other(rustls::OtherError(Arc::new(
                        NoTrustAnchors {
                            store: native.errors.iter().map(ToString::to_string).collect(),
                        },
                    ))));
                }
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map(|verifier| Webpki { verifier, system })
                    .map_err(|e| rustls::Error::General(format!("no usable trust store: {e}")))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Warns, once a run, that part of the system's store could not be read (`SSL_CERT_FILE`
/// naming a file that is not there, beside an `SSL_CERT_DIR` that loads): the rest
/// verifies servers, and without a word a mistyped path read only as a server "not
/// trusted here", the CA it was to add never loaded.
fn warn_store_unread(errors: &[rustls_native_certs::Error]) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        let said: Vec<String> = errors.iter().map(ToString::to_string).collect();
        tracing::warn!(
            "the trust store was read only in part: {}; its other CA certificates are used",
            store_failures(&said)
        );
    });
}

/// How reading the system's store failed, in a line of its own size: the first failures
/// and the count. A certificate directory of 200 files that cannot be read (a wrong
/// owner after a copy) said each of them, a line of 200. The first by name: a directory
/// lists its files in an order of its own, and the same store named others from one
/// filesystem to the next.
pub(crate) fn store_failures(said: &[String]) -> String {
    const SHOWN: usize = 2;
    let mut first: Vec<&str> = said.iter().map(String::as_str).collect();
    first.sort_unstable();
    let mut line = first[..said.len().min(SHOWN)].join("; ");
    if said.len() > SHOWN {
        line.push_str(&format!(
            "; and {} more ({} in all)",
            said.len() - SHOWN,
            said.len()
        ));
    }
    line
}

/// No certificate authority at all to verify a server with: the system's store is empty
/// or cannot be read (a `FROM scratch` image, `SSL_CERT_FILE` naming a file that is not
/// there), and no CA file was given. No server can be verified until that changes, so it
/// is no broken connection to try again.
#[derive(Debug)]
pub(crate) struct NoTrustAnchors {
    /// What went wrong reading the system's store, if anything did.
    pub(crate) store: Vec<String>,
}

impl std::fmt::Display for NoTrustAnchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no CA certificates")
    }
}

impl std::error::Error for NoTrustAnchors {}

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
        let webpki = self.webpki()?;
        let refused = match webpki.verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(e) => e,
        };
        let pinned = super::pinned::verify(&self.trusted, end_entity, server_name, now)
            .or_else(|| super::pinned::verify(&webpki.system, end_entity, server_name, now));
        match pinned {
            Some(verdict) => verdict.map(|()| ServerCertVerified::assertion()),
            None => Err(UnknownIssuer::explain(refused, end_entity, intermediates)),
        }
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

/// A certificate whose issuer is not trusted, with what the refusal needs to say what to
/// trust, where rustls says only `UnknownIssuer`. Most often the server sent its
/// certificate without the intermediate CA's (`cert.pem` configured where `fullchain.pem`
/// was meant): browsers fetch a missing intermediate, rustls, Go and curl do not, and the
/// user, told to trust a CA, trusted the root and was refused the same way.
#[derive(Debug)]
pub(crate) struct UnknownIssuer {
    /// The common name of the authority the certificates the server sent lead up to.
    pub(crate) issuer: Option<String>,
    /// The server's certificate is its own issuer.
    pub(crate) self_signed: bool,
    /// The server sent its certificate alone, though another certificate issued it.
    pub(crate) alone: bool,
    /// The server's certificate says it is a CA (webpki's `CaUsedAsEndEntity`, which it
    /// finds before it looks for an issuer): self-signed, it is what `openssl req -x509`
    /// makes, untrusted as any other self-signed certificate is.
    pub(crate) says_ca: bool,
}

impl UnknownIssuer {
    /// `refused` with the issuer's name when it is an unknown issuer, or a self-signed
    /// certificate that says it is a CA; as it is otherwise.
    fn explain(
        refused: rustls::Error,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> rustls::Error {
        let says_ca = matches!(
            &refused,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
                if format!("{other:?}").contains("CaUsedAsEndEntity")
        );
        if !says_ca
            && refused != rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        {
            return refused;
        }
        let top = intermediates.last().unwrap_or(end_entity);
        let (Some((issuer, _)), Some((leaf_issuer, leaf_subject))) = (
            super::pinned::issuer_and_subject(top),
            super::pinned::issuer_and_subject(end_entity),
        ) else {
            return refused;
        };
        let self_signed = leaf_issuer == leaf_subject;
        if says_ca && !self_signed {
            // A CA's certificate in the server's place, issued by another: a server
            // misconfigured, which trusting nothing will cure.
            return refused;
        }
        let issuer = super::pinned::common_name(issuer).map(|name| {
            let name = crate::server_text::printable(&name).into_owned();
            crate::server_text::cut_to(name, 64)
        });
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(UnknownIssuer {
                issuer,
                self_signed,
                alone: intermediates.is_empty() && !self_signed,
                says_ca,
            }),
        )))
    }
}

impl std::fmt::Display for UnknownIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnknownIssuer")
    }
}

impl std::error::Error for UnknownIssuer {}

/// Adds the certificates of a PEM file to `roots`, and returns them.
fn add_pem(roots: &mut rustls::RootCertStore, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = read_certs(path, "CA file")?;
    for cert in &certs {
        roots
            .add(cert.clone())
            .map_err(|e| Error::invalid(format!("CA file {}", path.display())).with_cause(e))?;
    }
    Ok(certs)
}

/// Reads a PEM file, what a user called `what`, into raw bytes.
fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::new(ErrorKind::Io, format!("reading {what} {}", path.display())).with_cause(e)
    })
}

/// The certificates of a PEM file; none at all is an error. Errors name the file, never
/// its content.
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem(path, what)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(format!("parsing {what} {}", path.display())).with_cause(e))?;
    if certs.is_empty() {
        return Err(Error::invalid(format!(
            "{what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's failures are said by the first two and the count, also without CA
    /// certificates at all, where they end the error.
    #[test]
    fn store_failures_are_the_first_two_and_the_count() {
        let said: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
        assert_eq!(store_failures(&said[..1]), "f0");
        assert_eq!(store_failures(&said[..2]), "f0; f1");
        assert_eq!(store_failures(&said), "f0; f1; and 3 more (5 in all)");
    }

    /// A directory's failures come in the order it lists its files, which is not the same
    /// from one filesystem, or one copy, to the next: the two named are the first by name,
    /// so that the same store is said in the same words every time.
    #[test]
    fn store_failures_named_are_the_first_by_name() {
        let said: Vec<String> = ["f3", "f0", "f2", "f1"].map(String::from).to_vec();
        assert_eq!(store_failures(&said), "f0; f1; and 2 more (4 in all)");
    }

    #[test]
    fn missing_ca_file_is_reported() {
        let e = client_config(&[PathBuf::from("/nonexistent/ca.pem")], false, None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"));
    }

    /// Keys as `openssl pkcs8 -topk8` and `openssl ec -aes128` encrypt them.
    #[test]
    fn an_encrypted_client_key_is_named_as_such() {
        const PKCS8: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAiFOJ4+Kz/V5gICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEHCzR3w2Ef+gCSBPugYDlqAEgZAT
VerssmQVsQ+2cdq1VT+Ki5IZk1p3t/cboU2FmhRjVm7GAATgZ+Wxm4tZsp5RnLBd
ZXnxhOSfMwJqQYEVb9WqHQZO9qPHmwL6nQhhtjkNyulK/ZbfKGhH0CIxymBDebBK
uqdTkzXW1Ho44cHXjkZ5+K/tikTTefHqcBK2G1oFBO8Pvj59t3WxRcmshQZJCjg=
-----END ENCRYPTED PRIVATE KEY-----
";
        const LEGACY: &str = "-----BEGIN EC PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-128-CBC,8FC2265488A007AB9E29C6866C7AF724

s3zvNbeU98p5i6CTjQ5OrjRLeKRCrRL2bzaFembj/FdROz6UCc9Uoz8kzf1KjRux
ZUIEhSEtzJ5jmf1hE6cYf7813wWW1GH8NsbHBXTMnWn6AwPaqp3wQw44fIVgutK3
vWABWvA+zQhwAn95XLyb0FoP96zRAc3kxpBGhYGQVhc=
-----END EC PRIVATE KEY-----
";
        let dir = tempfile::tempdir().unwrap();
        let (_, cert) = self_signed_client();
        let cert_path = dir.path().join("client.cert");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        for (name, pem) in [("pkcs8.key", PKCS8), ("legacy.key", LEGACY)] {
            let key_path = dir.path().join(name);
            std::fs::write(&key_path, pem).unwrap();
            let identity = ClientIdentity {
                cert: cert_path.clone(),
                key: key_path.clone(),
            };
            let e = client_config(&[], false, Some(&identity)).unwrap_err();
            let said = e.to_string();
            assert!(said.contains("is encrypted"), "{name}: {said}");
            assert!(said.contains(&key_path.display().to_string()), "{said}");
        }
    }

    /// A key and a self-signed client certificate for it.
    fn self_signed_client() -> (rcgen::KeyPair, rcgen::Certificate) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (key, cert)
    }

    #[test]
    fn a_key_of_another_certificate_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = self_signed_client();
        let other = rcgen::KeyPair::generate().unwrap();
        let identity = ClientIdentity {
            cert: dir.path().join("client.cert"),
            key: dir.path().join("other.key"),
        };
        std::fs::write(&identity.cert, cert.pem()).unwrap();
        std::fs::write(&identity.key, other.serialize_pem()).unwrap();
        let said = client_config(&[], false, Some(&identity))
            .unwrap_err()
            .to_string();
        assert!(
            said.contains(&format!(
                "the key {} is not the key of the client certificate {}",
                identity.key.display(),
                identity.cert.display()
            )),
            "{said}"
        );
        std::fs::write(&identity.key, key.serialize_pem()).unwrap();
        assert!(client_config(&[], false, Some(&identity)).is_ok());
    }

    /// An X.509 v1 client certificate, as `openssl x509 -req` issues one without
    /// `-extfile`, was refused before any request ("invalid peer certificate:
    /// UnsupportedCertVersion"): webpki parses only v3, to check the key against it. The
    /// server judges its client's certificate (nginx, OpenSSL and Go take v1), so it is
    /// presented as given, and a key not its own still refused.
    #[test]
    fn a_version_1_client_certificate_is_presented() {
        const V1_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBHTCBxQIULtum/lNRVzJT3JNBlVqYDJcnqQMwCgYIKoZIzj0EAwIwETEPMA0G
A1UEAwwGY2xpZW50MCAXDTI2MTIwNjEzNTMwOFoYDzIxMjYxMTEyMTM1MzA4WjAR
MQ8wDQYDVQQDDAZjbGllbnQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASnepfR
SNLEFuBPfqszzhwvMZC2Ll/3Zuq3zcUHuxVaFq6fL1cLmobeBy5ulCnKE/OUX1Zd
rDxEp/U2g3l78borMAoGCCqGSM49BAMCA0cAMEQCIGdij4s3HbyLj8Vnd9BG47pT
ClNrL10tzb1wciQuH4EhAiBrdnS7VbTxgNivxtBGI1wXgJjkxA+XWbiDAXolP/w7
TA==
-----END CERTIFICATE-----
";
        const V1_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFDofmuncF/6HxN86
lH56ywHSEdcoMr1hq+waGl7I3LuhRANCAASnepfRSNLEFuBPfqszzhwvMZC2Ll/3
Zuq3zcUHuxVaFq6fL1cLmobeBy5ulCnKE/OUX1ZdrDxEp/U2g3l78bor
-----END PRIVATE KEY-----
";
        let dir = tempfile::tempdir().unwrap();
        let identity = ClientIdentity {
            cert: dir.path().join("client.cert"),
            key: dir.path().join("client.key"),
        };
        std::fs::write(&identity.cert, V1_CERT).unwrap();
        std::fs::write(&identity.key, V1_KEY).unwrap();
        let config = client_config(&[], false, Some(&identity)).unwrap();
        let presented = config.client_auth_cert_resolver.resolve(&[], &[]).unwrap();
        assert_eq!(presented.cert.len(), 1);
        // Another key is still told as not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&identity.key, other.serialize_pem()).unwrap();
        let said = client_config(&[], false, Some(&identity))
            .unwrap_err()
            .to_string();
        assert!(
            said.contains("is not the key of the client certificate"),
            "{said}"
        );
    }

    /// A client certificate file whose PEM holds no X.509 certificate webpki can read (a
    /// damaged or hand-edited file: here a DER sequence of one integer) was told as "the
    /// key … is not the key of the client certificate", sending the user after the right
    /// key. It is named as the certificate that cannot be read, as before v1 certificates
    /// were taken.
    #[test]
    fn a_client_certificate_that_cannot_be_read_is_not_blamed_on_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let identity = ClientIdentity {
            cert: dir.path().join("client.cert"),
            key: dir.path().join("client.key"),
        };
        std::fs::write(
            &identity.cert,
            "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&identity.key, key.serialize_pem()).unwrap();
        let said = client_config(&[], false, Some(&identity))
            .unwrap_err()
            .to_string();
        assert!(!said.contains("is not the key of"), "{said}");
        assert!(
            said.contains(&format!("client certificate {}", identity.cert.display())),
            "{said}"
        );
        assert!(said.contains("BadEncoding"), "{said}");
    }
    #[test]
    fn a_file_without_certificates_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "not a certificate").unwrap();
        assert!(client_config(&[f.path().to_owned()], false, None).is_err());
        assert!(client_config(&[], true, None).is_ok());
    }
}
