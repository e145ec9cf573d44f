//! The "other host" of a cross-host redirect: answers everything, remembers every request.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, StatusCode};

use super::routes::{serve_bytes, Prepared};
use super::server::{self, Handler, ServerThread};
use super::RequestRecord;

/// A server that records every request's headers (to check, say, that no `Authorization`
/// followed a redirect) and answers 200 to anything: with an empty body, or from
/// [`serving`](Recorder::serving) with fixed content for GET and HEAD on any path, honouring
/// `Range` as object stores do. Stops when dropped.
pub struct Recorder {
    log: Arc<Mutex<Vec<RequestRecord>>>,
    server: ServerThread,
}

impl Recorder {
    /// A recorder answering 200 with an empty body.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// A recorder serving `bytes` (as `application/octet-stream`) at every path.
    pub fn serving(bytes: impl AsRef<[u8]>) -> Self {
        Self::launch(Some(Bytes::copy_from_slice(bytes.as_ref())))
    }

    /// A recorder refusing everything with `status` (an object store's 403, say).
    pub fn refusing(status: StatusCode) -> Self {
        Self::launch_with(None, status)
    }

    fn launch(content: Option<Bytes>) -> Self {
        Self::launch_with(content, StatusCode::OK)
    }

    fn launch_with(content: Option<Bytes>, status: StatusCode) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        let handler: Handler = Arc::new(move |req, conn| {
            let (parts, _body) = req.into_parts();
            let mut record = RequestRecord::new(&parts, conn.id);
            let head = parts.method == Method::HEAD;
            let prepared = match &content {
                Some(bytes) if head || parts.method == Method::GET => {
                    let range = parts.headers.get(http::header::RANGE);
                    let mut prepared =
                        serve_bytes(bytes, range.and_then(|v| v.to_str().ok()), true);
                    prepared.head = head;
                    prepared
                }
                _ => Prepared::new(status, Bytes::new()),
            };
            record.status = prepared.status.as_u16();
            shared.lock().unwrap().push(record);
            prepared.into_response()
        });
        Recorder {
            log,
            server: ServerThread::start("fake-recorder", server::bind_local(0), handler),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr().to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log.lock().unwrap().clone()
    }

    /// Number of requests so far.
    pub fn request_count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.server.stats().accepted.load(Ordering::SeqCst) as usize
    }
}
