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

mod basic;
mod bearer;
mod lookup;
mod refusal;
mod scope;
mod sent;
mod spurned;
mod state;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::HeaderValue;

use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;
use crate::transport::Transport;
use challenge::Challenge;
use clock::Stamp;
/// The types [`CredentialSource`] holds, here beside it.
pub use credentials::{Credential, DockerConfig};
use refusal::refused_message;
use scope::merged_scopes;
pub(crate) use sent::Sent;
pub(crate) use state::TokenTries;
use state::{RefusedToken, State};

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

/// The `Authorization` a request carried: the header and the state generation it came from.
#[derive(Clone)]
pub struct Grant {
    /// The header, or none for anonymous.
    pub header: Option<HeaderValue>,
    generation: u64,
    /// A token the registry refused, sent once more ([`State::second_chance`]).
    retried: bool,
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

/// A request's [`TokenTries`], from [`Authorizer::token_tries`].
pub(crate) struct RequestTries<'a> {
    auth: &'a Authorizer,
    tries: TokenTries,
}

impl std::ops::Deref for RequestTries<'_> {
    type Target = TokenTries;

    fn deref(&self) -> &TokenTries {
        &self.tries
    }
}

impl std::ops::DerefMut for RequestTries<'_> {
    fn deref_mut(&mut self) -> &mut TokenTries {
        &mut self.tries
    }
}

impl Drop for RequestTries<'_> {
    fn drop(&mut self) {
        // Nearly no request was given one: the lock every task takes for its grant is
        // not taken once more for each request's end.
        if !self.tries.was_given_resend() {
            return;
        }
        let mut s = self.auth.state.lock().expect("auth state poisoned");
        s.let_go(&self.tries);
    }
}

/// A registry's 401, as [`Authorizer::challenged_again`] reacts to it.
pub(crate) struct Challenged<'a> {
    /// Its `WWW-Authenticate` headers.
    pub(crate) www_authenticate: &'a [String],
    /// Whether the request already met a 401, so that what it sent came after it.
    pub(crate) again: bool,
    /// The secrets the request sent (its `Authorization`, configured headers, a proxy's
    /// credentials), kept out of a challenge the error repeats.
    pub(crate) sent: &'a Sent,
    /// Whether the request carried an `Authorization` its host's configuration (a
    /// `hosts.toml` `[header]`) sets: refused with no login found, that header is what
    /// the server turned down, and `docker login` is no remedy.
    pub(crate) configured_authorization: bool,
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
    /// The credential `credential` holds, readable while a lookup holds that lock (a
    /// helper running for another task): a server's text an error repeats is kept clear
    /// of it without waiting for the helper.
    credential_known: Mutex<Option<Credential>>,
    /// When the credential was last looked up again after a refusal: a registry that
    /// refuses every request (a repository the account may not read) must not have the
    /// helper run for each of them.
    relooked: Mutex<Option<Instant>>,
    /// The lookup's last failure (a credential helper missing, failing, or silent for its
    /// whole minute): given again for a while to the requests that need the credential,
    /// rather than have each run the helper, and wait for it, once more.
    lookup_failed: Mutex<Option<lookup::Failed>>,
    /// The credential the registry or its token server refused, with the refusal: it is
    /// not sent again for a while (each sending is one more failed login, and a registry
    /// backed by a directory locks the account after a few), unless looking up again
    /// gives another.
    refused: Mutex<Option<refusal::Refused>>,
    /// The registry's refusal of the tokens its token server issues, while it stands:
    /// each later request fails at its first 401 rather than ask for more tokens.
    spurned: Mutex<Option<spurned::Spurned>>,
    /// Whether `spurned` holds one: read for every request served, without the lock.
    spurning: std::sync::atomic::AtomicBool,
    state: Mutex<State>,
    refresh: tokio::sync::Mutex<()>,
    token_requests: AtomicUsize,
    /// The token realm the credentials found were kept from, and why, once it happened.
    withheld_from: std::sync::OnceLock<(String, token::Withheld)>,
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
            credential_known: Mutex::new(None),
            relooked: Mutex::new(None),
            lookup_failed: Mutex::new(None),
            refused: Mutex::new(None),
            spurned: Mutex::new(None),
            spurning: Default::default(),
            state: Mutex::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
            token_requests: AtomicUsize::new(0),
            withheld_from: std::sync::OnceLock::new(),
        }
    }

    /// An authorizer for `team/app` on `https://r.example`, with a default transport, as
    /// the unit tests of the auth modules build one.
    #[cfg(test)]
    pub(crate) fn for_tests(source: CredentialSource) -> Authorizer {
        let transport = Transport::new(Default::default()).expect("a default transport");
        Authorizer::new(
            transport,
            "r.example",
            "https://r.example",
            "team/app",
            source,
        )
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
        self.grant_again(policy, &mut TokenTries::default()).await
    }

    /// The [`TokenTries`] of a request to this registry, which gives back, when dropped
    /// with the request, the refused token it was given to send once more and never had
    /// the registry's word on ([`State::let_go`]).
    pub(crate) fn token_tries(&self) -> RequestTries<'_> {
        RequestTries {
            auth: self,
            tries: TokenTries::default(),
        }
    }

    /// [`grant`](Self::grant) for a request that may have met a failed token request
    /// before, noted in `tries`: a later one's failure is its retry's outcome.
    pub(crate) async fn grant_again(
        &self,
        policy: &RetryPolicy,
        tries: &mut TokenTries,
    ) -> Result<Grant> {
        let mut s = self.snapshot();
        let now = Stamp::now();
        // A token the registry refused is not sent again: it would meet the same 401.
        let refused = s.pending().is_some();
        if refused || s.expires_at.is_some_and(|t| now >= t) {
            if let Some(header) = s.resend_held(tries, now) {
                return Ok(Grant {
                    header: Some(header),
                    generation: s.generation,
                    retried: true,
                });
            }
            if !refused && s.valid_until.is_some_and(|t| now < t) {
                self.renew_early(s.generation, policy).await;
            } else if let Err(e) = self.renew(s.generation, s.flights, tries, policy).await {
                // Unless it was refused once, and is still valid: see `second_chance`.
                let mut s = self.state.lock().expect("auth state poisoned");
                let header = s.second_chance(Stamp::now(), tries).ok_or(e)?;
                tracing::debug!("the token's renewal failed; sending the token refused once again");
                return Ok(Grant {
                    header: Some(header),
                    generation: s.generation,
                    retried: true,
                });
            }
            s = self.snapshot();
        }
        Ok(Grant {
            header: s.header,
            generation: s.generation,
            retried: false,
        })
    }

    /// The registry served a request sent with `used`: a refusal of that token, or of the
    /// tokens from its token server, was not the last word. Called for every request
    /// served, and cheap for nearly all of them.
    pub(crate) fn served(&self, used: &Grant) {
        if used.retried {
            // A token refused once, sent once more and taken: that refusal was spurious.
            let mut s = self.state.lock().expect("auth state poisoned");
            if s.refused_now().is_some() && s.generation == used.generation {
                s.refused = None;
            }
        }
        self.unspurned(used);
    }

    /// Notes the registry's 401 to `used` when it sent a refused token once more
    /// ([`State::second_chance`]): refused twice, the refusal was no spurious one, and
    /// the token is not sent again, nor given back by its request ([`State::let_go`]).
    /// Its renewal is all that may help.
    fn refused_again(&self, used: &Grant) {
        if !used.retried {
            return;
        }
        let mut s = self.state.lock().expect("auth state poisoned");
        if let Some(r) = s
            .refused
            .as_mut()
            .filter(|r| r.generation == used.generation)
        {
            r.again = true;
        }
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
        let s = self.snapshot();
        if s.generation != used.generation {
            // Another task already put other credentials in place, or stopped sending
            // these ([`expired`](Self::expired)): sent without, the request would meet a
            // 401 its rounds may no longer answer, and fail in words saying less.
            return s.header.is_some();
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
    /// could not replace. The refusal is remembered as a 401's is, and the credentials are
    /// no longer sent: each request of a long batch sent them again, to meet the same 403.
    /// `None` when `used` sent no Basic credentials.
    pub(crate) async fn expired(&self, used: &Grant, said: &str) -> Option<Error> {
        if !used.sends(b"Basic") {
            return None;
        }
        let (credential, origin) = match self.found().await {
            Ok(Some(found)) => found,
            _ => return None,
        };
        let message = refused_message(
            &self.registry_host,
            &self.repository,
            Some(&origin),
            Some(said),
        );
        let e = Error::new(ErrorKind::Unauthorized, message)
            .with_status(403)
            .with_login_from(&origin);
        let _flight = self.refresh.lock().await;
        // Otherwise another task already put other credentials in place.
        if self.snapshot().generation == used.generation {
            self.remember_refusal(&credential, &e);
            self.forget_basic();
        }
        Some(e)
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
        let mut tries = TokenTries::default();
        let sent = Sent::header(used.header.as_ref());
        let reply = Challenged {
            www_authenticate,
            again,
            sent: &sent,
            configured_authorization: false,
        };
        self.challenged_again(used, reply, &mut tries, policy).await
    }

    /// [`challenged`](Self::challenged) for a request that may have met a failed token
    /// request before, noted in `tries`: a later one's failure is its retry's outcome.
    pub(crate) async fn challenged_again(
        &self,
        used: &Grant,
        reply: Challenged<'_>,
        tries: &mut TokenTries,
        policy: &RetryPolicy,
    ) -> Result<()> {
        let Challenged {
            www_authenticate,
            again,
            sent,
            configured_authorization,
        } = reply;
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
        self.refused_again(used);
        if let Some(e) = s.failure_since(flights, tries) {
            tries.took(s.flights);
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
            // A token sent once more after a refusal (`second_chance`) was fetched for no
            // challenge of this request's: refused again, it is that token, whose renewal
            // may open the repository, where the request, past a round of its own, was
            // failed as denied for good.
            let fresh =
                again && ch.param("error").is_none() && used.sends(b"Bearer") && !used.retried;
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
            // The token itself refused, not a scope it lacks: not sent again until
            // another replaces it (see `State::refused`). Each request sent with it met the
            // same 401 before it asked for the token, once per retry while the token
            // server failed (32 for 8 objects with `--retries 3`). A wider scope asked
            // for leaves it good for the others.
            let held = s.bearer.as_ref().and_then(|b| b.param("scope"));
            let held = merged_scopes(&self.scopes, held);
            if used.sends(b"Bearer") && merged_scopes(&held, ch.param("scope")).len() == held.len()
            {
                let mut s = self.state.lock().expect("auth state poisoned");
                let before = s.refused_now();
                let again = before.is_some_and(|r| r.again) || used.retried;
                let resent_at = before.and_then(|r| r.resent_at);
                s.refused = Some(RefusedToken {
                    generation: used.generation,
                    challenge: ch.clone(),
                    again,
                    resent_at,
                });
            }
            return self.fetch_token_for(ch.clone(), tries, policy).await;
        }
        if basic.is_some() {
            let Some(found) = self.found().await? else {
                return Err(self.no_credentials("Basic", configured_authorization));
            };
            let mut header = self.basic_header(Some(&found))?;
            let (credential, origin) = &found;
            let refused_now = used.header.as_ref() == Some(&header);
            let standing = self.refusal_of(credential);
            if refused_now || standing.is_some() {
                let Some(renewed) = self.renewed_basic(credential).await? else {
                    // A standing refusal in the registry's words (ECR's 403) says more.
                    let e = standing.filter(|_| !refused_now).unwrap_or_else(|| {
                        let message = refused_message(
                            &self.registry_host,
                            &self.repository,
                            Some(origin),
                            None,
                        );
                        Error::new(ErrorKind::Unauthorized, message)
                            .with_status(401)
                            .with_login_from(origin)
                    });
                    // A refusal that stands, met again by a request that went without the
                    // credential, is no new one: counted as one, it would stand for as
                    // long as requests keep coming, and the credential never go again.
                    if refused_now {
                        self.remember_refusal(credential, &e);
                    }
                    self.forget_basic();
                    return Err(e);
                };
                header = renewed;
            }
            self.put_basic(header);
            return Ok(());
        }
        Err(self.unsupported(www_authenticate, sent))
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
            retried: false,
        };
        assert!(grant(Some("Bearer abc")).sends(b"Bearer"));
        assert!(!grant(Some("Bearer abc")).sends(b"Basic"));
        assert!(grant(Some("Basic YTpi")).sends(b"Basic"));
        assert!(!grant(Some("Bearerx abc")).sends(b"Bearer"));
        assert!(!grant(None).sends(b"Bearer"));
    }

    #[test]
    fn a_grant_debugs_without_its_header() {
        let mut header = HeaderValue::from_static("Bearer s3cret-token");
        // Marked as the authorizer marks it; `Debug` must not rely on that alone.
        header.set_sensitive(false);
        let grant = Grant {
            header: Some(header),
            generation: 3,
            retried: false,
        };
        let shown = format!("{grant:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("Bearer"), "the scheme is no secret: {shown}");
    }
}
