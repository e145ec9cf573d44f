//! The worker behind `dist fetch <locator> -`: objects from stdin (or the one object given
//! with `--output`), frames or JSON lines on stdout, a progress line on a terminal.

use std::time::Duration;

use dist::sink::layout::LayoutStore;
use dist::worker::{self, Destination, Status, WorkerOptions};
use futures::StreamExt;

use super::output::{Failure, Output};
use super::progress::Display;
use super::{
    check_before_batch, first_steps, open_remote, report, run_stop, unless_stopped, watch, Stop,
    EXIT_FAILED, EXIT_USAGE,
};
use crate::cli::{FetchArgs, Global};

/// The worker: objects from stdin (or the one object given, with `--output`), frames or
/// JSON lines on stdout.
pub async fn run(global: &Global, args: FetchArgs) -> u8 {
    // As the one-shot fetch keeps binary content off a terminal, and curl does: frames
    // hold layers, which garble a terminal and help no one. Said before the input is read
    // or the registry asked, when nothing is lost by it.
    if args.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        say!(
            "dist: frames carry binary content and are not written to a terminal; redirect \
             stdout (> FILE, | …), store the objects with -o DIR, or fetch one object to \
             the terminal with dist fetch {} OBJECT",
            args.locator
        );
        return EXIT_USAGE;
    }
    if let Some(e) = no_line_of_one(&args) {
        return report(&e, EXIT_USAGE);
    }
    let mut stop = std::pin::pin!(run_stop(global));
    if let Some(why) = watch(&mut stop) {
        why.say(args.output.is_some(), None);
        return why.code();
    }
    let store = match &args.output {
        Some(dir) => match first_steps::open_layout(dir, false, &mut stop).await {
            Ok(store) => Some(store),
            Err(code) => return code,
        },
        None => None,
    };
    let destination = match &store {
        Some(store) => Destination::Store {
            store: store.clone(),
            verify_existing: args.verify_existing,
        },
        None => Destination::default(),
    };
    let progress = std::sync::Arc::new(dist::worker::progress::Progress::default());
    let code = run_into(global, args, destination, progress.clone(), &mut stop).await;
    // A mistyped locator or an unusable registry leaves no empty layout behind, nor does a
    // stop before anything was stored, once the stopped downloads' temporary files are
    // gone: they go as their tasks are dropped. Nor does empty input, which most often
    // means the command feeding the batch failed: a layout left there looked like that
    // job's finished output, to the next step and to the next run's look at the disk.
    if let Some(store) = store.filter(|_| code != 0 || progress.input_was_empty()) {
        super::drop_cancelled_tasks().await;
        store.remove_if_unused();
    }
    code
}

/// Why the object given on the command line (with `-o DIR`) cannot be the worker's one
/// input line, if it cannot: it is read as that line, and a blank object or one that reads
/// as a comment was skipped as a line would be, the run exiting 0 having fetched nothing;
/// a line break in it or in a hint made it two lines, and a space two words. A line that
/// does not parse is refused too, in its own words.
fn no_line_of_one(args: &FetchArgs) -> Option<dist::Error> {
    if args.object == "-" {
        return None;
    }
    let words = std::iter::once(&args.object).chain(&args.hints);
    // An object with white space around it, as one that kept its line's `\r` (`$(curl -sI
    // … | awk '{print $2}')`), is one object, not two lines, nor one the line's words fetch
    // without it: its own parse says so, with the object without it, as to stdout. So is a
    // hint (`size:` cut from the `Content-Length` line, `\r` and all). Trimmed as the line
    // trims its words (`str::trim`): trimmed of ASCII alone, an object with a no-break
    // space after it passed here, and the line then fetched it.
    let told = |word: &str, parse: fn(&str) -> Option<dist::Error>| {
        let bare = word.trim();
        (bare != word && parse(bare).is_none())
            .then(|| parse(word))
            .flatten()
    };
    let object = |w: &str| w.parse::<dist::Object>().err();
    let hint = |w: &str| super::hint_words::parse(&[w]).err();
    let own = std::iter::once(told(&args.object, object))
        .chain(args.hints.iter().map(|h| told(h, hint)))
        .flatten()
        .next();
    if own.is_some() {
        return own;
    }
    if words.clone().any(|w| w.contains(['\n', '\r'])) {
        return Some(dist::Error::invalid(
            "an object or hint given on the command line holds a line break; give one \
             object, or many as lines on stdin (object `-`)",
        ));
    }
    let line = words.map(String::as_str).collect::<Vec<_>>().join(" ");
    // The worker drops a byte order mark at the start of a line, as here. A blank object
    // with hints after it is no blank line: the first hint was taken for the object (an
    // unset `"$DIGEST"` before `size:N`), and failed as an unknown digest algorithm.
    let object = args.object.strip_prefix('\u{feff}').unwrap_or(&args.object);
    let blank = object.trim().is_empty();
    match worker::line::parse_line(line.strip_prefix('\u{feff}').unwrap_or(&line)) {
        None => Some(dist::Error::invalid(format!(
            "no object given ({:?} is blank, or reads as a comment)",
            args.object
        ))),
        Some(_) if blank => Some(dist::Error::invalid(format!(
            "no object given ({:?} is blank; the hints after it name none)",
            args.object
        ))),
        // `"sha256:… size:5"` as one word: the line split it into an object and a hint,
        // where the fetch to stdout refuses it as an object, and so does this.
        Some(parsed) => std::iter::once(&args.object)
            .chain(&args.hints)
            .find(|w| w.trim().contains(char::is_whitespace))
            .map(|w| {
                dist::Error::invalid(format!(
                    "{w:?} holds a space: give the object and each hint as words of their own"
                ))
            })
            // A malformed object or hint is the command line's mistake, as it is to
            // stdout: as the input's one bad line it was status 1, like a missing object.
            // A hint's is worded for the command line, where no line of input was typed.
            .or_else(|| {
                let line = parsed.err()?;
                let hints: Vec<&str> = args.hints.iter().map(|h| h.trim()).collect();
                Some(
                    match (
                        object.trim().parse::<dist::Object>(),
                        super::hint_words::parse(&hints),
                    ) {
                        (Ok(_), Err(hint)) => hint,
                        _ => line,
                    },
                )
            }),
    }
}

async fn run_into<S: std::future::Future<Output = Stop>>(
    global: &Global,
    args: FetchArgs,
    destination: Destination,
    progress: std::sync::Arc<dist::worker::progress::Progress>,
    stop: &mut std::pin::Pin<&mut S>,
) -> u8 {
    let report_out = match first_steps::open_report(
        args.report.as_deref(),
        args.output.as_deref(),
        args.object == "-",
        stop,
    )
    .await
    {
        Ok(r) => r,
        Err(code) => return code,
    };
    let jobs =
        super::jobs_within_file_limit(global, args.jobs.unwrap_or(dist::worker::DEFAULT_JOBS));
    let remote = match open_remote(global, &args.locator, jobs, super::Downloads::Blobs) {
        Ok(r) => r,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    // After every usage error, which is status 2 and said whatever stdout is, and before
    // the registry is asked anything.
    if super::output::refused_before_start("writing to stdout") {
        return EXIT_FAILED;
    }
    if let Err(code) = check_before_batch(remote.as_ref(), stop).await {
        return code;
    }
    // Before any fetch starts: without a thread for the output there is no batch. The
    // previous run's report stays until then: a run that could not start keeps it.
    let framed = args.output.is_none();
    let mut output = match Output::start(framed, report_out) {
        Ok(output) => output,
        Err(code) => return code,
    };
    // `dist fetch LOC -` typed without a pipe waits for lines from the keyboard: say so,
    // or it looks hung, and draw no progress line, which would redraw over what is typed.
    let typed = args.object == "-" && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if typed && !global.quiet {
        super::inform(&format!(
            "dist: reading objects from the terminal, one per line (object [hint…]); end with \
             Ctrl-D, or pipe them in: … | dist fetch {} -",
            args.locator
        ));
    }
    let display = Display::new(progress.clone(), global.draws_progress() && !typed);
    let mut opts = WorkerOptions::default();
    opts.jobs = jobs;
    opts.ordered = args.ordered;
    opts.destination = destination;
    opts.shard = args.shard;
    opts.progress = Some(progress.clone());
    let into_store = !framed;
    // Line numbers only mean something when the objects came as lines.
    let from_lines = args.object == "-";
    let input: Box<dyn tokio::io::AsyncBufRead + Unpin + Send> = if from_lines {
        Box::new(super::stdin::stdin())
    } else {
        let line = std::iter::once(args.object.as_str())
            .chain(args.hints.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        Box::new(std::io::Cursor::new(line.into_bytes()))
    };
    let store = match &opts.destination {
        Destination::Store { store, .. } => Some(store.clone()),
        _ => None,
    };
    let mut syncs = Syncs::new(store.clone());
    let mut outcomes = worker::run(remote, input, opts);
    let ticker = display.start();
    let mut failed = 0usize;
    // Failures a later run would meet again (content missing or wrong, a sync): without
    // them, every failure was the registry's for the moment (`EXIT_TEMPFAIL`).
    let mut lasting = 0usize;
    let mut stopped = loop {
        // An outcome already there is an object already stored: reported before the stop,
        // not dropped by the pick between two ready branches.
        let next = tokio::select! {
            biased;
            synced = syncs.next() => {
                // Exits with status 1 as the batch-end sync's failure does, and goes on.
                if let Err(e) = synced {
                    failed += 1;
                    lasting += 1;
                    display.message(&format!("dist: {e}"));
                }
                continue;
            }
            n = outcomes.next() => n,
            why = stop.as_mut() => break Some(why),
        };
        let Some(outcome) = next else { break None };
        // A blob found stored is synced as one stored: another run may have renamed it
        // there without syncing yet, and this line says it is there.
        if matches!(outcome.status, Status::Ok | Status::Exists) {
            syncs.stored();
        }
        if let Some(e) = &outcome.error {
            failed += 1;
            lasting += usize::from(!e.is_transient());
            if !global.quiet {
                let message = if from_lines {
                    format!("dist: line {}: {e}", outcome.line)
                } else {
                    format!("dist: {e}")
                };
                display.message(&message);
            }
        }
        // A reader that does not read fills the queue; a signal must still get through.
        let sent = match unless_stopped(output.send(outcome), stop).await {
            Ok(sent) => sent,
            Err(why) => break Some(why),
        };
        if !sent {
            break None; // the writer stopped; finish() says why
        }
    };
    // Taken before the jobs go, and their marks with them: a stop while another run held
    // blobs this one waited for says so.
    let waiting = store
        .filter(|_| stopped.is_some())
        .map(|s| s.waiting_for_others())
        .unwrap_or_default();
    drop(outcomes);
    // A signal that came in the same turn as the last outcome waits in `stop`, which the
    // biased pick above passed over: taken now, or the sync below would sit it out.
    if stopped.is_none() {
        stopped = futures::FutureExt::now_or_never(stop.as_mut());
    }
    // The batch's last sync, unless a signal or `--timeout` stopped it: a disk that does not
    // answer must not hold those up, but a reader of stdout that left is no reason to leave
    // what was stored without it. So it waits under a stop of their own, which hears every
    // signal `stop` would: made before the runtime next turns, it is there when any signal
    // since is dispatched.
    if matches!(stopped, None | Some(Stop::ReaderGone)) {
        let mut halt = std::pin::pin!(super::stopped(global));
        match unless_stopped(syncs.finish(), &mut halt).await {
            Ok(errors) => {
                for e in errors {
                    failed += 1;
                    lasting += 1;
                    display.message(&format!("dist: {e}"));
                }
            }
            Err(why) => stopped = Some(why),
        }
    }
    if stopped.is_none() && progress.input_was_empty() && !global.quiet {
        display.message("dist: warning: the input was empty: no objects to fetch");
    }
    // Stopped before the last sync, a store's names may not be durable.
    let synced = stopped.is_none() || !into_store;
    // Whether the stop found the writer under way, a frame or line perhaps cut short.
    let mut cut = true;
    let ended = match stopped {
        // Every object is done; what is left is writing out, which a stuck reader can make
        // last for ever, and a signal or `--timeout` must still end.
        None => unless_stopped(output.finish(), stop).await,
        Some(why) => {
            cut = !output
                .finish_within(std::time::Duration::from_secs(2))
                .await;
            Err(why)
        }
    };
    display.finish(ticker);
    match ended {
        Ok(finished) => finished_code(finished, failed, lasting),
        Err(why) => {
            let snapshot = progress.snapshot();
            // One thread writes stdout and the report in turn (the report first into `-o
            // DIR`): either may be the one whose reader does not read.
            let report = args.report.as_ref().map(|p| p.display().to_string());
            let writes = match args.output {
                Some(_) => super::Writes::Lines,
                None => super::Writes::Frames,
            };
            let held = match &report {
                Some(path) => super::Unwritten::StdoutOrReport(writes, path),
                None => super::Unwritten::Stdout(writes),
            };
            match left_undone(&snapshot, args.output.as_deref(), synced, failed) {
                LeftUndone::Sync { dir, all_ok } => {
                    why.say_unsynced(dir, all_ok, cut.then_some(held))
                }
                LeftUndone::Writing => why.say_unwritten(held),
                LeftUndone::Input { read } => why.say_idle_input(read, cut.then_some(held)),
                LeftUndone::Fetching => why.say(into_store, cut.then_some(held)),
            }
            why.say_waiting(&waiting);
            why.code()
        }
    }
}

/// What a batch stopped before its end had left undone, for its message.
#[derive(Debug, PartialEq)]
enum LeftUndone<'a> {
    /// Every object was handled into the layout at `dir`, but the batch's last sync of its
    /// directories did not finish (the stop came in it, or before it, while the last
    /// outcome waited for the output): the names stored last may not be durable.
    /// `all_ok` when none of the objects (and no sync) failed.
    Sync {
        dir: &'a std::path::Path,
        all_ok: bool,
    },
    /// Every object was handled (and the names synced, or there was no layout): only
    /// writing out what they came to was left. The stop may have come before an outcome
    /// reached the output, which loses its frame or line as a stuck reader does.
    Writing,
    /// Every object read from the input was handled, but the input had not ended: the
    /// stop came while waiting for more (`read` objects had come).
    Input { read: u64 },
    /// Objects of the input were not handled.
    Fetching,
}

/// What a batch into `store` (`-o DIR`), stopped when progress was at `s`, left undone;
/// `synced` when the stop came after the batch's last sync, `failed` the failures it
/// reported (of outcomes read, and of syncs). Stopped while an outcome waited for the
/// output, the outcomes queued behind it were never read: their failures are the
/// progress's, and "every object was fetched and stored" was said over them.
fn left_undone<'a>(
    s: &dist::worker::progress::Snapshot,
    store: Option<&'a std::path::Path>,
    synced: bool,
    failed: usize,
) -> LeftUndone<'a> {
    if s.finished != s.objects {
        return LeftUndone::Fetching;
    }
    if !s.input_done {
        return LeftUndone::Input { read: s.objects };
    }
    match store {
        Some(dir) if !synced => LeftUndone::Sync {
            dir,
            all_ok: failed == 0 && s.failed == 0,
        },
        _ => LeftUndone::Writing,
    }
}

/// How long the name of a blob reported stored may wait to be made durable while the batch
/// goes on. A worker fed by `tail -f` may never reach the end of its batch, where the rest are
/// synced. Each sync is one fsync per directory a blob went into and of the few above it;
/// see the README for what one per second costs.
const SYNC_WITHIN: Duration = Duration::from_secs(1);

/// The syncs of the store ([`LayoutStore::sync`]) while the batch runs, one at a time on the
/// blocking pool, [`SYNC_WITHIN`] after a blob was stored: the fetches go on meanwhile; and
/// the last, at its end ([`Syncs::finish`]).
struct Syncs {
    /// The store's [`LayoutStore::sync`], when there is a store.
    sync: Option<SyncFn>,
    due: Option<tokio::time::Instant>,
    running: Option<tokio::task::JoinHandle<dist::Result<()>>>,
}

/// One sync of the store, run on the blocking pool.
type SyncFn = std::sync::Arc<dyn Fn() -> dist::Result<()> + Send + Sync>;

impl Syncs {
    fn new(store: Option<LayoutStore>) -> Syncs {
        Syncs::with(store.map(|store| std::sync::Arc::new(move || store.sync()) as SyncFn))
    }

    fn with(sync: Option<SyncFn>) -> Syncs {
        Syncs {
            sync,
            due: None,
            running: None,
        }
    }

    /// A blob was stored, or found stored: its name is synced within [`SYNC_WITHIN`].
    fn stored(&mut self) {
        if self.sync.is_some() && self.due.is_none() {
            self.due = Some(tokio::time::Instant::now() + SYNC_WITHIN);
        }
    }

    /// Waits until a sync is due and starts it, or for the one running to end, with its
    /// result. Cancel-safe: nothing changes before what it waits for has come.
    async fn next(&mut self) -> dist::Result<()> {
        if let Some(running) = &mut self.running {
            let ended = running.await;
            self.running = None;
            return joined(ended);
        }
        let (Some(due), Some(sync)) = (self.due, &self.sync) else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(due).await;
        self.due = None;
        let sync = sync.clone();
        self.running = Some(tokio::task::spawn_blocking(move || sync()));
        Ok(())
    }

    /// The batch's end: the sync still running, if one is (the last sync must not pass
    /// over the directories it took), then a last one of everything stored since, so that
    /// a batch that ran to its end has its blobs on disk under their names when it exits,
    /// not only their content: a power loss after it could otherwise take back names it
    /// reported stored. What each sync that failed said. Awaited under a signal or
    /// `--timeout`: run once they were no longer watched, a disk slow to answer (an NFS
    /// server gone) held off `--timeout`, and a signal was caught and ignored until the
    /// disk answered.
    async fn finish(&mut self) -> Vec<dist::Error> {
        let mut failed = Vec::new();
        if let Some(running) = self.running.take() {
            failed.extend(joined(running.await).err());
        }
        if let Some(sync) = self.sync.clone() {
            self.due = None;
            let last = tokio::task::spawn_blocking(move || sync()).await;
            failed.extend(joined(last).err());
        }
        failed
    }
}

/// What a sync on the blocking pool said; one that panicked, or never ran, made nothing
/// durable, and is a failure as one that returned an error is.
fn joined(ended: Result<dist::Result<()>, tokio::task::JoinError>) -> dist::Result<()> {
    ended.unwrap_or_else(|e| {
        Err(dist::Error::new(
            dist::ErrorKind::Io,
            "syncing the store's directories: their names were not made durable",
        )
        .with_cause(e))
    })
}

/// The exit status of a batch that ran to its end: with `failed` failures, `lasting` of
/// them ones a later run would meet again; none such,
/// [`EXIT_TEMPFAIL`](super::EXIT_TEMPFAIL).
fn finished_code(finished: Result<(), Failure>, failed: usize, lasting: usize) -> u8 {
    match finished {
        Ok(()) if failed == 0 => 0,
        Ok(()) if lasting == 0 => super::EXIT_TEMPFAIL,
        Ok(()) | Err(Failure::ReaderGone) => EXIT_FAILED,
        Err(Failure::Write(msg)) => {
            say!("dist: {msg}");
            EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panicking() -> Syncs {
        Syncs::with(Some(std::sync::Arc::new(|| -> dist::Result<()> {
            panic!("a sync that panicked")
        })))
    }

    /// A stop after every object was handled into a layout, before the batch's last sync
    /// (the last outcome waiting for a reader that does not read), said "objects reported
    /// so far are complete" (and under `--timeout` "the others were not fetched"): what
    /// was left is the sync, and the output.
    #[test]
    fn a_stop_after_every_object_before_the_last_sync_says_the_sync_was_left() {
        let dir = std::path::Path::new("/srv/mirror");
        let mut s = dist::worker::progress::Snapshot::default();
        (s.objects, s.input_done, s.started, s.finished) = (3, true, 3, 3);
        let all_ok = |all_ok| LeftUndone::Sync { dir, all_ok };
        assert_eq!(left_undone(&s, Some(dir), false, 0), all_ok(true));
        assert_eq!(left_undone(&s, Some(dir), true, 0), LeftUndone::Writing);
        assert_eq!(left_undone(&s, None, true, 0), LeftUndone::Writing);
        s.finished = 2;
        assert_eq!(left_undone(&s, Some(dir), false, 0), LeftUndone::Fetching);
        s.finished = 3;
        s.input_done = false;
        let idle = LeftUndone::Input { read: 3 };
        assert_eq!(left_undone(&s, Some(dir), false, 0), idle);
        s.finished = 2;
        assert_eq!(left_undone(&s, Some(dir), false, 0), LeftUndone::Fetching);
    }

    /// Stopped while an outcome waited for the output, the outcomes behind it were never
    /// read, nor their failures counted: "every object was fetched and stored" was said of
    /// a batch whose last object had failed. The progress counts them all.
    #[test]
    fn a_stop_before_the_last_sync_counts_the_failures_not_yet_read() {
        let dir = std::path::Path::new("/srv/mirror");
        let mut s = dist::worker::progress::Snapshot::default();
        (s.objects, s.input_done, s.started, s.finished) = (3, true, 3, 3);
        s.failed = 1;
        let sync = |all_ok| LeftUndone::Sync { dir, all_ok };
        assert_eq!(left_undone(&s, Some(dir), false, 0), sync(false));
        s.failed = 0;
        // A sync that failed is no object's, but the names it left are no better.
        assert_eq!(left_undone(&s, Some(dir), false, 1), sync(false));
    }

    /// A sync that panicked did not make the names durable: it is a failure to report,
    /// as one that returned an error is, not a sync that succeeded.
    #[tokio::test(start_paused = true)]
    async fn a_sync_that_panicked_is_a_failure_while_the_batch_runs() {
        let mut syncs = panicking();
        syncs.stored();
        assert!(syncs.next().await.is_ok(), "the sync started");
        let e = syncs.next().await.expect_err("a panicked sync is no sync");
        assert_eq!(e.kind(), dist::ErrorKind::Io);
        assert!(e.to_string().contains("syncing"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sync_that_panicked_is_a_failure_at_the_end() {
        let mut syncs = panicking();
        syncs.stored();
        assert!(syncs.next().await.is_ok(), "the sync started");
        let failed = syncs.finish().await;
        assert_eq!(failed.len(), 2, "the running sync and the last: {failed:?}");
        assert!(failed.iter().all(|e| e.kind() == dist::ErrorKind::Io));
    }
}
