//! When a mirror that failed is asked again: the mark that skips it for a while, twice as
//! long at each mark while it stays down, and for the rest of the run once it refused.
//!
//! Separate from [`super::host`], which marks a mirror and reads the mark on each
//! request: this is the schedule alone.

use std::time::{Duration, Instant};

use crate::error::ErrorKind;

/// How long a mirror marked down is skipped at first (see [`MirrorDown`]).
pub(super) const MIRROR_DOWN: Duration = Duration::from_secs(30);
/// The longest a mirror marked down again and again is skipped at a time: a run of hours
/// asks it again a few times an hour, each asking costing one object a failed connection.
const MIRROR_DOWN_MAX: Duration = Duration::from_secs(600);

/// A mirror found unreachable, not trusted or hanging is skipped for a while, not for the
/// rest of the run: in a batch of hours, a cache restarted for a minute would otherwise
/// send every later object to the registry (and its pull limits). containerd asks each
/// host on every request; a mark spares each object a failed connection meanwhile.
#[derive(Debug, Default)]
pub(super) struct MirrorDown {
    /// Until when the mirror is skipped; `None` while it is asked.
    pub(super) until: Option<Instant>,
    /// Marks since the mirror last answered: each skips it twice as long as the one before.
    pub(super) marks: u32,
    /// The kind and words of the refusal (401, 403) that keeps the mirror skipped for the
    /// rest of the run: asking again would only be refused again.
    pub(super) refused: Option<(ErrorKind, String)>,
}

impl MirrorDown {
    /// Marks the mirror down at `now`, and returns for how long; `None` when it already is
    /// (requests that were on their way when it went down fail one after another, and
    /// would otherwise lengthen the mark each time).
    pub(super) fn mark(&mut self, now: Instant, first: Duration) -> Option<Duration> {
        if self.until.is_some_and(|until| until > now) {
            return None;
        }
        let longest = MIRROR_DOWN_MAX.max(first);
        let skipped = first
            .checked_mul(1 << self.marks.min(20))
            .map_or(longest, |d| d.min(longest));
        self.marks += 1;
        // `with_mirror_down` takes any length, `Duration::MAX` for "not again this run":
        // past the clock's range, the sum would panic. Thirty years is as long.
        let until = now
            .checked_add(skipped)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86400));
        self.until = Some(until);
        Some(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_mark_doubles_while_it_stays_down_and_is_capped() {
        let (first, start) = (Duration::from_secs(30), Instant::now());
        let mut down = MirrorDown::default();
        assert_eq!(down.mark(start, first), Some(first));
        // Requests that were under way fail too: the mark stands as it is.
        assert_eq!(down.mark(start + first / 2, first), None);
        assert_eq!(down.until, Some(start + first));
        let mut now = start + first;
        for want in [60, 120, 240, 480, 600, 600] {
            let skipped = down.mark(now, first).expect("the mark ran out");
            assert_eq!(skipped, Duration::from_secs(want));
            now += skipped;
        }
        for _ in 0..40 {
            down.mark(now, first);
            now += MIRROR_DOWN_MAX;
        }
        assert_eq!(down.mark(now, first), Some(MIRROR_DOWN_MAX), "no overflow");
    }

    /// `with_mirror_down(Duration::MAX)`, a library's way to say "not again this run",
    /// made the first mark's end past the clock's range: a panic as the mirror failed.
    #[test]
    fn a_mark_past_the_clock_s_range_holds_the_mirror_down() {
        let mut down = MirrorDown::default();
        let now = Instant::now();
        assert_eq!(down.mark(now, Duration::MAX), Some(Duration::MAX));
        assert!(down.until.is_some_and(|until| until > now));
        assert_eq!(down.mark(now, Duration::MAX), None, "still down");
    }
}
