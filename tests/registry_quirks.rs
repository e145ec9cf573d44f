//! What real registries and the servers in front of them send, as a client pulling from
//! them meets it: challenges in their own spellings, token replies, blob stores.

mod support;

use std::time::Duration;

use std::io::Write;

use support::cli::{bytes, hex, Dist};
use support::fake::{Auth, FakeRegistry, Fault};

fn repo(reg: &FakeRegistry) -> String {
    format!("{}/team/app", reg.host())
}

/// nginx's `auth_basic "Zugang geschützt";` in front of a registry sends its realm's bytes
/// as written: UTF-8, which a header may carry (obs-text) and Go's clients read. dist read
/// only ASCII headers, passed over the challenge, and failed with the 401 without ever
/// sending the credentials it had.
#[test]
fn a_challenge_whose_realm_is_not_ascii_is_answered() {
    let reg = FakeRegistry::builder()
        .auth(Auth::basic("user", "pw"))
        .start();
    let data = bytes(3, 5000);
    let digest = reg.blob("team/app", &data);
    reg.set_challenges(&["Basic realm=\"Zugang geschützt\""]);
    let dist = Dist::new();
    dist.login(&reg.host(), "user", "pw");
    let out = dist.run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, data);
    let sent: Vec<_> = reg
        .requests()
        .iter()
        .map(|r| r.auth_scheme().map(str::to_string))
        .collect();
    assert_eq!(sent, [None, Some("Basic".to_string())]);
}

/// Asked for by digest, content is checked against that digest: a `Docker-Content-Digest`
/// that dist cannot read says no more than one in another algorithm it knows, and is
/// passed over as that one is. It failed the object as a bad header. For a tag, the
/// header is all there is to check against, and a malformed one still fails.
#[test]
fn a_digest_header_in_an_unknown_algorithm_is_passed_over_for_a_digest() {
    let reg = FakeRegistry::start();
    let data = bytes(4, 5000);
    let digest = reg.blob("team/app", &data);
    for announced in [
        format!("sha384:{}", "ab".repeat(48)),
        format!("blake3:{}", "cd".repeat(32)),
        "sha256:not-hex".to_string(),
    ] {
        reg.set_fault_for_every(
            &digest,
            Fault::Header("docker-content-digest", announced.clone()),
        );
        let out = Dist::new().run(&["fetch", &repo(&reg), &digest], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{announced}: {err}");
        assert_eq!(out.stdout, data);
    }
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    reg.manifest(
        "team/app",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest,
    );
    reg.set_fault_for_every(
        "manifests/v1",
        Fault::Header("docker-content-digest", "sha256:not-hex".to_string()),
    );
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), "v1"], b"");
    assert!(err.contains("bad Docker-Content-Digest header"), "{err}");
}

/// RFC 7235 wants a realm URL quoted, and registries behind some proxies and appliances
/// send it bare (`Bearer realm=https://host/token,service=…`). Read as a token, the realm
/// stopped at the `:`, no token was asked for, and the 401 failed a public pull.
#[test]
fn a_bearer_challenge_with_an_unquoted_realm_is_answered() {
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer(Duration::from_secs(300)))
        .start();
    let data = bytes(4, 3000);
    let digest = reg.blob("team/app", &data);
    reg.set_challenges(&["Bearer realm={realm},service=fake-registry,scope={scope}"]);
    let out = Dist::new().run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, data);
    assert_eq!(reg.token_requests(), 1);
}

/// A manifest asked for by digest whose `Docker-Content-Digest` names other content (in the
/// same algorithm) is checked by its body, as containerd and crane check it: the header is
/// the registry's word, the body is the content. dist failed good content on the header
/// alone, twice, warning that the content "did not verify" though none had been read.
#[test]
fn a_manifest_by_digest_is_verified_by_its_body_not_a_header_naming_other_content() {
    let reg = FakeRegistry::start();
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let digest = reg.manifest("team/app", "v1", oci, manifest);
    let other = format!("sha256:{}", "ab".repeat(32));
    reg.set_fault_for_every(
        &format!("manifests/{digest}"),
        Fault::Header("docker-content-digest", other.clone()),
    );
    let out = Dist::new().run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, manifest);
    assert!(!err.contains("did not verify"), "{err}");
    assert_eq!(reg.requests_for(&format!("manifests/{digest}")), 1);
    // `resolve`'s HEAD has no body to decide by: its GET does.
    let reference = format!("{}@{digest}", repo(&reg));
    let out = Dist::new().run(&["resolve", &reference], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(described["digest"], digest.as_str(), "{err}");
    assert_eq!(described["size"], manifest.len(), "{err}");
}

/// A blob may stream out before its end is hashed, so one whose `Docker-Content-Digest`
/// names other content is refused unread, and fetched once more. The warning said the
/// content "did not verify" and the error that the registry "announced digest" for it:
/// both now say it was the header, and that none of the content was read.
#[test]
fn a_blob_refused_for_its_digest_header_says_the_header_disagreed() {
    let reg = FakeRegistry::start();
    let data = bytes(6, 5000);
    let digest = reg.blob("team/app", &data);
    let other = format!("sha256:{}", "ab".repeat(32));
    reg.set_fault_for_every(
        &digest,
        Fault::Header("docker-content-digest", other.clone()),
    );
    let err = Dist::new().fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(!err.contains("did not verify"), "{err}");
    assert!(
        err.contains(
            "registry's Docker-Content-Digest header names other content; fetching once more"
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "the registry's Docker-Content-Digest header names {other}, not {digest} as asked; none of the content was read"
        )),
        "{err}"
    );
    assert_eq!(reg.requests_for(&digest), 2);
}

/// The manifest of a small image told apart by `seed`, its config stored in `reg`.
fn small_image(reg: &FakeRegistry, seed: u64) -> Vec<u8> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
    let config_digest = reg.blob("team/app", config.as_bytes());
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    )
    .into_bytes()
}

/// A manifest asked for by digest that the registry answers with other content, under a
/// `Docker-Content-Digest` naming that other content (a registry that mixed up its
/// index): the body is hashed against the digest asked for, on every way a manifest is
/// fetched, and the other content is neither handed out nor stored, nor reported by its
/// own digest. The header agreeing with the body must not pass it.
#[test]
fn a_manifest_by_digest_answered_with_other_content_and_its_digest_is_refused_everywhere() {
    let reg = FakeRegistry::start();
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let asked = reg.manifest("team/app", "v1", oci, small_image(&reg, 1));
    let other = small_image(&reg, 2);
    // Served at the digest asked for, the route announcing the body's own digest.
    let other_digest = reg.manifest("team/app", &asked, oci, &other);
    assert_ne!(asked, other_digest);
    let loc = repo(&reg);
    let hint = format!("mediatype:{oci}");
    let size = format!("size:{}", other.len());
    for args in [
        vec!["fetch", &loc, &asked],
        vec!["fetch", &loc, &asked, &hint],
        vec!["fetch", &loc, &asked, &hint, &size],
    ] {
        let out = Dist::new().run(&args, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: {err}");
        assert!(err.contains("digest mismatch"), "{args:?}: {err}");
    }
    // Coded on its way, decoded or taken as sent: the bytes either way are hashed
    // against the digest asked for.
    for fault in [
        Fault::Coded("gzip"),
        Fault::Labelled("gzip", Box::new(Fault::ManyHeaders(0))),
    ] {
        reg.set_fault_for_every(&format!("manifests/{asked}"), fault.clone());
        let out = Dist::new().run(&["fetch", &loc, &asked, &hint, &size], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{fault:?}: {err}");
        assert!(out.stdout.is_empty(), "{fault:?}: {err}");
        assert!(err.contains("digest mismatch"), "{fault:?}: {err}");
    }
    reg.clear_faults();
    // The worker, framed and into a directory.
    for line in [format!("{asked} {hint}\n"), format!("{asked}\n")] {
        let out = Dist::new().run(&["fetch", &loc, "-"], line.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{line}: {err}");
        let frames = support::cli::parse_frames(&out.stdout);
        assert_eq!(frames.len(), 1, "{line}: {err}");
        assert!(frames[0].result.is_err(), "{line}: {frames:?}");
        let dir = tempfile::tempdir().unwrap();
        let o = dir.path().to_str().unwrap();
        let out = Dist::new().run(&["fetch", &loc, "-", "-o", o], line.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{line}: {err}");
        let lines = support::cli::json_lines(&out.stdout);
        assert_eq!(lines.len(), 1, "{line}: {err}");
        assert_eq!(lines[0]["status"], "error", "{line}: {err}");
        assert!(files_in(dir.path()).is_empty(), "{line}: {err}");
    }
    // `resolve`'s HEAD and GET, and `pull`.
    let reference = format!("{loc}@{asked}");
    let out = Dist::new().run(&["resolve", &reference], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&other_digest),
        "{err}"
    );
    let layout = tempfile::tempdir().unwrap();
    let image = layout.path().join("image");
    let out = Dist::new().run(&["pull", &reference, "-o", image.to_str().unwrap()], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let stored = image
        .join("blobs/sha256")
        .join(support::cli::hex(&other_digest));
    assert!(!stored.exists(), "{err}");
}

/// Every file under `dir`, at any depth.
fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        match entry.path() {
            p if p.is_dir() => files.extend(files_in(&p)),
            p => files.push(p),
        }
    }
    files
}

/// A manifest asked for by digest whose `Docker-Content-Digest` names other content is
/// decided by its body on the worker's ways too (framed, into a directory) and by `pull`:
/// the one-shot fetch and `resolve` were checked alone.
#[test]
fn a_manifest_whose_header_names_other_content_is_decided_by_its_body_in_a_batch_and_a_pull() {
    let reg = FakeRegistry::start();
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let manifest = small_image(&reg, 3);
    let digest = reg.manifest("team/app", "v1", oci, &manifest);
    let other = format!("sha256:{}", "ab".repeat(32));
    reg.set_fault_for_every(
        &format!("manifests/{digest}"),
        Fault::Header("docker-content-digest", other.clone()),
    );
    let loc = repo(&reg);
    let hint = format!("mediatype:{oci}");
    for line in [format!("{digest} {hint}\n"), format!("{digest}\n")] {
        let out = Dist::new().run(&["fetch", &loc, "-"], line.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{line}: {err}");
        let frames = support::cli::parse_frames(&out.stdout);
        assert_eq!(frames.len(), 1, "{line}: {err}");
        let (got, _, body) = frames[0].result.clone().expect("fetched");
        assert_eq!(
            (got.as_str(), body.as_slice()),
            (digest.as_str(), &manifest[..])
        );
        assert!(!err.contains("did not verify"), "{line}: {err}");
        let dir = tempfile::tempdir().unwrap();
        let o = dir.path().to_str().unwrap();
        let out = Dist::new().run(&["fetch", &loc, "-", "-o", o], line.as_bytes());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{line}: {err}");
        support::cli::assert_stored_alone(dir.path(), &digest, &manifest);
    }
    let layout = tempfile::tempdir().unwrap();
    let image = layout.path().join("image");
    let reference = format!("{loc}@{digest}");
    let out = Dist::new().run(&["pull", &reference, "-o", image.to_str().unwrap()], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stored = image.join("blobs/sha256").join(support::cli::hex(&digest));
    assert_eq!(std::fs::read(stored).unwrap(), manifest, "{err}");
}

/// A resume's answer (a `206` for the rest) follows the first answer's rule: a
/// `Docker-Content-Digest` naming other content refuses it before its bytes are spliced
/// onto what arrived, as the first answer's does. Taken, the bytes of whatever object the
/// server (a cache holding another under this address) sent were appended to a partial
/// of this one and caught only by the digest, after the whole transfer.
#[test]
fn a_resume_whose_digest_header_names_other_content_is_refused_as_a_first_answer_is() {
    let reg = FakeRegistry::start();
    let data = bytes(7, 300_000);
    let digest = reg.blob("team/app", &data);
    let other = format!("sha256:{}", "ab".repeat(32));
    reg.push_fault(&digest, Fault::DropAfter(100_000));
    reg.push_fault(
        &digest,
        Fault::Header("docker-content-digest", other.clone()),
    );
    let out = Dist::new().run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the registry's Docker-Content-Digest header names {other}, not {digest} as asked"
        )),
        "{err}"
    );
    // The first 100000 bytes were read: the refusal is of the rest alone.
    assert!(
        err.contains(&format!("not {digest} as asked; none of the rest was read")),
        "{err}"
    );
    assert!(!err.contains("none of the content was read"), "{err}");
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, data);
    assert!(!err.contains("did not verify"), "{err}");
    assert!(
        err.contains("Docker-Content-Digest header names other content; fetching once more"),
        "{err}"
    );
    let ranged: Vec<_> = reg
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(&digest))
        .map(|r| r.range.clone())
        .collect();
    assert_eq!(ranged[1].as_deref(), Some("bytes=100000-"), "{ranged:?}");
    assert_eq!(ranged.len(), 3, "{ranged:?}");
}

/// A resume's answer without `Docker-Content-Digest` (a CDN's or blob store's `206`, which
/// never sends one) says nothing against the content: the rest is spliced on, and the
/// digest decides, as for a first answer without it.
#[test]
fn a_resume_whose_answer_has_no_digest_header_carries_on() {
    let reg = FakeRegistry::start();
    let data = bytes(8, 300_000);
    let digest = reg.blob("team/app", &data);
    reg.push_fault(&digest, Fault::DropAfter(100_000));
    reg.push_fault(&digest, Fault::Without("docker-content-digest", None));
    let out = Dist::new().run(&["fetch", &repo(&reg), &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, data);
    let ranged: Vec<_> = reg
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(&digest))
        .map(|r| r.range.clone())
        .collect();
    assert_eq!(ranged, vec![None, Some("bytes=100000-".to_string())]);
}

/// A token request that fails mid-batch fails every object waiting on it, and each
/// object's printed line says why (the token server's dropped connection), not only that
/// the request failed: the objects after the first get its failure said again (shared).
#[test]
fn every_object_waiting_on_a_failed_token_request_says_why() {
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer(Duration::from_secs(300)))
        .start();
    let digests: Vec<String> = (0..4)
        .map(|seed| reg.blob("team/app", bytes(seed, 1000)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let mut child =
        Dist::new().start(&["--retries", "1", "fetch", &repo(&reg), "-", "-o", out_dir]);
    let mut input = child.stdin.take().unwrap();
    writeln!(input, "{}", digests[0]).unwrap();
    let first = dir.path().join("blobs/sha256").join(hex(&digests[0]));
    support::wait::until("the first blob stored", || first.exists());
    // The token dist holds is refused from now on, and the token server drops every
    // request for a new one unanswered.
    reg.invalidate_tokens();
    reg.set_fault_for_every("/token", Fault::CloseUnanswered);
    for digest in &digests[1..] {
        writeln!(input, "{digest}").unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(reg.token_requests() >= 2, "{err}");
    for digest in &digests[1..] {
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(digest.as_str()))
            .collect();
        assert!(!lines.is_empty(), "{digest}: {err}");
        for line in lines {
            assert!(line.contains("token"), "{line}\n{err}");
            assert!(line.contains("closed"), "{line}\n{err}");
        }
    }
}
