//! The multi-fetch worker (`dist fetch <locator> -`) against a real `docker-registry`.

mod support;

use std::collections::{BTreeMap, HashMap};

use support::cli::{bytes, json_lines, parse_frames, sha256, Dist};
use support::registry::{Mode, Registry};

/// Pushes `n` blobs of 4-64 KiB; returns digest -> content.
fn push_blobs(reg: &Registry, repo: &str, n: usize, seed: u64) -> BTreeMap<String, Vec<u8>> {
    let blobs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let len = 4096 + (i * 7919 + seed as usize * 131) % (60 << 10);
            bytes(seed * 100_000 + i as u64, len)
        })
        .collect();
    let slices: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let digests = reg.push_blobs(repo, &slices);
    assert_eq!(digests.len(), n);
    digests.into_iter().zip(blobs).collect()
}

fn client_for(reg: &Registry) -> Dist {
    let dist = Dist::new();
    if reg.mode() != Mode::Anonymous {
        dist.login(&reg.host(), reg.user(), reg.password());
    }
    dist
}

/// 1000 blobs through stdin into a directory, every file compared, one token per batch.
fn thousand_into_directory(mode: Mode) {
    let reg = Registry::start(mode);
    let blobs = push_blobs(&reg, "bulk/blobs", 1000, mode as u64 + 1);
    let dist = client_for(&reg);
    let out = tempfile::tempdir().unwrap();
    let input: String = blobs.keys().map(|d| format!("{d}\n")).collect();
    reg.reset_token_requests();
    let repo = format!("{}/bulk/blobs", reg.host());
    let dir = out.path().to_str().unwrap();
    let run = dist.run(
        &["fetch", &repo, "-", "-o", dir, "-j", "10"],
        input.as_bytes(),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines = json_lines(&run.stdout);
    assert_eq!(lines.len(), 1000);
    for l in &lines {
        assert_eq!(l["status"], "ok", "{l}");
        assert_eq!(l["object"], l["digest"]);
    }
    for (digest, data) in &blobs {
        let path = out
            .path()
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..]);
        assert_eq!(&std::fs::read(&path).unwrap(), data, "{digest}");
    }
    assert_eq!(
        std::fs::read_dir(out.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        1000,
        "no stray files"
    );
    assert!(out.path().join("oci-layout").exists());
    if mode == Mode::Token {
        assert_eq!(reg.token_requests(), 1, "one token for the whole batch");
    }

    // A second run finds everything in place and fetches nothing.
    let again = dist.run(&["fetch", &repo, "-", "-o", dir], input.as_bytes());
    assert!(again.status.success());
    assert!(json_lines(&again.stdout)
        .iter()
        .all(|l| l["status"] == "exists"));
}

#[test]
fn thousand_blobs_anonymous() {
    thousand_into_directory(Mode::Anonymous);
}

#[test]
fn thousand_blobs_basic_auth() {
    thousand_into_directory(Mode::Basic);
}

#[test]
fn thousand_blobs_bearer_token() {
    thousand_into_directory(Mode::Token);
}

/// A stored blob cut short since it was verified (a full disk, a copy interrupted) is
/// found by its descriptor's size and fetched again; a descriptor whose size is wrong
/// fails, naming the registry's size, and leaves the stored blob alone.
#[test]
fn a_stored_blob_of_the_wrong_size_is_fetched_again() {
    let reg = Registry::start(Mode::Anonymous);
    let blobs = push_blobs(&reg, "heal/blobs", 3, 7);
    let repo = format!("{}/heal/blobs", reg.host());
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let descriptors: String = blobs
        .iter()
        .map(|(d, b)| format!("{{\"digest\":\"{d}\",\"size\":{}}}\n", b.len()))
        .collect();
    let dist = Dist::new();
    assert!(dist
        .run(&["fetch", &repo, "-", "-o", dir], descriptors.as_bytes())
        .status
        .success());
    let (damaged, content) = blobs.iter().next().unwrap();
    let path = out
        .path()
        .join("blobs/sha256")
        .join(&damaged["sha256:".len()..]);
    std::fs::write(&path, &content[..100]).unwrap();

    let again = dist.run(&["fetch", &repo, "-", "-o", dir], descriptors.as_bytes());
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let lines = json_lines(&again.stdout);
    let status = |d: &str| {
        lines
            .iter()
            .find(|l| l["object"] == d)
            .map(|l| l["status"].clone())
    };
    assert_eq!(status(damaged), Some("ok".into()));
    assert_eq!(&std::fs::read(&path).unwrap(), content);
    for d in blobs.keys().filter(|d| *d != damaged) {
        assert_eq!(status(d), Some("exists".into()), "{d}");
    }

    // The descriptor is wrong this time: the blob stays as it is.
    let lying = format!(
        "{{\"digest\":\"{damaged}\",\"size\":{}}}\n",
        content.len() + 1
    );
    let out = dist.run(&["fetch", &repo, "-", "-o", dir], lying.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let line = &json_lines(&out.stdout)[0];
    let error = line["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("registry declares {} bytes", content.len())),
        "{error}"
    );
    assert_eq!(&std::fs::read(&path).unwrap(), content);
}

#[test]
fn framed_output_parses_back_and_verifies() {
    let reg = Registry::start(Mode::Token);
    let blobs = push_blobs(&reg, "bulk/framed", 1000, 9);
    let dist = Dist::new();
    // Saved by a Windows editor, the list starts with a byte order mark.
    let input: String = std::iter::once("\u{feff}".to_string())
        .chain(
            blobs
                .keys()
                .map(|d| format!("{d} mediatype:application/vnd.oci.image.layer.v1.tar\n")),
        )
        .collect();
    reg.reset_token_requests();
    let run = dist.run(
        &["fetch", &format!("{}/bulk/framed", reg.host()), "-"],
        input.as_bytes(),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let frames = parse_frames(&run.stdout);
    assert_eq!(frames.len(), 1000);
    for f in frames {
        let (digest, media_type, body) = f.result.expect("no error frames");
        assert_eq!(f.object, digest);
        assert_eq!(sha256(&body), digest);
        assert_eq!(&body, &blobs[&digest]);
        assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar");
    }
    assert_eq!(reg.token_requests(), 1);
}

#[test]
fn bad_lines_get_one_error_each_and_the_batch_goes_on() {
    let reg = Registry::start(Mode::Anonymous);
    let blobs = push_blobs(&reg, "mixed/app", 20, 3);
    let unknown = sha256(b"never pushed");
    let mut input = String::from("# a comment\n\n");
    let mut bad = HashMap::new();
    for (i, d) in blobs.keys().enumerate() {
        input.push_str(&format!("{d}\n"));
        match i % 5 {
            0 => {
                input.push_str("sha256:1234\n");
                bad.insert("sha256:1234", "invalid digest");
            }
            1 => {
                input.push_str(&format!("{unknown}\n"));
                bad.insert(unknown.as_str(), "BLOB_UNKNOWN");
            }
            2 => {
                input.push_str("@@garbage@@ and more\n");
                bad.insert("@@garbage@@", "invalid object");
            }
            3 => {
                input.push_str("{\"digest\": 12\n");
                bad.insert("-", "not a JSON descriptor");
            }
            _ => {}
        }
    }
    let run = Dist::new().run(
        &[
            "fetch",
            &format!("{}/mixed/app", reg.host()),
            "-",
            "-j",
            "4",
        ],
        input.as_bytes(),
    );
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let frames = parse_frames(&run.stdout);
    let mut good = 0;
    let mut errors: HashMap<String, usize> = HashMap::new();
    for f in &frames {
        match &f.result {
            Ok((digest, _, body)) => {
                assert_eq!(&blobs[digest], body);
                good += 1;
            }
            Err(reason) => {
                let want = bad
                    .get(f.object.as_str())
                    .unwrap_or_else(|| panic!("unexpected error for {}", f.object));
                assert!(reason.contains(want), "{}: {reason}", f.object);
                *errors.entry(f.object.clone()).or_default() += 1;
            }
        }
    }
    assert_eq!(good, 20);
    // A repeated bad object is reported once per line. The unknown digest is a well-formed
    // object: a line naming it while its fetch runs is a duplicate, one read after that
    // fetch failed fetches it again, so it is reported at least once and once a line at most.
    assert_eq!(errors["sha256:1234"], 4);
    assert_eq!(errors["@@garbage@@"], 4);
    assert_eq!(errors["-"], 4);
    let unknown_errors = errors[&unknown];
    assert!((1..=4).contains(&unknown_errors), "{unknown_errors}");
    // Every error also reaches stderr, with its line number.
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("dist: line "))
            .count(),
        12 + unknown_errors
    );
}

#[test]
fn ordered_output_follows_input_and_descriptors_carry_size() {
    let reg = Registry::start(Mode::Anonymous);
    let blobs = push_blobs(&reg, "ord/app", 50, 4);
    let mut keys: Vec<&String> = blobs.keys().collect();
    keys.reverse();
    let mut input = String::new();
    for d in &keys {
        input.push_str(&format!(
            "{{\"mediaType\":\"application/octet-stream\",\"digest\":\"{d}\",\"size\":{}}}\n",
            blobs[*d].len()
        ));
    }
    // A descriptor that lies about the size fails, even though the digest exists.
    let liar = keys[0];
    input.push_str(&format!("{{\"digest\":\"{liar}\",\"size\":1}}\n"));
    let repo = format!("{}/ord/app", reg.host());
    let run = Dist::new().run(
        &["fetch", &repo, "-", "--ordered", "-j", "8"],
        input.as_bytes(),
    );
    // The liar is no duplicate of its digest's right descriptor, which the batch fetched:
    // it gets its own end, a size mismatch, as on its own.
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut frames = parse_frames(&run.stdout);
    let last = frames.pop().expect("the liar's frame");
    assert_eq!(last.object, liar.to_string());
    assert!(
        last.result.as_ref().unwrap_err().contains("expected 1"),
        "{last:?}"
    );
    let order: Vec<String> = frames.into_iter().map(|f| f.object).collect();
    assert_eq!(
        order,
        keys.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
}

/// Credentials refused at the check are status 2, which retrying cannot cure; a refused
/// connection is 75, for the moment, as it is for the batch's lines after the check.
#[test]
fn unreachable_or_unauthorized_remote_exits_before_reading() {
    let reg = Registry::start(Mode::Basic);
    let repo = format!("{}/some/app", reg.host());
    let run = Dist::new().run(
        &["fetch", &repo, "-"],
        format!("{}\n", sha256(b"x")).as_bytes(),
    );
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("cannot use"));
    let run = Dist::new().run(
        &["fetch", "--retries", "0", "127.0.0.1:1/x", "-"],
        b"latest\n",
    );
    assert_eq!(run.status.code(), Some(75));
}

/// Frames on stdout and, with `--report`, one JSON line per input line in the file: the
/// two outputs describe the same objects.
#[test]
fn framed_output_with_a_report_file() {
    let reg = Registry::start(Mode::Anonymous);
    let blobs = push_blobs(&reg, "framed/report", 30, 9);
    let dist = Dist::new();
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut input: String = blobs.keys().map(|d| format!("{d}\n")).collect();
    input.push_str("not-a-digest-or-tag!\n");
    let repo = format!("{}/framed/report", reg.host());
    let run = dist.run(
        &[
            "fetch",
            &repo,
            "-",
            "--report",
            report.path().to_str().unwrap(),
        ],
        input.as_bytes(),
    );
    assert_eq!(run.status.code(), Some(1), "one bad line fails the batch");
    let frames = parse_frames(&run.stdout);
    assert_eq!(frames.len(), 31);
    for frame in frames.iter().filter(|f| f.result.is_ok()) {
        let (digest, _, body) = frame.result.as_ref().unwrap();
        assert_eq!(&blobs[digest], body);
    }
    let lines = json_lines(&std::fs::read(report.path()).unwrap());
    assert_eq!(lines.len(), 31);
    let ok = lines.iter().filter(|l| l["status"] == "ok").count();
    assert_eq!(ok, 30);
    let bad: Vec<_> = lines.iter().filter(|l| l["status"] == "error").collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["object"], "not-a-digest-or-tag!");
}

/// Reads a child's stdout on a thread of its own, so a test can wait for output with a
/// deadline while the child still runs.
struct Reader {
    got: Vec<u8>,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl Reader {
    fn new(mut out: std::process::ChildStdout) -> Reader {
        use std::io::Read;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Reader {
            got: Vec::new(),
            rx,
        }
    }

    /// Waits until `done` accepts what was read so far; panics after 20 s.
    fn until(&mut self, what: &str, done: impl Fn(&[u8]) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !done(&self.got) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.got.extend(chunk),
                Err(_) => panic!(
                    "{what}: not on stdout within 20 s; got {:?}",
                    String::from_utf8_lossy(&self.got)
                ),
            }
        }
    }
}

/// Whether `data` holds `n` whole frames.
fn has_frames(data: &[u8], n: usize) -> bool {
    let mut rest = data;
    for _ in 0..n {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return false;
        };
        let header = String::from_utf8_lossy(&rest[..nl]).to_string();
        let size: usize = header
            .split(' ')
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if rest.len() < nl + 1 + size + 1 {
            return false;
        }
        rest = &rest[nl + 1 + size + 1..];
    }
    true
}

/// Output is written as objects finish, not held back until more input or the end of the
/// batch: a pipeline that feeds one digest and waits for its frame must get it.
#[test]
fn each_outcome_reaches_stdout_while_the_input_stays_open() {
    use std::io::Write;
    let reg = Registry::start(Mode::Anonymous);
    let blobs = push_blobs(&reg, "stream/out", 3, 11);
    let digests: Vec<&String> = blobs.keys().collect();
    let repo = format!("{}/stream/out", reg.host());
    let dist = Dist::new();
    let out_dir = tempfile::tempdir().unwrap();
    for framed in [true, false] {
        let mut args = vec!["fetch", repo.as_str(), "-"];
        if !framed {
            args.extend(["-o", out_dir.path().to_str().unwrap()]);
        }
        let mut child = dist.start(&args);
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = Reader::new(child.stdout.take().unwrap());
        for (i, digest) in digests.iter().enumerate() {
            writeln!(stdin, "{digest}").unwrap();
            stdin.flush().unwrap();
            if framed {
                stdout.until(&format!("frame {}", i + 1), |d| has_frames(d, i + 1));
            } else {
                stdout.until(&format!("line {}", i + 1), |d| {
                    d.iter().filter(|&&b| b == b'\n').count() == i + 1
                });
            }
        }
        drop(stdin);
        assert!(child.wait().unwrap().success());
        if framed {
            let frames = parse_frames(&stdout.got);
            let got: Vec<&str> = frames
                .iter()
                .map(|f| f.result.as_ref().unwrap().0.as_str())
                .collect();
            assert_eq!(got, digests.iter().map(|d| d.as_str()).collect::<Vec<_>>());
        } else {
            let lines = json_lines(&stdout.got);
            assert!(lines.iter().all(|l| l["status"] == "ok"), "{lines:?}");
        }
    }
}

/// The `--report` file, too, gets each object's line as the object is written out, not
/// when the batch ends: a batch fed by `tail -f` never ends, and one that is killed must
/// not lose what it did.
#[test]
fn each_report_line_reaches_its_file_while_the_input_stays_open() {
    use std::io::Write;
    let reg = Registry::start(Mode::Anonymous);
    let blobs = push_blobs(&reg, "stream/report", 2, 12);
    let repo = format!("{}/stream/report", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.jsonl");
    let dist = Dist::new();
    let mut child = dist.start(&["fetch", &repo, "-", "--report", report.to_str().unwrap()]);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = Reader::new(child.stdout.take().unwrap());
    for (i, digest) in blobs.keys().enumerate() {
        writeln!(stdin, "{digest}").unwrap();
        stdin.flush().unwrap();
        stdout.until(&format!("frame {}", i + 1), |d| has_frames(d, i + 1));
        // The frame is out; its report line is flushed right after it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&report).unwrap();
            if text.lines().count() == i + 1 {
                assert!(text.contains(digest.as_str()), "{text}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "report line {} not in the file while the input is open: {text:?}",
                i + 1
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(json_lines(&std::fs::read(&report).unwrap()).len(), 2);
}

/// A reader of the JSON lines that goes away (`| head -1`) stops the batch promptly with
/// status 1, leaving only verified blobs and no temporary file behind.
#[test]
fn a_report_reader_that_goes_away_stops_the_batch() {
    use std::io::Read;
    let reg = Registry::start(Mode::Anonymous);
    let blobs = push_blobs(&reg, "gone/reader", 300, 11);
    let input: String = blobs.keys().map(|d| format!("{d}\n")).collect();
    let out_dir = tempfile::tempdir().unwrap();
    let dist = Dist::new();
    let repo = format!("{}/gone/reader", reg.host());
    let mut child = dist.spawn(
        &[
            "fetch",
            &repo,
            "-",
            "-o",
            out_dir.path().to_str().unwrap(),
            "-j",
            "2",
        ],
        input.as_bytes(),
    );
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "dist kept fetching after its reader went away"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let blob_dir = out_dir.path().join("blobs/sha256");
    let mut stored = 0;
    for entry in std::fs::read_dir(&blob_dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let digest = format!("sha256:{name}");
        let content = blobs
            .get(&digest)
            .unwrap_or_else(|| panic!("left behind: {name}"));
        assert_eq!(&std::fs::read(entry.path()).unwrap(), content);
        stored += 1;
    }
    assert!(stored >= 1, "the line read was for a stored blob");
}

/// A blob whose content is the text the worker once hashed a tag's key from (`tag v1 `)
/// has a sha256 digest equal to that key: the tag named after it was taken for a
/// duplicate and skipped without a word, and the batch succeeded without it.
#[test]
fn a_blob_holding_a_tag_s_key_text_does_not_hide_the_tag() {
    let reg = Registry::start(Mode::Anonymous);
    let text = reg.push_blob("team/app", b"tag v1 ");
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = reg.push_blob("team/app", config);
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{oci}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let manifest_digest = reg.push_manifest("team/app", "v1", oci, manifest.as_bytes());
    let repo = format!("{}/team/app", reg.host());
    let input = format!("{text}\nv1\n");
    let run = Dist::new().run(&["fetch", &repo, "-", "--ordered"], input.as_bytes());
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got: Vec<(String, String, Vec<u8>)> = parse_frames(&run.stdout)
        .into_iter()
        .map(|f| {
            let (digest, _, body) = f.result.expect("fetched");
            (f.object, digest, body)
        })
        .collect();
    assert_eq!(
        got,
        [
            (text.clone(), text, b"tag v1 ".to_vec()),
            ("v1".to_string(), manifest_digest, manifest.into_bytes()),
        ]
    );
}

/// A digest named with a wrong `mediatype:` hint (a Docker type for an OCI manifest, which
/// `docker-registry` answers 404) is no duplicate of the same digest named with the right
/// one on a later line: that line was skipped while the wrong one's fetch ran, got no line
/// of its own, and the manifest was never fetched.
#[test]
fn a_wrong_type_hint_hides_no_later_line_with_the_right_one() {
    let reg = Registry::start(Mode::Anonymous);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = reg.push_blob("hint/app", config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let digest = reg.push_manifest(
        "hint/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    );
    let input = format!(
        "{digest} mediatype:application/vnd.docker.distribution.manifest.v2+json\n\
         {digest} mediatype:application/vnd.oci.image.manifest.v1+json\n"
    );
    let dist = Dist::new();
    let out = dist.config_dir().join("out");
    let repo = format!("{}/hint/app", reg.host());
    let run = dist.run(
        &[
            "fetch",
            &repo,
            "-",
            "-o",
            out.to_str().unwrap(),
            "--ordered",
        ],
        input.as_bytes(),
    );
    let err = String::from_utf8_lossy(&run.stderr);
    // Line 1's wrong hint still fails the batch, as on its own.
    assert_eq!(run.status.code(), Some(1), "{err}");
    let lines = json_lines(&run.stdout);
    let ends: Vec<(u64, &str)> = lines
        .iter()
        .map(|l| (l["line"].as_u64().unwrap(), l["status"].as_str().unwrap()))
        .collect();
    assert_eq!(ends, [(1, "error"), (2, "ok")], "{lines:?}");
    let stored = std::fs::read(out.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap();
    assert_eq!(stored, manifest.as_bytes());
}
