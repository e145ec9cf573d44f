//! A hard cap on connections per host.
//!
//! The pool reuses idle connections, but while every connection is busy a new request
//! opens another one, and a pool under load can briefly hold more than the worker's job
//! count. Registries (and the people who run them) count connections, so the cap is
//! enforced where connections are made: a connection holds a permit of its host's
//! semaphore for as long as it exists, and a new one waits for a permit.
//!
//! Connections in all, busy or idle, are capped too ([`Caps`]): each is a descriptor,
//! and the pool keeps a host's connection idle for 90 s, so a batch whose blobs each
//! redirect to a host of their own held one per host, past the limit on open files that
//! counted one per job. At that cap the connection idle the longest is closed to make
//! room: its reads end as if the server had closed it, which hyper's connection task,
//! always reading, sees at once. A connection made for a request is not told until it
//! has sent something (`FRESH`): hyper-util sends a request again only off a connection
//! used before. One told just as the pool hands it to a request waiting for one may take
//! that request with it unsent and never say so, which `transport::handed` sees.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use http::uri::Authority;
use http::Uri;
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::connecting::{take_ready, BoxError, Connecting};
use super::redirect::Origin;

/// How long a connection waits for its host's permit before an idle connection of its own
/// connector to the host, idle all that time, is told to close ([`Caps::host_permit`]).
const OWN_IDLE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a connection made for a request is kept from being told to close before it
/// has sent anything ([`Use::fresh`]), and how long a connection waiting for a permit of
/// the cap in all waits before idle ones are looked through again: one that hyper-util
/// made in the background and put in its pool unused is fresh until then.
const FRESH_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How many hosts' caps are kept before those with no connection are forgotten.
pub(crate) const KEEP_IDLE_HOSTS: usize = 64;

/// A host's key: its origin, the scheme's port filled in and the host without case, so
/// that `host` and `host:443` (a locator's explicit port, a redirect's `Location`) share
/// one cap, where each had a cap of its own, two caps' worth of connections to one
/// server. The transport hands hyper names without the default port
/// (`transport::spelling`), so they share one pool too; an IPv6 address's spellings,
/// sent as written, share the cap only.
fn key(uri: &Uri) -> Origin {
    Origin::of(uri)
}

/// Which pool a connection is in, and so which requests it can serve: the connector's
/// (each client has a pool), under the authority it was made for, which the pool keys by
/// (without case, as [`Authority`] compares). A URI made elsewhere than by the transport,
/// with a default port written out, is a pool of its own.
#[derive(Clone, Debug, PartialEq)]
struct Pool {
    connector: usize,
    authority: Option<Authority>,
}

/// What a host was found to need, kept with its cap and forgotten with it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Quirk {
    /// It refused a request over HTTP/2 with `HTTP_1_1_REQUIRED`.
    Http1Only,
    /// It sent a head of more fields than hyper takes by default.
    LargeHeads,
}

/// One host's cap, shared by the connectors of one transport, and what it needs.
#[derive(Debug)]
struct Host {
    permits: Arc<Semaphore>,
    quirks: [AtomicBool; 2],
    /// The pools whose connections wait for a permit, one entry each: an idle
    /// connection of another pool makes room for them.
    waiting: Mutex<Vec<Pool>>,
}

/// The caps on connections per host and in all, busy or idle, shared by the connectors
/// of one transport's clients (the one that offers HTTP/2, and those for HTTP/1.1 alone),
/// with the connections they count: at a cap, an idle connection is closed to make room.
/// Each client capped a host on its own, and a host could get three times its cap.
#[derive(Debug)]
pub struct Caps {
    per_host: usize,
    hosts: Mutex<HashMap<Origin, Arc<Host>>>,
    /// Numbers the connectors sharing the caps.
    connectors: AtomicUsize,
    /// Whether a host was ever found to need a quirk.
    marked: AtomicBool,
    total: Arc<Semaphore>,
    /// The connections alive (and some gone, pruned as they are looked through).
    live: Mutex<Vec<Weak<Use>>>,
    /// Connections being made that wait for a permit of `total`.
    waiting: AtomicUsize,
    /// Those of `waiting` that have idle connections closed for them only after
    /// [`FRESH_GRACE`]: their own pool has a busy connection, which it hands their
    /// request once done ([`Caps::permit`]).
    patient: AtomicUsize,
    /// Connections told to close that have not yet.
    closing: AtomicUsize,
    /// Counts uses, so that the connection idle the longest can be told.
    clock: AtomicU64,
    /// Whether a connection was ever told to close, or waited for a permit (a host's or
    /// the cap in all's): from then on, a request handed an idle connection may see it
    /// close under it.
    closed_idle: AtomicBool,
}

impl Caps {
    /// At most `per_host` connections per host and port, and `total` in all, at once
    /// (at least one each). A cap per host above the one in all is the one in all.
    pub fn new(per_host: usize, total: usize) -> Arc<Caps> {
        // A semaphore panics past its maximum; a library caller may pass any `usize`
        // (`usize::MAX` for "no cap"), and no host is ever near that many connections.
        let cap = |n: usize| n.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Caps {
            // Past the cap in all, a host's requests waited for that cap instead, where
            // nothing tells a waiter an idle connection of its own host comes back to it:
            // it had one closed to make room, and 200 blobs from one host at 16 per host
            // and 4 in all stalled for good.
            per_host: cap(per_host).min(cap(total)),
            hosts: Mutex::default(),
            connectors: AtomicUsize::new(0),
            marked: AtomicBool::new(false),
            total: Arc::new(Semaphore::new(cap(total))),
            live: Mutex::default(),
            waiting: AtomicUsize::new(0),
            patient: AtomicUsize::new(0),
            closing: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
            closed_idle: AtomicBool::new(false),
        })
    }

    /// The cap per host, as clamped: what a host's pool can hold at most.
    pub(crate) fn per_host(&self) -> usize {
        self.per_host
    }

    /// Whether idle connections were ever told to close to make room, or may be soon (a
    /// connection waited for a permit, with requests queued behind it on the pool):
    /// from then on, a request handed one may have it close before the request is sent
    /// on it (see `transport::handed`). A request before that pays nothing to learn its
    /// connection.
    pub(crate) fn closes_idle(&self) -> bool {
        self.closed_idle.load(Ordering::Relaxed)
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Records that the host of `uri` needs `quirk`, for as long as its cap is kept: while
    /// it has a connection, or fewer than [`KEEP_IDLE_HOSTS`] hosts are known. Forgotten,
    /// the quirk is found again at the cost of a request.
    pub(crate) fn mark(&self, uri: &Uri, quirk: Quirk) {
        self.marked.store(true, Ordering::Relaxed);
        self.host(uri).quirks[quirk as usize].store(true, Ordering::Relaxed);
    }

    /// Whether the host of `uri` was found to need `quirk`. No host nearly always was,
    /// which costs no look at the URL.
    pub(crate) fn needs(&self, uri: &Uri, quirk: Quirk) -> bool {
        if !self.marked.load(Ordering::Relaxed) {
            return false;
        }
        let hosts = self.hosts.lock().expect("connection limits poisoned");
        hosts
            .get(&key(uri))
            .is_some_and(|host| host.quirks[quirk as usize].load(Ordering::Relaxed))
    }

    /// How many hosts are known to need a quirk.
    #[cfg(test)]
    pub(crate) fn marked_hosts(&self) -> usize {
        let hosts = self.hosts.lock().unwrap();
        let marked = |host: &&Arc<Host>| host.quirks.iter().any(|q| q.load(Ordering::Relaxed));
        hosts.values().filter(marked).count()
    }

    fn host(&self, uri: &Uri) -> Arc<Host> {
        let key = key(uri);
        let mut hosts = self.hosts.lock().expect("connection limits poisoned");
        // A host none of whose connections is left (nor waited for: each holds the
        // entry) needs no entry: a registry that sends each blob to a host of its own
        // (a redirect per blob) made the map grow with the batch.
        if hosts.len() >= KEEP_IDLE_HOSTS {
            hosts.retain(|_, host| Arc::strong_count(host) > 1);
        }
        hosts
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Host {
                    permits: Arc::new(Semaphore::new(self.per_host)),
                    quirks: Default::default(),
                    waiting: Mutex::default(),
                })
            })
            .clone()
    }

    /// A permit for one more connection to `host` in `pool`: at once while under the
    /// cap, else once one of the host's connections has closed. An idle one of another
    /// pool (another connector's, or the host spelled another way) is told to, now or
    /// once it is done; the pool's own are left for it to hand to the request waiting,
    /// and told to close only once one has stayed idle through [`OWN_IDLE_GRACE`] of
    /// waiting: the pool hands an idle connection to a request waiting for one at once,
    /// so one left idle that long has no such request. The request may wait for this
    /// connection alone: hyper-util falls back on it when the idle connection its pool
    /// handed it was closed before it was used (told to close to make room, or by the
    /// server), and its own pool's idle connections held the host's permits until the
    /// pool let them go, 90 s on.
    async fn host_permit(
        &self,
        host: &Arc<Host>,
        pool: &Pool,
    ) -> Result<OwnedSemaphorePermit, BoxError> {
        if let Ok(permit) = host.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        struct Waiting<'a>(&'a Host, &'a Pool);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                let mut waiting = self.0.waiting.lock().expect("waiting poisoned");
                if let Some(at) = waiting.iter().position(|p| p == self.1) {
                    waiting.swap_remove(at);
                }
            }
        }
        // Requests are handed connections from now on that a cap may close under them;
        // the requests queued behind this one, built after, learn which they are handed.
        self.closed_idle.store(true, Ordering::Relaxed);
        host.waiting
            .lock()
            .expect("waiting poisoned")
            .push(pool.clone());
        let _waiting = Waiting(host, pool);
        self.close_oldest(|conn| Arc::ptr_eq(&conn.host, host) && conn.pool != *pool);
        let mut acquire =
            std::pin::pin!(unless_in_background(host.permits.clone().acquire_owned()));
        // Polled by hand, outside a runtime, there is no clock to wait with.
        if tokio::runtime::Handle::try_current().is_err() {
            return acquire.await;
        }
        loop {
            let since = self.tick();
            match tokio::time::timeout(OWN_IDLE_GRACE, &mut acquire).await {
                Ok(permit) => return permit,
                Err(_) => self.close_oldest(|conn| {
                    Arc::ptr_eq(&conn.host, host) && conn.idle() && conn.last() < since
                }),
            }
        }
    }

    /// A permit for one more connection to `host` in `pool`: at once while under the
    /// cap, else once an idle connection told to close has closed (or a busy one, done,
    /// has been told). While a connection of its own pool is busy, none is closed for it
    /// before [`FRESH_GRACE`]: the pool hands that one to the request once done, and a
    /// request to a registry that redirects each blob to a storage host found its own
    /// host's connections busy for a moment and had the other host's idle one closed,
    /// which the next request there had to open again: at a cap in all of 4, 100 blobs
    /// fetched 4 at a time opened 159 to 187 connections (now 9 to 21). Past the grace
    /// (its connection's reader is slow), room is made for it as for any.
    async fn permit(
        self: &Arc<Self>,
        host: &Arc<Host>,
        pool: &Pool,
    ) -> Result<OwnedSemaphorePermit, BoxError> {
        if let Ok(permit) = self.total.clone().try_acquire_owned() {
            return Ok(permit);
        }
        struct Waiting<'a>(&'a Caps, bool);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.patient.fetch_sub(1, Ordering::Relaxed);
                }
                self.0.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.closed_idle.store(true, Ordering::Relaxed);
        // Polled by hand, outside a runtime, there is no clock to end its patience.
        let patient = tokio::runtime::Handle::try_current().is_ok() && self.busy_in(host, pool);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if patient {
            self.patient.fetch_add(1, Ordering::Relaxed);
        }
        let mut waiting = Waiting(self, patient);
        self.close_idle();
        let mut acquire = std::pin::pin!(unless_in_background(self.total.clone().acquire_owned()));
        // Polled by hand, outside a runtime, there is no clock to wait with.
        if tokio::runtime::Handle::try_current().is_err() {
            return acquire.await;
        }
        // The idle connections passed over as fresh may be so no more, and a busy one of
        // its own still busy has its reader slow: room is made for this one now.
        let mut next = tokio::time::Instant::now() + FRESH_GRACE;
        loop {
            match tokio::time::timeout_at(next, &mut acquire).await {
                // Patient, it is first in line for the room made for one that is not
                // (the semaphore serves in order), which then waited for the next
                // connection to be done or its own grace to pass: passed on, it goes to
                // that one, and this one waits on, to the same end of its patience.
                Ok(Ok(permit)) if waiting.1 && self.unmet() => {
                    drop(permit);
                    // Left over, none was in line for it (the other is yet to ask): kept,
                    // rather than passed on and taken back in a loop.
                    if let Ok(permit) = self.total.clone().try_acquire_owned() {
                        return Ok(permit);
                    }
                    acquire.set(unless_in_background(self.total.clone().acquire_owned()));
                }
                Ok(permit) => return permit,
                Err(_) => {
                    next += FRESH_GRACE;
                    if std::mem::take(&mut waiting.1) {
                        self.patient.fetch_sub(1, Ordering::Relaxed);
                    }
                    self.close_idle();
                }
            }
        }
    }

    /// Whether a connection to `host` in `pool` is busy, and not told to close: one the
    /// pool hands a request waiting there once done.
    fn busy_in(&self, host: &Arc<Host>, pool: &Pool) -> bool {
        let live = self.live.lock().expect("connections poisoned");
        live.iter().filter_map(Weak::upgrade).any(|conn| {
            Arc::ptr_eq(&conn.host, host) && conn.pool == *pool && !conn.told() && !conn.idle()
        })
    }

    /// Tells the connection idle the longest to close, while connections wait for a
    /// permit that none of those closing will free. One that has sent a request (as far
    /// as its writes tell: any write over HTTP/1.1, a HEADERS frame not yet answered nor
    /// reset over HTTP/2) is told only when none is idle, and closes once it is; one made
    /// for a request not yet sent on it is not told ([`Use::fresh`]). Its
    /// writes do not tell an HTTP/2 connection's streams apart: one whose request went
    /// out after another's answer (or reset) may be closed under it, and is sent again as
    /// a request lost on a connection kept alive is.
    fn close_idle(&self) {
        if self.unmet() {
            self.close_oldest(|_| true);
        }
    }

    /// Whether connections wait, not patiently, for more room than the connections
    /// told to close will make.
    fn unmet(&self) -> bool {
        let waiting = self.waiting.load(Ordering::Relaxed);
        let patient = self.patient.load(Ordering::Relaxed);
        waiting.saturating_sub(patient) > self.closing.load(Ordering::Relaxed)
    }

    /// Tells the connection idle the longest of those `which` picks to close.
    fn close_oldest(&self, which: impl Fn(&Use) -> bool) {
        let mut live = self.live.lock().expect("connections poisoned");
        live.retain(|conn| conn.upgrade().is_some_and(|conn| !conn.gone()));
        let oldest = live
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|conn| !conn.told() && conn.reading() == 0 && !conn.fresh())
            .filter(|conn| which(conn))
            .min_by_key(|conn| (conn.pending.load(Ordering::Relaxed), conn.last()));
        if let Some(conn) = oldest {
            conn.tell_to_close();
        }
    }

    fn enlist(&self, conn: &Arc<Use>) {
        let mut live = self.live.lock().expect("connections poisoned");
        // Connections gone are pruned as the list doubles, keeping it near those alive.
        if live.len() >= 64 && live.len().is_power_of_two() {
            live.retain(|conn| conn.upgrade().is_some_and(|conn| !conn.gone()));
        }
        live.push(Arc::downgrade(conn));
    }
}

tokio::task_local! {
    /// Set in the tasks [`Background`] spawns.
    static BACKGROUND: ();
}

thread_local! {
    /// Set as a connection being made is polled ([`LimitedConnector`]'s future).
    static CONNECTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Polls `poll`, and says whether a connection being made was polled within it: a
/// request whose poll makes one waits in hyper-util's pool for a connection (its own,
/// or one another request is done with), and was handed none, or was let go unsent by
/// the one it was handed and is sent again by hyper-util. Called within `poll`, it
/// says so to the caller around it too.
pub(crate) fn polling<T>(poll: impl FnOnce() -> T) -> (T, bool) {
    let before = CONNECTING.with(|c| c.replace(false));
    let polled = poll();
    let making = CONNECTING.with(|c| c.replace(before));
    if making {
        connecting();
    }
    (polled, making)
}

/// `request`, noting in `making` after each of its polls whether that poll made a
/// connection ([`polling`]): what the watches of a request waiting for one go by.
pub(crate) fn noting_connections<'a, F: Future + ?Sized>(
    mut request: Pin<&'a mut F>,
    making: &'a AtomicBool,
) -> impl Future<Output = F::Output> + Unpin + 'a {
    std::future::poll_fn(move |cx| {
        let (output, made) = polling(|| request.as_mut().poll(cx));
        making.store(made, Ordering::Relaxed);
        output
    })
}

/// Marks a connection being made as polled, for [`polling`].
pub(crate) fn connecting() {
    CONNECTING.with(|c| c.set(true));
}

/// A permit `acquire` gives, given up once polled in the background: hyper-util lets a
/// connection started for a request go on there when the request gets an idle one first,
/// so as not to waste a socket, and nobody waits for it. Waiting for a permit, it was
/// counted as a connection wanted, and had others closed to make room for one nobody
/// used: 200 small blobs from 2 hosts at a cap of 4 in all opened 329 connections.
async fn unless_in_background<F>(acquire: F) -> Result<OwnedSemaphorePermit, BoxError>
where
    F: Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>>,
{
    let mut acquire = std::pin::pin!(acquire);
    std::future::poll_fn(|cx| {
        if BACKGROUND.try_with(|_| ()).is_ok() {
            return Poll::Ready(Err("a connection nobody waits for, at a cap".into()));
        }
        acquire.as_mut().poll(cx).map_err(Into::into)
    })
    .await
}

/// Spawns hyper's tasks on tokio, marked as in the background: a connection's reads and
/// writes, and a connection that hyper-util lets go on making after the request it was
/// started for got an idle one.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Background;

impl<F> hyper::rt::Executor<F> for Background
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(BACKGROUND.scope((), fut));
    }
}

/// How a connection is used, shared by the connection, the bodies read off it (through
/// [`InUse`]) and its transport's [`Caps`], which may tell it to close while it is idle.
#[derive(Debug)]
pub(crate) struct Use {
    caps: Arc<Caps>,
    host: Arc<Host>,
    /// The pool it is in.
    pool: Pool,
    /// Bytes were written since the last answer: a request is on its way.
    pending: AtomicBool,
    /// Bodies being read.
    reading: AtomicUsize,
    /// It has answered a request. A request lost on a connection that had answered
    /// before met one kept alive in the pool, which the server or the network may have
    /// dropped while it sat idle.
    answered: AtomicBool,
    /// When it was last used, by its caps' clock.
    last: AtomicU64,
    /// Told to close once idle ([`CLOSE`]), and closed, its descriptor and permits given
    /// back ([`GONE`]): one word, so that a connection is counted among those closing
    /// only while it is not gone, and counted out exactly once. Apart, one gone as it was
    /// told (the server closed it before its body's reader let go) stayed counted for
    /// good, and the cap on connections in all stopped closing idle ones. Made and not
    /// yet used ([`FRESH`]).
    state: AtomicU8,
    /// When it was made, for [`FRESH_GRACE`].
    made: tokio::time::Instant,
    /// The task reading the connection, to be woken when it is told to close.
    waker: futures::task::AtomicWaker,
}

/// [`Use::state`]: told to close.
const CLOSE: u8 = 1;
/// [`Use::state`]: closed.
const GONE: u8 = 2;
/// [`Use::state`]: made, nothing sent on it yet. A connection made for a request looks
/// idle until the request is written, and at the cap in all it was told to close under
/// its request, which hyper-util sends again only on a connection used before: with no
/// retries, at a cap in all of 2, 16 batches of 200 fetches in 20 failed, 69 fetches in
/// all ("connection closed before message completed").
const FRESH: u8 = 4;

impl Use {
    fn told(&self) -> bool {
        self.state.load(Ordering::Relaxed) & CLOSE != 0
    }

    fn reading(&self) -> usize {
        self.reading.load(Ordering::Relaxed)
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    fn gone(&self) -> bool {
        self.state.load(Ordering::Relaxed) & GONE != 0
    }

    /// Whether it was made for a request not yet sent on it, a moment ago: within
    /// [`FRESH_GRACE`], past which one unused (hyper-util made it in the background, for
    /// a request that got another) is idle as any.
    fn fresh(&self) -> bool {
        self.state.load(Ordering::Relaxed) & FRESH != 0
            && !self.answered.load(Ordering::Relaxed)
            && self.made.elapsed() < FRESH_GRACE
    }

    /// A request is on its way on it: busy, and fresh no more.
    fn sending(&self) {
        self.pending.store(true, Ordering::Relaxed);
        // Looked at first: nearly every write is on a connection used before, and a
        // load costs less than a write to the shared word.
        if self.state.load(Ordering::Relaxed) & FRESH != 0 {
            self.state.fetch_and(!FRESH, Ordering::Relaxed);
        }
    }

    fn idle(&self) -> bool {
        self.reading() == 0 && !self.pending.load(Ordering::Relaxed)
    }

    /// Whether its reads should end now: told to close, and idle.
    fn closes(&self) -> bool {
        self.told() && self.idle()
    }

    /// An HTTP/2 request began (`true`) or was given up (`false`). Given up, it may leave
    /// the connection idle, and one told to close closes then.
    fn sent(&self, request: bool) {
        if request {
            return self.sending();
        }
        self.pending.store(false, Ordering::Relaxed);
        if self.closes() {
            self.waker.wake();
        }
    }

    /// Tells it to close once idle, waking the task that reads it to see so.
    fn tell_to_close(&self) {
        if self.state.fetch_or(CLOSE, Ordering::AcqRel) & (CLOSE | GONE) == 0 {
            self.caps.closed_idle.store(true, Ordering::Relaxed);
            self.caps.closing.fetch_add(1, Ordering::Relaxed);
            self.waker.wake();
        }
    }
}

impl<T> Drop for Limited<T> {
    fn drop(&mut self) {
        // The pool keeps a connection's extras, this `Use` among them, until it finds the
        // connection closed: what tells the connection gone is its own end.
        let conn = &self.conn.0;
        if conn.state.fetch_or(GONE, Ordering::AcqRel) & (CLOSE | GONE) == CLOSE {
            conn.caps.closing.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A connection's [`Use`], as the responses read off it carry it: the pool hands each
/// request the connection's [`Connected`], extras and all (one extra more cost every
/// response two allocations, 18 where 20).
#[derive(Clone, Debug)]
pub(crate) struct InUse(Arc<Use>);

impl InUse {
    /// Whether the connection has answered a request before.
    pub(crate) fn answered_before(&self) -> bool {
        self.0.answered.load(Ordering::Relaxed)
    }

    /// A response arrived: its body is read until the [`Reading`] is dropped.
    pub(crate) fn read(&self) -> Reading {
        let conn = &self.0;
        conn.answered.store(true, Ordering::Relaxed);
        conn.reading.fetch_add(1, Ordering::Relaxed);
        conn.pending.store(false, Ordering::Relaxed);
        Reading(conn.clone())
    }

    /// Whether the connection is closed, its descriptor given back.
    pub(crate) fn gone(&self) -> bool {
        self.0.gone()
    }

    /// Whether `other` is the use of the same connection.
    pub(crate) fn same(&self, other: &InUse) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A request failed on the connection, which may go on (an HTTP/2 stream reset).
    pub(crate) fn failed(&self) {
        let conn = &self.0;
        conn.pending.store(false, Ordering::Relaxed);
        if conn.closes() {
            conn.waker.wake();
        }
    }
}

#[cfg(test)]
impl InUse {
    /// The use of a connection that is closed.
    pub(crate) fn closed() -> InUse {
        InUse::in_state(GONE)
    }

    /// The use of a connection, idle and open.
    pub(crate) fn open() -> InUse {
        InUse::in_state(0)
    }

    fn in_state(state: u8) -> InUse {
        let caps = Caps::new(1, 1);
        let uri = Uri::from_static("http://registry.example/");
        InUse(Arc::new(Use {
            host: caps.host(&uri),
            caps,
            pool: Pool {
                connector: 0,
                authority: uri.authority().cloned(),
            },
            pending: AtomicBool::new(false),
            reading: AtomicUsize::new(0),
            answered: AtomicBool::new(false),
            last: AtomicU64::new(0),
            state: AtomicU8::new(state),
            made: tokio::time::Instant::now(),
            waker: Default::default(),
        }))
    }
}

/// A body being read off a connection, which is not idle until it is dropped.
#[derive(Debug)]
pub(crate) struct Reading(Arc<Use>);

impl Drop for Reading {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.last.store(conn.caps.tick(), Ordering::Relaxed);
        if conn.reading.fetch_sub(1, Ordering::Relaxed) == 1 {
            // Told to close while busy, it closes now: its reader, waiting for the
            // server, is woken to see so.
            if conn.told() {
                conn.waker.wake();
                return;
            }
            // Idle now, and maybe what a connection waiting for a permit needs: one of
            // another pool to its host, or any.
            // Connections wait for the host's permits only when none is left: nearly
            // always one is, which spares every response a lock.
            let wanted = conn.host.permits.available_permits() == 0 && {
                let waiting = conn.host.waiting.lock().expect("waiting poisoned");
                waiting.iter().any(|p| *p != conn.pool)
            };
            match wanted {
                true => conn.tell_to_close(),
                false => conn.caps.close_idle(),
            }
        }
    }
}

/// Wraps a connector so that at most `limit` connections per host and port exist at once.
#[derive(Clone, Debug)]
pub struct LimitedConnector<C> {
    inner: C,
    caps: Arc<Caps>,
    /// Its number among the connectors sharing `caps`.
    id: usize,
}

impl<C> LimitedConnector<C> {
    /// Caps `inner` at `limit` connections per host (at least one).
    pub fn new(inner: C, limit: usize) -> Self {
        Self::sharing(inner, Caps::new(limit, usize::MAX))
    }

    /// Caps `inner`'s connections, with those of the other connectors given `caps`, at
    /// what `caps` allows per host and in all.
    pub fn sharing(inner: C, caps: Arc<Caps>) -> Self {
        let id = caps.connectors.fetch_add(1, Ordering::Relaxed);
        LimitedConnector { inner, caps, id }
    }
}

impl<C> tower_service::Service<Uri> for LimitedConnector<C>
where
    C: tower_service::Service<Uri> + Clone + Send + 'static,
    C::Response: Connection + Send,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    type Response = Limited<C::Response>;
    type Error = BoxError;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = self.caps.host(&uri);
        let pool = Pool {
            connector: self.id,
            authority: uri.authority().cloned(),
        };
        let mut inner = take_ready(&mut self.inner);
        let caps = self.caps.clone();
        let making = async move {
            let permit = caps.host_permit(&host, &pool).await?;
            let total = caps.permit(&host, &pool).await?;
            let io = inner.call(uri).await.map_err(Into::into)?;
            // HTTP/2 frames say their own lengths, and a connection's bytes are many
            // streams', read while their readers may wait: only HTTP/1.1 is watched.
            let h2 = io.connected().is_negotiated_h2();
            let unfruitful = (!h2).then(Unfruitful::default);
            let conn = Arc::new(Use {
                last: AtomicU64::new(caps.tick()),
                caps: caps.clone(),
                host,
                pool,
                pending: AtomicBool::new(false),
                reading: AtomicUsize::new(0),
                answered: AtomicBool::new(false),
                state: AtomicU8::new(FRESH),
                made: tokio::time::Instant::now(),
                waker: Default::default(),
            });
            caps.enlist(&conn);
            Ok(Limited {
                io,
                _permits: (permit, total),
                unfruitful,
                frames: h2.then(Frames::default),
                conn: InUse(conn),
            })
        };
        Box::pin(async move {
            let mut making = std::pin::pin!(making);
            std::future::poll_fn(|cx| {
                connecting();
                making.as_mut().poll(cx)
            })
            .await
        })
    }
}

/// A connection that gives its host's permit, and its transport's, back when it is
/// dropped.
#[derive(Debug)]
pub struct Limited<T> {
    io: T,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
    conn: InUse,
    /// What an HTTP/1.1 connection has read without content; `None` over HTTP/2.
    unfruitful: Option<Unfruitful>,
    /// Where an HTTP/2 connection's writes are in its frames; `None` over HTTP/1.1.
    frames: Option<Frames>,
}

/// Where an HTTP/2 connection's writes are in its frames, to tell a request (a HEADERS
/// frame) from what the connection writes on its own: WINDOW_UPDATE frames as a body is
/// read, PINGs and their answers, SETTINGS acknowledged. Any write counted as a request:
/// a connection that read a body of more than half its window looked busy from then on,
/// and one told to close never did, a connection waiting for its place until the pool
/// closed it, 90 s on.
#[derive(Debug)]
struct Frames {
    /// Bytes of the preface or of a frame's payload still to pass.
    skip: usize,
    /// The frame header being written, and how much of it is.
    head: [u8; 9],
    filled: usize,
    /// The stream of the latest HEADERS frame. A client's streams are numbered up, so a
    /// RST_STREAM of an older one leaves that request (maybe unanswered) on its way.
    latest: u32,
}

impl Default for Frames {
    fn default() -> Self {
        Frames {
            // The client's preface, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", comes first.
            skip: 24,
            head: [0; 9],
            filled: 0,
            latest: 0,
        }
    }
}

impl Frames {
    /// Follows the frames through `bytes` written: `Some(true)` when the last of them to
    /// tell began a request (a HEADERS frame), `Some(false)` when it gave one up (a
    /// RST_STREAM frame of the latest request's stream: a request dropped before its
    /// answer, its HEADERS never answered, left the connection looking busy for good).
    fn written(&mut self, mut bytes: &[u8]) -> Option<bool> {
        const HEADERS: u8 = 0x1;
        const RST_STREAM: u8 = 0x3;
        let mut request = None;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (self.head.len() - self.filled).min(bytes.len());
            self.head[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == self.head.len() {
                let [a, b, c, kind, _, s @ ..] = self.head;
                self.skip = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                self.filled = 0;
                let stream = u32::from_be_bytes(s) & 0x7fff_ffff;
                match kind {
                    HEADERS => {
                        self.latest = stream;
                        request = Some(true);
                    }
                    // One of an older stream, given up while a later request is on its
                    // way (in this write or an earlier one), leaves that one pending.
                    RST_STREAM if stream >= self.latest => request = Some(false),
                    _ => {}
                }
            }
        }
        request
    }
}

impl<T: Connection> Connection for Limited<T> {
    fn connected(&self) -> Connected {
        let connected = self.io.connected().extra(self.conn.clone());
        match &self.unfruitful {
            Some(unfruitful) => connected.extra(unfruitful.clone()),
            None => connected,
        }
    }
}

/// How many bytes an HTTP/1.1 connection may read without a byte of content reaching
/// the reader of a body: a response's head (at most about
/// [`super::MAX_RESPONSE_HEAD_BYTES`]),
/// and a body's framing and what hyper reads ahead (a few of its buffers) stay far below.
/// hyper bounds a chunk's extensions and trailer fields but not its size line, which
/// leading zeros make as long as a server likes, nor the blanks after it, nor the interim
/// (1xx) answers it passes over before a response: read at full speed until the idle
/// timeout, which counts content only, or the response's, which 1xx answers put off.
pub const MAX_UNFRUITFUL: u64 = 4 << 20;

/// Bytes an HTTP/1.1 connection has read since content last reached a body's reader, or
/// since a response's head arrived, shared by the connection and the bodies read off it
/// (the pool hands each response the connection's [`Connected`] extras). Past
/// [`MAX_UNFRUITFUL`] the connection's reads fail with [`Fruitless`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Unfruitful(Arc<AtomicU64>);

impl Unfruitful {
    /// Content reached a reader, or a new response began: the count starts again.
    pub(crate) fn fruit(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Counts `n` bytes read; whether they are more than a connection may read so.
    fn read(&self, n: u64) -> bool {
        self.0.fetch_add(n, Ordering::Relaxed) + n > MAX_UNFRUITFUL
    }
}

/// Why an HTTP/1.1 connection stopped reading: more than [`MAX_UNFRUITFUL`] bytes
/// without content.
#[derive(Debug)]
pub(crate) struct Fruitless;

impl std::fmt::Display for Fruitless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "more than {} of a response read without content (a chunk size line without \
             end, or interim 1xx answers without end)",
            crate::plural::Bytes(MAX_UNFRUITFUL)
        )
    }
}

impl std::error::Error for Fruitless {}

impl<T: Read + Unpin> Read for Limited<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // Told to close while idle: the end of its input, as if the server had closed it.
        if this.conn.0.closes() {
            return Poll::Ready(Ok(()));
        }
        this.conn.0.waker.register(cx.waker());
        let Some(unfruitful) = &this.unfruitful else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        // The inner stream fills a buffer of our own over the same memory, which tells how
        // many bytes it read, as hyper-util's `TokioIo` reads a tokio stream.
        // SAFETY: the inner read, given the unfilled part as uninitialised, only writes to
        // it (it cannot de-initialise a byte), and the cursor is advanced by the `n` bytes
        // it filled.
        let n = unsafe {
            let mut inner = hyper::rt::ReadBuf::uninit(buf.as_mut());
            match Pin::new(&mut this.io).poll_read(cx, inner.unfilled()) {
                Poll::Ready(Ok(())) => inner.filled().len(),
                other => return other,
            }
        };
        // SAFETY: as above.
        unsafe { buf.advance(n) };
        if unfruitful.read(n as u64) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                Fruitless,
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: Write + Unpin> Write for Limited<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let Some(frames) = &mut this.frames else {
            this.conn.0.sending();
            return Pin::new(&mut this.io).poll_write(cx, buf);
        };
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            if let Some(request) = frames.written(&buf[..n]) {
                this.conn.0.sent(request);
            }
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let Some(frames) = &mut this.frames else {
            this.conn.0.sending();
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        };
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = written {
            let mut request = None;
            for buf in bufs {
                let part = n.min(buf.len());
                request = frames.written(&buf[..part]).or(request);
                n -= part;
                if n == 0 {
                    break;
                }
            }
            if let Some(request) = request {
                this.conn.0.sent(request);
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connector whose connections are made at once, and do nothing.
    #[derive(Clone)]
    struct AtOnce;
    struct Conn;
    impl Connection for Conn {
        fn connected(&self) -> Connected {
            Connected::new()
        }
    }
    impl tower_service::Service<Uri> for AtOnce {
        type Response = Conn;
        type Error = std::io::Error;
        type Future = std::future::Ready<std::io::Result<Conn>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Uri) -> Self::Future {
            std::future::ready(Ok(Conn))
        }
    }

    /// `http://host/`.
    fn uri(host: &str) -> Uri {
        format!("http://{host}/").parse().unwrap()
    }

    /// `limited`, as a connection that has served a request: idle, and fresh no more.
    fn served<T>(limited: Limited<T>) -> Limited<T> {
        limited.conn.0.state.fetch_and(!FRESH, Ordering::Relaxed);
        limited
    }

    /// Requests queued behind a host's cap wait in the pool for its connections, which
    /// the cap in all may close as they are handed over: a request built before any
    /// connection waited was not told which connection it was handed. With 100 requests to
    /// one host at a cap of 1, then others to two hosts at a cap in all of 2, about 1 batch
    /// in 45 stalled so; the first connection to wait for its host's permit turns on the
    /// watch for the requests built after it.
    #[test]
    fn a_connection_waiting_for_its_hosts_permit_has_requests_watched() {
        use futures::FutureExt;
        use tower_service::Service;
        let mut limited = LimitedConnector::new(AtOnce, 1);
        let uri = || "https://registry.example/v2/".parse::<Uri>().unwrap();
        let first = limited.call(uri()).now_or_never().unwrap().unwrap();
        assert!(!limited.caps.closes_idle(), "watched under the caps");
        let mut queued = limited.call(uri());
        assert!((&mut queued).now_or_never().is_none(), "made past the cap");
        assert!(
            limited.caps.closes_idle(),
            "requests queued behind a host's cap not watched"
        );
        drop(first);
    }

    /// A host's cap is one for the connectors that share their caps (a transport's three
    /// clients): each capped it on its own, and a host could get three times the cap. The
    /// idle connection of another connector is told to close to make room, at once or
    /// once it is done; one of the connector's own is left for its pool to hand on.
    #[test]
    fn the_connectors_sharing_caps_share_each_hosts_cap() {
        use futures::FutureExt;
        use tower_service::Service;
        let caps = Caps::new(1, usize::MAX);
        let mut a = LimitedConnector::sharing(AtOnce, caps.clone());
        let mut b = LimitedConnector::sharing(AtOnce, caps.clone());
        let uri = || "https://registry.example/v2/".parse::<Uri>().unwrap();
        let held = a.call(uri()).now_or_never().unwrap().unwrap();
        let reading = held.conn.read();
        let mut other = b.call(uri());
        assert!(
            (&mut other).now_or_never().is_none(),
            "a second connection to a host capped at one"
        );
        assert!(!held.conn.0.closes(), "told to close while read from");
        drop(reading);
        assert!(held.conn.0.closes(), "not told to close once done");
        drop(held);
        let theirs = other.now_or_never().expect("the host's permit").unwrap();
        let mut own = b.call(uri());
        assert!((&mut own).now_or_never().is_none());
        assert!(
            !theirs.conn.0.closes(),
            "an idle connection of its own told to close"
        );
    }

    /// A connection waiting for its host's permit, held by an idle connection of its own
    /// connector that the pool hands nobody, gets it once that one has stayed idle a
    /// while: hyper-util falls back on a request's own connection when the idle one its
    /// pool handed it was closed before use, and no other request may come to take the
    /// idle one. It waited until the pool let the idle one go, 90 s on (200 small blobs
    /// from 2 hosts at a cap of 4 in all stalled there, one request short).
    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_of_its_own_gives_way_to_one_waiting_for_the_host() {
        use tower_service::Service;
        let caps = Caps::new(1, usize::MAX);
        let mut a = LimitedConnector::sharing(AtOnce, caps.clone());
        let uri = || "https://registry.example/v2/".parse::<Uri>().unwrap();
        let idle = a.call(uri()).await.unwrap();
        let mut waiting = tokio::spawn(a.call(uri()));
        // Paused, the clock moves only as far as the timers set: past the grace.
        let waited = tokio::time::timeout(OWN_IDLE_GRACE * 3, &mut waiting).await;
        assert!(
            waited.is_err(),
            "a second connection to a host capped at one"
        );
        assert!(
            idle.conn.0.closes(),
            "the idle connection holding the host's permit not told to close"
        );
        drop(idle);
        waiting.await.unwrap().expect("the host's permit");
    }

    /// At the cap on connections in all, a new one is made once the connection idle the
    /// longest has closed, which it is told to; one whose body is being read is not until
    /// it is done.
    #[test]
    fn at_the_cap_the_connection_idle_the_longest_is_told_to_close() {
        use futures::FutureExt;
        use tower_service::Service;
        let caps = Caps::new(4, 2);
        let mut a = LimitedConnector::sharing(AtOnce, caps.clone());
        let mut b = LimitedConnector::sharing(AtOnce, caps.clone());
        let connect = |c: &mut LimitedConnector<AtOnce>, host: &str| {
            c.call(format!("http://{host}/").parse().unwrap())
        };
        let oldest = served(
            connect(&mut a, "one.example")
                .now_or_never()
                .unwrap()
                .unwrap(),
        );
        let busy = connect(&mut b, "two.example")
            .now_or_never()
            .unwrap()
            .unwrap();
        // `oldest` was idle earlier, but `busy` is read from after a request.
        let reading = busy.conn.read();
        let mut third = connect(&mut a, "three.example");
        assert!((&mut third).now_or_never().is_none(), "made past the cap");
        assert!(
            oldest.conn.0.closes(),
            "the idle connection was not told to close"
        );
        assert!(!busy.conn.0.told());
        drop(oldest);
        let third = third.now_or_never().expect("a permit given back").unwrap();
        // Both busy, a connection waits until one is done: `busy`, whose place it gets.
        let _third_reading = third.conn.read();
        let mut fourth = connect(&mut b, "four.example");
        assert!((&mut fourth).now_or_never().is_none());
        drop(reading);
        assert!(busy.conn.0.closes() && !third.conn.0.closes());
        drop(busy);
        assert!(fourth.now_or_never().is_some());
    }

    /// A connection made for a request looks idle until the request is written: at the cap
    /// in all it was told to close under the request, which hyper-util sends again only on
    /// a connection used before. It is passed over until it has sent something, or for
    /// [`FRESH_GRACE`] if it never does (hyper-util made it in the background for a request
    /// that got another, and put it in its pool).
    #[tokio::test(start_paused = true)]
    async fn a_connection_made_for_a_request_is_not_told_to_close_before_it_sends_it() {
        use futures::poll;
        use tower_service::Service;
        let caps = Caps::new(4, 2);
        let mut a = LimitedConnector::sharing(AtOnce, caps.clone());
        let made = a.call(uri("one.example")).await.unwrap();
        let unused = a.call(uri("two.example")).await.unwrap();
        let mut third = a.call(uri("three.example"));
        assert!(poll!(&mut third).is_pending(), "made past the cap");
        assert!(
            !made.conn.0.told() && !unused.conn.0.told(),
            "told to close before it sent anything"
        );
        // Its request written and answered, it is idle as any.
        made.conn.0.sending();
        drop(made.conn.read());
        assert!(made.conn.0.closes(), "not told to close once used");
        assert!(!unused.conn.0.told());
        drop(made);
        let third = third.await.unwrap();
        let _reading = third.conn.read();
        let mut fourth = a.call(uri("four.example"));
        assert!(poll!(&mut fourth).is_pending(), "made past the cap");
        assert!(!unused.conn.0.told());
        // Paused, the clock moves only as far as the timers set: past the grace.
        let waited = tokio::time::timeout(FRESH_GRACE * 3, &mut fourth).await;
        assert!(waited.is_err(), "made past the cap");
        assert!(
            unused.conn.0.closes(),
            "a connection never used kept from closing past the grace"
        );
        drop(unused);
        fourth.await.expect("the place of the unused one");
    }

    /// A connector at its cap in all of 2: `one.example`'s connection busy streaming (kept
    /// so while the second value lives), `two.example`'s idle.
    async fn one_busy_one_idle_at_the_cap() -> (
        LimitedConnector<AtOnce>,
        (Limited<Conn>, Reading),
        Limited<Conn>,
    ) {
        use tower_service::Service;
        let mut a = LimitedConnector::sharing(AtOnce, Caps::new(4, 2));
        let busy = a.call(uri("one.example")).await.unwrap();
        busy.conn.0.sending();
        let streaming = busy.conn.read();
        let idle = served(a.call(uri("two.example")).await.unwrap());
        (a, (busy, streaming), idle)
    }

    /// At the cap in all, a request whose own host's connection is busy waits for it a
    /// moment before another host's idle one is closed for it, and only a moment: one
    /// streaming a large blob stays busy for minutes, and the request goes on past
    /// [`FRESH_GRACE`], on a current-thread runtime as the CLI's. One with no busy
    /// connection of its own has room made at once.
    #[tokio::test(start_paused = true)]
    async fn a_request_waits_for_its_hosts_busy_connection_a_moment_only() {
        use futures::poll;
        use tower_service::Service;
        let (mut a, _busy, idle) = one_busy_one_idle_at_the_cap().await;
        let mut patient = a.call(uri("one.example"));
        assert!(poll!(&mut patient).is_pending(), "made past the cap");
        assert!(
            !idle.conn.0.told(),
            "another host's idle connection closed while its own was busy"
        );
        // Paused, the clock moves only as far as the timers set: past the grace.
        let waited = tokio::time::timeout(FRESH_GRACE * 3, &mut patient).await;
        assert!(waited.is_err(), "made past the cap");
        assert!(
            idle.conn.0.closes(),
            "no room made past the grace for a request whose connection stays busy"
        );
        drop(idle);
        let made = patient.await.expect("the place of the idle one");
        made.conn.0.sending();
        drop(made.conn.read());
        // A host with no busy connection of its own waits for none.
        let mut other = a.call(uri("three.example"));
        assert!(poll!(&mut other).is_pending(), "made past the cap");
        assert!(made.conn.0.closes(), "room not made at once");
    }

    /// At the cap in all, room made for a request with no busy connection of its own is
    /// its, not that of one waiting patiently before it for its own host's busy one: the
    /// semaphore served that one first, and this one waited for its grace to pass, or
    /// another connection to be done, before room was made again.
    #[tokio::test(start_paused = true)]
    async fn room_made_for_an_impatient_request_is_not_taken_by_a_patient_one() {
        use futures::poll;
        use tower_service::Service;
        let (mut a, _busy, idle) = one_busy_one_idle_at_the_cap().await;
        let mut patient = a.call(uri("one.example"));
        assert!(poll!(&mut patient).is_pending(), "made past the cap");
        let mut other = a.call(uri("three.example"));
        assert!(poll!(&mut other).is_pending(), "made past the cap");
        assert!(idle.conn.0.closes(), "room not made at once");
        drop(idle);
        assert!(
            poll!(&mut patient).is_pending(),
            "took the room made for another"
        );
        let Poll::Ready(other) = poll!(&mut other) else {
            panic!("the room made for it not its");
        };
        drop(other.expect("the place of the idle one"));
        patient.await.expect("the place of the other");
    }

    /// A connection told to close while a request was on it wakes its reader once done,
    /// which reads the end then: its reader slept waiting for the server, and the
    /// connection stayed open, its place not made, until the pool closed it 90 s on.
    #[test]
    fn a_connection_told_to_close_while_busy_closes_once_done() {
        use futures::FutureExt;
        use tower_service::Service;
        struct Count(AtomicUsize);
        impl futures::task::ArcWake for Count {
            fn wake_by_ref(me: &Arc<Self>) {
                me.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = futures::task::waker(woken.clone());
        let caps = Caps::new(4, 1);
        let mut a = LimitedConnector::sharing(AtOnce, caps.clone());
        let sending = a
            .call("http://one.example/".parse().unwrap())
            .now_or_never()
            .unwrap()
            .unwrap();
        sending.conn.0.sending();
        sending.conn.0.waker.register(&waker);
        let mut next = a.call("http://two.example/".parse().unwrap());
        assert!((&mut next).now_or_never().is_none());
        assert!(!sending.conn.0.closes(), "closed with a request on it");
        sending.conn.0.waker.register(&waker);
        let before = woken.0.load(Ordering::Relaxed);
        drop(sending.conn.read());
        assert!(sending.conn.0.closes());
        assert!(
            woken.0.load(Ordering::Relaxed) > before,
            "its reader not woken"
        );
        drop(sending);
        assert!(next.now_or_never().is_some());
    }

    /// Only a HEADERS frame is a request on its way, and a RST_STREAM one gives it up,
    /// wherever the writes split the frames: a WINDOW_UPDATE or a PING's answer made a
    /// connection look busy for good, and so did a request dropped before its answer.
    #[test]
    fn an_http2_request_is_told_by_its_headers_frame() {
        let frame = |kind: u8, payload: &[u8]| {
            let len = payload.len();
            let mut f = vec![
                (len >> 16) as u8,
                (len >> 8) as u8,
                len as u8,
                kind,
                0,
                0,
                0,
                0,
                1,
            ];
            f.extend_from_slice(payload);
            f
        };
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(0x4, &[0; 6])); // SETTINGS
        stream.extend(frame(0x8, &[0, 0, 0x80, 0])); // WINDOW_UPDATE
        stream.extend(frame(0x6, &[1; 8])); // PING
        let quiet = stream.len();
        stream.extend(frame(0x1, &[0x82; 300])); // HEADERS
        let given_up = stream.len();
        stream.extend(frame(0x3, &[0, 0, 0, 8])); // RST_STREAM, CANCEL
        for split in [1, 5, 9, 24, 4096] {
            let mut frames = Frames::default();
            let mut at = 0;
            let (mut request_at, mut given_up_at, mut last) = (None, None, None);
            for chunk in stream.chunks(split) {
                let told = frames.written(chunk);
                if told == Some(true) && request_at.is_none() {
                    request_at = Some(at);
                }
                if told == Some(false) && given_up_at.is_none() {
                    given_up_at = Some(at);
                }
                last = told.or(last);
                at += chunk.len();
            }
            // Each seen in the write that completes its frame's header, and not before.
            let seen_at = |start: usize| Some((start + 8) / split * split);
            if seen_at(quiet) != seen_at(given_up) {
                assert_eq!(request_at, seen_at(quiet), "split {split}");
            }
            assert_eq!(given_up_at, seen_at(given_up), "split {split}");
            assert_eq!(last, Some(false), "split {split}");
        }
    }

    /// A RST_STREAM gives up its own stream's request, not one begun after it: a request
    /// given up (a timeout) as another went out on the connection left it looking idle with
    /// that other's HEADERS unanswered, and at a cap it was closed under it.
    #[test]
    fn a_reset_of_an_older_stream_leaves_a_newer_request_pending() {
        let frame = |kind: u8, stream: u8, payload: &[u8]| {
            let len = payload.len() as u8;
            let mut f = vec![0, 0, len, kind, 0, 0, 0, 0, stream];
            f.extend_from_slice(payload);
            f
        };
        let mut frames = Frames::default();
        assert_eq!(frames.written(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
        assert_eq!(frames.written(&frame(0x1, 1, &[0x82; 20])), Some(true));
        assert_eq!(frames.written(&frame(0x1, 3, &[0x82; 20])), Some(true));
        // Stream 1 given up while stream 3's request is unanswered, in a write of its
        // own or after stream 3's HEADERS in the same one.
        assert_eq!(frames.written(&frame(0x3, 1, &[0, 0, 0, 8])), None);
        let mut both = frame(0x1, 5, &[0x82; 20]);
        both.extend(frame(0x3, 3, &[0, 0, 0, 8]));
        assert_eq!(frames.written(&both), Some(true));
        // The newest request given up: nothing is left waiting as far as resets tell.
        assert_eq!(frames.written(&frame(0x3, 5, &[0, 0, 0, 8])), Some(false));
    }

    /// A connection the server closed at the end of a body (`Connection: close`) is gone
    /// before the body's reader lets go of it; told to close then, as another connector
    /// waited for its host, it was counted among those closing for good, and at the cap
    /// on connections in all no idle one was told to close again: each request waited
    /// for the pool to close one, 90 s on.
    #[test]
    fn a_connection_gone_before_its_body_is_dropped_is_not_counted_closing() {
        use futures::FutureExt;
        use tower_service::Service;
        let caps = Caps::new(1, 2);
        let mut a = LimitedConnector::sharing(AtOnce, caps.clone());
        let mut b = LimitedConnector::sharing(AtOnce, caps.clone());
        let closed = a.call(uri("one.example")).now_or_never().unwrap().unwrap();
        let reading = closed.conn.read();
        let mut theirs = b.call(uri("one.example"));
        assert!((&mut theirs).now_or_never().is_none());
        // The server's close ends the connection, its permit handed to `theirs`.
        drop(closed);
        drop(reading);
        let idle = served(theirs.now_or_never().expect("the host's permit").unwrap());
        let other = served(a.call(uri("two.example")).now_or_never().unwrap().unwrap());
        let mut third = a.call(uri("three.example"));
        assert!((&mut third).now_or_never().is_none(), "made past the cap");
        assert!(
            idle.conn.0.closes() || other.conn.0.closes(),
            "no idle connection told to close at the cap ({} counted closing)",
            caps.closing.load(Ordering::Relaxed)
        );
    }

    /// `usize::MAX` for "no cap", as a library caller may write it: the semaphore refused
    /// it with a panic at the host's first connection.
    #[test]
    fn any_cap_makes_a_semaphore() {
        for cap in [0, 1, usize::MAX] {
            let caps = Caps::new(cap, cap);
            let host = caps.host(&"https://registry.example/v2/".parse().unwrap());
            assert!(host.permits.available_permits() >= 1, "{cap}");
            assert!(caps.total.available_permits() >= 1, "{cap}");
        }
    }

    /// A cap per host above the one in all is the one in all: a host's requests waited
    /// for the cap in all, closing their own host's connections to make room.
    #[test]
    fn a_cap_per_host_is_never_above_the_one_in_all() {
        let caps = Caps::new(16, 4);
        let host = caps.host(&"https://registry.example/v2/".parse().unwrap());
        assert_eq!(host.permits.available_permits(), 4);
    }

    /// A host written in capitals, or with its scheme's port, is the host the cap is
    /// for: a semaphore of its own doubled the cap (`registry.example` redirecting blobs
    /// to `registry.example:443` got two caps' worth of connections).
    #[test]
    fn one_host_spelled_two_ways_shares_its_cap() {
        let caps = Caps::new(2, usize::MAX);
        let sem = |u: &str| caps.host(&u.parse().unwrap());
        assert!(Arc::ptr_eq(
            &sem("https://registry.example/v2/"),
            &sem("https://Registry.Example/v2/x")
        ));
        assert!(Arc::ptr_eq(
            &sem("https://registry.example/v2/"),
            &sem("https://registry.example:443/v2/x")
        ));
        assert!(Arc::ptr_eq(
            &sem("http://registry.example/v2/"),
            &sem("http://REGISTRY.example:80/v2/x")
        ));
        assert!(!Arc::ptr_eq(
            &sem("https://registry.example/v2/"),
            &sem("http://registry.example:443/v2/")
        ));
        assert!(!Arc::ptr_eq(
            &sem("https://registry.example/v2/"),
            &sem("https://registry.example:5000/v2/")
        ));
    }

    /// The caps of hosts with no connection left are forgotten, those of hosts with one
    /// kept: a registry that sends each blob to a host of its own made the map grow with
    /// the batch.
    #[test]
    fn hosts_without_connections_are_forgotten() {
        let caps = Caps::new(2, usize::MAX);
        let held = caps.host(&"https://registry.example/v2/".parse().unwrap());
        for i in 0..10_000 {
            let uri = format!("https://blob-{i}.cdn.example/b").parse().unwrap();
            drop(caps.host(&uri));
        }
        let hosts = caps.hosts.lock().unwrap();
        assert!(hosts.len() <= KEEP_IDLE_HOSTS, "{} hosts kept", hosts.len());
        assert!(
            hosts.values().any(|s| Arc::ptr_eq(s, &held)),
            "the cap of a host with a connection was forgotten"
        );
    }

    /// A connection holds its permit while it sits idle in the pool, which hands it only
    /// to requests of its own pool key, and hyper keys `host` and `host:443` apart: a
    /// request written the other way (a token realm, a `Location` with `:443`) that shared
    /// the cap waited for a permit until the pool closed an idle connection, 90 s on. The
    /// idle connection of the other spelling is told to close, as one of another
    /// connector is; one of the same spelling is left for the pool to hand on.
    #[test]
    fn idle_connections_of_another_pool_key_keep_no_request_waiting() {
        use futures::FutureExt;
        use tower_service::Service;
        let mut limited = LimitedConnector::new(AtOnce, 1);
        let idle = served(
            limited
                .call("https://registry.example/v2/".parse().unwrap())
                .now_or_never()
                .unwrap()
                .unwrap(),
        );
        let mut same = limited.call("https://Registry.example/v2/x".parse().unwrap());
        assert!((&mut same).now_or_never().is_none(), "made past the cap");
        assert!(
            !idle.conn.0.told(),
            "one its own pool hands on told to close"
        );
        drop(same);
        let mut other = limited.call("https://registry.example:443/token".parse().unwrap());
        assert!((&mut other).now_or_never().is_none(), "made past the cap");
        assert!(
            idle.conn.0.closes(),
            "an idle connection the request cannot use was not told to close"
        );
        drop(idle);
        assert!(
            matches!(other.now_or_never(), Some(Ok(_))),
            "waited for a permit held by an idle connection it cannot use"
        );
    }

    /// A connection made within a request's poll is told to each caller around it: the
    /// watch of a request within the wait for its answer, each looking for it.
    #[test]
    fn a_connection_made_within_nested_polls_is_told_to_each() {
        let (((), inner), outer) = polling(|| polling(connecting));
        assert!(inner && outer, "inner {inner}, outer {outer}");
        let (((), inner), outer) = polling(|| {
            connecting();
            polling(|| ())
        });
        assert!(!inner && outer, "inner {inner}, outer {outer}");
        assert!(
            !polling(|| ()).1,
            "told of a connection made in an earlier poll"
        );
    }
}
