//! A request handed a connection that closed before the request went out on it.
//!
//! At the cap on connections in all, the connection idle the longest is told to close
//! ([`super::limit`]), at times just as hyper-util's pool hands it to a request waiting
//! for one. The request is queued on the connection's channel as the connection's task, on
//! another thread, drops the channel's receiver: tokio's unbounded channel checks that it
//! is open before it pushes, and a message pushed during the drop is neither read nor
//! dropped (tokio-rs/tokio#7714), so hyper never cancels the request and it waits for
//! good; its response timeout runs only once it is written ([`super::stage`]). 200 small
//! blobs from two hosts, interleaved, 8 at a time at a cap in all of 4 on a multi-thread
//! runtime stalled so in about 1 run of 50, until the caller's own timeout.
//!
//! hyper-util says which connection it handed a request (`capture_connection`); one that
//! is gone, and stays so, while the request was never taken is lost with the request,
//! which went nowhere and can go again. A request that is sent again after its channel
//! let it go (hyper-util does, off a connection used before) moves on to a connection
//! soon, or waits in the pool making one, and is not lost while it does
//! ([`super::limit::polling`]): taken for lost there, it counted among the losses a
//! request may have, and at a cap of 1 per host a second such loss failed it.
//!
//! A request built before idle connections could close under it (no connection had
//! waited for a permit, nor been told to close) is not told which connection it is
//! handed, to spare it the capture's cost, yet the first to wait is one of them: its own
//! connection waits for the cap in all, which tells an idle one to close, just as the
//! pool hands that one to the request. Interleaved from two hosts, 8 at a time at caps
//! of 3, such a request stalled about 1 batch of 200 in 1,600. Still not taken by a
//! connection at a look once idle ones may close ([`super::stage`]), nor making one of
//! its own, it is given up, never sent (a connection taking it just then sends a GET's
//! head at most, never a body: [`super::stage::Unanswered::GivenUp`]), and sent again,
//! told which connection it is handed.

use std::future::Future;
use std::time::Duration;

use super::limit::InUse;
use super::stage::Progress;

/// How often a request not yet taken looks at the connection it was handed: the moment
/// between a connection's end and its channel's letting go of what it holds is far
/// shorter, and a lost request waits about twice this. A request not told its connection
/// looks as often at whether idle connections may be closed under it.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A request lost with the connection it was handed, never sent.
#[derive(Debug)]
pub(crate) struct Lost;

/// `request`'s output, or [`Lost`] once the connection `handed` says it was given
/// (hyper-util's capture of it) has been gone for a look at it and the next, the request
/// never taken by it (`progress`). Without `handed`, the request alone.
pub(crate) async fn unless_lost<F: Future>(
    request: F,
    handed: Option<impl Fn() -> Option<InUse>>,
    progress: &Progress,
) -> Result<F::Output, Lost> {
    match handed {
        None => Ok(request.await),
        // Boxed: inline, its timer and state made every request's future 4 KiB in a
        // debug build (3.7 KiB boxed), copied whole into each object's box; a request
        // watched pays one allocation more instead.
        Some(handed) => Box::pin(watch(request, handed, progress)).await,
    }
}

/// [`unless_lost`] with `handed`.
async fn watch<F: Future>(
    request: F,
    handed: impl Fn() -> Option<InUse>,
    progress: &Progress,
) -> Result<F::Output, Lost> {
    let request = std::pin::pin!(request);
    let connecting = std::sync::atomic::AtomicBool::new(false);
    let mut polled = super::limit::noting_connections(request, &connecting);
    let mut gone_before: Option<InUse> = None;
    loop {
        if let Ok(output) = tokio::time::timeout(LOOK_EVERY, &mut polled).await {
            return Ok(output);
        }
        // Written, a request lost with its connection fails as hyper tells it.
        if progress.taken().is_some() {
            return Ok(polled.await);
        }
        // Making a connection, it waits in the pool, sent again by hyper-util after the
        // connection it was handed let it go: not lost with that one.
        if connecting.load(std::sync::atomic::Ordering::Relaxed) {
            gone_before = None;
            continue;
        }
        let gone = handed().filter(InUse::gone);
        match (&gone_before, &gone) {
            (Some(before), Some(now)) if before.same(now) => return Err(Lost),
            _ => gone_before = gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::poll;
    use std::task::Poll;

    /// A request queued on a connection that closed under it waits for good: once the
    /// connection it was handed has been gone a while, the request never taken, it is
    /// lost. One not handed a connection yet, or handed one that lives on, waits on.
    #[tokio::test(start_paused = true)]
    async fn a_request_never_taken_by_the_connection_it_was_handed_is_lost_with_it() {
        let progress = Progress::default();
        let gone = InUse::closed();
        let lost = unless_lost(
            std::future::pending::<()>(),
            Some(|| Some(gone.clone())),
            &progress,
        );
        let waited = tokio::time::timeout(LOOK_EVERY * 50, lost).await;
        assert!(matches!(waited, Ok(Err(Lost))), "waited for good");

        let open = InUse::open();
        for handed in [None, Some(open)] {
            let waiting = unless_lost(
                std::future::pending::<()>(),
                Some(|| handed.clone()),
                &progress,
            );
            let waited = tokio::time::timeout(LOOK_EVERY * 50, waiting).await;
            assert!(waited.is_err(), "lost without a connection gone");
        }
    }

    /// A request taken by its connection is left to fail as hyper tells it: written, it
    /// may have reached the server, and only a request that can go twice goes again.
    #[tokio::test(start_paused = true)]
    async fn a_request_taken_by_its_connection_is_never_lost() {
        let progress = Progress::default();
        let body = progress.body(bytes::Bytes::new());
        assert!(http_body::Body::is_end_stream(&body));
        let gone = InUse::closed();
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let mut waiting = std::pin::pin!(unless_lost(
            answered,
            Some(|| Some(gone.clone())),
            &progress,
        ));
        assert!(poll!(&mut waiting).is_pending());
        tokio::time::advance(LOOK_EVERY * 50).await;
        assert!(poll!(&mut waiting).is_pending(), "a request taken was lost");
        answer.send(()).unwrap();
        assert!(matches!(poll!(&mut waiting), Poll::Ready(Ok(Ok(())))));
    }

    /// hyper-util sends again, on its own, a request the connection it was handed let go
    /// unsent, and it waits in the pool, making a connection: it was taken for lost with
    /// the first, and counted among the losses a request may have, of which a cap of 1 per
    /// host allows one. While it makes a connection it is not lost; once it no longer
    /// does, it is again.
    #[tokio::test(start_paused = true)]
    async fn a_request_making_a_connection_is_not_lost_with_the_one_it_was_handed() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let progress = Progress::default();
        let gone = InUse::closed();
        let making = AtomicBool::new(true);
        let request = std::future::poll_fn(|_| {
            if making.load(Ordering::Relaxed) {
                super::super::limit::connecting();
            }
            Poll::<()>::Pending
        });
        let mut waiting =
            std::pin::pin!(unless_lost(request, Some(|| Some(gone.clone())), &progress));
        let waited = tokio::time::timeout(LOOK_EVERY * 50, &mut waiting).await;
        assert!(waited.is_err(), "lost while making a connection");
        making.store(false, Ordering::Relaxed);
        let waited = tokio::time::timeout(LOOK_EVERY * 5, &mut waiting).await;
        assert!(matches!(waited, Ok(Err(Lost))), "waited for good");
    }
}
