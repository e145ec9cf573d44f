//! When and how long to wait before trying a request again.
//!
//! One policy serves every request of every command: connection errors, timeouts, 408,
//! 429, 500, 502, 503 and 504 are retried with exponential backoff and jitter, bounded in
//! attempts. `Retry-After` on 429 and 503 is honoured, and that pause applies to the whole
//! host ([`HostPause`]): when the registry says "slow down", every task waits, instead of each
//! one finding out for itself. A pause asked for by the server a redirect led to (a CDN)
//! holds that server's origin only, in the transport that follows redirects. A registry
//! failing every request is asked one request at a time (`registry::outage`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use http::HeaderMap;

use crate::error::Error;

/// How often and how patiently to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`--retries`).
    pub retries: u32,
    /// The first backoff; each later one doubles it.
    pub base_delay: Duration,
    /// Cap on one backoff, and on a `Retry-After` we are willing to wait for.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The pause before retry number `retry` (0-based): exponential, capped, with jitter
    /// between half and all of it so that tasks which failed together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << retry.min(16));
        let full = exp.min(self.max_delay);
        let half = full / 2;
        half + half.mul_f64(jitter())
    }

    /// The shortest pause [`backoff`](Self::backoff) may give before retry number
    /// `retry`: how long a host failing request after request is left alone by the
    /// requests that did not fail, which the one that did outwaits with its own backoff.
    pub fn least_backoff(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << retry.min(16));
        exp.min(self.max_delay) / 2
    }

    /// The pause before retry number `retry` when the server asked for `asked`: what it
    /// asked for, but never less than the backoff. `Retry-After: 0`, or a date that a clock
    /// ahead of the server's reads as past, would otherwise spend every retry within
    /// milliseconds, on a registry that is restarting or shedding load.
    pub fn wait(&self, retry: u32, asked: Option<Duration>) -> Duration {
        let backoff = self.backoff(retry);
        asked.map_or(backoff, |asked| asked.max(backoff))
    }

    /// Whether a request that failed with `e`, `spent` of its `max_retries` retries
    /// spent, is tried again, and after how long. `asked` is the wait its response asked
    /// for; without one, the wait `e` carries (a token server's) counts. One rule for
    /// every caller that counts a request's retries, so that a request ended early to ask
    /// elsewhere first (a digest hinted as a manifest) is asked again exactly when its
    /// own retries would have asked.
    pub(crate) fn next(
        &self,
        e: &Error,
        spent: u32,
        max_retries: u32,
        asked: Option<Duration>,
    ) -> Next {
        let asked = asked.or_else(|| e.retry_after());
        if !e.is_transient() {
            return Next::Permanent;
        }
        // Before the count: "come back in an hour" explains a last attempt's failure too.
        if let Some(d) = asked.filter(|d| *d > self.max_delay) {
            return Next::WaitsTooLong(d);
        }
        if spent >= max_retries {
            return Next::Spent;
        }
        Next::Retry(self.wait(spent, asked))
    }
}

/// What a failed request calls for ([`RetryPolicy::next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again after this pause.
    Retry(Duration),
    /// Not again: the failure is not one that passes.
    Permanent,
    /// Not again: the server asked for this pause, longer than the policy's `max_delay`;
    /// sleeping through it would only hold the job.
    WaitsTooLong(Duration),
    /// Not again: every retry is spent.
    Spent,
}

/// A number in [0, 1) that differs between calls and processes; no crate needed for this.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses `Retry-After`: delay seconds, or an HTTP-date.
///
/// A date is counted from the response's own `Date`, as RFC 9111 counts `Expires`: both
/// come from the server's clock, which may be minutes away from this one. Read by the
/// local clock, a server ahead asked for seconds and seemed to ask for longer than dist
/// waits, and one behind seemed to ask for no pause at all. Without a `Date`, the local
/// clock is all there is.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let date = |name| {
        let v = headers.get(name)?.to_str().ok()?.trim();
        httpdate::parse_http_date(v).ok()
    };
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    // Digits only (RFC 9110's `1*DIGIT`): `u64::from_str` takes a leading '+', and
    // `+5` read as 5 s where curl, whose number parser takes no sign, reads no delay.
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // More seconds than a u64 holds is still a number of seconds, the longest there
        // is (as RFC 9111 reads an overflowing delta-seconds): taken for no header, it
        // was retried at the usual pace instead of failing at once as a long wait does.
        return Some(v.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let when = date(http::header::RETRY_AFTER)?;
    let now = date(http::header::DATE).unwrap_or_else(SystemTime::now);
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A pause shared by every task talking to one host.
#[derive(Debug, Default)]
pub struct HostPause {
    until: Mutex<Option<Instant>>,
}

impl HostPause {
    /// Makes every task wait until `delay` from now (extending, never shortening, a pause).
    pub fn pause_for(&self, delay: Duration) {
        // The delay is the server's number, and a policy may let any through: past the
        // clock's range, the sum would panic. Thirty years is as long, as tokio counts it.
        let now = Instant::now();
        let until = now
            .checked_add(delay)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86400));
        let mut u = self.until.lock().expect("pause poisoned");
        if u.is_none_or(|t| t < until) {
            *u = Some(until);
        }
    }

    /// When the current or last pause ends (or ended); `None` if there never was one.
    pub(crate) fn until(&self) -> Option<Instant> {
        *self.until.lock().expect("pause poisoned")
    }

    /// Whether a pause is running now.
    pub fn running(&self) -> bool {
        let until = *self.until.lock().expect("pause poisoned");
        until.is_some_and(|t| t > Instant::now())
    }

    /// Waits out the current pause, if any.
    pub async fn wait(&self) {
        loop {
            let until = *self.until.lock().expect("pause poisoned");
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for retry in 0..10 {
            let full = (Duration::from_millis(100) * (1 << retry)).min(Duration::from_secs(1));
            let d = p.backoff(retry);
            assert_eq!(p.least_backoff(retry), full / 2);
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry}: {d:?} vs {full:?}"
            );
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(3)).collect();
        assert!(samples.len() > 1, "jitter should vary");
    }

    #[test]
    fn a_retry_after_lengthens_the_backoff_and_never_shortens_it() {
        let p = RetryPolicy::default();
        for retry in 0..4 {
            let least = p.base_delay * (1 << retry) / 2;
            for asked in [None, Some(Duration::ZERO), Some(Duration::from_millis(1))] {
                let d = p.wait(retry, asked);
                assert!(d >= least, "retry {retry}, asked {asked:?}: {d:?}");
            }
        }
        assert_eq!(
            p.wait(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn the_next_attempt_follows_one_rule() {
        use crate::error::ErrorKind;
        let p = RetryPolicy {
            retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        };
        let status = |s| Error::new(ErrorKind::Http, "answered").with_status(s);
        let long = Duration::from_secs(11);
        let short = Duration::from_secs(7);

        // Not transient: whatever was asked or spent.
        let refused = status(403).with_retry_after(Some(short));
        assert_eq!(p.next(&refused, 0, 3, Some(short)), Next::Permanent);
        assert_eq!(p.next(&status(404), 0, 3, None), Next::Permanent);

        // A wait past `max_delay`, from the response or carried by the error, ends it
        // even on the last attempt.
        assert_eq!(
            p.next(&status(503), 0, 3, Some(long)),
            Next::WaitsTooLong(long)
        );
        let carried =
            Error::new(ErrorKind::TooManyRequests, "slow down").with_retry_after(Some(long));
        assert_eq!(p.next(&carried, 3, 3, None), Next::WaitsTooLong(long));
        // The response's own wait counts before the error's.
        let carried_short = status(503).with_retry_after(Some(short));
        assert_eq!(
            p.next(&carried_short, 0, 3, Some(long)),
            Next::WaitsTooLong(long)
        );

        // Spent: the budget is the caller's, not the policy's `retries`.
        assert_eq!(p.next(&status(500), 3, 3, None), Next::Spent);
        assert_eq!(p.next(&status(500), 1, 1, None), Next::Spent);
        let timeout = Error::new(ErrorKind::Timeout, "timed out");
        assert_eq!(p.next(&timeout, 0, 0, None), Next::Spent);

        // Retried, after the wait asked for (never less than the backoff), or the backoff.
        assert_eq!(p.next(&status(503), 0, 3, Some(short)), Next::Retry(short));
        assert_eq!(p.next(&carried_short, 2, 3, None), Next::Retry(short));
        let Next::Retry(wait) = p.next(&status(502), 2, 3, None) else {
            panic!("a 502 with retries left is retried");
        };
        assert!(
            wait >= p.least_backoff(2) && wait <= p.least_backoff(2) * 2,
            "{wait:?}"
        );
        let Next::Retry(wait) = p.next(&status(500), 1, 3, Some(Duration::ZERO)) else {
            panic!("a 500 with retries left is retried");
        };
        assert!(wait >= p.least_backoff(1), "{wait:?}");
    }

    #[test]
    fn parses_retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            http::header::RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        h.insert(
            http::header::RETRY_AFTER,
            "99999999999999999999999".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::MAX));
        for not_seconds in ["-5", "1.5", "5s", "+5", "+"] {
            h.insert(http::header::RETRY_AFTER, not_seconds.parse().unwrap());
            assert_eq!(retry_after(&h), None, "{not_seconds}");
        }
    }

    #[test]
    fn a_retry_after_date_counts_from_the_server_s_date() {
        let date = |t: SystemTime| httpdate::fmt_http_date(t).parse().unwrap();
        let hour = Duration::from_secs(3600);
        for server_now in [SystemTime::now() + hour, SystemTime::now() - hour] {
            let mut h = HeaderMap::new();
            h.insert(http::header::DATE, date(server_now));
            let later = server_now + Duration::from_secs(30);
            h.insert(http::header::RETRY_AFTER, date(later));
            assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
            h.insert(http::header::RETRY_AFTER, date(server_now - hour));
            assert_eq!(retry_after(&h), Some(Duration::ZERO));
            // A `Date` that is no date leaves the local clock to read it by.
            h.insert(http::header::DATE, "yesterday".parse().unwrap());
            h.insert(http::header::RETRY_AFTER, date(SystemTime::now() + hour));
            let d = retry_after(&h).unwrap();
            assert!(d > hour - Duration::from_secs(5) && d <= hour, "{d:?}");
        }
    }

    /// A library's policy may take any `Retry-After` (`max_delay: Duration::MAX`), and a
    /// server may ask for `u64::MAX` seconds: past the clock's range, that pause panicked.
    #[tokio::test]
    async fn a_pause_past_the_clock_s_range_holds_the_host() {
        let p = HostPause::default();
        p.pause_for(Duration::MAX);
        assert!(p.running());
        p.pause_for(Duration::from_secs(1));
        assert!(p.running());
    }

    #[tokio::test(start_paused = true)]
    async fn pause_is_shared_and_only_extends() {
        let p = std::sync::Arc::new(HostPause::default());
        p.pause_for(Duration::from_secs(2));
        p.pause_for(Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        let (a, b) = (p.clone(), p.clone());
        tokio::join!(a.wait(), b.wait());
        assert!(start.elapsed() >= Duration::from_secs(2));
    }
}
