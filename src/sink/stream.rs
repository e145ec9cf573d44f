//! Chunks written to a file or a pipe by a thread of their own while the caller goes on
//! receiving.
//!
//! Writing from the task that receives would stall every transfer on the runtime's one
//! thread whenever the kernel makes a write wait (a slow reader, a disk under writeback);
//! handing each write to the blocking pool costs a thread hand-off per chunk. A
//! [`StreamWriter`] keeps one thread for the whole object, fed through a bounded queue.

use std::io::{self, Write};

use bytes::Bytes;

use crate::handoff::Handoff;
/// The writer thread stopped taking chunks, after an error or a panic.
pub use crate::handoff::Stopped;

/// Bytes queued for the writer at most.
pub const QUEUE_BYTES: usize = 2 << 20;

/// A writer thread for one object. Dropping it without [`StreamWriter::finish`] stops the
/// thread at its next chunk and drops the writer there.
pub struct StreamWriter<W> {
    writing: Writing<W>,
}

enum Writing<W> {
    /// On the writer's thread.
    Thread(Handoff<(W, io::Result<()>)>),
    /// Here, by the caller, since no thread could be started: slower (the caller waits for
    /// every write), but whole. The outcome so far beside the writer.
    Here(W, io::Result<()>),
}

impl<W> std::fmt::Debug for StreamWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The writer lives on its thread; nothing of it is at hand here.
        f.debug_struct("StreamWriter").finish_non_exhaustive()
    }
}

impl<W: Write + Send + 'static> StreamWriter<W> {
    /// Starts a thread that writes `first`, then every chunk sent, to `out`; without a
    /// thread to be had, writes them itself as they come.
    pub fn start(out: W, first: Vec<Bytes>) -> StreamWriter<W> {
        let started = Handoff::spawn(QUEUE_BYTES, (out, first), |(mut out, first), chunks| {
            let mut written = super::gather::write_all_vectored(&mut out, &first);
            drop(first);
            let mut batch = Vec::new();
            while written.is_ok() && chunks.next_batch(&mut batch) {
                written = super::gather::write_all_vectored(&mut out, &batch);
            }
            written = written.and_then(|()| out.flush());
            (out, written)
        });
        let writing = match started {
            Ok(handoff) => Writing::Thread(handoff),
            Err(((mut out, first), e)) => {
                tracing::debug!("no writer thread ({e}): writing on the caller's");
                let written = super::gather::write_all_vectored(&mut out, &first);
                Writing::Here(out, written)
            }
        };
        StreamWriter { writing }
    }

    /// Queues a chunk, waiting while the queue is full. An error means the writer stopped:
    /// [`StreamWriter::finish`] says why.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), Stopped> {
        match &mut self.writing {
            Writing::Thread(handoff) => handoff.send(chunk).await,
            Writing::Here(out, written) => {
                if written.is_ok() {
                    *written = super::gather::write_all_vectored(out, &[chunk]);
                }
                written.as_ref().map_err(|_| Stopped)?;
                Ok(())
            }
        }
    }

    /// Waits until everything sent was written (and flushed), and gives the writer back
    /// with the outcome.
    pub async fn finish(self) -> (Option<W>, io::Result<()>) {
        match self.writing {
            Writing::Thread(handoff) => match handoff.finish().await {
                Ok((out, written)) => (Some(out), written),
                Err(p) => {
                    let said = format!("the writer thread panicked: {p}");
                    (None, Err(io::Error::other(said)))
                }
            },
            Writing::Here(mut out, written) => {
                let written = written.and_then(|()| out.flush());
                (Some(out), written)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that fails after `room` bytes.
    struct Full {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.got.len() >= self.room {
                return Err(io::Error::other("no space left"));
            }
            let n = buf.len().min(self.room - self.got.len());
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn writes_everything_in_order() {
        let mut w = StreamWriter::start(Vec::new(), vec![Bytes::from_static(b"first ")]);
        for i in 0..1000u32 {
            w.write(Bytes::from(format!("{i} "))).await.unwrap();
        }
        let (out, written) = w.finish().await;
        written.unwrap();
        let want: String = std::iter::once("first ".to_string())
            .chain((0..1000).map(|i| format!("{i} ")))
            .collect();
        assert_eq!(String::from_utf8(out.unwrap()).unwrap(), want);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_failed_write_stops_the_sender_and_is_reported() {
        let full = Full {
            got: Vec::new(),
            room: 100,
        };
        let mut w = StreamWriter::start(full, Vec::new());
        let mut stopped = false;
        for _ in 0..10_000 {
            if w.write(Bytes::from_static(&[7u8; 1000])).await.is_err() {
                stopped = true;
                break;
            }
        }
        assert!(stopped, "the sender learns that the writer stopped");
        let (out, written) = w.finish().await;
        assert_eq!(written.unwrap_err().to_string(), "no space left");
        assert_eq!(out.unwrap().got.len(), 100);
    }

    /// A writer that panics is reported with what its panic said.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_panicking_writer_is_reported_with_its_panic() {
        struct Panics;
        impl Write for Panics {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                panic!("writer exploded")
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = StreamWriter::start(Panics, Vec::new());
        for _ in 0..10_000 {
            if w.write(Bytes::from_static(&[7u8; 1000])).await.is_err() {
                break;
            }
        }
        let (out, written) = w.finish().await;
        assert!(out.is_none());
        assert_eq!(
            written.unwrap_err().to_string(),
            "the writer thread panicked: writer exploded"
        );
    }
}
