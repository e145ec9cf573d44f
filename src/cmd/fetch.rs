//! `dist fetch`: one object to stdout, streamed as it arrives; with `-` or `--output`, the
//! worker ([`super::batch`]).

use dist::sink::stream::StreamWriter;
use dist::{Error, Hints, Object, Remote};

use super::progress::Meter;
use super::{check_layout, exit_for, open_locator, report, EXIT_USAGE};
use crate::cli::{FetchArgs, Global};

pub async fn run(global: &Global, args: FetchArgs) -> u8 {
    if let Some(misplaced) = misplaced_option(&args) {
        return report(&Error::invalid(misplaced), EXIT_USAGE);
    }
    if args.object == "-" || args.output.is_some() {
        return super::batch::run(global, args).await;
    }
    let parsed = args
        .object
        .parse::<Object>()
        .and_then(|o| Ok((o, Hints::parse(args.hints.iter().map(String::as_str))?)));
    let (object, hints) = match parsed {
        Ok(v) => v,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    let opened = args.locator.parse().and_then(|locator: dist::Locator| {
        Ok((open_locator(global, locator.clone(), 1)?, locator))
    });
    let (remote, locator) = match opened {
        Ok(r) => r,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    if let Err(code) = check_layout(remote.as_ref(), &locator).await {
        return code;
    }
    // As curl does: a meter when the content goes to a file or a pipe and stderr is a
    // terminal someone is looking at.
    let meter = global.draws_progress()
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && !std::io::IsTerminal::is_terminal(&std::io::stdout());
    match fetch_to_stdout(remote.as_ref(), &object, &hints, meter).await {
        Ok(()) => 0,
        Err(e) => report(&e, exit_for(&e)),
    }
}

/// An option given where it does nothing, said at once rather than ignored: the worker's
/// options on a one-shot fetch to stdout, hints after `-` (they go on each input line).
fn misplaced_option(args: &FetchArgs) -> Option<String> {
    if args.object == "-" {
        return (!args.hints.is_empty()).then(|| {
            format!(
                "hints go on each input line after its object, not after `-` (got {})",
                args.hints.join(" ")
            )
        });
    }
    if args.output.is_some() {
        return None;
    }
    let worker_only = [
        (args.report.is_some(), "--report"),
        (args.ordered, "--ordered"),
        (args.shard.is_some(), "--shard"),
    ];
    let given: Vec<&str> = worker_only
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
    (!given.is_empty()).then(|| {
        let verb = if given.len() > 1 { "apply" } else { "applies" };
        format!(
            "{} {verb} to many objects (object `-`) or to -o DIR; a one-shot fetch writes \
             its object to stdout",
            given.join(", ")
        )
    })
}

/// Streams one object to stdout. The bytes go out as they arrive (an object may be far
/// larger than memory), written by a thread of their own so that receiving and hashing go
/// on meanwhile; the exit status says whether they verified. With `meter`, a download
/// that takes more than a second shows its progress on stderr.
pub async fn fetch_to_stdout(
    remote: &dyn Remote,
    object: &Object,
    hints: &Hints,
    meter: bool,
) -> Result<(), Error> {
    let mut download = remote.fetch(object, hints).await?;
    let meter = Meter::start(download.meta().size, meter);
    let mut guard_terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut out = StreamWriter::start(std::io::stdout(), Vec::new());
    let received = loop {
        match download.chunk().await {
            Ok(Some(chunk)) => {
                // As curl does: a layer dumped on a terminal garbles it and helps no one.
                if std::mem::take(&mut guard_terminal) && looks_binary(&chunk) {
                    break Err(Error::invalid(
                        "binary content is not written to a terminal; redirect stdout \
                         (> FILE, | tar tz) or store it with -o DIR",
                    )
                    .with_object(object));
                }
                meter.add(chunk.len() as u64);
                if out.write(chunk).await.is_err() {
                    break Ok(()); // the writer stopped; finish() says why
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let (_, written) = out.finish().await;
    let result = match written {
        Ok(()) => received,
        // The reader went away (`| head`): nothing left to do, and nothing to report.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::from(e).with_object(object)),
    };
    meter.finish(result.is_ok());
    result
}

/// Whether the start of some content is binary rather than text: a NUL byte, as curl
/// decides. Manifests, configs and other JSON never hold one.
fn looks_binary(start: &[u8]) -> bool {
    start.iter().take(8 << 10).any(|&b| b == 0)
}
