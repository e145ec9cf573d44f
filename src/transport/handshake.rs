//! A deadline for the TLS handshake.
//!
//! The TCP connection has `--connect-timeout`, but a server that takes the connection and
//! never answers the TLS greeting (a hung or overloaded server, a port that is not TLS and
//! waits for a line) held the handshake until the request's own timeout, the idle timeout,
//! ran out: a minute per attempt, reported as "no response headers within 60s" of a request
//! never sent. curl counts the handshake into its connect timeout, Go gives it ten seconds
//! (`TLSHandshakeTimeout`); here the handshake gets `--connect-timeout` of its own, from the
//! moment the connection (through any proxy) is made, and its failure says what it was.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::time::Sleep;

use super::connecting::{take_ready, BoxError, Connecting};

/// The handshake took longer than its limit.
#[derive(Debug)]
pub(crate) struct HandshakeTimedOut(pub(crate) Duration);

impl std::fmt::Display for HandshakeTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TLS handshake not done within {}",
            crate::duration::Written(self.0)
        )
    }
}

impl std::error::Error for HandshakeTimedOut {}

/// The limit of the handshake that timed out, if `e` says one did: hyper-rustls wraps the
/// handshake's `io::Error` in another, and an `io::Error`'s `source` skips what it wraps.
pub(crate) fn timed_out(e: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(HandshakeTimedOut(limit)) = s.downcast_ref() {
            return Some(*limit);
        }
        source = match s.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => s.source(),
        };
    }
    None
}

/// Wraps the connector under the TLS layer: each connection to an `https` destination
/// fails its reads and writes once `limit` has passed, until [`HandshakeDone`] sees its
/// handshake finished.
#[derive(Clone)]
pub(crate) struct HandshakeDeadline<C> {
    inner: C,
    limit: Duration,
}

impl<C> HandshakeDeadline<C> {
    pub(crate) fn new(inner: C, limit: Duration) -> Self {
        HandshakeDeadline { inner, limit }
    }
}

impl<C> tower_service::Service<Uri> for HandshakeDeadline<C>
where
    C: tower_service::Service<Uri> + Clone + Send + 'static,
    C::Response: Send,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    type Response = Handshaking<C::Response>;
    type Error = BoxError;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let tls = dst.scheme() == Some(&http::uri::Scheme::HTTPS);
        let limit = self.limit;
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let io = inner.call(dst).await.map_err(Into::into)?;
            Ok(Handshaking {
                io,
                deadline: tls.then(|| Box::pin(tokio::time::sleep(limit))),
                limit,
            })
        })
    }
}

/// A connection whose I/O fails once its deadline passes, until the deadline is lifted.
pub(crate) struct Handshaking<T> {
    io: T,
    deadline: Option<Pin<Box<Sleep>>>,
    limit: Duration,
}

impl<T> Handshaking<T> {
    /// `r`, an I/O call's outcome: a call still waiting when the deadline has passed fails.
    fn within<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        let Some(deadline) = self.deadline.as_mut().filter(|_| r.is_pending()) else {
            return r;
        };
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                HandshakeTimedOut(self.limit),
            ))),
            Poll::Pending => r,
        }
    }
}

impl<T: Connection> Connection for Handshaking<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: Read + Write + Unpin> Read for Handshaking<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        this.within(cx, r)
    }
}

impl<T: Read + Write + Unpin> Write for Handshaking<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.within(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.within(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.within(cx, r)
    }
}

/// Wraps the TLS connector: lifts the deadline of each connection whose handshake is done,
/// so that a kept-alive connection waits for its next request as long as the pool keeps it.
#[derive(Clone)]
pub(crate) struct HandshakeDone<C> {
    inner: C,
}

impl<C> HandshakeDone<C> {
    pub(crate) fn new(inner: C) -> Self {
        HandshakeDone { inner }
    }
}

impl<C, T> tower_service::Service<Uri> for HandshakeDone<C>
where
    C: tower_service::Service<Uri, Response = MaybeHttpsStream<Handshaking<T>>>
        + Clone
        + Send
        + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
    T: Send + 'static,
{
    type Response = MaybeHttpsStream<Handshaking<T>>;
    type Error = BoxError;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let mut io = inner.call(dst).await.map_err(Into::into)?;
            if let MaybeHttpsStream::Https(tls) = &mut io {
                let tcp: &mut TokioIo<Handshaking<T>> = tls.inner_mut().get_mut().0;
                tcp.inner_mut().deadline = None;
            }
            Ok(io)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Said as the other limits are: a `--connect-timeout 2m` read "120s".
    #[test]
    fn a_long_limit_is_said_in_minutes() {
        let said = HandshakeTimedOut(Duration::from_secs(120)).to_string();
        assert_eq!(said, "TLS handshake not done within 2m");
    }
}
