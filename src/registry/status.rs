//! A failed response as a typed error: its status read as an error kind, the registry's
//! own words (its OCI error codes) quoted without the request's secrets, and the answers
//! that say more than their status (a TLS port asked in plain HTTP, nginx refusing a
//! client certificate, a spent quota).
//!
//! Separate from [`super::host`], which decides what to do with a failure (retry, pause,
//! hand over): this module only says what the failure was.

use http::{HeaderMap, StatusCode};

use crate::auth::Sent;
use crate::error::{Error, ErrorKind};
use crate::server_text;
use crate::transport::{self, Transport};

/// Error bodies are read up to this much for their message.
pub(crate) const MAX_ERROR_BODY: usize = 64 << 10;

/// Turns a failed response into an error naming the status and the registry's own words,
/// without the secrets its request `sent`.
pub(super) async fn status_error(
    transport: &Transport,
    reply: &mut transport::Reply,
    mirror: bool,
    sent: &Sent,
) -> Error {
    let status = reply.response.status();
    let url = reply.url.clone();
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        // Only a proxy forwarding plain-http requests answers this; its body is its own
        // error page, not the registry's.
        return Error::new(
            ErrorKind::Unauthorized,
            "the proxy answered 407 Proxy Authentication Required (proxy credentials missing \
             or refused; they go in the proxy URL)",
        )
        .with_status(407)
        .of_proxy_login()
        .with_url(url);
    }
    let codings = super::coding::codings(reply.response.headers());
    let body = transport::read_prefix(transport, reply.response.body_mut(), MAX_ERROR_BODY).await;
    let body = super::coding::readable(body, codings, MAX_ERROR_BODY).await;
    let detail = server_text::error_detail_hiding(&body, &status.to_string(), sent);
    if status == StatusCode::BAD_REQUEST
        && url.scheme_str() == Some("http")
        && tls_port_refusal(&body)
    {
        // Every request would get this answer: the registry cannot be used this way, which
        // is what the one-shot's status 2 and a mirror marked down say.
        // At a redirect's target, the registry chose the `http://`: neither the locator
        // nor `--plain-http` reaches it.
        let advice = match reply.same_origin {
            true => concat!(
                "for a TLS registry, write https:// before the locator (loopback addresses \
                 get plain HTTP otherwise), without ",
                crate::setting::setting_name!(plain_http),
                " or `plain-http` in hosts.toml"
            ),
            false => {
                "that server is the redirect's target: the registry sent the request to \
                      an http:// URL (a blob store or CDN) on its TLS port, which only the \
                      registry's configuration can change"
            }
        };
        return Error::new(
            ErrorKind::NotTls,
            format!(
                "the server speaks TLS, not plain HTTP (it answered {status}: {detail}); {advice}"
            ),
        )
        .with_status(400)
        .with_url(url);
    }
    if status == StatusCode::BAD_REQUEST && url.scheme_str() == Some("https") {
        if let Some(why) = client_certificate_refusal(&body) {
            // As the TLS alert that Go's server sends in its place: every request gets it.
            let e = Error::new(
                ErrorKind::Certificate,
                format!("{why} (it answered {status}: {detail})"),
            );
            let e = match reply.same_origin {
                true => e,
                false => e.with_note(transport::AT_REDIRECT_TARGET),
            };
            return e.with_status(400).with_url(url);
        }
    }
    let kind = match status.as_u16() {
        404 => ErrorKind::NotFound,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Denied,
        429 => ErrorKind::TooManyRequests,
        _ => ErrorKind::Http,
    };
    // A forwarding proxy's own refusals and gateway errors look like the registry's; and
    // after a redirect, it is the blob store (a CDN, S3) that answered, not the registry.
    let who = match (reply.same_origin, mirror) {
        (true, false) => "registry",
        (true, true) => "mirror",
        (false, _) => "the redirect's target",
    };
    let mut msg = match transport.forwarding_proxy(&url) {
        Some(proxy) => format!("{who} (through the proxy {proxy}) answered {status}"),
        None => format!("{who} answered {status}"),
    };
    if !detail.is_empty() {
        msg.push_str(": ");
        msg.push_str(&detail);
    }
    let e = Error::new(kind, msg).with_codes(server_text::error_codes(&body));
    let e = match &reply.redirected_by {
        Some(from) => e.with_note(transport::redirected_by(from)),
        None => e,
    };
    let e = match reply.same_origin {
        true => e,
        false => e.at_redirect_target(),
    };
    e.with_status(status.as_u16()).with_url(url)
}

/// The requests left in the quota a `RateLimit-Remaining` header reports (`0;w=21600`,
/// Docker Hub's, or a bare `0` as the IETF draft writes it).
pub(super) fn quota_left(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get("ratelimit-remaining")?.to_str().ok()?;
    value.split(';').next()?.trim().parse().ok()
}

/// Whether `body` is a TLS server's answer to a plain-HTTP request on its port, in the
/// words of Go's `net/http` (the registry itself, Harbor, Zot, Traefik, Caddy), nginx,
/// Apache httpd and Tomcat (Spring Boot's default server).
fn tls_port_refusal(body: &[u8]) -> bool {
    const SAID: [&[u8]; 4] = [
        b"Client sent an HTTP request to an HTTPS server",
        b"The plain HTTP request was sent to HTTPS port",
        b"speaking plain HTTP to an SSL-enabled server port",
        b"This combination of host and port requires TLS",
    ];
    SAID.iter().any(|said| transport::tls::contains(body, said))
}

/// What nginx's `400` page says when `ssl_verify_client` wants a client certificate that
/// the handshake did not show, or refused the one it showed: nginx completes the handshake
/// and answers in HTTP where Go's server sends a TLS alert. The page's title, not its
/// words anywhere: a registry's own error quoting them (a pull-through cache relaying its
/// upstream's refusal) is no refusal of dist's certificate.
fn client_certificate_refusal(body: &[u8]) -> Option<&'static str> {
    const SAID: [(&[u8], &str); 2] = [
        (
            b"<title>400 No required SSL certificate was sent</title>",
            transport::CLIENT_CERTIFICATE_REQUIRED,
        ),
        (
            b"<title>400 The SSL certificate error</title>",
            concat!(
                "the server refused the client certificate (",
                crate::setting::setting_name!(client_identity),
                ", or certs.d)"
            ),
        ),
    ];
    SAID.iter()
        .find(|(said, _)| transport::tls::contains(body, said))
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_servers_refusing_plain_http_are_recognised() {
        for body in [
            &b"Client sent an HTTP request to an HTTPS server.\n"[..],
            b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title>",
            b"<p>Reason: You're speaking plain HTTP to an SSL-enabled server port.<br />",
            b"Bad Request\r\nThis combination of host and port requires TLS.\r\n",
        ] {
            assert!(tls_port_refusal(body), "{}", String::from_utf8_lossy(body));
        }
        assert!(!tls_port_refusal(
            b"{\"errors\":[{\"code\":\"DIGEST_INVALID\"}]}"
        ));
    }
}
