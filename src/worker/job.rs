//! One object from start to end: fetch, verify, deliver to the destination.
//!
//! Content that fails verification (wrong digest or size) is fetched once more from
//! scratch (a proxy or a flaky disk may have corrupted one transfer) and only then reported;
//! it never reaches its final place. A blob whose download an earlier run left part-way
//! is carried on from where it stopped ([`LayoutStore::resume`]). A blob is fetched into
//! the store under its lock ([`LayoutStore::try_ingest`]), so runs into one store fetch it
//! once.

use std::time::Instant;

use futures::FutureExt;

use super::ingest::{self, Claimed, LOCK_FROM};
use super::line::Job;
use super::progress::{Progress, Tally};
use super::{Destination, Outcome, Status};
use crate::blocking;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{Download, Prefix};
use crate::remote::{fetch_again, Remote};
use crate::sink::layout::{IngestLock, LayoutStore, TempBlob};
use crate::sink::spool::Spool;

/// Runs one job to its outcome.
pub async fn run(
    remote: &dyn Remote,
    line: u64,
    job: Job,
    destination: &Destination,
    progress: &Progress,
) -> Outcome {
    run_since(remote, line, job, destination, progress, Instant::now()).await
}

/// As [`run`], its time (`ms`) counted from `started`: when the job began, before its
/// turn among the batch's lines of its digest, as it counts a wait on another run's lock
/// file.
pub(super) async fn run_since(
    remote: &dyn Remote,
    line: u64,
    job: Job,
    destination: &Destination,
    progress: &Progress,
    started: Instant,
) -> Outcome {
    let mut outcome = Outcome::new(line, job.object.to_string());
    let mut tally = Tally::new(progress, job.hints.size);
    let fetched = async {
        match destination {
            Destination::Spool { threshold } => {
                to_spool(remote, &job, *threshold, &mut tally, &mut outcome).await
            }
            Destination::Store {
                store,
                verify_existing,
            } => {
                to_store(
                    remote,
                    &job,
                    store,
                    *verify_existing,
                    &mut tally,
                    &mut outcome,
                )
                .await
            }
        }
    };
    // A bug that panics in a fetch fails its object alone, caught here where the job is
    // still at hand: caught by the task's join instead, its line said nothing of what it
    // had asked for, as a line that does not read.
    let result = std::panic::AssertUnwindSafe(fetched)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(ended_abnormally(panic.as_ref())));
    if let Err(e) = result {
        tally.failed();
        // A 404 for a layer kept at its `urls`, or whose type marks it as one a registry
        // need not hold, reads as a registry that lost it. Only the blob's own 404: a
        // repository that does not exist (`NAME_UNKNOWN`) has a cause of its own.
        let blob_missing = e.kind() == ErrorKind::NotFound
            && (e.codes().is_empty() || e.codes().iter().any(|c| c == "BLOB_UNKNOWN"));
        let non_distributable = job
            .hints
            .media_types
            .first()
            .is_some_and(|t| crate::media::is_non_distributable(t));
        let e = match blob_missing {
            true if !job.urls.is_empty() => e.with_note(format!(
                "its descriptor lists urls ({}): a non-distributable layer, which a registry \
                 need not hold; dist fetches nothing from urls (a pull skips such layers)",
                crate::image::urls_shown(&job.urls)
            )),
            true if non_distributable => e.with_note(
                "its media type marks a non-distributable layer, which a registry need not \
                 hold, and its descriptor lists no urls where it is kept",
            ),
            _ => e,
        };
        outcome.fail(e.with_object(&job.object));
        record_asked(&mut outcome, &job);
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// The error of a fetch that panicked, with the panic's message.
fn ended_abnormally(panic: &(dyn std::any::Any + Send)) -> Error {
    let said = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    Error::new(ErrorKind::Io, "fetch task ended abnormally")
        .with_cause(format!("panicked with message {said:?}"))
}

/// Records what a failed object's input line asked for, whatever the fetch had learnt when
/// it failed: a disk that filled at the blob's rename left the digest and size received in
/// its line, one that filled a write before it left none.
fn record_asked(outcome: &mut Outcome, job: &Job) {
    outcome.digest = job.object.digest().cloned();
    outcome.size = job.hints.size;
    outcome.media_type = job.hints.media_type().map(str::to_string);
    outcome.path = None;
}

/// Records `digest`, whole in the store at `path` without a byte received: `size` bytes
/// that the progress counts as already here.
fn record_whole(
    outcome: &mut Outcome,
    job: &Job,
    tally: &mut Tally<'_>,
    digest: &Digest,
    size: u64,
    path: std::path::PathBuf,
) {
    tally.already_here(size);
    outcome.digest = Some(digest.clone());
    outcome.size = Some(size);
    outcome.media_type = job.hints.media_type().map(str::to_string);
    outcome.path = Some(path);
}

/// Records `digest` as found in the store, `size` bytes, not fetched: `exists`.
fn record_found(
    outcome: &mut Outcome,
    job: &Job,
    tally: &mut Tally<'_>,
    store: &LayoutStore,
    digest: &Digest,
    size: u64,
) {
    store.remove_partial(digest);
    let path = store.blob_path(digest);
    record_whole(outcome, job, tally, digest, size, path);
    outcome.status = Status::Exists;
}

fn record(outcome: &mut Outcome, download: &Download) {
    outcome.digest = download.digest().cloned();
    outcome.size = Some(download.received());
    outcome.media_type = download.meta().media_type.clone();
}

async fn to_spool(
    remote: &dyn Remote,
    job: &Job,
    threshold: usize,
    tally: &mut Tally<'_>,
    outcome: &mut Outcome,
) -> Result<()> {
    let mut spool = Spool::new(threshold);
    let mut attempt = 1;
    // Failures in a row of fetches that broke beyond a resume (see `Error::restart`).
    let mut failures = 0;
    loop {
        // The fetch is inside: a declared size or announced digest other than the one
        // asked for fails it, and is content that would not verify, fetched again as such.
        let received: Result<Download> = async {
            let hints = job.hints.after_failures(attempt, failures);
            let mut download = remote.fetch(&job.object, &hints).await?;
            tally.sized(download.meta().size);
            while let Some(chunk) = download.chunk().await? {
                tally.received(chunk.len() as u64);
                // Once spilled, a push is a copy into a 256 KiB buffer and now and then a
                // write of it into the page cache: brief enough to do in place.
                spool.push(chunk).map_err(spool_failed)?;
            }
            Ok(download)
        }
        .await;
        match received {
            Ok(download) => {
                spool.finish().map_err(spool_failed)?;
                record(outcome, &download);
                outcome.status = Status::Ok;
                outcome.content = Some(spool);
                return Ok(());
            }
            Err(e) if fetch_again(remote, &e, attempt) => {
                tracing::warn!(object = %job.object, error = %e, "{}", crate::fetch::refetch_warning(&e));
                tally.again();
                spool.clear();
                attempt += 1;
                failures = 0;
            }
            // Broken beyond a resume: what the spool holds never left it, and goes.
            Err(e) if e.restart().is_some() => {
                tracing::debug!(object = %job.object, error = %e, "the body broke and cannot be resumed; fetching again");
                tally.again();
                spool.clear();
                failures = e.restart().unwrap_or_default();
            }
            Err(e) => return Err(e),
        }
    }
}

/// A spool that could not be written: it lies in the system's temporary directory, not
/// where the output goes, so a user told only "No space left on device" would look for
/// room in the wrong place.
fn spool_failed(e: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "holding the object in a temporary file in {} (TMPDIR) until its frame is written",
            std::env::temp_dir().display()
        ),
    )
    .with_cause(e)
}

/// One job's blob on its way into the store: what its attempts go by, and where they
/// stand.
struct Storing<'a, 't> {
    remote: &'a dyn Remote,
    job: &'a Job,
    store: &'a LayoutStore,
    looks: Looks,
    tally: &'a mut Tally<'t>,
    outcome: &'a mut Outcome,
    /// Held until the blob is stored or its fetch failed: other runs into the store wait
    /// for it instead of downloading the blob too. Taken before the request when the
    /// descriptor says the blob is large enough, else once the registry said ([`start`]).
    held: Option<IngestLock>,
    attempt: u32,
    /// Failures in a row of fetches that broke beyond a resume (see `Error::restart`).
    failures: u32,
    /// A partial download was claimed: one that failed verification is not looked for again.
    claimed: bool,
}

/// Where an attempt at storing a blob goes next.
enum Then<T> {
    /// On, with this.
    On(T),
    /// The blob is stored, or was found stored: the job is done.
    Done,
    /// Another attempt.
    Again,
}

async fn to_store(
    remote: &dyn Remote,
    job: &Job,
    store: &LayoutStore,
    verify_existing: bool,
    tally: &mut Tally<'_>,
    outcome: &mut Outcome,
) -> Result<()> {
    let mut s = Storing {
        remote,
        job,
        store,
        looks: Looks::new(verify_existing),
        tally,
        outcome,
        held: None,
        attempt: 0,
        failures: 0,
        claimed: false,
    };
    if s.found_stored().await? {
        return Ok(());
    }
    loop {
        s.attempt += 1;
        let hints = job.hints.after_failures(s.attempt, s.failures);
        let kept = match s.kept_partial().await? {
            Then::On(kept) => kept,
            Then::Done => return Ok(()),
            Then::Again => continue,
        };
        let (opened, resumed) = s.open(kept, &hints).await?;
        let (mut download, mut temp) = match s.fetching(opened)? {
            Then::On(fetching) => fetching,
            Then::Done => return Ok(()),
            Then::Again => continue,
        };
        s.tally.sized(download.meta().size);
        let received = s.receive(&mut download, &mut temp).await;
        match s.judge(received, download, temp, resumed).await? {
            Then::Done => return Ok(()),
            Then::Again => continue,
        }
    }
}

impl Storing<'_, '_> {
    /// Whether the blob is in the store already, recorded so; a large one is claimed
    /// first, before it is asked for, should it not be.
    async fn found_stored(&mut self) -> Result<bool> {
        let (store, job, looks) = (self.store, self.job, &self.looks);
        let Some(digest) = job.object.digest() else {
            return Ok(false);
        };
        let mut present = stored(store, job, digest, looks).await?;
        if present.is_none() && job.hints.size.is_some_and(|size| size >= LOCK_FROM) {
            let look = || stored(store, job, digest, looks);
            match ingest::claim(store, digest, look).await? {
                Claimed::Mine(lock) => self.held = Some(lock),
                Claimed::Stored(size) => present = Some(size),
            }
        }
        let Some(size) = present else {
            return Ok(false);
        };
        record_found(self.outcome, job, self.tally, store, digest, size);
        Ok(true)
    }

    /// The partial download this attempt carries on, claimed with the blob's lock; a
    /// partial that holds the whole blob is stored as it is (`Done`).
    ///
    /// Only the first attempt carries on a partial download: after content that failed
    /// verification, everything is fetched again.
    async fn kept_partial(&mut self) -> Result<Then<Option<(TempBlob, Prefix)>>> {
        let (store, job, looks) = (self.store, self.job, &self.looks);
        let digest = match job.object.digest() {
            Some(digest) if self.attempt == 1 && !self.claimed && store.has_partial(digest) => {
                digest
            }
            _ => return Ok(Then::On(None)),
        };
        // A partial is only kept past its blob's first MiB: the blob is fetched
        // under its lock whatever its size is known to be. Taken only by a fresh
        // download, once the answer declared the size, the lock was free to a
        // second run meanwhile, which downloaded the whole blob beside this one.
        if self.held.is_none() {
            let look = || stored(store, job, digest, looks);
            match ingest::claim(store, digest, look).await? {
                Claimed::Mine(lock) => self.held = Some(lock),
                Claimed::Stored(size) => {
                    record_found(self.outcome, job, self.tally, store, digest, size);
                    return Ok(Then::Done);
                }
            }
        }
        self.claimed = true;
        match claim_partial(store, digest, job.hints.size).await? {
            // The whole blob already: a run killed between its last write and the
            // rename (an fsync of gigabytes takes seconds), or stopped once the
            // last chunk arrived. Nothing lies past it, so asking for the rest
            // only got a 416 and the whole blob fetched again; it verified, and is
            // stored as it is, as containerd commits an ingest that is complete.
            Some((temp, prefix)) if holds_whole(&prefix, digest, job.hints.size) => {
                let path = temp.commit(digest).await?;
                record_whole(self.outcome, job, self.tally, digest, prefix.len, path);
                self.outcome.status = Status::Ok;
                Ok(Then::Done)
            }
            kept => Ok(Then::On(kept)),
        }
    }

    /// The download this attempt reads, carrying on `kept` where it can, and whether it
    /// does; `Err` ends the job at once, a partial that cannot be reached kept for a run
    /// that can.
    async fn open(
        &mut self,
        kept: Option<(TempBlob, Prefix)>,
        hints: &crate::hints::Hints,
    ) -> Result<(Result<Started>, bool)> {
        let (remote, job, store, looks) = (self.remote, self.job, self.store, &self.looks);
        let Some((temp, prefix)) = kept else {
            let opened = start(remote, job, hints, store, looks, &mut self.held).await;
            return Ok((opened, false));
        };
        let len = prefix.len;
        match remote.fetch_rest(&job.object, hints, prefix).await {
            // Longer than the blob the server declares (a file extended, with no
            // size given for `resume_within` to catch it): a server that ignores
            // `Range` sends it whole, all of it dropped as the partial's, to end
            // short of the partial, a size mismatch that was taken for the server
            // contradicting itself and kept the partial for every later run.
            Ok(download) if download.meta().size.is_some_and(|size| len > size) => {
                tracing::warn!(object = %job.object, len, size = download.meta().size, "a partial download longer than its blob; removed, and the blob fetched whole");
                drop(download);
                temp.discard();
                let opened = start(remote, job, hints, store, looks, &mut self.held).await;
                Ok((opened, false))
            }
            Ok(download) => {
                tracing::info!(object = %job.object, bytes = len, "carrying on from a partial download an earlier run kept");
                self.tally.already_here(len);
                Ok((Ok(Started::Fetching(Box::new((download, temp)))), true))
            }
            // Judged before a refusal that failed verification: a 416 that found the
            // partial to be no prefix of the blob is one (see `registry::nothing_past`).
            Err(e) if cannot_carry_on(&e) => {
                tracing::debug!(object = %job.object, error = %e, "the partial download cannot be carried on; fetching from scratch");
                temp.discard();
                let opened = start(remote, job, hints, store, looks, &mut self.held).await;
                Ok((opened, false))
            }
            // Refused before a byte of the rest was read (over its size, or a
            // digest header naming other content): fetched once more below, as
            // any such refusal is (from the registry itself, or where it may not
            // pull, from the mirrors that may). The partial is kept (dropping
            // `temp` does that): the refusal says nothing of its bytes.
            Err(e) if e.is_corruption() => Ok((Err(e), false)),
            // Kept again (dropping `temp` does that) for a run that can reach it.
            Err(e) => Err(e),
        }
    }

    /// The download to read and the file it goes into, from what opening it came to: the
    /// blob stored by another fetch meanwhile, or another attempt.
    fn fetching(&mut self, opened: Result<Started>) -> Result<Then<(Download, TempBlob)>> {
        match opened {
            Ok(Started::Fetching(opened)) => Ok(Then::On(*opened)),
            Ok(Started::Stored(digest, size)) => {
                let (job, store) = (self.job, self.store);
                record_found(self.outcome, job, self.tally, store, &digest, size);
                Ok(Then::Done)
            }
            // Nothing received on this attempt: it starts again, as the first.
            Ok(Started::TakenOver) => {
                self.attempt = 0;
                self.claimed = false;
                Ok(Then::Again)
            }
            // As in `to_spool`: content announced as other than asked for is fetched again.
            Err(e) if fetch_again(self.remote, &e, self.attempt) => {
                tracing::warn!(object = %self.job.object, error = %e, "{}", crate::fetch::refetch_warning(&e));
                self.tally.again();
                self.failures = 0;
                Ok(Then::Again)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the download's body into `temp`, counting it as it comes.
    async fn receive(&mut self, download: &mut Download, temp: &mut TempBlob) -> Result<()> {
        while let Some(chunk) = download.chunk().await? {
            self.tally.received(chunk.len() as u64);
            temp.write(&chunk).await?;
        }
        Ok(())
    }

    /// Stores the blob received whole (`Done`), or judges why it was not: another attempt,
    /// the partial kept or given up as its failure says, or the job's failure. The last
    /// step of an attempt: nothing goes on from it (`On` holds no value).
    async fn judge(
        &mut self,
        received: Result<()>,
        download: Download,
        temp: TempBlob,
        resumed: bool,
    ) -> Result<Then<std::convert::Infallible>> {
        let object = &self.job.object;
        match received {
            Ok(()) => {
                record(self.outcome, &download);
                let digest = download
                    .digest()
                    .expect("verified download has a digest")
                    .clone();
                self.outcome.path = Some(temp.commit(&digest).await?);
                self.outcome.status = Status::Ok;
                return Ok(Then::Done);
            }
            // A size the server contradicted (a resume's total other than the one it
            // declared before, a body running past it): its words alone, never the
            // partial's bytes, whose length is only where the rest was asked from. Blamed
            // on the partial, that was thrown away, and a whole fetch that then failed
            // left the next run to start from nothing. Kept (the digest still decides
            // when it is carried on), it goes once the whole fetch below stores the blob.
            // Kept as it was claimed, with its age: a partial the server contradicts
            // itself over run after run is no more than it was, and the day-old sweep
            // gives it up. So is one whose rest was refused unread for its
            // `Docker-Content-Digest` header: blamed, it was thrown away as not verifying,
            // though nothing was verified.
            Err(e) if (e.kind() == ErrorKind::SizeMismatch || e.announced_other()) && resumed => {
                temp.keep_as_claimed().await;
                self.tally.again();
                self.failures = 0;
                self.attempt -= 1;
                let what = match e.announced_other() {
                    true => "the server's Docker-Content-Digest header for the rest of the partial download an earlier run kept names other content",
                    false => "the server contradicted the size it declared for the rest of the partial download an earlier run kept",
                };
                tracing::warn!(%object, error = %e, "{what}; keeping the partial, fetching the blob whole");
            }
            // Most likely the partial's own bytes are wrong (a disk fault, a tampered
            // file), which says nothing of the transfer: the whole fetch that follows is a
            // first one, from a mirror too, with its own fetch again should it fail. Taken
            // for content corrupted on its way, the blob was asked of the registry alone
            // (which a host that reaches only its mirror cannot reach), and one corruption
            // on the way failed it.
            Err(e) if e.is_corruption() && resumed => {
                temp.discard();
                self.tally.again();
                self.failures = 0;
                self.attempt -= 1;
                tracing::warn!(%object, error = %e, "the partial download an earlier run kept did not verify with the rest; fetching the blob whole");
            }
            Err(e) if fetch_again(self.remote, &e, self.attempt) => {
                temp.discard();
                self.tally.again();
                self.failures = 0;
                tracing::warn!(%object, error = %e, "{}", crate::fetch::refetch_warning(&e));
            }
            // Broken beyond a resume (content without a digest, in a temporary file of its
            // own that no later run carries on): fetched whole again, as the same attempt.
            Err(e) if e.restart().is_some() => {
                temp.discard();
                self.tally.again();
                self.failures = e.restart().unwrap_or_default();
                self.attempt -= 1;
                tracing::debug!(%object, error = %e, "the body broke and cannot be resumed; fetching again");
            }
            Err(e) => {
                if keeps_partial(&e) {
                    temp.keep().await;
                } else {
                    temp.discard();
                }
                return Err(e);
            }
        }
        Ok(Then::Again)
    }
}

/// How a job looks for its blob among those stored: hashed first with `--verify-existing`,
/// and the file a look judged not to be the blob passed over by the looks after it.
struct Looks {
    verify_existing: bool,
    /// The file at the blob's place that a look judged wrong (empty, another size than
    /// the descriptor's, or with `--verify-existing` other content), as it was then.
    judged: std::sync::Mutex<Option<FileId>>,
}

impl Looks {
    fn new(verify_existing: bool) -> Self {
        Looks {
            verify_existing,
            judged: std::sync::Mutex::new(None),
        }
    }

    fn judged(&self) -> std::sync::MutexGuard<'_, Option<FileId>> {
        self.judged.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A file as a look at it found it: another file renamed to its place (a run beside
/// this one storing the blob) or the file changed since has another.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    fn of(path: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// The size of the blob `digest` if the store holds it (hashed first with
/// `--verify-existing`), as the job's descriptor says it should be. A blob that must be
/// fetched is looked for again under its lock, and while another run holds that lock:
/// the file an earlier look of the job judged wrong, unchanged, is passed over then, where
/// it was hashed again (a wrong layer of gigabytes read twice, and more while waiting) and
/// warned of again.
async fn stored(
    store: &LayoutStore,
    job: &Job,
    digest: &Digest,
    looks: &Looks,
) -> Result<Option<u64>> {
    let path = store.blob_path(digest);
    let judged = *looks.judged();
    if judged.is_some() && FileId::of(&path) == judged {
        return Ok(None);
    }
    // Taken before a hash of the file, which takes long enough for a run beside this one
    // to store the blob meanwhile: the file judged is then the one hashed, not the blob
    // renamed over it. A look without a hash is one system call, after which a file's
    // identity is read only when it was judged wrong.
    let before = looks.verify_existing.then(|| FileId::of(&path)).flatten();
    let present = if looks.verify_existing {
        // Re-hashing a stored blob is real work: off the runtime's thread.
        let (s, d) = (store.clone(), digest.clone());
        blocking::run("checking a stored blob failed", move || {
            s.existing(&d, true)
        })
        .await?
    } else {
        store.existing(digest, false)?
    };
    // A stored blob of another size than its descriptor says was damaged since it was
    // verified (truncated by a full disk, a copy cut short), or the descriptor is wrong.
    // Fetching again tells which: the fetch replaces a damaged blob, and fails on a
    // wrong descriptor, naming the size the registry declares, without touching the
    // blob.
    let found = present.filter(|&size| match job.hints.size {
        Some(expected) if expected != size => {
            tracing::warn!(
                path = %path.display(),
                size,
                expected,
                "stored blob is not the size its descriptor says; fetching again"
            );
            false
        }
        _ => true,
    });
    if found.is_none() {
        *looks.judged() = match looks.verify_existing {
            true => before,
            false => FileId::of(&path),
        };
    }
    Ok(found)
}

/// What [`start`] began.
enum Started {
    /// The download, and the temporary file it goes into (boxed: the other variant is
    /// small).
    Fetching(Box<(Download, TempBlob)>),
    /// Another fetch, which held the blob's lock, stored it meanwhile: of this size.
    Stored(Digest, u64),
    /// Another fetch held the blob's lock and let go without storing it: this one holds it
    /// now, and starts again, carrying on what the other kept.
    TakenOver,
}

/// A fresh download of the job's object, and the temporary file it goes into, kept as a
/// partial download should the run stop before the end. A blob whose size was not known
/// before the request is locked ([`ingest`]) once the registry declared it large enough;
/// when another fetch holds it, this download is dropped before its body is read, and the
/// blob waited for.
async fn start(
    remote: &dyn Remote,
    job: &Job,
    hints: &crate::hints::Hints,
    store: &LayoutStore,
    looks: &Looks,
    held: &mut Option<IngestLock>,
) -> Result<Started> {
    let download = remote.fetch(&job.object, hints).await?;
    if let Some(digest) = job.object.digest() {
        let large = download.meta().size.is_none_or(|size| size >= LOCK_FROM);
        if held.is_none() && large {
            let mut look = || stored(store, job, digest, looks);
            match ingest::try_claim(store, digest, &mut look).await? {
                Some(Claimed::Stored(size)) => return Ok(Started::Stored(digest.clone(), size)),
                Some(Claimed::Mine(lock)) => *held = Some(lock),
                None => {
                    drop(download);
                    return match ingest::claim(store, digest, look).await? {
                        Claimed::Stored(size) => Ok(Started::Stored(digest.clone(), size)),
                        Claimed::Mine(lock) => {
                            *held = Some(lock);
                            Ok(Started::TakenOver)
                        }
                    };
                }
            }
        }
    }
    // One longer than the blob is no head start: gone before the body is read, it keeps
    // out none of what this fetch would keep should it break. Not removed on the size
    // given alone, which may be wrong (`resume_within`): nor is it when an answer that
    // declares no size (chunked, or coded) leaves the download that size, until this
    // download is kept unfinished, which then goes in its place (`hold_to`).
    if let (Some(digest), Some(size)) = (job.object.digest(), download.declared_size()) {
        store.remove_partial_past(digest, size);
    }
    let mut temp = match (job.object.digest(), &download.meta().expected) {
        (Some(digest), _) => store.temp_async(digest.algorithm(), Some(digest)).await?,
        (None, expected) => {
            let algorithm = expected
                .as_ref()
                .map_or(crate::digest::Algorithm::Sha256, Digest::algorithm);
            store.temp_async(algorithm, None).await?
        }
    };
    if let Some(size) = download.meta().size {
        temp.hold_to(size);
    }
    Ok(Started::Fetching(Box::new((download, temp))))
}

/// The partial download of `digest` (of `size` bytes, if known) an earlier run kept,
/// claimed and hashed off the runtime's thread (it may be gigabytes).
async fn claim_partial(
    store: &LayoutStore,
    digest: &Digest,
    size: Option<u64>,
) -> Result<Option<(TempBlob, Prefix)>> {
    let (s, d) = (store.clone(), digest.clone());
    blocking::run("claiming a partial download failed", move || {
        s.resume_within(&d, size)
    })
    .await
}

/// Whether a partial download is the whole blob `digest`, of the size the descriptor says
/// if it says one (a descriptor with a wrong size fails as a fetch would).
fn holds_whole(prefix: &Prefix, digest: &Digest, size: Option<u64>) -> bool {
    size.is_none_or(|size| size == prefix.len) && prefix.hasher.clone().finish() == *digest
}

/// Whether a request for the rest after a partial download failed because of the partial
/// itself: nothing lies past it (416), or the server answered another range. Anything else
/// may work in a later run, for which the partial is kept. A blob not found is among
/// those: a mistyped repository, or a private one asked without credentials (which many
/// registries answer with 404), says nothing of content that is the digest's wherever it
/// is served, and a whole fetch was refused the same after the partial was thrown away.
fn cannot_carry_on(e: &Error) -> bool {
    e.status() == Some(416) || e.kind() == ErrorKind::Protocol
}

/// Whether what a download wrote is worth keeping after it failed with `e`: yes when the
/// network or the run stopped it, not when the content or the disk is at fault.
fn keeps_partial(e: &Error) -> bool {
    !matches!(
        e.kind(),
        ErrorKind::DigestMismatch
            | ErrorKind::SizeMismatch
            | ErrorKind::TooLarge
            | ErrorKind::Protocol
            | ErrorKind::Io
    )
}
