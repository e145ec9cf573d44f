//! An in-process OCI distribution registry built to misbehave on request.
//!
//! [`FakeRegistry`] serves blobs and manifests from memory over plain HTTP/1.1 on
//! `127.0.0.1:<ephemeral>`, following the distribution spec closely enough for a real client
//! (`/v2/` ping, `GET`/`HEAD` of blobs with `Range`, manifests by tag or digest, OCI error JSON),
//! with no auth, HTTP Basic, or bearer tokens from its own `/token` endpoint. Tests then script
//! what goes wrong: [`Fault`]s queued per path (`push_fault`), a fault on every request to a path
//! (`set_fault_for_every`), or seeded random faults on blob downloads (`set_random_faults`).
//! Everything the server saw is readable while it runs: a [`RequestRecord`] per request, and
//! connection and token-request counters.
//!
//! [`Recorder`] is the "other host" of a cross-host redirect: it answers everything and records
//! every request's headers, so a test can check credentials did not follow the redirect.
//!
//! Each server runs on its own thread and tokio runtime (`server`), so it works the same from a
//! plain `#[test]` and from a `#[tokio::test]` with a paused clock. Dropping the handle stops it.
//!
//! Module map: `server` (thread, connections, raw wire access) · `routes` (the spec's endpoints)
//! · `faults` (fault book and how each fault is put on the wire) · `auth` (Basic, bearer, the
//! token endpoint) · `recorder`.

mod auth;
mod faults;
mod recorder;
mod routes;
mod server;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};

// Not every test binary that includes the support module names every type.
#[allow(unused_imports)]
pub use auth::{Auth, TokenField, TokenReply};
#[allow(unused_imports)]
pub use faults::{Fault, Gate, RandomFaultCounts, RandomFaults};
#[allow(unused_imports)]
pub use recorder::Recorder;

use server::ServerThread;

/// `sha256:<hex>` of `bytes`: the digest the fake gives content added to it.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// One request as the server saw it, recorded when the response was chosen.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// Request method.
    pub method: Method,
    /// Path exactly as sent (not percent-decoded).
    pub path: String,
    /// Query string without the `?`, if any.
    pub query: Option<String>,
    /// The full `Authorization` value, so a test can assert what was (not) sent.
    pub authorization: Option<String>,
    /// The `Range` header.
    pub range: Option<String>,
    /// The `Accept` header(s), joined with `, ` when sent more than once.
    pub accept: Option<String>,
    /// All request headers.
    pub headers: HeaderMap,
    /// Which connection carried the request: 1 for the first accepted, and so on.
    pub connection: u64,
    /// Status of the response (for a raw-wire fault, the status written on the wire).
    pub status: u16,
    /// The fault injected into this response, if any.
    pub fault: Option<Fault>,
}

impl RequestRecord {
    /// The `Authorization` scheme (`"Basic"`, `"Bearer"`), if the header was sent.
    pub fn auth_scheme(&self) -> Option<&str> {
        let value = self.authorization.as_deref()?;
        Some(value.split_once(' ').map_or(value, |(scheme, _)| scheme))
    }

    fn new(parts: &http::request::Parts, connection: u64) -> Self {
        let header = |name: http::header::HeaderName| {
            let values: Vec<&str> = parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or("<non-utf8>"))
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        RequestRecord {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            authorization: header(http::header::AUTHORIZATION),
            range: header(http::header::RANGE),
            accept: header(http::header::ACCEPT),
            headers: parts.headers.clone(),
            connection,
            status: 0,
            fault: None,
        }
    }
}

/// Stored content, keyed by repository: blobs are not shared across repositories.
#[derive(Default)]
struct Content {
    /// (repository, digest) → bytes.
    blobs: std::collections::HashMap<(String, String), Bytes>,
    /// (repository, tag or digest) → (media type, bytes).
    manifests: std::collections::HashMap<(String, String), (String, Bytes)>,
}

/// Everything the handler and the test share.
struct State {
    content: Mutex<Content>,
    faults: Mutex<faults::FaultBook>,
    auth: auth::AuthState,
    log: Mutex<Vec<RequestRecord>>,
    /// Off: `Range` is ignored and every blob GET answers 200 with the whole blob.
    range_support: bool,
    /// Where the API is served: `/v2`, or a registry behind a path prefix.
    api_root: String,
    /// Connections numbered up to this one are reset at their next request, unanswered.
    forgotten: std::sync::atomic::AtomicU64,
}

/// Configures a [`FakeRegistry`] before it starts.
#[derive(Debug)]
pub struct Builder {
    auth: Auth,
    range_support: bool,
    api_root: String,
    port: u16,
}

impl Builder {
    /// How clients must authenticate (default [`Auth::None`]).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Whether blob GETs honour `Range` (default true). Off, they answer 200 with the whole blob
    /// and no `Accept-Ranges`.
    pub fn range_support(mut self, on: bool) -> Self {
        self.range_support = on;
        self
    }

    /// Serves the API under `root` (for example `/cache/docker/v2`, or `/api` for a registry
    /// that does not follow the spec's `/v2`) instead of `/v2`; other paths get 404.
    pub fn api_root(mut self, root: &str) -> Self {
        self.api_root = root.trim_end_matches('/').to_string();
        self
    }

    /// Listens on `port` of 127.0.0.1 (default 0: any free one): a host that went away
    /// comes back at the address its clients know.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Binds `127.0.0.1:<port>` and starts serving.
    pub fn start(self) -> FakeRegistry {
        let listener = server::bind_local(self.port);
        let url = format!("http://{}", listener.local_addr().expect("local_addr"));
        let state = Arc::new(State {
            content: Mutex::default(),
            faults: Mutex::default(),
            auth: auth::AuthState::new(self.auth, format!("{url}/token")),
            log: Mutex::default(),
            range_support: self.range_support,
            api_root: self.api_root,
            forgotten: Default::default(),
        });
        let shared = state.clone();
        let handler: server::Handler =
            Arc::new(move |req, conn| routes::handle(&shared, req, conn));
        FakeRegistry {
            state,
            server: ServerThread::start("fake-registry", listener, handler),
        }
    }
}

/// A running in-process registry; stops when dropped. See the module docs.
pub struct FakeRegistry {
    state: Arc<State>,
    server: ServerThread,
}

impl FakeRegistry {
    /// A builder with no auth and range support on.
    pub fn builder() -> Builder {
        Builder {
            auth: Auth::None,
            range_support: true,
            api_root: "/v2".to_string(),
            port: 0,
        }
    }

    /// Starts a registry with the default configuration.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Starts a registry that asks for bearer tokens, each good for five minutes: longer
    /// than any test runs, so none expires unless a test revokes it.
    pub fn with_tokens() -> Self {
        Self::builder()
            .auth(Auth::bearer(std::time::Duration::from_secs(300)))
            .start()
    }

    /// Starts a registry holding one blob in `team/app`, `len` bytes made from `seed`:
    /// the registry, the blob's digest and its content.
    pub fn with_blob(seed: u64, len: usize) -> (Self, String, Vec<u8>) {
        let reg = Self::start();
        let data = super::cli::bytes(seed, len);
        let digest = reg.blob("team/app", &data);
        (reg, digest, data)
    }

    /// The listening address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// `127.0.0.1:PORT`, as used in image references.
    pub fn host(&self) -> String {
        self.addr().to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Stores a blob in `repo` and returns its digest.
    pub fn blob(&self, repo: &str, bytes: impl AsRef<[u8]>) -> String {
        let bytes = Bytes::copy_from_slice(bytes.as_ref());
        let digest = digest_of(&bytes);
        let key = (repo.to_string(), digest.clone());
        self.state.content.lock().unwrap().blobs.insert(key, bytes);
        digest
    }

    /// Stores a manifest in `repo` under both `tag` and its digest, served with `media_type` as
    /// its `Content-Type`; returns the digest.
    pub fn manifest(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        bytes: impl AsRef<[u8]>,
    ) -> String {
        let bytes = Bytes::copy_from_slice(bytes.as_ref());
        let digest = digest_of(&bytes);
        let entry = (media_type.to_string(), bytes);
        let mut content = self.state.content.lock().unwrap();
        for reference in [tag, digest.as_str()] {
            let key = (repo.to_string(), reference.to_string());
            content.manifests.insert(key, entry.clone());
        }
        digest
    }

    /// Stores an OCI image in `repo` under `tag`: a small config and a manifest listing
    /// `layers` (digests of blobs stored already), each declared `layer_size` bytes long.
    /// Returns the manifest.
    pub fn image(&self, repo: &str, tag: &str, layers: &[String], layer_size: usize) -> String {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let config_digest = self.blob(repo, config);
        let descriptors: Vec<String> = layers
            .iter()
            .map(|d| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{layer_size}}}"#
                )
            })
            .collect();
        let oci = "application/vnd.oci.image.manifest.v1+json";
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{oci}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            descriptors.join(",")
        );
        self.manifest(repo, tag, oci, &manifest);
        manifest
    }

    /// Queues `fault` for the next request whose path matches `key` (see [`Fault`] for matching
    /// and for which requests consume which faults). Faults queue FIFO per key; once a key's
    /// queue is empty its requests are served normally.
    pub fn push_fault(&self, key: &str, fault: Fault) {
        self.state.faults.lock().unwrap().push(key, fault);
    }

    /// Injects `fault` into every request matching `key` that has no queued fault, until
    /// [`clear_faults`](Self::clear_faults). Replaces an earlier persistent fault for `key`.
    pub fn set_fault_for_every(&self, key: &str, fault: Fault) {
        self.state.faults.lock().unwrap().set_every(key, fault);
    }

    /// Turns on seeded random faults for blob GETs (see [`RandomFaults`]); restarts the sequence
    /// and the counts.
    pub fn set_random_faults(&self, config: RandomFaults) {
        self.state.faults.lock().unwrap().set_random(config);
    }

    /// How many of each random fault have been injected.
    pub fn random_fault_counts(&self) -> RandomFaultCounts {
        self.state.faults.lock().unwrap().random_counts()
    }

    /// Forgets queued, persistent and random faults.
    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// Revokes every token issued so far: the next request with one gets a 401 challenge.
    pub fn invalidate_tokens(&self) {
        self.state.auth.invalidate();
    }

    /// Authenticates with `auth` from now on (the realm stays `<url>/token`): credentials
    /// rotated mid-run. Tokens already issued stay valid until they expire.
    pub fn set_auth(&self, auth: Auth) {
        self.state.auth.set_mode(auth);
    }

    /// Challenges with these `WWW-Authenticate` headers (`{realm}` and `{scope}` filled
    /// in), in this order, from now on: a registry's own spelling of its challenge.
    pub fn set_challenges(&self, headers: &[&str]) {
        self.state.auth.set_challenges(headers);
    }

    /// Answers wrong Basic credentials with `403 DENIED: Your authorization token has
    /// expired`, as ECR answers a password past its 12 hours, instead of a 401.
    pub fn forbid_stale_basic(&self) {
        self.state.auth.forbid_stale_basic();
    }

    /// Resets every connection open now at its next request, unanswered, as a load
    /// balancer or NAT that dropped them while they sat idle does (it says nothing until
    /// the client sends again), or a registry's host restarted meanwhile. Connections
    /// accepted later are served as usual.
    pub fn forget_connections(&self) {
        let accepted = self.server.stats().accepted.load(Ordering::SeqCst);
        self.state.forgotten.store(accepted, Ordering::SeqCst);
    }

    /// Every request so far, in the order responses were chosen.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.log.lock().unwrap().clone()
    }

    /// Number of requests so far, token requests included.
    pub fn request_count(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }

    /// Number of requests whose path matches `key`, under the same rule as faults.
    pub fn requests_for(&self, key: &str) -> usize {
        let log = self.state.log.lock().unwrap();
        log.iter()
            .filter(|r| faults::key_matches(&routes::percent_decode(&r.path), key))
            .count()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.server.stats().accepted.load(Ordering::SeqCst) as usize
    }

    /// TCP connections open right now.
    pub fn open_connections(&self) -> usize {
        self.server.stats().open.load(Ordering::SeqCst)
    }

    /// The largest number of TCP connections that were open at the same time.
    pub fn max_open_connections(&self) -> usize {
        self.server.stats().max_open.load(Ordering::SeqCst)
    }

    /// Requests to the `/token` endpoint so far (including refused ones).
    pub fn token_requests(&self) -> usize {
        self.state.auth.token_requests()
    }
}
