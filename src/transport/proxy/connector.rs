//! The connector: a tower `Service` that reaches each destination directly, through a
//! `CONNECT` tunnel, through a SOCKS5 proxy, or over a connection to a forwarding proxy.

use std::future::Future;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::select::{Proxies, Route};
use super::socks::{self, SocksFailure};
use super::tunnel::{open_tunnel, TunnelFailure};
use super::{authority, with_port, BoxError, ProxyError};
use crate::transport::connecting::{take_ready, Connecting};

/// No connection to the proxy itself. The connector's error stays its source, not words in
/// its message: the system's "Connection refused (os error 111)" lies below the connector's
/// "tcp connect error", and the transport looks there for a name the resolver says does not
/// exist, which fails at once for a proxy as for a registry.
#[derive(Debug)]
struct ProxyUnreachable {
    /// "proxy" or "SOCKS proxy".
    what: &'static str,
    /// The proxy, as `host:port`.
    proxy: String,
    cause: BoxError,
}

impl std::fmt::Display for ProxyUnreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot connect to the {} {}", self.what, self.proxy)
    }
}

impl std::error::Error for ProxyUnreachable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause.as_ref())
    }
}

/// The error for a connection to `proxy` that failed with `cause`.
fn unreachable(what: &'static str, proxy: &str, cause: impl Into<BoxError>) -> ProxyUnreachable {
    ProxyUnreachable {
        what,
        proxy: proxy.to_string(),
        cause: cause.into(),
    }
}

/// Wraps the TCP connector: destinations the environment sends to a proxy are reached
/// through a `CONNECT` tunnel over a connection to the proxy (https), or over a connection
/// to the proxy that forwards the requests (plain http); the others directly.
#[derive(Clone, Debug)]
pub struct ProxyConnector<R = GaiResolver> {
    inner: HttpConnector<R>,
    proxies: Proxies,
    /// How long a proxy may take to open a tunnel (`CONNECT`, or SOCKS's greeting and
    /// request) once the connection to it is made.
    handshake: Option<std::time::Duration>,
    /// What a `CONNECT` names the client as.
    user_agent: Option<http::HeaderValue>,
}

impl<R> ProxyConnector<R> {
    /// Routes `inner`'s connections by `proxies`.
    pub fn new(inner: HttpConnector<R>, proxies: Proxies) -> Self {
        ProxyConnector {
            inner,
            proxies,
            handshake: None,
            user_agent: None,
        }
    }

    /// Names the client as `user_agent` in each `CONNECT`, as its requests do: some
    /// proxies filter on it, and curl sends one there too.
    pub fn with_user_agent(mut self, user_agent: Option<http::HeaderValue>) -> Self {
        self.user_agent = user_agent;
        self
    }

    /// Gives a proxy `limit` to open each tunnel. A proxy that takes the connection and
    /// never answers `CONNECT` (hung, or not a proxy at all) otherwise held the fetch until
    /// the request's idle timeout, a minute a try, said as "no response headers within 60s"
    /// for a request never sent; curl counts this into its connect timeout.
    pub fn with_handshake_timeout(mut self, limit: std::time::Duration) -> Self {
        self.handshake = Some(limit);
        self
    }
}

/// `work`, the opening of a tunnel through `proxy`, within `limit` if there is one.
async fn within<T>(
    limit: Option<std::time::Duration>,
    proxy: &str,
    what: &str,
    work: impl Future<Output = Result<T, BoxError>>,
) -> Result<T, BoxError> {
    let Some(limit) = limit else {
        return work.await;
    };
    match tokio::time::timeout(limit, work).await {
        Ok(done) => done,
        Err(_) => Err(format!(
            "the proxy {proxy} did not answer {what} within {} ({})",
            crate::duration::Written(limit),
            crate::setting::Setting::ConnectTimeout
        )
        .into()),
    }
}

impl<R> tower_service::Service<Uri> for ProxyConnector<R>
where
    R: tower_service::Service<Name, Error = std::io::Error> + Clone + Send + Sync + 'static,
    R::Response: Iterator<Item = std::net::SocketAddr>,
    R::Future: Send,
{
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Connecting<ProxyStream>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let limit = self.handshake;
        let user_agent = self.user_agent.clone();
        match self.proxies.route(&dst) {
            Route::Direct => Box::pin(async move {
                let io = inner.call(dst).await?;
                Ok(ProxyStream::to_destination(io))
            }),
            Route::Forward { proxy, .. } => Box::pin(async move {
                let proxy_name = authority(&with_port(&proxy));
                tracing::debug!(target = %authority(&with_port(&dst)), proxy = %proxy_name, "forwarding through a proxy");
                let io = inner
                    .call(proxy)
                    .await
                    .map_err(|e| unreachable("proxy", &proxy_name, e))?;
                Ok(ProxyStream {
                    io,
                    forwarding: true,
                })
            }),
            Route::Tunnel { proxy, auth } => Box::pin(async move {
                let target = authority(&with_port(&dst));
                let proxy_name = authority(&with_port(&proxy));
                tracing::debug!(target = %target, proxy = %proxy_name, "connecting through a proxy");
                let io = inner
                    .call(proxy)
                    .await
                    .map_err(|e| unreachable("proxy", &proxy_name, e))?;
                let opened =
                    open_tunnel(io.into_inner(), &target, auth.as_ref(), user_agent.as_ref());
                let opened = async {
                    opened.await.map_err(|e| match e {
                        TunnelFailure::Refused(status) => Box::new(ProxyError::Refused {
                            proxy: proxy_name.clone(),
                            target: target.clone(),
                            status,
                        }) as BoxError,
                        TunnelFailure::Broken(why) => {
                            format!("tunnel through the proxy {proxy_name}: {why}").into()
                        }
                    })
                };
                let tcp = within(limit, &proxy_name, "CONNECT", opened).await?;
                Ok(ProxyStream::to_destination(TokioIo::new(tcp)))
            }),
            Route::Socks { proxy, auth } => Box::pin(async move {
                let dst = with_port(&dst);
                let target = authority(&dst);
                let proxy_name = authority(&proxy);
                tracing::debug!(target = %target, proxy = %proxy_name, "connecting through a SOCKS proxy");
                let io = inner
                    .call(proxy)
                    .await
                    .map_err(|e| unreachable("SOCKS proxy", &proxy_name, e))?;
                let credentials = auth
                    .as_ref()
                    .map(|a| (a.user.as_str(), a.password.as_str()));
                let host = dst.host().unwrap_or_default();
                let port = dst.port_u16().unwrap_or(0);
                let opened = socks::connect(io.into_inner(), host, port, credentials);
                let opened = async {
                    opened.await.map_err(|e| -> BoxError {
                        match e {
                            SocksFailure::Credentials { given } => {
                                Box::new(ProxyError::SocksCredentials {
                                    proxy: proxy_name.clone(),
                                    given,
                                })
                            }
                            SocksFailure::Refused(code) => Box::new(ProxyError::SocksRefused {
                                proxy: proxy_name.clone(),
                                target: target.clone(),
                                code,
                            }),
                            SocksFailure::Unusable(why) => Box::new(ProxyError::SocksUnusable {
                                proxy: proxy_name.clone(),
                                why,
                            }),
                            SocksFailure::Broken(why) => {
                                format!("SOCKS handshake with {proxy_name}: {why}").into()
                            }
                        }
                    })
                };
                let tcp = within(limit, &proxy_name, "the SOCKS handshake", opened).await?;
                Ok(ProxyStream::to_destination(TokioIo::new(tcp)))
            }),
            Route::Unsupported(proxy) => {
                Box::pin(
                    async move { Err(Box::new(ProxyError::Unsupported { proxy }) as BoxError) },
                )
            }
        }
    }
}

/// A connection the proxy connector made: to the destination (directly or through a
/// tunnel), or to a proxy that forwards requests, which tells the HTTP client to write them
/// in absolute form.
#[derive(Debug)]
pub struct ProxyStream {
    io: TokioIo<TcpStream>,
    forwarding: bool,
}

impl ProxyStream {
    fn to_destination(io: TokioIo<TcpStream>) -> ProxyStream {
        ProxyStream {
            io,
            forwarding: false,
        }
    }
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forwarding)
    }
}

pass_io_through!([] ProxyStream);
