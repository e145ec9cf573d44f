//! A real `docker-registry` (CNCF distribution 2.8) process per test, in one of three
//! auth modes, optionally over TLS that demands a client certificate, with helpers to seed
//! it with blobs and manifests.
//!
//! Everything here is synchronous: async work runs on private threads and runtimes, so
//! the harness works from plain `#[test]`s and from inside `#[tokio::test]`s alike.

use std::fs::{self, File};
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::token::{TokenOptions, TokenReply, TokenServer, PASSWORD, USER};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Another process can grab the port between our probe and the registry's bind.
const START_ATTEMPTS: usize = 3;
/// A response header naming the registry process that answered: a registry that failed
/// to bind its port must not pass for ready because another test's registry holds it.
const INSTANCE_HEADER: &str = "X-Dist-Test-Instance";

/// How the registry authenticates clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No `auth` section: anyone may push and pull.
    Anonymous,
    /// `auth: htpasswd` with [`Registry::user`] / [`Registry::password`].
    Basic,
    /// `auth: token` backed by an in-process [`TokenServer`].
    Token,
}

/// Everything [`Registry::start_with`] can vary.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Authentication mode.
    pub mode: Mode,
    /// Lifetime of issued tokens (Token mode only).
    pub token_ttl_secs: u64,
    /// Repositories starting with this prefix need credentials even to pull (Token mode only).
    pub private_prefix: Option<String>,
    /// The issuer's refresh token, accepted by the `refresh_token` grant (Token mode only).
    pub refresh_token: Option<String>,
    /// The issuer refuses a refresh token with OAuth2's `400 invalid_grant` (Token mode only).
    pub invalid_grant_400: bool,
    /// Which fields carry the token in the issuer's replies (Token mode only).
    pub token_reply: TokenReply,
    /// The issuer leaves `expires_in` out of its replies (Token mode only).
    pub omit_expires_in: bool,
    /// The issuer rotates its refresh token at each refresh grant (Token mode only).
    pub rotate_refresh_token: bool,
    /// Serve HTTPS (HTTP/2 offered by ALPN, as Go's server does) with a certificate for
    /// 127.0.0.1 from a CA of its own, and demand a client certificate from a second CA
    /// (`http.tls.clientcas`). See [`Registry::tls`].
    pub mutual_tls: bool,
}

impl RegistryOptions {
    /// Defaults for `mode`: 300 s tokens, no private repositories.
    pub fn new(mode: Mode) -> RegistryOptions {
        RegistryOptions {
            mode,
            token_ttl_secs: 300,
            private_prefix: None,
            refresh_token: None,
            invalid_grant_400: false,
            token_reply: TokenReply::Both,
            omit_expires_in: false,
            rotate_refresh_token: false,
            mutual_tls: false,
        }
    }
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions::new(Mode::Anonymous)
    }
}

/// A running registry. Dropping it kills the process, stops the token server and removes
/// the storage and config directory.
pub struct Registry {
    child: Child,
    addr: SocketAddr,
    /// What this registry answers in [`INSTANCE_HEADER`].
    instance: String,
    mode: Mode,
    log_path: PathBuf,
    tls: Option<MutualTls>,
    // Declared before `dir` so the issuer stops before its files disappear.
    token: Option<TokenServer>,
    dir: TempDir,
}

impl Registry {
    /// Starts a registry on `127.0.0.1:<free port>` with fresh storage and default options.
    pub fn start(mode: Mode) -> Registry {
        Registry::start_with(RegistryOptions::new(mode))
    }

    /// Starts a registry with the given options; panics (with the registry log) if it does
    /// not answer `GET /v2/` within 10 s.
    pub fn start_with(opts: RegistryOptions) -> Registry {
        assert!(
            Path::new(REGISTRY_BINARY).exists(),
            "{REGISTRY_BINARY} not found: run `apt-get install -y docker-registry`"
        );
        let dir = tempfile::Builder::new()
            .prefix("dist-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let token = (opts.mode == Mode::Token).then(|| {
            TokenServer::start(TokenOptions {
                ttl_secs: opts.token_ttl_secs,
                private_prefix: opts.private_prefix.clone(),
                refresh_token: opts.refresh_token.clone(),
                invalid_grant_400: opts.invalid_grant_400,
                reply: opts.token_reply,
                omit_expires_in: opts.omit_expires_in,
                rotate_refresh_token: opts.rotate_refresh_token,
                ..TokenOptions::default()
            })
        });
        let auth = auth_section(opts.mode, dir.path(), token.as_ref());
        let tls = opts.mutual_tls.then(|| MutualTls::generate(dir.path()));
        let log_path = dir.path().join("registry.log");

        for attempt in 1..=START_ATTEMPTS {
            let addr = free_port();
            let name = dir.path().file_name().unwrap().to_string_lossy();
            let instance = format!("{}-{name}-{attempt}", std::process::id());
            let config_path = dir.path().join("config.yml");
            fs::write(
                &config_path,
                config_yaml(dir.path(), addr, &auth, tls.as_ref(), &instance),
            )
            .expect("write registry config");
            let log = File::create(&log_path).expect("create registry log");
            let mut command = Command::new(REGISTRY_BINARY);
            command
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log);
            // REGISTRY_* variables override the config file; keep the test hermetic.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("REGISTRY_") {
                    command.env_remove(key);
                }
            }
            let mut child = command.spawn().expect("spawn docker-registry");
            match wait_ready(&mut child, addr, &instance, tls.as_ref()) {
                Ok(()) => {
                    return Registry {
                        child,
                        addr,
                        instance,
                        mode: opts.mode,
                        log_path,
                        tls,
                        token,
                        dir,
                    }
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    if attempt < START_ATTEMPTS && log.contains("address already in use") {
                        continue;
                    }
                    panic!("docker-registry on {addr} {why}; log:\n{log}");
                }
            }
        }
        unreachable!("every start attempt either returns or panics")
    }

    /// Whether the server on this registry's port is this registry (a selftest of the
    /// readiness check).
    pub fn answers_as_itself(&self) -> bool {
        probe(self.addr, &self.instance, self.tls.as_ref())
    }

    /// Whether the server on this registry's port answers as the registry named
    /// `instance`.
    pub fn answers_as(&self, instance: &str) -> bool {
        probe(self.addr, instance, self.tls.as_ref())
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`, or `https://` with [`RegistryOptions::mutual_tls`].
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The files of a registry started with [`RegistryOptions::mutual_tls`].
    pub fn tls(&self) -> Option<&MutualTls> {
        self.tls.as_ref()
    }

    /// The authentication mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// User name accepted in Basic and Token modes.
    pub fn user(&self) -> &str {
        USER
    }

    /// Password accepted in Basic and Token modes.
    pub fn password(&self) -> &str {
        PASSWORD
    }

    /// The token issuer (Token mode only).
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// Number of requests the token issuer has served; 0 outside Token mode.
    ///
    /// `push_blob`, `push_blobs` and `push_manifest` fetch a token each call, so they count
    /// too: call [`Registry::reset_token_requests`] after seeding and before the code under
    /// test.
    pub fn token_requests(&self) -> usize {
        self.token.as_ref().map_or(0, TokenServer::requests)
    }

    /// Sets the token request counter back to zero.
    pub fn reset_token_requests(&self) {
        if let Some(token) = &self.token {
            token.reset_requests();
        }
    }

    /// The registry's stdout and stderr so far, for debugging failures.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Uploads `data` in one monolithic `POST` + `PUT` and returns its `sha256:<hex>` digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        self.push_blobs(repo, &[data]).remove(0)
    }

    /// [`Registry::push_blob`] for each of `blobs`: their digests, in their order. One
    /// client and one authorization serve them all, a few uploads at a time: a runtime, a
    /// connection and a token for each made seeding a thousand blobs take half a minute.
    pub fn push_blobs(&self, repo: &str, blobs: &[&[u8]]) -> Vec<String> {
        use futures::StreamExt as _;
        run_async(async {
            let client = http_client(self.tls.as_ref());
            let auth = self.authorization(&client, repo).await;
            let uploads: Vec<_> = blobs
                .iter()
                .map(|data| self.upload(&client, auth.as_ref(), repo, data))
                .collect();
            futures::stream::iter(uploads).buffered(8).collect().await
        })
    }

    /// One monolithic upload of `data` to `repo`, with `auth`: its digest.
    async fn upload(
        &self,
        client: &HarnessClient,
        auth: Option<&HeaderValue>,
        repo: &str,
        data: &[u8],
    ) -> String {
        let digest = sha256_digest(data);
        let data = Bytes::copy_from_slice(data);
        let start = format!("{}/v2/{repo}/blobs/uploads/", self.url());
        let (status, headers, body) =
            send(client, Method::POST, &start, auth, None, Bytes::new()).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "start upload to {repo}: {}\n{}",
            String::from_utf8_lossy(&body),
            self.log()
        );
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("upload Location header");
        // 2.8 answers with an absolute URL, but relative ones are legal too.
        let mut upload = if location.starts_with('/') {
            format!("{}{location}", self.url())
        } else {
            location.to_string()
        };
        upload.push(if upload.contains('?') { '&' } else { '?' });
        upload.push_str(&format!("digest={}", digest.replace(':', "%3A")));
        let (status, headers, body) = send(
            client,
            Method::PUT,
            &upload,
            auth,
            Some("application/octet-stream"),
            data,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "finish upload to {repo}: {}\n{}",
            String::from_utf8_lossy(&body),
            self.log()
        );
        assert_eq!(
            header_str(&headers, "docker-content-digest"),
            Some(digest.as_str())
        );
        digest
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the given media type; returns the
    /// manifest's digest. Referenced blobs must have been pushed first.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let digest = sha256_digest(body);
        let body = Bytes::copy_from_slice(body);
        run_async(async {
            let client = http_client(self.tls.as_ref());
            let auth = self.authorization(&client, repo).await;
            let url = format!("{}/v2/{repo}/manifests/{reference}", self.url());
            let (status, headers, reply) = send(
                &client,
                Method::PUT,
                &url,
                auth.as_ref(),
                Some(media_type),
                body,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::CREATED,
                "put manifest {repo}:{reference}: {}\n{}",
                String::from_utf8_lossy(&reply),
                self.log()
            );
            assert_eq!(
                header_str(&headers, "docker-content-digest"),
                Some(digest.as_str())
            );
        });
        digest
    }

    /// The `Authorization` value that lets the harness push to `repo`.
    async fn authorization(&self, client: &HarnessClient, repo: &str) -> Option<HeaderValue> {
        let basic = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
        let basic = HeaderValue::from_str(&basic).expect("basic header");
        match self.mode {
            Mode::Anonymous => None,
            Mode::Basic => Some(basic),
            Mode::Token => {
                let token = self.token.as_ref().expect("token server in Token mode");
                let url = format!(
                    "{}?service={}&scope=repository:{repo}:pull,push",
                    token.url(),
                    token.options().service
                );
                let (status, _, body) =
                    send(client, Method::GET, &url, Some(&basic), None, Bytes::new()).await;
                assert_eq!(status, StatusCode::OK, "push token for {repo}");
                let reply: serde_json::Value =
                    serde_json::from_slice(&body).expect("token reply is JSON");
                let jwt = reply["token"]
                    .as_str()
                    .or_else(|| reply["access_token"].as_str())
                    .expect("token in reply");
                Some(HeaderValue::from_str(&format!("Bearer {jwt}")).expect("bearer header"))
            }
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Kill by PID via the Child handle we own; the process may already have exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn auth_section(mode: Mode, dir: &Path, token: Option<&TokenServer>) -> String {
    match mode {
        Mode::Anonymous => String::new(),
        Mode::Basic => {
            // Cost 4 is bcrypt's minimum and keeps both hashing and verification fast.
            let hash = bcrypt::hash_with_result(PASSWORD, 4)
                .expect("bcrypt hash")
                .format_for_version(bcrypt::Version::TwoY);
            let path = dir.join("htpasswd");
            fs::write(&path, format!("{USER}:{hash}\n")).expect("write htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: dist-test\n    path: {}\n",
                yaml_str(&path)
            )
        }
        Mode::Token => {
            let token = token.expect("token server in Token mode");
            let bundle = dir.join("issuer.pem");
            fs::write(&bundle, token.cert_pem()).expect("write rootcertbundle");
            let opts = token.options();
            format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                yaml_str(token.url()),
                yaml_str(&opts.service),
                yaml_str(&opts.issuer),
                yaml_str(&bundle)
            )
        }
    }
}

fn config_yaml(
    dir: &Path,
    addr: SocketAddr,
    auth: &str,
    tls: Option<&MutualTls>,
    instance: &str,
) -> String {
    let tls = tls.map_or_else(String::new, |tls| {
        format!(
            "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
            yaml_str(&tls.server_cert),
            yaml_str(&tls.server_key),
            yaml_str(&tls.client_ca),
        )
    });
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {addr}
  secret: dist-test-http-secret
  headers:
    {INSTANCE_HEADER}: [{instance}]
{tls}health:
  storagedriver:
    enabled: false
{auth}",
        root = yaml_str(dir.join("storage")),
        instance = yaml_str(instance),
    )
}

/// A JSON string literal is a valid YAML double-quoted scalar, so this escapes any path.
fn yaml_str(value: impl AsRef<Path>) -> String {
    let value = value.as_ref().to_str().expect("UTF-8 path");
    serde_json::to_string(value).expect("JSON string")
}

/// Binds port 0 and releases it; the small race with other processes is handled by
/// retrying the start.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
}

/// Polls `GET /v2/` with a bare blocking HTTP/1.1 request until this registry (the one
/// named `instance`) answers.
fn wait_ready(
    child: &mut Child,
    addr: SocketAddr,
    instance: &str,
    tls: Option<&MutualTls>,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("poll docker-registry") {
            return Err(format!("exited early with {status}"));
        }
        if probe(addr, instance, tls) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {READY_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn probe(addr: SocketAddr, instance: &str, tls: Option<&MutualTls>) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    // Connection: close, so the answer ends; a registry's answer to /v2/ is short.
    let mut answer = Vec::new();
    match tls {
        None => {
            if stream.write_all(request.as_bytes()).is_err() {
                return false;
            }
            let _ = stream.take(64 << 10).read_to_end(&mut answer);
        }
        Some(tls) => {
            // No ALPN offered: Go's server speaks HTTP/1.1 then.
            let name = rustls::pki_types::ServerName::from(addr.ip());
            let Ok(conn) = rustls::ClientConnection::new(tls.client_config(), name) else {
                return false;
            };
            let mut stream = rustls::StreamOwned::new(conn, stream);
            if stream.write_all(request.as_bytes()).is_err() {
                return false;
            }
            let _ = stream.take(64 << 10).read_to_end(&mut answer);
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    answer.starts_with("HTTP/1.")
        && answer
            .lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("{INSTANCE_HEADER}: {instance}")))
}

/// The harness's own client: plain HTTP, or HTTPS showing the client certificate.
type HarnessClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

fn http_client(tls: Option<&MutualTls>) -> HarnessClient {
    let config = match tls {
        Some(tls) => (*tls.client_config()).clone(),
        None => rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// The ring crypto provider dist uses, for the tests' own TLS servers and clients. rustls
/// 0.23.48 deprecates it (no post-quantum key exchange), as src/transport/tls.rs says;
/// `allow`, not `expect`, so that the locked 0.23.46 builds too.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a registry that demands a client certificate, as PEM files in its
/// directory: its CA, its own certificate for 127.0.0.1, the CA it trusts for clients and
/// a client certificate that CA issued.
pub struct MutualTls {
    /// The CA that issued the registry's certificate: what a client trusts.
    pub ca: PathBuf,
    /// A client certificate the registry accepts (`--cert`).
    pub client_cert: PathBuf,
    /// Its key (`--key`).
    pub client_key: PathBuf,
    /// The CA the registry trusts for clients (`clientcas`).
    pub client_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

impl MutualTls {
    fn generate(dir: &Path) -> MutualTls {
        let (ca, ca_key) = test_ca("dist test registry CA");
        let (client_ca, client_ca_key) = test_ca("dist test client CA");
        let server_key = rcgen::KeyPair::generate().expect("server key");
        let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("server certificate params")
            .signed_by(&server_key, &ca, &ca_key)
            .expect("sign server certificate");
        let client_key = rcgen::KeyPair::generate().expect("client key");
        let mut params =
            rcgen::CertificateParams::new(vec!["dist-client".to_string()]).expect("client params");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client = params
            .signed_by(&client_key, &client_ca, &client_ca_key)
            .expect("sign client certificate");

        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            fs::write(&path, pem).expect("write TLS file");
            path
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("registry CA");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(client_key.serialize_der().into());
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![client.der().clone()], key)
            .expect("client certificate");
        MutualTls {
            ca: write("ca.pem", ca.pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            client_ca: write("client-ca.pem", client_ca.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            client: Arc::new(config),
        }
    }

    /// A TLS client configuration that trusts the registry and shows the client certificate.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client.clone()
    }
}

/// A self-signed CA named `name`.
fn test_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    (params.self_signed(&key).expect("self-sign CA"), key)
}

async fn send(
    client: &HarnessClient,
    method: Method,
    url: &str,
    auth: Option<&HeaderValue>,
    content_type: Option<&str>,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::builder().method(method.clone()).uri(url);
    if let Some(auth) = auth {
        request = request.header(AUTHORIZATION, auth);
    }
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    let request = request
        .body(Full::new(body))
        .unwrap_or_else(|e| panic!("build {method} {url}: {e}"));
    let response = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("read body of {method} {url}: {e}"))
        .to_bytes();
    (status, headers, body)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Runs `future` to completion on a fresh thread with its own runtime: a runtime can't be
/// entered from inside another, and callers may well be inside a `#[tokio::test]`.
fn run_async<T: Send>(future: impl Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("harness runtime")
                    .block_on(future)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
