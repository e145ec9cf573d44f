//! An HTTP `CONNECT` proxy on 127.0.0.1 for tests: it records every tunnel asked of it,
//! can demand Basic credentials (407 without them), and resolves the names it is asked for
//! to 127.0.0.1, so a client can be sent to `registry.test:PORT` and land on a local server.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One `CONNECT` the proxy received.
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// `host:port` as the client asked for it.
    pub target: String,
    /// The `Proxy-Authorization` header, if any.
    pub authorization: Option<String>,
}

/// The running proxy; stopped when dropped.
pub struct ConnectProxy {
    listener: super::listen::Listener,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
}

impl ConnectProxy {
    /// A proxy that tunnels for anyone.
    pub fn start() -> ConnectProxy {
        Self::launch(None)
    }

    /// A proxy that answers 407 unless `Proxy-Authorization` is exactly `authorization`.
    pub fn requiring(authorization: &str) -> ConnectProxy {
        Self::launch(Some(authorization.to_string()))
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    /// Every tunnel asked for so far (granted or not), in order.
    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }

    fn launch(required: Option<String>) -> ConnectProxy {
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let log = tunnels.clone();
        let listener = super::listen::Listener::start(move |client| {
            serve(client, log.clone(), required.clone())
        });
        ConnectProxy { listener, tunnels }
    }
}

async fn serve(
    mut client: tokio::net::TcpStream,
    log: Arc<Mutex<Vec<Tunnel>>>,
    required: Option<String>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 || client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut words = request.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, v)| v.trim().to_string());
    log.lock().unwrap().push(Tunnel {
        target: target.to_string(),
        authorization: authorization.clone(),
    });
    if method != "CONNECT" {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    if required.is_some() && authorization != required {
        let _ = client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    }
    // Every name resolves here: the servers under test all listen on loopback.
    let port = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let Some(port) = port else {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    };
    let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}
