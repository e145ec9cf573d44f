//! The worker's input line protocol.
//!
//! One object per line: `object [hint…]`, words separated by white space. Blank lines and
//! lines starting with `#` are skipped. A line starting with `{` is an OCI descriptor in
//! JSON (what `jq -c '.layers[]'` prints): its `digest` is the object, its `mediaType` a
//! hint (for a manifest type, the first of every manifest type) and its `size` the exact
//! size the content must have.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::hints::Hints;
use crate::reference::Object;

/// One unit of work read from the input ([`parse_line`]), or built by a caller
/// ([`Job::new`]) to run with [`super::job::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Job {
    /// The object to fetch.
    pub object: Object,
    /// How to fetch it.
    pub hints: Hints,
    /// The `urls` of a descriptor line: where else a non-distributable layer is (a Windows
    /// base layer), which a registry need not hold. dist does not fetch from them; its
    /// error says they are there when the registry has no such content.
    pub urls: Vec<String>,
}

impl Job {
    /// A job for `object`, fetched as `hints` say, with no `urls`.
    pub fn new(object: Object, hints: Hints) -> Job {
        Job {
            object,
            hints,
            urls: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
struct Descriptor {
    digest: Option<String>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    // Read as it is written, so that one that is no byte count is named so, and shown.
    size: Option<serde_json::Value>,
    // Read leniently: they only add to a message, so a list of no strings is no reason to
    // refuse the line.
    urls: Option<serde_json::Value>,
    // What a manifest or an index holds, which no descriptor does.
    config: Option<serde::de::IgnoredAny>,
    layers: Option<serde::de::IgnoredAny>,
    manifests: Option<serde::de::IgnoredAny>,
    // Go's name for the field, where a struct has no JSON tags (as tools that print
    // their records as JSON write it): no descriptor's, but said when `digest` is missing.
    #[serde(rename = "Digest")]
    go_digest: Option<serde::de::IgnoredAny>,
}

/// Parses one input line. `None` for lines to skip; an error names what is wrong with the
/// line so that it can be reported while the rest of the batch goes on.
pub fn parse_line(line: &str) -> Option<Result<Job>> {
    let trimmed = line.trim();
    // A carriage return right before a word is where lines ending in one alone (a classic
    // Mac file, `tr '\n' '\r'`) met, all read as this one: its second object was told it
    // stood where a hint goes, though each was on a line of its own to the user's eye,
    // and a list that began with a comment was skipped whole. One before white space
    // stays white space: `paste -d' '` of a file with `\r\n` endings puts it before the
    // hint it joins on. JSON may hold one between its tokens. Looked for first as any `\r`
    // (a `memchr`), as nearly every line has none: the pairs alone, a byte at a time, cost
    // every line ~75 ns (3x the line's trim), a million lines' 0.08 s of CPU.
    let cr_before_word = trimmed.contains('\r')
        && trimmed
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'\r' && !w[1].is_ascii_whitespace());
    if cr_before_word && !trimmed.starts_with('{') {
        return Some(Err(Error::invalid(CR_ALONE)));
    }
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    Some(if trimmed == "{" {
        // The first line of `jq '.layers[]'` without `-c`; the lines after it fail too,
        // but this one says why.
        Err(Error::invalid(
            "a descriptor spread over lines (pretty-printed JSON): give one per line, as \
             `jq -c` prints them",
        ))
    } else if trimmed.starts_with('[') {
        Err(Error::invalid(
            "a JSON array: give its descriptors one per line (`jq -c '.layers[]'`)",
        ))
    } else if is_pretty_json(trimmed) {
        // The lines after that `{`: each read as an object, a member `"size": 5,` was
        // told to go without its quotes, as `size":`.
        Err(Error::invalid(format!(
            "a line of pretty-printed JSON: give descriptors one per line, {AS_JQ_PRINTS}"
        )))
    } else if trimmed.starts_with('{') {
        parse_descriptor(trimmed, cr_before_word)
    } else {
        let mut words = trimmed.split_whitespace();
        let object = words.next().expect("line is not blank");
        object
            .parse()
            .and_then(|object| Ok(Job::new(object, Hints::parse(words)?)))
    })
}

/// The error of a line with a carriage return inside it.
const CR_ALONE: &str = "a carriage return (\\r) inside the line: lines end with a line feed \
     (\\n or \\r\\n), and lines that end in \\r alone read as one (`tr '\\r' '\\n'` \
     converts them)";

/// How to have `jq` print a manifest's or an index's descriptors one per line.
const AS_JQ_PRINTS: &str =
    "as `jq -c '.config, .layers[]'` prints a manifest's (`jq -c '.manifests[]'` an index's)";

/// A line of pretty-printed JSON after its opening `{`: an object's member (`"size": 5,`)
/// or a closing bracket.
fn is_pretty_json(line: &str) -> bool {
    let member = line.starts_with('"')
        && line
            .split_whitespace()
            .next()
            .is_some_and(|word| word.ends_with("\":"));
    member || matches!(line, "}" | "}," | "]" | "],")
}

/// `cr_before_word`: the line holds a carriage return right before a word, which JSON
/// reads as white space between its tokens; blamed only when the line is no JSON (lines
/// ending in `\r` alone, read as one), a descriptor's other faults being its own.
fn parse_descriptor(line: &str, cr_before_word: bool) -> Result<Job> {
    let d: Descriptor = serde_json::from_str(line).map_err(|e| match cr_before_word {
        true => Error::invalid(CR_ALONE),
        false => Error::invalid("input line is not a JSON descriptor").with_cause(e),
    })?;
    // `dist fetch LOC v1 | dist fetch LOC -`, or a `jq -c .` of one: no descriptor, but
    // what holds them.
    let whole = if d.manifests.is_some() {
        Some("index")
    } else if d.layers.is_some() || d.config.is_some() {
        Some("manifest")
    } else {
        None
    };
    if let (None, Some(what)) = (&d.digest, whole) {
        return Err(Error::invalid(format!(
            "a whole {what}, not a descriptor: give its descriptors one per line, {AS_JQ_PRINTS}"
        )));
    }
    let digest = d.digest.ok_or_else(|| match d.go_digest {
        Some(_) => Error::invalid(
            "descriptor has no \"digest\", but a \"Digest\" (a Go field's name): a \
             descriptor's keys are \"digest\", \"size\" and \"mediaType\", as `jq -c \
             '{digest: .Digest, size: .Size}'` renames them",
        ),
        None => Error::invalid("descriptor has no \"digest\""),
    })?;
    let object = digest.parse::<crate::Digest>().map(Object::Digest)?;
    let size = d.size.as_ref().map(descriptor_size).transpose()?;
    let mut hints = Hints {
        size,
        ..Hints::default()
    };
    if let Some(t) = &d.media_type {
        hints.add_descriptor_type(t)?;
    }
    let urls = d
        .urls
        .as_ref()
        .and_then(|u| u.as_array())
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str())
        .map(str::to_string)
        .collect();
    Ok(Job {
        object,
        hints,
        urls,
    })
}

/// A descriptor's `size` as a byte count (see [`crate::image::size_rule`]): past the
/// spec's int64 no content has that size, and a sign, a fraction or a string is none.
fn descriptor_size(size: &serde_json::Value) -> Result<u64> {
    size.as_u64()
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(|| {
            Error::invalid(format!(
                "descriptor \"size\" {} is not {}",
                crate::server_text::cut_to(size.to_string(), 40),
                crate::image::size_rule()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn plain_lines() {
        assert!(parse_line("").is_none());
        assert!(parse_line("   \t").is_none());
        assert!(parse_line("# comment").is_none());
        let j = parse_line(&format!("  {D}  mediatype:a/b\tsize:0 "))
            .unwrap()
            .unwrap();
        assert_eq!(j.object.to_string(), D);
        assert_eq!(j.hints.media_types, vec!["a/b"]);
        assert_eq!(j.hints.size, Some(0));
        assert_eq!(
            parse_line("latest").unwrap().unwrap().object,
            Object::Tag("latest".into())
        );
    }

    /// README (Line protocol): any white space parts words and is trimmed from the ends,
    /// as Unicode counts it; it said "spaces or tabs", which a consumer took to make
    /// `sha256:…<no-break space>size:5` one word, a bad digest.
    #[test]
    fn unicode_white_space_parts_words_as_a_space_does() {
        for space in ["\u{a0}", "\u{2028}", "\u{c}", "\u{3000}", "\u{85}"] {
            let j = parse_line(&format!("{space}{D}{space}size:5{space}"))
                .unwrap()
                .unwrap();
            assert_eq!(j.object.to_string(), D, "{space:?}");
            assert_eq!(j.hints.size, Some(5), "{space:?}");
        }
        // Not white space: a zero-width space stays in the word, which is then no digest.
        assert!(parse_line(&format!("{D}\u{200b}size:5")).unwrap().is_err());
    }

    #[test]
    fn descriptor_lines() {
        let j = parse_line(&format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D}","size":0,"annotations":{{"a":"b"}}}}"#
        ))
        .unwrap()
        .unwrap();
        assert_eq!(j.object.to_string(), D);
        assert_eq!(j.hints.size, Some(0));
        assert_eq!(
            j.hints.media_types,
            ["application/vnd.oci.image.layer.v1.tar"]
        );
        let j = parse_line(&format!(
            r#"{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{D}"}}"#
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            j.hints.media_types,
            [
                crate::media::DOCKER_MANIFEST,
                crate::media::OCI_INDEX,
                crate::media::OCI_MANIFEST,
                crate::media::DOCKER_MANIFEST_LIST,
            ],
            "the descriptor's type first, then every other manifest type"
        );
    }

    #[test]
    fn bad_lines_are_errors() {
        for l in [
            "sha256:abc",
            "{not json",
            r#"{"size":3}"#,
            r#"{"digest":"sha256:zz"}"#,
            "latest nocolon",
            "Bad/Tag",
        ] {
            assert!(parse_line(l).unwrap().is_err(), "{l}");
        }
    }

    /// A descriptor's type is checked as a `mediatype:` hint is: one with a line break or
    /// a space in it went out as the request's `Accept` and into the report and the
    /// frame headers as it was.
    #[test]
    fn a_descriptor_media_type_must_be_one() {
        // As JSON escapes: the line itself is one line.
        for bad in [
            r"a/b\r\nX-Evil: 1",
            r"a/b\n",
            " a/b",
            "a b/c",
            "/",
            r"a/b\u0000",
        ] {
            let line = format!(r#"{{"digest":"{D}","mediaType":"{bad}"}}"#);
            let e = parse_line(&line).unwrap().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains("media type"), "{bad}: {e}");
        }
        let line = format!(r#"{{"digest":"{D}","mediaType":"application/json; charset=utf-8"}}"#);
        let j = parse_line(&line).unwrap().unwrap();
        assert_eq!(j.hints.media_types, ["application/json; charset=utf-8"]);
    }

    /// A descriptor's `mediaType` that kept the `\r` of a `Content-Type` line it was cut
    /// from says so, and the type without it, as a `mediatype:` hint does: it was only an
    /// "invalid descriptor media type".
    #[test]
    fn a_descriptor_media_type_with_white_space_around_it_says_so() {
        let t = "application/vnd.oci.image.layer.v1.tar";
        for (bad, said) in [(r"\r", "carriage return"), (" ", "white space around it")] {
            let line = format!(r#"{{"digest":"{D}","mediaType":"{t}{bad}"}}"#);
            let e = parse_line(&line).unwrap().unwrap_err().to_string();
            assert!(e.contains(said), "{e}");
            assert!(e.contains(&format!("without it, it is {t}")), "{e}");
        }
        // One no better without its white space says no more than that it is invalid.
        let line = format!(r#"{{"digest":"{D}","mediaType":" nonsense "}}"#);
        let e = parse_line(&line).unwrap().unwrap_err().to_string();
        assert_eq!(e, r#"invalid descriptor media type " nonsense ""#);
    }

    /// A `size` that is no int64 byte count is named as that, the value shown: it was
    /// "input line is not a JSON descriptor: invalid type: string \"5\", expected u64",
    /// serde's words for a line that is a descriptor, only with a bad size.
    #[test]
    fn a_descriptor_size_is_an_int64_byte_count() {
        for size in ["-1", "1.5", "1e3", "9223372036854775808", "\"5\"", "[]"] {
            let line = format!(r#"{{"digest":"{D}","size":{size}}}"#);
            let e = parse_line(&line).unwrap().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{size}");
            let e = e.to_string();
            // Shown as JSON reads it back (`1e3` as `1000.0`).
            assert!(e.starts_with("descriptor \"size\" "), "{size}: {e}");
            // In the words a manifest's descriptor is refused with.
            assert!(
                e.contains("a byte count from 0 to 9223372036854775807 (an int64)")
                    && !e.contains("u64"),
                "{size}: {e}"
            );
        }
        let line = format!(r#"{{"digest":"{D}","size":{}}}"#, i64::MAX);
        let j = parse_line(&line).unwrap().unwrap();
        assert_eq!(j.hints.size, Some(i64::MAX as u64));
    }

    #[test]
    fn json_not_one_descriptor_a_line_says_how_to_give_it() {
        let e = parse_line("{").unwrap().unwrap_err().to_string();
        assert!(e.contains("as `jq -c` prints them"), "{e}");
        let e = parse_line(&format!(r#"[{{"digest":"{D}"}}]"#))
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("jq -c '.layers[]'"), "{e}");
        let e = parse_line("[").unwrap().unwrap_err().to_string();
        assert!(e.contains("a JSON array"), "{e}");
        for line in [
            format!("\"{D}\""),
            format!("  \"{D}\","),
            "\"v1\" size:1".into(),
            "\"".into(),
        ] {
            let e = parse_line(&line).unwrap().unwrap_err().to_string();
            assert!(e.contains("without its quotes"), "{line}: {e}");
            let given = e.split("without its quotes (").nth(1).unwrap_or_default();
            let given = given.split(')').next().unwrap_or_default();
            assert!(!given.contains(['"', ',']), "{line}: {e}");
        }
    }

    /// A record printed by a Go tool without JSON tags has Go's field names (`"Digest"`,
    /// `"Size"`): the line was told it has no `"digest"`, beside the `"Digest"` it shows.
    /// It is told the keys a descriptor has, and how `jq` renames them.
    #[test]
    fn a_descriptor_with_go_field_names_is_told_the_keys() {
        let line = format!(
            r#"{{"MIMEType":"application/vnd.oci.image.layer.v1.tar+gzip","Digest":"{D}","Size":5,"Annotations":null}}"#
        );
        let e = parse_line(&line).unwrap().unwrap_err().to_string();
        assert!(e.contains(r#"but a "Digest""#), "{e}");
        assert!(e.contains("'{digest: .Digest, size: .Size}'"), "{e}");
        let e = parse_line(r#"{"size":5}"#)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert_eq!(e, r#"descriptor has no "digest""#);
    }

    /// `dist fetch LOC v1 | dist fetch LOC -`, or `jq .` where `jq -c '.layers[]'` was
    /// meant: the lines of a pretty-printed manifest were each called a quoted object, to
    /// be given without quotes as `schemaVersion":`, and the compact manifest a descriptor
    /// without a digest. Each says how to give its descriptors.
    #[test]
    fn a_manifest_given_whole_says_how_to_give_its_descriptors() {
        for line in [
            r#"  "schemaVersion": 2,"#,
            r#"    "digest": "sha256:abc","#,
            r#""layers": ["#,
            "},",
            "}",
            "  ]",
        ] {
            let e = parse_line(line).unwrap().unwrap_err().to_string();
            assert!(e.contains("pretty-printed JSON"), "{line}: {e}");
            assert!(e.contains("jq -c '.config, .layers[]'"), "{line}: {e}");
        }
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{D}","size":1}},"layers":[{{"digest":"{D}","size":1}}]}}"#
        );
        let e = parse_line(&manifest).unwrap().unwrap_err().to_string();
        assert!(e.contains("a whole manifest"), "{e}");
        assert!(e.contains("jq -c '.config, .layers[]'"), "{e}");
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{D}","size":1}}]}}"#);
        let e = parse_line(&index).unwrap().unwrap_err().to_string();
        assert!(e.contains("a whole index"), "{e}");
        assert!(e.contains("jq -c '.manifests[]'"), "{e}");
    }

    /// JSON lets a `\r` stand between its tokens: a descriptor so written is read, and one
    /// wrong for another reason says that reason. Every error of such a line was the
    /// carriage return's, "lines that end in \r alone read as one", of a line that was
    /// one descriptor, its digest's or its size's fault unsaid.
    #[test]
    fn a_carriage_return_between_json_tokens_is_white_space() {
        let j = parse_line(&format!("{{\"digest\":\"{D}\",\r\"size\":0}}"))
            .unwrap()
            .unwrap();
        assert_eq!((j.object.to_string(), j.hints.size), (D.into(), Some(0)));
        for (line, said) in [
            (
                "{\"digest\":\"sha256:zz\",\r\"size\":0}".to_string(),
                "sha256:zz",
            ),
            (
                format!("{{\"digest\":\"{D}\",\r\"size\":-1}}"),
                "\"size\" -1",
            ),
            ("{\"size\":5,\r\"a\":1}".into(), "no \"digest\""),
        ] {
            let e = parse_line(&line).unwrap().unwrap_err().to_string();
            assert!(
                e.contains(said) && !e.contains("carriage return"),
                "{line:?}: {e}"
            );
        }
        // Descriptors on lines that end in `\r` alone read as one line, no JSON: that is
        // what the carriage return is blamed for.
        let e = parse_line(&format!("{{\"digest\":\"{D}\"}}\r{{\"digest\":\"{D}\"}}"))
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("carriage return"), "{e}");
    }

    /// `Hints::for_descriptor` gives a library caller the hints a descriptor line (as
    /// `dist pull` writes them) is fetched with: the same for a layer, a config, each
    /// manifest type, an index, an artifact manifest, an unknown type and none.
    #[test]
    fn a_descriptor_s_hints_are_its_line_s() {
        let types = [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.example.unknown+json",
            "",
        ];
        for t in types {
            let mut d = crate::image::Descriptor::new(t, D.parse().unwrap(), 7);
            if t.contains("manifest.v1") {
                d.extra
                    .insert("artifactType".into(), "application/vnd.example.sbom".into());
            }
            let line = serde_json::to_string(&d).unwrap();
            let job = parse_line(&line).unwrap().unwrap();
            let hints = Hints::for_descriptor(&d).unwrap();
            assert_eq!(hints, job.hints, "{line}");
            assert_eq!(hints.size, Some(7), "{line}");
            assert_eq!(
                hints.wants_manifest(),
                crate::media::is_manifest(t),
                "{line}"
            );
        }
    }
}
