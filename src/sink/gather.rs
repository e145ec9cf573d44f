//! Output assembled from received chunks by reference and written with vectored writes.
//!
//! A framed stream is mostly object content that already sits in memory as [`Bytes`];
//! copying it into a `BufWriter` first cost about a tenth of the worker's CPU for a batch
//! of small blobs. [`Gather`] keeps those chunks (and the frame headers between them) and
//! hands them to the kernel a few hundred KiB at a time in one `writev`.

use std::io::{self, IoSlice, Write};

use bytes::{Bytes, BytesMut};

/// Where frames go: any writer, or one that keeps shared chunks instead of copying them.
pub trait FrameOut: Write {
    /// Writes a chunk of content; the writer may keep a reference instead of a copy.
    fn write_shared(&mut self, chunk: &Bytes) -> io::Result<()> {
        self.write_all(chunk)
    }
}

impl FrameOut for Vec<u8> {}

/// Gathered bytes are written once they reach this much.
const FLUSH_BYTES: usize = 256 << 10;
/// ...or this many pieces (the kernel takes at most 1024 per `writev`).
const FLUSH_PIECES: usize = 512;

/// A writer that gathers its input and writes it in large vectored writes. Like
/// `BufWriter`, what is gathered reaches `out` only on [`flush`](Write::flush) or when
/// enough has piled up.
pub struct Gather<W: Write> {
    out: W,
    pending: Vec<Bytes>,
    pending_len: usize,
    /// Small writes (frame headers), copied, until the next shared chunk.
    small: BytesMut,
    /// Bytes given to this writer so far, and of them, bytes `out` took: where a stream
    /// that failed ends, which tells whose frame it cut.
    taken: u64,
    written: u64,
}

impl<W: Write + std::fmt::Debug> std::fmt::Debug for Gather<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // What is gathered may be a quarter of a megabyte: its size says enough.
        f.debug_struct("Gather")
            .field("out", &self.out)
            .field("pending_bytes", &(self.pending_len + self.small.len()))
            .finish()
    }
}

impl<W: Write> Gather<W> {
    /// Gathers for `out`.
    pub fn new(out: W) -> Gather<W> {
        Gather {
            out,
            pending: Vec::new(),
            pending_len: 0,
            small: BytesMut::new(),
            taken: 0,
            written: 0,
        }
    }

    /// How many bytes were given to this writer, written out yet or not.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// How many bytes the underlying writer took: all of those [taken](Gather::taken)
    /// after a successful flush, fewer where a write failed.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn seal_small(&mut self) {
        if !self.small.is_empty() {
            let piece = self.small.split().freeze();
            self.pending_len += piece.len();
            self.pending.push(piece);
        }
    }

    fn write_if_full(&mut self) -> io::Result<()> {
        if self.pending_len + self.small.len() >= FLUSH_BYTES || self.pending.len() >= FLUSH_PIECES
        {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> io::Result<()> {
        self.seal_small();
        let mut counted = Counted {
            out: &mut self.out,
            written: &mut self.written,
        };
        let result = write_all_vectored(&mut counted, &self.pending);
        self.pending.clear();
        self.pending_len = 0;
        result
    }
}

impl<W: Write> Write for Gather<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.small.extend_from_slice(buf);
        self.taken += buf.len() as u64;
        self.write_if_full()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.out.flush()
    }
}

impl<W: Write> FrameOut for Gather<W> {
    fn write_shared(&mut self, chunk: &Bytes) -> io::Result<()> {
        self.seal_small();
        self.taken += chunk.len() as u64;
        self.pending_len += chunk.len();
        self.pending.push(chunk.clone());
        self.write_if_full()
    }
}

/// A writer that counts the bytes it took.
struct Counted<'a, W: Write> {
    out: &'a mut W,
    written: &'a mut u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        *self.written += n as u64;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.out.write_vectored(bufs)?;
        *self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Writes every chunk, in order, with as few system calls as the kernel allows.
pub(crate) fn write_all_vectored(mut out: impl Write, chunks: &[Bytes]) -> io::Result<()> {
    // Empty chunks left alone: a write of nothing but them returns 0, taken for a writer
    // that can take no more.
    let mut slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| IoSlice::new(c))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most 7 bytes per call, to exercise partial vectored writes.
    struct Trickle(Vec<u8>, usize);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            self.1 += 1;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keeps_order_of_copied_and_shared_pieces() {
        let mut g = Gather::new(Trickle(Vec::new(), 0));
        writeln!(g, "head 1").unwrap();
        g.write_shared(&Bytes::from_static(b"content one")).unwrap();
        g.write_all(b"\nhead 2\n").unwrap();
        g.write_shared(&Bytes::from_static(b"two")).unwrap();
        g.write_shared(&Bytes::from_static(b"+more")).unwrap();
        g.write_all(b"\n").unwrap();
        assert!(g.out.0.is_empty(), "nothing is written before a flush");
        g.flush().unwrap();
        assert_eq!(
            String::from_utf8(g.out.0.clone()).unwrap(),
            "head 1\ncontent one\nhead 2\ntwo+more\n"
        );
    }

    #[test]
    fn writes_when_enough_has_piled_up() {
        let mut g = Gather::new(Vec::new());
        let chunk = Bytes::from(vec![7u8; 100 << 10]);
        g.write_shared(&chunk).unwrap();
        g.write_shared(&chunk).unwrap();
        assert!(g.out.is_empty());
        g.write_shared(&chunk).unwrap();
        assert_eq!(g.out.len(), 300 << 10);
        for _ in 0..FLUSH_PIECES {
            g.write_all(b"x").unwrap();
            g.write_shared(&Bytes::from_static(b"y")).unwrap();
        }
        assert!(g.out.len() > 300 << 10, "many small pieces are written too");
    }
}
