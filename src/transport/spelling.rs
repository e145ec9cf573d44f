//! One spelling per host: what the transport keys connections by.
//!
//! `registry` and `registry:443` (for https; `:80` for http), as a locator, a redirect's
//! `Location` or a token realm may write them, are one server, and so is `registry:` (an
//! empty port), and `[::1]` and `[0::1]`. hyper's pool keys connections by the authority as written (without case), so
//! each spelling had a pool of its own: a request under one opened a connection beside
//! the other's idle one, and at a binding cap told it to close. Requests are handed to
//! hyper without the default port, and the caps and records kept per origin use
//! [`host`]. An IPv6 address is handed as written: hyper sends it as the `Host` (and
//! HTTP/2's `:authority`), which a pre-signed URL's signature covers as its signer wrote
//! it, as Go's clients send it.
//!
//! Case aside, names are left as written: `registry.example.` (a name DNS takes as is)
//! and `registry.example` (which the resolver may complete with a search domain) can
//! reach different servers, and Docker and containerd file credentials and `hosts.toml`
//! under them apart too.

use http::uri::Authority;
use http::Uri;

/// The scheme's own port: 443 for https, 80 otherwise (http, the only other scheme sent).
pub(super) fn default_port(uri: &Uri) -> u16 {
    if uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        443
    } else {
        80
    }
}

/// The host of `uri` as one server is known by: without case, and an IPv6 address in
/// its canonical form (RFC 5952's, as `Ipv6Addr` writes it), brackets kept.
pub(super) fn host(uri: &Uri) -> Option<String> {
    let host = uri.host()?;
    let canonical = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
        .map(|ip| format!("[{ip}]"));
    Some(canonical.unwrap_or_else(|| host.to_ascii_lowercase()))
}

/// `uri` as handed to hyper, whose pool keys by its authority: the scheme's default port
/// left out. `None` when it has none written (nearly always), so that a request pays
/// nothing for it. The host keeps its spelling, case and all: the pool compares
/// authorities without case, and the `Host` header keeps what was written (hyper leaves
/// a default port out of it already, so HTTP/1.1 servers see no change).
pub(super) fn for_pool(uri: &Uri) -> Option<Uri> {
    let authority = uri.authority()?;
    // The common case, no port or another one, allocates nothing: every request comes
    // here (`tests/request_cost.rs`).
    // An empty port (`registry:`, RFC 3986's spelling of the default one, which a
    // `Location` or realm may write) is the default too: kept, it had a pool of its own.
    let empty_port = authority.as_str().ends_with(':');
    if uri.port_u16() != Some(default_port(uri)) && !empty_port {
        return None;
    }
    // User information is refused before a request is made; a URL that has it anyway
    // is left as it is rather than have it dropped here.
    if authority.as_str().contains('@') {
        return None;
    }
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(authority.host().parse::<Authority>().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pooled(s: &str) -> String {
        let uri: Uri = s.parse().unwrap();
        for_pool(&uri).map_or_else(|| uri.to_string(), |u| u.to_string())
    }

    #[test]
    fn a_default_port_is_left_out_and_any_other_kept() {
        assert_eq!(pooled("https://r.example:443/v2/"), "https://r.example/v2/");
        assert_eq!(
            pooled("http://r.example:80/v2/?n=1"),
            "http://r.example/v2/?n=1"
        );
        // Each scheme's own only: 80 is not https's, nor 443 http's.
        assert_eq!(
            pooled("https://r.example:80/v2/"),
            "https://r.example:80/v2/"
        );
        assert_eq!(
            pooled("http://r.example:443/v2/"),
            "http://r.example:443/v2/"
        );
        assert_eq!(pooled("https://r.example:5000/"), "https://r.example:5000/");
        // An empty port is the default one, as RFC 3986 (3.2.3) reads it.
        assert_eq!(pooled("https://r.example:/v2/"), "https://r.example/v2/");
        assert_eq!(pooled("http://[::1]:/v2/"), "http://[::1]/v2/");
    }

    /// Its `Host`, which a pre-signed URL's signature covers, is as the signer wrote it.
    #[test]
    fn an_ipv6_address_keeps_its_spelling() {
        assert_eq!(pooled("http://[0::1]:5000/v2/"), "http://[0::1]:5000/v2/");
        assert_eq!(
            pooled("https://[2001:DB8:0:0::1]:443/v2/"),
            "https://[2001:DB8:0:0::1]/v2/"
        );
        assert_eq!(pooled("http://[FD00::5]/v2/"), "http://[FD00::5]/v2/");
    }

    #[test]
    fn a_name_keeps_its_case_and_its_trailing_dot() {
        let uri: Uri = "https://R.Example./v2/".parse().unwrap();
        assert!(for_pool(&uri).is_none());
        assert_eq!(host(&uri).as_deref(), Some("r.example."));
    }

    #[test]
    fn hosts_of_one_server_are_one() {
        let host = |s: &str| host(&s.parse::<Uri>().unwrap()).unwrap();
        assert_eq!(host("http://[0:0::1]/"), host("http://[::1]/"));
        assert_eq!(host("https://REGISTRY.example/"), "registry.example");
        assert_ne!(host("https://r.example./"), host("https://r.example/"));
    }
}
