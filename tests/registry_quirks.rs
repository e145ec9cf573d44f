//! What real registries and the servers in front of them send, as a client pulling from
//! them meets it: challenges in their own spellings, token replies, blob stores.

mod support;

use std::time::Duration;

use support::cli::{bytes, Dist};
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
