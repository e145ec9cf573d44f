//! Reading one credential file: where the files are, what they hold, and which of their
//! keys names a repository most closely.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

use super::Credential;
use crate::reference::DOCKER_HUB;

// `null` anywhere is what Go writes for a nil map or pointer, and reads as empty, as
// Docker and podman read these files; to serde it would be no map and break the file.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ConfigFile {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(super) auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    pub(super) creds_store: Option<String>,
    #[serde(default, rename = "credHelpers", deserialize_with = "null_as_empty")]
    pub(super) cred_helpers: HashMap<String, String>,
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
pub(super) struct AuthEntry {
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

/// Where credentials are looked for, in order, given the environment `env` of user `uid`:
/// an explicit `REGISTRY_AUTH_FILE`, Docker's file, then the containers tools' two
/// (runtime, then persistent).
pub(super) fn search_paths(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    uid: u32,
) -> Vec<PathBuf> {
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
pub(super) fn not_a_config(e: serde_json::Error) -> String {
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

/// The name credentials for `host` are filed under: Docker Hub's for any of its names.
pub(super) fn hub_alias(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB,
        other => other,
    }
}

/// The host `key` names, as written, and the path after it (none for Docker's URL form,
/// whose path is not a namespace).
fn key_parts(key: &str) -> (&str, &str) {
    match key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
    {
        Some(url) => (url.split('/').next().unwrap_or(url), ""),
        None => key.split_once('/').unwrap_or((key, "")),
    }
}

/// How `key` spells `host`, when it does otherwise than in lowercase: `docker login
/// GHCR.IO` stores the login in a credential helper under `GHCR.IO`, and Docker asks for
/// it under that name when pulling `GHCR.IO/team/app`.
pub(super) fn spelt_host<'k>(key: &'k str, host: &str) -> Option<&'k str> {
    let (key_host, _) = key_parts(key);
    (key_host != host && key_host.eq_ignore_ascii_case(host)).then_some(key_host)
}

/// How closely `key` (of `auths` or `credHelpers`) names `repository` on `host`: `None`
/// if it does not, else how many components of the repository's path it names (0 for the
/// whole registry). See the `credentials` module's documentation for the two forms of key.
fn key_reach(key: &str, host: &str, repository: Option<&str>) -> Option<usize> {
    let (key_host, path) = key_parts(key);
    // Host names are case-insensitive, and a locator's host is folded to lowercase: a
    // key written as the user typed it, `GHCR.IO`, still names it.
    if hub_alias(&key_host.to_ascii_lowercase()) != host {
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
pub(super) fn closest<'a, V>(
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
pub(super) fn entry_credential(
    e: &AuthEntry,
) -> std::result::Result<Option<Credential>, &'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::credentials::tests::config;
    use crate::auth::credentials::DockerConfig;

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
        // A host name in capitals, as typed at `docker login`, is the same host; a
        // repository's path is not, names being lowercase.
        assert_eq!(reach("https://Index.Docker.IO/v1/", None), Some(0));
        assert_eq!(reach("DOCKER.IO/library", Some("library/redis")), Some(1));
        assert_eq!(key_reach("GHCR.IO", "ghcr.io", None), Some(0));
        // A host is named as written, port and all, as Docker and containerd file it:
        // `registry:443` is the server `registry` names, but a login to one is not sent
        // to the other (nor does Docker send it), so none goes where it was not given.
        assert_eq!(
            key_reach("registry.example", "registry.example:443", None),
            None
        );
        assert_eq!(
            key_reach("registry.example:443", "registry.example", None),
            None
        );
        assert_eq!(
            key_reach(
                "https://registry.example:443/v1/",
                "registry.example:443",
                None
            ),
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
}

/// A credential file's entries as tools write them, generated: what they hold reads back,
/// however its base64 is wrapped, and no file or key panics.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::fuzz::cases(500))]

        /// `auth` is base64 of `user:password`, as `docker login` writes it, or wrapped
        /// at any column with `\n` or `\r\n` (`base64` wraps at 76), inside JSON.
        #[test]
        fn an_auth_reads_back_as_its_user_and_password(
            user in "[^:\u{0}]{1,12}",
            password in any::<String>().prop_filter("a password", |p| !p.is_empty()),
            wrap in 1usize..80,
            crlf in any::<bool>(),
        ) {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{password}"));
            let lines: Vec<&str> = encoded
                .as_bytes()
                .chunks(wrap)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            let auth = lines.join(if crlf { "\r\n" } else { "\n" });
            let json = serde_json::json!({"auths": {"ghcr.io": {"auth": auth}}}).to_string();
            let file: ConfigFile = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(
                entry_credential(&file.auths["ghcr.io"]),
                Ok(Some(Credential::Basic { username: user, password }))
            );
        }

        #[test]
        fn no_entry_panics(
            auth in prop_oneof![any::<String>(), "[A-Za-z0-9+/=\r\n ]{0,20}"],
            username in proptest::option::of(".{0,4}"),
            password in proptest::option::of(".{0,4}"),
            token in proptest::option::of("[a-z]{0,3}"),
        ) {
            let e = AuthEntry {
                auth: Some(auth),
                username,
                password,
                identitytoken: token.clone(),
                registrytoken: token.filter(|t| t.len() == 1),
            };
            let _ = entry_credential(&e);
        }

        /// A key names the registry and a repository path's leading components, as many
        /// as it writes, in any case and any of its URL forms; never another host's.
        #[test]
        fn keys_reach_as_far_as_they_name(
            host in "[a-z]{1,6}\\.(io|com)(:[0-9]{1,4})?",
            repo in proptest::collection::vec("[a-z0-9]{1,4}", 1..4),
            n in 0usize..4,
            form in 0..4,
            trailing in any::<bool>(),
        ) {
            let n = n.min(repo.len());
            let path: String = repo[..n].iter().map(|c| format!("/{c}")).collect();
            let slash = if trailing { "/" } else { "" };
            let key = match form {
                0 => format!("{host}{path}{slash}"),
                1 => format!("{}{path}{slash}", host.to_ascii_uppercase()),
                2 => format!("https://{host}{slash}"),
                _ => format!("http://{host}/v1/"),
            };
            let reach = if form >= 2 { 0 } else { n };
            let repository = repo.join("/");
            prop_assert_eq!(key_reach(&key, &host, Some(&repository)), Some(reach), "{}", key);
            prop_assert_eq!(key_reach(&key, &format!("x{host}"), Some(&repository)), None);
            let other = format!("{repository}x");
            let expected = if form >= 2 || n == 0 { Some(0) } else if n < repo.len() { Some(n) } else { None };
            prop_assert_eq!(key_reach(&key, &host, Some(&other)), expected, "{} {}", key, other);
        }

        #[test]
        fn no_file_panics(
            text in "\\{(\"(auths|credsStore|credHelpers)\":(null|\\{\\}|\"[a-z]{0,3}\"|\\{\"[a-z.:/]{0,8}\":(null|\\{\\}|\"x\"|\\{\"(auth|username|identitytoken)\":(null|\"[A-Za-z0-9=]{0,8}\"|1)\\})\\}),?){0,3}\\}?",
        ) {
            if let Ok(file) = serde_json::from_str::<ConfigFile>(&text) {
                for (key, e) in &file.auths {
                    let _ = entry_credential(e);
                    let _ = key_reach(key, "ghcr.io", Some("a/b"));
                    let _ = spelt_host(key, "ghcr.io");
                }
            }
        }
    }
}
