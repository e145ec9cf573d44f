//! OCI image layouts as remotes (`oci:<path>`): `dist fetch`, `dist resolve` and `dist pull`
//! reading layouts written by hand, with the same verification as a registry.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::cli::{bytes, json_lines, parse_frames, sha256, Dist};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A layout written by hand.
struct Layout {
    root: PathBuf,
    entries: Vec<Value>,
}

impl Layout {
    fn new(root: PathBuf) -> Layout {
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let l = Layout {
            root,
            entries: Vec::new(),
        };
        l.write_index();
        l
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..])
    }

    fn blob(&self, media_type: &str, data: &[u8]) -> Value {
        let d = sha256(data);
        std::fs::write(self.path(&d), data).unwrap();
        json!({"mediaType": media_type, "digest": d, "size": data.len()})
    }

    /// A manifest of `media_type` with a config and two layers; returns its descriptor.
    fn image(&self, media_type: &str, seed: u64) -> Value {
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            json!({"architecture": "amd64", "os": "linux", "seed": seed})
                .to_string()
                .as_bytes(),
        );
        let layers: Vec<Value> = (0..2)
            .map(|i| {
                self.blob(
                    "application/vnd.oci.image.layer.v1.tar",
                    &bytes(seed * 10 + i, 4000),
                )
            })
            .collect();
        let m = json!({"schemaVersion": 2, "mediaType": media_type, "config": config, "layers": layers});
        self.blob(media_type, m.to_string().as_bytes())
    }

    fn tag(&mut self, desc: &Value, name: &str) {
        let mut d = desc.clone();
        d["annotations"] = json!({ REF_NAME: name });
        self.entries.push(d);
        self.write_index();
    }

    fn write_index(&self) {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries});
        std::fs::write(self.root.join("index.json"), index.to_string()).unwrap();
    }

    fn loc(&self) -> String {
        format!("oci:{}", self.root.display())
    }
}

fn entries(dir: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    v["manifests"].as_array().unwrap().clone()
}

fn digest(v: &Value) -> &str {
    v["digest"].as_str().unwrap()
}

/// A layout in `dir/src` holding one image of `media_type` made from `seed`, tagged `v1`,
/// with that image's descriptor.
fn tagged_v1(dir: &Path, media_type: &str, seed: u64) -> (Layout, Value) {
    let mut src = Layout::new(dir.join("src"));
    let m = src.image(media_type, seed);
    src.tag(&m, "v1");
    (src, m)
}

#[test]
fn fetch_by_digest_tag_and_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (src, m) = tagged_v1(dir.path(), OCI_MANIFEST, 1);
    let dist = Dist::new();
    let manifest = std::fs::read(src.path(digest(&m))).unwrap();
    assert_eq!(dist.ok(&["fetch", &src.loc(), "v1"]), manifest);
    assert_eq!(dist.ok(&["fetch", &src.loc(), digest(&m)]), manifest);

    let parsed: Value = serde_json::from_slice(&manifest).unwrap();
    let blobs: Vec<&Value> = std::iter::once(&parsed["config"])
        .chain(parsed["layers"].as_array().unwrap())
        .collect();
    let input: String = blobs.iter().map(|b| format!("{b}\n")).collect();
    let framed = dist.run(&["fetch", &src.loc(), "-"], input.as_bytes());
    assert!(framed.status.success());
    let frames = parse_frames(&framed.stdout);
    let mut framed_objects: Vec<&str> = frames.iter().map(|f| f.object.as_str()).collect();
    let mut wanted: Vec<&str> = blobs.iter().map(|b| digest(b)).collect();
    framed_objects.sort_unstable();
    wanted.sort_unstable();
    assert_eq!(framed_objects, wanted, "one frame per line");
    for f in frames {
        let (d, media_type, body) = f.result.unwrap();
        assert_eq!(sha256(&body), d);
        assert!(
            media_type.starts_with("application/vnd.oci.image."),
            "{media_type}"
        );
    }
    let other = dir.path().join("other");
    let run = dist.run(
        &["fetch", &src.loc(), "-", "-o", other.to_str().unwrap()],
        input.as_bytes(),
    );
    assert!(run.status.success());
    assert!(json_lines(&run.stdout).iter().all(|l| l["status"] == "ok"));
    for b in &blobs {
        let d = digest(b);
        assert_eq!(
            std::fs::read(other.join("blobs/sha256").join(&d[7..])).unwrap(),
            std::fs::read(src.path(d)).unwrap()
        );
    }
}

/// A tag's type is what `index.json` records for it, whatever type a hint asked for, as a
/// registry's `Content-Type` is: a manifest asked for as an index was reported as one.
#[test]
fn a_tag_is_reported_as_its_entry_s_type_not_the_hint_s() {
    let dir = tempfile::tempdir().unwrap();
    let (mut src, _) = tagged_v1(dir.path(), OCI_MANIFEST, 1);
    let d = src.image(DOCKER_MANIFEST, 2);
    let mut unlabelled = d.clone();
    unlabelled.as_object_mut().unwrap().remove("mediaType");
    src.tag(&unlabelled, "v2");
    let input = format!("v1 mediatype:{OCI_INDEX}\nv2 mediatype:{DOCKER_MANIFEST}\n");
    let out = Dist::new().ok_fed(&["fetch", &src.loc(), "-", "--ordered"], input.as_bytes());
    let frames = parse_frames(&out);
    let types: Vec<&str> = frames
        .iter()
        .map(|f| f.result.as_ref().unwrap().1.as_str())
        .collect();
    // An entry without a type (against the spec) leaves the hint to say it.
    assert_eq!(types, [OCI_MANIFEST, DOCKER_MANIFEST]);
}

/// A digest asked for without a `mediatype:` hint is reported as the type `index.json`
/// records for it, as a registry's manifest is by its `Content-Type`: it was reported as
/// `-`, its type unknown, though the layout said it.
#[test]
fn a_listed_digest_is_reported_as_its_entry_s_type() {
    let dir = tempfile::tempdir().unwrap();
    let (src, m) = tagged_v1(dir.path(), DOCKER_MANIFEST, 3);
    let input = format!("{}\n", digest(&m));
    let out = Dist::new().ok_fed(&["fetch", &src.loc(), "-", "--ordered"], input.as_bytes());
    let frames = parse_frames(&out);
    let types: Vec<&str> = frames
        .iter()
        .map(|f| f.result.as_ref().unwrap().1.as_str())
        .collect();
    assert_eq!(types, [DOCKER_MANIFEST]);
}

/// `dist resolve` has no hint: an entry without a type (against the spec) is described by
/// the type its content declares, as `dist pull` records it, not by an empty one that a
/// script would pass on as `mediatype:`.
#[test]
fn resolve_gives_an_untyped_entry_its_content_s_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Layout::new(dir.path().join("src"));
    let d = src.image(DOCKER_MANIFEST, 2);
    let mut unlabelled = d.clone();
    unlabelled.as_object_mut().unwrap().remove("mediaType");
    src.tag(&unlabelled, "v2");
    let dist = Dist::new();
    for reference in [
        format!("{}:v2", src.loc()),
        format!("{}@{}", src.loc(), digest(&d)),
    ] {
        let out = dist.ok(&["resolve", &reference]);
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            d,
            "{reference}"
        );
    }
}

/// An entry's type is text someone else's layout may hold anything in: one that is no
/// media type (a C1 CSI, a right-to-left override in it) was reported as it came, in the
/// JSON lines and `dist resolve`'s descriptor, which a terminal shows. It counts as none,
/// and the content's own type says, as for an entry without a type.
#[test]
fn an_entry_s_type_that_is_no_media_type_counts_as_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Layout::new(dir.path().join("src"));
    let d = src.image(DOCKER_MANIFEST, 4);
    let mut garbled = d.clone();
    garbled["mediaType"] = format!("{DOCKER_MANIFEST}\u{9b}31m\u{202e}x").into();
    src.tag(&garbled, "v4");
    let out = dir.path().join("out");
    let input = format!("v4\n{}\n", digest(&d));
    let run = Dist::new().ok_fed(
        &[
            "fetch",
            &src.loc(),
            "-",
            "--ordered",
            "-o",
            out.to_str().unwrap(),
        ],
        input.as_bytes(),
    );
    let types: Vec<Value> = json_lines(&run)
        .iter()
        .map(|l| l["mediaType"].clone())
        .collect();
    assert_eq!(types, [DOCKER_MANIFEST, DOCKER_MANIFEST]);
    let resolved = Dist::new().ok(&["resolve", &format!("{}:v4", src.loc())]);
    assert_eq!(serde_json::from_slice::<Value>(&resolved).unwrap(), d);
}

#[test]
fn missing_corrupt_and_non_layouts_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (src, m) = tagged_v1(dir.path(), OCI_MANIFEST, 2);
    let dist = Dist::new();
    let absent = dist.run(&["fetch", &src.loc(), &sha256(b"absent")], b"");
    assert_eq!(absent.status.code(), Some(1));
    let nope = dist.run(&["fetch", &src.loc(), "nope"], b"");
    assert!(String::from_utf8_lossy(&nope.stderr).contains("no entry named \"nope\""));

    let manifest: Value =
        serde_json::from_slice(&std::fs::read(src.path(digest(&m))).unwrap()).unwrap();
    let layer = digest(&manifest["layers"][1]).to_string();
    let mut data = std::fs::read(src.path(&layer)).unwrap();
    data[100] ^= 1;
    std::fs::write(src.path(&layer), &data).unwrap();
    let corrupt = dist.run(&["fetch", &src.loc(), &layer], b"");
    assert_eq!(corrupt.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&corrupt.stderr).contains("digest mismatch"));

    let out = dir.path().join("out");
    let pull = dist.run(
        &[
            "pull",
            &format!("{}:v1", src.loc()),
            "-o",
            out.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(pull.status.code(), Some(1));
    let report = json_lines(&pull.stdout);
    let failed: Vec<&Value> = report.iter().filter(|l| l["status"] == "error").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["object"], layer.as_str());
    assert!(
        !out.join("blobs/sha256").join(&layer[7..]).exists(),
        "nothing unverified stored"
    );
    assert!(
        entries(&out).is_empty(),
        "index.json names complete images only"
    );

    let not_layout = dir.path().join("empty");
    std::fs::create_dir_all(&not_layout).unwrap();
    let loc = format!("oci:{}", not_layout.display());
    let missing = format!("oci:{}", dir.path().join("missing").display());
    // The worker, a one-shot fetch and resolve all refuse it as unusable (exit status 2),
    // naming the directory, rather than failing an object on its missing index.json.
    let runs = [
        vec!["fetch", &loc, "-"],
        vec!["fetch", &loc, "v1"],
        vec!["fetch", &missing, "v1"],
    ];
    let resolve = format!("{missing}:v1");
    for args in runs.iter().chain([&vec!["resolve", &resolve]]) {
        let run = dist.run(args, b"");
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("is not an OCI image layout"),
            "{args:?}: {err}"
        );
    }
}

/// `oci://ghcr.io/team/chart:1.0`, Helm's spelling of a registry's chart, given to `dist
/// pull` or `dist resolve` (which take a reference): the spelling the note names for the
/// registry keeps the tag or digest written. It named `ghcr.io/team/chart` alone, which
/// these read as its `latest`, another image than the one asked for.
#[test]
fn a_helm_style_reference_is_told_the_reference_meant() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let digest = format!("sha256:{}", "ab".repeat(32));
    let dist = Dist::new();
    for (reference, meant) in [
        (
            "oci://ghcr.io/team/chart:1.0",
            "ghcr.io/team/chart:1.0".to_string(),
        ),
        (
            &format!("oci://ghcr.io/team/chart@{digest}"),
            format!("ghcr.io/team/chart@{digest}"),
        ),
    ] {
        let pull = ["pull", reference, "-o", out.to_str().unwrap()];
        for args in [&["resolve", reference][..], &pull[..]] {
            let run = dist.run(args, b"");
            let err = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.trim_end()
                    .ends_with(&format!("write it without oci:// ({meant})")),
                "{args:?}: {err}"
            );
        }
    }
}

/// `oci:DIR:`, `oci:DIR@` or `oci:DIR:@digest`, the tag or digest left out (a `${TAG}`
/// unset): told what goes after the separator, as `host/name:` is. They were refused as
/// `invalid tag ""` and `invalid digest "": missing ':'`, which named neither the
/// separator nor the fix.
#[test]
fn a_layout_reference_ending_in_its_separator_says_what_goes_there() {
    let dir = tempfile::tempdir().unwrap();
    let (src, m) = tagged_v1(dir.path(), OCI_MANIFEST, 21);
    let out = dir.path().join("out");
    let loc = src.loc();
    let dist = Dist::new();
    for (sep, what, example) in [(':', "tag", "v1"), ('@', "digest", "sha256:…")] {
        let reference = format!("{loc}{sep}");
        let pull = ["pull", &reference, "-o", out.to_str().unwrap()];
        for args in [&["resolve", &reference][..], &pull[..]] {
            let run = dist.run(args, b"");
            let err = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains(&format!(
                    "nothing after '{sep}'; write the {what} there ({loc}{sep}{example}), or \
                     leave the '{sep}' out"
                )),
                "{args:?}: {err}"
            );
        }
    }
    // `oci:DIR:${TAG}@${DIGEST}` with the tag unset: the digest alone is what was meant.
    let run = dist.run(&["resolve", &format!("{loc}:@{}", digest(&m))], b"");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "nothing between ':' and '@'; write the tag there, or leave the ':' out ({loc}@{})",
            digest(&m)
        )),
        "{err}"
    );
    assert!(!out.exists());
}

/// A layout whose own directory name ends in `:` or `@` (`oci:./a:b:`): the advice for a
/// tag or digest left out sent it to another directory (`oci:./a:b`, the tag `b` of `./a`),
/// or back to the same refusal; it is told the spelling that reads it, a trailing slash.
#[test]
fn a_layout_whose_name_ends_in_its_separator_is_told_the_trailing_slash() {
    let dir = tempfile::tempdir().unwrap();
    let dist = Dist::new();
    for name in ["a:b:", "dir::", "x@y@"] {
        let mut src = Layout::new(dir.path().join(name));
        let m = src.image(OCI_MANIFEST, 22);
        src.tag(&m, "latest");
        let loc = src.loc();
        let run = dist.run(&["resolve", &loc], b"");
        let err = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{err}");
        let meant = format!("{loc}/");
        assert!(
            err.contains(&format!(
                "for the layout {:?} itself, write {meant}\n",
                &loc[4..]
            )),
            "{err}"
        );
        let resolved: Value = serde_json::from_slice(&dist.ok(&["resolve", &meant])).unwrap();
        assert_eq!(resolved["digest"], digest(&m), "{meant}");
    }
    // A directory that is no layout is told of the tag or digest alone, as before.
    let run = dist.run(
        &["resolve", &format!("oci:{}/none:", dir.path().display())],
        b"",
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("or leave the ':' out\n"), "{err}");
}

/// `skopeo copy … oci:DIR` (no tag) writes an entry without a name, which `oci:DIR`
/// (`latest`) does not find: the error says what `index.json` does list, the unnamed entry
/// by its digest, so that it can be asked for so.
#[test]
fn a_tag_not_found_names_what_the_index_lists() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Layout::new(dir.path().join("src"));
    let m = src.image(OCI_MANIFEST, 6);
    src.entries.push(m.clone());
    src.write_index();
    let dist = Dist::new();
    let run = dist.run(&["resolve", &src.loc()], b"");
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(&format!(
            "no entry named \"latest\" in {}; it lists {} (no name)",
            src.root.join("index.json").display(),
            digest(&m)
        )),
        "{err}"
    );
    let resolved: Value =
        serde_json::from_slice(&dist.ok(&["resolve", &format!("{}@{}", src.loc(), digest(&m))]))
            .unwrap();
    assert_eq!(resolved, m);

    let other = src.image(DOCKER_MANIFEST, 7);
    src.tag(&other, "v1");
    src.tag(&other, "v2");
    let run = dist.run(&["fetch", &src.loc(), "v3"], b"");
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(&format!("; it lists {} (no name), v1, v2", digest(&m))),
        "{err}"
    );
    let empty = Layout::new(dir.path().join("empty"));
    let run = dist.run(&["resolve", &format!("{}:v1", empty.loc())], b"");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("index.json; it lists nothing"), "{err}");
}

/// A digest's hex pasted without its algorithm is a valid tag, and a layout has no such
/// entry: the error says how to write the digest, as a registry's 404 for it does, rather
/// than only listing the names the layout has.
#[test]
fn a_bare_digest_as_a_tag_gets_its_spelling_from_a_layout_too() {
    let dir = tempfile::tempdir().unwrap();
    let (src, m) = tagged_v1(dir.path(), OCI_MANIFEST, 8);
    let dist = Dist::new();
    let bare = &digest(&m)["sha256:".len()..];
    let run = dist.run(&["fetch", &src.loc(), bare], b"");
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(&format!("if a digest was meant, write it {}", digest(&m))),
        "{err}"
    );
    let run = dist.run(&["fetch", &src.loc(), "-"], format!("{bare}\n").as_bytes());
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        out.contains(&format!("if a digest was meant, write it {}", digest(&m))),
        "{out}"
    );
}

/// An entry whose digest is in an algorithm dist does not verify (`sha256+b64u:`, the
/// image spec's own example) is valid by the spec, and `dist pull` into the layout keeps
/// it; the layout's other entries stay readable, where every command refused the whole
/// layout as "not an OCI image index". Asked for, its tag fails naming the digest.
#[test]
fn an_entry_in_an_algorithm_dist_does_not_verify_leaves_the_others_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Layout::new(dir.path().join("src"));
    let m = src.image(OCI_MANIFEST, 8);
    let foreign = "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564";
    src.tag(
        &json!({"mediaType": OCI_MANIFEST, "digest": foreign, "size": 7}),
        "other",
    );
    src.tag(&m, "v1");
    let dist = Dist::new();
    let manifest = std::fs::read(src.path(digest(&m))).unwrap();
    assert_eq!(dist.ok(&["fetch", &src.loc(), "v1"]), manifest);
    let resolved: Value =
        serde_json::from_slice(&dist.ok(&["resolve", &format!("{}:v1", src.loc())])).unwrap();
    assert_eq!(resolved["digest"], digest(&m));
    let out = dir.path().join("out");
    dist.ok(&[
        "pull",
        &format!("{}:v1", src.loc()),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(out.join("blobs/sha256").join(&digest(&m)[7..])).unwrap(),
        manifest
    );

    // As the digest itself is, given as the object.
    let run = dist.run(&["fetch", &src.loc(), "other"], b"");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the entry named \"other\" in {} is {foreign}, in an algorithm dist does not \
             verify",
            src.root.join("index.json").display()
        )),
        "{err}"
    );
    let run = dist.run(&["fetch", &src.loc(), "v3"], b"");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.ends_with("; it lists v1, other\n"), "{err}");
}

/// A malformed entry (a bad digest, a negative size), as another tool may write one,
/// leaves the layout's other entries readable, as containerd and skopeo read the file: it
/// refused every command, a worker's whole batch included. Its own tag fails, with why.
/// Written to, the layout keeps it, and `"manifests": null` (Go's empty list) is no
/// entries rather than no layout.
#[test]
fn a_malformed_entry_leaves_the_others_readable_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Layout::new(dir.path().join("src"));
    let m = src.image(OCI_MANIFEST, 9);
    let bad = json!({"mediaType": OCI_MANIFEST, "digest": "sha256:ABC", "size": 7});
    src.tag(&bad, "bad");
    src.entries
        .push(json!({"mediaType": OCI_MANIFEST, "digest": digest(&m), "size": -1}));
    src.tag(&m, "v1");
    let dist = Dist::new();
    let manifest = std::fs::read(src.path(digest(&m))).unwrap();
    assert_eq!(dist.ok(&["fetch", &src.loc(), "v1"]), manifest);
    let run = dist.run(&["fetch", &src.loc(), "bad"], b"");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid digest \"sha256:ABC\""), "{err}");
    // A pull of it too, as README's exit statuses say, before anything is stored; a tag
    // not listed is 1.
    let refused = dir.path().join("refused");
    let to = refused.to_str().unwrap();
    let run = dist.run(&["pull", &format!("{}:bad", src.loc()), "-o", to], b"");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid digest \"sha256:ABC\""), "{err}");
    let run = dist.run(&["pull", &format!("{}:v9", src.loc()), "-o", to], b"");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");

    let input = format!("v1\nbad\n{}\n", digest(&m));
    let run = dist.run(&["fetch", &src.loc(), "-"], input.as_bytes());
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    let frames = parse_frames(&run.stdout);
    let ok: Vec<&str> = frames
        .iter()
        .filter(|f| f.result.as_ref().is_ok_and(|r| r.2 == manifest))
        .map(|f| f.object.as_str())
        .collect();
    assert_eq!(ok.len(), 2, "{err}");
    assert!(ok.contains(&"v1") && ok.contains(&digest(&m)), "{ok:?}");
    assert!(err.contains("\"bad\""), "{err}");

    // Pulled into a layout whose index.json another tool wrote.
    let out = dir.path().join("out");
    let mut dst = Layout::new(out.clone());
    dst.tag(&bad, "theirs");
    let text = std::fs::read_to_string(out.join("index.json")).unwrap();
    dist.ok(&[
        "pull",
        &format!("{}:v1", src.loc()),
        "-o",
        out.to_str().unwrap(),
    ]);
    let written = entries(&out);
    assert_eq!(written.len(), 2, "{text} became {written:?}");
    assert_eq!(written[0]["digest"], "sha256:ABC");
    assert_eq!(written[1]["digest"], digest(&m));
    let nulled = dir.path().join("nulled");
    let dst = Layout::new(nulled.clone());
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": null});
    std::fs::write(dst.root.join("index.json"), index.to_string()).unwrap();
    dist.ok(&[
        "pull",
        &format!("{}:v1", src.loc()),
        "-o",
        nulled.to_str().unwrap(),
    ]);
    assert_eq!(entries(&nulled).len(), 1);
}

#[test]
fn a_colon_in_the_directory_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Layout::new(dir.path().join("my:dir"));
    let m = src.image(OCI_MANIFEST, 3);
    src.tag(&m, "v1");
    let dist = Dist::new();
    // A fetch locator is all path; a reference splits its tag off after the last '/'.
    assert_eq!(sha256(&dist.ok(&["fetch", &src.loc(), "v1"])), digest(&m));
    let resolved: Value =
        serde_json::from_slice(&dist.ok(&["resolve", &format!("{}:v1", src.loc())])).unwrap();
    assert_eq!(resolved, m);
    // A trailing slash keeps the colon in the path; no tag means latest, and there is none.
    let latest = dist.run(&["resolve", &format!("{}/", src.loc())], b"");
    assert_eq!(latest.status.code(), Some(1));
    let err = String::from_utf8_lossy(&latest.stderr);
    assert!(
        err.contains("no entry named \"latest\"") && err.contains("my:dir"),
        "{err}"
    );
}

#[test]
fn pull_by_digest_and_docker_types_stay_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Layout::new(dir.path().join("src"));
    let oci = src.image(OCI_MANIFEST, 4);
    let docker = src.image(DOCKER_MANIFEST, 5);
    src.tag(&oci, "v1");
    src.tag(&docker, "docker");
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let dist = Dist::new();
    dist.ok(&["pull", &format!("{}@{}", src.loc(), digest(&oci)), "-o", o]);
    dist.ok(&["pull", &format!("{}:docker", src.loc()), "-o", o]);
    dist.ok(&["pull", &format!("{}:v1", src.loc()), "-o", o]);
    let e = entries(&out);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(
        (digest(&e[0]), e[0].get("annotations")),
        (digest(&oci), None)
    );
    assert_eq!(
        (digest(&e[1]), e[1]["mediaType"].as_str()),
        (digest(&docker), Some(DOCKER_MANIFEST))
    );
    assert_eq!(e[1]["annotations"][REF_NAME], "docker");
    assert_eq!(
        (digest(&e[2]), &e[2]["annotations"][REF_NAME]),
        (digest(&oci), &json!("v1"))
    );
    for d in [digest(&oci), digest(&docker)] {
        assert_eq!(
            std::fs::read(out.join("blobs/sha256").join(&d[7..])).unwrap(),
            std::fs::read(src.path(d)).unwrap()
        );
    }
}

/// A layout's entry may say which platform its manifest is for; a pull from it keeps that
/// in the layout it writes, by tag or by digest.
#[test]
fn pull_from_a_layout_keeps_the_entrys_platform() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = Layout::new(dir.path().join("src"));
    let mut image = src.image(OCI_MANIFEST, 6);
    image["platform"] = json!({"architecture": "amd64", "os": "linux"});
    src.tag(&image, "v1");
    let dist = Dist::new();
    for reference in [
        format!("{}:v1", src.loc()),
        format!("{}@{}", src.loc(), digest(&image)),
    ] {
        let out = dir.path().join(format!("out{}", reference.len()));
        dist.ok(&["pull", &reference, "-o", out.to_str().unwrap()]);
        let e = entries(&out);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["platform"], image["platform"], "{reference}: {e:?}");
    }
}

/// The full name a layout's entry records is text whoever wrote the layout chose: the
/// warning that names it when another image takes the tag shows it on one line, without
/// terminal escapes.
#[test]
fn a_layout_s_image_names_reach_stderr_without_escapes() {
    const IMAGE_NAME: &str = "io.containerd.image.name";
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let dist = Dist::new();
    for (i, name) in [
        "reg.example/a:v1",
        "reg.example/\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31mb:v1\nnext",
    ]
    .iter()
    .enumerate()
    {
        let mut src = Layout::new(dir.path().join(format!("src{i}")));
        let mut image = src.image(OCI_MANIFEST, 20 + i as u64);
        image["annotations"] = json!({ REF_NAME: "v1", IMAGE_NAME: name });
        src.entries.push(image);
        src.write_index();
        let run = dist.run(&["pull", &format!("{}:v1", src.loc()), "-o", o], b"");
        let err = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(run.status.success(), "{err}");
        if i == 1 {
            assert!(err.contains("named reg.example/a:v1"), "{err}");
            assert!(err.contains("it names reg.example/"), "{err}");
            assert!(
                !err.trim_end_matches('\n').contains(char::is_control),
                "{err:?}"
            );
        }
    }
    assert_eq!(
        entries(&out)[0]["annotations"][IMAGE_NAME],
        "reg.example/\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31mb:v1\nnext",
        "the entry records the name as it was"
    );
}

/// A layout's `index.json` that is a named pipe, or larger than dist reads, is refused,
/// naming why, as a source and as a destination. The pipe blocked the read for ever,
/// waiting for a writer, and an index of any size was read into memory whole.
#[test]
fn an_index_json_that_is_a_pipe_or_huge_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (src, m) = tagged_v1(dir.path(), OCI_MANIFEST, 3);
    let index = src.root.join("index.json");
    let dist = Dist::new();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let out_index = out.join("index.json");
    let (loc, into) = (src.loc(), out.to_str().unwrap().to_string());
    let cases: [(&Path, Vec<&str>); 2] = [
        (&index, vec!["fetch", &loc, "v1"]),
        (&out_index, vec!["fetch", &loc, digest(&m), "-o", &into]),
    ];
    for (path, args) in cases {
        let saved = std::fs::read(path).ok();
        std::fs::remove_file(path).ok();
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path this test owns.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let mut child = dist.start(&args);
        drop(child.stdin.take());
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                panic!("{args:?}: still reading the pipe 20 s later");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let run = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?}: {err}");
        assert!(err.contains("not a regular file"), "{args:?}: {err}");

        std::fs::remove_file(path).unwrap();
        let huge = std::fs::File::create(path).unwrap();
        huge.set_len(65 << 20).unwrap();
        let run = dist.run(&args, b"");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("larger than the 64 MiB dist reads"),
            "{args:?}: {err}"
        );
        std::fs::remove_file(path).unwrap();
        if let Some(text) = saved {
            std::fs::write(path, text).unwrap();
        }
    }
}
