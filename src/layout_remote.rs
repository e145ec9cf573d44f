//! An OCI image layout directory as a [`Remote`]: the locator `oci:<path>`.
//!
//! A digest is read from `blobs/<algorithm>/<encoded>`; a tag is looked up in `index.json`
//! by its `org.opencontainers.image.ref.name` annotation (the first entry with that name, as
//! skopeo does). Content is streamed from the file through the same [`Download`] as content
//! from a registry, so it is verified against its digest and size just the same: a layout on
//! disk is trusted no more than a registry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{Download, Meta, MAX_MANIFEST_SIZE};
use crate::hints::Hints;
use crate::image::{self, Descriptor, Platform, UnusableEntry};
use crate::reference::Object;
use crate::remote::Remote;

/// Bytes read from a blob file at a time.
const CHUNK: usize = 256 << 10;

/// An OCI image layout on the local filesystem, read-only.
#[derive(Debug, Clone)]
pub struct LayoutRemote {
    root: PathBuf,
    /// The types `index.json` records, by digest, as last read: a batch of small blobs
    /// asks for one per blob, and reading and parsing the index each time made a store
    /// of many entries cost its size once per blob.
    listed: Arc<Mutex<Option<Listed>>>,
    /// The tag or digest after the directory, as a reference (`oci:DIR:v1`) names it:
    /// `:v1`, `@sha256:…`; empty for a locator's layout.
    named: String,
}

/// The types `index.json` records, and which version of the file they were read from.
#[derive(Debug)]
struct Listed {
    stamp: Stamp,
    types: HashMap<Digest, String>,
}

/// What tells one version of `index.json` from another: it is replaced by a rename (a new
/// inode) and rewritten with a new modification time.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            inode,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// `index.json`, its entries taken one at a time: one whose digest is in an algorithm
/// dist does not verify is valid by the image spec (which says such digests should pass
/// validation), and one that is malformed (a bad digest, a negative size) is another
/// tool's: neither must make the layout's other entries unreadable, as it does not for
/// containerd and skopeo, which check a digest only when they use it. `null` is no
/// entries, as Go writes an empty list and reads it back.
#[derive(Deserialize)]
struct IndexFile {
    #[serde(default)]
    manifests: Option<Vec<serde_json::Value>>,
}

/// The entries of `index.json`: those dist can read, and, with the names they give, those
/// it cannot fetch.
struct Entries {
    usable: Vec<Descriptor>,
    /// Where each of `usable` is in the file, from 0: a tag is its first entry, usable or not.
    places: Vec<usize>,
    unusable: Vec<(Option<String>, UnusableEntry)>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        ErrorKind::NotFound
    } else {
        ErrorKind::Io
    };
    Error::new(kind, format!("{what} {}", path.display())).with_cause(e)
}

impl LayoutRemote {
    /// A remote reading the layout at `root`. Nothing is touched until it is used.
    pub fn new(root: impl Into<PathBuf>) -> LayoutRemote {
        LayoutRemote {
            root: root.into(),
            listed: Arc::default(),
            named: String::new(),
        }
    }

    /// The layout of `image` (`oci:DIR:v1`, as `dist pull` and `dist resolve` take one),
    /// whose tag or digest a check's note on Helm's `oci://HOST/NAME` keeps in the
    /// registry's spelling: without it, `HOST/NAME` is read as another image, its `latest`.
    pub fn of_image(root: impl Into<PathBuf>, image: &crate::image::ImageRef) -> LayoutRemote {
        // The reference's spelling after its locator's.
        let (whole, locator) = (image.to_string(), image.locator.to_string());
        let named = whole.strip_prefix(&locator).unwrap_or_default().to_string();
        LayoutRemote {
            named,
            ..LayoutRemote::new(root)
        }
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.encoded())
    }

    /// The entries of `index.json`, leaving out any whose digest is in an algorithm dist
    /// does not verify.
    pub async fn entries(&self) -> Result<Vec<Descriptor>> {
        Ok(self.read_entries().await?.usable)
    }

    async fn read_entries(&self) -> Result<Entries> {
        let path = self.root.join("index.json");
        let read = path.clone();
        let text = crate::blocking::run("reading index.json failed", move || {
            crate::sink::layout_check::read_layout_json(&read)
                .map_err(|e| io_err("reading", &read, e))
        })
        .await?;
        let not_an_index = |e: serde_json::Error| {
            Error::invalid(format!("{} is not an OCI image index", path.display())).with_cause(e)
        };
        let index: IndexFile = serde_json::from_slice(&text).map_err(not_an_index)?;
        let manifests = index.manifests.unwrap_or_default();
        let mut entries = Entries {
            usable: Vec::with_capacity(manifests.len()),
            places: Vec::with_capacity(manifests.len()),
            unusable: Vec::new(),
        };
        for (position, entry) in manifests.iter().enumerate() {
            match UnusableEntry::read(position, entry) {
                Ok(d) => {
                    entries.usable.push(d);
                    entries.places.push(position);
                }
                Err(unusable) => {
                    let name = image::entry_ref_name(entry).map(str::to_string);
                    entries.unusable.push((name, *unusable));
                }
            }
        }
        Ok(entries)
    }

    /// The first `index.json` entry named `tag`. One that cannot be used fails the tag,
    /// even with a usable entry of the name after it: skopeo and containerd take the first,
    /// and the later one may be another image.
    async fn find_tag(&self, tag: &str) -> Result<Descriptor> {
        let Entries {
            usable: mut entries,
            places,
            unusable,
        } = self.read_entries().await?;
        let found = entries.iter().position(|d| d.ref_name() == Some(tag));
        let unusable_first = unusable
            .iter()
            .find(|(n, _)| n.as_deref() == Some(tag))
            .filter(|(_, u)| found.is_none_or(|i| u.position < places[i]));
        if let (Some(found), None) = (found, unusable_first) {
            return Ok(entries.swap_remove(found));
        }
        let index = self.root.join("index.json");
        if let Some((_, entry)) = unusable_first {
            // A digest is kept for an entry whose size or type is what is wrong too: the
            // algorithm is the reason only when dist does not verify it.
            let unverifiable = entry
                .digest
                .as_deref()
                .filter(|d| Digest::unsupported_algorithm(d).is_some());
            return Err(Error::invalid(match unverifiable {
                Some(digest) => format!(
                    "the entry named {tag:?} in {} is {digest}, in an algorithm dist does not \
                     verify (it verifies sha256 and sha512)",
                    index.display(),
                ),
                None => format!(
                    "the entry named {tag:?} in {} cannot be used: {}",
                    index.display(),
                    entry.why.reason()
                ),
            }));
        }
        let e = Error::new(
            ErrorKind::NotFound,
            format!(
                "no entry named {tag:?} in {}; it lists {}",
                index.display(),
                listed(&entries, &unusable)
            ),
        );
        // A digest's hex pasted without its algorithm is a valid tag, which no layout
        // names: as for a registry, the spelling that fetches it.
        match Object::Tag(tag.to_string()).bare_digest_spelling() {
            Some(digest) => Err(e.with_note(format!("if a digest was meant, write it {digest}"))),
            None => Err(e),
        }
    }

    /// The media type `index.json` records for `digest`, as a registry's `Content-Type`
    /// tells a manifest's: `None` when no entry lists it with one, or the index cannot be
    /// read (the content itself was found, and is no less served).
    async fn listed_type(&self, digest: &Digest) -> Option<String> {
        let stamp = tokio::fs::metadata(self.root.join("index.json"))
            .await
            .ok()
            .map(|m| Stamp::of(&m))?;
        {
            let listed = self.listed.lock().expect("listed types poisoned");
            if let Some(listed) = listed.as_ref().filter(|l| l.stamp == stamp) {
                return listed.types.get(digest).cloned();
            }
        }
        let entries = self.entries().await.ok()?;
        let mut types = HashMap::with_capacity(entries.len());
        for entry in entries {
            // The first entry listing a digest with a type is the one that counts.
            if let Some(media_type) = recorded_type(&entry).map(str::to_string) {
                types.entry(entry.digest).or_insert(media_type);
            }
        }
        let found = types.get(digest).cloned();
        // Kept under the version stat'ed before the read: a file replaced in between is
        // read again next time, never taken for the older one.
        *self.listed.lock().expect("listed types poisoned") = Some(Listed { stamp, types });
        found
    }

    /// What `entry` describes. An entry without a media type (against the spec), or with
    /// one that is no media type, gets the one its content declares, as `dist pull` reads and records it: an empty type, passed
    /// on by a script as a hint, asks for nothing.
    async fn described(&self, entry: Descriptor) -> Result<Descriptor> {
        if recorded_type(&entry).is_some() {
            return Ok(entry.bare());
        }
        let read = image::resolve_by_fetch(self, &Object::Digest(entry.digest.clone())).await?;
        Ok(Descriptor::new(read.media_type, entry.digest, entry.size))
    }

    /// Opens a blob for a verified read. `size` is what the caller expects, and what said
    /// it (for a message); `limit` caps manifests.
    async fn open(
        &self,
        object: &Object,
        digest: &Digest,
        size: Option<(u64, Expected)>,
        media_type: Option<String>,
        limit: Option<u64>,
    ) -> Result<Download> {
        let path = self.blob_path(digest);
        // Looked at before it is opened: opening a FIFO waits for a writer, and a
        // directory opens, to be reported by its own size or fail on the first read.
        let not_a_file = || {
            Error::new(
                ErrorKind::Io,
                format!("{} is not a regular file", path.display()),
            )
        };
        let before = tokio::fs::metadata(&path)
            .await
            .map_err(|e| io_err("opening", &path, e))?;
        if !before.is_file() {
            return Err(not_a_file());
        }
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_err("opening", &path, e))?;
        let opened = file
            .metadata()
            .await
            .map_err(|e| io_err("reading", &path, e))?;
        if !opened.is_file() {
            return Err(not_a_file());
        }
        let len = opened.len();
        let url = path.display().to_string();
        if let Some((expected, said)) = size.filter(|&(s, _)| s != len) {
            let expected = match said {
                Expected::Given => crate::hints::expected_size(expected),
                Expected::Listed => format!("expected {expected} (index.json's size for it)"),
            };
            return Err(Error::new(
                ErrorKind::SizeMismatch,
                format!("blob has {}, {expected}", crate::plural::Bytes(len)),
            )
            .with_url(url));
        }
        if let Some(limit) = limit.filter(|&l| len > l) {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("manifest of {len} bytes exceeds the {limit}-byte limit"),
            )
            .with_url(url));
        }
        let body = futures::stream::try_unfold((file, path), |(mut file, path)| async move {
            let mut buf = BytesMut::with_capacity(CHUNK);
            let n = file
                .read_buf(&mut buf)
                .await
                .map_err(|e| io_err("reading", &path, e))?;
            Ok((n > 0).then(|| (buf.freeze(), (file, path))))
        })
        .boxed();
        let meta = Meta {
            object: object.clone(),
            expected: Some(digest.clone()),
            // The file's own length: a blob that changes while it is read fails.
            size: Some(len),
            media_type,
            url,
            limit,
        };
        Ok(Download::new(meta, body))
    }
}

impl Remote for LayoutRemote {
    fn listed_platform<'a>(&'a self, object: &'a Object) -> BoxFuture<'a, Option<Platform>> {
        async move {
            let entry = match object {
                Object::Tag(tag) => self.find_tag(tag).await.ok(),
                // The same manifest may be listed more than once (under two tags), not
                // every time with its platform.
                Object::Digest(digest) => {
                    let entries = self.entries().await.ok()?.into_iter();
                    return entries
                        .filter(|d| d.digest == *digest)
                        .find_map(|d| d.platform);
                }
            };
            entry?.platform
        }
        .boxed()
    }

    fn fetch<'a>(
        &'a self,
        object: &'a Object,
        hints: &'a Hints,
    ) -> BoxFuture<'a, Result<Download>> {
        // The object is named on every error: in an inner block, since a `?` in the
        // outer one returned past the `map_err` unnamed ("opening ./dir/blobs/…").
        let fetched = async move {
            let hinted = hints.media_type().map(str::to_string);
            match object {
                Object::Tag(tag) => {
                    let d = self.find_tag(tag).await?;
                    if let Some(h) = hints.size.filter(|&h| h != d.size) {
                        return Err(Error::new(
                            ErrorKind::SizeMismatch,
                            format!(
                                "index.json says {}, {}",
                                crate::plural::Bytes(d.size),
                                crate::hints::expected_size(h)
                            ),
                        )
                        .with_url(self.root.join("index.json").display()));
                    }
                    // What the entry records is what the tag is, as a registry's
                    // Content-Type is: a hint says what the caller takes, not what it got.
                    let media_type = recorded_type(&d).map(str::to_string).or(hinted);
                    let download = self
                        .open(
                            object,
                            &d.digest,
                            Some((d.size, Expected::Listed)),
                            media_type,
                            Some(MAX_MANIFEST_SIZE),
                        )
                        .await?;
                    Ok(typed_if_untold(download))
                }
                Object::Digest(digest) => {
                    let limit = hints.wants_manifest().then_some(MAX_MANIFEST_SIZE);
                    let size = hints.size.map(|s| (s, Expected::Given));
                    let download = self.open(object, digest, size, hinted, limit).await?;
                    // Looked up once the content is found, so that a digest the layout
                    // lacks costs no read of index.json, and only for content small enough
                    // to be a manifest: a layer is never listed.
                    let size = download.meta().size;
                    if download.meta().media_type.is_some()
                        || size.is_none_or(|s| s > MAX_MANIFEST_SIZE)
                    {
                        return Ok(download);
                    }
                    let listed = self.listed_type(digest).await;
                    Ok(typed_if_untold(download.with_media_type(listed)))
                }
            }
        };
        async move { fetched.await.map_err(|e: Error| e.with_object(object)) }.boxed()
    }

    fn check<'a>(&'a self) -> BoxFuture<'a, Result<()>> {
        async move {
            let marker = self.root.join("oci-layout");
            let meta = tokio::fs::metadata(&marker).await.map_err(|e| {
                // A marker that is there but cannot be read (permission denied, an I/O
                // error) says nothing against the layout: called no layout, it sent the
                // user looking for another directory.
                let absent = matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                );
                if !absent {
                    return io_err("reading", &marker, e);
                }
                let msg = format!("{} is not an OCI image layout", self.root.display());
                if let Some(meant) = registry_written_as_layout(&self.root) {
                    return Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "{msg}: {e}; oci://HOST/…, as Helm and ORAS name a registry, is \
                             a layout directory here: for the registry, write it without \
                             oci:// ({meant}{})",
                            self.named
                        ),
                    );
                }
                match object_written_on(&self.root) {
                    // The spelling that works goes last: with the system's error after
                    // it, `oci:DIR v1: No such file or directory` read as its failure.
                    Some((dir, object)) => Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "{msg}: {e}; a tag or digest is the next argument: oci:{dir} \
                             {object}"
                        ),
                    ),
                    None => Error::new(ErrorKind::NotFound, msg).with_cause(e),
                }
            })?;
            if !meta.is_file() {
                return Err(Error::invalid(format!(
                    "{} is not a file",
                    marker.display()
                )));
            }
            check_marker(marker).await?;
            self.entries().await.map(drop)
        }
        .boxed()
    }

    fn describe(&self) -> String {
        format!("oci:{}", self.root.display())
    }

    fn manifest_location(&self, digest: &Digest) -> Option<String> {
        Some(self.blob_path(digest).display().to_string())
    }

    fn refetch_may_verify(&self) -> bool {
        false
    }

    fn resolve<'a>(&'a self, object: &'a Object) -> BoxFuture<'a, Result<Descriptor>> {
        // As in `fetch`: the object is named past every `?` of the inner block.
        let resolved = async move {
            match object {
                Object::Tag(tag) => self.described(self.find_tag(tag).await?).await,
                Object::Digest(digest) => {
                    // index.json knows the media type of its entries; anything else is
                    // read (it is small, being a manifest) and its type taken from it.
                    let listed = self
                        .entries()
                        .await?
                        .into_iter()
                        .find(|d| d.digest == *digest);
                    match listed {
                        Some(d) => self.described(d).await,
                        None => image::resolve_by_fetch(self, object).await,
                    }
                }
            }
        };
        async move { resolved.await.map_err(|e: Error| e.with_object(object)) }.boxed()
    }
}

/// What said the size a blob is expected to have, for the message when it has another.
#[derive(Debug, Clone, Copy)]
enum Expected {
    /// The caller: a `size:` hint, or a descriptor's size.
    Given,
    /// The layout's own `index.json` entry of a tag.
    Listed,
}

/// `download`, its type read from its content (a manifest's `mediaType`, or its shape, as
/// containerd recognises one) when neither `index.json` nor a hint told it: reported as
/// unknown, a manifest fetched by digest from a layout that does not list it (one an index
/// names, a referrer) looked like any blob. The content is held only when it is small
/// enough to be a manifest and opens as a JSON object (see [`Download::typed_by_content`]).
/// The type an `index.json` entry records, in its registered spelling; `None` when it
/// records none, or one that is no media type: the file is anyone's, its types are
/// reported as they are, and one holding a terminal's escape or a right-to-left override
/// counts as none, the content's own type saying, as for a registry's manifest.
fn recorded_type(entry: &Descriptor) -> Option<&str> {
    crate::media::reported(&entry.media_type).map(crate::media::canonical)
}

fn typed_if_untold(download: Download) -> Download {
    if download.meta().media_type.is_some() {
        download
    } else {
        download.typed_by_content()
    }
}

/// Refuses a layout whose `oci-layout` file is not JSON or names a version other than 1.x,
/// as containerd and skopeo do: a layout of another version may lay its blobs and index
/// out otherwise, and read as 1.0 it would serve the wrong content or none.
async fn check_marker(marker: PathBuf) -> Result<()> {
    let text = crate::blocking::run("reading oci-layout failed", {
        let marker = marker.clone();
        move || {
            crate::sink::layout_check::read_layout_json(&marker)
                .map_err(|e| io_err("reading", &marker, e))
        }
    })
    .await?;
    let fault = match serde_json::from_slice(&text) {
        Ok(v) => crate::sink::layout_check::marker_fault(&v).map(|why| (why, None)),
        Err(e) => Some(("is not JSON".to_string(), Some(e))),
    };
    match fault {
        None => Ok(()),
        Some((why, cause)) => {
            let e = Error::invalid(format!(
                "{} {why}: not an OCI image layout dist can read",
                marker.display()
            ));
            Err(match cause {
                Some(cause) => e.with_cause(cause),
                None => e,
            })
        }
    }
}

/// The entries of an `index.json`, for a tag that is not among them: by name, and an
/// entry without one by its digest. `skopeo copy … oci:DIR` without a tag writes its image
/// so, and `oci:DIR` (`latest`) does not find it; the digest is how to ask for it.
fn listed(entries: &[Descriptor], unusable: &[(Option<String>, UnusableEntry)]) -> String {
    const SHOWN: usize = 10;
    // An unusable entry without a name is shown by its digest when that reads as one (in
    // an algorithm dist does not verify, or with a wrong size), else by its place in the
    // file.
    let all = entries
        .iter()
        .map(|d| (d.ref_name(), d.digest.to_string()))
        .chain(unusable.iter().map(|(n, u)| {
            let what = u
                .digest
                .clone()
                .unwrap_or_else(|| format!("entry {}", u.position + 1));
            (n.as_deref(), what)
        }));
    let count = entries.len() + unusable.len();
    if count == 0 {
        return "nothing".into();
    }
    let mut names: Vec<String> = all
        .take(SHOWN)
        .map(|(name, what)| match name {
            Some(name) => crate::server_text::cut_to(name.to_string(), 80),
            None => format!("{} (no name)", crate::server_text::cut_to(what, 160)),
        })
        .collect();
    if count > SHOWN {
        names.push(format!("… ({count} in all)"));
    }
    names.join(", ")
}

/// The locator `root` spells when it is `//HOST/NAME`, from `oci://HOST/NAME` as Helm
/// (`helm pull oci://…`) and ORAS name a registry's repository, where `oci:` names a
/// layout directory.
pub(crate) fn registry_written_as_layout(root: &Path) -> Option<&str> {
    let rest = root.to_str()?.strip_prefix("//")?.trim_end_matches('/');
    let (host, _) = rest.split_once('/')?;
    let named =
        crate::reference::is_host(host) && rest.parse::<crate::reference::Repository>().is_ok();
    named.then_some(rest)
}

/// `./dir:v1` or `./dir@sha256:…` where `./dir` is a layout: an image reference, as
/// `dist pull` takes, given where a locator goes.
fn object_written_on(root: &Path) -> Option<(&str, &str)> {
    let s = root.to_str()?;
    let name_start = s.rfind('/').map_or(0, |i| i + 1);
    let at = s[name_start..]
        .find('@')
        .or_else(|| s[name_start..].rfind(':'))?;
    let (dir, object) = (&s[..name_start + at], &s[name_start + at + 1..]);
    let is_layout = !dir.is_empty() && Path::new(dir).join("oci-layout").is_file();
    (is_layout && !object.is_empty()).then_some((dir, object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use crate::media;

    struct Fixture {
        dir: tempfile::TempDir,
        manifest: Vec<u8>,
        blob: Vec<u8>,
    }

    fn put(root: &Path, data: &[u8]) -> Digest {
        let d = Digest::of(Algorithm::Sha256, data);
        let dir = root.join("blobs/sha256");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(d.encoded()), data).unwrap();
        d
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let blob = b"layer bytes".to_vec();
        let b = put(dir.path(), &blob);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"c/d","digest":"{b}","size":{}}},"layers":[]}}"#,
            media::OCI_MANIFEST,
            blob.len()
        )
        .into_bytes();
        let m = put(dir.path(), &manifest);
        std::fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{m}","size":{},"annotations":{{"{}":"v1"}}}}]}}"#,
            media::OCI_MANIFEST,
            manifest.len(),
            image::REF_NAME
        );
        std::fs::write(dir.path().join("index.json"), index).unwrap();
        Fixture {
            dir,
            manifest,
            blob,
        }
    }

    async fn read(d: &mut Download) -> Result<Vec<u8>> {
        crate::image::read_to_end(d, u64::MAX).await
    }

    /// A batch of small blobs asks the index for each one's type: the index is read once
    /// per version of the file, not once per blob, and read again once it changes.
    #[tokio::test]
    async fn the_index_is_read_once_per_version_for_listed_types() {
        let f = fixture();
        let remote = LayoutRemote::new(f.dir.path());
        let m = Digest::of(Algorithm::Sha256, &f.manifest);
        let index = f.dir.path().join("index.json");
        assert_eq!(
            remote.listed_type(&m).await.as_deref(),
            Some(media::OCI_MANIFEST)
        );
        // The same bytes' worth of something else, under the same inode and time: a read
        // would find no index in it.
        let text = std::fs::read(&index).unwrap();
        let modified = std::fs::metadata(&index).unwrap().modified().unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&index)
            .unwrap();
        std::io::Write::write_all(&mut &file, &vec![b' '; text.len()]).unwrap();
        file.set_modified(modified).unwrap();
        drop(file);
        assert_eq!(
            remote.listed_type(&m).await.as_deref(),
            Some(media::OCI_MANIFEST),
            "read again"
        );
        // Replaced, as a pull replaces it: read again, the new type found.
        let other = String::from_utf8(text)
            .unwrap()
            .replace(media::OCI_MANIFEST, media::DOCKER_MANIFEST);
        let new = f.dir.path().join("index.json.new");
        std::fs::write(&new, other).unwrap();
        std::fs::rename(&new, &index).unwrap();
        assert_eq!(
            remote.listed_type(&m).await.as_deref(),
            Some(media::DOCKER_MANIFEST)
        );
    }

    #[tokio::test]
    async fn fetches_by_tag_and_digest_and_resolves() {
        let f = fixture();
        let remote = LayoutRemote::new(f.dir.path());
        remote.check().await.unwrap();
        let tag = Object::Tag("v1".into());
        let mut d = remote.fetch(&tag, &Hints::default()).await.unwrap();
        assert_eq!(read(&mut d).await.unwrap(), f.manifest);
        assert_eq!(d.meta().media_type.as_deref(), Some(media::OCI_MANIFEST));
        let blob = Object::Digest(Digest::of(Algorithm::Sha256, &f.blob));
        let mut d = remote.fetch(&blob, &Hints::default()).await.unwrap();
        assert_eq!(read(&mut d).await.unwrap(), f.blob);
        let desc = remote.resolve(&tag).await.unwrap();
        assert_eq!(desc.digest, Digest::of(Algorithm::Sha256, &f.manifest));
        assert_eq!(
            desc.ref_name(),
            None,
            "resolve describes content, not names"
        );
        let by_digest = remote
            .resolve(&Object::Digest(desc.digest.clone()))
            .await
            .unwrap();
        assert_eq!(by_digest, desc);
        assert!(
            remote.resolve(&blob).await.is_err(),
            "a layer is no manifest"
        );
    }

    /// A manifest listed twice, once without its platform: its platform is the one the
    /// listing gives, whichever entry comes first.
    #[tokio::test]
    async fn a_digest_s_platform_is_the_one_any_of_its_entries_gives() {
        let f = fixture();
        let store = crate::sink::layout::LayoutStore::open(f.dir.path()).unwrap();
        let m = Digest::of(Algorithm::Sha256, &f.manifest);
        let mut entry = Descriptor::new(media::OCI_MANIFEST, m.clone(), f.manifest.len() as u64);
        entry
            .annotations
            .insert(image::REF_NAME.into(), "v2".into());
        entry.platform = Some(Platform::new("linux", "arm64", None));
        store.add_to_index(&entry).unwrap();
        let remote = LayoutRemote::new(f.dir.path());
        let listed = remote.listed_platform(&Object::Digest(m)).await;
        assert_eq!(listed, entry.platform);
    }

    #[tokio::test]
    async fn a_tag_written_on_the_layout_s_path_is_named() {
        let f = fixture();
        let dir = f.dir.path().display().to_string();
        for object in ["v1", "sha256:abc"] {
            let sep = if object == "v1" { ':' } else { '@' };
            let e = LayoutRemote::new(format!("{dir}{sep}{object}"))
                .check()
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound);
            // The spelling that works ends the message: the system's error after it,
            // `oci:DIR v1: No such file or directory`, read as if that spelling failed.
            assert!(
                e.to_string().ends_with(&format!(
                    "is not an OCI image layout: No such file or directory (os error 2); a \
                     tag or digest is the next argument: oci:{dir} {object}"
                )),
                "{e}"
            );
        }
        // No layout there either: nothing to suggest.
        let e = LayoutRemote::new("/nonexistent/dir:v1")
            .check()
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("next argument"), "{e}");
    }

    /// An `oci-layout` that is there but cannot be read (permission denied, an I/O error,
    /// here a symbolic link to itself) is told as that, naming the file and the cause:
    /// it was called no layout at all, as if the directory were another one.
    #[tokio::test]
    async fn an_unreadable_marker_is_not_called_a_missing_layout() {
        let f = fixture();
        let marker = f.dir.path().join("oci-layout");
        std::fs::remove_file(&marker).unwrap();
        std::os::unix::fs::symlink(&marker, &marker).unwrap();
        let e = LayoutRemote::new(f.dir.path()).check().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("reading {}", marker.display())),
            "{text}"
        );
        assert!(!text.contains("is not an OCI image layout"), "{text}");
        // Missing is still no layout.
        std::fs::remove_file(&marker).unwrap();
        let e = LayoutRemote::new(f.dir.path()).check().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(e.to_string().contains("is not an OCI image layout"), "{e}");
    }

    /// `oci://ghcr.io/team/chart`, as Helm and ORAS name a registry, names the layout
    /// directory `//ghcr.io/team/chart` here: missing, it is told the locator meant. It
    /// said only that no such directory is a layout.
    #[tokio::test]
    async fn a_helm_style_oci_url_is_told_the_locator_meant() {
        let e = LayoutRemote::new("//ghcr.io/team/chart")
            .check()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(
            e.to_string()
                .ends_with("write it without oci:// (ghcr.io/team/chart)"),
            "{e}"
        );
        // A path that names no registry is a path.
        let e = LayoutRemote::new("//nonexistent/dir")
            .check()
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("without oci://"), "{e}");
    }

    /// A manifest no entry lists, fetched by digest without a hint, is of the type its
    /// content says: it was reported as unknown. A blob that is no manifest stays unknown.
    #[tokio::test]
    async fn an_unlisted_manifest_is_of_the_type_its_content_says() {
        let f = fixture();
        let blob = Digest::of(Algorithm::Sha256, &f.blob);
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{blob}","size":{}}}]}}"#,
            media::OCI_MANIFEST,
            f.blob.len()
        );
        // An index without its own mediaType is known by its shape.
        let shaped = index.replace(r#""schemaVersion":2,"#, "");
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Env":["A=b"]}}"#;
        let remote = LayoutRemote::new(f.dir.path());
        for (content, expected) in [
            (f.manifest.clone(), Some(media::OCI_MANIFEST)),
            (index.into_bytes(), Some(media::OCI_INDEX)),
            (shaped.into_bytes(), Some(media::OCI_INDEX)),
            (config.to_vec(), None),
            (f.blob.clone(), None),
        ] {
            // Not listed: the fixture's index.json lists the manifest, which a layout
            // without it is asked for here.
            std::fs::write(
                f.dir.path().join("index.json"),
                r#"{"schemaVersion":2,"manifests":[]}"#,
            )
            .unwrap();
            let d = put(f.dir.path(), &content);
            let mut dl = remote
                .fetch(&Object::Digest(d), &Hints::default())
                .await
                .unwrap();
            assert_eq!(read(&mut dl).await.unwrap(), content);
            assert_eq!(
                dl.meta().media_type.as_deref(),
                expected,
                "{}",
                String::from_utf8_lossy(&content)
            );
        }
    }

    /// An `oci-layout` of another version, or not JSON, refuses the layout, naming the
    /// file and what it says: it was used as if it were 1.0.0 whatever it held.
    #[tokio::test]
    async fn a_marker_of_another_version_or_not_json_is_refused() {
        let f = fixture();
        let marker = f.dir.path().join("oci-layout");
        for (text, why) in [
            (
                r#"{"imageLayoutVersion":"2.0.0"}"#,
                "says version \"2.0.0\"",
            ),
            (r#"{"imageLayoutVersion":1}"#, "has no imageLayoutVersion"),
            ("{}", "has no imageLayoutVersion"),
            ("not json", "is not JSON"),
        ] {
            std::fs::write(&marker, text).unwrap();
            let e = LayoutRemote::new(f.dir.path()).check().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{text}: {e}");
            assert!(
                e.to_string()
                    .contains(&format!("{} {why}", marker.display())),
                "{text}: {e}"
            );
        }
        std::fs::write(&marker, r#"{"imageLayoutVersion":"1.1.0"}"#).unwrap();
        LayoutRemote::new(f.dir.path()).check().await.unwrap();
    }

    /// A blob's name held by a directory or a FIFO is a broken layout: said so, naming
    /// the path, instead of a size mismatch with the directory's own size, or an `open`
    /// that waits for a FIFO's writer forever.
    #[tokio::test]
    async fn a_blob_that_is_not_a_file_is_named_as_such() {
        let f = fixture();
        let remote = LayoutRemote::new(f.dir.path());
        let dir = Digest::of(Algorithm::Sha256, b"a directory");
        std::fs::create_dir(remote.blob_path(&dir)).unwrap();
        let fifo = Digest::of(Algorithm::Sha256, b"a fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(remote.blob_path(&fifo))
            .status()
            .unwrap();
        assert!(status.success());
        for (digest, size) in [(&dir, Some(11)), (&dir, None), (&fifo, None)] {
            let hints = Hints {
                size,
                ..Hints::default()
            };
            let object = Object::Digest(digest.clone());
            let fetched = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                remote.fetch(&object, &hints),
            )
            .await;
            let Ok(fetched) = fetched else {
                // A writer releases the blocked `open`, which the runtime would otherwise
                // wait for, and the test with it, when it shuts down.
                let _writer = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(remote.blob_path(&fifo));
                panic!("opening a FIFO waited for a writer");
            };
            let e = fetched.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Io, "{e}");
            let path = remote.blob_path(digest).display().to_string();
            assert!(e.to_string().contains(&path), "{e}");
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
    }

    /// A layout's path is no URL: `?` and `@` in it are part of the name, which errors
    /// show whole, where URL redaction cut the path at `?` (and for a relative path,
    /// dropped what came before an `@`).
    #[tokio::test]
    async fn errors_name_a_layout_path_as_it_is() {
        let f = fixture();
        let odd = f.dir.path().join("backup?v=2@team");
        std::fs::create_dir(&odd).unwrap();
        std::fs::write(odd.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let d = put(&odd, b"changed");
        std::fs::write(LayoutRemote::new(&odd).blob_path(&d), b"changes").unwrap();
        let remote = LayoutRemote::new(&odd);
        let mut dl = remote
            .fetch(&Object::Digest(d.clone()), &Hints::default())
            .await
            .unwrap();
        let e = read(&mut dl).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DigestMismatch);
        let path = remote.blob_path(&d).display().to_string();
        assert_eq!(e.url(), Some(path.as_str()), "{e}");
        let hints = Hints {
            size: Some(1),
            ..Hints::default()
        };
        let e = remote.fetch(&Object::Digest(d), &hints).await.unwrap_err();
        assert_eq!(e.url(), Some(path.as_str()), "{e}");
    }

    /// Every failure names its object, as a registry's do: a missing blob read "opening
    /// ./dir/blobs/…" alone, the object left off by a `?` that returned past the place
    /// that names it.
    #[tokio::test]
    async fn failures_name_their_object() {
        let f = fixture();
        let remote = LayoutRemote::new(f.dir.path());
        let absent = Object::Digest(Digest::of(Algorithm::Sha256, b"absent"));
        let tag = Object::Tag("nope".into());
        for object in [&absent, &tag] {
            let e = remote.fetch(object, &Hints::default()).await.unwrap_err();
            assert_eq!(e.object(), Some(object.to_string().as_str()), "fetch: {e}");
            let e = remote.resolve(object).await.unwrap_err();
            assert_eq!(
                e.object(),
                Some(object.to_string().as_str()),
                "resolve: {e}"
            );
        }
        let e = remote.fetch(&absent, &Hints::default()).await.unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("{absent}: opening ")),
            "{e}"
        );
    }

    /// A blob of another size than the one given says so with the size given, as the
    /// user gave it: a wrong hint is as likely a cause as the layout.
    #[tokio::test]
    async fn a_size_given_wrong_is_named() {
        let f = fixture();
        let remote = LayoutRemote::new(f.dir.path());
        let d = Object::Digest(Digest::of(Algorithm::Sha256, &f.blob));
        let wrong = f.blob.len() + 1;
        let hints = Hints::parse([format!("size:{wrong}").as_str()]).unwrap();
        let e = remote.fetch(&d, &hints).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeMismatch);
        let want = format!(
            "blob has {} bytes, expected {wrong} (the size given: size:{wrong}",
            f.blob.len()
        );
        assert!(e.to_string().contains(&want), "{e}");
    }

    #[tokio::test]
    async fn missing_and_corrupt_content_fail() {
        let f = fixture();
        let remote = LayoutRemote::new(f.dir.path());
        let e = remote
            .fetch(&Object::Tag("nope".into()), &Hints::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let absent = Object::Digest(Digest::of(Algorithm::Sha256, b"absent"));
        let e = remote.fetch(&absent, &Hints::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let d = Digest::of(Algorithm::Sha256, &f.blob);
        std::fs::write(remote.blob_path(&d), b"layer bytez").unwrap();
        let mut dl = remote
            .fetch(&Object::Digest(d), &Hints::default())
            .await
            .unwrap();
        assert_eq!(
            read(&mut dl).await.unwrap_err().kind(),
            ErrorKind::DigestMismatch
        );
        let hints = Hints {
            size: Some(3),
            ..Hints::default()
        };
        let d = Object::Digest(Digest::of(Algorithm::Sha256, &f.manifest));
        assert_eq!(
            remote.fetch(&d, &hints).await.unwrap_err().kind(),
            ErrorKind::SizeMismatch
        );
        // A tag's size is its entry's: the error names the index.json that says it.
        let e = remote
            .fetch(&Object::Tag("v1".into()), &hints)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeMismatch);
        let index = f.dir.path().join("index.json").display().to_string();
        assert!(e.to_string().contains(&index), "{e}");
        assert!(LayoutRemote::new(f.dir.path().join("no"))
            .check()
            .await
            .is_err());
    }

    /// `f`'s index.json with `extra` entries before its own, as another tool wrote it.
    fn with_entries(f: &Fixture, extra: &[serde_json::Value]) {
        let path = f.dir.path().join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let manifests = index["manifests"].as_array_mut().unwrap();
        for (i, e) in extra.iter().enumerate() {
            manifests.insert(i, e.clone());
        }
        std::fs::write(&path, index.to_string()).unwrap();
    }

    /// One entry dist cannot read (a malformed digest, a negative size, no object at all)
    /// leaves the others usable, as containerd and skopeo read the file (go-digest checks
    /// a digest only when it is used): it made every fetch from the layout fail, by
    /// digest too, and a worker's check refused the whole batch. Its own tag fails,
    /// saying why.
    #[tokio::test]
    async fn a_malformed_entry_leaves_the_others_usable() {
        let f = fixture();
        let name = |n: &str| serde_json::json!({ image::REF_NAME: n });
        let bad = serde_json::json!({"mediaType": media::OCI_MANIFEST,
            "digest": "sha256:ABC", "size": 7, "annotations": name("bad")});
        let x = Digest::of(Algorithm::Sha256, b"x");
        let negative = serde_json::json!({"mediaType": media::OCI_MANIFEST,
            "digest": x, "size": -1});
        let named_negative = serde_json::json!({"mediaType": media::OCI_MANIFEST,
            "digest": x, "size": -1, "annotations": name("minus")});
        with_entries(&f, &[bad, negative, serde_json::json!(7), named_negative]);
        let remote = LayoutRemote::new(f.dir.path());
        remote.check().await.unwrap();
        let mut d = remote
            .fetch(&Object::Tag("v1".into()), &Hints::default())
            .await
            .unwrap();
        assert_eq!(read(&mut d).await.unwrap(), f.manifest);
        let m = Object::Digest(Digest::of(Algorithm::Sha256, &f.manifest));
        let desc = remote.resolve(&m).await.unwrap();
        assert_eq!(desc.media_type, media::OCI_MANIFEST);
        assert_eq!(remote.entries().await.unwrap().len(), 1);

        let e = remote
            .fetch(&Object::Tag("bad".into()), &Hints::default())
            .await
            .unwrap_err();
        let index = f.dir.path().join("index.json").display().to_string();
        let said = e.to_string();
        assert!(
            said.contains(&format!(
                "the entry named \"bad\" in {index} cannot be used"
            )),
            "{said}"
        );
        assert!(said.contains("invalid digest \"sha256:ABC\""), "{said}");
        // A sha256 digest with a wrong size: the size is the reason, not the algorithm.
        let e = remote
            .fetch(&Object::Tag("minus".into()), &Hints::default())
            .await
            .unwrap_err();
        let said = e.to_string();
        assert!(
            said.contains(&format!(
                "the entry named \"minus\" in {index} cannot be used"
            )),
            "{said}"
        );
        assert!(!said.contains("algorithm"), "{said}");
        let e = remote
            .fetch(&Object::Tag("nope".into()), &Hints::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string().ends_with(&format!(
                "it lists v1, bad, {x} (no name), entry 3 (no name), minus"
            )),
            "{e}"
        );
    }

    /// A tag is its first entry, as skopeo reads it (and as the README says): an entry
    /// that cannot be used listed first under a tag is what the tag names, not a later
    /// usable one of the same name, which skopeo and containerd would never serve for it.
    #[tokio::test]
    async fn a_tag_is_its_first_entry_even_when_that_cannot_be_used() {
        let f = fixture();
        let named = |digest: &str| {
            serde_json::json!({"mediaType": media::OCI_MANIFEST, "digest": digest,
                "size": 7, "annotations": { image::REF_NAME: "v1" }})
        };
        let sha384 = format!("sha384:{}", "a".repeat(96));
        for first in ["sha256:ABC", sha384.as_str()] {
            let f = fixture();
            with_entries(&f, &[named(first)]);
            let remote = LayoutRemote::new(f.dir.path());
            let e = remote
                .fetch(&Object::Tag("v1".into()), &Hints::default())
                .await
                .unwrap_err();
            assert!(
                e.to_string().contains("the entry named \"v1\""),
                "{first}: {e}"
            );
        }
        // Listed after the usable one, it changes nothing.
        let path = f.dir.path().join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        index["manifests"]
            .as_array_mut()
            .unwrap()
            .push(named("sha256:ABC"));
        std::fs::write(&path, index.to_string()).unwrap();
        let remote = LayoutRemote::new(f.dir.path());
        let mut d = remote
            .fetch(&Object::Tag("v1".into()), &Hints::default())
            .await
            .unwrap();
        assert_eq!(read(&mut d).await.unwrap(), f.manifest);
    }

    /// `"manifests": null`, as Go writes an empty list, is a layout without entries.
    #[tokio::test]
    async fn null_manifests_are_none() {
        let f = fixture();
        let path = f.dir.path().join("index.json");
        std::fs::write(&path, r#"{"schemaVersion":2,"manifests":null}"#).unwrap();
        let remote = LayoutRemote::new(f.dir.path());
        remote.check().await.unwrap();
        let blob = Object::Digest(Digest::of(Algorithm::Sha256, &f.blob));
        let mut d = remote.fetch(&blob, &Hints::default()).await.unwrap();
        assert_eq!(read(&mut d).await.unwrap(), f.blob);
        let e = remote
            .fetch(&Object::Tag("v1".into()), &Hints::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().ends_with("it lists nothing"), "{e}");
    }
}
