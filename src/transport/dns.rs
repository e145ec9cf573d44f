//! Address lookups with a deadline: `--connect-timeout` covers the DNS lookup as it covers
//! the TCP connection and the TLS handshake.
//!
//! The system resolver alone may take as long as its configuration lets it (several
//! servers, each tried twice, five seconds a try), and hyper's connect timeout starts only
//! once addresses are known, and a request's response timeout only once a connection
//! takes it: a lookup that stalled had no limit but `--timeout`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::dns::{GaiAddrs, GaiResolver, Name};

/// The system resolver (getaddrinfo, on a blocking thread), given `limit` per lookup.
#[derive(Clone, Debug)]
pub struct TimedResolver<R = GaiResolver> {
    inner: R,
    limit: Duration,
}

impl TimedResolver {
    /// The system resolver, each lookup given `limit`.
    pub fn new(limit: Duration) -> Self {
        TimedResolver::with(GaiResolver::new(), limit)
    }
}

impl<R> TimedResolver<R> {
    /// `inner`, each lookup given `limit`.
    pub fn with(inner: R, limit: Duration) -> Self {
        TimedResolver { inner, limit }
    }
}

/// A lookup that did not finish in time.
#[derive(Debug)]
pub struct LookupTimedOut {
    /// The host looked up.
    pub host: String,
    /// The time it had.
    pub limit: Duration,
}

impl std::fmt::Display for LookupTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no address for {} within {:?} (--connect-timeout): the DNS lookup did not finish",
            self.host, self.limit
        )
    }
}

impl std::error::Error for LookupTimedOut {}

impl<R> tower_service::Service<Name> for TimedResolver<R>
where
    R: tower_service::Service<Name, Response = GaiAddrs, Error = std::io::Error>,
    R::Future: Send + 'static,
{
    type Response = GaiAddrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<GaiAddrs>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_string();
        let limit = self.limit;
        let lookup = self.inner.call(name);
        Box::pin(async move {
            let found = tokio::time::timeout(limit, lookup).await;
            // The blocking lookup goes on to its end on its thread, unheeded.
            found.unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    LookupTimedOut { host, limit },
                ))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    /// A resolver that never answers, as a DNS server that drops the queries.
    #[derive(Clone)]
    struct Silent;

    impl Service<Name> for Silent {
        type Response = GaiAddrs;
        type Error = std::io::Error;
        type Future = std::future::Pending<std::io::Result<GaiAddrs>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Name) -> Self::Future {
            std::future::pending()
        }
    }

    #[tokio::test]
    async fn a_lookup_that_never_ends_fails_within_the_connect_timeout_saying_so() {
        let mut resolver = TimedResolver::with(Silent, Duration::from_millis(20));
        let name: Name = "registry.example".parse().unwrap();
        let e = resolver.call(name).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(
            e.to_string(),
            "no address for registry.example within 20ms (--connect-timeout): the DNS lookup \
             did not finish"
        );
    }
}
