//! Media types as servers and users spell them: type, subtype and parameter names are
//! case-insensitive (RFC 9110, 8.3.1), so `Application/Vnd.Oci.Image.Manifest.V1+JSON`
//! is the OCI manifest type, in a hint, a descriptor line, a `Content-Type` and a
//! manifest's own `mediaType` alike.

mod support;

use support::cli::{frame_media_types, json_lines, parse_frames, Dist};
use support::fake::{FakeRegistry, Fault};

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// A signed Docker schema 1 manifest, as a registry serves it.
const SIGNED_SCHEMA1: &str = r#"{"schemaVersion":1,"name":"team/app","tag":"v1","architecture":"amd64","fsLayers":[],"history":[],"signatures":[{"header":{"alg":"ES256"},"signature":"c2ln","protected":"cHJv"}]}"#;

fn repo(reg: &FakeRegistry) -> String {
    format!("{}/team/app", reg.host())
}

/// An OCI image in the fake registry under `tag`, its manifest declaring `own` and served
/// as `served`; returns the manifest's digest and bytes.
fn image(reg: &FakeRegistry, tag: &str, own: &str, served: &str) -> (String, String) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = reg.blob("team/app", config);
    let layer = b"layer";
    let layer_digest = reg.blob("team/app", layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": own,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let digest = reg.manifest("team/app", tag, served, &manifest);
    (digest, manifest)
}

fn blob_requests(reg: &FakeRegistry) -> Vec<String> {
    reg.requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.contains("/blobs/"))
        .collect()
}

/// A manifest type hinted in another case is a manifest type: a digest goes to the
/// manifests endpoint first, as it does for the lower-case hint, where it went to the
/// blobs endpoint first and cost a 404 before the manifest. So for a descriptor line,
/// which also asks for the other manifest types after its own.
#[test]
fn a_manifest_type_in_another_case_goes_to_the_manifests_endpoint_first() {
    let reg = FakeRegistry::start();
    let (digest, manifest) = image(&reg, "v1", OCI, OCI);
    let dist = Dist::new();
    let hint = "mediatype:Application/Vnd.Oci.Image.Manifest.V1+JSON";
    let out = dist.ok(&["fetch", &repo(&reg), &digest, hint]);
    assert_eq!(out, manifest.as_bytes());
    assert_eq!(blob_requests(&reg), Vec::<String>::new());
    let line = format!(
        r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+JSON","digest":"{digest}","size":{}}}"#,
        manifest.len()
    );
    let out = dist.ok_fed(&["fetch", &repo(&reg), "-"], format!("{line}\n").as_bytes());
    assert_eq!(frame_media_types(&out), [OCI]);
    assert_eq!(blob_requests(&reg), Vec::<String>::new());
    let last = reg.requests().pop().unwrap();
    let accept = last.accept.unwrap();
    // Sent in its registered spelling: a registry may match `Accept` byte for byte.
    assert!(
        accept.starts_with("application/vnd.oci.image.manifest.v1+json, ")
            && accept.contains("application/vnd.docker.distribution.manifest.v2+json")
            && accept.matches("manifest.v1+").count() == 1
            && !accept.contains("JSON"),
        "{accept}"
    );
}

/// A tag named twice with the same type in two spellings is one object, fetched once, as
/// it is with one spelling: the spelling was part of what made it a new object.
#[test]
fn a_tag_hinted_in_two_spellings_is_fetched_once() {
    let reg = FakeRegistry::start();
    let (_, manifest) = image(&reg, "v1", OCI, OCI);
    let input = format!("v1 mediatype:{OCI}\nv1 mediatype:{}\n", OCI.to_uppercase());
    let before = reg.requests().len();
    let out = Dist::new().ok_fed(&["fetch", &repo(&reg), "-"], input.as_bytes());
    let frames = parse_frames(&out);
    assert_eq!(frames.len(), 1, "{frames:?}");
    let (_, media_type, body) = frames[0].result.as_ref().unwrap();
    assert_eq!(
        (media_type.as_str(), body.as_slice()),
        (OCI, manifest.as_bytes())
    );
    let manifest_gets = reg.requests()[before..]
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .count();
    assert_eq!(manifest_gets, 1);
}

/// A signed schema 1 manifest labelled in another case is refused on its header, as the
/// lower-case label is: it was taken for a manifest of no known type, and, with a
/// `Docker-Content-Digest` of the served bytes, fetched as if it were one.
#[test]
fn a_schema1_label_in_another_case_is_refused_on_the_header() {
    let reg = FakeRegistry::start();
    let signed = SIGNED_SCHEMA1;
    reg.manifest(
        "team/app",
        "v1",
        "application/vnd.docker.distribution.manifest.v1+PrettyJWS; charset=UTF-8",
        signed,
    );
    let dist = Dist::new();
    let out = dist.run(&["fetch", &repo(&reg), "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains(&format!(
            "the registry answered with a signed Docker schema 1 manifest ({SCHEMA1})"
        )),
        "{err}"
    );
    // Asked for by name in another case, it is still what was asked for.
    let hint = format!("mediatype:{}", SCHEMA1.to_uppercase());
    let out = dist.run(&["fetch", &repo(&reg), "v1", &hint], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the manifest is a signed Docker schema 1 manifest ("),
        "{err}"
    );
}

/// A signed schema 1 manifest asked for by digest, with no hint, is found at the manifests
/// endpoint after the blobs endpoint's 404, and refused there as schema 1: the error says
/// so, where it reported the blobs endpoint's `BLOB_UNKNOWN`, as if the registry had no
/// such content.
#[test]
fn a_schema1_manifest_asked_for_by_digest_is_refused_as_schema1_not_as_unknown() {
    let reg = FakeRegistry::start();
    let signed = SIGNED_SCHEMA1;
    let digest = reg.manifest("team/app", "v1", SCHEMA1, signed);
    let dist = Dist::new();
    let err = dist.fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(
        err.contains("signed Docker schema 1 manifest") && !err.contains("BLOB_UNKNOWN"),
        "{err}"
    );
    assert!(err.contains(&format!("/manifests/{digest}")), "{err}");
}

/// A signed schema 1 manifest asked for by digest is what the digest names: a registry
/// falls back to schema 1 for a tag (it converts what it has), never for a digest. The
/// error said it was the registry's fallback when it had none of the types asked for, as
/// if another type might be had.
#[test]
fn a_schema1_manifest_asked_for_by_digest_is_no_fallback() {
    let reg = FakeRegistry::start();
    let signed = SIGNED_SCHEMA1;
    let digest = reg.manifest("team/app", "v1", SCHEMA1, signed);
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let image = format!("{}@{digest}", repo(&reg));
    let err = dist.fails(1, &["pull", &image, "-o", out.to_str().unwrap()], b"");
    assert!(
        err.contains("the manifest is a signed Docker schema 1 manifest (")
            && !err.contains("fallback"),
        "{err}"
    );
    let err = dist.fails(1, &["fetch", &repo(&reg), &digest], b"");
    assert!(!err.contains("fallback"), "{err}");
    // A tag's is the fallback.
    let err = dist.fails(1, &["fetch", &repo(&reg), "v1"], b"");
    assert!(err.contains("fallback"), "{err}");
}

/// A `HEAD` whose `Content-Type` names a manifest type in another case describes the
/// manifest: `resolve` took it for no manifest type and sent a `GET` too, which Docker Hub
/// counts as a pull. The type is reported in its registered spelling.
#[test]
fn resolve_reads_a_content_type_in_another_case_from_the_head() {
    let reg = FakeRegistry::start();
    let (digest, manifest) = image(
        &reg,
        "v1",
        OCI,
        "Application/Vnd.Oci.Image.Manifest.V1+json",
    );
    let out = Dist::new().ok(&["resolve", &format!("{}:v1", repo(&reg))]);
    let d = &json_lines(&out)[0];
    assert_eq!(d["digest"], digest.as_str());
    assert_eq!(d["size"], manifest.len());
    assert_eq!(d["mediaType"], OCI);
    let gets: Vec<_> = reg
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::GET && r.path.contains("/manifests/"))
        .collect();
    assert!(gets.is_empty(), "{gets:?}");
}

/// A manifest whose own `mediaType` is written in another case is the type it names:
/// `pull` refused it as an unsupported manifest type. `index.json` records the type in its
/// registered spelling, the one readers of a layout compare with.
#[test]
fn a_manifest_declaring_its_type_in_another_case_is_pulled() {
    let reg = FakeRegistry::start();
    let (digest, _) = image(
        &reg,
        "v1",
        "application/vnd.oci.image.manifest.v1+JSON",
        OCI,
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().to_str().unwrap();
    Dist::new().ok(&["pull", &format!("{}:v1", repo(&reg)), "-o", layout]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], digest.as_str());
    assert_eq!(entry["mediaType"], OCI);
}

/// A manifest's own `mediaType` is reported where its `Content-Type` names no manifest
/// type, and is a server's text: one that is no media type (here a C1 CSI, `\u{9b}`, and
/// a right-to-left override in it) is taken for none, as its shape says, not printed as
/// it came into the JSON lines and `dist resolve`'s descriptor, which a terminal shows.
#[test]
fn a_manifest_declaring_no_media_type_is_reported_by_its_shape() {
    let reg = FakeRegistry::start();
    let own = "application/vnd.oci.image.manifest.v1+json\u{9b}31m\u{202e}x";
    let (digest, _) = image(&reg, "v1", own, "application/json");
    let dir = tempfile::tempdir().unwrap();
    let out = Dist::new().ok_fed(
        &[
            "fetch",
            &repo(&reg),
            "-",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        b"v1\n",
    );
    let line = &json_lines(&out)[0];
    assert_eq!(line["digest"], digest.as_str(), "{line}");
    assert_eq!(line["mediaType"], OCI, "{line}");
    let out = Dist::new().ok(&["resolve", &format!("{}:v1", repo(&reg))]);
    assert_eq!(json_lines(&out)[0]["mediaType"], OCI);
    // pull refuses it, saying why: "unsupported manifest type" named a type dist might support.
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{}:v1", repo(&reg));
    let out = Dist::new().run(
        &["pull", &reference, "-o", dir.path().to_str().unwrap()],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(r#"mediaType "application/vnd.oci.image.manifest.v1+json\u{9b}31m\u{202e}x", which is no media type"#),
        "{err}"
    );
}

/// A tag whose `HEAD` answers with a signed schema 1 manifest (the registry's fallback
/// when it has none of the types asked for) is refused by `dist resolve` as by `dist
/// fetch`: the `HEAD`'s `Content-Type` made a descriptor of it, whose digest leaves out
/// the signatures its length counts, and `resolve` printed it with exit status 0 (and
/// `pull` said the type was asked for by name).
#[test]
fn resolve_refuses_a_schema1_tag_from_its_head() {
    let reg = FakeRegistry::start();
    let signed = SIGNED_SCHEMA1;
    reg.manifest("team/app", "v1", SCHEMA1, signed);
    let out = Dist::new().run(&["resolve", &format!("{}:v1", repo(&reg))], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains(&format!(
            "the registry answered with a signed Docker schema 1 manifest ({SCHEMA1})"
        )),
        "{err}"
    );
}

/// A blob asked for without a type hint is not reported as its storage's generic
/// `Content-Type` (S3's `binary/octet-stream` after a redirect, a Go file server's sniffed
/// `text/plain` or `application/x-gzip`): those say how bytes are stored, not what the
/// content is, and its type is unknown (`-`). A type of the vendor tree, as OCI types
/// are, is still the blob's.
#[test]
fn a_blob_is_not_reported_as_its_storage_s_generic_type() {
    use support::fake::Fault;
    let reg = FakeRegistry::start();
    let served = [
        "binary/octet-stream",
        "text/plain; charset=utf-8",
        "application/x-gzip",
        "application/x-www-form-urlencoded",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ];
    let mut input = String::new();
    for (n, t) in served.iter().enumerate() {
        let digest = reg.blob("team/app", format!("blob {n}"));
        reg.push_fault(&digest, Fault::Header("content-type", t.to_string()));
        input.push_str(&format!("{digest}\n"));
    }
    let out = Dist::new().ok_fed(&["fetch", "--ordered", &repo(&reg), "-"], input.as_bytes());
    assert_eq!(
        frame_media_types(&out),
        [
            "-",
            "-",
            "-",
            "-",
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ]
    );
}

/// A blob's digest hinted as a manifest: docker-registry answers its manifests endpoint
/// 500 (it fails to parse the blob as a manifest), which dist retried five times, with
/// back-off, and never asked the blobs endpoint, where the blob is. The blobs endpoint is
/// asked after the first 500, as it is after a 404.
#[test]
fn a_blob_hinted_as_a_manifest_is_fetched_after_one_500() {
    let reg = FakeRegistry::start();
    let layer = b"a layer, not a manifest";
    let digest = reg.blob("team/app", layer);
    let at = format!("manifests/{digest}");
    reg.set_fault_for_every(&at, Fault::Status(500));
    let out = Dist::new().ok(&["fetch", &repo(&reg), &digest, &format!("mediatype:{OCI}")]);
    assert_eq!(out, layer);
    assert_eq!(reg.requests_for(&at), 1);
    assert_eq!(blob_requests(&reg).len(), 1);
}

/// A manifest whose endpoint fails with a 500 once, and that the blobs endpoint does not
/// serve (404), is still asked for again: a 500 may be the registry's passing fault.
#[test]
fn a_manifest_whose_endpoint_fails_once_is_asked_again() {
    let reg = FakeRegistry::start();
    let (digest, manifest) = image(&reg, "v1", OCI, OCI);
    let at = format!("manifests/{digest}");
    reg.push_fault(&at, Fault::Status(500));
    let out = Dist::new().ok(&["fetch", &repo(&reg), &digest, &format!("mediatype:{OCI}")]);
    assert_eq!(out, manifest.as_bytes());
    assert_eq!(reg.requests_for(&at), 2);
    assert_eq!(
        blob_requests(&reg).len(),
        1,
        "the 500 asked the blobs endpoint once"
    );
}

/// A 503 says the registry is unavailable, not what the digest is: retried on the
/// manifests endpoint as ever, the blobs endpoint not asked.
#[test]
fn a_manifest_whose_endpoint_is_unavailable_once_is_retried_there() {
    let reg = FakeRegistry::start();
    let (digest, manifest) = image(&reg, "v1", OCI, OCI);
    let at = format!("manifests/{digest}");
    reg.push_fault(&at, Fault::Status(503));
    let out = Dist::new().ok(&["fetch", &repo(&reg), &digest, &format!("mediatype:{OCI}")]);
    assert_eq!(out, manifest.as_bytes());
    assert_eq!(reg.requests_for(&at), 2);
    assert_eq!(blob_requests(&reg), Vec::<String>::new());
}

/// A spent pull quota (Docker Hub's 429 without `Retry-After`) on a digest hinted as a
/// manifest is asked once, as any other object's is: retrying only spends requests the
/// quota counts. The blobs endpoint's first request being without retries, dist asked
/// the manifests endpoint again after a back-off.
#[test]
fn a_spent_quota_on_a_digest_hinted_as_a_manifest_is_asked_once() {
    let reg = FakeRegistry::start();
    let (digest, _) = image(&reg, "v1", OCI, OCI);
    let at = format!("manifests/{digest}");
    let spent = Fault::Quota {
        message: "Too Many Requests",
        remaining: Some("0;w=21600"),
    };
    reg.set_fault_for_every(&at, spent);
    let hint = format!("mediatype:{OCI}");
    let out = Dist::new().run(&["fetch", &repo(&reg), &digest, &hint], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    // A quota refills: for the moment, as in a batch.
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("a pull rate limit"), "{err}");
    assert_eq!(reg.requests_for(&at), 1, "{err}");
    assert_eq!(blob_requests(&reg), Vec::<String>::new());
}

/// The 500 that sends a digest hinted as a manifest to the blobs endpoint is its first,
/// whatever its request met before it: a passing 503 first (the registry restarting) left
/// the first request spent, and the 500 after it was retried on the manifests endpoint
/// until it failed, the blob never asked for. A manifest the blobs endpoint does not have
/// is asked for again with the retries the 503s left: `--retries 3`, four attempts in all.
#[test]
fn a_500_after_a_503_still_asks_the_blobs_endpoint() {
    let reg = FakeRegistry::start();
    let layer = b"a layer, not a manifest";
    let digest = reg.blob("team/app", layer);
    let at = format!("manifests/{digest}");
    reg.push_fault(&at, Fault::Status(503));
    reg.set_fault_for_every(&at, Fault::Status(500));
    let hint = format!("mediatype:{OCI}");
    let out = Dist::new().ok(&["fetch", &repo(&reg), &digest, &hint]);
    assert_eq!(out, layer);
    assert_eq!(reg.requests_for(&at), 2);
    assert_eq!(blob_requests(&reg).len(), 1);

    let reg = FakeRegistry::start();
    let (digest, _) = image(&reg, "v1", OCI, OCI);
    let at = format!("manifests/{digest}");
    reg.push_fault(&at, Fault::Status(503));
    reg.push_fault(&at, Fault::Status(503));
    reg.set_fault_for_every(&at, Fault::Status(500));
    let args = ["fetch", "--retries", "3", &repo(&reg), &digest, &hint];
    let out = Dist::new().run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    // A 500 past the retries is for the moment, as in a batch.
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("500 Internal Server Error"), "{err}");
    assert!(err.contains("gave up after 4 attempts"), "{err}");
    assert_eq!(reg.requests_for(&at), 4, "{err}");
    assert_eq!(blob_requests(&reg).len(), 1, "{err}");
}

/// A token server answering 500 fails a digest hinted as a manifest once, as it fails any
/// other object: that 500 is no registry's answer for a blob's digest, and says nothing of
/// the blobs endpoint, whose request met the same token server with retries of its own.
/// `--retries 1`: two token requests; the blobs endpoint asked after them made it four.
#[test]
fn a_token_server_s_500_does_not_send_a_manifest_to_the_blobs_endpoint() {
    let reg = FakeRegistry::builder()
        .auth(support::fake::Auth::bearer(std::time::Duration::from_secs(
            300,
        )))
        .start();
    let (digest, _) = image(&reg, "v1", OCI, OCI);
    reg.set_fault_for_every("/token", Fault::Status(500));
    let hint = format!("mediatype:{OCI}");
    let args = ["--retries", "1", "fetch", &repo(&reg), &digest, &hint];
    let out = Dist::new().run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("token request answered 500"), "{err}");
    let tokens = reg.requests().into_iter().filter(|r| r.path == "/token");
    assert_eq!(tokens.count(), 2, "{err}");
    assert_eq!(blob_requests(&reg), Vec::<String>::new(), "{err}");
}

/// A blob's digest hinted as a manifest whose blobs endpoint refuses it (a 403, as a
/// storage a blob redirects to answers a signature past its time) after the manifests
/// endpoint's 500: the refusal is what the user is told, and the manifests endpoint is not
/// asked again. The 500 is docker-registry failing to read a blob as a manifest; the blobs
/// endpoint's answer is the registry's own about where the content is.
#[test]
fn a_refusal_on_the_blobs_endpoint_after_a_500_is_the_one_reported() {
    let reg = FakeRegistry::start();
    let digest = reg.blob("team/app", b"a layer, not a manifest");
    let at = format!("manifests/{digest}");
    reg.set_fault_for_every(&at, Fault::Status(500));
    let blob_at = format!("blobs/{digest}");
    reg.set_fault_for_every(&blob_at, Fault::Status(403));
    let hint = format!("mediatype:{OCI}");
    let out = Dist::new().run(&["fetch", &repo(&reg), &digest, &hint], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("/v2/team/app/{blob_at}")), "{err}");
    assert!(err.contains("403 Forbidden"), "{err}");
    assert!(!err.contains("Internal Server Error"), "{err}");
    assert_eq!(reg.requests_for(&at), 1, "{err}");
    assert_eq!(blob_requests(&reg).len(), 1, "{err}");
}
