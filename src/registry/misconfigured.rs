//! A mirror that fails for a reason that will not pass by itself (credentials refused,
//! a certificate not trusted, the wrong scheme) is said once per mirror, at the warning
//! level: bypassed in silence, a pull-through cache set up to save egress would go
//! unused for weeks with every object fetched from the registry. containerd logs each
//! host it passes over at the info level, in its daemon's log; a one-shot CLI has no
//! daemon log to read later, and a line per object would bury a batch's other lines.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, ErrorKind};

/// Why a mirror's failure will not pass by itself, and whether it is then left alone
/// for the rest of the run; `None` for a failure that may (a 404 for content a
/// pull-through cache lacks, a 5xx, a refused connection). `answered`: who of the
/// mirror's servers answered `e`.
pub(crate) fn lasting(e: &Error, answered: Answered) -> Option<Lasting> {
    // Refused anonymous, a login dist had and did not send: neither "refused access" nor
    // "dist sent none" tells the user the login was found, and where.
    if let (ErrorKind::Unauthorized | ErrorKind::Denied, Some(origin)) =
        (e.kind(), e.login_kept_back())
    {
        let status = e.status().unwrap_or(401);
        // The mirror's own refusal came to the anonymous token its service did grant.
        let given = if answered.own { "access" } else { "token" };
        return Some(Lasting {
            cause: format!(
                "gives anonymous callers no {given} ({status}), and the login from {origin} \
                 was kept back from its token service"
            )
            .into(),
            for_the_run: true,
        });
    }
    // The configured header goes with the mirror's own API requests alone: a token
    // service's refusal, or a redirect target's, turned down no header of the user's.
    let configured_login = answered.own && answered.configured_login;
    let (cause, for_the_run) = match e.kind() {
        // Not the mirror's: it was never reached.
        ErrorKind::Unauthorized if e.is_proxy_login() => (
            "cannot be reached: its proxy's credentials are missing or refused",
            true,
        ),
        // Said as it is: "does not accept dist's login" sent a user with no login for
        // the mirror looking for a wrong one.
        ErrorKind::Unauthorized => {
            let status = e.status().unwrap_or(401);
            let cause = match (e.login_from(), e.login_unsendable()) {
                (Some(origin), _) => format!("refused the login from {origin} ({status})"),
                // A login was found, and is what the challenge cannot take.
                (None, Some((origin, what))) => format!(
                    "asks for Basic authentication ({status}), and the login from {origin} is \
                     {what}, which it cannot send"
                ),
                // "dist sent none" of a request that carried the configured header.
                // Logins go to the host they are for alone, never along a redirect.
                (None, None) if e.is_at_redirect_target() => format!(
                    "sent dist on to a redirect's target that asks for a login ({status}), \
                     which dist sends no login to: a login goes to the host it is for alone"
                ),
                (None, None) if configured_login => {
                    format!("refused the Authorization its hosts.toml [header] sets ({status})")
                }
                (None, None) => format!("asks for a login ({status}), and dist sent none"),
            };
            return Some(Lasting {
                cause: cause.into(),
                for_the_run: true,
            });
        }
        // With the status the error line has: a token refused its scope is a 401.
        ErrorKind::Denied => {
            let status = e.status().unwrap_or(403);
            return Some(Lasting {
                cause: format!("refused access ({status})").into(),
                for_the_run: true,
            });
        }
        ErrorKind::ProxyRefused => (
            "cannot be reached: the proxy refused to carry the connection",
            true,
        ),
        ErrorKind::Certificate => ("has a certificate that is not trusted", false),
        ErrorKind::NotTls => (
            "speaks another scheme than its URL says (https to a plain-HTTP server, or \
             the reverse)",
            false,
        ),
        ErrorKind::TlsIncompatible => ("has no TLS version or cipher in common with dist", false),
        _ => return None,
    };
    Some(Lasting {
        cause: cause.into(),
        for_the_run,
    })
}

/// Who of a mirror's servers answered with a failure, and what its requests carried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered {
    /// The mirror's own API, not its token service nor a redirect's target.
    pub(crate) own: bool,
    /// Its `hosts.toml` `[header]` sets an `Authorization`, which its own requests carry
    /// until dist answers its challenge with a credential of its own.
    pub(crate) configured_login: bool,
}

/// A mirror failure that will not pass by itself.
#[derive(Debug, Clone)]
pub(crate) struct Lasting {
    /// What is wrong, after "the mirror `<url>`".
    cause: std::borrow::Cow<'static, str>,
    /// Whether the mirror is not asked again this run: asking again would only be
    /// refused again, one round trip per object. A certificate or scheme is left to the
    /// mark-down's timing instead (a certificate may be renewed during a long batch).
    pub(crate) for_the_run: bool,
}

impl Lasting {
    /// Says the failure, unless it was said for this mirror (`api`, its API root, which
    /// holds no credentials) already in this process: each repository has hosts of its
    /// own, and a batch over many would otherwise say it once per repository.
    /// `then_registry`: whether the registry itself may serve what the mirror failed.
    pub(crate) fn warn_once(&self, api: &str, e: &Error, then_registry: bool) {
        if !first_time(api) {
            return;
        }
        let instead = if then_registry {
            "objects are fetched from the registry instead"
        } else {
            "the next host that may serve its objects is asked instead, if any"
        };
        let then = if self.for_the_run {
            "it is not asked again this run"
        } else {
            "it is asked again later"
        };
        tracing::warn!(error = %e, "the mirror {api} {}; {instead}, and {then}", self.cause);
    }
}

/// Whether `api` is said for the first time in this process.
fn first_time(api: &str) -> bool {
    static SAID: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SAID.get_or_init(Mutex::default)
        .lock()
        .expect("mirror warnings poisoned")
        .insert(api.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mirror's own API answered, with no configured `Authorization`.
    const OWN: Answered = Answered {
        own: true,
        configured_login: false,
    };

    #[test]
    fn refused_credentials_last_for_the_run_and_a_404_does_not_last() {
        let refused = Error::new(ErrorKind::Unauthorized, "401");
        assert!(lasting(&refused, OWN).is_some_and(|l| l.for_the_run));
        let refused = refused.with_login_from("/home/me/.docker/config.json");
        assert!(lasting(&refused, OWN).is_some_and(|l| l.for_the_run));
        let untrusted = Error::new(ErrorKind::Certificate, "unknown issuer");
        assert!(lasting(&untrusted, OWN).is_some_and(|l| !l.for_the_run));
        assert!(lasting(&Error::new(ErrorKind::NotFound, "404"), OWN).is_none());
        assert!(lasting(&Error::new(ErrorKind::Http, "503"), OWN).is_none());
        assert!(lasting(&Error::new(ErrorKind::Connect, "refused"), OWN).is_none());
    }

    #[test]
    fn a_mirror_is_said_once() {
        let api = "http://misconfigured.invalid:1/v2/";
        assert!(first_time(api));
        assert!(!first_time(api));
        assert!(first_time("http://another.invalid:1/v2/"));
    }
}
