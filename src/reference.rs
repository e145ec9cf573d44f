//! Names: locators of remotes, and the objects fetched from them. No I/O happens here.
//!
//! A locator is schemaless, `host[:port]/path` (an `http://` or `https://` prefix picks the
//! scheme), normalised the way the Docker reference grammar does it: `redis` is
//! `docker.io/library/redis`, and the first path component is a host only when it contains
//! `.` or `:` or is `localhost`. An object is a tag or a digest.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// Docker Hub's canonical name, as written in references and in `config.json`.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Where objects come from: a registry repository, or (with `oci:`) an OCI image layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// A repository on a registry reached over HTTP(S).
    Registry(Repository),
    /// An OCI image layout directory on the local filesystem (`oci:<path>`).
    Layout(std::path::PathBuf),
}

impl FromStr for Locator {
    type Err = Error;

    fn from_str(s: &str) -> Result<Locator> {
        match s.strip_prefix("oci:") {
            Some("") => Err(Error::invalid("locator \"oci:\" names no directory")),
            Some(path) => Ok(Locator::Layout(path.into())),
            None => s.parse().map(Locator::Registry),
        }
    }
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locator::Registry(r) => r.fmt(f),
            Locator::Layout(p) => write!(f, "oci:{}", p.display()),
        }
    }
}

/// A repository on a registry: `host/name`, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    host: String,
    name: String,
    plain_http: bool,
}

impl Repository {
    /// The registry as users name it (`docker.io`, `localhost:5000`); credentials are
    /// looked up under this name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository path within the registry (`library/redis`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host and port that serve the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.host
        }
    }

    /// Whether the registry is spoken to over plain HTTP: loopback hosts by default, or
    /// when forced by [`Repository::force_plain_http`].
    pub fn plain_http(&self) -> bool {
        self.plain_http
    }

    /// Use plain HTTP for this registry even though it is not a loopback host.
    pub fn force_plain_http(&mut self) {
        self.plain_http = true;
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.plain_http {
            "http"
        } else {
            "https"
        }
    }

    /// The base URL of the registry API, e.g. `https://registry-1.docker.io/v2/`.
    pub fn api_base(&self) -> String {
        format!("{}://{}/v2/", self.scheme(), self.api_host())
    }
}

impl FromStr for Repository {
    type Err = Error;

    fn from_str(s: &str) -> Result<Repository> {
        parse_repository(s, true)
    }
}

/// Parses a locator; with `explain`, a refusal names the spelling that was likely meant.
/// That asks whether a shorter locator parses, which asks for no explanation of its own:
/// explained in turn, `host/app:a:b:…` recursed once per colon, and a few thousand of
/// them overflowed the stack.
fn parse_repository(s: &str, explain: bool) -> Result<Repository> {
    let bad = |why: &str| Error::invalid(format!("invalid locator {:?}: {why}", shown(s)));
    // An explicit scheme is not part of the grammar, but people paste URLs.
    let (rest, scheme) = if let Some(r) = s.strip_prefix("https://") {
        (r, Some(false))
    } else if let Some(r) = s.strip_prefix("http://") {
        (r, Some(true))
    } else {
        (s, None)
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    if has_user_info(s) {
        return Err(bad(NO_CREDENTIALS_HERE));
    }
    let (host, path) = match rest.split_once('/') {
        Some((first, path)) if is_host(first) => (first.to_string(), path.to_string()),
        _ => (DOCKER_HUB.to_string(), rest.to_string()),
    };
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    };
    validate_host(&host).map_err(|why| bad(&why))?;
    let name = if host == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    // `ghcr.io` alone reads, by the grammar, as Docker Hub's `library/ghcr.io`, which
    // Docker accepts and then fails with "pull access denied"; no official image has a
    // dot in its name, so it is said what it is: a registry without a repository.
    let checked = if !rest.contains('/') && is_host(rest) {
        Err("a registry with no repository".to_string())
    } else {
        validate_name(&name)
    };
    if let Err(why) = checked {
        if !explain {
            return Err(bad(&why));
        }
        // People paste image references (`host/name:tag`) where a locator goes.
        return Err(match with_object(s) {
            // `host/name:` with the object typed apart: a separator left behind.
            Some((repo, "")) if parse_repository(repo, false).is_ok() => bad(&format!(
                "a stray {:?} at its end; the locator is {repo}",
                &s[repo.len()..]
            )),
            Some((repo, object)) if parse_repository(repo, false).is_ok() => bad(&format!(
                "a locator names a repository; the tag or digest is the next argument: \
                 {repo} {object}"
            )),
            _ if !rest.contains('/') && is_host(rest) => {
                bad("a registry with no repository (host[:port]/name)")
            }
            // `Team/App`, as a project is named elsewhere: registries take no capitals.
            _ if name.bytes().any(|b| b.is_ascii_uppercase())
                && validate_name(&name.to_ascii_lowercase()).is_ok() =>
            {
                bad(&format!(
                    "{why}; repository names are lowercase: {host}/{}",
                    name.to_ascii_lowercase()
                ))
            }
            _ => bad(&why),
        });
    }
    let plain_http = scheme.unwrap_or_else(|| is_loopback(&host));
    Ok(Repository {
        host,
        name,
        plain_http,
    })
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.name)
    }
}

/// Splits an image reference (`name@digest`, `name:tag`) into its repository and object;
/// `None` when there is neither. A lone `host:port` is not a name and a tag.
fn with_object(s: &str) -> Option<(&str, &str)> {
    if let Some((repo, digest)) = s.split_once('@') {
        // `user@host/…` is user information, not a digest.
        // Nothing after it: a separator left behind, the object typed apart.
        let digest_like = digest.is_empty() || (digest.contains(':') && !digest.contains('/'));
        return digest_like.then_some((repo, digest));
    }
    let last = s.rsplit('/').next()?;
    let (name, tag) = last.rsplit_once(':')?;
    if !s.contains('/') && is_host(name) {
        return None;
    }
    Some((&s[..s.len() - tag.len() - 1], tag))
}

/// `host/app@` or `host/app:`: the object left out, or typed as the next argument.
fn stray_separator(s: &str, repo: &str, sep: char) -> Error {
    Error::invalid(format!(
        "invalid reference {:?}: nothing after {sep:?}; write the {} there ({repo}{sep}{}), \
         or leave the {sep:?} out",
        shown(s),
        if sep == '@' { "digest" } else { "tag" },
        if sep == '@' { "sha256:…" } else { "v1" },
    ))
}

/// Why `user:password@host/…` is refused.
pub(crate) const NO_CREDENTIALS_HERE: &str =
    "credentials do not go here; dist reads them from docker \
     login, podman login or a credential helper (see --help)";

/// Whether `s` starts with user information (`[scheme://]user[:password]@host/…`).
fn has_user_info(s: &str) -> bool {
    let body = s.split_once("://").map_or(s, |(_, rest)| rest);
    body.split_once('/')
        .is_some_and(|(authority, _)| authority.contains('@'))
}

/// The locator as it may be shown in a message: without user information
/// (`user:password@host/…`), which has no place in a locator and must not reach a
/// terminal or a log.
fn shown(s: &str) -> String {
    if has_user_info(s) {
        crate::error::redact_url(s)
    } else {
        s.to_string()
    }
}

fn is_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// Strips the port from `host[:port]` or `[v6]:port`.
pub(crate) fn host_without_port(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether `host` (`name`, `name:port`, `[v6]` or `[v6]:port`) is this machine: `localhost`
/// in any case, 127.0.0.0/8 or `::1` in any spelling, 127.0.0.0/8 mapped into IPv6
/// (`[::ffff:127.0.0.1]`, as Go's and so containerd's check counts it too). Loopback
/// registries are spoken to over plain HTTP, like Docker's built-in insecure exception for
/// 127.0.0.0/8, and never through a proxy.
pub fn is_loopback(host: &str) -> bool {
    let h = host_without_port(host);
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn validate_host(host: &str) -> std::result::Result<(), String> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in host".to_string())?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("bad IPv6 address {addr:?}"))?;
        // URLs take `[::1]5000` for `[::1]` on the scheme's port, the rest unread: a
        // colon left out went to port 80 or 443 of the address.
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                format!(
                    "{after:?} after the IPv6 address; a port goes after a colon ([{addr}]:PORT)"
                )
            })?),
        };
        (None, port)
    } else if let Some(bracketed) = bracketed_ipv6(host) {
        // `::1:5000` read as a name "" and a port ":1:5000" was refused as `bad host name
        // ""`, which says nothing of the brackets an IPv6 address needs in a locator.
        return Err(format!(
            "an IPv6 address is written in brackets, as in URLs: {bracketed}"
        ));
    } else {
        match host.split_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        let ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(format!("bad host name {name:?}"));
        }
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(format!("bad port {port:?}"));
        }
    }
    Ok(())
}

/// `host` (an IPv6 address without brackets, with or without a port after it) as it is
/// written: `[fd00::1]:5000` for `fd00::1:5000`, where the last group reads as a port,
/// as people write `host:port`; `[fd00::5]` when it cannot be one (`fd00:` is no address,
/// and the colon of a `::` separates no port). `None` for anything else.
pub(crate) fn bracketed_ipv6(host: &str) -> Option<String> {
    if host.matches(':').count() < 2 {
        return None;
    }
    let with_port = host.rsplit_once(':').filter(|(addr, port)| {
        !addr.ends_with(':')
            && addr.parse::<std::net::Ipv6Addr>().is_ok()
            && port.parse::<u16>().is_ok()
    });
    match with_port {
        Some((addr, port)) => Some(format!("[{addr}]:{port}")),
        None => host
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
            .then(|| format!("[{host}]")),
    }
}

/// Path components are `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn validate_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty repository name".into());
    }
    if name.len() > 255 {
        return Err("repository name longer than 255 characters".into());
    }
    for component in name.split('/') {
        let b = component.as_bytes();
        let ok = !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
            })
            && !component.contains("..")
            && !component.contains("___")
            && !component.contains("._")
            && !component.contains("_.")
            && !component.contains(".-")
            && !component.contains("-.")
            && !component.contains("_-")
            && !component.contains("-_");
        if !ok {
            return Err(format!(
                "bad path component {component:?} (lowercase letters, digits and single separators)"
            ));
        }
    }
    Ok(())
}

/// What to fetch from a remote: a tag (mutable name) or a digest (immutable content).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Object {
    /// A tag such as `latest`: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
    Tag(String),
    /// Content addressed by digest.
    Digest(Digest),
}

impl Object {
    /// The tag, or the digest as `algorithm:encoded`: what goes into a request path.
    pub fn as_str(&self) -> &str {
        match self {
            Object::Tag(t) => t,
            Object::Digest(d) => d.as_str(),
        }
    }

    /// The digest, when the object is addressed by one.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Object::Digest(d) => Some(d),
            Object::Tag(_) => None,
        }
    }

    /// For a tag that is a digest's hex with its algorithm left off (`27ae8a…`, copied
    /// from a tool that prints digests bare), the digest it most likely means. Such a tag
    /// is valid, so it is asked for as one; this names the spelling when it is not found.
    pub fn bare_digest_spelling(&self) -> Option<String> {
        let Object::Tag(t) = self else { return None };
        let hex = t
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match t.len() {
            64 if hex => Some(format!("sha256:{t}")),
            128 if hex => Some(format!("sha512:{t}")),
            _ => None,
        }
    }
}

impl FromStr for Object {
    type Err = Error;

    /// A tag, a digest, or `tag@digest` as image references write both (`7.2@sha256:…`,
    /// copied from `redis:7.2@sha256:…`): the digest, which pins the content, as Docker and
    /// containerd read such a reference.
    fn from_str(s: &str) -> Result<Object> {
        if let Some((tag, digest)) = s.split_once('@') {
            if !is_tag(tag) {
                if let Some(e) = pasted_reference(s, None) {
                    return Err(e);
                }
                return Err(Error::invalid(format!(
                    "invalid object {s:?}: {tag:?} before '@' is not a tag"
                )));
            }
            return digest.parse().map(Object::Digest);
        }
        if Digest::looks_like(s) {
            return s
                .parse()
                .map(Object::Digest)
                .map_err(|e| pasted_reference(s, Some(&e)).unwrap_or(e));
        }
        if is_tag(s) {
            Ok(Object::Tag(s.to_string()))
        } else {
            Err(Error::invalid(format!(
                "invalid object {s:?}: neither a digest (algorithm:hex) nor a tag"
            )))
        }
    }
}

/// The error for an image reference (`team/app:v1`, `redis:7.2`, `host/app@sha256:…`)
/// given where a tag or digest goes, as people paste one after learning `dist pull`: the
/// digest grammar's complaint (a "malformed algorithm") would not tell them what to write.
/// `digest_error` is why `s` is no digest, kept in the message when `s` may have been meant
/// as one. `None` when `s` is no such reference, or when it names a digest algorithm dist
/// knows (`sha256:abc` is a digest written wrong, and its own message says how).
fn pasted_reference(s: &str, digest_error: Option<&Error>) -> Option<Error> {
    let r: Reference = s.parse().ok()?;
    let object = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => return None,
    };
    // The repository as written: normalised (`docker.io/…`) it would name another registry
    // than the user's locator may.
    let before = s.split('@').next().unwrap_or(s);
    let last_slash = before.rfind('/').map_or(0, |i| i + 1);
    let name = match before[last_slash..].find(':') {
        Some(i) => &before[..last_slash + i],
        None => before,
    };
    if s.contains('/') || s.contains('@') {
        return Some(Error::invalid(format!(
            "invalid object {s:?}: an image reference, not a tag or digest; the repository is \
             the locator and the object is {object} alone ({name} {object})"
        )));
    }
    if ["sha256", "sha512"]
        .iter()
        .any(|a| name.eq_ignore_ascii_case(a))
    {
        return None;
    }
    // `md5:…` may be meant as a digest as much as `app:v1` as a reference: say both.
    let digest_error = digest_error?;
    Some(Error::invalid(format!(
        "{digest_error}; if it is an image reference (name:tag), the object is {object} alone"
    )))
}

/// Whether `s` is a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Tag(t) => f.write_str(t),
            Object::Digest(d) => d.fmt(f),
        }
    }
}

/// A full image reference, `host/name:tag` or `host/name@digest` (both may be given; the
/// digest wins). A reference without either means `:latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Where the image lives.
    pub repository: Repository,
    /// The tag, if one was written.
    pub tag: Option<String>,
    /// The digest, if one was written.
    pub digest: Option<Digest>,
}

/// The tag a reference with neither tag nor digest means.
pub const DEFAULT_TAG: &str = "latest";

/// What a reference with `tag` and `digest` resolves: the digest when present, else the
/// tag, else [`DEFAULT_TAG`].
pub fn object_of(tag: Option<&str>, digest: Option<&Digest>) -> Object {
    match (digest, tag) {
        (Some(d), _) => Object::Digest(d.clone()),
        (None, Some(t)) => Object::Tag(t.to_string()),
        (None, None) => Object::Tag(DEFAULT_TAG.into()),
    }
}

impl Reference {
    /// The object to resolve: the digest when present, else the tag, else `latest`.
    pub fn object(&self) -> Object {
        object_of(self.tag.as_deref(), self.digest.as_ref())
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference> {
        if has_user_info(s) {
            return Err(Error::invalid(format!(
                "invalid reference {:?}: {NO_CREDENTIALS_HERE}",
                shown(s)
            )));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, "")) => return Err(stray_separator(s, r, '@')),
            Some((r, d)) => (r, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        // A colon after the last slash starts the tag; one before it is a port.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repo, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        let tag = match tag {
            Some("") if digest.is_none() => return Err(stray_separator(s, repo, ':')),
            // `name:sha256:…`, a colon typed for the `@`: what follows the first colon
            // would parse as a digest, or fail as a bad one, and name neither mistake.
            Some(t) if t.contains(':') => {
                return Err(Error::invalid(format!(
                    "invalid reference {:?}: {t:?} after ':' is not a tag; a digest goes \
                     after '@' ({}@{t})",
                    shown(s),
                    &rest[..rest.len() - t.len() - 1]
                )))
            }
            Some(t) => match t.parse::<Object>()? {
                Object::Tag(t) => Some(t),
                Object::Digest(d) => {
                    return Err(Error::invalid(format!(
                        "invalid reference {:?}: {d} is not a tag",
                        shown(s)
                    )))
                }
            },
            None => None,
        };
        Ok(Reference {
            repository: repo.parse()?,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_reference(
            f,
            &self.repository,
            self.tag.as_deref(),
            self.digest.as_ref(),
        )
    }
}

/// `<where>[:tag][@digest]`, the way references are written.
pub(crate) fn write_reference(
    f: &mut fmt::Formatter<'_>,
    place: &dyn fmt::Display,
    tag: Option<&str>,
    digest: Option<&Digest>,
) -> fmt::Result {
    write!(f, "{place}")?;
    if let Some(t) = tag {
        write!(f, ":{t}")?;
    }
    if let Some(d) = digest {
        write!(f, "@{d}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> Repository {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = repo("redis");
        assert_eq!(
            (r.host(), r.name(), r.api_host()),
            ("docker.io", "library/redis", DOCKER_HUB_API)
        );
        assert!(!r.plain_http());
        assert_eq!(repo("docker.io/redis").name(), "library/redis");
        assert_eq!(repo("index.docker.io/library/redis").host(), "docker.io");
        assert_eq!(repo("bitnami/redis").to_string(), "docker.io/bitnami/redis");
        assert_eq!(repo("redis").api_base(), "https://registry-1.docker.io/v2/");
    }

    #[test]
    fn host_detection() {
        assert_eq!(repo("localhost/x").host(), "localhost");
        assert_eq!(repo("localhost:5000/team/app").name(), "team/app");
        assert_eq!(repo("ghcr.io/o/r").host(), "ghcr.io");
        assert_eq!(repo("myhost:443/r").host(), "myhost:443");
        // no dot, colon or localhost: a Docker Hub namespace, not a host
        assert_eq!(repo("myhost/r").to_string(), "docker.io/myhost/r");
    }

    #[test]
    fn plain_http_for_loopback_only() {
        assert!(repo("localhost:5000/x").plain_http());
        assert!(repo("127.0.0.1:5000/x").plain_http());
        assert!(repo("127.8.9.1/x").plain_http());
        assert!(repo("[::1]:5000/x").plain_http());
        assert!(repo("[0:0:0:0:0:0:0:1]/x").plain_http());
        assert!(repo("[::ffff:127.0.0.1]:5000/x").plain_http());
        assert!(!repo("[::ffff:10.0.0.1]:5000/x").plain_http());
        assert!(repo("LocalHost:5000/x").plain_http());
        assert!(!repo("localhost.example:5000/x").plain_http());
        assert!(!repo("ghcr.io/x").plain_http());
        assert!(!repo("10.0.0.1:5000/x").plain_http());
        assert!(repo("http://reg.example:80/x").plain_http());
        assert!(!repo("https://localhost:5000/x").plain_http());
        assert_eq!(
            repo("127.0.0.1:5000/x").api_base(),
            "http://127.0.0.1:5000/v2/"
        );
    }

    #[test]
    fn rejects_bad_locators() {
        for s in [
            "",
            "Redis",
            "localhost:5000/",
            "localhost:99999/x",
            "a..b/x",
            "ghcr.io/o//r",
            "ghcr.io/-o/r",
            "ghcr.io/o_-r/x",
            "[::1/x",
            "ho st/x",
        ] {
            assert!(s.parse::<Repository>().is_err(), "{s:?} should be rejected");
        }
    }

    /// An IPv6 address typed without its brackets was refused as `bad host name ""`.
    #[test]
    fn a_bare_ipv6_address_is_refused_with_its_bracketed_spelling() {
        for (s, spelled) in [
            ("::1:5000/team/app", "[::1]:5000"),
            ("fd00::1:443/app", "[fd00::1]:443"),
            ("::1/team/app", "[::1]"),
            ("fe80::1/app", "[fe80::1]"),
            ("2001:db8:0:0:0:0:0:1/app", "[2001:db8:0:0:0:0:0:1]"),
        ] {
            let e = s.parse::<Repository>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{s}");
            assert!(
                e.to_string().ends_with(&format!(
                    "an IPv6 address is written in brackets, as in URLs: {spelled}"
                )),
                "{s}: {e}"
            );
        }
        let e = "::1:5000/team/app:v1".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("[::1]:5000"), "{e}");
        // A host and port is no address.
        assert_eq!(repo("reg.example:5000/x").host(), "reg.example:5000");
    }

    /// A URL reads `[::1]5000` as `[::1]` on the scheme's port: the locator was taken, and
    /// dist asked port 80 (or 443) of the address for the registry on 5000.
    #[test]
    fn an_ipv6_literal_is_followed_by_a_port_or_nothing() {
        assert_eq!(repo("[::1]/x").host(), "[::1]");
        assert_eq!(repo("[fd00::5]:5000/x").host(), "[fd00::5]:5000");
        for s in ["[::1]5000/team/app", "[fd00::5]x/app", "[::1]]:5000/app"] {
            let e = s.parse::<Repository>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{s}");
            assert!(e.to_string().contains("after the IPv6 address"), "{e}");
        }
        let e = "[::1]5000/team/app".parse::<Repository>().unwrap_err();
        assert!(e.to_string().contains("([::1]:PORT)"), "{e}");
        let e = "[::1]5000/team/app:v1".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("after the IPv6 address"), "{e}");
    }

    #[test]
    fn a_colon_typed_for_the_at_is_refused_with_the_spelling() {
        let digest = format!("sha256:{}", "c".repeat(64));
        let e = format!("reg.example:5000/team/app:{digest}")
            .parse::<Reference>()
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(
            e.to_string().ends_with(&format!(
                "goes after '@' (reg.example:5000/team/app@{digest})"
            )),
            "{e}"
        );
        let e = "reg.example/app:v1:x".parse::<Reference>().unwrap_err();
        assert!(
            e.to_string().contains("\"v1:x\" after ':' is not a tag"),
            "{e}"
        );
    }

    #[test]
    fn a_separator_left_at_a_reference_s_end_is_named() {
        let e = "reg.example/team/app@".parse::<Reference>().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            "invalid reference \"reg.example/team/app@\": nothing after '@'; write the digest \
             there (reg.example/team/app@sha256:…), or leave the '@' out"
        );
        let e = "reg.example/team/app:".parse::<Reference>().unwrap_err();
        assert!(
            e.to_string()
                .contains("nothing after ':'; write the tag there (reg.example/team/app:v1)"),
            "{e}"
        );
        // A port's colon is no tag's.
        assert!("reg.example:5000/team/app".parse::<Reference>().is_ok());
    }

    #[test]
    fn a_separator_left_at_a_locator_s_end_is_named() {
        for (typed, sep) in [
            ("localhost:5077/team/app:", ":"),
            ("localhost:5077/team/app@", "@"),
        ] {
            let e = typed.parse::<Repository>().unwrap_err().to_string();
            assert!(
                e.ends_with(&format!(
                    "a stray \"{sep}\" at its end; the locator is localhost:5077/team/app"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn an_image_reference_as_locator_shows_the_right_spelling() {
        let said = |s: &str| s.parse::<Repository>().unwrap_err().to_string();
        assert!(
            said("127.0.0.1:5000/lab/image:latest").ends_with(
                "the tag or digest is the next argument: 127.0.0.1:5000/lab/image latest"
            ),
            "{}",
            said("127.0.0.1:5000/lab/image:latest")
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(said(&format!("ghcr.io/o/r@{digest}")).ends_with(&format!("ghcr.io/o/r {digest}")));
        assert!(said("redis:7").ends_with("redis 7"));
        // A host and port with no repository is not a tag.
        assert!(
            said("localhost:5000").ends_with("a registry with no repository (host[:port]/name)")
        );
        assert!(said("reg.example:5000").ends_with("no repository (host[:port]/name)"));
        // Not Docker Hub's `library/ghcr.io`, though the grammar reads it so.
        for lone in [
            "ghcr.io",
            "localhost",
            "https://quay.io/",
            "registry.example.com",
        ] {
            assert!(
                said(lone).ends_with("no repository (host[:port]/name)"),
                "{lone}"
            );
        }
        assert_eq!(repo("docker.io/library/ghcr.io").name(), "library/ghcr.io");
        // User information is neither an object nor something to show.
        let with_password = said("https://me:s3cret@reg.example/app:v1");
        assert!(!with_password.contains("s3cret"), "{with_password}");
        assert!(with_password.contains("reg.example/app"), "{with_password}");
        assert!(!said("me@reg.example/App").contains("next argument"));
        let reference = "me:s3cret@reg.example/app:v1"
            .parse::<Reference>()
            .unwrap_err();
        assert!(!reference.to_string().contains("s3cret"), "{reference}");
        assert!(reference.to_string().contains("credentials do not go here"));
        // Nor is anything whose repository part is no locator either.
        assert!(!said("Bad/Name:tag").contains("next argument"));
    }

    #[test]
    fn locator_oci_layout() {
        assert_eq!(
            "oci:./dir".parse::<Locator>().unwrap(),
            Locator::Layout("./dir".into())
        );
        assert!("oci:".parse::<Locator>().is_err());
        assert!(matches!(
            "redis".parse::<Locator>().unwrap(),
            Locator::Registry(_)
        ));
    }

    #[test]
    fn objects() {
        assert_eq!(
            "latest".parse::<Object>().unwrap(),
            Object::Tag("latest".into())
        );
        assert_eq!(
            "_v1.2-rc".parse::<Object>().unwrap(),
            Object::Tag("_v1.2-rc".into())
        );
        assert!(".hidden".parse::<Object>().is_err());
        assert!("-x".parse::<Object>().is_err());
        assert!("a".repeat(129).parse::<Object>().is_err());
        assert!("sha256:abc".parse::<Object>().is_err());
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse::<Object>().unwrap(), Object::Digest(_)));
        // As copied out of `redis:7.2@sha256:…`: the digest is what is fetched.
        assert_eq!(
            format!("7.2@{d}").parse::<Object>().unwrap(),
            d.parse::<Object>().unwrap()
        );
        let e = format!("-x@{d}").parse::<Object>().unwrap_err();
        assert!(
            e.to_string().contains("\"-x\" before '@' is not a tag"),
            "{e}"
        );
        assert!("v1@sha256:abc".parse::<Object>().is_err());
        assert!(format!("v1@{d}@{d}").parse::<Object>().is_err());
    }

    /// The spelling a refusal suggests comes from parsing a shorter locator, which once
    /// suggested one of its own, recursing once per colon: 1000 overflowed a test's stack.
    #[test]
    fn a_locator_of_many_colons_is_refused_not_a_stack_overflow() {
        let typed = format!("reg.example/app{}", ":x".repeat(5000));
        let e = typed.parse::<Repository>().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(typed.parse::<Reference>().is_err());
    }

    /// A repository written with capitals is refused with its lowercase spelling.
    #[test]
    fn capitals_in_a_repository_get_the_lowercase_spelling() {
        for (written, fix) in [
            ("localhost:5000/Team/app", "localhost:5000/team/app"),
            ("http://127.0.0.1:5000/team/App", "127.0.0.1:5000/team/app"),
            ("Redis", "docker.io/library/redis"),
        ] {
            let e = written.parse::<Repository>().unwrap_err().to_string();
            assert!(e.contains("bad path component"), "{e}");
            assert!(
                e.ends_with(&format!("; repository names are lowercase: {fix}")),
                "{e}"
            );
        }
        // Nothing to suggest when lowercase does not mend it.
        let e = "localhost:5000/Te.-am/a".parse::<Repository>().unwrap_err();
        assert!(!e.to_string().contains("lowercase:"), "{e}");
    }

    /// An image reference where the object goes gets the object it holds, not a complaint
    /// about a digest's algorithm; a digest written wrong keeps its own message.
    #[test]
    fn pasted_references_as_objects() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let message = |s: &str| s.parse::<Object>().unwrap_err().to_string();
        for (pasted, fix) in [
            (
                "localhost:5000/team/app:v1",
                "(localhost:5000/team/app v1)".to_string(),
            ),
            ("team/app:v1", "(team/app v1)".to_string()),
            (
                &format!("localhost:5000/team/app@{d}"),
                format!("(localhost:5000/team/app {d})"),
            ),
            (&format!("team/app:v1@{d}"), format!("(team/app {d})")),
        ] {
            let e = message(pasted);
            assert!(e.contains("an image reference, not a tag or digest"), "{e}");
            assert!(e.ends_with(&fix), "{e}");
        }
        let e = message("redis:7.2");
        assert!(e.starts_with("invalid digest \"redis:7.2\""), "{e}");
        assert!(e.ends_with("the object is 7.2 alone"), "{e}");
        let e = message("app:v1");
        assert!(
            e.starts_with("unsupported digest algorithm \"app\" in \"app:v1\""),
            "{e}"
        );
        assert!(e.ends_with("the object is v1 alone"), "{e}");
        assert!(message("sha256:abc").ends_with("sha256 needs 64 lowercase hex characters"));
        assert!(message("SHA256:ABC").contains("digests are written in lowercase"));
    }

    #[test]
    fn a_bare_digest_as_a_tag_gets_its_spelling() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let o: Object = hex.parse().unwrap();
        assert_eq!(o.bare_digest_spelling(), Some(format!("sha256:{hex}")));
        let o: Object = hex.repeat(2).parse().unwrap();
        assert_eq!(
            o.bare_digest_spelling(),
            Some(format!("sha512:{}", hex.repeat(2)))
        );
        for not in [
            "v1",
            &hex[1..],
            &hex.to_ascii_uppercase(),
            &format!("sha256:{hex}"),
        ] {
            let o: Object = not.parse().unwrap();
            assert_eq!(o.bare_digest_spelling(), None, "{not}");
        }
    }

    #[test]
    fn references() {
        let r: Reference = "localhost:5000/team/app:v1".parse().unwrap();
        assert_eq!(r.repository.to_string(), "localhost:5000/team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let r: Reference = "localhost:5000/team/app".parse().unwrap();
        assert_eq!(r.object(), Object::Tag("latest".into()));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r: Reference = format!("redis:7@{d}").parse().unwrap();
        assert_eq!(r.object().to_string(), d);
        assert_eq!(r.to_string(), format!("docker.io/library/redis:7@{d}"));
    }
}
