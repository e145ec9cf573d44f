//! Opening a `CONNECT` tunnel over a connection to an HTTP proxy, and reading the proxy's
//! answer to it.

use http::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(super) enum TunnelFailure {
    /// The proxy answered with this status instead of 2xx.
    Refused(u16),
    /// The exchange itself failed.
    Broken(String),
}

/// Largest proxy answer to `CONNECT` we read.
const MAX_PROXY_HEAD: usize = 16 << 10;

/// Asks the proxy on `tcp` for a tunnel to `target` (`host:port`) and reads its answer.
/// The request names the client by `user_agent`, as curl's does: some proxies filter on it.
pub(super) async fn open_tunnel(
    mut tcp: TcpStream,
    target: &str,
    auth: Option<&HeaderValue>,
    user_agent: Option<&HeaderValue>,
) -> std::result::Result<TcpStream, TunnelFailure> {
    let broken = |e: std::io::Error| TunnelFailure::Broken(e.to_string());
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    for (name, value) in [("User-Agent", user_agent), ("Proxy-Authorization", auth)] {
        if let Some(value) = value {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    head.extend_from_slice(b"\r\n");
    tcp.write_all(&head).await.map_err(broken)?;
    // Nothing follows a tunnel's opening until we speak, so reading past its end would
    // mean the proxy broke the protocol.
    let mut answer = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while head_end(&answer).is_none() {
        if answer.len() > MAX_PROXY_HEAD {
            return Err(TunnelFailure::Broken(
                "the proxy's answer is too long".into(),
            ));
        }
        let n = tcp.read(&mut buf).await.map_err(broken)?;
        if n == 0 {
            return Err(TunnelFailure::Broken(
                "the proxy closed the connection".into(),
            ));
        }
        answer.extend_from_slice(&buf[..n]);
    }
    // A refusal comes with a page after its head (Squid's 403 and 407 do), often in the
    // same segment: the status says what happened, whatever follows it.
    match status_of(&answer) {
        Some(status) if (200..300).contains(&status) => {
            if head_end(&answer) != Some(answer.len()) {
                return Err(TunnelFailure::Broken(
                    "the proxy sent data before the tunnel opened".into(),
                ));
            }
            Ok(tcp)
        }
        Some(status) => Err(TunnelFailure::Refused(status)),
        None => Err(TunnelFailure::Broken(
            "the proxy's answer is not HTTP".into(),
        )),
    }
}

/// Where the head at the start of `answer` ends: after its first empty line. A line may
/// end in a bare LF, as Go's and curl's clients take it (RFC 9112, 2.2); a proxy answering
/// so was waited on for CRLF CRLF until the connect timeout ran out.
fn head_end(answer: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(lf) = answer[at..].iter().position(|&b| b == b'\n') {
        let next = at + lf + 1;
        match answer.get(next..) {
            Some([b'\n', ..]) => return Some(next + 1),
            Some([b'\r', b'\n', ..]) => return Some(next + 2),
            _ => at = next,
        }
    }
    None
}

/// The status code of an HTTP/1.x status line at the start of `head`.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = words.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a proxy sends back to `CONNECT`, the tunnel's outcome, with the proxy closing
    /// the connection after it.
    async fn answered(answer: &'static [u8]) -> Result<TcpStream, TunnelFailure> {
        let (address, proxy) = crate::transport::one_shot::answer_once(answer).await;
        let tcp = TcpStream::connect(address).await.unwrap();
        let opened = open_tunnel(tcp, "registry.test:443", None, None).await;
        proxy.await.unwrap();
        opened
    }

    /// Lines that end in a bare LF, as Go's and curl's clients take them: the answer's end
    /// was looked for as CRLF CRLF only, and not found.
    #[tokio::test]
    async fn an_answer_in_bare_line_feeds_opens_the_tunnel() {
        for answer in [
            &b"HTTP/1.0 200 Connection established\n\n"[..],
            b"HTTP/1.1 200 OK\nVia: 1.1 proxy\n\n",
            b"HTTP/1.1 200 OK\r\nVia: 1.1 proxy\n\r\n",
        ] {
            assert!(answered(answer).await.is_ok(), "{answer:?}");
        }
        assert!(matches!(
            answered(b"HTTP/1.1 407 Proxy Authentication Required\n\n").await,
            Err(TunnelFailure::Refused(407))
        ));
        assert!(matches!(
            answered(b"HTTP/1.1 200 OK\n\nearly").await,
            Err(TunnelFailure::Broken(_))
        ));
        assert!(answered(b"HTTP/1.1 200 OK\r\n\r\n").await.is_ok());
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_of(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(
            status_of(b"HTTP/1.0 407 Proxy Authentication Required\r\n"),
            Some(407)
        );
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 2000 x\r\n"), None);
    }
}
