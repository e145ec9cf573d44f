//! The authorizer's state: the header it sends now, and its token requests' record.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;

use super::challenge::Challenge;
use super::clock::Stamp;
use crate::error::Error;

/// What the authorizer currently sends, and a generation number that changes whenever it
/// changes, so a task can tell whether someone else already reacted to a 401.
#[derive(Clone, Default)]
pub(super) struct State {
    pub(super) header: Option<HeaderValue>,
    /// When to renew the bearer token (a little before it expires). Both on the clock
    /// that counts the time the machine sleeps, as the token server's does.
    pub(super) expires_at: Option<Stamp>,
    /// When the bearer token really expires: until then, it is sent when renewing fails.
    pub(super) valid_until: Option<Stamp>,
    pub(super) generation: u64,
    pub(super) bearer: Option<Challenge>,
    /// Token requests finished so far, and how the last one failed if it did: the tasks
    /// that waited for a request take its failure as theirs, rather than each asking a
    /// failing or hanging token server again, one after another, behind the lock.
    pub(super) flights: u64,
    pub(super) failed: Option<Arc<Error>>,
    /// Token requests failed in a row, and when the next one may go: a failing token
    /// server is asked again after the retry policy's backoff, not by each request that
    /// finds the token due.
    pub(super) failures: u32,
    pub(super) retry_at: Option<Instant>,
    /// The bearer token the registry refused, while no token has replaced it (the token
    /// request it led to is under way or failed): a request then waits for a new token
    /// rather than meet the same 401 again. Stale once the generation changed.
    pub(super) refused: Option<RefusedToken>,
}

/// A bearer token the registry refused: its generation, the challenge that refused it,
/// whether it was refused again when sent once more, its renewal having failed, and the
/// token requests finished when it was last sent so.
#[derive(Clone)]
pub(super) struct RefusedToken {
    pub(super) generation: u64,
    pub(super) challenge: Challenge,
    pub(super) again: bool,
    pub(super) resent_at: Option<u64>,
}

impl State {
    /// The challenge to ask a new token for when the registry refused the current one
    /// and none has replaced it since.
    pub(super) fn pending(&self) -> Option<&Challenge> {
        self.refused_now().map(|r| &r.challenge)
    }

    /// The refusal of the current token, if the registry refused it.
    pub(super) fn refused_now(&self) -> Option<&RefusedToken> {
        let refused = self.refused.as_ref();
        refused.filter(|r| r.generation == self.generation)
    }

    /// The current token, when the registry refused it once and the token request that
    /// was to replace it failed, while it is still valid: a registry may refuse a good
    /// token once (a replica that had not heard of it yet, a restart), and while its
    /// token server fails, sent no more, it left every request to fail on that server.
    /// One request sends it for all, once per failed token request (a request lost on
    /// its way says nothing); refused again, it is not sent once more. The request that
    /// sends it, noted in `tries`, keeps it until the registry answers it
    /// ([`resend_held`](Self::resend_held)).
    pub(super) fn second_chance(
        &mut self,
        now: Stamp,
        tries: &mut TokenTries,
    ) -> Option<HeaderValue> {
        let valid = self.valid_until.is_some_and(|t| now < t);
        let (generation, flights) = (self.generation, self.flights);
        let refused = self
            .refused
            .as_mut()
            .filter(|r| r.generation == generation)?;
        if refused.again || !valid || refused.resent_at == Some(flights) {
            return None;
        }
        refused.resent_at = Some(flights);
        tries.resend = Some(flights);
        self.header.clone()
    }

    /// The token sent once more ([`second_chance`](Self::second_chance)) by the request
    /// of `tries`, when no answer of the registry's has spoken of it since (a 503, a
    /// connection lost, the wait behind an outage's request sent for all) and no token
    /// request has failed since: that request sends it again. Taken anew, it was spent on
    /// a request the registry never answered (held under an outage, the request asked for
    /// its token before it was let go, and again after), and while the token server
    /// asked for more than dist waits, no token request came to give another: every
    /// object failed on the token server, as before the resend.
    pub(super) fn resend_held(&self, tries: &TokenTries, now: Stamp) -> Option<HeaderValue> {
        let r = self.refused_now()?;
        let valid = self.valid_until.is_some_and(|t| now < t);
        let ours = tries.resend.is_some() && r.resent_at == tries.resend;
        (valid && ours && !r.again && r.resent_at == Some(self.flights))
            .then(|| self.header.clone())
            .flatten()
    }

    /// Gives back the token sent once more that the request of `tries` holds, when it
    /// ends with no word of the registry's on it (its retries spent on 503s): kept, it was
    /// spent for every request until a token request failed again, and while the token
    /// server asked for more than dist waits, none came, and each later object failed on
    /// the token server although the registry would take the token.
    pub(super) fn let_go(&mut self, tries: &TokenTries) {
        let generation = self.generation;
        let refused = self.refused.as_mut();
        if let Some(r) = refused.filter(|r| r.generation == generation && !r.again) {
            if tries.resend.is_some() && r.resent_at == tries.resend {
                r.resent_at = None;
            }
        }
    }

    /// The failure a task takes as its own rather than ask the token server itself: the
    /// token request's that finished while it waited for the lock, having seen `flights`
    /// before it; or, when it comes again after `tries`' failure, a later one's.
    pub(super) fn failure_since(&self, flights: u64, tries: &TokenTries) -> Option<Error> {
        let later = tries.took.is_some_and(|took| self.flights > took);
        let failed = self.failed.as_ref();
        let failed = failed.filter(|_| self.flights != flights || later)?;
        Some(failed.shared())
    }

    /// The failure a request that took none yet takes when it finds the token ended
    /// during the backoff after a failed token request: the request that would have
    /// waited out that backoff and asked for itself. It came late to the tasks that took
    /// that failure (its object read from the input a moment later), stayed a token
    /// request behind them, and with its retries left asked once more when theirs were
    /// done: 5 token requests for `--retries 3`, 2 times in 45 runs under load. Its retry
    /// now joins theirs. A refused token has its own turn ([`second_chance`](Self::second_chance)),
    /// and a failure that is no passing one is not waited out, so neither is taken here.
    pub(super) fn failure_in_backoff(&self, tries: &TokenTries, now: Instant) -> Option<Error> {
        if tries.took.is_some() || self.pending().is_some() {
            return None;
        }
        let failed = self.failed.as_ref().filter(|f| f.is_transient())?;
        self.retry_at.filter(|&at| now < at)?;
        Some(failed.shared())
    }
}

/// The token request whose failure one request last took as its own, counted in the
/// authorizer's token requests finished. Its retry takes the failure of a token request
/// made since for all, rather than wait out the backoff and ask once more for itself:
/// each task that came late to the one retry made for all asked again, one request
/// after another (3 token requests for `--retries 1`, the one retry and a third).
/// It also notes the token requests finished when it was given a refused token to send
/// once more ([`State::second_chance`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TokenTries {
    took: Option<u64>,
    resend: Option<u64>,
}

impl TokenTries {
    /// Notes that the request took the failure of the token requests finished at `flights`.
    pub(super) fn took(&mut self, flights: u64) {
        self.took = Some(flights);
    }

    /// Whether the request was given a refused token to send once more, which it gives
    /// back as it ends ([`State::let_go`]).
    pub(super) fn was_given_resend(&self) -> bool {
        self.resend.is_some()
    }
}
