//! The errors of a proxy that cannot give a tunnel, which the transport does not retry.

use super::{select, socks};

/// A proxy that cannot give a tunnel, whatever the number of tries. It travels among the
/// causes of the connection error, so the transport can tell it from a broken connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy answered `status` instead of opening a tunnel to `target`.
    Refused {
        /// The proxy, as `host:port`.
        proxy: String,
        /// The destination asked for, as `host:port`.
        target: String,
        /// The proxy's status code (407: its credentials are missing or wrong).
        status: u16,
    },
    /// The environment names a kind of proxy this client does not speak, or a setting that
    /// is no URL.
    Unsupported {
        /// The proxy, as `scheme://host` (never its credentials); a setting that is no URL
        /// as `named by VARIABLE (not a URL…)`.
        proxy: String,
    },
    /// The SOCKS proxy wants credentials that were not given, or refused those that were.
    SocksCredentials {
        /// The proxy, as `host:port`.
        proxy: String,
        /// Whether credentials were given (in the proxy URL).
        given: bool,
    },
    /// The SOCKS proxy did not connect to `target`, for the reason its reply `code` gives.
    SocksRefused {
        /// The proxy, as `host:port`.
        proxy: String,
        /// The destination asked for, as `host:port`.
        target: String,
        /// The SOCKS5 reply code (2: not allowed by the proxy's rules).
        code: u8,
    },
    /// The SOCKS proxy cannot carry the request, whatever the number of tries: it does not
    /// speak SOCKS5, or the credentials or the destination's name are too long for it.
    SocksUnusable {
        /// The proxy, as `host:port`.
        proxy: String,
        /// Why, never with the credentials.
        why: String,
    },
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::Refused {
                proxy,
                target,
                status,
            } => {
                write!(f, "the proxy {proxy} answered {status} to CONNECT {target}")?;
                if *status == 407 {
                    f.write_str(
                        " (proxy credentials missing or refused; they go in the proxy URL)",
                    )?;
                }
                Ok(())
            }
            // A setting that is no URL, or writes a port that is no number: its scheme is
            // not what is wrong, whatever it is.
            ProxyError::Unsupported { proxy } if proxy.starts_with(select::NAMED_BY) => {
                write!(f, "the proxy {proxy} cannot be used")
            }
            ProxyError::Unsupported { proxy } => {
                write!(
                    f,
                    "the proxy {proxy} is not supported (only http://, socks5:// and socks5h:// proxies are)"
                )
            }
            ProxyError::SocksCredentials { proxy, given: true } => write!(
                f,
                "the SOCKS proxy {proxy} did not accept the credentials in the proxy URL"
            ),
            ProxyError::SocksCredentials {
                proxy,
                given: false,
            } => write!(
                f,
                "the SOCKS proxy {proxy} asks for credentials (they go in the proxy URL)"
            ),
            ProxyError::SocksRefused {
                proxy,
                target,
                code,
            } => write!(
                f,
                "the SOCKS proxy {proxy} did not connect to {target}: {} (reply {code})",
                socks::reply_reason(*code)
            ),
            ProxyError::SocksUnusable { proxy, why } => {
                write!(f, "the SOCKS proxy {proxy} cannot be used: {why}")
            }
        }
    }
}

impl std::error::Error for ProxyError {}
