//! The token endpoint of the Docker/OCI bearer-token flow.
//!
//! A registry's `Bearer realm=…,service=…` challenge names the endpoint. We ask it for
//! `scope=repository:<name>:pull`: anonymously, with Basic credentials, or (for an identity
//! token) by the OAuth2 refresh-token grant. The reply carries `access_token` or `token`
//! and `expires_in` (60 s when absent, as the spec says).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use serde::Deserialize;

use super::challenge::Challenge;
use super::clock::Stamp;
use super::credentials::Credential;
use crate::error::{Error, ErrorKind, Result};
use crate::reference::is_loopback;
use crate::registry::{coding, MAX_ERROR_BODY};
use crate::server_text::without_bom;
use crate::transport::{self, Outgoing, Transport};

/// The lifetime assumed when the token endpoint does not say.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a token is trusted, whatever the server says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Bound on a token response; a JWT with many scopes is a few KiB.
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// A bearer token and when it stops being valid.
#[derive(Clone)]
pub struct Token {
    /// The `Authorization` value, `Bearer <token>`, marked sensitive.
    pub header: HeaderValue,
    /// When it stops being valid, on a clock that counts the time the machine sleeps.
    pub expires_at: Stamp,
    /// How long it was valid for when it was issued.
    pub lifetime: Duration,
    /// The refresh token the OAuth2 refresh-token grant's reply handed out, if it did: an
    /// OAuth2 server may rotate them, and take only the newest for the next grant.
    pub(crate) refresh_token: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("header", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    /// Go clients take any JSON number here, and some servers send -1 or a string.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

impl Reply {
    /// The token: `access_token` when there is one, else `token`. The spec leaves open
    /// which counts when both are there and differ; Docker's client copies `access_token`
    /// over `token`, and registries that send both are tried with Docker's client.
    fn token(self) -> Option<String> {
        let access = self.access_token.filter(|t| !t.is_empty());
        access.or(self.token.filter(|t| !t.is_empty()))
    }
}

/// What `expires_in` says, if it says a positive number of seconds.
fn lifetime_of(expires_in: Option<&serde_json::Value>) -> Option<Duration> {
    let secs = match expires_in? {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    // A server may claim any lifetime; past a day we renew anyway (and an absurd value
    // must not overflow the clock arithmetic).
    (secs >= 1.0).then(|| Duration::from_secs(secs.min(MAX_LIFETIME.as_secs_f64()) as u64))
}

/// What a token request carried and where it went: what its answer is read against.
struct Asked<'a> {
    credential: Option<&'a Credential>,
    /// The realm, without user information: named in every error.
    realm: Uri,
    /// The URL asked, the service and scopes in its query.
    requested: Uri,
}

impl Asked<'_> {
    /// The secrets this request carried, for the answer from `answered` (see [`sent_to`]).
    ///
    /// What the server said instead of a token may repeat the credential traded for it;
    /// read off the credential only then, not for every token.
    fn sent(&self, answered: &Uri) -> super::Sent {
        sent_to(self.credential, &self.realm, &self.requested, answered)
    }
}

/// A token reply's body, read and decoded, with what explains it should it hold no token.
struct Body {
    bytes: Bytes,
    content_type: Option<String>,
    /// Where a redirect led: a login page or captive portal often answers there.
    answered_by: Option<String>,
    /// The coding label not undone, the body read as it came.
    unknown: Option<Error>,
    /// The body ended where its connection closed, as one cut short does.
    ends_at_close: bool,
}

/// Asks the challenge's realm for a token covering `scopes`.
///
/// Credentials go to the realm only over https, or when the realm is the registry's own
/// plain-HTTP origin (`registry_origin`, `scheme://host[:port]` of its API) or on
/// loopback: a registry must not be able to lure a password onto plain HTTP.
pub async fn fetch(
    transport: &Transport,
    challenge: &Challenge,
    scopes: &[String],
    credential: Option<&Credential>,
    registry_origin: &str,
) -> Result<Token> {
    let (realm, realm_uri) = realm_of(challenge)?;
    let credential = credential.filter(|_| may_carry_credentials(&realm_uri, registry_origin));
    // User information in the realm (`https://user:pw@auth.example/token`) goes nowhere
    // in HTTP, and the credentials are withheld from such a realm; left in the URL asked,
    // it named the connection pool's entry, which hyper-util logs at `debug`.
    let without_login = without_user_info(&realm_uri);
    let (realm, realm_uri) = match &without_login {
        Some((text, uri)) => (text.as_str(), uri.clone()),
        None => (realm, realm_uri),
    };
    // `service=""` names none: left out as when missing, as Docker's client does, and a
    // token server that checks the service it is sent refuses an empty one.
    let service = challenge.param("service").filter(|s| !s.is_empty());
    let req = token_request(realm, &realm_uri, service, scopes, credential)?;
    let asked = Asked {
        credential,
        requested: req.url.clone(),
        realm: realm_uri,
    };
    let mut reply = send(transport, req, &asked.realm).await?;
    refuse_redirected_refusal(&reply, &asked.realm)?;
    if !reply.response.status().is_success() {
        return Err(refusal(transport, &mut reply, &asked).await);
    }
    let body = read_body(transport, &mut reply, &asked.realm).await?;
    let received = Stamp::now();
    token_of(&body, received, &asked, &reply.url)
}

/// The request for a token: the OAuth2 refresh-token grant for an identity token, else a
/// `GET` of the realm with the service and scopes, Basic credentials if any.
fn token_request(
    realm: &str,
    realm_uri: &Uri,
    service: Option<&str>,
    scopes: &[String],
    credential: Option<&Credential>,
) -> Result<Outgoing> {
    let mut req = match credential {
        Some(Credential::IdentityToken(refresh)) => {
            let mut req = Outgoing::get(realm_uri.clone());
            req.method = Method::POST;
            req.body = Bytes::from(refresh_form(service, scopes, refresh));
            req.headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            req
        }
        _ => {
            let mut req = Outgoing::get(token_url(realm, realm_uri, service, scopes)?);
            if let Some(h) = credential.and_then(Credential::basic_header) {
                req.authorization = Some(
                    HeaderValue::from_str(&h)
                        .map_err(|_| Error::invalid("credential is not a valid header"))?,
                );
            }
            req
        }
    };
    req.headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    // No `Accept-Encoding` would take any coding (RFC 9110, 12.5.3): asked for as it is,
    // as the registry's content is; one coded anyway is decoded below.
    req.headers.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    Ok(req)
}

/// The realm's URL with the service and scopes in its query, as Docker's token protocol
/// asks: one `scope` parameter per scope.
fn token_url(
    realm: &str,
    realm_uri: &Uri,
    service: Option<&str>,
    scopes: &[String],
) -> Result<Uri> {
    let mut query: Vec<(&str, String)> = service
        .map(|service| ("service", service.to_string()))
        .into_iter()
        .collect();
    query.extend(scopes.iter().map(|s| ("scope", s.clone())));
    if query.is_empty() {
        return Ok(realm_uri.clone());
    }
    let sep = if realm.contains('?') { '&' } else { '?' };
    let url = format!("{realm}{sep}{}", encode_form(&query));
    // The realm itself parsed: what breaks the URL is what the challenge added
    // (a service or scope of hundreds of KiB), and the message says so.
    url.parse().map_err(|_| {
        Error::new(
            ErrorKind::Protocol,
            format!(
                "the token request URL for realm {} with the challenge's service \
                 and scope is no valid URL ({} bytes)",
                crate::error::redact_url(realm),
                url.len()
            ),
        )
        .of_server_setup()
    })
}

/// Sends the token request, once more at once if its kept-alive connection was lost.
///
/// A request lost with a kept-alive connection goes again at once, outside the retry
/// budget, as the registry's own requests do: the token server's connection has sat
/// idle for a token's lifetime when a renewal comes. Not a POST, which may have been
/// taken, as Go's client does not resend one.
async fn send(transport: &Transport, req: Outgoing, shown: &Uri) -> Result<transport::Reply> {
    let sent = match transport.send(req.clone()).await {
        Err(e) if req.method == Method::GET && transport::lost_before_answer(&e) => {
            tracing::debug!(realm = %transport::redact(shown), error = %e, "connection lost before an answer; sending again");
            transport.send(req).await
        }
        sent => sent,
    };
    sent.map_err(|e| e.with_url(shown))
}

/// Refuses a 401 or 403 from where a redirect led: credentials stay with the realm's
/// origin, so this refusal is of a request that carried none, and "log in again", as
/// for the realm's own 401, would never help.
fn refuse_redirected_refusal(reply: &transport::Reply, shown: &Uri) -> Result<()> {
    let status = reply.response.status();
    if reply.same_origin || !matches!(status.as_u16(), 401 | 403) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Protocol,
        format!(
            "the token request was redirected to {}, which answered {status}; \
             credentials go only to the realm's own scheme, host and port",
            transport::redact(&reply.url)
        ),
    )
    .with_status(status.as_u16())
    .with_url(shown)
    .of_server_setup())
}

/// The error a token server's refusal (a status other than success) is: its kind judged
/// from the status and what the server said, the secrets sent kept out of its message.
async fn refusal(transport: &Transport, reply: &mut transport::Reply, asked: &Asked<'_>) -> Error {
    let status = reply.response.status();
    // Only a proxy forwarding the plain-http token request answers this: its own
    // credentials were refused, not the login, nor its absence (as for the registry's
    // requests, `registry::status`).
    if status == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Error::new(
            ErrorKind::Unauthorized,
            "the proxy answered 407 Proxy Authentication Required to the token request \
             (proxy credentials missing or refused; they go in the proxy URL)",
        )
        .with_status(407)
        .of_proxy_login()
        .with_url(&asked.realm);
    }
    // Docker Hub's token service sends 429 with `Retry-After` as its registry does.
    let retry_after = crate::retry::retry_after(reply.response.headers());
    let codings = coding::codings(reply.response.headers());
    let body = reply.response.body_mut();
    let text = transport::read_prefix(transport, body, MAX_ERROR_BODY).await;
    let text = coding::readable(text, codings, MAX_ERROR_BODY).await;
    let traded = matches!(asked.credential, Some(Credential::IdentityToken(_)));
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        // RFC 6749's answer to a refresh token the server no longer takes: a refusal
        // of the credentials like a 401, which its 400 status would hide.
        400 if traded && String::from_utf8_lossy(&text).contains("invalid_grant") => {
            ErrorKind::Unauthorized
        }
        403 => ErrorKind::Denied,
        429 => ErrorKind::TooManyRequests,
        _ => ErrorKind::Http,
    };
    let mut msg = format!("token request answered {status}");
    let mut sent = asked.sent(&reply.url);
    sent.extend_header(transport.proxy_authorization(&reply.url).as_ref());
    let said = crate::server_text::error_detail_hiding(&text, &status.to_string(), &sent);
    if !said.is_empty() {
        msg = format!("{msg}: {said}");
    }
    Error::new(kind, msg)
        .with_status(status.as_u16())
        .with_retry_after(retry_after)
        .with_url(&asked.realm)
}

/// Reads a successful reply's body, decoded, with what its headers say of it.
async fn read_body(
    transport: &Transport,
    reply: &mut transport::Reply,
    shown: &Uri,
) -> Result<Body> {
    let h = reply.response.headers();
    let content_type = h
        .get(http::header::CONTENT_TYPE)
        .map(|v| crate::server_text::one_line(&String::from_utf8_lossy(v.as_bytes())));
    // A login page or captive portal often answers after a redirect elsewhere.
    let answered_by = (!reply.same_origin).then(|| transport::redact(&reply.url));
    // A label that names no coding dist undoes is often no coding at all
    // (`Content-Encoding: UTF-8`, meant as the charset) on plain JSON, which Docker's
    // client, undoing no coding it did not ask for, reads as it came: so is it read, and
    // the error told only if it is no JSON.
    let (codings, unknown) = match coding::codings(h) {
        Ok(codings) => (codings, None),
        Err(e) => {
            tracing::debug!(error = %e, "reading a token reply as it came");
            (Vec::new(), Some(e))
        }
    };
    // An HTTP/1 body with no length declared ends where its connection closed, as one cut
    // short by a dropped connection does: JSON that ends early there may be either.
    let ends_at_close = reply.response.version() < http::Version::HTTP_2
        && !h.contains_key(http::header::CONTENT_LENGTH)
        && !h.contains_key(http::header::TRANSFER_ENCODING);
    let body = reply.response.body_mut();
    let bytes = transport::read_limited(transport, body, MAX_TOKEN_RESPONSE)
        .await
        .map_err(|e| e.with_url(shown))?;
    let bytes = coding::decode_whole(bytes, &codings, MAX_TOKEN_RESPONSE, "token response")
        .await
        .map_err(|e| e.with_url(shown))?;
    Ok(Body {
        bytes,
        content_type,
        answered_by,
        unknown,
        ends_at_close,
    })
}

/// The token a reply's body holds, valid from `received`, or why it holds none.
fn token_of(body: &Body, received: Stamp, asked: &Asked<'_>, answered: &Uri) -> Result<Token> {
    let shown = &asked.realm;
    let bytes = &body.bytes;
    let reply = parse_reply(body, asked, answered)?;
    let lifetime = lifetime_of(reply.expires_in.as_ref()).unwrap_or(DEFAULT_LIFETIME);
    let refresh_token = reply.refresh_token.clone().filter(|t| {
        !t.is_empty() && matches!(asked.credential, Some(Credential::IdentityToken(_)))
    });
    let token = reply.token().ok_or_else(|| {
        let sent = asked.sent(answered);
        let said = match sent.is_empty() {
            true => tokenless_reply(bytes),
            false => sent.hide(&tokenless_reply(
                sent.hide(&String::from_utf8_lossy(bytes)).as_bytes(),
            )),
        };
        Error::new(ErrorKind::Protocol, said)
            .with_url(shown)
            .of_server_setup()
    })?;
    let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Error::new(ErrorKind::Protocol, "token is not a valid header value")
            .with_url(shown)
            .of_server_setup()
    })?;
    header.set_sensitive(true);
    tracing::debug!(realm = %transport::redact(shown), lifetime_s = lifetime.as_secs(), "got bearer token");
    Ok(Token {
        header,
        expires_at: received + lifetime,
        lifetime,
        refresh_token,
    })
}

/// The reply's JSON, or an error saying what came instead, the secrets sent kept out.
fn parse_reply(body: &Body, asked: &Asked<'_>, answered: &Uri) -> Result<Reply> {
    let bytes = &body.bytes;
    serde_json::from_slice(without_bom(bytes)).map_err(|e| {
        let sent = asked.sent(answered);
        let hidden = sent.hide(&String::from_utf8_lossy(bytes));
        let mut msg = sent.hide(&unreadable_reply(
            hidden.as_bytes(),
            body.content_type.as_deref(),
            &e,
        ));
        if let Some(unknown) = &body.unknown {
            msg = format!("{msg}; {}", unknown.reason());
        }
        if let Some(other) = &body.answered_by {
            msg = format!("{msg} (answered by {other}, after a redirect)");
        }
        let err = Error::new(ErrorKind::Protocol, msg).with_url(&asked.realm);
        // The token service's setup, which every request meets; not an answer that may
        // have been cut short, which the next one may not be.
        match e.is_eof() && body.ends_at_close {
            true => err,
            false => err.of_server_setup(),
        }
    })
}

/// The secrets a token request for `asked` carried, to be kept out of what the server at
/// `answered` said: the credential traded, the realm's own query (`?token=…`, which the
/// challenge gave and dist did not write), and the query of a URL a redirect led it to.
fn sent_to(
    credential: Option<&Credential>,
    realm: &Uri,
    asked: &Uri,
    answered: &Uri,
) -> super::Sent {
    let mut sent = super::Sent::credential(credential);
    sent.extend_query(realm, "");
    if answered != asked {
        sent.extend_query(answered, &asked.to_string());
    }
    sent
}

/// `uri` without the user information of its authority, as text and parsed; `None` when
/// it has none.
fn without_user_info(uri: &Uri) -> Option<(String, Uri)> {
    let authority = uri.authority()?.as_str();
    let (_, host) = authority.rsplit_once('@')?;
    let scheme = uri.scheme_str()?;
    let rest = uri.path_and_query().map_or("", |p| p.as_str());
    let text = format!("{scheme}://{host}{rest}");
    let parsed = text.parse().ok()?;
    Some((text, parsed))
}

/// The realm `challenge` names, as given and as the http(s) URL a token is asked at; an
/// error when it names none, or one that is no such URL.
pub(crate) fn realm_of(challenge: &Challenge) -> Result<(&str, Uri)> {
    let realm = challenge.param("realm").ok_or_else(|| {
        Error::new(ErrorKind::Protocol, "Bearer challenge without realm").of_server_setup()
    })?;
    let parsed: Option<Uri> = realm.parse().ok();
    let uri = parsed
        .clone()
        // `https://:5000/token` and `:99999` parse: the token was asked of no name, or of
        // another server than the one the realm names.
        .filter(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && crate::transport::names_a_server(u)
        })
        .ok_or_else(|| {
            let shown = crate::error::redact_url(realm);
            let why = match parsed.as_ref().is_some_and(crate::transport::port_0) {
                true => format!(": {}", crate::reference::PORT_0),
                false => String::new(),
            };
            Error::new(
                ErrorKind::Protocol,
                format!("bad token realm {shown:?}{why}"),
            )
            .of_server_setup()
        })?;
    Ok((realm, uri))
}

/// What a token endpoint's 200 JSON `body` without a token said: its error messages
/// (servers that answer a refusal with 200 and an OAuth2 `error`), else the names of its
/// fields, which tell a realm that is no token endpoint from one that names the token
/// otherwise. Field values are never shown: one of them may be a token after all.
fn tokenless_reply(body: &[u8]) -> String {
    const SAID: &str = "token response has no token";
    let body = without_bom(body);
    if let Some(said) = crate::server_text::json_error(body) {
        return format!("{SAID}: {said}");
    }
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
        return SAID.to_string();
    };
    // A name that could be a token is left out like a value, and so is one in other
    // characters than a field name's.
    let plain = |k: &&String| {
        !tokenish(k)
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut names: Vec<&str> = fields.keys().filter(plain).map(String::as_str).collect();
    if names.len() < fields.len() {
        names.push("…");
    }
    if names.is_empty() {
        return format!("{SAID} (an empty JSON object)");
    }
    crate::server_text::one_line(&format!("{SAID} (its fields: {})", names.join(", ")))
}

/// Why a token endpoint's 200 `body` of `content_type` gave no token reply (`e`), with what
/// it said when that cannot be a token: an HTML page (a captive portal, a single sign-on
/// login, a load balancer's maintenance page, which dist cannot tell apart) by its
/// `<title>` alone, and prose (a proxy's notice) as one short line. A body
/// that begins as JSON does, or holds a word that could be a token (a bare token, a form,
/// a JWT in text), is not shown: JSON broken by a trailing comma still holds its token.
/// Neither is serde's own message, which quotes a string it did not expect.
fn unreadable_reply(body: &[u8], content_type: Option<&str>, e: &serde_json::Error) -> String {
    let typed = content_type.map_or("no Content-Type".to_string(), |t| {
        format!("Content-Type {t}")
    });
    let text = String::from_utf8_lossy(without_bom(body));
    let text = text.trim();
    if text.is_empty() {
        return format!("token response is empty ({typed})");
    }
    if text.starts_with(['{', '[', '"']) {
        let what = match e.classify() {
            serde_json::error::Category::Data => "JSON without a token reply's fields",
            _ => "broken JSON",
        };
        return format!(
            "token response is {what} ({typed}; at line {} column {}); not shown, as it may \
             hold a token",
            e.line(),
            e.column()
        );
    }
    if crate::server_text::looks_like_html(text) {
        let title = crate::server_text::excerpt(text.as_bytes(), "");
        let title = if title.is_empty() {
            String::new()
        } else {
            format!(": {title}")
        };
        return format!(
            "token response is an HTML page, not JSON ({typed}){title}; a login page, a \
             network's portal or a maintenance page answered for the token service"
        );
    }
    if may_be_a_token(text) {
        return format!("token response is not JSON ({typed}); not shown, as it may hold a token");
    }
    let said = crate::server_text::one_line(text);
    format!("token response is not JSON ({typed}): {said}")
}

/// Whether `text` could carry a token: a word without white space (a bare token, a
/// form-encoded reply) or a word long enough to be one (an opaque token, a JWT).
fn may_be_a_token(text: &str) -> bool {
    !text.contains(char::is_whitespace)
        || text
            .split(|c: char| c.is_whitespace() || "\"'`:;,&<>()[]{}".contains(c))
            .any(tokenish)
}

/// Whether the word `w` is long enough, in a token's characters, to be an opaque token or
/// a JWT.
fn tokenish(w: &str) -> bool {
    w.len() >= 20
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
}

/// The OAuth2 refresh-token grant's form. OAuth2 (RFC 6749, 3.3) takes one `scope` of
/// space-separated scopes, where Docker's GET takes one parameter per scope.
fn refresh_form(service: Option<&str>, scopes: &[String], refresh: &str) -> String {
    let mut form: Vec<(&str, String)> = service
        .map(|service| ("service", service.to_string()))
        .into_iter()
        .collect();
    form.push(("scope", scopes.join(" ")));
    form.push(("grant_type", "refresh_token".into()));
    form.push(("refresh_token", refresh.to_string()));
    form.push(("client_id", "dist".into()));
    encode_form(&form)
}

/// `application/x-www-form-urlencoded`, which is also what a query string wants.
pub(crate) fn encode_form(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode(k, &mut out);
        out.push('=');
        percent_encode(v, &mut out);
    }
    out
}

/// Whether [`fetch`] would send credentials to the realm `challenge` names: over https,
/// to the registry's own plain-HTTP origin, or on loopback. False for a realm that is not
/// a URL.
pub fn credentials_may_go(challenge: &Challenge, registry_origin: &str) -> bool {
    challenge
        .param("realm")
        .and_then(|realm| realm.parse::<Uri>().ok())
        .is_some_and(|realm| may_carry_credentials(&realm, registry_origin))
}

/// Why credentials are kept from a token realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Withheld {
    /// The realm's address has user information before its host (`user@`).
    UserInfo,
    /// The realm is plain HTTP, and not the registry's own plain-HTTP origin.
    PlainHttp,
}

impl Withheld {
    /// What is wrong with the realm, to follow its address in a message.
    pub(crate) fn says(self) -> &'static str {
        match self {
            Withheld::UserInfo => {
                "whose address has user information before its host ('…@'), which can \
                 hide the host it leads to"
            }
            Withheld::PlainHttp => "which is plain HTTP elsewhere than the registry itself",
        }
    }
}

/// Why credentials may not go to the token realm `realm` ([`may_carry_credentials`]);
/// `None` when they may.
pub(crate) fn withheld(realm: &Uri, registry_origin: &str) -> Option<Withheld> {
    let realm_host = realm.authority().map(|a| a.as_str()).unwrap_or("");
    // The authority's user information would pass for its host below (`[::1]@evil.example`
    // reads as loopback), sending the password in clear to the host after the `@`.
    if realm_host.contains('@') {
        return Some(Withheld::UserInfo);
    }
    let may = realm.scheme_str() == Some("https")
        || is_loopback(realm_host)
        || registry_origin
            .strip_prefix("http://")
            .is_some_and(|registry_host| registry_host == realm_host);
    (!may).then_some(Withheld::PlainHttp)
}

/// Whether credentials may go to the token realm `realm`: over https; or over plain HTTP
/// to the origin of the registry's API (`registry_origin`, `scheme://host[:port]`) when
/// that is plain HTTP itself, which the credentials already cross; or to loopback, which
/// crosses no network. An https registry's realm at `http://` on its own host name is
/// another origin (port 80, in clear), as a registry behind a TLS proxy that believes it
/// is served over plain HTTP names it.
fn may_carry_credentials(realm: &Uri, registry_origin: &str) -> bool {
    withheld(realm, registry_origin).is_none()
}

/// `value` as [`encode_form`] writes it in a form or query string.
pub(super) fn form_encoded(value: &str) -> String {
    let mut out = String::new();
    percent_encode(value, &mut out);
    out
}

fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A realm of no host (`https://:5000/token`) is no token endpoint, as a redirect's
    /// or a mirror's URL of none is not (found by tests/properties.rs for those).
    #[test]
    fn a_realm_of_no_host_is_refused() {
        for realm in ["https://:5000/token", "http://:/t"] {
            let header = format!("Bearer realm=\"{realm}\",service=s");
            let ch = &crate::auth::challenge::parse(&header)[0];
            let e = realm_of(ch).unwrap_err();
            assert!(e.to_string().contains("bad token realm"), "{realm}: {e}");
        }
        let ch = &crate::auth::challenge::parse("Bearer realm=\"https://a.example/t\"")[0];
        assert!(realm_of(ch).is_ok());
    }

    /// A realm whose port is no number up to 65535 was asked at the scheme's default port.
    #[test]
    fn a_realm_whose_port_is_no_number_is_refused() {
        for realm in [
            "https://auth.example:99999/token",
            "http://auth.example:80x/t",
        ] {
            let header = format!("Bearer realm=\"{realm}\",service=s");
            let ch = &crate::auth::challenge::parse(&header)[0];
            let e = realm_of(ch).unwrap_err();
            assert!(e.to_string().contains("bad token realm"), "{realm}: {e}");
        }
        let ch = &crate::auth::challenge::parse("Bearer realm=\"https://a.example:65535/t\"")[0];
        assert!(realm_of(ch).is_ok());
    }

    /// A realm of port 0 was asked, failed as "connection refused" naming `:0`, and was
    /// retried: it is a bad realm, saying the port is 0.
    #[test]
    fn a_realm_of_port_0_is_refused_saying_so() {
        for realm in ["https://auth.example:0/token", "http://[::1]:0/t"] {
            let header = format!("Bearer realm=\"{realm}\",service=s");
            let ch = &crate::auth::challenge::parse(&header)[0];
            let e = realm_of(ch).unwrap_err().to_string();
            assert!(e.contains("bad token realm"), "{realm}: {e}");
            assert!(e.contains("no server listens on port 0"), "{realm}: {e}");
        }
    }

    #[test]
    fn credentials_go_to_a_realm_over_https_or_to_the_registry_itself() {
        let may =
            |realm: &str, registry: &str| may_carry_credentials(&realm.parse().unwrap(), registry);
        assert!(may(
            "https://auth.example.com/token",
            "https://registry.example.com"
        ));
        assert!(may(
            "http://registry.example.com:5000/token",
            "http://registry.example.com:5000"
        ));
        assert!(may(
            "http://127.0.0.1:5001/token",
            "https://registry.example.com"
        ));
        assert!(!may(
            "http://auth.example.com/token",
            "https://registry.example.com"
        ));
        assert!(!may(
            "http://registry.example.com:5001/token",
            "http://registry.example.com:5000"
        ));
        // An https registry's password stays off plain HTTP on its own host name too.
        assert!(!may(
            "http://registry.example.com/token",
            "https://registry.example.com"
        ));
        assert!(!may(
            "http://registry.example.com:443/token",
            "https://registry.example.com:443"
        ));
        // User information before the host is no part of it: the request goes to
        // evil.example, in clear.
        for realm in [
            "http://[::1]@evil.example/token",
            "http://[::1]:80@evil.example/token",
            "http://registry.example.com:5000@evil.example/token",
        ] {
            assert!(!may(realm, "http://registry.example.com:5000"), "{realm}");
        }
        // Which is what is wrong with them, over https too, not plain HTTP.
        let why = |realm: &str| withheld(&realm.parse().unwrap(), "https://r.example");
        assert_eq!(
            why("https://me@auth.example/token"),
            Some(Withheld::UserInfo)
        );
        assert_eq!(why("http://[::1]@evil.example/t"), Some(Withheld::UserInfo));
        assert_eq!(why("http://auth.example/token"), Some(Withheld::PlainHttp));
        assert_eq!(why("https://auth.example/token"), None);
    }

    #[test]
    fn access_token_wins_over_token_as_in_docker() {
        let chosen = |json: &str| serde_json::from_str::<Reply>(json).unwrap().token();
        assert_eq!(
            chosen(r#"{"token":"t","access_token":"a"}"#).as_deref(),
            Some("a")
        );
        assert_eq!(
            chosen(r#"{"token":"t","access_token":""}"#).as_deref(),
            Some("t")
        );
        assert_eq!(chosen(r#"{"token":"t"}"#).as_deref(), Some("t"));
        assert_eq!(chosen(r#"{"access_token":"a"}"#).as_deref(), Some("a"));
        assert_eq!(chosen(r#"{"token":"","access_token":null}"#), None);
    }

    #[test]
    fn a_json_reply_without_a_token_says_what_it_holds_but_no_value() {
        let said = |body: &str| tokenless_reply(body.as_bytes());
        assert_eq!(
            said(r#"{"error":"invalid_scope","error_description":"no such repository"}"#),
            "token response has no token: invalid_scope: no such repository"
        );
        assert_eq!(
            said(r#"{"details":"incorrect username or password"}"#),
            "token response has no token: incorrect username or password"
        );
        let secret = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";
        let odd = said(&format!(
            r#"{{"id_token":"{secret}","scope":"repository:a:pull","{secret}":1,"refresh_token_expires_in":1}}"#
        ));
        assert_eq!(
            odd,
            "token response has no token (its fields: id_token, scope, …)"
        );
        assert_eq!(
            said("{}"),
            "token response has no token (an empty JSON object)"
        );
        assert_eq!(said(r#"["t"]"#), "token response has no token");
    }

    #[test]
    fn lifetimes_as_servers_write_them() {
        let of = |json: &str| lifetime_of(Some(&serde_json::from_str(json).unwrap()));
        assert_eq!(of("300"), Some(Duration::from_secs(300)));
        assert_eq!(of("300.5"), Some(Duration::from_secs(300)));
        assert_eq!(of("\"300\""), Some(Duration::from_secs(300)));
        assert_eq!(of("1e12"), Some(MAX_LIFETIME));
        for unusable in ["-1", "0", "0.5", "null", "\"soon\"", "{}"] {
            assert_eq!(of(unusable), None, "{unusable}");
        }
        assert_eq!(lifetime_of(None), None);
    }

    #[test]
    fn the_refresh_grant_sends_one_scope_of_all_scopes() {
        let scopes = [
            "repository:a:pull".to_string(),
            "repository:a:pull,push".into(),
        ];
        assert_eq!(
            refresh_form(Some("reg"), &scopes, "rt"),
            "service=reg&scope=repository%3Aa%3Apull%20repository%3Aa%3Apull%2Cpush\
             &grant_type=refresh_token&refresh_token=rt&client_id=dist"
        );
    }

    /// A reply that starts with a UTF-8 byte order mark (as .NET's writers add one) is
    /// read as the JSON after it, as RFC 8259 (8.1) lets a parser; and one that is broken
    /// JSON after the mark is not shown either: the mark hid its `{`, and a short token in
    /// it was quoted in the error.
    #[test]
    fn a_reply_with_a_byte_order_mark_is_read_and_never_shown() {
        let read = serde_json::from_slice::<Reply>(without_bom(b"\xef\xbb\xbf{\"token\":\"t1\"}"));
        let Ok(reply) = read else {
            panic!("not read past the mark")
        };
        assert_eq!(reply.token().as_deref(), Some("t1"));
        let body = "\u{feff}{\"token\": \"t1\",}";
        let e = serde_json::from_str::<Reply>(body).err().expect(body);
        let said = unreadable_reply(body.as_bytes(), None, &e);
        assert!(!said.contains("t1"), "{said}");
        assert!(said.contains("not shown"), "{said}");
    }

    #[test]
    fn a_reply_that_is_no_token_json_is_shown_only_when_it_cannot_be_a_token() {
        let said = |body: &str| {
            let e = serde_json::from_str::<Reply>(body).err().expect(body);
            unreadable_reply(body.as_bytes(), Some("text/plain"), &e)
        };
        let secret = "dckr_pat_2b3e36beeb386dfdaacb9b46004ccb7c";
        // serde's own message quotes a string it did not expect: the token, here.
        let quoted = serde_json::from_str::<Reply>(&format!("\"{secret}\""))
            .err()
            .unwrap();
        assert!(quoted.to_string().contains(secret), "{quoted}");
        for held in [
            format!("\"{secret}\""),
            format!(r#"{{"access_token": "{secret}",}}"#),
            format!(r#"[{{"token": "{secret}"}}]"#),
            secret.to_string(),
            format!("access_token={secret}&scope=repository%3Aa%3Apull"),
            format!("Bearer {secret}"),
        ] {
            let shown = said(&held);
            assert!(!shown.contains(secret), "{held}: {shown}");
            assert!(
                shown.contains("not shown, as it may hold a token"),
                "{shown}"
            );
        }
        assert_eq!(
            said(r#"{"token": "t",}"#),
            "token response is broken JSON (Content-Type text/plain; at line 1 column 15); \
             not shown, as it may hold a token"
        );
        assert_eq!(
            said("Service temporarily unavailable,\n\x1b[31m try later"),
            "token response is not JSON (Content-Type text/plain): Service temporarily \
             unavailable, [31m try later"
        );
        let long = "word ".repeat(100);
        assert!(said(&long).chars().count() < 300);
        let page = "<html><head><title>Sign in</title></head><body>x</body></html>";
        let e = serde_json::from_str::<Reply>(page).err().unwrap();
        assert_eq!(
            unreadable_reply(page.as_bytes(), None, &e),
            "token response is an HTML page, not JSON (no Content-Type): Sign in; a login \
             page, a network's portal or a maintenance page answered for the token service"
        );
        let e = serde_json::from_str::<Reply>("").err().unwrap();
        assert_eq!(
            unreadable_reply(b" \n", Some("text/plain"), &e),
            "token response is empty (Content-Type text/plain)"
        );
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            encode_form(&[
                ("scope", "repository:a/b:pull".into()),
                ("service", "x y".into())
            ]),
            "scope=repository%3Aa%2Fb%3Apull&service=x%20y"
        );
    }
}

#[cfg(test)]
mod coded_replies {
    use std::io::Write;

    use super::*;
    use crate::transport::one_shot::answer_once;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Asks a loopback realm answering `status` with `body` gzipped for a token.
    async fn fetch_gzipped(status: &str, body: &str) -> (Result<Token>, String) {
        fetch_coded(status, "gzip", gzip(body.as_bytes()), None).await
    }

    /// Asks a loopback realm answering `status` with `coded`, labelled with `coding`, for a
    /// token, trading `credential` for it.
    async fn fetch_coded(
        status: &str,
        coding: &str,
        coded: Vec<u8>,
        credential: Option<&Credential>,
    ) -> (Result<Token>, String) {
        let mut answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
             content-encoding: {coding}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            coded.len()
        )
        .into_bytes();
        answer.extend_from_slice(&coded);
        let (address, served) = answer_once(answer).await;
        let origin = format!("http://{address}");
        let challenge = super::super::challenge::parse(&format!(
            r#"Bearer realm="{origin}/token",service="svc""#
        ))
        .into_iter()
        .next()
        .unwrap();
        let transport = Transport::new(Default::default()).unwrap();
        let scopes = ["repository:a:pull".to_string()];
        let got = fetch(&transport, &challenge, &scopes, credential, &origin).await;
        (got, served.await.unwrap())
    }

    /// A request without `Accept-Encoding` takes any coding (RFC 9110, 12.5.3), and a
    /// token server or the proxy before it may gzip its JSON: the token in it is read,
    /// and a refusal's words are shown, not taken for a reply that is no JSON.
    #[tokio::test]
    async fn a_gzipped_token_reply_is_read() {
        let (got, request) =
            fetch_gzipped("200 OK", r#"{"token":"t-from-gzip","expires_in":300}"#).await;
        let token = got.unwrap();
        assert_eq!(token.header, "Bearer t-from-gzip");
        assert_eq!(token.lifetime, Duration::from_secs(300));
        // Asked for as it is, which most servers then send.
        let request = request.to_ascii_lowercase();
        assert!(request.contains("accept-encoding: identity"), "{request}");

        let (got, _) = fetch_gzipped(
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad robot password"}]}"#,
        )
        .await;
        let e = got.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert!(e.to_string().contains("bad robot password"), "{e}");
    }

    /// A token server that refuses a refresh token in a 200 (an OAuth2 `error` in place of
    /// a token) and repeats it there: told in its words, without the refresh token.
    #[tokio::test]
    async fn a_tokenless_reply_that_repeats_the_refresh_token_does_not_show_it() {
        let secret = "rt-0123-secret";
        let body = format!(
            r#"{{"error":"invalid_grant","error_description":"refresh token {secret} expired"}}"#
        );
        let traded = Credential::IdentityToken(secret.into());
        let (got, _) = fetch_coded("200 OK", "identity", body.into_bytes(), Some(&traded)).await;
        let e = got.unwrap_err().to_string();
        assert!(!e.contains(secret), "{e}");
        assert!(e.contains("refresh token <redacted> expired"), "{e}");
    }

    /// A token server that refuses the refresh token's form and repeats the form as it
    /// came: the token, percent-encoded there, is not shown.
    #[tokio::test]
    async fn a_refusal_that_repeats_the_form_does_not_show_the_refresh_token() {
        let secret = "rt+0123/secret==";
        let encoded = "rt%2B0123%2Fsecret%3D%3D";
        let body = format!(
            "bad request body: grant_type=refresh_token&refresh_token={encoded}&client_id=dist"
        );
        let traded = Credential::IdentityToken(secret.into());
        let (got, request) = fetch_coded(
            "400 Bad Request",
            "identity",
            body.into_bytes(),
            Some(&traded),
        )
        .await;
        assert!(request.contains(encoded), "the form sent it so: {request}");
        let e = got.unwrap_err().to_string();
        assert!(!e.contains(encoded) && !e.contains(secret), "{e}");
        assert!(e.contains("refresh_token=<redacted>&client_id"), "{e}");
    }

    /// A token server that answers a 200 of prose, not JSON, repeating the password it
    /// was sent: shown without it.
    #[tokio::test]
    async fn a_prose_reply_that_repeats_the_password_does_not_show_it() {
        let password = "s3cret-pw-x";
        let body = format!("login failed: password {password} is wrong");
        let sent = Credential::Basic {
            username: "alice".into(),
            password: password.into(),
        };
        let (got, _) = fetch_coded("200 OK", "identity", body.into_bytes(), Some(&sent)).await;
        let e = got.unwrap_err().to_string();
        assert!(!e.contains(password), "{e}");
        assert!(
            e.contains("login failed: password <redacted> is wrong"),
            "{e}"
        );
    }

    /// A label that names no coding (`Content-Encoding: UTF-8`, as some servers mean the
    /// charset) on plain JSON: the reply is read as it came, as Docker's client, which
    /// undoes no coding it did not ask for, reads it, and as dist did before it decoded
    /// token replies; a refusal's words are shown, and a stale refresh token's
    /// `invalid_grant` told as such.
    #[tokio::test]
    async fn a_token_reply_labelled_with_no_coding_is_read_as_it_came() {
        let plain = br#"{"token":"t-plain","expires_in":300}"#.to_vec();
        let (got, _) = fetch_coded("200 OK", "UTF-8", plain, None).await;
        assert_eq!(got.unwrap().header, "Bearer t-plain");

        let refused = br#"{"error":"invalid_grant","error_description":"expired"}"#.to_vec();
        let stale = Credential::IdentityToken("stale".into());
        let (got, _) = fetch_coded("400 Bad Request", "utf-8", refused, Some(&stale)).await;
        let e = got.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");

        // A coding dist does not undo, on bytes that are no JSON: told by its name.
        let (got, _) = fetch_coded("200 OK", "br", vec![0x8b, 0x02, 0xff, 0x13], None).await;
        let e = got.unwrap_err().to_string();
        assert!(e.contains("Content-Encoding \"br\""), "{e}");
    }
}
