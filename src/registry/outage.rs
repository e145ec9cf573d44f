//! A registry failing every request (an outage: 503s, connections refused or closed
//! unanswered, timeouts) is asked one request at a time, for every task waiting.
//!
//! Each request retries on a budget of its own. Left at that, a worker's tasks each spent
//! theirs on a host that was already failing: `--jobs` requests at every step of the
//! backoff, and a batch of N objects asked N × (`--retries` + 1) times before it ended.
//! Here the host keeps one count of the rounds it failed in a row, as regclient keeps one
//! backoff per host. From the second on, the host is paused (the caller sets the pause)
//! and one request, the probe, is sent for all: the others wait for its outcome, and its
//! failure counts as one of theirs. Once the host has failed as many rounds in a row as
//! one object may be asked for, each object waiting, and each later one, gets one request
//! of its own, after the pause: no object fails on other objects' failures alone. Any
//! answer (a success, a 404) ends the outage: the waiting requests are sent at once, and
//! the count starts again; a request late to the outage that ended is late to no other.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use http::Uri;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::retry::HostPause;

/// Rounds failed in a row before requests wait for one another: one is a passing fault (a
/// node behind a load balancer restarting), for which holding every other request would
/// slow the batch for nothing; a retry failing again is an outage.
pub(crate) const HOLD_AFTER: u32 = 2;

/// An outage whose last failure is this old, and the host's pause (its `Retry-After`, the
/// outage's own) as long over, is forgotten: nothing asked the host for that long (a
/// worker fed slowly, `tail -f`), and the next object gets its retries again, not one
/// request. Counted from the end of the pause: every request waiting out a `Retry-After`
/// of a minute is no host left alone, and forgetting then sent them all at once, each
/// with its retries again. Never while a request under the outage sleeps before it asks
/// again (a library's policy may back off for minutes, a gateway's `Retry-After` be as
/// long), counted from when it began to: forgotten meanwhile, its requests woke to a host
/// that seemed well, and went all at once, each with its retries again. A request that
/// gave up is not waited for: nothing asking, the next object gets its retries.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// The failures in a row of one host, shared by every request to it.
#[derive(Default)]
pub(crate) struct Outage {
    /// Rounds failed in a row; 0 while the host answers. Written under the lock, read
    /// without it by every request, which nearly always finds 0.
    streak: AtomicU32,
    /// Bumped by every failure counted and every answer: a request sent before it saw
    /// neither, and failing does not count again (four tasks meeting one 503 together
    /// are one round, not four).
    round: AtomicU64,
    /// Outages over so far (an answer, or one forgotten): a request that came late to one
    /// is late to that one only. Bumped after `streak` is reset.
    ended: AtomicU64,
    state: Mutex<State>,
    /// Woken when a probe's outcome is known, or the probe is gone without one, or the
    /// outage ends (any answer, or forgotten).
    settled: Notify,
}

#[derive(Default)]
struct State {
    /// The ticket of the request sent for all, while one is on its way.
    probe: Option<u64>,
    tickets: u64,
    /// The last failure counted, for the requests that waited on it, and when.
    last: Option<(Error, Instant)>,
    /// Requests met by an outage sleeping now before they ask again ([`Asleep`]): each
    /// until it asks again, however long after the failure counted it began to sleep (a
    /// request of the same round may learn of its own much later: a timeout). Only
    /// requests that sleep count: one that gave up, or was stopped while it slept, asks
    /// nothing more.
    sleepers: usize,
}

/// A request met by the outage that sleeps before it asks again: counted in
/// [`State::sleepers`] until it is dropped, once the request came to the host again
/// ([`Outage::admit`]), or was stopped before.
#[must_use = "the outage is remembered while this is held, until the request asks again"]
pub(crate) struct Asleep<'a>(&'a Outage);

impl Drop for Asleep<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.sleepers -= 1;
    }
}

/// How a request came to the host, for [`Outage::late`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Came {
    /// The outage it came late to, past the rounds one object may be asked for.
    late_to: Option<u64>,
}

/// What a request may do now.
pub(crate) enum Admit<'a> {
    /// Send it, and settle the ticket with its outcome.
    Send(Ticket<'a>),
    /// The request sent for all failed: this one failed with it. The failure (its URL
    /// the probe's) and the rounds the host failed in a row.
    Failed(Error, u32),
}

/// A request on its way, to be settled with [`Ticket::answered`] or [`Ticket::failed`].
/// Dropped unsettled (its task stopped, or a failure that says nothing of the host), it
/// lets another request be the probe.
pub(crate) struct Ticket<'a> {
    outage: &'a Outage,
    round: u64,
    id: Option<u64>,
}

impl Outage {
    /// The state, poisoned or not. Its guards take it while they are dropped, which may be
    /// while a panic unwinds (one under this lock, in [`Outage::admit`], unwinds through
    /// the request's sleep and ticket): a second panic there aborted the process, every
    /// other download with it. What a panic may leave half done here is a count the next
    /// answer or the forgetting resets: at worst an outage remembered or forgotten early.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits, while the host is failing, for the request sent for all to be answered, or
    /// becomes that request. The caller has waited out the host's `pause` first.
    pub(crate) async fn admit(&self, pause: &HostPause) -> Admit<'_> {
        let mut seen = None;
        loop {
            if self.streak.load(Ordering::Acquire) < HOLD_AFTER {
                let round = self.round.load(Ordering::Acquire);
                return Admit::Send(Ticket {
                    outage: self,
                    round,
                    id: None,
                });
            }
            let settled = self.settled.notified();
            {
                let mut s = self.state();
                let round = self.round.load(Ordering::Acquire);
                let streak = self.streak.load(Ordering::Acquire);
                if streak < HOLD_AFTER || self.forgot(&mut s, pause) {
                    continue;
                }
                if seen.is_some_and(|seen| seen != round) {
                    if let Some((e, _)) = &s.last {
                        return Admit::Failed(e.shared(), streak);
                    }
                }
                if s.probe.is_none() {
                    s.tickets += 1;
                    s.probe = Some(s.tickets);
                    return Admit::Send(Ticket {
                        outage: self,
                        round,
                        id: Some(s.tickets),
                    });
                }
                seen = Some(round);
            }
            settled.await;
        }
    }

    /// Whether requests wait their turn now ([`admit`](Self::admit)): the host failed
    /// rounds enough in a row, and the outage is not one to forget, as `admit` would. A
    /// request that asks for its token first while the outage holds, and sleeps out the
    /// token server's failure under it, kept an outage nobody met for a minute remembered
    /// (and the next object late to it, on one request) before `admit` could forget it.
    pub(crate) fn holds(&self, pause: &HostPause) -> bool {
        // Nearly every request, on a host that answers: no lock.
        if self.streak.load(Ordering::Acquire) < HOLD_AFTER {
            return false;
        }
        let mut s = self.state();
        !self.forgot(&mut s, pause) && self.streak.load(Ordering::Acquire) >= HOLD_AFTER
    }

    /// Forgets the outage, under its lock `s`, when nothing met it for [`FORGET_AFTER`]
    /// past its last failure and the host's `pause`, and no request sleeps under it:
    /// whether it did.
    fn forgot(&self, s: &mut State, pause: &HostPause) -> bool {
        let quiet_since = s
            .last
            .as_ref()
            .map(|(_, at)| pause.until().map_or(*at, |until| until.max(*at)));
        let quiet = quiet_since.is_some_and(|since| since.elapsed() > FORGET_AFTER);
        if s.sleepers > 0 || !quiet {
            return false;
        }
        self.streak.store(0, Ordering::Release);
        self.ended.fetch_add(1, Ordering::AcqRel);
        self.round.fetch_add(1, Ordering::AcqRel);
        s.last = None;
        self.settled.notify_waiters();
        true
    }

    /// A ticket for a request sent beside the one sent for all: the last attempt of a
    /// request that never went out itself.
    pub(crate) fn own(&self) -> Ticket<'_> {
        Ticket {
            outage: self,
            round: self.round.load(Ordering::Acquire),
            id: None,
        }
    }

    /// Sleeps `wait` before a request asks again (its backoff, or the server's
    /// `Retry-After`, which a gateway's 504 may send without pausing the host): an outage
    /// it met is remembered while it sleeps, and after, while the caller holds what this
    /// returns: until the request came to the host again. Counted out as it woke, the last
    /// of a round's requests, all woken at once by the same `Retry-After`, found the
    /// outage forgotten (its last failure more than a minute before) and went with
    /// retries of its own. Only a sleep that is slept counts: a request that gave up is no
    /// reason to remember the outage, nor is one stopped while it slept (its download
    /// dropped), which was remembered until its wake time, on a host no one was sleeping
    /// out.
    pub(crate) async fn sleep_out(&self, wait: Duration) -> Option<Asleep<'_>> {
        let asleep = self.asleep();
        tokio::time::sleep(wait).await;
        asleep
    }

    /// Counts a request sleeping under the outage, if the host is failing.
    fn asleep(&self) -> Option<Asleep<'_>> {
        // Nearly every request, on a host that answers: no lock.
        if self.streak.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut s = self.state();
        if self.streak.load(Ordering::Acquire) == 0 {
            return None;
        }
        s.sleepers += 1;
        Some(Asleep(self))
    }

    /// How a request comes to the host now: late, when the host has failed more than
    /// `rounds` rounds in a row, as many as one object may be asked for.
    pub(crate) fn came(&self, rounds: u32) -> Came {
        // The outage's number before its streak: one ending in between leaves the request
        // late to an outage over, which is late to none, never to the next.
        let outage = self.ended.load(Ordering::Acquire);
        let late = self.streak.load(Ordering::Acquire) > rounds;
        Came {
            late_to: late.then_some(outage),
        }
    }

    /// Whether a request that `came` so is late to the outage now: one it came late to
    /// has not ended since. A new outage, begun while it was held or on its way, is one
    /// it came before, and spends its retries on, as those under way do.
    pub(crate) fn late(&self, came: Came) -> bool {
        came.late_to == Some(self.ended.load(Ordering::Acquire))
    }
}

impl Ticket<'_> {
    /// The host answered (any status but a gateway's or an unavailable host's 502, 503
    /// or 504): the outage, if any, is over.
    pub(crate) fn answered(mut self) {
        let o = self.outage;
        // Nearly every request, on a host that answers: no lock.
        if self.id.is_none() && o.streak.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut s = o.state();
        if o.streak.load(Ordering::Acquire) > 0 {
            o.streak.store(0, Ordering::Release);
            o.ended.fetch_add(1, Ordering::AcqRel);
            o.round.fetch_add(1, Ordering::AcqRel);
            s.last = None;
            // Not only the probe's answer: those waiting go now, not once a probe that
            // may hang until `--timeout` is done.
            o.settled.notify_waiters();
        }
        self.release(&mut s);
    }

    /// The request failed as an outage does (a 503, a refused or dropped connection, a
    /// timeout): returns the rounds failed in a row, and whether this failure made the
    /// latest of them (so the caller pauses the host once per round).
    pub(crate) fn failed(mut self, e: &Error) -> (u32, bool) {
        let o = self.outage;
        let mut s = o.state();
        let counted = o.round.load(Ordering::Acquire) == self.round;
        if counted {
            o.streak.fetch_add(1, Ordering::AcqRel);
            o.round.fetch_add(1, Ordering::AcqRel);
            s.last = Some((e.shared(), Instant::now()));
        }
        self.release(&mut s);
        (o.streak.load(Ordering::Acquire), counted)
    }

    /// Lets the next request be the probe, and wakes those waiting on this one.
    fn release(&mut self, s: &mut State) {
        if let Some(id) = self.id.take() {
            if s.probe == Some(id) {
                s.probe = None;
            }
            self.outage.settled.notify_waiters();
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.id.is_some() {
            let o = self.outage;
            let mut s = o.state();
            self.release(&mut s);
        }
    }
}

/// Whether `e`, a failure of sending `url`, was met at `url`'s own scheme, host and port,
/// not at the server a redirect led to: the URL a transport error carries is the one it
/// was sending, redacted (`with_url`) but with its origin whole. Said of none, it was.
pub(super) fn met_at(e: &Error, url: &Uri) -> bool {
    let (Some(at), Some(scheme), Some(authority)) = (e.url(), url.scheme_str(), url.authority())
    else {
        return true;
    };
    let host = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, h)| h);
    at.strip_prefix(scheme)
        .and_then(|at| at.strip_prefix("://"))
        .and_then(|at| at.strip_prefix(host))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
}

/// `e` as the request's last failure, with retries left, once the host has failed more
/// rounds in a row than one object may be asked for, when the request came `late`, after
/// those rounds: asking again for each object would go on as long as there are objects.
/// `e` as it is otherwise, for the request's own retries to decide: one that came before
/// met those rounds itself (the parts of one blob, failing by turns), and keeps them.
pub(super) fn outage_over(
    e: Error,
    url: &Uri,
    streak: u32,
    late: bool,
    (retries, max_retries): (u32, u32),
) -> Result<Error> {
    // On its own last attempt, the request ends as any other does.
    if !late || streak <= max_retries || retries >= max_retries {
        return Ok(e);
    }
    Err(e
        .with_note(format_args!(
            "the registry failed every request, {streak} times in a row"
        ))
        .with_attempts(retries + 1)
        .with_url(url))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::error::ErrorKind;

    fn e503() -> Error {
        Error::new(ErrorKind::Http, "registry answered 503").with_status(503)
    }

    /// Admission on a host that never asked to be left alone.
    async fn admit(o: &Outage) -> Admit<'_> {
        o.admit(&HostPause::default()).await
    }

    fn send(a: Admit<'_>) -> Ticket<'_> {
        match a {
            Admit::Send(t) => t,
            Admit::Failed(..) => panic!("expected to send"),
        }
    }

    /// A request sleeping `wait` under `o`'s outage, on its way once this returns.
    async fn sleeping(o: &Arc<Outage>, wait: Duration) -> tokio::task::JoinHandle<()> {
        let o = o.clone();
        let sleeper = tokio::spawn(async move { drop(o.sleep_out(wait).await) });
        // On this one thread, the sleeper runs until it sleeps.
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        sleeper
    }

    /// Requests that fail together are one round; past `HOLD_AFTER` rounds one request is
    /// sent for all and the others wait for it.
    #[tokio::test(start_paused = true)]
    async fn one_request_at_a_time_once_the_host_failed_twice_in_a_row() {
        let o = Outage::default();
        let (a, b) = (send(admit(&o).await), send(admit(&o).await));
        assert_eq!(a.failed(&e503()), (1, true));
        assert_eq!(b.failed(&e503()), (1, false), "the same round");
        let (a, b) = (send(admit(&o).await), send(admit(&o).await));
        assert!(a.id.is_none() && b.id.is_none(), "one failure holds nobody");
        assert_eq!(a.failed(&e503()), (2, true));
        drop(b);
        let probe = send(admit(&o).await);
        assert!(probe.id.is_some());
        let wait = tokio::time::timeout(Duration::from_secs(1), admit(&o)).await;
        assert!(wait.is_err(), "a second request waits for the probe");
    }

    /// Nothing asked the host for a minute: the next request is sent, as if no failure
    /// had been.
    #[tokio::test(start_paused = true)]
    async fn an_outage_nobody_met_for_a_minute_is_forgotten() {
        let o = Outage::default();
        for _ in 0..HOLD_AFTER + 3 {
            send(admit(&o).await).failed(&e503());
        }
        tokio::time::advance(FORGET_AFTER + Duration::from_secs(1)).await;
        let (a, b) = (send(admit(&o).await), send(admit(&o).await));
        assert!(a.id.is_none() && b.id.is_none());
        assert_eq!(a.failed(&e503()), (1, true));
    }

    /// Every request waited out the host's `Retry-After` of more than a minute, so none
    /// went for that long: the registry's own wait, not a host nobody asked. Counted as
    /// a minute without a request, it ended the outage, and the next wave went at once.
    #[tokio::test(start_paused = true)]
    async fn a_minute_spent_waiting_out_the_host_s_pause_does_not_forget_it() {
        let (o, pause) = (Outage::default(), HostPause::default());
        for _ in 0..HOLD_AFTER {
            send(o.admit(&pause).await).failed(&e503());
        }
        pause.pause_for(FORGET_AFTER + Duration::from_secs(30));
        pause.wait().await;
        let probe = send(o.admit(&pause).await);
        assert!(probe.id.is_some(), "still one request for all");
        drop(probe);
        // Once the pause is over, a minute without a request does forget it.
        tokio::time::advance(FORGET_AFTER + Duration::from_secs(1)).await;
        assert!(send(o.admit(&pause).await).id.is_none(), "forgotten");
    }

    /// A request late to an outage (past the rounds one object may be asked for) is late
    /// to that one only: once it ends, by an answer or forgotten, a new one is one the
    /// request came before.
    #[tokio::test(start_paused = true)]
    async fn a_request_late_to_an_outage_that_ended_is_late_no_longer() {
        let o = Outage::default();
        let failing = || async {
            for _ in 0..HOLD_AFTER + 1 {
                send(admit(&o).await).failed(&e503());
            }
        };
        failing().await;
        let came = o.came(HOLD_AFTER);
        assert!(o.late(came));
        assert!(
            !o.late(o.came(HOLD_AFTER + 1)),
            "not past the rounds it may be asked"
        );
        o.own().answered();
        failing().await;
        assert!(!o.late(came), "ended by an answer");
        let came = o.came(HOLD_AFTER);
        assert!(o.late(came));
        tokio::time::advance(FORGET_AFTER + Duration::from_secs(1)).await;
        drop(send(admit(&o).await));
        failing().await;
        assert!(!o.late(came), "forgotten");
    }

    #[tokio::test]
    async fn a_waiting_request_shares_the_probe_s_failure_and_an_answer_ends_the_outage() {
        let o = Arc::new(Outage::default());
        for _ in 0..HOLD_AFTER {
            send(admit(&o).await).failed(&e503());
        }
        let probe = send(admit(&o).await);
        let waiter = {
            let o = o.clone();
            tokio::spawn(async move {
                match admit(&o).await {
                    Admit::Failed(e, streak) => Some((e.status(), streak)),
                    Admit::Send(_) => None,
                }
            })
        };
        // On this one thread, the waiter runs until it waits for the probe.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!(probe.failed(&e503()), (HOLD_AFTER + 1, true));
        assert_eq!(waiter.await.unwrap(), Some((Some(503), HOLD_AFTER + 1)));
        // A probe gone without an outcome hands over; an answer ends the outage.
        drop(send(admit(&o).await));
        send(admit(&o).await).answered();
        assert_eq!(o.streak.load(Ordering::Acquire), 0);
        let (a, b) = (send(admit(&o).await), send(admit(&o).await));
        assert!(
            a.id.is_none() && b.id.is_none(),
            "no probe while the host answers"
        );
    }

    /// A host failed twice in a row, its probe on its way, and a request waiting for it:
    /// the probe, and whether the request is sent once it stops waiting.
    async fn waiting_behind_a_probe(
        o: &Arc<Outage>,
    ) -> (Ticket<'_>, tokio::task::JoinHandle<bool>) {
        for _ in 0..HOLD_AFTER {
            send(admit(o).await).failed(&e503());
        }
        let probe = send(admit(o).await);
        let waiter = {
            let o = o.clone();
            tokio::spawn(async move { matches!(admit(&o).await, Admit::Send(_)) })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        (probe, waiter)
    }

    /// An answer to a request beside the probe (an object's own last attempt, one sent
    /// before the outage held) ends the outage for those waiting too: they waited on for a
    /// probe that may hang until `--timeout`.
    #[tokio::test]
    async fn an_answer_beside_the_probe_sends_those_waiting_at_once() {
        let o = Arc::new(Outage::default());
        let (_probe, waiter) = waiting_behind_a_probe(&o).await;
        o.own().answered();
        let sent = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(
            sent.expect("still waiting for the probe").unwrap(),
            "sent once the host answered"
        );
    }

    /// An outage forgotten (a minute without a failure) while a probe hangs lets those
    /// waiting for it go too, as the later requests go.
    #[tokio::test(start_paused = true)]
    async fn an_outage_forgotten_under_a_hanging_probe_sends_those_waiting() {
        let o = Arc::new(Outage::default());
        let (_probe, waiter) = waiting_behind_a_probe(&o).await;
        tokio::time::advance(FORGET_AFTER + Duration::from_secs(1)).await;
        assert!(send(admit(&o).await).id.is_none(), "forgotten");
        let sent = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(sent.expect("still waiting for the probe").unwrap());
    }

    /// A library's policy may back off for longer than a minute (`max_delay` of five):
    /// the outage is remembered while its requests sleep that out. Forgotten a minute
    /// after the probe failed (the host's pause, the least backoff, over long before), the
    /// requests woke to a host that seemed well and went all at once, each with its
    /// retries again.
    #[tokio::test(start_paused = true)]
    async fn an_outage_outlives_the_longest_backoff_its_requests_sleep_out() {
        // The last backoff of a policy with 5 retries from 30 s, capped at its `max_delay`.
        let longest = Duration::from_secs(300);
        let (o, pause) = (Arc::new(Outage::default()), HostPause::default());
        for _ in 0..HOLD_AFTER {
            send(o.admit(&pause).await).failed(&e503());
        }
        let sleeper = sleeping(&o, longest).await;
        // Past a minute and the host's pause, within the backoff a request sleeps.
        tokio::time::advance(longest - Duration::from_secs(1)).await;
        let probe = send(o.admit(&pause).await);
        assert!(probe.id.is_some(), "still one request for all");
        drop(probe);
        tokio::time::advance(Duration::from_secs(2)).await;
        sleeper.await.unwrap();
        assert!(send(o.admit(&pause).await).id.is_none(), "forgotten");
    }

    /// A request woken from its sleep under the outage keeps it remembered until it came
    /// to the host again: the requests a `Retry-After` of 90 s put to sleep all wake at
    /// once, and the last of them to come, counted out when it woke, found the outage
    /// forgotten (its last failure 90 s before) and went with retries of its own, as did
    /// every request after it.
    #[tokio::test(start_paused = true)]
    async fn a_request_woken_from_its_sleep_keeps_the_outage_until_it_asks() {
        let (o, pause) = (Outage::default(), HostPause::default());
        for _ in 0..HOLD_AFTER {
            send(o.admit(&pause).await).failed(&e503());
        }
        let woken = o.sleep_out(FORGET_AFTER + Duration::from_secs(30)).await;
        assert!(woken.is_some(), "slept under the outage");
        let probe = send(o.admit(&pause).await);
        assert!(probe.id.is_some(), "still one request for all");
        drop((probe, woken));
    }

    /// A panic while the outage's lock is held (the lock poisoned) unwinds through a
    /// request holding its sleep and its ticket ([`Host::request`] holds both across
    /// [`Outage::admit`]): dropped then, each let go of the lock with a second panic, and
    /// a panic while unwinding aborts the whole process, every other download with it.
    /// Each counts itself out still, and the host goes on being asked.
    ///
    /// [`Host::request`]: super::super::host::Host::request
    #[tokio::test(start_paused = true)]
    async fn a_sleep_and_a_ticket_let_go_of_a_poisoned_outage_quietly() {
        let (o, pause) = (Outage::default(), HostPause::default());
        for _ in 0..HOLD_AFTER {
            send(o.admit(&pause).await).failed(&e503());
        }
        let asleep = o.asleep().expect("under the outage");
        let probe = send(o.admit(&pause).await);
        let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _s = o.state.lock();
            panic!("a panic under the outage's lock");
        }));
        assert!(poisoned.is_err() && o.state.is_poisoned());
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop((probe, asleep));
        }));
        assert!(dropped.is_ok(), "dropped without a panic");
        let counts = {
            let s = o.state();
            (s.sleepers, s.probe)
        };
        assert_eq!(counts, (0, None), "counted out");
        assert!(send(o.admit(&pause).await).id.is_some(), "the next probe");
    }

    /// A request that sleeps under the outage, stopped before it woke (its download
    /// dropped: a job cancelled, the parts of a blob that failed or went back to one
    /// stream): it will ask nothing more, and the outage is forgotten a minute after the
    /// last failure as if it had never slept. Remembered until its wake time, the next
    /// object, a minute on, found a probe to wait for, or, past its rounds, one request
    /// of its own, on a host no one was sleeping out.
    #[tokio::test(start_paused = true)]
    async fn a_sleep_stopped_before_it_woke_keeps_no_outage() {
        let longest = Duration::from_secs(300);
        let (o, pause) = (Outage::default(), HostPause::default());
        for _ in 0..HOLD_AFTER {
            send(o.admit(&pause).await).failed(&e503());
        }
        {
            let sleep = std::pin::pin!(o.sleep_out(longest));
            let polled = futures::poll!(sleep);
            assert!(polled.is_pending(), "asleep");
        }
        tokio::time::advance(FORGET_AFTER + Duration::from_secs(1)).await;
        assert!(send(o.admit(&pause).await).id.is_none(), "forgotten");
    }

    /// A request of the round that failed last, its failure known later than the one
    /// counted (a timeout, where another drew a 503 at once), sleeps its backoff from
    /// then: the outage is remembered until it woke. Counted from the failure
    /// that was counted, it was forgotten while that request slept, which woke to a host
    /// that seemed well.
    #[tokio::test(start_paused = true)]
    async fn an_outage_outlives_the_backoff_of_a_failure_known_late() {
        let long = Duration::from_secs(300);
        let (o, pause) = (Arc::new(Outage::default()), HostPause::default());
        send(o.admit(&pause).await).failed(&e503());
        let (a, b) = (send(o.admit(&pause).await), send(o.admit(&pause).await));
        assert_eq!(a.failed(&e503()), (HOLD_AFTER, true));
        let a = sleeping(&o, long).await;
        let late = Duration::from_secs(30);
        tokio::time::advance(late).await;
        assert_eq!(b.failed(&e503()), (HOLD_AFTER, false), "the same round");
        let b = sleeping(&o, long).await;
        // Past the longest backoff since the failure counted, within b's.
        tokio::time::advance(long - late + Duration::from_secs(1)).await;
        a.await.unwrap();
        let probe = send(o.admit(&pause).await);
        assert!(probe.id.is_some(), "still one request for all");
        drop(probe);
        tokio::time::advance(late).await;
        b.await.unwrap();
        assert!(send(o.admit(&pause).await).id.is_none(), "forgotten");
    }

    /// A transport error is the registry's own when met at its origin, and not when met
    /// where one of its redirects led.
    #[test]
    fn a_failure_is_met_at_the_origin_its_url_names() {
        let url: Uri = "https://user:pw@reg.example:5000/v2/a/blobs/x"
            .parse()
            .unwrap();
        let at = |u: &str| Error::new(ErrorKind::Connect, "refused").with_url(u);
        assert!(met_at(&at("https://reg.example:5000/v2/a/blobs/x"), &url));
        assert!(met_at(
            &at("https://reg.example:5000/elsewhere?sig=1"),
            &url
        ));
        assert!(met_at(&Error::new(ErrorKind::Connect, "refused"), &url));
        for elsewhere in [
            "https://reg.example:50001/v2/a/blobs/x",
            "https://reg.example.cdn.example/x",
            "http://reg.example:5000/v2/a/blobs/x",
            "https://store.example/x?sig=1",
        ] {
            assert!(!met_at(&at(elsewhere), &url), "{elsewhere}");
        }
    }
}
