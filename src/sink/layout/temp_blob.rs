//! Content on its way into the store ([`TempBlob`]): temporary files beside the blob's
//! place, written from a thread of their own, committed by rename, or kept as partial
//! downloads.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::sink::stream::StreamWriter;

use super::locks::{hold, hold_within, names_file};
use super::{io_err, os_error, LayoutStore, CLAIM_WAIT, PARTIAL_AGE, PARTIAL_PREFIX, TMP_PREFIX};

/// Content up to this size is written in one go at commit; beyond, it streams to a writer.
const WRITE_BUFFER: usize = 1 << 20;
/// How many temporary files are made, each taken away before it could be locked, before
/// making one fails: a sweep takes one only when it is wrong about its owner.
const MAKE_TRIES: usize = 5;

/// Makes the file `from`, which holds (or is about to hold) `len` bytes, the partial
/// download at `partial`, unless one at least as long is there already: two runs may
/// download the same blob at once (pulls of images that share a layer, into one layout),
/// and the one stopped last replaced a longer partial download with its shorter one. Both
/// are prefixes of the same blob, to be verified whole; the longer saves the more. One
/// nobody carried on within [`PARTIAL_AGE`] counts for none: the sweep removes it.
/// Whether a partial download is at `partial` now.
pub(super) fn park(from: &Path, len: u64, partial: &Path) -> bool {
    let there = std::fs::symlink_metadata(partial)
        .ok()
        .filter(|m| m.is_file())
        .filter(|_| crate::sink::owner::age(partial).is_some_and(|a| a <= PARTIAL_AGE));
    if there.is_some_and(|there| there.len() >= len) {
        return std::fs::remove_file(from).is_ok();
    }
    std::fs::rename(from, partial).is_ok()
}

/// The error of renaming a blob's content to `dest`. Over a file of another user's in a
/// sticky directory (as /tmp is, or a shared store made so), the system says only
/// "Operation not permitted", which reads as if the directory refused this user: only the
/// file's owner (or the directory's, or root) may replace it, and the message says so.
fn rename_err(dest: &Path, e: std::io::Error) -> Error {
    use std::os::unix::fs::MetadataExt;
    let dir = dest.parent().unwrap_or(Path::new("."));
    // `-o DIR` removed under a running batch (a cleanup job, an `rm -rf` meant for the
    // last run): the system's "No such file or directory" named the blob, which was never
    // there to be found, and read as if the download had lost it.
    if e.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() {
        let words = format!(
            "renaming into {}: its directory {} is gone (removed while the run wrote into it?)",
            dest.display(),
            dir.display()
        );
        return Error::new(ErrorKind::Io, words).with_cause(os_error(e));
    }
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return io_err("renaming into", dest, e);
    }
    let (Ok(dir_meta), Ok(file_meta)) = (std::fs::metadata(dir), std::fs::symlink_metadata(dest))
    else {
        return io_err("renaming into", dest, e);
    };
    // SAFETY: geteuid(2) cannot fail and touches no memory of ours.
    let me = unsafe { libc::geteuid() };
    let sticky = dir_meta.mode() & 0o1000 != 0;
    if !sticky || me == 0 || file_meta.uid() == me || dir_meta.uid() == me {
        return io_err("renaming into", dest, e);
    }
    let words = format!(
        "renaming into {}: {} is a sticky directory and the file there is another user's \
         (uid {}), which only its owner may replace: run as that user, or remove the file",
        dest.display(),
        dir.display(),
        file_meta.uid()
    );
    Error::new(ErrorKind::Io, words).with_cause(os_error(e))
}

/// Where the partial download of the blob `encoded` lies in `dir`, its algorithm's folder.
pub(super) fn partial_in(dir: &Path, encoded: &str) -> PathBuf {
    dir.join(format!("{PARTIAL_PREFIX}{encoded}"))
}

/// `.dist-tmp-<pid>@<host>~`: the owner is recorded so that a later run can tell a dead
/// run's leftovers from the files of a run still going, here or on another machine.
pub(super) fn temp_prefix() -> String {
    format!("{TMP_PREFIX}{}~", crate::sink::owner::me())
}

/// `.dist-tmp-<run>~<encoded>~`: a temporary file of the blob `digest` says so, for
/// the run that finds it after this one was killed.
pub(super) fn blob_temp_prefix(digest: &Digest) -> String {
    format!(
        "{TMP_PREFIX}{}~{}~",
        crate::sink::owner::me(),
        digest.encoded()
    )
}

/// A temporary file in `dir` that will be renamed to a file of the layout. Its mode is
/// that of any file the user creates (0666 less the umask), not tempfile's 0600: other
/// users and tools read a layout (skopeo or podman run by another user, a web server
/// serving it), and a layout pulled with sudo was unreadable to everyone else.
pub(in crate::sink) fn new_layout_file(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    new_layout_file_with_mode(dir, 0o666)
}

/// [`new_layout_file`] made with `mode` (less the umask) rather than 0666: a file that
/// replaces one whose readers are fewer is never, even before its mode is set, open to
/// more of them.
pub(in crate::sink) fn new_layout_file_with_mode(
    dir: &Path,
    mode: u32,
) -> std::io::Result<tempfile::NamedTempFile> {
    new_named_file_with_mode(dir, &temp_prefix(), mode)
}

pub(super) fn new_named_file(dir: &Path, prefix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    new_named_file_with_mode(dir, prefix, 0o666)
}

fn new_named_file_with_mode(
    dir: &Path,
    prefix: &str,
    mode: u32,
) -> std::io::Result<tempfile::NamedTempFile> {
    let builder = builder(prefix, mode);
    for _ in 0..MAKE_TRIES {
        let file = made(&builder, dir)?;
        if hold_within(file.as_file(), CLAIM_WAIT) && names_file(file.path(), file.as_file()) {
            return Ok(file);
        }
    }
    Err(none_locked())
}

/// [`new_named_file`] for async code: a file whose lock another process holds (a sweep's
/// probe) is waited for on the blocking pool, up to [`CLAIM_WAIT`] of real time as the
/// holder lets go in real time, while the runtime's thread (the CLI's one) runs every
/// transfer, timer and Ctrl-C's handling. Counted on tokio's clock, a paused one (a
/// library's test) ran ahead to each pause and gave every file up at once; a blocking
/// task holds such a clock meanwhile. A file locked at once, as nearly all are, makes no
/// trip to the pool.
pub(super) async fn new_named_file_async(
    dir: &Path,
    prefix: &str,
) -> std::io::Result<tempfile::NamedTempFile> {
    let builder = builder(prefix, 0o666);
    for _ in 0..MAKE_TRIES {
        let file = made(&builder, dir)?;
        let (file, held) = if hold(file.as_file()) {
            (file, true)
        } else {
            tokio::task::spawn_blocking(move || {
                let held = hold_within(file.as_file(), CLAIM_WAIT);
                (file, held)
            })
            .await
            .map_err(std::io::Error::other)?
        };
        if held && names_file(file.path(), file.as_file()) {
            return Ok(file);
        }
    }
    Err(none_locked())
}

fn builder(prefix: &str, mode: u32) -> tempfile::Builder<'_, '_> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    builder
}

/// A new file in `dir`, not locked yet. Another run's sweep may judge the file before its
/// lock is taken: its probe (a shared lock, for a moment) is waited out, and a file it
/// took away meanwhile (it acts under its lock, see `sweep`) no longer has this name once
/// the lock is had. Either way this run never writes into a file that is not under its
/// lock: a sweep would take it for a killed run's, and this run's commit fail.
fn made(builder: &tempfile::Builder, dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let file = builder.tempfile_in(dir)?;
    #[cfg(test)]
    super::locks::between(super::locks::Step::Made, file.path());
    Ok(file)
}

/// The error once [`MAKE_TRIES`] new files were each locked or taken by another process.
fn none_locked() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ResourceBusy,
        "another process locked or took each new temporary file before this run could lock it",
    )
}

/// Content on its way into the store. Dropping it without [`TempBlob::commit`] deletes it,
/// unless it is a known blob's ([`LayoutStore::temp_for`]) and some of it is on disk: that
/// stays as a partial download.
///
/// Small content is gathered (by reference, not copied) and written in one go at commit:
/// one trip to the blocking pool per blob, or none when the store is on tmpfs, where
/// nothing waits for a device and the trip would cost more than the work. Past 1 MiB the
/// file moves to a writer on a blocking thread of its own, fed through a bounded queue:
/// receiving and hashing go on while earlier chunks are written, so a large blob costs
/// max(hash, write) rather than their sum.
pub struct TempBlob {
    pub(super) writing: Writing,
    /// The temporary file: never named in an error, since it is gone (deleted, or kept
    /// under the partial download's name) by the time the error is read.
    pub(super) path: PathBuf,
    pub(super) store: LayoutStore,
    /// The blob the file becomes a partial download of if dropped unfinished, to be
    /// carried on by a later run.
    pub(super) park: Option<Digest>,
    /// Bytes the file held when it was claimed from an earlier run.
    pub(super) kept: u64,
    /// When the partial download it was claimed from was last written to.
    pub(super) kept_modified: Option<std::time::SystemTime>,
    /// Bytes the file holds once everything written to the blob has reached it.
    pub(super) len: u64,
    /// The size the blob's content is held to, if known ([`TempBlob::hold_to`]).
    pub(super) held_to: Option<u64>,
    /// Chunks [`TempBlob::write`] took but has not queued for the writer yet, in order: a
    /// call dropped while the queue was full (the losing branch of a caller's `select!`)
    /// leaves its chunk to the next call, or to the commit, which would otherwise write
    /// the content without it. Empty while gathering.
    pub(super) unsent: std::collections::VecDeque<Bytes>,
}

pub(super) enum Writing {
    /// Chunks held until there are enough of them to start a writer, or until commit.
    Gathering {
        file: tempfile::NamedTempFile,
        batch: Vec<Bytes>,
        batched: usize,
    },
    /// A writer thread owns the file and gives it back once the queue is closed. Its
    /// path stays here: the blob alone removes the file or keeps it (see `Finishing`).
    Streaming(StreamWriter<PlainWrites>, tempfile::TempPath),
    /// The writer thread writes what is still queued, to give the file back: dropped now
    /// (a stop during a commit), the file is kept as a streaming one's is. The writer's
    /// answer, the file, may already wait for the commit then: holding the path too, it
    /// deleted the file as it was dropped with the commit, before the blob kept it.
    Finishing(tempfile::TempPath),
    /// Between states, or after a failure.
    Gone,
}

/// The temporary file written through its plain `File`, without its path (which
/// [`Writing::Streaming`] holds): `NamedTempFile`'s own `Write` appends the path to every
/// error ("No space left on device ... at path ..."), which our message names already.
pub(super) struct PlainWrites(std::fs::File);

impl std::io::Write for PlainWrites {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.0.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl std::fmt::Debug for TempBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let writing = match &self.writing {
            Writing::Gathering { batched, .. } => format!("gathering {batched} bytes"),
            Writing::Streaming(..) => "streaming".to_string(),
            Writing::Finishing(_) => "finishing".to_string(),
            Writing::Gone => "gone".to_string(),
        };
        f.debug_struct("TempBlob")
            .field("path", &self.path)
            .field("writing", &writing)
            .field("park", &self.park)
            .field("kept", &self.kept)
            .field("kept_modified", &self.kept_modified)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl TempBlob {
    /// Holds the blob to `size` bytes: kept unfinished (see [`TempBlob::keep`]), the file
    /// replaces a partial download longer than that, which the content it belongs to
    /// cannot be carried on from. [`LayoutStore::resume_within`] leaves such a partial
    /// for the registry's answer to judge, the size it was given alone; an answer that
    /// declares no size judges nothing, and a fetch that broke or was stopped before the
    /// end lost what it received to the longer partial, in every run given that size.
    pub fn hold_to(&mut self, size: u64) {
        self.held_to = Some(size);
    }

    /// Deletes the file now, kept or not: its content is wrong (it failed verification)
    /// or cannot be trusted. Dropped instead, a blob of [`LayoutStore::temp_for`] with
    /// content past its first MiB stays as a partial download, which a later fetch
    /// carries on from ([`LayoutStore::resume`]), wrong bytes and all:
    ///
    /// ```
    /// # use dist::{digest::Algorithm, sink::layout::LayoutStore, Digest};
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
    /// # async fn main() -> dist::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = LayoutStore::open(dir.path())?;
    /// let digest = Digest::of(Algorithm::Sha256, b"what the registry named");
    /// let wrong = bytes::Bytes::from(vec![0u8; 2 << 20]); // did not verify as `digest`
    ///
    /// let mut blob = store.temp_for(&digest)?;
    /// blob.write(&wrong).await?;
    /// drop(blob);
    /// assert!(store.has_partial(&digest), "kept, for a later fetch to carry on");
    ///
    /// let (mut blob, _prefix) = store.resume(&digest)?.expect("the partial download");
    /// blob.write(&wrong).await?;
    /// blob.discard();
    /// assert!(!store.has_partial(&digest), "gone");
    /// # Ok(()) }
    /// ```
    pub fn discard(mut self) {
        self.park = None;
    }

    /// Appends a chunk.
    ///
    /// Cancel-safe: a call dropped before it returned (the losing branch of a
    /// `tokio::select!`) has taken its chunk all the same, and the next call or the
    /// commit writes it first: give the next call the next chunk, not that one again,
    /// which would be stored twice under a digest [`commit`](Self::commit) does not check.
    pub async fn write(&mut self, chunk: &Bytes) -> Result<()> {
        self.len += chunk.len() as u64;
        match &mut self.writing {
            Writing::Gathering { batch, batched, .. } => {
                *batched += chunk.len();
                batch.push(chunk.clone());
                if *batched > WRITE_BUFFER {
                    self.start_writer();
                }
                Ok(())
            }
            Writing::Streaming(..) => {
                // Taken before any wait, so that a call dropped while it waits has it.
                self.unsent.push_back(chunk.clone());
                self.send_unsent().await
            }
            Writing::Finishing(_) | Writing::Gone => Err(self.failed()),
        }
    }

    /// Queues the chunks taken and not yet queued for the writer, in order; dropped
    /// while it waits, those it did not queue are left for the next call.
    async fn send_unsent(&mut self) -> Result<()> {
        while let Some(chunk) = self.unsent.front() {
            let Writing::Streaming(writer, _) = &mut self.writing else {
                return Err(self.failed());
            };
            if writer.write(chunk.clone()).await.is_err() {
                self.unsent.clear();
                // The writer only stops early on an error, which taking the file back
                // reports.
                self.take_file().await?;
                return Err(self.failed());
            }
            self.unsent.pop_front();
        }
        Ok(())
    }

    fn failed(&self) -> Error {
        Error::new(
            ErrorKind::Io,
            format!("{} after a failure", self.writing_what()),
        )
    }

    /// What a failed write says it was writing: the directory the file fills, which is
    /// where room is wanted (`df` it); the object is the caller's to name (the worker and
    /// `pull` do). The blob's own path was named, a file that never came to be, and the
    /// temporary file is gone by the time anyone reads the message.
    fn writing_what(&self) -> String {
        format!("writing into {}", self.dir().display())
    }

    /// The directory the temporary file, and so the blob, is in.
    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn write_err(&self, e: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, self.writing_what()).with_cause(os_error(e))
    }

    /// Moves the file and what was gathered to a writer thread.
    fn start_writer(&mut self) {
        let Writing::Gathering { file, batch, .. } =
            std::mem::replace(&mut self.writing, Writing::Gone)
        else {
            return;
        };
        let (file, path) = file.into_parts();
        self.writing = Writing::Streaming(StreamWriter::start(PlainWrites(file), batch), path);
    }

    /// Takes the file back, with everything written so far, and what was not written yet.
    async fn take_file(&mut self) -> Result<(tempfile::NamedTempFile, Vec<Bytes>)> {
        match std::mem::replace(&mut self.writing, Writing::Gone) {
            Writing::Gathering { file, batch, .. } => Ok((file, batch)),
            Writing::Streaming(writer, path) => {
                // Left `Gone` while the writer finishes, a stop then (a signal at the end
                // of a large blob) left the file to the writer, which deleted it once done:
                // the blob, received whole, was fetched again by the next run.
                self.writing = Writing::Finishing(path);
                let finished = writer.finish().await;
                let Writing::Finishing(path) = std::mem::replace(&mut self.writing, Writing::Gone)
                else {
                    unreachable!("only this call ends `Finishing`");
                };
                match finished {
                    (Some(PlainWrites(file)), Ok(())) => {
                        Ok((tempfile::NamedTempFile::from_parts(file, path), Vec::new()))
                    }
                    // The path goes with the file.
                    (_, Err(e)) => Err(self.write_err(e)),
                    (None, Ok(())) => unreachable!("a writer without its file reports why"),
                }
            }
            Writing::Finishing(_) | Writing::Gone => Err(self.failed()),
        }
    }

    /// Makes the verified content durable and moves it to its place for `digest`; a
    /// partial download of `digest` the store knows of goes ([`LayoutStore::remove_partial`]).
    ///
    /// The content is not hashed again here: `digest` is taken on the caller's word. Commit
    /// only once the [`Download`](crate::Download) whose chunks were written returned
    /// `Ok(None)`, with the digest it verified ([`Download::digest`](crate::Download::digest));
    /// after an error, drop the blob (a partial download is kept for a later fetch, see
    /// [`LayoutStore::temp_for`]), or [`discard`](Self::discard) it when the error says the
    /// content is wrong ([`Error::is_corruption`](crate::Error::is_corruption)).
    pub async fn commit(mut self, digest: &Digest) -> Result<PathBuf> {
        self.send_unsent().await?;
        let (file, batch) = self.take_file().await?;
        let dest = self.store.blob_path(digest);
        let moved = dest.clone();
        let dir = self.dir().to_owned();
        let finish = move || {
            crate::sink::gather::write_all_vectored(file.as_file(), &batch)
                .map_err(|e| io_err("writing into", &dir, e))?;
            file.as_file()
                .sync_all()
                .map_err(|e| io_err("writing into", &dir, e))?;
            file.persist(&moved)
                .map_err(|e| rename_err(&moved, e.error))?;
            Ok::<_, Error>(())
        };
        // In memory, writing at most a megabyte, a no-op fsync and a rename take less time
        // than handing them to another thread and back.
        if self.store.in_memory {
            finish()?;
        } else {
            crate::blocking::run("write task failed", finish).await?;
            self.store
                .note_unsynced(dest.parent().expect("a blob is in a directory"));
        }
        // A partial download of the blob that this content was not carried on from goes
        // with it: one another process left, found once this fetch took the blob's lock too
        // late to carry it on, or a killed run's of content held in memory (a pull's
        // manifest), which is never carried on, and stayed beside the blob for a day.
        self.store.remove_partial(digest);
        Ok(dest)
    }
}

impl TempBlob {
    /// Keeps what was received as a partial download for a later run to carry on (see
    /// [`LayoutStore::temp_for`]), once the chunks still queued for the writer are written.
    /// Dropped instead, the blob keeps only what the writer had got to: a connection cut
    /// 2 MiB into a fast download kept its first MiB and dropped the rest it had received.
    pub async fn keep(mut self) {
        if !matches!(self.writing, Writing::Streaming(..)) {
            // Nothing of this run's on disk: a claimed partial is put back by the drop.
            return;
        }
        // Renamed first, as a drop does: a signal that cancels the wait below still
        // leaves the partial download, a prefix of the blob whatever the writer got to.
        // Chunks dropped writes left unsent are the last: the prefix goes without them.
        let unsent: u64 = self.unsent.drain(..).map(|c| c.len() as u64).sum();
        self.park_file(self.len - unsent);
        self.park = None;
        // The temporary name, if the rename failed, goes with the file; if the writer
        // failed, it went with its file already.
        let _ = self.take_file().await;
    }

    /// Keeps the partial download this was claimed from as it was claimed: what was
    /// written since is dropped, and its modification time put back. What a server that
    /// contradicted itself sent is no progress: appended by every run that met it, which
    /// renewed the partial's age too, the partial grew and was never old enough for the
    /// sweep of partials a day old while each run failed the same way. Content not claimed
    /// from a partial download is deleted.
    pub async fn keep_as_claimed(mut self) {
        let kept = self.kept;
        let modified = self.kept_modified;
        let restored = match self.take_file().await {
            Ok((file, _)) if kept > 0 => {
                let f = file.as_file();
                let back =
                    f.set_len(kept).is_ok() && modified.is_none_or(|t| f.set_modified(t).is_ok());
                // Renamed while the file is open: its temporary name is gone with it.
                back && self.park_file(kept)
            }
            _ => false,
        };
        if !restored {
            tracing::debug!(path = %self.path.display(), "the partial download could not be kept as it was claimed; removed");
        }
        self.park = None;
    }

    /// Renames the file, which will hold `len` bytes, to the partial download of the blob
    /// it was for, if it is for one and no longer one is there; whether a partial download
    /// of the blob is there now.
    fn park_file(&mut self, len: u64) -> bool {
        let Some(digest) = self.park.as_ref() else {
            return false;
        };
        if let Some(size) = self.held_to {
            self.store.remove_partial_past(digest, size);
        }
        let partial = self.store.partial_path(digest);
        if !park(&self.path, len, &partial) {
            return false;
        }
        // This store knows it too. A service keeps one store open for its life: its next
        // fetch of the blob fetched it whole instead of carrying this on, and left it
        // beside the stored blob, unswept, until the service restarted.
        let mut partials = self
            .store
            .partials
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        partials.insert(partial);
        true
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        // The writer (a `Streaming` one stops at its next chunk) goes at the end, after
        // the file was kept or removed.
        let (_writer, mut path) = match std::mem::replace(&mut self.writing, Writing::Gone) {
            Writing::Streaming(writer, path) => (Some(writer), Some(path)),
            Writing::Finishing(path) => (None, Some(path)),
            other => {
                self.writing = other;
                (None, None)
            }
        };
        // Renamed here rather than by the writer thread, which may not get to it before
        // an interrupted process exits. A chunk it is writing still lands in the same
        // file, after the others; whoever carries it on verifies the whole content anyway.
        // Only what the writer got to is sure to be in the file: it stops at its next chunk.
        let written = || std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let kept = (path.is_some() || self.kept > 0) && self.park_file(written());
        // Kept, its name is the partial download's now. Otherwise the path goes with it,
        // whatever the writer thread still writes into the file: nothing unverified is
        // visible once the blob is dropped.
        if let (true, Some(path)) = (kept, path.as_mut()) {
            path.disable_cleanup(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob whose directory was removed under the run says that the directory is gone,
    /// not only the system's "No such file or directory" about the blob's own name.
    #[test]
    fn a_rename_into_a_removed_directory_says_it_is_gone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("blobs").join("sha256");
        let dest = dir.join("ab");
        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = rename_err(&dest, gone).to_string();
        assert!(
            e.starts_with(&format!(
                "renaming into {}: its directory {} is gone",
                dest.display(),
                dir.display()
            )),
            "{e}"
        );
        // Its directory there, the system's words stand alone.
        std::fs::create_dir_all(&dir).unwrap();
        let e = rename_err(&dest, std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!e.to_string().contains("is gone"), "{e}");
    }
}
