//! A credential helper run in a process group of its own, so that giving up on it stops
//! everything it started, not only the helper itself; but not where dist has a
//! controlling terminal, where a helper may prompt on it.

use std::io;
use std::process::ExitStatus;
use std::sync::OnceLock;

use tokio::process::{Child, Command};

/// A child leading its own process group, which is killed whole when this is dropped
/// before the child was waited for (a timeout, an oversized reply, the run stopped).
///
/// Helpers are often shell scripts (`docker-credential-gcloud`, wrappers around `pass`
/// or a vault CLI) whose work is done by a program they start: killing the script alone
/// left that program running, holding the pipes, for as long as it hung, one more with
/// each lookup given up on.
pub(super) struct Group {
    child: Child,
    /// Whether the child leads a group of its own, which is then killed whole.
    own: bool,
}

/// Whether helpers get a process group of their own: not when dist has a controlling
/// terminal. A helper that asks for a passphrase or a one-time code on `/dev/tty` (a
/// password manager's CLI) would, from a background group, be stopped by the terminal
/// at its first read and hang until its timeout; and Ctrl-C reaches what it started
/// anyway, the terminal signalling its whole foreground group. Without a terminal (a CI
/// job, a service), nothing else stops what a hung helper left running.
pub(super) fn separate() -> bool {
    // Unit tests give up on helpers that start programs, whether or not they were run
    // from a terminal.
    if cfg!(test) {
        return true;
    }
    static NO_TERMINAL: OnceLock<bool> = OnceLock::new();
    *NO_TERMINAL.get_or_init(|| std::fs::File::open("/dev/tty").is_err())
}

impl Group {
    /// Spawns `command`, as the leader of a new process group when `own`.
    pub(super) fn spawn(command: &mut Command, own: bool) -> io::Result<Group> {
        if own {
            command.process_group(0);
        }
        let child = command.kill_on_drop(true).spawn()?;
        Ok(Group { child, own })
    }

    /// The child, to take its pipes.
    pub(super) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits for the leader to exit. What it left running after an exit of its own is
    /// its business (an agent it starts on purpose), and is not killed.
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // `id` is `None` once the leader was reaped: its number may then belong to
        // another process group, and nothing is sent. Until then, the group's id is
        // the leader's own, which no other process can take. Without a group of its own,
        // `kill_on_drop` stops the helper alone.
        if !self.own {
            return;
        }
        if let Some(pid) = self
            .child
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
        {
            // SAFETY: kill(2) with a negative pid signals that process group; it touches
            // no memory.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}
