//! The servers the cases fetch from, all on 127.0.0.1 and all stopped by PID (or, for the
//! in-process one, by a shutdown signal) when dropped.
//!
//! - a real `docker-registry` through the test harness, whose PID we find as the one new
//!   child process named `docker-registry` (the harness keeps its `Child` private);
//! - a static file server for the "client is the bottleneck" case: nginx when installed,
//!   else a small hyper server on a thread of the bench;
//! - a delay line in front of a server, for a link with a round trip.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::measure::{children_named, children_of};
use crate::support::listen::Listener;
use crate::support::registry::{Mode, Registry, RegistryOptions};

/// A registry and the PID of its process.
pub struct RegistryProcess {
    pub registry: Registry,
    pub pid: u32,
}

/// Starts a `docker-registry` in `mode`. Tokens live an hour so that a token fetched once
/// for the curl baseline outlives the whole case.
pub fn start_registry(mode: Mode) -> RegistryProcess {
    let before = children_named("docker-registry");
    let registry = Registry::start_with(RegistryOptions {
        token_ttl_secs: 3600,
        ..RegistryOptions::new(mode)
    });
    let pid = children_named("docker-registry")
        .into_iter()
        .find(|pid| !before.contains(pid))
        .expect("the registry we just started is our child");
    RegistryProcess { registry, pid }
}

/// A static file server on `127.0.0.1:port` serving `root`.
pub enum StaticServer {
    Nginx {
        child: Child,
        addr: SocketAddr,
        pids: Vec<u32>,
    },
    InProcess {
        addr: SocketAddr,
        /// Stops the server when dropped.
        _listener: Listener,
    },
}

/// A certificate and its key (PEM files) for a TLS listener.
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl StaticServer {
    /// nginx if it is installed, else the in-process server.
    pub fn start(root: &Path, dir: &Path) -> StaticServer {
        match nginx_binary() {
            Some(nginx) => start_nginx(&nginx, root, dir, None),
            None => start_in_process(root),
        }
    }

    /// nginx over TLS offering HTTP/2 by ALPN; `None` without nginx (there is no in-process
    /// fallback for this one).
    pub fn start_tls(root: &Path, dir: &Path, tls: &Tls) -> Option<StaticServer> {
        nginx_binary().map(|nginx| start_nginx(&nginx, root, dir, Some(tls)))
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            StaticServer::Nginx { addr, .. } | StaticServer::InProcess { addr, .. } => *addr,
        }
    }

    /// External processes to charge server CPU to (none for the in-process server, whose
    /// CPU shows up in the bench's own rusage).
    pub fn pids(&self) -> Vec<u32> {
        match self {
            StaticServer::Nginx { pids, .. } => pids.clone(),
            StaticServer::InProcess { .. } => Vec::new(),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            StaticServer::Nginx { .. } => "nginx (1 worker process, sendfile)",
            StaticServer::InProcess { .. } => {
                "an in-process hyper server (FALLBACK: nginx is not installed)"
            }
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        // The in-process server stops with its listener.
        if let StaticServer::Nginx { child, pids, .. } = self {
            stop_nginx(child, pids);
        }
    }
}

fn nginx_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
}

/// Runs nginx in the foreground (`daemon off`) with a config of its own in `dir`, so that
/// nothing of the system's nginx setup (config, logs, pid file, temp dirs) is touched.
fn start_nginx(nginx: &Path, root: &Path, dir: &Path, tls: Option<&Tls>) -> StaticServer {
    let dir = dir.join("nginx");
    fs::create_dir_all(&dir).expect("create nginx dir");
    let error_log = dir.join("error.log");
    for attempt in 1..=3 {
        let addr = free_port();
        let conf = dir.join("nginx.conf");
        fs::write(&conf, nginx_conf(root, &dir, addr, tls)).expect("write nginx.conf");
        let mut child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            // Where to log before the config is read (the default may not be writable).
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        if wait_http(addr, &mut child) {
            let master = child.id();
            let mut pids = vec![master];
            pids.extend(children_of(master, None));
            return StaticServer::Nginx { child, addr, pids };
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = fs::read_to_string(&error_log).unwrap_or_default();
        if attempt < 3 && log.contains("Address already in use") {
            continue;
        }
        panic!("nginx did not start on {addr}; error log:\n{log}");
    }
    unreachable!("every attempt returns or panics")
}

fn nginx_conf(root: &Path, dir: &Path, addr: SocketAddr, tls: Option<&Tls>) -> String {
    // nginx 1.22 (Debian 12) spells HTTP/2 as a `listen` parameter.
    let listen = match tls {
        Some(tls) => format!(
            "listen {addr} ssl http2;\n        ssl_certificate {};\n        ssl_certificate_key {};",
            tls.cert.display(),
            tls.key.display()
        ),
        None => format!("listen {addr};"),
    };
    // As root, nginx's workers would switch to `nobody`, who cannot read our 0700 temp dir.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let d = dir.display();
    format!(
        "# One worker: on a 2-core machine the other core is the client's.
daemon off;
master_process on;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    # Every blob is an octet stream; no extension-based types.
    types {{ }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        {listen}
        # Files are laid out as /v2/REPO/blobs/sha256:<hex>; ':' is fine in a file name.
        root {root};
        location / {{ }}
        # A root's `manifest.json`, if it has one, answers every tag (`many-lines`).
        location ~ /manifests/tag-[0-9]+$ {{
            default_type application/vnd.oci.image.manifest.v1+json;
            try_files $uri /manifest.json =404;
        }}
    }}
}}
",
        root = root.display(),
    )
}

/// Stops nginx by its master's PID: SIGQUIT is a graceful stop that also ends the workers.
/// If it has not exited after 5 s, the master and the workers are killed by PID.
fn stop_nginx(child: &mut Child, pids: &[u32]) {
    signal(child.id(), libc::SIGQUIT);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in pids {
        signal(pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory preconditions; the PID is one we started.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Binds port 0 and releases it; the race with other processes is handled by retrying.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
}

/// Polls `GET /` until any HTTP response arrives (true) or the process exits or 10 s pass.
fn wait_http(addr: SocketAddr, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if probe(addr) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn probe(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut head = [0u8; 7];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && &head == b"HTTP/1."
}

/// The fallback: every file under `root` loaded into memory and served by hyper (HTTP/1.1,
/// keep-alive) from a single-threaded runtime on its own thread.
fn start_in_process(root: &Path) -> StaticServer {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::{Response, StatusCode};
    use std::sync::Arc;

    let mut files = HashMap::new();
    load_tree(root, root, &mut files);
    let files = Arc::new(files);
    let listener = Listener::start(move |stream| {
        let files = files.clone();
        async move {
            let service = hyper::service::service_fn(move |req| {
                let path = req.uri().path();
                // As nginx is configured: a root's `manifest.json` answers every tag.
                let tag = path
                    .rsplit_once("/manifests/tag-")
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                let (body, content_type) = match files.get(path) {
                    Some(found) => (Some(found.clone()), "application/octet-stream"),
                    None if tag => (
                        files.get("/manifest.json").cloned(),
                        "application/vnd.oci.image.manifest.v1+json",
                    ),
                    None => (None, ""),
                };
                async move {
                    let response = match body {
                        Some(bytes) => Response::builder()
                            .header("content-type", content_type)
                            .body(Full::new(bytes)),
                        None => Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::new())),
                    };
                    Ok::<_, std::convert::Infallible>(response.expect("response"))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        }
    });
    StaticServer::InProcess {
        addr: loopback(listener.port()),
        _listener: listener,
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Maps `/relative/path` to the content of every file below `dir`.
fn load_tree(root: &Path, dir: &Path, files: &mut HashMap<String, bytes::Bytes>) {
    for entry in fs::read_dir(dir).expect("read static root") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            load_tree(root, &path, files);
        } else {
            let rel = path.strip_prefix(root).expect("below root");
            let key = format!("/{}", rel.display());
            files.insert(key, fs::read(&path).expect("read static file").into());
        }
    }
}

/// A TCP forwarder on `127.0.0.1` that holds every byte for `one_way` in each direction
/// before passing it on: a link with a round trip of twice that and no bandwidth limit of
/// its own (what it holds is what is in flight). It runs on a thread of the bench, so its
/// CPU counts as the server's, never the client's.
pub struct DelayLine {
    listener: Listener,
}

impl DelayLine {
    pub fn start(target: SocketAddr, one_way: Duration) -> DelayLine {
        let listener = Listener::start(move |client| async move {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                delay(client_read, server_write, one_way),
                delay(server_read, client_write, one_way),
            );
        });
        DelayLine { listener }
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.listener.port())
    }
}

/// Passes what `from` sends on to `to`, each piece `by` after it arrived, then the close.
async fn delay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    by: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, piece)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&piece).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 256 << 10];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            let due = tokio::time::Instant::now() + by;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}
