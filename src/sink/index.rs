//! `index.json` of an OCI image layout: adding entries, safely against concurrent writers.
//!
//! The file is rewritten whole (temporary file, fsync, rename) under an exclusive `flock`
//! of the lock file `.dist-index.lock`: two runs adding images to one layout at once each
//! see the other's entries. The kernel drops the lock of a process that dies, so a killed
//! run leaves nothing that has to be judged stale. The holder removes the file when done;
//! a waiter that then gets the lock of the removed file finds another at the path, or none,
//! and starts again, so exactly one process holds the lock of the file at the path.
//! (`std::fs::File::lock` would do, but it needs Rust 1.89 and the crate supports 1.85.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::layout::{io_err, names_file, new_layout_file, new_layout_file_with_mode, try_flock};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::image::{entry_ref_name, Descriptor};

/// The lock file of `index.json`, in the layout's root.
pub(super) const INDEX_LOCK: &str = ".dist-index.lock";
/// How long to wait for another process to finish its `index.json` update.
pub(crate) const INDEX_LOCK_WAIT: Duration = Duration::from_secs(60);

/// How far this run's entry in `index.json` got: what a run stopped on its way there
/// can truly say ([`LayoutStore::index_entry`](super::layout::LayoutStore::index_entry)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IndexEntry {
    /// Not written (yet): `index.json` does not name the image for this run, and no
    /// other variant says why (naming it had not begun, or the new `index.json` was being
    /// written under the lock).
    #[default]
    Unwritten,
    /// Not written: the blobs stored were being made durable, which comes before naming
    /// them ([`LayoutStore::sync`](super::layout::LayoutStore::sync)).
    SyncingBlobs,
    /// Not written: another run held the lock of `index.json` at the last try, and this
    /// run waits for it.
    Locked,
    /// Being renamed into place: the rename has not returned (on a hung filesystem it may
    /// never), so `index.json` may name the image or not.
    Renaming,
    /// Renamed into place, so `index.json` names the image, but the sync of the layout's
    /// directory has not finished: a power loss may take the name back.
    Unsynced,
    /// In `index.json` and durable (or there already).
    Durable,
}

/// Renames the new `index.json` into place with the closure it is given, if the caller
/// still wants it: `false`, nothing renamed, if not. A caller a stop may end records
/// there, under its own lock, that the rename begins (and again once it returned), so
/// that a stop that lands then reads either no rename and none to come, or the rename
/// begun or done, never waiting on the rename itself.
pub(crate) type RenameIf<'a> = &'a dyn Fn(&mut dyn FnMut() -> Result<()>) -> Result<bool>;

/// What [`add_entry_unless`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Added {
    /// The entry is in `index.json` (or was already), in place of these entries.
    Replacing(Vec<Descriptor>),
    /// An entry of the same name for the digest asked about was there: it stays, the new
    /// entry is not added.
    Kept(Box<Descriptor>),
}

/// Adds `entry` to `root/index.json`, atomically and under the layout's lock. An entry
/// named by [`REF_NAME`](crate::image::REF_NAME) replaces every entry of that name (a tag names one image); an
/// unnamed entry is added unless an unnamed entry for the same digest is already there.
/// The rest of `index.json`, other tools' entries included, is kept as its text. An
/// `index.json` that already holds the entry is left as it is. Returns the entries
/// replaced. Blocks.
pub fn add_entry(root: &Path, entry: &Descriptor) -> Result<Vec<Descriptor>> {
    match add_entry_unless(root, entry, None)? {
        Added::Replacing(replaced) => Ok(replaced),
        Added::Kept(_) => unreachable!("nothing to keep was asked for"),
    }
}

/// [`add_entry`], unless an entry of `entry`'s name for the digest `keep` is there: that
/// one is left as it is ([`Added::Kept`]), the only entry of that name (others of the
/// name, as tools that append write a tag twice, go: readers take a tag's first entry).
/// Looked for under the lock too, so that an entry another run adds while this one waits
/// for the lock is seen: looked for only before, it was replaced. Blocks.
pub fn add_entry_unless(root: &Path, entry: &Descriptor, keep: Option<&Digest>) -> Result<Added> {
    let rename: RenameIf = &|rename| rename().map(|()| true);
    add_entry_within(root, entry, keep, INDEX_LOCK_WAIT, &|| true, rename)?
        .ok_or_else(|| still_locked(root))
}

/// [`add_entry_unless`] if no other run holds the layout's lock: `None`, nothing written,
/// if one does. For a caller that waits for the lock its own way, one a stop can end: a
/// wait inside a blocking call outlives the stop, and writes the entry when the lock comes
/// free, after the run said it wrote none. Such a caller's try can still be under way on
/// another thread when the stop comes: `wanted`, asked once the lock is taken, says
/// whether the caller still wants the entry (`None`, nothing written, if not). Blocks (a
/// few system calls, and the write).
pub fn try_add_entry_unless(
    root: &Path,
    entry: &Descriptor,
    keep: Option<&Digest>,
    wanted: &dyn Fn() -> bool,
) -> Result<Option<Added>> {
    let rename: RenameIf = &|rename| rename().map(|()| true);
    try_add_entry_renaming_if(root, entry, keep, wanted, rename)
}

/// [`try_add_entry_unless`], the new `index.json` renamed into place by `rename_if`: a
/// caller that records how far its entry got ([`LayoutStore`](super::layout::LayoutStore))
/// asks there once more whether it still wants it.
pub(crate) fn try_add_entry_renaming_if(
    root: &Path,
    entry: &Descriptor,
    keep: Option<&Digest>,
    wanted: &dyn Fn() -> bool,
    rename_if: RenameIf,
) -> Result<Option<Added>> {
    add_entry_within(root, entry, keep, Duration::ZERO, wanted, rename_if)
}

/// The error of a lock that another run held for all of [`INDEX_LOCK_WAIT`].
pub(crate) fn still_locked(root: &Path) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "{} is still locked by another process after {}",
            root.join(INDEX_LOCK).display(),
            crate::duration::Written(INDEX_LOCK_WAIT)
        ),
    )
}

/// [`add_entry_unless`], waiting up to `wait` for another run's lock: `None` if it is
/// still held, or if once it is taken `still_wanted` says the entry is no longer wanted,
/// or `rename_if` renames nothing.
fn add_entry_within(
    root: &Path,
    entry: &Descriptor,
    keep: Option<&Digest>,
    wait: Duration,
    still_wanted: &dyn Fn() -> bool,
    rename_if: RenameIf,
) -> Result<Option<Added>> {
    let path = root.join("index.json");
    let name = entry.ref_name();
    let new = || serde_json::to_value(entry).expect("descriptors serialise");
    // The entry to have under the name: the one kept, as it is, or the new one.
    let wanted = |index: &serde_json::Value| match keep.and_then(|d| entry_in(index, name, d)) {
        Some((kept, value)) => (Some(kept), value),
        None => (None, new()),
    };
    // Pulling an image again finds its entry in place: nothing to write, so no lock and no
    // new file, which a full disk or a read-only layout (a cache mounted so) refused, and
    // failed a pull that had nothing to do. `index.json` is only ever renamed into place,
    // so it reads whole without the lock.
    if let Ok(mut index) = read_index(&path) {
        let (kept, value) = wanted(&index);
        if merge_value(&mut index, name, value) == Ok(None) {
            return Ok(Some(match kept {
                Some(kept) => Added::Kept(Box::new(kept)),
                None => Added::Replacing(Vec::new()),
            }));
        }
    }
    let Some(_lock) = IndexLock::take(root, wait)? else {
        return Ok(None);
    };
    if !still_wanted() {
        return Ok(None);
    }
    let (mut index, text) = read_index_text(&path)?;
    let (kept, value) = wanted(&index);
    // The new entry in its fields' order (`mediaType`, `digest`, `size`, …), as other
    // tools write theirs: the value's keys come sorted.
    let fresh = match kept {
        Some(_) => serde_json::to_string(&value),
        None => serde_json::to_string(entry),
    };
    let fresh = (value.clone(), fresh.expect("descriptors serialise"));
    let merged = merge_value(&mut index, name, value)
        .map_err(|why| Error::invalid(format!("{}: {why}", path.display())))?;
    let Some(replaced) = merged else {
        return Ok(Some(match kept {
            Some(kept) => Added::Kept(Box::new(kept)),
            None => Added::Replacing(Vec::new()),
        }));
    };
    // Another tool's entries and fields stay as it wrote them; a new file, or one that
    // does not read as an object with a list, is written from the value.
    let manifests = index["manifests"].as_array().map(Vec::as_slice);
    let text = text
        .zip(manifests)
        .and_then(|(text, manifests)| super::index_text::rewrite(&text, manifests, &fresh))
        .unwrap_or_else(|| serde_json::to_vec(&index).expect("JSON values serialise"));
    // Named by the file it is for, as when its write fails: "creating a temporary file in
    // DIR" left the user to guess what dist meant to write there.
    let mut tmp = new_index_file(root, &path).map_err(|e| io_err("writing", &path, e))?;
    tmp.write_all(&text)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| io_err("writing", &path, e))?;
    let mut tmp = Some(tmp);
    let mut rename = || {
        let tmp = tmp.take().expect("renamed once");
        tmp.persist(&path)
            .map(drop)
            .map_err(|e| io_err("writing", &path, e.error))
    };
    if !rename_if(&mut rename)? {
        return Ok(None);
    }
    // Durable before the run says the image is in place, as the blobs it names are.
    super::layout::sync_dir(root).map_err(|e| io_err("syncing", root, e))?;
    if let Some(kept) = kept {
        return Ok(Some(Added::Kept(Box::new(kept))));
    }
    // An entry another tool wrote that is no descriptor is still replaced, unreported.
    Ok(Some(Added::Replacing(
        replaced
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
    )))
}

/// The temporary file the new `index.json` at `path` is written to, in `root`: with the
/// mode of the one it replaces, and its owner where this run may (root), as `sed -i` and an
/// editor's save keep them. A CI job under umask 077, or `sudo dist pull` into a user's
/// layout, made the index unreadable to the users and tools that read it before, while the
/// blobs beside it stayed as they were. A new file keeps the umask's mode; one that cannot
/// be changed keeps it too, which only narrows who reads it.
///
/// Made with the old mode (less the umask) rather than 0666: made 0644 and set to 0600
/// after, the index of a user who keeps it to themselves could be opened by anyone in
/// between, and read through that descriptor once written.
fn new_index_file(root: &Path, path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let old = std::fs::metadata(path).ok();
    let tmp = new_file_replacing(root, old.as_ref())?;
    if let Some(old) = &old {
        like_the_file_it_replaces(tmp.as_file(), old);
    }
    Ok(tmp)
}

/// A temporary file in `root`, made with the mode of `old` (the file it will replace), if
/// any, less the umask: never open to more than `old` is.
fn new_file_replacing(
    root: &Path,
    old: Option<&std::fs::Metadata>,
) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::MetadataExt;
    match old {
        Some(old) => new_layout_file_with_mode(root, old.mode() & 0o777),
        None => new_layout_file(root),
    }
}

/// Gives `tmp` the mode and, where this run may, the owner of `old` ([`new_index_file`]).
/// Its permission bits only: set-user-ID, set-group-ID (without group execute, a mark for
/// mandatory locking on older kernels) and sticky mean nothing good on a JSON file, and an
/// `index.json` linked to a set-user-ID program had a root run make a set-user-ID root file.
fn like_the_file_it_replaces(tmp: &std::fs::File, old: &std::fs::Metadata) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if let Ok(new) = tmp.metadata() {
        if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
            let _ = std::os::unix::fs::fchown(tmp, Some(old.uid()), Some(old.gid()));
        }
    }
    let _ = tmp.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o777));
}

/// The entry of `index` named `name` (or, for `None`, an unnamed one) whose digest is
/// `digest`, if there is one, and its JSON as written.
fn entry_in(
    index: &serde_json::Value,
    name: Option<&str>,
    digest: &Digest,
) -> Option<(Descriptor, serde_json::Value)> {
    let manifests = index.get("manifests")?.as_array()?;
    manifests.iter().find_map(|m| {
        let d = serde_json::from_value::<Descriptor>(m.clone()).ok()?;
        (d.digest == *digest && d.ref_name() == name).then(|| (d, m.clone()))
    })
}

/// `index.json` at `path` as JSON; an empty index when there is none.
fn read_index(path: &Path) -> Result<serde_json::Value> {
    read_index_text(path).map(|(index, _)| index)
}

/// [`read_index`], and the file's text (`None` when there is no file).
fn read_index_text(path: &Path) -> Result<(serde_json::Value, Option<Vec<u8>>)> {
    Ok(match super::layout_check::read_layout_json(path) {
        Ok(text) => (
            serde_json::from_slice(&text).map_err(|e| {
                Error::invalid(format!("{} is not valid JSON", path.display())).with_cause(e)
            })?,
            Some(text),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": crate::media::OCI_INDEX,
                "manifests": [],
            }),
            None,
        ),
        Err(e) => return Err(io_err("reading", path, e)),
    })
}

/// Puts the entry `value`, named `name`, into the `manifests` of an `index.json` value;
/// see [`add_entry`] for the rules. The entries it replaced, or `None` when the value is
/// unchanged.
fn merge_value(
    index: &mut serde_json::Value,
    name: Option<&str>,
    value: serde_json::Value,
) -> std::result::Result<Option<Vec<serde_json::Value>>, String> {
    let obj = index
        .as_object_mut()
        .ok_or("the index is not a JSON object")?;
    let manifests = obj
        .entry("manifests")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    // `null` is how Go writes an empty list.
    if manifests.is_null() {
        *manifests = serde_json::Value::Array(Vec::new());
    }
    let manifests = manifests
        .as_array_mut()
        .ok_or("\"manifests\" is not an array")?;
    let mut replaced = Vec::new();
    match name {
        Some(name) => {
            let mut named = manifests.iter().filter(|m| entry_ref_name(m) == Some(name));
            if named.next() == Some(&value) && named.next().is_none() {
                return Ok(None);
            }
            let (was, kept) = std::mem::take(manifests)
                .into_iter()
                .partition(|m| entry_ref_name(m) == Some(name));
            *manifests = kept;
            replaced = was;
        }
        None => {
            let digest = value.get("digest").and_then(|d| d.as_str());
            let present = manifests.iter().any(|m| {
                entry_ref_name(m).is_none() && m.get("digest").and_then(|d| d.as_str()) == digest
            });
            if present {
                return Ok(None);
            }
        }
    }
    manifests.push(value);
    Ok(Some(replaced))
}

/// Exclusive use of a layout's `index.json`, released on drop.
pub(crate) struct IndexLock {
    /// Holds the lock, which goes when it closes.
    _file: std::fs::File,
    path: PathBuf,
}

impl IndexLock {
    /// Takes the lock of the layout at `root`, waiting up to a minute for another holder.
    /// Blocks.
    #[cfg(test)]
    pub(crate) fn acquire(root: &Path) -> Result<IndexLock> {
        Self::take(root, INDEX_LOCK_WAIT)?.ok_or_else(|| still_locked(root))
    }

    /// Takes the lock of the layout at `root` if no one holds it; `None` if another
    /// does. Blocks (a few system calls).
    pub(crate) fn try_acquire(root: &Path) -> Result<Option<IndexLock>> {
        Self::take(root, Duration::ZERO)
    }

    /// Takes the lock, waiting up to `wait` for another holder: `None` if it is still held.
    fn take(root: &Path, wait: Duration) -> Result<Option<IndexLock>> {
        Self::take_with(root, wait, |file| try_flock(file, libc::LOCK_EX))
    }

    /// [`Self::take`], locking with `lock` (`Ok(false)`: another holds it), which tests
    /// make refuse as a filesystem without locks does.
    fn take_with(
        root: &Path,
        wait: Duration,
        lock: impl Fn(&std::fs::File) -> std::io::Result<bool>,
    ) -> Result<Option<IndexLock>> {
        use std::os::unix::fs::OpenOptionsExt;

        let path = root.join(INDEX_LOCK);
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            let open = |create: bool| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(create)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&path)
            };
            // Whether this run made the file, which is then its own to remove when the
            // lock cannot be had.
            let (opened, made) = match open(true) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (open(false), false),
                opened => (opened, true),
            };
            let file = match opened {
                Ok(file) => file,
                // Its holder removed it between the two opens.
                Err(e) if !made && e.kind() == std::io::ErrorKind::NotFound => continue,
                // A symbolic link under the lock's name was planted (a layout in a shared
                // directory): following it created its target wherever it pointed, as
                // whoever runs dist (often root), and the lock of that file never passed
                // for the lock of the path, so the run spun here for ever. It goes, as a
                // planted partial download's link goes, and the lock is made afresh. A
                // socket planted there does not open (`ENXIO`): every update failed,
                // saying "No such device or address". It goes, as a FIFO there goes.
                Err(e) => {
                    let link = e.raw_os_error() == Some(libc::ELOOP);
                    match std::fs::symlink_metadata(&path) {
                        Ok(there) if planted(&there) => remove_planted(&path, &there)?,
                        // The link went meanwhile, and another run's lock file may be
                        // there now: looked at again.
                        Ok(there) if link && there.is_file() => {}
                        Err(gone) if link && gone.kind() == std::io::ErrorKind::NotFound => {}
                        _ => return Err(io_err("creating index.json's lock", &path, e)),
                    }
                    continue;
                }
            };
            // A FIFO planted there (`mkfifo`, in a shared directory) opens and locks, but
            // is no file the lock can count for (`names_file`): the run spun here, at
            // full speed, until stopped. It goes, as a link there goes.
            if let Some(fifo) = file.metadata().ok().filter(planted) {
                drop(file);
                remove_planted(&path, &fifo)?;
                continue;
            }
            let locked = match lock(&file) {
                Ok(locked) => locked,
                // A filesystem without locks (NFS whose lock service is not running says
                // `ENOLCK`): no run could keep another's entries there, so none is
                // written. The file made for the lock went on to be a stray for good.
                Err(e) => {
                    if made && names_file(&path, &file) {
                        let _ = std::fs::remove_file(&path);
                    }
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!(
                            "locking {} (flock): this filesystem takes no locks, and \
                             index.json is not updated without one (the blobs stored stay)",
                            path.display()
                        ),
                    )
                    .with_cause(e));
                }
            };
            if locked {
                // The holder before may have removed the file after this one opened it:
                // the lock counts only if it is the lock of the file at the path now.
                if names_file(&path, &file) {
                    return Ok(Some(IndexLock { _file: file, path }));
                }
                continue;
            }
            drop(file);
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// Whether what is under the index lock's name is something planted there (a FIFO, a
/// socket, a device) rather than a lock file: no run makes anything but a regular file
/// there, and a directory is no file to remove.
fn planted(m: &std::fs::Metadata) -> bool {
    !m.is_file() && !m.is_dir()
}

/// Removes what was [`planted`] at the index lock's `path` and judged so, `judged` (its
/// metadata), saying so: only while the path still names that very file. Another run may
/// have removed it meanwhile, then made the lock file there and locked it; removing
/// whatever was at the path then unlinked that run's lock, and the next run to come took
/// a lock of its own: two wrote `index.json` at once, and one's entries were lost. Gone
/// or replaced meanwhile, it is left to the caller's next look.
fn remove_planted(path: &Path, judged: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(path) {
        Ok(now)
            if now.dev() == judged.dev()
                && now.ino() == judged.ino()
                // An inode number is reused: the lock file made since may have the one
                // the planted file had, but never its type.
                && now.file_type() == judged.file_type() => {}
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("reading", path, e)),
    }
    if judged.is_symlink() {
        tracing::warn!(path = %path.display(), "a symbolic link under the index lock's name; removed");
    } else {
        tracing::warn!(path = %path.display(), "not a regular file under the index lock's name; removed");
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|e| io_err("removing", path, e)),
    }
}

impl Drop for IndexLock {
    fn drop(&mut self) {
        // Removed while still locked (`_file` closes after this, dropping the lock), so no
        // waiter can take the lock of a file at the path that is about to go.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Algorithm, Digest};
    use crate::image::REF_NAME;

    /// The wait is said as the durations of other messages are ("1m"), not "60s".
    #[test]
    fn a_lock_held_too_long_says_the_wait_in_minutes() {
        let e = still_locked(Path::new("/l"));
        assert_eq!(
            e.to_string(),
            "/l/.dist-index.lock is still locked by another process after 1m"
        );
    }

    fn entry(data: &[u8], name: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(
            crate::media::OCI_MANIFEST,
            Digest::of(Algorithm::Sha256, data),
            data.len() as u64,
        );
        if let Some(n) = name {
            d.annotations.insert(REF_NAME.into(), n.into());
        }
        d
    }

    fn names(root: &Path) -> Vec<(Option<String>, String)> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
        v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["annotations"][REF_NAME].as_str().map(str::to_string),
                    m["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The library's own try, as it was before a pull's stop needed more: the entry is
    /// written if still wanted once the lock is taken, and not otherwise.
    #[test]
    fn a_try_writes_the_entry_only_if_it_is_still_wanted() {
        let dir = tempfile::tempdir().unwrap();
        let unwanted = try_add_entry_unless(dir.path(), &entry(b"a", Some("v1")), None, &|| false);
        assert_eq!(unwanted.unwrap(), None);
        assert!(!dir.path().join("index.json").exists());
        let wanted = try_add_entry_unless(dir.path(), &entry(b"a", Some("v1")), None, &|| true);
        assert_eq!(wanted.unwrap(), Some(Added::Replacing(Vec::new())));
        let digest = Digest::of(Algorithm::Sha256, b"a").to_string();
        assert_eq!(names(dir.path()), [(Some("v1".to_string()), digest)]);
    }

    #[test]
    fn index_entries_are_added_and_replaced_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::sink::layout::LayoutStore::open(dir.path()).unwrap();
        store.add_to_index(&entry(b"a", Some("v1"))).unwrap();
        add_entry(dir.path(), &entry(b"b", Some("v2"))).unwrap();
        let replaced = add_entry(dir.path(), &entry(b"c", Some("v1"))).unwrap();
        assert_eq!(replaced, vec![entry(b"a", Some("v1"))]);
        add_entry(dir.path(), &entry(b"d", None)).unwrap();
        add_entry(dir.path(), &entry(b"d", None)).unwrap();
        let d = |x: &[u8]| Digest::of(Algorithm::Sha256, x).to_string();
        assert_eq!(
            names(dir.path()),
            vec![
                (Some("v2".into()), d(b"b")),
                (Some("v1".into()), d(b"c")),
                (None, d(b"d")),
            ]
        );
        assert!(!dir.path().join(INDEX_LOCK).exists());
        let mut bad = serde_json::json!({"manifests": 3});
        let a = serde_json::to_value(entry(b"a", None)).unwrap();
        assert!(merge_value(&mut bad, None, a).is_err());
        std::fs::write(dir.path().join("index.json"), b"{").unwrap();
        assert!(add_entry(dir.path(), &entry(b"e", None)).is_err());
    }

    /// A rewritten `index.json` keeps the mode of the one it replaces, whatever the umask
    /// of the run that rewrote it: under a CI job's umask 077 it became 0600.
    #[test]
    fn a_rewritten_index_keeps_the_mode_of_the_one_it_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        add_entry(dir.path(), &entry(b"a", Some("v1"))).unwrap();
        for kept in [0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(kept)).unwrap();
            add_entry(dir.path(), &entry(&[kept as u8], Some("v2"))).unwrap();
            assert_eq!(mode(&path), kept, "{:o} became {:o}", kept, mode(&path));
        }
        assert_eq!(names(dir.path()).len(), 2);
        // Its permission bits, not set-user-ID, set-group-ID or sticky.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o7755)).unwrap();
        add_entry(dir.path(), &entry(b"s", Some("v3"))).unwrap();
        assert_eq!(mode(&path), 0o755, "became {:o}", mode(&path));
    }

    /// Run as root (`sudo dist pull` into a user's layout), a rewritten `index.json` stays
    /// its owner's, with its mode; as anyone else, the owner this run cannot give is
    /// skipped, not a failure.
    #[test]
    fn a_rewritten_index_keeps_its_owner_where_the_run_may_give_it() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        add_entry(dir.path(), &entry(b"a", Some("v1"))).unwrap();
        // SAFETY: geteuid reads a number; it touches no memory.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            std::os::unix::fs::chown(&path, Some(4242), Some(4243)).unwrap();
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::metadata(&path).unwrap();
        add_entry(dir.path(), &entry(b"b", Some("v2"))).unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_ne!(before.ino(), after.ino(), "rewritten, not edited in place");
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        assert_eq!(after.mode() & 0o7777, 0o640);
        assert_eq!(names(dir.path()).len(), 2);
    }

    /// The file a 0600 `index.json`'s replacement is written to is 0600 from the start:
    /// made 0644 (under umask 022) and set after, anyone could open it in between, and
    /// read the new index through that descriptor once written.
    #[test]
    fn a_private_index_s_replacement_is_never_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let old = std::fs::metadata(&path).unwrap();
        let tmp = new_file_replacing(dir.path(), Some(&old)).unwrap();
        let made = tmp.as_file().metadata().unwrap().permissions().mode() & 0o7777;
        assert_eq!(made & !0o600, 0, "made {made:o}");
    }

    /// Entries another tool wrote are kept as they were, even those dist cannot read, and
    /// `"manifests": null` (Go's empty list) takes entries as an empty list does: it
    /// failed every write to the layout.
    #[test]
    fn entries_dist_cannot_read_are_kept_and_null_is_no_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        std::fs::write(&path, r#"{"schemaVersion":2,"manifests":null}"#).unwrap();
        crate::sink::layout::LayoutStore::open(dir.path()).unwrap();
        add_entry(dir.path(), &entry(b"a", Some("v1"))).unwrap();
        let d = |x: &[u8]| Digest::of(Algorithm::Sha256, x).to_string();
        assert_eq!(names(dir.path()), vec![(Some("v1".into()), d(b"a"))]);

        let bad = serde_json::json!({"mediaType": crate::media::OCI_MANIFEST,
            "digest": "sha256:ABC", "size": -1, "annotations": {REF_NAME: "bad"}});
        let text = serde_json::json!({"schemaVersion": 2, "manifests": [bad, 7]});
        std::fs::write(&path, text.to_string()).unwrap();
        add_entry(dir.path(), &entry(b"b", Some("v2"))).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let manifests = v["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 3, "{v}");
        assert_eq!(manifests[0], bad);
        assert_eq!(manifests[1], 7);
    }

    /// A tag listed twice (as tools that append write it) is one entry once dist writes
    /// it, when the entry kept for it is the second: left as it was, readers took the
    /// first, another image than the one the pull said it kept.
    #[test]
    fn a_tag_listed_twice_is_written_back_as_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let value = |d: &Descriptor| serde_json::to_value(d).unwrap();
        let (old, whole) = (entry(b"old", Some("v1")), entry(b"whole", Some("v1")));
        let text =
            serde_json::json!({"schemaVersion": 2, "manifests": [value(&old), value(&whole)]});
        std::fs::write(&path, text.to_string()).unwrap();
        let added =
            add_entry_unless(dir.path(), &entry(b"one", Some("v1")), Some(&whole.digest)).unwrap();
        assert_eq!(added, Added::Kept(Box::new(whole.clone())));
        let d = |x: &[u8]| Digest::of(Algorithm::Sha256, x).to_string();
        assert_eq!(names(dir.path()), vec![(Some("v1".into()), d(b"whole"))]);

        let text =
            serde_json::json!({"schemaVersion": 2, "manifests": [value(&old), value(&whole)]});
        std::fs::write(&path, text.to_string()).unwrap();
        let replaced = add_entry(dir.path(), &whole).unwrap();
        assert_eq!(replaced, vec![old, whole]);
        assert_eq!(names(dir.path()), vec![(Some("v1".into()), d(b"whole"))]);
    }

    /// The entry kept for a tag listed twice is the first of the name for its digest, as
    /// readers take it, with its own text: a number past 64 bits in a field dist does not
    /// know rounds to the same float in its copy further down, and the copy's text, found
    /// first after the entries kept before it, was written instead (`…891` for `…890`).
    #[test]
    fn the_entry_kept_for_a_tag_is_the_first_one_s_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let text = |d: &Descriptor, big: &str| {
            let mut v = serde_json::to_string(d).unwrap();
            v.insert_str(v.len() - 1, &format!(r#","x":{big}"#));
            v
        };
        let (kept, other) = (entry(b"kept", Some("v1")), entry(b"other", Some("v2")));
        let first = text(&kept, "123456789012345678901234567890");
        let copy = text(&kept, "123456789012345678901234567891");
        let other = serde_json::to_string(&other).unwrap();
        std::fs::write(
            &path,
            format!(r#"{{"schemaVersion":2,"manifests":[{first},{other},{copy}]}}"#),
        )
        .unwrap();
        let added =
            add_entry_unless(dir.path(), &entry(b"new", Some("v1")), Some(&kept.digest)).unwrap();
        assert!(matches!(added, Added::Kept(_)), "{added:?}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(r#"{{"schemaVersion":2,"manifests":[{other},{first}]}}"#)
        );
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        eight_writers_add_ten_each(dir.path());
    }

    fn eight_writers_add_ten_each(root: &Path) {
        std::thread::scope(|s| {
            for t in 0..8 {
                s.spawn(move || {
                    for i in 0..10 {
                        let name = format!("t{t}-{i}");
                        add_entry(root, &entry(name.as_bytes(), Some(&name))).unwrap();
                    }
                });
            }
        });
        assert_eq!(names(root).len(), 80);
    }

    /// A lock file left by a killed run holds no lock: it is used as it is, by many
    /// writers at once without losing an entry (judging such a file stale once let two of
    /// them remove it and each hold a lock of its own).
    #[test]
    fn a_killed_run_s_lock_file_is_used_by_concurrent_writers() {
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(INDEX_LOCK), "2147483647").unwrap();
            eight_writers_add_ten_each(dir.path());
            assert!(!dir.path().join(INDEX_LOCK).exists());
        }
    }

    /// A symbolic link planted under the lock's name is neither followed (which created
    /// its target, wherever it pointed) nor taken for the lock (which spun for ever): it is
    /// removed, and the entry added.
    #[test]
    fn a_symlink_under_the_lock_s_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join(INDEX_LOCK)).unwrap();
        let root = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(add_entry(&root, &entry(b"a", Some("v1")))));
        let added = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("add_entry never returned");
        added.unwrap();
        assert_eq!(names(dir.path()).len(), 1);
        assert!(!target.exists(), "the link's target was created");
        assert!(std::fs::symlink_metadata(dir.path().join(INDEX_LOCK)).is_err());
    }

    /// A new `index.json` whose temporary file cannot be made is named, as one that cannot
    /// be written is: "creating a temporary file in DIR" left the user to guess what dist
    /// meant to write there. Here the temporary file's name is too long for the system
    /// while the index's and the lock's are not (a full inode table, or no file
    /// descriptor left, refuses it in the field).
    #[test]
    fn an_index_whose_new_file_cannot_be_made_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // The longest path the lock's name fits under: `.dist-index.lock` is shorter than
        // any temporary file's name (`.dist-tmp-<run>~` and six characters more).
        let room = libc::PATH_MAX as usize - 1 - "/.dist-index.lock".len();
        let mut root = dir.path().to_path_buf();
        while root.as_os_str().len() < room {
            let left = room - root.as_os_str().len() - 1;
            root.push("d".repeat(left.clamp(1, 200)));
        }
        assert_eq!(root.as_os_str().len(), room);
        std::fs::create_dir_all(&root).unwrap();
        let e = add_entry(&root, &entry(b"a", Some("v1"))).unwrap_err();
        // The message alone: the whole line is cut short at a few KiB, the path being 4.
        let named = format!("writing {}", root.join("index.json").display());
        assert_eq!(e.message(), named);
    }

    /// A FIFO planted under the lock's name is not taken for the lock, which spun for
    /// ever (it opens and locks, but is no regular file): it is removed, and the entry
    /// added.
    #[test]
    fn a_fifo_under_the_lock_s_name_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(INDEX_LOCK);
        let c = std::ffi::CString::new(lock.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path this test owns.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let root = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(add_entry(&root, &entry(b"a", Some("v1")))));
        let added = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("add_entry never returned");
        added.unwrap();
        assert_eq!(names(dir.path()).len(), 1);
        assert!(std::fs::symlink_metadata(&lock).is_err());
    }

    /// A socket planted under the lock's name goes as a FIFO there does, and the entry is
    /// added: it cannot even be opened (`ENXIO`), and every update of the index failed
    /// with "creating index.json's lock …: No such device or address", which named
    /// neither the socket nor what to do about it.
    #[test]
    fn a_socket_under_the_lock_s_name_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(INDEX_LOCK);
        let _listening = std::os::unix::net::UnixListener::bind(&lock).unwrap();
        add_entry(dir.path(), &entry(b"a", Some("v1"))).unwrap();
        assert_eq!(names(dir.path()).len(), 1);
        assert!(std::fs::symlink_metadata(&lock).is_err());
    }

    /// What was judged planted under the lock's name and replaced before its removal by
    /// the lock file of another run, which holds it (it removed the planted file first),
    /// stays: whatever was at the path was removed, that run's lock with it, and a third
    /// run took a lock of its own while that one still wrote `index.json`. Gone meanwhile,
    /// it is no error either: two runs removing the same socket, one of them failed.
    #[test]
    fn a_lock_file_made_where_a_planted_one_was_judged_stays() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join(INDEX_LOCK);
        let listening = std::os::unix::net::UnixListener::bind(&lock).unwrap();
        let judged = std::fs::symlink_metadata(&lock).unwrap();
        assert!(planted(&judged));
        std::fs::remove_file(&lock).unwrap();
        drop(listening);
        let held = IndexLock::try_acquire(dir.path()).unwrap().unwrap();
        remove_planted(&lock, &judged).unwrap();
        assert!(
            std::fs::symlink_metadata(&lock).is_ok_and(|m| m.is_file()),
            "the other run's lock file went"
        );
        assert!(IndexLock::try_acquire(dir.path()).unwrap().is_none());
        drop(held);
        assert!(std::fs::symlink_metadata(&lock).is_err());
        remove_planted(&lock, &judged).unwrap();
    }

    /// A filesystem that refuses `flock` (NFS whose lock service is not running answers
    /// `ENOLCK`) fails the update saying so, and leaves no lock file behind: the file this
    /// run made for the lock stayed, and one made by another stays as it was.
    #[test]
    fn a_filesystem_refusing_flock_fails_clearly_and_leaves_no_lock_file() {
        let refuse = |_: &std::fs::File| Err(std::io::Error::from_raw_os_error(libc::ENOLCK));
        let dir = tempfile::tempdir().unwrap();
        let err = IndexLock::take_with(dir.path(), Duration::ZERO, refuse)
            .err()
            .expect("a lock that cannot be taken is an error");
        assert!(
            !dir.path().join(INDEX_LOCK).exists(),
            "a stray lock file was left"
        );
        assert_eq!(err.kind(), ErrorKind::Io);
        let text = err.to_string();
        assert!(
            text.contains(&dir.path().join(INDEX_LOCK).display().to_string()),
            "{text}"
        );
        assert!(
            text.contains("flock") && text.contains("No locks available"),
            "{text}"
        );
        assert!(text.contains("index.json is not updated"), "{text}");

        std::fs::write(dir.path().join(INDEX_LOCK), "").unwrap();
        assert!(IndexLock::take_with(dir.path(), Duration::ZERO, refuse).is_err());
        assert!(
            dir.path().join(INDEX_LOCK).exists(),
            "another's lock file was removed"
        );
    }

    /// A lock that cannot be made (a layout on a read-only mount that a pull by digest
    /// must name its image in) says what it is for: "creating DIR/.dist-index.lock" left
    /// the user of a pull that fetched nothing to wonder what dist was making there.
    #[test]
    fn a_lock_that_cannot_be_made_says_it_is_index_json_s() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(INDEX_LOCK)).unwrap();
        let err = add_entry(dir.path(), &entry(b"a", Some("v1"))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("creating index.json's lock"), "{text}");
        assert!(text.contains(INDEX_LOCK), "{text}");
        assert!(!dir.path().join("index.json").exists());
    }

    /// A lock held elsewhere is waited for, not broken, however old its file.
    #[test]
    fn a_held_lock_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let held = IndexLock::acquire(dir.path()).unwrap();
        let root = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || add_entry(&root, &entry(b"a", Some("v1"))));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!waiter.is_finished(), "the lock was not respected");
        assert!(!dir.path().join("index.json").exists());
        drop(held);
        waiter.join().unwrap().unwrap();
        assert_eq!(names(dir.path()).len(), 1);
    }
}
