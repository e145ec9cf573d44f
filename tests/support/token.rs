//! In-process bearer-token issuer for `docker-registry`'s `auth: token` mode.
//!
//! The issuer implements both flavours of the distribution token protocol:
//! `GET /token?service=..&scope=..` (optionally with HTTP Basic credentials) and the
//! OAuth2-style `POST /token` form used by clients holding identity/refresh tokens.
//! Tokens are ES256 JWTs whose `kid` header is the libtrust key ID of the signing key;
//! the registry trusts them through the self-signed certificate from [`TokenServer::cert_pem`]
//! written as its `rootcertbundle`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

/// `service` the issuer signs for; the registry checks it against the token's `aud`.
pub const SERVICE: &str = "dist-test-registry";
/// `iss` claim of every token; the registry checks it against its `issuer` setting.
pub const ISSUER: &str = "dist-test-issuer";
/// User name accepted by the issuer (and by the registry's htpasswd in Basic mode).
pub const USER: &str = "tester";
/// Password accepted by the issuer (and by the registry's htpasswd in Basic mode).
pub const PASSWORD: &str = "s3cret-pass";

/// Which field(s) carry the token in a successful reply.
///
/// The distribution spec allows `token`, `access_token` or both; clients must accept any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenReply {
    /// `{"token": T, "access_token": T, ..}` — what most real issuers send.
    #[default]
    Both,
    /// Only `{"token": T, ..}` (classic docker auth servers).
    TokenOnly,
    /// Only `{"access_token": T, ..}` (OAuth2-style servers).
    AccessTokenOnly,
}

/// Configuration of a [`TokenServer`].
#[derive(Clone, Debug)]
pub struct TokenOptions {
    /// Expected `service` parameter and the `aud` claim of issued tokens.
    pub service: String,
    /// `iss` claim of issued tokens.
    pub issuer: String,
    /// The only user accepted.
    pub user: String,
    /// That user's password.
    pub password: String,
    /// Token lifetime, reported as `expires_in` and used for the `exp` claim.
    pub ttl_secs: u64,
    /// Repositories whose name starts with this prefix are not even pullable anonymously.
    pub private_prefix: Option<String>,
    /// Shape of successful replies.
    pub reply: TokenReply,
    /// Leave `expires_in` out of replies, so clients must fall back to the 60 s default.
    pub omit_expires_in: bool,
    /// Refresh token accepted by `POST /token` with `grant_type=refresh_token`; also handed
    /// out by a successful password grant. `None` disables the refresh grant.
    pub refresh_token: Option<String>,
    /// Refuse a refresh token as RFC 6749 has OAuth2 servers do (`400` with `{"error":
    /// "invalid_grant"}`) rather than with a `401`.
    pub invalid_grant_400: bool,
    /// Each refresh grant hands out a new refresh token and takes only the newest from then
    /// on, as an OAuth2 server rotating its refresh tokens does.
    pub rotate_refresh_token: bool,
}

impl Default for TokenOptions {
    fn default() -> Self {
        TokenOptions {
            service: SERVICE.to_string(),
            issuer: ISSUER.to_string(),
            user: USER.to_string(),
            password: PASSWORD.to_string(),
            ttl_secs: 300,
            private_prefix: None,
            reply: TokenReply::Both,
            omit_expires_in: false,
            refresh_token: None,
            invalid_grant_400: false,
            rotate_refresh_token: false,
        }
    }
}

/// One entry of a token's `access` claim (also the parsed form of a `scope` parameter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Resource type, normally `repository`.
    pub kind: String,
    /// Resource name, e.g. `library/alpine`.
    pub name: String,
    /// Granted or requested actions, e.g. `["pull", "push"]`.
    pub actions: Vec<String>,
}

impl Access {
    /// A `repository` entry with the given actions.
    pub fn repository(name: &str, actions: &[&str]) -> Access {
        Access {
            kind: "repository".to_string(),
            name: name.to_string(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Parses `type:name:action[,action..]`. The name is what lies between the first and
    /// the last colon, so names containing a colon (a registry host with a port) survive.
    pub fn parse_scope(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"type": self.kind, "name": self.name, "actions": self.actions})
    }
}

/// Key material and policy shared by the server thread and [`TokenServer::mint`].
struct Issuer {
    opts: TokenOptions,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
    cert_pem: String,
    cert_der: Vec<u8>,
    requests: AtomicUsize,
    /// The refresh token taken now: `opts.refresh_token` until one is rotated.
    refresh: std::sync::Mutex<Option<String>>,
    rotations: AtomicUsize,
}

/// Who a token request came from, after checking credentials.
enum Caller {
    Anonymous,
    User(String),
}

impl Issuer {
    fn generate(opts: TokenOptions) -> Issuer {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate P-256 issuer key");
        let cert = rcgen::CertificateParams::new(vec![opts.issuer.clone()])
            .expect("issuer certificate params")
            .self_signed(&key_pair)
            .expect("self-sign issuer certificate");
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &rng,
        )
        .expect("load rcgen PKCS#8 key into ring");
        Issuer {
            kid: libtrust_key_id(&key_pair.public_key_der()),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
            rng,
            refresh: std::sync::Mutex::new(opts.refresh_token.clone()),
            rotations: AtomicUsize::new(0),
            opts,
            requests: AtomicUsize::new(0),
        }
    }

    fn mint(&self, subject: &str, access: &[Access], ttl_secs: i64) -> String {
        let now = unix_now();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": self.kid});
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).expect("random jti");
        let claims = serde_json::json!({
            "iss": self.opts.issuer,
            "sub": subject,
            "aud": self.opts.service,
            "exp": now + ttl_secs,
            // Backdated so a registry whose clock is slightly behind still accepts it.
            "nbf": now - 10,
            "iat": now,
            "jti": hex(&jti),
            "access": access.iter().map(Access::to_json).collect::<Vec<_>>(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ES256 signing");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }

    /// Anonymous callers may only pull, and never from private repositories; users get
    /// whatever they ask for.
    fn grant(&self, caller: &Caller, requested: &[Access]) -> Vec<Access> {
        match caller {
            Caller::User(_) => requested.to_vec(),
            Caller::Anonymous => requested
                .iter()
                .filter(|a| {
                    let private = self
                        .opts
                        .private_prefix
                        .as_deref()
                        .is_some_and(|p| a.name.starts_with(p));
                    a.kind == "repository" && !private
                })
                .map(|a| Access {
                    actions: a.actions.iter().filter(|x| *x == "pull").cloned().collect(),
                    ..a.clone()
                })
                .filter(|a| !a.actions.is_empty())
                .collect(),
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if req.uri().path() != "/token" {
            return text(StatusCode::NOT_FOUND, "not found");
        }
        match *req.method() {
            Method::GET => {
                let params = parse_form(req.uri().query().unwrap_or(""));
                let caller = match basic_credentials(req.headers()) {
                    None => Caller::Anonymous,
                    Some(Some((user, pass))) if self.valid(&user, &pass) => Caller::User(user),
                    Some(_) => return unauthorized("bad credentials"),
                };
                self.reply(&caller, &params, None)
            }
            Method::POST => {
                let body = match req.into_body().collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(e) => return text(StatusCode::BAD_REQUEST, &format!("body: {e}")),
                };
                let params = parse_form(&String::from_utf8_lossy(&body));
                match first(&params, "grant_type") {
                    Some("password") => {
                        let user = first(&params, "username").unwrap_or("");
                        let pass = first(&params, "password").unwrap_or("");
                        if !self.valid(user, pass) {
                            return unauthorized("bad credentials");
                        }
                        let refresh = self.refresh.lock().unwrap().clone();
                        self.reply(&Caller::User(user.to_string()), &params, refresh)
                    }
                    Some("refresh_token") => {
                        let offered = first(&params, "refresh_token");
                        let mut current = self.refresh.lock().unwrap();
                        match current.clone() {
                            Some(valid) if offered == Some(valid.as_str()) => {
                                let rotated = self.opts.rotate_refresh_token.then(|| {
                                    let n = self.rotations.fetch_add(1, Ordering::SeqCst) + 1;
                                    let new = format!("{}-rotated-{n}", self.opts.user);
                                    *current = Some(new.clone());
                                    new
                                });
                                drop(current);
                                self.reply(&Caller::User(self.opts.user.clone()), &params, rotated)
                            }
                            _ if self.opts.invalid_grant_400 => text(
                                StatusCode::BAD_REQUEST,
                                r#"{"error":"invalid_grant","error_description":"refresh token expired"}"#,
                            ),
                            _ => unauthorized("bad refresh token"),
                        }
                    }
                    _ => text(StatusCode::BAD_REQUEST, "unsupported grant_type"),
                }
            }
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }

    fn valid(&self, user: &str, pass: &str) -> bool {
        user == self.opts.user && pass == self.opts.password
    }

    fn reply(
        &self,
        caller: &Caller,
        params: &[(String, String)],
        refresh_token: Option<String>,
    ) -> Response<Full<Bytes>> {
        // A wrong service is a client bug worth failing loudly on; a missing one is tolerated.
        if let Some(service) = first(params, "service") {
            if service != self.opts.service {
                return text(StatusCode::BAD_REQUEST, "unknown service");
            }
        }
        let mut requested = Vec::new();
        for scope in params.iter().filter(|(k, _)| k == "scope") {
            for one in scope.1.split_whitespace() {
                match Access::parse_scope(one) {
                    Some(access) => requested.push(access),
                    None => return text(StatusCode::BAD_REQUEST, "malformed scope"),
                }
            }
        }
        let subject = match caller {
            Caller::Anonymous => "",
            Caller::User(user) => user.as_str(),
        };
        let ttl = self.opts.ttl_secs;
        let token = self.mint(
            subject,
            &self.grant(caller, &requested),
            i64::try_from(ttl).expect("ttl fits i64"),
        );
        let mut body = serde_json::Map::new();
        if self.opts.reply != TokenReply::AccessTokenOnly {
            body.insert("token".into(), token.clone().into());
        }
        if self.opts.reply != TokenReply::TokenOnly {
            body.insert("access_token".into(), token.into());
        }
        if !self.opts.omit_expires_in {
            body.insert("expires_in".into(), ttl.into());
        }
        body.insert("issued_at".into(), rfc3339(unix_now()).into());
        if let Some(refresh) = refresh_token {
            body.insert("refresh_token".into(), refresh.into());
        }
        Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                serde_json::Value::Object(body).to_string(),
            )))
            .expect("token response")
    }
}

/// A running token issuer. Dropping it stops the server thread.
pub struct TokenServer {
    issuer: Arc<Issuer>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Generates a fresh key and certificate and serves `/token` on `127.0.0.1:<free port>`
    /// from a dedicated thread, so it works whether or not the caller is inside a runtime.
    pub fn start(opts: TokenOptions) -> TokenServer {
        let issuer = Arc::new(Issuer::generate(opts));
        // Bound here rather than on the server thread so the port is known (and already
        // taken) when this returns.
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server listener");
        let addr = listener.local_addr().expect("token server address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking token listener");
        let (shutdown, mut stopped) = oneshot::channel::<()>();
        let served = issuer.clone();
        let thread = std::thread::Builder::new()
            .name("token-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("token server runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("adopt token listener");
                    loop {
                        let stream = tokio::select! {
                            _ = &mut stopped => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => stream,
                                Err(_) => continue,
                            },
                        };
                        let issuer = served.clone();
                        tokio::spawn(async move {
                            let service = service_fn(move |req| {
                                let issuer = issuer.clone();
                                async move { Ok::<_, Infallible>(issuer.handle(req).await) }
                            });
                            // Clients hanging up mid-request are not the issuer's problem.
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
                // Dropping the runtime here cancels connections still being served.
            })
            .expect("spawn token server thread");
        TokenServer {
            issuer,
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The realm URL, `http://127.0.0.1:PORT/token`.
    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of HTTP requests served so far (any path, any outcome).
    pub fn requests(&self) -> usize {
        self.issuer.requests.load(Ordering::SeqCst)
    }

    /// Sets the request counter back to zero.
    pub fn reset_requests(&self) {
        self.issuer.requests.store(0, Ordering::SeqCst);
    }

    /// The options the server was started with.
    pub fn options(&self) -> &TokenOptions {
        &self.issuer.opts
    }

    /// PEM of the self-signed certificate of the signing key (the registry's `rootcertbundle`).
    pub fn cert_pem(&self) -> &str {
        &self.issuer.cert_pem
    }

    /// DER of that certificate, e.g. for building an `x5c` header.
    pub fn cert_der(&self) -> &[u8] {
        &self.issuer.cert_der
    }

    /// The libtrust key ID put in the `kid` header of every token.
    pub fn key_id(&self) -> &str {
        &self.issuer.kid
    }

    /// Signs a token directly, bypassing policy and the request counter. A negative
    /// `ttl_secs` yields an already expired token (registry 2.8 allows 60 s of leeway).
    pub fn mint(&self, subject: &str, access: &[Access], ttl_secs: i64) -> String {
        self.issuer.mint(subject, access, ttl_secs)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has already been printed; don't double-panic.
            let _ = thread.join();
        }
    }
}

/// The key ID libtrust (and thus registry 2.x) derives from a public key: the first 240
/// bits of SHA-256 over the DER SubjectPublicKeyInfo, base32 encoded, in 4-char groups.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let encoded = base32(&digest[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|group| std::str::from_utf8(group).expect("base32 is ASCII"))
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32 with the standard alphabet and no padding.
pub fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes an `application/x-www-form-urlencoded` string (also used for query strings),
/// keeping repeated keys such as `scope`.
pub fn parse_form(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    fn hex_value(byte: u8) -> Option<u8> {
        (byte as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex_value(*hi).zip(hex_value(*lo)),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((hi, lo)), _) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, other) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn first<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `None` without an `Authorization: Basic` header, `Some(None)` if it is malformed.
fn basic_credentials(headers: &HeaderMap) -> Option<Option<(String, String)>> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    Some(
        STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            }),
    )
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from(message.to_string())))
        .expect("text response")
}

fn unauthorized(message: &str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        "Basic realm=\"dist-test-issuer\"".parse().expect("header"),
    );
    response
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits i64")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// UTC timestamp as RFC 3339, via the days-to-civil algorithm (no date crate available).
fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (input, expected) in vectors {
            assert_eq!(base32(input.as_bytes()), expected, "base32({input:?})");
        }
    }

    #[test]
    fn key_id_has_twelve_groups_of_four() {
        let kid = libtrust_key_id(b"any bytes");
        let groups: Vec<&str> = kid.split(':').collect();
        assert_eq!(groups.len(), 12, "{kid}");
        assert!(groups.iter().all(|g| g.len() == 4), "{kid}");
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn forms_and_scopes_parse() {
        let params =
            parse_form("scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=repository:c:pull+x&e=");
        assert_eq!(params[0].1, "repository:a/b:pull,push");
        assert_eq!(params[1].1, "repository:c:pull x");
        assert_eq!(params[2], ("e".to_string(), String::new()));
        assert_eq!(
            Access::parse_scope("repository:localhost:5000/x:pull"),
            Some(Access::repository("localhost:5000/x", &["pull"]))
        );
        assert_eq!(Access::parse_scope("nonsense"), None);
    }
}
