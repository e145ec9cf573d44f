//! The steps a worker or `dist pull` takes before its batch that may wait: opening the
//! layout `-o DIR` names on a slow disk, and a `--report` FIFO waiting for its reader.
//! Each runs off the runtime's thread, waited for under the run's stop, so that a signal
//! or `--timeout` ends the wait as it ends a fetch: on the runtime's thread they held the
//! stop off until they were done, for ever for a FIFO nobody opened.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use dist::sink::layout::LayoutStore;

use super::report_file::{self, InUse, Opened};
use super::{report, unless_stopped, Stop, EXIT_USAGE};

/// Opens (creating if needed) the layout `-o DIR` names ([`super::layout_dir::open`]),
/// unless `stop` comes first. `Err` is the exit status, the reason said. A layout made
/// for a run that stopped meanwhile is removed again once made, as the run would have.
pub async fn open_layout<S: Future<Output = Stop>>(
    dir: &Path,
    pull: bool,
    stop: &mut Pin<&mut S>,
) -> Result<LayoutStore, u8> {
    let dir = dir.to_path_buf();
    let open = move || super::layout_dir::open(&dir, pull);
    let unused = |opened: dist::Result<LayoutStore>| {
        if let Ok(store) = opened {
            store.remove_if_unused();
        }
    };
    match off_runtime(Runs::OnThePool, open, unused, stop).await {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(e)) => Err(report(&e, EXIT_USAGE)),
        Err(why) => {
            why.say(true);
            Err(why.code())
        }
    }
}

/// Opens the `--report` file, if one was asked for ([`report_file::open`]), unless `stop`
/// comes first: a FIFO waits there for its reader. `store` and `reads_stdin` are what the
/// run uses ([`InUse`]). `Err` is the exit status, the reason said.
pub async fn open_report<S: Future<Output = Stop>>(
    path: Option<&Path>,
    store: Option<&Path>,
    reads_stdin: bool,
    stop: &mut Pin<&mut S>,
) -> Result<Option<Opened>, u8> {
    let Some(path) = path else { return Ok(None) };
    let (report, store) = (path.to_path_buf(), store.map(Path::to_path_buf));
    let open = move || {
        let in_use = InUse {
            store: store.as_deref(),
            reads_stdin,
        };
        report_file::open(Some(&report), &in_use)
    };
    // A report the abandoned open created goes as it is dropped.
    match off_runtime(Runs::Alone, open, drop, stop).await {
        Ok(opened) => opened,
        Err(why) => {
            if let Some(why) = why.why() {
                say!(
                    "dist: --report {}: {why} while waiting for it to open (a FIFO opens once \
                     its reader has opened it); nothing was fetched",
                    path.display()
                );
            }
            Err(why.code())
        }
    }
}

/// Where [`off_runtime`] runs its work, which decides whether the process's end waits for
/// work abandoned to a stop.
enum Runs {
    /// On the runtime's blocking pool, which the process's end waits for (up to 2 s, in
    /// `main`): a layout made just as the stop came goes again before the exit, as it did
    /// when the layout was opened before the stop was watched.
    OnThePool,
    /// On a thread of its own, which the process's end does not wait for: a FIFO nobody
    /// opens must not hold up the exit of a stopped run.
    Alone,
}

/// The thread [`off_runtime`] ran its work on.
enum Ran {
    Pool(tokio::task::JoinHandle<()>),
    Alone(std::thread::JoinHandle<()>),
}

/// Runs `work` off the runtime's thread ([`Runs`]) and waits for what it returns, unless
/// `stop` comes first: `abandoned` then gets it, on that thread, once `work` is done.
/// Without a thread of its own to be had (`ulimit -u`), `work` runs here, as it did
/// before it had one. A panic in `work` is resumed here.
async fn off_runtime<T, W, A, S>(
    runs: Runs,
    work: W,
    abandoned: A,
    stop: &mut Pin<&mut S>,
) -> Result<T, Stop>
where
    T: Send + 'static,
    W: FnOnce() -> T + Clone + Send + 'static,
    A: FnOnce(T) + Send + 'static,
    S: Future<Output = Stop>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let off = work.clone();
    let job = move || {
        if let Err(unwanted) = tx.send(off()) {
            abandoned(unwanted);
        }
    };
    let ran = match runs {
        Runs::OnThePool => Ran::Pool(tokio::task::spawn_blocking(job)),
        Runs::Alone => match std::thread::Builder::new()
            .name("dist-first-step".into())
            .spawn(job)
        {
            Ok(thread) => Ran::Alone(thread),
            Err(_) => return Ok(work()),
        },
    };
    match unless_stopped(rx, stop).await {
        Ok(Ok(done)) => Ok(done),
        // The sender went without sending: `work` panicked.
        Ok(Err(_)) => {
            let panic = match ran {
                Ran::Pool(task) => task.await.err().map(tokio::task::JoinError::into_panic),
                Ran::Alone(thread) => thread.join().err(),
            };
            std::panic::resume_unwind(panic.expect("the thread sends what its work returns"))
        }
        Err(why) => Err(why),
    }
}
