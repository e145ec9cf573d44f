//! A global allocator that counts its allocations, for the tests that hold a hot path to
//! what it costs (`request_cost`, `download_cost`). Included by `#[path]` in those test
//! binaries alone: as every binary's allocator it would slow all of them down.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: the system allocator's own calls, counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The allocations the process has made so far, on any thread.
pub fn so_far() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}
