//! Bearer tokens: asked for single-flight, renewed before they expire, and backed off
//! after a failed request.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

use super::challenge::Challenge;
use super::clock::Stamp;
use super::credentials::Credential;
use super::refusal::{kept_back_message, refused_message};
use super::scope::merged_scopes;
use super::state::TokenTries;
use super::{token, Authorizer, CredentialSource};
use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;

/// Tokens are renewed this long before they expire (or after three quarters of a shorter
/// lifetime), so a request is never sent with a token that dies in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

fn renew_at(expires_at: Stamp, lifetime: Duration) -> Stamp {
    expires_at - EXPIRY_MARGIN.min(lifetime / 4)
}

impl Authorizer {
    /// Renews an expired token, or one the registry refused, unless another task already
    /// did since `generation`, or tried and failed since `flights` or since the failure
    /// `tries` took.
    pub(super) async fn renew(
        &self,
        generation: u64,
        flights: u64,
        tries: &mut TokenTries,
        policy: &RetryPolicy,
    ) -> Result<()> {
        let _flight = self.refresh.lock().await;
        let s = self.snapshot();
        if s.generation != generation {
            return Ok(());
        }
        if let Some(e) = s.failure_since(flights, tries) {
            tries.took(s.flights);
            return Err(e);
        }
        if let Some(e) = s.failure_in_backoff(tries, Instant::now()) {
            tries.took(s.flights);
            return Err(e);
        }
        match s.pending().or(s.bearer.as_ref()) {
            Some(ch) => self.fetch_token_for(ch.clone(), tries, policy).await,
            None => Ok(()),
        }
    }

    /// [`fetch_token`](Self::fetch_token) for a request that notes in `tries` the failure
    /// it takes. Called with the refresh lock held, so no other token request finishes
    /// in between.
    pub(super) async fn fetch_token_for(
        &self,
        ch: Challenge,
        tries: &mut TokenTries,
        policy: &RetryPolicy,
    ) -> Result<()> {
        let fetched = self.fetch_token(ch, policy).await;
        if fetched.is_err() {
            tries.took(self.snapshot().flights);
        }
        fetched
    }

    /// Renews a token due for renewal that is still valid, unless another task is at it,
    /// already did since `generation`, or the last token request failed within its
    /// backoff. The token it would replace still opens the repository: the other tasks
    /// send it meanwhile rather than wait for the token server, and a failure (a passing
    /// 503) leaves it in use while it lasts.
    pub(super) async fn renew_early(&self, generation: u64, policy: &RetryPolicy) {
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
    pub(super) async fn fetch_token(&self, ch: Challenge, policy: &RetryPolicy) -> Result<()> {
        self.back_off(policy).await?;
        let result = self.ask_token(ch).await;
        let mut s = self.state.lock().expect("auth state poisoned");
        s.flights += 1;
        match &result {
            Ok(()) => {
                s.failed = None;
                s.failures = 0;
                s.retry_at = None;
                // Replaced, the refused token is no longer pending (its generation
                // passed); not kept, as every snapshot would copy its challenge.
                s.refused = None;
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
        // A realm no token can come from fails as that, before anything is said of where
        // the credentials may go: a realm that is no URL is no plain-HTTP one either.
        let (_, realm) = token::realm_of(&ch)?;
        let cred = found.as_ref().map(|(c, _)| c);
        let scopes = merged_scopes(&self.scopes, ch.param("scope"));
        let withheld = token::withheld(&realm, &self.api_origin);
        let sent = cred.filter(|_| withheld.is_none());
        if let (Some(_), Some(why)) = (cred, withheld) {
            self.withhold(&ch, why);
        }
        // Refused once, the credential is not sent again: the token server's answer to it
        // stands, unless looking up again (below) gives another.
        let mut credentials_sent = sent.is_some();
        let mut token = match sent.and_then(|c| self.refusal_of(c)) {
            Some(refusal) => {
                // Not sent: meeting the refusal again is no new one, which would have it
                // stand for as long as requests keep coming.
                credentials_sent = false;
                Err(refusal)
            }
            None => self.token_for(&ch, &scopes, cred).await,
        };
        // A proxy's refusal of its own credentials on the way to the realm (a 407 to
        // the CONNECT, a SOCKS proxy's) says nothing of the login or its absence.
        if let (Err(e), Some(refused)) = (&token, sent) {
            if e.kind() == ErrorKind::Unauthorized && !e.is_proxy_login() {
                // Another host's authorizer may have had it rotated while this one asked.
                let renewed = match self.rotated(&ch, found.as_ref()) {
                    Some(newer) => Some(newer),
                    None => self.renewed(refused).await,
                };
                if let Some(renewed) = renewed {
                    token = self.token_for(&ch, &scopes, Some(&renewed.0)).await;
                    found = Some(renewed);
                    credentials_sent = true;
                }
            }
        }
        // The token service answered, not the registry's API: a refusal turned down none
        // of the headers its requests carry, wherever its realm is.
        let token = match token.map_err(Error::at_token_service) {
            Ok(token) => token,
            // The token server's 401 (or OAuth2's invalid_grant) is about the credentials
            // (or their absence), which its own words rarely say.
            Err(e) if e.kind() == ErrorKind::Unauthorized && !e.is_proxy_login() => {
                if let (Some((refused, _)), true) = (&found, credentials_sent) {
                    self.remember_refusal(refused, &e);
                }
                let origin = found.as_ref().map(|(_, o)| o.as_str());
                let message = match (&found, withheld) {
                    // The anonymous token asked for instead was refused: logging in again
                    // would not change that, where the realm does.
                    (Some(_), Some(why)) => {
                        kept_back_message(&self.registry_host, &self.repository, why, e.message())
                    }
                    _ => refused_message(
                        &self.registry_host,
                        &self.repository,
                        origin,
                        Some(e.message()),
                    ),
                };
                let mut refused = Error::new(ErrorKind::Unauthorized, message)
                    .with_status(e.status().unwrap_or(401))
                    .at_token_service();
                if let Some(url) = e.url() {
                    refused = refused.with_url(url);
                }
                // The anonymous token asked for in place of a login kept back refuses
                // no login of dist's.
                refused = match (origin, withheld) {
                    (Some(origin), None) => refused.with_login_from(origin),
                    (Some(origin), Some(_)) => refused.with_login_kept_back(origin),
                    (None, _) => refused,
                };
                return Err(refused);
            }
            Err(e) => match (e.kind(), &found, withheld) {
                // A 403 to the anonymous token refuses it as a 401 does: said only as
                // `403 Forbidden`, the credentials found seemed refused.
                (ErrorKind::Denied, Some((_, origin)), Some(why)) => {
                    let message =
                        kept_back_message(&self.registry_host, &self.repository, why, e.message());
                    let mut denied = Error::new(ErrorKind::Denied, message)
                        .with_status(e.status().unwrap_or(403))
                        .with_login_kept_back(origin)
                        .at_token_service();
                    if let Some(url) = e.url() {
                        denied = denied.with_url(url);
                    }
                    return Err(denied);
                }
                _ => return Err(e),
            },
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
                let mut slot = self.credential.lock().await;
                self.put_found(&mut slot, Some(rotated));
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
            )
            .with_login_from(origin));
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

    /// Says once that the credentials found stay home, and `why`: the token realm is
    /// plain HTTP away from the registry's own plain-HTTP origin, where a registry could
    /// lure a password onto the network (or a TLS proxy's misconfigured registry leak it
    /// there); or its address has user information, which can hide the host it leads to.
    fn withhold(&self, ch: &Challenge, why: token::Withheld) {
        let realm = ch.param("realm").unwrap_or_default();
        let realm = crate::error::redact_url(realm);
        if self.withheld_from.set((realm.clone(), why)).is_ok() {
            tracing::warn!(
                "{}: the credentials found for it are not sent to its token service {realm}, \
                 {}; asking for an anonymous token",
                self.registry_host,
                why.says()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{challenge, clock, DockerConfig, Grant};
    use crate::transport::Transport;

    /// A realm whose address has user information keeps the credentials for that, over
    /// https too: what is said of it must not be that it is plain HTTP.
    #[tokio::test]
    async fn a_realm_with_user_information_is_said_to_have_it() {
        let a = Authorizer::for_tests(CredentialSource::Fixed(Credential::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        }));
        let policy = RetryPolicy {
            retries: 0,
            ..Default::default()
        };
        let anonymous = a.grant(&policy).await.unwrap();
        // Nothing listens there: the anonymous token request fails, after the choice.
        let challenge = r#"Bearer realm="https://me@127.0.0.1:9/token",service="r.example""#;
        let _ = a
            .challenged(&anonymous, &[challenge.to_string()], false, &policy)
            .await;
        let (realm, why) = a.withheld_from.get().expect("the credentials were kept");
        assert_eq!(*why, token::Withheld::UserInfo);
        assert_eq!(realm, "https://127.0.0.1:9/token");
        assert!(!why.says().contains("plain HTTP"));
    }

    /// A token whose lifetime ran out while the machine was suspended, which `Instant`
    /// does not count, is renewed before it is sent again, not after the 401 it would get.
    #[tokio::test]
    async fn a_token_that_ended_while_the_machine_slept_is_renewed() {
        let origin = gone_origin();
        let auth = issued_at(&origin);
        let policy = no_retries();
        let sent = auth.grant(&policy).await.unwrap();
        assert_eq!(sent.header.unwrap(), "Bearer issued");
        assert_eq!(auth.token_requests(), 0);

        clock::tests::suspend(Duration::from_secs(3600));
        // The token server is gone: the renewal's failure shows it was asked.
        assert!(auth.grant(&policy).await.is_err());
        assert_eq!(auth.token_requests(), 1);
    }

    /// No retries: a token request that fails fails its grant at once.
    fn no_retries() -> RetryPolicy {
        RetryPolicy {
            retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Grants `auth`'s token and has the registry refuse it with `challenge` while the
    /// token server is gone, so that its renewal fails; returns the grant refused.
    async fn refused_once(auth: &Authorizer, challenge: &[String], policy: &RetryPolicy) -> Grant {
        let used = auth.grant(policy).await.unwrap();
        assert!(auth
            .challenged(&used, challenge, false, policy)
            .await
            .is_err());
        used
    }

    /// An origin nothing listens on: a token server gone.
    fn gone_origin() -> String {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        origin
    }

    /// An authorizer holding a token issued now for 300 s by the realm at `origin`, its
    /// challenge as the registry's ping gives it: no scope, dist's own asked for.
    fn issued_at(origin: &str) -> Authorizer {
        let transport = Transport::new(Default::default()).unwrap();
        let auth = Authorizer::new(transport, "r.example", origin, "a", CredentialSource::None);
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
        auth
    }

    /// A request that finds the token ended during the backoff after a failed renewal
    /// takes that failure as its first try's, rather than wait the backoff out and ask
    /// for itself, a token request behind the others ever after.
    #[tokio::test]
    async fn a_request_during_the_renewal_s_backoff_takes_its_failure() {
        let auth = issued_at(&gone_origin());
        {
            let mut s = auth.state.lock().unwrap();
            s.expires_at = Some(Stamp::now());
            s.valid_until = Some(Stamp::now());
        }
        let policy = RetryPolicy {
            retries: 3,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(60),
        };
        assert!(auth.grant(&policy).await.is_err());
        assert_eq!(auth.token_requests(), 1);
        let late = tokio::time::timeout(Duration::from_secs(5), auth.grant(&policy)).await;
        let late = late.expect("waited out the backoff to ask for itself");
        assert!(late.is_err());
        assert_eq!(auth.token_requests(), 1);
    }

    /// A token the registry refused (revoked) is sent once more when its renewal fails,
    /// as a registry may refuse a good token once; refused again, it is not sent while its
    /// renewal fails: the next grant asks the token server instead of sending it to meet
    /// the same 401. A challenge for a scope the token was never asked for refuses no
    /// token: it is still sent for the others.
    #[tokio::test]
    async fn a_refused_token_is_not_granted_again_while_its_renewal_fails() {
        let origin = gone_origin();
        let policy = no_retries();
        for (scope, refused) in [("repository:a:pull", true), ("repository:b:push", false)] {
            let auth = issued_at(&origin);
            let challenge = [format!(r#"Bearer realm="{origin}/token",scope="{scope}""#)];
            refused_once(&auth, &challenge, &policy).await;
            assert_eq!(auth.token_requests(), 1);
            let granted = auth.grant(&policy).await.unwrap();
            assert_eq!(granted.header.as_ref().unwrap(), "Bearer issued");
            if !refused {
                assert_eq!(auth.token_requests(), 1, "{scope}");
                continue;
            }
            // Its renewal asked for first, then the token refused once sent once more.
            assert_eq!(auth.token_requests(), 2, "{scope}");
            assert!(auth
                .challenged(&granted, &challenge, false, &policy)
                .await
                .is_err());
            assert_eq!(auth.token_requests(), 3, "{scope}");
            let granted = auth.grant(&policy).await;
            assert!(
                granted.is_err(),
                "{scope}: the token refused twice was granted"
            );
            assert_eq!(auth.token_requests(), 4, "{scope}");
        }
    }

    /// A registry that refuses a good token once (a replica that had not heard of it yet)
    /// while the token server fails: the token, sent once more and taken, is sent on,
    /// and the token server is not asked again. Before, every request asked it, and
    /// failed when it did, as long as it failed.
    #[tokio::test]
    async fn a_token_refused_once_and_then_taken_is_sent_on() {
        let origin = gone_origin();
        let policy = no_retries();
        let auth = issued_at(&origin);
        let challenge = [format!(
            r#"Bearer realm="{origin}/token",scope="repository:a:pull""#
        )];
        refused_once(&auth, &challenge, &policy).await;
        let retried = auth.grant(&policy).await.unwrap();
        assert_eq!(auth.token_requests(), 2);
        auth.served(&retried);
        for _ in 0..3 {
            let granted = auth.grant(&policy).await.unwrap();
            assert_eq!(granted.header.unwrap(), "Bearer issued");
        }
        assert_eq!(
            auth.token_requests(),
            2,
            "asked again after the token was taken"
        );
    }

    /// A request past a round of its own (a token fetched for its 401, then a 503) sends
    /// the token another request had refused, once more, its renewal having failed; the
    /// registry refuses it again. That refuses the token, not the repository: the request
    /// asks for its renewal, and fails as the token server does, where it failed as
    /// denied, for good, naming a repository the credentials may read.
    #[tokio::test]
    async fn a_token_sent_once_more_and_refused_again_is_renewed_not_denied() {
        let origin = gone_origin();
        let policy = no_retries();
        let auth = issued_at(&origin);
        let challenge = [format!(r#"Bearer realm="{origin}/token""#)];
        refused_once(&auth, &challenge, &policy).await;
        let resent = auth.grant(&policy).await.unwrap();
        assert_eq!(resent.header.as_ref().unwrap(), "Bearer issued");
        assert_eq!(auth.token_requests(), 2);
        let e = auth
            .challenged(&resent, &challenge, true, &policy)
            .await
            .unwrap_err();
        assert_ne!(e.kind(), ErrorKind::Denied, "{e}");
        assert_eq!(auth.token_requests(), 3, "its renewal asked for: {e}");
    }

    /// A token sent once more, its renewal having failed, and refused again by a 401
    /// the request asks nothing more about (the refusal of the token server's tokens
    /// standing, or the request's rounds spent) is refused twice: its request, ended,
    /// does not give it back, and the next request does not send it a third time.
    #[tokio::test]
    async fn a_token_sent_once_more_and_refused_by_a_final_401_is_not_given_back() {
        let origin = gone_origin();
        let policy = no_retries();
        let challenge = [format!(
            r#"Bearer realm="{origin}/token",error="invalid_token""#
        )];
        for spurned_before in [false, true] {
            let auth = issued_at(&origin);
            let used = refused_once(&auth, &challenge, &policy).await;
            if spurned_before {
                // Another request's rounds, spent on the same token.
                auth.spurned(&used, &challenge);
            }
            let mut tries = auth.token_tries();
            let resent = auth.grant_again(&policy, &mut tries).await.unwrap();
            assert!(resent.retried, "sent once more");
            if spurned_before {
                assert!(auth.spurns(&resent, &challenge), "its 401 is the answer");
            } else {
                auth.spurned(&resent, &challenge);
            }
            drop(tries);
            let next = auth.grant(&policy).await;
            assert!(next.is_err(), "sent a third time: {next:?}");
        }
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
}
