//! A credential helper run in a process group of its own, so that giving up on it stops
//! everything it started, not only the helper itself.

use std::io;
use std::process::ExitStatus;

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
}

impl Group {
    /// Spawns `command` as the leader of a new process group.
    pub(super) fn spawn(command: &mut Command) -> io::Result<Group> {
        let child = command.process_group(0).kill_on_drop(true).spawn()?;
        Ok(Group { child })
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
        // the leader's own, which no other process can take.
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
