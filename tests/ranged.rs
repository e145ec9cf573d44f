//! Parallel ranged fetch through the library: a slow connection makes a large blob switch
//! to concurrent parts, delivered in order and verified; a fast one stays a single stream.

mod support;

use std::time::Duration;

use dist::auth::CredentialSource;
use dist::ranged::RangeOptions;
use dist::registry::RegistryRemote;
use dist::retry::RetryPolicy;
use dist::transport::{Transport, TransportOptions};
use dist::{Hints, Object, Remote};
use support::cli::{bytes, Dist};
use support::fake::{FakeRegistry, Fault, RandomFaults};

fn small_ranges() -> RangeOptions {
    let mut ranges = RangeOptions::default();
    (ranges.streams, ranges.threshold, ranges.part_size) = (4, 1 << 20, 256 << 10);
    (ranges.probe, ranges.probe_time) = (128 << 10, Duration::from_millis(5));
    (ranges.slow_below, ranges.fast_link) = (50 << 20, 200 << 20);
    ranges
}

/// [`small_ranges`] with two streams at most.
fn two_streams() -> RangeOptions {
    let mut ranges = small_ranges();
    ranges.streams = 2;
    ranges
}

async fn fetch_all(reg: &FakeRegistry, digest: &str, ranges: RangeOptions) -> Vec<u8> {
    fetch_with(reg, digest, ranges, TransportOptions::default()).await
}

fn remote_for(reg: &FakeRegistry, ranges: RangeOptions, opts: TransportOptions) -> RegistryRemote {
    let repo = format!("{}/team/app", reg.host()).parse().unwrap();
    let transport = Transport::new(opts).unwrap();
    RegistryRemote::new(
        repo,
        transport,
        CredentialSource::None,
        RetryPolicy::default(),
    )
    .with_ranges(ranges)
}

async fn fetch_with(
    reg: &FakeRegistry,
    digest: &str,
    ranges: RangeOptions,
    opts: TransportOptions,
) -> Vec<u8> {
    fetch_verified(&remote_for(reg, ranges, opts), digest).await
}

/// A registry and a mirror both holding the same 3 MiB blob (from `seed`), its digest.
fn on_both(seed: u64) -> (FakeRegistry, FakeRegistry, Vec<u8>, String) {
    let reg = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let data = bytes(seed, 3 << 20);
    let digest = reg.blob("team/app", &data);
    mirror.blob("team/app", &data);
    (reg, mirror, data, digest)
}

/// `retries`, with short pauses between them.
fn quick_retries(retries: u32) -> RetryPolicy {
    RetryPolicy {
        retries,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(60),
    }
}

/// `team/app` at `host`, split by `ranges`, with two quick retries.
fn two_retries(host: &str, ranges: RangeOptions) -> RegistryRemote {
    let repo = format!("{host}/team/app").parse().unwrap();
    let transport = Transport::new(TransportOptions::default()).unwrap();
    RegistryRemote::new(repo, transport, CredentialSource::None, quick_retries(2))
        .with_ranges(ranges)
}

/// Reads `digest` through `remote` to its end, or to its error.
async fn read_to_end(remote: &RegistryRemote, digest: &str) -> dist::Result<()> {
    let object: Object = digest.parse().unwrap();
    let mut download = remote.fetch(&object, &Hints::default()).await?;
    while download.chunk().await?.is_some() {}
    Ok(())
}

/// The error that ends reading `digest` through `remote`, given `size` alone (a `size:`
/// hint): the blob must not end without one.
async fn error_given_size(remote: &RegistryRemote, digest: &str, size: u64) -> dist::Error {
    let object: Object = digest.parse().unwrap();
    let mut hints = Hints::default();
    hints.size = Some(size);
    let mut download = remote.fetch(&object, &hints).await.unwrap();
    loop {
        match download.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the blob ended"),
            Err(e) => return e,
        }
    }
}

/// `e` is a size mismatch of parts asked for (`bytes=`) against the 3 MiB the server
/// itself declared: its own word contradicted, said as the server's.
fn assert_parts_contradicted_the_server(e: &dist::Error) {
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!("where the server declared {} bytes", 3 << 20);
    let e = e.to_string();
    assert!(e.contains(&said) && e.contains("asked for bytes="), "{e}");
}

/// `e` says the one stream's `416` (to `bytes=N-`, not a part's `bytes=N-M`) contradicts
/// the 3 MiB the server declared.
fn assert_one_stream_contradicted_the_server(e: &dist::Error) {
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let (one_stream, said) = (
        "-, got a 416 (the content ends at byte ",
        "), where the server declared 3145728 bytes",
    );
    let e = e.to_string();
    assert!(e.contains(one_stream) && e.contains(said), "{e}");
}

/// `reg`'s repository with `mirror` tried first, split into small parts, with `retries`
/// and short pauses.
fn mirrored(reg: &FakeRegistry, mirror: &FakeRegistry, retries: u32) -> RegistryRemote {
    use dist::registry::host::Mirror;
    let transport = Transport::new(TransportOptions::default()).unwrap();
    let m = Mirror::new(mirror.url(), transport.clone());
    let repo = format!("{}/team/app", reg.host()).parse().unwrap();
    RegistryRemote::new(
        repo,
        transport,
        CredentialSource::None,
        quick_retries(retries),
    )
    .with_mirrors(&[m], CredentialSource::None)
    .unwrap()
    .with_ranges(small_ranges())
}

/// The whole content of `digest` through `remote`, which verified it.
async fn fetch_verified(remote: &RegistryRemote, digest: &str) -> Vec<u8> {
    let object: Object = digest.parse().unwrap();
    let mut download = remote.fetch(&object, &Hints::default()).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = download.chunk().await.unwrap() {
        out.extend_from_slice(&chunk);
    }
    assert_eq!(
        download.digest().unwrap().to_string(),
        digest,
        "verified over the whole content"
    );
    out
}

/// `count` blobs of `len` bytes in `reg` (seeds from `seed` on), each answered with
/// `fault()` every time it is asked for.
fn blobs_answered_with(
    reg: &FakeRegistry,
    count: u64,
    seed: u64,
    len: usize,
    fault: impl Fn() -> Fault,
) -> Vec<(Vec<u8>, String)> {
    (0..count)
        .map(|i| {
            let data = bytes(seed + i, len);
            let digest = reg.blob("team/app", &data);
            reg.set_fault_for_every(&digest, fault());
            (data, digest)
        })
        .collect()
}

/// Fetches every blob at once through `remote`: each verified, and whole.
async fn fetch_at_once(remote: &RegistryRemote, blobs: &[(Vec<u8>, String)]) {
    let fetches = blobs
        .iter()
        .map(|(_, digest)| fetch_verified(remote, digest));
    let got = futures::future::join_all(fetches).await;
    for ((data, _), got) in blobs.iter().zip(got) {
        assert!(&got == data, "content in order");
    }
}

/// About 8 MB/s per connection, on every request for `digest`: far below the 50 MiB/s the
/// options above call slow.
fn throttle(reg: &FakeRegistry, digest: &str) {
    reg.set_fault_for_every(digest, slow());
}

/// 1.6 MB/s, far below `small_ranges`' 50 MiB/s. The probe counts the time spent waiting
/// for the network, which a loaded machine shortens (a reader that falls behind finds the
/// next chunks there already): with 2 ms between chunks, a test once saw the stream judged
/// fast and never split. 10 ms leaves a wide margin.
fn slow() -> Fault {
    Fault::SlowBody {
        chunk: 16 << 10,
        delay: Duration::from_millis(10),
    }
}

/// A registry holding `len` bytes made from `seed`, the bytes and their digest. The first
/// stream of the blob is slow, so that a fetch splits the rest into parts; every later
/// answer meets `every`, but the ones right after the first meet `next`, in turn.
fn split_blob(
    seed: u64,
    len: usize,
    every: Fault,
    next: &[Fault],
) -> (FakeRegistry, Vec<u8>, String) {
    let reg = FakeRegistry::start();
    let data = bytes(seed, len);
    let digest = reg.blob("team/app", &data);
    reg.set_fault_for_every(&digest, every);
    // Queued faults win over the persistent one.
    for fault in std::iter::once(slow()).chain(next.iter().cloned()) {
        reg.push_fault(&digest, fault);
    }
    (reg, data, digest)
}

fn range_requests(reg: &FakeRegistry) -> Vec<String> {
    reg.requests().into_iter().filter_map(|r| r.range).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_stream_switches_to_parallel_parts() {
    let reg = FakeRegistry::start();
    let data = bytes(77, 3 << 20);
    let digest = reg.blob("team/app", &data);
    throttle(&reg, &digest);
    let got = fetch_all(&reg, &digest, small_ranges()).await;
    assert_eq!(got, data);
    let ranges = range_requests(&reg);
    // 3 MiB in 256 KiB parts, the first stream keeping the first part or so.
    assert!(ranges.len() >= 8, "parts were fetched by range: {ranges:?}");
    // Four streams at once: three parts start beside the first stream, a fourth when it
    // reaches its cut. The server may see one more for a moment, as the first stream's
    // socket closes while the fourth part's opens.
    let most = reg.max_open_connections();
    assert!((4..=5).contains(&most), "connections at once: {most}");
}

/// A download that carries on after a partial one asks for the rest alone: on a slow link
/// that rest is split too, its parts starting after the prefix, and the digest still covers
/// the whole blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_after_a_prefix_is_split_and_verified_whole() {
    use dist::digest::{Algorithm, Hasher};
    use dist::fetch::Prefix;
    let reg = FakeRegistry::start();
    let data = bytes(79, 3 << 20);
    let digest = reg.blob("team/app", &data);
    throttle(&reg, &digest);
    let kept = 1_000_000;
    let mut hasher = Hasher::new(Algorithm::Sha256);
    hasher.update(&data[..kept]);
    let prefix = Prefix {
        len: kept as u64,
        hasher,
    };
    let remote = remote_for(&reg, small_ranges(), TransportOptions::default());
    let object: Object = digest.parse().unwrap();
    let mut download = remote
        .fetch_rest(&object, &Hints::default(), prefix)
        .await
        .unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = download.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(rest == data[kept..], "only the rest is handed out");
    assert_eq!(download.digest().unwrap().to_string(), digest);
    assert_eq!(download.received(), data.len() as u64);
    let ranges = range_requests(&reg);
    assert_eq!(ranges[0], "bytes=1000000-");
    assert!(ranges.len() >= 4, "the rest was split: {ranges:?}");
    let starts: Vec<u64> = ranges[1..]
        .iter()
        .map(|r| {
            r["bytes=".len()..]
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        starts.iter().all(|&s| s > kept as u64),
        "parts start after the prefix: {ranges:?}"
    );
}

/// However many blobs are fetched at once, their parts share one budget of `streams`
/// parts: four slow blobs with four streams each would otherwise hold sixteen connections
/// and sixteen parts in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_downloads_share_one_budget_of_parts() {
    let reg = FakeRegistry::start();
    let blobs = blobs_answered_with(&reg, 4, 90, 3 << 20, slow);
    let remote = remote_for(&reg, small_ranges(), TransportOptions::default());
    fetch_at_once(&remote, &blobs).await;
    assert!(!range_requests(&reg).is_empty(), "some blob was split");
    // Four first streams and four parts, plus one socket the server has not yet seen close.
    let most = reg.max_open_connections();
    assert!(most <= 9, "connections at once: {most}");
}

/// A server that advertises ranges but answers a part with the whole blob (a proxy or a
/// storage redirect that does not do ranges): the rest comes over one stream again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_answered_without_their_range_fall_back_to_one_stream() {
    let (reg, data, digest) = split_blob(81, 3 << 20, Fault::IgnoreRange, &[]);
    assert_eq!(fetch_all(&reg, &digest, small_ranges()).await, data);
    assert_parts_then_one_stream(&reg);
}

/// Once a part was answered without its range, no part starts: one did at the first
/// stream's cut, beside the one stream that took the rest over, its answer dropped. The
/// first stream is slow enough that the parts' answers come well before its cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_part_starts_after_one_was_answered_without_its_range() {
    let reg = FakeRegistry::start();
    let data = bytes(83, 3 << 20);
    let digest = reg.blob("team/app", &data);
    reg.set_fault_for_every(&digest, Fault::IgnoreRange);
    let (chunk, delay) = (16 << 10, Duration::from_millis(40));
    reg.push_fault(&digest, Fault::SlowBody { chunk, delay });
    assert_eq!(fetch_all(&reg, &digest, small_ranges()).await, data);
    assert_parts_then_one_stream(&reg);
    let ranges = range_requests(&reg);
    let parts: Vec<&String> = ranges.iter().filter(|r| !r.ends_with('-')).collect();
    // The three that start beside the first stream when it is split, before any answer.
    assert_eq!(parts.len(), 3, "{ranges:?}");
}

/// Parts answered with the whole blob under a `206` (`Content-Range: bytes 0-…/…`): the
/// rest comes over one stream, whose whole answer is taken with the bytes at hand
/// dropped. It was refused as the wrong range, and the blob failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_answered_with_the_whole_blob_fall_back_to_one_stream() {
    let (reg, data, digest) = split_blob(82, 3 << 20, Fault::WholeRange, &[]);
    assert_eq!(fetch_all(&reg, &digest, small_ranges()).await, data);
    assert_parts_then_one_stream(&reg);
}

/// Parts answered coded (a CDN node that compresses what it serves): a coded range
/// addresses coded bytes and is never spliced into the content. The rest comes over one
/// stream, decoded, as from a server that ignores ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coded_parts_fall_back_to_one_decoded_stream() {
    for fault in [Fault::Coded("gzip"), Fault::CodedWhole("gzip")] {
        // Only the first stream is plain.
        let (reg, data, digest) = split_blob(81, 3 << 20, fault.clone(), &[]);
        let got = fetch_all(&reg, &digest, small_ranges()).await;
        assert!(got == data, "{fault:?}: the content, decoded");
        let ranges = range_requests(&reg);
        assert!(
            ranges.iter().any(|r| !r.ends_with('-')),
            "{fault:?}: a part was asked for: {ranges:?}"
        );
    }
}

/// Some part was asked for, and then the rest as one open range.
fn assert_parts_then_one_stream(reg: &FakeRegistry) {
    let ranges = range_requests(reg);
    assert!(
        ranges.iter().any(|r| !r.ends_with('-')),
        "a part was asked for: {ranges:?}"
    );
    assert!(
        ranges.iter().any(|r| r.ends_with('-')),
        "the rest was asked for as one open range: {ranges:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_stream_stays_single() {
    let reg = FakeRegistry::start();
    let data = bytes(78, 3 << 20);
    let digest = reg.blob("team/app", &data);
    let mut fast = small_ranges();
    fast.slow_below = 1; // anything is fast enough
    assert_eq!(fetch_all(&reg, &digest, fast).await, data);
    assert!(range_requests(&reg).is_empty());
}

/// A fast server that stalls once, early: the probe's first window looks slow, the second
/// does not, and the blob stays one stream. (Judged on one window, a 300 ms pause of a
/// loopback registry split a 1 GiB fetch into parts: 60 MiB of peak RSS instead of 13.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stall_is_not_a_slow_link() {
    let reg = FakeRegistry::start();
    let data = bytes(82, 16 << 20);
    let digest = reg.blob("team/app", &data);
    // The pause comes 1 MiB in, inside the first window of 4 MiB, which then gets at most
    // 2.7 MiB/s. The second window would need a second of waiting to look slow: at 20 MiB/s
    // (200 ms for 4 MiB) a debug build serving itself while a build ran beside it did.
    reg.push_fault(
        &digest,
        Fault::StallAfter(1 << 20, Duration::from_millis(1500)),
    );
    let mut ranges = small_ranges();
    ranges.probe = 4 << 20;
    ranges.slow_below = 4 << 20;
    assert_eq!(fetch_all(&reg, &digest, ranges).await, data);
    assert!(
        range_requests(&reg).is_empty(),
        "split after one stall: {:?}",
        range_requests(&reg)
    );
    assert_eq!(reg.requests_for(&digest), 1);
}

/// Eight blobs at once, each paced below what the options call slow but together far above
/// `fast_link`: each stream has its share of a fast link, and parts would only add
/// connections and memory. The same pace for one blob alone is a slow link, and splits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_sharing_a_fast_link_are_not_split() {
    // Rates low enough that a debug build on a busy machine keeps up with all eight: the
    // registry serves from this process, and at 5 MiB/s a blob (40 MiB/s in all) a loaded
    // machine fell below the fast link and split one (1 full run of the binary in 6).
    let pace = || Fault::Paced {
        bytes_per_sec: 2 << 20,
        first_byte: Duration::ZERO,
    };
    let mut ranges = small_ranges();
    ranges.probe_time = Duration::from_millis(20);
    ranges.slow_below = 4 << 20;
    ranges.fast_link = 8 << 20;
    let fetch_together = |count: u64| {
        let reg = FakeRegistry::start();
        // Just past the threshold of 1 MiB below which a blob is never split.
        let blobs = blobs_answered_with(&reg, count, 100, 9 << 17, pace);
        let remote = remote_for(&reg, ranges.clone(), TransportOptions::default());
        async move {
            fetch_at_once(&remote, &blobs).await;
            range_requests(&reg)
        }
    };
    // 8 x 2 MiB/s is 16 MiB/s in all, twice the fast_link.
    let shared = fetch_together(8).await;
    assert!(shared.is_empty(), "split on a shared fast link: {shared:?}");
    let alone = fetch_together(1).await;
    assert!(!alone.is_empty(), "one blob at 2 MiB/s was not split");
}

/// A slow link whose server bursts first (a cache's first MiB, a server catching up after
/// a stall) is split once the burst is past: the stream, judged fast on its burst, was
/// never probed again, and the rest came over one slow stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_before_a_slow_stream_does_not_keep_it_from_being_split() {
    let reg = FakeRegistry::start();
    let data = bytes(109, 3 << 20);
    let digest = reg.blob("team/app", &data);
    let burst = Fault::BurstThenPaced {
        burst: 1 << 20,
        bytes_per_sec: 1 << 20,
    };
    reg.push_fault(&digest, burst);
    let mut ranges = small_ranges();
    // The burst, however slow this machine reads it, is fast; the pace after it is slow.
    ranges.slow_below = 8 << 20;
    assert_eq!(fetch_all(&reg, &digest, ranges).await, data);
    let parts = range_requests(&reg);
    assert!(
        !parts.is_empty(),
        "the slow stream after its burst was not split"
    );
}

/// A fast server read by a slow consumer: the stream is slow only because the bytes are
/// not asked for, and more connections would only hold more parts in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_not_taken_for_a_slow_server() {
    let reg = FakeRegistry::start();
    let data = bytes(80, 2 << 20);
    let digest = reg.blob("team/app", &data);
    let slow_below = 20 << 20;
    let mut ranges = small_ranges();
    ranges.slow_below = slow_below;
    // Long enough that a few late wake-ups on a busy machine stay far below the
    // 25 ms of waiting that would make the ~500 KB read by then look slow.
    ranges.probe_time = Duration::from_millis(100);
    let remote = remote_for(&reg, ranges, TransportOptions::default());
    let object: Object = digest.parse().unwrap();
    let mut download = remote.fetch(&object, &Hints::default()).await.unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    while let Some(chunk) = download.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
        // About 4 MiB/s, whatever the size of the chunks.
        let pause = Duration::from_secs_f64(chunk.len() as f64 / (4 << 20) as f64);
        tokio::time::sleep(pause).await;
    }
    assert_eq!(got, data);
    // Far below what the options call slow, measured as the consumer sees it.
    let rate = data.len() as f64 / started.elapsed().as_secs_f64();
    assert!(
        rate < slow_below as f64,
        "the consumer was not slow: {rate}"
    );
    assert!(
        range_requests(&reg).is_empty(),
        "{:?}",
        range_requests(&reg)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_part_is_retried() {
    // After the first stream, a part breaks twice.
    let next = [Fault::Status(503), Fault::DropAfter(1000)];
    let (reg, data, digest) = split_blob(79, 2 << 20, slow(), &next);
    assert_eq!(fetch_all(&reg, &digest, small_ranges()).await, data);
}

/// A part answered with another range than asked (here from its start to the end of the
/// blob, as a server that ignores where a range ends): the rest of the blob comes as one
/// stream, not a failed fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_answered_with_another_range_falls_back_to_one_stream() {
    // The first part comes back running to the end.
    let (reg, data, digest) = split_blob(83, 3 << 20, slow(), &[Fault::RangeToEnd]);
    assert_eq!(fetch_all(&reg, &digest, small_ranges()).await, data);
    assert_parts_then_one_stream(&reg);
}

/// A part answered with the range asked for, under a `Content-Range` whose total is not
/// the blob's size: the server contradicts itself, and the blob fails at once as content
/// that is not what was asked for, naming the URL and both sizes. The part was spliced
/// in, and only the digest caught it, after the whole transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_gives_the_blob_another_size_is_refused() {
    let reg = FakeRegistry::start();
    let data = bytes(86, 3 << 20);
    let digest = reg.blob("team/app", &data);
    throttle(&reg, &digest);
    // Queued faults win over the persistent one: the first stream is slow, and the first
    // part says the blob is one byte longer.
    reg.push_fault(&digest, slow());
    reg.push_fault(&digest, Fault::RangeTotal((3 << 20) + 1));
    let remote = remote_for(&reg, small_ranges(), TransportOptions::default());
    let e = read_to_end(&remote, &digest).await.unwrap_err();
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!("bytes in all, where the content is {}", 3 << 20);
    assert!(e.to_string().contains(&said), "{e}");
    assert!(e.to_string().contains(&format!("/blobs/{digest}")), "{e}");
}

/// A part whose body runs past the range its `Content-Range` names (a `Content-Length`
/// that counts more, a chunked body that goes on): it is no part of the content, as a part
/// answered with another range is not, and the rest comes as one stream. It failed the
/// object as too large, where the one stream would have served it, and failed it for
/// good: not being corruption, it was not even fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_longer_than_asked_falls_back_to_one_stream() {
    // The first part comes back with a hundred bytes more than its range.
    let (reg, data, digest) = split_blob(85, 3 << 20, slow(), &[Fault::LongerBody(100)]);
    assert_eq!(fetch_all(&reg, &digest, small_ranges()).await, data);
    assert_parts_then_one_stream(&reg);
}

/// A part whose requests keep failing gets the run's retries once, not once per retry
/// of the request: each part is asked for at most `retries + 1` times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_part_gets_the_retry_budget_once() {
    let (reg, _, digest) = split_blob(84, 2 << 20, Fault::Status(503), &[]);
    let remote = two_retries(&reg.host(), small_ranges());
    assert!(
        read_to_end(&remote, &digest).await.is_err(),
        "every part answered 503"
    );
    let mut asked = std::collections::BTreeMap::<String, usize>::new();
    for range in range_requests(&reg)
        .into_iter()
        .filter(|r| !r.ends_with('-'))
    {
        *asked.entry(range).or_default() += 1;
    }
    assert!(!asked.is_empty(), "the blob was split");
    assert!(
        asked.values().all(|&n| n <= 3),
        "requests per part: {asked:?}"
    );
}

/// A part's failed requests and its body's breaks share one budget: with `retries` 2 a
/// part is asked for at most 3 times (by its end, since a part carries on from where it
/// broke), however its failures mix. Before, each request after a break had 2 retries of
/// its own: up to 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_s_failed_requests_and_breaks_share_the_retries() {
    let reg = FakeRegistry::start();
    let data = bytes(89, 2 << 20);
    let digest = reg.blob("team/app", &data);
    reg.push_fault(&digest, slow());
    for _ in 0..100 {
        reg.push_fault(&digest, Fault::Status(503));
        reg.push_fault(&digest, Fault::DropAfter(1000));
    }
    let remote = two_retries(&reg.host(), small_ranges());
    assert!(
        read_to_end(&remote, &digest).await.is_err(),
        "every part fails or breaks"
    );
    let mut asked = std::collections::BTreeMap::<String, usize>::new();
    for range in range_requests(&reg) {
        if let Some((_, end)) = range.split_once('-').filter(|(_, end)| !end.is_empty()) {
            *asked.entry(end.to_string()).or_default() += 1;
        }
    }
    assert!(!asked.is_empty(), "the blob was split");
    assert!(
        asked.values().all(|&n| n <= 3),
        "requests per part: {asked:?}"
    );
}

/// Parts through a flaky server: some answered 503, some cut off half-way; each is
/// retried on its own and the content still arrives whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_through_random_faults_arrive_whole() {
    let reg = FakeRegistry::start();
    let data = bytes(82, 4 << 20);
    let digest = reg.blob("team/app", &data);
    reg.set_random_faults(RandomFaults {
        seed: 5,
        p_503: 0.2,
        p_drop_mid_body: 0.2,
        ..RandomFaults::default()
    });
    // Queued faults win over the dice: the first stream is slow, so the rest is split.
    reg.push_fault(&digest, slow());
    assert_eq!(fetch_all(&reg, &digest, small_ranges()).await, data);
    let counts = reg.random_fault_counts();
    assert!(
        counts.status_503 > 0 && counts.drop_mid_body > 0,
        "faults were injected into parts: {counts:?}"
    );
    assert!(range_requests(&reg).len() >= 12, "split into parts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_holds_with_parallel_parts() {
    let reg = FakeRegistry::start();
    let data = bytes(80, 3 << 20);
    let digest = reg.blob("team/app", &data);
    throttle(&reg, &digest);
    let mut opts = TransportOptions::default();
    opts.max_connections_per_host = 2;
    assert_eq!(fetch_with(&reg, &digest, small_ranges(), opts).await, data);
    assert!(!range_requests(&reg).is_empty(), "still split into parts");
    // The client never holds more than 2 sockets, but the first stream is abandoned at the
    // cut: its permit and socket go at the same moment, and the server may accept the next
    // connection before it has read that close. So the server can see one more, briefly.
    assert!(
        reg.max_open_connections() <= 3,
        "cap held: {}",
        reg.max_open_connections()
    );
    assert!(
        reg.connections() <= range_requests(&reg).len(),
        "connections were reused: {}",
        reg.connections()
    );
}

/// Parallel parts arrive as chunks as large as the queue to the store's writer thread;
/// one of them behind a few small chunks must not leave the writer asleep (it once did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_as_large_as_the_write_queue_reach_the_store() {
    let reg = FakeRegistry::start();
    let data = bytes(78, 12 << 20);
    let digest = reg.blob("team/app", &data);
    throttle(&reg, &digest);
    let mut ranges = small_ranges();
    ranges.part_size = 2 << 20;
    let remote = remote_for(&reg, ranges, TransportOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let store = dist::sink::layout::LayoutStore::open(dir.path()).unwrap();
    let object: Object = digest.parse().unwrap();
    let stored = tokio::time::timeout(Duration::from_secs(60), async {
        let mut download = remote.fetch(&object, &Hints::default()).await.unwrap();
        let mut temp = store.temp(dist::digest::Algorithm::Sha256).unwrap();
        while let Some(chunk) = download.chunk().await.unwrap() {
            temp.write(&chunk).await.unwrap();
        }
        temp.commit(download.digest().unwrap()).await.unwrap()
    })
    .await
    .expect("the fetch into the store finished");
    assert!(
        range_requests(&reg).len() >= 3,
        "fetched in parts: {:?}",
        range_requests(&reg)
    );
    assert!(std::fs::read(stored).unwrap() == data, "stored content");
}

/// Through the command line, with its defaults (blobs of 64 MiB and more, 8 MiB parts):
/// four slow blobs on four jobs. Each job holds a connection for its blob's first stream;
/// the parts need connections beyond those, or they would only wait for a job to end.
#[test]
fn the_worker_has_connections_for_parts_beside_every_job() {
    let reg = FakeRegistry::start();
    let digests: Vec<String> = (0..4)
        .map(|i| {
            let digest = reg.blob("team/app", vec![i as u8 + 1; 64 << 20]);
            // Slow by the defaults (below 128 MiB/s) only while dist reads faster than it
            // comes: a stream is judged by the time it waited for the network. At 48 MiB/s
            // a blob, a debug build on a loaded machine read slower, found the bytes
            // waiting, and split nothing (1 full run of the binary in 8).
            let fault = Fault::Paced {
                bytes_per_sec: 32 << 20,
                first_byte: Duration::ZERO,
            };
            reg.set_fault_for_every(&digest, fault);
            digest
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let input = digests.join("\n") + "\n";
    let args = [
        "fetch",
        &repo,
        "-",
        "-j",
        "4",
        "-o",
        dir.path().to_str().unwrap(),
    ];
    let out = Dist::new().run(&args, input.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!range_requests(&reg).is_empty(), "some blob was split");
    // Four first streams and parts beside them: at most 4 + 4 - 1 by the client's cap,
    // and the server may count one socket that is closing.
    let most = reg.max_open_connections();
    assert!((6..=8).contains(&most), "connections at once: {most}");
}

/// Through the command line, a one-shot fetch of one slow blob: its parts take turns on
/// the `--range-streams` connections. With room for one idle connection per host (the
/// job count), parts that ended together closed all but one of theirs, and the next parts
/// opened new ones: a handshake more per part, and TLS's round trips too.
#[test]
fn a_split_blob_s_parts_reuse_their_connections() {
    let reg = FakeRegistry::start();
    let data = bytes(96, 96 << 20);
    let digest = reg.blob("team/app", &data);
    // Slow by the defaults while a debug build reads faster than it comes (see above).
    let fault = Fault::Paced {
        bytes_per_sec: 32 << 20,
        first_byte: Duration::ZERO,
    };
    reg.set_fault_for_every(&digest, fault);
    let repo = format!("{}/team/app", reg.host());
    let out = Dist::new().run(&["fetch", &repo, &digest], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == data, "content");
    let parts = range_requests(&reg).len();
    assert!(parts >= 6, "the blob was split into parts: {parts}");
    // The first stream's, closed where it stopped short of the blob's end, and four for
    // the parts, each kept for the next part.
    let opened = reg.connections();
    assert!(
        opened <= 5,
        "connections opened for {parts} parts: {opened}"
    );
}

/// A mirror that serves the first stream and then fails its parts (a cache losing the blob,
/// a mirror going down): the registry serves the rest, as it does for a mirror's body that
/// breaks off, instead of the object failing while the registry has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_failing_its_parts_hands_over_to_the_registry() {
    let (reg, mirror, data, digest) = on_both(85);
    mirror.set_fault_for_every(&digest, Fault::Status(500));
    // Queued faults win over the persistent one: the mirror's first stream is slow, and
    // every part it is asked for fails.
    mirror.push_fault(&digest, slow());
    let remote = mirrored(&reg, &mirror, 2);
    assert!(fetch_verified(&remote, &digest).await == data);
    assert!(
        range_requests(&mirror).iter().any(|r| !r.ends_with('-')),
        "the mirror was asked for parts: {:?}",
        range_requests(&mirror)
    );
    assert!(
        !range_requests(&reg).is_empty(),
        "the registry served the rest: {:?}",
        reg.requests()
    );
}

/// A mirror that fails every part it is asked for is given up on for the whole blob once
/// its parts have failed as often as one request may (its one retry), not once per part:
/// each part spent a retry of its own, 6 failed requests for the 3 parts beside the first
/// stream, and a hundred parts of a large blob as many, had they been asked in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_failing_its_parts_is_given_up_on_together() {
    let (reg, mirror, data, digest) = on_both(91);
    mirror.set_fault_for_every(&digest, Fault::Status(500));
    mirror.push_fault(&digest, slow());
    let remote = mirrored(&reg, &mirror, 4);
    assert!(fetch_verified(&remote, &digest).await == data);
    let failed = mirror.requests().iter().filter(|r| r.status == 500).count();
    // The parts under way when the first failed were sent together; one of them may have
    // had its retry before the others failed.
    assert!(
        (1..=4).contains(&failed),
        "the mirror's failed part requests: {failed}"
    );
    assert!(
        !range_requests(&reg).is_empty(),
        "the registry served the rest"
    );
}

/// A mirror whose parts fail hands the rest of the blob over to the registry; on a link
/// as slow there, the rest is split again, its parts the registry's. It went on as one
/// slow stream to the end, however large the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_a_failing_mirror_hands_over_is_split_again() {
    let (reg, mirror, data, digest) = on_both(93);
    mirror.set_fault_for_every(&digest, Fault::Status(500));
    mirror.push_fault(&digest, slow());
    throttle(&reg, &digest);
    let remote = mirrored(&reg, &mirror, 2);
    assert!(fetch_verified(&remote, &digest).await == data);
    let on_registry = range_requests(&reg);
    assert!(
        on_registry.iter().any(|r| !r.ends_with('-')),
        "the registry was asked for parts: {on_registry:?}"
    );
}

/// A mirror that asks for its own login and redirects its parts to another host (its blob
/// store): the parts reach the store by range, and the mirror's credentials stay with the
/// mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_s_credentials_do_not_follow_its_parts_elsewhere() {
    use dist::auth::Credential;
    use dist::registry::host::Mirror;
    use support::fake::{Auth, Recorder};
    let reg = FakeRegistry::start();
    let mirror = FakeRegistry::builder()
        .auth(Auth::basic("mirror-user", "mirror-s3cret"))
        .start();
    let data = bytes(94, 3 << 20);
    let digest = reg.blob("team/app", &data);
    mirror.blob("team/app", &data);
    let store = Recorder::serving(&data);
    mirror.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("{}/store/{digest}", store.url()),
        },
    );
    mirror.push_fault(&digest, slow());
    let transport = Transport::new(TransportOptions::default()).unwrap();
    let m = Mirror::new(mirror.url(), transport.clone());
    let login = CredentialSource::Fixed(Credential::Basic {
        username: "mirror-user".into(),
        password: "mirror-s3cret".into(),
    });
    let repo = format!("{}/team/app", reg.host()).parse().unwrap();
    let remote = RegistryRemote::new(repo, transport, CredentialSource::None, quick_retries(2))
        .with_mirrors(&[m], login)
        .unwrap()
        .with_ranges(small_ranges());
    assert!(fetch_verified(&remote, &digest).await == data);
    assert!(
        mirror
            .requests()
            .iter()
            .any(|r| r.auth_scheme() == Some("Basic")),
        "the mirror was sent its login"
    );
    let at_store = store.requests();
    assert!(
        at_store
            .iter()
            .any(|r| r.range.as_deref().is_some_and(|r| !r.ends_with('-'))),
        "the parts reached the store: {:?}",
        at_store.iter().map(|r| &r.range).collect::<Vec<_>>()
    );
    assert!(
        at_store.iter().all(|r| r.authorization.is_none()),
        "the mirror's login followed a redirect to another host"
    );
    assert!(reg.requests().is_empty(), "the mirror served it all");
}

/// On the registry, with no host after it, parts keep their retries each: a part that
/// fails twice while its neighbours fail once still arrives. The parts failing by turns
/// are rounds of an outage too: counted as the registry's failures in a row, past its 2
/// retries, they ended a part with a retry left, in about one run in four (five runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_on_the_registry_keep_their_own_retries() {
    for _ in 0..5 {
        let reg = FakeRegistry::start();
        let data = bytes(92, 2 << 20);
        let digest = reg.blob("team/app", &data);
        reg.push_fault(&digest, slow());
        for _ in 0..5 {
            reg.push_fault(&digest, Fault::Status(503));
        }
        let remote = two_retries(&reg.host(), small_ranges());
        assert!(fetch_verified(&remote, &digest).await == data);
        assert!(
            range_requests(&reg).iter().any(|r| !r.ends_with('-')),
            "the blob was split"
        );
    }
}

/// A mirror whose body breaks for good hands it over to the registry; split there (its
/// stream is slow), the parts are the registry's too. They went to the mirror that had
/// just failed, which failed each of them after its retry before the registry served the
/// rest as one slow stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_after_a_hand_over_go_to_the_host_that_took_it_over() {
    let (reg, mirror, data, digest) = on_both(89);
    mirror.set_fault_for_every(&digest, Fault::DropAfter(1000));
    throttle(&reg, &digest);
    let remote = mirrored(&reg, &mirror, 2);
    assert!(fetch_verified(&remote, &digest).await == data);
    let is_part = |r: &String| !r.ends_with('-');
    let on_mirror = range_requests(&mirror);
    assert!(
        !on_mirror.iter().any(is_part),
        "the mirror was asked for parts: {on_mirror:?}"
    );
    let on_registry = range_requests(&reg);
    assert!(
        on_registry.iter().any(is_part),
        "the registry was asked for parts: {on_registry:?}"
    );
}

/// A mirror whose slow first stream breaks for good after the blob was split, while its
/// first parts run: the registry takes the first stream over, and the parts started after
/// that go to it too. They went to the mirror, which had failed, and each failed there
/// after its retry before the registry served the rest as one slow stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_started_after_the_first_stream_moved_follow_it() {
    let (reg, mirror, data, digest) = on_both(90);
    mirror.set_fault_for_every(&digest, Fault::Status(503));
    // The first stream: slow, split after two probe windows (about 256 KiB), cut at the
    // end of that part (512 KiB), and dropped before it gets there.
    mirror.push_fault(
        &digest,
        Fault::SlowBodyDrop {
            chunk: 16 << 10,
            delay: Duration::from_millis(10),
            upto: 400 << 10,
        },
    );
    // The three parts that start beside it are served.
    for _ in 0..3 {
        mirror.push_fault(&digest, Fault::Header("x-served", "1".into()));
    }
    let remote = mirrored(&reg, &mirror, 2);
    assert!(fetch_verified(&remote, &digest).await == data);
    let is_part = |r: &String| !r.ends_with('-');
    let failed_parts: Vec<String> = mirror
        .requests()
        .into_iter()
        .filter(|r| r.status == 503)
        .filter_map(|r| r.range)
        .filter(is_part)
        .collect();
    assert!(
        failed_parts.is_empty(),
        "the mirror was asked for parts after it failed: {failed_parts:?}"
    );
    let on_registry = range_requests(&reg);
    assert!(
        on_registry.iter().any(is_part),
        "the registry was asked for parts: {on_registry:?}"
    );
}

/// A link that cuts every connection after a while (a proxy's or load balancer's limit on
/// a connection's bytes or lifetime), below the size of a part: a part that breaks off is
/// asked for the rest of its range, as a single stream is, and a break after new content
/// does not use up the retries. Asked for from its start each time, no part ever arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_breaks_off_carries_on_from_where_it_broke() {
    // Every connection but the first stream's gives 1.5 MiB of its answer, then resets.
    let cut_at = 3 << 19;
    let (reg, data, digest) = split_blob(86, 12 << 20, Fault::DropAfter(cut_at), &[]);
    let part_size = 2u64 << 20;
    let mut ranges = small_ranges();
    ranges.part_size = part_size;
    let remote = two_retries(&reg.host(), ranges);
    assert!(fetch_verified(&remote, &digest).await == data);
    let parts: Vec<String> = range_requests(&reg)
        .into_iter()
        .filter(|r| !r.ends_with('-'))
        .collect();
    let carried_on = format!(
        "bytes={}-{}",
        2 * part_size + cut_at as u64,
        3 * part_size - 1
    );
    assert!(
        parts.contains(&carried_on),
        "the second part was asked for from where it broke: {parts:?}"
    );
}

/// A mirror whose parts keep breaking off gets a mirror's one retry for each, as its
/// requests and a single stream's breaks do, before the registry serves the rest: the
/// run's retries, with their growing backoff, are the registry's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_whose_parts_break_off_gets_one_retry() {
    let (reg, mirror, data, digest) = on_both(87);
    mirror.set_fault_for_every(&digest, Fault::DropAfter(1000));
    mirror.push_fault(&digest, slow());
    let remote = mirrored(&reg, &mirror, 4);
    assert!(fetch_verified(&remote, &digest).await == data);
    // Asked for again from where it broke, a part keeps its end.
    let mut asked = std::collections::BTreeMap::<String, usize>::new();
    for range in range_requests(&mirror) {
        if let Some((_, end)) = range.split_once('-').filter(|(_, end)| !end.is_empty()) {
            *asked.entry(end.to_string()).or_default() += 1;
        }
    }
    assert!(!asked.is_empty(), "the blob was split on the mirror");
    assert!(
        asked.values().all(|&n| n <= 2),
        "the mirror's requests per part: {asked:?}"
    );
}

/// A mirror that answers parts without their range and then fails the rest asked for as
/// one stream: the registry serves that rest, as it does for the mirror's failing parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_failing_the_one_stream_after_its_parts_hands_over() {
    let (reg, mirror, data, digest) = on_both(88);
    mirror.set_fault_for_every(&digest, Fault::Status(500));
    // Queued faults win over the persistent one: a slow first stream, and the three parts
    // that start beside it answered whole; what is asked after them fails.
    mirror.push_fault(&digest, slow());
    for _ in 0..3 {
        mirror.push_fault(&digest, Fault::IgnoreRange);
    }
    let remote = mirrored(&reg, &mirror, 2);
    assert!(fetch_verified(&remote, &digest).await == data);
    assert_parts_then_one_stream(&mirror);
    assert!(
        range_requests(&reg).iter().any(|r| r.ends_with('-')),
        "the registry served the rest: {:?}",
        range_requests(&reg)
    );
}

/// A part whose body breaks after its last byte (a chunked `206` closed without its last
/// chunk) is whole: it is handed on, not asked for again from one past its end, a range
/// no server can answer (`bytes=E+1-E`, 416), which failed the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_broken_after_its_last_byte_is_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = std::sync::Arc::new(bytes(81, 3 << 20));
    let digest = support::cli::sha256(&data);
    let bad_ranges = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (served, bad) = (data.clone(), bad_ranges.clone());
    let listener = support::listen::Listener::start(move |mut tcp| {
        let (data, bad) = (served.clone(), bad.clone());
        async move {
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_lowercase();
            let total = data.len();
            let range = head.lines().find_map(|l| {
                let (a, b) = l.strip_prefix("range: bytes=")?.split_once('-')?;
                Some((a.parse::<usize>().ok()?, b.trim().parse::<usize>().ok()))
            });
            match range {
                None => {
                    let h = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nAccept-Ranges: bytes\r\n\
                         Connection: close\r\n\r\n"
                    );
                    let _ = tcp.write_all(h.as_bytes()).await;
                    for piece in data.chunks(16 << 10) {
                        if tcp.write_all(piece).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                Some((start, Some(end))) if start <= end && end < total => {
                    let h = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end}/{total}\r\n\
                         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    );
                    let mut out = h.into_bytes();
                    for piece in data[start..=end].chunks(64 << 10) {
                        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        out.extend_from_slice(piece);
                        out.extend_from_slice(b"\r\n");
                    }
                    // No last chunk: the connection closes after the part's last byte.
                    let _ = tcp.write_all(&out).await;
                }
                _ => {
                    bad.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let h = format!(
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\n\
                         Content-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = tcp.write_all(h.as_bytes()).await;
                }
            }
            let _ = tcp.shutdown().await;
        }
    });
    let remote = two_retries(&format!("127.0.0.1:{}", listener.port()), small_ranges());
    let object: Object = digest.parse().unwrap();
    let mut download = remote.fetch(&object, &Hints::default()).await.unwrap();
    let mut out = Vec::new();
    loop {
        match download.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => panic!("{e} (ranges past a part's end: {bad_ranges:?})"),
        }
    }
    assert!(out == *data, "content in order");
    assert_eq!(
        bad_ranges.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no range past a part's end"
    );
}

/// A server that ends every answer cleanly after 70 KiB (a cache capping its answers, a
/// body without a length closed early), less than a part: each answer that brought a
/// piece of a part (64 KiB or more) is progress, as it is for a single stream, and the
/// rest of the part is asked for at once. Counted as breaks, a 256 KiB part ran out of
/// its two retries on its fourth answer, and the blob failed on the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_its_server_ends_short_with_progress_spend_no_retries() {
    let (reg, data, digest) = split_blob(90, 3 << 20, Fault::Unframed(70 << 10), &[]);
    let remote = two_retries(&reg.host(), small_ranges());
    assert!(fetch_verified(&remote, &digest).await == data);
    let parts: Vec<String> = range_requests(&reg)
        .into_iter()
        .filter(|r| !r.ends_with('-'))
        .collect();
    assert!(
        parts
            .iter()
            .any(|r| r.starts_with(&format!("bytes={}-", (256 << 10) * 11 + (210 << 10)))),
        "the blob was split, each part asked for in pieces: {parts:?}"
    );
}

/// A server that answers every range with at most 70 KiB from where it starts, under a
/// `Content-Range` that says so (`bytes N-M/*`): a part takes each answer as a piece of
/// it and asks for the rest of its range, as a single stream takes such a range. Taken
/// for another range than asked, the first answer sent the rest of the blob back to one
/// stream, and the parts' connections were lost to a server that serves ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_answered_with_less_of_its_range_carries_on_from_there() {
    let (reg, data, digest) = split_blob(91, 3 << 20, Fault::ShortRange(70 << 10), &[]);
    let remote = two_retries(&reg.host(), small_ranges());
    assert!(fetch_verified(&remote, &digest).await == data);
    let part = 256u64 << 10;
    let last = (3u64 << 20) - part;
    let carried_on = format!("bytes={}-{}", last + (70 << 10), last + part - 1);
    let ranges = range_requests(&reg);
    assert!(
        ranges.contains(&carried_on),
        "the last part was asked for the rest of its range: {ranges:?}"
    );
}

/// A mirror failing its parts hands the rest to the registry, which answers it with a
/// `416`, short of the size the mirror declared: the two contradict each other, and the
/// blob fails as a size mismatch naming the mirror that declared the size. The `416` was
/// taken for the blob's end: an empty rest, and the blob ended short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_the_rest_a_mirror_s_parts_handed_over_is_no_end() {
    let (reg, mirror, _, digest) = on_both(92);
    mirror.set_fault_for_every(&digest, Fault::Status(500));
    mirror.push_fault(&digest, slow());
    reg.set_fault_for_every(&digest, Fault::Status(416));
    let remote = mirrored(&reg, &mirror, 2);
    let e = read_to_end(&remote, &digest).await.unwrap_err();
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!(
        "where the mirror {} declared {} bytes",
        mirror.host(),
        3 << 20
    );
    assert!(e.to_string().contains(&said), "{e}");
}

/// The registry declared the blob's size, then answers a part of it with a `416`: the
/// registry contradicts itself, a size mismatch said so, as a `416` to a single stream's
/// rest short of the size declared is (README, resumes). It failed as the bare HTTP
/// error (`registry answered 416 Range Not Satisfiable`), which the worker does not
/// fetch once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_a_part_short_of_the_size_declared_is_a_size_mismatch() {
    let (reg, _, digest) = split_blob(93, 3 << 20, Fault::Status(416), &[]);
    let remote = two_retries(&reg.host(), small_ranges());
    let e = read_to_end(&remote, &digest).await.unwrap_err();
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!("), where the server declared {} bytes", 3 << 20);
    let e = e.to_string();
    assert!(
        e.contains(&said) && e.contains(", got a 416 (the content ends at byte "),
        "{e}"
    );
}

/// A mirror failing its parts hands the rest to the registry, whose `206` declares the
/// size the mirror did; the registry's body breaks, and it answers the rest with a `416`:
/// the registry contradicts its own word, said as the server's, as a single stream handed
/// over says it. It was said as the mirror's word alone (`where the mirror M declared`),
/// the registry's confirmation of the size forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_after_the_host_a_mirror_s_parts_handed_over_to_declared_the_size_is_its_own() {
    let (reg, mirror, _, digest) = on_both(94);
    mirror.set_fault_for_every(&digest, Fault::Status(500));
    mirror.push_fault(&digest, slow());
    reg.set_fault_for_every(&digest, Fault::Status(416));
    reg.push_fault(&digest, Fault::DropAfter(64 << 10));
    let remote = mirrored(&reg, &mirror, 2);
    let e = read_to_end(&remote, &digest).await.unwrap_err();
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!("where the server declared {} bytes", 3 << 20);
    assert!(e.to_string().contains(&said), "{e}");
}

/// A mirror's first stream breaks and is handed over to the registry, whose `206`
/// declares the size the mirror did; slow, the rest is split into parts there, which the
/// registry answers with a `416`: its own word contradicted, said as the server's. The
/// parts kept the size as the mirror's word alone (`where the mirror M declared`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_parts_after_the_first_stream_moved_names_the_host_that_confirmed_the_size() {
    let (reg, mirror, _, digest) = on_both(95);
    mirror.set_fault_for_every(&digest, Fault::DropAfter(32 << 10));
    reg.set_fault_for_every(&digest, Fault::Status(416));
    reg.push_fault(&digest, slow());
    let remote = mirrored(&reg, &mirror, 2);
    let e = read_to_end(&remote, &digest).await.unwrap_err();
    assert_parts_contradicted_the_server(&e);
}

/// A part answered with the whole blob sends the rest back to one stream, which the
/// registry that declared the blob's size answers with a `416`: the same contradiction
/// as a `416` to a part or to a single stream's rest, said so. It failed as the bare
/// status. Two streams: the first part's request, alone beside the first stream, meets
/// the whole blob before any other part is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_the_one_stream_parts_went_back_to_is_a_size_mismatch() {
    let (reg, _, digest) = split_blob(96, 3 << 20, Fault::Status(416), &[Fault::IgnoreRange]);
    let remote = two_retries(&reg.host(), two_streams());
    let e = read_to_end(&remote, &digest).await.unwrap_err();
    assert_one_stream_contradicted_the_server(&e);
}

/// A registry that declared no size (its first answer unframed, closed early) confirms
/// the size given alone in the `206` of the first stream's resume, which, slow, is split
/// into parts there, each answered with a `416`: the registry contradicts its own word, a
/// size mismatch said as the server's, as a `416` to that stream's own rest is. The parts
/// kept the size as given alone, which the registry had confirmed, and the blob failed
/// with the bare status, which the worker does not fetch once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_parts_after_the_first_stream_s_resume_confirmed_the_size_given() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(97, 3 << 20));
    reg.set_fault_for_every(&digest, Fault::Status(416));
    reg.push_fault(&digest, Fault::Unframed(64 << 10));
    reg.push_fault(&digest, slow());
    let remote = two_retries(&reg.host(), small_ranges());
    let e = error_given_size(&remote, &digest, 3 << 20).await;
    assert_parts_contradicted_the_server(&e);
}

/// A slow registry that declared no size (its first answer chunked) is split into parts
/// against the size given alone; a part's `206` confirms that size, breaks, and the rest
/// of the part is answered with a `416`: the registry contradicts its own word, a size
/// mismatch said as the server's, as a `416` to a single stream's rest it confirmed the
/// size for is. The part kept the size as given alone, and the blob failed with the bare
/// status, which the worker does not fetch once more. Two streams: the first part, alone
/// beside the first stream, meets the break, and its rest the `416`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_a_part_s_rest_after_its_206_confirmed_the_size_given() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(98, 3 << 20));
    reg.set_fault_for_every(&digest, Fault::Status(416));
    let (chunk, delay) = (16 << 10, Duration::from_millis(10));
    reg.push_fault(&digest, Fault::SlowChunked { chunk, delay });
    reg.push_fault(&digest, Fault::DropAfter(64 << 10));
    let remote = two_retries(&reg.host(), two_streams());
    let e = error_given_size(&remote, &digest, 3 << 20).await;
    assert_parts_contradicted_the_server(&e);
}

/// A mirror that declared no size (its first answer unframed, closed early) confirms the
/// size given alone in its resume's `206`; slow, the rest is split into parts there,
/// which fail, and the registry the rest is handed over to answers it with a `416`: the
/// two contradict each other, said as the mirror's word. The hand-over judged the `416`
/// against the size as given alone, took it for the content's end, and the blob failed
/// as content that ended short of the size given, which may be wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_the_rest_a_mirror_s_parts_handed_over_after_its_resume_confirmed_the_size() {
    let (reg, mirror, _, digest) = on_both(99);
    mirror.set_fault_for_every(&digest, Fault::Status(500));
    mirror.push_fault(&digest, Fault::Unframed(64 << 10));
    mirror.push_fault(&digest, slow());
    reg.set_fault_for_every(&digest, Fault::Status(416));
    let remote = mirrored(&reg, &mirror, 2);
    let e = error_given_size(&remote, &digest, 3 << 20).await;
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!(
        "where the mirror {} declared {} bytes",
        mirror.host(),
        3 << 20
    );
    assert!(e.to_string().contains(&said), "{e}");
}

/// The parts of a split download are spliced in as a resume is: one whose answer's
/// `Docker-Content-Digest` names other content is refused before its bytes are added, as
/// the first answer would be, said as the header disagreeing. Taken, a part of another
/// object under this address was spliced in, caught only by the digest at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_whose_digest_header_names_other_content_is_refused_unread() {
    let other = format!("sha256:{}", "ab".repeat(32));
    let (reg, _, digest) = split_blob(
        98,
        3 << 20,
        Fault::Header("docker-content-digest", other.clone()),
        &[],
    );
    let remote = two_retries(&reg.host(), small_ranges());
    let e = read_to_end(&remote, &digest).await.unwrap_err();
    assert_eq!(e.kind(), dist::ErrorKind::DigestMismatch, "{e}");
    let said = format!(
        "Docker-Content-Digest header names {other}, not {digest} as asked; none of the part was read"
    );
    assert!(e.to_string().contains(&said), "{e}");
    assert!(
        range_requests(&reg)
            .iter()
            .any(|r| r.ends_with(char::is_numeric)),
        "parts were asked for"
    );
}

/// A slow registry that declared no size (its first answer chunked) is split into parts
/// against the size given alone; the first part's `206` confirms that size, and the next
/// part is answered with a `416`: the registry contradicts its own word, as when the `416`
/// answers the rest of the part whose `206` confirmed the size. Each part kept its own
/// confirmation, and the blob failed with the bare status, which the worker does not fetch
/// once more. Two streams: the first part runs alone beside the first stream, so the
/// parts after it are asked for once it was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_a_part_after_another_part_s_206_confirmed_the_size_given() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(100, 3 << 20));
    reg.set_fault_for_every(&digest, Fault::Status(416));
    let (chunk, delay) = (16 << 10, Duration::from_millis(10));
    reg.push_fault(&digest, Fault::SlowChunked { chunk, delay });
    reg.push_fault(&digest, Fault::ManyHeaders(1));
    let remote = two_retries(&reg.host(), two_streams());
    let e = error_given_size(&remote, &digest, 3 << 20).await;
    assert_parts_contradicted_the_server(&e);
}

/// As above, but the parts after the one whose `206` confirmed the size given are answered
/// with the whole blob (a proxy that drops `Range`), and the one stream the rest goes back
/// to with a `416`: the registry contradicts its own word there too. The stream was asked
/// for against the size as given alone, and the blob failed with the bare status.
///
/// The first of the two parts that start once the first stream reached its cut is held
/// until the second was asked for: answered at once, the rest went back to one stream,
/// whose request could come before the second part's (which opens a connection of its
/// own) and took the whole blob meant for that part (1 full run of the binary in 10 on a
/// loaded machine, the blob ending whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_the_one_stream_after_a_part_s_206_confirmed_the_size_given() {
    use support::fake::Gate;
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(101, 3 << 20));
    reg.set_fault_for_every(&digest, Fault::Status(416));
    let (chunk, delay) = (16 << 10, Duration::from_millis(10));
    reg.push_fault(&digest, Fault::SlowChunked { chunk, delay });
    reg.push_fault(&digest, Fault::ManyHeaders(1));
    // The two parts that start once the first stream reached its cut, in either order.
    let held = Gate::default();
    let ignored = Fault::HeldHead(held.clone(), Box::new(Fault::IgnoreRange));
    reg.push_fault(&digest, ignored);
    reg.push_fault(&digest, Fault::IgnoreRange);
    let remote = two_retries(&reg.host(), two_streams());
    let reading = {
        let digest = digest.clone();
        tokio::spawn(async move { error_given_size(&remote, &digest, 3 << 20).await })
    };
    let parts = [768 << 10, 1 << 20].map(|from| format!("bytes={from}-"));
    let both_asked = || {
        let asked = range_requests(&reg);
        parts.iter().all(|p| asked.iter().any(|r| r.starts_with(p)))
    };
    tokio::task::block_in_place(|| support::wait::until("the two parts asked for", both_asked));
    held.open();
    let e = reading.await.unwrap();
    assert_one_stream_contradicted_the_server(&e);
}

/// As above, but the part's `206` that confirms the size given comes while the one stream
/// the rest goes back to is asked for: the stream's `416` is judged when it comes, against
/// the size the registry has confirmed by then. It was judged against the word as it was
/// before the request, the size as given alone, and the blob failed with the bare status,
/// which the worker does not fetch once more.
///
/// Gates order it: the first part (answered with the whole blob) is held until the part
/// after it was asked for; that part's `206` is held until the one stream was asked for,
/// then breaks after its head, and the part's next request says its head was read; only
/// then is the one stream answered with a `416`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_the_one_stream_while_a_part_s_206_confirmed_the_size_given() {
    let (reg, digest, remote, [first_part, second_part, one_stream]) = gated_one_stream_416(107);
    let gates = [first_part, second_part, one_stream];
    let e = a_416_while_a_part_confirms(remote, &digest, &reg, &reg, gates).await;
    assert_one_stream_416_at_its_offset(&e);
}

/// As above, but the one stream's `416` comes before the part's `206` that confirms the
/// size given: the `416` is judged once the parts under way have had their answers judged,
/// the registry's contradiction of its own word said so. Judged as it came, against the
/// size as given alone, it failed the blob with the bare status, which the worker does
/// not fetch once more.
///
/// The gates order it: the `416` is let out, and the part's `206` only a while after.
/// Without the wait, the blob had failed by then; with it, the order is all there is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_the_one_stream_before_a_part_s_206_confirmed_the_size_given() {
    let (reg, digest, remote, [first_part, second_part, one_stream]) = gated_one_stream_416(108);
    let reading = {
        let digest = digest.clone();
        tokio::spawn(async move { error_given_size(&remote, &digest, 3 << 20).await })
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        tokio::task::block_in_place(|| support::wait::until(what, done))
    };
    let second = format!("-{}", (1 << 20) - 1);
    wait("the second part asked for", &|| {
        range_requests(&reg).iter().any(|r| r.ends_with(&second))
    });
    first_part.open();
    let from = format!("bytes={}-", 512 << 10);
    wait("the rest asked for", &|| {
        range_requests(&reg).contains(&from)
    });
    one_stream.open();
    // Time for the `416` to be judged, were it judged as it came: no assertion rests on
    // it, which only lets the test see the blob fail before the part's answer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    second_part.open();
    let e = reading.await.unwrap();
    assert_one_stream_416_at_its_offset(&e);
}

/// A 3 MiB blob whose split into parts of `small_ranges`, two streams, is choreographed
/// by three gates: the first part (answered with the whole blob, its range ignored), the
/// second part (its `206` breaks after its head) and the one stream the rest goes back to
/// (a `416`); every later request is a `416` too.
fn gated_one_stream_416(
    seed: u64,
) -> (
    FakeRegistry,
    String,
    RegistryRemote,
    [support::fake::Gate; 3],
) {
    use support::fake::Gate;
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(seed, 3 << 20));
    reg.set_fault_for_every(&digest, Fault::Status(416));
    let (chunk, delay) = (16 << 10, Duration::from_millis(10));
    reg.push_fault(&digest, Fault::SlowChunked { chunk, delay });
    let gates = [Gate::default(), Gate::default(), Gate::default()];
    let [first_part, second_part, one_stream] = gates.clone();
    let ignored = Fault::HeldHead(first_part, Box::new(Fault::IgnoreRange));
    reg.push_fault(&digest, ignored);
    let breaks = Fault::HeldHead(second_part, Box::new(Fault::DropAfter(1000)));
    reg.push_fault(&digest, breaks);
    let refused = Fault::HeldHead(one_stream, Box::new(Fault::Status(416)));
    reg.push_fault(&digest, refused);
    let remote = two_retries(&reg.host(), two_streams());
    (reg, digest, remote, gates)
}

/// The one stream's `416` to `bytes=512K-`, said as the registry contradicting the size
/// its part's `206` confirmed.
fn assert_one_stream_416_at_its_offset(e: &dist::Error) {
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!(
        "bytes={}-, got a 416 (the content ends at byte {}), where the server declared \
         3145728 bytes",
        512 << 10,
        512 << 10
    );
    assert!(e.to_string().contains(&said), "{e}");
}

/// A mirror that declared no size (its first answer chunked) confirms the size given alone
/// in its `206` to the first part; the parts after it fail, and the registry the rest is
/// handed over to answers it with a `416`: the two contradict each other, said as the
/// mirror's word. The hand-over judged the `416` against the size as given alone, took it
/// for the content's end, and the blob failed as content that ended short of the size
/// given, which may be wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_the_rest_a_mirror_s_parts_handed_over_after_a_part_confirmed_the_size() {
    let (reg, mirror, _, digest) = on_both(102);
    mirror.set_fault_for_every(&digest, Fault::Status(500));
    let (chunk, delay) = (16 << 10, Duration::from_millis(10));
    mirror.push_fault(&digest, Fault::SlowChunked { chunk, delay });
    mirror.push_fault(&digest, Fault::ManyHeaders(1));
    reg.set_fault_for_every(&digest, Fault::Status(416));
    let remote = mirrored(&reg, &mirror, 2).with_ranges(two_streams());
    let e = error_given_size(&remote, &digest, 3 << 20).await;
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!(
        "where the mirror {} declared {} bytes",
        mirror.host(),
        3 << 20
    );
    assert!(e.to_string().contains(&said), "{e}");
}

/// A mirror that declared no size (its first answer chunked) has its first part refused
/// (its `Docker-Content-Digest` names other content), and the rest is handed over to the
/// registry; the mirror's `206` to the part after it confirms the size given alone while
/// the registry is asked for the rest, which it answers with a `416`: the two contradict
/// each other, said as the mirror's word. The hand-over judged the `416` against the word
/// as it was before its request, the size as given alone, took it for the content's end,
/// and the blob failed as content that ended short of the size given, which may be wrong.
///
/// Gates order it: the first part is held until the part after it was asked for; that
/// part's `206` is held until the registry was asked for the rest, then breaks after its
/// head, and the part's next request says its head was read; only then does the registry
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_the_rest_handed_over_while_a_mirror_s_part_confirmed_the_size() {
    use support::fake::Gate;
    let (reg, mirror, _, digest) = on_both(108);
    mirror.set_fault_for_every(&digest, Fault::Status(500));
    let (chunk, delay) = (16 << 10, Duration::from_millis(10));
    mirror.push_fault(&digest, Fault::SlowChunked { chunk, delay });
    let (first_part, second_part, handed_over) =
        (Gate::default(), Gate::default(), Gate::default());
    let other = format!("sha256:{}", "ab".repeat(32));
    let refused = Fault::Header("docker-content-digest", other);
    mirror.push_fault(
        &digest,
        Fault::HeldHead(first_part.clone(), Box::new(refused)),
    );
    let breaks = Fault::HeldHead(second_part.clone(), Box::new(Fault::DropAfter(1000)));
    mirror.push_fault(&digest, breaks);
    let short = Fault::HeldHead(handed_over.clone(), Box::new(Fault::Status(416)));
    reg.push_fault(&digest, short);
    let remote = mirrored(&reg, &mirror, 2).with_ranges(two_streams());
    let gates = [first_part, second_part, handed_over];
    let e = a_416_while_a_part_confirms(remote, &digest, &mirror, &reg, gates).await;
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!(
        "where the mirror {} declared {} bytes",
        mirror.host(),
        3 << 20
    );
    assert!(e.to_string().contains(&said), "{e}");
}

/// Fetches `digest` (3 MiB, its size given alone) split in two parts from `parts`, the
/// rest after the first part from `rest`, ordered by three gates set on their answers:
/// the first part's until the second part was asked for, the second part's until the
/// rest was asked for (it then breaks after its head), and the rest's until the second
/// part's next request says its head, which confirms the size given, was read. The
/// fetch's error.
async fn a_416_while_a_part_confirms(
    remote: RegistryRemote,
    digest: &str,
    parts: &FakeRegistry,
    rest: &FakeRegistry,
    [first_part, second_part, rest_answer]: [support::fake::Gate; 3],
) -> dist::Error {
    let reading = {
        let digest = digest.to_owned();
        tokio::spawn(async move { error_given_size(&remote, &digest, 3 << 20).await })
    };
    let asked = |end: &str| {
        let asked = range_requests(parts);
        asked.iter().filter(|r| r.ends_with(end)).count()
    };
    let wait = |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| {
        tokio::task::block_in_place(|| support::wait::until(what, &mut *done))
    };
    let second = format!("-{}", (1 << 20) - 1);
    wait(
        "the second part asked for",
        Box::new(|| asked(&second) >= 1),
    );
    first_part.open();
    let from = format!("bytes={}-", 512 << 10);
    wait(
        "the rest asked for",
        Box::new(|| range_requests(rest).contains(&from)),
    );
    second_part.open();
    wait(
        "the second part asked for again",
        Box::new(|| asked(&second) >= 2),
    );
    rest_answer.open();
    reading.await.unwrap()
}

/// A slow registry that declared no size (its first answer chunked) confirms the size given
/// alone in its `206` to the first part, then gives the blob another size in its answer to
/// the next part: the registry contradicts its own word, said as that (`where the content
/// is`), not as a size given that the registry contradicts, which casts doubt on a size
/// the registry had confirmed (and told the worker's caller the hint may be wrong).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_s_other_total_after_another_part_confirmed_the_size_given_is_the_server_s() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(103, 3 << 20));
    reg.set_fault_for_every(&digest, Fault::RangeTotal((3 << 20) + 1));
    let (chunk, delay) = (16 << 10, Duration::from_millis(10));
    reg.push_fault(&digest, Fault::SlowChunked { chunk, delay });
    reg.push_fault(&digest, Fault::ManyHeaders(1));
    let remote = two_retries(&reg.host(), two_streams());
    let e = error_given_size(&remote, &digest, 3 << 20).await;
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!("bytes in all, where the content is {}", 3 << 20);
    assert!(e.to_string().contains(&said), "{e}");
    assert_eq!(
        e.sizes(),
        None,
        "not the size given against the server's: {e}"
    );
}

/// A slow registry that declared no size (its first answer chunked) is split into parts
/// against the size given alone; its first stream then breaks, and the `206` to its resume
/// confirms that size while the first part's request is still unanswered; that part is
/// then answered with a `416`: the registry contradicts its own word. The part, started
/// before the resume, kept the size as given alone, and the blob failed with the bare
/// status, which the worker does not fetch once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_a_part_under_way_when_the_first_stream_s_resume_confirmed_the_size_given() {
    use support::fake::Gate;
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(106, 3 << 20));
    let (chunk, delay, upto) = (16 << 10, Duration::from_millis(10), 448 << 10);
    reg.push_fault(&digest, Fault::SlowChunkedDrop { chunk, delay, upto });
    let held = Gate::default();
    reg.push_fault(
        &digest,
        Fault::HeldHead(held.clone(), Box::new(Fault::Status(416))),
    );
    // The first stream's resume; the parts after the first part are refused too.
    reg.push_fault(&digest, Fault::ManyHeaders(1));
    reg.set_fault_for_every(&digest, Fault::Status(416));
    let remote = two_retries(&reg.host(), two_streams());
    let object: Object = digest.parse().unwrap();
    let mut hints = Hints::default();
    hints.size = Some(3 << 20);
    let mut download = remote.fetch(&object, &hints).await.unwrap();
    // The part is asked for before the break, whose resume would otherwise take the held
    // `416` meant for it and wait for ever: its request comes from a task of its own.
    // Reading stops short of the break (which a client may see a chunk or so before
    // `upto`), past the split at 256 KiB.
    let part = format!("bytes={}-", 512 << 10);
    let part_asked = || range_requests(&reg).iter().any(|r| r.starts_with(&part));
    let mut received = 0;
    while received < 320 << 10 && !part_asked() {
        received += download.chunk().await.unwrap().expect("not the end").len();
    }
    tokio::task::block_in_place(|| support::wait::until("the part asked for", part_asked));
    // Past the break, the resume's answer was read: the part is answered only then.
    while received <= upto {
        received += download.chunk().await.unwrap().expect("not the end").len();
    }
    let asked = range_requests(&reg);
    assert_eq!(asked.len(), 2, "the part, then the resume: {asked:?}");
    assert!(asked[1].ends_with('-'), "the resume came second: {asked:?}");
    held.open();
    let e = loop {
        match download.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the blob ended"),
            Err(e) => break e,
        }
    };
    assert_parts_contradicted_the_server(&e);
}

/// A slow registry that declared no size (its first answer chunked) is split into parts
/// against the size given alone, and its `206` to the first part confirms that size; the
/// first stream then breaks short of the part, and its rest is answered with a `416`: the
/// registry contradicts its own word, said as the server's, as a `416` to a part is. The
/// first stream took the `416` for the content's end against the size as given alone, and
/// the blob failed as content that ended short of the size given, which may be wrong.
///
/// The break is met only when the first stream is read on, and the part's `206` is known
/// to have been taken in once the part asks again for the rest of its answer, which breaks
/// after it: the test waits for that request before it reads on to the break. (Read on
/// at once, the part's answer had to come within the ~100 ms before the break.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_the_first_stream_s_rest_after_a_part_confirmed_the_size_given() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(107, 3 << 20));
    reg.set_fault_for_every(&digest, Fault::Status(416));
    let (chunk, delay, upto) = (16 << 10, Duration::from_millis(10), 448 << 10);
    reg.push_fault(&digest, Fault::SlowChunkedDrop { chunk, delay, upto });
    // The first part's answer, whose head confirms the size, breaks; its rest comes whole.
    reg.push_fault(&digest, Fault::DropAfter(64 << 10));
    reg.push_fault(&digest, Fault::ManyHeaders(1));
    let remote = two_retries(&reg.host(), two_streams());
    let object: Object = digest.parse().unwrap();
    let mut hints = Hints::default();
    hints.size = Some(3 << 20);
    let mut download = remote.fetch(&object, &hints).await.unwrap();
    let part = format!("bytes={}-", 512 << 10);
    let asked = |from: &str| range_requests(&reg).iter().any(|r| r.starts_with(from));
    // Up to the split, and not past the last byte before the break.
    let mut received = 0;
    while received < upto && !asked(&part) {
        received += download.chunk().await.unwrap().expect("not the end").len();
    }
    let again = format!("bytes={}-", (512 + 64) << 10);
    tokio::task::block_in_place(|| {
        support::wait::until("the first part asking for its rest", || asked(&again))
    });
    let e = loop {
        match download.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the blob ended"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!("where the server declared {} bytes", 3 << 20);
    assert!(e.to_string().contains(&said), "{e}");
    assert!(
        e.to_string().contains("-, got a 416"),
        "the first stream's rest: {e}"
    );
}

/// The error that ends a split of a slow registry that declared no size (its first answer
/// chunked), given its size alone, whose `206` to the first part, which confirms that
/// size, is held until the second part, asked for as the first stream reaches the first
/// part, was answered with `status` (by `every`, which answers every later request): the
/// parts' answers taken in out of order. Beside it, the second part's range.
async fn second_part_answered_first(seed: u64, every: Fault, status: u16) -> (dist::Error, String) {
    use support::fake::Gate;
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(seed, 3 << 20));
    reg.set_fault_for_every(&digest, every);
    let (chunk, delay) = (16 << 10, Duration::from_millis(10));
    reg.push_fault(&digest, Fault::SlowChunked { chunk, delay });
    let held = Gate::default();
    let first_part = Fault::HeldHead(held.clone(), Box::new(Fault::ManyHeaders(1)));
    reg.push_fault(&digest, first_part);
    let remote = two_retries(&reg.host(), two_streams());
    let reading = {
        let digest = digest.clone();
        tokio::spawn(async move { error_given_size(&remote, &digest, 3 << 20).await })
    };
    let second = format!("bytes={}-", 768 << 10);
    let answered = || {
        let mut asked = reg.requests().into_iter();
        asked.any(|r| r.status == status && r.range.is_some_and(|r| r.starts_with(&second)))
    };
    tokio::task::block_in_place(|| support::wait::until("the second part answered", answered));
    held.open();
    (reading.await.unwrap(), second)
}

/// As a `416` to a part after another part's `206` confirmed the size given, but answered
/// first: the server contradicts itself all the same, and the blob fails as the size
/// mismatch that says so. Judged as it came, before the `206` that confirmed the size,
/// the `416` failed as the bare status, which the worker does not fetch once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_a_part_answered_before_an_earlier_part_s_206_confirmed_the_size_given() {
    let (e, second) = second_part_answered_first(108, Fault::Status(416), 416).await;
    assert_parts_contradicted_the_server(&e);
    assert!(
        e.to_string().contains(&second),
        "the second part's 416: {e}"
    );
}

/// As a part's other total after another part confirmed the size given, but answered
/// first: the registry contradicts its own word, not the size given. Judged as it came,
/// the other total was said against the size given, which the worker then doubted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_s_other_total_answered_before_an_earlier_part_confirmed_the_size_given() {
    let every = Fault::RangeTotal((3 << 20) + 1);
    let (e, _) = second_part_answered_first(109, every, 206).await;
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!("bytes in all, where the content is {}", 3 << 20);
    assert!(e.to_string().contains(&said), "{e}");
    assert_eq!(
        e.sizes(),
        None,
        "not the size given against the server's: {e}"
    );
}

/// The error that ends a slow registry's download that declared no size (its first answer
/// chunked, breaking at 448 KiB), given its size alone and split in two streams, whose
/// first stream's rest is answered with `rest` only after the first part's `206`, which
/// confirms that size, was taken in; `every` answers every request after those. The part's
/// answer is held until the rest is asked for, and the rest's until the part asks again
/// for the rest of its own answer, which breaks: the order the test needs, waited for.
async fn rest_answered_after_a_part_confirmed(
    seed: u64,
    every: Option<Fault>,
    rest: Fault,
) -> (FakeRegistry, dist::Error) {
    use support::fake::Gate;
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(seed, 3 << 20));
    if let Some(every) = every {
        reg.set_fault_for_every(&digest, every);
    }
    let (chunk, delay, upto) = (16 << 10, Duration::from_millis(10), 448 << 10);
    reg.push_fault(&digest, Fault::SlowChunkedDrop { chunk, delay, upto });
    // The first part's answer, whose head confirms the size, breaks; its rest comes whole.
    let (part_held, rest_held) = (Gate::default(), Gate::default());
    let part = Fault::HeldHead(part_held.clone(), Box::new(Fault::DropAfter(64 << 10)));
    reg.push_fault(&digest, part);
    let rest = Fault::HeldHead(rest_held.clone(), Box::new(rest));
    reg.push_fault(&digest, rest);
    reg.push_fault(&digest, Fault::ManyHeaders(1));
    let remote = two_retries(&reg.host(), two_streams());
    let object: Object = digest.parse().unwrap();
    let mut hints = Hints::default();
    hints.size = Some(3 << 20);
    let mut download = remote.fetch(&object, &hints).await.unwrap();
    let part = format!("bytes={}-{}", 512 << 10, (768 << 10) - 1);
    let asked = |range: &str| range_requests(&reg).iter().any(|r| r == range);
    // Up to the split, and not past the last byte before the break.
    let mut received = 0;
    while received < upto && !asked(&part) {
        received += download.chunk().await.unwrap().expect("not the end").len();
    }
    let reading = tokio::spawn(async move {
        loop {
            match download.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the blob ended"),
                Err(e) => break e,
            }
        }
    });
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        tokio::task::block_in_place(|| support::wait::until(what, done))
    };
    let rest_asked = || range_requests(&reg).iter().any(|r| r.ends_with('-'));
    wait("the first stream's rest asked for", &rest_asked);
    part_held.open();
    let again = format!("bytes={}-{}", (512 + 64) << 10, (768 << 10) - 1);
    wait("the first part asking for its rest", &|| asked(&again));
    rest_held.open();
    (reg, reading.await.unwrap())
}

/// As a `416` to the first stream's rest after a part confirmed the size given, but the
/// part's `206` taken in while the request for the rest was on its way: the rest was
/// asked for against the size as given alone, and the `416` that answered it, after the
/// part's `206`, was still judged so, taken for the content's end, and the blob failed as
/// content that ended short of the size given, which may be wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_to_the_first_stream_s_rest_asked_for_before_a_part_confirmed_the_size_given() {
    let (_reg, e) = rest_answered_after_a_part_confirmed(110, None, Fault::Status(416)).await;
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!("where the server declared {} bytes", 3 << 20);
    assert!(e.to_string().contains(&said), "{e}");
    assert!(
        e.to_string().contains("-, got a 416"),
        "the first stream's rest: {e}"
    );
}

/// A library caller may set any `part_size`: with a huge one and a size given that leaves
/// room for two such parts (a wrong `size:` hint, the server declaring none), each part
/// allocated its whole size before its first byte, and the process aborted on the
/// allocation. The blob fails as content that ended short of the size given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_part_size_allocates_only_what_arrives() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(111, 3 << 20));
    let (chunk, delay) = (16 << 10, Duration::from_millis(10));
    reg.push_fault(&digest, Fault::SlowChunked { chunk, delay });
    let mut ranges = small_ranges();
    (ranges.streams, ranges.part_size) = (2, 1 << 45);
    let remote = two_retries(&reg.host(), ranges);
    let e = error_given_size(&remote, &digest, 1 << 50).await;
    let said = format!("content ended after {} of {} bytes", 3 << 20, 1u64 << 50);
    assert!(e.to_string().contains(&said), "{e}");
    assert!(e.to_string().contains("(the size given: size:"), "{e}");
}

/// As a `416` to the first stream's rest asked for before a part confirmed the size given,
/// but that rest answered with a piece of unknown total (`bytes N-M/*`), and the `416`
/// answering the rest after that piece: taking the piece in, the first stream told the
/// parts its word of the size, the size given alone, over the part's confirmation, which
/// it lost; the `416` was then taken for the content's end against the size given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_416_after_a_piece_of_the_rest_taken_in_after_a_part_confirmed_the_size_given() {
    let every = Some(Fault::Status(416));
    let (reg, e) =
        rest_answered_after_a_part_confirmed(112, every, Fault::ShortRange(64 << 10)).await;
    assert_eq!(e.kind(), dist::ErrorKind::SizeMismatch, "{e}");
    let said = format!("where the server declared {} bytes", 3 << 20);
    assert!(e.to_string().contains(&said), "{e}");
    let after_the_piece = format!("asked for bytes={}-, got a 416", 442368 + (64 << 10));
    assert!(
        e.to_string().contains(&after_the_piece),
        "the rest after the piece: {e} {:?}",
        range_requests(&reg)
    );
}
