//! How far a request got towards a connection, for the message when its time runs out.
//!
//! The idle timeout bounds a request from the moment it is handed to the pool: waiting for
//! one of the connections the per-host cap allows, the DNS lookup, the TCP connection and
//! the TLS handshake all count. Time run out in any of them was said as "no response
//! headers", sending the user after a server that was never asked. The connectors mark
//! each stage for the request whose task they run in; a connection made in the background
//! for the pool, once the request took another, marks nothing.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// A stage on the way to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    /// Handed to the pool: waiting for an idle connection, or for one another request is
    /// making (an HTTP/2 connection is shared).
    Pooled = 0,
    /// Waiting for one of the connections allowed to the host: all were busy.
    Queued = 1,
    /// Looking up the host's address.
    Resolving = 2,
    /// Connecting: TCP, a proxy's tunnel, TLS.
    Connecting = 3,
}

/// The stage a request is at, shared with the connectors working for it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress(Arc<AtomicU8>);

impl Progress {
    /// The stage reached last.
    pub(crate) fn stage(&self) -> Stage {
        match self.0.load(Ordering::Relaxed) {
            1 => Stage::Queued,
            2 => Stage::Resolving,
            3 => Stage::Connecting,
            _ => Stage::Pooled,
        }
    }

    /// Runs `request` with its connectors' stages recorded here.
    pub(crate) fn watch<F: std::future::Future>(
        &self,
        request: F,
    ) -> impl std::future::Future<Output = F::Output> {
        PROGRESS.scope(self.clone(), request)
    }
}

tokio::task_local! {
    static PROGRESS: Progress;
}

/// Records `stage` for the request whose task this runs in, if any.
pub(crate) fn enter(stage: Stage) {
    let _ = PROGRESS.try_with(|p| p.0.store(stage as u8, Ordering::Relaxed));
}
