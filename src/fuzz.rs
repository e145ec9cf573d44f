//! The parsers that read what others wrote (a registry's headers and JSON, input lines,
//! locators and references, config files), fed arbitrary text and mutations of valid
//! input: byte flips, cuts, repeats, huge numbers, multi-byte characters, empty fields,
//! runs of separators. Each must answer without a panic, a stack overflow or unbounded
//! work, and what it accepts must hold its own rules (a digest of lowercase hex, a
//! reference that parses again as itself, a message line within its cap).
//!
//! Deterministic: a fixed seed, unless `FUZZ_SEED` sets another; `FUZZ_N` sets the inputs
//! per parser (default 2000, well under a second in a debug build) for a longer hunt.

use std::str::FromStr;

/// xorshift64: enough randomness for inputs, and no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        let i = self.below(xs.len());
        &xs[i]
    }
}

/// Pieces spliced into inputs: separators, numbers past every integer type, characters
/// of every UTF-8 length, the words the parsers look for.
const PIECES: &[&str] = &[
    "",
    ":",
    "/",
    "@",
    ".",
    "..",
    "-",
    "_",
    "__",
    "=",
    "==",
    ",",
    ";",
    " ",
    "\t",
    "\"",
    "\\",
    "\r\n",
    "\n",
    "*",
    "+",
    "?",
    "#",
    "%",
    "[",
    "]",
    "{",
    "}",
    "é",
    "ü",
    "\u{feff}",
    "日本",
    "🦀",
    "\u{0}",
    "\u{1b}[2J",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "-1",
    "0",
    "1e308",
    "NaN",
    "inf",
    "sha256:",
    "sha512:",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "localhost",
    "localhost:5000",
    "docker.io",
    "oci:",
    "https://",
    "http://",
    "bytes ",
    "[::1]",
    "v7",
    "linux",
    "arm64",
    "realm=",
    "Bearer ",
    "Basic ",
    "size:",
    "mediatype:",
    "null",
    "true",
    "{}",
    "[]",
    "{\"a\":",
    "\"digest\":",
    "\u{80}",
    "\u{7ff}",
    "\u{10ffff}",
    "\u{200b}",
];

/// `seed` with a few random edits.
fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(9) {
            0 if !s.is_empty() => {
                let i = rng.below(s.len());
                s[i] = char::from_u32((s[i] as u32) ^ (1 << rng.below(8))).unwrap_or('x');
            }
            1 => s.truncate(at),
            2 if at < s.len() => {
                let end = at + rng.below(s.len() - at + 1);
                let dup: Vec<char> = s[at..end].to_vec();
                let most = if rng.below(10) == 0 { 300 } else { 3 };
                let n = 1 + rng.below(most);
                for _ in 0..n {
                    s.splice(at..at, dup.iter().copied());
                }
            }
            3 if at < s.len() => {
                s.remove(at);
            }
            4 => {
                let c = char::from_u32(rng.next() as u32 % 0x11_0000).unwrap_or('\u{fffd}');
                s.insert(at, c);
            }
            5 => {
                let b = (rng.next() % 128) as u8 as char;
                s.insert(at, b);
            }
            _ => {
                let p = rng.pick(PIECES);
                let long = rng.below(20) == 0;
                let n = if long { 1 + rng.below(500) } else { 1 };
                let t: String = p.repeat(n);
                s.splice(at..at, t.chars());
            }
        }
    }
    s.into_iter().collect()
}

/// Text made of pieces, printable ASCII and any characters.
fn arbitrary(rng: &mut Rng) -> String {
    let n = rng.below(40);
    (0..n)
        .map(|_| match rng.below(3) {
            0 => rng.pick(PIECES).to_string(),
            1 => char::from((rng.next() % 95) as u8 + 32).to_string(),
            _ => char::from_u32(rng.next() as u32 % 0x11_0000)
                .unwrap_or('x')
                .to_string(),
        })
        .collect()
}

/// `n` inputs: one in five arbitrary, the others mutations of `seeds`.
fn inputs(rng: &mut Rng, seeds: &[&str], n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i % 5 == 0 {
                arbitrary(rng)
            } else {
                let s = rng.pick(seeds);
                mutate(rng, s)
            }
        })
        .collect()
}

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn iters() -> usize {
    std::env::var("FUZZ_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}
fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e3779b97f4a7c15)
}

/// Runs `body` on each input, naming the input that made it panic.
macro_rules! each {
    ($seeds:expr, |$s:ident| $body:block) => {{
        let mut rng = Rng(seed());
        for $s in inputs(&mut rng, $seeds, iters()) {
            let $s: &str = &$s;
            let r = std::panic::catch_unwind(|| $body);
            if r.is_err() {
                panic!("input {:?}", $s);
            }
        }
    }};
}

#[test]
fn f_digest() {
    each!(&[D, "sha512:abc", "SHA256:ABC"], |s| {
        if let Ok(d) = crate::Digest::from_str(s) {
            assert_eq!(d.to_string(), s);
            assert!(d
                .encoded()
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    });
}

#[test]
fn f_reference() {
    let seeds = [
        "redis", "docker.io/library/redis:7@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "localhost:5000/team/app:v1", "https://[::1]:5000/a/b", "oci:./a:b:v1", "oci:./dir@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "user:pw@host.example/app", "ghcr.io", "a.b/c__d-e.f/g:_x", "7.2@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ];
    each!(&seeds, |s| {
        if let Ok(r) = crate::Repository::from_str(s) {
            let again: crate::Repository =
                r.to_string().parse().unwrap_or_else(|e| panic!("{r}: {e}"));
            assert_eq!(again.host(), r.host());
            assert_eq!(again.name(), r.name());
            assert!(!r
                .name()
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == ".."));
        }
        let _ = crate::Locator::from_str(s);
        if let Ok(o) = crate::Object::from_str(s) {
            let again: crate::Object = o.to_string().parse().unwrap();
            assert_eq!(again, o);
            let _ = o.bare_digest_spelling();
        }
        if let Ok(r) = crate::Reference::from_str(s) {
            let again: crate::Reference =
                r.to_string().parse().unwrap_or_else(|e| panic!("{r}: {e}"));
            assert_eq!(
                (again.repository.to_string(), &again.tag, &again.digest),
                (r.repository.to_string(), &r.tag, &r.digest)
            );
        }
        if let Ok(r) = crate::image::ImageRef::from_str(s) {
            let again: crate::image::ImageRef =
                r.to_string().parse().unwrap_or_else(|e| panic!("{r}: {e}"));
            assert_eq!(
                (again.locator.to_string(), &again.tag, &again.digest),
                (r.locator.to_string(), &r.tag, &r.digest),
                "{r}"
            );
        }
        let _ = crate::reference::is_loopback(s);
        let _ = crate::reference::host_without_port(s);
        let _ = crate::hosts::HostSpec::from_flag(s);
    });
}

#[test]
fn f_hints_lines_platform_duration() {
    let seeds = [
        "mediatype:application/vnd.oci.image.manifest.v1+json size:12 x:y",
        "Size:1 media-type:a/b sha256:abc",
        "{\"digest\":\"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\"size\":5,\"mediaType\":\"application/vnd.oci.image.index.v1+json\"}",
        "linux/arm/v7", "linux/amd64", "1h30m", "500ms", "1.5s", "# comment", "[1]",
    ];
    each!(&seeds, |s| {
        let _ = crate::Hints::parse(s.split_whitespace());
        let _ = crate::worker::line::parse_line(s);
        if let Ok(p) = crate::image::Platform::from_str(s) {
            let _ = p.to_string();
            let _ = p.fit(&crate::image::Platform::host());
            let _ = crate::image::Platform::host().fit(&p);
            let _ = p.fit(&p);
            let _ = p.as_looked_for();
        }
        let _ = crate::duration::parse(s);
        let parts: Vec<&str> = s.split('/').collect();
        let p = crate::image::Platform::new(
            parts[0],
            parts.get(1).copied().unwrap_or(""),
            parts.get(2).copied(),
        );
        let _ = p.fit(&crate::image::Platform::new("linux", "arm64", Some(s)));
        let _ = crate::image::Platform::new("linux", "arm64", Some(s)).fit(&p);
        let _ = crate::image::Platform::new("linux", "arm", Some(s))
            .fit(&crate::image::Platform::new("linux", "arm", Some("v7")));
        let _ = crate::image::Platform::new("linux", "amd64", Some("v4"))
            .fit(&crate::image::Platform::new("linux", "amd64", Some(s)));
    });
}

#[test]
fn f_challenge() {
    let seeds = [
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/redis:pull""#,
        r#"Basic realm="a, b", BEARER Realm = "https://x/t" , service=svc,error="invalid_token""#,
        r#"Negotiate abc==, Basic realm="say \"hi\"""#,
    ];
    each!(&seeds, |s| {
        for c in crate::auth::challenge::parse(s) {
            assert!(!c.scheme.is_empty());
        }
    });
}

#[test]
fn f_json() {
    let seeds = [
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":7,"platform":{"architecture":"arm","os":"linux","variant":"v7","os.features":null},"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}"#,
        r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":7},"layers":[{"mediaType":"a/b","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":18446744073709551615,"urls":null}]}"#,
    ];
    each!(&seeds, |s| {
        let _ = crate::image::Manifest::parse(None, s.as_bytes());
        let _ = crate::image::Manifest::parse(Some(crate::media::OCI_INDEX), s.as_bytes());
        let _ = crate::image::Manifest::parse_verified(crate::media::DOCKER_MANIFEST, s.as_bytes());
        let _ = crate::image::sniff_media_type(s.as_bytes());
        if let Ok(crate::image::Manifest::Index(m)) =
            crate::image::Manifest::parse(None, s.as_bytes())
        {
            for d in m {
                let _ = d.worker_line();
                if let Some(p) = d.platform {
                    let _ = p.to_string();
                    let _ = crate::image::Platform::host().fit(&p);
                }
            }
        }
    });
}

#[test]
fn f_headers() {
    let seeds = [
        "bytes 100-199/1000",
        "bytes 0-0/*",
        "120",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "gzip, chunked",
        "0;w=21600",
    ];
    each!(&seeds, |s| {
        let Ok(v) = http::HeaderValue::from_str(s) else {
            return;
        };
        let mut h = http::HeaderMap::new();
        for name in [
            http::header::CONTENT_RANGE,
            http::header::RETRY_AFTER,
            http::header::CONTENT_ENCODING,
            http::header::CONTENT_LENGTH,
        ] {
            h.insert(name, v.clone());
        }
        let _ = crate::registry::content_range(&h);
        let _ = crate::registry::content_range_start(&h);
        let _ = crate::retry::retry_after(&h);
    });
}

#[test]
fn f_text() {
    let said = "upstream connect error or disconnect/reset before headers. reset reason: \
        connection failure, transport failure reason: delayed connect error: 111; the \
        registry at registry.example.com:5000 could not serve the blob you asked for, try \
        again later or ask the administrator of this registry what went wrong with it";
    let seeds = [
        said,
        "<html><title>x</title>",
        "<TITLE>a</title",
        "plain\ntext\u{1b}[0m",
        "/a/./b/../c?x=../y",
        "//cdn/x",
        "https://u:p@h/x",
    ];
    each!(&seeds, |s| {
        let one = crate::server_text::one_line(s);
        assert!(!one.contains(char::is_control));
        assert!(
            one.chars().count() <= crate::server_text::MAX_SHOWN + 1,
            "{}",
            one.chars().count()
        );
        let _ = crate::server_text::excerpt(s.as_bytes(), "404 Not Found");
        let _ = crate::server_text::cut_to(s.to_string(), 7);
        let _ = crate::server_text::printable(s);
        let base: http::Uri = "https://reg.example:5000/v2/x/blobs/sha256:ab"
            .parse()
            .unwrap();
        if let Ok(u) = crate::transport::resolve(&base, s) {
            assert!(matches!(u.scheme_str(), Some("http" | "https")));
        }
        let _ = crate::error::redact_url(s);
        let _ = crate::hosts::HostsFile::parse(s, std::path::Path::new("/nonexistent"));
    });
}

#[tokio::test]
async fn f_input_lines() {
    use crate::worker::input::{without_bom, Lines, RawLine};
    let mut rng = Rng(seed());
    for _ in 0..iters() / 10 {
        let mut data = Vec::new();
        for _ in 0..rng.below(20) {
            let s = mutate(&mut rng, "sha256:abc size:1\r\n\u{feff}# c\n");
            data.extend_from_slice(s.as_bytes());
            if rng.below(4) == 0 {
                data.push((rng.next() % 256) as u8);
            }
        }
        let max = 1 + rng.below(64);
        let cap = 1 + rng.below(8);
        let reader = tokio::io::BufReader::with_capacity(cap, &data[..]);
        let mut lines = Lines::new(reader, max);
        let mut n = 0;
        while let Some(line) = lines.next().await.unwrap() {
            n += 1;
            assert!(n <= data.len() + 1);
            if let RawLine::Text(t) = without_bom(line) {
                // A comment that is not UTF-8 is kept lossily, to be skipped.
                assert!(t.len() <= max || t.starts_with('#'), "{t:?} past {max}");
                let _ = crate::worker::line::parse_line(&t);
            }
        }
    }
}

/// A proptest configuration of `default` cases, or `PROPTEST_CASES` when set (a longer
/// hunt locally): `ProptestConfig::with_cases` alone ignores the variable.
pub(crate) fn cases(default: u32) -> proptest::prelude::ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    proptest::prelude::ProptestConfig::with_cases(n.unwrap_or(default))
}
