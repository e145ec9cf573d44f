//! Proves the registry harness works in every auth mode, talking to the registry with a
//! small hyper client of its own so a bug in `dist` can't mask a bug in the harness.
mod support;

use std::collections::HashMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use support::registry::{Mode, Registry, RegistryOptions};
use support::token::{Access, TokenOptions, TokenReply, TokenServer, SERVICE};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

async fn request_async(method: Method, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("build request");
    let response = client.request(request).await.expect("send request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// Blocking wrapper: the async client runs on its own thread and runtime.
fn request(method: Method, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("client runtime")
                    .block_on(request_async(method, url, headers, body))
            })
            .join()
            .expect("client thread")
    })
}

fn get(url: &str, auth: Option<&str>) -> Reply {
    match auth {
        Some(auth) => request(Method::GET, url, &[("authorization", auth)], b""),
        None => request(Method::GET, url, &[], b""),
    }
}

fn basic(registry: &Registry) -> String {
    let pair = format!("{}:{}", registry.user(), registry.password());
    format!("Basic {}", STANDARD.encode(pair))
}

/// What [`seed`] pushed, to compare against what comes back.
struct Seeded {
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
    manifest: Vec<u8>,
    manifest_digest: String,
}

/// Pushes a config blob, a layer blob and an OCI manifest referencing both as `:latest`.
fn seed(registry: &Registry, repo: &str) -> Seeded {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","repo":"{repo}"}}"#).into_bytes();
    let layer: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let config_digest = registry.push_blob(repo, &config);
    let layer_digest = registry.push_blob(repo, &layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    })
    .to_string()
    .into_bytes();
    let manifest_digest = registry.push_manifest(repo, "latest", OCI_MANIFEST, &manifest);
    Seeded {
        config,
        config_digest,
        layer,
        layer_digest,
        manifest,
        manifest_digest,
    }
}

fn assert_pulls(registry: &Registry, repo: &str, seeded: &Seeded, auth: Option<&str>) {
    let base = format!("{}/v2/{repo}", registry.url());
    let mut headers = vec![("accept", OCI_MANIFEST)];
    headers.extend(auth.map(|auth| ("authorization", auth)));

    // Registry 2.8 hides OCI manifests from clients that don't list the OCI type in Accept.
    let no_accept = get(&format!("{base}/manifests/latest"), auth);
    assert_eq!(no_accept.status, StatusCode::NOT_FOUND);
    assert!(
        String::from_utf8_lossy(&no_accept.body).contains("MANIFEST_UNKNOWN"),
        "{:?}",
        no_accept.body
    );

    for reference in ["latest", seeded.manifest_digest.as_str()] {
        let url = format!("{base}/manifests/{reference}");
        let manifest = request(Method::GET, &url, &headers, b"");
        assert_eq!(
            manifest.status,
            StatusCode::OK,
            "manifest {reference}: {}",
            String::from_utf8_lossy(&manifest.body)
        );
        assert_eq!(manifest.body, seeded.manifest, "manifest {reference}");
        assert_eq!(manifest.header("content-type"), OCI_MANIFEST);
        assert_eq!(
            manifest.header("docker-content-digest"),
            seeded.manifest_digest
        );
    }
    for (digest, data) in [
        (&seeded.config_digest, &seeded.config),
        (&seeded.layer_digest, &seeded.layer),
    ] {
        let blob = get(&format!("{base}/blobs/{digest}"), auth);
        assert_eq!(blob.status, StatusCode::OK, "blob {digest}");
        assert_eq!(&blob.body[..], &data[..], "blob {digest}");
    }
}

/// Parses `Scheme k="v",k2="v2"` (values may contain commas inside quotes).
fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let (scheme, mut rest) = header.split_once(' ').expect("challenge scheme");
    let mut params = HashMap::new();
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').expect("closing quote");
        params.insert(
            key.trim_start_matches(',').trim().to_string(),
            after[..end].to_string(),
        );
        rest = &after[end + 1..];
    }
    (scheme.to_string(), params)
}

/// Follows a bearer challenge the way a client would, optionally with credentials.
fn token_for(challenge: &HashMap<String, String>, scope: &str, auth: Option<&str>) -> String {
    let url = format!(
        "{}?service={}&scope={scope}",
        challenge["realm"], challenge["service"]
    );
    let reply = get(&url, auth);
    assert_eq!(reply.status, StatusCode::OK, "token for {scope}");
    let token = reply.json()["token"].as_str().expect("token").to_string();
    format!("Bearer {token}")
}

fn jwt_part(token: &str, index: usize) -> serde_json::Value {
    let part = token.split('.').nth(index).expect("JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

#[test]
fn anonymous_mode_serves_pushed_content() {
    let registry = Registry::start(Mode::Anonymous);
    assert!(registry.host().starts_with("127.0.0.1:"));
    let seeded = seed(&registry, "selftest/anon");
    assert_eq!(
        get(&format!("{}/v2/", registry.url()), None).status,
        StatusCode::OK
    );
    assert_pulls(&registry, "selftest/anon", &seeded, None);
    assert_eq!(registry.token_requests(), 0);
}

#[test]
fn basic_mode_requires_credentials() {
    let registry = Registry::start(Mode::Basic);
    let seeded = seed(&registry, "selftest/basic");
    let url = format!("{}/v2/selftest/basic/manifests/latest", registry.url());

    let anonymous = get(&url, None);
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.header("www-authenticate"),
        "Basic realm=\"dist-test\""
    );
    let wrong = format!("Basic {}", STANDARD.encode("tester:wrong"));
    assert_eq!(get(&url, Some(&wrong)).status, StatusCode::UNAUTHORIZED);

    assert_pulls(
        &registry,
        "selftest/basic",
        &seeded,
        Some(&basic(&registry)),
    );
}

#[test]
fn token_mode_scopes_tokens_per_repository() {
    let registry = Registry::start(Mode::Token);
    let seeded_a = seed(&registry, "selftest/a");
    seed(&registry, "selftest/b");
    assert!(registry.token_requests() >= 3, "pushes fetch tokens too");
    registry.reset_token_requests();

    let url_a = format!("{}/v2/selftest/a/manifests/latest", registry.url());
    let denied = get(&url_a, None);
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let header = denied.header(WWW_AUTHENTICATE.as_str()).to_string();
    let issuer = registry.token_server().expect("token server");
    assert_eq!(
        header,
        format!(
            "Bearer realm=\"{}\",service=\"{SERVICE}\",scope=\"repository:selftest/a:pull\"",
            issuer.url()
        )
    );
    let (scheme, challenge) = parse_challenge(&header);
    assert_eq!(scheme, "Bearer");

    let token_a = token_for(&challenge, "repository:selftest/a:pull", None);
    assert_pulls(&registry, "selftest/a", &seeded_a, Some(&token_a));
    assert_eq!(registry.token_requests(), 1);

    let claims = jwt_part(&token_a["Bearer ".len()..], 1);
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["sub"], "");
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "selftest/a", "actions": ["pull"]}])
    );

    // A token scoped to A must not open B; 2.8 says why in the challenge.
    let url_b = format!("{}/v2/selftest/b/manifests/latest", registry.url());
    let cross = get(&url_b, Some(&token_a));
    assert_eq!(cross.status, StatusCode::UNAUTHORIZED);
    assert!(
        cross
            .header("www-authenticate")
            .ends_with("scope=\"repository:selftest/b:pull\",error=\"insufficient_scope\""),
        "{}",
        cross.header("www-authenticate")
    );

    // Anonymous callers asking for push only get pull, so an upload is refused.
    let anon_push = token_for(&challenge, "repository:selftest/a:pull,push", None);
    let upload = request(
        Method::POST,
        &format!("{}/v2/selftest/a/blobs/uploads/", registry.url()),
        &[("authorization", &anon_push)],
        b"",
    );
    assert_eq!(upload.status, StatusCode::UNAUTHORIZED);

    // Expiry is enforced, but only once a token is more than 60 s (2.8's leeway) past `exp`.
    let blob_a = format!(
        "{}/v2/selftest/a/blobs/{}",
        registry.url(),
        seeded_a.config_digest
    );
    let access = [Access::repository("selftest/a", &["pull"])];
    for (ttl, expected) in [
        (60, StatusCode::OK),
        (-30, StatusCode::OK),
        (-120, StatusCode::UNAUTHORIZED),
    ] {
        let token = format!("Bearer {}", issuer.mint("", &access, ttl));
        assert_eq!(get(&blob_a, Some(&token)).status, expected, "ttl {ttl}");
    }
}

#[test]
fn token_mode_private_prefix_denies_anonymous_pull() {
    let registry = Registry::start_with(RegistryOptions {
        private_prefix: Some("private/".to_string()),
        ..RegistryOptions::new(Mode::Token)
    });
    let seeded = seed(&registry, "private/secret");
    let url = format!("{}/v2/private/secret/manifests/latest", registry.url());
    let (_, challenge) = parse_challenge(get(&url, None).header("www-authenticate"));

    let anonymous = token_for(&challenge, "repository:private/secret:pull", None);
    assert_eq!(get(&url, Some(&anonymous)).status, StatusCode::UNAUTHORIZED);

    let authed = token_for(
        &challenge,
        "repository:private/secret:pull",
        Some(&basic(&registry)),
    );
    assert_pulls(&registry, "private/secret", &seeded, Some(&authed));
}

#[test]
fn token_server_reply_shapes_and_expiry() {
    for (reply, has_token, has_access_token) in [
        (TokenReply::Both, true, true),
        (TokenReply::TokenOnly, true, false),
        (TokenReply::AccessTokenOnly, false, true),
    ] {
        let server = TokenServer::start(TokenOptions {
            reply,
            ttl_secs: 42,
            ..TokenOptions::default()
        });
        let body = get(&format!("{}?service={SERVICE}", server.url()), None).json();
        assert_eq!(body.get("token").is_some(), has_token, "{reply:?}");
        assert_eq!(
            body.get("access_token").is_some(),
            has_access_token,
            "{reply:?}"
        );
        assert_eq!(body["expires_in"], 42, "{reply:?}");
        assert!(body["issued_at"]
            .as_str()
            .expect("issued_at")
            .ends_with('Z'));
        let jwt = body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .expect("a token");
        let header = jwt_part(jwt, 0);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], server.key_id());
        let claims = jwt_part(jwt, 1);
        assert_eq!(
            claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
            42
        );
        assert_eq!(server.requests(), 1);
    }

    let server = TokenServer::start(TokenOptions {
        omit_expires_in: true,
        ..TokenOptions::default()
    });
    let body = get(&server.url(), None).json();
    assert!(body.get("expires_in").is_none());
    assert_eq!(
        get(&format!("http://{}/nope", server.addr()), None).status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(server.requests(), 2);
}

#[test]
fn token_server_oauth_grants_and_scopes() {
    let server = TokenServer::start(TokenOptions {
        refresh_token: Some("refresh-me".to_string()),
        ..TokenOptions::default()
    });
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let post = |body: &str| request(Method::POST, &server.url(), &form, body.as_bytes());

    let granted = post(
        "grant_type=password&username=tester&password=s3cret-pass&service=dist-test-registry\
         &scope=repository%3Ax%3Apull%2Cpush+repository%3Ay%3Apull&client_id=selftest",
    );
    assert_eq!(granted.status, StatusCode::OK);
    let body = granted.json();
    assert_eq!(body["refresh_token"], "refresh-me");
    let claims = jwt_part(body["access_token"].as_str().expect("access_token"), 1);
    assert_eq!(claims["sub"], "tester");
    assert_eq!(
        claims["access"],
        serde_json::json!([
            {"type": "repository", "name": "x", "actions": ["pull", "push"]},
            {"type": "repository", "name": "y", "actions": ["pull"]},
        ])
    );

    let refreshed =
        post("grant_type=refresh_token&refresh_token=refresh-me&scope=repository:x:push");
    assert_eq!(refreshed.status, StatusCode::OK);
    assert!(refreshed.json().get("refresh_token").is_none());

    assert_eq!(
        post("grant_type=password&username=tester&password=nope").status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post("grant_type=refresh_token&refresh_token=stale").status,
        StatusCode::UNAUTHORIZED
    );
    let wrong_basic = format!("Basic {}", STANDARD.encode("tester:nope"));
    assert_eq!(
        get(&server.url(), Some(&wrong_basic)).status,
        StatusCode::UNAUTHORIZED
    );
    // Repeated scope parameters are merged.
    let multi = get(
        &format!(
            "{}?scope=repository:x:pull&scope=repository:y:pull",
            server.url()
        ),
        None,
    );
    let access = &jwt_part(multi.json()["token"].as_str().expect("token"), 1)["access"];
    assert_eq!(access.as_array().expect("access list").len(), 2);
    assert_eq!(server.requests(), 6);
}

#[tokio::test]
async fn harness_is_usable_inside_a_tokio_runtime() {
    let registry = Registry::start(Mode::Token);
    let digest = registry.push_blob("selftest/in-runtime", b"hello from a runtime");
    let url = format!("{}/v2/selftest/in-runtime/blobs/{digest}", registry.url());
    let denied = request_async(Method::GET, &url, &[], b"").await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let auth = basic(&registry);
    let token_url = format!(
        "{}?service={SERVICE}&scope=repository:selftest/in-runtime:pull",
        registry.token_server().expect("token server").url()
    );
    let token = request_async(Method::GET, &token_url, &[("authorization", &auth)], b"").await;
    let bearer = format!("Bearer {}", token.json()["token"].as_str().expect("token"));
    let blob = request_async(Method::GET, &url, &[("authorization", &bearer)], b"").await;
    assert_eq!(blob.status, StatusCode::OK);
    assert_eq!(&blob.body[..], b"hello from a runtime");
}

/// Readiness is this registry's own answer: another test's registry holding the port (it
/// won the race for it) must not pass for ours.
#[test]
fn readiness_is_the_registrys_own_answer() {
    let reg = Registry::start(Mode::Basic);
    assert!(reg.answers_as_itself());
    assert!(!reg.answers_as("another-registry"));
}

/// What a TLS client offering h2 and http/1.1 by ALPN learns from `reg` under `config`:
/// the protocol picked, then, once it has sent the HTTP/2 preface, the server's first
/// bytes, or the TLS error that ended the connection instead.
fn tls_handshake(
    reg: &Registry,
    config: &rustls::ClientConfig,
) -> (Option<Vec<u8>>, Result<usize, String>) {
    use std::io::{Read, Write};
    let mut config = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let addr: std::net::SocketAddr = reg.host().parse().unwrap();
    let name = rustls::pki_types::ServerName::from(addr.ip());
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    conn.complete_io(&mut tcp)
        .expect("client's side of the handshake");
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    conn.writer()
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    // A server that has refused us may have reset the connection already: what it sent
    // before is still there to read.
    while conn.wants_write() && conn.write_tls(&mut tcp).is_ok() {}
    let mut first = [0u8; 64];
    loop {
        match conn.read_tls(&mut tcp) {
            Ok(0) => return (alpn, Err("closed without an alert".into())),
            Ok(_) => {}
            Err(e) => return (alpn, Err(e.to_string())),
        }
        if let Err(e) = conn.process_new_packets() {
            return (alpn, Err(format!("{e:?}")));
        }
        match conn.reader().read(&mut first) {
            Ok(n) => return (alpn, Ok(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return (alpn, Err(e.to_string())),
        }
    }
}

/// With `mutual_tls` the registry speaks HTTPS for 127.0.0.1, picks HTTP/2 by ALPN as
/// Go's server does, answers a client showing the certificate its `clientcas` issued, and
/// ends the connection of one without with a TLS alert; the harness seeds it all the same.
#[test]
fn mutual_tls_offers_http2_and_demands_a_client_certificate() {
    let reg = Registry::start_with(RegistryOptions {
        mutual_tls: true,
        ..RegistryOptions::default()
    });
    assert!(reg.url().starts_with("https://127.0.0.1:"), "{}", reg.url());
    assert!(reg.answers_as_itself());
    let tls = reg.tls().expect("TLS files");
    for file in [&tls.ca, &tls.client_cert, &tls.client_key, &tls.client_ca] {
        assert!(file.is_file(), "{}", file.display());
    }
    reg.push_blob("selftest/tls", b"over mutual TLS");

    let (alpn, read) = tls_handshake(&reg, &tls.client_config());
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert!(read.expect("the server's settings") > 0);

    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&tls.ca).unwrap();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let anonymous = rustls::ClientConfig::builder_with_provider(support::registry::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (alpn, read) = tls_handshake(&reg, &anonymous);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let refused = read.expect_err("no answer without a client certificate");
    assert!(refused.starts_with("AlertReceived("), "{refused}");
}
