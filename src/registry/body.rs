//! A response body that resumes with `Range` when the connection breaks part-way.

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use hyper::body::Incoming;

use super::RegistryRemote;
use crate::error::{Error, ErrorKind, Result};

/// The body of one response, and how to ask for the rest of it.
pub(crate) struct Resumable {
    pub(crate) remote: RegistryRemote,
    /// Which of the remote's hosts answered (resumes go to the same one).
    pub(crate) host: usize,
    pub(crate) body: Incoming,
    /// Where to ask for the rest; `None` when the content has no fixed address (a tag
    /// without an announced digest), which cannot be resumed safely.
    pub(crate) resume_url: Option<Uri>,
    pub(crate) headers: HeaderMap,
    /// Bytes handed out so far.
    pub(crate) offset: u64,
    /// Bytes still to drop from the current body: a server that ignored our Range sends
    /// the whole content again, and what we already handed out must not repeat.
    pub(crate) skip: u64,
    /// Breaks since the body last made progress: what `--retries` bounds.
    pub(crate) resumes: u32,
    /// `offset` at the last break (or at the start).
    pub(crate) progress_mark: u64,
}

/// New bytes since the last break that make a break count as the first again. A slow
/// link that drops every few hundred MiB still gets a large blob through (containerd
/// counts only errors without progress too), while a server that breaks every body
/// within its first bytes runs out of retries as before. The count is finite: resumes
/// only happen for content of a known size.
const PROGRESS: u64 = 1 << 20;

impl Resumable {
    pub(crate) fn into_stream(self) -> crate::fetch::ByteStream {
        futures::stream::try_unfold(self, |mut s| async move {
            let next = s.next().await?;
            Ok(next.map(|c| (c, s)))
        })
        .boxed()
    }

    async fn next(&mut self) -> Result<Option<Bytes>> {
        let transport = self.remote.host(self.host).transport.clone();
        loop {
            match transport.next_chunk(&mut self.body).await {
                Ok(Some(mut chunk)) => {
                    if self.skip > 0 {
                        let drop = self.skip.min(chunk.len() as u64) as usize;
                        self.skip -= drop as u64;
                        chunk = chunk.slice(drop..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    self.offset += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    let Some(url) = self.resume_url.clone() else {
                        return Err(e);
                    };
                    if self.offset >= self.progress_mark.saturating_add(PROGRESS) {
                        self.resumes = 0;
                    }
                    if !e.is_transient() || self.resumes >= self.remote.retry_policy().retries {
                        return Err(e);
                    }
                    self.resumes += 1;
                    self.progress_mark = self.offset;
                    // Paced like any retry: a registry that resets connections while it
                    // restarts would otherwise use up every resume in milliseconds.
                    let pause = self.remote.retry_policy().backoff(self.resumes - 1);
                    tokio::time::sleep(pause).await;
                    tracing::debug!(url = %url, offset = self.offset, error = %e, "resuming body");
                    if let Err(again) = self.reopen(url).await {
                        if again.status() == Some(416) {
                            // Nothing lies past what arrived: the body broke after its
                            // last byte. Verification of digest and size has the last word.
                            return Ok(None);
                        }
                        let msg = format!(
                            "body interrupted after {} bytes ({}), and resuming failed: {}",
                            self.offset,
                            e.reason(),
                            again.reason()
                        );
                        let mut err = Error::new(again.kind(), msg);
                        if let Some(status) = again.status() {
                            err = err.with_status(status);
                        }
                        return Err(err);
                    }
                }
            }
        }
    }

    async fn reopen(&mut self, url: Uri) -> Result<()> {
        let (body, skip) =
            open_at(&self.remote, self.host, &url, &self.headers, self.offset).await?;
        self.body = body;
        self.skip = skip;
        Ok(())
    }

    /// The content at `url` from byte `offset` on, resumable like a first response: what a
    /// split download goes back to when the server does not answer ranges after all.
    pub(crate) async fn from_offset(
        remote: RegistryRemote,
        host: usize,
        url: Uri,
        headers: HeaderMap,
        offset: u64,
    ) -> Result<crate::fetch::ByteStream> {
        let (body, skip) = open_at(&remote, host, &url, &headers, offset).await?;
        let resumable = Resumable {
            remote,
            host,
            body,
            resume_url: Some(url),
            headers,
            offset,
            skip,
            resumes: 0,
            progress_mark: offset,
        };
        Ok(resumable.into_stream())
    }
}

/// Asks for the content at `url` from byte `offset` on. Returns the body and how many of
/// its bytes to drop: none for a `206` that starts at `offset`; `offset` when the server
/// ignored `Range` and sends the whole content again.
async fn open_at(
    remote: &RegistryRemote,
    host: usize,
    url: &Uri,
    headers: &HeaderMap,
    offset: u64,
) -> Result<(Incoming, u64)> {
    let mut headers = headers.clone();
    let range = format!("bytes={offset}-");
    headers.insert(
        http::header::RANGE,
        HeaderValue::from_str(&range).expect("ascii"),
    );
    let reply = remote
        .request(host, Method::GET, url.clone(), &headers)
        .await?;
    if reply.response.status() != StatusCode::PARTIAL_CONTENT {
        return Ok((reply.response.into_body(), offset));
    }
    if content_range_start(reply.response.headers()) != Some(offset) {
        return Err(wrong_range(offset, reply.response.headers()).with_url(url));
    }
    Ok((reply.response.into_body(), 0))
}

/// A `206` that does not start at `offset`, where the rest was asked for.
pub(crate) fn wrong_range(offset: u64, headers: &HeaderMap) -> Error {
    let got = match headers.get(http::header::CONTENT_RANGE) {
        Some(v) => format!(
            "Content-Range: {}",
            crate::server_text::one_line(&String::from_utf8_lossy(v.as_bytes()))
        ),
        None => "no Content-Range".to_string(),
    };
    Error::new(
        ErrorKind::Protocol,
        format!("asked for bytes={offset}-, got a 206 with {got}"),
    )
}

/// The range a `206` answer carries: `Content-Range: bytes 100-199/1000` → (100, 199).
pub(crate) fn content_range(headers: &HeaderMap) -> Option<(u64, u64)> {
    let value = headers.get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?.split('/').next()?;
    let (first, last) = range.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
}

/// Where the range a `206` answer carries starts: `Content-Range: bytes 100-199/1000` → 100.
pub(crate) fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

/// The whole content's size a `206` answer states: `Content-Range: bytes 100-199/1000` →
/// 1000 (`None` for `*`, unknown).
pub(crate) fn content_range_total(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    value
        .trim()
        .strip_prefix("bytes ")?
        .rsplit_once('/')?
        .1
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_range_is_told_as_the_server_sent_it() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            wrong_range(9500, &headers).to_string(),
            "asked for bytes=9500-, got a 206 with no Content-Range"
        );
        headers.insert(
            http::header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 10-99/100"),
        );
        assert_eq!(
            wrong_range(9500, &headers).to_string(),
            "asked for bytes=9500-, got a 206 with Content-Range: bytes 10-99/100"
        );
    }

    #[test]
    fn parses_content_range() {
        let start = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_RANGE,
                HeaderValue::from_str(value).unwrap(),
            );
            content_range_start(&headers)
        };
        assert_eq!(start("bytes 100-199/1000"), Some(100));
        assert_eq!(start("bytes 0-0/*"), Some(0));
        assert_eq!(start("items 1-2/3"), None);
        assert_eq!(content_range_start(&HeaderMap::new()), None);
        let total = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_RANGE,
                HeaderValue::from_str(value).unwrap(),
            );
            content_range_total(&headers)
        };
        assert_eq!(total("bytes 100-199/1000"), Some(1000));
        assert_eq!(total("bytes 0-0/*"), None);
        assert_eq!(total("bytes 5-9"), None);
    }
}
