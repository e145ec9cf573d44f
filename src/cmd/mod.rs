//! The commands of the `dist` binary, one file each, and what they share: opening a
//! remote from the global options, exit statuses, messages, signals.

/// Prints a message on stderr through [`say`]: text, or a JSON line with `--log-format json`.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cmd::say(&format!($($arg)*))
    };
}

pub(crate) mod api_url;
pub mod batch;
mod closed_at_start;
pub mod docs;
mod drawer;
pub mod fetch;
mod first_steps;
pub mod flags;
mod hint_words;
pub mod layout_dir;
pub mod log_line;
mod nonblocking;
pub mod output;
pub mod progress;
pub mod pull;
pub mod report_file;
pub mod resolve;
pub mod stdin;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use first_steps::pool_kept;

use dist::auth::credentials::DockerConfig;
use dist::auth::CredentialSource;
use dist::hosts::{HostSettings, HostSpec, HostsFile};
use dist::layout_remote::LayoutRemote;
use dist::ranged::RangeOptions;
use dist::registry::host::{Mirror, Server};
use dist::registry::RegistryRemote;
use dist::retry::RetryPolicy;
use dist::transport::{Transport, TransportOptions};
use dist::{Error, ErrorKind, Locator, Remote, Repository};

use crate::cli::Global;

/// Whether messages go out as JSON lines (`--log-format json`), like the log lines beside
/// them, so that a program reading stderr can parse every line.
static JSON_MESSAGES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes [`say`] write JSON lines.
pub fn messages_as_json() {
    JSON_MESSAGES.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Writes a message for the person (or program) reading stderr: the text as it is, or with
/// `--log-format json` a JSON line shaped like the log's (`level`, `fields.message`).
/// Handed to the thread that writes stderr ([`drawer::say`]): never waits for the terminal.
pub fn say(text: &str) {
    to_stderr(&message_line(text));
}

/// Says what dist waits for, which is neither an error nor a warning: as [`say`] does, at
/// level `INFO` with `--log-format json`.
pub fn inform(text: &str) {
    to_stderr(&line_at("INFO", text));
}

/// A message as [`say`] writes it.
fn message_line(text: &str) -> String {
    let level = if text.starts_with("dist: warning:") {
        "WARN"
    } else {
        "ERROR"
    };
    line_at(level, text)
}

/// A message at `level`: the text, or a JSON line with `--log-format json`.
fn line_at(level: &str, text: &str) -> String {
    if !JSON_MESSAGES.load(std::sync::atomic::Ordering::Relaxed) {
        return text.to_string();
    }
    // Stamped as the log lines are, in their format: a log reader that orders or
    // filters by time lost every failed object's line, which carried none.
    let mut timestamp = String::new();
    let _ = tracing_subscriber::fmt::time::FormatTime::format_time(
        &tracing_subscriber::fmt::time::SystemTime,
        &mut tracing_subscriber::fmt::format::Writer::new(&mut timestamp),
    );
    let line = serde_json::json!({
        "timestamp": timestamp,
        "level": level,
        "fields": { "message": text },
        "target": "dist",
    });
    line.to_string()
}

/// Writes a line to stderr, by the thread that writes it ([`drawer::say`]), dropping it if
/// stderr cannot take it. `eprintln!` panics then: a stderr whose reader went away
/// (`2>&1 >frames | grep -m1 error`) ended the batch with status 101, when the output and
/// the exit status still carry every error.
pub fn to_stderr(line: &str) {
    drawer::say(line.to_string());
}

/// Exits with `code` once every line handed to stderr's thread is written.
pub fn exit(code: i32) -> ! {
    drawer::drain();
    std::process::exit(code)
}

/// Waits for every line handed to stderr's thread to be written, as the process ends, once
/// the runtime is gone. A terminal that stays stopped holds the process there, and its
/// Ctrl-C went to the runtime's handler, which no one heard any more: SIGINT and SIGTERM
/// end it there, as they would any program waiting for its terminal.
///
/// A run that was stopped (a signal, `--timeout`) waits only [`STDERR_AFTER_STOP`] past
/// the stop, and at least [`STDERR_LAST_WORD`]: its signal was the one its stop consumed,
/// and a stderr nobody reads (a pipe to a hung log shipper) held it for ever, a
/// Kubernetes pod until its SIGKILL, and `timeout` or `--timeout` without end.
pub fn drain_stderr() {
    give_back_signals();
    match STOPPED_AT.get() {
        Some(&at) => {
            let now = std::time::Instant::now();
            let _ = drawer::drain_until((at + STDERR_AFTER_STOP).max(now + STDERR_LAST_WORD));
        }
        None => drawer::drain(),
    }
}

/// When the run was first told to stop ([`stopped`], [`note_stopped`]), if it was.
static STOPPED_AT: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Notes that the run was stopped now, unless it was already: [`drain_stderr`] then waits
/// for stderr only a while. For a command that `main` abandons at `--timeout` (a one-shot
/// fetch, a resolve), which never waits on [`stopped`]: its message waited for a stderr
/// nobody reads for ever.
pub fn note_stopped() {
    let _ = STOPPED_AT.set(std::time::Instant::now());
}

/// How long after a stop its lines still waiting for stderr are waited for: as long as the
/// stop waits for its output to be written (stdout and the report).
const STDERR_AFTER_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// What stderr is given at the least, however late the stop's output ended: a stderr that
/// is only slow (a terminal over a slow link) still gets the line saying why the run
/// stopped.
const STDERR_LAST_WORD: std::time::Duration = std::time::Duration::from_secs(1);

/// Has a panic of the main thread write the lines queued for stderr before its own
/// message, as the process would have at its end ([`drain_stderr`]).
pub fn drain_stderr_on_panic() {
    drawer::drain_before_panic_message(drain_stderr);
}

/// Exit status when a fetch failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status for usage errors and remotes that cannot be used at all.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a batch (or a pull) whose every failed line failed for the moment: the
/// registry could not be reached, or answered 429 or a 5xx, past the retries. sysexits.h's
/// `EX_TEMPFAIL` ("try again later"), as mail transfer agents use it: a cron job tells
/// "retry later" from content that is gone or wrong (status 1). So too of any command
/// whose registry is down for the moment when it starts ([`exit_for`]).
pub const EXIT_TEMPFAIL: u8 = 75;
/// Exit status when `--timeout` ran out, as timeout(1) has it.
pub const EXIT_TIMEOUT: u8 = 124;

/// The exit status of a one-shot command that failed with `e`, as the worker's check of its
/// remote decides for a batch ([`unusable_code`]): a registry down only for the moment (no
/// connection, or one that broke past the retries; one that takes the connection and never
/// answers; 429 or a 5xx past the retries) is [`EXIT_TEMPFAIL`], as a batch whose every line
/// failed so is; one that retrying cannot cure (an untrusted certificate, a server that does
/// not speak TLS, a name that does not exist, credentials refused, a proxy that refuses to
/// carry the connection, a server set up to speak in a way dist cannot use:
/// [`Error::is_server_setup`]) is status 2, as a usage error is; an object that failed
/// otherwise (not found, refused, not what its digest says) is status 1. A script can tell a
/// registry to retry later from one it cannot use and from an object it cannot have.
pub fn exit_for(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::InvalidInput
        | ErrorKind::UnknownHost
        | ErrorKind::Certificate
        | ErrorKind::NotTls
        | ErrorKind::TlsIncompatible
        | ErrorKind::ProxyRefused
        | ErrorKind::Unauthorized => EXIT_USAGE,
        _ if e.is_server_setup() => EXIT_USAGE,
        _ if e.is_transient() => EXIT_TEMPFAIL,
        _ => EXIT_FAILED,
    }
}

/// The exit status for a remote that could not be used because of `e`: [`EXIT_TEMPFAIL`]
/// when it failed only for the moment, as a batch's lines count it ([`Error::is_transient`]:
/// refused or broken connections, a DNS server that did not answer, timeouts, 429 and
/// 5xx past the retries), so that a job run from cron retries a registry restarting at
/// 03:00 instead of paging someone; otherwise [`EXIT_USAGE`], retrying cannot cure it.
/// A refused connection is counted for the moment even though a mistyped port looks the
/// same: the batch after the check counts it so, as containerd, crane and skopeo cannot
/// tell them apart either.
fn unusable_code(e: &Error) -> u8 {
    if e.is_transient() {
        EXIT_TEMPFAIL
    } else {
        EXIT_USAGE
    }
}

/// `code` once a write failed as well, which a later run would meet again: at least
/// [`EXIT_FAILED`], and no longer [`EXIT_TEMPFAIL`] (`max` kept 75 over the 1 it was).
pub fn failed_too(code: u8) -> u8 {
    match code {
        EXIT_TEMPFAIL => EXIT_FAILED,
        code => code.max(EXIT_FAILED),
    }
}

/// Checks an OCI layout remote before a one-shot command uses it, as the worker and `pull`
/// check every remote: a path that is not a layout is a usage error (exit status 2) that
/// names the directory, not a failed object. A registry is not checked there: the check
/// would cost a request the command's own makes anyway.
pub async fn check_layout(remote: &dyn Remote, locator: &Locator) -> Result<(), u8> {
    if !matches!(locator, Locator::Layout(_)) {
        return Ok(());
    }
    remote.check().await.map_err(|e| cannot_use(remote, &e))
}

/// Says that `remote` failed its check with `e`; the exit status for it
/// ([`unusable_code`]).
fn cannot_use(remote: &dyn Remote, e: &Error) -> u8 {
    let code = unusable_code(e);
    if code == EXIT_TEMPFAIL {
        say!(
            "dist: cannot use {}: {e} (for the moment, it seems: a later run may succeed; \
             exit status {code})",
            remote.describe()
        );
    } else {
        say!("dist: cannot use {}: {e}", remote.describe());
    }
    code
}

/// Open files a batch needs besides its jobs': the standard streams, the runtime's, the
/// report, the index lock, the token server's and mirrors' connections. About a dozen are
/// open while a batch runs; the rest is margin.
const RESERVED_FILES: libc::rlim_t = 32;

/// How a batch's open files are split, the one place that does: the jobs first (a
/// connection and a file each, beside [`RESERVED_FILES`]), then the connections in all
/// (what the limit leaves beside the jobs' files and half the reserve), and the range
/// streams that fit in those beside the jobs' own connections (at least one, the job's).
/// The job count once counted all of `--range-streams`, which are cut later anyway: `-j 16
/// --range-streams 8` under `ulimit -n 40` ran one job at a time where 4 fit, each with
/// its 8 streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileBudget {
    jobs: usize,
    connections: usize,
    streams: usize,
}

impl FileBudget {
    /// The split of `limit` open files (`None`: no limit known) for `jobs` jobs and
    /// `streams` range streams wanted. A split's own jobs split again the same way.
    fn split(limit: Option<libc::rlim_t>, jobs: usize, streams: usize) -> FileBudget {
        let streams = streams.max(1);
        let Some(limit) = limit else {
            return FileBudget {
                jobs,
                connections: usize::MAX,
                streams,
            };
        };
        let fit = limit.saturating_sub(RESERVED_FILES) / 2;
        let jobs = usize::try_from(fit)
            .unwrap_or(usize::MAX)
            .clamp(1, jobs.max(1));
        let left = limit.saturating_sub(RESERVED_FILES / 2 + jobs as libc::rlim_t);
        let left = usize::try_from(left).unwrap_or(usize::MAX);
        let streams = streams.min((left + 1).saturating_sub(jobs)).max(1);
        FileBudget {
            jobs,
            connections: left.max(jobs + streams - 1),
            streams,
        }
    }
}

/// The number of jobs a batch can run within the process's limit on open files
/// ([`FileBudget`]). Past the limit, jobs failed with "Too many open files" (61 of 100
/// blobs with `-j 64` under `ulimit -n 64`) and connections were retried until they
/// happened to fit. So the soft limit is raised as far as the hard one allows, as Go's
/// runtime does for containerd and skopeo, and a batch that still does not fit runs fewer
/// jobs at once and says so: slower, but whole.
pub fn jobs_within_file_limit(global: &Global, jobs: usize) -> usize {
    let need = files_needed(global, jobs);
    let limit = raise_file_limit(need);
    let fit = FileBudget::split(limit, jobs, global.range_streams).jobs;
    // Jobs not cut (one asked for, or what the range streams need is what does not
    // fit, which their own warning says) are nothing to warn of.
    if fit < jobs && !global.quiet {
        say!(
            "dist: warning: -j {jobs} needs up to {need} open files and the limit is {} \
             (ulimit -n): fetching {fit} at a time",
            limit.unwrap_or_default()
        );
    }
    fit
}

/// Open files `jobs` jobs need at most: two each (a connection and a file), one per range
/// stream and [`RESERVED_FILES`].
fn files_needed(global: &Global, jobs: usize) -> libc::rlim_t {
    RESERVED_FILES + 2 * jobs as libc::rlim_t + global.range_streams as libc::rlim_t
}

/// Connections a batch of `jobs` may hold in all, busy or idle, within the limit on open
/// files, and the range streams a blob is split into ([`FileBudget`]). Both caps take the
/// range streams so cut: the cap per host is never past the one in all.
/// The pool keeps a host's connection idle for 90 s: a batch whose blobs each redirect to
/// a host of their own held one per host, and under `ulimit -n 64` failed objects with
/// "Too many open files" past the fortieth host. And the cap in all was never below one
/// host's, `-j` + `--range-streams` - 1: `--range-streams 64` under `ulimit -n 20` split
/// a slow blob into parts whose connections failed with "Too many open files".
/// Cut streams are warned of only for `Downloads::Blobs`: `resolve` and a fetch by tag
/// said "not splitting blobs" under `ulimit -Hn 20`, where no blob is fetched at all.
fn connections_within_file_limit(
    global: &Global,
    jobs: usize,
    downloads: Downloads,
) -> (usize, usize) {
    let wanted = global.range_streams.max(1);
    // A one-shot fetch comes here with the soft limit only raised to what every run
    // needs: its 64 range streams were cut to 15 where the hard limit had room for all.
    let limit = raise_file_limit(files_needed(global, jobs));
    let FileBudget {
        connections,
        streams,
        ..
    } = FileBudget::split(limit, jobs, wanted);
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if streams < wanted
        && downloads == Downloads::Blobs
        && !global.quiet
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        // One stream is no split: "splitting a blob into 1" read as a split still made.
        let cut = match streams {
            1 => "not splitting blobs".to_owned(),
            _ => format!("splitting a blob into {streams} at most"),
        };
        say!(
            "dist: warning: --range-streams {wanted} needs up to {} connections and the \
             limit on open files is {} (ulimit -n): {cut}",
            jobs + wanted - 1,
            limit.unwrap_or_default()
        );
    }
    (connections, streams)
}

/// The fewest open files dist runs with: the standard streams, the runtime's (its poller,
/// its waker, the signal pipe), a connection to the registry and one to its token server
/// or a redirect's host, the file being written, and those read as it starts (credentials,
/// CAs). The plainest fetch needed 10 when measured; below that the runtime or tokio's
/// signal set-up failed, the latter with a panic.
const MIN_OPEN_FILES: libc::rlim_t = 16;

/// Makes sure the limit on open files leaves dist room to run, raising the soft limit
/// towards [`RESERVED_FILES`] if it is lower. The error says what the limit is and what
/// dist needs, for `main` to print before anything could fail with "Too many open files".
pub fn ensure_file_limit() -> Result<(), String> {
    match raise_file_limit(RESERVED_FILES) {
        Some(limit) if limit < MIN_OPEN_FILES => Err(format!(
            "the limit on open files is {limit} (ulimit -n) and dist needs at least \
             {MIN_OPEN_FILES}"
        )),
        _ => Ok(()),
    }
}

/// Raises the soft limit on open files to `want`, or as close as the hard limit allows;
/// the soft limit then. `None` when it cannot be read.
fn raise_file_limit(want: libc::rlim_t) -> Option<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into memory of its size.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur >= want {
        return Some(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: want.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one `rlimit`; a soft limit within the hard one is allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Some(limit.rlim_cur);
    }
    Some(raised.rlim_cur)
}

/// What a command may download, which tells whether splitting blobs into ranges concerns
/// it: only blobs are split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Downloads {
    /// Manifests only (`resolve`, a fetch by tag): no blob, so no split.
    Manifests,
    /// Blobs too (a fetch by digest, the worker, `pull`).
    Blobs,
}

/// Builds the remote a locator names, sharing one transport.
pub fn open_remote(
    global: &Global,
    locator: &str,
    jobs: usize,
    downloads: Downloads,
) -> Result<Arc<dyn Remote>, Error> {
    open_locator(global, locator.parse()?, jobs, downloads)
}

/// `host[:port]` of a mirror's URL (`scheme://host[:port][/path]`), as certs.d names its
/// folders.
fn mirror_authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Whom a host's client trusts and which certificate it shows: `--ca-file`, the hosts
/// file's `ca` for it and the CAs Docker and podman keep for `authority` in certs.d; and
/// `--cert`/`--key`, else its hosts-file `client`, else a pair kept in its certs.d folder.
fn trust_for(
    global: &Global,
    settings: &dist::hosts::HostSettings,
    authority: &str,
) -> (
    Vec<std::path::PathBuf>,
    Option<dist::transport::tls::ClientIdentity>,
) {
    let env = |name: &str| std::env::var_os(name);
    let mut ca_files: Vec<std::path::PathBuf> = global.ca_file.iter().cloned().collect();
    ca_files.extend(settings.ca.iter().cloned());
    ca_files.extend(dist::certs::ca_files_for(authority, env));
    let identity = match (&global.cert, &global.key) {
        (Some(cert), Some(key)) => Some(dist::transport::tls::ClientIdentity {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => settings
            .client
            .clone()
            .or_else(|| dist::certs::client_identity_for(authority, env)),
    };
    (ca_files, identity)
}

/// Builds the remote for a parsed locator.
pub fn open_locator(
    global: &Global,
    locator: Locator,
    jobs: usize,
    downloads: Downloads,
) -> Result<Arc<dyn Remote>, Error> {
    match locator {
        Locator::Registry(mut repo) => {
            if global.plain_http {
                repo.force_plain_http();
            }
            let (server, server_settings, specs) = mirror_specs(global, &repo)?;
            let (ca_files, client_identity) = trust_for(global, &server_settings, repo.host());
            let mut options = TransportOptions::default();
            options.ca_files = ca_files;
            options.client_identity = client_identity;
            options.skip_verify = server_settings.skip_verify;
            // Every job's stream, plus the parallel ranges of slow large blobs (their
            // budget is `range_streams` parts, one of which replaces a first stream).
            // With only `max(jobs, streams)`, four slow blobs on four jobs left their
            // parts waiting for a connection: no gain at all.
            let (connections, streams) = connections_within_file_limit(global, jobs, downloads);
            options.max_connections_per_host = jobs + streams - 1;
            // As many kept idle as may be busy: with room for only `jobs`, parts that
            // ended together closed their connections, and the next parts paid a new
            // handshake each (a one-shot fetch: 7 connections for 11 parts, not 4).
            options.max_idle_per_host = options.max_connections_per_host;
            options.max_connections = connections;
            // The hosts file's `dial_timeout` is about one host: it wins over the
            // flag, which is everyone's default.
            options.connect_timeout = server_settings.connect_timeout(global.connect_timeout);
            options.idle_timeout = global.idle_timeout;
            // Headers wait as long as a body may stall: a registry that is slow to
            // start a large blob is not broken.
            options.response_timeout = global.idle_timeout;
            options.http2_window = global.http2_window.unwrap_or_default();
            let transport = Transport::new(options.clone())?;
            let credentials = CredentialSource::DockerConfig(Arc::new(DockerConfig::load()?));
            let retry = RetryPolicy {
                retries: global.retries,
                ..RetryPolicy::default()
            };
            let mut ranges = RangeOptions::default();
            ranges.streams = streams;
            let mut remote =
                RegistryRemote::new(repo.clone(), transport.clone(), credentials.clone(), retry)
                    .with_ranges(ranges);
            if let Some(server) = server {
                remote = remote.with_server(&server, transport.clone(), credentials.clone())?;
            }
            remote = remote.with_registry_headers(server_settings.headers.clone());
            if !specs.is_empty() {
                let mut mirrors = Vec::with_capacity(specs.len());
                for spec in specs {
                    // Every mirror gets a client of its own, trusting what is set for it and
                    // nothing set for the registry alone: the registry's `skip_verify`, its
                    // CAs and client certificate (hosts file or certs.d) stay the
                    // registry's. What the command line gives (`--ca-file`, `--cert`) and
                    // the mirror's own certs.d folder count, as Docker and podman read
                    // certs.d per endpoint.
                    let s = &spec.settings;
                    let (ca_files, client_identity) =
                        trust_for(global, s, &mirror_authority(&spec.url));
                    let mut own = options.clone();
                    own.ca_files = ca_files;
                    own.client_identity = client_identity;
                    own.skip_verify = s.skip_verify;
                    own.connect_timeout = s.connect_timeout(global.connect_timeout);
                    // The limit on open files is the process's: one budget for every pool.
                    let own = Transport::sharing_connections(own, &transport)?;
                    let mut mirror = Mirror::new(spec.url, own);
                    mirror.capabilities = spec.capabilities;
                    mirror.override_path = spec.override_path;
                    mirror.headers = s.headers.clone();
                    mirrors.push(mirror);
                }
                remote = remote.with_mirrors(&mirrors, credentials)?;
            }
            Ok(Arc::new(remote))
        }
        Locator::Layout(path) => Ok(Arc::new(LayoutRemote::new(path))),
    }
}

/// Builds the remote for the locator of `image`, a reference (`dist pull`, `dist resolve`):
/// a layout's check then names what to write for a registry with the tag or digest given.
pub fn open_image(
    global: &Global,
    image: &dist::image::ImageRef,
    jobs: usize,
    downloads: Downloads,
) -> Result<Arc<dyn Remote>, Error> {
    match &image.locator {
        Locator::Layout(path) => Ok(Arc::new(LayoutRemote::of_image(path, image))),
        Locator::Registry(_) => open_locator(global, image.locator.clone(), jobs, downloads),
    }
}

/// The mirrors for `repo`: `--mirror` flags first, then its hosts file; and the registry's
/// own address if the hosts file moves it, and how to talk to the registry.
fn mirror_specs(
    global: &Global,
    repo: &Repository,
) -> Result<(Option<Server>, HostSettings, Vec<HostSpec>), Error> {
    let mut specs = global
        .mirror
        .iter()
        .map(|m| HostSpec::from_flag(m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut server = None;
    let mut settings = HostSettings::default();
    if let Some(dir) = &global.hosts_dir {
        // containerd reads a missing config path as no mirrors; so does dist, but a
        // mistyped folder would then route around every mirror without a word.
        if !dir.is_dir() && !global.quiet {
            say!(
                "dist: warning: the hosts directory {} (--hosts-dir, DIST_HOSTS_DIR) is not \
                 a directory: no mirrors are configured from it",
                dir.display()
            );
        }
        if let Some(mut file) = HostsFile::load(dir, repo.host())? {
            // Read as containerd reads it, the file's queries and fragments are dropped:
            // said, not refused, so that a file shared with containerd keeps working.
            // Taken out here, where it is said: a `Mirror` or `Server` holding one is
            // refused.
            let urls = file.hosts.iter_mut().map(|h| &mut h.url);
            for url in urls.chain(file.server.as_mut().map(|s| &mut s.url)) {
                let Some((at, why)) = dist::hosts::unsent_part(url) else {
                    continue;
                };
                if !global.quiet {
                    say!(
                        "dist: warning: the hosts file of {} names {:?}: {why}",
                        repo.host(),
                        dist::error::redact_url(url),
                    );
                }
                url.truncate(at);
            }
            specs.extend(file.hosts);
            server = file.server;
            settings = file.server_settings;
        }
    }
    Ok((server, settings, specs))
}

/// Checks the remote of a batch (the worker, `pull`) once before it starts, watching the
/// run's one `stop` meanwhile: a registry that does not answer must not hold the run beyond
/// `--timeout` or a signal. `Err` is the exit status, the reason already said: nothing was
/// fetched yet ("objects reported so far are complete; downloads cut short … are kept"
/// was said of a run that had reported and cut short nothing).
pub async fn check_before_batch<S: std::future::Future<Output = Stop>>(
    remote: &dyn Remote,
    stop: &mut std::pin::Pin<&mut S>,
) -> Result<(), u8> {
    match unless_stopped(remote.check(), stop).await {
        Ok(checked) => checked.map_err(|e| cannot_use(remote, &e)),
        Err(why) => {
            if let Some(said) = why.why() {
                say!(
                    "dist: {said} while checking {}; nothing was fetched",
                    remote.describe()
                );
            }
            Err(why.code())
        }
    }
}

/// Waits for `work` (a registry check, an outcome handed to the output, a pull) unless
/// `stop` comes first, so that a stuck reader, disk or registry cannot hold off a signal or
/// `--timeout`. Work that can complete at once always does, even with a stop ready beside
/// it: an object already stored (`-o DIR`) or fetched must not lose the line or frame
/// saying so, nor a finished pull its exit status 0, to a random pick between two ready
/// branches.
pub async fn unless_stopped<T, S: std::future::Future<Output = Stop>>(
    work: impl std::future::Future<Output = T>,
    stop: &mut std::pin::Pin<&mut S>,
) -> Result<T, Stop> {
    tokio::select! {
        biased;
        done = work => Ok(done),
        why = stop.as_mut() => Err(why),
    }
}

/// Why a batch stopped before its end.
pub enum Stop {
    /// SIGINT, SIGTERM or SIGHUP, with the conventional exit status (128 + signal).
    Signal(u8),
    /// `--timeout` ran out.
    Deadline(std::time::Duration),
    /// The reader of stdout went away (`| head`): as when a write finds it gone.
    ReaderGone,
}

/// What may have held up the output a stopped batch had left to write
/// ([`Stop::say_unwritten`]).
#[derive(Clone, Copy)]
pub enum Unwritten<'a> {
    /// Stdout, the only output, which holds what [`Writes`] says.
    Stdout(Writes),
    /// The `--report` file at this path, stdout written whole.
    Report(&'a str),
    /// Stdout (holding what [`Writes`] says) or the `--report` file at this path: written
    /// by one thread in turn (the worker's), which of them the stop found it in is not
    /// known; or each by its own (`dist pull`'s), both found under way.
    StdoutOrReport(Writes, &'a str),
}

/// What a batch writes to stdout, in which a write cut short leaves part of one: a pull
/// and the worker into `-o DIR` write JSON lines alone, where "frame or line" was said of
/// a pull too; the framed worker writes frames.
#[derive(Clone, Copy)]
pub enum Writes {
    /// The framed worker's frames.
    Frames,
    /// JSON lines.
    Lines,
}

impl Writes {
    fn unit(self) -> &'static str {
        match self {
            Writes::Frames => "frame",
            Writes::Lines => "line",
        }
    }
}

impl Unwritten<'_> {
    /// What held up the output, and what it ends with, as a stopped batch says it: the
    /// write under way when the stop came had put part of its frame or line out, which the
    /// pipe keeps.
    fn held_and_cut(self) -> String {
        let (what, held) = match self {
            Unwritten::Report(path) => (
                format!("the report {path} ends with the last line"),
                format!("a reader of {path}"),
            ),
            Unwritten::Stdout(writes) => (
                format!("the output ends with the last {}", writes.unit()),
                "a reader of stdout".to_string(),
            ),
            Unwritten::StdoutOrReport(Writes::Lines, path) => (
                format!("the output and the report {path} end with the last line"),
                format!("a reader of stdout or of {path}"),
            ),
            Unwritten::StdoutOrReport(Writes::Frames, path) => (
                format!(
                    "the output ends with the last frame and the report {path} with the last line"
                ),
                format!("a reader of stdout or of {path}"),
            ),
        };
        format!(
            "not all of their output was written ({held} that does not read, or a disk that \
             does not answer, held it up): {what} written whole, and perhaps part of the one \
             being written, cut short"
        )
    }
}

/// A stop's message `text`, gone on to say that the output may end cut short when the
/// stop found a write under way in `cut`: every message a stop says ends so, where one
/// said "complete" or "stored" alone of an output that ends in part of a frame or line.
fn with_cut(mut text: String, cut: Option<Unwritten<'_>>) -> String {
    if let Some(cut) = cut {
        text.push_str("; ");
        text.push_str(&cut.held_and_cut());
    }
    text
}

impl Stop {
    /// The exit status to end with.
    pub fn code(&self) -> u8 {
        match self {
            Stop::Signal(code) => *code,
            Stop::Deadline(_) => EXIT_TIMEOUT,
            Stop::ReaderGone => EXIT_FAILED,
        }
    }

    /// The exit status to end with when the stop came after the work had failed with
    /// `e` (a pull's error, its sync under way): as [`code_over`](Self::code_over) its
    /// status ([`exit_for`]).
    pub fn code_after(&self, e: &Error) -> u8 {
        self.code_over(exit_for(e))
    }

    /// The exit status to end with when the stop came after the work had ended with
    /// `code`, while its last lines were written: a signal or `--timeout` has its own
    /// status; the reader's going keeps a remote it could not use (status 2) as it was,
    /// where [`code`](Self::code) alone made it 1, and is otherwise a write that failed
    /// ([`failed_too`]). A 75 does not stay: the worker's batch whose reader goes is 1
    /// too, and `max` kept 75 only when the stop heard the reader go before a write found
    /// it gone, which made it 1.
    pub fn code_over(&self, code: u8) -> u8 {
        match self {
            Stop::ReaderGone => failed_too(code),
            _ => self.code().max(code),
        }
    }

    /// Says why, once output has been finished; see [`Stop::message`].
    pub fn say(&self, into_store: bool, cut: Option<Unwritten<'_>>) {
        if let Some(message) = self.message(into_store, cut) {
            say!("{message}");
        }
    }

    /// Says why a pull stopped after it had stored every object of the image, when only
    /// naming it in `index` was left, or making that name durable (`entry`, how far it
    /// got): "the others were not fetched" was said of a pull that had none left, "not
    /// named" of an image `index` named, its sync not finished, and another run's lock
    /// blamed for every stop before the name (a slow sync of the blobs included). A rename
    /// still under way (a hung filesystem) is said as such, not waited for. `cut` is the
    /// output the stop found a write under way in, as for [`Stop::say`].
    pub fn say_all_stored(
        &self,
        index: &std::path::Path,
        entry: dist::sink::index::IndexEntry,
        cut: Option<Unwritten<'_>>,
    ) {
        if let Some(message) = self.all_stored(index, entry, cut) {
            say!("{message}");
        }
    }

    /// The message of [`Stop::say_all_stored`].
    fn all_stored(
        &self,
        index: &std::path::Path,
        entry: dist::sink::index::IndexEntry,
        cut: Option<Unwritten<'_>>,
    ) -> Option<String> {
        use dist::sink::index::IndexEntry;
        let why = self.why()?;
        let stored = "every object of the image was fetched and stored";
        let index = index.display();
        let again = "the same pull again names it without fetching anything";
        let text = match entry {
            IndexEntry::Locked => format!(
                "dist: {why}; {stored}, but the image is not named in {index} (another run \
                 holds its lock, which a pull waits for); {again}"
            ),
            IndexEntry::SyncingBlobs => format!(
                "dist: {why}; {stored}, but the image is not named in {index} (the sync of \
                 the blobs stored, which comes before naming the image, had not finished); \
                 {again}"
            ),
            IndexEntry::Unwritten => format!(
                "dist: {why}; {stored}, but the image is not named in {index} (the stop came \
                 before its new index was renamed into place); {again}"
            ),
            IndexEntry::Unsynced => format!(
                "dist: {why}; {stored}, and the image is named in {index}, but the sync of \
                 its directory did not finish: the name may not survive a power loss"
            ),
            IndexEntry::Durable => {
                format!("dist: {why}; {stored}, and the image is named in {index}")
            }
            // `Renaming`, and what the library may add later: nothing surer to say.
            _ => format!(
                "dist: {why}; {stored}, and naming it in {index} was under way (its rename \
                 into place had not returned): it may name the image or not; {again}"
            ),
        };
        Some(with_cut(text, cut))
    }

    /// Says why a batch into the layout at `dir` stopped in its last sync, once every
    /// object had been handled (`all_ok`: and none failed): nothing was left to fetch, but
    /// the names stored since the sync before may not be durable yet. `cut` is the output
    /// the stop found a write under way in, as for [`Stop::say`]: a failed pull's last
    /// line, queued before its sync, or the worker's last frames, were said of nowhere.
    pub fn say_unsynced(&self, dir: &std::path::Path, all_ok: bool, cut: Option<Unwritten<'_>>) {
        if let Some(message) = self.unsynced(dir, all_ok, cut) {
            say!("{message}");
        }
    }

    /// The message of [`Stop::say_unsynced`].
    fn unsynced(
        &self,
        dir: &std::path::Path,
        all_ok: bool,
        cut: Option<Unwritten<'_>>,
    ) -> Option<String> {
        let why = self.why()?;
        let stored = if all_ok {
            "every object was fetched and stored in"
        } else {
            "the objects reported stored are in"
        };
        let text = format!(
            "dist: {why}; {stored} {}, but the sync of its directories did not finish: the \
             names of those stored last may not survive a power loss",
            dir.display()
        );
        Some(with_cut(text, cut))
    }

    /// Says why a batch stopped while it wrote out the output of objects it had all
    /// handled: "the others were not fetched" was said where there were no others, and
    /// what was not done, the writing, went unsaid. `held` is what may have held it: "a
    /// reader of stdout" was blamed for a `--report` FIFO whose reader did not read. The
    /// write the stop found under way had put part of its frame or line out, which the
    /// pipe keeps: "ends with the last frame written whole" sent a reader to look for no
    /// cut.
    pub fn say_unwritten(&self, held: Unwritten<'_>) {
        let Some(why) = self.why() else { return };
        say!(
            "dist: {why}; every object was handled, but {}",
            held.held_and_cut()
        );
    }

    /// Says why a batch stopped while it waited for input, every object of the `read` it
    /// had read being handled: "the others were not fetched" was said under `--timeout`
    /// of a batch that had none, its stdin idle. `cut` is the output the stop found a
    /// write under way in, as for [`Stop::say`].
    pub fn say_idle_input(&self, read: u64, cut: Option<Unwritten<'_>>) {
        if let Some(message) = self.idle_input(read, cut) {
            say!("{message}");
        }
    }

    /// The message of [`Stop::say_idle_input`]. A write under way is said: "complete"
    /// alone was said of an output ending in part of a frame, its reader stuck.
    fn idle_input(&self, read: u64, cut: Option<Unwritten<'_>>) -> Option<String> {
        let why = self.why()?;
        let text = match read {
            0 => format!("dist: {why} while waiting for input; none had come, nothing was fetched"),
            _ => format!(
                "dist: {why} while waiting for more input; objects reported so far are \
                 complete, and every one read had been handled"
            ),
        };
        Some(with_cut(text, cut))
    }

    /// Names the blobs the run was waiting for while other runs held their locks (stopped
    /// with Ctrl-Z, hung), once it stopped: what held it up, where the run showed nothing
    /// of them, and the lock files to look for their holders by (`fuser`, `lsof`).
    pub fn say_waiting(&self, waiting: &[(dist::digest::Digest, std::path::PathBuf)]) {
        if self.why().is_none() {
            return;
        }
        for (digest, lock) in waiting {
            say!(
                "dist: {digest} was not fetched: it was waiting for another run fetching it \
                 into the layout, which holds its lock file {}",
                lock.display()
            );
        }
    }

    /// What stopped the run, as its message begins; nothing for a reader that left.
    fn why(&self) -> Option<String> {
        match self {
            Stop::Signal(_) => Some("interrupted".into()),
            Stop::Deadline(t) => Some(format!(
                "gave up after the --timeout of {}",
                dist::duration::Written(*t)
            )),
            Stop::ReaderGone => None,
        }
    }

    /// Everything reported is complete. `cut` is the output the stop found a write under
    /// way in, which ends with part of a frame or line: said so, where "complete" alone
    /// sent a reader to trust a cut frame. Into a layout (`into_store`), large downloads
    /// cut short are kept, and the next run carries them on: worth knowing before
    /// deciding whether to run again. Nothing for a reader that left: `| head` is no
    /// failure.
    fn message(&self, into_store: bool, cut: Option<Unwritten<'_>>) -> Option<String> {
        let why = self.why()?;
        let mut text = format!("dist: {why}; objects reported so far are complete");
        if let Stop::Deadline(_) = self {
            text.push_str(", the others were not fetched");
        }
        text = with_cut(text, cut);
        if into_store {
            text.push_str(
                "; downloads cut short past their first MiB are kept for the next run to carry on",
            );
        }
        Some(text)
    }
}

/// The one stop of a worker's or a pull's run: a signal, `--timeout`, or the reader of
/// stdout gone. One for the whole run, since a signal that came between two of them
/// would be lost: the first one's handler stays installed.
pub async fn run_stop(global: &Global) -> Stop {
    tokio::select! {
        why = stopped(global) => why,
        () = output::reader_gone() => Stop::ReaderGone,
    }
}

/// Polls the run's `stop` once, as the run begins, so that dist's handlers are in place
/// before anything that may wait (opening the layout on a slow disk, a `--report` FIFO
/// waiting for its reader): a signal there took its default action, and the run died
/// silently, the layout it had just made left behind. A stop that is there already (a
/// `--timeout` run out as the run began) is returned: `stop` must not be polled again.
pub fn watch<S: std::future::Future<Output = Stop>>(
    stop: &mut std::pin::Pin<&mut S>,
) -> Option<Stop> {
    futures::FutureExt::now_or_never(stop.as_mut())
}

/// Resolves when a batch must stop: on a signal, or when `--timeout` runs out. A batch
/// stops the same way for both, so that what it wrote is whole and no temporary file
/// stays behind.
pub async fn stopped(global: &Global) -> Stop {
    let deadline = async {
        match (global.deadline, global.timeout) {
            (Some(at), Some(t)) => {
                tokio::time::sleep_until(at).await;
                t
            }
            _ => std::future::pending().await,
        }
    };
    let why = tokio::select! {
        code = interrupted() => Stop::Signal(code),
        t = deadline => Stop::Deadline(t),
    };
    note_stopped();
    // The stop takes a while when the reader of the output does not read or a disk does
    // not answer, and dist's handlers stay installed meanwhile: a second Ctrl-C was caught
    // and ignored. From here SIGINT and SIGTERM do what they would without dist, ending
    // the run at once (a shell sees 130 for SIGINT); a killed run's temporary files go
    // with the next. Not SIGHUP: a closed terminal sends it twice (the shell passes its
    // own on to its jobs, then the kernel sends another as the shell exits), and systemd's
    // `SendSIGHUP=` right after SIGTERM; none is asking for a quicker end.
    give_back_signals();
    why
}

/// Gives SIGINT and SIGTERM back the action they had without dist (ending it), if dist
/// caught them.
fn give_back_signals() {
    let handled = HANDLED.load(Ordering::Relaxed);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        if handled & (1 << signal) != 0 {
            // SAFETY: SIG_DFL for a signal tokio caught; its handler, left registered
            // with tokio, is simply no longer called.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
    }
}

/// The signals dist has set a handler for, as `1 << signal`: those not ignored as it
/// started, of which a stop gives back SIGINT's and SIGTERM's.
static HANDLED: AtomicU64 = AtomicU64::new(0);

/// Resolves on SIGINT, SIGTERM or SIGHUP with the conventional exit status (128 + signal).
/// SIGHUP is a closed terminal or a dropped SSH session: left to its default, it killed a
/// batch on the spot, its temporary files and cut downloads left for a later run to find.
async fn interrupted() -> u8 {
    use tokio::signal::unix::SignalKind;
    tokio::select! {
        () = received(SignalKind::interrupt()) => 130,
        () = received(SignalKind::terminate()) => 143,
        () = received(SignalKind::hangup()) => 129,
    }
}

/// Resolves when `kind` arrives; never when it was ignored as dist started. `nohup` ignores
/// SIGHUP, and a shell ignores SIGINT for a command it runs in the background (`dist … &`
/// in a script), so that a closed terminal or a Ctrl-C meant for the foreground leaves it
/// running: a handler of dist's own would undo that.
async fn received(kind: tokio::signal::unix::SignalKind) {
    if ignored(kind.as_raw_value()) {
        return std::future::pending().await;
    }
    match tokio::signal::unix::signal(kind) {
        Ok(mut signal) => {
            HANDLED.fetch_or(1 << kind.as_raw_value(), Ordering::Relaxed);
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Whether `signal`'s disposition is to be ignored. Asked before dist sets a handler for
/// it, this is what dist was started with.
fn ignored(signal: libc::c_int) -> bool {
    let mut action = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: with no new action, sigaction only writes the current one into `action`,
    // memory of its size.
    if unsafe { libc::sigaction(signal, std::ptr::null(), action.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: sigaction succeeded, so it filled `action`.
    unsafe { action.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// Runs the scheduler until the number of live tasks stops falling: cancelled tasks are
/// dropped when the scheduler next gets to them, and dropping one may cancel others (the
/// parts of a ranged download). Idle connections' tasks stay alive; they are why this
/// stops at "no longer falling" and not at zero.
pub async fn drop_cancelled_tasks() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    let mut alive = usize::MAX;
    loop {
        tokio::task::yield_now().await;
        let now = metrics.num_alive_tasks();
        if now >= alive || std::time::Instant::now() > deadline {
            return;
        }
        alive = now;
    }
}

/// Writes `text` to stdout as a command's whole output: the exit status, with a failure
/// said. A reader that went away (`| head`) wanted no more, as for `fetch`: not an error.
pub fn print_stdout(text: &[u8]) -> u8 {
    use std::io::Write;
    let mut out = output::RawStdout::new();
    match out.write_all(text).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            say!("dist: writing to stdout: {e}");
            EXIT_FAILED
        }
        _ => 0,
    }
}

/// Says `e` as dist's message on stderr, and gives back `code`, the exit status for it.
pub fn report(e: &Error, code: u8) -> u8 {
    say!("dist: {e}");
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jobs are cut for the files they need, the range streams for what the jobs
    /// leave; a split's jobs split again the same way, as the worker's jobs are split
    /// once for the count and once more for the connections.
    #[test]
    fn the_open_file_budget_cuts_jobs_before_it_cuts_them_for_range_streams() {
        let split = |limit, jobs, streams| FileBudget::split(Some(limit), jobs, streams);
        let budget = |jobs, connections, streams| FileBudget {
            jobs,
            connections,
            streams,
        };
        assert_eq!(split(40, 16, 8), budget(4, 20, 8));
        assert_eq!(split(20, 1, 64), budget(1, 3, 3));
        assert_eq!(split(1024, 64, 4), budget(64, 944, 4));
        assert_eq!(split(64, 16, 64), budget(16, 32, 17));
        for (limit, jobs, streams) in [(40, 16, 8), (16, 4, 4), (100, 64, 64), (64, 64, 1)] {
            let once = split(limit, jobs, streams);
            assert_eq!(
                split(limit, once.jobs, streams),
                once,
                "{limit} {jobs} {streams}"
            );
            assert!(once.connections >= once.jobs + once.streams - 1);
        }
        assert_eq!(FileBudget::split(None, 64, 4), budget(64, usize::MAX, 4));
    }

    /// Regression: with a stop and a send both ready, the unbiased pick dropped the
    /// outcome (an object already stored lost its JSON line) about half the time, and a
    /// pull finished as a signal came exited 130.
    #[tokio::test]
    async fn work_that_can_complete_wins_over_a_stop_ready_beside_it() {
        for _ in 0..200 {
            let mut stop = std::pin::pin!(std::future::ready(Stop::Signal(130)));
            let sent = unless_stopped(std::future::ready(true), &mut stop).await;
            assert!(matches!(sent, Ok(true)), "the ready work was dropped");
        }
    }

    /// One classifier, the batch's ([`Error::is_transient`]), decides the exit status of a
    /// remote that failed: for the moment is 75 at the check and for a one-shot command,
    /// as for a batch's lines; what retrying cannot cure is 2; an object's failure is 1.
    /// A refused connection, a timeout or a 5xx at the check was status 2, and a 503 for a
    /// one-shot command status 1.
    #[test]
    fn a_remote_down_for_the_moment_is_75_and_one_retrying_cannot_cure_is_2() {
        let kind = |kind| Error::new(kind, "failed");
        let http = |status| kind(ErrorKind::Http).with_status(status);
        let too_many = kind(ErrorKind::TooManyRequests).with_status(429);
        for e in [
            kind(ErrorKind::Connect),
            kind(ErrorKind::Timeout),
            http(503),
            too_many,
        ] {
            assert!(e.is_transient(), "{:?}", e.kind());
            assert_eq!(unusable_code(&e), EXIT_TEMPFAIL, "{:?}", e.kind());
            assert_eq!(exit_for(&e), EXIT_TEMPFAIL, "{:?}", e.kind());
        }
        for k in [
            ErrorKind::UnknownHost,
            ErrorKind::Certificate,
            ErrorKind::NotTls,
            ErrorKind::TlsIncompatible,
            ErrorKind::ProxyRefused,
            ErrorKind::Unauthorized,
            ErrorKind::InvalidInput,
        ] {
            assert_eq!(unusable_code(&kind(k)), EXIT_USAGE, "{k:?}");
            assert_eq!(exit_for(&kind(k)), EXIT_USAGE, "{k:?}");
        }
        for e in [
            kind(ErrorKind::NotFound),
            http(400),
            kind(ErrorKind::Protocol),
        ] {
            assert_eq!(unusable_code(&e), EXIT_USAGE, "{:?}", e.kind());
            assert_eq!(exit_for(&e), EXIT_FAILED, "{:?}", e.kind());
        }
    }

    /// A stop after an error: the reader's going leaves an unusable remote's status 2
    /// (and an object's 1) as it was, and makes a 75 1; a signal or `--timeout` says its
    /// own.
    #[test]
    fn a_stop_after_an_error_keeps_the_error_s_status_unless_it_is_a_signal() {
        let unusable = Error::new(ErrorKind::Unauthorized, "credentials refused");
        let missing = Error::new(ErrorKind::NotFound, "no such tag");
        assert_eq!(Stop::ReaderGone.code_after(&unusable), EXIT_USAGE);
        assert_eq!(Stop::ReaderGone.code_after(&missing), EXIT_FAILED);
        // A remote down for the moment, then the reader gone: 1, as the worker's batch
        // and a write that found the reader gone say it; `max` kept the 75.
        let down = Error::new(ErrorKind::Connect, "connection refused");
        assert_eq!(Stop::ReaderGone.code_after(&down), EXIT_FAILED);
        assert_eq!(Stop::ReaderGone.code_over(EXIT_TEMPFAIL), EXIT_FAILED);
        assert_eq!(Stop::ReaderGone.code_over(0), EXIT_FAILED);
        assert_eq!(Stop::Signal(143).code_after(&down), 143);
        assert_eq!(Stop::Signal(130).code_over(EXIT_TEMPFAIL), 130);
        assert_eq!(Stop::Signal(130).code_after(&unusable), 130);
        let deadline = Stop::Deadline(std::time::Duration::ZERO);
        assert_eq!(deadline.code_after(&unusable), EXIT_TIMEOUT);
    }

    /// `--timeout` while stdin was idle, every object read handled, said "the others were
    /// not fetched" of a batch that had none; with nothing read, it said objects reported
    /// were complete where none was.
    #[test]
    fn a_stop_while_the_input_is_idle_says_nothing_was_left() {
        let deadline = Stop::Deadline(std::time::Duration::from_secs(5));
        let why = "dist: gave up after the --timeout of 5s while waiting";
        let none = deadline.idle_input(0, None).unwrap();
        assert_eq!(
            none,
            format!("{why} for input; none had come, nothing was fetched")
        );
        let some = deadline.idle_input(3, None).unwrap();
        assert!(some.starts_with(&format!("{why} for more input")), "{some}");
        assert!(!some.contains("not fetched"), "{some}");
        assert!(!some.contains("cut short"), "{some}");
        assert_eq!(Stop::ReaderGone.idle_input(3, None), None);
        // A reader gone is no failure, its output cut or not.
        assert_eq!(
            Stop::ReaderGone.idle_input(3, Some(Unwritten::Stdout(Writes::Frames))),
            None
        );
    }

    /// A stopped batch says what its stdout ends with as it holds it: the framed worker's
    /// frames, the JSON lines of a worker into `-o DIR` (or a pull), said "frame or line"
    /// of both.
    #[test]
    fn a_stopped_batch_names_what_its_output_ends_with() {
        let framed = Unwritten::Stdout(Writes::Frames).held_and_cut();
        assert!(
            framed.contains("the output ends with the last frame written whole"),
            "{framed}"
        );
        let lines = Unwritten::Stdout(Writes::Lines).held_and_cut();
        assert!(
            lines.contains("the output ends with the last line written whole"),
            "{lines}"
        );
        let both = Unwritten::StdoutOrReport(Writes::Frames, "r.jsonl").held_and_cut();
        assert!(
            both.contains(
                "the output ends with the last frame and the report r.jsonl with the last line"
            ),
            "{both}"
        );
        let both = Unwritten::StdoutOrReport(Writes::Lines, "r.jsonl").held_and_cut();
        assert!(
            both.contains("the output and the report r.jsonl end with the last line"),
            "{both}"
        );
        for said in [framed, lines, both] {
            assert!(!said.contains("frame or line"), "{said}");
        }
    }

    /// Every stop message goes on the same way when the stop found a write under way: a
    /// pull stopped once every object was stored, or in its last sync, said "stored" alone
    /// of lines that may end cut short; and says nothing more when it found none.
    #[test]
    fn every_stop_message_says_a_write_cut_short() {
        use dist::sink::index::IndexEntry;
        let signal = Stop::Signal(143);
        let dir = std::path::Path::new("/m");
        let index = dir.join("index.json");
        let cut = Some(Unwritten::Report("r.jsonl"));
        let tail = format!("; {}", Unwritten::Report("r.jsonl").held_and_cut());
        let said = [
            signal.all_stored(&index, IndexEntry::Durable, cut),
            signal.unsynced(dir, false, cut),
            signal.idle_input(3, cut),
            signal.message(false, cut),
        ];
        for said in said {
            let said = said.unwrap();
            assert!(said.ends_with(&tail), "{said}");
        }
        let stored = signal
            .all_stored(&index, IndexEntry::Durable, None)
            .unwrap();
        assert!(!stored.contains("cut short"), "{stored}");
        let unsynced = signal.unsynced(dir, true, None).unwrap();
        assert!(!unsynced.contains("cut short"), "{unsynced}");
        assert_eq!(Stop::ReaderGone.unsynced(dir, true, cut), None);
    }

    /// A reader, disk or registry that never answers cannot hold off a stop.
    #[tokio::test]
    async fn stuck_work_does_not_hold_off_a_stop() {
        let mut stop = std::pin::pin!(std::future::ready(Stop::Deadline(
            std::time::Duration::ZERO
        )));
        let sent = unless_stopped(std::future::pending::<bool>(), &mut stop).await;
        assert!(matches!(sent, Err(Stop::Deadline(_))));
    }
}
