//! The multi-fetch worker: one remote, many objects, a bounded pool of concurrent fetches.
//!
//! Input lines (see [`line`](mod@line)) are read as a stream, so fetching starts with the first line
//! and memory does not grow with the input. Each object becomes a task; at most `jobs` run
//! at once, all sharing the remote's connection pool and token. Each task ends in an
//! [`Outcome`], whether it succeeded or not, so that one bad line is reported while the
//! batch goes on. An object that appears twice (with the same `size:` hint, or none) is
//! fetched once, unless that fetch failed before the second line was read: then it is
//! fetched again.

mod in_flight;
mod ingest;
pub mod input;
pub mod job;
pub mod line;
pub mod progress;
mod seen;
pub mod shard;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{self, BoxFuture};
use futures::stream::{BoxStream, StreamExt};
use tokio::io::AsyncBufRead;

use crate::digest::Digest;
use crate::error::{Error, ErrorKind};
use crate::remote::Remote;
use crate::sink::layout::LayoutStore;
use crate::sink::spool::{self, Spool};
use in_flight::InFlight;
use input::RawLine;
use line::Job;
use progress::Progress;
use seen::Seen;
use shard::Shard;

/// How an object ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Fetched and verified.
    Ok,
    /// Already present (and, if asked, verified) in the store; not fetched.
    Exists,
    /// Failed; see [`Outcome::error`].
    Error,
}

/// The result of one input line.
#[derive(Debug)]
#[non_exhaustive]
pub struct Outcome {
    /// 1-based input line number.
    pub line: u64,
    /// The object as written in the input (its first word; the digest for descriptors).
    pub object: String,
    /// How it ended.
    pub status: Status,
    /// The verified digest. A failed object's (`Status::Error`) is at most the one its
    /// input line named (none for a tag), not one verified: what was asked for, however
    /// far the fetch got, not what was received.
    pub digest: Option<Digest>,
    /// The content's size; a failed object's is the size its line gave (`size:`, a
    /// descriptor's `size`), if any.
    pub size: Option<u64>,
    /// The media type, if known; a failed object's is the one its line gave.
    pub media_type: Option<String>,
    /// Where it was stored (directory output); a failed object has none.
    pub path: Option<PathBuf>,
    /// Why it failed.
    pub error: Option<Error>,
    /// Time from start of the task to its end.
    pub elapsed: Duration,
    /// The content (framed output).
    pub content: Option<Spool>,
}

impl Outcome {
    /// An outcome for `object` of input line `line`, not yet decided.
    pub fn new(line: u64, object: String) -> Outcome {
        Outcome {
            line,
            object,
            status: Status::Error,
            digest: None,
            size: None,
            media_type: None,
            path: None,
            error: None,
            elapsed: Duration::ZERO,
            content: None,
        }
    }

    /// Marks the outcome failed with `error`.
    pub fn fail(&mut self, error: Error) {
        self.status = Status::Error;
        self.error = Some(error);
        self.content = None;
    }
}

/// Bytes an outcome is counted for in a queue besides its content: its strings, and a
/// bound on how many outcomes without content can wait at once.
const OUTCOME_WEIGHT: usize = 4 << 10;

impl crate::handoff::Weigh for Outcome {
    /// What the outcome keeps in memory, roughly.
    fn weight(&self) -> usize {
        OUTCOME_WEIGHT + self.content.as_ref().map_or(0, Spool::memory)
    }
}

/// Where the worker puts content.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Destination {
    /// Into spools, for framed output; objects past the threshold spill to temporary files.
    Spool {
        /// Bytes kept in memory per object before spilling.
        threshold: usize,
    },
    /// Into an OCI layout's blob store: each blob verified, then renamed to its place
    /// (an outcome's `path`). Those names are not durable until the caller runs
    /// [`LayoutStore::sync`], which the worker never does: once the stream ended, and
    /// about once a second for a stream that does not end, as `dist fetch LOC - -o DIR`
    /// does. (A [`crate::pull::pull`] syncs its own.)
    Store {
        /// The store.
        store: LayoutStore,
        /// Re-hash objects already present before trusting them.
        verify_existing: bool,
    },
}

impl Default for Destination {
    fn default() -> Self {
        Destination::Spool {
            threshold: spool::DEFAULT_THRESHOLD,
        }
    }
}

/// Worker settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// Concurrent fetches at most.
    pub jobs: usize,
    /// Emit outcomes in input order instead of completion order.
    pub ordered: bool,
    /// Where content goes.
    pub destination: Destination,
    /// Keep only the objects of this shard (`--shard K/N`).
    pub shard: Option<Shard>,
    /// Counters for a progress display.
    pub progress: Option<Arc<Progress>>,
}

/// The default bound on concurrent fetches; see the README for the measurement behind it.
pub const DEFAULT_JOBS: usize = 16;

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            jobs: DEFAULT_JOBS,
            ordered: false,
            destination: Destination::default(),
            shard: None,
            progress: None,
        }
    }
}

/// Lines read between two yields of the input's stream to the runtime.
const YIELD_EVERY: u64 = 64;

/// Runs the worker over `input`: returns the stream of outcomes, in completion order (or
/// input order with `ordered`). Dropping the stream cancels the fetches in flight. Into a
/// [`Destination::Store`], what it stored is durable only once the caller synced it
/// ([`LayoutStore::sync`]).
pub fn run<R>(remote: Arc<dyn Remote>, input: R, opts: WorkerOptions) -> BoxStream<'static, Outcome>
where
    R: AsyncBufRead + Unpin + Send + 'static,
{
    let jobs = opts.jobs.max(1);
    let ordered = opts.ordered;
    let destination = Arc::new(opts.destination);
    let shard = opts.shard;
    let reports_bad_lines = shard.is_none_or(|s| s.reports_bad_lines());
    let progress = opts.progress.unwrap_or_default();
    let at_end = progress.clone();
    // `blank`: every line so far was blank (white space, a byte order mark), which is no
    // input either: `<<< "$digests"` and `echo "$digests"` send a line ending alone when
    // what filled `digests` failed.
    let lines = futures::stream::unfold(
        (input::Lines::new(input, input::MAX_LINE), 0u64, false, true),
        move |(mut lines, n, done, blank)| {
            let at_end = at_end.clone();
            async move {
                if done {
                    at_end.input_ended(false);
                    return None;
                }
                // Lines that start nothing (duplicates, another shard's, comments) are
                // read within one poll of the stream, which returns only with an object:
                // a long run of them (an endless producer repeating one line) held the
                // task, and with it the objects done, a stop and, on a runtime of one
                // thread, the transfers in flight, for as long as it lasted.
                if n > 0 && n % YIELD_EVERY == 0 {
                    tokio::task::yield_now().await;
                }
                match lines.next().await {
                    Ok(Some(l)) => {
                        let l = input::without_bom(l);
                        let blank = blank && matches!(&l, RawLine::Text(t) if t.trim().is_empty());
                        Some((Ok((n + 1, l)), (lines, n + 1, false, blank)))
                    }
                    Ok(None) => {
                        at_end.input_ended(blank);
                        None
                    }
                    Err(e) => Some((Err((n + 1, e)), (lines, n + 1, true, false))),
                }
            }
        },
    );
    let mut seen = Seen::default();
    // The keys of objects that failed, from their tasks to the line reader, which forgets
    // them before it looks at its next line. Sent before the failure's outcome leaves the
    // worker: a line written once that outcome was seen is read after it.
    let (failed_tx, failed_rx) = std::sync::mpsc::channel::<seen::Key>();
    let in_flight = Arc::new(InFlight::default());
    let tasks = lines.filter_map(move |item| {
        for key in failed_rx.try_iter() {
            seen.forget(key);
        }
        let task: Option<BoxFuture<'static, Outcome>> = match item {
            Ok((_, RawLine::Text(ref text))) if !reports_bad_lines && !is_wellformed(text) => None,
            // An error reading the input is no line: every shard's input broke there, and
            // each shard's batch was cut short, so each says so.
            Ok((_, RawLine::TooLong | RawLine::NotUtf8)) if !reports_bad_lines => None,
            Err((n, e)) => Some(ready_error(
                &progress,
                n,
                "-",
                Error::new(ErrorKind::Io, "reading stdin").with_cause(e),
            )),
            Ok((n, RawLine::TooLong)) => Some(ready_error(
                &progress,
                n,
                "-",
                Error::invalid(format!("input line longer than {} bytes", input::MAX_LINE)),
            )),
            Ok((n, RawLine::NotUtf8)) => Some(ready_error(
                &progress,
                n,
                "-",
                Error::invalid("input line is not UTF-8"),
            )),
            Ok((n, RawLine::Text(text))) => match line::parse_line(&text) {
                None => None,
                Some(Err(e)) => Some(ready_error(&progress, n, &first_word(&text), e)),
                Some(Ok(job)) if shard.is_some_and(|s| !s.contains(&job.object)) => None,
                Some(Ok(job)) => {
                    let key = seen::key(&job.object, &job.hints.media_types, job.hints.size);
                    // An object still in flight is a duplicate too, even if its fetch
                    // then fails: that fetch and its error answer this line as well.
                    if seen.first_time(key) {
                        progress.object_read(job.hints.size);
                        let failed = Forget(key, failed_tx.clone());
                        Some(spawn_job(
                            remote.clone(),
                            n,
                            job,
                            destination.clone(),
                            progress.clone(),
                            in_flight.clone(),
                            failed,
                        ))
                    } else {
                        tracing::debug!(line = n, object = %job.object, "duplicate object skipped");
                        None
                    }
                }
            },
        };
        future::ready(task)
    });
    if ordered {
        tasks.buffered(jobs).boxed()
    } else {
        tasks.buffer_unordered(jobs).boxed()
    }
}

fn is_wellformed(text: &str) -> bool {
    !matches!(line::parse_line(text), Some(Err(_)))
}

/// The object a bad line names, for its error: the first word, or a descriptor's `digest`
/// as written if the JSON holds one (its other fields may be what is wrong; a frame's
/// header shows its white space and control characters as `_`, the JSON report keeps
/// them: one with a space was `-`, as if it named none). Without the
/// user information a registry's URL pasted with its login holds: the object goes to
/// stdout and the report, where its error takes care not to show it.
fn first_word(text: &str) -> String {
    let t = text.trim();
    let word = if t.starts_with('{') {
        let value: Option<serde_json::Value> = serde_json::from_str(t).ok();
        let digest = value
            .as_ref()
            .and_then(|v| v.get("digest")?.as_str())
            .filter(|d| !d.trim().is_empty());
        digest.unwrap_or("-").to_string()
    } else {
        // The line whole: a password with a space in it splits a login into words.
        let shown = crate::reference::without_credentials(t);
        return shown.split_whitespace().next().unwrap_or("-").to_string();
    };
    crate::reference::without_credentials(&word)
}

fn ready_error(
    progress: &Progress,
    line: u64,
    object: &str,
    e: Error,
) -> BoxFuture<'static, Outcome> {
    progress.bad_line();
    let mut o = Outcome::new(line, object.to_string());
    o.fail(e);
    Box::pin(future::ready(o))
}

/// How a failed task has the line reader forget its object.
struct Forget(seen::Key, std::sync::mpsc::Sender<seen::Key>);

fn spawn_job(
    remote: Arc<dyn Remote>,
    line: u64,
    job: Job,
    destination: Arc<Destination>,
    progress: Arc<Progress>,
    in_flight: Arc<InFlight>,
    failed: Forget,
) -> BoxFuture<'static, Outcome> {
    let object = job.object.to_string();
    let progress_at_end = progress.clone();
    let handle = AbortOnDrop(tokio::spawn(job_task(
        remote,
        line,
        job,
        destination,
        progress,
        in_flight,
    )));
    Box::pin(async move {
        let outcome = match handle.join().await {
            Ok(o) => o,
            Err(e) => {
                if !e.is_cancelled() {
                    // It panicked after it counted itself started, and never ended: counted
                    // in flight, the display showed it running to the end of the batch.
                    progress_at_end.finished(false);
                }
                let error = Error::task_ended("fetch", e).with_object(&object);
                let mut o = Outcome::new(line, object);
                o.fail(error);
                o
            }
        };
        // The task has ended, and with it its hold on the object (a lock, a partial
        // download): a new fetch of it starts clean.
        if outcome.status == Status::Error {
            let Forget(key, reader) = failed;
            let _ = reader.send(key);
        }
        outcome
    })
}

/// The spawned task of one job. Its fetch's future is boxed: inline it made the task
/// several KiB, which tokio allocated as the task's cell and copied in and out as it was
/// spawned and joined, once per object. 1000 blobs from nginx: 3.1 million instructions
/// fewer (`callgrind`) and about 1% less CPU (README, Performance), for the box's
/// allocation.
async fn job_task(
    remote: Arc<dyn Remote>,
    line: u64,
    job: Job,
    destination: Arc<Destination>,
    progress: Arc<Progress>,
    in_flight: Arc<InFlight>,
) -> Outcome {
    // Its `ms` counts the wait for its turn, as it counts a wait on another run's lock
    // file: a line that waited seconds said 0 ms.
    let started = std::time::Instant::now();
    // Another line of the batch fetching this digest into the store goes first: this one
    // then finds it stored (`exists`), or fetches it itself if that fetch failed.
    let _turn = match (destination.as_ref(), job.object.digest()) {
        (Destination::Store { .. }, Some(digest)) => Some(in_flight.turn(digest).await),
        _ => None,
    };
    progress.started();
    let fetch = Box::pin(job::run_since(
        remote.as_ref(),
        line,
        job,
        &destination,
        &progress,
        started,
    ));
    let outcome = fetch.await;
    progress.finished(outcome.status != Status::Error);
    outcome
}

/// Cancels the task when the worker's stream is dropped (interrupt, early exit): its
/// temporary file is then removed by its own destructor, and nothing keeps running.
struct AbortOnDrop(tokio::task::JoinHandle<Outcome>);

impl AbortOnDrop {
    async fn join(mut self) -> Result<Outcome, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_reported_under_the_object_it_names() {
        assert_eq!(first_word("  latest nocolon"), "latest");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            first_word(&format!(r#"{{"digest":"{d}","mediaType":5}}"#)),
            d
        );
        assert_eq!(first_word(r#"{"digest":"a b\u001b"}"#), "a b\u{1b}");
        for nameless in [
            r#"{"size":3}"#,
            "{not json",
            r#"{"digest":" "}"#,
            r#"{"digest":7}"#,
        ] {
            assert_eq!(first_word(nameless), "-", "{nameless}");
        }
    }

    /// A line that is a registry's URL with its login (`me:s3cret@reg.example`) is refused
    /// without it in the error, and was reported under it all the same: the object of its
    /// frame or JSON line, on stdout and in the --report file, was the password and all.
    #[test]
    fn a_bad_line_holding_credentials_is_reported_without_them() {
        for line in [
            "me:s3cret@reg.example",
            "me:s3cret@reg.example/team/app size:3",
            "https://me:s3cret@reg.example",
            r#"{"digest":"me:s3cret@reg.example/app","size":3}"#,
        ] {
            let shown = first_word(line);
            assert!(!shown.contains("s3cret"), "{line}: {shown}");
            assert!(shown.contains("reg.example"), "{line}: {shown}");
        }
    }

    /// A descriptor's digest is kept as written, white space and all: a login pasted
    /// with something after it (a space, a line break, an ESC) no longer passed for one
    /// to hide, the host then not a host, and went to stdout and the report whole.
    #[test]
    fn a_descriptor_s_digest_with_white_space_is_reported_without_credentials() {
        for digest in [
            r"me:s3cret@reg.example ",
            r"me:s3cret@reg.example\n",
            r"me:s3cret@reg.example\u001b",
            r"see me:s3cret@reg.example",
            r"https://me:s3cret@reg.example\tx",
        ] {
            let line = format!(r#"{{"digest":"{digest}","size":3}}"#);
            let shown = first_word(&line);
            assert!(!shown.contains("s3cret"), "{line}: {shown:?}");
            assert!(shown.contains("reg.example"), "{line}: {shown:?}");
        }
        // A line of one word ending in an ESC was shown whole too.
        let shown = first_word("me:s3cret@reg.example\u{1b} size:3");
        assert_eq!(shown, "reg.example\u{1b}");
        let kept = first_word(r#"{"digest":"sha256:a b\u001b c"}"#);
        assert_eq!(kept, "sha256:a b\u{1b} c");
        // A password with a space in it: the first word (`http://me:s3`) holds no `@`.
        let shown = first_word("http://me:s3 cret@reg.example/team/app size:3");
        assert_eq!(shown, "http://reg.example/team/app");
    }

    /// Lists saved by Windows editors and joined (`cat lists/*.txt |`) carry a byte order
    /// mark at the start of each file, so at the start of lines past the first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_byte_order_mark_is_skipped_at_the_start_of_any_line() {
        use crate::digest::{Algorithm, Digest};
        use futures::StreamExt;
        let src = tempfile::tempdir().unwrap();
        let mut lines = String::new();
        for data in [b"first file".as_slice(), b"second file"] {
            let d = Digest::of(Algorithm::Sha256, data);
            let path = src.path().join("blobs/sha256").join(d.encoded());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
            lines.push_str(&format!("\u{feff}{d}\r\n"));
        }
        LayoutStore::open(src.path()).unwrap();
        let remote: Arc<dyn Remote> = Arc::new(crate::layout_remote::LayoutRemote::new(src.path()));
        let input = std::io::Cursor::new(lines.into_bytes());
        let opts = WorkerOptions {
            ordered: true,
            ..WorkerOptions::default()
        };
        let outcomes: Vec<Outcome> = run(remote, input, opts).collect().await;
        let errors: Vec<String> = outcomes
            .iter()
            .filter_map(|o| o.error.as_ref().map(|e| format!("line {}: {e}", o.line)))
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(outcomes.len(), 2);
    }

    /// A remote whose fetches never end, and that says when one has begun.
    struct Stalled(Arc<tokio::sync::Notify>);

    impl Remote for Stalled {
        fn fetch<'a>(
            &'a self,
            _: &'a crate::reference::Object,
            _: &'a crate::hints::Hints,
        ) -> BoxFuture<'a, crate::error::Result<crate::fetch::Download>> {
            self.0.notify_one();
            Box::pin(future::pending())
        }

        fn check<'a>(&'a self) -> BoxFuture<'a, crate::error::Result<()>> {
            Box::pin(future::ready(Ok(())))
        }

        fn describe(&self) -> String {
            "stalled".into()
        }
    }

    /// Bad lines end as soon as they are read: they must not be taken off the fetches
    /// still running, or a list with many bad lines shows none in flight for its whole run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn bad_lines_do_not_hide_the_fetches_in_flight() {
        use futures::StreamExt;
        let begun = Arc::new(tokio::sync::Notify::new());
        let remote: Arc<dyn Remote> = Arc::new(Stalled(begun.clone()));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let input = format!("sha256:bad1\nnocolon x\n{d}\n");
        let progress = Arc::new(Progress::default());
        let opts = WorkerOptions {
            jobs: 4,
            progress: Some(progress.clone()),
            ..WorkerOptions::default()
        };
        let mut outcomes = run(remote, std::io::Cursor::new(input.into_bytes()), opts);
        for _ in 0..2 {
            let o = outcomes.next().await.expect("a bad line's outcome");
            assert_eq!(o.status, Status::Error);
        }
        tokio::time::timeout(Duration::from_secs(30), begun.notified())
            .await
            .expect("the fetch began");
        let s = progress.snapshot();
        assert_eq!((s.finished, s.failed), (2, 2));
        assert_eq!(s.in_flight(), 1, "{s:?}");
    }

    /// A remote whose download declares its `size`, sends `sent` bytes of it, then holds,
    /// saying so.
    struct Held {
        size: u64,
        sent: usize,
        holding: Arc<tokio::sync::Notify>,
    }

    impl Remote for Held {
        fn fetch<'a>(
            &'a self,
            object: &'a crate::reference::Object,
            _: &'a crate::hints::Hints,
        ) -> BoxFuture<'a, crate::error::Result<crate::fetch::Download>> {
            use futures::StreamExt;
            let meta = crate::fetch::Meta {
                object: object.clone(),
                expected: None,
                size: Some(self.size),
                media_type: None,
                url: "held".into(),
                limit: None,
            };
            let holding = self.holding.clone();
            let sent = futures::stream::iter([Ok(bytes::Bytes::from(vec![0; self.sent]))]);
            let held = futures::stream::once(async move {
                holding.notify_one();
                future::pending().await
            });
            let download = crate::fetch::Download::new(meta, sent.chain(held).boxed());
            Box::pin(future::ready(Ok(download)))
        }

        fn check<'a>(&'a self) -> BoxFuture<'a, crate::error::Result<()>> {
            Box::pin(future::ready(Ok(())))
        }

        fn describe(&self) -> String {
            "held".into()
        }
    }

    /// An object named without its size counts, once the remote declared it, among those
    /// in flight whose size is known, with the bytes it still has to receive, into a
    /// stream or a store: what the remaining time goes by when it is the last one running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_size_declared_counts_for_the_objects_in_flight() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Destination::Store {
            store: LayoutStore::open(dir.path()).unwrap(),
            verify_existing: false,
        };
        for destination in [WorkerOptions::default().destination, store] {
            let holding = Arc::new(tokio::sync::Notify::new());
            let remote: Arc<dyn Remote> = Arc::new(Held {
                size: 1000,
                sent: 300,
                holding: holding.clone(),
            });
            let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
            let progress = Arc::new(Progress::default());
            let opts = WorkerOptions {
                progress: Some(progress.clone()),
                destination,
                ..WorkerOptions::default()
            };
            let input = std::io::Cursor::new(format!("{d}\n").into_bytes());
            let mut outcomes = run(remote, input, opts);
            let next = outcomes.next();
            tokio::select! {
                o = next => panic!("the fetch ended: {o:?}"),
                () = holding.notified() => {}
            }
            let s = progress.snapshot();
            assert_eq!((s.expected_bytes, s.bytes), (0, 300), "{s:?}");
            assert_eq!((s.in_flight_sized, s.in_flight_left), (1, 700), "{s:?}");
        }
    }

    /// A remote with a bug: every fetch panics.
    struct Panics;

    impl Remote for Panics {
        fn fetch<'a>(
            &'a self,
            _: &'a crate::reference::Object,
            _: &'a crate::hints::Hints,
        ) -> BoxFuture<'a, crate::error::Result<crate::fetch::Download>> {
            Box::pin(async { panic!("a bug in the remote") })
        }

        fn check<'a>(&'a self) -> BoxFuture<'a, crate::error::Result<()>> {
            Box::pin(future::ready(Ok(())))
        }

        fn describe(&self) -> String {
            "panics".into()
        }
    }

    /// A fetch task that ended abnormally (a panic) fails its object alone, and its error
    /// names the object, as every other error of a fetch does: stderr said only "line 1:
    /// fetch task ended abnormally", the object nowhere in it. It counts as ended, not as
    /// in flight for the rest of the batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_task_that_ended_abnormally_names_its_object() {
        use futures::StreamExt;
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let remote: Arc<dyn Remote> = Arc::new(Panics);
        let input = std::io::Cursor::new(format!("{d}\n").into_bytes());
        let progress = Arc::new(Progress::default());
        let opts = WorkerOptions {
            progress: Some(progress.clone()),
            ..WorkerOptions::default()
        };
        let outcomes: Vec<Outcome> = run(remote, input, opts).collect().await;
        assert_eq!(outcomes.len(), 1);
        let e = outcomes[0].error.as_ref().expect("an error");
        assert_eq!(e.object(), Some(d), "{e}");
        assert!(e.to_string().contains(d), "{e}");
        let s = progress.snapshot();
        assert_eq!((s.started, s.finished, s.failed), (1, 1, 1), "{s:?}");
    }

    /// Regression: a line whose fetch task ended abnormally (a panic) read as a whole, yet
    /// its outcome had no digest, size or media type, as a line that does not read; every
    /// other failed line says what its input line asked for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_task_that_ended_abnormally_says_what_its_line_asked_for() {
        use futures::StreamExt;
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let layer = "application/vnd.oci.image.layer.v1.tar";
        let line = format!("{{\"digest\":\"{d}\",\"size\":7,\"mediaType\":\"{layer}\"}}\n");
        let remote: Arc<dyn Remote> = Arc::new(Panics);
        let input = std::io::Cursor::new(line.into_bytes());
        let outcomes: Vec<Outcome> = run(remote, input, WorkerOptions::default()).collect().await;
        assert_eq!(outcomes.len(), 1);
        let o = &outcomes[0];
        assert_eq!(o.status, Status::Error);
        assert_eq!(o.digest.as_ref().map(Digest::as_str), Some(d), "{o:?}");
        assert_eq!(o.size, Some(7), "{o:?}");
        assert_eq!(o.media_type.as_deref(), Some(layer), "{o:?}");
        assert_eq!(o.path, None, "{o:?}");
    }

    /// A job's task stays small, whatever its fetch's future holds: the task's cell is
    /// allocated, and moved whole, for each object of a batch.
    #[test]
    fn a_job_task_is_small() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let job = line::parse_line(d).unwrap().unwrap();
        let task = job_task(
            Arc::new(Panics),
            1,
            job,
            Arc::new(Destination::default()),
            Arc::new(Progress::default()),
            Arc::default(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 512, "a job's task takes {size} bytes");
    }

    /// Input that fails part-way (EIO from a failing disk or NFS, a reset socket).
    struct BrokenInput;

    impl tokio::io::AsyncRead for BrokenInput {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::from_raw_os_error(libc::EIO)))
        }
    }

    /// Every shard reads the whole input, so an error reading it cut every shard's batch
    /// short, not only shard 0's: each says so and fails. Shards other than 0 skipped it as
    /// a bad line, and exited 0 having fetched only part of their share.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn every_shard_reports_an_input_it_could_not_read() {
        use futures::StreamExt;
        use tokio::io::AsyncReadExt;
        for k in 0..3 {
            let remote: Arc<dyn Remote> = Arc::new(Stalled(Default::default()));
            let input = std::io::Cursor::new(b"# a list\n".to_vec()).chain(BrokenInput);
            let opts = WorkerOptions {
                shard: Some(Shard::new(k, 3).unwrap()),
                ..WorkerOptions::default()
            };
            let outcomes: Vec<Outcome> = run(remote, tokio::io::BufReader::new(input), opts)
                .collect()
                .await;
            assert_eq!(outcomes.len(), 1, "shard {k}/3: {outcomes:?}");
            let e = outcomes[0].error.as_ref().expect("an error").to_string();
            assert!(
                e.contains("stdin") && e.contains("os error 5"),
                "{k}/3: {e}"
            );
        }
    }

    /// Runs `lines` with the layout at `src` as the remote into a store at `dst`, `jobs`
    /// at a time, in order: the outcomes, and the progress counters at the end.
    async fn layout_to_store(
        src: &std::path::Path,
        dst: &std::path::Path,
        lines: String,
        jobs: usize,
    ) -> (Vec<Outcome>, super::progress::Snapshot) {
        let remote = Arc::new(crate::layout_remote::LayoutRemote::new(src));
        remote_to_store(remote, dst, lines, jobs).await
    }

    /// [`layout_to_store`] from `remote`.
    async fn remote_to_store(
        remote: Arc<dyn Remote>,
        dst: &std::path::Path,
        lines: String,
        jobs: usize,
    ) -> (Vec<Outcome>, super::progress::Snapshot) {
        use futures::StreamExt;
        let progress = Arc::new(Progress::default());
        let opts = WorkerOptions {
            jobs,
            ordered: true,
            destination: Destination::Store {
                store: LayoutStore::open(dst).unwrap(),
                verify_existing: false,
            },
            shard: None,
            progress: Some(progress.clone()),
        };
        let input = std::io::Cursor::new(lines.into_bytes());
        let outcomes: Vec<Outcome> = run(remote, input, opts).collect().await;
        (outcomes, progress.snapshot())
    }

    /// The same digest with sizes that disagree: at most one line is right, and each line
    /// gets the end it would have alone. The second was skipped as a duplicate of the
    /// first, so a right size after a wrong one was never fetched (the first failed, the
    /// blob missing), and a wrong one after a right one exited 0.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_digest_with_another_size_is_not_a_duplicate() {
        use crate::digest::{Algorithm, Digest};
        let src = tempfile::tempdir().unwrap();
        LayoutStore::open(src.path()).unwrap();
        let data = b"twenty bytes of blob";
        let d = Digest::of(Algorithm::Sha256, data);
        let sha = src.path().join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        std::fs::write(sha.join(d.encoded()), data).unwrap();
        for (lines, ends) in [
            (
                format!("{d} size:10\n{d} size:20\n{d} size:20\n"),
                [Status::Error, Status::Ok],
            ),
            (
                format!("{d} size:20\n{d} size:10\n{d} size:20\n"),
                [Status::Ok, Status::Error],
            ),
        ] {
            let dst = tempfile::tempdir().unwrap();
            let (outcomes, _) = layout_to_store(src.path(), dst.path(), lines.clone(), 4).await;
            let got: Vec<(u64, Status)> = outcomes.iter().map(|o| (o.line, o.status)).collect();
            assert_eq!(got, [(1, ends[0]), (2, ends[1])], "{lines}");
            let failed = outcomes.iter().find(|o| o.status == Status::Error).unwrap();
            let e = failed.error.as_ref().unwrap();
            assert_eq!(e.kind(), ErrorKind::SizeMismatch, "{e}");
            assert_eq!(
                std::fs::read(dst.path().join("blobs/sha256").join(d.encoded())).unwrap(),
                data
            );
        }
    }

    /// On a re-run, bytes already stored or held by a partial download are not expected
    /// from the network: once everything is done, what was expected is what arrived.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn bytes_already_here_are_not_expected() {
        use crate::digest::{Algorithm, Digest};
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let stored: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let partial: Vec<u8> = (0..7000u32).map(|i| (i * 7) as u8).collect();
        let mut lines = String::new();
        for data in [&stored, &partial] {
            let d = Digest::of(Algorithm::Sha256, data);
            let path = src.path().join("blobs/sha256").join(d.encoded());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
            lines.push_str(&format!("{d} size:{}\n", data.len()));
        }
        LayoutStore::open(src.path()).unwrap(); // oci-layout and index.json
        let sha = dst.path().join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        let d = Digest::of(Algorithm::Sha256, &stored);
        std::fs::write(sha.join(d.encoded()), &stored).unwrap();
        let d = Digest::of(Algorithm::Sha256, &partial);
        std::fs::write(
            sha.join(format!(".dist-partial-{}", d.encoded())),
            &partial[..3000],
        )
        .unwrap();

        let (outcomes, s) = layout_to_store(src.path(), dst.path(), lines, 2).await;
        let statuses: Vec<Status> = outcomes.iter().map(|o| o.status).collect();
        assert_eq!(statuses, [Status::Exists, Status::Ok]);
        assert_eq!(outcomes[1].size, Some(7000));
        assert_eq!((s.bytes, s.expected_bytes), (4000, 4000));
        assert_eq!(std::fs::read(sha.join(d.encoded())).unwrap(), partial);
    }

    /// A failed object's bytes are no longer expected, and one fetched twice (its first
    /// copy did not verify) is expected twice: at the end, what was expected is what
    /// arrived, and the display's remaining time is zero. The missing blob's 5000 bytes
    /// stayed expected, and the corrupt one's second copy was received beyond them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn failed_and_refetched_objects_leave_the_bytes_expected_right() {
        use crate::digest::{Algorithm, Digest};
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        LayoutStore::open(src.path()).unwrap();
        let sha = src.path().join("blobs/sha256");
        std::fs::create_dir_all(&sha).unwrap();
        let missing = Digest::of(Algorithm::Sha256, b"never stored");
        let good: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        let meant: Vec<u8> = (0..3000u32).map(|i| (i * 3) as u8).collect();
        let corrupt = Digest::of(Algorithm::Sha256, &meant);
        std::fs::write(sha.join(corrupt.encoded()), vec![0u8; 3000]).unwrap();
        let good_digest = Digest::of(Algorithm::Sha256, &good);
        std::fs::write(sha.join(good_digest.encoded()), &good).unwrap();
        let lines = format!("{missing} size:5000\n{corrupt} size:3000\n{good_digest} size:2000\n");

        let remote = Arc::new(AsRegistry(crate::layout_remote::LayoutRemote::new(
            src.path(),
        )));
        let (outcomes, s) = remote_to_store(remote, dst.path(), lines, 1).await;
        let statuses: Vec<Status> = outcomes.iter().map(|o| o.status).collect();
        assert_eq!(statuses, [Status::Error, Status::Error, Status::Ok]);
        assert_eq!(s.bytes, 2 * 3000 + 2000, "{s:?}");
        assert_eq!(s.expected_bytes, s.bytes, "{s:?}");
    }

    /// A layout as a remote whose content that did not verify is fetched again, as a
    /// registry's is (a layout's own is read once).
    struct AsRegistry(crate::layout_remote::LayoutRemote);

    impl Remote for AsRegistry {
        fn fetch<'a>(
            &'a self,
            object: &'a crate::reference::Object,
            hints: &'a crate::hints::Hints,
        ) -> BoxFuture<'a, crate::error::Result<crate::fetch::Download>> {
            self.0.fetch(object, hints)
        }

        fn check<'a>(&'a self) -> BoxFuture<'a, crate::error::Result<()>> {
            self.0.check()
        }

        fn describe(&self) -> String {
            self.0.describe()
        }
    }

    /// A remote where nothing exists: the first fetch of `held` waits for `release` before
    /// it fails; every fetch says it has begun, by object.
    struct Missing {
        held: crate::reference::Object,
        release: Arc<tokio::sync::Notify>,
        begun: tokio::sync::mpsc::UnboundedSender<String>,
        fetches_of_held: std::sync::atomic::AtomicUsize,
    }

    impl Remote for Missing {
        fn fetch<'a>(
            &'a self,
            object: &'a crate::reference::Object,
            _: &'a crate::hints::Hints,
        ) -> BoxFuture<'a, crate::error::Result<crate::fetch::Download>> {
            use std::sync::atomic::Ordering;
            Box::pin(async move {
                let first = *object == self.held
                    && self.fetches_of_held.fetch_add(1, Ordering::SeqCst) == 0;
                let _ = self.begun.send(object.to_string());
                if first {
                    self.release.notified().await;
                }
                Err(Error::new(ErrorKind::NotFound, "not pushed yet"))
            })
        }

        fn check<'a>(&'a self) -> BoxFuture<'a, crate::error::Result<()>> {
            Box::pin(future::ready(Ok(())))
        }

        fn describe(&self) -> String {
            "missing".into()
        }
    }

    /// A line naming an object whose fetch failed fetches it again (a blob pushed since, an
    /// outage over); one that came while that fetch was still running was answered by it,
    /// and is skipped as a duplicate, whatever its end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_object_that_failed_is_fetched_again_when_named_again() {
        use crate::digest::{Algorithm, Digest};
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let a = Digest::of(Algorithm::Sha256, b"pushed later");
        let b = Digest::of(Algorithm::Sha256, b"another");
        let release = Arc::new(tokio::sync::Notify::new());
        let (begun_tx, mut begun) = tokio::sync::mpsc::unbounded_channel();
        let remote = Arc::new(Missing {
            held: crate::reference::Object::Digest(a.clone()),
            release: release.clone(),
            begun: begun_tx,
            fetches_of_held: Default::default(),
        });
        let (mut input, rx) = tokio::io::duplex(4096);
        let opts = WorkerOptions {
            jobs: 4,
            ..WorkerOptions::default()
        };
        let worker_remote: Arc<dyn Remote> = remote.clone();
        let mut outcomes = run(worker_remote, tokio::io::BufReader::new(rx), opts);
        let (out_tx, mut out) = tokio::sync::mpsc::unbounded_channel();
        let consumer = tokio::spawn(async move {
            while let Some(o) = outcomes.next().await {
                let _ = out_tx.send((o.line, o.status));
            }
        });
        input.write_all(format!("{a}\n").as_bytes()).await.unwrap();
        assert_eq!(begun.recv().await.unwrap(), a.to_string());
        // Line 2 comes while line 1 is in flight; line 3's fetch beginning shows it was read.
        input
            .write_all(format!("{a}\n{b}\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(begun.recv().await.unwrap(), b.to_string());
        release.notify_one();
        let mut ended = vec![out.recv().await.unwrap(), out.recv().await.unwrap()];
        ended.sort_by_key(|o| o.0);
        assert_eq!(ended, [(1, Status::Error), (3, Status::Error)]);
        // Both failures are out: named again, each is fetched again.
        input
            .write_all(format!("{a}\n{b}\n").as_bytes())
            .await
            .unwrap();
        drop(input);
        consumer.await.unwrap();
        let mut rest = Vec::new();
        while let Some(o) = out.recv().await {
            rest.push(o);
        }
        rest.sort_by_key(|o| o.0);
        assert_eq!(rest, [(4, Status::Error), (5, Status::Error)]);
        let fetches = remote
            .fetches_of_held
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(fetches, 2);
    }
}
