//! Locators: `host[:port]/path` or `oci:<path>`, parsed and normalised into a [`Repository`].

use std::fmt;
use std::str::FromStr;

use super::host::{is_host, is_loopback, validate_host};
use super::user_info::{shown, url_part_refused};
use super::{DOCKER_HUB, DOCKER_HUB_API};
use crate::error::{Error, Result};

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

/// `s` after `scheme` (`https://`), written in any case, as a URL's scheme may be (RFC
/// 3986, 3.1); `None` when `s` does not start with it.
pub fn strip_scheme<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
    let written = s.get(..scheme.len())?;
    written
        .eq_ignore_ascii_case(scheme)
        .then(|| &s[scheme.len()..])
}

/// Parses a locator; with `explain`, a refusal names the spelling that was likely meant.
/// That asks whether a shorter locator parses, which asks for no explanation of its own:
/// explained in turn, `host/app:a:b:…` recursed once per colon, and a few thousand of
/// them overflowed the stack.
fn parse_repository(s: &str, explain: bool) -> Result<Repository> {
    let bad = |why: &str| Error::invalid(format!("invalid locator {:?}: {why}", shown(s)));
    // An explicit scheme is not part of the grammar, but people paste URLs; and skopeo's
    // transport prefix, `docker://`, names a registry as a locator does. Left in, it was
    // read as a host `docker` with an empty port, and refused for that port. A scheme is
    // case-insensitive (RFC 3986, 3.1): `HTTPS://` was refused so too.
    let (rest, scheme) = if let Some(r) = strip_scheme(s, "https://") {
        (r, Some(false))
    } else if let Some(r) = strip_scheme(s, "http://") {
        (r, Some(true))
    } else if let Some(r) = strip_scheme(s, "docker://") {
        (r, None)
    } else {
        (s, None)
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    if let Some(why) = url_part_refused(s) {
        return Err(bad(&why));
    }
    let (host, path) = match rest.split_once('/') {
        Some((first, path)) if is_host(first) => (first.to_string(), path.to_string()),
        _ => (DOCKER_HUB.to_string(), rest.to_string()),
    };
    // Host names are case-insensitive (RFC 4343): `DOCKER.IO/library/redis` is Docker
    // Hub, whose credentials are filed under `docker.io`, and not a registry at a host
    // spelt in capitals, with no `library/` and no login.
    let host = host.to_ascii_lowercase();
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    };
    // `http:/host/…`, a slash short: read as the host `http` with an empty port, it was
    // refused for that port alone.
    if let Some(scheme) = ["http:", "https:", "docker:"].iter().find(|&&p| host == p) {
        return Err(bad(&format!(
            "{scheme} is followed by one slash; a URL's scheme takes two ({scheme}//…)"
        )));
    }
    validate_host(&host).map_err(|why| bad(&why))?;
    if host == DOCKER_HUB_WEB {
        return Err(bad(&hub_page(&path)));
    }
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

/// Docker Hub's website, whose page addresses people paste for the image they show.
const DOCKER_HUB_WEB: &str = "hub.docker.com";

/// Why a page of Docker Hub's website (`path` after its host) is no locator, with the
/// repository it shows: `_/redis` is `library/redis`, `r/bitnami/redis/tags` is
/// `bitnami/redis`. The site serves no registry API: taken as a registry, every request
/// failed against web pages.
fn hub_page(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let shown = match parts.as_slice() {
        ["_", name, ..] => Some(format!("{DOCKER_HUB}/library/{name}")),
        ["r", namespace, name, ..] => Some(format!("{DOCKER_HUB}/{namespace}/{name}")),
        _ => None,
    };
    let page = "Docker Hub's website, not its registry";
    match shown {
        Some(locator) => format!("{page}; the locator is {locator}"),
        None => format!("{page}, which is {DOCKER_HUB} (as in {DOCKER_HUB}/library/redis)"),
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.name)
    }
}

/// Splits an image reference (`name@digest`, `name:tag`, `name:tag@digest`) into its
/// repository and object (the digest, when there is one);
/// `None` when there is neither. A lone `host:port` is not a name and a tag.
fn with_object(s: &str) -> Option<(&str, &str)> {
    if let Some((repo, digest)) = s.split_once('@') {
        // `user@host/…` is user information, not a digest.
        // Nothing after it: a separator left behind, the object typed apart.
        let digest_like = digest.is_empty() || (digest.contains(':') && !digest.contains('/'));
        if !digest_like {
            return None;
        }
        // `name:tag@digest`, a pinned reference as copied: the digest is what it fetches.
        let last = repo.rfind('/').map_or(0, |i| i + 1);
        let repo = match repo[last..].find(':') {
            Some(colon) if !digest.is_empty() => &repo[..last + colon],
            _ => repo,
        };
        return Some((repo, digest));
    }
    let last = s.rsplit('/').next()?;
    let (name, tag) = last.rsplit_once(':')?;
    if !s.contains('/') && is_host(name) {
        return None;
    }
    Some((&s[..s.len() - tag.len() - 1], tag))
}

/// For a repository path pasted out of a registry API URL (`v2/team/app`, or
/// `v2/team/app/manifests/v1` as curl is given it), the repository it names and the
/// object at its end, if any. `v2/team/app` is also a valid repository name: this only
/// says what was more likely meant.
pub fn api_url_path(path: &str) -> Option<(&str, Option<&str>)> {
    let rest = path.trim_end_matches('/').strip_prefix("v2/")?;
    // The tag listing's URL, which curl is given to see the tags, names no object.
    let rest = rest.strip_suffix("/tags/list").unwrap_or(rest);
    for endpoint in ["/manifests/", "/blobs/"] {
        if let Some((name, object)) = rest.rsplit_once(endpoint) {
            // A blob is addressed by its digest alone: `…/blobs/v1` is a repository's name.
            let addressed = endpoint == "/manifests/" || object.contains(':');
            if !name.is_empty() && !object.is_empty() && !object.contains('/') && addressed {
                return Some((name, Some(object)));
            }
        }
    }
    (!rest.is_empty()).then_some((rest, None))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_paths() {
        assert_eq!(api_url_path("v2/team/app"), Some(("team/app", None)));
        assert_eq!(api_url_path("v2/team/app/"), Some(("team/app", None)));
        assert_eq!(
            api_url_path("v2/team/app/manifests/v1"),
            Some(("team/app", Some("v1")))
        );
        assert_eq!(
            api_url_path("v2/a/blobs/sha256:ab"),
            Some(("a", Some("sha256:ab")))
        );
        assert_eq!(
            api_url_path("v2/team/app/tags/list"),
            Some(("team/app", None))
        );
        assert_eq!(
            api_url_path("v2/team/blobs/v1"),
            Some(("team/blobs/v1", None))
        );
        assert_eq!(api_url_path("team/app"), None);
        assert_eq!(api_url_path("v2/"), None);
    }
    use crate::reference::Reference;

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

    /// A page of Docker Hub's website is refused with the locator of the image it shows.
    #[test]
    fn a_docker_hub_web_page_gets_its_locator() {
        for (page, meant) in [
            ("https://hub.docker.com/_/redis", "docker.io/library/redis"),
            (
                "https://hub.docker.com/r/bitnami/redis/tags",
                "docker.io/bitnami/redis",
            ),
            ("hub.docker.com/r/bitnami/redis", "docker.io/bitnami/redis"),
        ] {
            let e = page.parse::<Repository>().unwrap_err().to_string();
            assert!(e.contains("Docker Hub's website"), "{e}");
            assert!(e.ends_with(&format!("the locator is {meant}")), "{e}");
        }
        let e = "hub.docker.com/u/bitnami"
            .parse::<Repository>()
            .unwrap_err();
        assert!(e.to_string().contains("which is docker.io"), "{e}");
    }

    /// skopeo's `docker://` names a registry, as a locator does, by the same rules.
    #[test]
    fn skopeo_s_transport_prefix_is_taken() {
        assert_eq!(
            repo("docker://redis").to_string(),
            "docker.io/library/redis"
        );
        let r = repo("docker://localhost:5000/team/app");
        assert_eq!(r.to_string(), "localhost:5000/team/app");
        assert!(r.plain_http());
        assert!(!repo("docker://ghcr.io/team/app").plain_http());
        let r: crate::reference::Reference = "docker://ghcr.io/team/app:v1".parse().unwrap();
        assert_eq!(r.to_string(), "ghcr.io/team/app:v1");
        let e = "docker://ghcr.io/team/app:v1"
            .parse::<Repository>()
            .unwrap_err();
        assert!(e.to_string().contains("the next argument"), "{e}");
    }

    /// A scheme is case-insensitive (RFC 3986, 3.1), as curl reads `HTTPS://`: one in
    /// capitals was read as a host `HTTP` with an empty port, and refused for that port.
    #[test]
    fn a_scheme_in_capitals_is_the_same_scheme() {
        let r = repo("HTTP://localhost:5000/team/app");
        assert_eq!(r.to_string(), "localhost:5000/team/app");
        assert!(r.plain_http());
        let r = repo("Https://127.0.0.1:5000/team/app");
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/app");
        assert!(!r.plain_http());
        let r = repo("DOCKER://GHCR.IO/team/app");
        assert_eq!(r.to_string(), "ghcr.io/team/app");
        let r: crate::reference::Reference = "HTTPS://ghcr.io/team/app:v1".parse().unwrap();
        assert_eq!(r.to_string(), "ghcr.io/team/app:v1");
    }

    /// A scheme a slash short (`http:/host/…`) is told so: it was refused for the empty
    /// port of a host `http`.
    #[test]
    fn a_scheme_a_slash_short_is_told_so() {
        for (written, scheme) in [
            ("http:/localhost:5000/team/app", "http:"),
            ("HTTPS:/ghcr.io/team/app", "https:"),
        ] {
            let e = written.parse::<Repository>().unwrap_err().to_string();
            assert!(
                e.contains(&format!("{scheme} is followed by one slash")),
                "{e}"
            );
        }
    }

    /// Host names are case-insensitive: one written in capitals is the same registry,
    /// with the same credentials, and Docker Hub's names are Docker Hub's in any case.
    #[test]
    fn a_host_in_capitals_is_the_same_host() {
        for (written, meant) in [
            ("DOCKER.IO/library/redis", "docker.io/library/redis"),
            ("Docker.io/redis", "docker.io/library/redis"),
            ("Index.Docker.IO/redis", "docker.io/library/redis"),
            ("GHCR.IO/team/app", "ghcr.io/team/app"),
            (
                "https://Reg.Example:5000/team/app",
                "reg.example:5000/team/app",
            ),
            ("[FD00::1]:5000/app", "[fd00::1]:5000/app"),
        ] {
            assert_eq!(repo(written).to_string(), meant, "{written}");
        }
        assert_eq!(repo("DOCKER.IO/redis").api_host(), DOCKER_HUB_API);
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

    /// A pinned reference, `name:tag@digest` as manifests and compose files hold them, is
    /// explained as `name@digest` and `name:tag` are: it was called a registry with no
    /// repository, or a bad path component.
    #[test]
    fn a_pinned_reference_as_locator_shows_the_right_spelling() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for (typed, fix) in [
            (format!("redis:7.2@{digest}"), format!("redis {digest}")),
            (
                format!("docker.io/library/redis:7.2@{digest}"),
                format!("docker.io/library/redis {digest}"),
            ),
            (
                format!("localhost:5000/team/app:v1@{digest}"),
                format!("localhost:5000/team/app {digest}"),
            ),
        ] {
            let e = typed.parse::<Repository>().unwrap_err().to_string();
            assert!(
                e.ends_with(&format!("the tag or digest is the next argument: {fix}")),
                "{e}"
            );
        }
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
}
