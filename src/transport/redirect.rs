//! Following redirects: which statuses are redirects, where a `Location` leads, and
//! whether it leaves the origin the request's credentials belong to.

use http::{StatusCode, Uri};

use crate::error::{Error, ErrorKind, Result};

pub(super) fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Origin(Option<String>, Option<String>, u16);

impl Origin {
    /// The origin of `u`: its host as [`super::spelling::host`] writes it, and its port
    /// filled in, so that every spelling of one server is one origin.
    pub(super) fn of(u: &Uri) -> Origin {
        Origin(
            u.scheme_str().map(str::to_ascii_lowercase),
            super::spelling::host(u),
            u.port_u16()
                .unwrap_or_else(|| super::spelling::default_port(u)),
        )
    }
}

/// The redirects a request followed to another origin: the URL it was addressed to (the
/// registry's), the one whose answer sent it to where it ended, and how many it followed
/// in all. Read, never built, outside dist: it may gain fields. Its `Debug`
/// shows the URLs as messages do, without a query (a pre-signed URL's signature).
#[derive(Clone)]
#[non_exhaustive]
pub struct Redirects {
    /// The URL the request was addressed to.
    pub addressed: Uri,
    /// The URL that redirected the request to the one that answered last: `addressed`
    /// after a single redirect, the last hop of a chain (a CDN's edge sending the request
    /// on to its origin) otherwise.
    pub last_hop: Uri,
    /// Redirects followed in all, 1 or more.
    pub count: usize,
}

impl std::fmt::Debug for Redirects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redirects")
            .field("addressed", &super::redact(&self.addressed))
            .field("last_hop", &super::redact(&self.last_hop))
            .field("count", &self.count)
            .finish()
    }
}

/// The note on a failure at a redirect's target naming the hop that sent the request
/// there and, after a chain, the URL it was addressed to (the registry's): the error names
/// the target's, and one debugging a blob store or CDN needs the hop that sent the
/// request on, which the registry's URL alone did not tell. Two URLs at most, however long
/// the chain, each redacted as any URL a message shows.
pub(crate) fn redirected_by(chain: &Redirects) -> String {
    let last = super::redact(&chain.last_hop);
    match chain.count {
        0 | 1 => format!("redirected there by {last}"),
        2 => format!(
            "redirected there by {last}, after a redirect from {}",
            super::redact(&chain.addressed)
        ),
        n => format!(
            "redirected there by {last}, after {} redirects from {}",
            n - 1,
            super::redact(&chain.addressed)
        ),
    }
}

/// A `Location` as a URI reference: without its fragment, which is never sent, and with
/// the bytes a URI may not hold (spaces, non-ASCII, `"<>`{}`) percent-encoded, as curl,
/// Go's client and browsers send them. Servers write such locations unencoded (nginx's
/// `$uri` is decoded, and a file name may have spaces or accents in it), and refusing
/// them failed the object, or read as a redirect without `Location` when not UTF-8.
pub(super) fn location_text(raw: &[u8]) -> String {
    let raw = raw.split(|&b| b == b'#').next().unwrap_or_default();
    let mut text = String::with_capacity(raw.len());
    for &b in raw {
        match b {
            b' ' | b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | 0..0x20 | 0x7f.. => {
                let _ = std::fmt::Write::write_fmt(&mut text, format_args!("%{b:02X}"));
            }
            _ => text.push(b as char),
        }
    }
    text
}

/// Resolves a `Location` against the URL that sent it.
pub fn resolve(base: &Uri, location: &str) -> Result<Uri> {
    let bad_for = |why: &str| {
        Error::new(
            ErrorKind::Protocol,
            format!(
                "bad redirect location {:?}{why}",
                crate::error::redact_url(location)
            ),
        )
    };
    let bad = || bad_for("");
    let base_scheme = base.scheme_str().unwrap_or("https");
    let relative = |location: &str| -> Result<String> {
        let authority = base.authority().ok_or_else(bad)?;
        let target = if location.starts_with('/') {
            location.to_string()
        } else if location.is_empty() || location.starts_with(['?', '#']) {
            // The base's own path, with the location's query, or the base's when it has
            // none (RFC 3986, 5.2.2): a query alone went to the base's directory, and so
            // did a fragment alone (`#top`), which names the base itself.
            let query = match (location.starts_with('?'), base.query()) {
                (false, Some(query)) => format!("?{query}{location}"),
                _ => location.to_string(),
            };
            format!("{}{query}", base.path())
        } else {
            let path = base.path();
            let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
            format!("{dir}{location}")
        };
        Ok(format!(
            "{base_scheme}://{authority}{}",
            without_dot_segments(&target)
        ))
    };
    // The path of an absolute or `//host` location loses its dot segments too (RFC 3986,
    // 5.2.2): sent as they are, `/a/../b` is taken literally, and an object store refuses
    // it or serves another key.
    let absolute = |scheme: &str, rest: &str| {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        format!(
            "{}://{authority}{}",
            scheme.to_ascii_lowercase(),
            without_dot_segments(target)
        )
    };
    let abs = match scheme_of(location) {
        Some((scheme, rest)) => match rest.strip_prefix("//") {
            Some(rest) => absolute(scheme, rest),
            // `https:x` of the base's own scheme is the relative `x` (RFC 3986, 5.2.2's
            // note for backward compatibility, as browsers read it); `http:x` from an https
            // URL is an absolute URI without a host. Either way not a path segment named
            // `https:x` (4.2). Other schemes keep being read leniently, as relative paths.
            None if scheme.eq_ignore_ascii_case(base_scheme) => relative(rest)?,
            None if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {
                return Err(bad())
            }
            None => relative(location)?,
        },
        None => match location.strip_prefix("//") {
            Some(rest) => absolute(base_scheme, rest),
            None => relative(location)?,
        },
    };
    let uri: Uri = abs.parse().map_err(|_| bad())?;
    // Credentials in a location would be sent nowhere by us, but the connection pool
    // names its connections (and logs them) by authority, password included. A password
    // pasted with a `/` in it (`//u:1234/s3cret@cdn/x`) has no `@` in the authority, and
    // was followed to the host `u`: an absolute location is read as a mirror's URL is.
    let names_a_host = scheme_of(location)
        .map_or(location, |(_, rest)| rest)
        .starts_with("//");
    if uri.authority().is_some_and(|a| a.as_str().contains('@'))
        || (names_a_host && crate::reference::url_login_end(&abs).is_some())
    {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "redirect to {} carries credentials (user:password@), which dist does not follow",
                crate::error::redact_url(&abs)
            ),
        ));
    }
    // `//:5000/x`, `https://:/` or `:99999` parse, and fail here as the bad location they
    // are, not as a lookup of no name or at another server.
    match uri.scheme_str() {
        Some("http" | "https") if super::names_a_server(&uri) => Ok(uri),
        _ if super::port_0(&uri) => Err(bad_for(&format!(": {}", crate::reference::PORT_0))),
        _ => Err(bad()),
    }
}

/// `location`'s scheme (RFC 3986, 3.1) and what follows its `:`, if it starts with one: a
/// `:` further on, in a query (`/blob?next=https://cdn.example/…`), is part of a relative
/// reference.
fn scheme_of(location: &str) -> Option<(&str, &str)> {
    location.split_once(':').filter(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    })
}

/// `path[?query]` with its `.` and `..` segments resolved (RFC 3986, 5.2.4), as a browser
/// or curl resolves `Location: ../other/blob`; a server would take them literally.
fn without_dot_segments(target: &str) -> String {
    // A fragment ends the path as a query does (RFC 3986, 3.5): read as part of its last
    // segment, `..#top` was no dot segment and went out as `/..`. It is kept, for the
    // checks on the whole location, and never sent (the URI parser drops it).
    let (target, fragment) = match target.split_once('#') {
        Some((target, fragment)) => (target, Some(fragment)),
        None => (target, None),
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." | ".." => {
                if segment == ".." {
                    kept.pop();
                }
                // `a/b/..` names the directory `a/`.
                if last {
                    kept.push("");
                }
            }
            other => kept.push(other),
        }
    }
    let mut out = format!("/{}", kept.join("/"));
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Uri {
        s.parse().unwrap()
    }

    /// A chain's note names its last hop and the URL addressed, two URLs however long the
    /// chain, neither with its query (a hop's signature).
    #[test]
    fn a_chain_is_noted_by_its_last_hop_and_the_url_addressed() {
        let addressed = u("https://reg.example/v2/a/blobs/sha256:ab");
        let note = |hop: &str, count| {
            let chain = Redirects {
                addressed: addressed.clone(),
                last_hop: u(hop),
                count,
            };
            redirected_by(&chain)
        };
        assert_eq!(
            note("https://reg.example/v2/a/blobs/sha256:ab", 1),
            "redirected there by https://reg.example/v2/a/blobs/sha256:ab"
        );
        let said = note("https://edge.example/x?X-Amz-Signature=s3cret", 2);
        assert!(
            said.starts_with("redirected there by https://edge.example/x"),
            "{said}"
        );
        assert!(
            said.ends_with(", after a redirect from https://reg.example/v2/a/blobs/sha256:ab"),
            "{said}"
        );
        assert!(!said.contains("s3cret"), "{said}");
        let said = note("https://origin.example/y", 4);
        assert!(
            said.contains("/y, after 3 redirects from https://reg.example/"),
            "{said}"
        );
    }

    /// A library user's `{:?}` of a reply's redirects (in a log line) shows the URLs as
    /// messages do: a hop's pre-signed query is a credential for as long as it is valid.
    #[test]
    fn redirects_debug_shows_no_query() {
        let chain = Redirects {
            addressed: u("https://reg.example/v2/a/blobs/sha256:ab?token=t0ken"),
            last_hop: u("https://edge.example/x?X-Amz-Signature=s3cret"),
            count: 2,
        };
        let shown = format!("{chain:?}");
        assert!(shown.contains("https://edge.example/x"), "{shown}");
        assert!(shown.contains("https://reg.example/v2/a/"), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("t0ken"),
            "{shown}"
        );
    }

    #[test]
    fn resolves_locations() {
        let base = u("https://reg.example:5000/v2/x/blobs/sha256:ab");
        let cases = [
            ("https://cdn.example/a?b=c", "https://cdn.example/a?b=c"),
            ("/other", "https://reg.example:5000/other"),
            ("//cdn.example/p", "https://cdn.example/p"),
            ("sibling", "https://reg.example:5000/v2/x/blobs/sibling"),
            (
                "../../../ok/app/blobs/d?sig=a/../b",
                "https://reg.example:5000/ok/app/blobs/d?sig=a/../b",
            ),
            ("/a/./b/../../../c", "https://reg.example:5000/c"),
            ("./", "https://reg.example:5000/v2/x/blobs/"),
            ("..", "https://reg.example:5000/v2/x/"),
            (
                "/cdn/blob?next=https://other.example/x",
                "https://reg.example:5000/cdn/blob?next=https://other.example/x",
            ),
            (
                "sibling?from=http://a/b",
                "https://reg.example:5000/v2/x/blobs/sibling?from=http://a/b",
            ),
            ("HTTP://cdn.example/p", "http://cdn.example/p"),
            // A query alone replaces the query, on the same path (RFC 3986, 5.2.2).
            (
                "?part=2",
                "https://reg.example:5000/v2/x/blobs/sha256:ab?part=2",
            ),
        ];
        for (location, want) in cases {
            assert_eq!(resolve(&base, location).unwrap(), u(want), "{location}");
        }
        assert!(resolve(&base, "ftp://x/y").is_err());
        // An empty reference is the base itself (a query replaced by nothing new).
        assert_eq!(
            resolve(&u("https://reg.example/a/b?q=1"), "").unwrap(),
            u("https://reg.example/a/b?q=1")
        );
        assert_eq!(
            resolve(&u("https://reg.example/a/b?q=1"), "?r=2").unwrap(),
            u("https://reg.example/a/b?r=2")
        );
        for (raw, want) in [
            (&b"/cdn/my blob?x=a b#part"[..], "/cdn/my%20blob?x=a%20b"),
            ("/caf\u{e9}/{a}".as_bytes(), "/caf%C3%A9/%7Ba%7D"),
            (b"/latin1/\xe9\t", "/latin1/%E9%09"),
            (b"/kept/%20/as/is?a=b&c=d", "/kept/%20/as/is?a=b&c=d"),
        ] {
            assert_eq!(location_text(raw), want, "{raw:?}");
        }
        let e = resolve(&base, "http://cdnuser:cdnPASS@cdn.example/p?sig=s").unwrap_err();
        assert!(e.to_string().contains("carries credentials"), "{e}");
        assert!(!e.to_string().contains("cdnPASS"), "{e}");
        // A password with a `/` in it, unencoded: its start reads as a port, and the
        // rest as a path. Followed, `u` was looked up, and every message showed it all.
        for location in [
            "http://u:1234/s3cret@cdn.example/x",
            "http://u:1234/s3cret@cdn/x",
            "//u:1234/s3cret@cdn/x",
        ] {
            let e = resolve(&base, location).unwrap_err().to_string();
            assert!(e.contains("carries credentials"), "{location}: {e}");
            assert!(!e.contains("s3cret") && !e.contains("1234"), "{e}");
        }
        // A path's `@` in a relative location, or after a registry's host, is the path's.
        for location in ["/a@b.example/x", "https://cdn.example:8443/a@b/x"] {
            assert!(resolve(&base, location).is_ok(), "{location}");
        }
    }

    /// Object storage on a one-word host with a port (`minio:9000` in a compose file) puts
    /// the bucket first in the path and the key after it, which may hold an `@`: such a
    /// redirect was refused as a login (`redirect to http://y carries credentials`), and
    /// logged with the key's end for its host. A bucket's name holds no `@`, a password
    /// read as a port and a path (`u:1234/s3cret@cdn/x`) its `@` in the first segment.
    #[test]
    fn a_storage_redirect_on_a_one_word_host_with_a_port_is_followed() {
        let base = u("https://reg.example/v2/x/blobs/sha256:ab");
        for (location, shown) in [
            (
                "http://minio:9000/bucket/x@y",
                "http://minio:9000/bucket/x@y",
            ),
            (
                "http://minio:9000/bucket/team/x@y/data?X-Amz-Signature=s",
                "http://minio:9000/bucket/team/x@y/data?…",
            ),
            (
                "http://registry:5000/v2/team/app/blobs/a@b",
                "http://registry:5000/v2/team/app/blobs/a@b",
            ),
            ("http://localhost:5000/a@b", "http://localhost:5000/a@b"),
            (
                "http://127.0.0.1:9000/bucket/a@b",
                "http://127.0.0.1:9000/bucket/a@b",
            ),
            (
                "https://cdn.example:8443/a@b/x",
                "https://cdn.example:8443/a@b/x",
            ),
        ] {
            let uri = resolve(&base, location).unwrap_or_else(|e| panic!("{location}: {e}"));
            assert_eq!(uri, u(location));
            assert_eq!(crate::transport::redact(&uri), shown);
        }
    }

    /// A compose project's host names hold `_` (`my_minio`, `proj_minio_1`), which a URL's
    /// host may (RFC 3986's reg-name) and a locator's not: read as no host at all, any `@`
    /// after it, in an object's key or a query, was taken for a password's end, and the
    /// redirect refused.
    #[test]
    fn a_storage_redirect_to_a_host_with_an_underscore_is_followed() {
        let base = u("https://reg.example/v2/x/blobs/sha256:ab");
        for (location, shown) in [
            (
                "http://my_minio:9000/bucket/x@y",
                "http://my_minio:9000/bucket/x@y",
            ),
            (
                "http://proj_minio_1:9000/bucket/blob?who=a@b",
                "http://proj_minio_1:9000/bucket/blob?…",
            ),
            ("http://my_cdn/x@y.example/z", "http://my_cdn/x@y.example/z"),
        ] {
            let uri = resolve(&base, location).unwrap_or_else(|e| panic!("{location}: {e}"));
            assert_eq!(uri, u(location));
            assert_eq!(crate::transport::redact(&uri), shown);
        }
        // A user's name with a `_` before a password's start read as a port is a login.
        let e = resolve(&base, "http://my_user:1234/s3cret@cdn/x").unwrap_err();
        assert!(e.to_string().contains("carries credentials"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    /// Dot segments go from every target path (RFC 3986, 5.2.2 resolves an absolute or
    /// `//host` reference's path too): a server takes `/a/../b` literally, and an object
    /// store refuses it or serves another key. `https:x`, of the base's own scheme, is the
    /// relative `x` (5.2.2's note, 5.4.2, as browsers read it), not a path segment `https:x`
    /// (4.2).
    #[test]
    fn dot_segments_go_from_absolute_locations_and_a_bare_scheme_is_no_path_segment() {
        let base = u("https://reg.example:5000/v2/x/blobs/sha256:ab");
        for (location, want) in [
            (
                "https://cdn.example/a/./b/../c?sig=x/../y",
                "https://cdn.example/a/c?sig=x/../y",
            ),
            ("//cdn.example/a/../../b", "https://cdn.example/b"),
            ("https://cdn.example/a/..", "https://cdn.example/"),
            ("https://cdn.example", "https://cdn.example/"),
            ("https://cdn.example?q=1", "https://cdn.example/?q=1"),
            (
                "https:sibling",
                "https://reg.example:5000/v2/x/blobs/sibling",
            ),
            ("HTTPS:/other/../p", "https://reg.example:5000/p"),
        ] {
            assert_eq!(resolve(&base, location).unwrap(), u(want), "{location}");
        }
        // Another scheme without `//` is an absolute URI with no host to go to.
        assert!(resolve(&base, "http:sibling").is_err());
    }

    /// A fragment ends a location's path (RFC 3986, 3.5): `.#` was read as a segment
    /// `.#`, and the `.` went out once the URI parser dropped the `#`; a fragment alone
    /// (`#top`) is the base itself, query and all, not the base's directory.
    #[test]
    fn a_fragment_ends_the_path_and_alone_names_the_base() {
        let base = u("https://reg.example:5000/v2/x/blobs/b?q=1");
        for (location, want) in [
            (".#", "https://reg.example:5000/v2/x/blobs/"),
            ("..#top", "https://reg.example:5000/v2/x/"),
            ("/a/.#", "https://reg.example:5000/a/"),
            ("https://cdn.example/a/..#x", "https://cdn.example/"),
            ("#top", "https://reg.example:5000/v2/x/blobs/b?q=1"),
            ("?r=2#top", "https://reg.example:5000/v2/x/blobs/b?r=2"),
        ] {
            assert_eq!(resolve(&base, location).unwrap(), u(want), "{location}");
        }
    }

    /// Found by `redirect_locations_never_panic` (tests/properties.rs): `//:?` resolved to
    /// `https://:/?`, a URL with an empty host.
    #[test]
    fn a_location_with_an_empty_host_is_refused() {
        let base = u("https://reg.example:5000/v2/x/blobs/b");
        for location in [
            "//:?",
            "//:5000/x",
            "https://:5000/x",
            "http://:80/",
            "https://:/",
        ] {
            let e = resolve(&base, location).unwrap_err();
            assert!(
                e.to_string().contains("bad redirect location"),
                "{location}: {e}"
            );
        }
    }

    /// The URI parser takes `:99999` or `:443x` for a port, and the connector, reading
    /// none, went to the scheme's default port of the host: another server than the one
    /// the location named, of the same origin to the credential checks.
    #[test]
    fn a_location_whose_port_is_no_number_is_refused() {
        let base = u("https://reg.example/v2/x/blobs/b");
        for location in [
            "https://reg.example:99999/x",
            "//cdn.example:65536/x",
            "http://cdn.example:80x/",
            "https://cdn.example:+443/x",
            "https://[::1]:99999/x",
        ] {
            let e = resolve(&base, location).unwrap_err();
            assert!(
                e.to_string().contains("bad redirect location"),
                "{location}: {e}"
            );
        }
        assert!(resolve(&base, "https://cdn.example:65535/x").is_ok());
        // An empty port is the scheme's default (RFC 3986, 3.2.3), not a bad one.
        let empty = resolve(&base, "https://cdn.example:/x").unwrap();
        assert_eq!(Origin::of(&empty), Origin::of(&u("https://cdn.example/y")));
        assert!(resolve(&base, "https://[::1]:/x").is_ok());
    }

    /// Port 0 was followed, failed as "connection refused" naming `:0`, and was retried:
    /// it is a bad location, saying the port is 0, as the locator's is.
    #[test]
    fn a_location_of_port_0_is_refused_saying_so() {
        let base = u("https://reg.example/v2/x/blobs/b");
        for location in [
            "https://cdn.example:0/x",
            "//cdn.example:00/x",
            "http://[::1]:0/",
        ] {
            let e = resolve(&base, location).unwrap_err().to_string();
            assert!(e.contains("bad redirect location"), "{location}: {e}");
            assert!(e.contains("no server listens on port 0"), "{location}: {e}");
        }
        assert!(resolve(&base, "https://cdn.example:10/x").is_ok());
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert!(Origin::of(&u("https://a.example/x")) == Origin::of(&u("https://A.example:443/y")));
        assert!(Origin::of(&u("https://a.example/x")) != Origin::of(&u("http://a.example/x")));
        assert!(
            Origin::of(&u("http://a.example:5000/")) != Origin::of(&u("http://a.example:5001/"))
        );
        // An address is one origin however it is written (credentials going along between
        // its spellings go to the one server); a name with a trailing dot is another.
        assert!(Origin::of(&u("http://[0::1]:5000/")) == Origin::of(&u("http://[::1]:5000/")));
        assert!(Origin::of(&u("https://a.example./")) != Origin::of(&u("https://a.example/")));
    }
}
