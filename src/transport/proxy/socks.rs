//! The client side of a SOCKS5 handshake (RFC 1928, with RFC 1929's user and password):
//! asks a proxy for a TCP connection to `host:port` over a connection to the proxy.
//!
//! The destination's name goes to the proxy unresolved, for `socks5://` and `socks5h://`
//! alike, as Go's client (and so containerd, crane and skopeo) sends it: the proxy's network
//! knows the names its hosts have, which is often why the proxy is there.

use std::net::IpAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0x00;
const USER_PASS: u8 = 0x02;
const NONE_ACCEPTABLE: u8 = 0xff;
const CONNECT: u8 = 1;

/// How a handshake failed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SocksFailure {
    /// The proxy wants credentials that were not given (`false`) or refused the ones that
    /// were (`true`).
    Credentials { given: bool },
    /// The proxy answered this reply code instead of connecting.
    Refused(u8),
    /// What the same request meets again at this proxy, however often it is asked: a
    /// proxy that does not speak SOCKS5, or a user, password or name SOCKS5 cannot carry.
    Unusable(String),
    /// The exchange itself failed: a broken connection, or an answer SOCKS5 does not allow.
    Broken(String),
}

/// What a SOCKS5 reply code means.
pub(super) fn reply_reason(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply",
    }
}

/// Asks the proxy on `tcp` to connect to `host:port`, authenticating with `auth` (user,
/// password) if the proxy asks for it.
pub(super) async fn connect(
    mut tcp: TcpStream,
    host: &str,
    port: u16,
    auth: Option<(&str, &str)>,
) -> Result<TcpStream, SocksFailure> {
    let broken = |e: std::io::Error| SocksFailure::Broken(e.to_string());
    let offer: &[u8] = if auth.is_some() {
        &[VERSION, 2, NO_AUTH, USER_PASS]
    } else {
        &[VERSION, 1, NO_AUTH]
    };
    tcp.write_all(offer).await.map_err(broken)?;
    let mut chosen = [0u8; 2];
    tcp.read_exact(&mut chosen).await.map_err(broken)?;
    if chosen[0] != VERSION {
        return Err(SocksFailure::Unusable(
            "it does not speak SOCKS5 (an HTTP proxy is named http://…)".into(),
        ));
    }
    match (chosen[1], auth) {
        (NO_AUTH, _) => {}
        (USER_PASS, Some((user, password))) => {
            login(&mut tcp, user, password).await?;
        }
        (USER_PASS | NONE_ACCEPTABLE, None) => {
            return Err(SocksFailure::Credentials { given: false })
        }
        (NONE_ACCEPTABLE, Some(_)) => return Err(SocksFailure::Credentials { given: true }),
        (other, _) => {
            return Err(SocksFailure::Unusable(format!(
                "it chose authentication method {other}, which was not offered"
            )))
        }
    }
    tcp.write_all(&connect_request(host, port)?)
        .await
        .map_err(broken)?;
    let mut head = [0u8; 4];
    tcp.read_exact(&mut head).await.map_err(broken)?;
    if head[0] != VERSION {
        return Err(SocksFailure::Broken(
            "the proxy's reply is not SOCKS5".into(),
        ));
    }
    if head[1] != 0 {
        return Err(SocksFailure::Refused(head[1]));
    }
    // The address the proxy connected from, then its port: read past them.
    let address = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut len = [0u8; 1];
            tcp.read_exact(&mut len).await.map_err(broken)?;
            usize::from(len[0])
        }
        other => {
            return Err(SocksFailure::Broken(format!(
                "the proxy's reply has address type {other}"
            )))
        }
    };
    let mut rest = vec![0u8; address + 2];
    tcp.read_exact(&mut rest).await.map_err(broken)?;
    Ok(tcp)
}

/// RFC 1929: version 1, then the user and the password, each behind its length.
async fn login(tcp: &mut TcpStream, user: &str, password: &str) -> Result<(), SocksFailure> {
    let broken = |e: std::io::Error| SocksFailure::Broken(e.to_string());
    let (Ok(user_len), Ok(password_len)) = (u8::try_from(user.len()), u8::try_from(password.len()))
    else {
        return Err(SocksFailure::Unusable(
            "SOCKS5 user names and passwords are at most 255 bytes".into(),
        ));
    };
    let mut message = vec![1, user_len];
    message.extend_from_slice(user.as_bytes());
    message.push(password_len);
    message.extend_from_slice(password.as_bytes());
    tcp.write_all(&message).await.map_err(broken)?;
    let mut answer = [0u8; 2];
    tcp.read_exact(&mut answer).await.map_err(broken)?;
    if answer[1] != 0 {
        return Err(SocksFailure::Credentials { given: true });
    }
    Ok(())
}

/// `CONNECT` to an address (IPv4, IPv6) or a name, and the port.
fn connect_request(host: &str, port: u16) -> Result<Vec<u8>, SocksFailure> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut request = vec![VERSION, CONNECT, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len()).map_err(|_| {
                SocksFailure::Unusable("a host name longer than SOCKS5 allows".into())
            })?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_requests_name_the_destination_as_given() {
        assert_eq!(
            connect_request("registry.test", 5000).unwrap(),
            [&[5, 1, 0, 3, 13][..], b"registry.test", &[0x13, 0x88]].concat()
        );
        assert_eq!(
            connect_request("10.1.2.3", 443).unwrap(),
            [5, 1, 0, 1, 10, 1, 2, 3, 1, 187]
        );
        let v6 = connect_request("[::1]", 80).unwrap();
        assert_eq!(&v6[..4], &[5, 1, 0, 4]);
        assert_eq!(v6.len(), 4 + 16 + 2);
        assert!(connect_request(&"a".repeat(256), 80).is_err());
    }

    #[test]
    fn reply_codes_have_reasons() {
        assert_eq!(reply_reason(2), "connection not allowed by ruleset");
        assert_eq!(reply_reason(5), "connection refused");
        assert_eq!(reply_reason(42), "unknown reply");
    }
}
