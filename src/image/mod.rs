//! The OCI image model that `dist pull` walks: descriptors, manifests, indexes, platforms.
//!
//! Only what pulling needs is modelled. A descriptor keeps every field it does not know in
//! [`Descriptor::extra`], so an entry copied into `index.json` loses nothing. Manifests are
//! parsed from their exact fetched bytes and never written back out: blobs stay byte for byte
//! what the remote served, so their digests hold, and Docker media types stay Docker's.

pub mod platform;
pub mod reference;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{Download, MAX_MANIFEST_SIZE};
use crate::hints::Hints;
use crate::media;
use crate::reference::Object;
use crate::remote::Remote;

pub use platform::Platform;
pub use reference::ImageRef;

/// The annotation that names an image in an OCI layout's `index.json` (the tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The [`REF_NAME`] of an index entry as written, read from its JSON: an entry dist cannot
/// read as a [`Descriptor`] (another tool's, malformed) still has its name, for the tag
/// it answers and the entry a write replaces.
pub(crate) fn entry_ref_name(entry: &serde_json::Value) -> Option<&str> {
    entry.get("annotations")?.get(REF_NAME)?.as_str()
}

/// The annotation beside [`REF_NAME`] that names an image in full (`host/repository:tag`),
/// as containerd and BuildKit write it and containerd's import names images by: the tag
/// alone does not tell `a/redis:7` from `b/nginx:7`.
pub const IMAGE_NAME: &str = "io.containerd.image.name";

/// A reference to content: its media type, digest and size, and whatever else the producer
/// attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The media type of the referenced content. Empty when a descriptor leaves it out or
    /// gives it as `null`, against the spec, as Go's readers take it: an index entry is
    /// then read as the manifest its content declares.
    #[serde(rename = "mediaType", default, deserialize_with = "null_as_default")]
    pub media_type: String,
    /// The content's digest.
    #[serde(with = "digest_serde")]
    pub digest: Digest,
    /// The content's exact size in bytes: at most the largest int64, the spec's type for it.
    #[serde(deserialize_with = "int64_size")]
    pub size: u64,
    /// Where else the content may be found; a layer with `urls` is non-distributable.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub urls: Vec<String>,
    /// Annotations, such as [`REF_NAME`].
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// The platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Every other field, kept verbatim (`artifactType`, `data`, …).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Descriptor {
    /// A descriptor with just the three required fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            extra: serde_json::Map::new(),
        }
    }

    /// The same content, described by the three required fields only.
    pub fn bare(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.digest.clone(), self.size)
    }

    /// The [`REF_NAME`] annotation, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(REF_NAME).map(String::as_str)
    }

    /// Whether it names an `artifactType`: one given as `null` or `""` names none, as Go
    /// reads it (and as [`null_as_default`] reads the other optional fields).
    pub(crate) fn names_artifact_type(&self) -> bool {
        names_artifact_type(self.extra.get("artifactType"))
    }

    /// Whether this describes an index (OCI index or Docker manifest list).
    pub fn is_index(&self) -> bool {
        media::is_index(&self.media_type)
    }

    /// The worker's input line for this content: `{"digest","mediaType","size"}`.
    pub fn worker_line(&self) -> String {
        serde_json::json!({
            "digest": self.digest.to_string(),
            "mediaType": self.media_type,
            "size": self.size,
        })
        .to_string()
    }
}

/// A descriptor's `urls` as a message shows them. A manifest may list any number of URLs
/// of any length: a line on stderr shows as much as one long URL, as an error's URL does.
/// Each is redacted as an error's URL is: a layer kept in cloud storage may be listed by a
/// pre-signed URL, or one with a login, and these lines go to stderr and `--report` files.
pub(crate) fn urls_shown(urls: &[String]) -> String {
    let max = crate::error::MAX_URL_SHOWN;
    let mut shown = String::new();
    for url in urls {
        if shown.chars().count() > max {
            break;
        }
        if !shown.is_empty() {
            shown.push(' ');
        }
        shown.push_str(&crate::error::redact_url(url));
    }
    crate::server_text::cut_to(crate::server_text::printable(&shown).into_owned(), max)
}

fn names_artifact_type(field: Option<&serde_json::Value>) -> bool {
    field.is_some_and(|t| !t.is_null() && t.as_str() != Some(""))
}

/// A field given as JSON `null` takes its default, as Go's `encoding/json` reads it (the
/// registry, Docker, containerd, skopeo): tools that serialise every field of a record
/// write `"annotations": null`, and the images they push are pulled everywhere else.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What JSON that is no object is, by its first byte: serde reads an array as a record's
/// fields in order, and its error then names a field's type (`expected u64`), or names
/// dist's own type for a manifest's fields. `None` for text that is no JSON at all,
/// checked first: by its first byte alone, `404 page not found` was a JSON number.
fn json_kind(bytes: &[u8]) -> Option<&'static str> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).ok()?;
    match bytes.iter().find(|b| !b.is_ascii_whitespace())? {
        b'[' => Some("a JSON array"),
        b'"' => Some("a JSON string"),
        b'-' | b'0'..=b'9' => Some("a JSON number"),
        b't' | b'f' => Some("a JSON boolean"),
        b'n' => Some("JSON null"),
        _ => None,
    }
}

/// What a descriptor's `size` must be, in the words every refusal of one uses: a line of
/// `dist fetch -` as a manifest's entry.
pub(crate) fn size_rule() -> String {
    format!("a byte count from 0 to {} (an int64)", i64::MAX)
}

/// A descriptor's `size`: a byte count the spec types int64, so one past the largest
/// int64 is refused as a negative one is. Taken as a `u64`, such a size failed later and
/// elsewhere (an index entry for another platform spoiled the whole pull as more than
/// 64 MiB of manifests, a layer failed with an error naming neither it nor its manifest),
/// and what no size is was told as `expected u64`.
fn int64_size<'de, D>(d: D) -> std::result::Result<u64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct ByteCount;
    impl serde::de::Visitor<'_> for ByteCount {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(&size_rule())
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> std::result::Result<u64, E> {
            match i64::try_from(n) {
                Ok(_) => Ok(n),
                Err(_) => Err(E::invalid_value(serde::de::Unexpected::Unsigned(n), &self)),
            }
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> std::result::Result<u64, E> {
            u64::try_from(n).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
        }
    }
    d.deserialize_u64(ByteCount)
}

/// A field that is there, `null` included (`Some(None)`), as opposed to left out (`None`).
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

mod digest_serde {
    use crate::digest::Digest;

    pub fn serialize<S: serde::Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A parsed manifest: either a list of manifests (for several platforms), or one image.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Manifest {
    /// An OCI image index or Docker manifest list.
    Index(Vec<Descriptor>),
    /// An OCI image manifest or Docker schema 2 manifest.
    Image {
        /// The configuration blob (boxed: a descriptor is large, and an index is a list).
        config: Box<Descriptor>,
        /// The layers, base first.
        layers: Vec<Descriptor>,
    },
    /// An OCI artifact manifest of image-spec 1.1's release candidates
    /// ([`media::OCI_ARTIFACT_MANIFEST`]): blobs and no config, no image for any platform.
    /// Registries still hold the ones ORAS pushed, as entries of indexes beside images.
    Artifact {
        /// What it lists, in order.
        blobs: Vec<Descriptor>,
    },
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u64>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    /// Read one entry at a time: what an entry holds is no business of sniffing the
    /// index's type, and one entry dist cannot use must not make the others unreadable.
    /// `Some(None)` for `"manifests": null`, an index of none as Go writes its nil slice
    /// and reads it back; no index's shape, though, as Go's length of it is 0.
    #[serde(default, deserialize_with = "present")]
    manifests: Option<Option<Vec<serde_json::Value>>>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    /// An artifact manifest's; read only for one, so that no other kind of manifest is
    /// refused for a field of that name it has no business with.
    blobs: Option<serde_json::Value>,
    /// Docker schema 1's list of layers: read only to name schema 1 a body in its shape
    /// that leaves out its `schemaVersion`.
    #[serde(rename = "fsLayers")]
    fs_layers: Option<serde::de::IgnoredAny>,
}

/// An index entry dist cannot fetch: a digest in an algorithm dist does not verify
/// (`sha256+b64u:…`, which the image spec has pass validation), a malformed digest, a
/// negative size. containerd and skopeo read such an index and fail only when they must
/// fetch the entry (go-digest checks a digest on use), and so does `dist pull`: an entry
/// for another platform is no reason to refuse the one asked for.
#[derive(Debug)]
pub(crate) struct UnusableEntry {
    /// Its place in the index, from 0.
    pub position: usize,
    /// Its digest as written, when that is a digest by the OCI grammar (and so safe to
    /// show as it is).
    pub digest: Option<String>,
    /// Its media type; empty when it gives none.
    pub media_type: String,
    /// Its platform, when it gives one that reads.
    pub platform: Option<Platform>,
    /// Whether it gives a platform that does not read (a string, an architecture that is
    /// no string): one that names a platform, only not which, and so not an entry that
    /// names none, for which a pull takes what no entry names the platform of.
    pub platform_unreadable: bool,
    /// Whether it names an `artifactType`.
    pub artifact: bool,
    /// Why it cannot be fetched.
    pub why: Error,
}

impl UnusableEntry {
    /// The entry at `position` of an index as a descriptor, or what makes it unusable.
    pub(crate) fn read(
        position: usize,
        value: &serde_json::Value,
    ) -> std::result::Result<Descriptor, Box<Self>> {
        let e = match Descriptor::deserialize(value) {
            Ok(d) => return Ok(d),
            Err(e) => e,
        };
        let digest = value.get("digest").and_then(|d| d.as_str());
        let platform = value.get("platform").filter(|p| !p.is_null());
        let why = match digest.map(str::parse::<Digest>) {
            Some(Err(bad)) => bad,
            _ => Error::new(ErrorKind::Protocol, "malformed index entry").with_cause(e),
        };
        Err(Box::new(UnusableEntry {
            position,
            // One dist verifies counts too: the entry's size may be what is wrong.
            digest: digest
                .filter(|d| {
                    d.parse::<Digest>().is_ok() || Digest::unsupported_algorithm(d).is_some()
                })
                .map(|d| crate::server_text::cut_to(d.to_string(), 160)),
            media_type: value
                .get("mediaType")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            platform: platform.and_then(|p| Platform::deserialize(p).ok()),
            platform_unreadable: platform.is_some_and(|p| Platform::deserialize(p).is_err()),
            artifact: names_artifact_type(value.get("artifactType")),
            why,
        }))
    }

    /// Whether it is a manifest or an index by its media type (or gives none), not a blob.
    pub fn is_manifest(&self) -> bool {
        let t = media::essence(&self.media_type);
        t.is_empty() || media::is_manifest(t)
    }

    /// Whether it is an index by its media type.
    pub fn is_index(&self) -> bool {
        media::is_index(&self.media_type)
    }
}

impl Manifest {
    /// Parses content fetched by digest and verified: what it declares itself to be wins
    /// over the type its descriptor gave (an index entry may call an OCI manifest a Docker
    /// one, and the digest vouches for the content, not for the entry's label), which
    /// counts only when the content declares nothing.
    pub fn parse_verified(described: &str, bytes: &[u8]) -> Result<Manifest> {
        Manifest::parse_as(Some(described), bytes, true, false).map(|(m, _)| m)
    }

    /// As [`Manifest::parse_verified`], but an index's entries that dist cannot fetch are
    /// set apart instead of failing the whole index.
    pub(crate) fn parse_verified_leniently(
        described: &str,
        bytes: &[u8],
    ) -> Result<(Manifest, Vec<UnusableEntry>)> {
        Manifest::parse_as(Some(described), bytes, true, true)
    }

    /// Parses a manifest. `declared` is the media type it was served or referenced with;
    /// when both it and the content's own `mediaType` name a manifest kind they must agree,
    /// so that content cannot pass for something it is not.
    pub fn parse(declared: Option<&str>, bytes: &[u8]) -> Result<Manifest> {
        Manifest::parse_as(declared, bytes, false, false).map(|(m, _)| m)
    }

    fn parse_as(
        declared: Option<&str>,
        bytes: &[u8],
        own_wins: bool,
        lenient: bool,
    ) -> Result<(Manifest, Vec<UnusableEntry>)> {
        let bad = |why: String| Error::new(ErrorKind::Protocol, why);
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| match json_kind(bytes) {
                Some(kind) => bad(format!(
                    "not a manifest: {kind}, where a manifest is a JSON object"
                )),
                None => bad("not a manifest".into()).with_cause(e),
            })?;
        // `"manifests": null` is no index's field, as [`schema1`] reads it for the pull.
        let fields = (
            raw.fs_layers.is_some(),
            raw.config.is_some(),
            matches!(raw.manifests, Some(Some(_))),
        );
        if schema1_shaped(raw.schema_version, fields) {
            return Err(bad("Docker schema 1 manifests are not supported".into()));
        }
        let declared = declared
            .map(media::canonical)
            .filter(|t| media::is_manifest(t));
        let own = raw.media_type.as_deref().map(media::canonical);
        if let (Some(d), Some(o)) = (declared, own.filter(|t| media::is_manifest(t))) {
            if d != o && !own_wins {
                return Err(bad(format!("manifest served as {d} declares {o}")));
            }
        }
        let own = own.filter(|t| !t.is_empty());
        // Both shapes and no type of its own to say which (CVE-2021-41190): read as the
        // image its descriptor calls it, it is the index its shape says to every reader
        // that goes by the shape, dist's own record of its type included, and that index's
        // manifests are not fetched. containerd refuses it too.
        let lists = matches!(raw.manifests, Some(Some(_)));
        if own.is_none() && lists && (raw.config.is_some() || raw.layers.is_some()) {
            return Err(bad(
                "ambiguous manifest: both an index's \"manifests\" and an image's \"config\" \
                 or \"layers\", and no \"mediaType\" to say which it is"
                    .into(),
            ));
        }
        let kind = own.or(declared);
        let is_index = match kind {
            Some(t) if media::is_index(t) => true,
            Some(media::OCI_MANIFEST | media::DOCKER_MANIFEST) => false,
            Some(media::OCI_ARTIFACT_MANIFEST) => {
                let blobs = match raw.blobs {
                    Some(b) => Option::<Vec<Descriptor>>::deserialize(b)
                        .map_err(|e| bad("malformed artifact manifest".into()).with_cause(e))?
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                let artifact = Manifest::Artifact { blobs };
                return Ok((artifact, Vec::new()));
            }
            // A server's text, which sniff_media_type takes for none: named as it is, its
            // controls escaped, and not as a type dist might support.
            Some(t) if !media::well_formed(t) => {
                return Err(bad(format!(
                    "the manifest declares the mediaType {t:?}, which is no media type"
                )))
            }
            Some(t) => return Err(bad(format!("unsupported manifest type {t}"))),
            None if lists => true,
            None if raw.config.is_some() => false,
            None => return Err(bad("neither an index nor an image manifest".into())),
        };
        if is_index {
            let entries = raw
                .manifests
                .ok_or_else(|| bad("index without \"manifests\"".into()))?
                .unwrap_or_default();
            let mut manifests = Vec::with_capacity(entries.len());
            let mut unusable = Vec::new();
            for (position, value) in entries.iter().enumerate() {
                match UnusableEntry::read(position, value) {
                    Ok(d) => manifests.push(d),
                    Err(u) if lenient => unusable.push(*u),
                    Err(u) => return Err(bad("not a manifest".into()).with_cause(u.why)),
                }
            }
            return Ok((Manifest::Index(manifests), unusable));
        }
        let config = raw
            .config
            .ok_or_else(|| bad("image manifest without \"config\"".into()))?;
        let image = Manifest::Image {
            config: Box::new(config),
            layers: raw.layers.unwrap_or_default(),
        };
        Ok((image, Vec::new()))
    }
}

/// The media type of manifest content: its own `mediaType`, or, for an OCI manifest that
/// leaves it out, the OCI type its shape says. `None` for content that is no manifest.
///
/// A `mediaType` that is no media type counts as left out: it is a server's text, which
/// dist reports and records as the type, and it may hold anything a JSON string can (a
/// terminal's escape, a right-to-left override).
pub fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    let raw: RawManifest = serde_json::from_slice(bytes).ok()?;
    if let Some(t) = raw.media_type.as_deref().and_then(media::reported) {
        return Some(media::canonical(t).to_string());
    }
    if matches!(raw.manifests, Some(Some(_))) {
        Some(media::OCI_INDEX.to_string())
    } else if raw.config.is_some() {
        Some(media::OCI_MANIFEST.to_string())
    } else {
        None
    }
}

/// Whether `bytes` are a signed Docker schema 1 manifest: its digest is that of the
/// content without its `signatures`, so the bytes as served never match it.
pub(crate) fn is_signed_schema1(bytes: &[u8]) -> bool {
    schema1(bytes) == Some(true)
}

/// Whether `bytes` are a Docker schema 1 manifest, signed (`Some(true)`) or not: by its
/// `schemaVersion`, or by its shape when it leaves that out ([`schema1_shaped`]).
pub(crate) fn schema1(bytes: &[u8]) -> Option<bool> {
    use serde::de::IgnoredAny;
    #[derive(Deserialize)]
    struct Schema1 {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u64>,
        signatures: Option<IgnoredAny>,
        #[serde(rename = "fsLayers")]
        fs_layers: Option<IgnoredAny>,
        config: Option<IgnoredAny>,
        manifests: Option<IgnoredAny>,
    }
    serde_json::from_slice::<Schema1>(bytes)
        .ok()
        .filter(|m| {
            let fields = (
                m.fs_layers.is_some(),
                m.config.is_some(),
                m.manifests.is_some(),
            );
            schema1_shaped(m.schema_version, fields)
        })
        .map(|m| m.signatures.is_some())
}

/// Whether a manifest of `schemaVersion` `version` with `(fsLayers, config, manifests)`
/// is Docker schema 1: its version says so, or, left out, schema 1's `fsLayers` with no
/// field of schema 2's. Without it, such a body was "neither an index nor an image
/// manifest", and an index's entry so stopped every platform's pull.
fn schema1_shaped(
    version: Option<u64>,
    (fs_layers, config, manifests): (bool, bool, bool),
) -> bool {
    version == Some(1) || (version.is_none() && fs_layers && !config && !manifests)
}

/// Reads a download to its end, verified, refusing more than `limit` bytes: at once when
/// its declared size says so.
pub async fn read_to_end(download: &mut Download, limit: u64) -> Result<Vec<u8>> {
    // A digest that names a blob (a layer of gigabytes) is no manifest to read the first
    // `limit` bytes of before saying so.
    if let Some(size) = download.meta().size.filter(|&size| size > limit) {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!("{size} bytes, larger than any manifest ({limit} bytes at most)"),
        )
        .with_object(&download.meta().object)
        .with_url(&download.meta().url));
    }
    let mut out = Vec::new();
    while let Some(chunk) = download.chunk().await? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("manifest larger than {limit} bytes"),
            )
            .with_object(&download.meta().object)
            .with_url(&download.meta().url));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Resolves `object` by fetching the manifest it names and describing what arrived: the
/// fallback for remotes that cannot describe content without sending it.
pub async fn resolve_by_fetch<R: Remote + ?Sized>(
    remote: &R,
    object: &Object,
) -> Result<Descriptor> {
    fetch_manifest(remote, object)
        .await
        .map(|fetched| fetched.descriptor)
}

/// A manifest or index [`fetch_manifest`] fetched, whole and verified.
#[derive(Clone)]
#[non_exhaustive]
pub struct FetchedManifest {
    /// What arrived: the media type its content declares (or, for an OCI manifest that
    /// leaves `mediaType` out, the one its shape says), the digest it verified against
    /// (for a tag, the digest of what the tag named at that moment: fetch that digest to
    /// get the same content again), and its size. Not what the server's `Content-Type`
    /// said.
    pub descriptor: Descriptor,
    /// The content, byte for byte as it hashed to the descriptor's digest (what a
    /// signature covers): parse it with [`FetchedManifest::parse`].
    pub bytes: Vec<u8>,
}

/// The descriptor and the content's length: a manifest's bytes (up to 4 MiB) printed as a
/// list of numbers would bury the rest of a log line.
impl std::fmt::Debug for FetchedManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedManifest")
            .field("descriptor", &self.descriptor)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

impl FetchedManifest {
    /// The manifest or index the content is, by the media type it declares.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Protocol`] for content dist cannot read as a manifest: one not of
    /// the shape its type says (a malformed descriptor), or a Docker schema 1 manifest,
    /// which is not supported.
    pub fn parse(&self) -> Result<Manifest> {
        Manifest::parse(Some(&self.descriptor.media_type), &self.bytes)
    }
}

/// Fetches the manifest or index `object` (a tag or a digest) names, whole and verified
/// (at most [`MAX_MANIFEST_SIZE`]), with its descriptor ([`FetchedManifest`]):
///
/// ```no_run
/// # async fn demo(remote: &dist::registry::RegistryRemote) -> dist::Result<()> {
/// use dist::image::{fetch_manifest, Manifest};
///
/// let fetched = fetch_manifest(remote, &"v1".parse()?).await?;
/// println!("v1 is {}", fetched.descriptor.digest);
/// match fetched.parse()? {
///     Manifest::Image { config, layers } => { /* fetch them */ }
///     Manifest::Index(entries) => { /* pick one, fetch it by its digest */ }
///     _ => {}
/// }
/// # Ok(()) }
/// ```
///
/// A body that broke where it cannot be resumed (a tag the registry announced no digest
/// for) is fetched again whole, on the retries left.
///
/// # Errors
///
/// What [`Remote::fetch`] and [`Download::chunk`] return ([`ErrorKind::NotFound`] for a
/// tag or digest the repository lacks, [`ErrorKind::Unauthorized`],
/// [`ErrorKind::DigestMismatch`], a transient failure past the retries, …);
/// [`ErrorKind::TooLarge`] for content past [`MAX_MANIFEST_SIZE`]; and
/// [`ErrorKind::Protocol`] for content that is no manifest (a blob's digest, an HTML page
/// served as a manifest).
pub async fn fetch_manifest<R: Remote + ?Sized>(
    remote: &R,
    object: &Object,
) -> Result<FetchedManifest> {
    // Every manifest type as a hint sends a digest to the manifests endpoint first; the
    // media type is then read from the content, not from the hint.
    let hints = Hints {
        media_types: media::DEFAULT_MANIFEST_ACCEPT
            .iter()
            .map(|t| t.to_string())
            .collect(),
        ..Hints::default()
    };
    // Held in memory to the end: a body that broke beyond a resume is fetched again
    // whole, on the retries it left (see `Error::restart`).
    let mut failures = 0;
    let (download, bytes) = loop {
        let mut download = remote
            .fetch(object, &hints.after_failures(1, failures))
            .await?;
        match read_to_end(&mut download, MAX_MANIFEST_SIZE).await {
            Ok(bytes) => break (download, bytes),
            Err(e) => match e.restart() {
                Some(n) => failures = n,
                None => return Err(e),
            },
        }
    };
    let media_type = sniff_media_type(&bytes).ok_or_else(|| {
        Error::new(ErrorKind::Protocol, "content is not a manifest")
            .with_object(object)
            .with_url(&download.meta().url)
    })?;
    let digest = download
        .digest()
        .expect("a download read to its end is verified")
        .clone();
    let size = bytes.len() as u64;
    Ok(FetchedManifest {
        descriptor: Descriptor::new(media_type, digest, size),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn d(data: &[u8]) -> String {
        Digest::of(Algorithm::Sha256, data).to_string()
    }

    /// A fetched manifest's `Debug` names its descriptor and its length, not every byte.
    #[test]
    fn a_fetched_manifest_debugs_as_its_descriptor_and_length() {
        let bytes = br#"{"schemaVersion":2,"layers":[]}"#.to_vec();
        let descriptor = Descriptor::new(media::OCI_MANIFEST, d(&bytes).parse().unwrap(), 31);
        let shown = format!("{:?}", FetchedManifest { descriptor, bytes });
        assert!(
            shown.contains(&d(br#"{"schemaVersion":2,"layers":[]}"#)),
            "{shown}"
        );
        assert!(
            shown.contains("<31 bytes>") && !shown.contains("123, 34"),
            "{shown}"
        );
    }

    /// A descriptor's `size` that is no int64 byte count (negative, fractional, past the
    /// largest int64) is told so in those words, where serde's were `expected u64`.
    #[test]
    fn a_size_that_is_no_byte_count_says_what_a_size_is() {
        for size in ["-1", "1.5", "1e30", "9223372036854775808"] {
            let text = format!(
                r#"{{"mediaType":"a/b","digest":"{}","size":{size}}}"#,
                d(b"a")
            );
            let e = serde_json::from_str::<Descriptor>(&text).unwrap_err();
            let said = e.to_string();
            assert!(
                said.contains("expected a byte count from 0 to 9223372036854775807")
                    && !said.contains("u64"),
                "{size}: {said}"
            );
        }
        let text = format!(
            r#"{{"mediaType":"a/b","digest":"{}","size":{}}}"#,
            d(b"a"),
            i64::MAX
        );
        assert_eq!(
            serde_json::from_str::<Descriptor>(&text).unwrap().size,
            i64::MAX as u64
        );
    }

    /// JSON that is no object is said to be so: an array was read as a record's fields
    /// in order (`invalid type: map, expected u64`), and a string named dist's own type
    /// for a manifest's fields (`expected struct RawManifest`).
    #[test]
    fn json_that_is_no_object_is_said_to_be_none() {
        for (text, what) in [
            (&br#" [{"a":1}]"#[..], "a JSON array"),
            (br#""hello""#, "a JSON string"),
            (b"2", "a JSON number"),
        ] {
            let e = Manifest::parse(Some(media::OCI_MANIFEST), text).unwrap_err();
            let said = e.to_string();
            assert!(
                said.contains("not a manifest")
                    && said.contains(what)
                    && !said.contains("u64")
                    && !said.contains("RawManifest"),
                "{said}"
            );
        }
    }

    /// Text that is no JSON is not named a kind of JSON by its first byte: Go's
    /// `404 page not found`, served with a 200 by a proxy, was called a JSON number, and
    /// `nothing here` JSON null.
    #[test]
    fn text_that_is_no_json_is_named_no_kind_of_json() {
        for text in [
            &b"404 page not found"[..],
            b"nothing here",
            b"true story",
            b"[unclosed",
            br#""unterminated"#,
        ] {
            let e = Manifest::parse(Some(media::OCI_MANIFEST), text).unwrap_err();
            let said = e.to_string();
            assert!(
                said.contains("not a manifest")
                    && !said.contains("a JSON")
                    && !said.contains("JSON null"),
                "{said}"
            );
        }
    }

    #[test]
    fn descriptor_round_trip_keeps_unknown_fields() {
        let text = format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":7,"platform":{{"architecture":"arm","os":"linux","variant":"v7","features":["x"]}},"artifactType":"a/b","annotations":{{"k":"v"}}}}"#,
            d(b"m")
        );
        let desc: Descriptor = serde_json::from_str(&text).unwrap();
        assert_eq!(desc.size, 7);
        assert_eq!(desc.extra["artifactType"], "a/b");
        assert_eq!(desc.platform.as_ref().unwrap().extra["features"][0], "x");
        let again: Descriptor =
            serde_json::from_str(&serde_json::to_string(&desc).unwrap()).unwrap();
        assert_eq!(again, desc);
        assert!(!desc.is_index());
        let bare = serde_json::to_value(desc.bare()).unwrap();
        assert_eq!(bare.as_object().unwrap().len(), 3);
        let line: serde_json::Value = serde_json::from_str(&desc.worker_line()).unwrap();
        assert_eq!(line["digest"], d(b"m"));
    }

    #[test]
    fn descriptor_without_media_type_reads_as_empty() {
        let text = format!(r#"{{"digest":"{}","size":1}}"#, d(b"a"));
        let desc: Descriptor = serde_json::from_str(&text).unwrap();
        assert_eq!(desc.media_type, "");
    }

    #[test]
    fn descriptor_rejects_bad_digest() {
        let text = r#"{"mediaType":"a/b","digest":"md5:00","size":1}"#;
        assert!(serde_json::from_str::<Descriptor>(text).is_err());
    }

    #[test]
    fn parses_index_and_image() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":3,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            media::OCI_INDEX,
            media::OCI_MANIFEST,
            d(b"a")
        );
        match Manifest::parse(Some(media::OCI_INDEX), index.as_bytes()).unwrap() {
            Manifest::Index(m) => assert_eq!(m[0].platform.as_ref().unwrap().architecture, "amd64"),
            other => panic!("{other:?}"),
        }
        // An entry whose platform lacks `os`, against the spec, spoils no other entry.
        let careless = index.replace(r#""os":"linux""#, "");
        let careless = careless.replace(r#""amd64","#, r#""amd64""#);
        match Manifest::parse(Some(media::OCI_INDEX), careless.as_bytes()).unwrap() {
            Manifest::Index(m) => assert_eq!(m[0].platform.as_ref().unwrap().os, ""),
            other => panic!("{other:?}"),
        }
        // An OCI manifest may omit mediaType; its shape and the declared type decide.
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"c/d","digest":"{}","size":1}},"layers":[]}}"#,
            d(b"c")
        );
        assert!(matches!(
            Manifest::parse(None, image.as_bytes()).unwrap(),
            Manifest::Image { .. }
        ));
        assert_eq!(
            sniff_media_type(image.as_bytes()).as_deref(),
            Some(media::OCI_MANIFEST)
        );
        assert_eq!(
            sniff_media_type(index.as_bytes()).as_deref(),
            Some(media::OCI_INDEX)
        );
        assert_eq!(sniff_media_type(b"[1]"), None);
        let garbled = image.replacen(
            r#""schemaVersion":2"#,
            r#""schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json\u009b\u202e""#,
            1,
        );
        assert_eq!(
            sniff_media_type(garbled.as_bytes()).as_deref(),
            Some(media::OCI_MANIFEST)
        );
    }

    /// Go reads a `null` string as empty, and an index entry whose type is `null` is an
    /// entry without one, not an entry dist cannot use.
    #[test]
    fn a_media_type_of_null_is_none_given() {
        let entry = r#"{"mediaType":null,"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}"#;
        let d: Descriptor = serde_json::from_str(entry).unwrap();
        assert_eq!(d.media_type, "");
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{entry}]}}"#);
        let Manifest::Index(entries) =
            Manifest::parse(Some(media::OCI_INDEX), index.as_bytes()).unwrap()
        else {
            panic!("not an index");
        };
        assert_eq!(entries, [d]);
    }

    /// Go writes an index without entries, its nil slice, as `"manifests": null`, and
    /// reads that back as empty: it was refused as an index without "manifests".
    #[test]
    fn manifests_of_null_are_none() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":null}}"#,
            media::OCI_INDEX
        );
        let parsed = Manifest::parse_verified(media::OCI_INDEX, index.as_bytes()).unwrap();
        assert_eq!(parsed, Manifest::Index(Vec::new()));
        assert_eq!(
            sniff_media_type(index.as_bytes()).as_deref(),
            Some(media::OCI_INDEX)
        );
        // Null is no shape: beside a config, and no type to say which, it is an image.
        let image = format!(
            r#"{{"schemaVersion":2,"manifests":null,"config":{{"mediaType":"c/d","digest":"{}","size":1}}}}"#,
            d(b"c")
        );
        assert!(matches!(
            Manifest::parse(None, image.as_bytes()),
            Ok(Manifest::Image { .. })
        ));
        // Left out, it is still what an index cannot do without.
        let missing = format!(r#"{{"mediaType":"{}"}}"#, media::OCI_INDEX);
        assert!(Manifest::parse(None, missing.as_bytes()).is_err());
    }

    #[test]
    fn sniffs_an_index_whatever_its_entries_hold() {
        // Valid by the image spec's grammar, unverifiable by dist, and none of the
        // sniffing's business: `dist resolve` of such an index said "content is not a
        // manifest" when the registry's HEAD told it nothing.
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564","size":-1}}]}}"#,
            media::OCI_MANIFEST
        );
        assert_eq!(
            sniff_media_type(index.as_bytes()).as_deref(),
            Some(media::OCI_INDEX)
        );
    }

    /// Without a `mediaType` of its own, a document of both shapes is refused whatever it
    /// is called; one that states its type is what it says.
    #[test]
    fn a_document_of_both_shapes_needs_its_own_type() {
        let config = format!(r#"{{"mediaType":"c/d","digest":"{}","size":1}}"#, d(b"c"));
        let both = format!(r#"{{"schemaVersion":2,"config":{config},"layers":[],"manifests":[]}}"#);
        for declared in [Some(media::OCI_MANIFEST), Some(media::OCI_INDEX), None] {
            let e = Manifest::parse(declared, both.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("ambiguous"), "{declared:?}: {e}");
            let e = Manifest::parse_verified(declared.unwrap_or(""), both.as_bytes());
            assert!(e.is_err(), "{declared:?}");
        }
        let stated = both.replacen(
            '{',
            &format!(r#"{{"mediaType":"{}","#, media::OCI_MANIFEST),
            1,
        );
        assert!(matches!(
            Manifest::parse_verified(media::OCI_MANIFEST, stated.as_bytes()),
            Ok(Manifest::Image { .. })
        ));
    }

    #[test]
    fn refuses_confusion_and_unsupported_kinds() {
        let list = format!(r#"{{"mediaType":"{}","manifests":[]}}"#, media::OCI_INDEX);
        let e = Manifest::parse(Some(media::DOCKER_MANIFEST), list.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(e.to_string().contains("declares"), "{e}");
        // Fetched by digest and verified, the content's own type wins over its label.
        let verified = Manifest::parse_verified(media::DOCKER_MANIFEST, list.as_bytes());
        assert!(matches!(verified, Ok(Manifest::Index(m)) if m.is_empty()));
        let unlabelled = br#"{"config":{"mediaType":"a/b","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}}"#;
        let by_label = Manifest::parse_verified(media::OCI_INDEX, unlabelled).unwrap_err();
        assert!(
            by_label.to_string().contains("without \"manifests\""),
            "{by_label}"
        );
        assert!(Manifest::parse(None, br#"{"schemaVersion":1}"#).is_err());
        assert!(Manifest::parse(None, br#"{"schemaVersion":2}"#).is_err());
        assert!(Manifest::parse(None, b"not json").is_err());
        let index_without_list = format!(r#"{{"mediaType":"{}"}}"#, media::OCI_INDEX);
        assert!(Manifest::parse(None, index_without_list.as_bytes()).is_err());
    }

    /// A manifest whose own `mediaType` is no media type (a C1 CSI, a right-to-left
    /// override in it) is refused as that, the controls escaped: "unsupported manifest
    /// type" named it with spaces for the controls, which read as a type dist could
    /// support, while fetch and resolve report the manifest as its shape says.
    #[test]
    fn a_manifest_type_that_is_no_media_type_is_refused_as_that() {
        let garbled = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json\u009b31m\u202ex","config":{"mediaType":"a/b","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        let e = Manifest::parse_verified(media::DOCKER_MANIFEST, garbled.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(
            e.to_string().contains(
                r#"mediaType "application/vnd.docker.distribution.manifest.v2+json\u{9b}31m\u{202e}x", which is no media type"#
            ),
            "{e}"
        );
    }

    /// A body in schema 1's shape that leaves out `schemaVersion` is refused as schema 1,
    /// as one that has it is: it read "neither an index nor an image manifest", leaving a
    /// user to wonder what it was.
    #[test]
    fn schema_1_shape_without_its_version_is_named_schema_1() {
        let body = br#"{"name":"library/busybox","tag":"latest","architecture":"amd64","fsLayers":[{"blobSum":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}],"history":[{"v1Compatibility":"{}"}]}"#;
        for declared in [None, Some(media::OCI_MANIFEST)] {
            let e = Manifest::parse(declared, body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            let said = e.to_string();
            assert!(said.contains("Docker schema 1"), "{declared:?}: {said}");
        }
        // A schema 2 manifest that happens to carry a field of that name is still read.
        let image = br#"{"schemaVersion":2,"fsLayers":[],"config":{"mediaType":"a/b","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        assert!(Manifest::parse(None, image).is_ok());
    }

    /// Go writes a nil slice as `null`: `"manifests": null` beside schema 1's `fsLayers`
    /// is no index's field (as an index of none it has no index's shape either). The pull
    /// asked of an entry ([`schema1`]) took it for schema 1, and parsing it did not:
    /// "neither an index nor an image manifest", or "image manifest without \"config\""
    /// for an entry called an image.
    #[test]
    fn schema_1_shape_with_null_schema_2_fields_is_schema_1_to_both_readers() {
        let body = br#"{"name":"team/app","tag":"v1","fsLayers":[],"history":[],"manifests":null,"config":null}"#;
        assert_eq!(schema1(body), Some(false));
        for declared in [None, Some(media::OCI_MANIFEST)] {
            let said = Manifest::parse(declared, body).unwrap_err().to_string();
            assert!(said.contains("Docker schema 1"), "{declared:?}: {said}");
        }
    }
}
