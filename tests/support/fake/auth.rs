//! The fake's auth modes: none, HTTP Basic, and bearer tokens from its own `/token` endpoint.
//!
//! Bearer tokens are opaque random strings remembered server-side with their scopes and an
//! expiry by the wall clock, so a client holding one past its TTL gets a fresh 401 challenge and
//! must fetch another, as with a real token service. A token grants pull on the repositories
//! named in the scopes it was requested for, and nothing else.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Method, Response, StatusCode};

use super::routes::{percent_decode, Prepared, Route};
use super::server::Body;

/// How a [`FakeRegistry`](super::FakeRegistry) wants clients to authenticate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may pull.
    #[default]
    None,
    /// HTTP Basic with these credentials; otherwise 401 `Basic realm="fake"`.
    Basic { user: String, pass: String },
    /// Bearer tokens from the registry's own `<url>/token`; otherwise 401 `Bearer
    /// realm="<url>/token",service="fake-registry",scope="repository:<name>:pull"` (no scope
    /// on `/v2/`).
    Bearer {
        /// How long a token stays valid, by the server's wall clock.
        ttl: Duration,
        /// The shape of the token endpoint's JSON.
        reply: TokenReply,
        /// Basic credentials the token endpoint demands; `None` issues tokens to anyone.
        credentials: Option<(String, String)>,
    },
}

impl Auth {
    /// HTTP Basic with `user` and `pass`.
    pub fn basic(user: &str, pass: &str) -> Self {
        Auth::Basic {
            user: user.to_string(),
            pass: pass.to_string(),
        }
    }

    /// Bearer tokens valid for `ttl`, issued anonymously in the default reply shape.
    pub fn bearer(ttl: Duration) -> Self {
        Auth::Bearer {
            ttl,
            reply: TokenReply::default(),
            credentials: None,
        }
    }

    /// Bearer tokens valid for 300 s, issued only to `user` with `pass` (anonymous callers
    /// are refused).
    pub fn bearer_for(user: &str, pass: &str) -> Self {
        Auth::Bearer {
            ttl: Duration::from_secs(300),
            reply: TokenReply::default(),
            credentials: Some((user.to_string(), pass.to_string())),
        }
    }
}

/// Which JSON field(s) carry the token in the token endpoint's reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenField {
    /// `token` (Docker's field).
    #[default]
    Token,
    /// `access_token` (OAuth2's field).
    AccessToken,
    /// Both, with the same value.
    Both,
}

/// The shape of the token endpoint's JSON reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenReply {
    pub field: TokenField,
    /// Whether to send `expires_in` (the TTL in whole seconds, rounded up). Without it a client
    /// should assume 60 s, and will meet a 401 when the TTL is shorter.
    pub expires_in: bool,
}

impl Default for TokenReply {
    /// `{"token": .., "expires_in": ..}`.
    fn default() -> Self {
        TokenReply {
            field: TokenField::Token,
            expires_in: true,
        }
    }
}

/// What one token grants, and until when.
struct Grant {
    scopes: Vec<String>,
    expires: Instant,
}

/// The auth mode plus the tokens issued under it.
pub struct AuthState {
    /// Changed mid-run by [`AuthState::set_mode`]: a password rotated, say.
    mode: Mutex<Auth>,
    /// `<url>/token`, the realm bearer challenges name.
    realm: String,
    tokens: Mutex<HashMap<String, Grant>>,
    /// Makes every token distinct, whatever the hasher does.
    issued: AtomicU64,
    token_requests: AtomicUsize,
    /// Wrong Basic credentials get ECR's `403`, as an expired password does there, rather
    /// than a 401 with a challenge.
    stale_basic_forbidden: AtomicBool,
    /// `WWW-Authenticate` headers of the registry's own spelling (`{realm}` and `{scope}`
    /// filled in), sent instead of the mode's challenge.
    challenges: Mutex<Option<Vec<String>>>,
}

impl AuthState {
    pub fn new(mode: Auth, realm: String) -> Self {
        AuthState {
            mode: Mutex::new(mode),
            realm,
            tokens: Mutex::default(),
            issued: AtomicU64::new(0),
            token_requests: AtomicUsize::new(0),
            stale_basic_forbidden: AtomicBool::new(false),
            challenges: Mutex::default(),
        }
    }

    /// Challenges with these `WWW-Authenticate` headers from now on.
    pub fn set_challenges(&self, headers: &[&str]) {
        let headers = headers.iter().map(|h| h.to_string()).collect();
        *self.challenges.lock().unwrap() = Some(headers);
    }

    /// The 401 challenges for `route`: the registry's own spelling, if set. `error` is the
    /// bearer `error` parameter the mode's own challenge carries.
    fn challenges(&self, route: &Route, error: Option<&str>) -> Vec<HeaderValue> {
        let Some(own) = self.challenges.lock().unwrap().clone() else {
            let challenge = self.challenge(route);
            return match (challenge, error) {
                (Some(value), Some(error)) => {
                    let value = value.to_str().expect("an ASCII challenge");
                    let value = format!("{value},error=\"{error}\"");
                    vec![HeaderValue::from_str(&value).expect("challenge header")]
                }
                (challenge, _) => challenge.into_iter().collect(),
            };
        };
        let scope = route
            .repository()
            .map(|name| format!("repository:{name}:pull"))
            .unwrap_or_default();
        own.iter()
            .map(|h| h.replace("{realm}", &self.realm).replace("{scope}", &scope))
            .map(|h| HeaderValue::from_bytes(h.as_bytes()).expect("challenge header"))
            .collect()
    }

    /// From now on, answers wrong Basic credentials as ECR answers an expired password.
    pub fn forbid_stale_basic(&self) {
        self.stale_basic_forbidden.store(true, Ordering::SeqCst);
    }

    pub fn invalidate(&self) {
        self.tokens.lock().unwrap().clear();
    }

    /// Authenticates with `mode` from now on; tokens already issued stay valid.
    pub fn set_mode(&self, mode: Auth) {
        *self.mode.lock().unwrap() = mode;
    }

    fn mode(&self) -> Auth {
        self.mode.lock().unwrap().clone()
    }

    pub fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

    /// The `WWW-Authenticate` value a 401 for `route` carries.
    pub fn challenge(&self, route: &Route) -> Option<HeaderValue> {
        let value = match self.mode() {
            Auth::None => return None,
            Auth::Basic { .. } => "Basic realm=\"fake\"".to_string(),
            Auth::Bearer { .. } => {
                let realm = &self.realm;
                let mut value = format!("Bearer realm=\"{realm}\",service=\"fake-registry\"");
                if let Some(name) = route.repository() {
                    value.push_str(&format!(",scope=\"repository:{name}:pull\""));
                }
                value
            }
        };
        Some(HeaderValue::from_str(&value).expect("challenge header"))
    }

    /// `None` when the request may go on; otherwise the 401 to answer.
    pub fn check(&self, parts: &http::request::Parts, route: &Route) -> Option<Response<Body>> {
        let authorization = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // A bearer token refused says why, as the distribution registry's token
        // controller does: `invalid_token` for one unknown or expired, `insufficient_scope`
        // for one live but not granting this repository.
        let mut error = None;
        let allowed = match self.mode() {
            Auth::None => true,
            Auth::Basic { user, pass } => authorization == Some(&basic(&user, &pass)),
            Auth::Bearer { .. } => match authorization.and_then(|v| v.strip_prefix("Bearer ")) {
                None => false,
                Some(token) => match self.grants(token, route.repository()) {
                    Some(true) => true,
                    Some(false) => {
                        error = Some("insufficient_scope");
                        false
                    }
                    None => {
                        error = Some("invalid_token");
                        false
                    }
                },
            },
        };
        let stale = authorization.is_some_and(|a| a.starts_with("Basic "))
            && self.stale_basic_forbidden.load(Ordering::SeqCst);
        match allowed {
            true => None,
            false if stale => Some(
                Prepared::error(
                    StatusCode::FORBIDDEN,
                    "DENIED",
                    "Your authorization token has expired. Reauthenticate and try again.",
                    "",
                )
                .into_response(),
            ),
            false => {
                let mut denied = unauthorized(None);
                for challenge in self.challenges(route, error) {
                    denied.headers_mut().append(WWW_AUTHENTICATE, challenge);
                }
                Some(denied)
            }
        }
    }

    /// For a live `token`, whether it grants pull on `repository` (any live token opens
    /// `/v2/`); `None` for a token unknown, revoked or expired.
    fn grants(&self, token: &str, repository: Option<&str>) -> Option<bool> {
        let tokens = self.tokens.lock().unwrap();
        let grant = tokens.get(token)?;
        if grant.expires <= Instant::now() {
            return None;
        }
        let Some(name) = repository else {
            return Some(true);
        };
        Some(grant.scopes.iter().any(|scope| {
            let Some((resource, actions)) = scope.rsplit_once(':') else {
                return false;
            };
            resource.strip_prefix("repository:") == Some(name)
                && actions.split(',').any(|a| a == "pull" || a == "*")
        }))
    }

    /// `GET /token?service=..&scope=..`: a token for the scopes asked (several `scope`
    /// parameters, or space-separated scopes, both work). Wrong or missing credentials, when the
    /// endpoint wants some, get a 401 with a Basic challenge.
    pub fn token_endpoint(&self, parts: &http::request::Parts) -> Prepared {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
        let Auth::Bearer {
            ttl,
            reply,
            credentials,
        } = self.mode()
        else {
            return Prepared::not_found();
        };
        if parts.method != Method::GET {
            let message = "only GET is supported";
            return Prepared::error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message, "");
        }
        if let Some((user, pass)) = credentials {
            let sent = parts
                .headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if sent != Some(&basic(&user, &pass)) {
                let challenge = HeaderValue::from_static("Basic realm=\"fake-token\"");
                return unauthorized_prepared(Some(challenge));
            }
        }
        let scopes = query_values(parts.uri.query().unwrap_or(""), "scope")
            .iter()
            .flat_map(|scopes| scopes.split(' '))
            .filter(|scope| !scope.is_empty())
            .map(str::to_string)
            .collect();
        let token = self.new_token();
        let grant = Grant {
            scopes,
            expires: Instant::now() + ttl,
        };
        self.tokens.lock().unwrap().insert(token.clone(), grant);

        let mut json = serde_json::Map::new();
        if reply.field != TokenField::AccessToken {
            json.insert("token".into(), token.clone().into());
        }
        if reply.field != TokenField::Token {
            json.insert("access_token".into(), token.into());
        }
        if reply.expires_in {
            let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
            json.insert("expires_in".into(), seconds.into());
        }
        let body = serde_json::Value::Object(json).to_string();
        Prepared::typed(StatusCode::OK, "application/json", body)
    }

    /// 128 bits from the standard library's per-process random hash keys: unguessable enough
    /// for a test, and no extra dependency.
    fn new_token(&self) -> String {
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        let keys = RandomState::new();
        format!("{:016x}{:016x}", keys.hash_one(n), keys.hash_one(!n))
    }
}

/// A 401 with `challenge` (if any) and the OCI `UNAUTHORIZED` error body.
pub fn unauthorized(challenge: Option<HeaderValue>) -> Response<Body> {
    unauthorized_prepared(challenge).into_response()
}

fn unauthorized_prepared(challenge: Option<HeaderValue>) -> Prepared {
    let message = "authentication required";
    let mut prepared = Prepared::error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message, "");
    if let Some(challenge) = challenge {
        prepared.headers.insert(WWW_AUTHENTICATE, challenge);
    }
    prepared
}

/// The `Authorization` value for HTTP Basic.
fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

/// Every value of `name` in a query string, decoded (`+` is a space).
fn query_values(query: &str, name: &str) -> Vec<String> {
    let decode = |s: &str| percent_decode(&s.replace('+', " "));
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| decode(key) == name)
        .map(|(_, value)| decode(value))
        .collect()
}
