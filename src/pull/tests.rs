//! The walk, end to end between two layouts on disk (no network): the source is a
//! [`LayoutRemote`], the destination a [`LayoutStore`].

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::digest::Algorithm;
use crate::layout_remote::LayoutRemote;
use crate::media;

#[path = "../../tests/support/opens.rs"]
mod opens;
use opens::Opens;

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const FOREIGN: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";

fn put(root: &Path, media_type: &str, data: &[u8]) -> Descriptor {
    let d = Digest::of(Algorithm::Sha256, data);
    let dir = root.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(d.encoded()), data).unwrap();
    Descriptor::new(media_type, d, data.len() as u64)
}

fn image(root: &Path, arch: &str, extra_layer: Option<Descriptor>) -> Descriptor {
    let config = put(
        root,
        "application/vnd.oci.image.config.v1+json",
        format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).as_bytes(),
    );
    let mut layers = vec![
        put(root, LAYER, format!("{arch} one").as_bytes()),
        put(root, LAYER, b"shared"),
    ];
    layers.extend(extra_layer);
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config, "layers": layers,
    });
    let mut d = put(root, media::OCI_MANIFEST, m.to_string().as_bytes());
    d.platform = Some(Platform::new("linux", arch, None));
    d
}

/// A source layout with an index of amd64 and arm64 tagged `v1`; returns the index.
fn source(root: &Path, foreign: bool) -> Descriptor {
    let extra = foreign.then(|| {
        let mut d = Descriptor::new(FOREIGN, Digest::of(Algorithm::Sha256, b"far"), 3);
        d.urls.push("https://example.com/far".into());
        d
    });
    let manifests = vec![image(root, "amd64", extra), image(root, "arm64", None)];
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests,
    });
    let mut top = put(root, media::OCI_INDEX, index.to_string().as_bytes());
    let store = LayoutStore::open(root).unwrap();
    top.annotations.insert(REF_NAME.into(), "v1".into());
    store.add_to_index(&top).unwrap();
    top.bare()
}

async fn run(src: &Path, dst: &Path, platforms: Platforms) -> (Result<Pulled>, Vec<String>) {
    let store = LayoutStore::open(dst).unwrap();
    let opts = PullOptions {
        platforms,
        jobs: 4,
        verify_existing: false,
        progress: None,
        image_name: None,
        ..PullOptions::default()
    };
    let mut lines = Vec::new();
    let remote: Arc<dyn Remote> = Arc::new(LayoutRemote::new(src));
    let r = pull(
        remote,
        &Object::Tag("v1".into()),
        Some("v1"),
        &store,
        &opts,
        |e| {
            lines.push(e.json_line());
            Ok(())
        },
    )
    .await;
    (r, lines)
}

/// The error of the last line a pull reported.
fn last_error(lines: &[String]) -> String {
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    last["error"].as_str().unwrap().to_string()
}

fn statuses(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["status"].to_string())
        .collect()
}

fn arm64() -> Platforms {
    Platforms::One(Platform::new("linux", "arm64", None))
}

fn linux_amd64() -> Platforms {
    Platforms::One(Platform::new("linux", "amd64", None))
}

fn linux_arm_v7() -> Platforms {
    Platforms::One(Platform::new("linux", "arm", Some("v7")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_platform_then_again_fetches_nothing() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    source(src.path(), false);
    let (r, lines) = run(src.path(), dst.path(), arm64()).await;
    let pulled = r.unwrap();
    // index, arm64 manifest, config, two layers
    assert_eq!((pulled.fetched, pulled.failed, lines.len()), (5, 0, 5));
    let entry = pulled.entry.unwrap();
    assert_eq!(entry.media_type, media::OCI_MANIFEST);
    assert_eq!(entry.platform.as_ref().unwrap().architecture, "arm64");
    assert_eq!(entry.ref_name(), Some("v1"));
    let lines_numbers: HashSet<u64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(lines_numbers, (1..=5).collect());

    let (r, lines) = run(src.path(), dst.path(), arm64()).await;
    let again = r.unwrap();
    assert_eq!((again.fetched, again.existing), (0, 5));
    assert_eq!(statuses(&lines), vec!["\"exists\""; 5]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dst.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_platforms_records_the_index_and_skips_foreign_layers() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let top = source(src.path(), true);
    let (r, lines) = run(src.path(), dst.path(), Platforms::All).await;
    let pulled = r.unwrap();
    // index, 2 manifests, 2 configs, 3 distinct layers; one foreign layer skipped
    assert_eq!((pulled.fetched, pulled.skipped), (8, 1));
    assert_eq!(lines.len(), 9);
    assert_eq!(
        statuses(&lines)
            .iter()
            .filter(|s| *s == "\"skipped\"")
            .count(),
        1
    );
    let entry = pulled.entry.unwrap();
    assert_eq!((&entry.digest, entry.ref_name()), (&top.digest, Some("v1")));
}

fn index_entries(root: &Path) -> Vec<Descriptor> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    serde_json::from_value(index["manifests"].clone()).unwrap()
}

/// One platform pulled under a name that already names its whole index (pulled with all
/// platforms) leaves the index named: naming the one platform's image took the name from
/// the others, whose readers were then handed this platform's image. The other way
/// round, the index takes the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_platform_keeps_its_whole_index_named() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let top = source(src.path(), false);
    run(src.path(), dst.path(), Platforms::All).await.0.unwrap();
    let before = index_entries(dst.path());
    let (r, lines) = run(src.path(), dst.path(), arm64()).await;
    let pulled = r.unwrap();
    // index, arm64 manifest, config, two layers: all stored by the pull of every platform
    assert_eq!(statuses(&lines), vec!["\"exists\""; 5]);
    assert_eq!(pulled.entry.unwrap().digest, top.digest);
    assert_eq!(index_entries(dst.path()), before);

    let dst = tempfile::tempdir().unwrap();
    run(src.path(), dst.path(), arm64()).await.0.unwrap();
    assert_ne!(index_entries(dst.path())[0].digest, top.digest);
    run(src.path(), dst.path(), Platforms::All).await.0.unwrap();
    assert_whole_index_named(dst.path(), &top);
}

/// `index.json` at `dst` holds one entry: the whole index `top`, named `v1`.
fn assert_whole_index_named(dst: &Path, top: &Descriptor) {
    let after = index_entries(dst);
    assert_eq!(after.len(), 1);
    assert_eq!(
        (&after[0].digest, after[0].ref_name()),
        (&top.digest, Some("v1"))
    );
}

/// The same, with the whole index named while the one-platform pull waits for
/// `index.json`'s lock (an `--all-platforms` pull of the tag ending just before it): the
/// index stays named. The one-platform pull looked for it before it took the lock, and
/// then took the name from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_index_named_while_waiting_for_the_lock_stays_named() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let top = source(src.path(), false);
    LayoutStore::open(dst.path()).unwrap();
    // Another run's lock on index.json.
    let lock = crate::sink::index::IndexLock::acquire(dst.path()).unwrap();
    let other_run = async {
        // The one-platform pull has stored its 5 objects and is at the lock.
        let sha = dst.path().join("blobs/sha256");
        while std::fs::read_dir(&sha).map_or(0, |d| d.count()) < 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut whole = top.clone();
        whole.annotations.insert(REF_NAME.into(), "v1".into());
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [whole],
        });
        std::fs::write(dst.path().join("index.json"), index.to_string()).unwrap();
        drop(lock);
    };
    let ((r, _), ()) = tokio::join!(run(src.path(), dst.path(), arm64()), other_run);
    let pulled = r.unwrap();
    assert_eq!(pulled.entry.unwrap().digest, top.digest);
    assert_whole_index_named(dst.path(), &top);
}

/// A pull stopped (Ctrl-C, `--timeout`) while another run holds `index.json`'s lock
/// writes no entry once that lock goes: the wait ran on a blocking thread the stop could
/// not end, which took the lock when it came free, in the 2 s the runtime gives such
/// threads at exit, and named the image after the run had said `index.json` was left
/// alone.
#[test]
fn a_pull_stopped_while_waiting_for_the_index_lock_writes_no_entry() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    source(src.path(), false);
    let store = LayoutStore::open(dst.path()).unwrap();
    let lock = crate::sink::index::IndexLock::acquire(dst.path()).unwrap();
    // Each try for the lock opens its file: the only sign the wait gives. Watched from
    // before the pull starts, so that no try goes unseen; the store is opened before, as
    // its sweep opens the lock file too (to remove one nobody holds).
    let tries = Opens::of(&dst.path().join(".dist-index.lock"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let from = src.path().to_owned();
    let pulling = runtime.spawn(async move {
        let remote: Arc<dyn Remote> = Arc::new(LayoutRemote::new(&from));
        let opts = PullOptions {
            platforms: arm64(),
            jobs: 4,
            ..PullOptions::default()
        };
        let on_event = |_: Event| tx.send(()).map_err(|_| Error::new(ErrorKind::Io, "gone"));
        pull(
            remote,
            &Object::Tag("v1".into()),
            Some("v1"),
            &store,
            &opts,
            on_event,
        )
        .await
    });
    // Its five objects stored, the pull goes on to the lock, and waits once it has tried
    // it. (Looked for as an open descriptor of the lock's file, the try, over in a few
    // system calls, was hardly ever seen: the test waited out its 2 s limit every run.)
    for _ in 0..5 {
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    tries.next(
        Duration::from_secs(30),
        "the pull's try for index.json's lock",
    );
    pulling.abort();
    let stopped = runtime.block_on(pulling).unwrap_err();
    assert!(stopped.is_cancelled());
    drop(lock);
    // As dist's exit does, and longer: what a blocking thread still does, it does now.
    runtime.shutdown_timeout(Duration::from_secs(5));
    assert!(
        index_entries(dst.path()).is_empty(),
        "a stopped pull named its image"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_leave_index_json_alone_and_no_match_is_an_error() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    source(src.path(), false);
    let shared = Digest::of(Algorithm::Sha256, b"shared");
    std::fs::remove_file(src.path().join("blobs/sha256").join(shared.encoded())).unwrap();
    let (r, lines) = run(src.path(), dst.path(), arm64()).await;
    let pulled = r.unwrap();
    assert_eq!(pulled.failed, 1);
    assert!(pulled.entry.is_none());
    let failed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["status"] == "error")
        .collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    // A layer names no platform: its error is reported as it is, not dropped.
    let error = failed[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&shared.to_string()), "{lines:?}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dst.path().join("index.json")).unwrap()).unwrap();
    assert!(index["manifests"].as_array().unwrap().is_empty());

    let s390x = Platforms::One(Platform::new("linux", "s390x", None));
    let e = run(src.path(), dst.path(), s390x).await.0.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("linux/amd64, linux/arm64"), "{e}");
}

/// An index whose entry for the platform cannot be fetched stores nothing, and reports
/// nothing of the index it held: the lines and the progress count the objects reported,
/// the failed entry its only one. Its line was numbered 2, after the index held, and the
/// progress counted that index among the objects finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_held_and_dropped_is_neither_numbered_nor_counted() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let top = source(src.path(), false);
    let blobs = src.path().join("blobs/sha256");
    let index = std::fs::read(blobs.join(top.digest.encoded())).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let arm64_manifest = index["manifests"][1]["digest"].as_str().unwrap();
    let arm64_manifest: Digest = arm64_manifest.parse().unwrap();
    std::fs::remove_file(blobs.join(arm64_manifest.encoded())).unwrap();

    let store = LayoutStore::open(dst.path()).unwrap();
    let progress = Arc::new(crate::worker::progress::Progress::default());
    let opts = PullOptions {
        platforms: arm64(),
        jobs: 4,
        verify_existing: false,
        progress: Some(progress.clone()),
        image_name: None,
        ..PullOptions::default()
    };
    let mut lines = Vec::new();
    let remote: Arc<dyn Remote> = Arc::new(LayoutRemote::new(src.path()));
    let tag = Object::Tag("v1".into());
    let pulled = pull(remote, &tag, Some("v1"), &store, &opts, |e| {
        lines.push(serde_json::from_str::<serde_json::Value>(&e.json_line()).unwrap());
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!((pulled.fetched, pulled.failed), (0, 1));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["object"], arm64_manifest.to_string());
    assert_eq!(lines[0]["line"], 1, "{lines:?}");
    let s = progress.snapshot();
    let counted = (s.objects, s.started, s.finished, s.failed);
    assert_eq!(counted, (1, 1, 1, 1), "{s:?}");
    assert!(!store.blob_path(&top.digest).exists());
}

#[test]
fn choose_prefers_a_matching_manifest_then_an_unlabelled_one_then_nested_indexes() {
    let d = |t: &str, arch: Option<&str>, data: &[u8]| {
        let mut d = Descriptor::new(t, Digest::of(Algorithm::Sha256, data), 1);
        d.platform = arch.map(|a| Platform::new("linux", a, None));
        d
    };
    let children = vec![
        d(media::OCI_MANIFEST, Some("amd64"), b"1"),
        d(media::OCI_INDEX, None, b"2"),
        d(media::OCI_INDEX, Some("s390x"), b"3"),
        d(media::OCI_MANIFEST, Some("arm64"), b"4"),
    ];
    let mut offered = Offered::default();
    let got = choose(&arm64(), children.clone(), Vec::new(), &mut offered).0;
    assert_eq!(got, vec![children[3].clone()]);
    // The s390x index is not walked: its platform is on offer.
    assert_eq!(offered.to_string(), "linux/amd64, linux/s390x, linux/arm64");
    let riscv = Platforms::One(Platform::new("linux", "riscv64", None));
    let got = choose(&riscv, children.clone(), Vec::new(), &mut offered).0;
    assert_eq!(
        got,
        vec![children[1].clone()],
        "only the unlabelled nested index"
    );
    assert_eq!(
        choose(&Platforms::All, children.clone(), Vec::new(), &mut offered).0,
        children
    );
    // A manifest that names no platform is taken when none names the one wanted, before
    // any nested index; one that does name it still comes first.
    // Attestations are no platform on offer, and one platform is listed once.
    let mut offered = Offered::default();
    let mut attested = children.clone();
    attested.push(d(media::OCI_MANIFEST, Some("amd64"), b"6"));
    let mut attestation = d(media::OCI_MANIFEST, None, b"7");
    attestation.platform = Some(Platform::new("unknown", "unknown", None));
    attested.push(attestation);
    choose(&riscv, attested, Vec::new(), &mut offered);
    assert_eq!(offered.to_string(), "linux/amd64, linux/s390x, linux/arm64");
    let mut unlabelled = children.clone();
    unlabelled.push(d(media::OCI_MANIFEST, None, b"5"));
    let got = choose(&riscv, unlabelled.clone(), Vec::new(), &mut offered).0;
    assert_eq!(got, vec![unlabelled[4].clone()]);
    let got = choose(&arm64(), unlabelled.clone(), Vec::new(), &mut offered).0;
    assert_eq!(got, vec![unlabelled[3].clone()]);
    // An artifact beside the images is no image, with or without others to take.
    let mut sbom = d(media::OCI_MANIFEST, None, b"8");
    sbom.extra
        .insert("artifactType".into(), "application/spdx+json".into());
    let mut with_sbom = vec![sbom.clone()];
    with_sbom.extend(unlabelled.clone());
    assert_eq!(
        choose(&riscv, with_sbom, Vec::new(), &mut offered).0,
        vec![unlabelled[4].clone()]
    );
    assert!(choose(&riscv, vec![sbom], Vec::new(), &mut offered)
        .0
        .is_empty());
}

#[test]
fn choose_takes_the_closest_older_variant_when_the_one_asked_for_is_missing() {
    let d = |variant: &str, data: &[u8]| {
        let mut d = Descriptor::new(media::OCI_MANIFEST, Digest::of(Algorithm::Sha256, data), 1);
        d.platform = Some(Platform::new("linux", "arm", Some(variant)));
        d
    };
    let v7 = linux_arm_v7();
    let older = vec![d("v5", b"1"), d("v6", b"2"), d("v8", b"3")];
    let got = choose(&v7, older.clone(), Vec::new(), &mut Offered::default()).0;
    assert_eq!(got, vec![older[1].clone()], "v6, the closest a v7 CPU runs");
    // The variant asked for wins wherever it is listed, and the first of equals is taken.
    let mut with_exact = older.clone();
    with_exact.push(d("v7", b"4"));
    with_exact.push(d("7", b"5"));
    let got = choose(&v7, with_exact.clone(), Vec::new(), &mut Offered::default()).0;
    assert_eq!(got, vec![with_exact[3].clone()]);
    let v5 = Platforms::One(Platform::new("linux", "arm", Some("v5")));
    assert_eq!(
        choose(&v5, older.clone(), Vec::new(), &mut Offered::default()).0,
        vec![older[0].clone()]
    );
    let v4 = Platforms::One(Platform::new("linux", "arm", Some("v4")));
    assert!(choose(&v4, older, Vec::new(), &mut Offered::default())
        .0
        .is_empty());
}

/// Manifests are capped in size, not in number: an image whose manifests list more
/// descriptors than any real image is refused before a config or layer is fetched, and
/// before the walk holds them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_listing_too_many_descriptors_is_refused() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = src.path();
    let config = put(root, "application/vnd.oci.image.config.v1+json", b"{}");
    let layer = put(root, LAYER, b"one");
    // Each manifest stays under the 4 MiB cap; together they pass the limit.
    let per_manifest = 25_000;
    let count = MAX_DESCRIPTORS / per_manifest + 1;
    let manifests: Vec<Descriptor> = (0..count)
        .map(|i| {
            let m = serde_json::json!({
                "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config,
                "layers": vec![&layer; per_manifest], "annotations": {"i": i.to_string()},
            });
            let mut d = put(root, media::OCI_MANIFEST, m.to_string().as_bytes());
            d.platform = Some(Platform::new("linux", &format!("arch{i}"), None));
            d
        })
        .collect();
    let e = pull_all_of_an_index_refused(root, dst.path(), manifests).await;
    assert!(
        e.to_string().contains("more than 100000 descriptors"),
        "{e}"
    );
    let blobs = dst.path().join("blobs/sha256");
    assert!(
        !blobs.join(layer.digest.encoded()).exists(),
        "a layer was fetched"
    );
    assert!(
        !blobs.join(config.digest.encoded()).exists(),
        "the config was fetched"
    );
}

/// An index whose entries declare more bytes of manifests than any image has is refused
/// before one of them is fetched: each is capped in size, but not their sum, which is
/// what lands on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_too_many_manifest_bytes_is_refused_before_fetching_them() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = src.path();
    // Declared only: the walk must stop before it asks for any of them.
    let per_manifest = 3u64 << 20;
    let count = MAX_MANIFEST_BYTES / per_manifest + 1;
    let manifests: Vec<Descriptor> = (0..count)
        .map(|i| {
            let mut d = Descriptor::new(
                media::OCI_MANIFEST,
                Digest::of(Algorithm::Sha256, format!("m{i}").as_bytes()),
                per_manifest,
            );
            d.platform = Some(Platform::new("linux", &format!("arch{i}"), None));
            d
        })
        .collect();
    let e = pull_all_of_an_index_refused(root, dst.path(), manifests).await;
    assert!(
        e.to_string().contains("more than 64 MiB of manifests"),
        "{e}"
    );
    // One platform of the same index is 3 MiB: asked for (and missing here).
    let arch0 = Platforms::One(Platform::new("linux", "arch0", None));
    let (r, _) = run(root, dst.path(), arch0).await;
    match r {
        Err(e) => assert_ne!(e.kind(), ErrorKind::TooLarge, "{e}"),
        Ok(p) => assert!(p.failed > 0),
    }
}

/// The layers a build cache's index lists are blobs, not manifests: however large, they
/// do not count against the manifests' budget, and are fetched as the blobs they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_an_index_lists_are_no_manifest_bytes() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Declared only, and missing: a failed fetch, not a refusal of the whole pull.
    let big = Descriptor::new(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        Digest::of(Algorithm::Sha256, b"big"),
        MAX_MANIFEST_BYTES + 1,
    );
    let small = put(src.path(), "application/vnd.buildkit.cacheconfig.v0", b"{}");
    tag_index_v1(src.path(), vec![big, small.clone()]);
    let (r, lines) = run(src.path(), dst.path(), Platforms::All).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.fetched, pulled.failed), (2, 1), "{lines:?}");
    assert!(dst
        .path()
        .join("blobs/sha256")
        .join(small.digest.encoded())
        .exists());
}

/// An index entry that names no media type is read as the manifest its shape says, as
/// before blobs listed in indexes were told apart by their type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_without_a_media_type_is_still_walked() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut entry = image(src.path(), "amd64", None);
    entry.media_type = String::new();
    tag_index_v1(src.path(), vec![entry]);
    let (r, lines) = run(src.path(), dst.path(), Platforms::All).await;
    let pulled = r.unwrap();
    // index, manifest, config, two layers
    assert_eq!((pulled.fetched, pulled.failed), (5, 0), "{lines:?}");
}

/// The message for no match names the platforms an index offers, but not all of an index
/// that lists hundreds (a registry's making): the first few and how many, with what
/// follows the list still said after it, and without comparing each platform with every
/// other, which took seconds for an index of thousands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platforms_offered_are_named_up_to_a_bound() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let amd64 = image(src.path(), "amd64", None);
    let mut entries: Vec<Descriptor> = (0..500)
        .map(|i| {
            let mut d = amd64.clone();
            d.platform = Some(Platform::new(
                "linux",
                "arm",
                Some(&format!("x{}", i % 300)),
            ));
            d
        })
        .collect();
    let mut sbom = amd64.bare();
    sbom.extra
        .insert("artifactType".into(), "application/spdx+json".into());
    entries.push(sbom);
    tag_index_v1(src.path(), entries);
    let s390x = Platforms::One(Platform::new("linux", "s390x", None));
    let e = run(src.path(), dst.path(), s390x).await.0.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let said = e.to_string();
    assert!(
        said.contains("platforms: linux/arm/x0, linux/arm/x1, ")
            && said.contains(", … (300 in all); the index lists artifacts"),
        "{said}"
    );
    assert!(!said.contains("linux/arm/x299"), "{said}");
    assert!(said.len() < 1000, "{} bytes: {said}", said.len());
}

/// An index whose entries are indexes for platforms (no image of its own) offers those
/// platforms: the message for one it does not hold names them, not "none".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platforms_of_nested_indexes_are_offered() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nested = |arch: &str, variant: Option<&str>| {
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX,
            "manifests": [image(src.path(), arch, None)],
        });
        let mut d = put(src.path(), media::OCI_INDEX, index.to_string().as_bytes());
        d.platform = Some(Platform::new("linux", arch, variant));
        d
    };
    tag_index_v1(
        src.path(),
        vec![nested("amd64", None), nested("arm64", Some("v8"))],
    );
    let s390x = Platforms::One(Platform::new("linux", "s390x", None));
    let e = run(src.path(), dst.path(), s390x).await.0.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.to_string()
            .ends_with("; platforms: linux/amd64, linux/arm64/v8"),
        "{e}"
    );
    // One that matches is walked to its image.
    let (r, _) = run(src.path(), dst.path(), arm64()).await;
    assert!(r.is_ok(), "{r:?}");
}

/// Pulls every platform of an index of `manifests`, tagged `v1` in the layout at `src`,
/// into `dst`; the pull must be refused as too large, with this error.
async fn pull_all_of_an_index_refused(src: &Path, dst: &Path, manifests: Vec<Descriptor>) -> Error {
    tag_index_v1(src, manifests);
    let (r, _) = run(src, dst, Platforms::All).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    e
}

/// Stores an index of `manifests` in the layout at `src`, tagged `v1`.
fn tag_index_v1(src: &Path, manifests: Vec<Descriptor>) {
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests,
    });
    tag_v1(
        src,
        put(src, media::OCI_INDEX, index.to_string().as_bytes()),
    );
}

/// Tags `top`, stored in the layout at `src`, `v1` there.
fn tag_v1(src: &Path, mut top: Descriptor) {
    top.annotations.insert(REF_NAME.into(), "v1".into());
    LayoutStore::open(src).unwrap().add_to_index(&top).unwrap();
}

/// Stores an index of `entries`, as JSON, in the layout at `src`, tagged `v1`; returns it.
fn tag_index_of_values(src: &Path, entries: Vec<serde_json::Value>) -> Descriptor {
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": entries,
    });
    let mut top = put(src, media::OCI_INDEX, index.to_string().as_bytes());
    top.annotations.insert(REF_NAME.into(), "v1".into());
    LayoutStore::open(src).unwrap().add_to_index(&top).unwrap();
    top
}

/// Valid by the image spec's grammar (which says such a digest should pass validation),
/// in an algorithm dist does not verify.
const B64U: &str = "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564";

fn entry_for(arch: &str, digest: serde_json::Value, size: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media::OCI_MANIFEST, "digest": digest, "size": size,
        "platform": {"os": "linux", "architecture": arch},
    })
}

/// An index entry dist cannot fetch (a digest in an algorithm it does not verify, a
/// malformed digest, a negative size) spoils no other platform's pull, as containerd and
/// skopeo read such an index: the whole pull failed with "not a manifest", naming no URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_dist_cannot_fetch_spoil_no_other_platform() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let amd64 = serde_json::to_value(image(src.path(), "amd64", None)).unwrap();
    let top = tag_index_of_values(
        src.path(),
        vec![
            entry_for("arm64", B64U.into(), 1.into()),
            entry_for("s390x", "sha256:abc".into(), 1.into()),
            entry_for("ppc64le", amd64["digest"].clone(), (-1).into()),
            amd64,
        ],
    );
    let (r, lines) = run(src.path(), dst.path(), linux_amd64()).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.fetched, pulled.failed), (5, 0), "{lines:?}");
    let entry = pulled.entry.unwrap();
    assert_eq!(entry.platform.unwrap().architecture, "amd64");

    // The one asked for cannot be fetched: named with its platform, its digest and where
    // the index that lists it is; the pull fails and index.json is left alone.
    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(src.path(), dst.path(), arm64()).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.failed, pulled.entry), (1, None), "{lines:?}");
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(
        (&last["object"], &last["status"]),
        (&B64U.into(), &"error".into())
    );
    let said = last["error"].as_str().unwrap();
    for part in [
        B64U,
        "linux/arm64",
        top.digest.encoded(),
        "dist verifies sha256",
    ] {
        assert!(said.contains(part), "{part} in {said}");
    }
    assert!(!dst.path().join("index.json").exists() || index_entries(dst.path()).is_empty());

    // A malformed one is not shown as it is, and its reason is the digest's.
    let s390x = Platforms::One(Platform::new("linux", "s390x", None));
    let (r, lines) = run(src.path(), dst.path(), s390x).await;
    assert_eq!(r.unwrap().failed, 1, "{lines:?}");
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let said = last["error"].as_str().unwrap();
    assert_eq!(last["object"], format!("entry 2 of {}", top.digest));
    assert!(
        said.contains("invalid digest") && said.contains("linux/s390x"),
        "{said}"
    );

    // Every platform: the others are pulled, each unusable entry is a failed object.
    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(src.path(), dst.path(), Platforms::All).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.fetched, pulled.failed), (5, 3), "{lines:?}");
    assert_eq!(pulled.entry, None);
}

/// A size past the largest int64 (the spec's type for `size`) is no size, as a negative
/// one is: its index entry is one dist cannot fetch, which spoils no other platform's
/// pull (it failed every platform's, as an index listing more than 64 MiB of manifests),
/// and the one that asks for it says why, naming the platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_past_int64_is_an_entry_dist_cannot_fetch() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let amd64 = serde_json::to_value(image(src.path(), "amd64", None)).unwrap();
    let past = serde_json::Value::from(i64::MAX as u64 + 1);
    tag_index_of_values(
        src.path(),
        vec![entry_for("arm64", amd64["digest"].clone(), past), amd64],
    );
    let (r, lines) = run(src.path(), dst.path(), linux_amd64()).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.fetched, pulled.failed), (5, 0), "{lines:?}");

    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(src.path(), dst.path(), arm64()).await;
    assert_eq!(r.unwrap().failed, 1, "{lines:?}");
    let said = last_error(&lines);
    assert!(
        said.contains("9223372036854775808") && said.contains("linux/arm64"),
        "{said}"
    );
}

/// An index entry that declares more than the 4 MiB a manifest may have is refused as
/// past that limit, before it is fetched, as one fetched past it is: it was refused as
/// an image whose indexes list more than 64 MiB of manifests, which one entry of a bogus
/// size is not. Another platform's pull does not fetch it, and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_larger_than_any_manifest_is_refused_as_past_the_limit() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let amd64 = serde_json::to_value(image(src.path(), "amd64", None)).unwrap();
    let huge = serde_json::Value::from(100u64 << 20);
    tag_index_of_values(
        src.path(),
        vec![
            entry_for("arm64", amd64["digest"].clone(), huge),
            amd64.clone(),
        ],
    );
    let (r, lines) = run(src.path(), dst.path(), Platforms::All).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    let said = e.to_string();
    assert!(
        said.contains("exceeds the 4194304-byte limit") && !said.contains("64 MiB"),
        "{said} {lines:?}"
    );
    assert_eq!(e.object(), amd64["digest"].as_str());

    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(src.path(), dst.path(), linux_amd64()).await;
    assert_eq!(r.unwrap().failed, 0, "{lines:?}");
}

/// A layer whose size is past the largest int64 makes its manifest no manifest, as a
/// negative size does: it was fetched as a layer that failed with a line naming neither
/// the layer nor its manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_size_past_int64_is_refused_with_its_manifest() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = put(
        src.path(),
        "application/vnd.oci.image.config.v1+json",
        b"{}",
    );
    let layer = put(src.path(), LAYER, b"layer");
    let mut layer = serde_json::to_value(layer).unwrap();
    layer["size"] = serde_json::Value::from(i64::MAX as u64 + 1);
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config, "layers": [layer],
    });
    tag_v1(
        src.path(),
        put(src.path(), media::OCI_MANIFEST, m.to_string().as_bytes()),
    );
    let (r, lines) = run(src.path(), dst.path(), Platforms::All).await;
    let e = r.unwrap_err();
    let said = e.to_string();
    assert!(
        said.contains("not a manifest") && said.contains("9223372036854775808"),
        "{said} {lines:?}"
    );
}

/// An entry dist cannot fetch loses to one it can for the same platform (a producer
/// moving to another algorithm may list both), but not to a worse fit: that would be
/// another variant than the one the index has for the platform.
#[test]
fn choose_prefers_an_entry_dist_can_fetch_only_as_good_a_fit() {
    let unusable = |arch: &str, variant: Option<&str>| {
        let mut v = entry_for(arch, B64U.into(), 1.into());
        if let Some(variant) = variant {
            v["platform"]["variant"] = variant.into();
        }
        let text = serde_json::json!({"mediaType": media::OCI_INDEX, "manifests": [v]});
        let (_, mut u) =
            Manifest::parse_verified_leniently(media::OCI_INDEX, text.to_string().as_bytes())
                .unwrap();
        u.pop().unwrap()
    };
    let mut usable = Descriptor::new(media::OCI_MANIFEST, Digest::of(Algorithm::Sha256, b"1"), 1);
    usable.platform = Some(Platform::new("linux", "arm", Some("v6")));
    let v7 = linux_arm_v7();
    let (got, cannot) = choose(
        &v7,
        vec![usable.clone()],
        vec![unusable("arm", Some("v6"))],
        &mut Offered::default(),
    );
    assert_eq!((got, cannot.len()), (vec![usable.clone()], 0));
    let (got, cannot) = choose(
        &v7,
        vec![usable.clone()],
        vec![unusable("arm", Some("v7"))],
        &mut Offered::default(),
    );
    assert_eq!((got.len(), cannot.len()), (0, 1));
    // One that names no platform is the one taken for want of a match, as a usable one
    // would be; another platform's is not.
    let mut unlabelled = unusable("amd64", None);
    unlabelled.platform = None;
    let (got, cannot) = choose(
        &v7,
        Vec::new(),
        vec![unusable("amd64", None), unlabelled],
        &mut Offered::default(),
    );
    assert_eq!((got.len(), cannot.len()), (0, 1));
    assert!(cannot[0].platform.is_none());
}

/// An index entry that is an unsigned Docker schema 1 manifest fails as that entry, as a
/// signed one (refused as it is fetched) does: the other platforms are pulled, and the
/// one that asks for it names its platform. It stopped the whole pull, every platform's,
/// storing nothing, with an error that named no platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_schema1_entry_fails_as_that_entry() {
    let schema1 = br#"{"schemaVersion":1,"name":"team/app","tag":"v1","architecture":"arm64","fsLayers":[],"history":[]}"#;
    unsigned_schema1_entry_fails_as_that_entry(schema1).await;
}

/// As above, for one in schema 1's shape that leaves out its `schemaVersion`: it stopped
/// every platform's pull as a malformed manifest would, storing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema1_shaped_entry_without_its_version_fails_as_that_entry() {
    let schema1 =
        br#"{"name":"team/app","tag":"v1","architecture":"arm64","fsLayers":[],"history":[]}"#;
    unsigned_schema1_entry_fails_as_that_entry(schema1).await;
}

async fn unsigned_schema1_entry_fails_as_that_entry(schema1: &[u8]) {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = src.path();
    let amd64 = serde_json::to_value(image(root, "amd64", None)).unwrap();
    let s1 = put(
        root,
        "application/vnd.docker.distribution.manifest.v1+json",
        schema1,
    );
    let mut s1 = serde_json::to_value(s1).unwrap();
    s1["platform"] = serde_json::json!({"os": "linux", "architecture": "arm64"});
    tag_index_of_values(root, vec![amd64, s1.clone()]);

    let (r, lines) = run(root, dst.path(), Platforms::All).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.fetched, pulled.failed), (5, 1), "{lines:?}");
    let failed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["status"] == "error")
        .collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!(failed[0]["object"], s1["digest"]);
    assert_eq!(failed[0]["digest"], s1["digest"], "{lines:?}");
    assert_eq!(failed[0]["size"], s1["size"], "{lines:?}");
    assert!(failed[0]["path"].is_null(), "{lines:?}");
    let said = failed[0]["error"].as_str().unwrap();
    assert!(
        said.contains("schema 1") && said.contains("linux/arm64"),
        "{said}"
    );
    // Not stored: it is no manifest dist pulls.
    let digest: Digest = s1["digest"].as_str().unwrap().parse().unwrap();
    let store = LayoutStore::open(dst.path()).unwrap();
    assert!(!store.blob_path(&digest).exists());

    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(root, dst.path(), arm64()).await;
    assert_eq!(r.unwrap().failed, 1, "{lines:?}");
    let said = last_error(&lines);
    assert!(
        said.contains("schema 1") && said.contains("linux/arm64"),
        "{said}"
    );
}

/// An unsigned schema 1 entry already in the layout (a worker run with `-o DIR` stored
/// it, as it stores any content that verifies) fails as that entry, as one fetched does:
/// read back from the store, it stopped every platform's pull, naming no platform. Its line
/// says what the entry asked for, as one fetched does: its digest and size were null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_schema1_entry_already_stored_fails_as_that_entry() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = src.path();
    let amd64 = serde_json::to_value(image(root, "amd64", None)).unwrap();
    let schema1 = br#"{"schemaVersion":1,"name":"team/app","tag":"v1","architecture":"arm64","fsLayers":[],"history":[]}"#;
    let s1 = put(
        root,
        "application/vnd.docker.distribution.manifest.v1+json",
        schema1,
    );
    put(
        dst.path(),
        "application/vnd.docker.distribution.manifest.v1+json",
        schema1,
    );
    let mut s1 = serde_json::to_value(s1).unwrap();
    s1["platform"] = serde_json::json!({"os": "linux", "architecture": "arm64"});
    tag_index_of_values(root, vec![amd64, s1.clone()]);

    for platforms in [Platforms::All, arm64()] {
        let all = platforms == Platforms::All;
        let (r, lines) = run(root, dst.path(), platforms).await;
        let pulled = r.unwrap_or_else(|e| panic!("all: {all}: {e} {lines:?}"));
        assert_eq!(pulled.failed, 1, "all: {all}: {lines:?}");
        assert_eq!(pulled.entry, None, "all: {all}: {lines:?}");
        let failed: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["status"] == "error")
            .collect();
        assert_eq!(failed.len(), 1, "all: {all}: {lines:?}");
        assert_eq!(failed[0]["object"], s1["digest"], "all: {all}: {lines:?}");
        assert_eq!(failed[0]["digest"], s1["digest"], "all: {all}: {lines:?}");
        assert_eq!(failed[0]["size"], s1["size"], "all: {all}: {lines:?}");
        let said = failed[0]["error"].as_str().unwrap();
        assert!(
            said.contains("schema 1") && said.contains("linux/arm64"),
            "all: {all}: {said}"
        );
    }
}

/// A manifest that lists one layer twice with two sizes cannot be right in both: each
/// listing is fetched as it would be on its own, as the worker fetches such lines, so
/// the wrong one fails and the layer is stored. By its digest alone the second listing
/// was skipped: the pull succeeded when the right size came first, and when the wrong
/// one did, it failed with the layer never fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_listed_twice_with_two_sizes_is_fetched_as_each() {
    for wrong_first in [false, true] {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root = src.path();
        let config = put(
            root,
            "application/vnd.oci.image.config.v1+json",
            br#"{"architecture":"amd64","os":"linux"}"#,
        );
        let right = put(root, LAYER, b"layer");
        let mut wrong = right.clone();
        wrong.size += 1;
        let layers = match wrong_first {
            true => [wrong, right.clone()],
            false => [right.clone(), wrong],
        };
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config,
            "layers": layers,
        });
        tag_v1(
            root,
            put(root, media::OCI_MANIFEST, m.to_string().as_bytes()),
        );
        let (r, lines) = run(root, dst.path(), Platforms::All).await;
        let pulled = r.unwrap();
        assert_eq!(pulled.failed, 1, "wrong first: {wrong_first}: {lines:?}");
        assert_eq!(pulled.entry, None, "{lines:?}");
        assert!(
            LayoutStore::open(dst.path())
                .unwrap()
                .blob_path(&right.digest)
                .exists(),
            "wrong first: {wrong_first}: {lines:?}"
        );
    }
}

/// A layer of a non-distributable type that lists no `urls` is fetched, as skopeo
/// fetches it; one the source lacks failed as any missing layer does, which reads as a
/// registry that lost it. Its error says what its type marks it as.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_non_distributable_layer_without_urls_is_said_to_be_one() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = src.path();
    let config = put(
        root,
        "application/vnd.oci.image.config.v1+json",
        br#"{"architecture":"amd64","os":"linux"}"#,
    );
    let absent = Descriptor::new(FOREIGN, Digest::of(Algorithm::Sha256, b"far"), 3);
    let plain_absent = Descriptor::new(LAYER, Digest::of(Algorithm::Sha256, b"lost"), 4);
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config,
        "layers": [absent, plain_absent],
    });
    tag_v1(
        root,
        put(root, media::OCI_MANIFEST, m.to_string().as_bytes()),
    );
    let (r, lines) = run(root, dst.path(), Platforms::All).await;
    assert_eq!(r.unwrap().failed, 2, "{lines:?}");
    let error_of = |digest: &Digest| {
        let line = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|l| l["object"] == digest.to_string())
            .unwrap();
        line["error"].as_str().unwrap().to_string()
    };
    let said = error_of(&absent.digest);
    assert!(said.contains("non-distributable"), "{said}");
    let said = error_of(&plain_absent.digest);
    assert!(!said.contains("non-distributable"), "{said}");
}

/// `urls` make a layer non-distributable, not a config: an image without its config is
/// no image (skopeo copies the config whatever it lists), and one whose config named a
/// mirror in `urls` was recorded in index.json with the config absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_with_urls_is_fetched_all_the_same() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = src.path();
    let mut config = put(
        root,
        "application/vnd.oci.image.config.v1+json",
        br#"{"architecture":"amd64","os":"linux"}"#,
    );
    config.urls.push("https://mirror.example/config".into());
    let layer = put(root, LAYER, b"layer");
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config,
        "layers": [layer],
    });
    let mut top = put(root, media::OCI_MANIFEST, m.to_string().as_bytes());
    top.annotations.insert(REF_NAME.into(), "v1".into());
    LayoutStore::open(root).unwrap().add_to_index(&top).unwrap();
    let (r, lines) = run(root, dst.path(), Platforms::All).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.fetched, pulled.skipped), (3, 0), "{lines:?}");
    assert!(LayoutStore::open(dst.path())
        .unwrap()
        .blob_path(&config.digest)
        .exists());
}

/// `"artifactType": null` (or `""`) names no artifact type, as Go reads it and as dist
/// reads every other optional field given so: an image listed without a platform by a
/// tool that writes every field was taken for an artifact, and no platform pulled it.
#[test]
fn an_artifact_type_of_null_names_no_artifact() {
    for none in [serde_json::Value::Null, "".into()] {
        let mut d = Descriptor::new(media::OCI_MANIFEST, Digest::of(Algorithm::Sha256, b"1"), 1);
        d.extra.insert("artifactType".into(), none.clone());
        let got = choose(
            &arm64(),
            vec![d.clone()],
            Vec::new(),
            &mut Offered::default(),
        )
        .0;
        assert_eq!(got, vec![d], "{none}");
    }
}

/// Stores an image labelled `linux/arm/<variant>` (its content seeded by the variant);
/// returns its descriptor as JSON.
fn arm_image(src: &Path, variant: &str) -> serde_json::Value {
    let mut d = image(src, &format!("arm-{variant}"), None);
    d.platform = Some(Platform::new("linux", "arm", Some(variant)));
    serde_json::to_value(d).unwrap()
}

/// Stores an index of `entries`; returns its descriptor (which names no platform) as JSON.
fn unlabelled_index_of(src: &Path, entries: Vec<serde_json::Value>) -> serde_json::Value {
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": entries,
    });
    serde_json::to_value(put(src, media::OCI_INDEX, index.to_string().as_bytes())).unwrap()
}

/// An entry dist cannot fetch in one index of an image spoils no pull that another of its
/// indexes serves as well: the image's indexes were each chosen from on their own, and the
/// one the unusable entry was in failed the pull, though its sibling held the platform's
/// image (a producer moving to another digest algorithm may keep the old entries so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_dist_cannot_fetch_loses_to_another_index_s_as_good() {
    let src = tempfile::tempdir().unwrap();
    let arm64_image = serde_json::to_value(image(src.path(), "arm64", None)).unwrap();
    let mut untyped = entry_for("arm64", B64U.into(), 1.into());
    untyped.as_object_mut().unwrap().remove("mediaType");
    let spoilt = unlabelled_index_of(src.path(), vec![untyped.clone()]);
    let good = unlabelled_index_of(src.path(), vec![arm64_image.clone()]);
    let mut good_arm64 = good.clone();
    good_arm64["platform"] = serde_json::json!({"os": "linux", "architecture": "arm64"});
    for (why, entries) in [
        ("sibling indexes", vec![spoilt.clone(), good.clone()]),
        // One without a type may be an index as well as a manifest: the usable index
        // beside it, for the platform, fits as well.
        ("beside a nested index", vec![untyped.clone(), good_arm64]),
    ] {
        tag_index_of_values(src.path(), entries);
        let dst = tempfile::tempdir().unwrap();
        let (r, lines) = run(src.path(), dst.path(), arm64()).await;
        let pulled = r.unwrap();
        assert_eq!(pulled.failed, 0, "{why}: {lines:?}");
        let entry = pulled.entry.unwrap();
        assert_eq!(entry.digest.to_string(), arm64_image["digest"], "{why}");
    }

    // A worse fit does not take its place: arm/v7 asked for, the usable index has v6.
    let v6 = {
        let mut d = image(src.path(), "arm", None);
        d.platform = Some(Platform::new("linux", "arm", Some("v6")));
        serde_json::to_value(d).unwrap()
    };
    let mut v7_untyped = entry_for("arm", B64U.into(), 1.into());
    v7_untyped["platform"]["variant"] = "v7".into();
    let v6_index = unlabelled_index_of(src.path(), vec![v6]);
    let v7_spoilt = unlabelled_index_of(src.path(), vec![v7_untyped]);
    tag_index_of_values(src.path(), vec![v6_index, v7_spoilt]);
    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(src.path(), dst.path(), linux_arm_v7()).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.failed, pulled.entry), (1, None), "{lines:?}");
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["object"], B64U, "{lines:?}");
}

/// Each nested index is chosen from on its own, but one image is pulled: the closest of
/// them all, not the first found (an `arm/v6` image for an `arm/v7` pull whose other
/// index has `arm/v7`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closest_image_of_sibling_indexes_is_pulled() {
    let src = tempfile::tempdir().unwrap();
    let (v6, v7) = (arm_image(src.path(), "v6"), arm_image(src.path(), "v7"));
    let first = unlabelled_index_of(src.path(), vec![v6]);
    let second = unlabelled_index_of(src.path(), vec![v7.clone()]);
    tag_index_of_values(src.path(), vec![first, second]);
    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(src.path(), dst.path(), linux_arm_v7()).await;
    let entry = r.unwrap().entry.unwrap();
    assert_eq!(entry.digest.to_string(), v7["digest"], "{lines:?}");
}

/// The same when the closer image is nested deeper: the walk stopped at the first level
/// that held an image, and pulled `arm/v6` from one index though its sibling's own nested
/// index held the `arm/v7` asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closest_image_is_pulled_however_deep_its_index() {
    let src = tempfile::tempdir().unwrap();
    let (v6, v7) = (arm_image(src.path(), "v6"), arm_image(src.path(), "v7"));
    let shallow = unlabelled_index_of(src.path(), vec![v6]);
    let deep = unlabelled_index_of(src.path(), vec![v7.clone()]);
    let deeper = unlabelled_index_of(src.path(), vec![deep]);
    tag_index_of_values(src.path(), vec![shallow, deeper]);
    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(src.path(), dst.path(), linux_arm_v7()).await;
    let entry = r.unwrap().entry.unwrap();
    assert_eq!(entry.digest.to_string(), v7["digest"], "{lines:?}");
}

/// Regression: an index whose entry for the platform dist cannot fetch also listed a
/// worse fit it can (`arm/v6` beside the `arm/v7` asked for) had its nested indexes left
/// unwalked, so the pull failed though one of them held an `arm/v7` image: the worse fit
/// stopped the search that an index without it makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_fit_beside_an_entry_dist_cannot_fetch_still_has_nested_indexes_walked() {
    let src = tempfile::tempdir().unwrap();
    let (v6, v7) = (arm_image(src.path(), "v6"), arm_image(src.path(), "v7"));
    let mut v7_spoilt = entry_for("arm", B64U.into(), 1.into());
    v7_spoilt["platform"]["variant"] = "v7".into();
    let nested = unlabelled_index_of(src.path(), vec![v7.clone()]);
    tag_index_of_values(src.path(), vec![v7_spoilt, v6, nested]);
    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(src.path(), dst.path(), linux_arm_v7()).await;
    let pulled = r.unwrap();
    assert_eq!(pulled.failed, 0, "{lines:?}");
    let entry = pulled.entry.unwrap();
    assert_eq!(entry.digest.to_string(), v7["digest"], "{lines:?}");
}

/// A document without `mediaType` that holds both an index's `manifests` and an image's
/// `config` and `layers` is two things at once (CVE-2021-41190): read as the image its
/// index entry called it, it was recorded in index.json as the index its shape says, whose
/// manifests were never fetched. containerd refuses such a document, and so does dist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_both_an_index_and_an_image_is_refused() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = src.path();
    let other = image(root, "arm64", None);
    let config = put(
        root,
        "application/vnd.oci.image.config.v1+json",
        br#"{"architecture":"amd64","os":"linux"}"#,
    );
    let layer = put(root, LAYER, b"layer");
    let both = serde_json::json!({
        "schemaVersion": 2, "config": config, "layers": [layer], "manifests": [other],
    });
    let mut entry = put(root, media::OCI_MANIFEST, both.to_string().as_bytes());
    entry.platform = Some(Platform::new("linux", "amd64", None));
    tag_index_v1(root, vec![entry.clone()]);
    let (r, lines) = run(root, dst.path(), linux_amd64()).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}; {lines:?}");
    assert!(e.to_string().contains("ambiguous manifest"), "{e}");
    assert!(!dst.path().join("index.json").exists() || index_entries(dst.path()).is_empty());
}

/// The platform a layout's `index.json` gives the image is the one its entry for that
/// image gives: the tag was looked up again once the pull was done, and a tag moved
/// meanwhile to another platform's image (a build writing the layout being mirrored)
/// gave the image pulled that other image's platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_recorded_is_the_pulled_image_s_own_listing() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = src.path().to_path_buf();
    let (amd64, arm64) = (image(&root, "amd64", None), image(&root, "arm64", None));
    let tagged = |d: &Descriptor| {
        let mut d = d.clone();
        d.annotations.insert(REF_NAME.into(), "v1".into());
        d
    };
    let source = LayoutStore::open(&root).unwrap();
    source.add_to_index(&tagged(&amd64)).unwrap();
    let store = LayoutStore::open(dst.path()).unwrap();
    let remote: Arc<dyn Remote> = Arc::new(LayoutRemote::new(&root));
    let mut moved = false;
    let pulled = pull(
        remote,
        &Object::Tag("v1".into()),
        Some("v1"),
        &store,
        &PullOptions {
            platforms: Platforms::All,
            ..PullOptions::default()
        },
        |_| {
            if !std::mem::replace(&mut moved, true) {
                source.add_to_index(&tagged(&arm64)).unwrap();
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    let entry = pulled.entry.unwrap();
    assert_eq!(entry.digest, amd64.digest);
    assert_eq!(entry.platform, amd64.platform);
    assert_eq!(index_entries(dst.path())[0].platform, amd64.platform);
}

/// Indexes nested past [`MAX_DEPTH`] are refused before the next level is fetched; up
/// to it, the image is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_nested_too_deep_are_refused() {
    for (nested, refused) in [(MAX_DEPTH - 1, false), (MAX_DEPTH, true)] {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut entry = image(src.path(), "amd64", None);
        // The top index tagged below is one level more.
        for _ in 1..nested {
            let index = serde_json::json!({
                "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [entry],
            });
            entry = put(src.path(), media::OCI_INDEX, index.to_string().as_bytes());
        }
        tag_index_v1(src.path(), vec![entry]);
        let (r, lines) = run(src.path(), dst.path(), linux_amd64()).await;
        match r {
            Err(e) if refused => {
                assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
                assert!(e.to_string().contains("nested more than"), "{e}");
                // Named by the image's top index, as the other limits name it: the line
                // on stderr named nothing.
                let top = &index_entries(src.path())[0].digest;
                assert_eq!(e.object(), Some(top.to_string().as_str()), "{e}");
                assert!(
                    !dst.path().join("index.json").exists() || index_entries(dst.path()).is_empty()
                );
            }
            Ok(p) if !refused => assert_eq!(p.failed, 0, "{lines:?}"),
            other => panic!("{nested} deep: {other:?}"),
        }
    }
}

/// A layer one image lists as non-distributable (with `urls`) and another as a plain
/// layer is fetched: the second image needs it. It was skipped by its first listing, and
/// index.json named the whole index with the second image's layer absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_foreign_in_one_image_and_plain_in_another_is_fetched() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = src.path();
    let base = put(root, LAYER, b"base");
    let mut foreign = base.clone();
    foreign.media_type = FOREIGN.into();
    foreign.urls.push("https://example.com/base".into());
    let manifests = vec![
        image(root, "amd64", Some(foreign)),
        image(root, "arm64", Some(base.clone())),
    ];
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests,
    });
    let mut top = put(root, media::OCI_INDEX, index.to_string().as_bytes());
    top.annotations.insert(REF_NAME.into(), "v1".into());
    LayoutStore::open(root).unwrap().add_to_index(&top).unwrap();
    let (r, lines) = run(root, dst.path(), Platforms::All).await;
    let pulled = r.unwrap();
    // index, 2 manifests, 2 configs, 4 distinct layers
    assert_eq!((pulled.fetched, pulled.skipped), (9, 0), "{lines:?}");
    assert!(!statuses(&lines).contains(&"\"skipped\"".to_string()));
    let stored = LayoutStore::open(dst.path()).unwrap();
    assert!(stored.blob_path(&base.digest).exists());
    // The line names the layer as the image that fetches it lists it.
    let line = lines
        .iter()
        .find(|l| l.contains(&base.digest.to_string()))
        .unwrap();
    assert!(line.contains(LAYER) && !line.contains(FOREIGN), "{line}");
}

/// The platform a single image's config declares includes its Windows build: without it,
/// a Windows Server 2022 image pulled for `windows(10.0.17763)/amd64`, where it does not
/// run, read as a match, and the caller's warning was not given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_image_s_platform_names_its_windows_build() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = src.path();
    let config = put(
        root,
        "application/vnd.oci.image.config.v1+json",
        br#"{"architecture":"amd64","os":"windows","os.version":"10.0.20348.2655"}"#,
    );
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config, "layers": [],
    });
    let mut top = put(root, media::OCI_MANIFEST, m.to_string().as_bytes());
    top.annotations.insert(REF_NAME.into(), "v1".into());
    LayoutStore::open(root).unwrap().add_to_index(&top).unwrap();
    let want: Platform = "windows(10.0.17763)/amd64".parse().unwrap();
    let (r, lines) = run(root, dst.path(), Platforms::One(want.clone())).await;
    let have = r.unwrap().image_platform.expect("the config's platform");
    assert_eq!(
        have.os_version.as_deref(),
        Some("10.0.20348.2655"),
        "{lines:?}"
    );
    assert!(!want.matches(&have));
    assert!(want.matches(&Platform::new("windows", "amd64", None)));
}

/// An entry whose digest dist verifies but whose size is none (negative) is named by that
/// digest, as every entry is but one whose digest is malformed: it was named by its place
/// in the index (`entry 1 of sha256:…`), which a reader has to count out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_a_bad_size_is_named_by_its_digest() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let amd64 = serde_json::to_value(image(src.path(), "amd64", None)).unwrap();
    tag_index_of_values(
        src.path(),
        vec![entry_for("ppc64le", amd64["digest"].clone(), (-1).into())],
    );
    let ppc64le = Platforms::One(Platform::new("linux", "ppc64le", None));
    let (r, lines) = run(src.path(), dst.path(), ppc64le).await;
    assert_eq!(r.unwrap().failed, 1, "{lines:?}");
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["object"], amd64["digest"], "{lines:?}");
    let said = last["error"].as_str().unwrap();
    assert!(said.contains("linux/ppc64le"), "{said}");
}

/// A source whose `resolve` answers with another manifest's descriptor than the digest
/// asked for (a proxy that serves the wrong object for it).
struct Misresolving(LayoutRemote, Descriptor);

impl Remote for Misresolving {
    fn fetch<'a>(
        &'a self,
        object: &'a Object,
        hints: &'a crate::hints::Hints,
    ) -> futures::future::BoxFuture<'a, Result<crate::fetch::Download>> {
        self.0.fetch(object, hints)
    }
    fn check<'a>(&'a self) -> futures::future::BoxFuture<'a, Result<()>> {
        self.0.check()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn resolve<'a>(&'a self, _: &'a Object) -> futures::future::BoxFuture<'a, Result<Descriptor>> {
        Box::pin(async { Ok(self.1.clone()) })
    }
    fn manifest_location(&self, digest: &Digest) -> Option<String> {
        self.0.manifest_location(digest)
    }
}

/// A pull by digest that resolves to another digest names the object asked for and
/// where it was read, as every other failure does: it said only "A resolved to B".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_resolved_to_another_names_the_object_and_where() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let top = source(src.path(), false);
    let other = image(src.path(), "s390x", None).bare();
    let other_digest = other.digest.clone();
    let store = LayoutStore::open(dst.path()).unwrap();
    let opts = PullOptions {
        platforms: arm64(),
        jobs: 4,
        verify_existing: false,
        progress: None,
        image_name: None,
        ..PullOptions::default()
    };
    let remote: Arc<dyn Remote> = Arc::new(Misresolving(LayoutRemote::new(src.path()), other));
    let asked = Object::Digest(top.digest.clone());
    let e = pull(remote, &asked, None, &store, &opts, |_| Ok(()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DigestMismatch);
    assert_eq!(e.object(), Some(top.digest.to_string().as_str()), "{e}");
    let url = e.url().expect("where the manifest was read");
    assert!(url.contains(&top.digest.encoded().to_string()), "{url}");
    let said = e.to_string();
    assert!(
        said.ends_with(&format!("it resolved to another manifest, {other_digest}")),
        "{said}"
    );
}

/// An OCI artifact manifest of image-spec 1.1's release candidates (what ORAS pushed, and
/// registries still hold) in an index: stored with the blobs it lists, not walked as an
/// image, and no reason to fail the other entries. The whole --all-platforms pull failed
/// with "unsupported manifest type".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_manifest_in_an_index_is_stored_with_its_blobs() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let amd64 = image(src.path(), "amd64", None);
    let sbom = put(src.path(), "application/spdx+json", b"{\"spdx\":1}");
    let artifact = serde_json::json!({
        "mediaType": media::OCI_ARTIFACT_MANIFEST,
        "artifactType": "application/spdx+json",
        "blobs": [sbom],
        "subject": amd64.bare(),
    });
    let mut entry = put(
        src.path(),
        media::OCI_ARTIFACT_MANIFEST,
        artifact.to_string().as_bytes(),
    );
    entry
        .extra
        .insert("artifactType".into(), "application/spdx+json".into());
    tag_index_v1(src.path(), vec![amd64.clone(), entry.clone()]);
    let (r, lines) = run(src.path(), dst.path(), Platforms::All).await;
    let pulled = r.unwrap();
    // index, image manifest, artifact manifest, config, two layers, the SBOM
    assert_eq!((pulled.fetched, pulled.failed), (7, 0), "{lines:?}");
    assert!(pulled.entry.is_some());
    for stored in [&entry.digest, &sbom.digest] {
        let path = dst.path().join("blobs/sha256").join(stored.encoded());
        assert!(path.exists(), "{stored}");
    }
    // No platform's image: one platform's pull passes over it.
    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(src.path(), dst.path(), linux_amd64()).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.fetched, pulled.failed), (5, 0), "{lines:?}");
}

/// A tag that names an artifact manifest itself (an SBOM ORAS pushed under a tag), not an
/// index: one platform's pull says it is one, and how to pull it. It said "the index lists
/// artifacts", of an index there was none of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_artifact_manifest_is_not_called_an_index() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sbom = put(src.path(), "application/spdx+json", b"{\"spdx\":1}");
    let artifact = serde_json::json!({
        "mediaType": media::OCI_ARTIFACT_MANIFEST,
        "artifactType": "application/spdx+json",
        "blobs": [sbom],
    });
    let top = put(
        src.path(),
        media::OCI_ARTIFACT_MANIFEST,
        artifact.to_string().as_bytes(),
    );
    tag_v1(src.path(), top);
    let e = run(src.path(), dst.path(), arm64()).await.0.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let said = e.to_string();
    assert!(!said.contains("index"), "{said}");
    assert!(said.contains("an artifact manifest"), "{said}");
    // Named as a library caller sets it; the CLI names its flag (tests/pull_registry.rs).
    assert!(said.contains("`Platforms::All` pulls it"), "{said}");
    let dst = tempfile::tempdir().unwrap();
    let (r, lines) = run(src.path(), dst.path(), Platforms::All).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.fetched, pulled.failed), (2, 0), "{lines:?}");
}

/// An index of `"manifests": null` (Go's nil slice) is an index of none: one platform's
/// pull says there is no image for it, not that the index is malformed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_null_manifests_has_no_image_for_the_platform() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": null,
    });
    tag_v1(
        src.path(),
        put(src.path(), media::OCI_INDEX, index.to_string().as_bytes()),
    );
    let e = run(src.path(), dst.path(), arm64()).await.0.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no manifest for linux/arm64"), "{e}");
}

/// An entry whose platform cannot be read (a string, an architecture that is no string)
/// names a platform all the same: it is not the entry without one that a pull falls back
/// to, which failed the pull with "malformed index entry" instead of saying which
/// platforms the index offers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_an_unreadable_platform_is_not_taken_for_one_without() {
    for bad in [
        serde_json::json!("linux/arm64"),
        serde_json::json!({"os": "linux", "architecture": 64}),
    ] {
        let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let amd64 = serde_json::to_value(image(src.path(), "amd64", None)).unwrap();
        let mut odd = serde_json::to_value(image(src.path(), "arm64", None)).unwrap();
        odd["platform"] = bad.clone();
        tag_index_of_values(src.path(), vec![amd64, odd]);
        let (r, lines) = run(src.path(), dst.path(), arm64()).await;
        let e = r.expect_err(&format!("{bad}: {lines:?}"));
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        let text = e.to_string();
        assert!(text.contains("platforms: linux/amd64"), "{text}");
        assert!(text.contains("unreadable platform (entry 2)"), "{text}");
    }
}

/// A pull stopped while it stores the manifests it held: those it had not reported yet
/// have no line, and so are not counted either. They were taken out of the walk before
/// the first was stored, and the progress summary counted them all beside one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_stopped_while_storing_its_held_manifests_counts_only_those_reported() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    source(src.path(), false);
    let store = LayoutStore::open(dst.path()).unwrap();
    let progress = Arc::new(crate::worker::progress::Progress::default());
    let opts = PullOptions {
        platforms: Platforms::All,
        jobs: 4,
        verify_existing: false,
        progress: Some(progress.clone()),
        image_name: None,
        ..PullOptions::default()
    };
    let mut lines = Vec::new();
    let remote: Arc<dyn Remote> = Arc::new(LayoutRemote::new(src.path()));
    let tag = Object::Tag("v1".into());
    // The stop comes as the first line is reported, as a closed stdout stops a pull: the
    // index and both images' manifests were held until then. (A stop from outside, the
    // future dropped once the first line was seen, raced the blocking writes of the next
    // manifests: on a loaded machine they finished within the same poll, two or three
    // lines reported before the stop.) Both leave the walk through its `Drop`.
    let on_event = |e: Event| {
        lines.push(e.json_line());
        Err(Error::new(ErrorKind::Io, "stdout closed"))
    };
    let r = pull(remote, &tag, Some("v1"), &store, &opts, on_event).await;
    assert!(r.is_err_and(|e| e.to_string().contains("stdout closed")));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let s = progress.snapshot();
    assert_eq!((s.objects, s.started, s.finished), (1, 1, 1), "{s:?}");
}

/// A held manifest that cannot be stored is a failed object, in the progress's count as on
/// its line: the worker had counted it finished without failing, and the summary said
/// "0 failed" beside its error line and the pull's status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_manifest_that_cannot_be_stored_is_counted_failed() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let top = source(src.path(), false);
    let index = std::fs::read(src.path().join("blobs/sha256").join(top.digest.encoded()));
    let index: serde_json::Value = serde_json::from_slice(&index.unwrap()).unwrap();
    let images: Vec<Digest> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().parse().unwrap())
        .collect();
    let store = LayoutStore::open(dst.path()).unwrap();
    let progress = Arc::new(crate::worker::progress::Progress::default());
    let opts = PullOptions {
        platforms: Platforms::All,
        jobs: 4,
        verify_existing: false,
        progress: Some(progress.clone()),
        image_name: None,
        ..PullOptions::default()
    };
    let mut errors = 0;
    let remote: Arc<dyn Remote> = Arc::new(LayoutRemote::new(src.path()));
    let tag = Object::Tag("v1".into());
    let pulled = pull(remote, &tag, Some("v1"), &store, &opts, |e| {
        // Once the index is stored, and the images' manifests were looked for and held,
        // a directory where each is to go: their renames fail.
        for d in &images {
            let _ = std::fs::create_dir_all(store.blob_path(d).join("in-the-way"));
        }
        let line: serde_json::Value = serde_json::from_str(&e.json_line()).unwrap();
        errors += usize::from(line["status"] == "error");
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!((errors, pulled.failed), (images.len(), images.len()));
    let s = progress.snapshot();
    assert_eq!(s.failed, images.len() as u64, "{s:?}");
}

/// A pull of one platform into a layout that holds the image's index already reports the
/// index, found and re-hashed, before the error of a platform the index does not offer:
/// only an index held in memory goes unreported. Into a layout without it, the error
/// stands alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_match_reports_the_index_the_layout_held_already() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let top = source(src.path(), false);
    let s390x = || Platforms::One(Platform::new("linux", "s390x", None));
    let (r, lines) = run(src.path(), dst.path(), s390x()).await;
    assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound);
    assert!(lines.is_empty(), "{lines:?}");

    run(src.path(), dst.path(), arm64()).await.0.unwrap();
    let (r, lines) = run(src.path(), dst.path(), s390x()).await;
    assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(statuses(&lines), ["\"exists\""], "{lines:?}");
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        (&line["object"], &line["line"]),
        (&top.digest.to_string().into(), &1.into())
    );
}

/// The stored blob at `path`, with one byte changed: damaged as a disk or a careless edit
/// damages it, its size kept.
fn damage(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// A stored index that no longer matches its digest is fetched again and replaced only
/// once the new copy verified: reported `ok` and counted fetched. When the new copy does
/// not verify either, the damaged file stays as it was, the index fails, and nothing the
/// fetch received is left beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_stored_index_is_replaced_once_a_new_copy_verified() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let top = source(src.path(), false);
    run(src.path(), dst.path(), arm64()).await.0.unwrap();
    let stored = LayoutStore::open(dst.path())
        .unwrap()
        .blob_path(&top.digest);
    let good = std::fs::read(&stored).unwrap();
    damage(&stored);
    let (r, lines) = run(src.path(), dst.path(), arm64()).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.fetched, pulled.existing), (1, 4), "{lines:?}");
    assert_eq!(statuses(&lines)[0], "\"ok\"", "{lines:?}");
    assert_eq!(std::fs::read(&stored).unwrap(), good);

    let damaged = damage(&stored);
    damage(&src.path().join("blobs/sha256").join(top.digest.encoded()));
    let (r, lines) = run(src.path(), dst.path(), arm64()).await;
    let pulled = r.unwrap();
    assert_eq!((pulled.failed, pulled.fetched), (1, 0));
    assert_eq!(statuses(&lines), ["\"error\""], "{lines:?}");
    assert_eq!(std::fs::read(&stored).unwrap(), damaged);
    let files = std::fs::read_dir(stored.parent().unwrap()).unwrap().count();
    assert_eq!(files, 5, "the image's 5 blobs, nothing beside them");
}

/// A remote that holds every fetch of `gated` until `gate` has as many waiting as it
/// counts: two pulls then both fetch it before either has stored it.
struct Gated {
    inner: LayoutRemote,
    gated: Digest,
    gate: tokio::sync::Barrier,
}

impl Remote for Gated {
    fn fetch<'a>(
        &'a self,
        object: &'a Object,
        hints: &'a crate::hints::Hints,
    ) -> futures::future::BoxFuture<'a, Result<crate::fetch::Download>> {
        Box::pin(async move {
            if object.digest() == Some(&self.gated) {
                self.gate.wait().await;
            }
            self.inner.fetch(object, hints).await
        })
    }
    fn check<'a>(&'a self) -> futures::future::BoxFuture<'a, Result<()>> {
        self.inner.check()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn resolve<'a>(&'a self, o: &'a Object) -> futures::future::BoxFuture<'a, Result<Descriptor>> {
        self.inner.resolve(o)
    }
    fn manifest_location(&self, digest: &Digest) -> Option<String> {
        self.inner.manifest_location(digest)
    }
}

/// Two pulls of one platform each into one layout at once both hold the image's index
/// (held manifests take no ingest lock), and both store it: the second rename puts the
/// same verified bytes over the first's. That costs the index's bytes twice and nothing
/// else: both pulls succeed, `index.json` names both images, every blob verifies, and no
/// temporary or lock file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pulls_holding_one_index_at_once_both_store_it_whole() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let top = source(src.path(), false);
    let remote: Arc<dyn Remote> = Arc::new(Gated {
        inner: LayoutRemote::new(src.path()),
        gated: top.digest.clone(),
        gate: tokio::sync::Barrier::new(2),
    });
    let one = |arch: &'static str| {
        let (remote, store) = (remote.clone(), LayoutStore::open(dst.path()).unwrap());
        async move {
            let opts = PullOptions {
                platforms: Platforms::One(Platform::new("linux", arch, None)),
                jobs: 4,
                ..PullOptions::default()
            };
            let mut lines = Vec::new();
            let tag = Object::Tag("v1".into());
            let pulled = pull(remote, &tag, Some(arch), &store, &opts, |e| {
                lines.push(e.json_line());
                Ok(())
            })
            .await;
            (pulled.unwrap(), lines)
        }
    };
    // A guard, not a measure: a pull that found the index stored would leave the other
    // waiting at the gate for ever.
    let both = async { tokio::join!(one("amd64"), one("arm64")) };
    let within = Duration::from_secs(120);
    let both = tokio::time::timeout(within, both).await;
    let ((amd64, amd64_lines), (arm64, arm64_lines)) = both.expect("both pulls fetched the index");
    // The index, each by its own fetch, then a manifest, a config and two layers.
    assert_eq!(statuses(&amd64_lines)[0], "\"ok\"", "{amd64_lines:?}");
    assert_eq!(statuses(&arm64_lines)[0], "\"ok\"", "{arm64_lines:?}");
    assert_eq!((amd64.failed, arm64.failed), (0, 0));
    let mut named: Vec<_> = index_entries(dst.path())
        .iter()
        .map(|e| e.ref_name().unwrap_or_default().to_string())
        .collect();
    named.sort();
    assert_eq!(named, ["amd64", "arm64"]);
    let sha = dst.path().join("blobs/sha256");
    let mut blobs = 0;
    for file in std::fs::read_dir(&sha).unwrap() {
        let file = file.unwrap();
        let name = file.file_name().into_string().unwrap();
        let bytes = std::fs::read(file.path()).unwrap();
        assert_eq!(Digest::of(Algorithm::Sha256, &bytes).encoded(), name);
        blobs += 1;
    }
    // The index, two manifests, two configs, two layers of their own and one shared.
    assert_eq!(blobs, 8);
}

/// A pull whose `on_event` fails (the CLI's report cannot be written) makes the objects
/// it reported stored durable under their names before it returns, as the worker does
/// when its output fails: it returned at once, and only `index.json`'s update synced the
/// store, so the blobs its lines had called `ok` could lose their names to a power loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_whose_report_fails_syncs_what_it_reported_stored() {
    let (src, dst) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    source(src.path(), false);
    let store = LayoutStore::open(dst.path()).unwrap();
    // Failed, not skipped: returning here passed having checked nothing, its notice
    // captured by the harness (as the tests under tests/ need, TMPDIR on a disk).
    assert!(
        store.unsynced().is_some(),
        "TMPDIR is in memory (tmpfs), where nothing is synced: point it at a disk"
    );
    let opts = PullOptions {
        platforms: arm64(),
        jobs: 1,
        ..PullOptions::default()
    };
    let remote: Arc<dyn Remote> = Arc::new(LayoutRemote::new(src.path()));
    let mut reported_stored = false;
    let r = pull(
        remote,
        &Object::Tag("v1".into()),
        Some("v1"),
        &store,
        &opts,
        |e| {
            if let Event::Object(o) = &e {
                if o.status == Status::Ok {
                    // What the line said stored is not durable yet: the pull's to sync.
                    let unsynced = store.unsynced().unwrap();
                    assert!(!unsynced.is_empty(), "nothing to sync: {}", e.json_line());
                    reported_stored = true;
                    return Err(Error::new(ErrorKind::Io, "writing the report: disk full"));
                }
            }
            Ok(())
        },
    )
    .await;
    let e = r.unwrap_err();
    assert!(e.to_string().contains("writing the report"), "{e}");
    assert!(reported_stored);
    assert_eq!(store.unsynced(), Some(Vec::new()), "not synced");
}
