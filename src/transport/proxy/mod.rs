//! Proxies named by the environment, read the way curl reads them: `HTTPS_PROXY`,
//! `HTTP_PROXY` and `ALL_PROXY` (or their lower-case forms), with `NO_PROXY` listing the
//! hosts, domains and networks to reach directly; or the same variables given to one
//! transport through the API ([`Proxies::from_variables`]), the environment unread.
//!
//! An https destination is reached through a `CONNECT` tunnel: TLS runs end to end through
//! it, so the proxy learns the `host:port` and nothing else, no request, no token, no
//! registry credential. A plain-http destination is not tunnelled: its requests go to the
//! proxy in absolute form (`GET http://host:port/v2/…`), as curl and Go's client send them,
//! which proxies that allow `CONNECT` only to port 443 (Squid's default) accept; plain http
//! crosses the proxy in the clear either way, as it crosses any network. The proxy's own
//! credentials come from its URL (`http://user:password@proxy:3128`) and travel in the
//! `CONNECT` request, or in each forwarded request ([`Proxies::forwarding_auth`]).
//! A `socks5://` or `socks5h://` proxy opens a connection to the destination for either
//! scheme (see `socks.rs`), with a user and password from its URL if it asks for them.
//! Loopback addresses and `localhost` are never proxied, as in Go's and so containerd's and
//! crane's clients: a local registry stays local whatever the environment says. Other
//! proxy schemes fail the connection and say so. A refused tunnel is a [`ProxyError`] in
//! the error's causes, so the transport can tell it from a broken connection and not retry
//! it.

mod connector;
mod error;
mod select;
mod socks;
mod tunnel;

use http::Uri;

pub use connector::{ProxyConnector, ProxyStream};
pub use error::ProxyError;
pub use select::Proxies;

use super::connecting::BoxError;

/// `dst` with its port written out, as `CONNECT` needs it (the scheme's default if none).
fn with_port(dst: &Uri) -> Uri {
    if dst.port().is_some() {
        return dst.clone();
    }
    let port = if dst.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    let mut parts = dst.clone().into_parts();
    let host = dst.host().unwrap_or_default();
    parts.authority = format!("{host}:{port}").parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| dst.clone())
}

/// `host:port` of a URI whose port is written out.
fn authority(uri: &Uri) -> String {
    format!(
        "{}:{}",
        uri.host().unwrap_or(""),
        uri.port_u16().unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn the_tunnel_target_carries_the_scheme_default_port() {
        assert_eq!(with_port(&uri("http://r.corp/v2/")).port_u16(), Some(80));
        assert_eq!(with_port(&uri("https://r.corp/v2/")).port_u16(), Some(443));
        assert_eq!(
            with_port(&uri("https://r.corp:8443/v2/")).port_u16(),
            Some(8443)
        );
    }
}
