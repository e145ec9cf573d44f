//! What reading a download costs in allocations, per chunk: the path every blob's content
//! takes, a thousand small blobs or a large one in many chunks.

use bytes::Bytes;
use futures::StreamExt;

use dist::digest::Algorithm;
use dist::fetch::Meta;
use dist::{Digest, Download, Object};

#[path = "support/allocations.rs"]
mod allocations;

/// A chunk handed out costs no allocation, whatever its bytes are held in. Keeping a
/// chunk for the next call (for `chunk` to be cancel-safe) by a clone cost one per chunk
/// over a `Vec` (a layout's file read, a gzip body decoded, a ranged part): a clone of
/// such `Bytes` allocates their shared header.
#[tokio::test(flavor = "current_thread")]
async fn chunks_cost_no_allocation_each() {
    const CHUNKS: usize = 1000;
    let parts: Vec<Bytes> = (0..CHUNKS)
        .map(|i| Bytes::from(vec![i as u8; 4096]))
        .collect();
    let whole = parts.concat();
    let digest = Digest::of(Algorithm::Sha256, &whole);
    let meta = Meta {
        object: Object::Digest(digest.clone()),
        expected: Some(digest.clone()),
        size: Some(whole.len() as u64),
        media_type: None,
        url: "http://127.0.0.1/v2/x/blobs/sha256:ab".into(),
        limit: None,
    };
    let body = futures::stream::iter(parts.into_iter().map(Ok)).boxed();
    let mut download = Download::new(meta, body);
    let mut got = 0;
    let before = allocations::so_far();
    while let Some(chunk) = download.chunk().await.unwrap() {
        got += chunk.len();
    }
    let spent = allocations::so_far() - before;
    assert_eq!(got, whole.len());
    assert_eq!(download.digest(), Some(&digest));
    assert!(
        spent < CHUNKS / 10,
        "{spent} allocations for {CHUNKS} chunks"
    );
}
