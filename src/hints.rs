//! Hints: `key:value` words that steer how an object is fetched.
//!
//! `mediatype:<type>` (repeatable) sets the Accept header and, when it names a manifest type,
//! makes a digest try the manifests endpoint first. `size:<bytes>` is the size the caller
//! expects (from a descriptor: decimal digits, within its `int64`); the content must be
//! exactly that long. Unknown keys are
//! ignored so that producers can add keys that older versions of `dist` do not know.

use crate::error::{Error, Result};
use crate::media;

/// The parsed hints of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hints {
    /// Media types to accept, in order of preference.
    pub media_types: Vec<String>,
    /// The exact size the content must have, when known.
    pub size: Option<u64>,
    /// Go to the origin itself, past any mirror: set for a second attempt after content
    /// failed verification (a mirror may hold a corrupt copy). Not a hint word.
    pub origin_only: bool,
    /// Failures in a row that earlier fetches of the same content met and could not
    /// resume (see [`Error::restart`](crate::Error::restart)): they count against this
    /// fetch's retries, which are paced as theirs would have been. Not a hint word.
    pub failures: u32,
}

impl Hints {
    /// The hints for fetch number `attempt` (1-based) of the same object: a fetch after
    /// content failed verification goes to the origin, past the mirror that may have
    /// served it.
    pub fn for_attempt(&self, attempt: u32) -> std::borrow::Cow<'_, Hints> {
        if attempt <= 1 {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut hints = self.clone();
        hints.origin_only = true;
        std::borrow::Cow::Owned(hints)
    }

    /// The hints for fetch number `attempt` (see [`for_attempt`](Self::for_attempt)) after
    /// the fetch before it broke and could not be resumed, `failures` failures in a row
    /// then (see [`Error::restart`](crate::Error::restart)).
    pub fn after_failures(&self, attempt: u32, failures: u32) -> std::borrow::Cow<'_, Hints> {
        let mut hints = self.for_attempt(attempt);
        if failures > 0 {
            hints.to_mut().failures = failures;
        }
        hints
    }

    /// The hints for fetching the content `descriptor` names (a manifest's config or
    /// layer, an index's entry): its exact size, and its media type as the one preferred,
    /// for a manifest followed by the other manifest types, as `dist pull` and a worker
    /// input line of the descriptor fetch it. A manifest named by digest goes to the
    /// manifests endpoint at once (`Hints::default()` asks for a digest as a blob first,
    /// which not every registry serves a manifest as), and content of another size is
    /// refused before it is read. Fails for a media type no `Accept` header carries.
    ///
    /// ```
    /// use dist::image::Descriptor;
    /// use dist::{digest::Algorithm, Digest, Hints};
    ///
    /// let entry = Descriptor::new(
    ///     "application/vnd.oci.image.manifest.v1+json",
    ///     Digest::of(Algorithm::Sha256, b"{}"),
    ///     2,
    /// );
    /// let hints = Hints::for_descriptor(&entry)?;
    /// assert_eq!(hints.size, Some(2));
    /// assert!(hints.wants_manifest());
    /// # Ok::<(), dist::Error>(())
    /// ```
    pub fn for_descriptor(descriptor: &crate::image::Descriptor) -> Result<Hints> {
        let mut hints = Hints {
            size: Some(descriptor.size),
            ..Hints::default()
        };
        hints.add_descriptor_type(&descriptor.media_type)?;
        Ok(hints)
    }

    /// Adds a descriptor's media type `t` (none when empty) to the types accepted.
    pub(crate) fn add_descriptor_type(&mut self, t: &str) -> Result<()> {
        if t.is_empty() {
            return Ok(());
        }
        // Checked as a `mediatype:` hint is, and for the space a word cannot hold: it is
        // sent as `Accept` and written into the report and frame headers as it is.
        // One that kept the `\r` of a `Content-Type` line says so, as a hint does; only a
        // refused one is looked at for why, every valid line's type was checked twice.
        if t.trim() != t || !media::well_formed(t) {
            let why = crate::digest::refused_for_white_space(t, media::well_formed)
                .map(|why| format!(": {why}"))
                .unwrap_or_default();
            return Err(Error::invalid(format!(
                "invalid descriptor media type {t:?}{why}"
            )));
        }
        // A descriptor's type for a manifest is a preference, not a demand: an index entry
        // may call an OCI manifest a Docker one, and a registry that honours Accept then
        // answers 404. The digest decides what the content is, so the other manifest types
        // follow (containerd sends the type, then `*/*`).
        let others: Vec<String> = if media::is_manifest(t) {
            let all = media::DEFAULT_MANIFEST_ACCEPT.iter();
            all.filter(|other| !media::is(t, other))
                .map(|other| other.to_string())
                .collect()
        } else {
            Vec::new()
        };
        self.media_types.push(media::registered(t));
        self.media_types.extend(others);
        Ok(())
    }

    /// Parses hint words. A word without a colon, or a malformed value of a known key, is
    /// an error; unknown keys are logged at debug level and skipped.
    ///
    /// A digest among them is a second object, refused in the words of a worker's input
    /// line ([`digest_where_hint_goes`]).
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Hints> {
        let mut hints = Hints::default();
        for word in words {
            // `" size:12"`, quoted with the space before it: read as the unknown key
            // ` size`, it was ignored without a word, where an input line's words are
            // trimmed and it is a size. (White space after is the value's, told by it.)
            let known = |t: &str| {
                t.split_once(':')
                    .is_some_and(|(k, _)| hint_key(k).is_some())
            };
            if let Some(why) = word
                .starts_with(char::is_whitespace)
                .then(|| crate::digest::refused_for_white_space(word, known))
                .flatten()
            {
                return Err(Error::invalid(format!(
                    "invalid hint {:?}: {why}",
                    shown(word)
                )));
            }
            let (key, value) = word.split_once(':').ok_or_else(|| {
                // `size=849`, as options and environment variables are written.
                let fix = word
                    .split_once('=')
                    .and_then(|(k, v)| meant_key(k).map(|known| format!(" ({known}:{v})")));
                Error::invalid(format!(
                    "invalid hint {:?}: expected key:value{}",
                    shown(word),
                    fix.unwrap_or_default()
                ))
            })?;
            // `mediatype: application/json`, a space after the colon on an input line:
            // the type became a word of its own, and the hint an invalid type `""`, the
            // space unsaid. `size:$SIZE` with the variable unset has no space to blame,
            // and `'size: '`, quoted, a value of spaces the size's check did not name.
            if value.trim().is_empty() && matches!(key, "mediatype" | "mediaType" | "size") {
                let what = match value.is_empty() {
                    true => "it has no value",
                    false => "its value is blank",
                };
                return Err(Error::invalid(format!(
                    "invalid hint {:?}: {what} (a value goes right after the colon, \
                     {key}:VALUE; white space there parts words)",
                    shown(word)
                )));
            }
            match key {
                "mediatype" | "mediaType" => {
                    // `mediatype:$(curl -sI … | awk '/Content-Type/{print $2}')` keeps the
                    // header line's `\r`, which the type's check trims: the request failed
                    // as "bad media type hint", the `\r` unsaid. (Spaces, which `Accept`
                    // carries, are let be.)
                    let broken = value.contains(['\r', '\n']);
                    let fine = |t: &str| broken && media::well_formed(t);
                    if let Some(why) = crate::digest::refused_for_white_space(value, fine) {
                        return Err(Error::invalid(format!(
                            "invalid media type hint {:?}: {why}",
                            shown(value)
                        )));
                    }
                    if !media::well_formed(value) {
                        // `a,b`, as `Accept` lists types: the comma is what is wrong.
                        let types: Vec<&str> = value.split(',').map(str::trim).collect();
                        let listed = types.len() > 1 && types.iter().all(|t| media::well_formed(t));
                        let fix = match listed {
                            true => {
                                let each: Vec<String> = types
                                    .iter()
                                    .map(|t| format!("{key}:{}", shown(t)))
                                    .collect();
                                format!("; one type to a hint: {}", each.join(" "))
                            }
                            false => String::new(),
                        };
                        return Err(Error::invalid(format!(
                            "invalid media type hint {:?}{fix}",
                            shown(value)
                        )));
                    }
                    hints.media_types.push(media::registered(value));
                }
                "size" => {
                    let n = parse_size(value)?;
                    if let Some(earlier) = hints.size.filter(|&s| s != n) {
                        return Err(Error::invalid(format!(
                            "two size hints, {earlier} and {n}: the content has one size"
                        )));
                    }
                    hints.size = Some(n);
                }
                // `sha256:a sha256:b`, digests joined onto one line (`paste -s`, a
                // `jq` without `[]`): read as a hint, every digest after the first would
                // be skipped without a word.
                // `SHA256:…` too: as an unknown key it was skipped just as silently.
                _ if is_digest_key(key) => {
                    return Err(misplaced_digest(word, key, ON_INPUT_LINES));
                }
                _ => match meant_key(key) {
                    Some(known) => warn_once(key, known),
                    None => {
                        tracing::debug!(
                            hint = unknown_shown(key, value),
                            "ignoring unknown hint key"
                        );
                    }
                },
            }
        }
        Ok(hints)
    }

    /// Whether any hinted type is served from the manifests endpoint.
    pub fn wants_manifest(&self) -> bool {
        self.media_types.iter().any(|t| media::is_manifest(t))
    }

    /// The first hinted media type that names one type, without its parameters (and in its
    /// registered spelling, for a type dist knows): what the content is reported as when
    /// the server does not say. A range (`*/*`, `image/*`)
    /// only widens `Accept`, and says nothing of what arrives.
    pub fn media_type(&self) -> Option<&str> {
        self.media_types
            .iter()
            .map(|t| media::canonical(t))
            .find(|t| !t.contains('*'))
    }
}

/// `expected N`, for content whose size `n` was given (a `size:` hint, or a descriptor's
/// `size`, which becomes one): what a size declared otherwise is held against, named as
/// the user gave it, since a size given wrong is a cause as likely as the registry.
pub(crate) fn expected_size(n: u64) -> String {
    format!("expected {n} (the size given: size:{n}, or a descriptor's \"size\")")
}

/// A `size:` value: decimal digits, within the OCI descriptor's `int64`. Rust's own parser
/// also takes a sign (`+5` was read as 5), and a `u64` past `int64` describes no content.
fn parse_size(value: &str) -> Result<u64> {
    let size = |value: &str| {
        value
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| value.parse::<i64>().ok())
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
    };
    size(value).ok_or_else(|| {
        match crate::digest::refused_for_white_space(value, |t| size(t).is_some()) {
            Some(why) => Error::invalid(format!("invalid size hint {:?}: {why}", shown(value))),
            None => Error::invalid(format!(
                "invalid size hint {:?}: expected a byte count in decimal digits, at most {}",
                shown(value),
                i64::MAX
            )),
        }
    })
}

/// Whether a hint word's `key` is a digest algorithm's name, in any case.
fn is_digest_key(key: &str) -> bool {
    ["sha256", "sha384", "sha512", "blake3"]
        .iter()
        .any(|a| key.eq_ignore_ascii_case(a))
}

/// The error for `word` when it is a digest (`sha256:…`, its algorithm in any case) given
/// where a hint goes, a second object; `None` for any other word. `several` says how to
/// give several objects where the words came from ([`Hints::parse`]: as lines of a
/// worker's input), which only the caller knows: a command line's hints say so in its
/// own terms.
pub fn digest_where_hint_goes(word: &str, several: &str) -> Option<Error> {
    let (key, _) = word.split_once(':')?;
    is_digest_key(key).then(|| misplaced_digest(word, key, several))
}

/// How several objects are given to a worker, said of a digest among an input line's hints.
const ON_INPUT_LINES: &str = "objects go one to a line of input";

/// [`digest_where_hint_goes`] for `word`, whose `key` names a digest algorithm.
fn misplaced_digest(word: &str, key: &str, several: &str) -> Error {
    let case = if key.bytes().any(|b| b.is_ascii_uppercase()) {
        "; digests are written in lowercase"
    } else {
        ""
    };
    Error::invalid(format!(
        "a digest where a hint goes ({}): {several}{case}",
        crate::server_text::cut_to(shown(word), 80)
    ))
}

/// A hint's word or value as a message or log shows it: without the login a registry's
/// URL pasted among the hints holds (`http://me:s3cret@host/…`).
fn shown(word: &str) -> String {
    crate::reference::without_credentials(word)
}

/// An unknown hint `key:value` as the log shows it: its key, which is what to fix, kept
/// whole where its value has a login's shape and only the login is left out
/// (`annotation:…@example.com`, not `example.com`, read as a login `annotation:x=me`). A
/// key that may be a token itself, as a login pasted as a hint begins with one
/// (`ghp_…:x-oauth-basic@ghcr.io`), or a URL's scheme, is left to the reading of the word
/// whole: a hint's key is a short word, with no digits, that a token hardly ever is.
fn unknown_shown(key: &str, value: &str) -> String {
    let word = format!("{key}:{value}");
    let shown_word = shown(&word);
    let key_like = (1..=20).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'_' | b'.'));
    if shown_word == word || !key_like || value.starts_with("//") {
        return shown_word;
    }
    format!("{key}:{}", shown(value))
}

/// The hint key `key` names: itself when it is one (`size`, `mediaType`), or the key it
/// misspells, which a hint warns about and ignores (`size` for `Size`).
pub(crate) fn hint_key(key: &str) -> Option<&str> {
    match key {
        "mediatype" | "mediaType" | "size" => Some(key),
        _ => meant_key(key),
    }
}

/// The known key an unknown one is most likely a misspelling of (`Size`, `media-type`,
/// `mediatyp`): such a hint is ignored, as any unknown key is, but not in silence.
fn meant_key(key: &str) -> Option<&'static str> {
    #[cfg(test)]
    tests::MEANT_KEY_CALLS.with(|c| c.set(c.get() + 1));
    let folded: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    match folded.as_str() {
        "size" => Some("size"),
        _ if edit_distance(&folded, "mediatype") <= 2 => Some("mediatype"),
        _ => None,
    }
}

/// Levenshtein distance, for keys of a few characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// One warning per misspelt key and process: a batch of a million lines with `Size:`
/// says so once.
fn warn_once(key: &str, known: &str) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.len() >= 16 || warned.iter().any(|k| k == key) {
        return;
    }
    warned.push(key.to_string());
    tracing::warn!("ignoring the hint key {key:?}, which dist does not know: was {known:?} meant?");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// How often this thread looked for the known key an unknown one misspells: work
        /// an object that parses must not cost.
        pub(crate) static MEANT_KEY_CALLS: Cell<usize> = const { Cell::new(0) };
    }

    #[test]
    fn parses_known_and_skips_unknown() {
        let h = Hints::parse([
            "mediatype:application/vnd.oci.image.manifest.v1+json",
            "platform:linux/amd64",
            "size:42",
        ])
        .unwrap();
        assert_eq!(h.media_types, vec![media::OCI_MANIFEST.to_string()]);
        assert_eq!(h.size, Some(42));
        assert!(h.wants_manifest());
    }

    /// `size=849`, as options and environment variables are written, was refused as
    /// "expected key:value" alone; a known key gets the spelling that works.
    #[test]
    fn a_known_key_written_with_equals_gets_the_colon_spelling() {
        for (word, fix) in [
            ("size=849", "(size:849)"),
            ("mediaType=application/json", "(mediatype:application/json)"),
        ] {
            let e = Hints::parse([word]).unwrap_err().to_string();
            assert!(e.ends_with(&format!("expected key:value {fix}")), "{e}");
        }
        let e = Hints::parse(["colour=red"]).unwrap_err().to_string();
        assert!(e.ends_with("expected key:value"), "{e}");
    }

    #[test]
    fn a_digest_in_the_hints_is_an_error() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let e = Hints::parse([digest.as_str()]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        // In the library's words: a `worker::run` caller runs no `dist fetch`.
        assert!(
            e.to_string().ends_with("objects go one to a line of input"),
            "{e}"
        );
        assert!(Hints::parse(["sha512:abc"]).is_err());
        // An uppercase algorithm was an unknown key, skipped without a word.
        let upper = format!("SHA256:{}", "A".repeat(64));
        let e = Hints::parse([upper.as_str()]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .ends_with("objects go one to a line of input; digests are written in lowercase"),
            "{e}"
        );
        assert!(Hints::parse(["Sha512:abc"]).is_err());
        // Elsewhere than on an input line, in the caller's words.
        let e = digest_where_hint_goes(&upper, "one at a time").unwrap();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .ends_with("one at a time; digests are written in lowercase"),
            "{e}"
        );
        for hint in [
            "size:5",
            "mediatype:application/json",
            "sha256",
            "annotation:x",
        ] {
            assert!(digest_where_hint_goes(hint, "").is_none(), "{hint}");
        }
    }

    #[test]
    fn misspelt_keys_are_told_apart_from_unknown_ones() {
        for key in [
            "Size",
            "SIZE",
            "media-type",
            "media_type",
            "mediatyp",
            "meditype",
        ] {
            assert!(meant_key(key).is_some(), "{key}");
        }
        for key in ["platform", "annotation", "sized", "type", "media"] {
            assert_eq!(meant_key(key), None, "{key}");
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        // Still ignored, not refused: a key a later dist may know.
        assert_eq!(Hints::parse(["Size:12"]).unwrap(), Hints::default());
    }

    #[test]
    fn a_size_is_digits_within_int64_given_once() {
        for v in [
            "+5",
            "-1",
            "-0",
            "0x10",
            "1e3",
            "5.0",
            "5_000",
            "\u{0663}",
            "9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
        ] {
            let word = format!("size:{v}");
            let e = Hints::parse([word.as_str()]).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{v}");
            assert!(e.to_string().contains(&format!("{v:?}")), "{e}");
        }
        let max = i64::MAX.to_string();
        let h = Hints::parse([format!("size:{max}").as_str(), "size:007"]);
        assert!(h.is_err(), "two sizes");
        assert_eq!(
            Hints::parse([format!("size:{max}").as_str()]).unwrap().size,
            Some(i64::MAX as u64)
        );
        assert_eq!(Hints::parse(["size:7", "size:007"]).unwrap().size, Some(7));
        let e = Hints::parse(["size:7", "size:8"]).unwrap_err();
        assert!(e.to_string().contains("7 and 8"), "{e}");
    }

    #[test]
    fn rejects_malformed_words() {
        assert!(Hints::parse(["nocolon"]).is_err());
        assert!(Hints::parse(["size:-1"]).is_err());
        assert!(Hints::parse(["mediatype:"]).is_err());
        for typo in [
            "mediatype:/",
            "mediatype:application/",
            "mediaType:oci/manifest/v1",
        ] {
            let e = Hints::parse([typo]).unwrap_err();
            assert!(e.to_string().contains("invalid media type hint"), "{e}");
        }
    }

    /// A size cut from a `Content-Length` header (`curl -sI … | awk '{print $2}'`) keeps
    /// the line's `\r`, as an object cut from `Docker-Content-Digest` does, and is told so
    /// as that object is: it was told to be decimal digits, which the digits shown were.
    #[test]
    fn a_size_with_a_carriage_return_or_space_says_so() {
        let message = |word: &str| Hints::parse([word]).unwrap_err().to_string();
        let e = message("size:696\r");
        assert!(e.contains("carriage return"), "{e}");
        assert!(e.ends_with("without it, it is 696"), "{e}");
        let e = message("size:696 ");
        assert!(e.contains("white space"), "{e}");
        // Not digits however trimmed: the rule it breaks.
        let e = message("size:69x\r");
        assert!(e.contains("decimal digits"), "{e}");
    }

    /// A hint quoted with white space before it (`" size:12"`, as a script may build the
    /// word) is told so: read as the unknown key ` size`, it was ignored without a word on
    /// a fetch to stdout, where the same word on an input line is a size. Unknown keys
    /// that way are still ignored.
    #[test]
    fn a_hint_with_white_space_before_its_key_says_so() {
        let message = |word: &str| Hints::parse([word]).unwrap_err().to_string();
        let e = message(" size:12");
        assert!(e.contains("white space around it"), "{e}");
        assert!(e.ends_with("without it, it is size:12"), "{e}");
        let e = message("\tmediaType:application/json");
        assert!(
            e.ends_with("without it, it is mediaType:application/json"),
            "{e}"
        );
        assert!(Hints::parse([" x-producer:1"]).is_ok());
        // White space after the value is the value's, told as before.
        assert!(message("size:12\r").starts_with("invalid size hint"));
    }

    /// A known key with no value (`mediatype: TYPE`, `size: 12`, a space after the colon;
    /// `size:$SIZE` unset) says so and where the value goes: it was an invalid type or
    /// size `""`. One whose value is white space alone says it is blank.
    #[test]
    fn a_known_key_with_no_value_says_where_the_value_goes() {
        for key in ["mediatype", "mediaType", "size"] {
            let word = format!("{key}:");
            let e = Hints::parse([word.as_str(), "12"]).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("invalid hint \"{key}:\": it has no value")),
                "{e}"
            );
            assert!(
                e.ends_with(&format!(
                    "right after the colon, {key}:VALUE; white space there parts words)"
                )),
                "{e}"
            );
            // A value of white space alone, quoted as one word: said blank, not an
            // invalid type `" "` or a byte count unnamed.
            for blank in [" ", "\t", "  "] {
                let word = format!("{key}:{blank}");
                let e = Hints::parse([word.as_str()]).unwrap_err().to_string();
                assert!(
                    e.starts_with(&format!("invalid hint {word:?}: its value is blank (")),
                    "{e}"
                );
            }
        }
        // An unknown key's empty value is its own business.
        assert!(Hints::parse(["x-producer:"]).is_ok());
    }

    /// A media type that kept the `\r` of the `Content-Type` line it was cut from (`curl
    /// -sI … | awk '/Content-Type/{print $2}'`) is told so, as a size is: the type's check
    /// trims it, and the request then failed as "bad media type hint", the `\r` unsaid.
    #[test]
    fn a_media_type_with_a_carriage_return_says_so() {
        let e = Hints::parse(["mediatype:application/json\r"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid media type hint"), "{e}");
        assert!(e.contains("carriage return"), "{e}");
        assert!(e.ends_with("without it, it is application/json"), "{e}");
    }

    /// Types joined with commas in one hint, as `Accept` lists them, are told to go one
    /// to a hint: it was refused as an invalid media type, the comma unsaid.
    #[test]
    fn types_joined_with_commas_are_told_to_go_one_to_a_hint() {
        let e = Hints::parse(["mediatype:application/a+json,application/b+json"])
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(
                "one type to a hint: mediatype:application/a+json mediatype:application/b+json"
            ),
            "{e}"
        );
    }

    /// The hints a comma-joined media type is told to write show no login a parameter of
    /// it holds, as the type itself is quoted without one.
    #[test]
    fn types_joined_with_commas_are_told_without_a_login() {
        let e = Hints::parse(["mediatype:a/b,c/d;u=http://me:s3cret@example.com/x"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("one type to a hint: mediatype:a/b mediatype:c/d"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    /// An unknown hint is logged by its key with only its login left out; a key that may
    /// be a token, or a URL's scheme, shows none of the login either.
    #[test]
    fn an_unknown_hint_is_shown_by_its_key_and_never_a_login() {
        for (key, value, want) in [
            ("annotation", "x=me@example.com", "annotation:…@example.com"),
            ("annotation", "x=y", "annotation:x=y"),
            ("http", "//me:s3cret@reg.example/a", "http://reg.example/a"),
            ("ghp_T0kenT0ken", "x-oauth-basic@ghcr.io", "ghcr.io"),
            ("glpatAbCdEfGhIjKlMnOpQr", "x@reg.example", "reg.example"),
        ] {
            assert_eq!(super::unknown_shown(key, value), want, "{key}:{value}");
        }
    }
}
