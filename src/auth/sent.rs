//! The secrets a request carried, to be kept out of what its server answered: a server
//! that echoes the request back in its error (a gateway's or debugging proxy's dump of
//! the request, a token service repeating the password it refused) must not have dist
//! print the credential in that error.

use base64::Engine;
use http::HeaderValue;

use super::credentials::Credential;

/// Shorter secrets are not taken out of a server's words: a password of a letter or two,
/// hidden wherever it stands as a word, would be told by the words hidden (every `a`,
/// every `1`), and is guessed in a few hundred tries anyway. One of 3 characters is hidden
/// as a word ([`WHOLE_WORD_BELOW`]): shown, it was the password whole.
const MIN_HIDDEN: usize = 3;

/// Secrets shorter than this are hidden only where they stand as a word of their own: a
/// short password is often part of ordinary words (`test` of `latest`, `pass` of
/// `password`), which hidden everywhere garbled the server's message. Tokens and the
/// Basic `user:password` in base64 are longer, and hidden wherever they appear.
const WHOLE_WORD_BELOW: usize = 8;

/// The query parameters of the token protocol (distribution's token and OAuth2 specs)
/// and of dist's own requests (`ns`, and the tag list's `n` and `last`): none names a
/// secret, and their values are words a server's error repeats (`registry.docker.io`,
/// `repository:team/app:pull`).
const PUBLIC_PARAMETERS: [&str; 8] = [
    "service",
    "scope",
    "account",
    "client_id",
    "offline_token",
    "ns",
    "n",
    "last",
];

/// The secrets one request sent, in the forms a server may echo them in.
#[derive(Default)]
pub(crate) struct Sent(Vec<String>);

impl Sent {
    /// What an `Authorization` header carries: its token or its Basic `user:password` in
    /// base64, and the password that decodes from that.
    pub(crate) fn header(header: Option<&HeaderValue>) -> Sent {
        let mut sent = Sent::default();
        let Some(text) = header.and_then(|h| h.to_str().ok()) else {
            return sent;
        };
        let (scheme, secret) = text.split_once(' ').unwrap_or(("", text));
        let secret = secret.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(secret);
            let decoded = decoded.ok().and_then(|d| String::from_utf8(d).ok());
            if let Some((_, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                sent.add(password);
            }
        }
        sent.add(secret);
        sent
    }

    /// Adds what another header holding credentials carries (a forwarding proxy's
    /// `Proxy-Authorization`, which reads as an `Authorization` does).
    pub(crate) fn extend_header(&mut self, header: Option<&HeaderValue>) {
        self.0.extend(Sent::header(header).0);
    }

    /// What a token request trading `credential` sends of it.
    pub(crate) fn credential(credential: Option<&Credential>) -> Sent {
        match credential {
            Some(Credential::Basic { .. }) => {
                let header = credential.and_then(Credential::basic_header);
                let header = header.and_then(|h| HeaderValue::from_str(&h).ok());
                Sent::header(header.as_ref())
            }
            Some(Credential::IdentityToken(t) | Credential::RegistryToken(t)) => {
                let mut sent = Sent::default();
                sent.add(t);
                // A refresh token goes in a form, which a server may echo as it came: a
                // base64 token's `+`, `/` and `=` written `%2B`, `%2F` and `%3D`.
                sent.add(&super::token::form_encoded(t));
                sent
            }
            None => Sent::default(),
        }
    }

    /// Adds the values of `headers` a user configured for the host (`hosts.toml`'s
    /// `header`), which may be keys as well: one written as an `Authorization` is
    /// (`Bearer KEY`, `Basic BASE64`) hides its key, or its password, on its own too.
    pub(crate) fn extend_values(&mut self, headers: &http::HeaderMap) {
        for value in headers.values() {
            let Ok(text) = value.to_str() else {
                continue;
            };
            self.add(text.trim());
            // Read so only when it names Basic or Bearer: the last word of any other
            // value (`dist custom-agent`) would be hidden out of the server's words too.
            let scheme = text.trim().split(' ').next().unwrap_or_default();
            if ["basic", "bearer"]
                .iter()
                .any(|s| scheme.eq_ignore_ascii_case(s))
            {
                self.extend_header(Some(value));
            }
        }
    }

    /// Adds the values of `url`'s query, as written and percent-decoded: the query of a
    /// pre-signed URL a redirect led to (`X-Amz-Signature`, Azure's `sig`) or of a token
    /// realm (`?token=…`) is a credential, which the server answering it may echo (a
    /// storage service's `SignatureDoesNotMatch`, a gateway's dump of the request line).
    /// Only a URL dist was sent to: the queries dist writes itself (`?ns=`, `?n=`) name
    /// no secret, and hidden they would garble the server's words about them.
    ///
    /// Left out, for the same reason: the values of the parameters the token protocol and
    /// dist name ([`PUBLIC_PARAMETERS`]: a realm's `?service=registry.docker.io`, the
    /// `scope` a redirect kept), and those `asked` (the URL dist wrote, which it shows
    /// itself) already holds: a digest or repository name in the target's query.
    pub(crate) fn extend_query(&mut self, url: &http::Uri, asked: &str) {
        let Some(query) = url.query() else {
            return;
        };
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if PUBLIC_PARAMETERS.contains(&percent_decoded(key).to_ascii_lowercase().as_str()) {
                continue;
            }
            let decoded = percent_decoded(value);
            if asked.contains(value) || asked.contains(&decoded) {
                continue;
            }
            if decoded != value {
                self.add(&decoded);
            }
            self.add(value);
        }
    }

    fn add(&mut self, secret: &str) {
        if secret.chars().count() < MIN_HIDDEN {
            return;
        }
        // As a JSON string writes it: a JSON body that names no message dist reads is
        // shown as it came, escapes and all (`\/` for a `/` of base64, `\"`, `\\`).
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json
            .get(1..json.len().saturating_sub(1))
            .unwrap_or_default();
        // Go's `encoding/json` (distribution, Harbor) also writes `<`, `>` and `&` as
        // `\u003c`, `\u003e` and `\u0026`; Python's `json.dumps`, by default, all but ASCII as
        // `\uXXXX`.
        let go = json
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026");
        let python = ascii_escaped(json);
        // An HTML error page shows its title as written, entities and all: a gateway's
        // page repeating the password (`pa&amp;ss` for `pa&ss`).
        let forms = [json.to_string(), json.replace('/', "\\/"), go, python];
        for escaped in forms.into_iter().chain(html_escaped(secret)) {
            if escaped != secret && !self.0.contains(&escaped) {
                self.0.push(escaped);
            }
        }
        self.0.push(secret.to_string());
    }

    /// `text` with every secret sent shown as `<redacted>`.
    pub(crate) fn hide(&self, text: &str) -> String {
        // Longest first: a password is part of no token, but a token may hold it.
        let mut secrets: Vec<&String> = self.0.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
            .into_iter()
            .fold(text.to_string(), |text, s| hidden(&text, s))
    }

    /// Whether nothing was sent to hide.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `secret` as HTML writes text: `&`, `<` and `>` as entities, and the quotes as
/// Python's `html.escape` writes them (`&quot;`, `&#x27;`) and as Go's `html` package does
/// (`&#34;`, `&#39;`); and as Go's `html/template` does, which also writes `+` as `&#43;`
/// (base64's, in a token or a Basic header).
fn html_escaped(secret: &str) -> [String; 3] {
    let base = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let go = base.replace('"', "&#34;").replace('\'', "&#39;");
    [
        base.replace('"', "&quot;").replace('\'', "&#x27;"),
        go.replace('+', "&#43;"),
        go,
    ]
}

/// `value` of a query with its `%XX` escapes and form `+`s (spaces) undone; an escape that
/// is not one, or bytes that decode to no UTF-8, as written.
fn percent_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_string())
}

/// `json` with every character past ASCII written `\uXXXX` (UTF-16 units), as a JSON
/// writer keeping to ASCII writes it.
fn ascii_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        for unit in c.encode_utf16(&mut [0; 2]) {
            out.push_str(&format!("\\u{unit:04x}"));
        }
    }
    out
}

/// `text` with `secret` shown as `<redacted>` where it appears, or only where it stands
/// as a word of its own when it is short ([`WHOLE_WORD_BELOW`]).
fn hidden(text: &str, secret: &str) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let whole_words = secret.chars().count() < WHOLE_WORD_BELOW;
    let mut out = String::with_capacity(text.len());
    let mut kept = 0;
    let mut from = 0;
    while let Some(n) = text[from..].find(secret).filter(|_| !secret.is_empty()) {
        let at = from + n;
        let end = at + secret.len();
        let glued = |edge: Option<char>, outside: Option<char>| {
            edge.is_some_and(word) && outside.is_some_and(word)
        };
        if whole_words
            && (glued(secret.chars().next(), text[..at].chars().next_back())
                || glued(secret.chars().next_back(), text[end..].chars().next()))
        {
            // Looked for again from its next character, not past it: it may overlap one
            // that stands as a word (`x.y.x` glued in `wx.y.x.y.x`, then on its own),
            // shown when the search went on past the first.
            from = at + text[at..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        out.push_str(&text[kept..at]);
        out.push_str("<redacted>");
        kept = end;
        from = end;
    }
    out.push_str(&text[kept..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_basic_header_hides_its_base64_and_its_password() {
        let header = HeaderValue::from_static("Basic YWxpY2U6czNjcmV0LXB3");
        let sent = Sent::header(Some(&header));
        assert_eq!(
            sent.hide("got Basic YWxpY2U6czNjcmV0LXB3 for alice:s3cret-pw"),
            "got Basic <redacted> for alice:<redacted>"
        );
        let bearer = HeaderValue::from_static("Bearer eyJ0.eyJ1.c2ln");
        let sent = Sent::header(Some(&bearer));
        assert_eq!(
            sent.hide("token eyJ0.eyJ1.c2ln expired"),
            "token <redacted> expired"
        );
        // A password of a letter would cut every word with that letter.
        let short = Credential::Basic {
            username: "u".into(),
            password: "e".into(),
        };
        let sent = Sent::credential(Some(&short));
        assert_eq!(sent.hide("user u refused"), "user u refused");
        assert!(Sent::header(None).is_empty());
    }

    /// A short password is hidden where the server repeats it, but not out of the words
    /// that hold it: the message stays readable.
    #[test]
    fn a_short_password_is_hidden_as_a_word_only() {
        let short = Credential::Basic {
            username: "alice".into(),
            password: "test".into(),
        };
        let sent = Sent::credential(Some(&short));
        assert_eq!(
            sent.hide("manifest latest unknown; password test refused (\"test\")"),
            "manifest latest unknown; password <redacted> refused (\"<redacted>\")"
        );
        assert_eq!(sent.hide("test:testing"), "<redacted>:testing");
        // A long one is hidden wherever it is, glued to other words or not.
        let long = Credential::IdentityToken("s3cretToken".into());
        let sent = Sent::credential(Some(&long));
        assert_eq!(
            sent.hide("refresh_token%3Ds3cretTokenXYZ"),
            "refresh_token%3D<redacted>XYZ"
        );
    }

    /// A JSON body that names no message is shown as it came: the secrets in it, as
    /// JSON escapes them, are hidden too.
    #[test]
    fn a_secret_escaped_by_json_is_hidden() {
        // `alice:pa/ss"wo\rd?>`, whose base64 holds a `/`.
        let secret = Credential::Basic {
            username: "alice".into(),
            password: r#"pa/ss"wo\rd?>"#.into(),
        };
        let sent = Sent::credential(Some(&secret));
        let header = secret.basic_header().unwrap();
        let base64 = header.strip_prefix("Basic ").unwrap();
        assert!(base64.contains('/'), "{base64}");
        let body = format!(
            r#"{{"request":{{"authorization":"Basic {}","password":"pa\/ss\"wo\\rd?>"}}}}"#,
            base64.replace('/', "\\/")
        );
        let shown = crate::server_text::error_detail_hiding(body.as_bytes(), "400", &sent);
        assert_eq!(
            shown,
            r#"{"request":{"authorization":"Basic <redacted>","password":"<redacted>"}}"#
        );
    }

    /// JSON writers other than serde's escape more: Go's `<`, `>` and `&`, Python's all
    /// but ASCII. A body that names no message, shown as it came, hides the secret so
    /// written too.
    #[test]
    fn a_secret_escaped_by_go_or_python_json_is_hidden() {
        let secret = Credential::Basic {
            username: "alice".into(),
            password: "pa<ss>&wörd𝄞".into(),
        };
        let sent = Sent::credential(Some(&secret));
        for (writer, escaped) in [
            ("go", r"pa\u003css\u003e\u0026wörd𝄞"),
            ("python", r"pa<ss>&w\u00f6rd\ud834\udd1e"),
        ] {
            let body = format!(r#"{{"request":{{"password":"{escaped}"}}}}"#);
            let shown = crate::server_text::error_detail_hiding(body.as_bytes(), "400", &sent);
            assert_eq!(
                shown, r#"{"request":{"password":"<redacted>"}}"#,
                "{writer}"
            );
        }
    }

    /// An HTML error page's title is shown as written: a password it repeats, written
    /// with entities, is hidden so.
    #[test]
    fn a_secret_written_as_html_is_hidden() {
        let secret = Credential::Basic {
            username: "alice".into(),
            password: r#"pa&ss<"o'k">"#.into(),
        };
        let sent = Sent::credential(Some(&secret));
        for title in [
            "pa&amp;ss&lt;&quot;o&#x27;k&quot;&gt;",
            "pa&amp;ss&lt;&#34;o&#39;k&#34;&gt;",
        ] {
            let page = format!("<html><title>denied: {title}</title></html>");
            let shown = crate::server_text::error_detail_hiding(page.as_bytes(), "401", &sent);
            assert_eq!(shown, "denied: <redacted>", "{title}");
        }
        // Go's html/template writes `+` too, as base64 has it.
        let token = Credential::IdentityToken("ab+cd/ef==".into());
        let sent = Sent::credential(Some(&token));
        let page = "<html><title>refused ab&#43;cd/ef==</title></html>";
        let shown = crate::server_text::error_detail_hiding(page.as_bytes(), "401", &sent);
        assert_eq!(shown, "refused <redacted>");
    }

    /// A short password glued to a word where the server's text has it first, and on its
    /// own right after, overlapping it, is hidden where it stands on its own.
    #[test]
    fn a_short_password_overlapping_a_glued_one_is_hidden() {
        let sent = Sent::credential(Some(&Credential::Basic {
            username: "alice".into(),
            password: "x.y.x".into(),
        }));
        assert_eq!(sent.hide("wx.y.x.y.x"), "wx.y.<redacted>");
        assert_eq!(sent.hide("wx.y.x.y.xz x.y.x"), "wx.y.x.y.xz <redacted>");
    }

    /// A password of 3 characters is hidden where it stands as a word; one of 2 is not
    /// hidden at all, which would tell it by the words hidden.
    #[test]
    fn a_three_character_password_is_hidden_as_a_word() {
        let basic = |password: &str| Credential::Basic {
            username: "alice".into(),
            password: password.into(),
        };
        let sent = Sent::credential(Some(&basic("abc")));
        assert_eq!(
            sent.hide("password abc refused; abcd unknown"),
            "password <redacted> refused; abcd unknown"
        );
        let sent = Sent::credential(Some(&basic("ab")));
        assert_eq!(sent.hide("a b ab"), "a b ab");
    }

    #[test]
    fn a_configured_header_s_value_is_hidden() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k-8f1e2d"));
        let mut sent = Sent::default();
        sent.extend_values(&headers);
        assert_eq!(sent.hide("key k-8f1e2d unknown"), "key <redacted> unknown");
        // Written as an `Authorization` is: its key, or its password, echoed alone.
        let mut headers = http::HeaderMap::new();
        headers.insert("x-auth", HeaderValue::from_static("Bearer key-7c1a9e"));
        // `bob:pa55word-x`
        headers.insert(
            "x-basic",
            HeaderValue::from_static("Basic Ym9iOnBhNTV3b3JkLXg="),
        );
        headers.insert("user-agent", HeaderValue::from_static("dist custom-agent"));
        let mut sent = Sent::default();
        sent.extend_values(&headers);
        assert_eq!(
            sent.hide("bad key key-7c1a9e; user bob:pa55word-x; no custom-agent here"),
            "bad key <redacted>; user bob:<redacted>; no custom-agent here"
        );
    }

    /// A pre-signed URL's query values are hidden as the URL writes them and decoded (a
    /// storage service's error shows the credential's `/`s as such); a broken escape
    /// decodes to itself.
    #[test]
    fn a_url_s_query_values_are_hidden_as_written_and_decoded() {
        let url: http::Uri = "https://store.example/b?X-Amz-Credential=AKIA1%2F2026%2Fs3&\
                              X-Amz-Signature=f00dface99&sig=a%2Bb%2Bc%3D%3D&odd=%zz9%4"
            .parse()
            .unwrap();
        let mut sent = Sent::default();
        sent.extend_query(&url, "");
        assert_eq!(
            sent.hide("credential AKIA1/2026/s3 (AKIA1%2F2026%2Fs3), signature f00dface99"),
            "credential <redacted> (<redacted>), signature <redacted>"
        );
        assert_eq!(
            sent.hide("sig a+b+c== or a%2Bb%2Bc%3D%3D"),
            "sig <redacted> or <redacted>"
        );
        assert_eq!(percent_decoded("%zz9%4"), "%zz9%4");
        assert_eq!(percent_decoded("a+b%20c%e2%9c%93"), "a b c\u{2713}");
        let mut none = Sent::default();
        none.extend_query(&"https://store.example/b".parse().unwrap(), "");
        assert!(none.is_empty());
    }

    /// A realm's `?service=registry.docker.io` or `?account=`, and what a redirect's
    /// target repeats of the URL dist asked (the `scope` of a token request, a blob's
    /// digest, its repository's name), are no secret: hidden, they garbled the server's
    /// words about them (`service <redacted> unknown`). What the URL adds is hidden.
    #[test]
    fn public_parameters_and_what_dist_asked_are_not_hidden() {
        let realm: http::Uri = "https://auth.docker.io/token?service=registry.docker.io&\
                                Account=alice-bob&token=realm-key-1"
            .parse()
            .unwrap();
        let mut sent = Sent::default();
        sent.extend_query(&realm, "");
        assert_eq!(
            sent.hide("service registry.docker.io, account alice-bob: key realm-key-1"),
            "service registry.docker.io, account alice-bob: key <redacted>"
        );
        let asked = "https://reg.example/v2/team/app/blobs/sha256:abcd1234";
        let target: http::Uri = "https://cdn.example/x?digest=sha256%3Aabcd1234&\
                                 repo=team%2Fapp&sig=f00dface99"
            .parse()
            .unwrap();
        let mut sent = Sent::default();
        sent.extend_query(&target, asked);
        assert_eq!(
            sent.hide("blob sha256:abcd1234 (sha256%3Aabcd1234) of team%2Fapp: sig f00dface99"),
            "blob sha256:abcd1234 (sha256%3Aabcd1234) of team%2Fapp: sig <redacted>"
        );
    }
}
