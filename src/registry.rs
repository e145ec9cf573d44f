//! The registry remote: the OCI distribution API over HTTP(S).
//!
//! Every request goes through one method, `RegistryRemote::request`, which adds authentication (and
//! reacts to 401 challenges), waits out host-wide `Retry-After` pauses, retries transient
//! failures with backoff, and turns error statuses into typed errors carrying the OCI
//! error code. Bodies that break mid-way are resumed with `Range` from where they stopped.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::auth::{Authorizer, CredentialSource};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{Download, Meta, MAX_MANIFEST_SIZE};
use crate::hints::Hints;
use crate::image::Descriptor;
use crate::media;
use crate::ranged::{Adaptive, RangeOptions};
use crate::reference::{Object, Repository};
use crate::remote::Remote;
use crate::retry::{self, HostPause, RetryPolicy};
use crate::transport::{self, Outgoing, Transport};

/// Error bodies are read up to this much for their message.
const MAX_ERROR_BODY: usize = 64 << 10;
/// How many times one request reacts to a 401 before giving up.
const MAX_AUTH_ROUNDS: u32 = 2;

/// Which API endpoint an object is fetched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Blobs,
    Manifests,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Endpoint::Blobs => "blobs",
            Endpoint::Manifests => "manifests",
        }
    }
}

/// A repository on a registry, with the state every task shares: the connection pool, the
/// authorizer and the host-wide pause.
#[derive(Clone)]
pub struct RegistryRemote {
    inner: Arc<Inner>,
}

struct Inner {
    repo: Repository,
    transport: Transport,
    auth: Authorizer,
    retry: RetryPolicy,
    pause: HostPause,
    ranges: RangeOptions,
}

impl std::fmt::Debug for RegistryRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryRemote")
            .field("repo", &self.inner.repo)
            .finish_non_exhaustive()
    }
}

impl RegistryRemote {
    /// A remote for `repo`, sharing `transport`'s pool.
    pub fn new(
        repo: Repository,
        transport: Transport,
        credentials: CredentialSource,
        retry: RetryPolicy,
    ) -> Self {
        let auth = Authorizer::new(
            transport.clone(),
            repo.host(),
            repo.api_host(),
            repo.name(),
            credentials,
        );
        RegistryRemote {
            inner: Arc::new(Inner {
                repo,
                transport,
                auth,
                retry,
                pause: HostPause::default(),
                ranges: RangeOptions::default(),
            }),
        }
    }

    /// Sets when large blobs are fetched in parallel ranges (call before sharing the remote).
    pub fn with_ranges(mut self, ranges: RangeOptions) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.ranges = ranges,
            None => panic!("with_ranges must be called before the remote is shared"),
        }
        self
    }

    /// The shared client.
    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// The retry policy requests follow.
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The repository.
    pub fn repository(&self) -> &Repository {
        &self.inner.repo
    }

    /// How many token requests were made so far (one per batch, normally).
    pub fn token_requests(&self) -> usize {
        self.inner.auth.token_requests()
    }

    fn url(&self, endpoint: Endpoint, reference: &str) -> Result<Uri> {
        let r = &self.inner.repo;
        let s = format!(
            "{}{}/{}/{reference}",
            r.api_base(),
            r.name(),
            endpoint.as_str()
        );
        s.parse()
            .map_err(|_| Error::invalid(format!("cannot form a URL from {s:?}")))
    }

    /// Sends a request with authentication, retries and status checking. Returns the
    /// response once its status is a success; its body is left unread.
    pub(crate) async fn request(
        &self,
        method: Method,
        url: Uri,
        headers: HeaderMap,
    ) -> Result<transport::Reply> {
        let inner = &*self.inner;
        let mut retries = 0u32;
        let mut auth_rounds = 0u32;
        loop {
            inner.pause.wait().await;
            let grant = inner.auth.grant().await.map_err(|e| e.with_url(&url))?;
            let req = Outgoing {
                method: method.clone(),
                url: url.clone(),
                headers: headers.clone(),
                authorization: grant.header.clone(),
                body: Bytes::new(),
            };
            let mut reply = match inner.transport.send(req).await {
                Ok(r) => r,
                Err(e) if e.is_transient() && retries < inner.retry.retries => {
                    let wait = inner.retry.backoff(retries);
                    tracing::debug!(url = %url, error = %e, retry = retries + 1, wait_ms = wait.as_millis() as u64, "retrying");
                    retries += 1;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => return Err(e.with_url(&url)),
            };
            let status = reply.response.status();
            if status.is_success() {
                return Ok(reply);
            }
            if status == StatusCode::UNAUTHORIZED
                && reply.same_origin
                && auth_rounds < MAX_AUTH_ROUNDS
            {
                let challenges: Vec<String> = reply
                    .response
                    .headers()
                    .get_all(http::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect();
                if !challenges.is_empty() {
                    // Drain the small error body so the connection can be reused.
                    let _ = transport::read_prefix(
                        &inner.transport,
                        reply.response.body_mut(),
                        MAX_ERROR_BODY,
                    )
                    .await;
                    inner
                        .auth
                        .challenged(&grant, &challenges)
                        .await
                        .map_err(|e| e.with_url(&url))?;
                    auth_rounds += 1;
                    continue;
                }
            }
            let after = retry::retry_after(reply.response.headers());
            let err = status_error(&inner.transport, &mut reply).await;
            if err.is_transient() && retries < inner.retry.retries {
                let wait = match after {
                    Some(d) if d > inner.retry.max_delay => return Err(err),
                    Some(d) => {
                        if matches!(status.as_u16(), 429 | 503) {
                            inner.pause.pause_for(d);
                        }
                        d
                    }
                    None => inner.retry.backoff(retries),
                };
                tracing::debug!(url = %url, status = status.as_u16(), retry = retries + 1, wait_ms = wait.as_millis() as u64, "retrying");
                retries += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(err);
        }
    }

    async fn fetch_from(
        &self,
        endpoint: Endpoint,
        object: &Object,
        hints: &Hints,
    ) -> Result<Download> {
        let reference = object.to_string();
        let url = self.url(endpoint, &reference)?;
        let mut headers = HeaderMap::new();
        let accept = match endpoint {
            Endpoint::Manifests if hints.media_types.is_empty() => {
                media::DEFAULT_MANIFEST_ACCEPT.join(", ")
            }
            _ if hints.media_types.is_empty() => "*/*".to_string(),
            _ => hints.media_types.join(", "),
        };
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_str(&accept)
                .map_err(|_| Error::invalid(format!("bad media type hint {accept:?}")))?,
        );
        let reply = self
            .request(Method::GET, url.clone(), headers.clone())
            .await?;
        let h = reply.response.headers();
        let declared = content_length(h);
        let announced = match h.get("docker-content-digest").and_then(|v| v.to_str().ok()) {
            Some(v) => Some(v.parse::<Digest>().map_err(|e| {
                Error::new(ErrorKind::Protocol, "bad Docker-Content-Digest header")
                    .with_cause(e)
                    .with_url(&url)
            })?),
            None => None,
        };
        let content_type = h
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|t| media::essence(t).to_string())
            .filter(|t| !t.is_empty() && t != "application/octet-stream");
        let expected = match object {
            Object::Digest(d) => {
                if let Some(a) = &announced {
                    if a.algorithm() == d.algorithm() && a != d {
                        return Err(Error::new(
                            ErrorKind::DigestMismatch,
                            format!("registry announced digest {a} for {d}"),
                        )
                        .with_url(&url));
                    }
                }
                Some(d.clone())
            }
            Object::Tag(_) => announced,
        };
        let size = match (declared, hints.size) {
            (Some(d), Some(h)) if d != h => {
                return Err(Error::new(
                    ErrorKind::SizeMismatch,
                    format!("registry declares {d} bytes, expected {h}"),
                )
                .with_url(&url))
            }
            (d, h) => h.or(d),
        };
        let limit = (endpoint == Endpoint::Manifests).then_some(MAX_MANIFEST_SIZE);
        if let (Some(limit), Some(size)) = (limit, size) {
            if size > limit {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("manifest of {size} bytes exceeds the {limit}-byte limit"),
                )
                .with_url(&url));
            }
        }
        let media_type = hints.media_type().map(str::to_string).or(content_type);
        // A tag may move between two requests; a resumed request must ask for the same
        // content, so it goes by digest when the registry told us one.
        let resume_url = match (&expected, endpoint) {
            (Some(d), _) => Some(self.url(endpoint, &d.to_string())?),
            _ => None,
        };
        let split = match (&resume_url, size) {
            (Some(url), Some(total))
                if endpoint == Endpoint::Blobs
                    && self.inner.ranges.applies(size, reply.response.headers()) =>
            {
                Some((url.clone(), total))
            }
            _ => None,
        };
        let body = Resumable {
            remote: self.clone(),
            body: reply.response.into_body(),
            resume_url,
            headers: headers.clone(),
            offset: 0,
            skip: 0,
            resumes: 0,
        }
        .into_stream();
        let body = match split {
            Some((url, total)) => Adaptive::new(
                body,
                self.clone(),
                url,
                headers,
                total,
                self.inner.ranges.clone(),
            )
            .into_stream(),
            None => body,
        };
        let meta = Meta {
            object: object.clone(),
            expected,
            size,
            media_type,
            url: reply.url.to_string(),
            limit,
        };
        Ok(Download::new(meta, body))
    }

    /// Describes a manifest from the answer to a `HEAD`, which Docker Hub does not count
    /// against the pull quota. `None` when the answer lacks what a descriptor needs.
    async fn head_manifest(&self, object: &Object) -> Result<Option<Descriptor>> {
        let url = self.url(Endpoint::Manifests, &object.to_string())?;
        let mut headers = HeaderMap::new();
        let accept = media::DEFAULT_MANIFEST_ACCEPT.join(", ");
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_str(&accept).expect("media types are ASCII"),
        );
        let reply = self.request(Method::HEAD, url.clone(), headers).await?;
        let h = reply.response.headers();
        let announced = h
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let digest = match (object, announced) {
            (Object::Digest(d), Some(a)) if a.algorithm() == d.algorithm() && a != *d => {
                return Err(Error::new(
                    ErrorKind::DigestMismatch,
                    format!("registry announced digest {a} for {d}"),
                )
                .with_url(&url))
            }
            (Object::Digest(d), _) => d.clone(),
            (Object::Tag(_), Some(a)) => a,
            (Object::Tag(_), None) => return Ok(None),
        };
        let media_type = h
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media::essence)
            .filter(|t| media::is_manifest(t));
        match (media_type, content_length(h)) {
            (Some(_), Some(size)) if size > MAX_MANIFEST_SIZE => Err(Error::new(
                ErrorKind::TooLarge,
                format!("manifest of {size} bytes exceeds the {MAX_MANIFEST_SIZE}-byte limit"),
            )
            .with_url(&url)),
            (Some(t), Some(size)) => Ok(Some(Descriptor::new(t, digest, size))),
            _ => Ok(None),
        }
    }
}

impl Remote for RegistryRemote {
    fn fetch<'a>(
        &'a self,
        object: &'a Object,
        hints: &'a Hints,
    ) -> BoxFuture<'a, Result<Download>> {
        async move {
            let order = match object {
                Object::Tag(_) => vec![Endpoint::Manifests],
                Object::Digest(_) if hints.wants_manifest() => {
                    vec![Endpoint::Manifests, Endpoint::Blobs]
                }
                Object::Digest(_) => vec![Endpoint::Blobs, Endpoint::Manifests],
            };
            let mut first_err = None;
            for endpoint in order {
                match self.fetch_from(endpoint, object, hints).await {
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        first_err.get_or_insert(e);
                    }
                    other => return other.map_err(|e| e.with_object(object)),
                }
            }
            Err(first_err
                .expect("at least one endpoint")
                .with_object(object))
        }
        .boxed()
    }

    fn check<'a>(&'a self) -> BoxFuture<'a, Result<()>> {
        async move {
            // `/v2/` alone may accept anonymous callers while the repository does not, so
            // ask for something inside the repository: a tag list page of one entry.
            let url: Uri = format!(
                "{}{}/tags/list?n=1",
                self.inner.repo.api_base(),
                self.inner.repo.name()
            )
            .parse()
            .map_err(|_| Error::invalid("bad repository URL"))?;
            match self.request(Method::GET, url, HeaderMap::new()).await {
                Ok(mut reply) => {
                    let _ = transport::read_prefix(
                        &self.inner.transport,
                        reply.response.body_mut(),
                        MAX_ERROR_BODY,
                    )
                    .await;
                    Ok(())
                }
                // An empty or unlisted repository is still reachable and authorized.
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        }
        .boxed()
    }

    fn describe(&self) -> String {
        self.inner.repo.to_string()
    }

    fn resolve<'a>(&'a self, object: &'a Object) -> BoxFuture<'a, Result<Descriptor>> {
        async move {
            match self.head_manifest(object).await {
                Ok(Some(d)) => return Ok(d),
                Ok(None) => {
                    tracing::debug!(%object, "HEAD lacks digest, type or length; using GET")
                }
                // Some registries and proxies refuse HEAD (405) or answer it badly; any other
                // failure (404, auth, retries used up) would only repeat with GET.
                Err(e)
                    if matches!(e.kind(), ErrorKind::Http | ErrorKind::Protocol)
                        && !e.is_transient() =>
                {
                    tracing::debug!(%object, error = %e, "HEAD failed; using GET")
                }
                Err(e) => return Err(e.with_object(object)),
            }
            crate::image::resolve_by_fetch(self, object).await
        }
        .boxed()
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[derive(Deserialize)]
struct OciErrors {
    #[serde(default)]
    errors: Vec<OciError>,
}

#[derive(Deserialize)]
struct OciError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Turns a failed response into an error naming the status and the registry's own words.
async fn status_error(transport: &Transport, reply: &mut transport::Reply) -> Error {
    let status = reply.response.status();
    let url = reply.url.clone();
    let body = transport::read_prefix(transport, reply.response.body_mut(), MAX_ERROR_BODY).await;
    let detail = match serde_json::from_slice::<OciErrors>(&body) {
        Ok(e) if !e.errors.is_empty() => e
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_string(),
    };
    let kind = match status.as_u16() {
        404 => ErrorKind::NotFound,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Denied,
        429 => ErrorKind::TooManyRequests,
        _ => ErrorKind::Http,
    };
    let mut msg = format!("registry answered {status}");
    if !detail.is_empty() {
        msg.push_str(": ");
        msg.push_str(&detail);
    }
    Error::new(kind, msg)
        .with_status(status.as_u16())
        .with_url(url)
}

/// A response body that resumes with `Range` when the connection breaks part-way.
struct Resumable {
    remote: RegistryRemote,
    body: Incoming,
    /// Where to ask for the rest; `None` when the content has no fixed address (a tag
    /// without an announced digest), which cannot be resumed safely.
    resume_url: Option<Uri>,
    headers: HeaderMap,
    /// Bytes handed out so far.
    offset: u64,
    /// Bytes still to drop from the current body: a server that ignored our Range sends
    /// the whole content again, and what we already handed out must not repeat.
    skip: u64,
    resumes: u32,
}

impl Resumable {
    fn into_stream(self) -> crate::fetch::ByteStream {
        futures::stream::try_unfold(self, |mut s| async move {
            let next = s.next().await?;
            Ok(next.map(|c| (c, s)))
        })
        .boxed()
    }

    async fn next(&mut self) -> Result<Option<Bytes>> {
        let transport = self.remote.inner.transport.clone();
        loop {
            match transport.next_chunk(&mut self.body).await {
                Ok(Some(mut chunk)) => {
                    if self.skip > 0 {
                        let drop = self.skip.min(chunk.len() as u64) as usize;
                        self.skip -= drop as u64;
                        chunk = chunk.slice(drop..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    self.offset += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    let policy = &self.remote.inner.retry;
                    let Some(url) = self.resume_url.clone() else {
                        return Err(e);
                    };
                    if !e.is_transient() || self.resumes >= policy.retries {
                        return Err(e);
                    }
                    self.resumes += 1;
                    tracing::debug!(url = %url, offset = self.offset, error = %e, "resuming body");
                    if let Err(again) = self.reopen(url).await {
                        let msg = format!(
                            "body interrupted after {} bytes ({}), and resuming failed: {}",
                            self.offset,
                            e.reason(),
                            again.reason()
                        );
                        let mut err = Error::new(again.kind(), msg);
                        if let Some(status) = again.status() {
                            err = err.with_status(status);
                        }
                        return Err(err);
                    }
                }
            }
        }
    }

    async fn reopen(&mut self, url: Uri) -> Result<()> {
        let mut headers = self.headers.clone();
        let range = format!("bytes={}-", self.offset);
        headers.insert(
            http::header::RANGE,
            HeaderValue::from_str(&range).expect("ascii"),
        );
        let reply = self
            .remote
            .request(Method::GET, url.clone(), headers)
            .await?;
        let status = reply.response.status();
        if status == StatusCode::PARTIAL_CONTENT {
            let start = reply
                .response
                .headers()
                .get(http::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(content_range_start);
            if start != Some(self.offset) {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("asked for {range}, got Content-Range {start:?}"),
                )
                .with_url(&url));
            }
            self.skip = 0;
        } else {
            // The server ignored Range: the whole content comes again.
            self.skip = self.offset;
        }
        self.body = reply.response.into_body();
        Ok(())
    }
}

/// `bytes 100-199/1000` → 100.
pub(crate) fn content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        assert_eq!(content_range_start("bytes 100-199/1000"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
