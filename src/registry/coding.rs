//! `Content-Encoding`: the codings a response was sent with, and the stream that undoes them.
//!
//! dist asks for `Accept-Encoding: identity`, since a digest names the stored bytes and
//! ranges (resumes, split downloads) address them. Some servers compress anyway: a proxy
//! or CDN in front of the registry that gzips JSON, or one that ignores the header.
//! containerd decodes such answers, and so does dist: `gzip` and `deflate` are undone
//! before the bytes are hashed, so verification sees the content itself. A coded body
//! is not split, and a break in it is not resumed with a range (its ranges would address
//! the coded bytes, which the server may code differently next time): the content is
//! asked for whole again, and what was handed out dropped from the decoded bytes. Its
//! `Content-Length` is not the content's size.

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use async_compression::futures::bufread::{GzipDecoder, ZlibDecoder};
use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, StreamExt, TryStreamExt};
use http::HeaderMap;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::ByteStream;

/// Decoded bytes handed on at a time: each read produces at most this much, so a body
/// that inflates a thousandfold still moves through memory in small pieces.
const DECODED_CHUNK: usize = 64 << 10;

/// Most codings undone for one body, as curl allows (CVE-2022-32206): each is a decoder
/// the body's bytes pass through, nested one in the next, so a header naming thousands
/// (`gzip,gzip,…`, 15 KB for 3000) overflowed the stack before a byte was read.
const MAX_CODINGS: usize = 5;

/// A content coding dist can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// `gzip` (or its old name `x-gzip`), RFC 1952; concatenated members are one body.
    Gzip,
    /// `deflate`, which HTTP defines as the zlib format (RFC 1950).
    Deflate,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// The codings of a response, in the order they were applied; empty for none or
/// `identity`. A coding dist cannot undo is an error, raised before a byte is read:
/// hashed as it is, the body would only fail at its end as a digest mismatch.
///
/// Transfer codings count too, applied after the content codings: hyper undoes only
/// `chunked`, and hands on a body sent `Transfer-Encoding: gzip, chunked` still coded.
/// HTTP/1.1 allows a server other transfer codings only for a client that asked for them
/// (`TE`), which dist never does, but one that sends them anyway is undone like a proxy
/// that compresses against `Accept-Encoding: identity`, instead of failing as a digest
/// mismatch that looks like corruption.
pub(crate) fn codings(headers: &HeaderMap) -> Result<Vec<Coding>> {
    let mut codings = Vec::new();
    for (header, field) in [
        (http::header::CONTENT_ENCODING, "Content-Encoding"),
        (http::header::TRANSFER_ENCODING, "Transfer-Encoding"),
    ] {
        let transfer = header == http::header::TRANSFER_ENCODING;
        for value in headers.get_all(&header) {
            let value = value.to_str().map_err(|_| {
                Error::new(
                    ErrorKind::Protocol,
                    format!("a {field} header that is not text"),
                )
            })?;
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let coding =
                    if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                        Coding::Gzip
                    } else if name.eq_ignore_ascii_case("deflate") {
                        Coding::Deflate
                    } else if name.eq_ignore_ascii_case("identity")
                        || (transfer && name.eq_ignore_ascii_case("chunked"))
                    {
                        continue;
                    } else {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            format!(
                                "the server sent the content with {field} {:?}, which dist \
                             does not decode (it asks for identity; gzip and deflate are \
                             undone)",
                                crate::server_text::one_line(name)
                            ),
                        ));
                    };
                if codings.len() == MAX_CODINGS {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        format!(
                            "the server sent the content with more than {MAX_CODINGS} codings \
                             (Content-Encoding and Transfer-Encoding), which dist does not undo"
                        ),
                    ));
                }
                codings.push(coding);
            }
        }
    }
    Ok(codings)
}

/// The names of `codings` in the order they were applied (`gzip`, `gzip, deflate`).
pub(crate) fn names(codings: &[Coding]) -> String {
    let names: Vec<&str> = codings.iter().map(|c| c.name()).collect();
    names.join(", ")
}

/// Whether a response carries any coding but `identity`, undoable or not.
pub(crate) fn is_coded(headers: &HeaderMap) -> bool {
    !matches!(codings(headers).as_deref(), Ok([]))
}

/// Whether a coded response's codings are all content codings (`Content-Encoding`), none
/// a transfer coding: only the former may be how the content itself is stored. Its
/// `Transfer-Encoding` names only what [`codings`] passes over there (`chunked`,
/// `identity`), and is text.
pub(crate) fn content_codings_only(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .all(|value| {
            value.to_str().is_ok_and(|value| {
                value.split(',').map(str::trim).all(|name| {
                    name.is_empty()
                        || name.eq_ignore_ascii_case("chunked")
                        || name.eq_ignore_ascii_case("identity")
                })
            })
        })
}

/// A response's `Content-Encoding` as it said it, to be shown: one line, cut short.
pub(crate) fn content_encoding(headers: &HeaderMap) -> String {
    let said: Vec<&str> = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let said = crate::server_text::one_line(&said.join(", "));
    crate::server_text::cut_to(said, crate::server_text::MAX_SHOWN)
}

/// Digests whose content a server sends as stored, compressed and labelled with its
/// `Content-Encoding` (an S3 object uploaded with that metadata, a `.gz` file a web server
/// labels so): undone, such a coding leaves bytes that can never verify. Learned when a
/// decoded body failed and the bytes as sent verified ([`check_as_sent`]); a fetch
/// again takes them as sent. One entry per such object a run meets.
#[derive(Debug, Default)]
pub(crate) struct AsSent(Mutex<HashSet<Digest>>);

impl AsSent {
    /// Whether `digest`'s content was found to be its bytes as sent.
    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        self.0
            .lock()
            .expect("as-sent set poisoned")
            .contains(digest)
    }

    fn insert(&self, digest: Digest) {
        self.0.lock().expect("as-sent set poisoned").insert(digest);
    }
}

/// What a decoded body's bytes as sent are checked against, on every answer that brings
/// the content whole ([`check_as_sent`]): one that broke would never tell.
#[derive(Debug, Clone)]
pub(crate) struct AsSentCheck {
    pub(crate) digest: Digest,
    pub(crate) as_sent: Arc<AsSent>,
    pub(crate) verified: Arc<OnceLock<u64>>,
}

impl AsSentCheck {
    /// `body`, checked so, when `headers` name content codings alone (see
    /// [`content_codings_only`]): only they may be how the content is stored.
    pub(crate) fn wrap(check: Option<&Self>, body: ByteStream, headers: &HeaderMap) -> ByteStream {
        match check {
            Some(c) if content_codings_only(headers) => check_as_sent(body, c.clone()),
            _ => body,
        }
    }
}

/// `body`, its coded bytes as they pass hashed: once it ended whole and they verify as
/// the check's `digest`, that goes into `as_sent` and `verified` holds how many bytes there
/// were, for the decoded body's digest mismatch to say so. Only a coded body pays for the
/// second hash.
fn check_as_sent(body: ByteStream, check: AsSentCheck) -> ByteStream {
    let hasher = Hasher::new(check.digest.algorithm());
    futures::stream::unfold(Some((body, hasher, 0u64, check)), |state| async move {
        let (mut body, mut hasher, len, check) = state?;
        match body.next().await {
            Some(Ok(chunk)) => {
                hasher.update(&chunk);
                let len = len + chunk.len() as u64;
                Some((Ok(chunk), Some((body, hasher, len, check))))
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => {
                if hasher.finish() == check.digest {
                    tracing::debug!(digest = %check.digest, "the coded bytes as sent verify");
                    check.as_sent.insert(check.digest);
                    let _ = check.verified.set(len);
                }
                None
            }
        }
    })
    .boxed()
}

/// `body` with `codings` undone (the last applied is undone first), and then its first
/// `skip` decoded bytes dropped: a server that ignored a `Range` sends everything again.
/// `at_close`: the body ends where its connection closes ([`ends_at_close`]), so that one
/// that ends before its coding does was cut short, a break to ask again after, where a
/// framed body's that does so is bad coded bytes.
pub(crate) fn decode(
    body: ByteStream,
    codings: &[Coding],
    skip: u64,
    at_close: bool,
) -> ByteStream {
    // Only the coding undone first reads the body itself: a coding inside it that ends
    // early, in bytes that were all there, is bad.
    let decoded = codings
        .iter()
        .rev()
        .enumerate()
        .fold(body, |body, (i, &coding)| {
            undo(body, coding, at_close && i == 0)
        });
    if skip == 0 {
        return decoded;
    }
    crate::fetch::skip_prefix(decoded, skip)
}

/// `body`, read whole, with `codings` undone: at most `limit` bytes of it, or an error
/// calling it `what`. A token server or a registry (or the proxy before either) may gzip
/// JSON though dist asks for `identity`, as some do whatever they are asked: read as it
/// came, a token was lost in a reply said to be no JSON, and an error's words shown as
/// coded bytes.
pub(crate) async fn decode_whole(
    body: Bytes,
    codings: &[Coding],
    limit: usize,
    what: &str,
) -> Result<Bytes> {
    if codings.is_empty() {
        return Ok(body);
    }
    let coded = futures::stream::once(async move { Ok(body) }).boxed();
    // Read whole already: a cut one is told as bad bytes, a token request retried as such.
    let mut plain = decode(coded, codings, 0, false);
    let mut out = bytes::BytesMut::new();
    while let Some(piece) = plain.next().await {
        let piece = piece?;
        // A few KiB that inflate a thousandfold stop here, not in memory.
        if out.len() + piece.len() > limit {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("{what} larger than {limit} bytes once decoded"),
            ));
        }
        out.extend_from_slice(&piece);
    }
    Ok(out.freeze())
}

/// The words of a reply read for them (an error's first bytes), its `codings` (as
/// [`codings`] read them) undone: at most `limit` bytes, the decoded start of a body
/// longer than that or cut where reading it stopped (a prefix), as a plain body's start is
/// shown. The codings are undone one at a time, the last applied first: where one does
/// not decode at all (a label on bytes a server did not code, `gzip, gzip` on a body
/// coded once, a coding dist does not undo), what the codings before it made of the body
/// is shown when it is text (a last character cut short left out), and nothing when not.
pub(crate) async fn readable(body: Bytes, codings: Result<Vec<Coding>>, limit: usize) -> Bytes {
    let mut body = body;
    if let Ok(codings) = codings {
        if codings.is_empty() {
            return body;
        }
        for &coding in codings.iter().rev() {
            match undo_start(body.clone(), coding, limit).await {
                Some(plain) => body = plain,
                None => break,
            }
        }
    }
    match std::str::from_utf8(&body) {
        Ok(_) => body,
        // Cut inside a character (at the limit, or where reading stopped): text still,
        // up to its last whole character.
        Err(e) if e.error_len().is_none() => body.slice(..e.valid_up_to()),
        Err(_) => Bytes::new(),
    }
}

/// At most `limit` bytes of `body` with `coding` undone, as far as it decodes; `None`
/// when none of it does.
async fn undo_start(body: Bytes, coding: Coding, limit: usize) -> Option<Bytes> {
    let coded = futures::stream::once(futures::future::ready(Ok(body))).boxed();
    let mut plain = decode(coded, &[coding], 0, false);
    let mut out = bytes::BytesMut::new();
    // A few KiB that inflate a thousandfold stop at `limit`, not in memory.
    while out.len() < limit {
        match plain.next().await {
            Some(Ok(piece)) => {
                let take = piece.len().min(limit - out.len());
                out.extend_from_slice(&piece[..take]);
            }
            // The end of the bytes read, or of what decodes of them.
            Some(Err(_)) | None => break,
        }
    }
    (!out.is_empty()).then(|| out.freeze())
}

/// Whether a response of `version` with `headers` has a body that ends where its
/// connection closes (RFC 9112, 6.3): HTTP/1 without `Content-Length` nor chunks. Such a
/// body cut short ends as cleanly as a whole one.
pub(crate) fn ends_at_close(version: http::Version, headers: &HeaderMap) -> bool {
    if version >= http::Version::HTTP_2 {
        return false;
    }
    let transfer = headers.get_all(http::header::TRANSFER_ENCODING);
    let last = transfer.iter().filter_map(|v| v.to_str().ok()).next_back();
    match last {
        Some(value) => !value
            .rsplit(',')
            .next()
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked")),
        None => !headers.contains_key(http::header::CONTENT_LENGTH),
    }
}

/// A body's coded bytes, as the decoders read them.
type Coded =
    futures::stream::IntoAsyncRead<futures::stream::MapErr<ByteStream, fn(Error) -> io::Error>>;

/// A decoder, which lets the body under it be read on past its coding's end.
trait Decoder: AsyncRead + Send + Unpin {
    fn body(&mut self) -> &mut Coded;
}

impl Decoder for GzipDecoder<Coded> {
    fn body(&mut self) -> &mut Coded {
        self.get_mut()
    }
}

impl Decoder for ZlibDecoder<Coded> {
    fn body(&mut self) -> &mut Coded {
        self.get_mut()
    }
}

fn undo(body: ByteStream, coding: Coding, at_close: bool) -> ByteStream {
    // The decoders read from an `AsyncBufRead`, which carries `io::Error`: a failure of
    // the body travels through them wrapped, and is unwrapped on the way out.
    let coded = body
        .map_err(io::Error::other as fn(Error) -> io::Error)
        .into_async_read();
    let reader: Box<dyn Decoder> = match coding {
        Coding::Gzip => {
            let mut decoder = GzipDecoder::new(coded);
            decoder.multiple_members(true);
            Box::new(decoder)
        }
        Coding::Deflate => Box::new(ZlibDecoder::new(coded)),
    };
    // One buffer for every read, its bytes copied out: a body that trickles in decodes a
    // few bytes per read, and a piece that kept the buffer it was read into would hold
    // 64 KiB for each of them (content held back, up to a manifest's 4 MiB, multiplied
    // a thousandfold). The copy costs little beside inflating the bytes.
    let buf = vec![0u8; DECODED_CHUNK];
    futures::stream::try_unfold((reader, buf), move |(mut reader, mut buf)| async move {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| decoding_failed(e, coding, at_close))?;
        if n == 0 {
            // The body is read on to its own end, past the coding's, which a zlib stream
            // reaches without asking for it: only that end tells the bytes as sent came
            // whole (`check_as_sent`). Whatever follows the coding was ever passed over,
            // and so is a break after it: the content is whole.
            while let Ok(1..) = reader.body().read(&mut buf).await {}
            return Ok(None);
        }
        Ok(Some((Bytes::copy_from_slice(&buf[..n]), (reader, buf))))
    })
    .boxed()
}

/// The body's own error when it is one that travelled through the decoder; a break when
/// the body, ending `at_close`, ended before its coding did; otherwise the coded bytes
/// themselves are bad.
fn decoding_failed(e: io::Error, coding: Coding, at_close: bool) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let inner = e.into_inner().expect("checked above");
        return *inner.downcast::<Error>().expect("checked above");
    }
    // A body without `Content-Length` (nor chunks) ends where its connection closes, as
    // cleanly when it drops part-way as at the end: only the coding, unfinished, tells.
    // Taken for bad coded bytes, it failed the object at once, where a plain body cut so
    // is resumed; as a break, the content is asked for whole again. A framed body's end
    // is no cut (hyper fails one short of its frame): bad bytes end a coding early too.
    if at_close && e.kind() == io::ErrorKind::UnexpectedEof {
        return Error::new(
            ErrorKind::Connect,
            format!(
                "the body ended before its {} coding did: its connection closed part-way",
                coding.name()
            ),
        )
        .with_cause(e);
    }
    Error::new(
        ErrorKind::Protocol,
        format!("the body's {} coding does not decode", coding.name()),
    )
    .with_cause(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::io::Write;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::CONTENT_ENCODING,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// The coded bytes as a body that arrives in pieces of `piece` bytes.
    fn body(coded: Vec<u8>, piece: usize) -> ByteStream {
        let pieces: Vec<Result<Bytes>> = coded
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(pieces).boxed()
    }

    async fn collect(mut s: ByteStream) -> Result<(Vec<u8>, usize)> {
        let (mut all, mut largest) = (Vec::new(), 0);
        while let Some(chunk) = s.try_next().await? {
            largest = largest.max(chunk.len());
            all.extend_from_slice(&chunk);
        }
        Ok((all, largest))
    }

    /// Only a transfer coding but `chunked` or `identity` makes a coded answer more than
    /// its content codings, whatever its `Content-Encoding` says.
    #[test]
    fn content_codings_only_looks_at_the_transfer_codings() {
        let value = HeaderValue::from_static;
        let with = |transfer: &[&'static str]| {
            let mut h = headers(&["zstd"]);
            for t in transfer {
                h.append(http::header::TRANSFER_ENCODING, value(t));
            }
            content_codings_only(&h)
        };
        assert!(with(&[]) && with(&["chunked"]) && with(&["Chunked", "identity"]));
        assert!(!with(&["gzip, chunked"]) && !with(&["chunked", "br"]));
        let mut h = headers(&["gzip"]);
        h.append(
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_bytes(b"chunked\xff").unwrap(),
        );
        assert!(
            !content_codings_only(&h),
            "a Transfer-Encoding that is not text"
        );
    }

    #[test]
    fn reads_the_codings_in_order() {
        assert!(!is_coded(&HeaderMap::new()) && !is_coded(&headers(&["identity"])));
        assert!(is_coded(&headers(&["gzip"])) && is_coded(&headers(&["br"])));
        assert_eq!(codings(&HeaderMap::new()).unwrap(), vec![]);
        assert_eq!(codings(&headers(&["identity"])).unwrap(), vec![]);
        assert_eq!(codings(&headers(&["GZIP"])).unwrap(), vec![Coding::Gzip]);
        assert_eq!(
            codings(&headers(&["deflate, x-gzip"])).unwrap(),
            vec![Coding::Deflate, Coding::Gzip]
        );
        assert_eq!(
            codings(&headers(&["gzip", "deflate"])).unwrap(),
            vec![Coding::Gzip, Coding::Deflate]
        );
        let e = codings(&headers(&["br"])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(e.to_string().contains("\"br\""), "{e}");

        // Transfer codings come after the content codings; hyper undid `chunked`.
        let mut h = headers(&["deflate"]);
        let value = HeaderValue::from_static;
        h.append(http::header::TRANSFER_ENCODING, value("gzip, chunked"));
        assert_eq!(codings(&h).unwrap(), vec![Coding::Deflate, Coding::Gzip]);
        let mut h = HeaderMap::new();
        h.append(http::header::TRANSFER_ENCODING, value("Chunked"));
        assert!(!is_coded(&h));
        h.append(http::header::TRANSFER_ENCODING, value("compress"));
        let e = codings(&h).unwrap_err();
        assert!(
            e.to_string().contains("Transfer-Encoding \"compress\""),
            "{e}"
        );
    }

    /// Each coding nests one more decoder: thousands of them overflowed the stack.
    #[test]
    fn a_chain_of_codings_is_bounded() {
        let five = ["gzip"; MAX_CODINGS].join(", ");
        assert_eq!(codings(&headers(&[&five])).unwrap().len(), MAX_CODINGS);
        let mut h = headers(&[&five]);
        h.append(
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_static("gzip, chunked"),
        );
        let e = codings(&h).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(e.to_string().contains("more than 5 codings"), "{e}");
        let e = codings(&headers(&[&vec!["gzip"; 3000].join(",")])).unwrap_err();
        assert!(e.to_string().contains("more than 5 codings"), "{e}");
    }

    #[tokio::test]
    async fn undoes_gzip_and_deflate_in_bounded_pieces() {
        // Zeros inflate about a thousandfold: 8 MiB from a few KiB of gzip.
        let data = vec![0u8; 8 << 20];
        let coded = gzip(&data);
        assert!(coded.len() < 64 << 10, "{} coded bytes", coded.len());
        let (out, largest) = collect(decode(body(coded, 1000), &[Coding::Gzip], 0, false))
            .await
            .unwrap();
        assert_eq!(out.len(), data.len());
        assert!(out == data);
        assert!(largest <= DECODED_CHUNK, "a piece of {largest} bytes");

        let text: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let coded = gzip(&zlib(&text));
        let (out, _) = collect(decode(
            body(coded, 7),
            &[Coding::Deflate, Coding::Gzip],
            0,
            false,
        ))
        .await
        .unwrap();
        assert!(out == text);
    }

    /// A body that trickles in, a few coded bytes at a time, decodes in pieces as small:
    /// each must hold no more memory than its bytes, or the 4 MiB a manifest is held back
    /// up to would pin 64 KiB per piece (gigabytes for pieces of a few bytes).
    #[tokio::test]
    async fn small_decoded_pieces_hold_no_more_than_their_bytes() {
        let data: Vec<u8> = (0..32u32 << 10).map(|i| (i * 131 % 251) as u8).collect();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        e.write_all(&data).unwrap();
        let coded = e.finish().unwrap();
        // Each piece after a wait, as from a socket: the decoder hands on what it has.
        let trickle = body(coded, 64)
            .then(|piece| async {
                tokio::task::yield_now().await;
                piece
            })
            .boxed();
        let mut s = decode(trickle, &[Coding::Gzip], 0, false);
        let (mut out, mut pieces, mut held) = (Vec::new(), 0, 0);
        while let Some(chunk) = s.try_next().await.unwrap() {
            out.extend_from_slice(&chunk);
            pieces += 1;
            held += match chunk.try_into_mut() {
                Ok(unique) => unique.capacity(),
                // Shares its memory with other pieces: counted by its length.
                Err(shared) => shared.len(),
            };
        }
        assert!(out == data);
        assert!(pieces > 100, "{pieces} pieces");
        assert!(
            held <= 2 * data.len(),
            "{held} bytes held for {}",
            data.len()
        );
    }

    /// An error's words read coded: a bomb stops at the limit, a prefix cut by the read
    /// shows what decodes of it, and a body that is no gzip shows as it came if text.
    #[tokio::test]
    async fn readable_keeps_the_decoded_start_within_the_limit() {
        let bomb = Bytes::from(gzip(&vec![b'a'; 8 << 20]));
        let out = readable(bomb, Ok(vec![Coding::Gzip]), 64 << 10).await;
        assert_eq!(out.len(), 64 << 10);
        let page: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut coded = gzip(&page);
        coded.truncate(coded.len() / 2);
        let out = readable(coded.into(), Ok(vec![Coding::Gzip]), 1 << 20).await;
        assert!(!out.is_empty() && page.starts_with(&out), "{}", out.len());
        let plain = Bytes::from_static(b"{\"errors\":[]}");
        let out = readable(plain.clone(), Ok(vec![Coding::Gzip]), 1 << 20).await;
        assert_eq!(out, plain);
        let binary = Bytes::from_static(b"\xff\xfe not text");
        let out = readable(binary, Ok(vec![Coding::Gzip]), 1 << 20).await;
        assert!(out.is_empty());
    }

    /// Text decoded past the limit is cut where the limit falls, which may be inside a
    /// character: that body is still text, shown up to its last whole character. Taken for
    /// bytes that are no text, a page in the server's language longer than 64 KiB showed
    /// none of its words.
    #[tokio::test]
    async fn readable_keeps_text_cut_inside_a_character() {
        let page = format!("x{}", "é".repeat(40_000));
        let coded = Bytes::from(gzip(page.as_bytes()));
        let out = readable(coded, Ok(vec![Coding::Gzip]), 1 << 16).await;
        assert_eq!(
            out.len(),
            (1 << 16) - 1,
            "the last, cut, character is left out"
        );
        assert!(page.as_bytes().starts_with(&out));
        std::str::from_utf8(&out).expect("text");
    }

    /// A body labelled `gzip, gzip` but coded once (a proxy adding the label a second
    /// time) showed no words at all: the inner gzip failed on text, and the body as it
    /// came is no text. What decodes, layer by layer, is shown.
    #[tokio::test]
    async fn readable_shows_what_decodes_of_a_body_labelled_with_more_codings_than_it_has() {
        let words = b"{\"errors\":[{\"code\":\"DENIED\",\"message\":\"not yours\"}]}";
        let once = Bytes::from(gzip(words));
        let out = readable(once.clone(), Ok(vec![Coding::Gzip, Coding::Gzip]), 1 << 20).await;
        assert_eq!(out, &words[..]);
        // Coded twice as labelled, both are undone.
        let twice = Bytes::from(gzip(&gzip(words)));
        let out = readable(twice, Ok(vec![Coding::Gzip, Coding::Gzip]), 1 << 20).await;
        assert_eq!(out, &words[..]);
        // Decoded to bytes that are no text, nothing is shown.
        let binary = Bytes::from(gzip(b"\xff\xfe\x00 not text"));
        let out = readable(binary, Ok(vec![Coding::Gzip, Coding::Gzip]), 1 << 20).await;
        assert!(out.is_empty(), "{out:?}");
    }

    #[tokio::test]
    async fn concatenated_gzip_members_are_one_body() {
        let mut coded = gzip(b"hello ");
        coded.extend(gzip(b"world"));
        let (out, _) = collect(decode(body(coded, 3), &[Coding::Gzip], 0, false))
            .await
            .unwrap();
        assert_eq!(out, b"hello world");
    }

    #[tokio::test]
    async fn drops_the_skipped_prefix_after_decoding() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (out, _) = collect(decode(
            body(gzip(&data), 4096),
            &[Coding::Gzip],
            70_001,
            false,
        ))
        .await
        .unwrap();
        assert!(out == data[70_001..]);
    }

    #[tokio::test]
    async fn bad_coded_bytes_and_broken_bodies_are_told_apart() {
        let mut coded = gzip(&[7u8; 100_000]);
        let len = coded.len();
        coded[len / 2] ^= 0xff;
        coded[len / 2 + 1] ^= 0xff;
        let e = collect(decode(body(coded, 100), &[Coding::Gzip], 0, false))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(e.to_string().contains("gzip coding does not decode"), "{e}");

        let coded = gzip(&[7u8; 100_000]);
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from(coded[..10].to_vec())),
            Err(Error::new(ErrorKind::Connect, "connection reset")),
        ])
        .boxed();
        let e = collect(decode(broken, &[Coding::Gzip], 0, false))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connect);
        assert!(e.to_string().contains("connection reset"), "{e}");
    }

    #[tokio::test]
    async fn a_body_cut_short_does_not_pass_for_whole() {
        let coded = gzip(&[1u8; 100_000]);
        let cut = coded[..coded.len() - 4].to_vec();
        let e = collect(decode(body(cut.clone(), 500), &[Coding::Gzip], 0, false))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        // Ending where its connection closed, it was cut there: a break, asked again.
        let e = collect(decode(body(cut, 500), &[Coding::Gzip], 0, true))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connect, "{e}");
        assert!(e.is_transient(), "{e}");
    }

    #[test]
    fn a_body_without_length_or_chunks_ends_at_close() {
        let h1 = http::Version::HTTP_11;
        let with = |name: http::header::HeaderName, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            h
        };
        assert!(ends_at_close(h1, &HeaderMap::new()));
        assert!(ends_at_close(http::Version::HTTP_10, &HeaderMap::new()));
        assert!(!ends_at_close(http::Version::HTTP_2, &HeaderMap::new()));
        assert!(!ends_at_close(
            h1,
            &with(http::header::CONTENT_LENGTH, "10")
        ));
        let te = http::header::TRANSFER_ENCODING;
        assert!(!ends_at_close(h1, &with(te.clone(), "gzip, Chunked")));
        assert!(ends_at_close(h1, &with(te, "gzip")));
    }
}
