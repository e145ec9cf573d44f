//! A pure parser for `WWW-Authenticate` (RFC 7235): challenges, their schemes and params.
//!
//! One header may carry several challenges (`Basic realm="r", Bearer realm="…",service="…"`)
//! and a response may carry several headers; [`parse`] handles one header value and callers
//! concatenate the results. Parameter names are case-insensitive and are lowercased;
//! quoted values are unescaped.

/// One challenge: a scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased scheme, e.g. `bearer` or `basic`.
    pub scheme: String,
    /// Parameters in order, names lowercased.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default()
    }

    /// Whether `name =` follows here, without consuming it.
    fn at_param(&self) -> bool {
        let mut j = self.i;
        let start = j;
        while self.s.get(j).copied().is_some_and(is_tchar) {
            j += 1;
        }
        if j == start {
            return false;
        }
        while matches!(self.s.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        // `token68` may end in '=' too, but then nothing but '=', ',' or the end follows.
        if self.s.get(j) != Some(&b'=') {
            return false;
        }
        let mut k = j;
        while self.s.get(k) == Some(&b'=') {
            k += 1;
        }
        k == j + 1 || !matches!(self.s.get(k), None | Some(b','))
    }

    fn value(&mut self) -> String {
        if self.peek() != Some(b'"') {
            // RFC 7235 allows only a token here, but some registries leave a realm URL
            // unquoted (`realm=https://host/token`): up to the next comma or space is what
            // they meant, where a token would stop at the `:` and lose the challenge.
            let start = self.i;
            while self
                .peek()
                .is_some_and(|b| !matches!(b, b',' | b' ' | b'\t'))
            {
                self.i += 1;
            }
            return String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        }
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Parses one `WWW-Authenticate` header value into its challenges. Malformed input yields
/// whatever could be understood; it never panics.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut c = Cursor {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        c.skip_ws_and_commas();
        let scheme = c.token();
        if scheme.is_empty() {
            // Garbage where a scheme should be: skip one byte and resynchronise.
            if c.peek().is_none() {
                break;
            }
            c.i += 1;
            continue;
        }
        let mut ch = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        c.skip_ws();
        if !c.at_param() {
            // token68 form (e.g. `Negotiate abc==`): keep it as an unnamed value.
            let start = c.i;
            while c.peek().is_some_and(|b| b != b',') {
                c.i += 1;
            }
            let t = String::from_utf8_lossy(&c.s[start..c.i]).trim().to_string();
            if !t.is_empty() {
                ch.params.push((String::new(), t));
            }
        }
        loop {
            c.skip_ws_and_commas();
            if !c.at_param() {
                break;
            }
            let name = c.token().to_ascii_lowercase();
            c.skip_ws();
            c.i += 1; // '='
            c.skip_ws();
            let value = c.value();
            ch.params.push((name, value));
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let v = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/redis:pull""#,
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].scheme, "bearer");
        assert_eq!(v[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(v[0].param("service"), Some("registry.docker.io"));
        assert_eq!(v[0].param("scope"), Some("repository:library/redis:pull"));
    }

    #[test]
    fn several_challenges_and_odd_spacing() {
        let v = parse(
            r#"Basic realm="a, b", BEARER Realm = "https://x/t" , service=svc,error="invalid_token""#,
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].scheme, "basic");
        assert_eq!(v[0].param("realm"), Some("a, b"));
        assert_eq!(v[1].scheme, "bearer");
        assert_eq!(v[1].param("realm"), Some("https://x/t"));
        assert_eq!(v[1].param("service"), Some("svc"));
        assert_eq!(v[1].param("error"), Some("invalid_token"));
    }

    #[test]
    fn escapes_and_token68() {
        let v = parse(r#"Negotiate abc==, Basic realm="say \"hi\"""#);
        assert_eq!(v[0].scheme, "negotiate");
        assert_eq!(v[0].params, vec![(String::new(), "abc==".to_string())]);
        assert_eq!(v[1].param("realm"), Some(r#"say "hi""#));
    }

    #[test]
    fn an_unquoted_realm_url_is_read_whole() {
        let v = parse("Bearer realm=https://auth.example:8443/token?a=b,service=reg.example");
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].param("realm"),
            Some("https://auth.example:8443/token?a=b")
        );
        assert_eq!(v[0].param("service"), Some("reg.example"));
        let v = parse(r#"Basic realm=Registry, Bearer realm=http://[::1]:5001/t scope="x""#);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].param("realm"), Some("Registry"));
        assert_eq!(v[1].param("realm"), Some("http://[::1]:5001/t"));
        assert_eq!(v[1].param("scope"), Some("x"));
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer =x",
            "é ü",
            "a=b=c",
        ] {
            let _ = parse(s);
        }
        assert_eq!(parse("Bearer")[0].scheme, "bearer");
    }
}
