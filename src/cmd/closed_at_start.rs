//! Which of stdin and stdout the process started without (`<&-`, `>&-`, a daemon's job run
//! with a descriptor closed). Rust's runtime opens /dev/null in place of a closed
//! descriptor 0, 1 or 2 before `main`, so that no file or socket opened later takes its
//! number: reads there found an empty input and writes succeeded, and a worker with no
//! input, or a fetch whose object went nowhere, exited 0 where `cat` fails with "Bad file
//! descriptor". Recorded by [`record`], which runs before that.

use std::sync::atomic::{AtomicBool, Ordering};

static STDIN: AtomicBool = AtomicBool::new(false);
static STDOUT: AtomicBool = AtomicBool::new(false);

/// Whether descriptor 0 was closed when the process started.
pub fn stdin() -> bool {
    STDIN.load(Ordering::Relaxed)
}

/// Whether descriptor 1 was closed when the process started.
pub fn stdout() -> bool {
    STDOUT.load(Ordering::Relaxed)
}

/// The error a read of stdin or a write to stdout gets when the process started without it.
pub fn error() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::EBADF)
}

/// Run by the C runtime with the program's other initialisers, before Rust's runtime
/// starts and fills in a closed descriptor.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static RECORD: extern "C" fn() = record;

#[cfg(target_os = "linux")]
extern "C" fn record() {
    // SAFETY: F_GETFD only asks whether a descriptor is open.
    let closed = |fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1;
    STDIN.store(closed(libc::STDIN_FILENO), Ordering::Relaxed);
    STDOUT.store(closed(libc::STDOUT_FILENO), Ordering::Relaxed);
}
