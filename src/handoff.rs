//! A bounded queue from async code to a blocking thread that hashes, writes or prints what
//! it is given.
//!
//! Why not an async channel plus a semaphore: at a gigabyte per second, waking the other
//! side for every chunk costs more than the work itself (thousands of futex wake-ups and
//! context switches per gigabyte on two cores), and for a thousand small objects a wake-up
//! per object costs the output thread as much as writing them. Here the queue has a budget
//! (bytes, or whatever [`Weigh`] says an item costs) with hysteresis: a sender that fills it
//! sleeps until the consumer has drained it to half, and an idle consumer is woken once a
//! quarter of the budget is queued, when the sender must wait, at the end, or when someone
//! holding a [`Nudge`] says now (the worker's output is nudged whenever its runtime runs out
//! of work). Each side then wakes the other about once per quarter to half budget,
//! whatever the size of the items. A nudged consumer then looks for more by itself every
//! [`LINGER`] for as long as items keep coming, and nudges leave it alone meanwhile: a
//! runtime that runs out of work between every two small objects would otherwise cost a
//! wake-up each.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

/// The consumer stopped taking items (it returned, failed or panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// What an item costs of a queue's budget: for bytes, their length.
pub trait Weigh {
    /// This item's share of the budget.
    fn weight(&self) -> usize;
}

impl Weigh for Bytes {
    fn weight(&self) -> usize {
        self.len()
    }
}

struct State<T> {
    queue: VecDeque<T>,
    /// Weight queued or being consumed.
    weight: usize,
    /// The sender is done (finished or dropped).
    closed: bool,
    /// The sender was dropped unfinished: the consumer should stop without draining.
    abandoned: bool,
    /// The consumer stopped taking items.
    stopped: bool,
    consumer_idle: bool,
    /// The consumer was nudged and items kept coming since: it looks for more every
    /// [`LINGER`] by itself, so a nudge need not wake it.
    lingering: bool,
    sender_waiting: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes an idle consumer.
    ready: Condvar,
    /// Wakes a sender waiting for room.
    room: Notify,
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic on the other side leaves consistent state behind (every update is a
        // single assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_consumer(&self, s: &mut State<T>) {
        if s.consumer_idle {
            s.consumer_idle = false;
            self.ready.notify_one();
        }
    }
}

/// A queue whose consumer runs on a blocking thread: the sending half, used from async
/// code. Dropping it without [`Sender::close`] tells the consumer to stop at once and drop
/// what is queued.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
    closed: bool,
}

/// The consuming half, for a blocking thread.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Weight taken by the last call and not yet given back.
    taken: usize,
}

/// Wakes an idle consumer that has items waiting below its wake-up threshold, for a caller
/// that knows a better moment than the threshold (an idle runtime, a pause in the input).
pub struct Nudge<T> {
    shared: Arc<Shared<T>>,
}

// Items may be megabytes of content: the halves show the queue's budget, not its items.
impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.shared.capacity)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Nudge<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nudge").finish_non_exhaustive()
    }
}

/// A queue holding about `capacity` of weight at most (a heavier single item is still
/// accepted, alone).
pub fn channel<T: Weigh>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            weight: 0,
            closed: false,
            abandoned: false,
            stopped: false,
            consumer_idle: false,
            lingering: false,
            sender_waiting: false,
        }),
        ready: Condvar::new(),
        room: Notify::new(),
        capacity: capacity.max(1),
    });
    let sender = Sender {
        shared: shared.clone(),
        closed: false,
    };
    (sender, Receiver { shared, taken: 0 })
}

impl<T: Weigh> Sender<T> {
    /// Queues an item, waiting while the queue is full.
    pub async fn send(&mut self, item: T) -> Result<(), Stopped> {
        let shared = &*self.shared;
        let weight = item.weight();
        let mut item = Some(item);
        loop {
            {
                let mut s = shared.lock();
                if s.stopped {
                    return Err(Stopped);
                }
                // An empty queue takes any item, so one heavier than the budget still moves.
                if s.weight == 0 || s.weight + weight <= shared.capacity {
                    s.weight += weight;
                    s.queue.extend(item.take());
                    // An idle consumer is woken for a quarter of the budget, not per item.
                    if s.weight >= shared.capacity / 4 {
                        shared.wake_consumer(&mut s);
                    }
                    return Ok(());
                }
                // Only the consumer can make room: it must not sleep through this wait,
                // whatever the threshold (a 2 MiB ranged part after a few small chunks).
                shared.wake_consumer(&mut s);
                s.sender_waiting = true;
            }
            // `Notify` keeps a wake-up sent before this await, so none is lost.
            shared.room.notified().await;
        }
    }
}

impl<T> Sender<T> {
    /// A handle that can wake the consumer early.
    pub fn nudge(&self) -> Nudge<T> {
        Nudge {
            shared: self.shared.clone(),
        }
    }

    /// Ends the queue: the consumer takes what is queued, then sees the end.
    pub fn close(mut self) {
        self.closed = true;
        end(&self.shared, false);
    }
}

fn end<T>(shared: &Shared<T>, abandon: bool) {
    let mut s = shared.lock();
    s.closed = true;
    if abandon {
        s.abandoned = true;
        s.queue.clear();
    }
    s.consumer_idle = false;
    shared.ready.notify_one();
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if !self.closed {
            end(&self.shared, true);
        }
    }
}

impl<T> Nudge<T> {
    /// Wakes the consumer if it sleeps while items wait. One that is lingering is left
    /// alone: it looks again within [`LINGER`].
    pub fn now(&self) {
        let mut s = self.shared.lock();
        if !s.queue.is_empty() && !s.lingering {
            s.lingering = true;
            self.shared.wake_consumer(&mut s);
        }
    }
}

/// Items in order, each waited for: the iteration ends once the sender closed the queue
/// and everything was taken, or at once if the sender was dropped. An item's weight counts
/// as consumed from the next call on.
impl<T: Weigh> Iterator for Receiver<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let shared = &*self.shared;
        let mut s = shared.lock();
        give_back(shared, &mut s, std::mem::take(&mut self.taken));
        loop {
            if s.abandoned {
                return None;
            }
            if let Some(item) = s.queue.pop_front() {
                self.taken = item.weight();
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s.consumer_idle = true;
            if s.lingering {
                let (guard, waited) = shared
                    .ready
                    .wait_timeout(s, LINGER)
                    .unwrap_or_else(|p| p.into_inner());
                s = guard;
                s.consumer_idle = false;
                // Nothing came for a whole linger: the stream has paused, and the next
                // nudge wakes the consumer again.
                if waited.timed_out() && s.queue.is_empty() {
                    s.lingering = false;
                }
            } else {
                s = shared.ready.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

impl<T: Weigh> Receiver<T> {
    /// Takes every queued item (waiting for at least one) into `out`, for consumers that
    /// work best on many at once (vectored writes). Returns false when there are no more.
    /// The previous batch counts as consumed from this call on.
    pub fn next_batch(&mut self, out: &mut Vec<T>) -> bool {
        out.clear();
        let Some(first) = self.next() else {
            return false;
        };
        let mut s = self.shared.lock();
        out.push(first);
        out.extend(s.queue.drain(..));
        self.taken = out.iter().map(Weigh::weight).sum();
        true
    }
}

/// How long a nudged consumer waits for more before it sleeps until woken: the most an
/// item queued meanwhile waits past the moment it could have gone. Measured against a
/// wake-up at every nudge in README's Performance section.
pub const LINGER: Duration = Duration::from_millis(1);

/// Counts `taken` weight as consumed, waking a waiting sender once the queue is half empty.
fn give_back<T>(shared: &Shared<T>, s: &mut State<T>, taken: usize) {
    s.weight -= taken;
    if s.sender_waiting && s.weight <= shared.capacity / 2 {
        s.sender_waiting = false;
        shared.room.notify_one();
    }
}

impl<T> Drop for Receiver<T> {
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

/// The stack of a [`Handoff`]'s thread. Hashing and writing chunks need a few KiB of it;
/// Rust's default of 2 MiB, for the hashing and writing threads of `-j 64` large blobs,
/// made 256 MiB of address space and of data (`ulimit -v`, `ulimit -d`), and a limit of
/// 300 MiB aborted the batch on an allocation that no longer fit.
const STACK_BYTES: usize = 256 << 10;

/// A queue of byte chunks with its consumer already running on a thread of its own.
pub(crate) struct Handoff<R> {
    sender: Sender<Bytes>,
    done: tokio::sync::oneshot::Receiver<Result<R, Panicked>>,
}

/// A [`Handoff`]'s consumer panicked: what its panic said, for the error that reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Panicked(pub(crate) String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Panicked {
    fn from_payload(payload: &(dyn std::any::Any + Send)) -> Panicked {
        let said = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        Panicked(said.unwrap_or_else(|| "a panic that said nothing".into()))
    }
}

impl<R: Send + 'static> Handoff<R> {
    /// Starts `consume` with `state` on a thread of its own, fed with at most about
    /// `capacity` bytes at a time. When no thread can be started (a limit on processes:
    /// `ulimit -u`, a cgroup's `pids.max`), `state` comes back with the error, for the
    /// caller to do the work itself.
    ///
    /// Not tokio's blocking pool: it queues a task it has no thread for, and a writer
    /// waiting there behind a hashing thread that waits for the same object's task hung
    /// a fetch for good (one thread left to the pool); with none left, it panicked.
    pub(crate) fn spawn<S: Send + 'static>(
        capacity: usize,
        state: S,
        consume: impl FnOnce(S, &mut Receiver<Bytes>) -> R + Send + 'static,
    ) -> Result<Handoff<R>, (S, std::io::Error)> {
        let (sender, mut chunks) = channel(capacity);
        let (result, done) = tokio::sync::oneshot::channel();
        let (give, take) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn(move || {
                if let Ok(state) = take.recv() {
                    // Caught, to be told to the caller: the default hook's line on stderr
                    // names no object, and an error that said only "panicked" named no
                    // cause.
                    let consumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        consume(state, &mut chunks)
                    }));
                    let _ = result.send(consumed.map_err(|p| Panicked::from_payload(&*p)));
                }
            });
        if let Err(e) = spawned {
            return Err((state, e));
        }
        let _ = give.send(state);
        Ok(Handoff { sender, done })
    }

    /// Queues a chunk, waiting while the queue is full.
    pub(crate) async fn send(&mut self, chunk: Bytes) -> Result<(), Stopped> {
        self.sender.send(chunk).await
    }

    /// Closes the queue and waits for the consumer's result; what its panic said when it
    /// panicked.
    pub(crate) async fn finish(self) -> Result<R, Panicked> {
        self.sender.close();
        match self.done.await {
            Ok(consumed) => consumed,
            Err(_) => Err(Panicked("the thread ended without a result".into())),
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
        let mut h = Handoff::spawn(1000, (), move |(), chunks| {
            let mut got = Vec::new();
            while let Some(c) = chunks.next() {
                let queued = chunks.shared.lock().weight;
                seen.fetch_max(queued, std::sync::atomic::Ordering::Relaxed);
                got.push(c);
            }
            got
        })
        .unwrap();
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
        let mut h = Handoff::spawn(10, (), |(), chunks| {
            let mut batch = Vec::new();
            let mut total = 0;
            while chunks.next_batch(&mut batch) {
                total += batch.iter().map(Bytes::len).sum::<usize>();
            }
            total
        })
        .unwrap();
        h.send(chunk(1, 5)).await.unwrap();
        h.send(chunk(2, 100)).await.unwrap();
        h.send(chunk(3, 7)).await.unwrap();
        assert_eq!(h.finish().await.unwrap(), 112);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_large_chunk_behind_a_small_one_wakes_an_idle_consumer() {
        let mut h = Handoff::spawn(1000, (), |(), chunks| {
            let mut sizes = Vec::new();
            for c in chunks {
                sizes.push(c.len());
            }
            sizes
        })
        .unwrap();
        // Let the consumer go idle, then leave it below its wake-up threshold.
        while !h.sender.shared.lock().consumer_idle {
            tokio::task::yield_now().await;
        }
        h.send(chunk(1, 100)).await.unwrap();
        assert!(
            h.sender.shared.lock().consumer_idle,
            "100 bytes do not wake it"
        );
        let sent = tokio::time::timeout(Duration::from_secs(10), h.send(chunk(2, 950))).await;
        assert!(
            sent.is_ok(),
            "the sender waited for room the consumer never made"
        );
        assert_eq!(h.finish().await.unwrap(), vec![100, 950]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_consumer_that_stops_fails_the_sender() {
        let mut h = Handoff::spawn(10, (), |(), chunks| chunks.next().map(|c| c.len())).unwrap();
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
        let mut h = Handoff::spawn(1 << 20, (), move |(), chunks| {
            let first = chunks.next().map(|c| c.len());
            let _ = took_one.send(());
            // Wait until the sender is gone, then see what is left.
            let _ = rx.recv();
            let mut rest = 0;
            while chunks.next().is_some() {
                rest += 1;
            }
            (first, rest)
        })
        .unwrap();
        h.send(chunk(0, 4)).await.unwrap();
        // Four bytes are far below the quarter of the budget that wakes a consumer: one
        // that went idle before the chunk came (a loaded machine starts the thread first
        // now and then) sleeps on, and this test hung in CI.
        h.sender.nudge().now();
        first_taken.await.unwrap();
        for i in 1..10 {
            h.send(chunk(i, 4)).await.unwrap();
        }
        let Handoff { sender, done } = h;
        drop(sender);
        tx.send(()).unwrap();
        assert_eq!(done.await.unwrap(), Ok((Some(4), 0)));
    }

    /// An item that weighs what it says.
    struct Item(usize);

    impl Weigh for Item {
        fn weight(&self) -> usize {
            self.0
        }
    }

    /// Waits until the consumer sleeps.
    async fn until_idle<T>(sender: &Sender<T>) {
        while !sender.shared.lock().consumer_idle {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_nudge_hands_over_items_below_the_threshold() {
        let (mut tx, rx) = channel::<Item>(1000);
        let (got, seen) = std::sync::mpsc::channel();
        let consumer = std::thread::spawn(move || {
            for item in rx {
                got.send(item.0).unwrap();
            }
        });
        until_idle(&tx).await;
        tx.send(Item(10)).await.unwrap();
        // Below a quarter of the budget: the consumer sleeps on.
        assert!(seen.recv_timeout(Duration::from_millis(200)).is_err());
        assert!(tx.shared.lock().consumer_idle);
        tx.nudge().now();
        assert_eq!(seen.recv_timeout(Duration::from_secs(10)), Ok(10));
        // A quarter of the budget wakes it without a nudge.
        until_idle(&tx).await;
        tx.send(Item(250)).await.unwrap();
        assert_eq!(seen.recv_timeout(Duration::from_secs(10)), Ok(250));
        tx.close();
        consumer.join().unwrap();
    }

    /// Waits until a nudged consumer has gone a whole linger without items.
    async fn until_asleep<T>(sender: &Sender<T>) {
        loop {
            {
                let s = sender.shared.lock();
                if s.consumer_idle && !s.lingering {
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
    }

    /// Queues `item` as `send` does, but only while the consumer lingers in its timed wait,
    /// which nothing then wakes it from: given back if the linger ended first.
    async fn queue_while_lingering(sender: &Sender<Item>, item: Item) -> Result<(), Item> {
        loop {
            {
                let mut s = sender.shared.lock();
                if !s.lingering {
                    return Err(item);
                }
                if s.consumer_idle {
                    s.weight += item.weight();
                    s.queue.push_back(item);
                    return Ok(());
                }
            }
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_nudged_consumer_takes_what_follows_without_another_nudge() {
        let (mut tx, rx) = channel::<Item>(1000);
        let (got, seen) = std::sync::mpsc::channel();
        let consumer = std::thread::spawn(move || {
            for item in rx {
                got.send(item.0).unwrap();
            }
        });
        until_idle(&tx).await;
        tx.send(Item(10)).await.unwrap();
        tx.nudge().now();
        assert_eq!(seen.recv_timeout(Duration::from_secs(10)), Ok(10));
        // Still streaming: small items queued during a linger go at its end, unnudged.
        // Sent as they came, each had to be sent within a millisecond of the last, and a
        // loaded machine holding the test up longer left it asleep (1 run in 10 on a busy
        // core).
        let mut lingered = 0;
        for i in 1..100 {
            if lingered == 3 {
                break;
            }
            match queue_while_lingering(&tx, Item(i)).await {
                Ok(()) => lingered += 1,
                // Held up past the linger: asleep, and nudged, it lingers again.
                Err(item) => {
                    tx.send(item).await.unwrap();
                    tx.nudge().now();
                }
            }
            assert_eq!(seen.recv_timeout(Duration::from_secs(10)), Ok(i));
        }
        assert_eq!(lingered, 3);
        // A whole linger without items: asleep again until woken.
        until_asleep(&tx).await;
        tx.send(Item(20)).await.unwrap();
        assert!(seen.recv_timeout(Duration::from_millis(200)).is_err());
        tx.nudge().now();
        assert_eq!(seen.recv_timeout(Duration::from_secs(10)), Ok(20));
        tx.close();
        consumer.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_budget_counts_weight_not_items() {
        let (mut tx, mut rx) = channel::<Item>(100);
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = peak.clone();
        let consumer = std::thread::spawn(move || {
            let mut batch = Vec::new();
            let mut total = 0;
            while rx.next_batch(&mut batch) {
                let held = rx.shared.lock().weight;
                seen.fetch_max(held, std::sync::atomic::Ordering::Relaxed);
                total += batch.len();
                std::thread::sleep(Duration::from_micros(50));
            }
            total
        });
        for i in 0..300 {
            tx.send(Item(1 + i % 40)).await.unwrap();
        }
        tx.close();
        assert_eq!(consumer.join().unwrap(), 300);
        // What is queued plus the batch being consumed (it counts until given back).
        assert!(peak.load(std::sync::atomic::Ordering::Relaxed) <= 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_nudge_with_nothing_queued_does_nothing() {
        let (tx, mut rx) = channel::<Item>(100);
        let consumer = std::thread::spawn(move || rx.next().map(|i| i.0));
        until_idle(&tx).await;
        tx.nudge().now();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            tx.shared.lock().consumer_idle,
            "nothing to take: still asleep"
        );
        tx.close();
        assert_eq!(consumer.join().unwrap(), None);
    }
}
