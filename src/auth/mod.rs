//! Authentication, driven by the registry's `WWW-Authenticate` challenge.
//!
//! An [`Authorizer`] belongs to one repository on one registry and is shared by every task
//! that fetches from it. It starts anonymous; the first 401 says what the registry wants.
//! `Bearer` gets a token from the realm (with credentials from `config.json` when there are
//! some), `Basic` sends those credentials. The token is reused until it expires or a 401
//! arrives, and then refreshed *single-flight*: however many tasks notice at once, one
//! token request is made and the others wait for its result, or, when the token is only
//! due for early renewal and still valid, go on sending it meanwhile. A token request that
//! fails is not made again before the retry policy's backoff.

pub mod challenge;
pub mod clock;
pub mod credentials;
pub mod token;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;
use crate::transport::Transport;
use challenge::Challenge;
use clock::Stamp;
/// The types [`CredentialSource`] holds, here beside it.
pub use credentials::{Credential, DockerConfig};

/// Tokens are renewed this long before they expire (or after three quarters of a shorter
/// lifetime), so a request is never sent with a token that dies in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

fn renew_at(expires_at: Stamp, lifetime: Duration) -> Stamp {
    expires_at - EXPIRY_MARGIN.min(lifetime / 4)
}

/// Where credentials come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CredentialSource {
    /// Docker's `config.json` and its credential helpers, read on first need.
    DockerConfig(Arc<DockerConfig>),
    /// A fixed credential (library callers, tests).
    Fixed(Credential),
    /// Anonymous only.
    None,
}

/// What the authorizer currently sends, and a generation number that changes whenever it
/// changes, so a task can tell whether someone else already reacted to a 401.
#[derive(Clone, Default)]
struct State {
    header: Option<HeaderValue>,
    /// When to renew the bearer token (a little before it expires). Both on the clock
    /// that counts the time the machine sleeps, as the token server's does.
    expires_at: Option<Stamp>,
    /// When the bearer token really expires: until then, it is sent when renewing fails.
    valid_until: Option<Stamp>,
    generation: u64,
    bearer: Option<Challenge>,
    /// Token requests finished so far, and how the last one failed if it did: the tasks
    /// that waited for a request take its failure as theirs, rather than each asking a
    /// failing or hanging token server again, one after another, behind the lock.
    flights: u64,
    failed: Option<Arc<Error>>,
    /// Token requests failed in a row, and when the next one may go: a failing token
    /// server is asked again after the retry policy's backoff, not by each request that
    /// finds the token due.
    failures: u32,
    retry_at: Option<Instant>,
}

impl State {
    /// The failure of the token request that finished while a task waited for the lock,
    /// having seen `flights` before it.
    fn failure_since(&self, flights: u64) -> Option<Error> {
        let failed = self.failed.as_ref().filter(|_| self.flights != flights)?;
        Some(failed.shared())
    }
}

/// How often refused credentials are looked up again, at most.
const RELOOK_EVERY: Duration = Duration::from_secs(30);

/// The `Authorization` a request carried: the header and the state generation it came from.
#[derive(Clone)]
pub struct Grant {
    /// The header, or none for anonymous.
    pub header: Option<HeaderValue>,
    generation: u64,
}

impl Grant {
    /// Whether the header sent uses `scheme` (`b"Bearer"`, `b"Basic"`); never for an
    /// anonymous request.
    pub(crate) fn sends(&self, scheme: &[u8]) -> bool {
        self.header.as_ref().is_some_and(|h| {
            let h = h.as_bytes();
            h.len() > scheme.len() && h.starts_with(scheme) && h[scheme.len()] == b' '
        })
    }
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The scheme tells anonymous, Basic and Bearer apart; the rest is the secret.
        let scheme = self.header.as_ref().map(|h| {
            let text = h.to_str().unwrap_or_default();
            format!("{} <redacted>", text.split(' ').next().unwrap_or_default())
        });
        f.debug_struct("Grant")
            .field("header", &scheme)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Per-repository authentication state shared by all tasks.
pub struct Authorizer {
    transport: Transport,
    registry_host: String,
    api_origin: String,
    repository: String,
    scopes: Vec<String>,
    source: CredentialSource,
    /// The credential, once looked up, with where it was found (`None` until then); looked
    /// up again when it is refused.
    credential: tokio::sync::Mutex<Option<Option<(Credential, String)>>>,
    /// When the credential was last looked up again after a refusal: a registry that
    /// refuses every request (a repository the account may not read) must not have the
    /// helper run for each of them.
    relooked: Mutex<Option<Instant>>,
    state: Mutex<State>,
    refresh: tokio::sync::Mutex<()>,
    token_requests: AtomicUsize,
    /// The plain-HTTP token realm the credentials found were kept from, once it happened.
    withheld_from: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("registry_host", &self.registry_host)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// An authorizer for `repository` on `registry_host` (the name credentials are filed
    /// under), whose API is served at `api_origin` (`scheme://host[:port]`).
    pub fn new(
        transport: Transport,
        registry_host: &str,
        api_origin: &str,
        repository: &str,
        source: CredentialSource,
    ) -> Authorizer {
        Authorizer {
            transport,
            registry_host: registry_host.to_string(),
            api_origin: api_origin.to_string(),
            repository: repository.to_string(),
            scopes: vec![format!("repository:{repository}:pull")],
            source,
            credential: tokio::sync::Mutex::new(None),
            relooked: Mutex::new(None),
            state: Mutex::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
            token_requests: AtomicUsize::new(0),
            withheld_from: std::sync::OnceLock::new(),
        }
    }

    /// How many token requests this authorizer has made.
    pub fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::Relaxed)
    }

    /// What to tell a caller whose request, sent with `used`, met a spent pull quota:
    /// a quota is counted per account, or per address for anonymous callers, whose
    /// quota logging in raises (Docker Hub's: 100 pulls against 200 and more).
    pub(crate) async fn quota_advice(&self, used: &Grant) -> String {
        let logged_in = used.header.is_some()
            && self.withheld_from.get().is_none()
            && matches!(self.credential().await, Ok(Some(_)));
        if logged_in {
            "a pull rate limit: the account logged in has used up its quota, which refills \
             over hours, not seconds (not retried)"
                .to_string()
        } else {
            format!(
                "a pull rate limit: anonymous pulls from this address have used up their \
                 quota, which refills over hours, not seconds (not retried); logging in \
                 raises it (docker login {})",
                self.registry_host
            )
        }
    }

    fn snapshot(&self) -> State {
        self.state.lock().expect("auth state poisoned").clone()
    }

    /// The header to send now. A bearer token close to expiry is renewed first, and one
    /// past it waits for its renewal; failed token requests are retried under `policy`.
    pub async fn grant(&self, policy: &RetryPolicy) -> Result<Grant> {
        let mut s = self.snapshot();
        let now = Stamp::now();
        if s.expires_at.is_some_and(|t| now >= t) {
            if s.valid_until.is_some_and(|t| now < t) {
                self.renew_early(s.generation, policy).await;
            } else {
                self.renew(s.generation, s.flights, policy).await?;
            }
            s = self.snapshot();
        }
        Ok(Grant {
            header: s.header,
            generation: s.generation,
        })
    }

    /// Reacts to a 403 that answered a request sent with `used`: ECR refuses a password
    /// that has expired (its credential helper's last 12 hours) with `403 Your
    /// authorization token has expired`, not with a 401. When `used` carried Basic
    /// credentials and looking them up again gives others, they are put in place and the
    /// request is worth sending again (`true`); otherwise the 403 stands.
    pub async fn forbidden(&self, used: &Grant) -> bool {
        if !used.sends(b"Basic") {
            return false;
        }
        let _flight = self.refresh.lock().await;
        if self.snapshot().generation != used.generation {
            return true; // another task already put other credentials in place
        }
        let Ok(Some((refused, _))) = self.found().await else {
            return false;
        };
        let Ok(Some(header)) = self.renewed_basic(&refused).await else {
            return false;
        };
        self.put_basic(header);
        true
    }

    /// The credentials sent with `used` refused, in the registry's words `said`: ECR
    /// refuses a password past its 12 hours with a 403, which [`forbidden`](Self::forbidden)
    /// could not replace. `None` when `used` sent no Basic credentials.
    pub(crate) async fn expired(&self, used: &Grant, said: &str) -> Option<Error> {
        if !used.sends(b"Basic") {
            return None;
        }
        let origin = match self.found().await {
            Ok(Some((_, origin))) => origin,
            _ => return None,
        };
        let message = refused_message(
            &self.registry_host,
            &self.repository,
            Some(&origin),
            Some(said),
        );
        Some(Error::new(ErrorKind::Unauthorized, message).with_status(403))
    }

    /// Reacts to a 401 that answered a request sent with `used`. Returns `Ok` when the
    /// request is worth sending again with a fresh [`grant`](Self::grant). `again`: the
    /// request already met a 401, so `used` came after it: a token fetched for it.
    pub async fn challenged(
        &self,
        used: &Grant,
        www_authenticate: &[String],
        again: bool,
        policy: &RetryPolicy,
    ) -> Result<()> {
        let challenges: Vec<Challenge> = www_authenticate
            .iter()
            .flat_map(|h| challenge::parse(h))
            .collect();
        let flights = self.snapshot().flights;
        let _flight = self.refresh.lock().await;
        let s = self.snapshot();
        if s.generation != used.generation {
            return Ok(()); // another task already reacted to the same 401
        }
        if let Some(e) = s.failure_since(flights) {
            return Err(e);
        }
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let basic = challenges.iter().find(|c| c.scheme == "basic");
        if let Some(ch) = bearer {
            // A fresh token for the same scope will not widen it. Registries say so with
            // `insufficient_scope`; Quay (and Harbor once) only challenge again, so a
            // 401 to the token fetched for this very challenge says it too: the one
            // renewal a revoked or expired token needs has been made.
            let same_scope = s.bearer.as_ref().and_then(|b| b.param("scope")) == ch.param("scope");
            let insufficient = ch.param("error") == Some("insufficient_scope");
            // A challenge that names another error (`invalid_token`) is about the token.
            let fresh = again && ch.param("error").is_none() && used.sends(b"Bearer");
            // A registry token was not fetched for any scope: refused, it is the
            // credential that is, which `put_registry_token` says.
            if used.header.is_some()
                && same_scope
                && (insufficient || fresh)
                && !matches!(
                    self.found().await,
                    Ok(Some((Credential::RegistryToken(_), _)))
                )
            {
                let said = if insufficient {
                    "insufficient_scope"
                } else {
                    "a token fetched for it was refused"
                };
                return Err(self.not_granted(ch.param("scope"), said).await);
            }
            return self.fetch_token(ch.clone(), policy).await;
        }
        if basic.is_some() {
            let found = self.found().await?;
            let mut header = self.basic_header(found.as_ref())?;
            if used.header.as_ref() == Some(&header) {
                let renewed = match &found {
                    Some((refused, _)) => self.renewed_basic(refused).await?,
                    None => None,
                };
                let Some(renewed) = renewed else {
                    let origin = found.map(|(_, o)| o).unwrap_or_default();
                    return Err(Error::new(
                        ErrorKind::Unauthorized,
                        refused_message(&self.registry_host, &self.repository, Some(&origin), None),
                    ));
                };
                header = renewed;
            }
            self.put_basic(header);
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Unauthorized,
            format!(
                "unsupported authentication challenge {:?}",
                www_authenticate.join(", ")
            ),
        ))
    }

    /// The `Authorization: Basic` of another credential than `refused`, if looking up
    /// again gives one ([`renewed`](Self::renewed)).
    async fn renewed_basic(&self, refused: &Credential) -> Result<Option<HeaderValue>> {
        match self.renewed(refused).await {
            Some(renewed) => self.basic_header(Some(&renewed)).map(Some),
            None => Ok(None),
        }
    }

    /// Sends `header` (Basic credentials, which do not expire) from now on.
    fn put_basic(&self, header: HeaderValue) {
        let mut s = self.state.lock().expect("auth state poisoned");
        s.header = Some(header);
        s.expires_at = None;
        s.valid_until = None;
        s.generation += 1;
    }

    /// The `Authorization: Basic` of the credential `found`.
    fn basic_header(&self, found: Option<&(Credential, String)>) -> Result<HeaderValue> {
        let header = found
            .and_then(|(c, _)| c.basic_header())
            .ok_or_else(|| self.no_credentials("Basic"))?;
        let mut header = HeaderValue::from_str(&header)
            .map_err(|_| Error::invalid("credential is not a valid header"))?;
        header.set_sensitive(true);
        Ok(header)
    }

    /// Renews an expired token unless another task already did since `generation`, or
    /// tried and failed since `flights`.
    async fn renew(&self, generation: u64, flights: u64, policy: &RetryPolicy) -> Result<()> {
        let _flight = self.refresh.lock().await;
        let s = self.snapshot();
        if s.generation != generation {
            return Ok(());
        }
        if let Some(e) = s.failure_since(flights) {
            return Err(e);
        }
        match s.bearer {
            Some(ch) => self.fetch_token(ch, policy).await,
            None => Ok(()),
        }
    }

    /// Renews a token due for renewal that is still valid, unless another task is at it,
    /// already did since `generation`, or the last token request failed within its
    /// backoff. The token it would replace still opens the repository: the other tasks
    /// send it meanwhile rather than wait for the token server, and a failure (a passing
    /// 503) leaves it in use while it lasts.
    async fn renew_early(&self, generation: u64, policy: &RetryPolicy) {
        let Ok(_flight) = self.refresh.try_lock() else {
            return;
        };
        let s = self.snapshot();
        if s.generation != generation || s.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if let Some(ch) = s.bearer {
            if let Err(e) = self.fetch_token(ch, policy).await {
                tracing::debug!(error = %e, "renewing the token failed; sending the current one while it lasts");
            }
        }
    }

    /// Called with the refresh lock held. After a failed token request, the next one
    /// waits for `policy`'s backoff (or the `Retry-After` the failure carried).
    async fn fetch_token(&self, ch: Challenge, policy: &RetryPolicy) -> Result<()> {
        self.back_off(policy).await?;
        let result = self.ask_token(ch).await;
        let mut s = self.state.lock().expect("auth state poisoned");
        s.flights += 1;
        match &result {
            Ok(()) => {
                s.failed = None;
                s.failures = 0;
                s.retry_at = None;
            }
            Err(e) => {
                let wait = policy.wait(s.failures.min(policy.retries), e.retry_after());
                // The wait may be the server's number, past the clock's range.
                let now = Instant::now();
                let far = now + Duration::from_secs(30 * 365 * 86400);
                s.retry_at = Some(now.checked_add(wait).unwrap_or(far));
                s.failures = s.failures.saturating_add(1);
                s.failed = Some(Arc::new(e.shared()));
            }
        }
        result
    }

    /// Waits until the last failed token request's backoff has passed, when it failed as a
    /// server failing for now does; a wait longer than `policy` allows gives that failure
    /// again at once, as the request's own retries would. Refusals are not waited for:
    /// they end the request that meets them anyway.
    async fn back_off(&self, policy: &RetryPolicy) -> Result<()> {
        let s = self.snapshot();
        let (Some(at), Some(failed)) = (s.retry_at, s.failed) else {
            return Ok(());
        };
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() || !failed.is_transient() {
            return Ok(());
        }
        if left > policy.max_delay {
            return Err(failed.shared());
        }
        tracing::debug!(
            wait_ms = left.as_millis() as u64,
            "waiting out the token server's backoff"
        );
        tokio::time::sleep(left).await;
        Ok(())
    }

    /// [`fetch_token`](Self::fetch_token)'s request, and the state it leads to.
    async fn ask_token(&self, ch: Challenge) -> Result<()> {
        let mut found = self.found().await?;
        if let Some((Credential::RegistryToken(token), origin)) = &found {
            return self.put_registry_token(token, origin, ch);
        }
        if let Some((newer, origin)) = self.rotated(&ch, found.as_ref()) {
            found = Some((newer, origin));
        }
        let cred = found.as_ref().map(|(c, _)| c);
        let scopes = merged_scopes(&self.scopes, ch.param("scope"));
        let sent = cred.filter(|_| token::credentials_may_go(&ch, &self.api_origin));
        if cred.is_some() && sent.is_none() {
            self.withhold(&ch);
        }
        let mut token = self.token_for(&ch, &scopes, cred).await;
        if let (Err(e), Some(refused)) = (&token, sent) {
            if e.kind() == ErrorKind::Unauthorized {
                // Another host's authorizer may have had it rotated while this one asked.
                let renewed = match self.rotated(&ch, found.as_ref()) {
                    Some(newer) => Some(newer),
                    None => self.renewed(refused).await,
                };
                if let Some(renewed) = renewed {
                    token = self.token_for(&ch, &scopes, Some(&renewed.0)).await;
                    found = Some(renewed);
                }
            }
        }
        let token = match token {
            Ok(token) => token,
            // The token server's 401 (or OAuth2's invalid_grant) is about the credentials
            // (or their absence), which its own words rarely say.
            Err(e) if e.kind() == ErrorKind::Unauthorized => {
                let origin = found.as_ref().map(|(_, o)| o.as_str());
                let mut refused = Error::new(
                    ErrorKind::Unauthorized,
                    refused_message(
                        &self.registry_host,
                        &self.repository,
                        origin,
                        Some(e.message()),
                    ),
                )
                .with_status(e.status().unwrap_or(401));
                if let Some(url) = e.url() {
                    refused = refused.with_url(url);
                }
                return Err(refused);
            }
            Err(e) => return Err(e),
        };
        // Docker keeps the newest refresh token for the session's later grants; a server
        // that rotates them no longer takes the one from the file. Kept in memory only.
        if let (Some(new), Some((Credential::IdentityToken(old), origin))) =
            (token.refresh_token, found)
        {
            if new != old {
                if let (CredentialSource::DockerConfig(cfg), Some(realm)) =
                    (&self.source, ch.param("realm"))
                {
                    cfg.rotated.record(realm, ch.param("service"), &old, &new);
                }
                let rotated = (Credential::IdentityToken(new), origin);
                *self.credential.lock().await = Some(Some(rotated));
            }
        }
        let mut s = self.state.lock().expect("auth state poisoned");
        s.header = Some(token.header);
        s.expires_at = Some(renew_at(token.expires_at, token.lifetime));
        s.valid_until = Some(token.expires_at);
        s.generation += 1;
        s.bearer = Some(ch);
        Ok(())
    }

    /// Sends Docker's `registrytoken` from now on, as Docker's daemon does: the registry's
    /// own bearer token, for which no token endpoint is asked. Already sent and challenged
    /// again, it is refused: nothing renews it.
    fn put_registry_token(&self, token: &str, origin: &str, ch: Challenge) -> Result<()> {
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::invalid("credential is not a valid header"))?;
        header.set_sensitive(true);
        let mut s = self.state.lock().expect("auth state poisoned");
        if s.header.as_ref() == Some(&header) {
            return Err(Error::new(
                ErrorKind::Unauthorized,
                refused_message(&self.registry_host, &self.repository, Some(origin), None),
            ));
        }
        s.header = Some(header);
        s.expires_at = None;
        s.valid_until = None;
        s.generation += 1;
        s.bearer = Some(ch);
        Ok(())
    }

    /// The newest refresh token the identity token `found` was rotated to at `ch`'s realm
    /// and service by any authorizer sharing this one's credential files, if it was.
    fn rotated(
        &self,
        ch: &Challenge,
        found: Option<&(Credential, String)>,
    ) -> Option<(Credential, String)> {
        let (CredentialSource::DockerConfig(cfg), Some((Credential::IdentityToken(t), origin))) =
            (&self.source, found)
        else {
            return None;
        };
        let newest = cfg
            .rotated
            .newest(ch.param("realm")?, ch.param("service"), t)?;
        Some((Credential::IdentityToken(newest), origin.clone()))
    }

    /// A token from the realm `ch` names, with `cred`.
    async fn token_for(
        &self,
        ch: &Challenge,
        scopes: &[String],
        cred: Option<&Credential>,
    ) -> Result<token::Token> {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        // Boxed: a whole HTTP exchange, once per token, that would otherwise take up room
        // in every request's future, which is copied whole into its box for each object.
        Box::pin(token::fetch(
            &self.transport,
            ch,
            scopes,
            cred,
            &self.api_origin,
        ))
        .await
    }

    async fn credential(&self) -> Result<Option<Credential>> {
        Ok(self.found().await?.map(|(c, _)| c))
    }

    /// The credential and where it came from, looked up once.
    async fn found(&self) -> Result<Option<(Credential, String)>> {
        let mut known = self.credential.lock().await;
        if let Some(found) = &*known {
            return Ok(found.clone());
        }
        let found = self.look_up().await?;
        *known = Some(found.clone());
        Ok(found)
    }

    /// Another credential than `refused`, if looking up again gives one: a credential
    /// helper's may expire within a long run (a cloud's access token lasts an hour, an
    /// ECR password 12 hours) and the helper hands out a fresh one when asked again.
    /// Files are read once, and give the same one again.
    async fn renewed(&self, refused: &Credential) -> Option<(Credential, String)> {
        let mut known = self.credential.lock().await;
        {
            let mut relooked = self.relooked.lock().expect("auth state poisoned");
            if relooked.is_some_and(|at| at.elapsed() < RELOOK_EVERY) {
                return None;
            }
            *relooked = Some(Instant::now());
        }
        match self.look_up().await {
            Ok(Some((c, origin))) if c != *refused => {
                tracing::debug!(registry = %self.registry_host, %origin, "refused credentials replaced by a fresh lookup");
                *known = Some(Some((c.clone(), origin.clone())));
                Some((c, origin))
            }
            // The refusal says more than a helper failing now would.
            _ => None,
        }
    }

    async fn look_up(&self) -> Result<Option<(Credential, String)>> {
        match &self.source {
            CredentialSource::None => Ok(None),
            CredentialSource::Fixed(c) => Ok(Some((c.clone(), "the credential given".to_string()))),
            // Boxed: the lookup's future (files, credential helpers) is large and runs
            // once a run, and unboxed it made every request's future as large.
            CredentialSource::DockerConfig(cfg) => {
                Box::pin(cfg.find(&self.registry_host, Some(&self.repository))).await
            }
        }
    }

    /// Says once that the credentials found stay home: the token realm is plain HTTP away
    /// from the registry's own plain-HTTP origin, where a registry could lure a password
    /// onto the network (or a TLS proxy's misconfigured registry leak it there).
    fn withhold(&self, ch: &Challenge) {
        let realm = ch.param("realm").unwrap_or_default();
        let realm = crate::error::redact_url(realm);
        if self.withheld_from.set(realm.clone()).is_ok() {
            tracing::warn!(
                "{}: the credentials found for it are not sent to its token service {realm}, \
                 plain HTTP elsewhere than the registry itself; asking for an anonymous token",
                self.registry_host
            );
        }
    }

    /// A token that was fetched for the scope the registry asks for, and still does not
    /// open it. Registries (Docker Hub among them) answer so for a repository that does
    /// not exist as well as for one the caller may not read, so the message names both.
    async fn not_granted(&self, scope: Option<&str>, said: &str) -> Error {
        let caller = match (self.credential().await, self.withheld_from.get()) {
            (_, Some(realm)) => Caller::Withheld(realm),
            (Ok(None), _) => Caller::Anonymous,
            _ => Caller::Credentials,
        };
        Error::new(
            ErrorKind::Denied,
            // A challenge without a scope (Quay's) was answered for dist's own.
            not_granted_message(
                &self.registry_host,
                scope.or(self.scopes.first().map(String::as_str)),
                said,
                caller,
            ),
        )
    }

    fn no_credentials(&self, scheme: &str) -> Error {
        Error::new(
            ErrorKind::Unauthorized,
            format!(
                "{} asks for {scheme} authentication and no credentials for it were found (docker login {})",
                self.registry_host, self.registry_host
            ),
        )
    }
}

/// A refusal of the credentials from `origin` (`None`: none were sent, for a token for
/// `repository`), in the words of the server's `reply` if there is one, with the way to
/// fix it. A token service that refuses anonymous callers one repository (GHCR's) does
/// so for a private repository and for one that does not exist alike.
fn refused_message(
    host: &str,
    repository: &str,
    origin: Option<&str>,
    reply: Option<&str>,
) -> String {
    let said = reply.map(|r| format!(" ({r})")).unwrap_or_default();
    match origin {
        Some(origin) => format!(
            "{host} refused the credentials from {origin}{said}: log in again (docker login {host})"
        ),
        None => format!(
            "{host} gives anonymous callers no token for the repository {repository}{said}: \
             it needs credentials (docker login {host}), or it does not exist"
        ),
    }
}

/// Who a token that did not open the repository was issued to.
enum Caller<'a> {
    Anonymous,
    Credentials,
    /// Anonymous, because the credentials found could not go to this realm.
    Withheld(&'a str),
}

/// dist's own scopes, then those of the challenge's `scope` (space-separated) it lacks,
/// each once and in the order named.
fn merged_scopes(own: &[String], asked: Option<&str>) -> Vec<String> {
    let mut scopes = own.to_vec();
    // A set, not a scan of the list for each word: the header is the server's, and one
    // naming 60,000 scopes (469 KB, which hyper takes) cost seconds of CPU.
    let mut seen: std::collections::HashSet<&str> = own.iter().map(String::as_str).collect();
    for s in asked.unwrap_or_default().split(' ') {
        if !s.is_empty() && seen.insert(s) {
            scopes.push(s.to_string());
        }
    }
    scopes
}

/// See [`Authorizer::not_granted`].
fn not_granted_message(host: &str, scope: Option<&str>, said: &str, caller: Caller) -> String {
    // `repository:NAME:ACTIONS`; a scope leaves the registry (and any port) out of NAME.
    // The scope is the server's text, and may be of any length.
    let shown = |text: &str| crate::server_text::one_line(text);
    let what = match scope.map(|s| s.split(':').collect::<Vec<_>>()).as_deref() {
        Some(["repository", name, _]) => format!("the repository {}", shown(name)),
        Some(_) => format!("the scope {}", shown(scope.unwrap_or_default())),
        None => "what it asked for".to_string(),
    };
    match caller {
        Caller::Anonymous => format!(
            "{host} gives anonymous callers no access to {what} ({said}): \
             it does not exist, or it needs credentials (docker login {host})"
        ),
        Caller::Credentials => format!(
            "{host} gives the credentials found for it no access to {what} \
             ({said}): it does not exist, or they may not read it"
        ),
        Caller::Withheld(realm) => format!(
            "{host} gives anonymous callers no access to {what} ({said}); \
             the credentials found for it were not sent to its token service {realm}, \
             which is plain HTTP elsewhere than the registry itself"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_tells_its_scheme() {
        let grant = |h: Option<&'static str>| Grant {
            header: h.map(HeaderValue::from_static),
            generation: 0,
        };
        assert!(grant(Some("Bearer abc")).sends(b"Bearer"));
        assert!(!grant(Some("Bearer abc")).sends(b"Basic"));
        assert!(grant(Some("Basic YTpi")).sends(b"Basic"));
        assert!(!grant(Some("Bearerx abc")).sends(b"Bearer"));
        assert!(!grant(None).sends(b"Bearer"));
    }

    /// A token whose lifetime ran out while the machine was suspended, which `Instant`
    /// does not count, is renewed before it is sent again, not after the 401 it would get.
    #[tokio::test]
    async fn a_token_that_ended_while_the_machine_slept_is_renewed() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let transport = Transport::new(Default::default()).unwrap();
        let auth = Authorizer::new(transport, "r.example", &origin, "a", CredentialSource::None);
        let issued = Stamp::now();
        let lifetime = Duration::from_secs(300);
        {
            let mut s = auth.state.lock().unwrap();
            s.header = Some(HeaderValue::from_static("Bearer issued"));
            s.expires_at = Some(renew_at(issued + lifetime, lifetime));
            s.valid_until = Some(issued + lifetime);
            s.bearer = challenge::parse(&format!("Bearer realm=\"{origin}/token\""))
                .into_iter()
                .next();
        }
        let policy = RetryPolicy {
            retries: 0,
            ..RetryPolicy::default()
        };
        let sent = auth.grant(&policy).await.unwrap();
        assert_eq!(sent.header.unwrap(), "Bearer issued");
        assert_eq!(auth.token_requests(), 0);

        clock::tests::suspend(Duration::from_secs(3600));
        // The token server is gone: the renewal's failure shows it was asked.
        assert!(auth.grant(&policy).await.is_err());
        assert_eq!(auth.token_requests(), 1);
    }

    /// Two hosts of a run trade one identity token at one realm: the server rotated it for
    /// the other host's authorizer while this one's grant, with the old token, was on its
    /// way. The newest is tried before the refusal stands.
    #[tokio::test]
    async fn a_refresh_token_rotated_meanwhile_for_another_host_is_tried() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, r#"{"auths":{"r.example":{"identitytoken":"t0"}}}"#).unwrap();
        let cfg = Arc::new(DockerConfig::from_path(&file).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let realm = format!("{origin}/token");
        let server = {
            let (cfg, realm) = (cfg.clone(), realm.clone());
            tokio::spawn(async move {
                let mut offered = Vec::new();
                while offered.len() < 2 {
                    let (mut conn, _) = listener.accept().await.unwrap();
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.ends_with(b"&client_id=dist") {
                        let n = conn.read(&mut buf).await.unwrap();
                        assert!(n > 0, "{}", String::from_utf8_lossy(&request));
                        request.extend_from_slice(&buf[..n]);
                    }
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let (status, body) = if text.contains("refresh_token=t0&") {
                        cfg.rotated.record(&realm, Some("svc"), "t0", "t1");
                        ("401 Unauthorized", "")
                    } else {
                        ("200 OK", r#"{"access_token":"a1","expires_in":300}"#)
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    conn.write_all(reply.as_bytes()).await.unwrap();
                    offered.push(text.contains("refresh_token=t1&"));
                }
                offered
            })
        };
        let transport = Transport::new(Default::default()).unwrap();
        let source = CredentialSource::DockerConfig(cfg);
        let auth = Authorizer::new(transport, "r.example", &origin, "a", source);
        let policy = RetryPolicy::default();
        let anonymous = auth.grant(&policy).await.unwrap();
        let challenge = format!(r#"Bearer realm="{realm}",service="svc""#);
        auth.challenged(&anonymous, &[challenge], false, &policy)
            .await
            .unwrap();
        let sent = auth.grant(&policy).await.unwrap();
        assert_eq!(sent.header.unwrap(), "Bearer a1");
        assert_eq!(server.await.unwrap(), [false, true]);
    }

    #[test]
    fn a_grant_debugs_without_its_header() {
        let mut header = HeaderValue::from_static("Bearer s3cret-token");
        // Marked as the authorizer marks it; `Debug` must not rely on that alone.
        header.set_sensitive(false);
        let grant = Grant {
            header: Some(header),
            generation: 3,
        };
        let shown = format!("{grant:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("Bearer"), "the scheme is no secret: {shown}");
    }

    #[test]
    fn a_refusal_names_where_the_credentials_came_from() {
        assert_eq!(
            refused_message(
                "r.example",
                "team/app",
                Some("/home/u/.docker/config.json"),
                Some("401: no")
            ),
            "r.example refused the credentials from /home/u/.docker/config.json (401: no): \
             log in again (docker login r.example)"
        );
        assert_eq!(
            refused_message("r.example", "team/app", None, None),
            "r.example gives anonymous callers no token for the repository team/app: it needs \
             credentials (docker login r.example), or it does not exist"
        );
    }

    #[test]
    fn a_challenge_s_scopes_are_added_once_after_dist_s_own() {
        let own = vec!["repository:a:pull".to_string()];
        assert_eq!(merged_scopes(&own, None), own);
        let asked = "repository:b:pull  repository:a:pull repository:b:pull repository:c:push";
        assert_eq!(
            merged_scopes(&own, Some(asked)),
            [
                "repository:a:pull",
                "repository:b:pull",
                "repository:c:push"
            ]
        );
        let many: Vec<String> = (0..20_000)
            .map(|i| format!("repository:r{i}:pull"))
            .collect();
        let merged = merged_scopes(&own, Some(&many.join(" ")));
        assert_eq!(merged.len(), 20_001);
        assert_eq!(merged[1..], many[..]);
    }

    #[test]
    fn a_refused_scope_says_whether_credentials_were_sent() {
        let anon = not_granted_message(
            "r.example:5000",
            Some("repository:team/app:pull"),
            "insufficient_scope",
            Caller::Anonymous,
        );
        assert_eq!(
            anon,
            "r.example:5000 gives anonymous callers no access to the repository team/app \
             (insufficient_scope): it does not exist, or it needs credentials \
             (docker login r.example:5000)"
        );
        let with = not_granted_message(
            "r.example",
            Some("repository:team/app:pull"),
            "insufficient_scope",
            Caller::Credentials,
        );
        assert!(with.contains("the credentials found for it"), "{with}");
        assert!(!with.contains("docker login"), "{with}");
        let odd = not_granted_message(
            "r.example",
            Some("registry:catalog:*:x"),
            "insufficient_scope",
            Caller::Anonymous,
        );
        assert!(odd.contains("the scope registry:catalog:*:x"), "{odd}");
        let none = not_granted_message("r.example", None, "insufficient_scope", Caller::Anonymous);
        assert!(none.contains("no access to what it asked for"), "{none}");
        let kept = Caller::Withheld("http://auth.example/token");
        let kept = not_granted_message("r.example", None, "insufficient_scope", kept);
        assert!(kept.contains("were not sent to its token service http://auth.example/token"));
    }
}
