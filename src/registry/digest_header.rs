//! An answer's `Docker-Content-Digest` header: read, for a tag, as the digest its content
//! is checked against; and refused, for a blob, when it names other content than the
//! digest asked for, before the body is read.
//!
//! Separate from the requests that read it (the first answer's in the registry remote, a
//! resume's and a part's in `body`): the rules are one, wherever the header arrives.

use http::{HeaderMap, HeaderValue, Uri};

use super::host::Host;
use super::Endpoint;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Object;

/// The one rule for an answer's `Docker-Content-Digest` (`announced`) naming other
/// content than the digest `asked` for, on the first answer, a resume's, a hand-over's
/// and a part's alike. A manifest is held back whole until it verifies, so its body
/// decides, as in containerd and crane: registries announce other content's digest for
/// good manifests. A blob may stream out before its end is hashed, so a header naming
/// other content refuses it unread, from `host`: spliced onto a partial, the bytes of
/// another object were caught only by the digest, after the whole transfer. `unread` is
/// what the answer carried (`the content`, `the rest`, `the part`): after a resume's
/// refusal, "none of the content was read" denied the bytes that had arrived before.
pub(super) fn refuse_announced_other(
    announced: Option<&Digest>,
    endpoint: Endpoint,
    asked: &Digest,
    host: &Host,
    unread: &str,
) -> Result<()> {
    match announced {
        Some(a) if a.algorithm() == asked.algorithm() && a != asked => {
            if endpoint == Endpoint::Blobs {
                return Err(announced_other(a, asked, host.mirror_name(), unread));
            }
            tracing::debug!(header = %a, "a Docker-Content-Digest naming other content; the manifest's body is verified against the digest asked for");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The digest an answer's `Docker-Content-Digest` (`header`) announces for `object`, to
/// check its content against; an error for a tag's header that names no digest. `url`
/// is the answer's, for the log.
pub(super) fn announced_for(
    object: &Object,
    header: Option<&HeaderValue>,
    url: &Uri,
) -> Result<Option<Digest>> {
    let Some(header) = header else {
        return Ok(None);
    };
    // Bytes that are not text (obs-text, 0x80 and up) name no digest either: read as no
    // header, they let a tag's content pass unchecked.
    let Ok(text) = header.to_str() else {
        return match object {
            Object::Digest(_) => Ok(None),
            Object::Tag(_) => {
                // Nor a login, as the digest's own error leaves it out of text.
                let shown = crate::reference::without_credentials(&escaped(header.as_bytes()));
                let shown = crate::server_text::cut_to(shown, 160);
                Err(bad_digest_header(format!(
                    "\"{shown}\" holds bytes that are not text"
                )))
            }
        };
    };
    match text.parse::<Digest>() {
        Ok(d) => Ok(Some(d)),
        // A registry may announce its own canonical digest, in an algorithm dist cannot
        // verify: it says nothing against content asked for by digest, and a tag's is
        // then hashed and reported as for a registry that announces none.
        Err(_) if Digest::unsupported_algorithm(text).is_some() => {
            tracing::debug!(header = text, url = %crate::transport::redact(url), "ignoring a Docker-Content-Digest in an algorithm dist does not verify");
            Ok(None)
        }
        // Content asked for by digest is checked against that digest, whatever the
        // header says; `resolve`'s HEAD passes a bad one over too, as containerd does.
        Err(_) if matches!(object, Object::Digest(_)) => Ok(None),
        // For a tag the header is all there is to check the content against: one that
        // names no digest is refused, as containerd refuses it, where none at all leaves
        // the content to be hashed. The digest's error names the value, cut and escaped.
        Err(e) => Err(bad_digest_header(e.reason())),
    }
}

/// A tag's `Docker-Content-Digest` refused for `why`, saying what the header was for and
/// that its absence would not have failed.
fn bad_digest_header(why: String) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!(
            "bad Docker-Content-Digest header: {why}; a tag's content is checked against \
             it, and one that names no digest is refused, as containerd refuses it (a tag \
             answered without the header is hashed instead)"
        ),
    )
}

/// `raw` with each byte outside printable ASCII escaped (`\xff`, `\t`), as it is shown.
fn escaped(raw: &[u8]) -> String {
    raw.iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

/// The `Docker-Content-Digest` of an answer for content asked for by digest, when it is a
/// digest dist verifies; any other (unparsable, or in an algorithm dist does not verify)
/// says nothing against content asked for by digest, which is checked against that digest.
pub(super) fn announced_digest(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A blob asked for as `asked` whose answer's `Docker-Content-Digest` is `announced`:
/// refused before its body is read, saying it was the header, not the content, that
/// disagreed. `mirror` names the mirror that answered; `None`, the registry. `unread`
/// is what the answer carried, none of which was read.
fn announced_other(
    announced: &Digest,
    asked: &Digest,
    mirror: Option<String>,
    unread: &str,
) -> Error {
    let who = mirror.as_deref().unwrap_or("registry");
    Error::new(
        ErrorKind::DigestMismatch,
        format!(
            "the {who}'s Docker-Content-Digest header names {announced}, not {asked} as \
             asked; none of {unread} was read"
        ),
    )
    .announcing_other()
    .sized_by(mirror)
}
