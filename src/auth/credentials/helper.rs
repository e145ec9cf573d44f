//! Asking a credential helper (`docker-credential-<name> get`) for a registry's
//! credential: running it, bounding its time and its reply, and reading what it says.

use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process_group::{self, Group};
use super::Credential;
use crate::error::{Error, ErrorKind, Result};
use crate::reference::DOCKER_HUB;

/// How long a credential helper may take to answer `get`.
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a credential helper's reply may hold: a few hundred bytes, an ECR password
/// some KiB. Past it, the helper is broken, and dist's memory is not its sink.
const HELPER_REPLY_LIMIT: usize = 1 << 20;
/// How much of a helper's stderr is kept, to look for "credentials not found"; the rest
/// is read and dropped, so a chatty helper does not stall on a full pipe.
const HELPER_STDERR_KEPT: usize = 64 << 10;

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server URL on stdin, as Docker does:
/// the one on `PATH`, or the one in `dir`. `spelt` is how the config file's key writes
/// `host`, when it does in other case: asked for first, as Docker would for a locator
/// written so, then `host` itself.
pub(super) async fn run_helper(
    helper: &str,
    host: &str,
    spelt: Option<&str>,
    dir: Option<&std::path::Path>,
) -> Result<Option<Credential>> {
    let name = format!("docker-credential-{helper}");
    let program = match dir {
        Some(dir) => dir.join(name).to_string_lossy().into_owned(),
        None => name,
    };
    if let Some(spelt) = spelt.filter(|_| host != DOCKER_HUB) {
        // A helper that refuses the spelling outright, not with "credentials not found"
        // (ECR's matches its hosts case-sensitively), may still serve `host`, as it did
        // before the spelling was asked first: its answer for `host` decides.
        if let Some(found) = run_program(&program, spelt, HELPER_TIMEOUT, true).await? {
            return Ok(Some(found));
        }
    }
    ask_helper(&program, host, HELPER_TIMEOUT).await
}

/// Asks the helper `program` for `host` under the name its login stored it: a helper
/// keeps credentials by the exact server name it was given, which for Docker Hub is
/// `https://index.docker.io/v1/` from `docker login` and `docker.io` from `podman login`
/// (and what podman and skopeo ask for).
async fn ask_helper(program: &str, host: &str, within: Duration) -> Result<Option<Credential>> {
    if host != DOCKER_HUB {
        return run_program(program, host, within, false).await;
    }
    match run_program(program, "https://index.docker.io/v1/", within, false).await? {
        Some(found) => Ok(Some(found)),
        None => run_program(program, DOCKER_HUB, within, false).await,
    }
}

/// Where `program` is on `PATH`, the first file of that name, as the system looks.
fn on_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The error of a helper `program` that did not answer `within` its time, which is
/// written as dist's other messages write durations (`1m`, not `60s`).
fn no_answer(program: &str, within: Duration) -> Error {
    let within = crate::duration::Written(within);
    Error::new(
        ErrorKind::Unauthorized,
        format!("credential helper {program} did not answer within {within}"),
    )
}

/// Runs a credential helper `program` (found on `PATH` unless it is a path) for `server`.
/// A helper that exits with a failure has no credential for it if `refusal_is_absence`,
/// as one that says "credentials not found" always has; else it fails.
async fn run_program(
    program: &str,
    server: &str,
    within: Duration,
    refusal_is_absence: bool,
) -> Result<Option<Credential>> {
    let fail = |msg: String| Error::new(ErrorKind::Unauthorized, msg);
    let io_fail =
        |e: std::io::Error| fail(format!("running credential helper {program}")).with_cause(e);
    let mut group = Group::spawn(
        tokio::process::Command::new(program)
            .arg("get")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
        process_group::separate(),
    )
    .map_err(|e| match e.kind() {
        // "running …: No such file or directory" read as a file the helper wanted. The
        // system says the same of a script on PATH whose `#!` names a missing
        // interpreter: told "not installed", its user went looking for one that is.
        std::io::ErrorKind::NotFound if !program.contains('/') => match on_path(program) {
            None => fail(format!(
                "credential helper {program} is not installed (no such program on PATH)"
            )),
            Some(found) => fail(format!(
                "running credential helper {} (is the interpreter its #! line names \
                 missing?)",
                found.display()
            ))
            .with_cause(e),
        },
        _ => io_fail(e),
    })?;
    let child = group.child();
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is fine; its output decides.
        let _ = stdin.write_all(server.as_bytes()).await;
    }
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let talk = async {
        let reply = async {
            let mut reply = Vec::new();
            (&mut stdout)
                .take(HELPER_REPLY_LIMIT as u64 + 1)
                .read_to_end(&mut reply)
                .await
                .map_err(io_fail)?;
            if reply.len() > HELPER_REPLY_LIMIT {
                // Returning drops (and so kills) the helper, which may print forever.
                return Err(fail(format!(
                    "credential helper {program} printed more than {} MiB, which is no reply",
                    HELPER_REPLY_LIMIT >> 20
                )));
            }
            Ok(reply)
        };
        let said = async {
            let mut said = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let n = stderr.read(&mut chunk).await.map_err(io_fail)?;
                if n == 0 {
                    return Ok(said);
                }
                let room = HELPER_STDERR_KEPT.saturating_sub(said.len());
                said.extend_from_slice(&chunk[..n.min(room)]);
            }
        };
        let (reply, said) = tokio::try_join!(reply, said)?;
        let status = group.wait().await.map_err(io_fail)?;
        Ok::<_, Error>((status, reply, said))
    };
    // A helper that hangs (waiting for a desktop session, a prompt nobody sees) will hang
    // again: not a timeout worth retrying, but a credential that cannot be had.
    let (status, stdout, stderr) = tokio::time::timeout(within, talk)
        .await
        .map_err(|_| no_answer(program, within))??;
    if !status.success() {
        let msg = String::from_utf8_lossy(&stdout).to_string() + &String::from_utf8_lossy(&stderr);
        if refusal_is_absence || msg.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!(
            "credential helper {program} failed ({status}): {}",
            helper_words(&stdout, &stderr)
        )));
    }
    let reply: HelperReply = serde_json::from_slice(&stdout).map_err(|_| {
        fail(format!(
            "credential helper {program} printed something that is not its JSON reply"
        ))
    })?;
    if reply.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if reply.username == "<token>" {
        Credential::IdentityToken(reply.secret)
    } else {
        Credential::Basic {
            username: reply.username,
            password: reply.secret,
        }
    }))
}

/// What a failed helper said, for its error: "credentials not found in native keychain",
/// "keychain locked" tell the user what to do, as docker's CLI shows them. The first line
/// of its stdout, else of its stderr, on one line and cut; withheld when it may hold a
/// secret ([`may_hold_a_secret`]).
fn helper_words(stdout: &[u8], stderr: &[u8]) -> String {
    let first = |out: &[u8]| {
        let text = String::from_utf8_lossy(out);
        let line = text.lines().map(str::trim).find(|l| !l.is_empty());
        line.map(str::to_string)
    };
    let Some(line) = first(stdout).or_else(|| first(stderr)) else {
        return "it printed nothing".to_string();
    };
    let json = |text: &[u8]| serde_json::from_slice::<serde_json::Value>(text).is_ok();
    if may_hold_a_secret(&line) || json(stdout) {
        return "its message withheld, as it may hold a secret".to_string();
    }
    format!("it said: {}", crate::server_text::one_line(&line))
}

/// Whether a failed helper's `line` may hold a secret: JSON (a reply with its `Secret`),
/// words that name one or an `Authorization` header's schemes, a line of one word (a
/// script that printed what `pass show` gave it, then failed: what a helper prints on
/// stdout is its secret), a word that looks like a token (20 characters and more mixing
/// cases and digits, as base64, JWTs and `ghp_…` do; or 32 hex digits and more), a
/// shell's trace, an `=`, or a URL with user information.
/// A message lost to a wrong guess leaves the exit status; a secret shown is in logs.
fn may_hold_a_secret(line: &str) -> bool {
    let lower = line.to_lowercase();
    let named = [
        "secret",
        "passw",
        "token",
        "bearer",
        "basic ",
        "authorization",
        "api_key",
        "apikey",
        "private",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let json = line.starts_with(['{', '[', '"'])
        || serde_json::from_str::<serde_json::Value>(line).is_ok();
    let words: Vec<&str> = line.split_whitespace().collect();
    let tokenlike = |w: &&str| {
        let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        let mixed = w.chars().any(|c| c.is_ascii_uppercase())
            && w.chars().any(|c| c.is_ascii_lowercase())
            && w.chars().any(|c| c.is_ascii_digit());
        (w.len() >= 20 && mixed) || (w.len() >= 32 && w.chars().all(|c| c.is_ascii_hexdigit()))
    };
    // A shell's trace (`set -x`) shows what it ran with its arguments expanded; an
    // assignment or a query (`pw=…`, a presigned URL's `Signature=…`) and a URL's
    // user information (`https://u:pw@host`) carry what they carry.
    let traced = line.starts_with("+ ");
    let assigned = line.contains('=');
    let userinfo = line.split("://").skip(1).any(|rest| {
        rest.split(['/', ' '])
            .next()
            .is_some_and(|a| a.contains('@'))
    });
    named
        || json
        || traced
        || assigned
        || userinfo
        || words.len() < 2
        || words.iter().any(tokenlike)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::auth::credentials::tests::{config, helper, recording_helper};

    /// Its time, a minute, is written as the options take it; it read "60s".
    #[test]
    fn a_helper_that_does_not_answer_is_said_in_minutes() {
        let e = no_answer("docker-credential-slow", HELPER_TIMEOUT);
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert_eq!(
            e.message(),
            "credential helper docker-credential-slow did not answer within 1m"
        );
    }

    /// A helper that fails is reported with the first line it printed ("keychain
    /// locked": what to do about it), not its exit status alone; what may hold a secret
    /// (JSON, a line naming a password or a token, a bare word, a word like a token, a
    /// shell's trace, an assignment, a URL's user information) is withheld.
    #[tokio::test]
    async fn a_failed_helper_is_reported_with_what_it_said() {
        let dir = tempfile::tempdir().unwrap();
        let long = "xy ".repeat(100);
        let cases = [
            (
                "locked",
                "echo >&2 'keychain locked'",
                Some("it said: keychain locked"),
            ),
            (
                "out",
                "echo; echo 'no session bus'; echo >&2 other",
                Some("it said: no session bus"),
            ),
            (
                "long",
                &format!("echo >&2 {long}") as &str,
                Some(&format!("it said: {}…", &long[..200]) as &str),
            ),
            ("silent", "true", Some("it printed nothing")),
            (
                "json",
                r#"printf '{\n"Username":"u","Secret":"hunter2"}'"#,
                None,
            ),
            ("password", "echo >&2 'wrong Password hunter2'", None),
            ("token", "echo 'TOKEN=hunter2 expired'", None),
            ("quoted", "echo '\"hunter2\"'", None),
            // What a script helper printed from `pass show` before it failed.
            ("bare", "echo hunter2", None),
            (
                "basic",
                "echo 'Authorization: Basic dXNlcjpodW50ZXIy'",
                None,
            ),
            ("bearer", "echo 'refresh failed: bEARER hunter2'", None),
            (
                "jwt",
                "echo 'login failed for eyJhbGciOiJIUzI1NiJ9hunter2'",
                None,
            ),
            (
                "github",
                "echo >&2 'rejected ghp_0aB1cD2eF3gH4iJ5kL6mhunter2'",
                None,
            ),
            (
                "hex",
                &format!("echo 'bad key {}'", "0f".repeat(20)) as &str,
                None,
            ),
            ("xtrace", "set -x; pw=hunter2", None),
            ("assigned", "echo 'login failed: user=u pw=hunter2'", None),
            (
                "userinfo",
                "echo 'cannot reach https://u:hunter2@r.test/v2/'",
                None,
            ),
        ];
        for (name, script, said) in cases {
            let program = helper(dir.path(), name, &format!("{script}\nexit 3"));
            let e = run_program(&program, "r.test", Duration::from_secs(30), false)
                .await
                .unwrap_err();
            let text = e.to_string();
            assert!(text.contains("failed (exit status: 3): "), "{name}: {text}");
            assert!(!text.contains("hunter2"), "{name}: {text}");
            match said {
                Some(said) => assert!(text.ends_with(said), "{name}: {text}"),
                None => assert!(
                    text.ends_with("its message withheld, as it may hold a secret"),
                    "{name}: {text}"
                ),
            }
        }
    }

    /// A helper that hangs (a desktop keychain waiting for a session) ends in an error
    /// that is not retried: every retry would wait out the timeout again.
    #[tokio::test]
    async fn a_helper_that_does_not_answer_is_not_a_passing_fault() {
        let dir = tempfile::tempdir().unwrap();
        let hangs = helper(dir.path(), "hangs", "exec sleep 30");
        let started = std::time::Instant::now();
        let e = run_program(&hangs, "r.test", Duration::from_millis(300), false)
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(e.to_string().contains("did not answer"), "{e}");
        assert!(!e.is_transient(), "{:?}", e.kind());
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
    }

    /// Whether the process `pid` is gone, or only a zombie left for its new parent to
    /// reap (which a container's first process may never do).
    fn ended(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // `pid (comm) S ...`: the state follows the last `)`.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    /// A helper script that hangs in a program it started: giving up on the helper
    /// stops that program too, rather than leave it running, one more each time.
    #[tokio::test]
    async fn a_helper_given_up_on_leaves_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let spawns = helper(
            dir.path(),
            "spawns",
            &format!(
                "sleep 300 &\necho $! > {0}.tmp\nmv {0}.tmp {0}\nwait",
                pid_file.display()
            ),
        );
        let e = run_program(&spawns, "r.test", Duration::from_secs(2), false)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("did not answer"), "{e}");
        let pid = std::fs::read_to_string(&pid_file).expect("the helper started its child");
        let pid = pid.trim();
        let started = std::time::Instant::now();
        while !ended(pid) {
            if started.elapsed() > Duration::from_secs(30) {
                // Not left behind by a failing test either.
                let pid: libc::pid_t = pid.parse().unwrap();
                // SAFETY: kill(2) touches no memory.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the helper's child {pid} still runs");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `podman login docker.io` stores Docker Hub's login in a helper as `docker.io`,
    /// `docker login` as `https://index.docker.io/v1/`: either is found.
    #[tokio::test]
    async fn docker_hub_is_asked_for_under_both_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let asked = dir.path().join("asked");
        let podman = recording_helper(dir.path(), "podman-stored", "docker.io", "podman", &asked);
        let found = ask_helper(&podman, "docker.io", Duration::from_secs(20)).await;
        assert!(matches!(
            found.unwrap(),
            Some(Credential::Basic { username, .. }) if username == "podman"
        ));
        let asked_for = std::fs::read_to_string(&asked).unwrap();
        assert_eq!(asked_for, "https://index.docker.io/v1/\ndocker.io\n");
        // Other registries are asked for once, by their own name.
        std::fs::remove_file(&asked).unwrap();
        let found = ask_helper(&podman, "quay.io", Duration::from_secs(20)).await;
        assert_eq!(found.unwrap(), None);
        assert_eq!(std::fs::read_to_string(&asked).unwrap(), "quay.io\n");
    }

    /// A helper that prints without end must not have dist hold all it prints until the
    /// timeout (gigabytes, from a loop): past 1 MiB it is refused, and stopped.
    #[tokio::test]
    async fn a_helper_s_reply_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let flood = helper(
            dir.path(),
            "flood",
            "head -c 2097152 /dev/zero; exec sleep 30",
        );
        let e = run_program(&flood, "r.test", Duration::from_secs(20), false)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("printed more than 1 MiB"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        // Its stderr is read to the end and not kept: a helper that logs a lot there
        // still answers.
        let chatty = helper(
            dir.path(),
            "chatty",
            "head -c 2097152 /dev/zero >&2; printf '{\"Username\":\"u\",\"Secret\":\"s\"}'",
        );
        let c = run_program(&chatty, "r.test", Duration::from_secs(20), false).await;
        assert_eq!(
            c.unwrap(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "s".into()
            })
        );
    }

    #[tokio::test]
    async fn missing_helper_is_reported() {
        let c = config(r#"{"credHelpers":{"r.example":"definitely-not-installed-xyz"}}"#);
        let e = c.credential_for("r.example", None).await.unwrap_err();
        assert!(e
            .to_string()
            .contains("docker-credential-definitely-not-installed-xyz"));
    }
}
