//! The steps a worker or `dist pull` takes before its batch that may wait: opening the
//! layout `-o DIR` names on a slow disk, and a `--report` FIFO waiting for its reader.
//! Each runs off the runtime's thread, waited for under the run's stop, so that a signal
//! or `--timeout` ends the wait as it ends a fetch: on the runtime's thread they held the
//! stop off until they were done, for ever for a FIFO nobody opened.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

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
    let shown = dir.display().to_string();
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
        Err(Unrun::NoThread(e)) => Err(no_thread("open the layout", &e)),
        // Nothing has run yet: "objects reported so far are complete; downloads cut short
        // … are kept" was said of a run that had fetched nothing. What the open made goes
        // as it returns, which the exit waits for (up to 2 s, in `main`).
        Err(Unrun::Stopped(why)) => {
            if let Some(why) = why.why() {
                say!(
                    "dist: {why} while opening the layout {shown}; nothing was fetched, and \
                     what this run made of the layout is removed once its making returns"
                );
            }
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
        Err(Unrun::NoThread(e)) => Err(no_thread("open the report", &e)),
        Err(Unrun::Stopped(why)) => {
            if let Some(why) = why.why() {
                say!(
                    "dist: --report {}: {why} while waiting for it to open (a FIFO opens once \
                     its reader has opened it; a file created is synced to disk first); \
                     nothing was fetched",
                    path.display()
                );
            }
            Err(why.code())
        }
    }
}

/// Whether tokio's blocking pool has the thread `main` starts for it and keeps for the
/// whole run: past a limit on threads, work is queued for it. Without it, tokio starts a
/// thread for the work, and panics (status 101) where none is to be had.
static POOL_KEPT: AtomicBool = AtomicBool::new(false);

/// Tells the first steps that the blocking pool has its kept thread (see [`POOL_KEPT`]).
pub fn pool_kept() {
    POOL_KEPT.store(true, Ordering::Release);
}

/// Says that no thread could be had to `what` (`open the report`), and returns the exit
/// status: as a run without its output thread, which it would be a moment later.
fn no_thread(what: &str, e: &std::io::Error) -> u8 {
    say!(
        "dist: cannot start a thread to {what}: {e} (a limit on threads: ulimit -u or -v, or \
         the cgroup's pids.max)"
    );
    EXIT_USAGE
}

/// Why [`off_runtime`] returned no value of its work.
enum Unrun {
    /// The run's stop came first.
    Stopped(Stop),
    /// No thread to run it was to be had: none of its own, and the blocking pool had none
    /// and could start none.
    NoThread(std::io::Error),
}

/// Where [`off_runtime`] runs its work, which decides whether the process's end waits for
/// work abandoned to a stop.
enum Runs {
    /// On the runtime's blocking pool, which the process's end waits for (up to 2 s, in
    /// `main`): a layout made just as the stop came goes again before the exit, as it did
    /// when the layout was opened before the stop was watched. On a thread of its own where
    /// the pool has none ([`POOL_KEPT`]).
    OnThePool,
    /// On a thread of its own, which the process's end does not wait for: a FIFO nobody
    /// opens must not hold up the exit of a stopped run. On the pool where no thread of
    /// its own can be had, which the exit then waits for up to its 2 s.
    Alone,
}

/// The thread [`off_runtime`] ran its work on.
enum Ran {
    Pool(tokio::task::JoinHandle<()>),
    Alone(std::thread::JoinHandle<()>),
}

/// Runs `work` off the runtime's thread ([`Runs`]) and waits for what it returns, unless
/// `stop` comes first: `abandoned` then gets it, once `work` is done (on the runtime's
/// thread when it was sent just as the stop came). Without a thread of its own to be had
/// (`ulimit -u`), `work` goes to the blocking pool, which has one kept for such a limit
/// (in `main`): run here, a FIFO nobody opened held the runtime's thread, and with it the
/// stop that dist's handlers caught, for ever. Where the pool has none either, the pool's
/// work goes to a thread of its own, and without one `work` is not run
/// ([`Unrun::NoThread`]). A panic in `work` is resumed here.
async fn off_runtime<T, W, A, S>(
    runs: Runs,
    work: W,
    abandoned: A,
    stop: &mut Pin<&mut S>,
) -> Result<T, Unrun>
where
    T: Send + 'static,
    W: FnOnce() -> T + Clone + Send + 'static,
    A: FnOnce(T) + Clone + Send + 'static,
    S: Future<Output = Stop>,
{
    // The work as a thread's job, and where it sends what it returns.
    let job = || {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (work, abandoned) = (work.clone(), abandoned.clone());
        let job = move || {
            if let Err(value) = tx.send(work()) {
                abandoned(value);
            }
        };
        (job, rx)
    };
    let on_the_pool = |(job, rx)| (Ran::Pool(tokio::task::spawn_blocking(job)), rx);
    // With no thread to be had, tokio's panic ended the run (status 101): the pool only
    // queues work past a limit on threads when it has one.
    let pool = POOL_KEPT.load(Ordering::Acquire);
    let (ran, mut rx) = match runs {
        Runs::OnThePool if pool => on_the_pool(job()),
        Runs::OnThePool | Runs::Alone => {
            let (alone, rx) = job();
            let spawned = std::thread::Builder::new()
                .name("dist-first-step".into())
                .spawn(alone);
            match spawned {
                Ok(thread) => (Ran::Alone(thread), rx),
                // The job went with the failed spawn, unrun.
                Err(_) if pool => on_the_pool(job()),
                Err(e) => return Err(Unrun::NoThread(e)),
            }
        }
    };
    match unless_stopped(&mut rx, stop).await {
        Ok(Ok(done)) => Ok(done),
        // The sender went without sending: `work` panicked.
        Ok(Err(_)) => {
            let panic = match ran {
                Ran::Pool(task) => task.await.err().map(tokio::task::JoinError::into_panic),
                Ran::Alone(thread) => thread.join().err(),
            };
            std::panic::resume_unwind(panic.expect("the thread sends what its work returns"))
        }
        Err(why) => {
            // Sent after the receiver was last looked at, in the turn the stop came: it
            // would go unseen with the receiver (a layout made as a signal came, left).
            rx.close();
            if let Ok(value) = rx.try_recv() {
                abandoned(value);
            }
            Err(Unrun::Stopped(why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Barrier, Mutex};
    use std::task::Poll;

    /// Tells of its thread's end as the thread's locals go: after its work's value was sent.
    struct Ends(mpsc::Sender<()>);

    impl Drop for Ends {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    thread_local! {
        static ENDS: std::cell::RefCell<Option<Ends>> = const { std::cell::RefCell::new(None) };
    }

    /// A stop that comes in the same turn as the work's value, sent after the receiver was
    /// last looked at: the value is abandoned as one that came later is. It was dropped with
    /// the receiver instead, and a layout made as a signal came stayed behind.
    #[tokio::test]
    async fn a_value_sent_as_the_stop_comes_is_abandoned() {
        let (ended, thread_ended) = mpsc::channel();
        let ended = Arc::new(Mutex::new(ended));
        let go = Arc::new(Barrier::new(2));
        let abandoned = Arc::new(AtomicUsize::new(0));
        let work = {
            let go = go.clone();
            move || {
                let ended = ended.lock().unwrap().clone();
                ENDS.with(|e| *e.borrow_mut() = Some(Ends(ended)));
                go.wait();
                "made"
            }
        };
        let counted = abandoned.clone();
        let abandon = move |_: &str| {
            counted.fetch_add(1, Ordering::SeqCst);
        };
        // Looked at after the work's receiver: lets the work go, and comes once its thread
        // has sent the value and ended.
        let stop = std::future::poll_fn(move |_| {
            go.wait();
            thread_ended.recv().unwrap();
            Poll::Ready(Stop::Signal(130))
        });
        let mut stop = std::pin::pin!(stop);
        let ran = off_runtime(Runs::Alone, work, abandon, &mut stop).await;
        assert!(matches!(ran, Err(Unrun::Stopped(Stop::Signal(130)))));
        assert_eq!(
            abandoned.load(Ordering::SeqCst),
            1,
            "the value was dropped unseen"
        );
    }
}
