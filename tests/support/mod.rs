//! Shared test harness: a real `docker-registry` process in every auth mode, the token
//! issuer the bearer mode needs, and an in-process registry that injects faults.
#![allow(dead_code)]

pub mod cli;
pub mod fake;
pub mod listen;
pub mod opens;
pub mod proxy;
pub mod registry;
pub mod socks;
pub mod token;
pub mod wait;

/// A host name the system resolver answers "no such name" for on every machine, with or
/// without a DNS server: 263 bytes, over the 255 a DNS name can carry (RFC 1035), so
/// glibc refuses it itself, as `EAI_NONAME` ("Name or service not known"), without a
/// query. Each label is 63 bytes, the most DNS allows, as dist refuses a longer one
/// before any lookup. A name under `.invalid` (RFC 6761) is answered so only where a DNS
/// server answers it, and a machine without one says "Temporary failure in name
/// resolution". Over https, TLS refuses the name before any lookup: reach it over
/// `http://`.
pub fn no_such_host() -> String {
    let label = "x".repeat(63);
    format!("{label}.{label}.{label}.{label}.invalid")
}

/// A pipe already full, for a child's stdout whose reader does not read: its first write
/// blocks, event-free, where a pipe the test stops reading fills only after 64 KiB of
/// output. Shrunk to one page and given that page first; the reading end is returned to
/// be held (closed, the writer would find its reader gone), the writing end to hand over.
pub fn full_pipe() -> (std::fs::File, std::fs::File) {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, which the files then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (read, mut write) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: F_SETPIPE_SZ takes an int; the pipe's size is then one page at least.
    let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(size > 0, "{}", std::io::Error::last_os_error());
    write.write_all(&vec![b'#'; size as usize]).unwrap();
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int, the bytes waiting in the pipe.
    assert_eq!(
        unsafe { libc::ioctl(read.as_raw_fd(), libc::FIONREAD, &mut queued) },
        0
    );
    assert_eq!(queued, size, "the pipe is not full");
    (read, write)
}
