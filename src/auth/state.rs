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
}

impl State {
    /// The failure of the token request that finished while a task waited for the lock,
    /// having seen `flights` before it.
    pub(super) fn failure_since(&self, flights: u64) -> Option<Error> {
        let failed = self.failed.as_ref().filter(|_| self.flights != flights)?;
        Some(failed.shared())
    }
}
