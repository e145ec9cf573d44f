//! Mirrors: `--mirror` and containerd-style `hosts.toml`, tried in order, each only for
//! what it may serve, with fallback to the registry itself and credentials per host.

mod support;

use base64::Engine as _;
use support::cli::{blob_file, bytes, sha256, Dist};
use support::fake::{Auth, FakeRegistry, Fault, Recorder};
use support::registry::{Mode, Registry};

/// A `dist` reading its hosts files from `dir` (`DIST_HOSTS_DIR`), as a user pointing it
/// at a containerd-style hosts directory.
fn dist_with_hosts(dir: &tempfile::TempDir) -> Dist {
    let mut dist = Dist::new();
    dist.env("DIST_HOSTS_DIR", dir.path().to_str().unwrap());
    dist
}

fn hosts_dir(registry: &str, toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join(registry);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("hosts.toml"), toml).unwrap();
    dir
}

/// A hosts directory for `registry.invalid`: its `server` at `upstream` may only resolve
/// tags, and the mirror before it at `mirror` may only pull content by digest.
fn resolve_only_behind_a_pulling_mirror(upstream: &str, mirror: &str) -> tempfile::TempDir {
    hosts_dir(
        "registry.invalid",
        &format!(
            "server = \"{upstream}\"\ncapabilities = [\"resolve\"]\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\"]\n"
        ),
    )
}

#[test]
fn real_registries_mirror_then_fallback_then_mirror_down() {
    let upstream = Registry::start(Mode::Anonymous);
    let mirror = Registry::start(Mode::Anonymous);
    let both = bytes(1, 30_000);
    let only_upstream = bytes(2, 40_000);
    let d_both = upstream.push_blob("team/app", &both);
    mirror.push_blob("team/app", &both);
    let d_up = upstream.push_blob("team/app", &only_upstream);
    let repo = format!("{}/team/app", upstream.host());
    let mirror_url = format!("http://{}", mirror.host());
    let dist = Dist::new();

    let input = format!("{d_both}\n{d_up}\n");
    let out = dist.run(
        &["fetch", "--mirror", &mirror_url, &repo, "-", "--ordered"],
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = support::cli::parse_frames(&out.stdout);
    assert_eq!(frames[0].result.as_ref().unwrap().2, both);
    assert_eq!(
        frames[1].result.as_ref().unwrap().2,
        only_upstream,
        "missing on the mirror: from the registry"
    );

    // The mirror goes away: everything still comes, from the registry.
    drop(mirror);
    let out = dist.ok_fed(
        &[
            "fetch",
            "--retries",
            "1",
            "--mirror",
            &mirror_url,
            &repo,
            "-",
        ],
        input.as_bytes(),
    );
    assert_eq!(support::cli::parse_frames(&out).len(), 2);
    assert_eq!(
        sha256(&dist.ok(&["fetch", "--mirror", &mirror_url, &repo, &d_up])),
        d_up
    );
}

/// A registry and a mirror holding the same three blobs of 2000 bytes (`seed`, `seed + 1`,
/// `seed + 2`), and their digests.
fn mirrored_blobs(seed: u64) -> (FakeRegistry, FakeRegistry, Vec<String>) {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let digests = (0..3)
        .map(|n| {
            let blob = bytes(seed + n, 2000);
            mirror.blob("team/app", &blob);
            upstream.blob("team/app", &blob)
        })
        .collect();
    (upstream, mirror, digests)
}

/// Fetches `digests` from `upstream`'s repository through `mirror` as one batch on `jobs`
/// jobs, with the global `options` before the command; every object must arrive. Returns
/// the run's stderr.
fn batch_through_mirror(
    upstream: &FakeRegistry,
    mirror: &FakeRegistry,
    digests: &[String],
    options: &[&str],
    jobs: &str,
) -> String {
    let repo = format!("{}/team/app", upstream.host());
    let input = digests.join("\n") + "\n";
    let mirror = mirror.url();
    let mut args = options.to_vec();
    args.extend(["fetch", "--mirror", &mirror, &repo, "-", "-j", jobs]);
    let out = Dist::new().run(&args, input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let frames = support::cli::parse_frames(&out.stdout);
    assert_eq!(frames.len(), digests.len(), "{err}");
    err
}

/// How many times `reg` was asked for each of `digests`.
fn asked(reg: &FakeRegistry, digests: &[String]) -> Vec<usize> {
    digests
        .iter()
        .map(|d| reg.requests_for(&format!("blobs/{d}")))
        .collect()
}

/// A mirror that leaves one request unanswered within the idle timeout (a cache fetching a
/// large blob from its upstream) hands that object to the registry and serves the next
/// ones: before, that one slow answer marked it down for the rest of the run, and every
/// later object went to the registry (to Docker Hub's pull limits, for a cache in front of
/// it). A mirror that leaves request after request unanswered is still skipped.
#[test]
fn a_mirror_slow_to_answer_once_stays_in_use() {
    // The idle timeout well above what a loaded machine takes to answer, and the slow
    // answer well above the timeout.
    let slow = Fault::SlowHead(std::time::Duration::from_secs(6));
    let run = |slow_for: usize| {
        let (upstream, mirror, digests) = mirrored_blobs(40);
        for digest in &digests[..slow_for] {
            mirror.push_fault(digest, slow.clone());
        }
        let options = ["--retries", "0", "--idle-timeout", "2s"];
        batch_through_mirror(&upstream, &mirror, &digests, &options, "1");
        (asked(&mirror, &digests), asked(&upstream, &digests))
    };
    assert_eq!(run(1), (vec![1, 1, 1], vec![1, 0, 0]), "slow once");
    assert_eq!(run(3), (vec![1, 1, 0], vec![1, 1, 1]), "slow every time");
}

/// A mirror that answers 429 or 503 with `Retry-After` (a cache over its quota) is left
/// alone for that long, and the registry serves meanwhile: the object it answered goes
/// there at once, and the next ones do not ask the mirror. Before, each object waited out
/// the mirror's pause and asked it again before going to the registry: a throttled
/// mirror made every object of the run take its `Retry-After` twice.
#[test]
fn a_mirror_that_asks_to_be_left_alone_is_passed_over() {
    for status in [429, 503] {
        let (upstream, mirror, digests) = mirrored_blobs(60);
        for digest in &digests {
            let asked = Fault::StatusWithRetryAfter(status, "30".into());
            mirror.set_fault_for_every(digest, asked);
        }
        let err = batch_through_mirror(&upstream, &mirror, &digests, &[], "1");
        assert_eq!(asked(&mirror, &digests), [1, 0, 0], "{status}: {err}");
        assert_eq!(asked(&upstream, &digests), [1, 1, 1], "{status}: {err}");
    }
}

/// A mirror's body that breaks while the mirror asks to be left alone (another object's
/// 429 with `Retry-After`) has its rest served by the registry at once, as the objects
/// after it are. Before, asking the mirror for the rest waited out its pause first: 59 s
/// here, for 1000 bytes the registry had.
///
/// The mirror asked again for the rest tells the old fault, but a rest that waited out
/// the pause and then went to the registry only the run's length tells: so the pause is
/// the longest dist waits out, and the bound far over the second or two the run takes.
#[test]
fn a_body_broken_while_its_mirror_is_paused_is_handed_over_at_once() {
    let (upstream, mirror, digests) = mirrored_blobs(70);
    let stall = std::time::Duration::from_secs(3);
    mirror.push_fault(&digests[0], Fault::StallAfter(1000, stall));
    mirror.push_fault(&digests[1], Fault::StatusWithRetryAfter(429, "59".into()));
    let started = std::time::Instant::now();
    let err = batch_through_mirror(&upstream, &mirror, &digests, &["--idle-timeout", "1s"], "2");
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(45), "{took:?}: {err}");
    assert_eq!(asked(&mirror, &digests), [1, 1, 0], "{err}");
    assert_eq!(asked(&upstream, &digests), [1, 1, 1], "{err}");
}

/// A mirror whose blob store (a redirect's target) asks to be left alone is passed over
/// as a mirror that asks itself is, and the store's pause is the store's: the registry's
/// own redirect there waits it out instead of drawing another 429.
#[test]
fn a_mirror_s_blob_store_asking_to_be_left_alone_is_paused_as_itself() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let store = FakeRegistry::start();
    let data = bytes(5, 3000);
    let digest = upstream.blob("team/app", &data);
    store.blob("team/app", &data);
    let location = format!("{}/v2/team/app/blobs/{digest}?sig=abc", store.url());
    for reg in [&upstream, &mirror] {
        let location = location.clone();
        reg.set_fault_for_every(
            &digest,
            Fault::Redirect {
                status: 307,
                location,
            },
        );
    }
    store.push_fault(&digest, Fault::StatusWithRetryAfter(429, "2".into()));
    let repo = format!("{}/team/app", upstream.host());
    let started = std::time::Instant::now();
    let out = Dist::new().run(&["fetch", "--mirror", &mirror.url(), &repo, &digest], b"");
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(out.stdout == data);
    let asked = |reg: &FakeRegistry| reg.requests_for(&format!("blobs/{digest}"));
    assert_eq!([asked(&mirror), asked(&upstream), asked(&store)], [1, 1, 2]);
    assert!(
        took >= std::time::Duration::from_millis(1500),
        "the store's pause held: {took:?}"
    );
}

/// A hosts file's mirror written with a query (`?token=…`) is asked without it, as
/// containerd asks it: that is said, the query unshown, not left for the user to find
/// out from a mirror passed over without a word.
#[test]
fn a_hosts_file_mirror_with_a_query_is_warned_about() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(4, 3000);
    let digest = upstream.blob("team/app", &blob);
    mirror.blob("team/app", &blob);
    let dir = hosts_dir(
        &upstream.host(),
        &format!("[host.\"{}/?token=tokSECRET\"]\n", mirror.url()),
    );
    let dist = dist_with_hosts(&dir);
    let repo = format!("{}/team/app", upstream.host());
    let out = dist.run(&["fetch", &repo, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, blob);
    assert!(
        err.contains(&format!("names \"{}/?…\"", mirror.url()))
            && err.contains("a query would never be sent"),
        "{err}"
    );
    assert!(!err.contains("tokSECRET"), "{err}");
    // Still used, as containerd uses it: without the query.
    assert_eq!(mirror.requests_for(&format!("blobs/{digest}")), 1);
    let quiet = dist.run(&["--quiet", "fetch", &repo, &digest], b"");
    assert!(quiet.stderr.is_empty(), "{quiet:?}");
}

/// A fragment (`#…`) is never sent either, and was dropped without a word: said as a
/// query is, and the mirror asked without it.
#[test]
fn a_hosts_file_mirror_with_a_fragment_is_warned_about() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(5, 3000);
    let digest = upstream.blob("team/app", &blob);
    mirror.blob("team/app", &blob);
    let named = format!("{}/#cache", mirror.url());
    let dir = hosts_dir(&upstream.host(), &format!("[host.\"{named}\"]\n"));
    let repo = format!("{}/team/app", upstream.host());
    let out = dist_with_hosts(&dir).run(&["fetch", &repo, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, blob);
    assert!(
        err.contains(&format!("names {named:?}")) && err.contains("a fragment (`#…`) is never"),
        "{err}"
    );
    assert_eq!(mirror.requests_for(&format!("blobs/{digest}")), 1);
}

#[test]
fn mirror_serves_what_it_has_and_only_what_it_may() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let mt = "application/vnd.oci.image.manifest.v1+json";
    upstream.manifest("team/app", "v1", mt, manifest);
    mirror.manifest("team/app", "v1", mt, manifest);
    let blob = bytes(3, 5000);
    let digest = upstream.blob("team/app", &blob);
    mirror.blob("team/app", &blob);
    let dir = hosts_dir(
        &upstream.host(),
        &format!("[host.\"{}\"]\n  capabilities = [\"pull\"]\n", mirror.url()),
    );
    let dist = dist_with_hosts(&dir);
    let repo = format!("{}/team/app", upstream.host());
    assert_eq!(dist.ok(&["fetch", &repo, &digest]), blob);
    assert_eq!(dist.ok(&["fetch", &repo, "v1"]), manifest);
    let blob_path = format!("blobs/{digest}");
    assert_eq!(mirror.requests_for(&blob_path), 1, "digest from the mirror");
    assert_eq!(upstream.requests_for(&blob_path), 0);
    assert_eq!(
        mirror.requests_for("manifests/v1"),
        0,
        "no resolve capability: tags go upstream"
    );
    assert_eq!(upstream.requests_for("manifests/v1"), 1);
    let ns: Vec<_> = mirror
        .requests()
        .into_iter()
        .filter_map(|r| r.query)
        .collect();
    assert!(
        ns.iter()
            .all(|q| q.contains(&format!("ns={}", upstream.host()))),
        "{ns:?}"
    );
}

#[test]
fn credentials_are_looked_up_per_host_and_never_cross() {
    let upstream = FakeRegistry::builder()
        .auth(Auth::basic("up-user", "up-pass"))
        .start();
    let mirror = FakeRegistry::builder()
        .auth(Auth::basic("mirror-user", "mirror-pass"))
        .start();
    let blob = bytes(4, 7000);
    let in_both = upstream.blob("team/app", &blob);
    mirror.blob("team/app", &blob);
    let only_up = upstream.blob("team/app", bytes(5, 3000));
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let dist = Dist::new();
    dist.docker_config(&format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}},"{}":{{"auth":"{}"}}}}}}"#,
        upstream.host(),
        b64("up-user:up-pass"),
        mirror.host(),
        b64("mirror-user:mirror-pass")
    ));
    let repo = format!("{}/team/app", upstream.host());
    let input = format!("{in_both}\n{only_up}\n");
    let out = dist.run(
        &["fetch", "--mirror", &mirror.url(), &repo, "-"],
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up_cred = format!("Basic {}", b64("up-user:up-pass"));
    let mirror_cred = format!("Basic {}", b64("mirror-user:mirror-pass"));
    for r in mirror.requests() {
        assert_ne!(
            r.authorization.as_deref(),
            Some(up_cred.as_str()),
            "registry credential sent to the mirror"
        );
    }
    for r in upstream.requests() {
        assert_ne!(
            r.authorization.as_deref(),
            Some(mirror_cred.as_str()),
            "mirror credential sent to the registry"
        );
    }
    assert!(mirror
        .requests()
        .iter()
        .any(|r| r.authorization.as_deref() == Some(mirror_cred.as_str())));
    assert!(upstream
        .requests()
        .iter()
        .any(|r| r.authorization.as_deref() == Some(up_cred.as_str())));
}

/// A hosts file's `server` elsewhere (a pull-through cache standing in for the registry)
/// is sent its own login, as containerd sends it, never the registry's.
#[test]
fn a_server_elsewhere_gets_its_own_credentials_not_the_registrys() {
    let cache = FakeRegistry::builder()
        .auth(Auth::basic("cache-user", "cache-pass"))
        .start();
    let blob = bytes(8, 9000);
    let digest = cache.blob("team/app", &blob);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut dist = Dist::new();
    dist.docker_config(&format!(
        r#"{{"auths":{{"registry.invalid":{{"auth":"{}"}},"{}":{{"auth":"{}"}}}}}}"#,
        b64("hub-user:hub-pass"),
        cache.host(),
        b64("cache-user:cache-pass")
    ));
    let dir = hosts_dir(
        "registry.invalid",
        &format!("server = \"{}\"\n", cache.url()),
    );
    dist.env("DIST_HOSTS_DIR", dir.path().to_str().unwrap());
    assert_eq!(
        dist.ok(&["fetch", "registry.invalid/team/app", &digest]),
        blob
    );
    let sent: Vec<_> = cache
        .requests()
        .into_iter()
        .filter_map(|r| r.authorization)
        .collect();
    assert!(!sent.is_empty());
    assert!(
        sent.iter()
            .all(|a| a == &format!("Basic {}", b64("cache-user:cache-pass"))),
        "{sent:?}"
    );
}

#[test]
fn corrupt_copy_on_a_mirror_is_fetched_again_from_the_registry() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(6, 50_000);
    let digest = upstream.blob("team/app", &blob);
    mirror.blob("team/app", &blob);
    mirror.set_fault_for_every(&digest, support::fake::Fault::CorruptByte(100));
    let repo = format!("{}/team/app", upstream.host());
    let dir = tempfile::tempdir().unwrap();
    let out = Dist::new().run(
        &[
            "fetch",
            "--mirror",
            &mirror.url(),
            &repo,
            "-",
            "-o",
            dir.path().to_str().unwrap(),
        ],
        format!("{digest}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = blob_file(dir.path(), &digest);
    assert_eq!(std::fs::read(stored).unwrap(), blob);
    let path = format!("blobs/{digest}");
    assert_eq!(
        mirror.requests_for(&path),
        1,
        "the mirror's corrupt copy once"
    );
    assert_eq!(upstream.requests_for(&path), 1, "then the registry's");
}

/// `[header]` in `hosts.toml`: the file's own for the registry, a host's for that mirror;
/// each goes to its host only, and not along a redirect to another (a storage backend
/// must not see what may be an API key).
#[test]
fn configured_headers_reach_their_host_and_no_other() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let on_mirror = bytes(4, 5000);
    let on_upstream = bytes(5, 6000);
    let mirrored = mirror.blob("team/app", &on_mirror);
    let redirected = upstream.blob("team/app", &on_upstream);
    let cdn = Recorder::serving(&on_upstream);
    upstream.set_fault_for_every(
        &redirected,
        Fault::Redirect {
            status: 307,
            location: format!("{}/cdn/{redirected}", cdn.url()),
        },
    );
    let toml = format!(
        "[header]\n  x-registry-key = \"up-secret\"\n\n\
         [host.\"{}\"]\n  capabilities = [\"pull\"]\n\
         [host.\"{}\".header]\n  x-mirror-key = [\"m1\", \"m2\"]\n",
        mirror.url(),
        mirror.url()
    );
    let dir = hosts_dir(&upstream.host(), &toml);
    let dist = dist_with_hosts(&dir);
    let repo = format!("{}/team/app", upstream.host());
    assert_eq!(dist.ok(&["fetch", &repo, &mirrored]), on_mirror);
    // Not on the mirror: the registry answers with a redirect to the CDN. With the HTTP
    // stack's own logs on, the configured value still appears nowhere.
    let out = dist.run(&["fetch", &repo, &redirected, "-vv"], b"");
    assert_eq!(out.stdout, on_upstream);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("redirect"), "the log is on: {log}");
    assert!(!log.contains("up-secret"), "{log}");

    let values = |h: &http::HeaderMap, name: &str| -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    let at_mirror = mirror.requests();
    assert!(!at_mirror.is_empty());
    for r in &at_mirror {
        assert_eq!(values(&r.headers, "x-mirror-key"), ["m1", "m2"]);
        assert!(values(&r.headers, "x-registry-key").is_empty());
    }
    let at_upstream = upstream.requests();
    assert!(!at_upstream.is_empty());
    for r in &at_upstream {
        assert_eq!(values(&r.headers, "x-registry-key"), ["up-secret"]);
        assert!(values(&r.headers, "x-mirror-key").is_empty());
    }
    let at_cdn = cdn.requests();
    assert_eq!(at_cdn.len(), 1);
    assert!(values(&at_cdn[0].headers, "x-registry-key").is_empty());
}

/// A `User-Agent` configured in `hosts.toml`'s `[header]` (a registry or a CDN in front of
/// it that lets through only agents it knows) is the one its host gets, alone, as
/// containerd's replaces its own: sent beside dist's, a server that reads the first
/// (Go's `Header.Get`) saw `dist/<version>` and never the one configured.
#[test]
fn a_configured_user_agent_replaces_dist_s() {
    let reg = FakeRegistry::start();
    let blob = bytes(8, 5000);
    let digest = reg.blob("team/app", &blob);
    let dir = hosts_dir(&reg.host(), "[header]\n  User-Agent = \"corp-agent/1\"\n");
    let dist = dist_with_hosts(&dir);
    let repo = format!("{}/team/app", reg.host());
    assert_eq!(dist.ok(&["fetch", &repo, &digest]), blob);
    let requests = reg.requests();
    assert!(!requests.is_empty());
    for r in requests {
        let agents: Vec<_> = r
            .headers
            .get_all("user-agent")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(agents, ["corp-agent/1"], "{} {}", r.method, r.path);
    }
}

/// A configured `User-Agent` is its host's alone: the registry's token service, even on
/// the registry's own address, is told the run's own, as README's Global options say.
#[test]
fn a_configured_user_agent_is_not_the_token_service_s() {
    let reg = FakeRegistry::builder()
        .auth(Auth::bearer(std::time::Duration::from_secs(300)))
        .start();
    let blob = bytes(9, 5000);
    let digest = reg.blob("team/app", &blob);
    let dir = hosts_dir(&reg.host(), "[header]\n  User-Agent = \"corp-agent/1\"\n");
    let dist = dist_with_hosts(&dir);
    let repo = format!("{}/team/app", reg.host());
    assert_eq!(dist.ok(&["fetch", &repo, &digest]), blob);
    assert!(reg.token_requests() > 0);
    let requests = reg.requests();
    let (token, registry): (Vec<_>, Vec<_>) =
        requests.iter().partition(|r| r.path.starts_with("/token"));
    assert!(!token.is_empty() && !registry.is_empty(), "{requests:?}");
    let agents = |r: &&support::fake::RequestRecord| -> Vec<String> {
        r.headers
            .get_all("user-agent")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    for r in &registry {
        assert_eq!(agents(r), ["corp-agent/1"], "{} {}", r.method, r.path);
    }
    let own = format!("dist/{}", env!("CARGO_PKG_VERSION"));
    for r in &token {
        assert_eq!(agents(r), [own.as_str()], "{} {}", r.method, r.path);
    }
}

/// A hosts file's `server` moves the registry itself, path and all: `<path>/v2/` as the
/// API root, or `<path>/` with `override_path`, as containerd reads it.
#[test]
fn a_hosts_file_server_moves_the_registry_under_a_path() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let prefixed = FakeRegistry::builder().api_root("/cache/docker/v2").start();
    let blob = bytes(7, 20_000);
    let digest = prefixed.blob("team/app", &blob);
    prefixed.manifest("team/app", "v1", mt, manifest);
    // The registry's own name is made up: only the hosts file knows where it is.
    let repo = "registry.invalid/team/app";
    let dir = hosts_dir(
        "registry.invalid",
        &format!("server = \"{}/cache/docker\"\n", prefixed.url()),
    );
    let dist = dist_with_hosts(&dir);
    assert_eq!(dist.ok(&["fetch", repo, &digest]), blob);
    assert_eq!(dist.ok(&["fetch", repo, "v1"]), manifest);
    assert_eq!(prefixed.requests_for(&format!("blobs/{digest}")), 1);
    // A server elsewhere is told which registry it serves, as containerd tells it.
    for r in prefixed.requests() {
        let query = r.query.unwrap_or_default();
        assert!(query.contains("ns=registry.invalid"), "{} {query}", r.path);
    }

    // An API root without `/v2`: reached only when the file says the path is the root.
    let bare = FakeRegistry::builder().api_root("/api").start();
    let digest = bare.blob("team/app", &blob);
    let toml = |override_path: bool| {
        format!(
            "server = \"{}/api\"\noverride_path = {override_path}\n",
            bare.url()
        )
    };
    let dir = hosts_dir("registry.invalid", &toml(true));
    let dist = dist_with_hosts(&dir);
    assert_eq!(dist.ok(&["fetch", repo, &digest]), blob);
    let dir = hosts_dir("registry.invalid", &toml(false));
    let dist = dist_with_hosts(&dir);
    let out = dist.run(&["fetch", "--retries", "0", repo, &digest], b"");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}/api/v2/team/app/blobs/{digest}", bare.url()))
            && err.contains("404"),
        "{err}"
    );
}

/// The file's top-level `capabilities` describe the moved registry: one that may only pull
/// leaves tags to a mirror that may resolve, and with no such mirror a tag is refused with
/// the reason, not sent where the file says it must not go.
#[test]
fn a_pull_only_registry_leaves_tags_to_mirrors() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    upstream.manifest("team/app", "v1", mt, manifest);
    mirror.manifest("team/app", "v1", mt, manifest);
    let blob = bytes(8, 9000);
    let digest = upstream.blob("team/app", &blob);
    mirror.blob("team/app", &blob);
    let repo = "registry.invalid/team/app";
    let server = format!(
        "server = \"{}\"\ncapabilities = [\"pull\"]\n",
        upstream.url()
    );
    let dir = hosts_dir(
        "registry.invalid",
        &format!(
            "{server}\n[host.\"{}\"]\n  capabilities = [\"resolve\"]\n",
            mirror.url()
        ),
    );
    let dist = dist_with_hosts(&dir);
    assert_eq!(dist.ok(&["fetch", repo, "v1"]), manifest);
    assert_eq!(dist.ok(&["fetch", repo, &digest]), blob);
    assert_eq!(mirror.requests_for("manifests/v1"), 1);
    assert_eq!(
        upstream.requests_for("manifests/v1"),
        0,
        "the registry may not resolve"
    );
    assert_eq!(upstream.requests_for(&format!("blobs/{digest}")), 1);
    assert_eq!(
        mirror.requests_for(&format!("blobs/{digest}")),
        0,
        "the mirror may not pull"
    );

    let dir = hosts_dir("registry.invalid", &server);
    let dist = dist_with_hosts(&dir);
    let out = dist.run(&["fetch", repo, "v1"], b"");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no host may resolve tags (`capabilities` in the hosts file)"),
        "{err}"
    );
    assert_eq!(upstream.requests_for("manifests/v1"), 0);
    assert_eq!(dist.ok(&["fetch", repo, &digest]), blob);
}

/// A port where `connect` hangs: a listener whose backlog (shrunk to its minimum) is already
/// full, so the kernel drops every further handshake, as with a host that went away.
struct Blackhole {
    port: u16,
    _listener: std::net::TcpListener,
    _filler: std::net::TcpStream,
}

fn blackhole() -> Blackhole {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listening again on a listening socket only changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let filler = std::net::TcpStream::connect(addr).unwrap();
    Blackhole {
        port: addr.port(),
        _listener: listener,
        _filler: filler,
    }
}

/// `dial_timeout` bounds connecting to its host only: a mirror that went away hands over to
/// the registry after it, not after the 30 s default; at the top of the file it is the
/// registry's own.
#[test]
fn dial_timeout_lets_a_dead_host_go_quickly() {
    let hole = blackhole();
    let upstream = FakeRegistry::start();
    let blob = bytes(9, 7000);
    let digest = upstream.blob("team/app", &blob);
    let dir = hosts_dir(
        &upstream.host(),
        &format!(
            "[host.\"http://127.0.0.1:{}\"]\n  dial_timeout = \"300ms\"\n",
            hole.port
        ),
    );
    let dist = dist_with_hosts(&dir);
    let repo = format!("{}/team/app", upstream.host());
    // Everyone else's connect timeout is two minutes: only the file's can end the
    // mirror's two tries (and this test) within one.
    let started = std::time::Instant::now();
    let out = dist.run(
        &["fetch", "--connect-timeout", "120s", &repo, &digest, "-v"],
        b"",
    );
    assert_eq!(out.stdout, blob, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("mirror failed; trying the next host"), "{log}");

    let dir = hosts_dir(
        "registry.invalid",
        &format!(
            "server = \"http://127.0.0.1:{}\"\ndial_timeout = \"300ms\"\n",
            hole.port
        ),
    );
    let dist = dist_with_hosts(&dir);
    let started = std::time::Instant::now();
    let out = dist.run(
        &[
            "fetch",
            "--retries",
            "0",
            "--connect-timeout",
            "120s",
            "registry.invalid/team/app",
            &digest,
        ],
        b"",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "127.0.0.1:{}/v2/team/app/blobs/{digest}",
            hole.port
        )) && err.contains("cannot connect"),
        "{err}"
    );
}

/// When the registry fails too, the mirror's own failure is part of the final error: a
/// mirror the user relies on (the registry being out of reach) is why nothing came, and
/// the registry's refusal alone would hide it. A mirror that merely lacks what the
/// registry lacks as well stays out of it.
#[test]
fn a_failing_mirror_is_named_when_the_registry_fails_too() {
    let mirror = FakeRegistry::builder()
        .auth(Auth::basic("mirror-user", "mirror-pass"))
        .start();
    let blob = bytes(10, 3000);
    let digest = mirror.blob("team/app", &blob);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap().port();
    drop(closed);
    let repo = format!("127.0.0.1:{gone}/team/app");
    let dist = Dist::new();
    let out = dist.run(
        &[
            "fetch",
            "--retries",
            "0",
            "--mirror",
            &mirror.url(),
            &repo,
            &digest,
        ],
        b"",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{gone}/v2/")), "{err}");
    assert!(
        err.contains(&format!(
            "tried first: {}/v2/team/app/blobs/{digest}",
            mirror.url()
        )) && err.contains("asks for Basic authentication"),
        "{err}"
    );
    // A mirror's own answer is named as the mirror's, not the registry's.
    let failing = FakeRegistry::start();
    let digest = failing.blob("team/app", &blob);
    failing.set_fault_for_every(&digest, Fault::Status(500));
    let out = dist.run(
        &[
            "fetch",
            "--retries",
            "0",
            "--mirror",
            &failing.url(),
            &repo,
            &digest,
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mirror answered 500"), "{err}");
    assert!(!err.contains("registry answered 500"), "{err}");

    // Missing on both: the registry's 404 says it all.
    let upstream = FakeRegistry::start();
    let plain_mirror = FakeRegistry::start();
    let absent = sha256(b"nowhere");
    let repo = format!("{}/team/app", upstream.host());
    let out = dist.run(
        &["fetch", "--mirror", &plain_mirror.url(), &repo, &absent],
        b"",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&upstream.host()), "{err}");
    assert!(!err.contains("tried first"), "{err}");
}

/// A hosts directory that is not there configures no mirrors, as in containerd, but says
/// so: a mistyped folder would otherwise route around every mirror without a word.
#[test]
fn a_missing_hosts_directory_is_named() {
    let upstream = FakeRegistry::start();
    let blob = bytes(11, 2000);
    let digest = upstream.blob("team/app", &blob);
    let repo = format!("{}/team/app", upstream.host());
    let present = tempfile::tempdir().unwrap();
    let missing = present.path().join("certs.d-typo");
    let dist = Dist::new();
    let out = dist.run(
        &[
            "fetch",
            "--hosts-dir",
            missing.to_str().unwrap(),
            &repo,
            &digest,
        ],
        b"",
    );
    assert_eq!(out.stdout, blob);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the hosts directory {} (--hosts-dir, DIST_HOSTS_DIR) is not a directory",
            missing.display()
        )),
        "{err}"
    );
    let out = dist.run(
        &[
            "fetch",
            "--hosts-dir",
            present.path().to_str().unwrap(),
            &repo,
            &digest,
        ],
        b"",
    );
    assert_eq!(out.stdout, blob);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A registry and a mirror that both hold a 40,000-byte blob (from `seed`), every body of
/// it from the mirror broken at 10,000 bytes; the blob and its digest.
fn breaking_mirror(seed: u64) -> (FakeRegistry, FakeRegistry, Vec<u8>, String) {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(seed, 40_000);
    let digest = upstream.blob("team/app", &blob);
    mirror.blob("team/app", &blob);
    mirror.set_fault_for_every(&digest, Fault::DropAfter(10_000));
    (upstream, mirror, blob, digest)
}

/// A mirror whose every body breaks off (a cache with a broken disk, a link that drops)
/// fails like any other failing mirror: after its one retry the registry serves the rest
/// of the object, rather than the object failing with the mirror's error.
#[test]
fn a_mirror_whose_bodies_break_hands_over_to_the_registry() {
    let (upstream, mirror, blob, digest) = breaking_mirror(12);
    let repo = format!("{}/team/app", upstream.host());
    let out = Dist::new().run(&["fetch", "--mirror", &mirror.url(), &repo, &digest], b"");
    assert!(
        out.status.success() && out.stdout == blob,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = format!("blobs/{digest}");
    assert_eq!(
        mirror.requests_for(&path),
        2,
        "the mirror's answer and its one retry"
    );
    assert_eq!(upstream.requests_for(&path), 1, "then the registry's");
    // What the mirror sent is kept: the registry is asked for the rest only.
    let asked: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(&path))
        .map(|r| {
            r.headers
                .get("range")
                .map(|v| v.to_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(asked, [Some("bytes=20000-".to_string())]);
}

/// A mirror that answers the rest of a body it broke with a `416`, short of the size it
/// declared, contradicts itself: the registry is asked for the rest, as after any mirror
/// failing for good. The `416` was taken for the blob's end, which failed as content that
/// ended short, and the blob was fetched whole once more from the registry.
#[test]
fn a_mirror_s_416_short_of_its_size_hands_the_rest_over() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(13, 40_000);
    let digest = upstream.blob("team/app", &blob);
    mirror.blob("team/app", &blob);
    mirror.push_fault(&digest, Fault::DropAfter(10_000));
    mirror.push_fault(&digest, Fault::Status(416));
    let repo = format!("{}/team/app", upstream.host());
    let out = Dist::new().run(&["fetch", "--mirror", &mirror.url(), &repo, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && out.stdout == blob, "{err}");
    assert!(!err.contains("content ended after"), "{err}");
    let path = format!("blobs/{digest}");
    assert_eq!(mirror.requests_for(&path), 2, "{err}");
    let asked: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(&path))
        .map(|r| r.range)
        .collect();
    assert_eq!(asked, [Some("bytes=10000-".to_string())], "{err}");
}

/// A mirror whose URL for the object cannot be formed (a path so long that the request's
/// URL passes what HTTP's URIs hold) fails as a mirror that answered badly: the body
/// broken on the mirror before it goes on to the registry. Before, the hand-over stopped
/// at it with its error alone, the failures of the mirrors before it lost.
#[test]
fn a_mirror_without_a_url_for_the_rest_is_passed_over() {
    let (upstream, mirror, blob, digest) = breaking_mirror(18);
    // Under the 65,534 bytes `http::Uri` holds; with the object's path, past them.
    let unformable = format!("http://127.0.0.1:9/{}", "p".repeat(65_480));
    let repo = format!("{}/team/app", upstream.host());
    let args = [
        "fetch",
        "--mirror",
        &mirror.url(),
        "--mirror",
        &unformable,
        &repo,
        &digest,
    ];
    let out = Dist::new().run(&args, b"");
    assert!(
        out.status.success() && out.stdout == blob,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(upstream.requests_for(&format!("blobs/{digest}")), 1);
}

/// Fetches a blob through a mirror whose body breaks at 10,000 bytes, with `registry`
/// applied to the registry that takes it over, and checks that the failure names the
/// registry's URL for it, not the mirror's: the error took the URL of the first answer.
/// The mirror's break is named after it, as a mirror's failure before its answer is:
/// before, the registry's cause alone was told, and why the mirror the user relies on
/// did not serve was lost.
fn a_failure_after_a_hand_over_names_the_registry(
    seed: u64,
    registry: impl Fn(&FakeRegistry, &str),
) {
    a_failure_after_a_mirror_names_both(seed, Fault::DropAfter(10_000), registry);
}

/// Fetches a blob through a mirror that fails every time with `mirror_fault`, with
/// `registry` applied to the registry that serves in its place, and checks that the
/// failure names the registry's URL, then the mirror's. Returns what it says of the mirror.
fn a_failure_after_a_mirror_names_both(
    seed: u64,
    mirror_fault: Fault,
    registry: impl Fn(&FakeRegistry, &str),
) -> String {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(seed, 40_000);
    let digest = upstream.blob("team/app", &blob);
    mirror.blob("team/app", &blob);
    mirror.set_fault_for_every(&digest, mirror_fault);
    registry(&upstream, &digest);
    let repo = format!("{}/team/app", upstream.host());
    let args = [
        "--retries",
        "1",
        "fetch",
        "--mirror",
        &mirror.url(),
        &repo,
        &digest,
    ];
    let out = Dist::new().run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let (last, tried) = err.split_once(" (tried first: ").unwrap_or((&err, ""));
    assert!(
        last.contains(&format!("{}/v2/team/app/blobs/{digest}", upstream.host())),
        "{err}"
    );
    assert!(!last.contains(&mirror.host()), "{err}");
    assert!(
        tried.starts_with(&format!("{}/v2/team/app/blobs/{digest}", mirror.url())),
        "{err}"
    );
    tried.to_string()
}

/// A body the registry took over from a mirror, broken again and its rest refused by the
/// registry, names the registry's URL beside "registry answered 503".
#[test]
fn a_resume_that_fails_names_the_host_that_failed() {
    a_failure_after_a_hand_over_names_the_registry(14, |upstream, digest| {
        upstream.push_fault(digest, Fault::DropAfter(5_000));
        upstream.set_fault_for_every(digest, Fault::Status(503));
    });
}

/// A mirror's broken body whose rest the registry refuses outright names both hosts.
#[test]
fn a_rest_refused_after_a_hand_over_names_both_hosts() {
    a_failure_after_a_hand_over_names_the_registry(16, |upstream, digest| {
        upstream.set_fault_for_every(digest, Fault::Status(503));
    });
}

/// A body the registry took over from a mirror that breaks until the retries run out
/// names the registry's URL, whose body broke, not the mirror's.
#[test]
fn a_body_handed_over_that_breaks_names_the_host_it_broke_on() {
    a_failure_after_a_hand_over_names_the_registry(15, |upstream, digest| {
        upstream.set_fault_for_every(digest, Fault::DropAfter(0));
    });
}

/// A mirror that failed before its answer is named when the registry, which answered in
/// its place, then fails in the body: before, the mirror's failure was named only when
/// the registry's request failed too, and dropped once the registry's answer came, so a
/// user looking for why a mirror did not serve saw the registry's break alone.
#[test]
fn a_mirror_that_failed_before_answering_is_named_when_the_registry_s_body_fails() {
    let tried = a_failure_after_a_mirror_names_both(17, Fault::Status(500), |upstream, digest| {
        upstream.set_fault_for_every(digest, Fault::DropAfter(5_000));
    });
    assert!(tried.contains("mirror answered 500"), "{tried}");
}

/// A mirror that went away for a moment (a cache restarted in a run of hours) is asked
/// again once its down mark runs out, and skipped twice as long when it is still down.
/// Before, a mirror found unreachable once was skipped for the rest of the run: every
/// later object went to the registry, and to its pull limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_back_from_an_outage_is_used_again() {
    use dist::{Hints, Object, Remote};
    use std::time::Duration;

    let upstream = FakeRegistry::start();
    let blobs: Vec<Vec<u8>> = (0..5).map(|n| bytes(90 + n, 2000)).collect();
    let digests: Vec<String> = blobs.iter().map(|b| upstream.blob("team/app", b)).collect();
    // The mirror's port, free for now: connections to it are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mirror_up = || {
        let mirror = FakeRegistry::builder().port(port).start();
        for b in &blobs {
            mirror.blob("team/app", b);
        }
        mirror
    };
    // Long enough that starting the mirror and one fetch, on a loaded machine, fit well
    // inside a mark: the assertions that it is still skipped must not race its end.
    let first = Duration::from_secs(2);
    let transport = dist::transport::Transport::new(Default::default()).unwrap();
    let mirror =
        dist::registry::host::Mirror::new(format!("http://127.0.0.1:{port}"), transport.clone());
    let retry = dist::retry::RetryPolicy {
        retries: 1,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
    };
    let repo = format!("{}/team/app", upstream.host()).parse().unwrap();
    let remote = dist::registry::RegistryRemote::new(
        repo,
        transport,
        dist::auth::CredentialSource::None,
        retry,
    )
    .with_mirrors(&[mirror], dist::auth::CredentialSource::None)
    .unwrap()
    .with_mirror_down(first);
    let fetch = |n: usize| {
        let remote = &remote;
        let object = Object::Digest(digests[n].parse().unwrap());
        async move {
            let mut download = remote.fetch(&object, &Hints::default()).await.unwrap();
            while download.chunk().await.unwrap().is_some() {}
        }
    };

    // Refused: the registry serves, and the mirror is marked down.
    fetch(0).await;
    let mirror = mirror_up();
    fetch(1).await;
    assert_eq!(
        mirror.requests_for(&format!("blobs/{}", digests[1])),
        0,
        "marked down"
    );
    assert_eq!(upstream.requests_for(&format!("blobs/{}", digests[1])), 1);
    // The mark runs out: the mirror, back, serves again.
    tokio::time::sleep(first + Duration::from_millis(200)).await;
    fetch(2).await;
    assert_eq!(
        mirror.requests_for(&format!("blobs/{}", digests[2])),
        1,
        "asked again"
    );
    assert_eq!(upstream.requests_for(&format!("blobs/{}", digests[2])), 0);

    // Down again, and still down when its mark runs out: skipped twice as long.
    drop(mirror);
    fetch(3).await;
    tokio::time::sleep(first + Duration::from_millis(200)).await;
    fetch(3).await;
    let mirror = mirror_up();
    tokio::time::sleep(first + Duration::from_millis(200)).await;
    fetch(4).await;
    assert_eq!(
        mirror.requests_for(&format!("blobs/{}", digests[4])),
        0,
        "marked down for twice as long"
    );
    tokio::time::sleep(first * 2).await;
    fetch(4).await;
    assert_eq!(
        mirror.requests_for(&format!("blobs/{}", digests[4])),
        1,
        "back"
    );
}

/// A free loopback port: connections to it are refused.
fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The worker's and `pull`'s check before the batch asks the first host that may serve
/// content: a mirror down at the start leaves the batch to the registry, saying once at
/// `-v` that the mirror is skipped; a registry down at the start leaves it to the mirror
/// for what the mirror has.
#[test]
fn a_batch_runs_from_whichever_host_is_up_at_the_start() {
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let (upstream, mirror, digests) = mirrored_blobs(120);
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let config = b"{}";
    upstream.blob("team/app", config);
    mirror.blob("team/app", config);
    let by_digest = upstream.manifest("team/app", "v1", mt, manifest);
    mirror.manifest("team/app", "v1", mt, manifest);
    let input = digests.join("\n") + "\n";
    let gone = format!("http://127.0.0.1:{}", refused_port());
    let dist = Dist::new();

    let repo = format!("{}/team/app", upstream.host());
    let worker = [
        "-v",
        "--retries",
        "0",
        "fetch",
        "--mirror",
        &gone,
        &repo,
        "-",
    ];
    let out = dist.run(&worker, input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(support::cli::parse_frames(&out.stdout).len(), 3, "{err}");
    assert_eq!(err.matches("mirror marked down").count(), 1, "{err}");
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("image");
    let image = format!("{repo}:v1");
    let pull = ["--retries", "0", "pull", "--mirror", &gone, &image, "-o"];
    dist.ok(&[&pull[..], &[target.to_str().unwrap()]].concat());

    // The registry down, the mirror up: the mirror's objects come, the others fail alone.
    let repo = format!("127.0.0.1:{}/team/app", refused_port());
    let extra = format!("sha256:{}", "0".repeat(64));
    let input = format!("{input}{extra}\n");
    let worker = [
        "--retries",
        "0",
        "fetch",
        "--mirror",
        &mirror.url(),
        &repo,
        "-",
    ];
    let out = dist.run(&worker, input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    let frames = support::cli::parse_frames(&out.stdout);
    assert_eq!(frames.len(), 4, "{err}");
    assert_eq!(
        frames.iter().filter(|f| f.result.is_ok()).count(),
        3,
        "{err}"
    );
    let target = out_dir.path().join("from-mirror");
    let image = format!("{repo}:v1");
    let pull = [
        "--retries",
        "0",
        "pull",
        "--mirror",
        &mirror.url(),
        &image,
        "-o",
    ];
    dist.ok(&[&pull[..], &[target.to_str().unwrap()]].concat());
    let index = std::fs::read_to_string(target.join("index.json")).unwrap();
    assert!(index.contains(&by_digest), "{index}");
}

/// A mirror that is the last host that may serve content (the registry may only resolve)
/// gets the run's retries for its bodies, failed requests and breaks counted together: a
/// break and then a 503 on asking for the rest are two failures in a row, well within
/// `--retries`. The resume's request was held to the mirror's one retry on the body's
/// count, so the break had already spent it, and the 503 failed the object.
#[test]
fn the_last_mirror_s_resumes_keep_the_run_s_retries() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(11, 100_000);
    let digest = mirror.blob("team/app", &blob);
    let dir = resolve_only_behind_a_pulling_mirror(&upstream.url(), &mirror.url());
    mirror.push_fault(&digest, Fault::DropAfter(1000));
    mirror.push_fault(&digest, Fault::Status(503));
    let dist = dist_with_hosts(&dir);
    let out = dist.run(&["fetch", "registry.invalid/team/app", &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout == blob);
    assert_eq!(mirror.requests_for(&format!("blobs/{digest}")), 3, "{err}");
    assert_eq!(upstream.requests_for(&format!("blobs/{digest}")), 0);
}

/// The manifest [`tag_on_both`] tags, long enough to break part-way.
const TAGGED: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[],"annotations":{"a":"0123456789012345678901234567890123456789"}}"#;

/// A registry and a mirror that both hold [`TAGGED`] as `team/app:v1`; its digest.
fn tag_on_both() -> (FakeRegistry, FakeRegistry, String) {
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let digest = upstream.manifest("team/app", "v1", mt, TAGGED);
    mirror.manifest("team/app", "v1", mt, TAGGED);
    (upstream, mirror, digest)
}

/// A tag's body from a mirror that may only resolve, broken part-way, is not asked of that
/// mirror again by digest (what `pull` allows, which it lacks): the next host that may
/// pull serves the rest, as for a mirror that fails.
#[test]
fn a_resolve_only_mirror_is_not_asked_for_a_tag_s_rest_by_digest() {
    let (upstream, mirror, digest) = tag_on_both();
    mirror.push_fault("manifests/v1", Fault::DropAfter(40));
    let dir = hosts_dir(
        &upstream.host(),
        &format!(
            "[host.\"{}\"]\n  capabilities = [\"resolve\"]\n",
            mirror.url()
        ),
    );
    let dist = dist_with_hosts(&dir);
    let repo = format!("{}/team/app", upstream.host());
    let out = dist.run(&["fetch", &repo, "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && out.stdout == TAGGED, "{err}");
    assert_eq!(mirror.requests_for("manifests/v1"), 1);
    assert_eq!(
        mirror.requests_for(&format!("manifests/{digest}")),
        0,
        "the mirror may not pull"
    );
    assert_eq!(upstream.requests_for(&format!("manifests/{digest}")), 1);
    assert_eq!(upstream.requests_for("manifests/v1"), 0);
}

/// The same for the registry itself at a `server` that may only resolve: a mirror before
/// it that may pull serves the rest of the tag's body, by digest.
#[test]
fn a_resolve_only_registry_hands_a_tag_s_rest_to_a_mirror_that_may_pull() {
    let (upstream, mirror, digest) = tag_on_both();
    upstream.push_fault("manifests/v1", Fault::DropAfter(40));
    let dir = resolve_only_behind_a_pulling_mirror(&upstream.url(), &mirror.url());
    let dist = dist_with_hosts(&dir);
    let out = dist.run(&["fetch", "registry.invalid/team/app", "v1"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && out.stdout == TAGGED, "{err}");
    assert_eq!(upstream.requests_for("manifests/v1"), 1);
    assert_eq!(
        upstream.requests_for(&format!("manifests/{digest}")),
        0,
        "the registry may not pull"
    );
    assert_eq!(mirror.requests_for(&format!("manifests/{digest}")), 1);
    assert_eq!(mirror.requests_for("manifests/v1"), 0);
}

/// A mirror that does not have the object (its 404) did nothing wrong: when the registry,
/// which served in its place, then fails in the body, the error does not list the mirror
/// as a failed host, as if it were at fault. It said "tried first: <mirror URL>: ... not
/// found", which read as the mirror failing.
#[test]
fn a_mirror_without_the_object_is_not_named_as_a_failure() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(19, 40_000);
    let digest = upstream.blob("team/app", &blob);
    upstream.set_fault_for_every(&digest, Fault::DropAfter(5_000));
    let repo = format!("{}/team/app", upstream.host());
    let args = [
        "--retries",
        "1",
        "fetch",
        "--mirror",
        &mirror.url(),
        &repo,
        &digest,
    ];
    let out = Dist::new().run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(mirror.requests_for(&format!("blobs/{digest}")), 1, "{err}");
    assert!(
        err.contains(&format!("{}/v2/team/app/blobs/{digest}", upstream.host())),
        "{err}"
    );
    assert!(!err.contains("tried first"), "{err}");
    assert!(!err.contains(&mirror.host()), "{err}");
}

/// A size given that is wrong (`size:1999` for a blob of 2000 bytes), the mirror and the
/// registry both declaring the right size: the error names the mirror, with its host, for
/// what the mirror declared. It said "registry declares" of the mirror's answer too, so
/// that the registry seemed to have been asked twice and the mirror never.
#[test]
fn a_size_a_mirror_declares_is_said_as_the_mirror_s() {
    let (upstream, mirror, digests) = mirrored_blobs(40);
    let repo = format!("{}/team/app", upstream.host());
    let mirror_url = mirror.url();
    let args = [
        "fetch",
        "--mirror",
        &mirror_url,
        &repo,
        &digests[0],
        "size:1999",
    ];
    let err = Dist::new().fails(1, &args, b"");
    let given = "expected 1999 (the size given: size:1999, or a descriptor's \"size\")";
    let by_mirror = format!(
        "tried first: {mirror_url}/v2/team/app/blobs/{}?…: mirror {} declares 2000 bytes, \
         {given}",
        digests[0],
        mirror.host()
    );
    assert!(err.contains(&by_mirror), "{err}");
    assert!(
        err.contains(&format!("registry declares 2000 bytes, {given}")),
        "{err}"
    );
    assert!(!err.contains("?…: registry declares"), "{err}");

    // The same of a resume's answer: the mirror's first answer declares no size and is cut
    // short; its answer to the resume declares the total (the registry, handed the rest,
    // then declares its own).
    mirror.set_fault_for_every(&digests[1], Fault::Unframed(1000));
    let args = [
        "fetch",
        "--mirror",
        &mirror_url,
        &repo,
        &digests[1],
        "size:1999",
    ];
    let err = Dist::new().fails(1, &args, b"");
    let by_mirror = format!(
        "asked for bytes=1000-, got a 206 with Content-Range: bytes 1000-1999/2000: the \
         mirror {} declares 2000 bytes, {given}",
        mirror.host()
    );
    assert!(err.contains(&by_mirror), "{err}");
}

/// Content that failed from the last host that may pull content by digest, a mirror (the
/// registry may only resolve): fetched once more, it is asked of that mirror again, the
/// only host that may serve it, and the error that stands names the mirror and the cause.
/// The fetch once more was asked of the registry alone, which may not pull, and the
/// error said only that "the registry itself may not pull content by digest", the cause
/// lost; a wrong size given was blamed on "the registry", and said to be fetched once
/// more "from the registry itself".
#[test]
fn content_failed_by_the_only_mirror_that_may_pull_is_reported_as_the_mirror_s() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(12, 2000);
    let digest = mirror.blob("team/app", &blob);
    let dir = resolve_only_behind_a_pulling_mirror(&upstream.url(), &mirror.url());
    let dist = dist_with_hosts(&dir);
    let args = ["fetch", "registry.invalid/team/app", &digest, "size:1999"];
    let err = dist.fails(1, &args, b"");
    assert!(!err.contains("may not pull"), "{err}");
    let declared = format!(
        "mirror {} declares 2000 bytes, expected 1999 (the size given: size:1999, or a \
         descriptor's \"size\"); mirror {} declared 2000 bytes again: the size given is \
         likely wrong",
        mirror.host(),
        mirror.host()
    );
    assert!(err.contains(&declared), "{err}");
    assert!(!err.contains("registry itself declared"), "{err}");
    let warned = format!(
        "dist: warning: the size given is 1999 bytes and the mirror {} declares 2000; \
         fetching once more (",
        mirror.host()
    );
    assert!(err.contains(&warned), "{err}");
    assert!(!err.contains("registry declares"), "{err}");
    assert_eq!(mirror.requests_for(&format!("blobs/{digest}")), 2, "{err}");
    assert_eq!(upstream.requests_for(&format!("blobs/{digest}")), 0);

    // Corrupt twice: the mirror's digest mismatch stands. Once: the second fetch serves.
    mirror.push_fault(&digest, Fault::CorruptByte(5));
    mirror.push_fault(&digest, Fault::CorruptByte(5));
    let err = dist.fails(1, &["fetch", "registry.invalid/team/app", &digest], b"");
    assert!(!err.contains("may not pull"), "{err}");
    assert!(
        err.contains(&mirror.url()) && err.contains("digest mismatch"),
        "{err}"
    );
    mirror.push_fault(&digest, Fault::CorruptByte(5));
    let out = dist.ok(&["fetch", "registry.invalid/team/app", &digest]);
    assert!(out == blob);
}

/// A size given that is wrong (`size:1999` for a blob of 2000 bytes), the mirror's body
/// declaring no size (it runs to its connection's close): the warning names the mirror
/// for what it sent, and says the fetch once more goes past it, to the registry itself,
/// as it does (the registry may pull). It said only "fetching once more", as where the
/// mirrors stand in for a registry that may not pull and are asked again.
#[test]
fn a_size_a_mirror_sent_is_fetched_once_more_from_the_registry_itself() {
    let (upstream, mirror, digests) = mirrored_blobs(40);
    let repo = format!("{}/team/app", upstream.host());
    let mirror_url = mirror.url();
    mirror.set_fault_for_every(&digests[0], Fault::Unframed(usize::MAX));
    let args = [
        "fetch",
        "--mirror",
        &mirror_url,
        &repo,
        &digests[0],
        "size:1999",
    ];
    let err = Dist::new().fails(1, &args, b"");
    let warned = format!(
        "dist: warning: the size given is 1999 bytes and the mirror {} sent more; fetching \
         once more from the registry itself",
        mirror.host()
    );
    assert!(err.contains(&warned), "{err}");
    // Beside a mirror, the registry is told apart as itself in the error that stands too.
    assert!(
        err.contains("the registry itself declared 2000 bytes again"),
        "{err}"
    );
    let blob = format!("blobs/{}", digests[0]);
    assert_eq!(mirror.requests_for(&blob), 1, "{err}");
    assert_eq!(upstream.requests_for(&blob), 1, "{err}");
}

/// A mirror or `hosts.toml` server whose password holds a `/`, pasted unencoded
/// (`http://mu:s3/cret@host`), was taken for the host `mu` on port `s3/cret@…`: tried,
/// and shown whole, password and all, in the registry's error ("tried first: …").
#[test]
fn a_mirror_whose_password_holds_a_slash_is_refused_unshown() {
    let upstream = FakeRegistry::start();
    let repo = format!("{}/team/app", upstream.host());
    let dist = Dist::new();
    let login = "http://mu:s3/cret@127.0.0.1:9";
    let err = dist.fails(2, &["fetch", "--mirror", login, &repo, "v1"], b"");
    assert!(err.contains("credentials do not go here"), "{err}");
    assert!(!err.contains("cret"), "{err}");
    for toml in [
        format!("server = \"{login}\"\n"),
        format!("[host.\"{login}\"]\n"),
    ] {
        let dir = hosts_dir(&upstream.host(), &toml);
        let args = [
            "fetch",
            "--hosts-dir",
            dir.path().to_str().unwrap(),
            &repo,
            "v1",
        ];
        let out = dist.run(&args, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("credentials do not go here"), "{toml}: {err}");
        assert!(!err.contains("cret"), "{toml}: {err}");
    }
}

/// The message of a fetch of `digest` from `repo` refused with status 2 for the
/// `hosts.toml` `toml` in `folder` of a hosts directory, which it must begin by naming.
#[track_caller]
fn refused_naming_hosts_toml(folder: &str, toml: &str, repo: &str, digest: &str) -> String {
    let dir = hosts_dir(folder, toml);
    let file = dir.path().join(folder).join("hosts.toml");
    let args = [
        "fetch",
        "--hosts-dir",
        dir.path().to_str().unwrap(),
        repo,
        digest,
    ];
    let err = Dist::new().fails(2, &args, b"");
    assert!(
        err.starts_with(&format!("dist: {}: ", file.display())),
        "{toml}: {err}"
    );
    err
}

/// Every error of a `hosts.toml` names the file: a `[host."…"]` key or a `server` that is
/// no URL (a port past 65535, a space in it) was found only when its client was made, and
/// said as `invalid mirror URL "https://m.example:99999"`, with a scheme nobody wrote and
/// no word of the file. It is refused before any request, quoted as written.
#[test]
fn a_bad_host_key_in_hosts_toml_names_the_file() {
    let upstream = FakeRegistry::start();
    let digest = upstream.blob("team/app", b"x");
    let repo = format!("{}/team/app", upstream.host());
    let folder = upstream.host().replace(':', "_") + "_";
    for (toml, written) in [
        ("[host.\"m.example:99999\"]\n", "m.example:99999"),
        (
            "[host.\"https://m.example/a b\"]\n",
            "https://m.example/a b",
        ),
        ("[host.\"https://[::1\"]\n", "https://[::1"),
        ("server = \"r.example:99999\"\n", "r.example:99999"),
    ] {
        let err = refused_naming_hosts_toml(&folder, toml, &repo, &digest);
        assert!(err.contains(&format!("{written:?}")), "{toml}: {err}");
        assert!(!err.contains("https://m.example:99999"), "{toml}: {err}");
    }
    assert_eq!(upstream.request_count(), 0);
}

/// A `ca` in `hosts.toml` that names no file names the hosts file too: `reading CA file
/// …/nofile.pem` left the user to find where it was configured. So does one that names a
/// directory (`ca = ""`, the folder itself: `reading CA file …/: Is a directory`). One
/// under `skip_verify`, never read, is no error.
#[test]
fn a_missing_ca_file_in_hosts_toml_names_the_file() {
    let upstream = FakeRegistry::start();
    let digest = upstream.blob("team/app", b"x");
    let repo = format!("{}/team/app", upstream.host());
    let folder = upstream.host().replace(':', "_") + "_";
    for (toml, named) in [
        ("ca = \"nofile.pem\"\n", "nofile.pem"),
        (
            "[host.\"https://m.example\"]\n  ca = [\"nofile.pem\"]\n",
            "nofile.pem",
        ),
        ("ca = \"\"\n", "is a directory"),
    ] {
        let err = refused_naming_hosts_toml(&folder, toml, &repo, &digest);
        assert!(err.contains(named), "{toml}: {err}");
    }
    assert_eq!(upstream.request_count(), 0);
    let dir = hosts_dir(&folder, "ca = \"nofile.pem\"\nskip_verify = true\n");
    let args = [
        "fetch",
        "--hosts-dir",
        dir.path().to_str().unwrap(),
        &repo,
        &digest,
    ];
    assert_eq!(Dist::new().ok(&args), b"x");
}

/// A body a mirror declared 40,000 bytes of, broken on it at 10,000 twice and handed over
/// to the registry, whose answer to the rest is a `416`: the registry contradicts the size
/// the mirror declared, which is said, naming the registry that answered and the mirror
/// that declared the size, and the blob is fetched once more. The `416` was taken for the
/// content's end, 20,000 bytes short, said as content that ended short on the mirror.
#[test]
fn a_416_from_the_host_a_mirror_handed_over_to_is_no_end() {
    let (upstream, mirror, blob, digest) = breaking_mirror(19);
    upstream.push_fault(&digest, Fault::Status(416));
    let repo = format!("{}/team/app", upstream.host());
    let out = Dist::new().run(&["fetch", "--mirror", &mirror.url(), &repo, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && out.stdout == blob, "{err}");
    assert!(!err.contains("content ended after"), "{err}");
    let said = format!(
        "{}/v2/team/app/blobs/{digest}: asked for bytes=20000-, got a 416 (the content ends \
         at byte 20000), where the mirror {} declared 40000 bytes",
        upstream.url(),
        mirror.host()
    );
    assert!(err.contains(&said), "{err}");
}

/// A mirror whose `Docker-Content-Digest` for a blob names other content is passed over
/// for the registry, as any mirror's failure is; where the registry may not be asked for
/// content, the mirror is asked once more, the warning and the error naming the mirror's
/// header, not the registry's, and not as content that did not verify.
#[test]
fn a_mirror_s_blob_header_naming_other_content_is_the_mirror_s() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(9, 5000);
    let digest = upstream.blob("team/app", &blob);
    mirror.blob("team/app", &blob);
    let other = format!("sha256:{}", "ab".repeat(32));
    mirror.set_fault_for_every(
        &digest,
        Fault::Header("docker-content-digest", other.clone()),
    );
    let path = format!("blobs/{digest}");
    let repo = format!("{}/team/app", upstream.host());
    let out = Dist::new().run(&["fetch", "--mirror", &mirror.url(), &repo, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, blob);
    assert_eq!(
        (mirror.requests_for(&path), upstream.requests_for(&path)),
        (1, 1),
        "{err}"
    );
    assert!(!err.contains("warning"), "{err}");

    let repo = "registry.invalid/team/app";
    let dir = resolve_only_behind_a_pulling_mirror(&upstream.url(), &mirror.url());
    let dist = dist_with_hosts(&dir);
    let err = dist.fails(1, &["fetch", repo, &digest], b"");
    let who = format!("mirror {}", mirror.host());
    assert!(
        err.contains(&format!(
            "the {who}'s Docker-Content-Digest header names other content; fetching once more"
        )),
        "{err}"
    );
    assert!(!err.contains("from the registry itself"), "{err}");
    assert!(
        err.contains(&format!(
            "the {who}'s Docker-Content-Digest header names {other}, not {digest} as asked"
        )),
        "{err}"
    );
    assert!(!err.contains("did not verify"), "{err}");
    assert_eq!(
        (mirror.requests_for(&path), upstream.requests_for(&path)),
        (3, 1),
        "{err}"
    );
}

/// The warnings a run's stderr holds about misconfigured mirrors.
fn mirror_warnings(err: &str) -> Vec<&str> {
    err.lines()
        .filter(|l| l.starts_with("dist: warning: the mirror "))
        .collect()
}

/// The one warning about a mirror in `err`, which must hold exactly one.
fn one_mirror_warning(err: &str) -> &str {
    let warnings = mirror_warnings(err);
    assert_eq!(warnings.len(), 1, "{err}");
    warnings[0]
}

/// A mirror that refuses the login it is given was bypassed in silence, and asked (and
/// refused) for every object: a pull-through cache set up to save egress went unused
/// without a word. It is said once, naming the mirror and not the password, and left
/// alone for the rest of the run. Without a login, it is said to want one: "does not
/// accept dist's login" sent a user with none looking for a wrong one.
#[test]
fn a_mirror_refusing_the_login_is_said_once_and_asked_once() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::builder()
        .auth(Auth::basic("mu", "right-password"))
        .start();
    let digests: Vec<String> = (0..4)
        .map(|n| {
            let blob = bytes(70 + n, 2000);
            mirror.blob("team/app", &blob);
            upstream.blob("team/app", &blob)
        })
        .collect();
    let repo = format!("{}/team/app", upstream.host());
    let input = digests.join("\n") + "\n";
    let mirror_url = mirror.url();
    let dist = Dist::new();
    dist.login(&mirror.host(), "mu", "wrong-s3cret");
    let args = ["fetch", "--mirror", &mirror_url, &repo, "-", "-j", "1"];
    let out = dist.run(&args, input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(support::cli::parse_frames(&out.stdout).len(), 4, "{err}");

    let warning = one_mirror_warning(&err);
    assert!(
        warning.contains(&format!("the mirror {mirror_url}/")),
        "{err}"
    );
    let config = dist.config_dir().join("config.json");
    assert!(
        warning.contains(&format!(
            "refused the login from {} (401)",
            config.display()
        )),
        "{err}"
    );
    assert!(warning.contains("from the registry instead"), "{err}");
    assert!(!err.contains("wrong-s3cret"), "{err}");
    // The first object met the refusal; the others went straight to the registry.
    assert_eq!(asked(&mirror, &digests[1..]), vec![0; 3], "{err}");
    assert_eq!(asked(&upstream, &digests), vec![1; 4], "{err}");

    // With no login for the mirror, none was refused: it wants one.
    let args = ["fetch", "--mirror", &mirror_url, &repo, &digests[0]];
    let out = Dist::new().run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warning = one_mirror_warning(&err);
    assert!(
        warning.contains("asks for a login (401), and dist sent none"),
        "{err}"
    );
}

/// A mirror named with `https://` that speaks plain HTTP was bypassed in silence: said
/// once for the run, its scheme blamed.
#[test]
fn a_mirror_of_the_wrong_scheme_is_said_once() {
    let (upstream, mirror, digests) = mirrored_blobs(80);
    let repo = format!("{}/team/app", upstream.host());
    let input = digests.join("\n") + "\n";
    let https = format!("https://{}", mirror.host());
    let args = ["fetch", "--mirror", &https, &repo, "-", "-j", "1"];
    let out = Dist::new().run(&args, input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let warning = one_mirror_warning(&err);
    assert!(warning.contains(&format!("the mirror {https}/")), "{err}");
    assert!(warning.contains("scheme"), "{err}");
    assert_eq!(asked(&upstream, &digests), vec![1; 3], "{err}");
}

/// A pull-through cache lacking one object is normal: the registry serves it, and
/// nothing is said.
#[test]
fn a_mirror_lacking_one_object_is_not_warned_about() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let digests: Vec<String> = (0..3)
        .map(|n| {
            let blob = bytes(90 + n, 2000);
            if n > 0 {
                mirror.blob("team/app", &blob);
            }
            upstream.blob("team/app", &blob)
        })
        .collect();
    let err = batch_through_mirror(&upstream, &mirror, &digests, &[], "1");
    assert!(!err.contains("warning"), "{err}");
    assert_eq!(asked(&upstream, &digests), vec![1, 0, 0], "{err}");
}

/// The only host that may pull refusing an object (403): that object and every later one
/// fail with the refusal. Left alone for the rest of the run, the mirror left no host
/// that may pull, and the later objects read "no host may pull content by digest", a
/// hosts file's fault, their cause lost.
#[test]
fn the_only_mirror_that_may_pull_refusing_fails_the_later_objects_with_the_refusal() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let digests: Vec<String> = (0..2)
        .map(|n| mirror.blob("team/app", bytes(100 + n, 2000)))
        .collect();
    mirror.push_fault(&digests[0], Fault::Status(403));
    let dir = resolve_only_behind_a_pulling_mirror(&upstream.url(), &mirror.url());
    let dist = dist_with_hosts(&dir);
    let input = digests.join("\n") + "\n";
    let args = [
        "fetch",
        "registry.invalid/team/app",
        "-",
        "-j",
        "1",
        "--ordered",
    ];
    let out = dist.run(&args, input.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), Some(0), "{err}");
    let frames = support::cli::parse_frames(&out.stdout);
    assert_eq!(frames.len(), 2, "{err}");
    for frame in &frames {
        let reason = frame.result.as_ref().unwrap_err();
        assert!(reason.contains("403"), "{reason}");
        assert!(!reason.contains("no host may"), "{reason}");
    }
    let warning = one_mirror_warning(&err);
    assert!(!warning.contains("from the registry"), "{err}");
    assert_eq!(asked(&mirror, &digests[1..]), vec![0], "{err}");
}

/// `-v` shows a URL as messages do, without its query: the "retrying" line printed a
/// mirror's `?ns=…` in full, and so did the line of a body resumed from a mirror.
#[test]
fn verbose_lines_show_urls_without_their_queries() {
    let (upstream, mirror, digests) = mirrored_blobs(90);
    let digest = &digests[0];
    mirror.push_fault(digest, Fault::Status(503));
    let repo = format!("{}/team/app", upstream.host());
    let args = ["-v", "fetch", "--mirror", &mirror.url(), &repo, digest];
    let out = Dist::new().run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("retrying"), "{err}");
    assert!(!err.contains("ns="), "{err}");

    // A mirror's body that breaks is asked for its rest at the mirror's URL.
    mirror.push_fault(&digests[1], Fault::DropAfter(1000));
    let args = ["-v", "fetch", "--mirror", &mirror.url(), &repo, &digests[1]];
    let out = Dist::new().run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("resuming body"), "{err}");
    assert!(!err.contains("ns="), "{err}");
}

/// A mirror behind a token server says the same of its refusal as one taking Basic: the
/// login refused, named by where it came from, or none sent.
#[test]
fn a_token_mirror_s_refusal_says_whether_a_login_was_sent() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::builder()
        .auth(Auth::bearer_for("mu", "right-password"))
        .start();
    let blob = bytes(95, 2000);
    mirror.blob("team/app", &blob);
    let digest = upstream.blob("team/app", &blob);
    let repo = format!("{}/team/app", upstream.host());
    let mirror_url = mirror.url();
    let args = ["fetch", "--mirror", &mirror_url, &repo, &digest];
    let logged_in = Dist::new();
    logged_in.login(&mirror.host(), "mu", "wrong-s3cret");
    let config = logged_in.config_dir().join("config.json");
    let refused = format!("refused the login from {} (401)", config.display());
    for (dist, says) in [
        (logged_in, refused.as_str()),
        (Dist::new(), "asks for a login (401), and dist sent none"),
    ] {
        let out = dist.run(&args, b"");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.stdout, blob, "{err}");
        let warning = one_mirror_warning(&err);
        assert!(warning.contains(says), "{err}");
    }
}

/// A mirror whose token service has user information in its address is asked for an
/// anonymous token, the login found for the mirror kept back; the service's refusal of
/// that (401 or 403) is said as such, the login named as kept back. Before, a 403 was
/// warned about as "refused access (403)" and a 401 as "dist sent none", as if no login
/// had been found for the mirror.
#[test]
fn a_mirror_s_refused_anonymous_token_says_the_login_was_kept_back() {
    for status in [401, 403] {
        let upstream = FakeRegistry::start();
        let mirror = FakeRegistry::start();
        let tokens = FakeRegistry::builder()
            .auth(Auth::bearer(std::time::Duration::from_secs(300)))
            .start();
        tokens.set_fault_for_every(
            "/token",
            Fault::Page {
                status,
                content_type: "application/json",
                body: r#"{"details":"anonymous pulls are off"}"#.into(),
            },
        );
        let (err, warning, config) = fetched_past_a_mirror_keeping_its_login_back(
            &upstream,
            &mirror,
            &tokens,
            r#"service="fake""#,
        );
        let says = format!(
            "gives anonymous callers no token ({status}), and the login from {} was kept \
             back from its token service",
            config.display()
        );
        assert!(warning.contains(&says), "{status}: {err}");
        assert!(!warning.contains("refused access"), "{status}: {err}");
        assert!(!warning.contains("sent none"), "{status}: {err}");
    }
}

/// A blob fetched from `upstream` with `mirror` tried first, logged in to, and asking for
/// a token from `tokens` with `params` after the realm, whose address has user information
/// (so the login is kept back from it): the stderr, the one mirror warning and the file the
/// login is in, the blob checked to come whole and the token service to get no login.
fn fetched_past_a_mirror_keeping_its_login_back(
    upstream: &FakeRegistry,
    mirror: &FakeRegistry,
    tokens: &FakeRegistry,
    params: &str,
) -> (String, String, std::path::PathBuf) {
    let blob = bytes(96, 2000);
    let digest = upstream.blob("team/app", &blob);
    let challenge = format!(
        r#"Bearer realm="http://me@{}/token",{params}"#,
        tokens.host()
    );
    mirror.set_fault_for_every(&digest, Fault::Challenge(challenge));
    let dist = Dist::new();
    dist.login(&mirror.host(), "mu", "pw");
    let config = dist.config_dir().join("config.json");
    let repo = format!("{}/team/app", upstream.host());
    let args = ["fetch", "--mirror", &mirror.url(), &repo, &digest];
    let out = dist.run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.stdout, blob, "{err}");
    assert!(tokens.requests().iter().all(|r| r.authorization.is_none()));
    let warning = one_mirror_warning(&err).to_string();
    (err, warning, config)
}

/// A blob fetched from `upstream` with `mirror` tried first, its `hosts.toml` giving the
/// mirror the header `Authorization: {authorization}`: the fetch's stderr and its mirror
/// warnings, the blob checked to come whole (from the registry, the mirror refusing).
fn fetched_past_a_mirror_with(
    upstream: &FakeRegistry,
    mirror: &FakeRegistry,
    authorization: &str,
) -> (String, Vec<String>) {
    fetched_past_a_logged_in_mirror_with(upstream, mirror, authorization, None)
}

/// [`fetched_past_a_mirror_with`], with a login for the mirror in dist's credentials file
/// when `login` (user, password) is given.
fn fetched_past_a_logged_in_mirror_with(
    upstream: &FakeRegistry,
    mirror: &FakeRegistry,
    authorization: &str,
    login: Option<(&str, &str)>,
) -> (String, Vec<String>) {
    let blob = bytes(97, 2000);
    mirror.blob("team/app", &blob);
    let digest = upstream.blob("team/app", &blob);
    let toml = format!(
        "[host.\"{}\"]\n  capabilities = [\"pull\"]\n\
         [host.\"{}\".header]\n  Authorization = \"{authorization}\"\n",
        mirror.url(),
        mirror.url()
    );
    let dir = hosts_dir(&upstream.host(), &toml);
    let dist = dist_with_hosts(&dir);
    if let Some((user, password)) = login {
        dist.login(&mirror.host(), user, password);
    }
    let repo = format!("{}/team/app", upstream.host());
    let out = dist.run(&["fetch", &repo, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.stdout, blob, "{err}");
    let warnings = mirror_warnings(&err)
        .into_iter()
        .map(String::from)
        .collect();
    (err, warnings)
}

/// A mirror given its login by `hosts.toml`'s `[header]` (an `Authorization` of its
/// own, as containerd users configure a mirror that dist has no credentials file entry
/// for) and refusing it is said to refuse that header: "dist sent none" was said of a
/// request that carried one.
#[test]
fn a_mirror_refusing_its_configured_authorization_says_it_was_sent() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::builder()
        .auth(Auth::basic("mu", "right-password"))
        .start();
    let wrong = base64::engine::general_purpose::STANDARD.encode("mu:wrong-s3cret");
    let (err, warnings) = fetched_past_a_mirror_with(&upstream, &mirror, &format!("Basic {wrong}"));
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("refused the Authorization its hosts.toml [header] sets (401)"),
        "{err}"
    );
    // The error line beside it says the same, not that a `docker login` is missing.
    assert!(
        warnings[0].contains("refused the Authorization its hosts.toml [header] sets: correct"),
        "{err}"
    );
    assert!(
        !warnings[0].contains("no credentials for it were found"),
        "{err}"
    );
    assert!(!err.contains(&wrong), "{err}");
    // The header did reach the mirror.
    let sent = mirror.requests();
    assert!(sent
        .iter()
        .any(|r| r.authorization.as_deref() == Some(&format!("Basic {wrong}"))));
}

/// A mirror that answers the token it granted with `insufficient_scope` refuses access
/// with a 401: the warning says the status the error line has. It said "refused access
/// (403)" of every denial.
#[test]
fn a_mirror_s_denial_is_said_with_its_own_status() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let tokens = FakeRegistry::builder()
        .auth(Auth::bearer(std::time::Duration::from_secs(300)))
        .start();
    let blob = bytes(98, 2000);
    let digest = upstream.blob("team/app", &blob);
    let challenge = format!(
        r#"Bearer realm="{}/token",service="fake",scope="repository:team/app:pull",error="insufficient_scope""#,
        tokens.url()
    );
    mirror.set_fault_for_every(&digest, Fault::Challenge(challenge));
    let repo = format!("{}/team/app", upstream.host());
    let args = ["fetch", "--mirror", &mirror.url(), &repo, &digest];
    let out = Dist::new().run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.stdout, blob, "{err}");
    let warning = one_mirror_warning(&err);
    assert!(warning.contains("refused access (401)"), "{err}");
    assert!(!warning.contains("(403)"), "{err}");
}

/// A mirror given an `Authorization` by `hosts.toml` whose token service refuses the
/// anonymous token dist asks for: the header goes to the mirror alone, never to its token
/// service, so the service refused no header of the user's. It was said to refuse "the
/// Authorization its hosts.toml [header] sets", beside an error line saying the token
/// service gives anonymous callers none.
#[test]
fn a_mirror_s_token_service_refusal_is_not_said_to_refuse_the_configured_header() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::builder()
        .auth(Auth::bearer_for("mu", "right-password"))
        .start();
    let (err, warnings) =
        fetched_past_a_mirror_with(&upstream, &mirror, "Bearer not-for-the-token-service");
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].contains("gives anonymous callers no token"),
        "{err}"
    );
    assert!(!warnings[0].contains("hosts.toml [header]"), "{err}");
    assert!(
        warnings[0].contains("asks for a login (401), and dist sent none"),
        "{err}"
    );
}

/// An upstream registry with a blob (its content and digest), and a mirror of it that
/// challenges for the blob with a token realm under its own API root (`/v2/auth`, as
/// Quay's), `user` (`me@` or none) in the realm's address; the realm refuses (401).
fn a_mirror_with_its_token_service_at_v2_auth(
    user: &str,
) -> (FakeRegistry, FakeRegistry, Vec<u8>, String) {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let blob = bytes(95, 2000);
    let digest = upstream.blob("team/app", &blob);
    let realm = mirror.url().replacen("://", &format!("://{user}"), 1);
    let challenge = format!(r#"Bearer realm="{realm}/v2/auth",service="fake""#);
    mirror.set_fault_for_every(&digest, Fault::Challenge(challenge));
    mirror.set_fault_for_every(
        "/v2/auth",
        Fault::Page {
            status: 401,
            content_type: "application/json",
            body: r#"{"details":"anonymous pulls are off"}"#.into(),
        },
    );
    (upstream, mirror, blob, digest)
}

/// A mirror whose token service is on its own origin under its API root, as Quay's
/// (`/v2/auth`) and Artifactory's are: that service's refusal of the anonymous token is
/// still its token service's, which the configured header never goes to. Taken for the
/// mirror's own answer by its URL, it was said to refuse "the Authorization its
/// hosts.toml [header] sets".
#[test]
fn a_token_service_under_the_mirror_s_api_root_is_not_said_to_refuse_the_configured_header() {
    let (upstream, mirror, blob, digest) = a_mirror_with_its_token_service_at_v2_auth("");
    let toml = format!(
        "[host.\"{}\"]\n  capabilities = [\"pull\"]\n\
         [host.\"{}\".header]\n  Authorization = \"Bearer configured-s3cret\"\n",
        mirror.url(),
        mirror.url()
    );
    let dir = hosts_dir(&upstream.host(), &toml);
    let dist = dist_with_hosts(&dir);
    let repo = format!("{}/team/app", upstream.host());
    let out = dist.run(&["fetch", &repo, &digest], b"");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.stdout, blob, "{err}");
    let asked: Vec<_> = mirror
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/v2/auth"))
        .collect();
    assert!(!asked.is_empty(), "{err}");
    assert!(asked.iter().all(|r| r.authorization.is_none()), "{err}");
    assert!(!err.contains("configured-s3cret"), "{err}");
    let warning = one_mirror_warning(&err);
    assert!(!warning.contains("hosts.toml [header]"), "{err}");
    assert!(
        warning.contains("asks for a login (401), and dist sent none"),
        "{err}"
    );
}

/// The same token service given no login, kept back for the user information in its
/// realm's address: its refusal is said to be of the token, not of access, as the error
/// line beside it says.
#[test]
fn a_token_service_under_the_mirror_s_api_root_is_said_to_give_no_token() {
    let (upstream, mirror, blob, digest) = a_mirror_with_its_token_service_at_v2_auth("me@");
    let dist = Dist::new();
    dist.login(&mirror.host(), "mu", "pw");
    let repo = format!("{}/team/app", upstream.host());
    let args = ["fetch", "--mirror", &mirror.url(), &repo, &digest];
    let out = dist.run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.stdout, blob, "{err}");
    let warning = one_mirror_warning(&err);
    assert!(
        warning.contains("gives anonymous callers no token (401), and the login from "),
        "{err}"
    ); // The realm's user information is no part of what is said.
    assert!(!err.contains("me@"), "{err}");
}

/// A mirror given an `Authorization` by `hosts.toml` and a login in the credentials file:
/// each request carries one `Authorization`, the configured one until the mirror's
/// challenge is answered with the login, which then replaces it (as containerd's
/// authorizer sets its own over the configured header). Both went on one request, and a
/// server reads one of them or refuses the request; refused, the warning names the login,
/// which is then what the mirror turned down.
#[test]
fn a_mirror_with_a_configured_authorization_and_a_login_is_sent_one_of_them() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::builder()
        .auth(Auth::basic("mu", "right-password"))
        .start();
    let configured = base64::engine::general_purpose::STANDARD.encode("mu:configured-s3cret");
    let login = base64::engine::general_purpose::STANDARD.encode("mu:wrong-s3cret");
    let (err, warnings) = fetched_past_a_logged_in_mirror_with(
        &upstream,
        &mirror,
        &format!("Basic {configured}"),
        Some(("mu", "wrong-s3cret")),
    );
    let sent: Vec<Vec<String>> = mirror
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert!(sent.iter().all(|values| values.len() <= 1), "{sent:?}");
    // The configured header first, then the login in its place.
    assert_eq!(sent.first(), Some(&vec![format!("Basic {configured}")]));
    assert!(sent.contains(&vec![format!("Basic {login}")]), "{sent:?}");
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("refused the login from "), "{err}");
    assert!(!warnings[0].contains("hosts.toml [header]"), "{err}");
}

/// A mirror whose token service has user information in its address grants the anonymous
/// token asked for in place of the login kept back, and the mirror refuses that token the
/// repository (`insufficient_scope`): the warning says the login was kept back, as the
/// error line beside it does. It said "refused access (401)" alone.
#[test]
fn a_mirror_s_denial_of_an_anonymous_token_says_the_login_was_kept_back() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let tokens = FakeRegistry::builder()
        .auth(Auth::bearer(std::time::Duration::from_secs(300)))
        .start();
    let params = r#"service="fake",scope="repository:team/app:pull",error="insufficient_scope""#;
    let (err, warning, config) =
        fetched_past_a_mirror_keeping_its_login_back(&upstream, &mirror, &tokens, params);
    let says = format!(
        "gives anonymous callers no access (401), and the login from {} was kept back from \
         its token service",
        config.display()
    );
    assert!(warning.contains(&says), "{err}");
    assert!(!warning.contains("refused access"), "{err}");
}

/// A mirror asking for Basic authentication, for which dist found an identity token (a
/// `docker login` to a registry whose token service handed one out): Basic cannot send
/// it, and the warning names it and where it came from, as the error line does. It said
/// "asks for a login (401), and dist sent none", sending the user to log in when they had.
#[test]
fn a_mirror_s_basic_challenge_met_with_an_identity_token_names_it() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::builder()
        .auth(Auth::basic("mu", "right-password"))
        .start();
    let blob = bytes(100, 2000);
    mirror.blob("team/app", &blob);
    let digest = upstream.blob("team/app", &blob);
    let dist = Dist::new();
    dist.docker_config(&format!(
        r#"{{"auths":{{"{}":{{"identitytoken":"refresh-s3cret"}}}}}}"#,
        mirror.host()
    ));
    let config = dist.config_dir().join("config.json");
    let repo = format!("{}/team/app", upstream.host());
    let args = ["fetch", "--mirror", &mirror.url(), &repo, &digest];
    let out = dist.run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.stdout, blob, "{err}");
    let warning = one_mirror_warning(&err);
    let says = format!(
        "asks for Basic authentication (401), and the login from {} is an identity token, \
         which it cannot send",
        config.display()
    );
    assert!(warning.contains(&says), "{err}");
    assert!(!warning.contains("sent none"), "{err}");
    assert!(!err.contains("refresh-s3cret"), "{err}");
}

/// A mirror that sends a blob's request on to another host (its blob store) which answers
/// 401: dist sends the mirror's login to the mirror alone, on purpose, and the warning
/// says so. It said "asks for a login (401), and dist sent none" of a mirror that had
/// taken the login.
#[test]
fn a_mirror_s_redirect_target_asking_for_a_login_is_said_to_be_kept_from_it() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::builder()
        .auth(Auth::basic("mu", "right-password"))
        .start();
    let store = FakeRegistry::start();
    let blob = bytes(101, 2000);
    let digest = upstream.blob("team/app", &blob);
    mirror.set_fault_for_every(
        &digest,
        Fault::Redirect {
            status: 307,
            location: format!("{}/store/{digest}", store.url()),
        },
    );
    store.set_fault_for_every(
        &digest,
        Fault::Page {
            status: 401,
            content_type: "text/plain",
            body: "login first".into(),
        },
    );
    let dist = Dist::new();
    dist.login(&mirror.host(), "mu", "right-password");
    let repo = format!("{}/team/app", upstream.host());
    let args = ["fetch", "--mirror", &mirror.url(), &repo, &digest];
    let out = dist.run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.stdout, blob, "{err}");
    assert!(!store.requests().is_empty(), "{err}");
    assert!(store.requests().iter().all(|r| r.authorization.is_none()));
    let warning = one_mirror_warning(&err);
    assert!(
        warning.contains(
            "sent dist on to a redirect's target that asks for a login (401), which dist \
             sends no login to: a login goes to the host it is for alone"
        ),
        "{err}"
    );
    assert!(!warning.contains("sent none"), "{err}");
}
