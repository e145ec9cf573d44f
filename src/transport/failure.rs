//! What a failed request was: hyper's, rustls's and the resolver's failures read as
//! dist's error kinds, in words a user can act on.

use super::refusal::Ending;
use super::{
    dns, handshake, pinned, proxy, tls, MAX_RESPONSE_HEADER_LIST, MAX_RESPONSE_HEAD_BYTES,
};
use crate::error::{Error, ErrorKind};
use crate::setting::{setting_name, Setting};
use std::time::Duration;

/// The longest DNS name TLS takes, in bytes (rustls counts the root's dot, if written).
const MAX_DNS_NAME: usize = 253;

/// The longest label (a dot-separated part) of a DNS name, RFC 1035 2.3.4.
const MAX_DNS_LABEL: usize = 63;

/// Why `host`, which rustls refused as a server name, is none: every refusal was said to
/// be a name ending in a number (a mistyped address), also of one too long.
fn not_a_dns_name(host: &str) -> String {
    let name = host.strip_suffix('.').unwrap_or(host);
    let labels = || name.split('.');
    // Counted with the root's dot, as rustls counts it.
    if host.len() > MAX_DNS_NAME {
        return format!(
            "it is {} bytes long, and DNS allows at most {MAX_DNS_NAME}",
            host.len()
        );
    }
    if let Some(label) = labels().find(|l| l.len() > MAX_DNS_LABEL) {
        return format!(
            "its label {label:?} is {} bytes long, and DNS allows at most {MAX_DNS_LABEL}",
            label.len()
        );
    }
    if labels().next_back().is_some_and(is_a_number) {
        return "it ends in a number, as 10.0.0.256 or 127.1 do: a mistyped address?".into();
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !matches!(c, '-' | '_' | '.'))
    {
        return format!("it holds {c:?}, which no DNS name does");
    }
    "a DNS name has no empty label, nor one that begins or ends with a hyphen".into()
}

/// Whether `label` reads as a number in an IPv4 address, as URLs read one (decimal, or
/// `0x` and hex digits): a name whose last label does is taken for a mistyped address.
fn is_a_number(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Whether `e` is a request lost, before any answer, by a connection that had been made: a
/// kept-alive connection the server closed as the request went out, or HTTP/2 streams
/// opened as a GOAWAY arrived (nginx sends one after `keepalive_requests`, CDNs at will).
/// That is how connections end, not a fault of the server, and nothing was answered, so
/// the request may go again at once on a new connection, as curl and Go's client resend
/// it, whatever the retry budget.
pub fn lost_before_answer(e: &Error) -> bool {
    let Some(client) = std::error::Error::source(e)
        .and_then(|c| c.downcast_ref::<hyper_util::client::legacy::Error>())
        .filter(|c| e.kind() == ErrorKind::Connect && !c.is_connect())
    else {
        return false;
    };
    // An answer that could not be parsed was an answer: a fault, not a lost request.
    !causes_include(client, |h: &hyper::Error| {
        h.is_parse() || h.is_parse_status() || h.is_user()
    })
}

/// Whether `e`, a request [`lost_before_answer`], went with its connection (reset,
/// closed, gone away), rather than being refused alone on a connection that lives on (an
/// HTTP/2 stream reset, `HTTP_1_1_REQUIRED`).
pub(super) fn lost_with_connection(e: &Error) -> bool {
    lost_before_answer(e)
        && !http1_required(e)
        && !std::error::Error::source(e)
            .is_some_and(|cause| causes_include(cause, |h2: &h2::Error| h2.is_reset()))
}

/// Whether an HTTP/2 server refused `e`'s request, or its whole connection, with
/// `HTTP_1_1_REQUIRED` (RFC 9113, 0xd): IIS for a request it will authenticate only over
/// HTTP/1.1, and proxies that take HTTP/2 for some requests only.
pub(super) fn http1_required(e: &Error) -> bool {
    std::error::Error::source(e).is_some_and(|cause| {
        causes_include(cause, |h2: &h2::Error| {
            h2.reason() == Some(h2::Reason::HTTP_1_1_REQUIRED)
        })
    })
}

/// Whether `e`'s answer came with a head larger than the client takes: more header fields
/// than its limit, or more bytes than hyper's buffer holds.
pub(super) fn head_too_large(e: &hyper_util::client::legacy::Error) -> bool {
    // hyper tells this parse error apart only with its server feature, by its words
    // ("message head is too large") otherwise.
    causes_include(e, |h: &hyper::Error| {
        h.is_parse() && h.to_string().contains("too large")
    })
}

/// A request's failure as dist's error. `refused` is the alert that ended the latest
/// connection to the request's server (see [`refusal`](super::refusal)): a failure that says no more than
/// that a connection made was lost may be how the server refused our client certificate,
/// `ours` (if we have one). `by_address`: the server was reached by IP address, so TLS sent
/// it no server name. `host` is the request's, as its URL names it.
pub(super) fn classify_client_error(
    e: hyper_util::client::legacy::Error,
    refused: impl FnOnce() -> Option<Ending>,
    ours: Option<&tls::ClientIdentity>,
    by_address: bool,
    host: &str,
    max_fields: usize,
) -> Error {
    // A certificate that is not trusted, a proxy that refuses the tunnel or that dist
    // cannot speak to: all will be the same on the next try, so each has a kind that is
    // not retried.
    if let Some(limit) = handshake::timed_out(&e) {
        // Like a connection not made in time: worth another try, and exit status 75.
        return Error::new(
            ErrorKind::Connect,
            format!(
                "the TLS handshake did not finish within {} ({}): the server took \
                 the connection but did not answer in TLS",
                crate::duration::Written(limit),
                Setting::ConnectTimeout
            ),
        );
    }
    // Interim answers (`102 Processing`) without end, which hyper passes over: a server
    // that sends them will again.
    if let Some(said) = fruitless(&e) {
        return Error::new(ErrorKind::Protocol, said);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        // `10.0.0.256` or `127.1`: neither an IP address nor a name a certificate can be
        // checked against. Nothing was sent; it was retried as a broken connection and
        // failed as "invalid dns name", naming neither the host nor what is wrong with it.
        if s.is::<rustls::pki_types::InvalidDnsNameError>() {
            return Error::new(
                ErrorKind::UnknownHost,
                format!(
                    "cannot connect: the host is neither an IP address nor a DNS name TLS \
                     can verify ({})",
                    not_a_dns_name(host)
                ),
            );
        }
        // Wrapped in an io::Error, whose `source` skips it.
        let lookup = s
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<dns::LookupTimedOut>());
        if let Some(lookup) = lookup {
            // A DNS server that did not answer may in a moment: retried.
            return Error::new(ErrorKind::Connect, format!("cannot connect: {lookup}"));
        }
        if let Some(failure) = rustls_error(s) {
            if let Some(why) = certificate_failure(failure, ours) {
                let refused = Error::new(ErrorKind::Certificate, why);
                // Of a certificate, rustls says no more than our words (its name for the
                // case, its times in seconds since 1970, names in their `Debug` forms).
                return match failure {
                    rustls::Error::InvalidCertificate(_) => refused,
                    _ => refused.with_cause(e),
                };
            }
        }
        if let Some(none) = rustls_error(s).and_then(no_trust_anchors) {
            return Error::new(ErrorKind::Certificate, no_ca_certificates(none));
        }
        if rustls_error(s).is_some_and(is_not_served) {
            return Error::new(ErrorKind::Certificate, NOT_SERVED);
        }
        if rustls_error(s).is_some_and(is_not_tls) {
            return Error::new(ErrorKind::NotTls, NOT_TLS);
        }
        if let Some(why) = rustls_error(s).and_then(|tls| incompatible(tls, ours, by_address)) {
            return Error::new(ErrorKind::TlsIncompatible, why);
        }
        if let Some(failed) = s.downcast_ref::<proxy::ProxyError>() {
            let e = Error::new(proxy_kind(failed), failed.to_string());
            return match e.kind() {
                ErrorKind::Unauthorized => e.of_proxy_login(),
                _ => e,
            };
        }
        source = s.source();
    }
    if e.is_connect() && names_no_host(&e) {
        return Error::new(ErrorKind::UnknownHost, "cannot connect").with_cause(e);
    }
    if head_too_large(&e) {
        // The same answer comes again: not worth a retry.
        return Error::new(
            ErrorKind::Protocol,
            format!(
                "the response's head is too large (more than {max_fields} header fields, or \
                 more than {})",
                crate::plural::Bytes(MAX_RESPONSE_HEAD_BYTES as u64)
            ),
        );
    }
    // h2 resets a stream itself for an answer it cannot take: a head past
    // MAX_RESPONSE_HEADER_LIST (for which it has no error of its own), or one HTTP/2 does
    // not allow. That was an answer, and the same one comes again; read as a lost request,
    // it was sent again and retried, then reported as "unspecific protocol error".
    let refused_answer = |h2: &h2::Error| {
        h2.is_reset() && h2.is_library() && h2.reason() == Some(h2::Reason::PROTOCOL_ERROR)
    };
    if causes_include(&e, refused_answer) {
        return Error::new(
            ErrorKind::Protocol,
            format!(
                "the response's head could not be taken over HTTP/2: more than {} KiB of \
                 header fields, or fields HTTP/2 does not allow",
                MAX_RESPONSE_HEADER_LIST >> 10
            ),
        )
        .with_cause(e);
    }
    if !e.is_connect() {
        // What the request's own error says ("connection closed", "frame with invalid
        // size") is only the consequence of how the connection ended.
        match refused() {
            Some(Ending::Alert(alert)) => {
                if let Some(why) = certificate_failure(&alert, ours) {
                    tracing::debug!(error = %e, "connection ended by the server's alert");
                    return Error::new(ErrorKind::Certificate, why);
                }
            }
            Some(Ending::Http1OnHttp2) => {
                tracing::debug!(error = %e, "HTTP/1.1 on an HTTP/2 connection");
                // The same on every connection: not retried.
                return Error::new(ErrorKind::Protocol, HTTP1_ON_HTTP2).of_server_setup();
            }
            None => {}
        }
    }
    // A request that failed after connecting (reset, closed early) is a broken connection
    // too, and as worth retrying as one that could not be made.
    let text = if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    Error::new(ErrorKind::Connect, text).with_cause(e)
}

/// The kind of a proxy's refusal to carry a request.
fn proxy_kind(failed: &proxy::ProxyError) -> ErrorKind {
    match failed {
        proxy::ProxyError::Refused { status: 407, .. } => ErrorKind::Unauthorized,
        // The registry's own statuses for the moment (`Error::is_transient`): a proxy
        // that cannot reach the registry, or is overloaded, like a broken connection,
        // worth another try. Not 501 or 505, a proxy that does not tunnel at all: the same
        // next time, which as a broken connection was retried and exited 75.
        proxy::ProxyError::Refused {
            status: 408 | 500 | 502 | 503 | 504,
            ..
        } => ErrorKind::Connect,
        // A proxy throttling its clients: for the moment, as a registry's 429 is. Taken
        // for a rule of the proxy's, it failed at once, and exited 2 as for a
        // configuration to change, where a later run gets through.
        proxy::ProxyError::Refused { status: 429, .. } => ErrorKind::TooManyRequests,
        // The proxy's rules (403), or a proxy that does not tunnel (405, 501): nothing of
        // the registry's, and the same next time.
        proxy::ProxyError::Refused { .. } => ErrorKind::ProxyRefused,
        proxy::ProxyError::Unsupported { .. } => ErrorKind::InvalidInput,
        proxy::ProxyError::SocksCredentials { .. } => ErrorKind::Unauthorized,
        proxy::ProxyError::SocksUnusable { .. } => ErrorKind::InvalidInput,
        // The proxy's rules, or a request it cannot carry: the same next time.
        proxy::ProxyError::SocksRefused {
            code: 2 | 7 | 8, ..
        } => ErrorKind::ProxyRefused,
        // Unreachable, refused, timed out beyond the proxy: like a broken connection,
        // worth another try.
        proxy::ProxyError::SocksRefused { .. } => ErrorKind::Connect,
    }
}

/// Whether `e`, a body's failure, is its HTTP/2 connection ended under it with no word:
/// closed by hyper for going silent (a keep-alive PING it did not answer in time), or by
/// the server with a clean end of file and no GOAWAY. h2 fails the streams of both with a
/// bare `BrokenPipe`, which [`ended_under_body`] tells apart; told as a broken pipe, it
/// read like a local fault. (A reset, an unclean end of file or a GOAWAY is its own error.)
pub(super) fn went_silent(e: &(dyn std::error::Error + 'static)) -> bool {
    causes_include(e, |h2: &h2::Error| {
        h2.get_io()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// What ended a body's HTTP/2 connection ([`went_silent`]). The two causes leave the same
/// error, and the time since the last frame does not tell them apart: the keep-alive runs
/// on the connection's task, also while nobody reads the body (stdout backed up), and a
/// server may close after a long wait as well as at once.
pub(super) fn ended_under_body(idle_timeout: Duration) -> String {
    format!(
        "body interrupted: the HTTP/2 connection ended with no GOAWAY or reset: the server \
         closed it, or it went silent (keep-alive timed out: no answer to a PING within \
         {}, sent after {} without a frame; {})",
        crate::duration::Written(idle_timeout / 4),
        crate::duration::Written(idle_timeout / 2),
        Setting::IdleTimeout
    )
}

/// The connection's reads stopped, somewhere in `e`'s causes, for bringing no content
/// ([`super::limit::Fruitless`]): what it said, to be shown as the failure.
pub(super) fn fruitless(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(e);
    while let Some(s) = source {
        let said = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<super::limit::Fruitless>());
        if let Some(said) = said {
            return Some(said.to_string());
        }
        source = s.source();
    }
    None
}

/// Whether one of `e`'s causes is a `T` for which `test` holds.
fn causes_include<T: std::error::Error + 'static>(
    e: &(dyn std::error::Error + 'static),
    test: impl Fn(&T) -> bool,
) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<T>().is_some_and(&test) {
            return true;
        }
        source = s.source();
    }
    false
}

/// Whether the resolver said, somewhere in `e`'s causes, that the host's name does not
/// exist. The system resolver's failures reach us as `io::Error`s that std words as
/// "failed to lookup address information: <gai_strerror>", in English (Rust programs keep
/// the C locale). Only the answers that a name does not exist, or has no address, count
/// (`EAI_NONAME`, `EAI_NODATA`, in glibc's and musl's words): they will be the same in a
/// moment. Anything else, "Temporary failure in name resolution" (no DNS server answered)
/// first of all, and any wording not known here, is a failure to connect, retried.
fn names_no_host(e: &(dyn std::error::Error + 'static)) -> bool {
    const NO_SUCH_NAME: [&str; 4] = [
        "Name or service not known",
        "No address associated with hostname",
        "Name does not resolve",
        "Name has no usable address",
    ];
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let text = io.to_string();
            if let Some(why) = text.strip_prefix("failed to lookup address information: ") {
                return NO_SUCH_NAME.iter().any(|n| why.starts_with(n));
            }
        }
        source = s.source();
    }
    false
}

/// The rustls error behind `e`, if it is one: TLS errors reach us wrapped in `io::Error`s
/// (two deep through hyper-rustls), whose `source` skips the wrapped error itself.
pub(super) fn rustls_error<'a>(
    mut e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// The verifier's report that it has no CA at all to verify with, if `e` is one.
fn no_trust_anchors(e: &rustls::Error) -> Option<&tls::NoTrustAnchors> {
    match e {
        rustls::Error::Other(other) => other.0.downcast_ref(),
        _ => None,
    }
}

/// What to do without a single CA certificate: the system's, or the registry's own.
fn no_ca_certificates(none: &tls::NoTrustAnchors) -> String {
    let mut said = format!(
        "no CA certificates to verify the server's certificate with: the system has none \
         (install its CA certificates, as the ca-certificates package, or name them with \
         SSL_CERT_FILE or SSL_CERT_DIR) and none was given (trust the registry's CA with \
         {TRUST_WITH})"
    );
    if !none.store.is_empty() {
        said.push_str("; reading the system's: ");
        said.push_str(&tls::store_failures(&none.store));
    }
    said
}

/// A server that chose HTTP/2 by ALPN and answered in HTTP/1.1.
const HTTP1_ON_HTTP2: &str = "the server chose HTTP/2 by ALPN but answered in HTTP/1.1: a \
     proxy or load balancer in front of the registry offers h2 (its `alpn` setting) for a \
     server that speaks only HTTP/1.1, which dist, like Go's and curl's clients, cannot use";

/// The most common way to meet a registry without TLS: an address that is not loopback,
/// so dist speaks HTTPS, and the server answers the TLS greeting in plain HTTP.
const NOT_TLS: &str = concat!(
    "the server does not speak TLS (a plain-HTTP registry?); for one without TLS, use ",
    setting_name!(plain_http),
    ", an http:// locator or `plain-http` in hosts.toml"
);

/// [`NOT_TLS`] at a redirect's target: the registry chose its `https://`, so neither
/// `--plain-http` nor the locator's scheme, which the advice for a registry names, reaches it.
pub(crate) const NOT_TLS_AT_REDIRECT_TARGET: &str = "the redirect's target does not speak TLS: \
     the registry sent the request to an https:// URL (a blob store or CDN) on a server that \
     answers in plain HTTP, which only the registry's configuration can change";

/// A server that has no certificate for the name asked for (by SNI): a host name mistyped,
/// or one that the server, often a load balancer or ingress routing by name, is not set up
/// for. It will say the same on every connection.
const NOT_SERVED: &str = "the server does not serve this host name over TLS \
     (UnrecognisedName): a mistyped host name, or one the server (a load balancer or ingress \
     in front of the registry, which routes by name) is not set up for; to an IP address, \
     dist sends no name at all";

/// Whether the server ended the handshake saying that it does not serve the name asked for
/// (RFC 6066, 3): nginx's `ssl_reject_handshake`, a load balancer routing by name.
fn is_not_served(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::AlertReceived(rustls::AlertDescription::UnrecognisedName)
    )
}

/// Whether the first bytes back were not a TLS record at all, as when an HTTP server
/// answers a TLS greeting with `HTTP/1.1 400`.
fn is_not_tls(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
    )
}

/// What a handshake refused for want of a TLS version or cipher suite in common says, in
/// words: the alert's name alone ("received fatal alert: HandshakeFailure") told no one
/// what to do, and it was retried, though every attempt meets it again. Go still offers
/// TLS 1.2's CBC suites, so a registry docker pulls from may have only those.
fn incompatible(
    e: &rustls::Error,
    ours: Option<&tls::ClientIdentity>,
    by_address: bool,
) -> Option<String> {
    use rustls::AlertDescription as Alert;
    const OFFERED: &str = "dist offers TLS 1.3, and TLS 1.2 with ECDHE key exchange and \
         AES-GCM or ChaCha20-Poly1305 only";
    match e {
        rustls::Error::AlertReceived(Alert::ProtocolVersion) => Some(format!(
            "the server refused every TLS version dist speaks (ProtocolVersion): it speaks only \
             an older one (TLS 1.0 or 1.1), which dist does not; {OFFERED}"
        )),
        rustls::Error::AlertReceived(
            alert @ (Alert::HandshakeFailure | Alert::InsufficientSecurity),
        ) => {
            // OpenSSL's server under TLS 1.2 says the same of a client certificate it
            // required and was not shown, or refused: nothing in the alert tells them apart.
            let certificate = match ours {
                None => concat!(
                    "it requires a client certificate (",
                    setting_name!(client_identity),
                    ", or certs.d), or "
                )
                .to_string(),
                Some(ours) => format!(
                    "it refused our client certificate {}, or ",
                    ours.cert.display()
                ),
            };
            // TLS sends no name for an IP address (RFC 6066, 3), and a server that picks
            // its certificate by name (a load balancer, an ingress, a shared host) has none
            // to pick without one: many end the handshake so, naming neither.
            let no_name = if by_address {
                "; or, reached by IP address, dist sent it no server name (SNI), which a \
                 server that picks its certificate by name needs: use the host name it serves"
            } else {
                ""
            };
            Some(format!(
                "the server refused the TLS handshake ({alert:?}): {certificate}it has no \
                 cipher suite in common with dist (an older server may offer only CBC or RSA \
                 key exchange suites; {OFFERED}){no_name}"
            ))
        }
        rustls::Error::PeerIncompatible(why) => Some(format!(
            "the server's TLS is not compatible with dist's ({why:?}); {OFFERED}"
        )),
        _ => None,
    }
}

/// What a TLS failure that will not change by retrying says about certificates: ours
/// (`ours`, if we have one) was missing or refused, or the server's is not trusted. (A
/// server's refusal of our certificate shows only as its alert: under TLS 1.3, after the
/// handshake, often read by the connection rather than the request; see [`refusal`](super::refusal).)
fn certificate_failure(e: &rustls::Error, ours: Option<&tls::ClientIdentity>) -> Option<String> {
    use rustls::AlertDescription as Alert;
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
            if other.0.downcast_ref::<tls::UnknownIssuer>().is_some() =>
        {
            let unknown = other.0.downcast_ref::<tls::UnknownIssuer>()?;
            Some(format!(
                "the server's certificate is not trusted: {}",
                unknown_issuer(unknown)
            ))
        }
        rustls::Error::InvalidCertificate(why) => {
            // An unknown issuer, or a self-signed certificate that says it is a CA, is what
            // a registry with a private CA or its own certificate shows.
            let hint = match why {
                rustls::CertificateError::UnknownIssuer | rustls::CertificateError::Other(_) => {
                    concat!(
                        "; trust its CA or its own certificate with ",
                        setting_name!(ca_files),
                        ", `ca` in hosts.toml or certs.d/<host>/*.crt"
                    )
                }
                _ => "",
            };
            Some(format!(
                "the server's certificate is not trusted: {}{hint}",
                certificate_problem(why)
            ))
        }
        rustls::Error::AlertReceived(Alert::CertificateRequired) => {
            Some(CLIENT_CERTIFICATE_REQUIRED.into())
        }
        rustls::Error::AlertReceived(
            alert @ (Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA),
        ) => Some(match ours {
            // With none shown, the server can only mean that it wants one: Go's server, as
            // Debian's docker-registry has it, says BadCertificate for a missing one too.
            None => format!("{CLIENT_CERTIFICATE_REQUIRED}: {alert:?}"),
            Some(ours) => format!(
                "the server refused our client certificate {}: {alert:?}",
                ours.cert.display()
            ),
        }),
        rustls::Error::AlertReceived(Alert::AccessDenied) => Some(access_denied(ours)),
        _ => None,
    }
}

/// What the alert AccessDenied says: the server's access rules refuse this client (RFC
/// 8446, 6.2). It was said as a client certificate required, though with none shown it is
/// no request for one (a server that wants one says CertificateRequired, BadCertificate or
/// HandshakeFailure), and access rules may go by address alone; with ours shown, it may be
/// ours they refuse, if the server asked for it.
fn access_denied(ours: Option<&tls::ClientIdentity>) -> String {
    let denied = "the server denied access in the TLS handshake (AccessDenied): its access \
                  rules refuse this client";
    match ours {
        None => format!("{denied} (by its address, say); dist showed no client certificate"),
        Some(ours) => format!(
            "{denied}: our client certificate {}, or the client otherwise (by its address, \
             say)",
            ours.cert.display()
        ),
    }
}

/// Where a CA or a certificate is trusted for a registry.
const TRUST_WITH: &str = concat!(
    setting_name!(ca_files),
    ", `ca` in hosts.toml or certs.d/<host>/*.crt"
);

/// Which certificate to trust, by the name the user will find in their files, for a
/// certificate issued by an authority not trusted here; and, for one sent without an
/// intermediate, that the chain may be what is wrong, which trusting the root will not cure.
fn unknown_issuer(unknown: &tls::UnknownIssuer) -> String {
    let name = unknown.issuer.as_ref().map(|n| format!("\"{n}\""));
    if unknown.self_signed {
        let name = name.map_or_else(String::new, |n| format!(" ({n})"));
        let rustls_name = if unknown.says_ca {
            "CaUsedAsEndEntity: it says it is a CA"
        } else {
            "UnknownIssuer"
        };
        return format!(
            "it is self-signed{name} and not trusted here ({rustls_name}); trust it with \
             {TRUST_WITH}"
        );
    }
    let issuer = name.unwrap_or_else(|| "its issuer".into());
    if unknown.alone {
        return format!(
            "issued by {issuer}, which is not trusted here, and sent without intermediate \
             certificates (UnknownIssuer); trust {issuer} with {TRUST_WITH}: if it is an \
             intermediate CA, its root is not enough, and the server should send it after \
             its own certificate (its full chain: browsers fetch a missing intermediate, \
             dist, Go and curl do not)"
        );
    }
    format!(
        "the certificates the server sent lead up to {issuer}, which is not trusted here \
         (UnknownIssuer); trust {issuer} with {TRUST_WITH}"
    )
}

pub(crate) const CLIENT_CERTIFICATE_REQUIRED: &str = concat!(
    "the server requires a client certificate (",
    setting_name!(client_identity),
    ", or certs.d)"
);

/// The note on a certificate's failure at a redirect's target: said as the registry's, it
/// sent the user to configure a registry that had taken the connection as it was, or to a
/// certs.d folder for the target that dist never reads.
pub(crate) const AT_REDIRECT_TARGET: &str = "that server is the redirect's target (a blob \
     store or CDN the registry sent the request to), shown the client certificate of the \
     host that redirected there and verified by its CAs: dist reads no certs.d folder for it";

/// What is wrong with a server's certificate, in words where the case is common, with
/// rustls's name for it (which searches well) in any case.
fn certificate_problem(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    let clock = |now: &rustls::pki_types::UnixTime| {
        format!("this machine's clock reads {}", pinned::utc(now.as_secs()))
    };
    let (words, name) = match why {
        E::UnknownIssuer => (
            "issued by an authority not trusted here".into(),
            "UnknownIssuer",
        ),
        // A clock far off (a machine without NTP, a VM restored from a snapshot) makes
        // every certificate expired or not valid yet: the clock's time shows which it is.
        E::ExpiredContext { time, not_after } => (
            format!(
                "expired on {}; {}",
                pinned::utc(not_after.as_secs()),
                clock(time)
            ),
            "Expired",
        ),
        E::Expired => ("expired".into(), "Expired"),
        E::NotValidYetContext { time, not_before } => (
            format!(
                "not valid before {}; {}",
                pinned::utc(not_before.as_secs()),
                clock(time)
            ),
            "NotValidYet",
        ),
        E::NotValidYet => ("not valid yet".into(), "NotValidYet"),
        E::NotValidForNameContext {
            expected,
            presented,
        } => (issued_for(expected, presented), "NotValidForName"),
        E::NotValidForName => ("not issued for this host name".into(), "NotValidForName"),
        E::Revoked => ("revoked".into(), "Revoked"),
        E::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => (
            "a CA certificate served as the server's own".into(),
            "CaUsedAsEndEntity",
        ),
        _ => return format!("{why:?}"),
    };
    format!("{words} ({name})")
}

/// Which names a certificate was issued for, and which was asked for: webpki lists them in
/// its `Debug` forms (`DnsName("a.example")`, `IpAddress(10.0.0.1)`).
fn issued_for(expected: &rustls::pki_types::ServerName<'_>, presented: &[String]) -> String {
    use rustls::pki_types::ServerName;
    let names: Vec<String> = presented
        .iter()
        .map(|p| {
            let bare = p
                .strip_prefix("DnsName(\"")
                .and_then(|n| n.strip_suffix("\")"))
                .or_else(|| p.strip_prefix("IpAddress(")?.strip_suffix(')'))
                .unwrap_or(p);
            crate::server_text::cut_to(crate::server_text::printable(bare).into_owned(), 100)
        })
        .take(10)
        .collect();
    let (asked, by_address) = match expected {
        ServerName::DnsName(name) => (name.as_ref().to_string(), false),
        ServerName::IpAddress(ip) => (std::net::IpAddr::from(*ip).to_string(), true),
        other => (format!("{other:?}"), false),
    };
    let issued = if names.is_empty() {
        "issued for no host name".to_string()
    } else {
        format!("issued for {}", names.join(", "))
    };
    let mut said = format!("{issued}, not for {asked}");
    if by_address {
        // Go says "doesn't contain any IP SANs": the cure is the same.
        said.push_str(
            ", which a certificate must name as an IP address (an IP SAN); or use a name it \
             was issued for",
        );
    }
    said
}

#[cfg(test)]
mod tests {
    /// Each name rustls refuses is said what is wrong with it: all were said to end in a
    /// number.
    #[test]
    fn a_name_tls_refuses_is_said_why() {
        let long = format!("{}.example", "a".repeat(250));
        let label = format!("{}.example", "b".repeat(64));
        let cases = [
            ("10.0.0.256", "it ends in a number"),
            ("127.1", "it ends in a number"),
            ("reg.0x1f.", "it ends in a number"),
            (
                long.as_str(),
                "it is 258 bytes long, and DNS allows at most 253",
            ),
            (
                label.as_str(),
                "is 64 bytes long, and DNS allows at most 63",
            ),
            ("reg!.example", "it holds '!', which no DNS name does"),
            ("reg..example", "no empty label"),
            ("-reg.example", "begins or ends with a hyphen"),
        ];
        for (host, said) in cases {
            assert!(
                rustls::pki_types::ServerName::try_from(host).is_err(),
                "{host}: rustls takes it"
            );
            let why = super::not_a_dns_name(host);
            assert!(why.contains(said), "{host}: {why}");
        }
    }

    use super::*;

    /// A proxy's refusal of a tunnel is for the moment when the registry's own answer of
    /// that status would be ([`Error::is_transient`]): a 502 or 503 is retried, and exits
    /// 75; a 501 or 505 (a proxy that does not tunnel) was too, as any 5xx was, and is
    /// the same on every try.
    #[test]
    fn a_proxy_s_refusal_is_for_the_moment_as_the_registry_s_status_would_be() {
        let refused = |status| proxy::ProxyError::Refused {
            proxy: "127.0.0.1:3128".into(),
            target: "registry.test:443".into(),
            status,
        };
        for status in [403, 405, 407, 408, 429, 500, 501, 502, 503, 504, 505] {
            let proxied = Error::new(proxy_kind(&refused(status)), "refused");
            // A registry's 429 is its own kind, as `status_error` makes it.
            let direct = match status {
                429 => ErrorKind::TooManyRequests,
                _ => ErrorKind::Http,
            };
            let direct = Error::new(direct, "answered").with_status(status);
            assert_eq!(proxied.is_transient(), direct.is_transient(), "{status}");
        }
        // A proxy throttling its clients asks for a pause, as a registry's 429 does: no
        // rule of the proxy's, nor a configuration to change (exit status 2).
        assert_eq!(proxy_kind(&refused(429)), ErrorKind::TooManyRequests);
        assert_eq!(proxy_kind(&refused(407)), ErrorKind::Unauthorized);
        assert_eq!(proxy_kind(&refused(403)), ErrorKind::ProxyRefused);
        assert_eq!(proxy_kind(&refused(501)), ErrorKind::ProxyRefused);
        let socks = |code| proxy::ProxyError::SocksRefused {
            proxy: "127.0.0.1:1080".into(),
            target: "registry.test:443".into(),
            code,
        };
        // Its rules, or a command it does not carry: the same next time.
        for code in [2, 7, 8] {
            assert_eq!(proxy_kind(&socks(code)), ErrorKind::ProxyRefused, "{code}");
        }
        // Host unreachable, refused beyond the proxy: for the moment.
        assert_eq!(proxy_kind(&socks(4)), ErrorKind::Connect);
    }

    /// A connection ended under a body with no word names both causes h2 leaves
    /// alike, and the keep-alive's times: "broken pipe" named none.
    #[test]
    fn a_connection_ended_under_a_body_names_both_causes() {
        let said = ended_under_body(Duration::from_secs(20));
        assert!(said.contains("the server closed it"), "{said}");
        assert!(said.contains("went silent (keep-alive timed out"), "{said}");
        assert!(said.contains("within 5s, sent after 10s"), "{said}");
    }

    #[test]
    fn only_a_name_that_does_not_exist_is_an_unknown_host() {
        let gai = |why: &str| {
            std::io::Error::other(format!("failed to lookup address information: {why}"))
        };
        assert!(names_no_host(&gai("Name or service not known")));
        assert!(names_no_host(&gai("No address associated with hostname")));
        assert!(names_no_host(&gai("Name does not resolve")));
        assert!(!names_no_host(&gai("Temporary failure in name resolution")));
        assert!(!names_no_host(&gai(
            "Non-recoverable failure in name resolution"
        )));
        assert!(!names_no_host(&gai("a wording not known here")));
        assert!(!names_no_host(&std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        )));

        // Found among the causes, as hyper-util nests it.
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dns error")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert!(names_no_host(&Wrapper(gai("Name or service not known"))));
    }

    /// AccessDenied is the server's access rules refusing the client: with no client
    /// certificate shown, it was said as one required, which sent the user after a
    /// certificate the server never asked for.
    #[test]
    fn access_denied_is_no_client_certificate_required() {
        let denied = rustls::Error::AlertReceived(rustls::AlertDescription::AccessDenied);
        let without = certificate_failure(&denied, None).unwrap();
        assert_eq!(
            without,
            "the server denied access in the TLS handshake (AccessDenied): its access rules \
             refuse this client (by its address, say); dist showed no client certificate"
        );
        let ours = tls::ClientIdentity {
            cert: "/etc/dist/client.pem".into(),
            key: "/etc/dist/client.key".into(),
        };
        let with = certificate_failure(&denied, Some(&ours)).unwrap();
        assert!(
            with.contains("(AccessDenied)")
                && with.contains("/etc/dist/client.pem, or the client otherwise"),
            "{with}"
        );
        // The alerts that are about certificates still say so.
        let bad = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        assert!(certificate_failure(&bad, None)
            .unwrap()
            .starts_with(CLIENT_CERTIFICATE_REQUIRED));
    }

    #[test]
    fn certificate_problems_are_told_in_words() {
        use rustls::CertificateError as E;
        assert_eq!(
            certificate_problem(&E::UnknownIssuer),
            "issued by an authority not trusted here (UnknownIssuer)"
        );
        assert_eq!(certificate_problem(&E::Expired), "expired (Expired)");
        assert_eq!(
            certificate_problem(&E::NotValidForName),
            "not issued for this host name (NotValidForName)"
        );
        assert_eq!(certificate_problem(&E::BadSignature), "BadSignature");

        // With rustls's context: dates, not seconds since 1970; names, not their `Debug`.
        let at = rustls::pki_types::UnixTime::since_unix_epoch;
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(
            certificate_problem(&E::ExpiredContext {
                time: at(day * 20_000),
                not_after: at(day * 19_999),
            }),
            "expired on 2024-10-03 00:00:00 UTC; this machine's clock reads \
             2024-10-04 00:00:00 UTC (Expired)"
        );
        assert_eq!(
            certificate_problem(&E::NotValidYetContext {
                time: at(day * 10_000),
                not_before: at(day * 20_000),
            }),
            "not valid before 2024-10-04 00:00:00 UTC; this machine's clock reads \
             1997-05-19 00:00:00 UTC (NotValidYet)"
        );
        let name = |n: &str| rustls::pki_types::ServerName::try_from(n.to_string()).unwrap();
        assert_eq!(
            certificate_problem(&E::NotValidForNameContext {
                expected: name("registry.example"),
                presented: vec![
                    "DnsName(\"other.example\")".into(),
                    "DnsName(\"*.example.net\")".into()
                ],
            }),
            "issued for other.example, *.example.net, not for registry.example (NotValidForName)"
        );
        assert_eq!(
            certificate_problem(&E::NotValidForNameContext {
                expected: name("10.0.0.5"),
                presented: vec![
                    "DnsName(\"registry.example\")".into(),
                    "IpAddress(10.0.0.6)".into()
                ],
            }),
            "issued for registry.example, 10.0.0.6, not for 10.0.0.5, which a certificate must \
             name as an IP address (an IP SAN); or use a name it was issued for (NotValidForName)"
        );
    }
}
