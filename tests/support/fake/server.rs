//! The plumbing both fake servers share: a hyper HTTP/1.1 server on its own thread and tokio
//! runtime, per-connection accounting, and a socket wrapper that lets a handler put bytes on the
//! wire that hyper itself would refuse to write (a lying `Content-Length`, a body cut short, a
//! connection reset).
//!
//! A handler is a plain synchronous function from request to response: everything the fakes
//! serve is in memory, and the slow faults are slow *bodies*, which hyper polls on its own.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// The response body type of every fake: unsized, so slow bodies can be streams.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Turns a request into a response; runs on the server's thread.
pub type Handler = Arc<dyn Fn(Request<Incoming>, &Conn) -> Response<Body> + Send + Sync>;

/// How often a connection about to be reset looks whether the peer has every byte written, and
/// how long it waits for that at most (a peer that stopped reading is reset all the same). An
/// abortive close discards whatever the kernel has not delivered yet, so a reset sent before the
/// client took in the takeover's bytes cut them short by an amount that depended on how busy
/// the machine was, and tests counting on them flaked.
const DRAIN_POLL: Duration = Duration::from_millis(2);
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Bytes written to `socket` that the peer's kernel has not acknowledged yet (`SIOCOUTQ`).
fn undelivered(socket: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ for a TCP socket) writes one int into `n`.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body holding `bytes`, with an exact size hint.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// How a connection ends once a takeover's bytes are on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// An orderly close: the client reads to a clean end of stream.
    Fin,
    /// An abortive close (`SO_LINGER` 0): the client's next read fails with a reset.
    Reset,
}

/// What a handler sees of the connection a request arrived on.
pub struct Conn {
    /// Sequence number of the connection, from 1, in accept order.
    pub id: u64,
    takeover: Arc<Mutex<Option<(Bytes, End)>>>,
    /// How long to hold the response head of the request being answered.
    head_delay: Mutex<Option<Duration>>,
    /// What the response head of the request being answered waits for.
    head_gate: Mutex<Option<super::Gate>>,
}

impl Conn {
    /// Writes `raw` on the wire in place of the response hyper is about to serialise, then ends
    /// the connection as `end` says. Return the result from the handler: it is a placeholder
    /// whose bytes are swallowed; its status is `status` so logs can report what went out.
    ///
    /// Safe only because HTTP/1.1 clients do not pipeline: hyper has flushed the previous
    /// response before it reads the request this one answers.
    /// Sends the response the handler returns only after `delay`: a server slow to answer
    /// at all, as a cache fetching from its upstream is.
    pub fn delay_head(&self, delay: Duration) {
        *self.head_delay.lock().unwrap() = Some(delay);
    }

    /// Sends the response the handler returns only once `gate` opens.
    pub fn hold_head(&self, gate: super::Gate) {
        *self.head_gate.lock().unwrap() = Some(gate);
    }

    pub fn take_over(&self, status: StatusCode, raw: Bytes, end: End) -> Response<Body> {
        *self.takeover.lock().unwrap() = Some((raw, end));
        Response::builder()
            .status(status)
            .header(CONNECTION, "close")
            .header(CONTENT_LENGTH, 0)
            .body(empty())
            .unwrap()
    }
}

/// Connection counters, readable while the server runs.
#[derive(Default)]
pub struct ConnStats {
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections currently being served.
    pub open: AtomicUsize,
    /// The largest value `open` has had.
    pub max_open: AtomicUsize,
}

/// A server running on its own thread; dropping it stops the server and its connections.
pub struct ServerThread {
    addr: SocketAddr,
    stats: Arc<ConnStats>,
    panics: Arc<Mutex<Vec<String>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds a listener on a loopback port (0: an ephemeral one), so the address is known before the server
/// starts (the bearer realm is built from it).
pub fn bind_local(port: u16) -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
    listener.set_nonblocking(true).expect("set_nonblocking");
    listener
}

impl ServerThread {
    /// Serves `listener` with `handler` on a new thread named `name`. A separate runtime keeps
    /// the server independent of the test's own: a paused test clock does not stall it, and a
    /// plain `#[test]` needs no runtime at all.
    pub fn start(name: &str, listener: std::net::TcpListener, handler: Handler) -> Self {
        let addr = listener.local_addr().expect("local_addr");
        let stats = Arc::new(ConnStats::default());
        let panics = Arc::new(Mutex::new(Vec::new()));
        let (shutdown, stop) = oneshot::channel();
        let (stats2, panics2) = (stats.clone(), panics.clone());
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake server runtime");
                // Dropping the runtime at the end of this closure cancels every connection.
                runtime.block_on(accept_loop(listener, handler, stats2, panics2, stop));
            })
            .expect("spawn fake server thread");
        ServerThread {
            addr,
            stats,
            panics,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connection counters.
    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let joined = self.thread.take().map(JoinHandle::join);
        // A handler panic became a 500 the client may have retried past; fail the test here
        // rather than let it pass on a broken fake. Never panic while already unwinding.
        if std::thread::panicking() {
            return;
        }
        if let Some(Err(_)) = joined {
            panic!("fake server thread panicked");
        }
        let panics = self.panics.lock().unwrap();
        assert!(
            panics.is_empty(),
            "fake server handler panicked: {panics:?}"
        );
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    handler: Handler,
    stats: Arc<ConnStats>,
    panics: Arc<Mutex<Vec<String>>>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors or similar: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        // Small bodies and takeover bytes must leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let id = stats.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        let open = stats.open.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_open.fetch_max(open, Ordering::SeqCst);
        tokio::spawn(serve(
            stream,
            id,
            handler.clone(),
            stats.clone(),
            panics.clone(),
        ));
    }
}

async fn serve(
    stream: TcpStream,
    id: u64,
    handler: Handler,
    stats: Arc<ConnStats>,
    panics: Arc<Mutex<Vec<String>>>,
) {
    let takeover = Arc::new(Mutex::new(None));
    let conn = Arc::new(Conn {
        id,
        takeover: takeover.clone(),
        head_delay: Mutex::new(None),
        head_gate: Mutex::new(None),
    });
    let service = service_fn(move |req| {
        let (handler, conn, panics) = (handler.clone(), conn.clone(), panics.clone());
        async move {
            let response = std::panic::catch_unwind(AssertUnwindSafe(|| handler(req, &conn)))
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    panics.lock().unwrap().push(message);
                    let mut response = Response::new(empty());
                    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    response
                });
            let delay = conn.head_delay.lock().unwrap().take();
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let gate = conn.head_gate.lock().unwrap().take();
            if let Some(gate) = gate {
                gate.opened().await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let io = TokioIo::new(WireIo {
        inner: stream,
        takeover,
        state: WireState::Hyper,
        drain: None,
    });
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
    stats.open.fetch_sub(1, Ordering::SeqCst);
}

/// Who owns the write side of a connection.
enum WireState {
    /// Hyper's bytes go to the socket.
    Hyper,
    /// A takeover's bytes are being written: `raw` is what is still to go.
    Raw { raw: Bytes, end: End },
    /// The takeover is on the wire: hyper's placeholder is discarded, then the connection ends.
    Done(End),
}

/// A socket that normally passes hyper's bytes through, and on a takeover writes the handler's
/// raw bytes instead.
struct WireIo {
    inner: TcpStream,
    takeover: Arc<Mutex<Option<(Bytes, End)>>>,
    state: WireState,
    /// Before a reset: when to give up waiting for the peer to take in every byte, and the
    /// timer of the next look.
    drain: Option<(tokio::time::Instant, Pin<Box<tokio::time::Sleep>>)>,
}

impl AsyncRead for WireIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WireIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let WireState::Hyper = this.state {
            if let Some((raw, end)) = this.takeover.lock().unwrap().take() {
                this.state = WireState::Raw { raw, end };
            }
        }
        loop {
            match &mut this.state {
                WireState::Hyper => return Pin::new(&mut this.inner).poll_write(cx, buf),
                WireState::Done(_) => return Poll::Ready(Ok(buf.len())),
                WireState::Raw { raw, end } if raw.is_empty() => {
                    this.state = WireState::Done(*end);
                }
                WireState::Raw { raw, .. } => {
                    let n = ready!(Pin::new(&mut this.inner).poll_write(cx, raw))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    raw.advance(n);
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let WireState::Done(End::Reset) = this.state {
            while undelivered(&this.inner) > 0 {
                let (limit, next) = this.drain.get_or_insert_with(|| {
                    let limit = tokio::time::Instant::now() + DRAIN_LIMIT;
                    (limit, Box::pin(tokio::time::sleep(DRAIN_POLL)))
                });
                if tokio::time::Instant::now() >= *limit {
                    break;
                }
                ready!(next.as_mut().poll(cx));
                next.as_mut()
                    .reset(tokio::time::Instant::now() + DRAIN_POLL);
            }
            // No FIN: hyper drops the socket next, and a zero linger turns that into a RST.
            return Poll::Ready(this.inner.set_zero_linger());
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
