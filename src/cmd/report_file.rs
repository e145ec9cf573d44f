//! The `--report FILE` of the worker and `dist pull`: created only where truncating it
//! destroys nothing the run itself needs, emptied only once the run is sure to start, and
//! written by one run at a time.
//!
//! Emptying the report truncates it. Pointed by a slip at the layout being written
//! (`--report DIR/index.json`), at the input being read (`--report digests.txt <
//! digests.txt`) or at the file stdout already writes to, that truncation would empty the
//! layout's index, make the batch read nothing and report success, or interleave two copies
//! of every line. Those are refused before anything is created or fetched, as GNU tools
//! refuse "input file is output file".
//!
//! The file is opened at once, so that a path that cannot be written fails before anything
//! is fetched, but emptied only when the batch starts ([`Opened::begin`]): a run that fails
//! its registry check (a mistyped locator, the registry down, credentials refused) or is
//! stopped before it, destroyed the previous run's report, which was often what would tell
//! why. Two runs writing one report (shards given the same `--report`) each wrote from its
//! own offset over the other's lines; the report is locked while a run holds it, and a
//! second run is refused.
//!
//! A FIFO is opened as `> fifo` opens one in a shell: once its reader has opened it. The
//! run waits for that under its stop ([`super::first_steps::open_report`]): a reader that
//! never came held the run for ever, and a signal meanwhile killed it.

use std::fs::{File, Metadata, OpenOptions};
use std::io::BufWriter;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::EXIT_USAGE;

/// What the run already uses that the report must not be.
#[derive(Default)]
pub struct InUse<'a> {
    /// The OCI layout written into (`-o DIR`), once opened.
    pub store: Option<&'a Path>,
    /// Whether objects are read from stdin.
    pub reads_stdin: bool,
}

/// A report opened and locked for this run, its previous content still in place until
/// [`Opened::begin`]. Dropped without it (the run ended before its batch), a report this run
/// created is removed again.
pub struct Opened {
    /// `None` once begun.
    file: Option<File>,
    path: PathBuf,
    /// The file's path if this run created it: only then is it this run's to remove. The
    /// file a dangling link led to, not the link, when it was created through one.
    created: Option<PathBuf>,
}

impl Opened {
    /// The report's path as given, for messages about it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Empties the report for this run's lines: the batch starts. `Err` is the exit
    /// status, the reason already said.
    pub fn begin(mut self) -> Result<BufWriter<WholeLines>, u8> {
        let file = self.file.take().expect("begun once");
        // A pipe or a device (`--report >(jq …)`, `/dev/null`) holds nothing to empty.
        let emptied = match file.metadata() {
            Ok(m) if m.is_file() => file.set_len(0),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match emptied {
            Ok(()) => Ok(BufWriter::new(WholeLines::new(file))),
            Err(e) => {
                say!("dist: cannot empty report {}: {e}", self.path.display());
                Err(EXIT_USAGE)
            }
        }
    }
}

impl Drop for Opened {
    /// A run that never started its batch leaves no report it created behind, as it leaves
    /// no empty layout; only the file it created, not one put under its name since.
    fn drop(&mut self) {
        let (Some(file), Some(created)) = (self.file.take(), &self.created) else {
            return;
        };
        let ours = file.metadata().ok();
        let there = std::fs::symlink_metadata(created).ok();
        if let (Some(ours), Some(there)) = (ours, there) {
            if same_inode(&ours, &there) {
                let _ = std::fs::remove_file(created);
            }
        }
    }
}

/// Opens (creating it if need be) and locks the `--report` file, if one was asked for,
/// leaving what it holds until [`Opened::begin`]; a FIFO is waited for until its reader
/// opens it, and a file created here has its name synced into its directory. Blocks.
/// `Err` is the exit status, the reason already said.
pub fn open(path: Option<&Path>, in_use: &InUse) -> Result<Option<Opened>, u8> {
    let Some(path) = path else { return Ok(None) };
    if let Some(why) = clash(path, in_use) {
        say!("dist: --report {}: {why}", path.display());
        return Err(EXIT_USAGE);
    }
    let opened = create_or_open(path).and_then(|(file, created)| locked(path, file, created));
    let (file, created) = match opened {
        Ok(Some(opened)) => opened,
        Ok(None) => {
            say!(
                "dist: --report {}: another run is writing this report, and two would write \
                 over each other's lines; give each run (each --shard) a report of its own, \
                 such as report-K.jsonl",
                path.display()
            );
            // Not removed even if created here: the run holding it uses it.
            return Err(EXIT_USAGE);
        }
        Err(e) => {
            say!("dist: cannot create report {}: {e}", path.display());
            return Err(EXIT_USAGE);
        }
    };
    let opened = Opened {
        file: Some(file),
        path: path.to_path_buf(),
        created,
    };
    // A report this run created is named durably, once, as its lines are at the end
    // ([`sync`]): the file's data synced alone, a power loss could leave no report at all
    // where the job's record belongs. Here, off the runtime and under the run's stop
    // ([`super::first_steps::open_report`]), not as the batch starts: on the runtime's
    // thread, a disk slow to answer held off `--timeout` and signals. Failed, the run stops
    // here, as for a report that cannot be created, and the file goes with `opened`.
    if let Some(created) = opened.created.as_deref() {
        let dir = parent_dir(created);
        if let Err(e) = dist::sink::layout::sync_dir(dir) {
            let (path, dir) = (path.display(), dir.display());
            say!("dist: cannot create report {path}: syncing {dir}: {e}");
            return Err(EXIT_USAGE);
        }
    }
    Ok(Some(opened))
}

/// Locks `file`, opened from `path`, and makes sure `path` still names it once locked;
/// `None` when another run holds the lock. A run that created the report and could not
/// start removes it as it ends (`Opened`'s drop), and lets go of the lock only then: a run
/// that opened the file just before saw it free a moment later, and would have written
/// its lines into a file no name reaches any more. It opens the name again instead.
/// `created` (the path this run created, to remove if it never begins) is carried through.
fn locked(
    path: &Path,
    mut file: File,
    mut created: Option<PathBuf>,
) -> std::io::Result<Option<(File, Option<PathBuf>)>> {
    // Each round follows a report removed by another run as this one opened it; the
    // bound is only there so that a name replaced over and over cannot hold a run for ever.
    for _ in 0..8 {
        if locked_by_another(&file) {
            return Ok(None);
        }
        let ours = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(there) if same_inode(&ours, &there) => return Ok(Some((file, created))),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        (file, created) = create_or_open(path)?;
    }
    Err(std::io::Error::other(
        "the file was removed or replaced again and again while it was opened",
    ))
}

/// The report opened for writing, without truncating it, and the path of the file if this
/// run created it.
fn create_or_open(path: &Path) -> std::io::Result<(File, Option<PathBuf>)> {
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => Ok((file, Some(path.to_path_buf()))),
        // Also a link to a file not there yet, which create_new does not follow. Created
        // through it, the file is this run's as well, under the name the link leads to:
        // a run that never began left it behind, empty, where the link points.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            use std::os::unix::fs::FileTypeExt;
            let target = std::fs::metadata(path);
            if target.as_ref().is_ok_and(|m| m.file_type().is_fifo()) {
                // Opened as `> fifo` opens it: once its reader has.
                return Ok((OpenOptions::new().write(true).open(path)?, None));
            }
            let dangling = target.is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            let created = if dangling {
                std::fs::canonicalize(path).ok()
            } else {
                None
            };
            Ok((file, created))
        }
        Err(e) => Err(e),
    }
}

/// Takes an exclusive `flock` on a regular file; whether another run holds one. Where no
/// lock can be had (a filesystem without them), the run goes on unlocked, as before.
fn locked_by_another(file: &File) -> bool {
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    // SAFETY: flock on a descriptor this `File` owns and keeps open; the lock goes with it.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    taken != 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

/// Makes the report's lines durable, as a batch that ran to its end makes the blobs it
/// stored: the report is the record a finished job leaves (the Indexed Job's
/// `report-$JOB_COMPLETION_INDEX.jsonl`), and a power loss soon after it exited could
/// otherwise leave it empty, since creating it truncated it. Once per run, not per line.
/// A pipe or a device (`--report >(jq …)`, `/dev/null`) holds nothing to sync, and its
/// fsync fails with `EINVAL`.
pub fn sync(report: &WholeLines) -> std::io::Result<()> {
    let report = &report.file;
    if report.metadata()?.is_file() {
        report.sync_data()
    } else {
        Ok(())
    }
}

/// The report file under its buffer: a write that fails (a full disk, a limit on file
/// size) cuts the file back to the end of its last whole line, and no write goes to it
/// after that. The lines it ended with were cut wherever the disk filled, and a reader of
/// the report (`jq`, a job's script) failed on the last of them, or read a line cut short
/// where no key is missing (`"ms":13` for `"ms":1342`) for a whole one.
pub struct WholeLines {
    file: File,
    /// Bytes the file took, and of them those up to the end of its last whole line.
    taken: u64,
    whole: u64,
    failed: bool,
}

impl WholeLines {
    /// `file`, emptied, under a count of what it took.
    pub fn new(file: File) -> Self {
        WholeLines {
            file,
            taken: 0,
            whole: 0,
            failed: false,
        }
    }

    /// Cuts a regular file back to its whole lines; a pipe or a device keeps what it took.
    fn cut_to_whole_lines(&mut self) {
        if self.taken != self.whole && self.file.metadata().is_ok_and(|m| m.is_file()) {
            // Shortening frees what it takes from the disk, so it succeeds on a full one.
            let _ = self.file.set_len(self.whole);
        }
    }
}

impl std::io::Write for WholeLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The buffer above writes what it holds again as it is dropped: after a cut, that
        // would go past the end, or after a hole.
        if self.failed {
            return Err(std::io::Error::other(
                "an earlier write to the report failed",
            ));
        }
        match self.file.write(buf) {
            Ok(n) => {
                if let Some(end) = buf[..n].iter().rposition(|&b| b == b'\n') {
                    self.whole = self.taken + end as u64 + 1;
                }
                self.taken += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = true;
                self.cut_to_whole_lines();
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Why `report` must not be created, if it must not.
fn clash(report: &Path, in_use: &InUse) -> Option<String> {
    // `-` reads as stdout, as it does to curl and tar; created, it was a file named `-`
    // in the working directory, which nobody looked for.
    if report == Path::new("-") {
        return Some(
            "stdout already carries the output (frames, or JSON lines with -o); name a file \
             (./- for one named -)"
                .into(),
        );
    }
    // `--report /dev/stdout` with stdout a pipe: the lines would be written twice into
    // what reads the JSON lines, or into the middle of the frames.
    if let Some(target) = std::fs::metadata(report).ok().filter(is_pipe) {
        if same_stream(&target, &std::io::stdout()) {
            return Some("this is stdout, which the output already goes to".into());
        }
    }
    // Identity, not names: a symbolic or hard link to index.json is index.json.
    if let Some(target) = std::fs::metadata(report).ok().filter(Metadata::is_file) {
        if in_use.reads_stdin && same_file(&target, &std::io::stdin()) {
            return Some("this is the input being read (stdin); it would be emptied".into());
        }
        if same_file(&target, &std::io::stdout()) {
            return Some("stdout already writes to this file".into());
        }
        // A job's log (`2>job.log`, `--report /dev/stderr`): emptied as the batch began,
        // then written from the report's own offset over dist's messages.
        if same_file(&target, &std::io::stderr()) {
            return Some(
                "stderr already writes to this file; it would be emptied and its messages \
                 written over"
                    .into(),
            );
        }
        if let Some(dir) = in_use.store {
            for name in ["index.json", "oci-layout"] {
                let file = std::fs::metadata(dir.join(name));
                if file.is_ok_and(|f| same_inode(&f, &target)) {
                    return Some(format!(
                        "this is the layout's {name}; name a file outside {}",
                        dir.display()
                    ));
                }
            }
        }
    }
    let dir = in_use.store?;
    // A file that does not exist yet has no identity: where it would go decides.
    let parent = absolute_parent(report)?;
    let root = std::fs::canonicalize(dir).ok()?;
    let ours = report
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".dist-"));
    if parent.starts_with(root.join("blobs")) || (parent == root && ours) {
        return Some(format!(
            "this is inside the layout's blob store or working files; name a file outside {}, \
             or beside index.json",
            dir.display()
        ));
    }
    None
}

/// The directory `path` would be created in, with links resolved.
fn absolute_parent(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(parent_dir(path)).ok()
}

/// The directory `path` names an entry of: its parent, or `.` for a bare name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether the regular file `stream` (stdin, stdout) refers to is `target`.
fn same_file(target: &Metadata, stream: &impl AsFd) -> bool {
    stream_metadata(stream).is_some_and(|m| m.is_file() && same_inode(&m, target))
}

/// Whether the pipe or socket `stream` refers to is `target`.
fn same_stream(target: &Metadata, stream: &impl AsFd) -> bool {
    stream_metadata(stream).is_some_and(|m| is_pipe(&m) && same_inode(&m, target))
}

fn stream_metadata(stream: &impl AsFd) -> Option<Metadata> {
    let fd = stream.as_fd().try_clone_to_owned().ok()?;
    File::from(fd).metadata().ok()
}

fn is_pipe(m: &Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_fifo() || m.file_type().is_socket()
}

fn same_inode(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(dir.path().join("index.json"), "{}").unwrap();
        std::fs::write(dir.path().join("oci-layout"), "{}").unwrap();
        dir
    }

    fn in_store(dir: &Path) -> InUse<'_> {
        InUse {
            store: Some(dir),
            reads_stdin: false,
        }
    }

    #[test]
    fn the_layouts_own_files_are_refused() {
        let dir = layout();
        let use_ = in_store(dir.path());
        for name in [
            "index.json",
            "oci-layout",
            "blobs/sha256/abc",
            ".dist-index.lock",
        ] {
            let why = clash(&dir.path().join(name), &use_);
            assert!(why.is_some(), "{name} was allowed");
        }
        // Reached through another name, it is still the index.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(dir.path().join("index.json"), &link).unwrap();
        assert!(clash(&link, &use_).unwrap().contains("index.json"));
        let outside = tempfile::tempdir().unwrap();
        let hard = outside.path().join("hard.json");
        std::fs::hard_link(dir.path().join("oci-layout"), &hard).unwrap();
        assert!(clash(&hard, &use_).unwrap().contains("oci-layout"));
    }

    #[test]
    fn files_beside_the_index_or_elsewhere_are_allowed() {
        let dir = layout();
        let use_ = in_store(dir.path());
        assert_eq!(clash(&dir.path().join("report.jsonl"), &use_), None);
        let other = tempfile::tempdir().unwrap();
        let existing = other.path().join("old.jsonl");
        std::fs::write(&existing, "x").unwrap();
        assert_eq!(clash(&existing, &use_), None);
        // Without a layout, an index.json is just a file.
        assert_eq!(
            clash(&dir.path().join("index.json"), &InUse::default()),
            None
        );
    }

    #[test]
    fn a_dash_is_not_taken_for_a_file_name() {
        let why = clash(Path::new("-"), &InUse::default()).unwrap();
        assert!(why.contains("stdout"), "{why}");
        assert_eq!(clash(Path::new("./-"), &InUse::default()), None);
    }

    #[test]
    fn a_report_that_is_refused_is_not_created_or_truncated() {
        let dir = layout();
        let index = dir.path().join("index.json");
        let use_ = in_store(dir.path());
        assert!(matches!(open(Some(&index), &use_), Err(EXIT_USAGE)));
        assert_eq!(std::fs::read_to_string(&index).unwrap(), "{}");
        let beside = dir.path().join("report.jsonl");
        let opened = open(Some(&beside), &use_).unwrap().unwrap();
        assert!(beside.exists());
        opened.begin().unwrap();
        assert!(beside.exists());
    }

    /// Regression: the report was truncated as it was opened, before the registry check,
    /// so a run that failed at once (registry down) destroyed the previous report.
    #[test]
    fn a_report_is_emptied_only_when_the_batch_begins() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("report.jsonl");
        std::fs::write(&old, "previous run\n").unwrap();
        drop(open(Some(&old), &InUse::default()).unwrap());
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "previous run\n");
        let mut begun = open(Some(&old), &InUse::default())
            .unwrap()
            .unwrap()
            .begin()
            .unwrap();
        std::io::Write::write_all(&mut begun, b"new\n").unwrap();
        drop(begun);
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "new\n");
    }

    /// A run that ends before its batch leaves no report it created behind.
    #[test]
    fn a_report_created_for_a_run_that_never_began_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("report.jsonl");
        drop(open(Some(&new), &InUse::default()).unwrap());
        assert!(!new.exists());
    }

    /// Regression: a run that opened the report just as another run, which had created it
    /// and could not start, removed it, got the lock a moment later and wrote its lines
    /// into a file no name reached any more. It now opens the name again.
    #[test]
    fn a_report_removed_as_it_was_opened_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.jsonl");
        std::fs::write(&path, "").unwrap();
        let early = OpenOptions::new().write(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (file, created) = locked(&path, early, None).unwrap().unwrap();
        let there = std::fs::metadata(&path).expect("the report is there again");
        assert!(same_inode(&file.metadata().unwrap(), &there));
        assert_eq!(created, Some(path.clone()), "created by this run");
        drop(file);

        // Replaced rather than removed: the file now under the name is the report.
        let early = OpenOptions::new().write(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "another run's\n").unwrap();
        let (file, created) = locked(&path, early, None).unwrap().unwrap();
        let there = std::fs::metadata(&path).unwrap();
        assert!(same_inode(&file.metadata().unwrap(), &there));
        assert_eq!(created, None, "not this run's to remove");
    }

    /// Regression: a report given as a link to a file not there yet was created through
    /// the link, and a run that never began left it behind, empty.
    #[test]
    fn a_report_created_through_a_dangling_link_is_removed_with_its_run() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.jsonl");
        let link = dir.path().join("report.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        drop(open(Some(&link), &InUse::default()).unwrap());
        assert!(!target.exists(), "the file made through the link was left");
        assert!(
            std::fs::symlink_metadata(&link).is_ok(),
            "the link is the user's"
        );
        let begun = open(Some(&link), &InUse::default()).unwrap().unwrap();
        drop(begun.begin().unwrap());
        assert!(target.exists());
        // There now, it is not this run's to remove.
        drop(open(Some(&link), &InUse::default()).unwrap());
        assert!(target.exists());
    }

    /// Regression: shards given one report each wrote from offset 0 over the other's
    /// lines. The second is refused while the first holds it, and not removed by it.
    #[test]
    fn a_report_another_run_writes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("report.jsonl");
        let first = open(Some(&shared), &InUse::default()).unwrap().unwrap();
        assert!(matches!(
            open(Some(&shared), &InUse::default()),
            Err(EXIT_USAGE)
        ));
        let first = first.begin().unwrap();
        assert!(matches!(
            open(Some(&shared), &InUse::default()),
            Err(EXIT_USAGE)
        ));
        assert!(shared.exists());
        drop(first);
        assert!(open(Some(&shared), &InUse::default()).unwrap().is_some());
    }
}
