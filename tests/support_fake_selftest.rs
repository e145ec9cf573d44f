//! Proves the fake registry does what tests of `dist` will rely on: each fault as seen on the
//! wire, the auth modes, and the counters. Uses raw sockets (and a hyper client for keep-alive),
//! never the `dist` crate, so a bug in one cannot hide a bug in the other.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use support::fake::{
    digest_of, Auth, FakeRegistry, Fault, RandomFaultCounts, RandomFaults, Recorder, TokenField,
    TokenReply,
};

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: what it reports is exactly what was on the wire.

/// How the server ended the connection.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Eof,
    Reset,
}

/// One response as received: the body is every byte after the head, whatever the headers said.
#[derive(Debug)]
struct Wire {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    ending: Ending,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> usize {
        self.header("content-length").unwrap().parse().unwrap()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn request_text(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text + "\r\n"
}

/// Sends one request with `Connection: close` and reads until the server ends the connection.
fn exchange(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Wire {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut headers = headers.to_vec();
    headers.push(("Connection", "close"));
    let text = request_text(addr, method, target, &headers);
    stream.write_all(text.as_bytes()).unwrap();
    let (raw, ending) = read_until_closed(&mut stream);
    parse(&raw, ending)
}

fn get(addr: SocketAddr, target: &str) -> Wire {
    exchange(addr, "GET", target, &[])
}

fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Ending) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (raw, Ending::Eof),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (raw, Ending::Reset),
            Err(e) => panic!("read failed after {} bytes: {e}", raw.len()),
        }
    }
}

fn parse(raw: &[u8], ending: Ending) -> Wire {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|line| line.split_once(':').unwrap())
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let body = raw[end + 4..].to_vec();
    Wire {
        status,
        headers,
        body,
        ending,
    }
}

/// Reads exactly one `Content-Length`-delimited response, leaving the connection open.
fn read_one(stream: &mut TcpStream) -> Wire {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        raw.push(byte[0]);
    }
    let mut wire = parse(&raw, Ending::Eof);
    wire.body = vec![0; wire.content_length()];
    stream.read_exact(&mut wire.body).unwrap();
    wire
}

fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

/// Deterministic, non-repeating content.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

// ---------------------------------------------------------------------------------------------
// Content per the distribution spec.

#[test]
fn serves_blobs_with_spec_headers_for_get_and_head() {
    let registry = FakeRegistry::start();
    let body = content(1000);
    let digest = registry.blob("app", &body);
    assert_eq!(digest, digest_of(&body));

    let got = get(registry.addr(), &blob_path("app", &digest));
    assert_eq!(got.status, 200);
    assert_eq!(got.body, body);
    assert_eq!(got.content_length(), 1000);
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert_eq!(got.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(got.header("accept-ranges"), Some("bytes"));

    let head = exchange(registry.addr(), "HEAD", &blob_path("app", &digest), &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.content_length(), 1000);
    assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    assert!(head.body.is_empty());

    let ping = get(registry.addr(), "/v2/");
    assert_eq!(ping.status, 200);
    assert_eq!(
        ping.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
}

#[test]
fn unknown_content_is_404_with_oci_error_json() {
    let registry = FakeRegistry::start();
    let digest = registry.blob("app", b"only in app");

    // Blobs belong to a repository.
    let other = get(registry.addr(), &blob_path("other", &digest));
    assert_eq!(other.status, 404);
    assert_eq!(other.json()["errors"][0]["code"], "BLOB_UNKNOWN");
    assert_eq!(
        other.json()["errors"][0]["message"],
        "blob unknown to registry"
    );
    assert_eq!(other.json()["errors"][0]["detail"], digest.as_str());

    let manifest = get(registry.addr(), "/v2/app/manifests/nope");
    assert_eq!(manifest.status, 404);
    assert_eq!(manifest.json()["errors"][0]["code"], "MANIFEST_UNKNOWN");

    assert_eq!(get(registry.addr(), "/v2/app/tags/list").status, 404);
}

#[test]
fn manifests_by_tag_and_digest_record_accept() {
    let registry = FakeRegistry::start();
    let media = "application/vnd.oci.image.manifest.v1+json";
    let bytes = br#"{"schemaVersion":2}"#;
    let digest = registry.manifest("team/app", "v1", media, bytes);

    let accept =
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
    for reference in ["v1", digest.as_str()] {
        let target = format!("/v2/team/app/manifests/{reference}");
        let got = exchange(registry.addr(), "GET", &target, &[("Accept", accept)]);
        assert_eq!(got.status, 200);
        assert_eq!(got.body, bytes);
        assert_eq!(got.header("content-type"), Some(media));
        assert_eq!(got.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(got.content_length(), bytes.len());
    }
    let head = exchange(registry.addr(), "HEAD", "/v2/team/app/manifests/v1", &[]);
    assert_eq!((head.status, head.content_length()), (200, bytes.len()));

    let records = registry.requests();
    assert_eq!(records[0].accept.as_deref(), Some(accept));
    assert_eq!(records[2].accept, None);
}

#[test]
fn names_with_slashes_and_encoded_digests_route_from_the_right() {
    let registry = FakeRegistry::start();
    // A repository whose own name contains "blobs" and "manifests" segments.
    let digest = registry.blob("a/blobs/manifests/b", b"nested");
    let got = get(registry.addr(), &blob_path("a/blobs/manifests/b", &digest));
    assert_eq!((got.status, got.body.as_slice()), (200, &b"nested"[..]));

    let encoded = blob_path("a/blobs/manifests/b", &digest.replace(':', "%3A"));
    assert_eq!(get(registry.addr(), &encoded).status, 200);
    assert_eq!(registry.requests_for(&digest), 2);
    assert_eq!(registry.requests()[1].path, encoded);
}

#[test]
fn content_added_after_start_is_served() {
    let registry = FakeRegistry::start();
    let digest = digest_of(b"late");
    assert_eq!(get(registry.addr(), &blob_path("app", &digest)).status, 404);
    registry.blob("app", b"late");
    assert_eq!(
        get(registry.addr(), &blob_path("app", &digest)).body,
        b"late"
    );
}

#[test]
fn ranges_answer_206_or_416() {
    let registry = FakeRegistry::start();
    let body = content(100);
    let path = blob_path("app", &registry.blob("app", &body));
    let ranged = |spec: &str| exchange(registry.addr(), "GET", &path, &[("Range", spec)]);

    let open = ranged("bytes=40-");
    assert_eq!(open.status, 206);
    assert_eq!(open.header("content-range"), Some("bytes 40-99/100"));
    assert_eq!(open.body, &body[40..]);
    assert_eq!(open.content_length(), 60);

    let closed = ranged("bytes=10-19");
    assert_eq!(closed.header("content-range"), Some("bytes 10-19/100"));
    assert_eq!(closed.body, &body[10..20]);

    let clamped = ranged("bytes=90-500");
    assert_eq!(clamped.header("content-range"), Some("bytes 90-99/100"));

    let suffix = ranged("bytes=-5");
    assert_eq!(suffix.body, &body[95..]);

    let beyond = ranged("bytes=100-");
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */100"));

    assert_eq!(
        ranged("bytes=1-2,5-6").status,
        200,
        "multiple ranges are ignored"
    );
    assert_eq!(registry.requests()[0].range.as_deref(), Some("bytes=40-"));
}

#[test]
fn range_support_can_be_switched_off() {
    let registry = FakeRegistry::builder().range_support(false).start();
    let body = content(100);
    let path = blob_path("app", &registry.blob("app", &body));
    let got = exchange(registry.addr(), "GET", &path, &[("Range", "bytes=40-")]);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, body);
    assert_eq!(got.header("accept-ranges"), None);
}

// ---------------------------------------------------------------------------------------------
// Faults, one test each.

#[test]
fn status_faults_are_consumed_in_order_then_serving_resumes() {
    let registry = FakeRegistry::start();
    let digest = registry.blob("app", b"payload");
    let path = blob_path("app", &digest);
    for code in [503, 502, 500] {
        registry.push_fault(&digest, Fault::Status(code));
    }
    let statuses: Vec<u16> = (0..4).map(|_| get(registry.addr(), &path).status).collect();
    assert_eq!(statuses, [503, 502, 500, 200]);

    let failed = get_after_fault(&registry, &path, Fault::Status(504));
    assert_eq!((failed.status, failed.content_length()), (504, 0));

    let faults: Vec<_> = registry.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(faults[0], Some(Fault::Status(503)));
    assert_eq!(faults[3], None);
}

fn get_after_fault(registry: &FakeRegistry, path: &str, fault: Fault) -> Wire {
    registry.push_fault(path, fault);
    get(registry.addr(), path)
}

#[test]
fn retry_after_is_sent_with_its_status() {
    let registry = FakeRegistry::start();
    let path = blob_path("app", &registry.blob("app", b"x"));
    let fault = Fault::StatusWithRetryAfter(429, "1".into());
    let got = get_after_fault(&registry, &path, fault);
    assert_eq!(got.status, 429);
    assert_eq!(got.header("retry-after"), Some("1"));

    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    let got = get_after_fault(
        &registry,
        &path,
        Fault::StatusWithRetryAfter(503, date.into()),
    );
    assert_eq!((got.status, got.header("retry-after")), (503, Some(date)));
}

#[test]
fn drop_after_sends_k_bytes_of_a_full_length_body_then_resets() {
    let registry = FakeRegistry::start();
    let body = content(10_000);
    let path = blob_path("app", &registry.blob("app", &body));
    let got = get_after_fault(&registry, &path, Fault::DropAfter(1234));
    assert_eq!(got.status, 200);
    assert_eq!(got.content_length(), 10_000);
    assert_eq!(got.body, &body[..1234]);
    assert_eq!(got.ending, Ending::Reset);
    assert_eq!(get(registry.addr(), &path).body, body, "one-shot");

    // Past what one loopback write delivers at once, the bytes still all arrive before the reset.
    let big = content(4 << 20);
    let path = blob_path("app", &registry.blob("app", &big));
    let got = get_after_fault(&registry, &path, Fault::DropAfter(3 << 20));
    assert_eq!(got.content_length(), 4 << 20);
    assert!(got.body == big[..3 << 20], "{} bytes", got.body.len());
    assert_eq!(got.ending, Ending::Reset);
}

#[test]
fn truncate_sends_k_bytes_of_a_full_length_body_then_closes_cleanly() {
    let registry = FakeRegistry::start();
    let body = content(10_000);
    let path = blob_path("app", &registry.blob("app", &body));
    let got = get_after_fault(&registry, &path, Fault::Truncate(4321));
    assert_eq!(got.content_length(), 10_000);
    assert_eq!(got.body, &body[..4321]);
    assert_eq!(got.ending, Ending::Eof);
}

#[test]
fn truncate_applies_to_the_range_served() {
    let registry = FakeRegistry::start();
    let body = content(1000);
    let path = blob_path("app", &registry.blob("app", &body));
    registry.push_fault(&path, Fault::Truncate(10));
    let got = exchange(registry.addr(), "GET", &path, &[("Range", "bytes=500-")]);
    assert_eq!(got.status, 206);
    assert_eq!(got.content_length(), 500);
    assert_eq!(got.body, &body[500..510]);
}

#[test]
fn corrupt_byte_flips_one_byte_and_keeps_the_headers() {
    let registry = FakeRegistry::start();
    let body = content(100);
    let digest = registry.blob("app", &body);
    let got = get_after_fault(
        &registry,
        &blob_path("app", &digest),
        Fault::CorruptByte(42),
    );
    assert_eq!(got.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(got.body.len(), 100);
    let differing: Vec<usize> = (0..100).filter(|&i| got.body[i] != body[i]).collect();
    assert_eq!(differing, [42]);
    assert_eq!(got.body[42], !body[42]);
}

#[test]
fn wrong_content_length_puts_the_lie_on_the_wire() {
    let registry = FakeRegistry::start();
    let body = content(100);
    let path = blob_path("app", &registry.blob("app", &body));

    let short = get_after_fault(&registry, &path, Fault::WrongContentLength(-30));
    assert_eq!(short.content_length(), 70);
    assert_eq!(
        short.body, body,
        "the 30 surplus bytes follow the declared end"
    );

    let long = get_after_fault(&registry, &path, Fault::WrongContentLength(5));
    assert_eq!(long.content_length(), 105);
    assert_eq!(long.body, body);
    assert_eq!(long.ending, Ending::Eof);
}

#[test]
fn longer_body_has_a_matching_content_length() {
    let registry = FakeRegistry::start();
    let body = content(100);
    let path = blob_path("app", &registry.blob("app", &body));
    let got = get_after_fault(&registry, &path, Fault::LongerBody(4));
    assert_eq!(got.content_length(), 104);
    assert_eq!(&got.body[..100], &body[..]);
    assert_eq!(&got.body[100..], &[0, 0, 0, 0]);
}

#[test]
fn stall_pauses_after_half_the_body() {
    let registry = FakeRegistry::start();
    let body = content(1000);
    let path = blob_path("app", &registry.blob("app", &body));
    // A stall far longer than the pauses a loaded machine puts between the fake's writes
    // and this thread's reads, so that what comes before it and what after cannot mix.
    registry.push_fault(&path, Fault::Stall(Duration::from_secs(4)));

    let mut stream = TcpStream::connect(registry.addr()).unwrap();
    let text = request_text(registry.addr(), "GET", &path, &[("Connection", "close")]);
    stream.write_all(text.as_bytes()).unwrap();
    // The head and first half, whenever the fake gets to send them.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_and_half = |raw: &[u8]| {
        let head = raw.windows(4).position(|w| w == b"\r\n\r\n");
        head.is_some_and(|end| raw.len() >= end + 4 + 500)
    };
    while !head_and_half(&raw) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} bytes", raw.len());
        raw.extend_from_slice(&buf[..n]);
    }
    assert_eq!(parse(&raw, Ending::Eof).body, &body[..500]);
    // Then nothing: the read that follows waits out the stall.
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let error = stream.read(&mut buf).expect_err("the rest held back");
    assert!(matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));

    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (rest, ending) = read_until_closed(&mut stream);
    assert_eq!((rest.as_slice(), ending), (&body[500..], Ending::Eof));
}

#[test]
fn slow_body_arrives_in_paced_chunks() {
    let registry = FakeRegistry::start();
    let body = content(400);
    let path = blob_path("app", &registry.blob("app", &body));
    let delay = Duration::from_millis(40);
    registry.push_fault(&path, Fault::SlowBody { chunk: 100, delay });

    let started = Instant::now();
    let got = get(registry.addr(), &path);
    assert!(started.elapsed() >= delay * 3, "4 chunks, 3 pauses");
    assert_eq!(got.body, body);
    assert_eq!(got.content_length(), 400);
}

#[test]
fn paced_body_holds_its_rate_from_the_first_byte() {
    let registry = FakeRegistry::start();
    let body = content(64 << 10);
    let path = blob_path("app", &registry.blob("app", &body));
    // 64 KiB at 256 KiB/s: a quarter of a second after a 50 ms first-byte delay. A pacer
    // that let a burst through first (as nginx's `limit_rate` does) would finish at once.
    let fault = Fault::Paced {
        bytes_per_sec: 256 << 10,
        first_byte: Duration::from_millis(50),
    };
    registry.push_fault(&path, fault);

    let started = Instant::now();
    let got = get(registry.addr(), &path);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(50 + 187), "took {took:?}");
    assert_eq!(got.body, body);
}

#[test]
fn ignore_range_answers_200_with_everything() {
    let registry = FakeRegistry::start();
    let body = content(100);
    let path = blob_path("app", &registry.blob("app", &body));
    registry.push_fault(&path, Fault::IgnoreRange);
    let got = exchange(registry.addr(), "GET", &path, &[("Range", "bytes=50-")]);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, body);
    assert_eq!(got.header("content-range"), None);
}

/// A server ignoring where a range ends is a registry all the same: it says the digest as
/// its every blob answer does (the fake's left it out).
#[test]
fn range_to_end_answers_from_the_start_to_the_end_as_a_registry() {
    let registry = FakeRegistry::start();
    let body = content(100);
    let digest = registry.blob("app", &body);
    let path = blob_path("app", &digest);
    registry.push_fault(&path, Fault::RangeToEnd);
    let got = exchange(registry.addr(), "GET", &path, &[("Range", "bytes=10-19")]);
    assert_eq!(got.status, 206);
    assert_eq!(got.body, body[10..]);
    assert_eq!(got.header("content-range"), Some("bytes 10-99/100"));
    assert_eq!(got.header("docker-content-digest"), Some(digest.as_str()));
}

#[test]
fn redirect_points_at_a_recorder_that_serves_and_records() {
    let registry = FakeRegistry::builder()
        .auth(Auth::basic("alice", "secret"))
        .start();
    let body = content(64);
    let path = blob_path("app", &registry.blob("app", &body));
    let target = Recorder::serving(&body);
    let location = format!("{}/bucket/blob?sig=abc", target.url());
    registry.push_fault(
        &path,
        Fault::Redirect {
            status: 307,
            location: location.clone(),
        },
    );
    let creds = basic("alice", "secret");
    let got = exchange(registry.addr(), "GET", &path, &[("Authorization", &creds)]);
    assert_eq!(
        (got.status, got.header("location")),
        (307, Some(location.as_str()))
    );

    // Following the redirect the way a careful client would: without the credentials.
    let followed = get(target.addr(), "/bucket/blob?sig=abc");
    assert_eq!((followed.status, followed.body), (200, body.clone()));
    let resumed = exchange(
        target.addr(),
        "GET",
        "/bucket/blob",
        &[("Range", "bytes=60-")],
    );
    assert_eq!(
        (resumed.status, resumed.body.as_slice()),
        (206, &body[60..])
    );

    let seen = target.requests();
    assert_eq!(target.request_count(), 2);
    assert_eq!(seen[0].query.as_deref(), Some("sig=abc"));
    assert!(seen.iter().all(|r| r.authorization.is_none()));
    assert_eq!(
        registry.requests()[0].authorization.as_deref(),
        Some(creds.as_str())
    );

    let plain = Recorder::start();
    let answer = exchange(plain.addr(), "POST", "/anything", &[("X-Probe", "1")]);
    assert_eq!((answer.status, answer.body.len()), (200, 0));
    assert_eq!(plain.requests()[0].headers["x-probe"], "1");
    assert_eq!(plain.connections(), 1);
}

#[test]
fn unauthorized_fault_rejects_a_valid_token_once() {
    let registry = FakeRegistry::builder()
        .auth(Auth::bearer(Duration::from_secs(60)))
        .start();
    let path = blob_path("app", &registry.blob("app", b"x"));
    let token = fetch_token(&registry, "repository:app:pull");
    let bearer = format!("Bearer {token}");
    registry.push_fault(&path, Fault::Unauthorized);

    let denied = exchange(registry.addr(), "GET", &path, &[("Authorization", &bearer)]);
    assert_eq!(denied.status, 401);
    let challenge = denied.header("www-authenticate").unwrap();
    assert!(
        challenge.ends_with("scope=\"repository:app:pull\""),
        "{challenge}"
    );
    let again = exchange(registry.addr(), "GET", &path, &[("Authorization", &bearer)]);
    assert_eq!(again.status, 200);
}

#[test]
fn body_faults_wait_for_a_get_and_status_faults_take_any_method() {
    let registry = FakeRegistry::start();
    let body = content(10);
    let path = blob_path("app", &registry.blob("app", &body));
    registry.push_fault(&path, Fault::CorruptByte(0));
    let head = exchange(registry.addr(), "HEAD", &path, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(registry.requests()[0].fault, None);
    assert_ne!(get(registry.addr(), &path).body, body);

    registry.push_fault(&path, Fault::Status(503));
    assert_eq!(exchange(registry.addr(), "HEAD", &path, &[]).status, 503);
}

#[test]
fn persistent_faults_hit_every_request_until_cleared() {
    let registry = FakeRegistry::start();
    let body = content(10);
    let digest = registry.blob("app", &body);
    let path = blob_path("app", &digest);
    registry.set_fault_for_every(&digest, Fault::CorruptByte(3));
    registry.push_fault(&digest, Fault::Status(503));

    assert_eq!(
        get(registry.addr(), &path).status,
        503,
        "queued faults come first"
    );
    for _ in 0..3 {
        assert_ne!(get(registry.addr(), &path).body, body);
    }
    registry.clear_faults();
    assert_eq!(get(registry.addr(), &path).body, body);
}

#[test]
fn keys_match_whole_path_segments() {
    let registry = FakeRegistry::start();
    let media = "application/vnd.oci.image.manifest.v1+json";
    registry.manifest("app", "latest", media, b"{}");
    registry.manifest("app", "notlatest", media, b"{}");
    registry.push_fault("manifests/latest", Fault::Status(500));
    registry.push_fault("manifests/latest", Fault::Status(500));

    assert_eq!(
        get(registry.addr(), "/v2/app/manifests/notlatest").status,
        200
    );
    assert_eq!(get(registry.addr(), "/v2/app/manifests/latest").status, 500);
    assert_eq!(
        get(registry.addr(), "/v2/other/manifests/latest").status,
        500
    );
    assert_eq!(registry.requests_for("manifests/latest"), 2);
    assert_eq!(registry.requests_for("latest"), 2);
    assert_eq!(registry.requests_for("/v2/app/"), 0, "a key is a suffix");
}

#[test]
fn random_faults_are_deterministic_per_seed_and_counted() {
    let config = RandomFaults {
        seed: 7,
        p_503: 0.1,
        p_429_retry_after_1s: 0.1,
        p_drop_mid_body: 0.1,
        p_corrupt: 0.1,
    };
    let run = |config: RandomFaults| {
        let registry = FakeRegistry::start();
        let path = blob_path("app", &registry.blob("app", content(64)));
        registry.set_random_faults(config);
        for _ in 0..100 {
            get(registry.addr(), &path);
        }
        // Manifests and HEADs neither draw nor get random faults.
        exchange(registry.addr(), "HEAD", &path, &[]);
        let faults: Vec<_> = registry.requests().into_iter().map(|r| r.fault).collect();
        (faults, registry.random_fault_counts())
    };
    let (first, counts) = run(config);
    let (second, counts_again) = run(config);
    assert_eq!(first, second);
    assert_eq!(counts, counts_again);
    assert_eq!(counts.draws, 100);
    assert_eq!(first.last(), Some(&None));

    let count = |wanted: fn(&Fault) -> bool| first.iter().flatten().filter(|f| wanted(f)).count();
    let expected = RandomFaultCounts {
        draws: 100,
        status_503: count(|f| *f == Fault::Status(503)),
        status_429: count(|f| matches!(f, Fault::StatusWithRetryAfter(429, _))),
        drop_mid_body: count(|f| *f == Fault::DropAfter(32)),
        corrupt: count(|f| *f == Fault::CorruptByte(32)),
    };
    assert_eq!(counts, expected);
    assert!(counts.status_503 > 0 && counts.status_429 > 0);
    assert!(counts.drop_mid_body > 0 && counts.corrupt > 0);

    let (other_seed, _) = run(RandomFaults { seed: 8, ..config });
    assert_ne!(first, other_seed);
}

// ---------------------------------------------------------------------------------------------
// Auth.

#[test]
fn basic_auth_challenges_until_the_right_credentials() {
    let registry = FakeRegistry::builder()
        .auth(Auth::basic("alice", "secret"))
        .start();
    let path = blob_path("app", &registry.blob("app", b"x"));
    let missing = get(registry.addr(), &path);
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Basic realm=\"fake\"")
    );
    assert_eq!(missing.json()["errors"][0]["code"], "UNAUTHORIZED");

    let wrong = basic("alice", "guess");
    let denied = exchange(registry.addr(), "GET", &path, &[("Authorization", &wrong)]);
    assert_eq!(denied.status, 401);
    let right = basic("alice", "secret");
    let allowed = exchange(registry.addr(), "GET", &path, &[("Authorization", &right)]);
    assert_eq!(allowed.status, 200);

    let records = registry.requests();
    assert_eq!(
        (records[0].authorization.as_deref(), records[0].status),
        (None, 401)
    );
    assert_eq!(records[2].auth_scheme(), Some("Basic"));
    assert_eq!(records[2].authorization.as_deref(), Some(right.as_str()));
}

/// Fetches a token from the registry's own endpoint.
fn fetch_token(registry: &FakeRegistry, scope: &str) -> String {
    let target = format!("/token?service=fake-registry&scope={scope}");
    let reply = get(registry.addr(), &target);
    assert_eq!(reply.status, 200);
    reply.json()["token"].as_str().unwrap().to_string()
}

#[test]
fn bearer_challenge_then_token_then_access() {
    let registry = FakeRegistry::builder()
        .auth(Auth::bearer(Duration::from_secs(300)))
        .start();
    let path = blob_path("team/app", &registry.blob("team/app", b"x"));

    let denied = get(registry.addr(), &path);
    assert_eq!(denied.status, 401);
    let expected = format!(
        "Bearer realm=\"{}/token\",service=\"fake-registry\",scope=\"repository:team/app:pull\"",
        registry.url()
    );
    assert_eq!(denied.header("www-authenticate"), Some(expected.as_str()));
    let ping = get(registry.addr(), "/v2/");
    let expected = format!(
        "Bearer realm=\"{}/token\",service=\"fake-registry\"",
        registry.url()
    );
    assert_eq!(
        (ping.status, ping.header("www-authenticate")),
        (401, Some(expected.as_str()))
    );

    let reply = get(
        registry.addr(),
        "/token?service=fake-registry&scope=repository%3Ateam%2Fapp%3Apull",
    );
    assert_eq!(reply.json()["expires_in"], 300);
    assert!(reply.json().get("access_token").is_none());
    let bearer = format!("Bearer {}", reply.json()["token"].as_str().unwrap());
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(exchange(registry.addr(), "GET", &path, &auth).status, 200);
    assert_eq!(exchange(registry.addr(), "GET", "/v2/", &auth).status, 200);

    // The token is scoped to the repository it was asked for, and a refusal says why, as
    // docker-registry's does.
    let other = blob_path("team/other", &registry.blob("team/other", b"y"));
    let cross = exchange(registry.addr(), "GET", &other, &auth);
    assert_eq!(cross.status, 401);
    assert!(
        cross
            .header("www-authenticate")
            .unwrap()
            .ends_with(",scope=\"repository:team/other:pull\",error=\"insufficient_scope\""),
        "{:?}",
        cross.header("www-authenticate")
    );
    assert_eq!(registry.token_requests(), 1);
    let records = registry.requests();
    assert_eq!(records.last().unwrap().auth_scheme(), Some("Bearer"));
}

#[test]
fn token_reply_shapes_and_endpoint_credentials() {
    let shapes = [
        (TokenField::AccessToken, true, ["access_token"].as_slice()),
        (TokenField::Both, false, &["token", "access_token"]),
    ];
    for (field, expires_in, fields) in shapes {
        let registry = FakeRegistry::builder()
            .auth(Auth::Bearer {
                ttl: Duration::from_millis(1500),
                reply: TokenReply { field, expires_in },
                credentials: Some(("bob".into(), "hunter2".into())),
            })
            .start();
        let target = "/token?service=fake-registry&scope=repository:app:pull";
        let refused = get(registry.addr(), target);
        assert_eq!(refused.status, 401);
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Basic realm=\"fake-token\"")
        );

        let creds = basic("bob", "hunter2");
        let reply = exchange(registry.addr(), "GET", target, &[("Authorization", &creds)]);
        let json = reply.json();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        let mut wanted = fields.to_vec();
        if expires_in {
            wanted.push("expires_in");
            assert_eq!(json["expires_in"], 2, "rounded up");
        }
        wanted.sort();
        assert_eq!(keys, wanted);
        if fields.len() == 2 {
            assert_eq!(json["token"], json["access_token"]);
        }
        assert_eq!(registry.token_requests(), 2);
    }
}

#[test]
fn tokens_expire_after_their_ttl() {
    let registry = FakeRegistry::builder()
        .auth(Auth::bearer(Duration::from_secs(1)))
        .start();
    let path = blob_path("app", &registry.blob("app", b"x"));
    let bearer = format!("Bearer {}", fetch_token(&registry, "repository:app:pull"));
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(exchange(registry.addr(), "GET", &path, &auth).status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(exchange(registry.addr(), "GET", &path, &auth).status, 401);

    let fresh = format!("Bearer {}", fetch_token(&registry, "repository:app:pull"));
    assert_ne!(fresh, bearer, "tokens are not reused");
    let auth = [("Authorization", fresh.as_str())];
    assert_eq!(exchange(registry.addr(), "GET", &path, &auth).status, 200);
    assert_eq!(registry.token_requests(), 2);
}

#[test]
fn invalidate_tokens_revokes_every_token_at_once() {
    let registry = FakeRegistry::builder()
        .auth(Auth::bearer(Duration::from_secs(300)))
        .start();
    let path = blob_path("app", &registry.blob("app", b"x"));
    let bearer = format!("Bearer {}", fetch_token(&registry, "repository:app:pull"));
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(exchange(registry.addr(), "GET", &path, &auth).status, 200);
    registry.invalidate_tokens();
    let denied = exchange(registry.addr(), "GET", &path, &auth);
    assert_eq!(denied.status, 401);
    let challenge = denied.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert!(
        challenge.ends_with(",error=\"invalid_token\""),
        "{challenge}"
    );
    // Without a token, the challenge names no error.
    let bare = get(registry.addr(), &path);
    assert!(!bare.header("www-authenticate").unwrap().contains("error="));
}

// ---------------------------------------------------------------------------------------------
// Counters and lifecycle.

#[tokio::test]
async fn keep_alive_reuses_one_connection_and_counts_requests() {
    let registry = FakeRegistry::start();
    let digest = registry.blob("app", content(100));
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = format!("{}{}", registry.url(), blob_path("app", &digest))
        .parse()
        .unwrap();
    for _ in 0..5 {
        let response = client.get(uri.clone()).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 100);
    }
    assert_eq!(registry.request_count(), 5);
    assert_eq!(registry.requests_for(&digest), 5);
    assert_eq!(registry.connections(), 1);
    assert!(registry.requests().iter().all(|r| r.connection == 1));
}

#[test]
fn counts_concurrent_connections() {
    let registry = FakeRegistry::start();
    let mut streams: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(registry.addr()).unwrap())
        .collect();
    for stream in &mut streams {
        let text = request_text(registry.addr(), "GET", "/v2/", &[]);
        stream.write_all(text.as_bytes()).unwrap();
        assert_eq!(read_one(stream).status, 200);
    }
    assert_eq!(registry.connections(), 3);
    assert_eq!(registry.open_connections(), 3);
    assert_eq!(registry.max_open_connections(), 3);
    let ids: Vec<u64> = registry.requests().iter().map(|r| r.connection).collect();
    assert_eq!(ids, [1, 2, 3]);

    drop(streams);
    // Only a guard against a hang: a loaded machine may take seconds to see the closes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while registry.open_connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(registry.open_connections(), 0);
    assert_eq!(registry.max_open_connections(), 3);
}

#[tokio::test(start_paused = true)]
async fn runs_on_its_own_clock_under_a_paused_test_runtime() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let registry = FakeRegistry::start();
    let body = content(1000);
    let path = blob_path("app", &registry.blob("app", &body));
    registry.push_fault(&path, Fault::Stall(Duration::from_millis(100)));
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(registry.addr())
        .await
        .unwrap();
    let text = request_text(registry.addr(), "GET", &path, &[("Connection", "close")]);
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    assert_eq!(parse(&raw, Ending::Eof).body, body);
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "a real-time stall"
    );
}

#[test]
fn dropping_the_registry_ends_stalled_connections_promptly() {
    let registry = FakeRegistry::start();
    let path = blob_path("app", &registry.blob("app", content(1000)));
    registry.push_fault(&path, Fault::Stall(Duration::from_secs(60)));
    let addr = registry.addr();
    let client = std::thread::spawn(move || get(addr, &path));
    // Dropped only once the stall has begun, however long the client takes to get there.
    let deadline = Instant::now() + Duration::from_secs(30);
    while registry.request_count() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(registry.request_count(), 1, "the request reached the fake");

    let started = Instant::now();
    drop(registry);
    // Far below the 60 s stall that a drop waiting for its connections would sit out.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "dropped after {took:?}");
    let got = client.join().unwrap();
    assert!(got.body.len() < 1000, "cut off mid-body");
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

// ---------------------------------------------------------------------------------------------
// The framed-output reader the worker's tests share.

/// A frame whose header names other content than its body was read back as good: a test
/// comparing the body alone passed it.
#[test]
#[should_panic(expected = "the header's digest is the body's")]
fn parse_frames_refuses_a_digest_other_than_the_body_s() {
    let other = digest_of(b"other");
    let frame = format!("obj {other} 5 -\nhello\n");
    support::cli::parse_frames(frame.as_bytes());
}

#[test]
fn parse_frames_reads_a_frame_whose_digest_is_its_body_s() {
    let frame = format!("obj {} 5 -\nhello\n", digest_of(b"hello"));
    let frames = support::cli::parse_frames(frame.as_bytes());
    assert_eq!(frames[0].result.as_ref().unwrap().2, b"hello");
}

/// A test that fails while the `dist` it started still runs takes that run down with it,
/// by its PID: a dropped `Child` ran on past the test (a worker reading its open stdin
/// here, forever), and past the suite.
#[test]
fn a_started_dist_is_killed_when_its_test_fails() {
    let dist = support::cli::Dist::new();
    let mut pid = 0;
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut run = dist.start(&["fetch", "127.0.0.1:1/x", "-"]);
        pid = run.id();
        assert_eq!(run.try_wait().unwrap(), None, "it waits for its input");
        panic!("the test fails");
    }));
    assert!(failed.is_err());
    let pid = i32::try_from(pid).unwrap();
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "dist {pid} still runs after its test failed");
}

/// The same of a `dist` that `strace` runs: killed, `strace` detached it and left it
/// running (reading its open stdin here, forever), past the test and the suite.
#[test]
fn a_dist_strace_runs_is_killed_when_its_test_fails() {
    let dist = support::cli::Dist::new();
    // A registry that answers: a worker with none gives up on its own.
    let reg = support::fake::FakeRegistry::start();
    let repo = format!("{}/team/app", reg.host());
    let mut traced = 0;
    let mut kept_open = None;
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut command = std::process::Command::new("strace");
        command
            .args(["-f", "-q", "-o", "/dev/null", "--"])
            .arg(support::cli::Dist::bin())
            .args(dist.command(&["fetch", &repo, "-"]).get_args())
            .envs(
                dist.command(&[])
                    .get_envs()
                    .filter_map(|(k, v)| Some((k, v?))),
            )
            .stdin(std::process::Stdio::piped());
        let mut run = support::cli::Running::new(command.spawn().expect("strace"));
        // The stdin outlives the test's failure: a dist that reads it runs on unless killed.
        kept_open = run.stdin.take();
        let strace = run.id();
        support::wait::until("strace to start dist", || {
            traced = children(strace)
                .into_iter()
                .find(|&pid| is_dist(pid))
                .unwrap_or(0);
            traced != 0
        });
        panic!("the test fails");
    }));
    assert!(failed.is_err());
    // Its parent gone, it is reaped by whoever adopts it, or left a zombie.
    support::wait::until("the traced dist to be killed", || {
        let stat = std::fs::read_to_string(format!("/proc/{traced}/stat"));
        stat.map_or(true, |s| {
            s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'))
        })
    });
    drop(kept_open);
}

/// The PIDs of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
    let list = list.unwrap_or_default();
    list.split_whitespace().flat_map(str::parse).collect()
}

/// Whether `pid` runs `dist` (has exec'd it).
fn is_dist(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == support::cli::Dist::bin())
}
