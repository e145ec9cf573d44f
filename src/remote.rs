//! The seam between commands and where content lives.
//!
//! A [`Remote`] turns an object (tag or digest) plus hints into a [`Download`]. The registry
//! over HTTP is one implementation ([`crate::registry::RegistryRemote`]), an OCI image layout
//! directory another ([`crate::layout_remote::LayoutRemote`]); commands and the worker only
//! see this trait, so fetching stays pluggable.

use futures::future::BoxFuture;

use crate::digest::Digest;
#[cfg(doc)]
use crate::error::ErrorKind;
use crate::error::{Error, Result};
use crate::fetch::{Download, Prefix, VERIFY_ATTEMPTS};
use crate::hints::Hints;
use crate::image::{Descriptor, Platform};
use crate::reference::Object;

/// A source of content-addressed objects.
pub trait Remote: Send + Sync {
    /// Starts fetching `object`. The returned download verifies the content as it streams
    /// ([`Download::chunk`] says how its content may fail).
    ///
    /// # Errors
    ///
    /// Of the object: [`ErrorKind::NotFound`] for one the remote does not have,
    /// [`ErrorKind::Denied`] for one it refuses (403), [`ErrorKind::SizeMismatch`] or
    /// [`ErrorKind::DigestMismatch`] for content refused before a byte was read (the
    /// size it declared is not the one given; the digest it announced names other
    /// content). Of the remote, the same for every object until its configuration
    /// changes: [`ErrorKind::Unauthorized`] (no credentials, or refused ones),
    /// [`ErrorKind::Certificate`], [`ErrorKind::NotTls`], [`ErrorKind::TlsIncompatible`],
    /// [`ErrorKind::UnknownHost`], [`ErrorKind::ProxyRefused`]. For the moment
    /// ([`Error::is_transient`], already retried as the remote's
    /// [`RetryPolicy`](crate::retry::RetryPolicy) allows; [`Error::retry_after`] says how
    /// long a registry asked to be left alone): [`ErrorKind::Connect`],
    /// [`ErrorKind::Timeout`], [`ErrorKind::TooManyRequests`], [`ErrorKind::Http`] with a
    /// 5xx. [`ErrorKind`] may gain kinds: match with a `_` arm.
    ///
    /// ```
    /// use dist::layout_remote::LayoutRemote;
    /// use dist::{digest::Algorithm, Digest, ErrorKind, Hints, Object, Remote};
    ///
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 1)]
    /// # async fn main() -> dist::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # dist::sink::layout::LayoutStore::open(dir.path())?;
    /// let remote = LayoutRemote::new(dir.path()); // an empty layout
    /// let missing = Object::Digest(Digest::of(Algorithm::Sha256, b"not there"));
    /// let e = remote.fetch(&missing, &Hints::default()).await.unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::NotFound);
    /// assert!(!e.is_transient());
    /// # Ok(()) }
    /// ```
    fn fetch<'a>(&'a self, object: &'a Object, hints: &'a Hints)
        -> BoxFuture<'a, Result<Download>>;

    /// Fetches the rest of `object` after `prefix`, its first bytes kept by an earlier run.
    /// The download hands out the bytes from `prefix.len` on and verifies the whole
    /// content. The default asks for the whole content and drops what the prefix holds;
    /// a registry asks for the rest alone (`Range`). A prefix with nothing past it (as
    /// long as the content, or longer) ends either way in a download with nothing more to
    /// hand out, verified, when it is the whole content, and else in an error
    /// [`Error::is_corruption`](crate::Error::is_corruption) condemns: discard the
    /// partial download it came from.
    fn fetch_rest<'a>(
        &'a self,
        object: &'a Object,
        hints: &'a Hints,
        prefix: Prefix,
    ) -> BoxFuture<'a, Result<Download>> {
        Box::pin(async move { Ok(self.fetch(object, hints).await?.skipping(prefix)) })
    }

    /// Checks that the remote can be reached and, where it needs credentials, that they are
    /// accepted, so that a batch fails once instead of once per object.
    ///
    /// # Errors
    ///
    /// Those of [`Remote::fetch`] that say the remote cannot be used, as it is configured
    /// ([`ErrorKind::Unauthorized`], [`ErrorKind::Certificate`], …) or for the moment
    /// ([`Error::is_transient`]). A layout's directory without an `oci-layout` file is
    /// [`ErrorKind::NotFound`], one whose files are not a layout's
    /// [`ErrorKind::InvalidInput`], one that cannot be read [`ErrorKind::Io`]. A registry checks with a tag listing, and takes its
    /// 404, 403, 405 and 501 (an empty repository, credentials that may pull but not list,
    /// a registry that lists no tags) as a pass: the objects speak for themselves.
    fn check<'a>(&'a self) -> BoxFuture<'a, Result<()>>;

    /// A short description for messages (`localhost:5000/team/app`).
    fn describe(&self) -> String;

    /// The descriptor (media type, digest, size) of the manifest `object` names. The default
    /// fetches the manifest (at most 4 MiB) and describes what arrived; remotes that can
    /// answer without sending the content (a registry's `HEAD`) override it.
    fn resolve<'a>(&'a self, object: &'a Object) -> BoxFuture<'a, Result<Descriptor>> {
        Box::pin(crate::image::resolve_by_fetch(self, object))
    }

    /// The platform this remote's own listing gives the manifest `object` names, when it
    /// keeps one: the entries of an OCI layout's `index.json` may say it, a registry keeps
    /// no such listing. `dist pull` copies it into the layout it writes, so that a copy
    /// from layout to layout keeps it.
    fn listed_platform<'a>(&'a self, object: &'a Object) -> BoxFuture<'a, Option<Platform>> {
        let _ = object;
        Box::pin(async { None })
    }

    /// Where the manifest `digest` is read from, for a message about what it holds (a
    /// registry's URL for it, a layout's file); `None` when the remote cannot say. A
    /// manifest dist could not use was named by its digest alone, which does not say
    /// which registry or mirror served it.
    fn manifest_location(&self, digest: &Digest) -> Option<String> {
        let _ = digest;
        None
    }

    /// Whether content of this remote that did not verify may verify when fetched again: a
    /// registry's may (corrupted on its way, or served wrong by a mirror the next fetch
    /// passes over). A layout's file is read again as it is: fetched again, it failed the
    /// same way, said once more.
    fn refetch_may_verify(&self) -> bool {
        true
    }
}

/// Whether content whose fetch number `attempt` (1-based) failed with `e` is fetched once
/// more: content that did not verify, from a remote where it may the next time.
pub fn fetch_again(remote: &dyn Remote, e: &Error, attempt: u32) -> bool {
    e.is_corruption() && attempt < VERIFY_ATTEMPTS && remote.refetch_may_verify()
}
