//! Chunks of a large object handed from the task that receives them to a blocking thread
//! that hashes or writes them.
//!
//! Why not an async channel plus a semaphore: at a gigabyte per second, waking the other
//! side for every chunk costs more than the work itself (thousands of futex wake-ups and
//! context switches per gigabyte on two cores). Here the queue has a byte budget with
//! hysteresis: a sender that fills it sleeps until the consumer has drained it to half, and
//! an idle consumer is woken once a quarter of the budget is queued (or at the end). Each
//! side then wakes the other about once per quarter to half budget, whatever the size of
//! the chunks.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

/// The consumer stopped taking chunks (it returned, failed or panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

struct State {
    queue: VecDeque<Bytes>,
    /// Bytes queued or being consumed.
    bytes: usize,
    /// The sender is done (finished or dropped).
    closed: bool,
    /// The sender was dropped unfinished: the consumer should stop without draining.
    abandoned: bool,
    /// The consumer stopped taking chunks.
    stopped: bool,
    consumer_idle: bool,
    sender_waiting: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes an idle consumer.
    ready: Condvar,
    /// Wakes a sender waiting for room.
    room: Notify,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on the other side leaves consistent state behind (every update is a
        // single assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side, used from async code. Dropping it without [`Handoff::finish`] tells
/// the consumer to stop at once and drop what is queued.
pub(crate) struct Handoff<R> {
    shared: Arc<Shared>,
    done: Option<tokio::task::JoinHandle<R>>,
    finished: bool,
}

/// The consuming side, on a blocking-pool thread.
pub(crate) struct Chunks {
    shared: Arc<Shared>,
    /// Bytes taken by the last call and not yet given back.
    taken: usize,
}

impl<R: Send + 'static> Handoff<R> {
    /// Starts `consume` on the blocking pool, fed with at most about `capacity` bytes at a
    /// time (a larger single chunk is still accepted, alone).
    pub(crate) fn spawn(
        capacity: usize,
        consume: impl FnOnce(&mut Chunks) -> R + Send + 'static,
    ) -> Handoff<R> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                closed: false,
                abandoned: false,
                stopped: false,
                consumer_idle: false,
                sender_waiting: false,
            }),
            ready: Condvar::new(),
            room: Notify::new(),
            capacity: capacity.max(1),
        });
        let mut chunks = Chunks {
            shared: shared.clone(),
            taken: 0,
        };
        let done = tokio::task::spawn_blocking(move || consume(&mut chunks));
        Handoff {
            shared,
            done: Some(done),
            finished: false,
        }
    }

    /// Queues a chunk, waiting while the queue is full.
    pub(crate) async fn send(&mut self, chunk: Bytes) -> Result<(), Stopped> {
        let shared = &*self.shared;
        loop {
            {
                let mut s = shared.lock();
                if s.stopped {
                    return Err(Stopped);
                }
                // An empty queue takes any chunk, so one larger than the budget still moves.
                if s.bytes == 0 || s.bytes + chunk.len() <= shared.capacity {
                    s.bytes += chunk.len();
                    s.queue.push_back(chunk);
                    // An idle consumer is woken for a quarter of the budget, not per chunk.
                    if s.consumer_idle && s.bytes >= shared.capacity / 4 {
                        s.consumer_idle = false;
                        shared.ready.notify_one();
                    }
                    return Ok(());
                }
                // Only the consumer can make room: it must not sleep through this wait,
                // whatever the threshold (a 2 MiB ranged part after a few small chunks).
                if s.consumer_idle {
                    s.consumer_idle = false;
                    shared.ready.notify_one();
                }
                s.sender_waiting = true;
            }
            // `Notify` keeps a wake-up sent before this await, so none is lost.
            shared.room.notified().await;
        }
    }

    /// Closes the queue and waits for the consumer's result.
    pub(crate) async fn finish(mut self) -> Result<R, tokio::task::JoinError> {
        self.finished = true;
        close(&self.shared, false);
        self.done.take().expect("finish is called once").await
    }
}

fn close(shared: &Shared, abandon: bool) {
    let mut s = shared.lock();
    s.closed = true;
    if abandon {
        s.abandoned = true;
        s.queue.clear();
    }
    shared.ready.notify_one();
}

impl<R> Drop for Handoff<R> {
    fn drop(&mut self) {
        if !self.finished {
            close(&self.shared, true);
        }
    }
}

impl Chunks {
    /// The next chunk, waiting for one; `None` once the sender finished and everything was
    /// taken, or at once if the sender was dropped. The previous chunk's bytes count as
    /// consumed from this call on.
    pub(crate) fn next(&mut self) -> Option<Bytes> {
        let shared = &*self.shared;
        let mut s = shared.lock();
        give_back(shared, &mut s, std::mem::take(&mut self.taken));
        loop {
            if s.abandoned {
                return None;
            }
            if let Some(chunk) = s.queue.pop_front() {
                self.taken = chunk.len();
                return Some(chunk);
            }
            if s.closed {
                return None;
            }
            s.consumer_idle = true;
            s = shared.ready.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Takes every queued chunk (waiting for at least one) into `out`, for consumers that
    /// work best on many chunks at once (vectored writes). Returns false when there are no
    /// more. The previous batch counts as consumed from this call on.
    pub(crate) fn next_batch(&mut self, out: &mut Vec<Bytes>) -> bool {
        out.clear();
        let Some(first) = self.next() else {
            return false;
        };
        let mut s = self.shared.lock();
        out.push(first);
        out.extend(s.queue.drain(..));
        self.taken = out.iter().map(Bytes::len).sum();
        true
    }
}

/// Counts `taken` bytes as consumed, waking a waiting sender once the queue is half empty.
fn give_back(shared: &Shared, s: &mut State, taken: usize) {
    s.bytes -= taken;
    if s.sender_waiting && s.bytes <= shared.capacity / 2 {
        s.sender_waiting = false;
        shared.room.notify_one();
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.stopped = true;
        s.queue.clear();
        if s.sender_waiting {
            s.sender_waiting = false;
            self.shared.room.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn chunk(i: u32, len: usize) -> Bytes {
        Bytes::from(vec![(i % 251) as u8; len])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn delivers_every_chunk_in_order_within_the_budget() {
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = peak.clone();
        let mut h = Handoff::spawn(1000, move |chunks| {
            let mut got = Vec::new();
            while let Some(c) = chunks.next() {
                let queued = chunks.shared.lock().bytes;
                seen.fetch_max(queued, std::sync::atomic::Ordering::Relaxed);
                got.push(c);
            }
            got
        });
        for i in 0..500 {
            h.send(chunk(i, 1 + (i as usize % 300))).await.unwrap();
        }
        let got = h.finish().await.unwrap();
        assert_eq!(got.len(), 500);
        for (i, c) in got.iter().enumerate() {
            assert_eq!(c.len(), 1 + i % 300);
            assert_eq!(c[0], (i % 251) as u8);
        }
        assert!(peak.load(std::sync::atomic::Ordering::Relaxed) <= 1000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_chunk_larger_than_the_budget_still_passes() {
        let mut h = Handoff::spawn(10, |chunks| {
            let mut batch = Vec::new();
            let mut total = 0;
            while chunks.next_batch(&mut batch) {
                total += batch.iter().map(Bytes::len).sum::<usize>();
            }
            total
        });
        h.send(chunk(1, 5)).await.unwrap();
        h.send(chunk(2, 100)).await.unwrap();
        h.send(chunk(3, 7)).await.unwrap();
        assert_eq!(h.finish().await.unwrap(), 112);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_large_chunk_behind_a_small_one_wakes_an_idle_consumer() {
        let mut h = Handoff::spawn(1000, |chunks| {
            let mut sizes = Vec::new();
            while let Some(c) = chunks.next() {
                sizes.push(c.len());
            }
            sizes
        });
        // Let the consumer go idle, then leave it below its wake-up threshold.
        while !h.shared.lock().consumer_idle {
            tokio::task::yield_now().await;
        }
        h.send(chunk(1, 100)).await.unwrap();
        assert!(h.shared.lock().consumer_idle, "100 bytes do not wake it");
        let sent = tokio::time::timeout(Duration::from_secs(10), h.send(chunk(2, 950))).await;
        assert!(
            sent.is_ok(),
            "the sender waited for room the consumer never made"
        );
        assert_eq!(h.finish().await.unwrap(), vec![100, 950]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_consumer_that_stops_fails_the_sender() {
        let mut h = Handoff::spawn(10, |chunks| chunks.next().map(|c| c.len()));
        let mut result = Ok(());
        for i in 0..100 {
            result = h.send(chunk(i, 8)).await;
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Stopped));
        assert_eq!(h.finish().await.unwrap(), Some(8));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn dropping_the_sender_stops_the_consumer_without_draining() {
        let (took_one, first_taken) = tokio::sync::oneshot::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut h = Handoff::spawn(1 << 20, move |chunks| {
            let first = chunks.next().map(|c| c.len());
            let _ = took_one.send(());
            // Wait until the sender is gone, then see what is left.
            let _ = rx.recv();
            let mut rest = 0;
            while chunks.next().is_some() {
                rest += 1;
            }
            (first, rest)
        });
        h.send(chunk(0, 4)).await.unwrap();
        first_taken.await.unwrap();
        for i in 1..10 {
            h.send(chunk(i, 4)).await.unwrap();
        }
        let done = h.done.take().unwrap();
        drop(h);
        tx.send(()).unwrap();
        assert_eq!(done.await.unwrap(), (Some(4), 0));
    }
}
