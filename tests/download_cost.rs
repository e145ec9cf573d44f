//! What reading a download costs in allocations, per chunk: the path every blob's content
//! takes, a thousand small blobs or a large one in many chunks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::StreamExt;

use dist::digest::Algorithm;
use dist::fetch::Meta;
use dist::{Digest, Download, Object};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: the system allocator's own calls, counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

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
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    while let Some(chunk) = download.chunk().await.unwrap() {
        got += chunk.len();
    }
    let spent = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(got, whole.len());
    assert_eq!(download.digest(), Some(&digest));
    assert!(
        spent < CHUNKS / 10,
        "{spent} allocations for {CHUNKS} chunks"
    );
}
