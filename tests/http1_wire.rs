//! HTTP/1.1 at the wire: answers that hyper's server cannot be made to send, written byte
//! by byte by a raw responder on 127.0.0.1.

mod support;

use std::sync::{Arc, Mutex};

use support::cli::{bytes, sha256, Dist};
use support::listen::Listener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as the responder saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// Its head, request line and fields, as sent.
    head: String,
}

impl Seen {
    fn line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// What to do with one request: write `bytes`, then close the connection or keep it.
struct Answer {
    bytes: Vec<u8>,
    close: bool,
}

impl Answer {
    fn keep(bytes: impl Into<Vec<u8>>) -> Answer {
        Answer {
            bytes: bytes.into(),
            close: false,
        }
    }

    fn close(bytes: impl Into<Vec<u8>>) -> Answer {
        Answer {
            bytes: bytes.into(),
            close: true,
        }
    }
}

/// A server that answers each request with what `script` makes of it (the request, and
/// how many came before it on any connection).
struct Raw {
    listener: Listener,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Raw {
    fn start(script: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static) -> Raw {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script = Arc::new(script);
        let log = seen.clone();
        let listener = Listener::start(move |mut tcp| {
            let script = script.clone();
            let log = log.clone();
            async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let req = Seen { head };
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push(req.clone());
                        log.len() - 1
                    };
                    let answer = script(&req, n);
                    if tcp.write_all(&answer.bytes).await.is_err() {
                        return;
                    }
                    if answer.close {
                        let _ = tcp.shutdown().await;
                        return;
                    }
                }
            }
        });
        Raw { listener, seen }
    }

    fn repo(&self) -> String {
        format!("127.0.0.1:{}/team/app", self.listener.port())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests for a blob it was sent.
    fn blob_requests(&self) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|r| r.line().contains("/blobs/")).count()
    }
}

fn head(status: &str, fields: &[String]) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status}\r\n");
    for f in fields {
        h.push_str(f);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// The answer to the check before a batch (a tag listing): an empty one, kept open.
fn no_tags() -> Answer {
    Answer::keep(with_body(
        head("200 OK", &["Content-Length: 2".into()]),
        b"{}",
    ))
}

fn with_body(mut head: Vec<u8>, body: &[u8]) -> Vec<u8> {
    head.extend_from_slice(body);
    head
}

/// `data` as a chunked body, in chunks of `size` bytes, each with an extension, and a
/// trailer field after the last.
fn chunked(data: &[u8], size: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for chunk in data.chunks(size) {
        body.extend_from_slice(format!("{:x};name=\"a value\"\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\nX-Checked: yes\r\n\r\n");
    body
}

/// A response with both `Transfer-Encoding: chunked` and a `Content-Length` (a proxy
/// that chunked a body without removing the length, or a length that counts something
/// else) is read by its chunks, as RFC 9112 (6.3) says and hyper reads it: the length
/// declares no size, which before failed every such blob as "longer than its expected
/// 100 bytes", and a descriptor's size as a mismatch before a byte was read.
/// What the worker stores of `digest`, fetched from `raw` with its size given.
fn worker_stores(dist: &Dist, raw: &Raw, digest: &str, size: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let line = format!("{{\"digest\":\"{digest}\",\"size\":{size}}}\n");
    dist.ok_fed(
        &[
            "fetch",
            &raw.repo(),
            "-",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        line.as_bytes(),
    );
    let stored = dir
        .path()
        .join("blobs/sha256")
        .join(&digest["sha256:".len()..]);
    std::fs::read(stored).unwrap()
}

#[test]
fn a_chunked_body_with_a_content_length_is_sized_by_its_chunks() {
    let data = bytes(7, 3000);
    let digest = sha256(&data);
    let body = data.clone();
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/tags/list") {
            return no_tags();
        }
        let fields = [
            "Transfer-Encoding: chunked".to_string(),
            "Content-Length: 100".to_string(),
            "Trailer: X-Checked".to_string(),
        ];
        Answer::keep(with_body(head("200 OK", &fields), &chunked(&body, 1000)))
    });
    let dist = Dist::new();
    assert_eq!(dist.ok(&["fetch", &raw.repo(), &digest]), data);

    assert_eq!(worker_stores(&dist, &raw, &digest, data.len()), data);
    let fetches = raw.blob_requests();
    assert_eq!(fetches, 2, "one request per fetch: {:?}", raw.seen());
}

/// A body without `Content-Length` ends where the server closes the connection, so a
/// connection lost part-way ends it as cleanly as the content's end would. Short of the
/// content's known size (a descriptor's `size`, a `size:` hint) it was cut, and the rest is
/// asked for with `Range` as for any broken body; before, it was taken for corruption and
/// fetched whole once more, and a body cut each time failed after two attempts. A range
/// answered with less than the rest (a server that caps its ranges) goes on the same way.
#[test]
fn a_close_delimited_body_cut_short_of_its_size_is_resumed() {
    let data = bytes(11, 3000);
    let digest = sha256(&data);
    let total = data.len();
    let body = data.clone();
    // Each answer carries 1000 bytes: the first has no length and is cut by the
    // connection's close, the second is a range capped at 1000 bytes (its length and
    // Content-Range say so), the third brings the rest.
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/tags/list") {
            return no_tags();
        }
        let start = req
            .header("range")
            .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
            .unwrap_or(0usize);
        let end = (start + 1000).min(total);
        let part = &body[start..end];
        match start {
            0 => Answer::close(with_body(head("200 OK", &[]), part)),
            _ => {
                let fields = [
                    format!("Content-Range: bytes {start}-{}/{total}", end - 1),
                    format!("Content-Length: {}", part.len()),
                ];
                Answer::keep(with_body(head("206 Partial Content", &fields), part))
            }
        }
    });
    let ranges = |since: usize| -> Vec<Option<String>> {
        raw.seen()[since..]
            .iter()
            .filter(|r| r.line().contains("/blobs/"))
            .map(|r| r.header("range"))
            .collect()
    };
    let want = vec![
        None,
        Some("bytes=1000-".to_string()),
        Some("bytes=2000-".to_string()),
    ];
    let dist = Dist::new();
    let size = format!("size:{total}");
    assert_eq!(dist.ok(&["fetch", &raw.repo(), &digest, &size]), data);
    assert_eq!(ranges(0), want);

    let since = raw.seen().len();
    assert_eq!(worker_stores(&dist, &raw, &digest, total), data);
    assert_eq!(ranges(since), want);
}

/// A `Location` that a server wrote unencoded (nginx's `$uri` is decoded; a file name may
/// hold spaces or accents) is followed with those bytes percent-encoded and without its
/// fragment, as curl, Go's client and browsers follow it. It was refused as a bad
/// redirect location, which failed the object.
#[test]
fn a_redirect_to_an_unencoded_location_is_followed_encoded() {
    let data = bytes(13, 3000);
    let digest = sha256(&data);
    let body = data.clone();
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/blobs/") {
            let mut location = b"Location: /files/my layer\xc3\xa9.tar?name=a b#part".to_vec();
            location.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
            return Answer::keep(with_body(b"HTTP/1.1 302 Found\r\n".to_vec(), &location));
        }
        let fields = [format!("Content-Length: {}", body.len())];
        Answer::keep(with_body(head("200 OK", &fields), &body))
    });
    let dist = Dist::new();
    assert_eq!(dist.ok(&["fetch", &raw.repo(), &digest]), data);
    let lines: Vec<String> = raw.seen().iter().map(|r| r.line().to_string()).collect();
    assert_eq!(
        lines[1], "GET /files/my%20layer%C3%A9.tar?name=a%20b HTTP/1.1",
        "{lines:?}"
    );
}

/// A body sent with a transfer coding besides `chunked` (`Transfer-Encoding: gzip,
/// chunked`, which HTTP/1.1 allows only to a client that asked with `TE`) reaches dist
/// still coded, hyper undoing only the chunks. It is undone as a `Content-Encoding: gzip`
/// is, and the content verified; it failed every attempt as a digest mismatch, which
/// reads as corruption.
#[test]
fn a_gzip_transfer_coding_is_undone() {
    let data = bytes(17, 50_000);
    let digest = sha256(&data);
    let coded = gzip(&data);
    let raw = Raw::start(move |_, _| {
        let fields = ["Transfer-Encoding: gzip, chunked".to_string()];
        Answer::keep(with_body(head("200 OK", &fields), &chunked(&coded, 4000)))
    });
    let dist = Dist::new();
    assert_eq!(dist.ok(&["fetch", &raw.repo(), &digest]), data);
    assert_eq!(raw.seen().len(), 1, "{:?}", raw.seen());
}

/// A body that breaks after its last byte (a chunked body whose server closes without the
/// last chunk) has nothing left to ask for: verification has the last word, also when
/// the failed requests before it spent the retries. Since they count on one budget with
/// the body's breaks, such a break failed the object, its content all there.
#[test]
fn a_body_broken_after_its_last_byte_is_not_asked_for_again() {
    let data = bytes(13, 3000);
    let digest = sha256(&data);
    let total = data.len();
    let body = data.clone();
    let blobs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = blobs.clone();
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/tags/list") {
            return no_tags();
        }
        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n < 2 {
            return Answer::keep(head(
                "503 Service Unavailable",
                &["Content-Length: 0".into()],
            ));
        }
        if req.header("range").is_some() {
            let fields = [
                format!("Content-Range: bytes */{total}"),
                "Content-Length: 0".into(),
            ];
            return Answer::keep(head("416 Range Not Satisfiable", &fields));
        }
        let mut chunks = chunked(&body, 1000);
        chunks.truncate(chunks.len() - b"0\r\nX-Checked: yes\r\n\r\n".len());
        let fields = ["Transfer-Encoding: chunked".to_string()];
        Answer::close(with_body(head("200 OK", &fields), &chunks))
    });
    let size = format!("size:{total}");
    let out = Dist::new().run(
        &["--retries", "2", "fetch", &raw.repo(), &digest, &size],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout == data, "{err}");
    assert_eq!(blobs.load(std::sync::atomic::Ordering::SeqCst), 3, "{err}");
}

/// A `401` whose body is longer than what is read of an error body (64 KiB), its rest
/// slow to come, keeps its connection busy while the rest stays unread. A token from a realm on the registry's
/// own host was then asked for while that reply was still held, and with one connection
/// allowed to the host (`--range-streams 1` leaves a one-shot fetch one) it waited for
/// the very connection the reply held: since a request may wait for a connection as long
/// as `--timeout` lets it, the fetch never ended. The reply is let go before the token is
/// asked for.
#[test]
fn a_long_401_body_does_not_hold_the_connection_its_token_request_needs() {
    let data = bytes(11, 2000);
    let digest = sha256(&data);
    let body = data.clone();
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/token") {
            let token = br#"{"token":"t"}"#;
            let fields = [format!("Content-Length: {}", token.len())];
            return Answer::keep(with_body(head("200 OK", &fields), token));
        }
        if req.header("authorization").as_deref() != Some("Bearer t") {
            let port = req
                .header("host")
                .and_then(|h| h.rsplit_once(':').map(|(_, p)| p.to_string()))
                .unwrap_or_default();
            // Past what is read of it, and then the rest held back: the reply, unless let
            // go, keeps its connection.
            let page = vec![b'x'; 100 << 10];
            let fields = [
                format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",\
                     service=\"raw\",scope=\"repository:team/app:pull\""
                ),
                format!("Content-Length: {}", 2 * page.len()),
            ];
            return Answer::keep(with_body(head("401 Unauthorized", &fields), &page));
        }
        let fields = [format!("Content-Length: {}", body.len())];
        Answer::keep(with_body(head("200 OK", &fields), &body))
    });
    let dist = Dist::new();
    let out = dist.run(
        &[
            "fetch",
            "--range-streams",
            "1",
            "--timeout",
            "20s",
            &raw.repo(),
            &digest,
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data);
    assert!(
        raw.seen().iter().any(|r| r.line().contains("/token")),
        "{:?}",
        raw.seen()
    );
}

/// A token answer with no length declared ends where its connection closes, as one cut
/// short by a dropped connection does: JSON that ends early there is no token service set
/// up wrong, and is not exit status 2 (retrying cannot cure it), as a whole answer
/// without a token is.
#[test]
fn a_token_answer_that_may_have_been_cut_short_is_not_the_server_s_setup() {
    for (token, status) in [(&br#"{"token":"t","expires_in":3"#[..], 1), (b"{}", 2)] {
        let raw = Raw::start(move |req, _| {
            if req.line().contains("/token") {
                let fields = ["Content-Type: application/json".to_string()];
                return Answer::close(with_body(head("200 OK", &fields), token));
            }
            let port = req
                .header("host")
                .and_then(|h| h.rsplit_once(':').map(|(_, p)| p.to_string()))
                .unwrap_or_default();
            let fields = [
                format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",\
                     service=\"raw\""
                ),
                "Content-Length: 0".to_string(),
            ];
            Answer::keep(head("401 Unauthorized", &fields))
        });
        let digest = sha256(b"x");
        let out = Dist::new().run(&["--retries", "0", "fetch", &raw.repo(), &digest], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("token response"), "{err}");
        assert_eq!(out.status.code(), Some(status), "{err}");
    }
}

/// A manifest by tag from a server that announces neither its digest nor its size, its
/// body ending where the connection closes: cut short, it ended as cleanly as a whole
/// one, and `dist fetch` wrote the first bytes of it and exited 0. Nothing verifies such
/// a manifest, but it must at least be whole JSON.
#[test]
fn a_tag_s_manifest_cut_short_with_nothing_to_verify_it_fails() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let raw = Raw::start(move |req, _| {
        let fields = [
            "Content-Type: application/vnd.oci.image.manifest.v1+json".to_string(),
            "Connection: close".to_string(),
        ];
        if req.line().starts_with("HEAD") {
            return Answer::close(head("200 OK", &fields));
        }
        Answer::close(with_body(head("200 OK", &fields), &manifest[..40]))
    });
    let dist = Dist::new();
    let out = dist.run(&["fetch", &raw.repo(), "v1"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert!(
        stderr.contains("the manifest ended after 40 bytes, before its JSON did"),
        "{stderr}"
    );
    // Warned about as cut short: nothing announced a digest, so nothing "did not verify".
    assert!(
        stderr.starts_with("dist: warning: content is not the size it should be; fetching again"),
        "{stderr}"
    );
    let gets = raw
        .seen()
        .iter()
        .filter(|r| r.line().starts_with("GET") && r.line().contains("/manifests/v1"))
        .count();
    // Fetched once more, as content that did not verify is: a cut may be the network's.
    assert_eq!(gets, 2, "{:?}", raw.seen());
}

/// A tag's `Docker-Content-Digest` in bytes that are not text (obs-text, which HTTP/1.1
/// lets through) was read as no header: the manifest, whole JSON, passed unchecked, where
/// a header that is text but no digest fails it. It fails the same, naming the tag, the
/// URL and the value with those bytes escaped, and what the header was for.
#[test]
fn a_tag_s_digest_header_that_is_not_text_is_refused_as_no_digest() {
    let (code, stderr, url) = fetched_with_digest_header(b"sha256:\xff\tab");
    assert_eq!(code, Some(1), "{stderr}");
    let said = format!(
        "dist: v1: {url}: bad Docker-Content-Digest header: \"sha256:\\xff\\tab\" holds bytes \
         that are not text; a tag's content is checked against it"
    );
    assert!(stderr.contains(&said), "{stderr}");
}

/// A login in such a header (a registry's URL with its password) is left out of the value
/// shown, as it is from a header that is text: it was shown escaped, password and all.
#[test]
fn a_login_in_a_tag_s_digest_header_that_is_not_text_is_not_shown() {
    let (code, stderr, _) = fetched_with_digest_header(b"https://alice:s3cret@reg.example/\xff");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("holds bytes that are not text"), "{stderr}");
    assert!(stderr.contains("\\xff"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// `dist fetch REPO v1` from a server that answers the tag's manifest, whole JSON, with
/// `Docker-Content-Digest: value`: the exit status, stderr, and the manifest's URL.
fn fetched_with_digest_header(value: &'static [u8]) -> (Option<i32>, String, String) {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/tags/list") {
            return no_tags();
        }
        let fields = [
            "Content-Type: application/vnd.oci.image.manifest.v1+json".to_string(),
            format!("Content-Length: {}", manifest.len()),
        ];
        let mut answer = head("200 OK", &fields);
        // The field goes before the blank line that ends the head.
        answer.truncate(answer.len() - 2);
        answer.extend_from_slice(b"Docker-Content-Digest: ");
        answer.extend_from_slice(value);
        answer.extend_from_slice(b"\r\n\r\n");
        if req.line().starts_with("HEAD") {
            return Answer::keep(answer);
        }
        Answer::keep(with_body(answer, manifest))
    });
    let out = Dist::new().run(&["fetch", &raw.repo(), "v1"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let port = raw.listener.port();
    let url = format!("http://127.0.0.1:{port}/v2/team/app/manifests/v1");
    (out.status.code(), stderr, url)
}

/// A tag answered `200` with `Content-Length: 0` and no digest (a proxy that lost the
/// body, a misconfigured static mirror): its size was taken as verification, and
/// `dist fetch` wrote nothing and exited 0, the manifest being "empty". A size says only
/// how long the content is; with no digest, the manifest must still be whole JSON.
#[test]
fn a_tag_s_empty_manifest_with_no_digest_fails() {
    let raw = Raw::start(move |_, _| {
        let fields = [
            "Content-Type: application/vnd.oci.image.manifest.v1+json".to_string(),
            "Content-Length: 0".to_string(),
        ];
        Answer::keep(head("200 OK", &fields))
    });
    let dist = Dist::new();
    let out = dist.run(&["fetch", &raw.repo(), "v1"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the manifest is not JSON"), "{stderr}");
}

/// A chunked body whole each time, whatever `Range` asks, shorter than the size given:
/// the second answer ends where the first did, so the content ends there, and the fetch
/// fails as the size mismatch it is. Each answer was taken for a break and resumed until
/// the retries were spent, and the fetch failed as a lost connection.
#[test]
fn chunked_whole_answers_shorter_than_the_size_given_are_a_size_mismatch() {
    let data = bytes(12, 3000);
    let digest = sha256(&data);
    let body = data.clone();
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/tags/list") {
            return no_tags();
        }
        let fields = ["Transfer-Encoding: chunked".to_string()];
        Answer::keep(with_body(head("200 OK", &fields), &chunked(&body, 1000)))
    });
    let err = Dist::new().fails(1, &["fetch", &raw.repo(), &digest, "size:3001"], b"");
    let said = "content ended after 3000 of 3001 bytes, expected 3001 (the size given: \
                size:3001, or a descriptor's \"size\")";
    assert!(err.contains(said), "{err}");
    assert!(!err.contains("gave up after"), "{err}");
    let fetches = raw.blob_requests();
    // Each of the two fetches (the second from the registry itself): its answer, and the
    // one whole answer again that shows where the content ends.
    assert_eq!(fetches, 4, "{:?}", raw.seen());
}

/// A field folded over two lines (obs-fold: a line break, then a space), as old servers
/// and proxies fold a long `WWW-Authenticate`, is read with the fold as a space: RFC 9112
/// (5.2) requires it of a user agent, and Go's client and curl do so. hyper refused the
/// whole response (`invalid HTTP header parsed`), and the fetch failed after its retries.
#[test]
fn a_folded_header_field_is_read_as_one_line() {
    let data = bytes(23, 3000);
    let digest = sha256(&data);
    let body = data.clone();
    let raw = Raw::start(move |req, _| {
        let port = req.header("host").unwrap_or_default();
        if req.header("authorization").as_deref() != Some("Bearer folded") {
            if req.line().contains("/token") {
                let token = br#"{"token":"folded"}"#;
                let fields = [format!("Content-Length: {}", token.len())];
                return Answer::keep(with_body(head("200 OK", &fields), token));
            }
            let fields = [
                format!(
                    "WWW-Authenticate: Bearer realm=\"http://{port}/token\",\r\n service=\"reg\""
                ),
                "Content-Length: 0".to_string(),
            ];
            return Answer::keep(head("401 Unauthorized", &fields));
        }
        let fields = [
            "X-Served-By: cache-a,\r\n\tcache-b".to_string(),
            format!("Content-Length: {}", body.len()),
        ];
        Answer::keep(with_body(head("200 OK", &fields), &body))
    });
    let dist = Dist::new();
    assert_eq!(dist.ok(&["fetch", &raw.repo(), &digest]), data);
    let token = raw.seen().into_iter().find(|r| r.line().contains("/token"));
    assert!(
        token.is_some_and(|r| r.line().contains("service=reg")),
        "{:?}",
        raw.seen()
    );
}

/// A proxy's or portal's HTML page, chunked, where content of a size given (a
/// descriptor's) belongs: it ends short of that size, and the failure says an HTML page
/// came in the content's place, not that the size given is likely wrong, which it said
/// once the registry itself had sent the page again.
#[test]
fn a_chunked_html_page_short_of_the_size_given_does_not_blame_the_size() {
    let digest = sha256(&bytes(24, 3000));
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/tags/list") {
            return no_tags();
        }
        let fields = [
            "Content-Type: text/html".to_string(),
            "Transfer-Encoding: chunked".to_string(),
        ];
        let page = b"<html><body>Access to this site is blocked by policy</body></html>";
        Answer::keep(with_body(head("200 OK", &fields), &chunked(page, 1000)))
    });
    let err = Dist::new().fails(1, &["fetch", &raw.repo(), &digest, "size:3000"], b"");
    let last = err.lines().last().unwrap();
    assert!(last.contains("HTML page"), "{err}");
    assert!(!last.contains("likely wrong"), "{err}");
}

/// A chunk-size line hyper reads without end (leading zeros: a size of 0 however long)
/// brings no content, so the idle timeout, which counts content, never saw it: dist took
/// it at full speed and CPU until `--idle-timeout`, late by as long again on its one
/// runtime thread, and then blamed a stall. Past 4 MiB read off the connection without a
/// byte of content the body fails at once, saying so, and is not asked for again.
#[test]
fn chunk_framing_without_content_is_cut_off() {
    let digest = sha256(&bytes(25, 3000));
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/tags/list") {
            return no_tags();
        }
        let mut body = vec![b'0'; 24 << 20];
        body.extend_from_slice(b"\r\n\r\n");
        let fields = ["Transfer-Encoding: chunked".to_string()];
        Answer::keep(with_body(head("200 OK", &fields), &body))
    });
    let err = Dist::new().fails(1, &["fetch", &raw.repo(), &digest], b"");
    assert!(err.contains("without content"), "{err}");
    assert!(err.contains("/blobs/"), "names the URL: {err}");
    // Nothing arrived: that nothing "did not verify" is no news.
    assert!(!err.contains("did not verify"), "{err}");
    let asked = raw.blob_requests();
    assert_eq!(asked, 1, "asked again: {:?}", raw.seen());
}

/// Interim answers (`102 Processing`) hyper passes over before the response, without end:
/// read at full speed until the response's timeout, which each of them put off. They fail
/// as content-less framing does.
#[test]
fn interim_answers_without_end_are_cut_off() {
    let digest = sha256(&bytes(26, 3000));
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/tags/list") {
            return no_tags();
        }
        let mut answer = b"HTTP/1.1 102 Processing\r\n\r\n".repeat(1 << 20);
        answer.extend_from_slice(&head("404 Not Found", &["Content-Length: 0".into()]));
        Answer::keep(answer)
    });
    let err = Dist::new().fails(1, &["fetch", &raw.repo(), &digest], b"");
    assert!(err.contains("without content"), "{err}");
    let asked = raw.blob_requests();
    assert_eq!(asked, 1, "asked again: {:?}", raw.seen());
}

/// What `dist fetch` says of a blob's 404 whose body is `body`, labelled
/// `Content-Encoding: gzip` and `content_type`.
fn fails_with_a_404_labelled_gzip(seed: u64, content_type: &str, body: Vec<u8>) -> String {
    let digest = sha256(&bytes(seed, 3000));
    let content_type = format!("Content-Type: {content_type}");
    let raw = Raw::start(move |req, _| {
        if req.line().contains("/tags/list") {
            return no_tags();
        }
        let fields = [
            content_type.clone(),
            "Content-Encoding: gzip".to_string(),
            format!("Content-Length: {}", body.len()),
        ];
        Answer::keep(with_body(head("404 Not Found", &fields), &body))
    });
    Dist::new().fails(1, &["fetch", &raw.repo(), &digest], b"")
}

fn gzip(plain: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(plain).unwrap();
    gz.finish().unwrap()
}

const BLOB_UNKNOWN: &[u8] =
    br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#;

/// A registry's error coded although dist asked for `identity` (a proxy or CDN that gzips
/// JSON whatever it is asked) is read decoded, as a token server's is: its coded bytes
/// were shown as the registry's words, a line of replacement characters.
#[test]
fn a_gzip_coded_error_body_is_shown_decoded() {
    let err = fails_with_a_404_labelled_gzip(27, "application/json", gzip(BLOB_UNKNOWN));
    assert!(
        err.contains("BLOB_UNKNOWN: blob unknown to registry"),
        "{err}"
    );
}

/// An error labelled `Content-Encoding: gzip` whose bytes are plain JSON (a server that
/// labels what it did not code) is shown as it came, as an unknown label's text is: read
/// as gzip, it did not decode and the registry's words were lost.
#[test]
fn an_error_labelled_gzip_but_plain_is_shown_as_it_came() {
    let err = fails_with_a_404_labelled_gzip(28, "application/json", BLOB_UNKNOWN.to_vec());
    assert!(
        err.contains("BLOB_UNKNOWN: blob unknown to registry"),
        "{err}"
    );
}

/// A coded error page longer than dist reads of an error, once decoded, shows its start,
/// as the same page sent plain does: past the limit it showed nothing.
#[test]
fn a_long_coded_error_page_shows_its_start() {
    let mut page = b"Service Unavailable: the backend is being upgraded\n".to_vec();
    page.extend(std::iter::repeat_n(b'.', 200 << 10));
    let err = fails_with_a_404_labelled_gzip(29, "text/plain", gzip(&page));
    assert!(err.contains("the backend is being upgraded"), "{err}");
}
