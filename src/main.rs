//! The `dist` command line: argument parsing (`cli`), one module per command (`cmd`),
//! logging and exit codes. Everything else lives in the library.

mod cli;
#[macro_use]
mod cmd;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, LogFormat};
use cmd::{EXIT_TIMEOUT, EXIT_USAGE};

fn main() -> ExitCode {
    cmd::drain_stderr_on_panic();
    cmd::flags::name_settings_by_flag();
    let code = run_to_exit();
    // Messages and log lines are written by a thread of their own, which a terminal that
    // takes no output holds: what it has not written yet would go with the process.
    cmd::drain_stderr();
    code
}

/// Everything `main` does but the last: the run, to its exit status.
fn run_to_exit() -> ExitCode {
    tune_allocator();
    catch_file_size_limit();
    cli::unset_empty_option_variables();
    let mut cli = Cli::try_parse().unwrap_or_else(|e| cli::explain_or_exit(e));
    let refused_filter = init_logging(cli.global.verbose, cli.global.quiet, cli.global.log_format);
    if cli.global.log_format == LogFormat::Json {
        cmd::messages_as_json();
    }
    if let Some(refused) = refused_filter {
        say!("dist: {refused}");
        return ExitCode::from(EXIT_USAGE);
    }
    if let Err(e) = cmd::ensure_file_limit() {
        say!("dist: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    // One runtime thread polls every transfer with less synchronisation (measured: client
    // CPU for 1000 small blobs 0.15-0.19 s on one thread against 0.25-0.27 s on two);
    // hashing large objects and writing files or stdout run on threads of their own.
    let mut builder = tokio::runtime::Builder::new_current_thread();
    // Room for the file work (a commit's fsync, a stored blob's re-hash) of every job at
    // the largest --jobs; large objects are hashed and written on threads not the pool's.
    builder.max_blocking_threads(2 * 1024 + 64);
    // The worker's output thread is woken in batches, and at the latest when the runtime
    // has nothing left to do.
    builder.on_thread_park(cmd::output::on_runtime_park);
    // Past a limit on threads (`ulimit -u`, a cgroup's `pids.max`) tokio queues blocking
    // work for the threads it has, but panics when it has none: one started now, while
    // there is room, and kept for the whole run, is always there to take it.
    builder.thread_keep_alive(std::time::Duration::MAX);
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            say!("dist: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // That thread. Where there is no room, tokio panics: caught, quietly (no thread of
    // ours runs yet). A thread of our own tried first, joined, then this, raced the
    // kernel: a joined thread still counts against the limit for a moment, and tokio's
    // panic ended the run (status 101), as it did once in CI under a limit of two.
    // Where it is not there, work for the pool goes to threads of its own, or is not run.
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let kept = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.spawn_blocking(|| {});
    }));
    std::panic::set_hook(quiet);
    if kept.is_ok() {
        cmd::pool_kept();
    }
    // A timeout too far off to be a point in time (`DIST_FETCH_TIMEOUT=1e19`) is none:
    // adding it to the clock panicked with status 101 instead.
    let now = tokio::time::Instant::now();
    let timeout = cli.global.timeout.filter(|&t| now.checked_add(t).is_some());
    cli.global.timeout = timeout;
    cli.global.deadline = timeout.map(|t| now + t);
    let deadline = cli.global.deadline;
    let abandoned = abandoned_at_deadline(&cli.command);
    let code = runtime.block_on(async {
        let work = run(cli);
        match (deadline, timeout, abandoned) {
            (Some(at), Some(t), Some(what)) => {
                tokio::time::timeout_at(at, work).await.unwrap_or_else(|_| {
                    cmd::note_stopped();
                    let streamed = cmd::fetch::streamed_note().map(|n| format!("; {n}"));
                    let streamed = streamed.unwrap_or_default();
                    say!(
                        "dist: {what}: gave up after the --timeout of {}{streamed}",
                        dist::duration::Written(t)
                    );
                    EXIT_TIMEOUT
                })
            }
            _ => work.await,
        }
    });
    // The runtime drops its tasks only after waiting for its blocking threads: an
    // interrupted run sat out the whole timeout below, its temporary files still there.
    // So first let the cancelled tasks drop (deleting their files, stopping the threads
    // that hash and write their objects).
    runtime.block_on(cmd::drop_cancelled_tasks());
    // Then give blocking work a moment to end; a read of stdin that waits for input must
    // not delay the exit beyond that.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}

/// Logs go to stderr, each on a line of its own below any progress line: `-v` shows
/// requests and timings, `-q` leaves errors only (the warnings about one object's retries
/// are the per-object messages it promises to keep quiet), `RUST_LOG` overrides. Without
/// either, text warnings read as the command's own messages ([`cmd::log_line`]). Credentials never reach a log line: headers carrying them
/// are marked sensitive and never logged.
///
/// A `RUST_LOG` the logger cannot read is returned as the usage error to say, once the
/// messages can be said: taken silently, its default filter hid the lines asked for.
fn init_logging(verbose: u8, quiet: bool, format: LogFormat) -> Option<String> {
    let default = match verbose {
        0 if quiet => "error",
        0 => "warn",
        1 => "dist=debug",
        _ => "debug",
    };
    let (filter, refused) = match std::env::var_os("RUST_LOG") {
        None => (tracing_subscriber::EnvFilter::new(default), None),
        Some(value) => match tracing_subscriber::EnvFilter::try_from_default_env() {
            Ok(filter) => (filter, None),
            Err(e) => (
                tracing_subscriber::EnvFilter::new(default),
                Some(format!(
                    "RUST_LOG: invalid log filter {:?}: {e}",
                    value.to_string_lossy()
                )),
            ),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(cmd::progress::LogWriter)
        .with_target(false);
    // At the default verbosity, the warnings and errors that pass are per-object messages
    // like the command's own, and read as they do; asked for (`-v`, `RUST_LOG`), the log
    // is a log.
    let as_messages = verbose == 0 && std::env::var_os("RUST_LOG").is_none();
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text if as_messages => builder.event_format(cmd::log_line::AsMessage).init(),
        LogFormat::Text => builder.with_ansi(colours_stderr()).init(),
    }
    refused
}

/// Whether log lines on stderr are coloured: as clap colours its help and usage errors,
/// by the one rule `anstream` has for them (on a terminal whose `TERM` is set and not
/// `dumb`, or under `CI`; never with `NO_COLOR` set and not empty, or `CLICOLOR=0`;
/// anywhere with `CLICOLOR_FORCE`). A rule of dist's own kept escape sequences in log
/// lines where clap's were plain (a dumb terminal, `TERM` unset, `CLICOLOR=0`), and none
/// where a CI log viewer was asked for them (`CLICOLOR_FORCE=1`).
fn colours_stderr() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
}

/// What a command that does not stop by itself at `--timeout` is after, for the message
/// when it is abandoned there. The worker and `pull` stop by themselves (`cmd::stopped`):
/// what they wrote must end whole, and their temporary files must go.
fn abandoned_at_deadline(command: &Command) -> Option<String> {
    match command {
        Command::Fetch(a) if a.object != "-" && a.output.is_none() => Some(a.object.clone()),
        Command::Resolve(a) => Some(a.reference.clone()),
        _ => None,
    }
}

async fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Fetch(args) => cmd::fetch::run(&cli.global, args).await,
        Command::Pull(args) => cmd::pull::run(&cli.global, args).await,
        Command::Resolve(args) => cmd::resolve::run(&cli.global, args).await,
        Command::Completions { shell } => cmd::docs::completions(shell),
        Command::Man => cmd::docs::man(),
    }
}

/// A write past a limit on file size (`ulimit -f`, systemd's `LimitFSIZE=`, a batch
/// system's) raises SIGXFSZ, whose default kills the process: a whole batch died silently
/// with status 153, the lines of the objects it had finished unwritten, and its temporary
/// file became a partial download that the next run appended to past the limit again, and
/// died of. Caught, the write fails with "File too large" instead, as one on a full disk
/// does: that object fails and is not kept, and the rest go on. A handler, not `SIG_IGN`,
/// so that the programs dist runs (credential helpers) start with the default.
fn catch_file_size_limit() {
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: a zeroed sigaction is a valid one (empty mask, no flags); the handler does
    // nothing, so it is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGXFSZ, &action, std::ptr::null_mut());
    }
}

/// Keeps glibc from handing freed receive buffers back to the kernel only to fault them in
/// again: left to itself it serves the few-hundred-KiB buffers of a fast body with `mmap`
/// and trims the heap below 1 MiB, which cost 20,000-50,000 page faults (about 5% of the
/// CPU) per GiB received. Memory stays bounded: what is kept is reused by the next buffers.
///
/// And two arenas, not glibc's eight per core: each reserves 64 MiB of address space, so
/// the hashing and writing threads of a batch of large blobs took about 1 GiB of it for
/// some 40 MiB used, and a limit on address space (`ulimit -v`, as batch schedulers set
/// it) aborted the batch ("memory allocation of 417792 bytes failed"). The threads other
/// than the runtime's allocate little; the CPU time of a batch of 32 MiB blobs measured
/// the same with two.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
