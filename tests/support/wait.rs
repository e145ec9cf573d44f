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

/// Opens of one file by any process, watched with inotify(7): the event that shows a run
/// got to a file (a lock it waits for) where nothing else it does can be seen. (The
/// library's unit tests have their own, in `src/pull/tests.rs`: tests/ is another crate.)
pub struct Opens(std::os::fd::OwnedFd);

impl Opens {
    /// Watches `path`, which must exist, for opens from now on.
    pub fn of(path: &std::path::Path) -> Opens {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: inotify_init1 takes no pointers; its descriptor, checked, is owned here.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: as above.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a live descriptor and a NUL-terminated path that outlives the call.
        let watch = unsafe {
            libc::inotify_add_watch(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                name.as_ptr(),
                libc::IN_OPEN,
            )
        };
        assert!(
            watch >= 0,
            "inotify_add_watch: {}",
            std::io::Error::last_os_error()
        );
        Opens(fd)
    }

    /// Waits for the file's next open (or the next since the last wait), failing the test,
    /// named by `what`, once `limit` has passed.
    pub fn next(&self, limit: Duration, what: &str) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.0);
        let mut watched = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one pollfd, alive for the call.
        let ready = unsafe { libc::poll(&mut watched, 1, ms) };
        assert!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
        assert!(ready > 0, "waited {limit:?} for {what}");
        // The events read out, so that the next wait is for a later open.
        let mut events = [0u8; 4096];
        // SAFETY: reads into a buffer of its length, alive for the call.
        let n = unsafe { libc::read(fd, events.as_mut_ptr().cast(), events.len()) };
        assert!(n > 0, "read: {}", std::io::Error::last_os_error());
    }
}
