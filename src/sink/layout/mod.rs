//! The blob store of an OCI image layout: `DIR/blobs/<algorithm>/<encoded>`.
//!
//! A blob is written into a temporary file beside its final place (same filesystem), hashed
//! on the way, fsync'd, and renamed into place only once it verified. So a path under
//! `blobs/` always holds exactly the content its name says, whatever happens to the process.
//! The renames are made durable in batches, not per blob ([`LayoutStore::sync`]).
//! Temporary files are named `.dist-tmp-<run>~…`, the run being `<pid>.<start>@<host>`
//! ([`super::owner::me`]); a later run removes those whose process is gone (after
//! `kill -9`, say) and that no process holds its lock on.
//!
//! A download of a blob that stops part-way (interrupted, timed out, or failed on the
//! network after its retries) past its first MiB keeps what it wrote as
//! `.dist-partial-<encoded>` beside the blob's place: the next run that wants the blob
//! claims that file (by renaming it to a temporary of its own, so that two runs never share
//! one), hashes it, and asks only for the rest. Content that failed verification is never
//! kept. A killed run's temporary file of a blob known by its digest names that blob
//! (`.dist-tmp-<run>~<encoded>~…`), and becomes its partial download when the next
//! run opens the store. Partial files untouched for a day are removed then.
//!
//! A blob is fetched into the store under a lock another process sees
//! ([`LayoutStore::try_ingest`]: an `flock` on `.dist-lock-<encoded>` beside the blob's
//! place), as containerd fetches under its ingest locks: runs into one layout that want
//! the same blob at once (pulls of images sharing a layer) download it once, the others
//! waiting for it to be stored.
//!
//! `index.json` is updated through [`super::index`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::Prefix;
use crate::image::Descriptor;

mod files;
mod locks;
mod sweep;
mod temp_blob;

pub use files::hash_file;
pub use files::sync_dir;
use files::{
    above, create_dirs, hash_reader, made_in, make_skeleton, memory_backed, on_disk, open_regular,
    take_back,
};
pub use locks::IngestLock;
pub(crate) use locks::WaitMark;
use locks::{hold_within, open_lock};
pub(super) use locks::{names_file, try_flock};
use sweep::remove_stale_in;
pub use temp_blob::TempBlob;
use temp_blob::{
    blob_temp_prefix, new_named_file, new_named_file_async, park, partial_in, temp_prefix, Writing,
};
pub(super) use temp_blob::{new_layout_file, new_layout_file_with_mode};

pub(super) const TMP_PREFIX: &str = ".dist-tmp-";
/// A partial download kept for the next run: `.dist-partial-<encoded>`.
const PARTIAL_PREFIX: &str = ".dist-partial-";
/// The lock of a blob being fetched into the store: `.dist-lock-<encoded>`.
const LOCK_PREFIX: &str = ".dist-lock-";
/// A partial download nobody carried on within this long is removed: a layout is often
/// copied or served, and should not hold forgotten gigabytes.
const PARTIAL_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long claiming a partial download waits for a process still writing it to let go:
/// the run that kept it, its writer thread finishing the last chunk, takes milliseconds.
/// A store kept open may fetch a blob again as soon as its download failed: without the
/// wait, it found the partial download busy and fetched the blob whole.
const CLAIM_WAIT: Duration = Duration::from_secs(2);

/// An OCI image layout directory used as a blob store.
#[derive(Debug, Clone)]
pub struct LayoutStore {
    root: PathBuf,
    /// Where `root` leads ([`on_disk`]): the same directory, named without going through
    /// the directories made aside (`made_aside`), which a failed run may remove before its
    /// layout ([`take_back`]).
    there: PathBuf,
    /// The blobs live in memory (tmpfs): file operations never wait for a device.
    in_memory: bool,
    /// Partial downloads found when the store opened and not claimed yet. Looking here
    /// instead of on disk costs a blob that has none (nearly all) no system call.
    partials: Arc<Mutex<HashSet<PathBuf>>>,
    /// Directories blobs were renamed into, or found in ([`LayoutStore::existing`]), since
    /// the last [`LayoutStore::sync`].
    unsynced: Arc<Mutex<HashSet<PathBuf>>>,
    /// Held across a [`LayoutStore::sync`], from taking the directories to their last
    /// fsync: a sync asked for meanwhile waits for the one under way, and fails if it did.
    syncing: Arc<Mutex<SyncRounds>>,
    /// [`SyncRounds::ended`], read without waiting for a sync under way: which rounds
    /// ended before a sync was asked for.
    rounds_ended: Arc<AtomicU64>,
    /// This run created the directory: a run that fails before storing anything removes
    /// it again ([`LayoutStore::remove_if_unused`]).
    created: bool,
    /// This run made the layout's files: the directory was not there, or was empty (made
    /// by the user for the output). A run that fails before storing anything removes them
    /// again, and the directory only when it made that too.
    laid_out: bool,
    /// The directories whose entries this run made when it created the layout: the one
    /// the layout is in and, if `create_dir_all` made that too, each one up to the first
    /// that was there. Empty when the layout was there already.
    made_in: Vec<PathBuf>,
    /// The directories above the layout ([`above`]) are to be synced by the next round of
    /// [`LayoutStore::sync`]: at first, and again once this run made the layout again.
    above_unsynced: Arc<AtomicBool>,
    /// The directories made for names a `..` in the layout's path left again (`x` of
    /// `-o x/../y`, no `x`), deepest first: a failed run takes them back with the rest.
    made_aside: Vec<PathBuf>,
    /// The blobs this run waits for while another run holds their lock, by lock file: a
    /// run stopped meanwhile names them ([`LayoutStore::waiting_for_others`]).
    waiting: Arc<Mutex<BTreeMap<PathBuf, Digest>>>,
    /// How far this run's entry in `index.json` got; never locked across a system call
    /// (a stop reads it).
    index_entry: Arc<Mutex<super::index::IndexEntry>>,
}

/// What [`LayoutStore::open`] writes into a new layout.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const EMPTY_INDEX: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// An I/O error that names the file the user knows (a blob's place, `index.json`; not the
/// temporary file on its way there) and the system's cause without `tempfile`'s repetition
/// of the temporary's path.
pub(super) fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}", path.display())).with_cause(os_error(e))
}

/// The system's error without what `tempfile` appends, `at path "<its random temporary
/// name>"`: our message names the directory already, and the name means nothing to the
/// reader. (`tempfile` keeps the system's error private; its text is all there is.)
pub(super) fn os_error(e: std::io::Error) -> std::io::Error {
    if e.get_ref().is_none() {
        return e;
    }
    let text = e.to_string();
    match text.split_once(" at path \"") {
        Some((system, _)) => std::io::Error::new(e.kind(), system.to_string()),
        None => e,
    }
}

/// The rounds of [`LayoutStore::sync`] that had directories to sync.
#[derive(Debug, Default)]
struct SyncRounds {
    /// How many ended.
    ended: u64,
    /// The last that failed, by its number, and its error as said.
    failed: Option<(u64, String)>,
}

impl LayoutStore {
    /// Opens (creating if needed) the layout at `root`: `oci-layout`, an empty `index.json`
    /// when there is none, and `blobs/`. Stale temporary files of dead processes are removed.
    /// A directory whose `oci-layout` or `index.json` is not a layout's is refused before
    /// anything is written ([`super::layout_check`]), with [`ErrorKind::InvalidInput`];
    /// other failures are [`ErrorKind::Io`]. Blocks (a few system calls, and one per stale
    /// temporary file): call it from `spawn_blocking` where a runtime's thread must not
    /// wait for a slow disk.
    pub fn open(root: impl Into<PathBuf>) -> Result<LayoutStore> {
        let root = root.into();
        // What is there is judged where the path leads once made (`x/../y`: `y`).
        let (there, made_aside) = on_disk(&root);
        super::layout_check::check(&there)?;
        let created = std::fs::symlink_metadata(&there).is_err();
        let made_in = if created { made_in(&there) } else { Vec::new() };
        // `mkdir out; dist fetch … -o out`: the directory is the user's, the layout in it
        // this run's, as much as in a directory it made.
        let laid_out = created || std::fs::read_dir(&there).is_ok_and(|mut d| d.next().is_none());
        let blobs = root.join("blobs");
        if let Err(e) = make_skeleton(&root, &blobs) {
            // A full disk, most often: what was begun of a new layout goes again, and the
            // directories made on the way to it, the layout's own directory made or not
            // (a `mkdir` above it refused).
            let never_made = created && std::fs::symlink_metadata(&there).is_err();
            if laid_out {
                take_back(&there, created, never_made, &made_aside, &made_in);
            }
            return Err(e);
        }
        let in_memory = memory_backed(&blobs);
        let store = LayoutStore {
            root,
            there,
            in_memory,
            partials: Arc::default(),
            unsynced: Arc::default(),
            syncing: Arc::default(),
            rounds_ended: Arc::default(),
            created,
            laid_out,
            made_in,
            made_aside,
            above_unsynced: Arc::new(AtomicBool::new(true)),
            waiting: Arc::default(),
            index_entry: Arc::default(),
        };
        store.sweep();
        Ok(store)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// For a run that failed: removes the layout again if this run made it (in a directory
    /// that was not there, or was empty) and nothing is in it but what
    /// [`LayoutStore::open`] wrote (no blob, no partial download, no other file, an index
    /// still empty), so that a mistyped reference or an unreachable registry leaves the
    /// output as it found it: no directory where there was none, an empty one where the
    /// user made one, nor the directories made on the way to a new one (`-o a/b/out` with
    /// no `a`: `a/b` and `a`, each while empty). Anything else stays as it is. Whether the
    /// layout was removed.
    pub fn remove_if_unused(&self) -> bool {
        if !self.laid_out {
            return false;
        }
        if take_back(
            &self.there,
            self.created,
            false,
            &self.made_aside,
            &self.made_in,
        ) {
            return true;
        }
        // Another run into the same new directory (a shard beside this one) put something
        // in it while it was being taken apart, often because it found it going and
        // rebuilt it ([`Self::temp`]): the layout is that run's now, and needs back the
        // files this removal may already have taken.
        if std::fs::symlink_metadata(&self.there).is_ok() {
            let _ = self.make_again(&self.root.join("blobs"));
        }
        false
    }

    /// Where the blob with `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.encoded())
    }

    /// The size of the blob if it is present. With `verify`, its content is hashed first
    /// and a blob that does not match its name counts as absent (it will be replaced).
    /// What no blob can replace is an [`ErrorKind::Io`] naming it: a directory at the
    /// blob's place, a file where `blobs/<algorithm>` must be a directory.
    /// A blob found is made durable under its name by the next [`Self::sync`], as one
    /// stored is: another process may have renamed it there and not synced its directory
    /// yet. Blocks: one system call, and with `verify` the reading of the whole blob (call
    /// it from `spawn_blocking` in async code then).
    pub fn existing(&self, digest: &Digest, verify: bool) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            // No blob is ever renamed over a directory: said now, rather than once the
            // blob was fetched whole, in every run, for its rename to fail.
            Ok(_) if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {
                let words = format!("{} is a directory, where the blob belongs", path.display());
                return Err(Error::new(ErrorKind::Io, words));
            }
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // A file where `blobs/<algorithm>` must be a directory: named, where the
            // system's words named the blob's place.
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                let dir = path.parent().expect("a blob is in a directory");
                let e = create_dirs(dir).err().map_or(e, |(_, words)| words);
                return Err(io_err("reading", &path, e));
            }
            Err(e) => return Err(io_err("reading", &path, e)),
        };
        // An empty file is checked even unasked, for free: no dist run leaves one (files
        // are renamed into place whole), but a `touch`, a full disk under another tool or
        // a crashed copy does, and it would stand for the blob for ever.
        if !verify && meta.len() == 0 && Digest::of(digest.algorithm(), b"") != *digest {
            tracing::warn!(path = %path.display(), "stored blob is empty, unlike its name; fetching again");
            return Ok(None);
        }
        if verify {
            let actual = hash_file(&path, digest.algorithm())?;
            if actual != *digest {
                tracing::warn!(path = %path.display(), %actual, "stored blob does not match its name; fetching again");
                return Ok(None);
            }
        }
        // Whoever renamed it here (a run beside this one between its renames and its sync,
        // a copy) may not have synced the directory: `index.json`, a report or an exit
        // status 0 relying on it could outlive its name after a power loss.
        self.note_unsynced(path.parent().expect("a blob is in a directory"));
        Ok(Some(meta.len()))
    }

    /// Notes `dir`, which holds a blob this run stored or relies on, for the next
    /// [`Self::sync`]. Nothing in memory (tmpfs), where no sync makes anything durable.
    fn note_unsynced(&self, dir: &Path) {
        if self.in_memory {
            return;
        }
        let mut unsynced = self.unsynced.lock().unwrap_or_else(|p| p.into_inner());
        if !unsynced.contains(dir) {
            unsynced.insert(dir.to_owned());
        }
    }

    /// The directories noted for the next [`Self::sync`]; `None` in memory, where none is.
    #[cfg(test)]
    pub(crate) fn unsynced(&self) -> Option<Vec<PathBuf>> {
        let unsynced = self.unsynced.lock().unwrap_or_else(|p| p.into_inner());
        (!self.in_memory).then(|| unsynced.iter().cloned().collect())
    }

    fn partial_path(&self, digest: &Digest) -> PathBuf {
        let dir = self.root.join("blobs").join(digest.algorithm().as_str());
        partial_in(&dir, digest.encoded())
    }

    /// Claims the partial download of `digest` an earlier run kept, if there is one: a
    /// temporary file holding its first bytes, set to be kept again should this download
    /// stop too, and their hash. Blocks (it reads the whole partial file back).
    pub fn resume(&self, digest: &Digest) -> Result<Option<(TempBlob, Prefix)>> {
        self.resume_within(digest, None)
    }

    /// [`Self::resume`] for a blob of `size` bytes, if known. A partial download longer
    /// than that is not claimed, nor read, and stays where it is: `size` may be wrong (a
    /// `size:` hint, where the registry's declared size is the authority), and then the
    /// partial, a prefix of the blob, is a run given the right size's head start. Once the
    /// registry's answer confirms `size`, [`Self::remove_partial_past`] removes it; once
    /// the blob is stored, [`Self::remove_partial`].
    pub fn resume_within(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Option<(TempBlob, Prefix)>> {
        let Some(partial) = self.known_partial(digest, true) else {
            return Ok(None);
        };
        let dir = partial.parent().expect("a partial file is in a directory");
        // Locked before it is renamed to this run's name, and the name checked once it is
        // (another run may have claimed it, or kept another partial over it, meanwhile):
        // renamed first, a stall before the lock let a sweep take the claim for a killed
        // run's file and move it back under this run, whose commit then failed.
        let claimed = open_regular(&partial)
            .and_then(|file| match hold_within(&file, CLAIM_WAIT) {
                true if names_file(&partial, &file) => Ok(file),
                true => Err(std::io::ErrorKind::NotFound.into()),
                false => Err(std::io::ErrorKind::ResourceBusy.into()),
            })
            .inspect_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    let _ = std::fs::remove_file(&partial);
                }
            })
            .and_then(|file| {
                let mut file = Some(file);
                tempfile::Builder::new()
                    .prefix(&blob_temp_prefix(digest))
                    .make_in(dir, |path| {
                        std::fs::rename(&partial, path)?;
                        #[cfg(test)]
                        locks::between(locks::Step::Claimed, path);
                        match file.take() {
                            Some(file) if names_file(path, &file) => Ok(file),
                            // Another partial, kept over the one locked after it was:
                            // it goes back, for a later fetch, unless one at least as
                            // long was kept since (renamed back, it replaced that one).
                            _ => {
                                let len = std::fs::symlink_metadata(path).map_or(0, |m| m.len());
                                park(path, len, &partial);
                                Err(std::io::ErrorKind::NotFound.into())
                            }
                        }
                    })
            });
        let file = match claimed {
            Ok(file) => file,
            // Another run claimed it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(path = %partial.display(), "not a regular file of its own (a link?); removed, and the blob fetched whole");
                return Ok(None);
            }
            // Still written by a live process: the run that kept it, finishing its last
            // chunk, or a run whose file was taken for a dead one's. Appending too would
            // mix two writers in one file.
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {
                tracing::warn!(path = %partial.display(), "a partial download another process still writes to; left alone, and the blob fetched whole");
                return Ok(None);
            }
            // Another user's partial in a shared directory: not writable by this run, or
            // not even movable (a sticky directory, as /tmp is). Failing the blob over it
            // failed it in every run, for ever where it could not be moved (nor removed
            // when a day old); it is only a head start, and the blob is fetched whole.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::warn!(path = %partial.display(), error = %os_error(e), "a partial download this run may not write to (another user's?); left alone, and the blob fetched whole");
                return Ok(None);
            }
            Err(e) => return Err(io_err("claiming", &partial, e)),
        };
        // Damaged (a copy gone wrong, a file extended, or another file put in its place):
        // hashing it could take minutes, for the registry to refuse a range past the
        // blob's end, and the blob to be fetched whole all the same.
        let meta = file.as_file().metadata();
        let kept_modified = meta.as_ref().ok().and_then(|m| m.modified().ok());
        let len = meta.map(|m| m.len());
        if let (Some(size), Ok(len)) = (size, len) {
            if len > size {
                // Removed on the size given alone, a right partial went over a wrong
                // `size:` hint, where one a wrong size refuses the rest of is kept.
                tracing::info!(path = %partial.display(), len, size, "a partial download longer than the size given; left for the registry's answer to judge, and the blob fetched whole");
                if std::fs::rename(file.path(), &partial).is_ok() {
                    let mut partials = self.partials.lock().unwrap_or_else(|p| p.into_inner());
                    partials.insert(partial);
                }
                return Ok(None);
            }
        }
        let path = file.path().to_owned();
        // Reading to the end leaves the file's position there, where the rest is appended.
        let (hasher, len) = hash_reader(file.as_file(), digest.algorithm())
            .map_err(|e| io_err("reading", &partial, e))?;
        let blob = TempBlob {
            path,
            writing: Writing::Gathering {
                file,
                batch: Vec::new(),
                batched: 0,
            },
            store: self.clone(),
            park: Some(digest.clone()),
            kept: len,
            kept_modified,
            len,
            held_to: None,
            unsent: Default::default(),
        };
        if len == 0 {
            blob.discard();
            return Ok(None);
        }
        Ok(Some((blob, Prefix { len, hasher })))
    }

    /// Removes the partial download of `digest` an earlier run kept (the blob is stored
    /// now). Costs nothing when there is none.
    pub fn remove_partial(&self, digest: &Digest) {
        if let Some(partial) = self.known_partial(digest, true) {
            let _ = std::fs::remove_file(&partial);
        }
    }

    /// Removes the partial download of `digest` an earlier run kept if it is longer than
    /// `size`, the size the registry's answer holds the blob to: no prefix of the blob.
    /// That is [`Download::declared_size`](crate::Download::declared_size), not
    /// `meta().size`, which may be the size given alone. Costs nothing when there is
    /// none. Blocks (one `stat`).
    pub fn remove_partial_past(&self, digest: &Digest, size: u64) {
        let Some(partial) = self.known_partial(digest, false) else {
            return;
        };
        let len = std::fs::symlink_metadata(&partial).map_or(0, |m| m.len());
        if len > size {
            tracing::warn!(path = %partial.display(), len, size, "a partial download longer than its blob; removed");
            self.remove_partial(digest);
        }
    }

    /// Whether an earlier run kept a partial download of `digest` that [`Self::resume`]
    /// may claim. No system call.
    pub fn has_partial(&self, digest: &Digest) -> bool {
        self.known_partial(digest, false).is_some()
    }

    /// The partial download of `digest` found at open and not claimed since, if any;
    /// with `forget`, it is not known any more.
    fn known_partial(&self, digest: &Digest, forget: bool) -> Option<PathBuf> {
        let mut partials = self.partials.lock().unwrap_or_else(|p| p.into_inner());
        if partials.is_empty() {
            return None;
        }
        let path = self.partial_path(digest);
        let known = if forget {
            partials.remove(&path)
        } else {
            partials.contains(&path)
        };
        known.then_some(path)
    }

    /// A new temporary file for content of `algorithm`, in the directory it will end up in.
    /// Blocks (a few system calls; seconds, rarely, while another run's sweep probes the
    /// new file's lock).
    pub fn temp(&self, algorithm: Algorithm) -> Result<TempBlob> {
        self.new_temp(algorithm, None)
    }

    /// A new temporary file for the blob `digest`. Dropped unfinished (the run interrupted,
    /// or the network failing past its retries), what reached it stays as a partial
    /// download for the next run, and so it does after `kill -9`: its name says which blob
    /// it holds, and the next run to open the store turns it into that blob's partial
    /// download. Only content past the first MiB is ever on disk before commit. Content
    /// that failed verification goes with [`TempBlob::discard`], not a drop: a later fetch
    /// would carry on from its wrong bytes.
    pub fn temp_for(&self, digest: &Digest) -> Result<TempBlob> {
        self.new_temp(digest.algorithm(), Some(digest))
    }

    /// Takes the lock under which `digest` is fetched into the store, unless another
    /// fetch holds it: another process's, or another task's of this one (an `flock` is
    /// held by an open file, not by a process; on NFS, which makes it a lock on the server
    /// held by the process, two tasks of one run may both fetch the blob, and only another
    /// process is kept waiting), which is then fetching the blob. Hold the
    /// lock until the blob is stored or its fetch has failed; the lock is let go when
    /// dropped, and by the kernel when its process dies. Where no lock can be had (a
    /// filesystem without `flock`, a directory that is not writable), the lock holds
    /// nothing and the fetch goes ahead: the lock only saves a second download, the
    /// store's renames keep every blob whole either way. Blocks (a few system calls).
    pub fn try_ingest(&self, digest: &Digest) -> Option<IngestLock> {
        let path = self.lock_path(digest);
        let dir = self.root.join("blobs").join(digest.algorithm().as_str());
        let unlocked = || Some(IngestLock::none());
        // Each turn either takes the lock, finds it held, or finds that the file it
        // locked was unlinked by its holder meanwhile, and tries the new one.
        for _ in 0..8 {
            let file = match open_lock(&path, true) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // The layout taken away by a failed run beside this one: made again,
                    // as for a temporary file ([`Self::temp`]).
                    if self.make_again(&dir).is_err() {
                        return unlocked();
                    }
                    continue;
                }
                // A symbolic link planted at the lock's name: never followed.
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "no lock for the blob's fetch");
                    return unlocked();
                }
            };
            match try_flock(&file, libc::LOCK_EX) {
                Ok(true) if names_file(&path, &file) => {
                    self.note_partial(digest);
                    return Some(IngestLock::held(file, path));
                }
                Ok(true) => continue,
                Ok(false) => return None,
                // No locks on this filesystem: its lock files would hold nothing, and pile up.
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "no lock for the blob's fetch");
                    let _ = std::fs::remove_file(&path);
                    return unlocked();
                }
            }
        }
        unlocked()
    }

    /// The file whose lock [`Self::try_ingest`] takes for `digest`: the one to look for
    /// (`fuser`, `lsof`) when another run holds it too long.
    pub fn lock_path(&self, digest: &Digest) -> PathBuf {
        let dir = self.root.join("blobs").join(digest.algorithm().as_str());
        dir.join(format!("{LOCK_PREFIX}{}", digest.encoded()))
    }

    /// Whether this process holds the lock [`Self::try_ingest`] takes for `digest`: a wait
    /// for it is for a fetch of this run, not another's.
    pub(crate) fn held_here(&self, digest: &Digest) -> bool {
        locks::held_here(&self.lock_path(digest))
    }

    /// Notes that this run waits for `digest` while another run holds its lock, until the
    /// mark is dropped.
    pub(crate) fn mark_waiting(&self, digest: &Digest) -> WaitMark {
        let path = self.lock_path(digest);
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.insert(path.clone(), digest.clone());
        WaitMark {
            waiting: self.waiting.clone(),
            path,
        }
    }

    /// The blobs this run waits for while another run holds their lock, with the lock
    /// file: what a run stopped by `--timeout` was held up by, when another run holding a
    /// blob (stopped with Ctrl-Z, hung) kept it from finishing.
    pub fn waiting_for_others(&self) -> Vec<(Digest, PathBuf)> {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting
            .iter()
            .map(|(p, d)| (d.clone(), p.clone()))
            .collect()
    }

    /// The files a fetch of `digest` writes into the store (its temporary files, named
    /// for it, and its partial download), each by name and length, sorted: what changes
    /// while any run downloads it, so that a wait for the run holding its lock tells a
    /// download under way from a run stopped or hung. Blocks (it lists the folder).
    pub(crate) fn downloading(&self, digest: &Digest) -> Vec<(String, u64)> {
        let dir = self.root.join("blobs").join(digest.algorithm().as_str());
        let partial = format!("{PARTIAL_PREFIX}{}", digest.encoded());
        let named = format!("~{}~", digest.encoded());
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut found: Vec<(String, u64)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let its =
                    name == partial || (name.starts_with(TMP_PREFIX) && name.contains(&named));
                // Named first: a stat of every blob in a large store, for every wait's
                // look, cost 100,000 system calls and their inodes read each time.
                let len = its.then(|| entry.metadata().ok())??.len();
                Some((name, len))
            })
            .collect();
        found.sort();
        found
    }

    /// Notes the partial download of `digest` if one is there: another process may have
    /// left it since the store opened (a service keeps its store open for its life). One
    /// system call, made once this run holds the blob's lock, under which partial
    /// downloads are left. A day old, it is left to the sweep.
    fn note_partial(&self, digest: &Digest) {
        let path = self.partial_path(digest);
        let fresh = crate::sink::owner::age(&path).is_some_and(|a| a <= PARTIAL_AGE);
        if fresh && std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
            let mut partials = self.partials.lock().unwrap_or_else(|p| p.into_inner());
            partials.insert(path);
        }
    }

    /// Sweeps the folder of `algorithm` again as at open: a process that fetched a blob
    /// under its lock and let go without storing it (stopped, or killed) left a partial
    /// download, or a temporary file that becomes one, for whoever takes the lock next.
    /// Blocks (it lists the folder).
    pub fn find_partials(&self, algorithm: Algorithm) {
        let found = remove_stale_in(&self.root.join("blobs").join(algorithm.as_str()));
        let mut partials = self.partials.lock().unwrap_or_else(|p| p.into_inner());
        partials.extend(found);
    }

    fn new_temp(&self, algorithm: Algorithm, digest: Option<&Digest>) -> Result<TempBlob> {
        let (dir, prefix) = self.temp_place(algorithm, digest);
        let mut tries = 0;
        let file = loop {
            match new_named_file(&dir, &prefix) {
                Err(e) if self.again_after(&dir, &e, &mut tries)? => {}
                other => break other,
            }
        }
        .map_err(|e| io_err("creating a temporary file in", &dir, e))?;
        Ok(self.temp_blob(file, digest))
    }

    /// [`Self::temp`] (`digest` `None`) or [`Self::temp_for`] for async code: the wait for
    /// the new file's lock, up to [`CLAIM_WAIT`] a try while another run's sweep probes
    /// it, is on the blocking pool rather than stall every transfer on the runtime's
    /// thread.
    pub(crate) async fn temp_async(
        &self,
        algorithm: Algorithm,
        digest: Option<&Digest>,
    ) -> Result<TempBlob> {
        let (dir, prefix) = self.temp_place(algorithm, digest);
        let mut tries = 0;
        let file = loop {
            match new_named_file_async(&dir, &prefix).await {
                Err(e) if self.again_after(&dir, &e, &mut tries)? => {}
                other => break other,
            }
        }
        .map_err(|e| io_err("creating a temporary file in", &dir, e))?;
        Ok(self.temp_blob(file, digest))
    }

    /// The directory a temporary file for content of `algorithm` is made in, and the
    /// prefix of its name (which says the blob `digest`'s, if known).
    fn temp_place(&self, algorithm: Algorithm, digest: Option<&Digest>) -> (PathBuf, String) {
        let dir = self.root.join("blobs").join(algorithm.as_str());
        let prefix = match digest {
            Some(d) => blob_temp_prefix(d),
            None => temp_prefix(),
        };
        (dir, prefix)
    }

    /// Whether a temporary file is made again in `dir` after failing with `e`, once the
    /// directory is made again (`tries` counts the times). The directory nearly always
    /// exists: it is made only when the file cannot be. It may also be gone with the whole
    /// layout: a run that created the directory and failed without storing anything
    /// removes it ([`Self::remove_if_unused`]), while another run into it (a shard beside
    /// it) is still at work. That run needs the layout's files back too, or it stores
    /// blobs in a directory no tool takes for a layout. The removal may still be under way
    /// when the layout is made again, and take the new `blobs/<algorithm>` with it: another
    /// try or two finds it done (it runs once, and puts the layout back itself when it
    /// finds it taken over).
    fn again_after(&self, dir: &Path, e: &std::io::Error, tries: &mut usize) -> Result<bool> {
        if e.kind() != std::io::ErrorKind::NotFound || *tries >= 5 {
            return Ok(false);
        }
        *tries += 1;
        self.make_again(dir)?;
        Ok(true)
    }

    /// The new temporary file `file`, of the blob `digest` if known, as a [`TempBlob`].
    fn temp_blob(&self, file: tempfile::NamedTempFile, digest: Option<&Digest>) -> TempBlob {
        TempBlob {
            path: file.path().to_owned(),
            writing: Writing::Gathering {
                file,
                batch: Vec::new(),
                batched: 0,
            },
            store: self.clone(),
            park: digest.cloned(),
            kept: 0,
            kept_modified: None,
            len: 0,
            held_to: None,
            unsent: Default::default(),
        }
    }

    /// Makes the layout's skeleton again, up to `dir` ([`make_skeleton`]): another run took
    /// it away, and the directories above it too, perhaps, which this run then made. Their
    /// entries are synced again with the next round of [`Self::sync`].
    fn make_again(&self, dir: &Path) -> Result<()> {
        let made = make_skeleton(&self.root, dir);
        self.above_unsynced.store(true, Ordering::Release);
        made
    }

    /// Adds `entry` to `index.json`, atomically and safely against other runs; see
    /// [`super::index::add_entry`] for the rules. The blobs stored so far are made
    /// durable first ([`Self::sync`]), so that after a crash `index.json` names none that
    /// is not there. Blocks (it may wait for another run's lock); call it from
    /// `spawn_blocking` in async code. Returns the entries replaced.
    pub fn add_to_index(&self, entry: &Descriptor) -> Result<Vec<Descriptor>> {
        self.sync()?;
        super::index::add_entry(&self.root, entry)
    }

    /// [`Self::add_to_index`], unless `index.json` has an entry of `entry`'s name for
    /// `keep`, which then stays; see [`super::index::add_entry_unless`]. Blocks.
    pub fn add_to_index_unless(
        &self,
        entry: &Descriptor,
        keep: Option<&Digest>,
    ) -> Result<super::index::Added> {
        self.sync()?;
        super::index::add_entry_unless(&self.root, entry, keep)
    }

    /// [`Self::add_to_index_unless`] if no other run holds `index.json`'s lock: `None`,
    /// nothing written to it, if one does or if `wanted`, asked once the lock is taken
    /// and again at the rename, says no; see [`super::index::try_add_entry_unless`].
    /// How far the entry got is recorded for [`Self::index_entry`] (afresh once an earlier
    /// entry was named, or failed its directory's sync), whose lock `wanted` is
    /// asked under once the lock is taken and at the rename: it must not call
    /// [`Self::index_entry`]. Blocks (the syncs and the write, not for the lock).
    pub fn try_add_to_index_unless(
        &self,
        entry: &Descriptor,
        keep: Option<&Digest>,
        wanted: &dyn Fn() -> bool,
    ) -> Result<Option<super::index::Added>> {
        use super::index::IndexEntry;
        let record = |entry| *self.index_entry.lock().unwrap_or_else(|p| p.into_inner()) = entry;
        // An earlier entry's end (a library naming several images with one store) is not
        // this one's: it stood, every later state waiting on `Unwritten`, and a stop said
        // an image waiting for another run's lock was named.
        {
            let mut got = self.index_entry.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(*got, IndexEntry::Durable | IndexEntry::Unsynced) {
                *got = IndexEntry::Unwritten;
            }
        }
        // Whatever stops a run here is said by this record: another run's lock was blamed
        // for a stop that came while this run's own blobs were being synced.
        let pending = !self
            .unsynced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if pending {
            self.advance_entry(IndexEntry::Unwritten, IndexEntry::SyncingBlobs);
        }
        let synced = self.sync();
        self.advance_entry(IndexEntry::SyncingBlobs, IndexEntry::Unwritten);
        synced?;
        // Asked under the record's lock, as at the rename: a caller that stopped wanting
        // the entry and read the record found the lock still "held by another run".
        let took_lock = std::cell::Cell::new(false);
        let wanted_once_locked = || {
            let mut got = self.index_entry.lock().unwrap_or_else(|p| p.into_inner());
            took_lock.set(true);
            let still = wanted();
            if still && *got == IndexEntry::Locked {
                *got = IndexEntry::Unwritten;
            }
            still
        };
        // Asked, and the rename marked begun, under the record's lock: a caller that
        // stopped wanting the entry, then reads the record, finds none to come, or one
        // begun or done. The rename itself is not under it: on a hung filesystem it may
        // not return, and a stop reading the record waited on it.
        let rename_if: super::index::RenameIf = &|rename| {
            {
                let mut got = self.index_entry.lock().unwrap_or_else(|p| p.into_inner());
                if !wanted() {
                    return Ok(false);
                }
                *got = IndexEntry::Renaming;
            }
            let renamed = rename();
            record(match renamed {
                Ok(()) => IndexEntry::Unsynced,
                Err(_) => IndexEntry::Unwritten,
            });
            renamed.map(|()| true)
        };
        let added = super::index::try_add_entry_renaming_if(
            &self.root,
            entry,
            keep,
            &wanted_once_locked,
            rename_if,
        )?;
        match added {
            Some(_) => record(IndexEntry::Durable),
            // `None` before the lock was taken: another run holds it.
            None if !took_lock.get() => {
                self.advance_entry(IndexEntry::Unwritten, IndexEntry::Locked)
            }
            None => {}
        }
        Ok(added)
    }

    /// Records `to` as how far the entry got, if it is at `from`.
    fn advance_entry(&self, from: super::index::IndexEntry, to: super::index::IndexEntry) {
        let mut got = self.index_entry.lock().unwrap_or_else(|p| p.into_inner());
        if *got == from {
            *got = to;
        }
    }

    /// How far this run's entry in `index.json` (the last one asked for) got through
    /// [`Self::try_add_to_index_unless`]: what a run stopped meanwhile can say of it.
    /// Does not wait for a rename under way ([`IndexEntry::Renaming`](super::index::IndexEntry::Renaming)).
    pub fn index_entry(&self) -> super::index::IndexEntry {
        *self.index_entry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the blobs stored since the last call durable under their names, and those
    /// found stored ([`Self::existing`]), which another process may have renamed into place
    /// without syncing yet. A blob's content is fsync'd before its rename into place, but
    /// the rename is only as durable as its directory: a power loss soon after a run that
    /// said it stored a blob could take the name back. The directories (each
    /// `blobs/<algorithm>` a blob went into, `blobs/`, the layout's own, and in the first
    /// round the ones above it on its filesystem, whoever made them) are fsync'd here, not
    /// per blob: once per blob cost 1000 small blobs a fifth to a third more time on ext4, once
    /// per batch nothing measurable, nor once a second. A service whose batch never ends
    /// calls it every second or so, as `dist fetch LOC - -o DIR` does, or the names it
    /// stored may never be durable. Nothing to do when no blob was stored or found, or in
    /// memory (tmpfs). Blocks, and waits for a sync under way (another thread's, one left
    /// running by a dropped future) before it returns: whatever was noted before the call
    /// is then synced, or the call fails as the sync that took it did (its message: that
    /// sync's caller may be gone, its error with it).
    pub fn sync(&self) -> Result<()> {
        // One at a time: a sync that found the directories taken by one under way (a pull
        // stopped in its index's sync, whose blocking thread the stop cannot end) returned
        // at once, and the run exited before they were synced.
        let asked_after = self.rounds_ended.load(Ordering::Acquire);
        let mut rounds = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        let dirs: Vec<PathBuf> = {
            let mut unsynced = self.unsynced.lock().unwrap_or_else(|p| p.into_inner());
            unsynced.drain().collect()
        };
        // A round that ended since this sync was asked for may have taken some of what it
        // was to sync. Failed, its error went to its caller, perhaps a future dropped by a
        // stop, and its directories are not kept for another round: `Ok` here, whether
        // nothing was left or only what was noted meanwhile, said those names were durable.
        let missed = match &rounds.failed {
            Some((round, msg)) if *round > asked_after => Some(Error::new(
                ErrorKind::Io,
                format!("{msg} (in the sync under way when this one was asked for)"),
            )),
            _ => None,
        };
        if dirs.is_empty() {
            return missed.map_or(Ok(()), Err);
        }
        let synced = self.sync_round(&dirs);
        rounds.ended += 1;
        if let Err(e) = &synced {
            rounds.failed = Some((rounds.ended, e.to_string()));
        }
        let synced = synced.and(missed.map_or(Ok(()), Err));
        self.rounds_ended.store(rounds.ended, Ordering::Release);
        synced
    }

    /// One round of [`Self::sync`]: `dirs` and those every round syncs.
    fn sync_round(&self, dirs: &[PathBuf]) -> Result<()> {
        let blobs = self.root.join("blobs");
        // A layout holds its blobs only once its own name, and those of the directories
        // above it, are durable: made by another run into it (a shard that started first
        // and has not synced them yet), they were left to that run, and a shard that
        // finished first exited with its blobs hanging on them. Once per store, as they
        // stay made (and once more if this run made them again); not the whole way up per
        // round, an fsync each.
        // Every directory is tried whatever failed before it: after an EIO in one, the
        // others' names can still be made durable, and this round's list is not kept for
        // another (a second fsync of a failed directory may report success for what was
        // lost, as PostgreSQL learned).
        let mut first = None;
        let mut more = 0;
        let above = match self.above_unsynced.swap(false, Ordering::AcqRel) {
            true => above(&self.root),
            false => Vec::new(),
        };
        for dir in dirs.iter().chain([&blobs, &self.root]).chain(&above) {
            if let Err(e) = sync_dir(dir) {
                match first {
                    None => first = Some((dir, e)),
                    Some(_) => more += 1,
                }
            }
        }
        let Some((dir, e)) = first else {
            return Ok(());
        };
        let also = match more {
            0 => String::new(),
            1 => " (and 1 other directory)".to_string(),
            n => format!(" (and {n} other directories)"),
        };
        let msg = format!("syncing {}{also}", dir.display());
        Err(Error::new(ErrorKind::Io, msg).with_cause(os_error(e)))
    }

    /// Removes `.dist-tmp-<pid>-*` files whose process no longer runs, in the layout's
    /// root (index and layout files) and under `blobs/<algorithm>/`, partial downloads
    /// older than [`PARTIAL_AGE`], and lock files no process holds; notes the partial
    /// downloads kept.
    fn sweep(&self) {
        remove_stale_in(&self.root);
        let Ok(algs) = std::fs::read_dir(self.root.join("blobs")) else {
            return;
        };
        let mut partials = self.partials.lock().unwrap_or_else(|p| p.into_inner());
        for alg in algs.flatten() {
            partials.extend(remove_stale_in(&alg.path()));
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::locks::hold;
    use super::*;

    #[test]
    fn a_failed_temporary_file_is_described_without_its_random_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        let e = new_layout_file(&missing).unwrap_err();
        assert!(
            e.to_string().contains("at path"),
            "tempfile's own words: {e}"
        );
        let shown = io_err("creating a temporary file in", &missing, e).to_string();
        assert!(!shown.contains("at path"), "{shown}");
        assert!(shown.contains("No such file or directory"), "{shown}");
    }

    /// Layout files get the mode of any new file (0666 less the umask), which
    /// `/proc/self/status` reports without changing it.
    #[cfg(target_os = "linux")]
    #[test]
    fn layout_files_are_as_readable_as_the_umask_allows() {
        use std::os::unix::fs::PermissionsExt;
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .expect("Umask in /proc/self/status");
        let dir = tempfile::tempdir().unwrap();
        let file = new_layout_file(dir.path()).unwrap();
        let mode = file.as_file().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn commit_places_blob_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        commit_places_blob_in(dir.path()).await;
    }

    /// On tmpfs the commit runs on the caller's thread: the same guarantees hold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn commit_in_memory_places_blob_and_leaves_no_temporary() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        assert!(memory_backed(dir.path()), "/dev/shm is a tmpfs on Linux");
        commit_places_blob_in(dir.path()).await;
    }

    /// A blob found stored, which another process may have renamed into place without
    /// syncing its directory yet, is synced by the next `sync` as one this run stored:
    /// a run that stored nothing synced nothing, and `index.json` named blobs whose names
    /// a power loss could take back. On tmpfs there is nothing to sync.
    #[test]
    fn a_blob_found_stored_is_synced_by_the_next_sync() {
        let data = b"placed by another run";
        let d = Digest::of(Algorithm::Sha256, data);
        let disk = tempfile::tempdir().unwrap();
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        for dir in [disk.path(), shm.path()] {
            let store = LayoutStore::open(dir).unwrap();
            let path = store.blob_path(&d);
            assert_eq!(store.existing(&d, false).unwrap(), None);
            assert!(store.unsynced.lock().unwrap().is_empty(), "nothing found");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, data).unwrap();
            assert_eq!(store.existing(&d, false).unwrap(), Some(data.len() as u64));
            let noted: Vec<PathBuf> = store.unsynced.lock().unwrap().iter().cloned().collect();
            match store.in_memory {
                false => assert_eq!(noted, [path.parent().unwrap()]),
                true => assert!(noted.is_empty(), "{noted:?}"),
            }
            store.sync().unwrap();
            assert!(store.unsynced.lock().unwrap().is_empty());
        }
    }

    /// The directories above a layout are synced in the first round, and again once the
    /// store made the layout again after another run took it away with the directory made
    /// for it: synced only once, the entries made anew were left to a power loss.
    #[test]
    fn the_directories_above_a_layout_made_again_are_synced_again() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("made");
        let store = LayoutStore::open(made.join("new")).unwrap();
        // Failed, not skipped: returning here passed having checked nothing, its notice
        // captured by the harness (as the tests under tests/ need, TMPDIR on a disk).
        assert!(
            !store.in_memory,
            "TMPDIR is in memory (tmpfs), where nothing is synced: point it at a disk"
        );
        let above_unsynced = || store.above_unsynced.load(Ordering::Acquire);
        assert!(above_unsynced());
        assert!(above(store.root()).contains(&made.canonicalize().unwrap()));
        store.note_unsynced(&store.root().join("blobs"));
        store.sync().unwrap();
        assert!(!above_unsynced(), "synced in the first round");
        store.note_unsynced(&store.root().join("blobs"));
        store.sync().unwrap();
        assert!(!above_unsynced());
        std::fs::remove_dir_all(&made).unwrap();
        let _temp = store.temp(Algorithm::Sha256).unwrap();
        assert!(made.join("new/blobs/sha256").is_dir());
        assert!(above_unsynced(), "made again: to be synced again");
    }

    /// A store whose sync, under way on its own thread, is held opening a FIFO noted as a
    /// directory to sync (beside the paths named `also`, none there) until the FIFO's other
    /// end is opened: the directory the store is in, the store, the FIFO and that sync's
    /// thread.
    #[allow(clippy::type_complexity)]
    fn a_sync_held(
        also: &[&str],
    ) -> (
        tempfile::TempDir,
        LayoutStore,
        PathBuf,
        std::thread::JoinHandle<Result<()>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path().join("lay")).unwrap();
        let fifo = dir.path().join("held");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let mut noted = store.unsynced.lock().unwrap();
        noted.insert(fifo.clone());
        noted.extend(also.iter().map(|name| dir.path().join(name)));
        drop(noted);
        let first = std::thread::spawn({
            let store = store.clone();
            move || store.sync()
        });
        // The deadline only guards against a hang.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !store.unsynced.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the first sync never began"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        (dir, store, fifo, first)
    }

    /// A sync asked for while another is under way returns once that one is done: it found
    /// the directories taken by the other and returned at once, before they were synced.
    /// A pull stopped by its reader's going while it synced its blobs for `index.json` (on
    /// a blocking thread the stop cannot end) then synced "what it stored" and exited, the
    /// first sync cut off. The first sync is held in the open of a FIFO noted as its
    /// directory, until the test opens the FIFO's other end.
    #[test]
    fn a_sync_waits_for_one_under_way() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (_dir, store, fifo, first) = a_sync_held(&[]);
        let released = Arc::new(AtomicBool::new(false));
        let (done, second_done) = std::sync::mpsc::channel();
        let second = std::thread::spawn({
            let (store, released) = (store.clone(), released.clone());
            move || {
                let synced = store.sync();
                let _ = done.send(());
                (synced, released.load(Ordering::SeqCst))
            }
        });
        // A second sync that does not wait returns at once; one that waits is let go below.
        let early = second_done.recv_timeout(Duration::from_millis(200)).is_ok();
        released.store(true, Ordering::SeqCst);
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
        first.join().unwrap().unwrap();
        let (synced, after_release) = second.join().unwrap();
        synced.unwrap();
        assert!(
            !early && after_release,
            "the second sync returned while the first was still under way"
        );
    }

    /// A sync that waited for one under way, which took its directories and failed, fails
    /// too: it found nothing left to sync and returned `Ok`, so a pull stopped by its
    /// reader's going while its blobs were synced for `index.json` (the failure going with
    /// the dropped future) exited saying nothing, as if what it stored were durable.
    #[test]
    fn a_sync_that_waited_for_one_that_failed_fails() {
        let (dir, store, fifo, first) = a_sync_held(&["gone"]);
        let gone = dir.path().join("gone");
        let second = a_sync_waiting(&store);
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
        let e = first.join().unwrap().unwrap_err();
        assert!(e.to_string().contains(&gone.display().to_string()), "{e}");
        let waited = second.join().unwrap();
        let e = waited.expect_err("the second sync said its directories were synced");
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains(&gone.display().to_string()), "{e}");
        // Asked for after it, a sync does not say that round's failure again.
        store.sync().unwrap();
    }

    /// A sync on its own thread, once it waits for the one under way (asleep on the lock:
    /// nothing else in it sleeps before it).
    fn a_sync_waiting(store: &LayoutStore) -> std::thread::JoinHandle<Result<()>> {
        // The deadline only guards against a hang.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let (tid, second_tid) = std::sync::mpsc::channel();
        let second = std::thread::spawn({
            let store = store.clone();
            move || {
                // SAFETY: gettid has no preconditions.
                tid.send(unsafe { libc::gettid() }).unwrap();
                store.sync()
            }
        });
        let stat = format!("/proc/self/task/{}/stat", second_tid.recv().unwrap());
        let asleep = || {
            let stat = std::fs::read_to_string(&stat).unwrap_or_default();
            // The state follows the command's closing parenthesis.
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('S')
        };
        while !asleep() {
            assert!(
                std::time::Instant::now() < deadline,
                "the second sync never waited"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        second
    }

    /// A sync that waited for one that failed with its directories fails too when it then
    /// finds others to sync (noted meanwhile by another thread): it synced those, returned
    /// `Ok`, and the failed round's directories, not kept for another, were never durable.
    #[test]
    fn a_sync_that_waited_for_one_that_failed_fails_with_others_to_sync() {
        let (dir, store, fifo, first) = a_sync_held(&["gone"]);
        let gone = dir.path().join("gone");
        let second = a_sync_waiting(&store);
        store.unsynced.lock().unwrap().insert(dir.path().to_owned());
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
        first.join().unwrap().unwrap_err();
        let waited = second.join().unwrap();
        let e = waited.expect_err("the second sync said its directories were synced");
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(e.to_string().contains(&gone.display().to_string()), "{e}");
        store.sync().unwrap();
    }

    /// A directory that fails to sync does not keep the others of its round from being
    /// synced: the error names the first and counts the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_failed_directory_sync_goes_on_with_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path().join("lay")).unwrap();
        let gone = [dir.path().join("gone-1"), dir.path().join("gone-2")];
        store.unsynced.lock().unwrap().extend(gone.iter().cloned());
        let e = store.sync().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        let shown = e.to_string();
        assert!(
            gone.iter()
                .any(|g| shown
                    .starts_with(&format!("syncing {} (and 1 other directory)", g.display()))),
            "{shown}"
        );
        assert!(shown.contains("No such file or directory"), "{shown}");
        // The round is over: the failed directories are not synced again.
        store.sync().unwrap();
    }

    /// The directories whose entries a new layout's creation makes, up to the first one
    /// that was there, relative or absolute.
    #[test]
    fn directories_made_for_a_new_layout() {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        assert_eq!(made_in(&p.join("new")), [p.to_path_buf()]);
        assert_eq!(
            made_in(&p.join("a/b/new")),
            [p.join("a/b"), p.join("a"), p.to_path_buf()]
        );
        assert_eq!(made_in(Path::new("new")), [PathBuf::from(".")]);
        assert_eq!(
            made_in(Path::new("surely-not-here/new")),
            [PathBuf::from("surely-not-here"), PathBuf::from(".")]
        );
        assert_eq!(made_in(Path::new("/")), Vec::<PathBuf>::new());
        assert_eq!(on_disk(&p.join("x/../y/new")).0, p.join("y/new"));
        assert_eq!(on_disk(&p.join("x/y/../../z")).0, p.join("z"));
        assert_eq!(on_disk(Path::new("x/../../z")).0, Path::new("../z"));
        assert_eq!(on_disk(Path::new("surely-not-here/..")).0, Path::new("."));
        std::fs::create_dir(p.join("there")).unwrap();
        assert_eq!(on_disk(&p.join("there/../z")).0, p.join("there/../z"));
        assert_eq!(
            made_in(Path::new("../surely-not-here/new")),
            [PathBuf::from("../surely-not-here"), PathBuf::from("..")]
        );
    }

    /// A failed run takes back the layout it created, and only a layout that is still
    /// exactly as it created it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn only_an_unused_layout_of_this_run_is_removed() {
        let parent = tempfile::tempdir().unwrap();
        let fresh = parent.path().join("fresh");
        let store = LayoutStore::open(&fresh).unwrap();
        std::fs::create_dir(fresh.join("blobs/sha256")).unwrap();
        assert!(store.remove_if_unused());
        assert!(!fresh.exists());

        // There before this run and holding something: never touched.
        let existing = parent.path().join("existing");
        std::fs::create_dir(&existing).unwrap();
        std::fs::write(existing.join("notes.txt"), b"mine").unwrap();
        assert!(!LayoutStore::open(&existing).unwrap().remove_if_unused());
        assert!(existing.join("oci-layout").exists());

        // Made empty by the user for the output (`mkdir out`): left empty again, not
        // holding a layout's skeleton that no run put anything in.
        let made = parent.path().join("made");
        std::fs::create_dir(&made).unwrap();
        assert!(LayoutStore::open(&made).unwrap().remove_if_unused());
        assert!(made.is_dir(), "the user's directory stays");
        assert_eq!(std::fs::read_dir(&made).unwrap().count(), 0);

        // A blob, another file, an index that names an image: kept whole.
        type Change = fn(&Path);
        let changes: [Change; 3] = [
            |d| std::fs::write(d.join("blobs/sha256/ab"), b"x").unwrap(),
            |d| std::fs::write(d.join("report.jsonl"), b"").unwrap(),
            |d| std::fs::write(d.join("index.json"), br#"{"manifests":[1]}"#).unwrap(),
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let dir = parent.path().join(format!("used{i}"));
            let store = LayoutStore::open(&dir).unwrap();
            std::fs::create_dir(dir.join("blobs/sha256")).unwrap();
            change(&dir);
            assert!(!store.remove_if_unused(), "change {i}");
            assert!(dir.join("oci-layout").exists(), "change {i}");
        }
    }

    /// A failed run takes back, with its new layout, the directories it made on the way
    /// to it, and no directory that was there or that another run put something in.
    #[test]
    fn the_directories_made_on_the_way_go_with_an_unused_layout() {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        let store = LayoutStore::open(p.join("a/b/out")).unwrap();
        assert!(store.remove_if_unused());
        assert_eq!(
            std::fs::read_dir(p).unwrap().count(),
            0,
            "{p:?} not as it was"
        );

        let store = LayoutStore::open(p.join("a/b/out")).unwrap();
        std::fs::create_dir(p.join("a/other")).unwrap();
        assert!(store.remove_if_unused());
        assert!(!p.join("a/b").exists());
        assert!(p.join("a/other").is_dir(), "another run's");
    }

    /// A new layout whose directories could not all be made (here a name too long; a
    /// full disk or an inode quota in the field refuses a `mkdir` the same way) takes
    /// back those it made before the one refused: `-o a/<bad>/out` left the empty `a`.
    #[test]
    fn the_directories_made_before_one_refused_go_again() {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        let refused = p.join("a").join("x".repeat(256)).join("out");
        let e = LayoutStore::open(&refused).unwrap_err();
        assert!(e.to_string().contains("File name too long"), "{e}");
        let left: Vec<_> = std::fs::read_dir(p).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    /// A failed run into a new layout whose path goes up out of a directory it made
    /// (`-o x/../y/new`, no `x`) takes back neither the directory `..` leads to (`y`,
    /// the user's, empty) nor `x/..`: by name they were not there, on disk they were.
    #[test]
    fn a_directory_reached_through_dot_dot_is_not_taken_for_one_made() {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        std::fs::create_dir(p.join("y")).unwrap();
        let store = LayoutStore::open(p.join("x/../y/new")).unwrap();
        assert!(p.join("y/new/oci-layout").is_file());
        assert!(store.remove_if_unused());
        assert!(p.join("y").is_dir(), "the user's directory went");
        assert!(!p.join("y/new").exists());
    }

    /// A failed run into the user's empty directory named through a `..` after a name not
    /// there (`-o x/../y`, no `x`) leaves it, as `-o y` does: by name it was not there,
    /// and it was taken for one the run created.
    #[test]
    fn a_directory_named_through_dot_dot_is_not_taken_for_one_created() {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        std::fs::create_dir(p.join("y")).unwrap();
        let store = LayoutStore::open(p.join("x/../y")).unwrap();
        assert!(p.join("y/oci-layout").is_file());
        assert!(store.remove_if_unused());
        assert!(p.join("y").is_dir(), "the user's directory went");
        assert_eq!(std::fs::read_dir(p.join("y")).unwrap().count(), 0);
    }

    /// A failed run into a layout named through a `..` after names not there takes back
    /// the directories it made for them, each while empty, as those made on the way:
    /// `-o x/y/../../z/new` made `x/y` and `x`, judged as `-o z/new`, and left them. So
    /// does one whose layout's directory could not be made (here a name too long).
    #[test]
    fn the_directories_made_for_names_before_dot_dot_go_again() {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        let left = || {
            let mut left: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            left.sort();
            left
        };
        let store = LayoutStore::open(p.join("x/y/../../z/new")).unwrap();
        assert!(p.join("z/new/oci-layout").is_file());
        assert!(store.remove_if_unused());
        assert!(left().is_empty(), "left behind: {:?}", left());
        std::fs::create_dir(p.join("y")).unwrap();
        let store = LayoutStore::open(p.join("x/../y")).unwrap();
        assert!(store.remove_if_unused());
        assert_eq!(left(), ["y"], "the user's y stays, and x goes");
        let refused = p.join("x/../y").join("n".repeat(256)).join("out");
        LayoutStore::open(&refused).unwrap_err();
        assert_eq!(left(), ["y"]);
        assert_eq!(std::fs::read_dir(p.join("y")).unwrap().count(), 0);
    }

    /// A run that created the directory and failed without storing anything takes the
    /// layout away while another run into it still works: that run puts the whole layout
    /// back when it next stores a blob, not `blobs/` alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_layout_taken_away_under_a_run_is_made_whole_again() {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("shared");
        let failed = LayoutStore::open(&root).unwrap();
        let working = LayoutStore::open(&root).unwrap();
        assert!(failed.remove_if_unused());
        assert!(!root.exists());
        let d = Digest::of(Algorithm::Sha256, b"data");
        let mut t = working.temp_for(&d).unwrap();
        t.write(&Bytes::from_static(b"data")).await.unwrap();
        t.commit(&d).await.unwrap();
        assert_eq!(std::fs::read(root.join("oci-layout")).unwrap(), OCI_LAYOUT);
        assert_eq!(std::fs::read(root.join("index.json")).unwrap(), EMPTY_INDEX);
        assert_eq!(working.existing(&d, true).unwrap(), Some(4));
    }

    /// An empty file named like a blob that is not empty is not taken for it, verified or
    /// not; the empty blob's own file is.
    #[test]
    fn an_empty_file_stands_only_for_the_empty_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let data = Digest::of(Algorithm::Sha256, b"data");
        let empty = Digest::of(Algorithm::Sha256, b"");
        for d in [&data, &empty] {
            std::fs::create_dir_all(store.blob_path(d).parent().unwrap()).unwrap();
            std::fs::write(store.blob_path(d), b"").unwrap();
        }
        assert_eq!(store.existing(&data, false).unwrap(), None);
        assert_eq!(store.existing(&data, true).unwrap(), None);
        assert_eq!(store.existing(&empty, false).unwrap(), Some(0));
        assert_eq!(store.existing(&empty, true).unwrap(), Some(0));
    }

    #[test]
    fn a_missing_directory_is_not_called_memory_backed() {
        assert!(!memory_backed(Path::new("/nonexistent/dist/test")));
    }

    async fn commit_places_blob_in(dir: &Path) {
        let store = LayoutStore::open(dir).unwrap();
        assert_eq!(store.in_memory, memory_backed(&dir.join("blobs")));
        assert!(dir.join("oci-layout").exists());
        let d = Digest::of(Algorithm::Sha256, b"data");
        assert_eq!(store.existing(&d, false).unwrap(), None);
        let mut abandoned = store.temp(Algorithm::Sha256).unwrap();
        abandoned
            .write(&Bytes::from(vec![1u8; 3 << 20]))
            .await
            .unwrap();
        drop(abandoned);
        let mut t = store.temp(Algorithm::Sha256).unwrap();
        t.write(&Bytes::from_static(b"da")).await.unwrap();
        t.write(&Bytes::from_static(b"ta")).await.unwrap();
        let path = t.commit(&d).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        assert_eq!(store.existing(&d, true).unwrap(), Some(4));
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    /// An empty chunk, as a stream of the caller's may hand one over (an HTTP/2 body's
    /// last frame), writes nothing: the blob commits. Alone in what was gathered, it
    /// failed the commit with "failed to write whole buffer".
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_empty_chunk_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        for data in [&b""[..], b"data"] {
            let d = Digest::of(Algorithm::Sha256, data);
            let mut t = store.temp_for(&d).unwrap();
            t.write(&Bytes::copy_from_slice(data)).await.unwrap();
            t.write(&Bytes::new()).await.unwrap();
            let path = t.commit(&d).await.unwrap();
            assert_eq!(std::fs::read(path).unwrap(), data);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn large_content_is_written_in_order_through_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(5u32 << 20) + 12345).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(Algorithm::Sha256, &data);
        let mut t = store.temp(Algorithm::Sha256).unwrap();
        for piece in data.chunks(300_000) {
            t.write(&Bytes::copy_from_slice(piece)).await.unwrap();
        }
        let path = t.commit(&d).await.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn wrong_content_counts_as_absent_when_verifying() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let d = Digest::of(Algorithm::Sha256, b"data");
        std::fs::create_dir_all(store.blob_path(&d).parent().unwrap()).unwrap();
        std::fs::write(store.blob_path(&d), b"evil").unwrap();
        assert_eq!(store.existing(&d, false).unwrap(), Some(4));
        assert_eq!(store.existing(&d, true).unwrap(), None);
    }

    /// A download kept after its connection broke holds everything it received, the
    /// chunks still queued for the writer included: dropped, it kept what the writer had
    /// got to, as little as the first MiB of a fast download.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_kept_download_holds_every_chunk_received() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(Algorithm::Sha256, &data);
        for round in 0..20 {
            let mut t = store.temp_for(&d).unwrap();
            for chunk in data[..3 << 20].chunks(64 << 10) {
                t.write(&Bytes::copy_from_slice(chunk)).await.unwrap();
            }
            t.keep().await;
            let partial = store.partial_path(&d);
            let kept = std::fs::read(&partial).unwrap();
            assert_eq!(kept.len(), 3 << 20, "round {round}");
            assert!(kept[..] == data[..3 << 20], "round {round}");
            std::fs::remove_file(&partial).unwrap();
        }
    }

    /// Past its first MiB, a download dropped unfinished keeps what it wrote for the next
    /// run, which claims it with its hash; discarded or still gathering, nothing stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn unfinished_downloads_are_kept_and_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 241) as u8).collect();
        let d = Digest::of(Algorithm::Sha256, &data);
        let sha = dir.path().join("blobs/sha256");
        let listing = || {
            let mut names: Vec<String> = std::fs::read_dir(&sha)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };

        let mut small = store.temp_for(&d).unwrap();
        small.write(&Bytes::from_static(b"gathered")).await.unwrap();
        drop(small);
        assert_eq!(listing(), Vec::<String>::new(), "nothing on disk yet");

        let mut discarded = store.temp_for(&d).unwrap();
        discarded
            .write(&Bytes::copy_from_slice(&data[..2 << 20]))
            .await
            .unwrap();
        discarded.discard();
        assert_eq!(listing(), Vec::<String>::new());

        let mut kept = store.temp_for(&d).unwrap();
        kept.write(&Bytes::copy_from_slice(&data[..2 << 20]))
            .await
            .unwrap();
        drop(kept);
        let partial = format!("{PARTIAL_PREFIX}{}", d.encoded());
        assert_eq!(listing(), vec![partial.clone()]);
        // The writer thread finishes its write into the renamed file.
        let waited = std::time::Instant::now();
        while std::fs::metadata(sha.join(&partial)).unwrap().len() < 2 << 20
            && waited.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(std::fs::read(sha.join(&partial)).unwrap() == data[..2 << 20]);

        // The store that kept it knows it, and so does one opened now.
        assert!(store.has_partial(&d));
        let store = LayoutStore::open(dir.path()).unwrap();
        assert!(store.has_partial(&d));
        let (mut blob, prefix) = store.resume(&d).unwrap().expect("claimed");
        assert!(!store.has_partial(&d), "claimed once");
        assert!(store.resume(&d).unwrap().is_none());
        assert_eq!(prefix.len, 2 << 20);
        let mut hasher = prefix.hasher;
        hasher.update(&data[2 << 20..]);
        assert_eq!(hasher.finish(), d);
        assert!(
            !sha.join(&partial).exists(),
            "renamed to a temporary of its own"
        );
        blob.write(&Bytes::copy_from_slice(&data[2 << 20..]))
            .await
            .unwrap();
        let path = blob.commit(&d).await.unwrap();
        assert!(
            std::fs::read(path).unwrap() == data,
            "appended after the prefix"
        );
        assert_eq!(listing(), vec![d.encoded().to_string()]);
    }

    /// A commit stopped while the writer thread still writes what was queued (a signal,
    /// `--timeout`, at the end of a large blob) keeps the blob, received whole, as its
    /// partial download, as a drop before the commit does. The writer, done, deleted it:
    /// the next run fetched all of it again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_commit_stopped_while_the_writer_finishes_keeps_the_partial_download() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let sha = dir.path().join("blobs/sha256");
        // The last chunk, larger than the writer's queue, is queued alone: the writer has
        // all of it to write when the commit first waits for it.
        let data: Vec<u8> = (0..(34u32 << 20)).map(|i| (i % 233) as u8).collect();
        let d = Digest::of(Algorithm::Sha256, &data);
        let partial = sha.join(format!("{PARTIAL_PREFIX}{}", d.encoded()));
        let mut stopped_waiting = false;
        // The writer may, rarely, be done before the commit's first poll: tried again.
        for _ in 0..5 {
            let blob = written_for_its_writer(&store, &d, &data).await;
            let mut commit = Box::pin(blob.commit(&d));
            if futures::poll!(commit.as_mut()).is_ready() {
                std::fs::remove_file(store.blob_path(&d)).unwrap();
                continue;
            }
            drop(commit);
            if went_past_the_writer(&store, &d, &partial) {
                continue;
            }
            stopped_waiting = true;
            break;
        }
        assert!(stopped_waiting, "the writer was done before every commit");
        assert!(partial.exists(), "the blob's content was deleted");
        // The writer thread finishes its writes into the renamed file.
        let waited = std::time::Instant::now();
        while std::fs::metadata(&partial).unwrap().len() < data.len() as u64
            && waited.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(std::fs::read(&partial).unwrap() == data);
        let (_, prefix) = store.resume(&d).unwrap().expect("claimed");
        assert_eq!(prefix.len, data.len() as u64);
    }

    /// As above, but stopped once the writer is done and its answer, the file, waits for
    /// the commit to run again: dropped with the commit, before the blob could keep the
    /// file, the answer deleted it, and the blob was fetched again by the next run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_commit_stopped_once_its_writer_is_done_keeps_the_partial_download() {
        use std::future::Future;
        /// Whether the commit was woken: by the writer's answer, the one thing it waits for.
        struct Woken(AtomicBool);
        impl std::task::Wake for Woken {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 239) as u8).collect();
        let d = Digest::of(Algorithm::Sha256, &data);
        let partial = store.partial_path(&d);
        // The writer may, rarely, be done before the commit's first poll: tried again.
        for _ in 0..5 {
            let blob = written_for_its_writer(&store, &d, &data).await;
            let woken = Arc::new(Woken(AtomicBool::new(false)));
            let waker = std::task::Waker::from(woken.clone());
            let mut commit = Box::pin(blob.commit(&d));
            let mut cx = std::task::Context::from_waker(&waker);
            if commit.as_mut().poll(&mut cx).is_ready() {
                std::fs::remove_file(store.blob_path(&d)).unwrap();
                continue;
            }
            let waited = std::time::Instant::now();
            while !woken.0.load(Ordering::SeqCst) {
                assert!(waited.elapsed() < Duration::from_secs(30), "never woken");
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(commit);
            if went_past_the_writer(&store, &d, &partial) {
                continue;
            }
            assert!(partial.exists(), "the blob's content was deleted");
            assert!(std::fs::read(&partial).unwrap() == data);
            let (_, prefix) = store.resume(&d).unwrap().expect("claimed");
            assert_eq!(prefix.len, data.len() as u64);
            return;
        }
        panic!("the writer was done before every commit");
    }

    /// A blob of `data`, written as its first 2 MiB, then all the rest as one chunk
    /// (larger than the writer's queue, so queued alone): the writer thread has all of it
    /// to write when a commit first waits, for the two tests above to stop that commit
    /// around the writer's answer.
    async fn written_for_its_writer(store: &LayoutStore, d: &Digest, data: &[u8]) -> TempBlob {
        let mut blob = store.temp_for(d).unwrap();
        blob.write(&Bytes::copy_from_slice(&data[..2 << 20]))
            .await
            .unwrap();
        blob.write(&Bytes::copy_from_slice(&data[2 << 20..]))
            .await
            .unwrap();
        blob
    }

    /// Whether a commit dropped by the two tests above had got past the writer's answer
    /// before its first poll returned: its write, fsync and rename on the blocking pool
    /// then go on without it and store the blob (removed here, for the test to try again),
    /// which is no stop during the wait these tests are about. Otherwise the partial
    /// download is there at once, or never (the defect: the file deleted).
    fn went_past_the_writer(store: &LayoutStore, d: &Digest, partial: &Path) -> bool {
        let waited = std::time::Instant::now();
        while !partial.exists() && waited.elapsed() < Duration::from_secs(20) {
            if store.blob_path(d).exists() {
                std::fs::remove_file(store.blob_path(d)).unwrap();
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// After `kill -9`, a dead run's temporary file of a known blob becomes its partial
    /// download; an empty one (nothing was written yet) goes.
    #[test]
    fn a_killed_runs_blob_file_becomes_a_partial_download() {
        let dir = tempfile::tempdir().unwrap();
        let sha = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        let host = super::super::owner::me().split_once('@').unwrap().1;
        let written = Digest::of(Algorithm::Sha256, b"written");
        let empty = Digest::of(Algorithm::Sha256, b"empty");
        let dead =
            |d: &Digest| sha.join(format!(".dist-tmp-2147483647@{host}~{}~Ab1", d.encoded()));
        std::fs::write(dead(&written), b"writ").unwrap();
        std::fs::write(dead(&empty), b"").unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        assert!(!dead(&written).exists() && !dead(&empty).exists());
        assert!(store.has_partial(&written));
        assert!(!store.has_partial(&empty));
        let partial = sha.join(format!("{PARTIAL_PREFIX}{}", written.encoded()));
        assert_eq!(std::fs::read(partial).unwrap(), b"writ");
        assert_eq!(std::fs::read_dir(&sha).unwrap().count(), 1);
    }

    /// Takes a write lock on the whole of `file` as an NFS server does for a client's
    /// `flock`: a record lock, of this open file description.
    fn record_lock(file: &std::fs::File) {
        use std::os::fd::AsRawFd;
        // SAFETY: plain integers.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: an open descriptor, and the struct F_OFD_SETLK reads.
        let taken = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
        assert_eq!(taken, 0, "{}", std::io::Error::last_os_error());
    }

    /// Another host's killed run (a CI job's, its cache restored on the next job's
    /// runner) left its download on a local disk: nobody holds it, so it becomes a partial
    /// download as this host's would. It stayed, neither carried on nor removed, for a day,
    /// and for good in a cache restored with fresh mtimes. A file of another host that a
    /// process holds (a container on this kernel under a host name of its own) stays, and
    /// so does a partial download such a run of an earlier version claims, renamed but not
    /// locked yet.
    #[test]
    fn another_hosts_killed_run_on_a_local_disk_leaves_a_partial_download() {
        let dir = tempfile::tempdir().unwrap();
        let sha = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        let elsewhere = |d: &Digest| {
            sha.join(format!(
                ".dist-tmp-4242.77@runner-elsewhere~{}~Ab1",
                d.encoded()
            ))
        };
        let killed = Digest::of(Algorithm::Sha256, b"killed");
        let live = Digest::of(Algorithm::Sha256, b"live");
        std::fs::write(elsewhere(&killed), b"kill").unwrap();
        std::fs::write(elsewhere(&live), b"li").unwrap();
        let exported = Digest::of(Algorithm::Sha256, b"exported");
        std::fs::write(elsewhere(&exported), b"expo").unwrap();
        // Restored (its ctime, which a restore cannot set back) past the moment a live run
        // takes its file's lock.
        std::thread::sleep(sweep::FOREIGN_UNLOCKED_GRACE + Duration::from_millis(100));
        let just_made = Digest::of(Algorithm::Sha256, b"just made");
        std::fs::write(elsewhere(&just_made), b"just").unwrap();
        // A partial download written an hour ago that a run of an earlier version, of
        // another host name, claims: renamed to its temporary name, it locks it next.
        let claimed = Digest::of(Algorithm::Sha256, b"claimed");
        let partial = sha.join(format!("{PARTIAL_PREFIX}{}", claimed.encoded()));
        std::fs::write(&partial, b"clai").unwrap();
        let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        let file = std::fs::File::options().append(true).open(&partial);
        file.unwrap().set_modified(an_hour_ago).unwrap();
        std::fs::rename(&partial, elsewhere(&claimed)).unwrap();
        let writer = std::fs::File::options()
            .append(true)
            .open(elsewhere(&live))
            .unwrap();
        assert!(hold(&writer));
        // An NFS client's live run, in a directory this machine exports: its `flock` is a
        // record lock here, which the server holds for it.
        let server = std::fs::File::options()
            .read(true)
            .write(true)
            .open(elsewhere(&exported))
            .unwrap();
        let seen = || locks::record_locked(&std::fs::File::open(elsewhere(&exported)).unwrap());
        assert_eq!(seen(), Some(false));
        record_lock(&server);
        assert_eq!(seen(), Some(true));
        let store = LayoutStore::open(dir.path()).unwrap();
        assert!(elsewhere(&live).exists(), "a held file was taken");
        assert!(!store.has_partial(&live));
        assert!(
            elsewhere(&just_made).exists(),
            "a file not locked yet was taken"
        );
        assert!(
            elsewhere(&claimed).exists(),
            "a claim not locked yet was taken back"
        );
        assert!(
            elsewhere(&exported).exists(),
            "a file under a record lock was taken"
        );
        assert!(!store.has_partial(&exported));
        assert!(!store.has_partial(&claimed));
        if sweep::locks_are_this_kernels(&sha) {
            assert!(!elsewhere(&killed).exists(), "a killed run's file stayed");
            assert!(store.has_partial(&killed));
            let partial = sha.join(format!("{PARTIAL_PREFIX}{}", killed.encoded()));
            assert_eq!(std::fs::read(partial).unwrap(), b"kill");
        } else {
            // A network filesystem's locks may not be this kernel's: judged by age.
            assert!(elsewhere(&killed).exists());
        }
    }

    /// A run in another PID namespace under the same host name (containers of one pod
    /// sharing a volume) looks dead by its files' names; its lock says it lives. Its
    /// download is neither taken for a dead run's nor removed, and a partial download a
    /// process still writes to is not claimed until it lets go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn files_a_live_process_holds_are_left_to_it_whatever_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let sha = dir.path().join("blobs/sha256");
        let store = LayoutStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 239) as u8).collect();
        let d = Digest::of(Algorithm::Sha256, &data);
        let mut live = store.temp_for(&d).unwrap();
        live.write(&Bytes::copy_from_slice(&data[..2 << 20]))
            .await
            .unwrap();
        // Its name as another namespace sees it: a PID that runs nothing there.
        let host = super::super::owner::me().split_once('@').unwrap().1;
        let seen = sha.join(format!(".dist-tmp-2147483647.5@{host}~{}~Ab1", d.encoded()));
        std::fs::rename(&live.path, &seen).unwrap();
        let other = LayoutStore::open(dir.path()).unwrap();
        assert!(seen.exists(), "left to its live owner");
        assert!(!other.has_partial(&d));
        std::fs::rename(&seen, &live.path).unwrap();
        live.write(&Bytes::copy_from_slice(&data[2 << 20..]))
            .await
            .unwrap();
        let path = live.commit(&d).await.unwrap();
        assert!(std::fs::read(path).unwrap() == data);

        let kept = Digest::of(Algorithm::Sha256, b"kept");
        let partial = sha.join(format!("{PARTIAL_PREFIX}{}", kept.encoded()));
        std::fs::write(&partial, b"ke").unwrap();
        let writer = std::fs::File::options()
            .append(true)
            .open(&partial)
            .unwrap();
        assert!(hold(&writer));
        let store = LayoutStore::open(dir.path()).unwrap();
        assert!(store.has_partial(&kept));
        assert!(store.resume(&kept).unwrap().is_none(), "still written to");
        assert_eq!(std::fs::read(&partial).unwrap(), b"ke", "left where it was");
        drop(writer);
        let store = LayoutStore::open(dir.path()).unwrap();
        let (_, prefix) = store.resume(&kept).unwrap().expect("claimed once let go");
        assert_eq!(prefix.len, 2);
    }

    /// Whether another open file of `path` finds it locked, as another run's probe does.
    fn probed_held(path: &Path) -> bool {
        let probe = std::fs::File::open(path).unwrap();
        !try_flock(&probe, libc::LOCK_SH).unwrap()
    }

    /// Sets the hook run at each [`locks::Step`] on this thread, until the guard drops.
    fn stop_between(hook: impl FnMut(locks::Step, &Path) + 'static) -> impl Drop {
        struct Unset;
        impl Drop for Unset {
            fn drop(&mut self) {
                locks::BETWEEN.with(|h| *h.borrow_mut() = None);
            }
        }
        locks::BETWEEN.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
        Unset
    }

    /// Another run's probe (a shared lock, held a moment) that lands between the making
    /// of a temporary file and its lock: the file stayed unlocked for its whole life, for
    /// a sweep of a run in another PID namespace (or another host's) to take away.
    #[test]
    fn a_temporary_file_probed_as_it_is_made_is_still_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _hook = stop_between(|step, path| {
            if step == locks::Step::Made {
                let probe = std::fs::File::open(path).unwrap();
                assert!(try_flock(&probe, libc::LOCK_SH).unwrap());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    drop(probe);
                });
            }
        });
        let file = new_layout_file(dir.path()).unwrap();
        assert!(probed_held(file.path()), "a live run's file left unlocked");
    }

    /// A new temporary file's lock held a while by another process (a sweep's probe that
    /// lingers): the wait for it leaves the runtime's thread to other work, which the
    /// CLI's one thread runs every transfer, timer and Ctrl-C on. Blocked, nothing else
    /// ran, and after 2 s the file was given up for another.
    #[tokio::test(flavor = "current_thread")]
    async fn waiting_for_a_new_temporary_file_s_lock_lets_other_tasks_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let (go, gone) = std::sync::mpsc::channel::<()>();
        let mut gone = Some(gone);
        type Holder = (PathBuf, std::thread::JoinHandle<bool>);
        let held = std::rc::Rc::new(std::cell::RefCell::new(None::<Holder>));
        let holding = held.clone();
        let _hook = stop_between(move |step, path| {
            if step != locks::Step::Made {
                return;
            }
            let Some(gone) = gone.take() else { return };
            let probe = std::fs::File::open(path).unwrap();
            assert!(try_flock(&probe, libc::LOCK_SH).unwrap());
            // Let go once the other task ran; a bound only so that a run that never
            // yields fails rather than hangs.
            let holder = std::thread::spawn(move || {
                let told = gone.recv_timeout(Duration::from_secs(30)).is_ok();
                drop(probe);
                told
            });
            *holding.borrow_mut() = Some((path.to_owned(), holder));
        });
        let other = tokio::spawn(async move { go.send(()).unwrap() });
        let temp = store.temp_async(Algorithm::Sha256, None).await.unwrap();
        let (path, holder) = held.borrow_mut().take().expect("no file was made");
        assert_eq!(temp.path, path, "the file waited for was given up");
        assert!(holder.join().unwrap(), "the lock was let go unasked");
        other.await.unwrap();
        assert!(probed_held(&temp.path));
    }

    /// The same wait on a paused clock (a library's test of its own code with
    /// `start_paused`), the lock held by another process for a moment of real time: the
    /// wait counted on tokio's clock, which runs ahead to each 10 ms pause while the
    /// runtime idles, and gave up on the file at once (2 s of that clock), and on the next
    /// four as soon, failing the fetch, while the holder had not yet let go.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_new_temporary_file_s_lock_is_waited_for_in_real_time_on_a_paused_clock() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let held = std::rc::Rc::new(std::cell::RefCell::new(None::<PathBuf>));
        let holding = held.clone();
        let _hook = stop_between(move |step, path| {
            if step != locks::Step::Made || holding.borrow().is_some() {
                return;
            }
            let probe = std::fs::File::open(path).unwrap();
            assert!(try_flock(&probe, libc::LOCK_SH).unwrap());
            // Well within the 2 s a try waits, and far longer than the runtime takes to
            // run 200 idle pauses of a paused clock.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                drop(probe);
            });
            *holding.borrow_mut() = Some(path.to_owned());
        });
        let temp = store.temp_async(Algorithm::Sha256, None).await.unwrap();
        let path = held.borrow_mut().take().expect("no file was made");
        assert_eq!(temp.path, path, "the file waited for was given up");
        assert!(probed_held(&temp.path));
    }

    /// A sweep that takes a temporary file away between its making and its lock (it
    /// judged it by a name that misleads it): the run makes another rather than write
    /// into one no name reaches, whose commit would fail.
    #[test]
    fn a_temporary_file_taken_before_its_lock_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let host = super::super::owner::me().split_once('@').unwrap().1;
        // A PID that runs nothing here: its owner, in another namespace, looks dead.
        let prefix = format!(".dist-tmp-2147483647.5@{host}~");
        let swept = std::rc::Rc::new(std::cell::Cell::new(0));
        let counted = swept.clone();
        let swept_dir = dir.path().to_owned();
        let _hook = stop_between(move |step, path| {
            if step == locks::Step::Made && counted.get() == 0 {
                sweep::remove_stale_in(&swept_dir);
                assert!(!path.exists(), "the sweep left it");
                counted.set(1);
            }
        });
        let file = new_named_file(dir.path(), &prefix).unwrap();
        assert_eq!(swept.get(), 1);
        assert!(names_file(file.path(), file.as_file()), "its name is gone");
        assert!(probed_held(file.path()));
    }

    /// Every new temporary file taken away before its lock (a sweep wrong about each): the
    /// run makes a few, then fails saying why and naming the directory, and leaves none.
    #[test]
    fn temporary_files_each_taken_before_their_lock_fail_naming_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let made = std::rc::Rc::new(std::cell::Cell::new(0));
        let counted = made.clone();
        let _hook = stop_between(move |step, path| {
            if step == locks::Step::Made {
                std::fs::remove_file(path).unwrap();
                counted.set(counted.get() + 1);
            }
        });
        let Err(e) = store.temp(Algorithm::Sha256) else {
            panic!("a file never locked was made");
        };
        assert_eq!(made.get(), 5);
        let sha = dir.path().join("blobs/sha256");
        let shown = e.to_string();
        assert!(shown.contains(&sha.display().to_string()), "{shown}");
        assert!(shown.contains("before this run could lock it"), "{shown}");
        assert_eq!(std::fs::read_dir(&sha).unwrap().count(), 0);
    }

    /// A claim of a partial download is under its lock as soon as it has the claiming
    /// run's name: renamed first and locked next, a stall in between let a sweep of a run
    /// in another PID namespace, to which that name looks dead, take the claim back.
    #[test]
    fn a_claimed_partial_download_is_locked_once_it_has_the_claim_s_name() {
        let dir = tempfile::tempdir().unwrap();
        let sha = dir.path().join("blobs/sha256");
        let d = Digest::of(Algorithm::Sha256, b"claimed");
        std::fs::create_dir_all(&sha).unwrap();
        std::fs::write(sha.join(format!("{PARTIAL_PREFIX}{}", d.encoded())), b"cla").unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let seen = std::rc::Rc::new(std::cell::Cell::new(None));
        let judged = seen.clone();
        let _hook = stop_between(move |step, path| {
            if step == locks::Step::Claimed {
                judged.set(Some(probed_held(path)));
            }
        });
        let (blob, prefix) = store.resume(&d).unwrap().expect("claimed");
        assert_eq!(prefix.len, 3);
        assert_eq!(seen.get(), Some(true), "a claim not under its lock yet");
        assert!(probed_held(&blob.path));
    }

    /// A claim that finds it renamed another partial download than the one it locked (a
    /// longer one, kept over it meanwhile) gives that one back; and where a longer one
    /// still was kept in its place since, that one stays: put back by a rename, the
    /// shorter replaced it.
    #[test]
    fn a_partial_download_given_back_by_a_claim_keeps_a_longer_one_kept_since() {
        let dir = tempfile::tempdir().unwrap();
        let sha = dir.path().join("blobs/sha256");
        let d = Digest::of(Algorithm::Sha256, b"given back");
        let partial = sha.join(format!("{PARTIAL_PREFIX}{}", d.encoded()));
        std::fs::create_dir_all(&sha).unwrap();
        std::fs::write(&partial, b"g").unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let kept = partial.clone();
        let _hook = stop_between(move |step, path| {
            if step == locks::Step::Claimed {
                // The file renamed is not the one locked: another run kept "gi" over it
                // before the rename, and then "giv" after.
                let other = path.with_extension("other");
                std::fs::write(&other, b"gi").unwrap();
                std::fs::rename(&other, path).unwrap();
                std::fs::write(&other, b"giv").unwrap();
                std::fs::rename(&other, &kept).unwrap();
            }
        });
        assert!(store.resume(&d).unwrap().is_none());
        assert_eq!(
            std::fs::read(&partial).unwrap(),
            b"giv",
            "the longer one lost"
        );
        let left: Vec<_> = std::fs::read_dir(&sha)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    /// A sweep takes a file it judged abandoned under the file's lock: probed and let go,
    /// the run that made it (its name misleading the sweep) could lock it in between,
    /// find its name still its own, and go on writing into a file then taken away.
    #[test]
    fn the_sweep_takes_a_file_under_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let sha = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        let host = super::super::owner::me().split_once('@').unwrap().1;
        let d = Digest::of(Algorithm::Sha256, b"taken");
        let dead = sha.join(format!(".dist-tmp-2147483647.5@{host}~{}~Ab1", d.encoded()));
        std::fs::write(&dead, b"tak").unwrap();
        let lockable = std::rc::Rc::new(std::cell::Cell::new(None));
        let tried = lockable.clone();
        let _hook = stop_between(move |step, path| {
            if step == locks::Step::Taking {
                let owner = std::fs::File::options().append(true).open(path).unwrap();
                tried.set(Some(hold(&owner)));
            }
        });
        let store = LayoutStore::open(dir.path()).unwrap();
        assert_eq!(
            lockable.get(),
            Some(false),
            "taken while its run could lock it"
        );
        assert!(store.has_partial(&d));
    }

    /// Two downloads of one blob at once (pulls of images sharing a layer, into one
    /// layout) both stopped: the longer partial download stays, whichever stopped last,
    /// and so it does when a killed run's file is turned into one beside a longer one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_longer_of_two_partial_downloads_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 233) as u8).collect();
        let d = Digest::of(Algorithm::Sha256, &data);
        let partial = store.partial_path(&d);
        for longer_first in [true, false] {
            let mut kept = Vec::new();
            for len in [3 << 20, 2 << 20] {
                let mut t = store.temp_for(&d).unwrap();
                t.write(&Bytes::copy_from_slice(&data[..len]))
                    .await
                    .unwrap();
                kept.push(t);
            }
            if !longer_first {
                kept.reverse();
            }
            for t in kept {
                t.keep().await;
            }
            let held = std::fs::read(&partial).unwrap();
            assert_eq!(held.len(), 3 << 20, "longer first: {longer_first}");
            assert!(held[..] == data[..3 << 20]);
            let sha = dir.path().join("blobs/sha256");
            assert_eq!(std::fs::read_dir(&sha).unwrap().count(), 1);
        }

        let host = super::super::owner::me().split_once('@').unwrap().1;
        let dead =
            partial.with_file_name(format!(".dist-tmp-2147483647@{host}~{}~Ab1", d.encoded()));
        std::fs::write(&dead, &data[..5]).unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        assert!(!dead.exists());
        assert!(store.has_partial(&d));
        assert_eq!(std::fs::read(&partial).unwrap().len(), 3 << 20);
    }

    /// A size given shorter than the partial download does not remove it: only the size
    /// the registry's answer holds the blob to does ([`LayoutStore::remove_partial_past`]).
    #[test]
    fn a_partial_longer_than_the_size_given_waits_for_the_registry_s_word() {
        let dir = tempfile::tempdir().unwrap();
        let sha = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        let d = Digest::of(Algorithm::Sha256, b"0123456789");
        let path = sha.join(format!("{PARTIAL_PREFIX}{}", d.encoded()));
        std::fs::write(&path, b"01234").unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        assert!(store.resume_within(&d, Some(3)).unwrap().is_none());
        assert_eq!(std::fs::read(&path).unwrap(), b"01234", "left in place");
        assert!(store.has_partial(&d));
        store.remove_partial_past(&d, 10);
        assert!(path.exists(), "a prefix of a blob of 10 bytes");
        store.remove_partial_past(&d, 4);
        assert!(!path.exists(), "longer than a blob of 4 bytes");
        assert!(!store.has_partial(&d));
    }

    #[test]
    fn partial_downloads_untouched_for_a_day_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sha = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        let old = Digest::of(Algorithm::Sha256, b"old");
        let new = Digest::of(Algorithm::Sha256, b"new");
        let old_path = sha.join(format!("{PARTIAL_PREFIX}{}", old.encoded()));
        std::fs::write(&old_path, b"ol").unwrap();
        std::fs::write(
            sha.join(format!("{PARTIAL_PREFIX}{}", new.encoded())),
            b"ne",
        )
        .unwrap();
        let day_ago = std::time::SystemTime::now() - PARTIAL_AGE - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&old_path)
            .unwrap()
            .set_modified(day_ago)
            .unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        assert!(!old_path.exists());
        assert!(!store.has_partial(&old));
        assert!(store.has_partial(&new));
    }

    /// A blob's fetch lock: one holder at a time, this process's other tasks included;
    /// let go, its file goes. A fetch that opened the file just before its holder let go
    /// gets the lock on a file no longer named, and takes a new one instead.
    #[test]
    fn an_ingest_lock_has_one_holder_and_goes_when_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let d = Digest::of(Algorithm::Sha256, b"data");
        let path = dir
            .path()
            .join("blobs/sha256")
            .join(format!("{LOCK_PREFIX}{}", d.encoded()));
        let first = store.try_ingest(&d).expect("free");
        assert!(first.held.is_some(), "a real lock on this filesystem");
        assert!(store.try_ingest(&d).is_none(), "held by the first");
        let late = open_lock(&path, false).unwrap();
        drop(first);
        assert!(!path.exists(), "removed by its holder");
        assert!(matches!(try_flock(&late, libc::LOCK_EX), Ok(true)));
        assert!(!names_file(&path, &late), "a lock on an unlinked file");
        let mut second = store.try_ingest(&d).expect("free again");
        assert!(names_file(&path, &second.held.as_ref().unwrap().0));
        // Closed without the removal, as a killed run leaves it: taken by the next
        // fetch, swept at open.
        drop(second.held.take());
        drop(late);
        let other = Digest::of(Algorithm::Sha256, b"other");
        drop(store.try_ingest(&other).expect("free"));
        assert!(path.exists());
        LayoutStore::open(dir.path()).unwrap();
        assert!(!path.exists(), "swept");
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sha = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        // pid 0x7fffffff cannot exist; our own pid does.
        std::fs::write(sha.join(".dist-tmp-2147483647-abc"), b"x").unwrap();
        let mine = sha.join(format!(".dist-tmp-{}-abc", std::process::id()));
        std::fs::write(&mine, b"x").unwrap();
        std::fs::write(dir.path().join(".dist-tmp-2147483647-index"), b"x").unwrap();
        LayoutStore::open(dir.path()).unwrap();
        assert!(!sha.join(".dist-tmp-2147483647-abc").exists());
        assert!(!dir.path().join(".dist-tmp-2147483647-index").exists());
        assert!(mine.exists());
    }

    /// A store that named one image, then waits for another run's lock to name a second
    /// (a library pulling several images into one layout), records the wait: the first
    /// entry's `Durable` stood, and a stop said of the second image that it was named.
    #[test]
    fn a_second_entry_is_recorded_afresh() {
        use super::super::index::{IndexEntry, IndexLock};
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path()).unwrap();
        let entry = |tag: &str| {
            let mut d = Descriptor::new(
                crate::media::OCI_MANIFEST,
                Digest::of(Algorithm::Sha256, tag.as_bytes()),
                tag.len() as u64,
            );
            d.annotations
                .insert(crate::image::REF_NAME.into(), tag.into());
            d
        };
        let first = store.try_add_to_index_unless(&entry("v1"), None, &|| true);
        assert!(first.unwrap().is_some());
        assert_eq!(store.index_entry(), IndexEntry::Durable);
        let lock = IndexLock::acquire(dir.path()).unwrap();
        let second = store.try_add_to_index_unless(&entry("v2"), None, &|| true);
        assert!(second.unwrap().is_none());
        assert_eq!(store.index_entry(), IndexEntry::Locked);
        drop(lock);
    }
}
