//! Deterministic content and the files the commands read: digest lists, curl configs, a
//! 1 GiB blob, and pushing all of it into a registry.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::support::cli::{bytes, sha256};
use crate::support::registry::Registry;

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * KIB;
pub const GIB: usize = 1024 * MIB;

/// One small blob.
pub struct Blob {
    pub digest: String,
    pub data: Vec<u8>,
}

/// `count` blobs of 4 to 64 KiB. Sizes and contents depend only on the index, so every
/// run (and every case) sees the same set.
pub fn small_blobs(count: usize) -> Vec<Blob> {
    (0..count)
        .map(|i| {
            let size = 4 * KIB + (i * 7919) % (60 * KIB + 1);
            let data = bytes(i as u64 + 1, size);
            Blob {
                digest: sha256(&data),
                data,
            }
        })
        .collect()
}

/// Pushes every blob to `repo`: the harness's monolithic upload, one token each in Token
/// mode.
pub fn push_all(registry: &Registry, repo: &str, blobs: &[Blob]) {
    for blob in blobs {
        let pushed = registry.push_blob(repo, &blob.data);
        assert_eq!(pushed, blob.digest);
    }
}

/// Writes one line per item.
pub fn write_lines<I>(path: &Path, lines: I)
where
    I: IntoIterator,
    I::Item: std::fmt::Display,
{
    let mut out = BufWriter::new(File::create(path).expect("create lines file"));
    for line in lines {
        writeln!(out, "{line}").expect("write line");
    }
    out.flush().expect("flush lines file");
}

/// A curl config (`-K`) fetching every URL to /dev/null, or into a file per URL in
/// `files_in`, sending `header` (a `-H` value) with each.
pub fn write_curl_config(
    path: &Path,
    header: Option<&str>,
    urls: impl IntoIterator<Item = String>,
    files_in: Option<&Path>,
) {
    let header = header.map(|h| format!("header = \"{h}\""));
    let pairs = urls.into_iter().map(|url| {
        let output = match files_in {
            // The URL's last segment is the digest: one file per blob, as `-o DIR` stores.
            Some(dir) => dir
                .join(url.rsplit('/').next().unwrap_or("blob"))
                .display()
                .to_string(),
            None => "/dev/null".into(),
        };
        format!("url = \"{url}\"\noutput = \"{output}\"")
    });
    write_lines(path, header.into_iter().chain(pairs));
}

/// Lays out blobs the way a registry's blob URLs name them, for a static file server:
/// `ROOT/v2/REPO/blobs/sha256:<hex>`.
pub fn write_static_tree(root: &Path, repo: &str, blobs: &[Blob]) {
    let dir = root.join("v2").join(repo).join("blobs");
    fs::create_dir_all(&dir).expect("create static tree");
    for blob in blobs {
        fs::write(dir.join(&blob.digest), &blob.data).expect("write static blob");
    }
}

/// `count` distinct tags (`tag-0000001`, …), each answered by the same manifest.
pub fn distinct_tags(count: usize) -> impl Iterator<Item = String> {
    (0..count).map(|i| format!("tag-{i:07}"))
}

/// `count` distinct digests that name no content we ever push.
pub fn missing_digests(count: usize) -> impl Iterator<Item = String> {
    (0..count).map(|i| sha256(format!("dist-bench missing {i}").as_bytes()))
}

/// Writes `size` deterministic bytes to `path`, 1 MiB at a time so that memory stays
/// small, and returns their `sha256:` digest.
pub fn write_big_file(path: &Path, size: usize, seed: u64) -> String {
    let mut out = BufWriter::with_capacity(MIB, File::create(path).expect("create big file"));
    let mut hasher = Sha256::new();
    let mut written = 0;
    let mut chunk_seed = seed;
    while written < size {
        let chunk = bytes(chunk_seed, MIB.min(size - written));
        hasher.update(&chunk);
        out.write_all(&chunk).expect("write big file");
        written += chunk.len();
        chunk_seed += 1;
    }
    out.flush().expect("flush big file");
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Uploads a file to an anonymous registry with curl, streaming it from disk
/// (`POST` to start, `PUT -T FILE ?digest=` to finish): the harness's `push_blob` would
/// hold two copies of a 1 GiB blob in memory.
pub fn push_file(registry: &Registry, repo: &str, path: &Path, digest: &str) {
    let start = format!("{}/v2/{repo}/blobs/uploads/", registry.url());
    let headers = curl(&["-sSf", "-D", "-", "-o", "/dev/null", "-X", "POST", &start]);
    let location = headers
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("location")
                .then(|| value.trim().to_string())
        })
        .expect("upload Location header");
    let mut upload = if location.starts_with('/') {
        format!("{}{location}", registry.url())
    } else {
        location
    };
    upload.push(if upload.contains('?') { '&' } else { '?' });
    upload.push_str(&format!("digest={}", digest.replace(':', "%3A")));
    let file = path.to_str().expect("UTF-8 path");
    curl(&[
        "-sSf",
        "-o",
        "/dev/null",
        "-H",
        "Content-Type: application/octet-stream",
        "-T",
        file,
        &upload,
    ]);
}

/// An anonymous pull token for `repo` from the registry's token issuer, the way any
/// client gets one: `GET <realm>?service=…&scope=repository:<repo>:pull`.
pub fn pull_token(registry: &Registry, repo: &str) -> String {
    let issuer = registry.token_server().expect("Token mode");
    let url = format!(
        "{}?service={}&scope=repository:{repo}:pull",
        issuer.url(),
        issuer.options().service
    );
    let reply: serde_json::Value =
        serde_json::from_str(&curl(&["-sSf", &url])).expect("token reply is JSON");
    reply["token"]
        .as_str()
        .or_else(|| reply["access_token"].as_str())
        .expect("token in reply")
        .to_string()
}

/// Runs curl and returns its stdout; panics on failure.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(args).output().expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 curl output")
}
