//! `dist fetch` (one object to stdout) against a real `docker-registry` in every auth mode.

mod support;

use std::collections::BTreeSet;

use support::cli::{bytes, sha256, write_program, Dist};
use support::registry::{Mode, Registry, RegistryOptions};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A small image: config + three layers, pushed as an OCI manifest under `v1`.
struct Image {
    manifest: Vec<u8>,
    manifest_digest: String,
    blobs: Vec<(String, Vec<u8>)>,
}

fn push_image(reg: &Registry, repo: &str, tag: &str, media_type: &str, seed: u64) -> Image {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let mut blobs = vec![(reg.push_blob(repo, &config), config)];
    for (i, len) in [1000usize, 70_000, 300_000].into_iter().enumerate() {
        let data = bytes(seed * 10 + i as u64, len);
        blobs.push((reg.push_blob(repo, &data), data));
    }
    let layer_type = if media_type == OCI_MANIFEST {
        "application/vnd.oci.image.layer.v1.tar"
    } else {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    };
    let config_type = if media_type == OCI_MANIFEST {
        "application/vnd.oci.image.config.v1+json"
    } else {
        "application/vnd.docker.container.image.v1+json"
    };
    let layers: Vec<String> = blobs[1..]
        .iter()
        .map(|(d, b)| {
            format!(
                r#"{{"mediaType":"{layer_type}","digest":"{d}","size":{}}}"#,
                b.len()
            )
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"{config_type}","digest":"{}","size":{}}},"layers":[{}]}}"#,
        blobs[0].0,
        blobs[0].1.len(),
        layers.join(",")
    )
    .into_bytes();
    let manifest_digest = reg.push_manifest(repo, tag, media_type, &manifest);
    assert_eq!(manifest_digest, sha256(&manifest));
    Image {
        manifest,
        manifest_digest,
        blobs,
    }
}

fn client_for(reg: &Registry) -> Dist {
    let dist = Dist::new();
    if reg.mode() == Mode::Basic {
        dist.login(&reg.host(), reg.user(), reg.password());
    }
    dist
}

/// The three incantations of the original prototype, byte for byte, in one mode.
fn incantations(mode: Mode) {
    let reg = Registry::start(mode);
    let repo = format!("{}/team/app", reg.host());
    let image = push_image(&reg, "team/app", "v1", OCI_MANIFEST, 1);
    let dist = client_for(&reg);

    // 1. A manifest by tag, with a media type hint.
    let hint = format!("mediatype:{OCI_MANIFEST}");
    assert_eq!(dist.ok(&["fetch", &repo, "v1", &hint]), image.manifest);
    // 2. The same by digest.
    assert_eq!(
        dist.ok(&["fetch", &repo, &image.manifest_digest, &hint]),
        image.manifest
    );
    assert_eq!(
        dist.ok(&["fetch", &repo, &image.manifest_digest]),
        image.manifest
    );
    // Every blob by digest.
    for (digest, data) in &image.blobs {
        let got = dist.ok(&["fetch", &repo, digest]);
        assert_eq!(sha256(&got), *digest);
        assert_eq!(&got, data);
    }
    // 3. Every layer through jq and xargs -P10, each output hashed.
    let script = format!(
        "set -e; \"$DIST\" fetch {repo} v1 {hint} | jq -r '.layers[].digest' | \
         xargs -n1 -P10 sh -c '\"$DIST\" fetch {repo} \"$0\" | sha256sum | sed \"s/ .*//\"'"
    );
    let out = dist
        .command(&[])
        .env("DIST", Dist::bin())
        .arg0_shell(&script);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| format!("sha256:{l}"))
        .collect();
    let want: BTreeSet<String> = image.blobs[1..].iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(got, want);

    // The worker's way and `dist pull`, as the README writes them.
    let work = tempfile::tempdir().unwrap();
    let script = format!(
        "set -e; \"$DIST\" fetch {repo} v1 {hint} \\\n  | jq -c '.config, .layers[]' | \
         \"$DIST\" fetch {repo} - -o ./image\n\"$DIST\" pull {repo}:v1 -o ./pulled"
    );
    let out = dist
        .command(&[])
        .env("DIST", Dist::bin())
        .current_dir(work.path())
        .arg0_shell(&script);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for layout in ["image", "pulled"] {
        for (digest, data) in &image.blobs {
            let path = work
                .path()
                .join(layout)
                .join("blobs/sha256")
                .join(&digest[7..]);
            assert!(std::fs::read(&path).unwrap() == *data, "{layout}: {digest}");
        }
    }
    let pulled = work
        .path()
        .join("pulled/blobs/sha256")
        .join(&image.manifest_digest[7..]);
    assert_eq!(std::fs::read(pulled).unwrap(), image.manifest);
}

/// `Command` built by `Dist::command` runs the binary; this runs a shell line instead, in the
/// same isolated environment.
trait ShellExt {
    fn arg0_shell(&mut self, script: &str) -> std::process::Output;
}

impl ShellExt for std::process::Command {
    fn arg0_shell(&mut self, script: &str) -> std::process::Output {
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(script);
        if let Some(dir) = self.get_current_dir() {
            sh.current_dir(dir);
        }
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        sh.output().expect("run sh")
    }
}

#[test]
fn incantations_anonymous() {
    incantations(Mode::Anonymous);
}

#[test]
fn incantations_basic_auth() {
    incantations(Mode::Basic);
}

#[test]
fn incantations_bearer_token() {
    incantations(Mode::Token);
}

#[test]
fn docker_manifest_by_tag_without_hint_uses_default_accept() {
    let reg = Registry::start(Mode::Token);
    let image = push_image(&reg, "lib/docker", "latest", DOCKER_MANIFEST, 2);
    let dist = Dist::new();
    let repo = format!("{}/lib/docker", reg.host());
    assert_eq!(dist.ok(&["fetch", &repo, "latest"]), image.manifest);
    // An OCI manifest also needs the default Accept list to be served by registry 2.8.
    let oci = push_image(&reg, "lib/docker", "oci", OCI_MANIFEST, 3);
    assert_eq!(dist.ok(&["fetch", &repo, "oci"]), oci.manifest);
}

/// Asked for a type it does not have for a tag, docker-registry converts the manifest to
/// signed schema 1, whose digest cannot be checked against what is served. That must fail
/// up front and say why, not stream the bytes and call them corrupt at the end.
#[test]
fn a_schema1_fallback_is_refused_before_any_byte() {
    let reg = Registry::start(Mode::Anonymous);
    let repo_name = "lib/single";
    // The conversion needs a config with a history entry per layer.
    let layer = bytes(41, 5000);
    let layer_digest = reg.push_blob(repo_name, &layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"history":[{{"created":"2024-01-01T00:00:00Z","created_by":"test"}}]}}"#
    );
    let config_digest = reg.push_blob(repo_name, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    reg.push_manifest(repo_name, "v1", DOCKER_MANIFEST, manifest.as_bytes());
    let repo = format!("{}/{repo_name}", reg.host());
    let dist = Dist::new();
    let hint = "mediatype:application/vnd.oci.image.index.v1+json";
    let out = dist.run(&["fetch", &repo, "v1", hint], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{} bytes on stdout",
        out.stdout.len()
    );
    assert!(
        err.contains("signed Docker schema 1 manifest") && !err.contains("digest mismatch"),
        "{err}"
    );
    // The worker reports it as a missing object, and goes on (frames come in completion
    // order).
    let out = dist.run(
        &["fetch", &repo, "-"],
        format!("v1 {hint}\nv1\n").as_bytes(),
    );
    let frames = String::from_utf8_lossy(&out.stdout);
    assert!(
        frames
            .lines()
            .any(|l| l.starts_with("v1 error ") && l.contains("schema 1")),
        "{frames}"
    );
    assert!(frames.contains(&manifest), "{frames}");
    // Asked for by name (as `pull` asks for the type a HEAD announced), it is no fallback.
    let by_name = "mediatype:application/vnd.docker.distribution.manifest.v1+prettyjws";
    let err = dist.fails(1, &["fetch", &repo, "v1", by_name], b"");
    assert!(
        err.contains("the manifest is a signed Docker schema 1") && !err.contains("fallback"),
        "{err}"
    );
}

#[test]
fn basic_auth_without_credentials_fails_clearly() {
    let reg = Registry::start(Mode::Basic);
    let image = push_image(&reg, "team/app", "v1", OCI_MANIFEST, 4);
    let repo = format!("{}/team/app", reg.host());
    let out = Dist::new().run(&["fetch", &repo, &image.blobs[1].0], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&image.blobs[1].0), "names the object: {err}");
    assert!(
        err.contains(&format!("http://{}/v2/team/app/blobs/", reg.host())),
        "names the URL: {err}"
    );
    assert!(err.contains("no credentials"), "says why: {err}");
    assert!(out.stdout.is_empty());

    // Wrong password: rejected, naming where it came from and what to do.
    let (err, config) = fetch_with_a_wrong_password(&reg, &repo, &image.blobs[1].0);
    assert!(
        err.contains(&format!(
            "refused the credentials from {}",
            config.display()
        )) && err.contains(&format!("docker login {}", reg.host())),
        "{err}"
    );
}

/// Fetches `object` with a wrong password in `config.json`; checks that it fails and that the
/// password stays out of the message. Returns the message and the file's path.
fn fetch_with_a_wrong_password(
    reg: &Registry,
    repo: &str,
    object: &str,
) -> (String, std::path::PathBuf) {
    let dist = Dist::new();
    dist.login(&reg.host(), reg.user(), "not-the-password");
    let out = dist.run(&["fetch", repo, object], b"");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    (err, dist.config_dir().join("config.json"))
}

/// A token server that refuses the credentials says so in its own words, which rarely
/// name the file they came from or the fix; dist's message does.
#[test]
fn a_token_server_refusing_credentials_names_their_file() {
    let reg = Registry::start(Mode::Token);
    let image = push_image(&reg, "team/app", "v1", OCI_MANIFEST, 5);
    let repo = format!("{}/team/app", reg.host());
    let (err, config) = fetch_with_a_wrong_password(&reg, &repo, &image.blobs[1].0);
    assert!(
        err.contains(&format!(
            "{} refused the credentials from {}",
            reg.host(),
            config.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("bad credentials") && err.contains("401"),
        "keeps the server's words: {err}"
    );
    assert!(
        err.contains(&format!("docker login {}", reg.host())),
        "{err}"
    );
}

/// Credentials saved by `podman login` / `skopeo login` (`$XDG_RUNTIME_DIR/containers/
/// auth.json`, or the file `REGISTRY_AUTH_FILE` names) are used when Docker's file has none;
/// Docker's file, when it has an entry, answers first.
#[test]
fn credentials_from_the_containers_tools_auth_json() {
    use base64::Engine as _;
    let reg = Registry::start(Mode::Basic);
    let image = push_image(&reg, "team/app", "v1", OCI_MANIFEST, 6);
    let repo = format!("{}/team/app", reg.host());
    let blob = &image.blobs[1];
    let entry = |password: &str| {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", reg.user()));
        // The containers tools may key an entry by repository, not only by host.
        format!(r#"{{"auths":{{"{repo}":{{"auth":"{auth}"}}}}}}"#)
    };

    // podman's runtime file.
    let dist = Dist::new();
    let runtime = dist.runtime_dir().join("containers");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::write(runtime.join("auth.json"), entry(reg.password())).unwrap();
    assert_eq!(dist.ok(&["fetch", &repo, &blob.0]), blob.1);
    // Docker's file answers first: a wrong password there is what the registry sees.
    dist.login(&reg.host(), reg.user(), "not-the-password");
    let out = dist.run(&["fetch", &repo, &blob.0], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let docker_file = dist.config_dir().join("config.json");
    assert!(
        err.contains(&format!(
            "refused the credentials from {}",
            docker_file.display()
        )),
        "{err}"
    );

    // REGISTRY_AUTH_FILE, anywhere.
    let mut dist = Dist::new();
    let file = dist.config_dir().join("elsewhere.json");
    std::fs::write(&file, entry(reg.password())).unwrap();
    dist.env("REGISTRY_AUTH_FILE", file.to_str().unwrap());
    assert_eq!(dist.ok(&["fetch", &repo, &blob.0]), blob.1);
}

/// Installs `script` (a shell script's body) as the credential helper
/// `docker-credential-NAME` in a directory put first on dist's `PATH`, and names it in
/// `credHelpers` for `reg`, in place of any helper named before.
fn use_helper(dist: &mut Dist, reg: &Registry, name: &str, script: &str) {
    use_program(dist, reg, name, &format!("#!/bin/sh\n{script}"));
}

/// [`use_helper`] with the whole program given, `#!` line and all; returns its path.
fn use_program(dist: &mut Dist, reg: &Registry, name: &str, program: &str) -> std::path::PathBuf {
    let bin = dist.config_dir().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join(format!("docker-credential-{name}"));
    write_program(&helper, program);
    dist.docker_config(&format!(
        r#"{{"credHelpers":{{"{}":"{name}"}}}}"#,
        reg.host()
    ));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    dist.env("PATH", &path);
    helper
}

/// Where dist has a controlling terminal, a credential helper runs in its foreground
/// process group: one that asks for a passphrase on `/dev/tty` (a password manager's
/// CLI) would, in a group of its own, be in the terminal's background and stopped at its
/// first read, until its minute ran out. The helper here answers only where such a read
/// would go through: in the terminal's foreground group.
#[test]
fn a_helper_on_dist_s_terminal_runs_in_its_foreground() {
    let reg = Registry::start_with(RegistryOptions {
        private_prefix: Some("private/".into()),
        ..RegistryOptions::new(Mode::Token)
    });
    let image = push_image(&reg, "private/app", "v1", OCI_MANIFEST, 6);
    let repo = format!("{}/private/app", reg.host());
    let mut dist = Dist::new();
    let log = dist.config_dir().join("groups");
    // Fields 5 and 8 of /proc/PID/stat: the process group, and the terminal's foreground
    // group (-1 without a terminal).
    let script = format!(
        "read server\nawk '{{print $5, $8}}' /proc/$$/stat >> {log}\n\
         awk '{{exit !($5 == $8)}}' /proc/$$/stat || {{ echo 'in the background' >&2; exit 1; }}\n\
         printf '{{\"Username\":\"{}\",\"Secret\":\"{}\"}}'\n",
        reg.user(),
        reg.password(),
        log = log.display(),
    );
    use_helper(&mut dist, &reg, "dist-tty", &script);
    let fetched = dist.config_dir().join("manifest");
    let line = format!(
        "{} fetch {repo} v1 > {}",
        Dist::bin().display(),
        fetched.display()
    );
    let shown = dist.on_terminal(&line);
    let groups = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        shown.status.success(),
        "{}\n{}\ngroups (own, terminal's): {groups}",
        String::from_utf8_lossy(&shown.stdout),
        String::from_utf8_lossy(&shown.stderr)
    );
    assert_eq!(std::fs::read(&fetched).unwrap(), image.manifest);
    assert!(!groups.is_empty(), "the helper was not asked");
}

#[test]
fn private_repository_through_a_credential_helper() {
    let reg = Registry::start_with(RegistryOptions {
        private_prefix: Some("private/".into()),
        ..RegistryOptions::new(Mode::Token)
    });
    let image = push_image(&reg, "private/app", "v1", OCI_MANIFEST, 5);
    let repo = format!("{}/private/app", reg.host());

    // Anonymous: the token has no pull right, the registry says 401, and the message says
    // what is missing.
    let err = Dist::new().fails(1, &["fetch", &repo, "v1"], b"");
    assert!(
        err.contains("no access to the repository private/app")
            && err.contains(&format!("docker login {}", reg.host())),
        "{err}"
    );

    // A credential helper named by credHelpers answers `get` with the server on stdin.
    let mut dist = Dist::new();
    let log = dist.config_dir().join("helper.log");
    let script = format!(
        "[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{}\",\"Secret\":\"{}\"}}' \"$server\"\n",
        log.display(),
        reg.user(),
        reg.password()
    );
    use_helper(&mut dist, &reg, "dist-test", &script);
    assert_eq!(dist.ok(&["fetch", &repo, "v1"]), image.manifest);
    for (digest, data) in &image.blobs {
        assert_eq!(&dist.ok(&["fetch", &repo, digest]), data);
    }
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().next(),
        Some(reg.host().as_str())
    );

    // A helper whose secret is refused is named, since its store is where to look.
    use_helper(
        &mut dist,
        &reg,
        "dist-stale",
        "printf '{\"Username\":\"someone\",\"Secret\":\"stale-secret\"}'\n",
    );
    let err = dist.fails(2, &["fetch", &repo, "v1"], b"");
    assert!(
        err.contains("refused the credentials from credential helper docker-credential-dist-stale"),
        "{err}"
    );
    assert!(!err.contains("stale-secret"), "{err}");
}

#[test]
fn unknown_and_malformed_objects() {
    let reg = Registry::start(Mode::Anonymous);
    push_image(&reg, "team/app", "v1", OCI_MANIFEST, 6);
    let repo = format!("{}/team/app", reg.host());
    let dist = Dist::new();
    let missing = sha256(b"not pushed");
    let out = dist.run(&["fetch", &repo, &missing], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("404") && err.contains("BLOB_UNKNOWN") && err.contains(&missing),
        "{err}"
    );

    let out = dist.run(&["fetch", &repo, "nope"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MANIFEST_UNKNOWN"));

    // Malformed digests are refused before any network I/O: port 1 would refuse a connection.
    for (bad, why) in [
        ("sha256:abc", "invalid digest"),
        (
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "invalid digest",
        ),
        ("md5:x", "unsupported digest algorithm \"md5\""),
    ] {
        let out = dist.run(&["fetch", "127.0.0.1:1/x", bad], b"");
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why) && !err.contains("connect"), "{err}");
    }
}

/// `tag@digest`, as copied out of an image reference, fetches the digest (the tag says
/// nothing about the content, as Docker and containerd read it), one-shot and in a batch.
#[test]
fn tag_at_digest_fetches_the_digest() {
    let reg = Registry::start(Mode::Anonymous);
    let image = push_image(&reg, "team/app", "v1", OCI_MANIFEST, 8);
    let repo = format!("{}/team/app", reg.host());
    let dist = Dist::new();
    // A tag that does not exist: were it looked up, the fetch would fail.
    let object = format!("gone@{}", image.manifest_digest);
    assert_eq!(dist.ok(&["fetch", &repo, &object]), image.manifest);

    let (layer, content) = &image.blobs[1];
    let dir = tempfile::tempdir().unwrap();
    let report = dist.ok_fed(
        &["fetch", &repo, "-", "-o", dir.path().to_str().unwrap()],
        format!("v1@{layer}\n").as_bytes(),
    );
    let report = String::from_utf8(report).unwrap();
    assert!(report.contains(r#""status":"ok""#), "{report}");
    let hex = layer.trim_start_matches("sha256:");
    let stored = std::fs::read(dir.path().join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(&stored, content);
}

/// A host name that does not exist is a typo, not a passing fault: dist says so at once,
/// with status 2, in the resolver's words, instead of retrying for seconds. The name is one
/// the resolver refuses on every machine ([`support::no_such_host`]): `.invalid` was
/// answered so only where a DNS server answers it, and the test passed in silence elsewhere.
#[test]
fn a_host_that_does_not_exist_fails_without_retries() {
    let mut dist = Dist::new();
    dist.env("RUST_LOG", "dist=debug");
    let locator = format!("http://{}/x", support::no_such_host());
    let err = dist.fails(2, &["fetch", "--retries", "3", &locator, "latest"], b"");
    assert!(
        err.contains("failed to lookup address information: Name or service not known"),
        "{err}"
    );
    assert!(!err.contains("retrying"), "{err}");
}

/// `10.0.0.256` (an address mistyped) is no IP address, and over TLS no name a
/// certificate can be checked against: it was retried as a broken connection, 6 s with
/// the default retries, then said "invalid dns name", naming neither cause.
#[test]
fn a_host_tls_cannot_name_fails_at_once_and_says_why() {
    for locator in ["10.0.0.256:5000/team/app", "https://127.1:5000/team/app"] {
        let err = Dist::new().fails(2, &["fetch", "--retries", "3", locator, "v1"], b"");
        assert!(
            err.contains("neither an IP address nor a DNS name TLS can verify"),
            "{err}"
        );
        assert!(!err.contains("gave up after"), "not retried: {err}");
    }
}

/// A host label over the 63 bytes DNS allows is a usage error named as such, before any
/// lookup: over https, TLS refused the name with a hint about an address that "ends in a
/// number", and over http the resolver said only "Name or service not known".
#[test]
fn a_host_label_longer_than_dns_allows_is_named() {
    let long = "x".repeat(64);
    for locator in [
        format!("{long}.example/team/app"),
        format!("http://{long}.example/x"),
    ] {
        let err = Dist::new().fails(2, &["fetch", &locator, "v1"], b"");
        assert!(err.contains("DNS allows at most 63"), "{err}");
        assert!(!err.contains("ends in a number"), "{err}");
    }
}

/// A registry that cannot be reached (for the moment, as far as dist can tell) is exit
/// status 75 for the one-shot commands too, as for a batch, so that a script can tell it
/// from an object that is not there (1).
#[test]
fn unreachable_registry_names_url_and_cause() {
    let dist = Dist::new();
    let out = dist.run(&["fetch", "--retries", "0", "127.0.0.1:1/x", "latest"], b"");
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http://127.0.0.1:1/v2/x/manifests/latest"),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connect"), "{err}");

    let out = dist.run(&["resolve", "--retries", "0", "127.0.0.1:1/x:latest"], b"");
    assert_eq!(out.status.code(), Some(75));

    let reg = Registry::start(Mode::Anonymous);
    let missing = format!("{}/team/app", reg.host());
    let out = dist.run(&["fetch", &missing, "nothing-here"], b"");
    assert_eq!(out.status.code(), Some(1), "a missing object");
    let out = dist.run(&["resolve", &format!("{missing}:nothing-here")], b"");
    assert_eq!(out.status.code(), Some(1), "a missing object");
}

/// A large blob streams to stdout whole, and a reader that stops early (`| head -c`) ends
/// the fetch quietly with status 0 instead of an error or a hang.
#[test]
fn large_blob_to_stdout_and_a_reader_that_goes_away() {
    use std::io::Read;
    let reg = Registry::start(Mode::Anonymous);
    let data = bytes(77, 24 << 20);
    let digest = reg.push_blob("big/one", &data);
    let loc = format!("{}/big/one", reg.host());
    let dist = Dist::new();
    let out = dist.ok(&["fetch", &loc, &digest]);
    assert_eq!(out.len(), data.len());
    assert_eq!(sha256(&out), sha256(&data));

    let mut child = dist.spawn(&["fetch", &loc, &digest], b"");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = vec![0u8; 64 << 10];
    stdout.read_exact(&mut first).expect("the first bytes");
    assert_eq!(first, data[..first.len()]);
    drop(stdout);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait dist") {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "dist kept running after its reader went away"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "nothing to report: {err}");
}

/// Docker Desktop and `az acr login` store an identity token (an OAuth2 refresh token) in
/// `config.json`, not a password: dist trades it at the realm with the `refresh_token` grant.
/// This issuer also replies with `access_token` alone and without `expires_in`, which the
/// distribution spec allows. A refresh token the issuer refuses makes the remote unusable.
#[test]
fn an_identity_token_is_traded_for_access() {
    for invalid_grant_400 in [false, true] {
        an_identity_token_is_traded_with(invalid_grant_400);
    }
}

/// ... with a stale one refused by a `401` or, as RFC 6749 has OAuth2 servers answer, by a
/// `400` with `{"error": "invalid_grant"}`: either way the message says to log in again.
fn an_identity_token_is_traded_with(invalid_grant_400: bool) {
    let reg = Registry::start_with(RegistryOptions {
        invalid_grant_400,
        private_prefix: Some("private/".into()),
        refresh_token: Some("refresh-me".into()),
        token_reply: support::token::TokenReply::AccessTokenOnly,
        omit_expires_in: true,
        ..RegistryOptions::new(Mode::Token)
    });
    let image = push_image(&reg, "private/app", "v1", OCI_MANIFEST, 6);
    let repo = format!("{}/private/app", reg.host());
    let config = |token: &str| {
        format!(
            r#"{{"auths":{{"{}":{{"identitytoken":"{token}"}}}}}}"#,
            reg.host()
        )
    };

    let dist = Dist::new();
    dist.docker_config(&config("refresh-me"));
    assert_eq!(dist.ok(&["fetch", &repo, "v1"]), image.manifest);
    let (layer, data) = &image.blobs[3];
    assert!(dist.ok(&["fetch", &repo, layer]) == *data);

    let dist = Dist::new();
    dist.docker_config(&config("stale"));
    let out = dist.run(&["fetch", &repo, "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        !err.contains("stale"),
        "the token stays out of messages: {err}"
    );
    assert!(
        err.contains("refused the credentials from") && err.contains("docker login"),
        "{err}"
    );
}

/// An OAuth2 server that rotates its refresh tokens hands out a new one with each token and
/// takes only the newest from then on: the renewals of a long run ask with the newest, as
/// Docker does, not with the one from `config.json`, which stopped working at the first.
#[test]
fn a_rotated_refresh_token_carries_the_run_on() {
    use dist::auth::{Credential, CredentialSource};
    use dist::registry::RegistryRemote;
    use dist::retry::RetryPolicy;
    use dist::transport::{Transport, TransportOptions};
    use dist::{Hints, Object, Remote};

    let reg = Registry::start_with(RegistryOptions {
        private_prefix: Some("private/".into()),
        refresh_token: Some("refresh-me".into()),
        rotate_refresh_token: true,
        token_ttl_secs: 1,
        ..RegistryOptions::new(Mode::Token)
    });
    let image = push_image(&reg, "private/app", "v1", OCI_MANIFEST, 7);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let remote = RegistryRemote::new(
            format!("{}/private/app", reg.host()).parse().unwrap(),
            Transport::new(TransportOptions::default()).unwrap(),
            CredentialSource::Fixed(Credential::IdentityToken("refresh-me".into())),
            RetryPolicy::default(),
        );
        for (digest, data) in &image.blobs[..3] {
            let object: Object = digest.parse().unwrap();
            let mut download = remote.fetch(&object, &Hints::default()).await.unwrap();
            let got = dist::image::read_to_end(&mut download, 1 << 20)
                .await
                .unwrap();
            assert!(got == *data, "{digest}");
            // Past the token's second: the next object needs a renewed one.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
    });
    assert!(reg.token_requests() >= 3, "{}", reg.token_requests());
}

/// A run may trade one identity token at one realm from several hosts: here a hosts file
/// lists the registry itself as a pull-only host (to give it a CA, say), so the batch's
/// check and the content go there and the tag to the registry, each host with its own
/// authorizer. The refresh token the first one's grant rotated is the one the second must
/// send: the rotating server no longer takes the one from `config.json`.
#[test]
fn a_rotated_refresh_token_serves_every_host_of_the_run() {
    let reg = Registry::start_with(RegistryOptions {
        private_prefix: Some("private/".into()),
        refresh_token: Some("refresh-me".into()),
        rotate_refresh_token: true,
        ..RegistryOptions::new(Mode::Token)
    });
    let image = push_image(&reg, "private/app", "v1", OCI_MANIFEST, 9);
    let hosts = tempfile::tempdir().unwrap();
    let folder = hosts.path().join(reg.host());
    std::fs::create_dir_all(&folder).unwrap();
    let toml = format!("[host.\"{}\"]\n  capabilities = [\"pull\"]\n", reg.url());
    std::fs::write(folder.join("hosts.toml"), toml).unwrap();
    let dist = Dist::new();
    dist.docker_config(&format!(
        r#"{{"auths":{{"{}":{{"identitytoken":"refresh-me"}}}}}}"#,
        reg.host()
    ));
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("image");
    dist.ok(&[
        "pull",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
        &format!("{}/private/app:v1", reg.host()),
        "-o",
        layout.to_str().unwrap(),
    ]);
    let stored = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(support::cli::hex(&image.manifest_digest)),
    )
    .unwrap();
    assert!(stored == image.manifest);
}

/// A helper on PATH that cannot start (its `#!` names an interpreter that is not there)
/// is not said to be missing: the system's "No such file or directory" is the same as for
/// a program not installed, and told so, its user looked for a helper that is there.
#[test]
fn a_helper_whose_interpreter_is_missing_is_not_told_as_not_installed() {
    let reg = Registry::start_with(RegistryOptions {
        private_prefix: Some("private/".into()),
        ..RegistryOptions::new(Mode::Token)
    });
    let repo = format!("{}/private/app", reg.host());
    let mut dist = Dist::new();
    let program = "#!/nonexistent/interpreter\nexit 0\n";
    let helper = use_program(&mut dist, &reg, "broken", program);
    let err = dist.fails(2, &["fetch", &repo, "v1"], b"");
    assert!(!err.contains("not installed"), "{err}");
    assert!(
        err.contains(&format!("running credential helper {}", helper.display()))
            && err.contains("interpreter"),
        "{err}"
    );
    assert!(err.contains("credHelpers"), "{err}");
}
