//! Content digests: parsing by the OCI descriptor grammar, and hashing while bytes stream.
//!
//! A [`Digest`] is `algorithm:encoded`. Only `sha256` and `sha512` can be verified, so only
//! they are accepted; anything else is refused before any network I/O. A [`Hasher`] computes
//! the digest of a stream incrementally; [`Digest::of`] does it for a byte slice.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::{Error, Result};

/// A hash function the crate can verify content with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256, 64 lowercase hex characters. The registry default.
    Sha256,
    /// SHA-512, 128 lowercase hex characters.
    Sha512,
}

impl Algorithm {
    /// The name used in digests (`sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest such as `sha256:e3b0c442…`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    /// The whole digest, `algorithm:encoded`: shown and formed into URLs many times per
    /// object, which then costs one allocation rather than two.
    text: String,
}

impl Digest {
    /// The hash function.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The whole digest, `algorithm:encoded`, as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The lowercase hex part after the colon.
    pub fn encoded(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The digest of `data` under `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }

    /// Whether `s` looks like a digest (has the `algorithm:` shape) rather than a tag. A tag
    /// can never contain a colon, so the colon alone decides.
    pub fn looks_like(s: &str) -> bool {
        s.contains(':')
    }

    /// The algorithm of `s` when `s` is a digest by the OCI grammar in an algorithm dist
    /// cannot verify (`sha256+b64u:…`, `blake3:…`), which the image spec says should pass
    /// validation; `None` for a digest dist verifies, and for anything malformed.
    pub fn unsupported_algorithm(s: &str) -> Option<&str> {
        let (alg, encoded) = s.split_once(':')?;
        let known = matches!(alg, "sha256" | "sha512");
        (!known && algorithm_ok(alg) && encoded_ok(encoded)).then_some(alg)
    }
}

/// `s` without the white space around it, and what that white space is, when it has
/// some: a value cut from HTTP headers (`curl -sI … | awk '{print $2}'`) or read from a
/// file saved on Windows keeps its line's `\r`, and the rule a digest's parse names (`needs
/// 64 lowercase hex characters`) is one the 64 characters shown kept. White space is the
/// worker's input line's (`str::trim`, Unicode's): a no-break space pasted from a web page
/// parts a line's words, and an object given on the command line is judged as its line.
fn around_white_space(s: &str) -> Option<(&str, &'static str)> {
    // Asked of every digest, object and descriptor type parsed: edges that are printable
    // ASCII, as every valid one's are, hold no white space, Unicode's included.
    let printable = |b: Option<&u8>| b.is_some_and(u8::is_ascii_graphic);
    if printable(s.as_bytes().first()) && printable(s.as_bytes().last()) {
        return None;
    }
    let trimmed = s.trim();
    if trimmed == s || trimmed.is_empty() {
        return None;
    }
    let what = match s.ends_with('\r') {
        true => {
            "ends in a carriage return (\\r), which a value cut from HTTP headers (curl -I) \
             or a Windows text file keeps"
        }
        false => "has white space around it",
    };
    Some((trimmed, what))
}

/// Why `s` is refused when it has white space around it ([`around_white_space`]) and
/// would be `fine` without it: `it ends in a carriage return (…); without it, it is …`,
/// in the words every parser that checks for it says them in (a digest, an object, a
/// hint, a descriptor's type). `None` when it has none, or would be no better without it.
pub(crate) fn refused_for_white_space(s: &str, fine: impl Fn(&str) -> bool) -> Option<String> {
    let (trimmed, what) = around_white_space(s).filter(|(t, _)| fine(t))?;
    let trimmed = crate::reference::without_credentials(trimmed);
    Some(format!("it {what}; without it, it is {trimmed}"))
}

/// `algorithm ::= component ([+._-] component)*`, components of `[a-z0-9]+`.
fn algorithm_ok(alg: &str) -> bool {
    !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// `encoded ::= [a-zA-Z0-9=_-]+`.
fn encoded_ok(encoded: &str) -> bool {
    !encoded.is_empty()
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

impl FromStr for Digest {
    type Err = Error;

    /// Parses by the OCI grammar: `algorithm ::= component ([+._-] component)*` with
    /// components of `[a-z0-9]`, `encoded ::= [a-zA-Z0-9=_-]+`, then requires a registered
    /// algorithm with its exact encoding (lowercase hex of the right length).
    fn from_str(s: &str) -> Result<Digest> {
        #[cfg(test)]
        tests::PARSES.with(|c| c.set(c.get() + 1));
        const MAX_SHOWN: usize = 160;
        let bad = |why: &str| {
            // A registry's header may hold hundreds of KiB: the start of it is enough to
            // recognise (the longest real digest, sha512, has 135 characters).
            // Nor a login: a registry's URL pasted with it into a descriptor's `digest`.
            let shown =
                crate::server_text::cut_to(crate::reference::without_credentials(s), MAX_SHOWN);
            Error::invalid(format!("invalid digest {shown:?}: {why}"))
        };
        // A digest in an image reference (`dist pull host/app@sha256:…`), or a
        // descriptor's, is cut from HTTP headers as often as an object is.
        if let Some(why) = refused_for_white_space(s, |t| t.parse::<Digest>().is_ok()) {
            return Err(bad(&why));
        }
        let (alg, encoded) = s.split_once(':').ok_or_else(|| bad("missing ':'"))?;
        if !algorithm_ok(alg) {
            // `SHA256:ABC…` is a common paste from tools that print digests in capitals.
            if alg.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(bad(
                    "malformed algorithm (digests are written in lowercase)",
                ));
            }
            return Err(bad("malformed algorithm"));
        }
        // What a sha256 or sha512 digest is says more than the grammar's complaint, for
        // one cut short as interfaces show it (`sha256:4f6c…`) or left empty.
        let needs = |a: Algorithm| {
            bad(&format!(
                "{} needs {} lowercase hex characters",
                a.as_str(),
                a.hex_len()
            ))
        };
        if !encoded_ok(encoded) {
            return Err(match alg {
                "sha256" => needs(Algorithm::Sha256),
                "sha512" => needs(Algorithm::Sha512),
                _ => bad("malformed encoded part"),
            });
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => {
                // Valid by the grammar, which the spec has pass as a digest: what is wrong
                // is only that dist cannot verify it, and "invalid" would say otherwise.
                // Nor a login: a registry's URL pasted with it into a descriptor's `digest`.
                let shown =
                    crate::server_text::cut_to(crate::reference::without_credentials(s), MAX_SHOWN);
                let alg = crate::server_text::cut_to(alg.to_string(), 40);
                return Err(Error::invalid(format!(
                    "unsupported digest algorithm {alg:?} in {shown:?}: dist verifies sha256 \
                     and sha512"
                )));
            }
        };
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(needs(algorithm));
        }
        Ok(Digest {
            algorithm,
            text: s.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Incremental hashing for one algorithm.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state (uses the CPU's SHA extensions when present).
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The running state means nothing to a reader; the algorithm does.
        let algorithm = match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        };
        write!(f, "Hasher({})", algorithm.as_str())
    }
}

impl Hasher {
    /// A fresh state for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Feed more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, text) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, text(Algorithm::Sha256, &h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, text(Algorithm::Sha512, &h.finalize())),
        };
        Digest { algorithm, text }
    }
}

/// `algorithm:` and the lowercase hex of `bytes`.
fn text(algorithm: Algorithm, bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(algorithm.as_str().len() + 1 + bytes.len() * 2);
    s.push_str(algorithm.as_str());
    s.push(':');
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    /// White space around a digest is told whatever it is, a no-break space (two bytes of
    /// UTF-8, neither ASCII) or a `\r` at either end, past the check for printable edges
    /// that spares every valid digest the search.
    #[test]
    fn white_space_around_a_digest_is_told_at_either_end() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for written in [
            format!("\u{a0}{d}"),
            format!("{d}\u{a0}"),
            format!("{d}\r"),
            format!("\t{d}"),
        ] {
            let e = written.parse::<Digest>().unwrap_err().to_string();
            assert!(
                e.contains(&format!("without it, it is {d}")),
                "{written:?}: {e}"
            );
        }
        assert_eq!(around_white_space(d), None);
        assert_eq!(around_white_space(""), None);
        assert_eq!(around_white_space("a b"), None);
    }

    thread_local! {
        /// How often this thread parsed a digest: a worker's line that is none must not
        /// pay for building the same error twice.
        pub(crate) static PARSES: Cell<usize> = const { Cell::new(0) };
    }

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// A JSON input line's `digest` is parsed as it is written: a registry's URL pasted
    /// there with its login (`{"digest":"me:s3cret@reg.example"}`) was quoted whole in
    /// the error, password and all, on stderr, stdout and in the --report file.
    #[test]
    fn an_invalid_digest_holding_credentials_is_quoted_without_them() {
        for typed in [
            "me:s3cret@reg.example",
            "https://me:s3cret@reg.example/team/app",
            "me:s3cret@reg.example ",
            "see me:s3cret@reg.example\u{1b}",
        ] {
            let e = typed.parse::<Digest>().unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{typed:?}: {e}");
            assert!(e.contains("reg.example"), "{typed:?}: {e}");
        }
    }

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::of(Algorithm::Sha256, b""), d);
    }

    #[test]
    fn sha512_of_abc() {
        let d = Digest::of(Algorithm::Sha512, b"abc");
        assert!(d.encoded().starts_with("ddaf35a193617aba"));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c442",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855x",
            "sha256::e3b0",
            "sha--256:abc",
        ] {
            let err = s.parse::<Digest>().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{s}");
        }
        let capitals = "SHA256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        let err = capitals.parse::<Digest>().unwrap_err().to_string();
        assert!(err.contains("written in lowercase"), "{err}");
        let err = "sha--256:abc".parse::<Digest>().unwrap_err().to_string();
        assert!(!err.contains("lowercase"), "{err}");
    }

    #[test]
    fn an_unsupported_algorithm_is_named_not_called_invalid() {
        let s = "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564";
        let err = s.parse::<Digest>().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            format!(
                "unsupported digest algorithm \"sha256+b64u\" in \"{s}\": dist verifies \
                 sha256 and sha512"
            )
        );
        let long = format!("{}:abc", "a".repeat(10_000));
        let err = long.parse::<Digest>().unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
        assert!(
            err.starts_with(&format!(
                "unsupported digest algorithm \"{}…\"",
                "a".repeat(40)
            )),
            "{err}"
        );
    }

    #[test]
    fn tells_unsupported_algorithms_from_malformed_digests() {
        for (s, alg) in [
            (
                "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
                "sha256+b64u",
            ),
            (
                "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
                "blake3",
            ),
            (
                "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
                "multihash+base58",
            ),
        ] {
            assert_eq!(Digest::unsupported_algorithm(s), Some(alg), "{s}");
        }
        for s in [
            EMPTY,
            "sha256:e3b0",
            "SHA384:abc",
            "blake3:",
            "blake3:a b",
            "md5",
            "sha--256:abc",
        ] {
            assert_eq!(Digest::unsupported_algorithm(s), None, "{s}");
        }
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut h = Hasher::new(Algorithm::Sha256);
        for chunk in data.chunks(333) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), Digest::of(Algorithm::Sha256, &data));
    }
}
