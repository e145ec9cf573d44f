//! Credentials from Docker's `config.json`, the `auth.json` of podman and skopeo, and
//! their credential helpers.
//!
//! The files, in the order they are asked: `$REGISTRY_AUTH_FILE`; Docker's
//! `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; then the containers tools'
//! `$XDG_RUNTIME_DIR/containers/auth.json` (else `/run/containers/<uid>/auth.json`) and
//! `$XDG_CONFIG_HOME/containers/auth.json` (else `~/.config/containers/auth.json`). Missing
//! files are skipped; the first file with an entry for the registry answers. Within a file,
//! a registry's entry is found through `credHelpers.<host>`, then `credsStore`, then
//! `auths.<host>` (`auth` = base64 `user:password`, or `username`/`password`, or
//! `identitytoken`, or `registrytoken`, a bearer token for the registry itself, which wins
//! as in Docker; an entry with none of them, as Docker Desktop writes beside its
//! `credsStore`, is no credential). Keys are matched as their writers mean them: one with a
//! scheme is Docker's URL form, whose path is ignored (`https://index.docker.io/v1/` is
//! Docker Hub); one without may name a namespace, `host/team`, as the containers tools
//! write, and then counts only for the repositories under it. The key naming the
//! repository most closely wins; between equal ones, a bare host before a URL, then byte
//! order, so the choice never depends on how a file happens to be ordered in memory.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// A secret to authenticate with. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// User name and password (or a personal access token used as one).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token ("identity token"), exchanged at the token endpoint.
    IdentityToken(String),
    /// A bearer token for the registry itself (Docker's `registrytoken`), sent as it is
    /// when the registry asks for a bearer token, with no token endpoint asked.
    RegistryToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credential::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// The `Authorization: Basic …` value for this credential, if it is a password.
    pub fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credential::IdentityToken(_) | Credential::RegistryToken(_) => None,
        }
    }
}

// `null` anywhere is what Go writes for a nil map or pointer, and reads as empty, as
// Docker and podman read these files; to serde it would be no map and break the file.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default, deserialize_with = "null_as_empty")]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers", deserialize_with = "null_as_empty")]
    cred_helpers: HashMap<String, String>,
}

/// A map whose `null` (or `null` values) read as empty, as Go's decoder reads them.
fn null_as_empty<'de, D, V>(d: D) -> std::result::Result<HashMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de> + Default,
{
    let map: Option<HashMap<String, Option<V>>> = Deserialize::deserialize(d)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

// Reaches `Debug` of `CredentialSource`, which services log with their settings: says
// which secrets an entry holds, never what they are.
impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("AuthEntry")
            .field("auth", &secret(&self.auth))
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("identitytoken", &secret(&self.identitytoken))
            .field("registrytoken", &secret(&self.registrytoken))
            .finish()
    }
}

/// The credential files (Docker's and the containers tools'), read once.
#[derive(Debug, Default)]
pub struct DockerConfig {
    /// The files found, in the order they are asked.
    sources: Vec<Source>,
    /// The refresh tokens the files' identity tokens were rotated to so far.
    pub(crate) rotated: RotatedTokens,
}

/// Refresh tokens an OAuth2 server rotated, by the realm and service it did so for and the
/// token each replaced: every host of a run trading the same identity token there (a hosts
/// file's entry for the registry itself, a mirror on the same token service) must send the
/// newest, the only one the server still takes. In memory only: never written, never shown.
#[derive(Default)]
pub(crate) struct RotatedTokens(std::sync::Mutex<HashMap<RotationKey, String>>);

/// The realm, the service (if the challenge names one) and the token replaced.
type RotationKey = (String, Option<String>, String);

fn rotation_key(realm: &str, service: Option<&str>, token: &str) -> RotationKey {
    (
        realm.to_string(),
        service.map(str::to_string),
        token.to_string(),
    )
}

impl RotatedTokens {
    /// The newest refresh token `token` was rotated to at `realm` for `service`, if it was.
    pub(crate) fn newest(&self, realm: &str, service: Option<&str>, token: &str) -> Option<String> {
        let map = self.0.lock().expect("rotated tokens poisoned");
        let mut key = rotation_key(realm, service, token);
        let mut newest = None;
        // Bounded: a server handing an old token out again must not loop us forever.
        for _ in 0..map.len() {
            let Some(next) = map.get(&key) else { break };
            newest = Some(next.clone());
            key.2 = next.clone();
        }
        newest.filter(|n| n != token)
    }

    /// Records that the server at `realm` for `service` replaced `old` with `new`.
    pub(crate) fn record(&self, realm: &str, service: Option<&str>, old: &str, new: &str) {
        let mut map = self.0.lock().expect("rotated tokens poisoned");
        map.insert(rotation_key(realm, service, old), new.to_string());
    }
}

impl std::fmt::Debug for RotatedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or_default();
        write!(f, "RotatedTokens({n} <redacted>)")
    }
}

#[derive(Debug, Default)]
struct Source {
    file: ConfigFile,
    path: Option<PathBuf>,
    /// Why the file could not be read or parsed: it then answers nothing, and says so once,
    /// when a registry first asks for credentials. As with docker, a broken file must not
    /// stop pulls that need none of its credentials.
    broken: Option<String>,
    warned: std::sync::atomic::AtomicBool,
    /// The `auths` keys whose entries could not be read, said once each.
    warned_entries: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl DockerConfig {
    /// Reads every credential file from its usual place (see the module's documentation);
    /// missing files are skipped, so none at all means no credentials.
    pub fn load() -> Result<DockerConfig> {
        // SAFETY: getuid(2) cannot fail and touches no memory of ours.
        let uid = unsafe { libc::getuid() };
        DockerConfig::from_paths(&search_paths(|name| std::env::var_os(name), uid))
    }

    /// Reads `config.json` at `path`; a missing file means no credentials.
    pub fn from_path(path: &Path) -> Result<DockerConfig> {
        DockerConfig::from_paths(&[path.to_owned()])
    }

    /// Reads the files at `paths`, asked in that order; missing ones are skipped, and one
    /// that cannot be read or parsed answers nothing (with a warning when first asked).
    pub fn from_paths(paths: &[PathBuf]) -> Result<DockerConfig> {
        let mut sources = Vec::new();
        for path in paths {
            let parsed = match std::fs::read(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => Err(format!("cannot read it: {e}")),
                // Docker reads an empty file (as `touch` or docker-py leave it) as no
                // settings, not as a broken one.
                Ok(text) if text.trim_ascii().is_empty() => Ok(ConfigFile::default()),
                Ok(text) => serde_json::from_slice::<ConfigFile>(&text).map_err(not_a_config),
            };
            let (file, broken) = match parsed {
                Ok(file) => (file, None),
                Err(why) => (ConfigFile::default(), Some(why)),
            };
            sources.push(Source {
                file,
                path: Some(path.clone()),
                broken,
                ..Source::default()
            });
        }
        Ok(DockerConfig {
            sources,
            ..DockerConfig::default()
        })
    }

    /// The credential for `repository` on registry `host` (as users name it, e.g.
    /// `docker.io`), if any: the first file with an entry for it answers. Without a
    /// repository, only entries for the whole registry count.
    pub async fn credential_for(
        &self,
        host: &str,
        repository: Option<&str>,
    ) -> Result<Option<Credential>> {
        Ok(self.find(host, repository).await?.map(|(c, _)| c))
    }

    /// Like [`DockerConfig::credential_for`], with where the credential came from (the
    /// file, or the credential helper), for messages about a refused one.
    pub async fn find(
        &self,
        host: &str,
        repository: Option<&str>,
    ) -> Result<Option<(Credential, String)>> {
        for source in &self.sources {
            if let Some(found) = source.find(host, repository).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

impl Source {
    async fn find(
        &self,
        host: &str,
        repository: Option<&str>,
    ) -> Result<Option<(Credential, String)>> {
        if let Some(why) = &self.broken {
            if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                let path = self.path.as_deref().unwrap_or(Path::new("?"));
                tracing::warn!("ignoring {}: {why}", path.display());
            }
            return Ok(None);
        }
        let helped = |helper: &str, c: Option<Credential>| {
            c.map(|c| (c, format!("credential helper docker-credential-{helper}")))
        };
        // An empty helper name is Docker's way of saying "this file's `auths`" (a
        // `"credsStore": ""` left to turn off a helper that is not installed here); a
        // registry's empty `credHelpers` entry passes over `credsStore` too, as in Docker.
        match closest(&self.file.cred_helpers, host, repository).map(|(_, h)| h) {
            Some(helper) if !helper.is_empty() => {
                return Ok(helped(helper, run_helper(helper, host).await?));
            }
            Some(_) => {}
            None => {
                if let Some(store) = self.file.creds_store.as_deref().filter(|s| !s.is_empty()) {
                    if let Some(found) = helped(store, run_helper(store, host).await?) {
                        return Ok(Some(found));
                    }
                }
            }
        }
        let Some((key, entry)) = closest(&self.file.auths, host, repository) else {
            return Ok(None);
        };
        let origin = match &self.path {
            Some(p) => p.display().to_string(),
            None => "the credential file".to_string(),
        };
        match entry_credential(entry) {
            Ok(found) => Ok(found.map(|c| (c, origin))),
            // Docker passes over a whole file with such an entry, with a warning, and the
            // containers tools over an `auth` without a colon: a registry that lets anyone
            // pull must not fail for a stale login, and the next file may have a good one.
            Err(why) => {
                let first = self
                    .warned_entries
                    .lock()
                    .expect("warned entries poisoned")
                    .insert(key.clone());
                if first {
                    tracing::warn!("ignoring the entry {key:?} of {origin}: {why}");
                }
                Ok(None)
            }
        }
    }
}

/// Where credentials are looked for, in order, given the environment `env` of user `uid`:
/// an explicit `REGISTRY_AUTH_FILE`, Docker's file, then the containers tools' two
/// (runtime, then persistent).
fn search_paths(env: impl Fn(&str) -> Option<std::ffi::OsString>, uid: u32) -> Vec<PathBuf> {
    let var = |name: &str| crate::user_dirs::path_var(&env, name);
    let mut paths = Vec::new();
    paths.extend(var("REGISTRY_AUTH_FILE"));
    match var("DOCKER_CONFIG") {
        Some(dir) => paths.push(dir.join("config.json")),
        None => paths
            .extend(crate::user_dirs::home(&env).map(|h| h.join(".docker").join("config.json"))),
    }
    // Without `XDG_RUNTIME_DIR` (`sudo`, cron, a system service), `podman login` writes
    // `/run/containers/<uid>/auth.json`, and podman, skopeo and buildah read it there.
    paths.push(match var("XDG_RUNTIME_DIR") {
        Some(dir) => dir.join("containers").join("auth.json"),
        None => PathBuf::from(format!("/run/containers/{uid}/auth.json")),
    });
    let config_home = crate::user_dirs::config_home(&env);
    paths.extend(config_home.map(|d| d.join("containers").join("auth.json")));
    paths
}

/// Why a credential file did not parse, without serde's text, which quotes the offending
/// value: in `{"auths":{"host":"dXNlcjpwdw=="}}` that is a password.
fn not_a_config(e: serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Data => "unexpected content",
        _ => "not valid JSON",
    };
    format!(
        "it is not a credential file ({what} at line {}, column {})",
        e.line(),
        e.column()
    )
}

/// How closely `key` (of `auths` or `credHelpers`) names `repository` on `host`: `None`
/// if it does not, else how many components of the repository's path it names (0 for the
/// whole registry). See the module's documentation for the two forms of key.
fn key_reach(key: &str, host: &str, repository: Option<&str>) -> Option<usize> {
    let (key_host, path) = match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(url) => (url.split('/').next().unwrap_or(url), ""),
        None => key.split_once('/').unwrap_or((key, "")),
    };
    let key_host = match key_host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB,
        other => other,
    };
    if key_host != host {
        return None;
    }
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Some(0);
    }
    let repository = repository?;
    let under = repository == path
        || repository
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('/'));
    under.then(|| path.split('/').count())
}

/// The key of `map` that names `repository` on `host` most closely, with its value.
fn closest<'a, V>(
    map: &'a HashMap<String, V>,
    host: &str,
    repository: Option<&str>,
) -> Option<(&'a String, &'a V)> {
    map.iter()
        .filter_map(|(key, value)| {
            let reach = key_reach(key, host, repository)?;
            Some((
                (reach, !key.contains("://"), Reverse(key.as_str())),
                (key, value),
            ))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, found)| found)
}

/// The credential an entry holds, if it holds one; else why the entry cannot be read (no
/// word of its content, which is a secret).
fn entry_credential(e: &AuthEntry) -> std::result::Result<Option<Credential>, &'static str> {
    // Docker's daemon takes a registry token over anything else the entry holds.
    if let Some(token) = e.registrytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::RegistryToken(token.to_string())));
    }
    if let Some(token) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(token.to_string())));
    }
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        // Go's decoder, which Docker's and podman's use, skips line breaks anywhere:
        // `base64` wraps at 76 columns, and `jq --arg auth "$(… | base64)"` keeps the breaks.
        let joined: String = auth
            .trim()
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n'))
            .collect();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .map_err(|_| "its auth is not base64")?;
        let decoded = String::from_utf8(decoded).map_err(|_| "its auth is not text")?;
        let (u, p) = decoded
            .split_once(':')
            .ok_or("its auth is not user:password")?;
        return Ok(Some(Credential::Basic {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    let given = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    match (given(&e.username), given(&e.password)) {
        (Some(username), Some(password)) => Ok(Some(Credential::Basic { username, password })),
        (None, None) => Ok(None),
        _ => Err("it has a user name or a password, not both"),
    }
}

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server URL on stdin, as Docker does.
async fn run_helper(helper: &str, host: &str) -> Result<Option<Credential>> {
    ask_helper(&format!("docker-credential-{helper}"), host, HELPER_TIMEOUT).await
}

/// Asks the helper `program` for `host` under the name its login stored it: a helper
/// keeps credentials by the exact server name it was given, which for Docker Hub is
/// `https://index.docker.io/v1/` from `docker login` and `docker.io` from `podman login`
/// (and what podman and skopeo ask for).
async fn ask_helper(program: &str, host: &str, within: Duration) -> Result<Option<Credential>> {
    if host != DOCKER_HUB {
        return run_program(program, host, within).await;
    }
    match run_program(program, "https://index.docker.io/v1/", within).await? {
        Some(found) => Ok(Some(found)),
        None => run_program(program, DOCKER_HUB, within).await,
    }
}

/// Runs a credential helper `program` (found on `PATH` unless it is a path) for `server`.
async fn run_program(program: &str, server: &str, within: Duration) -> Result<Option<Credential>> {
    let fail = |msg: String| Error::new(ErrorKind::Unauthorized, msg);
    let io_fail =
        |e: std::io::Error| fail(format!("running credential helper {program}")).with_cause(e);
    let mut child = tokio::process::Command::new(program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io_fail)?;
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
        let status = child.wait().await.map_err(io_fail)?;
        Ok::<_, Error>((status, reply, said))
    };
    // A helper that hangs (waiting for a desktop session, a prompt nobody sees) will hang
    // again: not a timeout worth retrying, but a credential that cannot be had.
    let (status, stdout, stderr) = tokio::time::timeout(within, talk).await.map_err(|_| {
        fail(format!(
            "credential helper {program} did not answer within {:?}",
            within
        ))
    })??;
    if !status.success() {
        let msg = String::from_utf8_lossy(&stdout).to_string() + &String::from_utf8_lossy(&stderr);
        if msg.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        // The helper's own words can carry secrets; report only its exit status.
        return Err(fail(format!(
            "credential helper {program} failed ({status})"
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper that hangs (a desktop keychain waiting for a session) ends in an error
    /// that is not retried: every retry would wait out the timeout again.
    #[tokio::test]
    async fn a_helper_that_does_not_answer_is_not_a_passing_fault() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-hangs");
        std::fs::write(&helper, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let started = std::time::Instant::now();
        let e = run_program(
            helper.to_str().unwrap(),
            "r.test",
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(e.to_string().contains("did not answer"), "{e}");
        assert!(!e.is_transient(), "{:?}", e.kind());
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
    }

    fn helper(dir: &Path, name: &str, script: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `podman login docker.io` stores Docker Hub's login in a helper as `docker.io`,
    /// `docker login` as `https://index.docker.io/v1/`: either is found.
    #[tokio::test]
    async fn docker_hub_is_asked_for_under_both_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let asked = dir.path().join("asked");
        let podman = helper(
            dir.path(),
            "podman-stored",
            &format!(
                "read s; echo \"$s\" >> {}\n[ \"$s\" = docker.io ] || \
                 {{ echo 'credentials not found in native keychain'; exit 1; }}\n\
                 printf '{{\"Username\":\"podman\",\"Secret\":\"p\"}}'",
                asked.display()
            ),
        );
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
        let e = run_program(&flood, "r.test", Duration::from_secs(20))
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
        let c = run_program(&chatty, "r.test", Duration::from_secs(20)).await;
        assert_eq!(
            c.unwrap(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "s".into()
            })
        );
    }

    #[test]
    fn a_rotated_token_is_followed_to_the_newest_for_its_realm_and_service_only() {
        let rotated = RotatedTokens::default();
        let realm = "https://auth.example/token";
        rotated.record(realm, Some("reg"), "t0", "t1");
        rotated.record(realm, Some("reg"), "t1", "t2");
        assert_eq!(
            rotated.newest(realm, Some("reg"), "t0").as_deref(),
            Some("t2")
        );
        assert_eq!(
            rotated.newest(realm, Some("reg"), "t1").as_deref(),
            Some("t2")
        );
        assert_eq!(rotated.newest(realm, Some("reg"), "t2"), None);
        assert_eq!(rotated.newest(realm, Some("other"), "t0"), None);
        assert_eq!(rotated.newest(realm, None, "t0"), None);
        assert_eq!(
            rotated.newest("https://else.example/token", Some("reg"), "t0"),
            None
        );
        // A server that hands an old one out again is no endless chain.
        rotated.record(realm, Some("reg"), "t2", "t0");
        let _ = rotated.newest(realm, Some("reg"), "t1");
        let shown = format!("{rotated:?}");
        assert!(!shown.contains("t1") && !shown.contains("t2"), "{shown}");
    }

    fn config(json: &str) -> DockerConfig {
        DockerConfig {
            sources: vec![Source {
                file: serde_json::from_str(json).unwrap(),
                ..Source::default()
            }],
            ..DockerConfig::default()
        }
    }

    #[tokio::test]
    async fn the_first_file_with_an_entry_answers() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        let podman = dir.path().join("auth.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"both.example":{"username":"docker","password":"d"}}}"#,
        )
        .unwrap();
        std::fs::write(
            &podman,
            r#"{"auths":{"both.example":{"username":"podman","password":"p"},
                        "quay.io/team":{"username":"robot","password":"r"}}}"#,
        )
        .unwrap();
        let missing = dir.path().join("absent.json");
        let c = DockerConfig::from_paths(&[missing, docker, podman.clone()]).unwrap();
        let user = |c: Option<Credential>| match c {
            Some(Credential::Basic { username, .. }) => username,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            user(c.credential_for("both.example", None).await.unwrap()),
            "docker"
        );
        assert_eq!(
            user(c.credential_for("quay.io", Some("team/app")).await.unwrap()),
            "robot"
        );
        assert_eq!(c.credential_for("none.example", None).await.unwrap(), None);
        // Messages about a refused credential name the file it came from.
        let (_, origin) = c.find("quay.io", Some("team/app")).await.unwrap().unwrap();
        assert_eq!(origin, podman.display().to_string());
    }

    #[test]
    fn search_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all = search_paths(
            env(&[
                ("HOME", "/home/u"),
                ("REGISTRY_AUTH_FILE", "/etc/auth.json"),
                ("DOCKER_CONFIG", "/etc/docker"),
                ("XDG_RUNTIME_DIR", "/run/user/1000"),
                ("XDG_CONFIG_HOME", "/home/u/.cfg"),
            ]),
            1000,
        );
        let want = [
            "/etc/auth.json",
            "/etc/docker/config.json",
            "/run/user/1000/containers/auth.json",
            "/home/u/.cfg/containers/auth.json",
        ];
        assert_eq!(all, want.map(PathBuf::from));
        let home_only = search_paths(
            env(&[
                ("HOME", "/home/u"),
                ("REGISTRY_AUTH_FILE", ""),
                ("XDG_RUNTIME_DIR", ""),
            ]),
            1000,
        );
        // Where podman keeps the logins of a user without `XDG_RUNTIME_DIR` (root's, after
        // `sudo podman login`).
        let want = [
            "/home/u/.docker/config.json",
            "/run/containers/1000/auth.json",
            "/home/u/.config/containers/auth.json",
        ];
        assert_eq!(home_only, want.map(PathBuf::from));
    }

    #[test]
    fn keys_name_a_registry_or_a_namespace_in_it() {
        let reach = |key, repo| key_reach(key, "docker.io", repo);
        assert_eq!(
            reach("https://index.docker.io/v1/", Some("library/redis")),
            Some(0)
        );
        assert_eq!(reach("docker.io", None), Some(0));
        assert_eq!(reach("docker.io/library", Some("library/redis")), Some(1));
        assert_eq!(
            reach("docker.io/library/redis", Some("library/redis")),
            Some(2)
        );
        assert_eq!(reach("docker.io/lib", Some("library/redis")), None);
        assert_eq!(reach("docker.io/library", None), None);
        assert_eq!(reach("ghcr.io", Some("library/redis")), None);
        assert_eq!(
            key_reach("http://localhost:5000/v2/", "localhost:5000", None),
            Some(0)
        );
    }

    /// Which key answers must not depend on a hash map's order: the closest namespace,
    /// then a bare host before Docker's URL form.
    #[tokio::test]
    async fn the_closest_key_answers_whatever_the_order() {
        let c = config(
            r#"{"auths":{
                "r.example/team":{"username":"team","password":"p"},
                "r.example/other":{"username":"other","password":"p"},
                "r.example":{"username":"bare","password":"p"},
                "https://r.example":{"username":"url","password":"p"},
                "r.example/team/app/deep":{"username":"deeper","password":"p"}}}"#,
        );
        let user = |c: Option<Credential>| match c {
            Some(Credential::Basic { username, .. }) => username,
            other => panic!("{other:?}"),
        };
        for _ in 0..20 {
            let found = c.credential_for("r.example", Some("team/app")).await;
            assert_eq!(user(found.unwrap()), "team");
            let found = c.credential_for("r.example", Some("elsewhere/app")).await;
            assert_eq!(user(found.unwrap()), "bare");
            assert_eq!(
                user(c.credential_for("r.example", None).await.unwrap()),
                "bare"
            );
        }
        let urls_only = config(
            r#"{"auths":{"https://r.example/v2/":{"username":"b","password":"p"},
                         "http://r.example":{"username":"a","password":"p"}}}"#,
        );
        for _ in 0..20 {
            let found = urls_only.credential_for("r.example", None).await;
            assert_eq!(user(found.unwrap()), "a", "byte order breaks the tie");
        }
    }

    /// Docker Desktop writes `{"auths":{"https://index.docker.io/v1/":{}},"credsStore":
    /// "desktop"}`: the empty entry means no credentials here, not a broken file.
    #[tokio::test]
    async fn an_empty_entry_is_no_credential_and_the_next_file_answers() {
        let dir = tempfile::tempdir().unwrap();
        let desktop = dir.path().join("config.json");
        std::fs::write(&desktop, r#"{"auths":{"https://index.docker.io/v1/":{}}}"#).unwrap();
        let podman = dir.path().join("auth.json");
        std::fs::write(
            &podman,
            r#"{"auths":{"docker.io":{"username":"podman","password":"p"}}}"#,
        )
        .unwrap();
        let c = DockerConfig::from_paths(std::slice::from_ref(&desktop)).unwrap();
        assert_eq!(c.credential_for("docker.io", None).await.unwrap(), None);
        let c = DockerConfig::from_paths(&[desktop, podman]).unwrap();
        assert!(matches!(
            c.credential_for("docker.io", None).await.unwrap(),
            Some(Credential::Basic { username, .. }) if username == "podman"
        ));
    }

    /// Go writes a nil map as `null` and Docker reads it back as empty, and an empty file
    /// as no settings: neither is a broken file, whose other entries would be lost.
    #[tokio::test]
    async fn null_and_empty_read_as_docker_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"a.example":null,"r.example":{"username":"u","password":"p",
                "auth":null,"identitytoken":null}},"credHelpers":null,"credsStore":null}"#,
        )
        .unwrap();
        let c = DockerConfig::from_paths(std::slice::from_ref(&path)).unwrap();
        assert!(c.sources[0].broken.is_none(), "{:?}", c.sources[0].broken);
        assert!(matches!(
            c.credential_for("r.example", None).await.unwrap(),
            Some(Credential::Basic { username, .. }) if username == "u"
        ));
        assert_eq!(c.credential_for("a.example", None).await.unwrap(), None);
        // A null helper is Go's empty string: it passes over `credsStore` to `auths`.
        std::fs::write(
            &path,
            r#"{"auths":null,"credsStore":"definitely-not-installed-xyz",
                "credHelpers":{"r.example":null}}"#,
        )
        .unwrap();
        let c = DockerConfig::from_paths(std::slice::from_ref(&path)).unwrap();
        assert!(c.sources[0].broken.is_none(), "{:?}", c.sources[0].broken);
        assert_eq!(c.credential_for("r.example", None).await.unwrap(), None);
        for empty in ["", " \n"] {
            std::fs::write(&path, empty).unwrap();
            let c = DockerConfig::from_paths(std::slice::from_ref(&path)).unwrap();
            assert!(c.sources[0].broken.is_none(), "{:?}", c.sources[0].broken);
        }
    }

    /// serde's message quotes the value it did not expect, which may be a password.
    #[test]
    fn a_broken_file_is_described_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths":{"r.example":"c2VjcmV0OnB3"}}"#).unwrap();
        let c = DockerConfig::from_paths(&[path]).unwrap();
        let why = c.sources[0].broken.as_deref().unwrap();
        assert!(why.contains("line 1"), "{why}");
        assert!(!why.contains("c2VjcmV0OnB3"), "{why}");
    }

    /// A service logs its settings with `{:?}`; the credentials read from the files must
    /// not come along.
    #[test]
    fn debug_shows_no_secret() {
        let c = config(
            r#"{"auths":{
                "a.example":{"auth":"YWxpY2U6czNjcmV0"},
                "b.example":{"username":"bob","password":"hunter2"},
                "c.example":{"identitytoken":"refresh-me"},
                "d.example":{"registrytoken":"bearer-me"}}}"#,
        );
        let source = crate::auth::CredentialSource::DockerConfig(std::sync::Arc::new(c));
        let shown = format!("{source:?}");
        for secret in ["YWxpY2U6czNjcmV0", "hunter2", "refresh-me", "bearer-me"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("b.example") && shown.contains("bob"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn auth_entries() {
        let c = config(
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
                "reg.example:5000":{"username":"u","password":"p"},
                "tok.example":{"identitytoken":"refresh"},
                "reg.example":{"registrytoken":"bearer","auth":"dXNlcjpwYTpzcw=="}}}"#,
        );
        assert_eq!(
            c.credential_for("docker.io", None).await.unwrap(),
            Some(Credential::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert!(matches!(
            c.credential_for("reg.example:5000", None).await.unwrap(),
            Some(Credential::Basic { .. })
        ));
        assert_eq!(
            c.credential_for("tok.example", None).await.unwrap(),
            Some(Credential::IdentityToken("refresh".into()))
        );
        // As Docker's daemon, a registry token wins over what else the entry holds.
        let found = c.credential_for("reg.example", None).await.unwrap();
        assert_eq!(found, Some(Credential::RegistryToken("bearer".into())));
        assert!(!format!("{found:?}").contains("bearer\""), "{found:?}");
        assert_eq!(c.credential_for("other.example", None).await.unwrap(), None);
    }

    /// A file that is not JSON (or cannot be read) answers nothing instead of failing every
    /// run: the next file still answers, and registries that need no credentials work.
    #[tokio::test]
    async fn a_broken_file_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{\"auths\": {").unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            r#"{"auths":{"r.example":{"username":"u","password":"p"}}}"#,
        )
        .unwrap();
        let c = DockerConfig::from_paths(&[broken.clone(), good]).unwrap();
        assert!(matches!(
            c.credential_for("r.example", None).await.unwrap(),
            Some(Credential::Basic { .. })
        ));
        let c = DockerConfig::from_paths(&[broken]).unwrap();
        assert_eq!(c.credential_for("r.example", None).await.unwrap(), None);
    }

    /// `base64` wraps its output at 76 columns: a long token (an ECR password, a GitHub
    /// fine-grained one) put in with `jq --arg auth "$(printf %s "$u:$p" | base64)"` keeps
    /// the line breaks, which Docker's decoder skips.
    #[tokio::test]
    async fn a_wrapped_auth_reads_as_in_docker() {
        let password = format!("github_pat_{}", "A1b2".repeat(20));
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("robot:{password}"));
        let wrapped: Vec<String> = encoded
            .as_bytes()
            .chunks(76)
            .map(|line| String::from_utf8(line.to_vec()).unwrap())
            .collect();
        assert!(wrapped.len() > 1);
        for joined in [wrapped.join("\\n"), wrapped.join("\\r\\n") + "\\n"] {
            let c = config(&format!(
                r#"{{"auths":{{"r.example":{{"auth":"{joined}"}}}}}}"#
            ));
            assert_eq!(
                c.credential_for("r.example", None).await.unwrap(),
                Some(Credential::Basic {
                    username: "robot".into(),
                    password: password.clone()
                })
            );
        }
    }

    /// Docker passes over a file with an entry it cannot read, the containers tools over
    /// an `auth` without a colon: such an entry answers nothing, and the next file may.
    #[tokio::test]
    async fn an_unreadable_entry_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("auth.json");
        std::fs::write(
            &podman,
            r#"{"auths":{"r.example":{"username":"podman","password":"p"}}}"#,
        )
        .unwrap();
        let docker = dir.path().join("config.json");
        // Not base64; base64 of "no-colon"; not text; a user name alone.
        for entry in [
            r#"{"auth":"!!!"}"#,
            r#"{"auth":"bm8tY29sb24="}"#,
            r#"{"auth":"/w=="}"#,
            r#"{"username":"u"}"#,
        ] {
            std::fs::write(&docker, format!(r#"{{"auths":{{"r.example":{entry}}}}}"#)).unwrap();
            let alone = DockerConfig::from_paths(std::slice::from_ref(&docker)).unwrap();
            let found = alone.credential_for("r.example", None).await;
            assert_eq!(found.unwrap(), None, "{entry}");
            let both = DockerConfig::from_paths(&[docker.clone(), podman.clone()]).unwrap();
            assert!(matches!(
                both.credential_for("r.example", None).await.unwrap(),
                Some(Credential::Basic { username, .. }) if username == "podman"
            ));
        }
    }

    #[test]
    fn debug_redacts() {
        let c = Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header().unwrap(), "Basic dTpodW50ZXIy");
    }

    /// Docker reads an empty helper name as none: `auths` answers.
    #[tokio::test]
    async fn an_empty_helper_name_means_the_file_itself() {
        let c =
            config(r#"{"credsStore":"","auths":{"r.example":{"username":"u","password":"p"}}}"#);
        assert!(matches!(
            c.credential_for("r.example", None).await.unwrap(),
            Some(Credential::Basic { username, .. }) if username == "u"
        ));
        let c = config(
            r#"{"credsStore":"definitely-not-installed-xyz","credHelpers":{"r.example":""},
                "auths":{"r.example":{"username":"u","password":"p"}}}"#,
        );
        assert!(matches!(
            c.credential_for("r.example", None).await.unwrap(),
            Some(Credential::Basic { username, .. }) if username == "u"
        ));
        assert!(c.credential_for("other.example", None).await.is_err());
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
