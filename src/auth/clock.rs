//! The clock a token's expiry is measured on.
//!
//! `Instant` is `CLOCK_MONOTONIC` on Linux (`CLOCK_UPTIME_RAW` on macOS), which stands
//! still while the machine is suspended: after a laptop slept past a token's lifetime,
//! the token still looked valid, and the next requests met a 401 before it was renewed.
//! A token server counts the time asleep, so expiry is measured on a clock that does
//! too: `CLOCK_BOOTTIME` on Linux and Android, `CLOCK_MONOTONIC` on Apple's systems
//! (which, unlike Linux's, goes on during sleep); elsewhere `Instant`. Timers (tokio's)
//! still run on the monotonic clock; only the decision whether a token has ended reads
//! this one.

use std::ops::{Add, Sub};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A reading of the clock that token expiry is measured on, which goes on counting while
/// the machine is suspended where the system offers such a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(Duration);

impl Stamp {
    /// The clock now.
    pub fn now() -> Stamp {
        let read = match source() {
            Source::Counting(id) => counting(*id).unwrap_or_default(),
            Source::Instant(start) => start.elapsed(),
        };
        Stamp(read + slept())
    }
}

impl Add<Duration> for Stamp {
    type Output = Stamp;
    fn add(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_add(d))
    }
}

impl Sub<Duration> for Stamp {
    type Output = Stamp;
    fn sub(self, d: Duration) -> Stamp {
        Stamp(self.0.saturating_sub(d))
    }
}

enum Source {
    /// A `clock_gettime` clock that counts time asleep.
    #[cfg_attr(
        not(any(target_os = "linux", target_os = "android", target_vendor = "apple")),
        allow(dead_code)
    )]
    Counting(libc::clockid_t),
    /// `Instant`, from this first reading: every reading comes from the one source chosen.
    Instant(Instant),
}

fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let id = Some(libc::CLOCK_BOOTTIME);
        #[cfg(target_vendor = "apple")]
        let id = Some(libc::CLOCK_MONOTONIC);
        #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
        let id: Option<libc::clockid_t> = None;
        match id.filter(|id| counting(*id).is_some()) {
            Some(id) => Source::Counting(id),
            None => Source::Instant(Instant::now()),
        }
    })
}

#[cfg_attr(
    not(any(target_os = "linux", target_os = "android", target_vendor = "apple")),
    allow(dead_code)
)]
fn counting(id: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

#[cfg(not(test))]
fn slept() -> Duration {
    Duration::ZERO
}

#[cfg(test)]
fn slept() -> Duration {
    tests::SLEPT.with(std::cell::Cell::get)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// The time this thread's tests had the machine "suspended": what the counting
        /// clock has and `Instant` lacks.
        pub(super) static SLEPT: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    /// Has the machine sleep for `d`, as this thread's readings see it.
    pub(crate) fn suspend(d: Duration) {
        SLEPT.with(|s| s.set(s.get() + d));
    }

    #[test]
    fn readings_go_forward() {
        let a = Stamp::now();
        let b = Stamp::now();
        assert!(b >= a);
        assert_eq!(a + Duration::from_secs(5) - Duration::from_secs(5), a);
        assert_eq!(
            Stamp(Duration::ZERO) - Duration::from_secs(1),
            Stamp(Duration::ZERO)
        );
    }

    /// The kernel's uptime counts the time suspended, as `CLOCK_BOOTTIME` does and
    /// `CLOCK_MONOTONIC`, `Instant`'s, does not.
    #[cfg(target_os = "linux")]
    #[test]
    fn on_linux_the_clock_is_the_uptime_that_counts_sleep() {
        let uptime = || {
            let text = std::fs::read_to_string("/proc/uptime").unwrap();
            let secs: f64 = text.split(' ').next().unwrap().parse().unwrap();
            Duration::from_secs_f64(secs)
        };
        let before = uptime();
        let now = Stamp::now().0;
        let after = uptime();
        // /proc/uptime is in hundredths of a second.
        let slack = Duration::from_millis(20);
        assert!(
            before <= now + slack && now <= after + slack,
            "{before:?} {now:?} {after:?}"
        );
    }
}
