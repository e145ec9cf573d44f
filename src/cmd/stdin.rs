//! Standard input read by a thread the process does not wait for.
//!
//! tokio reads stdin on its blocking pool, and a runtime shutting down waits for that pool:
//! interrupted while stdin was still open (a producer that lives on, a terminal), `dist`
//! sat out its whole shutdown timeout in a `read` nothing could cancel. A plain thread of
//! our own is left behind instead; the process ends without it.

use std::io::Read;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// How much one read of stdin takes at most.
const CHUNK: usize = 64 << 10;
/// Chunks read ahead at most: memory stays bounded whatever is piped in.
const AHEAD: usize = 4;

/// Standard input as an async buffered reader, fed by a detached thread.
pub struct Stdin {
    chunks: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

/// Starts the reading thread.
pub fn stdin() -> Stdin {
    let (tx, rx) = mpsc::channel(AHEAD);
    let reader = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("dist-stdin".into())
        .spawn(move || read_all(&reader));
    if let Err(e) = spawned {
        // Without the thread the input is this error.
        let _ = tx.try_send(Err(e));
    }
    Stdin {
        chunks: rx,
        current: Bytes::new(),
    }
}

fn read_all(tx: &mpsc::Sender<std::io::Result<Bytes>>) {
    // What Rust's runtime put in place of a closed descriptor 0 is no input: /dev/null.
    if super::closed_at_start::stdin() {
        let _ = tx.blocking_send(Err(super::closed_at_start::error()));
        return;
    }
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut buf = BytesMut::zeroed(CHUNK);
        let sent = match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                tx.blocking_send(Ok(buf.freeze()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A descriptor shared with a process that made it non-blocking (a wrapper
            // reading the same stdin with asyncio, a terminal left so) has nothing to read
            // at each pause of its producer: that is no end of the input, and a batch fed
            // slowly ended at its first pause, or before its first line.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Err(e) = super::nonblocking::ready(libc::STDIN_FILENO, libc::POLLIN) {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
                continue;
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        if sent.is_err() {
            return; // the reader is gone
        }
    }
}

impl AsyncBufRead for Stdin {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.current.is_empty() {
            match ready!(this.chunks.poll_recv(cx)) {
                Some(Ok(chunk)) => this.current = chunk,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => {} // end of input: an empty buffer says so
            }
        }
        Poll::Ready(Ok(&this.current))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().current.advance(amt);
    }
}

impl AsyncRead for Stdin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}
