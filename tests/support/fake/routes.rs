//! The distribution-spec endpoints the fake serves, and the order in which a request meets auth,
//! content and faults.
//!
//! A response is first *prepared* ([`Prepared`]: status, headers, the whole body) and only then
//! turned into hyper's response or, for raw-wire faults, into bytes; that way every fault works on
//! any endpoint, and a HEAD answer carries exactly the headers the GET would.

use bytes::Bytes;
use http::header::{
    HeaderValue, IntoHeaderName, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::faults::{self, Fault};
use super::server::{empty, full, Body, Conn, End};
use super::{digest_of, RequestRecord, State};

/// Which endpoint a (percent-decoded) path addresses.
pub enum Route {
    /// `/v2/`: the API version check.
    Ping,
    /// `/v2/<name>/blobs/<digest>`.
    Blob { name: String, digest: String },
    /// `/v2/<name>/manifests/<tag-or-digest>`.
    Manifest { name: String, reference: String },
    /// `/token`: the bearer token endpoint.
    Token,
    /// Anything else: 404.
    Other,
}

impl Route {
    /// Parses from the right, since repository names may themselves contain slashes.
    pub fn parse(path: &str) -> Route {
        match path {
            "/token" => return Route::Token,
            "/v2" | "/v2/" => return Route::Ping,
            _ => {}
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return Route::Other;
        };
        let blob = rest.rfind("/blobs/").map(|i| (i, "/blobs/".len(), true));
        let manifest = rest
            .rfind("/manifests/")
            .map(|i| (i, "/manifests/".len(), false));
        let Some((at, len, is_blob)) = blob.max(manifest) else {
            return Route::Other;
        };
        let (name, reference) = (&rest[..at], &rest[at + len..]);
        if name.is_empty() || reference.is_empty() || reference.contains('/') {
            return Route::Other;
        }
        let (name, reference) = (name.to_string(), reference.to_string());
        if is_blob {
            Route::Blob {
                name,
                digest: reference,
            }
        } else {
            Route::Manifest { name, reference }
        }
    }

    /// The repository a blob or manifest route belongs to.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Blob { name, .. } | Route::Manifest { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// A response before it goes on the wire.
pub struct Prepared {
    pub status: StatusCode,
    /// Every header but `Content-Length`, which always follows from `body`.
    pub headers: HeaderMap,
    /// The body a GET gets (a HEAD gets its length only).
    pub body: Bytes,
    /// Answering a HEAD: send the headers, not the body.
    pub head: bool,
}

impl Prepared {
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Prepared {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
            head: false,
        }
    }

    /// A response with a `Content-Type`.
    pub fn typed(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Self {
        Prepared::new(status, body).header(CONTENT_TYPE, content_type)
    }

    /// An OCI error body: `{"errors":[{"code":..,"message":..,"detail":..}]}`.
    pub fn error(status: StatusCode, code: &str, message: &str, detail: &str) -> Self {
        let body = serde_json::json!({
            "errors": [{ "code": code, "message": message, "detail": detail }]
        });
        Prepared::typed(status, "application/json", body.to_string())
    }

    /// The 404 for a path the server has no endpoint at, worded as the distribution registry's.
    pub fn not_found() -> Self {
        Prepared::typed(StatusCode::NOT_FOUND, "text/plain", "404 page not found\n")
    }

    /// Adds a header; panics on a value that is not a valid header value (a test bug).
    pub fn header(mut self, name: impl IntoHeaderName, value: &str) -> Self {
        let value = HeaderValue::from_str(value).expect("header value");
        self.headers.insert(name, value);
        self
    }

    /// Hyper's response, with `body` as the body but `Content-Length` from `self.body`; the
    /// slow faults stream the same bytes this way.
    pub fn respond_with(self, body: Body) -> Response<Body> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        response
    }

    /// Hyper's response for this prepared one, as is.
    pub fn into_response(self) -> Response<Body> {
        let body = if self.head {
            empty()
        } else {
            full(self.body.clone())
        };
        self.respond_with(body)
    }
}

/// Serves one request of a [`FakeRegistry`](super::FakeRegistry) and logs it.
pub fn handle(state: &State, req: Request<Incoming>, conn: &Conn) -> Response<Body> {
    let (parts, _body) = req.into_parts();
    let mut record = RequestRecord::new(&parts, conn.id);
    let path = percent_decode(parts.uri.path());
    let forgotten = conn.id <= state.forgotten.load(std::sync::atomic::Ordering::SeqCst);
    let (response, fault) = if forgotten {
        let reset = conn.take_over(StatusCode::OK, Bytes::new(), End::Reset);
        (reset, Some(Fault::CloseUnanswered))
    } else {
        respond(state, &parts, &path, conn)
    };
    record.status = response.status().as_u16();
    record.fault = fault;
    state.log.lock().unwrap().push(record);
    response
}

/// Auth comes first and is never faulted: a fault stands for the registry failing a request it
/// accepted, so a client's unauthenticated first try does not use up a scripted fault.
fn respond(
    state: &State,
    parts: &http::request::Parts,
    path: &str,
    conn: &Conn,
) -> (Response<Body>, Option<Fault>) {
    let route = spec_path(state, path).map_or(Route::Other, |p| Route::parse(&p));
    let prepared = if let Route::Token = route {
        let prepared = state.auth.token_endpoint(parts);
        if prepared.status == StatusCode::UNAUTHORIZED {
            return (prepared.into_response(), None);
        }
        prepared
    } else {
        if let Some(denied) = state.auth.check(parts, &route) {
            return (denied, None);
        }
        content(state, parts, &route, state.range_support)
    };
    let blob_get = matches!(route, Route::Blob { .. })
        && parts.method == Method::GET
        && prepared.status.is_success();
    let fault = state.faults.lock().unwrap().next(
        path,
        &parts.method,
        blob_get.then_some(prepared.body.len()),
    );
    let Some(fault) = fault else {
        return (prepared.into_response(), None);
    };
    // A held answer is shaped as the fault it holds shapes it.
    let shaping = match &fault {
        Fault::HeldHead(_, held) => &**held,
        fault => fault,
    };
    let prepared = match (shaping, &route) {
        (Fault::IgnoreRange | Fault::CodedWhole(_), Route::Blob { .. }) => {
            content(state, parts, &route, false)
        }
        (Fault::RangeToEnd, Route::Blob { name, digest }) => {
            let start = range_start(parts).map(str::to_string);
            let content = state.content.lock().unwrap();
            match (start, content.blobs.get(&(name.clone(), digest.clone()))) {
                (Some(start), Some(bytes)) => {
                    serve_bytes(bytes, Some(&format!("bytes={start}-")), true)
                        .header("docker-content-digest", digest)
                }
                _ => prepared,
            }
        }
        (Fault::WholeRange | Fault::CodedWholeRange(_), Route::Blob { name, digest }) => {
            let content = state.content.lock().unwrap();
            match content.blobs.get(&(name.clone(), digest.clone())) {
                Some(bytes) if !bytes.is_empty() => {
                    let last = bytes.len() - 1;
                    let octets = "application/octet-stream";
                    Prepared::typed(StatusCode::PARTIAL_CONTENT, octets, bytes.clone())
                        .header(CONTENT_RANGE, &format!("bytes 0-{last}/{}", bytes.len()))
                        .header("docker-content-digest", digest)
                }
                _ => prepared,
            }
        }
        (Fault::ShortRange(len) | Fault::ShortRangeAnd(len, _), Route::Blob { name, digest }) => {
            let start = range_start(parts).map_or(Some(0), |s| s.parse::<usize>().ok());
            let content = state.content.lock().unwrap();
            match (start, content.blobs.get(&(name.clone(), digest.clone()))) {
                (Some(start), Some(bytes)) if start < bytes.len() && *len > 0 => {
                    // Never past where a range asked for ends (a part's `bytes=N-M`).
                    let asked = range_end(parts).map_or(bytes.len(), |end| end + 1);
                    let end = (start + len).min(bytes.len()).min(asked) - 1;
                    let slice = bytes.slice(start..=end);
                    let octets = "application/octet-stream";
                    Prepared::typed(StatusCode::PARTIAL_CONTENT, octets, slice)
                        .header(CONTENT_RANGE, &format!("bytes {start}-{end}/*"))
                        .header("docker-content-digest", digest)
                }
                _ => prepared,
            }
        }
        _ => prepared,
    };
    let challenge = state.auth.challenge(&route);
    (
        faults::apply(&fault, prepared, challenge, conn),
        Some(fault),
    )
}

/// Where the `Range` a request asked for ends, if it says (`bytes=100-199` → 199).
fn range_end(parts: &http::request::Parts) -> Option<usize> {
    let range = parts.headers.get(http::header::RANGE)?.to_str().ok()?;
    range
        .strip_prefix("bytes=")?
        .split_once('-')?
        .1
        .parse()
        .ok()
}

/// Where the `Range` a request asked for starts, as written (`bytes=100-` → `100`).
fn range_start(parts: &http::request::Parts) -> Option<&str> {
    let range = parts.headers.get(http::header::RANGE)?.to_str().ok()?;
    range.strip_prefix("bytes=")?.split('-').next()
}

/// The path as the spec names it (`/v2/…`), for a fake serving its API under another root;
/// `None` for a path outside it.
fn spec_path(state: &State, path: &str) -> Option<String> {
    if path == "/token" || state.api_root == "/v2" {
        return Some(path.to_string());
    }
    let rest = path.strip_prefix(state.api_root.as_str())?;
    (rest.is_empty() || rest.starts_with('/')).then(|| format!("/v2{rest}"))
}

/// The normal answer to a request that passed auth.
fn content(
    state: &State,
    parts: &http::request::Parts,
    route: &Route,
    honour_range: bool,
) -> Prepared {
    let head = parts.method == Method::HEAD;
    if !head && parts.method != Method::GET {
        let message = "The operation is unsupported.";
        return Prepared::error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message, "");
    }
    let content = state.content.lock().unwrap();
    let mut prepared = match route {
        Route::Ping => Prepared::typed(StatusCode::OK, "application/json", "{}")
            .header("docker-distribution-api-version", "registry/2.0"),
        Route::Blob { name, digest } => match content.blobs.get(&(name.clone(), digest.clone())) {
            Some(bytes) => {
                let range = parts.headers.get(http::header::RANGE);
                let range = range.and_then(|v| v.to_str().ok()).filter(|_| honour_range);
                serve_bytes(bytes, range, honour_range).header("docker-content-digest", digest)
            }
            None => Prepared::error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
                digest,
            ),
        },
        Route::Manifest { name, reference } => {
            match content.manifests.get(&(name.clone(), reference.clone())) {
                Some((media_type, bytes)) => {
                    Prepared::typed(StatusCode::OK, media_type, bytes.clone())
                        .header("docker-content-digest", &digest_of(bytes))
                }
                None => Prepared::error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                    reference,
                ),
            }
        }
        Route::Token | Route::Other => Prepared::not_found(),
    };
    prepared.head = head;
    prepared
}

/// `bytes` as `application/octet-stream`, cut to `range` when one is given and understood.
/// With `ranges_on`, the answer advertises `Accept-Ranges: bytes`.
pub fn serve_bytes(bytes: &Bytes, range: Option<&str>, ranges_on: bool) -> Prepared {
    let total = bytes.len() as u64;
    let octets = "application/octet-stream";
    let mut prepared = match range.and_then(|spec| parse_range(spec, total)) {
        None => Prepared::typed(StatusCode::OK, octets, bytes.clone()),
        Some(Some((start, end))) => {
            let slice = bytes.slice(start as usize..=end as usize);
            Prepared::typed(StatusCode::PARTIAL_CONTENT, octets, slice)
                .header(CONTENT_RANGE, &format!("bytes {start}-{end}/{total}"))
        }
        Some(None) => Prepared::new(StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
            .header(CONTENT_RANGE, &format!("bytes */{total}")),
    };
    if ranges_on {
        prepared
            .headers
            .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    prepared
}

/// A single byte range: `None` to ignore the header (malformed, or several ranges, which RFC 9110
/// lets a server ignore), `Some(None)` when unsatisfiable, else the inclusive bounds.
fn parse_range(spec: &str, total: u64) -> Option<Option<(u64, u64)>> {
    let spec = spec.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last N bytes.
        let n: u64 = last.parse().ok()?;
        return Some((n > 0 && total > 0).then(|| (total.saturating_sub(n), total - 1)));
    }
    let start: u64 = first.parse().ok()?;
    let end = if last.is_empty() {
        u64::MAX
    } else {
        last.parse().ok()?
    };
    if start > end {
        return None;
    }
    Some((start < total).then(|| (start, end.min(total - 1))))
}

/// Decodes `%XX` escapes, leaving malformed ones as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        let escaped = hex.filter(|_| bytes[i] == b'%').map(|h| {
            let h = std::str::from_utf8(h).expect("ASCII hex digits");
            u8::from_str_radix(h, 16).expect("two hex digits")
        });
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
