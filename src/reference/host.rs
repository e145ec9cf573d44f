//! The host part of a locator: told from a path, checked, and whether it is this machine.

/// Whether the first component of a locator names a host, by the Docker reference
/// grammar: it holds a `.` or a `:` (a domain, an IP address, `host:port`, `[v6]`), or is
/// `localhost`. Anything else is a Docker Hub namespace (`myorg/app`). The component is
/// not checked to be a valid host name.
///
/// `localhost` in any case, as [`is_loopback`] takes it and as Docker does (any capital
/// makes a host there): read as a Docker Hub namespace, `LOCALHOST/app` was refused with
/// `docker.io/localhost/app` for its spelling, a registry nobody meant.
///
/// ```
/// use dist::reference::is_host;
/// for host in ["ghcr.io", "localhost", "LocalHost", "localhost:5000", "10.0.0.1", "[::1]"] {
///     assert!(is_host(host), "{host}");
/// }
/// assert!(!is_host("myorg"));
/// ```
pub fn is_host(component: &str) -> bool {
    component.contains('.')
        || component.contains(':')
        || component.eq_ignore_ascii_case("localhost")
}

/// Strips the port from `host[:port]` or `[v6]:port`.
pub(crate) fn host_without_port(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether `host` (`name`, `name:port`, `[v6]` or `[v6]:port`) is this machine: `localhost`
/// in any case, 127.0.0.0/8 or `::1` in any spelling, 127.0.0.0/8 mapped into IPv6
/// (`[::ffff:127.0.0.1]`, as Go's and so containerd's check counts it too). Loopback
/// registries are spoken to over plain HTTP, like Docker's built-in insecure exception for
/// 127.0.0.0/8, and never through a proxy.
pub fn is_loopback(host: &str) -> bool {
    let h = host_without_port(host);
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The longest label (a dot-separated part) a DNS name can hold, RFC 1035 2.3.4.
const MAX_LABEL: usize = 63;

pub(super) fn validate_host(host: &str) -> std::result::Result<(), String> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in host".to_string())?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("bad IPv6 address {addr:?}"))?;
        // URLs take `[::1]5000` for `[::1]` on the scheme's port, the rest unread: a
        // colon left out went to port 80 or 443 of the address.
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                format!(
                    "{after:?} after the IPv6 address; a port goes after a colon ([{addr}]:PORT)"
                )
            })?),
        };
        (None, port)
    } else if let Some(bracketed) = bracketed_ipv6(host) {
        // `::1:5000` read as a name "" and a port ":1:5000" was refused as `bad host name
        // ""`, which says nothing of the brackets an IPv6 address needs in a locator.
        return Err(format!(
            "an IPv6 address is written in brackets, as in URLs: {bracketed}"
        ));
    } else {
        match host.split_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        let ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(format!("bad host name {name:?}"));
        }
        // Taken, it reached the resolver, which says only "Name or service not known",
        // or over https TLS, refused with a hint about mistyped addresses.
        if let Some(label) = name.split('.').find(|label| label.len() > MAX_LABEL) {
            return Err(format!(
                "bad host name {name:?}: its label {label:?} is {} bytes long, and DNS allows \
                 at most {MAX_LABEL} (RFC 1035)",
                label.len()
            ));
        }
    }
    if let Some(port) = port {
        if !is_port(port) {
            return Err(format!(
                "bad port {port:?}: a port is decimal digits, at most 65535"
            ));
        }
        // Taken, it failed at the first request as "connection refused", as if a server
        // were down: no server listens on port 0.
        if port.parse::<u16>() == Ok(0) {
            return Err(format!("bad port {port:?}: {PORT_0}"));
        }
    }
    Ok(())
}

/// Why a port 0 is refused, by the locator, a mirror, a redirect's `Location`, a token
/// realm and a proxy setting alike.
pub(crate) const PORT_0: &str = "no server listens on port 0 (ports are 1 to 65535)";

/// Whether `port` is a port as URLs write one: digits only, at most 65535. Rust's own
/// parser also takes a sign, and `reg.example:+5000` was taken and sent as
/// `Host: reg.example:+5000`. The one rule for the locator's port and a URL's (see
/// [`crate::transport::bad_port`]).
pub(crate) fn is_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

/// `host` (an IPv6 address without brackets, with or without a port after it) as it is
/// written: `[fd00::1]:5000` for `fd00::1:5000`, where the last group reads as a port,
/// as people write `host:port`; `[fd00::5]` when it cannot be one (`fd00:` is no address,
/// and the colon of a `::` separates no port). `None` for anything else.
pub(crate) fn bracketed_ipv6(host: &str) -> Option<String> {
    if host.matches(':').count() < 2 {
        return None;
    }
    let with_port = host.rsplit_once(':').filter(|(addr, port)| {
        !addr.ends_with(':') && addr.parse::<std::net::Ipv6Addr>().is_ok() && is_port(port)
    });
    match with_port {
        Some((addr, port)) => Some(format!("[{addr}]:{port}")),
        None => host
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
            .then(|| format!("[{host}]")),
    }
}

#[cfg(test)]
mod tests {
    use crate::reference::{Reference, Repository};

    fn repo(s: &str) -> Repository {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn host_detection() {
        assert_eq!(repo("localhost/x").host(), "localhost");
        assert_eq!(repo("localhost:5000/team/app").name(), "team/app");
        assert_eq!(repo("ghcr.io/o/r").host(), "ghcr.io");
        assert_eq!(repo("myhost:443/r").host(), "myhost:443");
        // no dot, colon or localhost: a Docker Hub namespace, not a host
        assert_eq!(repo("myhost/r").to_string(), "docker.io/myhost/r");
    }

    /// `localhost` is a host in any case, as [`super::is_loopback`] takes it: `LOCALHOST/app`
    /// was read as Docker Hub's `LOCALHOST/app` and refused with the spelling
    /// `docker.io/localhost/app`, a registry that was never meant.
    #[test]
    fn localhost_is_a_host_in_any_case() {
        for s in ["LOCALHOST/app", "Localhost/team/app"] {
            let r = repo(s);
            assert_eq!(r.host(), "localhost", "{s}");
            assert!(r.plain_http(), "{s}");
        }
        assert!(repo("LOCALHOST/app")
            .api_base()
            .starts_with("http://localhost/"));
        // A lone `LOCALHOST` is a registry without a repository, as `localhost` is.
        for s in ["localhost", "LOCALHOST"] {
            let e = s.parse::<Repository>().unwrap_err();
            assert!(e.to_string().contains("no repository"), "{s}: {e}");
        }
    }

    #[test]
    fn plain_http_for_loopback_only() {
        assert!(repo("localhost:5000/x").plain_http());
        assert!(repo("127.0.0.1:5000/x").plain_http());
        assert!(repo("127.8.9.1/x").plain_http());
        assert!(repo("[::1]:5000/x").plain_http());
        assert!(repo("[0:0:0:0:0:0:0:1]/x").plain_http());
        assert!(repo("[::ffff:127.0.0.1]:5000/x").plain_http());
        assert!(!repo("[::ffff:10.0.0.1]:5000/x").plain_http());
        assert!(repo("LocalHost:5000/x").plain_http());
        assert!(!repo("localhost.example:5000/x").plain_http());
        assert!(!repo("ghcr.io/x").plain_http());
        assert!(!repo("10.0.0.1:5000/x").plain_http());
        assert!(repo("http://reg.example:80/x").plain_http());
        assert!(!repo("https://localhost:5000/x").plain_http());
        assert_eq!(
            repo("127.0.0.1:5000/x").api_base(),
            "http://127.0.0.1:5000/v2/"
        );
    }

    /// An IPv6 address typed without its brackets was refused as `bad host name ""`.
    #[test]
    fn a_bare_ipv6_address_is_refused_with_its_bracketed_spelling() {
        for (s, spelled) in [
            ("::1:5000/team/app", "[::1]:5000"),
            ("fd00::1:443/app", "[fd00::1]:443"),
            ("::1/team/app", "[::1]"),
            ("fe80::1/app", "[fe80::1]"),
            ("2001:db8:0:0:0:0:0:1/app", "[2001:db8:0:0:0:0:0:1]"),
        ] {
            let e = s.parse::<Repository>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{s}");
            assert!(
                e.to_string().ends_with(&format!(
                    "an IPv6 address is written in brackets, as in URLs: {spelled}"
                )),
                "{s}: {e}"
            );
        }
        let e = "::1:5000/team/app:v1".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("[::1]:5000"), "{e}");
        // A host and port is no address.
        assert_eq!(repo("reg.example:5000/x").host(), "reg.example:5000");
    }

    /// `u16::from_str` takes a leading '+': `reg.example:+5000` was accepted and sent as
    /// `Host: reg.example:+5000`.
    #[test]
    fn a_port_is_digits_only() {
        for s in [
            "reg.example:+5000/app",
            "[::1]:+5000/app",
            "localhost:-1/app",
        ] {
            let e = s.parse::<Repository>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{s}");
            assert!(
                e.to_string().contains("a port is decimal digits"),
                "{s}: {e}"
            );
        }
        // Not offered as the bracketed spelling of an address and a port either.
        let e = "::1:+5000/app".parse::<Repository>().unwrap_err();
        assert!(!e.to_string().contains("[::1]:+5000"), "{e}");
        assert_eq!(repo("reg.example:05000/x").host(), "reg.example:05000");
    }

    /// Port 0 was taken, and the first request failed as "connection refused", as if a
    /// registry were down there.
    #[test]
    fn port_0_is_refused() {
        for s in ["localhost:0/app", "reg.example:00/app", "[::1]:0/app"] {
            let e = s.parse::<Repository>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{s}");
            assert!(
                e.to_string().contains("no server listens on port 0"),
                "{s}: {e}"
            );
        }
        assert_eq!(repo("localhost:1/x").host(), "localhost:1");
    }

    /// A label over 63 bytes was taken: the resolver then said only "Name or service not
    /// known", and over https TLS refused the name with a hint about mistyped addresses.
    #[test]
    fn a_label_longer_than_dns_allows_is_refused() {
        let long = "x".repeat(64);
        for s in [
            format!("{long}.example/app"),
            format!("reg.{long}:5000/app"),
        ] {
            let e = s.parse::<Repository>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{s}");
            assert!(
                e.to_string()
                    .contains("is 64 bytes long, and DNS allows at most 63"),
                "{s}: {e}"
            );
        }
        let e = format!("{long}.invalid/x:v1")
            .parse::<Reference>()
            .unwrap_err();
        assert!(e.to_string().contains("DNS allows at most 63"), "{e}");
        let most = "x".repeat(63);
        assert_eq!(
            repo(&format!("{most}.example/app")).host(),
            format!("{most}.example")
        );
    }

    /// A URL reads `[::1]5000` as `[::1]` on the scheme's port: the locator was taken, and
    /// dist asked port 80 (or 443) of the address for the registry on 5000.
    #[test]
    fn an_ipv6_literal_is_followed_by_a_port_or_nothing() {
        assert_eq!(repo("[::1]/x").host(), "[::1]");
        assert_eq!(repo("[fd00::5]:5000/x").host(), "[fd00::5]:5000");
        for s in ["[::1]5000/team/app", "[fd00::5]x/app", "[::1]]:5000/app"] {
            let e = s.parse::<Repository>().unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{s}");
            assert!(e.to_string().contains("after the IPv6 address"), "{e}");
        }
        let e = "[::1]5000/team/app".parse::<Repository>().unwrap_err();
        assert!(e.to_string().contains("([::1]:PORT)"), "{e}");
        let e = "[::1]5000/team/app:v1".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("after the IPv6 address"), "{e}");
    }
}
