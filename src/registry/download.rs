//! One host's answer to a `GET` for content, read into a [`Download`]: its size,
//! `Content-Range` and codings checked against what was asked, its media type and digest
//! taken, and its body wrapped to resume, decode and split into ranges.
//!
//! Separate from the registry remote's choice of hosts (`on_hosts`, the mirrors' hand-over):
//! this is what one request to one host becomes.

use std::sync::Arc;

use http::{HeaderValue, Method};

use super::{announced_for, content_range_start, refuse_announced_other};
use super::{
    body, coding, content_length, default_manifest_accept, range_headers, request_headers,
};
use super::{Endpoint, RegistryRemote, Resumable, Serving};
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{Download, Meta, Prefix, MAX_MANIFEST_SIZE};
use crate::hints::Hints;
use crate::media;
use crate::ranged::{Adaptive, Source};
use crate::reference::Object;
use crate::transport;

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
        let url = self.url(host, endpoint, object.as_str())?;
        let accept = match endpoint {
            Endpoint::Manifests if hints.media_types.is_empty() => default_manifest_accept(),
            _ if hints.media_types.is_empty() => HeaderValue::from_static("*/*"),
            _ => {
                let joined = hints.media_types.join(", ");
                HeaderValue::from_str(&joined)
                    .map_err(|_| Error::invalid(format!("bad media type hint {joined:?}")))?
            }
        };
        let headers = request_headers(accept.clone());
        let offset = prefix.map_or(0, |p| p.len);
        // `headers` go on to the resumes and parts, which set ranges of their own.
        let mut asked = std::borrow::Cow::Borrowed(&headers);
        if offset > 0 {
            let range = format!("bytes={offset}-");
            asked.to_mut().insert(
                http::header::RANGE,
                HeaderValue::from_str(&range).expect("ascii"),
            );
        }
        // The retries this request takes count against its body's resumes too, as do the
        // failures of the fetches before it that could not be resumed.
        let mut spent = hints.failures;
        let budget = self.host(host).max_retries(&self.inner.retry);
        let reply = self
            .request_ending(
                host,
                Method::GET,
                url.clone(),
                &asked,
                (&mut spent, budget),
                at_500,
            )
            .await?;
        let h = reply.response.headers();
        // A coded body as long as the size given (a descriptor's) is content stored under
        // its own `Content-Encoding`, taken as sent below; a proxy's coding matches that
        // size only by chance. A coding dist cannot undo (a zstd layer's) is no obstacle
        // to bytes not decoded, and is verified as any. So is the rest of them asked for
        // to carry on a partial an earlier run kept: a range of the bytes as stored, whose
        // total is that size and whose length is the range's. A proxy that codes a range
        // keeps the total it was sent, but its body's length matches only by chance.
        let partial = reply.response.status() == http::StatusCode::PARTIAL_CONTENT;
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
            Err(e) => return Err(e.with_url(&url)),
        };
        // All of the content under a `206` that says so is a `200` in all but its status.
        let whole = partial.then(|| range_headers::whole_range(h)).flatten();
        if offset == 0 && partial && whole.is_none() {
            return Err(range_headers::unasked_range(h).with_url(&url));
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
                .with_url(&url));
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
                return Err(range_headers::wrong_range(offset, h).with_url(&url));
            }
            // A total of `*` leaves the whole size unknown: the range may stop short of the
            // content's end (a cache sends what it has so far), and the body then asks for
            // the rest. Taken for the size, its end refused the whole content a resume
            // brought as a size mismatch.
            (range_headers::content_range_total(h), 0)
        } else {
            (content_length(h), offset)
        };
        // Where a range of unknown total started, whose clean end is no end of the content.
        let open_range = match coded {
            true => None,
            false => range_headers::Extent::of_plain(reply.response.status(), h).open_range(offset),
        };
        let announced = announced_for(object, h.get("docker-content-digest"), &url)
            .map_err(|e| e.with_object(object).with_url(&url))?;
        let html = h
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| media::is(t, "text/html"));
        let content_type = h
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|t| media::canonical(t).to_string())
            .filter(|t| !t.is_empty() && !media::is(t, "application/octet-stream"));
        if endpoint == Endpoint::Manifests
            && content_type.as_deref() == Some(media::DOCKER_SCHEMA1_SIGNED)
        {
            // Refused before a byte is read: streamed to stdout, it would fail only at the
            // end, as a digest mismatch that looks like corruption.
            let asked = accept.to_str().unwrap_or_default();
            let what = if matches!(object, Object::Digest(_))
                || asked
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
                     its fallback when it has none of the types asked for ({asked})",
                    media::DOCKER_SCHEMA1_SIGNED
                )
            };
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{what}; {}", media::SCHEMA1_REFUSED),
            )
            .with_url(&url));
        }
        let expected = match object {
            Object::Digest(d) => {
                // Asked from an offset, the bytes before it are a partial's, read.
                let unread = if offset > 0 {
                    "the rest"
                } else {
                    "the content"
                };
                let host = self.host(host);
                refuse_announced_other(announced.as_ref(), endpoint, d, host, unread)
                    .map_err(|e| e.with_url(&url))?;
                Some(d.clone())
            }
            Object::Tag(_) => announced,
        };
        // The fetch once more after content failed: from the registry itself, or from a
        // mirror standing in for a registry that may not be asked (see `on_hosts`).
        // "Itself" sets the registry apart from its mirrors, and says nothing without one.
        let again = hints.origin_only.then(|| match self.host(host).mirror {
            true => self.host(host).who(),
            false if self.inner.hosts.iter().any(|h| h.mirror) => "the registry itself".to_string(),
            false => "the registry".to_string(),
        });
        let size = match (declared, hints.size) {
            (Some(d), Some(h)) if d != h => {
                let e = Error::new(
                    ErrorKind::SizeMismatch,
                    format!(
                        "{} declares {}, {}",
                        self.host(host).who(),
                        crate::plural::Bytes(d),
                        crate::hints::expected_size(h)
                    ),
                );
                // Asked again of the registry itself, past any mirror (or of the mirrors
                // that stand in for a registry that may not be asked), after the same
                // answer: two answers against one size given.
                // A page's length says nothing of the size given.
                let e = match (&again, html) {
                    (_, true) => e.with_note(crate::fetch::HTML_IN_PLACE),
                    (Some(who), false) => e.with_note(format!(
                        "{who} declared {} again: the size given is likely wrong",
                        crate::plural::Bytes(d)
                    )),
                    (None, false) => e,
                };
                let e = e.with_sizes(h, d).sized_by(self.host(host).mirror_name());
                return Err(e.with_url(&url));
            }
            (d, h) => h.or(d),
        };
        let limit = (endpoint == Endpoint::Manifests).then_some(MAX_MANIFEST_SIZE);
        if let (Some(limit), Some(size)) = (limit, size) {
            if size > limit {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!("manifest of {size} bytes exceeds the {limit}-byte limit"),
                )
                .with_url(&url));
            }
        }
        // A manifest's own Content-Type is authoritative (a hint may list several
        // acceptable types), unless it names no manifest type (`application/json`,
        // `text/plain`, as static mirrors serve them): the manifest's own `mediaType` is
        // then read once it arrived. A blob endpoint says only how its storage keeps
        // bytes (S3's `binary/octet-stream` after a redirect, a file server's sniffed
        // `text/plain`), so the hint is all there is, short of a vendor type (an OCI one)
        // a registry labelled the blob with.
        let typed_by_content = endpoint == Endpoint::Manifests
            && !content_type.as_deref().is_some_and(media::is_manifest);
        let media_type = match endpoint {
            Endpoint::Manifests => content_type.or(hints.media_type().map(str::to_string)),
            Endpoint::Blobs => hints
                .media_type()
                .map(str::to_string)
                .or(content_type.filter(|t| media::is_vendor(t))),
        };
        // A tag may move between two requests; a resumed request must ask for the same
        // content, so it goes by digest when the registry told us one. An object asked for
        // by that digest already has its URL, and need not form it again.
        let resume_url = match (&expected, object) {
            (Some(d), Object::Digest(asked)) if d == asked => Some(url.clone()),
            (Some(d), _) => Some(self.url(host, endpoint, d.as_str())?),
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
        // Where a mirror's broken body can be served from by the next host.
        let address = match (&resume_url, &expected) {
            (Some(_), Some(d)) => Some((endpoint, d.to_string())),
            _ => None,
        };
        let retry_url = (resume_url.is_none() && offset == 0).then(|| url.clone());
        // Only content of unknown size may end on trust (see `Resumable::cut_short`).
        let on_trust = size.is_none().then(crate::fetch::OnTrust::default);
        // A size the server did not declare is the caller's alone, and may be what is wrong.
        let given = (declared.is_none() && hints.size.is_some()).then(|| again.clone());
        let serving = split.as_ref().map(|(url, _)| {
            Serving::new(std::sync::Mutex::new(body::Served {
                host,
                url: url.clone(),
                sized_by: given.is_none().then_some(host),
                size_given: given.is_some(),
            }))
        });
        // Content stored compressed and labelled with its `Content-Encoding` (an S3 object
        // uploaded with that metadata) is its bytes as sent: undone, they never verify.
        // It is known by a body as long as the size given (`sized`), or by bytes as sent
        // that verified before; either way the content is verified as any is.
        let as_sent = coded && {
            let h = reply.response.headers();
            let known = expected
                .as_ref()
                .is_some_and(|d| self.inner.as_sent.contains(d));
            coding::content_codings_only(h) && (sized || known)
        };
        if as_sent {
            tracing::debug!(url = %crate::transport::redact(&url), "a coded body taken as sent: its coding is how the content is stored");
        }
        // Said by a mismatch of the bytes taken as sent (a proxy's coding, taken so by chance).
        let content_encoding = match as_sent {
            true => coding::content_encoding(reply.response.headers()),
            false => String::new(),
        };
        let decode = coded && !as_sent;
        // Set once the bytes as sent of a decoded body verified.
        let verified_as_sent = Arc::new(std::sync::OnceLock::new());
        let check_as_sent = match (&expected, decode) {
            (Some(digest), true) => Some(coding::AsSentCheck {
                digest: digest.clone(),
                as_sent: self.inner.as_sent.clone(),
                verified: verified_as_sent.clone(),
            }),
            _ => None,
        };
        // A coded body is decoded below the resumes, which then count the content's
        // bytes: a break asks for the whole content again and drops what was handed out,
        // instead of failing content that went to stdout already.
        let hop = body::Hop::of(&reply, &url);
        let body = match decode {
            true => {
                let response = &reply.response;
                let at_close = coding::ends_at_close(response.version(), response.headers());
                let (parts, incoming) = reply.response.into_parts();
                let transport = self.host(host).transport.clone();
                let coded = body::incoming_stream(transport, incoming);
                let check = check_as_sent.as_ref();
                let coded = coding::AsSentCheck::wrap(check, coded, &parts.headers);
                body::Body::Decoded(coding::decode(coded, &codings, 0, at_close))
            }
            false => body::Body::Plain(reply.response.into_body()),
        };
        let body = Resumable {
            remote: self.clone(),
            host,
            body,
            resume_url,
            retry_url,
            whole: decode,
            as_sent,
            check_as_sent,
            headers: headers.clone(),
            offset,
            size,
            size_learned: false,
            size_given: given.is_some(),
            sized_by: size.filter(|_| given.is_none()).map(|_| host),
            skip,
            resent_whole_at: body::whole_at(offset, skip),
            open_range,
            on_trust: on_trust.clone(),
            resumes: spent,
            progress_mark: offset,
            address: address.clone(),
            earlier: Vec::new(),
            serving: serving.clone(),
            hop,
        }
        .into_stream();
        let body = match split.zip(serving) {
            Some(((url, total), serving)) => {
                let source = Source {
                    remote: self.clone(),
                    host,
                    url,
                    headers,
                    total,
                    total_given: given.is_some(),
                    sized_by: given.is_none().then_some(host),
                    shared: self.inner.ranged.clone(),
                    address,
                    serving,
                };
                Adaptive::new(body, offset, source, self.inner.ranges.clone()).into_stream()
            }
            None => body,
        };
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
        let download = match given {
            Some(again) => {
                let tag = matches!(object, Object::Tag(_));
                let mirror = self.host(host).mirror_name();
                download.size_given(mirror, self.registry_serves(tag), again)
            }
            None => download,
        };
        let download = match on_trust {
            Some(on_trust) => download.end_on_trust(on_trust),
            None => download,
        };
        let download = match (decode, as_sent) {
            (true, _) => download.decoded_from(coding::names(&codings), verified_as_sent),
            (false, true) => download.taken_as_sent(content_encoding),
            (false, false) => download,
        };
        let download = match html {
            true => download.served_as_html(),
            false => download,
        };
        let download = match &reply.redirected_by {
            Some(from) => download.redirected_by(transport::redirected_by(from)),
            None => download,
        };
        if prefix.is_some() {
            return Ok(download);
        }
        let download = match typed_by_content {
            true => download.typed_by_content(),
            false => download,
        };
        Ok(match endpoint {
            Endpoint::Manifests => download.whole_json_unless_verified(),
            Endpoint::Blobs => download,
        })
    }
}
