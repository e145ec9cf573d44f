//! An HTTP proxy on 127.0.0.1 for tests, of both kinds a client meets: it opens `CONNECT`
//! tunnels, and forwards requests written in absolute form (`GET http://host:port/path`), as
//! proxies carry plain http. It records every request asked of it, can demand Basic
//! credentials (407 without them), can refuse tunnels to ports other than 443 (Squid's
//! default) or every request to forward, and resolves the names it is asked for to 127.0.0.1, so a client can be sent to
//! `registry.test:PORT` and land on a local server.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request the proxy received: a `CONNECT`, or a request to forward.
#[derive(Debug, Clone)]
pub struct Tunnel {
    /// `CONNECT`, or the forwarded request's method.
    pub method: String,
    /// `host:port` for a `CONNECT`; the absolute URL of a forwarded request.
    pub target: String,
    /// The `Proxy-Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
}

/// How the proxy behaves.
#[derive(Clone, Default)]
struct Rules {
    /// 407 unless `Proxy-Authorization` is exactly this.
    required: Option<String>,
    /// Tunnels only to port 443; forwarding is not restricted.
    connect_only_443: bool,
    /// Forwards nothing, answering every request in absolute form with this status line.
    forwards_none: Option<&'static str>,
}

/// The running proxy; stopped when dropped.
pub struct ConnectProxy {
    listener: super::listen::Listener,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
}

impl ConnectProxy {
    /// A proxy that tunnels and forwards for anyone.
    pub fn start() -> ConnectProxy {
        Self::launch(Rules::default())
    }

    /// A proxy that answers 407 unless `Proxy-Authorization` is exactly `authorization`.
    pub fn requiring(authorization: &str) -> ConnectProxy {
        Self::launch(Rules {
            required: Some(authorization.to_string()),
            ..Rules::default()
        })
    }

    /// A proxy that refuses (403) `CONNECT` to any port but 443, as Squid does by default.
    pub fn tunnelling_only_to_443() -> ConnectProxy {
        Self::launch(Rules {
            connect_only_443: true,
            ..Rules::default()
        })
    }

    /// A proxy that forwards no request, answering each with `status` (`501 Not
    /// Implemented`, as a proxy that only tunnels does); it still tunnels.
    pub fn forwarding_none(status: &'static str) -> ConnectProxy {
        Self::launch(Rules {
            forwards_none: Some(status),
            ..Rules::default()
        })
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    /// Every request asked of it so far (granted or not), in order.
    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }

    fn launch(rules: Rules) -> ConnectProxy {
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let log = tunnels.clone();
        let listener =
            super::listen::Listener::start(move |client| serve(client, log.clone(), rules.clone()));
        ConnectProxy { listener, tunnels }
    }
}

/// A request or response head: its first line and its header lines.
struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Reads one head, a byte at a time so that nothing after it is consumed; `None` at the end
/// of the connection.
async fn read_head(from: &mut (impl AsyncRead + Unpin)) -> Option<Head> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if raw.len() > 16 << 10 || from.read(&mut byte).await.unwrap_or(0) == 0 {
            return None;
        }
        raw.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let first = lines.next()?.to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Head { first, headers })
}

async fn serve(mut client: TcpStream, log: Arc<Mutex<Vec<Tunnel>>>, rules: Rules) {
    // Forwarded requests to one destination reuse one upstream connection, as proxies do.
    let mut upstream: Option<(u16, TcpStream)> = None;
    while let Some(head) = read_head(&mut client).await {
        let mut words = head.first.split(' ');
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let authorization = head.header("proxy-authorization").map(str::to_string);
        log.lock().unwrap().push(Tunnel {
            method: method.to_string(),
            target: target.to_string(),
            authorization: authorization.clone(),
            user_agent: head.header("user-agent").map(str::to_string),
        });
        if rules.required.is_some() && authorization != rules.required {
            let _ = client
                .write_all(&error_page("407 Proxy Authentication Required"))
                .await;
            return;
        }
        if method == "CONNECT" {
            return tunnel(client, target, &rules).await;
        }
        if let Some(status) = rules.forwards_none {
            let _ = client.write_all(&error_page(status)).await;
            return;
        }
        // Absolute form: `http://host:port/path`. Every name resolves here.
        let Some(rest) = target.strip_prefix("http://") else {
            let _ = client
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let port = authority
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or(80);
        if upstream.as_ref().map(|(p, _)| *p) != Some(port) {
            let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)).await else {
                let _ = client
                    .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                    .await;
                return;
            };
            upstream = Some((port, tcp));
        }
        let (_, server) = upstream.as_mut().expect("connected above");
        if !forward(&mut client, server, method, path, &head).await {
            return;
        }
    }
}

/// Relays one request (without the proxy's own header) and its response; false when either
/// side broke off.
async fn forward(
    client: &mut TcpStream,
    server: &mut TcpStream,
    method: &str,
    path: &str,
    head: &Head,
) -> bool {
    let path = if path.is_empty() { "/" } else { path };
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in &head.headers {
        if !k.eq_ignore_ascii_case("proxy-authorization") {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str("\r\n");
    let mut body = vec![0u8; head.content_length()];
    if client.read_exact(&mut body).await.is_err()
        || server.write_all(out.as_bytes()).await.is_err()
        || server.write_all(&body).await.is_err()
    {
        return false;
    }
    let Some(answer) = read_head(server).await else {
        return false;
    };
    let mut back = format!("{}\r\n", answer.first);
    for (k, v) in &answer.headers {
        back.push_str(&format!("{k}: {v}\r\n"));
    }
    back.push_str("\r\n");
    // The test servers always send a length; a HEAD's answer has no body.
    let len = if method == "HEAD" {
        0
    } else {
        answer.content_length()
    };
    let mut body = vec![0u8; len];
    server.read_exact(&mut body).await.is_ok()
        && client.write_all(back.as_bytes()).await.is_ok()
        && client.write_all(&body).await.is_ok()
}

/// A refusal as Squid sends it: the head and an HTML page after it, in one write.
fn error_page(status: &str) -> Vec<u8> {
    let page = format!("<html><body><h1>{status}</h1>Squid says no.</body></html>\n");
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{page}",
        page.len()
    )
    .into_bytes()
}

async fn tunnel(mut client: TcpStream, target: &str, rules: &Rules) {
    let port = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let Some(port) = port else {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        return;
    };
    if rules.connect_only_443 && port != 443 {
        let _ = client.write_all(&error_page("403 Forbidden")).await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
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
