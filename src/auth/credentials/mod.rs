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
//! Docker Hub, which is also what `registry-1.docker.io` and `index.docker.io` ask for);
//! one without may name a namespace, `host/team`, as the containers tools write, and then
//! counts only for the repositories under it. The key naming the
//! repository most closely wins; between equal ones, a bare host before a URL, then byte
//! order, so the choice never depends on how a file happens to be ordered in memory.

mod config_file;
mod helper;
mod process_group;
mod rotation;

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{Error, Result};
use config_file::{
    closest, entry_credential, hub_alias, not_a_config, search_paths, spelt_host, ConfigFile,
};
use helper::run_helper;
use rotation::RotatedTokens;

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

/// The credential files (Docker's and the containers tools'), read once.
#[derive(Debug, Default)]
pub struct DockerConfig {
    /// The files found, in the order they are asked.
    sources: Vec<Source>,
    /// The refresh tokens the files' identity tokens were rotated to so far.
    pub(crate) rotated: RotatedTokens,
    /// Where the credential helpers are: on `PATH` when `None`, else in this directory
    /// (tests, which must not change the `PATH` every test of the process reads).
    helper_dir: Option<PathBuf>,
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

/// A credential file's content. A UTF-8 byte order mark is skipped, as RFC 8259 lets a
/// reader do and Docker's daemon does for its own JSON: Notepad and Windows PowerShell's
/// `Set-Content -Encoding UTF8` write one, and a `config.json` made so and handed to a CI
/// job was passed over as "not valid JSON at line 1, column 1", its logins unused.
/// UTF-16 (PowerShell 5's `>` and `Out-File`) or UTF-32 is said to be so, with how to
/// convert it ([`wide_encoding`]).
fn parse_config(text: &[u8]) -> std::result::Result<ConfigFile, String> {
    if let Some((family, order, how)) = wide_encoding(text) {
        // iconv reads a byte order mark and takes the order from it; without one, it
        // must be told the order.
        let (how, from) = match how {
            Told::ByteOrderMark => ("it begins with a byte order mark", family.to_string()),
            Told::Nuls => (
                "its first bytes hold NULs where its text has none",
                format!("{family}{order}"),
            ),
        };
        return Err(format!(
            "it is {family}{order} ({how}), where a credential file is UTF-8: convert it \
             (iconv -f {from} -t UTF-8)"
        ));
    }
    let text = text.strip_prefix("\u{feff}".as_bytes()).unwrap_or(text);
    // Docker reads an empty file (as `touch` or docker-py leave it) as no settings, not as
    // a broken one.
    if text.trim_ascii().is_empty() {
        return Ok(ConfigFile::default());
    }
    serde_json::from_slice::<ConfigFile>(text).map_err(not_a_config)
}

/// How [`wide_encoding`] told a file's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Told {
    ByteOrderMark,
    /// A JSON text begins with ASCII, which these encodings write with NULs beside it, in
    /// a pattern of their own (RFC 4627, section 3): `{` is `7B 00` in UTF-16LE,
    /// `7B 00 00 00` in UTF-32LE.
    Nuls,
}

/// The encoding of `text`, a JSON file, if it is UTF-16 or UTF-32: the encoding, its byte
/// order (`LE`, `BE`), and how that was told. UTF-32LE's mark begins as UTF-16LE's does
/// (`FF FE`): it is looked for first.
fn wide_encoding(text: &[u8]) -> Option<(&'static str, &'static str, Told)> {
    const MARKS: [(&[u8], &str, &str); 4] = [
        (&[0xFF, 0xFE, 0, 0], "UTF-32", "LE"),
        (&[0, 0, 0xFE, 0xFF], "UTF-32", "BE"),
        (&[0xFF, 0xFE], "UTF-16", "LE"),
        (&[0xFE, 0xFF], "UTF-16", "BE"),
    ];
    if let Some((_, family, order)) = MARKS.iter().find(|(mark, ..)| text.starts_with(mark)) {
        return Some((family, order, Told::ByteOrderMark));
    }
    let (family, order) = match text.get(..4)? {
        [0, 0, 0, b] if *b != 0 => ("UTF-32", "BE"),
        [a, 0, 0, 0] if *a != 0 => ("UTF-32", "LE"),
        [0, a, 0, b] if *a != 0 && *b != 0 => ("UTF-16", "BE"),
        [a, 0, b, 0] if *a != 0 && *b != 0 => ("UTF-16", "LE"),
        _ => return None,
    };
    Some((family, order, Told::Nuls))
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
                Ok(text) => parse_config(&text),
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

    /// Has the credential helpers found in `dir` rather than on `PATH`.
    #[cfg(test)]
    pub(crate) fn with_helper_dir(mut self, dir: &Path) -> DockerConfig {
        self.helper_dir = Some(dir.to_owned());
        self
    }

    /// Like [`DockerConfig::credential_for`], with where the credential came from (the
    /// file, or the credential helper), for messages about a refused one.
    pub async fn find(
        &self,
        host: &str,
        repository: Option<&str>,
    ) -> Result<Option<(Credential, String)>> {
        // A mirror listed under Docker Hub's API host is Docker Hub (it is sent no `ns`),
        // and its login is Docker Hub's, filed under `docker.io`'s names.
        let host = hub_alias(host);
        for source in &self.sources {
            let helpers = self.helper_dir.as_deref();
            if let Some(found) = source.find(host, repository, helpers).await? {
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
        helpers: Option<&Path>,
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
        // A key in capitals names the lowercase host too, and the helper is asked first
        // under the name as the key spells it: for a credential store, the empty `auths`
        // entry `docker login` leaves beside it.
        fn spelt<'k>(key: Option<&'k String>, host: &str) -> Option<&'k str> {
            key.and_then(|k| spelt_host(k, host))
        }
        // A helper's failure names the file and key that chose it: the file may be one of
        // several asked, and the cure is often to fix or empty that entry.
        let file = self
            .path
            .as_deref()
            .unwrap_or(Path::new("the credential file"));
        let named_by = |field: String| {
            move |e: Error| e.with_note(format!("{field} in {} names it", file.display()))
        };
        match closest(&self.file.cred_helpers, host, repository) {
            Some((key, helper)) if !helper.is_empty() => {
                let found = run_helper(helper, host, spelt(Some(key), host), helpers)
                    .await
                    .map_err(named_by(format!("credHelpers {key:?}")))?;
                return Ok(helped(helper, found));
            }
            Some(_) => {}
            None => {
                if let Some(store) = self.file.creds_store.as_deref().filter(|s| !s.is_empty()) {
                    let key = closest(&self.file.auths, host, repository).map(|(k, _)| k);
                    let found = run_helper(store, host, spelt(key, host), helpers)
                        .await
                        .map_err(named_by("credsStore".to_string()))?;
                    if let Some(found) = helped(store, found) {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes the credential helper `docker-credential-<name>` into `dir`, a shell
    /// script running `script`, and gives its path.
    ///
    /// Written by a program of its own, `sh`, not through a descriptor of this process's:
    /// a program another test started meanwhile would hold a copy of that descriptor until
    /// it ran its own, and the script, open for writing there, could not be run ("Text
    /// file busy"). Once `sh` has exited, nothing holds it open.
    pub(crate) fn helper(dir: &Path, name: &str, script: &str) -> String {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("docker-credential-{name}"));
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "cat > \"$1\"", "sh"])
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = sh.stdin.take().unwrap();
        write!(stdin, "#!/bin/sh\n{script}\n").unwrap();
        drop(stdin);
        assert!(sh.wait().unwrap().success(), "writing {}", path.display());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// A helper `name` that writes each server it is asked for on a line of `asked`, and
    /// has `user`'s login for `serves` alone ("credentials not found" for the others).
    pub(crate) fn recording_helper(
        dir: &Path,
        name: &str,
        serves: &str,
        user: &str,
        asked: &Path,
    ) -> String {
        helper(
            dir,
            name,
            &format!(
                "read s; echo \"$s\" >> {}\n[ \"$s\" = {serves} ] || \
                 {{ echo 'credentials not found in native keychain'; exit 1; }}\n\
                 printf '{{\"Username\":\"{user}\",\"Secret\":\"p\"}}'",
                asked.display()
            ),
        )
    }

    /// Regression: a helper written while another test's thread started a program could
    /// not be run, now and then ("Text file busy", 1 run of `--lib auth::credentials` in
    /// about 80): the program started held a copy of the descriptor the script was being
    /// written through until it ran its own, and a script open for writing anywhere cannot
    /// be run.
    #[test]
    fn a_helper_written_while_programs_start_can_be_run() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let starts = std::thread::spawn(move || {
            use std::os::unix::process::CommandExt;
            while !stopped.load(Ordering::Relaxed) {
                let mut program = std::process::Command::new("true");
                // SAFETY: the closure does nothing. Having one makes the program start by
                // fork, whose copy of the descriptors lasts until the exec: the window the
                // fault needs, wide enough to be hit within this test.
                unsafe { program.pre_exec(|| Ok(())) };
                let _ = program.status();
            }
        });
        let ran = (0..300).find_map(|i| {
            let h = helper(dir.path(), &format!("h{i}"), "exit 0");
            match std::process::Command::new(&h).status() {
                Ok(s) if s.success() => None,
                other => Some(format!("{h}: {other:?}")),
            }
        });
        stop.store(true, Ordering::Relaxed);
        starts.join().unwrap();
        assert_eq!(ran, None);
    }

    pub(super) fn config(json: &str) -> DockerConfig {
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

    /// A file that begins with a UTF-8 byte order mark (Notepad's, Windows PowerShell's)
    /// answers as it would without one; one in UTF-16 is passed over, saying so.
    #[tokio::test]
    async fn a_byte_order_mark_is_skipped_and_utf_16_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{"auths":{"r.example":{"username":"u","password":"p"}}}"#;
        let bom = dir.path().join("bom.json");
        std::fs::write(&bom, format!("\u{feff}{json}\r\n")).unwrap();
        let c = DockerConfig::from_paths(&[bom]).unwrap();
        assert!(matches!(
            c.credential_for("r.example", None).await.unwrap(),
            Some(Credential::Basic { .. })
        ));
        let utf16 = dir.path().join("utf16.json");
        let bytes: Vec<u8> = "\u{feff}{}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        std::fs::write(&utf16, bytes).unwrap();
        let c = DockerConfig::from_paths(&[utf16]).unwrap();
        let why = c.sources[0].broken.as_deref().unwrap_or_default();
        assert!(why.contains("UTF-16"), "{why}");
        assert!(why.contains("iconv -f UTF-16 -t"), "{why}");
        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, "\u{feff}\n").unwrap();
        let c = DockerConfig::from_paths(&[empty]).unwrap();
        assert_eq!(c.sources[0].broken, None);
    }

    /// A file in UTF-16 or UTF-32 with no byte order mark (`iconv -t UTF-16LE`, .NET's
    /// `Encoding.Unicode` without its preamble) was said to be no JSON, and UTF-32LE's
    /// mark, which begins as UTF-16LE's does, was called UTF-16: each is named as it is,
    /// with the byte order iconv must be told.
    #[test]
    fn utf_16_and_utf_32_are_named_with_or_without_a_byte_order_mark() {
        let json = r#"{"auths":{}}"#;
        let utf16 = |be: bool| -> Vec<u8> {
            let units = json.encode_utf16();
            units
                .flat_map(|u| if be { u.to_be_bytes() } else { u.to_le_bytes() })
                .collect()
        };
        let utf32 = |be: bool| -> Vec<u8> {
            let chars = json.chars().map(u32::from);
            chars
                .flat_map(|c| if be { c.to_be_bytes() } else { c.to_le_bytes() })
                .collect()
        };
        let marked = |mark: &[u8], text: Vec<u8>| [mark.to_vec(), text].concat();
        for (text, said, iconv) in [
            (utf16(false), "UTF-16LE (its first bytes", "UTF-16LE"),
            (utf16(true), "UTF-16BE (its first bytes", "UTF-16BE"),
            (utf32(false), "UTF-32LE (its first bytes", "UTF-32LE"),
            (utf32(true), "UTF-32BE (its first bytes", "UTF-32BE"),
            (
                marked(&[0xFF, 0xFE, 0, 0], utf32(false)),
                "UTF-32LE (it begins with a byte order mark",
                "UTF-32",
            ),
            (
                marked(&[0, 0, 0xFE, 0xFF], utf32(true)),
                "UTF-32BE (it begins with a byte order mark",
                "UTF-32",
            ),
            (
                marked(&[0xFE, 0xFF], utf16(true)),
                "UTF-16BE (it begins with a byte order mark",
                "UTF-16",
            ),
        ] {
            let why = parse_config(&text).unwrap_err();
            assert!(why.contains(&format!("it is {said}")), "{why}");
            assert!(
                why.contains(&format!("(iconv -f {iconv} -t UTF-8)")),
                "{why}"
            );
        }
        // UTF-8, with or without its mark, is none of them.
        assert!(parse_config(json.as_bytes()).is_ok());
        assert!(parse_config(format!("\u{feff}{json}").as_bytes()).is_ok());
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

    /// A helper's failure names the file and the key that chose it, and one not installed
    /// says so: "running credential helper …: No such file or directory" read as a file
    /// the helper wanted, and left the user to find which of several files named it.
    #[tokio::test]
    async fn a_helper_s_failure_names_the_entry_that_chose_it() {
        let dir = tempfile::tempdir().unwrap();
        helper(dir.path(), "locked", "echo 'keychain locked' >&2; exit 1");
        let file = dir.path().join("config.json");
        let with = |json: &str| DockerConfig {
            sources: vec![Source {
                file: serde_json::from_str(json).unwrap(),
                path: Some(file.clone()),
                ..Source::default()
            }],
            ..DockerConfig::default()
        };
        let c = with(r#"{"credsStore":"definitely-not-installed-xyz"}"#);
        let e = c.credential_for("r.example", None).await.unwrap_err();
        let shown = e.to_string();
        let want = format!(
            "credential helper docker-credential-definitely-not-installed-xyz is not installed \
             (no such program on PATH); credsStore in {} names it",
            file.display()
        );
        assert!(shown.contains(&want), "{shown}");
        let c = with(r#"{"credHelpers":{"r.example":"locked"}}"#).with_helper_dir(dir.path());
        let e = c.credential_for("r.example", None).await.unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("it said: keychain locked"), "{shown}");
        let want = format!("credHelpers \"r.example\" in {} names it", file.display());
        assert!(shown.contains(&want), "{shown}");
    }

    /// `docker login GHCR.IO` files the login under the name as typed, in the helper as in
    /// `auths`, and Docker asks the helper for `GHCR.IO` when pulling `GHCR.IO/team/app`.
    /// The locator's host is folded to lowercase, but the helper is still asked under the
    /// name its login stored, then under the folded one.
    #[tokio::test]
    async fn a_helper_is_asked_under_the_name_its_key_spells() {
        let dir = tempfile::tempdir().unwrap();
        let asked = dir.path().join("asked");
        recording_helper(dir.path(), "caps", "GHCR.IO", "caps", &asked);
        let user = |c: Option<Credential>| match c {
            Some(Credential::Basic { username, .. }) => username,
            other => panic!("{other:?}"),
        };
        for json in [
            r#"{"credHelpers":{"GHCR.IO":"caps"}}"#,
            r#"{"credsStore":"caps","auths":{"GHCR.IO":{}}}"#,
        ] {
            let c = config(json).with_helper_dir(dir.path());
            let found = c.credential_for("ghcr.io", Some("team/app")).await;
            assert_eq!(user(found.unwrap()), "caps", "{json}");
            assert_eq!(std::fs::read_to_string(&asked).unwrap(), "GHCR.IO\n");
            std::fs::remove_file(&asked).unwrap();
        }
        // A login stored under the folded name is found too, after the spelt one.
        recording_helper(dir.path(), "lower", "ghcr.io", "lower", &asked);
        let c = config(r#"{"credHelpers":{"GHCR.IO":"lower"}}"#).with_helper_dir(dir.path());
        let found = c.credential_for("ghcr.io", None).await;
        assert_eq!(user(found.unwrap()), "lower");
        assert_eq!(
            std::fs::read_to_string(&asked).unwrap(),
            "GHCR.IO\nghcr.io\n"
        );
    }

    /// A helper that knows its hosts only in lowercase (ECR's matches them with a
    /// case-sensitive pattern) refuses the key's capitalised spelling outright, not with
    /// "credentials not found": the lowercase name, which it serves, is still asked, as it
    /// was before the spelling was tried first, and the refusal fails nothing.
    #[tokio::test]
    async fn a_helper_that_refuses_the_key_s_spelling_is_asked_the_folded_host() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "picky",
            "read s; [ \"$s\" = ghcr.io ] || \
             { echo 'can only be used with lowercase hosts' >&2; exit 1; }\n\
             printf '{\"Username\":\"picky\",\"Secret\":\"p\"}'",
        );
        let c = config(r#"{"credHelpers":{"GHCR.IO":"picky"}}"#).with_helper_dir(dir.path());
        match c.credential_for("ghcr.io", None).await.unwrap() {
            Some(Credential::Basic { username, .. }) => assert_eq!(username, "picky"),
            other => panic!("{other:?}"),
        }
    }

    /// A mirror listed as `registry-1.docker.io` (or `index.docker.io`) is Docker Hub
    /// itself, which gets no `ns` as the registry's own host: its credentials are Docker
    /// Hub's, under whichever of its names they were filed.
    #[tokio::test]
    async fn docker_hub_s_other_names_find_its_credentials() {
        let c = config(
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"p"}}}"#,
        );
        for host in ["docker.io", "registry-1.docker.io", "index.docker.io"] {
            assert!(
                matches!(
                    c.credential_for(host, Some("library/redis")).await.unwrap(),
                    Some(Credential::Basic { username, .. }) if username == "hub"
                ),
                "{host}"
            );
        }
        assert_eq!(
            c.credential_for("docker.io.example", None).await.unwrap(),
            None
        );
    }
}
