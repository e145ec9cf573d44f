//! Hints: `key:value` words that steer how an object is fetched.
//!
//! `mediatype:<type>` (repeatable) sets the Accept header and, when it names a manifest type,
//! makes a digest try the manifests endpoint first. `size:<bytes>` is the size the caller
//! expects (from a descriptor); the content must be exactly that long. Unknown keys are
//! ignored so that producers can add keys that older versions of `dist` do not know.

use crate::error::{Error, Result};
use crate::media;

/// The parsed hints of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// Media types to accept, in order of preference.
    pub media_types: Vec<String>,
    /// The exact size the content must have, when known.
    pub size: Option<u64>,
    /// Go to the origin itself, past any mirror: set for a second attempt after content
    /// failed verification (a mirror may hold a corrupt copy). Not a hint word.
    pub origin_only: bool,
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

    /// Parses hint words. A word without a colon, or a malformed value of a known key, is
    /// an error; unknown keys are logged at debug level and skipped.
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Hints> {
        let mut hints = Hints::default();
        for word in words {
            let (key, value) = word.split_once(':').ok_or_else(|| {
                Error::invalid(format!("invalid hint {word:?}: expected key:value"))
            })?;
            match key {
                "mediatype" | "mediaType" => {
                    if value.is_empty() || !value.contains('/') {
                        return Err(Error::invalid(format!("invalid media type hint {value:?}")));
                    }
                    hints.media_types.push(value.to_string());
                }
                "size" => {
                    let n = value
                        .parse()
                        .map_err(|_| Error::invalid(format!("invalid size hint {value:?}")))?;
                    hints.size = Some(n);
                }
                _ => tracing::debug!(hint = word, "ignoring unknown hint key"),
            }
        }
        Ok(hints)
    }

    /// Whether any hinted type is served from the manifests endpoint.
    pub fn wants_manifest(&self) -> bool {
        self.media_types.iter().any(|t| media::is_manifest(t))
    }

    /// The first hinted media type, if any.
    pub fn media_type(&self) -> Option<&str> {
        self.media_types.first().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn rejects_malformed_words() {
        assert!(Hints::parse(["nocolon"]).is_err());
        assert!(Hints::parse(["size:-1"]).is_err());
        assert!(Hints::parse(["mediatype:"]).is_err());
    }
}
