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

/// An error line is one line of text: no line break, and no other control character (a
/// bad line's NUL or ESC, quoted in the reason) for a reader of the stream to trip on.
fn one_line(s: &str) -> String {
    s.replace(char::is_control, " ")
}

/// Frame headers are split on spaces; a field must not contain one, nor a control
/// character (a bad line's object is what it says, NUL and ESC included). Borrows the
/// field when it has none, as nearly every object and media type does: rebuilding it char
/// by char was the output thread's largest single cost in a profile.
fn one_word(s: &str) -> Cow<'_, str> {
    let odd = |c: char| c.is_whitespace() || c.is_control();
    if s.is_empty() {
        Cow::Borrowed("-")
    } else if s.contains(odd) {
        s.chars().map(|c| if odd(c) { '_' } else { c }).collect()
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

    /// A bad line's object is what it says, control characters included: NUL and ESC
    /// reached the framed stream, where a reader splitting on NUL or showing the stream
    /// on a terminal met them.
    #[test]
    fn frame_headers_carry_no_control_character() {
        let mut bad = Outcome::new(1, "\u{1b}[2Jv1\0x\u{7f}".into());
        bad.fail(Error::invalid("bad \u{1b}[2J\0tag\u{85}"));
        let mut out = Vec::new();
        write_frame(&mut out, &mut bad).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches(char::is_control).collect::<String>(), "\n");
        assert!(text.starts_with("_[2Jv1_x_ error "), "{text:?}");
        assert_eq!(one_word("a\u{0}b"), "a_b");
        assert!(matches!(one_word("sha256:abc"), Cow::Borrowed(_)));
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
