//! What one request costs the transport in allocations, the hot path of a batch of small
//! blobs: a request that costs more than it did shows here before it shows in a profile.

use dist::transport::{Outgoing, Transport, TransportOptions};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "support/allocations.rs"]
mod allocations;

/// Measured on a kept-alive HTTP/1.1 connection: 17 allocations a request (hyper's own,
/// the request's headers, dist's `Reply`). Telling the user, when the idle timeout runs
/// out, whether the request had a connection took 26: hyper-util's `capture_connection`
/// gave every request a watch channel, an extensions map and a copy of its connection's
/// metadata, for an answer a flag in the request's body gives. Room for 1000 response
/// header fields, given to every origin, took 2 more (32 KiB each, filled too): it is now
/// given only to an origin that sent more than 100.
#[tokio::test(flavor = "current_thread")]
async fn a_request_on_a_kept_connection_costs_few_allocations() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut head = Vec::new();
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            head.extend_from_slice(&buf[..n]);
            while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                head.drain(..end + 4);
                conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
            }
        }
    });
    let transport = Transport::new(TransportOptions::default()).unwrap();
    let url: http::Uri = format!("http://127.0.0.1:{port}/v2/x/blobs/sha256:ab")
        .parse()
        .unwrap();
    let fetch = || async {
        let reply = transport.send(Outgoing::get(url.clone())).await.unwrap();
        reply.response.into_body().collect().await.unwrap();
    };
    // The pool, the connection and their buffers are made by the first requests.
    for _ in 0..50 {
        fetch().await;
    }
    const REQUESTS: usize = 1000;
    let before = allocations::so_far();
    for _ in 0..REQUESTS {
        fetch().await;
    }
    let each = (allocations::so_far() - before) as f64 / REQUESTS as f64;
    assert!(each <= 18.0, "{each} allocations a request");
    drop(transport);
    server.await.unwrap();
}
