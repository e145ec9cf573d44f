//! The layout's own files and directories: creating its skeleton, making names durable,
//! opening files without following links, hashing what a file holds.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::Result;

use super::temp_blob::new_layout_file;
use super::{io_err, EMPTY_INDEX, OCI_LAYOUT};

/// The directories whose entries creating `root` (not there yet) with `create_dir_all`
/// makes: its parent and, while that is missing too, the parent's parent, up to the first
/// directory that is there. `-o /srv/mirror/2026/layout` with only `/srv/mirror` there
/// makes entries in `2026` and `/srv/mirror`.
pub(super) fn made_in(root: &Path) -> Vec<PathBuf> {
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

/// The directories whose entries hold the layout at `root` in place: the one it is in and
/// each above it, as far as its filesystem goes (the entry of a mount's root, in the
/// filesystem above, is no part of it). Whoever made them (this run, another shard into
/// the same directory that has not synced them yet, a `mkdir -p` just before) a power loss
/// may take them back unsynced, and the blobs with them. Real directories, not the names
/// of links on the way. With them, those holding a name `root` leaves again through a `..`
/// (`x` of `x/y/../../z/out`, which holds `y`): the paths a run reports lead through it.
/// Only those changed in the last [`SETTLED`]: an entry older than that is on disk already
/// (the filesystem's journal has committed it), and an fsync of each directory up to `/`
/// costs a flush of the disk's cache even when nothing in it changed (about 4 ms for `/`
/// here), which a script running dist once per object paid every run.
/// None when `root` cannot be found (it is gone: its own sync fails).
pub(super) fn above(root: &Path) -> Vec<PathBuf> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    above_changed_after(root, now.saturating_sub(SETTLED.as_secs()))
}

/// How long a change to a directory takes at most to reach the disk without an fsync:
/// ext4 commits its journal every 5 s, XFS and btrfs every 30 s by default. A mount told
/// to wait longer (`commit=600`) is left to what it chose.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(300);

/// [`above`], for the directories changed at or after `after` (seconds since the epoch).
fn above_changed_after(root: &Path, after: u64) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    use std::path::Component;
    let mut dirs = Vec::new();
    let Ok(there) = std::fs::canonicalize(root) else {
        return dirs;
    };
    let Ok(dev) = std::fs::metadata(&there).map(|m| m.dev()) else {
        return dirs;
    };
    // A name made in a directory, or renamed into it, changes the directory's ctime: one
    // unchanged since `after` holds no entry younger. Walked to the top all the same, for
    // a directory renamed lately above an old one. `None` off the layout's filesystem.
    let changed = |dir: &Path| {
        let m = std::fs::metadata(dir).ok().filter(|m| m.dev() == dev)?;
        Some(u64::try_from(m.ctime()).map_or(true, |c| c >= after))
    };
    let mut dir = there.as_path();
    while let Some((parent, lately)) = dir.parent().and_then(|p| Some((p, changed(p)?))) {
        if lately {
            dirs.push(parent.to_path_buf());
        }
        dir = parent;
    }
    // Each name on the way as written is in a directory: mostly one of those above, but
    // not where a `..` leaves it again.
    let mut named = PathBuf::new();
    for c in root.components() {
        if matches!(c, Component::Normal(_)) {
            let holding = match named.as_os_str().is_empty() {
                true => Path::new("."),
                false => &named,
            };
            if let Ok(holding) = std::fs::canonicalize(holding) {
                if holding != there && !dirs.contains(&holding) && changed(&holding) == Some(true) {
                    dirs.push(holding);
                }
            }
        }
        named.push(c);
    }
    dirs
}

/// `root` as it names directories on disk once made, and the directories made only to
/// leave through a `..` after them.
///
/// Where it leads: each `..` after a name that is not there is taken back with that name
/// (`x/../y/out`, no `x`: `y/out`), since what the name will be is a directory made for
/// it, whose `..` is the directory it is made in. By name `x/../y` is not there, and the
/// user's `y` (empty, say) was taken for a directory a run created or made on the way to
/// its layout, and removed with it. A `..` after a name that is there (a link, say) is
/// left for the system to follow.
///
/// Made aside, deepest first: `x` of `x/../y/out` with no `x`; `x/y` and `x` of
/// `x/y/../../z`. Not on the way to where `root` leads, so not among those [`made_in`]
/// lists, yet made all the same, by `create_dir_all` looking for the `..`'s directory.
/// One walk gives both, a `lstat` for each name.
pub(super) fn on_disk(root: &Path) -> (PathBuf, Vec<PathBuf>) {
    use std::path::Component;
    let mut named = PathBuf::new();
    let mut taken_back = Vec::new();
    let mut missing = false;
    for c in root.components() {
        if c == Component::ParentDir && missing {
            taken_back.push(named.clone());
            named.pop();
            missing = !named.as_os_str().is_empty() && std::fs::symlink_metadata(&named).is_err();
            continue;
        }
        named.push(c);
        missing = missing || std::fs::symlink_metadata(&named).is_err();
    }
    // All taken back (`x/..`): the working directory, which an empty path names not.
    if named.as_os_str().is_empty() {
        named.push(".");
    }
    taken_back.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
    (named, taken_back)
}

/// Takes back a new layout at `there` (where its path leads, [`on_disk`]) if unused, and
/// the directories made for it, each only while empty; whether it went (or, with
/// `never_made`, was never there). Those `aside` ([`on_disk`]) in `there` go first,
/// since they would have the layout taken for one in use (`-o x/..`: `x`); then its own
/// files ([`remove_skeleton`]), through `there`, as the path as named leads through those;
/// then the other `aside`, and those [`made_in`] lists, of which one may hold one of them
/// (`x/y/../new`: `x/y`, in `x`). Those out of the layout go only once it went: another
/// run into it may still be reaching it through them.
pub(super) fn take_back(
    there: &Path,
    and_root: bool,
    never_made: bool,
    aside: &[PathBuf],
    made_in: &[PathBuf],
) -> bool {
    use std::path::Component;
    let plain =
        |p: &Path| -> PathBuf { p.components().filter(|c| *c != Component::CurDir).collect() };
    let (within, beside): (Vec<&PathBuf>, Vec<&PathBuf>) = aside
        .iter()
        .partition(|dir| plain(dir).starts_with(plain(there)));
    remove_dirs(within);
    if !never_made && remove_skeleton(there, and_root).is_err() {
        return false;
    }
    remove_dirs(beside);
    remove_made_on_the_way(made_in);
    true
}

/// Removes the directories [`made_in`] listed as made on the way to a new layout since
/// taken away (all but its last, which was there), deepest first, each only while empty:
/// one that is not holds another run's output (a layout beside this one), and those above
/// it stay with it. `-o a/b/out` that failed left the empty `a/b` and `a` behind. One that
/// cannot be removed does not stop the rest: the making may have stopped above it (a
/// `mkdir` refused by a full disk), and those made before it are still to go.
fn remove_made_on_the_way(made_in: &[PathBuf]) {
    if let Some((_, made)) = made_in.split_last() {
        remove_dirs(made);
    }
}

/// Removes each of `dirs` in turn while empty, going on past any that cannot go.
fn remove_dirs<P: AsRef<Path>>(dirs: impl IntoIterator<Item = P>) {
    for dir in dirs {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Makes the names in the directory `dir` durable (those renamed into it, say), as far as
/// the filesystem lets it: one that refuses to open a directory to read (EACCES) or to
/// fsync it (EINVAL, EBADF) has no such sync to offer, and failing a run that stored every
/// blob over it would help no one (PostgreSQL's `fsync_fname` passes over them the same).
/// `Ok` there too, though nothing was made durable; any other error (EIO from a failing
/// disk, ENOENT) is the system's, for the caller to name `dir` in. Blocks on the disk (a
/// hung network filesystem may not return): in async code, call it from `spawn_blocking`.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
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

/// Superblock magic number of tmpfs (statfs(2), linux/magic.h).
pub(super) const TMPFS_MAGIC: u32 = 0x0102_1994;
/// Superblock magic number of ramfs.
pub(super) const RAMFS_MAGIC: u32 = 0x8584_58F6;

/// The superblock magic number of the filesystem `dir` is on (statfs(2)); `None` where
/// statfs fails (a missing directory).
pub(super) fn fs_magic(dir: &Path) -> Option<u32> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `fs` is large enough for the kernel's answer.
    if unsafe { libc::statfs(path.as_ptr(), fs.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statfs succeeded, so it filled `fs`.
    // `f_type`'s width and sign differ between targets; the magic numbers fit in 32 bits.
    Some(unsafe { fs.assume_init() }.f_type as u32)
}

/// Whether `dir` is on a filesystem kept in memory (tmpfs, ramfs).
pub(super) fn memory_backed(dir: &Path) -> bool {
    matches!(fs_magic(dir), Some(TMPFS_MAGIC | RAMFS_MAGIC))
}

/// Removes a new layout's files from `root` if it holds exactly those: `oci-layout` and
/// `index.json` as [`LayoutStore::open`](super::LayoutStore::open) writes them, and `blobs/`
/// with empty directories in it; then `root` itself with `and_root`. Only `remove_dir`
/// removes directories, so content that appears meanwhile stops it; `root` not empty at
/// the end (a run into it made the layout again) fails it too, for the caller to put the
/// layout back, as does the index's lock held by another run.
pub(super) fn remove_skeleton(root: &Path, and_root: bool) -> std::io::Result<()> {
    remove_skeleton_meanwhile(root, and_root, || {})
}

/// [`remove_skeleton`], with `meanwhile` run once `blobs/` is gone: where another run into
/// the same directory (a shard) finds it gone and makes the layout again.
fn remove_skeleton_meanwhile(
    root: &Path,
    and_root: bool,
    meanwhile: impl FnOnce(),
) -> std::io::Result<()> {
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
    // The index is found empty and removed under its lock, which a run writing it holds:
    // looked at without, an image another pull into this directory renamed in between
    // was removed with it. Held by another, the index is in use. A lock that cannot be
    // made (a full disk) is none another run could write the index under either.
    let index_lock = match crate::sink::index::IndexLock::try_acquire(root) {
        Ok(Some(lock)) => Some(lock),
        Ok(None) => return Err(unexpected()),
        Err(_) => None,
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
    meanwhile();
    gone(std::fs::remove_file(root.join("index.json")))?;
    drop(index_lock);
    gone(std::fs::remove_file(root.join("oci-layout")))?;
    // Something in it now came meanwhile: a run into it made the layout again after
    // `blobs/` went, and needs back what this removal took since. `remove_dir` finds
    // that out for a directory this run made; the user's stays, and is looked into.
    if and_root {
        std::fs::remove_dir(root)?;
    } else if std::fs::read_dir(root)?.next().is_some() {
        return Err(unexpected());
    }
    Ok(())
}

/// Creates what is missing of a layout at `root`: the directory `dir` under `blobs/`
/// (`blobs/` itself included), `oci-layout` and an empty `index.json`. A run that created
/// the layout and failed may be taking it away meanwhile (see [`LayoutStore::temp`](super::LayoutStore::temp)): a
/// part gone while it is made is made again, a few times.
pub(super) fn make_skeleton(root: &Path, dir: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        let made = create_dirs(dir)
            .map_err(|(path, e)| ("creating", path, e))
            .and_then(|()| write_if_absent(&root.join("oci-layout"), OCI_LAYOUT))
            .and_then(|()| write_if_absent(&root.join("index.json"), EMPTY_INDEX));
        match made {
            Err((_, _, e)) if e.kind() == std::io::ErrorKind::NotFound && tries < 5 => tries += 1,
            Err((what, path, e)) => return Err(io_err(what, &path, e)),
            Ok(()) => return Ok(()),
        }
    }
}

/// Creates the directory `dir` and those missing above it. On failure, the directory
/// that could not be made and why, in words (a file in the way names `dir` and the file):
/// `create_dir_all` named only `dir`, the deepest, with the system's words ("creating
/// ro/x/blobs: Permission denied" where it was `ro/x` that `ro` did not let be made,
/// "creating bl/blobs: File exists" where `blobs` was a file).
pub(super) fn create_dirs(dir: &Path) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    let Err(failed) = std::fs::create_dir_all(dir) else {
        return Ok(());
    };
    let mut above: Vec<&Path> = dir
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    above.reverse();
    for p in above {
        let found = match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => continue,
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::create_dir(p) {
                Ok(()) => continue,
                // Made meanwhile by another run.
                Err(e) if p.is_dir() => {
                    drop(e);
                    continue;
                }
                Err(e) => return Err((p.to_path_buf(), mkdir_in_words(p, e))),
            },
            Err(e) => return Err((p.to_path_buf(), e)),
        };
        let what = if found.is_file() {
            "a file"
        } else {
            "no directory"
        };
        let words = format!("{} is {what}, not a directory", p.display());
        let kind = std::io::ErrorKind::NotADirectory;
        return Err((dir.to_path_buf(), std::io::Error::new(kind, words)));
    }
    // Nothing found in the way (it changed meanwhile): the system's words stand.
    Err((dir.to_path_buf(), failed))
}

/// Why the directory `p` could not be made, in words that name the directory at fault:
/// the system's alone ("Permission denied") leave the reader to guess which.
fn mkdir_in_words(p: &Path, e: std::io::Error) -> std::io::Error {
    let parent = match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let parent = parent.display();
    let words = match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            format!("{parent} does not let this user make entries in it ({e})")
        }
        std::io::ErrorKind::ReadOnlyFilesystem => {
            format!("{parent} is on a read-only filesystem ({e})")
        }
        // A link to nothing: `mkdir` follows no link, and says "File exists".
        std::io::ErrorKind::AlreadyExists if p.is_symlink() => {
            format!(
                "{} is a symbolic link to nothing, not a directory",
                p.display()
            )
        }
        _ => return e,
    };
    std::io::Error::new(e.kind(), words)
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
    // Named by the file it is for: "creating a temporary file in DIR" left the user to
    // guess what dist meant to write into their layout.
    let mut tmp = new_layout_file(dir).map_err(|e| ("writing", path.into(), e))?;
    // Synced before its rename: renamed first, a power loss soon after could leave an
    // empty `index.json` (the rename durable, the data not yet written), and every later
    // run refused the directory as no layout.
    tmp.write_all(content)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| ("writing", path.into(), e))?;
    place_new(tmp, path).map_err(|e| ("writing", path.into(), e))
}

/// Renames `tmp` to `path` unless a file is there by now: another run may have made it
/// since [`write_if_absent`] looked, and `index.json` may already name the images that
/// run pulled, which an empty one renamed over it would drop.
fn place_new(tmp: tempfile::NamedTempFile, path: &Path) -> std::io::Result<()> {
    let e = match tmp.persist_noclobber(path) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    // What is there is kept (the temporary goes with `e`), unless it leads nowhere: a
    // dangling link was replaced before, and a layout has no use for one. A filesystem
    // that can neither rename without replacing nor hard-link gets the plain rename.
    if e.error.kind() == std::io::ErrorKind::AlreadyExists && path.exists() {
        return Ok(());
    }
    e.file.persist(path).map(drop).map_err(|e| e.error)
}

/// Opens `path` to read and append, if it is a regular file of no other name. A partial
/// download is found by its name in a directory others may write to: a symbolic link
/// planted there must not lead a run (often root's) to append to a file outside the
/// layout, nor end up renamed into `blobs/`; nor must a hard link, which `O_NOFOLLOW` does
/// not see (a file dist made has one name); a FIFO must not hang it. Such a file is
/// refused with `InvalidData`.
pub(super) fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
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
pub(super) fn hash_reader(
    mut r: impl std::io::Read,
    algorithm: Algorithm,
) -> std::io::Result<(Hasher, u64)> {
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

    /// A shard into the same directory the user made empty found `blobs/` gone while this
    /// run took the layout apart, and made it again (`oci-layout` and `index.json` were
    /// still there, and stayed as they were) to store its blob in: this run went on to
    /// remove those two, and the shard's blob was left in a directory no tool takes for a
    /// layout. A directory that is not empty at the end was taken over, as one that
    /// `remove_dir` cannot remove is when this run made it.
    #[test]
    fn a_layout_made_again_meanwhile_is_not_called_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sha256 = root.join("blobs/sha256");
        make_skeleton(root, &sha256).unwrap();
        let shard = || {
            make_skeleton(root, &sha256).unwrap();
            std::fs::write(sha256.join("ab"), b"the shard's").unwrap();
        };
        let e = remove_skeleton_meanwhile(root, false, shard).unwrap_err();
        assert_eq!(e.to_string(), "not an unused layout");
        assert_eq!(std::fs::read(sha256.join("ab")).unwrap(), b"the shard's");
    }

    /// A pull into the same directory that got as far as its `index.json` while this run
    /// took the layout apart had the image it renamed in removed with the empty index this
    /// run found there before: the layout was put back empty, the image gone from it. The
    /// index is looked at and removed under its lock, which writers of it take too.
    #[test]
    fn an_index_written_meanwhile_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let sha256 = root.join("blobs/sha256");
        make_skeleton(&root, &sha256).unwrap();
        let image = crate::image::Descriptor::new(
            crate::media::OCI_MANIFEST,
            Digest::of(Algorithm::Sha256, b"m"),
            1,
        );
        let pull = {
            let (root, image) = (root.clone(), image.clone());
            move || crate::sink::index::add_entry(&root, &image).unwrap()
        };
        let mut waiting = None;
        let e = remove_skeleton_meanwhile(&root, false, || {
            make_skeleton(&root, &sha256).unwrap();
            std::fs::write(sha256.join("ab"), b"the pull's").unwrap();
            // Written now unless this run holds the index, then as soon as it lets go.
            match crate::sink::index::IndexLock::try_acquire(&root).unwrap() {
                Some(free) => {
                    drop(free);
                    pull();
                }
                None => waiting = Some(std::thread::spawn(pull)),
            }
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "not an unused layout");
        // What the caller does then: the layout put back as it was.
        make_skeleton(&root, &sha256).unwrap();
        if let Some(pull) = waiting {
            pull.join().unwrap();
        }
        let index = std::fs::read_to_string(root.join("index.json")).unwrap();
        assert!(index.contains(&image.digest.to_string()), "{index}");
    }

    /// A file where a directory of the layout must be is named, with the directory being
    /// made: "creating bl/blobs: File exists" left the reader to find which.
    #[test]
    fn a_file_in_the_way_of_a_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bl");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("blobs"), b"").unwrap();
        let e = make_skeleton(&root, &root.join("blobs/sha256")).unwrap_err();
        let blobs = root.join("blobs");
        let want = format!(
            "creating {}: {} is a file, not a directory",
            blobs.join("sha256").display(),
            blobs.display()
        );
        assert_eq!(e.to_string(), want);

        // Deeper: the file is above the layout.
        let under = root.join("blobs/x");
        let e = make_skeleton(&under, &under.join("blobs")).unwrap_err();
        assert!(
            e.to_string()
                .ends_with(&format!("{} is a file, not a directory", blobs.display())),
            "{e}"
        );
    }

    /// A directory that cannot be made is named, not the deepest one asked for, with the
    /// directory that refused it. (Words alone: a test run as root is refused nothing.)
    #[test]
    fn a_refused_directory_is_named_with_the_one_that_refused_it() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = mkdir_in_words(Path::new("ro/x"), denied);
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(
            e.to_string()
                .starts_with("ro does not let this user make entries in it ("),
            "{e}"
        );
        let e = mkdir_in_words(
            Path::new("x"),
            std::io::Error::from_raw_os_error(libc::EROFS),
        );
        assert!(
            e.to_string()
                .starts_with(". is on a read-only filesystem ("),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("blobs");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        let (failed, e) = create_dirs(&link.join("sha256")).unwrap_err();
        assert_eq!(failed, link);
        assert!(
            e.to_string()
                .ends_with("is a symbolic link to nothing, not a directory"),
            "{e}"
        );
    }

    /// Another run's `index.json`, made (and its first image added) after this run found
    /// none, stays: the empty one this run wrote meanwhile goes instead. A dangling link
    /// is no file, and is replaced as before.
    #[test]
    fn a_file_made_meanwhile_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let empty = || {
            let mut tmp = new_layout_file(dir.path()).unwrap();
            tmp.write_all(EMPTY_INDEX).unwrap();
            tmp
        };
        let tmp = empty();
        std::fs::write(&path, b"another run's entries").unwrap();
        place_new(tmp, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"another run's entries");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );

        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &path).unwrap();
        place_new(empty(), &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), EMPTY_INDEX);
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    /// `-o x/y/../../z/out`: the paths a run reports lead through `x/y`, whose entry is in
    /// `x`, no directory above where the path leads (`z/out`). Synced only above that, a
    /// power loss could take `x/y` back with the layout still there, and every path
    /// reported with it. (`x`, in the directory `z` is in, was synced.)
    #[test]
    fn the_directories_a_path_leaves_through_dot_dot_are_above_it_too() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(top.join("x/y")).unwrap();
        std::fs::create_dir_all(top.join("z/out")).unwrap();
        let dirs = above(&top.join("x/y/../../z/out"));
        for holds in ["z", "", "x"] {
            let holds = top.join(holds).components().collect::<PathBuf>();
            assert_eq!(
                dirs.iter().filter(|d| **d == holds).count(),
                1,
                "{holds:?} once: {dirs:?}"
            );
        }
        assert!(!dirs.contains(&top.join("z/out")), "{dirs:?}");
        assert!(!dirs.contains(&top.join("x/y")), "{dirs:?}");
    }

    /// Directories above a layout that have not changed for a while are not synced:
    /// their entries are on disk, and an fsync each up to `/` cost a disk flush apiece to
    /// every run of a script that runs dist once per object.
    #[test]
    fn only_the_directories_above_changed_lately_are_synced() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(top.join("x/y/out")).unwrap();
        let root = top.join("x/y/out");
        let ctime = |p: &Path| std::fs::metadata(p).unwrap().ctime() as u64;
        let newest = ctime(&top)
            .max(ctime(&top.join("x")))
            .max(ctime(&top.join("x/y")));
        let all = above_changed_after(&root, 0);
        for holds in ["x/y", "x", ""] {
            assert!(
                all.contains(&top.join(holds).components().collect()),
                "{all:?}"
            );
        }
        let none = above_changed_after(&root, newest + 1);
        for holds in ["x/y", "x", ""] {
            let holds: PathBuf = top.join(holds).components().collect();
            assert!(
                !none.contains(&holds),
                "{holds:?} unchanged yet synced: {none:?}"
            );
        }
        // Changed again (a name made in it): synced again.
        std::fs::write(top.join("x/new"), b"").unwrap();
        let after = above_changed_after(&root, ctime(&top.join("x")));
        assert!(after.contains(&top.join("x")), "{after:?}");
    }

    /// A layout's file that cannot be made is named, not the temporary file it goes
    /// through: a layout without its `index.json` on a read-only mount said "creating a
    /// temporary file in DIR: Read-only file system", which left the user to guess what
    /// dist wanted to write there.
    #[test]
    fn a_file_that_cannot_be_made_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // A directory gone (here: never made) refuses the temporary as a read-only one does.
        let path = dir.path().join("gone/index.json");
        let (what, named, _) = write_if_absent(&path, EMPTY_INDEX).unwrap_err();
        assert_eq!((what, named), ("writing", path));
    }
}
