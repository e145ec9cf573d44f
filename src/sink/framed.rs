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

use std::borrow::Cow;

use super::gather::FrameOut;
use super::spool::CopyError;

use crate::worker::{Outcome, Status};

/// Writes one outcome as a frame. A spool that cannot be read back fails as
/// [`CopyError::Spool`], once the frame has begun: its header and part of its content may
/// be out already.
pub fn write_frame(out: &mut dyn FrameOut, outcome: &mut Outcome) -> Result<(), CopyError> {
    let object = one_word(&outcome.object);
    match outcome.status {
        Status::Error => {
            let reason = outcome
                .error
                .as_ref()
                .map(|e| e.detail())
                .unwrap_or_else(|| "unknown error".into());
            writeln!(out, "{object} error {}", one_line(&reason)).map_err(CopyError::Out)
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
                .unwrap_or(Cow::Borrowed("-"));
            let size = outcome.size.unwrap_or(0);
            writeln!(out, "{object} {digest} {size} {media_type}").map_err(CopyError::Out)?;
            if let Some(spool) = &mut outcome.content {
                spool.copy_to(out)?;
            }
            out.write_all(b"\n").map_err(CopyError::Out)
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Frame headers are split on spaces; a field must not contain one. Borrows the field
/// when it has none, as nearly every object and media type does: rebuilding it char by
/// char was the output thread's largest single cost in a profile.
fn one_word(s: &str) -> Cow<'_, str> {
    if s.is_empty() {
        Cow::Borrowed("-")
    } else if s.contains(char::is_whitespace) {
        s.chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect()
    } else {
        Cow::Borrowed(s)
    }
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

    #[test]
    fn header_fields_never_contain_whitespace() {
        assert_eq!(one_word("a b\tc\u{a0}d"), "a_b_c_d");
        assert_eq!(one_word(""), "-");
        assert!(matches!(
            one_word("application/vnd.oci.image.layer.v1.tar"),
            Cow::Borrowed(_)
        ));
    }
}
