//! Proxies named by the environment, read the way curl reads them: `HTTPS_PROXY`,
//! `HTTP_PROXY` and `ALL_PROXY` (or their lower-case forms), with `NO_PROXY` listing the
//! hosts, domains and networks to reach directly.
//!
//! A proxied connection is always a `CONNECT` tunnel, for https and plain-http registries
//! alike: TLS runs end to end through it, so the proxy learns the `host:port` and nothing
//! else, no request, no token, no registry credential. The proxy's own credentials come from
//! its URL (`http://user:password@proxy:3128`) and travel only in the `CONNECT` request.
//! Loopback addresses and `localhost` are never proxied, as in Go's and so containerd's and
//! crane's clients: a local registry stays local whatever the environment says. Only
//! `http://` proxies are supported; another scheme fails the connection and says so.
//!
//! A proxy that allows `CONNECT` only to port 443 (Squid's default) needs plain-http
//! registries on other ports listed in `NO_PROXY`.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Uri};
use hyper::rt::{Read, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How to reach one destination.
#[derive(Debug, PartialEq)]
enum Route {
    Direct,
    /// Through a `CONNECT` tunnel at `proxy`, with `auth` for `Proxy-Authorization`.
    Tunnel {
        proxy: Uri,
        auth: Option<HeaderValue>,
    },
    /// The environment names a proxy this client cannot speak to.
    Unsupported(String),
}

/// Which proxy, if any, each destination goes through.
#[derive(Clone)]
pub struct Proxies {
    matcher: Arc<Matcher>,
}

impl Proxies {
    /// The proxies the environment names (none when it names none).
    pub fn from_env() -> Proxies {
        Proxies {
            matcher: Arc::new(Matcher::from_env()),
        }
    }

    /// Proxies given as values of the environment variables, for tests.
    #[cfg(test)]
    fn of(all: &str, https: &str, no: &str) -> Proxies {
        Proxies {
            matcher: Arc::new(Matcher::builder().all(all).https(https).no(no).build()),
        }
    }

    fn route(&self, dst: &Uri) -> Route {
        let Some(host) = dst.host() else {
            return Route::Direct;
        };
        if is_loopback(host) {
            return Route::Direct;
        }
        let Some(intercept) = self.matcher.intercept(dst) else {
            return Route::Direct;
        };
        let proxy = intercept.uri();
        if proxy.scheme_str() != Some("http") {
            // The userinfo of a proxy URL may hold a password: name only scheme and host.
            return Route::Unsupported(format!(
                "{}://{}",
                proxy.scheme_str().unwrap_or(""),
                proxy.host().unwrap_or("")
            ));
        }
        let mut auth = intercept.basic_auth().cloned();
        if let Some(a) = &mut auth {
            a.set_sensitive(true);
        }
        Route::Tunnel {
            proxy: proxy.clone(),
            auth,
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `dst` with its port written out: the tunnel would otherwise assume 443 for plain http.
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

/// Wraps a TCP connector: destinations the environment sends to a proxy are reached
/// through a `CONNECT` tunnel over a connection to the proxy, the others directly.
#[derive(Clone)]
pub struct ProxyConnector<C> {
    inner: C,
    proxies: Proxies,
}

impl<C> ProxyConnector<C> {
    /// Routes `inner`'s connections by `proxies`.
    pub fn new(inner: C, proxies: Proxies) -> Self {
        ProxyConnector { inner, proxies }
    }
}

impl<C> tower_service::Service<Uri> for ProxyConnector<C>
where
    C: tower_service::Service<Uri> + Clone + Send + 'static,
    C::Response: Read + Write + Unpin + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // The ready service is the one `poll_ready` was called on; keep a fresh clone
        // for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match self.proxies.route(&dst) {
            Route::Direct => Box::pin(async move { inner.call(dst).await.map_err(Into::into) }),
            Route::Tunnel { proxy, auth } => {
                let dst = with_port(&dst);
                tracing::debug!(
                    host = dst.host().unwrap_or(""),
                    port = dst.port_u16(),
                    proxy = proxy.host().unwrap_or(""),
                    "connecting through a proxy"
                );
                let mut tunnel = Tunnel::new(proxy.clone(), inner);
                if let Some(auth) = auth {
                    tunnel = tunnel.with_auth(auth);
                }
                Box::pin(async move {
                    std::future::poll_fn(|cx| tunnel.poll_ready(cx)).await?;
                    tunnel.call(dst).await.map_err(|e| {
                        let host = proxy.host().unwrap_or("");
                        let port = proxy.port_u16().unwrap_or(80);
                        format!("through the proxy {host}:{port}: {e}").into()
                    })
                })
            }
            Route::Unsupported(proxy) => Box::pin(async move {
                Err(format!("the proxy {proxy} is not supported (only http:// proxies are)").into())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_and_no_proxy_hosts_go_direct() {
        let p = Proxies::of("http://proxy.corp:3128", "", "internal.corp, 10.0.0.0/8");
        for dst in [
            "https://127.0.0.1:5000/v2/",
            "http://localhost:5000/v2/",
            "https://[::1]:443/v2/",
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

    #[test]
    fn credentials_in_the_proxy_url_become_sensitive_basic_auth() {
        let p = Proxies::of("", "http://alice:s3cret@proxy.corp:3128", "");
        let Route::Tunnel {
            auth: Some(auth), ..
        } = p.route(&uri("https://ghcr.io/v2/"))
        else {
            panic!("tunnelled with credentials");
        };
        assert!(auth.is_sensitive());
        assert_eq!(auth.to_str().unwrap(), "Basic YWxpY2U6czNjcmV0");
        // HTTPS_PROXY alone leaves plain-http destinations direct, as curl does.
        assert_eq!(
            p.route(&uri("http://registry.corp:5000/v2/")),
            Route::Direct
        );
    }

    #[test]
    fn other_proxy_schemes_are_refused_without_their_credentials() {
        let p = Proxies::of("socks5://bob:hunter2@proxy.corp:1080", "", "");
        let Route::Unsupported(named) = p.route(&uri("https://quay.io/v2/")) else {
            panic!("socks is not supported");
        };
        assert_eq!(named, "socks5://proxy.corp");
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
