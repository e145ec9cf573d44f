//! Objects: the tag or digest fetched from a remote.

use std::fmt;
use std::str::FromStr;

use super::user_info::{shown, url_part_refused};
use super::Reference;
use crate::digest::Digest;
use crate::error::{Error, Result};

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
        // A well-formed digest or tag first: none of the diagnoses below can refuse one,
        // and a worker runs this for each of a batch's lines.
        if is_tag(s) {
            return Ok(Object::Tag(s.to_string()));
        }
        // `tag@digest` by its digest; no digest has a '@' or lacks a ':'. The error is
        // kept for the diagnosis of a digest written wrong below: parsed again there, a
        // batch of bad lines built each line's error twice.
        let digest = match s.split_once('@') {
            Some((tag, digest)) if is_tag(tag) && !digest.is_empty() => Some(digest),
            Some(_) => None,
            None => Digest::looks_like(s).then_some(s),
        };
        let digest_error = match digest.map(str::parse::<Digest>) {
            Some(Ok(d)) => return Ok(Object::Digest(d)),
            Some(Err(e)) => Some(e),
            None => None,
        };
        // A value cut from HTTP headers keeps its line's `\r` (see `around_white_space`).
        let fine = |t: &str| t.parse::<Object>().is_ok();
        if let Some(why) = crate::digest::refused_for_white_space(s, fine) {
            return Err(Error::invalid(format!(
                "invalid object {:?}: {why}",
                shown(s)
            )));
        }
        // `dist fetch LOC size:123`, the object left out: read as a digest, it was one in
        // an unsupported algorithm "size" whose object was `123` alone. The key is named
        // in its own spelling: `Size:`, misspelt, would be ignored after the object too.
        if let Some(key) = s
            .split_once(':')
            .and_then(|(k, _)| crate::hints::hint_key(k))
        {
            return Err(Error::invalid(format!(
                "invalid object {:?}: a hint where the object goes; the object, a tag or \
                 digest, comes first, and hints such as {key}: after it",
                shown(s)
            )));
        }
        // `jq '.config.digest'` without `-r` prints a JSON string: the object is there, and
        // its parse error (`malformed algorithm`) would not say that the quotes are wrong.
        // So does a pretty-printed array's `"sha256:…",`. A word with a quote inside
        // (`"size":`) is no quoted object, and is told as any other word.
        let quoted = s.strip_prefix('"').map(|inner| {
            let inner = inner.strip_suffix(',').unwrap_or(inner);
            inner.strip_suffix('"').unwrap_or(inner)
        });
        if let Some(inner) = quoted.filter(|inner| !inner.contains('"')) {
            // With its quotes, a login in it has no host to be told by.
            return Err(Error::invalid(format!(
                "invalid object {:?}: a quoted object; give it without its quotes ({}), \
                 as `jq -r` prints it",
                s.replacen(inner, &shown(inner), 1),
                shown(inner)
            )));
        }
        // A login, or a registry URL's tail pasted with its query (`v1?token=…`, a
        // pre-signed link's `sha256:…?X-Amz-Signature=…`), refused unshown as a locator's.
        if let Some(why) = url_part_refused(s) {
            return Err(Error::invalid(format!(
                "invalid object {:?}: {why}",
                shown(s)
            )));
        }
        if let Some((tag, digest)) = s.split_once('@') {
            // `${TAG}@${DIGEST}` with the digest unset: whatever is before the '@' (a digest
            // as often as a tag) is not what is wrong.
            if digest.is_empty() {
                return Err(Error::invalid(format!(
                    "invalid object {s:?}: nothing after '@'; write the digest there, or \
                     leave the '@' out ({tag})"
                )));
            }
            if !is_tag(tag) {
                if let Some(e) = pasted_reference(s, None) {
                    return Err(e);
                }
                return Err(Error::invalid(format!(
                    "invalid object {s:?}: {tag:?} before '@' is not a tag"
                )));
            }
            return match digest_error {
                Some(e) => Err(e),
                None => digest.parse().map(Object::Digest),
            };
        }
        if let Some(e) = digest_error {
            return Err(pasted_reference(s, Some(&e)).unwrap_or(e));
        }
        if is_tag(s) {
            Ok(Object::Tag(s.to_string()))
        } else {
            Err(Error::invalid(format!(
                "invalid object {s:?}: {}",
                not_a_tag(s)
            )))
        }
    }
}

/// Why `s`, no digest, is no tag either: the rule it breaks when it is made of a tag's
/// characters, as a tag made from a long branch name is.
fn not_a_tag(s: &str) -> String {
    let tag_chars = !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    match s.len() {
        _ if !tag_chars => "neither a digest (algorithm:hex) nor a tag".into(),
        n if n > 128 => format!("a tag is at most 128 characters, and this one has {n}"),
        _ => "a tag starts with a letter, a digit or '_'".into(),
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
        || is_whole_foreign_digest(name, &object)
    {
        return None;
    }
    // `md5:x` may be meant as a digest as much as `app:v1` as a reference: say both.
    let digest_error = digest_error?;
    Some(Error::invalid(format!(
        "{digest_error}; if it is an image reference (name:tag), the object is {object} alone"
    )))
}

/// Whether `name:encoded` is a whole digest in a hash dist does not verify: the hash's
/// name and hex of its length (`sha384:` and 96 digits), in either case (Windows'
/// `Get-FileHash` prints capitals). No one pastes that as an image `name:tag`, so saying
/// it may be one only misleads. (`name` is lowercase here: one in capitals is no image
/// reference's, and gets no such hint.)
fn is_whole_foreign_digest(name: &str, encoded: &str) -> bool {
    let hex_len = match name {
        "md5" => 32,
        "sha1" => 40,
        "sha224" => 56,
        "blake3" => 64,
        "sha384" => 96,
        _ => return false,
    };
    encoded.len() == hex_len && encoded.bytes().all(|b| b.is_ascii_hexdigit())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An object pasted with a URL's query (`v1?token=…`, `sha256:…?X-Amz-Signature=…`),
    /// as a fetch argument or a worker's input line, was echoed whole in its refusal
    /// (`invalid digest "sha256:…?X-Amz-Signature=…"`), where a locator's query is not
    /// shown: refused as one, the query shown as `?…`.
    #[test]
    fn an_object_with_a_query_is_refused_unshown() {
        let digest = format!("sha256:{}", "0".repeat(64));
        for s in [
            "v1?token=s3cretQ".to_string(),
            format!("{digest}?X-Amz-Signature=s3cretQ"),
            format!("v1@{digest}?sig=s3cretQ"),
            "\"v1?token=s3cretQ\"".to_string(),
        ] {
            let e = s.parse::<Object>().unwrap_err().to_string();
            assert!(!e.contains("s3cretQ"), "{s}: {e}");
            assert!(e.contains("?…"), "{s}: {e}");
        }
        let e = "v1?token=s3cretQ"
            .parse::<Object>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("a URL's query has no place here"), "{e}");
    }

    /// A quoted object that holds a login (`"me:s3cret@reg.example"`, a registry's URL
    /// printed by `jq` without `-r`) is refused without it: the word as given, quotes and
    /// all, was shown whole, since with its quotes it has no host.
    #[test]
    fn a_quoted_object_with_a_login_is_shown_without_it() {
        for word in [
            r#""me:s3cret@reg.example""#,
            r#""me:s3cret@reg.example","#,
            r#""https://me:s3cret@reg.example/team/app""#,
        ] {
            let e = word.parse::<Object>().unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{word}: {e}");
            assert!(e.contains("reg.example"), "{word}: {e}");
        }
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

    /// A bad object is parsed as a digest at most once: the parse that looks for a good
    /// one first is the one whose error is told, not built, dropped and built again (a
    /// worker's batch of 10,000 lines like `!sha256:…` cost 6% more CPU than at 790038e),
    /// and a word without a ':' is no digest to try.
    #[test]
    fn a_bad_object_is_parsed_as_a_digest_once_at_most() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let parses = || crate::digest::tests::PARSES.with(|c| c.get());
        for (s, most, said) in [
            (format!("!{d}"), 1, "malformed algorithm"),
            (
                format!("{d}0"),
                1,
                "sha256 needs 64 lowercase hex characters",
            ),
            (
                "no!tag".to_string(),
                0,
                "neither a digest (algorithm:hex) nor a tag",
            ),
        ] {
            let before = parses();
            let e = s.parse::<Object>().unwrap_err().to_string();
            assert!(e.contains(said), "{s}: {e}");
            assert!(
                parses() - before <= most,
                "{s}: {} parses",
                parses() - before
            );
        }
        // `tag@digest` well-formed is taken as its digest is, parsed once and without the
        // diagnoses: its whole, parsed as a digest first, built a `malformed algorithm`
        // error (its login search and all) only to drop it, and such a batch cost 39%
        // more than at 790038e.
        let keys = || crate::hints::tests::MEANT_KEY_CALLS.with(|c| c.get());
        let want = Object::Digest(d.parse().unwrap());
        let (before, keys_before) = (parses(), keys());
        let o = format!("v1@{d}").parse::<Object>().unwrap();
        assert_eq!(parses() - before, 1, "v1@{d}");
        assert_eq!(o, want);
        assert_eq!(keys(), keys_before, "v1@{d} diagnosed");
        let before = parses();
        let e = "v1@sha256:abc".parse::<Object>().unwrap_err().to_string();
        assert!(
            e.contains("sha256 needs 64 lowercase hex characters"),
            "{e}"
        );
        assert!(
            parses() - before <= 1,
            "v1@sha256:abc: {} parses",
            parses() - before
        );
    }

    /// A digest or tag that parses goes without the diagnoses of a bad one: looking for
    /// the hint key `sha256` might misspell cost a worker's batch of digests a third of
    /// its time for parsing each line, and doubled it against c175e06's.
    #[test]
    fn a_valid_object_is_not_diagnosed() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let calls = || crate::hints::tests::MEANT_KEY_CALLS.with(|c| c.get());
        let before = calls();
        for s in [d, "v1", "latest"] {
            s.parse::<Object>().unwrap();
        }
        assert_eq!(calls(), before);
        // The diagnosis itself stays: a hint where the object goes is told as one.
        let e = "Size:12".parse::<Object>().unwrap_err().to_string();
        assert!(e.contains("a hint where the object goes"), "{e}");
        assert!(calls() > before);
    }

    /// `sha256:…@` was refused as "\"sha256:…\" before '@' is not a tag", naming a
    /// digest as the fault and not the empty place after the '@'.
    #[test]
    fn nothing_after_the_at_sign_is_named() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for before in [d, "v1"] {
            let s = format!("{before}@");
            let e = s.parse::<Object>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
            assert_eq!(
                e.to_string(),
                format!(
                    "invalid object {s:?}: nothing after '@'; write the digest there, or \
                     leave the '@' out ({before})"
                )
            );
        }
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

    /// A tag made from a long branch name, or one starting with `.` or `-`, has a tag's
    /// shape and breaks one of its rules: "neither a digest nor a tag" named neither rule.
    #[test]
    fn a_tag_breaking_a_rule_is_told_which() {
        let message = |s: &str| s.parse::<Object>().unwrap_err().to_string();
        let long = format!("feature-{}", "x".repeat(125));
        let e = message(&long);
        assert!(
            e.ends_with("a tag is at most 128 characters, and this one has 133"),
            "{e}"
        );
        let e = format!("team/app:{long}").parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("at most 128 characters"), "{e}");
        for s in [".hidden", "-rc1"] {
            let e = message(s);
            assert!(
                e.ends_with("a tag starts with a letter, a digit or '_'"),
                "{e}"
            );
        }
        for s in ["a b", "v1/x", "t\u{e9}"] {
            assert!(
                message(s).ends_with("neither a digest (algorithm:hex) nor a tag"),
                "{s}"
            );
        }
        assert!("a".repeat(128).parse::<Object>().is_ok());
    }

    /// A digest or tag that kept the `\r` of the line it was cut from (HTTP headers, a
    /// Windows file), or a space, says so: it was told that sha256 needs 64 lowercase hex
    /// characters, which the digest shown had.
    #[test]
    fn an_object_with_a_carriage_return_or_space_says_so() {
        let message = |s: &str| s.parse::<Object>().unwrap_err().to_string();
        let d = format!("sha256:{}", "ab".repeat(32));
        let e = message(&format!("{d}\r"));
        assert!(e.contains("carriage return"), "{e}");
        assert!(e.ends_with(&format!("without it, it is {d}")), "{e}");
        let e = message("v1\r");
        assert!(
            e.contains("carriage return") && e.ends_with("it is v1"),
            "{e}"
        );
        let e = message(&format!(" {d} "));
        assert!(e.contains("white space"), "{e}");
        assert!(message("\r").contains("neither a digest"));
    }

    /// A misspelt hint key where the object goes is told the key's spelling: told to put
    /// `Size:` after the object, the hint was then ignored, as an unknown key is.
    #[test]
    fn a_misspelt_hint_where_the_object_goes_is_told_its_key() {
        let e = "Size:12".parse::<Object>().unwrap_err().to_string();
        assert!(e.ends_with("hints such as size: after it"), "{e}");
        let e = "media-type:a/b".parse::<Object>().unwrap_err().to_string();
        assert!(e.ends_with("hints such as mediatype: after it"), "{e}");
        let e = "mediaType:a/b".parse::<Object>().unwrap_err().to_string();
        assert!(e.ends_with("hints such as mediaType: after it"), "{e}");
    }

    /// A hint where the object goes (the object left out, or put after its hints) is told
    /// so. `size:123` was an unsupported digest algorithm "size" whose object was `123`
    /// alone, and `mediaType:…` a digest to write in lowercase.
    #[test]
    fn a_hint_where_the_object_goes_is_told_so() {
        let message = |s: &str| s.parse::<Object>().unwrap_err().to_string();
        for hint in [
            "size:123",
            "mediatype:application/vnd.oci.image.manifest.v1+json",
            "mediaType:application/json",
            "Size:12",
        ] {
            let e = message(hint);
            assert!(e.contains("a hint where the object goes"), "{e}");
            assert!(
                !e.contains("invalid digest") && !e.contains("algorithm"),
                "{e}"
            );
        }
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
}
