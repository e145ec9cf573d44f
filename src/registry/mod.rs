//! The registry remote: the OCI distribution API over HTTP(S).
//!
//! A [`RegistryRemote`] is one repository, served by one or more hosts: mirrors first (in
//! the order given, each only for what its capabilities allow), the registry itself last.
//! A mirror that lacks an object, fails, or cannot be reached hands the request to the next
//! host; an unreachable mirror is skipped for a while, then asked again. Requests, with their
//! authentication and retries, are the business of [`host`]; bodies that break mid-way
//! resume with `Range` (the `body` module); large blobs on slow links split into parallel ranges
//! ([`crate::ranged`]). One host's answer becomes a download in `download`; its
//! `Docker-Content-Digest` is read and checked by `digest_header`.

pub(crate) mod api_root;
mod body;
pub(crate) mod coding;
mod digest_header;
mod download;
pub mod host;
mod mirror_down;
mod misconfigured;
mod nothing_past;
mod outage;
mod range_headers;
mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::auth::CredentialSource;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{Download, Prefix, MAX_MANIFEST_SIZE};
use crate::hints::Hints;
use crate::image::Descriptor;
use crate::media;
use crate::ranged::RangeOptions;
use crate::reference::{Object, Repository};
use crate::remote::Remote;
use crate::retry::{Next, RetryPolicy};
use crate::transport::{self, Transport};
pub(crate) use body::{hands_over, resume_budget, Address, Resumable, Serving, PIECE, PROGRESS};
pub(crate) use body::{other_total, part_refused, refuse_other_at, PartsWord};
pub(crate) use coding::is_coded;
use digest_header::{announced_for, refuse_announced_other};
use host::{Host, Mirror, Server};
pub(crate) use range_headers::{content_range, content_range_start, content_range_total};
pub(crate) use status::MAX_ERROR_BODY;

/// Which API endpoint an object is fetched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
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

/// A repository on a registry, with the state every task shares: per host, the connection
/// pool, the authorizer, the `Retry-After` pause and the registry's failures in a row.
#[derive(Clone)]
pub struct RegistryRemote {
    inner: Arc<Inner>,
}

struct Inner {
    repo: Repository,
    /// Mirrors in order, then the registry itself.
    hosts: Vec<Host>,
    retry: RetryPolicy,
    ranges: RangeOptions,
    /// What every ranged download of this remote shares: parts in memory, bytes received.
    ranged: Arc<crate::ranged::Shared>,
    /// How long a mirror found unreachable is skipped at first.
    mirror_down: Duration,
    /// Objects whose coded bytes as sent are their content (see [`coding::AsSent`]).
    as_sent: Arc<coding::AsSent>,
    /// The registry itself answered the check's tag listing `NAME_UNKNOWN`: it has no
    /// repository of that name, or one with no tags ([`Inner::unknown_name_note`]). Until
    /// an object is served: then the name is right (the repository held blobs and no tag,
    /// or was pushed since), and a later 404 told "is the name right?" sent the user to
    /// look for a typo that is not there.
    name_unknown: std::sync::atomic::AtomicBool,
}

impl Inner {
    /// `e` with a note saying that the registry knew no such repository at the check, for
    /// a 404 that does not say so itself: `docker-registry` answers an unknown repository's
    /// manifests `MANIFEST_UNKNOWN` and its blobs `BLOB_UNKNOWN`, which read as a tag or
    /// blob missing from a repository that is there, when the name was mistyped.
    fn unknown_name_note(&self, e: Error) -> Error {
        if e.kind() != ErrorKind::NotFound
            || !self.name_unknown.load(std::sync::atomic::Ordering::Relaxed)
            || e.codes().iter().any(|c| c == "NAME_UNKNOWN")
        {
            return e;
        }
        let name = self.repo.name();
        e.with_note(format!(
            "the registry knows no repository {name} (its tag listing answered \
             NAME_UNKNOWN: there is none of that name, or it has no tags yet): is the name \
             right?"
        ))
    }

    /// `fetched`, its error noted as [`Self::unknown_name_note`] says; an object served
    /// shows the repository is there, and no later 404 is told it may not be. One load
    /// per fetch, and a store only on the first object served after the check's answer.
    fn noted<T>(&self, fetched: Result<T>) -> Result<T> {
        use std::sync::atomic::Ordering::Relaxed;
        match fetched {
            Ok(served) => {
                if self.name_unknown.load(Relaxed) {
                    self.name_unknown.store(false, Relaxed);
                }
                Ok(served)
            }
            Err(e) => Err(self.unknown_name_note(e)),
        }
    }
}

impl std::fmt::Debug for RegistryRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryRemote")
            .field("repo", &self.inner.repo)
            .field(
                "hosts",
                &self.inner.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
            )
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
        let upstream = Host::upstream(&repo, None, transport, credentials)
            .expect("the usual address is valid");
        let ranges = RangeOptions::default();
        RegistryRemote {
            inner: Arc::new(Inner {
                repo,
                hosts: vec![upstream],
                retry,
                ranged: ranges.shared(),
                ranges,
                mirror_down: mirror_down::MIRROR_DOWN,
                as_sent: Arc::default(),
                name_unknown: Default::default(),
            }),
        }
    }

    /// Reaches the registry itself at `server` instead of its usual address, asking it only
    /// for what its capabilities allow (call before sharing the remote). Headers set with
    /// [`with_registry_headers`](Self::with_registry_headers) go on to it.
    /// A URL that is no `http(s)://host[:port][/path]`, or holds a login or a query
    /// (neither would be sent), is refused as invalid input.
    ///
    /// # Panics
    ///
    /// If the remote was cloned already: clones share one state, which this would change
    /// under the other's feet.
    pub fn with_server(
        mut self,
        server: &Server,
        transport: Transport,
        credentials: CredentialSource,
    ) -> Result<Self> {
        let inner = Arc::get_mut(&mut self.inner)
            .expect("with_server must be called before the remote is shared");
        let mut upstream = Host::upstream(&inner.repo, Some(server), transport, credentials)?;
        let registry = inner
            .hosts
            .last_mut()
            .expect("the registry is always a host");
        // Headers set for the registry before it moved are still the registry's.
        upstream.headers = std::mem::take(&mut registry.headers);
        *registry = upstream;
        Ok(self)
    }

    /// Sends `headers` with every request to the registry itself, and only to it (call
    /// before sharing the remote; mirrors have their own in [`Mirror::headers`]).
    ///
    /// # Panics
    ///
    /// If the remote was cloned already: clones share one state, which this would change
    /// under the other's feet.
    pub fn with_registry_headers(mut self, headers: HeaderMap) -> Self {
        let inner = Arc::get_mut(&mut self.inner)
            .expect("with_registry_headers must be called before the remote is shared");
        inner
            .hosts
            .last_mut()
            .expect("the registry is always a host")
            .headers = headers;
        self
    }

    /// Tries `mirrors`, in order, before the registry (call before sharing the remote).
    /// Credentials for each mirror are looked up under the mirror's own host name.
    /// A URL that is no `http(s)://host[:port][/path]`, or holds a login or a query
    /// (neither would be sent), is refused as invalid input.
    ///
    /// # Panics
    ///
    /// If the remote was cloned already: clones share one state, which this would change
    /// under the other's feet.
    pub fn with_mirrors(
        mut self,
        mirrors: &[Mirror],
        credentials: CredentialSource,
    ) -> Result<Self> {
        let inner = Arc::get_mut(&mut self.inner)
            .expect("with_mirrors must be called before the remote is shared");
        let mut hosts = Vec::with_capacity(mirrors.len() + 1);
        let registry = &inner
            .hosts
            .last()
            .expect("the registry is a host")
            .transport;
        for m in mirrors {
            // A pull-through cache may redirect to the registry's own blob store: one
            // server, whose "come back later" holds the requests of both.
            let mut m = m.clone();
            m.transport = m.transport.sharing_pauses(registry);
            hosts.push(Host::mirror(&m, &inner.repo, credentials.clone())?);
        }
        hosts.append(&mut inner.hosts);
        inner.hosts = hosts;
        Ok(self)
    }

    /// How long a mirror found unreachable (refused, unknown, untrusted, or leaving two
    /// requests in a row unanswered) is skipped before it is asked again: 30 s by default,
    /// twice as long each time it is still down, up to 10 min.
    ///
    /// # Panics
    ///
    /// If the remote was cloned already: clones share one state, which this would change
    /// under the other's feet.
    pub fn with_mirror_down(mut self, first: Duration) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_mirror_down must be called before the remote is shared")
            .mirror_down = first;
        self
    }

    /// Sets when large blobs are fetched in parallel ranges (call before sharing the remote).
    ///
    /// # Panics
    ///
    /// If the remote was cloned already: clones share one state, which this would change
    /// under the other's feet.
    ///
    /// ```should_panic
    /// # use dist::{auth::CredentialSource, registry::RegistryRemote, retry::RetryPolicy};
    /// # use dist::transport::{Transport, TransportOptions};
    /// # fn main() -> dist::Result<()> {
    /// let remote = RegistryRemote::new(
    ///     "registry.example/team/app".parse()?,
    ///     Transport::new(TransportOptions::default())?,
    ///     CredentialSource::None,
    ///     RetryPolicy::default(),
    /// );
    /// let for_a_task = remote.clone();
    /// let remote = remote.with_ranges(Default::default()); // panics: set it up, then clone
    /// # Ok(()) }
    /// ```
    pub fn with_ranges(mut self, ranges: RangeOptions) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                inner.ranged = ranges.shared();
                inner.ranges = ranges;
            }
            None => panic!("with_ranges must be called before the remote is shared"),
        }
        self
    }

    /// Host number `i` (mirrors first, the registry last).
    pub(crate) fn host(&self, i: usize) -> &Host {
        &self.inner.hosts[i]
    }

    /// The retry policy requests follow.
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The repository.
    pub fn repository(&self) -> &Repository {
        &self.inner.repo
    }

    /// How many token requests were made so far, over all hosts (one per batch, normally).
    pub fn token_requests(&self) -> usize {
        self.inner.hosts.iter().map(Host::token_requests).sum()
    }

    fn url(&self, host: usize, endpoint: Endpoint, reference: &str) -> Result<Uri> {
        self.host(host)
            .url(self.inner.repo.name(), &[endpoint.as_str(), "/", reference])
    }

    /// Sends a request to host `host` with authentication, retries and status checking.
    pub(crate) async fn request(
        &self,
        host: usize,
        method: Method,
        url: Uri,
        headers: &HeaderMap,
    ) -> Result<transport::Reply> {
        let budget = self.host(host).max_retries(&self.inner.retry);
        self.request_counted(host, method, url, headers, (&mut 0, budget))
            .await
    }

    /// [`request`](Self::request), its retries counted on from `retries.0`, the failures
    /// in a row its content has met so far, adding its own, up to `retries.1` (see
    /// `Host::request`).
    pub(crate) async fn request_counted(
        &self,
        host: usize,
        method: Method,
        url: Uri,
        headers: &HeaderMap,
        retries: (&mut u32, u32),
    ) -> Result<transport::Reply> {
        self.request_ending(host, method, url, headers, retries, false)
            .await
    }

    /// [`request_counted`](Self::request_counted), ended by the host's first 500 when
    /// `at_500` (see [`host::Ask`]).
    async fn request_ending(
        &self,
        host: usize,
        method: Method,
        url: Uri,
        headers: &HeaderMap,
        retries: (&mut u32, u32),
        at_500: bool,
    ) -> Result<transport::Reply> {
        let ask = host::Ask {
            hands_off: self.hands_off(host),
            ends_at_500: at_500,
        };
        self.host(host)
            .request(&self.inner.retry, method, url, headers, ask, retries)
            .await
    }

    /// Whether host `i` is a mirror the registry stands behind for whatever the mirror may
    /// be asked: then the mirror's "come back later" sends its requests there instead of
    /// holding them.
    fn hands_off(&self, i: usize) -> bool {
        let hosts = &self.inner.hosts;
        let (host, registry) = (&hosts[i], hosts.last().expect("the registry is a host"));
        let covers = |mirror: bool, registry: bool| registry || !mirror;
        host.mirror
            && covers(host.capabilities.pull, registry.capabilities.pull)
            && covers(host.capabilities.resolve, registry.capabilities.resolve)
    }

    /// Whether the registry itself may be asked for tags (`tag`) or content by digest:
    /// where it may not, the mirrors that may stand in for it in a fetch once more.
    fn registry_serves(&self, tag: bool) -> bool {
        self.inner.hosts.last().is_some_and(|r| r.serves(tag))
    }

    /// Runs `attempt` on each host that serves tags (`tag`) or digests, in order, moving
    /// on from a mirror that fails; the registry's own answer is final. `attempt` is
    /// given how the hosts before failed, for what its answer may still fail with.
    async fn on_hosts<'a, T, F>(&'a self, tag: bool, origin_only: bool, mut attempt: F) -> Result<T>
    where
        F: FnMut(usize, &[Error]) -> BoxFuture<'a, Result<T>>,
    {
        let mut failed: Vec<Error> = Vec::new();
        // Past the mirrors, unless the registry itself may not be asked: the hosts that
        // may then stand in for it. Asked of the registry alone, content a mirror failed
        // failed again with "the registry itself may not pull", its cause lost.
        let then_registry = self.registry_serves(tag);
        let past_mirrors = origin_only && then_registry;
        for (i, host) in self.inner.hosts.iter().enumerate() {
            if !host.serves(tag)
                || (past_mirrors && host.mirror)
                || (host.paused() && self.hands_off(i))
            {
                continue;
            }
            match attempt(i, &failed).await {
                Err(e) if host.fall_back(&e, self.inner.mirror_down, then_registry) => {
                    failed.push(e)
                }
                Err(e) => return Err(with_mirror_failures(e, &failed)),
                ok => return ok,
            }
        }
        let last = failed.pop().map(|e| with_mirror_failures(e, &failed));
        let refused = || self.inner.hosts.iter().find_map(|h| h.refusal(tag));
        Err(last.or_else(refused).unwrap_or_else(|| {
            // Only a hosts file's capabilities leave nobody to ask.
            let what = if tag {
                "resolve tags"
            } else {
                "pull content by digest"
            };
            Error::invalid(format!(
                "no host may {what} (`capabilities` in the hosts file)"
            ))
        }))
    }

    /// Fetches `object` from the first host that has it; with a `prefix`, only the rest.
    async fn fetch_after(
        &self,
        object: &Object,
        hints: &Hints,
        prefix: Option<&Prefix>,
    ) -> Result<Download> {
        let tag = matches!(object, Object::Tag(_));
        // Content fetched again after its body broke beyond a resume: paced as the resume
        // would have been.
        if hints.failures > 0 {
            tokio::time::sleep(self.inner.retry.backoff(hints.failures - 1)).await;
        }
        self.on_hosts(tag, hints.origin_only, |host, failed| {
            // A body that breaks for good after the answer names the mirrors that failed
            // before it, as a failed request does.
            let tried = faults(failed);
            async move {
                let download = self.fetch_on(host, object, hints, prefix).await?;
                Ok(download.tried_first(tried))
            }
            .boxed()
        })
        .await
        .map_err(|e| not_found_hint(e, object, &self.inner.repo).with_object(object))
    }

    /// Tries the endpoints in turn on one host: a digest may name a blob or a manifest.
    /// With a `prefix`, only the content after it is asked for.
    async fn fetch_on(
        &self,
        host: usize,
        object: &Object,
        hints: &Hints,
        prefix: Option<&Prefix>,
    ) -> Result<Download> {
        let order = match object {
            Object::Tag(_) => vec![Endpoint::Manifests],
            Object::Digest(_) if hints.wants_manifest() => {
                return self.manifest_or_blob(host, object, hints, prefix).await;
            }
            Object::Digest(_) => vec![Endpoint::Blobs, Endpoint::Manifests],
        };
        let mut first_err = None;
        for endpoint in order {
            match self.fetch_from(host, endpoint, object, hints, prefix).await {
                // A 404 says only that this endpoint lacks the digest; content found there
                // and refused (signed schema 1) says what the digest names, which the
                // blobs endpoint's `BLOB_UNKNOWN` before it would hide.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if first_err.is_none() || e.status().is_none() {
                        first_err = Some(e);
                    }
                }
                other => return other,
            }
        }
        Err(first_err.expect("at least one endpoint"))
    }

    /// A digest hinted as a manifest: the manifests endpoint, then the blobs endpoint when
    /// the first has no such manifest (404) or answered 500, which is how docker-registry
    /// answers for a blob's digest (it fails to parse the blob as a manifest): retried, the
    /// 500 came back five times over seconds of back-off, and the blob was never asked for
    /// where it is. A 500 may also be a registry's passing fault: when the blobs endpoint
    /// has nothing either (404), the manifests endpoint is asked again, with the retries
    /// left; any other failure there (a 403 from a blob's storage) is the one reported,
    /// the registry's answer where the content is, which the 500 only hid. Any other
    /// answer of the manifests endpoint is its request's own to retry or not (a spent
    /// quota is not, an outage's turns are shared), as for any object.
    async fn manifest_or_blob(
        &self,
        host: usize,
        object: &Object,
        hints: &Hints,
        prefix: Option<&Prefix>,
    ) -> Result<Download> {
        let (manifests, blobs) = (Endpoint::Manifests, Endpoint::Blobs);
        let first = match self
            .fetch_within(host, manifests, object, hints, prefix, true)
            .await
        {
            Err(e) => e,
            ok => return ok,
        };
        // The host's own 500: a token server's says nothing of the blobs endpoint, whose
        // request met the same token server with retries of its own.
        let at_500 = first.ended_at_500();
        if first.kind() != ErrorKind::NotFound && !at_500 {
            return Err(first);
        }
        match self.fetch_from(host, blobs, object, hints, prefix).await {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            other => return other,
        }
        if !at_500 {
            return Err(first);
        }
        // The 500's request's attempts, its own failures counted from `hints.failures`,
        // and whether its own retries would have asked again (see `Host::request`).
        let spent = first.attempts().saturating_sub(1).max(hints.failures);
        let policy = &self.inner.retry;
        let budget = self.host(host).max_retries(policy);
        let Next::Retry(wait) = policy.next(&first, spent, budget, None) else {
            return Err(first);
        };
        tokio::time::sleep(wait).await;
        let mut again = hints.clone();
        again.failures = spent + 1;
        // The blobs endpoint's 404 says no more the second time.
        self.fetch_from(host, manifests, object, &again, prefix)
            .await
    }

    /// Describes a manifest from the answer to a `HEAD`, which Docker Hub does not count
    /// against the pull quota. `None` when the answer lacks what a descriptor needs.
    async fn head_manifest(&self, host: usize, object: &Object) -> Result<Option<Descriptor>> {
        let url = self.url(host, Endpoint::Manifests, object.as_str())?;
        let headers = request_headers(default_manifest_accept());
        let reply = self
            .request(host, Method::HEAD, url.clone(), &headers)
            .await?;
        let h = reply.response.headers();
        let announced = h
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let digest = match (object, announced) {
            // The GET decides by the manifest's body, as it does for any manifest asked
            // for by digest; a length beside a header naming other content may be that
            // content's, no size for this descriptor.
            (Object::Digest(d), Some(a)) if a.algorithm() == d.algorithm() && a != *d => {
                tracing::debug!(header = %a, url = %crate::transport::redact(&url), "a HEAD's Docker-Content-Digest names other content");
                return Ok(None);
            }
            (Object::Digest(d), _) => d.clone(),
            (Object::Tag(_), Some(a)) => a,
            (Object::Tag(_), None) => return Ok(None),
        };
        let media_type = h
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media::canonical)
            // Signed schema 1 is the registry's fallback when it has none of the types
            // asked for, and its digest leaves out the signatures its length counts: no
            // descriptor. The `GET` refuses it in words (and a mirror's, for the next host).
            .filter(|t| media::is_manifest(t) && *t != media::DOCKER_SCHEMA1_SIGNED);
        // A coded answer's length is the coded bytes', not the manifest's. No manifest is
        // empty: a length of 0 is a proxy's for the HEAD answer's own empty body (godoxy
        // and nora sent it), which left a descriptor of size 0 that no fetch could meet.
        let uncoded = !coding::is_coded(h);
        let length = content_length(h).filter(|&n| uncoded && n > 0);
        match (media_type, length) {
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
            let fetched = self.fetch_after(object, hints, None).await;
            self.inner.noted(fetched)
        }
        .boxed()
    }

    fn fetch_rest<'a>(
        &'a self,
        object: &'a Object,
        hints: &'a Hints,
        prefix: Prefix,
    ) -> BoxFuture<'a, Result<Download>> {
        async move {
            let fetched = match self.fetch_after(object, hints, Some(&prefix)).await {
                Err(e) if e.status() == Some(416) => nothing_past::judged(e, object, hints, prefix),
                fetched => fetched,
            };
            self.inner.noted(fetched)
        }
        .boxed()
    }

    fn check<'a>(&'a self) -> BoxFuture<'a, Result<()>> {
        async move {
            // `/v2/` alone may accept anonymous callers while the repository does not, so
            // ask for something inside the repository: a tag list page of one entry.
            self.on_hosts(false, false, |host, _| {
                async move {
                    let url = self
                        .host(host)
                        .url(self.inner.repo.name(), &["tags/list?n=1"])?;
                    match self
                        .request(host, Method::GET, url, &HeaderMap::new())
                        .await
                    {
                        Ok(mut reply) => {
                            let transport = &self.host(host).transport;
                            let _ = transport::read_prefix(
                                transport,
                                reply.response.body_mut(),
                                MAX_ERROR_BODY,
                            )
                            .await;
                            Ok(())
                        }
                        // An empty or unlisted repository is still reachable and authorized;
                        // and a registry may refuse listings (403) to credentials that may
                        // pull (an ECR policy without `ecr:ListImages`): the objects say.
                        // The registry's own `NAME_UNKNOWN` is kept for their 404s, which
                        // do not say it (a mirror's only says what the mirror lacks).
                        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Denied) => {
                            if !self.host(host).mirror
                                && e.codes().iter().any(|c| c == "NAME_UNKNOWN")
                            {
                                self.inner
                                    .name_unknown
                                    .store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            Ok(())
                        }
                        // Nor need a registry list tags at all (the distribution spec's
                        // Content Discovery, beside the Pull a registry must serve): one
                        // without that endpoint answers its `UNSUPPORTED`, 405, or 501.
                        Err(e)
                            if e.kind() == ErrorKind::Http
                                && matches!(e.status(), Some(405 | 501)) =>
                        {
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                .boxed()
            })
            .await
        }
        .boxed()
    }

    fn describe(&self) -> String {
        self.inner.repo.to_string()
    }

    fn manifest_location(&self, digest: &Digest) -> Option<String> {
        // The registry's own URL (the last host; mirrors come first): the content is the
        // digest's wherever it came from, and the registry is where it is published.
        let registry = self.inner.hosts.len().checked_sub(1)?;
        let url = self
            .url(registry, Endpoint::Manifests, digest.as_str())
            .ok()?;
        Some(url.to_string())
    }

    fn resolve<'a>(&'a self, object: &'a Object) -> BoxFuture<'a, Result<Descriptor>> {
        async move {
            let tag = matches!(object, Object::Tag(_));
            let head = self
                .on_hosts(tag, false, |host, _| {
                    self.head_manifest(host, object).boxed()
                })
                .await;
            match head {
                Ok(Some(d)) => return self.inner.noted(Ok(d)),
                Ok(None) => {
                    tracing::debug!(%object, "HEAD lacks digest, type or length; using GET")
                }
                // Some registries and proxies refuse HEAD (405, or 403 as registry.centos.org
                // did) or answer it badly (a 404 for a tag a GET serves); a HEAD answer has
                // no body to tell these from a real refusal, so GET asks again, as Docker and
                // crane do, and brings the registry's error code if it is one. Any other
                // failure (credentials, retries used up) would only repeat with GET.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Http
                            | ErrorKind::Protocol
                            | ErrorKind::NotFound
                            | ErrorKind::Denied
                    ) && !e.is_transient() =>
                {
                    tracing::debug!(%object, error = %e, "HEAD failed; using GET")
                }
                Err(e) => {
                    let e = self.inner.unknown_name_note(e);
                    return Err(not_found_hint(e, object, &self.inner.repo).with_object(object));
                }
            }
            crate::image::resolve_by_fetch(self, object).await
        }
        .boxed()
    }
}

/// The headers every request for content starts from. The content is asked for as it is
/// stored (`identity`): its digest names those bytes, and ranges address them.
fn request_headers(accept: HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(http::header::ACCEPT, accept);
    headers.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers
}

/// The `Accept` of a manifest request without hints: every kind dist reads, joined once.
fn default_manifest_accept() -> HeaderValue {
    static JOINED: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
        HeaderValue::from_str(&media::DEFAULT_MANIFEST_ACCEPT.join(", "))
            .expect("media types are ASCII")
    });
    JOINED.clone()
}

/// The body's length, as the response declares it. Not when it also has a
/// `Transfer-Encoding`: the body is then framed by that (RFC 9112, 6.3), as hyper reads it,
/// and the length is one a proxy forgot to remove or counts something else; Go's client
/// (containerd, crane) drops it too.
fn content_length(h: &HeaderMap) -> Option<u64> {
    if h.contains_key(http::header::TRANSFER_ENCODING) {
        return None;
    }
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `e`, when it is not found, with what was most likely meant: the digest a tag written as
/// bare hex spells, a `jq` filter that found nothing (the tag `null`), or the repository (and object) a registry API URL pasted as the
/// locator names (`host/v2/team/app/manifests/v1`, asked for as `/v2/v2/team/app/…`).
fn not_found_hint(e: Error, object: &Object, repo: &crate::Repository) -> Error {
    if e.kind() != ErrorKind::NotFound {
        return e;
    }
    let e = match object.bare_digest_spelling() {
        Some(digest) => e.with_note(format!("if a digest was meant, write it {digest}")),
        // A valid tag, and what `jq -r '.config.digest'` prints for an index, which has
        // no config: the 404 alone read as if an image were not there.
        None if matches!(object, Object::Tag(t) if t == "null") => e.with_note(
            "jq -r prints null for a missing field: check the jq filter that gave the object",
        ),
        None => e,
    };
    match crate::reference::api_url_path(repo.name()) {
        Some((name, in_url)) => e.with_api_url_note(
            format!("{}/{name}", repo.host()),
            in_url.map_or_else(|| object.to_string(), str::to_string),
        ),
        None => e,
    }
}

/// `e`, the last host's failure, with the mirrors' failures before it: why a mirror the
/// user relies on did not serve, which the registry's error alone would hide. A mirror
/// that lacks the object is routine, and left out (see [`faults`]).
fn with_mirror_failures(e: Error, mirrors: &[Error]) -> Error {
    e.with_tried_first(&faults(mirrors))
}

/// How the hosts in `failed` failed (URL and reason each), for an error's "tried first":
/// all but those that answered "not found". A mirror that lacks an object (a cache that
/// never pulled it) did nothing wrong, and named beside the failure of the host that
/// served in its place, its 404 read as a fault of the mirror's.
pub(crate) fn faults(failed: &[Error]) -> Vec<String> {
    failed
        .iter()
        .filter(|e| e.kind() != ErrorKind::NotFound)
        .map(Error::detail)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers for the registry set before `with_server` moved it went with the old
    /// address: the registry at its new one was sent none of them.
    #[test]
    fn a_moved_registry_keeps_its_headers() {
        let transport = Transport::new(Default::default()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-team", HeaderValue::from_static("a"));
        let remote = RegistryRemote::new(
            "registry.example/team/app".parse().unwrap(),
            transport.clone(),
            CredentialSource::None,
            RetryPolicy::default(),
        )
        .with_registry_headers(headers)
        .with_server(
            &Server::new("https://cache.example"),
            transport,
            CredentialSource::None,
        )
        .unwrap();
        let registry = remote.host(remote.inner.hosts.len() - 1);
        assert_eq!(registry.name, "cache.example");
        assert_eq!(registry.headers.get("x-team").unwrap(), "a");
    }
}
