//! Parallel ranged fetch for large blobs on slow connections.
//!
//! Some servers cap the bandwidth of each connection (object stores, CDNs, proxies); one
//! stream then crawls while the link is idle. A large blob whose server honours `Range`
//! is therefore *probed*: the first stream runs alone for a few MiB, and only if it is
//! slower than [`RangeOptions::slow_below`] is the rest split into parts fetched
//! concurrently. Parts are handed out strictly in order through a bounded window (at most
//! `streams - 1` parts buffered), so the digest is still computed over the content in
//! order and memory stays bounded. On a fast link (loopback, a LAN registry) nothing
//! changes: extra requests would only cost the registry CPU.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use crate::error::{Error, ErrorKind, Result};
use crate::registry::RegistryRemote;
use crate::transport;

/// When and how to split a download into ranges.
#[derive(Debug, Clone)]
pub struct RangeOptions {
    /// Concurrent streams at most for one blob; 1 turns ranged fetching off.
    pub streams: usize,
    /// Blobs smaller than this are always fetched with one stream.
    pub threshold: u64,
    /// Size of one part.
    pub part_size: u64,
    /// How much the first stream receives before its speed is judged.
    pub probe: u64,
    /// A first stream slower than this (bytes per second) triggers parallel parts.
    pub slow_below: u64,
}

impl Default for RangeOptions {
    fn default() -> Self {
        RangeOptions {
            streams: 4,
            threshold: 64 << 20,
            part_size: 2 << 20,
            probe: 4 << 20,
            slow_below: 128 << 20,
        }
    }
}

impl RangeOptions {
    /// Whether a blob of `size` whose server answered with `headers` may be split.
    pub fn applies(&self, size: Option<u64>, headers: &HeaderMap) -> bool {
        let ranges = headers
            .get(http::header::ACCEPT_RANGES)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
        self.streams > 1 && ranges && size.is_some_and(|s| s >= self.threshold)
    }
}

/// What the first stream does while the probe runs and after it.
enum Phase {
    /// Judging the first stream's speed.
    Probing,
    /// Fast enough: the first stream delivers everything.
    Single,
    /// Slow: the first stream delivers up to `cut`, then the parts deliver the rest.
    Split {
        cut: u64,
        parts: BoxStream<'static, Result<Bytes>>,
    },
}

/// An in-order byte stream that may switch from one stream to parallel parts.
pub(crate) struct Adaptive {
    first: Option<BoxStream<'static, Result<Bytes>>>,
    remote: RegistryRemote,
    /// The host that served the first stream; the parts go to it too.
    host: usize,
    url: Uri,
    headers: HeaderMap,
    total: u64,
    opts: RangeOptions,
    offset: u64,
    started: Instant,
    phase: Phase,
}

impl Adaptive {
    /// Wraps the first response's `body` (a resuming stream of the whole blob, `total`
    /// bytes) for `url`.
    pub(crate) fn new(
        first: BoxStream<'static, Result<Bytes>>,
        remote: RegistryRemote,
        host: usize,
        url: Uri,
        headers: HeaderMap,
        total: u64,
        opts: RangeOptions,
    ) -> Adaptive {
        Adaptive {
            first: Some(first),
            remote,
            host,
            url,
            headers,
            total,
            opts,
            offset: 0,
            started: Instant::now(),
            phase: Phase::Probing,
        }
    }

    /// The stream of the whole content, in order.
    pub(crate) fn into_stream(self) -> BoxStream<'static, Result<Bytes>> {
        stream::try_unfold(self, |mut s| async move {
            let next = s.next().await?;
            Ok(next.map(|c| (c, s)))
        })
        .boxed()
    }

    async fn next(&mut self) -> Result<Option<Bytes>> {
        if let Phase::Split { cut, parts } = &mut self.phase {
            if self.offset >= *cut {
                self.first = None; // closes the first connection
                return parts.next().await.transpose();
            }
        }
        let Some(first) = self.first.as_mut() else {
            return Ok(None);
        };
        let Some(mut chunk) = first.next().await.transpose()? else {
            return Ok(None);
        };
        if let Phase::Split { cut, .. } = &self.phase {
            let room = (*cut - self.offset) as usize;
            if chunk.len() > room {
                chunk.truncate(room);
            }
        }
        self.offset += chunk.len() as u64;
        if matches!(self.phase, Phase::Probing) && self.offset >= self.opts.probe {
            self.decide();
        }
        Ok(Some(chunk))
    }

    fn decide(&mut self) {
        let elapsed = self.started.elapsed().max(Duration::from_millis(1));
        let rate = (self.offset as f64 / elapsed.as_secs_f64()) as u64;
        let part = self.opts.part_size.max(1);
        // The first stream keeps going to the end of the part it is in.
        let cut = (self.offset / part + 1) * part;
        if rate >= self.opts.slow_below || cut + part >= self.total {
            tracing::debug!(url = %self.url, rate_mb_s = rate >> 20, "single stream is fast enough");
            self.phase = Phase::Single;
            return;
        }
        tracing::debug!(url = %self.url, rate_mb_s = rate >> 20, streams = self.opts.streams, "slow stream; fetching the rest in parallel ranges");
        let ranges: Vec<(u64, u64)> = (cut..self.total)
            .step_by(part as usize)
            .map(|start| (start, (start + part).min(self.total) - 1))
            .collect();
        let (remote, host, url, headers) = (
            self.remote.clone(),
            self.host,
            self.url.clone(),
            self.headers.clone(),
        );
        let parts = stream::iter(ranges)
            .map(move |(start, end)| {
                let (remote, url, headers) = (remote.clone(), url.clone(), headers.clone());
                // Each part runs as its own task so parts download in parallel with the
                // hashing of earlier ones.
                let mut task = PartTask(tokio::spawn(async move {
                    fetch_part(&remote, host, &url, &headers, start, end).await
                }));
                async move {
                    (&mut task.0).await.map_err(|e| {
                        Error::new(ErrorKind::Interrupted, "part task ended").with_cause(e)
                    })?
                }
            })
            .buffered(self.opts.streams - 1)
            .boxed();
        self.phase = Phase::Split { cut, parts };
    }
}

/// A part being fetched; dropped with the download (cancelled, or failed verification), it
/// stops instead of finishing a transfer nobody will read.
struct PartTask(tokio::task::JoinHandle<Result<Bytes>>);

impl Drop for PartTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fetches bytes `start..=end` completely, retrying the part on transient failures.
async fn fetch_part(
    remote: &RegistryRemote,
    host: usize,
    url: &Uri,
    headers: &HeaderMap,
    start: u64,
    end: u64,
) -> Result<Bytes> {
    let want = (end - start + 1) as usize;
    let mut attempt = 0;
    loop {
        let mut h = headers.clone();
        h.insert(
            http::header::RANGE,
            HeaderValue::from_str(&format!("bytes={start}-{end}")).expect("ascii"),
        );
        let result: Result<Bytes> = async {
            let mut reply = remote.request(host, Method::GET, url.clone(), h).await?;
            if reply.response.status() != StatusCode::PARTIAL_CONTENT {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("asked for bytes {start}-{end}, server answered {}", reply.response.status()),
                ));
            }
            let got_start = reply
                .response
                .headers()
                .get(http::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::registry::content_range_start);
            if got_start != Some(start) {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("asked for bytes {start}-{end}, got Content-Range starting at {got_start:?}"),
                ));
            }
            let body = transport::read_sized(&remote.host(host).transport, reply.response.body_mut(), want).await?;
            if body.len() != want {
                return Err(Error::new(
                    ErrorKind::Connect,
                    format!("part {start}-{end} ended after {} bytes", body.len()),
                ));
            }
            Ok(body)
        }
        .await;
        match result {
            Err(e) if e.is_transient() && attempt < remote.retry_policy().retries => {
                attempt += 1;
                tokio::time::sleep(remote.retry_policy().backoff(attempt - 1)).await;
            }
            other => return other.map_err(|e| e.with_url(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_only_to_large_ranged_blobs() {
        let o = RangeOptions::default();
        let mut h = HeaderMap::new();
        assert!(!o.applies(Some(1 << 30), &h));
        h.insert(
            http::header::ACCEPT_RANGES,
            HeaderValue::from_static("bytes"),
        );
        assert!(o.applies(Some(1 << 30), &h));
        assert!(!o.applies(Some(1 << 20), &h));
        assert!(!o.applies(None, &h));
        let off = RangeOptions { streams: 1, ..o };
        assert!(!off.applies(Some(1 << 30), &h));
    }
}
