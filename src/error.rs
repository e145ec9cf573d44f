//! The one error type of the crate.
//!
//! Every failure carries a [`ErrorKind`] that callers can match on, plus what a person needs
//! to act on it: the object being fetched, the URL that was asked, the HTTP status, and the
//! underlying cause. The CLI turns this into one line on stderr; the library never prints.

use std::fmt;

/// What went wrong, as a category callers can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A locator, reference, object, hint or input line is malformed. Never retried.
    InvalidInput,
    /// The registry does not have the object (404, `BLOB_UNKNOWN`, `MANIFEST_UNKNOWN`).
    NotFound,
    /// Authentication failed or no credentials were accepted (401 after the challenge), or
    /// the proxy refused its credentials (407, a SOCKS proxy's login).
    Unauthorized,
    /// Authenticated, but the registry refuses access (403); a proxy's refusal is
    /// [`ProxyRefused`](Self::ProxyRefused).
    Denied,
    /// The proxy the connection goes through refused to carry it, by its rules or because
    /// it cannot (a `CONNECT` answered 403, 405, 501 or another status that is not for
    /// the moment; a SOCKS proxy's rules, or a command or address type it does not
    /// support). Nothing the registry said: retrying cannot cure it, only the proxy's
    /// configuration, or the proxy chosen (`HTTPS_PROXY`, `NO_PROXY`), can. A proxy's
    /// 407 (its credentials) is [`Unauthorized`](Self::Unauthorized), a proxy that
    /// cannot reach the registry for the moment (502, 503, 504) is
    /// [`Connect`](Self::Connect), and one throttling its clients (429)
    /// [`TooManyRequests`](Self::TooManyRequests). Never retried.
    ProxyRefused,
    /// The registry throttled us (429) beyond the retry budget.
    TooManyRequests,
    /// The server answered with an unexpected status (5xx after retries, or anything else).
    Http,
    /// The TCP or TLS connection could not be made, or it broke.
    Connect,
    /// The host's name does not exist (the resolver says so, rather than failing for the
    /// moment). Never retried: a mistyped registry fails at once, as with curl or docker.
    UnknownHost,
    /// The server's TLS certificate is not trusted for its name (unknown issuer, expired,
    /// another name). Never retried: it will not change by itself.
    Certificate,
    /// The server answered the TLS handshake in plain HTTP: a registry without TLS, named
    /// without `http://` ([`Repository::force_plain_http`](crate::Repository::force_plain_http),
    /// the CLI's `--plain-http`); or, the other way round, a TLS server
    /// answered a plain-HTTP request saying that it speaks TLS. Never retried.
    NotTls,
    /// The server and dist have no TLS version or cipher suite in common (a server that
    /// speaks only TLS 1.0 or 1.1, or offers only CBC suites). Never retried.
    TlsIncompatible,
    /// A connect, idle-read or total timeout expired.
    Timeout,
    /// The server broke the protocol: a malformed header, token response or redirect.
    Protocol,
    /// The content does not hash to the digest it was asked for or announced with.
    DigestMismatch,
    /// The content is not the size it was declared or expected to be.
    SizeMismatch,
    /// The content is larger than the limit for its kind (manifests: 4 MiB).
    TooLarge,
    /// A local file or stream operation failed.
    Io,
    /// The operation was cancelled (signal or shutdown).
    Interrupted,
}

impl ErrorKind {
    /// Short lowercase name, used in reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::NotFound => "not found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Denied => "denied",
            ErrorKind::ProxyRefused => "proxy refused",
            ErrorKind::TooManyRequests => "too many requests",
            ErrorKind::Http => "http error",
            ErrorKind::Connect => "connection error",
            ErrorKind::UnknownHost => "unknown host",
            ErrorKind::Certificate => "certificate error",
            ErrorKind::NotTls => "not tls",
            ErrorKind::TlsIncompatible => "tls incompatible",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::DigestMismatch => "digest mismatch",
            ErrorKind::SizeMismatch => "size mismatch",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Io => "i/o error",
            ErrorKind::Interrupted => "interrupted",
        }
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error with its kind, context and cause.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: String,
    /// Where the notes ([`Error::with_note`]) begin in `message`: the cause's words go
    /// before them, being the rest of what failed, not of what to do about it.
    notes_at: Option<usize>,
    /// How long the words put before the message ([`Error::met_after`]) are: another
    /// failure's, in which the cause's words are not looked for.
    lead: usize,
    object: Option<String>,
    url: Option<String>,
    status: Option<u16>,
    /// How long the server asked to be left alone (`Retry-After`), where that is not
    /// read off the response by the one who asked (a token server's answer).
    retry_after: Option<std::time::Duration>,
    /// Shared, not owned: the same failure said again ([`Error::shared`]) keeps the chain
    /// a caller walks with `source()`, which no cause can be copied for.
    cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>>,
    /// How many attempts were made in a row before giving up, when retries were spent.
    attempts: u32,
    /// The failures in a row so far, when the content broke part-way and cannot be
    /// resumed, but a caller that let none of it go may fetch it again from the start.
    restart: Option<u32>,
    /// The host's own 500 ended the request, as its caller asked ([`Self::ended_at_500`]).
    ended_at_500: bool,
    /// How the hosts asked before this one (mirrors) failed, each as URL and reason.
    earlier: Vec<String>,
    /// For content refused before it was read: the size given, and the size the server
    /// declared instead.
    sizes: Option<(u64, u64)>,
    /// For content whose length did not match the size given, with no size declared (a
    /// chunked body): the size given, and the bytes sent (`None`: more than given).
    sent: Option<(u64, Option<u64>)>,
    /// For content refused unread because the `Docker-Content-Digest` of the answer
    /// named other content: nothing of it "did not verify".
    announced_other: bool,
    /// The mirror (`mirror <host:port>`) that declared or sent the size of `sizes` or
    /// `sent`, or announced the other content of `announced_other`; `None` for the
    /// registry.
    sized_by: Option<String>,
    /// The fetch once more goes past the mirror of `sized_by` to the registry itself,
    /// which may pull the content (see [`Error::registry_next`]).
    registry_next: bool,
    /// The failure is of how the server is set up to speak to clients, not of the object
    /// asked ([`Error::is_server_setup`]).
    server_setup: bool,
    /// The repository (`host/team/app`) and object a registry API URL pasted as the
    /// locator names, when a note tells them in `dist fetch`'s spelling
    /// ([`Error::with_api_url_note`]).
    api_url_meant: Option<(String, String)>,
    /// The codes of the registry's OCI `errors` in the answer (`BLOB_UNKNOWN`,
    /// `NAME_UNKNOWN`): which of the things a 404 may lack is missing.
    codes: Vec<String>,
    /// Where the login the server refused came from (a config file, a helper): `None`
    /// for a refusal of a request that carried no login of dist's.
    login_from: Option<String>,
    /// Where the login kept back from a token service came from, when that service then
    /// refused the anonymous token asked for instead: `None` unless dist had one.
    login_kept_back: Option<String>,
    /// Where the login found came from and what it is (`an identity token`), when the
    /// server's challenge asks for a scheme that cannot send it: `None` otherwise.
    login_unsendable: Option<(String, &'static str)>,
    /// The answer is a redirect target's, on another origin than the host asked, which
    /// the host's login never goes to ([`Error::is_at_redirect_target`]).
    at_redirect_target: bool,
    /// The answer is a token service's, which the host's configured headers never go to
    /// ([`Error::is_at_token_service`]).
    at_token_service: bool,
    /// The refusal is a proxy's, of its own credentials (a 407, a SOCKS proxy's), not
    /// the server's ([`Error::is_proxy_login`]).
    proxy_login: bool,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            notes_at: None,
            lead: 0,
            object: None,
            url: None,
            status: None,
            retry_after: None,
            cause: None,
            attempts: 0,
            restart: None,
            ended_at_500: false,
            earlier: Vec::new(),
            sizes: None,
            announced_other: false,
            sized_by: None,
            registry_next: false,
            server_setup: false,
            sent: None,
            api_url_meant: None,
            codes: Vec::new(),
            login_from: None,
            login_kept_back: None,
            login_unsendable: None,
            at_redirect_target: false,
            at_token_service: false,
            proxy_login: false,
        }))
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// Attach the underlying cause.
    pub fn with_cause(mut self, cause: impl Into<Cause>) -> Self {
        self.0.cause = Some(std::sync::Arc::from(cause.into()));
        self
    }

    /// Attach the URL that was being requested, or the path of a file read in its place
    /// (an `oci:` layout's blob); an earlier one is kept. A URL's query and any user
    /// information are dropped: pre-signed URLs carry credentials there. A path (no
    /// `scheme://`) is shown as it is, since a `?` or `@` in it is part of a name.
    pub fn with_url(mut self, url: impl fmt::Display) -> Self {
        if self.0.url.is_none() {
            let url = url.to_string();
            self.0.url = Some(if url.contains("://") {
                redact_url(&url)
            } else {
                crate::server_text::cut_to(url, MAX_URL_SHOWN)
            });
        }
        self
    }

    /// The URL `url` in place of the one attached: a failure another request met, for
    /// the request that shares it.
    pub(crate) fn for_url(mut self, url: impl fmt::Display) -> Self {
        self.0.url = None;
        self.with_url(url)
    }

    /// Attach the object (tag or digest) being fetched; an earlier object is kept.
    pub fn with_object(mut self, object: impl fmt::Display) -> Self {
        if self.0.object.is_none() {
            self.0.object = Some(object.to_string());
        }
        self
    }

    /// Adds what the user may do about it to the message, after a `;`.
    pub fn with_note(mut self, note: impl fmt::Display) -> Self {
        self.0.notes_at.get_or_insert(self.0.message.len());
        self.0.message = format!("{}; {note}", self.0.message);
        self
    }

    /// The same failure, its message after `words`: what it was met doing (a body's
    /// resume, after the break that asked for it). Everything else stays as `self` said it
    /// (status, `Retry-After`, attempts, sizes, cause, notes), for callers to match on.
    pub(crate) fn met_after(mut self, words: impl fmt::Display) -> Self {
        let words = words.to_string();
        self.0.notes_at = self.0.notes_at.map(|at| at + words.len());
        self.0.lead += words.len();
        self.0.message.insert_str(0, &words);
        self
    }

    /// Adds the note that tells the locator and object meant when a registry API URL was
    /// pasted as the locator (`host/v2/team/app`): `repository` (`host/team/app`) and
    /// `object`, in `dist fetch`'s spelling; [`Self::spelt_as_reference`] respells it.
    pub(crate) fn with_api_url_note(mut self, repository: String, object: String) -> Self {
        self = self.with_note(api_url_note(&repository, &object, false));
        self.0.api_url_meant = Some((repository, object));
        self
    }

    /// The same error, with its note on a pasted registry API URL (if any) spelt as a
    /// reference (`host/team/app:v1`), for commands that take one (`dist pull`, `dist
    /// resolve`) and refuse the locator and object `dist fetch` takes.
    pub fn spelt_as_reference(mut self) -> Self {
        if let Some((repository, object)) = &self.0.api_url_meant {
            let fetch = api_url_note(repository, object, false);
            let reference = api_url_note(repository, object, true);
            self.0.message = self.0.message.replace(&fetch, &reference);
        }
        self
    }

    /// Attach the HTTP status the server answered with.
    pub fn with_status(mut self, status: u16) -> Self {
        self.0.status = Some(status);
        self
    }

    /// Records the codes of the registry's OCI `errors` in the answer.
    pub(crate) fn with_codes(mut self, codes: Vec<String>) -> Self {
        self.0.codes = codes;
        self
    }

    /// The codes of the registry's OCI `errors` in the answer, empty when it named none.
    pub(crate) fn codes(&self) -> &[String] {
        &self.0.codes
    }

    /// Records how the hosts asked before this error's host failed (the mirrors tried
    /// first), so the final message does not hide why they could not serve the object.
    pub fn with_earlier(mut self, failures: Vec<String>) -> Self {
        self.0.earlier = failures;
        self
    }

    /// Puts `before`, how hosts asked before any this error names failed, ahead of
    /// those it names: the mirrors that failed before another host answered, for an error
    /// of that answer's body.
    pub(crate) fn with_tried_first(mut self, before: &[String]) -> Self {
        if !before.is_empty() {
            let later = std::mem::take(&mut self.0.earlier);
            self.0.earlier = before.iter().cloned().chain(later).collect();
        }
        self
    }

    /// How the hosts asked first failed (URL and reason each), oldest first.
    pub fn earlier(&self) -> &[String] {
        &self.0.earlier
    }

    /// Records that the request or body failed this many times in a row: after retries,
    /// the last failure alone reads as if none had been made.
    pub(crate) fn with_attempts(mut self, attempts: u32) -> Self {
        self.0.attempts = attempts;
        self
    }

    /// How many attempts were made in a row, when recorded ([`Self::with_attempts`]); 0
    /// otherwise.
    pub(crate) fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// Marks the 500 the host itself answered that ended a request asked to end there
    /// (see [`Self::ended_at_500`]).
    pub(crate) fn ending_at_500(mut self) -> Self {
        self.0.ended_at_500 = true;
        self
    }

    /// Whether the host's own 500 ended the request, asked to end there (a digest hinted
    /// as a manifest, which docker-registry answers 500 when it names a blob): not a
    /// token server's 500 or a redirect target's, which say nothing of the object, and
    /// which the request retried as any failure.
    pub(crate) fn ended_at_500(&self) -> bool {
        self.0.ended_at_500
    }

    /// Marks a break of content that cannot be resumed (a tag the registry announced no
    /// digest for, a body a server coded) after `failures` failures in a row, with
    /// retries left: see
    /// [`restart`](Self::restart).
    pub(crate) fn restartable(mut self, failures: u32) -> Self {
        self.0.restart = Some(failures);
        self
    }

    /// When the content's body broke part-way and could not be resumed (a tag the
    /// registry announced no digest for may name other content by the time the rest is
    /// asked for; a range of a body a server coded addresses coded bytes), but retries
    /// are left: the failures in a row so far. A caller that let
    /// none of what arrived go (held it back, or kept it apart) may fetch the whole
    /// content again with [`Hints::after_failures`](crate::Hints::after_failures), which
    /// counts them against that fetch's retries. `None` for any other failure, and once
    /// the retries are spent.
    pub fn restart(&self) -> Option<u32> {
        self.0.restart
    }

    /// Records that the content was refused before a byte of it was read, the server
    /// declaring `declared` bytes where `given` were expected (a `size:` hint, a
    /// descriptor's `size`).
    pub(crate) fn with_sizes(mut self, given: u64, declared: u64) -> Self {
        self.0.sizes = Some((given, declared));
        self
    }

    /// Records the mirror that declared or sent the size of [`Self::with_sizes`] or
    /// [`Self::with_sent`] (`mirror <host:port>`); `None`, the registry.
    pub(crate) fn sized_by(mut self, mirror: Option<String>) -> Self {
        self.0.sized_by = mirror;
        self
    }

    /// Records that the fetch once more after this error goes past the mirror of
    /// [`Self::sized_by`] to the registry itself, which may pull the content. A size a
    /// mirror declared in its answer's head stands only where no host comes after it (the
    /// next is asked instead); a body it sent, found the wrong length only at its end,
    /// stands whatever comes after.
    pub(crate) fn registry_next(mut self, next: bool) -> Self {
        self.0.registry_next = next;
        self
    }

    /// See [`Self::registry_next`].
    pub(crate) fn is_registry_next(&self) -> bool {
        self.0.registry_next
    }

    /// The mirror that declared or sent the size of [`Self::sizes`] or [`Self::sent`];
    /// `None` for the registry.
    pub(crate) fn sizing_mirror(&self) -> Option<&str> {
        self.0.sized_by.as_deref()
    }

    /// For a [`SizeMismatch`](ErrorKind::SizeMismatch) found in the server's answer before
    /// any content was read: the size given (a `size:` hint, a descriptor's `size`) and
    /// the size the server declared instead. Such content never "did not verify": the
    /// size given may as well be what is wrong.
    pub fn sizes(&self) -> Option<(u64, u64)> {
        self.0.sizes
    }

    /// Records that the content was refused before a byte of it was read, the answer's
    /// `Docker-Content-Digest` naming other content.
    pub(crate) fn announcing_other(mut self) -> Self {
        self.0.announced_other = true;
        self
    }

    /// What [`Self::announcing_other`] recorded.
    pub(crate) fn announced_other(&self) -> bool {
        self.0.announced_other
    }

    /// Records that the failure is of the server's setup, which every request to it meets
    /// whatever the object ([`Self::is_server_setup`]).
    pub(crate) fn of_server_setup(mut self) -> Self {
        self.0.server_setup = true;
        self
    }

    /// Whether the failure is of how the server (or a proxy or load balancer before it) is
    /// set up to speak to clients, not of the object asked or of a moment: it chose
    /// HTTP/2 by ALPN and answered in HTTP/1.1, or its token service challenges or answers
    /// in a way no token comes of (no realm, a realm that is no URL, an answer without a
    /// token). Every request to it fails so, whatever the object, until its configuration
    /// changes: the CLI exits 2 for it, as for an untrusted certificate. An
    /// [`ErrorKind::Protocol`] failure without it is of one answer (its head, codings,
    /// range, redirect or content), which other objects' answers may not share.
    pub fn is_server_setup(&self) -> bool {
        self.0.server_setup
    }

    /// Records that content sent with no size declared (a chunked body) did not have the
    /// size given, `given` bytes: it had `sent` (`None`: more than `given`).
    pub(crate) fn with_sent(mut self, given: u64, sent: Option<u64>) -> Self {
        self.0.sent = Some((given, sent));
        self
    }

    /// What [`Error::with_sent`] recorded.
    pub(crate) fn sent(&self) -> Option<(u64, Option<u64>)> {
        self.0.sent
    }

    /// Attach where the login the server refused came from (`origin`: a config file, a
    /// helper), for a refusal of credentials dist sent.
    pub(crate) fn with_login_from(mut self, origin: &str) -> Self {
        self.0.login_from = Some(origin.to_string());
        self
    }

    /// Where the login the server refused came from; `None` when the refused request
    /// carried none (anonymous, or the credentials found were kept back).
    pub(crate) fn login_from(&self) -> Option<&str> {
        self.0.login_from.as_deref()
    }

    /// Attach where the login kept back from a token service came from (`origin`), for
    /// that service's refusal of the anonymous token asked for instead.
    pub(crate) fn with_login_kept_back(mut self, origin: &str) -> Self {
        self.0.login_kept_back = Some(origin.to_string());
        self
    }

    /// Where the login kept back from the token service that refused the anonymous token
    /// came from; `None` when no login was found, or one was sent.
    pub(crate) fn login_kept_back(&self) -> Option<&str> {
        self.0.login_kept_back.as_deref()
    }

    /// Attach where the login found came from (`origin`) and what it is (`what`: `an
    /// identity token`), for a challenge in a scheme that cannot send it.
    pub(crate) fn with_login_unsendable(mut self, origin: &str, what: &'static str) -> Self {
        self.0.login_unsendable = Some((origin.to_string(), what));
        self
    }

    /// Where the login found came from and what it is, when the challenge's scheme could
    /// not send it; `None` when none was found, or it was sent.
    pub(crate) fn login_unsendable(&self) -> Option<(&str, &'static str)> {
        let (origin, what) = self.0.login_unsendable.as_ref()?;
        Some((origin, what))
    }

    /// Mark an answer as a redirect target's, on another origin than the host asked.
    pub(crate) fn at_redirect_target(mut self) -> Self {
        self.0.at_redirect_target = true;
        self
    }

    /// Whether the answer is a redirect target's on another origin, which the login of
    /// the host that redirected there was kept from.
    pub(crate) fn is_at_redirect_target(&self) -> bool {
        self.0.at_redirect_target
    }

    /// Mark an answer as a token service's, not the host's own API's.
    pub(crate) fn at_token_service(mut self) -> Self {
        self.0.at_token_service = true;
        self
    }

    /// Whether the answer is a token service's: on the host's own origin, even under its
    /// API root (Quay's `/v2/auth`), it got none of the headers the host's requests carry.
    pub(crate) fn is_at_token_service(&self) -> bool {
        self.0.at_token_service
    }

    /// Mark a refusal as a proxy's, of the credentials it was given or wants.
    pub(crate) fn of_proxy_login(mut self) -> Self {
        self.0.proxy_login = true;
        self
    }

    /// Whether the refusal is a proxy's, of its own credentials (a 407, a SOCKS proxy's):
    /// the server behind it asked for nothing.
    pub(crate) fn is_proxy_login(&self) -> bool {
        self.0.proxy_login
    }

    /// Attach how long the server asked to be left alone (its `Retry-After`).
    pub(crate) fn with_retry_after(mut self, after: Option<std::time::Duration>) -> Self {
        self.0.retry_after = after;
        self
    }

    /// How long the server asked to be left alone (`Retry-After`) in the answer that ended
    /// the request, a pause nobody has waited out: a 429 or 503 (or a token server's
    /// refusal) asking for longer than the [`RetryPolicy`](crate::retry::RetryPolicy)'s
    /// `max_delay`, which the remote did not sleep through (it failed at once), or the
    /// answer to the last attempt, after which no retry was left (or none was made: an
    /// object late to an outage of the registry's is asked once). A service that tries the
    /// object again later waits at least this long, counted from when the error came back.
    /// `None` when that answer asked for no pause (pauses asked for by earlier answers were
    /// waited out before the next attempt), or the failure was no answer at all (a broken
    /// connection, a timeout): then the service's own backoff decides.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.0.retry_after
    }

    /// A spawned task of `what` ("fetch", "part") that did not end as it should: a panic,
    /// a local fault that "ended abnormally" ([`Io`](ErrorKind::Io)), the panic's message
    /// under the cause; or cancelled at the runtime's shutdown, which says so
    /// ([`Interrupted`](ErrorKind::Interrupted)): worded as a panic, it sent a user looking
    /// for a bug where dist had been stopped. The runtime may be a library caller's, so the
    /// message names the runtime, not dist.
    pub(crate) fn task_ended(what: &str, e: tokio::task::JoinError) -> Error {
        if e.is_cancelled() {
            return Error::new(
                ErrorKind::Interrupted,
                format!("{what} task was cancelled: its runtime was shutting down"),
            );
        }
        Error::new(ErrorKind::Io, format!("{what} task ended abnormally")).with_cause(e)
    }

    /// The same failure, for another task that waited on the request that met it, or for
    /// a caller that asks a failed download again: everything a caller matches on (kind,
    /// status, `Retry-After`, object, URL, the [`restart`](Self::restart) mark, the hosts
    /// tried first), the same message and reason, and the same cause under `source()`.
    pub(crate) fn shared(&self) -> Error {
        Error(Box::new(Inner {
            kind: self.0.kind,
            message: self.0.message.clone(),
            notes_at: self.0.notes_at,
            lead: self.0.lead,
            object: self.0.object.clone(),
            url: self.0.url.clone(),
            status: self.0.status,
            retry_after: self.0.retry_after,
            cause: self.0.cause.clone(),
            attempts: self.0.attempts,
            restart: self.0.restart,
            ended_at_500: self.0.ended_at_500,
            earlier: self.0.earlier.clone(),
            sizes: self.0.sizes,
            announced_other: self.0.announced_other,
            sized_by: self.0.sized_by.clone(),
            registry_next: self.0.registry_next,
            server_setup: self.0.server_setup,
            sent: self.0.sent,
            api_url_meant: self.0.api_url_meant.clone(),
            codes: self.0.codes.clone(),
            login_from: self.0.login_from.clone(),
            login_kept_back: self.0.login_kept_back.clone(),
            login_unsendable: self.0.login_unsendable.clone(),
            at_redirect_target: self.0.at_redirect_target,
            at_token_service: self.0.at_token_service,
            proxy_login: self.0.proxy_login,
        }))
    }

    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The URL being requested when it happened, if any.
    pub fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }

    /// The object being fetched when it happened, if any.
    pub fn object(&self) -> Option<&str> {
        self.0.object.as_deref()
    }

    /// The HTTP status that caused it, if any.
    pub fn status(&self) -> Option<u16> {
        self.0.status
    }

    /// The description as it was made: without object, URL, cause, attempts or the hosts
    /// tried first, and with settings by their library names whatever
    /// [`name_settings`](crate::setting::name_settings) said. To show a person, use
    /// `Display`, [`reason`](Self::reason) or [`detail`](Self::detail).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Whether content arrived but is not what was asked for (wrong digest or size): worth
    /// one more fetch from the origin (see [`Hints::for_attempt`](crate::Hints::for_attempt)),
    /// since a mirror or a cache on the way may hold a bad copy.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::DigestMismatch | ErrorKind::SizeMismatch
        )
    }

    /// Whether the same request may succeed if tried again later: connection failures,
    /// timeouts, throttling and server-side errors.
    pub fn is_transient(&self) -> bool {
        match self.0.kind {
            ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::TooManyRequests => true,
            ErrorKind::Http => matches!(self.0.status, Some(408 | 500 | 502 | 503 | 504)),
            _ => false,
        }
    }

    /// The URL (if any) and the reason, for places that print the object themselves.
    pub fn detail(&self) -> String {
        match &self.0.url {
            Some(url) => format!("{url}: {}", self.reason()),
            None => self.reason(),
        }
    }

    /// The reason alone (message and cause), for places that print object and URL themselves.
    pub fn reason(&self) -> String {
        let (s, _) = self.said();
        // The settings the program's users know, by the names they know them by.
        let mut s = crate::setting::named(s);
        if self.0.attempts > 1 {
            s.push_str(&format!(" (gave up after {} attempts)", self.0.attempts));
        }
        if !self.0.earlier.is_empty() {
            s.push_str(" (tried first: ");
            s.push_str(&self.0.earlier.join("; "));
            s.push(')');
        }
        // What a server said reaches messages in many ways; none may break the line or
        // reach the terminal as an escape sequence, nor make it hundreds of KiB long (a
        // header may be that long): each way shows at most a few hundred characters of
        // it, and this catches any that does not.
        let s = match crate::server_text::printable(&s) {
            std::borrow::Cow::Borrowed(_) => s,
            std::borrow::Cow::Owned(clean) => clean,
        };
        crate::server_text::cut_to(s, MAX_REASON)
    }

    /// The message with the cause's words before its notes, and where the notes begin.
    fn said(&self) -> (String, Option<usize>) {
        let (what, notes) = self
            .0
            .notes_at
            .map_or((&*self.0.message, ""), |at| self.0.message.split_at(at));
        let mut s = what.to_string();
        if let Some(cause) = &self.0.cause {
            let mut next: Option<&(dyn std::error::Error + 'static)> = Some(cause.as_ref());
            while let Some(c) = next {
                // hyper-util's client wraps every failure in "client error (Connect)" or the
                // like, which says less than the message already does; its causes say more.
                let text = if c.is::<hyper_util::client::legacy::Error>() {
                    String::new()
                } else {
                    c.to_string()
                };
                // Not looked for in the words put before the message: a break "(…:
                // connection reset)" would hide the same cause of the resume's failure.
                if !text.is_empty() && !s.get(self.0.lead..).unwrap_or(&s).contains(&text) {
                    s.push_str(": ");
                    s.push_str(&text);
                }
                next = c.source();
            }
        }
        let notes_at = self.0.notes_at.map(|_| s.len());
        s.push_str(notes);
        (s, notes_at)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(object) = &self.0.object {
            write!(f, "{object}: ")?;
        }
        if let Some(url) = &self.0.url {
            write!(f, "{url}: ")?;
        }
        f.write_str(&self.reason())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("message", &self.0.message)
            .field("object", &self.0.object)
            .field("url", &self.0.url)
            .field("status", &self.0.status)
            .field("cause", &self.0.cause)
            .field("earlier", &self.0.earlier)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.cause.as_deref().map(|c| c as _)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::Interrupted => ErrorKind::Interrupted,
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        Error::new(kind, "i/o").with_cause(e)
    }
}

/// The note telling the repository and object a pasted registry API URL names, as the
/// locator and object `dist fetch` takes, or `as_reference`, as an image reference.
fn api_url_note(repository: &str, object: &str, as_reference: bool) -> String {
    let (what, meant) = if as_reference {
        let separator = if object.parse::<crate::Digest>().is_ok() {
            '@'
        } else {
            ':'
        };
        ("reference", format!("{repository}{separator}{object}"))
    } else {
        ("locator", format!("{repository} {object}"))
    };
    format!("if a registry API URL was pasted as the {what}, write {meant}")
}

/// `scheme://host/path` of a URL, with `?…` standing for a query and no user information,
/// and without control characters: a server's realm or `Location` is read from its bytes,
/// and may hold a terminal's escape (`\u{9b}`) or a right-to-left override.
pub fn redact_url(url: &str) -> String {
    if let Some(end) = crate::reference::url_login_end(url) {
        let scheme = url.find("://").map_or("", |i| &url[..i + 3]);
        return redact_url(&format!("{scheme}{}", &url[end..]));
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (before_query, had_query) = match rest.split_once('?') {
        Some((b, _)) => (b, true),
        None => (rest, false),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let mut out = String::with_capacity(url.len());
    if let Some(s) = scheme {
        out.push_str(s);
        out.push_str("://");
    }
    out.push_str(host);
    out.push_str(path);
    if had_query {
        out.push_str("?…");
    }
    let out = match crate::server_text::printable(&out) {
        std::borrow::Cow::Borrowed(_) => out,
        std::borrow::Cow::Owned(clean) => clean,
    };
    crate::server_text::cut_to(out, MAX_URL_SHOWN)
}

/// How many characters of an error's reason are shown at most: far more than any reason
/// dist words, a mirror's failures included.
const MAX_REASON: usize = 4096;

/// How many characters of a URL a message shows at most: real registry URLs are far
/// shorter, while a server's `Location` may run to hundreds of KiB (hyper accepts headers
/// that long), which would otherwise fill the error line and a log with one URL.
pub(crate) const MAX_URL_SHOWN: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    /// A part task's panic reads as a fetch task's does, a local fault with the panic's
    /// message, not as a part interrupted (`part task ended`), as by a signal.
    #[tokio::test]
    async fn a_task_s_panic_reads_as_ended_abnormally() {
        let panicked = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
        let e = Error::task_ended("part", panicked);
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        let said = e.to_string();
        assert!(
            said.contains("part task ended abnormally") && said.contains("boom"),
            "{said}"
        );
        let pending = tokio::spawn(std::future::pending::<()>());
        pending.abort();
        let cancelled = Error::task_ended("part", pending.await.unwrap_err());
        assert_eq!(cancelled.kind(), ErrorKind::Interrupted, "{cancelled}");
    }

    /// A task cancelled at the runtime's shutdown says so: it read "ended abnormally", the
    /// words of a panic, so a user looked for a bug where dist had been stopped.
    #[tokio::test]
    async fn a_cancelled_task_says_it_was_cancelled() {
        let pending = tokio::spawn(std::future::pending::<()>());
        pending.abort();
        let said = Error::task_ended("fetch", pending.await.unwrap_err()).to_string();
        assert!(said.contains("fetch task was cancelled"), "{said}");
        assert!(!said.contains("abnormally"), "{said}");
        // A library caller's runtime ends too, and "dist" is not a process there.
        assert!(said.contains("its runtime was shutting down"), "{said}");
    }

    #[test]
    fn display_names_object_url_and_cause() {
        let io = std::io::Error::other("connection reset");
        let e = Error::new(ErrorKind::Connect, "request failed")
            .with_object("sha256:ab")
            .with_url("http://h/v2/x/blobs/sha256:ab")
            .with_cause(io);
        assert_eq!(
            e.to_string(),
            "sha256:ab: http://h/v2/x/blobs/sha256:ab: request failed: connection reset"
        );
        assert!(e.is_transient());
    }

    /// `dist pull` notes which platform a failed layer is for: after the cause, the note
    /// read as if the platform were what failed ("…; it is the index's entry for
    /// linux/arm64: Connection refused").
    #[test]
    fn a_note_follows_the_cause() {
        let e = Error::new(ErrorKind::Connect, "request failed")
            .with_cause(std::io::Error::other("connection refused"))
            .with_note("it is the index's entry for linux/arm64")
            .with_note("and more")
            .with_attempts(3);
        assert_eq!(
            e.reason(),
            "request failed: connection refused; it is the index's entry for linux/arm64; \
             and more (gave up after 3 attempts)"
        );
        assert_eq!(
            e.message(),
            "request failed; it is the index's entry for linux/arm64; and more"
        );
        assert_eq!(e.shared().reason(), e.reason());
    }

    /// A failure said again (to a second waiter, to a caller that asks a failed download
    /// again) lost its restart mark and the hosts tried first as things to match on:
    /// content that could have been fetched again whole read as failed for good.
    #[test]
    fn a_failure_said_again_keeps_what_callers_match_on() {
        let failure = || {
            Error::new(ErrorKind::Connect, "body interrupted")
                .with_cause(std::io::Error::other("connection reset"))
                .with_note("it is the index's entry for linux/arm64")
                .with_attempts(2)
                .restartable(2)
                .with_earlier(vec!["http://m/v2/x: mirror answered 500".into()])
        };
        let e = failure();
        for again in [e.shared(), e.shared().shared()] {
            assert_eq!(again.restart(), Some(2));
            assert_eq!(again.earlier(), e.earlier());
            assert_eq!(again.reason(), e.reason());
            assert_eq!(again.kind(), ErrorKind::Connect);
            // A note added later still goes after the others, before the counts.
            assert_eq!(
                again.with_note("more").reason(),
                failure().with_note("more").reason()
            );
        }
        assert_eq!(
            failure().with_note("more").reason(),
            "body interrupted: connection reset; it is the index's entry for linux/arm64; \
             more (gave up after 2 attempts) (tried first: http://m/v2/x: mirror answered 500)"
        );
    }

    /// A failure said again dropped its cause, keeping only its words: a library user
    /// walking `source()` for the `io::Error` under it (to tell a reset from a refusal)
    /// found nothing on the second waiter's copy.
    #[test]
    fn a_failure_said_again_keeps_its_source_chain() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = Error::new(ErrorKind::Connect, "request failed")
            .with_cause(reset)
            .with_note("it is the index's entry for linux/arm64");
        for again in [e.shared(), e.shared().shared()] {
            let source = std::error::Error::source(&again).expect("the cause");
            let io = source
                .downcast_ref::<std::io::Error>()
                .expect("an io::Error");
            assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
            assert_eq!(again.reason(), e.reason());
            assert_eq!(again.message(), e.message());
            assert_eq!(again.to_string(), e.to_string());
        }
    }

    /// A failure met after another (a body's resume after its break) is said after the
    /// first's words and stays itself: what callers read of it, and its cause's words,
    /// which the first's may hold too ("connection reset" twice) and no longer hide.
    #[test]
    fn a_failure_met_after_another_keeps_all_it_said() {
        let after = std::time::Duration::from_secs(60);
        let met = Error::new(ErrorKind::Http, "request failed")
            .with_status(503)
            .with_retry_after(Some(after))
            .with_cause(std::io::Error::other("connection reset"))
            .with_note("it is a mirror")
            .with_attempts(3)
            .met_after("body broke (connection reset), and resuming failed: ");
        assert_eq!(
            met.reason(),
            "body broke (connection reset), and resuming failed: request failed: \
             connection reset; it is a mirror (gave up after 3 attempts)"
        );
        assert_eq!(
            (met.kind(), met.status(), met.retry_after(), met.attempts()),
            (ErrorKind::Http, Some(503), Some(after), 3)
        );
        assert!(std::error::Error::source(&met).is_some());
        assert_eq!(met.shared().reason(), met.reason());
    }

    #[test]
    fn reasons_stay_on_one_line_without_escapes() {
        let e = Error::new(
            ErrorKind::Protocol,
            "no manifest for li\u{1b}[2J\nnux/amd64",
        )
        .with_cause(std::io::Error::other("bell\u{7} and\r\nbreak"));
        assert_eq!(
            e.to_string(),
            "no manifest for li [2J nux/amd64: bell  and  break"
        );
    }

    #[test]
    fn long_reasons_are_cut_short() {
        let e = Error::new(ErrorKind::Protocol, "z".repeat(300_000))
            .with_cause(std::io::Error::other("cause"));
        let reason = e.reason();
        assert_eq!(reason.chars().count(), MAX_REASON + 1);
        assert!(
            reason.starts_with("zzz") && reason.ends_with("z…"),
            "{reason}"
        );
    }

    #[test]
    fn long_urls_are_cut_short() {
        let long = format!("http://h/v2/{}", "a".repeat(300_000));
        let shown = redact_url(&long);
        assert_eq!(shown.chars().count(), MAX_URL_SHOWN + 1);
        assert!(
            shown.starts_with("http://h/v2/aaa") && shown.ends_with("a…"),
            "{shown}"
        );
        let e = Error::new(ErrorKind::Protocol, "more than 10 redirects").with_url(&long);
        assert!(e.to_string().len() < 1000, "{} bytes", e.to_string().len());
    }

    #[test]
    fn urls_lose_control_characters() {
        // A realm read from a challenge's bytes: an escape, a C1 CSI, a line separator and
        // a right-to-left override, each a space.
        assert_eq!(
            redact_url("http://a.example/\u{1b}[2J\u{9b}31m\u{2028}\u{202e}x?t=1"),
            "http://a.example/ [2J 31m  x?…"
        );
        // Text is no control: a name in another script, a percent-encoded byte, an
        // ellipsis, right-to-left letters, all stay as they were.
        for kept in [
            "https://bücher.example/ü/%C3%BC%E2%80%AE/…",
            "https://xn--bcher-kva.example/שלום/v2/",
        ] {
            assert_eq!(redact_url(kept), kept);
        }
    }

    #[test]
    fn urls_lose_queries_and_user_information() {
        assert_eq!(
            redact_url("https://cdn.example/blob?X-Amz-Signature=secret&e=1"),
            "https://cdn.example/blob?…"
        );
        assert_eq!(
            redact_url("https://user:pw@reg.example:5000/v2/"),
            "https://reg.example:5000/v2/"
        );
        assert_eq!(
            redact_url("http://h/v2/x/blobs/sha256:ab"),
            "http://h/v2/x/blobs/sha256:ab"
        );
        // A password pasted with a '/' in it: what goes before that is no host.
        assert_eq!(
            redact_url("https://user:s3/cret@reg.example:5000/v2/"),
            "https://reg.example:5000/v2/"
        );
        assert_eq!(
            redact_url("https://mirror.example/a@b/v2/"),
            "https://mirror.example/a@b/v2/"
        );
        // Or with a '?' or '#' in it, which ended no valid host before the '@' either.
        for (url, shown) in [
            (
                "https://user:s3?cret@reg.example/v2/",
                "https://reg.example/v2/",
            ),
            (
                "https://user:s3#cret@reg.example/v2/",
                "https://reg.example/v2/",
            ),
            ("user:s3?cret@reg.example", "reg.example"),
            (
                "https://user:1234/s3cret@reg.example/v2/",
                "https://reg.example/v2/",
            ),
            (
                "https://mirror.example:1234/s3cret@10.0.0.5/v2/",
                "https://10.0.0.5/v2/",
            ),
            (
                "https://mirror.example:5000/team@v1.2/v2/",
                "https://mirror.example:5000/team@v1.2/v2/",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        assert_eq!(
            redact_url("https://cdn.example/blob?user=a@b"),
            "https://cdn.example/blob?…"
        );
        let e = Error::invalid("x").with_url("https://a.example/p?token=abc");
        assert!(!e.to_string().contains("abc"));
    }

    #[test]
    fn first_context_wins() {
        let e = Error::invalid("bad").with_url("a").with_url("b");
        assert_eq!(e.url(), Some("a"));
        assert!(!e.is_transient());
    }

    #[test]
    fn http_transience_depends_on_status() {
        assert!(Error::new(ErrorKind::Http, "x")
            .with_status(503)
            .is_transient());
        assert!(!Error::new(ErrorKind::Http, "x")
            .with_status(400)
            .is_transient());
    }
}
