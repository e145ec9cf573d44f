//! Waiting on a standard stream that another process made non-blocking (an asyncio
//! wrapper, Node's `child_process`, a CI runner's terminal): it answers "not now"
//! (`EAGAIN`) where a blocking one would wait, and dist waits instead of failing.

/// Blocks until `fd` is ready for `events` (`POLLIN`, `POLLOUT`), or has reached its end
/// or lost its peer: the next read or write says which.
pub(super) fn ready(fd: libc::c_int, events: libc::c_short) -> std::io::Result<()> {
    let mut watched = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid `pollfd`, and a count of one.
        if unsafe { libc::poll(&mut watched, 1, -1) } >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
