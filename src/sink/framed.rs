//! The framed stream format, in the shape of `git cat-file --batch`.
//!
//! For each object, in one contiguous piece:
//! ```text
//! <object> <digest> <size> <mediatype>\n
//! <size bytes of content>\n
//! ```
//! `<mediatype>` is `-` when unknown. A failed object is a single line,
//! `<object> error <reason>\n`, with no body. A frame is written only after its object
//! was completely received and verified.

use std::io;

use super::gather::FrameOut;

use crate::worker::{Outcome, Status};

/// Writes one outcome as a frame.
pub fn write_frame(out: &mut dyn FrameOut, outcome: &mut Outcome) -> io::Result<()> {
    let object = one_word(&outcome.object);
    match outcome.status {
        Status::Error => {
            let reason = outcome
                .error
                .as_ref()
                .map(|e| e.detail())
                .unwrap_or_else(|| "unknown error".into());
            writeln!(out, "{object} error {}", one_line(&reason))
        }
        Status::Ok | Status::Exists => {
            let digest = outcome
                .digest
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "-".into());
            let media_type = outcome
                .media_type
                .as_deref()
                .map(one_word)
                .unwrap_or_else(|| "-".into());
            let size = outcome.size.unwrap_or(0);
            writeln!(out, "{object} {digest} {size} {media_type}")?;
            if let Some(spool) = &mut outcome.content {
                spool.copy_to(out)?;
            }
            out.write_all(b"\n")
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Frame headers are split on spaces; a field must not contain one.
fn one_word(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::spool::Spool;
    use crate::{Digest, Error};
    use bytes::Bytes;

    #[test]
    fn ok_and_error_frames() {
        let mut spool = Spool::new(1 << 10);
        spool.push(Bytes::from_static(b"abc")).unwrap();
        let d = Digest::of(crate::digest::Algorithm::Sha256, b"abc");
        let mut ok = Outcome::new(1, d.to_string());
        ok.status = Status::Ok;
        ok.digest = Some(d.clone());
        ok.size = Some(3);
        ok.content = Some(spool);
        let mut out = Vec::new();
        write_frame(&mut out, &mut ok).unwrap();
        assert_eq!(out, format!("{d} {d} 3 -\nabc\n").into_bytes());

        let mut bad = Outcome::new(2, "latest".into());
        bad.fail(Error::invalid("two\nlines"));
        let mut out = Vec::new();
        write_frame(&mut out, &mut bad).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "latest error two lines\n");
    }
}
