//! What an answer's `Content-Range` (and, for a `200`, its `Content-Length`) says of the
//! bytes it carries: where its range starts and ends, the whole content's size, whether it
//! is all of the content; and the errors for a `206` that is not what was asked.
//!
//! Separate from `body`, which resumes a body with `Range`: the first answer
//! (`download`) and the split download's parts (`crate::ranged`) read the same headers.

use http::{HeaderMap, StatusCode};

use crate::error::{Error, ErrorKind};

/// What an answer says of where the content ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Extent {
    /// The whole content's size: a `Content-Range` total, a plain `200`'s `Content-Length`.
    Size(u64),
    /// A range of unknown total (`bytes N-M/*`): it may end short of the content's end (a
    /// cache sends what it has so far), which the rest asked for after it then says.
    OpenRange,
    /// Nothing: a body that runs to its connection's close, or a coded one, whose length
    /// is the coded bytes'.
    Unsaid,
}

impl Extent {
    /// What a plain answer with `status` and headers `h` says of the content's end.
    pub(super) fn of_plain(status: StatusCode, h: &HeaderMap) -> Extent {
        let size = match status {
            StatusCode::PARTIAL_CONTENT => content_range_total(h),
            _ => super::content_length(h),
        };
        match size {
            Some(size) => Extent::Size(size),
            None if status == StatusCode::PARTIAL_CONTENT => Extent::OpenRange,
            None => Extent::Unsaid,
        }
    }

    /// The whole content's size, when the answer declares it.
    pub(super) fn size(self) -> Option<u64> {
        match self {
            Extent::Size(size) => Some(size),
            _ => None,
        }
    }

    /// `Some(offset)`, where the body started, for a range of unknown total.
    pub(super) fn open_range(self, offset: u64) -> Option<u64> {
        (self == Extent::OpenRange).then_some(offset)
    }
}

/// A `206` that does not start at `offset`, where the rest was asked for.
pub(super) fn wrong_range(offset: u64, headers: &HeaderMap) -> Error {
    let got = got_range(headers);
    Error::new(
        ErrorKind::Protocol,
        format!("asked for bytes={offset}-, got a 206 with {got}"),
    )
}

/// A `206` where no range was asked for: a part of the content, its length no size, which
/// verification would only call corruption. Not transient: a server (a cache serving a
/// partial copy) that answers so answers the same again; a mirror hands over.
pub(super) fn unasked_range(headers: &HeaderMap) -> Error {
    let got = got_range(headers);
    Error::new(
        ErrorKind::Protocol,
        format!("asked for the whole content, got a 206 with {got}"),
    )
}

/// The whole content's size, for a `206` whose range is all of it (`bytes 0-99/100`): a
/// server may send its whole content so, asked for a range or not (curl takes it, as
/// containerd takes one it asked no range of). Its bytes are the content's from the
/// first, as a `200`'s are (coded, the coded content's, and its total theirs); any other
/// `206` is only a part.
pub(super) fn whole_range(headers: &HeaderMap) -> Option<u64> {
    let (first, last) = content_range(headers)?;
    let total = content_range_total(headers)?;
    (first == 0 && last.checked_add(1) == Some(total)).then_some(total)
}

/// The `Content-Range` of a `206`, as the server sent it.
pub(super) fn got_range(headers: &HeaderMap) -> String {
    match headers.get(http::header::CONTENT_RANGE) {
        Some(v) => format!(
            "Content-Range: {}",
            crate::server_text::one_line(&String::from_utf8_lossy(v.as_bytes()))
        ),
        None => "no Content-Range".to_string(),
    }
}

/// A `Content-Range` in bytes without its unit: `bytes 100-199/1000` → `100-199/1000`.
/// Range units are case-insensitive (RFC 9110, 14.1): `Bytes` is the same unit.
fn byte_range(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    let (unit, rest) = value.trim().split_once(' ')?;
    unit.eq_ignore_ascii_case("bytes").then_some(rest)
}

/// The range a `206` answer carries: `Content-Range: bytes 100-199/1000` → (100, 199).
pub(crate) fn content_range(headers: &HeaderMap) -> Option<(u64, u64)> {
    let range = byte_range(headers)?.split('/').next()?;
    let (first, last) = range.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
}

/// Where the range a `206` answer carries starts: `Content-Range: bytes 100-199/1000` → 100.
pub(crate) fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    byte_range(headers)?.split('-').next()?.trim().parse().ok()
}

/// The whole content's size a `206` answer states: `Content-Range: bytes 100-199/1000` →
/// 1000 (`None` for `*`, unknown).
pub(crate) fn content_range_total(headers: &HeaderMap) -> Option<u64> {
    byte_range(headers)?.rsplit_once('/')?.1.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    /// Headers holding `Content-Range: value`.
    fn with_range(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_RANGE,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn an_answer_s_extent_is_its_total_or_its_length() {
        let partial = StatusCode::PARTIAL_CONTENT;
        let of = |status, h: &HeaderMap| Extent::of_plain(status, h);
        assert_eq!(
            of(partial, &with_range("bytes 100-199/1000")).size(),
            Some(1000)
        );
        let open = of(partial, &with_range("bytes 100-199/*"));
        assert_eq!((open, open.size()), (Extent::OpenRange, None));
        assert_eq!(open.open_range(100), Some(100));
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from_static("100"),
        );
        assert_eq!(of(StatusCode::OK, &h), Extent::Size(100));
        // A `206`'s length is its range's, no size of the content.
        h.extend(with_range("bytes 100-199/*"));
        assert_eq!(of(partial, &h), Extent::OpenRange);
        let unsaid = of(StatusCode::OK, &HeaderMap::new());
        assert_eq!((unsaid.size(), unsaid.open_range(100)), (None, None));
    }

    #[test]
    fn a_wrong_range_is_told_as_the_server_sent_it() {
        assert_eq!(
            wrong_range(9500, &HeaderMap::new()).to_string(),
            "asked for bytes=9500-, got a 206 with no Content-Range"
        );
        assert_eq!(
            wrong_range(9500, &with_range("bytes 10-99/100")).to_string(),
            "asked for bytes=9500-, got a 206 with Content-Range: bytes 10-99/100"
        );
    }

    #[test]
    fn parses_content_range() {
        let start = |value: &str| content_range_start(&with_range(value));
        assert_eq!(start("bytes 100-199/1000"), Some(100));
        assert_eq!(start("bytes 0-0/*"), Some(0));
        assert_eq!(start("items 1-2/3"), None);
        assert_eq!(content_range_start(&HeaderMap::new()), None);
        let total = |value: &str| content_range_total(&with_range(value));
        assert_eq!(total("bytes 100-199/1000"), Some(1000));
        assert_eq!(total("bytes 0-0/*"), None);
        assert_eq!(total("bytes 5-9"), None);
        // Range units are case-insensitive (RFC 9110, 14.1).
        assert_eq!(start("Bytes 100-199/1000"), Some(100));
        assert_eq!(total("BYTES 100-199/1000"), Some(1000));
        assert_eq!(
            content_range(&with_range("Bytes 100-199/1000")),
            Some((100, 199))
        );
        assert_eq!(start("bytesx 1-2/3"), None);
        let whole = |value: &str| whole_range(&with_range(value));
        assert_eq!(whole("bytes 0-99/100"), Some(100));
        assert_eq!(whole("bytes 0-99/*"), None);
        assert_eq!(whole("bytes 0-98/100"), None);
        assert_eq!(whole("bytes 1-99/100"), None);
        assert_eq!(whole(&format!("bytes 0-{}/{}", u64::MAX, u64::MAX)), None);
    }
}

/// `Content-Range` as servers write it, generated: what it says reads back, in any case
/// of its unit and with any white space; and no value panics.
#[cfg(test)]
mod properties {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn with_range(value: &str) -> Option<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_RANGE,
            HeaderValue::from_str(value).ok()?,
        );
        Some(headers)
    }

    proptest! {
        #![proptest_config(crate::fuzz::cases(1000))]

        #[test]
        fn a_range_reads_as_written(
            first in any::<u64>(),
            len in any::<u64>(),
            extra in any::<u64>(),
            unit in "[bB][yY][tT][eE][sS]",
            known in any::<bool>(),
        ) {
            let last = first.saturating_add(len);
            let total = last.checked_add(1).map(|t| t.saturating_add(extra));
            let said = match total.filter(|_| known) {
                Some(t) => t.to_string(),
                None => "*".to_string(),
            };
            let h = with_range(&format!("{unit} {first}-{last}/{said}")).unwrap();
            prop_assert_eq!(content_range(&h), Some((first, last)));
            prop_assert_eq!(content_range_start(&h), Some(first));
            prop_assert_eq!(content_range_total(&h), total.filter(|_| known));
            let whole = (first == 0 && known && extra == 0).then_some(total).flatten();
            prop_assert_eq!(whole_range(&h), whole);
        }

        #[test]
        fn no_range_panics(
            value in prop_oneof![
                any::<String>(),
                "(bytes|Bytes|items)?[ ]{0,2}[-+*/0-9 ]{0,24}",
            ],
        ) {
            if let Some(h) = with_range(&value) {
                let _ = content_range(&h);
                let _ = content_range_start(&h);
                let _ = content_range_total(&h);
                let _ = whole_range(&h);
                let _ = got_range(&h);
                let _ = Extent::of_plain(StatusCode::PARTIAL_CONTENT, &h);
            }
        }
    }
}
