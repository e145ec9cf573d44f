//! A hard cap on connections per host.
//!
//! The pool reuses idle connections, but while every connection is busy a new request
//! opens another one, and a pool under load can briefly hold more than the worker's job
//! count. Registries (and the people who run them) count connections, so the cap is
//! enforced where connections are made: a connection holds a permit of its host's
//! semaphore for as long as it exists, and a new one waits for a permit.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How many hosts' caps are kept before those with no connection are forgotten.
const KEEP_IDLE_HOSTS: usize = 64;

/// Wraps a connector so that at most `limit` connections per host and port exist at once.
#[derive(Clone, Debug)]
pub struct LimitedConnector<C> {
    inner: C,
    limit: usize,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl<C> LimitedConnector<C> {
    /// Caps `inner` at `limit` connections per host (at least one).
    pub fn new(inner: C, limit: usize) -> Self {
        LimitedConnector {
            inner,
            // A semaphore panics past its maximum; a library caller may pass any `usize`
            // (`usize::MAX` for "no cap"), and no host is ever near that many connections.
            limit: limit.clamp(1, Semaphore::MAX_PERMITS),
            hosts: Arc::default(),
        }
    }

    fn semaphore(&self, uri: &Uri) -> Arc<Semaphore> {
        // Keyed as hyper's pool keys its connections (scheme and authority, without
        // case), since an idle connection holds its permit and the pool hands it only to
        // its own key: `host` and `host:443` sharing one cap, a request written the other
        // way waited for the permits of connections it could not use until they closed.
        let key = format!(
            "{}://{}:{}",
            uri.scheme_str().unwrap_or(""),
            uri.host().unwrap_or("").to_ascii_lowercase(),
            uri.port_u16().unwrap_or(0)
        );
        let mut hosts = self.hosts.lock().expect("connection limits poisoned");
        // A host none of whose connections is left (nor waited for: each holds the
        // semaphore) needs no entry: a registry that sends each blob to a host of its own
        // (a redirect per blob) made the map grow with the batch.
        if hosts.len() >= KEEP_IDLE_HOSTS {
            hosts.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        }
        hosts
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
            .clone()
    }
}

impl<C> tower_service::Service<Uri> for LimitedConnector<C>
where
    C: tower_service::Service<Uri> + Clone + Send + 'static,
    C::Response: Connection + Send,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    type Response = Limited<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let semaphore = self.semaphore(&uri);
        // The ready service is the one `poll_ready` was called on; keep a fresh clone
        // for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let permit = semaphore.acquire_owned().await?;
            let io = inner.call(uri).await.map_err(Into::into)?;
            // HTTP/2 frames say their own lengths, and a connection's bytes are many
            // streams', read while their readers may wait: only HTTP/1.1 is watched.
            let unfruitful = (!io.connected().is_negotiated_h2()).then(Unfruitful::default);
            Ok(Limited {
                io,
                _permit: permit,
                answered: Answered::default(),
                unfruitful,
            })
        })
    }
}

/// A connection that gives its host's permit back when it is dropped.
#[derive(Debug)]
pub struct Limited<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
    answered: Answered,
    /// What an HTTP/1.1 connection has read without content; `None` over HTTP/2.
    unfruitful: Option<Unfruitful>,
}

impl<T: Connection> Connection for Limited<T> {
    fn connected(&self) -> Connected {
        let connected = self.io.connected().extra(self.answered.clone());
        match &self.unfruitful {
            Some(unfruitful) => connected.extra(unfruitful.clone()),
            None => connected,
        }
    }
}

/// Whether a connection has answered a request yet, shared by every request sent on it
/// (the pool hands each one the connection's [`Connected`], extras and all). A request
/// lost on a connection that had answered before met one kept alive in the pool, which
/// the server or the network may have dropped while it sat idle.
#[derive(Clone, Debug, Default)]
pub(crate) struct Answered(Arc<AtomicBool>);

impl Answered {
    /// Records an answer.
    pub(crate) fn answer(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the connection has answered a request.
    pub(crate) fn before(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How many bytes an HTTP/1.1 connection may read without a byte of content reaching
/// the reader of a body: a response's head (at most about
/// [`super::MAX_RESPONSE_HEAD_BYTES`]),
/// and a body's framing and what hyper reads ahead (a few of its buffers) stay far below.
/// hyper bounds a chunk's extensions and trailer fields but not its size line, which
/// leading zeros make as long as a server likes, nor the blanks after it, nor the interim
/// (1xx) answers it passes over before a response: read at full speed until the idle
/// timeout, which counts content only, or the response's, which 1xx answers put off.
pub const MAX_UNFRUITFUL: u64 = 4 << 20;

/// Bytes an HTTP/1.1 connection has read since content last reached a body's reader, or
/// since a response's head arrived, shared by the connection and the bodies read off it
/// (the pool hands each response the connection's [`Connected`] extras). Past
/// [`MAX_UNFRUITFUL`] the connection's reads fail with [`Fruitless`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Unfruitful(Arc<AtomicU64>);

impl Unfruitful {
    /// Content reached a reader, or a new response began: the count starts again.
    pub(crate) fn fruit(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Counts `n` bytes read; whether they are more than a connection may read so.
    fn read(&self, n: u64) -> bool {
        self.0.fetch_add(n, Ordering::Relaxed) + n > MAX_UNFRUITFUL
    }
}

/// Why an HTTP/1.1 connection stopped reading: more than [`MAX_UNFRUITFUL`] bytes
/// without content.
#[derive(Debug)]
pub(crate) struct Fruitless;

impl std::fmt::Display for Fruitless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "more than {} of a response read without content (a chunk size line without \
             end, or interim 1xx answers without end)",
            crate::plural::Bytes(MAX_UNFRUITFUL)
        )
    }
}

impl std::error::Error for Fruitless {}

impl<T: Read + Unpin> Read for Limited<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let Some(unfruitful) = &this.unfruitful else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        // The inner stream fills a buffer of our own over the same memory, which tells how
        // many bytes it read, as hyper-util's `TokioIo` reads a tokio stream.
        // SAFETY: the inner read, given the unfilled part as uninitialised, only writes to
        // it (it cannot de-initialise a byte), and the cursor is advanced by the `n` bytes
        // it filled.
        let n = unsafe {
            let mut inner = hyper::rt::ReadBuf::uninit(buf.as_mut());
            match Pin::new(&mut this.io).poll_read(cx, inner.unfilled()) {
                Poll::Ready(Ok(())) => inner.filled().len(),
                other => return other,
            }
        };
        // SAFETY: as above.
        unsafe { buf.advance(n) };
        if unfruitful.read(n as u64) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                Fruitless,
            )));
        }
        Poll::Ready(Ok(()))
    }
}

pass_writes_through!([T: Write + Unpin] Limited<T>);

#[cfg(test)]
mod tests {
    use super::*;

    /// `usize::MAX` for "no cap", as a library caller may write it: the semaphore refused
    /// it with a panic at the host's first connection.
    #[test]
    fn any_cap_makes_a_semaphore() {
        for cap in [0, 1, usize::MAX] {
            let limited = LimitedConnector::new((), cap);
            let sem = limited.semaphore(&"https://registry.example/v2/".parse().unwrap());
            assert!(sem.available_permits() >= 1, "{cap}");
        }
    }

    /// A host written in capitals is the host the cap is for, as it is one key of the
    /// pool (`Authority` compares without case): a semaphore of its own doubled the cap.
    #[test]
    fn one_host_spelled_two_ways_shares_its_cap() {
        let limited = LimitedConnector::new((), 2);
        let sem = |u: &str| limited.semaphore(&u.parse().unwrap());
        assert!(Arc::ptr_eq(
            &sem("https://registry.example/v2/"),
            &sem("https://Registry.Example/v2/x")
        ));
        assert!(!Arc::ptr_eq(
            &sem("https://registry.example/v2/"),
            &sem("http://registry.example:443/v2/")
        ));
        assert!(!Arc::ptr_eq(
            &sem("https://registry.example/v2/"),
            &sem("https://registry.example:5000/v2/")
        ));
    }

    /// The caps of hosts with no connection left are forgotten, those of hosts with one
    /// kept: a registry that sends each blob to a host of its own made the map grow with
    /// the batch.
    #[test]
    fn hosts_without_connections_are_forgotten() {
        let limited = LimitedConnector::new((), 2);
        let held = limited.semaphore(&"https://registry.example/v2/".parse().unwrap());
        for i in 0..10_000 {
            let uri = format!("https://blob-{i}.cdn.example/b").parse().unwrap();
            drop(limited.semaphore(&uri));
        }
        let hosts = limited.hosts.lock().unwrap();
        assert!(hosts.len() <= KEEP_IDLE_HOSTS, "{} hosts kept", hosts.len());
        assert!(
            hosts.values().any(|s| Arc::ptr_eq(s, &held)),
            "the cap of a host with a connection was forgotten"
        );
    }

    /// A connection holds its permit while it sits idle in the pool, which hands it only
    /// to requests of its own pool key, and hyper keys `host` and `host:443` apart: a
    /// request written the other way (a token realm, a `Location` with `:443`) that shared
    /// the cap waited for a permit until the pool closed an idle connection, 90 s on.
    #[test]
    fn idle_connections_of_another_pool_key_keep_no_request_waiting() {
        use futures::FutureExt;
        use tower_service::Service;
        #[derive(Clone)]
        struct AtOnce;
        struct Conn;
        impl Connection for Conn {
            fn connected(&self) -> Connected {
                Connected::new()
            }
        }
        impl Service<Uri> for AtOnce {
            type Response = Conn;
            type Error = std::io::Error;
            type Future = std::future::Ready<std::io::Result<Conn>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Uri) -> Self::Future {
                std::future::ready(Ok(Conn))
            }
        }
        let mut limited = LimitedConnector::new(AtOnce, 1);
        let idle = limited
            .call("https://registry.example/v2/".parse().unwrap())
            .now_or_never();
        assert!(matches!(idle, Some(Ok(_))));
        let other = limited
            .call("https://registry.example:443/token".parse().unwrap())
            .now_or_never();
        assert!(
            matches!(other, Some(Ok(_))),
            "waited for a permit held by an idle connection it cannot use"
        );
    }
}
