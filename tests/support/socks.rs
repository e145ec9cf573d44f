//! A SOCKS5 proxy on 127.0.0.1 for tests (RFC 1928, with RFC 1929's user and password): it
//! records every `CONNECT` asked of it, can demand credentials, can refuse one port by its
//! rules, and resolves every name to 127.0.0.1, so `registry.test:PORT` lands on a local
//! server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One `CONNECT` the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksConnect {
    /// `host:port` as the client named it (a name stays a name).
    pub target: String,
    /// The user it logged in as, if it did.
    pub user: Option<String>,
}

#[derive(Clone, Default)]
struct Rules {
    /// (user, password) to demand.
    login: Option<(String, String)>,
    /// Answer "not allowed by ruleset" for this port.
    forbidden_port: Option<u16>,
    /// Answer every greeting as an HTTP proxy does: with a 400.
    http_only: bool,
}

/// The running proxy; stopped when dropped.
pub struct SocksProxy {
    listener: super::listen::Listener,
    connects: Arc<Mutex<Vec<SocksConnect>>>,
    greetings: Arc<AtomicUsize>,
}

impl SocksProxy {
    /// A proxy that connects anyone anywhere.
    pub fn start() -> SocksProxy {
        Self::launch(Rules::default())
    }

    /// A proxy that demands this user and password.
    pub fn requiring(user: &str, password: &str) -> SocksProxy {
        Self::launch(Rules {
            login: Some((user.into(), password.into())),
            ..Rules::default()
        })
    }

    /// A proxy whose rules forbid connections to `port`.
    pub fn forbidding(port: u16) -> SocksProxy {
        Self::launch(Rules {
            forbidden_port: Some(port),
            ..Rules::default()
        })
    }

    /// An HTTP proxy named as a SOCKS one: it answers SOCKS's greeting with a 400.
    pub fn speaking_http() -> SocksProxy {
        Self::launch(Rules {
            http_only: true,
            ..Rules::default()
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    /// Every `CONNECT` asked so far (granted or not), in order.
    pub fn connects(&self) -> Vec<SocksConnect> {
        self.connects.lock().unwrap().clone()
    }

    /// How many connections have greeted it (each a try at a handshake).
    pub fn greetings(&self) -> usize {
        self.greetings.load(Ordering::SeqCst)
    }

    fn launch(rules: Rules) -> SocksProxy {
        let connects = Arc::new(Mutex::new(Vec::new()));
        let greetings = Arc::new(AtomicUsize::new(0));
        let (log, greeted) = (connects.clone(), greetings.clone());
        let listener = super::listen::Listener::start(move |client| {
            let (log, greeted, rules) = (log.clone(), greeted.clone(), rules.clone());
            async move {
                let _ = serve(client, log, greeted, rules).await;
            }
        });
        SocksProxy {
            listener,
            connects,
            greetings,
        }
    }
}

async fn read_bytes(client: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    client.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn serve(
    mut client: TcpStream,
    log: Arc<Mutex<Vec<SocksConnect>>>,
    greeted: Arc<AtomicUsize>,
    rules: Rules,
) -> std::io::Result<()> {
    let head = read_bytes(&mut client, 2).await?;
    let methods = read_bytes(&mut client, usize::from(head[1])).await?;
    greeted.fetch_add(1, Ordering::SeqCst);
    if rules.http_only {
        return client
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    }
    let mut user = None;
    if let Some((want_user, want_password)) = &rules.login {
        if !methods.contains(&2) {
            return client.write_all(&[5, 0xff]).await;
        }
        client.write_all(&[5, 2]).await?;
        let version_and_len = read_bytes(&mut client, 2).await?;
        let name = read_bytes(&mut client, usize::from(version_and_len[1])).await?;
        let len = read_bytes(&mut client, 1).await?;
        let password = read_bytes(&mut client, usize::from(len[0])).await?;
        let name = String::from_utf8_lossy(&name).to_string();
        let ok = name == *want_user && password == want_password.as_bytes();
        client.write_all(&[1, if ok { 0 } else { 1 }]).await?;
        if !ok {
            return Ok(());
        }
        user = Some(name);
    } else {
        client.write_all(&[5, 0]).await?;
    }
    let request = read_bytes(&mut client, 4).await?;
    let host = match request[3] {
        1 => {
            let a = read_bytes(&mut client, 4).await?;
            format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
        }
        3 => {
            let len = read_bytes(&mut client, 1).await?;
            String::from_utf8_lossy(&read_bytes(&mut client, usize::from(len[0])).await?)
                .to_string()
        }
        _ => return client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]).await,
    };
    let port = read_bytes(&mut client, 2).await?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    log.lock().unwrap().push(SocksConnect {
        target: format!("{host}:{port}"),
        user,
    });
    if rules.forbidden_port == Some(port) {
        return client.write_all(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]).await;
    }
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
    };
    // Bound to a name, to exercise the client's reading of a variable-length address.
    let mut reply = vec![5, 0, 0, 3, 9];
    reply.extend_from_slice(b"localhost");
    reply.extend_from_slice(&port.to_be_bytes());
    client.write_all(&reply).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
