//! One fetch of a blob into a store at a time, across processes: runs into one layout
//! that want the same blob at once (pulls of images sharing a layer, started together by a
//! mirroring job) download it once. The others wait for the blob to be stored and report
//! it found there, or take over when the fetch stopped without storing it, carrying on
//! what it kept ([`LayoutStore::try_ingest`]). This is containerd's ingest lock.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::blocking;
use crate::digest::Digest;
use crate::error::Result;
use crate::sink::layout::{IngestLock, LayoutStore, WaitMark};

/// The first pause between looks while another fetch holds a blob: a small blob's fetch
/// ends within it. Pauses double up to [`LAST_PAUSE`], which bounds how late a waiting run
/// learns that a large blob was stored.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LAST_PAUSE: Duration = Duration::from_millis(500);

/// How long a run waits for another's fetch of a blob that writes nothing of it before
/// saying so, once. The other run may be downloading a large blob over a slow link, which
/// takes minutes and is nothing wrong, and its files then grow; but it may be stopped
/// (Ctrl-Z) or hung, and this run then waits for ever, its progress showing nothing for
/// the blob. 20 s: past a busy registry's pause or a
/// retry's back-off in the other run (a `Retry-After` of a few seconds), before someone
/// watching a run that seems stuck gives up on it.
pub(super) const WARN_AFTER: Duration = Duration::from_secs(20);

/// Blobs from this size on are fetched under a lock. Each lock is a file made and removed
/// beside the blob (seven system calls, two of them journaled on a disk, where every
/// blob's fsync commits them): locking every blob, 1000 blobs of 2 KiB from a local layout
/// took 134 ms instead of 119 ms into tmpfs (medians of 15 interleaved runs), 1.86 s
/// instead of 1.07 s into a busy ext4 disk, and from docker-registry 2.95 s instead of
/// 2.85 s. A second download of a small blob costs less than that.
pub(super) const LOCK_FROM: u64 = 1 << 20;

/// How the wait for a blob's lock ended.
pub(super) enum Claimed {
    /// This fetch holds the blob's lock; the blob is not in the store.
    Mine(IngestLock),
    /// Another fetch stored the blob, of this size, checked as `stored` checks.
    Stored(u64),
}

/// Takes the lock of `digest` in `store` for a fetch, waiting while another fetch holds
/// it. `stored` looks for the blob in the store (hashing it with `--verify-existing`),
/// and is asked again once the lock is taken, since the fetch that held it may have
/// stored the blob just before. The wait is a sleep, so the run's stop (a signal,
/// `--timeout`), which drops the job, ends it at once. Meanwhile the blob is marked waiting
/// in the store ([`LayoutStore::waiting_for_others`]), and once the holder has written
/// nothing of it for [`WARN_AFTER`] a warning names it and the lock file.
pub(super) async fn claim<F, Fut>(
    store: &LayoutStore,
    digest: &Digest,
    mut stored: F,
) -> Result<Claimed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<u64>>>,
{
    let mut pause = FIRST_PAUSE;
    let mut waited = false;
    let mut other: Option<Holder> = None;
    let mut warned = false;
    loop {
        if let Some(claimed) = try_claim(store, digest, &mut stored).await? {
            if waited && matches!(claimed, Claimed::Mine(_)) {
                // The other fetch stopped without storing the blob: what it kept, this
                // one carries on.
                let (s, algorithm) = (store.clone(), digest.algorithm());
                blocking::run("looking for partial downloads failed", move || {
                    s.find_partials(algorithm);
                    Ok(())
                })
                .await?;
            }
            return Ok(claimed);
        }
        if !waited {
            tracing::info!(%digest, "another fetch is storing this blob in the layout; waiting for it");
            waited = true;
        }
        // A fetch of this run holds it (two lines naming the blob with other sizes): it
        // shows in the run's progress and ends with the run, which is no other run's
        // doing, to be warned of or named when the run stops.
        if store.held_here(digest) {
            other = None;
        } else {
            if other.is_none() {
                other = Some(Holder {
                    _mark: store.mark_waiting(digest),
                    since: Instant::now(),
                    looked: Instant::now(),
                    seen: downloading(store, digest).await,
                });
            }
            let holder = other.as_mut().expect("set above");
            if !warned && holder.looked.elapsed() >= WARN_AFTER {
                // Two mirroring jobs sharing large layers wait on each other's downloads,
                // which is nothing wrong: while the holder's files grow it is looked at
                // again later, and only one that wrote nothing for a whole while is warned
                // of.
                let now = downloading(store, digest).await;
                holder.looked = Instant::now();
                if now == holder.seen {
                    warned = true;
                    tracing::warn!(
                        blob = %digest,
                        lock = %store.lock_path(digest).display(),
                        "waited {}s for another run fetching this blob into the layout (it \
                         holds the lock file), which wrote nothing of it in the last {}s; \
                         still waiting: a run stopped (Ctrl-Z) or hung holds it for ever",
                        holder.since.elapsed().as_secs(),
                        WARN_AFTER.as_secs()
                    );
                }
                holder.seen = now;
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LAST_PAUSE);
        if let Some(size) = stored().await? {
            return Ok(Claimed::Stored(size));
        }
    }
}

/// Another run holding a blob's lock, as a run waiting for it sees it.
struct Holder {
    /// The blob marked waiting in the store, until the wait ends.
    _mark: WaitMark,
    /// When the wait began.
    since: Instant,
    /// When the blob's downloads were last looked at ([`LayoutStore::downloading`]), and
    /// what they were then.
    looked: Instant,
    seen: Vec<(String, u64)>,
}

/// [`LayoutStore::downloading`] on the blocking pool; nothing if it could not look (the
/// pool gone with the runtime), which only words a warning.
async fn downloading(store: &LayoutStore, digest: &Digest) -> Vec<(String, u64)> {
    let (store, digest) = (store.clone(), digest.clone());
    let look = move || Ok(store.downloading(&digest));
    blocking::run("looking at the blob's downloads failed", look)
        .await
        .unwrap_or_default()
}

/// [`claim`]'s one try, without waiting: `None` while another fetch holds the lock. Once
/// the lock is taken, `stored` looks again: the fetch that held it may have stored the
/// blob between the caller's look and the lock.
pub(super) async fn try_claim<F, Fut>(
    store: &LayoutStore,
    digest: &Digest,
    stored: &mut F,
) -> Result<Option<Claimed>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<u64>>>,
{
    let Some(lock) = store.try_ingest(digest) else {
        return Ok(None);
    };
    Ok(Some(match stored().await? {
        Some(size) => Claimed::Stored(size),
        None => Claimed::Mine(lock),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use futures::future::BoxFuture;
    use futures::StreamExt;

    use super::super::{run, Destination, Status, WorkerOptions};
    use crate::digest::{Algorithm, Digest};
    use crate::layout_remote::LayoutRemote;
    use crate::remote::Remote;
    use crate::sink::layout::LayoutStore;

    /// A layout as the remote, counting fetches and holding each until let through.
    struct Gated {
        inner: LayoutRemote,
        fetches: AtomicUsize,
        gate: tokio::sync::Semaphore,
        begun: tokio::sync::Notify,
    }

    impl Remote for Gated {
        fn fetch<'a>(
            &'a self,
            object: &'a crate::reference::Object,
            hints: &'a crate::hints::Hints,
        ) -> BoxFuture<'a, crate::error::Result<crate::fetch::Download>> {
            Box::pin(async move {
                self.fetches.fetch_add(1, Ordering::SeqCst);
                self.begun.notify_one();
                self.gate.acquire().await.unwrap().forget();
                self.inner.fetch(object, hints).await
            })
        }

        fn check<'a>(&'a self) -> BoxFuture<'a, crate::error::Result<()>> {
            self.inner.check()
        }

        fn describe(&self) -> String {
            "gated".into()
        }
    }

    /// Two worker runs of one process into one store (a service running pulls side by
    /// side) want the same blob: a lock is held by an open file, not by a process, so the
    /// second waits for the first as another process would, rather than deadlocking on
    /// itself or fetching the blob too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_runs_of_one_process_fetch_a_blob_once() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 253) as u8).collect();
        let d = Digest::of(Algorithm::Sha256, &data);
        let path = src.path().join("blobs/sha256").join(d.encoded());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &data).unwrap();
        LayoutStore::open(src.path()).unwrap();
        let remote = Arc::new(Gated {
            inner: LayoutRemote::new(src.path()),
            fetches: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            begun: tokio::sync::Notify::new(),
        });
        let store = LayoutStore::open(dst.path()).unwrap();
        let worker = |store: LayoutStore| {
            let opts = WorkerOptions {
                destination: Destination::Store {
                    store,
                    verify_existing: false,
                },
                ..WorkerOptions::default()
            };
            let line = format!("{d} size:{}\n", data.len());
            let input = std::io::Cursor::new(line.into_bytes());
            let remote: Arc<dyn Remote> = remote.clone();
            tokio::spawn(run(remote, input, opts).collect::<Vec<_>>())
        };
        let first = worker(store.clone());
        remote.begun.notified().await;
        let second = worker(store.clone());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        remote.gate.add_permits(2);
        let within = std::time::Duration::from_secs(30);
        let first = tokio::time::timeout(within, first).await.unwrap().unwrap();
        let second = tokio::time::timeout(within, second).await.unwrap().unwrap();
        assert_eq!(first[0].status, Status::Ok, "{:?}", first[0].error);
        assert_eq!(second[0].status, Status::Exists, "{:?}", second[0].error);
        assert_eq!(remote.fetches.load(Ordering::SeqCst), 1);
        assert_eq!(std::fs::read(store.blob_path(&d)).unwrap(), data);
        let left = std::fs::read_dir(dst.path().join("blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(left, 1, "the blob alone, no lock file");
    }

    /// A `tracing` writer into a buffer the test reads.
    #[derive(Clone, Default)]
    struct Said(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Said {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Said {
        /// What this thread's warnings say from now on, until the guard is dropped.
        fn warnings() -> (Said, tracing::subscriber::DefaultGuard) {
            let said = Said::default();
            let writer = said.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_writer(move || writer.clone())
                .finish();
            (said, tracing::subscriber::set_default(subscriber))
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Another run holding a blob's lock for ever (stopped with Ctrl-Z, hung) kept a run
    /// waiting without a word: after [`super::WARN_AFTER`] it is warned of once, naming the
    /// blob and the lock file, and the blob is marked waiting in the store (for the
    /// message of a `--timeout`) until the wait ends.
    #[tokio::test(start_paused = true)]
    async fn a_long_wait_for_another_run_is_warned_of_once() {
        use super::{claim, Claimed, WARN_AFTER};
        use std::time::Duration;
        let dst = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dst.path()).unwrap();
        let d = Digest::of(Algorithm::Sha256, b"held by another run");
        let held = held_by_another_run(&store, &d);
        let (said, _logging) = Said::warnings();
        let mut wait = std::pin::pin!(claim(&store, &d, || async { Ok(None) }));
        let early = WARN_AFTER - Duration::from_secs(1);
        assert!(tokio::time::timeout(early, &mut wait).await.is_err());
        assert_eq!(said.text(), "");
        let lock = store.lock_path(&d);
        assert_eq!(store.waiting_for_others(), [(d.clone(), lock.clone())]);
        assert!(tokio::time::timeout(WARN_AFTER * 5, &mut wait)
            .await
            .is_err());
        let text = said.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("another run fetching this blob"), "{text}");
        assert!(text.contains(&d.to_string()), "{text}");
        assert!(text.contains(&lock.display().to_string()), "{text}");
        drop(held);
        assert!(matches!(wait.await.unwrap(), Claimed::Mine(_)));
        assert_eq!(store.waiting_for_others(), []);
    }

    /// Another run holding a blob's lock while it downloads it (two mirroring jobs sharing
    /// a large layer) is nothing to warn of: the warning, once every large shared layer,
    /// said the holder may be stopped or hung. Only a holder whose files stop growing for
    /// [`super::WARN_AFTER`] is warned of, in those words.
    #[tokio::test(start_paused = true)]
    async fn a_wait_for_another_run_still_downloading_is_not_warned_of() {
        use super::{claim, Claimed, WARN_AFTER};
        use std::io::Write;
        let dst = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dst.path()).unwrap();
        let d = Digest::of(Algorithm::Sha256, b"downloaded by another run");
        let held = held_by_another_run(&store, &d);
        let name = format!(".dist-tmp-{}~{}~Ab1", crate::sink::owner::me(), d.encoded());
        let path = store.lock_path(&d).with_file_name(name);
        let mut temp = std::fs::File::create(&path).unwrap();
        temp.write_all(&[1; 4096]).unwrap();
        let (said, _logging) = Said::warnings();
        let mut wait = std::pin::pin!(claim(&store, &d, || async { Ok(None) }));
        // Its file grows before each look.
        for _ in 0..3 {
            assert!(tokio::time::timeout(WARN_AFTER / 2, &mut wait)
                .await
                .is_err());
            temp.write_all(&[1; 4096]).unwrap();
            assert!(tokio::time::timeout(WARN_AFTER / 2, &mut wait)
                .await
                .is_err());
            assert_eq!(said.text(), "");
        }
        // Then it stops.
        assert!(tokio::time::timeout(WARN_AFTER * 5, &mut wait)
            .await
            .is_err());
        let text = said.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("wrote nothing of it in the last 20s"),
            "{text}"
        );
        drop(held);
        assert!(matches!(wait.await.unwrap(), Claimed::Mine(_)));
    }

    /// The lock of `digest` held as another process holds it: on a file of its own
    /// opening, which this process's locks do not know of.
    fn held_by_another_run(store: &LayoutStore, digest: &Digest) -> std::fs::File {
        use std::os::fd::AsRawFd;
        let path = store.lock_path(digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&path).unwrap();
        // SAFETY: flock on a descriptor this test owns; it touches no memory.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(locked, 0, "{}", std::io::Error::last_os_error());
        file
    }

    /// Two lines naming one blob with other sizes are two objects, fetched by one run:
    /// the second waits for the first's lock. That was warned of after
    /// [`super::WARN_AFTER`] as "another run fetching this blob", a run stopped or hung, and
    /// named as such when the run stopped: it is this run's own fetch, in its progress.
    #[tokio::test(start_paused = true)]
    async fn a_wait_for_this_runs_own_fetch_is_not_said_to_be_another_runs() {
        use super::{claim, Claimed, WARN_AFTER};
        let dst = tempfile::tempdir().unwrap();
        let store = LayoutStore::open(dst.path()).unwrap();
        let d = Digest::of(Algorithm::Sha256, b"held by this run");
        let held = store.try_ingest(&d).unwrap();
        let (said, _logging) = Said::warnings();
        let mut wait = std::pin::pin!(claim(&store, &d, || async { Ok(None) }));
        assert!(tokio::time::timeout(WARN_AFTER * 5, &mut wait)
            .await
            .is_err());
        assert_eq!(said.text(), "");
        assert_eq!(store.waiting_for_others(), []);
        drop(held);
        assert!(matches!(wait.await.unwrap(), Claimed::Mine(_)));
    }
}
