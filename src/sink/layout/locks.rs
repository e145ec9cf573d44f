//! The `flock`s a layout's files are written under, and the ingest lock a blob is fetched
//! under, which other processes see whatever the files are named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Removes the lock file at `path` if no process holds it (its run was killed), taking the
/// lock first as a fetch would ([`LayoutStore::try_ingest`](super::LayoutStore::try_ingest)), so that a process that opened
/// it meanwhile finds it gone once it gets the lock, and makes a new one.
pub(super) fn remove_unheld_lock(path: &Path) {
    remove_unheld_lock_with(path, try_flock)
}

/// [`remove_unheld_lock`], locking with `lock` ([`try_flock`]'s), which tests make answer
/// as NFS does.
fn remove_unheld_lock_with(
    path: &Path,
    lock: impl Fn(&std::fs::File, libc::c_int) -> std::io::Result<bool>,
) {
    match open_lock(path, false) {
        Ok(file) => match exclusive_or_shared(&file, lock) {
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

/// Takes `file`'s lock with `lock`, exclusive, or shared where the file is open only to
/// read and the filesystem wants a writer for an exclusive lock (NFS, `EBADF`): another
/// user's lock file in a shared layout opens only so. Taken for a filesystem without locks,
/// the lock file a live run held was removed. Shared, the lock says as well whether anyone
/// holds the file, and keeps a run that would take it out until the file is gone.
fn exclusive_or_shared(
    file: &std::fs::File,
    lock: impl Fn(&std::fs::File, libc::c_int) -> std::io::Result<bool>,
) -> std::io::Result<bool> {
    match lock(file, libc::LOCK_EX) {
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => lock(file, libc::LOCK_SH),
        other => other,
    }
}

/// Opens the lock file at `path` (creating it with `create`) to lock it, never through a
/// symbolic link, and never waiting on a FIFO. For writing where it may be: on NFS,
/// `flock` is a lock on the server that an exclusive holder must have opened for writing
/// (`EBADF` otherwise, and the store then runs as if without locks, fetching a shared blob
/// once per run). Read-only where it may not be, which a local `flock` needs no more
/// than, so another user's lock in a shared layout, or one on a read-only mount, is seen.
pub(super) fn open_lock(path: &Path, create: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let create = if create { libc::O_CREAT } else { 0 };
    let open = |write: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .mode(0o666)
            .custom_flags(create | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    match open(true) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EACCES | libc::EROFS | libc::EPERM)
            ) =>
        {
            open(false)
        }
        opened => opened,
    }
}

/// Whether `path` still names `file`, a regular file: a lock taken on a file its holder
/// unlinked before letting go locks nothing anyone else sees.
pub(in crate::sink) fn names_file(path: &Path, file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(held), Ok(named)) => {
            held.is_file() && held.dev() == named.dev() && held.ino() == named.ino()
        }
        _ => false,
    }
}

/// The lock under which a blob is fetched into the store ([`LayoutStore::try_ingest`](super::LayoutStore::try_ingest)).
#[derive(Debug)]
pub struct IngestLock {
    pub(super) held: Option<(std::fs::File, PathBuf)>,
}

/// The lock files of the [`IngestLock`]s this process holds: a fetch that finds one of
/// them held waits for a fetch of its own process (two lines naming one blob with other
/// sizes), which shows in its progress and ends with it, not for another run that may be
/// stopped or hung.
static HELD_HERE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

impl IngestLock {
    /// No lock: where none can be had, the fetch goes ahead without one.
    pub(super) fn none() -> IngestLock {
        IngestLock { held: None }
    }

    /// The lock on `file`, at `path`, taken by this process.
    pub(super) fn held(file: std::fs::File, path: PathBuf) -> IngestLock {
        let mut here = HELD_HERE.lock().unwrap_or_else(|p| p.into_inner());
        here.insert(path.clone());
        IngestLock {
            held: Some((file, path)),
        }
    }
}

/// Whether this process holds the ingest lock whose file is at `path`.
pub(super) fn held_here(path: &Path) -> bool {
    let here = HELD_HERE.lock().unwrap_or_else(|p| p.into_inner());
    here.contains(path)
}

impl Drop for IngestLock {
    fn drop(&mut self) {
        // Unlinked while still held, then closed: a process that opened the file meanwhile
        // gets the lock only after that, finds the name gone or another file's, and tries
        // again ([`names_file`]). Closed first, that process could take the lock on the
        // file about to go, while a third made a new one and fetched the blob too.
        if let Some((_file, path)) = &self.held {
            let _ = std::fs::remove_file(path);
            let mut here = HELD_HERE.lock().unwrap_or_else(|p| p.into_inner());
            here.remove(path);
        }
    }
}

/// A blob this run waits for while another run holds its lock
/// ([`LayoutStore::mark_waiting`](super::LayoutStore::mark_waiting)); no longer, once dropped.
#[derive(Debug)]
pub struct WaitMark {
    pub(super) waiting: Arc<Mutex<BTreeMap<PathBuf, crate::digest::Digest>>>,
    pub(super) path: PathBuf,
}

impl Drop for WaitMark {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.remove(&self.path);
    }
}

/// Locks a file this run writes (`flock`, exclusive) for as long as it is open, which
/// [`take_unheld`] sees from any process, whatever the file is named: as with
/// `index.json`'s lock, the kernel drops it when its holder dies. False when another
/// process holds it. (A filesystem without locks takes none: names alone judge its files.)
pub(super) fn hold(file: &std::fs::File) -> bool {
    !matches!(try_flock(file, libc::LOCK_EX), Ok(false))
}

/// Takes `file`'s `flock` (`LOCK_EX` or `LOCK_SH`) without waiting for it: `Ok(false)`
/// when another process holds it.
pub(in crate::sink) fn try_flock(
    file: &std::fs::File,
    operation: libc::c_int,
) -> std::io::Result<bool> {
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
pub(super) fn hold_within(file: &std::fs::File, wait: Duration) -> bool {
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

/// What [`take_unheld`] found of a file: whether it may be taken away, and what keeps its
/// maker out meanwhile.
#[derive(Debug)]
pub(super) enum Unheld {
    /// A live process holds it, or its name no longer names the file locked: left alone.
    Held,
    /// This run cannot open it to read: judged by its name alone, and taken unlocked.
    ByName,
    /// Held by no process: taken while this file, open, holds its lock (shared; none on a
    /// filesystem without locks, where its name alone judged it). Keep it until the file
    /// is taken.
    Taken {
        /// Held for its lock, never read.
        _lock: std::fs::File,
    },
}

/// Takes the lock of `path`, shared, to remove or rename a file no live process holds
/// ([`hold`]): [`Unheld::Held`] when one does, or when `path` no longer names the file
/// locked. Kept until the file is taken, the lock keeps out the run that made it, which
/// checks once it holds the lock that the name is still its file's: probed and let go,
/// the lock was taken by that run in between, and its file taken away after. A file this
/// run cannot open to read, or lock (a filesystem without locks), is judged by its name
/// alone.
pub(super) fn take_unheld(path: &Path) -> Unheld {
    let Ok(file) = open_lock(path, false) else {
        return Unheld::ByName;
    };
    match try_flock(&file, libc::LOCK_SH) {
        Ok(false) => Unheld::Held,
        Ok(true) if !names_file(path, &file) => Unheld::Held,
        _ => Unheld::Taken { _lock: file },
    }
}

/// Whether `path` is known to be held by no process: this run took its lock, shared, and
/// no record lock is on it ([`record_locked`]). False where that cannot be told (a file
/// this run cannot open, a filesystem without locks), unlike [`take_unheld`], which judges
/// such a file by its name.
pub(super) fn known_unheld(path: &Path) -> bool {
    open_lock(path, false).is_ok_and(|file| {
        matches!(try_flock(&file, libc::LOCK_SH), Ok(true)) && record_locked(&file) == Some(false)
    })
}

/// Whether any process holds a record (`fcntl`) lock on part of `file`; `None` where the
/// kernel does not say. A local filesystem this machine exports over NFS (or SMB) is
/// written by other machines' runs too, and their `flock` reaches this kernel as a record
/// lock its server takes, which an `flock` here does not meet: that alone took a live
/// download of an NFS client for a killed run's.
pub(super) fn record_locked(file: &std::fs::File) -> Option<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `flock` is plain integers, for which all zeroes is a value.
        let mut query: libc::flock = unsafe { std::mem::zeroed() };
        // Whole-file (`l_start` and `l_len` 0) and for writing: met by any lock at all.
        query.l_type = libc::F_WRLCK as libc::c_short;
        query.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: an open descriptor the caller owns, and a struct of the type
        // F_OFD_GETLK fills. An open file description's query meets every process's
        // record locks, this one's too, unlike F_GETLK's.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut query) } != 0 {
            return None;
        }
        Some(query.l_type != libc::F_UNLCK as libc::c_short)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = file;
        None
    }
}

/// The moments between two steps of making, claiming or taking a file over, where a test
/// stops this run to act as another would ([`between`]).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// A temporary file was made, and is not locked yet.
    Made,
    /// A partial download was renamed to the claim's temporary name.
    Claimed,
    /// The sweep judged a file abandoned and is about to take it (remove it, or make it
    /// a partial download).
    Taking,
}

#[cfg(test)]
type Hook = Box<dyn FnMut(Step, &Path)>;

#[cfg(test)]
thread_local! {
    /// What [`between`] runs on this thread.
    pub(super) static BETWEEN: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
}

/// Runs the hook a test set in [`BETWEEN`] at `step`, about `path`; out of its cell while
/// it runs, so that what it does (a sweep) meets no hook.
#[cfg(test)]
pub(super) fn between(step: Step, path: &Path) {
    if let Some(mut hook) = BETWEEN.with(|h| h.borrow_mut().take()) {
        hook(step, path);
        BETWEEN.with(|h| *h.borrow_mut() = Some(hook));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exclusive `flock` on NFS needs a file open for writing.
    #[test]
    fn a_lock_file_is_opened_for_writing_where_it_may_be() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let file = open_lock(&path, true).unwrap();
        // SAFETY: F_GETFL on a descriptor this test owns.
        let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_GETFL) };
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDWR);
        assert!(try_flock(&file, libc::LOCK_EX).unwrap());
    }

    /// On NFS an exclusive `flock` of a file open only to read fails with `EBADF`, and
    /// another user's lock file opens only so: taken for a filesystem without locks, the
    /// lock file a live run held (`index.json`'s, under which it was writing the index)
    /// was removed, and the next run made its own and wrote `index.json` beside it. One
    /// nobody holds still goes.
    #[test]
    fn a_held_lock_nfs_lets_this_run_open_only_to_read_stays() {
        // NFS's answer to an exclusive lock of a file open only to read; the rest local.
        let as_nfs = |file: &std::fs::File, operation: libc::c_int| match operation {
            libc::LOCK_EX => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
            _ => try_flock(file, operation),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".dist-index.lock");
        let holder = open_lock(&path, true).unwrap();
        assert!(try_flock(&holder, libc::LOCK_EX).unwrap());
        remove_unheld_lock_with(&path, as_nfs);
        assert!(path.exists(), "a held lock file was removed");

        drop(holder);
        remove_unheld_lock_with(&path, as_nfs);
        assert!(!path.exists(), "a lock file nobody holds stayed");
    }
}
