//! Image references as `dist pull` and `dist resolve` take them: a registry reference
//! (`host/name:tag`, `host/name@digest`) or an OCI layout reference
//! (`oci:<path>[:tag|@digest]`).
//!
//! A layout path may itself contain `:` and `@`, so the split follows one rule: an `@`
//! after the last `/` starts the digest, and then a `:` after the last `/` starts the tag.
//! A directory whose own name has a colon is therefore written with its tag
//! (`oci:./my:dir:latest`) or with a trailing slash (`oci:./my:dir/`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::{Locator, Object, Reference};

pub use crate::reference::DEFAULT_TAG;

/// A named image: where it lives, and which one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The remote holding it.
    pub locator: Locator,
    /// The tag: as written, or [`DEFAULT_TAG`] when neither tag nor digest was written.
    pub tag: Option<String>,
    /// The digest, if one was written; it wins over the tag when resolving.
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// What to resolve: the digest when there is one, else the tag.
    pub fn object(&self) -> Object {
        crate::reference::object_of(self.tag.as_deref(), self.digest.as_ref())
    }

    /// The name to record in a layout's `index.json`: the tag, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The full name to record beside the tag ([`super::IMAGE_NAME`]), `host/name:tag`:
    /// for a registry's image named by a tag. A layout's entry carries its own, if any.
    pub fn image_name(&self) -> Option<String> {
        match (&self.locator, &self.tag) {
            (Locator::Registry(repo), Some(tag)) => Some(format!("{repo}:{tag}")),
            _ => None,
        }
    }
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<ImageRef> {
        let (locator, tag, digest) = match s.strip_prefix("oci:") {
            Some(rest) => {
                let (path, tag, digest) = split_layout(rest)
                    .map_err(|why| Error::invalid(format!("invalid reference {s:?}: {why}")))?;
                (Locator::Layout(path), tag, digest)
            }
            None => {
                let r: Reference = s.parse()?;
                (Locator::Registry(r.repository), r.tag, r.digest)
            }
        };
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (t, _) => t,
        };
        Ok(ImageRef {
            locator,
            tag,
            digest,
        })
    }
}

/// Splits `<path>[:tag][@digest]` by the rule in the module docs.
fn split_layout(s: &str) -> std::result::Result<(PathBuf, Option<String>, Option<Digest>), String> {
    let after_slash = |t: &str| t.len() - last_component(t).len();
    let (rest, digest) = match s.rfind('@') {
        Some(at) if at + 1 == s.len() && at > 0 && at >= after_slash(s) => {
            return Err(ends_in_separator(s, &s[..at], '@'))
        }
        Some(at) if at >= after_slash(s) => {
            let d = s[at + 1..]
                .parse::<Digest>()
                .map_err(|e| or_the_layout(e.to_string(), s, None))?;
            (&s[..at], Some(d))
        }
        _ => (s, None),
    };
    let start = after_slash(rest);
    let (path, tag) = match rest[start..].rfind(':') {
        Some(i) => {
            let tag = &rest[start + i + 1..];
            let before = &rest[..start + i];
            match (tag.is_empty() && !before.is_empty(), &digest) {
                (true, None) => return Err(ends_in_separator(s, before, ':')),
                // `oci:DIR:${TAG}@${DIGEST}` with the tag unset.
                (true, Some(d)) => return Err(nothing_between(rest, before, d)),
                (false, _) => {}
            }
            match tag.parse::<Object>() {
                Ok(Object::Tag(t)) => (&rest[..start + i], Some(t)),
                _ => {
                    let why = format!("invalid tag {tag:?}");
                    return Err(or_the_layout(why, rest, digest.as_ref()));
                }
            }
        }
        None => (rest, None),
    };
    if path.is_empty() {
        return Err("no directory".into());
    }
    Ok((PathBuf::from(path), tag, digest))
}

/// `oci:{whole}`, which ends in its separator `sep` after `before`: a tag or digest left
/// out, as `host/name:` is told; or a layout directory whose own name ends in `sep`, which
/// that advice would send to another directory, and which is written with a trailing slash.
/// Only this refusal looks at the disk, to tell the two apart.
fn ends_in_separator(whole: &str, before: &str, sep: char) -> String {
    // Before a missing digest, a ':' starts the tag as it would with the digest written
    // (`oci:a:b@` is the tag `b` of `./a`); an empty tag is `oci:DIR:@`, both left out.
    // A ':' that cannot start a tag is the directory's own.
    let start = before.len() - last_component(before).len();
    let (dir, tag) = match before[start..]
        .rfind(':')
        .map(|i| before.split_at(start + i))
    {
        Some((dir, tag)) if sep == '@' && (tag == ":" || is_tag(&tag[1..])) => (dir, tag),
        _ => (before, ""),
    };
    let written = spelled(dir);
    let mut advice = crate::reference::nothing_after(&format!("{written}{tag}"), sep);
    if written != format!("oci:{dir}") {
        // The spelling without the separator keeps the slash too, so it is spelt out.
        advice = format!("{advice} ({written}{})", tag.trim_end_matches(':'));
    }
    // `oci://ghcr.io/team/chart:1.0` is told the registry's spelling when it is read
    // (`layout_remote`); with its tag left out, it was refused before that, untold.
    if let Some(meant) = crate::layout_remote::registry_written_as_layout(Path::new(dir)) {
        let object = match (tag, sep) {
            ("" | ":", ':') | (":", '@') => ":v1".to_string(),
            (tag, _) => format!("{tag}@sha256:…"),
        };
        advice = format!(
            "{advice}; oci://HOST/…, as Helm and ORAS name a registry, is a layout directory \
             here: for the registry, write it without oci:// ({meant}{object})"
        );
    }
    if is_layout(whole) {
        format!("{advice}; for the layout {whole:?} itself, write oci:{whole}/")
    } else {
        advice
    }
}

/// `why` `oci:{whole}` (followed by `@{digest}`, if any) is refused, where a tag or digest
/// was read from a separator in the last name of `whole`: when `whole` is a layout whose
/// own name holds that separator (`x@y`, `a:.`), with the spelling that reads it, its
/// trailing slash ending the name. Only a refusal looks at the disk, as
/// [`ends_in_separator`] does: a name that is no layout offers nothing that may read
/// another directory.
fn or_the_layout(why: String, whole: &str, digest: Option<&Digest>) -> String {
    if !is_layout(whole) {
        return why;
    }
    let digest = digest.map(|d| format!("@{d}")).unwrap_or_default();
    format!("{why}; for the layout {whole:?} itself, write oci:{whole}/{digest}")
}

/// `oci:{whole}@{d}`, where `whole` ends in the empty tag's `:` after `before`: the tag
/// left out, spelled without its `:`; or a layout directory whose own name ends in `:`.
/// Like [`ends_in_separator`], only this refusal looks at the disk.
fn nothing_between(whole: &str, before: &str, d: &Digest) -> String {
    let advice = format!(
        "nothing between ':' and '@'; write the tag there, or leave the ':' out \
         ({}@{d})",
        spelled(before)
    );
    if is_layout(whole) {
        format!("{advice}; for the layout {whole:?} itself, write oci:{whole}/@{d}")
    } else {
        advice
    }
}

/// `oci:{dir}` as advice writes it, to be followed by a tag or digest or nothing: a
/// directory whose own name holds a ':' or '@' would split again written bare (`oci:x@y`
/// reads the digest `y`, `oci:a:b` the tag `b` of `./a`), so it keeps a trailing slash.
fn spelled(dir: &str) -> String {
    let slash = if last_component(dir).contains([':', '@']) {
        "/"
    } else {
        ""
    };
    format!("oci:{dir}{slash}")
}

/// Whether `dir` holds an OCI image layout: the one look at the disk a refusal's advice
/// takes, to offer the spelling of a directory whose own name ends in a separator.
fn is_layout(dir: &str) -> bool {
    std::path::Path::new(dir).join("oci-layout").is_file()
}

/// Whether `s` is a tag, as what follows a layout's ':' must be.
fn is_tag(s: &str) -> bool {
    matches!(s.parse::<Object>(), Ok(Object::Tag(_)))
}

/// What follows the last `/` of `path`: where the separators are looked for.
fn last_component(path: &str) -> &str {
    &path[path.rfind('/').map_or(0, |i| i + 1)..]
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::reference::write_reference(
            f,
            &self.locator,
            self.tag.as_deref(),
            self.digest.as_ref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn layout(s: &str) -> (String, Option<String>, Option<String>) {
        let i = r(s);
        let Locator::Layout(p) = i.locator else {
            panic!("{s} is not a layout")
        };
        (
            p.display().to_string(),
            i.tag,
            i.digest.map(|d| d.to_string()),
        )
    }

    #[test]
    fn registry_references() {
        let i = r("localhost:5000/team/app:v1");
        assert_eq!(i.locator.to_string(), "localhost:5000/team/app");
        assert_eq!(i.object(), Object::Tag("v1".into()));
        assert_eq!(i.ref_name(), Some("v1"));
        let i = r("localhost:5000/team/app");
        assert_eq!(i.ref_name(), Some("latest"));
        let i = r(&format!("localhost:5000/team/app@{D}"));
        assert_eq!(i.object().to_string(), D);
        assert_eq!(i.ref_name(), None);
        let i = r(&format!("redis:7@{D}"));
        assert_eq!(i.object().to_string(), D);
        assert_eq!(i.ref_name(), Some("7"));
        assert_eq!(i.to_string(), format!("docker.io/library/redis:7@{D}"));
        assert_eq!(i.image_name().as_deref(), Some("docker.io/library/redis:7"));
        let i = r(&format!("localhost:5000/team/app@{D}"));
        assert_eq!(i.image_name(), None);
        assert_eq!(r("oci:dir:v1").image_name(), None);
    }

    /// `oci:DIR:@`, tag and digest both left out: told the spelling of either, not a
    /// digest after the empty tag (`oci:DIR:@sha256:…`), which is refused in turn.
    #[test]
    fn a_layout_reference_without_tag_or_digest_after_both_separators() {
        let e = "oci:./dir:@".parse::<ImageRef>().unwrap_err().to_string();
        assert!(
            e.ends_with(
                "nothing after ':' or '@'; write the tag after ':' (oci:./dir:v1) or the \
                 digest after '@' (oci:./dir@sha256:…), or leave both out"
            ),
            "{e}"
        );
        assert_eq!(layout(&format!("oci:./dir@{D}")).0, "./dir");
    }

    /// `oci:DIR@`, `oci:DIR:` or `oci:DIR:@` where `DIR`'s own name holds a `:` or `@`:
    /// every spelling offered reads `DIR`, where `oci:x@y` (the `@` left out) and
    /// `oci:x@y:v1` (the tag written) were refused in turn and `oci:a:b` read `./a`.
    #[test]
    fn a_directory_named_with_a_separator_is_told_spellings_that_read_it() {
        let err = |s: &str| s.parse::<ImageRef>().unwrap_err().to_string();
        for (written, offered) in [
            (
                "oci:./x@y@",
                vec![format!("oci:./x@y/@{D}"), "oci:./x@y/".into()],
            ),
            (
                "oci:./x@y:@",
                vec![
                    "oci:./x@y/:v1".into(),
                    format!("oci:./x@y/@{D}"),
                    "oci:./x@y/".into(),
                ],
            ),
            (
                "oci:./a:b:",
                vec!["oci:./a:b/:v1".into(), "oci:./a:b/".into()],
            ),
        ] {
            let e = err(written);
            let dir = if written.contains("x@y") {
                "./x@y/"
            } else {
                "./a:b/"
            };
            for spelling in offered {
                // As offered, with `sha256:…` standing for a digest.
                let shown = spelling.replace(D, "sha256:…");
                assert!(e.contains(&format!("({shown})")), "{written}: {e}");
                assert_eq!(layout(&spelling).0, dir, "{spelling}");
            }
        }
        // A plain directory is told the bare spellings, as before; so is the tag `b` of
        // `./a` with its digest left out.
        let e = err("oci:./dir@");
        assert!(e.ends_with("or leave the '@' out"), "{e}");
        let e = err("oci:./a:b@");
        assert!(
            e.ends_with("(oci:./a:b@sha256:…), or leave the '@' out"),
            "{e}"
        );
        assert_eq!(layout(&format!("oci:./a:b@{D}")).1.as_deref(), Some("b"));
    }

    /// `oci:DIR:TAG@` with the digest left out, where `DIR`'s own name holds an `@`: the
    /// spellings offered read the tag of `DIR`, as the reference does with the digest
    /// written, not a directory named `DIR:TAG`; and a `:` before something that is no tag
    /// (`oci:./a:.@`) is the directory's own, where `oci:./a:.@sha256:…` was refused.
    #[test]
    fn a_missing_digest_is_told_spellings_that_keep_the_tag_or_the_directory() {
        // The tag meant, where one was written; without a digest `latest` is read.
        for (written, dir, tag) in [
            ("oci:./x@y:v1@", "./x@y/", Some("v1")),
            ("oci:./a:.@", "./a:./", None),
        ] {
            let e = written.parse::<ImageRef>().unwrap_err().to_string();
            let offered: Vec<String> = e
                .split('(')
                .skip(1)
                .map(|s| s[..s.find(')').unwrap()].replace("sha256:…", D))
                .collect();
            assert_eq!(offered.len(), 2, "{e}");
            for spelling in offered {
                let (path, t, _) = layout(&spelling);
                assert_eq!(path, dir, "{spelling}: {e}");
                assert!(tag.is_none() || t.as_deref() == tag, "{spelling}: {e}");
            }
        }
        let filled = layout(&format!("oci:./x@y:v1@{D}"));
        assert_eq!(
            (filled.0.as_str(), filled.1.as_deref()),
            ("./x@y", Some("v1"))
        );
    }

    /// `oci:DIR:@DIGEST` with the tag left out: the spelling without the `:` reads `DIR`,
    /// even when `DIR`'s own name holds a `:`, where `oci:DIR@DIGEST` split again (another
    /// directory, or the same refusal); a layout named with the `:` is told its slash.
    #[test]
    fn an_empty_tag_before_a_digest_is_told_a_spelling_that_reads_the_directory() {
        let err = |s: &str| s.parse::<ImageRef>().unwrap_err().to_string();
        for (before, meant) in [
            ("./dir", format!("oci:./dir@{D}")),
            ("./a:b", format!("oci:./a:b/@{D}")),
            ("./c:", format!("oci:./c:/@{D}")),
        ] {
            let e = err(&format!("oci:{before}:@{D}"));
            assert!(
                e.ends_with(&format!("or leave the ':' out ({meant})")),
                "{e}"
            );
            assert_eq!(layout(&meant).0.trim_end_matches('/'), before, "{meant}");
        }
        let dir = tempfile::tempdir().unwrap();
        let whole = dir.path().join("a:b:");
        std::fs::create_dir(&whole).unwrap();
        let whole = whole.display().to_string();
        let e = err(&format!("oci:{whole}@{D}"));
        assert!(!e.contains("for the layout"), "{e}");
        std::fs::write(dir.path().join("a:b:/oci-layout"), "{}").unwrap();
        let e = err(&format!("oci:{whole}@{D}"));
        let meant = format!("oci:{whole}/@{D}");
        assert!(
            e.ends_with(&format!("; for the layout {whole:?} itself, write {meant}")),
            "{e}"
        );
        assert_eq!(layout(&meant).0, format!("{whole}/"));
    }

    /// `oci:DIR` where `DIR`'s own name holds an `@` or a `:` before what is no digest or
    /// tag (`x@y`, `a:.`): a layout of that name is told the spelling that reads it, with
    /// its digest if one was written; a name that is no layout is told nothing more.
    #[test]
    fn a_layout_named_with_a_separator_before_no_object_is_told_its_slash() {
        let err = |s: &str| s.parse::<ImageRef>().unwrap_err().to_string();
        let dir = tempfile::tempdir().unwrap();
        for (name, refused) in [
            ("x@y", "invalid digest \"y\""),
            ("a:.", "invalid tag \".\""),
        ] {
            let whole = dir.path().join(name);
            std::fs::create_dir(&whole).unwrap();
            let whole = whole.display().to_string();
            for digest in ["", &format!("@{D}")] {
                if name == "x@y" && !digest.is_empty() {
                    continue; // The digest after the last '@' is read: `y` is then a tag's.
                }
                let e = err(&format!("oci:{whole}{digest}"));
                assert!(e.contains(refused), "{e}");
                assert!(!e.contains("for the layout"), "{e}");
            }
            std::fs::write(dir.path().join(name).join("oci-layout"), "{}").unwrap();
            for digest in ["", &format!("@{D}")] {
                if name == "x@y" && !digest.is_empty() {
                    continue;
                }
                let e = err(&format!("oci:{whole}{digest}"));
                let meant = format!("oci:{whole}/{digest}");
                assert!(
                    e.ends_with(&format!("; for the layout {whole:?} itself, write {meant}")),
                    "{e}"
                );
                let (path, _, read) = layout(&meant);
                assert_eq!(path, format!("{whole}/"), "{meant}");
                assert_eq!(read.is_some(), !digest.is_empty(), "{meant}");
            }
        }
    }

    /// `oci://HOST/NAME:` with its tag (or digest) left out is told the registry's
    /// spelling, as `oci://HOST/NAME:1.0` is when it is read: Helm and ORAS name a
    /// registry so.
    #[test]
    fn a_helm_reference_without_its_object_is_told_the_registry_s_spelling() {
        for (written, meant) in [
            ("oci://ghcr.io/team/chart:", "ghcr.io/team/chart:v1"),
            ("oci://ghcr.io/team/chart@", "ghcr.io/team/chart@sha256:…"),
            (
                "oci://ghcr.io/team/chart:1.0@",
                "ghcr.io/team/chart:1.0@sha256:…",
            ),
            ("oci://ghcr.io/team/chart:@", "ghcr.io/team/chart:v1"),
        ] {
            let e = written.parse::<ImageRef>().unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "as Helm and ORAS name a registry, is a layout directory here: for the \
                     registry, write it without oci:// ({meant})"
                )),
                "{written}: {e}"
            );
            let parsed = r(&meant.replace("sha256:…", D));
            assert!(matches!(parsed.locator, Locator::Registry(_)), "{meant}");
        }
        // A layout path that names no registry is told nothing of it.
        let e = "oci://dir:".parse::<ImageRef>().unwrap_err().to_string();
        assert!(!e.contains("Helm"), "{e}");
    }

    #[test]
    fn layout_references() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(layout("oci:./dir"), ("./dir".into(), s("latest"), None));
        assert_eq!(layout("oci:dir:v1"), ("dir".into(), s("v1"), None));
        assert_eq!(
            layout("oci:/a/b:c/d:v1"),
            ("/a/b:c/d".into(), s("v1"), None)
        );
        assert_eq!(
            layout("oci:./my:dir:v2"),
            ("./my:dir".into(), s("v2"), None)
        );
        assert_eq!(
            layout("oci:./my:dir/"),
            ("./my:dir/".into(), s("latest"), None)
        );
        assert_eq!(layout(&format!("oci:./x@{D}")), ("./x".into(), None, s(D)));
        assert_eq!(
            layout(&format!("oci:./x:t@{D}")),
            ("./x".into(), s("t"), s(D))
        );
        assert_eq!(layout("oci:./a@b/c:t"), ("./a@b/c".into(), s("t"), None));
        assert_eq!(r("oci:./x:t").to_string(), "oci:./x:t");
    }

    #[test]
    fn bad_references() {
        for s in [
            "oci:",
            "oci::v1",
            "oci:./x:ba d",
            "oci:./x@sha256:12",
            "oci:./x:-t",
            "Bad/Repo",
        ] {
            assert!(s.parse::<ImageRef>().is_err(), "{s:?}");
        }
    }
}
