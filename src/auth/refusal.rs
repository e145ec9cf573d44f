//! What a refusal says: who was refused, for what, and how to fix it.

use std::sync::Arc;

use super::credentials::Credential;
use super::Authorizer;
use crate::error::{Error, ErrorKind};

impl Authorizer {
    /// The refusal `credential` met already, if it did: sent again, it would be one more
    /// failed login on an account that may lock after a few.
    pub(super) fn refusal_of(&self, credential: &Credential) -> Option<Error> {
        let refused = self.refused.lock().expect("auth state poisoned");
        let (c, e) = refused.as_ref()?;
        (c == credential).then(|| e.shared())
    }

    /// Records that `credential` was refused, with `refusal`, for [`refusal_of`](Self::refusal_of).
    pub(super) fn remember_refusal(&self, credential: &Credential, refusal: &Error) {
        let mut refused = self.refused.lock().expect("auth state poisoned");
        *refused = Some((credential.clone(), Arc::new(refusal.shared())));
    }

    /// A token that was fetched for the scope the registry asks for, and still does not
    /// open it. Registries (Docker Hub among them) answer so for a repository that does
    /// not exist as well as for one the caller may not read, so the message names both.
    pub(super) async fn not_granted(&self, scope: Option<&str>, said: &str) -> Error {
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

    pub(super) fn no_credentials(&self, scheme: &str) -> Error {
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

/// Who a token that did not open the repository was issued to.
enum Caller<'a> {
    Anonymous,
    Credentials,
    /// Anonymous, because the credentials found could not go to this realm.
    Withheld(&'a str),
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
        let kept = Caller::Withheld("http://auth.example/token");
        let kept = not_granted_message("r.example", None, "insufficient_scope", kept);
        assert!(kept.contains("were not sent to its token service http://auth.example/token"));
    }
}
