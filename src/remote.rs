//! The seam between commands and where content lives.
//!
//! A [`Remote`] turns an object (tag or digest) plus hints into a [`Download`]. The registry
//! over HTTP is one implementation ([`crate::registry::RegistryRemote`]); commands and the
//! worker only see this trait, so fetching stays pluggable.

use futures::future::BoxFuture;

use crate::error::Result;
use crate::fetch::Download;
use crate::hints::Hints;
use crate::reference::Object;

/// A source of content-addressed objects.
pub trait Remote: Send + Sync {
    /// Starts fetching `object`. The returned download verifies the content as it streams;
    /// an object that does not exist fails with [`crate::ErrorKind::NotFound`].
    fn fetch<'a>(&'a self, object: &'a Object, hints: &'a Hints)
        -> BoxFuture<'a, Result<Download>>;

    /// Checks that the remote can be reached and, where it needs credentials, that they are
    /// accepted, so that a batch fails once instead of once per object.
    fn check<'a>(&'a self) -> BoxFuture<'a, Result<()>>;

    /// A short description for messages (`localhost:5000/team/app`).
    fn describe(&self) -> String;
}
