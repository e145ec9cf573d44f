//! Partial downloads kept across runs: a blob whose download stopped part-way is carried
//! on by the next run with `Range`, and only ever lands in the store verified whole.

mod support;

use std::path::{Path, PathBuf};

use support::cli::{assert_stored_alone, blob_file, blob_names as names, hex, Dist, Running};
use support::fake::{FakeRegistry, Fault, RequestRecord};

/// Past the first MiB, what a download received is on disk and worth keeping.
const LEN: usize = 3 << 20;

fn fake_with_blob() -> (FakeRegistry, String, Vec<u8>) {
    FakeRegistry::with_blob(77, LEN)
}

fn partial_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(format!(".dist-partial-{}", hex(digest)))
}

/// Leaves `bytes` in `dir` as a partial download of `digest`, as an earlier run would.
fn plant_partial(dir: &Path, digest: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(partial_path(dir, digest), bytes).unwrap();
}

/// Runs the worker into `dir` for `digest`; returns the exit status, stdout and stderr.
fn fetch_into(reg: &FakeRegistry, dir: &Path, digest: &str, extra: &[&str]) -> (i32, String) {
    fetch_line_into(reg, dir, digest, extra)
}

/// [`fetch_into`] for an input `line`: an object and its hints.
fn fetch_line_into(reg: &FakeRegistry, dir: &Path, line: &str, extra: &[&str]) -> (i32, String) {
    let repo = format!("{}/team/app", reg.host());
    let mut args = vec!["fetch", &repo, "-", "-o", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = Dist::new().run(&args, format!("{line}\n").as_bytes());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs the worker into `dir` for `digest` as the user and group `id` (`nobody`), or as
/// the tests' own user; returns its output.
fn fetch_into_as(
    reg: &FakeRegistry,
    dir: &Path,
    digest: &str,
    id: Option<u32>,
) -> std::process::Output {
    let dist = Dist::new();
    set_mode(dist.config_dir(), 0o755);
    let repo = format!("{}/team/app", reg.host());
    let mut cmd = dist.command(&["fetch", &repo, "-", "-o", dir.to_str().unwrap()]);
    if let Some(id) = id {
        use std::os::unix::process::CommandExt;
        cmd.uid(id).gid(id);
    }
    let mut child = Running::piped(&mut cmd);
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        format!("{digest}\n").as_bytes(),
    )
    .unwrap();
    child.wait_with_output().unwrap()
}

/// The blob GETs the registry saw since `from`.
fn blob_gets(reg: &FakeRegistry, digest: &str, from: usize) -> Vec<RequestRecord> {
    reg.requests()[from..]
        .iter()
        .filter(|r| r.path.ends_with(&format!("/blobs/{digest}")))
        .cloned()
        .collect()
}

/// The `Range` each blob GET the registry saw since `from` asked for (`None`: the whole).
fn blob_ranges(reg: &FakeRegistry, digest: &str, from: usize) -> Vec<Option<String>> {
    blob_gets(reg, digest, from)
        .into_iter()
        .map(|g| g.range)
        .collect()
}

#[test]
fn a_connection_lost_past_the_retries_keeps_the_partial_and_the_next_run_asks_for_the_rest() {
    let (reg, digest, data) = fake_with_blob();
    reg.set_fault_for_every(&digest, Fault::DropAfter(2 << 20));
    let dir = tempfile::tempdir().unwrap();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &["--retries", "0"]);
    assert_eq!(status, 75, "{text}");
    let kept = std::fs::read(partial_path(dir.path(), &digest)).unwrap();
    assert!(
        kept.len() > 1 << 20 && kept.len() <= 2 << 20,
        "{}",
        kept.len()
    );
    assert!(kept[..] == data[..kept.len()], "a prefix of the blob");
    assert_eq!(names(dir.path()).len(), 1, "{:?}", names(dir.path()));

    reg.clear_faults();
    let before = reg.requests().len();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    assert!(text.contains(r#""size":3145728"#), "the whole size: {text}");
    let gets = blob_gets(&reg, &digest, before);
    assert_eq!(gets.len(), 1);
    assert_eq!(
        gets[0].range.as_deref(),
        Some(format!("bytes={}-", kept.len()).as_str())
    );
    assert_stored_alone(dir.path(), &digest, &data);
}

/// `kill -9` gives a run no chance to keep anything; the next run finds the dead run's
/// temporary file, whose name says which blob it holds, and carries it on.
#[test]
fn after_kill_9_the_next_run_carries_on_the_dead_runs_download() {
    kill_9_then_carry_on(true);
}

/// A run killed and not reaped yet by its parent (a supervisor that starts the next run
/// before it waits for the killed one) is a zombie, its PID and start time still in
/// `/proc`: the next run carries on its download all the same, instead of taking it for a
/// live run's, fetching the blob whole and leaving the dead run's file behind.
#[test]
fn a_killed_run_not_reaped_yet_is_carried_on_too() {
    kill_9_then_carry_on(false);
}

/// Kills a run mid-download, reaped before the next run or only after it.
fn kill_9_then_carry_on(reap_first: bool) {
    let (reg, digest, data) = fake_with_blob();
    let fault = Fault::Paced {
        bytes_per_sec: 1 << 20,
        first_byte: std::time::Duration::ZERO,
    };
    reg.set_fault_for_every(&digest, fault);
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let args = ["fetch", &repo, "-", "-o", dir.path().to_str().unwrap()];
    let dist = Dist::new();
    let mut child = dist.spawn(&args, format!("{digest}\n").as_bytes());
    let on_disk = || -> u64 {
        std::fs::read_dir(dir.path().join("blobs/sha256"))
            .map(|d| d.flatten().map(|e| e.metadata().unwrap().len()).sum())
            .unwrap_or(0)
    };
    let waited = std::time::Instant::now();
    while on_disk() < (3 << 19) && waited.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    if reap_first {
        child.wait().unwrap();
    } else {
        // A zombie once its other threads are gone too: the last of them to exit closes
        // the run's files, dropping their locks.
        let proc = PathBuf::from(format!("/proc/{}", child.id()));
        let zombie = || {
            let s = std::fs::read_to_string(proc.join("stat")).unwrap();
            s[s.rfind(')').unwrap()..].starts_with(") Z")
                && std::fs::read_dir(proc.join("task")).unwrap().count() == 1
        };
        while !zombie() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let written = on_disk();
    assert!(
        written >= 3 << 19,
        "{written} bytes written before the kill"
    );
    // The dead run's download, and the lock it fetched under, which the kernel let go.
    let left: Vec<String> = names(dir.path());
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left[0].starts_with(".dist-lock-"), "{left:?}");
    assert!(left[1].starts_with(".dist-tmp-"), "{left:?}");

    reg.clear_faults();
    let before = reg.requests().len();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    child.wait().unwrap();
    assert_eq!(status, 0, "{text}");
    let gets = blob_gets(&reg, &digest, before);
    assert_eq!(gets.len(), 1);
    let start: u64 = gets[0]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or_else(|| panic!("a range from where the dead run stopped: {gets:?}"));
    assert!(start >= written, "{start} < {written}");
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A CI job killed by its runner's hard timeout (`timeout -s KILL`) left its download in
/// the cached layout; the next job restores the cache on another runner, whose host name
/// differs, with fresh mtimes. Nobody holds the file on this local disk, so the job carries
/// it on: it was taken for a live run of another machine, the blob fetched whole, and the
/// file left in the layout (and the cache) for a day, which fresh mtimes never reach.
#[test]
fn a_killed_ci_job_s_download_restored_on_another_runner_is_carried_on() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let left = blobs.join(format!(
        ".dist-tmp-4242.77@ci-runner-7f3a~{}~Ab12Cd",
        hex(&digest)
    ));
    std::fs::write(&left, &data[..2 << 20]).unwrap();
    // Restored with the mtime it had, an hour ago, a few seconds before the job runs dist:
    // the file's ctime, which dist judges a file just made by, is the restore's.
    let written = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let file = std::fs::File::options().append(true).open(&left).unwrap();
    file.set_modified(written).unwrap();
    drop(file);
    std::thread::sleep(std::time::Duration::from_millis(2100));

    let before = reg.requests().len();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    let gets = blob_gets(&reg, &digest, before);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(
        gets[0].range.as_deref(),
        Some(format!("bytes={}-", 2 << 20).as_str())
    );
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A partial file whose bytes are wrong (a disk fault, a tampered file) fails the digest
/// when the rest has arrived; the blob is then fetched whole, and nothing wrong is kept.
#[test]
fn a_wrong_partial_fails_verification_and_the_blob_is_fetched_from_scratch() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = data[..2 << 20].to_vec();
    wrong[1000] ^= 1;
    plant_partial(dir.path(), &digest, &wrong);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    let gets = blob_gets(&reg, &digest, 0);
    let ranges: Vec<Option<&str>> = gets.iter().map(|g| g.range.as_deref()).collect();
    assert_eq!(ranges, vec![Some("bytes=2097152-"), None]);
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A server that contradicts the size it declared for the rest (a later resume's
/// `Content-Range` total other than the first's) is said to, not the partial download an
/// earlier run kept, none of whose bytes the refusal read: the partial is kept while the
/// blob is fetched whole, and a run after that whole fetch failed carries it on. It was
/// blamed ("did not verify with the rest") and thrown away.
#[test]
fn a_server_contradicting_its_size_keeps_the_partial_it_said_nothing_of() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let (kept, short) = (3 << 19, 1 << 18);
    plant_partial(dir.path(), &digest, &data[..kept]);
    let other = LEN as u64 + 1000;
    reg.push_fault(&digest, Fault::DropAfter(short));
    reg.push_fault(&digest, Fault::RangeTotal(other));
    // The whole fetch that follows fails: what is left for the next run is the partial.
    reg.push_fault(&digest, Fault::Status(404));
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 1, "{text}");
    assert!(
        text.contains(&format!("{other} bytes in all, where the content is {LEN}")),
        "{text}"
    );
    assert!(text.contains("contradicted the size it declared"), "{text}");
    assert!(!text.contains("did not verify with the rest"), "{text}");
    let partial = std::fs::read(partial_path(dir.path(), &digest)).unwrap();
    assert!(partial.len() >= kept, "{}", partial.len());
    assert!(partial[..] == data[..partial.len()], "a prefix of the blob");

    reg.clear_faults();
    let before = reg.requests().len();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    let ranges = blob_ranges(&reg, &digest, before);
    assert_eq!(ranges, [Some(format!("bytes={}-", partial.len()))]);
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A partial whose rest the server keeps contradicting itself about is kept as it was
/// found: what arrived before the contradiction (past the first MiB, on disk) is not
/// added to it, and its age is not renewed, so that the day-old sweep gives it up while
/// every run fails the same way. Appended to by each run, which renewed its mtime, it
/// grew and was never swept.
#[test]
fn a_partial_the_server_keeps_contradicting_neither_grows_nor_gets_younger() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let kept = 3 << 19;
    plant_partial(dir.path(), &digest, &data[..kept]);
    let path = partial_path(dir.path(), &digest);
    let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(hours_ago)
        .unwrap();
    for run in 0..2 {
        // Past the first MiB of the rest, then a resume declaring another total; the
        // whole fetch that follows fails.
        reg.push_fault(&digest, Fault::DropAfter(5 << 18));
        reg.push_fault(&digest, Fault::RangeTotal(LEN as u64 + 1000));
        reg.push_fault(&digest, Fault::Status(404));
        let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
        assert_eq!(status, 1, "{text}");
        assert!(text.contains("contradicted the size it declared"), "{text}");
        let meta = std::fs::metadata(&path).expect("the partial is kept");
        assert_eq!(meta.len(), kept as u64, "run {run}: the partial grew");
        let modified = meta.modified().unwrap();
        let off = modified
            .duration_since(hours_ago)
            .unwrap_or_else(|e| e.duration());
        assert!(
            off < std::time::Duration::from_secs(1),
            "run {run}: the partial's age was renewed ({modified:?}, planted {hours_ago:?})"
        );
        reg.clear_faults();
    }
}

/// A wrong partial spends none of the blob's own fetches: the whole fetch after it is a
/// first fetch, which content corrupted on its way (a proxy, once) may follow with one
/// more. Counted as the blob's one fetch again, the partial's fault failed the job over a
/// transfer that the next fetch would have repaired.
#[test]
fn a_wrong_partial_leaves_the_blob_its_fetch_again() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = data[..2 << 20].to_vec();
    wrong[1000] ^= 1;
    plant_partial(dir.path(), &digest, &wrong);
    // The rest served as it is, then the first whole fetch corrupted on its way.
    reg.push_fault(&digest, Fault::ManyHeaders(0));
    reg.push_fault(&digest, Fault::CorruptByte(100));
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    let ranges = blob_ranges(&reg, &digest, 0);
    assert_eq!(ranges, [Some("bytes=2097152-".to_string()), None, None]);
    assert_stored_alone(dir.path(), &digest, &data);
}

/// Where only a mirror can be reached (the registry behind a firewall, or down), a wrong
/// partial is fetched whole from the mirror. Content that fails verification is fetched
/// again from the registry itself, in case the mirror is what corrupted it; a wrong
/// partial was taken for such content, and the blob was asked of the registry alone,
/// which could not be reached.
#[test]
fn a_wrong_partial_is_fetched_whole_from_the_mirror_that_serves_it() {
    let (mirror, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = data[..2 << 20].to_vec();
    wrong[1000] ^= 1;
    plant_partial(dir.path(), &digest, &wrong);
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let repo = format!("{}/team/app", gone.local_addr().unwrap());
    drop(gone);
    let args = [
        "--retries",
        "0",
        "fetch",
        "--mirror",
        &mirror.url(),
        &repo,
        "-",
        "-o",
        dir.path().to_str().unwrap(),
    ];
    let out = Dist::new().run(&args, format!("{digest}\n").as_bytes());
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let ranges = blob_ranges(&mirror, &digest, 0);
    assert_eq!(ranges, [Some("bytes=2097152-".to_string()), None]);
    assert_stored_alone(dir.path(), &digest, &data);
}

/// Two runs that want the same blob at once: one claims the partial download and carries
/// it on, the other finds it gone and fetches the blob whole (or, started late, finds the
/// blob stored); both succeed, and one verified copy remains with nothing beside it.
#[test]
fn two_runs_never_share_a_partial() {
    let (reg, digest, data) = fake_with_blob();
    let fault = Fault::SlowBody {
        chunk: 64 << 10,
        delay: std::time::Duration::from_millis(50),
    };
    reg.set_fault_for_every(&digest, fault);
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..2 << 20]);
    let repo = format!("{}/team/app", reg.host());
    let args = ["fetch", &repo, "-", "-o", dir.path().to_str().unwrap()];
    let dist = Dist::new();
    let input = format!("{digest}\n");
    let children: Vec<_> = (0..2)
        .map(|_| dist.spawn(&args, input.as_bytes()))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ranges = blob_ranges(&reg, &digest, 0);
    let carried_on: Vec<_> = ranges.iter().flatten().collect();
    assert_eq!(carried_on, ["bytes=2097152-"], "claimed once: {ranges:?}");
    assert!(ranges.len() <= 2, "{ranges:?}");
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A server that ignores `Range` sends the whole blob; the part already at hand is
/// dropped on arrival instead of written twice.
#[test]
fn a_server_that_ignores_range_still_completes_the_partial() {
    completes_the_partial_sent_whole(Fault::IgnoreRange);
}

/// A partial download completed by a server whose every answer is `fault`, which sends
/// the whole blob: one request, and the blob stored whole and alone.
fn completes_the_partial_sent_whole(fault: Fault) {
    let (reg, digest, data) = fake_with_blob();
    reg.set_fault_for_every(&digest, fault);
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..(3 << 19)]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    assert_eq!(blob_gets(&reg, &digest, 0).len(), 1);
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A server that answers the request for the rest with the whole blob under a `206`
/// (`Content-Range: bytes 0-…/…`) completes the partial as one that ignores `Range`
/// does: it was refused as the wrong range, and the job failed on a server that had sent
/// everything.
#[test]
fn a_whole_blob_sent_as_a_range_still_completes_the_partial() {
    completes_the_partial_sent_whole(Fault::WholeRange);
}

/// A server that answers the request for the rest with less than the rest, under a
/// `Content-Range` whose total is `*`, does not end the job: the end of its range was taken
/// for the blob's size, against the descriptor's a size mismatch that failed the job with
/// the partial kept for a next run that met the same. The rest after it is asked for.
#[test]
fn a_short_range_of_unknown_total_carries_on_to_the_descriptor_s_size() {
    let (reg, digest, data) = fake_with_blob();
    reg.push_fault(&digest, Fault::ShortRange(1 << 19));
    let dir = tempfile::tempdir().unwrap();
    let kept = 3 << 19;
    plant_partial(dir.path(), &digest, &data[..kept]);
    let repo = format!("{}/team/app", reg.host());
    let line = format!(
        "{{\"mediaType\":\"application/octet-stream\",\"digest\":\"{digest}\",\"size\":{LEN}}}\n"
    );
    let args = ["fetch", &repo, "-", "-o", dir.path().to_str().unwrap()];
    let out = Dist::new().run(&args, line.as_bytes());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
    let ranges: Vec<_> = blob_gets(&reg, &digest, 0)
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(
        ranges,
        [
            Some(format!("bytes={kept}-")),
            Some(format!("bytes={}-", kept + (1 << 19)))
        ]
    );
}

/// A `206` of unknown total (`Content-Range: bytes N-M/*`) says nothing of the blob's
/// size: with no size given, the end of its range was taken for it, and when that body
/// broke, the `200` with the whole blob that answered the resume was refused as a size
/// mismatch, and the blob fetched whole a third time from a server that had sent
/// everything.
#[test]
fn a_range_of_unknown_total_cut_short_is_completed_by_a_whole_answer() {
    let (reg, digest, data) = fake_with_blob();
    let (range, cut) = (1 << 20, 1 << 19);
    reg.push_fault(
        &digest,
        Fault::ShortRangeAnd(range, Box::new(Fault::DropAfter(cut))),
    );
    reg.push_fault(&digest, Fault::IgnoreRange);
    let dir = tempfile::tempdir().unwrap();
    let kept = 3 << 19;
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    assert!(!text.contains("mismatch"), "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
    assert_eq!(
        answers(&reg, &digest),
        [
            (Some(format!("bytes={kept}-")), 206),
            (Some(format!("bytes={}-", kept + cut)), 200)
        ]
    );
}

/// The blob GETs the registry saw, as the `Range` each asked for and the status it met.
fn answers(reg: &FakeRegistry, digest: &str) -> Vec<(Option<String>, u16)> {
    blob_gets(reg, digest, 0)
        .into_iter()
        .map(|r| (r.range, r.status))
        .collect()
}

/// With no size given, a range of unknown total (`Content-Range: bytes N-M/*`, a cache
/// sending what it has so far) that ends cleanly short of the blob is no end of the blob:
/// the rest after it is asked for, as it is when the size is known. Its end was taken for
/// the blob's, the digest failed, the kept partial was blamed, and the blob fetched whole.
#[test]
fn a_short_range_of_unknown_total_carries_on_without_a_size() {
    let (reg, digest, data) = fake_with_blob();
    let short = 1 << 19;
    reg.push_fault(&digest, Fault::ShortRange(short));
    let dir = tempfile::tempdir().unwrap();
    let kept = 3 << 19;
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
    assert_eq!(
        answers(&reg, &digest),
        [
            (Some(format!("bytes={kept}-")), 206),
            (Some(format!("bytes={}-", kept + short)), 206)
        ]
    );
}

/// A range of unknown total that ends where the blob does, with no size given: the rest
/// asked for after it is refused (416), which says the blob ended there, and it is stored.
#[test]
fn a_range_of_unknown_total_to_the_blob_s_end_ends_at_the_refusal_of_the_rest() {
    let (reg, digest, data) = fake_with_blob();
    let kept = 3 << 19;
    reg.push_fault(&digest, Fault::ShortRange(LEN - kept));
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
    assert_eq!(
        answers(&reg, &digest),
        [
            (Some(format!("bytes={kept}-")), 206),
            (Some(format!("bytes={LEN}-")), 416)
        ]
    );
}

/// Where the rest after a range of unknown total cannot be had (its request answered 503,
/// no retries left to ask again, `--retries 0` here), the end of the range stands and the
/// digest has the last word, as it had before the rest was asked for: the blob, all sent,
/// is stored. It failed as a body ended short.
#[test]
fn a_range_of_unknown_total_whose_rest_cannot_be_had_leaves_it_to_the_digest() {
    let (reg, digest, data) = fake_with_blob();
    let kept = 3 << 19;
    reg.push_fault(&digest, Fault::ShortRange(LEN - kept));
    reg.push_fault(&digest, Fault::Status(503));
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &["--retries", "0"]);
    assert_eq!(status, 0, "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
    assert_eq!(
        answers(&reg, &digest),
        [
            (Some(format!("bytes={kept}-")), 206),
            (Some(format!("bytes={LEN}-")), 503)
        ]
    );
}

/// Where the rest after a range of unknown total cannot be had (its requests answered
/// 503 until the retries ran out) and what arrived then does not verify, the content had
/// not ended there: the object fails with why the rest could not be had, and the partial
/// download, all of it the blob's, is kept for the next run to carry on, as after a body
/// cut short of a known size. The failure was swallowed: the partial was blamed as not
/// verifying, thrown away, and the blob asked for whole.
#[test]
fn a_range_of_unknown_total_whose_rest_fails_keeps_the_partial_and_says_why() {
    let (reg, digest, data) = fake_with_blob();
    // Past what a partial download gathers before it writes, so that all of it is kept.
    let short = 5 << 18;
    reg.push_fault(&digest, Fault::ShortRange(short));
    for _ in 0..8 {
        reg.push_fault(&digest, Fault::Status(503));
    }
    let dir = tempfile::tempdir().unwrap();
    let kept = 3 << 19;
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &["--retries", "2"]);
    assert_eq!(status, 75, "{text}");
    assert!(text.contains("503"), "{text}");
    // Bytes arrived: that they did not verify says the content had not ended there.
    assert!(text.contains("what had arrived did not verify"), "{text}");
    assert!(!text.contains("fetching the blob whole"), "{text}");
    assert!(
        answers(&reg, &digest)
            .iter()
            .all(|(range, _)| range.is_some()),
        "no whole fetch: {:?}",
        answers(&reg, &digest)
    );
    let partial = std::fs::read(partial_path(dir.path(), &digest)).unwrap();
    assert_eq!(partial.len(), kept + short);
    assert!(partial[..] == data[..kept + short], "a prefix of the blob");

    reg.clear_faults();
    let before = reg.requests().len();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
    let gets = blob_gets(&reg, &digest, before);
    let ranges: Vec<_> = gets.iter().map(|r| r.range.clone()).collect();
    assert_eq!(ranges, [Some(format!("bytes={}-", kept + short))]);
}

/// A resume's answer that declares the blob's size (a `Content-Range` total) where none
/// was known before (the first answer's total was `*`) makes the size known: that body
/// ending cleanly short of it (no `Content-Length`, the connection closed) is a cut, and
/// the rest is asked for. The size went unrecorded, the cut was taken for the blob's end,
/// and the blob fetched whole after the digest blamed the kept partial.
#[test]
fn a_size_a_resume_declares_makes_a_later_clean_cut_a_cut() {
    let (reg, digest, data) = fake_with_blob();
    let (range, cut, unframed) = (1 << 20, 1 << 18, 1 << 18);
    reg.push_fault(
        &digest,
        Fault::ShortRangeAnd(range, Box::new(Fault::DropAfter(cut))),
    );
    reg.push_fault(&digest, Fault::Unframed(unframed));
    let dir = tempfile::tempdir().unwrap();
    let kept = 3 << 19;
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
    assert_eq!(
        answers(&reg, &digest),
        [
            (Some(format!("bytes={kept}-")), 206),
            (Some(format!("bytes={}-", kept + cut)), 206),
            (Some(format!("bytes={}-", kept + cut + unframed)), 206)
        ]
    );
}

/// A size a resume's answer declares where none was known (a `Content-Range` total after
/// a range of unknown total) bounds the body as a size known from the start does: the
/// body that runs past it is refused there (and the blob fetched whole), not read on to
/// its end, however long, with nothing to hold it to that size.
#[test]
fn a_size_a_resume_declares_cuts_off_a_body_that_runs_past_it() {
    let (reg, digest, data) = fake_with_blob();
    let (kept, short) = (3 << 19, 1 << 18);
    let declared = kept + short + (1 << 18);
    reg.push_fault(&digest, Fault::ShortRange(short));
    reg.push_fault(&digest, Fault::RangeTotal(declared as u64));
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    assert!(
        text.contains(&format!("content longer than the {declared} bytes")),
        "{text}"
    );
    assert_stored_alone(dir.path(), &digest, &data);
    assert_eq!(
        answers(&reg, &digest),
        [
            (Some(format!("bytes={kept}-")), 206),
            (Some(format!("bytes={}-", kept + short)), 206),
            (None, 200)
        ]
    );
}

/// The worker's input line for `digest` as a descriptor declaring the blob's size.
fn descriptor(digest: &str) -> String {
    format!("{{\"mediaType\":\"application/octet-stream\",\"digest\":\"{digest}\",\"size\":{LEN}}}")
}

/// A cache that sends a blob in ranges under a MiB each (`Content-Range: bytes N-M/*`,
/// what it has so far) makes progress with each of them, and spends no retries: every
/// range but the first counted as a failure, so `--retries 1` gave up after the second
/// range, whatever each had brought. With no size known, and with the descriptor's.
#[test]
fn ranges_under_a_mib_each_carry_the_blob_through_without_spending_retries() {
    for line in [None, Some(descriptor)] {
        let (reg, digest, data) = fake_with_blob();
        let (kept, piece) = (3 << 19, 1 << 18);
        let pieces = (LEN - kept) / piece;
        for _ in 0..pieces {
            reg.push_fault(&digest, Fault::ShortRange(piece));
        }
        let dir = tempfile::tempdir().unwrap();
        plant_partial(dir.path(), &digest, &data[..kept]);
        let input = line.map_or(digest.clone(), |line| line(&digest));
        let (status, text) = fetch_into(&reg, dir.path(), &input, &["--retries", "1"]);
        assert_eq!(status, 0, "{text}");
        assert_stored_alone(dir.path(), &digest, &data);
        let ranges: Vec<_> = answers(&reg, &digest)
            .into_iter()
            .map(|(range, _)| range)
            .collect();
        let asked: Vec<_> = (0..pieces)
            .map(|i| Some(format!("bytes={}-", kept + i * piece)))
            .collect();
        // With no size known, the rest after the last range is asked for, and refused.
        assert_eq!(ranges[..pieces], asked[..], "{ranges:?}");
        assert!(ranges.len() <= pieces + 1, "{ranges:?}");
    }
}

/// A server that sends a byte per answer still runs out of retries: an answer that
/// brought next to nothing is a failure, as before, or it would be asked again forever
/// (a blob of unknown size has no end to reach).
#[test]
fn ranges_of_a_byte_each_still_spend_the_retries() {
    let (reg, digest, data) = fake_with_blob();
    reg.set_fault_for_every(&digest, Fault::ShortRange(1));
    let dir = tempfile::tempdir().unwrap();
    let kept = 3 << 19;
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &["--retries", "2"]);
    assert_eq!(status, 75, "{text}");
    let ranged = answers(&reg, &digest)
        .into_iter()
        .filter(|(range, _)| range.is_some())
        .count();
    assert_eq!(ranged, 3, "{:?}", answers(&reg, &digest));
}

/// A server that ignores `Range` and closes each answer (sent without a length) short of
/// the blob sends the whole blob again each time, every byte before the end once more:
/// such an answer counts as a break, however much new it brought, as the README says,
/// and `--retries 1` gives up after the second of them. Taken for progress, each was
/// asked again at once and spent nothing, and a blob cut so every 64 KiB was sent whole
/// once per 64 KiB of it.
#[test]
fn the_whole_blob_sent_again_and_ended_short_spends_the_retries() {
    let reg = FakeRegistry::builder().range_support(false).start();
    let data = support::cli::bytes(78, LEN);
    let digest = reg.blob("team/app", &data);
    // Over the 64 KiB that make an answer progress, under the MiB that make a break so.
    let piece = 1 << 17;
    for i in 1..=3 {
        reg.push_fault(&digest, Fault::Unframed(i * piece));
    }
    let dir = tempfile::tempdir().unwrap();
    let input = descriptor(&digest);
    let (status, text) = fetch_into(&reg, dir.path(), &input, &["--retries", "1"]);
    assert_eq!(status, 75, "{text}");
    assert!(
        text.contains(&format!("body ended after {} of {LEN} bytes", 3 * piece)),
        "{text}"
    );
    // The first answer, not sent again, is progress; the two that send it again count.
    let asked: Vec<_> = answers(&reg, &digest).into_iter().collect();
    assert_eq!(
        asked,
        [
            (None, 200),
            (Some(format!("bytes={piece}-")), 200),
            (Some(format!("bytes={}-", 2 * piece)), 200)
        ]
    );
}

/// A range of unknown total whose body breaks right after its last byte (framed a byte
/// longer than it is, then closed), with no retries left to ask for the rest: its end
/// stands and the digest has the last word, as for a range that ended cleanly there. The
/// blob, all sent, failed as a lost connection.
#[test]
fn a_range_of_unknown_total_broken_after_its_last_byte_leaves_it_to_the_digest() {
    let (reg, digest, data) = fake_with_blob();
    let kept = 3 << 19;
    let broken = Box::new(Fault::WrongContentLength(1));
    reg.push_fault(&digest, Fault::ShortRangeAnd(LEN - kept, broken));
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &["--retries", "0"]);
    assert_eq!(status, 0, "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
    assert_eq!(
        answers(&reg, &digest),
        [(Some(format!("bytes={kept}-")), 206)]
    );
}

/// The same range broken part-way still fails, with the break for its cause, and keeps
/// what arrived for the next run: the content had not ended there.
#[test]
fn a_range_of_unknown_total_broken_part_way_fails_with_its_break() {
    let (reg, digest, data) = fake_with_blob();
    let (kept, cut) = (3 << 19, 5 << 18);
    let broken = Box::new(Fault::DropAfter(cut));
    reg.push_fault(&digest, Fault::ShortRangeAnd(LEN - kept, broken));
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &["--retries", "0"]);
    assert_eq!(status, 75, "{text}");
    assert!(!text.contains("fetching the blob whole"), "{text}");
    let partial = std::fs::read(partial_path(dir.path(), &digest)).unwrap();
    assert_eq!(partial.len(), kept + cut);
    assert!(partial[..] == data[..kept + cut], "a prefix of the blob");
}

/// A `416` to a resume below the size the server declared (here its first answer's
/// `Content-Length`) is the server contradicting itself, and is said so: it was taken for
/// the content's end, and failed as `content ended after N of S bytes`. The partial the
/// refusal said nothing of is kept while the blob is fetched whole (which fails here).
#[test]
fn a_416_below_the_declared_size_is_the_server_contradicting_itself() {
    let (reg, digest, data) = fake_with_blob();
    let (kept, cut) = (3 << 19, 1 << 18);
    reg.push_fault(&digest, Fault::DropAfter(cut));
    reg.push_fault(&digest, Fault::Status(416));
    reg.push_fault(&digest, Fault::Status(404));
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 1, "{text}");
    let at = kept + cut;
    assert!(
        text.contains(&format!(
            "asked for bytes={at}-, got a 416 (the content ends at byte {at}), where the \
             server declared {LEN} bytes"
        )),
        "{text}"
    );
    assert!(!text.contains("content ended after"), "{text}");
    assert!(text.contains("contradicted the size it declared"), "{text}");
    let partial = std::fs::read(partial_path(dir.path(), &digest)).unwrap();
    assert!(partial.len() >= kept, "{}", partial.len());
    assert!(partial[..] == data[..partial.len()], "a prefix of the blob");
}

/// A resume's answer whose `Docker-Content-Digest` names other content is refused unread
/// (as a first answer's is), which says nothing of the partial download an earlier run
/// kept: it is kept while the blob is fetched whole, as after a size the server
/// contradicted. It was blamed ("did not verify with the rest", though nothing was
/// verified) and thrown away.
#[test]
fn a_resume_refused_for_its_digest_header_keeps_the_partial_it_said_nothing_of() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let (kept, short) = (3 << 19, 1 << 18);
    plant_partial(dir.path(), &digest, &data[..kept]);
    let other = format!("sha256:{}", "ab".repeat(32));
    reg.push_fault(&digest, Fault::DropAfter(short));
    reg.push_fault(
        &digest,
        Fault::Header("docker-content-digest", other.clone()),
    );
    // The whole fetch that follows fails: what is left for the next run is the partial.
    reg.push_fault(&digest, Fault::Status(404));
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 1, "{text}");
    assert!(
        text.contains(&format!(
            "header names {other}, not {digest} as asked; none of the rest was read"
        )),
        "{text}"
    );
    assert!(!text.contains("did not verify with the rest"), "{text}");
    let partial = std::fs::read(partial_path(dir.path(), &digest)).unwrap();
    assert!(partial.len() >= kept, "{}", partial.len());
    assert!(partial[..] == data[..partial.len()], "a prefix of the blob");
}

/// The same `416` below a size a resume's answer declared where none was known before
/// (after a range of unknown total): the digest failed on what had arrived, the partial
/// was blamed ("did not verify with the rest") and thrown away.
#[test]
fn a_416_below_a_size_a_resume_declared_keeps_the_partial() {
    let (reg, digest, data) = fake_with_blob();
    let (kept, short, cut) = (3 << 19, 1 << 18, 1 << 18);
    reg.push_fault(&digest, Fault::ShortRange(short));
    reg.push_fault(&digest, Fault::DropAfter(cut));
    reg.push_fault(&digest, Fault::Status(416));
    reg.push_fault(&digest, Fault::Status(404));
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..kept]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 1, "{text}");
    assert!(text.contains("got a 416"), "{text}");
    assert!(!text.contains("did not verify with the rest"), "{text}");
    let partial = std::fs::read(partial_path(dir.path(), &digest)).unwrap();
    assert!(partial.len() >= kept, "{}", partial.len());
    assert!(partial[..] == data[..partial.len()], "a prefix of the blob");
}

/// A server that codes what it sends (`Content-Encoding: gzip`) codes a range on its own
/// terms, which cannot be joined to the partial: the blob is fetched again from scratch.
#[test]
fn a_server_that_codes_its_answers_still_completes_the_partial() {
    let (reg, digest, data) = fake_with_blob();
    reg.set_fault_for_every(&digest, Fault::Coded("gzip"));
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..(3 << 19)]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    let gets = blob_gets(&reg, &digest, 0);
    let ranges: Vec<_> = gets.iter().map(|r| r.range.as_deref()).collect();
    assert_eq!(ranges, [Some("bytes=1572864-"), None], "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A blob stored compressed under `Content-Encoding: gzip` metadata (an S3 object so
/// uploaded), its size given, whose partial an earlier run kept: the range asked for is of
/// the bytes as stored, labelled so too, and its total is the size given, so it continues
/// the partial. It was taken for a proxy's coding, and the blob fetched again from scratch.
#[test]
fn a_partial_of_content_stored_under_its_coding_is_carried_on() {
    let (reg, digest, data) = fake_with_blob();
    reg.set_fault_for_every(&digest, Fault::Header("content-encoding", "gzip".into()));
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..(3 << 19)]);
    let line = format!("{digest} size:{}", data.len());
    let (status, text) = fetch_line_into(&reg, dir.path(), &line, &[]);
    assert_eq!(status, 0, "{text}");
    let gets = blob_gets(&reg, &digest, 0);
    let ranges: Vec<_> = gets.iter().map(|r| r.range.as_deref()).collect();
    assert_eq!(ranges, [Some("bytes=1572864-")], "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
}

/// The same partial with the size given, behind a proxy that codes a range it was sent
/// under the `Content-Range` it was sent (the total is the size given): its body's length
/// is no range's of the bytes as stored, and the blob is fetched again from scratch, as
/// without the size, not taken as sent and blamed on the server.
#[test]
fn a_proxy_that_codes_a_range_is_not_taken_for_content_stored_so() {
    let (reg, digest, data) = fake_with_blob();
    reg.set_fault_for_every(&digest, Fault::Coded("gzip"));
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..(3 << 19)]);
    let line = format!("{digest} size:{}", data.len());
    let (status, text) = fetch_line_into(&reg, dir.path(), &line, &[]);
    assert_eq!(status, 0, "{text}");
    assert!(!text.contains("contradicted"), "{text}");
    let gets = blob_gets(&reg, &digest, 0);
    let ranges: Vec<_> = gets.iter().map(|r| r.range.as_deref()).collect();
    assert_eq!(ranges, [Some("bytes=1572864-"), None], "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A directory under a partial download's name is not ours: it is left alone, run after
/// run, and the blob is fetched whole beside it.
#[test]
fn a_directory_under_a_partial_name_is_left_alone() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let planted = partial_path(dir.path(), &digest);
    std::fs::create_dir_all(planted.join("inside")).unwrap();
    for _ in 0..2 {
        let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
        assert_eq!(status, 0, "{text}");
        assert!(!text.contains("removed"), "{text}");
        assert!(planted.join("inside").is_dir(), "left where it was");
    }
    let stored = blob_file(dir.path(), &digest);
    assert_eq!(std::fs::read(&stored).unwrap(), data);
    let names: Vec<String> = std::fs::read_dir(dir.path().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "the blob and the planted directory: {names:?}"
    );
}

/// A partial download is found by name in a directory others may write to. A link planted
/// there must not make the run append to the file it leads to, outside the layout, nor be
/// renamed into `blobs/`: it is removed and the blob fetched whole. A symbolic link, and a
/// hard link, which `O_NOFOLLOW` does not see (where `fs.protected_hardlinks` is off, a
/// user may link any file on the filesystem, and dist often runs as root).
#[test]
fn a_planted_link_is_not_carried_on() {
    type Plant = fn(&Path, &Path) -> std::io::Result<()>;
    let links: [(&str, Plant); 2] = [
        ("symbolic", |to, at| std::os::unix::fs::symlink(to, at)),
        ("hard", |to, at| std::fs::hard_link(to, at)),
    ];
    for (kind, plant) in links {
        let (reg, digest, data) = fake_with_blob();
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, &data[..(3 << 19)]).unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        plant(&victim, &partial_path(dir.path(), &digest)).unwrap();
        let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
        assert_eq!(status, 0, "{kind}: {text}");
        assert!(
            std::fs::read(&victim).unwrap() == data[..(3 << 19)],
            "{kind}: the victim is untouched"
        );
        let gets = blob_gets(&reg, &digest, 0);
        assert_eq!(gets.len(), 1, "{kind}");
        assert_eq!(gets[0].range, None, "{kind}: fetched whole");
        let stored = blob_file(dir.path(), &digest);
        let meta = std::fs::symlink_metadata(&stored).unwrap();
        assert!(meta.file_type().is_file(), "{kind}");
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 1, "{kind}");
        assert_stored_alone(dir.path(), &digest, &data);
    }
}

/// A partial as long as the blob (a run killed between its last write and the rename, or
/// stopped once the last chunk arrived) holds the whole blob: it verifies, and is stored
/// without asking the registry, with or without a size hint. One as long but wrong (a
/// write that never reached the disk) leaves nothing to ask for: the registry refuses the
/// range, and the blob is fetched whole.
#[test]
fn a_partial_holding_the_whole_blob_is_stored_without_a_fetch() {
    for hint in ["", " size:3145728"] {
        let (reg, digest, data) = fake_with_blob();
        let dir = tempfile::tempdir().unwrap();
        plant_partial(dir.path(), &digest, &data);
        let line = format!("{digest}{hint}");
        let (status, text) = fetch_into(&reg, dir.path(), &line, &[]);
        assert_eq!(status, 0, "{text}");
        assert!(text.contains(r#""status":"ok""#), "{text}");
        assert!(text.contains(r#""size":3145728"#), "{text}");
        let gets = blob_gets(&reg, &digest, 0);
        assert!(gets.is_empty(), "hint {hint:?}: {gets:?}");
        assert_stored_alone(dir.path(), &digest, &data);
    }

    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = data.clone();
    wrong[LEN - 1] ^= 1;
    plant_partial(dir.path(), &digest, &wrong);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    let ranges = blob_ranges(&reg, &digest, 0);
    assert_eq!(ranges, [Some(format!("bytes={LEN}-")), None]);
    assert_stored_alone(dir.path(), &digest, &data);
}

/// Plants under `dir` a partial download of `digest` longer than its blob `data`: the
/// blob, then more.
fn plant_longer_partial(dir: &Path, digest: &str, data: &[u8]) {
    let mut longer = data.to_vec();
    longer.extend_from_slice(b"appended");
    plant_partial(dir, digest, &longer);
}

/// Asserts that the partial download of `digest` kept under `dir` is what a whole fetch
/// of `data` received before it broke: at least a MiB of it, short of the end.
#[track_caller]
fn assert_kept_a_prefix(dir: &Path, digest: &str, data: &[u8]) {
    let kept = std::fs::read(partial_path(dir, digest)).expect("a partial is kept");
    assert!(kept.len() >= 1 << 20 && kept.len() < LEN, "{}", kept.len());
    assert!(
        kept[..] == data[..kept.len()],
        "the whole fetch's, a prefix of the blob"
    );
}

/// A partial longer than the blob's known size (a file extended, or another put in its
/// place) is no prefix of it: removed unread, and the blob fetched whole at once. It was
/// hashed whole first (minutes for a large file), for the registry to refuse a range past
/// the blob's end.
#[test]
fn a_partial_longer_than_its_blob_is_not_carried_on() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    plant_longer_partial(dir.path(), &digest, &data);
    let line = format!("{digest} size:{LEN}");
    let (status, text) = fetch_into(&reg, dir.path(), &line, &[]);
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("longer than its blob"), "{text}");
    let ranges = blob_ranges(&reg, &digest, 0);
    assert_eq!(ranges, [None], "fetched whole at once");
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A `size:` hint shorter than the partial download is only the hint's word against the
/// partial's: the registry's answer decides. Here the hint is wrong (the registry declares
/// the blob's size, twice), and the partial, a right prefix of the blob, stays for a run
/// given the right size, as one whose rest is refused over a wrong size does. It was
/// removed unread on the hint alone.
#[test]
fn a_size_hint_shorter_than_the_partial_leaves_it_to_the_registry_s_answer() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let kept = 3 << 19;
    plant_partial(dir.path(), &digest, &data[..kept]);
    let line = format!("{digest} size:{}", 1 << 20);
    let (status, text) = fetch_into(&reg, dir.path(), &line, &[]);
    assert_eq!(status, 1, "{text}");
    assert!(
        text.contains(&format!("the registry declares {LEN}")),
        "{text}"
    );
    let still = std::fs::read(partial_path(dir.path(), &digest)).expect("the partial is kept");
    assert!(still[..] == data[..kept]);
    let before = reg.requests().len();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    let ranges = blob_ranges(&reg, &digest, before);
    assert_eq!(ranges, [Some(format!("bytes={kept}-"))]);
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A whole answer that declares no size (no `Content-Length`, or one counting coded
/// bytes under `Content-Encoding: gzip`) confirms nothing: the download's size is then
/// the `size:` hint's alone, and a hint too small removed a right partial before the body
/// was read, as the hint alone no longer does.
#[test]
fn an_answer_declaring_no_size_leaves_a_partial_longer_than_the_hint() {
    for fault in [Fault::Unframed(usize::MAX), Fault::CodedWhole("gzip")] {
        let (reg, digest, data) = fake_with_blob();
        reg.set_fault_for_every(&digest, fault.clone());
        let dir = tempfile::tempdir().unwrap();
        let kept = 3 << 19;
        plant_partial(dir.path(), &digest, &data[..kept]);
        let line = format!("{digest} size:{}", 1 << 20);
        let (status, text) = fetch_into(&reg, dir.path(), &line, &[]);
        assert_eq!(status, 1, "{fault:?}: {text}");
        let still = std::fs::read(partial_path(dir.path(), &digest));
        let still = still.unwrap_or_else(|_| panic!("{fault:?}: the partial is gone: {text}"));
        assert!(still[..] == data[..kept], "{fault:?}: {}", still.len());
    }
}

/// A partial longer than the size given, which an answer declaring no size leaves in place
/// (the hint alone may be wrong), cannot be carried on by a fetch held to that size: the
/// whole fetch that then breaks keeps what it received for the next run. The longer
/// partial was kept instead, and every run given the size lost its own progress to it.
#[test]
fn a_partial_longer_than_the_size_given_makes_way_for_a_whole_fetch_that_breaks() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    plant_longer_partial(dir.path(), &digest, &data);
    // No `Content-Length`: the answer declares no size, and ends after 2 MiB; the rest is
    // refused.
    reg.push_fault(&digest, Fault::Unframed(2 << 20));
    reg.set_fault_for_every(&digest, Fault::Status(503));
    let line = format!("{digest} size:{LEN}");
    let (status, text) = fetch_into(&reg, dir.path(), &line, &["--retries", "0"]);
    assert_eq!(status, 75, "{text}");
    assert_kept_a_prefix(dir.path(), &digest, &data);
}

/// The same whole fetch stopped (here by SIGTERM, as by `--timeout`) while its body, coded
/// so that it declares no size, stalls: what it received is kept in place of the longer
/// partial, which was kept instead. The stop comes once the download holds 1.5 MiB, not
/// after a fixed time, which a loaded machine could spend before the first byte.
#[test]
fn a_partial_longer_than_the_size_given_makes_way_for_a_whole_fetch_stopped() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    plant_longer_partial(dir.path(), &digest, &data);
    let stall = Fault::StallAfter(2 << 20, std::time::Duration::from_secs(60));
    reg.push_fault(&digest, Fault::CodedAnd("gzip", Box::new(stall)));
    let repo = format!("{}/team/app", reg.host());
    let args = ["fetch", &repo, "-", "-o", dir.path().to_str().unwrap()];
    let child = Dist::new().spawn(&args, format!("{digest} size:{LEN}\n").as_bytes());
    let downloading = || -> u64 {
        std::fs::read_dir(dir.path().join("blobs/sha256"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".dist-tmp-"))
                    .map(|e| e.metadata().map_or(0, |m| m.len()))
                    .sum()
            })
            .unwrap_or(0)
    };
    let waited = std::time::Instant::now();
    while downloading() < (3 << 19) && waited.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill has no memory preconditions; the child is not reaped yet, so its PID is
    // still its own.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{text}");
    assert_kept_a_prefix(dir.path(), &digest, &data);
}

/// A partial longer than the size given, which the registry's answer confirms, goes then,
/// before the body is read: the whole fetch that then breaks keeps what it received for
/// the next run, which a longer partial left in place would have kept out.
#[test]
fn a_partial_longer_than_a_size_the_registry_confirms_makes_way_for_the_whole_fetch_s() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    plant_longer_partial(dir.path(), &digest, &data);
    reg.push_fault(&digest, Fault::DropAfter(2 << 20));
    let line = format!("{digest} size:{LEN}");
    let (status, text) = fetch_into(&reg, dir.path(), &line, &["--retries", "0"]);
    assert_eq!(status, 75, "{text}");
    assert!(text.contains("longer than its blob"), "{text}");
    assert_kept_a_prefix(dir.path(), &digest, &data);
}

/// Content that does not verify is never kept for a later run.
#[test]
fn corrupted_content_is_not_kept_as_a_partial() {
    let (reg, digest, _) = fake_with_blob();
    reg.set_fault_for_every(&digest, Fault::CorruptByte(100));
    let dir = tempfile::tempdir().unwrap();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 1, "{text}");
    assert!(text.contains("digest mismatch"), "{text}");
    // Nothing kept: not even the layout, made in the empty directory for this run.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A blob stored meanwhile (by another run) makes its partial download useless.
#[test]
fn a_partial_beside_its_stored_blob_is_removed() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..1 << 21]);
    std::fs::write(blob_file(dir.path(), &digest), &data).unwrap();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    assert!(text.contains(r#""status":"exists""#), "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
    assert!(blob_gets(&reg, &digest, 0).is_empty());
}

/// A partial download another user's run left in a shared directory (0644, as dist leaves
/// it) is not this run's to write to, nor, in a sticky directory, to move: the blob is
/// fetched whole, and the partial stays where it was for its owner. As root, dist runs as
/// `nobody` over root's file; otherwise over a file of its own that it may not write.
#[test]
fn another_users_partial_is_left_alone_and_the_blob_fetched_whole() {
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    let dir_modes: &[u32] = if root { &[0o777, 0o1777] } else { &[0o777] };
    for &dir_mode in dir_modes {
        let (reg, digest, data) = fake_with_blob();
        let base = tempfile::tempdir().unwrap();
        set_mode(base.path(), 0o755);
        let dir = base.path().join("shared");
        plant_partial(&dir, &digest, &data[..2 << 20]);
        for sub in ["", "blobs", "blobs/sha256"] {
            set_mode(&dir.join(sub), dir_mode);
        }
        let partial = partial_path(&dir, &digest);
        set_mode(&partial, if root { 0o644 } else { 0o444 });
        let out = fetch_into_as(&reg, &dir, &digest, root.then_some(65534));
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "mode {dir_mode:o}: {text}");
        assert!(text.contains("may not write to"), "{text}");
        let gets = blob_gets(&reg, &digest, 0);
        assert_eq!(gets.len(), 1, "{gets:?}");
        assert_eq!(gets[0].range, None, "fetched whole");
        let stored = std::fs::read(blob_file(&dir, &digest)).unwrap();
        assert!(stored == data, "the stored blob is the content");
        assert!(
            std::fs::read(&partial).unwrap() == data[..2 << 20],
            "the other user's partial is where it was"
        );
    }
}

/// A wrong blob (an empty file) another user left in a sticky shared directory cannot be
/// replaced by this run: the system says only "Operation not permitted", and dist says
/// why (the directory is sticky, the file another user's) and what to do. Runs dist as
/// `nobody` over root's file, which only root can set up.
#[test]
fn a_blob_another_user_owns_in_a_sticky_directory_is_named_as_theirs() {
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "not root: this test runs dist as another user over root's file"
    );
    let (reg, digest, _) = fake_with_blob();
    let base = tempfile::tempdir().unwrap();
    set_mode(base.path(), 0o755);
    let dir = base.path().join("shared");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let blob = blob_file(&dir, &digest);
    std::fs::write(&blob, b"").unwrap();
    for sub in ["", "blobs", "blobs/sha256"] {
        set_mode(&dir.join(sub), 0o1777);
    }
    let out = fetch_into_as(&reg, &dir, &digest, Some(65534));
    let text = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("is a sticky directory") && text.contains("is another user's (uid 0)"),
        "{text}"
    );
    assert!(text.contains("run as that user"), "{text}");
    assert!(
        std::fs::read(&blob).unwrap().is_empty(),
        "root's file is left"
    );
}

/// A registry that does not have the blob (a mistyped repository, or a private one asked
/// without credentials, which many registries answer with 404) says nothing of the
/// partial download, whose content is the digest's wherever it is served: it is kept for
/// the run that reaches the blob, and that run asks only for the rest.
#[test]
fn a_partial_is_kept_when_the_blob_is_not_found() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &data[..2 << 20]);
    let typo = format!("{}/team/ap", reg.host());
    let args = ["fetch", &typo, "-", "-o", dir.path().to_str().unwrap()];
    let out = Dist::new().run(&args, format!("{digest}\n").as_bytes());
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("404"), "{text}");
    let kept = std::fs::read(partial_path(dir.path(), &digest)).expect("kept");
    assert!(kept == data[..2 << 20], "kept as it was");

    let before = reg.requests().len();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    let gets = blob_gets(&reg, &digest, before);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some("bytes=2097152-"));
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A size given one byte too large, against a server that sends every answer whole,
/// without a length, whatever `Range` asks: the second whole answer ends where the first
/// did, so the registry sent all there is, and the job fails as the size mismatch it is,
/// with nothing kept. Each such answer was taken for a connection lost part-way and
/// resumed, until the retries were spent; the job failed as a connection error and kept
/// the whole blob as a partial download of a blob it is not.
#[test]
fn whole_answers_shorter_than_the_size_given_end_as_a_size_mismatch_and_keep_nothing() {
    let reg = FakeRegistry::builder().range_support(false).start();
    let data = support::cli::bytes(78, LEN);
    let digest = reg.blob("team/app", &data);
    reg.set_fault_for_every(&digest, Fault::Unframed(usize::MAX));
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/team/app", reg.host());
    let given = LEN + 1;
    let line = format!("{{\"digest\":\"{digest}\",\"size\":{given}}}\n");
    let args = ["fetch", &repo, "-", "-o", dir.path().to_str().unwrap()];
    let out = Dist::new().run(&args, line.as_bytes());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let said = format!(
        "content ended after {LEN} of {given} bytes, expected {given} (the size given: \
         size:{given}, or a descriptor's \\\"size\\\")"
    );
    assert!(text.contains(&said), "{text}");
    let warned = format!(
        "dist: warning: the size given is {given} bytes and the registry sent {LEN}; \
         fetching once more"
    );
    assert!(text.contains(&format!("{warned} (object=")), "{text}");
    assert!(!partial_path(dir.path(), &digest).exists(), "{text}");
    if dir.path().join("blobs/sha256").exists() {
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }
}

/// The request that carries a partial download on, refused over size (the descriptor's
/// size is not the total the registry's range gives): as any size refusal, the blob is
/// fetched once more, whole, from the registry itself, which declares the same, and the
/// error says the size given is likely wrong. The job failed on the refusal alone.
#[test]
fn a_partial_refused_over_size_is_fetched_once_more_from_the_registry_itself() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let kept = 3 << 19;
    plant_partial(dir.path(), &digest, &data[..kept]);
    let repo = format!("{}/team/app", reg.host());
    let given = LEN + 1;
    let line = format!("{{\"digest\":\"{digest}\",\"size\":{given}}}\n");
    let args = ["fetch", &repo, "-", "-o", dir.path().to_str().unwrap()];
    let out = Dist::new().run(&args, line.as_bytes());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let warned = format!(
        "dist: warning: the size given is {given} bytes and the registry declares {LEN}; \
         fetching once more"
    );
    assert!(text.contains(&format!("{warned} (object=")), "{text}");
    let again = format!("the registry declared {LEN} bytes again");
    assert!(text.contains(&again), "{text}");
    assert!(!text.contains("itself"), "{text}");
    let ranges: Vec<_> = blob_gets(&reg, &digest, 0)
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, [Some(format!("bytes={kept}-")), None]);
    // The refusal says nothing of the partial's bytes: kept for a run given the right size.
    let still = std::fs::read(partial_path(dir.path(), &digest)).unwrap();
    assert!(still[..] == data[..kept]);
    let before = reg.requests().len();
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 0, "{text}");
    let gets = blob_gets(&reg, &digest, before);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range, Some(format!("bytes={kept}-")));
    assert_stored_alone(dir.path(), &digest, &data);
}

/// A partial longer than the blob (a file extended, no size given to catch it before),
/// carried on from a server that ignores `Range`: the whole body sent, all of it dropped
/// as the partial's, ends short of where the partial does. That size mismatch is the
/// partial's length, not the server contradicting itself: the partial goes, as one a 416
/// refuses does, and no later run carries it on again.
#[test]
fn a_partial_longer_than_the_blob_a_server_sends_whole_is_not_kept() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    let mut longer = data.clone();
    longer.extend_from_slice(&[0u8; 1000]);
    plant_partial(dir.path(), &digest, &longer);
    reg.push_fault(&digest, Fault::IgnoreRange);
    // The whole fetch that follows fails: whatever is kept is left for the next run.
    reg.push_fault(&digest, Fault::Status(404));
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &[]);
    assert_eq!(status, 1, "{text}");
    assert!(!text.contains("contradicted the size"), "{text}");
    assert!(
        !partial_path(dir.path(), &digest).exists(),
        "a partial longer than the blob was kept: {text}"
    );
}

/// A partial download as long as the blob, of other bytes (kept by a drop after content
/// that failed verification): the request for the rest is refused (416), the partial
/// thrown away at once and the blob fetched whole, with no word of content that did not
/// verify, which no answer of the registry's sent.
#[test]
fn a_wrong_partial_as_long_as_the_blob_is_thrown_away_at_its_416() {
    let (reg, digest, data) = fake_with_blob();
    let dir = tempfile::tempdir().unwrap();
    plant_partial(dir.path(), &digest, &vec![0; LEN]);
    let (status, text) = fetch_into(&reg, dir.path(), &digest, &["-v"]);
    assert_eq!(status, 0, "{text}");
    assert_stored_alone(dir.path(), &digest, &data);
    assert_eq!(
        answers(&reg, &digest),
        [(Some(format!("bytes={LEN}-")), 416), (None, 200)]
    );
    assert!(!text.contains("verif"), "{text}");
}
