//! Opens of a file, watched with inotify(7). Shared by the integration tests and the
//! library's own unit tests (`src/pull/tests.rs`, by `#[path]`), which are another crate.

use std::time::Duration;

/// Opens of one file by any process, watched with inotify(7): the event that shows a run
/// got to a file (a lock it waits for) where nothing else it does can be seen.
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
