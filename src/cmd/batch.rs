//! The worker behind `dist fetch <locator> -`: objects from stdin (or the one object given
//! with `--output`), frames or JSON lines on stdout, a progress line on a terminal.

use std::io::Write;

use dist::sink::{self, layout::LayoutStore};
use dist::worker::{self, Destination, WorkerOptions};
use futures::{FutureExt, StreamExt};

use super::progress::Display;
use super::{flush, interrupted, open_remote, open_report, report, EXIT_FAILED, EXIT_USAGE};
use crate::cli::{FetchArgs, Global};

/// The worker: objects from stdin (or the one object given, with `--output`), frames or
/// JSON lines on stdout.
pub async fn run(global: &Global, args: FetchArgs) -> u8 {
    let destination = match &args.output {
        Some(dir) => match LayoutStore::open(dir) {
            Ok(store) => Destination::Store {
                store,
                verify_existing: args.verify_existing,
            },
            Err(e) => return report(&e, EXIT_USAGE),
        },
        None => Destination::default(),
    };
    let mut report_file = match open_report(args.report.as_deref()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let remote = match open_remote(global, &args.locator, args.jobs) {
        Ok(r) => r,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    if let Err(e) = remote.check().await {
        eprintln!("dist: cannot use {}: {e}", remote.describe());
        return EXIT_USAGE;
    }
    let progress = std::sync::Arc::new(dist::worker::progress::Progress::default());
    let display = Display::new(progress.clone(), global.quiet);
    let opts = WorkerOptions {
        jobs: args.jobs,
        ordered: args.ordered,
        destination,
        shard: args.shard,
        progress: Some(progress),
    };
    let framed = args.output.is_none();
    let input: Box<dyn tokio::io::AsyncBufRead + Unpin + Send> = if args.object == "-" {
        Box::new(tokio::io::BufReader::with_capacity(
            64 << 10,
            tokio::io::stdin(),
        ))
    } else {
        let line = std::iter::once(args.object.as_str())
            .chain(args.hints.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        Box::new(std::io::Cursor::new(line.into_bytes()))
    };
    let mut outcomes = worker::run(remote, input, opts);
    let ticker = display.start();
    let mut out = std::io::BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
    let mut failed = 0usize;
    let mut interrupted = std::pin::pin!(interrupted());
    loop {
        let next = match outcomes.next().now_or_never() {
            Some(n) => n,
            None => {
                // Nothing ready: hand what we have to the reader before waiting.
                if flush(&mut out).is_err() {
                    return EXIT_FAILED;
                }
                tokio::select! {
                    n = outcomes.next() => n,
                    code = &mut interrupted => {
                        drop(outcomes);
                        let _ = flush(&mut out);
                        display.finish(ticker);
                        eprintln!("dist: interrupted; objects reported so far are complete");
                        return code;
                    }
                }
            }
        };
        let Some(mut outcome) = next else { break };
        if let Some(e) = &outcome.error {
            failed += 1;
            if !global.quiet {
                display.message(&format!("dist: line {}: {e}", outcome.line));
            }
        }
        let line = sink::report::json_line(&outcome);
        let written = if framed {
            sink::framed::write_frame(&mut out, &mut outcome)
        } else {
            writeln!(out, "{line}")
        };
        if let Err(e) = written {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("dist: writing to stdout: {e}");
            }
            return EXIT_FAILED;
        }
        if let Some(r) = &mut report_file {
            if let Err(e) = writeln!(r, "{line}") {
                eprintln!("dist: writing the report: {e}");
                return EXIT_FAILED;
            }
        }
    }
    display.finish(ticker);
    if flush(&mut out).is_err() {
        return EXIT_FAILED;
    }
    if let Some(mut r) = report_file {
        if let Err(e) = r.flush() {
            eprintln!("dist: writing the report: {e}");
            return EXIT_FAILED;
        }
    }
    if failed > 0 {
        EXIT_FAILED
    } else {
        0
    }
}
