//! Waiting for an event a test races against (a request served, a file stored), rather
//! than for a fixed pause, which a loaded machine can end before the event.

use std::time::{Duration, Instant};

/// Polls `done` every 10 ms until it holds, failing the test, named by `what`, once
/// `limit` has passed. Returns when the wait began.
pub fn within(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Instant {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "waited for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started
}

/// [`within`] 30 s, for events that come well within a second on an idle machine.
pub fn until(what: &str, done: impl FnMut() -> bool) {
    within(Duration::from_secs(30), what, done);
}

/// Waits for `child` to exit, killing it and failing the test, named by `what`, once
/// `limit` has passed: a run that hangs fails its test instead of holding the suite.
pub fn exit_within(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: still running {limit:?} later");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
