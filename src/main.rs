//! The `dist` command line: argument parsing, logging, exit codes, messages. Everything
//! else lives in the library.

mod cli;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use dist::auth::credentials::DockerConfig;
use dist::auth::CredentialSource;
use dist::image::ImageRef;
use dist::layout_remote::LayoutRemote;
use dist::pull::{Platforms, PullOptions};
use dist::registry::RegistryRemote;
use dist::retry::RetryPolicy;
use dist::sink::{self, layout::LayoutStore};
use dist::transport::{Transport, TransportOptions};
use dist::worker::{self, Destination, WorkerOptions};
use dist::{Error, ErrorKind, Hints, Locator, Object, Remote};
use futures::{FutureExt, StreamExt};

use cli::{Cli, Command, FetchArgs, Global, PullArgs, ResolveArgs};

/// Exit status when a fetch failed.
const EXIT_FAILED: u8 = 1;
/// Exit status for usage errors and remotes that cannot be used at all.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dist: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let timeout = cli.global.timeout;
    let code = runtime.block_on(async {
        let work = run(cli);
        match timeout {
            Some(t) => tokio::time::timeout(t, work).await.unwrap_or_else(|_| {
                eprintln!("dist: gave up after the --timeout of {t:?}");
                EXIT_FAILED
            }),
            None => work.await,
        }
    });
    // Give cancelled tasks a moment to drop (and so delete) their temporary files;
    // background connection tasks must not delay the exit beyond that.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "dist=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Fetch(args) => fetch(&cli.global, args).await,
        Command::Pull(args) => pull(&cli.global, args).await,
        Command::Resolve(args) => resolve(&cli.global, args).await,
    }
}

/// Builds the remote a locator names, sharing one transport.
fn open_remote(global: &Global, locator: &str, jobs: usize) -> Result<Arc<dyn Remote>, Error> {
    open_locator(global, locator.parse()?, jobs)
}

/// Builds the remote for a parsed locator.
fn open_locator(global: &Global, locator: Locator, jobs: usize) -> Result<Arc<dyn Remote>, Error> {
    match locator {
        Locator::Registry(mut repo) => {
            if global.plain_http {
                repo.force_plain_http();
            }
            let transport = Transport::new(TransportOptions {
                ca_file: global.ca_file.clone(),
                max_idle_per_host: jobs.max(1),
                // A large blob may be fetched in a few parallel ranges even with one job.
                max_connections_per_host: jobs.max(dist::ranged::RangeOptions::default().streams),
                connect_timeout: global.connect_timeout,
                idle_timeout: global.idle_timeout,
                // Headers wait as long as a body may stall: a registry that is slow to
                // start a large blob is not broken.
                response_timeout: global.idle_timeout,
            })?;
            let config = DockerConfig::load()?;
            let retry = RetryPolicy {
                retries: global.retries,
                ..RetryPolicy::default()
            };
            Ok(Arc::new(RegistryRemote::new(
                repo,
                transport,
                CredentialSource::DockerConfig(Arc::new(config)),
                retry,
            )))
        }
        Locator::Layout(path) => Ok(Arc::new(LayoutRemote::new(path))),
    }
}

async fn fetch(global: &Global, args: FetchArgs) -> u8 {
    if args.object == "-" || args.output.is_some() {
        return batch(global, args).await;
    }
    let parsed = args
        .object
        .parse::<Object>()
        .and_then(|o| Ok((o, Hints::parse(args.hints.iter().map(String::as_str))?)));
    let (object, hints) = match parsed {
        Ok(v) => v,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    let remote = match open_remote(global, &args.locator, 1) {
        Ok(r) => r,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    match fetch_to_stdout(remote.as_ref(), &object, &hints).await {
        Ok(()) => 0,
        Err(e) if e.kind() == ErrorKind::InvalidInput => report(&e, EXIT_USAGE),
        Err(e) => report(&e, EXIT_FAILED),
    }
}

/// Streams one object to stdout. The bytes go out as they arrive (an object may be far
/// larger than memory); the exit status says whether they verified.
async fn fetch_to_stdout(remote: &dyn Remote, object: &Object, hints: &Hints) -> Result<(), Error> {
    let mut download = remote.fetch(object, hints).await?;
    let stdout = std::io::stdout();
    while let Some(chunk) = download.chunk().await? {
        let written = tokio::task::block_in_place(|| stdout.lock().write_all(&chunk));
        match written {
            Ok(()) => {}
            // The reader went away (`| head`): nothing left to do, and nothing to report.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(Error::from(e).with_object(object)),
        }
    }
    tokio::task::block_in_place(|| stdout.lock().flush()).or_else(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(Error::from(e))
        }
    })
}

/// The worker: objects from stdin (or the one object given, with `--output`), frames or
/// JSON lines on stdout.
async fn batch(global: &Global, args: FetchArgs) -> u8 {
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
    let mut report_file = match &args.report {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("dist: cannot create report {}: {e}", path.display());
                return EXIT_USAGE;
            }
        },
        None => None,
    };
    let remote = match open_remote(global, &args.locator, args.jobs) {
        Ok(r) => r,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    if let Err(e) = remote.check().await {
        eprintln!("dist: cannot use {}: {e}", remote.describe());
        return EXIT_USAGE;
    }
    let opts = WorkerOptions {
        jobs: args.jobs,
        ordered: args.ordered,
        destination,
        ..WorkerOptions::default()
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
                        eprintln!("dist: interrupted; objects reported so far are complete");
                        return code;
                    }
                }
            }
        };
        let Some(mut outcome) = next else { break };
        if let Some(e) = &outcome.error {
            failed += 1;
            eprintln!("dist: line {}: {e}", outcome.line);
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

/// `dist pull`: the image into an OCI layout, one JSON line per object on stdout.
async fn pull(global: &Global, args: PullArgs) -> u8 {
    let image = match args.reference.parse::<ImageRef>() {
        Ok(i) => i,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    let store = match LayoutStore::open(&args.output) {
        Ok(s) => s,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    let mut report_file = match &args.report {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("dist: cannot create report {}: {e}", path.display());
                return EXIT_USAGE;
            }
        },
        None => None,
    };
    let remote = match open_locator(global, image.locator.clone(), args.jobs) {
        Ok(r) => r,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    if let Err(e) = remote.check().await {
        eprintln!("dist: cannot use {}: {e}", remote.describe());
        return EXIT_USAGE;
    }
    let opts = PullOptions {
        platforms: match (args.all_platforms, args.platform) {
            (true, _) => Platforms::All,
            (false, Some(p)) => Platforms::One(p),
            (false, None) => Platforms::One(dist::image::Platform::host()),
        },
        jobs: args.jobs,
        verify_existing: args.verify_existing,
    };
    let mut out = std::io::stdout().lock();
    let mut write_failed = false;
    let on_event = |event: dist::pull::Event| {
        match &event {
            dist::pull::Event::Object(o) => {
                if let Some(e) = &o.error {
                    eprintln!("dist: {e}");
                }
            }
            dist::pull::Event::Skipped { descriptor, .. } => eprintln!(
                "dist: {}: {}",
                descriptor.digest,
                dist::pull::event::skip_reason(descriptor)
            ),
        }
        let line = event.json_line();
        // Each line is flushed as it comes: it is the progress report.
        let written = writeln!(out, "{line}").and_then(|_| out.flush());
        let reported = match &mut report_file {
            Some(r) => writeln!(r, "{line}"),
            None => Ok(()),
        };
        written.and(reported).map_err(|e| {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("dist: writing the JSON lines: {e}");
            }
            write_failed = true;
            Error::from(e)
        })
    };
    let object = image.object();
    let work = dist::pull::pull(remote, &object, image.ref_name(), &store, &opts, on_event);
    let result = tokio::select! {
        r = work => r,
        code = interrupted() => {
            eprintln!("dist: interrupted; objects reported so far are complete");
            return code;
        }
    };
    if let Some(Err(e)) = report_file.as_mut().map(Write::flush) {
        eprintln!("dist: writing the report: {e}");
        return EXIT_FAILED;
    }
    match result {
        Ok(p) if p.failed == 0 => 0,
        Ok(_) => EXIT_FAILED,
        Err(_) if write_failed => EXIT_FAILED,
        Err(e) if e.kind() == ErrorKind::InvalidInput => report(&e, EXIT_USAGE),
        Err(e) => report(&e, EXIT_FAILED),
    }
}

/// `dist resolve`: the descriptor a reference points to, as one JSON line.
async fn resolve(global: &Global, args: ResolveArgs) -> u8 {
    let image = match args.reference.parse::<ImageRef>() {
        Ok(i) => i,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    let remote = match open_locator(global, image.locator.clone(), 1) {
        Ok(r) => r,
        Err(e) => return report(&e, EXIT_USAGE),
    };
    match remote.resolve(&image.object()).await {
        Ok(d) => {
            let line = serde_json::to_string(&d.bare()).expect("descriptors serialise");
            match writeln!(std::io::stdout(), "{line}") {
                Ok(()) => 0,
                Err(_) => EXIT_FAILED,
            }
        }
        Err(e) if e.kind() == ErrorKind::InvalidInput => report(&e, EXIT_USAGE),
        Err(e) => report(&e, EXIT_FAILED),
    }
}

fn flush(out: &mut impl Write) -> std::io::Result<()> {
    out.flush().inspect_err(|e| {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("dist: writing to stdout: {e}");
        }
    })
}

/// Resolves on SIGINT or SIGTERM with the conventional exit status (128 + signal).
async fn interrupted() -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => 130,
        _ = term.recv() => 143,
    }
}

fn report(e: &Error, code: u8) -> u8 {
    eprintln!("dist: {e}");
    code
}
