//! Which proxy, if any, a destination goes through: the environment's variables read as
//! curl and Go's clients read them, `NO_PROXY`'s spellings, and proxies that cannot be used.

use std::sync::Arc;

use http::{HeaderValue, Uri};
use hyper_util::client::proxy::matcher::Matcher;

use super::{authority, with_port};

/// How to reach one destination.
#[derive(Debug, PartialEq)]
pub(super) enum Route {
    Direct,
    /// Through a `CONNECT` tunnel at `proxy`, with `auth` for `Proxy-Authorization`.
    Tunnel {
        proxy: Uri,
        auth: Option<HeaderValue>,
    },
    /// Plain http: requests go to `proxy` itself, which forwards them; `auth` goes along
    /// with each as `Proxy-Authorization`.
    Forward {
        proxy: Uri,
        auth: Option<HeaderValue>,
    },
    /// Through a SOCKS5 proxy (`proxy` is `http://host:port`, for the TCP connector).
    Socks {
        proxy: Uri,
        auth: Option<SocksAuth>,
    },
    /// The environment names a proxy this client cannot speak to.
    Unsupported(String),
}

/// A SOCKS5 user and password; the password never reaches a log or a message.
#[derive(Clone, PartialEq)]
pub(super) struct SocksAuth {
    pub(super) user: String,
    pub(super) password: String,
}

impl std::fmt::Debug for SocksAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SocksAuth({:?}, <password>)", self.user)
    }
}

/// Which proxy, if any, each destination goes through.
#[derive(Clone)]
pub struct Proxies {
    matcher: Arc<Matcher>,
    /// The same rules with every proxy the matcher cannot use (`ftp://…`, a typo, no URL
    /// at all) standing in as a placeholder: hyper-util's matcher drops such a proxy, and
    /// the destinations it was meant for would quietly go direct.
    unusable: Option<Arc<Unusable>>,
    /// `NO_PROXY` entries with a port (`registry.corp:5000`), which the matcher cannot
    /// hold: as hosts (a domain with its subdomains) reached directly on that port only.
    direct_on_port: Arc<Vec<(String, u16)>>,
}

impl std::fmt::Debug for Proxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The matcher holds the proxies' URLs with their users and passwords: none of it
        // is shown. The unusable settings are named by scheme, host and port only.
        let unusable = self.unusable.as_ref().map(|u| {
            u.named
                .iter()
                .map(|(_, setting)| setting.as_str())
                .collect::<Vec<_>>()
        });
        f.debug_struct("Proxies")
            .field("unusable", &unusable)
            .finish_non_exhaustive()
    }
}

struct Unusable {
    matcher: Matcher,
    /// Placeholder host to the proxy setting it stands for (scheme, host and port only).
    named: Vec<(String, String)>,
}

/// The proxy schemes hyper-util's matcher keeps (and no scheme, which means http).
const MATCHED_SCHEMES: [&str; 6] = ["http", "https", "socks4", "socks4a", "socks5", "socks5h"];

impl Proxies {
    /// The proxies the environment names (none when it names none).
    pub fn from_env() -> Proxies {
        Proxies::from_variables(|name| std::env::var(name).ok())
    }

    /// The proxies that `vars` names, asked for the environment's variables by name
    /// (`HTTPS_PROXY`, `https_proxy`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, …) and read as
    /// [`Proxies::from_env`] reads those: a program that embeds dist gives each
    /// [`Transport`](crate::transport::Transport) its own
    /// ([`TransportOptions::proxies`](crate::transport::TransportOptions::proxies)), the
    /// environment every client of the process shares unread and unchanged. A `vars` that
    /// names none (`|_| None`) reaches every host directly.
    ///
    /// ```
    /// use dist::transport::{proxy::Proxies, Transport, TransportOptions};
    ///
    /// let mut opts = TransportOptions::default();
    /// opts.proxies = Some(Proxies::from_variables(|name| match name {
    ///     "HTTPS_PROXY" => Some("http://proxy.corp:3128".to_string()),
    ///     "NO_PROXY" => Some("registry.corp,10.0.0.0/8".to_string()),
    ///     _ => None,
    /// }));
    /// let transport = Transport::new(opts)?;
    /// # let _ = transport; Ok::<_, dist::Error>(())
    /// ```
    pub fn from_variables(vars: impl Fn(&str) -> Option<String>) -> Proxies {
        // An empty variable counts as unset, as in curl and Go's clients: `HTTPS_PROXY=`
        // beside `https_proxy=http://proxy…` must not send everything direct, nor
        // `NO_PROXY=` beside `no_proxy=registry.corp` send that registry to the proxy.
        let var = |names: [&'static str; 2]| {
            names
                .iter()
                .find_map(|n| vars(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
                .unwrap_or((names[0], String::new()))
        };
        // A CGI program's HTTP_PROXY comes from a request header; the matcher ignores
        // every proxy then, and so does this.
        if vars("REQUEST_METHOD").is_some() {
            return Proxies::of_settings(("", ""), ("", ""), ("", ""), "");
        }
        let all = var(["ALL_PROXY", "all_proxy"]);
        let http = var(["HTTP_PROXY", "http_proxy"]);
        let https = var(["HTTPS_PROXY", "https_proxy"]);
        Proxies::of_settings(
            (all.0, &all.1),
            (http.0, &http.1),
            (https.0, &https.1),
            &var(["NO_PROXY", "no_proxy"]).1,
        )
    }

    /// Proxies given as values of the environment variables, for tests.
    #[cfg(test)]
    fn of(all: &str, https: &str, no: &str) -> Proxies {
        Proxies::of_values(all, "", https, no)
    }

    /// Proxies given as values of the upper-case variables, for tests.
    #[cfg(test)]
    fn of_values(all: &str, http: &str, https: &str, no: &str) -> Proxies {
        Proxies::of_settings(
            ("ALL_PROXY", all),
            ("HTTP_PROXY", http),
            ("HTTPS_PROXY", https),
            no,
        )
    }

    /// Proxies from the settings of ALL_PROXY, HTTP_PROXY and HTTPS_PROXY, each as the
    /// variable it was read from (either case) and its value, and from NO_PROXY's value.
    fn of_settings(
        all: (&str, &str),
        http: (&str, &str),
        https: (&str, &str),
        no: &str,
    ) -> Proxies {
        let (no, direct_on_port) = no_proxy_entries(no);
        let no = no.as_str();
        let variables = [all.0, http.0, https.0];
        let (all, http, https) = (
            &with_scheme(all.1),
            &with_scheme(http.1),
            &with_scheme(https.1),
        );
        let rules = |all: &str, http: &str, https: &str| {
            Matcher::builder()
                .all(all.to_string())
                .http(http.to_string())
                .https(https.to_string())
                .no(no.to_string())
                .build()
        };
        let mut named = Vec::new();
        let mut stand_in = |value: &str, which: &str, variable: &str| -> String {
            let login_or_path = at_after_a_slash(value);
            if value.trim().is_empty() || (usable(value) && !login_or_path) {
                return value.to_string();
            }
            let placeholder = format!("unusable-{which}.invalid");
            let shown = if login_or_path {
                format!(
                    "named by {variable} (an '@' after a '/': a '/' in its password goes \
                     percent-encoded, %2F)"
                )
            } else {
                shown_proxy(value, variable)
            };
            named.push((placeholder.clone(), shown));
            format!("http://{placeholder}")
        };
        let shadow = (
            stand_in(all, "all", variables[0]),
            stand_in(http, "http", variables[1]),
            stand_in(https, "https", variables[2]),
        );
        let unusable = (!named.is_empty()).then(|| {
            Arc::new(Unusable {
                matcher: rules(&shadow.0, &shadow.1, &shadow.2),
                named,
            })
        });
        Proxies {
            matcher: Arc::new(rules(all, http, https)),
            unusable,
            direct_on_port: Arc::new(direct_on_port),
        }
    }

    /// The unusable proxy setting that would have taken `dst`, if one would.
    fn unusable_for(&self, dst: &Uri) -> Option<String> {
        let unusable = self.unusable.as_ref()?;
        let intercept = unusable.matcher.intercept(dst)?;
        let host = intercept.uri().host()?;
        let (_, named) = unusable.named.iter().find(|(h, _)| h == host)?;
        Some(named.clone())
    }

    pub(super) fn route(&self, dst: &Uri) -> Route {
        let Some(host) = dst.host() else {
            return Route::Direct;
        };
        if crate::reference::is_loopback(host) || self.direct_on_port(dst) {
            return Route::Direct;
        }
        // Before the matcher: it takes ALL_PROXY's proxy for a destination whose own
        // variable (HTTPS_PROXY with a typo) it cannot use, and so did the fetch.
        if let Some(named) = self.unusable_for(dst) {
            return Route::Unsupported(named);
        }
        let Some(intercept) = self.matcher.intercept(dst) else {
            return Route::Direct;
        };
        let proxy = intercept.uri();
        // A URL the matcher parsed, so shown by scheme, host and port, never by variable.
        let named = || shown_proxy(&proxy.to_string(), "the environment");
        match proxy.scheme_str() {
            Some("http") => {}
            Some("socks5" | "socks5h") => {
                let address = format!(
                    "http://{}:{}",
                    proxy.host().unwrap_or_default(),
                    proxy.port_u16().unwrap_or(1080)
                );
                let Ok(address) = address.parse() else {
                    return Route::Unsupported(named());
                };
                let auth = intercept.raw_auth().map(|(user, password)| SocksAuth {
                    user: user.to_string(),
                    password: password.to_string(),
                });
                return Route::Socks {
                    proxy: address,
                    auth,
                };
            }
            _ => return Route::Unsupported(named()),
        }
        let mut auth = intercept.basic_auth().cloned();
        if let Some(a) = &mut auth {
            a.set_sensitive(true);
        }
        let proxy = proxy.clone();
        if dst.scheme_str() == Some("http") {
            Route::Forward { proxy, auth }
        } else {
            Route::Tunnel { proxy, auth }
        }
    }

    /// Whether a `NO_PROXY` entry with a port names `dst`.
    fn direct_on_port(&self, dst: &Uri) -> bool {
        let dst = with_port(dst);
        let host = dst.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.direct_on_port.iter().any(|(entry, port)| {
            // `.corp` is `corp` and its subdomains, as curl reads it and as the matcher
            // reads an entry without a port.
            let domain = entry.strip_prefix('.').unwrap_or(entry);
            Some(*port) == dst.port_u16()
                && (host.eq_ignore_ascii_case(domain) || ends_with_domain(host, domain))
        })
    }

    /// The proxy (`host:port`) that forwards requests to `dst`, if one does: its answers
    /// arrive as if they were the destination's.
    pub fn forwarding_proxy(&self, dst: &Uri) -> Option<String> {
        match self.route(dst) {
            Route::Forward { proxy, .. } => Some(authority(&with_port(&proxy))),
            _ => None,
        }
    }

    /// The `Proxy-Authorization` a request to `dst` carries: the proxy's credentials when
    /// the proxy forwards it (plain http), none when it goes direct or through a tunnel,
    /// where the credentials went with the `CONNECT` and the proxy must not see any more.
    pub fn forwarding_auth(&self, dst: &Uri) -> Option<HeaderValue> {
        match self.route(dst) {
            Route::Forward { auth, .. } => auth,
            _ => None,
        }
    }
}

/// `NO_PROXY` in the forms hyper-util's matcher reads, and apart the entries with a port
/// (host without brackets, port). Go's clients, and so docker, podman and containerd, read
/// `registry.corp:5000` (that port only), `[fd00::1]` and `*.corp` (as `.corp`) too; the
/// matcher took the first two for names no host has and ignored the third, and the
/// registries they named went through the proxy.
fn no_proxy_entries(no: &str) -> (String, Vec<(String, u16)>) {
    let mut plain = Vec::new();
    let mut with_port = Vec::new();
    for entry in no.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        // `*` is every host, as curl and Go's clients read it; the matcher holds it among
        // the names only, and a registry at an address went through the proxy.
        if entry == "*" {
            plain.extend(["*", "0.0.0.0/0", "::/0"].map(String::from));
            continue;
        }
        // An address or a network (`fd00::1`, `10.0.0.0/8`) has colons but no port.
        if entry.parse::<std::net::IpAddr>().is_ok() || entry.contains('/') {
            plain.push(entry.to_string());
            continue;
        }
        let (host, port) = match entry.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((addr, rest)) => (addr, rest.strip_prefix(':')),
                None => (entry, None),
            },
            None => match entry.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            },
        };
        let host = match host.strip_prefix("*.") {
            Some(domain) => format!(".{domain}"),
            None => host.to_string(),
        };
        match port.map(str::parse::<u16>) {
            Some(Ok(port)) => with_port.push((host, port)),
            // Not a port: kept as written, for the matcher to judge.
            Some(Err(_)) => plain.push(entry.to_string()),
            None => plain.push(host),
        }
    }
    (plain.join(","), with_port)
}

/// Whether `host` is a subdomain of `domain` (`a.registry.corp` of `registry.corp`).
fn ends_with_domain(host: &str, domain: &str) -> bool {
    host.len() > domain.len()
        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
}

/// A proxy setting with `http://` before it when it names no scheme, as curl and Go's
/// clients read `proxy.corp:3128/`, which the matcher cannot parse as it stands; and with
/// the characters that would end its user information escaped (see [`userinfo_escaped`]). A
/// scheme is read in lower case, as Go's clients and curl read it: `SOCKS5://` is
/// `socks5://`, where the matcher, and then dist, took it for a scheme of its own.
fn with_scheme(value: &str) -> String {
    let value = value.trim();
    match value.split_once("://") {
        _ if value.is_empty() => String::new(),
        Some((scheme, rest)) => {
            userinfo_escaped(&format!("{}://{rest}", scheme.to_ascii_lowercase()))
        }
        None => userinfo_escaped(&format!("http://{value}")),
    }
}

/// `value` with the characters of its user information that would end it written
/// percent-encoded: each `@` but the last, and `/`, `?` and `#`. A password is often
/// written as it is (`http://alice:p@ss@proxy.corp:3128`, `alice:2024#Secret@…`): Go's
/// clients (docker, podman, containerd) take the host after the last `@`, and so does the
/// URI parser, but hyper-util's matcher split the user information at the first, and sent
/// `alice:p` to the proxy, which refused it. A `/`, `?` or `#` ended the authority before
/// the `@`, and the user name was taken for the proxy's host and the password's start for
/// its port. So the user information runs to the last `@` of the setting, unless a `/`
/// ends a valid authority before it (`http://proxy.corp:3128/a@b`): that is a path, as
/// curl and Go read it, and the `@` in it made `b` the proxy and `proxy.corp:3128/a` the
/// credentials sent to it. Such a setting, as one whose password has a `/` after something
/// that reads as a host and port (`alice:1234/x@…`), is then refused (see
/// [`at_after_a_slash`]): that `/` goes percent-encoded.
fn userinfo_escaped(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_string();
    };
    // The authority as RFC 3986 ends it, when a path follows it and it is a valid one.
    let path = rest.find(['/', '?', '#']).filter(|&end| {
        let authority = &rest[..end];
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        // A port that is not a number (`alice:pa`) the parser takes, and leaves out.
        let whole = |a: http::uri::Authority| {
            a.host().len() + a.port().map_or(0, |p| p.as_str().len() + 1) == a.as_str().len()
        };
        rest.as_bytes()[end] == b'/'
            && !host.is_empty()
            && host.parse::<http::uri::Authority>().is_ok_and(whole)
    });
    let searched = path.map_or(rest, |end| &rest[..end]);
    match searched.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(['@', '/', '?', '#']) => {
            let mut escaped = String::with_capacity(userinfo.len() + 8);
            for c in userinfo.chars() {
                match c {
                    '@' => escaped.push_str("%40"),
                    '/' => escaped.push_str("%2F"),
                    '?' => escaped.push_str("%3F"),
                    '#' => escaped.push_str("%23"),
                    c => escaped.push(c),
                }
            }
            format!("{scheme}://{escaped}{}", &rest[userinfo.len()..])
        }
        _ => value.to_string(),
    }
}

/// Whether `value` (with its scheme, its user information escaped) holds an `@` after a
/// `/`: the end of a password holding a `/` after what reads as a host and port
/// (`alice:1234/s3cret@proxy.corp`), or a path's, which a proxy's URL has no use for.
/// Read as a path, as curl and Go read it, the user and password were the proxy's host
/// and port, looked up and shown in every message; read as a login, the host and path
/// went as credentials to what follows the `@`.
fn at_after_a_slash(value: &str) -> bool {
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    rest.find('/')
        .is_some_and(|slash| rest[slash..].contains('@'))
}

/// Whether hyper-util's matcher can use the proxy setting `value`.
fn usable(value: &str) -> bool {
    value.parse::<Uri>().is_ok_and(|uri| {
        // `http://:3128` parses: each fetch was tunnelled to a lookup of no name.
        crate::transport::names_a_server(&uri)
            && uri
                .scheme_str()
                .is_none_or(|s| MATCHED_SCHEMES.contains(&s))
    })
}

/// A proxy setting as a message may show it: scheme, host and port, never the user and
/// password its userinfo may hold; or only the `variable` that holds it and that it is not
/// a URL, since its credentials could be anywhere in it then.
fn shown_proxy(value: &str, variable: &str) -> String {
    match value.trim().parse::<Uri>() {
        Ok(uri) if crate::transport::bad_port(&uri) => {
            format!("{NAMED_BY}{variable} (not a URL: its port is no number up to 65535)")
        }
        Ok(uri) if uri.host().is_some_and(str::is_empty) => {
            format!("{NAMED_BY}{variable} (not a URL: it names no host)")
        }
        Ok(uri) if crate::transport::port_0(&uri) => {
            format!("{NAMED_BY}{variable} ({})", crate::reference::PORT_0)
        }
        Ok(uri) if uri.host().is_some() => {
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}",
                uri.scheme_str().unwrap_or("http"),
                uri.host().unwrap_or_default()
            )
        }
        _ => format!("{NAMED_BY}{variable} (not a URL)"),
    }
}

/// How [`shown_proxy`] begins a setting that is no URL, named by its variable alone.
pub(super) const NAMED_BY: &str = "named by ";

#[cfg(test)]
mod tests {
    use hyper_util::client::legacy::connect::HttpConnector;

    use super::*;
    use crate::transport::proxy::tests::uri;
    use crate::transport::proxy::ProxyConnector;

    /// The proxies' URLs carry their credentials; a service that logs its transport or
    /// connector with `{:?}` must not print them.
    #[test]
    fn debug_shows_no_proxy_credentials() {
        let p = Proxies::of_values(
            "http://alice:s3cret@proxy.corp:3128",
            "ftp://carol:ftp-pass@ftp.corp:21",
            "socks5://bob:hunter2@socks.corp:1080",
            "",
        );
        let connector = ProxyConnector::new(HttpConnector::new(), p.clone());
        let shown = format!("{p:?} {connector:?}");
        for secret in ["s3cret", "hunter2", "ftp-pass"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("ftp://ftp.corp:21"), "{shown}");
    }

    #[test]
    fn loopback_and_no_proxy_hosts_go_direct() {
        let p = Proxies::of("http://proxy.corp:3128", "", "internal.corp, 10.0.0.0/8");
        for dst in [
            "https://127.0.0.1:5000/v2/",
            "http://localhost:5000/v2/",
            "https://[::1]:443/v2/",
            "https://[0:0:0:0:0:0:0:1]/v2/",
            "http://LOCALHOST:5000/v2/",
            "https://registry.internal.corp/v2/",
            "https://10.1.2.3/v2/",
        ] {
            assert_eq!(p.route(&uri(dst)), Route::Direct, "{dst}");
        }
        let Route::Tunnel { proxy, auth } = p.route(&uri("https://registry-1.docker.io/v2/"))
        else {
            panic!("a public registry goes through the proxy");
        };
        assert_eq!(proxy.host(), Some("proxy.corp"));
        assert_eq!(auth, None);
    }

    /// `.corp` covers `corp` itself as well as its subdomains, as curl reads it (its leading
    /// dot is left off; Go's clients take it for subdomains only). The matcher does so for
    /// an entry without a port, but one with a port (`.corp:5000`) covered the subdomains
    /// only, and the same registry went direct or through the proxy by whether a port was
    /// written.
    #[test]
    fn a_domain_with_a_leading_dot_covers_the_domain_itself_with_or_without_a_port() {
        let direct = |no: &str, dst: &str| {
            Proxies::of("http://proxy.corp:3128", "", no).route(&uri(dst)) == Route::Direct
        };
        for (no, dst) in [
            (".corp", "https://corp/v2/"),
            (".corp:5000", "https://corp:5000/v2/"),
            (".corp:5000", "https://CORP:5000/v2/"),
            ("*.corp:5000", "https://corp:5000/v2/"),
            (".corp:5000", "https://registry.corp:5000/v2/"),
        ] {
            assert!(direct(no, dst), "{no} {dst}");
        }
        for (no, dst) in [
            (".corp:5000", "https://corp/v2/"),
            (".corp:5000", "https://xcorp:5000/v2/"),
            (".corp", "https://xcorp/v2/"),
        ] {
            assert!(!direct(no, dst), "{no} {dst}");
        }
    }

    /// The spellings Go's clients (docker, podman, containerd) read in `NO_PROXY`: a user
    /// whose registry they reach directly must not find dist sending it to the proxy.
    #[test]
    fn no_proxy_entries_with_ports_brackets_and_wildcards() {
        let direct = |no: &str, dst: &str| {
            Proxies::of("http://proxy.corp:3128", "", no).route(&uri(dst)) == Route::Direct
        };
        assert!(direct(
            "registry.corp:5000",
            "https://registry.corp:5000/v2/"
        ));
        assert!(direct(
            "registry.corp:5000",
            "https://a.REGISTRY.corp:5000/v2/"
        ));
        assert!(!direct("registry.corp:5000", "https://registry.corp/v2/"));
        assert!(!direct(
            "registry.corp:5000",
            "https://xregistry.corp:5000/v2/"
        ));
        assert!(direct("registry.corp:443", "https://registry.corp/v2/"));
        assert!(direct(".corp:5000", "https://registry.corp:5000/v2/"));
        assert!(direct("10.2.3.4:5000", "https://10.2.3.4:5000/v2/"));
        assert!(!direct("10.2.3.4:5000", "https://10.2.3.4:5001/v2/"));
        assert!(direct("[fd00::5]", "https://[fd00::5]:5000/v2/"));
        assert!(direct("[fd00::5]:5000", "https://[fd00::5]:5000/v2/"));
        assert!(!direct("[fd00::5]:5000", "https://[fd00::5]/v2/"));
        assert!(direct("fd00::5", "https://[fd00::5]:5000/v2/"));
        assert!(direct("fd00::/16", "https://[fd00::5]:5000/v2/"));
        assert!(direct("*.corp", "https://registry.corp/v2/"));
        assert!(!direct("*.corp", "https://registry.com/v2/"));
        assert!(direct("a.b, *.corp ,10.0.0.0/8", "https://10.9.9.9/v2/"));
        assert!(direct("*", "https://registry.com/v2/"));
        assert!(direct("*", "https://10.1.2.3:5000/v2/"));
        assert!(direct("a.b, * ", "https://[fd00::5]:5000/v2/"));
        assert!(!direct("", "https://registry.com/v2/"));
    }

    /// The proxies the environment `set` names.
    fn vars(set: &'static [(&'static str, &'static str)]) -> Proxies {
        Proxies::from_variables(move |name| {
            set.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn an_empty_variable_leaves_the_other_case_in_force() {
        let p = vars(&[
            ("HTTPS_PROXY", ""),
            ("https_proxy", "http://proxy.corp:3128"),
        ]);
        assert!(matches!(
            p.route(&uri("https://ghcr.io/v2/")),
            Route::Tunnel { .. }
        ));
        let p = vars(&[
            ("HTTPS_PROXY", "http://proxy.corp:3128"),
            ("NO_PROXY", " "),
            ("no_proxy", "registry.corp"),
        ]);
        assert_eq!(p.route(&uri("https://registry.corp/v2/")), Route::Direct);
        assert!(matches!(
            p.route(&uri("https://ghcr.io/v2/")),
            Route::Tunnel { .. }
        ));
        // Both set: the upper case wins, as in Go's clients and hyper-util's matcher.
        let p = vars(&[
            ("HTTPS_PROXY", "http://upper.corp:3128"),
            ("https_proxy", "http://lower.corp:3128"),
        ]);
        let Route::Tunnel { proxy, .. } = p.route(&uri("https://ghcr.io/v2/")) else {
            panic!("tunnelled");
        };
        assert_eq!(proxy.host(), Some("upper.corp"));
    }

    /// A setting that is not a URL cannot be shown (its credentials could be anywhere in
    /// it), so the message names the variable it came from: "named by the environment"
    /// left the user to search HTTPS_PROXY, https_proxy, HTTP_PROXY and ALL_PROXY alike.
    #[test]
    fn a_setting_that_is_not_a_url_is_named_by_its_variable_alone() {
        for (set, dst, variable) in [
            (
                &[("https_proxy", "alice:hunter 2@proxy.corp")][..],
                "https://ghcr.io/v2/",
                "https_proxy",
            ),
            (
                &[("HTTP_PROXY", "::nonsense::")][..],
                "http://registry.corp/v2/",
                "HTTP_PROXY",
            ),
            (
                &[("all_proxy", "bob:hunter 2@socks.corp")][..],
                "https://ghcr.io/v2/",
                "all_proxy",
            ),
        ] {
            let Route::Unsupported(named) = vars(set).route(&uri(dst)) else {
                panic!("{set:?} went direct");
            };
            assert_eq!(named, format!("named by {variable} (not a URL)"));
        }
    }

    /// A proxy of no host (`HTTPS_PROXY=:3128`, `http://:3128`): the URI parser takes the
    /// empty host for one, and each fetch tunnelled to a lookup of no name, failing as if
    /// the network were down. It is refused, named by its variable, as a setting that is no
    /// URL is.
    #[test]
    fn a_proxy_of_no_host_is_refused() {
        for value in [
            ":3128",
            "http://:3128",
            "socks5://:1080",
            "http://alice:s3cret@:3128",
        ] {
            let set: &'static [(&str, &str)] = Box::leak(Box::new([("HTTPS_PROXY", value)]));
            let Route::Unsupported(named) = vars(set).route(&uri("https://ghcr.io/v2/")) else {
                panic!("{value} was used");
            };
            assert!(named.contains("HTTPS_PROXY"), "{value}: {named}");
            assert!(named.contains("no host"), "{value}: {named}");
            assert!(!named.contains("s3cret"), "{value}: {named}");
        }
        // Named as the variable it was read from, in its own case.
        let p = vars(&[("https_proxy", "http://:3128")]);
        let Route::Unsupported(named) = p.route(&uri("https://ghcr.io/v2/")) else {
            panic!("used");
        };
        assert!(named.contains("https_proxy"), "{named}");
        // Refused for the requests it would carry only, as curl refuses it: a broken
        // HTTP_PROXY leaves https registries direct, or to their own proxy.
        let p = vars(&[("HTTP_PROXY", ":3128")]);
        assert_eq!(p.route(&uri("https://ghcr.io/v2/")), Route::Direct);
        assert!(matches!(
            p.route(&uri("http://reg.corp/v2/")),
            Route::Unsupported(_)
        ));
        let p = vars(&[
            ("ALL_PROXY", "http://:1080"),
            ("HTTPS_PROXY", "http://proxy.corp:3128"),
        ]);
        assert!(matches!(
            p.route(&uri("https://ghcr.io/v2/")),
            Route::Tunnel { .. }
        ));
    }

    /// Port 0, which no server listens on, was taken: each fetch failed as "connection
    /// refused" naming `:0`, and was retried. It is refused, named by its variable.
    #[test]
    fn a_proxy_of_port_0_is_refused_saying_so() {
        for value in ["http://alice:s3cret@proxy.corp:0", "socks5://proxy.corp:0"] {
            let set: &'static [(&str, &str)] = Box::leak(Box::new([("HTTPS_PROXY", value)]));
            let Route::Unsupported(named) = vars(set).route(&uri("https://ghcr.io/v2/")) else {
                panic!("{value} was used");
            };
            assert!(named.contains("HTTPS_PROXY"), "{value}: {named}");
            assert!(
                named.contains("no server listens on port 0"),
                "{value}: {named}"
            );
            assert!(!named.contains("s3cret"), "{value}: {named}");
        }
    }

    /// A proxy URL whose port is no port number (`:3128x`, `:99999`, `:notaport`) was
    /// taken as the scheme's default port, 80: the run connected to another proxy than
    /// the one meant, its credentials along, and failed as if that proxy were down. It is
    /// refused, named by its variable, as a setting that is not a URL is.
    #[test]
    fn a_proxy_port_that_is_no_number_is_refused() {
        for value in [
            "http://alice:s3cret@proxy.corp:notaport",
            "http://proxy.corp:99999",
            "socks5://proxy.corp:3128x",
            "http://[fd00::1]:x",
        ] {
            let set: &'static [(&str, &str)] = Box::leak(Box::new([("HTTPS_PROXY", value)]));
            let Route::Unsupported(named) = vars(set).route(&uri("https://ghcr.io/v2/")) else {
                panic!("{value} was used");
            };
            assert!(named.contains("HTTPS_PROXY"), "{value}: {named}");
            assert!(named.contains("port"), "{value}: {named}");
            assert!(!named.contains("s3cret"), "{value}: {named}");
        }
        for value in [
            "http://proxy.corp:3128",
            "http://proxy.corp",
            "http://[fd00::1]:3128",
        ] {
            let set: &'static [(&str, &str)] = Box::leak(Box::new([("HTTPS_PROXY", value)]));
            let route = vars(set).route(&uri("https://ghcr.io/v2/"));
            assert!(matches!(route, Route::Tunnel { .. }), "{value}");
        }
    }

    /// The proxy and `Proxy-Authorization` that `HTTPS_PROXY=setting` tunnels
    /// `https://ghcr.io` through.
    fn tunnel_for(setting: &str) -> (Uri, Option<HeaderValue>) {
        match Proxies::of("", setting, "").route(&uri("https://ghcr.io/v2/")) {
            Route::Tunnel { proxy, auth } => (proxy, auth),
            other => panic!("{setting}: not tunnelled: {other:?}"),
        }
    }

    #[test]
    fn credentials_in_the_proxy_url_become_sensitive_basic_auth() {
        let setting = "http://alice:s3cret@proxy.corp:3128";
        let auth = tunnel_for(setting).1.expect("tunnelled with credentials");
        assert!(auth.is_sensitive());
        assert_eq!(auth.to_str().unwrap(), "Basic YWxpY2U6czNjcmV0");
        // HTTPS_PROXY alone leaves plain-http destinations direct, as curl does.
        assert_eq!(
            Proxies::of("", setting, "").route(&uri("http://registry.corp:5000/v2/")),
            Route::Direct
        );
    }

    /// A password with an `@` in it, written as it is: Go's clients (docker, podman,
    /// containerd) split the user information at the last `@`, so the same setting must
    /// reach the proxy with the same password here, not a part of it.
    #[test]
    fn a_password_holding_an_at_sign_is_sent_whole() {
        for setting in [
            "http://alice:p@ss@proxy.corp:3128",
            "alice:p@ss@proxy.corp:3128/",
        ] {
            let (proxy, auth) = tunnel_for(setting);
            let auth = auth.unwrap_or_else(|| panic!("{setting}: tunnelled with credentials"));
            // alice:p@ss
            assert_eq!(
                auth.to_str().unwrap(),
                "Basic YWxpY2U6cEBzcw==",
                "{setting}"
            );
            assert_eq!(proxy.authority().unwrap().as_str(), "proxy.corp:3128");
        }
        let p = Proxies::of("socks5h://bob:hun@ter2@socks.corp:1080", "", "");
        let Route::Socks {
            auth: Some(auth), ..
        } = p.route(&uri("https://quay.io/v2/"))
        else {
            panic!("socks with credentials");
        };
        assert_eq!(
            (auth.user.as_str(), auth.password.as_str()),
            ("bob", "hun@ter2")
        );
    }

    /// A password with `#`, `/` or `?` in it, written as it is, as generated passwords
    /// often are: read as the end of the authority, it made the user name the proxy's
    /// host and the password's first part its port, which dist connected to and named in
    /// its messages (`cannot connect to the proxy alice:2024`).
    #[test]
    fn a_password_holding_a_hash_slash_or_question_mark_is_sent_whole() {
        for (setting, password) in [
            ("http://alice:2024#Secret@proxy.corp:3128", "2024#Secret"),
            ("http://alice:pa/ss@proxy.corp:3128/", "pa/ss"),
            ("alice:pa?s#s@proxy.corp:3128", "pa?s#s"),
            ("http://alice:p@s#s@proxy.corp:3128", "p@s#s"),
        ] {
            let (proxy, auth) = tunnel_for(setting);
            let auth = auth.unwrap_or_else(|| panic!("{setting}: tunnelled with credentials"));
            assert_eq!(authority(&proxy), "proxy.corp:3128", "{setting}");
            let want = format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("alice:{password}")
                )
            );
            assert_eq!(auth.to_str().unwrap(), want, "{setting}");
        }
        let p = Proxies::of("socks5h://bob:hun/ter#2@socks.corp:1080", "", "");
        let Route::Socks {
            proxy,
            auth: Some(auth),
        } = p.route(&uri("https://quay.io/v2/"))
        else {
            panic!("socks with credentials");
        };
        assert_eq!(proxy, uri("http://socks.corp:1080"));
        assert_eq!(auth.password, "hun/ter#2");
        // No user information: a path is a path, whatever it holds.
        let (proxy, auth) = tunnel_for("http://proxy.corp:3128/");
        assert_eq!(auth, None, "tunnelled without credentials");
        assert_eq!(authority(&proxy), "proxy.corp:3128");
    }

    /// An `@` after a `/` that follows a valid host and port ends a password holding a
    /// `/` (`http://alice:1234/s3cret@proxy.corp:3128`) as often as it is the path's: read
    /// as curl and Go read it, `alice:1234` was the proxy, looked up, connected to and
    /// named in each message, user and password; read as a login, `http://proxy.corp/a@b`
    /// sent `proxy.corp/a` to `b` as credentials. Either is refused, named by its variable.
    #[test]
    fn an_at_sign_after_a_slash_in_a_proxy_setting_is_refused_unshown() {
        for setting in [
            "http://alice:1234/s3cret@proxy.corp:3128",
            "alice:1234/s3cret@proxy.corp:3128",
            "http://proxy.corp:3128/a@b",
            "http://alice@proxy.corp:3128/a@b",
            "socks5h://alice:1234/s3cret@socks.corp:1080",
        ] {
            let Route::Unsupported(named) =
                Proxies::of("", setting, "").route(&uri("https://ghcr.io/v2/"))
            else {
                panic!("{setting}: not refused");
            };
            assert!(
                named.starts_with("named by HTTPS_PROXY"),
                "{setting}: {named}"
            );
            assert!(
                !named.contains("alice") && !named.contains("1234"),
                "{named}"
            );
        }
        // A password holding '/' before a host that is no valid one is read as a login.
        let (proxy, auth) = tunnel_for("http://alice:s3/cret@proxy.corp:3128");
        assert_eq!(proxy.host(), Some("proxy.corp"));
        assert!(auth.is_some());
        // And a '/' with no '@' after it is a path, whatever it holds.
        assert_eq!(
            tunnel_for("http://proxy.corp:3128/a").0.host(),
            Some("proxy.corp")
        );
    }

    #[test]
    fn plain_http_is_forwarded_with_the_credentials_on_each_request() {
        let p = Proxies::of("http://bob:pw@proxy.corp:3128", "", "");
        let Route::Forward { proxy, auth } = p.route(&uri("http://registry.corp:5000/v2/")) else {
            panic!("plain http goes to the proxy in absolute form");
        };
        assert_eq!(proxy.host(), Some("proxy.corp"));
        assert_eq!(auth.unwrap().to_str().unwrap(), "Basic Ym9iOnB3");
        let forwarded = p.forwarding_auth(&uri("http://registry.corp:5000/v2/x"));
        assert!(forwarded.unwrap().is_sensitive());
        assert_eq!(
            p.forwarding_proxy(&uri("http://registry.corp:5000/v2/x"))
                .as_deref(),
            Some("proxy.corp:3128")
        );
        assert_eq!(p.forwarding_proxy(&uri("https://ghcr.io/v2/")), None);
        // Through a tunnel the credentials went with CONNECT; the requests inside carry none.
        assert!(matches!(
            p.route(&uri("https://ghcr.io/v2/")),
            Route::Tunnel { auth: Some(_), .. }
        ));
        assert_eq!(p.forwarding_auth(&uri("https://ghcr.io/v2/")), None);
        assert_eq!(p.forwarding_auth(&uri("http://127.0.0.1:5000/v2/")), None);
    }

    #[test]
    fn other_proxy_schemes_are_refused_without_their_credentials() {
        let p = Proxies::of("socks4://bob:hunter2@proxy.corp:1080", "", "");
        let Route::Unsupported(named) = p.route(&uri("https://quay.io/v2/")) else {
            panic!("socks4 is not supported");
        };
        assert_eq!(named, "socks4://proxy.corp:1080");
    }

    /// hyper-util's matcher drops a proxy it cannot use, and its destinations would go
    /// direct: a typo in `HTTPS_PROXY` must fail the fetch, not bypass the proxy.
    #[test]
    fn a_proxy_the_matcher_drops_is_refused_not_bypassed() {
        let p = Proxies::of_values("", "", "ftp://bob:hunter2@proxy.corp:21", "");
        let Route::Unsupported(named) = p.route(&uri("https://quay.io/v2/")) else {
            panic!("ftp:// went direct");
        };
        assert_eq!(named, "ftp://proxy.corp:21");
        // It was meant for https only, and loopback stays direct.
        assert_eq!(p.route(&uri("http://registry.corp/v2/")), Route::Direct);
        assert_eq!(p.route(&uri("https://127.0.0.1:5000/v2/")), Route::Direct);
        // NO_PROXY still sends a destination direct.
        let p = Proxies::of_values("ftp://proxy.corp:21", "", "", ".corp");
        assert_eq!(p.route(&uri("https://registry.corp/v2/")), Route::Direct);
        assert!(matches!(
            p.route(&uri("https://quay.io/v2/")),
            Route::Unsupported(_)
        ));
        // A typo in HTTPS_PROXY is not made good by ALL_PROXY's proxy.
        let p = Proxies::of_values(
            "socks5h://socks.corp:1080",
            "",
            "htps://proxy.corp:3128",
            "",
        );
        let Route::Unsupported(named) = p.route(&uri("https://quay.io/v2/")) else {
            panic!("ALL_PROXY's proxy took the https destination");
        };
        assert_eq!(named, "htps://proxy.corp:3128");
        assert!(matches!(
            p.route(&uri("http://registry.corp/v2/")),
            Route::Socks { .. }
        ));
        // Not a URL at all.
        let p = Proxies::of_values("", "::nonsense::", "", "");
        let Route::Unsupported(named) = p.route(&uri("http://registry.corp/v2/")) else {
            panic!("garbage went direct");
        };
        assert!(named.contains("not a URL"), "{named}");
        // A host without a scheme is http, as curl reads it, with a slash after it too.
        for setting in [
            "proxy.corp:3128",
            "proxy.corp:3128/",
            " bob:pw@proxy.corp:3128/ ",
        ] {
            let p = Proxies::of_values("", setting, setting, "");
            let Route::Forward { proxy, .. } = p.route(&uri("http://registry.corp/v2/")) else {
                panic!("{setting:?} forwards plain http");
            };
            assert_eq!(authority(&proxy), "proxy.corp:3128", "{setting:?}");
            assert!(
                matches!(p.route(&uri("https://ghcr.io/v2/")), Route::Tunnel { .. }),
                "{setting:?} tunnels https"
            );
        }
    }

    /// A scheme is case-insensitive (RFC 3986, 3.1), as Go's clients and curl read it:
    /// `SOCKS5://` was refused as a proxy dist does not speak, naming `SOCKS5://` as such.
    #[test]
    fn a_proxy_scheme_in_capitals_is_the_same_scheme() {
        let p = Proxies::of("SOCKS5h://bob:hunter2@socks.corp:1080", "", "");
        let Route::Socks { proxy, auth } = p.route(&uri("https://quay.io/v2/")) else {
            panic!("SOCKS5h:// is socks5h://");
        };
        assert_eq!(proxy, uri("http://socks.corp:1080"));
        assert_eq!(auth.unwrap().password, "hunter2");
        let p = Proxies::of("", "HTTP://alice:s3cret@proxy.corp:3128", "");
        assert!(matches!(
            p.route(&uri("https://quay.io/v2/")),
            Route::Tunnel { auth: Some(_), .. }
        ));
    }

    #[test]
    fn socks5_proxies_carry_both_schemes_with_a_hidden_password() {
        for scheme in ["socks5", "socks5h"] {
            let p = Proxies::of(&format!("{scheme}://bob:hunter2@proxy.corp"), "", "");
            for dst in ["https://quay.io/v2/", "http://registry.corp:5000/v2/"] {
                let Route::Socks { proxy, auth } = p.route(&uri(dst)) else {
                    panic!("{scheme} carries {dst}");
                };
                assert_eq!(proxy, uri("http://proxy.corp:1080"), "the default port");
                let auth = auth.unwrap();
                assert_eq!(
                    (auth.user.as_str(), auth.password.as_str()),
                    ("bob", "hunter2")
                );
                assert!(!format!("{auth:?}").contains("hunter2"));
                assert_eq!(p.forwarding_auth(&uri(dst)), None, "nothing to forward");
            }
        }
    }
}

/// `NO_PROXY` as users write it, generated: each spelling that names a destination sends
/// it direct, wherever it stands in the list and in whatever case; one that names
/// another host leaves it to the proxy; and no setting panics.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::transport::proxy::tests::uri;

    /// A destination (URL, port) and the `NO_PROXY` entries that each name it.
    fn named() -> impl Strategy<Value = (String, Vec<String>)> {
        let name = ("[a-z][a-z0-9-]{0,6}", "[a-z]{1,6}(\\.[a-z]{2,3})?", 1u16..).prop_map(
            |(label, domain, port)| {
                let host = format!("{label}.{domain}");
                let entries = [
                    host.clone(),
                    host.to_ascii_uppercase(),
                    domain.clone(),
                    format!(".{domain}"),
                    format!("*.{domain}"),
                    format!("{host}:{port}"),
                    format!(".{domain}:{port}"),
                    format!("*.{}:{port}", domain.to_ascii_uppercase()),
                ];
                (format!("https://{host}:{port}/v2/"), entries.to_vec())
            },
        );
        let v4 = (
            (1u8..224).prop_filter("loopback goes direct anyway", |a| *a != 127),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            1u16..,
        )
            .prop_map(|(a, b, c, d, port)| {
                let ip = format!("{a}.{b}.{c}.{d}");
                let entries = [
                    ip.clone(),
                    format!("{ip}:{port}"),
                    format!("{a}.{b}.{c}.0/24"),
                    format!("{a}.0.0.0/8"),
                    format!("{ip}/32"),
                ];
                (format!("https://{ip}:{port}/v2/"), entries.to_vec())
            });
        let v6 = (any::<u16>(), 1u16..).prop_map(|(n, port)| {
            let ip = format!("fd00::{n:x}");
            let entries = [
                ip.clone(),
                format!("[{ip}]"),
                format!("[{ip}]:{port}"),
                "fd00::/8".to_string(),
                format!("{ip}/128"),
            ];
            (format!("https://[{ip}]:{port}/v2/"), entries.to_vec())
        });
        prop_oneof![name, v4, v6]
    }

    /// Entries that name none of the destinations [`named`] makes.
    fn others() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(
            prop_oneof![
                "[a-z]{1,6}\\.elsewhere",
                Just(".elsewhere".to_string()),
                Just("*.elsewhere:443".to_string()),
                Just("240.0.0.0/8".to_string()),
                Just("[fe80::1]:5000".to_string()),
                Just(String::new()),
            ],
            0..4,
        )
    }

    proptest! {
        #![proptest_config(crate::fuzz::cases(300))]

        #[test]
        fn an_entry_naming_the_destination_sends_it_direct(
            ((dst, entries), pick) in (named(), any::<prop::sample::Index>()),
            before in others(),
            after in others(),
            pad in "[ \t]{0,2}",
        ) {
            let entry = pick.get(&entries);
            let list: Vec<String> = before
                .iter()
                .chain([&format!("{pad}{entry}{pad}")])
                .chain(&after)
                .cloned()
                .collect();
            let no = list.join(",");
            let p = Proxies::of("http://proxy.corp:3128", "", &no);
            prop_assert_eq!(p.route(&uri(&dst)), Route::Direct, "NO_PROXY={} {}", no, dst);
            let p = Proxies::of("http://proxy.corp:3128", "", &others_only(&before, &after));
            let proxied = matches!(p.route(&uri(&dst)), Route::Tunnel { .. });
            prop_assert!(proxied, "NO_PROXY={:?} {}", before, dst);
        }

        #[test]
        fn no_setting_panics(
            all in "[a-zA-Z0-9:/@.%\\[\\]#?*-]{0,30}",
            https in any::<String>(),
            no in "[a-z0-9.:,*/\\[\\] -]{0,30}",
            dst in "https?://[a-z0-9.:\\[\\]]{1,20}/",
        ) {
            let p = Proxies::of(&all, &https, &no);
            if let Ok(dst) = dst.parse::<Uri>() {
                let _ = p.route(&dst);
                let _ = p.forwarding_auth(&dst);
            }
        }
        /// A proxy's user and password reach it as written, whatever they hold of `@`,
        /// `?`, `#` and `:` (a password is often pasted unescaped); the proxy is the host
        /// after the last `@`.
        #[test]
        fn a_login_reaches_the_proxy_whole(
            user in "[a-zA-Z0-9._@?#-]{1,8}",
            password in "[a-zA-Z0-9._@?#:!$*-]{1,10}",
            scheme in prop_oneof![Just("http://"), Just("HTTP://"), Just("")],
        ) {
            let setting = format!("{scheme}{user}:{password}@proxy.corp:3128");
            let p = Proxies::of(&setting, "", "");
            let route = p.route(&uri("https://ghcr.io/v2/"));
            let Route::Tunnel { proxy, auth } = &route else {
                return Err(TestCaseError::fail(format!("{setting}: {route:?}")));
            };
            prop_assert_eq!(proxy.host(), Some("proxy.corp"), "{}", setting);
            prop_assert_eq!(proxy.port_u16(), Some(3128));
            use base64::Engine as _;
            let sent = auth.as_ref().unwrap().to_str().unwrap();
            let login = base64::engine::general_purpose::STANDARD
                .decode(sent.strip_prefix("Basic ").unwrap())
                .unwrap();
            prop_assert_eq!(String::from_utf8(login).unwrap(), format!("{user}:{password}"));
        }
    }

    fn others_only(before: &[String], after: &[String]) -> String {
        before
            .iter()
            .chain(after)
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    }
}
