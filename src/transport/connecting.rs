//! What the connectors that wrap another connector share: the error and the future of a
//! connection attempt, and how a call takes the inner connector that is ready.

use std::future::Future;
use std::pin::Pin;

/// Why a connection attempt failed, as hyper's client takes it from a connector.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection attempt under way, yielding `T`.
pub(crate) type Connecting<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

/// The inner connector to call now, leaving a fresh clone of it in `slot` for the next
/// call: the ready one is the one `poll_ready` was called on, and a clone made for the
/// call's future would not be ready (tower's `Service` contract).
pub(crate) fn take_ready<C: Clone>(slot: &mut C) -> C {
    let fresh = slot.clone();
    std::mem::replace(slot, fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one returned is the one that was in the slot (the ready one), not the clone.
    #[test]
    fn the_ready_one_is_taken_and_a_clone_left() {
        #[derive(Debug, PartialEq)]
        struct Marked(bool);
        impl Clone for Marked {
            fn clone(&self) -> Self {
                Marked(false)
            }
        }
        let mut slot = Marked(true);
        assert_eq!(take_ready(&mut slot), Marked(true));
        assert_eq!(slot, Marked(false));
    }
}
