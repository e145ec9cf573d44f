//! What each server last said of our TLS client certificate, kept per origin.
//!
//! Under TLS 1.3 the client's side of the handshake is over before the server has checked
//! the client's certificate: a server that refuses it says so in an alert, read after the
//! handshake, and closes. Over HTTP/1.1 that read is the request's own, and the request's
//! error carries the alert. Over HTTP/2 the connection's task reads it, not the request:
//! h2 passes the streams the alert's text only (no `rustls::Error` to look at), and a
//! request still waiting for the connection learns no more than that it closed. A write
//! that meets the closed socket first fails with a broken pipe, the alert unread. Each of
//! these looked like a lost connection and was retried, though the next connection is
//! refused the same way. So every connection tells its origin's record whether the server
//! refused it, and a request that failed on a connection looks there for why.
//!
//! The record also holds the other way a server ends every connection alike after the
//! handshake: choosing HTTP/2 by ALPN and then answering in HTTP/1.1, as a proxy or load
//! balancer does that offers `h2` for a server speaking only HTTP/1.1. h2 read the status
//! line as a frame's header ("frame with invalid size"), and each retry met it again.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

use super::connecting::{take_ready, BoxError, Connecting};

/// How the latest connection to each origin ended, until a later connection to it is
/// answered. One transport shows one client certificate, so a server's verdict on it holds
/// for every connection until the server changes its mind.
#[derive(Clone, Default)]
pub(crate) struct Refusals(Arc<Mutex<HashMap<String, Ending>>>);

/// How a server ended a connection before answering on it.
#[derive(Clone, Debug)]
pub(crate) enum Ending {
    /// With this TLS alert.
    Alert(rustls::Error),
    /// With HTTP/1.1 where it had chosen HTTP/2 by ALPN.
    Http1OnHttp2,
}

/// What a connection's read fails with when its server chose HTTP/2 and answers in HTTP/1.1.
#[derive(Debug)]
pub(crate) struct Http1OnHttp2;

impl std::fmt::Display for Http1OnHttp2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server chose HTTP/2 by ALPN but answered in HTTP/1.1")
    }
}

impl std::error::Error for Http1OnHttp2 {}

impl Refusals {
    /// How the latest connection to the origin of `url` ended, unless one made since was
    /// answered.
    pub(crate) fn of(&self, url: &Uri) -> Option<Ending> {
        self.0
            .lock()
            .expect("refusals poisoned")
            .get(&origin(url))
            .cloned()
    }

    fn refused(&self, origin: &str, ending: Ending) {
        self.0
            .lock()
            .expect("refusals poisoned")
            .insert(origin.to_string(), ending);
    }

    fn answered(&self, origin: &str) {
        self.0.lock().expect("refusals poisoned").remove(origin);
    }
}

/// `scheme://host:port`, the port filled in, so a request's URL and the connector's
/// destination (which keeps the URL's authority as written) name an origin alike.
fn origin(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("");
    let port = uri
        .port_u16()
        .unwrap_or_else(|| super::spelling::default_port(uri));
    let host = super::spelling::host(uri).unwrap_or_default();
    format!("{scheme}://{host}:{port}")
}

/// The alert a server ended the connection with, in an I/O error from the TLS stream.
fn alert_in(e: &io::Error) -> Option<&rustls::Error> {
    super::failure::rustls_error(e).filter(|tls| matches!(tls, rustls::Error::AlertReceived(_)))
}

/// Wraps a connector so that its connections report to `refusals`.
#[derive(Clone)]
pub(crate) struct RefusalConnector<C> {
    inner: C,
    refusals: Refusals,
}

impl<C> RefusalConnector<C> {
    pub(crate) fn new(inner: C, refusals: Refusals) -> Self {
        RefusalConnector { inner, refusals }
    }
}

impl<C> tower_service::Service<Uri> for RefusalConnector<C>
where
    C: tower_service::Service<Uri> + Clone + Send + 'static,
    C::Response: Connection + Send,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    type Response = Watched<C::Response>;
    type Error = BoxError;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let origin = origin(&uri);
        let refusals = self.refusals.clone();
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let io = inner.call(uri).await.map_err(Into::into)?;
            let http2 = io.connected().is_negotiated_h2();
            Ok(Watched {
                io,
                http2,
                origin,
                refusals,
                answered: false,
                held: None,
            })
        })
    }
}

/// A connection that reports the alert it ends with, or that the server answered.
pub(crate) struct Watched<T> {
    io: T,
    /// HTTP/2 was chosen by ALPN.
    http2: bool,
    origin: String,
    refusals: Refusals,
    /// Whether the server has sent anything since the handshake: a server that takes our
    /// certificate sends data (an HTTP/2 server its settings at once), one that refuses it
    /// only its alert.
    answered: bool,
    /// A write's failure waiting for the read that may explain it.
    held: Option<io::Error>,
}

impl<T: Read + Write + Unpin> Watched<T> {
    /// A failed write. On a connection the server has not answered, a write that meets a
    /// reset connection may be how a refusal shows, its alert not read yet: the write's
    /// failure waits for the read that explains it, and is the alert, if one comes.
    fn write_failed<R>(&mut self, cx: &mut Context<'_>, e: io::Error) -> Poll<io::Result<R>> {
        if alert_in(&e).is_some() {
            self.note(&e);
            return Poll::Ready(Err(e));
        }
        // A reset connection is readable at once (its data, then the reset), so the wait
        // is one turn of the reactor; a request's response timeout bounds it regardless.
        if self.answered
            || !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            )
        {
            return Poll::Ready(Err(e));
        }
        self.held = Some(e);
        self.poll_held(cx)
    }

    /// Reads what the server sent before the reset: its alert, or anything else, which
    /// leaves the write's own failure to report.
    fn poll_held<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let mut scratch = [0u8; 512];
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut self.io).poll_read(cx, buf.unfilled()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(read)) if alert_in(&read).is_some() => {
                self.held = None;
                self.note(&read);
                Poll::Ready(Err(read))
            }
            Poll::Ready(_) => Poll::Ready(Err(self.held.take().expect("a held failure"))),
        }
    }

    fn note(&mut self, e: &io::Error) {
        if let Some(alert) = alert_in(e) {
            self.refusals
                .refused(&self.origin, Ending::Alert(alert.clone()));
        }
    }

    /// The first read of an HTTP/2 connection, looked at: an HTTP/2 server's first bytes
    /// are a frame (its SETTINGS), never `HTTP/`.
    fn poll_first_http2_read(
        &mut self,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut first = [0u8; 4096];
        let len = first.len().min(buf.remaining());
        let mut read = ReadBuf::new(&mut first[..len]);
        match Pin::new(&mut self.io).poll_read(cx, read.unfilled()) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                self.note(&e);
                return Poll::Ready(Err(e));
            }
            Poll::Ready(Ok(())) => {}
        }
        if read.filled().starts_with(b"HTTP/") {
            self.refusals.refused(&self.origin, Ending::Http1OnHttp2);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Http1OnHttp2,
            )));
        }
        buf.put_slice(read.filled());
        self.answered = true;
        self.refusals.answered(&self.origin);
        Poll::Ready(Ok(()))
    }

    /// `r`, a write's outcome, with a failure explained where it can be.
    fn written<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(Err(e)) => self.write_failed(cx, e),
            other => other,
        }
    }
}

impl<T: Connection> Connection for Watched<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: Read + Write + Unpin> Read for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.http2 && !this.answered {
            return this.poll_first_http2_read(cx, buf);
        }
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) if !this.answered => {
                this.answered = true;
                this.refusals.answered(&this.origin);
            }
            Poll::Ready(Err(e)) if !this.answered => this.note(e),
            _ => {}
        }
        r
    }
}

impl<T: Read + Write + Unpin> Write for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.is_some() {
            return this.poll_held(cx);
        }
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.written(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held.is_some() {
            return this.poll_held(cx);
        }
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.written(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held.is_some() {
            return this.poll_held(cx);
        }
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.written(cx, r)
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
        if this.held.is_some() {
            return this.poll_held(cx);
        }
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.written(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_and_a_connector_s_destination_name_one_origin() {
        let dst: Uri = "https://Registry.Example".parse().unwrap();
        let url: Uri = "https://registry.example:443/v2/a/blobs/x".parse().unwrap();
        assert_eq!(origin(&dst), origin(&url));
        let other: Uri = "https://registry.example:5000/v2/".parse().unwrap();
        assert_ne!(origin(&dst), origin(&other));
    }
}
