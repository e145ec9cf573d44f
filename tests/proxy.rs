//! Proxies from the environment for plain-http registries, and what is never proxied.

mod support;

use support::cli::{bytes, Dist};
use support::fake::{FakeRegistry, Fault};
use support::proxy::ConnectProxy;
use support::socks::{SocksConnect, SocksProxy};

/// A registry holding a blob of `len` bytes made from `seed`: the registry, the blob, its
/// digest, and the locator of the blob's repository under the name `registry.test`, which
/// resolves nowhere, so that only a proxy reaches it.
fn behind_a_name(seed: u64, len: usize) -> (FakeRegistry, Vec<u8>, String, String) {
    let reg = FakeRegistry::start();
    let data = bytes(seed, len);
    let digest = reg.blob("team/app", &data);
    let locator = format!("registry.test:{}/team/app", reg.addr().port());
    (reg, data, digest, locator)
}

/// `HTTP_PROXY` carries a plain-http registry the way curl and Go's client do: requests go
/// to the proxy in absolute form, not through a tunnel, so a proxy that tunnels only to
/// port 443 (Squid's default) still carries a registry on port 5000.
#[test]
fn plain_http_registry_through_a_forwarding_proxy() {
    let reg = FakeRegistry::start();
    let data = [bytes(31, 20_000), bytes(34, 30_000)];
    let digests = data.clone().map(|d| reg.blob("team/app", &d));
    let port = reg.addr().port();
    let locator = format!("registry.test:{port}/team/app");
    for proxy in [
        ConnectProxy::start(),
        ConnectProxy::tunnelling_only_to_443(),
    ] {
        let mut dist = Dist::new();
        dist.env("HTTP_PROXY", &proxy.url());
        let input = format!("{}\n{}\n", digests[0], digests[1]);
        let out = dist.ok_fed(
            &[
                "fetch",
                "--plain-http",
                &locator,
                "-",
                "-j",
                "1",
                "--ordered",
            ],
            input.as_bytes(),
        );
        let frames = support::cli::parse_frames(&out);
        assert_eq!(frames.len(), 2);
        for (frame, want) in frames.iter().zip(&data) {
            assert_eq!(&frame.result.as_ref().unwrap().2, want);
        }
        let asked = proxy.tunnels();
        assert!(asked.len() >= 2, "{asked:?}");
        let base = format!("http://registry.test:{port}/v2/");
        assert!(
            asked
                .iter()
                .all(|t| t.method != "CONNECT" && t.target.starts_with(&base)),
            "{asked:?}"
        );
    }
    assert!(
        reg.requests().len() >= 2,
        "the registry got the requests, in origin form"
    );
}

/// A forwarding proxy's own credentials go with every request to it, are never passed on to
/// the registry, and a refusal names the proxy, not the registry.
#[test]
fn a_forwarding_proxy_s_credentials_stay_with_the_proxy() {
    let (reg, data, digest, locator) = behind_a_name(33, 5_000);
    let proxy = ConnectProxy::requiring("Basic YWxpY2U6czNjcmV0");
    let proxy_url = |user: &str| format!("http://{user}:s3cret@127.0.0.1:{}", proxy.port());

    let mut dist = Dist::new();
    dist.env("HTTP_PROXY", &proxy_url("alice"));
    let out = dist.run(&["fetch", "--plain-http", &locator, &digest, "-vv"], b"");
    assert_eq!(out.stdout, data, "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains("YWxpY2U6czNjcmV0") && !log.contains("s3cret"),
        "{log}"
    );
    let asked = proxy.tunnels();
    assert!(!asked.is_empty());
    for t in &asked {
        assert_eq!(t.authorization.as_deref(), Some("Basic YWxpY2U6czNjcmV0"));
    }
    for r in reg.requests() {
        assert!(r.headers.get("proxy-authorization").is_none(), "{r:?}");
    }

    let mut dist = Dist::new();
    dist.env("HTTP_PROXY", &proxy_url("mallory"));
    let out = dist.run(&["fetch", "--plain-http", &locator, &digest], b"");
    assert_eq!(out.status.code(), Some(2), "refused credentials: unusable");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the proxy answered 407 Proxy Authentication Required"),
        "{err}"
    );
    assert!(
        !err.contains("retrying") && !err.contains("s3cret"),
        "{err}"
    );

    // The proxy's own gateway error is told apart from the registry's.
    let open = ConnectProxy::start();
    let mut dist = Dist::new();
    dist.env("HTTP_PROXY", &open.url());
    let out = dist.run(
        &[
            "fetch",
            "--retries",
            "0",
            "--plain-http",
            "registry.test:1/team/app",
            &digest,
        ],
        b"",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "registry (through the proxy 127.0.0.1:{}) answered 502",
            open.port()
        )),
        "{err}"
    );
}

/// A forwarding proxy's status counts as the registry's would, as README says, since dist
/// cannot tell which sent it: a 501 (a proxy that forwards nothing) is the object's
/// failure, status 1, and at the check of `dist pull` and the worker lets the batch run as
/// a registry without tag listing does; a 505 is 1 for `fetch` and `resolve` and 2 at that
/// check. Both name the proxy.
#[test]
fn a_forwarding_proxy_s_status_exits_as_the_registry_s_would() {
    let (_reg, _data, digest, locator) = behind_a_name(35, 1_000);
    let reference = format!("{locator}:v1");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for (status, one_shot, batch) in [
        ("501 Not Implemented", 1, 1),
        ("505 HTTP Version Not Supported", 1, 2),
    ] {
        let proxy = ConnectProxy::forwarding_none(status);
        let mut dist = Dist::new();
        dist.env("HTTP_PROXY", &proxy.url());
        let said = format!(
            "registry (through the proxy 127.0.0.1:{}) answered {status}",
            proxy.port()
        );
        let runs = [
            (vec!["fetch", "--plain-http", &locator, &digest], one_shot),
            (vec!["resolve", "--plain-http", &reference], one_shot),
            (vec!["pull", "--plain-http", &reference, "-o", out], batch),
            (
                vec!["fetch", "--plain-http", &locator, "-", "-o", out],
                batch,
            ),
        ];
        for (args, code) in runs {
            let mut args = args;
            args.splice(0..0, ["--retries", "0"]);
            let run = dist.run(&args, format!("{digest}\n").as_bytes());
            let err = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(code), "{args:?}: {err}");
            assert!(err.contains(&said), "{args:?}: {err}");
        }
    }
}

/// A forwarding proxy, or the registry behind it, whose error dumps the request it got,
/// the proxy's `Proxy-Authorization` with it: dist's message shows it without the proxy's
/// credentials. Before, their base64 and the password were printed with the error.
#[test]
fn an_error_that_echoes_the_proxy_s_credentials_does_not_print_them() {
    let (reg, _, digest, locator) = behind_a_name(34, 1_000);
    let page = Fault::Page {
        status: 400,
        content_type: "text/plain",
        body: "bad request; headers: Proxy-Authorization: Basic YWxpY2U6czNjcmV0 \
               (alice:s3cret)\n"
            .to_string(),
    };
    reg.set_fault_for_every(&digest, page);
    let proxy = ConnectProxy::requiring("Basic YWxpY2U6czNjcmV0");
    let mut dist = Dist::new();
    dist.env(
        "HTTP_PROXY",
        &format!("http://alice:s3cret@127.0.0.1:{}", proxy.port()),
    );
    let args = ["--retries", "0", "fetch", "--plain-http", &locator, &digest];
    let out = dist.run(&args, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("YWxpY2U6czNjcmV0") && !err.contains("s3cret"),
        "{err}"
    );
    assert!(
        err.contains("400 Bad Request") && err.contains("Basic <redacted> (alice:<redacted>)"),
        "{err}"
    );
}

/// Loopback registries are reached directly whatever the environment says, and `NO_PROXY`
/// names more hosts to reach directly.
#[test]
fn loopback_and_no_proxy_hosts_are_reached_directly() {
    let (reg, data, digest, named) = behind_a_name(32, 10_000);
    let proxy = ConnectProxy::start();
    for (locator, no_proxy) in [
        (format!("{}/team/app", reg.host()), ""),
        (format!("localhost:{}/team/app", reg.addr().port()), ""),
    ] {
        let mut dist = Dist::new();
        dist.env("HTTP_PROXY", &proxy.url())
            .env("HTTPS_PROXY", &proxy.url())
            .env("ALL_PROXY", &proxy.url())
            .env("NO_PROXY", no_proxy);
        let out = dist.run(&["fetch", &locator, &digest], b"");
        assert!(
            out.status.success(),
            "{locator}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, data);
    }
    assert!(proxy.tunnels().is_empty(), "{:?}", proxy.tunnels());

    // A name the proxy would resolve, listed in NO_PROXY: dist resolves it itself, and
    // `registry.test` resolves nowhere, so the fetch fails without touching the proxy.
    let mut dist = Dist::new();
    dist.env("HTTP_PROXY", &proxy.url())
        .env("NO_PROXY", "example.net, .test");
    let out = dist.run(
        &["fetch", "--retries", "0", "--plain-http", &named, &digest],
        b"",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(proxy.tunnels().is_empty(), "{:?}", proxy.tunnels());
}

/// A proxy of a kind dist does not speak fails at once, says which, and keeps its
/// credentials to itself.
#[test]
fn an_unsupported_proxy_is_named_without_its_credentials() {
    let mut dist = Dist::new();
    dist.env("HTTPS_PROXY", "socks4://carol:hunter2@127.0.0.1:9")
        .env("RUST_LOG", "dist=debug");
    let out = dist.run(
        &[
            "fetch",
            "registry.test:443/team/app",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
        b"",
    );
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the proxy socks4://127.0.0.1:9 is not supported"),
        "{err}"
    );
    assert!(!err.contains("hunter2") && !err.contains("carol"), "{err}");
    assert!(!err.contains("retrying"), "not worth a retry: {err}");
}

/// A proxy that refuses the connection is named, with the system's reason: a SOCKS one's
/// said only "tcp connect error", which a refusal, a timeout and no route all say.
#[test]
fn an_unreachable_proxy_is_named_with_the_reason() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for (scheme, what) in [("http", "proxy"), ("socks5h", "SOCKS proxy")] {
        let mut dist = Dist::new();
        dist.env("HTTPS_PROXY", &format!("{scheme}://127.0.0.1:{port}"));
        let out = dist.run(
            &["--retries", "0", "fetch", "registry.test/team/app", "v1"],
            b"",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{err}");
        let said = format!("cannot connect to the {what} 127.0.0.1:{port}");
        assert!(err.contains(&said) && err.contains("refused"), "{err}");
    }
}

/// A proxy that refuses a tunnel says why in a page after its answer's head, as Squid does:
/// the refusal is still named with its status, and not retried. Its 403 is its policy,
/// configuration that retrying cannot cure, as its 407 is: status 2, not the 1 of a
/// registry's 403 for one object.
#[test]
fn a_tunnel_refused_with_an_error_page_is_named_with_the_status() {
    let strict = ConnectProxy::tunnelling_only_to_443();
    let locked = ConnectProxy::requiring("Basic YWxpY2U6czNjcmV0");
    for (proxy, status, code) in [(&strict, 403, 2), (&locked, 407, 2)] {
        let mut dist = Dist::new();
        dist.env("HTTPS_PROXY", &proxy.url());
        let out = dist.run(&["-v", "fetch", "registry.test:5000/team/app", "v1"], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        let said = format!(
            "the proxy 127.0.0.1:{} answered {status} to CONNECT registry.test:5000",
            proxy.port()
        );
        assert!(err.contains(&said), "{err}");
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(!err.contains("retrying"), "{err}");
        assert_eq!(proxy.tunnels().len(), 1);
    }
}

/// A `CONNECT` names the client as its requests do, as curl's does: some proxies filter
/// on `User-Agent`, and it sent none.
#[test]
fn a_tunnel_request_carries_the_user_agent() {
    let proxy = ConnectProxy::tunnelling_only_to_443();
    let mut dist = Dist::new();
    dist.env("HTTPS_PROXY", &proxy.url());
    dist.run(&["fetch", "registry.test:5000/team/app", "v1"], b"");
    let tunnels = proxy.tunnels();
    assert_eq!(tunnels[0].method, "CONNECT");
    let ours = concat!("dist/", env!("CARGO_PKG_VERSION"));
    assert_eq!(tunnels[0].user_agent.as_deref(), Some(ours));
}

/// A proxy named by a host name that does not exist is a typo, as a registry's is: named,
/// with the resolver's words, at once and not after every retry. The name is one the
/// resolver refuses on every machine ([`support::no_such_host`]), not a `.invalid` one
/// only a DNS server answers so.
#[test]
fn a_proxy_whose_name_does_not_exist_is_not_asked_again() {
    let proxy = format!("{}:3128", support::no_such_host());
    for (scheme, what) in [("http", "proxy"), ("socks5h", "SOCKS proxy")] {
        let mut dist = Dist::new();
        dist.env("HTTPS_PROXY", &format!("{scheme}://{proxy}"));
        dist.env("RUST_LOG", "dist=debug");
        let err = dist.fails(
            2,
            &["--retries", "3", "fetch", "registry.test/team/app", "v1"],
            b"",
        );
        let said = format!("cannot connect to the {what} {proxy}");
        assert!(
            err.contains(&said) && err.contains("Name or service not known"),
            "{err}"
        );
        assert!(!err.contains("retrying"), "{err}");
    }
}

/// A proxy that takes the connection and never answers `CONNECT` (or SOCKS's greeting) is
/// given `--connect-timeout`, and named, not the idle timeout's "no response headers".
#[test]
fn a_proxy_that_never_answers_the_tunnel_request_is_given_the_connect_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Holds every connection open without a word, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    for (var, proxy, what) in [
        ("HTTPS_PROXY", format!("http://127.0.0.1:{port}"), "CONNECT"),
        (
            "ALL_PROXY",
            format!("socks5h://127.0.0.1:{port}"),
            "the SOCKS handshake",
        ),
    ] {
        let mut dist = Dist::new();
        dist.env(var, &proxy);
        let out = dist.run(
            &[
                "--retries",
                "0",
                "--connect-timeout",
                "500ms",
                "--idle-timeout",
                "60s",
                "--timeout",
                "30s",
                "fetch",
                "registry.test/team/app",
                "v1",
            ],
            b"",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        let said = format!("the proxy 127.0.0.1:{port} did not answer {what} within 500ms");
        assert!(err.contains(&said), "{proxy}: {err}");
        assert_ne!(
            out.status.code(),
            Some(124),
            "{proxy}: ran into --timeout: {err}"
        );
    }
}

/// A forwarding proxy (`HTTP_PROXY`, a plain-http registry) that takes the request and never
/// answers, or closes the connection unanswered, is named as the one that did not answer.
/// It read "no response headers within 1s" (or "connection closed before message
/// completed") of the registry's URL alone, and the user looked for a broken registry.
#[test]
fn a_forwarding_proxy_that_never_answers_is_named() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Holds every connection open without a word, until the test ends.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    let digest = support::cli::sha256(b"any");
    // A fetch from a plain-http registry through the proxy at `port`.
    let fetch = |port: u16, options: &[&str]| {
        let locator = "registry.test:5000/team/app";
        let command = ["fetch", "--plain-http", locator, &digest];
        let args = [&["--retries", "0"], options, &command].concat();
        Dist::new()
            .env("HTTP_PROXY", &format!("http://127.0.0.1:{port}"))
            .run(&args, b"")
    };
    let out = fetch(port, &["--idle-timeout", "500ms"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "no response headers within 500ms (--idle-timeout) from the proxy \
             127.0.0.1:{port}, which forwards the request"
        )),
        "{err}"
    );
    assert!(
        err.contains("http://registry.test:5000/v2/team/app/blobs/"),
        "{err}"
    );

    // One that reads the request and closes the connection unanswered: the same.
    let closing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closing.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in closing.incoming().flatten() {
            let _ = std::io::Read::read(&mut conn, &mut [0; 4096]);
        }
    });
    let out = fetch(port, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "; through the proxy 127.0.0.1:{port}, which forwards the request"
        )),
        "{err}"
    );
}

/// A scheme hyper-util's matcher drops (here a typo'd one) must not send the fetch around
/// the proxy: it fails like any unsupported proxy.
#[test]
fn a_proxy_with_a_scheme_nobody_speaks_is_not_bypassed() {
    let mut dist = Dist::new();
    dist.env("HTTP_PROXY", "htp://dave:hunter2@127.0.0.1:9");
    let out = dist.run(
        &[
            "--plain-http",
            "--retries",
            "0",
            "fetch",
            "192.0.2.2:18343/team/app",
            "v1",
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the proxy htp://127.0.0.1:9 is not supported"),
        "{err}"
    );
    assert!(!err.contains("hunter2") && !err.contains("dave"), "{err}");
}

/// `ALL_PROXY=socks5h://…` (or `socks5://`) carries a registry through a SOCKS5 proxy, the
/// name going to the proxy unresolved (it is the proxy's network that knows it).
#[test]
fn a_registry_through_a_socks5_proxy() {
    let (reg, data, digest, locator) = behind_a_name(35, 25_000);
    let port = reg.addr().port();
    for scheme in ["socks5h", "socks5"] {
        let socks = SocksProxy::start();
        let mut dist = Dist::new();
        dist.env(
            "ALL_PROXY",
            &format!("{scheme}://127.0.0.1:{}", socks.port()),
        );
        let out = dist.run(&["fetch", "--plain-http", &locator, &digest], b"");
        assert_eq!(out.stdout, data, "{}", String::from_utf8_lossy(&out.stderr));
        let connects = socks.connects();
        assert!(!connects.is_empty());
        assert!(
            connects.iter().all(|c| *c
                == SocksConnect {
                    target: format!("registry.test:{port}"),
                    user: None
                }),
            "{connects:?}"
        );
    }
}

/// A SOCKS proxy's credentials come from its URL and stay out of every message; wrong or
/// missing ones, and a destination its rules forbid, fail at once with the reason.
#[test]
fn socks5_credentials_and_refusals() {
    let (reg, data, digest, locator) = behind_a_name(36, 8_000);
    let port = reg.addr().port();
    let socks = SocksProxy::requiring("alice", "s3cret");
    let fetch = |proxy: &str| {
        let mut dist = Dist::new();
        dist.env("ALL_PROXY", proxy);
        dist.run(&["fetch", "--plain-http", &locator, &digest, "-v"], b"")
    };
    let out = fetch(&format!(
        "socks5h://alice:s3cret@127.0.0.1:{}",
        socks.port()
    ));
    assert_eq!(out.stdout, data, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));
    assert_eq!(socks.connects()[0].user.as_deref(), Some("alice"));

    for (proxy, says) in [
        (
            format!("socks5h://alice:wrong@127.0.0.1:{}", socks.port()),
            "did not accept the credentials in the proxy URL",
        ),
        (
            format!("socks5h://127.0.0.1:{}", socks.port()),
            "asks for credentials (they go in the proxy URL)",
        ),
    ] {
        let out = fetch(&proxy);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("retrying") && !err.contains("wrong"), "{err}");
    }

    let strict = SocksProxy::forbidding(port);
    let out = fetch(&format!("socks5h://127.0.0.1:{}", strict.port()));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "did not connect to registry.test:{port}: connection not allowed by ruleset (reply 2)"
        )),
        "{err}"
    );
    assert!(
        !err.contains("retrying"),
        "the proxy's rules do not change: {err}"
    );
    // Its configuration, not the registry's refusal of one object: status 2, as for
    // refused credentials.
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(strict.connects().len(), 1);
}

/// What the same request would meet again at the proxy, a proxy that does not speak SOCKS5
/// at all or credentials longer than SOCKS5 can carry, fails at once, naming the proxy and
/// the reason, and not after every retry's wait.
#[test]
fn a_socks_proxy_that_cannot_carry_the_request_is_not_asked_again() {
    let user = "u".repeat(300);
    let login = SocksProxy::requiring(&user, "s3cret");
    let http = SocksProxy::speaking_http();
    for (proxy, socks, says) in [
        (
            format!("socks5h://{user}:s3cret@127.0.0.1:{}", login.port()),
            &login,
            "SOCKS5 user names and passwords are at most 255 bytes",
        ),
        (
            format!("socks5://127.0.0.1:{}", http.port()),
            &http,
            "does not speak SOCKS5",
        ),
    ] {
        let mut dist = Dist::new();
        dist.env("ALL_PROXY", &proxy);
        let err = dist.fails(
            2,
            &[
                "--retries",
                "3",
                "-v",
                "fetch",
                "registry.test/team/app",
                "v1",
            ],
            b"",
        );
        let said = format!("the SOCKS proxy 127.0.0.1:{} cannot be used", socks.port());
        assert!(err.contains(&said) && err.contains(says), "{err}");
        assert!(!err.contains("retrying"), "{err}");
        assert_eq!(socks.greetings(), 1, "{err}");
        assert!(!err.contains("s3cret") && !err.contains(&user), "{err}");
    }
}

/// A proxy password pasted unencoded with a `/` in it (`http://alice:s3/cret@proxy`) is
/// the proxy's credentials, sent to it and never shown: not in a `-vv` log, not in the
/// refusal when the proxy turns them down.
#[test]
fn a_proxy_password_holding_a_slash_is_used_and_never_shown() {
    use base64::Engine as _;
    let (_reg, data, digest, locator) = behind_a_name(34, 3_000);
    let basic = |login: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(login)
        )
    };
    let proxy = ConnectProxy::requiring(&basic("alice:s3/cret"));
    let setting = |user: &str| format!("http://{user}:s3/cret@127.0.0.1:{}", proxy.port());
    let mut dist = Dist::new();
    dist.env("HTTP_PROXY", &setting("alice"));
    let out = dist.run(&["fetch", "--plain-http", &locator, &digest, "-vv"], b"");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.stdout, data, "{log}");
    assert!(!log.contains("cret") && !log.contains("alice"), "{log}");

    let mut dist = Dist::new();
    dist.env("HTTP_PROXY", &setting("mallory"));
    let err = dist.fails(2, &["fetch", "--plain-http", &locator, &digest, "-vv"], b"");
    assert!(err.contains("407"), "{err}");
    assert!(!err.contains("cret") && !err.contains("mallory"), "{err}");

    // After what reads as a host and port, it may end a path as well: refused, unshown
    // (curl and Go take `alice:1234` for the proxy, and dist named it in every message).
    let mut dist = Dist::new();
    let setting = format!("http://alice:1234/s3cret@127.0.0.1:{}", proxy.port());
    dist.env("HTTP_PROXY", &setting);
    let out = dist.run(&["fetch", "--plain-http", &locator, &digest, "-vv"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the proxy named by HTTP_PROXY"), "{err}");
    assert!(!err.contains("alice"), "{err}");
    assert!(!err.contains("cret"), "{err}");
}

/// A proxy URL whose port is no number (`:3128x`) is refused, named by its variable; it
/// read "the proxy named by HTTPS_PROXY (not a URL: its port is …) is not supported (only
/// http://, socks5:// and socks5h:// proxies are)", for an http:// proxy, sending the user
/// after its scheme.
#[test]
fn a_proxy_whose_port_is_no_number_is_not_told_its_scheme_is_unsupported() {
    let mut dist = Dist::new();
    dist.env("HTTPS_PROXY", "http://carol:hunter2@127.0.0.1:3128x");
    let out = dist.run(
        &[
            "--retries",
            "0",
            "fetch",
            "registry.test:443/team/app",
            "v1",
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("the proxy named by HTTPS_PROXY (not a URL: its port is no number"),
        "{err}"
    );
    assert!(!err.contains("only http://"), "{err}");
    assert!(!err.contains("hunter2") && !err.contains("carol"), "{err}");
}

/// A mirror reached through a proxy that wants credentials it was not given (a 407 to a
/// forwarded request or to its `CONNECT`, or a SOCKS proxy's refusal) is said to be
/// unreachable for its proxy's credentials: "the mirror asks for a login (401), and dist
/// sent none" named a status nobody answered and a login the mirror never asked for.
#[test]
fn a_mirror_behind_a_proxy_wanting_credentials_is_said_so() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let data = bytes(35, 3_000);
    let digest = upstream.blob("team/app", &data);
    mirror.blob("team/app", &data);
    let proxy = ConnectProxy::requiring("Basic YWxpY2U6czNjcmV0");
    let socks = SocksProxy::requiring("alice", "s3cret");
    let wrong = format!("socks5h://alice:wrong@127.0.0.1:{}", socks.port());
    let repo = format!("{}/team/app", upstream.host());
    // Plain HTTP is forwarded (a 407 to the request); the `CONNECT` of https is refused.
    for (scheme, var, proxy_url) in [
        ("http", "HTTP_PROXY", proxy.url()),
        ("https", "HTTPS_PROXY", proxy.url()),
        ("http", "ALL_PROXY", wrong),
    ] {
        let mirror_url = format!("{scheme}://registry.test:{}", mirror.addr().port());
        let mut dist = Dist::new();
        dist.env(var, &proxy_url);
        let out = dist.run(&["fetch", "--mirror", &mirror_url, &repo, &digest], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.stdout, data, "{var}: {err}");
        let warning = err
            .lines()
            .find(|l| l.starts_with("dist: warning: the mirror "))
            .unwrap_or_else(|| panic!("{var}: no warning: {err}"));
        assert!(
            warning.contains("cannot be reached: its proxy's credentials are missing or refused"),
            "{var}: {err}"
        );
        assert!(!warning.contains("asks for a login"), "{var}: {err}");
        assert!(!err.contains("wrong@"), "{var}: {err}");
    }
}

/// A registry reached directly whose token realm is on a host reached through a proxy
/// that refuses its credentials (a SOCKS proxy's refusal, a forwarding proxy's 407): the
/// refusal is the proxy's, and said so. Before, the SOCKS one was taken for the token
/// service's 401, "gives anonymous callers no token ...: it needs credentials (docker
/// login …)", advice that would not help, and the 407 was a bare "token request answered
/// 407", not said to be about the proxy URL's credentials.
#[test]
fn a_token_realm_behind_a_proxy_refusing_its_credentials_is_not_said_to_want_a_login() {
    let reg = FakeRegistry::builder()
        .auth(support::fake::Auth::bearer(std::time::Duration::from_secs(
            300,
        )))
        .start();
    let digest = reg.blob("team/app", bytes(36, 1_000));
    let socks = SocksProxy::requiring("alice", "s3cret");
    let proxy = ConnectProxy::requiring("Basic YWxpY2U6czNjcmV0");
    // The registry is on loopback, reached directly; its realm's name goes to the proxy.
    reg.set_challenges(&[&format!(
        "Bearer realm=\"http://auth.test:{}/token\",service=\"fake-registry\",scope=\"{{scope}}\"",
        reg.addr().port()
    )]);
    let wrong = format!("socks5h://alice:wrong@127.0.0.1:{}", socks.port());
    for (var, proxy_url, said) in [
        (
            "ALL_PROXY",
            wrong,
            "did not accept the credentials in the proxy URL",
        ),
        (
            "HTTP_PROXY",
            proxy.url(),
            "proxy credentials missing or refused; they go in the proxy URL",
        ),
    ] {
        let mut dist = Dist::new();
        dist.env(var, &proxy_url);
        let repo = format!("{}/team/app", reg.host());
        let out = dist.run(&["--retries", "0", "fetch", &repo, &digest], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}: {err}");
        assert!(
            err.contains(said),
            "{var}: the proxy's refusal is said: {err}"
        );
        assert!(!err.contains("docker login"), "{var}: {err}");
        assert!(
            !err.contains("gives anonymous callers no token"),
            "{var}: {err}"
        );
        assert!(!err.contains("wrong@"), "{var}: {err}");
    }
}
