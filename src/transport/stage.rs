//! How far a request got towards a connection, for the message when its time runs out.
//!
//! The idle timeout bounds a request from the moment it is handed to the pool: waiting for
//! one of the connections the per-host cap allows, the DNS lookup, the TCP connection and
//! the TLS handshake all count. Time run out in any of them was said as "no response
//! headers", sending the user after a server that was never asked. The connectors mark
//! each stage for the request whose task they run in; a connection made in the background
//! for the pool, once the request took another, marks nothing. The request's body marks
//! the request taken by a connection, wherever that connection's task runs.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

/// A stage on the way to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    /// Handed to the pool: waiting for an idle connection, or for one another request is
    /// making (an HTTP/2 connection is shared).
    Pooled = 0,
    /// Waiting for one of the connections allowed to the host: all were busy.
    Queued = 1,
    /// Looking up the host's address.
    Resolving = 2,
    /// Connecting: TCP, a proxy's tunnel, TLS.
    Connecting = 3,
    /// Taken by a connection: waiting for the answer.
    Sent = 4,
}

/// The stage a request is at, shared with the connectors working for it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress(Arc<AtomicU8>);

impl Progress {
    /// The stage reached last.
    pub(crate) fn stage(&self) -> Stage {
        match self.0.load(Ordering::Relaxed) {
            1 => Stage::Queued,
            2 => Stage::Resolving,
            3 => Stage::Connecting,
            4 => Stage::Sent,
            _ => Stage::Pooled,
        }
    }

    fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }

    /// `body`, as the request's body that tells this when a connection takes the request.
    pub(crate) fn body(&self, body: Bytes) -> Watched {
        Watched {
            body: Full::new(body),
            progress: self.clone(),
        }
    }

    /// Runs `request` with its connectors' stages recorded here.
    pub(crate) fn watch<F: std::future::Future>(
        &self,
        request: F,
    ) -> impl std::future::Future<Output = F::Output> {
        PROGRESS.scope(self.clone(), request)
    }
}

tokio::task_local! {
    static PROGRESS: Progress;
}

/// Records `stage` for the request whose task this runs in, if any.
pub(crate) fn enter(stage: Stage) {
    let _ = PROGRESS.try_with(|p| p.set(stage));
}

/// A request's body that marks the request [`Stage::Sent`] as a connection takes it: hyper
/// asks every body whether it is empty as it writes the request's head (HTTP/1.1) or opens
/// its stream (HTTP/2). hyper-util's `capture_connection` told the same at the cost of a
/// watch channel, an extensions map and a copy of the connection's metadata, seven
/// allocations added to every request.
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
        this.progress.set(Stage::Sent);
        Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.progress.set(Stage::Sent);
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

    /// hyper asks an empty body (a GET's) only whether it is empty, and polls one with
    /// bytes (the token request's POST): either way the request is marked taken.
    #[tokio::test]
    async fn a_body_taken_by_a_connection_marks_its_request_sent() {
        let progress = Progress::default();
        let empty = progress.body(Bytes::new());
        assert_eq!(progress.stage(), Stage::Pooled);
        assert!(empty.is_end_stream());
        assert_eq!(progress.stage(), Stage::Sent);

        let progress = Progress::default();
        let form = progress.body(Bytes::from_static(b"grant_type=refresh_token"));
        assert_eq!(form.size_hint().exact(), Some(24));
        assert_eq!(progress.stage(), Stage::Pooled);
        let sent = form.collect().await.unwrap().to_bytes();
        assert_eq!(&sent[..], b"grant_type=refresh_token");
        assert_eq!(progress.stage(), Stage::Sent);
    }
}
