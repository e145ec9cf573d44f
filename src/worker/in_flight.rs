//! Lines of one batch that name the same digest into a store take turns: a digest named
//! with a `mediatype:` hint and without (or with other `size:` hints) is two objects to
//! the duplicate check, since each may be answered differently, but one blob in the
//! store. Fetched side by side, both downloaded it and both reported it `ok`, where the
//! later one finds it stored once the first is done and reports it `exists`. Blobs of
//! 1 MiB or more waited already, on the lock file another process waits on too
//! ([`super::ingest`]); a smaller blob has no lock file, as one costs more than a second
//! download of it, but a turn in memory costs nothing of the kind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::digest::Digest;

/// The digests being fetched into the store, each with the lock its lines take turns on.
#[derive(Default)]
pub(super) struct InFlight {
    digests: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

/// A line's turn at its digest, until dropped.
pub(super) struct Turn<'a> {
    in_flight: &'a InFlight,
    digest: Digest,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl InFlight {
    /// Waits until no other line of the batch is fetching `digest`. The wait is an
    /// `await`, so a stop (a signal, `--timeout`), which drops the job, ends it at once.
    pub(super) async fn turn(&self, digest: &Digest) -> Turn<'_> {
        let lock = self
            .digests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(digest.clone())
            .or_default()
            .clone();
        Turn {
            in_flight: self,
            digest: digest.clone(),
            held: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut digests = self
            .in_flight
            .digests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(self.held.take());
        // Forgotten once no line waits for it (the map holds the last reference): a batch
        // of a million distinct digests keeps none of them.
        if digests
            .get(&self.digest)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            digests.remove(&self.digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_turn_waits_for_the_first_and_the_digest_is_forgotten_after() {
        let in_flight = InFlight::default();
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let first = in_flight.turn(&digest).await;
        let mut second = Box::pin(in_flight.turn(&digest));
        assert!(
            futures::poll!(second.as_mut()).is_pending(),
            "the second turn came while the first was held"
        );
        drop(first);
        let second = second.await;
        assert_eq!(in_flight.digests.lock().unwrap().len(), 1);
        drop(second);
        assert!(
            in_flight.digests.lock().unwrap().is_empty(),
            "the digest stayed"
        );
    }
}
