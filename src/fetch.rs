//! A fetched object: what is known about it, and its bytes, verified while they stream.
//!
//! [`Download::chunk`] hands out the bytes as they arrive and hashes them; the last call
//! (the one that returns `None`) is the verdict: the content matched its digest and its
//! size, or the call fails with [`ErrorKind::DigestMismatch`] or [`ErrorKind::SizeMismatch`].
//! Consumers must therefore treat what they received as unverified until `chunk` returned
//! `Ok(None)`; the sinks write into temporary files for exactly that reason.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, ErrorKind, Result};
use crate::handoff::Handoff;
use crate::reference::Object;

/// Manifests larger than this are refused: no registry accepts them, and they would have
/// to be held in memory to be parsed.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// Fetches of content that arrives but does not verify, the first included: the second
/// goes to the origin (see [`crate::Hints::for_attempt`]), then the error stands.
pub const VERIFY_ATTEMPTS: u32 = 2;

/// What a caller that fetches content once more after `e` (content that is not what was
/// asked for: [`Error::is_corruption`]) says it does, for its warning. Content refused
/// for the size its server declared was never read, so it "did not verify" no more than
/// the size given was right.
pub fn refetch_warning(e: &Error) -> String {
    // Past a mirror to the registry itself, unless the registry may not be asked for the
    // content: the mirrors are asked once more then. What the registry sized is asked of
    // it again, mirrors or none: "itself" said so where no mirror was configured.
    let (who, from) = match e.sizing_mirror() {
        Some(mirror) if !e.is_registry_next() => (mirror, ""),
        Some(mirror) => (mirror, " from the registry itself"),
        None => ("registry", ""),
    };
    let said = match (e.sizes(), e.sent()) {
        (Some((given, declared)), _) => {
            format!(
                "the size given is {} and the {who} declares {declared}",
                crate::plural::Bytes(given)
            )
        }
        (None, Some((given, sent))) => {
            format!(
                "the size given is {} and the {who} sent {}",
                crate::plural::Bytes(given),
                sent_bytes(sent)
            )
        }
        (None, None) if e.announced_other() => {
            format!("the {who}'s Docker-Content-Digest header names other content")
        }
        // A server's answers that contradict the size it declared (a `416` short of it, a
        // `Content-Range` total other than it), a body cut short: nothing verified either.
        (None, None) if e.kind() == ErrorKind::SizeMismatch => {
            return "content is not the size it should be; fetching again".to_string();
        }
        (None, None) => return "content did not verify; fetching again".to_string(),
    };
    format!("{said}; fetching once more{from}")
}

/// What a body without a declared size brought against the size given: its length, or
/// `None` when it went on past the size given (and was not read further).
fn sent_bytes(sent: Option<u64>) -> String {
    match sent {
        Some(n) => n.to_string(),
        None => "more".to_string(),
    }
}

/// The mirror that answered and whether the registry itself comes after it; `None` for
/// the registry.
type AnsweringMirror = Option<(String, bool)>;

/// The raw byte stream of an object, before verification.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Where a body that took its end on trust leaves why it could not confirm it (a range
/// of unknown total whose rest could not be had): the failure that stands should the
/// content then not verify (see [`Download::end_on_trust`]).
pub(crate) type OnTrust = std::sync::Arc<std::sync::Mutex<Option<Error>>>;

/// `body` without its first `skip` bytes: the part of a content resent whole that is
/// already at hand.
pub(crate) fn skip_prefix(body: ByteStream, mut skip: u64) -> ByteStream {
    body.filter_map(move |item| {
        let out = match item {
            Ok(mut chunk) if skip > 0 => {
                let drop = skip.min(chunk.len() as u64);
                skip -= drop;
                let _ = chunk.split_to(drop as usize);
                (!chunk.is_empty()).then_some(Ok(chunk))
            }
            other => Some(other),
        };
        std::future::ready(out)
    })
    .boxed()
}

/// What a remote knows about an object before its body is read.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The object as it was asked for.
    pub object: Object,
    /// The digest the content must have: the object's own, or the one the registry
    /// announced for a tag. `None` for a tag the registry sent no digest for; its digest is
    /// then computed (sha256) and reported, not verified.
    pub expected: Option<Digest>,
    /// The exact size the content must have, if known (declared, or hinted by the caller).
    pub size: Option<u64>,
    /// The media type, if the remote or the caller knows it. For a manifest served under
    /// a `Content-Type` that names no manifest type (`application/json`), the type the
    /// manifest declares, once [`Download::chunk`] returned `Ok(None)`.
    pub media_type: Option<String>,
    /// Where it comes from, for messages.
    pub url: String,
    /// Refuse more than this many bytes even when no size is known.
    pub limit: Option<u64>,
}

/// Objects at least this large are hashed on a thread of their own, so that receiving,
/// hashing and writing run on different cores instead of one after the other.
const OFFLOAD_HASHING: u64 = 8 << 20;
/// Bytes in flight to the hashing thread: enough to ride out scheduling hiccups, little
/// enough to keep memory bounded whatever the size of the chunks (a ranged part is one
/// 8 MiB chunk, a socket read up to a few hundred KiB). Measured on 1 GiB into `-o DIR`
/// (11 interleaved runs): 2 MiB 1.10 s, 3 MiB 1.06 s, 4 MiB 1.05 s but +3.4 MiB of peak
/// RSS, 1 MiB 1.31 s.
const HASH_QUEUE_BYTES: usize = 3 << 20;

/// Where the digest is being computed.
enum Hashing {
    /// In the task that reads the body.
    Inline(Box<Hasher>),
    /// On a blocking-pool thread fed through a bounded queue.
    Offloaded(Option<Handoff<Digest>>),
    /// The queue closed, the thread's digest awaited: kept here, not in the call that
    /// awaits it, so that a call dropped meanwhile leaves the digest to the next.
    Finishing(BoxFuture<'static, std::result::Result<Digest, crate::handoff::Panicked>>),
}

impl Hashing {
    /// Hashing that goes on from `h` (fresh, or primed with content already at hand).
    fn start(h: Hasher, size: Option<u64>) -> Hashing {
        let big = size.is_some_and(|s| s >= OFFLOAD_HASHING);
        if !big || tokio::runtime::Handle::try_current().is_err() {
            return Hashing::Inline(Box::new(h));
        }
        let started = Handoff::spawn(HASH_QUEUE_BYTES, h, |mut h, chunks| {
            for chunk in chunks {
                h.update(&chunk);
            }
            h.finish()
        });
        match started {
            Ok(handoff) => Hashing::Offloaded(Some(handoff)),
            // No thread to be had (a limit on processes): hashed here, slower but whole.
            Err((h, _)) => Hashing::Inline(Box::new(h)),
        }
    }

    /// Hashes `chunk`, or fails; dropped while it waits for room in the queue, the chunk
    /// was not queued.
    async fn update(&mut self, chunk: &Bytes) -> Result<()> {
        let sent = match self {
            Hashing::Inline(h) => {
                h.update(chunk);
                true
            }
            Hashing::Offloaded(Some(h)) => h.send(chunk.clone()).await.is_ok(),
            Hashing::Offloaded(None) | Hashing::Finishing(_) => false,
        };
        if !sent {
            // The thread stops early only by panicking: its result says why.
            return Err(match self.finish().await {
                Err(e) => e,
                Ok(_) => Error::new(ErrorKind::Io, "the hashing thread stopped"),
            });
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<Digest> {
        loop {
            match self {
                Hashing::Inline(h) => {
                    return Ok(
                        std::mem::replace(h.as_mut(), Hasher::new(Algorithm::Sha256)).finish(),
                    )
                }
                Hashing::Offloaded(handoff) => {
                    let handoff = handoff
                        .take()
                        .ok_or_else(|| Error::new(ErrorKind::Io, "the hash was already taken"))?;
                    *self = Hashing::Finishing(Box::pin(handoff.finish()));
                }
                Hashing::Finishing(digest) => {
                    let digest = digest.await;
                    *self = Hashing::Offloaded(None);
                    return digest.map_err(|p| {
                        Error::new(ErrorKind::Io, format!("the hashing thread panicked: {p}"))
                    });
                }
            }
        }
    }
}

/// Content of an object already at hand when its download starts (a partial download an
/// earlier run kept): how long it is, and its hash so far. The download carries on after
/// it and verifies the whole content.
#[derive(Clone)]
pub struct Prefix {
    /// Bytes at hand: the download starts at this offset.
    pub len: u64,
    /// The hash of those bytes, ready to take the rest.
    pub hasher: Hasher,
}

impl std::fmt::Debug for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefix").field("len", &self.len).finish()
    }
}

/// An object whose body is being received and verified.
pub struct Download {
    meta: Meta,
    body: ByteStream,
    hashing: Hashing,
    received: u64,
    verified: Option<Digest>,
    /// The error `chunk` returned, returned again to a caller that asks on: the body may
    /// not be polled past its end, and the hash is gone once taken. Kept as
    /// [`Error::shared`] makes it (a cause cannot be cloned), with the URL that failed (a
    /// mirror's, a part's) rather than the download's first.
    failed: Option<Error>,
    /// The content so far, kept for [`Download::typed_by_content`], or for a manifest
    /// nothing announced verifies (`unverifiable`).
    kept: Option<Vec<u8>>,
    /// Whether the kept content names the media type ([`Download::typed_by_content`]).
    typed: bool,
    /// A manifest with no digest to check it by (a tag from a server that announced none):
    /// a body cut short where its connection closed ended as cleanly as a whole one, and
    /// an empty one under `Content-Length: 0` was as long as declared, and either was
    /// handed out as the manifest. Kept, it must at least be whole JSON
    /// ([`Download::whole_json_unless_verified`]).
    unverifiable: bool,
    /// How the hosts asked before the one that answered failed (mirrors), for any error
    /// the download ends with (see [`Error::earlier`]).
    tried_first: Vec<String>,
    /// `meta.size` is the size given alone (a `size:` hint, a descriptor's), the server
    /// having declared none (a chunked body): with the mirror that answered (`None`: the
    /// registry) and whether the registry itself comes after it, and who answered the
    /// fetch once more after the same mismatch, when this is it. See
    /// [`Download::size_given`].
    size_given: Option<(AnsweringMirror, Option<String>)>,
    /// A chunk taken from the body but not yet hashed: a call to `chunk` dropped while
    /// the hashing thread's queue was full (the losing branch of a caller's `select!`)
    /// leaves it to the next call, which would otherwise hand out the chunk after it.
    unhashed: Option<Bytes>,
    /// The body ended: a call dropped while it awaited the digest leaves the next one to
    /// take it, not to poll the body past its end.
    ended: bool,
    /// Why the body's end was taken on trust, if it was: see [`Download::end_on_trust`].
    on_trust: Option<OnTrust>,
    /// The codings undone to get the body (`gzip`), if any, and how many bytes were sent
    /// once they verified as sent: see [`Download::decoded_from`].
    decoded_from: Option<(String, Arc<OnceLock<u64>>)>,
    /// The `Content-Encoding` a body taken as sent was labelled with: see
    /// [`Download::taken_as_sent`].
    taken_as_sent: Option<String>,
    /// The server labelled the body an HTML page: see [`Download::served_as_html`].
    served_as_html: bool,
    /// Where a redirect to another host came from, as said: see
    /// [`Download::redirected_by`].
    redirected_by: Option<String>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("meta", &self.meta)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// Wraps a body stream for verification against `meta`.
    pub fn new(meta: Meta, body: ByteStream) -> Download {
        let algorithm = meta
            .expected
            .as_ref()
            .map(Digest::algorithm)
            .unwrap_or(Algorithm::Sha256);
        let nothing = Prefix {
            len: 0,
            hasher: Hasher::new(algorithm),
        };
        Download::after(meta, body, nothing)
    }

    /// Wraps `body`, the content from byte `prefix.len` on, for verification of the whole
    /// content against `meta` (whose size, if any, is the whole content's). Only the rest
    /// is handed out.
    pub fn after(meta: Meta, body: ByteStream, prefix: Prefix) -> Download {
        let hashing = Hashing::start(prefix.hasher, meta.size);
        Download {
            meta,
            body,
            hashing,
            received: prefix.len,
            verified: None,
            failed: None,
            kept: None,
            typed: false,
            unverifiable: false,
            tried_first: Vec::new(),
            size_given: None,
            unhashed: None,
            ended: false,
            on_trust: None,
            decoded_from: None,
            taken_as_sent: None,
            served_as_html: false,
            redirected_by: None,
        }
    }

    /// The same download carrying on after `prefix`: the first `prefix.len` bytes of the
    /// body are received and dropped. For a remote that can only send content whole; call
    /// it before the first [`chunk`](Self::chunk).
    pub fn skipping(self, prefix: Prefix) -> Download {
        let body = skip_prefix(self.body, prefix.len);
        let mut skipping = Download::after(self.meta, body, prefix).tried_first(self.tried_first);
        skipping.on_trust = self.on_trust;
        skipping.decoded_from = self.decoded_from;
        skipping.served_as_html = self.served_as_html;
        skipping.redirected_by = self.redirected_by;
        skipping
    }

    /// The same download, its body what undoing the server's `codings` (`gzip`) gave: a
    /// digest mismatch says it was of the decoded bytes. A server that labels content
    /// stored compressed (a gzip layer, an S3 object uploaded with `Content-Encoding`
    /// metadata) as coded sends bytes that verify only as sent, and the mismatch read as
    /// corruption, its size of bytes the content never had. `as_sent` holds how many
    /// bytes were sent once they verified so: the mismatch then says the size to give for
    /// a fetch to take them as sent. Within a run a fetch again does so by itself (see
    /// [`AsSent`](crate::registry::coding::AsSent)), but a one-shot run again learns
    /// nothing from the last one.
    pub(crate) fn decoded_from(mut self, codings: String, as_sent: Arc<OnceLock<u64>>) -> Download {
        self.decoded_from = Some((codings, as_sent));
        self
    }

    /// The same download, its body the bytes as sent under the server's `Content-Encoding`
    /// (`coding`), not undone: taken for content stored so (see
    /// [`AsSent`](crate::registry::coding::AsSent)). A digest mismatch says so: a proxy's
    /// coding, taken so by chance, read as corruption.
    pub(crate) fn taken_as_sent(mut self, coding: String) -> Download {
        self.taken_as_sent = Some(coding);
        self
    }

    /// The same download, its body labelled an HTML page (`text/html`), which no
    /// registry's content is likely to be: content that then fails says that such a page
    /// came in its place, as a proxy, firewall or captive portal answers with its own
    /// sign-in or block page. It read as corrupt content, or as a registry's broken
    /// manifest.
    pub(crate) fn served_as_html(mut self) -> Download {
        self.served_as_html = true;
        self
    }

    /// The same download, served by another host a redirect led to, `said` naming the URL
    /// it came from ([`crate::transport::redirected_by`]): content that then fails names
    /// both, as a failed request there does. It named the target alone, a CDN's URL that
    /// one debugging its copy could not trace back.
    pub(crate) fn redirected_by(mut self, said: String) -> Download {
        self.redirected_by = Some(said);
        self
    }

    /// The same download, any error it ends with naming how `hosts` (URL and reason each,
    /// oldest first) failed before its own host answered: the remote moved on from them,
    /// and the last host's failure alone would hide why they did not serve.
    pub(crate) fn tried_first(mut self, hosts: Vec<String>) -> Download {
        self.tried_first = hosts;
        self
    }

    /// The same download, its size (`meta.size`) the size given alone, the server having
    /// declared none: a length other than that is said against the size given, as a size
    /// declared otherwise is, for a hint as likely wrong as the server.
    /// `mirror`: the mirror that answered (`mirror <host:port>`), `None` for the registry;
    /// `registry_next`: the registry itself may be asked for the content, and the fetch
    /// once more goes there, past the mirror ([`Error::registry_next`]).
    /// `again`: this is the fetch once more, answered by whom (`the registry itself`, past
    /// its mirrors, `the registry` without any, or the mirror that stands in for a
    /// registry that may not be asked).
    pub(crate) fn size_given(
        mut self,
        mirror: Option<String>,
        registry_next: bool,
        again: Option<String>,
    ) -> Download {
        self.size_given = Some((mirror.map(|m| (m, registry_next)), again));
        self
    }

    /// The same download, its body leaving in `on_trust` why it took its end on trust
    /// when it did: content that then does not verify had not ended there, and fails with
    /// that cause (a transfer that fell short, its partial download worth keeping), not
    /// as content that is not what was asked for, which blamed and threw away the bytes
    /// that had arrived and fetched them whole once more.
    pub(crate) fn end_on_trust(mut self, on_trust: OnTrust) -> Download {
        self.on_trust = Some(on_trust);
        self
    }

    /// The same download, its media type read from the manifest's own `mediaType` (or
    /// shape) once the content verifies: for a manifest served with a `Content-Type` that
    /// says nothing of what it is (`application/json`, `text/plain`, as static mirrors and
    /// some registries serve them), which would otherwise be reported as its type, or for
    /// content whose type nothing told (a layout's blob no entry lists). The content is
    /// held until then, up to `meta.limit` or its size, whichever is known, and only
    /// while it may be a manifest: content of unbounded size, or larger than any
    /// manifest, is not held at all, and content that does not open as a JSON object is
    /// let go at its first chunk. Call it before the first [`chunk`](Self::chunk), on a
    /// download that starts at the content's first byte.
    pub(crate) fn typed_by_content(mut self) -> Download {
        let bound = self.meta.limit.or(self.meta.size);
        if self.received == 0 && bound.is_some_and(|b| b <= MAX_MANIFEST_SIZE) {
            self.kept = Some(Vec::new());
            self.typed = true;
        }
        self
    }

    /// The same download, of a manifest: with no digest to verify it by (a tag from a
    /// server that announced none), a body cut short where its connection closed ends as
    /// cleanly as a whole one, and a size declared says only how long it is (`0` for an
    /// empty answer), so the content is held (up to `meta.limit`, which must then be no
    /// more than a manifest's) and must at least be one whole JSON object. Asked for, not
    /// inferred from `meta.limit`, which only caps bytes.
    /// Call it before the first [`chunk`](Self::chunk), on a download that starts at the
    /// content's first byte.
    pub(crate) fn whole_json_unless_verified(mut self) -> Download {
        let unverified = self.meta.expected.is_none();
        let bounded = self.meta.limit.is_some_and(|l| l <= MAX_MANIFEST_SIZE);
        if self.received == 0 && unverified && bounded {
            self.unverifiable = true;
            self.kept.get_or_insert_with(Vec::new);
        }
        self
    }

    /// The same download, of `media_type`: for a remote that learns the type only once
    /// it found the content.
    pub(crate) fn with_media_type(mut self, media_type: Option<String>) -> Download {
        self.meta.media_type = media_type;
        self
    }

    /// What is known about the object.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The size the remote's answer holds the content to (`meta.size`), unless that is
    /// the size given alone (a `size:` hint, a descriptor's, where the answer declared
    /// none: a body without `Content-Length`, or a compressed one): the caller's word,
    /// which may be what is wrong.
    pub fn declared_size(&self) -> Option<u64> {
        self.meta.size.filter(|_| self.size_given.is_none())
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The content's digest, once [`chunk`](Self::chunk) has returned `Ok(None)`.
    pub fn digest(&self) -> Option<&Digest> {
        self.verified.as_ref()
    }

    /// The next piece of content; `Ok(None)` once all of it arrived and was verified:
    /// against the digest asked for, or for a tag the one the registry announced
    /// (`Docker-Content-Digest`). A tag answered without one has nothing to be checked
    /// against; its digest is then only computed (see `Meta::expected`).
    ///
    /// An error is final: every later call returns it again, so a caller that goes on
    /// asking never reaches `Ok(None)` for content that failed.
    ///
    /// Cancel-safe: a call dropped before it returned (the losing branch of a
    /// `tokio::select!`, a `tokio::time::timeout` that expired) loses no content; the next
    /// call hands out the chunk it had taken, or the verdict it was waiting for.
    ///
    /// # Errors
    ///
    /// Content that is not what was asked for ([`Error::is_corruption`], worth one more
    /// fetch with [`Hints::for_attempt`](crate::Hints::for_attempt)):
    /// [`ErrorKind::DigestMismatch`] for content that does not hash to its digest,
    /// [`ErrorKind::SizeMismatch`] for more or fewer bytes than declared or given (a
    /// `size:` hint, a descriptor's). Content past its limit (a manifest's 4 MiB) is
    /// [`ErrorKind::TooLarge`]; a manifest nothing announced a digest for that is no JSON
    /// object, or a body whose content coding is broken, [`ErrorKind::Protocol`]. A body
    /// that broke or stalled ([`ErrorKind::Connect`], [`ErrorKind::Timeout`]) fails once
    /// the resumes and retries of the remote's [`RetryPolicy`](crate::retry::RetryPolicy)
    /// are spent ([`Error::is_transient`]); one that cannot be resumed says so with
    /// [`Error::restart`]. A layout's file that cannot be read is [`ErrorKind::Io`].
    ///
    /// ```
    /// use dist::layout_remote::LayoutRemote;
    /// use dist::sink::layout::LayoutStore;
    /// use dist::{digest::Algorithm, Digest, ErrorKind, Hints, Object, Remote};
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
    /// # async fn main() -> dist::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// // A layout whose blob was damaged: "hellO" stored under the digest of "hello".
    /// let store = LayoutStore::open(dir.path())?;
    /// let digest = Digest::of(Algorithm::Sha256, b"hello");
    /// let mut blob = store.temp(Algorithm::Sha256)?;
    /// blob.write(&bytes::Bytes::from_static(b"hellO")).await?;
    /// blob.commit(&digest).await?;
    ///
    /// let remote = LayoutRemote::new(dir.path());
    /// let mut download = remote.fetch(&Object::Digest(digest), &Hints::default()).await?;
    /// let e = loop {
    ///     match download.chunk().await {
    ///         Ok(Some(_)) => {} // not to be trusted until Ok(None)
    ///         Ok(None) => unreachable!("the content does not verify"),
    ///         Err(e) => break e,
    ///     }
    /// };
    /// assert_eq!(e.kind(), ErrorKind::DigestMismatch);
    /// assert!(e.is_corruption());
    /// # Ok(()) }
    /// ```
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        if self.verified.is_some() {
            return Ok(None);
        }
        if let Some(failed) = &self.failed {
            return Err(failed.shared());
        }
        let next = self.next_chunk().await;
        let next = next.map_err(|e| e.with_tried_first(&self.tried_first));
        if let Err(e) = &next {
            self.failed = Some(e.shared());
        }
        next
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        // What a call dropped while it waited (see `unhashed`, `ended`) left to this one.
        let chunk = match self.unhashed.take() {
            Some(chunk) => chunk,
            None if self.ended => {
                self.finish().await?;
                return Ok(None);
            }
            None => match self.body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    return Err(e.with_object(&self.meta.object).with_url(&self.meta.url))
                }
                None => {
                    self.ended = true;
                    self.finish().await?;
                    return Ok(None);
                }
            },
        };
        let total = self.received + chunk.len() as u64;
        if let Some(size) = self.meta.size {
            if total > size {
                let msg = format!(
                    "content longer than its expected {}",
                    crate::plural::Bytes(size)
                );
                return Err(self.wrong_size(msg, size, None));
            }
        }
        if let Some(limit) = self.meta.limit {
            if total > limit {
                return Err(self.fail(
                    ErrorKind::TooLarge,
                    format!("content larger than {limit} bytes"),
                ));
            }
        }
        // Moved there, not cloned: a clone of a chunk over a `Vec` (a file's, a decoded
        // body's, a ranged part's) allocates, once per chunk of every blob.
        if let Err(e) = self.hashing.update(self.unhashed.insert(chunk)).await {
            return Err(e.with_object(&self.meta.object).with_url(&self.meta.url));
        }
        let chunk = self.unhashed.take().expect("the chunk just hashed");
        self.received = total;
        if let Some(kept) = &mut self.kept {
            kept.extend_from_slice(&chunk);
            if !may_be_json_object(kept) {
                self.kept = None;
            }
        }
        Ok(Some(chunk))
    }

    async fn finish(&mut self) -> Result<()> {
        if let Some(size) = self.meta.size {
            if self.received != size {
                let msg = format!(
                    "content ended after {} of {}",
                    self.received,
                    crate::plural::Bytes(size)
                );
                return Err(self.wrong_size(msg, size, Some(self.received)));
            }
        }
        let actual = match self.hashing.finish().await {
            Ok(actual) => actual,
            Err(e) => return Err(e.with_object(&self.meta.object).with_url(&self.meta.url)),
        };
        if let Some(expected) = &self.meta.expected {
            if *expected != actual {
                // Schema 1 under no label of its own (registry.access.redhat.com served it as
                // text/plain) passed the check on `Content-Type`; its digest leaves out the
                // signatures served with it, which is no corruption to fetch again for.
                if self
                    .kept
                    .as_deref()
                    .is_some_and(crate::image::is_signed_schema1)
                {
                    let served = self.meta.media_type.as_deref().unwrap_or("no type");
                    let msg = format!(
                        "the manifest is a signed Docker schema 1 manifest, served as {served}; {}",
                        crate::media::SCHEMA1_REFUSED
                    );
                    return Err(self.fail(ErrorKind::NotFound, msg));
                }
                let msg = match &self.decoded_from {
                    None => match &self.taken_as_sent {
                        None => format!(
                            "digest mismatch: expected {expected}, got {actual} ({})",
                            crate::plural::Bytes(self.received)
                        ),
                        Some(coding) => format!(
                            "digest mismatch: expected {expected}, got {actual} ({} as sent \
                             under the server's Content-Encoding {coding:?}, not undone: \
                             taken for content stored so, as the size given or bytes as sent \
                             that verified before said; a proxy that compresses matches \
                             either only by chance)",
                            crate::plural::Bytes(self.received)
                        ),
                    },
                    Some((codings, as_sent)) => match as_sent.get() {
                        None => format!(
                            "digest mismatch: expected {expected}, got {actual} ({} once the \
                             server's {codings} coding was undone: a server that labels \
                             content stored compressed, such as a gzip layer, with \
                             Content-Encoding sends bytes that verify only as sent)",
                            crate::plural::Bytes(self.received)
                        ),
                        Some(sent) => format!(
                            "digest mismatch: expected {expected}, got {actual} ({} once the \
                             server's {codings} coding was undone); the {} as sent verify: \
                             the server keeps the content compressed and labels it with \
                             Content-Encoding, and a fetch given their size (size:{sent}) \
                             takes them as sent",
                            crate::plural::Bytes(self.received),
                            crate::plural::Bytes(*sent)
                        ),
                    },
                };
                let trusted = self.on_trust.as_ref();
                let trusted = trusted.and_then(|t| t.lock().expect("on_trust poisoned").take());
                if let Some(e) = trusted {
                    // That bytes arrived and were not all of it tells a transfer cut short
                    // from one that failed at once; that nothing "did not verify", as the
                    // empty content's digest, is no news.
                    let e = match self.received {
                        0 => e,
                        _ => e.with_note(format!("what had arrived did not verify ({msg})")),
                    };
                    return Err(e.with_object(&self.meta.object).with_url(&self.meta.url));
                }
                return Err(self.fail(ErrorKind::DigestMismatch, msg));
            }
        }
        if self.unverifiable {
            self.check_whole_json()?;
        }
        self.verified = Some(actual);
        if let Some(kept) = self.kept.take().filter(|_| self.typed) {
            if let Some(own) = crate::image::sniff_media_type(&kept) {
                self.meta.media_type = Some(own);
            }
        }
        Ok(())
    }

    /// Fails a manifest nothing announced verifies unless it is a whole JSON object: one
    /// cut short where its connection closed passed as the manifest.
    fn check_whole_json(&self) -> Result<()> {
        const UNVERIFIABLE: &str = "the server announced no digest to verify it by";
        let Some(kept) = &self.kept else {
            let msg = format!("the manifest is not a JSON object; {UNVERIFIABLE}");
            return Err(self.fail(ErrorKind::Protocol, msg));
        };
        match serde_json::from_slice::<serde::de::IgnoredAny>(kept) {
            Ok(_) => Ok(()),
            // Ended before its JSON did where nothing said how long it is: cut short.
            Err(e) if e.is_eof() && self.meta.size.is_none() => {
                let msg = format!(
                    "the manifest ended after {}, before its JSON did: cut short; \
                     {UNVERIFIABLE}",
                    crate::plural::Bytes(self.received)
                );
                Err(self.fail(ErrorKind::SizeMismatch, msg))
            }
            Err(e) => {
                let msg = format!("the manifest is not JSON ({e}); {UNVERIFIABLE}");
                Err(self.fail(ErrorKind::Protocol, msg))
            }
        }
    }

    /// Content of another length than its `size`, said `msg`: it `sent` so many bytes
    /// (`None`: more). Against a size given alone, the error says so, as one against a
    /// size declared otherwise does (see [`Error::sizes`]): the size given may as well be
    /// what is wrong.
    fn wrong_size(&self, msg: String, size: u64, sent: Option<u64>) -> Error {
        let Some((mirror, again)) = &self.size_given else {
            return self.fail(ErrorKind::SizeMismatch, msg);
        };
        let msg = format!("{msg}, {}", crate::hints::expected_size(size));
        let (mirror, registry_next) = match mirror {
            Some((mirror, next)) => (Some(mirror.as_str()), *next),
            None => (None, false),
        };
        let e = self
            .fail(ErrorKind::SizeMismatch, msg)
            .with_sent(size, sent)
            .sized_by(mirror.map(str::to_string))
            .registry_next(registry_next);
        // A page's length says nothing of the size given.
        let Some(who) = again.as_deref().filter(|_| !self.served_as_html) else {
            return e;
        };
        e.with_note(format!(
            "{who} sent {} again: the size given is likely wrong",
            sent.map_or_else(
                || "more bytes".to_string(),
                |n| crate::plural::Bytes(n).to_string()
            )
        ))
    }

    fn fail(&self, kind: ErrorKind, msg: String) -> Error {
        let e = Error::new(kind, msg);
        let e = match self.served_as_html {
            true => e.with_note(HTML_IN_PLACE),
            false => e,
        };
        let e = match &self.redirected_by {
            Some(said) => e.with_note(said),
            None => e,
        };
        e.with_object(&self.meta.object).with_url(&self.meta.url)
    }
}

/// Said of content that failed under `Content-Type: text/html`, which no registry's
/// content is likely to be (see [`Download::served_as_html`]).
pub(crate) const HTML_IN_PLACE: &str = "the server sent an HTML page (text/html) in its \
     place: a proxy's, firewall's or captive portal's own page, not the registry's answer?";

/// Whether content that begins with `start` may be a JSON object, as every manifest is:
/// false once its first byte past any whitespace is another.
fn may_be_json_object(start: &[u8]) -> bool {
    start
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|&b| b == b'{')
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{stream, FutureExt};

    fn meta(expected: Option<Digest>, size: Option<u64>) -> Meta {
        Meta {
            object: Object::Tag("t".into()),
            expected,
            size,
            media_type: None,
            url: "http://x/y".into(),
            limit: Some(100),
        }
    }

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        let owned: Vec<Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        stream::iter(owned).boxed()
    }

    async fn drain(d: &mut Download) -> Result<Vec<u8>> {
        crate::image::read_to_end(d, u64::MAX).await
    }

    #[tokio::test]
    async fn verifies_matching_content() {
        let want = Digest::of(Algorithm::Sha256, b"hello world");
        let mut d = Download::new(
            meta(Some(want.clone()), Some(11)),
            body(&[b"hello ", b"world"]),
        );
        assert_eq!(drain(&mut d).await.unwrap(), b"hello world");
        assert_eq!(d.digest(), Some(&want));
    }

    /// Content typed by its content is held only while it may be a manifest: not at all
    /// when nothing bounds it, and no further than a first chunk that is no JSON object.
    #[tokio::test]
    async fn content_is_held_for_its_type_only_while_it_may_be_a_manifest() {
        let mut unbounded = meta(None, None);
        unbounded.limit = None;
        let d = Download::new(unbounded, body(&[b"{}"])).typed_by_content();
        assert!(d.kept.is_none());
        let mut sized = meta(None, Some(12));
        sized.limit = None;
        let mut d = Download::new(sized, body(&[b"  layer", b" bytes"])).typed_by_content();
        assert!(d.kept.is_some());
        d.chunk().await.unwrap();
        assert!(d.kept.is_none(), "let go at the first chunk");
        let json = br#" {"schemaVersion":2,"mediaType":"a/b"}"#;
        let mut d = Download::new(meta(None, None), body(&[json])).typed_by_content();
        drain(&mut d).await.unwrap();
        assert_eq!(d.meta().media_type.as_deref(), Some("a/b"));
    }

    #[tokio::test]
    async fn reports_mismatch_with_both_digests() {
        let want = Digest::of(Algorithm::Sha256, b"hello world");
        let mut d = Download::new(meta(Some(want.clone()), None), body(&[b"hello w0rld"]));
        let e = drain(&mut d).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DigestMismatch);
        let got = Digest::of(Algorithm::Sha256, b"hello w0rld");
        assert!(
            e.to_string()
                .contains(&format!("expected {want}, got {got} (11 bytes)")),
            "{e}"
        );
        assert_eq!(e.url(), Some("http://x/y"));
    }

    /// The size given alone is no size the answer declared: a partial longer than it
    /// is not removed on its word (`LayoutStore::remove_partial_past`).
    #[test]
    fn the_size_given_alone_is_no_declared_size() {
        let d = Download::new(meta(None, Some(3)), body(&[b"abc"]));
        assert_eq!(d.declared_size(), Some(3));
        let d = d.size_given(None, true, None);
        assert_eq!(d.meta().size, Some(3));
        assert_eq!(d.declared_size(), None);
    }

    #[tokio::test]
    async fn size_mismatch_both_ways_and_limit() {
        let mut d = Download::new(meta(None, Some(3)), body(&[b"abcd"]));
        assert_eq!(
            drain(&mut d).await.unwrap_err().kind(),
            ErrorKind::SizeMismatch
        );
        let mut d = Download::new(meta(None, Some(5)), body(&[b"abcd"]));
        assert_eq!(
            drain(&mut d).await.unwrap_err().kind(),
            ErrorKind::SizeMismatch
        );
        let big: &'static [u8] = &[0u8; 101];
        let mut d = Download::new(meta(None, None), body(&[big]));
        assert_eq!(drain(&mut d).await.unwrap_err().kind(), ErrorKind::TooLarge);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_objects_hash_on_their_own_thread() {
        let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 253) as u8).collect();
        let want = Digest::of(Algorithm::Sha256, &data);
        let parts: Vec<Result<Bytes>> = data
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut m = meta(Some(want.clone()), Some(data.len() as u64));
        m.limit = None;
        let mut d = Download::new(m, stream::iter(parts).boxed());
        assert!(matches!(d.hashing, Hashing::Offloaded(Some(_))));
        assert_eq!(drain(&mut d).await.unwrap().len(), data.len());
        assert_eq!(d.digest(), Some(&want));

        let mut wrong = data.clone();
        wrong[5 << 20] ^= 1;
        let parts: Vec<Result<Bytes>> = wrong
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut m = meta(Some(want), Some(data.len() as u64));
        m.limit = None;
        let mut d = Download::new(m, stream::iter(parts).boxed());
        assert_eq!(
            drain(&mut d).await.unwrap_err().kind(),
            ErrorKind::DigestMismatch
        );
    }

    /// A call to `chunk` dropped while it waits for the hashing thread (the losing branch
    /// of a caller's `select!`, a timeout around it) loses nothing: mid-body, the chunk it
    /// had taken from the body is handed out by the next call; at the end, the next call
    /// takes the digest the thread computed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunk_call_dropped_while_it_waits_loses_nothing() {
        let parts: [&'static [u8]; 3] = [b"first ", b"second ", b"third"];
        let whole = parts.concat();
        let want = Digest::of(Algorithm::Sha256, &whole);
        for at_end in [false, true] {
            let mut m = meta(Some(want.clone()), Some(whole.len() as u64));
            m.limit = None;
            // A body that may not be polled past its end, as hyper's may not.
            let mut over = false;
            let end = stream::poll_fn(move |_| {
                assert!(!over, "the body was polled past its end");
                over = true;
                std::task::Poll::Ready(None)
            });
            let mut d = Download::new(m, body(&parts).chain(end).boxed());
            // A thread held back until told: before it takes a chunk (its queue of one
            // byte is full with the first), or before it hands out the digest.
            let (go, held) = std::sync::mpsc::channel::<()>();
            let hasher = Hasher::new(Algorithm::Sha256);
            let gated = Handoff::spawn(1, hasher, move |mut h, chunks| {
                if !at_end {
                    let _ = held.recv();
                }
                for chunk in chunks {
                    h.update(&chunk);
                }
                if at_end {
                    let _ = held.recv();
                }
                h.finish()
            });
            d.hashing = Hashing::Offloaded(Some(gated.ok().unwrap()));
            let mut got = Vec::new();
            let taken = if at_end { parts.len() } else { 1 };
            for _ in 0..taken {
                got.extend_from_slice(&d.chunk().await.unwrap().unwrap());
            }
            assert!(d.chunk().now_or_never().is_none(), "the call waits");
            go.send(()).unwrap();
            got.extend_from_slice(&drain(&mut d).await.unwrap());
            assert_eq!(got, whole, "at_end: {at_end}");
            assert_eq!(d.digest(), Some(&want), "at_end: {at_end}");
        }
    }

    /// Every call to `chunk` polled once and dropped whenever it waits: for the body (a
    /// chunk not yet arrived), for room in the hashing thread's queue (a queue smaller
    /// than a few chunks), for the digest at the end. The calls that returned hand out
    /// the content exactly, no chunk lost or repeated, and it verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunk_calls_dropped_at_every_wait_hand_out_the_content_exactly() {
        let whole: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        let want = Digest::of(Algorithm::Sha256, &whole);
        let parts: Vec<Bytes> = whole.chunks(5000).map(Bytes::copy_from_slice).collect();
        let body = stream::iter(parts).then(|chunk| async {
            // Not there at the first poll.
            tokio::task::yield_now().await;
            Ok(chunk)
        });
        let mut m = meta(Some(want.clone()), Some(whole.len() as u64));
        m.limit = None;
        let mut d = Download::new(m, body.boxed());
        let hasher = Hasher::new(Algorithm::Sha256);
        let small = Handoff::spawn(16 << 10, hasher, |mut h, chunks| {
            for chunk in chunks {
                h.update(&chunk);
            }
            h.finish()
        });
        d.hashing = Hashing::Offloaded(Some(small.ok().unwrap()));
        let (mut got, mut dropped) = (Vec::new(), 0);
        loop {
            match d.chunk().now_or_never() {
                None => {
                    dropped += 1;
                    tokio::task::yield_now().await;
                }
                Some(next) => match next.unwrap() {
                    Some(chunk) => got.extend_from_slice(&chunk),
                    None => break,
                },
            }
        }
        assert!(dropped > 0);
        assert!(got == whole, "{dropped} calls dropped");
        assert_eq!(d.digest(), Some(&want));
    }

    /// A hashing thread that panics (mid-body, or as the body ends) fails the download
    /// with an error that names the object, its URL and what the panic said.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_hashing_thread_is_reported_with_the_object() {
        let chunk: &'static [u8] = &[7u8; 1000];
        for at_end in [false, true] {
            let mut m = meta(None, None);
            m.limit = None;
            let mut d = Download::new(m, body(&[chunk, chunk, chunk]));
            let panicking = Handoff::spawn(10, (), move |(), chunks| {
                if at_end {
                    chunks.for_each(drop);
                }
                panic!("hasher exploded")
            });
            d.hashing = Hashing::Offloaded(Some(panicking.ok().unwrap()));
            let e = drain(&mut d).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Io, "{e}");
            assert_eq!(e.url(), Some("http://x/y"), "{e}");
            let said = e.to_string();
            assert!(said.starts_with("t: http://x/y: "), "{said}");
            assert!(said.contains("hashing thread panicked"), "{said}");
            assert!(said.contains("hasher exploded"), "{said}");
        }
    }

    /// A caller that asks again after the verdict gets the verdict again: the body, which
    /// may be a stream that must not be polled after its end, is not asked again, and
    /// the hash is not taken twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_verdict_stands_when_asked_again() {
        let data: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
        for len in [11, data.len()] {
            let want = Digest::of(Algorithm::Sha256, b"something else");
            let mut m = meta(Some(want), Some(len as u64));
            m.limit = None;
            let chunks: Vec<Bytes> = data[..len]
                .chunks(1 << 20)
                .map(Bytes::copy_from_slice)
                .collect();
            // `unfold` panics when polled after its end.
            let body = stream::unfold(chunks.into_iter(), |mut rest| async move {
                rest.next().map(|c| (Ok(c), rest))
            })
            .boxed();
            let mut d = Download::new(m, body);
            assert_eq!(
                drain(&mut d).await.unwrap_err().kind(),
                ErrorKind::DigestMismatch
            );
            for _ in 0..2 {
                let again = d.chunk().await.unwrap_err();
                assert_eq!(again.kind(), ErrorKind::DigestMismatch, "{again}");
            }
            assert_eq!(d.digest(), None);
        }
    }

    /// The error said again is the one said first: a body that broke on another host
    /// than the download's first (a mirror's failure handed on to the registry, a ranged
    /// part) names that host's URL, and asked again it named the first URL instead.
    #[tokio::test]
    async fn a_failure_said_again_names_the_url_that_failed() {
        let broke = Error::new(ErrorKind::Connect, "connection reset")
            .with_url("http://registry.example/v2/x/blobs/sha256:ab?sig=secret")
            .with_status(502)
            .with_attempts(4)
            .restartable(4);
        let body = stream::iter(vec![Ok(Bytes::from_static(b"ab")), Err(broke)]).boxed();
        let mut d = Download::new(meta(None, None), body);
        let first = drain(&mut d).await.unwrap_err();
        assert_eq!(
            first.url(),
            Some("http://registry.example/v2/x/blobs/sha256:ab?…")
        );
        assert!(
            first.to_string().contains("gave up after 4 attempts"),
            "{first}"
        );
        for _ in 0..2 {
            let again = d.chunk().await.unwrap_err();
            assert_eq!(again.to_string(), first.to_string());
            assert_eq!(again.url(), first.url());
            assert_eq!(again.kind(), first.kind());
            assert_eq!(again.status(), Some(502));
            assert_eq!(again.object(), Some("t"));
            // A caller that held everything back may still fetch it again whole.
            assert_eq!(again.restart(), Some(4));
        }
    }

    #[tokio::test]
    async fn skipping_hands_out_the_rest_and_verifies_the_whole() {
        let want = Digest::of(Algorithm::Sha256, b"hello world");
        let prefix = |bytes: &[u8]| {
            let mut hasher = Hasher::new(Algorithm::Sha256);
            hasher.update(bytes);
            Prefix {
                len: bytes.len() as u64,
                hasher,
            }
        };
        let whole = || body(&[b"hel", b"lo wo", b"rld"]);
        let mut d =
            Download::new(meta(Some(want.clone()), Some(11)), whole()).skipping(prefix(b"hello"));
        assert_eq!(drain(&mut d).await.unwrap(), b" world");
        assert_eq!(d.digest(), Some(&want));
        assert_eq!(d.received(), 11);

        let mut d =
            Download::new(meta(Some(want.clone()), Some(11)), whole()).skipping(prefix(b"jello"));
        let e = drain(&mut d).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DigestMismatch, "{e}");
    }

    /// `limit` only caps the bytes, as its documentation says: content under one that no
    /// digest or size verifies is not held to be a manifest (whole JSON) unless asked
    /// to be, and a library's own remote may set one for any content.
    #[tokio::test]
    async fn computes_digest_when_none_expected() {
        let mut d = Download::new(meta(None, None), body(&[b"abc"]));
        drain(&mut d).await.unwrap();
        assert_eq!(d.digest(), Some(&Digest::of(Algorithm::Sha256, b"abc")));
    }

    /// A manifest with no digest and no size to check it by (a tag from a server that
    /// announced neither) passed whatever arrived before its connection closed: cut short,
    /// it was handed out as the manifest. It must at least be a whole JSON object.
    #[tokio::test]
    async fn a_manifest_nothing_verifies_must_be_whole_json() {
        let whole: &'static [u8] = br#"{"schemaVersion":2,"layers":[]}"#;
        let manifest = |m: Meta, b| Download::new(m, b).whole_json_unless_verified();
        let mut d = manifest(meta(None, None), body(&[&whole[..10], &whole[10..]]));
        assert_eq!(drain(&mut d).await.unwrap(), whole);
        assert_eq!(d.meta().media_type, None, "the type is not read from it");

        for cut in [20, 0] {
            let mut d = manifest(meta(None, None), body(&[&whole[..cut]]));
            let e = drain(&mut d).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::SizeMismatch, "{e}");
            let said = format!("ended after {cut} bytes, before its JSON did");
            assert!(e.to_string().contains(&said), "{e}");
        }
        for not_an_object in [&b"[1, 2]"[..], b"{} trailing"] {
            let mut d = manifest(meta(None, None), body(&[not_an_object]));
            let e = drain(&mut d).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            assert!(e.to_string().contains("no digest to verify it"), "{e}");
        }

        // A size says only how long it is: an empty answer under `Content-Length: 0`
        // passed as the manifest. Not cut short, it is no manifest.
        let short = &whole[..20];
        for (content, size) in [(short, 20), (&b""[..], 0)] {
            let mut d = manifest(meta(None, Some(size)), body(&[content]));
            let e = drain(&mut d).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            assert!(e.to_string().contains("the manifest is not JSON"), "{e}");
        }
        let mut d = manifest(meta(None, Some(whole.len() as u64)), body(&[whole]));
        assert_eq!(drain(&mut d).await.unwrap(), whole);

        // With a digest, it decides, as before.
        let digest = Digest::of(Algorithm::Sha256, short);
        let mut d = manifest(meta(Some(digest), None), body(&[short]));
        assert_eq!(drain(&mut d).await.unwrap(), short);
    }
}
