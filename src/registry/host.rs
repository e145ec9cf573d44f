//! One place the registry API is served: the registry itself, or a mirror tried before it.
//!
//! Each host has its own connection pool (a mirror may need its own CA), its own
//! authorizer (credentials are looked up under the host's own name and never sent to
//! another), and its own `Retry-After` pause (a redirect target's pause is its own, kept by
//! the transport). Every request goes through
//! `Host::request`, which adds authentication (reacting to 401 challenges), waits out
//! the host's pause, retries transient failures with backoff (one request at a time for
//! all while the registry fails every one, `outage`), and turns error statuses into
//! typed errors carrying the registry's OCI error code (`status`). A host's URL is checked
//! and read into its API root by `api_root`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};

use crate::auth::{Authorizer, Challenged, CredentialSource, Grant, RequestTries, Sent};
use crate::duration::Written;
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Repository;
use crate::retry::{self, HostPause, Next, RetryPolicy};
use crate::transport::{self, Outgoing, Transport};

use super::api_root::{
    api_root_of, no_credentials_in, nothing_unsent_in, origin_of, serves_another,
};
use super::mirror_down::MirrorDown;
use super::outage::{met_at, outage_over, Admit, Asleep, Came, Outage, Ticket, HOLD_AFTER};
use super::status::{quota_left, status_error, MAX_ERROR_BODY};

/// How many times one request reacts to a 401 before giving up.
const MAX_AUTH_ROUNDS: u32 = 2;
/// A mirror is a shortcut, not the source of truth: it gets one retry, then the next host.
const MIRROR_RETRIES: u32 = 1;
/// Requests in a row that a mirror leaves unanswered within the idle timeout before it is
/// marked down. One is a slow answer (a cache fetching a large blob from its upstream), and
/// the objects after it still want the mirror; a mirror that hangs on every request costs
/// each object its timeouts, and is given up on soon (and, asked again when its mark runs
/// out, marked down again at its first timeout, having answered nothing in between).
const MIRROR_TIMEOUTS: u32 = 2;
/// What a mirror may be asked for, as in containerd's `hosts.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Content by digest (blobs, and manifests by digest).
    pub pull: bool,
    /// Tags: which manifest a tag names right now.
    pub resolve: bool,
}

impl Capabilities {
    /// Both pull and resolve.
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
    };
}

/// Where the registry itself is served when a hosts file moves it (`server = …`).
/// Built with [`Server::new`]: it may gain settings, as [`Mirror`] does. `Debug` shows
/// its URL without a login written into it (refused, by [`RegistryRemote::with_server`]).
///
/// [`RegistryRemote::with_server`]: crate::registry::RegistryRemote::with_server
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Server {
    /// `scheme://host[:port][/path]`. The API root is `<path>/v2/`, or `<path>/` itself
    /// with `override_path`.
    pub url: String,
    /// What it may be asked for; a registry that may not resolve leaves tags to mirrors.
    pub capabilities: Capabilities,
    /// The path of `url` is the API root (for registries served under a prefix).
    pub override_path: bool,
}

/// A mirror of the registry, tried before the registry itself. Built with [`Mirror::new`]
/// and its fields set: it gained `headers` with `hosts.toml`, and may gain more.
///
/// ```
/// use dist::registry::{host::{Capabilities, Mirror}, RegistryRemote};
/// use dist::{auth::CredentialSource, retry::RetryPolicy};
/// use dist::transport::{Transport, TransportOptions};
///
/// # fn main() -> dist::Result<()> {
/// let transport = Transport::new(TransportOptions::default())?;
/// let mut mirror = Mirror::new("https://mirror.example", transport.clone());
/// mirror.capabilities = Capabilities { pull: true, resolve: false };
/// let remote = RegistryRemote::new(
///     "registry.example/team/app".parse()?,
///     transport,
///     CredentialSource::None,
///     RetryPolicy::default(),
/// )
/// .with_mirrors(&[mirror], CredentialSource::None)?;
/// # let _ = remote; Ok(()) }
/// ```
///
/// ```compile_fail
/// # let transport = dist::transport::Transport::new(Default::default()).unwrap();
/// let mirror = dist::registry::host::Mirror {
///     url: "https://mirror.example".into(),
///     capabilities: dist::registry::host::Capabilities::ALL,
///     override_path: false,
///     transport,
///     headers: Default::default(),
/// };
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Mirror {
    /// `scheme://host[:port][/path]`. The API root is `<path>/v2/`, or `<path>/` itself
    /// with `override_path`. A login in it is refused, and `Debug` leaves it out.
    pub url: String,
    /// What it may be asked for.
    pub capabilities: Capabilities,
    /// The path of `url` is the API root (for mirrors served under a prefix).
    pub override_path: bool,
    /// The client to reach it with (its own when it needs its own CA or trust settings).
    pub transport: Transport,
    /// Headers for every request to it (never sent along a redirect to another host).
    /// They may be keys: `Debug` shows their names alone.
    pub headers: HeaderMap,
}

impl Server {
    /// The registry at `url`, asked for everything, its API root at `<path>/v2/`.
    ///
    /// ```
    /// // A registry served under a prefix, for RegistryRemote::with_server.
    /// let mut server = dist::registry::host::Server::new("https://example.test/registry");
    /// server.override_path = true;
    /// # assert!(server.capabilities.resolve);
    /// ```
    pub fn new(url: impl Into<String>) -> Server {
        Server {
            url: url.into(),
            capabilities: Capabilities::ALL,
            override_path: false,
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &crate::error::redact_url(&self.url))
            .field("capabilities", &self.capabilities)
            .field("override_path", &self.override_path)
            .finish()
    }
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A login in the URL is refused when the remote is built, in words without it;
        // the settings a service logs, before or to say which one failed, leave it out too.
        f.debug_struct("Mirror")
            .field("url", &crate::error::redact_url(&self.url))
            .field("capabilities", &self.capabilities)
            .field("override_path", &self.override_path)
            .field("transport", &self.transport)
            .field("headers", &crate::transport::HeaderNames(&self.headers))
            .finish()
    }
}

impl Mirror {
    /// A mirror at `url` reached with `transport`: asked for everything, its API root at
    /// `<path>/v2/`, no headers of its own.
    pub fn new(url: impl Into<String>, transport: Transport) -> Mirror {
        Mirror {
            url: url.into(),
            capabilities: Capabilities::ALL,
            override_path: false,
            transport,
            headers: HeaderMap::new(),
        }
    }
}

/// A host serving the registry API for one repository.
pub(crate) struct Host {
    /// `host[:port]`, for messages and credential lookup.
    pub(crate) name: String,
    /// The API root, ending in `/`.
    api: String,
    /// `ns=<registry>` on mirror requests, so a mirror of several registries knows which.
    namespace: Option<String>,
    pub(crate) transport: Transport,
    auth: Authorizer,
    pause: HostPause,
    /// Failures in a row, shared by every request (the registry's only: a mirror failing
    /// hands its requests to the next host).
    outage: Outage,
    pub(crate) capabilities: Capabilities,
    pub(crate) mirror: bool,
    /// Configured headers for every request to this host only.
    pub(crate) headers: HeaderMap,
    /// Set when the mirror could not be reached: it is skipped until the mark runs out.
    down: Mutex<MirrorDown>,
    /// Requests in a row that failed with a timeout, reset by any answer.
    timeouts: AtomicU32,
}

impl Host {
    /// The registry itself, at its usual address or where a hosts file's `server` puts it.
    pub(crate) fn upstream(
        repo: &Repository,
        server: Option<&Server>,
        transport: Transport,
        credentials: CredentialSource,
    ) -> Result<Host> {
        let (name, api, capabilities) = match server {
            None => (
                repo.api_host().to_string(),
                repo.api_base(),
                Capabilities::ALL,
            ),
            Some(s) => {
                no_credentials_in(&s.url, "registry server")?;
                nothing_unsent_in(&s.url, "registry server")?;
                let (authority, api) =
                    api_root_of(&s.url, s.override_path, "registry server", &s.url)?;
                (authority, api, s.capabilities)
            }
        };
        // A `server` elsewhere is often a pull-through cache for several registries, which
        // containerd tells which one with `ns`, as it tells mirrors.
        let namespace = serves_another(&name, repo.host()).then(|| repo.host().to_string());
        // Credentials are those of the host asked, as containerd looks them up: a cache
        // standing in for docker.io gets the cache's login, never Docker Hub's password.
        let login = if namespace.is_some() {
            &name
        } else {
            repo.host()
        };
        let auth = Authorizer::new(
            transport.clone(),
            login,
            origin_of(&api),
            repo.name(),
            credentials,
        );
        Ok(Host {
            name,
            api,
            namespace,
            transport,
            auth,
            pause: HostPause::default(),
            outage: Outage::default(),
            capabilities,
            mirror: false,
            headers: HeaderMap::new(),
            down: Mutex::default(),
            timeouts: AtomicU32::new(0),
        })
    }

    /// A mirror of `repo`'s registry.
    pub(crate) fn mirror(
        m: &Mirror,
        repo: &Repository,
        credentials: CredentialSource,
    ) -> Result<Host> {
        no_credentials_in(&m.url, "mirror")?;
        nothing_unsent_in(&m.url, "mirror")?;
        let (authority, api) = api_root_of(&m.url, m.override_path, "mirror URL", &m.url)?;
        let auth = Authorizer::new(
            m.transport.clone(),
            &authority,
            origin_of(&api),
            repo.name(),
            credentials,
        );
        // A host listed under the registry's own name is the registry (with a CA of its
        // own, say): containerd sends it no `ns`.
        let namespace = serves_another(&authority, repo.host()).then(|| repo.host().to_string());
        Ok(Host {
            name: authority,
            api,
            namespace,
            transport: m.transport.clone(),
            auth,
            pause: HostPause::default(),
            outage: Outage::default(),
            capabilities: m.capabilities,
            mirror: true,
            headers: m.headers.clone(),
            down: Mutex::default(),
            timeouts: AtomicU32::new(0),
        })
    }

    /// `<api><name>/<path…>`, with the namespace query on mirrors. Built in one allocation
    /// that the `Uri` takes over: every fetch forms one.
    pub(crate) fn url(&self, name: &str, path: &[&str]) -> Result<Uri> {
        let ns = self.namespace.as_deref();
        let len = self.api.len()
            + name.len()
            + 1
            + path.iter().map(|p| p.len()).sum::<usize>()
            + ns.map_or(0, |ns| ns.len() + 4);
        let mut s = String::with_capacity(len);
        s.push_str(&self.api);
        s.push_str(name);
        s.push('/');
        path.iter().for_each(|p| s.push_str(p));
        if let Some(ns) = ns {
            s.push(if s.contains('?') { '&' } else { '?' });
            s.push_str("ns=");
            s.push_str(ns);
        }
        let shown = || format!("{}{name}/{}", self.api, path.concat());
        Uri::try_from(s)
            .map_err(|_| Error::invalid(format!("cannot form a URL from {:?}", shown())))
    }

    /// Whether this host may be asked for a tag (`resolve`) or content by digest (`pull`).
    pub(crate) fn serves(&self, tag: bool) -> bool {
        self.up()
            && if tag {
                self.capabilities.resolve
            } else {
                self.capabilities.pull
            }
    }

    /// Whether this host is not marked down, saying so when its mark has just run out.
    fn up(&self) -> bool {
        // Only a mirror is ever marked: the registry, asked for every object, takes no lock.
        if !self.mirror {
            return true;
        }
        let mut down = self.down.lock().expect("mirror mark poisoned");
        if down.refused.is_some() {
            return false;
        }
        match down.until {
            None => true,
            Some(until) if until > Instant::now() => false,
            Some(_) => {
                down.until = None;
                tracing::debug!(mirror = %self.name, "mirror marked down before; trying it again");
                true
            }
        }
    }

    /// Whether a failure on this host should send the request to the next host, marking
    /// an unreachable or untrusted mirror down for a while: `first` the first time, twice
    /// as long each time it is still down when asked again. A mirror that refused dist
    /// (401, 403) is left alone for the rest of the run, and a failure that will not pass
    /// by itself is said once ([`super::misconfigured`]), `then_registry` when the
    /// registry itself may serve what the mirror failed.
    pub(crate) fn fall_back(&self, e: &Error, first: Duration, then_registry: bool) -> bool {
        if !self.mirror {
            return false;
        }
        // Unreachable, or not to be trusted: neither changes from one request to the next.
        // A connection made and a request left unanswered may be a slow answer, once.
        let down = match e.kind() {
            ErrorKind::Connect
            | ErrorKind::UnknownHost
            | ErrorKind::Certificate
            | ErrorKind::NotTls
            | ErrorKind::TlsIncompatible => true,
            ErrorKind::Timeout => {
                self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= MIRROR_TIMEOUTS
            }
            _ => false,
        };
        tracing::debug!(mirror = %self.name, error = %e, "mirror failed; trying the next host");
        let answered = super::misconfigured::Answered {
            // A token service under the API root (Quay's `/v2/auth`) is not the API.
            own: e.url().is_none_or(|url| url.starts_with(&self.api)) && !e.is_at_token_service(),
            configured_login: self.headers.contains_key(http::header::AUTHORIZATION),
        };
        if let Some(lasting) = super::misconfigured::lasting(e, answered) {
            lasting.warn_once(&self.api, e, then_registry);
            if lasting.for_the_run {
                let mut mark = self.down.lock().expect("mirror mark poisoned");
                mark.refused
                    .get_or_insert_with(|| (e.kind(), e.to_string()));
            }
        }
        if down {
            let mut mark = self.down.lock().expect("mirror mark poisoned");
            if let Some(skipped) = mark.mark(Instant::now(), first) {
                tracing::debug!(mirror = %self.name, skipped = ?skipped, "mirror marked down; the next host serves until it is tried again");
            }
        }
        true
    }

    /// The refusal that keeps this mirror skipped for the rest of the run, when it may
    /// serve tags (`tag`) or digests: the cause of a fetch no other host may serve, which
    /// would otherwise read that no host may.
    pub(crate) fn refusal(&self, tag: bool) -> Option<Error> {
        let may = if tag {
            self.capabilities.resolve
        } else {
            self.capabilities.pull
        };
        if !self.mirror || !may {
            return None;
        }
        let down = self.down.lock().expect("mirror mark poisoned");
        let (kind, words) = down.refused.as_ref()?;
        // The proxy's refusal never reached the mirror: its access rules are not the cause.
        let note = match kind {
            ErrorKind::ProxyRefused => {
                "the proxy refused to carry the connection to the mirror earlier in this run, \
                 and the mirror is not asked again"
            }
            _ => "the mirror refused dist earlier in this run and is not asked again",
        };
        Some(Error::new(*kind, words.clone()).with_note(note))
    }

    /// Who answered from this host, for what its answers declare: `registry`, or `mirror
    /// <host:port>` (a mirror's declared size was said as the registry's, and sent the
    /// reader to a server that had declared nothing of the kind).
    pub(crate) fn who(&self) -> String {
        self.mirror_name().unwrap_or_else(|| "registry".to_string())
    }

    /// [`Self::who`] for a mirror; `None` for the registry.
    pub(crate) fn mirror_name(&self) -> Option<String> {
        self.mirror.then(|| format!("mirror {}", self.name))
    }

    /// Reads the small error body of a reply that is answered by asking again, so that
    /// its connection can be reused.
    async fn drain(&self, reply: &mut transport::Reply) {
        let _ = transport::read_prefix(&self.transport, reply.response.body_mut(), MAX_ERROR_BODY)
            .await;
    }

    /// The secrets a request for `asked` sent with `grant` carried, to be kept out of what
    /// the server at `url` answered: its `Authorization`, the host's configured headers,
    /// the forwarding proxy's credentials, and, when a redirect led it to `url`, that
    /// URL's query (a pre-signed URL's signature, which the storage service's error may
    /// repeat).
    fn sent_with(&self, grant: &crate::auth::Grant, asked: &Uri, url: &Uri) -> Sent {
        let mut sent = Sent::header(grant.header.as_ref());
        sent.extend_values(&self.headers);
        sent.extend_header(self.transport.proxy_authorization(url).as_ref());
        if url != asked {
            sent.extend_query(url, &asked.to_string());
        }
        sent
    }

    /// How many times a failed request (or a broken body) is tried again on this host.
    pub(crate) fn max_retries(&self, policy: &RetryPolicy) -> u32 {
        if self.mirror {
            policy.retries.min(MIRROR_RETRIES)
        } else {
            policy.retries
        }
    }

    /// Token requests made for this host.
    pub(crate) fn token_requests(&self) -> usize {
        self.auth.token_requests()
    }

    /// Whether the host asked to be left alone (`Retry-After`) and that time is not over.
    pub(crate) fn paused(&self) -> bool {
        self.pause.running()
    }

    /// Sends a request with authentication, retries and status checking. Returns the
    /// response once its status is a success; its body is left unread. A mirror that
    /// `hands_off` to the registry is not waited for when it asks to be left alone.
    ///
    /// `retries` holds the failures already counted against `max_retries` (a body's
    /// breaks, asking for its rest), and counts this request's: one budget, not one per
    /// resume, so that a body breaking again and again costs at most `--retries` + 1
    /// requests in a row without progress, not their square. `max_retries` is the
    /// host's own ([`max_retries`](Self::max_retries)), or the body's when the request
    /// asks for the rest of one: the same count cannot be held to two limits.
    ///
    /// `ask` says what else ends it ([`Ask`]).
    pub(crate) async fn request(
        &self,
        policy: &RetryPolicy,
        method: Method,
        url: Uri,
        headers: &HeaderMap,
        ask: Ask,
        (retries, max_retries): (&mut u32, u32),
    ) -> Result<transport::Reply> {
        let mut a = Attempts {
            policy,
            url: &url,
            headers,
            retries,
            max_retries,
            auth_rounds: 0,
            resent: false,
            came: None,
            tries: self.auth.token_tries(),
            kept: None,
            asleep: None,
        };
        loop {
            // A mirror the registry stands behind is not waited for: the hosts are picked
            // before its pause, but a body it serves asks it for the rest, and its parts
            // ask it, whenever they break, which would hold them for as long as it asked.
            if ask.hands_off && self.pause.running() {
                let e = Error::new(
                    ErrorKind::TooManyRequests,
                    "the mirror asked to be left alone for now (Retry-After); the next host serves",
                );
                return Err(e.with_url(&url));
            }
            self.pause.wait().await;
            let ticket = match self.turn(&mut a).await? {
                Turn::Send(ticket) => ticket,
                Turn::Waited => continue,
            };
            // Come to the host again: a sleep before is over.
            a.asleep = None;
            // Token requests fail as other requests do (a 503 or 429 from the token
            // server, a dropped connection) and are retried on the same budget.
            let grant = match self.auth.grant_again(policy, &mut a.tries).await {
                Ok(g) => g,
                Err(e) => {
                    // The token server's trouble says nothing of the registry: another
                    // request may ask for all meanwhile. An outage it met is remembered
                    // while it sleeps, as after the registry's own failure: forgotten
                    // while a token server was down for a minute, every request went to
                    // the registry at once when it was back, each with its retries.
                    drop(ticket);
                    a.wait_out(&self.outage, e, None).await?;
                    continue;
                }
            };
            let (mut reply, ticket) = match self.send(&mut a, &method, &grant, ticket).await? {
                Some(answered) => answered,
                None => continue,
            };
            self.answers();
            let status = reply.response.status();
            // The registry or the gateway before it unavailable, rather than an answer: a
            // 500 (or 408, or 429) comes from a registry that is up, and may be the
            // object's own (a blob its storage lost), which other objects must not share.
            let failing = reply.same_origin && matches!(status.as_u16(), 502..=504);
            let verdict = self.verdict(&reply, &grant, a.auth_rounds);
            let ticket = match ticket {
                Some(t) if !failing && !verdict.reauth => {
                    t.answered();
                    None
                }
                t => t,
            };
            if status.is_success() {
                self.auth.served(&grant);
                return Ok(reply);
            }
            // This host's own 401, challenging: new credentials, and the request again.
            if !verdict.challenges.is_empty() && a.auth_rounds < MAX_AUTH_ROUNDS && !verdict.spurned
            {
                self.challenged(&mut a, &grant, reply, &verdict.challenges, ticket)
                    .await?;
                continue;
            }
            let ticket = if status == StatusCode::FORBIDDEN
                && reply.same_origin
                && a.auth_rounds < MAX_AUTH_ROUNDS
            {
                if self.auth.forbidden(&grant).await {
                    self.drain(&mut reply).await;
                    a.auth_rounds += 1;
                    a.kept = ticket;
                    continue;
                }
                // No credentials renewed: the 403 is the registry's answer.
                if let Some(t) = ticket {
                    t.answered();
                }
                None
            } else {
                ticket
            };
            let refused = Refused {
                reply,
                grant,
                ticket,
                verdict,
            };
            self.refused(&mut a, refused, ask).await?;
        }
    }

    /// The request's turn under the registry's outage (`outage`): the ticket it is sent
    /// with, none where it keeps retries of its own, or a failure waited out (`Waited`),
    /// after which the attempt starts over.
    ///
    /// The registry failing request after request is asked once for all the requests
    /// waiting; a mirror's failures hand them to the next host. A range asked for is part
    /// or the rest of a body under way (a ranged part, a resume): it keeps its own
    /// retries, as an object's first request would not under an outage that came before
    /// it, and the parts of one blob meeting a few 503s in turn failed the blob.
    async fn turn<'a>(&'a self, a: &mut Attempts<'a>) -> Result<Turn<'a>> {
        if a.kept.is_some() {
            return Ok(Turn::Send(a.kept.take()));
        }
        if self.mirror || a.headers.contains_key(http::header::RANGE) {
            return Ok(Turn::Send(None));
        }
        // When the request came to the outage, before any wait for its token: a
        // slow token server must not make it late to an outage it came before.
        let came = *a
            .came
            .get_or_insert_with(|| self.outage.came(a.max_retries));
        // Held, a token first, beside every other task that needs one, whose
        // failure they share: asked for behind the request sent for all, each
        // task in turn asked a failing token server again, for itself alone.
        if self.outage.holds(&self.pause) {
            if let Err(e) = self.auth.grant_again(a.policy, &mut a.tries).await {
                a.wait_out(&self.outage, e, None).await?;
                return Ok(Turn::Waited);
            }
        }
        match self.outage.admit(&self.pause).await {
            Admit::Send(t) => Ok(Turn::Send(Some(t))),
            // Its last attempt is its own, even when it went out itself before:
            // an object the registry would serve is not failed for another's
            // 503, nor told of a URL never asked for.
            Admit::Failed(_, streak)
                if *a.retries >= a.max_retries
                    || (self.outage.late(came) && streak > a.max_retries) =>
            {
                Ok(Turn::Send(Some(self.outage.own())))
            }
            Admit::Failed(e, _) => {
                a.wait_out(&self.outage, e.for_url(a.url), None).await?;
                Ok(Turn::Waited)
            }
        }
    }

    /// Sends the request with `grant`: its answer, with the ticket it still holds, or
    /// `None` for another attempt, after a failure waited out or a connection lost
    /// before an answer.
    async fn send<'a>(
        &'a self,
        a: &mut Attempts<'a>,
        method: &Method,
        grant: &Grant,
        ticket: Option<Ticket<'a>>,
    ) -> Result<Option<(transport::Reply, Option<Ticket<'a>>)>> {
        let req = Outgoing {
            method: method.clone(),
            url: a.url.clone(),
            headers: a.headers.clone(),
            authorization: grant.header.clone(),
            origin_headers: self.headers.clone(),
            body: Bytes::new(),
        };
        let e = match self.transport.send(req).await {
            Ok(r) => return Ok(Some((r, ticket))),
            // Once per request: a server that drops every request is a fault, retried
            // (or not) by the policy below.
            Err(e) if !a.resent && transport::lost_before_answer(&e) => {
                tracing::debug!(url = %crate::transport::redact(a.url), error = %e, "connection lost before an answer; sending again");
                a.resent = true;
                return Ok(None);
            }
            Err(e) => e,
        };
        let e = match ticket {
            // The registry answered, with a redirect: the server it led to (a
            // blob store) failed, as its 503 would.
            Some(t) if !met_at(&e, a.url) => {
                t.answered();
                e
            }
            Some(t) if e.is_transient() => {
                let spent = (*a.retries, a.max_retries);
                self.outage_failed(t, e, a.url, a.policy, a.came, spent)?
            }
            _ => e,
        };
        a.wait_out(&self.outage, e, None).await?;
        Ok(None)
    }

    /// The host answered: the marks of its failures go.
    fn answers(&self) {
        self.timeouts.store(0, Ordering::Relaxed);
        if self.mirror {
            let mut down = self.down.lock().expect("mirror mark poisoned");
            if down.marks > 0 {
                *down = MirrorDown::default();
                tracing::debug!(mirror = %self.name, "mirror answers again");
            }
        }
    }

    /// What an answer says of the credentials sent with `grant`, after `auth_rounds`
    /// renewed.
    fn verdict(&self, reply: &transport::Reply, grant: &Grant, auth_rounds: u32) -> Verdict {
        let status = reply.response.status();
        let challenges = match status {
            StatusCode::UNAUTHORIZED if reply.same_origin => {
                challenges_of(reply.response.headers())
            }
            _ => Vec::new(),
        };
        // The registry refused its token server's tokens to an earlier request, and
        // says the same again: a token asked for would be refused as those were
        // (each object cost 2 token requests and 3 401s). Its 401 is the answer.
        let spurned = !challenges.is_empty()
            && auth_rounds < MAX_AUTH_ROUNDS
            && self.auth.spurns(grant, &challenges);
        let reauth = reply.same_origin
            && auth_rounds < MAX_AUTH_ROUNDS
            && match status {
                StatusCode::UNAUTHORIZED => !challenges.is_empty() && !spurned,
                StatusCode::FORBIDDEN => grant.sends(b"Basic"),
                _ => false,
            };
        Verdict {
            challenges,
            spurned,
            reauth,
        }
    }

    /// Answers the host's own 401 with new credentials, the request to go again; `Err`
    /// when none are to be had and no retry is left.
    async fn challenged<'a>(
        &'a self,
        a: &mut Attempts<'a>,
        grant: &Grant,
        mut reply: transport::Reply,
        challenges: &[String],
        ticket: Option<Ticket<'a>>,
    ) -> Result<()> {
        self.drain(&mut reply).await;
        let sent = self.sent_with(grant, a.url, &reply.url);
        // Let go before the token is asked for: a body longer than what is
        // read of it keeps its connection, which a realm on this host, under
        // the per-host cap, may wait for as long as `--timeout` lets it.
        drop(reply);
        let challenged = Challenged {
            www_authenticate: challenges,
            again: a.auth_rounds > 0,
            sent: &sent,
            configured_authorization: self.headers.contains_key(http::header::AUTHORIZATION),
        };
        match self
            .auth
            .challenged_again(grant, challenged, &mut a.tries, a.policy)
            .await
        {
            Ok(()) => {
                a.auth_rounds += 1;
                a.kept = ticket;
            }
            // No credentials renewed: the 401 is the registry's answer, as
            // it was before (held, the others would each wait for a 401
            // no credentials answer, one request at a time).
            Err(e) => {
                if let Some(t) = ticket {
                    t.answered();
                }
                tokio::time::sleep(a.again(e, None)?).await
            }
        }
        Ok(())
    }

    /// Judges an answer that is no success, its credentials past renewing: the error it
    /// ends the request with, or its wait slept out before the next attempt. Its pause
    /// asked for holds the host (or the blob store a redirect led to), as it says.
    async fn refused<'a>(
        &'a self,
        a: &mut Attempts<'a>,
        refused: Refused<'a>,
        ask: Ask,
    ) -> Result<()> {
        let Refused {
            reply,
            grant,
            ticket,
            verdict,
        } = refused;
        let (policy, url) = (a.policy, a.url);
        let (answer, mut err) = self.read_refusal(reply, &grant, url).await;
        if let Some(t) = ticket {
            err = self.outage_counted(t, err, a, &answer)?;
        }
        let err = self.refused_for_good(&answer, err, &grant, url).await?;
        let err = self.spurned_noted(&answer, err, &grant, &verdict, a.auth_rounds);
        if let Some(asked) = answer.holding.filter(|_| ask.hands_off) {
            // A mirror is a shortcut: waiting for it, object after object, while the
            // registry would answer now, made a throttled cache slow the whole run. Its
            // blob store's pause skips it too: its blobs would wait there.
            let asked = asked.min(policy.max_delay);
            self.pause.pause_for(asked);
            if let Some(target) = &answer.elsewhere {
                self.transport.pause_origin(target, asked);
            }
            return Err(err.with_url(url));
        }
        self.hold_off(&answer, policy);
        if ask.ends_at_500 && answer.own && answer.status == StatusCode::INTERNAL_SERVER_ERROR {
            let err = err.with_attempts(*a.retries + 1).ending_at_500();
            return Err(err.with_url(url));
        }
        a.wait_out(&self.outage, err, answer.asked).await
    }

    /// What the answer `reply` to a request for `url` sent with `grant` says, and the
    /// error it makes. Its connection is let go: it is not held through what follows (a
    /// token or quota lookup on this host, and the pause before the next attempt).
    async fn read_refusal(
        &self,
        mut reply: transport::Reply,
        grant: &Grant,
        url: &Uri,
    ) -> (RefusalRead, Error) {
        let status = reply.response.status();
        let asked = retry::retry_after(reply.response.headers());
        let out_of_quota = status == StatusCode::TOO_MANY_REQUESTS
            && asked.is_none()
            && quota_left(reply.response.headers()) == Some(0);
        let own = reply.same_origin;
        // A server that says how long to hold off (429, 503) says it to every request
        // that reaches it, not only this one. After a redirect that is the blob store
        // (a CDN, S3), not this host: the registry's other requests go on meanwhile,
        // and those that the registry sends there wait.
        let holding = asked.filter(|_| matches!(status.as_u16(), 429 | 503));
        let elsewhere = (holding.is_some() && !own).then(|| reply.url.clone());
        let sent = self.sent_with(grant, url, &reply.url);
        let err = status_error(&self.transport, &mut reply, self.mirror, &sent).await;
        let read = RefusalRead {
            status,
            asked,
            out_of_quota,
            own,
            holding,
            elsewhere,
        };
        (read, err)
    }

    /// Holds every request to the server that asked for a pause it may wait out: this
    /// host, or the redirect's target that asked. One past the longest wait fails this
    /// request at once, and pauses no other for that long.
    fn hold_off(&self, answer: &RefusalRead, policy: &RetryPolicy) {
        match (
            answer.holding.filter(|d| *d <= policy.max_delay),
            &answer.elsewhere,
        ) {
            (Some(asked), Some(target)) => self.transport.pause_origin(target, asked),
            (Some(asked), None) => self.pause.pause_for(asked),
            (None, _) => {}
        }
    }

    /// `err` counted on the registry's outage with the ticket `t` of the request sent for
    /// all; `Err` when that ends the request.
    fn outage_counted(
        &self,
        t: Ticket<'_>,
        err: Error,
        a: &Attempts<'_>,
        answer: &RefusalRead,
    ) -> Result<Error> {
        // Ended late to an outage, with retries left: its answer's pause was not
        // waited out either, as after a last attempt (`Next::Spent`), and holds the
        // requests sent after it, as any other answer's does: the next object's,
        // sent at once, met the server before the pause it asked for was over.
        // Held before this request's own verdict: on its last attempt (always, with
        // `--retries 0`) it fails, but the server's pause holds every request to it,
        // where each other task drew a 429 of its own.
        let spent = (*a.retries, a.max_retries);
        self.outage_failed(t, err, a.url, a.policy, a.came, spent)
            .map_err(|e| {
                self.hold_off(answer, a.policy);
                let last = answer.asked.or_else(|| e.retry_after());
                e.with_retry_after(last)
            })
    }

    /// `err`, unless its words end the request for good (`Err`): an expired password, or
    /// a spent quota.
    async fn refused_for_good(
        &self,
        answer: &RefusalRead,
        err: Error,
        grant: &Grant,
        url: &Uri,
    ) -> Result<Error> {
        // ECR's words for a password past its 12 hours: credentials refused, as a 401
        // says, and not a repository policy's 403, which names the action refused.
        if answer.status == StatusCode::FORBIDDEN
            && answer.own
            && err.message().contains("authorization token has expired")
        {
            if let Some(refused) = self.auth.expired(grant, err.message()).await {
                return Err(refused.with_url(url));
            }
        }
        // A spent quota (Docker Hub's pull limit) refills over hours and says so
        // without a `Retry-After`: retries would only spend requests, which Docker
        // Hub has counted against the quota too. Its words tell it where its headers
        // are missing (a HEAD's answer has no body, a proxy may drop headers).
        if answer.status == StatusCode::TOO_MANY_REQUESTS
            && answer.asked.is_none()
            && (answer.out_of_quota || err.message().contains("pull rate limit"))
        {
            let advice = self.auth.quota_advice(grant).await;
            return Err(err.with_note(advice).with_url(url));
        }
        Ok(err)
    }

    /// `err`, noted when the registry refused the tokens its token server just issued
    /// (after `auth_rounds` renewed), which it then remembers.
    fn spurned_noted(
        &self,
        answer: &RefusalRead,
        err: Error,
        grant: &Grant,
        verdict: &Verdict,
        auth_rounds: u32,
    ) -> Error {
        let rounds_spent = answer.status == StatusCode::UNAUTHORIZED
            && auth_rounds >= MAX_AUTH_ROUNDS
            && grant.sends(b"Bearer");
        if rounds_spent {
            self.auth.spurned(grant, &verdict.challenges);
        }
        if !(rounds_spent || verdict.spurned) {
            return err;
        }
        // Its own words ask for authentication, which was sent: a registry that
        // does not take its token server's tokens (a signing key they do not
        // share) reads like a missing login otherwise.
        err.with_note(format!(
            "it refused {MAX_AUTH_ROUNDS} tokens in a row, each just issued by its \
             token server"
        ))
    }
}

/// One request's attempts on a host ([`Host::request`]): what they go by, and where
/// they stand.
struct Attempts<'a> {
    policy: &'a RetryPolicy,
    url: &'a Uri,
    headers: &'a HeaderMap,
    /// The failures counted against `max_retries` so far (see [`Host::request`]).
    retries: &'a mut u32,
    max_retries: u32,
    auth_rounds: u32,
    resent: bool,
    /// Whether this request came to the registry in an outage of more rounds than it
    /// may be asked for: then, while that outage lasts, one failure of its own ends it
    /// (`outage_over`). One that came before has met each round since as one of its
    /// retries, and spends them.
    came: Option<Came>,
    /// The token requests whose failures this request took: its retry takes a later
    /// one's, made for all, rather than ask once more.
    /// Dropped with the request, it gives back a refused token it was to send once more.
    tries: RequestTries<'a>,
    /// The ticket of the request sent for all, kept through the credentials it renews
    /// after a 401 or a 403 (see `Verdict::reauth`).
    kept: Option<Ticket<'a>>,
    /// A sleep before the next attempt ([`Outage::sleep_out`]), which keeps the outage
    /// it met remembered until this request came to the host again: only a request
    /// that will ask again is waited for, never one that gave up or was stopped
    /// asleep, and for as long as it sleeps, a `Retry-After` past its backoff included.
    asleep: Option<Asleep<'a>>,
}

impl<'a> Attempts<'a> {
    /// How long to wait before trying again after `e` (counting the retry), or `e` with
    /// the URL, saying why, when it is not worth another attempt (the rule is the
    /// policy's, [`RetryPolicy::next`]). `asked` is read off the response; an error
    /// from elsewhere (a token server's) carries its own.
    fn again(&mut self, e: Error, asked: Option<Duration>) -> Result<Duration> {
        let (policy, retries, max_retries) = (self.policy, &mut *self.retries, self.max_retries);
        let e = match policy.next(&e, *retries, max_retries, asked) {
            Next::Retry(wait) => {
                tracing::debug!(url = %crate::transport::redact(self.url), error = %e, retry = *retries + 1, wait_ms = wait.as_millis() as u64, "retrying");
                *retries += 1;
                return Ok(wait);
            }
            Next::Permanent => e,
            // Carrying the wait asked for: a caller counting retries of its own (a
            // mirror's parts together) must not ask again either.
            Next::WaitsTooLong(d) => {
                waits_too_long(e, d, policy.max_delay).with_retry_after(Some(d))
            }
            // The last answer's pause was not waited out (no attempt came after it):
            // a caller that tries again later must not come back before it ends.
            Next::Spent => {
                let last = asked.or_else(|| e.retry_after());
                e.with_attempts(*retries + 1).with_retry_after(last)
            }
        };
        Err(e.with_url(self.url))
    }

    /// Sleeps out the wait before the next attempt after `e`, the outage it met
    /// remembered meanwhile (see `asleep`), or ends the request with `e`.
    async fn wait_out(
        &mut self,
        outage: &'a Outage,
        e: Error,
        asked: Option<Duration>,
    ) -> Result<()> {
        let wait = self.again(e, asked)?;
        self.asleep = outage.sleep_out(wait).await;
        Ok(())
    }
}

/// The request's turn under the registry's outage ([`Host::turn`]).
enum Turn<'a> {
    /// Send it, with the ticket to settle with its outcome, if any.
    Send(Option<Ticket<'a>>),
    /// A failure was waited out: the attempt starts over.
    Waited,
}

/// What an answer says of the credentials sent ([`Host::verdict`]).
struct Verdict {
    /// The host's own 401's challenges.
    challenges: Vec<String>,
    /// The registry refused its token server's tokens before, and does again.
    spurned: bool,
    /// The request goes again with credentials renewed: a 401 this request answers
    /// with credentials (a token renewed) says nothing yet of the registry's outage: the
    /// request sent for all stays that, and the others wait for its next answer. Taken
    /// for the registry answering, it let every held task go at once with the token just
    /// refused (tokens revoked in an outage: a 401 each, then a 503 each).
    /// So may a 403 to Basic credentials, which are looked up again (ECR's password
    /// past its 12 hours, see `Auth::forbidden`): taken for the registry
    /// answering, it let every held task go at once with the expired password, a
    /// 403 each, then a 503 each with the new one.
    reauth: bool,
}

/// An answer that is no success, its credentials past renewing ([`Host::refused`]).
struct Refused<'a> {
    reply: transport::Reply,
    grant: Grant,
    ticket: Option<Ticket<'a>>,
    verdict: Verdict,
}

/// What an answer that is no success says ([`Host::read_refusal`]).
struct RefusalRead {
    status: StatusCode,
    /// Its `Retry-After`.
    asked: Option<Duration>,
    /// A 429 with no `Retry-After`, its quota's requests left at 0.
    out_of_quota: bool,
    /// From the host itself, not a redirect's target.
    own: bool,
    /// The pause asked for that holds every request to the server (a 429's, a 503's).
    holding: Option<Duration>,
    /// The redirect's target that asked for `holding`, when not this host.
    elsewhere: Option<Uri>,
}

/// What ends a request beside its status and its retries spent ([`Host::request`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ask {
    /// The host is a mirror the registry stands behind: its "come back later" ends the
    /// request, for the next host to serve, instead of holding it.
    pub hands_off: bool,
    /// The host's 500 ends the request at once, its attempts so far recorded on the
    /// error, for the caller to ask elsewhere before it asks again (a digest hinted as a
    /// manifest, which docker-registry answers 500 when it is a blob's). Any other answer
    /// is retried, or not, as ever: a spent quota, a mirror's `Retry-After`, an outage's
    /// turns.
    pub ends_at_500: bool,
}

impl Host {
    /// Counts `e`, a failure of the kind an outage brings, on the host: from the second
    /// round failed in a row on, the host is paused for the least backoff of that round
    /// (capped at the last retry's), which the failed request's own backoff outlasts, so
    /// that the requests arriving meanwhile wait for it; and past as many rounds as one
    /// object may be asked for, `e` ends a request that `came` late to this outage.
    fn outage_failed(
        &self,
        t: Ticket<'_>,
        e: Error,
        url: &Uri,
        policy: &RetryPolicy,
        came: Option<Came>,
        (retries, max_retries): (u32, u32),
    ) -> Result<Error> {
        let (streak, counted) = t.failed(&e);
        if counted && streak >= HOLD_AFTER {
            let pause = policy.least_backoff((streak - 1).min(max_retries.saturating_sub(1)));
            tracing::debug!(host = %self.name, failed_in_a_row = streak, pause_ms = pause.as_millis() as u64, "registry failing; one request at a time for all");
            self.pause.pause_for(pause);
        }
        let late = came.is_some_and(|c| self.outage.late(c));
        outage_over(e, url, streak, late, (retries, max_retries))
    }
}

/// `err`, saying that the server asked for a pause longer than dist waits: without it, a
/// registry's "come back in an hour" reads like any other refusal. And what to do, which
/// is to come back then: the limit is no setting (crane, containerd and regclient have
/// none either), and a run that slept through a quota's hour is better left to whatever
/// runs dist again, which exit status 75 tells to.
fn waits_too_long(err: Error, asked: Duration, limit: Duration) -> Error {
    // Rounded up: a date read by this machine's clock (no `Date` came with it) is a
    // fraction of a second past whole, and "60s, longer than dist waits (60s)" said
    // nothing. Saturating: a number of seconds past what a u64 holds is `Duration::MAX`.
    let asked = Duration::from_secs(
        asked
            .as_secs()
            .saturating_add(u64::from(asked.subsec_nanos() > 0)),
    );
    // A note on the same error, not a new one: its cause, object and the hosts tried
    // first are part of what failed. Written as dist's other messages write durations:
    // whole seconds read a `RetryPolicy::max_delay` of 500 ms as "0 s", and a day as
    // "86400s".
    let (asked, limit) = (Written(asked), Written(limit));
    err.with_note(format_args!(
        "it asks to be retried in {asked}, longer than dist waits ({limit}): try again then"
    ))
}

/// The `WWW-Authenticate` challenges of a 401's `headers`. Not read with `to_str`, which
/// refuses any byte past ASCII: a realm in the server's language (nginx's `auth_basic
/// "Geschützt"`) dropped the whole challenge, and the credentials were never sent.
fn challenges_of(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Retry-After` date read by the local clock is a fraction past whole seconds:
    /// 60.4 s read "asks to be retried in 60s, longer than dist waits (60s)". A long one
    /// is said in hours and minutes, as the options take durations: a day read
    /// "86400s".
    #[test]
    fn a_wait_too_long_is_said_in_seconds_rounded_up() {
        let err = || Error::new(ErrorKind::Http, "registry answered 503").with_status(503);
        let limit = Duration::from_secs(60);
        let said = waits_too_long(err(), Duration::from_millis(60_400), limit);
        assert_eq!(
            said.message(),
            "registry answered 503; it asks to be retried in 1m1s, longer than dist waits (1m): \
             try again then"
        );
        assert_eq!(said.status(), Some(503));
        let said = waits_too_long(err(), Duration::from_secs(86_400), limit);
        assert!(said.message().contains("in 24h, "), "{said}");
        let said = waits_too_long(err(), Duration::from_millis(5_399_600), limit);
        assert!(said.message().contains("in 1h30m, "), "{said}");
        let said = waits_too_long(err(), Duration::MAX, limit);
        assert!(
            said.message().contains(&format!("in {}h", u64::MAX / 3600)),
            "{said}"
        );
    }

    /// A `RetryPolicy::max_delay` of 500 ms was said as "longer than dist waits (0 s)".
    #[test]
    fn a_limit_under_a_second_is_said_as_written() {
        let err = Error::new(ErrorKind::Http, "registry answered 503").with_status(503);
        let said = waits_too_long(err, Duration::from_secs(1), Duration::from_millis(500));
        assert!(
            said.message()
                .ends_with("retried in 1s, longer than dist waits (500ms): try again then"),
            "{said}"
        );
    }

    /// The error was built anew from its kind, message, status and URL: a cause (a token
    /// server's words), the object and the mirrors tried first were lost.
    #[test]
    fn a_wait_too_long_keeps_what_the_error_carried() {
        let err = Error::new(ErrorKind::TooManyRequests, "token server answered 429")
            .with_status(429)
            .with_cause(std::io::Error::other("slow down"))
            .with_object("v1")
            .with_url("http://reg.example/token")
            .with_earlier(vec!["http://m/v2/x: mirror answered 500".into()]);
        let said = waits_too_long(err, Duration::from_secs(3600), Duration::from_secs(60));
        assert_eq!(said.kind(), ErrorKind::TooManyRequests);
        assert_eq!(said.status(), Some(429));
        assert_eq!(said.object(), Some("v1"));
        assert_eq!(said.url(), Some("http://reg.example/token"));
        assert_eq!(said.earlier(), ["http://m/v2/x: mirror answered 500"]);
        assert!(std::error::Error::source(&said).is_some());
        assert_eq!(
            said.reason(),
            "token server answered 429: slow down; it asks to be retried in 1h, longer \
             than dist waits (1m): try again then (tried first: http://m/v2/x: mirror \
             answered 500)"
        );
    }

    /// A mirror skipped for the run because the proxy refused to carry the connection to
    /// it says so when it is the cause of a fetch: "the mirror refused dist" sent the
    /// reader to the mirror's access rules, which never saw the request.
    #[test]
    fn a_mirror_the_proxy_refused_is_said_to_be_the_proxy_s_refusal() {
        for (kind, says) in [
            (
                ErrorKind::ProxyRefused,
                "the proxy refused to carry the connection to the mirror",
            ),
            (ErrorKind::Denied, "the mirror refused dist"),
        ] {
            let m = mirror("https://cache.example", false);
            let e = Error::new(kind, "refused");
            assert!(m.fall_back(&e, Duration::from_secs(1), true));
            let said = m.refusal(false).expect("skipped for the run").to_string();
            assert!(said.contains(says), "{kind:?}: {said}");
            let other = "the mirror refused dist";
            assert_eq!(said.contains(other), kind == ErrorKind::Denied, "{said}");
        }
    }

    fn mirror(url: &str, override_path: bool) -> Host {
        let repo: Repository = "docker.io/library/redis".parse().unwrap();
        let m = Mirror {
            url: url.into(),
            capabilities: Capabilities {
                pull: true,
                resolve: false,
            },
            override_path,
            transport: Transport::new(Default::default()).unwrap(),
            headers: HeaderMap::new(),
        };
        Host::mirror(&m, &repo, CredentialSource::None).unwrap()
    }

    /// Each object's fetch moves a request's future into a box, copied there whole. What
    /// a run does once (a credential lookup, a token request) is boxed where it is
    /// awaited: inline, it made the future 11.4 KiB in a debug build instead of 2.4 KiB,
    /// and the copies cost more instructions than anything else of dist's own per object.
    #[test]
    fn a_request_s_future_leaves_out_what_a_run_does_once() {
        let h = mirror("https://mirror.example", false);
        let url: Uri = "https://mirror.example/v2/".parse().unwrap();
        let headers = HeaderMap::new();
        let policy = RetryPolicy::default();
        let mut retries = 0;
        let budget = h.max_retries(&policy);
        let request = h.request(
            &policy,
            Method::GET,
            url,
            &headers,
            Ask::default(),
            (&mut retries, budget),
        );
        let size = std::mem::size_of_val(&request);
        assert!(size < 4 << 10, "a request's future takes {size} bytes");
    }

    #[test]
    fn mirror_urls_carry_the_namespace() {
        let h = mirror("https://mirror.example:5000", false);
        assert_eq!(
            h.url("library/redis", &["blobs/x"]).unwrap(),
            "https://mirror.example:5000/v2/library/redis/blobs/x?ns=docker.io"
        );
        assert_eq!(
            h.url("library/redis", &["tags/list?n=1"]).unwrap(),
            "https://mirror.example:5000/v2/library/redis/tags/list?n=1&ns=docker.io"
        );
        assert_eq!(
            mirror("http://m.example/prefix/v2", false)
                .url("a", &["b"])
                .unwrap(),
            "http://m.example/prefix/v2/a/b?ns=docker.io"
        );
        assert_eq!(
            mirror("http://m.example/api", true)
                .url("a", &["b"])
                .unwrap(),
            "http://m.example/api/a/b?ns=docker.io"
        );
        assert!(
            !mirror("https://m.example", false).serves(true),
            "no resolve capability"
        );
        // The registry under its own name, listed as a host, and Docker Hub at its API
        // host: no `ns`, as in containerd.
        let repo: Repository = "registry.example/team/app".parse().unwrap();
        let itself = Mirror {
            url: "https://registry.example".into(),
            capabilities: Capabilities::ALL,
            override_path: false,
            transport: Transport::new(Default::default()).unwrap(),
            headers: HeaderMap::new(),
        };
        let h = Host::mirror(&itself, &repo, CredentialSource::None).unwrap();
        assert_eq!(
            h.url("team/app", &["blobs/x"]).unwrap(),
            "https://registry.example/v2/team/app/blobs/x"
        );
        let hub: Repository = "redis".parse().unwrap();
        let transport = Transport::new(Default::default()).unwrap();
        for server in [
            None,
            Some(Server {
                url: "https://registry-1.docker.io".into(),
                capabilities: Capabilities::ALL,
                override_path: false,
            }),
        ] {
            let h = Host::upstream(
                &hub,
                server.as_ref(),
                transport.clone(),
                CredentialSource::None,
            )
            .unwrap();
            assert_eq!(
                h.url("library/redis", &["blobs/x"]).unwrap(),
                "https://registry-1.docker.io/v2/library/redis/blobs/x"
            );
        }
    }

    #[test]
    fn a_moved_registry_keeps_its_path_and_its_capabilities() {
        let repo: Repository = "registry.example/team/app".parse().unwrap();
        let upstream = |url: &str, override_path: bool| {
            let server = Server {
                url: url.into(),
                capabilities: Capabilities {
                    pull: true,
                    resolve: false,
                },
                override_path,
            };
            let transport = Transport::new(Default::default()).unwrap();
            Host::upstream(&repo, Some(&server), transport, CredentialSource::None)
        };
        for (url, override_path, want) in [
            (
                "https://cache.example:5000",
                false,
                "https://cache.example:5000/v2/",
            ),
            (
                "http://cache.example/docker/",
                false,
                "http://cache.example/docker/v2/",
            ),
            (
                "http://cache.example/docker/v2",
                false,
                "http://cache.example/docker/v2/",
            ),
            (
                "http://cache.example/api",
                true,
                "http://cache.example/api/",
            ),
        ] {
            let host = upstream(url, override_path).unwrap();
            assert_eq!(
                host.url("team/app", &["blobs/", "x"]).unwrap().to_string(),
                format!("{want}team/app/blobs/x?ns=registry.example"),
                "{url}: a moved registry is told which one it serves"
            );
            assert!(host.serves(false) && !host.serves(true), "pull only");
            assert!(!host.mirror);
        }
        assert_eq!(
            upstream("https://cache.example:5000", false).unwrap().name,
            "cache.example:5000"
        );
        assert_eq!(
            origin_of("https://cache.example:5000/docker/v2/"),
            "https://cache.example:5000"
        );
        assert_eq!(origin_of("http://[::1]:5000/v2/"), "http://[::1]:5000");
        assert!(upstream("ftp://cache.example", false).is_err());
    }

    /// A mirror of Docker Hub's `redis` at `url`.
    fn try_mirror(url: &str) -> Result<Host> {
        let m = Mirror {
            url: url.into(),
            capabilities: Capabilities::ALL,
            override_path: false,
            transport: Transport::new(Default::default()).unwrap(),
            headers: HeaderMap::new(),
        };
        Host::mirror(&m, &"redis".parse().unwrap(), CredentialSource::None)
    }

    #[test]
    fn bad_mirror_urls_are_refused() {
        for url in ["ftp://m.example", "m.example", ""] {
            assert!(try_mirror(url).is_err(), "{url}");
        }
    }

    /// A library's `Mirror` or `Server` with `user:password@` in its URL (the command line
    /// and hosts files refuse it) took the password into the host's name: into messages
    /// (`docker login user:pw@…`) and logs, and credentials were never taken from it.
    #[test]
    fn a_url_with_credentials_is_refused_without_showing_them() {
        for url in [
            "https://user:s3cret@mirror.example",
            "http://user:s3cret@[::1]:5000/cache",
            // A password pasted unencoded with a '/' in it.
            "https://user:s3/cret@mirror.example",
            "http://user:s3/cret@[::1]:5000/cache",
        ] {
            let e = try_mirror(url).err().expect(url).to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("credentials do not go here"), "{e}");
            let server = Server::new(url);
            let transport = Transport::new(Default::default()).unwrap();
            let repo: Repository = "registry.example/team/app".parse().unwrap();
            let e = Host::upstream(&repo, Some(&server), transport, CredentialSource::None)
                .err()
                .expect(url)
                .to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(!e.contains("cret"), "{e}");
            assert!(e.contains("credentials do not go here"), "{e}");
        }
    }

    /// A library's `Mirror` or `Server` with a query in its URL (`?token=…`, which the
    /// command line refuses) was asked at its path alone, the query dropped without a
    /// word: a mirror that needs it fails and is passed over for the registry.
    #[test]
    fn a_url_with_a_query_is_refused_without_showing_it() {
        for url in [
            "https://mirror.example/cache?token=s3cret",
            "http://[::1]:5000?s3cret",
        ] {
            let e = try_mirror(url).err().expect(url);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            let e = e.to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.starts_with("invalid mirror"), "{e}");
            assert!(e.contains("a query would never be sent"), "{e}");
            let server = Server::new(url);
            let transport = Transport::new(Default::default()).unwrap();
            let repo: Repository = "registry.example/team/app".parse().unwrap();
            let e = Host::upstream(&repo, Some(&server), transport, CredentialSource::None)
                .err()
                .expect(url);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            let e = e.to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.starts_with("invalid registry server"), "{e}");
            assert!(e.contains("a query would never be sent"), "{e}");
        }
    }

    /// A fragment (`#…`) is never sent either: it was dropped without a word.
    #[test]
    fn a_url_with_a_fragment_is_refused() {
        let e = try_mirror("https://mirror.example/cache#v2").err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(
            e.to_string().contains("a fragment (`#…`) is never sent"),
            "{e}"
        );
        let server = Server::new("https://registry.example/#v2");
        let transport = Transport::new(Default::default()).unwrap();
        let repo: Repository = "registry.example/team/app".parse().unwrap();
        let e = Host::upstream(&repo, Some(&server), transport, CredentialSource::None)
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("a fragment (`#…`) is never sent"),
            "{e}"
        );
    }

    #[test]
    fn a_mirror_s_bare_ipv6_address_is_refused_with_its_bracketed_spelling() {
        for (url, want) in [
            ("http://::1:5000", "[::1]:5000"),
            ("https://fd00::5/cache", "[fd00::5]"),
        ] {
            let e = try_mirror(url).err().expect(url);
            assert!(
                e.to_string()
                    .ends_with(&format!("brackets, as in URLs: {want}")),
                "{url}: {e}"
            );
        }
    }
}
