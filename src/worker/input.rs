//! Reading input lines with bounded memory: a line longer than the limit is reported as
//! soon as it passes the limit (input without newlines, such as a binary file or
//! `/dev/zero`, must not keep the run silent) and the rest of it is skipped instead of being
//! buffered; a line that is not UTF-8 is reported, not fatal.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest input line accepted; a descriptor with annotations fits easily.
pub const MAX_LINE: usize = 64 << 10;

/// One line of input, or why it cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawLine {
    /// The text without its line ending.
    Text(String),
    /// The line is longer than [`MAX_LINE`].
    TooLong,
    /// The line is not valid UTF-8.
    NotUtf8,
}

/// Input split into lines, with the limit and what is left of a line too long.
#[derive(Debug)]
pub struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    max: usize,
    /// The rest of a line already reported as too long is still to be skipped.
    skipping: bool,
    /// Nothing was read yet: the input's first bytes may say it is no UTF-8.
    at_start: bool,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    /// Lines of `reader`, each at most `max` bytes.
    pub fn new(reader: R, max: usize) -> Lines<R> {
        Lines {
            reader,
            buf: Vec::new(),
            max,
            skipping: false,
            at_start: true,
        }
    }

    /// Reads the next line; `Ok(None)` at the end of the input.
    pub async fn next(&mut self) -> std::io::Result<Option<RawLine>> {
        if self.skipping {
            self.skip_rest().await?;
        }
        if std::mem::take(&mut self.at_start) {
            let first = self.reader.fill_buf().await?;
            if first.starts_with(&[0xff, 0xfe]) || first.starts_with(&[0xfe, 0xff]) {
                return Err(utf16());
            }
        }
        self.buf.clear();
        let mut any = false;
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                break;
            }
            any = true;
            let (take, done) = through_newline(available);
            // Room for the line's ending, `\r\n` at most; the text is measured below.
            if self.buf.len() + take > self.max + 2 {
                self.reader.consume(take);
                self.buf.clear();
                self.skipping = !done;
                return Ok(Some(RawLine::TooLong));
            }
            self.buf.extend_from_slice(&available[..take]);
            self.reader.consume(take);
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        if self.buf.len() > self.max {
            return Ok(Some(RawLine::TooLong));
        }
        let comment = self.buf.trim_ascii_start().starts_with(b"#");
        Ok(Some(match std::str::from_utf8(&self.buf) {
            Ok(s) => RawLine::Text(s.to_string()),
            // Skipped whatever it holds (a Latin-1 "café" in a note to oneself).
            Err(_) if comment => RawLine::Text(String::from_utf8_lossy(&self.buf).into_owned()),
            Err(_) => RawLine::NotUtf8,
        }))
    }

    /// Drops input up to and including the next newline.
    async fn skip_rest(&mut self) -> std::io::Result<()> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                break;
            }
            let (take, done) = through_newline(available);
            self.reader.consume(take);
            if done {
                break;
            }
        }
        self.skipping = false;
        Ok(())
    }
}

/// Input that begins with UTF-16's byte-order mark, as PowerShell 5 writes files
/// (`Out-File`, `>`): read as UTF-8, each of its lines was "not UTF-8" and the NUL that
/// follows every newline began a line of its own, two errors a line that never named the
/// cause. No line of it can be read, so it is refused whole.
fn utf16() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the input is UTF-16 (it begins with a byte-order mark) and dist reads UTF-8: \
         convert it first (iconv -f UTF-16 -t UTF-8, or Out-File -Encoding utf8)",
    )
}

/// How much of `available` belongs to the current line, and whether that ends it.
fn through_newline(available: &[u8]) -> (usize, bool) {
    match available.iter().position(|&b| b == b'\n') {
        Some(i) => (i + 1, true),
        None => (available.len(), false),
    }
}

/// A line without the byte order mark that Windows editors and PowerShell put at the start
/// of a UTF-8 file: the input's first line, or the first of each file joined into it.
pub fn without_bom(line: RawLine) -> RawLine {
    match line {
        RawLine::Text(t) if t.starts_with('\u{feff}') => {
            RawLine::Text(t['\u{feff}'.len_utf8()..].to_string())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn utf16_input_is_refused_whole() {
        for bom in [[0xff, 0xfe], [0xfe, 0xff]] {
            let mut data = bom.to_vec();
            for c in "latest\r\nv2\r\n".encode_utf16() {
                let pair = if bom[0] == 0xff {
                    c.to_le_bytes()
                } else {
                    c.to_be_bytes()
                };
                data.extend_from_slice(&pair);
            }
            let mut lines = Lines::new(&data[..], MAX_LINE);
            let e = lines.next().await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("UTF-16"), "{e}");
        }
        // UTF-8's own mark is no such thing: it is dropped from the first line.
        let mut lines = Lines::new(&b"\xef\xbb\xbflatest\n"[..], MAX_LINE);
        let first = lines.next().await.unwrap().unwrap();
        assert_eq!(without_bom(first), RawLine::Text("latest".into()));
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        let text = |s: &str| RawLine::Text(s.into());
        assert_eq!(without_bom(text("\u{feff}sha256:ab")), text("sha256:ab"));
        assert_eq!(without_bom(text("latest")), text("latest"));
        assert_eq!(without_bom(RawLine::TooLong), RawLine::TooLong);
    }

    async fn all_lines(data: &[u8], max: usize) -> Vec<RawLine> {
        let r = tokio::io::BufReader::with_capacity(4, data);
        let mut lines = Lines::new(r, max);
        let mut got = Vec::new();
        while let Some(l) = lines.next().await.unwrap() {
            got.push(l);
        }
        got
    }

    #[tokio::test]
    async fn splits_caps_and_survives_bad_bytes() {
        let data: Vec<u8> = [b"a\r\n".as_slice(), b"bbbbbbbbbb\n", b"\xff\xfe\n", b"last"].concat();
        let got = all_lines(&data, 5).await;
        assert_eq!(
            got,
            vec![
                RawLine::Text("a".into()),
                RawLine::TooLong,
                RawLine::NotUtf8,
                RawLine::Text("last".into())
            ]
        );
        // A long line cut exactly at a read boundary, and one that ends the input.
        let got = all_lines(b"abcdefgh\nok\nabcdefghij", 5).await;
        assert_eq!(
            got,
            [
                RawLine::TooLong,
                RawLine::Text("ok".into()),
                RawLine::TooLong
            ]
        );
    }

    /// A line of exactly the limit fits whatever its ending; one byte more does not.
    #[tokio::test]
    async fn the_limit_counts_the_text_not_its_ending() {
        let got = all_lines(b"abcde\r\nabcde\nabcdef\r\nabcdef\n", 5).await;
        let text = RawLine::Text("abcde".into());
        assert_eq!(
            got,
            [text.clone(), text, RawLine::TooLong, RawLine::TooLong]
        );
    }

    /// A comment is skipped whatever it holds; other lines must be UTF-8.
    #[tokio::test]
    async fn a_comment_need_not_be_utf8() {
        let got = all_lines(b"  # caf\xe9\nx\xe9\n", 20).await;
        assert!(matches!(&got[0], RawLine::Text(t) if t.trim_start().starts_with('#')));
        assert_eq!(got[1], RawLine::NotUtf8);
    }

    /// Input that never ends its line is reported once it passes the limit, not when (if
    /// ever) the line ends.
    #[tokio::test]
    async fn an_endless_line_is_reported_before_it_ends() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let feeder = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while tx.write_all(&[0u8; 64]).await.is_ok() {}
        });
        let mut lines = Lines::new(tokio::io::BufReader::new(rx), 1000);
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next()).await;
        assert_eq!(
            first.expect("reported in time").unwrap(),
            Some(RawLine::TooLong)
        );
        drop(lines);
        feeder.await.unwrap();
    }
}
