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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
            limit: limit.max(1),
            hosts: Arc::default(),
        }
    }

    fn semaphore(&self, uri: &Uri) -> Arc<Semaphore> {
        // The port filled in and the host in lower case: one host written two ways (a
        // `Location` or a token realm with `:443`) had two semaphores, and twice the cap.
        let scheme = uri.scheme_str().unwrap_or("");
        let default = if scheme == "https" { 443 } else { 80 };
        let key = format!(
            "{scheme}://{}:{}",
            uri.host().unwrap_or("").to_ascii_lowercase(),
            uri.port_u16().unwrap_or(default)
        );
        let mut hosts = self.hosts.lock().expect("connection limits poisoned");
        hosts
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
            .clone()
    }
}

impl<C> tower_service::Service<Uri> for LimitedConnector<C>
where
    C: tower_service::Service<Uri> + Clone + Send + 'static,
    C::Response: Send,
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
            Ok(Limited {
                io,
                _permit: permit,
                answered: Answered::default(),
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
}

impl<T: Connection> Connection for Limited<T> {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.answered.clone())
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

pass_io_through!([T: Read + Write + Unpin] Limited<T>);

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL written with its default port (a token realm, a redirect's `Location`) or in
    /// capitals names the host the cap is for: a semaphore of its own doubled the cap.
    #[test]
    fn one_host_spelled_two_ways_shares_its_cap() {
        let limited = LimitedConnector::new((), 2);
        let sem = |u: &str| limited.semaphore(&u.parse().unwrap());
        assert!(Arc::ptr_eq(
            &sem("https://registry.example/v2/"),
            &sem("https://Registry.Example:443/v2/x")
        ));
        assert!(Arc::ptr_eq(
            &sem("http://registry.example/v2/"),
            &sem("http://registry.example:80/")
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
}
