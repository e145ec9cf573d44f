//! HTTPS: certificates verified against a CA given with `--ca-file`, HTTP/2 chosen by ALPN,
//! no redirect from https down to plain http, and the way through an `HTTPS_PROXY`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::cli::{bytes, sha256, Dist};
use support::registry::{Registry, RegistryOptions};

/// What the TLS server saw.
#[derive(Default)]
struct Seen {
    versions: Mutex<Vec<hyper::Version>>,
    requests: AtomicUsize,
    /// TCP connections accepted, whether or not their handshake succeeds.
    connections: AtomicUsize,
}

struct TlsServer {
    port: u16,
    ca_pem: String,
    /// With [`start_mutual`]: a client certificate the server accepts, and its key (PEM).
    client: Option<(String, String)>,
    seen: Arc<Seen>,
    _listener: support::listen::Listener,
}

/// A self-signed CA named `name`.
impl TlsServer {
    /// Writes the server's CA (or its own certificate) where `dist` keeps its files, for
    /// `--ca-file`.
    fn ca_file(&self, dist: &Dist) -> std::path::PathBuf {
        let path = dist.config_dir().join("ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }
}

fn test_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

/// A CA, a certificate for `localhost` and `registry.test` (a name only the test proxy
/// resolves) signed by it, and a hyper server speaking HTTP/1.1
/// and HTTP/2 (by ALPN) that serves `blob` at any path, or redirects to `redirect`.
fn start(blob: Vec<u8>, redirect: Option<String>) -> TlsServer {
    start_with(blob, redirect, false, false)
}

/// The same server, demanding a client certificate from a CA of its own.
fn start_mutual(blob: Vec<u8>) -> TlsServer {
    start_with(blob, None, true, false)
}

/// The same server with a self-signed certificate that says it is a CA, as
/// `openssl req -x509` makes them (Docker's guide to a registry of one's own); `ca_pem`
/// is that certificate.
fn start_self_signed(blob: Vec<u8>) -> TlsServer {
    start_with(blob, None, false, true)
}

/// The server's side of TLS: an acceptor offering h2 and http/1.1, the CA to trust (PEM),
/// and with `mutual` a client certificate and key it accepts.
fn tls_acceptor(
    mutual: bool,
    self_signed: bool,
) -> (tokio_rustls::TlsAcceptor, String, Option<(String, String)>) {
    let (ca, ca_key) = test_ca("dist test CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "registry.test".into()]).unwrap();
    let (cert, ca_pem) = if self_signed {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        (cert, pem)
    } else {
        (params.signed_by(&key, &ca, &ca_key).unwrap(), ca.pem())
    };

    let provider = support::registry::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut client = None;
    let builder = if mutual {
        let (client_ca, client_ca_key) = test_ca("dist test client CA");
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["dist-client".into()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = params
            .signed_by(&client_key, &client_ca, &client_ca_key)
            .unwrap();
        client = Some((client_cert.pem(), client_key.serialize_pem()));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(client_ca.der().clone()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    (acceptor, ca_pem, client)
}

fn start_with(
    blob: Vec<u8>,
    redirect: Option<String>,
    mutual: bool,
    self_signed: bool,
) -> TlsServer {
    serve(mutual, self_signed, None, move |_| match &redirect {
        Some(loc) => Response::builder()
            .status(307)
            .header("location", loc.as_str())
            .body(Full::new(Bytes::new())),
        None => Response::builder()
            .header("content-length", blob.len())
            .body(Full::new(Bytes::from(blob.clone()))),
    })
}

type Answer = http::Result<Response<Full<Bytes>>>;

/// Serves HTTPS (see [`tls_acceptor`]) with `respond`, counting what it sees. With
/// `goaway_after`, each connection is closed gracefully after that many requests: a
/// GOAWAY under HTTP/2, as nginx sends after `keepalive_requests` (1000 by default) and
/// CDNs send at will.
fn serve(
    mutual: bool,
    self_signed: bool,
    goaway_after: Option<usize>,
    respond: impl Fn(&Request<hyper::body::Incoming>) -> Answer + Send + Sync + 'static,
) -> TlsServer {
    let (acceptor, ca_pem, client) = tls_acceptor(mutual, self_signed);
    serve_with(acceptor, ca_pem, client, goaway_after, respond)
}

/// [`serve`] with an acceptor of the caller's.
fn serve_with(
    acceptor: tokio_rustls::TlsAcceptor,
    ca_pem: String,
    client: Option<(String, String)>,
    goaway_after: Option<usize>,
    respond: impl Fn(&Request<hyper::body::Incoming>) -> Answer + Send + Sync + 'static,
) -> TlsServer {
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    let respond = Arc::new(respond);
    let listener = support::listen::Listener::start(move |tcp| {
        let (acceptor, seen, respond) = (acceptor.clone(), seen2.clone(), respond.clone());
        async move {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let served = Arc::new(AtomicUsize::new(0));
            let enough = Arc::new(tokio::sync::Notify::new());
            let (served2, enough2) = (served.clone(), enough.clone());
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                seen.versions.lock().unwrap().push(req.version());
                seen.requests.fetch_add(1, Ordering::SeqCst);
                if Some(served2.fetch_add(1, Ordering::SeqCst) + 1) == goaway_after {
                    enough2.notify_one();
                }
                let resp = respond(&req);
                async move { resp }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = enough.notified() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    });
    TlsServer {
        port: listener.port(),
        ca_pem,
        client,
        seen,
        _listener: listener,
    }
}

/// An untrusted certificate at the check before the batch is status 2 for the worker and
/// `dist pull`: retrying cannot cure it, where a registry down for the moment there is 75
/// (tests/outage.rs).
#[test]
fn an_untrusted_certificate_at_the_check_exits_2() {
    let server = start(bytes(12, 100), None);
    let locator = format!("https://localhost:{}/team/app", server.port);
    let reference = format!("{locator}:v1");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let runs: [(Vec<&str>, &[u8]); 2] = [
        (vec!["fetch", &locator, "-"], b"latest\n"),
        (
            vec!["pull", &reference, "-o", layout.to_str().unwrap()],
            b"",
        ),
    ];
    for (args, input) in runs {
        let args = [&args[..], &["--retries", "0"]].concat();
        let err = Dist::new().fails(2, &args, input);
        assert!(err.contains("cannot use"), "{args:?}: {err}");
        assert!(err.contains("not trusted"), "{args:?}: {err}");
        assert!(!err.contains("a later run may succeed"), "{args:?}: {err}");
    }
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn verified_with_ca_file_over_http2() {
    let data = bytes(11, 100_000);
    let digest = sha256(&data);
    let server = start(data.clone(), None);
    let dist = Dist::new();
    let ca = server.ca_file(&dist);
    let locator = format!("https://localhost:{}/team/app", server.port);

    // Unknown issuer: refused.
    let out = dist.run(&["fetch", "--retries", "0", &locator, &digest], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("issuer"),
        "{err}"
    );
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 0);

    // With the CA: fetched, verified, over HTTP/2.
    let got = dist.ok(&[
        "fetch",
        "--ca-file",
        ca.to_str().unwrap(),
        &locator,
        &digest,
    ]);
    assert_eq!(got, data);
    assert_eq!(
        *server.seen.versions.lock().unwrap(),
        vec![hyper::Version::HTTP_2]
    );

    // Other windows: a fixed one smaller than the blob (the transfer needs window updates
    // to finish), and the one hyper sizes from the bandwidth-delay product, from 64 KiB.
    for (i, window) in ["65535", "adaptive"].into_iter().enumerate() {
        let got = dist.ok(&[
            "fetch",
            "--ca-file",
            ca.to_str().unwrap(),
            "--http2-window",
            window,
            &locator,
            &digest,
        ]);
        assert_eq!(got, data, "{window}");
        assert_eq!(
            *server.seen.versions.lock().unwrap(),
            vec![hyper::Version::HTTP_2; i + 2],
            "{window}"
        );
    }
}

#[test]
fn https_to_http_redirect_is_refused() {
    let plain = support::fake::Recorder::serving(b"downgraded");
    let server = start(Vec::new(), Some(format!("{}/elsewhere", plain.url())));
    let dist = Dist::new();
    let ca = server.ca_file(&dist);
    let locator = format!("https://localhost:{}/team/app", server.port);
    let out = dist.run(
        &[
            "fetch",
            "--ca-file",
            ca.to_str().unwrap(),
            &locator,
            &sha256(b"downgraded"),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing redirect from https"));
    assert_eq!(plain.request_count(), 0);
}

/// `HTTPS_PROXY` with credentials: the fetch goes through a `CONNECT` tunnel with TLS end to
/// end; the proxy's credentials travel in the `CONNECT` only and never reach a log line.
/// Wrong credentials: a clear error naming the proxy and its answer, no retries, and
/// nothing reaches the registry.
#[test]
fn through_an_https_proxy_with_credentials() {
    let data = bytes(21, 50_000);
    let digest = sha256(&data);
    let server = start(data.clone(), None);
    // alice:s3cret
    let proxy = support::proxy::ConnectProxy::requiring("Basic YWxpY2U6czNjcmV0");
    let locator = format!("https://registry.test:{}/team/app", server.port);
    let run = |credentials: &str| {
        let mut dist = Dist::new();
        let ca = server.ca_file(&dist);
        let proxy_url = format!("http://{credentials}@127.0.0.1:{}", proxy.port());
        dist.env("HTTPS_PROXY", &proxy_url).env("RUST_LOG", "trace");
        let ca = ca.to_str().unwrap().to_string();
        dist.run(&["fetch", "--ca-file", &ca, &locator, &digest], b"")
    };

    let out = run("alice:s3cret");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(out.stdout, data);
    let tunnels = proxy.tunnels();
    assert!(!tunnels.is_empty());
    for t in &tunnels {
        assert_eq!(t.target, format!("registry.test:{}", server.port));
        assert_eq!(t.authorization.as_deref(), Some("Basic YWxpY2U6czNjcmV0"));
    }
    assert!(server.seen.requests.load(Ordering::SeqCst) > 0);
    assert!(
        !log.contains("s3cret") && !log.contains("YWxpY2U6czNjcmV0"),
        "the proxy's credentials leaked into the log"
    );

    let served = server.seen.requests.load(Ordering::SeqCst);
    let asked = proxy.tunnels().len();
    let out = run("alice:wrong");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the proxy 127.0.0.1:{} answered 407",
            proxy.port()
        )),
        "{err}"
    );
    assert!(!err.contains("wrong"), "{err}");
    // A refusal is not retried (the default is 5 retries per request).
    assert!(proxy.tunnels().len() - asked <= 2, "{:?}", proxy.tunnels());
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), served);
}

/// Through a SOCKS5 proxy TLS runs end to end too: the proxy is asked for the registry's
/// name and port, and the certificate is checked against that name.
#[test]
fn through_a_socks5_proxy() {
    let data = bytes(22, 40_000);
    let digest = sha256(&data);
    let server = start(data.clone(), None);
    let socks = support::socks::SocksProxy::requiring("alice", "s3cret");
    let mut dist = Dist::new();
    let ca = server.ca_file(&dist);
    let proxy_url = format!("socks5h://alice:s3cret@127.0.0.1:{}", socks.port());
    dist.env("HTTPS_PROXY", &proxy_url).env("RUST_LOG", "trace");
    let locator = format!("https://registry.test:{}/team/app", server.port);
    let out = dist.run(
        &[
            "fetch",
            "--ca-file",
            ca.to_str().unwrap(),
            &locator,
            &digest,
        ],
        b"",
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(out.stdout, data);
    assert!(
        !log.contains("s3cret"),
        "the proxy's password leaked into the log"
    );
    let connects = socks.connects();
    assert!(!connects.is_empty());
    assert!(connects
        .iter()
        .all(|c| c.target == format!("registry.test:{}", server.port)));
}

/// A CA kept where podman and Docker keep a registry's CAs (`certs.d/<host:port>/*.crt`)
/// is trusted for that registry without `--ca-file`, and not when another registry is asked.
#[test]
fn a_registry_ca_from_certs_d() {
    let data = bytes(41, 30_000);
    let digest = sha256(&data);
    let server = start(data.clone(), None);
    let dist = Dist::new();
    let host = format!("localhost:{}", server.port);
    let folder = dist.certs_d(&host);
    std::fs::write(folder.join("ca.crt"), &server.ca_pem).unwrap();
    let got = dist.ok(&["fetch", &format!("https://{host}/team/app"), &digest]);
    assert_eq!(got, data);

    // The same server under another name: the folder is not its, so its CA is unknown.
    let mut dist = dist;
    dist.env("RUST_LOG", "dist=debug");
    let other = format!("https://127.0.0.1:{}/team/app", server.port);
    let out = dist.run(&["fetch", &other, &digest], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // An unknown issuer, not a name mismatch (which the CA, had it been trusted for this
    // registry too, would have led to).
    assert!(
        err.contains("not trusted: issued by \"dist test CA\", which is not trusted here"),
        "{err}"
    );
    // A certificate does not change by itself: no retry.
    assert!(!err.contains("retrying"), "{err}");
}

/// A `*.crt` in certs.d that holds no PEM certificate (a DER copy, an empty file) is passed
/// over, as Docker and podman pass it over (Go's `AppendCertsFromPEM` ignores it): the
/// registry they reach must not become unusable to dist because of it.
#[test]
fn a_certs_d_file_without_a_pem_certificate_is_passed_over() {
    let data = bytes(42, 30_000);
    let digest = sha256(&data);
    let server = start(data.clone(), None);
    let dist = Dist::new();
    let host = format!("localhost:{}", server.port);
    let folder = dist.certs_d(&host);
    std::fs::write(folder.join("a-der.crt"), [0x30, 0x82, 0x01, 0x0a]).unwrap();
    std::fs::write(folder.join("b-empty.crt"), "").unwrap();
    std::fs::write(folder.join("ca.crt"), &server.ca_pem).unwrap();
    let out = dist.run(
        &["fetch", &format!("https://{host}/team/app"), &digest],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, data);
    assert!(
        err.contains("a-der.crt") && err.contains("b-empty.crt"),
        "{err}"
    );
}

/// A registry that demands a client certificate: refused without one, served with
/// `--cert`/`--key`, and with the pair kept in its `certs.d` folder (`*.cert` + `*.key`).
#[test]
fn a_client_certificate_for_mutual_tls() {
    let data = bytes(51, 20_000);
    let digest = sha256(&data);
    let server = start_mutual(data.clone());
    let (cert_pem, key_pem) = server.client.clone().unwrap();
    let dist = Dist::new();
    let host = format!("localhost:{}", server.port);
    let locator = format!("https://{host}/team/app");
    let ca = server.ca_file(&dist);
    let ca = ca.to_str().unwrap();

    // Without one the server ends the connection. (With TLS 1.3 that happens after the
    // client's side of the handshake.)
    let out = dist.run(
        &[
            "fetch",
            "--retries",
            "0",
            "--ca-file",
            ca,
            &locator,
            &digest,
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 0);

    let cert = dist.config_dir().join("me.pem");
    let key = dist.config_dir().join("me.key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let with_pair = [
        "fetch",
        "--ca-file",
        ca,
        "--cert",
        c,
        "--key",
        k,
        &locator,
        &digest,
    ];
    assert_eq!(dist.ok(&with_pair), data);

    let folder = dist.certs_d(&host);
    std::fs::write(folder.join("ca.crt"), &server.ca_pem).unwrap();
    std::fs::write(folder.join("client.cert"), &cert_pem).unwrap();
    std::fs::write(folder.join("client.key"), &key_pem).unwrap();
    assert_eq!(dist.ok(&["fetch", &locator, &digest]), data);

    // A key that is not a key: named, and its content never printed.
    std::fs::write(&key, "not a key").unwrap();
    let out = dist.run(&with_pair, b"");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("me.key.pem"), "{err}");
    assert!(!err.contains("not a key"), "{err}");
}

/// A Go registry (`docker-registry` with `clientcas`) that is shown no client certificate,
/// or one its CA did not issue, ends the connection with a TLS alert after the handshake;
/// over HTTP/2, which it picks by ALPN, the alert reaches the connection, not the request.
/// dist says it is the certificate, and at once: no request sent again, no retry. With the
/// certificate its CA issued, the fetch succeeds, over HTTP/2.
#[test]
fn a_go_registry_refusing_the_client_certificate_over_http2_is_not_retried() {
    let reg = Registry::start_with(RegistryOptions {
        mutual_tls: true,
        ..RegistryOptions::default()
    });
    let data = bytes(71, 20_000);
    let digest = reg.push_blob("team/app", &data);
    let tls = reg.tls().unwrap();
    let mut dist = Dist::new();
    dist.env("RUST_LOG", "dist=debug");
    let locator = format!("{}/team/app", reg.url());
    let ca = tls.ca.to_str().unwrap();
    // The default retries (5) apply: a refusal taken for a lost connection would show.
    let refused = |identity: &[&str]| -> String {
        let mut args = vec!["fetch", "--ca-file", ca];
        args.extend_from_slice(identity);
        args.extend([locator.as_str(), digest.as_str()]);
        let out = dist.run(&args, b"");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        // Every attempt after the first is logged, as a resend or as a retry.
        assert!(!err.contains("sending again"), "{err}");
        assert!(!err.contains("retrying"), "{err}");
        err.lines()
            .filter(|l| l.starts_with("dist: "))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Go's server answers a missing certificate as it answers a bad one (BadCertificate):
    // with none shown, that is a demand for one, and where to give it.
    let said = refused(&[]);
    assert!(
        said.contains("the server requires a client certificate (--cert and --key, or certs.d)"),
        "{said}"
    );

    let (other_ca, other_ca_key) = test_ca("a CA the registry does not know");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["dist-client".into()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let wrong = params.signed_by(&key, &other_ca, &other_ca_key).unwrap();
    let wrong_cert = dist.config_dir().join("wrong.pem");
    let wrong_key = dist.config_dir().join("wrong.key.pem");
    std::fs::write(&wrong_cert, wrong.pem()).unwrap();
    std::fs::write(&wrong_key, key.serialize_pem()).unwrap();
    let said = refused(&[
        "--cert",
        wrong_cert.to_str().unwrap(),
        "--key",
        wrong_key.to_str().unwrap(),
    ]);
    assert!(
        said.contains(&format!(
            "the server refused our client certificate {}: BadCertificate",
            wrong_cert.display()
        )),
        "{said}"
    );

    let out = dist.run(
        &[
            "fetch",
            "--ca-file",
            ca,
            "--cert",
            tls.client_cert.to_str().unwrap(),
            "--key",
            tls.client_key.to_str().unwrap(),
            &locator,
            &digest,
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout, data);
    assert!(err.contains("version=HTTP/2.0"), "{err}");
}

/// A server that demands a client certificate, the content it serves, and a `--hosts-dir`
/// with an empty folder for a registry (named from the server's port).
struct MutualWithHostsDir {
    data: Vec<u8>,
    digest: String,
    server: TlsServer,
    cert_pem: String,
    key_pem: String,
    dist: Dist,
    hosts: std::path::PathBuf,
    folder: std::path::PathBuf,
}

fn mutual_with_hosts_dir(seed: u64, registry: impl FnOnce(u16) -> String) -> MutualWithHostsDir {
    let data = bytes(seed, 20_000);
    let digest = sha256(&data);
    let server = start_mutual(data.clone());
    let (cert_pem, key_pem) = server.client.clone().unwrap();
    let dist = Dist::new();
    let hosts = dist.config_dir().join("hosts");
    let folder = hosts.join(registry(server.port));
    std::fs::create_dir_all(&folder).unwrap();
    MutualWithHostsDir {
        data,
        digest,
        server,
        cert_pem,
        key_pem,
        dist,
        hosts,
        folder,
    }
}

/// A mirror that demands a client certificate, given in `hosts.toml` as containerd writes
/// it: one PEM holding both certificate and key. Without the `client` key the mirror
/// refuses, and the registry behind it (nothing listens there) cannot help.
#[test]
fn a_mirror_s_client_certificate_from_hosts_toml() {
    let m = mutual_with_hosts_dir(52, |_| "localhost:1".into());
    std::fs::write(m.folder.join("mirror-ca.pem"), &m.server.ca_pem).unwrap();
    std::fs::write(
        m.folder.join("me.pem"),
        format!("{}{}", m.cert_pem, m.key_pem),
    )
    .unwrap();
    let mirror = format!(
        "[host.\"https://localhost:{}\"]\n  ca = \"mirror-ca.pem\"\n",
        m.server.port
    );
    let args = [
        "fetch",
        "--retries",
        "0",
        "--hosts-dir",
        m.hosts.to_str().unwrap(),
        "localhost:1/team/app",
        &m.digest,
    ];

    std::fs::write(m.folder.join("hosts.toml"), &mirror).unwrap();
    let out = m.dist.run(&args, b"");
    // The last word is the registry's refused connection: for the moment, as in a batch.
    assert_eq!(out.status.code(), Some(75));
    assert_eq!(m.server.seen.requests.load(Ordering::SeqCst), 0);

    let with_client = format!("{mirror}  client = \"me.pem\"\n");
    std::fs::write(m.folder.join("hosts.toml"), with_client).unwrap();
    assert_eq!(m.dist.ok(&args), m.data);
    assert_eq!(m.server.seen.requests.load(Ordering::SeqCst), 1);
}

/// `--hosts-dir` as containerd reads it: a registry's folder without a `hosts.toml` holds
/// Docker-style certificate files for the registry itself.
#[test]
fn certificate_files_in_a_hosts_dir_folder_without_hosts_toml() {
    let m = mutual_with_hosts_dir(53, |port| format!("localhost:{port}"));
    let host = format!("localhost:{}", m.server.port);
    std::fs::write(m.folder.join("ca.crt"), &m.server.ca_pem).unwrap();
    std::fs::write(m.folder.join("client.cert"), &m.cert_pem).unwrap();
    std::fs::write(m.folder.join("client.key"), &m.key_pem).unwrap();
    let locator = format!("https://{host}/team/app");
    let hosts_dir = m.hosts.to_str().unwrap();
    assert_eq!(
        m.dist
            .ok(&["fetch", "--hosts-dir", hosts_dir, &locator, &m.digest]),
        m.data
    );
    // Without the folder's files the server is not trusted.
    let out = m
        .dist
        .run(&["fetch", "--retries", "0", &locator, &m.digest], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));
}

/// A registry without TLS at an address that is not loopback is the usual case: dist
/// speaks HTTPS and the server answers in plain HTTP. That fails at once (it will not
/// change by retrying) and says what to do.
#[test]
fn a_plain_http_server_spoken_to_in_tls_is_named_as_such() {
    let reg = support::fake::FakeRegistry::start();
    let digest = reg.blob("team/app", b"plain");
    let dist = Dist::new();
    let locator = format!("https://{}/team/app", reg.host());
    let out = dist.run(&["fetch", &locator, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    // A registry it cannot use at all, as the worker's check says too: status 2.
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("does not speak TLS") && err.contains("--plain-http"),
        "{err}"
    );
    assert_eq!(reg.connections(), 1, "not retried");
}

/// A system without CA certificates (a `FROM scratch` image, `SSL_CERT_FILE` naming a
/// file that is not there) and no `--ca-file`: nothing can verify any server. That is
/// said, with what to do, and not retried; it read as a broken connection ("no usable
/// trust store: no root anchors"), tried again and again, though no try could succeed.
#[test]
fn no_ca_certificates_at_all_are_named_as_such_and_not_retried() {
    let server = start(Vec::new(), None);
    let mut dist = Dist::new();
    let missing = dist.config_dir().join("no-such-bundle.pem");
    dist.env("SSL_CERT_FILE", missing.to_str().unwrap())
        .env("SSL_CERT_DIR", "");
    let locator = format!("https://localhost:{}/team/app", server.port);
    let digest = sha256(b"any");
    let err = dist.fails(2, &["fetch", "--retries", "2", &locator, &digest], b"");
    assert!(
        err.contains("no CA certificates") && err.contains("--ca-file"),
        "{err}"
    );
    assert!(
        err.contains("no-such-bundle.pem"),
        "the store's own failure: {err}"
    );
    assert_eq!(
        server.seen.connections.load(Ordering::SeqCst),
        1,
        "not retried"
    );
}

/// `SSL_CERT_FILE` naming a file that is not there, beside an `SSL_CERT_DIR` that holds
/// CAs: the file's failure was dropped without a word, so a mistyped path read as a
/// server "not trusted here", the CA meant never loaded. It is warned about, naming the
/// file, and the store's other CAs serve.
#[test]
fn an_unreadable_ssl_cert_file_is_warned_about() {
    let data = bytes(12, 1000);
    let digest = sha256(&data);
    let server = start(data.clone(), None);
    let mut dist = Dist::new();
    let dir = dist.config_dir().join("certs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &server.ca_pem).unwrap();
    let missing = dist.config_dir().join("no-such-bundle.pem");
    dist.env("SSL_CERT_FILE", missing.to_str().unwrap())
        .env("SSL_CERT_DIR", dir.to_str().unwrap());
    let locator = format!("https://localhost:{}/team/app", server.port);
    let out = dist.run(&["fetch", &locator, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout == data, "{err}");
    assert!(err.contains("warning"), "{err}");
    assert!(err.contains("no-such-bundle.pem"), "{err}");
}

/// A certificate directory (`SSL_CERT_DIR`) with 200 files that cannot be read (links that
/// lead nowhere but to themselves) beside one that serves: one warning line, naming the
/// first of them and the count. Every failure was joined into it, a line of 200.
#[test]
fn many_unreadable_files_in_the_trust_store_make_one_short_warning() {
    let data = bytes(13, 1000);
    let digest = sha256(&data);
    let server = start(data.clone(), None);
    let mut dist = Dist::new();
    let dir = dist.config_dir().join("certs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &server.ca_pem).unwrap();
    for i in 0..200 {
        let link = dir.join(format!("loop{i}.pem"));
        std::os::unix::fs::symlink(&link, &link).unwrap();
    }
    dist.env("SSL_CERT_FILE", dir.join("ca.pem").to_str().unwrap())
        .env("SSL_CERT_DIR", dir.to_str().unwrap());
    let locator = format!("https://localhost:{}/team/app", server.port);
    let out = dist.run(&["fetch", &locator, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout == data, "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    let named = warnings[0].matches("loop").count();
    assert!((1..=3).contains(&named), "{err}");
    assert!(warnings[0].contains("200 in all"), "{err}");
}

/// A server whose certificate an intermediate CA issued, configured with its certificate
/// alone (`cert.pem` where `fullchain.pem` was meant): browsers fetch the missing
/// intermediate, rustls (like Go and curl) does not, so trusting the root is not enough.
/// The refusal names the issuer to trust and says that the chain may be what is wrong;
/// trusting that intermediate, or the server sending it, serves.
#[test]
fn a_certificate_sent_without_its_intermediate_is_named_as_such() {
    let blob = bytes(78, 3000);
    let digest = sha256(&blob);
    let (root, root_key) = test_ca("dist test root CA");
    let intermediate_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dist test issuing CA 7");
    let intermediate = params
        .signed_by(&intermediate_key, &root, &root_key)
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &intermediate, &intermediate_key)
        .unwrap();
    let server = |chain: Vec<rustls::pki_types::CertificateDer<'static>>| {
        let config = rustls::ServerConfig::builder_with_provider(support::registry::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                chain,
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let blob = blob.clone();
        serve_with(acceptor, root.pem(), None, None, move |_| {
            Response::builder()
                .header("content-length", blob.len())
                .body(Full::new(Bytes::from(blob.clone())))
        })
    };
    let dist = Dist::new();
    let root_file = dist.config_dir().join("root.pem");
    std::fs::write(&root_file, root.pem()).unwrap();
    let root_file = root_file.to_str().unwrap();

    let alone = server(vec![leaf.der().clone()]);
    let locator = format!("https://localhost:{}/team/app", alone.port);
    let err = dist.fails(
        2,
        &[
            "--retries",
            "0",
            "--ca-file",
            root_file,
            "fetch",
            &locator,
            &digest,
        ],
        b"",
    );
    assert!(
        err.contains(
            "issued by \"dist test issuing CA 7\", which is not trusted here, and sent \
             without intermediate certificates (UnknownIssuer); trust \"dist test issuing CA 7\" \
             with --ca-file"
        ) && err.contains("full chain"),
        "{err}"
    );
    assert!(!err.contains("OtherError"), "no rustls Debug: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // The intermediate trusted, as the message says.
    let intermediate_file = dist.config_dir().join("intermediate.pem");
    std::fs::write(&intermediate_file, intermediate.pem()).unwrap();
    let intermediate_file = intermediate_file.to_str().unwrap();
    assert_eq!(
        dist.ok(&["--ca-file", intermediate_file, "fetch", &locator, &digest]),
        blob
    );

    // The full chain sent: the root is enough. A root not trusted is named, and nothing is
    // said of a missing intermediate.
    let full = server(vec![leaf.der().clone(), intermediate.der().clone()]);
    let locator = format!("https://localhost:{}/team/app", full.port);
    assert_eq!(
        dist.ok(&["--ca-file", root_file, "fetch", &locator, &digest]),
        blob
    );
    let err = dist.fails(2, &["--retries", "0", "fetch", &locator, &digest], b"");
    assert!(
        err.contains("the certificates the server sent lead up to \"dist test root CA\"")
            && !err.contains("intermediate"),
        "{err}"
    );
}

/// A server that does not serve the name it was asked for by SNI ends the handshake with
/// the `unrecognized_name` alert (nginx's `ssl_reject_handshake`, a load balancer that
/// routes by name): a mistyped host, or one it is not set up for, which no retry changes.
/// It was retried as a broken connection, and said as "cannot connect".
#[test]
fn a_host_name_the_tls_server_does_not_serve_is_named_as_such_and_not_retried() {
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = support::listen::Listener::start(move |mut tcp| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut hello = [0u8; 512];
            if tcp.read(&mut hello).await.unwrap_or(0) > 0 {
                // A fatal alert (level 2), unrecognized_name (112), in a TLS 1.2 record.
                let _ = tcp
                    .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70])
                    .await;
            }
        }
    });
    let dist = Dist::new();
    let locator = format!("https://localhost:{}/team/app", listener.port());
    let digest = sha256(b"never sent");
    let err = dist.fails(2, &["fetch", "--retries", "2", &locator, &digest], b"");
    assert!(
        err.contains("does not serve this host name") && err.contains("UnrecognisedName"),
        "{err}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1, "not retried");
}

/// A server that takes the connection and never answers the TLS greeting (hung, or a port
/// that is not TLS and waits for a line) is given `--connect-timeout` for the handshake, as
/// for the connection, not the idle timeout meant for a response; the failure says it was
/// the handshake, and is the registry's for the moment (status 75, as a hung registry's in
/// a batch), not the object's.
#[test]
fn a_tls_handshake_that_stalls_ends_at_the_connect_timeout() {
    let listener = support::listen::Listener::start(|tcp| async move {
        let _held = tcp;
        std::future::pending::<()>().await
    });
    let dist = Dist::new();
    let locator = format!("https://localhost:{}/team/app", listener.port());
    let digest = sha256(b"never sent");
    let err = dist.fails(
        75,
        &[
            "fetch",
            "--connect-timeout",
            "1s",
            "--idle-timeout",
            "20s",
            "--retries",
            "0",
            &locator,
            &digest,
        ],
        b"",
    );
    assert!(
        err.contains("TLS handshake did not finish within 1s (--connect-timeout)"),
        "{err}"
    );
}

/// The other way round: a TLS registry asked in plain HTTP (`--plain-http`, or a loopback
/// address, plain HTTP by default) answers, as Go's server does, 400 "Client sent an HTTP
/// request to an HTTPS server". That is the registry unusable as named (status 2, as for
/// the other direction), not a failed object, and the message says what to write instead.
#[test]
fn a_tls_registry_asked_in_plain_http_is_named_as_such() {
    let reg = Registry::start_with(RegistryOptions {
        mutual_tls: true,
        ..RegistryOptions::default()
    });
    let digest = sha256(b"not asked for");
    let dist = Dist::new();
    let locator = format!("{}/team/app", reg.host());
    for args in [vec!["fetch"], vec!["fetch", "--plain-http"]] {
        let mut args = args;
        args.extend([locator.as_str(), digest.as_str()]);
        let err = dist.fails(2, &args, b"");
        assert!(
            err.contains("the server speaks TLS, not plain HTTP")
                && err.contains("Client sent an HTTP request to an HTTPS server")
                && err.contains("write https:// before the locator"),
            "{err}"
        );
    }
}

/// A proxy or load balancer that offers h2 by ALPN in front of a server that speaks only
/// HTTP/1.1: the server is picked HTTP/2 and answers the client's preface with an HTTP/1.1
/// 400. That is said in words, once: every connection would end the same way, and it is
/// the proxy's setup, not the object's fault: exit status 2, as for an untrusted
/// certificate, where it was 1.
#[test]
fn a_server_that_chose_http2_and_answers_in_http1_is_named_as_such() {
    let (acceptor, ca_pem, _) = tls_acceptor(false, false);
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = support::listen::Listener::start(move |tcp| {
        let (acceptor, counted) = (acceptor.clone(), counted.clone());
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            counted.fetch_add(1, Ordering::SeqCst);
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let mut preface = [0u8; 24];
            let _ = tls.read_exact(&mut preface).await;
            let _ = tls
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            let _ = tls.shutdown().await;
        }
    });
    let dist = Dist::new();
    let ca = dist.config_dir().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let locator = format!("https://localhost:{}/team/app", listener.port());
    let digest = sha256(b"never served");
    let out = dist.run(
        &[
            "fetch",
            "--ca-file",
            ca.to_str().unwrap(),
            &locator,
            &digest,
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the server chose HTTP/2 by ALPN but answered in HTTP/1.1"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "not retried: {err}");
}

/// A server with no TLS version in common with dist (TLS 1.0 or 1.1 only) answers the
/// greeting with a `protocol_version` alert, one with no cipher suite in common (CBC only,
/// which Go's clients still offer) with `handshake_failure`, as OpenSSL does. Either is
/// said in words, and at once: every attempt would meet it again. Reached by IP address,
/// dist sends no server name (TLS has none for an address), which a server that picks its
/// certificate by name refuses the same way: that is said too.
#[test]
fn a_server_with_no_tls_version_or_cipher_suite_in_common_is_named_as_such() {
    for (alert, host, said) in [
        (70u8, "localhost", "the server refused every TLS version dist speaks (ProtocolVersion)"),
        (40, "localhost", "the server refused the TLS handshake (HandshakeFailure): it requires a client certificate (--cert and --key, or certs.d), or it has no cipher suite in common with dist"),
        (40, "127.0.0.1", "or, reached by IP address, dist sent it no server name (SNI), which a server that picks its certificate by name needs: use the host name it serves"),
    ] {
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let listener = support::listen::Listener::start(move |mut tcp| {
            let counted = counted.clone();
            async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                counted.fetch_add(1, Ordering::SeqCst);
                let mut hello = [0u8; 512];
                let _ = tcp.read(&mut hello).await;
                // A fatal alert record, as a TLS 1.2 server writes it.
                let _ = tcp.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, alert]).await;
                let _ = tcp.shutdown().await;
            }
        });
        let dist = Dist::new();
        let locator = format!("https://{host}:{}/team/app", listener.port());
        let digest = sha256(b"never served");
        let err = dist.fails(2, &["fetch", &locator, &digest], b"");
        assert!(err.contains(said), "{err}");
        assert_eq!(connections.load(Ordering::SeqCst), 1, "not retried: {err}");
    }
}

/// A registry whose own self-signed certificate says it is a CA: refused until the user
/// trusts that certificate, then accepted, for the names it carries only.
#[test]
fn a_trusted_self_signed_ca_certificate_serves_as_the_registrys_own() {
    let blob = bytes(77, 5000);
    let digest = sha256(&blob);
    let server = start_self_signed(blob.clone());
    let dist = Dist::new();
    let locator = format!("https://localhost:{}/team/app", server.port);

    // Untrusted, it is named for what it is: self-signed, not trusted, and what to trust.
    // It read "a CA certificate served as the server's own", as if the server were
    // misconfigured, though it is what Docker's guide makes.
    let err = dist.fails(2, &["--retries", "0", "fetch", &locator, &digest], b"");
    assert!(
        err.contains("the server's certificate is not trusted: it is self-signed (")
            && err.contains(
                "and not trusted here (CaUsedAsEndEntity: it says it is a CA); trust it with \
                 --ca-file"
            ),
        "{err}"
    );

    let ca = server.ca_file(&dist);
    let ca = ca.to_str().unwrap();
    assert_eq!(
        dist.ok(&["--ca-file", ca, "fetch", &locator, &digest]),
        blob
    );

    // The certificate names localhost, not 127.0.0.1.
    let by_ip = format!("https://127.0.0.1:{}/team/app", server.port);
    let err = dist.fails(
        2,
        &["--retries", "0", "--ca-file", ca, "fetch", &by_ip, &digest],
        b"",
    );
    assert!(
        err.contains(
            "not trusted: issued for localhost, registry.test, not for 127.0.0.1, which a \
             certificate must name as an IP address (an IP SAN); or use a name it was issued \
             for (NotValidForName)"
        ),
        "{err}"
    );
    assert!(
        !err.contains("invalid peer certificate"),
        "rustls's words: {err}"
    );
}

/// The same certificate trusted through `SSL_CERT_FILE`, as crane and Go's other clients are
/// told to trust it, serves too: Go accepts a certificate of its trust pool shown by the
/// server itself, wherever the pool came from. dist refused it (`CaUsedAsEndEntity`), and
/// said to trust it with `--ca-file`, which the user had in effect done.
#[test]
fn a_self_signed_ca_certificate_trusted_by_ssl_cert_file_serves_as_the_registrys_own() {
    let blob = bytes(79, 5000);
    let digest = sha256(&blob);
    let server = start_self_signed(blob.clone());
    let mut dist = Dist::new();
    let ca = server.ca_file(&dist);
    dist.env("SSL_CERT_FILE", ca.to_str().unwrap())
        .env("SSL_CERT_DIR", "");
    let locator = format!("https://localhost:{}/team/app", server.port);
    assert_eq!(
        dist.ok(&["--retries", "0", "fetch", &locator, &digest]),
        blob
    );

    // Still for the names it carries only.
    let by_ip = format!("https://127.0.0.1:{}/team/app", server.port);
    let err = dist.fails(2, &["--retries", "0", "fetch", &by_ip, &digest], b"");
    assert!(err.contains("not for 127.0.0.1"), "{err}");
}

/// A mirror whose certificate is not trusted will not be trusted on the next request
/// either: after the first refusal it is skipped for the rest of the run, as an
/// unreachable one is, instead of costing every object a failed handshake. It is said
/// once, at the default verbosity: bypassed in silence, the mirror went unused unnoticed.
#[test]
fn a_mirror_with_an_untrusted_certificate_is_tried_once() {
    let mirror = start(Vec::new(), None);
    let reg = support::fake::FakeRegistry::start();
    let blobs: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            let data = bytes(90 + i, 2000);
            (reg.blob("team/app", &data), data)
        })
        .collect();
    let input: String = blobs.iter().map(|(d, _)| format!("{d}\n")).collect();
    let dist = Dist::new();
    let mirror_url = format!("https://localhost:{}", mirror.port);
    let out = dist.run(
        &[
            "--mirror",
            &mirror_url,
            "fetch",
            &format!("{}/team/app", reg.host()),
            "-",
            "-j",
            "1",
        ],
        input.as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let frames = support::cli::parse_frames(&out.stdout);
    assert_eq!(frames.len(), blobs.len());
    assert_eq!(mirror.seen.connections.load(Ordering::SeqCst), 1);
    let said = format!("dist: warning: the mirror {mirror_url}/v2/ has a certificate that is not trusted; objects are fetched from the registry instead");
    assert_eq!(err.matches(&said).count(), 1, "{err}");
}

/// The registry's `skip_verify` is the registry's: a mirror behind it, with a certificate
/// nobody trusts, is still refused (and the registry serves), whether the mirror comes
/// from the hosts file or from `--mirror`.
#[test]
fn the_registry_s_skip_verify_does_not_cover_its_mirrors() {
    let data = bytes(95, 20_000);
    let digest = sha256(&data);
    let registry = start(data.clone(), None);
    let mirror = start(data.clone(), None);
    let dist = Dist::new();
    let hosts = dist.config_dir().join("hosts");
    let folder = hosts.join(format!("localhost:{}", registry.port));
    std::fs::create_dir_all(&folder).unwrap();
    let mirror_url = format!("https://localhost:{}", mirror.port);
    let toml =
        format!("skip_verify = true\n[host.\"{mirror_url}\"]\n  capabilities = [\"pull\"]\n");
    std::fs::write(folder.join("hosts.toml"), toml).unwrap();
    let locator = format!("https://localhost:{}/team/app", registry.port);
    let hosts_dir = hosts.to_str().unwrap();
    let got = dist.ok(&["--hosts-dir", hosts_dir, "fetch", &locator, &digest]);
    assert_eq!(got, data);
    std::fs::write(folder.join("hosts.toml"), "skip_verify = true\n").unwrap();
    let got = dist.ok(&[
        "--hosts-dir",
        hosts_dir,
        "--mirror",
        &mirror_url,
        "fetch",
        &locator,
        &digest,
    ]);
    assert_eq!(got, data);
    assert_eq!(
        mirror.seen.requests.load(Ordering::SeqCst),
        0,
        "the mirror was refused"
    );
    assert!(registry.seen.requests.load(Ordering::SeqCst) >= 2);
}

/// A mirror's CA kept in its own certs.d folder is trusted for it, as Docker and podman
/// read certs.d per endpoint; the registry's folder is not the mirror's.
#[test]
fn a_mirror_s_ca_from_its_own_certs_d() {
    let data = bytes(96, 20_000);
    let digest = sha256(&data);
    let mirror = start(data.clone(), None);
    let dist = Dist::new();
    let mirror_host = format!("localhost:{}", mirror.port);
    std::fs::write(dist.certs_d(&mirror_host).join("ca.crt"), &mirror.ca_pem).unwrap();
    // Nothing listens where the registry is said to be: only the mirror can serve.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let got = dist.ok(&[
        "--mirror",
        &format!("https://{mirror_host}"),
        "--retries",
        "0",
        "fetch",
        &format!("127.0.0.1:{port}/team/app"),
        &digest,
    ]);
    assert_eq!(got, data);
    assert!(mirror.seen.requests.load(Ordering::SeqCst) >= 1);
}

/// An HTTPS server serving `blobs` by the digest that ends the path, and closing each
/// connection gracefully after `per_connection` requests.
fn start_goaway(
    blobs: Arc<std::collections::HashMap<String, Vec<u8>>>,
    per_connection: usize,
) -> TlsServer {
    serve(false, false, Some(per_connection), move |req| {
        let digest = req.uri().path().rsplit('/').next().unwrap_or_default();
        match blobs.get(digest) {
            Some(blob) => Response::builder()
                .header("content-length", blob.len())
                .body(Full::new(Bytes::from(blob.clone()))),
            None => Response::builder()
                .status(404)
                .body(Full::new(Bytes::new())),
        }
    })
}

/// A server that sends GOAWAY every few requests: streams opened as it closes were never
/// answered and go again at once on a new connection, and a body the closing connection
/// cuts short (h2 fails every stream of a connection whose socket broke) resumes, so
/// every blob of the batch arrives, over HTTP/2. The lost requests show in some runs only;
/// `resilience.rs` pins their resend down with a connection that closes unanswered.
#[test]
fn goaway_mid_batch_loses_nothing() {
    let blobs: std::collections::HashMap<String, Vec<u8>> = (0..300)
        .map(|i| {
            let data = bytes(900 + i, 2000 + (i as usize * 37) % 5000);
            (sha256(&data), data)
        })
        .collect();
    let blobs = Arc::new(blobs);
    let server = start_goaway(blobs.clone(), 4);
    let dist = Dist::new();
    let ca = server.ca_file(&dist);
    let locator = format!("https://localhost:{}/team/app", server.port);
    let input: String = blobs.keys().map(|d| format!("{d}\n")).collect();
    let out_dir = tempfile::tempdir().unwrap();
    let out = dist.run(
        &[
            "fetch",
            "--ca-file",
            ca.to_str().unwrap(),
            &locator,
            "-",
            "-o",
            out_dir.path().to_str().unwrap(),
            "-j",
            "16",
        ],
        input.as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for (digest, data) in blobs.iter() {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let stored = std::fs::read(out_dir.path().join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(&stored, data);
    }
    assert!(
        server.seen.connections.load(Ordering::SeqCst) >= 300 / 4,
        "the server closed its connections as it should"
    );
    assert!(server
        .seen
        .versions
        .lock()
        .unwrap()
        .iter()
        .all(|v| *v == hyper::Version::HTTP_2));
}

/// nginx with `ssl_verify_client on` takes a handshake without a client certificate and
/// answers every request with a `400` page ("No required SSL certificate was sent", or
/// "The SSL certificate error" for one it refused) where Go's server sends an alert: it
/// read as the registry's answer for the object (status 1), not as a registry that wants a
/// client certificate (status 2, `--cert`/`--key` named), as the alert reads.
#[test]
fn nginx_s_page_for_a_missing_client_certificate_names_it() {
    for (page, said) in [
        (
            "No required SSL certificate was sent",
            "the server requires a client certificate (--cert and --key, or certs.d)",
        ),
        (
            "The SSL certificate error",
            "the server refused the client certificate",
        ),
    ] {
        let server = nginx_page(page);
        let dist = Dist::new();
        let ca = server.ca_file(&dist);
        let locator = format!("https://localhost:{}/team/app", server.port);
        let err = dist.fails(
            2,
            &["fetch", "--ca-file", ca.to_str().unwrap(), &locator, "v1"],
            b"",
        );
        assert!(err.contains(said), "{err}");
        assert!(err.contains(page), "{err}");
    }
}

/// The stderr of a fetch from a registry that redirects the blob's request to `store`, both
/// trusted by `--ca-file`, which must fail with status 2.
fn fetch_redirected_to(store: &TlsServer) -> String {
    let target = format!("https://localhost:{}/blob", store.port);
    let registry = start(Vec::new(), Some(target));
    let dist = Dist::new();
    let ca = dist.config_dir().join("cas.pem");
    std::fs::write(&ca, format!("{}{}", registry.ca_pem, store.ca_pem)).unwrap();
    let locator = format!("https://localhost:{}/team/app", registry.port);
    let digest = sha256(b"blob");
    dist.fails(
        2,
        &[
            "fetch",
            "--ca-file",
            ca.to_str().unwrap(),
            &locator,
            &digest,
        ],
        b"",
    )
}

/// A server answering every request as nginx with `ssl_verify_client on` does, with its
/// `400` page saying `page`.
fn nginx_page(page: &str) -> TlsServer {
    let body = format!(
        "<html>\r\n<head><title>400 {page}</title></head>\r\n<body>\r\n<center><h1>400 \
         Bad Request</h1></center>\r\n<center>{page}</center>\r\n<hr><center>nginx</center>\
         \r\n</body>\r\n</html>\r\n"
    );
    serve(false, false, None, move |_| {
        Response::builder()
            .status(400)
            .header("content-type", "text/html")
            .body(Full::new(Bytes::from(body.clone())))
    })
}

/// nginx's page for a client certificate on a redirect's target (the blob store or CDN
/// the registry sends a blob's request to) is said to be that host's, with where the
/// certificate it is shown comes from (the host that redirected there), dist reading no
/// certs.d folder for it. It was said as the registry's, `(--cert and --key, or
/// certs.d)`, which sent the user to configure a registry that had taken the connection
/// without one.
#[test]
fn nginx_s_certificate_page_on_a_redirect_s_target_names_that_host() {
    for (page, said) in [
        (
            "No required SSL certificate was sent",
            "the server requires a client certificate",
        ),
        (
            "The SSL certificate error",
            "the server refused the client certificate",
        ),
    ] {
        let store = nginx_page(page);
        let err = fetch_redirected_to(&store);
        assert!(err.contains(said), "{err}");
        assert!(
            err.contains("the redirect's target") && err.contains("no certs.d folder"),
            "{err}"
        );
        assert!(err.contains(page), "{err}");
        assert!(
            err.contains(&format!("localhost:{}/blob", store.port)),
            "{err}"
        );
    }
}

/// A redirect's target (a blob store, a CDN) that wants a client certificate by TLS, as
/// Go's server asks for one, is said to be the redirect's target, shown the certificate
/// of the host that redirected there: `the server requires a client certificate (--cert
/// and --key, or certs.d)` with the target's URL read as the registry's, whose
/// connection had been taken without one, and sent the user to a certs.d folder for the
/// target that dist never reads.
#[test]
fn a_redirect_s_target_asking_for_a_client_certificate_by_tls_names_that_host() {
    let store = start_mutual(b"blob".to_vec());
    let err = fetch_redirected_to(&store);
    assert!(err.contains("requires a client certificate"), "{err}");
    assert!(
        err.contains(&format!("localhost:{}/blob", store.port)),
        "{err}"
    );
    assert!(
        err.contains("the redirect's target") && err.contains("no certs.d folder"),
        "{err}"
    );
}

/// A registry's own `400` whose words merely quote nginx's page (a pull-through cache
/// relaying its upstream's refusal in its JSON error) was told as the registry wanting a
/// client certificate of dist (`--cert` and `--key`, status 2). Only nginx's page itself,
/// titled so, is read as that.
#[test]
fn a_registry_error_quoting_nginx_s_certificate_page_is_the_registry_s_answer() {
    let body = r#"{"errors":[{"code":"UNKNOWN","message":"upstream answered 400: No required SSL certificate was sent"}]}"#;
    let server = serve(false, false, None, move |_| {
        Response::builder()
            .status(400)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
    });
    let dist = Dist::new();
    let ca = server.ca_file(&dist);
    let locator = format!("https://localhost:{}/team/app", server.port);
    let err = dist.fails(
        1,
        &["fetch", "--ca-file", ca.to_str().unwrap(), &locator, "v1"],
        b"",
    );
    assert!(err.contains("upstream answered 400"), "{err}");
    assert!(!err.contains("--cert and --key"), "{err}");
}
