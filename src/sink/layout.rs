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

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::Prefix;
use crate::image::Descriptor;

use super::stream::StreamWriter;

pub(super) const TMP_PREFIX: &str = ".dist-tmp-";
/// A partial download kept for the next run: `.dist-partial-<encoded>`.
const PARTIAL_PREFIX: &str = ".dist-partial-";
/// The lock of a blob being fetched into the store: `.dist-lock-<encoded>`.
const LOCK_PREFIX: &str = ".dist-lock-";
/// A temporary file of another machine sharing the directory is left alone this long.
const FOREIGN_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);
/// A partial download nobody carried on within this long is removed: a layout is often
/// copied or served, and should not hold forgotten gigabytes.
const PARTIAL_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long claiming a partial download waits for a process still writing it to let go:
/// the run that kept it, its writer thread finishing the last chunk, takes milliseconds.
/// A store kept open may fetch a blob again as soon as its download failed: without the
/// wait, it found the partial download busy and fetched the blob whole.
const CLAIM_WAIT: Duration = Duration::from_secs(2);
/// Content up to this size is written in one go at commit; beyond, it streams to a writer.
const WRITE_BUFFER: usize = 1 << 20;

/// An OCI image layout directory used as a blob store.
#[derive(Debug, Clone)]
pub struct LayoutStore {
    root: PathBuf,
    /// The blobs live in memory (tmpfs): file operations never wait for a device.
    in_memory: bool,
    /// Partial downloads found when the store opened and not claimed yet. Looking here
    /// instead of on disk costs a blob that has none (nearly all) no system call.
    partials: Arc<Mutex<HashSet<PathBuf>>>,
    /// Directories blobs were renamed into since the last [`LayoutStore::sync`].
    renamed: Arc<Mutex<HashSet<PathBuf>>>,
    /// This run created the directory: a run that fails before storing anything removes
    /// it again ([`LayoutStore::remove_if_unused`]).
    created: bool,
    /// The directories whose entries this run made when it created the layout: the one
    /// the layout is in and, if `create_dir_all` made that too, each one up to the first
    /// that was there. Empty when the layout was there already.
    made_in: Vec<PathBuf>,
}

/// What [`LayoutStore::open`] writes into a new layout.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const EMPTY_INDEX: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
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
        super::layout_check::check(&root)?;
        let created = std::fs::symlink_metadata(&root).is_err();
        let made_in = if created { made_in(&root) } else { Vec::new() };
        let blobs = root.join("blobs");
        if let Err(e) = make_skeleton(&root, &blobs) {
            // A full disk, most often: what was begun of a new layout goes again.
            if created {
                let _ = remove_skeleton(&root);
            }
            return Err(e);
        }
        let in_memory = memory_backed(&blobs);
        let store = LayoutStore {
            root,
            in_memory,
            partials: Arc::default(),
            renamed: Arc::default(),
            created,
            made_in,
        };
        store.sweep();
        Ok(store)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// For a run that failed: removes the layout again if this run created its directory
    /// and nothing is in it but what [`LayoutStore::open`] wrote (no blob, no partial
    /// download, no other file, an index still empty), so that a mistyped reference or an
    /// unreachable registry leaves no empty layout behind. Anything else stays as it is.
    /// Whether the directory was removed.
    pub fn remove_if_unused(&self) -> bool {
        if !self.created {
            return false;
        }
        if remove_skeleton(&self.root).is_ok() {
            return true;
        }
        // Another run into the same new directory (a shard beside this one) put something
        // in it while it was being taken apart, often because it found it going and
        // rebuilt it ([`Self::temp`]): the layout is that run's now, and needs back the
        // files this removal may already have taken.
        if std::fs::symlink_metadata(&self.root).is_ok() {
            let _ = make_skeleton(&self.root, &self.root.join("blobs"));
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
    /// Blocks: one system call, and with `verify` the reading of the whole blob (call it
    /// from `spawn_blocking` in async code then).
    pub fn existing(&self, digest: &Digest, verify: bool) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
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
        Ok(Some(meta.len()))
    }

    fn partial_path(&self, digest: &Digest) -> PathBuf {
        let dir = self.root.join("blobs").join(digest.algorithm().as_str());
        partial_in(&dir, digest.encoded())
    }

    /// Claims the partial download of `digest` an earlier run kept, if there is one: a
    /// temporary file holding its first bytes, set to be kept again should this download
    /// stop too, and their hash. Blocks (it reads the whole partial file back).
    pub fn resume(&self, digest: &Digest) -> Result<Option<(TempBlob, Prefix)>> {
        let Some(partial) = self.known_partial(digest, true) else {
            return Ok(None);
        };
        let dir = partial.parent().expect("a partial file is in a directory");
        let claimed = tempfile::Builder::new()
            .prefix(&blob_temp_prefix(digest))
            .make_in(dir, |path| {
                std::fs::rename(&partial, path)?;
                open_regular(path)
                    .and_then(|file| match hold_within(&file, CLAIM_WAIT) {
                        true => Ok(file),
                        false => Err(std::io::ErrorKind::ResourceBusy.into()),
                    })
                    .inspect_err(|e| {
                        // Another user's, which this run may move but not write to, or a
                        // file a live process still writes: it stays theirs.
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ResourceBusy
                        ) && std::fs::rename(path, &partial).is_ok()
                        {
                            return;
                        }
                        let _ = std::fs::remove_file(path);
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
            len,
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
    pub fn temp(&self, algorithm: Algorithm) -> Result<TempBlob> {
        self.new_temp(algorithm, None)
    }

    /// A new temporary file for the blob `digest`. Dropped unfinished (the run interrupted,
    /// or the network failing past its retries), what reached it stays as a partial
    /// download for the next run, and so it does after `kill -9`: its name says which blob
    /// it holds, and the next run to open the store turns it into that blob's partial
    /// download. Only content past the first MiB is ever on disk before commit.
    pub fn temp_for(&self, digest: &Digest) -> Result<TempBlob> {
        self.new_temp(digest.algorithm(), Some(digest))
    }

    /// Takes the lock under which `digest` is fetched into the store, unless another
    /// fetch holds it: another process's, or another task's of this one (an `flock` is
    /// held by an open file, not by a process), which is then fetching the blob. Hold the
    /// lock until the blob is stored or its fetch has failed; the lock is let go when
    /// dropped, and by the kernel when its process dies. Where no lock can be had (a
    /// filesystem without `flock`, a directory that is not writable), the lock holds
    /// nothing and the fetch goes ahead: the lock only saves a second download, the
    /// store's renames keep every blob whole either way. Blocks (a few system calls).
    pub fn try_ingest(&self, digest: &Digest) -> Option<IngestLock> {
        let dir = self.root.join("blobs").join(digest.algorithm().as_str());
        let path = dir.join(format!("{LOCK_PREFIX}{}", digest.encoded()));
        let unlocked = || Some(IngestLock { held: None });
        // Each turn either takes the lock, finds it held, or finds that the file it
        // locked was unlinked by its holder meanwhile, and tries the new one.
        for _ in 0..8 {
            let file = match open_lock(&path, true) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // The layout taken away by a failed run beside this one: made again,
                    // as for a temporary file ([`Self::temp`]).
                    if make_skeleton(&self.root, &dir).is_err() {
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
                    return Some(IngestLock {
                        held: Some((file, path)),
                    })
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
        let dir = self.root.join("blobs").join(algorithm.as_str());
        let prefix = match digest {
            Some(d) => blob_temp_prefix(d),
            None => temp_prefix(),
        };
        let create = || new_named_file(&dir, &prefix);
        // The directory nearly always exists: create it only when the file cannot be made.
        // It may also be gone with the whole layout: a run that created the directory and
        // failed without storing anything removes it ([`Self::remove_if_unused`]), while
        // another run into it (a shard beside it) is still at work. That run needs the
        // layout's files back too, or it stores blobs in a directory no tool takes for a
        // layout. The removal may still be under way when the layout is made again, and
        // take the new `blobs/<algorithm>` with it: another try or two finds it done (it
        // runs once, and puts the layout back itself when it finds it taken over).
        let mut tries = 0;
        let file = loop {
            match create() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 5 => {
                    tries += 1;
                    make_skeleton(&self.root, &dir)?;
                }
                other => break other,
            }
        }
        .map_err(|e| io_err("creating a temporary file in", &dir, e))?;
        Ok(TempBlob {
            path: file.path().to_owned(),
            writing: Writing::Gathering {
                file,
                batch: Vec::new(),
                batched: 0,
            },
            store: self.clone(),
            park: digest.cloned(),
            kept: 0,
            len: 0,
        })
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

    /// Makes the blobs stored since the last call durable under their names. A blob's
    /// content is fsync'd before its rename into place, but the rename is only as durable
    /// as its directory: a power loss soon after a run that said it stored a blob could
    /// take the name back. The directories (each `blobs/<algorithm>` a blob went into,
    /// `blobs/`, the layout's own, and the ones above it whose entries this run made when
    /// it created the layout) are fsync'd here, not per blob: once per blob cost 1000 small
    /// blobs a fifth to a third more time on ext4, once per batch nothing measurable, nor
    /// once a second. A service whose batch never ends calls it every second or so, as
    /// `dist fetch LOC - -o DIR` does, or the names it stored may never be durable. Nothing
    /// to do when no blob was stored, or in memory (tmpfs). Blocks.
    pub fn sync(&self) -> Result<()> {
        let dirs: Vec<PathBuf> = {
            let mut renamed = self.renamed.lock().unwrap_or_else(|p| p.into_inner());
            renamed.drain().collect()
        };
        if dirs.is_empty() {
            return Ok(());
        }
        let blobs = self.root.join("blobs");
        // A layout this run created holds its blobs only once its own name, and those of
        // the directories made for it, are durable.
        // Every directory is tried whatever failed before it: after an EIO in one, the
        // others' names can still be made durable, and this round's list is not kept for
        // another (a second fsync of a failed directory may report success for what was
        // lost, as PostgreSQL learned).
        let mut first = None;
        let mut more = 0;
        for dir in dirs.iter().chain([&blobs, &self.root]).chain(&self.made_in) {
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

/// Removes the stale temporary files and partial downloads in `dir`; returns the paths of
/// the partial downloads kept.
fn remove_stale_in(dir: &Path) -> Vec<PathBuf> {
    let mut kept = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return kept;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        // We make files only: a directory under one of our names was put there by someone
        // else, and is neither carried on (which failed, and renamed it back and forth
        // run after run) nor removed. A symlink is removed when it is found out.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if name.starts_with(LOCK_PREFIX) {
            remove_unheld_lock(&entry.path());
            continue;
        }
        if name.starts_with(PARTIAL_PREFIX) {
            let age = super::owner::age(&entry.path());
            if age.is_some_and(|a| a > PARTIAL_AGE) {
                let _ = std::fs::remove_file(entry.path());
            } else {
                kept.push(entry.path());
            }
            continue;
        }
        let Some(rest) = name.strip_prefix(TMP_PREFIX) else {
            continue;
        };
        // `<pid>@<host>~<random>`, `<pid>@<host>~<encoded>~<random>` for a blob known by
        // its digest, or `<pid>-<random>` from before hosts were recorded.
        let (owner, blob) = match rest.split_once('~') {
            Some((owner, tail)) => (owner, tail.split_once('~').map(|(encoded, _)| encoded)),
            None => (rest.split('-').next().unwrap_or(""), None),
        };
        let age = super::owner::age(&entry.path());
        // The name alone misjudges a run in another PID namespace under the same host
        // name (containers of one pod, or run with the host's network, sharing a
        // volume): its PID means nothing here, and its live download was taken for a
        // dead run's, turned into a partial download under it, and its commit failed.
        // Its lock says it lives.
        if !super::owner::is_gone(owner, age, FOREIGN_TEMP_AGE) || held(&entry.path()) {
            continue;
        }
        // A killed run's download of a known blob: what it wrote is a partial download.
        let partial = blob
            .filter(|_| age.is_some_and(|a| a <= PARTIAL_AGE))
            .zip(
                entry
                    .metadata()
                    .ok()
                    .map(|m| m.len())
                    .filter(|&len| len > 0),
            )
            .map(|(encoded, len)| (partial_in(dir, encoded), len));
        match partial {
            Some((partial, len)) if park(&entry.path(), len, &partial) => kept.push(partial),
            _ => {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    kept
}

/// Removes the lock file at `path` if no process holds it (its run was killed), taking the
/// lock first as a fetch would ([`LayoutStore::try_ingest`]), so that a process that opened
/// it meanwhile finds it gone once it gets the lock, and makes a new one.
fn remove_unheld_lock(path: &Path) {
    match open_lock(path, false) {
        Ok(file) => match try_flock(&file, libc::LOCK_EX) {
            Ok(true) if names_file(path, &file) => {
                let _ = std::fs::remove_file(path);
            }
            // A filesystem without locks: nobody holds it.
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        },
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Opens the lock file at `path` (creating it with `create`) to lock it: read-only, which
/// `flock` needs no more than, so another user's lock in a shared layout is seen too;
/// never through a symbolic link, and never waiting on a FIFO.
fn open_lock(path: &Path, create: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let create = if create { libc::O_CREAT } else { 0 };
    std::fs::OpenOptions::new()
        .read(true)
        .mode(0o666)
        .custom_flags(create | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Whether `path` still names `file`, a regular file: a lock taken on a file its holder
/// unlinked before letting go locks nothing anyone else sees.
fn names_file(path: &Path, file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(held), Ok(named)) => {
            held.is_file() && held.dev() == named.dev() && held.ino() == named.ino()
        }
        _ => false,
    }
}

/// The lock under which a blob is fetched into the store ([`LayoutStore::try_ingest`]).
#[derive(Debug)]
pub struct IngestLock {
    held: Option<(std::fs::File, PathBuf)>,
}

impl Drop for IngestLock {
    fn drop(&mut self) {
        // Unlinked while still held, then closed: a process that opened the file meanwhile
        // gets the lock only after that, finds the name gone or another file's, and tries
        // again ([`names_file`]). Closed first, that process could take the lock on the
        // file about to go, while a third made a new one and fetched the blob too.
        if let Some((_file, path)) = &self.held {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Makes the file `from`, which holds (or is about to hold) `len` bytes, the partial
/// download at `partial`, unless one at least as long is there already: two runs may
/// download the same blob at once (pulls of images that share a layer, into one layout),
/// and the one stopped last replaced a longer partial download with its shorter one. Both
/// are prefixes of the same blob, to be verified whole; the longer saves the more. One
/// nobody carried on within [`PARTIAL_AGE`] counts for none: the sweep removes it.
/// Whether a partial download is at `partial` now.
fn park(from: &Path, len: u64, partial: &Path) -> bool {
    let there = std::fs::symlink_metadata(partial)
        .ok()
        .filter(|m| m.is_file())
        .filter(|_| super::owner::age(partial).is_some_and(|a| a <= PARTIAL_AGE));
    if there.is_some_and(|there| there.len() >= len) {
        return std::fs::remove_file(from).is_ok();
    }
    std::fs::rename(from, partial).is_ok()
}

/// Where the partial download of the blob `encoded` lies in `dir`, its algorithm's folder.
fn partial_in(dir: &Path, encoded: &str) -> PathBuf {
    dir.join(format!("{PARTIAL_PREFIX}{encoded}"))
}

/// `.dist-tmp-<pid>@<host>~`: the owner is recorded so that a later run can tell a dead
/// run's leftovers from the files of a run still going, here or on another machine.
fn temp_prefix() -> String {
    format!("{TMP_PREFIX}{}~", super::owner::me())
}

/// `.dist-tmp-<run>~<encoded>~`: a temporary file of the blob `digest` says so, for
/// the run that finds it after this one was killed.
fn blob_temp_prefix(digest: &Digest) -> String {
    format!("{TMP_PREFIX}{}~{}~", super::owner::me(), digest.encoded())
}

/// A temporary file in `dir` that will be renamed to a file of the layout. Its mode is
/// that of any file the user creates (0666 less the umask), not tempfile's 0600: other
/// users and tools read a layout (skopeo or podman run by another user, a web server
/// serving it), and a layout pulled with sudo was unreadable to everyone else.
pub(super) fn new_layout_file(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    new_named_file(dir, &temp_prefix())
}

fn new_named_file(dir: &Path, prefix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let file = builder.tempfile_in(dir)?;
    hold(file.as_file());
    Ok(file)
}

/// Locks a file this run writes (`flock`, exclusive) for as long as it is open, which
/// [`held`] sees from any process, whatever the file is named: as with `index.json`'s
/// lock, the kernel drops it when its holder dies. False when another process holds it.
/// (A filesystem without locks takes none: names alone judge its files.)
fn hold(file: &std::fs::File) -> bool {
    !matches!(try_flock(file, libc::LOCK_EX), Ok(false))
}

/// Takes `file`'s `flock` (`LOCK_EX` or `LOCK_SH`) without waiting for it: `Ok(false)`
/// when another process holds it.
pub(super) fn try_flock(file: &std::fs::File, operation: libc::c_int) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor the caller owns; it touches no memory.
    if unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.kind() {
        std::io::ErrorKind::WouldBlock => Ok(false),
        _ => Err(e),
    }
}

/// [`hold`], waiting up to `wait` for another holder to let go.
fn hold_within(file: &std::fs::File, wait: Duration) -> bool {
    let started = std::time::Instant::now();
    loop {
        if hold(file) {
            return true;
        }
        if started.elapsed() >= wait {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a live process holds `path` under its lock ([`hold`]). A file this run cannot
/// open to read is judged by its name alone.
fn held(path: &Path) -> bool {
    let Ok(file) = open_lock(path, false) else {
        return false;
    };
    matches!(try_flock(&file, libc::LOCK_SH), Ok(false))
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
    writing: Writing,
    /// The temporary file: never named in an error, since it is gone (deleted, or kept
    /// under the partial download's name) by the time the error is read.
    path: PathBuf,
    store: LayoutStore,
    /// The blob the file becomes a partial download of if dropped unfinished, to be
    /// carried on by a later run.
    park: Option<Digest>,
    /// Bytes the file held when it was claimed from an earlier run.
    kept: u64,
    /// Bytes the file holds once everything written to the blob has reached it.
    len: u64,
}

enum Writing {
    /// Chunks held until there are enough of them to start a writer, or until commit.
    Gathering {
        file: tempfile::NamedTempFile,
        batch: Vec<Bytes>,
        batched: usize,
    },
    /// A writer thread owns the file and gives it back once the queue is closed.
    Streaming(StreamWriter<PlainWrites>),
    /// Between states, or after a failure.
    Gone,
}

/// The temporary file written through its plain `File`: `NamedTempFile`'s own `Write`
/// appends the path to every error ("No space left on device ... at path ..."), which our
/// message names already.
struct PlainWrites(tempfile::NamedTempFile);

impl std::io::Write for PlainWrites {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.as_file().write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.0.as_file().write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.as_file().flush()
    }
}

impl std::fmt::Debug for TempBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let writing = match &self.writing {
            Writing::Gathering { batched, .. } => format!("gathering {batched} bytes"),
            Writing::Streaming(_) => "streaming".to_string(),
            Writing::Gone => "gone".to_string(),
        };
        f.debug_struct("TempBlob")
            .field("path", &self.path)
            .field("writing", &writing)
            .field("park", &self.park)
            .field("kept", &self.kept)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl TempBlob {
    /// Deletes the file now, kept or not: its content is wrong (it failed verification)
    /// or cannot be trusted.
    pub fn discard(mut self) {
        self.park = None;
    }

    /// Appends a chunk.
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
            Writing::Streaming(writer) => {
                if writer.write(chunk.clone()).await.is_err() {
                    // The writer only stops early on an error, which taking the file back
                    // reports.
                    self.take_file().await?;
                    return Err(self.failed());
                }
                Ok(())
            }
            Writing::Gone => Err(self.failed()),
        }
    }

    fn failed(&self) -> Error {
        Error::new(
            ErrorKind::Io,
            format!("{} after a failure", self.writing_what()),
        )
    }

    /// What a failed write says it was writing: the blob's place when its digest is
    /// known, else the directory the content goes into.
    fn writing_what(&self) -> String {
        match &self.park {
            Some(digest) => format!("writing {}", self.store.blob_path(digest).display()),
            None => {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                format!("writing into {}", dir.display())
            }
        }
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
        self.writing = Writing::Streaming(StreamWriter::start(PlainWrites(file), batch));
    }

    /// Takes the file back, with everything written so far, and what was not written yet.
    async fn take_file(&mut self) -> Result<(tempfile::NamedTempFile, Vec<Bytes>)> {
        match std::mem::replace(&mut self.writing, Writing::Gone) {
            Writing::Gathering { file, batch, .. } => Ok((file, batch)),
            Writing::Streaming(writer) => match writer.finish().await {
                (Some(PlainWrites(file)), Ok(())) => Ok((file, Vec::new())),
                (_, Err(e)) => Err(self.write_err(e)),
                (None, Ok(())) => unreachable!("a writer without its file reports why"),
            },
            Writing::Gone => Err(self.failed()),
        }
    }

    /// Makes the verified content durable and moves it to its place for `digest`.
    ///
    /// The content is not hashed again here: `digest` is taken on the caller's word. Commit
    /// only once the [`Download`](crate::Download) whose chunks were written returned
    /// `Ok(None)`, with the digest it verified ([`Download::digest`](crate::Download::digest));
    /// after an error, drop the blob (or [`discard`](Self::discard) it).
    pub async fn commit(mut self, digest: &Digest) -> Result<PathBuf> {
        let (file, batch) = self.take_file().await?;
        let dest = self.store.blob_path(digest);
        let moved = dest.clone();
        let finish = move || {
            super::gather::write_all_vectored(file.as_file(), &batch)
                .map_err(|e| io_err("writing", &moved, e))?;
            file.as_file()
                .sync_all()
                .map_err(|e| io_err("writing", &moved, e))?;
            file.persist(&moved)
                .map_err(|e| io_err("renaming into", &moved, e.error))?;
            Ok::<_, Error>(())
        };
        // In memory, writing at most a megabyte, a no-op fsync and a rename take less time
        // than handing them to another thread and back.
        if self.store.in_memory {
            finish()?;
        } else {
            crate::blocking::run("write task failed", finish).await?;
            let dir = dest.parent().expect("a blob is in a directory");
            let mut renamed = self.store.renamed.lock().unwrap_or_else(|p| p.into_inner());
            if !renamed.contains(dir) {
                renamed.insert(dir.to_owned());
            }
        }
        Ok(dest)
    }
}

impl TempBlob {
    /// Keeps what was received as a partial download for a later run to carry on (see
    /// [`LayoutStore::temp_for`]), once the chunks still queued for the writer are written.
    /// Dropped instead, the blob keeps only what the writer had got to: a connection cut
    /// 2 MiB into a fast download kept its first MiB and dropped the rest it had received.
    pub async fn keep(mut self) {
        if !matches!(self.writing, Writing::Streaming(_)) {
            // Nothing of this run's on disk: a claimed partial is put back by the drop.
            return;
        }
        // Renamed first, as a drop does: a signal that cancels the wait below still
        // leaves the partial download, a prefix of the blob whatever the writer got to.
        self.park_file(self.len);
        self.park = None;
        // The temporary name, if the rename failed, goes with the file; if the writer
        // failed, it went with its file already.
        let _ = self.take_file().await;
    }

    /// Renames the file, which will hold `len` bytes, to the partial download of the blob
    /// it was for, if it is for one and no longer one is there; whether a partial download
    /// of the blob is there now.
    fn park_file(&mut self, len: u64) -> bool {
        let Some(digest) = self.park.as_ref() else {
            return false;
        };
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
        let streaming = matches!(self.writing, Writing::Streaming(_));
        // Renamed here rather than by the writer thread, which may not get to it before
        // an interrupted process exits. A chunk it is writing still lands in the same
        // file, after the others; whoever carries it on verifies the whole content anyway.
        // Only what the writer got to is sure to be in the file: it stops at its next chunk.
        let written = || std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if (streaming || self.kept > 0) && self.park_file(written()) {
            return;
        }
        // The writer thread deletes the file when it stops, a moment later; the path goes
        // now, so that nothing unverified is visible once the blob is dropped.
        if streaming {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The directories whose entries creating `root` (not there yet) with `create_dir_all`
/// makes: its parent and, while that is missing too, the parent's parent, up to the first
/// directory that is there. `-o /srv/mirror/2026/layout` with only `/srv/mirror` there
/// makes entries in `2026` and `/srv/mirror`.
fn made_in(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut dir = root;
    while let Some(parent) = dir.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        dirs.push(parent.to_path_buf());
        if parent == Path::new(".") || std::fs::symlink_metadata(parent).is_ok() {
            break;
        }
        dir = parent;
    }
    dirs
}

/// Makes the names in the directory `dir` durable (those renamed into it, say), as far as
/// the filesystem lets it: one that refuses to open a directory to read (EACCES) or to
/// fsync it (EINVAL, EBADF) has no such sync to offer, and failing a run that stored every
/// blob over it would help no one (PostgreSQL's `fsync_fname` passes over them the same).
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let unsupported =
        |e: &std::io::Error, codes: &[i32]| e.raw_os_error().is_some_and(|c| codes.contains(&c));
    let file = match std::fs::File::open(dir) {
        Err(e) if unsupported(&e, &[libc::EACCES, libc::EISDIR]) => return Ok(()),
        other => other?,
    };
    match file.sync_all() {
        Err(e) if unsupported(&e, &[libc::EINVAL, libc::EBADF]) => Ok(()),
        other => other,
    }
}

/// Whether `dir` is on a filesystem kept in memory (tmpfs, ramfs).
fn memory_backed(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    const RAMFS_MAGIC: u64 = 0x8584_58f6;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `fs` is large enough for the kernel's answer.
    if unsafe { libc::statfs(path.as_ptr(), fs.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statfs succeeded, so it filled `fs`.
    // `f_type`'s width and sign differ between targets; the magic numbers fit in 32 bits.
    let kind = unsafe { fs.assume_init() }.f_type as u64 & 0xffff_ffff;
    kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
}

/// Removes `root` if it holds exactly a new layout's files: `oci-layout` and `index.json` as
/// [`LayoutStore::open`] writes them, and `blobs/` with empty directories in it. Only
/// `remove_dir` removes directories, so content that appears meanwhile stops it.
fn remove_skeleton(root: &Path) -> std::io::Result<()> {
    let unexpected = || std::io::Error::other("not an unused layout");
    for entry in std::fs::read_dir(root)? {
        let name = entry?.file_name();
        if !matches!(name.to_str(), Some("oci-layout" | "index.json" | "blobs")) {
            return Err(unexpected());
        }
    }
    // Missing parts are fine: a layout begun on a full disk may lack any of them.
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    let fits = |name: &str, want: &[u8]| match std::fs::read(root.join(name)) {
        Ok(b) => b == want,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    if !fits("oci-layout", OCI_LAYOUT) || !fits("index.json", EMPTY_INDEX) {
        return Err(unexpected());
    }
    let blobs = root.join("blobs");
    match std::fs::read_dir(&blobs) {
        Ok(entries) => {
            for entry in entries {
                std::fs::remove_dir(entry?.path())?;
            }
            std::fs::remove_dir(&blobs)?;
        }
        Err(e) => gone(Err(e))?,
    }
    gone(std::fs::remove_file(root.join("index.json")))?;
    gone(std::fs::remove_file(root.join("oci-layout")))?;
    std::fs::remove_dir(root)
}

/// Creates what is missing of a layout at `root`: the directory `dir` under `blobs/`
/// (`blobs/` itself included), `oci-layout` and an empty `index.json`. A run that created
/// the layout and failed may be taking it away meanwhile (see [`LayoutStore::temp`]): a
/// part gone while it is made is made again, a few times.
fn make_skeleton(root: &Path, dir: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        let made = std::fs::create_dir_all(dir)
            .map_err(|e| ("creating", dir.to_path_buf(), e))
            .and_then(|()| write_if_absent(&root.join("oci-layout"), OCI_LAYOUT))
            .and_then(|()| write_if_absent(&root.join("index.json"), EMPTY_INDEX));
        match made {
            Err((_, _, e)) if e.kind() == std::io::ErrorKind::NotFound && tries < 5 => tries += 1,
            Err((what, path, e)) => return Err(io_err(what, &path, e)),
            Ok(()) => return Ok(()),
        }
    }
}

/// Writes `content` to `path` unless there is a file there; on failure, what was being
/// done, to which path, and why.
fn write_if_absent(
    path: &Path,
    content: &[u8],
) -> std::result::Result<(), (&'static str, PathBuf, std::io::Error)> {
    if path.exists() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp =
        new_layout_file(dir).map_err(|e| ("creating a temporary file in", dir.into(), e))?;
    // Synced before its rename: renamed first, a power loss soon after could leave an
    // empty `index.json` (the rename durable, the data not yet written), and every later
    // run refused the directory as no layout.
    tmp.write_all(content)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| ("writing", path.into(), e))?;
    // Another run may have created it meanwhile; either copy is the same.
    tmp.persist(path)
        .map_err(|e| ("writing", path.into(), e.error))?;
    Ok(())
}

/// Opens `path` to read and append, if it is a regular file of no other name. A partial
/// download is found by its name in a directory others may write to: a symbolic link
/// planted there must not lead a run (often root's) to append to a file outside the
/// layout, nor end up renamed into `blobs/`; nor must a hard link, which `O_NOFOLLOW` does
/// not see (a file dist made has one name); a FIFO must not hang it. Such a file is
/// refused with `InvalidData`.
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let not_regular = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a regular file");
    let file = match opened {
        Ok(file) => file,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EISDIR)) => {
            return Err(not_regular())
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(not_regular());
    }
    Ok(file)
}

/// Hashes a file's content.
pub fn hash_file(path: &Path, algorithm: Algorithm) -> Result<Digest> {
    let f = std::fs::File::open(path).map_err(|e| io_err("opening", path, e))?;
    let (h, _) = hash_reader(&f, algorithm).map_err(|e| io_err("reading", path, e))?;
    Ok(h.finish())
}

/// Hashes what `r` holds up to its end; returns the hash state and how many bytes it took.
fn hash_reader(mut r: impl std::io::Read, algorithm: Algorithm) -> std::io::Result<(Hasher, u64)> {
    let mut h = Hasher::new(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok((h, len));
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
}

#[cfg(test)]
mod tests {
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

    /// A directory that fails to sync does not keep the others of its round from being
    /// synced: the error names the first and counts the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_failed_directory_sync_goes_on_with_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dir.path().join("lay")).unwrap();
        let gone = [dir.path().join("gone-1"), dir.path().join("gone-2")];
        store.renamed.lock().unwrap().extend(gone.iter().cloned());
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

        // There before this run: never removed.
        let existing = parent.path().join("existing");
        std::fs::create_dir(&existing).unwrap();
        assert!(!LayoutStore::open(&existing).unwrap().remove_if_unused());
        assert!(existing.join("oci-layout").exists());

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
}
