//! A request for the rest after a kept prefix answered `416`: nothing lies past the
//! prefix, so the prefix is the whole content or none of it.
//!
//! A service that carries a partial download on itself ([`LayoutStore::resume`] and
//! [`Remote::fetch_rest`](crate::Remote::fetch_rest)) met the bare `416` as an
//! [`ErrorKind::Http`] for a partial as long as its blob: one kept when the last chunk had
//! arrived but the commit had not, or one of wrong bytes kept by a drop. Nothing in it said
//! whether to keep the partial, and kept, every later fetch met the same `416`.
//!
//! [`LayoutStore::resume`]: crate::sink::layout::LayoutStore::resume

use bytes::Bytes;
use futures::StreamExt;

use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{Download, Meta, Prefix};
use crate::hints::Hints;
use crate::reference::Object;

/// What the `416` `refused` says of `prefix`, the kept first bytes of `object`: a download
/// with nothing left to hand out, verified once [`Download::chunk`] returns `Ok(None)`,
/// when the prefix hashes to the digest (the whole content, to be committed); a
/// [`ErrorKind::DigestMismatch`] when it does not (content to discard, as any that failed
/// verification); a [`ErrorKind::SizeMismatch`] when it is the content, but a size given
/// is smaller. `refused` as it was when a size given says there is more than the prefix
/// (the server contradicting it), or the object is a tag.
pub(super) fn judged(
    refused: Error,
    object: &Object,
    hints: &Hints,
    prefix: Prefix,
) -> Result<Download> {
    let Object::Digest(digest) = object else {
        return Err(refused);
    };
    if hints.size.is_some_and(|size| size > prefix.len) {
        return Err(refused);
    }
    let got = prefix.hasher.clone().finish();
    let url = refused.url().unwrap_or_default().to_string();
    // The content, under a size given short of it: the size is what is wrong. Said as the
    // bytes' fault ("not the content, and they hash to" the very digest asked for), it
    // told a caller to throw away the blob whole.
    if let Some(size) = hints.size.filter(|_| got == *digest) {
        if size != prefix.len {
            let msg = format!(
                "the {} kept hash to the digest asked for, and the size given is {size} \
                 (size:{size}, or a descriptor's \"size\"): asked for the rest after them, \
                 got a 416 (nothing lies past them)",
                crate::plural::Bytes(prefix.len),
            );
            return Err(Error::new(ErrorKind::SizeMismatch, msg)
                .with_status(416)
                .with_url(url)
                .with_object(object)
                .with_note("the size given is likely wrong: the bytes kept are the content"));
        }
    }
    if got == *digest {
        let meta = Meta {
            object: object.clone(),
            expected: Some(digest.clone()),
            size: Some(prefix.len),
            media_type: None,
            url,
            limit: None,
        };
        let nothing = futures::stream::empty::<Result<Bytes>>().boxed();
        return Ok(Download::after(meta, nothing, prefix));
    }
    let msg = format!(
        "the {} kept are not the content: asked for the rest after them, got a 416 \
         (nothing lies past them), and they hash to {got}",
        crate::plural::Bytes(prefix.len)
    );
    Err(Error::new(ErrorKind::DigestMismatch, msg)
        .with_status(416)
        .with_url(url)
        .with_object(object)
        .with_note("a partial download that is no prefix of the blob: discard it"))
}
