//! Fetching from the in-process registry that misbehaves on purpose: lying bodies, wrong
//! lengths, failures to retry, broken connections to resume, redirects to other hosts.

mod support;

use std::time::Duration;

use support::cli::{
    blob_file, bytes, frame_media_types, json_lines, parse_frames, sha256, Dist, Running,
};
use support::fake::{Auth, FakeRegistry, Fault, Gate, Recorder};

fn fake_with_blob(len: usize) -> (FakeRegistry, String, Vec<u8>) {
    let reg = FakeRegistry::start();
    let data = bytes(len as u64, len);
    let digest = reg.blob("team/app", &data);
    (reg, digest, data)
}

fn repo(reg: &FakeRegistry) -> String {
    format!("{}/team/app", reg.host())
}

/// `dist fetch` of `digest` from `reg`'s `team/app`, one-shot to stdout, with no input.
fn fetch(reg: &FakeRegistry, digest: &str) -> std::process::Output {
    Dist::new().run(&["fetch", &repo(reg), digest], b"")
}

#[test]
fn lying_body_fails_one_shot_with_both_digests() {
    let (reg, digest, data) = fake_with_blob(100_000);
    reg.set_fault_for_every(&digest, Fault::CorruptByte(500));
    let out = fetch(&reg, &digest);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let mut corrupted = data.clone();
    corrupted[500] ^= 0xff;
    let want = format!(
        "digest mismatch: expected {digest}, got {} (100000 bytes)",
        sha256(&corrupted)
    );
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains(&format!("/v2/team/app/blobs/{digest}")),
        "{err}"
    );
    // Small enough to be held back until verified: nothing of it reached stdout, and it
    // was fetched once more before the error stood.
    assert!(out.stdout.is_empty(), "{} bytes written", out.stdout.len());
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 2);
}

/// As the worker does, a one-shot fetch fetches content that did not verify once more
/// while nothing of it was written (up to 1 MiB is held back): a manifest piped into `jq`
/// is whole and verified or absent. Past 1 MiB the content streams, and the exit status
/// is the verdict.
#[test]
fn corrupted_once_is_fetched_again_by_a_one_shot_fetch_while_held_back() {
    let reg = FakeRegistry::start();
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let oci = "application/vnd.oci.image.manifest.v1+json";
    reg.manifest("team/app", "v1", oci, manifest);
    reg.push_fault("manifests/v1", Fault::CorruptByte(20));
    let out = Dist::new().run(&["fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout, manifest);
    assert_eq!(reg.requests_for("manifests/v1"), 2);

    let big = bytes(33, (1 << 20) + 300_000);
    let digest = reg.blob("team/app", &big);
    reg.set_fault_for_every(&digest, Fault::CorruptByte(1 << 20));
    let out = fetch(&reg, &digest);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("digest mismatch"));
    assert_eq!(
        reg.requests_for(&format!("blobs/{digest}")),
        1,
        "already streamed"
    );
    assert_eq!(out.stdout.len(), big.len());
}

/// A reader that stopped reading holds a pipe's worth of a streamed object, not what was
/// queued for it: abandoned at `--timeout`, the note counted every byte handed to the
/// writer thread (megabytes) as written to stdout.
#[test]
fn a_stalled_reader_is_told_only_what_stdout_took() {
    let (reg, digest, _) = fake_with_blob(4 << 20);
    let mut child = Running::new(
        Dist::new()
            .command(&["--timeout", "3s", "fetch", &repo(&reg), &digest])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn dist"),
    );
    // Held, never read: the pipe fills, and the writer waits for room.
    let _stdout = child.stdout.take().expect("stdout");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    let status = child.wait().expect("wait dist");
    assert_eq!(status.code(), Some(124), "{err}");
    let said = err
        .split("; the ")
        .nth(1)
        .and_then(|rest| rest.split(" already written to stdout").next())
        .unwrap_or_else(|| panic!("no note of what was written: {err}"));
    // A pipe holds 64 KiB, and one write in progress at most as much again.
    assert!(
        said.ends_with(" kB"),
        "{said} is more than stdout took: {err}"
    );
}

/// Past its first MiB a one-shot fetch streams, so content that fails after that has
/// partly reached stdout: the message says so, and how much, since a file redirected to
/// (`> layer.tar`) is still there and looks like the object. It said only "digest
/// mismatch" or the broken connection, as for content held back that never reached stdout.
#[test]
fn a_streamed_object_that_fails_says_what_stdout_already_holds() {
    let reg = FakeRegistry::start();
    let big = bytes(34, (1 << 20) + 300_000);
    let digest = reg.blob("team/app", &big);
    reg.set_fault_for_every(&digest, Fault::CorruptByte(1 << 20));
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(
        err.contains("1.3 MB already written to stdout are not this object: discard them"),
        "{err}"
    );

    // Cut short past the retries: a prefix, not the object either.
    reg.set_fault_for_every(&digest, Fault::DropAfter((1 << 20) + 100_000));
    let out = Dist::new().run(&["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("already written to stdout"), "{err}");

    // Abandoned at --timeout while it streamed: the same.
    let slow = bytes(36, 2 << 20);
    let digest = reg.blob("team/app", &slow);
    let stall = Fault::StallAfter((1 << 20) + 100_000, Duration::from_secs(60));
    reg.set_fault_for_every(&digest, stall);
    let args = [
        "--timeout",
        "3s",
        "--range-streams",
        "1",
        "fetch",
        &repo(&reg),
        &digest,
    ];
    let err = Dist::new().fails(124, &args, b"");
    assert!(err.contains("gave up after the --timeout of 3s"), "{err}");
    assert!(
        err.contains("1.1 MB already written to stdout are not this object: discard them"),
        "{err}"
    );

    // Held back, nothing reached stdout, and nothing is said of it.
    let small = bytes(35, 300_000);
    let digest = reg.blob("team/app", &small);
    reg.set_fault_for_every(&digest, Fault::CorruptByte(1000));
    let out = fetch(&reg, &digest);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(!err.contains("stdout"), "{err}");
}

/// A manifest is capped at 4 MiB, so a one-shot fetch holds all of it back, not just its
/// first MiB: one between 1 and 4 MiB (or an endless body cut off at the cap) that does
/// not verify reaches the reader not at all, and is fetched once more first.
#[test]
fn a_manifest_past_a_mib_is_held_back_whole() {
    let reg = FakeRegistry::start();
    let mut manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":""#.to_vec();
    manifest.resize(manifest.len() + (3 << 20), b'a');
    manifest.extend_from_slice(br#""}}"#);
    let oci = "application/vnd.oci.image.manifest.v1+json";
    reg.manifest("team/app", "v1", oci, &manifest);

    reg.push_fault("manifests/v1", Fault::CorruptByte(2 << 20));
    let out = Dist::new().run(&["fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout == manifest, "{} bytes written", out.stdout.len());
    assert_eq!(reg.requests_for("manifests/v1"), 2);

    reg.set_fault_for_every("manifests/v1", Fault::CorruptByte(2 << 20));
    let out = Dist::new().run(&["fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(out.stdout.is_empty(), "{} bytes written", out.stdout.len());
    assert_eq!(reg.requests_for("manifests/v1"), 4);
}

#[test]
fn corrupted_once_is_fetched_again_in_the_worker() {
    let (reg, digest, data) = fake_with_blob(50_000);
    reg.push_fault(&digest, Fault::CorruptByte(7));
    let out = Dist::new().run(
        &["fetch", &repo(&reg), "-"],
        format!("{digest}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = parse_frames(&out.stdout);
    assert_eq!(frames[0].result.as_ref().unwrap().2, data);
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 2);
}

/// Fetches `digest` from `reg`'s repository by the worker into a new directory, with the
/// global `options` before the command.
fn into_dir(
    reg: &FakeRegistry,
    digest: &str,
    options: &[&str],
) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(reg);
    let mut args = options.to_vec();
    args.extend(["fetch", &repo, "-", "-o", dir.path().to_str().unwrap()]);
    let out = Dist::new().run(&args, format!("{digest}\n").as_bytes());
    (out, dir)
}

#[test]
fn always_corrupted_never_lands_in_the_store() {
    let (reg, digest, _) = fake_with_blob(50_000);
    reg.set_fault_for_every(&digest, Fault::CorruptByte(7));
    let (out, dir) = into_dir(&reg, &digest, &[]);
    assert_eq!(out.status.code(), Some(1));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "error");
    assert!(line["error"].as_str().unwrap().contains("digest mismatch"));
    assert_eq!(
        reg.requests_for(&format!("blobs/{digest}")),
        2,
        "one more try from scratch"
    );
    // Nothing, not even the layout made in the empty directory for this run.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing, not even a temporary file: {left:?}"
    );
}

/// One object named on the command line: its error names the object, with no line number
/// of an input the user never gave.
#[test]
fn one_shot_into_a_directory_reports_without_a_line_number() {
    let (reg, digest, _) = fake_with_blob(20_000);
    reg.set_fault_for_every(&digest, Fault::CorruptByte(7));
    let dir = tempfile::tempdir().unwrap();
    let out = Dist::new().run(
        &[
            "fetch",
            &repo(&reg),
            &digest,
            "-o",
            dir.path().to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The refetch's warning reads as dist's own messages do; the object is reported once.
    let reported: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("dist: ") && !l.starts_with("dist: warning: "))
        .collect();
    assert_eq!(reported.len(), 1, "{err}");
    assert!(
        err.contains("dist: warning: content did not verify; fetching again"),
        "{err}"
    );
    assert!(
        reported[0].starts_with(&format!("dist: {digest}: "))
            && reported[0].contains("digest mismatch"),
        "{err}"
    );
}

/// A server that cuts a body short and answers its resume with a `416`, contradicting the
/// size it declared, is warned about as such before the one more fetch: its content was
/// never verified, and "content did not verify" sent the reader looking for corruption.
#[test]
fn a_server_contradicting_its_size_is_not_warned_about_as_content_that_did_not_verify() {
    let (reg, digest, _) = fake_with_blob(200_000);
    reg.push_fault(&digest, Fault::DropAfter(70_000));
    reg.set_fault_for_every(&digest, Fault::Status(416));
    let out = fetch(&reg, &digest);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("where the server declared 200000 bytes"),
        "{err}"
    );
    let warning = err
        .lines()
        .find(|l| l.starts_with("dist: warning: "))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(
        warning.starts_with("dist: warning: content is not the size it should be; fetching again"),
        "{err}"
    );
    assert!(!err.contains("did not verify"), "{err}");
}

/// An object that kept the `\r` of the line it was cut from (`$(curl -sI … | awk '{print
/// $2}')`), with `-o DIR`, says so and names the object without it, as it does to stdout:
/// it was told it holds a line break, as if two objects had been given.
#[test]
fn one_shot_into_a_directory_tells_an_object_its_carriage_return() {
    let (reg, digest, _) = fake_with_blob(2_000);
    let err = refused_into_a_new_directory(&reg, &digest, &[&format!("{digest}\r")]);
    assert!(err.contains("carriage return"), "{err}");
    assert!(
        err.contains(&format!("without it, it is {digest}")),
        "{err}"
    );
}

/// An object with a space around it, with `-o DIR`, is refused as it is to stdout, saying
/// so: read as an input line, whose words the spaces only part, it was fetched, where the
/// same command without `-o` refused it.
#[test]
fn one_shot_into_a_directory_refuses_an_object_with_space_around_it_as_to_stdout() {
    let (reg, digest, _) = fake_with_blob(2_000);
    for object in [format!(" {digest}"), format!("{digest} ")] {
        let err = refused_into_a_new_directory(&reg, &digest, &[&object]);
        assert!(err.contains("white space around it"), "{object:?}: {err}");
        assert!(
            err.contains(&format!("without it, it is {digest}")),
            "{err}"
        );
    }
}

/// White space an input line's words are parted by that is not ASCII (a no-break space
/// pasted from a web page, an ideographic space, a vertical tab) around an object or a
/// hint, with `-o DIR`, is refused as to stdout and as ASCII white space is: the
/// command line's own check trimmed ASCII only, the line then trimmed the rest, and the
/// object was fetched with `-o` where the same command to stdout refused it, saying only
/// that it was no digest.
#[test]
fn one_shot_into_a_directory_judges_unicode_white_space_as_to_stdout() {
    let (reg, digest, _) = fake_with_blob(2_000);
    for space in ["\u{a0}", "\u{3000}", "\u{b}"] {
        let object = format!("{digest}{space}");
        let err = refused_into_a_new_directory(&reg, &digest, &[&object]);
        assert!(err.contains("white space around it"), "{object:?}: {err}");
        assert!(
            err.contains(&format!("without it, it is {digest}")),
            "{err}"
        );
        let size = format!("size:2000{space}");
        let err = refused_into_a_new_directory(&reg, &digest, &[&digest, &size]);
        assert!(err.contains("white space around it"), "{size:?}: {err}");
    }
}

/// A size hint that kept the `\r` of the `Content-Length` line it was cut from (`size:$(curl
/// -sI … | awk '/Content-Length/{print $2}')`), with `-o DIR`, is told so, as to stdout:
/// it was told it held a line break, to give many objects as lines on stdin, as if it
/// were two lines.
#[test]
fn one_shot_into_a_directory_tells_a_size_its_carriage_return_as_to_stdout() {
    let (reg, digest, _) = fake_with_blob(2_000);
    let err = refused_into_a_new_directory(&reg, &digest, &[&digest, "size:2000\r"]);
    assert!(err.contains("carriage return"), "{err}");
    assert!(err.ends_with("without it, it is 2000\n"), "{err:?}");
    // Quoted with a space before it: ignored as an unknown key to stdout, a size with -o.
    let err = refused_into_a_new_directory(&reg, &digest, &[&digest, " size:2000"]);
    assert!(err.contains("white space around it"), "{err}");
}

/// `dist fetch` of `words` (an object and its hints) into a new `-o DIR` and to stdout,
/// each refused with exit status 2 before a layout was made or `digest` asked for, in the
/// same words: what they said.
fn refused_into_a_new_directory(reg: &FakeRegistry, digest: &str, words: &[&str]) -> String {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("out");
    let repo = repo(reg);
    let to_stdout: Vec<&str> = ["fetch", repo.as_str()]
        .into_iter()
        .chain(words.iter().copied())
        .collect();
    let mut into_dir = to_stdout.clone();
    into_dir.extend(["-o", dir.to_str().unwrap()]);
    let said = Dist::new().fails(2, &into_dir, b"");
    assert!(!dir.exists(), "{words:?}: a layout was made");
    let said_to_stdout = Dist::new().fails(2, &to_stdout, b"");
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 0, "{words:?}");
    assert_eq!(said, said_to_stdout, "{words:?}");
    said
}

/// One object named on the command line with `-o DIR` that names nothing (blank, or what
/// an input line would take for a comment), or that holds a line break (which made it
/// two input lines): refused as a usage error before anything is made or asked. Each
/// was skipped as an input line would be, and the run exited 0 having fetched nothing.
#[test]
fn one_shot_into_a_directory_refuses_an_object_that_is_no_line_of_one() {
    let (reg, digest, _) = fake_with_blob(2_000);
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("out");
    let report = parent.path().join("report.jsonl");
    let two_lines = format!("{digest}\n{digest}");
    let two_words = format!("{digest} size:2000");
    let objects = [
        "",
        " ",
        "#latest",
        "\u{feff}# a list",
        &two_lines,
        &two_words,
    ];
    for object in objects {
        let err = Dist::new().fails(
            2,
            &[
                "fetch",
                &repo(&reg),
                object,
                "-o",
                dir.to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
            ],
            b"",
        );
        assert!(err.contains("dist: "), "{object:?}: {err}");
        assert!(!dir.exists(), "{object:?}: a layout was made");
        assert!(!report.exists(), "{object:?}: a report was made");
    }
    // Blank with hints after it (`"$DIGEST" size:2000`, the variable unset): the first hint
    // was taken for the object.
    for object in ["", " "] {
        let err = Dist::new().fails(
            2,
            &[
                "fetch",
                &repo(&reg),
                object,
                "size:2000",
                "-o",
                dir.to_str().unwrap(),
            ],
            b"",
        );
        assert!(err.contains("blank"), "{object:?}: {err}");
        assert!(!dir.exists(), "{object:?}: a layout was made");
    }
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 0);
    let hint = format!("size:2000\n{digest}");
    let out = Dist::new().run(
        &[
            "fetch",
            &repo(&reg),
            &digest,
            &hint,
            "-o",
            dir.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A malformed object or hint on the command line is a usage error, status 2, with
/// `-o DIR` as to stdout. Read as the one input line, it failed as a bad line of input:
/// status 1 and a JSON line, where the same command line without `-o` said status 2, so a
/// script could not tell its own mistake from an object the registry lacks.
#[test]
fn one_shot_into_a_directory_refuses_a_malformed_object_as_to_stdout() {
    let (reg, digest, _) = fake_with_blob(2_000);
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("out");
    let report = parent.path().join("report.jsonl");
    let repo = repo(&reg);
    for words in [
        vec!["sha256:abc"],
        vec!["team/app:v1"],
        vec![&digest, "garbage"],
        vec![&digest, "size:-1"],
        vec![&digest, "mediatype:application/"],
    ] {
        let to_stdout: Vec<&str> = ["fetch", &repo].into_iter().chain(words.clone()).collect();
        let into_dir: Vec<&str> = to_stdout
            .iter()
            .copied()
            .chain(["-o", dir.to_str().unwrap()])
            .chain(["--report", report.to_str().unwrap()])
            .collect();
        for args in [to_stdout, into_dir] {
            let out = Dist::new().run(&args, b"");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(out.stdout.is_empty(), "{args:?}: {err}");
            assert!(!dir.exists(), "{args:?}: a layout was made");
            assert!(!report.exists(), "{args:?}: a report was made");
        }
    }
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 0);
}

/// A `206` to a request that asked for no range is refused on its status, naming the URL,
/// as a resume's is: its partial length was taken for the blob's size, and what arrived
/// failed as a digest mismatch, twice, read as corruption on the wire.
#[test]
fn a_partial_answer_to_a_whole_request_is_a_protocol_error() {
    let (reg, digest, _) = fake_with_blob(10_000);
    reg.set_fault_for_every(&digest, Fault::ShortRange(4000));
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(
        err.contains(&format!("/v2/team/app/blobs/{digest}"))
            && err.contains(
                "asked for the whole content, got a 206 with Content-Range: bytes 0-3999/*"
            ),
        "{err}"
    );
    assert!(!err.contains("digest mismatch"), "{err}");
    assert_eq!(reg.requests_for(&digest), 1, "{err}");
}

/// A `206` that carries the whole content (`Content-Range: bytes 0-9999/10000`), to a
/// request that asked for no range or to a resume from byte 4000, is the content: curl
/// takes it, and containerd takes one it did not ask a range of. It was refused as a
/// partial answer, or as the wrong range, and the object failed though all of it came.
#[test]
fn a_partial_answer_holding_the_whole_content_is_taken() {
    takes_the_whole_content_under(Fault::WholeRange);
}

/// A `206` holding the whole content coded (`Content-Encoding: gzip`, its range all of
/// the coded bytes) is the content coded, as a coded `200` is: decoded, and verified.
/// It was refused as a coded range, to a request that asked for no range; and to a
/// resume, asked again without `Range`, it was refused as a range not asked for.
#[test]
fn a_coded_partial_answer_holding_the_whole_content_is_decoded() {
    takes_the_whole_content_under(Fault::CodedWholeRange("gzip"));
}

/// Fetches a blob whose every answer is `whole`, then one broken at 4000 bytes whose rest
/// is answered so: each arrives whole and verified, the 4000 bytes at hand dropped from
/// the content (not from coded bytes), in one request and two.
fn takes_the_whole_content_under(whole: Fault) {
    for (size, broken) in [(10_000, false), (10_001, true)] {
        let (reg, digest, data) = fake_with_blob(size);
        if broken {
            reg.push_fault(&digest, Fault::DropAfter(4000));
        }
        reg.set_fault_for_every(&digest, whole.clone());
        let out = fetch(&reg, &digest);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{whole:?}: {err}");
        assert!(out.stdout == data, "{whole:?}: {err}");
        let requests = 1 + usize::from(broken);
        assert_eq!(reg.requests_for(&digest), requests, "{whole:?}: {err}");
    }
}

#[test]
fn short_declared_length_is_a_mismatch() {
    let (reg, digest, _) = fake_with_blob(10_000);
    reg.set_fault_for_every(&digest, Fault::WrongContentLength(-10));
    let out = fetch(&reg, &digest);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("digest mismatch"));
}

#[test]
fn long_declared_length_is_a_size_mismatch() {
    let (reg, digest, _) = fake_with_blob(10_000);
    reg.set_fault_for_every(&digest, Fault::WrongContentLength(10));
    let out = Dist::new().run(&["fetch", "--retries", "2", &repo(&reg), &digest], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // All 10000 real bytes arrived, so the resume asks for bytes=10000- and the registry
    // answers 416: nothing lies past them, where it declared 10010 bytes. The server
    // contradicts itself, which is said (it was left to verification, which said only that
    // the content ended after 10000 of 10010 bytes).
    assert!(
        err.contains(&digest)
            && err.contains(
                "asked for bytes=10000-, got a 416 (the content ends at byte 10000), where \
                 the server declared 10010 bytes"
            ),
        "{err}"
    );
    assert_eq!(
        reg.requests_for(&format!("blobs/{digest}")),
        4,
        "first try and one resume, then both again since nothing was written yet"
    );
}

/// A declared length other than the descriptor's size says the content would not verify:
/// like a digest mismatch, it is fetched once more (from the registry itself) before the
/// error stands, by the worker into `-o DIR` and to frames, and by a one-shot fetch. It
/// used to fail at once, where the same fault without a `size:` hint was repaired.
#[test]
fn a_declared_size_other_than_the_hint_is_fetched_once_more() {
    let (reg, digest, data) = fake_with_blob(20_000);
    let size = format!("size:{}", data.len());
    let line = format!("{digest} {size}\n");
    let faults = [
        Fault::WrongContentLength(7),
        Fault::WrongContentLength(-7),
        Fault::LongerBody(7),
    ];
    for fault in faults {
        let path = format!("blobs/{digest}");
        reg.push_fault(&path, fault.clone());
        let out = Dist::new().run(&["fetch", &repo(&reg), "-"], line.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{fault:?}, framed: {err}");
        let frames = parse_frames(&out.stdout);
        assert_eq!(frames.len(), 1, "{fault:?}");
        assert_eq!(frames[0].result.as_ref().unwrap().2, data, "{fault:?}");

        reg.push_fault(&path, fault.clone());
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "fetch",
            &repo(&reg),
            "-",
            "-o",
            dir.path().to_str().unwrap(),
        ];
        let out = Dist::new().run(&args, line.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{fault:?}, -o: {err}");
        let stored = std::fs::read(blob_file(dir.path(), &digest));
        assert_eq!(stored.unwrap(), data, "{fault:?}");

        reg.push_fault(&path, fault.clone());
        let out = Dist::new().run(&["fetch", &repo(&reg), &digest, &size], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{fault:?}, one-shot: {err}");
        assert_eq!(out.stdout, data, "{fault:?}");
    }
    // Every time, the descriptor's size is what the error names.
    reg.set_fault_for_every(&digest, Fault::WrongContentLength(7));
    let before = reg.requests_for(&format!("blobs/{digest}"));
    let out = Dist::new().run(&["fetch", &repo(&reg), "-"], line.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let frames = parse_frames(&out.stdout);
    let reason = frames[0].result.as_ref().unwrap_err();
    assert!(
        reason.contains("registry declares 20007 bytes, expected 20000"),
        "{reason}"
    );
    let asked = reg.requests_for(&format!("blobs/{digest}")) - before;
    assert_eq!(asked, 2, "the first time, and once more");
}

/// A wrong `size:` hint against a body that declares no size (no `Content-Length`): its
/// length, found only as it arrives, is said against the size given as a size declared
/// otherwise is, warned about in those words, and the error that stands after the
/// registry sent the same says the size given is likely wrong. It said only
/// "content longer than its expected 19999 bytes", and warned of content that "did not
/// verify".
#[test]
fn a_wrong_size_hint_is_named_against_a_body_without_length() {
    let (reg, digest, _) = fake_with_blob(20_000);
    reg.set_fault_for_every(&digest, Fault::Unframed(usize::MAX));
    let given =
        |n: u64| format!("expected {n} (the size given: size:{n}, or a descriptor's \"size\")");
    for (hint, got, sent) in [
        (
            19_999,
            "content longer than its expected 19999 bytes",
            "more",
        ),
        (20_001, "content ended after 20000 of 20001 bytes", "20000"),
    ] {
        let size = format!("size:{hint}");
        let out = Dist::new().run(&["fetch", &repo(&reg), &digest, &size], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("{got}, {}", given(hint))), "{err}");
        let warned = format!(
            "dist: warning: the size given is {hint} bytes and the registry sent {sent}; \
             fetching once more"
        );
        assert!(err.contains(&format!("{warned} (object=")), "{err}");
        assert!(!err.contains("did not verify"), "{err}");
        // No mirror to set the registry apart from: not "the registry itself".
        let again = format!("the registry sent {sent} bytes again: the size given is likely wrong");
        assert!(err.contains(&again), "{err}");
        assert!(!err.contains("itself"), "{err}");
        // The worker's descriptor size alike.
        let line = format!("{{\"digest\":\"{digest}\",\"size\":{hint}}}\n");
        let out = Dist::new().run(&["fetch", &repo(&reg), "-"], line.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        let frames = parse_frames(&out.stdout);
        let reason = frames[0].result.as_ref().unwrap_err();
        assert!(reason.contains(&given(hint)), "{reason}");
        assert!(err.contains(&warned), "{err}");
    }
}

/// A size of one byte read "the size given is 1 bytes", "sent 1 bytes again": every
/// message and warning that counts bytes a user gave or a server sent says one byte so.
#[test]
fn one_byte_is_said_in_the_singular() {
    let (reg, digest, _) = fake_with_blob(2);
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest, "size:1"], b"");
    assert!(
        err.contains("warning: the size given is 1 byte and the registry declares 2;"),
        "{err}"
    );
    reg.set_fault_for_every(&digest, Fault::Unframed(usize::MAX));
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest, "size:1"], b"");
    assert!(
        err.contains("content longer than its expected 1 byte,"),
        "{err}"
    );
    assert!(
        err.contains("warning: the size given is 1 byte and the registry sent more;"),
        "{err}"
    );
    let (reg, digest, _) = fake_with_blob(1);
    reg.set_fault_for_every(&digest, Fault::Unframed(usize::MAX));
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest, "size:2"], b"");
    assert!(err.contains("content ended after 1 of 2 bytes"), "{err}");
    assert!(err.contains("the registry sent 1 byte again"), "{err}");
    assert!(!err.contains(" 1 bytes"), "{err}");
}

/// A body that declares no size, cut short, resumed: the `206`'s `Content-Range` total is
/// the first size the registry declares, and a size given otherwise is said against it as
/// against a `Content-Length`, warned about in those words. It was said as "where the
/// content is 20001", the size given taken for the content's, and warned about as content
/// that "did not verify". The size given right, the resume goes on.
#[test]
fn a_wrong_size_hint_is_named_against_a_resume_s_total() {
    let (reg, digest, data) = fake_with_blob(20_000);
    // Every answer runs to its connection's close, the first cut there half-way.
    reg.set_fault_for_every(&digest, Fault::Unframed(10_000));
    let out = Dist::new().run(&["fetch", &repo(&reg), &digest, "size:20000"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout == data, "{err}");
    assert_eq!(blob_ranges(&reg), [None, Some("bytes=10000-".into())]);

    let given = "expected 20001 (the size given: size:20001, or a descriptor's \"size\")";
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest, "size:20001"], b"");
    let said = format!(
        "asked for bytes=10000-, got a 206 with Content-Range: bytes 10000-19999/20000: the \
         registry declares 20000 bytes, {given}"
    );
    assert!(err.contains(&said), "{err}");
    let warned = "dist: warning: the size given is 20001 bytes and the registry declares \
                  20000; fetching once more";
    assert!(err.contains(&format!("{warned} (object=")), "{err}");
    assert!(!err.contains("did not verify"), "{err}");
    assert!(!err.contains("where the content is"), "{err}");
}

/// A size given (`size:20000`, right) that a resume's answer declares too (its
/// `Content-Range` total), and a later resume's answer that declares another: the server
/// contradicts its own earlier answer, said as against the content's known size. It was
/// said, and warned about, as the registry against the size given ("the size given is
/// 20000 bytes and the registry declares 30000"), casting doubt on a size the registry had
/// confirmed.
#[test]
fn a_total_a_resume_contradicts_after_one_confirmed_the_size_given_is_the_server_s() {
    let (reg, digest, data) = fake_with_blob(20_000);
    // The first answer runs to its connection's close, cut there; the first resume's
    // declares the size given, and drops; the second's declares another.
    reg.push_fault(&digest, Fault::Unframed(10_000));
    reg.push_fault(&digest, Fault::DropAfter(2_000));
    reg.push_fault(&digest, Fault::RangeTotal(30_000));
    let out = Dist::new().run(&["fetch", &repo(&reg), &digest, "size:20000"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout == data, "{err}");
    let said = "asked for bytes=12000-, got a 206 with Content-Range: bytes 12000-19999/30000: \
                30000 bytes in all, where the content is 20000";
    assert!(err.contains(said), "{err}");
    assert!(!err.contains("the size given is 20000 bytes"), "{err}");
    assert!(!err.contains("registry declares"), "{err}");
}

/// As above, the resume answered whole by a server that ignores `Range`: its
/// `Content-Length` is the first size the registry declares, said against the size given
/// in the same words.
#[test]
fn a_wrong_size_hint_is_named_against_a_resume_answered_whole() {
    let reg = FakeRegistry::builder().range_support(false).start();
    let data = bytes(20_000, 20_000);
    let digest = reg.blob("team/app", &data);
    // The first answer runs to its connection's close, cut there half-way; the resume
    // gets the whole blob, with its length.
    reg.push_fault(&digest, Fault::Unframed(10_000));
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest, "size:20001"], b"");
    let said = "asked for bytes=10000-, got a 200 with Content-Length: 20000: the registry \
                declares 20000 bytes, expected 20001 (the size given: size:20001, or a \
                descriptor's \"size\")";
    assert!(err.contains(said), "{err}");
    assert!(!err.contains("where the content is"), "{err}");
}

/// A wrong `size:` hint, the registry right: the message names both sizes and the size
/// given as the user gave it, a cause as likely as the registry. It said "expected
/// 19999" alone, which read as the registry's fault.
#[test]
fn a_wrong_size_hint_is_named_beside_the_size_declared() {
    let (reg, digest, _) = fake_with_blob(20_000);
    let want = "registry declares 20000 bytes, expected 19999 (the size given: size:19999, \
                or a descriptor's \"size\")";
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest, "size:19999"], b"");
    assert!(err.contains(want), "{err}");
    // The warning says what happened and what dist does about it: no content was read,
    // so none "did not verify".
    let warned = "dist: warning: the size given is 19999 bytes and the registry declares \
                  20000; fetching once more";
    assert!(err.contains(&format!("{warned} (object=")), "{err}");
    assert!(!err.contains("did not verify"), "{err}");
    // The error that stands says the registry was asked again and declared the same;
    // with no mirror to set it apart from, not "the registry itself".
    assert!(
        err.contains("the registry declared 20000 bytes again: the size given is likely wrong"),
        "{err}"
    );
    assert!(!err.contains("itself"), "{err}");
    let line = format!("{{\"digest\":\"{digest}\",\"size\":19999}}\n");
    let out = Dist::new().run(&["fetch", &repo(&reg), "-"], line.as_bytes());
    let frames = parse_frames(&out.stdout);
    let reason = frames[0].result.as_ref().unwrap_err();
    assert!(reason.contains(want), "{reason}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(warned), "{err}");
}

#[test]
fn body_longer_than_the_descriptor_says_is_refused() {
    let (reg, digest, data) = fake_with_blob(10_000);
    reg.set_fault_for_every(&digest, Fault::LongerBody(5));
    let line = format!("{digest} size:{}\n", data.len());
    let out = Dist::new().run(&["fetch", &repo(&reg), "-"], line.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let frames = parse_frames(&out.stdout);
    let reason = frames[0].result.as_ref().unwrap_err();
    assert!(
        reason.contains("10005") && reason.contains("10000"),
        "{reason}"
    );
}

#[test]
fn tag_is_checked_against_docker_content_digest() {
    let reg = FakeRegistry::start();
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let digest = reg.manifest(
        "team/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest,
    );
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), "v1"]), manifest);
    reg.set_fault_for_every("manifests/v1", Fault::CorruptByte(3));
    let out = Dist::new().run(&["fetch", &repo(&reg), "v1"], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("expected {digest}")), "{err}");
}

/// A credential file that is not JSON does not stop fetches that need none of its
/// credentials: a registry that asks for none never hears of it, and one that challenges
/// (anonymous tokens, as Docker Hub) gets a warning naming the file, once.
#[test]
fn a_broken_credential_file_is_passed_over_with_a_warning() {
    let dist = Dist::new();
    dist.docker_config("{\"auths\": {");
    let (open, digest, data) = fake_with_blob(2000);
    let out = dist.run(&["fetch", &repo(&open), &digest], b"");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout == data);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let tokens = FakeRegistry::with_tokens();
    let digest = tokens.blob("team/app", &data);
    let out = dist.run(&["fetch", &repo(&tokens), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout == data);
    assert!(
        err.contains("ignoring") && err.contains("config.json"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The worker checks its remote once with a tag listing. A registry that refuses listings
/// (403) to credentials allowed to pull must not stop the batch; refused credentials (401)
/// still do, with status 2.
#[test]
fn a_refused_listing_does_not_stop_the_batch() {
    let (reg, digest, data) = fake_with_blob(5000);
    reg.set_fault_for_every("tags/list", Fault::Status(403));
    let frames = Dist::new().ok_fed(
        &["fetch", &repo(&reg), "-"],
        format!("{digest}\n").as_bytes(),
    );
    let frames = parse_frames(&frames);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].result.as_ref().unwrap().2 == data);
    assert_eq!(reg.requests_for("tags/list"), 1);

    reg.set_fault_for_every("tags/list", Fault::Unauthorized);
    let out = Dist::new().run(
        &["fetch", &repo(&reg), "-"],
        format!("{digest}\n").as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot use"));
}

/// A registry that implements no tag listing (405 or 501, the distribution spec's
/// `UNSUPPORTED`: listing is its Content Discovery category, which a registry conforming
/// for Pull alone need not serve) is reachable and lets the batch run, as a 404 does. It
/// failed the batch with status 2 before a single object was asked for, though every one
/// could be pulled.
#[test]
fn a_registry_without_tag_listing_does_not_stop_the_batch() {
    let (reg, digest, data) = fake_with_blob(5000);
    for status in [405, 501] {
        reg.set_fault_for_every("tags/list", Fault::Status(status));
        let frames = Dist::new().ok_fed(
            &["fetch", &repo(&reg), "-"],
            format!("{digest}\n").as_bytes(),
        );
        let frames = parse_frames(&frames);
        assert_eq!(frames.len(), 1, "{status}");
        assert!(frames[0].result.as_ref().unwrap().2 == data, "{status}");
    }
}

/// A server that labels content stored compressed (a gzip layer) `Content-Encoding: gzip`,
/// as an S3 object uploaded with that metadata is served, sends bytes that verify only as
/// sent: decoded, as a proxy's coding must be, they do not. Streamed to stdout past what
/// is held back, the content cannot be fetched again; the mismatch says it was of the
/// decoded bytes, of which coding, and that the bytes as sent verify, with the size to
/// give to have them. It read as corruption, with a size (of the decoded bytes) that is
/// no size the layer has.
#[test]
fn a_mismatch_after_decoding_says_the_coding_was_undone() {
    let layer = gzip_layer(43, 2 << 20);
    let (reg, digest) = stored_under("gzip", &layer);
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    let last = err.lines().last().unwrap();
    assert!(last.contains("digest mismatch"), "{err}");
    assert!(last.contains("gzip"), "{err}");
    assert!(last.contains("undone"), "{err}");
    assert!(last.contains(&format!("size:{}", layer.len())), "{err}");
    // A one-shot run again learns nothing from the last, and fails the same way: the size
    // given is the way, and the message promises no fetch again more. It did.
    let again = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(again.contains("digest mismatch"), "{again}");
    assert!(!last.contains("a fetch again"), "{err}");
}

/// A blob stored compressed under `Content-Encoding: gzip` metadata (an S3 object so
/// uploaded, a gzip layer behind a web server that labels `.gz` files): its bytes as sent
/// are the content. With the size given, as a manifest's descriptor gives it, a coded
/// body whose `Content-Length` is that size is taken as sent, and verifies.
#[test]
fn a_layer_stored_under_content_encoding_is_the_bytes_sent_when_its_size_says_so() {
    let layer = gzip_layer(44, 20_000);
    let (reg, digest) = stored_under("gzip", &layer);
    let size = format!("size:{}", layer.len());
    let out = Dist::new().ok(&["fetch", &repo(&reg), &digest, &size]);
    assert!(
        out == layer,
        "got {} bytes, not the layer's {}",
        out.len(),
        layer.len()
    );
}

/// The same blob with no size given, by the worker into a directory: the decoded body
/// fails, the bytes as sent verify, and the fetch once more takes them as sent.
#[test]
fn a_layer_stored_under_content_encoding_is_fetched_again_as_sent() {
    let layer = gzip_layer(45, 20_000);
    let (reg, digest) = stored_under("gzip", &layer);
    stored_into_dir(&reg, &digest, &layer);
    // An answer a proxy compressed is still decoded, and verifies as before.
    let (reg, digest, data) = fake_with_blob(30_000);
    reg.set_fault_for_every(&digest, Fault::Coded("gzip"));
    stored_into_dir(&reg, &digest, &data);
}

/// Content stored zlib-compressed under `Content-Encoding: deflate` (a web server that
/// labels `.zz` files so), no size given: the zlib decoder stops at its stream's end,
/// and the bytes as sent must still be found to verify, and fetched again as sent.
#[test]
fn content_stored_under_deflate_is_fetched_again_as_sent() {
    use std::io::Write;
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    zlib.write_all(&bytes(48, 20_000)).unwrap();
    let stored = zlib.finish().unwrap();
    let (reg, digest) = stored_under("deflate", &stored);
    stored_into_dir(&reg, &digest, &stored);
}

/// A proxy that compresses, its coded body by chance as long as the size given: taken for
/// content stored so, the bytes as sent fail, and the mismatch says they were taken as
/// sent and why. It read as corruption of bytes dist had decoded before.
#[test]
fn a_mismatch_of_bytes_taken_as_sent_says_so() {
    let data = bytes(50, 20_000);
    let coded_len = gzip_layer(50, 20_000).len();
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", &data);
    reg.set_fault_for_every(&digest, Fault::Coded("gzip"));
    let size = format!("size:{coded_len}");
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest, &size], b"");
    let last = err.lines().last().unwrap();
    assert!(last.contains("digest mismatch"), "{err}");
    assert!(last.contains("as sent"), "{err}");
    assert!(last.contains("gzip"), "{err}");
}

/// The same blob whose first body breaks, no size given: asked for whole again, as a
/// decoded body is, its bytes as sent are found to verify all the same, and the fetch
/// once more takes them as sent.
#[test]
fn a_layer_stored_under_content_encoding_that_breaks_is_fetched_again_as_sent() {
    let layer = gzip_layer(51, 300_000);
    let (reg, digest) = stored_under("gzip", &layer);
    let labelled = Fault::Labelled("gzip", Box::new(Fault::DropAfter(100_000)));
    reg.push_fault(&digest, labelled);
    stored_into_dir(&reg, &digest, &layer);
}

/// A zstd layer stored under `Content-Encoding: zstd` metadata (an S3 object so
/// uploaded): dist undoes no zstd, but a body as long as the size given is the content as
/// stored, as a gzip one is, and verifies. It failed as a coding dist does not decode.
#[test]
fn a_layer_stored_under_a_coding_dist_does_not_undo_is_the_bytes_sent_when_its_size_says_so() {
    let layer = bytes(47, 20_000);
    let (reg, digest) = stored_under("zstd", &layer);
    let size = format!("size:{}", layer.len());
    let out = Dist::new().ok(&["fetch", &repo(&reg), &digest, &size]);
    assert!(
        out == layer,
        "got {} bytes, not the layer's {}",
        out.len(),
        layer.len()
    );
    // Without the size, nothing says the bytes are the content: refused before a byte.
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(err.contains("does not decode"), "{err}");
}

/// A layer stored under `Content-Encoding: gzip` whose body breaks: the resume's range,
/// labelled so too, addresses the bytes as sent, and continues them; decoded, it was
/// spliced into the content as bytes it never had.
#[test]
fn a_layer_stored_under_content_encoding_resumes_as_sent() {
    let layer = gzip_layer(46, 300_000);
    let (reg, digest) = stored_under("gzip", &layer);
    let labelled = Fault::Labelled("gzip", Box::new(Fault::DropAfter(100_000)));
    reg.push_fault(&digest, labelled);
    let size = format!("size:{}", layer.len());
    let out = Dist::new().ok(&["fetch", &repo(&reg), &digest, &size]);
    assert!(
        out == layer,
        "got {} bytes, not the layer's {}",
        out.len(),
        layer.len()
    );
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 2);
}

/// A fake registry holding `content` (stored compressed) under its digest, which labels
/// it `Content-Encoding: coding` in every answer, as S3 serves an object uploaded with
/// that metadata: the registry and the digest.
fn stored_under(coding: &str, content: &[u8]) -> (FakeRegistry, String) {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", content);
    reg.set_fault_for_every(&digest, Fault::Header("content-encoding", coding.into()));
    (reg, digest)
}

/// The worker fetches `digest` into a new `-o DIR`, exits 0, and stores `content` alone.
fn stored_into_dir(reg: &FakeRegistry, digest: &str, content: &[u8]) {
    let (out, dir) = into_dir(reg, digest, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    support::cli::assert_stored_alone(dir.path(), digest, content);
}

/// A gzip layer of `len` bytes seeded with `seed`, compressed.
fn gzip_layer(seed: u64, len: usize) -> Vec<u8> {
    use std::io::Write;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&bytes(seed, len)).unwrap();
    gzip.finish().unwrap()
}

/// A proxy, firewall or captive portal that answers `200` with its own HTML page (a
/// sign-in page) in place of the registry's answer: the blob's digest mismatch, and a
/// tag's manifest that is no JSON, say that an HTML page came instead, where they read as
/// corrupt content or a broken registry.
#[test]
fn an_html_page_in_place_of_the_content_is_said_to_be_one() {
    let (reg, digest, _) = fake_with_blob(5000);
    let page = Fault::Page {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: "<!DOCTYPE html><html><head><title>Sign in to Corp Network</title></head>\
               <body>Please sign in</body></html>"
            .into(),
    };
    reg.set_fault_for_every(&digest, page.clone());
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    let last = err.lines().last().unwrap();
    assert!(last.contains("digest mismatch"), "{err}");
    assert!(last.contains("HTML page"), "{err}");
    reg.set_fault_for_every("manifests/v1", page);
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), "v1"], b"");
    assert!(err.lines().last().unwrap().contains("HTML page"), "{err}");
}

/// The same page where the size is given (a descriptor's, as every `dist pull` fetch
/// has it): the size it declares, or sends, is the page's, and the failure says an HTML
/// page came, not that the size given is likely wrong.
#[test]
fn an_html_page_against_a_size_given_is_said_to_be_one() {
    let (reg, digest, data) = fake_with_blob(5000);
    let page = Fault::Page {
        status: 200,
        content_type: "text/html",
        body: "<html><body>Access to this site is blocked by policy</body></html>".into(),
    };
    reg.set_fault_for_every(&digest, page);
    let size = format!("size:{}", data.len());
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest, &size], b"");
    let last = err.lines().last().unwrap();
    assert!(last.contains("HTML page"), "{err}");
    assert!(!last.contains("likely wrong"), "{err}");
}

/// A proxy that compresses whatever it passes on: dist asks for the stored bytes
/// (`identity`), undoes `gzip` and `deflate` when it gets them anyway, and verifies what
/// they decode to. A coding it cannot undo fails at once, before any byte is written.
#[test]
fn coded_answers_are_decoded_before_verification() {
    let (reg, digest, data) = fake_with_blob(300_000);
    reg.set_fault_for_every(&digest, Fault::Coded("gzip"));
    assert!(Dist::new().ok(&["fetch", &repo(&reg), &digest]) == data);
    let asked = reg.requests().into_iter().last().unwrap();
    assert_eq!(asked.headers["accept-encoding"], "identity");

    let dir = tempfile::tempdir().unwrap();
    let line = Dist::new().ok_fed(
        &[
            "fetch",
            &repo(&reg),
            "-",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        format!("{digest} size:300000\n").as_bytes(),
    );
    let line: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(line["status"], "ok", "{line}");
    assert_eq!(line["size"], 300_000);
    let stored = blob_file(dir.path(), &digest);
    assert!(std::fs::read(stored).unwrap() == data);

    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let manifest_digest = reg.manifest(
        "team/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest,
    );
    reg.set_fault_for_every("manifests/v1", Fault::Coded("deflate"));
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), "v1"]), manifest);
    let described = Dist::new().ok(&["resolve", &format!("{}:v1", repo(&reg))]);
    let described: serde_json::Value = serde_json::from_slice(&described).unwrap();
    assert_eq!(described["digest"], manifest_digest.as_str());
    assert_eq!(described["size"], manifest.len());

    reg.set_fault_for_every(&digest, Fault::Coded("br"));
    let before = reg.requests_for(&format!("blobs/{digest}"));
    let out = fetch(&reg, &digest);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Content-Encoding \"br\""), "{err}");
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), before + 1);

    // One decoder nested in the next per coding: 3000 of them (a 15 KB header) overflowed
    // the stack, and dist died of SIGABRT.
    let chain = vec!["gzip"; 3000].join(",");
    reg.set_fault_for_every(&digest, Fault::Header("content-encoding", chain));
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(err.contains("more than 5 codings"), "{err}");
}

/// A CDN's or a proxy's HTML error page, or a body with line breaks and escape sequences,
/// still makes one line on stderr, with nothing in it that a terminal would act on.
#[test]
fn error_pages_make_one_clean_line() {
    let (reg, digest, _) = fake_with_blob(1000);
    let fail_with = |content_type, body: &str| {
        reg.clear_faults();
        let page = Fault::Page {
            status: 403,
            content_type,
            body: body.into(),
        };
        reg.set_fault_for_every(&digest, page);
        let out = fetch(&reg, &digest);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        err
    };

    let err = fail_with(
        "text/html",
        "<!DOCTYPE html>\n<html><head><title>Access denied |\n registry.example used \
         Cloudflare</title></head>\n<body><h1>Sorry</h1>\n</body></html>\n",
    );
    assert!(
        err.contains(
            "registry answered 403 Forbidden: Access denied | registry.example used Cloudflare"
        ),
        "{err}"
    );
    assert!(!err.contains('<'), "{err}");

    let err = fail_with("text/plain", "denied\r\n\x1b]0;owned\x07 by policy\n");
    assert!(
        err.contains("registry answered 403 Forbidden: denied ]0;owned by policy"),
        "{err}"
    );
    assert!(!err.contains(['\x1b', '\x07', '\r']), "{err:?}");
}

#[test]
fn server_errors_are_retried() {
    let (reg, digest, data) = fake_with_blob(20_000);
    for status in [503, 500, 502] {
        reg.push_fault(&digest, Fault::Status(status));
    }
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), &digest]), data);
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 4);
    // Not retried: a client error.
    reg.push_fault(&digest, Fault::Status(400));
    let out = fetch(&reg, &digest);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 5);
}

/// 408 and 504 are retried like the other transient statuses.
#[test]
fn timeouts_answered_by_the_server_are_retried() {
    let (reg, digest, data) = fake_with_blob(3000);
    reg.push_fault(&digest, Fault::Status(408));
    reg.push_fault(&digest, Fault::Status(504));
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), &digest]), data);
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 3);
}

/// A registry that asks to be retried later than dist waits (an hour, as a quota does) is
/// not retried, and the message says what it asked for.
#[test]
fn a_retry_after_beyond_a_minute_fails_at_once_and_says_so() {
    let (reg, digest, _) = fake_with_blob(3000);
    reg.set_fault_for_every(&digest, Fault::StatusWithRetryAfter(429, "3600".into()));
    let out = fetch(&reg, &digest);
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("429 Too Many Requests"), "{err}");
    assert!(
        err.contains("asks to be retried in 1h, longer than dist waits (1m): try again then"),
        "{err}"
    );
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 1);
}

/// More seconds than a u64 holds is still a wait past the longest dist takes: read as no
/// `Retry-After` at all, it was retried at the usual pace, six requests instead of one.
#[test]
fn a_retry_after_past_any_number_fails_at_once_too() {
    let (reg, digest, _) = fake_with_blob(3000);
    let forever = "99999999999999999999999";
    reg.set_fault_for_every(&digest, Fault::StatusWithRetryAfter(503, forever.into()));
    let out = fetch(&reg, &digest);
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("503 Service Unavailable"), "{err}");
    assert!(err.contains("longer than dist waits (1m)"), "{err}");
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 1);
}

/// Docker Hub answers a client whose pull quota is spent with 429 and no `Retry-After`:
/// the quota comes back over hours, so retrying within the run only spends requests
/// (which Docker Hub has counted against the quota too). The request fails at once, and
/// the message says it is the quota and that logging in raises it.
#[test]
fn a_spent_pull_quota_fails_at_once_and_says_to_log_in() {
    const HUB: &str = "You have reached your unauthenticated pull rate limit. \
        https://www.docker.com/increase-rate-limit";
    let reg = FakeRegistry::start();
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    reg.manifest(
        "team/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest,
    );
    // Told by the headers alone (a message of another wording), and by the words alone.
    for fault in [
        Fault::Quota {
            message: "Too Many Requests",
            remaining: Some("0;w=21600"),
        },
        Fault::Quota {
            message: HUB,
            remaining: None,
        },
    ] {
        reg.clear_faults();
        let before = reg.requests_for("manifests/v1");
        reg.set_fault_for_every("manifests/v1", fault.clone());
        let out = Dist::new().run(&["fetch", &repo(&reg), "v1"], b"");
        assert_eq!(out.status.code(), Some(75), "{fault:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("429 Too Many Requests"), "{err}");
        assert!(err.contains("a pull rate limit: anonymous pulls"), "{err}");
        assert!(
            err.contains(&format!("docker login {}", reg.host())),
            "anonymous: {err}"
        );
        assert_eq!(
            reg.requests_for("manifests/v1") - before,
            1,
            "not retried: {fault:?}"
        );
    }
    // With credentials sent, logging in is no advice: the account's own quota is spent.
    let private = FakeRegistry::builder()
        .auth(Auth::basic("user", "password"))
        .start();
    private.manifest(
        "team/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest,
    );
    private.set_fault_for_every(
        "manifests/v1",
        Fault::Quota {
            message: HUB,
            remaining: None,
        },
    );
    let logged_in = Dist::new();
    logged_in.login(&private.host(), "user", "password");
    let out = logged_in.run(&["fetch", &repo(&private), "v1"], b"");
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a pull rate limit: the account logged in has used up its quota"),
        "{err}"
    );
    assert!(!err.contains("docker login"), "{err}");
    // A 429 with quota left is a burst limit, which passes: retried as before.
    reg.clear_faults();
    reg.push_fault(
        "manifests/v1",
        Fault::Quota {
            message: "Too Many Requests",
            remaining: Some("37;w=21600"),
        },
    );
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), "v1"]), manifest);
}

/// A body that ends cleanly (FIN) before its `Content-Length` is resumed from where it
/// stopped, like one cut by a reset.
#[test]
fn a_body_closed_early_is_resumed() {
    let (reg, digest, data) = fake_with_blob(300_000);
    reg.push_fault(&digest, Fault::Truncate(100_000));
    assert!(Dist::new().ok(&["fetch", &repo(&reg), &digest]) == data);
    let ranges: Vec<Option<String>> = reg
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(&digest))
        .map(|r| r.range.clone())
        .collect();
    assert_eq!(ranges, [None, Some("bytes=100000-".to_string())]);
}

/// A manifest over the 4 MiB cap is refused, whatever the registry serves.
#[test]
fn a_manifest_over_the_cap_is_refused() {
    let reg = FakeRegistry::start();
    let mut huge = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":""#.to_vec();
    huge.resize(huge.len() + (5 << 20), b'a');
    huge.extend_from_slice(br#""}}"#);
    reg.manifest(
        "team/app",
        "huge",
        "application/vnd.oci.image.manifest.v1+json",
        &huge,
    );
    let out = Dist::new().run(&["fetch", &repo(&reg), "huge"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeds the 4194304-byte limit"), "{err}");

    // Coded, its length is unknown until it is decoded: 5 MiB from some 10 KiB of gzip,
    // stopped at the cap, whether printed, stored or described.
    reg.set_fault_for_every("manifests/huge", Fault::Coded("gzip"));
    let out = Dist::new().run(&["fetch", &repo(&reg), "huge"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(err.contains("larger than 4194304 bytes"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let out = Dist::new().run(&["fetch", &repo(&reg), "-", "-o", store], b"huge\n");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "error", "{line}");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("larger than 4194304 bytes"),
        "{line}"
    );
    let blobs = dir.path().join("blobs/sha256");
    let stored = std::fs::read_dir(&blobs).map_or(0, |d| d.count());
    assert_eq!(stored, 0, "{}", blobs.display());
    let err = Dist::new().fails(1, &["resolve", &format!("{}:huge", repo(&reg))], b"");
    assert!(err.contains("4194304"), "{err}");
}

/// Resolving a digest that names a large blob says at once, from its declared length,
/// that the object is larger than any manifest: 4 MiB of it were read first, then it was
/// called a "manifest larger than" the cap.
#[test]
fn resolving_a_large_blob_says_it_is_no_manifest_before_reading_it() {
    let (reg, digest, _) = fake_with_blob(5 << 20);
    // Read, the body breaks at once and is asked for again.
    reg.push_fault(&digest, Fault::DropAfter(0));
    let reference = format!("{}@{digest}", repo(&reg));
    let err = Dist::new().fails(1, &["resolve", &reference], b"");
    assert!(
        err.contains(&format!("/v2/team/app/blobs/{digest}"))
            && err.contains("5242880 bytes, larger than any manifest (4194304 bytes at most)"),
        "{err}"
    );
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 1, "{err}");
}

/// A stored blob is trusted by its name unless `--verify-existing` asks for it to be hashed
/// again: then a damaged one (same length, other bytes) is fetched and replaced.
#[test]
fn verify_existing_replaces_a_damaged_blob() {
    let (reg, digest, data) = fake_with_blob(40_000);
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(&reg);
    let into = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["fetch", &repo, "-", "-o", dir.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let line = Dist::new().ok_fed(&args, format!("{digest}\n").as_bytes());
        serde_json::from_slice(&line).unwrap()
    };
    assert_eq!(into(&[])["status"], "ok");
    let stored = blob_file(dir.path(), &digest);
    let damaged = vec![0u8; data.len()];
    std::fs::write(&stored, &damaged).unwrap();
    let gets = || reg.requests_for(&format!("blobs/{digest}"));
    let before = gets();
    assert_eq!(into(&[])["status"], "exists");
    assert_eq!(gets(), before, "trusted without a request");
    assert!(std::fs::read(&stored).unwrap() == damaged);
    assert_eq!(into(&["--verify-existing"])["status"], "ok");
    assert_eq!(gets(), before + 1);
    assert!(std::fs::read(&stored).unwrap() == data);
    assert_eq!(into(&["--verify-existing"])["status"], "exists");
}

/// A blob of 1 MiB or more that must be fetched is looked for again under its lock, where
/// another run may have stored it meanwhile. The damaged file the first look judged was
/// judged again there: hashed twice under `--verify-existing` (a wrong layer of gigabytes
/// read twice), and each look warned, so every damaged large blob was warned of twice.
#[test]
fn a_damaged_large_blob_is_judged_and_warned_of_once() {
    let (reg, digest, data) = fake_with_blob((1 << 20) + 5000);
    let repo = repo(&reg);
    let sized = format!("{digest} size:{}\n", data.len());
    let bare = format!("{digest}\n");
    let zeros = vec![0u8; data.len()];
    // The damage, the line (with its size the lock is taken before the request, without
    // it once the answer declared the size), the options, and the warning.
    let cases: [(&[u8], &str, &[&str], &str); 4] = [
        (
            &zeros,
            &sized,
            &["--verify-existing"],
            "does not match its name",
        ),
        (
            &zeros,
            &bare,
            &["--verify-existing"],
            "does not match its name",
        ),
        (b"", &sized, &[], "is empty, unlike its name"),
        (
            &data[..10],
            &sized,
            &[],
            "is not the size its descriptor says",
        ),
    ];
    for (damage, line, extra, warning) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["fetch", &repo, "-", "-o", dir.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        Dist::new().ok_fed(&args, line.as_bytes());
        let stored = blob_file(dir.path(), &digest);
        std::fs::write(&stored, damage).unwrap();
        let out = Dist::new().run(&args, line.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{line} {extra:?}: {err}");
        assert_eq!(json_lines(&out.stdout)[0]["status"], "ok", "{err}");
        assert_eq!(err.matches(warning).count(), 1, "{line} {extra:?}: {err}");
        assert!(std::fs::read(&stored).unwrap() == data, "replaced");
    }
}

#[test]
fn retry_after_is_honoured() {
    let (reg, digest, data) = fake_with_blob(1000);
    reg.push_fault(&digest, Fault::StatusWithRetryAfter(429, "1".into()));
    let started = std::time::Instant::now();
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), &digest]), data);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited as told"
    );
    let blob_requests: Vec<_> = reg
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/"))
        .collect();
    assert_eq!(blob_requests.len(), 2);
}

/// A HEAD (resolving a tag, an existence check) answered 429 with `Retry-After` is
/// retried after the time asked, as a GET is, and not asked again by GET: a registry
/// that counts GETs against a quota (Docker Hub) would be asked for one more. One asking
/// for longer than dist waits fails at once, saying so.
#[test]
fn a_head_answered_429_waits_as_asked() {
    let reg = FakeRegistry::start();
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let digest = reg.manifest("team/app", "v1", oci, manifest);
    reg.push_fault("manifests/v1", Fault::StatusWithRetryAfter(429, "1".into()));
    let reference = format!("{}:v1", repo(&reg));
    let started = std::time::Instant::now();
    let described = Dist::new().ok(&["resolve", &reference]);
    let took = started.elapsed();
    let described: serde_json::Value = serde_json::from_slice(&described).unwrap();
    assert_eq!(described["digest"], digest.as_str());
    assert!(took >= Duration::from_secs(1), "retried after {took:?}");
    let methods: Vec<_> = reg
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/manifests/v1"))
        .map(|r| (r.method.to_string(), r.status))
        .collect();
    let head = || "HEAD".to_string();
    assert_eq!(methods, [(head(), 429), (head(), 200)]);

    reg.set_fault_for_every(
        "manifests/v1",
        Fault::StatusWithRetryAfter(429, "120".into()),
    );
    let before = reg.requests_for("manifests/v1");
    let out = Dist::new().run(&["resolve", &reference], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("asks to be retried in 2m"), "{err}");
    assert_eq!(reg.requests_for("manifests/v1"), before + 1, "{err}");
}

/// A `Retry-After` that asks for no pause at all (`0`, or an HTTP-date already past)
/// still leaves the backoff between retries: before, the
/// retries went out within milliseconds, all spent on a registry that was shedding load.
/// (Two retries: backoffs of at least 100 and 200 ms.)
#[test]
fn a_retry_after_of_no_time_keeps_the_backoff() {
    for asked in ["0", "Wed, 21 Oct 2015 07:28:00 GMT"] {
        let (reg, digest, _) = fake_with_blob(1000);
        reg.set_fault_for_every(&digest, Fault::StatusWithRetryAfter(503, asked.into()));
        let started = std::time::Instant::now();
        let out = Dist::new().run(&["--retries", "2", "fetch", &repo(&reg), &digest], b"");
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(75), "{asked}");
        assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 3, "{asked}");
        assert!(
            took >= Duration::from_millis(300),
            "{asked}: retried within {took:?}"
        );
    }
}

/// A `Retry-After` date is read by the clock that wrote it, the server's own `Date`: a
/// registry whose clock runs 10 minutes ahead asked for 2 s and was read as asking for
/// 602 s (past the 60 s dist waits: failed at once), and one 10 minutes behind was read
/// as asking for no pause at all.
#[test]
fn a_retry_after_date_is_read_by_the_server_s_own_clock() {
    for skew in [600i64, -600] {
        let (reg, digest, data) = fake_with_blob(1000);
        let server_now = if skew > 0 {
            std::time::SystemTime::now() + Duration::from_secs(skew as u64)
        } else {
            std::time::SystemTime::now() - Duration::from_secs(skew.unsigned_abs())
        };
        let date = httpdate::fmt_http_date(server_now);
        let after = httpdate::fmt_http_date(server_now + Duration::from_secs(2));
        reg.push_fault(
            &digest,
            Fault::StatusWithRetryAfterAndDate(503, after, date),
        );
        let started = std::time::Instant::now();
        let out = fetch(&reg, &digest);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "clock {skew:+} s: {err}");
        assert_eq!(out.stdout, data);
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "clock {skew:+} s: retried after {:?}, not the 2 s asked",
            started.elapsed()
        );
        assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 2);
    }
}

/// A 429 with Retry-After holds every request to that host, not only the one it answered:
/// a job that starts during the pause waits it out instead of drawing another 429.
#[test]
fn retry_after_holds_the_whole_host() {
    third_job_waits_out_a_429(None);
}

/// Regression: a 429 with `Retry-After` on a request's last attempt (every attempt, with
/// `--retries 0`) failed that request without pausing the host, so each other request
/// went ahead and drew a 429 of its own.
#[test]
fn retry_after_on_a_last_attempt_still_holds_the_host() {
    third_job_waits_out_a_429(Some("0"));
}

/// Three blobs two at a time: the first answered 429 with `Retry-After: 2`, the second
/// slow, so that the third starts inside the pause. The third must wait it out, drawing
/// no 429 of its own. `retries` is `--retries`, if given.
fn third_job_waits_out_a_429(retries: Option<&str>) {
    let reg = FakeRegistry::start();
    let [limited, slow, later] = [1, 2, 3].map(|n| reg.blob("team/app", bytes(n, 2000)));
    reg.push_fault(&limited, Fault::StatusWithRetryAfter(429, "2".into()));
    // Keeps the second job slot busy until the 429 has surely arrived, so the third job
    // starts inside the pause.
    reg.push_fault(
        &slow,
        Fault::Paced {
            bytes_per_sec: 1 << 20,
            first_byte: Duration::from_millis(300),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let input = format!("{limited}\n{slow}\n{later}\n");
    let repo = repo(&reg);
    let mut args = vec!["fetch", &repo, "-", "-j", "2", "-o"];
    args.push(dir.path().to_str().unwrap());
    if let Some(retries) = retries {
        args.splice(0..0, ["--retries", retries]);
    }
    let out = Dist::new().run(&args, input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = if retries == Some("0") { 75 } else { 0 };
    assert_eq!(out.status.code(), Some(expected), "{err}");
    let lines = json_lines(&out.stdout);
    let later_line = lines
        .iter()
        .find(|l| l["object"] == later.as_str())
        .expect("a line for the third blob");
    assert_eq!(later_line["status"], "ok");
    let waited = later_line["ms"].as_u64().unwrap();
    assert!(
        waited >= 1000,
        "the third job waited out the pause: {waited} ms"
    );
    assert_eq!(
        reg.requests_for(&format!("blobs/{later}")),
        1,
        "no 429 drawn"
    );
}

/// A blob store that the registry redirects to (a CDN, S3) and that answers 429 with
/// `Retry-After` holds the requests that reach it, not the registry: before, the pause
/// went to the registry, and every other request of the batch waited it out although
/// the registry had not asked. The blob that drew the 429 waits and then comes; another
/// blob sent to the same store during the pause waits for it instead of drawing a 429.
#[test]
fn a_redirect_target_s_retry_after_holds_that_target_not_the_registry() {
    let reg = FakeRegistry::start();
    let cdn = FakeRegistry::start();
    let blobs = [1, 2, 3, 4].map(|n| bytes(n, 2000));
    let [limited, slow, later, also_cdn] = blobs.clone().map(|b| reg.blob("team/app", b));
    for (digest, data) in [(&limited, &blobs[0]), (&also_cdn, &blobs[3])] {
        cdn.blob("team/app", data);
        reg.set_fault_for_every(
            digest,
            Fault::Redirect {
                status: 307,
                location: format!("{}/v2/team/app/blobs/{digest}?sig=abc", cdn.url()),
            },
        );
    }
    cdn.push_fault(&limited, Fault::StatusWithRetryAfter(429, "2".into()));
    // Keeps the second job slot busy until the 429 has surely arrived, so the jobs after
    // it start inside the pause.
    reg.push_fault(
        &slow,
        Fault::Paced {
            bytes_per_sec: 1 << 20,
            first_byte: Duration::from_millis(300),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let input = format!("{limited}\n{slow}\n{later}\n{also_cdn}\n");
    let out = Dist::new().ok_fed(
        &[
            "fetch",
            &repo(&reg),
            "-",
            "-j",
            "2",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        input.as_bytes(),
    );
    let lines = json_lines(&out);
    let line = |digest: &str| {
        let line = lines
            .iter()
            .find(|l| l["object"] == digest)
            .unwrap_or_else(|| panic!("a line for {digest}"));
        assert_eq!(line["status"], "ok", "{line}");
        line["ms"].as_u64().unwrap()
    };
    let limited_ms = line(&limited);
    assert!(
        limited_ms >= 2000,
        "waited as the CDN asked: {limited_ms} ms"
    );
    let later_ms = line(&later);
    assert!(
        later_ms < 1000,
        "the registry did not ask for a pause: {later_ms} ms"
    );
    let also_ms = line(&also_cdn);
    assert!(also_ms >= 1000, "waited out the CDN's pause: {also_ms} ms");
    assert_eq!(cdn.requests_for(&format!("blobs/{limited}")), 2);
    assert_eq!(
        cdn.requests_for(&format!("blobs/{also_cdn}")),
        1,
        "no 429 drawn"
    );
    assert_eq!(reg.requests_for(&format!("blobs/{later}")), 1);
    for (digest, data) in [(&limited, &blobs[0]), (&later, &blobs[2])] {
        let stored = blob_file(dir.path(), digest);
        assert!(std::fs::read(stored).unwrap() == *data);
    }
}

/// Failed requests and broken bodies share one budget: `--retries N` allows N failures in
/// a row without progress, whichever they are, so content whose requests fail and whose
/// bodies break is asked for at most N + 1 times. Before, each resume had N retries of its
/// own: (N + 1)^2 requests (9 with `--retries 2`, 36 with the default 5).
#[test]
fn failed_requests_and_broken_bodies_share_the_retries() {
    let (reg, digest, _) = fake_with_blob(100_000);
    for _ in 0..3 {
        for fault in [
            Fault::Status(503),
            Fault::Status(503),
            Fault::DropAfter(1000),
        ] {
            reg.push_fault(&digest, fault);
        }
    }
    let out = Dist::new().run(&["--retries", "2", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 3, "{err}");

    // A break after a failed request counts as the next failure: one request failed,
    // the body broke, and the one retry left resumes it.
    let (reg, digest, data) = fake_with_blob(100_000);
    for fault in [
        Fault::Status(503),
        Fault::DropAfter(1000),
        Fault::DropAfter(2000),
    ] {
        reg.push_fault(&digest, fault);
    }
    let out = Dist::new().run(&["--retries", "2", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 3, "{err}");
    reg.clear_faults();
    reg.push_fault(&digest, Fault::Status(503));
    reg.push_fault(&digest, Fault::DropAfter(1000));
    let out = Dist::new().run(&["--retries", "2", "fetch", &repo(&reg), &digest], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == data);
}

/// A resume answered with the range asked for, under a `Content-Range` whose total is
/// not the content's size (`bytes 100000-299999/600000` of 300000 bytes), is refused at
/// once as content that is not what was asked for, naming the URL and both sizes, and
/// fetched once more from the registry itself, as other content that does not verify
/// is. It was spliced in, and only the digest could catch it, after the whole transfer.
#[test]
fn a_resume_that_gives_the_content_another_size_is_refused() {
    let (reg, digest, _) = fake_with_blob(300_000);
    reg.push_fault(&digest, Fault::DropAfter(100_000));
    reg.push_fault(&digest, Fault::RangeTotal(600_000));
    reg.push_fault(&digest, Fault::DropAfter(100_000));
    reg.set_fault_for_every(&digest, Fault::RangeTotal(600_000));
    let out = fetch(&reg, &digest);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "{} bytes written", out.stdout.len());
    let said = "got a 206 with Content-Range: bytes 100000-299999/600000: 600000 bytes in \
                all, where the content is 300000";
    assert!(err.contains(said), "{err}");
    assert!(err.contains("asked for bytes=100000-"), "{err}");
    assert!(
        err.contains(&format!("/v2/team/app/blobs/{digest}")),
        "{err}"
    );
    // Each attempt: its first request, and the resume refused; no retry spent on it.
    let ranges = blob_ranges(&reg);
    assert_eq!(ranges.len(), 4, "{ranges:?}");
    assert_eq!(ranges[2], None, "fetched whole once more: {ranges:?}");
}

/// A resume answered with a `200` whose `Content-Length` is not the content's size (a
/// server that ignores ranges, sending other content than the blob) is refused at once,
/// as a `206` with another total is, naming the URL and both sizes: it was read, and the
/// mismatch caught only as its bytes ran past the content's end.
#[test]
fn a_resume_answered_whole_with_another_size_is_refused() {
    let reg = FakeRegistry::builder().range_support(false).start();
    let data = bytes(300_000, 300_000);
    let digest = reg.blob("team/app", &data);
    reg.push_fault(&digest, Fault::DropAfter(100_000));
    reg.set_fault_for_every(&digest, Fault::LongerBody(5));
    let out = Dist::new().run(&["fetch", &repo(&reg), &digest, "size:300000"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "{} bytes written", out.stdout.len());
    let said = "asked for bytes=100000-, got a 200 with Content-Length: 300005, where the \
                content is 300000";
    assert!(err.contains(said), "{err}");
    assert!(
        err.contains(&format!("/v2/team/app/blobs/{digest}")),
        "{err}"
    );
}

#[test]
fn broken_body_resumes_with_range() {
    let (reg, digest, data) = fake_with_blob(300_000);
    reg.push_fault(&digest, Fault::DropAfter(100_000));
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), &digest]), data);
    let ranges = blob_ranges(&reg);
    assert_eq!(ranges.len(), 2);
    assert_eq!(ranges[0], None);
    let resumed_at: u64 = ranges[1]
        .as_deref()
        .unwrap()
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(
        resumed_at > 0 && resumed_at <= 100_000,
        "resumed from what arrived: {resumed_at}"
    );
}

/// A resume answered with a coded range (a CDN node that compresses, after a first answer
/// that was plain) is not spliced into the content: its range addresses coded bytes. The
/// content is asked for whole, without `Range`, and what arrived already is dropped. The
/// coded bytes spliced in failed verification, reported as corruption, and the whole blob
/// was fetched once more.
#[test]
fn a_coded_range_is_not_spliced_into_a_resumed_body() {
    let reg = resumed_through(Fault::Coded("gzip"));
    let ranges = blob_ranges(&reg);
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert!(ranges[1].is_some(), "{ranges:?}");
    assert_eq!(
        ranges[2], None,
        "the whole content was asked for: {ranges:?}"
    );
}

/// A resume answered with the whole content coded (a CDN node that compresses and serves
/// no ranges of it) is decoded, and what arrived already is dropped from the decoded
/// bytes, not from the coded ones.
#[test]
fn a_coded_whole_answer_to_a_resume_is_decoded() {
    let reg = resumed_through(Fault::CodedWhole("gzip"));
    let blob_requests = reg
        .requests()
        .iter()
        .filter(|r| r.path.contains("/blobs/"))
        .count();
    assert_eq!(blob_requests, 2);
}

/// A coded answer (a proxy that compresses) whose connection drops part-way cannot be
/// resumed (a range would address coded bytes), but is fetched again whole where none
/// of it left the process, as content without a fixed address is. Before, it failed at
/// once, whatever `--retries` allowed.
#[test]
fn a_coded_body_that_breaks_is_fetched_again_whole() {
    let broken = || Fault::CodedAnd("gzip", Box::new(Fault::DropAfter(100_000)));
    let (reg, digest, data) = fake_with_blob(300_000);
    reg.push_fault(&digest, broken());
    reg.set_fault_for_every(&digest, Fault::Coded("gzip"));
    let (out, dir) = into_dir(&reg, &digest, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    support::cli::assert_stored_alone(dir.path(), &digest, &data);
    assert_eq!(blob_ranges(&reg), [None, None], "{err}");

    // On the retries' budget: `--retries 1` asks twice, and says so.
    let (reg, digest, _) = fake_with_blob(300_001);
    reg.set_fault_for_every(&digest, broken());
    let (out, _dir) = into_dir(&reg, &digest, &["--retries", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(reg.requests_for(&digest), 2, "{err}");
    assert!(err.contains("(gave up after 2 attempts)"), "{err}");
}

/// A coded answer whose connection closes part-way, cleanly, is fetched again whole as
/// one whose connection is reset is: a FIN short of its `Content-Length`, and one that
/// has none (its body runs to the close, as HTTP/1.0 frames it), whose end only the
/// coding can tell was early. That one failed at once as a coding that does not decode,
/// a protocol error, whatever `--retries` allowed; a plain body cut so is resumed.
#[test]
fn a_coded_body_cut_by_a_close_is_fetched_again_whole() {
    for cut in [Fault::Truncate(100_000), Fault::Unframed(100_000)] {
        let (reg, digest, data) = fake_with_blob(300_000);
        reg.push_fault(&digest, Fault::CodedAnd("gzip", Box::new(cut.clone())));
        reg.set_fault_for_every(&digest, Fault::Coded("gzip"));
        let (out, dir) = into_dir(&reg, &digest, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cut:?}: {err}");
        support::cli::assert_stored_alone(dir.path(), &digest, &data);
        assert_eq!(blob_ranges(&reg), [None, None], "{cut:?}: {err}");
    }
    // A coded stream that is bad, not cut, is still a protocol error, not asked again.
    let (reg, digest, _) = fake_with_blob(300_000);
    reg.set_fault_for_every(
        &digest,
        Fault::CodedAnd("gzip", Box::new(Fault::CorruptByte(20))),
    );
    let (out, _dir) = into_dir(&reg, &digest, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not decode"), "{err}");
}

/// A mirror's coded body (a proxy that compresses) that keeps breaking hands the rest
/// over to the registry, which serves it plain, by range. A break there resumes by range
/// too: the registry's answers are its own. The body stayed "whole" as the mirror's was,
/// and every later break asked the registry for the whole blob again, what had arrived
/// dropped on the way in.
#[test]
fn a_coded_body_handed_over_resumes_by_range_on_the_host_that_took_it() {
    let (reg, digest, data) = fake_with_blob(300_000);
    let mirror = FakeRegistry::start();
    mirror.blob("team/app", &data);
    let broken = Fault::CodedAnd("gzip", Box::new(Fault::DropAfter(50_000)));
    mirror.set_fault_for_every(&digest, broken);
    reg.push_fault(&digest, Fault::DropAfter(100_000));
    let out = Dist::new().run(
        &["fetch", "--mirror", &mirror.url(), &repo(&reg), &digest],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout == data, "{err}");
    let ranges = blob_ranges(&reg);
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(
        ranges.iter().all(Option::is_some),
        "the registry was asked by range each time: {ranges:?}"
    );
}

/// The `Range` of each blob request `reg` was sent, in order.
fn blob_ranges(reg: &FakeRegistry) -> Vec<Option<String>> {
    reg.requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/"))
        .map(|r| r.range)
        .collect()
}

/// Fetches a blob whose body breaks after 100 kB and whose resume is answered with
/// `coded`: the content arrives whole, without meeting corruption on the way.
fn resumed_through(coded: Fault) -> FakeRegistry {
    let (reg, digest, data) = fake_with_blob(300_000);
    reg.push_fault(&digest, Fault::DropAfter(100_000));
    reg.push_fault(&digest, coded);
    let out = fetch(&reg, &digest);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout == data, "{err}");
    assert!(
        !err.contains("did not verify"),
        "no corruption was met: {err}"
    );
    reg
}

/// A body that keeps breaking is resumed after the retries' backoff, not at once: a
/// registry that resets connections while it restarts would otherwise use up every resume
/// in milliseconds. (Three breaks: backoffs of at least 100, 200 and 400 ms.)
#[test]
fn resumes_wait_like_retries() {
    let (reg, digest, data) = fake_with_blob(300_000);
    for _ in 0..3 {
        reg.push_fault(&digest, Fault::DropAfter(50_000));
    }
    let started = std::time::Instant::now();
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), &digest]), data);
    let took = started.elapsed();
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 4);
    assert!(took >= Duration::from_millis(700), "resumed after {took:?}");
}

/// `--retries` bounds breaks in a row without progress, not breaks over a whole body: a
/// link that drops every 1.5 MiB still brings a large blob in, with one retry to spend.
#[test]
fn a_body_that_breaks_after_progress_each_time_gets_through() {
    let (reg, digest, data) = fake_with_blob(5 << 20);
    for _ in 0..3 {
        reg.push_fault(&digest, Fault::DropAfter(3 << 19));
    }
    let got = Dist::new().ok(&["--retries", "1", "fetch", &repo(&reg), &digest]);
    assert!(got == data, "the whole blob");
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 4);
}

/// ... while breaks that bring next to nothing still use the budget up.
#[test]
fn a_body_that_breaks_without_progress_runs_out_of_retries() {
    let (reg, digest, _) = fake_with_blob(5 << 20);
    for _ in 0..3 {
        reg.push_fault(&digest, Fault::DropAfter(100_000));
    }
    let out = Dist::new().run(&["--retries", "1", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 2, "{err}");
}

/// An object that fails after its retries says how many attempts it was given, beside the
/// last failure: a request answered 503 each time, a body that breaks each time, a token
/// server answering 503. Before, the last failure read as if nothing had been tried again.
/// With `--retries 0` there is nothing to add.
#[test]
fn a_failure_after_retries_says_how_many_attempts_it_took() {
    let (reg, digest, _) = fake_with_blob(300_000);
    reg.set_fault_for_every(&digest, Fault::Status(503));
    let err = Dist::new().fails(75, &["--retries", "2", "fetch", &repo(&reg), &digest], b"");
    assert!(
        err.contains("registry answered 503 Service Unavailable (gave up after 3 attempts)"),
        "{err}"
    );

    let (reg, digest, _) = fake_with_blob(300_000);
    reg.set_fault_for_every(&digest, Fault::DropAfter(1000));
    let out = Dist::new().run(&["--retries", "2", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 3, "{err}");
    assert!(err.contains("(gave up after 3 attempts)"), "{err}");

    let (reg, digest) = bearer_with(&bytes(33, 4000));
    reg.set_fault_for_every("/token", Fault::Status(503));
    let out = Dist::new().run(&["--retries", "1", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "/token: token request answered 503 Service Unavailable (gave up after 2 attempts)"
        ),
        "{err}"
    );

    let (reg, digest, _) = fake_with_blob(1000);
    reg.set_fault_for_every(&digest, Fault::Status(503));
    let out = Dist::new().run(&["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("attempts"), "{err}");
}

/// A `Retry-After` past what dist waits is named even when no retries are left.
#[test]
fn a_long_retry_after_is_named_on_the_last_attempt() {
    let (reg, digest, _) = fake_with_blob(1000);
    reg.push_fault(&digest, Fault::StatusWithRetryAfter(429, "120".into()));
    let err = Dist::new().fails(75, &["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    assert!(err.contains("asks to be retried in 2m"), "{err}");
}

#[test]
fn broken_body_restarts_cleanly_when_range_is_ignored() {
    let reg = FakeRegistry::builder().range_support(false).start();
    let data = bytes(5, 300_000);
    let digest = reg.blob("team/app", &data);
    reg.push_fault(&digest, Fault::DropAfter(150_000));
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), &digest]), data);
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 2);
}

#[test]
fn cross_host_redirect_carries_no_credentials() {
    let reg = FakeRegistry::builder()
        .auth(Auth::basic("user", "pw"))
        .start();
    let data = bytes(6, 4000);
    let digest = reg.blob("team/app", &data);
    let cdn = Recorder::serving(&data);
    reg.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("{}/cdn/{digest}?sig=abc", cdn.url()),
        },
    );
    let dist = Dist::new();
    dist.login(&reg.host(), "user", "pw");
    assert_eq!(dist.ok(&["fetch", &repo(&reg), &digest]), data);
    let at_cdn = cdn.requests();
    assert_eq!(at_cdn.len(), 1);
    assert_eq!(
        at_cdn[0].authorization, None,
        "Authorization must not follow to another host"
    );
    // The registry itself did get the credentials.
    assert!(reg
        .requests()
        .iter()
        .any(|r| r.auth_scheme() == Some("Basic")));
}

/// A mangled login (an `auth` that is no base64 of `user:password`, as a token pasted
/// there is) does not stop a pull that needs no credentials: docker passes over such a
/// file with a warning, and so does dist over the entry, naming the file, not the text.
#[test]
fn an_unreadable_login_does_not_stop_an_anonymous_pull() {
    let reg = FakeRegistry::with_tokens();
    let data = bytes(8, 4000);
    let digest = reg.blob("team/app", &data);
    let dist = Dist::new();
    dist.docker_config(&format!(
        r#"{{"auths":{{"{}":{{"auth":"ghp_s3cretToken!"}}}}}}"#,
        reg.host()
    ));
    let out = dist.run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, data);
    let file = dist.config_dir().join("config.json");
    assert!(
        err.contains(&file.display().to_string()) && err.contains("is not base64"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

/// Docker's `registrytoken` is the registry's own bearer token: Docker's daemon sends it
/// as it is and asks no token endpoint (which here would refuse an anonymous caller).
/// Refused, it fails as credentials refused, naming the file and not the token.
#[test]
fn a_registry_token_is_sent_as_the_bearer_token() {
    use std::io::{Read as _, Write as _};
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer_for("user", "pw"))
        .start();
    let data = bytes(9, 4000);
    let digest = reg.blob("team/app", &data);
    // The token a registry's own console would hand out, from its token endpoint.
    let mut tcp = std::net::TcpStream::connect(reg.addr()).unwrap();
    write!(
        tcp,
        "GET /token?service=fake-registry&scope=repository:team/app:pull HTTP/1.1\r\n\
         Host: {}\r\nAuthorization: Basic dXNlcjpwdw==\r\nConnection: close\r\n\r\n",
        reg.host()
    )
    .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).unwrap();
    let body = reply.split_once("\r\n\r\n").expect("a reply").1;
    let json: serde_json::Value = serde_json::from_str(body).expect("token JSON");
    let token = json["token"].as_str().expect("a token").to_string();
    let minted = reg.token_requests();

    let dist = Dist::new();
    dist.docker_config(&format!(
        r#"{{"auths":{{"{}":{{"registrytoken":"{token}"}}}}}}"#,
        reg.host()
    ));
    assert_eq!(dist.ok(&["fetch", &repo(&reg), &digest]), data);
    assert_eq!(reg.token_requests(), minted, "no token endpoint is asked");

    dist.docker_config(&format!(
        r#"{{"auths":{{"{}":{{"registrytoken":"revoked-s3cret"}}}}}}"#,
        reg.host()
    ));
    let err = dist.fails(2, &["fetch", &repo(&reg), &digest], b"");
    let file = dist.config_dir().join("config.json");
    assert!(
        err.contains(&format!("refused the credentials from {}", file.display())),
        "{err}"
    );
    assert!(!err.contains("revoked-s3cret"), "{err}");
    assert_eq!(reg.token_requests(), minted, "no token endpoint is asked");
}

/// After a redirect, a refusal comes from the blob store, and the message says so: "the
/// registry answered 403" sends people to fix registry permissions.
#[test]
fn a_refusal_after_a_redirect_is_the_targets() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(7, 4000));
    let store = Recorder::refusing(http::StatusCode::FORBIDDEN);
    reg.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("{}/cdn/{digest}?sig=abc", store.url()),
        },
    );
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(err.contains("the redirect's target answered 403"), "{err}");
    assert!(err.contains(&store.host()), "{err}");
}

/// A failure at a redirect's target (a CDN's refusal, a store that is not there) names the
/// registry's URL that sent the request there as well as the target's: one debugging a
/// CDN needs both, and the message named the target alone. The target's query (a
/// pre-signed URL's signature) is shown in neither.
#[test]
fn a_failure_at_a_redirects_target_names_the_url_that_redirected_there() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(7, 4000));
    let blob_url = format!("{}/v2/team/app/blobs/{digest}", reg.url());
    let store = Recorder::refusing(http::StatusCode::FORBIDDEN);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    // Refused: the object's failure (1); not there: down for the moment (75), as in a batch.
    for (target, code) in [(store.url(), 1), (nobody, 75)] {
        reg.set_fault_for_every(
            &digest,
            Fault::Redirect {
                status: 307,
                location: format!("{target}/cdn/{digest}?sig=s3cret"),
            },
        );
        let args = ["--retries", "0", "fetch", &repo(&reg), &digest];
        let err = Dist::new().fails(code, &args, b"");
        assert!(err.contains(&format!("{target}/cdn/{digest}")), "{err}");
        assert!(
            err.contains(&format!("redirected there by {blob_url}")),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
}

/// A redirect's target whose error repeats the pre-signed URL it was asked for (S3's
/// `SignatureDoesNotMatch` shows the canonical request, a debugging proxy dumps the
/// request line): dist's message, its log lines at `trace` and the report show what it
/// said without the query's values, as written or percent-decoded. Before, the error
/// printed the signature and the credential whole, at every log level.
#[test]
fn a_redirect_target_s_error_that_echoes_the_presigned_query_does_not_print_it() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(39, 1000));
    let store = FakeRegistry::start();
    let credential = "AKIAEXAMPLE7Q/20261207/us-east-1/s3/aws4_request";
    let written = credential.replace('/', "%2F");
    let query = format!(
        "X-Amz-Credential={written}&X-Amz-Signature=f00dfacef00dface&sig=Zm9vYmFyYmF6cXV4&token=tok-0451"
    );
    reg.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("{}/cdn/{digest}?{query}", store.url()),
        },
    );
    let echo = format!(
        "<Error><Code>SignatureDoesNotMatch</Code><CanonicalRequest>GET /cdn/{digest} {query}\
         </CanonicalRequest><Credential>{credential}</Credential></Error>"
    );
    store.set_fault_for_every(
        &format!("cdn/{digest}"),
        Fault::Page {
            status: 403,
            content_type: "application/xml",
            body: echo,
        },
    );
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut dist = Dist::new();
    dist.env("RUST_LOG", "trace");
    let report_path = report.path().to_str().unwrap();
    let args = [
        "--retries",
        "0",
        "fetch",
        "--report",
        report_path,
        &repo(&reg),
        "-",
    ];
    let out = dist.run(&args, format!("{digest}\n").as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SignatureDoesNotMatch") && err.contains("<redacted>"),
        "the store's words, shown: {err}"
    );
    let reported = std::fs::read_to_string(report.path()).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for shown in [&*err, &reported, &stdout] {
        for secret in [
            credential,
            written.as_str(),
            "f00dfacef00dface",
            "Zm9vYmFyYmF6cXV4",
            "tok-0451",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
    let asked = store.requests();
    assert!(
        asked
            .iter()
            .any(|r| r.query.as_deref() == Some(query.as_str())),
        "the store was asked with the query: {asked:?}"
    );
}

/// Content a redirect's target serves that does not verify (a CDN's stale or corrupt
/// copy) names the URL that sent the request there too: it named the target alone.
#[test]
fn content_that_fails_at_a_redirects_target_names_the_url_that_redirected_there() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", bytes(7, 4000));
    let blob_url = format!("{}/v2/team/app/blobs/{digest}", reg.url());
    let store = Recorder::serving(bytes(8, 4000));
    reg.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("{}/cdn/{digest}?sig=s3cret", store.url()),
        },
    );
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("digest mismatch"), "{err}");
    assert!(
        last.contains(&format!("{}/cdn/{digest}", store.url())),
        "{err}"
    );
    assert!(
        last.contains(&format!("redirected there by {blob_url}")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

/// A `Location` is the server's to choose, and may run to hundreds of KiB: the error
/// still fits on a line, showing the start of the URL.
#[test]
fn a_huge_location_makes_a_short_message() {
    let (reg, digest, _) = fake_with_blob(1000);
    for len in [300_000, 30_000] {
        reg.set_fault_for_every(
            &digest,
            Fault::Redirect {
                status: 307,
                location: format!("/v2/elsewhere/{}", "a".repeat(len)),
            },
        );
        let out = fetch(&reg, &digest);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            &err[err.len().saturating_sub(6000)..]
        );
        assert!(err.len() < 2000, "{} bytes of stderr", err.len());
        assert!(err.contains("/v2/elsewhere/aaaa"), "{err}");
        assert!(err.contains("a…"), "{err}");
    }
}

/// A challenge's realm and scope are the server's text: one of hundreds of KiB makes a
/// short message, and one whose scope makes the token URL too long says that, not that
/// the realm is bad. So does a long challenge in a scheme dist does not speak.
#[test]
fn a_huge_challenge_makes_a_short_message() {
    let (reg, digest, _) = fake_with_blob(1000);
    // Issues a token for any scope, which the registry then finds insufficient.
    let tokens = FakeRegistry::with_tokens();
    let huge = "a".repeat(300_000);
    let realm = format!("{}/token", tokens.url());
    let cases = [
        (
            format!(r#"Bearer realm="{realm}",service="fake",scope="repository:{huge}:pull""#),
            "with the challenge's service and scope is no valid URL",
        ),
        (
            format!(r#"Bearer realm="{}/{huge}",service="fake""#, tokens.url()),
            "bad token realm",
        ),
        (
            format!(
                r#"Bearer realm="{realm}",service="fake",scope="repository:{}:pull",error="insufficient_scope""#,
                &huge[..60_000]
            ),
            "gives anonymous callers no access to the repository aaaa",
        ),
        (
            format!(r#"Negotiate {0}, Digest realm="{0}""#, &huge[..60_000]),
            "unsupported authentication challenge \"Negotiate aaaa",
        ),
    ];
    for (challenge, want) in cases {
        reg.set_fault_for_every(&digest, Fault::Challenge(challenge));
        let out = fetch(&reg, &digest);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.len() < 2000, "{} bytes of stderr", err.len());
        assert!(err.contains(want), "{err}");
        assert_ne!(out.status.code(), Some(0), "{err}");
    }
}

/// A challenge in a scheme dist does not speak is shown, naming the scheme, with the URL
/// it answered; but not what it repeats of the request (a gateway echoing the credentials
/// it was sent), nor the login or query of a URL in it. Before, all of it was printed.
#[test]
fn an_unsupported_challenge_is_shown_without_the_secrets_in_it() {
    use base64::Engine;
    let password = "correct-horse-battery";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    let reg = FakeRegistry::builder()
        .auth(Auth::basic("alice", password))
        .start();
    let digest = reg.blob("team/app", bytes(39, 1000));
    // Answers the request that sent the credentials: the first one went without.
    let challenge = format!(
        r#"Negotiate {basic}, Digest realm="https://alice:{password}@sso.example/login?ticket=t-7f3e2a", nonce="{password}""#
    );
    reg.set_fault_for_every(&digest, Fault::Challenge(challenge));
    let dist = Dist::new();
    dist.login(&reg.host(), "alice", password);
    let err = dist.fails(2, &["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    for secret in [password, &basic, "t-7f3e2a", "alice:"] {
        assert!(!err.contains(secret), "{secret}: {err}");
    }
    assert!(
        err.contains(r#"unsupported authentication challenge "Negotiate <redacted>, Digest realm=\"https://sso.example/login?…\", nonce=\"<redacted>\"""#),
        "{err}"
    );
    let url = format!("{}/v2/team/app/blobs/{digest}", reg.url());
    assert!(err.contains(&url), "{err}");
    let sent = reg.requests().into_iter().filter_map(|r| r.authorization);
    assert!(
        sent.into_iter().any(|a| a.contains(&basic)),
        "the credentials were sent"
    );
}

/// A Bearer realm that is no http(s) URL fails as a bad realm, with exit status 2: the
/// registry's token setup, which no object's fetch gets past. With credentials found,
/// nothing may say beforehand that they were kept from a plain-HTTP realm elsewhere: the
/// realm is no URL at all, and the user would look for a TLS problem that is not there.
#[test]
fn a_bad_realm_with_credentials_says_only_that_it_is_bad() {
    let (reg, digest, _) = fake_with_blob(1000);
    // A logged-in fetch challenged with this realm: its exit status and stderr.
    let fetch_with_realm = |realm: &str| {
        let challenge = format!(r#"Bearer realm="{realm}",service="fake""#);
        reg.set_fault_for_every(&digest, Fault::Challenge(challenge));
        let dist = Dist::new();
        dist.login(&reg.host(), "user", "pw");
        let out = dist.run(&["fetch", &repo(&reg), &digest], b"");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for realm in ["ftp://auth.example/token", "not a url"] {
        let (code, err) = fetch_with_realm(realm);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("bad token realm"), "{err}");
        assert!(!err.contains("plain HTTP"), "{err}");
    }
    // A realm that is plain HTTP elsewhere is still said to be (`.invalid` never exists,
    // and whether it resolves or not, the warning comes before it is asked).
    let (code, err) = fetch_with_realm("http://auth.example.invalid/token");
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("plain HTTP elsewhere"), "{err}");
    // One with user information is said to have it, over https too.
    let (code, err) = fetch_with_realm("https://me@auth.example.invalid/token");
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("user information before its host"), "{err}");
    assert!(!err.contains("plain HTTP"), "{err}");
}

/// A realm is read from the challenge's bytes as UTF-8, so it may hold what no URL dist
/// parses can: a C1 control (`\u{9b}`, a terminal's CSI), a line separator, a
/// right-to-left override that turns the rest of the line around. Neither the warning that
/// the login is kept from it nor the error naming it as the URL that failed may pass them
/// to the terminal; before, both showed the realm as it came.
#[test]
fn a_realm_s_control_characters_reach_no_message() {
    let (reg, digest, _) = fake_with_blob(1000);
    let challenge = "Bearer realm=\"http://auth.example.invalid/\u{202e}nekot\u{2028}\u{9b}31m/token\",service=\"fake\"";
    reg.set_fault_for_every(&digest, Fault::Challenge(challenge.into()));
    let dist = Dist::new();
    dist.login(&reg.host(), "user", "pw");
    let out = dist.run(&["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("plain HTTP elsewhere"), "{err}");
    assert!(
        err.contains("http://auth.example.invalid/ nekot  31m/token"),
        "{err}"
    );
    for c in ['\u{202e}', '\u{2028}', '\u{9b}'] {
        assert!(!err.contains(c), "{c:?} in {err:?}");
    }
}

/// `digest` fetched from `reg` with a login for it, `reg` challenging with the realm of
/// `tokens` written with user information, so that the login is kept from it: the error
/// (the run exits `status`) and the realm as errors show it. The token service is checked
/// to have been asked, and never with credentials.
fn refused_past_a_realm_with_a_login(
    reg: &FakeRegistry,
    digest: &str,
    tokens: &FakeRegistry,
    status: i32,
) -> (String, String) {
    let challenge = format!(
        r#"Bearer realm="http://me@{}/token",service="fake""#,
        tokens.host()
    );
    reg.set_fault_for_every(digest, Fault::Challenge(challenge));
    let dist = Dist::new();
    dist.login(&reg.host(), "alice", "pw");
    let err = dist.fails(
        status,
        &["--retries", "0", "fetch", &repo(reg), digest],
        b"",
    );
    let asked = tokens.requests();
    assert!(!asked.is_empty(), "the token service was not asked");
    assert!(asked.iter().all(|r| r.authorization.is_none()));
    (err, format!("http://{}/token", tokens.host()))
}

/// Credentials kept from a realm (its address has user information) leave the token asked
/// for anonymously; the token service's refusal of that says so, with the realm and why,
/// not that the credentials were refused: they were never sent, and logging in again
/// would not help. Before, it said `refused the credentials from …: log in again`; then
/// it named the realm twice, before the message and in it.
#[test]
fn a_refused_anonymous_token_says_the_credentials_were_kept_back() {
    let (reg, digest, _) = fake_with_blob(1000);
    let tokens = FakeRegistry::builder()
        .auth(Auth::bearer_for("alice", "pw"))
        .start();
    let (err, realm) = refused_past_a_realm_with_a_login(&reg, &digest, &tokens, 2);
    assert!(
        err.contains("gives anonymous callers no token for the repository team/app"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{realm}: {} gives anonymous callers no token",
            reg.host()
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "the credentials found for it were not sent to this token service, whose address \
             has user information"
        ),
        "{err}"
    );
    // Named before the message, the realm is not named again in it (the warning before
    // the error names it too).
    let refusal = err.lines().find(|l| l.contains("gives anonymous")).unwrap();
    assert_eq!(refusal.matches(&realm).count(), 1, "{err}");
    assert!(!err.contains("refused the credentials"), "{err}");
    assert!(!err.contains("log in again"), "{err}");
}

/// A token service that answers the anonymous token asked for, the credentials kept from
/// it, with a 403 refuses it as one with a 401 does: the refusal says the credentials were
/// kept back, and why. Before, it said only `token request answered 403 Forbidden`, with
/// the credentials found seemingly refused.
#[test]
fn a_forbidden_anonymous_token_says_the_credentials_were_kept_back() {
    let (reg, digest, _) = fake_with_blob(1000);
    let tokens = FakeRegistry::with_tokens();
    let page = Fault::Page {
        status: 403,
        content_type: "application/json",
        body: r#"{"details":"anonymous pulls are off"}"#.into(),
    };
    tokens.set_fault_for_every("/token", page);
    // Still a denial (1), as a 403 to a token is.
    let (err, realm) = refused_past_a_realm_with_a_login(&reg, &digest, &tokens, 1);
    assert!(
        err.contains(&format!(
            "{realm}: {} gives anonymous callers no token for the repository team/app \
             (token request answered 403 Forbidden: anonymous pulls are off); the credentials \
             found for it were not sent to this token service, whose address has user \
             information",
            reg.host()
        )),
        "{err}"
    );
}

/// `service=""` names no service: Docker's client leaves the parameter out then, as for a
/// challenge without one, and a token server that checks the service it is sent (Docker's
/// reference one does) refuses an empty one.
#[test]
fn an_empty_service_is_left_out_of_the_token_request() {
    let (reg, digest, data) = fake_with_blob(1000);
    let tokens = FakeRegistry::with_tokens();
    let challenge = format!(r#"Bearer realm="{}/token",service="""#, tokens.url());
    reg.push_fault(&digest, Fault::Challenge(challenge));
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), &digest]), data);
    let asked: Vec<_> = tokens
        .requests()
        .into_iter()
        .filter(|r| r.path == "/token")
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let query = asked[0].query.clone().unwrap_or_default();
    assert!(query.contains("scope="), "{query}");
    assert!(!query.contains("service"), "{query}");
}

/// Quay answers a token that does not open the repository (a private one, or one that
/// does not exist, asked anonymously) with a plain 401 challenge, without a scope or
/// `error="insufficient_scope"`, as Harbor did with a scope. A token fetched for that
/// very challenge will not widen: the second 401 is the answer, said as Docker Hub's
/// `insufficient_scope` is, instead of a third token and a bare `401 Unauthorized`.
#[test]
fn a_fresh_token_refused_without_insufficient_scope_says_what_it_means() {
    let reg = FakeRegistry::start();
    let tokens = FakeRegistry::with_tokens();
    let realm = format!("{}/token", tokens.url());
    for challenge in [
        format!(r#"Bearer realm="{realm}",service="quay.io""#),
        format!(r#"Bearer realm="{realm}",service="harbor",scope="repository:team/app:pull""#),
    ] {
        reg.set_fault_for_every("manifests/v1", Fault::Challenge(challenge.clone()));
        let asked = tokens.token_requests();
        let out = Dist::new().run(&["fetch", &repo(&reg), "v1"], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "{} gives anonymous callers no access to the repository team/app",
                reg.host()
            )),
            "{challenge}: {err}"
        );
        assert!(
            err.contains(&format!(
                "it does not exist, or it needs credentials (docker login {})",
                reg.host()
            )),
            "{err}"
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "as for insufficient_scope: {err}"
        );
        assert_eq!(
            tokens.token_requests() - asked,
            1,
            "one token is enough to tell"
        );
    }
    // A challenge that says what is wrong with the token (`invalid_token`: GitLab's for a
    // JWT it takes for expired, on a skewed clock) is not about the repository.
    let invalid = format!(r#"Bearer realm="{realm}",service="gitlab",error="invalid_token""#);
    reg.set_fault_for_every("manifests/v1", Fault::Challenge(invalid));
    let out = Dist::new().run(&["fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(!err.contains("does not exist"), "{err}");
    // The worker's objects say it each, as they do for insufficient_scope.
    let quay = Fault::Challenge(format!(r#"Bearer realm="{realm}",service="quay.io""#));
    let blob = reg.blob("team/app", b"x");
    for key in ["tags/list", "manifests/v1", &blob] {
        reg.set_fault_for_every(key, quay.clone());
    }
    let out = Dist::new().run(
        &["fetch", &repo(&reg), "-"],
        format!("{blob}\nv1\n").as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("gives anonymous callers no access to the repository team/app")
            .count(),
        2,
        "{err}"
    );
    // A token the registry stopped taking (revoked, expired early) is still renewed
    // once: tests/resilience.rs revokes every token mid-batch.
}

/// A `Docker-Content-Digest` that is no digest is refused, naming the start of it: the
/// header may be hundreds of KiB, the message stays short.
#[test]
fn a_huge_bad_digest_header_makes_a_short_message() {
    let reg = FakeRegistry::start();
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let oci = "application/vnd.oci.image.manifest.v1+json";
    reg.manifest("team/app", "v1", oci, manifest);
    reg.set_fault_for_every(
        "manifests/v1",
        Fault::Header("docker-content-digest", "x".repeat(300_000)),
    );
    let reference = format!("{}:v1", repo(&reg));
    for args in [&["fetch", &repo(&reg), "v1"][..], &["resolve", &reference]] {
        let out = Dist::new().run(args, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.len() < 2000, "{args:?}: {} bytes of stderr", err.len());
        assert!(
            err.contains("bad Docker-Content-Digest header: invalid digest \"xxx"),
            "{err}"
        );
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(out.stdout.is_empty());
    }
}

/// A `Docker-Content-Digest` in another algorithm than the one asked for is no mismatch:
/// `docker-registry` answers a `sha512:` request with its canonical `sha256:` digest. One
/// in an algorithm dist does not verify (a registry's `blake3:`, the image spec's example
/// `sha256+b64u:`) is a digest all the same, and failed every fetch of good content as a
/// "bad Docker-Content-Digest header"; a tag's content is then reported by its sha256.
#[test]
fn a_digest_header_in_another_algorithm_does_not_fail_good_content() {
    let (reg, digest, data) = fake_with_blob(100_000);
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let manifest_digest = reg.manifest("team/app", "v1", oci, manifest);
    // The manifest's own: for the tag it is checked against, for the blob it is another
    // content's, in another algorithm than the one asked for.
    let sha512 = format!(
        "sha512:{:x}",
        <sha2::Sha512 as sha2::Digest>::digest(manifest)
    );
    for (header, tag_digest) in [
        (sha512.as_str(), sha512.as_str()),
        (
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            manifest_digest.as_str(),
        ),
        (
            "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
            manifest_digest.as_str(),
        ),
    ] {
        reg.clear_faults();
        for key in [digest.as_str(), "manifests/v1"] {
            reg.set_fault_for_every(key, Fault::Header("docker-content-digest", header.into()));
        }
        let out = fetch(&reg, &digest);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{header}: {err}");
        assert!(out.stdout == data, "{header}");

        let dir = tempfile::tempdir().unwrap();
        let o = dir.path().to_str().unwrap();
        let lines = format!("{digest}\nv1\n");
        let out = Dist::new().run(&["fetch", &repo(&reg), "-", "-o", o], lines.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{header}: {err}");
        let mut reported: Vec<(String, String)> = json_lines(&out.stdout)
            .iter()
            .map(|l| (l["object"].to_string(), l["digest"].to_string()))
            .collect();
        reported.sort();
        let want = vec![
            (format!("{digest:?}"), format!("{digest:?}")),
            ("\"v1\"".to_string(), format!("{tag_digest:?}")),
        ];
        assert_eq!(reported, want, "{header}");
    }
}

/// A `Content-Encoding` dist cannot undo is named, by its first 200 characters.
#[test]
fn a_huge_unknown_coding_makes_a_short_message() {
    let (reg, digest, _) = fake_with_blob(1000);
    reg.set_fault_for_every(
        &digest,
        Fault::Header("content-encoding", "z".repeat(300_000)),
    );
    let out = fetch(&reg, &digest);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.len() < 2000, "{} bytes of stderr", err.len());
    assert!(err.contains("Content-Encoding \"zzz"), "{err}");
    assert!(err.contains("which dist does not decode"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
}

#[test]
fn worker_keeps_within_jobs_connections_and_one_token() {
    let reg = FakeRegistry::with_tokens();
    let mut input = String::new();
    for i in 0..300 {
        let d = reg.blob("team/app", bytes(1000 + i, 2000 + i as usize * 10));
        input.push_str(&d);
        input.push('\n');
    }
    let out = Dist::new().run(&["fetch", &repo(&reg), "-", "-j", "4"], input.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(parse_frames(&out.stdout).len(), 300);
    assert_eq!(reg.token_requests(), 1);
    assert!(
        reg.max_open_connections() <= 4,
        "at most jobs connections open: {}",
        reg.max_open_connections()
    );
}

/// A registry with bearer tokens from its own token server, holding `data`.
fn bearer_with(data: &[u8]) -> (FakeRegistry, String) {
    let reg = FakeRegistry::with_tokens();
    let digest = reg.blob("team/app", data);
    (reg, digest)
}

/// What a one-shot fetch of `digest` says, on one line that names the realm, when the token
/// endpoint answers every request with `status` and `body` of `content_type`; it fails.
fn token_server_answers(
    reg: &FakeRegistry,
    digest: &str,
    status: u16,
    content_type: &'static str,
    body: &str,
) -> String {
    reg.clear_faults();
    let page = Fault::Page {
        status,
        content_type,
        body: body.into(),
    };
    reg.set_fault_for_every("/token", page);
    let out = Dist::new().run(&["--retries", "0", "fetch", &repo(reg), digest], b"");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{}/token", reg.url())), "{err}");
    err
}

/// A registry, or the gateway before it, whose error echoes the request's `Authorization`
/// back (a dump of the request) or names the password: dist's message shows what it said
/// without them. Before, the password and its base64 were printed with the error.
#[test]
fn a_registry_error_that_echoes_the_credentials_does_not_print_them() {
    use base64::Engine;
    let password = "correct-horse~?battery";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    // JSON may write the `/` of its base64 as `\/`.
    assert!(basic.contains('/'), "{basic}");
    let escaped = basic.replace('/', "\\/");
    for (content_type, body) in [
        (
            "application/json",
            format!(
                r#"{{"errors":[{{"code":"DENIED","message":"request had Authorization: Basic {escaped}"}}]}}"#
            ),
        ),
        (
            "text/plain",
            format!("bad request; headers: Authorization: Basic {basic}\n"),
        ),
        (
            "application/json",
            format!(r#"{{"errors":[{{"code":"DENIED","message":"alice:{password} is locked"}}]}}"#),
        ),
    ] {
        let reg = FakeRegistry::builder()
            .auth(Auth::basic("alice", password))
            .start();
        let digest = reg.blob("team/app", bytes(37, 1000));
        let page = Fault::Page {
            status: 400,
            content_type,
            body,
        };
        reg.set_fault_for_every(&digest, page);
        let dist = Dist::new();
        dist.login(&reg.host(), "alice", password);
        let err = dist.fails(1, &["fetch", &repo(&reg), &digest], b"");
        assert!(!err.contains(password) && !err.contains(&basic), "{err}");
        assert!(
            err.contains("400 Bad Request") && err.contains("<redacted>"),
            "{err}"
        );
        let sent = reg.requests().into_iter().filter_map(|r| r.authorization);
        assert!(
            sent.into_iter().any(|a| a.contains(&basic)),
            "the credentials were sent"
        );
    }
}

/// A token server that repeats the password it refused in its error: the refusal is
/// told in its words, without it.
#[test]
fn a_token_server_error_that_echoes_the_password_does_not_print_it() {
    let password = "correct-horse-battery";
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer_for("alice", password))
        .start();
    let digest = reg.blob("team/app", bytes(38, 1000));
    let page = Fault::Page {
        status: 401,
        content_type: "application/json",
        body: format!(r#"{{"details":"no user alice with password {password}"}}"#),
    };
    reg.set_fault_for_every("/token", page);
    let dist = Dist::new();
    dist.login(&reg.host(), "alice", password);
    let err = dist.fails(2, &["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    assert!(!err.contains(password), "{err}");
    assert!(
        err.contains("no user alice with password <redacted>"),
        "{err}"
    );
}

/// A realm whose URL carries a key in its query (`?token=…`, as the challenge gave it) and
/// a token server whose error repeats the request line: the key is not printed, in the
/// message or in the log at `trace`, and what dist wrote of the request (`service`,
/// `scope`) still reads. Before, the key was printed whole in the error.
#[test]
fn a_token_server_error_that_echoes_the_realm_s_query_does_not_print_it() {
    let reg = FakeRegistry::with_tokens();
    let digest = reg.blob("team/app", bytes(40, 1000));
    let key = "realm-key-7f3a9c";
    reg.set_challenges(&[&format!(
        "Bearer realm=\"{{realm}}?token={key}\",service=\"fake-registry\",scope=\"{{scope}}\""
    )]);
    let page = Fault::Page {
        status: 500,
        content_type: "text/plain",
        body: format!(
            "no route for GET /token?token={key}&service=fake-registry&scope=repository%3Ateam%2Fapp%3Apull"
        ),
    };
    reg.set_fault_for_every("/token", page);
    let mut dist = Dist::new();
    dist.env("RUST_LOG", "trace");
    let err = dist.fails(75, &["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    assert!(!err.contains(key), "{err}");
    assert!(
        err.contains("no route for GET /token?token=<redacted>&service=fake-registry&scope="),
        "{err}"
    );
}

/// A realm that redirects its token requests elsewhere, the query kept, a signature added
/// (`?service=…&scope=…&sig=…`), and a server there whose error names the service and
/// scope: only the signature the redirect added is hidden. Before, the service and scope
/// dist wrote were hidden too, and the message read `for service <redacted>, scope
/// <redacted>`.
#[test]
fn a_redirected_token_request_s_error_keeps_what_dist_asked_for() {
    let reg = FakeRegistry::with_tokens();
    let digest = reg.blob("team/app", bytes(42, 1000));
    let elsewhere = FakeRegistry::start();
    let sig = "sig-9b1e4d7c55";
    reg.set_fault_for_every(
        "/token",
        Fault::Redirect {
            status: 307,
            location: format!(
                "{}/elsewhere/token?service=fake-registry&\
                 scope=repository%3Ateam%2Fapp%3Apull&sig={sig}",
                elsewhere.url()
            ),
        },
    );
    elsewhere.set_fault_for_every(
        "elsewhere/token",
        Fault::Page {
            status: 400,
            content_type: "text/plain",
            body: format!(
                "bad signature {sig} for service fake-registry, scope repository:team/app:pull"
            ),
        },
    );
    let out = Dist::new().run(&["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "bad signature <redacted> for service fake-registry, scope repository:team/app:pull"
        ),
        "{err}"
    );
    assert!(!err.contains(sig), "{err}");
}

/// A realm with user information (`http://user:password@host/token`), which HTTP sends
/// nowhere and credentials are withheld from: asked without it, it is in no log line,
/// hyper-util's included, whose connection pool named the realm's authority at `debug`.
#[test]
fn a_realm_s_user_information_reaches_no_log() {
    let reg = FakeRegistry::with_tokens();
    let data = bytes(41, 1000);
    let digest = reg.blob("team/app", &data);
    let key = "realm-pw-5e8b1d";
    reg.set_challenges(&[&format!(
        "Bearer realm=\"http://tok:{key}@{}/token\",service=\"fake-registry\",scope=\"{{scope}}\"",
        reg.host()
    )]);
    let mut dist = Dist::new();
    dist.env("RUST_LOG", "debug");
    let out = dist.run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, data);
    assert!(reg.token_requests() > 0);
    assert!(!err.contains(key), "{err}");
}

/// A realm that redirects its callers to another host, which then asks them to
/// authenticate, refused a request that carried no credentials: they go to the realm's
/// origin only. Telling the user to log in again, as for the realm's own 401, would send
/// them round in circles; the message names the redirect instead.
#[test]
fn a_realm_redirect_to_a_host_that_answers_401_is_no_refusal_of_the_credentials() {
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer_for("alice", "s3cret"))
        .start();
    let digest = reg.blob("team/app", bytes(36, 4000));
    let elsewhere = Recorder::refusing(http::StatusCode::UNAUTHORIZED);
    reg.set_fault_for_every(
        "/token",
        Fault::Redirect {
            status: 307,
            location: format!("{}/oauth/token", elsewhere.url()),
        },
    );
    let dist = Dist::new();
    dist.login(&reg.host(), "alice", "s3cret");
    let out = dist.run(&["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8(out.stderr).unwrap();
    // The token service's setup, which every object meets: 2, as at the worker's check.
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the token request was redirected to {}/oauth/token, which answered 401 Unauthorized",
            elsewhere.url()
        )),
        "{err}"
    );
    assert!(!err.contains("log in again"), "{err}");
    let asked = elsewhere.requests();
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|r| r.authorization.is_none()), "{asked:?}");
}

/// A token server's JSON refusal is shown by its messages, as a registry's is: the OCI
/// `errors` a registry's own token service sends, OAuth2's `error` and
/// `error_description`, Docker Hub's `details`. A body that is no JSON is shown as it is.
#[test]
fn a_token_server_s_json_refusal_shows_its_words() {
    let (reg, digest) = bearer_with(&bytes(34, 4000));
    let refused = |status, content_type, body: &str| {
        let err = token_server_answers(&reg, &digest, status, content_type, body);
        assert!(!err.contains('{'), "{err}");
        err
    };
    let json = "application/json";

    let err = refused(
        401,
        json,
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
    );
    let said = "token request answered 401 Unauthorized: UNAUTHORIZED: authentication required";
    assert!(err.contains(said), "{err}");

    // Past the first 512 bytes, where a JSON body used to be cut and shown raw.
    let long = format!(
        r#"{{"errors":[{{"code":"DENIED","detail":"{}","message":"go away"}}]}}"#,
        "x".repeat(2000)
    );
    let err = refused(403, json, &long);
    assert!(
        err.contains("token request answered 403 Forbidden: DENIED: go away"),
        "{err}"
    );

    let oauth = r#"{"error":"invalid_scope","error_description":"no such scope"}"#;
    let err = refused(400, json, oauth);
    assert!(
        err.contains("token request answered 400 Bad Request: invalid_scope: no such scope"),
        "{err}"
    );

    let hub = r#"{"details":"incorrect username or password"}"#;
    let err = refused(401, "text/plain", hub);
    assert!(
        err.contains("401 Unauthorized: incorrect username or password"),
        "{err}"
    );

    reg.clear_faults();
    let page = Fault::Page {
        status: 403,
        content_type: "text/plain",
        body: "not\r\nfor \x1b[31myou".into(),
    };
    reg.set_fault_for_every("/token", page);
    let out = Dist::new().run(&["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("token request answered 403 Forbidden: not for [31myou"),
        "{err:?}"
    );
}

/// A token endpoint answering 200 with no JSON (a captive portal's or a single sign-on
/// page) says what came instead: its type, and an HTML page's title. One that is JSON
/// broken by a trailing comma, or a bare token, still holds the token, and is not shown.
#[test]
fn a_token_reply_that_is_no_json_says_what_came_instead() {
    let (reg, digest) = bearer_with(&bytes(35, 4000));
    let answered =
        |content_type, body: &str| token_server_answers(&reg, &digest, 200, content_type, body);

    let portal = "<!DOCTYPE html>\n<html><head><title>Corp Wi-Fi |\n sign in to continue</title>\
        </head><body><form action=\"/login\"><input name=\"user\"></form></body></html>";
    let err = answered("text/html; charset=utf-8", portal);
    assert!(
        err.contains(
            "token response is an HTML page, not JSON (Content-Type text/html; charset=utf-8): \
             Corp Wi-Fi | sign in to continue"
        ),
        "{err}"
    );
    assert!(!err.contains('<'), "{err}");
    // A page served 200 in the token service's place (a login, a portal, a maintenance
    // page: dist cannot tell them apart) lasts past any retry: 2, as README says; the same
    // page served 503 is an outage for the moment: 75.
    for (status, code) in [(200, 2), (503, 75)] {
        reg.clear_faults();
        let page = Fault::Page {
            status,
            content_type: "text/html",
            body: portal.into(),
        };
        reg.set_fault_for_every("/token", page);
        let out = Dist::new().run(&["--retries", "0", "fetch", &repo(&reg), &digest], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{status}: {err}");
    }

    let secret = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ0ZXN0ZXIifQ.c2lnbmF0dXJl";
    for held in [
        format!(r#"{{"token":"{secret}","expires_in":300,}}"#),
        format!(r#""{secret}""#),
        secret.to_string(),
        format!("access_token={secret}&token_type=bearer"),
        format!("token: {secret}\nexpires: 300"),
    ] {
        let err = answered("application/json", &held);
        assert!(!err.contains("c2lnbmF0dXJl"), "{held}: {err}");
        assert!(err.contains("not shown, as it may hold a token"), "{err}");
        assert!(err.contains("Content-Type application/json"), "{err}");
    }

    // A single sign-on service the token endpoint sends its callers to: named, without
    // the query its login state is in.
    let sso = Recorder::serving(portal);
    reg.clear_faults();
    let location = format!("{}/login?state=s3cret-state", sso.url());
    reg.set_fault_for_every(
        "/token",
        Fault::Redirect {
            status: 302,
            location,
        },
    );
    let out = Dist::new().run(&["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8(out.stderr).unwrap();
    let after = format!("(answered by {}/login?…, after a redirect)", sso.url());
    assert!(err.contains("Corp Wi-Fi") && err.contains(&after), "{err}");
    assert!(!err.contains("s3cret-state"), "{err}");

    let err = answered("text/plain", "Access to this site is blocked by policy\r\n");
    assert!(
        err.contains("token response is not JSON (Content-Type text/plain): Access to this site is blocked by policy"),
        "{err}"
    );
}

/// The token server fails as a registry does (a 503 or 502, a 429, a connection closed
/// unanswered) and is retried as one, on the request's budget; one that keeps failing
/// ends the object with an error that names it.
#[test]
fn token_requests_are_retried_like_any_other() {
    let data = bytes(31, 4000);
    let bearer = || bearer_with(&data);
    let dist = Dist::new();
    for fault in [
        Fault::Status(503),
        Fault::Status(502),
        Fault::StatusWithRetryAfter(429, "0".into()),
        Fault::CloseUnanswered,
    ] {
        let (reg, digest) = bearer();
        reg.push_fault("/token", fault.clone());
        let out = dist.run(&["fetch", &repo(&reg), &digest], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{fault:?}: {err}");
        assert!(out.stdout == data, "{fault:?}");
        assert_eq!(reg.token_requests(), 2, "{fault:?}");
    }

    let (reg, digest) = bearer();
    reg.set_fault_for_every("/token", Fault::Status(503));
    let err = dist.fails(75, &["fetch", "--retries", "2", &repo(&reg), &digest], b"");
    assert!(
        err.contains("/token") && err.contains("503"),
        "names the token server and what it said: {err}"
    );
    assert_eq!(reg.token_requests(), 3, "one request and two retries");
}

/// Waits (up to `limit`) until the registry has chosen its answer to the first token
/// request, so that faults set for `/token` from now on fall on later requests only:
/// the request counter alone moves before the answer is chosen. Returns when the wait
/// began.
fn first_token_answered(reg: &FakeRegistry, limit: Duration) -> std::time::Instant {
    support::wait::within(limit, "a token asked for", || {
        reg.requests().iter().any(|r| r.path == "/token")
    })
}

/// A token's lifetime for the tests of its early renewal: 20 s, the shortest renewed the
/// full 5 s before its end (a shorter one is renewed a quarter of its life early), so a
/// request sent [`RENEWAL_DUE`] after the token came finds it due and still valid even
/// when a loaded machine adds up to nearly 5 s on the way. With a 6 s token that slack
/// was 1 s, and about one run in 14 under load found the token ended instead.
const RENEWED_TOKEN_LIFE: Duration = Duration::from_secs(20);

/// How long a stalled object holds the one job: just past the token's renewal time (15 s
/// after it came), which the stall alone guarantees, as it begins after the token came.
const RENEWAL_DUE: Duration = Duration::from_millis(15_200);

/// A token is renewed a little before it ends (here 5 s before its 20 s end); a renewal
/// that fails then leaves the current token in use while it lasts. Before, the request
/// that found the token due failed with the token server's 503 (with `--retries 0`, the
/// object), though its token still opened the repository.
#[test]
fn a_failed_early_renewal_keeps_the_token_that_still_works() {
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer(RENEWED_TOKEN_LIFE))
        .start();
    let first = reg.blob("team/app", bytes(34, 1000));
    let second = reg.blob("team/app", bytes(35, 1000));
    // Holds the one job until the token is due for renewal, not past its end.
    reg.push_fault(&first, Fault::StallAfter(10, RENEWAL_DUE));
    let input = format!("{first}\n{second}\n");
    let args = ["--retries", "0", "fetch", &repo(&reg), "-", "-j", "1"];
    let child = Dist::new().spawn(&args, input.as_bytes());
    first_token_answered(&reg, Duration::from_secs(30));
    reg.set_fault_for_every("/token", Fault::Status(503));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let frames = parse_frames(&out.stdout);
    assert_eq!(frames.len(), 2, "{err}");
    assert_eq!(reg.token_requests(), 2, "the renewal was tried: {err}");
}

/// A token server's 429 with `Retry-After` holds the token requests (the renewal is asked
/// again after the 50 s asked), not the registry, whose requests carrying the token that
/// still works go on at once. Here the token endpoint is on the registry's own origin
/// (as GitLab's and Harbor's are), so not even a pause by origin would be the token
/// server's to set: a token server elsewhere (Docker Hub's `auth.docker.io`) holds less.
#[test]
fn a_token_server_s_retry_after_does_not_hold_the_registry() {
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer(RENEWED_TOKEN_LIFE))
        .start();
    let blobs = [36, 37, 38].map(|n| reg.blob("team/app", bytes(n, 1000)));
    // Holds the one job until the token is due for renewal, not past its end.
    reg.push_fault(&blobs[0], Fault::StallAfter(10, RENEWAL_DUE));
    let input = blobs.join("\n") + "\n";
    let args = ["fetch", &repo(&reg), "-", "-j", "1"];
    let child = Dist::new().spawn(&args, input.as_bytes());
    let started = first_token_answered(&reg, Duration::from_secs(30));
    // 50 s, within the 60 s dist is willing to wait: a registry held for it would end
    // the run past 65 s, 25 s beyond the bound below, which a run not held meets with
    // as much to spare.
    reg.set_fault_for_every("/token", Fault::StatusWithRetryAfter(429, "50".into()));
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(parse_frames(&out.stdout).len(), 3, "{err}");
    assert!(took < Duration::from_secs(40), "held for {took:?}: {err}");
    assert_eq!(
        reg.token_requests(),
        2,
        "one renewal, then its backoff: {err}"
    );
    for digest in &blobs[1..] {
        assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 1, "{err}");
    }
}

/// A batch of 480 blobs of 1000 bytes (seeded from `seed`), each served a hundredth of
/// `lifetime` late, on 4 jobs under tokens that last `lifetime`: 1.2 lifetimes of work,
/// so the first token is renewed early (a quarter of its life before its end) midway.
/// Returns once the first token was asked for.
fn renewing_batch(seed: u64, lifetime: Duration) -> (FakeRegistry, Running) {
    let reg = FakeRegistry::builder().auth(Auth::bearer(lifetime)).start();
    let mut input = String::new();
    for i in 0..480 {
        let d = reg.blob("team/app", bytes(seed + i, 1000));
        reg.set_fault_for_every(&d, Fault::SlowHead(lifetime / 100));
        input.push_str(&d);
        input.push('\n');
    }
    let child = Dist::new().spawn(&["fetch", &repo(&reg), "-", "-j", "4"], input.as_bytes());
    first_token_answered(&reg, Duration::from_secs(3));
    (reg, child)
}

/// A token due for early renewal still opens the repository: while one task waits for
/// the renewal (here held by the token server until the others were seen going on), the
/// others go on sending it. Before, every task queued behind the renewal until the token
/// reply came, and the wait here would fail.
#[test]
fn an_early_renewal_holds_up_only_the_task_that_asks() {
    // Renewed 2.5 s before its 10 s end. The renewal is held until seven objects were
    // asked for meanwhile, not for a fixed 500 ms: a dist held up that long (a loaded
    // machine) asked for none in it. Past the token's end, the tasks wait for the
    // renewal: the 2.5 s, less the 250 ms the seven take, are what a loaded machine may
    // hold dist up for (with a 4 s token, renewed 1 s early, a hold of 1.2 s failed).
    let (reg, child) = renewing_batch(600, Duration::from_secs(10));
    let renewal_held = Gate::default();
    let held = Fault::HeldHead(
        renewal_held.clone(),
        Box::new(Fault::SlowHead(Duration::ZERO)),
    );
    reg.push_fault("/token", held);
    // Its output is read meanwhile: a full pipe would hold it up.
    let out = std::thread::spawn(move || child.wait_with_output().unwrap());
    let blob = |r: &&support::fake::RequestRecord| r.path.contains("/blobs/");
    // Seven: the requests already on their way when the renewal began are at most the
    // three other jobs', so four at least were sent with the old token while it waited.
    support::wait::until("7 objects asked for while the renewal is held", || {
        let log = reg.requests();
        let mut tokens = (0..log.len()).filter(|&i| log[i].path == "/token");
        tokens
            .nth(1)
            .is_some_and(|renewal| log[renewal..].iter().filter(blob).count() >= 7)
    });
    renewal_held.open();
    let out = out.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(parse_frames(&out.stdout).len(), 480, "{err}");

    let log = reg.requests();
    let first = log.iter().find(blob).unwrap().authorization.clone();
    let tokens: Vec<usize> = (0..log.len())
        .filter(|&i| log[i].path == "/token")
        .collect();
    let renewal = *tokens.get(1).expect("a renewal");
    let renewed = renewal
        + log[renewal..]
            .iter()
            .position(|r| blob(&r) && r.authorization != first)
            .expect("a request with the renewed token");
    // One token request for all the tasks that found the token due. (A run slowed down
    // enough to reach the second token's renewal may ask again later: not counted.)
    let during = tokens
        .iter()
        .filter(|&&i| renewal < i && i < renewed)
        .count();
    assert_eq!(during, 0, "token requests during the renewal: {err}");
}

/// A token server that fails the early renewal is asked again after the retry policy's
/// backoff, by one task, while the current token carries the requests. Before, each
/// request that found the token due asked again at once: about one token request per
/// object until the token ended.
#[test]
fn a_failing_early_renewal_is_retried_after_a_backoff() {
    let (reg, child) = renewing_batch(1600, Duration::from_secs(4));
    let issued = std::time::Instant::now();
    reg.set_fault_for_every("/token", Fault::Status(503));
    // Its output is read meanwhile: a full pipe would hold it up.
    let out = std::thread::spawn(move || child.wait_with_output().unwrap());
    // Due for renewal at 3 s, ended at 4 s; then the token server recovers, and the
    // objects left are fetched with a new token.
    std::thread::sleep(Duration::from_millis(4300).saturating_sub(issued.elapsed()));
    reg.clear_faults();
    let out = out.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(parse_frames(&out.stdout).len(), 480, "{err}");

    let log = reg.requests();
    let first = log
        .iter()
        .find(|r| r.auth_scheme() == Some("Bearer"))
        .unwrap();
    let last_carried = log
        .iter()
        .rposition(|r| r.authorization == first.authorization && r.status == 200)
        .unwrap();
    let asked = log[..last_carried]
        .iter()
        .filter(|r| r.path == "/token")
        .count();
    // The first token, then a renewal at 3 s and its retries 100-200 ms, 300-600 ms and
    // 700-1400 ms later: three or four within the token's last second. Two when the
    // machine is loaded enough (a load average of 13-16) that the token's last request
    // is sent before the first retry: what the bound is for is the one request per
    // object that each task's own renewal made, past 5.
    assert!(
        (2..=5).contains(&asked),
        "{asked} token requests while the token carried the requests"
    );
}

/// A registry that answers every request with 401 and a fresh challenge, whatever token it
/// is sent (one that does not take its token server's tokens), is asked a bounded number of
/// times, and the message says that tokens were sent and refused: the registry's own words
/// ("authentication required") read like a missing login.
#[test]
fn a_registry_refusing_every_fresh_token_is_given_up_on_and_says_so() {
    let (reg, digest) = bearer_with(&bytes(36, 1000));
    // A bare challenge to a fresh token reads as no access to the repository (Quay's
    // way); one that calls the token invalid is about the tokens.
    let invalid = format!(
        r#"Bearer realm="{}/token",service="fake",error="invalid_token""#,
        reg.url()
    );
    reg.set_fault_for_every(&digest, Fault::Challenge(invalid));
    let err = Dist::new().fails(2, &["fetch", &repo(&reg), &digest], b"");
    assert!(
        err.contains("answered 401 Unauthorized")
            && err.contains("it refused 2 tokens in a row, each just issued by its token server"),
        "{err}"
    );
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 3, "{err}");
    assert_eq!(reg.token_requests(), 2, "{err}");
}

/// A token request lost with its kept-alive connection (here the registry's own, which
/// answered the first 401) is sent again at once, as any request is, without spending a
/// retry: before, with `--retries 0`, it failed the object.
#[test]
fn a_token_request_lost_with_its_connection_is_sent_again() {
    let (reg, digest) = bearer_with(&bytes(37, 1000));
    reg.push_fault("/token", Fault::CloseUnanswered);
    let out = Dist::new().run(&["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(reg.token_requests(), 2, "lost, sent again");

    reg.set_fault_for_every("/token", Fault::CloseUnanswered);
    let out = Dist::new().run(&["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    // Lost on the kept-alive connection that answered the 401, which does not count, then
    // on a new one, and sent again once more.
    assert_eq!(
        reg.token_requests(),
        5,
        "a kept-alive connection passed over, then once per request: {err}"
    );
}

/// A token server's `Retry-After` is heeded as a registry's is: waited for, or, past
/// 60 s, the object fails at once saying so. Before, the backoff's 200 ms and 400 ms went
/// by instead, and "come back in 2 minutes" was asked five more times within 6 s.
#[test]
fn a_token_server_s_retry_after_is_heeded() {
    let data = bytes(32, 4000);
    let bearer = || bearer_with(&data);
    let dist = Dist::new();

    let (reg, digest) = bearer();
    for _ in 0..2 {
        reg.push_fault("/token", Fault::StatusWithRetryAfter(429, "1".into()));
    }
    let started = std::time::Instant::now();
    let out = dist.run(&["fetch", "--retries", "2", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout == data);
    assert_eq!(reg.token_requests(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited {:?}, not the 1 s asked twice",
        started.elapsed()
    );

    let (reg, digest) = bearer();
    reg.set_fault_for_every("/token", Fault::StatusWithRetryAfter(429, "120".into()));
    let err = dist.fails(75, &["fetch", &repo(&reg), &digest], b"");
    assert!(
        err.contains("/token") && err.contains("asks to be retried in 2m"),
        "{err}"
    );
    assert_eq!(reg.token_requests(), 1, "{err}");
}

/// A response with more header fields than hyper's default 100 (a chain of CDNs and
/// proxies adds its own) is taken; past dist's limit it fails at once, saying why, rather
/// than being retried as a broken connection. The larger limit costs hyper 64 KiB to
/// allocate and fill per response, so an origin gets it only once it sent more than 100:
/// that one request goes twice, and later ones to the origin once.
#[test]
fn many_response_headers_are_taken_and_too_many_are_not_retried() {
    let (reg, digest, data) = fake_with_blob(5000);
    reg.set_fault_for_every(&digest, Fault::ManyHeaders(150));
    assert_eq!(Dist::new().ok(&["fetch", &repo(&reg), &digest]), data);
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 2);

    let reg = FakeRegistry::start();
    let blobs: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            let data = bytes(100 + i, 3000 + i as usize);
            (reg.blob("team/app", &data), data)
        })
        .collect();
    for (digest, _) in &blobs {
        reg.set_fault_for_every(digest, Fault::ManyHeaders(150));
    }
    let dir = tempfile::tempdir().unwrap();
    let input: String = blobs.iter().map(|(d, _)| format!("{d}\n")).collect();
    let out = Dist::new().run(
        &[
            "fetch",
            &repo(&reg),
            "-",
            "-j",
            "1",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        input.as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for (digest, data) in &blobs {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let stored = std::fs::read(dir.path().join("blobs/sha256").join(hex)).unwrap();
        assert!(stored == *data, "{digest}");
    }
    let asked: usize = blobs.iter().map(|(d, _)| reg.requests_for(d)).sum();
    assert_eq!(asked, blobs.len() + 1, "{err}");

    let (reg, digest, _) = fake_with_blob(5000);
    reg.set_fault_for_every(&digest, Fault::ManyHeaders(1200));
    let out = fetch(&reg, &digest);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the response's head is too large (more than 1000 header fields"),
        "{err}"
    );
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 2, "{err}");
}

/// A head of few fields but many bytes (a `WWW-Authenticate` of 2 MB) past hyper's
/// buffer for one fails naming that limit, as the count of fields is named: "too many
/// bytes" left the user to guess how many are allowed.
#[test]
fn a_head_too_long_names_its_limit_in_bytes() {
    let (reg, digest, _) = fake_with_blob(5000);
    reg.set_fault_for_every(&digest, Fault::Header("x-filler", "x".repeat(2_000_000)));
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(err.contains("more than 417792 bytes"), "{err}");
    assert_eq!(reg.requests_for(&format!("blobs/{digest}")), 2, "{err}");
}

/// ECR refuses a password past its 12 hours with `403 DENIED: Your authorization token
/// has expired`, not a 401. From a file, no fresh one will come: that is credentials
/// refused, as a 401 is, so the worker stops at its check (status 2) with one message
/// saying to log in again, instead of taking the 403 for a listing ECR may refuse and
/// failing every object with it.
#[test]
fn an_expired_ecr_password_is_refused_credentials() {
    let reg = FakeRegistry::builder()
        .auth(Auth::basic("AWS", "fresh"))
        .start();
    reg.forbid_stale_basic();
    let blobs: Vec<String> = (0..3u8).map(|i| reg.blob("team/app", [i; 100])).collect();
    let dist = Dist::new();
    dist.login(&reg.host(), "AWS", "stale");
    let input = blobs.join("\n") + "\n";
    for (args, stdin) in [
        (vec!["fetch", &repo(&reg), "-"], input.as_bytes()),
        (vec!["fetch", &repo(&reg), &blobs[0]], &b""[..]),
    ] {
        let err = dist.fails(2, &args, stdin);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("Your authorization token has expired"),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "refused the credentials from {}",
                dist.config_dir().join("config.json").display()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!("log in again (docker login {})", reg.host())),
            "{err}"
        );
    }
    // The one-shot's object was asked for; the batch's were not.
    assert_eq!(
        reg.requests_for(&blobs[0]),
        2,
        "unauthenticated, then the 403"
    );
    assert_eq!(reg.requests_for(&blobs[1]), 0);
}

/// GHCR's token service answers an anonymous request for a repository that is private,
/// or that does not exist (a typo), with 401: the message names both causes, as for
/// Docker Hub's `insufficient_scope`, not only "log in first", which sends whoever
/// mistyped the name to log in for a repository that is not there.
#[test]
fn an_anonymous_token_refused_names_the_repository_and_both_causes() {
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer_for("user", "pw"))
        .start();
    let err = Dist::new().fails(
        2,
        &["fetch", &format!("{}/team/typo", reg.host()), "v1"],
        b"",
    );
    assert!(
        err.contains(&format!(
            "{} gives anonymous callers no token for the repository team/typo",
            reg.host()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "it needs credentials (docker login {}), or it does not exist",
            reg.host()
        )),
        "{err}"
    );
}

/// A manifest served as `application/json` or `text/plain` (a static mirror, a registry that
/// labels nothing) is reported as what it declares itself to be, in the frame header and in
/// the JSON line alike: the label says nothing, and a descriptor line's own type was lost
/// to it too. A label in another case is the type it names, reported in its registered
/// spelling: media types compare case-insensitively.
#[test]
fn a_manifest_served_under_a_generic_type_reports_its_own() {
    const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
    let reg = FakeRegistry::start();
    let docker = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":2}},"layers":[]}}"#,
        sha256(b"{}")
    );
    // An OCI manifest may leave its `mediaType` out; its shape says what it is.
    let unlabelled = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[]}}"#,
        sha256(b"{}")
    );
    reg.manifest("team/app", "v1", "application/json", &docker);
    let d2 = reg.manifest("team/app", "v2", "text/plain; charset=utf-8", &unlabelled);
    reg.manifest(
        "team/app",
        "v3",
        "Application/Vnd.Docker.Distribution.Manifest.V2+JSON",
        &docker,
    );
    let descriptor = format!(
        r#"{{"mediaType":"{OCI}","digest":"{d2}","size":{}}}"#,
        unlabelled.len()
    );
    let input = format!("v1\nv2\nv3\n{descriptor}\n");
    let dist = Dist::new();
    let out = dist.ok_fed(&["fetch", &repo(&reg), "-", "--ordered"], input.as_bytes());
    let types = frame_media_types(&out);
    assert_eq!(types, [DOCKER, OCI, DOCKER, OCI]);
    let dir = tempfile::tempdir().unwrap();
    let out = dist.ok_fed(
        &[
            "fetch",
            &repo(&reg),
            "-",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        b"v1\n",
    );
    assert_eq!(json_lines(&out)[0]["mediaType"], DOCKER);
}

/// A signed schema 1 manifest served as `text/plain` (registry.access.redhat.com labelled
/// its manifests so; containerd reads that label as schema 1) slips past the check on
/// `Content-Type`, and its `Docker-Content-Digest`, the payload's without its signatures,
/// never matches the bytes served. That is said as schema 1, as a labelled one is, not as
/// a digest mismatch that reads like corruption and is fetched again.
#[test]
fn an_unlabelled_schema1_manifest_is_refused_as_schema1_not_as_corrupt() {
    let reg = FakeRegistry::start();
    let payload = r#"{"schemaVersion":1,"name":"team/app","tag":"v1","architecture":"amd64","fsLayers":[],"history":[]"#;
    let signed = format!(
        r#"{payload},"signatures":[{{"header":{{"alg":"ES256"}},"signature":"c2ln","protected":"cHJv"}}]}}"#
    );
    reg.manifest("team/app", "v1", "text/plain", &signed);
    let payload_digest = sha256(format!("{payload}}}").as_bytes());
    reg.set_fault_for_every(
        "manifests/v1",
        Fault::Header("docker-content-digest", payload_digest),
    );
    let dist = Dist::new();
    let out = dist.run(&["fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains("signed Docker schema 1 manifest, served as text/plain")
            && !err.contains("digest mismatch"),
        "{err}"
    );
    assert_eq!(
        reg.requests_for("manifests/v1"),
        1,
        "fetched again as corrupt"
    );
    let out = dist.run(&["fetch", &repo(&reg), "-"], b"v1\n");
    let frames = String::from_utf8_lossy(&out.stdout);
    assert!(
        frames.starts_with("v1 error ") && frames.contains("schema 1"),
        "{frames}"
    );
}

/// A manifest served under tag `v1` with no `Docker-Content-Digest`, as some registries and
/// static mirrors answer a tag: its body cannot be resumed with `Range` (the tag may have
/// moved meanwhile), so a break is asked for again from the start. Every answer lacks the
/// header; `faults` come first, each without it too.
fn tag_without_digest(faults: &[Fault]) -> (FakeRegistry, Vec<u8>) {
    let reg = FakeRegistry::start();
    let padding = "x".repeat(20_000);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[],"annotations":{{"pad":"{padding}"}}}}"#
    );
    let media_type = "application/vnd.oci.image.manifest.v1+json";
    reg.manifest("team/app", "v1", media_type, manifest.as_bytes());
    let unannounced =
        |fault: Option<Fault>| Fault::Without("docker-content-digest", fault.map(Box::new));
    reg.set_fault_for_every("manifests/v1", unannounced(None));
    for fault in faults {
        reg.push_fault("manifests/v1", unannounced(Some(fault.clone())));
    }
    (reg, manifest.into_bytes())
}

/// A tag announced without a digest whose connection drops before a byte of its body
/// arrived is asked for again, as any dropped connection is. Before, it failed at once.
#[test]
fn a_tag_without_a_digest_is_asked_again_when_its_body_breaks_before_a_byte() {
    let (reg, manifest) = tag_without_digest(&[Fault::DropAfter(0), Fault::DropAfter(0)]);
    let out = Dist::new().run(&["fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout == manifest, "{err}");
    assert_eq!(reg.requests_for("manifests/v1"), 3, "{err}");

    // On the retries' budget: `--retries 1` asks twice, and says so.
    let (reg, _) = tag_without_digest(&[const { Fault::DropAfter(0) }; 3]);
    let out = Dist::new().run(&["--retries", "1", "fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(reg.requests_for("manifests/v1"), 2, "{err}");
    assert!(err.contains("(gave up after 2 attempts)"), "{err}");
}

/// ... and one whose body broke after some of it arrived is fetched again whole, wherever
/// nothing of it left the process yet: a one-shot fetch (a manifest is held back until it
/// verified), the worker's frames and its store. Before, each failed at once.
#[test]
fn a_tag_without_a_digest_is_fetched_again_when_its_body_breaks_part_way() {
    let faults = [Fault::DropAfter(5_000), Fault::DropAfter(12_000)];
    let (reg, manifest) = tag_without_digest(&faults);
    let out = Dist::new().run(&["fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout == manifest, "{err}");
    assert_eq!(reg.requests_for("manifests/v1"), 3, "{err}");

    let (reg, manifest) = tag_without_digest(&faults);
    let out = Dist::new().run(&["fetch", &repo(&reg), "-"], b"v1\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let frames = parse_frames(&out.stdout);
    assert!(frames[0].result.as_ref().unwrap().2 == manifest, "{err}");
    assert_eq!(reg.requests_for("manifests/v1"), 3, "{err}");

    let (reg, manifest) = tag_without_digest(&faults);
    let dir = tempfile::tempdir().unwrap();
    let out = Dist::new().run(
        &[
            "fetch",
            &repo(&reg),
            "-",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        b"v1\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let digest = sha256(&manifest);
    support::cli::assert_stored_alone(dir.path(), &digest, &manifest);
    assert_eq!(reg.requests_for("manifests/v1"), 3, "{err}");

    // `resolve` (and `pull`) read such a tag's manifest into memory to describe it.
    let (reg, manifest) = tag_without_digest(&faults);
    let reference = format!("{}:v1", repo(&reg));
    let out = Dist::new().run(&["resolve", &reference], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(described["digest"], sha256(&manifest).as_str(), "{err}");
}

/// A tag without a digest whose body breaks every time is fetched at most `--retries` + 1
/// times, and the error says so.
#[test]
fn a_tag_without_a_digest_that_always_breaks_runs_out_of_retries() {
    let (reg, _) = tag_without_digest(&[]);
    reg.set_fault_for_every(
        "manifests/v1",
        Fault::Without(
            "docker-content-digest",
            Some(Box::new(Fault::DropAfter(5_000))),
        ),
    );
    let out = Dist::new().run(&["--retries", "2", "fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout.is_empty(), "{} bytes written", out.stdout.len());
    assert_eq!(reg.requests_for("manifests/v1"), 3, "{err}");
    assert!(err.contains("(gave up after 3 attempts)"), "{err}");

    // With no retries, no second request.
    let (reg, _) = tag_without_digest(&[Fault::DropAfter(5_000)]);
    let out = Dist::new().run(&["--retries", "0", "fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(reg.requests_for("manifests/v1"), 1, "{err}");
}

/// A coded answer (a proxy that compresses) whose connection drops after part of it went
/// to stdout: what went out cannot be taken back, so the content is asked for again whole
/// and the decoded bytes already written are dropped, as a plain body is resumed.
#[test]
fn a_coded_body_that_breaks_after_stdout_started_still_arrives() {
    let (reg, digest, data) = fake_with_blob(3 << 20);
    reg.push_fault(
        &digest,
        Fault::CodedAnd("gzip", Box::new(Fault::DropAfter(2 << 20))),
    );
    reg.set_fault_for_every(&digest, Fault::Coded("gzip"));
    let out = fetch(&reg, &digest);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout == data, "{err}");
    assert_eq!(blob_ranges(&reg), [None, None], "{err}");
}

/// Every request names the client, `dist/<version>`, as curl and containerd name
/// themselves: token requests as well as the registry's.
#[test]
fn every_request_names_dist_and_its_version() {
    let reg = FakeRegistry::with_tokens();
    let data = bytes(9, 5000);
    let digest = reg.blob("team/app", &data);
    let out = fetch(&reg, &digest);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == data);
    let want = format!("dist/{}", env!("CARGO_PKG_VERSION"));
    let requests = reg.requests();
    assert!(requests.iter().any(|r| r.path.starts_with("/token")));
    for r in requests {
        let ua = r.headers.get("user-agent").map(|v| v.to_str().unwrap());
        assert_eq!(ua, Some(want.as_str()), "{} {}", r.method, r.path);
    }
}

/// A server's `Location` with a login in it (`u:p@`, or a password with a `/` pasted
/// unencoded, its start read as a port) is not followed, and neither the refusal, the
/// `-v` log (text or JSON) nor the report shows any of the login: the second was
/// followed, its host `u` looked up, and the log's "redirect" line showed it whole.
#[test]
fn a_redirect_to_a_login_is_shown_without_it_in_errors_logs_and_reports() {
    let (reg, digest, _) = fake_with_blob(1000);
    for location in [
        "http://u:1234/s3cret@cdn.example/x",
        "http://u:1234/s3cret@cdn/x",
        "http://u:s3cret@cdn.example/x",
    ] {
        reg.set_fault_for_every(
            &digest,
            Fault::Redirect {
                status: 307,
                location: location.to_string(),
            },
        );
        for format in ["text", "json"] {
            let dir = tempfile::tempdir().unwrap();
            let report = dir.path().join("report.jsonl");
            let out = Dist::new().run(
                &[
                    "-v",
                    "--log-format",
                    format,
                    "fetch",
                    &repo(&reg),
                    "-",
                    "-o",
                    dir.path().to_str().unwrap(),
                    "--report",
                    report.to_str().unwrap(),
                ],
                format!("{digest}\n").as_bytes(),
            );
            let err = String::from_utf8_lossy(&out.stderr);
            let report = std::fs::read_to_string(&report).unwrap();
            let all = format!("{err}\n{report}\n{}", String::from_utf8_lossy(&out.stdout));
            assert_eq!(out.status.code(), Some(1), "{location}: {all}");
            assert!(all.contains("carries credentials"), "{location}: {all}");
            assert!(all.contains("/x"), "{location}: {all}");
            for secret in ["s3cret", "u:"] {
                assert!(!all.contains(secret), "{location} ({format}): {all}");
            }
        }
    }
}

/// A redirect to `https://` on a server that speaks only plain HTTP (a blob store the
/// registry is misconfigured to name with the wrong scheme) is said to be the redirect's
/// target. It was told to use `--plain-http` or an `http://` locator, which change only
/// how the registry itself is asked: the target's scheme is the registry's to choose, and
/// with `--plain-http` given already the advice read as if it had not been.
#[test]
fn a_redirect_to_https_on_a_plain_http_server_is_said_to_be_the_targets() {
    let reg = FakeRegistry::start();
    let data = bytes(41, 4000);
    let digest = reg.blob("team/app", &data);
    let store = Recorder::serving(&data);
    reg.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("https://{}/blob", store.host()),
        },
    );
    for plain in [false, true] {
        let mut args = vec!["fetch", "--retries", "0"];
        if plain {
            args.push("--plain-http");
        }
        let locator = repo(&reg);
        args.extend([locator.as_str(), digest.as_str()]);
        let err = Dist::new().fails(2, &args, b"");
        assert!(err.contains("redirect"), "{err}");
        assert!(!err.contains("use --plain-http"), "{err}");
        assert!(
            err.contains(&format!("https://{}/blob", store.host())),
            "{err}"
        );
    }
}

/// A redirect to `http://` on a TLS port, which nginx answers with its `400` page (`The
/// plain HTTP request was sent to HTTPS port`), is said to be the redirect's target too.
/// It was told to write `https://` before the locator and drop `--plain-http`, neither of
/// which reaches a URL the registry chose.
#[test]
fn a_redirect_to_http_on_a_tls_port_is_said_to_be_the_targets() {
    let reg = FakeRegistry::start();
    let data = bytes(42, 4000);
    let digest = reg.blob("team/app", &data);
    let store = FakeRegistry::start();
    store.set_fault_for_every(
        "blob",
        Fault::Page {
            status: 400,
            content_type: "text/html",
            body: "<html><head><title>400 The plain HTTP request was sent to HTTPS port</title>\
                   </head><body><center><h1>400 Bad Request</h1></center><center>The plain \
                   HTTP request was sent to HTTPS port</center></body></html>"
                .into(),
        },
    );
    reg.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("{}/blob", store.url()),
        },
    );
    let err = Dist::new().fails(2, &["fetch", "--retries", "0", &repo(&reg), &digest], b"");
    assert!(err.contains("redirect's target"), "{err}");
    assert!(!err.contains("before the locator"), "{err}");
    assert!(err.contains(&format!("{}/blob", store.url())), "{err}");
}

/// A batch against a registry that asks to be retried later than dist waits: each object
/// fails on its one request, its line saying what the registry asked for and how long
/// dist waits, and no object is asked twice.
#[test]
fn a_batch_told_to_wait_longer_than_dist_waits_says_so_on_every_line() {
    let reg = FakeRegistry::start();
    let digests: Vec<String> = (0..4)
        .map(|i| reg.blob("team/app", bytes(40 + i, 3000)))
        .collect();
    for d in &digests {
        reg.set_fault_for_every(d, Fault::StatusWithRetryAfter(429, "120".into()));
    }
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().to_str().unwrap();
    let input = digests.join("\n") + "\n";
    let out = Dist::new().run(&["fetch", &repo(&reg), "-", "-o", o], input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), digests.len(), "{err}");
    for line in &lines {
        assert_eq!(line["status"], "error", "{line}");
        let said = line["error"].as_str().unwrap();
        assert!(
            said.contains("asks to be retried in 2m, longer than dist waits (1m)"),
            "{said}"
        );
    }
    for d in &digests {
        assert_eq!(reg.requests_for(d), 1, "{err}");
    }
}

/// A failure after two redirects (the registry to a second server, which sends it on to
/// a blob store), and one of a resume whose request is redirected again, name the URL
/// that redirected there once: each is one request's failure, said once. After the
/// chain, that is its last hop, beside the registry's URL the request was addressed to:
/// the registry's alone left one debugging a CDN unable to tell which of its hosts sent
/// the request on.
#[test]
fn a_failure_after_redirects_names_the_url_that_redirected_there_once() {
    let reg = FakeRegistry::start();
    let data = bytes(7, 40_000);
    let digest = reg.blob("team/app", &data);
    let blob_url = format!("{}/v2/team/app/blobs/{digest}", reg.url());
    let relay = FakeRegistry::start();
    relay.blob("team/app", &data);
    let store = Recorder::refusing(http::StatusCode::FORBIDDEN);
    reg.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("{}/v2/team/app/blobs/{digest}", relay.url()),
        },
    );
    relay.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("{}/cdn/{digest}?sig=s3cret", store.url()),
        },
    );
    let relayed = format!("{}/v2/team/app/blobs/{digest}", relay.url());
    let chain = format!("redirected there by {relayed}, after a redirect from {blob_url}");
    let err = Dist::new().fails(1, &["--retries", "0", "fetch", &repo(&reg), &digest], b"");
    assert_eq!(err.matches(&chain).count(), 1, "{err}");
    assert_eq!(err.matches("redirected there by").count(), 1, "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    let said = format!("redirected there by {blob_url}");
    // The relay serves the blob, breaks, and refuses the rest it is sent for again.
    relay.clear_faults();
    relay.push_fault(&digest, Fault::DropAfter(10_000));
    relay.set_fault_for_every(&digest, Fault::Status(403));
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(err.contains("403"), "{err}");
    assert_eq!(err.matches(&said).count(), 1, "{err}");
}

/// A body that breaks at a redirect's target (a blob store, a CDN) names the target's URL,
/// where it broke, and the registry's as what sent it there: it named the registry's
/// alone, sending one who debugs it to a server that had answered with a redirect. The
/// same once the resumes (redirected again) are spent.
#[test]
fn a_body_broken_after_a_redirect_names_the_url_that_broke() {
    let reg = FakeRegistry::start();
    let store = FakeRegistry::start();
    let data = bytes(7, 40000);
    let digest = reg.blob("team/app", &data);
    store.blob("team/app", &data);
    store.set_fault_for_every(&digest, Fault::DropAfter(1000));
    let blob_url = format!("{}/v2/team/app/blobs/{digest}", reg.url());
    let target = format!("{}/v2/team/app/blobs/{digest}", store.url());
    reg.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("{target}?sig=s3cret"),
        },
    );
    for retries in ["0", "2"] {
        let args = ["--retries", retries, "fetch", &repo(&reg), &digest];
        let err = Dist::new().fails(75, &args, b"");
        let broke = format!("{digest}: {target}?…: body interrupted");
        assert!(err.contains(&broke), "{retries}: {err}");
        assert!(
            err.contains(&format!("; redirected there by {blob_url}")),
            "{retries}: {err}"
        );
        assert!(!err.contains("s3cret"), "{retries}: {err}");
    }
}
