//! HTTP/2 under faults that a real server, load balancer or CDN produces and the HTTP/1.1
//! fake registry cannot. The server is the `h2` crate's, over TLS with h2 offered by ALPN
//! (dist speaks HTTP/2 only over TLS), so that each fault happens at the frame the test
//! chooses.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use support::cli::{bytes, sha256, Dist};

/// What the server does with one request.
#[derive(Clone, Debug)]
enum Plan {
    /// Serves the blob the path names (from the offset a `Range: bytes=N-` asks for), or
    /// answers 404.
    Serve,
    /// Stops reading and writing the whole connection, its socket left open: a server
    /// that hangs, or a middlebox that dropped the connection's state without a reset.
    Freeze,
    /// Sends the headers and this many bytes of the blob, then freezes the connection.
    FreezeAfter(usize),
    /// Serves the blob with this many more header fields, of 60 bytes each: what a chain
    /// of CDNs and proxies adds.
    ManyFields(usize),
    /// Resets the stream with this error code before any answer.
    Reset(h2::Reason),
    /// Leaves the request unanswered, the connection going on.
    Unanswered,
    /// Sends the headers and this many bytes of the blob, then empty DATA frames without
    /// end, a few a second: frames, but no content.
    EmptyFramesAfter(usize),
}

/// What the server saw.
#[derive(Default)]
struct Seen {
    /// Requests in the order they came: the connection's number, the path, the `Range`.
    requests: Mutex<Vec<(usize, String, Option<String>)>>,
    connections: AtomicUsize,
    /// The paths asked for over HTTP/1.1, in order.
    http1: Mutex<Vec<String>>,
}

struct H2Server {
    port: u16,
    ca_pem: String,
    seen: Arc<Seen>,
    _listener: support::listen::Listener,
}

impl H2Server {
    /// Writes the server's CA where `dist` keeps its files, for `--ca-file`.
    fn ca_file(&self, dist: &Dist) -> std::path::PathBuf {
        let path = dist.config_dir().join("ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    fn locator(&self) -> String {
        format!("https://localhost:{}/team/app", self.port)
    }

    /// The connections and `Range` headers of the requests for `digest`, in order.
    fn requests_for(&self, digest: &str) -> Vec<(usize, Option<String>)> {
        self.seen
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, path, _)| path.ends_with(digest))
            .map(|(conn, _, range)| (*conn, range.clone()))
            .collect()
    }
}

/// A TLS acceptor for `localhost` that prefers h2, and its CA (PEM).
fn acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dist h2 test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let provider = support::registry::provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    // HTTP/1.1 for a client that offers nothing else; dist's offer of h2 takes h2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem())
}

type Planner = dyn Fn(usize, &str) -> Plan + Send + Sync;

/// Serves `blobs` (by the digest that ends the path) over HTTP/2, doing with a request
/// for `path` what `plan(n, path)` says, `n` counting the requests for that path from 0.
fn start(
    blobs: HashMap<String, Vec<u8>>,
    plan: impl Fn(usize, &str) -> Plan + Send + Sync + 'static,
) -> H2Server {
    let (acceptor, ca_pem) = acceptor();
    let seen = Arc::new(Seen::default());
    let blobs = Arc::new(blobs);
    let plan: Arc<Planner> = Arc::new(plan);
    let asked = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let seen2 = seen.clone();
    let listener = support::listen::Listener::start(move |tcp| {
        let (acceptor, seen, blobs, plan, asked) = (
            acceptor.clone(),
            seen2.clone(),
            blobs.clone(),
            plan.clone(),
            asked.clone(),
        );
        async move {
            let number = seen.connections.fetch_add(1, Ordering::SeqCst);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                serve_http1(tls, &seen, &blobs).await;
                return;
            }
            let Ok(mut conn) = h2::server::handshake(tls).await else {
                return;
            };
            let frozen = Arc::new(tokio::sync::Notify::new());
            loop {
                let accepted = tokio::select! {
                    accepted = conn.accept() => accepted,
                    _ = frozen.notified() => {
                        // Neither read nor written again; the socket stays open until
                        // the client closes it or the server stops.
                        std::future::pending::<()>().await;
                        return;
                    }
                };
                let Some(Ok((req, respond))) = accepted else {
                    return;
                };
                let path = req.uri().path().to_string();
                let range = req
                    .headers()
                    .get("range")
                    .map(|v| v.to_str().unwrap().to_string());
                let n = {
                    let mut asked = asked.lock().unwrap();
                    let n = asked.entry(path.clone()).or_default();
                    *n += 1;
                    *n - 1
                };
                seen.requests
                    .lock()
                    .unwrap()
                    .push((number, path.clone(), range.clone()));
                let step = plan(n, &path);
                let (blobs, frozen) = (blobs.clone(), frozen.clone());
                tokio::spawn(async move {
                    answer(respond, step, &blobs, &path, range, &frozen).await;
                });
            }
        }
    });
    H2Server {
        port: listener.port(),
        ca_pem,
        seen,
        _listener: listener,
    }
}

/// Serves `blobs` whole over HTTP/1.1, recording each path.
async fn serve_http1(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    seen: &Arc<Seen>,
    blobs: &Arc<HashMap<String, Vec<u8>>>,
) {
    let (seen, blobs) = (seen.clone(), blobs.clone());
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let path = req.uri().path().to_string();
        seen.http1.lock().unwrap().push(path.clone());
        let digest = path.rsplit('/').next().unwrap_or_default();
        let response = match blobs.get(digest) {
            Some(blob) => Response::new(http_body_util::Full::new(Bytes::from(blob.clone()))),
            None => {
                let mut response = Response::new(http_body_util::Full::new(Bytes::new()));
                *response.status_mut() = http::StatusCode::NOT_FOUND;
                response
            }
        };
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let io = hyper_util::rt::TokioIo::new(tls);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

async fn answer(
    mut respond: h2::server::SendResponse<Bytes>,
    plan: Plan,
    blobs: &HashMap<String, Vec<u8>>,
    path: &str,
    range: Option<String>,
    frozen: &tokio::sync::Notify,
) {
    if let Plan::Freeze = plan {
        frozen.notify_one();
        return;
    }
    if let Plan::Reset(reason) = plan {
        respond.send_reset(reason);
        return;
    }
    if let Plan::Unanswered = plan {
        let _held = respond;
        return std::future::pending().await;
    }
    let digest = path.rsplit('/').next().unwrap_or_default();
    let Some(blob) = blobs.get(digest) else {
        let response = Response::builder().status(404).body(()).unwrap();
        let _ = respond.send_response(response, true);
        return;
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|s| *s < blob.len());
    let mut response = Response::builder();
    if let Plan::ManyFields(n) = plan {
        for i in 0..n {
            response = response.header(format!("x-hop-{i}"), "v".repeat(60));
        }
    }
    let body = match start {
        Some(start) => {
            response = response.status(206).header(
                "content-range",
                format!("bytes {start}-{}/{}", blob.len() - 1, blob.len()),
            );
            &blob[start..]
        }
        None => &blob[..],
    };
    let response = response
        .header("content-length", body.len())
        .body(())
        .unwrap();
    let Ok(mut stream) = respond.send_response(response, body.is_empty()) else {
        return;
    };
    let cut = match plan {
        Plan::FreezeAfter(n) | Plan::EmptyFramesAfter(n) => n.min(body.len()),
        _ => body.len(),
    };
    let _ = send(&mut stream, &body[..cut], cut == body.len()).await;
    if let Plan::EmptyFramesAfter(_) = plan {
        while stream.send_data(Bytes::new(), false).is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        return;
    }
    if let Plan::FreezeAfter(_) = plan {
        // What was sent reaches the socket before the connection stops.
        tokio::time::sleep(Duration::from_millis(100)).await;
        frozen.notify_one();
        // The stream is held open, as by a server that hangs: dropped, it was reset
        // (`CANCEL`), which a connection that merely went silent never sends.
        std::future::pending::<()>().await;
    }
}

/// Sends `data` as the client's flow control allows, ending the stream with it if `end`.
async fn send(stream: &mut h2::SendStream<Bytes>, data: &[u8], end: bool) -> Result<(), h2::Error> {
    let mut data = Bytes::copy_from_slice(data);
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => granted?,
            None => return Err(h2::Error::from(h2::Reason::CANCEL)),
        };
        let chunk = data.split_to(granted.min(data.len()));
        stream.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

/// `n` blobs of `size` bytes and more, by digest.
fn blobs(seed: u64, n: usize, size: usize) -> HashMap<String, Vec<u8>> {
    (0..n)
        .map(|i| {
            let data = bytes(seed + i as u64, size + i * 31);
            (sha256(&data), data)
        })
        .collect()
}

/// Runs the worker over `digests`, in that order, into a new directory; returns its
/// output and the directory.
fn worker(
    server: &H2Server,
    digests: &[String],
    extra: &[&str],
) -> (std::process::Output, tempfile::TempDir) {
    let dist = Dist::new();
    let ca = server.ca_file(&dist);
    let out_dir = tempfile::tempdir().unwrap();
    let input: String = digests.iter().map(|d| format!("{d}\n")).collect();
    let locator = server.locator();
    let mut args = vec!["fetch", "--ca-file", ca.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[&locator, "-", "-o", out_dir.path().to_str().unwrap()]);
    let out = dist.run(&args, input.as_bytes());
    (out, out_dir)
}

fn stored(dir: &tempfile::TempDir, digest: &str) -> Option<Vec<u8>> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(dir.path().join("blobs/sha256").join(hex)).ok()
}

/// A connection that stops answering altogether, its socket left open (a server that
/// hangs, a NAT or load balancer that forgot the connection without a reset), is left
/// for a new one: the request waiting on it is sent again, and a body it cut short
/// resumes from where it stopped. Under HTTP/1.1 a request given up on closes its
/// connection; under HTTP/2 the connection stayed in the pool, and every retry and every
/// later object went to it again and timed out, failing the rest of the batch.
#[test]
fn a_connection_that_stops_answering_is_left_for_a_new_one() {
    let small = blobs(700, 3, 3000);
    let large = blobs(800, 1, 3 << 20);
    let mut digests: Vec<String> = small.keys().cloned().collect();
    digests.sort();
    let (frozen, big) = (digests[0].clone(), large.keys().next().unwrap().clone());
    // The first object meets a connection that freezes before its answer, the second one
    // that freezes in the middle of its body.
    digests.insert(1, big.clone());
    let all: HashMap<String, Vec<u8>> = small.into_iter().chain(large).collect();
    let (frozen2, big2) = (frozen.clone(), big.clone());
    let server = start(all.clone(), move |n, path| {
        if n == 0 && path.ends_with(&frozen2) {
            Plan::Freeze
        } else if n == 0 && path.ends_with(&big2) {
            Plan::FreezeAfter(1_500_000)
        } else {
            Plan::Serve
        }
    });
    let (out, dir) = worker(&server, &digests, &["--idle-timeout", "2s", "-j", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for (digest, data) in &all {
        assert_eq!(stored(&dir, digest).as_ref(), Some(data), "{digest}");
    }
    let asked = server.requests_for(&frozen);
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked[1].0 > asked[0].0,
        "asked again on a new connection: {asked:?}"
    );
    let asked = server.requests_for(&big);
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(
        asked[1].0 > asked[0].0,
        "resumed on a new connection: {asked:?}"
    );
    assert_eq!(asked[1].1.as_deref(), Some("bytes=1500000-"));
}

/// A response with as many header fields as dist takes over HTTP/1.1 (a chain of CDNs and
/// proxies adds its own; `fetch_faults.rs` has the HTTP/1.1 case) is taken over HTTP/2
/// too. hyper's HTTP/2 limit, 16 KiB of fields, refused 200 of them (about 20 KiB), and
/// these 900 with "connection error detected: unable to maintain the header compression
/// context", after every retry.
#[test]
fn many_response_header_fields_are_taken_over_http2() {
    let blobs = blobs(900, 2, 5000);
    let digests: Vec<String> = blobs.keys().cloned().collect();
    let many = digests[0].clone();
    let server = start(blobs.clone(), move |_, path| {
        if path.ends_with(&many) {
            Plan::ManyFields(900)
        } else {
            Plan::Serve
        }
    });
    let (out, dir) = worker(&server, &digests, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for (digest, data) in &blobs {
        assert_eq!(stored(&dir, digest).as_ref(), Some(data), "{digest}");
    }
    assert_eq!(server.requests_for(&digests[0]).len(), 1);
}

/// A server that answers some requests over HTTP/2 and refuses others with
/// `HTTP_1_1_REQUIRED` (IIS for a request it authenticates only over HTTP/1.1, some
/// proxies) gets them over HTTP/1.1, as curl sends them, and later ones to it go there at
/// once. dist sent each again over HTTP/2 and spent every retry on the same refusal, then
/// exited 2: "stream error received: endpoint requires HTTP/1.1".
#[test]
fn a_request_refused_for_http2_goes_again_over_http1() {
    let blobs = blobs(950, 3, 5000);
    let mut digests: Vec<String> = blobs.keys().cloned().collect();
    digests.sort();
    let refused = digests[1].clone();
    let refused2 = refused.clone();
    let server = start(blobs.clone(), move |_, path| {
        if path.ends_with(&refused2) {
            Plan::Reset(h2::Reason::HTTP_1_1_REQUIRED)
        } else {
            Plan::Serve
        }
    });
    let (out, dir) = worker(&server, &digests, &["-j", "1", "--retries", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for (digest, data) in &blobs {
        assert_eq!(stored(&dir, digest).as_ref(), Some(data), "{digest}");
    }
    assert_eq!(
        server.requests_for(&refused).len(),
        1,
        "asked over HTTP/2 once"
    );
    let http1 = server.seen.http1.lock().unwrap().clone();
    assert_eq!(http1.len(), 2, "{http1:?}");
    assert!(http1[0].ends_with(&refused), "{http1:?}");
    assert!(http1[1].ends_with(&digests[2]), "{http1:?}");
    assert_eq!(server.requests_for(&digests[2]).len(), 0);
}

/// A response head past what dist takes over HTTP/2 (512 KiB of header fields) is refused
/// as the same head over HTTP/1.1 is: at once, saying so, since the same answer comes on
/// every try. h2 resets such a stream itself, and dist read that as a request lost with
/// its connection: it sent it again and spent every retry, then said "stream error
/// detected: unspecific protocol error detected".
#[test]
fn a_response_head_too_large_for_http2_fails_at_once_saying_so() {
    let blobs = blobs(960, 2, 5000);
    let mut digests: Vec<String> = blobs.keys().cloned().collect();
    digests.sort();
    let huge = digests[0].clone();
    let huge2 = huge.clone();
    // 6000 fields of 60-byte values: about 600 KiB as HTTP/2 counts them.
    let server = start(blobs.clone(), move |_, path| {
        if path.ends_with(&huge2) {
            Plan::ManyFields(6000)
        } else {
            Plan::Serve
        }
    });
    let (out, dir) = worker(&server, &digests, &["-j", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("512 KiB"), "{err}");
    assert_eq!(server.requests_for(&huge).len(), 1, "{err}");
    assert_eq!(stored(&dir, &digests[1]).as_ref(), blobs.get(&digests[1]));
}

/// A connection that goes silent under a body (its PING unanswered) fails the body
/// saying so, naming the URL: it read "broken pipe", which names no cause a user can
/// act on and reads like a local fault.
#[test]
fn a_connection_gone_silent_is_told_as_a_keep_alive_timeout() {
    let large = blobs(810, 1, 3 << 20);
    let digest = large.keys().next().unwrap().clone();
    let server = start(large, |_, _| Plan::FreezeAfter(1_500_000));
    let dist = Dist::new();
    let ca = server.ca_file(&dist);
    let locator = server.locator();
    let args = [
        "fetch",
        "--ca-file",
        ca.to_str().unwrap(),
        "--idle-timeout",
        "2s",
        "--retries",
        "0",
        &locator,
        &digest,
    ];
    let out = dist.run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    // For the moment, as a broken connection is: the same in a batch.
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(!err.contains("broken pipe"), "{err}");
    assert!(err.contains("went silent (keep-alive timed out"), "{err}");
    assert!(err.contains("ended with no GOAWAY or reset"), "{err}");
    assert!(err.contains(&format!("/blobs/{digest}")), "{err}");
}

/// A server that sends empty DATA frames without end, and no content, stalls the body as
/// one that sends nothing does: `--idle-timeout` counts content, over HTTP/2 as over
/// HTTP/1.1 (whose framing without content the connection's own count bounds). The `h2`
/// crate drops an empty DATA frame without END_STREAM before hyper sees it: were one to
/// reach the body, each would start the idle timer again and the fetch wait until
/// `--timeout` (status 124), or without one for ever.
#[test]
fn empty_data_frames_without_end_are_no_content() {
    let large = blobs(820, 1, 100_000);
    let digest = large.keys().next().unwrap().clone();
    let server = start(large, |_, _| Plan::EmptyFramesAfter(10_000));
    let dist = Dist::new();
    let ca = server.ca_file(&dist);
    let locator = server.locator();
    let args = [
        "fetch",
        "--ca-file",
        ca.to_str().unwrap(),
        "--idle-timeout",
        "1s",
        "--retries",
        "0",
        "--timeout",
        "30s",
        &locator,
        &digest,
    ];
    let out = dist.run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    // A stalled body is for the moment, as in a batch (`--timeout` would be 124).
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains("body stalled: nothing for 1s (--idle-timeout)"),
        "{err}"
    );
}

/// A host capped at one connection (`-j 1 --range-streams 1`) that refuses a request over
/// HTTP/2 gets it over HTTP/1.1 at once: the clients share the host's cap (each capped
/// it on its own, and a host got up to three connections under a cap of one), and the
/// HTTP/2 connection left idle is closed to make room.
#[test]
fn a_host_capped_at_one_connection_gets_one_across_http_versions() {
    let blobs = blobs(960, 3, 5000);
    let mut digests: Vec<String> = blobs.keys().cloned().collect();
    digests.sort();
    let refused = digests[1].clone();
    let server = start(blobs.clone(), move |_, path| {
        if path.ends_with(&refused) {
            Plan::Reset(h2::Reason::HTTP_1_1_REQUIRED)
        } else {
            Plan::Serve
        }
    });
    // Shared without closing the idle connection, the request over HTTP/1.1 waited for
    // the pool to close it, 90 s on: past `--timeout`, status 124.
    let args = [
        "-j",
        "1",
        "--range-streams",
        "1",
        "--retries",
        "0",
        "--timeout",
        "30s",
    ];
    let (out, dir) = worker(&server, &digests, &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for (digest, data) in &blobs {
        assert_eq!(stored(&dir, digest).as_ref(), Some(data), "{digest}");
    }
    let http1 = server.seen.http1.lock().unwrap().clone();
    assert_eq!(http1.len(), 2, "{http1:?}");
}

/// A client trusting `servers`, capped at one connection in all: a second host gets its
/// connection only once the first host's is closed.
fn one_connection_in_all(
    servers: &[&H2Server],
    dir: &std::path::Path,
) -> dist::transport::Transport {
    let mut opts = dist::transport::TransportOptions::default();
    for (i, server) in servers.iter().enumerate() {
        let path = dir.join(format!("ca{i}.pem"));
        std::fs::write(&path, &server.ca_pem).unwrap();
        opts.ca_files.push(path);
    }
    opts.max_connections = 1;
    dist::transport::Transport::new(opts).unwrap()
}

fn blob_url(server: &H2Server, digest: &str) -> http::Uri {
    format!(
        "https://localhost:{}/v2/team/app/blobs/{digest}",
        server.port
    )
    .parse()
    .unwrap()
}

/// The body at `url`, read whole within a bound far past the moment it takes and far
/// short of the pool's 90 s, after which an idle connection closes anyway.
async fn read_before_the_pool_closes(
    transport: &dist::transport::Transport,
    url: http::Uri,
) -> Vec<u8> {
    let fetch = async {
        let mut reply = transport
            .send(dist::transport::Outgoing::get(url))
            .await
            .unwrap();
        let mut got = Vec::new();
        let body = reply.response.body_mut();
        while let Some(chunk) = transport.next_chunk(body).await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        got
    };
    tokio::time::timeout(Duration::from_secs(30), fetch)
        .await
        .expect("waited for the connection to the other host to close")
}

/// At the cap on connections in all, an HTTP/2 connection idle since its last body is
/// closed to make room for one to another host. Reading a body of more than half the
/// window, the client writes WINDOW_UPDATE frames, which looked like a request on its way:
/// told to close, the connection never was, and the request to the other host waited for
/// the pool to close it, 90 s on.
#[test]
fn an_http2_connection_that_read_a_large_body_makes_room_at_the_cap() {
    let large = blobs(990, 1, 9 << 20);
    let small = blobs(991, 1, 3000);
    let (first, second) = (
        start(large.clone(), |_, _| Plan::Serve),
        start(small.clone(), |_, _| Plan::Serve),
    );
    let dir = tempfile::tempdir().unwrap();
    let transport = one_connection_in_all(&[&first, &second], dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for (server, blobs) in [(&first, &large), (&second, &small)] {
            let (digest, data) = blobs.iter().next().unwrap();
            let got = read_before_the_pool_closes(&transport, blob_url(server, digest)).await;
            assert!(got == *data, "{digest}");
        }
    });
}

/// A request given up before its answer (a timeout, a caller that lets go) leaves its
/// HTTP/2 connection idle: told to close at the cap on connections in all, it closes. Its
/// HEADERS frame, never answered, left the connection looking busy for good, and a
/// request to another host waited for the pool to close it, 90 s on.
#[test]
fn an_http2_connection_whose_request_was_given_up_makes_room_at_the_cap() {
    let silent = blobs(992, 1, 3000);
    let small = blobs(993, 1, 3000);
    let first = start(silent.clone(), |_, _| Plan::Unanswered);
    let second = start(small.clone(), |_, _| Plan::Serve);
    let dir = tempfile::tempdir().unwrap();
    let transport = one_connection_in_all(&[&first, &second], dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (digest, _) = silent.iter().next().unwrap();
        let given_up = transport.send(dist::transport::Outgoing::get(blob_url(&first, digest)));
        let seen = async {
            while first.requests_for(digest).is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            _ = given_up => panic!("an unanswered request answered"),
            _ = seen => {}
        }
        let (digest, data) = small.iter().next().unwrap();
        let got = read_before_the_pool_closes(&transport, blob_url(&second, digest)).await;
        assert!(got == *data, "{digest}");
    });
}
