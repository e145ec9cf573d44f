//! The HTTP client every remote shares: one connection pool, TLS, timeouts and redirects.
//!
//! TLS is rustls verified against the operating system's trust store plus any `--ca-file`;
//! HTTP/2 is offered by ALPN and used when the server picks it, HTTP/1.1 keep-alive
//! otherwise. Plain HTTP is used only for URLs that say `http://`, which the locator decides.
//! Redirects are followed here so that one rule guards credentials: `Authorization` goes
//! only to the origin it was meant for, and never from https down to http.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioTimer;

use crate::error::{Error, ErrorKind, Result};

/// Implements hyper's `Read` and `Write` for a connection wrapper (`[generics] Type`) by
/// handing every call to its `io` field: the wrappers add bookkeeping, never I/O.
macro_rules! pass_io_through {
    ([$($generics:tt)*] $wrapper:ty) => {
        impl<$($generics)*> hyper::rt::Read for $wrapper {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: hyper::rt::ReadBufCursor<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
            }
        }

        pass_writes_through!([$($generics)*] $wrapper);
    };
}

/// Implements hyper's `Write` alone for a connection wrapper, as [`pass_io_through`] does,
/// for a wrapper whose `Read` keeps count of what it reads.
macro_rules! pass_writes_through {
    ([$($generics:tt)*] $wrapper:ty) => {
        impl<$($generics)*> hyper::rt::Write for $wrapper {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }
        }
    };
}

mod connecting;
mod dns;
mod failure;
mod handed;
mod handshake;
pub mod limit;
#[cfg(test)]
pub(crate) mod one_shot;
mod pauses;
mod pinned;
pub mod proxy;
mod redirect;
mod refusal;
mod spelling;
mod stage;
pub mod tls;

use failure::classify_client_error;
pub use failure::lost_before_answer;
pub(crate) use failure::{
    AT_REDIRECT_TARGET, CLIENT_CERTIFICATE_REQUIRED, NOT_TLS_AT_REDIRECT_TARGET,
};
use handshake::{HandshakeDeadline, HandshakeDone};
use limit::LimitedConnector;
use pauses::Pauses;
use proxy::{Proxies, ProxyConnector};
pub(crate) use redirect::redirected_by;
use redirect::{is_redirect, location_text, Origin};
pub use redirect::{resolve, Redirects};
use refusal::{RefusalConnector, Refusals};

/// How many header fields an HTTP/1.1 response may have. hyper's default, 100, is met by
/// a response that passed a few CDNs and proxies, each adding its own; curl and Go set no
/// count at all (only a size, as hyper also does). An origin is asked with this limit only
/// once one of its answers had more than [`USUAL_RESPONSE_HEADERS`]: hyper then parses
/// each head into two arrays of this many fields, allocated and filled per response (64
/// KiB), which cost a small blob's fetch about 5% of dist's CPU.
pub const MAX_RESPONSE_HEADERS: usize = 1000;

/// How many bytes an HTTP/1.1 response's head may take, fields and all: hyper's default
/// buffer for reading a connection, which a head must fit (a head that arrives in one read
/// as the buffer fills may pass by up to one more read). Set, not left to hyper, so that
/// the failure past it can say the number.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// How many header fields an HTTP/1.1 response may have until its origin sent more: hyper's
/// default, parsed on the stack.
pub const USUAL_RESPONSE_HEADERS: usize = 100;

/// How many bytes of header fields an HTTP/2 response may carry, counted as HTTP/2 counts
/// them (each field's name and value, and 32 bytes). hyper's default, 16 KiB, is about 150
/// fields of the size CDNs and proxies add: far fewer than an HTTP/1.1 response may carry
/// (up to [`MAX_RESPONSE_HEADERS`] fields in hyper's 408 KiB buffer for a head), so a
/// chain of them that dist passes over HTTP/1.1 failed over HTTP/2, where CDNs meet most
/// clients. This holds such a head and the 32 bytes of each of its fields.
pub const MAX_RESPONSE_HEADER_LIST: u32 = 512 << 10;

/// How many redirects one request may follow.
pub const MAX_REDIRECTS: usize = 10;

/// How much an HTTP/2 server may send ahead of what dist has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2Window {
    /// This many bytes in flight, on each stream and on the connection as a whole: the
    /// most a connection holds in memory when dist reads slower than the server sends,
    /// and, divided by the round trip, the fastest a stream can go. Brought within what
    /// HTTP/2 allows: 65,535 (the protocol's default) to 2^31 - 1.
    Fixed(u32),
    /// hyper's estimate of the bandwidth-delay product, grown from the protocol's 64 KiB
    /// to at most 16 MiB as transfers go on.
    Adaptive,
}

impl Http2Window {
    /// The default: 16 MiB from the first byte, adaptive's own ceiling. Faster than adaptive
    /// in every transfer measured (README, Performance): a 128 MiB blob 20 ms away in half
    /// the time, 1000 small blobs on loopback in 12-27% less, where a 64 KiB connection
    /// window to start with costs window updates.
    pub const DEFAULT: Http2Window = Http2Window::Fixed(16 << 20);
}

impl Default for Http2Window {
    fn default() -> Self {
        Http2Window::DEFAULT
    }
}

/// Settings of the shared client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportOptions {
    /// Extra CA certificates (PEM files) trusted besides the system store.
    pub ca_files: Vec<std::path::PathBuf>,
    /// Accept any certificate: only for a mirror configured with `skip_verify`.
    pub skip_verify: bool,
    /// Limit for a host's DNS lookup, again for establishing a TCP connection, and again
    /// for its TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for the response headers to arrive, counted from the moment a connection takes
    /// the request: waiting for one under the per-host cap does not count (it has no limit
    /// but the caller's), and making one has `connect_timeout`.
    pub response_timeout: Duration,
    /// Limit for the gap between two pieces of a response body; a stalled body is aborted.
    /// An HTTP/2 connection silent for half of it is sent a PING, and closed when none
    /// comes back within a quarter more.
    pub idle_timeout: Duration,
    /// Idle connections kept per host: 16, [`worker::DEFAULT_JOBS`](crate::worker::DEFAULT_JOBS);
    /// the CLI sets it to its cap per host ([`TransportOptions::max_connections_per_host`]),
    /// so that the parts of a split blob keep their connections from part to part.
    pub max_idle_per_host: usize,
    /// Connections per host at most, busy or idle: 16, as many as
    /// [`worker::DEFAULT_JOBS`](crate::worker::DEFAULT_JOBS). Neither [`crate::worker::run`]
    /// nor [`crate::pull::pull`] changes it: a caller that gives them more jobs
    /// ([`WorkerOptions::jobs`](crate::worker::WorkerOptions::jobs)) raises it to match,
    /// or over HTTP/1.1 the jobs past it wait for a connection. The CLI sets it to `--jobs`, plus
    /// `--range-streams` - 1 ([`RangeOptions::streams`](crate::ranged::RangeOptions::streams))
    /// for the parallel parts of large blobs. One above [`TransportOptions::max_connections`]
    /// is taken as that: setting only the cap in all caps each host at it too.
    pub max_connections_per_host: usize,
    /// Connections at most, busy or idle, to all hosts: no cap by default. The CLI sets it
    /// to what the limit on open files leaves beside its jobs' files. At the cap, the
    /// connection idle the longest is closed to make room: the pool keeps each host's
    /// idle for 90 s, and a batch whose blobs redirect to a host each held one per host.
    /// It caps [`TransportOptions::max_connections_per_host`] too.
    pub max_connections: usize,
    /// The HTTP/2 flow-control window.
    pub http2_window: Http2Window,
    /// A client certificate for servers that ask for one (mutual TLS).
    pub client_identity: Option<tls::ClientIdentity>,
    /// The `User-Agent` sent with every request that does not set its own (in its headers,
    /// or its host's configured ones, [`Outgoing::origin_headers`]):
    /// [`DEFAULT_USER_AGENT`] unless changed; `None` sends none. Registries and the CDNs
    /// in front of them log it, and some throttle or refuse requests without one.
    pub user_agent: Option<String>,
    /// The proxies requests go through; `None`, those the environment names
    /// (`HTTPS_PROXY`, `NO_PROXY`, …), read when the transport is built. Given here
    /// ([`Proxies::from_variables`]), two transports of one process may go through
    /// different proxies.
    pub proxies: Option<Proxies>,
}

/// The `User-Agent` a [`Transport`] sends unless told otherwise: `dist/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("dist/", env!("CARGO_PKG_VERSION"));

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            ca_files: Vec::new(),
            skip_verify: false,
            connect_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_idle_per_host: 16,
            max_connections_per_host: 16,
            max_connections: usize::MAX,
            http2_window: Http2Window::DEFAULT,
            client_identity: None,
            user_agent: Some(DEFAULT_USER_AGENT.to_string()),
            proxies: None,
        }
    }
}

/// Connections with TLS for `https` destinations, the handshake given its own deadline.
type TlsConnector =
    HandshakeDone<HttpsConnector<HandshakeDeadline<ProxyConnector<dns::TimedResolver>>>>;

type PooledClient = Client<LimitedConnector<RefusalConnector<TlsConnector>>, stage::Watched>;

/// The pooled client. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Transport {
    client: PooledClient,
    /// A client that offers only HTTP/1.1, for the origins that refused HTTP/2 with
    /// `HTTP_1_1_REQUIRED` ([`limit::Quirk::Http1Only`]).
    http1: PooledClient,
    /// A client that offers only HTTP/1.1 and takes up to [`MAX_RESPONSE_HEADERS`] header
    /// fields, for the origins that sent more than [`USUAL_RESPONSE_HEADERS`]
    /// ([`limit::Quirk::LargeHeads`]). Only HTTP/1.1 has that count: HTTP/2 limits the
    /// bytes of a head.
    large: PooledClient,
    /// The clients' caps on connections, and what each host was found to need, kept
    /// with its cap: one entry per misbehaving origin, kept for the run, grew without
    /// bound with a batch that met thousands.
    caps: Arc<limit::Caps>,
    /// The `Retry-After` pauses of the origins redirects lead to.
    pauses: Arc<Pauses>,
    opts: Arc<TransportOptions>,
    /// What servers said of our client certificate, for requests whose own error does not.
    refusals: Refusals,
    /// The connector's proxies, asked again per request for a forwarding proxy's
    /// credentials.
    proxies: Proxies,
    /// Built from [`TransportOptions::user_agent`] once.
    user_agent: Option<HeaderValue>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("opts", &self.opts)
            .finish()
    }
}

/// A request about to be sent: the header set may carry a credential that is bound to the
/// origin of `url`.
#[derive(Clone)]
pub struct Outgoing {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: Uri,
    /// Headers other than `Authorization`.
    pub headers: HeaderMap,
    /// Credential for the origin of `url` only.
    pub authorization: Option<HeaderValue>,
    /// Headers configured for this host (`hosts.toml`'s `header`): like `authorization`,
    /// sent to the origin of `url` only, and never logged, since they may carry secrets.
    /// An `Authorization` among them goes only while `authorization` is `None`.
    pub origin_headers: HeaderMap,
    /// Request body (empty for GET/HEAD).
    pub body: Bytes,
}

/// A header map shown by its names alone, for the `Debug` of what holds headers a user
/// configured: they may be keys, and one the user built is not marked sensitive.
pub(crate) struct HeaderNames<'a>(pub(crate) &'a HeaderMap);

impl std::fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// A response's headers with their values, but for a cookie's, for the `Debug` of a
/// [`Reply`]: a session cookie is a credential the server issued (dist never sends one
/// back), and one marked sensitive by no one. A `Location` or `Content-Location` is
/// shown without its query or login, as any URL dist shows: it may be a pre-signed URL;
/// so is a challenge's realm (see [`ChallengeShown`]).
struct AnswerHeaders<'a>(&'a HeaderMap);

impl std::fmt::Debug for AnswerHeaders<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            match name {
                n if n == http::header::SET_COOKIE => map.entry(name, &"<redacted>"),
                n if n == http::header::LOCATION || n == http::header::CONTENT_LOCATION => {
                    let url = String::from_utf8_lossy(value.as_bytes());
                    map.entry(name, &crate::error::redact_url(&url))
                }
                n if n == http::header::WWW_AUTHENTICATE
                    || n == http::header::PROXY_AUTHENTICATE =>
                {
                    map.entry(name, &ChallengeShown(value))
                }
                _ => map.entry(name, value),
            };
        }
        map.finish()
    }
}

/// A `WWW-Authenticate` value for a [`Reply`]'s `Debug`: as it came, unless a realm in it
/// has a query or a login (`realm="https://auth.example/token?token=…"`), which may be a
/// credential and is shown as any URL dist shows; the challenges are then written out
/// from what was read of them, every realm so shown.
struct ChallengeShown<'a>(&'a http::HeaderValue);

impl std::fmt::Debug for ChallengeShown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(self.0.as_bytes());
        let challenges = crate::auth::challenge::parse(&text);
        let hides = |realm: &str| crate::error::redact_url(realm) != realm;
        let any = challenges
            .iter()
            .any(|c| c.param("realm").is_some_and(hides));
        if !any {
            return std::fmt::Debug::fmt(self.0, f);
        }
        let written: Vec<String> = challenges
            .iter()
            .map(|c| {
                let params = c.params.iter().map(|(k, v)| match k.as_str() {
                    "" => v.clone(),
                    "realm" => format!("realm={:?}", crate::error::redact_url(v)),
                    _ => format!("{k}={v:?}"),
                });
                let params: Vec<String> = params.collect();
                format!("{} {}", c.scheme, params.join(","))
            })
            .collect();
        std::fmt::Debug::fmt(&written.join(", "), f)
    }
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credential and the configured headers are secrets by design, and a
        // pre-signed URL's query is one too; the header names still help a reader.
        f.debug_struct("Outgoing")
            .field("method", &self.method)
            .field("url", &redact(&self.url))
            .field("headers", &self.headers)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("origin_headers", &HeaderNames(&self.origin_headers))
            .field("body", &self.body.len())
            .finish()
    }
}

impl Outgoing {
    /// A GET of `url` with no headers.
    pub fn get(url: Uri) -> Outgoing {
        Outgoing {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            authorization: None,
            origin_headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

/// A response's body as hyper reads it, which tells an HTTP/1.1 connection whenever
/// content reaches its reader: one that reads more than [`limit::MAX_UNFRUITFUL`] bytes
/// without (a chunk size line without end) fails its reads.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Incoming,
    unfruitful: Option<limit::Unfruitful>,
    /// Keeps its connection from being closed as idle until the body is dropped.
    _reading: Option<limit::Reading>,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let (Some(unfruitful), std::task::Poll::Ready(Some(Ok(frame)))) =
            (&this.unfruitful, &polled)
        {
            if frame.data_ref().is_some_and(|data| !data.is_empty()) {
                unfruitful.fruit();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response and the URL it finally came from (after redirects).
#[non_exhaustive]
pub struct Reply {
    /// The response; its body is not read yet.
    pub response: Response<ResponseBody>,
    /// The URL that answered.
    pub url: Uri,
    /// Whether the answer came from the origin the request was addressed to.
    pub same_origin: bool,
    /// The redirects that led the request to another origin: the URL it was addressed
    /// to, and the last hop.
    pub redirected_by: Option<Redirects>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A redirect may have led to a pre-signed URL, whose query is a credential.
        f.debug_struct("Reply")
            .field("status", &self.response.status())
            .field("version", &self.response.version())
            .field("headers", &AnswerHeaders(self.response.headers()))
            .field("url", &redact(&self.url))
            .field("same_origin", &self.same_origin)
            .field(
                "redirected_by",
                &self.redirected_by.as_ref().map(redirected_by),
            )
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Builds the client: system roots plus `ca_file`, HTTP/1.1 and HTTP/2 by ALPN.
    ///
    /// Reads the CA files and the client identity at once, blocking (a few KB each); the
    /// system's roots are read at the first TLS handshake. Fails with
    /// [`ErrorKind::InvalidInput`] for a timeout of zero, a file that does not parse or a
    /// key that does not match its certificate, and with [`ErrorKind::Io`] for one that
    /// cannot be read.
    pub fn new(opts: TransportOptions) -> Result<Transport> {
        let caps = limit::Caps::new(opts.max_connections_per_host, opts.max_connections);
        Transport::with_caps(opts, caps)
    }

    /// As [`Transport::new`], its connections capped with `other`'s: per host, and in all
    /// at `other`'s [`TransportOptions::max_connections`] (the caps are `other`'s, and
    /// this one's options for them are not read). A mirror's client has a pool of its
    /// own, and each kept to the budget of open files on its own went past it together.
    pub fn sharing_connections(opts: TransportOptions, other: &Transport) -> Result<Transport> {
        Transport::with_caps(opts, other.caps.clone())
    }

    fn with_caps(opts: TransportOptions, caps: Arc<limit::Caps>) -> Result<Transport> {
        // Zero is refused, as on the command line: no timeout here means "off", and one of
        // zero failed every request at its first wait, as though the registry had.
        for (field, limit) in [
            ("connect_timeout", opts.connect_timeout),
            ("response_timeout", opts.response_timeout),
            ("idle_timeout", opts.idle_timeout),
        ] {
            if limit.is_zero() {
                return Err(Error::invalid(format!(
                    "TransportOptions::{field} is zero, no time at all; a timeout must be longer"
                )));
            }
        }
        let user_agent = opts
            .user_agent
            .as_deref()
            .map(|ua| {
                HeaderValue::from_str(ua).map_err(|e| {
                    Error::invalid(format!("user agent {ua:?} is no header value")).with_cause(e)
                })
            })
            .transpose()?;
        let tls = tls::client_config(
            &opts.ca_files,
            opts.skip_verify,
            opts.client_identity.as_ref(),
        )?;
        let proxies = opts.proxies.clone().unwrap_or_else(Proxies::from_env);
        let mut http =
            HttpConnector::new_with_resolver(dns::TimedResolver::new(opts.connect_timeout));
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(opts.connect_timeout));
        let inner = HandshakeDeadline::new(
            ProxyConnector::new(http, proxies.clone())
                .with_handshake_timeout(opts.connect_timeout)
                .with_user_agent(user_agent.clone()),
            opts.connect_timeout,
        );
        let http1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(inner.clone());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(inner);
        let mut builder = Client::builder(limit::Background);
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(opts.max_idle_per_host)
            // A field folded over lines (obs-fold), as old servers and proxies fold a long
            // `WWW-Authenticate`, is read with the fold as a space, as RFC 9112 (5.2)
            // requires of a user agent and Go's client and curl do: refused, the whole
            // response failed, and again at every retry.
            .http1_allow_obsolete_multiline_headers_in_responses(true)
            .http1_max_buf_size(MAX_RESPONSE_HEAD_BYTES)
            .http2_max_header_list_size(MAX_RESPONSE_HEADER_LIST);
        match opts.http2_window {
            // The connection gets no more than one stream: whatever the number of streams,
            // the connection holds at most the window in memory. HTTP/2 allows 2^31 - 1.
            Http2Window::Fixed(window) => {
                let window = window.clamp(65_535, i32::MAX as u32);
                builder
                    .http2_initial_stream_window_size(window)
                    .http2_initial_connection_window_size(window)
            }
            Http2Window::Adaptive => builder.http2_adaptive_window(true),
        };
        // An HTTP/2 connection that stops answering with its socket left open (a server
        // that hangs, a NAT or load balancer that dropped its state without a reset) fails
        // each request only at the request's own timeout, and a request given up on leaves
        // its connection in the pool: every retry and every later request went to it again,
        // and a batch failed object after object. A PING that a connection silent for
        // half the idle timeout does not answer within a quarter more closes it, so its
        // requests fail before they would time out and go again on a new connection. An
        // HTTP/1.1 connection needs none of this: a request given up on closes it.
        builder
            .http2_keep_alive_interval(opts.idle_timeout / 2)
            .http2_keep_alive_timeout(opts.idle_timeout / 4);
        let refusals = Refusals::default();
        // The clients share each host's cap: each capped it on its own, and a host got up
        // to three times the cap (a connection of the client for large heads, one of the
        // one for HTTP/1.1 alone, and the HTTP/2 one it refused). The connection one
        // client holds idle, as the HTTP/2 connection an origin refused is left until the
        // pool closes it, is closed when another client needs its place: shared without
        // that, it left a fetch capped at one connection nothing to fall back on.
        let pooled = |builder: &hyper_util::client::legacy::Builder, https| {
            let watched = RefusalConnector::new(HandshakeDone::new(https), refusals.clone());
            builder.build(LimitedConnector::sharing(watched, caps.clone()))
        };
        let client = pooled(&builder, https);
        let large = pooled(
            builder.clone().http1_max_headers(MAX_RESPONSE_HEADERS),
            http1.clone(),
        );
        let http1 = pooled(&builder, http1);
        Ok(Transport {
            client,
            http1,
            large,
            caps,
            pauses: Arc::default(),
            opts: Arc::new(opts),
            proxies,
            refusals,
            user_agent,
        })
    }

    /// Holds every request that a redirect leads to `url`'s origin until `delay` from now:
    /// that origin (a CDN, an object store the registry sends blobs to) asked for the
    /// pause, not the host the requests were addressed to.
    pub(crate) fn pause_origin(&self, url: &Uri, delay: Duration) {
        tracing::debug!(
            origin = url.authority().map_or("", |a| a.as_str()),
            wait_ms = delay.as_millis() as u64,
            "redirect target asks to be left alone"
        );
        self.pauses.pause(url, delay);
    }

    /// This client, its pool and settings, keeping the pauses of redirect targets with
    /// `other`'s: the hosts of one repository (a mirror with a client of its own, and the
    /// registry) may send blobs to the same store, which is one server to hold.
    pub(crate) fn sharing_pauses(mut self, other: &Transport) -> Transport {
        self.pauses = other.pauses.clone();
        self
    }

    /// The options the client was built with.
    pub fn options(&self) -> &TransportOptions {
        &self.opts
    }

    /// The proxy (`host:port`) that forwards plain-http requests to `url`, if one does.
    pub fn forwarding_proxy(&self, url: &Uri) -> Option<String> {
        self.proxies.forwarding_proxy(url)
    }

    /// The `Proxy-Authorization` a request to `url` carries, for a server's error that
    /// repeats it to be shown without it.
    pub(crate) fn proxy_authorization(&self, url: &Uri) -> Option<HeaderValue> {
        self.proxies.forwarding_auth(url)
    }

    /// Sends one request without following redirects, waiting at most the response timeout
    /// for the headers. `Authorization` and the origin's own headers go along only when
    /// `url` is still `origin`.
    pub async fn send_once(&self, req: &Outgoing, origin: bool) -> Result<Response<ResponseBody>> {
        let http1 = self.needs_http1(&req.url);
        match self.send_on(req, origin, http1).await {
            // A server (IIS, some proxies) that takes HTTP/2 for some requests only answers
            // the others with HTTP_1_1_REQUIRED; the request is sent again over HTTP/1.1, as
            // curl sends it, and so is every later request to that origin.
            Err(e) if !http1 && failure::http1_required(&e) => {
                tracing::debug!(url = %redact(&req.url), error = %e, "HTTP/1.1 required; sending again over HTTP/1.1");
                self.caps.mark(&req.url, limit::Quirk::Http1Only);
                self.send_on(req, origin, true).await
            }
            other => other,
        }
    }

    fn needs_http1(&self, url: &Uri) -> bool {
        self.caps.needs(url, limit::Quirk::Http1Only)
    }

    fn sends_large_heads(&self, url: &Uri) -> bool {
        self.caps.needs(url, limit::Quirk::LargeHeads)
    }

    /// The request `req` stands for. `Authorization` and the origin's own headers go along
    /// only with `origin`; its body tells `progress` when a connection takes it.
    fn request(
        &self,
        req: &Outgoing,
        origin: bool,
        progress: &stage::Progress,
    ) -> Result<Request<stage::Watched>> {
        // hyper's pool keys by the authority as written: a default port written out goes
        // without, to share the host's connections.
        let uri = spelling::for_pool(&req.url).unwrap_or_else(|| req.url.clone());
        let mut builder = Request::builder().method(req.method.clone()).uri(uri);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        // One the request or its host's configuration sets replaces it, as in containerd:
        // sent beside it, the server that reads the first saw this one alone.
        let agent = http::header::USER_AGENT;
        let set =
            req.headers.contains_key(&agent) || (origin && req.origin_headers.contains_key(&agent));
        if let Some(ua) = self.user_agent.as_ref().filter(|_| !set) {
            builder = builder.header(agent, ua.clone());
        }
        if origin {
            // The credential dist answered a challenge with replaces a configured
            // `Authorization`, as containerd's authorizer sets its own over it: sent beside
            // it, a server read one of the two or refused the request, and a refusal named
            // the one it did not read.
            let replaced = |k: &http::HeaderName| {
                req.authorization.is_some() && k == http::header::AUTHORIZATION
            };
            let configured = req.origin_headers.iter().filter(|(k, _)| !replaced(k));
            for (k, v) in req
                .authorization
                .iter()
                .map(|a| (&http::header::AUTHORIZATION, a))
                .chain(configured)
            {
                let mut v = v.clone();
                v.set_sensitive(true);
                builder = builder.header(k, v);
            }
        }
        if let Some(auth) = self.proxies.forwarding_auth(&req.url) {
            builder = builder.header(http::header::PROXY_AUTHORIZATION, auth);
        }
        builder.body(progress.body(req.body.clone())).map_err(|e| {
            Error::invalid("building request")
                .with_cause(e)
                .with_url(&req.url)
        })
    }

    /// [`Transport::send_once`] over the client that offers HTTP/2, or over the one that
    /// offers only HTTP/1.1.
    async fn send_on(
        &self,
        req: &Outgoing,
        origin: bool,
        http1: bool,
    ) -> Result<Response<ResponseBody>> {
        let started = std::time::Instant::now();
        // A request that can go again unchanged: a GET or HEAD, never the refresh-token
        // grant's POST, which may have been taken.
        let repeatable = matches!(req.method, Method::GET | Method::HEAD);
        // One that cannot goes with room for a large head from the start (over HTTP/1.1,
        // the only version that counts fields): it has no second sending to get it, and a
        // one-shot run's one token grant failed on a token server behind many proxies.
        // A POST is rare (once per token), and its 64 KiB cost nothing worth saving.
        let mut large = !repeatable || self.sends_large_heads(&req.url);
        let mut client = match (large, http1) {
            (true, _) => &self.large,
            (false, true) => &self.http1,
            (false, false) => &self.client,
        };
        let (mut stale, mut unsent) = (0, 0);
        let response = loop {
            // Built for each attempt, which is nearly always the only one: a copy kept for
            // the next would cost every request its headers twice.
            let progress = stage::Progress::default();
            let mut request = self.request(req, origin, &progress)?;
            // Which connection the request is handed, once idle ones may be closed under
            // it: learning it costs a request seven allocations, paid only then.
            let handed = self
                .caps
                .closes_idle()
                .then(|| hyper_util::client::legacy::connect::capture_connection(&mut request));
            let limit = self.opts.response_timeout;
            let handed = handed.map(|c| move || c.connection_metadata().as_ref().and_then(in_use));
            // One not told which connection it is handed is given up, unsent, once idle
            // connections may be closed under it, to go again told (`transport::handed`).
            let look = handed
                .is_none()
                .then_some((handed::LOOK_EVERY, || self.caps.closes_idle()));
            let sent = handed::unless_lost(client.request(request), handed, &progress);
            match progress.answered_within(limit, sent, look).await {
                Err(stage::Unanswered::Late) => {
                    // Named with its limit and option: "in time" left the user to guess
                    // which of the timeouts ran out, and how long it was. A forwarding
                    // proxy is named too: it is what did not answer, and the registry's URL
                    // alone sent the user looking for a stalled registry.
                    let mut said = format!(
                        "no response headers within {} ({})",
                        crate::duration::Written(limit),
                        crate::setting::Setting::ResponseTimeout
                    );
                    if let Some(proxy) = self.proxies.forwarding_proxy(&req.url) {
                        said.push_str(&format!(
                            " from the proxy {proxy}, which forwards the request"
                        ));
                    }
                    return Err(Error::new(ErrorKind::Timeout, said).with_url(&req.url));
                }
                // Built before idle connections could close under it, it is built again
                // told which connection it is handed: once, as they can from then on.
                Err(stage::Unanswered::GivenUp) => {
                    tracing::debug!(url = %redact(&req.url), "not yet sent as idle connections began to be closed; sending again, watched");
                    continue;
                }
                // Never sent, any request can go again, a POST too. Bounded as the resends
                // after stale connections are, though each loss takes a connection closed
                // to make room as it was handed over, which is rare.
                Ok(Err(handed::Lost)) => {
                    if unsent < self.caps.per_host() {
                        unsent += 1;
                        tracing::debug!(url = %redact(&req.url), "connection closed as it was handed the request, before sending it; sending again");
                        continue;
                    }
                    let said =
                        "request lost: each connection it was handed closed before it was sent";
                    return Err(Error::new(ErrorKind::Connect, said).with_url(&req.url));
                }
                Ok(Ok(Err(e))) => {
                    // A head past hyper's usual count of fields: asked again with the
                    // larger limit, as is every later request to its origin.
                    if !large && failure::head_too_large(&e) {
                        tracing::debug!(url = %redact(&req.url), "more than {USUAL_RESPONSE_HEADERS} header fields; asking again with room for {MAX_RESPONSE_HEADERS}");
                        self.caps.mark(&req.url, limit::Quirk::LargeHeads);
                        large = true;
                        client = &self.large;
                        continue;
                    }
                    let conn = e.connect_info().and_then(in_use);
                    let reused = conn.as_ref().is_some_and(limit::InUse::answered_before);
                    if let Some(conn) = &conn {
                        conn.failed();
                    }
                    let refused = || self.refusals.of(&req.url);
                    let ours = self.opts.client_identity.as_ref();
                    let fields = if large {
                        MAX_RESPONSE_HEADERS
                    } else {
                        USUAL_RESPONSE_HEADERS
                    };
                    let host = req.url.host().unwrap_or_default();
                    let by_address = by_address(&req.url);
                    let e = classify_client_error(e, refused, ours, by_address, host, fields)
                        .with_url(&req.url);
                    // A worker fed slowly finds its pooled connections as it left them,
                    // though a load balancer or NAT may have dropped them all meanwhile,
                    // saying so only as a request goes out on each. Every one of them is
                    // passed over, as Go's client does, before the caller counts a loss:
                    // it resent once and then retried, each time on the next stale
                    // connection, and failed the first object after an idle gap. The
                    // pool holds no more connections than the caps' cap per host, as
                    // clamped, and they may be another transport's: this one's option
                    // failed a fetch on the second of eight stale connections.
                    if repeatable
                        && stale < self.caps.per_host()
                        && failure::lost_with_connection(&e)
                        && reused
                    {
                        stale += 1;
                        tracing::debug!(url = %redact(&req.url), error = %e, "kept-alive connection lost before an answer; sending again");
                        continue;
                    }
                    // A forwarding proxy is what the connection went to: a connection
                    // closed unanswered named the registry's URL alone. One it could not
                    // make names the proxy already.
                    let e = match self.proxies.forwarding_proxy(&req.url) {
                        Some(proxy) if !e.to_string().contains(&proxy) => e.with_note(format!(
                            "through the proxy {proxy}, which forwards the request"
                        )),
                        _ => e,
                    };
                    return Err(e);
                }
                Ok(Ok(Ok(r))) => {
                    let unfruitful = r.extensions().get::<limit::Unfruitful>().cloned();
                    if let Some(unfruitful) = &unfruitful {
                        unfruitful.fruit();
                    }
                    let reading = r.extensions().get::<limit::InUse>().map(limit::InUse::read);
                    break r.map(|inner| ResponseBody {
                        inner,
                        unfruitful,
                        _reading: reading,
                    });
                }
            }
        };
        tracing::debug!(
            method = %req.method,
            url = %redact(&req.url),
            status = response.status().as_u16(),
            version = ?response.version(),
            ms = started.elapsed().as_millis() as u64,
            "response"
        );
        Ok(response)
    }

    /// Sends a request and follows redirects (up to [`MAX_REDIRECTS`]). `Authorization` and
    /// the origin's own headers are sent only while the URL keeps the scheme, host and port
    /// of the original request; a redirect from https to http is refused.
    pub async fn send(&self, mut req: Outgoing) -> Result<Reply> {
        // The original request's origin, worked out at the first redirect: nearly every
        // request has none, and lowercasing names costs a small blob's fetch 3% of its
        // work outside hashing.
        let mut origin = None;
        let mut same_origin = true;
        // The redirects followed, once one leaves the origin: the URL the request was
        // addressed to, and the last hop.
        let mut chain: Option<Redirects> = None;
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send_once(&req, same_origin).await.map_err(|e| {
                let e = match (same_origin, e.kind()) {
                    (false, ErrorKind::Certificate) => e.with_note(AT_REDIRECT_TARGET),
                    (false, ErrorKind::NotTls) => {
                        Error::new(ErrorKind::NotTls, NOT_TLS_AT_REDIRECT_TARGET).with_url(&req.url)
                    }
                    _ => e,
                };
                match (same_origin, &chain) {
                    (false, Some(chain)) => e.with_note(redirected_by(chain)),
                    _ => e,
                }
            })?;
            let status = response.status();
            if !is_redirect(status) {
                return Ok(Reply {
                    response,
                    url: req.url,
                    redirected_by: chain.filter(|_| !same_origin),
                    same_origin,
                });
            }
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .map(|v| location_text(v.as_bytes()))
                // An empty one names the URL that sent it: followed, it asked the same
                // again until the redirects ran out.
                .filter(|l| !l.is_empty())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Protocol,
                        format!("redirect {status} without Location"),
                    )
                    .with_url(&req.url)
                })?;
            let next = resolve(&req.url, &location).map_err(|e| e.with_url(&req.url))?;
            if req.url.scheme_str() == Some("https") && next.scheme_str() != Some("https") {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("refusing redirect from https to {}", redact(&next)),
                )
                .with_url(&req.url));
            }
            tracing::debug!(from = %redact(&req.url), to = %redact(&next), status = status.as_u16(), "redirect");
            let origin = origin.get_or_insert_with(|| Origin::of(&req.url));
            let chain = chain.get_or_insert_with(|| Redirects {
                addressed: req.url.clone(),
                last_hop: req.url.clone(),
                count: 0,
            });
            chain.last_hop = req.url.clone();
            chain.count += 1;
            same_origin = Origin::of(&next) == *origin;
            if !same_origin {
                if let Some(until) = self.pauses.until(&next) {
                    tracing::debug!(to = %redact(&next), "waiting out the redirect target's Retry-After");
                    // Boxed: rarely awaited, and inline it would grow every request's future.
                    Box::pin(tokio::time::sleep_until(until)).await;
                }
            }
            // Before the body is judged: a 303 drops it, and a body that goes nowhere
            // keeps no request from another origin.
            if status == StatusCode::SEE_OTHER && req.method != Method::HEAD {
                req.method = Method::GET;
                req.body = Bytes::new();
            }
            if !req.body.is_empty() && !same_origin {
                // A body may carry a secret (a refresh token in a form): it stays with the
                // origin it was meant for.
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("refusing to send a request body on to {}", redact(&next)),
                )
                .with_url(&req.url));
            }
            req.url = next;
        }
        Err(Error::new(
            ErrorKind::Protocol,
            format!("more than {MAX_REDIRECTS} redirects"),
        )
        .with_url(&req.url))
    }

    /// Waits for the next piece of a body, failing when none arrives within the idle
    /// timeout. `Ok(None)` is the end of the body.
    pub async fn next_chunk(&self, body: &mut ResponseBody) -> Result<Option<Bytes>> {
        loop {
            let frame = match tokio::time::timeout(self.opts.idle_timeout, body.frame()).await {
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "body stalled: nothing for {:?} ({})",
                            self.opts.idle_timeout,
                            crate::setting::Setting::IdleTimeout
                        ),
                    ))
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) if failure::went_silent(&e) => {
                    // The cause's own words are only "broken pipe": logged, not shown.
                    tracing::debug!(error = %e, "HTTP/2 connection ended under a body");
                    let said = failure::ended_under_body(self.opts.idle_timeout);
                    return Err(Error::new(ErrorKind::Connect, said));
                }
                Ok(Some(Err(e))) => {
                    // A server that sends framing without end will do so again: not retried.
                    if let Some(said) = failure::fruitless(&e) {
                        return Err(Error::new(ErrorKind::Protocol, said));
                    }
                    return Err(Error::new(ErrorKind::Connect, "body interrupted").with_cause(e));
                }
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// The use of the connection a request failed on: whether it had answered a request
/// before (one kept alive in the pool).
fn in_use(connected: &hyper_util::client::legacy::connect::Connected) -> Option<limit::InUse> {
    let mut extras = http::Extensions::new();
    connected.get_extras(&mut extras);
    extras.remove::<limit::InUse>()
}

/// Whether `url` names its host by IP address, to which TLS sends no server name.
fn by_address(url: &Uri) -> bool {
    url.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .is_some_and(|h| h.parse::<std::net::IpAddr>().is_ok())
}

/// A URL for messages and logs: without its query (pre-signed CDN URLs carry credentials
/// there) and without user information.
pub fn redact(url: &Uri) -> String {
    // An `@` in the path may end a password pasted with a `/` in it (`u:1234/s3cret@cdn`,
    // its start read as a port): [`crate::error::redact_url`] tells whether it does.
    let secret_bearing = url.query().is_some()
        || url.authority().is_some_and(|a| a.as_str().contains('@'))
        || url.path().contains('@');
    let long = url.path().len() > crate::error::MAX_URL_SHOWN;
    if secret_bearing || long {
        crate::error::redact_url(&url.to_string())
    } else {
        // Nearly every URL: nothing to take out, and no second pass over it; sized up front
        // so that the text is written into one allocation.
        let len = url.scheme_str().map_or(0, |s| s.len() + 3)
            + url.authority().map_or(0, |a| a.as_str().len())
            + url.path_and_query().map_or(1, |p| p.as_str().len());
        let mut s = String::with_capacity(len);
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{url}"));
        s
    }
}

/// Reads a whole body of at most `limit` bytes; more is an error of kind
/// [`ErrorKind::TooLarge`], so a hostile server cannot make us buffer without bound.
pub async fn read_limited(
    transport: &Transport,
    body: &mut ResponseBody,
    limit: usize,
) -> Result<Bytes> {
    let mut buf = bytes::BytesMut::new();
    read_onto(transport, body, &mut buf, limit).await?;
    Ok(buf.freeze())
}

/// Appends a body to `buf`, which may not grow past `limit` bytes: more is an error of
/// kind [`ErrorKind::TooLarge`]. What arrived before an error stays in `buf`, for a caller
/// that asks for the rest.
pub async fn read_onto(
    transport: &Transport,
    body: &mut ResponseBody,
    buf: &mut bytes::BytesMut,
    limit: usize,
) -> Result<()> {
    while let Some(chunk) = transport.next_chunk(body).await? {
        if buf.len() + chunk.len() > limit {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("response larger than {limit} bytes"),
            ));
        }
        grow_within(buf, chunk.len(), limit);
        buf.extend_from_slice(&chunk);
    }
    Ok(())
}

/// Makes room in `buf` for `more` bytes without its capacity passing `limit`, which
/// `buf.len() + more` does not exceed. `BytesMut` grows by doubling, so a 9 MiB part read
/// into a buffer of 8 MiB ended up holding 16 MiB: the bound of `streams × part_size`
/// bytes for a remote's parts held only for parts of a power-of-two size.
fn grow_within(buf: &mut bytes::BytesMut, more: usize, limit: usize) {
    if buf.capacity() - buf.len() >= more {
        return;
    }
    if buf.capacity().saturating_mul(2) <= limit {
        buf.reserve(more);
        return;
    }
    // Once, at most: the buffer then holds `limit`.
    let mut grown = bytes::BytesMut::with_capacity(limit);
    grown.extend_from_slice(buf);
    *buf = grown;
}

/// Reads at most `limit` bytes of a body: for error bodies, where the first bytes explain
/// the failure and the rest does not matter. A body read to its end frees its HTTP/1.1
/// connection for the next request; one longer than `limit`, or stalled, keeps it busy
/// until the caller drops the body, which a caller that asks the same host again meanwhile
/// (a token from a realm on the registry's host) must do first: under the per-host cap,
/// the next request waits for that connection.
pub async fn read_prefix(transport: &Transport, body: &mut ResponseBody, limit: usize) -> Bytes {
    let mut buf = bytes::BytesMut::new();
    while buf.len() < limit {
        match transport.next_chunk(body).await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - buf.len());
                buf.extend_from_slice(&chunk[..take]);
            }
            _ => break,
        }
    }
    buf.freeze()
}

/// Whether `uri` writes a port that is no port number: other than decimal digits (`:7x`,
/// or `:+5000`, which `Uri` reads as 5000 and sends on as written) or past 65535. `Uri`
/// takes such a port and reads it as none, so a proxy or mirror was asked at the scheme's
/// default port, another server than the one meant. An empty port (`host:`) is the
/// default, as for curl.
pub(crate) fn bad_port(uri: &Uri) -> bool {
    let Some(authority) = uri.authority() else {
        return false;
    };
    let host_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && !port.contains(']') => {
            !crate::reference::is_port(port)
        }
        _ => false,
    }
}

/// Whether `uri` names a server to connect to: a host, and no port but a port number
/// (see [`bad_port`]) other than 0. The URI parser takes an empty host (`https://:5000/x`)
/// and a port past 65535 for a URL's: one was a lookup of no name, failing as if the
/// network were down, the other asked at the scheme's default port, another server than
/// the one named. Port 0 failed as "connection refused" naming `:0`, and was retried.
/// The one check for a redirect's `Location`, a token realm and a proxy setting.
pub(crate) fn names_a_server(uri: &Uri) -> bool {
    uri.host().is_some_and(|h| !h.is_empty()) && !bad_port(uri) && !port_0(uri)
}

/// Whether `uri` names port 0, which no server listens on: refused saying so
/// ([`crate::reference::PORT_0`]), where a refusal for a port that is no number would
/// leave `0` to be puzzled out.
pub(crate) fn port_0(uri: &Uri) -> bool {
    uri.port_u16() == Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part past a power of two of bytes is held in its own size, not the next power.
    #[test]
    fn a_buffer_grows_no_further_than_its_limit() {
        const MIB: usize = 1 << 20;
        let limit = 9 * MIB + 17;
        let mut buf = bytes::BytesMut::with_capacity(8 * MIB);
        let chunk = vec![7u8; 64 * 1024];
        while buf.len() < limit {
            let more = chunk.len().min(limit - buf.len());
            grow_within(&mut buf, more, limit);
            buf.extend_from_slice(&chunk[..more]);
        }
        assert_eq!(buf.len(), limit);
        assert!(buf.capacity() <= limit, "{} > {limit}", buf.capacity());
        // Below the limit, it still grows by doubling, not chunk by chunk.
        let mut small = bytes::BytesMut::with_capacity(16);
        grow_within(&mut small, 20, 1 << 30);
        assert!(small.capacity() >= 32, "{}", small.capacity());
    }

    /// A timeout of zero is refused, as on the command line (`--idle-timeout 0`), naming
    /// the field: taken, every request failed at its first wait ("no response headers
    /// within 0ns"), which reads as the registry failing, not as the option given.
    #[test]
    fn a_zero_timeout_is_refused_naming_its_field() {
        for field in ["connect_timeout", "response_timeout", "idle_timeout"] {
            let mut options = TransportOptions::default();
            match field {
                "connect_timeout" => options.connect_timeout = Duration::ZERO,
                "response_timeout" => options.response_timeout = Duration::ZERO,
                _ => options.idle_timeout = Duration::ZERO,
            }
            let e = Transport::new(options).expect_err(field);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains(field), "{e}");
        }
        assert!(Transport::new(TransportOptions::default()).is_ok());
    }

    /// A request on its way carries the registry's credential and the host's configured
    /// headers (API keys); its `Debug` shows neither, nor a pre-signed URL's query.
    #[test]
    fn an_outgoing_request_debugs_without_secrets() {
        let mut req = Outgoing::get(u("https://cdn.example/blob?X-Amz-Signature=sig-s3cret"));
        req.authorization = Some(HeaderValue::from_static("Basic YWxpY2U6czNjcmV0"));
        req.origin_headers
            .insert("x-api-key", HeaderValue::from_static("key-s3cret"));
        req.headers
            .insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        let shown = format!("{req:?}");
        for secret in ["YWxpY2U6czNjcmV0", "key-s3cret", "sig-s3cret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("x-api-key") && shown.contains("*/*"),
            "{shown}"
        );
    }

    fn u(s: &str) -> Uri {
        s.parse().unwrap()
    }

    /// What sending the request `to` makes for a one-shot server's port gets from it,
    /// the server answering `answer`; and the request as the server read it.
    async fn sent_once(
        answer: impl Into<Vec<u8>>,
        to: impl FnOnce(u16) -> Outgoing,
    ) -> (Result<Reply>, String) {
        let (address, served) = one_shot::answer_once(answer).await;
        let transport = Transport::new(TransportOptions::default()).unwrap();
        let sent = transport.send(to(address.port())).await;
        (sent, served.await.unwrap())
    }

    /// A GET of `/v2/` on `localhost:port`.
    fn get_v2(port: u16) -> Outgoing {
        Outgoing::get(u(&format!("http://localhost:{port}/v2/")))
    }

    /// The status and the `Debug` of the reply a one-shot server's `answer` makes.
    async fn shown_reply(answer: &str) -> (StatusCode, String) {
        let reply = sent_once(answer, get_v2).await.0.unwrap();
        (reply.response.status(), format!("{reply:?}"))
    }

    /// A registry behind a session-based front (Nexus, a load balancer's login) answers
    /// with a session cookie: a credential the server issued, which dist never sends
    /// back. A service that logs a `Reply` with `{:?}` printed it whole.
    #[tokio::test]
    async fn a_reply_debugs_without_the_cookie_it_was_given() {
        let (status, shown) = shown_reply(
            "HTTP/1.1 200 OK\r\nset-cookie: NXSESSIONID=sess-s3cret; Path=/\r\n\
             content-type: application/json\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(!shown.contains("sess-s3cret"), "{shown}");
        // The other headers, and the cookie's name, still help a reader.
        assert!(
            shown.contains("set-cookie") && shown.contains("application/json"),
            "{shown}"
        );
    }

    /// A `Location` a reply keeps (a 300's, which is not followed) may be a pre-signed
    /// URL: its `Debug` shows it without the query, as any URL dist shows.
    #[tokio::test]
    async fn a_reply_debugs_without_its_location_s_query() {
        let (status, shown) = shown_reply(
            "HTTP/1.1 300 Multiple Choices\r\n\
             location: https://cdn.example/b?X-Amz-Signature=sig-s3cret\r\n\
             content-location: /b?token=tok-s3cret\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(status, StatusCode::MULTIPLE_CHOICES);
        for secret in ["sig-s3cret", "tok-s3cret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("https://cdn.example/b?…") && shown.contains("/b?…"),
            "{shown}"
        );
    }

    /// A 401's challenge may name a realm with a key in its query (`?token=…`) or a
    /// login: its `Debug`, which a library caller prints, shows the realm without them, as
    /// any URL dist shows, and the rest of the challenge as it came.
    #[tokio::test]
    async fn a_reply_debugs_without_its_realm_s_query() {
        let (status, shown) = shown_reply(
            "HTTP/1.1 401 Unauthorized\r\n\
             www-authenticate: Bearer realm=\"https://u:pw-s3cret@auth.example/token?token=tok-s3cret\",service=\"reg.example\"\r\n\
             www-authenticate: Basic realm=\"Registry\"\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        for secret in ["tok-s3cret", "pw-s3cret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains(r#"realm=\"https://auth.example/token?…\""#)
                && shown.contains(r#"service=\"reg.example\""#)
                && shown.contains(r#"Basic realm=\"Registry\""#),
            "{shown}"
        );
    }

    /// An empty `Location` is no location: resolved, it is the URL that sent it.
    #[tokio::test]
    async fn an_empty_location_is_a_redirect_without_one() {
        let answer = "HTTP/1.1 302 Found\r\nlocation: \r\ncontent-length: 0\r\n\r\n";
        let e = sent_once(answer, get_v2).await.0.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        assert!(e.to_string().contains("302 Found without Location"), "{e}");
    }

    /// A 303 sends the request on as a GET without its body (RFC 9110, 15.4.4), as Go's
    /// client and curl do: the body, which may hold a secret, goes nowhere, so a 303 to
    /// another origin is followed. The body was refused before the 303 dropped it.
    #[tokio::test]
    async fn a_see_other_to_another_origin_goes_on_as_a_get_without_the_body() {
        let (done, served_done) =
            one_shot::answer_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let (first, served_first) = one_shot::answer_once(format!(
            "HTTP/1.1 303 See Other\r\nlocation: http://{done}/done\r\ncontent-length: 0\r\n\r\n"
        ))
        .await;
        let first = first.port();
        let transport = Transport::new(TransportOptions::default()).unwrap();
        let mut req = Outgoing::get(u(&format!("http://localhost:{first}/token")));
        req.method = Method::POST;
        req.body = Bytes::from_static(b"grant_type=refresh_token&refresh_token=s3cret");
        let reply = transport.send(req).await.unwrap();
        assert_eq!(reply.response.status(), StatusCode::OK);
        assert!(!reply.same_origin);
        assert!(served_first.await.unwrap().starts_with("POST /token "));
        let second = served_done.await.unwrap();
        assert!(second.starts_with("GET /done "), "{second}");
        assert!(!second.contains("s3cret"), "{second}");
    }

    /// A token server behind a chain of proxies answers the refresh-token grant's POST
    /// with more than hyper's usual 100 header fields. The POST is not sent twice, so it
    /// goes with room for them from the start: sent with the usual room, it failed as
    /// "too large", and a one-shot run, whose only POST it was, failed with it.
    #[tokio::test]
    async fn a_post_takes_a_head_of_many_fields_at_its_one_sending() {
        let mut answer = String::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
        for i in 0..150 {
            answer.push_str(&format!("x-hop-{i}: proxy\r\n"));
        }
        answer.push_str("\r\n{}");
        let (reply, served) = sent_once(answer, |port| {
            let mut req = Outgoing::get(u(&format!("http://localhost:{port}/token")));
            req.method = Method::POST;
            req.body = Bytes::from_static(b"grant_type=refresh_token&refresh_token=r");
            req
        })
        .await;
        assert_eq!(reply.unwrap().response.status(), StatusCode::OK);
        assert!(served.starts_with("POST /token "));
    }

    /// The response timeout is for silence on a connection. Counted from the moment a
    /// request asked the pool, one queued behind the per-host cap (a connection busy with
    /// a body the caller reads slowly) timed out as "(--idle-timeout)" though it was never
    /// sent; it now waits for the connection and has the whole limit once sent.
    #[tokio::test]
    async fn a_request_queued_behind_the_cap_is_not_out_of_time() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn read_head(conn: &mut tokio::net::TcpStream) {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(conn.read(&mut byte).await.unwrap(), 1);
                head.push(byte[0]);
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            read_head(&mut conn).await;
            // Headers, and a body held back: the connection stays busy.
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
                .await
                .unwrap();
            finished.await.unwrap();
            conn.write_all(b"done").await.unwrap();
            // The queued request, on the same connection once it is free.
            read_head(&mut conn).await;
            conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
        });
        let limit = Duration::from_millis(50);
        let transport = Transport::new(TransportOptions {
            max_connections_per_host: 1,
            response_timeout: limit,
            ..TransportOptions::default()
        })
        .unwrap();
        let url = u(&format!("http://127.0.0.1:{port}/v2/"));
        let mut busy = transport.send(Outgoing::get(url.clone())).await.unwrap();
        let queued = tokio::spawn({
            let transport = transport.clone();
            async move { transport.send(Outgoing::get(url)).await }
        });
        // Past the limit several times over, with the request still queued: a timer
        // fires in the queued request for each. (A pause, since time passing is the point;
        // a slow machine only makes it longer.)
        tokio::time::sleep(limit * 4).await;
        assert!(!queued.is_finished(), "{:?}", queued.await.unwrap());
        finish.send(()).unwrap();
        let body = read_limited(&transport, busy.response.body_mut(), 16)
            .await
            .unwrap();
        assert_eq!(&body[..], b"done");
        drop(busy);
        let reply = queued.await.unwrap().unwrap();
        assert_eq!(reply.response.status(), StatusCode::NO_CONTENT);
        server.await.unwrap();
    }

    /// A forwarding proxy on 127.0.0.1 that answers every request itself (204, kept
    /// alive), counting the connections it accepted and noting each request's target.
    async fn answering_proxy() -> (
        u16,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let targets = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, log) = (accepted.clone(), targets.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let log = log.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while conn.read(&mut byte).await.unwrap_or(0) == 1 {
                        head.push(byte[0]);
                        if head.ends_with(b"\r\n\r\n") {
                            let text = String::from_utf8_lossy(&head).to_string();
                            let target = text.split(' ').nth(1).unwrap_or("").to_string();
                            log.lock().unwrap().push(target);
                            head.clear();
                            let answer = b"HTTP/1.1 204 No Content\r\n\r\n";
                            if conn.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (port, accepted, targets)
    }

    /// `host` and `host:80` (`host:443` for https), in any case, are one host: hyper's pool
    /// keyed them apart, so a request under the second spelling opened a connection of its
    /// own beside the first's idle one, and at a binding cap told that one to close. A
    /// name with a trailing dot stays another host, as Docker and containerd take it. An
    /// IPv6 address goes as written, its `Host` what a pre-signed URL's signer wrote.
    #[tokio::test]
    async fn the_spellings_of_one_host_share_its_connections() {
        let (port, accepted, targets) = answering_proxy().await;
        let proxy = format!("http://127.0.0.1:{port}");
        let transport = Transport::new(TransportOptions {
            max_connections_per_host: 1,
            proxies: Some(proxy::Proxies::from_variables(|name| {
                (name == "HTTP_PROXY").then(|| proxy.clone())
            })),
            ..TransportOptions::default()
        })
        .unwrap();
        let connections = || accepted.load(std::sync::atomic::Ordering::SeqCst);
        for (first, second, apart) in [
            (
                "http://registry.test/v2/",
                "http://registry.test:80/v2/t",
                0,
            ),
            (
                "http://[2001:db8::1]/v2/",
                "http://[2001:DB8::1]:80/v2/t",
                0,
            ),
            ("http://other.test./v2/", "http://other.test/v2/t", 1),
        ] {
            let before = connections();
            for url in [first, second] {
                let reply = transport.send(Outgoing::get(u(url))).await.unwrap();
                assert_eq!(reply.response.status(), StatusCode::NO_CONTENT, "{url}");
            }
            assert_eq!(
                connections() - before,
                1 + apart,
                "{first} then {second}: {:?}",
                targets.lock().unwrap()
            );
        }
        let targets = targets.lock().unwrap();
        assert!(
            targets.iter().any(|t| t == "http://[2001:DB8::1]/v2/t"),
            "an IPv6 address not sent as written: {targets:?}"
        );
    }

    /// The origins found to need HTTP/1.1 or to send large heads are forgotten with their
    /// hosts' caps, once no connection to them is left: one entry per misbehaving origin,
    /// a batch that met thousands of them grew the lists without bound (20,000 entries for
    /// 10,000 origins, where now at most 64 hosts are known).
    #[test]
    fn origins_listed_are_forgotten_with_their_connections() {
        let transport = Transport::new(TransportOptions::default()).unwrap();
        let kept = u("https://registry.example/v2/");
        let caps = &transport.caps;
        for i in 0..10_000 {
            let url = u(&format!("https://blob-{i}.cdn.example/b"));
            caps.mark(&url, limit::Quirk::Http1Only);
            caps.mark(&url, limit::Quirk::LargeHeads);
        }
        let marked = caps.marked_hosts();
        assert!(marked <= limit::KEEP_IDLE_HOSTS, "{marked} origins listed");
        caps.mark(&kept, limit::Quirk::Http1Only);
        assert!(transport.needs_http1(&kept));
        assert!(!transport.sends_large_heads(&kept));
    }

    #[test]
    fn redacted_urls_lose_queries_and_user_information_only() {
        let plain = "https://reg.example:5000/v2/x/blobs/sha256:ab";
        assert_eq!(redact(&u(plain)), plain);
        assert_eq!(
            redact(&u("https://cdn.example/a?X-Amz-Signature=s3cret")),
            "https://cdn.example/a?…"
        );
        assert_eq!(
            redact(&u("https://me:s3cret@reg.example/v2/")),
            "https://reg.example/v2/"
        );
        // A password's start read as a port, its `/` and the rest in the path: the
        // common URL shown whole was a path with nothing to take out.
        for url in [
            "https://u:1234/s3cret@cdn.example/x",
            "https://u:1234/s3cret@cdn/x",
        ] {
            let shown = redact(&u(url));
            assert!(!shown.contains("s3cret"), "{url}: {shown}");
            assert!(!shown.contains("1234"), "{url}: {shown}");
        }
    }
}
