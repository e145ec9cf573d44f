//! When a connection took a request, from which its response timeout runs.
//!
//! `--idle-timeout` bounds silence on a connection: the wait for response headers counts
//! from the moment a connection takes the request, not from the moment the request asks
//! the pool for one. Counted from the pool, a request queued behind the per-host cap (a
//! worker's jobs and range parts on a few connections, or a consumer slow to read the
//! framed stream) timed out as silence from a server it was never sent to. Waiting for a
//! connection has no limit but `--timeout`, as in Go's client with `MaxConnsPerHost`;
//! making one has `--connect-timeout`, for the DNS lookup, the TCP connection, a proxy's
//! tunnel and the TLS handshake each.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tokio::time::Instant;

/// When a request was taken by a connection, shared with the body that tells it: set once,
/// to the moment it was taken, or to `None` as it is given up unsent.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress(Arc<OnceLock<Option<Instant>>>);

impl Progress {
    /// When a connection took the request, if one has.
    pub(crate) fn taken(&self) -> Option<Instant> {
        self.0.get().copied().flatten()
    }

    /// Whether the request was given up before a connection took it.
    fn given_up(&self) -> bool {
        self.0.get().is_some_and(Option::is_none)
    }

    fn take(&self) {
        self.0.get_or_init(|| Some(Instant::now()));
    }

    /// Gives the request up unless a connection has taken it, saying whether it did. A
    /// connection's task takes it apart from the request's: it may check for the request's
    /// end just before and take it just after a look found it not taken.
    fn give_up(&self) -> bool {
        self.0.set(None).is_ok()
    }

    /// `body`, as the request's body that tells this when a connection takes the request.
    pub(crate) fn body(&self, body: Bytes) -> Watched {
        Watched {
            body: Full::new(body),
            progress: self.clone(),
        }
    }

    /// `request`'s output, or [`Unanswered::Late`] once `limit` has passed since a
    /// connection took it. With `look`, while no connection has taken it, it is looked at
    /// every `look.0`, and given up ([`Unanswered::GivenUp`]) at a look `look.1` says to,
    /// unless it is making a connection of its own.
    /// The common case, an answer within `limit` of the request's start (within `look.0`
    /// with a look, as every request has until idle connections may close), arms one
    /// timer; a slower one arms another once taken.
    /// A limit past the clock's range (`Duration::MAX`, a library caller's "none", as
    /// `tokio::time::timeout` takes it) is none.
    pub(crate) async fn answered_within<F: std::future::Future>(
        &self,
        limit: std::time::Duration,
        request: F,
        look: Option<(std::time::Duration, impl Fn() -> bool)>,
    ) -> Result<F::Output, Unanswered> {
        let request = std::pin::pin!(request);
        // Whether its last poll made a connection for it: one waiting for its own
        // connection has been handed none, and is not given up with that one's making.
        let connecting = std::sync::atomic::AtomicBool::new(false);
        let mut request = super::limit::noting_connections(request, &connecting);
        let mut from = Instant::now();
        loop {
            let deadline = from.checked_add(limit);
            // The looks share the limit's timer: a timer of their own made every
            // request's future larger, past 4 KiB in a debug build.
            let look_at = match &look {
                Some((every, _)) if self.taken().is_none() => from.checked_add(*every),
                _ => None,
            };
            let Some(wake) = deadline.into_iter().chain(look_at).min() else {
                return Ok(request.await);
            };
            match tokio::time::timeout_at(wake, &mut request).await {
                Ok(output) => return Ok(output),
                // The limit ran from `from`: from a later moment, it runs on, as it does
                // from the moment it was taken once a look finds it so.
                Err(_) => match self.taken() {
                    Some(taken) if taken > from || Some(wake) != deadline => from = taken,
                    Some(_) => return Err(Unanswered::Late),
                    None if !connecting.load(std::sync::atomic::Ordering::Relaxed)
                        && look.as_ref().is_some_and(|(_, give_up)| give_up())
                        && self.give_up() =>
                    {
                        return Err(Unanswered::GivenUp)
                    }
                    // Still waiting for a connection: looked at again later.
                    None => from = Instant::now(),
                },
            }
        }
    }
}

/// Why [`Progress::answered_within`] stopped waiting for a request.
#[derive(Debug, PartialEq)]
pub(crate) enum Unanswered {
    /// Its limit passed after a connection took it.
    Late,
    /// Given up at a look, no connection having taken it. A connection that takes it
    /// after all, having looked for it just before, sends a GET's or HEAD's head alone,
    /// harmless twice, and no body's bytes ([`NotSent`]): a POST is never had twice.
    GivenUp,
}

/// The error a given-up request's body ends with, should a connection take the request
/// after all: the server gets a head whose body never comes, so never the request whole.
#[derive(Debug)]
pub(crate) struct NotSent;

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request given up before a connection took it")
    }
}

impl std::error::Error for NotSent {}

/// A request's body that records when a connection takes the request: hyper asks every
/// body whether it is empty as it writes the request's head (HTTP/1.1) or opens its stream
/// (HTTP/2). hyper-util's `capture_connection` told the same at the cost of a watch
/// channel, an extensions map and a copy of the connection's metadata, seven allocations
/// added to every request.
#[derive(Debug)]
pub(crate) struct Watched {
    body: Full<Bytes>,
    progress: Progress,
}

impl Body for Watched {
    type Data = Bytes;
    type Error = NotSent;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, NotSent>>> {
        let this = self.get_mut();
        this.progress.take();
        if this.progress.given_up() {
            return Poll::Ready(Some(Err(NotSent)));
        }
        Pin::new(&mut this.body)
            .poll_frame(cx)
            .map_err(|never| match never {})
    }

    fn is_end_stream(&self) -> bool {
        self.progress.take();
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::time::Duration;

    const NO_LOOK: Option<(Duration, fn() -> bool)> = None;

    /// hyper asks an empty body (a GET's) only whether it is empty, and polls one with
    /// bytes (the token request's POST): either way the request is marked taken.
    #[tokio::test]
    async fn a_body_taken_by_a_connection_marks_its_request_taken() {
        let progress = Progress::default();
        let empty = progress.body(Bytes::new());
        assert_eq!(progress.taken(), None);
        assert!(empty.is_end_stream());
        assert!(progress.taken().is_some());

        let progress = Progress::default();
        let form = progress.body(Bytes::from_static(b"grant_type=refresh_token"));
        assert_eq!(form.size_hint().exact(), Some(24));
        assert_eq!(progress.taken(), None);
        let sent = form.collect().await.unwrap().to_bytes();
        assert_eq!(&sent[..], b"grant_type=refresh_token");
        assert!(progress.taken().is_some());
    }

    /// `Duration::MAX` is a library caller's way to say "no limit", which
    /// `tokio::time::timeout` took: counted on the clock here, it overflowed the instant
    /// and panicked in every request. The request is then waited for without one.
    #[tokio::test(start_paused = true)]
    async fn a_limit_past_the_clock_s_range_is_no_limit() {
        use futures::poll;
        let progress = Progress::default();
        let body = progress.body(Bytes::new());
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let mut waiting =
            std::pin::pin!(progress.answered_within(Duration::MAX, answered, NO_LOOK));
        assert!(poll!(&mut waiting).is_pending());
        assert!(body.is_end_stream());
        tokio::time::advance(Duration::from_secs(1 << 20)).await;
        assert!(poll!(&mut waiting).is_pending());
        answer.send(()).unwrap();
        assert!(matches!(poll!(&mut waiting), Poll::Ready(Ok(Ok(())))));
    }

    /// A request not yet taken by a connection is never out of time, however long it
    /// waits; once taken, it has the whole limit from then.
    #[tokio::test(start_paused = true)]
    async fn the_limit_runs_from_the_moment_a_connection_takes_the_request() {
        use futures::poll;
        let limit = Duration::from_secs(1);
        let progress = Progress::default();
        let body = progress.body(Bytes::new());
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let mut waiting = std::pin::pin!(progress.answered_within(limit, answered, NO_LOOK));
        assert!(poll!(&mut waiting).is_pending());
        tokio::time::advance(limit * 5).await;
        assert!(
            poll!(&mut waiting).is_pending(),
            "out of time before it was sent"
        );
        assert!(body.is_end_stream());
        tokio::time::advance(limit * 3 / 4).await;
        assert!(
            poll!(&mut waiting).is_pending(),
            "out of time within the limit"
        );
        answer.send(()).unwrap();
        assert!(matches!(poll!(&mut waiting), Poll::Ready(Ok(Ok(())))));

        let progress = Progress::default();
        let body = progress.body(Bytes::new());
        let mut waiting =
            std::pin::pin!(progress.answered_within(limit, std::future::pending::<()>(), NO_LOOK));
        assert!(poll!(&mut waiting).is_pending());
        tokio::time::advance(limit / 2).await;
        assert!(body.is_end_stream());
        tokio::time::advance(limit * 3 / 4).await;
        assert!(
            poll!(&mut waiting).is_pending(),
            "out of time within the limit"
        );
        tokio::time::advance(limit / 4).await;
        assert_eq!(poll!(&mut waiting), Poll::Ready(Err(Unanswered::Late)));
    }

    /// A connection's task takes a request apart from the request's own: checking, as
    /// hyper does, that it is still wanted, then asking its body, while a look finds it
    /// not taken and gives it up. Taken just after that look, the request was given up
    /// and sent all the same, a token grant's POST whole. Now a request taken as it is
    /// looked at is not given up, and one given up yields no bytes of its body.
    #[tokio::test(start_paused = true)]
    async fn a_request_given_up_is_never_sent_whole() {
        use futures::poll;
        let (every, limit) = (Duration::from_millis(100), Duration::from_secs(1));
        let progress = Progress::default();
        let body = progress.body(Bytes::new());
        // Taken as the look asks whether to give it up, it says to: an empty body ends.
        let taken_as_looked_at = Some((every, || body.is_end_stream()));
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let mut waiting =
            std::pin::pin!(progress.answered_within(limit, answered, taken_as_looked_at));
        let waited = tokio::time::timeout(every * 3, &mut waiting).await;
        assert!(waited.is_err(), "given up once taken: {waited:?}");
        answer.send(()).unwrap();
        assert!(matches!(poll!(&mut waiting), Poll::Ready(Ok(Ok(())))));

        let progress = Progress::default();
        let form = progress.body(Bytes::from_static(b"grant_type=refresh_token"));
        let look = Some((every, || true));
        let pending = std::future::pending::<()>();
        let waited = progress.answered_within(limit, pending, look).await;
        assert_eq!(waited, Err(Unanswered::GivenUp));
        let sent = form.collect().await.map(|f| f.to_bytes());
        assert!(sent.is_err(), "a body given up sent: {sent:?}");
    }

    /// A request built before idle connections could be closed is not told which
    /// connection it is handed (`transport::handed`), and the first to wait for a permit
    /// is one: handed an idle connection told to close, it waited for good. Not taken at
    /// a look that says to give it up, it is given up (never sent); until then, or once
    /// taken, it waits on, its limit running from the moment it was taken.
    #[tokio::test(start_paused = true)]
    async fn a_request_not_taken_is_given_up_at_a_look_that_says_so() {
        use futures::poll;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (every, limit) = (Duration::from_millis(100), Duration::from_secs(1));
        let progress = Progress::default();
        let give_up = AtomicBool::new(false);
        let look = Some((every, || give_up.load(Ordering::Relaxed)));
        let pending = std::future::pending::<()>();
        let mut waiting = std::pin::pin!(progress.answered_within(limit, pending, look));
        let waited = tokio::time::timeout(limit * 5, &mut waiting).await;
        assert!(waited.is_err(), "given up before a look said so");
        give_up.store(true, Ordering::Relaxed);
        let waited = tokio::time::timeout(every * 2, &mut waiting).await;
        assert_eq!(waited, Ok(Err(Unanswered::GivenUp)), "waited for good");

        // Making a connection of its own, it was handed none: it waits on.
        let progress = Progress::default();
        let making = std::future::poll_fn(|_| {
            super::super::limit::connecting();
            Poll::<()>::Pending
        });
        let mut waiting = std::pin::pin!(progress.answered_within(limit, making, look));
        let waited = tokio::time::timeout(limit * 5, &mut waiting).await;
        assert!(waited.is_err(), "given up while making its connection");

        let progress = Progress::default();
        let body = progress.body(Bytes::new());
        let look = Some((every, || true));
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let mut waiting = std::pin::pin!(progress.answered_within(limit, answered, look));
        assert!(poll!(&mut waiting).is_pending());
        assert!(body.is_end_stream());
        tokio::time::advance(limit * 3 / 4).await;
        assert!(poll!(&mut waiting).is_pending(), "a request taken given up");
        answer.send(()).unwrap();
        assert!(matches!(poll!(&mut waiting), Poll::Ready(Ok(Ok(())))));

        let progress = Progress::default();
        let body = progress.body(Bytes::new());
        let pending = std::future::pending::<()>();
        let mut waiting = std::pin::pin!(progress.answered_within(limit, pending, look));
        assert!(poll!(&mut waiting).is_pending());
        assert!(body.is_end_stream());
        let waited = tokio::time::timeout(limit * 2, &mut waiting).await;
        assert_eq!(
            waited,
            Ok(Err(Unanswered::Late)),
            "a request taken given up"
        );
    }
}
