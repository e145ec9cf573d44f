//! Removing what killed or failed runs left in a layout: temporary files of processes
//! that are gone, partial downloads nobody carried on, lock files nobody holds (the blobs'
//! ingest locks, `index.json`'s).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::{fs_magic, RAMFS_MAGIC, TMPFS_MAGIC};
use super::locks::{known_unheld, remove_unheld_lock, take_unheld, Unheld};
use super::temp_blob::{park, partial_in};
use super::{LOCK_PREFIX, PARTIAL_AGE, PARTIAL_PREFIX, TMP_PREFIX};
use crate::sink::index::INDEX_LOCK;

/// A temporary file of another machine sharing the directory is left alone this long.
const FOREIGN_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);
/// A temporary file of another host on a local disk, which its lock judges, is left alone
/// this long after it was last changed ([`since_changed`]). A run of this version never
/// uses a file before its lock is had, nor gives a claim its name before ([`take_unheld`]
/// keeps the two apart), and needs none: a run of an earlier version sharing the disk
/// renamed a partial download to its name, then locked it.
pub(super) const FOREIGN_UNLOCKED_GRACE: Duration = Duration::from_secs(2);

/// Removes the stale temporary files and partial downloads in `dir`; returns the paths of
/// the partial downloads kept.
pub(super) fn remove_stale_in(dir: &Path) -> Vec<PathBuf> {
    let mut kept = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return kept;
    };
    let mut locks_are_local = None;
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
        // `index.json`'s too: a run killed once its entry was in place left it, and the
        // same run again, finding the entry there, takes no lock to remove it.
        if name.starts_with(LOCK_PREFIX) || name == INDEX_LOCK {
            remove_unheld_lock(&entry.path());
            continue;
        }
        if name.starts_with(PARTIAL_PREFIX) {
            let age = crate::sink::owner::age(&entry.path());
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
        let age = crate::sink::owner::age(&entry.path());
        // The name alone misjudges a run in another PID namespace under the same host
        // name (containers of one pod, or run with the host's network, sharing a
        // volume): its PID means nothing here, and its live download was taken for a
        // dead run's, turned into a partial download under it, and its commit failed.
        // Its lock says it lives.
        // Another host's file on a local disk (a CI cache restored on the next job's
        // runner, a volume moved to another node) was written by this kernel or by a run
        // killed elsewhere: its lock says which. Judged by age alone, a killed run's
        // download was neither carried on nor removed for a day, and a cache restored with
        // fresh mtimes kept it for good. One an earlier version's run just renamed may not
        // be under its lock yet: that run takes it right after.
        // No such grace for this host's names: a run of this version locks a file it made
        // before using it, and makes another if the file was taken before it could
        // (`new_named_file`); it claims a partial download under its lock before giving it
        // its name (`resume_within`); and a file is taken here only under its lock, so
        // never once its run holds it.
        let gone = crate::sink::owner::is_gone(owner, age, FOREIGN_TEMP_AGE)
            || (crate::sink::owner::is_foreign(owner)
                && since_changed(&entry).is_some_and(|a| a > FOREIGN_UNLOCKED_GRACE)
                && *locks_are_local.get_or_insert_with(|| locks_are_this_kernels(dir))
                && known_unheld(&entry.path()));
        if !gone {
            continue;
        }
        // Kept (a lock, or nothing) until the file is taken.
        let _taking = match take_unheld(&entry.path()) {
            Unheld::Held => continue,
            taking @ (Unheld::ByName | Unheld::Taken { .. }) => taking,
        };
        #[cfg(test)]
        super::locks::between(super::locks::Step::Taking, &entry.path());
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

/// How long ago this kernel last changed the file at `entry` (its ctime): made, written,
/// renamed, or its times set. Not its mtime, which a rename keeps: a partial download a
/// run of an earlier version of another host name claimed (renamed to its temporary name,
/// then locked) kept its mtime of hours ago, and in between its claim was taken for a
/// killed run's file and renamed back under it, and its commit failed. Nor can a cache restored with mtimes of
/// another clock set it, in the past or the future.
fn since_changed(entry: &std::fs::DirEntry) -> Option<Duration> {
    use std::os::unix::fs::MetadataExt;
    let meta = entry.metadata().ok()?;
    let changed = std::time::UNIX_EPOCH
        + Duration::new(
            u64::try_from(meta.ctime()).ok()?,
            u32::try_from(meta.ctime_nsec()).ok()?,
        );
    changed.elapsed().ok()
}

/// Whether every process that can write into `dir` takes its `flock`s from this kernel: a
/// local disk's filesystem, not a network or cluster one (NFS, SMB, FUSE, Ceph, ...), on
/// which another machine's run may write under a lock this kernel does not see, or under
/// none (`nolock` mounts take `flock` locally). Only filesystems known to be local count.
/// One this machine exports is written by other machines too, whose locks reach this
/// kernel as record locks: [`known_unheld`] asks for those as well.
pub(super) fn locks_are_this_kernels(dir: &Path) -> bool {
    // Superblock magic numbers (statfs(2), linux/magic.h).
    const LOCAL: [u32; 9] = [
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        TMPFS_MAGIC,
        0x794C_7630, // overlayfs (a container's own filesystem)
        0x2FC1_2FC1, // zfs
        0xF2F5_2010, // f2fs
        0xCA45_1A4E, // bcachefs
        RAMFS_MAGIC,
    ];
    fs_magic(dir).is_some_and(|magic| LOCAL.contains(&magic))
}
