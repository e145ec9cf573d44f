//! Opening the rest of a body: asking a host for the content from an offset on (with
//! `Range`, or whole when a server codes its ranges) and checking its answer; and, when a
//! mirror fails for good, which host serves the rest instead (the hand-over).
//!
//! Separate from [`Resumable`](super::Resumable), which decides when to ask again and
//! carries the answer on: this is the request for the rest and the choice of its host.

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use super::super::host::Host;
use super::super::range_headers::Extent;
use super::super::range_headers::{content_range_start, unasked_range, whole_range, wrong_range};
use super::super::{coding, Endpoint, RegistryRemote};
use super::{incoming_stream, other_length, other_total, Body, Hop, Rest};
use crate::error::{Error, Result};

/// The content's endpoint and digest, which address it on every host.
pub(crate) type Address = (Endpoint, String);

/// An answer from `host` carrying on the content at `address` (a resume's, a hand-over's,
/// a part's) whose `Docker-Content-Digest` names other content, refused as a first answer
/// is (see [`refuse_announced_other`]), saying none of `unread` (`the rest`, `the part`)
/// was read: the bytes before it were.
///
/// [`refuse_announced_other`]: crate::registry::digest_header::refuse_announced_other
pub(crate) fn refuse_other_at(
    address: Option<&Address>,
    headers: &HeaderMap,
    host: &Host,
    unread: &str,
) -> Result<()> {
    let Some((endpoint, Ok(asked))) = address.map(|(e, d)| (*e, d.parse())) else {
        return Ok(());
    };
    let announced = super::super::digest_header::announced_digest(headers);
    super::super::digest_header::refuse_announced_other(
        announced.as_ref(),
        endpoint,
        &asked,
        host,
        unread,
    )
}

/// How many failures in a row (breaks, and failed requests for the rest) a body from
/// `host` is asked for again after: a mirror with a host after it gets a mirror's one
/// retry, the last host that may serve the content the run's, and a host that may not
/// serve content by digest none of content it would be asked for by digest.
pub(crate) fn resume_budget(
    remote: &RegistryRemote,
    host: usize,
    address: Option<&Address>,
) -> u32 {
    // The rest of content with an address is asked for by digest, which a host that may
    // only resolve (a tag's body came from it) must not be asked: its body goes straight
    // to the next host that may pull, or fails where none is left.
    if !may_pull(remote, host, address) {
        return 0;
    }
    let policy = remote.retry_policy();
    match next_host(remote, host, address) {
        Some(_) => remote.host(host).max_retries(policy),
        None => policy.retries,
    }
}

/// Whether `host` may be asked for the rest of content at `address`: not one that may only
/// resolve (a tag's body came from it), of content asked for by digest.
pub(super) fn may_pull(remote: &RegistryRemote, host: usize, address: Option<&Address>) -> bool {
    address.is_none() || remote.host(host).capabilities.pull
}

/// Whether a body or part of the content at `address` failing for good on `host` moves on
/// to another host (see [`next_host`]).
pub(crate) fn hands_over(remote: &RegistryRemote, host: usize, address: Option<&Address>) -> bool {
    next_host(remote, host, address).is_some()
}

/// The host a failing mirror hands the content over to: the next after `host` that may
/// serve content by digest. A host that may not (a tag's body came from it) hands it to
/// the first that may, wherever it stands. `None` on the registry itself, and for content
/// without an address.
fn next_host(remote: &RegistryRemote, host: usize, address: Option<&Address>) -> Option<usize> {
    let hosts = &remote.inner.hosts;
    address?;
    if !hosts[host].capabilities.pull {
        return (0..hosts.len()).find(|&i| hosts[i].serves(false));
    }
    hosts[host]
        .mirror
        .then(|| (host + 1..hosts.len()).find(|&i| hosts[i].serves(false)))
        .flatten()
}

/// The content opened from `offset` on by the next host that will serve it.
pub(super) struct Opened {
    pub(super) host: usize,
    pub(super) url: Uri,
    pub(super) answer: Answer,
    /// The retries its request took, which count against its body's resumes.
    pub(super) spent: u32,
    /// How the hosts before it failed.
    pub(super) earlier: Vec<String>,
}

/// An answer to a request for the content from an offset on, as [`open_at`] took it.
pub(super) struct Answer {
    pub(super) body: Body,
    /// How many of its bytes to drop: those at hand, when it is the whole content again.
    pub(super) skip: u64,
    /// The HTTP version it answered in.
    pub(super) version: http::Version,
    pub(super) extent: Extent,
    /// Where a redirect led the request, when one did.
    pub(super) hop: Option<Hop>,
}

/// Asks the hosts after the mirror `host`, in turn, for the `rest` of the content, after
/// `host` failed with `e`, and the hosts before it as `earlier` says. `None` when one says
/// nothing lies past its offset (416); the last failure when none serves it, `e` when no
/// host comes after, either with how the hosts before it failed.
pub(super) async fn open_on_next_host(
    remote: &RegistryRemote,
    mut host: usize,
    address: Option<&Address>,
    headers: &HeaderMap,
    rest: Rest<'_>,
    mut e: Error,
    mut earlier: Vec<String>,
) -> Result<Option<Opened>> {
    loop {
        let (Some(next), Some((endpoint, digest))) = (next_host(remote, host, address), address)
        else {
            return Err(if earlier.is_empty() {
                e
            } else {
                e.with_earlier(earlier)
            });
        };
        let from = &remote.host(host).name;
        tracing::debug!(mirror = %from, offset = rest.offset, error = %e, "mirror failed mid-body; the next host serves the rest");
        host = next;
        earlier.extend(super::super::faults(std::slice::from_ref(&e)));
        // A host its URL cannot be formed for fails as one that answered badly: with a
        // `?` here, the error lost how the mirrors before it failed.
        let url = match remote.url(host, *endpoint, digest) {
            Ok(url) => url,
            Err(bad) => {
                e = bad;
                continue;
            }
        };
        let mut spent = 0;
        let retries = (&mut spent, resume_budget(remote, host, address));
        match open_at(remote, host, &url, headers, rest, true, retries).await {
            Ok(answer) => {
                return Ok(Some(Opened {
                    host,
                    url,
                    answer,
                    spent,
                    earlier,
                }))
            }
            // The first answer of this host, short of a size another declared: the two
            // contradict each other, and the digest cannot say which is right before the
            // content is whole. Taken for the content's end, it failed as content that
            // ended short, naming the host that declared the size, not the one that
            // answered.
            Err(again) if again.status() == Some(416) => {
                match rest.settled().await.refused(remote, host) {
                    Some(contradiction) => e = contradiction.with_url(&url),
                    None => return Ok(None),
                }
            }
            Err(again) => e = again,
        }
    }
}

/// Asks for the `rest` of the content at `url`, with `Range` if `ranged`, else whole.
/// The answer's bytes to drop are none for a `206` that starts at the rest's offset; the
/// offset when the server ignored `Range` (or was not asked for a range) and sends the
/// whole content again. `retries.0` counts the failures in a row so far, this request's
/// included, up to `retries.1`, the body's [`resume_budget`] on `host`.
///
/// A server may code this answer although the first was plain (a CDN node that
/// compresses). A coded `206` is a range of the coded bytes, which can never continue the
/// content, and spliced in it failed verification as corruption: the whole content is
/// asked for instead, as from a server that ignores `Range`. A coded `200` (or `206` of
/// all the coded bytes) is decoded, and `offset` bytes of the content dropped.
///
/// A plain `206` whose `Content-Range` gives the content another size than the rest's
/// (`bytes 500-999/2000` of content of 1000 bytes) is refused as content that is not what
/// was asked for, a [`SizeMismatch`](crate::error::ErrorKind::SizeMismatch): the server
/// contradicts what it (or the size given) said of the content before. Spliced in, its
/// bytes were caught, if at all, only by the digest, after the whole transfer.
pub(super) async fn open_at(
    remote: &RegistryRemote,
    host: usize,
    url: &Uri,
    headers: &HeaderMap,
    rest: Rest<'_>,
    ranged: bool,
    retries: (&mut u32, u32),
) -> Result<Answer> {
    let offset = rest.offset;
    let mut headers = headers.clone();
    if ranged {
        let range = format!("bytes={offset}-");
        headers.insert(
            http::header::RANGE,
            HeaderValue::from_str(&range).expect("ascii"),
        );
    }
    loop {
        let reply = remote
            .request_counted(
                host,
                Method::GET,
                url.clone(),
                &headers,
                (&mut *retries.0, retries.1),
            )
            .await?;
        let h = reply.response.headers();
        refuse_other_at(rest.address, h, remote.host(host), "the rest")
            .map_err(|e| e.with_url(url))?;
        let version = reply.response.version();
        let codings = match rest.as_sent && coding::content_codings_only(h) {
            true => Vec::new(),
            false => coding::codings(h).map_err(|e| e.with_url(url))?,
        };
        let ranged = headers.contains_key(http::header::RANGE);
        let status = reply.response.status();
        // All of the content (or of its coded bytes) under a range that says so is a part
        // in name only: as a `200` that ignored ours.
        let part = status == StatusCode::PARTIAL_CONTENT && whole_range(h).is_none();
        let plain = codings.is_empty();
        // Coded, its length is the coded bytes', and its total that of a range of them.
        let extent = match plain {
            true => Extent::of_plain(status, h),
            false => Extent::Unsaid,
        };
        let hop = Hop::of(&reply, url);
        let answer = |body, skip| Answer {
            body,
            skip,
            version,
            extent,
            hop: hop.clone(),
        };
        if plain {
            let who = remote.host(host);
            let asked = headers
                .get(http::header::RANGE)
                .and_then(|v| v.to_str().ok());
            let asked = asked.unwrap_or("the whole content");
            let given = rest.now().given;
            match status {
                StatusCode::PARTIAL_CONTENT => other_total(asked, rest.size, given, who, h),
                _ => other_length(asked, rest.size, given, who, h),
            }
            .map_err(|e| e.with_url(url))?;
        }
        match (part, plain) {
            (false, true) => return Ok(answer(Body::Plain(reply.response.into_body()), offset)),
            (false, false) => {
                let transport = remote.host(host).transport.clone();
                let at_close = coding::ends_at_close(version, h);
                let (parts, incoming) = reply.response.into_parts();
                let body = incoming_stream(transport, incoming);
                let body = coding::AsSentCheck::wrap(rest.check_as_sent, body, &parts.headers);
                let body = Body::Decoded(coding::decode(body, &codings, 0, at_close));
                return Ok(answer(body, offset));
            }
            (true, _) if !ranged => return Err(unasked_range(h).with_url(url)),
            (true, false) => {
                tracing::debug!(url = %crate::transport::redact(url), offset, "a resume was answered with a coded range; asking for the whole content");
                headers.remove(http::header::RANGE);
            }
            (true, true) if content_range_start(h) != Some(offset) => {
                return Err(wrong_range(offset, h).with_url(url));
            }
            (true, true) => return Ok(answer(Body::Plain(reply.response.into_body()), 0)),
        }
    }
}
