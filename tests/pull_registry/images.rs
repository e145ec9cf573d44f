//! Images for `dist pull` to fetch: pushed to the real registry or the fake, as OCI or
//! Docker types, plus helpers to read the resulting layouts.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::support::cli::{bytes, json_lines, sha256, Dist};
use crate::support::fake::FakeRegistry;
use crate::support::registry::{Mode, Registry};

/// Where an image can be pushed: the real registry or the fake.
pub trait Push {
    fn blob(&self, repo: &str, data: &[u8]) -> String;
    fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String;
}

impl Push for Registry {
    fn blob(&self, repo: &str, data: &[u8]) -> String {
        self.push_blob(repo, data)
    }
    fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
        self.push_manifest(repo, reference, media_type, body)
    }
}

impl Push for FakeRegistry {
    fn blob(&self, repo: &str, data: &[u8]) -> String {
        FakeRegistry::blob(self, repo, data)
    }
    fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> String {
        FakeRegistry::manifest(self, repo, reference, media_type, body)
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Flavor {
    Oci,
    Docker,
}

impl Flavor {
    pub fn index(self) -> &'static str {
        match self {
            Flavor::Oci => "application/vnd.oci.image.index.v1+json",
            Flavor::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
        }
    }
    pub fn manifest(self) -> &'static str {
        match self {
            Flavor::Oci => "application/vnd.oci.image.manifest.v1+json",
            Flavor::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }
    pub fn config(self) -> &'static str {
        match self {
            Flavor::Oci => "application/vnd.oci.image.config.v1+json",
            Flavor::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }
    pub fn layer(self) -> &'static str {
        match self {
            Flavor::Oci => "application/vnd.oci.image.layer.v1.tar",
            Flavor::Docker => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    }
}

/// One platform's image: a config and two layers, the first shared by every image.
pub struct Image {
    pub arch: String,
    pub digest: String,
    pub manifest: Vec<u8>,
    /// Config first, then layers.
    pub blobs: Vec<(String, Vec<u8>)>,
}

pub fn push_image(to: &impl Push, repo: &str, flavor: Flavor, arch: &str, seed: u64) -> Image {
    let layers = [bytes(7, 5000), bytes(seed, 20_000 + seed as usize * 100)];
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config = json!({
        "architecture": arch, "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string()
    .into_bytes();
    let mut blobs = vec![(to.blob(repo, &config), config)];
    for l in layers {
        blobs.push((to.blob(repo, &l), l));
    }
    let desc =
        |t: &str, (d, b): &(String, Vec<u8>)| json!({"mediaType": t, "digest": d, "size": b.len()});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": flavor.manifest(),
        "config": desc(flavor.config(), &blobs[0]),
        "layers": blobs[1..].iter().map(|b| desc(flavor.layer(), b)).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let digest = to.manifest(repo, &sha256(&manifest), flavor.manifest(), &manifest);
    Image {
        arch: arch.to_string(),
        digest,
        manifest,
        blobs,
    }
}

/// Pushes an index of `images` under `tag`; returns its digest and bytes.
pub fn push_index(
    to: &impl Push,
    repo: &str,
    tag: &str,
    flavor: Flavor,
    images: &[&Image],
) -> (String, Vec<u8>) {
    let manifests: Vec<Value> = images
        .iter()
        .map(|i| {
            let mut platform = json!({"architecture": i.arch, "os": "linux"});
            if i.arch == "arm64" {
                platform["variant"] = json!("v8");
            }
            json!({"mediaType": flavor.manifest(), "digest": i.digest,
                   "size": i.manifest.len(), "platform": platform})
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": flavor.index(), "manifests": manifests})
        .to_string()
        .into_bytes();
    (to.manifest(repo, tag, flavor.index(), &index), index)
}

/// amd64 and arm64 images under an index tagged `tag`.
pub fn multi(
    to: &impl Push,
    repo: &str,
    tag: &str,
    flavor: Flavor,
) -> (String, Vec<u8>, [Image; 2]) {
    let images = [
        push_image(to, repo, flavor, "amd64", 1),
        push_image(to, repo, flavor, "arm64", 2),
    ];
    let (digest, index) = push_index(to, repo, tag, flavor, &[&images[0], &images[1]]);
    (digest, index, images)
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("these tests know amd64 and arm64 hosts, not {other}"),
    }
}

pub fn stored(dir: &Path, digest: &str) -> Option<Vec<u8>> {
    std::fs::read(dir.join("blobs/sha256").join(&digest["sha256:".len()..])).ok()
}

pub fn entries(dir: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    v["manifests"].as_array().unwrap().clone()
}

pub fn statuses(out: &[u8]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in json_lines(out) {
        *m.entry(l["status"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

pub fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

pub fn client(reg: &Registry) -> Dist {
    let dist = Dist::new();
    if reg.mode() != Mode::Anonymous {
        dist.login(&reg.host(), reg.user(), reg.password());
    }
    dist
}

pub fn assert_image_stored(dir: &Path, image: &Image) {
    assert_eq!(stored(dir, &image.digest).as_ref(), Some(&image.manifest));
    for (d, b) in &image.blobs {
        assert_eq!(stored(dir, d).as_ref(), Some(b), "{d}");
    }
}

pub fn skopeo(args: &[&str]) -> Output {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("skopeo is required (apt-get install -y skopeo): {e}"));
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
