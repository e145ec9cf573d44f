//! One host's answer to a `GET` for content, read into a [`Download`]: its size,
//! `Content-Range` and codings checked against what was asked, its media type and digest
//! taken, and its body wrapped to resume, decode and split into ranges.
//!
//! Separate from the registry remote's choice of hosts (`on_hosts`, the mirrors' hand-over):
//! this is what one request to one host becomes.

use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderValue, Method, Response, Uri};

use super::{announced_for, content_range_start, refuse_announced_other};
use super::{
    body, coding, content_length, default_manifest_accept, range_headers, request_headers,
};
use super::{Endpoint, RegistryRemote, Resumable, Serving};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{ByteStream, Download, Meta, OnTrust, Prefix, MAX_MANIFEST_SIZE};
use crate::hints::Hints;
use crate::media;
use crate::ranged::{Adaptive, Source};
use crate::reference::Object;
use crate::transport::{self, ResponseBody};

/// What one fetch asked for, and of which host: what each step reading its answer goes by.
struct Asked<'a> {
    host: usize,
    endpoint: Endpoint,
    object: &'a Object,
    hints: &'a Hints,
    /// The bytes an earlier run kept, which the answer carries on.
    prefix: Option<&'a Prefix>,
    /// The URL asked.
    url: Uri,
    /// Where the content was asked from: the length of `prefix`, or 0.
    offset: u64,
}

/// What the answer's size, range and coding headers say of its body.
struct Framing {
    codings: Vec<coding::Coding>,
    /// The body is coded, its codings known or not.
    coded: bool,
    /// The body is as long as the size given, or is the rest of it asked for.
    sized: bool,
    /// The whole content's size as the answer declares it; `None` for a coded body.
    declared: Option<u64>,
    /// Bytes of the body to drop: the part already at hand, sent again.
    skip: u64,
    /// Where a range of unknown total started, whose clean end is no end of the content.
    open_range: Option<u64>,
}

/// What the answer's `Content-Type` says.
struct Label {
    /// The media type, unless it names none (`application/octet-stream`).
    content_type: Option<String>,
    /// The answer is a web page.
    html: bool,
}

/// How a coded body is read: decoded, or taken as sent.
struct Decoding {
    decode: bool,
    as_sent: bool,
    /// Said by a mismatch of the bytes taken as sent (a proxy's coding, taken so by chance).
    content_encoding: String,
    /// Set once the bytes as sent of a decoded body verified.
    verified_as_sent: Arc<OnceLock<u64>>,
}

/// Where the rest of the content is asked for, and whether it comes in parallel ranges.
struct Routes {
    resume_url: Option<Uri>,
    retry_url: Option<Uri>,
    /// The URL and total of content fetched in ranges.
    split: Option<(Uri, u64)>,
    /// Where a mirror's broken body can be served from by the next host.
    address: Option<body::Address>,
}

/// What the body is read with: all that the steps before it settled about the answer.
struct Reading<'a> {
    asked: &'a Asked<'a>,
    framing: &'a Framing,
    decoding: &'a Decoding,
    routes: Routes,
    check_as_sent: Option<coding::AsSentCheck>,
    size: Option<u64>,
    /// `size` is the size given alone, the server having declared none.
    size_given: bool,
    on_trust: Option<OnTrust>,
    /// The request's headers, which the resumes and parts set ranges of their own on.
    headers: HeaderMap,
    /// Failures spent so far, which count against the body's resumes.
    resumes: u32,
}

/// What the download is told of how its content came, for its checks and its failures.
struct Findings {
    /// Who to ask again, when the size given is the caller's alone.
    given: Option<Option<String>>,
    on_trust: Option<OnTrust>,
    decoding: Decoding,
    codings: String,
    html: bool,
    redirected_by: Option<String>,
    typed_by_content: bool,
}

impl RegistryRemote {
    /// Fetches `object` from `endpoint` on host `host`, its request retried as any is;
    /// the one exception, ended at the host's first 500, is [`Self::fetch_within`]'s.
    pub(super) async fn fetch_from(
        &self,
        host: usize,
        endpoint: Endpoint,
        object: &Object,
        hints: &Hints,
        prefix: Option<&Prefix>,
    ) -> Result<Download> {
        self.fetch_within(host, endpoint, object, hints, prefix, false)
            .await
    }

    /// [`Self::fetch_from`], its request ended by the host's first 500 when `at_500`
    /// (see [`super::host::Ask`]).
    pub(super) async fn fetch_within(
        &self,
        host: usize,
        endpoint: Endpoint,
        object: &Object,
        hints: &Hints,
        prefix: Option<&Prefix>,
        at_500: bool,
    ) -> Result<Download> {
        let asked = Asked {
            host,
            endpoint,
            object,
            hints,
            prefix,
            url: self.url(host, endpoint, object.as_str())?,
            offset: prefix.map_or(0, |p| p.len),
        };
        let accept = accept_for(endpoint, hints)?;
        let headers = request_headers(accept.clone());
        // The retries this request takes count against its body's resumes too, as do the
        // failures of the fetches before it that could not be resumed.
        let mut spent = hints.failures;
        let reply = self.ask(&asked, &headers, &mut spent, at_500).await?;
        let url = &asked.url;
        let framing = Framing::of(&reply.response, &asked)?;
        let h = reply.response.headers();
        let announced = announced_for(object, h.get("docker-content-digest"), url)
            .map_err(|e| e.with_object(object).with_url(url))?;
        let label = Label::of(h);
        refuse_schema1(&asked, label.content_type.as_deref(), &accept)?;
        let expected = self.expected(&asked, announced)?;
        let again = self.again(&asked);
        let size = self.settle_size(&asked, framing.declared, &again, label.html)?;
        let limit = manifest_limit(&asked, size)?;
        let (media_type, typed_by_content) = media_type(endpoint, label.content_type, hints);
        let routes = self.routes(&asked, expected.as_ref(), size, framing.coded, &reply)?;
        // Only content of unknown size may end on trust (see `Resumable::cut_short`).
        let on_trust = size.is_none().then(OnTrust::default);
        // A size the server did not declare is the caller's alone, and may be what is wrong.
        let given = (framing.declared.is_none() && hints.size.is_some()).then(|| again.clone());
        let decoding = self.decoding(&asked, &framing, expected.as_ref(), &reply);
        let check_as_sent = self.check_as_sent(expected.as_ref(), &decoding);
        let hop = body::Hop::of(&reply, url);
        let reading = Reading {
            asked: &asked,
            framing: &framing,
            decoding: &decoding,
            routes,
            check_as_sent,
            size,
            size_given: given.is_some(),
            on_trust: on_trust.clone(),
            headers,
            resumes: spent,
        };
        let body = self.body(reply.response, hop, reading);
        let meta = Meta {
            object: object.clone(),
            expected,
            size,
            media_type,
            url: transport::redact(&reply.url),
            limit,
        };
        let download = match prefix {
            Some(p) => Download::after(meta, body, p.clone()),
            None => Download::new(meta, body),
        };
        let findings = Findings {
            given,
            on_trust,
            decoding,
            codings: coding::names(&framing.codings),
            html: label.html,
            redirected_by: reply.redirected_by.as_ref().map(transport::redirected_by),
            typed_by_content,
        };
        Ok(self.told(download, &asked, findings))
    }

    /// Sends the request, for the rest of the content when a partial is at hand.
    async fn ask(
        &self,
        asked: &Asked<'_>,
        headers: &HeaderMap,
        spent: &mut u32,
        at_500: bool,
    ) -> Result<transport::Reply> {
        // `headers` go on to the resumes and parts, which set ranges of their own.
        let mut sent = std::borrow::Cow::Borrowed(headers);
        if asked.offset > 0 {
            let range = format!("bytes={}-", asked.offset);
            sent.to_mut().insert(
                http::header::RANGE,
                HeaderValue::from_str(&range).expect("ascii"),
            );
        }
        let budget = self.host(asked.host).max_retries(&self.inner.retry);
        self.request_ending(
            asked.host,
            Method::GET,
            asked.url.clone(),
            &sent,
            (spent, budget),
            at_500,
        )
        .await
    }

    /// The digest the content must have: the one asked for, which a digest the server
    /// announced must match, or for a tag the one announced, if any.
    fn expected(&self, asked: &Asked<'_>, announced: Option<Digest>) -> Result<Option<Digest>> {
        match asked.object {
            Object::Digest(d) => {
                // Asked from an offset, the bytes before it are a partial's, read.
                let unread = if asked.offset > 0 {
                    "the rest"
                } else {
                    "the content"
                };
                let host = self.host(asked.host);
                refuse_announced_other(announced.as_ref(), asked.endpoint, d, host, unread)
                    .map_err(|e| e.with_url(&asked.url))?;
                Ok(Some(d.clone()))
            }
            Object::Tag(_) => Ok(announced),
        }
    }

    /// Who this fetch, once more after content failed, is asked of: the registry itself,
    /// or a mirror standing in for a registry that may not be asked (see `on_hosts`).
    /// "Itself" sets the registry apart from its mirrors, and says nothing without one.
    fn again(&self, asked: &Asked<'_>) -> Option<String> {
        asked
            .hints
            .origin_only
            .then(|| match self.host(asked.host).mirror {
                true => self.host(asked.host).who(),
                false if self.inner.hosts.iter().any(|h| h.mirror) => {
                    "the registry itself".to_string()
                }
                false => "the registry".to_string(),
            })
    }

    /// The content's size: the one given, which a declared one must match, or else the
    /// one declared.
    fn settle_size(
        &self,
        asked: &Asked<'_>,
        declared: Option<u64>,
        again: &Option<String>,
        html: bool,
    ) -> Result<Option<u64>> {
        let (d, h) = match (declared, asked.hints.size) {
            (Some(d), Some(h)) if d != h => (d, h),
            (d, h) => return Ok(h.or(d)),
        };
        let host = self.host(asked.host);
        let e = Error::new(
            ErrorKind::SizeMismatch,
            format!(
                "{} declares {}, {}",
                host.who(),
                crate::plural::Bytes(d),
                crate::hints::expected_size(h)
            ),
        );
        // Asked again of the registry itself, past any mirror (or of the mirrors
        // that stand in for a registry that may not be asked), after the same
        // answer: two answers against one size given.
        // A page's length says nothing of the size given.
        let e = match (again, html) {
            (_, true) => e.with_note(crate::fetch::HTML_IN_PLACE),
            (Some(who), false) => e.with_note(format!(
                "{who} declared {} again: the size given is likely wrong",
                crate::plural::Bytes(d)
            )),
            (None, false) => e,
        };
        let e = e.with_sizes(h, d).sized_by(host.mirror_name());
        Err(e.with_url(&asked.url))
    }

    /// Where the rest of the content is asked for after a break, and whether it is
    /// fetched in ranges instead.
    fn routes(
        &self,
        asked: &Asked<'_>,
        expected: Option<&Digest>,
        size: Option<u64>,
        coded: bool,
        reply: &transport::Reply,
    ) -> Result<Routes> {
        let endpoint = asked.endpoint;
        // A tag may move between two requests; a resumed request must ask for the same
        // content, so it goes by digest when the registry told us one. An object asked for
        // by that digest already has its URL, and need not form it again.
        let resume_url = match (expected, asked.object) {
            (Some(d), Object::Digest(by)) if d == by => Some(asked.url.clone()),
            (Some(d), _) => Some(self.url(asked.host, endpoint, d.as_str())?),
            (None, _) => None,
        };
        let split = match (&resume_url, size) {
            // A coded stream's parts would be asked for ranges a coding server codes.
            (Some(url), Some(total))
                if endpoint == Endpoint::Blobs
                    && !coded
                    && self.inner.ranges.applies(
                        size,
                        reply.response.headers(),
                        reply.response.version(),
                    ) =>
            {
                Some((url.clone(), total))
            }
            _ => None,
        };
        let address = match (&resume_url, expected) {
            (Some(_), Some(d)) => Some((endpoint, d.to_string())),
            _ => None,
        };
        let retry_url = (resume_url.is_none() && asked.offset == 0).then(|| asked.url.clone());
        Ok(Routes {
            resume_url,
            retry_url,
            split,
            address,
        })
    }

    /// Whether a coded body is decoded or taken as sent.
    fn decoding(
        &self,
        asked: &Asked<'_>,
        framing: &Framing,
        expected: Option<&Digest>,
        reply: &transport::Reply,
    ) -> Decoding {
        // Content stored compressed and labelled with its `Content-Encoding` (an S3 object
        // uploaded with that metadata) is its bytes as sent: undone, they never verify.
        // It is known by a body as long as the size given (`sized`), or by bytes as sent
        // that verified before; either way the content is verified as any is.
        let as_sent = framing.coded && {
            let h = reply.response.headers();
            let known = expected.is_some_and(|d| self.inner.as_sent.contains(d));
            coding::content_codings_only(h) && (framing.sized || known)
        };
        if as_sent {
            tracing::debug!(url = %crate::transport::redact(&asked.url), "a coded body taken as sent: its coding is how the content is stored");
        }
        let content_encoding = match as_sent {
            true => coding::content_encoding(reply.response.headers()),
            false => String::new(),
        };
        Decoding {
            decode: framing.coded && !as_sent,
            as_sent,
            content_encoding,
            verified_as_sent: Arc::new(OnceLock::new()),
        }
    }

    /// The check of a decoded body's bytes as sent against the content's digest, which
    /// tells content stored coded next time.
    fn check_as_sent(
        &self,
        expected: Option<&Digest>,
        decoding: &Decoding,
    ) -> Option<coding::AsSentCheck> {
        match (expected, decoding.decode) {
            (Some(digest), true) => Some(coding::AsSentCheck {
                digest: digest.clone(),
                as_sent: self.inner.as_sent.clone(),
                verified: decoding.verified_as_sent.clone(),
            }),
            _ => None,
        }
    }

    /// The body, resumed on breaks and, where it applies, fetched in parallel ranges.
    fn body(
        &self,
        response: Response<ResponseBody>,
        hop: Option<body::Hop>,
        reading: Reading<'_>,
    ) -> ByteStream {
        let Reading {
            asked,
            framing,
            decoding,
            routes,
            check_as_sent,
            size,
            size_given,
            on_trust,
            headers,
            resumes,
        } = reading;
        let host = asked.host;
        let serving = routes.split.as_ref().map(|(url, _)| {
            Serving::new(std::sync::Mutex::new(body::Served {
                host,
                url: url.clone(),
                sized_by: (!size_given).then_some(host),
                size_given,
            }))
        });
        let check = check_as_sent.as_ref();
        let body = self.opened(host, response, &framing.codings, decoding, check);
        let body = Resumable {
            remote: self.clone(),
            host,
            body,
            resume_url: routes.resume_url,
            retry_url: routes.retry_url,
            whole: decoding.decode,
            as_sent: decoding.as_sent,
            check_as_sent,
            headers: headers.clone(),
            offset: asked.offset,
            size,
            size_learned: false,
            size_given,
            sized_by: size.filter(|_| !size_given).map(|_| host),
            skip: framing.skip,
            resent_whole_at: body::whole_at(asked.offset, framing.skip),
            open_range: framing.open_range,
            on_trust,
            resumes,
            progress_mark: asked.offset,
            address: routes.address.clone(),
            earlier: Vec::new(),
            serving: serving.clone(),
            hop,
        }
        .into_stream();
        match routes.split.zip(serving) {
            Some(((url, total), serving)) => {
                let source = Source {
                    remote: self.clone(),
                    host,
                    url,
                    headers,
                    total,
                    total_given: size_given,
                    sized_by: (!size_given).then_some(host),
                    shared: self.inner.ranged.clone(),
                    address: routes.address,
                    serving,
                };
                Adaptive::new(body, asked.offset, source, self.inner.ranges.clone()).into_stream()
            }
            None => body,
        }
    }

    /// The response's body as it arrived, or decoded.
    ///
    /// A coded body is decoded below the resumes, which then count the content's
    /// bytes: a break asks for the whole content again and drops what was handed out,
    /// instead of failing content that went to stdout already.
    fn opened(
        &self,
        host: usize,
        response: Response<ResponseBody>,
        codings: &[coding::Coding],
        decoding: &Decoding,
        check: Option<&coding::AsSentCheck>,
    ) -> body::Body {
        if !decoding.decode {
            return body::Body::Plain(response.into_body());
        }
        let at_close = coding::ends_at_close(response.version(), response.headers());
        let (parts, incoming) = response.into_parts();
        let transport = self.host(host).transport.clone();
        let coded = body::incoming_stream(transport, incoming);
        let coded = coding::AsSentCheck::wrap(check, coded, &parts.headers);
        body::Body::Decoded(coding::decode(coded, codings, 0, at_close))
    }

    /// The download, told how its content came.
    fn told(&self, download: Download, asked: &Asked<'_>, findings: Findings) -> Download {
        let download = match findings.given {
            Some(again) => {
                let tag = matches!(asked.object, Object::Tag(_));
                let mirror = self.host(asked.host).mirror_name();
                download.size_given(mirror, self.registry_serves(tag), again)
            }
            None => download,
        };
        let download = match findings.on_trust {
            Some(on_trust) => download.end_on_trust(on_trust),
            None => download,
        };
        let decoding = findings.decoding;
        let download = match (decoding.decode, decoding.as_sent) {
            (true, _) => download.decoded_from(findings.codings, decoding.verified_as_sent),
            (false, true) => download.taken_as_sent(decoding.content_encoding),
            (false, false) => download,
        };
        let download = match findings.html {
            true => download.served_as_html(),
            false => download,
        };
        let download = match findings.redirected_by {
            Some(said) => download.redirected_by(said),
            None => download,
        };
        if asked.prefix.is_some() {
            return download;
        }
        let download = match findings.typed_by_content {
            true => download.typed_by_content(),
            false => download,
        };
        match asked.endpoint {
            Endpoint::Manifests => download.whole_json_unless_verified(),
            Endpoint::Blobs => download,
        }
    }
}

/// The `Accept` header: the media types hinted, or any a manifest may be, or anything.
fn accept_for(endpoint: Endpoint, hints: &Hints) -> Result<HeaderValue> {
    Ok(match endpoint {
        Endpoint::Manifests if hints.media_types.is_empty() => default_manifest_accept(),
        _ if hints.media_types.is_empty() => HeaderValue::from_static("*/*"),
        _ => {
            let joined = hints.media_types.join(", ");
            HeaderValue::from_str(&joined)
                .map_err(|_| Error::invalid(format!("bad media type hint {joined:?}")))?
        }
    })
}

impl Framing {
    /// Reads the answer's size, range and coding headers against what was asked: a range
    /// not asked for, one that cannot continue the content, a coding on the rest of it.
    fn of(response: &Response<ResponseBody>, asked: &Asked<'_>) -> Result<Framing> {
        let (h, url, offset, hints) = (response.headers(), &asked.url, asked.offset, asked.hints);
        // A coded body as long as the size given (a descriptor's) is content stored under
        // its own `Content-Encoding`, taken as sent below; a proxy's coding matches that
        // size only by chance. A coding dist cannot undo (a zstd layer's) is no obstacle
        // to bytes not decoded, and is verified as any. So is the rest of them asked for
        // to carry on a partial an earlier run kept: a range of the bytes as stored, whose
        // total is that size and whose length is the range's. A proxy that codes a range
        // keeps the total it was sent, but its body's length matches only by chance.
        let partial = response.status() == http::StatusCode::PARTIAL_CONTENT;
        let rest_of_it = partial
            && offset > 0
            && content_range_start(h) == Some(offset)
            && range_headers::content_range_total(h) == hints.size
            && content_length(h) == hints.size.and_then(|s| s.checked_sub(offset));
        let sized = hints.size.is_some() && (content_length(h) == hints.size || rest_of_it);
        let (codings, coded) = match coding::codings(h) {
            Ok(codings) => {
                let coded = !codings.is_empty();
                (codings, coded)
            }
            Err(_) if sized && coding::content_codings_only(h) => (Vec::new(), true),
            Err(e) => return Err(e.with_url(url)),
        };
        // All of the content under a `206` that says so is a `200` in all but its status.
        let whole = partial.then(|| range_headers::whole_range(h)).flatten();
        if offset == 0 && partial && whole.is_none() {
            return Err(range_headers::unasked_range(h).with_url(url));
        }
        // Asked for the rest, the content's size is the whole range's: a `206` must start
        // where asked and says the total; a `200` (or a `206` of all of it) sends
        // everything, and the part already at hand is dropped on arrival.
        let (declared, skip) = if coded {
            let rest = partial && whole.is_none();
            if rest && !(rest_of_it && coding::content_codings_only(h)) {
                // Its range addresses coded bytes, which the server may code differently
                // each time; a partial download is then fetched again from scratch.
                return Err(Error::new(
                    ErrorKind::Protocol,
                    "the server compressed the part of the content asked for \
                     (Content-Encoding on a 206): its bytes are a part of the compressed \
                     form, which cannot continue the content",
                )
                .with_url(url));
            }
            // Content-Length counts the coded bytes, not the content's; so does the total
            // of a `206` of all of them, which is a coded `200` in all but its status. The
            // rest of content stored so (`rest_of_it`) is taken as sent below.
            (None, if rest { 0 } else { offset })
        } else if offset == 0 {
            (content_length(h), 0)
        } else if let Some(total) = whole {
            (Some(total), offset)
        } else if partial {
            if content_range_start(h) != Some(offset) {
                return Err(range_headers::wrong_range(offset, h).with_url(url));
            }
            // A total of `*` leaves the whole size unknown: the range may stop short of the
            // content's end (a cache sends what it has so far), and the body then asks for
            // the rest. Taken for the size, its end refused the whole content a resume
            // brought as a size mismatch.
            (range_headers::content_range_total(h), 0)
        } else {
            (content_length(h), offset)
        };
        let open_range = match coded {
            true => None,
            false => range_headers::Extent::of_plain(response.status(), h).open_range(offset),
        };
        Ok(Framing {
            codings,
            coded,
            sized,
            declared,
            skip,
            open_range,
        })
    }
}

impl Label {
    fn of(h: &HeaderMap) -> Label {
        let content_type = h
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        Label {
            html: content_type.is_some_and(|t| media::is(t, "text/html")),
            content_type: content_type
                .map(|t| media::canonical(t).to_string())
                .filter(|t| !t.is_empty() && !media::is(t, "application/octet-stream")),
        }
    }
}

/// Refuses a signed Docker schema 1 manifest before a byte is read: streamed to stdout,
/// it would fail only at the end, as a digest mismatch that looks like corruption.
fn refuse_schema1(
    asked: &Asked<'_>,
    content_type: Option<&str>,
    accept: &HeaderValue,
) -> Result<()> {
    if asked.endpoint != Endpoint::Manifests || content_type != Some(media::DOCKER_SCHEMA1_SIGNED) {
        return Ok(());
    }
    let accepted = accept.to_str().unwrap_or_default();
    let what = if matches!(asked.object, Object::Digest(_))
        || accepted
            .split(',')
            .any(|t| media::is(t, media::DOCKER_SCHEMA1_SIGNED))
    {
        // Asked for by name (the type a HEAD announced, a hint), or by digest, which
        // a registry serves as stored: no fallback, which only a tag's is.
        format!(
            "the manifest is a signed Docker schema 1 manifest ({})",
            media::DOCKER_SCHEMA1_SIGNED
        )
    } else {
        format!(
            "the registry answered with a signed Docker schema 1 manifest ({}), \
             its fallback when it has none of the types asked for ({accepted})",
            media::DOCKER_SCHEMA1_SIGNED
        )
    };
    Err(Error::new(
        ErrorKind::NotFound,
        format!("{what}; {}", media::SCHEMA1_REFUSED),
    )
    .with_url(&asked.url))
}

/// The size limit of a manifest, refusing one declared or given larger.
fn manifest_limit(asked: &Asked<'_>, size: Option<u64>) -> Result<Option<u64>> {
    let limit = (asked.endpoint == Endpoint::Manifests).then_some(MAX_MANIFEST_SIZE);
    if let (Some(limit), Some(size)) = (limit, size) {
        if size > limit {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("manifest of {size} bytes exceeds the {limit}-byte limit"),
            )
            .with_url(&asked.url));
        }
    }
    Ok(limit)
}

/// The content's media type, and whether a manifest's is read from the manifest itself.
///
/// A manifest's own Content-Type is authoritative (a hint may list several acceptable
/// types), unless it names no manifest type (`application/json`, `text/plain`, as static
/// mirrors serve them): the manifest's own `mediaType` is then read once it arrived. A
/// blob endpoint says only how its storage keeps bytes (S3's `binary/octet-stream` after
/// a redirect, a file server's sniffed `text/plain`), so the hint is all there is, short
/// of a vendor type (an OCI one) a registry labelled the blob with.
fn media_type(
    endpoint: Endpoint,
    content_type: Option<String>,
    hints: &Hints,
) -> (Option<String>, bool) {
    let typed_by_content =
        endpoint == Endpoint::Manifests && !content_type.as_deref().is_some_and(media::is_manifest);
    let media_type = match endpoint {
        Endpoint::Manifests => content_type.or(hints.media_type().map(str::to_string)),
        Endpoint::Blobs => hints
            .media_type()
            .map(str::to_string)
            .or(content_type.filter(|t| media::is_vendor(t))),
    };
    (media_type, typed_by_content)
}
