//! Hints given as a command's arguments, after its one object.

use dist::Hints;

/// How several objects are given to a command, said of a digest among its hints: the user
/// typed no input line, which the library's words for it speak of.
const SEVERAL: &str = "a command takes one object; give several as lines on stdin, with `-` \
                       for the object";

/// Parses `words`, given on the command line after the object, as [`Hints::parse`] does
/// an input line's; a digest among them, a second object, is told how to give several.
pub(super) fn parse(words: &[&str]) -> dist::Result<Hints> {
    Hints::parse(words.iter().copied()).map_err(|e| second_object(words).unwrap_or(e))
}

/// The error for the first digest among `words`, when it is what [`Hints::parse`], which
/// stops at the first word it refuses, refused: the words before it are hints.
fn second_object(words: &[&str]) -> Option<dist::Error> {
    let (at, e) = words
        .iter()
        .enumerate()
        .find_map(|(at, w)| Some((at, dist::hints::digest_where_hint_goes(w, SEVERAL)?)))?;
    Hints::parse(words[..at].iter().copied()).ok()?;
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

    /// A second digest on the command line is told how to give several objects, not of
    /// input lines the user never typed.
    #[test]
    fn a_digest_among_the_hints_is_told_how_to_give_several() {
        let digest = digest();
        let e = parse(&["size:5", &digest]).unwrap_err();
        assert_eq!(e.kind(), dist::ErrorKind::InvalidInput);
        let said = e.to_string();
        assert!(
            said.starts_with("a digest where a hint goes (sha256:"),
            "{said}"
        );
        assert!(said.ends_with(SEVERAL), "{said}");
        assert!(!said.contains("line of input"), "{said}");
        let upper = digest.replace("sha256", "SHA256");
        let said = parse(&[&upper]).unwrap_err().to_string();
        assert!(
            said.ends_with(&format!("{SEVERAL}; digests are written in lowercase")),
            "{said}"
        );
    }

    /// A hint refused before the digest is told in its own words, as the library reads
    /// the words in order; hints alone parse as the library's.
    #[test]
    fn an_earlier_hint_s_mistake_comes_first() {
        let digest = digest();
        let said = parse(&["size:-1", &digest]).unwrap_err().to_string();
        assert!(said.contains("size"), "{said}");
        assert!(!said.contains("a digest where a hint goes"), "{said}");
        let hints = parse(&["size:5", "mediatype:application/json"]).unwrap();
        assert_eq!(hints.size, Some(5));
    }
}
