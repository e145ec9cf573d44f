//! `dist pull`: a whole image into an OCI image layout, on top of the worker.
//!
//! The image is walked level by level: the top manifest; for an index, the manifests of the
//! chosen platforms (nested indexes included); then every config and layer at once, with
//! any blobs an index lists among its manifests (a build cache's layers). Each
//! level is one run of the [worker] over descriptor lines, so fetching,
//! verification, retries, the already-present check and the report are the worker's own,
//! and every level shares the remote's connection pool and token. A manifest found in the
//! store is hashed again before it is parsed; one fetched, once the worker verified it. The
//! manifests fetched are held in memory until the walk has read them all (and, for one
//! platform, found its image), so that a pull stopped there, or an index without the
//! platform, leaves nothing behind.
//!
//! `index.json` is updated last, and only when every object is in place, so that an entry
//! always names a complete image — apart from non-distributable layers (those with `urls`),
//! which are reported as skipped and not fetched, as skopeo and containerd do by default.
//!
//! Which descriptor `index.json` gets: for one platform out of an index, that platform's
//! manifest as the index lists it (`platform` included), because the other platforms' blobs
//! are not there; with all platforms, or for an image that is no index, the top descriptor.
//! An entry of the same name for the whole index, there already, stays instead: its blobs
//! are all there, and it names the other platforms too.

pub mod event;
mod held;

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::MAX_MANIFEST_SIZE;
use crate::image::{Descriptor, Manifest, Platform, UnusableEntry, IMAGE_NAME, REF_NAME};
use crate::reference::Object;
use crate::remote::Remote;
use crate::setting::Setting;
use crate::sink::index::Added;
use crate::sink::layout::LayoutStore;
use crate::worker::{self, Destination, Outcome, Status, WorkerOptions};

pub use event::Event;

/// Indexes nested deeper than this are refused.
const MAX_DEPTH: usize = 8;

/// The most descriptors the walk holds: index entries and every image's config and
/// layers, repeats included. Each manifest is capped in size, but not their number: an
/// index of 4 MiB lists some 20,000 manifests or nested indexes, each of which may list
/// 20,000 more, and a registry can send such manifests gzip-coded for a few KiB each, so
/// memory would grow with what a hostile registry makes up, not with any real image
/// (whose indexes list tens of platforms, and whose manifests tens of layers).
pub const MAX_DESCRIPTORS: usize = 100_000;

/// The most bytes of manifests and indexes one pull fetches, by their descriptors' sizes,
/// checked before a level is fetched. Each is capped at 4 MiB, but an index may list
/// 20,000 of them: some 80 GB on disk for a few hundred KB of index, the more so as a
/// registry may send them gzip-coded. A real image's manifests come to KiB, or a few MiB
/// with attestations.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Which platforms of a multi-platform image to pull.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Platforms {
    /// The index entry that fits this platform best ([`Platform::fit`]), the first of
    /// equals, in whichever of the image's indexes lists it.
    One(Platform),
    /// Every entry of every index.
    All,
}

/// How to pull.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PullOptions {
    /// Which platforms.
    pub platforms: Platforms,
    /// Concurrent fetches at most.
    pub jobs: usize,
    /// Re-hash configs and layers already present before trusting them (manifests always are).
    pub verify_existing: bool,
    /// Counters for a progress display, shared by every level of the pull. The total grows
    /// as levels are found; it is final once the configs and layers are being fetched.
    pub progress: Option<Arc<worker::progress::Progress>>,
    /// The image's full name (`host/repository:tag`, [`crate::image::ImageRef::image_name`]),
    /// recorded beside the tag as [`IMAGE_NAME`] so that an entry says which repository's
    /// tag it is; no annotation when `None`.
    pub image_name: Option<String>,
    /// Whether a pull that fails syncs the objects it reported stored before it returns its
    /// error (the default). `false` returns the error at once, their sync left to the
    /// caller ([`LayoutStore::sync`]): `dist pull` says the error first, since a stop
    /// during a sync that does not return (a hung disk) dropped it unsaid.
    pub sync_after_error: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platforms: Platforms::One(Platform::host()),
            jobs: worker::DEFAULT_JOBS,
            verify_existing: false,
            progress: None,
            image_name: None,
            sync_after_error: true,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Pulled {
    /// The entry `index.json` names the image by: the one added, or the whole index's
    /// entry already there for a pull of one of its platforms; `None` when an object
    /// failed and the index was left alone.
    pub entry: Option<Descriptor>,
    /// Objects fetched and verified.
    pub fetched: usize,
    /// Objects already in the layout.
    pub existing: usize,
    /// Non-distributable layers not fetched.
    pub skipped: usize,
    /// Objects that failed (each was reported as an [`Event`]).
    pub failed: usize,
    /// For an image that is no index, or one taken from an index whose entry names no
    /// platform, the platform its config declares: nothing said which platform it was
    /// for, so the caller may warn when it differs (as Docker and podman do).
    pub image_platform: Option<Platform>,
    /// Whether that image came out of an index (its entry naming no platform).
    pub image_platform_unlisted: bool,
    /// The entries of the same name `entry` took the place of in `index.json`: a tag that
    /// moved, or (by their [`IMAGE_NAME`]) another repository's image of the same tag,
    /// whose blobs stay but which the layout no longer names.
    pub replaced: Vec<Descriptor>,
}

/// Pulls the image `object` names from `remote` into `store`, reporting every object to
/// `on_event` as it settles, a manifest fetched once it is stored, after the walk (an
/// error from `on_event` stops the pull). `ref_name` is the
/// name recorded in `index.json` (the tag). A failed object does not stop the others; it
/// is counted in [`Pulled::failed`], and `index.json` is then not touched; so is an index
/// entry to be pulled that cannot be fetched (a digest in an algorithm dist does not
/// verify, a malformed one), while others of that index stay readable. Errors are what
/// stops the pull as a whole: the reference does not resolve (the remote's kinds:
/// [`ErrorKind::NotFound`], `Unauthorized`, `Denied`, `Connect`, …), a manifest is
/// malformed (`Protocol`) or too large (`TooLarge`), no entry matches the platform
/// (`NotFound` too: its message lists the platforms offered), `index.json` cannot be
/// written (`Io`), or `on_event` failed (its error, as it was). Whatever it returns, the
/// objects it reported stored are durable under their names first ([`LayoutStore::sync`];
/// after an error, a sync that fails is logged, the error returned the one that stopped
/// it), unless [`PullOptions::sync_after_error`] leaves that sync to the caller. Dropped
/// (a stop), it syncs nothing. Like the worker, it runs
/// on any tokio runtime with the blocking pool (file work goes there; large objects are
/// hashed and written on threads of their own).
pub async fn pull<F>(
    remote: Arc<dyn Remote>,
    object: &Object,
    ref_name: Option<&str>,
    store: &LayoutStore,
    opts: &PullOptions,
    on_event: F,
) -> Result<Pulled>
where
    F: FnMut(Event) -> Result<()>,
{
    let walk = Walk {
        remote,
        store,
        opts,
        on_event,
        line: 0,
        listed: 0,
        manifest_bytes: 0,
        seen: HashSet::new(),
        held: Vec::new(),
        pulled: Pulled::default(),
    };
    let pulled = walk.run(object, ref_name).await;
    if let (Err(e), true) = (&pulled, opts.sync_after_error) {
        // Stopped by an error (`on_event` failing, a malformed manifest met after the
        // objects before it were stored): the objects reported stored are relied on,
        // their names made durable as the worker makes them when its output fails. Only
        // `index.json`'s update synced them, and a power loss could take them back. Nothing
        // to do when none was stored, or they were synced already.
        let store = store.clone();
        let synced = crate::blocking::run("syncing the layout failed", move || store.sync());
        if let Err(unsynced) = synced.await {
            tracing::error!(
                error = %unsynced,
                stopped_by = %e,
                "the objects this pull stored may not keep their names after a power loss"
            );
        }
    }
    pulled
}

/// What the manifests of an image lead to.
struct Found {
    /// The image manifests chosen.
    images: Vec<Image>,
    /// Blobs that indexes list among their manifests, such as a build cache's layers.
    listed_blobs: Vec<Descriptor>,
    /// The platforms the indexes offered (for the message when none matches).
    offered: Offered,
    /// Whether an index listed artifacts that name no platform, which no platform takes.
    artifacts: bool,
}

/// An image manifest reached by the walk.
struct Image {
    descriptor: Descriptor,
    config: Box<Descriptor>,
    layers: Vec<Descriptor>,
}

struct Walk<'a, F> {
    remote: Arc<dyn Remote>,
    store: &'a LayoutStore,
    opts: &'a PullOptions,
    on_event: F,
    /// Objects reported so far; report lines count across levels, numbered as they are
    /// reported so that the manifests held and never reported leave no gap.
    line: u64,
    /// Descriptors read out of manifests so far (see [`MAX_DESCRIPTORS`]).
    listed: usize,
    /// Declared sizes of the manifests and indexes fetched so far (see
    /// [`MAX_MANIFEST_BYTES`]).
    manifest_bytes: u64,
    /// Every digest queued once with each size it is listed with: shared layers and
    /// repeated entries are fetched once, and a digest listed with two sizes (one of them
    /// wrong) once with each, as the worker fetches such lines: by its digest alone, the
    /// listing that came first decided whether the pull failed or the blob was stored.
    seen: HashSet<(Digest, u64)>,
    /// Manifests fetched and not stored yet (see [`held`]).
    held: Vec<held::Held>,
    pulled: Pulled,
}

impl<F: FnMut(Event) -> Result<()>> Walk<'_, F> {
    async fn run(mut self, object: &Object, ref_name: Option<&str>) -> Result<Pulled> {
        self.more_levels(true);
        let mut top = self.remote.resolve(object).await?;
        if let Object::Digest(d) = object {
            if top.digest != *d {
                // Named as any failed object is: which one, and where it was read.
                let e = Error::new(
                    ErrorKind::DigestMismatch,
                    format!("it resolved to another manifest, {}", top.digest),
                )
                .with_object(d);
                return Err(match self.remote.manifest_location(d) {
                    Some(at) => e.with_url(at),
                    None => e,
                });
            }
        }
        let top_digest = top.digest.clone();
        // Asked now, and of the digest resolved, not of the tag: the source's tag may move
        // while the pull runs, to another platform's image.
        let listed_platform = self
            .remote
            .listed_platform(&Object::Digest(top_digest.clone()))
            .await;
        let Found {
            images,
            mut listed_blobs,
            offered,
            artifacts,
        } = self.manifests(&mut top).await?;
        if images.is_empty() && self.pulled.failed == 0 {
            if let Platforms::One(want) = &self.opts.platforms {
                // The tag names the artifact itself: there is no index to offer platforms,
                // and "the index lists" would send the reader looking for one.
                if crate::media::is(&top.media_type, crate::media::OCI_ARTIFACT_MANIFEST) {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "no manifest for {} in {}: it is an artifact manifest (a \
                             signature, an SBOM), no platform's image: {} pulls it",
                            want.as_looked_for(),
                            top.digest,
                            Setting::AllPlatforms
                        ),
                    )
                    .with_object(object));
                }
                let mut offered = offered.to_string();
                if !listed_blobs.is_empty() {
                    offered.push_str(&format!(
                        "; the index lists blobs, not images (a build cache?): {} pulls them",
                        Setting::AllPlatforms
                    ));
                } else if artifacts {
                    offered.push_str(&format!(
                        "; the index lists artifacts without a platform (signatures, \
                         SBOMs): {} pulls them",
                        Setting::AllPlatforms
                    ));
                }
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no manifest for {} in {}; platforms: {offered}",
                        want.as_looked_for(),
                        top.digest
                    ),
                )
                .with_object(object));
            }
        }
        // One platform's image does not include what its index lists beside it.
        if matches!(self.opts.platforms, Platforms::One(_)) {
            listed_blobs.clear();
        }
        // Without an image, one platform's indexes are no use to anyone: what failed is
        // the entry of the platform, which the pull cannot go on without. Every
        // platform's pull goes on past an entry that failed.
        if !images.is_empty() || matches!(self.opts.platforms, Platforms::All) {
            self.store_held().await?;
        }
        self.blobs(&images, &listed_blobs).await?;
        if self.pulled.failed > 0 {
            // No `index.json` entry, whose update syncs them, but the objects stored were
            // said `ok`: their names are made durable before the pull says it is done.
            let store = self.store.clone();
            crate::blocking::run("syncing the layout failed", move || store.sync()).await?;
            return Ok(std::mem::take(&mut self.pulled));
        }
        if let [image] = images.as_slice() {
            // An index entry without a platform is chosen for want of one that names it:
            // its config says what it runs on, as containerd checks it.
            if image.descriptor.platform.is_none() {
                self.pulled.image_platform = config_platform(self.store, &image.config).await;
                self.pulled.image_platform_unlisted = image.descriptor.digest != top.digest;
            }
        }
        let mut entry = match (&self.opts.platforms, images.first()) {
            (Platforms::One(_), Some(image)) => image.descriptor.clone(),
            _ => top,
        };
        if entry.platform.is_none() && entry.digest == top_digest {
            entry.platform = listed_platform;
        }
        entry.annotations.remove(REF_NAME);
        entry.annotations.remove(IMAGE_NAME);
        if let Some(name) = ref_name {
            entry.annotations.insert(REF_NAME.into(), name.into());
            if let Some(full) = &self.opts.image_name {
                entry.annotations.insert(IMAGE_NAME.into(), full.clone());
            }
        }
        // The whole index under this name (an --all-platforms pull of the same tag, which
        // stored every platform) holds the platform just pulled: naming that platform's
        // image instead took the name from the others, and readers on other platforms of
        // `oci:DIR:tag` were handed this one. Asked under index.json's lock, so that such
        // a pull ending while this one waits for it keeps the name too.
        let keep = (entry.digest != top_digest).then_some(top_digest);
        let added = self.add_to_index(&entry, keep).await?;
        match added {
            Added::Kept(kept) => {
                self.pulled.entry = Some(*kept);
                return Ok(std::mem::take(&mut self.pulled));
            }
            Added::Replacing(replaced) => self.pulled.replaced = replaced,
        }
        self.pulled.entry = Some(entry);
        Ok(std::mem::take(&mut self.pulled))
    }

    /// Adds `entry` to `index.json` ([`LayoutStore::add_to_index_unless`]), waiting here for
    /// another run's lock on it, where a stop of the pull ends the wait: waited for on a
    /// blocking thread, which a stop cannot end, the lock was taken when it came free, in
    /// the moments the run still had, and the image named after the run had said it was not.
    async fn add_to_index(&self, entry: &Descriptor, keep: Option<Digest>) -> Result<Added> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(1);
        // Gone with this future when a stop drops it: a try then still under way on the
        // blocking pool, which the stop cannot end, writes no entry if it takes the lock.
        let waiting = Arc::new(());
        loop {
            let (store, indexed, keep) = (self.store.clone(), entry.clone(), keep.clone());
            let still_waiting = Arc::downgrade(&waiting);
            let tried = crate::blocking::run("index.json update failed", move || {
                let wanted = || still_waiting.upgrade().is_some();
                store.try_add_to_index_unless(&indexed, keep.as_ref(), &wanted)
            })
            .await?;
            if let Some(added) = tried {
                return Ok(added);
            }
            // Once: the wait is what `-v` shows of a pull that seems to hang at its end.
            if pause == std::time::Duration::from_millis(1) {
                tracing::debug!(layout = %self.store.root().display(), "another run holds the lock of index.json; waiting for it");
            }
            if started.elapsed() >= crate::sink::index::INDEX_LOCK_WAIT {
                return Err(crate::sink::index::still_locked(self.store.root()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
        }
    }

    /// Fetches and parses manifests from `top` down, giving `top` and the images the media
    /// type their content declares.
    async fn manifests(&mut self, top: &mut Descriptor) -> Result<Found> {
        let mut images = Vec::new();
        let mut listed_blobs = Vec::new();
        let mut offered = Offered::default();
        let mut artifacts = false;
        let mut level = vec![top.clone()];
        let mut depth = 0;
        // For one platform, the entries dist cannot fetch that it would have taken, each
        // with the index that lists it: another index of the image may hold an image for
        // the platform as good, which is then pulled instead (see `settle`).
        let mut cannot_take = Vec::new();
        loop {
            level.retain(|d| self.seen.insert((d.digest.clone(), d.size)));
            if level.is_empty() {
                break;
            }
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "indexes nested more than {MAX_DEPTH} deep; no image needs more, so \
                         dist stops before fetching the next"
                    ),
                )
                .with_object(&top.digest));
            }
            // One that declares more than any manifest has is refused as one fetched past
            // the limit is, before it is fetched: counted first, it was refused as an
            // image whose indexes list more than 64 MiB of manifests.
            if let Some(e) = level
                .iter()
                .find_map(|d| held::too_large(d.size, &d.digest))
            {
                return Err(e);
            }
            self.manifest_bytes = level
                .iter()
                .fold(self.manifest_bytes, |sum, d| sum.saturating_add(d.size));
            if self.manifest_bytes > MAX_MANIFEST_BYTES {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!(
                        "the image's indexes list more than {} MiB of manifests; no image \
                         has that much, so dist stops before fetching them",
                        MAX_MANIFEST_BYTES >> 20
                    ),
                )
                .with_object(&top.digest));
            }
            let before = self.held.len();
            let stored = self.manifest_level(&level).await?;
            // Looked up by digest: a level of an index of thousands is thousands held.
            let fetched: std::collections::HashMap<Digest, bytes::Bytes> = self.held[before..]
                .iter()
                .map(|h| (h.descriptor.digest.clone(), h.bytes.clone()))
                .collect();
            let mut next = Vec::new();
            for (desc, ok) in level.iter_mut().zip(stored) {
                if !ok {
                    continue;
                }
                let bytes = match fetched.get(&desc.digest) {
                    Some(b) => b.clone(),
                    None => read_json_blob(self.store, desc).await?.into(),
                };
                let parsed = Manifest::parse_verified_leniently(&desc.media_type, &bytes);
                let parsed = parsed.map_err(|e| {
                    let e = e.with_object(&desc.digest);
                    match self.remote.manifest_location(&desc.digest) {
                        Some(url) => e.with_url(url),
                        None => e,
                    }
                });
                let (parsed, unusable) = match parsed {
                    // An index's entry in unsigned schema 1 fails as that entry, as a
                    // signed one does when it is fetched: it is no malformed manifest
                    // that stops every platform's pull, only one dist does not pull.
                    // One read back from the store (a worker run with `-o DIR` stores
                    // any content that verifies) was reported `exists` already: its
                    // failure is a line of its own, and it stays where it was put.
                    Err(e)
                        if desc.digest != top.digest && crate::image::schema1(&bytes).is_some() =>
                    {
                        let held = self
                            .held
                            .iter()
                            .position(|h| h.descriptor.digest == desc.digest);
                        let outcome = match held {
                            Some(at) => self.held.remove(at).outcome,
                            // What the entry asked for, as a worker's failed line and
                            // one fetched and refused say: its digest and size were null.
                            None => {
                                let mut o = Outcome::new(0, desc.digest.to_string());
                                o.digest = Some(desc.digest.clone());
                                o.size = Some(desc.size);
                                o.media_type = Some(desc.media_type.clone());
                                o
                            }
                        };
                        self.refused_entry(outcome, desc, e)?;
                        continue;
                    }
                    parsed => parsed?,
                };
                // index.json records what the verified content is: a registry's
                // Content-Type or an index entry may call an OCI manifest a Docker one,
                // and readers of the layout go by the entry's type (skopeo passes over
                // entries of Docker types).
                if let Some(own) = crate::image::sniff_media_type(&bytes) {
                    desc.media_type = own;
                }
                if desc.digest == top.digest {
                    top.media_type = desc.media_type.clone();
                }
                self.listed += unusable.len();
                self.listed += match &parsed {
                    Manifest::Index(children) => children.len(),
                    Manifest::Image { layers, .. } => 1 + layers.len(),
                    Manifest::Artifact { blobs } => blobs.len(),
                };
                if self.listed > MAX_DESCRIPTORS {
                    return Err(Error::new(
                        ErrorKind::TooLarge,
                        format!(
                            "the image's indexes and manifests list more than \
                             {MAX_DESCRIPTORS} descriptors; no image has that many, so \
                             dist stops instead of holding them all"
                        ),
                    )
                    .with_object(&desc.digest));
                }
                match parsed {
                    Manifest::Index(children) => {
                        // An index may list blobs (BuildKit's registry cache lists its
                        // layers so): stored as they are, with the configs and layers,
                        // never parsed or counted as manifests. An entry without a type
                        // is read as the manifest its shape says.
                        let (manifests, blobs): (Vec<_>, Vec<_>) =
                            children.into_iter().partition(|c| {
                                let t = crate::media::essence(&c.media_type);
                                t.is_empty() || crate::media::is_manifest(t)
                            });
                        artifacts |= manifests.iter().any(is_unlabelled_artifact);
                        // A blob is no platform's image: one dist cannot fetch matters
                        // only when every entry is pulled.
                        let (unusable, unusable_blobs): (Vec<_>, Vec<_>) =
                            unusable.into_iter().partition(UnusableEntry::is_manifest);
                        let (chosen, mut cannot) =
                            choose(&self.opts.platforms, manifests, unusable, &mut offered);
                        next.extend(chosen);
                        listed_blobs.extend(blobs);
                        if matches!(self.opts.platforms, Platforms::All) {
                            cannot.extend(unusable_blobs);
                            for entry in cannot {
                                self.unusable(entry, desc)?;
                            }
                        } else {
                            cannot_take.extend(cannot.into_iter().map(|e| (e, desc.clone())));
                        }
                    }
                    Manifest::Image { config, layers } => images.push(Image {
                        descriptor: desc.clone(),
                        config,
                        layers,
                    }),
                    // Stored, as containerd stores what it does not walk, with the blobs
                    // it lists, which make it whole; its `subject` is another object, not
                    // part of it. No platform's image: one platform's pull takes none of
                    // it, and says --all-platforms does.
                    Manifest::Artifact { blobs } => match self.opts.platforms {
                        Platforms::All => listed_blobs.extend(blobs),
                        Platforms::One(_) => artifacts = true,
                    },
                }
            }
            // An image of the very platform ends the search; a worse fit, or one that
            // names no platform, does not: another index's nested index may hold a closer
            // one, and `settle` takes the closest of all the levels walked.
            if let Platforms::One(want) = &self.opts.platforms {
                let exact = |p: &Platform| want.fit(p) == Some(u32::MAX);
                if images
                    .iter()
                    .any(|i| i.descriptor.platform.as_ref().is_some_and(exact))
                {
                    break;
                }
            }
            level = next;
        }
        if let Platforms::One(want) = &self.opts.platforms {
            for (entry, index) in settle(want, &mut images, cannot_take) {
                self.unusable(entry, &index)?;
            }
        }
        Ok(Found {
            images,
            listed_blobs,
            offered,
            artifacts,
        })
    }

    /// Fetches every config and layer of `images`, and the blobs indexes listed,
    /// skipping non-distributable ones.
    async fn blobs(&mut self, images: &[Image], listed_blobs: &[Descriptor]) -> Result<()> {
        let mut todo = Vec::new();
        // `urls` make a layer non-distributable, never a config: an image is nothing
        // without its config, which skopeo and containerd copy whatever it lists.
        let configs = images.iter().map(|i| (&*i.config, false));
        let layers = images.iter().flat_map(|i| &i.layers).map(|l| (l, true));
        let listed = listed_blobs.iter().map(|b| (b, true));
        let all = || listed.clone().chain(configs.clone()).chain(layers.clone());
        // A blob is fetched once, by its digest and size, and skipped only when nothing lists it
        // as distributable: one image's foreign base layer may be another's plain layer
        // (a copy that made it distributable), and skipping it by the first listing left
        // that other image without it, recorded in index.json all the same.
        let mut distributable = std::collections::HashMap::new();
        for (blob, may_skip) in all() {
            if blob.urls.is_empty() || !may_skip {
                distributable
                    .entry((&blob.digest, blob.size))
                    .or_insert(blob);
            }
        }
        for (blob, _) in all() {
            if !self.seen.insert((blob.digest.clone(), blob.size)) {
                continue;
            }
            if let Some(fetched) = distributable.get(&(&blob.digest, blob.size)) {
                todo.push((*fetched).clone());
                continue;
            }
            self.line += 1;
            self.pulled.skipped += 1;
            (self.on_event)(Event::Skipped {
                line: self.line,
                descriptor: blob.clone(),
            })?;
        }
        // Configs and layers are the last level: the progress total is now final.
        self.more_levels(false);
        let verify_existing = self.opts.verify_existing;
        self.level(&todo, Fetch::Store { verify_existing })
            .await
            .map(drop)
    }

    /// Reports a manifest fetched for an index's entry, or found stored, and refused
    /// (unsigned schema 1) as a failed object, with its platform; one fetched is dropped
    /// unstored. The worker counted it finished without failing, as [`Self::store_held`]
    /// finds for one it cannot store.
    fn refused_entry(
        &mut self,
        mut outcome: Outcome,
        entry: &Descriptor,
        why: Error,
    ) -> Result<()> {
        let why = match &entry.platform {
            Some(p) => why.with_note(entry_note(p)),
            None => why,
        };
        self.fail_after_all(&mut outcome, why);
        self.report(outcome)
    }

    /// Fails `outcome`, an object the worker counted finished without failing: the
    /// progress's summary said "0 failed" beside its error line.
    fn fail_after_all(&mut self, outcome: &mut Outcome, why: Error) {
        self.pulled.failed += 1;
        if let Some(p) = &self.opts.progress {
            p.failed_after_all();
        }
        outcome.fail(why);
    }

    /// Reports `outcome` as the pull's next line.
    fn report(&mut self, mut outcome: Outcome) -> Result<()> {
        self.line += 1;
        outcome.line = self.line;
        (self.on_event)(Event::Object(outcome))
    }

    /// Reports an index entry that was to be pulled but cannot be fetched as a failed
    /// object: the others still complete, and `index.json` is left alone.
    fn unusable(&mut self, entry: UnusableEntry, index: &Descriptor) -> Result<()> {
        self.line += 1;
        self.pulled.failed += 1;
        let object = entry
            .digest
            .unwrap_or_else(|| format!("entry {} of {}", entry.position + 1, index.digest));
        let mut error = entry.why.with_object(&object);
        if let Some(url) = self.remote.manifest_location(&index.digest) {
            error = error.with_url(url);
        }
        if let Some(p) = &entry.platform {
            error = error.with_note(entry_note(p));
        }
        let mut outcome = Outcome::new(self.line, object);
        outcome.media_type = crate::media::reported(&entry.media_type).map(str::to_string);
        outcome.fail(error);
        (self.on_event)(Event::Object(outcome))
    }

    fn more_levels(&self, more: bool) {
        if let Some(p) = &self.opts.progress {
            p.more_input_follows(more);
        }
    }

    /// Fetches a level of manifests; returns which of them are at hand, in the store or
    /// held. Those not there yet are held ([`held`]) until the walk has read them all
    /// and, for one platform, found its image.
    async fn manifest_level(&mut self, level: &[Descriptor]) -> Result<Vec<bool>> {
        // Manifests are small: re-hashing one already present costs little, and a
        // damaged copy is fetched again instead of being parsed.
        let stored = Fetch::Store {
            verify_existing: true,
        };
        let mut there = Vec::with_capacity(level.len());
        for d in level {
            let path = self.store.blob_path(&d.digest);
            there.push(tokio::fs::symlink_metadata(path).await.is_ok());
        }
        let pick = |want: bool| -> Vec<Descriptor> {
            let both = level.iter().zip(&there);
            both.filter(|(_, t)| **t == want)
                .map(|(d, _)| d.clone())
                .collect()
        };
        let (present, absent) = (pick(true), pick(false));
        let mut from_store = self.level(&present, stored).await?.into_iter();
        let mut from_held = self.level(&absent, Fetch::Hold).await?.into_iter();
        let at_hand = there.iter().map(|t| match t {
            true => from_store.next(),
            false => from_held.next(),
        });
        Ok(at_hand.map(|ok| ok.unwrap_or(false)).collect())
    }

    /// Stores the manifests held, reporting each as it is (see [`held`]). Each stays held
    /// until it is reported: a pull stopped meanwhile takes those not reported off the
    /// progress (see `Drop`), which counted them all beside the lines written.
    async fn store_held(&mut self) -> Result<()> {
        // Taken from the end, in the order they were fetched.
        self.held.reverse();
        while let Some(next) = self.held.last() {
            let stored = held::store(self.store, next).await;
            let Some(held) = self.held.pop() else { break };
            let mut outcome = held.outcome;
            match stored {
                Ok(path) => {
                    self.pulled.fetched += 1;
                    outcome.path = Some(path);
                }
                Err(e) => self.fail_after_all(&mut outcome, e.with_object(&held.descriptor.digest)),
            }
            self.report(outcome)?;
        }
        Ok(())
    }

    /// One worker run over `descs`; returns which of them are now in the store, or held.
    async fn level(&mut self, descs: &[Descriptor], fetch: Fetch) -> Result<Vec<bool>> {
        let mut stored = vec![false; descs.len()];
        if descs.is_empty() {
            return Ok(stored);
        }
        let input: String = descs.iter().map(|d| d.worker_line() + "\n").collect();
        let destination = match fetch {
            Fetch::Store { verify_existing } => Destination::Store {
                store: self.store.clone(),
                verify_existing,
            },
            // Kept in memory: no manifest is larger, and a larger answer is refused.
            Fetch::Hold => Destination::Spool {
                threshold: MAX_MANIFEST_SIZE as usize,
            },
        };
        let opts = WorkerOptions {
            jobs: self.opts.jobs,
            ordered: false,
            destination,
            progress: self.opts.progress.clone(),
            ..WorkerOptions::default()
        };
        let input = std::io::Cursor::new(input.into_bytes());
        let mut outcomes = worker::run(self.remote.clone(), input, opts);
        while let Some(mut outcome) = outcomes.next().await {
            let index = (outcome.line as usize).checked_sub(1);
            if let (Some(mut spool), Some(desc)) =
                (outcome.content.take(), index.and_then(|i| descs.get(i)))
            {
                // Past the manifest limit stops the pull, as a stored one read back does.
                // Its error is the pull's, on no line of its own: not counted either, as
                // the worker had counted it, finished without failing.
                let bytes = held::take_bytes(&mut spool, &desc.digest).inspect_err(|_| {
                    if let Some(p) = &self.opts.progress {
                        p.unreported(1);
                    }
                })?;
                self.held.push(held::Held {
                    descriptor: desc.clone(),
                    bytes,
                    outcome,
                });
                if let Some(slot) = index.and_then(|i| stored.get_mut(i)) {
                    *slot = true;
                }
                continue;
            }
            match outcome.status {
                Status::Ok => self.pulled.fetched += 1,
                Status::Exists => self.pulled.existing += 1,
                Status::Error => self.pulled.failed += 1,
            }
            if let Some(slot) = index.and_then(|i| stored.get_mut(i)) {
                *slot = outcome.status != Status::Error;
            }
            // A digest alone does not say which of an index's images failed (one a
            // registry's garbage collection took, say), nor so which --platform still pulls.
            // Taken only when there is a platform to add: a config's or layer's error
            // taken and dropped left its line `"error": null` and stderr silent.
            let platform = index.and_then(|i| descs.get(i)?.platform.as_ref());
            if let Some(p) = platform {
                outcome.error = outcome.error.take().map(|e| e.with_note(entry_note(p)));
            }
            self.report(outcome)?;
        }
        Ok(stored)
    }
}

/// The manifests still held when the walk ends (one platform's indexes without its image,
/// a pull stopped) are reported nowhere: the progress counted them as the worker finished
/// them, and its summary then named more objects than the lines, and more than failed or
/// were stored. Their bytes stay counted: they were received.
impl<F> Drop for Walk<'_, F> {
    fn drop(&mut self) {
        if let (Some(p), n @ 1..) = (&self.opts.progress, self.held.len()) {
            p.unreported(n as u64);
        }
    }
}

/// The note on an index entry's error naming its platform: a digest alone does not say
/// which of an index's images failed, nor so which `--platform` still pulls.
fn entry_note(platform: &Platform) -> String {
    format!("it is the index's entry for {platform}")
}

/// Where a worker run puts what it fetches.
#[derive(Clone, Copy)]
enum Fetch {
    /// Into the store.
    Store { verify_existing: bool },
    /// Into memory, held until the walk has read every manifest ([`held`]).
    Hold,
}

/// For a pull of `want`, keeps the image of `images` (from every index walked, shallower
/// levels first) that fits it best, the first of equals, and returns the entries dist
/// cannot fetch that would fit better, keeping no image then: those are the images the
/// indexes have for the platform, and pulling a worse fit instead would hand over another
/// variant without a word. With no image, each is returned. Indexes of one image may
/// list the same platform twice (a producer moving to another digest algorithm keeps the
/// old entries in another index): one it cannot fetch then spoils nothing.
fn settle(
    want: &Platform,
    images: &mut Vec<Image>,
    cannot: Vec<(UnusableEntry, Descriptor)>,
) -> Vec<(UnusableEntry, Descriptor)> {
    let fit = |p: Option<&Platform>| p.and_then(|p| want.fit(p));
    let best = images
        .iter()
        .enumerate()
        .map(|(i, image)| (fit(image.descriptor.platform.as_ref()), i))
        .rev()
        .max_by_key(|(fit, _)| *fit);
    let Some((best_fit, i)) = best else {
        return cannot;
    };
    let better: Vec<_> = cannot
        .into_iter()
        .filter(|(entry, _)| fit(entry.platform.as_ref()) > best_fit)
        .collect();
    // The pull fails for the better one: the worse one's layers are not fetched for it.
    let image = images.swap_remove(i);
    *images = if better.is_empty() {
        vec![image]
    } else {
        Vec::new()
    };
    better
}

/// The entries of an index to descend into: all of them, or the first image manifest for
/// the platform (or, lacking its variant, for the closest older one), else the first that
/// names no platform and no artifact type (as containerd and skopeo take it; its config's
/// platform is checked later), else the nested indexes that may hold one. The platforms seen are added to `offered`. Second,
/// the entries dist cannot fetch that were to be descended into: all of them, or the one
/// that would have been chosen, unless an entry dist can fetch does as well; the nested
/// indexes are then descended into all the same, for one they hold as good (see
/// [`settle`]).
fn choose(
    platforms: &Platforms,
    children: Vec<Descriptor>,
    mut unusable: Vec<UnusableEntry>,
    offered: &mut Offered,
) -> (Vec<Descriptor>, Vec<UnusableEntry>) {
    let want = match platforms {
        Platforms::All => return (children, unusable),
        Platforms::One(p) => p,
    };
    // `unknown/unknown` labels a build's attestations, which are no platform to offer. A
    // nested index offers its platform when it is not walked; one that is offers its
    // entries' own.
    let listed = children.iter().map(|c| (c.is_index(), c.platform.as_ref()));
    let unlisted = unusable.iter().map(|u| (u.is_index(), u.platform.as_ref()));
    for shown in listed
        .chain(unlisted)
        .filter(|(index, p)| !index || p.is_some_and(|p| !want.matches(p)))
        .filter_map(|(_, p)| p)
        .filter(|p| p.os != "unknown" || p.architecture != "unknown")
        .filter(|p| !p.os.is_empty() && !p.architecture.is_empty())
        .map(ToString::to_string)
    {
        offered.add(shown);
    }
    // Which platform it is for cannot be told, and so may be the one asked for.
    for u in unusable
        .iter()
        .filter(|u| u.platform_unreadable && !u.is_index())
    {
        offered.add(format!("an unreadable platform (entry {})", u.position + 1));
    }
    let manifests = || {
        children
            .iter()
            .filter(|c| !c.is_index() && !is_artifact_manifest(&c.media_type))
    };
    // The first of the closest: an exact variant before an older one.
    let hit = manifests()
        .filter_map(|c| Some((want.fit(c.platform.as_ref()?)?, c)))
        .rev()
        .max_by_key(|(fit, _)| *fit);
    let unusable_hit = unusable
        .iter()
        .enumerate()
        .filter(|(_, u)| !u.is_index() && !is_artifact_manifest(&u.media_type))
        .filter_map(|(i, u)| Some((want.fit(u.platform.as_ref()?)?, i)))
        .rev()
        .max_by_key(|(fit, _)| *fit);
    // One that fits better is the image this index has for the platform: pulling a worse
    // fit instead would hand over another variant without a word. One dist cannot fetch
    // still has the nested indexes walked: an entry that gives no type may be an index as
    // well as a manifest, and one they hold for the platform, as good a fit, is then
    // pulled instead (see `settle`).
    let mut cannot = Vec::new();
    match (hit, unusable_hit) {
        // The worse fit is dropped; the nested indexes are searched as they are without it.
        (Some((fit, _)), Some((better, i))) if better > fit => cannot.push(unusable.swap_remove(i)),
        (Some((_, c)), _) => return (vec![c.clone()], Vec::new()),
        (None, Some((_, i))) => cannot.push(unusable.swap_remove(i)),
        (None, None) => {
            let unlabelled_image =
                |c: &&Descriptor| c.platform.is_none() && !is_unlabelled_artifact(c);
            if let Some(c) = manifests().find(unlabelled_image) {
                return (vec![c.clone()], Vec::new());
            }
            let unlabelled = |u: &UnusableEntry| {
                !u.is_index()
                    && u.platform.is_none()
                    && !u.platform_unreadable
                    && !u.artifact
                    && !is_artifact_manifest(&u.media_type)
            };
            if let Some(i) = unusable.iter().position(unlabelled) {
                cannot.push(unusable.swap_remove(i));
            }
        }
    }
    let may_hold = |p: Option<&Platform>| p.is_none_or(|p| want.matches(p));
    let nested: Vec<_> = children
        .into_iter()
        .filter(|c| c.is_index() && may_hold(c.platform.as_ref()))
        .collect();
    if !nested.is_empty() || !cannot.is_empty() {
        return (nested, cannot);
    }
    unusable.retain(|u| u.is_index() && may_hold(u.platform.as_ref()));
    (Vec::new(), unusable)
}

/// The platforms the indexes of an image offer, each once, in the order found: for the
/// message when none matches, which names the first [`Offered::SHOWN`] and says how many
/// there are. A registry's indexes may list tens of thousands: each compared with every
/// other, they took seconds; all named, the message ran on for KiB and was cut before the
/// advice that follows the list.
#[derive(Default)]
struct Offered {
    shown: Vec<String>,
    seen: HashSet<String>,
}

impl Offered {
    /// More than any real image offers (Docker's official images list about ten).
    const SHOWN: usize = 20;

    fn add(&mut self, platform: String) {
        if !self.seen.contains(&platform) {
            if self.shown.len() < Self::SHOWN {
                self.shown.push(platform.clone());
            }
            self.seen.insert(platform);
        }
    }
}

impl std::fmt::Display for Offered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.shown.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&self.shown.join(", "))?;
        if self.seen.len() > self.shown.len() {
            write!(f, ", … ({} in all)", self.seen.len())?;
        }
        Ok(())
    }
}

/// Whether an index entry is an artifact that names no platform: an SBOM or a signature
/// put beside the images (`podman manifest add --artifact`), no image for any platform.
fn is_unlabelled_artifact(entry: &Descriptor) -> bool {
    entry.platform.is_none()
        && (entry.names_artifact_type() || is_artifact_manifest(&entry.media_type))
}

/// Whether an index entry is an OCI artifact manifest by its type: never an image, whatever
/// platform it names.
fn is_artifact_manifest(media_type: &str) -> bool {
    crate::media::is(media_type, crate::media::OCI_ARTIFACT_MANIFEST)
}

/// The platform an image config in the store declares, if it names one. A config that
/// cannot be read back whole and verified, or is past the manifest limit, names none, as
/// does an artifact's config, which may hold `os` fields meaning something else.
async fn config_platform(store: &LayoutStore, config: &Descriptor) -> Option<Platform> {
    if !crate::media::is_image_config(&config.media_type) {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Declared {
        architecture: Option<String>,
        os: Option<String>,
        variant: Option<String>,
        /// A Windows image's build, which says which hosts run it (read loosely: it
        /// only adds to what the other fields say).
        #[serde(rename = "os.version")]
        os_version: Option<serde_json::Value>,
    }
    let bytes = read_json_blob(store, config).await.ok()?;
    let d: Declared = serde_json::from_slice(&bytes).ok()?;
    match (d.os, d.architecture) {
        (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => {
            let mut p = Platform::new(&os, &arch, d.variant.as_deref());
            p.os_version = d
                .os_version
                .as_ref()
                .and_then(serde_json::Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string);
            Some(p)
        }
        _ => None,
    }
}

/// A manifest's or config's bytes from the store, checked against its digest, up to the
/// manifest limit.
async fn read_json_blob(store: &LayoutStore, desc: &Descriptor) -> Result<Vec<u8>> {
    let path = store.blob_path(&desc.digest);
    let io = |e: std::io::Error| {
        Error::new(ErrorKind::Io, format!("reading {}", path.display()))
            .with_cause(e)
            .with_object(&desc.digest)
    };
    let len = tokio::fs::metadata(&path).await.map_err(io)?.len();
    if let Some(e) = held::too_large(len, &desc.digest) {
        return Err(e);
    }
    let bytes = tokio::fs::read(&path).await.map_err(io)?;
    let actual = Digest::of(desc.digest.algorithm(), &bytes);
    if actual != desc.digest {
        return Err(Error::new(
            ErrorKind::DigestMismatch,
            format!("{} holds {actual}", path.display()),
        )
        .with_object(&desc.digest));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
