//! Full image references (`host/name:tag@digest`): parsed, resolved to an object, written.

use std::fmt;
use std::str::FromStr;

use super::user_info::{shown, url_part_refused};
use super::{Object, Repository};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// `host/app@` or `host/app:`: the object left out, or typed as the next argument.
fn stray_separator(s: &str, repo: &str, sep: char) -> Error {
    Error::invalid(format!(
        "invalid reference {:?}: {}",
        shown(s),
        nothing_after(repo, sep)
    ))
}

/// What a reference that ends in its separator `sep` (`:` or `@`) after `before` lacks,
/// and how to write it: a registry's (`host/app:`) or a layout's (`oci:DIR:`).
pub(crate) fn nothing_after(before: &str, sep: char) -> String {
    // `app:${TAG}@${DIGEST}` with both unset: the spelling for either alone, where the
    // digest's example kept the empty tag's ':' and was refused in turn.
    if let Some(name) = before.strip_suffix(':').filter(|_| sep == '@') {
        return format!(
            "nothing after ':' or '@'; write the tag after ':' ({name}:v1) or the digest \
             after '@' ({name}@sha256:…), or leave both out"
        );
    }
    format!(
        "nothing after {sep:?}; write the {} there ({before}{sep}{}), or leave the {sep:?} out",
        if sep == '@' { "digest" } else { "tag" },
        if sep == '@' { "sha256:…" } else { "v1" },
    )
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
        if let Some(why) = url_part_refused(s) {
            return Err(Error::invalid(format!(
                "invalid reference {:?}: {why}",
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
        let tag = match (tag, &digest) {
            (Some(""), None) => return Err(stray_separator(s, repo, ':')),
            // `app:${TAG}@${DIGEST}` with the tag unset.
            (Some(""), Some(d)) => {
                return Err(Error::invalid(format!(
                    "invalid reference {:?}: nothing between ':' and '@'; write the tag \
                     there, or leave the ':' out ({repo}@{d})",
                    shown(s)
                )))
            }
            // `name:sha256:…`, a colon typed for the `@`: what follows the first colon
            // would parse as a digest, or fail as a bad one, and name neither mistake.
            (Some(t), _) if t.contains(':') => {
                return Err(Error::invalid(format!(
                    "invalid reference {:?}: {t:?} after ':' is not a tag; a digest goes \
                     after '@' ({}@{t})",
                    shown(s),
                    &rest[..rest.len() - t.len() - 1]
                )))
            }
            (Some(t), _) => match t.parse::<Object>()? {
                Object::Tag(t) => Some(t),
                Object::Digest(d) => {
                    return Err(Error::invalid(format!(
                        "invalid reference {:?}: {d} is not a tag",
                        shown(s)
                    )))
                }
            },
            (None, _) => None,
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

    /// A reference whose digest kept the `\r` of the line it was cut from (`curl -sI … |
    /// awk '{print $2}'`), as `dist pull` and `dist resolve` take one, says so, as an
    /// object does: it was told that sha256 needs 64 lowercase hex characters, which the
    /// digest shown had.
    #[test]
    fn a_digest_with_a_carriage_return_says_so() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let e = format!("ghcr.io/team/app@{d}\r")
            .parse::<Reference>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("carriage return"), "{e}");
        assert!(e.ends_with(&format!("without it, it is {d}")), "{e}");
        assert!(!e.contains("hex characters"), "{e}");
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
        // Both left out: the example for the digest has no empty tag before it, which
        // was refused in turn.
        let e = "reg.example:5000/team/app:@"
            .parse::<Reference>()
            .unwrap_err();
        assert!(
            e.to_string().ends_with(
                "nothing after ':' or '@'; write the tag after ':' \
                 (reg.example:5000/team/app:v1) or the digest after '@' \
                 (reg.example:5000/team/app@sha256:…), or leave both out"
            ),
            "{e}"
        );
        for meant in ["reg.example:5000/team/app:v1", "reg.example:5000/team/app"] {
            assert!(meant.parse::<Reference>().is_ok(), "{meant}");
        }
        // A port's colon is no tag's.
        assert!("reg.example:5000/team/app".parse::<Reference>().is_ok());
    }

    /// `app:${TAG}@${DIGEST}` with the tag unset: refused as an object `""`, which named
    /// neither the reference nor the empty tag.
    #[test]
    fn an_empty_tag_before_a_digest_is_named() {
        let digest = format!("sha256:{}", "d".repeat(64));
        let e = format!("reg.example/team/app:@{digest}")
            .parse::<Reference>()
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            format!(
                "invalid reference \"reg.example/team/app:@{digest}\": nothing between ':' \
                 and '@'; write the tag there, or leave the ':' out \
                 (reg.example/team/app@{digest})"
            )
        );
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
