//! Command-line definitions. Clap stays here, out of the library; `main` turns the parsed
//! arguments into library calls.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use dist::transport::Http2Window;

/// What the environment changes and what the exit status says, shown after the options in
/// `--help` and the manual.
const AFTER_HELP: &str = "\
Environment:
  DOCKER_CONFIG          Docker's configuration folder (config.json); default ~/.docker
  REGISTRY_AUTH_FILE     a credentials file asked before Docker's; then podman's
                         $XDG_RUNTIME_DIR/containers/auth.json (/run/containers/<uid>/...)
                         and $XDG_CONFIG_HOME/containers/auth.json (~/.config/...)
  HTTPS_PROXY, HTTP_PROXY, ALL_PROXY
                         an http:// proxy (credentials in its URL): tunnels (CONNECT)
                         for https, forwarded requests for plain http; or socks5://,
                         socks5h:// (names resolved by the proxy); none is read in a
                         CGI program (REQUEST_METHOD set), as HTTP_PROXY may come from
                         a request's Proxy header there
  NO_PROXY               hosts, domains and networks reached directly (loopback always is)
  XDG_CONFIG_HOME        also holds containers/certs.d/<host>/: a registry's CAs (*.crt)
                         and client certificate (*.cert with its *.key), as do
                         /etc/containers/certs.d and /etc/docker/certs.d, asked after it
  SSL_CERT_FILE, SSL_CERT_DIR
                         a PEM file of CAs, or a folder of them, trusted instead of the
                         system's store
  DIST_HOSTS_DIR         as --hosts-dir
  DIST_FETCH_TIMEOUT     as --timeout
  RUST_LOG               log filter, overriding -v (e.g. dist=debug)
  NO_COLOR               set and not empty: no colour in log lines
  CLICOLOR, CLICOLOR_FORCE
                         CLICOLOR=0: no colour in log lines; CLICOLOR_FORCE set and
                         not 0: colour even off a terminal (as clap's help has them)
  TERM                   dumb: no progress line and no colour, which such a terminal
                         cannot show
  TMPDIR                 where the worker's frames of objects past 1 MiB wait (else /tmp)

Exit status:
  0        everything fetched and verified
  1        an object failed (the others still completed), the reference does not
           resolve (pull, resolve), or no platform in it matches (pull)
  2        usage error, or a remote that retrying cannot cure (untrusted
           certificate, TLS mismatch, unknown host, credentials refused)
  75       the remote is down only for the moment (unreachable, 429 or 5xx past
           the retries), at the start or for every object that failed: try again
           later
  124      --timeout ran out (what was reported is complete)
  130, 143 interrupted by SIGINT, SIGTERM (what was reported is complete)
  129      the terminal closed (SIGHUP; what was reported is complete)";

/// Distribution primitives: fetch verified content out of OCI container registries.
#[derive(Debug, Parser)]
#[command(
    name = "dist",
    version,
    about,
    propagate_version = true,
    after_long_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: Global,
}

impl Global {
    /// Whether a progress line or a meter may be drawn on stderr: not with `-q`, not
    /// while log lines go there (`-v`, `RUST_LOG`), which would tear it at every request,
    /// and not on a terminal that says it cannot move its cursor.
    pub fn draws_progress(&self) -> bool {
        !self.quiet
            && self.verbose == 0
            && self.log_format == LogFormat::Text
            && std::env::var_os("RUST_LOG").is_none()
            && redraws(std::env::var_os("TERM").as_deref())
    }
}

/// Whether a terminal of type `term` redraws a line in place (`\r` and an erase to the end
/// of the line). `TERM=dumb` (Emacs' shell, some CI log viewers) says it does not: each
/// redraw came out as a line of its own, with the escape sequence shown, as cargo's
/// progress bar stays off there for the same reason.
fn redraws(term: Option<&std::ffi::OsStr>) -> bool {
    term.is_none_or(|t| t != "dumb")
}

/// Options every command takes. Listed after each command's own: their places in `--help`
/// count on from the subcommands', and one that tied with a command's option was sorted
/// by name among them (`-v` between `pull`'s `--report` and `--verify-existing`).
#[derive(Debug, Args)]
#[command(next_display_order = 100)]
pub struct Global {
    /// Log requests, statuses and timings to stderr (-vv for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Speak plain HTTP to the registry even though it is not on loopback.
    #[arg(long, global = true)]
    pub plain_http: bool,

    /// Try this mirror before the registry (repeatable; URL or host[:port]).
    #[arg(long, global = true, value_name = "URL")]
    pub mirror: Vec<String>,

    /// Mirror configuration in containerd's layout: DIR/<registry>/hosts.toml (or
    /// DIR/_default/hosts.toml).
    #[arg(long, global = true, env = "DIST_HOSTS_DIR", value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,

    /// Trust this CA certificate (PEM) in addition to the system's.
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// Client certificate (PEM, intermediates after it) for a registry that asks for one;
    /// with --key.
    #[arg(long, global = true, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The private key of --cert (PEM).
    #[arg(long, global = true, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Give up after this long in total (e.g. 30s, 5m, 1h30m); exit status 124.
    #[arg(long, global = true, env = "DIST_FETCH_TIMEOUT", value_parser = parse_timeout, value_name = "DURATION", allow_hyphen_values = true)]
    pub timeout: Option<Duration>,

    /// When `--timeout` runs out, counted from the start (set by `main`).
    #[arg(skip)]
    pub deadline: Option<tokio::time::Instant>,

    /// How many times a failed request is retried.
    // Here and on the other numbers and durations: a negative value is the option's
    // invalid value, not an option of its own, which clap told to pass as `-- -1`.
    #[arg(
        long,
        global = true,
        default_value_t = 5,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub retries: u32,

    /// Give up on a host's DNS lookup, and on a TCP connection, that does not finish within
    /// this long, and on a proxy's tunnel or a TLS handshake not done within this long after it.
    #[arg(long, global = true, default_value = "30s", value_parser = parse_timeout, value_name = "DURATION", allow_hyphen_values = true)]
    pub connect_timeout: Duration,

    /// Abort (and retry or resume) a response that sends nothing for this long.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_timeout, value_name = "DURATION", allow_hyphen_values = true)]
    pub idle_timeout: Duration,

    /// Concurrent range requests for one large blob on a slow connection, and range parts
    /// in memory for all blobs at once (1: never split).
    #[arg(long, global = true, default_value_t = 4, value_name = "N", value_parser = parse_streams, allow_negative_numbers = true)]
    pub range_streams: usize,

    /// HTTP/2 flow-control window, per stream and per connection, in bytes (65535 to
    /// 1073741824; default 16777216), or `adaptive` to size it from the measured
    /// bandwidth-delay product.
    #[arg(long, global = true, value_name = "BYTES|adaptive", value_parser = parse_window, allow_negative_numbers = true)]
    pub http2_window: Option<Http2Window>,

    /// No progress display, no per-object messages or warnings on stderr (errors still set
    /// the exit status and appear in the output).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Log format on stderr: `text` for people, `json` (one object per line) for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

// `display_name` is the name `--version` prints, which clap makes `dist-fetch` for a
// subcommand: `dist fetch --version` must say `dist 0.1.0`, as `dist --version` does
// (and `cargo build --version` says `cargo ...`), for a script that reads the version
// from whichever command line it has. Help's usage lines name the command by `bin_name`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch one object to stdout, or many (object `-`: lines on stdin) concurrently.
    #[command(display_name = "dist")]
    Fetch(FetchArgs),
    /// Pull a whole image (manifests, config, layers) into an OCI image layout.
    #[command(display_name = "dist")]
    Pull(PullArgs),
    /// Print the descriptor a reference points to, as one JSON line.
    #[command(display_name = "dist")]
    Resolve(ResolveArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(display_name = "dist")]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout: `dist man | man -l -`.
    #[command(display_name = "dist")]
    Man,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// host/name:tag, host/name@digest, or oci:<path>[:tag|@digest].
    pub reference: String,

    /// The OCI image layout to pull into (created if needed).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,

    /// Pick this platform out of a multi-platform image (default: this machine's, linux);
    /// an architecture alone (arm64) is linux on it, an OS alone this machine's architecture.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub platform: Option<dist::image::Platform>,

    /// Pull every platform of a multi-platform image.
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,

    /// Concurrent fetches at most.
    #[arg(short, long, default_value_t = dist::worker::DEFAULT_JOBS, value_name = "N", value_parser = parse_jobs, allow_negative_numbers = true)]
    pub jobs: usize,

    /// Also write one JSON line per object to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Re-hash configs and layers already in DIR before trusting them.
    #[arg(long)]
    pub verify_existing: bool,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// host/name:tag, host/name@digest, or oci:<path>[:tag|@digest].
    pub reference: String,
}

/// Ends the run on a command line clap refused, in our words where they help more:
/// `dist fetch host/name:tag`, an image reference pasted whole, lacks its object to clap,
/// but what it needs is the spelling that splits the two.
pub fn explain_or_exit(e: clap::Error) -> ! {
    // A program reading stderr as JSON lines gets a usage error as one of them too: a
    // text line there broke its parser on the one run it most needed to understand.
    let json = log_format_asked() == Some(LogFormat::Json);
    if json {
        crate::cmd::messages_as_json();
    }
    let refuse = |why: &str| -> ! {
        crate::cmd::say(&format!("dist: {why}"));
        crate::cmd::exit(i32::from(crate::cmd::EXIT_USAGE));
    };
    if let Some(why) = variable_refused(&e) {
        refuse(&why);
    }
    if let Some(unknown) = unknown_after_option(&e) {
        explain_or_exit(unknown);
    }
    if let Some(why) = value_forgotten(&e) {
        refuse(&why);
    }
    if e.kind() == clap::error::ErrorKind::UnknownArgument {
        if let Some(why) = object_written_apart(&e) {
            refuse(&why);
        }
    }
    if e.kind() == clap::error::ErrorKind::MissingRequiredArgument {
        if let Some(locator) = fetch_locator_alone() {
            // A URL as curl is given it names its object: that is the spelling meant,
            // whether or not the URL also reads as a repository.
            if let Some(why) = crate::cmd::api_url::as_locator(&locator, None) {
                refuse(&why);
            }
            let why = match locator.parse::<dist::Locator>() {
                Err(why) => Some(why.to_string()),
                // Else most often the worker's `-` forgotten, objects piped in.
                Ok(parsed) => Some(
                    matches!(parsed, dist::Locator::Layout(_))
                        .then(|| layout_object_joined(&locator))
                        .flatten()
                        .unwrap_or_else(|| {
                            format!(
                                "no <OBJECT> after the locator: give a tag or digest (dist \
                                 fetch {locator} OBJECT), or - to read objects from stdin, \
                                 one a line (dist fetch {locator} -)"
                            )
                        }),
                ),
            };
            if let Some(why) = why {
                refuse(&why);
            }
        }
    }
    if json && e.use_stderr() {
        let line = dist::reference::without_credentials(&one_line_usage_error(&e));
        crate::cmd::say(&format!("dist: {line}"));
        crate::cmd::exit(e.exit_code());
    }
    // Clap quotes the word it refuses whole: a reference typed without its command
    // (`unrecognized subcommand 'http://me:pw@host/app'`), or an option's value.
    if e.use_stderr() {
        let text = e.render().to_string();
        let shown = dist::reference::without_credentials(&text);
        if shown != text {
            crate::cmd::say(shown.trim_end());
            crate::cmd::exit(e.exit_code());
        }
    }
    // Help and version text go to stdout, and clap drops a failed write of them and exits
    // 0: `dist --help > FILE` on a full disk passed for a success. A terminal is left to
    // clap, which colours what it writes there.
    if !e.use_stderr() && !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        let text = e.render().to_string();
        crate::cmd::exit(i32::from(crate::cmd::print_stdout(text.as_bytes())));
    }
    e.exit()
}

/// The `--log-format` of a command line clap refused: the last one given before `--`.
/// Read from the words, as clap may have stopped short of it (`-j 0 --log-format json`).
fn log_format_asked() -> Option<LogFormat> {
    use clap::ValueEnum;
    let mut asked = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let value = match arg.to_str() {
            Some("--") => break,
            Some("--log-format") => args.next(),
            Some(a) => a.strip_prefix("--log-format=").map(Into::into),
            None => None,
        };
        if let Some(v) = value {
            asked = v.to_str().and_then(|v| LogFormat::from_str(v, false).ok());
        }
    }
    asked
}

/// Clap's message for `e` on one line, as dist's own messages are: its `error: ` prefix,
/// the usage and the pointer to `--help` left out (the usage is in `--help`), the rest of
/// its lines joined.
fn one_line_usage_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let mut line = String::new();
    for part in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if part.starts_with("Usage:") || part.starts_with("For more information") {
            continue;
        }
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') { " " } else { "; " });
        }
        line.push_str(part);
    }
    line
}

/// The environment variables that stand for options, each with its option.
const OPTION_VARIABLES: [(&str, &str); 2] = [
    ("DIST_FETCH_TIMEOUT", "--timeout"),
    ("DIST_HOSTS_DIR", "--hosts-dir"),
];

/// Makes an empty `DIST_FETCH_TIMEOUT=` or `DIST_HOSTS_DIR=` (a job runner's input left
/// blank) count as unset, as an empty proxy variable does: clap took it for a value and
/// refused the run for an empty `--timeout` or `--hosts-dir` nobody typed. So does a blank
/// `RUST_LOG=` (a job template's `RUST_LOG=${RUST_LOG}`): the logger read it as a filter
/// of nothing, which silenced every warning and `-v`, and it took the progress line away
/// as a filter that sends log lines there does. A blank `DIST_FETCH_TIMEOUT` too: it was
/// refused as an "empty duration", though an empty one is none; a blank `DIST_HOSTS_DIR`
/// is a directory's name, if a strange one. Call it before any other thread starts:
/// nothing may read the environment meanwhile.
pub fn unset_empty_option_variables() {
    let blank = |v: &std::ffi::OsStr| v.to_str().is_some_and(|v| v.trim().is_empty());
    for (variable, _) in OPTION_VARIABLES {
        if std::env::var_os(variable).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(variable);
        }
    }
    for variable in ["DIST_FETCH_TIMEOUT", "RUST_LOG"] {
        if std::env::var_os(variable).is_some_and(|v| blank(&v)) {
            std::env::remove_var(variable);
        }
    }
}

/// `DIST_FETCH_TIMEOUT=soon`, which clap refuses in the words of `--timeout`, an option
/// the command line may not hold at all: said of the variable, where the value came from.
fn variable_refused(e: &clap::Error) -> Option<String> {
    if e.kind() == clap::error::ErrorKind::InvalidUtf8 {
        return variable_not_utf8();
    }
    let (arg, value) = value_refused(e)?;
    let option = arg.split(' ').next()?;
    let (variable, _) = OPTION_VARIABLES.iter().find(|(_, o)| *o == option)?;
    // Even with the option typed after the command, clap reads the variable for the
    // command line's other level, and refuses it there.
    if std::env::var_os(variable)? != value {
        return None;
    }
    let why = std::error::Error::source(e).map_or_else(|| "not valid".into(), |s| s.to_string());
    Some(format!("{variable} (as {option}): {why}"))
}

/// `DIST_FETCH_TIMEOUT` not UTF-8, which clap blamed on "one or more arguments" without a
/// name: said of the variable when every word of the command line is UTF-8, so that the
/// bytes were its. (`DIST_HOSTS_DIR`, a path, may be any bytes.)
fn variable_not_utf8() -> Option<String> {
    if std::env::args_os().any(|a| a.to_str().is_none()) {
        return None;
    }
    let value = std::env::var_os("DIST_FETCH_TIMEOUT")?;
    let shown = format!("{value:?}");
    value
        .to_str()
        .is_none()
        .then(|| format!("DIST_FETCH_TIMEOUT (as --timeout): {shown} is not UTF-8"))
}

/// The option (as clap names it, `--timeout <DURATION>`) and the value of a command line
/// clap refused for an option's value.
fn value_refused(e: &clap::Error) -> Option<(&str, &str)> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    match (
        e.get(ContextKind::InvalidArg)?,
        e.get(ContextKind::InvalidValue)?,
    ) {
        (ContextValue::String(arg), ContextValue::String(value)) => Some((arg, value)),
        _ => None,
    }
}

/// `--timeout --bogus`: a word that is no option, taken for its value by an option that
/// takes words starting with `-` (see [`value_forgotten`]). Refused as every other option
/// that takes a value refuses it (`--retries --bogus`), as an unexpected argument: it was
/// said to be an option whose value was forgotten. The error is clap's for the command line
/// without the option, when it is about that word.
fn unknown_after_option(e: &clap::Error) -> Option<clap::Error> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let (arg, value) = value_refused(e)?;
    let option = arg.split(' ').next().filter(|o| o.starts_with('-'))?;
    // A negative number (`--timeout -1`) is a value, an invalid one; `--` ends the options.
    let named = value.strip_prefix('-')?;
    if !named.starts_with(|c: char| c.is_ascii_alphabetic() || c == '-') || value == "--" {
        return None;
    }
    // The arguments as the OS gave them: a path among them need not be UTF-8.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let at = args
        .windows(2)
        .position(|pair| pair[0] == *option && pair[1] == *value)?;
    args.remove(at);
    let again = Cli::try_parse_from(&args).err()?;
    let ContextValue::String(unknown) = again.get(ContextKind::InvalidArg)? else {
        return None;
    };
    let same = unknown == value || value.starts_with(&format!("{unknown}="));
    (again.kind() == ErrorKind::UnknownArgument && same).then_some(again)
}

/// `--timeout --retries 3`: the value forgotten, and the next option taken for it by an
/// option that takes words starting with `-` (so that a negative number is its invalid
/// value, not an option). Said as clap says a value missing, as it does for the options
/// that take no such words: refused as the value (`invalid duration "--retries"`), it read
/// as though `--retries` had been meant as a duration.
fn value_forgotten(e: &clap::Error) -> Option<String> {
    let (arg, value) = value_refused(e)?;
    // An argument's (`<SHELL>`) is a word typed after `--`, as a value on purpose.
    let option = arg.split(' ').next().filter(|o| o.starts_with('-'))?;
    let named = value.strip_prefix('-')?;
    if !named.starts_with(|c: char| c.is_ascii_alphabetic() || c == '-') {
        return None;
    }
    // `--timeout=--retries` gave it as the value, and is refused as one.
    let joined = format!("{option}={value}");
    if std::env::args_os().any(|a| a == *joined) {
        return None;
    }
    let after = match value {
        "--" => "ends the options",
        _ => "is an option",
    };
    Some(format!(
        "a value is required for '{arg}' but none was supplied ('{value}' after it {after})"
    ))
}

/// The locator of `dist fetch LOCATOR` given alone, without its object: found by parsing
/// the command line again with an object after it, so that options around it (`-j 4`,
/// `--timeout 5s`, `--log-format json`), whose values are words too, are read as clap
/// reads them. Picking the words that do not start with `-` took an option's value for
/// the command, and a pasted reference got clap's "<OBJECT> not provided" instead of its
/// spelling whenever such an option was given. `None` when that does not parse as a
/// fetch of exactly that object (another argument was missing).
fn fetch_locator_alone() -> Option<String> {
    const PLACED: &str = "-";
    // The arguments as the OS gave them: a path among them need not be UTF-8.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    args.push(PLACED.into());
    match Cli::try_parse_from(&args).ok()?.command {
        Command::Fetch(a) if a.object == PLACED && a.hints.is_empty() => Some(a.locator),
        _ => None,
    }
}

/// `dist fetch oci:./dir:v1`: a layout's image reference, as `dist pull` takes it, where
/// `fetch` wants the directory and the object apart.
fn layout_object_joined(locator: &str) -> Option<String> {
    let name = locator.rsplit('/').next().unwrap_or(locator);
    if !name.contains(':') && !name.contains('@') {
        return None;
    }
    let image = locator.parse::<dist::image::ImageRef>().ok()?;
    let dist::Locator::Layout(dir) = &image.locator else {
        return None;
    };
    Some(format!(
        "fetch takes the layout and the object apart: oci:{} {}",
        dir.display(),
        image.object()
    ))
}

/// `dist pull host/name v1` or `dist resolve host/name v1`: the tag (or digest) written
/// apart, as `dist fetch` takes it, which clap only calls an unexpected argument. Found by
/// parsing the command line again without that word: when `pull` or `resolve` then parses,
/// the word was a second positional, and the reference it belongs to is known for certain
/// (an option's value that happens to be the same word is left in place). A word after a
/// reference that names its own tag or digest, or a second whole reference, is told that
/// the command takes one image per run.
fn object_written_apart(e: &clap::Error) -> Option<String> {
    let word = match e.get(clap::error::ContextKind::InvalidArg)? {
        clap::error::ContextValue::String(w) => w.clone(),
        _ => return None,
    };
    if word.starts_with('-') {
        return None;
    }
    // Clap echoes the word whole: one holding a login (a reference pasted with its
    // password) is refused in the library's words, which leave it out.
    if dist::reference::without_credentials(&word) != word {
        return word.parse::<dist::Object>().err().map(|e| e.to_string());
    }
    // The arguments as the OS gave them: a path among them need not be UTF-8.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let at = args.iter().rposition(|a| *a == *word)?;
    args.remove(at);
    let (command, reference) = match Cli::try_parse_from(&args).ok()?.command {
        Command::Pull(a) => ("pull", a.reference),
        Command::Resolve(a) => ("resolve", a.reference),
        _ => return None,
    };
    // A reference that is refused whatever follows it (credentials typed into it) is
    // refused for that first, in the library's words: the joined spelling showed its
    // password whole.
    let image = match reference.parse::<dist::image::ImageRef>() {
        Ok(image) => image,
        Err(e) => return Some(e.to_string()),
    };
    let one_per_run = || {
        format!(
            "{command} takes one image reference ({reference}); got {word:?} after it: \
             {command} one image per run"
        )
    };
    let Ok(object) = word.parse::<dist::Object>() else {
        // A second whole reference: a job's list of images given to one run.
        return word
            .parse::<dist::image::ImageRef>()
            .is_ok()
            .then(one_per_run);
    };
    let joined = match &object {
        dist::Object::Digest(d) => format!("{reference}@{d}"),
        dist::Object::Tag(t) => format!("{reference}:{t}"),
    };
    // The joined spelling is the word's own image only when it names the same remote and
    // that object: after a reference with its tag or digest written (`host/a:v1 v2`) it
    // does not parse, or names another layout (`oci:./a:v1:v2` is directory `./a:v1`).
    match joined.parse::<dist::image::ImageRef>() {
        Ok(j) if j.locator == image.locator && j.object() == object => Some(format!(
            "{command} takes one image reference, its tag or digest joined to the name with \
             ':' or '@' ({joined}); got {word:?} after it"
        )),
        _ => Some(one_per_run()),
    }
}

fn parse_platform(s: &str) -> Result<dist::image::Platform, String> {
    s.parse().map_err(|e: dist::Error| e.to_string())
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The remote: host[:port]/repository (`redis` means docker.io/library/redis).
    pub locator: String,

    /// A tag or a digest (algorithm:hex; `tag@digest` is the digest); `-` reads `object hint…` lines from stdin.
    pub object: String,

    /// `key:value` words: `mediatype:<type>` (repeatable) steers content negotiation,
    /// `size:<bytes>` is the expected size.
    pub hints: Vec<String>,

    /// Concurrent fetches at most (worker mode) [default: 16].
    // No clap default: a `-j` given to a one-shot fetch, which has no pool to bound, is
    // refused rather than ignored, and only an Option tells it was given.
    #[arg(short, long, value_name = "N", value_parser = parse_jobs, allow_negative_numbers = true)]
    pub jobs: Option<usize>,

    /// Write each object to DIR/blobs/<algorithm>/<encoded> (an OCI image layout) and print
    /// one JSON line per object instead of frames.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Emit frames (or JSON lines) in input order instead of completion order.
    #[arg(long)]
    pub ordered: bool,

    /// Also write one JSON line per object to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// With --output: re-hash objects already present before trusting them.
    #[arg(long, requires = "output")]
    pub verify_existing: bool,

    /// Keep only the objects whose digest falls in shard K of N (K from 0 to N-1), so N
    /// workers fed the same input fetch everything exactly once.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<dist::worker::shard::Shard>,
}

fn parse_streams(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number from 1 to 64")),
    }
}

fn parse_window(s: &str) -> Result<Http2Window, String> {
    if s == "adaptive" {
        return Ok(Http2Window::Adaptive);
    }
    match s.parse::<u32>() {
        Ok(n) if (65_535..=1 << 30).contains(&n) => Ok(Http2Window::Fixed(n)),
        _ => Err(format!(
            "{s:?} is neither `adaptive` nor a number from 65535 to 1073741824"
        )),
    }
}

fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number from 1 to 1024")),
    }
}

/// A timeout of zero would fail every request before it could start.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match dist::duration::parse(s)? {
        d if d.is_zero() => Err(format!("{s:?} is no time at all; a timeout must be longer")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fetch --jobs` has no clap default (a one-shot fetch refuses it), so its help
    /// names the default in words, which must follow the constant.
    #[test]
    fn fetch_jobs_help_names_the_default() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let fetch = cli.find_subcommand_mut("fetch").unwrap();
        let jobs = fetch
            .get_arguments()
            .find(|a| a.get_id() == "jobs")
            .unwrap();
        let help = jobs.get_help().unwrap().to_string();
        let default = format!("[default: {}]", dist::worker::DEFAULT_JOBS);
        assert!(help.contains(&default), "{help}");
    }

    /// Every command's `--version` names the program as `dist --version` does: clap named
    /// each after its subcommand (`dist-fetch 0.1.0`).
    #[test]
    fn every_command_names_the_program_in_its_version() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        cli.build();
        let want = format!("dist {}\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(cli.render_version(), want);
        let subcommands: Vec<&clap::Command> = cli.get_subcommands().collect();
        assert!(subcommands.len() >= 5, "{subcommands:?}");
        for sub in subcommands {
            // `help` takes no `--version`.
            if sub.get_name() != "help" {
                assert_eq!(sub.render_version(), want, "{}", sub.get_name());
            }
        }
    }

    /// The long names of the options `--help` lists for `command`, in its order.
    fn listed_options(command: &str) -> Vec<String> {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        // Global options reach the subcommands as the command is built.
        cli.build();
        let help = cli
            .find_subcommand_mut(command)
            .unwrap()
            .render_long_help()
            .to_string();
        help.lines()
            .filter(|l| l.starts_with("  -") || l.starts_with("      --"))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
            .map(|w| w.trim_end_matches([',', '.']).to_string())
            .collect()
    }

    /// A command's own options come first in its `--help`, then the global ones: `-v`, whose
    /// place tied with `pull --verify-existing`'s, was listed between `pull`'s own by name.
    /// `pull`'s are in the order of README's table of them.
    #[test]
    fn help_lists_a_command_s_own_options_first_in_the_readme_s_order() {
        let globals = listed_options("resolve");
        assert!(
            globals.starts_with(&["--verbose".to_string()]),
            "{globals:?}"
        );
        for command in ["fetch", "pull"] {
            let listed = listed_options(command);
            let own: Vec<&String> = listed.iter().filter(|o| !globals.contains(o)).collect();
            assert_eq!(
                listed[..own.len()].iter().collect::<Vec<_>>(),
                own,
                "{command}: {listed:?}"
            );
        }
        let readme = include_str!("../README.md");
        let table = &readme[readme.find("### Options of `dist pull`").unwrap()..];
        let table = &table[..table.find("\n\n[").unwrap()];
        let documented: Vec<String> = table
            .lines()
            .filter(|l| l.starts_with("| `-"))
            .filter_map(|l| l.split(['`', ' ']).find(|w| w.starts_with("--")))
            .map(|w| w.to_string())
            .collect();
        let listed = listed_options("pull");
        assert!(documented.len() >= 6, "{documented:?}");
        assert_eq!(listed[..documented.len()], documented[..], "{listed:?}");
        assert_eq!(listed[documented.len()], "--verbose", "{listed:?}");
    }

    #[test]
    fn timeouts_must_be_longer_than_zero() {
        assert_eq!(parse_timeout("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn http2_windows() {
        assert_eq!(parse_window("65535"), Ok(Http2Window::Fixed(65_535)));
        assert_eq!(parse_window("1073741824"), Ok(Http2Window::Fixed(1 << 30)));
        assert_eq!(parse_window("adaptive"), Ok(Http2Window::Adaptive));
        assert!(parse_window("Adaptive").is_err());
        assert!(parse_window("65534").is_err());
        assert!(parse_window("1073741825").is_err());
        assert!(parse_window("1m").is_err());
    }

    #[test]
    fn a_dumb_terminal_gets_no_progress_redrawn() {
        use std::ffi::OsStr;
        assert!(!redraws(Some(OsStr::new("dumb"))));
        for term in [None, Some("xterm-256color"), Some("screen"), Some("")] {
            assert!(redraws(term.map(OsStr::new)), "{term:?}");
        }
    }
}
