//! A response body that resumes with `Range` when the connection breaks part-way. The
//! answers' `Content-Range` is read by `range_headers`.

mod open_rest;

use crate::transport::ResponseBody;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, Uri};

use super::host::Host;
use super::range_headers::{content_range_total, got_range};
use super::{coding, RegistryRemote};
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::ByteStream;
pub(crate) use open_rest::{hands_over, refuse_other_at, resume_budget, Address};
use open_rest::{may_pull, open_at, open_on_next_host, Answer, Opened};

/// The body of one response, and how to ask for the rest of it.
pub(crate) struct Resumable {
    pub(crate) remote: RegistryRemote,
    /// Which of the remote's hosts answered (resumes go to the same one).
    pub(crate) host: usize,
    pub(crate) body: Body,
    /// Where to ask for the rest; `None` when the content has no fixed address (a tag
    /// without an announced digest), which cannot be resumed safely.
    pub(crate) resume_url: Option<Uri>,
    /// Where to ask for the whole content again, for a body without a `resume_url`: the
    /// first request's URL. While none of the body was handed out, asking again is a plain
    /// retry, whatever the tag names by then.
    pub(crate) retry_url: Option<Uri>,
    /// The rest is asked for without `Range`, the content whole, what was handed out
    /// dropped from it: the server coded its first answer, and would code a range too, a
    /// range of coded bytes that cannot continue the content and costs a request for
    /// nothing.
    pub(crate) whole: bool,
    /// The content is its bytes as sent under their `Content-Encoding` (see
    /// [`coding::AsSent`]): the answers to resumes are taken as sent too.
    pub(crate) as_sent: bool,
    /// A decoded body's bytes as sent are checked against its digest, in every answer
    /// that brings the content whole again too (see [`coding::AsSentCheck`]).
    pub(crate) check_as_sent: Option<coding::AsSentCheck>,
    pub(crate) headers: HeaderMap,
    /// Bytes handed out so far.
    pub(crate) offset: u64,
    /// The whole content's size, when known (declared, or hinted by the caller).
    pub(crate) size: Option<u64>,
    /// `size` was declared by a resume's answer, where none was known before (see
    /// [`Resumable::carry_on`]): the download, which knows none, does not hold the body to
    /// it as it holds a size known from the start, so the body does.
    pub(crate) size_learned: bool,
    /// `size` is the size given alone (a `size:` hint, a descriptor's), the server having
    /// declared none: a `206` that says another total is the registry declaring its own.
    pub(crate) size_given: bool,
    /// The host whose answer declared `size` (the last to confirm it); `None` while no
    /// size is known or the size is the one given alone. A `416` short of it names it.
    pub(crate) sized_by: Option<usize>,
    /// Bytes still to drop from the current body: a server that ignored our Range sends
    /// the whole content again, and what we already handed out must not repeat.
    pub(crate) skip: u64,
    /// Where the current body was asked to carry on, when it is the whole content sent
    /// again (a server that ignored our `Range`): see [`whole_at`].
    pub(crate) resent_whole_at: Option<u64>,
    /// Where the current body started, when it is a range of unknown total
    /// (`Content-Range: bytes N-M/*`): with no size known, its clean end is no end of the
    /// content (see [`Resumable::cut_short`]).
    pub(crate) open_range: Option<u64>,
    /// Where to leave why the rest of content of unknown size could not be had (after a
    /// range of unknown total, or a break), when its end is then taken on trust: the
    /// download's failure should the content not verify (see
    /// [`Download::end_on_trust`](crate::fetch::Download::end_on_trust)).
    pub(crate) on_trust: Option<crate::fetch::OnTrust>,
    /// Failures in a row since the body last made progress, breaks and failed requests
    /// (its first one's, a resume's) alike: what `--retries` bounds.
    pub(crate) resumes: u32,
    /// `offset` at the last break or answer ended short (or at the start).
    pub(crate) progress_mark: u64,
    /// The content's endpoint and digest, which address it on every host: when a mirror's
    /// body fails, the next host serves the rest. `None` where it cannot move.
    pub(super) address: Option<Address>,
    /// How the hosts the body was handed over from failed (URL and reason each), for
    /// the error it may end with: the last host's cause alone would hide why the mirrors
    /// did not serve it.
    pub(super) earlier: Vec<String>,
    /// Told which host serves the body after a hand-over, for the parts of a download
    /// that splits later (see [`Serving`]).
    pub(super) serving: Option<Serving>,
    /// Where a redirect led the request for the current body, when one did: its break is
    /// that URL's, not the registry's the request was addressed to.
    pub(crate) hop: Option<Hop>,
}

/// The URL a redirect led a request to, which answered it, and the note naming the URL
/// that sent it there ([`transport::redirected_by`](crate::transport::redirected_by)).
#[derive(Clone, Debug)]
pub(crate) struct Hop {
    url: Uri,
    note: Option<String>,
}

impl Hop {
    /// Where `reply`, asked of `asked`, came from, when a redirect led elsewhere.
    pub(crate) fn of(reply: &crate::transport::Reply, asked: &Uri) -> Option<Hop> {
        (reply.url != *asked).then(|| Hop {
            url: reply.url.clone(),
            note: reply
                .redirected_by
                .as_ref()
                .map(crate::transport::redirected_by),
        })
    }
}

/// Which host serves a body now, and at which URL: the one that answered first, until a
/// failing mirror hands the body over. A download split after that asks the host that
/// took it over for its parts, not the mirror that had just failed.
pub(crate) type Serving = std::sync::Arc<std::sync::Mutex<Served>>;

/// What [`Serving`] holds.
pub(crate) struct Served {
    pub(crate) host: usize,
    pub(crate) url: Uri,
    /// Whose word the content's size is now ([`Resumable::sized_by`]), and whether it is
    /// the size given alone ([`Resumable::size_given`]): the host that took the body over
    /// may have declared it too, and a `416` to a part from it then contradicts its own.
    /// A part's answer from this host that declares the size given writes it here too, for
    /// the body's rest ([`Resumable::take_parts_word`]).
    pub(crate) sized_by: Option<usize>,
    pub(crate) size_given: bool,
}

/// The body a request for the content brought.
pub(crate) enum Body {
    /// The content's own bytes, as they arrive.
    Plain(ResponseBody),
    /// A whole answer a server coded although asked for identity (a CDN node that
    /// compresses), the coding undone: its bytes are the content's too, so a break in it
    /// resumes at the content's offset like a plain body's.
    Decoded(ByteStream),
    /// A broken body let go: a stalled one still holds its connection, which the request
    /// for the rest, to the same host under its per-host cap, may be waiting for.
    Gone,
}

impl Body {
    /// Whether the server coded this answer, whose ranges would then address coded bytes.
    fn is_decoded(&self) -> bool {
        matches!(self, Body::Decoded(_))
    }

    async fn next_chunk(
        &mut self,
        transport: &crate::transport::Transport,
    ) -> Result<Option<Bytes>> {
        match self {
            Body::Plain(body) => transport.next_chunk(body).await,
            Body::Decoded(body) => body.next().await.transpose(),
            Body::Gone => Ok(None),
        }
    }
}

/// New bytes since the last break that make a break count as the first again. A slow
/// link that drops every few hundred MiB still gets a large blob through (containerd
/// counts only errors without progress too), while a server that breaks every body
/// within its first bytes runs out of retries as before. The count is finite: resumes
/// only happen for content of a known size.
pub(crate) const PROGRESS: u64 = 1 << 20;

/// New bytes an answer its server ended short of the content (a range of unknown total, a
/// range short of a known size, a body closed where no length said it ends) must have
/// brought for its end to be progress, spending no retry (see [`Resumable::resume`]).
/// Below it, the end counts as a break: a server that sends a byte per answer runs out of
/// retries instead of being asked forever. At or above it, a server sending pieces of
/// content without end is bounded no less than one sending a single body without end.
pub(crate) const PIECE: u64 = 64 << 10;

impl Resumable {
    pub(crate) fn into_stream(self) -> crate::fetch::ByteStream {
        futures::stream::try_unfold(self, |mut s| async move {
            let next = s.next().await?;
            Ok(next.map(|c| (c, s)))
        })
        .boxed()
    }

    async fn next(&mut self) -> Result<Option<Bytes>> {
        // A resume is boxed where it is awaited: it is a whole new request, rarely made,
        // and inline it would make every body's stream as large, copied whole into its box
        // for each object.
        loop {
            // The host's each time: a failing mirror hands the body over to another.
            let transport = &self.remote.host(self.host).transport;
            // Why the body stopped short, and whether its server ended it (`true`) or it
            // broke.
            let (e, ended) = match self.body.next_chunk(transport).await {
                Ok(Some(mut chunk)) => {
                    if self.skip > 0 {
                        let drop = self.skip.min(chunk.len() as u64) as usize;
                        self.skip -= drop as u64;
                        chunk = chunk.slice(drop..);
                        if chunk.is_empty() {
                            continue;
                        }
                    }
                    let offset = self.offset + chunk.len() as u64;
                    if let Some(size) = self.size.filter(|&size| self.size_learned && offset > size)
                    {
                        let msg = format!(
                            "content longer than the {} a resume's answer declared",
                            crate::plural::Bytes(size)
                        );
                        let e = Error::new(ErrorKind::SizeMismatch, msg);
                        return Err(match &self.resume_url {
                            Some(url) => e.with_url(url),
                            None => e,
                        });
                    }
                    self.offset = offset;
                    return Ok(Some(chunk));
                }
                Ok(None) => match self.cut_short() {
                    Some(e) => (e, true),
                    None => return Ok(None),
                },
                Err(e) => {
                    self.body = Body::Gone;
                    (e, false)
                }
            };
            // Content of unknown size may have ended where its body did, cleanly (a range
            // of unknown total) or not (a chunked body closed without its last chunk):
            // where the rest cannot be had, that end stands and the digest has the last
            // word, as before the rest was asked for. Failed here, the object was lost when
            // the server may have sent all of it; the failure is left for the digest to
            // bring up, should it say the content had not ended. Content without an
            // address has no digest to say so, and fails.
            let open = self.size.is_none() && self.resume_url.is_some();
            match Box::pin(self.resume(e, ended)).await {
                Ok(true) => {}
                // Nothing lies past what arrived: verification has the last word.
                Ok(false) => return Ok(None),
                Err(e) if open => {
                    tracing::debug!(offset = self.offset, error = %e, "the rest of content of unknown size could not be had");
                    if let Some(on_trust) = &self.on_trust {
                        *on_trust.lock().expect("on_trust poisoned") = Some(e);
                    }
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The break behind a body that ended short of the content's known size, if it did. A
    /// body without `Content-Length` ends where its connection closes, so a connection
    /// lost part-way ends it as cleanly as the content's end; and a server may answer
    /// `bytes=N-` with less than the rest. Either way the rest is still to come, from
    /// where the body stopped, as after any break: taken for corruption, it was fetched
    /// whole once more, and a body cut every time failed.
    ///
    /// With no size known, a range of unknown total (`bytes N-M/*`, a cache sending what
    /// it has so far) that brought bytes says nothing of where the content ends either:
    /// the rest is asked for, and a `416` (or an answer with nothing more) says the
    /// content ended there. Its end taken for the content's, the digest failed, the
    /// partial download was blamed and the content fetched whole once more.
    ///
    /// Not so for the whole content sent again that ends cleanly where the body before it
    /// did: two answers agree on where the content ends, short of a size that is wrong (a
    /// size given too large), which verification then says. Taken for a break, it was
    /// asked for again until the retries were spent, and failed as a lost connection.
    fn cut_short(&self) -> Option<Error> {
        self.resume_url.as_ref()?;
        let Some(size) = self.size else {
            let from = self.open_range.filter(|&from| self.offset > from)?;
            return Some(Error::new(
                ErrorKind::Connect,
                format!(
                    "a range of unknown total from byte {from} ended at byte {}",
                    self.offset
                ),
            ));
        };
        if self.offset >= size {
            return None;
        }
        if self.skip == 0 && self.resent_whole_at == Some(self.offset) {
            tracing::debug!(
                offset = self.offset,
                size,
                "the content sent whole again ended where it did before"
            );
            return None;
        }
        Some(Error::new(
            ErrorKind::Connect,
            format!(
                "body ended after {} of {}",
                self.offset,
                crate::plural::Bytes(size)
            ),
        ))
    }

    /// Asks for the rest after the body broke with `e` (or its server `ended` it short of
    /// the content): from the same host while its retries last, then, from a mirror, from
    /// the next host. `false` when nothing lies past what arrived (416).
    async fn resume(&mut self, e: Error, ended: bool) -> Result<bool> {
        self.take_parts_word();
        let Some(url) = self.resume_url.clone() else {
            return self.ask_again(e).await;
        };
        // Broken after its last byte (a chunked body closed without its last chunk): no
        // rest to ask for, and no retry to spend on a 416. Verification has the last word.
        if self.size.is_some_and(|size| self.offset >= size) {
            tracing::debug!(url = %crate::transport::redact(&url), offset = self.offset, error = %e, "body broke after its last byte");
            return Ok(false);
        }
        // The body of the host asked last broke: after a hand-over, not the host the
        // download's first answer (whose URL it names otherwise) came from; after a
        // redirect, the URL it led to (the registry's is named as what sent it there).
        let e = self.at_hop(e, &url);
        let address = self.address.as_ref();
        // An answer its server ended short of the content that brought a piece of it (a
        // cache sending what it has so far, a server capping its answers) is no fault to
        // pace or count: curl and containerd carry on after any answer that made
        // progress. Counted, every piece under a MiB spent a retry and waited a backoff,
        // and a blob sent so failed after `--retries` + 1 of them. One that brought less
        // than a piece still counts, or a byte per answer would be asked for forever; so
        // does one of the whole content, asked for so (`whole`) or sent so by a server
        // that ignores `Range` (`resent_whole_at`), each answer costing all the bytes
        // before it once more: taken for progress, such a server closing each answer
        // 64 KiB further on sent the whole content once per 64 KiB of it, with no pause.
        if ended
            && !self.whole
            && self.resent_whole_at.is_none()
            && self.offset >= self.progress_mark.saturating_add(PIECE)
            && may_pull(&self.remote, self.host, address)
        {
            self.resumes = 0;
            self.progress_mark = self.offset;
            tracing::debug!(url = %crate::transport::redact(&url), offset = self.offset, error = %e, "the answer ended short of the content; asking for the rest");
            return self.ask_rest(&url, e).await;
        }
        if self.offset >= self.progress_mark.saturating_add(PROGRESS) {
            self.resumes = 0;
        }
        let budget = resume_budget(&self.remote, self.host, address);
        if !e.is_transient() {
            return self.hand_over(self.noted(e)).await;
        }
        if self.resumes >= budget {
            let e = self.noted(e.with_attempts(self.resumes + 1));
            return self.hand_over(e).await;
        }
        self.resumes += 1;
        self.progress_mark = self.offset;
        // Paced like any retry: a registry that resets connections while it
        // restarts would otherwise use up every resume in milliseconds.
        let pause = self.remote.retry_policy().backoff(self.resumes - 1);
        tokio::time::sleep(pause).await;
        tracing::debug!(url = %crate::transport::redact(&url), offset = self.offset, error = %e, "resuming body");
        self.ask_rest(&url, e).await
    }

    /// `e`, a break of the current body asked of `asked`, naming where it broke: the URL
    /// a redirect led to, or `asked`. Named by `asked`, a body broken at a blob store or
    /// CDN sent its reader to the registry.
    fn at_hop(&self, e: Error, asked: &Uri) -> Error {
        match &self.hop {
            Some(hop) => e.with_url(&hop.url),
            None => e.with_url(asked),
        }
    }

    /// `e`, the break [`Resumable::at_hop`] named, as the body's failure: with the URL
    /// that redirected the request there. Not before: a resume's failure names its own
    /// request's redirect, and the break, said inside it, would say one twice.
    fn noted(&self, e: Error) -> Error {
        match self.hop.as_ref().and_then(|hop| hop.note.as_ref()) {
            Some(note) => e.with_note(note),
            None => e,
        }
    }

    /// Takes a size given alone as its host's word when that host declared it in an
    /// answer to a part of the download split after this body ([`Serving`]): a `416` to
    /// the rest short of it is then the host contradicting itself, as it is to a part,
    /// not the end of content of a size that may be wrong.
    fn take_parts_word(&mut self) {
        let Some(serving) = self.serving.clone() else {
            return;
        };
        self.take_word_in(&serving.lock().expect("serving host poisoned"));
    }

    /// [`Resumable::take_parts_word`], from what `served` holds.
    fn take_word_in(&mut self, served: &Served) {
        let declared = served.host == self.host && served.sized_by == Some(self.host);
        if self.size_given && declared && !served.size_given {
            (self.sized_by, self.size_given) = (Some(self.host), false);
        }
    }

    /// Asks `url` for the rest after the body stopped short with `e`; as
    /// [`Resumable::resume`] says.
    async fn ask_rest(&mut self, url: &Uri, e: Error) -> Result<bool> {
        let again = match self.reopen(url).await {
            Ok(()) => return Ok(true),
            // Judged with what the parts said while the request was on its way too: a
            // part's `206` that confirmed the size given came after [`Resumable::resume`]
            // looked, and the `416` was taken for the end of a size that may be wrong.
            Err(again) if again.status() == Some(416) => {
                self.take_parts_word();
                match self.refused_short() {
                    Some(contradiction) => contradiction.with_url(url),
                    None => return Ok(false),
                }
            }
            Err(again) => again,
        };
        // Built from the resume's failure, only its words put after the break's: a
        // caller reads what that answer said (its status, `Retry-After`, attempts, the
        // sizes it contradicted) as it would of any request's failure.
        let err = again.met_after(format_args!(
            "body interrupted after {} ({}), and resuming failed: ",
            crate::plural::Bytes(self.offset),
            e.reason(),
        ));
        // Where the rest was refused: the download names the URL of its first
        // answer, which may be another host's (a mirror's, before a hand-over).
        let err = err.with_url(url);
        self.hand_over(err).await
    }

    /// The `416` that answered a request for the rest from the offset reached, short of
    /// the size a server declared (first, or in a resume's answer), as the server
    /// contradicting itself (or the host it took the body over from): a
    /// [`SizeMismatch`](ErrorKind::SizeMismatch), as a resume's total other than the one
    /// declared is, whose bytes a kept partial download is not blamed for. Taken for the
    /// content's end, it failed as content that ended after so many bytes, or, the size
    /// learned from a resume, as content that did not verify, the partial download thrown
    /// away. See [`Rest::refused`].
    fn refused_short(&self) -> Option<Error> {
        self.rest().refused(&self.remote, self.host)
    }

    /// Who serves this body now, for the parts of a download split later.
    fn served(&self) -> Served {
        Served {
            host: self.host,
            url: self
                .resume_url
                .clone()
                .expect("a body handed over has an address"),
            sized_by: self.sized_by,
            size_given: self.size_given,
        }
    }

    /// The content from the offset reached on, as far as this body knows it.
    fn rest(&self) -> Rest<'_> {
        Rest {
            address: self.address.as_ref(),
            offset: self.offset,
            size: self.size,
            given: self.size_given,
            sized_by: self.sized_by,
            as_sent: self.as_sent,
            check_as_sent: None,
            confirmed_by: None,
            settle: None,
        }
    }

    /// Asks for content without a fixed address again after its body broke with `e`,
    /// while none of it was handed out: a plain retry, on the budget and after the
    /// backoff a resume has. Once bytes were handed out the rest cannot be spliced to
    /// them (the tag may name other content by now): `e` stands, marked for a caller that
    /// let none of them go to fetch the whole content again while retries are left
    /// ([`Error::restart`]). Those fetches count on the same budget, and as progress is
    /// lost each time, a break after much of the content counts all the same.
    async fn ask_again(&mut self, e: Error) -> Result<bool> {
        let e = match &self.retry_url {
            Some(url) => self.at_hop(e, url),
            None => e,
        };
        if !e.is_transient() {
            return Err(self.noted(e));
        }
        let budget = resume_budget(&self.remote, self.host, None);
        if self.resumes >= budget {
            return Err(self.noted(e.with_attempts(self.resumes + 1)));
        }
        let url = match &self.retry_url {
            Some(url) if self.offset == 0 => url.clone(),
            _ => return Err(self.noted(e.restartable(self.resumes + 1))),
        };
        self.resumes += 1;
        let pause = self.remote.retry_policy().backoff(self.resumes - 1);
        tokio::time::sleep(pause).await;
        tracing::debug!(url = %crate::transport::redact(&url), error = %e, "body broke before its first byte; asking again");
        self.reopen(&url).await?;
        Ok(true)
    }

    /// A mirror's body failed for good with `e`: the next host that may serve content by
    /// digest is asked for the rest, as a mirror that fails before its answer hands over.
    /// Left to the mirror, one broken cache would fail the object while the registry has
    /// it. `e` stands when the failing host is the registry, or no host is left.
    async fn hand_over(&mut self, e: Error) -> Result<bool> {
        let earlier = std::mem::take(&mut self.earlier);
        let next = open_on_next_host(
            &self.remote,
            self.host,
            self.address.as_ref(),
            &self.headers,
            self.rest(),
            e,
            earlier,
        )
        .await?;
        let Some(next) = next else {
            return Ok(false);
        };
        self.host = next.host;
        self.resume_url = Some(next.url);
        // The next host's answers are its own: plain, its ranges continue the content
        // (the mirror's coding had sent every later break to the registry for the whole
        // content again); coded, they would not.
        self.whole = next.answer.body.is_decoded();
        self.carry_on(next.answer);
        self.resumes = next.spent;
        self.progress_mark = self.offset;
        self.earlier = next.earlier;
        Ok(true)
    }

    async fn reopen(&mut self, url: &Uri) -> Result<()> {
        let (remote, host) = (&self.remote, self.host);
        let rest = Rest {
            check_as_sent: self.check_as_sent.as_ref(),
            ..self.rest()
        };
        let budget = resume_budget(remote, host, self.address.as_ref());
        // Counted apart and put back, failed or not: `rest` borrows the body.
        let mut spent = self.resumes;
        let ranged = !self.whole;
        let retries = (&mut spent, budget);
        let answer = open_at(remote, host, url, &self.headers, rest, ranged, retries).await;
        self.resumes = spent;
        self.carry_on(answer?);
        Ok(())
    }

    /// Carries the content on with `answer`, opened at the offset reached. A size it
    /// declares where none was known is the content's from then on: a later body ending
    /// short of it is a cut (see [`Resumable::cut_short`]), where it was taken for the
    /// content's end, and the partial download blamed when the digest failed; a body
    /// running past it is refused. A size given that it declares too is no longer the size
    /// given alone: a later answer declaring another contradicts the server's own word,
    /// which was said as the registry against the size given, casting doubt on a size the
    /// registry had confirmed.
    fn carry_on(&mut self, answer: Answer) {
        match self.size {
            None => {
                self.size = answer.extent.size();
                self.size_learned = self.size.is_some();
                self.sized_by = self.size.map(|_| self.host);
            }
            Some(size) if answer.extent.size() == Some(size) => {
                self.size_given = false;
                self.sized_by = Some(self.host);
            }
            Some(_) => {}
        }
        self.open_range = answer.extent.open_range(self.offset);
        self.body = answer.body;
        self.hop = answer.hop;
        self.skip = answer.skip;
        self.resent_whole_at = whole_at(self.offset, answer.skip);
        // The parts of a download split later ask where this body is now, and take the
        // size as its host's word: a resume on the same host may have confirmed a size
        // given alone, which a `416` to a part then contradicts (told only at a
        // hand-over, it failed as the bare status).
        // A part's `206` that confirmed a size given alone while this answer was asked
        // for is kept: written over by this body's word, the size given alone, it was lost
        // to the rest, whose `416` was then taken for the content's end.
        if let Some(serving) = self.serving.clone() {
            let mut served = serving.lock().expect("serving host poisoned");
            self.take_word_in(&served);
            *served = self.served();
        }
    }

    /// The content from byte `offset` on, from the `source`'s host and URL, resumable like a
    /// first response: what a split download goes back to when the server does not answer
    /// ranges after all. A `416` short of the size declared is the server contradicting
    /// itself, as [`Rest::refused`] says; a size given alone is declared by the host the
    /// parts' `word` names as the answer is judged, a part's answer having confirmed it.
    pub(crate) async fn from_offset(
        source: &crate::ranged::Source,
        offset: u64,
        word: &PartsWord<'_>,
    ) -> Result<crate::fetch::ByteStream> {
        let (remote, host, headers) = (&source.remote, source.host, &source.headers);
        let address = source.address.as_ref();
        let mut spent = 0;
        let budget = resume_budget(remote, host, address);
        let retries = (&mut spent, budget);
        let rest = Rest {
            confirmed_by: Some(word.by),
            settle: Some(word.settle),
            ..Rest::at(source, offset)
        };
        let answer = match open_at(remote, host, &source.url, headers, rest, true, retries).await {
            Ok(answer) => answer,
            // Short of the size declared: the contradiction a `416` to a single stream's
            // rest is, not the bare status.
            Err(e) if e.status() == Some(416) => {
                return Err(rest
                    .settled()
                    .await
                    .refused(remote, host)
                    .map_or(e, |refused| refused.with_url(&source.url)));
            }
            Err(e) => return Err(e),
        };
        let opened = Opened {
            host,
            url: source.url.clone(),
            answer,
            spent,
            earlier: Vec::new(),
        };
        Ok(Resumable::opened(source, opened, rest.now()).into_stream())
    }

    /// The content from byte `offset` on, from the host after the mirror `host`, whose
    /// parts of a split download failed with `e`: as a mirror's broken body does, it hands
    /// the rest over. `e` stands on the registry itself, or when no host is left. An empty
    /// stream when nothing lies past `offset` (416): verification has the last word.
    ///
    /// The `source`'s `serving` is told the host that took the rest over, now and at any
    /// later hand-over; `true` beside the stream when that host answered with a plain
    /// range over HTTP/1, whose rest may be split into parts again. A size given alone is
    /// declared by the host the parts' `word` names as the answer is judged, a part's
    /// answer having confirmed it.
    pub(crate) async fn after_failure(
        source: &crate::ranged::Source,
        (host, word): (usize, &PartsWord<'_>),
        offset: u64,
        e: Error,
    ) -> Result<(crate::fetch::ByteStream, bool)> {
        let (remote, headers, address) = (&source.remote, &source.headers, &source.address);
        let rest = Rest {
            confirmed_by: Some(word.by),
            settle: Some(word.settle),
            ..Rest::at(source, offset)
        };
        let next =
            open_on_next_host(remote, host, address.as_ref(), headers, rest, e, Vec::new()).await?;
        let Some(next) = next else {
            return Ok((futures::stream::empty().boxed(), false));
        };
        let answer = &next.answer;
        let ranges =
            answer.skip == 0 && !answer.body.is_decoded() && answer.version < http::Version::HTTP_2;
        let serving = &source.serving;
        let mut rest = Resumable::opened(source, next, rest.now());
        *serving.lock().expect("serving host poisoned") = rest.served();
        rest.serving = Some(serving.clone());
        Ok((rest.into_stream(), ranges))
    }

    /// The `source`'s content `opened` from the `rest`'s offset on, with no break yet, its
    /// word of the size the rest's as its answer was judged. Carried on with its answer as
    /// a resume's is: a size it declares too is its host's word from then on, which a
    /// later `416` short of it contradicts (said as the word of the host the rest was
    /// handed over from alone, as if this one had confirmed nothing).
    fn opened(source: &crate::ranged::Source, opened: Opened, rest: Rest<'_>) -> Resumable {
        let offset = rest.offset;
        let mut rest = Resumable {
            remote: source.remote.clone(),
            host: opened.host,
            body: Body::Gone,
            resume_url: Some(opened.url),
            retry_url: None,
            // A host that coded its answer would code a range of it too.
            whole: opened.answer.body.is_decoded(),
            as_sent: false,
            check_as_sent: None,
            headers: source.headers.clone(),
            offset,
            size: Some(source.total),
            size_learned: false,
            size_given: rest.given,
            sized_by: rest.sized_by,
            skip: 0,
            resent_whole_at: None,
            open_range: None,
            on_trust: None,
            resumes: opened.spent,
            progress_mark: offset,
            address: source.address.clone(),
            earlier: opened.earlier,
            serving: None,
            hop: None,
        };
        rest.carry_on(opened.answer);
        rest
    }
}

/// `Some(offset)` for a body opened to carry the content on from `offset` that is the
/// whole content again, its first `skip` bytes (those at hand) to drop.
pub(crate) fn whole_at(offset: u64, skip: u64) -> Option<u64> {
    (skip > 0).then_some(offset)
}

/// `body` as a stream, each piece read within the transport's idle timeout.
pub(super) fn incoming_stream(
    transport: crate::transport::Transport,
    body: ResponseBody,
) -> ByteStream {
    futures::stream::try_unfold((transport, body), |(transport, mut body)| async move {
        let chunk = transport.next_chunk(&mut body).await?;
        Ok(chunk.map(|c| (c, (transport, body))))
    })
    .boxed()
}

/// The content from `offset` on, of `size` bytes in all when known (declared, or given:
/// `given` when the size given alone, the server having declared none), declared by the
/// host `sized_by`.
#[derive(Clone, Copy)]
struct Rest<'a> {
    /// The content's endpoint and digest, when it has them: an answer whose
    /// `Docker-Content-Digest` names other content is refused as a first answer is (see
    /// [`refuse_announced_other`](super::digest_header::refuse_announced_other)).
    address: Option<&'a Address>,
    offset: u64,
    size: Option<u64>,
    given: bool,
    sized_by: Option<usize>,
    /// The content is its bytes as sent, coded or not ([`Resumable::as_sent`]).
    as_sent: bool,
    /// What a decoded answer's bytes as sent are checked against
    /// ([`Resumable::check_as_sent`]).
    check_as_sent: Option<&'a coding::AsSentCheck>,
    /// For a split download's rest: the host whose answer to a part has confirmed a size
    /// given alone by now, read when an answer is judged ([`Rest::now`]).
    confirmed_by: Option<&'a ConfirmedBy<'a>>,
    /// For a split download's rest: resolves once the parts under way have had their
    /// answers judged ([`Rest::settled`]).
    settle: Option<&'a Settle<'a>>,
}

/// Which host's answer to a split download's part has confirmed its size by now, if any:
/// a part under way while the rest is asked for elsewhere may confirm it meanwhile.
pub(crate) type ConfirmedBy<'a> = dyn Fn() -> Option<usize> + Send + Sync + 'a;

/// Resolves once the parts of a split download under way have had their answers judged
/// (their heads read, or the parts ended): a `206` among them may confirm the size.
pub(crate) type Settle<'a> = dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'a;

/// What a split download's parts say of its size, for its rest ([`ConfirmedBy`],
/// [`Settle`]).
pub(crate) struct PartsWord<'a> {
    pub(crate) by: &'a ConfirmedBy<'a>,
    pub(crate) settle: &'a Settle<'a>,
}

impl Rest<'_> {
    /// This rest once the parts under way have had their answers judged, for a `416` to
    /// it, which a size given alone that no part confirmed yet takes for the content's
    /// end (or the bare status): a part's `206` that confirms the size may be read after
    /// the `416` came, and judged before it, the server's contradiction of its own word
    /// failed the blob as the bare `416`. Waits only while the size is the one given alone
    /// and unconfirmed, on the error's path.
    async fn settled(self) -> Self {
        if let Some(settle) = self.settle.filter(|_| self.now().given) {
            settle().await;
        }
        self
    }

    /// This rest as its answer is judged: a size given alone that an answer to a part
    /// confirmed while the answer was awaited is that host's word. Taken before the
    /// request, the word missed it, and a `416` short of the size failed as the bare
    /// status (or ended the content short of the size given, blamed on it).
    fn now(self) -> Self {
        match self.confirmed_by.and_then(|by| by()) {
            Some(host) if self.given => Rest {
                given: false,
                sized_by: Some(host),
                ..self
            },
            _ => self,
        }
    }

    /// The rest of a split download's content from `offset` on.
    fn at(source: &crate::ranged::Source, offset: u64) -> Rest<'_> {
        Rest {
            address: source.address.as_ref(),
            offset,
            size: Some(source.total),
            given: source.total_given,
            sized_by: source.sized_by,
            as_sent: false,
            check_as_sent: None,
            confirmed_by: None,
            settle: None,
        }
    }

    /// The `416` with which `host` answered a request for this rest, short of the size a
    /// server declared, as that server contradicted: a
    /// [`SizeMismatch`](ErrorKind::SizeMismatch), naming the host that declared the size
    /// when it is not the one that answered. `None` with no size known, where the `416`
    /// says the content ended, and against a size given alone, which verification says
    /// may be wrong.
    fn refused(&self, remote: &RegistryRemote, host: usize) -> Option<Error> {
        self.refused_upto(remote, host, None)
    }

    /// [`Rest::refused`] for a request of the rest up to byte `end` (a part's range), if
    /// it ends there.
    fn refused_upto(
        &self,
        remote: &RegistryRemote,
        host: usize,
        end: Option<u64>,
    ) -> Option<Error> {
        let rest = self.now();
        let size = rest
            .size
            .filter(|&size| !rest.given && rest.offset < size)?;
        let who = match rest.sized_by {
            Some(by) if by != host => remote.host(by).who(),
            _ => "server".to_string(),
        };
        let at = self.offset;
        let end = end.map_or(String::new(), |end| end.to_string());
        let msg = format!(
            "asked for bytes={at}-{end}, got a 416 (the content ends at byte {at}), where \
             the {who} declared {}",
            crate::plural::Bytes(size)
        );
        Some(Error::new(ErrorKind::SizeMismatch, msg))
    }
}

/// The `416` with which `host` answered a split download's part `bytes=from-end`, as
/// [`Rest::refused`] says it: short of a size a server declared, the server contradicts
/// itself (or the host it took the parts over from), as it does answering a single
/// stream's rest so. Failed as the bare status, the blob was not fetched once more, as one
/// stream's is. `None` against a size given alone, unless an earlier answer from `host` to
/// this part or another of the download `confirmed` it (a `206` whose total is that size).
pub(crate) fn part_refused(
    source: &crate::ranged::Source,
    host: usize,
    (from, end): (u64, u64),
    confirmed: bool,
) -> Option<Error> {
    let mut rest = Rest::at(source, from);
    if confirmed {
        (rest.given, rest.sized_by) = (false, Some(host));
    }
    rest.refused_upto(&source.remote, host, Some(end))
}

/// Refuses a plain `206` to the `Range` `asked` (`bytes=500-`, a part's `bytes=500-999`)
/// whose `Content-Range` gives the whole content another size than its known `size`.
/// Against a size `given` alone (no server declared one before), the total is the first
/// size the server `who` ([`Host::who`](super::host::Host::who)) declares: said, and
/// recorded ([`Error::sizes`]), as a `Content-Length` other than the size given is, a hint
/// as likely wrong as the server.
pub(crate) fn other_total(
    asked: &str,
    size: Option<u64>,
    given: bool,
    who: &Host,
    headers: &HeaderMap,
) -> Result<()> {
    let total = content_range_total(headers);
    let got = |_| format!("asked for {asked}, got a 206 with {}", got_range(headers));
    refused_size(size, total, given, who, got, |got, total, size| {
        format!(
            "{got}: {} in all, where the content is {size}",
            crate::plural::Bytes(total)
        )
    })
}

/// Refuses a plain `200` to the `Range` `asked` (or to none), the whole content, whose
/// `Content-Length` is not its known `size`: other content than was asked for, which was
/// read to the content's end before its surplus (or a body cut short) told. Against a size
/// `given` alone, said and recorded as [`other_total`] says it.
fn other_length(
    asked: &str,
    size: Option<u64>,
    given: bool,
    who: &Host,
    headers: &HeaderMap,
) -> Result<()> {
    let length = super::content_length(headers);
    let got = |length| format!("asked for {asked}, got a 200 with Content-Length: {length}");
    refused_size(size, length, given, who, got, |got, _, size| {
        format!("{got}, where the content is {size}")
    })
}

/// The size a server `declared` against the content's known `size`, when both are known
/// and differ: a [`SizeMismatch`](ErrorKind::SizeMismatch) opening with what was asked
/// for and `got`. Against a size `given` alone, the server's (`who`'s) is the first size
/// declared, said as a declared size other than the size given is (and recorded:
/// [`Error::sizes`]); else `known` says it against the content's size.
fn refused_size(
    size: Option<u64>,
    declared: Option<u64>,
    given: bool,
    who: &Host,
    got: impl FnOnce(u64) -> String,
    known: impl FnOnce(&str, u64, u64) -> String,
) -> Result<()> {
    let (Some(size), Some(declared)) = (size, declared) else {
        return Ok(());
    };
    if declared == size {
        return Ok(());
    }
    let got = got(declared);
    if given {
        let expected = crate::hints::expected_size(size);
        let msg = format!(
            "{got}: the {} declares {}, {expected}",
            who.who(),
            crate::plural::Bytes(declared)
        );
        let e = Error::new(ErrorKind::SizeMismatch, msg).with_sizes(size, declared);
        return Err(e.sized_by(who.mirror_name()));
    }
    let msg = known(&got, declared, size);
    Err(Error::new(ErrorKind::SizeMismatch, msg))
}
