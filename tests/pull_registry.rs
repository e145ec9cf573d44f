//! `dist pull` and `dist resolve` against a real `docker-registry` holding multi-platform
//! images (OCI index and Docker manifest list), the result checked byte for byte, read back
//! through `oci:` locators, and read by another tool, skopeo. The HEAD-first resolution is
//! checked on the in-process fake registry, which records request methods.

#[path = "pull_registry/images.rs"]
mod images;
mod support;

use std::collections::BTreeMap;

use images::*;
use serde_json::{json, Value};
use support::cli::{bytes, json_lines, parse_frames, sha256, Dist};
use support::fake::{FakeRegistry, Fault};
use support::registry::{Mode, Registry};

#[test]
fn default_platform_then_again_fetches_nothing() {
    let reg = Registry::start(Mode::Anonymous);
    let (index_digest, index, images) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let (mine, other) = if host_arch() == "amd64" {
        (&images[0], &images[1])
    } else {
        (&images[1], &images[0])
    };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.jsonl");
    let out_dir = dir.path().join("layout");
    let (o, r) = (out_dir.to_str().unwrap(), report.to_str().unwrap());
    let reference = format!("{}/team/app:v1", reg.host());
    let dist = Dist::new();
    let first = dist.ok(&["pull", &reference, "-o", o, "--report", r]);
    assert_eq!(
        statuses(&first),
        counts(&[("ok", 5)]),
        "index, manifest, config, 2 layers"
    );
    assert_eq!(
        std::fs::read(&report).unwrap(),
        first,
        "--report repeats stdout"
    );
    assert_eq!(stored(&out_dir, &index_digest), Some(index));
    assert_image_stored(&out_dir, mine);
    assert_eq!(
        stored(&out_dir, &other.digest),
        None,
        "other platform not pulled"
    );
    assert_eq!(stored(&out_dir, &other.blobs[2].0), None);
    let e = entries(&out_dir);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["digest"], mine.digest.as_str());
    assert_eq!(e[0]["mediaType"], Flavor::Oci.manifest());
    assert_eq!(e[0]["platform"]["architecture"], host_arch());
    assert_eq!(
        e[0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    assert!(out_dir.join("oci-layout").exists());

    let again = dist.ok(&["pull", &reference, "-o", o]);
    assert_eq!(statuses(&again), counts(&[("exists", 5)]));
    assert_eq!(entries(&out_dir), e);
}

#[test]
fn platform_flag_with_bearer_tokens_one_token() {
    let reg = Registry::start(Mode::Token);
    let (_, _, images) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let dir = tempfile::tempdir().unwrap();
    reg.reset_token_requests();
    let out = client(&reg).ok(&[
        "pull",
        &format!("{}/team/app:v1", reg.host()),
        "-o",
        dir.path().to_str().unwrap(),
        "--platform",
        "linux/arm64",
    ]);
    assert_eq!(statuses(&out), counts(&[("ok", 5)]));
    assert_image_stored(dir.path(), &images[1]);
    assert_eq!(entries(dir.path())[0]["digest"], images[1].digest.as_str());
    assert_eq!(
        reg.token_requests(),
        1,
        "one token for resolve and every level"
    );
}

#[test]
fn all_platforms_keeps_the_index_and_skopeo_reads_it() {
    let reg = Registry::start(Mode::Basic);
    let (index_digest, index, images) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let out = client(&reg).ok(&[
        "pull",
        &format!("{}/team/app:v1", reg.host()),
        "-o",
        layout.to_str().unwrap(),
        "--all-platforms",
        "-j",
        "3",
    ]);
    // index, 2 manifests, 2 configs, the shared layer once, 2 own layers
    assert_eq!(statuses(&out), counts(&[("ok", 8)]));
    assert_eq!(stored(&layout, &index_digest), Some(index.clone()));
    images.iter().for_each(|i| assert_image_stored(&layout, i));
    let e = entries(&layout);
    assert_eq!(e.len(), 1);
    assert_eq!(
        (
            e[0]["digest"].as_str().unwrap(),
            e[0]["mediaType"].as_str().unwrap()
        ),
        (index_digest.as_str(), Flavor::Oci.index())
    );
    assert_eq!(e[0]["size"], index.len());

    let target = format!("oci:{}:v1", layout.display());
    let inspect = skopeo(&["inspect", &target]);
    let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspect["Digest"], index_digest.as_str());
    let copy = dir.path().join("copy");
    skopeo(&["copy", &target, &format!("dir:{}", copy.display())]);
    let mine = images.iter().find(|i| i.arch == host_arch()).unwrap();
    for (d, b) in &mine.blobs {
        assert_eq!(&std::fs::read(copy.join(&d["sha256:".len()..])).unwrap(), b);
    }
}

#[test]
fn one_platform_pull_is_read_by_skopeo() {
    let reg = Registry::start(Mode::Anonymous);
    let (_, _, images) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let reference = format!("{}/team/app:v1", reg.host());
    Dist::new().ok(&[
        "pull",
        &reference,
        "-o",
        layout.to_str().unwrap(),
        "--platform",
        "linux/arm64",
    ]);
    let target = format!("oci:{}:v1", layout.display());
    let inspect: Value = serde_json::from_slice(&skopeo(&["inspect", &target]).stdout).unwrap();
    assert_eq!(inspect["Digest"], images[1].digest.as_str());
    assert_eq!(inspect["Architecture"], "arm64");
    let copy = dir.path().join("copy");
    skopeo(&["copy", &target, &format!("dir:{}", copy.display())]);
    assert_eq!(
        std::fs::read(copy.join("manifest.json")).unwrap(),
        images[1].manifest
    );
}

#[test]
fn docker_manifest_list_stays_docker() {
    let reg = Registry::start(Mode::Anonymous);
    let (list_digest, list, images) = multi(&reg, "legacy/app", "v1", Flavor::Docker);
    let reference = format!("{}/legacy/app:v1", reg.host());
    let (one, all) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dist = Dist::new();
    dist.ok(&[
        "pull",
        &reference,
        "-o",
        one.path().to_str().unwrap(),
        "--platform",
        "linux/amd64",
    ]);
    assert_image_stored(one.path(), &images[0]);
    assert_eq!(
        entries(one.path())[0]["mediaType"],
        Flavor::Docker.manifest()
    );
    let out = dist.ok(&[
        "pull",
        &reference,
        "-o",
        all.path().to_str().unwrap(),
        "--all-platforms",
    ]);
    let types: Vec<String> = json_lines(&out)
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect();
    assert!(
        types
            .iter()
            .all(|t| t.starts_with("application/vnd.docker.")),
        "{types:?}"
    );
    assert_eq!(stored(all.path(), &list_digest), Some(list));
    let e = entries(all.path());
    assert_eq!(e[0]["mediaType"], Flavor::Docker.index());
    assert_eq!(e[0]["digest"], list_digest.as_str());
}

/// A Docker-typed image keeps its type in `index.json`, and so its digest, as crane and
/// containerd record it. skopeo 1.9 finds a tag only among OCI-typed entries (as later
/// releases still do, even for what `skopeo copy --preserve-digests` itself writes), but
/// reads the entry of a layout that holds nothing else without one: a pull from the layout
/// into a layout of its own makes that, which the README gives as the way.
#[test]
fn skopeo_reads_a_docker_typed_image_from_a_layout_of_its_own() {
    let reg = Registry::start(Mode::Anonymous);
    let (_, _, images) = multi(&reg, "legacy/app", "v1", Flavor::Docker);
    let other = push_image(&reg, "legacy/app", Flavor::Docker, host_arch(), 3);
    reg.push_manifest(
        "legacy/app",
        "v2",
        Flavor::Docker.manifest(),
        &other.manifest,
    );
    let image = images.iter().find(|i| i.arch == host_arch()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (both, one) = (dir.path().join("both"), dir.path().join("one"));
    let dist = Dist::new();
    for tag in ["v1", "v2"] {
        let reference = format!("{}/legacy/app:{tag}", reg.host());
        dist.ok(&["pull", &reference, "-o", both.to_str().unwrap()]);
    }
    assert_eq!(entries(&both)[0]["mediaType"], Flavor::Docker.manifest());

    let tagged = format!("oci:{}:v1", both.display());
    let refused = std::process::Command::new("skopeo")
        .args(["--insecure-policy", "inspect", &tagged])
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("no descriptor found for reference"),
        "skopeo reads a Docker-typed entry by its tag now: say so in the README ({why})"
    );

    dist.ok(&["pull", &tagged, "-o", one.to_str().unwrap()]);
    assert_eq!(entries(&one).len(), 1);
    let alone = format!("oci:{}", one.display());
    let inspect: Value = serde_json::from_slice(&skopeo(&["inspect", &alone]).stdout).unwrap();
    assert_eq!(inspect["Digest"], image.digest.as_str());
    let copy = dir.path().join("copy");
    skopeo(&["copy", &alone, &format!("dir:{}", copy.display())]);
    assert_eq!(
        std::fs::read(copy.join("manifest.json")).unwrap(),
        image.manifest
    );
}

#[test]
fn two_images_share_one_dir_even_pulled_at_once() {
    let reg = Registry::start(Mode::Anonymous);
    let (index_digest, _, images) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let mut tags = vec![("v1".to_string(), index_digest)];
    for (i, image) in images.iter().enumerate() {
        let tag = format!("single{i}");
        reg.push_manifest("team/app", &tag, Flavor::Oci.manifest(), &image.manifest);
        tags.push((tag, image.digest.clone()));
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    std::thread::scope(|s| {
        for (tag, _) in &tags {
            let reference = format!("{}/team/app:{tag}", reg.host());
            s.spawn(move || Dist::new().ok(&["pull", &reference, "-o", d, "--all-platforms"]));
        }
    });
    let mut got: Vec<(String, String)> = entries(dir.path())
        .iter()
        .map(|e| {
            let name = e["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap();
            (name.to_string(), e["digest"].as_str().unwrap().to_string())
        })
        .collect();
    got.sort();
    tags.sort();
    assert_eq!(got, tags);
    images
        .iter()
        .for_each(|i| assert_image_stored(dir.path(), i));
    let files = std::fs::read_dir(dir.path().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(files, 8, "shared blobs stored once, no temporaries left");
}

/// A mirror's life: one layout pulled into again and again. The tag moves on the registry:
/// its entry follows (one entry, the old blobs kept), and skopeo reads the new image. One
/// platform pulled under a tag the layout holds whole leaves the whole index named, so
/// readers on the other platforms still get theirs (it used to name arm64's image alone).
#[test]
fn a_mirror_follows_a_moved_tag_and_keeps_its_whole_index_named() {
    let reg = Registry::start(Mode::Anonymous);
    let (old_digest, _, old) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let o = layout.to_str().unwrap();
    let reference = format!("{}/team/app:v1", reg.host());
    let target = format!("oci:{o}:v1");
    let inspect = |extra: &[&str]| -> Value {
        let mut args = vec!["inspect"];
        args.extend(extra);
        args.push(&target);
        serde_json::from_slice(&skopeo(&args).stdout).unwrap()
    };
    let dist = Dist::new();
    dist.ok(&["pull", &reference, "-o", o, "--all-platforms"]);

    let moved = [
        push_image(&reg, "team/app", Flavor::Oci, "amd64", 11),
        push_image(&reg, "team/app", Flavor::Oci, "arm64", 12),
    ];
    let (new_digest, _) = push_index(&reg, "team/app", "v1", Flavor::Oci, &[&moved[0], &moved[1]]);
    dist.ok(&["pull", &reference, "-o", o, "--all-platforms"]);
    let e = entries(&layout);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0]["digest"], new_digest.as_str());
    assert_eq!(
        inspect(&["--raw"]),
        serde_json::from_slice::<Value>(&stored(&layout, &new_digest).unwrap()).unwrap()
    );
    assert!(stored(&layout, &old_digest).is_some(), "old blobs stay");
    old.iter().for_each(|i| assert_image_stored(&layout, i));

    let out = dist.ok(&["pull", &reference, "-o", o, "--platform", "linux/arm64"]);
    assert_eq!(statuses(&out), counts(&[("exists", 5)]));
    assert_eq!(entries(&layout), e, "the whole index stays named");
    for image in &moved {
        let seen = inspect(&["--override-arch", &image.arch]);
        assert_eq!(seen["Architecture"], image.arch.as_str());
        assert_eq!(seen["Layers"][1], image.blobs[2].0.as_str());
    }
}

/// The entry names the tag alone, as skopeo reads it, and the full name beside it as
/// containerd and BuildKit write it. Another repository's image of the same tag takes the
/// tag's place, and says so: a mirror of many repositories into one layout lost an image's
/// name without a word. A moved tag of the same repository is the usual update, said
/// nothing of; a layout pulled into itself is left as it is.
#[test]
fn another_repository_s_image_of_the_same_tag_takes_its_name_loudly() {
    const IMAGE_NAME: &str = "io.containerd.image.name";
    let reg = Registry::start(Mode::Anonymous);
    let redis = push_image(&reg, "a/redis", Flavor::Oci, host_arch(), 1);
    reg.push_manifest("a/redis", "7", Flavor::Oci.manifest(), &redis.manifest);
    let nginx = push_image(&reg, "b/nginx", Flavor::Oci, host_arch(), 2);
    reg.push_manifest("b/nginx", "7", Flavor::Oci.manifest(), &nginx.manifest);
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().to_str().unwrap();
    let (a, b) = (
        format!("{}/a/redis:7", reg.host()),
        format!("{}/b/nginx:7", reg.host()),
    );
    let dist = Dist::new();
    let pull = |reference: &str, extra: &[&str]| {
        let mut args = vec!["pull", reference, "-o", o];
        args.extend(extra);
        let out = dist.run(&args, b"");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    assert_eq!(pull(&a, &[]), "");
    let e = entries(dir.path());
    assert_eq!(e[0]["annotations"][IMAGE_NAME], a.as_str());
    assert_eq!(
        e[0]["annotations"]["org.opencontainers.image.ref.name"],
        "7"
    );

    let err = pull(&b, &[]);
    assert!(
        err.starts_with(&format!(
            "dist: warning: 7 in {o} named {a} ({}); it names {b} now",
            redis.digest
        )),
        "{err}"
    );
    let e = entries(dir.path());
    assert_eq!(e.len(), 1);
    assert_eq!(
        (&e[0]["digest"], &e[0]["annotations"][IMAGE_NAME]),
        (&json!(nginx.digest), &json!(b))
    );
    assert_eq!(pull(&a, &["-q"]), "", "-q promises no warnings");

    let moved = push_image(&reg, "a/redis", Flavor::Oci, host_arch(), 3);
    reg.push_manifest("a/redis", "7", Flavor::Oci.manifest(), &moved.manifest);
    assert_eq!(pull(&a, &[]), "", "a moved tag is no surprise");
    assert_eq!(entries(dir.path())[0]["digest"], moved.digest.as_str());

    let index = std::fs::read(dir.path().join("index.json")).unwrap();
    assert_eq!(pull(&format!("oci:{o}:7"), &[]), "");
    assert_eq!(std::fs::read(dir.path().join("index.json")).unwrap(), index);
}

#[test]
fn resolve_prints_one_descriptor_line() {
    let reg = Registry::start(Mode::Basic);
    let (index_digest, index, images) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let dist = client(&reg);
    let want =
        json!({"mediaType": Flavor::Oci.index(), "digest": index_digest, "size": index.len()});
    for reference in [
        format!("{}/team/app:v1", reg.host()),
        format!("{}/team/app@{index_digest}", reg.host()),
    ] {
        let out = dist.ok(&["resolve", &reference]);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), want);
    }
    let out = dist.ok(&[
        "resolve",
        &format!("{}/team/app@{}", reg.host(), images[0].digest),
    ]);
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap()["mediaType"],
        Flavor::Oci.manifest()
    );
    let missing = dist.run(&["resolve", &format!("{}/team/app:nope", reg.host())], b"");
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    // A HEAD answer has no body; the GET that follows a 404 brings the registry's code.
    assert!(
        err.contains("nope") && err.contains("404 Not Found: MANIFEST_UNKNOWN"),
        "{err}"
    );
    let bad = dist.run(&["resolve", "Not A Reference"], b"");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn the_layout_is_a_remote_too() {
    let reg = Registry::start(Mode::Anonymous);
    let (index_digest, index, images) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let s = src.to_str().unwrap();
    let dist = Dist::new();
    dist.ok(&[
        "pull",
        &format!("{}/team/app:v1", reg.host()),
        "-o",
        s,
        "--all-platforms",
    ]);
    let loc = format!("oci:{s}");

    let layer = &images[1].blobs[2];
    assert_eq!(dist.ok(&["fetch", &loc, &layer.0]), layer.1);
    assert_eq!(dist.ok(&["fetch", &loc, "v1"]), index);
    let want =
        json!({"mediaType": Flavor::Oci.index(), "digest": index_digest, "size": index.len()});
    let resolved: Value =
        serde_json::from_slice(&dist.ok(&["resolve", &format!("{loc}:v1")])).unwrap();
    assert_eq!(resolved, want);

    let mut all: BTreeMap<String, Vec<u8>> = images.iter().flat_map(|i| i.blobs.clone()).collect();
    all.extend(
        images
            .iter()
            .map(|i| (i.digest.clone(), i.manifest.clone())),
    );
    let input: String = all.keys().map(|d| format!("{d}\n")).collect();
    let framed = dist.run(&["fetch", &loc, "-"], input.as_bytes());
    assert!(
        framed.status.success(),
        "{}",
        String::from_utf8_lossy(&framed.stderr)
    );
    let frames = parse_frames(&framed.stdout);
    assert_eq!(frames.len(), all.len());
    for f in frames {
        let (digest, _, body) = f.result.expect("no error frames");
        assert_eq!(&all[&digest], &body);
    }

    for platform in [None, Some("linux/arm64")] {
        let copy = dir.path().join(format!("copy-{}", platform.is_some()));
        let c = copy.to_str().unwrap();
        let reference = format!("{loc}:v1");
        let mut args = vec!["pull", reference.as_str(), "-o", c];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        } else {
            args.push("--all-platforms");
        }
        let out = dist.ok(&args);
        assert!(statuses(&out).contains_key("ok"));
        let e = entries(&copy);
        let expected = if platform.is_some() {
            &images[1].digest
        } else {
            &index_digest
        };
        assert_eq!(e[0]["digest"], expected.as_str());
        assert_eq!(
            e[0]["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );
    }
}

#[test]
fn unknown_tag_and_unmatched_platform_fail_clearly() {
    let reg = Registry::start(Mode::Anonymous);
    multi(&reg, "team/app", "v1", Flavor::Oci);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let dist = Dist::new();
    let report = tempfile::tempdir().unwrap();
    let report = report.path().join("report.jsonl");
    let r = report.to_str().unwrap();
    let v9 = format!("{}/team/app:v9", reg.host());
    let missing = dist.run(&["pull", &v9, "-o", d, "--report", r], b"");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("v9"));
    // What stopped the pull is its last line, on stdout and in the report alike.
    let lines = json_lines(&missing.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["object"], v9.as_str());
    assert_eq!(lines[0]["status"], "error");
    assert_eq!(lines[0]["line"], 1);
    assert!(
        lines[0]["error"].as_str().unwrap().contains("v9"),
        "{lines:?}"
    );
    assert_eq!(
        lines[0]["digest"],
        serde_json::Value::Null,
        "a tag names none"
    );
    assert_eq!(json_lines(&std::fs::read(&report).unwrap()), lines);
    // A reference by digest names what it asked for, as a worker's failed line does.
    let missing_digest = format!("sha256:{}", "0".repeat(64));
    let by_digest = format!("{}/team/app@{missing_digest}", reg.host());
    let missing = dist.run(&["pull", &by_digest, "-o", d], b"");
    assert_eq!(missing.status.code(), Some(1));
    let lines = json_lines(&missing.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["object"], by_digest.as_str());
    assert_eq!(lines[0]["digest"], missing_digest.as_str(), "{lines:?}");
    let reference = format!("{}/team/app:v1", reg.host());
    let none = dist.run(
        &["pull", &reference, "-o", d, "--platform", "linux/s390x"],
        b"",
    );
    assert_eq!(none.status.code(), Some(1));
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/amd64, linux/arm64/v8"),
        "{err}"
    );
    // The index was fetched but not stored, nor reported: the platform it lacks is all.
    let lines = json_lines(&none.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["object"], reference.as_str());
    assert!(
        lines[0]["error"].as_str().unwrap().contains("linux/s390x"),
        "{lines:?}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let usage = dist.run(&["pull", &reference, "-o", d, "--platform", "amd46"], b"");
    assert_eq!(usage.status.code(), Some(2));
    let err = String::from_utf8_lossy(&usage.stderr);
    assert!(
        err.contains("\"amd46\"") && err.contains("no operating system or architecture"),
        "{err}"
    );
}

/// A platform the index does not list fails the pull before anything is stored, as skopeo
/// and crane fail it: a new directory is not made, an empty one stays empty, and a layout
/// holding another image gets not even the index (it left a layout of one index blob,
/// which looked like a pulled image).
#[test]
fn an_unmatched_platform_stores_nothing() {
    let reg = Registry::start(Mode::Anonymous);
    let (index_digest, _, _) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let reference = format!("{}/team/app:v1", reg.host());
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    // Another image's layout: the same images under a Docker manifest list.
    let used = dir.path().join("used");
    multi(&reg, "team/other", "v1", Flavor::Docker);
    let other = format!("{}/team/other:v1", reg.host());
    dist.ok(&[
        "pull",
        &other,
        "-o",
        used.to_str().unwrap(),
        "--platform",
        "linux/amd64",
    ]);
    for out in [&new, &empty, &used] {
        let o = out.to_str().unwrap();
        let none = dist.run(
            &["pull", &reference, "-o", o, "--platform", "linux/s390x"],
            b"",
        );
        assert_eq!(none.status.code(), Some(1), "{o}");
        let lines = json_lines(&none.stdout);
        assert_eq!(lines.len(), 1, "{o}: {lines:?}");
        assert_eq!(lines[0]["line"], 1);
        assert!(
            lines[0]["error"].as_str().unwrap().contains("linux/s390x"),
            "{lines:?}"
        );
    }
    assert!(!new.exists());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert_eq!(stored(&used, &index_digest), None);
    assert_eq!(entries(&used).len(), 1);
}

/// `team/app:v1` on `fake`, an index whose one (linux/arm64) manifest is 5 MiB, past the
/// 4 MiB limit, served by the blobs endpoint alone (which caps no size); its reference.
fn an_index_of_a_manifest_past_the_limit(fake: &FakeRegistry) -> String {
    let padding = " ".repeat(5 << 20);
    let huge = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}"{padding}}}"#,
        Flavor::Oci.manifest()
    );
    let digest = fake.blob("team/app", &huge);
    let index = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.index(), "manifests": [
        {"mediaType": Flavor::Oci.manifest(), "digest": digest, "size": huge.len(),
         "platform": {"os": "linux", "architecture": "arm64"}}]});
    fake.manifest("team/app", "v1", Flavor::Oci.index(), index.to_string());
    format!("{}/team/app:v1", fake.host())
}

/// A manifest past the 4 MiB limit that only the blobs endpoint serves (which caps no
/// size) stops a one-platform pull, as one stored and read back did, and is not stored.
#[test]
fn a_manifest_past_the_limit_from_the_blobs_endpoint_stops_the_pull() {
    let fake = FakeRegistry::start();
    let reference = an_index_of_a_manifest_past_the_limit(&fake);
    // Every platform's pull walks the indexes as one platform's does: it stored the
    // 5 MiB "manifest" before it read it back and refused it.
    for platforms in [&["--platform", "linux/arm64"][..], &["--all-platforms"]] {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new");
        let o = new.to_str().unwrap();
        let out = Dist::new().run(
            &[&["pull", &reference, "-o", o][..], platforms].concat(),
            b"",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{platforms:?}: {err}");
        assert!(
            err.contains("exceeds the 4194304-byte limit"),
            "{platforms:?}: {err}"
        );
        // What stops the pull as a whole is its one line, named by the reference.
        let lines = json_lines(&out.stdout);
        assert_eq!(lines.len(), 1, "{platforms:?}: {lines:?}");
        assert_eq!(lines[0]["object"], reference.as_str());
        assert_eq!(lines[0]["line"], 1);
        assert!(!new.exists(), "{platforms:?}: {:?}", listing(&new));
    }
}

/// The "manifest" refused past the limit is not counted in the summary either: the
/// worker had finished it without failing, and the summary said "1 objects, 5.0 MiB, 0
/// failed" beside the pull's one line, its error, where a pull whose platform has no image
/// says "0 objects".
#[test]
fn a_manifest_refused_past_the_limit_is_not_in_the_summary() {
    let fake = FakeRegistry::start();
    let reference = an_index_of_a_manifest_past_the_limit(&fake);
    let dir = tempfile::tempdir().unwrap();
    let shown = Dist::new().on_terminal(&format!(
        "{} pull {reference} --all-platforms -o {} > {}",
        Dist::bin().display(),
        dir.path().join("new").display(),
        dir.path().join("out.jsonl").display()
    ));
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(
        screen.contains("exceeds the 4194304-byte limit"),
        "{screen:?}"
    );
    assert!(
        screen.contains("0 objects, ") && screen.contains("0 failed"),
        "{screen:?}"
    );
}

/// `--platform` takes what Docker and containerd take: an architecture alone, under any
/// of its names, is Linux on it; an operating system alone is it on this machine's
/// architecture. Each was refused as no `os/arch`.
#[test]
fn short_platform_forms_pick_as_docker_picks() {
    let fake = FakeRegistry::start();
    let (_, _, images) = multi(&fake, "team/app", "v1", Flavor::Oci);
    let reference = format!("{}/team/app:v1", fake.host());
    let host = images.iter().position(|i| i.arch == host_arch()).unwrap();
    for (platform, image) in [
        ("arm64", &images[1]),
        ("aarch64", &images[1]),
        ("x86_64", &images[0]),
        ("linux/arm64/v8", &images[1]),
        ("linux", &images[host]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let out = Dist::new().run(&["pull", &reference, "-o", d, "--platform", platform], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{platform}: {err}");
        assert_image_stored(dir.path(), image);
        assert_eq!(
            entries(dir.path())[0]["digest"],
            image.digest.as_str(),
            "{platform}"
        );
    }
    // What is looked for is said by the names images use.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let err = Dist::new().fails(
        1,
        &["pull", &reference, "-o", d, "--platform", "armhf"],
        b"",
    );
    assert!(err.contains("no manifest for linux/arm/v7 in"), "{err}");
}

/// An OCI index listing each of `images` with the platform beside it.
fn index_of_platforms(images: &[Image], platforms: impl IntoIterator<Item = Value>) -> Vec<u8> {
    let manifests: Vec<Value> = images
        .iter()
        .zip(platforms)
        .map(|(i, platform)| {
            json!({"mediaType": Flavor::Oci.manifest(), "digest": i.digest,
                   "size": i.manifest.len(), "platform": platform})
        })
        .collect();
    json!({"schemaVersion": 2, "mediaType": Flavor::Oci.index(), "manifests": manifests})
        .to_string()
        .into_bytes()
}

/// Windows images differ by their build (`os.version`): `windows/amd64` takes the first
/// the index lists, and `windows(BUILD)/amd64`, as containerd writes it, the one that runs
/// on that build: its own, else the closest older one it runs (2025's was handed the 2022
/// image, listed first).
#[test]
fn a_windows_build_picks_its_image() {
    let fake = FakeRegistry::start();
    let builds = ["10.0.17763.6189", "10.0.20348.2655", "10.0.26100.2894"];
    let images: Vec<Image> = (0..3)
        .map(|i| push_image(&fake, "team/win", Flavor::Oci, "amd64", 10 + i))
        .collect();
    let index = index_of_platforms(
        &images,
        builds.map(|b| json!({"architecture": "amd64", "os": "windows", "os.version": b})),
    );
    fake.manifest("team/win", "v1", Flavor::Oci.index(), &index);
    let reference = format!("{}/team/win:v1", fake.host());
    for (platform, image) in [
        ("windows/amd64", &images[0]),
        ("windows(10.0.20348)/amd64", &images[1]),
        ("windows(10.0.22631)/amd64", &images[1]),
        ("windows(10.0.26100)/amd64", &images[2]),
        ("windows(10.0.26200)/amd64", &images[2]),
        ("windows(10.0.17763)/amd64", &images[0]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let out = Dist::new().run(&["pull", &reference, "-o", d, "--platform", platform], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{platform}: {err}");
        assert_eq!(
            entries(dir.path())[0]["digest"],
            image.digest.as_str(),
            "{platform}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let err = Dist::new().fails(
        1,
        &[
            "pull",
            &reference,
            "-o",
            d,
            "--platform",
            "windows(10.0.14393)/amd64",
        ],
        b"",
    );
    assert!(
        err.contains("windows/amd64 (10.0.14393)") && err.contains("(10.0.20348.2655)"),
        "{err}"
    );
}

/// An index without the variant asked for gives the closest older one, which that CPU
/// runs, as Docker pulls `arm/v6` on a Raspberry Pi asking for `arm/v7`; never a newer one.
#[test]
fn a_missing_variant_takes_the_closest_older_one() {
    let reg = Registry::start(Mode::Anonymous);
    let images = [
        push_image(&reg, "team/pi", Flavor::Oci, "arm", 4),
        push_image(&reg, "team/pi", Flavor::Oci, "arm", 5),
    ];
    let index = index_of_platforms(
        &images,
        ["v5", "v6"].map(|v| json!({"architecture": "arm", "os": "linux", "variant": v})),
    );
    reg.push_manifest("team/pi", "v1", Flavor::Oci.index(), &index);
    let reference = format!("{}/team/pi:v1", reg.host());
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = dist.run(
        &["pull", &reference, "-o", d, "--platform", "linux/arm/v7"],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
    assert_image_stored(dir.path(), &images[1]);
    let recorded = entries(dir.path());
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["platform"]["variant"], "v6");
    let newer = dist.run(
        &["pull", &reference, "-o", d, "--platform", "linux/arm/v4"],
        b"",
    );
    assert_eq!(newer.status.code(), Some(1));
    let err = String::from_utf8_lossy(&newer.stderr);
    assert!(err.contains("linux/arm/v5, linux/arm/v6"), "{err}");
}

/// A single-platform image (no index) for another platform is pulled, as Docker and
/// podman pull it, with a warning saying which platform it is for; a match says nothing.
#[test]
fn a_single_platform_image_for_another_platform_is_pulled_with_a_warning() {
    let reg = Registry::start(Mode::Anonymous);
    let image = push_image(&reg, "team/arm", Flavor::Oci, "arm64", 3);
    reg.push_manifest("team/arm", "v1", Flavor::Oci.manifest(), &image.manifest);
    let reference = format!("{}/team/arm:v1", reg.host());
    let dist = Dist::new();
    for (platform, warned) in [("linux/s390x", true), ("linux/arm64/v8", false)] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let out = dist.run(&["pull", &reference, "-o", d, "--platform", platform], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert_image_stored(dir.path(), &image);
        assert_eq!(entries(dir.path()).len(), 1);
        let warning = format!("v1 is an image for linux/arm64 only, not {platform}");
        assert_eq!(err.contains(&warning), warned, "{platform}: {err}");
    }
    // `-q` promises no warnings: the image is pulled all the same, without a word.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let quiet = dist.run(
        &[
            "pull",
            "-q",
            &reference,
            "-o",
            d,
            "--platform",
            "linux/s390x",
        ],
        b"",
    );
    assert_eq!(quiet.status.code(), Some(0));
    assert_image_stored(dir.path(), &image);
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "", "-q: no warning");
    // An artifact's config may say `os` and `architecture` and mean something else.
    let config = br#"{"os":"windows","architecture":"arm64"}"#;
    let config_digest = reg.push_blob("team/arm", config);
    let artifact = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.manifest(),
        "artifactType": "application/vnd.example", "layers": [],
        "config": {"mediaType": "application/vnd.example+json", "digest": config_digest,
                   "size": config.len()}})
    .to_string();
    reg.push_manifest(
        "team/arm",
        "art",
        Flavor::Oci.manifest(),
        artifact.as_bytes(),
    );
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{}/team/arm:art", reg.host());
    let out = dist.run(
        &["pull", &reference, "-o", dir.path().to_str().unwrap()],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
}

/// An index entry that names no platform is taken when none names the one asked for, and
/// its config's platform is then checked as a single image's is: another one is said.
#[test]
fn an_unlabelled_entry_for_another_platform_is_pulled_with_a_warning() {
    let reg = Registry::start(Mode::Anonymous);
    let image = push_image(&reg, "team/app", Flavor::Oci, "arm64", 3);
    let index = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.index(), "manifests": [
        {"mediaType": Flavor::Oci.manifest(), "digest": image.digest,
         "size": image.manifest.len()}]})
    .to_string();
    reg.push_manifest("team/app", "v1", Flavor::Oci.index(), index.as_bytes());
    let reference = format!("{}/team/app:v1", reg.host());
    for (platform, warned) in [("linux/s390x", true), ("linux/arm64", false)] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let out = Dist::new().run(&["pull", &reference, "-o", d, "--platform", platform], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert_image_stored(dir.path(), &image);
        let warning = format!(
            "v1 is an image for linux/arm64 only, not {platform} (its index names no \
             platform for it)"
        );
        assert_eq!(err.contains(&warning), warned, "{platform}: {err}");
    }
}

/// An index may hold artifacts beside its images (`podman manifest add --artifact`: an
/// SBOM, a README), their entries naming an `artifactType` and no platform. Such an entry
/// is no image to take for want of one for the platform asked for.
#[test]
fn an_artifact_in_an_index_is_not_taken_for_the_image() {
    let reg = Registry::start(Mode::Anonymous);
    let image = push_image(&reg, "team/app", Flavor::Oci, "arm64", 3);
    let empty = reg.push_blob("team/app", b"{}");
    let sbom = b"sbom".to_vec();
    let sbom_digest = reg.push_blob("team/app", &sbom);
    let artifact = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.manifest(),
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty,
                   "size": 2, "data": "e30="},
        "layers": [{"mediaType": "application/spdx+json", "digest": sbom_digest,
                    "size": sbom.len()}]})
    .to_string();
    let artifact_digest = reg.push_manifest(
        "team/app",
        &sha256(artifact.as_bytes()),
        Flavor::Oci.manifest(),
        artifact.as_bytes(),
    );
    let index = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.index(), "manifests": [
        {"mediaType": Flavor::Oci.manifest(), "digest": artifact_digest,
         "size": artifact.len(), "artifactType": "application/spdx+json"},
        {"mediaType": Flavor::Oci.manifest(), "digest": image.digest,
         "size": image.manifest.len(),
         "platform": {"os": "linux", "architecture": "arm64"}}]})
    .to_string();
    reg.push_manifest("team/app", "v1", Flavor::Oci.index(), index.as_bytes());
    let reference = format!("{}/team/app:v1", reg.host());
    let dist = Dist::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let none = dist.run(
        &["pull", &reference, "-o", d, "--platform", "linux/s390x"],
        b"",
    );
    let err = String::from_utf8_lossy(&none.stderr);
    assert_eq!(none.status.code(), Some(1), "{err}");
    assert!(
        err.contains("platforms: linux/arm64") && err.contains("--all-platforms pulls them"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let (dir, _) = pull_app_v1(&reg, &["--platform", "linux/arm64"]);
    assert_image_stored(dir.path(), &image);
    let (dir, _) = pull_app_v1(&reg, &["--all-platforms"]);
    assert_image_stored(dir.path(), &image);
    assert_eq!(stored(dir.path(), &sbom_digest), Some(sbom));
}

/// `dist pull <reg>/team/app:v1 -o <new dir> EXTRA…`, which must succeed: the layout and
/// the JSON lines.
fn pull_app_v1(reg: &Registry, extra: &[&str]) -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{}/team/app:v1", reg.host());
    let mut args = vec![
        "pull",
        reference.as_str(),
        "-o",
        dir.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = Dist::new().ok(&args);
    (dir, out)
}

#[test]
fn nested_index_is_descended() {
    let reg = Registry::start(Mode::Anonymous);
    let (inner, inner_bytes, images) = multi(&reg, "team/app", "inner", Flavor::Oci);
    let outer = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.index(), "manifests": [
        {"mediaType": Flavor::Oci.index(), "digest": inner, "size": inner_bytes.len()}]})
    .to_string();
    reg.push_manifest("team/app", "v1", Flavor::Oci.index(), outer.as_bytes());
    let (dir, out) = pull_app_v1(&reg, &["--platform", "linux/arm64"]);
    assert_eq!(
        statuses(&out),
        counts(&[("ok", 6)]),
        "two indexes, manifest, config, 2 layers"
    );
    assert_image_stored(dir.path(), &images[1]);
    assert_eq!(entries(dir.path())[0]["digest"], images[1].digest.as_str());
}

/// An index entry that calls an OCI manifest a Docker one and names no platform, as some
/// build tools write them: `docker-registry` answers 404 to an `Accept` of the label alone,
/// and skopeo and containerd pull such an image; so does dist.
#[test]
fn a_mislabelled_entry_without_a_platform_is_pulled() {
    let reg = Registry::start(Mode::Anonymous);
    let image = push_image(&reg, "team/app", Flavor::Oci, host_arch(), 3);
    let index = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.index(), "manifests": [
        {"mediaType": Flavor::Docker.manifest(), "digest": image.digest,
         "size": image.manifest.len()}]})
    .to_string();
    reg.push_manifest("team/app", "v1", Flavor::Oci.index(), index.as_bytes());
    let (dir, out) = pull_app_v1(&reg, &[]);
    assert_eq!(
        statuses(&out),
        counts(&[("ok", 5)]),
        "index, manifest, config, 2 layers"
    );
    assert_image_stored(dir.path(), &image);
    let e = entries(dir.path());
    assert_eq!(e[0]["digest"], image.digest.as_str());
    // index.json says what the manifest is, not what the index called it: skopeo looks
    // for OCI types there, and reads the manifest by the type it is given.
    assert_eq!(e[0]["mediaType"], Flavor::Oci.manifest());
    let target = format!("oci:{}:v1", dir.path().display());
    let inspect: Value = serde_json::from_slice(&skopeo(&["inspect", &target]).stdout).unwrap();
    assert_eq!(inspect["Digest"], image.digest.as_str());
}

/// A registry whose Content-Type disagrees with what the manifest declares (one that
/// serves the type it was pushed with) does not decide the type index.json records.
#[test]
fn the_manifests_own_type_is_recorded_whatever_the_registry_calls_it() {
    let fake = FakeRegistry::start();
    let image = push_image(&fake, "team/app", Flavor::Oci, host_arch(), 3);
    fake.manifest("team/app", "v1", Flavor::Docker.manifest(), &image.manifest);
    let dir = tempfile::tempdir().unwrap();
    let reference = format!("{}/team/app:v1", fake.host());
    Dist::new().ok(&["pull", &reference, "-o", dir.path().to_str().unwrap()]);
    assert_image_stored(dir.path(), &image);
    let e = entries(dir.path());
    assert_eq!(e[0]["mediaType"], Flavor::Oci.manifest());
    let target = format!("oci:{}:v1", dir.path().display());
    let inspect: Value = serde_json::from_slice(&skopeo(&["inspect", &target]).stdout).unwrap();
    assert_eq!(inspect["Digest"], image.digest.as_str());
}

/// An image its index lists but the registry no longer has (its garbage collection took
/// one platform's manifest) fails the pull naming that platform, not by digest alone.
#[test]
fn a_missing_platform_image_is_named_by_its_platform() {
    let fake = FakeRegistry::start();
    let (_, _, images) = multi(&fake, "team/app", "v1", Flavor::Oci);
    fake.set_fault_for_every(&images[1].digest, Fault::Status(404));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let reference = format!("{}/team/app:v1", fake.host());
    let err = Dist::new().fails(1, &["pull", &reference, "-o", d, "--all-platforms"], b"");
    assert!(
        err.contains(&images[1].digest) && err.contains("the index's entry for linux/arm64/v8"),
        "{err}"
    );
    assert!(!err.contains("entry for linux/amd64"), "{err}");
}

/// An index entry without `mediaType`, against the spec, is read as Go's clients read it:
/// the manifest its content declares, pulled like any other.
#[test]
fn an_index_entry_without_a_media_type_is_the_manifest_it_declares() {
    let fake = FakeRegistry::start();
    let (_, index, images) = multi(&fake, "team/app", "v1", Flavor::Oci);
    let mut careless: Value = serde_json::from_slice(&index).unwrap();
    for entry in careless["manifests"].as_array_mut().unwrap() {
        entry.as_object_mut().unwrap().remove("mediaType");
    }
    let careless = careless.to_string().into_bytes();
    fake.manifest("team/app", "v2", Flavor::Oci.index(), &careless);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let reference = format!("{}/team/app:v2", fake.host());
    let out = Dist::new().run(&["pull", &reference, "-o", d, "--all-platforms"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for image in &images {
        assert_image_stored(dir.path(), image);
    }
}

/// An index entry in a digest algorithm dist does not verify (`sha256+b64u:`, valid by the
/// OCI grammar) is no reason to refuse the index, as containerd and skopeo read it: the
/// other platforms pull, and the tag resolves by `GET` too. Asked for, it fails naming its
/// platform, its digest and the index's URL.
#[test]
fn an_entry_dist_cannot_verify_fails_only_the_pull_that_needs_it() {
    let fake = FakeRegistry::start();
    let (_, index, images) = multi(&fake, "team/app", "v1", Flavor::Oci);
    let b64u = "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564";
    let mut index: Value = serde_json::from_slice(&index).unwrap();
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": Flavor::Oci.manifest(), "digest": b64u, "size": 500,
        "platform": {"architecture": "s390x", "os": "linux"},
    }));
    let index = index.to_string().into_bytes();
    let index_digest = fake.manifest("team/app", "v2", Flavor::Oci.index(), &index);
    let reference = format!("{}/team/app:v2", fake.host());

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = Dist::new().run(
        &["pull", &reference, "-o", d, "--platform", "linux/arm64"],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_image_stored(dir.path(), &images[1]);

    fake.push_fault("manifests/v2", Fault::Status(403));
    let out = Dist::new().run(&["resolve", &reference], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let resolved: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(resolved["digest"], index_digest.as_str());

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let err = Dist::new().fails(
        1,
        &["pull", &reference, "-o", d, "--platform", "linux/s390x"],
        b"",
    );
    let url = format!("/v2/team/app/manifests/{index_digest}");
    for part in [
        b64u,
        url.as_str(),
        "the index's entry for linux/s390x",
        "sha512",
    ] {
        assert!(err.contains(part), "{part} in {err}");
    }
    // Without the platform's image, the index read is not stored either.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let err = Dist::new().fails(1, &["pull", &reference, "-o", d, "--all-platforms"], b"");
    for image in &images {
        assert_image_stored(dir.path(), image);
    }
    assert!(err.contains(b64u), "{err}");
}

/// An index entry dist cannot fetch is reported with the type it gives, a server's text:
/// one that is no media type (a C1 CSI, a right-to-left override in it) reached the JSON
/// line, which a terminal shows, as it came. It is unknown there, `null`.
#[test]
fn an_unusable_entry_s_type_that_is_no_media_type_is_reported_null() {
    let fake = FakeRegistry::start();
    let (_, index, images) = multi(&fake, "team/app", "v1", Flavor::Oci);
    let b64u = "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564";
    let garbled = format!("{}\u{9b}31m\u{202e}x", Flavor::Oci.manifest());
    let mut index: Value = serde_json::from_slice(&index).unwrap();
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": garbled, "digest": b64u, "size": 500,
        "platform": {"architecture": "s390x", "os": "linux"},
    }));
    let index = index.to_string().into_bytes();
    fake.manifest("team/app", "v2", Flavor::Oci.index(), &index);
    let reference = format!("{}/team/app:v2", fake.host());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = Dist::new().run(&["pull", &reference, "-o", d, "--all-platforms"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for image in &images {
        assert_image_stored(dir.path(), image);
    }
    let lines = json_lines(&out.stdout);
    let entry = lines
        .iter()
        .find(|l| l["object"].as_str().is_some_and(|o| o.contains(b64u)))
        .unwrap_or_else(|| panic!("no line for the entry: {lines:?}"));
    assert_eq!(entry["status"], "error", "{entry}");
    assert_eq!(entry["mediaType"], Value::Null, "{entry}");
}

/// An image whose nested indexes list its platform twice, once in a digest algorithm dist
/// does not verify (a producer moving to another algorithm may keep the old entries so),
/// pulls the one it can: each index was chosen from on its own, and the unusable entry
/// failed the pull that its sibling index served.
#[test]
fn an_entry_dist_cannot_verify_loses_to_a_sibling_index_s_as_good() {
    let fake = FakeRegistry::start();
    let (good, good_bytes, images) = multi(&fake, "team/app", "good", Flavor::Oci);
    let b64u = "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564";
    let spoilt = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.index(), "manifests": [
        {"mediaType": Flavor::Oci.manifest(), "digest": b64u, "size": 500,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}]})
    .to_string();
    let spoilt_digest = fake.manifest(
        "team/app",
        &sha256(spoilt.as_bytes()),
        Flavor::Oci.index(),
        spoilt.as_bytes(),
    );
    let outer = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.index(), "manifests": [
        {"mediaType": Flavor::Oci.index(), "digest": spoilt_digest, "size": spoilt.len()},
        {"mediaType": Flavor::Oci.index(), "digest": good, "size": good_bytes.len()}]})
    .to_string();
    fake.manifest("team/app", "v1", Flavor::Oci.index(), outer.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let reference = format!("{}/team/app:v1", fake.host());
    let out = Dist::new().run(
        &["pull", &reference, "-o", d, "--platform", "linux/arm64"],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains(b64u), "{err}");
    assert_image_stored(dir.path(), &images[1]);
    assert_eq!(entries(dir.path())[0]["digest"], images[1].digest.as_str());
}

/// A registry that refuses `HEAD` with 403 (as registry.centos.org did) or answers it 404
/// while `GET` serves the tag (some proxies) still resolves, as Docker and crane resolve it:
/// a `HEAD` answer has no body to say why, so a `GET` asks again. For a tag that really is
/// missing, that `GET` brings the registry's own error code into the message.
#[test]
fn resolve_asks_with_get_when_head_is_refused_or_not_found() {
    let fake = FakeRegistry::start();
    let (index_digest, _, _) = multi(&fake, "team/app", "v1", Flavor::Oci);
    let reference = format!("{}/team/app:v1", fake.host());
    for status in [403, 404] {
        fake.push_fault("manifests/v1", Fault::Status(status));
        let before = fake.request_count();
        let dir = tempfile::tempdir().unwrap();
        let out = Dist::new().run(&["resolve", &reference], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "HEAD {status}: {err}");
        let resolved: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(resolved["digest"], index_digest.as_str(), "HEAD {status}");
        let methods: Vec<String> = fake.requests()[before..]
            .iter()
            .filter(|r| r.path.ends_with("/manifests/v1"))
            .map(|r| format!("{} {}", r.method, r.status))
            .collect();
        assert_eq!(methods, [format!("HEAD {status}"), "GET 200".into()]);
        fake.push_fault("manifests/v1", Fault::Status(status));
        let d = dir.path().to_str().unwrap();
        let pulled = Dist::new().run(&["pull", &reference, "-o", d], b"");
        let err = String::from_utf8_lossy(&pulled.stderr);
        assert_eq!(pulled.status.code(), Some(0), "pull, HEAD {status}: {err}");
    }
    let missing = Dist::new().run(&["resolve", &format!("{}/team/app:nope", fake.host())], b"");
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("404 Not Found: MANIFEST_UNKNOWN: manifest unknown"),
        "{err}"
    );
}

/// A proxy that answers `HEAD` with `Content-Length: 0` (godoxy's and nora's did, and
/// Docker then failed with "Target.Size must be greater than zero") does not make a
/// descriptor of size 0: no manifest is empty, so the length is unknown and a `GET` tells.
#[test]
fn a_head_answer_of_length_zero_is_asked_again_with_get() {
    let fake = FakeRegistry::start();
    let (index_digest, index, _) = multi(&fake, "team/app", "v1", Flavor::Oci);
    let reference = format!("{}/team/app:v1", fake.host());
    let zero = || Fault::Header("content-length", "0".into());
    fake.push_fault("manifests/v1", zero());
    let before = fake.request_count();
    let out = Dist::new().ok(&["resolve", &reference]);
    let want =
        json!({"mediaType": Flavor::Oci.index(), "digest": index_digest, "size": index.len()});
    assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), want);
    let methods: Vec<String> = fake.requests()[before..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.status))
        .collect();
    assert_eq!(methods, ["HEAD 200", "GET 200"]);
    fake.push_fault("manifests/v1", zero());
    let dir = tempfile::tempdir().unwrap();
    let pulled = Dist::new().run(
        &["pull", &reference, "-o", dir.path().to_str().unwrap()],
        b"",
    );
    let err = String::from_utf8_lossy(&pulled.stderr);
    assert_eq!(pulled.status.code(), Some(0), "{err}");
}

#[test]
fn resolve_uses_head_and_falls_back_to_get() {
    let fake = FakeRegistry::start();
    let (index_digest, _, images) = multi(&fake, "team/app", "v1", Flavor::Oci);
    let reference = format!("{}/team/app:v1", fake.host());
    let dist = Dist::new();
    let tag_requests = |method: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.path.ends_with("/manifests/v1") && r.method.as_str() == method)
            .count()
    };
    let first: Value = serde_json::from_slice(&dist.ok(&["resolve", &reference])).unwrap();
    assert_eq!(first["digest"], index_digest.as_str());
    assert_eq!((tag_requests("HEAD"), tag_requests("GET")), (1, 0));
    fake.push_fault("manifests/v1", Fault::Status(405));
    let again: Value = serde_json::from_slice(&dist.ok(&["resolve", &reference])).unwrap();
    assert_eq!(again, first);
    assert_eq!((tag_requests("HEAD"), tag_requests("GET")), (2, 1));

    // A foreign layer (with urls) is reported as skipped; a re-pull sends only the HEAD.
    let far = json!({"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "digest": sha256(b"far away"), "size": 8, "urls": ["https://example.com/far"]});
    let mut m: Value = serde_json::from_slice(&images[0].manifest).unwrap();
    m["layers"].as_array_mut().unwrap().push(far);
    let m = m.to_string();
    fake.manifest("team/app", "foreign", Flavor::Oci.manifest(), m.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let foreign = format!("{}/team/app:foreign", fake.host());
    let run = dist.run(&["pull", &foreign, "-o", d], b"");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(statuses(&run.stdout), counts(&[("ok", 4), ("skipped", 1)]));
    assert!(String::from_utf8_lossy(&run.stderr).contains("non-distributable"));
    let before = fake.request_count();
    let again = dist.ok(&["pull", &foreign, "-o", d]);
    assert_eq!(statuses(&again), counts(&[("exists", 4), ("skipped", 1)]));
    let fetches: Vec<String> = fake.requests()[before..]
        .iter()
        .filter(|r| {
            r.method.as_str() == "GET"
                && (r.path.contains("/manifests/") || r.path.contains("/blobs/"))
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(fetches.is_empty(), "a re-pull fetched {fetches:?}");
}

/// On a terminal, `pull` shows the worker's progress line and summary on stderr; the JSON
/// lines stay on stdout. Not on a terminal, stderr stays empty.
#[test]
fn pull_shows_progress_on_a_terminal_only() {
    let reg = FakeRegistry::start();
    multi(&reg, "team/app", "v1", Flavor::Oci);
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("layout");
    let lines = dir.path().join("out.jsonl");
    let reference = format!("{}/team/app:v1", reg.host());
    let dist = Dist::new();
    let shown = dist.on_terminal(&format!(
        "{} pull {reference} -o {} > {}",
        Dist::bin().display(),
        out_dir.display(),
        lines.display()
    ));
    assert!(shown.status.success(), "{shown:?}");
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(
        screen.contains("5 objects, ") && screen.contains("0 failed"),
        "index, manifest, config and 2 layers in the summary: {screen:?}"
    );
    let reported = std::fs::read(&lines).unwrap();
    assert_eq!(statuses(&reported), counts(&[("ok", 5)]));

    let again = dist.run(&["pull", &reference, "-o", out_dir.to_str().unwrap()], b"");
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stderr), "");
    assert_eq!(statuses(&again.stdout), counts(&[("exists", 5)]));
}

/// A container restarted in its pod (a Job with `restartPolicy: OnFailure`) runs dist again
/// under the same host name and often the same PID as the run that was killed. That run's
/// lock on `index.json` and its download must still read as a dead run's: here their owner
/// has the PID of a live process (this test) and a start time it never had.
#[test]
fn a_killed_runs_lock_and_download_are_taken_over_though_its_pid_lives_again() {
    let reg = FakeRegistry::start();
    let (_, _, images) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let image = images.iter().find(|i| i.arch == host_arch()).unwrap();
    let (layer, data) = &image.blobs[2];
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("index.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
            _ => '_',
        })
        .collect();
    let owner = format!("{}.1@{host}", std::process::id());
    std::fs::write(dir.path().join(".dist-index.lock"), &owner).unwrap();
    let temp = blobs.join(format!(".dist-tmp-{owner}~{}~Ab12Cd", &layer[7..]));
    std::fs::write(&temp, &data[..3000]).unwrap();

    let reference = format!("{}/team/app:v1", reg.host());
    let before = reg.request_count();
    let out = Dist::new().run(
        &["pull", &reference, "-o", dir.path().to_str().unwrap()],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asked: Vec<Option<String>> = reg.requests()[before..]
        .iter()
        .filter(|r| r.path.ends_with(layer.as_str()))
        .map(|r| r.range.clone())
        .collect();
    assert_eq!(asked, [Some("bytes=3000-".to_string())], "carried on");
    assert_eq!(stored(dir.path(), layer).as_deref(), Some(&data[..]));
    assert_eq!(entries(dir.path()).len(), 1);
    let leftovers: Vec<String> = [dir.path().to_path_buf(), blobs]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".dist"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A pull stopped by SIGTERM or by `--timeout` leaves what it stored verified, no temporary
/// file, and `index.json` as it was: the image is not listed until all of it is in place.
#[test]
fn an_interrupted_pull_leaves_index_json_alone_and_no_temporary_file() {
    let reg = FakeRegistry::start();
    let (_, _, images) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let image = images.iter().find(|i| i.arch == host_arch()).unwrap();
    let (config, _) = &image.blobs[0];
    let (layer, _) = &image.blobs[2];
    // 20,100 bytes at 500 bytes/s: the layer takes forty seconds, longer than the wait for
    // the config below may last, so the signal always finds it under way.
    let slow = Fault::Paced {
        bytes_per_sec: 500,
        first_byte: std::time::Duration::ZERO,
    };
    reg.set_fault_for_every(layer, slow);
    let reference = format!("{}/team/app:v1", reg.host());
    let check = |dir: &std::path::Path| {
        assert!(entries(dir).is_empty(), "index.json lists nothing yet");
        for entry in std::fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .flatten()
        {
            let name = entry.file_name().into_string().unwrap();
            assert!(!name.starts_with(".dist"), "left behind: {name}");
            let content = std::fs::read(entry.path()).unwrap();
            assert_eq!(sha256(&content), format!("sha256:{name}"));
        }
    };

    let dir = tempfile::tempdir().unwrap();
    let mut child = Dist::new().start(&["pull", &reference, "-o", dir.path().to_str().unwrap()]);
    drop(child.stdin.take());
    support::wait::until("the config stored", || stored(dir.path(), config).is_some());
    // SAFETY: kill(2) sends a signal to a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    check(dir.path());

    let dir = tempfile::tempdir().unwrap();
    let err = Dist::new().fails(
        124,
        &[
            "--timeout",
            "1500ms",
            "pull",
            &reference,
            "-o",
            dir.path().to_str().unwrap(),
        ],
        b"",
    );
    assert!(err.contains("gave up after the --timeout of 1.5s"), "{err}");
    check(dir.path());
}

/// A pull stopped while another run holds `index.json`'s lock has fetched and stored every
/// object: the message says so, and that the image is not named yet. It said "the others
/// were not fetched" of a pull that had left none.
#[test]
fn a_pull_stopped_at_the_index_lock_says_every_object_was_stored() {
    use std::os::unix::io::AsRawFd;

    let reg = FakeRegistry::start();
    multi(&reg, "team/app", "v1", Flavor::Oci);
    let reference = format!("{}/team/app:v1", reg.host());
    let layout = |dir: &std::path::Path| {
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::fs::write(
            dir.join("index.json"),
            r#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .unwrap();
        // Another run's lock, held by this test until the pull has ended.
        let lock = std::fs::File::create(dir.join(".dist-index.lock")).unwrap();
        // SAFETY: flock(2) on a descriptor this test owns and keeps open.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        lock
    };
    let said = |err: &str| {
        assert!(!err.contains("were not fetched"), "{err}");
        assert!(
            err.contains("every object of the image was fetched and stored"),
            "{err}"
        );
        assert!(err.contains("not named in"), "{err}");
        assert!(!err.contains("downloads cut short"), "{err}");
    };

    // Interrupted once the five objects are reported.
    let dir = tempfile::tempdir().unwrap();
    let lock = layout(dir.path());
    let mut child = Dist::new().start(&["pull", &reference, "-o", dir.path().to_str().unwrap()]);
    drop(child.stdin.take());
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for _ in 0..5 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(line.contains(r#""status":"ok""#), "{line}");
    }
    // SAFETY: kill(2) sends a signal to a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    said(&err);
    drop(lock);
    assert!(entries(dir.path()).is_empty());

    // --timeout: the five objects take well under a second.
    let dir = tempfile::tempdir().unwrap();
    let lock = layout(dir.path());
    let out = Dist::new().run(
        &[
            "--timeout",
            "4s",
            "pull",
            &reference,
            "-o",
            dir.path().to_str().unwrap(),
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert_eq!(statuses(&out.stdout), counts(&[("ok", 5)]), "{err}");
    assert!(err.contains("gave up after the --timeout of 4s"), "{err}");
    said(&err);
    drop(lock);
}

/// A pull stopped once it is seen waiting for another run's lock of `index.json` (`-v`
/// logs the wait) names that lock as why the image is not named. The same words were
/// said of every stop before the name, a slow sync of the blobs included (see
/// tests/sinks.rs for the others); here they must be said where they are true.
#[test]
fn a_pull_stopped_waiting_for_the_index_lock_blames_the_lock() {
    use std::io::BufRead;
    use std::os::unix::io::AsRawFd;

    let reg = FakeRegistry::start();
    multi(&reg, "team/app", "v1", Flavor::Oci);
    let reference = format!("{}/team/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let empty = r#"{"schemaVersion":2,"manifests":[]}"#;
    std::fs::write(dir.path().join("index.json"), empty).unwrap();
    // Another run's lock, held by this test until the pull has ended.
    let lock = std::fs::File::create(dir.path().join(".dist-index.lock")).unwrap();
    // SAFETY: flock(2) on a descriptor this test owns and keeps open.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let args = ["-v", "pull", &reference, "-o", dir.path().to_str().unwrap()];
    let mut child = Dist::new().start(&args);
    drop(child.stdin.take());
    let _out = child.stdout.take().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, said) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stderr.lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let waiting = "another run holds the lock of index.json; waiting for it";
    let mut before = Vec::new();
    loop {
        let line = said
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no wait for the lock logged: {before:?}"));
        if line.contains(waiting) {
            break;
        }
        before.push(line);
    }
    // SAFETY: kill(2) sends a signal to a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = support::wait::exit_within(
        &mut child,
        std::time::Duration::from_secs(30),
        "a pull stopped at the index lock",
    );
    reader.join().unwrap();
    let err = said.try_iter().collect::<Vec<_>>().join("\n");
    assert_eq!(status.code(), Some(130), "{err}");
    let index = dir.path().join("index.json");
    let blamed = format!(
        "every object of the image was fetched and stored, but the image is not named in {} \
         (another run holds its lock, which a pull waits for); the same pull again names it \
         without fetching anything",
        index.display()
    );
    assert!(err.contains(&blamed), "{err}");
    drop(lock);
    assert!(entries(dir.path()).is_empty());
}

/// A pull whose reader of the JSON lines went away (`| head -1`) stops as soon as the pipe
/// says so, as the worker does, not when its next line finds the pipe gone: here that was
/// after a layer that takes ten minutes. What it stored is verified; no temporary file stays.
#[test]
fn a_pull_stops_when_its_reader_goes_away() {
    let reg = FakeRegistry::start();
    let (_, _, images) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let image = images.iter().find(|i| i.arch == host_arch()).unwrap();
    for (blob, _) in &image.blobs {
        let stall = Fault::StallAfter(100, std::time::Duration::from_secs(600));
        reg.set_fault_for_every(blob, stall);
    }
    let reference = format!("{}/team/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let mut child = Dist::new().start(&["pull", &reference, "-o", dir.path().to_str().unwrap()]);
    drop(child.stdin.take());
    // The index's line and its image manifest's; every blob then holds the next line back.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for _ in 0..2 {
        std::io::BufRead::read_line(&mut stdout, &mut String::new()).unwrap();
    }
    drop(stdout);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("the pull went on 30 s after its reader went away");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.is_empty(),
        "a reader that left is no failure to report: {err}"
    );
    assert!(entries(dir.path()).is_empty());
    for entry in std::fs::read_dir(dir.path().join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().into_string().unwrap();
        assert!(!name.starts_with(".dist"), "left behind: {name}");
    }
}

/// A pull into a directory of its own making that is stopped before it stored anything
/// (SIGINT, SIGTERM, `--timeout`, here while the index downloads) removes the directory
/// again, as a pull that fails does: it was left as an empty layout, because the stopped
/// download's temporary file was deleted only after the check for an unused layout. (The
/// indexes of every pull are held in memory now, so no download of them is in the layout.)
#[test]
fn a_pull_stopped_before_storing_anything_removes_its_new_directory() {
    let reg = FakeRegistry::start();
    let (index, _, _) = multi(&reg, "team/app", "v1", Flavor::Oci);
    let stall = Fault::StallAfter(5, std::time::Duration::from_secs(600));
    reg.set_fault_for_every(&index, stall);
    let reference = format!("{}/team/app:v1", reg.host());
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("new");
        let o = dir.to_str().unwrap();
        let asked = reg.requests_for(&index);
        let mut child = Dist::new().start(&["pull", &reference, "-o", o, "--all-platforms"]);
        drop(child.stdin.take());
        let limit = std::time::Duration::from_secs(20);
        // Stopped while the index downloads: a fixed pause after the request cost
        // 300 ms, and on a loaded machine could end before the request was made.
        support::wait::within(limit, "the index's download", || {
            reg.requests_for(&index) > asked
        });
        // SAFETY: kill(2) sends a signal to a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(128 + signal), "{err}");
        assert!(!dir.exists(), "{signal}: left {:?}", listing(&dir));
    }
}

/// Every path under `dir`, relative to it.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(at) = todo.pop() {
        for entry in std::fs::read_dir(&at).into_iter().flatten().flatten() {
            let path = entry.path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                todo.push(path);
            }
        }
    }
    found
}

/// BuildKit's registry cache (`--cache-to type=registry`, `image-manifest=false`, its
/// default) is an index whose entries are the cached layers and a cache config, not
/// manifests. Mirrored with `--all-platforms`, each entry is stored as the blob it is and
/// the tag recorded; asked for one platform, the error says there is no image in it.
#[test]
fn an_index_listing_blobs_is_pulled_whole_with_all_platforms() {
    let reg = Registry::start(Mode::Anonymous);
    let layer = bytes(41, 30_000);
    let config = br#"{"layers":[{"blob":"sha256:00"}],"records":[]}"#.to_vec();
    let blob = |t: &str, data: &[u8]| json!({"mediaType": t, "digest": reg.push_blob("team/app", data), "size": data.len()});
    let index = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.index(), "manifests": [
        blob("application/vnd.oci.image.layer.v1.tar+gzip", &layer),
        blob("application/vnd.buildkit.cacheconfig.v0", &config)]})
    .to_string();
    let index_digest = reg.push_manifest(
        "team/app",
        "buildcache",
        Flavor::Oci.index(),
        index.as_bytes(),
    );
    let reference = format!("{}/team/app:buildcache", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let dist = Dist::new();
    let run = dist.run(&["pull", &reference, "-o", d, "--all-platforms"], b"");
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(statuses(&run.stdout), counts(&[("ok", 3)]));
    assert_eq!(stored(dir.path(), &index_digest), Some(index.into_bytes()));
    assert_eq!(stored(dir.path(), &sha256(&layer)), Some(layer));
    assert_eq!(stored(dir.path(), &sha256(&config)), Some(config));
    let e = entries(dir.path());
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["digest"], index_digest.as_str());
    assert_eq!(
        e[0]["annotations"]["org.opencontainers.image.ref.name"],
        "buildcache"
    );

    let one = tempfile::tempdir().unwrap();
    let run = dist.run(
        &["pull", &reference, "-o", one.path().to_str().unwrap()],
        b"",
    );
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("no manifest for") && err.contains("--all-platforms"),
        "{err}"
    );
}

/// Manifests whose optional fields are JSON `null` (`"annotations": null`, `"urls": null`,
/// a platform's `"os.features": null`), as tools that serialise every field of a record
/// write them (GCR refused such manifest lists from gardener's cc-utils; `docker-registry`
/// stores them). Go's readers (the registry itself, Docker, containerd, skopeo) read
/// `null` as absent; dist refused the whole image as "not a manifest".
#[test]
fn null_optional_fields_are_read_as_absent() {
    let reg = Registry::start(Mode::Anonymous);
    let layer = bytes(43, 9_000);
    let config = json!({"architecture": host_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]}})
    .to_string()
    .into_bytes();
    let desc = |t: &str, data: &[u8]| {
        json!({"mediaType": t, "digest": reg.push_blob("team/app", data), "size": data.len(),
               "annotations": null, "urls": null})
    };
    let manifest = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.manifest(),
        "config": desc(Flavor::Oci.config(), &config),
        "layers": [desc(Flavor::Oci.layer(), &layer)], "annotations": null})
    .to_string()
    .into_bytes();
    let manifest_digest = reg.push_manifest(
        "team/app",
        &sha256(&manifest),
        Flavor::Oci.manifest(),
        &manifest,
    );
    let index = json!({"schemaVersion": 2, "mediaType": Flavor::Oci.index(), "manifests": [
        {"mediaType": Flavor::Oci.manifest(), "digest": manifest_digest,
         "size": manifest.len(), "annotations": null, "urls": null,
         "platform": {"os": "linux", "architecture": host_arch(), "os.features": null}}]})
    .to_string()
    .into_bytes();
    let index_digest = reg.push_manifest("team/app", "v1", Flavor::Oci.index(), &index);
    for extra in [&[][..], &["--all-platforms"][..]] {
        let (dir, out) = pull_app_v1(&reg, extra);
        assert_eq!(statuses(&out), counts(&[("ok", 4)]), "{extra:?}");
        assert_eq!(stored(dir.path(), &index_digest).as_ref(), Some(&index));
        assert_eq!(
            stored(dir.path(), &manifest_digest).as_ref(),
            Some(&manifest)
        );
        assert_eq!(stored(dir.path(), &sha256(&config)), Some(config.clone()));
        assert_eq!(stored(dir.path(), &sha256(&layer)), Some(layer.clone()));
        let target = format!("oci:{}:v1", dir.path().display());
        let inspect: Value = serde_json::from_slice(&skopeo(&["inspect", &target]).stdout).unwrap();
        assert_eq!(inspect["Architecture"], host_arch(), "{extra:?}");
    }
}

/// A mistyped repository fails as a missing tag would (`docker-registry` answers its
/// manifests `MANIFEST_UNKNOWN`, its blobs `BLOB_UNKNOWN`), so the check's tag listing,
/// which says `NAME_UNKNOWN`, is told beside it: the name may be what is wrong. A tag
/// missing from a repository that is there gets no such note, and a repository holding
/// blobs but no tag yet (which lists as `NAME_UNKNOWN` too) still serves them.
#[test]
fn a_mistyped_repository_is_told_as_unknown_to_the_registry() {
    let reg = Registry::start(Mode::Anonymous);
    multi(&reg, "team/app", "v1", Flavor::Oci);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("layout");
    let o = out.to_str().unwrap();
    let dist = Dist::new();
    let typo = format!("{}/team/ap:v1", reg.host());
    let err = dist.fails(1, &["pull", &typo, "-o", o], b"");
    assert!(
        err.contains("MANIFEST_UNKNOWN")
            && err.contains(
                "the registry knows no repository team/ap (its tag listing answered NAME_UNKNOWN"
            ),
        "{err}"
    );
    let repo = format!("{}/team/ap", reg.host());
    let err = dist.fails(1, &["fetch", &repo, "-", "-o", o], b"v1\n");
    assert!(err.contains("knows no repository team/ap"), "{err}");
    let missing = format!("{}/team/app:v2", reg.host());
    let err = dist.fails(1, &["pull", &missing, "-o", o], b"");
    assert!(
        err.contains("MANIFEST_UNKNOWN") && !err.contains("knows no repository"),
        "{err}"
    );
    let blob = reg.push_blob("team/untagged", b"a blob and no tag");
    let untagged = format!("{}/team/untagged", reg.host());
    let lines = json_lines(&dist.ok_fed(
        &["fetch", &untagged, "-", "-o", o],
        format!("{blob}\n").as_bytes(),
    ));
    assert_eq!(lines[0]["status"], "ok", "{lines:?}");
    let err = dist.fails(1, &["fetch", &untagged, "-", "-o", o], b"v1\n");
    assert!(err.contains("knows no repository team/untagged"), "{err}");
    // A blob served shows the repository is there (pushed since the check, or holding no
    // tag): a later 404 is no longer told the name may be wrong. One job, in line order,
    // into a new layout, where the blob is not stored already.
    let fresh = dir.path().join("fresh");
    let err = dist.fails(
        1,
        &[
            "fetch",
            &untagged,
            "-",
            "-o",
            fresh.to_str().unwrap(),
            "-j",
            "1",
        ],
        format!("{blob}\nv1\n").as_bytes(),
    );
    assert!(
        err.contains("MANIFEST_UNKNOWN") && !err.contains("knows no repository"),
        "{err}"
    );
}
