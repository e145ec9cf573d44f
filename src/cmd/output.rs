//! The worker's stdout (frames or JSON lines) and `--report`, written on a thread of their
//! own.
//!
//! The worker's runtime has one thread; a slow reader (`| ssh host cat`) or a large spooled
//! frame must not stop it from polling the transfers in flight, or their idle timeouts
//! would fire. Outcomes cross a bounded queue, so a slow reader still slows the batch down
//! (backpressure) instead of letting memory grow.
//!
//! The writer is not woken for every outcome: a thousand small blobs cost about as much
//! in wake-ups and preempted runtime turns as in writing (measured: 1,900 context switches
//! and 61-63 ms of CPU per batch, against ~120 and 57-59 ms when woken in batches). It is woken
//! when a quarter of the queue's budget waits, and whenever the runtime runs out of work
//! (`on_runtime_park`), so output is never held back while the process sits waiting.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dist::handoff::{self, Nudge};
use dist::sink;
use dist::sink::spool::CopyError;
use dist::worker::Outcome;

use super::report_file::Opened;
use super::EXIT_USAGE;

/// Memory the queued outcomes may hold (spools of up to 1 MiB each, in memory).
const QUEUE_BYTES: usize = 1 << 20;

/// The queue of the output in use, nudged when the runtime goes idle.
static IDLE_NUDGE: Mutex<Option<Nudge<Outcome>>> = Mutex::new(None);

/// For the runtime's `on_thread_park`: the runtime has nothing to do, so whatever waits
/// for the writer should go out now.
pub fn on_runtime_park() {
    if let Some(nudge) = &*IDLE_NUDGE.lock().unwrap_or_else(|p| p.into_inner()) {
        nudge.now();
    }
}

/// Lets the writer, once woken, wait for the runtime's thread to sleep or use up its turn
/// instead of taking the core from it: woken in the middle of the runtime's turn, it
/// preempted the runtime's thread 250-290 times per thousand small blobs (0-110 times
/// with this), and frames do not need to go out sooner than that. `SCHED_BATCH` changes only wake-up
/// preemption; the writer's share of the CPU stays that of any thread at its nice level.
/// Measured on 1000 small blobs from nginx (framed, `-j 10`): 1-2% less CPU, cheaper in
/// 55-60% of the pairs of each of five sets of 150-200 interleaved runs. Where the call
/// is refused (seccomp), the writer runs as before. Only from the default policy: a run
/// given another (`chrt --idle 0`, to stay out of the way; `chrt --fifo`) keeps it, which
/// `SCHED_BATCH` would have raised the writer from (as root) or dropped it to.
fn yield_to_runtime() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sched_getscheduler takes no pointers; pid 0 is the calling thread.
        if unsafe { libc::sched_getscheduler(0) } != libc::SCHED_OTHER {
            return;
        }
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` only; pid 0 is the calling thread.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    }
}

/// Why output stopped.
pub enum Failure {
    /// The reader went away (`| head`): nothing to report.
    ReaderGone,
    /// A real write error, already described.
    Write(String),
}

/// The writer thread and the queue to it.
pub struct Output {
    queue: Option<handoff::Sender<Outcome>>,
    /// The writer's verdict, sent when it ends. Awaited, not waited for: a reader that
    /// does not read must not keep a signal or `--timeout` from ending the run.
    done: tokio::sync::oneshot::Receiver<Result<(), Failure>>,
    /// Set by [`Output::finish`]: the batch ran to its end, and the report is synced once
    /// written. A stopped run exits without waiting for the disk.
    ran_to_end: Arc<AtomicBool>,
}

impl Output {
    /// Starts the writer: frames (`framed`) or JSON lines on stdout, and JSON lines to
    /// `report` if given, which is emptied ([`Opened::begin`]) only once the writer's thread
    /// runs: a run that gets none (a limit on processes) keeps the previous run's report.
    /// `Err` is the exit status, the reason already said.
    pub fn start(framed: bool, report: Option<Opened>) -> Result<Output, u8> {
        let (queue, rx) = handoff::channel(QUEUE_BYTES);
        let (verdict, done) = tokio::sync::oneshot::channel();
        let ran_to_end = Arc::new(AtomicBool::new(false));
        let sync_at_end = ran_to_end.clone();
        let (give, take) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("dist-output".into())
            .spawn(move || {
                yield_to_runtime();
                if let Ok(report) = take.recv() {
                    let _ = verdict.send(write_all(rx, framed, report, &sync_at_end));
                }
            });
        if let Err(e) = spawned {
            say!(
                "dist: cannot start the output thread: {e} (a limit on threads: ulimit -u \
                 or -v, or the cgroup's pids.max)"
            );
            return Err(EXIT_USAGE);
        }
        // Dropped unsent, `give` ends the thread.
        let report = report.map(Report::begin).transpose()?;
        let _ = give.send(report);
        *IDLE_NUDGE.lock().unwrap_or_else(|p| p.into_inner()) = Some(queue.nudge());
        Ok(Output {
            queue: Some(queue),
            done,
            ran_to_end,
        })
    }

    /// Hands an outcome to the writer, waiting while the queue is full. `false` when the
    /// writer has stopped (see [`Output::finish`] for why).
    pub async fn send(&mut self, outcome: Outcome) -> bool {
        match &mut self.queue {
            Some(q) => q.send(outcome).await.is_ok(),
            None => false,
        }
    }

    /// Ends the queue: the writer takes what is queued and stops.
    fn close(&mut self) {
        IDLE_NUDGE.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(q) = self.queue.take() {
            q.close();
        }
    }

    /// Writes what is queued, flushes, syncs the report, and reports how it went.
    pub async fn finish(mut self) -> Result<(), Failure> {
        self.ran_to_end.store(true, Ordering::Release);
        self.close();
        (&mut self.done)
            .await
            .unwrap_or_else(|_| Err(Failure::Write("the output thread panicked".into())))
    }

    /// Like [`Output::finish`], but gives up after `limit`: on interruption a reader that
    /// does not read must not keep the process alive. What the writer had not written by
    /// then is lost with the process. Whether the writer ended in time: `false` when it
    /// was still writing, the output ending perhaps in part of a frame or line.
    pub async fn finish_within(mut self, limit: std::time::Duration) -> bool {
        self.close();
        tokio::time::timeout(limit, &mut self.done).await.is_ok()
    }
}

impl Drop for Output {
    /// The writer still takes what was queued.
    fn drop(&mut self) {
        self.close();
    }
}

/// Why nothing can be written to stdout, known before writing: the process started without
/// it (`>&-`), or it is open read-only (`1<file`). `EBADF` either way, as a write gets.
fn stdout_takes_nothing() -> Option<std::io::Error> {
    if super::closed_at_start::stdout() {
        return Some(super::closed_at_start::error());
    }
    // SAFETY: F_GETFL only reads the descriptor's status flags.
    let flags = unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFL) };
    (flags != -1 && flags & libc::O_ACCMODE == libc::O_RDONLY)
        .then(|| std::io::Error::from_raw_os_error(libc::EBADF))
}

/// Standard output, written to its file descriptor as it is. `std::io::stdout()` takes a
/// write that fails with `EBADF` for done: with stdout open read-only (`1<file`, a
/// descriptor a service manager handed over wrong), a batch's frames went nowhere and dist
/// exited 0. Unbuffered: callers gather or buffer what they write.
pub struct RawStdout(Option<std::mem::ManuallyDrop<std::fs::File>>);

impl RawStdout {
    /// Standard output, or what stands for it when the process started without one.
    pub fn new() -> RawStdout {
        use std::os::fd::FromRawFd;
        if super::closed_at_start::stdout() {
            return RawStdout(None);
        }
        // SAFETY: descriptor 1 is open (Rust's runtime puts /dev/null there when a process
        // starts without it), and this `File` never closes it: it is never dropped.
        let file = unsafe { std::fs::File::from_raw_fd(libc::STDOUT_FILENO) };
        RawStdout(Some(std::mem::ManuallyDrop::new(file)))
    }

    fn file(&mut self) -> std::io::Result<&mut std::fs::File> {
        match &mut self.0 {
            Some(file) => Ok(file),
            None => Err(super::closed_at_start::error()),
        }
    }

    /// Runs `write` on stdout, again once it has room each time it has none.
    fn when_room(
        &mut self,
        mut write: impl FnMut(&mut std::fs::File) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        loop {
            match write(self.file()?) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    super::nonblocking::ready(libc::STDOUT_FILENO, libc::POLLOUT)?
                }
                written => return written,
            }
        }
    }
}

/// A stdout shared with a process that made it non-blocking (Node's child_process, a CI
/// runner) takes nothing while its reader lags (`EAGAIN`): no failure, but a wait for room,
/// as the input waits on such a stdin. A fetch failed there with "Resource temporarily
/// unavailable" once the pipe was full.
impl Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.when_room(|file| file.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.when_room(|file| file.write_vectored(bufs))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Resolves when stdout is a pipe or a socket whose reader has gone (`| head` exited), so
/// that a batch stops there instead of fetching what nobody will read: without it, the
/// batch learnt of it only at its next write, which a large download can hold back for
/// minutes. Never resolves for anything else (a file, a terminal, `/dev/null`).
pub async fn reader_gone() {
    let (gone, watch) = tokio::sync::oneshot::channel();
    if stdout_is_a_channel() {
        let watcher = std::thread::Builder::new()
            .name("dist-stdout-watch".into())
            .spawn(move || {
                if hung_up(libc::STDOUT_FILENO, -1) {
                    let _ = gone.send(());
                }
            });
        if watcher.is_ok() && watch.await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// Whether stdout cannot take a run's `what` (its frames, its JSON lines), found out before
/// the run fetches or stores anything: one that learnt of it at its first line had
/// fetched, and stored, for nothing. A stdout that takes nothing is said as a write to it
/// would be; a reader gone already is told nothing, as one that goes away mid-run is not.
pub fn refused_before_start(what: &str) -> bool {
    if let Some(e) = stdout_takes_nothing() {
        say!("dist: {what}: {e}");
        return true;
    }
    // A pipe or a socket whose reader has gone already (`dist pull … | true`, the reader
    // done first), as [`reader_gone`] would find it at once.
    stdout_is_a_channel() && hung_up(libc::STDOUT_FILENO, 0)
}

fn stdout_is_a_channel() -> bool {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into memory of its size; it is read only on success.
    if unsafe { libc::fstat(libc::STDOUT_FILENO, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    let kind = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
    kind == libc::S_IFIFO || kind == libc::S_IFSOCK
}

/// Blocks until `fd`'s reader is gone (true), or `fd` cannot be watched (false). Asking
/// for no event, `poll` reports only the error and hang-up it always reports: a pipe with
/// no reader left, a socket shut down.
/// Whether `fd`'s reader has gone, waiting for it up to `timeout_ms` (-1: until it does).
fn hung_up(fd: libc::c_int, timeout_ms: libc::c_int) -> bool {
    let mut watched = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    loop {
        // SAFETY: one valid `pollfd`, and a count of one.
        let ready = unsafe { libc::poll(&mut watched, 1, timeout_ms) };
        if ready > 0 {
            return watched.revents & (libc::POLLERR | libc::POLLHUP) != 0;
        }
        if ready == 0 {
            return false;
        }
        if ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// The `--report` file being written, and its path as given, which every message about it
/// names: a job writing several files had to guess which one "the report" was.
struct Report {
    out: std::io::BufWriter<super::report_file::WholeLines>,
    path: String,
}

impl Report {
    /// Empties `opened` for this run's lines ([`Opened::begin`]).
    fn begin(opened: Opened) -> Result<Report, u8> {
        let path = opened.path().display().to_string();
        Ok(Report {
            out: opened.begin()?,
            path,
        })
    }

    fn failed(&self, doing: &str, e: std::io::Error) -> Failure {
        Failure::Write(format!("{doing} the report {}: {e}", self.path))
    }
}

fn write_all(
    mut rx: handoff::Receiver<Outcome>,
    framed: bool,
    mut report: Option<Report>,
    ran_to_end: &AtomicBool,
) -> Result<(), Failure> {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut out = sink::gather::Gather::new(RawStdout::new());
    let mut batch = Vec::new();
    while rx.next_batch(&mut batch) {
        // On the terminal a progress line may be drawn on (`-o DIR < list`), output goes
        // above that line: written after it, a JSON line was glued to its text.
        let _line = terminal.then(super::progress::clear_line);
        write_batch(&mut out, &mut report, framed, &mut batch)?;
    }
    match report.filter(|_| ran_to_end.load(Ordering::Acquire)) {
        Some(r) => super::report_file::sync(r.out.get_ref()).map_err(|e| r.failed("syncing", e)),
        None => Ok(()),
    }
}

fn flush_report(report: &mut Option<Report>) -> Result<(), Failure> {
    match report {
        Some(r) => r.out.flush().map_err(|e| r.failed("writing", e)),
        None => Ok(()),
    }
}

/// Writes the outcomes of `batch` and hands them to the reader and the report before the
/// writer waits for more: the report is what a run that never ends (`tail -f … |`) or gets
/// killed is watched by.
///
/// With `-o DIR` the report's lines go first: the objects are stored whatever becomes of
/// stdout, and a reader of stdout that does not read must not keep them out of the report.
/// A frame goes before its report line: the object reached the reader only with its frame,
/// and the report says it did.
fn write_batch<W: Write>(
    out: &mut sink::gather::Gather<W>,
    report: &mut Option<Report>,
    framed: bool,
    batch: &mut Vec<Outcome>,
) -> Result<(), Failure> {
    if framed {
        return write_frames(out, report, batch);
    }
    let lines: Vec<String> = batch
        .drain(..)
        .map(|o| sink::report::json_line(&o))
        .collect();
    if let Some(r) = report {
        for line in &lines {
            writeln!(r.out, "{line}").map_err(|e| r.failed("writing", e))?;
        }
    }
    flush_report(report)?;
    for line in &lines {
        writeln!(out, "{line}").map_err(stdout_failed)?;
    }
    out.flush().map_err(stdout_failed)
}

/// [`write_batch`] for frames: each frame's report line follows it, written once the frames
/// are out. Held until then: the report's buffer reaches the file when full or dropped,
/// whatever became of stdout.
fn write_frames<W: Write>(
    out: &mut sink::gather::Gather<W>,
    report: &mut Option<Report>,
    batch: &mut Vec<Outcome>,
) -> Result<(), Failure> {
    let mut lines = Vec::new();
    // Where each frame of the batch begins, and its object: the one a failed write cuts is
    // named, and those before it are reported.
    let mut frames: Vec<(u64, String)> = Vec::with_capacity(batch.len());
    let mut failed = None;
    for mut outcome in batch.drain(..) {
        let start = out.taken();
        let written = write_frame(out, report.is_some(), &mut outcome);
        frames.push((start, std::mem::take(&mut outcome.object)));
        match written {
            Ok(line) => lines.extend(line),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let failure = match failed {
        None => match out.flush() {
            Ok(()) => None,
            Err(e) => Some(frame_cut(e, &frames, out.written())),
        },
        Some(CopyError::Out(e)) => Some(frame_cut(e, &frames, out.written())),
        Some(CopyError::Spool(e)) => {
            // The frames gathered before it go out, and its own as far as it got, as its
            // message says: the stream ended before them all.
            let _ = out.flush();
            let (_, object) = frames.last().expect("the frame that failed");
            Some(spool_unreadable(object, e))
        }
    };
    // The frames out whole: each ends where the next begins, the last where the stream
    // given to stdout ends.
    let taken = out.taken();
    let written = out.written();
    let whole = (0..lines.len())
        .take_while(|&i| frames.get(i + 1).map_or(taken, |(start, _)| *start) <= written)
        .count();
    let reported = match report {
        Some(r) => lines[..whole]
            .iter()
            .try_for_each(|line| writeln!(r.out, "{line}"))
            .map_err(|e| r.failed("writing", e)),
        None => Ok(()),
    };
    // Stdout's failure is the one said: the report's, if it failed too, is a second fault.
    match failure {
        Some(failure) => {
            let _ = reported.and_then(|()| flush_report(report));
            Err(failure)
        }
        None => reported.and_then(|()| flush_report(report)),
    }
}

/// Writes one outcome's frame, and returns its report line if `reported`.
fn write_frame<W: Write>(
    out: &mut sink::gather::Gather<W>,
    reported: bool,
    outcome: &mut Outcome,
) -> Result<Option<String>, CopyError> {
    // Framed output without a report needs no JSON line at all. Made before the frame,
    // which takes the content.
    let line = reported.then(|| sink::report::json_line(outcome));
    sink::framed::write_frame(out, outcome)?;
    Ok(line)
}

/// A write of frames that failed (a full disk), `written` bytes of the stream having gone
/// out, among `frames` (where each began, and its object): says whose frame the stream ends
/// in, and how much of it went out, for a reader to tell the last object it has whole.
fn frame_cut(e: std::io::Error, frames: &[(u64, String)], written: u64) -> Failure {
    let cut = frames.iter().rev().find(|(start, _)| *start <= written);
    match cut {
        Some((start, object)) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            // A bad line's object is what it says, line breaks and escapes included.
            let object = dist::server_text::one_line(object);
            let into = written - start;
            Failure::Write(if into == 0 {
                format!("{object}: writing its frame to stdout, none of it written: {e}")
            } else {
                format!("{object}: writing its frame to stdout, cut short after {into} of its bytes: {e}")
            })
        }
        _ => stdout_failed(e),
    }
}

/// A spool read back for its frame that failed (EIO from a failing disk under `TMPDIR`):
/// the frame has begun and cannot be finished, so the batch stops, as on a write error,
/// saying where the fault lies, which is not where the frames go.
fn spool_unreadable(object: &str, e: std::io::Error) -> Failure {
    Failure::Write(format!(
        "{object}: reading the object back from its temporary file in {} (TMPDIR), its \
         frame cut short: {e}",
        std::env::temp_dir().display()
    ))
}

fn stdout_failed(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::ReaderGone
    } else {
        Failure::Write(format!("writing to stdout: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stdout that notes, at its first write, how much of the report was in its file:
    /// what a reader that never reads would have let through.
    struct Probe<'a> {
        report: &'a std::path::Path,
        report_then: &'a std::cell::Cell<Option<u64>>,
    }

    impl Write for Probe<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.report_then.get().is_none() {
                let len = std::fs::metadata(self.report)?.len();
                self.report_then.set(Some(len));
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn stored(line: u64) -> Outcome {
        let mut o = Outcome::new(line, format!("sha256:{line:064}"));
        o.status = dist::worker::Status::Exists;
        o
    }

    /// A `--report` file in `dir`: its path, and the report that writes it.
    fn report_in(dir: &std::path::Path) -> (std::path::PathBuf, Option<Report>) {
        let path = dir.join("report.jsonl");
        let report = Report {
            out: std::io::BufWriter::new(crate::cmd::report_file::WholeLines::new(
                std::fs::File::create(&path).unwrap(),
            )),
            path: path.display().to_string(),
        };
        (path, Some(report))
    }

    /// The input line numbers the report at `path` has lines for, in its order.
    fn reported_lines(path: &std::path::Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    fn report_of(batch: &mut Vec<Outcome>, framed: bool) -> (String, Option<u64>) {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut report) = report_in(dir.path());
        let then = std::cell::Cell::new(None);
        let mut out = sink::gather::Gather::new(Probe {
            report: &path,
            report_then: &then,
        });
        assert!(write_batch(&mut out, &mut report, framed, batch).is_ok());
        drop(report);
        (std::fs::read_to_string(&path).unwrap(), then.get())
    }

    /// Regression: with `-o DIR`, the report's lines waited behind stdout's, so a reader
    /// that never read kept objects already stored out of the report.
    #[test]
    fn with_a_store_the_report_does_not_wait_for_stdout() {
        let mut batch: Vec<Outcome> = (1..=3).map(stored).collect();
        let (report, then) = report_of(&mut batch, false);
        assert_eq!(report.lines().count(), 3);
        assert_eq!(then, Some(report.len() as u64), "stdout was written first");
    }

    /// Stdout whose reader has gone.
    struct Gone;

    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Regression: framed, each report line went into the report's buffer as its frame
    /// was gathered, before the frames were written out; stdout then failing, the buffer
    /// reached the file all the same (when full, or dropped), and the report said objects
    /// went out that never did.
    #[test]
    fn a_framed_report_says_nothing_of_frames_stdout_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut report) = report_in(dir.path());
        let mut out = sink::gather::Gather::new(Gone);
        let mut batch: Vec<Outcome> = (1..=200).map(stored).collect();
        assert!(write_batch(&mut out, &mut report, true, &mut batch).is_err());
        drop(report);
        let said = std::fs::read_to_string(&path).unwrap();
        assert_eq!(said.lines().count(), 0, "frames reported sent");
    }

    /// Stdout on a disk with room for `room` more bytes.
    struct Filling {
        room: usize,
    }

    impl Write for Filling {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn fetched(line: u64, len: usize) -> Outcome {
        let mut spool = dist::sink::spool::Spool::new(1 << 20);
        spool.push(bytes::Bytes::from(vec![b'x'; len])).unwrap();
        fetched_into(line, len, spool)
    }

    /// The outcome of line `line`, fetched: `len` bytes in `spool`.
    fn fetched_into(line: u64, len: usize, spool: dist::sink::spool::Spool) -> Outcome {
        let mut o = Outcome::new(line, format!("sha256:{line:064}"));
        o.status = dist::worker::Status::Ok;
        o.size = Some(len as u64);
        o.content = Some(spool);
        o
    }

    /// Regression: a frame cut short by a full disk said only "writing to stdout: No
    /// space left on device", not which object's frame the stream ends in.
    #[test]
    fn a_frame_cut_short_by_a_full_disk_is_named() {
        let header = format!("{0} - 1000 -\n", fetched(1, 0).object).len();
        let first_frame = header + 1000 + 1;
        let mut out = sink::gather::Gather::new(Filling {
            room: first_frame + 300,
        });
        let mut batch: Vec<Outcome> = (1..=3).map(|line| fetched(line, 1000)).collect();
        let second = batch[1].object.clone();
        let Err(Failure::Write(said)) = write_batch(&mut out, &mut None, true, &mut batch) else {
            panic!("a full disk is no success, nor a reader gone");
        };
        assert!(said.starts_with(&format!("{second}: ")), "{said}");
        assert!(said.contains("stdout"), "{said}");
        assert!(said.contains("300 of its"), "{said}");
        assert!(said.contains("No space left on device"), "{said}");
    }

    /// Regression: frames a full disk let out whole before the one it cut had no report
    /// line when they went out in the same batch: the report said less than the stream held.
    #[test]
    fn the_report_says_which_frames_a_full_disk_let_out_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut report) = report_in(dir.path());
        let header = format!("{0} - 1000 -\n", fetched(1, 0).object).len();
        let frame = header + 1000 + 1;
        let mut out = sink::gather::Gather::new(Filling {
            room: 2 * frame + 300,
        });
        let mut batch: Vec<Outcome> = (1..=4).map(|line| fetched(line, 1000)).collect();
        assert!(write_batch(&mut out, &mut report, true, &mut batch).is_err());
        drop(report);
        let said = std::fs::read_to_string(&path).unwrap();
        assert_eq!(reported_lines(&path), [1, 2], "{said}");
    }

    /// A bad line's object, control characters and all, is named on one line of text, as
    /// every message names what it quotes.
    #[test]
    fn a_cut_frame_s_object_is_named_without_control_characters() {
        let mut bad = Outcome::new(1, "\u{1b}[2Jv1\nx".into());
        bad.fail(dist::Error::invalid("bad"));
        let mut out = sink::gather::Gather::new(Filling { room: 0 });
        let Err(Failure::Write(said)) = write_batch(&mut out, &mut None, true, &mut vec![bad])
        else {
            panic!("a full disk is no success, nor a reader gone");
        };
        assert!(!said.contains(char::is_control), "{said:?}");
        assert!(said.contains("[2Jv1 x: writing its frame"), "{said:?}");
    }

    /// An outcome of `len` bytes whose spool is in a file that can no longer be read
    /// back: its descriptor is made a write-only one, as a failing disk under `TMPDIR`
    /// fails its reads. Found among the process's open files by its size, which no other
    /// file of the tests has.
    fn unreadable(line: u64, len: usize) -> Outcome {
        use std::os::fd::AsRawFd;
        let mut spool = dist::sink::spool::Spool::new(0);
        spool.push(bytes::Bytes::from(vec![b'y'; len])).unwrap();
        spool.finish().unwrap();
        let fd = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .find(|e| {
                let deleted = std::fs::read_link(e.path())
                    .is_ok_and(|to| to.to_string_lossy().ends_with("(deleted)"));
                deleted && std::fs::metadata(e.path()).is_ok_and(|m| m.len() == len as u64)
            })
            .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .expect("the spool's file");
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        // SAFETY: both descriptors are open; `fd` is the spool's, which now writes nowhere.
        assert_eq!(unsafe { libc::dup2(null.as_raw_fd(), fd) }, fd);
        fetched_into(line, len, spool)
    }

    /// Regression: a spool that could not be read back for its frame dropped the frames
    /// gathered before it in the batch, unwritten, while the message said only its own
    /// frame was cut short.
    #[test]
    fn frames_before_an_unreadable_spool_go_out() {
        let mut stdout = Vec::new();
        let mut out = sink::gather::Gather::new(&mut stdout);
        let mut batch = vec![fetched(1, 1000), unreadable(2, 1_234_567)];
        let Err(Failure::Write(said)) = write_batch(&mut out, &mut None, true, &mut batch) else {
            panic!("an unreadable spool is no success");
        };
        assert!(said.contains("temporary file"), "{said}");
        drop(out);
        let first = format!("{} - 1000 -\n", fetched(1, 0).object);
        assert!(
            stdout.starts_with(first.as_bytes()),
            "{:?}",
            String::from_utf8_lossy(&stdout)
        );
        assert!(
            stdout.len() > first.len() + 1001,
            "the frame before it whole, then its own header"
        );
    }

    /// Stdout on a disk with room for `room` more bytes, taking at most `per` of them a
    /// call and interrupted (`EINTR`) every other call.
    struct Grudging {
        room: usize,
        per: usize,
        interrupted: bool,
    }

    impl Write for Grudging {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.interrupted = !self.interrupted;
            if self.interrupted {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room).min(self.per);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Wherever a full disk cuts a stream of several batches (frames large and small,
    /// error frames, each batch's frames gathered into writes that the disk takes in
    /// pieces), the object named is the one whose frame the stream ends in, with how much
    /// of it went out, and the report has a line for each frame before it, in order.
    #[test]
    fn a_full_disk_anywhere_names_the_frame_it_cuts_and_reports_those_before_it() {
        let sizes = [
            5, 0, 100_000, 3, 200_000, 0, 1, 150_000, 7, 90_000, 0, 10, 300_000,
        ];
        let outcome = |i: usize| match sizes[i] {
            0 => {
                let mut bad = Outcome::new(i as u64 + 1, format!("bad{i}"));
                bad.fail(dist::Error::invalid("bad"));
                bad
            }
            len => fetched(i as u64 + 1, len),
        };
        let batches = [0..3, 3..7, 7..sizes.len()];
        let mut ends = Vec::new();
        let mut end = 0;
        for i in 0..sizes.len() {
            let mut frame = Vec::new();
            dist::sink::framed::write_frame(&mut frame, &mut outcome(i)).unwrap();
            end += frame.len();
            ends.push(end);
        }
        let mut rooms: Vec<usize> = (0..end).step_by(49_999).collect();
        for &e in &ends[..ends.len() - 1] {
            rooms.extend([e - 1, e, e + 1]);
        }
        for per in [4093, usize::MAX] {
            for &room in &rooms {
                let dir = tempfile::tempdir().unwrap();
                let (path, mut report) = report_in(dir.path());
                let mut out = sink::gather::Gather::new(Grudging {
                    room,
                    per,
                    interrupted: false,
                });
                let failed = batches.iter().find_map(|lines| {
                    let mut batch = lines.clone().map(outcome).collect();
                    write_batch(&mut out, &mut report, true, &mut batch).err()
                });
                drop(report);
                let case = format!("room {room}, {per} a write");
                let Some(Failure::Write(said)) = failed else {
                    panic!("{case}: a full disk is no success, nor a reader gone");
                };
                let cut = ends.iter().position(|&e| e > room).expect("a frame cut");
                let start = cut.checked_sub(1).map_or(0, |i| ends[i]);
                let object = outcome(cut).object;
                assert!(said.starts_with(&format!("{object}: ")), "{case}: {said}");
                let into = room - start;
                let how = match into {
                    0 => "none of it written".to_string(),
                    _ => format!("cut short after {into} of its bytes"),
                };
                assert!(said.contains(&how), "{case}: {said}");
                let reported = reported_lines(&path);
                let whole: Vec<u64> = (1..=cut as u64).collect();
                assert_eq!(reported, whole, "{case}");
            }
        }
    }

    /// A frame goes out before its report line says it did.
    #[test]
    fn a_framed_report_line_follows_its_frame() {
        let mut batch = vec![stored(1)];
        let (report, then) = report_of(&mut batch, true);
        assert_eq!(report.lines().count(), 1);
        assert_eq!(then, Some(0));
    }
}
