//! A registry that refuses the tokens its own token server issues: a signing key they do
//! not share, a scope it reads otherwise than the token server writes it, a clock behind
//! the token's. Once a request has had the tokens it was just issued refused in a row,
//! each later request would ask for the same tokens and meet the same 401s; while the
//! registry challenges the same way, it fails at its first 401 instead, for a while.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::challenge::{self, Challenge};
use super::{Authorizer, Grant};

/// How long a refusal of the tokens stands. The token refused is sent on meanwhile, and
/// nothing asks the token server: one fixed (its signing key the registry's again) is
/// asked only once the token is due, after as long as the token server made it last (up
/// to a day), which stopped a long-running worker for that long while its challenge read
/// the same. Past this, the next 401 asks for tokens again: a round of 2 token requests
/// each minute at most, as often as tokens that say no lifetime are renewed.
const SPURNED_STANDS: Duration = super::token::DEFAULT_LIFETIME;

/// What the registry said when it refused the tokens: the challenge of its last 401, the
/// generation of the token it refused, and when.
pub(super) struct Spurned {
    generation: u64,
    challenge: Challenge,
    at: Instant,
}

/// The bearer challenge in `www_authenticate`, if there is one.
fn bearer(www_authenticate: &[String]) -> Option<Challenge> {
    www_authenticate
        .iter()
        .flat_map(|h| challenge::parse(h))
        .find(|c| c.scheme == "bearer")
}

/// Whether two challenges ask the same: where to get a token, for which service and
/// scope, and what was wrong with the one sent.
fn same(a: &Challenge, b: &Challenge) -> bool {
    ["realm", "service", "scope", "error"]
        .iter()
        .all(|p| a.param(p) == b.param(p))
}

impl Authorizer {
    /// Notes that the registry refused the token sent with `used`, the last of the
    /// tokens a request was just issued and had refused in a row, challenging with
    /// `www_authenticate`: the refusal [`spurns`](Self::spurns) looks for from now on.
    pub(crate) fn spurned(&self, used: &Grant, www_authenticate: &[String]) {
        // Its 401 is the request's answer, asked about no further: a token sent once more
        // and refused so is refused again, not given back for the next request to send.
        self.refused_again(used);
        let Some(challenge) = bearer(www_authenticate).filter(|_| used.sends(b"Bearer")) else {
            return;
        };
        let mut spurned = self.spurned.lock().expect("auth state poisoned");
        *spurned = Some(Spurned {
            generation: used.generation,
            challenge,
            at: Instant::now(),
        });
        self.spurning.store(true, Ordering::Relaxed);
    }

    /// Whether the registry's 401 to `used`, challenging with `www_authenticate`, repeats
    /// its refusal of the tokens from its token server ([`spurned`](Self::spurned)): the
    /// token sent is the one refused or one issued since, and the challenge asks what
    /// it asked then, within [`SPURNED_STANDS`]. A token fetched for it would be refused as
    /// those were. A challenge that asks anything else (another realm, service or scope,
    /// another error) ends the refusal: the registry has changed, and its tokens are worth
    /// asking for again.
    pub(crate) fn spurns(&self, used: &Grant, www_authenticate: &[String]) -> bool {
        if !self.spurning.load(Ordering::Relaxed) || !used.sends(b"Bearer") {
            return false;
        }
        let mut spurned = self.spurned.lock().expect("auth state poisoned");
        let Some(s) = spurned.as_ref() else {
            return false;
        };
        if used.generation < s.generation {
            // Sent before the refusal: its own rounds are still to come.
            return false;
        }
        let standing = s.at.elapsed() < SPURNED_STANDS;
        if standing && bearer(www_authenticate).is_some_and(|c| same(&c, &s.challenge)) {
            drop(spurned);
            // The 401 is the answer, as for `spurned`.
            self.refused_again(used);
            return true;
        }
        *spurned = None;
        self.spurning.store(false, Ordering::Relaxed);
        false
    }

    /// The registry served a request sent with `used`: a token it refused, or one issued
    /// since, taken (the clock that was behind the token's caught up), ends its refusal.
    /// One atomic load when none stands: called for every request served.
    pub(super) fn unspurned(&self, used: &Grant) {
        if !self.spurning.load(Ordering::Relaxed) {
            return;
        }
        let mut spurned = self.spurned.lock().expect("auth state poisoned");
        if spurned
            .as_ref()
            .is_some_and(|s| used.sends(b"Bearer") && used.generation >= s.generation)
        {
            *spurned = None;
            self.spurning.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::CredentialSource;
    use http::HeaderValue;

    fn grant(generation: u64) -> Grant {
        Grant {
            header: Some(HeaderValue::from_static("Bearer t")),
            generation,
            retried: false,
        }
    }

    fn challenged(scope: &str) -> Vec<String> {
        vec![format!(
            r#"Bearer realm="https://auth.example/token",service="r",scope="{scope}",error="invalid_token""#
        )]
    }

    /// A refusal stands for the token refused and those issued since, while the registry
    /// asks the same; another scope asked for ends it, as does the registry taking one.
    #[test]
    fn a_refusal_of_the_tokens_stands_while_the_registry_asks_the_same() {
        let a = Authorizer::for_tests(CredentialSource::None);
        let pull = challenged("repository:team/app:pull");
        assert!(!a.spurns(&grant(2), &pull), "nothing refused yet");
        a.spurned(&grant(2), &pull);
        assert!(a.spurns(&grant(2), &pull));
        assert!(a.spurns(&grant(3), &pull), "a token issued since");
        assert!(!a.spurns(&grant(1), &pull), "sent before the refusal");
        let anonymous = Grant {
            header: None,
            generation: 2,
            retried: false,
        };
        assert!(!a.spurns(&anonymous, &pull), "no token sent");
        a.unspurned(&grant(1));
        assert!(a.spurns(&grant(2), &pull), "served before the refusal");
        a.unspurned(&grant(3));
        assert!(!a.spurns(&grant(3), &pull), "a token taken since");

        a.spurned(&grant(4), &pull);
        let push = challenged("repository:team/app:pull,push");
        assert!(!a.spurns(&grant(4), &push), "another scope asked for");
        assert!(!a.spurns(&grant(4), &pull), "ended by the other scope");
        // Only a bearer challenge to a token sent establishes one.
        a.spurned(&grant(5), &[r#"Basic realm="r""#.to_string()]);
        a.spurned(&anonymous, &pull);
        assert!(!a.spurns(&grant(5), &pull));
    }

    /// A refusal of the tokens ends with its time even while the registry challenges the
    /// same: its token server, fixed, is asked again. Before, it stood until the token
    /// refused was due, which may be a day, and no request of a worker got past its 401.
    #[test]
    fn a_refusal_of_the_tokens_ends_with_its_time() {
        let a = Authorizer::for_tests(CredentialSource::None);
        let pull = challenged("repository:team/app:pull");
        a.spurned(&grant(2), &pull);
        assert!(a.spurns(&grant(2), &pull));
        {
            let mut spurned = a.spurned.lock().unwrap();
            let s = spurned.as_mut().unwrap();
            let Some(before) = s.at.checked_sub(SPURNED_STANDS) else {
                return; // the clock began less than a minute ago: nothing to go back to
            };
            s.at = before;
        }
        assert!(!a.spurns(&grant(2), &pull), "a refusal past its time");
        assert!(!a.spurns(&grant(2), &pull), "ended, not only skipped");
        // Established again by the next request that spends its rounds, for as long.
        a.spurned(&grant(3), &pull);
        assert!(a.spurns(&grant(3), &pull));
    }
}
