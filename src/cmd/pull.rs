//! `dist pull`: a whole image into an OCI image layout, one JSON line per object, and the
//! worker's progress line on a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use dist::image::{ImageRef, IMAGE_NAME};
use dist::layout_remote::LayoutRemote;
use dist::pull::{Platforms, PullOptions};
use dist::reference::{Locator, Object};
use dist::server_text::one_line;
use dist::sink::layout::LayoutStore;
use dist::Error;

use super::progress::Display;
use super::{
    check_before_batch, exit_for, failed_too, first_steps, open_image, report, report_file,
    run_stop, unless_stopped, watch, Stop, EXIT_FAILED, EXIT_TEMPFAIL, EXIT_USAGE,
};
use crate::cli::{Global, PullArgs};

/// Whether the pull had fetched or found every object of the image, the last level's
/// included, none failing: all that was left was naming it in `index.json`.
fn every_object_stored(s: &dist::worker::progress::Snapshot) -> bool {
    every_object_handled(s) && s.failed == 0
}

/// Whether the pull had handled every object of the image, the last level's included,
/// some of them failing or not.
fn every_object_handled(s: &dist::worker::progress::Snapshot) -> bool {
    s.input_done && s.objects > 0 && s.finished == s.objects
}

/// `dist pull`: the image into an OCI layout, one JSON line per object on stdout.
pub async fn run(global: &Global, args: PullArgs) -> u8 {
    if let Some(pasted) = super::api_url::as_reference(&args.reference) {
        return report(&dist::Error::invalid(pasted), EXIT_USAGE);
    }
    let image = match args.reference.parse::<ImageRef>() {
        Ok(i) => i,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    let mut stop = std::pin::pin!(run_stop(global));
    if let Some(why) = watch(&mut stop) {
        why.say(true, None);
        return why.code();
    }
    let store = match first_steps::open_layout(&args.output, true, &mut stop).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let code = pull_into(global, args, image, &store, &mut stop).await;
    // A mistyped reference or an unusable registry leaves no empty layout behind, nor
    // does a stop before anything was stored, once the stopped downloads' temporary files
    // are gone: they go as their tasks are dropped.
    if code != 0 {
        super::drop_cancelled_tasks().await;
        store.remove_if_unused();
    }
    code
}

/// Where the pull's JSON lines go, stdout and the report, and what the lines written so
/// far tell the end of the run.
struct Output {
    lines: Lines,
    report_out: Option<Lines>,
    /// Named in every message about the report: a job writing several files had to guess.
    report_name: String,
    write_failed: bool,
    /// Objects that failed in a way a later pull would meet again (missing, not what their
    /// digest says): without them, every failure was for the moment (`EXIT_TEMPFAIL`), as
    /// for the worker.
    lasting: usize,
    last_line: u64,
}

/// What the end of a pull goes by: what was asked, where it stored, and what it shows.
struct Run<'a> {
    global: &'a Global,
    args: &'a PullArgs,
    store: &'a LayoutStore,
    object: &'a Object,
    started: std::time::Instant,
    display: &'a Display,
    progress: &'a dist::worker::progress::Progress,
}

/// A pull ended by a stop: why, the objects it left waiting on other runs, and the pull's
/// own error when the stop came in the sync after it.
struct Halted {
    why: Stop,
    waiting: Vec<(dist::Digest, std::path::PathBuf)>,
    failed: Option<Error>,
}

async fn pull_into<S: std::future::Future<Output = Stop>>(
    global: &Global,
    args: PullArgs,
    image: ImageRef,
    store: &LayoutStore,
    stop: &mut std::pin::Pin<&mut S>,
) -> u8 {
    let (remote, jobs, mut out) = match start(global, &args, &image, stop).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let progress = std::sync::Arc::new(dist::worker::progress::Progress::default());
    let display = Display::new(progress.clone(), global.draws_progress());
    let opts = options(&args, &image, jobs, progress.clone()).await;
    let started = std::time::Instant::now();
    let on_event = |event| out.on_event(event, &display, global.quiet);
    let object = image.object();
    let work = dist::pull::pull(remote, &object, image.ref_name(), store, &opts, on_event);
    let ticker = display.start();
    let result = {
        let mut work = std::pin::pin!(work);
        match unless_stopped(work.as_mut(), stop).await {
            Ok(r) => Ok(r),
            // Taken before the pull's jobs go, and their marks with them.
            Err(why) => Err(Halted {
                why,
                waiting: store.waiting_for_others(),
                failed: None,
            }),
        }
    };
    let mut unsynced = None;
    let result = sync_after_failure(result, store, stop, &mut unsynced).await;
    let run = Run {
        global,
        args: &args,
        store,
        object: &object,
        started,
        display: &display,
        progress: &progress,
    };
    let result = match result {
        Ok(r) => r,
        Err(halted) => return run.halted(&mut out, halted, unsynced, ticker).await,
    };
    let pulled = result.is_ok();
    if let (Ok(p), false) = (&result, global.quiet) {
        warn_other_platform(p, &opts.platforms, &object);
        warn_renamed(p, opts.image_name.as_deref(), &args.output);
    }
    let code = out.code_of(result, &run);
    say_unsynced(unsynced);
    out.finish(code, pulled, stop, &display, ticker).await
}

/// The pull's first steps: its report opened, the registry checked, its lines' writers
/// started; `Err` holds the exit status of the one that failed.
async fn start<S: std::future::Future<Output = Stop>>(
    global: &Global,
    args: &PullArgs,
    image: &ImageRef,
    stop: &mut std::pin::Pin<&mut S>,
) -> Result<(Arc<dyn dist::Remote>, usize, Output), u8> {
    let report_out =
        first_steps::open_report(args.report.as_deref(), Some(&args.output), false, stop).await?;
    let jobs = super::jobs_within_file_limit(global, args.jobs);
    let remote = open_image(global, image, jobs, super::Downloads::Blobs)
        .map_err(|e| report(&e, EXIT_USAGE))?;
    // After every usage error, which is status 2 and said whatever stdout is, and before
    // the registry is asked anything or the layout takes anything.
    if super::output::refused_before_start("writing to stdout") {
        return Err(EXIT_FAILED);
    }
    // The run's one stop covers the check too: a registry that does not answer must not
    // hold the pull beyond --timeout or a signal. A reader of the JSON lines that went
    // away (`| head -1`) stops it too, as it does the worker: found out only at the next
    // line, that was after the largest layer in flight, minutes later.
    check_before_batch(remote.as_ref(), stop).await?;
    let out = Output::open(report_out, args)?;
    Ok((remote, jobs, out))
}

/// What the pull is asked to do, from the arguments.
async fn options(
    args: &PullArgs,
    image: &ImageRef,
    jobs: usize,
    progress: Arc<dist::worker::progress::Progress>,
) -> PullOptions {
    let mut opts = PullOptions::default();
    opts.platforms = match (args.all_platforms, &args.platform) {
        (true, _) => Platforms::All,
        (false, Some(p)) => Platforms::One(p.clone()),
        (false, None) => Platforms::One(dist::image::Platform::host()),
    };
    opts.jobs = jobs;
    opts.verify_existing = args.verify_existing;
    opts.progress = Some(progress);
    opts.image_name = image_name(image).await;
    // Synced below once the error is in hand (see there).
    opts.sync_after_error = false;
    opts
}

/// Syncs a failed pull's objects reported stored, under the stop, once its error is in
/// hand: synced in the library, a stop in a sync that did not return (a hung disk)
/// dropped the error with the pull, and the run said only that "the others were not
/// fetched", never why the pull had failed. A failure of that sync is left in
/// `unsynced`, said after the pull's error, the cause first.
async fn sync_after_failure<S: std::future::Future<Output = Stop>>(
    result: Result<dist::Result<dist::pull::Pulled>, Halted>,
    store: &LayoutStore,
    stop: &mut std::pin::Pin<&mut S>,
    unsynced: &mut Option<String>,
) -> Result<dist::Result<dist::pull::Pulled>, Halted> {
    match result {
        Ok(Err(e)) => match sync_under(store, stop).await {
            Ok(said) => {
                *unsynced = said;
                Ok(Err(e))
            }
            Err(why) => Err(Halted {
                why,
                waiting: Vec::new(),
                failed: Some(e),
            }),
        },
        other => other,
    }
}

/// As Docker and podman do: a single-platform image for another platform is pulled,
/// and said so, since it will not run here (or where --platform meant it to); not with
/// -q, which promises no warnings.
fn warn_other_platform(pulled: &dist::pull::Pulled, platforms: &Platforms, object: &Object) {
    let Platforms::One(want) = platforms else {
        return;
    };
    if let Some(have) = pulled.image_platform.as_ref().filter(|h| !want.matches(h)) {
        let why = if pulled.image_platform_unlisted {
            "its index names no platform for it"
        } else {
            "it has no index of platforms to choose from"
        };
        say!(
            "dist: warning: {object} is an image for {have} only, not {want} ({why}); \
             pulled as it is"
        );
    }
}

/// The tag alone names an entry, as skopeo reads it: another repository's image of the
/// same tag took its name, which a mirror of many repositories into one layout lost
/// without a word. A moved tag of the same repository is the usual update.
fn warn_renamed(pulled: &dist::pull::Pulled, now: Option<&str>, output: &std::path::Path) {
    let Some(now) = now else {
        return;
    };
    for was in &pulled.replaced {
        if let Some(before) = was.annotations.get(IMAGE_NAME).filter(|b| *b != now) {
            // Names a layout's writer chose (the source's, or one pulled in before):
            // shown, they must stay on the line and carry no terminal escapes.
            let (before, now) = (one_line(before), one_line(now));
            say!(
                "dist: warning: {} in {} named {before} ({}); it names {now} now, and \
                 {before} has no name there (one layout per repository keeps both)",
                was.ref_name().unwrap_or_default(),
                output.display(),
                was.digest
            );
        }
    }
}

impl Run<'_> {
    /// The last line of a pull that failed as a whole, as a worker's failed line is.
    fn failure_line(&self, line: u64, e: Error) -> String {
        let reference = self.args.reference.clone();
        failure_line(line, reference, self.object, self.started, e)
    }

    /// Ends a pull a stop ended: its lines written as far as they go, then what was
    /// stored and what was not said; the exit status.
    async fn halted(
        &self,
        out: &mut Output,
        halted: Halted,
        mut unsynced: Option<String>,
        ticker: Option<tokio::task::JoinHandle<()>>,
    ) -> u8 {
        let Halted {
            why,
            waiting,
            failed,
        } = halted;
        let why = match why {
            Stop::ReaderGone => match sync_stored(self.global, self.store).await {
                Ok(said) => {
                    unsynced = said;
                    why
                }
                Err(stop) => stop,
            },
            other => other,
        };
        let code = failed.as_ref().map_or(why.code(), |e| why.code_after(e));
        // What to say of the pull's error: nothing when a line could not be written,
        // said as it failed (the pull's error is that one).
        let failed = failed.map(|e| {
            if out.write_failed {
                return None;
            }
            let e = e.spelt_as_reference();
            let said = format!("dist: {e}");
            // Its last line, as when no stop comes (see there): a stop in the sync
            // after it left the error on stderr only, and a job reading the lines
            // found none.
            let line = self.failure_line(out.last_line + 1, e);
            out.write_failed = out.write(line).is_err();
            Some(said)
        });
        // The lines written first, as at the end: on a terminal they come above the
        // summary.
        let report = async {
            match out.report_out.as_mut() {
                Some(r) => r.finish_within(std::time::Duration::from_secs(2)).await,
                None => true,
            }
        };
        let grace = std::time::Duration::from_secs(2);
        let (written, report_written) = tokio::join!(out.lines.finish_within(grace), report);
        // Every branch below says it: a stop in the sync or the naming finds the lines
        // held by a stuck reader as one while fetching does.
        let cut = cut_short(written, report_written, &out.report_name);
        self.display.finish(ticker);
        let snapshot = self.progress.snapshot();
        let output = &self.args.output;
        if let Some(said) = failed {
            // The pull had failed: its error first, then the sync's failure or what
            // was left of it.
            if let Some(said) = said {
                say!("{said}");
            }
            say_unsynced(unsynced);
            why.say_unsynced(output, false, cut);
            why.say_waiting(&waiting);
            return code;
        }
        say_unsynced(unsynced);
        if every_object_stored(&snapshot) {
            // Read once the pull is gone: no rename is to come, and one it began is
            // done by now or said to be under way (never waited for: a hung filesystem
            // would hold the stop).
            why.say_all_stored(&output.join("index.json"), self.store.index_entry(), cut);
        } else if every_object_handled(&snapshot) {
            // Some failed: what was left was the sync of those stored, no name to come.
            why.say_unsynced(output, false, cut);
        } else {
            why.say(true, cut);
        }
        why.say_waiting(&waiting);
        code
    }
}

impl Output {
    /// Starts the writers of stdout's lines and of the report's, the report emptied once
    /// both are there.
    fn open(report_out: Option<report_file::Opened>, args: &PullArgs) -> Result<Output, u8> {
        let lines = Lines::start()?;
        // The previous run's report stays until now: a run that could not start keeps it.
        // Named in every message about it: a job writing several files had to guess.
        let report_name = args.report.as_ref().map(|p| p.display().to_string());
        let report_name = report_name.unwrap_or_default();
        // Its writer first: a thread asked for once the report was emptied, and not to be
        // had, lost the previous run's report.
        let writer = report_out
            .as_ref()
            .map(|_| Lines::report(report_name.clone()))
            .transpose()?;
        let report_out = match (
            report_out.map(report_file::Opened::begin).transpose(),
            writer,
        ) {
            (Ok(Some(file)), Some((lines, give))) => {
                // The writer waits for it; one gone (a panic) fails the first line sent it.
                let _ = give.send(file);
                Some(lines)
            }
            (Ok(_), _) => None,
            (Err(code), _) => return Err(code),
        };
        Ok(Output {
            lines,
            report_out,
            report_name,
            write_failed: false,
            lasting: 0,
            last_line: 0,
        })
    }

    /// Hands one JSON line to the report's writer and to stdout's (see [`write_line`]).
    fn write(&mut self, line: String) -> dist::Result<()> {
        write_line(&mut self.lines, &mut self.report_out, line)
    }

    /// Writes one event's line, and says an object's failure or a platform skipped.
    fn on_event(
        &mut self,
        event: dist::pull::Event,
        display: &Display,
        quiet: bool,
    ) -> dist::Result<()> {
        self.last_line = self.last_line.max(match &event {
            dist::pull::Event::Object(o) => o.line,
            dist::pull::Event::Skipped { line, .. } => *line,
            _ => 0,
        });
        match &event {
            dist::pull::Event::Object(o) => {
                self.lasting += usize::from(o.error.as_ref().is_some_and(|e| !e.is_transient()));
                if let Some(e) = o.error.as_ref().filter(|_| !quiet) {
                    display.message(&format!("dist: {e}"));
                }
            }
            dist::pull::Event::Skipped { .. } if quiet => {}
            // A warning, not an error: the pull goes on and succeeds without it (a log
            // reader alerting on ERROR was woken by every Windows image).
            dist::pull::Event::Skipped { descriptor, .. } => display.message(&format!(
                "dist: warning: {}: {}",
                descriptor.digest,
                dist::pull::event::skip_reason(descriptor)
            )),
            // The library's events may grow; the JSON line below still reports one.
            _ => {}
        }
        self.write(event.json_line())
            .inspect_err(|_| self.write_failed = true)
    }

    /// The exit status of a pull that ran to its end, writing its failure's line.
    fn code_of(&mut self, result: dist::Result<dist::pull::Pulled>, run: &Run<'_>) -> u8 {
        match result {
            Ok(p) if p.failed == 0 => 0,
            Ok(_) if self.lasting == 0 => EXIT_TEMPFAIL,
            Ok(_) => EXIT_FAILED,
            Err(_) if self.write_failed => EXIT_FAILED,
            Err(e) => {
                let e = e.spelt_as_reference();
                // The tag's answer is the one-shot resolve's: a registry that passed the
                // check and then broke (75, for the moment), or refused the credentials for
                // the manifest (2), is so there and here alike, so a script can tell it
                // from an image that is not there.
                let code = report(&e, exit_for(&e));
                // It is the last line too (a tag that does not resolve, no platform that
                // matches): a mirroring job reading the reports found an empty one, and
                // the reason only on stderr.
                let line = run.failure_line(self.last_line + 1, e);
                match self.write(line) {
                    Ok(()) => code,
                    Err(_) => failed_too(code),
                }
            }
        }
    }

    /// Writes the rest of the lines out, stdout's then the report's, under the stop, and
    /// ends the progress display; the exit status.
    ///
    /// Every object is done; what is left is writing the lines out, which a reader that
    /// does not read can make last for ever, and a signal or `--timeout` must still end.
    /// The summary waits for them: on a terminal they come above it, as they came while
    /// the pull ran.
    async fn finish<S: std::future::Future<Output = Stop>>(
        &mut self,
        code: u8,
        pulled: bool,
        stop: &mut std::pin::Pin<&mut S>,
        display: &Display,
        ticker: Option<tokio::task::JoinHandle<()>>,
    ) -> u8 {
        let written = unless_stopped(self.lines.finish(), stop).await;
        display.finish(ticker);
        let code = match written {
            Ok(true) => code,
            Ok(false) => {
                self.write_failed = true;
                failed_too(code)
            }
            Err(why) => {
                say_stopped_writing(&why, pulled, None);
                // A failed pull's status 2 stays, as with Stop::code_after; a signal's wins.
                return why.code_over(code);
            }
        };
        // The report's last lines and its sync (not after a line failed, which was said),
        // under the stop as stdout's are: a reader of the report that does not read must
        // not hold the pull either.
        let Some(report) = self.report_out.as_mut() else {
            return code;
        };
        report.sync_at_end(!self.write_failed);
        match unless_stopped(report.finish(), stop).await {
            Ok(true) => code,
            Ok(false) => failed_too(code),
            // Stdout is written whole by now: it is the report that held the pull.
            Err(why) => {
                say_stopped_writing(&why, pulled, Some(&self.report_name));
                why.code_over(code)
            }
        }
    }
}

/// Syncs what a pull stopped by its stdout reader's going (`| head -1`) stored: that is no
/// reason to leave the objects its lines called stored without it, as the worker does not.
/// As [`sync_under`], with a signal or `--timeout` during it as its stop.
async fn sync_stored(global: &Global, store: &LayoutStore) -> Result<Option<String>, Stop> {
    let mut halt = std::pin::pin!(super::stopped(global));
    sync_under(store, &mut halt).await
}

/// Syncs `store` ([`LayoutStore::sync`]) on the blocking pool, unless `stop` comes first,
/// which is then returned. `Ok` holds what to say of a failure, for the caller to say
/// after the pull's own error ([`say_unsynced`]); the exit status is 1 already wherever
/// it runs (a failed pull, a reader gone).
async fn sync_under<S: std::future::Future<Output = Stop>>(
    store: &LayoutStore,
    stop: &mut std::pin::Pin<&mut S>,
) -> Result<Option<String>, Stop> {
    let store = store.clone();
    let sync = tokio::task::spawn_blocking(move || store.sync());
    Ok(match unless_stopped(sync, stop).await? {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("dist: {e}")),
        Err(e) => Some(format!("dist: syncing the layout failed: {e}")),
    })
}

/// Says the failure of a sync ([`sync_under`]), if there was one.
fn say_unsynced(said: Option<String>) {
    if let Some(said) = said {
        say!("{said}");
    }
}

/// Says why a pull stopped while its lines waited to be written: once it `pulled` the
/// image (every object handled, the image named), that only their writing was cut short;
/// "objects reported so far are complete" said of it that there were more to fetch.
/// `report` is the report's path when it was its lines that waited, not stdout's.
fn say_stopped_writing(why: &super::Stop, pulled: bool, report: Option<&str>) {
    let held = report.map_or(
        super::Unwritten::Stdout(super::Writes::Lines),
        super::Unwritten::Report,
    );
    if pulled {
        why.say_unwritten(held);
    } else {
        why.say(true, Some(held));
    }
}

/// Which output a stopped pull found its writer still under way in (`written` and
/// `report_written` false), its last line perhaps cut short: each has a thread of its own,
/// and both may be held up (two FIFOs whose readers do not read), where stdout alone was
/// named and a job reading the report trusted its cut line.
fn cut_short(written: bool, report_written: bool, report: &str) -> Option<super::Unwritten<'_>> {
    match (written, report_written) {
        (false, false) => Some(super::Unwritten::StdoutOrReport(
            super::Writes::Lines,
            report,
        )),
        (false, true) => Some(super::Unwritten::Stdout(super::Writes::Lines)),
        (true, false) => Some(super::Unwritten::Report(report)),
        (true, true) => None,
    }
}

/// The JSON line of a pull that failed as a whole with `e`, numbered `line`, for the
/// image `reference` names (`object`), begun at `started`.
fn failure_line(
    line: u64,
    reference: String,
    object: &dist::reference::Object,
    started: std::time::Instant,
    e: Error,
) -> String {
    let mut outcome = dist::worker::Outcome::new(line, reference);
    // What it asked for, as a worker's failed line says: the digest the reference names
    // (`app@sha256:…`), `null` for a tag. It was `null` for both, and a job reading worker
    // and pull reports alike lost the digest of a pull by digest.
    outcome.digest = object.digest().cloned();
    outcome.elapsed = started.elapsed();
    outcome.fail(e);
    dist::sink::report::json_line(&outcome)
}

/// Hands one JSON line to the report's writer and to stdout's. `Err` once either failed,
/// said already.
fn write_line(lines: &mut Lines, report_out: &mut Option<Lines>, line: String) -> dist::Result<()> {
    if let Some(r) = report_out {
        r.send(line.clone())?;
    }
    lines.send(line)
}

/// The JSON lines on stdout, or in the `--report` file, written by a thread of their own.
/// Written on the runtime's one thread, a reader that stopped reading (`| less` left
/// waiting, a stuck `ssh`, a report's FIFO or `>(…)` whose consumer is stuck) held it in
/// `write` once the pipe was full: every transfer stopped with it, and neither a signal nor
/// `--timeout` could end the pull. The queue is not bounded, but the pull is: it reads at
/// most [`dist::pull::MAX_DESCRIPTORS`] objects, a line each.
struct Lines {
    queue: Option<std::sync::mpsc::Sender<String>>,
    /// Set by the writer when a write failed (said there; a reader gone is said nothing of).
    failed: Arc<AtomicBool>,
    /// Whether the writer syncs the file once every line is written (the report's).
    sync: Arc<AtomicBool>,
    /// Sent when the writer ends: whether everything was written.
    done: tokio::sync::oneshot::Receiver<bool>,
    /// What is written, for the error of a line that cannot be.
    what: &'static str,
}

/// The `--report` file, begun.
type ReportFile = std::io::BufWriter<report_file::WholeLines>;

/// What a writer of [`Lines`] does with them: `Err` with what to say of its failure, if
/// anything (a reader gone is said nothing of). Given the queue and whether to sync at
/// its end.
type Writer = Box<dyn FnOnce(&Receiver<String>, &AtomicBool) -> Result<(), Option<String>> + Send>;

impl Lines {
    /// Starts the writer of stdout; `Err` is the exit status, the reason already said.
    fn start() -> Result<Lines, u8> {
        let write: Writer = Box::new(|rx, _| {
            write_lines(rx).map_err(|e| {
                (e.kind() != std::io::ErrorKind::BrokenPipe)
                    .then(|| format!("dist: writing to stdout: {e}"))
            })
        });
        Lines::spawn("dist-lines", "writing the JSON lines to stdout", write)
    }

    /// Starts the writer of the `--report` file, named `name` in what it says, and gives
    /// what to send it the file by, once begun ([`report_file::Opened::begin`]): a writer
    /// never given one writes nothing. Each line reaches the file as it comes: the report
    /// is what a killed pull leaves to tell what it finished. `Err` is the exit status, the
    /// reason already said.
    fn report(name: String) -> Result<(Lines, std::sync::mpsc::Sender<ReportFile>), u8> {
        let (give, file) = std::sync::mpsc::channel::<ReportFile>();
        let write: Writer = Box::new(move |rx, sync| {
            let Ok(mut out) = file.recv() else {
                return Ok(());
            };
            let wrote = write_all(rx, &mut out, || ());
            wrote.map_err(|e| Some(format!("dist: writing the report {name}: {e}")))?;
            if !sync.load(Ordering::Acquire) {
                return Ok(());
            }
            report_file::sync(out.get_ref())
                .map_err(|e| Some(format!("dist: syncing the report {name}: {e}")))
        });
        Ok((
            Lines::spawn("dist-report", "writing the report", write)?,
            give,
        ))
    }

    /// Starts `write` on a thread named `thread`; `Err` is the exit status, said.
    fn spawn(thread: &str, what: &'static str, write: Writer) -> Result<Lines, u8> {
        let (queue, rx) = std::sync::mpsc::channel::<String>();
        let (verdict, done) = tokio::sync::oneshot::channel();
        let failed = Arc::new(AtomicBool::new(false));
        let sync = Arc::new(AtomicBool::new(false));
        let (failing, syncing) = (failed.clone(), sync.clone());
        let spawned = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                let written = write(&rx, &syncing);
                if let Err(said) = &written {
                    failing.store(true, Ordering::Release);
                    if let Some(said) = said {
                        say!("{said}");
                    }
                }
                let _ = verdict.send(written.is_ok());
            });
        if let Err(e) = spawned {
            say!(
                "dist: cannot start the output thread: {e} (a limit on threads: ulimit -u \
                 or -v, or the cgroup's pids.max)"
            );
            return Err(EXIT_USAGE);
        }
        Ok(Lines {
            queue: Some(queue),
            failed,
            sync,
            done,
            what,
        })
    }

    /// Hands a line to the writer; `Err` once writing has failed.
    fn send(&mut self, line: String) -> dist::Result<()> {
        let sent = self.queue.as_ref().is_some_and(|q| q.send(line).is_ok());
        if !sent || self.failed.load(Ordering::Acquire) {
            return Err(Error::new(dist::ErrorKind::Io, self.what));
        }
        Ok(())
    }

    /// Has the writer sync the file once it has written every line: the pull ran to its
    /// end, and no line failed.
    fn sync_at_end(&self, sync: bool) {
        self.sync.store(sync, Ordering::Release);
    }

    /// Waits for the writer to write every line; whether it did.
    async fn finish(&mut self) -> bool {
        self.queue.take();
        (&mut self.done).await.unwrap_or(false)
    }

    /// Like [`Lines::finish`], but gives up after `limit`: a stopped pull must end even
    /// when its reader does not read. Whether the writer ended in time: `false` when it
    /// was still writing, the output ending perhaps in part of a line.
    async fn finish_within(&mut self, limit: std::time::Duration) -> bool {
        self.queue.take();
        tokio::time::timeout(limit, &mut self.done).await.is_ok()
    }
}

/// Writes the lines as they come into `out`, each handed on (flushed) before the writer
/// waits for more, while holding what `around` gives for them.
fn write_all<G>(
    rx: &Receiver<String>,
    out: &mut impl Write,
    mut around: impl FnMut() -> G,
) -> std::io::Result<()> {
    while let Ok(line) = rx.recv() {
        let _held = around();
        writeln!(out, "{line}")?;
        for more in rx.try_iter() {
            writeln!(out, "{more}")?;
        }
        out.flush()?;
    }
    Ok(())
}

/// Writes the lines as they come, above the progress line on a terminal, each handed to
/// the reader before the writer waits for more.
fn write_lines(rx: &Receiver<String>) -> std::io::Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let mut out = std::io::BufWriter::new(super::output::RawStdout::new());
    write_all(rx, &mut out, || terminal.then(super::progress::clear_line))
}

/// The full name the entry records: a registry image's own, or what the source layout's
/// entry of that tag records (so that pulling a layout into itself changes nothing).
async fn image_name(image: &ImageRef) -> Option<String> {
    let (Locator::Layout(root), Some(tag), None) = (&image.locator, &image.tag, &image.digest)
    else {
        return image.image_name();
    };
    let entries = LayoutRemote::new(root).entries().await.ok()?;
    let entry = entries.into_iter().find(|e| e.ref_name() == Some(tag))?;
    entry.annotations.get(IMAGE_NAME).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pull whose objects failed only for the moment (75) and whose lines could not all
    /// be written exits 1, as a failed write does: `code.max(1)` kept the 75, telling a
    /// cron job to retry what a full disk fails again. A stronger status stays.
    #[test]
    fn a_failed_write_after_failures_for_the_moment_is_status_1() {
        assert_eq!(failed_too(EXIT_TEMPFAIL), EXIT_FAILED);
        assert_eq!(failed_too(0), EXIT_FAILED);
        assert_eq!(failed_too(EXIT_USAGE), EXIT_USAGE);
    }

    /// A pull stopped with both stdout and its report held up says both may end cut
    /// short: stdout alone was named, and the report's cut line went unsaid.
    #[test]
    fn a_pull_stopped_with_both_outputs_held_up_names_both() {
        let said = |w, r| cut_short(w, r, "r.jsonl").map(super::super::Unwritten::held_and_cut);
        let both = said(false, false).unwrap();
        assert!(
            both.contains("the output and the report r.jsonl end with"),
            "{both}"
        );
        let stdout = said(false, true).unwrap();
        assert!(stdout.contains("the output ends with"), "{stdout}");
        assert!(!stdout.contains("r.jsonl"), "{stdout}");
        let report = said(true, false).unwrap();
        assert!(report.contains("the report r.jsonl ends with"), "{report}");
        assert!(said(true, true).is_none());
        // A pull writes JSON lines alone: no frame is ever cut short in its output.
        for cut in [both, stdout, report] {
            assert!(cut.contains("the last line"), "{cut}");
            assert!(!cut.contains("frame"), "{cut}");
        }
    }
}
