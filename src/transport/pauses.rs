//! `Retry-After` pauses of the places redirects lead to (a CDN, an object store), by origin.
//!
//! The host a request is addressed to keeps its own pause (`Host`'s). A blob store that a
//! registry redirects to is another server with its own limits: its "come back in 2 s"
//! holds the requests that reach it, from every repository of the run, and not the
//! registry's other requests (manifests, the first request for other blobs), which it
//! did not answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use http::Uri;
use tokio::time::Instant;

use super::redirect::Origin;

/// Origins held at once at most. Only origins whose pause still runs are kept, so a run
/// rarely holds more than one or two; past this, the pause that ends first is dropped
/// (its requests find out for themselves, as before there were pauses).
const MAX_PAUSED: usize = 64;

/// The running pauses of redirect targets, shared by the clones of a transport.
#[derive(Default)]
pub(super) struct Pauses {
    /// Entries in `until`: every redirect reads it, and nearly always finds none, without
    /// the lock or working out the target's origin.
    len: AtomicUsize,
    until: Mutex<HashMap<Origin, Instant>>,
}

impl Pauses {
    /// Holds requests to `url`'s origin until `delay` from now (extending, never
    /// shortening, a pause).
    pub(super) fn pause(&self, url: &Uri, delay: Duration) {
        let now = Instant::now();
        // The server's number, past the clock's range for a policy that lets any through.
        let until = now
            .checked_add(delay)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86400));
        let mut map = self.until.lock().expect("pauses poisoned");
        map.retain(|_, t| *t > now);
        let origin = Origin::of(url);
        if !map.contains_key(&origin) && map.len() >= MAX_PAUSED {
            let first = map.iter().min_by_key(|(_, t)| **t).map(|(o, _)| o.clone());
            if let Some(first) = first {
                map.remove(&first);
            }
        }
        let t = map.entry(origin).or_insert(until);
        if *t < until {
            *t = until;
        }
        self.len.store(map.len(), Ordering::Relaxed);
    }

    /// When the pause of `url`'s origin ends, if one is running.
    pub(super) fn until(&self, url: &Uri) -> Option<Instant> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let map = self.until.lock().expect("pauses poisoned");
        let t = *map.get(&Origin::of(url))?;
        (t > Instant::now()).then_some(t)
    }

    /// How many origins are held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        let now = Instant::now();
        let map = self.until.lock().expect("pauses poisoned");
        map.values().filter(|t| **t > now).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_its_origin_only_and_only_extends() {
        let p = Pauses::default();
        assert_eq!(p.until(&url("https://cdn.example/a")), None);
        p.pause(
            &url("https://CDN.example:443/blob?sig=x"),
            Duration::from_secs(2),
        );
        p.pause(&url("https://cdn.example/other"), Duration::from_secs(1));
        let until = p.until(&url("https://cdn.example/b")).expect("held");
        assert_eq!(until - Instant::now(), Duration::from_secs(2));
        for other in [
            "http://cdn.example/a",
            "https://cdn.example:8443/a",
            "https://registry.example/v2/",
        ] {
            assert_eq!(p.until(&url(other)), None, "{other}");
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(p.until(&url("https://cdn.example/a")), None, "over");
        // A pause past the clock's range holds, rather than panicking.
        p.pause(&url("https://cdn.example/a"), Duration::MAX);
        assert!(p.until(&url("https://cdn.example/a")).is_some());
    }

    /// A registry that sends each blob to a host of its own cannot grow the map without
    /// end: pauses that ran out go, and past the bound the one ending first does.
    #[tokio::test(start_paused = true)]
    async fn the_map_keeps_running_pauses_only_and_is_bounded() {
        let p = Pauses::default();
        for i in 0..10 {
            p.pause(
                &url(&format!("https://s{i}.example/")),
                Duration::from_secs(1),
            );
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        p.pause(&url("https://last.example/"), Duration::from_secs(1));
        assert_eq!(p.until.lock().unwrap().len(), 1, "ended pauses dropped");
        for i in 0..(MAX_PAUSED as u64 + 10) {
            let secs = 100 + i;
            p.pause(
                &url(&format!("https://b{i}.example/")),
                Duration::from_secs(secs),
            );
        }
        assert_eq!(p.held(), MAX_PAUSED);
        // The latest is kept, the earliest-ending ones made room.
        let last = format!("https://b{}.example/", MAX_PAUSED + 9);
        assert!(p.until(&url(&last)).is_some());
        assert!(p.until(&url("https://b0.example/")).is_none());
    }
}
