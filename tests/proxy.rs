//! Proxies from the environment for plain-http registries, and what is never proxied.

mod support;

use support::cli::{bytes, Dist};
use support::fake::FakeRegistry;
use support::proxy::ConnectProxy;

/// `HTTP_PROXY` carries a plain-http registry through a `CONNECT` tunnel too.
#[test]
fn plain_http_registry_through_http_proxy() {
    let reg = FakeRegistry::start();
    let data = bytes(31, 20_000);
    let digest = reg.blob("team/app", &data);
    let proxy = ConnectProxy::start();
    let mut dist = Dist::new();
    dist.env("HTTP_PROXY", &proxy.url());
    let port = reg.addr().port();
    let locator = format!("registry.test:{port}/team/app");
    let out = dist.run(&["fetch", "--plain-http", &locator, &digest], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data);
    let tunnels = proxy.tunnels();
    assert!(!tunnels.is_empty());
    assert!(tunnels
        .iter()
        .all(|t| t.target == format!("registry.test:{port}")));
}

/// Loopback registries are reached directly whatever the environment says, and `NO_PROXY`
/// names more hosts to reach directly.
#[test]
fn loopback_and_no_proxy_hosts_are_reached_directly() {
    let reg = FakeRegistry::start();
    let data = bytes(32, 10_000);
    let digest = reg.blob("team/app", &data);
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
    let locator = format!("registry.test:{}/team/app", reg.addr().port());
    let out = dist.run(
        &["fetch", "--retries", "0", "--plain-http", &locator, &digest],
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
    dist.env("HTTPS_PROXY", "socks5://carol:hunter2@127.0.0.1:9")
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
        err.contains("the proxy socks5://127.0.0.1 is not supported"),
        "{err}"
    );
    assert!(!err.contains("hunter2") && !err.contains("carol"), "{err}");
    assert!(!err.contains("retrying"), "not worth a retry: {err}");
}
