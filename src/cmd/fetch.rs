//! `dist fetch`: one object to stdout, streamed as it arrives; with `-` or `--output`, the
//! worker ([`super::batch`]).

use bytes::Bytes;
use dist::fetch::{Download, MAX_MANIFEST_SIZE};
use dist::sink::stream::StreamWriter;
use dist::{Error, ErrorKind, Hints, Object, Remote};

use super::output::RawStdout;
use super::progress::Meter;
use super::{check_layout, exit_for, open_locator, report, Downloads, EXIT_USAGE};
use crate::cli::{FetchArgs, Global};

/// `dist fetch`: one object to stdout, or the worker ([`super::batch`]) for `-` or `-o`;
/// the exit status.
pub async fn run(global: &Global, args: FetchArgs) -> u8 {
    if let Some(misplaced) = misplaced_option(&args) {
        return report(&Error::invalid(misplaced), EXIT_USAGE);
    }
    if let Some(pasted) = api_url_as_locator(&args) {
        return report(&Error::invalid(pasted), EXIT_USAGE);
    }
    if let Some(pasted) = reference_before_another_object(&args) {
        return report(&Error::invalid(pasted), EXIT_USAGE);
    }
    if args.object == "-" || args.output.is_some() {
        return super::batch::run(global, args).await;
    }
    let parsed = args.object.parse::<Object>().and_then(|o| {
        let words: Vec<&str> = args.hints.iter().map(String::as_str).collect();
        Ok((o, super::hint_words::parse(&words)?))
    });
    let (object, hints) = match parsed {
        Ok(v) => v,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    // A tag names a manifest, never a blob: nothing to split.
    let downloads = match object {
        Object::Tag(_) => Downloads::Manifests,
        Object::Digest(_) => Downloads::Blobs,
    };
    let opened = args.locator.parse().and_then(|locator: dist::Locator| {
        Ok((
            open_locator(global, locator.clone(), 1, downloads)?,
            locator,
        ))
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
        (args.jobs.is_some(), "--jobs"),
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
        // `-j` is also taken for splitting one object, which is another option's job.
        let streams = if args.jobs.is_some() {
            " (--range-streams sets how many connections fetch parts of one large blob)"
        } else {
            ""
        };
        format!(
            "{} {verb} to many objects (object `-`) or to -o DIR; a one-shot fetch writes \
             its object to stdout{streams}",
            given.join(", ")
        )
    })
}

/// `dist fetch host/name:v1 -` or `dist fetch host/name:v1 sha256:…`: an image reference
/// pasted as the locator before an object of its own. The locator's own refusal names the
/// spelling for the reference's object (`host/name v1`), which is right when that object
/// is the one given, but for the worker dropped its `-` (a manifest fetched where layers
/// were piped in), and otherwise fetched another object than the one given. The locator
/// is said as written, without what was pasted onto it: a scheme in front is kept.
fn reference_before_another_object(args: &FetchArgs) -> Option<String> {
    let image = args.locator.parse::<dist::image::ImageRef>().ok()?;
    let pasted = image.object().to_string();
    if pasted == args.object {
        return None;
    }
    let is_layout = |dir: &std::path::Path| dir.join("oci-layout").is_file();
    let what = match &image.locator {
        dist::Locator::Registry(_) if args.locator.parse::<dist::Locator>().is_err() => {
            "a repository"
        }
        // A directory named with a colon or an `@` may be a layout of its own.
        dist::Locator::Layout(dir)
            if is_layout(dir)
                && !is_layout(std::path::Path::new(
                    args.locator.strip_prefix("oci:").unwrap_or(&args.locator),
                )) =>
        {
            "a layout"
        }
        _ => return None,
    };
    let suffix = image.tag.iter().map(|t| format!(":{t}"));
    let suffix: String = suffix
        .chain(image.digest.iter().map(|d| format!("@{d}")))
        .collect();
    let written = args.locator.strip_suffix(&suffix)?;
    let object = if args.object == "-" {
        "the objects come on stdin".to_string()
    } else {
        format!("the object is {}", args.object)
    };
    let kind = if image.digest.is_some() {
        "digest"
    } else {
        "tag"
    };
    Some(format!(
        "invalid locator {:?}: a locator names {what} alone, without the {kind} {pasted}; \
         {object}: {written} {}",
        args.locator, args.object
    ))
}

/// A registry API URL pasted as the locator that is no locator at all
/// (`http://host/v2/team/app/blobs/sha256:…`, as curl is given it): said with the locator
/// and object it names, where it was read as a reference with the tag `…` of a repository
/// `…/blobs/sha256`. One that parses (`host/v2/team/app`) is asked for, as a repository
/// may be named so, and its 404 says what was likely meant.
fn api_url_as_locator(args: &FetchArgs) -> Option<String> {
    if args.locator.parse::<dist::Locator>().is_ok() {
        return None;
    }
    super::api_url::as_locator(&args.locator, Some(&args.object))
}

/// Content up to this size is held back until it verifies, and only then written: a
/// manifest, a config or a small blob piped into `jq` or `tar` never reaches the reader
/// unverified (a pipeline without `pipefail` would not see the exit status), and content
/// that does not verify is fetched once more from the origin, as the worker does. Larger
/// content streams as it arrives; for it the exit status is the verdict. A download with a
/// limit (a manifest, capped at [`MAX_MANIFEST_SIZE`]) is held back up to that limit
/// instead: it can never be larger, so holding all of it costs bounded memory, and a
/// registry that sends an endless or corrupt manifest gets nothing of it to the reader.
const HOLD_BACK: usize = 1 << 20;

/// How much of `download` is held back: see [`HOLD_BACK`].
fn hold_back(download: &Download) -> usize {
    let limit = download
        .meta()
        .limit
        .map_or(0, |l| l.min(MAX_MANIFEST_SIZE));
    HOLD_BACK.max(limit as usize)
}

/// Streams one object to stdout: held back while it is small (see [`HOLD_BACK`]), then
/// written as it arrives (an object may be far larger than memory), by a thread of its own
/// so that receiving and hashing go on meanwhile; the exit status says whether it
/// verified. With `meter`, a download that takes more than a second shows its progress on
/// stderr.
pub async fn fetch_to_stdout(
    remote: &dyn Remote,
    object: &Object,
    hints: &Hints,
    meter: bool,
) -> Result<(), Error> {
    let mut out = Stdout::new(object);
    let mut shown: Option<Meter> = None;
    let mut attempt = 1;
    // Failures in a row of fetches that broke beyond a resume (see `Error::restart`).
    let mut failures = 0;
    let result = loop {
        let mut held = Vec::new();
        // The fetch is inside: a declared size or announced digest other than the one
        // asked for fails it, and is content that would not verify, fetched again as such.
        let received: Result<(), Error> = async {
            let hints = hints.after_failures(attempt, failures);
            let mut download = remote.fetch(object, &hints).await?;
            let size = download.meta().size;
            let hold = hold_back(&download);
            let meter = shown.get_or_insert_with(|| Meter::start(size, meter));
            meter.restart();
            out.restart();
            let mut held_bytes = 0;
            while let Some(chunk) = download.chunk().await? {
                out.refuse_binary_on_terminal(&chunk)?;
                meter.add(chunk.len() as u64);
                let written = if out.started() {
                    out.write_all(std::iter::once(chunk)).await
                } else {
                    held_bytes += chunk.len();
                    held.push(chunk);
                    held_bytes <= hold || out.write_all(held.drain(..)).await
                };
                if !written {
                    return Ok(()); // the writer stopped; finish() says why
                }
            }
            Ok(())
        }
        .await;
        match received {
            Ok(()) => {
                // A stopped writer is reported by finish().
                out.write_all(held.drain(..)).await;
                break Ok(());
            }
            Err(e) if !out.started() && dist::remote::fetch_again(remote, &e, attempt) => {
                tracing::warn!(%object, error = %e, "{}", dist::fetch::refetch_warning(&e));
                attempt += 1;
                failures = 0;
            }
            // Broken beyond a resume while all of it was held back: fetched whole again,
            // and verified as any fetch is.
            Err(e) if e.restart().is_some() && !out.started() => {
                tracing::debug!(%object, error = %e, "the body broke and cannot be resumed; fetching again");
                failures = e.restart().unwrap_or_default();
            }
            Err(e) => break Err(e),
        }
    };
    // The writer first: what it had queued is written (and counted) by then.
    let finished = out.finish().await;
    // Past what is held back the content streamed: a file redirected to (`> layer.tar`)
    // holds bytes that look like the object, and the cause alone (a digest mismatch, a
    // broken connection) read as if nothing had been written.
    // So does a file that stopped taking them (a full disk): the cause said only that.
    let noted = |e: Error| match streamed_note() {
        Some(note) => e.with_note(note),
        None => e,
    };
    let result = match finished {
        Ok(()) => result.map_err(noted),
        // The reader went away (`| head`): nothing left to do, and nothing to report.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(noted(
            Error::new(ErrorKind::Io, "writing to stdout")
                .with_cause(e)
                .with_object(object),
        )),
    };
    if let Some(meter) = shown {
        meter.finish(result.is_ok());
    }
    result
}

/// Bytes of the one-shot fetch's content stdout took so far. The process fetches one
/// object this way, and `main` abandons it at `--timeout` without a word from here, so the
/// count is the process's.
static STREAMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A writer that adds to `count` the bytes its writes took. Counted as they were handed to
/// the writer thread, bytes still queued when the run was abandoned at `--timeout` (a
/// slow disk, a reader that stopped reading) were told as written to stdout, megabytes
/// more than it held.
struct Counted<W> {
    out: W,
    count: &'static std::sync::atomic::AtomicU64,
}

/// The most one write to stdout is given: a write into a pipe whose reader stopped takes
/// part of its bytes and waits for room for the rest, and is counted only once it
/// returns, so this much may be out without being counted.
const PIECE: usize = 64 << 10;

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(&buf[..buf.len().min(PIECE)])?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let mut room = PIECE;
        let mut piece = Vec::with_capacity(bufs.len());
        for buf in bufs {
            if room == 0 {
                break;
            }
            let n = buf.len().min(room);
            piece.push(std::io::IoSlice::new(&buf[..n]));
            room -= n;
        }
        let n = self.out.write_vectored(&piece)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// For the message of a one-shot fetch that failed or was abandoned: what of it already
/// went to stdout, unverified, when anything did. A file redirected to (`> layer.tar`)
/// holds bytes that look like the object, and the cause alone (a digest mismatch, a broken
/// connection, the timeout) read as if nothing had been written.
pub fn streamed_note() -> Option<String> {
    match STREAMED.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        n => Some(format!(
            "the {} already written to stdout are not this object: discard them",
            super::progress::bytes(n)
        )),
    }
}

/// How much of the start of some content decides whether it is binary, as curl decides.
const BINARY_CHECKED: usize = 8 << 10;

/// Stdout for one object: its writer thread, started with the first bytes to write, and
/// the guard that keeps binary content off a terminal.
struct Stdout<'a> {
    object: &'a Object,
    writer: Option<StreamWriter<Counted<RawStdout>>>,
    /// Whether stdout is a terminal, which binary content must not reach.
    terminal: bool,
    /// How many bytes of this fetch's content have been looked at for binary.
    checked: usize,
}

impl<'a> Stdout<'a> {
    fn new(object: &'a Object) -> Stdout<'a> {
        Stdout {
            object,
            writer: None,
            terminal: std::io::IsTerminal::is_terminal(&std::io::stdout()),
            checked: 0,
        }
    }

    /// Looks at the content from its start again: it is being fetched once more (nothing
    /// of it was written), and the copy that did not verify said nothing of this one.
    fn restart(&mut self) {
        if !self.started() {
            self.checked = 0;
        }
    }

    /// Whether any bytes went to the writer.
    fn started(&self) -> bool {
        self.writer.is_some()
    }

    /// As curl does: a layer dumped on a terminal garbles it and helps no one. The first
    /// [`BINARY_CHECKED`] bytes decide, in however many chunks they come: a server that
    /// sent a few bytes of text first got the NUL bytes after them onto the terminal.
    /// Nothing is written before they are all looked at, as content is held back longer.
    fn refuse_binary_on_terminal(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if !self.terminal || self.checked >= BINARY_CHECKED {
            return Ok(());
        }
        let start = &chunk[..chunk.len().min(BINARY_CHECKED - self.checked)];
        self.checked += start.len();
        if looks_binary(start) {
            return Err(Error::invalid(
                "binary content is not written to a terminal; redirect stdout (> FILE, | tar \
                 tz) or store it with -o DIR",
            )
            .with_object(self.object));
        }
        Ok(())
    }

    /// Hands `chunks` to the writer, starting it with them; `false` once it has stopped.
    async fn write_all(&mut self, chunks: impl Iterator<Item = Bytes>) -> bool {
        let Some(writer) = &mut self.writer else {
            let out = Counted {
                out: RawStdout::new(),
                count: &STREAMED,
            };
            self.writer = Some(StreamWriter::start(out, chunks.collect()));
            return true;
        };
        for chunk in chunks {
            if writer.write(chunk).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Waits for the writer to write everything; how writing went.
    async fn finish(self) -> std::io::Result<()> {
        match self.writer {
            Some(w) => w.finish().await.1,
            None => Ok(()),
        }
    }
}

/// Whether the start of some content is binary rather than text: a NUL byte, as curl
/// decides. Manifests, configs and other JSON never hold one.
fn looks_binary(start: &[u8]) -> bool {
    start.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Only what the writer took is counted: a write that fails, and what follows it, are
    /// not bytes stdout holds.
    #[test]
    fn only_bytes_written_are_counted() {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let full = std::io::Cursor::new([0u8; 10]);
        let mut out = Counted {
            out: full,
            count: &COUNT,
        };
        assert!(out.write_all(&[7; 25]).is_err(), "the cursor holds 10");
        let slices = [std::io::IoSlice::new(&[1; 4])];
        assert_eq!(out.write_vectored(&slices).unwrap(), 0);
        assert_eq!(COUNT.load(Ordering::Relaxed), 10);
    }

    /// A write takes at most a piece, so that one stuck in a stalled pipe leaves little
    /// uncounted; vectored writes are cut the same.
    #[test]
    fn writes_are_cut_to_pieces() {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let mut out = Counted {
            out: Vec::new(),
            count: &COUNT,
        };
        assert_eq!(out.write(&vec![1; PIECE + 5]).unwrap(), PIECE);
        let (a, b) = (vec![2; PIECE - 3], vec![3; 10]);
        let slices = [std::io::IoSlice::new(&a), std::io::IoSlice::new(&b)];
        assert_eq!(out.write_vectored(&slices).unwrap(), PIECE);
        assert_eq!(COUNT.load(Ordering::Relaxed), 2 * PIECE as u64);
        assert_eq!(&out.out[2 * PIECE - 3..], [3; 3]);
    }
}
