//! A buffer for one object's bytes: in memory while small, in an anonymous temporary file
//! once it grows past a threshold. Framed output needs whole, verified objects before it
//! writes a frame; the spool lets a large object wait for its turn without sitting in RAM.

use std::io::{self, Read, Seek, SeekFrom, Write};

use bytes::{Bytes, BytesMut};

use super::gather::FrameOut;

/// Bytes kept in memory at most, per spool, before spilling to disk.
pub const DEFAULT_THRESHOLD: usize = 1 << 20;

/// Memory-then-file storage for one object. Its `Debug` tells its size, not its content.
pub struct Spool {
    threshold: usize,
    chunks: Vec<Bytes>,
    file: Option<io::BufWriter<std::fs::File>>,
    len: u64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The content may be a MiB, and an image config's environment may hold secrets:
        // an outcome logged with `{:?}` is a line about the object, not the object.
        f.debug_struct("Spool")
            .field("len", &self.len)
            .field("threshold", &self.threshold)
            .field("spilled", &self.spilled())
            .finish()
    }
}

impl Spool {
    /// An empty spool that spills after `threshold` bytes.
    pub fn new(threshold: usize) -> Spool {
        Spool {
            threshold,
            chunks: Vec::new(),
            file: None,
            len: 0,
        }
    }

    /// Bytes held.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes this spool keeps in memory: the content, or once spilled, the file's buffer.
    pub fn memory(&self) -> usize {
        match &self.file {
            Some(f) => f.capacity(),
            None => self.len as usize,
        }
    }

    /// Whether the content went to a temporary file.
    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Appends a chunk. May block on file I/O once spilled; call from a blocking-friendly
    /// context for large objects.
    pub fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        self.len += chunk.len() as u64;
        if let Some(f) = &mut self.file {
            return f.write_all(&chunk);
        }
        self.chunks.push(chunk);
        if self.len > self.threshold as u64 {
            let mut f = io::BufWriter::with_capacity(256 << 10, tempfile::tempfile()?);
            for c in self.chunks.drain(..) {
                f.write_all(&c)?;
            }
            self.file = Some(f);
        }
        Ok(())
    }

    /// Writes out what a spilled spool still holds in its buffer, once the content is all
    /// there. A full disk is found now, while the object can fail alone, rather than by
    /// [`Spool::copy_to`] in the middle of its frame, where it was taken for the output's
    /// failure.
    pub fn finish(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    /// Drops everything, for a fetch that starts over, which spills to a new file if it
    /// grows past the threshold again.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
        // Taken apart, not dropped: a `BufWriter` writes out its buffer when dropped, and
        // up to 256 KiB of bytes about to be thrown away failed the object on a full
        // `TMPDIR` rather than letting it be fetched again.
        if let Some(f) = self.file.take() {
            drop(f.into_parts());
        }
    }

    /// Writes the whole content to `out`, handing it the chunks themselves when they are in
    /// memory.
    pub fn copy_to(&mut self, out: &mut dyn FrameOut) -> Result<(), CopyError> {
        match &mut self.file {
            None => {
                for c in &self.chunks {
                    out.write_shared(c).map_err(CopyError::Out)?;
                }
                Ok(())
            }
            Some(f) => {
                f.flush().map_err(CopyError::Spool)?;
                let file = f.get_mut();
                file.seek(SeekFrom::Start(0)).map_err(CopyError::Spool)?;
                loop {
                    // A fresh buffer each time: `out` may keep the previous one.
                    let mut buf = BytesMut::zeroed(256 << 10);
                    let n = match file.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(CopyError::Spool(e)),
                    };
                    if n == 0 {
                        return Ok(());
                    }
                    buf.truncate(n);
                    out.write_shared(&buf.freeze()).map_err(CopyError::Out)?;
                }
            }
        }
    }
}

/// Why [`Spool::copy_to`] stopped. The two call for different remedies: a spool lies in
/// the system's temporary directory, not where the output goes, and a user told only
/// "writing to stdout: Input/output error" looked for the fault in the wrong place.
#[derive(Debug)]
pub enum CopyError {
    /// The spool's file could not be read back (a failing disk under `TMPDIR`).
    Spool(io::Error),
    /// The output did not take what it was given.
    Out(io::Error),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Spool(e) => write!(f, "reading back the temporary file: {e}"),
            CopyError::Out(e) => write!(f, "writing the output: {e}"),
        }
    }
}

impl std::error::Error for CopyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CopyError::Spool(e) | CopyError::Out(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outcome of framed output holds its content in a spool, up to a MiB of it in
    /// memory, and a service logs outcomes with `{:?}`: the content (an image config's
    /// environment among it) went into the log, escaped, a line of megabytes.
    #[test]
    fn its_debug_tells_the_size_not_the_content() {
        let mut s = Spool::new(1 << 20);
        s.push(Bytes::from(b"PASSWORD=s3cret ".repeat(1000)))
            .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("16000"), "the length: {shown}");
        assert!(shown.len() < 200, "{shown}");
    }

    #[test]
    fn stays_in_memory_below_threshold() {
        let mut s = Spool::new(10);
        s.push(Bytes::from_static(b"hello")).unwrap();
        assert!(!s.spilled());
        let mut out = Vec::new();
        s.copy_to(&mut out).unwrap();
        assert_eq!(out, b"hello");
    }

    #[test]
    fn spills_and_clears() {
        let mut s = Spool::new(4);
        s.push(Bytes::from_static(b"abc")).unwrap();
        s.push(Bytes::from_static(b"defg")).unwrap();
        assert!(s.spilled());
        assert_eq!(s.len(), 7);
        let mut out = Vec::new();
        s.copy_to(&mut out).unwrap();
        assert_eq!(out, b"abcdefg");
        s.clear();
        assert!(!s.spilled());
        s.push(Bytes::from_static(b"xy")).unwrap();
        let mut out = Vec::new();
        s.copy_to(&mut out).unwrap();
        assert_eq!(out, b"xy");
    }

    /// Clearing wrote out the buffered bytes it was about to throw away: on a full
    /// `TMPDIR` the object failed instead of being fetched again.
    #[cfg(target_os = "linux")]
    #[test]
    fn clearing_writes_nothing_out() {
        let mut s = Spool::new(4);
        s.push(Bytes::from_static(b"abcdefg")).unwrap();
        assert!(s.spilled());
        // A file every write to fails with ENOSPC, as one on a full disk.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        s.file = Some(io::BufWriter::with_capacity(256 << 10, full));
        s.push(Bytes::from_static(b"buffered, never written"))
            .unwrap();
        s.clear();
        s.push(Bytes::from_static(b"xy")).unwrap();
        let mut out = Vec::new();
        s.copy_to(&mut out).unwrap();
        assert_eq!(out, b"xy");
    }
}
