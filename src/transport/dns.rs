//! Address lookups with a deadline: `--connect-timeout` covers the DNS lookup as it covers
//! the TCP connection and the TLS handshake.
//!
//! The system resolver alone may take as long as its configuration lets it (several
//! servers, each tried twice, five seconds a try), and hyper's connect timeout starts only
//! once addresses are known, and a request's response timeout only once a connection
//! takes it: a lookup that stalled had no limit but `--timeout`.
//!
//! A lookup given up on goes on to its end on its own thread: getaddrinfo cannot be
//! stopped. A worker against a DNS server that drops its queries started one for every
//! attempt at every line, each holding a thread for as long as the system resolver tries,
//! and when those outlast `--connect-timeout` they piled up to tokio's 512 blocking
//! threads, and then queued ahead of the reads of stdin and the writes of files that need
//! those threads too. So a host has one lookup at a time: the connections that need its
//! address while one runs wait for that one, each within its own limit.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

/// A lookup's outcome, for every connection waiting on it.
type Found = Result<Vec<SocketAddr>, Arc<std::io::Error>>;

/// The lookups running, by host.
type Running = Arc<Mutex<HashMap<String, Shared<BoxFuture<'static, Found>>>>>;

/// The system resolver (getaddrinfo, on a thread of its own: [`SystemResolver`]), given
/// `limit` per lookup, with one lookup per host at a time.
#[derive(Clone, Debug)]
pub struct TimedResolver<R = SystemResolver> {
    inner: R,
    limit: Duration,
    running: Running,
}

impl TimedResolver<SystemResolver> {
    /// The system resolver, each lookup given `limit`.
    pub fn new(limit: Duration) -> Self {
        TimedResolver::with(SystemResolver, limit)
    }
}

/// The system resolver (getaddrinfo) on a thread of its own per lookup, which the process
/// does not wait for. On tokio's blocking pool (hyper's `GaiResolver`), a lookup given up
/// on held the runtime's shutdown at the end of the run, for an answer no one wanted; and
/// one queued behind the pool's busy threads waited for them, not for DNS. Threads do not
/// pile up: [`TimedResolver`] runs one lookup per host at a time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl tower_service::Service<Name> for SystemResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        use std::net::ToSocketAddrs;
        let (found, answer) = tokio::sync::oneshot::channel();
        let host = name.as_str().to_string();
        let spawned = std::thread::Builder::new()
            .name("dist-dns".into())
            .spawn(move || {
                let _ = found.send((host.as_str(), 0).to_socket_addrs());
            });
        // Past a limit on threads, the blocking pool has the one kept for the whole run.
        if spawned.is_err() {
            return GaiResolver::new()
                .call(name)
                .map(|r| r.map(|addrs| addrs.collect::<Vec<_>>().into_iter()))
                .boxed();
        }
        answer
            .map(|r| {
                r.unwrap_or_else(|_| Err(std::io::Error::other("the DNS lookup's thread ended")))
            })
            .boxed()
    }
}

impl<R> TimedResolver<R> {
    /// `inner`, each lookup given `limit`.
    pub fn with(inner: R, limit: Duration) -> Self {
        TimedResolver {
            inner,
            limit,
            running: Arc::default(),
        }
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
            "no address for {} within {} ({}): the DNS lookup did not finish",
            self.host,
            crate::duration::Written(self.limit),
            crate::setting::Setting::ConnectTimeout
        )
    }
}

impl std::error::Error for LookupTimedOut {}

impl<R> tower_service::Service<Name> for TimedResolver<R>
where
    R: tower_service::Service<Name, Error = std::io::Error>,
    R::Response: Iterator<Item = SocketAddr>,
    R::Future: Send + 'static,
{
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_string();
        let limit = self.limit;
        let lookup = {
            let running = self.running.clone();
            let mut running = running.lock().expect("DNS lookups poisoned");
            match running.get(&host) {
                Some(lookup) => lookup.clone(),
                None => {
                    let lookup = self.start(name, host.clone());
                    running.insert(host.clone(), lookup.clone());
                    lookup
                }
            }
        };
        Box::pin(async move {
            match tokio::time::timeout(limit, lookup).await {
                Ok(Ok(found)) => Ok(found.into_iter()),
                // The system resolver's words, which tell a name that does not exist.
                Ok(Err(e)) => Err(std::io::Error::new(e.kind(), e.to_string())),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    LookupTimedOut { host, limit },
                )),
            }
        })
    }
}

impl<R> TimedResolver<R>
where
    R: tower_service::Service<Name, Error = std::io::Error>,
    R::Response: Iterator<Item = SocketAddr>,
    R::Future: Send + 'static,
{
    /// A lookup of `name` in a task of its own, which runs to its end whoever waits for it
    /// and then leaves `host` to the next lookup.
    fn start(&mut self, name: Name, host: String) -> Shared<BoxFuture<'static, Found>> {
        let lookup = self.inner.call(name);
        let running = self.running.clone();
        let task = tokio::spawn(async move {
            let found = lookup.await.map(|addrs| addrs.collect()).map_err(Arc::new);
            running.lock().expect("DNS lookups poisoned").remove(&host);
            found
        });
        task.map(|joined| {
            joined.unwrap_or_else(|e| Err(Arc::new(std::io::Error::other(e.to_string()))))
        })
        .boxed()
        .shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::oneshot;
    use tower_service::Service;

    type Answer = std::io::Result<std::vec::IntoIter<SocketAddr>>;

    /// A resolver whose lookups end when the test says, as a DNS server that drops the
    /// queries until it is told otherwise; it counts the lookups started.
    #[derive(Clone, Default)]
    struct Held {
        started: Arc<AtomicUsize>,
        answers: Arc<Mutex<Vec<oneshot::Sender<Answer>>>>,
    }

    impl Held {
        fn answer(&self, answer: impl Fn() -> Answer) {
            for waiting in self.answers.lock().unwrap().drain(..) {
                let _ = waiting.send(answer());
            }
        }
    }

    impl Service<Name> for Held {
        type Response = std::vec::IntoIter<SocketAddr>;
        type Error = std::io::Error;
        type Future = BoxFuture<'static, Answer>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Name) -> Self::Future {
            self.started.fetch_add(1, Ordering::SeqCst);
            let (answer, answered) = oneshot::channel();
            self.answers.lock().unwrap().push(answer);
            answered.map(Result::unwrap).boxed()
        }
    }

    fn name(host: &str) -> Name {
        host.parse().unwrap()
    }

    #[tokio::test]
    async fn a_lookup_that_never_ends_fails_within_the_connect_timeout_saying_so() {
        let mut resolver = TimedResolver::with(Held::default(), Duration::from_millis(20));
        let e = resolver.call(name("registry.example")).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(
            e.to_string(),
            "no address for registry.example within 20ms (`TransportOptions::connect_timeout`): \
             the DNS lookup did not finish"
        );
    }

    /// A limit of a minute or more is written as `--connect-timeout` takes it, as the
    /// TLS handshake's and the proxy's are: `--connect-timeout 2m` read "within 120s".
    #[test]
    fn a_long_limit_is_said_in_minutes() {
        let timed_out = LookupTimedOut {
            host: "registry.example".into(),
            limit: Duration::from_secs(120),
        };
        assert!(
            timed_out
                .to_string()
                .starts_with("no address for registry.example within 2m ("),
            "{timed_out}"
        );
    }

    /// The system resolver ran on tokio's blocking pool, which the runtime waits for as it
    /// shuts down: each run that had given up on a lookup (a DNS server that drops the
    /// queries) sat out `main`'s shutdown timeout at its end, 2 s more for an answer no
    /// one wanted; and a lookup queued behind the pool's busy threads (files being written)
    /// got no address at all. Here the pool's one thread is busy until the test ends, and
    /// the lookup still finds its address.
    #[test]
    fn lookups_run_on_no_thread_the_runtime_waits_for() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (release, busy) = std::sync::mpsc::channel::<()>();
        let (began, beginning) = std::sync::mpsc::channel();
        let pool = runtime.spawn_blocking(move || {
            began.send(()).unwrap();
            let _ = busy.recv();
        });
        beginning.recv().unwrap();
        let found = runtime.block_on(async {
            let mut resolver = TimedResolver::new(Duration::from_secs(30));
            resolver.call(name("localhost")).await
        });
        drop(release);
        runtime.block_on(pool).unwrap();
        let found: Vec<_> = found.unwrap().collect();
        assert!(found.iter().any(|a| a.ip().is_loopback()), "{found:?}");
    }

    /// Every connection to a host whose DNS server drops the queries gave up on its lookup
    /// and left it running on a blocking thread, one more each time: a worker's lines piled
    /// them up to tokio's 512 threads. A host has one lookup at a time, and the next starts
    /// once it has ended, whatever it ended with.
    #[tokio::test(start_paused = true)]
    async fn lookups_given_up_on_do_not_pile_up() {
        let held = Held::default();
        let mut resolver = TimedResolver::with(held.clone(), Duration::from_secs(1));
        for _ in 0..100 {
            let e = resolver.call(name("registry.example")).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        }
        resolver.call(name("auth.example")).await.unwrap_err();
        assert_eq!(held.started.load(Ordering::SeqCst), 2);

        // The one waiting when the answer comes has it.
        let waiting = resolver.call(name("registry.example"));
        let address: SocketAddr = "192.0.2.1:0".parse().unwrap();
        held.answer(|| Ok(vec![address].into_iter()));
        let found: Vec<_> = waiting.await.unwrap().collect();
        assert_eq!(found, [address]);

        // Ended, the lookup is not kept: the next asks again, and a failure comes through
        // in the system resolver's words.
        let waiting = resolver.call(name("registry.example"));
        assert_eq!(held.started.load(Ordering::SeqCst), 3);
        held.answer(|| {
            Err(std::io::Error::other(
                "failed to lookup address information: Name or service not known",
            ))
        });
        let e = waiting.await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to lookup address information: Name or service not known"
        );
    }
}
