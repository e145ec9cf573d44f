//! Runs storing into one layout at once fetch a blob they share once: the second waits
//! for the first (a lock file per blob, `blobs/<alg>/.dist-lock-<encoded>`) and then
//! finds the blob stored, or takes over when the first stopped without storing it.

mod support;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::cli::{
    assert_stored_alone, blob_names as names, bytes, hex, json_lines, Dist, Running,
};
use support::fake::{FakeRegistry, Fault, Gate, RequestRecord};
use support::opens::Opens;
use support::wait::until;

/// Past the first MiB: a download of it is on disk while it runs.
const LEN: usize = 3 << 20;

fn fake_with_blob() -> (FakeRegistry, String, Vec<u8>) {
    FakeRegistry::with_blob(91, LEN)
}

fn args<'a>(repo: &'a str, dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["fetch", repo, "-", "-o", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    args
}

/// The blob GETs the registry saw.
fn blob_gets(reg: &FakeRegistry, digest: &str) -> Vec<RequestRecord> {
    reg.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/blobs/{digest}")))
        .collect()
}

/// Requests other than for the blob: a run's check of the registry before its batch.
fn other_requests(reg: &FakeRegistry, digest: &str) -> usize {
    reg.requests()
        .iter()
        .filter(|r| !r.path.ends_with(&format!("/blobs/{digest}")))
        .count()
}

fn status_of(out: &std::process::Output) -> String {
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0]["status"].as_str().unwrap().to_string()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The input line of the blob, with its size as a descriptor gives it: large enough to be
/// locked before it is asked for.
fn line(digest: &str) -> String {
    format!("{digest} size:{LEN}\n")
}

/// The registry with its large blob, whose first request is answered with its first
/// `after` bytes and the rest only once the returned gate opens: the first run's download
/// lasts as long as the test needs, however loaded the machine (paced to last three
/// seconds, a second run could start too late to find it under way); the input line
/// naming the blob, with its size when `sized`.
fn held_blob(sized: bool, after: usize) -> (FakeRegistry, String, Vec<u8>, String, Gate) {
    let (reg, digest, data) = fake_with_blob();
    let input = if sized {
        line(&digest)
    } else {
        format!("{digest}\n")
    };
    let gate = Gate::default();
    reg.push_fault(&digest, Fault::HeldAfter(after, gate.clone()));
    (reg, digest, data, input, gate)
}

/// Starts a second run once the first is downloading, and waits until the second has
/// checked the registry and gone on to the blob, asking for it once at most (to learn
/// its size, when its input line does not say it).
fn second_run_waiting(
    reg: &FakeRegistry,
    digest: &str,
    dist: &Dist,
    args: &[&str],
    input: &str,
) -> Running {
    let before = other_requests(reg, digest);
    let gets = blob_gets(reg, digest).len();
    let second = dist.spawn(args, input.as_bytes());
    until("the second run's check of the registry", || {
        other_requests(reg, digest) > before
    });
    let expected = usize::from(!input.contains("size:"));
    // The GET it is expected to make comes when it comes: on a loaded machine that can be
    // well past any fixed pause. The pause after it only gives a wrong second one a chance.
    until("the second run's GET for the size", || {
        blob_gets(reg, digest).len() - gets >= expected
    });
    std::thread::sleep(Duration::from_millis(300));
    let asked = blob_gets(reg, digest).len() - gets;
    assert_eq!(asked, expected, "the second run waits");
    second
}

/// Two runs into one layout wanting the same blob at once (pulls of images sharing a
/// layer, a mirroring job running them in parallel): the registry serves it once, and the
/// second run reports it `exists`, as a blob found stored.
#[test]
fn two_runs_at_once_fetch_a_shared_blob_once() {
    two_runs_at_once(true);
}

/// Without a size to go by, the second run asks for the blob, and learns from the answer's
/// head that it is large enough to wait for: it drops the answer unread and waits.
#[test]
fn two_runs_at_once_of_a_blob_of_unknown_size_store_it_once() {
    two_runs_at_once(false);
}

fn two_runs_at_once(sized: bool) {
    // The first run's download held until the second run waits for it.
    let (reg, digest, data, input, gate) = held_blob(sized, 1 << 16);
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let args = args(&repo, dir.path(), &[]);
    let dist = Dist::new();
    let first = dist.spawn(&args, input.as_bytes());
    until("the first run's GET", || {
        blob_gets(&reg, &digest).len() == 1
    });
    let second = second_run_waiting(&reg, &digest, &dist, &args, &input);
    gate.open();
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(status_of(&first), "ok");
    assert_eq!(status_of(&second), "exists");
    if sized {
        assert_eq!(blob_gets(&reg, &digest).len(), 1, "served once");
    }
    assert_stored_alone(dir.path(), &digest, &data);
}

/// The run downloading the blob is killed (`kill -9`: an OOM kill, a job runner's hard
/// timeout) while another waits for it: the waiting run takes over, carrying on what the
/// dead run wrote, and leaves no lock nor temporary file behind.
#[test]
fn a_waiting_run_takes_over_from_a_killed_one() {
    take_over(true);
}

/// The same, the waiting run having asked for the blob to learn its size.
#[test]
fn a_waiting_run_takes_over_a_blob_of_unknown_size() {
    take_over(false);
}

fn take_over(sized: bool) {
    // Held past 1.5 MiB until the first run is killed: it cannot finish first.
    let (reg, digest, data, input, gate) = held_blob(sized, 2 << 20);
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let args = args(&repo, dir.path(), &[]);
    let dist = Dist::new();
    let mut first = dist.spawn(&args, input.as_bytes());
    let on_disk = || -> u64 {
        std::fs::read_dir(dir.path().join("blobs/sha256"))
            .map(|d| d.flatten().map(|e| e.metadata().unwrap().len()).sum())
            .unwrap_or(0)
    };
    until("the first run's download on disk", || on_disk() >= 3 << 19);
    let second = second_run_waiting(&reg, &digest, &dist, &args, &input);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    // Nothing is held for anyone any more: the dead run's answer goes nowhere.
    gate.open();
    let written = on_disk();
    let second = second.wait_with_output().unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(status_of(&second), "ok");
    let gets = blob_gets(&reg, &digest);
    assert_eq!(gets.len(), if sized { 2 } else { 3 }, "{gets:?}");
    let start: u64 = gets[gets.len() - 1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or_else(|| panic!("a range from where the dead run stopped: {gets:?}"));
    assert!(start >= written, "{start} < {written}");
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A run carrying on a partial download of a blob whose size its input does not give
/// fetches it under the blob's lock as any other large blob: a partial is only ever kept
/// past the first MiB. The lock was taken only by a fresh download, once the registry's
/// answer declared the size, never by one carrying on a partial: a second run into the
/// layout took the lock meanwhile and downloaded the whole blob beside it.
///
/// The first run's download is held, past its first bytes, until the second run's GET has
/// come: paced to last a few seconds, it could end first on a loaded machine, and the
/// second run then found the blob stored without asking for it.
#[test]
fn a_run_carrying_on_a_partial_holds_the_blob_s_lock() {
    let (reg, digest, data, input, gate) = held_blob(false, 1 << 16);
    let dir = tempfile::tempdir().unwrap();
    let sha256 = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&sha256).unwrap();
    let kept = 3 << 19;
    let partial = sha256.join(format!(".dist-partial-{}", hex(&digest)));
    std::fs::write(&partial, &data[..kept]).unwrap();
    let repo = format!("{}/team/app", reg.host());
    let args = args(&repo, dir.path(), &[]);
    let dist = Dist::new();
    let first = dist.spawn(&args, input.as_bytes());
    until("the first run's GET", || {
        blob_gets(&reg, &digest).len() == 1
    });
    let before = other_requests(&reg, &digest);
    let second = dist.spawn(&args, input.as_bytes());
    until("the second run's check of the registry", || {
        other_requests(&reg, &digest) > before
    });
    until("the second run's GET for the size", || {
        blob_gets(&reg, &digest).len() == 2
    });
    gate.open();
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(status_of(&first), "ok");
    assert_eq!(status_of(&second), "exists", "{}", text(&second));
    let ranges: Vec<_> = blob_gets(&reg, &digest)
        .into_iter()
        .map(|g| g.range)
        .collect();
    // The second run's answer, which told it the size, dropped unread.
    assert_eq!(ranges, [Some(format!("bytes={kept}-")), None]);
    assert_stored_alone(dir.path(), &digest, &data);
}

fn lock_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(format!(".dist-lock-{}", hex(digest)))
}

/// The lock file of a blob, held by this process as a run fetching it would.
fn hold_lock(dir: &Path, digest: &str) -> std::fs::File {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let file = std::fs::File::create(lock_path(dir, digest)).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(locked, 0);
    file
}

/// Lock files left by killed runs hold nothing: the blob is fetched, and the next run to
/// open the layout removes them.
#[test]
fn a_dead_runs_lock_files_do_not_block_and_are_swept() {
    let (reg, digest, data) = fake_with_blob();
    let other = format!("sha256:{}", "ab".repeat(32));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
    std::fs::write(lock_path(dir.path(), &digest), b"").unwrap();
    std::fs::write(lock_path(dir.path(), &other), b"").unwrap();
    let repo = format!("{}/team/app", reg.host());
    let out = Dist::new().run(
        &args(&repo, dir.path(), &[]),
        format!("{digest}\n").as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(status_of(&out), "ok");
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A run waiting for another's download stops promptly on `--timeout` (124) and on
/// SIGTERM (143), without asking for the blob, and leaves the other's lock alone. Stopped,
/// it names the blob it waited for and the lock file: it said nothing of them.
#[test]
fn a_waiting_run_stops_on_timeout_and_signals() {
    let (reg, digest, _) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let lock = hold_lock(dir.path(), &digest);
    let repo = format!("{}/team/app", reg.host());
    let dist = Dist::new();

    let out = dist.run(
        &args(&repo, dir.path(), &["--timeout", "1s"]),
        line(&digest).as_bytes(),
    );
    assert_eq!(out.status.code(), Some(124), "{}", text(&out));

    let child = dist.spawn(&args(&repo, dir.path(), &[]), line(&digest).as_bytes());
    waiting_for_the_lock(dir.path(), &digest);
    // SAFETY: signals a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out));
    assert_names_the_wait(&out, dir.path(), &digest);

    assert!(blob_gets(&reg, &digest).is_empty(), "never asked for");
    assert!(
        lock_path(dir.path(), &digest).exists(),
        "the holder's lock stays"
    );
    drop(lock);
}

/// Waits until a run started after [`hold_lock`] is waiting for the lock of `digest`:
/// its third open of the lock file (the first may be the sweep of the layout as it
/// opens) comes after a try that found the lock held, which marks the blob waited for.
fn waiting_for_the_lock(dir: &Path, digest: &str) {
    let opens = Opens::of(&lock_path(dir, digest));
    for n in 1..=3 {
        opens.next(
            Duration::from_secs(30),
            &format!("open {n} of the lock file"),
        );
    }
}

/// A run stopped while it waited for another's lock names what held it up: the blob,
/// and the lock file to find the holder by.
fn assert_names_the_wait(out: &std::process::Output, dir: &Path, digest: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    let said = format!(
        "dist: {digest} was not fetched: it was waiting for another run fetching it into the \
         layout, which holds its lock file {}",
        lock_path(dir, digest).display()
    );
    assert!(err.contains(&said), "{err}");
}

/// A blob another process stored while this run waited is reported `exists`, and with
/// `--verify-existing` it is hashed first: wrong content is fetched again once the other
/// process let go.
#[test]
fn a_blob_stored_meanwhile_is_verified_when_asked() {
    let (reg, digest, data) = fake_with_blob();
    let repo = format!("{}/team/app", reg.host());
    let dist = Dist::new();
    for (verify, content, expected) in [
        (false, data.clone(), "exists"),
        (true, data.clone(), "exists"),
        (true, bytes(5, LEN), "ok"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let lock = hold_lock(dir.path(), &digest);
        let extra: &[&str] = if verify { &["--verify-existing"] } else { &[] };
        let child = dist.spawn(&args(&repo, dir.path(), extra), line(&digest).as_bytes());
        // Stored once the run waits for the lock, not after a fixed pause (it was 300 ms
        // past the run's check of the registry): on a loaded machine the blob could come
        // before the run looked for it, found stored at once, with the same status, and
        // the wait this tests never tested.
        waiting_for_the_lock(dir.path(), &digest);
        let blob = dir.path().join("blobs/sha256").join(hex(&digest));
        let tmp = dir.path().join("blobs/sha256/.other-tool-tmp");
        std::fs::write(&tmp, &content).unwrap();
        std::fs::rename(&tmp, &blob).unwrap();
        std::fs::remove_file(lock_path(dir.path(), &digest)).unwrap();
        drop(lock);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(status_of(&out), expected, "verify: {verify}");
        assert_stored_alone(dir.path(), &digest, &data);
    }
}

/// A blob under 1 MiB is fetched without its lock: making and removing a lock file per
/// blob cost more than a second download of a small one.
#[test]
fn a_small_blob_is_fetched_without_waiting() {
    let reg = FakeRegistry::start();
    let data = bytes(17, 4096);
    let digest = reg.blob("team/app", &data);
    let dir = tempfile::tempdir().unwrap();
    let lock = hold_lock(dir.path(), &digest);
    let repo = format!("{}/team/app", reg.host());
    for input in [format!("{digest}\n"), format!("{digest} size:4096\n")] {
        let _ = std::fs::remove_file(dir.path().join("blobs/sha256").join(hex(&digest)));
        let out = Dist::new().run(
            &args(&repo, dir.path(), &["--timeout", "30s"]),
            input.as_bytes(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(status_of(&out), "ok", "{input}");
    }
    drop(lock);
}

/// Lines of one run naming a small blob with a `mediatype:` hint and without are two
/// objects (README, Line protocol) but one blob: it is fetched once, and the later line
/// reports it `exists`. Side by side, both downloaded it and both said `ok`, though no
/// lock file makes a small blob wait. The first download is held until the second line
/// has had the time to ask for it too.
#[test]
fn lines_of_one_run_naming_a_small_blob_twice_fetch_it_once() {
    let reg = FakeRegistry::start();
    let data = bytes(18, 4096);
    let digest = reg.blob("team/app", &data);
    let gate = Gate::default();
    reg.push_fault(&digest, Fault::HeldAfter(0, gate.clone()));
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let input = format!("{digest}\n{digest} mediatype:application/vnd.oci.image.layer.v1.tar\n");
    let run = Dist::new().spawn(
        &args(&repo, dir.path(), &["--timeout", "60s"]),
        input.as_bytes(),
    );
    until("the first line's GET", || {
        !blob_gets(&reg, &digest).is_empty()
    });
    std::thread::sleep(Duration::from_millis(1000));
    gate.open();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = json_lines(&out.stdout);
    let mut statuses: Vec<String> = lines
        .iter()
        .map(|l| l["status"].as_str().unwrap().to_string())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["exists", "ok"], "{}", text(&out));
    // Its time counts its wait, as a wait on another run's lock file counts: it said 0 ms
    // of a line that waited the whole of the held download.
    let waited = lines.iter().find(|l| l["status"] == "exists").unwrap();
    let ms = waited["ms"].as_u64().unwrap();
    assert!(
        ms >= 500,
        "{ms} ms for a line that waited 1 s: {}",
        text(&out)
    );
    assert_eq!(
        blob_gets(&reg, &digest).len(),
        1,
        "the blob was downloaded twice"
    );
    assert_stored_alone(dir.path(), &digest, &data);
}

/// Pulls of two images sharing a large layer, into one layout at once: the layer is
/// fetched once, and both images are stored whole.
#[test]
fn two_pulls_sharing_a_layer_fetch_it_once() {
    let (reg, layer, data) = fake_with_blob();
    for tag in ["one", "two"] {
        image_of(&reg, tag, &layer);
    }
    reg.push_fault(
        &layer,
        Fault::Paced {
            bytes_per_sec: 2 << 20,
            first_byte: Duration::ZERO,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let out_dir = dir.path().to_str().unwrap();
    let dist = Dist::new();
    let (one, two) = (format!("{repo}:one"), format!("{repo}:two"));
    let mut first = dist.spawn(&["pull", &one, "-o", out_dir], b"");
    until("the first pull's GET of the layer", || {
        if first.try_wait().unwrap().is_some() {
            let mut err = String::new();
            std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the first pull ended: {err}");
        }
        blob_gets(&reg, &layer).len() == 1
    });
    let second = dist.spawn(&["pull", &two, "-o", out_dir], b"");
    for pull in [first, second] {
        let out = pull.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    assert_eq!(blob_gets(&reg, &layer).len(), 1, "served once");
    let stored = std::fs::read(dir.path().join("blobs/sha256").join(hex(&layer))).unwrap();
    assert!(stored == data);
    let index = std::fs::read_to_string(dir.path().join("index.json")).unwrap();
    assert_eq!(index.matches("\"digest\"").count(), 2, "{index}");
    let left: Vec<String> = names(dir.path())
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Tags in the registry an image of its own whose one layer is `layer`.
fn image_of(reg: &FakeRegistry, tag: &str, layer: &str) {
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let config = format!(r#"{{"architecture":"amd64","os":"linux","variant":"{tag}"}}"#);
    let config_digest = reg.blob("team/app", config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{oci}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{LEN}}}]}}"#,
        config.len()
    );
    reg.manifest("team/app", tag, oci, manifest);
}

/// A pull stopped while another run held its layer's lock (a pull stopped with Ctrl-Z)
/// names the layer it waited for and the lock file; it said only that the objects
/// reported were complete.
#[test]
fn a_pull_stopped_waiting_for_another_run_names_the_layer() {
    let (reg, layer, _) = fake_with_blob();
    image_of(&reg, "one", &layer);
    let dir = tempfile::tempdir().unwrap();
    let lock = hold_lock(dir.path(), &layer);
    let image = format!("{}/team/app:one", reg.host());
    let out_dir = dir.path().to_str().unwrap();
    let child = Dist::new().spawn(&["pull", &image, "-o", out_dir], b"");
    waiting_for_the_lock(dir.path(), &layer);
    // SAFETY: signals a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out));
    assert_names_the_wait(&out, dir.path(), &layer);
    assert!(blob_gets(&reg, &layer).is_empty(), "never asked for");
    drop(lock);
}
