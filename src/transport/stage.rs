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

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use tokio::time::Instant;

/// When a request was taken by a connection, shared with the body that tells it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress(Arc<OnceLock<Instant>>);

impl Progress {
    /// When a connection took the request, if one has.
    pub(crate) fn taken(&self) -> Option<Instant> {
        self.0.get().copied()
    }

    fn take(&self) {
        self.0.get_or_init(Instant::now);
    }

    /// `body`, as the request's body that tells this when a connection takes the request.
    pub(crate) fn body(&self, body: Bytes) -> Watched {
        Watched {
            body: Full::new(body),
            progress: self.clone(),
        }
    }

    /// `request`'s output, or `Err` once `limit` has passed since a connection took it.
    /// The common case, an answer within `limit` of the request's start, arms one timer.
    /// A limit past the clock's range (`Duration::MAX`, a library caller's "none", as
    /// `tokio::time::timeout` takes it) is none.
    pub(crate) async fn answered_within<F: std::future::Future>(
        &self,
        limit: std::time::Duration,
        request: F,
    ) -> Result<F::Output, ()> {
        let mut request = std::pin::pin!(request);
        let mut from = Instant::now();
        loop {
            let Some(deadline) = from.checked_add(limit) else {
                return Ok(request.await);
            };
            match tokio::time::timeout_at(deadline, &mut request).await {
                Ok(output) => return Ok(output),
                // The limit ran from `from`: from a later moment, it runs on.
                Err(_) => match self.taken() {
                    Some(taken) if taken > from => from = taken,
                    Some(_) => return Err(()),
                    // Still waiting for a connection: looked at again `limit` on.
                    None => from = Instant::now(),
                },
            }
        }
    }
}

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
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        this.progress.take();
        Pin::new(&mut this.body).poll_frame(cx)
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
        let mut waiting = std::pin::pin!(progress.answered_within(Duration::MAX, answered));
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
        let mut waiting = std::pin::pin!(progress.answered_within(limit, answered));
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
            std::pin::pin!(progress.answered_within(limit, std::future::pending::<()>()));
        assert!(poll!(&mut waiting).is_pending());
        tokio::time::advance(limit / 2).await;
        assert!(body.is_end_stream());
        tokio::time::advance(limit * 3 / 4).await;
        assert!(
            poll!(&mut waiting).is_pending(),
            "out of time within the limit"
        );
        tokio::time::advance(limit / 4).await;
        assert_eq!(poll!(&mut waiting), Poll::Ready(Err(())));
    }
}
