//! Reading input lines with bounded memory: a line longer than the limit is reported and
//! skipped instead of being buffered, and a line that is not UTF-8 is reported, not fatal.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest input line accepted; a descriptor with annotations fits easily.
pub const MAX_LINE: usize = 64 << 10;

/// One line of input, or why it cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum RawLine {
    /// The text without its line ending.
    Text(String),
    /// The line is longer than [`MAX_LINE`].
    TooLong,
    /// The line is not valid UTF-8.
    NotUtf8,
}

/// Reads the next line; `Ok(None)` at the end of the input.
pub async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<RawLine>> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            if buf.len() + take > max + 1 {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&available[..take]);
            }
        }
        reader.consume(take);
        if done {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if too_long {
        return Ok(Some(RawLine::TooLong));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(match std::str::from_utf8(buf) {
        Ok(s) => RawLine::Text(s.to_string()),
        Err(_) => RawLine::NotUtf8,
    }))
}

/// The first line without the byte order mark that Windows editors and PowerShell put at
/// the start of a UTF-8 file.
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

    #[test]
    fn a_byte_order_mark_is_dropped() {
        let text = |s: &str| RawLine::Text(s.into());
        assert_eq!(without_bom(text("\u{feff}sha256:ab")), text("sha256:ab"));
        assert_eq!(without_bom(text("latest")), text("latest"));
        assert_eq!(without_bom(RawLine::TooLong), RawLine::TooLong);
    }

    #[tokio::test]
    async fn splits_caps_and_survives_bad_bytes() {
        let data: Vec<u8> = [b"a\r\n".as_slice(), b"bbbbbbbbbb\n", b"\xff\xfe\n", b"last"].concat();
        let mut r = tokio::io::BufReader::with_capacity(4, data.as_slice());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(l) = next_line(&mut r, &mut buf, 5).await.unwrap() {
            got.push(l);
        }
        assert_eq!(
            got,
            vec![
                RawLine::Text("a".into()),
                RawLine::TooLong,
                RawLine::NotUtf8,
                RawLine::Text("last".into())
            ]
        );
    }
}
