//! Credentials typed into a locator or reference: found, refused, and kept out of messages.

use super::host::{host_without_port, is_host, validate_host};
use crate::digest::Digest;

/// Why `host/…?query` is refused: a URL pasted with its query (a pre-signed link, one
/// with `?token=…`), which no locator has, and which is not shown: it may be a credential.
pub(crate) const NO_QUERY_HERE: &str =
    "a URL's query has no place here (left out of this message: it may hold a signature \
     or a token)";

/// Why `user:password@host/…` is refused.
pub(crate) const NO_CREDENTIALS_HERE: &str = concat!(
    "credentials do not go here; dist reads them from docker login, podman login or a \
     credential helper (see ",
    crate::setting::setting_name!(credentials),
    ")"
);

/// Whether `s` holds user information (`[scheme://]user[:password]@host/…`). A URL's
/// authority runs to its first `/` (RFC 3986 3.2), but a password is pasted as it is, `/`
/// included (`http://user:s3/cret@host/…`): with a scheme or a `/`, any `@` that starts no
/// digest ends a login, since nothing else in a locator or reference holds one. Without
/// either, `user:password@host[:port]` has the shape of `name:tag@digest`, and is told
/// from it by what follows the `@`.
pub(super) fn has_user_info(s: &str) -> bool {
    // Every input line's object comes through here, mostly a digest or tag with no `@`:
    // one byte scan answers it, 0.04 s of CPU a million lines against 0.16 s for the
    // searches below, twice what the duplicate set's key saves by not hashing a digest.
    if !s.contains('@') {
        return false;
    }
    if s.contains('/') {
        return login_end(s).is_some();
    }
    // A user's name alone is a login too: registries take tokens as names.
    s.rsplit_once('@').is_some_and(|(_, host)| {
        validate_host(host).is_ok()
            && host.parse::<Digest>().is_err()
            && !digest_mistyped(host)
            && !digest_half(host)
    })
}

/// Where a login typed into `s` ends: just past its last `@` that is followed by text and
/// starts no digest (`@sha256:…`, or `@<algorithm>:<encoded>` by the OCI grammar).
fn login_end(s: &str) -> Option<usize> {
    s.rmatch_indices('@')
        .map(|(i, _)| i + 1)
        .find(|&end| end < s.len() && !starts_digest(&s[end..]))
}

/// Whether `s` is a digest, or one cut short or mistyped, rather than `host[:port]…`: a
/// port is all digits, a digest's encoded part hardly ever.
fn starts_digest(s: &str) -> bool {
    digest_mistyped(s)
        || digest_half(s)
        || Digest::unsupported_algorithm(s).is_some_and(|_| {
            s.split_once(':')
                .is_some_and(|(_, encoded)| !encoded.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Why `s`, holding user information, is refused.
/// Why `s`, a word that names a registry's repository or object, holds what only a URL
/// does: a login ([`refused`]), or a query ([`NO_QUERY_HERE`]). Either is shown by
/// [`shown`] alone, since either may hold a secret.
pub(super) fn url_part_refused(s: &str) -> Option<String> {
    if has_user_info(s) {
        Some(refused(s))
    } else if s.contains('?') {
        Some(NO_QUERY_HERE.to_string())
    } else {
        None
    }
}

pub(super) fn refused(s: &str) -> String {
    if maybe_a_tag(s) {
        format!(
            "an '@' that starts no digest (@sha256:…) ends a login here, and \
             {NO_CREDENTIALS_HERE}; a tag goes after ':'"
        )
    } else {
        NO_CREDENTIALS_HERE.to_string()
    }
}

/// Where the login typed into `url` (a mirror's, a server's, one a message shows) ends,
/// just past its `@`: in the authority (`https://me:pw@host/…`), or, where what goes before
/// the first `/`, `?` or `#` is no `host[:port]`, at the last `@` that starts no digest
/// (`https://me:s3/cret@host/…`, `https://me:s3?cret@host/…`, a password pasted
/// unencoded). An `@` in a path or query after a valid host is theirs
/// (`https://mirror.example/a@b`).
pub(crate) fn url_login_end(url: &str) -> Option<usize> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if let Some(i) = authority.rfind('@') {
        return Some(start + i + 1);
    }
    if is_url_host(authority) {
        return port_read_in_password(rest, authority).map(|end| start + end);
    }
    // A password's `?` or `#` ended the authority as well as a `/` does, and what follows
    // it is no query: it is searched too, at the cost of a host left out of a message
    // where a URL with no valid host had an `@` in its query. With nothing before the
    // first `/` (a path alone, as a redirect may give) there is no password to end.
    let searched = if authority.is_empty() {
        &rest[..rest.find(['?', '#']).unwrap_or(rest.len())]
    } else {
        rest
    };
    login_end(searched).map(|end| start + end)
}

/// Whether `authority` (no `@` in it) is a URL's `host[:port]`: a locator's, or one whose
/// name holds a `_`, as a URL's may (RFC 3986's reg-name) and a compose project's hosts do
/// (`my_minio:9000`, `proj_minio_1`). Read as no host, any `@` after it, in an object's key
/// or a query, ended a password.
pub(crate) fn is_url_host(authority: &str) -> bool {
    validate_host(authority).is_ok()
        || (authority.contains('_') && validate_host(&authority.replace('_', "u")).is_ok())
}

/// Where the login of `rest` (a URL after its scheme) ends when its valid `authority`
/// is a user and a password's start that reads as a port (`mu:1234/s3cret@mirror.example`):
/// an `@` in its path followed by what names a registry's host ([`names_a_host`]), or an
/// `@` in its path's first segment when the host before the port is a plain word
/// (`u:1234/s3cret@cdn/x`), as a user's name is and a registry's or CDN's seldom. Read as a
/// path, `mu:1234` was the mirror, looked up and shown in every message with the rest of
/// the password; a path's `@` before a plain word after a host with a dot
/// (`https://mirror.example:5000/a@b`), after a host with no port, or in an object's key
/// after its bucket on a one-word host (`http://minio:9000/bucket/x@y`, whose first segment,
/// a bucket's name, holds no `@`), stays the path's; so does any after an IP address
/// (`https://10.0.0.5:5000/team@1.2.3.4`), which is no user's name.
fn port_read_in_password(rest: &str, authority: &str) -> Option<usize> {
    if authority.starts_with('[')
        || !authority.contains(':')
        || host_without_port(authority)
            .parse::<std::net::Ipv4Addr>()
            .is_ok()
    {
        return None;
    }
    let plain_word = !is_host(host_without_port(authority));
    let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let segment = authority.len() + 1;
    let first_segment_end = path
        .get(segment..)
        .and_then(|p| p.find('/'))
        .map_or(path.len(), |i| segment + i);
    login_end(path).filter(|&end| {
        let after = &path[end..];
        (plain_word && end <= first_segment_end)
            || names_a_host(&after[..after.find('/').unwrap_or(after.len())])
    })
}

/// Whether `s`, after an `@` in a URL's path, names a registry's host as a reference's
/// first part does (a `.`, a `:` or `localhost`), and is no version (`team@v1.2`,
/// `team@v1.2.3-rc1`): a host's last label starts with a letter, as every top-level
/// domain's does (RFC 3696 2 allows no number), unless it is an IP address. A root's dot
/// (`reg.example.`) ends no label.
fn names_a_host(s: &str) -> bool {
    let name = host_without_port(s);
    let name = name.strip_suffix('.').unwrap_or(name);
    is_host(s)
        && (s.starts_with('[')
            || name.parse::<std::net::Ipv4Addr>().is_ok()
            || name
                .rsplit('.')
                .next()
                .is_some_and(|label| label.starts_with(|c: char| c.is_ascii_alphabetic())))
}

/// Whether the `@` that ends a login in `s` may as well be a tag typed after `@` as a
/// login's end, and the message names both: in a path after a valid host with no `/`
/// after it (`reg.example/app@v1`), or after a name alone (`redis@7.2`, as `tok@host`).
fn maybe_a_tag(s: &str) -> bool {
    if !s.contains('/') {
        return s
            .rsplit_once('@')
            .is_some_and(|(name, _)| !name.contains(':'));
    }
    let rest = s.split_once("://").map_or(s, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    rest.contains('/')
        && !authority.contains('@')
        && validate_host(authority).is_ok()
        && login_end(s).is_some_and(|end| !s[end..].contains('/'))
}

/// Whether `host` is a digest cut short or mistyped (`sha256:1234`), which the shape of
/// `host:port` takes too: `redis:7@sha256:1234` was refused as credentials typed into the
/// reference, where the digest is what is wrong. No registry is named after an algorithm.
fn digest_mistyped(host: &str) -> bool {
    host.split_once(':')
        .is_some_and(|(name, _)| matches!(name, "sha256" | "sha512"))
}

/// Whether `host` is half of a digest: its algorithm alone (`v1@sha256`) or its hex alone
/// (`v1@$HEX`, the algorithm left out), each a one-word host's shape. Read as a login,
/// the tag before the `@` was hidden and credentials blamed where the digest is wrong.
fn digest_half(host: &str) -> bool {
    matches!(host, "sha256" | "sha512")
        || (matches!(host.len(), 64 | 128)
            && host.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The locator as it may be shown in a message: without user information
/// (`user:password@host/…`) or a query (`?X-Amz-Signature=…`), which have no place in a
/// locator and must not reach a terminal or a log.
pub(crate) fn shown(s: &str) -> String {
    match login_end(s).filter(|_| has_user_info(s)) {
        // The login's start is not looked for: a password may hold any character.
        Some(end) => {
            let scheme = s.split_once("://").map_or("", |(scheme, _)| scheme);
            let scheme = if scheme.is_empty() {
                String::new()
            } else {
                format!("{scheme}://")
            };
            // What went before the `@` is told as left out where it may have been no login.
            let cut = if maybe_a_tag(s) { "…@" } else { "" };
            format!("{scheme}{cut}{}", crate::error::redact_url(&s[end..]))
        }
        None => match s.split_once('?') {
            Some((before, _)) => format!("{before}?…"),
            None => s.to_string(),
        },
    }
}

/// `text` with the user information of each of its words taken out, white space and
/// control characters kept: a word is what is told for a login (`me:s3cret@reg.example`),
/// and one followed by a space or an ESC passed for none, its host then not a host. Quotes
/// and the punctuation a message puts around a word (`'me:pw@host',`) are kept, and left
/// out of what is judged. A password pasted with a space or a tab in it
/// (`http://me:s3 cret@host/…`) makes a word whose login has no start (`cret@host/…`):
/// the words before it on its line, back to one that starts a login, are left out too.
pub fn shown_by_words(text: &str) -> String {
    // Nearly every text holds no login, which always has an `@`.
    if !text.contains('@') {
        return text.to_string();
    }
    let words = word_spans(text);
    let mut out = String::with_capacity(text.len());
    let mut written = 0;
    for (k, word) in words.iter().enumerate() {
        let core = core_of(&text[word.clone()]);
        let Some(end) = login_end(core).filter(|_| has_user_info(core)) else {
            continue;
        };
        let first = login_start(text, &words, k, &core[..end - 1]).unwrap_or(k);
        let from = word_core_start(text, &words[first]);
        let to = word_core_start(text, word) + core.len();
        out.push_str(&text[written..from]);
        out.push_str(&shown(&text[from..to]));
        written = to;
    }
    out.push_str(&text[written..]);
    out
}

/// The words of `text`, apart at white space and control characters.
fn word_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let apart = |c: char| c.is_whitespace() || c.is_control();
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (apart(c), start) {
            (true, Some(s)) => {
                spans.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push(s..text.len());
    }
    spans
}

/// What a message puts around a word it quotes: quotes, and a `:` or `,` after it.
const AROUND: [char; 4] = ['\'', '"', ':', ','];

/// `word` without what a message puts around it.
fn core_of(word: &str) -> &str {
    word.trim_matches(AROUND)
}

/// Where the core of the word at `span` of `text` starts.
fn word_core_start(text: &str, span: &std::ops::Range<usize>) -> usize {
    let word = &text[span.clone()];
    span.start + (word.len() - word.trim_start_matches(AROUND).len())
}

/// The index among `words` of the word that starts the login of the `k`th, `login` (up to
/// its `@`), when `login` has no scheme to start it (`http://`): a password with spaces in
/// it, split into words, of which the last may hold a `:` of the password's as well as of
/// `user:password` (`me:a b:c d@host`, `me:a b c:d@host`). The farthest of the few words
/// before it on its line, apart by white space inside a line alone ([`inside_a_line`]),
/// that holds a `:` and is no digest (`http://me:s3`, `me:s3`), since a nearer one may be
/// the password's; none when another word, a digest or a line's end comes first.
fn login_start(
    text: &str,
    words: &[std::ops::Range<usize>],
    k: usize,
    login: &str,
) -> Option<usize> {
    if login.contains("://") {
        return None;
    }
    let mut start = None;
    for m in (k.saturating_sub(4)..k).rev() {
        let gap = &text[words[m].end..words[m + 1].start];
        if !gap.chars().all(inside_a_line) {
            break;
        }
        let core = core_of(&text[words[m].clone()]);
        if core.parse::<Digest>().is_ok() || digest_mistyped(core) || core.contains('@') {
            break;
        }
        if core.contains(':') {
            start = Some(m);
        }
    }
    start
}

/// Whether `c` is white space that parts words on one line: a space or a tab, and any of
/// Unicode's spaces (a no-break space, as a password copied from a web page holds), but no
/// line's end in any of its spellings.
fn inside_a_line(c: char) -> bool {
    c.is_whitespace()
        && !matches!(
            c,
            '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
        )
}

#[cfg(test)]
mod tests {
    use crate::reference::{Locator, Object, Reference, Repository};

    /// `typed` is refused as a locator, a repository, a reference and an object, each
    /// refusal saying credentials do not go there and showing none of `hidden`.
    fn refused_unshown(typed: &str, hidden: &[&str]) {
        let said = [
            typed.parse::<Repository>().unwrap_err(),
            typed.parse::<Locator>().unwrap_err(),
            typed.parse::<Reference>().unwrap_err(),
            typed.parse::<Object>().unwrap_err(),
        ];
        for e in said {
            let e = e.to_string();
            for secret in hidden {
                assert!(!e.contains(secret), "{typed}: {e}");
            }
            assert!(e.contains("credentials do not go here"), "{typed}: {e}");
        }
    }

    /// A locator or reference with a query (a pre-signed link pasted whole) is refused
    /// as one, without it; with a login as well, the login is what it is refused for.
    #[test]
    fn a_query_is_refused_unshown() {
        for typed in [
            "reg.example/team/app?X-Amz-Signature=s3cret",
            "https://reg.example:5000/team/app?sig=s3cret&x=1",
            "reg.example/team/app:v1?token=s3cret",
        ] {
            for e in [
                typed.parse::<Repository>().unwrap_err(),
                typed.parse::<Locator>().unwrap_err(),
                typed.parse::<Reference>().unwrap_err(),
            ] {
                let e = e.to_string();
                assert!(!e.contains("s3cret"), "{typed}: {e}");
                assert!(
                    e.contains("a URL's query has no place here"),
                    "{typed}: {e}"
                );
                assert!(e.contains("?…\""), "{typed}: {e}");
            }
        }
        refused_unshown("me:pw@reg.example/team/app?token=s3cret", &["s3cret", "pw"]);
    }

    /// A registry's URL with credentials and nothing after the host, as a login page or a
    /// CI variable holds it, was taken for no user information (none was looked for
    /// without a `/` after it) and echoed whole, password and all, in the refusal.
    #[test]
    fn credentials_before_a_host_with_no_path_are_refused_unshown() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for typed in [
            "https://me:s3cret@reg.example",
            "http://me:s3cret@localhost:5000",
            "https://me:s3cret@[::1]:5000",
            "me:s3cret@reg.example",
            "me:s3cret@reg.example:5000",
        ] {
            refused_unshown(typed, &["s3cret"]);
        }
        // `name:tag@digest` has the same shape, a digest after the '@'.
        let r: Reference = format!("redis:7@{digest}").parse().unwrap();
        assert_eq!(r.tag.as_deref(), Some("7"));
        let e = format!("redis:7@{digest}")
            .parse::<Repository>()
            .unwrap_err();
        assert!(!e.to_string().contains("credentials"), "{e}");
        // A digest cut short has the shape of `host:port` too, and is said to be one.
        for typed in ["redis:7@sha256:1234", "reg.example:5000/app:7@sha512:99"] {
            let e = typed.parse::<Reference>().unwrap_err().to_string();
            assert!(e.contains("invalid digest"), "{typed}: {e}");
            assert!(!e.contains("credentials"), "{typed}: {e}");
        }
    }

    /// A digest's algorithm alone or its hex alone after a tag's `@` (`v1@sha256`,
    /// `v1@$HEX`, a variable left out) has a one-word host's shape, and was refused as a
    /// login with the tag hidden, where the digest is what is wrong.
    #[test]
    fn a_digest_missing_its_half_after_an_at_is_no_login() {
        let hex = "c2ac91f1faa0c4aebbf4d4589001c66271168d18c0182ebcc55dda9911b2af93";
        let long = hex.repeat(2);
        for typed in [
            "v1@sha256".to_string(),
            "v1@sha512".to_string(),
            format!("v1@{hex}"),
            format!("v1@{long}"),
            format!("reg.example/app:v1@{hex}"),
            "reg.example/app@sha256".to_string(),
        ] {
            let o = typed.parse::<Object>().unwrap_err().to_string();
            assert!(!o.contains("credentials"), "{typed}: {o}");
            let r = typed.parse::<Reference>().unwrap_err().to_string();
            assert!(r.contains("invalid digest"), "{typed}: {r}");
            assert!(!r.contains("credentials"), "{typed}: {r}");
        }
    }

    /// A password with a space in it, pasted unencoded, was split into words, and the one
    /// before the space (`http://user:s3`) holds no `@`: it was shown, user and all.
    #[test]
    fn a_password_with_a_space_is_shown_by_words_without_any_of_it() {
        use crate::reference::without_credentials as shown;
        for (text, want) in [
            (
                "http://user:s3 cret@reg.example/team/app",
                "http://reg.example/team/app",
            ),
            (
                "locator 'http://user:s3 cr et@reg.example/team/app' refused",
                "locator 'http://reg.example/team/app' refused",
            ),
            ("user:s3 cret@reg.example", "reg.example"),
            ("user:s3\tcret@reg.example:5000 x", "reg.example:5000 x"),
        ] {
            assert_eq!(shown(text), want, "{text}");
        }
        // A word before a space starts no login when it is a digest or a label (`line 1:`),
        // nor across a line's end.
        let digest = format!("sha256:{}", "a".repeat(64));
        for (text, want) in [
            (
                format!("{digest} tok@reg.example"),
                format!("{digest} …@reg.example"),
            ),
            (
                "line 1: tok@reg.example".into(),
                "line 1: …@reg.example".into(),
            ),
            (
                "user:s3\ncret@reg.example".into(),
                "user:s3\n…@reg.example".into(),
            ),
        ] {
            assert_eq!(shown(&text), want, "{text}");
        }
    }

    /// A password pasted from a web page or a chat may hold a no-break space (U+00A0) or
    /// another of Unicode's spaces: they part words as a space does, but the words before
    /// the one with the `@` were only looked at across ASCII spaces and tabs, and
    /// `http://user:s3` was shown whole.
    #[test]
    fn a_password_with_any_space_on_its_line_is_shown_by_words_without_any_of_it() {
        use crate::reference::without_credentials as shown;
        for space in ['\u{a0}', '\u{2003}', '\u{202f}', '\u{3000}'] {
            for (text, want) in [
                (
                    format!("http://user:s3{space}cret@reg.example/team/app"),
                    "http://reg.example/team/app",
                ),
                (format!("user:s3{space}cret@reg.example"), "reg.example"),
            ] {
                assert_eq!(shown(&text), want, "{text:?}");
            }
        }
        // A line's end is no space inside a password, in any of its spellings.
        for end in ['\u{85}', '\u{2028}', '\u{2029}'] {
            let text = format!("user:s3{end}cret@reg.example");
            assert_eq!(
                shown(&text),
                format!("user:s3{end}…@reg.example"),
                "{text:?}"
            );
        }
    }

    /// A password with a `:` in a word after a space (`a b:c d`): the login was taken to
    /// start at the nearest word with a `:`, its own `b:c`, and `http://user:a` was shown.
    #[test]
    fn a_password_with_a_colon_after_a_space_is_shown_by_words_without_any_of_it() {
        use crate::reference::without_credentials as shown;
        for (text, want) in [
            (
                "http://user:a b:c d@reg.example/team/app".to_string(),
                "http://reg.example/team/app",
            ),
            ("x user:a b:c d@reg.example".into(), "x reg.example"),
            (
                "user:a b:c:d e:f@reg.example:5000".into(),
                "reg.example:5000",
            ),
        ] {
            assert_eq!(shown(&text), want, "{text:?}");
        }
    }

    /// After a host with a port, a path's `@` before a version is the path's: one with a
    /// pre-release or build (`team@v1.2.3-rc1`, `1.2.3+build`) was read as a host, its last
    /// label no number, and the mirror refused. A host written with the root's dot
    /// (`reg.example.`) was read as a version, its last label empty, and the login shown.
    #[test]
    fn a_version_after_a_path_s_at_is_the_path_s_and_a_root_s_dot_no_version() {
        for url in [
            "https://mirror.example:5000/team@v1.2.3-rc1/x",
            "https://mirror.example:5000/team@1.2.3-beta",
            "https://mirror.example:5000/team@v1.2.3+build/x",
            "https://mirror.example:5000/team@v1.2",
        ] {
            assert_eq!(super::url_login_end(url), None, "{url}");
        }
        for url in [
            "https://first.last:1234/s3cret@reg.example./v2/",
            "https://first.last:1234/s3/cret@reg.example.:5000/v2/",
            "https://first.last:1234/s3cret@[::1]:5000/v2/",
            "https://first.last:1234/s3cret@10.0.0.5/v2/",
            "https://first.last:1234/s3cret@team.example/v2/",
        ] {
            let shown = crate::error::redact_url(url);
            assert!(
                !shown.contains("cret") && !shown.contains("first"),
                "{url}: {shown}"
            );
        }
    }

    /// After an IP address and a port, a path's `@` is the path's, whatever follows it:
    /// no user's name is an IP address. A mirror `https://10.0.0.5:5000/team@1.2.3.4` (a
    /// version of four numbers) was refused as written with a login, and named as
    /// `https://1.2.3.4`, a host nobody wrote; a redirect to an object whose key holds an
    /// e-mail address was not followed.
    #[test]
    fn a_path_s_at_after_an_ip_address_and_a_port_is_the_path_s() {
        for url in [
            "https://10.0.0.5:5000/team@1.2.3.4",
            "https://10.0.0.5:5000/team@1.2.3.4/x",
            "http://192.168.1.9:9000/bucket/alice@example.com/o",
            "http://192.168.1.9:9000/a@reg.example",
        ] {
            assert_eq!(super::url_login_end(url), None, "{url}");
        }
        for url in [
            "https://me:s3cret@10.0.0.5:5000/x",
            "https://me:5000/s3cret@10.0.0.5/x",
        ] {
            let shown = crate::error::redact_url(url);
            assert!(!shown.contains("cret"), "{url}: {shown}");
        }
    }

    /// A user's name alone before a host (`tok@reg.example`, no `/` after it) was left to
    /// the grammar and echoed: registries take tokens as users' names (GitHub's and
    /// GitLab's access tokens, `oauth2accesstoken` with the token as password).
    #[test]
    fn a_user_s_name_alone_before_a_host_is_refused_unshown() {
        for typed in [
            "ghp_T0ken@reg.example",
            "ghp_T0ken@reg.example:5000",
            "ghp_T0ken@localhost:5000",
            "ghp_T0ken@[::1]:5000",
            "ghp_T0ken@reg.example/team/app",
            "ghp_T0ken@reg.example:5000/team/app:v1",
            "https://ghp_T0ken@reg.example/team/app",
        ] {
            refused_unshown(typed, &["T0ken"]);
        }
        // Told as possibly a tag typed after '@', as after a repository's name.
        let e = "redis@7.2".parse::<Reference>().unwrap_err().to_string();
        assert!(
            e.contains("…@7.2") && e.contains("a tag goes after ':'"),
            "{e}"
        );
        assert!(!e.contains("redis"), "{e}");
        // A digest after the '@' is still no login.
        let digest = format!("sha256:{}", "a".repeat(64));
        let r: Reference = format!("redis@{digest}").parse().unwrap();
        assert_eq!(r.digest.unwrap().as_str(), digest);
        assert_eq!(
            crate::reference::without_credentials("ghp_T0ken@reg.example and more"),
            "…@reg.example and more"
        );
    }

    /// A password with a `/` in it, pasted unencoded (`http://user:s3/cret@host/…`), ended
    /// the authority before its `@`: no login was seen, and the refusal (`bad port "s3"`,
    /// `invalid digest`) showed the input whole, password and all.
    #[test]
    fn a_password_with_a_slash_is_refused_unshown() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for typed in [
            "http://user:s3/cret@reg.example/team/app",
            "http://user:s3/cret@reg.example/team/app:v1",
            "https://user:s3/cret@reg.example:5000/team/app",
            "user:s3/cret@reg.example/team/app",
            "user:s3/cret@reg.example:5000",
            "http://user:s3/cret@reg.example",
            "http://user:1234/s3cret@reg.example/team/app",
            "user:1234/s3cret@reg.example/team/app:v1",
            "reg.example/team/app@me:s3cret@reg.example",
        ] {
            refused_unshown(typed, &["cret", "user"]);
        }
        // A digest after the `@` is no login, with or without a tag before it.
        for typed in [
            format!("reg.example/team/app@{digest}"),
            format!("reg.example/team/app:v1@{digest}"),
            format!("http://reg.example:5000/team/app:v1@{digest}"),
        ] {
            let r: Reference = typed.parse().unwrap();
            assert_eq!(r.digest.unwrap().as_str(), digest, "{typed}");
        }
        // A tag typed after the `@` is told as possibly either.
        let e = "reg.example/team/app@v1".parse::<Reference>().unwrap_err();
        let e = e.to_string();
        assert!(e.contains("a tag goes after ':'"), "{e}");
        assert!(e.contains("…@v1"), "{e}");
        // One with a host and path after its '@' is a login, said to be one alone.
        let e = "http://user:1234/s3cret@reg.example/team/app".parse::<Reference>();
        let e = e.unwrap_err().to_string();
        assert!(!e.contains("a tag goes after"), "{e}");
        assert!(e.contains("\"http://reg.example/team/app\""), "{e}");
    }
}
