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
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

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

mod handshake;
pub mod limit;
mod pinned;
pub mod proxy;
mod refusal;
mod socks;
pub mod tls;

use handshake::{HandshakeDeadline, HandshakeDone};
use limit::LimitedConnector;
use proxy::{Proxies, ProxyConnector};
use refusal::{Ending, RefusalConnector, Refusals};

/// How many header fields an HTTP/1.1 response may have. hyper's default, 100, is met by
/// a response that passed a few CDNs and proxies, each adding its own; curl and Go set no
/// count at all (only a size, as hyper also does). The fields are then kept on the heap
/// instead of the stack: one allocation per response.
pub const MAX_RESPONSE_HEADERS: usize = 1000;

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
pub struct TransportOptions {
    /// Extra CA certificates (PEM files) trusted besides the system store.
    pub ca_files: Vec<std::path::PathBuf>,
    /// Accept any certificate: only for a mirror configured with `skip_verify`.
    pub skip_verify: bool,
    /// Limit for establishing a TCP connection, and again for its TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for the response headers to arrive once a request is sent.
    pub response_timeout: Duration,
    /// Limit for the gap between two pieces of a response body; a stalled body is aborted.
    /// An HTTP/2 connection silent for half of it is sent a PING, and closed when none
    /// comes back within a quarter more.
    pub idle_timeout: Duration,
    /// Idle connections kept per host; the worker sets this to its job count.
    pub max_idle_per_host: usize,
    /// Connections per host at most, busy or idle; the worker sets this to its job count.
    pub max_connections_per_host: usize,
    /// The HTTP/2 flow-control window.
    pub http2_window: Http2Window,
    /// A client certificate for servers that ask for one (mutual TLS).
    pub client_identity: Option<tls::ClientIdentity>,
}

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
            http2_window: Http2Window::DEFAULT,
            client_identity: None,
        }
    }
}

/// Connections with TLS for `https` destinations, the handshake given its own deadline.
type TlsConnector = HandshakeDone<HttpsConnector<HandshakeDeadline<ProxyConnector>>>;

/// The pooled client. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct Transport {
    client: Client<LimitedConnector<RefusalConnector<TlsConnector>>, Full<Bytes>>,
    opts: Arc<TransportOptions>,
    /// What servers said of our client certificate, for requests whose own error does not.
    refusals: Refusals,
    /// The connector's proxies, asked again per request for a forwarding proxy's
    /// credentials.
    proxies: Proxies,
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
    pub origin_headers: HeaderMap,
    /// Request body (empty for GET/HEAD).
    pub body: Bytes,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credential and the configured headers are secrets by design, and a
        // pre-signed URL's query is one too; the header names still help a reader.
        let origin_headers: Vec<_> = self.origin_headers.keys().collect();
        f.debug_struct("Outgoing")
            .field("method", &self.method)
            .field("url", &redact(&self.url))
            .field("headers", &self.headers)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("origin_headers", &origin_headers)
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

/// A response and the URL it finally came from (after redirects).
pub struct Reply {
    /// The response; its body is not read yet.
    pub response: Response<Incoming>,
    /// The URL that answered.
    pub url: Uri,
    /// Whether the answer came from the origin the request was addressed to.
    pub same_origin: bool,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A redirect may have led to a pre-signed URL, whose query is a credential.
        f.debug_struct("Reply")
            .field("status", &self.response.status())
            .field("version", &self.response.version())
            .field("headers", self.response.headers())
            .field("url", &redact(&self.url))
            .field("same_origin", &self.same_origin)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Builds the client: system roots plus `ca_file`, HTTP/1.1 and HTTP/2 by ALPN.
    pub fn new(opts: TransportOptions) -> Result<Transport> {
        let tls = tls::client_config(
            &opts.ca_files,
            opts.skip_verify,
            opts.client_identity.as_ref(),
        )?;
        let proxies = Proxies::from_env();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(opts.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(HandshakeDeadline::new(
                ProxyConnector::new(http, proxies.clone())
                    .with_handshake_timeout(opts.connect_timeout),
                opts.connect_timeout,
            ));
        let https = HandshakeDone::new(https);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(opts.max_idle_per_host)
            .http1_max_headers(MAX_RESPONSE_HEADERS)
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
        let watched = RefusalConnector::new(https, refusals.clone());
        let client = builder.build(LimitedConnector::new(
            watched,
            opts.max_connections_per_host,
        ));
        Ok(Transport {
            client,
            opts: Arc::new(opts),
            proxies,
            refusals,
        })
    }

    /// The options the client was built with.
    pub fn options(&self) -> &TransportOptions {
        &self.opts
    }

    /// The proxy (`host:port`) that forwards plain-http requests to `url`, if one does.
    pub fn forwarding_proxy(&self, url: &Uri) -> Option<String> {
        self.proxies.forwarding_proxy(url)
    }

    /// Sends one request without following redirects, waiting at most the response timeout
    /// for the headers. `Authorization` and the origin's own headers go along only when
    /// `url` is still `origin`.
    pub async fn send_once(&self, req: &Outgoing, origin: bool) -> Result<Response<Incoming>> {
        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(req.url.clone());
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        if origin {
            for (k, v) in req
                .authorization
                .iter()
                .map(|a| (&http::header::AUTHORIZATION, a))
                .chain(&req.origin_headers)
            {
                let mut v = v.clone();
                v.set_sensitive(true);
                builder = builder.header(k, v);
            }
        }
        if let Some(auth) = self.proxies.forwarding_auth(&req.url) {
            builder = builder.header(http::header::PROXY_AUTHORIZATION, auth);
        }
        let request = builder.body(Full::new(req.body.clone())).map_err(|e| {
            Error::invalid("building request")
                .with_cause(e)
                .with_url(&req.url)
        })?;
        let started = std::time::Instant::now();
        let fut = self.client.request(request);
        let result = tokio::time::timeout(self.opts.response_timeout, fut).await;
        let response = match result {
            Err(_) => {
                return Err(
                    Error::new(ErrorKind::Timeout, "no response headers in time")
                        .with_url(&req.url),
                )
            }
            Ok(Err(e)) => {
                let refused = || self.refusals.of(&req.url);
                let ours = self.opts.client_identity.as_ref();
                return Err(classify_client_error(e, refused, ours).with_url(&req.url));
            }
            Ok(Ok(r)) => r,
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
        for _ in 0..=MAX_REDIRECTS {
            let response = self.send_once(&req, same_origin).await?;
            let status = response.status();
            if !is_redirect(status) {
                return Ok(Reply {
                    response,
                    url: req.url,
                    same_origin,
                });
            }
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .map(|v| location_text(v.as_bytes()))
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
            same_origin = Origin::of(&next) == *origin;
            if !req.body.is_empty() && !same_origin {
                // A body may carry a secret (a refresh token in a form): it stays with the
                // origin it was meant for.
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("refusing to send a request body on to {}", redact(&next)),
                )
                .with_url(&req.url));
            }
            if status == StatusCode::SEE_OTHER && req.method != Method::HEAD {
                req.method = Method::GET;
                req.body = Bytes::new();
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
    pub async fn next_chunk(&self, body: &mut Incoming) -> Result<Option<Bytes>> {
        loop {
            let frame = match tokio::time::timeout(self.opts.idle_timeout, body.frame()).await {
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        "body stalled (idle timeout)",
                    ))
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Err(Error::new(ErrorKind::Connect, "body interrupted").with_cause(e))
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

/// A URL for messages and logs: without its query (pre-signed CDN URLs carry credentials
/// there) and without user information.
pub fn redact(url: &Uri) -> String {
    let secret_bearing =
        url.query().is_some() || url.authority().is_some_and(|a| a.as_str().contains('@'));
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

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

#[derive(PartialEq, Eq)]
struct Origin(Option<String>, Option<String>, u16);

impl Origin {
    fn of(u: &Uri) -> Origin {
        let scheme = u.scheme_str().map(str::to_ascii_lowercase);
        let default = if scheme.as_deref() == Some("https") {
            443
        } else {
            80
        };
        Origin(
            scheme,
            u.host().map(str::to_ascii_lowercase),
            u.port_u16().unwrap_or(default),
        )
    }
}

/// A `Location` as a URI reference: without its fragment, which is never sent, and with
/// the bytes a URI may not hold (spaces, non-ASCII, `"<>`{}`) percent-encoded, as curl,
/// Go's client and browsers send them. Servers write such locations unencoded (nginx's
/// `$uri` is decoded, and a file name may have spaces or accents in it), and refusing
/// them failed the object, or read as a redirect without `Location` when not UTF-8.
fn location_text(raw: &[u8]) -> String {
    let raw = raw.split(|&b| b == b'#').next().unwrap_or_default();
    let mut text = String::with_capacity(raw.len());
    for &b in raw {
        match b {
            b' ' | b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | 0..0x20 | 0x7f.. => {
                let _ = std::fmt::Write::write_fmt(&mut text, format_args!("%{b:02X}"));
            }
            _ => text.push(b as char),
        }
    }
    text
}

/// Resolves a `Location` against the URL that sent it.
pub fn resolve(base: &Uri, location: &str) -> Result<Uri> {
    let bad = || {
        Error::new(
            ErrorKind::Protocol,
            format!(
                "bad redirect location {:?}",
                crate::error::redact_url(location)
            ),
        )
    };
    let abs = if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{}://{rest}", base.scheme_str().unwrap_or("https"))
    } else {
        let authority = base.authority().ok_or_else(bad)?;
        let scheme = base.scheme_str().unwrap_or("https");
        let target = if location.starts_with('/') {
            location.to_string()
        } else {
            let path = base.path();
            let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
            format!("{dir}{location}")
        };
        format!("{scheme}://{authority}{}", without_dot_segments(&target))
    };
    let uri: Uri = abs.parse().map_err(|_| bad())?;
    // Credentials in a location would be sent nowhere by us, but the connection pool
    // names its connections (and logs them) by authority, password included.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "redirect to {} carries credentials (user:password@), which dist does not follow",
                crate::error::redact_url(&abs)
            ),
        ));
    }
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(bad()),
    }
}

/// `path[?query]` with its `.` and `..` segments resolved (RFC 3986, 5.2.4), as a browser
/// or curl resolves `Location: ../other/blob`; a server would take them literally.
fn without_dot_segments(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." | ".." => {
                if segment == ".." {
                    kept.pop();
                }
                // `a/b/..` names the directory `a/`.
                if last {
                    kept.push("");
                }
            }
            other => kept.push(other),
        }
    }
    let mut out = format!("/{}", kept.join("/"));
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Whether `e` is a request lost, before any answer, by a connection that had been made: a
/// kept-alive connection the server closed as the request went out, or HTTP/2 streams
/// opened as a GOAWAY arrived (nginx sends one after `keepalive_requests`, CDNs at will).
/// That is how connections end, not a fault of the server, and nothing was answered, so
/// the request may go again at once on a new connection, as curl and Go's client resend
/// it, whatever the retry budget.
pub fn lost_before_answer(e: &Error) -> bool {
    let Some(client) = std::error::Error::source(e)
        .and_then(|c| c.downcast_ref::<hyper_util::client::legacy::Error>())
        .filter(|c| e.kind() == ErrorKind::Connect && !c.is_connect())
    else {
        return false;
    };
    // An answer that could not be parsed was an answer: a fault, not a lost request.
    !causes_include(client, |h: &hyper::Error| {
        h.is_parse() || h.is_parse_status() || h.is_user()
    })
}

/// A request's failure as dist's error. `refused` is the alert that ended the latest
/// connection to the request's server (see [`refusal`]): a failure that says no more than
/// that a connection made was lost may be how the server refused our client certificate,
/// `ours` (if we have one).
fn classify_client_error(
    e: hyper_util::client::legacy::Error,
    refused: impl FnOnce() -> Option<Ending>,
    ours: Option<&tls::ClientIdentity>,
) -> Error {
    // A certificate that is not trusted, a proxy that refuses the tunnel or that dist
    // cannot speak to: all will be the same on the next try, so each has a kind that is
    // not retried.
    if let Some(limit) = handshake::timed_out(&e) {
        // Like a connection not made in time: worth another try, and exit status 2.
        return Error::new(
            ErrorKind::Connect,
            format!(
                "the TLS handshake did not finish within {limit:?} (--connect-timeout): the \
                 server took the connection but did not answer in TLS"
            ),
        );
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(failure) = rustls_error(s) {
            if let Some(why) = certificate_failure(failure, ours) {
                let refused = Error::new(ErrorKind::Certificate, why);
                // Of a certificate, rustls says no more than our words (its name for the
                // case, its times in seconds since 1970, names in their `Debug` forms).
                return match failure {
                    rustls::Error::InvalidCertificate(_) => refused,
                    _ => refused.with_cause(e),
                };
            }
        }
        if rustls_error(s).is_some_and(is_not_tls) {
            return Error::new(ErrorKind::NotTls, NOT_TLS);
        }
        if let Some(why) = rustls_error(s).and_then(|tls| incompatible(tls, ours)) {
            return Error::new(ErrorKind::TlsIncompatible, why);
        }
        if let Some(failed) = s.downcast_ref::<proxy::ProxyError>() {
            let kind = match failed {
                proxy::ProxyError::Refused { status: 407, .. } => ErrorKind::Unauthorized,
                proxy::ProxyError::Refused {
                    status: 500..=599, ..
                } => ErrorKind::Connect,
                proxy::ProxyError::Refused { .. } => ErrorKind::Denied,
                proxy::ProxyError::Unsupported { .. } => ErrorKind::InvalidInput,
                proxy::ProxyError::SocksCredentials { .. } => ErrorKind::Unauthorized,
                // The proxy's rules, or a request it cannot carry: the same next time.
                proxy::ProxyError::SocksRefused {
                    code: 2 | 7 | 8, ..
                } => ErrorKind::Denied,
                // Unreachable, refused, timed out beyond the proxy: like a broken
                // connection, worth another try.
                proxy::ProxyError::SocksRefused { .. } => ErrorKind::Connect,
            };
            return Error::new(kind, failed.to_string());
        }
        source = s.source();
    }
    if e.is_connect() && names_no_host(&e) {
        return Error::new(ErrorKind::UnknownHost, "cannot connect").with_cause(e);
    }
    // hyper tells this parse error apart only with its server feature, by its words
    // ("message head is too large") otherwise.
    let too_large = |h: &hyper::Error| h.is_parse() && h.to_string().contains("too large");
    if causes_include(&e, too_large) {
        // The same answer comes again: not worth a retry.
        return Error::new(
            ErrorKind::Protocol,
            format!(
                "the response's head is too large (more than {MAX_RESPONSE_HEADERS} header \
                 fields, or too many bytes of them)"
            ),
        );
    }
    if !e.is_connect() {
        // What the request's own error says ("connection closed", "frame with invalid
        // size") is only the consequence of how the connection ended.
        match refused() {
            Some(Ending::Alert(alert)) => {
                if let Some(why) = certificate_failure(&alert, ours) {
                    tracing::debug!(error = %e, "connection ended by the server's alert");
                    return Error::new(ErrorKind::Certificate, why);
                }
            }
            Some(Ending::Http1OnHttp2) => {
                tracing::debug!(error = %e, "HTTP/1.1 on an HTTP/2 connection");
                // The same on every connection: not retried.
                return Error::new(ErrorKind::Protocol, HTTP1_ON_HTTP2);
            }
            None => {}
        }
    }
    // A request that failed after connecting (reset, closed early) is a broken connection
    // too, and as worth retrying as one that could not be made.
    let text = if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    Error::new(ErrorKind::Connect, text).with_cause(e)
}

/// Whether one of `e`'s causes is a `T` for which `test` holds.
fn causes_include<T: std::error::Error + 'static>(
    e: &(dyn std::error::Error + 'static),
    test: impl Fn(&T) -> bool,
) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<T>().is_some_and(&test) {
            return true;
        }
        source = s.source();
    }
    false
}

/// Whether the resolver said, somewhere in `e`'s causes, that the host's name does not
/// exist. The system resolver's failures reach us as `io::Error`s that std words as
/// "failed to lookup address information: <gai_strerror>", in English (Rust programs keep
/// the C locale). Only the answers that a name does not exist, or has no address, count
/// (`EAI_NONAME`, `EAI_NODATA`, in glibc's and musl's words): they will be the same in a
/// moment. Anything else, "Temporary failure in name resolution" (no DNS server answered)
/// first of all, and any wording not known here, is a failure to connect, retried.
fn names_no_host(e: &(dyn std::error::Error + 'static)) -> bool {
    const NO_SUCH_NAME: [&str; 4] = [
        "Name or service not known",
        "No address associated with hostname",
        "Name does not resolve",
        "Name has no usable address",
    ];
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let text = io.to_string();
            if let Some(why) = text.strip_prefix("failed to lookup address information: ") {
                return NO_SUCH_NAME.iter().any(|n| why.starts_with(n));
            }
        }
        source = s.source();
    }
    false
}

/// The rustls error behind `e`, if it is one: TLS errors reach us wrapped in `io::Error`s
/// (two deep through hyper-rustls), whose `source` skips the wrapped error itself.
fn rustls_error<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// A server that chose HTTP/2 by ALPN and answered in HTTP/1.1.
const HTTP1_ON_HTTP2: &str = "the server chose HTTP/2 by ALPN but answered in HTTP/1.1: a \
     proxy or load balancer in front of the registry offers h2 (its `alpn` setting) for a \
     server that speaks only HTTP/1.1, which dist, like Go's and curl's clients, cannot use";

/// The most common way to meet a registry without TLS: an address that is not loopback,
/// so dist speaks HTTPS, and the server answers the TLS greeting in plain HTTP.
const NOT_TLS: &str = "the server does not speak TLS (a plain-HTTP registry?); for one \
     without TLS, use --plain-http, an http:// locator or `plain-http` in hosts.toml";

/// Whether the first bytes back were not a TLS record at all, as when an HTTP server
/// answers a TLS greeting with `HTTP/1.1 400`.
fn is_not_tls(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
    )
}

/// What a handshake refused for want of a TLS version or cipher suite in common says, in
/// words: the alert's name alone ("received fatal alert: HandshakeFailure") told no one
/// what to do, and it was retried, though every attempt meets it again. Go still offers
/// TLS 1.2's CBC suites, so a registry docker pulls from may have only those.
fn incompatible(e: &rustls::Error, ours: Option<&tls::ClientIdentity>) -> Option<String> {
    use rustls::AlertDescription as Alert;
    const OFFERED: &str = "dist offers TLS 1.3, and TLS 1.2 with ECDHE key exchange and \
         AES-GCM or ChaCha20-Poly1305 only";
    match e {
        rustls::Error::AlertReceived(Alert::ProtocolVersion) => Some(format!(
            "the server refused every TLS version dist speaks (ProtocolVersion): it speaks only \
             an older one (TLS 1.0 or 1.1), which dist does not; {OFFERED}"
        )),
        rustls::Error::AlertReceived(
            alert @ (Alert::HandshakeFailure | Alert::InsufficientSecurity),
        ) => {
            // OpenSSL's server under TLS 1.2 says the same of a client certificate it
            // required and was not shown, or refused: nothing in the alert tells them apart.
            let certificate = match ours {
                None => "it requires a client certificate (--cert and --key, or certs.d), or "
                    .to_string(),
                Some(ours) => format!(
                    "it refused our client certificate {}, or ",
                    ours.cert.display()
                ),
            };
            Some(format!(
                "the server refused the TLS handshake ({alert:?}): {certificate}it has no \
                 cipher suite in common with dist (an older server may offer only CBC or RSA \
                 key exchange suites; {OFFERED})"
            ))
        }
        rustls::Error::PeerIncompatible(why) => Some(format!(
            "the server's TLS is not compatible with dist's ({why:?}); {OFFERED}"
        )),
        _ => None,
    }
}

/// What a TLS failure that will not change by retrying says about certificates: ours
/// (`ours`, if we have one) was missing or refused, or the server's is not trusted. (A
/// server's refusal of our certificate shows only as its alert: under TLS 1.3, after the
/// handshake, often read by the connection rather than the request; see [`refusal`].)
fn certificate_failure(e: &rustls::Error, ours: Option<&tls::ClientIdentity>) -> Option<String> {
    use rustls::AlertDescription as Alert;
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
            if other.0.downcast_ref::<tls::UnknownIssuer>().is_some() =>
        {
            let unknown = other.0.downcast_ref::<tls::UnknownIssuer>()?;
            Some(format!(
                "the server's certificate is not trusted: {}",
                unknown_issuer(unknown)
            ))
        }
        rustls::Error::InvalidCertificate(why) => {
            // An unknown issuer, or a self-signed certificate that says it is a CA, is what
            // a registry with a private CA or its own certificate shows.
            let hint = match why {
                rustls::CertificateError::UnknownIssuer | rustls::CertificateError::Other(_) => {
                    "; trust its CA or its own certificate with --ca-file, `ca` in \
                     hosts.toml or certs.d/<host>/*.crt"
                }
                _ => "",
            };
            Some(format!(
                "the server's certificate is not trusted: {}{hint}",
                certificate_problem(why)
            ))
        }
        rustls::Error::AlertReceived(Alert::CertificateRequired) => {
            Some(CLIENT_CERTIFICATE_REQUIRED.into())
        }
        rustls::Error::AlertReceived(
            alert @ (Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::AccessDenied),
        ) => Some(match ours {
            // With none shown, the server can only mean that it wants one: Go's server, as
            // Debian's docker-registry has it, says BadCertificate for a missing one too.
            None => format!("{CLIENT_CERTIFICATE_REQUIRED}: {alert:?}"),
            Some(ours) => format!(
                "the server refused our client certificate {}: {alert:?}",
                ours.cert.display()
            ),
        }),
        _ => None,
    }
}

/// Where a CA or a certificate is trusted for a registry.
const TRUST_WITH: &str = "--ca-file, `ca` in hosts.toml or certs.d/<host>/*.crt";

/// Which certificate to trust, by the name the user will find in their files, for a
/// certificate issued by an authority not trusted here; and, for one sent without an
/// intermediate, that the chain may be what is wrong, which trusting the root will not cure.
fn unknown_issuer(unknown: &tls::UnknownIssuer) -> String {
    let name = unknown.issuer.as_ref().map(|n| format!("\"{n}\""));
    if unknown.self_signed {
        let name = name.map_or_else(String::new, |n| format!(" ({n})"));
        return format!(
            "it is self-signed{name} and not trusted here (UnknownIssuer); trust it with \
             {TRUST_WITH}"
        );
    }
    let issuer = name.unwrap_or_else(|| "its issuer".into());
    if unknown.alone {
        return format!(
            "issued by {issuer}, which is not trusted here, and sent without intermediate \
             certificates (UnknownIssuer); trust {issuer} with {TRUST_WITH}: if it is an \
             intermediate CA, its root is not enough, and the server should send it after \
             its own certificate (its full chain: browsers fetch a missing intermediate, \
             dist, Go and curl do not)"
        );
    }
    format!(
        "the certificates the server sent lead up to {issuer}, which is not trusted here \
         (UnknownIssuer); trust {issuer} with {TRUST_WITH}"
    )
}

const CLIENT_CERTIFICATE_REQUIRED: &str =
    "the server requires a client certificate (--cert and --key, or certs.d)";

/// What is wrong with a server's certificate, in words where the case is common, with
/// rustls's name for it (which searches well) in any case.
fn certificate_problem(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    let clock = |now: &rustls::pki_types::UnixTime| {
        format!("this machine's clock reads {}", pinned::utc(now.as_secs()))
    };
    let (words, name) = match why {
        E::UnknownIssuer => (
            "issued by an authority not trusted here".into(),
            "UnknownIssuer",
        ),
        // A clock far off (a machine without NTP, a VM restored from a snapshot) makes
        // every certificate expired or not valid yet: the clock's time shows which it is.
        E::ExpiredContext { time, not_after } => (
            format!(
                "expired on {}; {}",
                pinned::utc(not_after.as_secs()),
                clock(time)
            ),
            "Expired",
        ),
        E::Expired => ("expired".into(), "Expired"),
        E::NotValidYetContext { time, not_before } => (
            format!(
                "not valid before {}; {}",
                pinned::utc(not_before.as_secs()),
                clock(time)
            ),
            "NotValidYet",
        ),
        E::NotValidYet => ("not valid yet".into(), "NotValidYet"),
        E::NotValidForNameContext {
            expected,
            presented,
        } => (issued_for(expected, presented), "NotValidForName"),
        E::NotValidForName => ("not issued for this host name".into(), "NotValidForName"),
        E::Revoked => ("revoked".into(), "Revoked"),
        E::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => (
            "a CA certificate served as the server's own".into(),
            "CaUsedAsEndEntity",
        ),
        _ => return format!("{why:?}"),
    };
    format!("{words} ({name})")
}

/// Which names a certificate was issued for, and which was asked for: webpki lists them in
/// its `Debug` forms (`DnsName("a.example")`, `IpAddress(10.0.0.1)`).
fn issued_for(expected: &rustls::pki_types::ServerName<'_>, presented: &[String]) -> String {
    use rustls::pki_types::ServerName;
    let names: Vec<String> = presented
        .iter()
        .map(|p| {
            let bare = p
                .strip_prefix("DnsName(\"")
                .and_then(|n| n.strip_suffix("\")"))
                .or_else(|| p.strip_prefix("IpAddress(")?.strip_suffix(')'))
                .unwrap_or(p);
            crate::server_text::cut_to(crate::server_text::printable(bare).into_owned(), 100)
        })
        .take(10)
        .collect();
    let (asked, by_address) = match expected {
        ServerName::DnsName(name) => (name.as_ref().to_string(), false),
        ServerName::IpAddress(ip) => (std::net::IpAddr::from(*ip).to_string(), true),
        other => (format!("{other:?}"), false),
    };
    let issued = if names.is_empty() {
        "issued for no host name".to_string()
    } else {
        format!("issued for {}", names.join(", "))
    };
    let mut said = format!("{issued}, not for {asked}");
    if by_address {
        // Go says "doesn't contain any IP SANs": the cure is the same.
        said.push_str(
            ", which a certificate must name as an IP address (an IP SAN); or use a name it \
             was issued for",
        );
    }
    said
}

/// Reads a whole body of at most `limit` bytes; more is an error of kind
/// [`ErrorKind::TooLarge`], so a hostile server cannot make us buffer without bound.
pub async fn read_limited(
    transport: &Transport,
    body: &mut Incoming,
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
    body: &mut Incoming,
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
        buf.extend_from_slice(&chunk);
    }
    Ok(())
}

/// Reads at most `limit` bytes of a body and drops the rest: for error bodies, where the
/// first bytes explain the failure and the rest does not matter.
pub async fn read_prefix(transport: &Transport, body: &mut Incoming, limit: usize) -> Bytes {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn only_a_name_that_does_not_exist_is_an_unknown_host() {
        let gai = |why: &str| {
            std::io::Error::other(format!("failed to lookup address information: {why}"))
        };
        assert!(names_no_host(&gai("Name or service not known")));
        assert!(names_no_host(&gai("No address associated with hostname")));
        assert!(names_no_host(&gai("Name does not resolve")));
        assert!(!names_no_host(&gai("Temporary failure in name resolution")));
        assert!(!names_no_host(&gai(
            "Non-recoverable failure in name resolution"
        )));
        assert!(!names_no_host(&gai("a wording not known here")));
        assert!(!names_no_host(&std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        )));

        // Found among the causes, as hyper-util nests it.
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dns error")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert!(names_no_host(&Wrapper(gai("Name or service not known"))));
    }

    #[test]
    fn certificate_problems_are_told_in_words() {
        use rustls::CertificateError as E;
        assert_eq!(
            certificate_problem(&E::UnknownIssuer),
            "issued by an authority not trusted here (UnknownIssuer)"
        );
        assert_eq!(certificate_problem(&E::Expired), "expired (Expired)");
        assert_eq!(
            certificate_problem(&E::NotValidForName),
            "not issued for this host name (NotValidForName)"
        );
        assert_eq!(certificate_problem(&E::BadSignature), "BadSignature");

        // With rustls's context: dates, not seconds since 1970; names, not their `Debug`.
        let at = rustls::pki_types::UnixTime::since_unix_epoch;
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(
            certificate_problem(&E::ExpiredContext {
                time: at(day * 20_000),
                not_after: at(day * 19_999),
            }),
            "expired on 2024-10-03 00:00:00 UTC; this machine's clock reads \
             2024-10-04 00:00:00 UTC (Expired)"
        );
        assert_eq!(
            certificate_problem(&E::NotValidYetContext {
                time: at(day * 10_000),
                not_before: at(day * 20_000),
            }),
            "not valid before 2024-10-04 00:00:00 UTC; this machine's clock reads \
             1997-05-19 00:00:00 UTC (NotValidYet)"
        );
        let name = |n: &str| rustls::pki_types::ServerName::try_from(n.to_string()).unwrap();
        assert_eq!(
            certificate_problem(&E::NotValidForNameContext {
                expected: name("registry.example"),
                presented: vec![
                    "DnsName(\"other.example\")".into(),
                    "DnsName(\"*.example.net\")".into()
                ],
            }),
            "issued for other.example, *.example.net, not for registry.example (NotValidForName)"
        );
        assert_eq!(
            certificate_problem(&E::NotValidForNameContext {
                expected: name("10.0.0.5"),
                presented: vec![
                    "DnsName(\"registry.example\")".into(),
                    "IpAddress(10.0.0.6)".into()
                ],
            }),
            "issued for registry.example, 10.0.0.6, not for 10.0.0.5, which a certificate must \
             name as an IP address (an IP SAN); or use a name it was issued for (NotValidForName)"
        );
    }

    #[test]
    fn resolves_locations() {
        let base = u("https://reg.example:5000/v2/x/blobs/sha256:ab");
        let cases = [
            ("https://cdn.example/a?b=c", "https://cdn.example/a?b=c"),
            ("/other", "https://reg.example:5000/other"),
            ("//cdn.example/p", "https://cdn.example/p"),
            ("sibling", "https://reg.example:5000/v2/x/blobs/sibling"),
            (
                "../../../ok/app/blobs/d?sig=a/../b",
                "https://reg.example:5000/ok/app/blobs/d?sig=a/../b",
            ),
            ("/a/./b/../../../c", "https://reg.example:5000/c"),
            ("./", "https://reg.example:5000/v2/x/blobs/"),
            ("..", "https://reg.example:5000/v2/x/"),
        ];
        for (location, want) in cases {
            assert_eq!(resolve(&base, location).unwrap(), u(want), "{location}");
        }
        assert!(resolve(&base, "ftp://x/y").is_err());
        for (raw, want) in [
            (&b"/cdn/my blob?x=a b#part"[..], "/cdn/my%20blob?x=a%20b"),
            ("/caf\u{e9}/{a}".as_bytes(), "/caf%C3%A9/%7Ba%7D"),
            (b"/latin1/\xe9\t", "/latin1/%E9%09"),
            (b"/kept/%20/as/is?a=b&c=d", "/kept/%20/as/is?a=b&c=d"),
        ] {
            assert_eq!(location_text(raw), want, "{raw:?}");
        }
        let e = resolve(&base, "http://cdnuser:cdnPASS@cdn.example/p?sig=s").unwrap_err();
        assert!(e.to_string().contains("carries credentials"), "{e}");
        assert!(!e.to_string().contains("cdnPASS"), "{e}");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert!(Origin::of(&u("https://a.example/x")) == Origin::of(&u("https://A.example:443/y")));
        assert!(Origin::of(&u("https://a.example/x")) != Origin::of(&u("http://a.example/x")));
        assert!(
            Origin::of(&u("http://a.example:5000/")) != Origin::of(&u("http://a.example:5001/"))
        );
    }
}
