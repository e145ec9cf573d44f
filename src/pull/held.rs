//! Manifests a pull fetched but has not stored yet.
//!
//! Which manifest is the platform's is known only once the indexes are read, and an index
//! without it fails the pull: stored as they came, the indexes read up to then were left
//! behind, a layout holding an index blob and no image in a directory the pull had made.
//! skopeo and crane fail before they write anything; so does dist, by keeping what it
//! fetches of the indexes in memory until an image is found. Every platform's pull holds
//! them too, until the walk has read them all: one stopped by a manifest it refuses (past
//! the limit, malformed) had stored that manifest, or the indexes above it. Bounded by
//! [`super::MAX_MANIFEST_BYTES`], checked before each level is fetched.

use bytes::Bytes;

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::MAX_MANIFEST_SIZE;
use crate::image::Descriptor;
use crate::sink::layout::LayoutStore;
use crate::sink::spool::Spool;
use crate::worker::Outcome;

/// A manifest fetched and verified against its digest, not stored yet.
pub(super) struct Held {
    pub descriptor: Descriptor,
    pub bytes: Bytes,
    /// Its report, sent once it is stored: an `ok` before that named a file not there.
    pub outcome: Outcome,
}

/// A manifest's bytes out of the spool the worker fetched it into, refused past the
/// manifest limit (a blobs endpoint, which a manifest may come from, is not capped).
pub(super) fn take_bytes(spool: &mut Spool, digest: &Digest) -> Result<Bytes> {
    if let Some(e) = too_large(spool.len(), digest) {
        return Err(e);
    }
    let mut bytes = Vec::with_capacity(spool.len() as usize);
    spool.copy_to(&mut bytes).map_err(|e| {
        Error::new(ErrorKind::Io, "reading back a fetched manifest")
            .with_cause(e)
            .with_object(digest)
    })?;
    Ok(bytes.into())
}

/// The error for a manifest of `len` bytes, past the manifest limit.
pub(super) fn too_large(len: u64, digest: &Digest) -> Option<Error> {
    (len > MAX_MANIFEST_SIZE).then(|| {
        Error::new(
            ErrorKind::TooLarge,
            format!("manifest of {len} bytes exceeds the {MAX_MANIFEST_SIZE}-byte limit"),
        )
        .with_object(digest)
    })
}

/// Stores a held manifest under its digest (verified when it was fetched); where it is.
pub(super) async fn store(store: &LayoutStore, held: &Held) -> Result<std::path::PathBuf> {
    let digest = &held.descriptor.digest;
    let mut temp = store.temp_async(digest.algorithm(), Some(digest)).await?;
    temp.write(&held.bytes).await?;
    temp.commit(digest).await
}
