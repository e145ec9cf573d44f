//! What a refusal says: who was refused, for what, and how to fix it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::credentials::Credential;
use super::token::Withheld;
use super::{Authorizer, Sent};
use crate::error::{Error, ErrorKind};

/// How long a refusal stands for the credential it met. Directory-backed registries lock
/// an account after a few failures within some minutes, so one more try every five is
/// far below that; and a refusal from a passing outage (the directory down, the token
/// service answering 401 meanwhile) does not stop a long-running service for good.
const REFUSAL_STANDS: Duration = Duration::from_secs(300);

/// A credential refused, with the refusal and when it came.
pub(super) struct Refused {
    credential: Credential,
    refusal: Arc<Error>,
    at: Instant,
}

impl Authorizer {
    /// The refusal `credential` met within [`REFUSAL_STANDS`], if it did: sent again, it
    /// would be one more failed login on an account that may lock after a few.
    pub(super) fn refusal_of(&self, credential: &Credential) -> Option<Error> {
        let refused = self.refused.lock().expect("auth state poisoned");
        let r = refused.as_ref()?;
        (r.credential == *credential && r.at.elapsed() < REFUSAL_STANDS).then(|| r.refusal.shared())
    }

    /// Records that `credential` was refused, with `refusal`, for [`refusal_of`](Self::refusal_of).
    pub(super) fn remember_refusal(&self, credential: &Credential, refusal: &Error) {
        let mut refused = self.refused.lock().expect("auth state poisoned");
        *refused = Some(Refused {
            credential: credential.clone(),
            refusal: Arc::new(refusal.shared()),
            at: Instant::now(),
        });
    }

    /// A token that was fetched for the scope the registry asks for, and still does not
    /// open it. Registries (Docker Hub among them) answer so for a repository that does
    /// not exist as well as for one the caller may not read, so the message names both.
    /// `Denied`, with the registry's status, 401.
    pub(super) async fn not_granted(&self, scope: Option<&str>, said: &str) -> Error {
        let found = self.found().await;
        let caller = match (&found, self.withheld_from.get()) {
            (_, Some((realm, why))) => Caller::Withheld(realm, *why),
            (Ok(None), _) => Caller::Anonymous,
            _ => Caller::Credentials,
        };
        let kept_back = matches!(caller, Caller::Withheld(..));
        let e = Error::new(
            ErrorKind::Denied,
            // A challenge without a scope (Quay's) was answered for dist's own.
            not_granted_message(
                &self.registry_host,
                scope.or(self.scopes.first().map(String::as_str)),
                said,
                caller,
            ),
        )
        // The registry's 401 to the token, which a caller counting by status counts as one.
        .with_status(401);
        // The anonymous token was asked for in place of a login kept back: the mirror
        // warning names that login, as the message does.
        match found {
            Ok(Some((_, origin))) if kept_back => e.with_login_kept_back(&origin),
            _ => e,
        }
    }

    /// The registry's 401 challenged only in schemes dist does not speak (`Negotiate`,
    /// `Digest`), in `www_authenticate`, which is shown: the schemes tell the user what the
    /// registry wants. A challenge is the server's text, which may repeat what the request
    /// `sent` (a gateway echoing the request), or hold a URL with a login or a token in
    /// its query: those are hidden as in any server's words.
    pub(super) fn unsupported(&self, www_authenticate: &[String], sent: &Sent) -> Error {
        let text = sent.hide(&www_authenticate.join(", "));
        // The credential itself, as a token server got it, when it was looked up: never
        // looked up for a message, nor waited for while a helper runs (taken from the
        // lookup's lock, it was shown while another task's helper ran).
        let known = self
            .credential_known
            .lock()
            .expect("auth state poisoned")
            .clone();
        let text = Sent::credential(known.as_ref()).hide(&text);
        // Of any length (hyper takes hundreds of KiB): on one short line.
        let said = crate::server_text::one_line(&urls_redacted(&text));
        Error::new(
            ErrorKind::Unauthorized,
            format!("unsupported authentication challenge {said:?}"),
        )
        .with_status(401)
    }

    /// The registry's 401 challenged for `scheme`, and no credential for it was found.
    /// `configured`: the request carried an `Authorization` its `hosts.toml` `[header]`
    /// sets, which is what was refused: `docker login` alone would not change it.
    pub(super) fn no_credentials(&self, scheme: &str, configured: bool) -> Error {
        let host = &self.registry_host;
        let message = if configured {
            format!(
                "{host} asks for {scheme} authentication and refused the Authorization its \
                 hosts.toml [header] sets: correct that header (or remove it and docker login {host})"
            )
        } else {
            format!(
                "{host} asks for {scheme} authentication and no credentials for it were found (docker login {host})"
            )
        };
        Error::new(ErrorKind::Unauthorized, message).with_status(401)
    }

    /// The credential found for a Basic challenge is a token, which only a Bearer
    /// challenge's realm or registry takes: the user did log in, with a login the
    /// registry's Basic authentication has no use for.
    pub(super) fn not_for_basic(&self, credential: &Credential, origin: &str) -> Error {
        let what = match credential {
            Credential::IdentityToken(_) => "an identity token",
            Credential::RegistryToken(_) => "a registry token",
            Credential::Basic { .. } => "a user name and password",
        };
        let host = &self.registry_host;
        Error::new(
            ErrorKind::Unauthorized,
            format!(
                "{host} asks for Basic authentication, and the credential found for it \
                 (from {origin}) is {what}, which Basic authentication cannot send: log in \
                 with a user name and password (docker login {host})"
            ),
        )
        .with_status(401)
        .with_login_unsendable(origin, what)
    }
}

/// A refusal of the credentials from `origin` (`None`: none were sent, for a token for
/// `repository`), in the words of the server's `reply` if there is one, with the way to
/// fix it. A token service that refuses anonymous callers one repository (GHCR's) does
/// so for a private repository and for one that does not exist alike.
pub(super) fn refused_message(
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

/// A token service's refusal, in its `reply`, of the anonymous token asked for because
/// the credentials found were kept from it, for `why`: it says why, not that the
/// credentials were refused, which were never sent. The realm is not named: the error
/// carries its URL, which is shown before the message.
pub(super) fn kept_back_message(
    host: &str,
    repository: &str,
    why: Withheld,
    reply: &str,
) -> String {
    format!(
        "{host} gives anonymous callers no token for the repository {repository} ({reply}); \
         the credentials found for it were not sent to this token service, {}",
        why.says()
    )
}

/// `text` with every URL in it shown as [`crate::error::redact_url`] shows one: without a
/// login written into it, nor its query. A quoted URL runs to its closing quote: cut at a
/// space, a login with one (`me:my pw@`) or a query with one was shown from there. An
/// unquoted one runs to the next space or quote, and may take the parameters after it
/// along, which is better than the rest of a password with a `,` in it shown. Cut at a
/// space before any host (`realm=https://me:my pw@sso.example/in`), it runs on to the
/// next `@`: its login has a space, shown from there before. A space in an unquoted
/// query (`?t=a b`) is no URL's, and what follows it is shown.
///
/// A login cut at a space with no `@` after it (before the next quote) is not looked for
/// again in what the last search read: each such URL of a long challenge (hyper takes
/// hundreds of KiB of headers) searched the whole rest, 0.26 s for 200 KiB, 0.9 s for
/// 400 KiB, in a release build.
fn urls_redacted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // Where, in `text`, the last search for a login's `@` found none, up to the quote
    // (or end) it stopped at: none is before it, nor any quote.
    let mut no_login_to = 0;
    while let Some(at) = rest.find("://") {
        let scheme = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
        let start = rest[..at]
            .char_indices()
            .rev()
            .find(|&(_, c)| !scheme(c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let quoted = rest[..start].ends_with('"');
        let ends = |from: usize| {
            rest[from..]
                .find(|c: char| c == '"' || (!quoted && c.is_whitespace()))
                .map_or(rest.len(), |n| from + n)
        };
        let mut end = ends(at);
        let base = text.len() - rest.len();
        if !quoted && base + end >= no_login_to && login_runs_on(&rest[at + 3..end]) {
            let quote = rest[end..].find('"').map_or(rest.len(), |n| end + n);
            #[cfg(test)]
            tests::SEARCHED.with(|n| n.set(n.get() + quote - end));
            match rest[end..quote].find('@') {
                Some(i) => end = ends(end + i),
                None => no_login_to = base + quote,
            }
        }
        out.push_str(&rest[..start]);
        out.push_str(&crate::error::redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether an unquoted URL cut at a space, `after` its `://`, was cut in its login: what
/// it has is no host, and no `/`, `?`, `#` or `@` ended its authority.
fn login_runs_on(after: &str) -> bool {
    !after.is_empty()
        && !after.contains(['/', '?', '#', '@'])
        && !crate::reference::is_url_host(after)
}

/// Who a token that did not open the repository was issued to.
enum Caller<'a> {
    Anonymous,
    Credentials,
    /// Anonymous, because the credentials found could not go to this realm, for this.
    Withheld(&'a str, Withheld),
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
        Caller::Withheld(realm, why) => format!(
            "{host} gives anonymous callers no access to {what} ({said}); \
             the credentials found for it were not sent to its token service {realm}, {}",
            why.says()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// The bytes this thread's `urls_redacted` searched for a login's `@`.
        pub(super) static SEARCHED: Cell<usize> = const { Cell::new(0) };
    }

    /// A long challenge of unquoted URLs cut at a space in what may be a login, none
    /// with an `@` after it, is searched for one once, not once per URL for the rest of
    /// the text (a hostile registry's 401 cost a quarter second of CPU per 200 KiB).
    #[test]
    fn a_long_challenge_of_cut_logins_is_searched_once() {
        for tail in ["", "\"@"] {
            let unit = "realm=http://a:b ";
            let text = format!("{}{tail}", unit.repeat(200 * 1024 / unit.len()));
            SEARCHED.with(|n| n.set(0));
            assert_eq!(
                urls_redacted(&text),
                text,
                "no login, no host: shown as it is"
            );
            let searched = SEARCHED.with(Cell::get);
            assert!(
                searched <= text.len(),
                "{searched} bytes for {}",
                text.len()
            );
        }
    }

    /// A challenge that echoes the credential hides it while a lookup holds the
    /// credential's lock (a helper running again for another task): the message is not
    /// held for the helper, nor made without hiding.
    #[tokio::test]
    async fn an_echoed_challenge_hides_the_credential_while_a_lookup_runs() {
        let secret = Credential::IdentityToken("refresh-5ecret-token".into());
        let a = Authorizer::for_tests(super::super::CredentialSource::Fixed(secret));
        a.found().await.unwrap();
        let _helper_running = a.credential.lock().await;
        let challenge = r#"Negotiate realm="r", seen="refresh-5ecret-token""#.to_string();
        let e = a.unsupported(&[challenge], &Sent::default()).to_string();
        assert!(!e.contains("5ecret"), "{e}");
        assert!(e.contains(r#"seen=\"<redacted>\""#), "{e}");
    }

    /// A refusal stands for five minutes, for that credential only: then the credential is
    /// tried once more, since a directory that was down refused it as it refuses a wrong
    /// password, and a service must not stay locked out until it restarts.
    #[tokio::test]
    async fn a_refusal_stands_for_a_while_and_for_its_credential_only() {
        let a = Authorizer::for_tests(super::super::CredentialSource::None);
        let basic = |password: &str| Credential::Basic {
            username: "alice".into(),
            password: password.into(),
        };
        let refusal = Error::new(ErrorKind::Unauthorized, "refused");
        a.remember_refusal(&basic("old"), &refusal);
        assert_eq!(
            a.refusal_of(&basic("old")).map(|e| e.kind()),
            Some(ErrorKind::Unauthorized)
        );
        assert!(a.refusal_of(&basic("new")).is_none());
        // Checked only where there was such an instant, it passed unchecked on a machine up
        // for less than that.
        let long_ago = Instant::now()
            .checked_sub(REFUSAL_STANDS + Duration::from_secs(1))
            .expect("the machine has run for less than REFUSAL_STANDS: no instant that long ago");
        a.refused.lock().unwrap().as_mut().unwrap().at = long_ago;
        assert!(
            a.refusal_of(&basic("old")).is_none(),
            "tried again after a while"
        );
    }

    /// A service that keeps fetching meets the standing refusal with every request; were
    /// each of those to count as a refusal of its own, the five minutes would start again
    /// each time, and the credential would never be tried again while the service runs.
    #[tokio::test]
    async fn a_standing_refusal_is_not_lengthened_by_the_requests_it_stops() {
        let basic = Credential::Basic {
            username: "alice".into(),
            password: "old".into(),
        };
        let policy = crate::retry::RetryPolicy {
            retries: 0,
            ..Default::default()
        };
        for challenge in [
            r#"Basic realm="r""#,
            // On loopback the credential may go, but nothing listens: it must not be sent.
            r#"Bearer realm="http://127.0.0.1:9/token",service="r.example""#,
        ] {
            let a = Authorizer::for_tests(super::super::CredentialSource::Fixed(basic.clone()));
            let refusal = Error::new(ErrorKind::Unauthorized, "refused");
            a.remember_refusal(&basic, &refusal);
            // Returning here passed having checked nothing, on a machine up for less than that.
            let at = Instant::now().checked_sub(REFUSAL_STANDS / 2).expect(
                "the machine has run for less than REFUSAL_STANDS / 2: no instant that long ago",
            );
            a.refused.lock().unwrap().as_mut().unwrap().at = at;
            let anonymous = a.grant(&policy).await.unwrap();
            let e = a
                .challenged(&anonymous, &[challenge.to_string()], false, &policy)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unauthorized, "{challenge}: {e}");
            assert_eq!(a.token_requests(), 0, "{challenge}: sent again");
            let kept = a.refused.lock().unwrap().as_ref().unwrap().at;
            assert_eq!(kept, at, "{challenge}: the refusal's time moved on");
        }
    }

    /// A challenge's URLs are shown without their logins or queries, wherever the URL
    /// stands; the rest of the text is kept.
    #[test]
    fn a_challenge_s_urls_lose_their_logins_and_queries() {
        assert_eq!(
            urls_redacted(r#"Digest realm="https://me:pw@sso.example/in?t=1", qop="auth""#),
            r#"Digest realm="https://sso.example/in?…", qop="auth""#
        );
        // Unquoted, and a password with a `/` and a `,` in it.
        assert_eq!(
            urls_redacted("X realm=http://me:p/w,x@h.example/a,b=c, Y ü=z+http://h/"),
            "X realm=http://h.example/a,b=c, Y ü=z+http://h/"
        );
        assert_eq!(urls_redacted("no url: here"), "no url: here");
        // Unquoted, a space in its login: the login runs on to its `@`.
        assert_eq!(
            urls_redacted("Digest realm=https://me:my pw@sso.example/in?t=1, qop=auth"),
            "Digest realm=https://sso.example/in?… qop=auth"
        );
        // Unquoted and ended by a space after its host, it ends there: the next
        // parameter's `@` is no login's.
        assert_eq!(
            urls_redacted("X realm=https://h.example to=me@example.org"),
            "X realm=https://h.example to=me@example.org"
        );
        // Quoted, a space in its login or its query: none of either shown.
        assert_eq!(
            urls_redacted(r#"Digest realm="https://me:my pw@sso.example/in?t=a b", qop="auth""#),
            r#"Digest realm="https://sso.example/in?…", qop="auth""#
        );
    }

    /// The credential looked up is hidden from an unsupported challenge even when the
    /// request that met it sent none of it (a token traded for it).
    #[tokio::test]
    async fn an_unsupported_challenge_hides_the_credential_looked_up() {
        let basic = Credential::Basic {
            username: "alice".into(),
            password: "s3cret-pw".into(),
        };
        let a = Authorizer::for_tests(super::super::CredentialSource::Fixed(basic));
        a.found().await.unwrap();
        let sent = Sent::header(Some(&http::HeaderValue::from_static("Bearer tok-123456")));
        let challenge = ["Negotiate tok-123456, Digest nonce=\"s3cret-pw\"".to_string()];
        let e = a.unsupported(&challenge, &sent);
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert_eq!(e.status(), Some(401));
        assert_eq!(
            e.message(),
            r#"unsupported authentication challenge "Negotiate <redacted>, Digest nonce=\"<redacted>\"""#
        );
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
        let kept = Caller::Withheld("http://auth.example/token", Withheld::PlainHttp);
        let kept = not_granted_message("r.example", None, "insufficient_scope", kept);
        assert!(kept.contains("were not sent to its token service http://auth.example/token"));
        assert!(kept.ends_with("which is plain HTTP elsewhere than the registry itself"));
        let kept = Caller::Withheld("https://auth.example/token", Withheld::UserInfo);
        let kept = not_granted_message("r.example", None, "insufficient_scope", kept);
        assert!(kept.contains("user information before its host"), "{kept}");
        assert!(!kept.contains("plain HTTP"), "{kept}");
    }
}
