//! File work that blocks (hashing a stored blob, an fsync, the index lock), run on tokio's
//! blocking pool from async code.

use crate::error::{Error, ErrorKind, Result};

/// Runs `work` on the blocking pool and returns what it returns; a task that panicked or
/// was cancelled is an [`ErrorKind::Io`] error saying that `what` failed.
pub(crate) async fn run<T, F>(what: &'static str, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::new(ErrorKind::Io, what).with_cause(e))?
}
