//! Parallel ranged fetch for large blobs on slow connections.
//!
//! Some servers cap the bandwidth of each connection (object stores, CDNs, proxies); one
//! stream then crawls while the link is idle. A large blob whose server honours `Range`
//! is therefore *probed*: the first stream runs alone for a few MiB, and only if it is
//! slower than [`RangeOptions::slow_below`] twice in a row, while the remote's large
//! downloads together stay below [`RangeOptions::fast_link`], is the rest split into parts
//! fetched concurrently, `streams` connections in all (the first stream counts until it
//! reaches the end of its part). A stream judged fast is probed again once it has received
//! as much again: a burst at its start must not keep a slow link whole. Parts are handed
//! out strictly in order, so the digest is
//! still computed over the content in order. Each part being fetched holds one permit of
//! a budget of `streams` parts shared by every download of a remote: however many blobs
//! the worker fetches at once, parts under way hold at most `streams × part_size` bytes.
//! A part gives its permit back as it is handed on, so that the next one downloads while
//! it is hashed: a split blob holds up to two parts beyond the budget, the one it hands on
//! and the one before, still with the hashing thread or the writer. A slow blob that
//! finds the budget in use goes on as one stream and splits once two parts fit.
//! On a fast link (loopback, a LAN registry) nothing changes: extra requests would only
//! cost the registry CPU.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, ErrorKind, Result};
use crate::registry::{
    resume_budget, Address, RegistryRemote, Resumable, Serving, PIECE, PROGRESS,
};
use crate::retry;
use crate::transport;

/// When and how to split a download into ranges.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RangeOptions {
    /// Concurrent streams at most for one blob, and parts in memory at most for all blobs
    /// of a remote together; 1 turns ranged fetching off.
    pub streams: usize,
    /// Blobs smaller than this are always fetched with one stream.
    pub threshold: u64,
    /// Size of one part. A part is held in memory while it is fetched, growing as its
    /// bytes arrive: the parts of a remote's downloads hold up to `streams × part_size`
    /// bytes, and two parts more per blob being split (see the module's docs).
    pub part_size: u64,
    /// How much the first stream receives before its speed is judged. A stream judged
    /// slow is probed once more, and split only if it is slow again: one stall of the
    /// server or of this machine must not pass for a slow link.
    pub probe: u64,
    /// How long each window of the probe lasts at least: on a fast link the first MiB
    /// take a few milliseconds, and a pause of this process on a busy machine must not
    /// pass for a slow server.
    pub probe_time: Duration,
    /// A first stream slower than this (bytes per second) triggers parallel parts. The
    /// rate counts only the time spent waiting for the network: a consumer that is slower
    /// than the link (a slow disk, a slow reader of stdout) is not helped by more streams.
    pub slow_below: u64,
    /// A remote whose large downloads together receive at least this much per second
    /// over a probe window is not on a slow link, however small one stream's share: eight
    /// blobs at once from a fast registry each get an eighth of the link or of this
    /// machine, and parts would only add connections and memory to a link already full.
    pub fast_link: u64,
}

impl Default for RangeOptions {
    fn default() -> Self {
        RangeOptions {
            streams: 4,
            threshold: 64 << 20,
            part_size: PART_SIZE,
            // Two windows of 2 MiB and 50 ms: a slow link is split as early as after one
            // window of 4 MiB and 100 ms, and a stall must span both to split a fast one.
            probe: 2 << 20,
            probe_time: Duration::from_millis(50),
            slow_below: 128 << 20,
            // Four slow streams' worth: four blobs behind a per-connection limit of up to
            // 128 MiB/s still split.
            fast_link: 512 << 20,
        }
    }
}

/// The default part size, chosen by measurement (README, Performance): each part pays a
/// round trip before its first byte, which small parts pay too often.
const PART_SIZE: u64 = 8 << 20;

impl RangeOptions {
    /// Whether a blob of `size` whose server answered with `headers` over `version` may be
    /// split. Not over HTTP/2: the parts would be streams of the same connection, sharing
    /// its window and its TCP flow, which is all a throttled link gives one connection.
    pub fn applies(&self, size: Option<u64>, headers: &HeaderMap, version: Version) -> bool {
        let ranges = headers
            .get(http::header::ACCEPT_RANGES)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
        self.streams > 1
            && ranges
            && version < Version::HTTP_2
            && size.is_some_and(|s| s >= self.threshold)
    }

    /// What every download of one remote shares.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::new(Shared {
            // A semaphore panics past its maximum, which no budget of parts comes near.
            budget: Arc::new(Semaphore::new(
                self.streams.clamp(1, Semaphore::MAX_PERMITS),
            )),
            received: AtomicU64::new(0),
        })
    }
}

/// What the large downloads of one remote share: the budget of parts in memory, and the
/// bytes they have received in all, which tells a slow link from a fast one shared.
pub(crate) struct Shared {
    budget: Arc<Semaphore>,
    received: AtomicU64,
}

/// What the first stream does while the probe runs and after it.
enum Phase {
    /// Judging the first stream's speed.
    Probing,
    /// Fast when last judged: the first stream delivers, and is probed again once it
    /// reaches `again` (see [`Adaptive::judge`]).
    Fast { again: u64 },
    /// Fast enough, or too near the end to split: the first stream delivers everything.
    Single,
    /// Slow, but other downloads hold the budget: the first stream goes on, and the rest
    /// is split as soon as enough of the budget is free.
    Slow,
    /// Slow: the first stream delivers up to `cut`, then the parts deliver the rest.
    Split { cut: u64, parts: Box<Parts> },
}

/// An in-order byte stream that may switch from one stream to parallel parts.
pub(crate) struct Adaptive {
    first: Option<BoxStream<'static, Result<Bytes>>>,
    source: Source,
    opts: RangeOptions,
    /// Where the probe's window started: past 0 when a download carries on after content
    /// kept by an earlier run, and where the first window ended for the second.
    start: u64,
    offset: u64,
    started: Instant,
    /// Time the probe spent waiting for the first stream's next bytes.
    waited: Duration,
    /// What the remote's large downloads had received when the probe's window started.
    shared_at_start: u64,
    /// The probe's first window was slow.
    slow_once: bool,
    /// Where the first stream started.
    origin: u64,
    phase: Phase,
}

/// Where parts come from: the first response's host and URL, and what the remote's
/// downloads share.
#[derive(Clone)]
pub(crate) struct Source {
    pub(crate) remote: RegistryRemote,
    /// The host that served the first stream; the parts go to it too.
    pub(crate) host: usize,
    pub(crate) url: Uri,
    pub(crate) headers: HeaderMap,
    /// Bytes in the whole blob.
    pub(crate) total: u64,
    /// `total` is the size given alone (a `size:` hint, a descriptor's), the server having
    /// declared none.
    pub(crate) total_given: bool,
    /// The host whose answer declared `total`; `None` for the size given alone.
    pub(crate) sized_by: Option<usize>,
    pub(crate) shared: Arc<Shared>,
    /// Where the content is on every host: the rest moves on from a mirror whose parts
    /// fail, as a mirror's broken body does.
    pub(crate) address: Option<Address>,
    /// The host serving the first stream now, and its URL: the parts go where it went.
    pub(crate) serving: Serving,
}

impl Source {
    /// Moves to the host the first stream was handed over to, if a failing mirror did,
    /// with the word of the size its answers gave: a resume's on the same host too, which
    /// may have confirmed a size given alone.
    fn follow_first_stream(&mut self) {
        let served = &*self.serving.lock().expect("serving host poisoned");
        if served.host != self.host {
            (self.host, self.url) = (served.host, served.url.clone());
        }
        (self.sized_by, self.total_given) = (served.sized_by, served.size_given);
    }

    /// `host` declared the size in its answer to a part: its word for the other parts
    /// (`confirmed`), and for the first stream when it serves that too, whose rest a `416`
    /// then refuses short of the size the host declared, not of the size given alone.
    fn confirm(&self, host: usize, confirmed: &Confirmed) {
        confirmed.confirm(host);
        let mut served = self.serving.lock().expect("serving host poisoned");
        if served.host == host && served.size_given {
            (served.sized_by, served.size_given) = (Some(host), false);
        }
    }

    /// Whether `host` declared the size itself (no longer the size given alone): in an
    /// answer to a part (`confirmed`), or in one to the first stream it serves now (a
    /// resume's `206`), which may come while parts started before it are under way, with
    /// the word of the size as it was when they started.
    fn declared_by(&self, host: usize, confirmed: &Confirmed) -> bool {
        if confirmed.by(host) {
            return true;
        }
        let served = self.serving.lock().expect("serving host poisoned");
        served.host == host && served.sized_by == Some(host) && !served.size_given
    }

    /// Takes the size as `host`'s word if its answer to a part `confirmed` it: a `416`
    /// short of it, to the one stream the parts go back to or to the host they are handed
    /// over to, is then a contradiction, not the end of content of a size given alone.
    fn take_word(&mut self, host: usize, confirmed: &Confirmed) {
        if confirmed.by(host) {
            (self.sized_by, self.total_given) = (Some(host), false);
        }
    }
}

impl Adaptive {
    /// Wraps the first response's `body` (a resuming stream of the blob from `start` on).
    pub(crate) fn new(
        first: BoxStream<'static, Result<Bytes>>,
        start: u64,
        source: Source,
        opts: RangeOptions,
    ) -> Adaptive {
        let mut adaptive = Adaptive {
            first: Some(first),
            source,
            opts,
            start,
            offset: start,
            started: Instant::now(),
            waited: Duration::ZERO,
            shared_at_start: 0,
            slow_once: false,
            origin: start,
            phase: Phase::Probing,
        };
        adaptive.begin_window();
        adaptive
    }

    /// Starts a window of the probe at the current offset.
    fn begin_window(&mut self) {
        self.start = self.offset;
        self.started = Instant::now();
        self.waited = Duration::ZERO;
        self.shared_at_start = self.source.shared.received.load(Ordering::Relaxed);
    }

    /// The stream of the whole content, in order.
    pub(crate) fn into_stream(self) -> BoxStream<'static, Result<Bytes>> {
        stream::try_unfold(self, |mut s| async move {
            let next = s.next().await?;
            Ok(next.map(|c| (c, s)))
        })
        .boxed()
    }

    async fn next(&mut self) -> Result<Option<Bytes>> {
        let streams = self.opts.streams;
        if let Phase::Split { cut, parts } = &mut self.phase {
            if self.offset < *cut {
                // The first stream is still one of the connections.
                parts.top_up(streams - 1);
            } else {
                self.first = None; // closes the first connection
                let confirmed = parts.confirmed.clone();
                match parts.next(streams).await {
                    Ok(Next::Part(bytes)) => {
                        self.offset += bytes.len() as u64;
                        self.count(&bytes);
                        return Ok(Some(bytes));
                    }
                    Ok(Next::End) => return Ok(None),
                    Ok(Next::RangeIgnored) => self.back_to_one_stream(&confirmed).await?,
                    Ok(Next::Failed(e, host)) => self.hand_over(host, e, &confirmed).await?,
                    Err(e) => self.hand_over(self.source.host, e, &confirmed).await?,
                }
            }
        }
        let Some(first) = self.first.as_mut() else {
            return Ok(None);
        };
        let probing = matches!(self.phase, Phase::Probing);
        let asked = probing.then(Instant::now);
        let next = first.next().await;
        if let Some(asked) = asked {
            self.waited += asked.elapsed();
        }
        let Some(mut chunk) = next.transpose()? else {
            return Ok(None);
        };
        if let Phase::Split { cut, .. } = &self.phase {
            let room = (*cut - self.offset) as usize;
            if chunk.len() > room {
                chunk.truncate(room);
            }
        }
        self.offset += chunk.len() as u64;
        self.count(&chunk);
        match self.phase {
            Phase::Probing
                if self.offset - self.start >= self.opts.probe
                    && self.started.elapsed() >= self.opts.probe_time =>
            {
                self.judge()
            }
            Phase::Slow => self.try_split(),
            Phase::Fast { again } if self.offset >= again => {
                tracing::debug!(url = %crate::transport::redact(&self.source.url), offset = self.offset, "probing the stream again");
                self.phase = Phase::Probing;
                self.slow_once = false;
                self.begin_window();
            }
            _ => {}
        }
        Ok(Some(chunk))
    }

    /// A server that advertised ranges answered a part with the whole blob (a proxy or a
    /// redirect target that does not do ranges): the rest comes over one stream again, from
    /// the next host if a mirror fails it. A size the parts' answers `confirmed` is their
    /// host's word for that stream too.
    async fn back_to_one_stream(&mut self, confirmed: &Confirmed) -> Result<()> {
        self.source.follow_first_stream();
        self.source.take_word(self.source.host, confirmed);
        let heads = self.heads();
        let s = &self.source;
        tracing::debug!(url = %crate::transport::redact(&s.url), offset = self.offset, "a part was answered without its range; one stream for the rest");
        let host = s.host;
        let by = move || confirmed.by(host).then_some(host);
        let settle = move || futures::FutureExt::boxed(heads.clone().settled());
        let word = crate::registry::PartsWord {
            by: &by,
            settle: &settle,
        };
        let rest = Resumable::from_offset(s, self.offset, &word).await;
        let rest = match rest {
            Ok(rest) => rest,
            Err(e) => return self.hand_over(s.host, e, confirmed).await,
        };
        self.first = Some(rest);
        self.phase = Phase::Single; // drops the parts under way
        Ok(())
    }

    /// A part failed for good with `e` on `host`: on a mirror, the next host serves the
    /// rest as one stream (left to the mirror, one broken cache would fail the object
    /// while the registry has it); on the registry itself, `e` stands.
    ///
    /// The host that took the rest over is probed as the first host was, and split when
    /// it is as slow: the rest went on as one stream, however large and slow. A size the
    /// parts' answers from `host` `confirmed` is its word, which the next host's answer is
    /// held to.
    async fn hand_over(&mut self, host: usize, e: Error, confirmed: &Confirmed) -> Result<()> {
        self.source.take_word(host, confirmed);
        let heads = self.heads();
        let by = move || confirmed.by(host).then_some(host);
        let settle = move || futures::FutureExt::boxed(heads.clone().settled());
        let word = crate::registry::PartsWord {
            by: &by,
            settle: &settle,
        };
        let failed = (host, &word);
        let (rest, ranges) = Resumable::after_failure(&self.source, failed, self.offset, e).await?;
        self.first = Some(rest);
        self.phase = Phase::Single; // drops the parts under way
        if ranges {
            self.source.follow_first_stream();
            tracing::debug!(url = %crate::transport::redact(&self.source.url), offset = self.offset, "the next host serves the rest; probing it");
            self.phase = Phase::Probing;
            self.slow_once = false;
            self.begin_window();
        }
        Ok(())
    }

    /// The answers of the parts under way, to wait for before a `416` to the rest is
    /// judged ([`Heads`]).
    fn heads(&self) -> Heads {
        match &self.phase {
            Phase::Split { parts, .. } => {
                Heads(parts.running.iter().map(|p| p.head.clone()).collect())
            }
            _ => Heads(Vec::new()),
        }
    }

    /// Adds bytes handed on to what the remote's large downloads received in all.
    fn count(&self, bytes: &Bytes) {
        let received = &self.source.shared.received;
        received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }

    /// A probe window is done: is the first stream slow enough to split the rest?
    fn judge(&mut self) {
        let waited = self.waited.max(Duration::from_micros(100));
        let rate = ((self.offset - self.start) as f64 / waited.as_secs_f64()) as u64;
        let url = &self.source.url;
        if rate >= self.opts.slow_below {
            // Probed again once it has received as much again: a server's burst (after a
            // stall, or from a cache's first bytes) on a slow link was judged fast, and
            // kept the rest of the blob on one slow stream. Doubling the distance keeps
            // the probes few (a 16 GiB blob is probed some 13 times), each a stall's
            // chance to split a fast link.
            let again = self.offset + (self.offset - self.origin).max(self.opts.probe);
            tracing::debug!(url = %crate::transport::redact(url), rate_mb_s = rate >> 20, again, "single stream is fast enough");
            self.phase = Phase::Fast { again };
            return;
        }
        let now = self.source.shared.received.load(Ordering::Relaxed);
        let all = now.saturating_sub(self.shared_at_start);
        let window = self.started.elapsed().max(Duration::from_micros(100));
        let all_rate = (all as f64 / window.as_secs_f64()) as u64;
        if all_rate >= self.opts.fast_link {
            tracing::debug!(url = %crate::transport::redact(url), rate_mb_s = rate >> 20, all_mb_s = all_rate >> 20, "slow stream on a fast link: one stream");
            self.phase = Phase::Single;
            return;
        }
        if !self.slow_once {
            // A stall (a busy registry, this process paused) fills one window; a throttled
            // link is slow in the next one too. Telling them apart costs a slow link one
            // more window before its parts start.
            tracing::debug!(url = %crate::transport::redact(url), rate_mb_s = rate >> 20, "slow window; probing again");
            self.slow_once = true;
            self.begin_window();
            return;
        }
        tracing::debug!(url = %crate::transport::redact(url), rate_mb_s = rate >> 20, "slow stream");
        self.phase = Phase::Slow;
        self.try_split();
    }

    /// Splits the rest into parts if at least two more streams fit in the budget (with
    /// one, stopping the first stream at the cut would gain nothing).
    fn try_split(&mut self) {
        let part = self.opts.part_size.max(1);
        let Some(cut) = cut_for(self.offset, part, self.source.total) else {
            self.phase = Phase::Single;
            return;
        };
        let extra = self.opts.streams - 1;
        if self.source.shared.budget.available_permits() < extra.min(2) {
            return; // other downloads hold the budget; asked again at the next chunk
        }
        self.source.follow_first_stream();
        tracing::debug!(url = %crate::transport::redact(&self.source.url), offset = self.offset, streams = self.opts.streams, "fetching the rest in parallel ranges");
        let mut parts = Box::new(Parts {
            source: self.source.clone(),
            part,
            next_start: cut,
            running: VecDeque::new(),
            strikes: Arc::default(),
            confirmed: Arc::default(),
            range_ignored: Arc::default(),
        });
        parts.top_up(extra);
        self.phase = Phase::Split { cut, parts };
    }
}

/// Where the first stream, at `offset`, stops for parts of `part` bytes to take over: the
/// end of the part it is in. `None` when fewer than two parts would be left of `total`
/// bytes, one stream then serving the rest. A `part_size` set through the library may be
/// anything up to `u64::MAX`, which overflowed the sums here (a panic in a debug build, a
/// wrapped cut in a release one).
fn cut_for(offset: u64, part: u64, total: u64) -> Option<u64> {
    let cut = (offset / part + 1).checked_mul(part)?;
    (cut.checked_add(part)? < total).then_some(cut)
}

/// What [`Parts::next`] found.
enum Next {
    /// The next part in order.
    Part(Bytes),
    /// Every part has been handed on.
    End,
    /// The server answered a part with the whole blob.
    RangeIgnored,
    /// The next part failed for good, with this error, on this host.
    Failed(Error, usize),
}

/// The parts of a split download: those under way, in order, and where the next begins.
struct Parts {
    source: Source,
    part: u64,
    next_start: u64,
    running: VecDeque<PartTask>,
    /// The failures of the parts on a mirror, counted together.
    strikes: Arc<Strikes>,
    /// The hosts whose answer to a part confirmed the blob's size.
    confirmed: Arc<Confirmed>,
    /// Set once a part was answered without its range: the rest goes back to one stream
    /// when that part's turn comes, and a part started meanwhile (at the first stream's
    /// cut, or as a part ahead is handed on) was asked for only to be dropped.
    range_ignored: Arc<AtomicBool>,
}

/// The hosts whose `206` to a part of a split download declared the blob's size (its
/// `Content-Range` total): their own word for every part from then on, as a single
/// stream's resume that declared it is for the rest after it. Kept by each part alone, a
/// `416` to the next part, after another part's `206` confirmed a size given alone, failed
/// as the bare status, which the worker does not fetch once more.
#[derive(Default)]
struct Confirmed(std::sync::Mutex<std::collections::HashSet<usize>>);

impl Confirmed {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<usize>> {
        // Every update is whole: a panic elsewhere leaves nothing half done.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `host` declared the size the parts are fetched against.
    fn confirm(&self, host: usize) {
        self.lock().insert(host);
    }

    /// Whether `host` declared it in an answer to any part.
    fn by(&self, host: usize) -> bool {
        self.lock().contains(&host)
    }
}

/// The failures in a row of a split download's parts on a mirror that hands over to
/// another host, counted together against the mirror's retries: a failing mirror is given
/// up on for the whole blob as soon as one request would be. Each part counting its own
/// cost a failing mirror every part's retry (6 failed requests for the 3 parts beside the
/// first stream) before the rest moved on; on the last host, with nowhere to go, each part
/// keeps its own retries, which transient faults deserve.
#[derive(Default)]
struct Strikes {
    /// Failures in a row since a part last made progress on the host.
    hosts: std::sync::Mutex<HostStrikes>,
}

/// Per host: failures in a row, and the failure it was given up on with.
type HostStrikes = std::collections::HashMap<usize, (u32, Option<Error>)>;

impl Strikes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HostStrikes> {
        // Every update is whole: a panic elsewhere leaves nothing half done.
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The failure `host` was given up on with, if it was.
    fn given_up(&self, host: usize) -> Option<Error> {
        self.lock().get(&host)?.1.as_ref().map(Error::shared)
    }

    /// A part on `host` made progress: its failures so far were not in a row.
    fn progress(&self, host: usize) {
        if let Some((count, None)) = self.lock().get_mut(&host) {
            *count = 0;
        }
    }

    /// Counts `e`, a transient failure of a part on `host`: the pause before the part asks
    /// again while `budget` retries are left to the parts together, else the failure the
    /// host is given up on with.
    fn strike(
        &self,
        host: usize,
        e: Error,
        budget: u32,
        policy: &retry::RetryPolicy,
    ) -> Result<Duration> {
        let mut hosts = self.lock();
        let (count, given_up) = hosts.entry(host).or_default();
        if let Some(first) = given_up {
            return Err(first.shared());
        }
        // As a request's retries are counted: a pause longer than dist waits ("come back
        // in an hour") ends it at once too.
        match policy.next(&e, *count, budget, None) {
            retry::Next::Retry(wait) => {
                *count += 1;
                Ok(wait)
            }
            _ => {
                let e = e.with_attempts(*count + 1);
                *given_up = Some(e.shared());
                Err(e)
            }
        }
    }
}

impl Parts {
    /// Starts parts while fewer than `limit` are under way and the budget has room.
    fn top_up(&mut self, limit: usize) {
        if self.range_ignored.load(Ordering::Relaxed) {
            return;
        }
        while self.running.len() < limit && self.next_start < self.source.total {
            match self.source.shared.budget.clone().try_acquire_owned() {
                Ok(permit) => self.start(permit),
                Err(_) => break,
            }
        }
    }

    fn start(&mut self, permit: OwnedSemaphorePermit) {
        let start = self.next_start;
        let end = start.saturating_add(self.part).min(self.source.total) - 1;
        self.next_start = end + 1;
        // Where the first stream is now: a mirror that failed it for good (the registry
        // took it over while the parts ran) would be asked for every later part, each
        // failing after its retry before the rest went to the registry as one stream.
        self.source.follow_first_stream();
        let source = self.source.clone();
        let (strikes, confirmed) = (self.strikes.clone(), self.confirmed.clone());
        let ignored = self.range_ignored.clone();
        let (judged, head) = tokio::sync::watch::channel(false);
        // Each part runs as its own task so parts download in parallel with the hashing
        // of earlier ones.
        let task = tokio::spawn(async move {
            let word = (&*strikes, &*confirmed, &judged);
            let part = fetch_part(&source, word, start, end).await;
            if matches!(part, Ok(None)) {
                ignored.store(true, Ordering::Relaxed);
            }
            part
        });
        self.running.push_back(PartTask {
            task,
            host: self.source.host,
            head,
            _permit: permit,
        });
    }

    /// The next part in order. With none under way it waits for the budget: a download
    /// only holds permits for parts it has started in order, the oldest first, so the
    /// oldest always finishes and gives its permit back.
    async fn next(&mut self, limit: usize) -> Result<Next> {
        self.top_up(limit);
        if self.running.is_empty() {
            if self.next_start >= self.source.total {
                return Ok(Next::End);
            }
            let permit = self
                .source
                .shared
                .budget
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| {
                    Error::new(ErrorKind::Interrupted, "range budget closed").with_cause(e)
                })?;
            self.start(permit);
        }
        let mut head = self.running.pop_front().expect("a part is under way");
        let part = (&mut head.task)
            .await
            .map_err(|e| Error::task_ended("part", e))?;
        // The rest goes on from the host after the one this part failed on: parts that
        // started before the first stream moved on failed on the host it left.
        let part = match part {
            Ok(part) => part,
            Err(failed) => {
                let e = failed.judged(&self.source, head.host, &self.confirmed);
                return Ok(Next::Failed(e, head.host));
            }
        };
        // The part leaves for the hasher: its permit goes back, and the next part starts
        // while this one is hashed.
        drop(head);
        let Some(bytes) = part else {
            return Ok(Next::RangeIgnored);
        };
        self.top_up(limit);
        Ok(Next::Part(bytes))
    }
}

/// Whether the parts under way have had their answers judged: each part's turns `true`
/// once a `206` to it was read (and its size confirmed, if it declares the size), and is
/// closed when the part ends.
#[derive(Clone)]
struct Heads(Vec<tokio::sync::watch::Receiver<bool>>);

impl Heads {
    /// Resolves once every part's answer was judged or the part ended. A part retrying a
    /// failing request keeps it waiting, within the part's retries.
    async fn settled(self) {
        for mut head in self.0 {
            let _ = head.wait_for(|&judged| judged).await;
        }
    }
}

/// A part being fetched, holding its share of the budget until it is handed on. Dropped
/// with the download (cancelled, or failed verification), it stops instead of finishing a
/// transfer nobody will read.
struct PartTask {
    task: tokio::task::JoinHandle<std::result::Result<Option<Bytes>, PartFailure>>,
    /// The host it is fetched from.
    host: usize,
    /// Whether its answer was judged ([`Heads`]).
    head: tokio::sync::watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for PartTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a part failed: `e`, and, where `e` judged its answer against a size given alone
/// that no answer from its host had confirmed yet (a `416`, a `206` declaring another
/// total), how it reads once one has. The parts' answers come in any order: a `206` to an
/// earlier part that confirmed the size may be taken in after a later part's `416`, the
/// server contradicting itself all the same. Judged as it came, that `416` failed as the
/// bare status, which the worker does not fetch once more, and another total blamed the
/// size given, depending on which answer came first.
struct PartFailure {
    e: Error,
    if_confirmed: Option<Error>,
}

impl From<Error> for PartFailure {
    fn from(e: Error) -> Self {
        PartFailure {
            e,
            if_confirmed: None,
        }
    }
}

impl PartFailure {
    /// The failure of a part on `host` as it reads when it is handed on, in order: by then
    /// the parts before it are in, and any of their answers that confirmed the size.
    fn judged(self, source: &Source, host: usize, confirmed: &Confirmed) -> Error {
        match self.if_confirmed {
            Some(e) if source.declared_by(host, confirmed) => e,
            _ => self.e,
        }
    }
}

/// Fetches bytes `start..=end` completely; `None` when the server answers with something
/// else than exactly that range (the whole blob, another range, a coded one, more bytes
/// than the range holds), and the rest of the blob is better fetched as one stream. The
/// request itself is retried (a 5xx, a 429, a dropped connection) by `request`; what this
/// retries, with the same backoff, is a body that breaks off after the answer, asking for
/// what is missing of the part only. Both count against one budget, failures in a row: a
/// part whose body keeps breaking costs `--retries` + 1 requests, not their square. As for
/// a single stream, a break after [`PROGRESS`] new bytes counts as the first again: a link
/// that cuts every connection after a few MiB (a proxy's limit on a connection's bytes or
/// lifetime) would otherwise never bring in a part larger than that. An answer its server
/// ended short of the part (no break) that brought a [`PIECE`] of it spends nothing, as a
/// single stream's does.
///
/// On a mirror that hands over to another host, the parts' failures count together in
/// `strikes` instead: the mirror is given up on for all of them at once. A size an answer
/// to any of the parts declared is its host's word for them all (`confirmed`), as is one
/// the first stream's resume declared meanwhile. `judged` turns `true` once a `206` was
/// judged so ([`Heads`]).
async fn fetch_part(
    source: &Source,
    (strikes, confirmed, judged): (&Strikes, &Confirmed, &tokio::sync::watch::Sender<bool>),
    start: u64,
    end: u64,
) -> std::result::Result<Option<Bytes>, PartFailure> {
    let Source {
        remote,
        host,
        url,
        headers,
        address,
        ..
    } = source;
    let host = *host;
    let budget = resume_budget(remote, host, address.as_ref());
    let together = crate::registry::hands_over(remote, host, address.as_ref());
    // Counted together, a request's retries are the parts', not its own.
    let request_budget = if together { 0 } else { budget };
    let want = (end - start + 1) as usize;
    // Room for a part of the default size at once; a larger one grows as bytes arrive. A
    // library caller may set any `part_size`, and one of terabytes, taken whole up front,
    // aborted the process on the allocation before a byte of it came.
    let mut got = BytesMut::with_capacity(want.min(PART_SIZE as usize));
    let mut h = headers.clone();
    let mut attempt = 0;
    // `got.len()` at the last break.
    let mut mark = 0;
    loop {
        if together {
            if let Some(e) = strikes.given_up(host) {
                return Err(e.into());
            }
        }
        let from = start + got.len() as u64;
        h.insert(
            http::header::RANGE,
            HeaderValue::from_str(&format!("bytes={from}-{end}")).expect("ascii"),
        );
        let counted = (&mut attempt, request_budget);
        let asked = remote
            .request_counted(host, Method::GET, url.clone(), &h, counted)
            .await
            .map_err(|e| e.with_url(url));
        let mut reply = match asked {
            Ok(reply) => reply,
            // Short of the size a server declared: the same contradiction as a `416` to a
            // single stream's rest, said so (a size mismatch, which the blob is fetched
            // once more for), not as the bare status.
            Err(e) if e.status() == Some(416) => {
                let refused = |confirmed| {
                    crate::registry::part_refused(source, host, (from, end), confirmed)
                        .map(|refused| refused.with_url(url))
                };
                let confirmed = source.declared_by(host, confirmed);
                return Err(PartFailure {
                    if_confirmed: if confirmed { None } else { refused(true) },
                    e: refused(confirmed).unwrap_or(e),
                });
            }
            Err(e) if together && e.is_transient() => {
                attempt = 0;
                let pause = strikes.strike(host, e, budget, remote.retry_policy())?;
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if reply.response.status() != StatusCode::PARTIAL_CONTENT {
            // Errors came back as errors: this is a success without the range.
            return Ok(None);
        }
        // A part is spliced in as a resume is: its answer's `Docker-Content-Digest`
        // follows the first answer's rule.
        crate::registry::refuse_other_at(
            address.as_ref(),
            reply.response.headers(),
            remote.host(host),
            "the part",
        )
        .map_err(|e| e.with_url(url))?;
        if crate::registry::is_coded(reply.response.headers()) {
            // A range of coded bytes (a CDN node that compresses): it continues no
            // content, and spliced in, it failed verification as corruption. One stream
            // serves the rest, decoded if it comes coded.
            tracing::debug!(url = %crate::transport::redact(url), "a part came back coded; the rest of the blob goes in one stream");
            return Ok(None);
        }
        let answered = crate::registry::content_range(reply.response.headers());
        // Less of the range than asked, from where it was asked (a server capping its
        // answers, as RFC 9110 lets it): a piece of the part, whose rest is asked for as a
        // single stream asks for the rest of such a range. Taken for another range, the
        // first one sent the rest of the blob back to one stream.
        let Some((_, last)) =
            answered.filter(|&(start, last)| start == from && (from..=end).contains(&last))
        else {
            tracing::warn!(
                url = %crate::transport::redact(url),
                asked = %format!("{from}-{end}"),
                got = %answered.map_or("no usable Content-Range".into(), |(s, e)| format!("{s}-{e}")),
                "a part came back as another range; the rest of the blob goes in one stream"
            );
            return Ok(None);
        };
        // The range asked for, of content of another size: not the content this is a part
        // of (a cache holding another object under its address). Not one stream's to
        // serve either, from the server that said so: the blob fails as content that is
        // not what was asked for, fetched once more (from the registry itself, or where it
        // may not pull, from the mirrors that may).
        let (asked, answered) = (format!("bytes={from}-{end}"), reply.response.headers());
        // A size given alone that an answer confirmed (to a part, or to the first stream's
        // resume) is the host's own word: a part declaring another contradicts the host,
        // not the size given.
        let given = source.total_given && !source.declared_by(host, confirmed);
        let other = |given| {
            crate::registry::other_total(
                &asked,
                Some(source.total),
                given,
                remote.host(host),
                answered,
            )
            .map_err(|e| e.with_url(url))
        };
        if let Err(e) = other(given) {
            let if_confirmed = if given { other(false).err() } else { None };
            return Err(PartFailure { e, if_confirmed });
        }
        // The blob's size declared (its `Content-Range` total): the host's own word from
        // then on, for this part and the others, a size given alone or not.
        if crate::registry::content_range_total(answered) == Some(source.total) {
            source.confirm(host, confirmed);
        }
        judged.send_replace(true);
        let transport = &remote.host(host).transport;
        // What the part holds once this answer is read whole.
        let upto = want - (end - last) as usize;
        let read = read_part(transport, reply.response.body_mut(), &mut got, upto).await;
        let read = match read {
            Ok(()) if got.len() == want => {
                if together {
                    strikes.progress(host);
                }
                return Ok(Some(got.freeze()));
            }
            // Its server ended the answer short of the part, having brought a piece of it
            // (a server capping its answers): progress, as for a single stream, and the
            // rest is asked for at once. Counted as a break, a server ending every answer
            // under a MiB failed the blob after `--retries` + 1 answers, which one stream
            // carried through.
            Ok(()) if got.len() >= mark + PIECE as usize => {
                if together {
                    strikes.progress(host);
                } else {
                    attempt = 0;
                }
                mark = got.len();
                tracing::debug!(url = %crate::transport::redact(url), got = got.len(), want, "a part's answer ended short; asking for the rest");
                continue;
            }
            Ok(()) => ended_short(want - got.len()),
            Err(e) => e,
        };
        match read.with_url(url) {
            // More than the range its `Content-Range` names (a `Content-Length` that
            // counts more, a chunked body that goes on): as little a part of the content
            // as another range is. Failed as too large, it failed the object for good,
            // where one stream serves it.
            e if e.kind() == ErrorKind::TooLarge => {
                tracing::warn!(url = %crate::transport::redact(url), error = %e, "a part ran past its range; the rest of the blob goes in one stream");
                return Ok(None);
            }
            // Broken after its last byte (a chunked answer closed without its last
            // chunk): the part is whole, and one past its end is no range to ask for.
            e if e.is_transient() && got.len() == want => {
                tracing::debug!(url = %crate::transport::redact(url), error = %e, "part broke after its last byte");
                return Ok(Some(got.freeze()));
            }
            e if together && e.is_transient() => {
                if got.len() >= mark + PROGRESS as usize {
                    strikes.progress(host);
                }
                mark = got.len();
                let pause = strikes.strike(host, e, budget, remote.retry_policy())?;
                tokio::time::sleep(pause).await;
            }
            e if e.is_transient() => {
                if got.len() >= mark + PROGRESS as usize {
                    attempt = 0;
                }
                if attempt >= budget {
                    return Err(e.with_attempts(attempt + 1).into());
                }
                attempt += 1;
                mark = got.len();
                tokio::time::sleep(remote.retry_policy().backoff(attempt - 1)).await;
            }
            e => return Err(e.into()),
        }
    }
}

/// Appends a part's body to `got`, up to the `upto` bytes this answer's range brings it
/// to: more is no part of the content. What arrived before a break stays there; a body
/// its server ended short of them is for the caller to tell (see [`ended_short`]).
async fn read_part(
    transport: &transport::Transport,
    body: &mut transport::ResponseBody,
    got: &mut BytesMut,
    upto: usize,
) -> Result<()> {
    transport::read_onto(transport, body, got, upto)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::TooLarge => Error::new(
                ErrorKind::TooLarge,
                format!(
                    "part longer than the {} its range holds",
                    crate::plural::Bytes(upto as u64)
                ),
            ),
            _ => e,
        })?;
    Ok(())
}

/// A part's answer its server ended `missing` bytes short of the part's end, counted as
/// a break: it brought less than a piece of the part.
fn ended_short(missing: usize) -> Error {
    Error::new(
        ErrorKind::Connect,
        format!(
            "part ended {} short of its end",
            crate::plural::Bytes(missing as u64)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `streams` is a `usize` a library user may set to anything; tokio's semaphore
    /// panics past its own maximum of permits, which made building a remote panic.
    #[test]
    fn any_number_of_streams_makes_a_budget() {
        for streams in [0, 1, 4, usize::MAX] {
            let opts = RangeOptions {
                streams,
                ..RangeOptions::default()
            };
            assert!(opts.shared().budget.available_permits() >= 1);
        }
    }

    #[test]
    fn a_huge_part_size_leaves_one_stream() {
        let total = 1 << 30;
        assert_eq!(cut_for(5 << 20, 8 << 20, total), Some(8 << 20));
        assert_eq!(cut_for(8 << 20, 8 << 20, total), Some(16 << 20));
        assert_eq!(cut_for(total - (12 << 20), 8 << 20, total), None);
        for part in [u64::MAX, u64::MAX / 2 + 1, 1 << 63] {
            assert_eq!(cut_for(5 << 20, part, total), None, "{part}");
            assert_eq!(cut_for(u64::MAX - 1, part, u64::MAX), None, "{part}");
        }
    }

    #[test]
    fn applies_only_to_large_ranged_blobs() {
        let o = RangeOptions::default();
        let h1 = Version::HTTP_11;
        let mut h = HeaderMap::new();
        assert!(!o.applies(Some(1 << 30), &h, h1));
        h.insert(
            http::header::ACCEPT_RANGES,
            HeaderValue::from_static("bytes"),
        );
        assert!(o.applies(Some(1 << 30), &h, h1));
        assert!(o.applies(Some(1 << 30), &h, Version::HTTP_10));
        assert!(!o.applies(Some(1 << 30), &h, Version::HTTP_2));
        assert!(!o.applies(Some(1 << 20), &h, h1));
        assert!(!o.applies(None, &h, h1));
        let off = RangeOptions { streams: 1, ..o };
        assert!(!off.applies(Some(1 << 30), &h, h1));
    }
}
