//! The worker behind `dist fetch <locator> -`: objects from stdin (or the one object given
//! with `--output`), frames or JSON lines on stdout, a progress line on a terminal.

use dist::sink::layout::LayoutStore;
use dist::worker::{self, Destination, WorkerOptions};
use futures::StreamExt;

use super::output::{Failure, Output};
use super::progress::Display;
use super::{
    check_before_batch, open_remote, report, report_file, stopped, Stop, EXIT_FAILED, EXIT_USAGE,
};
use crate::cli::{FetchArgs, Global};

/// The worker: objects from stdin (or the one object given, with `--output`), frames or
/// JSON lines on stdout.
pub async fn run(global: &Global, args: FetchArgs) -> u8 {
    let store = match args.output.as_ref().map(LayoutStore::open).transpose() {
        Ok(s) => s,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    let destination = match &store {
        Some(store) => Destination::Store {
            store: store.clone(),
            verify_existing: args.verify_existing,
        },
        None => Destination::default(),
    };
    let mut code = run_into(global, args, destination).await;
    // A batch that ran to its end has its blobs on disk under their names when it exits,
    // not only their content: a power loss after it could otherwise take back names it
    // reported stored. (A stopped run exits without waiting for the disk.)
    if let Some(store) = store.clone().filter(|_| code == 0 || code == EXIT_FAILED) {
        let synced = tokio::task::spawn_blocking(move || store.sync()).await;
        if let Ok(Err(e)) = synced {
            code = report(&e, EXIT_FAILED);
        }
    }
    // A mistyped locator or an unusable registry leaves no empty layout behind, nor does a
    // stop before anything was stored, once the stopped downloads' temporary files are
    // gone: they go as their tasks are dropped.
    if let Some(store) = store.filter(|_| code != 0) {
        super::drop_cancelled_tasks().await;
        store.remove_if_unused();
    }
    code
}

async fn run_into(global: &Global, args: FetchArgs, destination: Destination) -> u8 {
    let in_use = report_file::InUse {
        store: args.output.as_deref(),
        reads_stdin: args.object == "-",
    };
    let report_out = match report_file::open(args.report.as_deref(), &in_use) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let jobs = super::jobs_within_file_limit(global, args.jobs);
    let remote = match open_remote(global, &args.locator, jobs) {
        Ok(r) => r,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    // One stop for the whole run: a signal that came between two of them would be lost,
    // since the first one's handler stays installed.
    let mut stop = std::pin::pin!(async {
        tokio::select! {
            why = stopped(global) => why,
            () = super::output::reader_gone() => Stop::ReaderGone,
        }
    });
    if let Err(code) = check_before_batch(remote.as_ref(), &mut stop, false).await {
        return code;
    }
    // `dist fetch LOC -` typed without a pipe waits for lines from the keyboard: say so,
    // or it looks hung, and draw no progress line, which would redraw over what is typed.
    let typed = args.object == "-" && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if typed && !global.quiet {
        super::to_stderr(&format!(
            "dist: reading objects from the terminal, one per line (object [hint…]); end with \
             Ctrl-D, or pipe them in: … | dist fetch {} -",
            args.locator
        ));
    }
    let progress = std::sync::Arc::new(dist::worker::progress::Progress::default());
    let display = Display::new(progress.clone(), global.draws_progress() && !typed);
    let mut opts = WorkerOptions::default();
    opts.jobs = jobs;
    opts.ordered = args.ordered;
    opts.destination = destination;
    opts.shard = args.shard;
    opts.progress = Some(progress.clone());
    let framed = args.output.is_none();
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
    // Before any fetch starts: without a thread for the output there is no batch.
    let mut output = match Output::start(framed, report_out) {
        Ok(output) => output,
        Err(e) => {
            say!(
                "dist: cannot start the output thread: {e} (a limit on threads: ulimit -u \
                 or -v, or the cgroup's pids.max)"
            );
            return EXIT_USAGE;
        }
    };
    let mut outcomes = worker::run(remote, input, opts);
    let ticker = display.start();
    let mut failed = 0usize;
    let stopped = loop {
        // An outcome already there is an object already stored: reported before the stop,
        // not dropped by the pick between two ready branches.
        let next = tokio::select! {
            biased;
            n = outcomes.next() => n,
            why = &mut stop => break Some(why),
        };
        let Some(outcome) = next else { break None };
        if let Some(e) = &outcome.error {
            failed += 1;
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
        let sent = tokio::select! {
            sent = output.send(outcome) => sent,
            why = &mut stop => break Some(why),
        };
        if !sent {
            break None; // the writer stopped; finish() says why
        }
    };
    drop(outcomes);
    if stopped.is_none() && progress.input_was_empty() && !global.quiet {
        display.message("dist: warning: the input was empty: no objects to fetch");
    }
    let ended = match stopped {
        // Every object is done; what is left is writing out, which a stuck reader can make
        // last for ever, and a signal or `--timeout` must still end.
        None => tokio::select! {
            finished = output.finish() => Ok(finished),
            why = &mut stop => Err(why),
        },
        Some(why) => {
            output
                .finish_within(std::time::Duration::from_secs(2))
                .await;
            Err(why)
        }
    };
    display.finish(ticker);
    match ended {
        Ok(finished) => finished_code(finished, failed),
        Err(why) => {
            why.say(into_store);
            why.code()
        }
    }
}

/// The exit status of a batch that ran to its end.
fn finished_code(finished: Result<(), Failure>, failed: usize) -> u8 {
    match finished {
        Ok(()) if failed == 0 => 0,
        Ok(()) | Err(Failure::ReaderGone) => EXIT_FAILED,
        Err(Failure::Write(msg)) => {
            say!("dist: {msg}");
            EXIT_FAILED
        }
    }
}
