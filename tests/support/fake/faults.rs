//! Scripted, persistent and random faults, and how each one is put on the wire.
//!
//! Faults hyper would refuse to produce (a `Content-Length` that lies, a body cut short, a reset)
//! are written as raw bytes through [`Conn::take_over`]; the slow ones are streamed bodies.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::header::{HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, LOCATION, RETRY_AFTER};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::auth::unauthorized;
use super::routes::Prepared;
use super::server::{Body, Conn, End};

/// Something that goes wrong with one response.
///
/// Offsets and lengths count bytes of the body this response carries (for a 206, of the range).
/// Body faults (those reshaping a body: `DropAfter` to `CodedWholeRange`) are consumed by GETs only;
/// a HEAD meets them and is served normally. Status faults are consumed by any method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This status with an empty body (500, 502, 503, 504, 408, ...).
    Status(u16),
    /// This status with `Retry-After` set to the string: seconds or an HTTP-date.
    StatusWithRetryAfter(u16, String),
    /// This status with `Retry-After` and `Date` set to the two strings: a server whose
    /// clock disagrees with the client's dates both by its own clock.
    StatusWithRetryAfterAndDate(u16, String, String),
    /// 429 as Docker Hub answers a client whose pull quota is spent: its OCI error
    /// `TOOMANYREQUESTS` with this message, no `Retry-After`, and, when given, the
    /// `ratelimit-remaining` it reports beside `ratelimit-limit: 100;w=21600`.
    Quota {
        message: &'static str,
        remaining: Option<&'static str>,
    },
    /// This status with a body of this content type: a proxy's or CDN's own error page.
    Page {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Headers with the full `Content-Length`, the first K body bytes, then a TCP reset. The
    /// client receives exactly K bytes as long as it keeps reading (the reset waits briefly for
    /// big writes to drain); it then sees `ConnectionReset`.
    DropAfter(usize),
    /// Headers with the full `Content-Length`, the first K body bytes, then a clean close (FIN).
    Truncate(usize),
    /// Headers without `Content-Length` (a body that runs to the connection's close, as
    /// HTTP/1.0 frames it), the first K body bytes, then a clean close (FIN): a body cut
    /// short that only its content can tell from a whole one.
    Unframed(usize),
    /// The request read and no answer at all, then a clean close (FIN): what a client sees
    /// when it sends on a kept-alive connection the server is closing.
    CloseUnanswered,
    /// Bytes that are no HTTP response (another service on the port), then a close.
    NotHttp,
    /// The body with the byte at this offset inverted; headers (digest included) unchanged.
    CorruptByte(usize),
    /// `Content-Length` off by this delta, then the real body and a clean close. Written raw: with
    /// a negative delta the surplus bytes really are on the wire after the declared end.
    WrongContentLength(i64),
    /// The body followed by N extra zero bytes, with a `Content-Length` that counts them.
    LongerBody(usize),
    /// Headers and the first half of the body, a pause this long, then the rest.
    Stall(Duration),
    /// Headers and the first N bytes of the body, a pause this long, then the rest.
    StallAfter(usize, Duration),
    /// Headers and the first N bytes of the body, then the rest once the test opens the
    /// [`Gate`]: a download held for as long as the test needs, with no pause to guess.
    HeldAfter(usize, Gate),
    /// The body in pieces of `chunk` bytes with `delay` between them.
    SlowBody { chunk: usize, delay: Duration },
    /// The body as [`Fault::SlowBody`] sends it, without `Content-Length` (chunked): a
    /// slow answer that declares no size (a proxy that streams what it relays).
    SlowChunked { chunk: usize, delay: Duration },
    /// The body as [`Fault::SlowBody`] sends it, its first `upto` bytes only, then the
    /// connection aborted: a slow link that drops.
    SlowBodyDrop {
        chunk: usize,
        delay: Duration,
        upto: usize,
    },
    /// The body as [`Fault::SlowBodyDrop`] sends it, without `Content-Length` (chunked): a
    /// slow answer that declares no size, and drops.
    SlowChunkedDrop {
        chunk: usize,
        delay: Duration,
        upto: usize,
    },
    /// The body no faster than `bytes_per_sec`, its first byte after `first_byte`: a link
    /// whose every connection is capped, with a round trip. Paced against deadlines, so the
    /// rate holds over the whole body with no initial burst (unlike nginx's `limit_rate`,
    /// which lets one second's worth through at once), and a piece sent over a piece's time
    /// late puts the deadlines after it back, so a server held up never bursts to catch up.
    Paced {
        bytes_per_sec: u64,
        first_byte: Duration,
    },
    /// The body's first `burst` bytes at once, then the rest as [`Fault::Paced`] sends it
    /// (no pause before its first byte): a capped link whose server bursts first (a cache's
    /// first bytes, a server catching up after a stall).
    BurstThenPaced { burst: usize, bytes_per_sec: u64 },
    /// The normal response, its head sent only after this long: a server slow to answer
    /// at all (a cache fetching from its upstream), which the client's idle timeout ends.
    SlowHead(Duration),
    /// The response this fault makes, its head sent only once the test opens the
    /// [`Gate`]: a request the server holds for as long as the test needs, then answers,
    /// with no timeout or pause to guess on a clock that may be paused.
    HeldHead(Gate, Box<Fault>),
    /// 200 with the whole blob even when a `Range` was asked for.
    IgnoreRange,
    /// A ranged request answered from its start to the end of the blob, with a
    /// `Content-Range` saying so: a server that ignores where a range ends.
    RangeToEnd,
    /// A ranged request answered with at most this many bytes from where it starts (and
    /// none past where it ends), under
    /// a `Content-Range` whose total is `*`: a server that sends what it has of a blob
    /// whose whole size it does not know (a cache still fetching it from its upstream). A
    /// request without `Range` is answered so from the first byte, as a broken cache that
    /// serves a partial copy it holds does.
    ShortRange(usize),
    /// The answer [`Fault::ShortRange`] makes, then sent as this fault sends a body
    /// (`DropAfter` counting bytes of the range): a cache that does not know the blob's
    /// size, and drops.
    ShortRangeAnd(usize, Box<Fault>),
    /// A `206` with the whole blob under `Content-Range: bytes 0-(N-1)/N`, whatever range
    /// was asked for, or none: a server that sends its whole content as a range.
    WholeRange,
    /// A ranged request answered with the range asked for, under a `Content-Range` whose
    /// total is this: a server that contradicts the size the content is known to have.
    RangeTotal(u64),
    /// The body sent with this `Content-Encoding`, whatever the request accepted, as a
    /// proxy that compresses on its own would: `gzip` and `deflate` really code it, any
    /// other name goes over the body unchanged.
    Coded(&'static str),
    /// The whole blob, 200, even when a `Range` was asked for, sent with this
    /// `Content-Encoding` as [`Fault::Coded`] sends it: a CDN node that compresses and
    /// does not serve ranges of what it compresses.
    CodedWhole(&'static str),
    /// The body coded as [`Fault::Coded`] codes it, then sent as this fault sends a body
    /// (`DropAfter` counting coded bytes): a proxy that compresses, and drops.
    CodedAnd(&'static str, Box<Fault>),
    /// The response the fault makes, its bytes unchanged under this `Content-Encoding`:
    /// content stored compressed and labelled so (an S3 object uploaded with that
    /// metadata), and sent as the fault sends a body.
    Labelled(&'static str, Box<Fault>),
    /// A `206` with the whole blob sent with this `Content-Encoding`, under a
    /// `Content-Range` of all of its coded bytes, whatever range was asked for, or none: a
    /// server that compresses and sends its whole answer as a range.
    CodedWholeRange(&'static str),
    /// This status with `Location` (e.g. 307 to a [`Recorder`](super::Recorder)).
    Redirect { status: u16, location: String },
    /// 401 with the auth mode's challenge, whatever the credentials (none in [`Auth::None`]).
    ///
    /// [`Auth::None`]: super::Auth::None
    Unauthorized,
    /// 401 with this `WWW-Authenticate` value, whatever the credentials: a challenge of the
    /// server's own making (a hostile realm or scope).
    Challenge(String),
    /// The normal response with this header set to this value (replacing the route's own,
    /// `Content-Length` included), for HEAD and GET alike: a `Docker-Content-Digest` that is
    /// no digest, say, or a HEAD answer's `Content-Length: 0`.
    Header(&'static str, String),
    /// The response the fault (the normal one for `None`) makes, without this header: a
    /// registry that announces no `Docker-Content-Digest` for a tag, say.
    Without(&'static str, Option<Box<Fault>>),
    /// The normal response with this many extra header fields (`x-filler-N: N`), as a
    /// chain of CDNs and proxies adding theirs may send.
    ManyHeaders(usize),
}

impl Fault {
    fn needs_body(&self) -> bool {
        if let Fault::Without(_, Some(fault))
        | Fault::HeldHead(_, fault)
        | Fault::Labelled(_, fault) = self
        {
            return fault.needs_body();
        }
        matches!(
            self,
            Fault::DropAfter(_)
                | Fault::Truncate(_)
                | Fault::Unframed(_)
                | Fault::CorruptByte(_)
                | Fault::WrongContentLength(_)
                | Fault::LongerBody(_)
                | Fault::Stall(_)
                | Fault::StallAfter(..)
                | Fault::HeldAfter(..)
                | Fault::SlowBody { .. }
                | Fault::SlowBodyDrop { .. }
                | Fault::SlowChunkedDrop { .. }
                | Fault::SlowChunked { .. }
                | Fault::Paced { .. }
                | Fault::BurstThenPaced { .. }
                | Fault::IgnoreRange
                | Fault::RangeToEnd
                | Fault::ShortRange(_)
                | Fault::ShortRangeAnd(..)
                | Fault::WholeRange
                | Fault::RangeTotal(_)
                | Fault::Coded(_)
                | Fault::CodedWhole(_)
                | Fault::CodedWholeRange(_)
                | Fault::CodedAnd(..)
        )
    }
}

/// Whether a fault key addresses `path` (percent-decoded): the path ends with the key at a
/// segment boundary, so `sha256:ab..`, `blobs/sha256:ab..`, `manifests/latest` and `/token` all
/// work, while `latest` does not match `.../manifests/notlatest`.
pub fn key_matches(path: &str, key: &str) -> bool {
    match path.strip_suffix(key) {
        Some(rest) => rest.is_empty() || rest.ends_with('/') || key.starts_with('/'),
        None => false,
    }
}

/// Seeded random faults for blob GETs, for soak tests. Each blob GET (answered 200 or 206) draws
/// one number from a generator seeded with `seed`, whether or not a scripted fault wins, so the
/// sequence of faults depends only on the seed and the order of blob GETs. The probabilities are
/// of disjoint outcomes and should sum to at most 1.
///
/// Corruption strikes a path at most once: the soak models transient corruption, which one
/// more fetch repairs. Content corrupted every time is reported after its second attempt,
/// which `fetch_faults.rs` tests on its own; left to chance here, two corruptions of the
/// same blob in a row (about one run in twelve at 2%) would fail the batch by design.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RandomFaults {
    pub seed: u64,
    /// `Status(503)`.
    pub p_503: f64,
    /// `StatusWithRetryAfter(429, "1")`.
    pub p_429_retry_after_1s: f64,
    /// `DropAfter(half the body)`.
    pub p_drop_mid_body: f64,
    /// `CorruptByte(half the body)`.
    pub p_corrupt: f64,
}

/// How many random faults were injected since [`RandomFaults`] were set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RandomFaultCounts {
    /// Blob GETs that drew a number.
    pub draws: usize,
    pub status_503: usize,
    pub status_429: usize,
    pub drop_mid_body: usize,
    pub corrupt: usize,
}

/// A deterministic generator (SplitMix64): small, and good enough to pick faults.
struct Dice {
    config: RandomFaults,
    state: u64,
}

impl Dice {
    fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// All the faults a registry has been told to inject.
#[derive(Default)]
pub struct FaultBook {
    /// Per key, in the order keys were first used: one-shot faults, FIFO.
    queued: Vec<(String, VecDeque<Fault>)>,
    /// Per key: faults every request gets when its queue is empty.
    every: Vec<(String, Fault)>,
    random: Option<Dice>,
    counts: RandomFaultCounts,
    /// Paths random corruption already struck.
    corrupted: std::collections::HashSet<String>,
}

impl FaultBook {
    pub fn push(&mut self, key: &str, fault: Fault) {
        match self.queued.iter_mut().find(|(k, _)| k == key) {
            Some((_, queue)) => queue.push_back(fault),
            None => self.queued.push((key.to_string(), VecDeque::from([fault]))),
        }
    }

    pub fn set_every(&mut self, key: &str, fault: Fault) {
        self.every.retain(|(k, _)| k != key);
        self.every.push((key.to_string(), fault));
    }

    pub fn set_random(&mut self, config: RandomFaults) {
        self.random = Some(Dice {
            config,
            state: config.seed,
        });
        self.counts = RandomFaultCounts::default();
        self.corrupted.clear();
    }

    pub fn random_counts(&self) -> RandomFaultCounts {
        self.counts
    }

    pub fn clear(&mut self) {
        *self = FaultBook::default();
    }

    /// The fault for a request to `path`, if any: queued first, then persistent, then random.
    /// `blob_len` is the body length when the request is a successful blob GET.
    pub fn next(&mut self, path: &str, method: &Method, blob_len: Option<usize>) -> Option<Fault> {
        let random = blob_len.and_then(|len| self.roll(len)).filter(|fault| {
            !matches!(fault, Fault::CorruptByte(_)) || self.corrupted.insert(path.to_string())
        });
        let usable = |fault: &Fault| *method == Method::GET || !fault.needs_body();
        for (key, queue) in &mut self.queued {
            if key_matches(path, key) && queue.front().is_some_and(usable) {
                return queue.pop_front();
            }
        }
        let every = self
            .every
            .iter()
            .find(|(key, f)| key_matches(path, key) && usable(f));
        if let Some((_, fault)) = every {
            return Some(fault.clone());
        }
        let fault = random?;
        let counter = match fault {
            Fault::Status(_) => &mut self.counts.status_503,
            Fault::StatusWithRetryAfter(..) => &mut self.counts.status_429,
            Fault::DropAfter(_) => &mut self.counts.drop_mid_body,
            _ => &mut self.counts.corrupt,
        };
        *counter += 1;
        Some(fault)
    }

    fn roll(&mut self, len: usize) -> Option<Fault> {
        let dice = self.random.as_mut()?;
        self.counts.draws += 1;
        let c = dice.config;
        let mut x = dice.next_unit();
        let outcomes = [
            (c.p_503, Fault::Status(503)),
            (
                c.p_429_retry_after_1s,
                Fault::StatusWithRetryAfter(429, "1".into()),
            ),
            (c.p_drop_mid_body, Fault::DropAfter(len / 2)),
            (c.p_corrupt, Fault::CorruptByte(len / 2)),
        ];
        for (p, fault) in outcomes {
            if x < p {
                return Some(fault);
            }
            x -= p;
        }
        None
    }
}

/// The response `fault` makes of `prepared`. `challenge` is what a 401 would carry.
pub fn apply(
    fault: &Fault,
    mut prepared: Prepared,
    challenge: Option<HeaderValue>,
    conn: &Conn,
) -> Response<Body> {
    let len = prepared.body.len();
    match fault {
        Fault::Status(code) => bare(*code).into_response(),
        Fault::StatusWithRetryAfter(code, after) => {
            bare(*code).header(RETRY_AFTER, after).into_response()
        }
        Fault::StatusWithRetryAfterAndDate(code, after, date) => bare(*code)
            .header(RETRY_AFTER, after)
            .header(http::header::DATE, date)
            .into_response(),
        Fault::Quota { message, remaining } => {
            let body = serde_json::json!({
                "errors": [{"code": "TOOMANYREQUESTS", "message": message}]
            });
            let typed = Prepared::typed(
                StatusCode::TOO_MANY_REQUESTS,
                "application/json",
                body.to_string(),
            );
            let mut response = typed.into_response();
            if let Some(remaining) = remaining {
                let headers = response.headers_mut();
                headers.insert("ratelimit-limit", HeaderValue::from_static("100;w=21600"));
                headers.insert("ratelimit-remaining", HeaderValue::from_static(remaining));
            }
            response
        }
        Fault::Page {
            status,
            content_type,
            body,
        } => {
            let status = StatusCode::from_u16(*status).expect("fault status code");
            Prepared::typed(status, content_type, body.clone()).into_response()
        }
        Fault::Redirect { status, location } => {
            bare(*status).header(LOCATION, location).into_response()
        }
        Fault::Unauthorized => unauthorized(challenge),
        Fault::Challenge(value) => unauthorized(Some(
            HeaderValue::from_str(value).expect("a challenge fit for a header"),
        )),
        Fault::DropAfter(k) => {
            let raw = raw_response(&prepared, len, &prepared.body[..len.min(*k)]);
            conn.take_over(prepared.status, raw, End::Reset)
        }
        Fault::Truncate(k) => {
            let raw = raw_response(&prepared, len, &prepared.body[..len.min(*k)]);
            conn.take_over(prepared.status, raw, End::Fin)
        }
        Fault::Unframed(k) => {
            let mut raw = BytesMut::from(&raw_head(&prepared)[..]);
            raw.extend_from_slice(b"\r\n");
            raw.extend_from_slice(&prepared.body[..len.min(*k)]);
            conn.take_over(prepared.status, raw.freeze(), End::Fin)
        }
        Fault::CloseUnanswered => conn.take_over(prepared.status, Bytes::new(), End::Fin),
        Fault::NotHttp => conn.take_over(
            prepared.status,
            Bytes::from_static(b"SSH-2.0-OpenSSH_9.2\r\n"),
            End::Fin,
        ),
        Fault::WrongContentLength(delta) => {
            let declared = (len as i64).saturating_add(*delta).max(0) as usize;
            let raw = raw_response(&prepared, declared, &prepared.body);
            conn.take_over(prepared.status, raw, End::Fin)
        }
        Fault::CorruptByte(offset) => {
            if *offset < len {
                let mut body = BytesMut::from(&prepared.body[..]);
                body[*offset] ^= 0xff;
                prepared.body = body.freeze();
            }
            prepared.into_response()
        }
        Fault::LongerBody(extra) => {
            let mut body = BytesMut::from(&prepared.body[..]);
            body.resize(len + extra, 0);
            prepared.body = body.freeze();
            prepared.into_response()
        }
        Fault::Stall(pause) => stalled(prepared, len / 2, *pause),
        Fault::StallAfter(at, pause) => stalled(prepared, (*at).min(len), *pause),
        Fault::HeldAfter(at, gate) => held(prepared, (*at).min(len), gate.clone()),
        Fault::SlowBody { chunk, delay } => {
            let plan = slow_plan(&prepared.body, len, *chunk, *delay);
            streamed(prepared, plan)
        }
        Fault::SlowChunked { chunk, delay } => {
            let plan = slow_plan(&prepared.body, len, *chunk, *delay);
            let mut response = streamed(prepared, plan);
            response.headers_mut().remove(CONTENT_LENGTH);
            response
        }
        Fault::SlowBodyDrop { chunk, delay, upto } => {
            let plan = slow_plan(&prepared.body, (*upto).min(len), *chunk, *delay);
            streamed_then_abort(prepared, plan)
        }
        Fault::SlowChunkedDrop { chunk, delay, upto } => {
            let plan = slow_plan(&prepared.body, (*upto).min(len), *chunk, *delay);
            let mut response = streamed_then_abort(prepared, plan);
            response.headers_mut().remove(CONTENT_LENGTH);
            response
        }
        Fault::Paced {
            bytes_per_sec,
            first_byte,
        } => paced(prepared, *bytes_per_sec, *first_byte, 0),
        Fault::BurstThenPaced {
            burst,
            bytes_per_sec,
        } => paced(prepared, *bytes_per_sec, Duration::ZERO, *burst),
        Fault::IgnoreRange | Fault::RangeToEnd | Fault::ShortRange(_) | Fault::WholeRange => {
            prepared.into_response()
        }
        Fault::RangeTotal(total) => {
            let range = prepared.headers.get(http::header::CONTENT_RANGE);
            let range = range.and_then(|v| v.to_str().ok()?.rsplit_once('/'));
            if let Some((range, _)) = range {
                let value = HeaderValue::from_str(&format!("{range}/{total}")).expect("ascii");
                prepared.headers.insert(http::header::CONTENT_RANGE, value);
            }
            prepared.into_response()
        }
        Fault::SlowHead(delay) => {
            conn.delay_head(*delay);
            prepared.into_response()
        }
        Fault::HeldHead(gate, fault) => {
            conn.hold_head(gate.clone());
            apply(fault, prepared, challenge, conn)
        }
        Fault::Header(name, value) => {
            // Set on the response itself, so that it may replace `Content-Length` too.
            let mut response = prepared.into_response();
            let value = HeaderValue::from_str(value).expect("header value");
            response.headers_mut().insert(*name, value);
            response
        }
        Fault::Without(name, fault) => {
            prepared.headers.remove(*name);
            match fault {
                Some(fault) => apply(fault, prepared, challenge, conn),
                None => prepared.into_response(),
            }
        }
        Fault::ManyHeaders(n) => {
            let mut response = prepared.into_response();
            for i in 0..*n {
                let name = http::header::HeaderName::try_from(format!("x-filler-{i}"))
                    .expect("a header name");
                response.headers_mut().insert(name, HeaderValue::from(i));
            }
            response
        }
        Fault::Coded(name) | Fault::CodedWhole(name) => {
            prepared.body = code(name, &prepared.body);
            prepared.header(CONTENT_ENCODING, name).into_response()
        }
        Fault::ShortRangeAnd(_, fault) => apply(fault, prepared, challenge, conn),
        Fault::Labelled(name, fault) => apply(
            fault,
            prepared.header(CONTENT_ENCODING, name),
            challenge,
            conn,
        ),
        Fault::CodedAnd(name, fault) => {
            prepared.body = code(name, &prepared.body);
            apply(
                fault,
                prepared.header(CONTENT_ENCODING, name),
                challenge,
                conn,
            )
        }
        Fault::CodedWholeRange(name) => {
            prepared.body = code(name, &prepared.body);
            let len = prepared.body.len();
            let range = format!("bytes 0-{}/{len}", len.saturating_sub(1));
            prepared
                .header(CONTENT_ENCODING, name)
                .header(http::header::CONTENT_RANGE, &range)
                .into_response()
        }
    }
}

/// `body` in the content coding `name` (unchanged for a name it does not know).
fn code(name: &str, body: &[u8]) -> Bytes {
    use std::io::Write;
    let level = flate2::Compression::fast();
    let coded = match name {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(body).and_then(|_| e.finish())
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(body).and_then(|_| e.finish())
        }
        _ => Ok(body.to_vec()),
    };
    coded.expect("coding into memory").into()
}

/// `prepared` with piece `i` of its body sent no earlier than `first_byte + offset / rate`
/// after now.
fn paced(
    prepared: Prepared,
    bytes_per_sec: u64,
    first_byte: Duration,
    burst: usize,
) -> Response<Body> {
    const PIECE: usize = 16 << 10;
    let first = tokio::time::Instant::now() + first_byte;
    let body = prepared.body.clone();
    let burst = burst.min(body.len());
    let rate = bytes_per_sec.max(1) as f64;
    // Each piece is due a piece's time after the one before it was due, or at once if that
    // time has passed: deadlines fixed from the start made a server task held up on a
    // loaded machine send every overdue piece at once, which a client measures as a fast
    // link (a 16 MiB/s link judged fast enough not to split). A timer's usual lateness,
    // well under a piece's time, still keeps the rate.
    // The burst goes first, as one piece; the pacing starts after it.
    let head = (burst > 0).then(|| Ok::<_, io::Error>(Frame::data(body.slice(..burst))));
    let frames = futures::stream::unfold((burst, first), move |(at, due)| {
        let body = body.clone();
        async move {
            if at >= body.len() {
                return None;
            }
            tokio::time::sleep_until(due).await;
            let piece = body.slice(at..body.len().min(at + PIECE));
            let took = Duration::from_secs_f64(piece.len() as f64 / rate);
            let next = (due + took).max(tokio::time::Instant::now());
            Some((Ok::<_, io::Error>(Frame::data(piece)), (at + PIECE, next)))
        }
    });
    let frames = futures::stream::iter(head).chain(frames);
    prepared.respond_with(StreamBody::new(frames).boxed_unsync())
}

/// A status with an empty body.
fn bare(code: u16) -> Prepared {
    let status = StatusCode::from_u16(code).expect("fault status code");
    Prepared::new(status, Bytes::new())
}

/// `prepared`'s status line and headers with `Content-Length: declared`, then `body`.
fn raw_response(prepared: &Prepared, declared: usize, body: &[u8]) -> Bytes {
    let mut raw = BytesMut::from(&raw_head(prepared)[..]);
    raw.extend_from_slice(format!("content-length: {declared}\r\n\r\n").as_bytes());
    raw.extend_from_slice(body);
    raw.freeze()
}

/// `prepared`'s status line and headers but `Content-Length`, each line ended, without
/// the blank line that ends them.
fn raw_head(prepared: &Prepared) -> Bytes {
    let status = prepared.status;
    let mut raw = BytesMut::new();
    let reason = status.canonical_reason().unwrap_or("");
    raw.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", status.as_str()).as_bytes());
    for (name, value) in prepared
        .headers
        .iter()
        .filter(|(n, _)| *n != CONTENT_LENGTH)
    {
        raw.extend_from_slice(name.as_str().as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.freeze()
}

/// `prepared` with the first `at` bytes of its body sent at once and the rest after `pause`.
fn stalled(prepared: Prepared, at: usize, pause: Duration) -> Response<Body> {
    let body = &prepared.body;
    let plan = vec![
        (Duration::ZERO, body.slice(..at)),
        (pause, body.slice(at..)),
    ];
    streamed(prepared, plan)
}

/// `prepared` with the first `at` bytes of its body, and the rest once `gate` opens.
fn held(prepared: Prepared, at: usize, gate: Gate) -> Response<Body> {
    let body = prepared.body.clone();
    let first = futures::stream::once(std::future::ready(Ok(Frame::data(body.slice(..at)))));
    let rest = futures::stream::once(async move {
        gate.opened().await;
        Ok::<_, io::Error>(Frame::data(body.slice(at..)))
    });
    prepared.respond_with(StreamBody::new(first.chain(rest)).boxed_unsync())
}

/// What a [`Fault::HeldAfter`] body waits for: opened once, by the test.
#[derive(Clone, Debug, Default)]
pub struct Gate(std::sync::Arc<(std::sync::atomic::AtomicBool, tokio::sync::Notify)>);

impl Gate {
    /// Lets every body held at it go on, now and from now on.
    pub fn open(&self) {
        self.0 .0.store(true, std::sync::atomic::Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }

    pub(super) async fn opened(&self) {
        loop {
            let notified = self.0 .1.notified();
            if self.0 .0.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Gates are told apart by identity, as a fault's other fields by value.
impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

/// The first `len` bytes of `body` in pieces of `chunk` bytes, `delay` before each but
/// the first.
fn slow_plan(body: &Bytes, len: usize, chunk: usize, delay: Duration) -> Vec<(Duration, Bytes)> {
    let chunk = chunk.max(1);
    (0..len)
        .step_by(chunk)
        .map(|at| {
            let pause = if at == 0 { Duration::ZERO } else { delay };
            (pause, body.slice(at..len.min(at + chunk)))
        })
        .collect()
}

/// `prepared` with its body sent as the pieces of `plan`, each after its pause.
fn streamed(prepared: Prepared, plan: Vec<(Duration, Bytes)>) -> Response<Body> {
    prepared.respond_with(StreamBody::new(paced_frames(plan)).boxed_unsync())
}

/// [`streamed`], then the connection aborted: the body's stream fails, and the server
/// drops the connection short of its `Content-Length`.
fn streamed_then_abort(prepared: Prepared, plan: Vec<(Duration, Bytes)>) -> Response<Body> {
    let abort = futures::stream::once(async { Err(io::Error::other("aborted by the fault")) });
    let frames = paced_frames(plan).chain(abort);
    prepared.respond_with(StreamBody::new(frames).boxed_unsync())
}

/// The pieces of `plan` as body frames, each after its pause.
fn paced_frames(
    plan: Vec<(Duration, Bytes)>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, io::Error>> {
    futures::stream::iter(plan).then(|(pause, piece)| async move {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Ok::<_, io::Error>(Frame::data(piece))
    })
}
