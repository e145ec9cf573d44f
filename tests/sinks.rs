//! The output side of the worker and of `pull`, as a batch mirroring job meets it: framed
//! stdout read by an independent parser, temporary space that runs out, descriptor limits.

mod support;

use support::cli::{bytes, Dist};
use support::fake::FakeRegistry;

fn repo(reg: &FakeRegistry) -> String {
    format!("{}/team/app", reg.host())
}

/// Framed output, checked byte for byte against the README's grammar rather than through
/// the shared parser: `<object> SP <digest> SP <size> SP <mediatype> LF <content> LF`, and
/// `<object> SP error SP <reason> LF` for a failure.
///
/// An object past 1 MiB waits for its frame in a temporary file under `TMPDIR`. When that
/// cannot be written (a small `/tmp` filled up, as in many containers), the error must say
/// where: "i/o: No space left on device" sent users looking for room where the output
/// goes. The batch goes on.
#[test]
fn a_spool_that_cannot_be_written_names_its_directory() {
    let reg = FakeRegistry::start();
    let small = bytes(1, 1000);
    let small_digest = reg.blob("team/app", &small);
    let large = bytes(2, (1 << 20) + 4096);
    let large_digest = reg.blob("team/app", &large);
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("no-such-tmp");
    let mut dist = Dist::new();
    dist.env("TMPDIR", missing.to_str().unwrap());
    let input = format!("{small_digest}\n{large_digest}\n");
    let out = dist.run(&["fetch", &repo(&reg), "-", "--ordered"], input.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");

    let mut want = format!("{small_digest} {small_digest} 1000 -\n").into_bytes();
    want.extend_from_slice(&small);
    want.push(b'\n');
    assert!(
        out.stdout.starts_with(&want),
        "the small object's frame first: {:?}",
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(200)])
    );
    let rest = std::str::from_utf8(&out.stdout[want.len()..]).expect("an error line is text");
    let reason = rest
        .strip_prefix(&format!("{large_digest} error "))
        .and_then(|r| r.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("one error line for the large object: {rest:?}"));
    assert!(!reason.contains('\n'), "{reason:?}");
    for message in [reason, &stderr] {
        assert!(
            message.contains(&format!("temporary file in {}", missing.display())),
            "{message}"
        );
        assert!(message.contains("No such file or directory"), "{message}");
    }
}
