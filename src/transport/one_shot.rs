//! A loopback server for the transport's unit tests: it takes one connection, reads one
//! request (its head, and as much of a body as its `Content-Length` says), writes a
//! canned answer and closes the connection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Listens on a loopback port for one request and answers it with `answer`; the task hands
/// back the request as it came.
pub(crate) async fn answer_once(
    answer: impl Into<Vec<u8>>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<String>) {
    let answer = answer.into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let served = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !whole(&request) {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early: {request:?}");
            request.extend_from_slice(&buf[..n]);
        }
        conn.write_all(&answer).await.unwrap();
        String::from_utf8(request).unwrap()
    });
    (address, served)
}

/// Whether `request` holds its head and the body its `Content-Length` announces.
fn whole(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request).to_ascii_lowercase();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse().unwrap());
    body.len() >= length
}
