//! Counters a progress display reads while the worker runs. The worker only adds to them
//! (relaxed atomics, no locks on the hot path); rendering is the caller's business.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Live totals of one worker run.
#[derive(Debug, Default)]
pub struct Progress {
    lines: AtomicU64,
    input_done: AtomicBool,
    /// The input ended without a line, not even a comment or a blank one.
    input_empty: AtomicBool,
    /// Another run adds to these counters once the current input ends.
    more_follows: AtomicBool,
    started: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    expected_bytes: AtomicU64,
    /// Objects read without a size known in advance.
    sizes_unknown: AtomicU64,
    /// Objects in flight whose whole size is known, given or declared by the remote.
    flight_sized: AtomicU64,
    /// Bytes those objects still have to receive.
    flight_left: AtomicU64,
}

/// One object's share of the byte counts. What an object leaves unfetched (it failed) is
/// taken off the bytes expected, and what it fetches again (content that failed
/// verification, fetched anew) is added to them: otherwise a batch with one failed
/// object showed its size as still to come, and an ETA that never reached zero, after the
/// end, and one with a refetch more bytes received than expected.
///
/// While the object is in flight, it also counts among those whose size is known once it
/// is (given, or declared by the remote), with the bytes it still has to receive: what the
/// remaining time goes by once every object left is in flight. Dropped, the object is no
/// longer in flight.
pub(crate) struct Tally<'a> {
    progress: &'a Progress,
    /// The object's size, when the input said it (and so it is among the bytes expected).
    size: Option<u64>,
    /// Bytes of the current attempt received, or found here already.
    counted: u64,
    /// The object's whole size, once known: the input's, or the one the remote declared.
    whole: Option<u64>,
    /// What this object adds to [`Progress::flight_left`] now.
    left: u64,
}

impl<'a> Tally<'a> {
    pub(crate) fn new(progress: &'a Progress, size: Option<u64>) -> Tally<'a> {
        let mut tally = Tally {
            progress,
            size,
            counted: 0,
            whole: None,
            left: 0,
        };
        tally.sized(size);
        tally
    }

    /// The object's whole size is `size`, if known (a remote's download declares it): the
    /// first size known stands.
    pub(crate) fn sized(&mut self, size: Option<u64>) {
        if self.whole.is_some() || size.is_none() {
            return;
        }
        self.whole = size;
        self.progress.flight_sized.fetch_add(1, Ordering::Relaxed);
        self.settle();
    }

    pub(crate) fn received(&mut self, n: u64) {
        self.progress.received(n);
        self.counted = self.counted.saturating_add(n);
        self.settle();
    }

    /// `n` bytes need not come over the network: see [`Progress::already_here`].
    pub(crate) fn already_here(&mut self, n: u64) {
        if self.size.is_some() {
            self.progress.already_here(n);
        }
        self.counted = self.counted.saturating_add(n);
        self.settle();
    }

    /// The object is fetched again from its start: all of it is to come once more.
    pub(crate) fn again(&mut self) {
        if self.size.is_some() {
            self.progress.expect_more(self.counted);
        }
        self.counted = 0;
        self.settle();
    }

    /// Brings this object's share of [`Progress::flight_left`] to what it still has to
    /// receive. Saturating, as the bytes expected are: two absurd sizes given would wrap.
    fn settle(&mut self) {
        let left = self
            .whole
            .map_or(0, |whole| whole.saturating_sub(self.counted));
        if left != self.left {
            let (now, was) = (left, self.left);
            let _ = self.progress.flight_left.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |sum| Some(sum.saturating_sub(was).saturating_add(now)),
            );
            self.left = left;
        }
    }

    /// The object failed: what it did not get is no longer to come.
    pub(crate) fn failed(&mut self) {
        if let Some(size) = self.size {
            self.progress
                .already_here(size.saturating_sub(self.counted));
        }
    }
}

/// The object is no longer in flight: neither its size nor its bytes left count.
impl Drop for Tally<'_> {
    fn drop(&mut self) {
        if self.whole.take().is_some() {
            self.progress.flight_sized.fetch_sub(1, Ordering::Relaxed);
        }
        self.settle();
    }
}

/// A consistent-enough copy of the counters for one frame of a display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// Objects read from the input so far (skipped duplicates excluded).
    pub objects: u64,
    /// Whether the input has ended and no more will follow, so that `objects` is the total.
    pub input_done: bool,
    /// Objects whose fetch has started (a line that names no object starts and ends at once).
    pub started: u64,
    /// Objects finished, successfully or not.
    pub finished: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Bytes received so far.
    pub bytes: u64,
    /// Sum of the sizes known in advance (from descriptors) of the objects read; 0 once
    /// an object was read whose size is not known, since the bytes to come are not then.
    pub expected_bytes: u64,
    /// Objects in flight whose whole size is known: given in advance, or declared by the
    /// remote when it answered.
    pub in_flight_sized: u64,
    /// Bytes the objects counted in `in_flight_sized` still have to receive.
    pub in_flight_left: u64,
}

impl Snapshot {
    /// Objects being fetched right now.
    pub fn in_flight(&self) -> u64 {
        self.started.saturating_sub(self.finished)
    }
}

impl Progress {
    pub(crate) fn object_read(&self, size: Option<u64>) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        match size {
            // Sizes are the input's word, and a descriptor may say anything: added up
            // as they are, two near 2^64 wrapped round to a small total.
            Some(s) => self.expect_more(s),
            None => {
                self.sizes_unknown.fetch_add(1, Ordering::Relaxed);
            }
        };
    }

    fn expect_more(&self, n: u64) {
        let _ = self
            .expected_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |e| {
                Some(e.saturating_add(n))
            });
    }

    /// A line that names no object: read, and over as soon as it is. Started as well as
    /// finished, or each one took one off the fetches shown in flight; no bytes come for
    /// it, so it leaves the bytes expected known.
    pub(crate) fn bad_line(&self) {
        self.lines.fetch_add(1, Ordering::Relaxed);
        self.started();
        self.finished(false);
    }

    pub(crate) fn input_ended(&self, empty: bool) {
        self.input_empty.store(empty, Ordering::Relaxed);
        self.input_done.store(true, Ordering::Relaxed);
    }

    /// Whether the input ended without a single line but blank ones (a comment counts).
    /// The batch then succeeds with nothing to do, which is most often a sign that what
    /// fed it failed (`jq` on a missing file, in a shell without `pipefail`).
    pub fn input_was_empty(&self) -> bool {
        self.input_empty.load(Ordering::Relaxed)
    }

    pub(crate) fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` of the bytes expected need not come over the network: a blob already stored,
    /// or the part of one a partial download holds. Counted as expected, they would keep
    /// the remaining time from ever reaching zero on a re-run.
    pub(crate) fn already_here(&self, n: u64) {
        let _ = self
            .expected_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |e| {
                Some(e.saturating_sub(n))
            });
    }

    pub(crate) fn finished(&self, ok: bool) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An object finished without failing failed after all (a pull's manifest held in
    /// memory, which could not be stored): counted among the failed, as its line says.
    pub(crate) fn failed_after_all(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` objects finished without failing are not reported after all (a pull's manifests
    /// held until its image was found, which it was not): taken off the objects read,
    /// started and finished, so that the counts are those of the objects reported.
    pub(crate) fn unreported(&self, n: u64) {
        for count in [&self.lines, &self.started, &self.finished] {
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(n))
            });
        }
    }

    /// Says that another run will add to these counters after the current input ends
    /// (the levels of a pull: manifests first, then configs and layers), or that none will.
    /// Until it is called with `false` again, the total is not called final.
    pub fn more_input_follows(&self, more: bool) {
        self.more_follows.store(more, Ordering::Relaxed);
    }

    /// The current totals.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            objects: self.lines.load(Ordering::Relaxed),
            input_done: self.input_done.load(Ordering::Relaxed)
                && !self.more_follows.load(Ordering::Relaxed),
            started: self.started.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            expected_bytes: match self.sizes_unknown.load(Ordering::Relaxed) {
                0 => self.expected_bytes.load(Ordering::Relaxed),
                _ => 0,
            },
            in_flight_sized: self.flight_sized.load(Ordering::Relaxed),
            in_flight_left: self.flight_left.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_final_only_when_no_more_input_follows() {
        let p = Progress::default();
        p.more_input_follows(true);
        p.object_read(Some(10));
        p.input_ended(false);
        assert!(!p.snapshot().input_done, "a later level will add objects");
        p.more_input_follows(false);
        p.object_read(Some(5));
        p.input_ended(false);
        let s = p.snapshot();
        assert!(s.input_done);
        assert_eq!((s.objects, s.expected_bytes), (2, 15));
        p.already_here(4);
        assert_eq!(p.snapshot().expected_bytes, 11);
        p.already_here(40);
        assert_eq!(p.snapshot().expected_bytes, 0, "never below zero");
    }

    /// Whatever befalls an object, the bytes expected of it end equal to those it got.
    #[test]
    fn a_tally_leaves_expected_equal_to_received() {
        let p = Progress::default();
        for size in [100, 100, 100] {
            p.object_read(Some(size));
        }
        // Failed part-way.
        let mut t = Tally::new(&p, Some(100));
        t.received(30);
        t.failed();
        // Fetched twice (the first copy did not verify), then whole.
        let mut t = Tally::new(&p, Some(100));
        t.received(100);
        t.again();
        t.received(100);
        // Carried on from 40 bytes kept, which then did not verify, fetched again, and
        // failed after 10 bytes.
        let mut t = Tally::new(&p, Some(100));
        t.already_here(40);
        t.received(60);
        t.again();
        t.received(10);
        t.failed();
        let s = p.snapshot();
        assert_eq!(s.bytes, 30 + 200 + 70);
        assert_eq!(s.expected_bytes, s.bytes);
    }

    /// An object in flight counts among those of a known size from when its size is
    /// known, with the bytes it still has to receive, whatever befalls it, and neither
    /// once it is done.
    #[test]
    fn a_tally_counts_the_bytes_left_while_in_flight() {
        let p = Progress::default();
        let flight = |p: &Progress| {
            let s = p.snapshot();
            (s.in_flight_sized, s.in_flight_left)
        };
        let mut given = Tally::new(&p, Some(100));
        assert_eq!(flight(&p), (1, 100));
        given.received(30);
        assert_eq!(flight(&p), (1, 70));
        let mut declared = Tally::new(&p, None);
        declared.received(5);
        assert_eq!(flight(&p), (1, 70), "no size known yet");
        declared.sized(Some(50));
        assert_eq!(flight(&p), (2, 115));
        declared.sized(Some(999));
        assert_eq!(flight(&p), (2, 115), "the first size known stands");
        // Fetched again from the start: all of it is to come once more.
        given.again();
        assert_eq!(flight(&p), (2, 145));
        // More than its size (content that then fails verification) leaves none to come.
        declared.received(60);
        assert_eq!(flight(&p), (2, 100));
        drop(declared);
        assert_eq!(flight(&p), (1, 100));
        given.failed();
        drop(given);
        assert_eq!(flight(&p), (0, 0));
        // Absurd sizes saturate instead of wrapping, and leave nothing behind.
        let huge = [Tally::new(&p, Some(u64::MAX - 1)), Tally::new(&p, Some(10))];
        assert_eq!(flight(&p), (2, u64::MAX));
        drop(huge);
        assert_eq!(flight(&p), (0, 0));
    }

    #[test]
    fn sizes_near_the_top_of_u64_do_not_wrap() {
        let p = Progress::default();
        p.object_read(Some(u64::MAX - 1));
        p.object_read(Some(10));
        assert_eq!(p.snapshot().expected_bytes, u64::MAX);
    }

    /// One object of unknown size makes the bytes to come unknown: the sizes that are
    /// known would call a batch done while a large blob named without its size still comes.
    /// A bad line has no bytes to come and does not count.
    #[test]
    fn expected_bytes_are_known_only_when_every_size_is() {
        let p = Progress::default();
        p.object_read(Some(10));
        p.bad_line();
        assert_eq!(p.snapshot().expected_bytes, 10);
        p.object_read(None);
        p.object_read(Some(5));
        assert_eq!(p.snapshot().expected_bytes, 0);
    }
}
