//! Text a server sent (an error body, a token endpoint's refusal), made fit for a one-line
//! message: a proxy's HTML error page or a body with line breaks would otherwise spread
//! one error over many lines of stderr, and control characters from an untrusted server
//! (terminal escape sequences) would reach the user's terminal.
//!
//! Not the library's API (hidden from its docs): the binary uses [`one_line`] and
//! [`hidden`] alone, and the rest stays inside the crate.
//!
//! ```compile_fail
//! let said = dist::server_text::excerpt(b"<title>Denied</title>", "403 Forbidden");
//! ```

/// `text` with every control character (line breaks, terminal escapes) replaced by a
/// space: for strings a server chose (a platform's fields, a layer's URLs) that are shown
/// whole, and for every error's reason.
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| if hidden(c) { ' ' } else { c })
        .collect::<String>()
        .into()
}

/// Whether `c` must not reach a terminal as it is: control characters, and the Unicode
/// controls that reorder or break what follows them. A server's `\u{202E}` (right-to-left
/// override) turned the rest of a message around, so that what it said about a digest or
/// a host read as something else (the "Trojan Source" trick), as did line separators.
/// Zero-width characters go too: `a\u{200B}.example` read as `a.example` in a warning
/// naming a token realm's host, which is another host. (An emoji joined by `\u{200D}`
/// shows as its parts.)
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'
                | '\u{FEFF}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `text` cut to `max` characters, ending in `…` when cut: for text a server chose that
/// is shown as it is (a URL, a digest), whatever its length.
pub(crate) fn cut_to(mut text: String, max: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// How many characters of a server's text a message shows at most.
pub const MAX_SHOWN: usize = 200;

/// `body` as one line of at most [`MAX_SHOWN`] characters: control characters and runs of
/// white space become one space. An HTML page is shown by its `<title>` alone, and not at
/// all when the title only repeats `status` (nginx's `404 Not Found` page): its markup
/// says nothing a reader needs.
pub(crate) fn excerpt(body: &[u8], status: &str) -> String {
    let text = String::from_utf8_lossy(body);
    if !looks_like_html(&text) {
        return one_line(&text);
    }
    match title(&text).map(|t| one_line(&t)) {
        Some(t) if !t.is_empty() && !status.contains(t.as_str()) => t,
        _ => String::new(),
    }
}

/// What an error `body` says, on one line: the messages of a registry's OCI `errors`
/// (`CODE: message; …`), an OAuth2 token server's `error` and `error_description`, or
/// Docker Hub's token service's `details`; any other body as [`excerpt`] shows it.
pub(crate) fn error_detail(body: &[u8], status: &str) -> String {
    json_error(body).unwrap_or_else(|| excerpt(body, status))
}

/// `body` without a leading UTF-8 byte order mark, which RFC 8259 (8.1) forbids a sender
/// and lets a parser pass over (.NET's writers add one): serde refuses it.
pub(crate) fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body)
}

/// The messages of a JSON error `body` ([`error_detail`]'s fields), on one line; `None`
/// when it is no JSON or names none of them, so a caller that must not show the rest of a
/// body (a token server's) can use it alone.
pub(crate) fn json_error(body: &[u8]) -> Option<String> {
    json_said(body).map(|all| one_line(&all))
}

/// What an error `body` says ([`error_detail`]), the secrets its request `sent` taken
/// out: out of the text as it came, and out of the JSON strings read from it, which may
/// have written them escaped (`\/` for a `/` of base64).
pub(crate) fn error_detail_hiding(body: &[u8], status: &str, sent: &crate::auth::Sent) -> String {
    if sent.is_empty() {
        return error_detail(body, status);
    }
    let text = sent.hide(&String::from_utf8_lossy(body));
    match json_said(text.as_bytes()) {
        Some(all) => one_line(&sent.hide(&all)),
        None => excerpt(text.as_bytes(), status),
    }
}

/// [`json_error`]'s messages, before they are put on one line.
fn json_said(body: &[u8]) -> Option<String> {
    let said = said(body)?;
    let pair = |code: Option<String>, message: Option<String>| {
        let parts: Vec<String> = [code, message]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(": "))
    };
    let all: Vec<String> = said
        .errors
        .into_iter()
        .filter_map(|e| pair(e.code, e.message))
        .collect();
    let all = if !all.is_empty() {
        all.join("; ")
    } else if let Some(oauth) = pair(said.error, said.error_description) {
        oauth
    } else {
        said.details.filter(|d| !d.is_empty())?
    };
    Some(all)
}

/// The codes of a registry's OCI `errors` in `body` (`BLOB_UNKNOWN`, `NAME_UNKNOWN`), in
/// order; empty for a body that is no JSON or names none.
pub(crate) fn error_codes(body: &[u8]) -> Vec<String> {
    said(body)
        .map(|s| s.errors.into_iter().filter_map(|e| e.code).collect())
        .unwrap_or_default()
}

/// A JSON error `body` read into the fields [`json_error`] and [`error_codes`] look at.
fn said(body: &[u8]) -> Option<Said> {
    serde_json::from_slice(without_bom(body)).ok()
}

/// The fields of a registry's, an OAuth2 token server's or Docker Hub's error body.
#[derive(serde::Deserialize)]
struct Said {
    #[serde(default)]
    errors: Vec<OciError>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    details: Option<String>,
}

/// One of a registry's OCI `errors`.
#[derive(serde::Deserialize)]
struct OciError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// `text` on one line of at most [`MAX_SHOWN`] characters, ending in `…` when cut.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_SHOWN + 4));
    let mut shown = 0;
    let mut space = false;
    for c in text.trim().chars() {
        if c.is_whitespace() || hidden(c) {
            space = true;
            continue;
        }
        let gap = std::mem::take(&mut space) && !out.is_empty();
        // The gap counts too: a space that took the count from one short of the limit
        // past it, which `==` never met, let the rest of the text through whole.
        if shown + usize::from(gap) >= MAX_SHOWN {
            out.push('…');
            break;
        }
        if gap {
            out.push(' ');
            shown += 1;
        }
        out.push(c);
        shown += 1;
    }
    out
}

/// Whether `text` is an HTML page (its `<title>` is what [`excerpt`] shows of it).
pub(crate) fn looks_like_html(text: &str) -> bool {
    let head: String = text.trim_start().chars().take(256).collect();
    let head = head.to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<title")
}

/// The text between `<title …>` and `</title>`, tags matched without regard to case.
fn title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    // Lowercasing ASCII keeps byte offsets, so they index the original text too.
    Some(html[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX_404: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n\
        <center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n\
        </body>\r\n</html>\r\n";

    #[test]
    fn an_html_page_that_repeats_the_status_shows_nothing() {
        assert_eq!(excerpt(NGINX_404.as_bytes(), "404 Not Found"), "");
    }

    #[test]
    fn an_html_page_shows_its_title_when_it_says_more() {
        let page = b"<!DOCTYPE html>\n<HTML><Head><TITLE>\n  Access denied |\n registry.example \
            used Cloudflare</TITLE></Head><body>...</body></HTML>";
        assert_eq!(
            excerpt(page, "403 Forbidden"),
            "Access denied | registry.example used Cloudflare"
        );
        assert_eq!(
            excerpt(b"<html><body>no title</body></html>", "502 Bad Gateway"),
            ""
        );
    }

    #[test]
    fn json_error_bodies_show_their_messages() {
        let detail = |body: &str| error_detail(body.as_bytes(), "401 Unauthorized");
        assert_eq!(
            detail(
                r#"{"errors":[{"code":"A","message":"one"},{"code":"B"},{"message":"three\nx"}]}"#
            ),
            "A: one; B; three x"
        );
        assert_eq!(
            detail(r#"{"error":"invalid_grant","error_description":null}"#),
            "invalid_grant"
        );
        assert_eq!(detail(r#"{"details":"no"}"#), "no");
        for shown_as_is in [r#"{"errors":[{}]}"#, "{}", "[1]", r#"{"error":7}"#] {
            assert_eq!(detail(shown_as_is), shown_as_is);
        }
    }

    /// An error body that starts with a UTF-8 byte order mark (a .NET server's writers add
    /// one) is read as the JSON after it: shown whole, it quoted the raw JSON.
    #[test]
    fn a_json_error_after_a_byte_order_mark_shows_its_messages() {
        let body = "\u{feff}{\"errors\":[{\"code\":\"DENIED\",\"message\":\"no pull\"}]}";
        assert_eq!(
            error_detail(body.as_bytes(), "403 Forbidden"),
            "DENIED: no pull"
        );
    }

    #[test]
    fn text_is_one_line_without_control_characters() {
        assert_eq!(
            excerpt(
                b"  upstream\r\n\tfailed \x1b[31mred\x1b[0m\n\n",
                "502 Bad Gateway"
            ),
            "upstream failed [31mred [0m"
        );
        assert_eq!(excerpt(b"", "404 Not Found"), "");
    }

    #[test]
    fn text_that_reorders_or_breaks_what_follows_is_not_shown() {
        let reversed = "blob \u{202E}gnp.tahw\u{202C} not found\u{2066}x\u{2069}\u{200F}";
        assert_eq!(one_line(reversed), "blob gnp.tahw not found x");
        assert_eq!(printable("a\u{2028}b\u{061C}c"), "a b c");
        // Right-to-left text itself is text: only the controls go.
        assert_eq!(printable("שלום"), "שלום");
    }

    #[test]
    fn zero_width_characters_are_not_shown() {
        // Each made `a….example` read as the host `a.example`.
        for zero in ['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}'] {
            let host = format!("realm a{zero}.example");
            assert_eq!(printable(&host), "realm a .example", "{zero:?}");
            assert_eq!(one_line(&host), "realm a .example", "{zero:?}");
        }
        // Text around them that is no control stays as it is.
        assert_eq!(printable("日本/…·→🙂"), "日本/…·→🙂");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let long = "é".repeat(500);
        let shown = one_line(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN + 1);
        assert!(shown.ends_with('…'));
        let exact = "x".repeat(MAX_SHOWN);
        assert_eq!(one_line(&exact), exact, "not cut at exactly the limit");
        let spaced = format!("{} {}", "x".repeat(MAX_SHOWN - 1), "y".repeat(64 << 10));
        let shown = one_line(&spaced);
        assert_eq!(shown, format!("{}…", "x".repeat(MAX_SHOWN - 1)));
        let exact = format!("{} y", "x".repeat(MAX_SHOWN - 2));
        assert_eq!(one_line(&exact), exact, "not cut at exactly the limit");
    }
}

/// Error bodies as registries and token servers write them, generated: what they say is
/// shown on one printable line within its cap, and their codes read in order.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::fuzz::cases(1000))]

        #[test]
        fn oci_errors_read_as_they_say(
            errors in proptest::collection::vec(("[A-Z_]{1,12}", "[ -~]{0,30}"), 1..4),
            bom in any::<bool>(),
        ) {
            let json = serde_json::json!({
                "errors": errors
                    .iter()
                    .map(|(c, m)| serde_json::json!({"code": c, "message": m, "detail": {}}))
                    .collect::<Vec<_>>(),
            });
            let mut body = if bom { b"\xef\xbb\xbf".to_vec() } else { Vec::new() };
            body.extend(json.to_string().into_bytes());
            let codes: Vec<String> = errors.iter().map(|(c, _)| c.clone()).collect();
            prop_assert_eq!(error_codes(&body), codes);
            let said: Vec<String> = errors
                .iter()
                .map(|(c, m)| if m.is_empty() { c.clone() } else { format!("{c}: {m}") })
                .collect();
            prop_assert_eq!(error_detail(&body, "404 Not Found"), one_line(&said.join("; ")));
        }

        #[test]
        fn any_body_is_one_printable_line(
            body in prop_oneof![
                any::<Vec<u8>>(),
                any::<String>().prop_map(String::into_bytes),
                "(<html>|<TITLE[^>]{0,3}>|</title>|\\{\"errors\":\\[|\\{\"code\":\"|\"message\":|\\}|\\]|\"|[\\PC]{0,5}|\u{1b}\\[2J|\u{202e}){0,8}"
                    .prop_map(String::into_bytes),
            ],
        ) {
            for line in [error_detail(&body, "500"), excerpt(&body, "500")] {
                prop_assert!(!line.contains(hidden), "{:?}", line);
                prop_assert!(line.chars().count() <= MAX_SHOWN + 1, "{}", line.len());
            }
            let _ = error_codes(&body);
        }
    }
}
